//! The README's policy tables, generated from the code: role × permission, and route →
//! permission.
//!
//! **Invariant:** the tables are a pure rendering of [`Perm::ALL`], [`role_permissions`] and
//! [`ROUTES`]; nothing here decides anything, so the published tables cannot drift from what
//! the gateway enforces.

use std::fmt::Write as _;

use events::event::Role;

use super::permissions::Perm;
use super::roles::role_permissions;
use super::routes::{Disposition, ROUTES, RouteRule, When};

/// A Markdown table: one row per permission, one column per role (`✓` or `–`).
pub fn role_permission_table() -> String {
    let roles = [
        Role::Viewer,
        Role::Ops,
        Role::Deployer,
        Role::Admin,
        Role::Cicd,
    ];
    let sets: Vec<_> = roles.iter().map(|r| role_permissions(*r)).collect();
    let mut out =
        String::from("| Permission | viewer | ops | deployer | admin | cicd | What it allows |\n");
    out.push_str("|---|:-:|:-:|:-:|:-:|:-:|---|\n");
    for p in Perm::ALL {
        let _ = write!(out, "| `{}` |", p.as_str());
        for set in &sets {
            out.push_str(if set.contains(&p) { " ✓ |" } else { " – |" });
        }
        let _ = writeln!(out, " {} |", p.describe());
    }
    out
}

/// A Markdown table: one row per route, with its permission, the rules that raise it, and what
/// the route carries.
pub fn route_permission_table() -> String {
    let mut out = String::from(
        "| Method | Path | Permission | Raised to, when | Rack role | Secrets (req / resp) | Notes |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|\n");
    for r in ROUTES {
        let (method, path) = match r.disposition {
            Disposition::Unreachable => ("–", format!("({})", r.name)),
            _ => (r.method_label(), format!("`{}`", r.path)),
        };
        let _ = writeln!(
            out,
            "| {method} | {path} | `{}` | {} | {} | {} / {} | {} |",
            r.permission.as_str(),
            rules_cell(r),
            r.rack_role,
            r.secrets.request.as_str(),
            r.secrets.response.as_str(),
            notes_cell(r),
        );
    }
    out
}

fn rules_cell(r: &RouteRule) -> String {
    let cells: Vec<String> = r
        .rules
        .iter()
        .map(|rule| {
            let when = match &rule.when {
                When::Present(k) => format!("`{k}` present"),
                When::PresentNotIn(k, _) => format!("`{k}` set (not false)"),
                When::AbsentOrNotIn(k, vs) => {
                    format!("`{k}` absent or not one of {}", vs.join(", "))
                }
                When::VarNotEq(k, v) => format!("`{{{k}}}` ≠ `{v}`"),
                When::VarNotUnder(k, v) => format!("`{{{k}}}` not `{v}/<name>`"),
                When::MethodNotIn(ms) => format!("method not {}", ms.join("/")),
                When::Always => return format!("`{}` too", rule.require.as_str()),
            };
            format!("`{}` when {when}", rule.require.as_str())
        })
        .collect();
    if cells.is_empty() {
        "–".to_owned()
    } else {
        cells.join("; ")
    }
}

fn notes_cell(r: &RouteRule) -> String {
    let mut notes = Vec::new();
    if r.websocket {
        notes.push("WebSocket".to_owned());
    }
    if let Some(t) = r.tail {
        notes.push(format!("{} tail", t.as_str()));
    }
    if r.mints_jwt {
        notes.push("**mints a rack JWT**".to_owned());
    }
    if super::routes::INTO_PROCESS.contains(&r.name) {
        notes.push("a build's process needs `convox:build:exec`".to_owned());
    }
    if r.name == "build.logs" {
        notes.push("a log stored elsewhere needs `convox:object:read`".to_owned());
    }
    match r.disposition {
        Disposition::AnswerLocally => notes.push("answered locally (empty 404)".to_owned()),
        Disposition::Unreachable => notes.push("unreachable placeholder".to_owned()),
        Disposition::Forward => {}
    }
    notes.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_one_row_per_permission_and_per_route() {
        let roles = role_permission_table();
        assert_eq!(roles.lines().count(), 2 + Perm::ALL.len());
        assert!(roles.contains("| `convox:exec:run` | – | ✓ | ✓ | ✓ | – |"));
        let routes = route_permission_table();
        assert_eq!(routes.lines().count(), 2 + ROUTES.len());
        assert!(routes.contains("| POST | `/system/jwt/token` | `convox:jwt:create` |"));
        assert!(routes.contains("**mints a rack JWT**"));
        assert!(
            routes.contains("| SOCKET | `/apps/{app}/processes/{pid}/exec` | `convox:exec:run` |")
        );
    }
}
