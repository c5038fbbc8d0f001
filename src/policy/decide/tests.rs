//! Decision tests: the hand-written role × route matrix, grants of people and tokens, the
//! parameter rules, and routing, each through the whole pipeline (canonical path, route,
//! canonical parameters, authorize) by one `check` function.

use std::collections::BTreeSet;

use events::event::{Permission, Role};

use super::*;
use crate::policy::canonical::{
    RequestBody, RequestParams, canonicalize_params, canonicalize_path, split_target,
};
use crate::policy::roles::{cicd_scopes, role_permissions};
use crate::policy::routes::Disposition;

const MATRIX: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/expectations/role_route_matrix.txt"
));

fn user(roles: &[Role]) -> Grant {
    Grant::for_user(&Standing::Active(roles.iter().copied().collect()))
}

fn token(scopes: &[&str], owner: &[Role]) -> Grant {
    let scopes: Vec<Permission> = scopes.iter().map(|s| Permission((*s).to_owned())).collect();
    Grant::for_token(
        &scopes,
        &Standing::Active(owner.iter().copied().collect()),
        &[],
    )
}

fn scopes_of(role: Role) -> Vec<String> {
    role_permissions(role)
        .into_iter()
        .map(|p| p.as_str().to_owned())
        .collect()
}

fn token_of(scopes: &[String], owner: &[Role]) -> Grant {
    let s: Vec<&str> = scopes.iter().map(String::as_str).collect();
    token(&s, owner)
}

fn cicd_token() -> Grant {
    Grant::for_token(
        &cicd_scopes(),
        &Standing::Active([Role::Deployer].into()),
        &[],
    )
}

/// One request as the proxy would see it.
#[derive(Clone, Copy)]
struct Req<'a> {
    method: &'a str,
    target: &'a str,
    content_type: Option<&'a str>,
    body: &'a [u8],
    headers: &'a [(&'a str, &'a [u8])],
}

fn req<'a>(method: &'a str, target: &'a str) -> Req<'a> {
    Req {
        method,
        target,
        content_type: Some("application/octet-stream"),
        body: b"",
        headers: &[],
    }
}

fn form<'a>(method: &'a str, target: &'a str, body: &'a [u8]) -> Req<'a> {
    Req {
        content_type: Some("application/x-www-form-urlencoded"),
        body,
        ..req(method, target)
    }
}

fn with_headers<'a>(r: Req<'a>, headers: &'a [(&'a str, &'a [u8])]) -> Req<'a> {
    Req { headers, ..r }
}

/// The whole pipeline; the outcome is `allow`, `local`, or the denial's kind, with the
/// permission for permission denials: `permission_denied(convox:env:set)`.
fn outcome(grant: &Grant, r: Req<'_>) -> (String, Option<&'static str>) {
    let (raw_path, query) = split_target(r.target);
    let path = match canonicalize_path(raw_path) {
        Ok(p) => p,
        Err(e) => return (Denied::from(e).kind().to_owned(), None),
    };
    let matched = match route(r.method, &path) {
        Ok(m) => m,
        Err(e) => return (Denied::from(e).kind().to_owned(), None),
    };
    let name = Some(matched.rule().name);
    if matched.answered_locally() {
        return ("local".to_owned(), name);
    }
    let body = if r.body.is_empty() {
        RequestBody::Empty
    } else {
        RequestBody::Buffered(r.body)
    };
    let params = RequestParams {
        method: r.method,
        content_type: r.content_type,
        query,
        body,
        headers: r.headers,
    };
    let canonical = match canonicalize_params(matched.rule(), &params) {
        Ok(c) => c,
        Err(e) => return (Denied::params(&matched, e).kind().to_owned(), name),
    };
    match authorize(&matched, &|k| canonical.get(k), grant) {
        Ok(p) => {
            assert_eq!(p.rule().name, matched.rule().name);
            ("allow".to_owned(), name)
        }
        Err(d) => {
            let text = match d.reason() {
                DenyReason::MissingPermission(p)
                | DenyReason::TokenScope(p)
                | DenyReason::MakerLacks(p) => {
                    format!("{}({})", d.kind(), p.0)
                }
                _ => d.kind().to_owned(),
            };
            (text, name)
        }
    }
}

fn check(grant: &Grant, r: Req<'_>, expected: &str) {
    let (got, route) = outcome(grant, r);
    assert_eq!(got, expected, "{} {} (route {route:?})", r.method, r.target);
}

// --- The matrix ---

/// A concrete path for a spec pattern: each variable gets a sample value that fits its grammar.
fn sample(path: &str) -> String {
    let tail_path = if path.starts_with("/v2/") {
        "x/manifests/latest"
    } else {
        "health"
    };
    path.replace("{key:.*}", "tmp/01362c476d019add69c8b81a11fa93.tgz")
        .replace("{server:.*}", "quay.io/org")
        .replace("{path:.*}", tail_path)
        .replace("{app}", "x")
        .replace("{name}", "web")
        .replace("{id}", "ID1")
        .replace("{pid}", "web-5d8f7c9b4-abcde")
        .replace("{service}", "web")
        .replace("{host}", "db.default.svc.cluster.local")
        .replace("{port}", "5432")
}

fn matrix_grants() -> [(&'static str, Grant); 5] {
    [
        ("viewer", user(&[Role::Viewer])),
        ("ops", user(&[Role::Ops])),
        ("deployer", user(&[Role::Deployer])),
        ("admin", user(&[Role::Admin])),
        ("cicd", cicd_token()),
    ]
}

#[test]
fn the_hand_written_matrix_agrees_with_authorize() {
    let grants = matrix_grants();
    let mut mismatches = Vec::new();
    let mut covered = BTreeSet::new();
    let mut lines = 0;
    for (n, line) in MATRIX.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lines += 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [method, path, expected @ ..] = fields.as_slice() else {
            panic!("line {}: {line:?}", n + 1);
        };
        assert_eq!(expected.len(), 5, "line {}: {line:?}", n + 1);
        let wire_method = if *method == "SOCKET" { "GET" } else { method };
        let target = sample(path);
        for ((role, grant), want) in grants.iter().zip(expected) {
            let (got, route) = outcome(grant, req(wire_method, &target));
            let Some(route) = route else {
                mismatches.push(format!("line {}: {method} {path}: no route ({got})", n + 1));
                break;
            };
            let rule = crate::policy::routes::by_name(route).unwrap();
            let spec_key = format!("{} {}", rule.method_label(), rule.spec_path());
            let line_key = if rule.method == "ANY" {
                format!("ANY {path}")
            } else {
                format!("{method} {path}")
            };
            if spec_key != line_key {
                mismatches.push(format!("line {}: {line_key} matched {spec_key}", n + 1));
                break;
            }
            covered.insert(spec_key);
            let got_word = match got.as_str() {
                "allow" => "allow",
                "local" => "local",
                g if g.starts_with("permission_denied") || g.starts_with("token_scope") => "deny",
                _ => "error",
            };
            if got_word != *want {
                mismatches.push(format!(
                    "line {}: {method} {path} as {role}: expected {want}, authorize says {got}",
                    n + 1
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    let reachable: BTreeSet<String> = crate::policy::ROUTES
        .iter()
        .filter(|r| r.disposition != Disposition::Unreachable)
        .map(|r| format!("{} {}", r.method_label(), r.spec_path()))
        .collect();
    let uncovered: Vec<_> = reachable.difference(&covered).collect();
    assert!(
        uncovered.is_empty(),
        "routes without a matrix line: {uncovered:?}"
    );
    assert!(lines >= 104, "{lines} lines");
}

#[test]
fn credential_routes_are_admin_only() {
    let credential_routes: Vec<_> = crate::policy::ROUTES
        .iter()
        .filter(|r| r.disposition == Disposition::Forward && r.carries_credentials())
        .collect();
    assert_eq!(credential_routes.len(), 24, "routes that carry credentials");
    for rule in credential_routes {
        let method = if rule.method == "ANY" {
            "GET"
        } else {
            rule.method
        };
        let target = sample(&rule.spec_path());
        for role in [Role::Viewer, Role::Ops, Role::Deployer] {
            let (got, _) = outcome(&user(&[role]), req(method, &target));
            assert!(
                got.starts_with("permission_denied"),
                "{} as {role}: {got}",
                rule.name
            );
        }
        assert_eq!(
            outcome(&user(&[Role::Admin]), req(method, &target)).0,
            "allow",
            "{}",
            rule.name
        );
    }
}

// --- Grants ---

#[test]
fn a_token_scoped_below_its_owner_gets_only_its_scopes() {
    let t = token_of(&scopes_of(Role::Viewer), &[Role::Deployer]);
    check(&t, req("GET", "/apps?"), "allow");
    check(&t, req("GET", "/apps/x/releases?limit=1"), "allow");
    check(
        &t,
        form("POST", "/apps/x/releases?", b"build=B1"),
        "token_scope(convox:release:create)",
    );
    check(
        &t,
        req("GET", "/apps/x/processes/p1/exec"),
        "token_scope(convox:exec:run)",
    );
}

#[test]
fn a_token_of_a_demoted_owner_narrows_at_once() {
    let t = token_of(&scopes_of(Role::Deployer), &[Role::Viewer]);
    check(&t, req("GET", "/apps?"), "allow");
    check(
        &t,
        form("POST", "/apps/x/releases?", b"build=B1"),
        "permission_denied(convox:release:create)",
    );
    check(
        &t,
        req("DELETE", "/apps/x/processes/p1?"),
        "permission_denied(convox:process:stop)",
    );
}

/// A token made for its owner by someone else holds only what its maker still holds: the
/// maker received its secret.
#[test]
fn a_token_made_for_another_is_held_within_its_makers_roles() {
    let deployer = Standing::Active([Role::Deployer].into());
    let made_by = |maker: Standing| Grant::for_token(&cicd_scopes(), &deployer, &[maker]);
    let kept = made_by(Standing::Active([Role::Admin].into()));
    check(
        &kept,
        form("POST", "/apps/x/releases?", b"build=B1"),
        "allow",
    );
    assert_eq!(
        kept.permissions(),
        Grant::for_token(&cicd_scopes(), &deployer, &[]).permissions()
    );
    let demoted = made_by(Standing::Active([Role::Viewer].into()));
    check(&demoted, req("GET", "/apps?"), "allow");
    check(
        &demoted,
        form("POST", "/apps/x/releases?", b"build=B1"),
        "maker_permission(convox:release:create)",
    );
    // Beyond the scopes, the scope is the reason, whatever the maker holds.
    check(
        &demoted,
        req("DELETE", "/apps/x/processes/p1?"),
        "token_scope(convox:process:stop)",
    );
    let disabled = made_by(Standing::Disabled);
    check(&disabled, req("GET", "/apps?"), "maker_disabled");
    assert!(disabled.permissions().is_empty());
    let no_role = made_by(Standing::Active(BTreeSet::new()));
    check(
        &no_role,
        req("GET", "/apps?"),
        "maker_permission(convox:app:read)",
    );
    assert!(no_role.permissions().is_empty());
}

#[test]
fn a_disabled_owner_or_user_gets_nothing() {
    let t = Grant::for_token(&cicd_scopes(), &Standing::Disabled, &[]);
    check(&t, req("GET", "/apps?"), "user_disabled");
    check(
        &Grant::for_user(&Standing::Disabled),
        req("GET", "/auth?"),
        "user_disabled",
    );
    assert!(t.permissions().is_empty());
    // Answered locally before any decision, so not a denial.
    check(&t, req("GET", "/machines?"), "local");
}

#[test]
fn owners_without_roles_and_people_with_only_cicd_are_refused() {
    check(&user(&[]), req("GET", "/apps?"), "no_role");
    check(
        &token(&["convox:app:read"], &[]),
        req("GET", "/apps?"),
        "no_role",
    );
    check(
        &user(&[Role::Cicd]),
        req("GET", "/apps?"),
        "role_not_for_users",
    );
    // Alongside a person's role, cicd adds nothing.
    let both = user(&[Role::Cicd, Role::Viewer]);
    assert_eq!(both.permissions(), role_permissions(Role::Viewer));
    check(
        &both,
        form(
            "POST",
            "/apps/x/builds?",
            b"url=object%3A%2F%2Fx%2Ftmp%2Fa.tgz",
        ),
        "permission_denied(convox:build:create)",
    );
}

#[test]
fn a_cicd_token_deploys_but_never_execs_reads_env_or_sets_it() {
    let t = cicd_token();
    // `convox deploy` (spec §6), in order.
    check(&t, req("GET", "/system?"), "allow");
    let upload = Req {
        body: b"\x1f\x8b\x08\x00",
        ..req(
            "POST",
            "/apps/x/objects/tmp/01362c476d019add69c8b81a11fa93.tgz?",
        )
    };
    check(&t, upload, "allow");
    check(
        &t,
        form(
            "POST",
            "/apps/x/builds?",
            b"url=object%3A%2F%2Fx%2Ftmp%2F01362c476d019add69c8b81a11fa93.tgz",
        ),
        "allow",
    );
    check(&t, req("GET", "/machines?"), "local");
    check(
        &t,
        with_headers(req("GET", "/apps/x/builds/B000000001/logs"), &[]),
        "allow",
    );
    check(&t, req("GET", "/apps/x/builds/B000000001?"), "allow");
    check(&t, req("GET", "/apps/x?"), "allow");
    check(
        &t,
        form(
            "POST",
            "/apps/x/releases/R000000001/promote?",
            b"force=false",
        ),
        "allow",
    );
    check(&t, req("GET", "/apps/x/processes?"), "allow");
    // The app log stream `deploy` follows after promote is not a cicd scope.
    check(
        &t,
        req("GET", "/apps/x/logs"),
        "token_scope(convox:log:read)",
    );
    // Never: exec, run, env.
    check(
        &t,
        req("GET", "/apps/x/processes/p1/exec"),
        "token_scope(convox:exec:run)",
    );
    check(
        &t,
        req("POST", "/apps/x/services/web/processes?"),
        "token_scope(convox:process:run)",
    );
    check(
        &t,
        form("POST", "/apps/x/releases?", b"env=A%3DB"),
        "token_scope(convox:env:set)",
    );
    check(&t, form("POST", "/apps/x/releases?", b"build=B1"), "allow");
    let g = t.permissions();
    assert!(!g.contains(&Perm::EnvRead) && !g.contains(&Perm::SecretRead));
    // An external build needs more than the owner (a deployer) holds.
    check(
        &t,
        form("POST", "/apps/x/builds?", b"external=true&url="),
        "permission_denied(convox:build:external)",
    );
}

#[test]
fn wildcard_scopes_never_exceed_the_owner() {
    check(
        &token(&["convox:app:*"], &[Role::Deployer]),
        req("GET", "/apps?"),
        "allow",
    );
    check(
        &token(&["convox:app:*"], &[Role::Deployer]),
        req("DELETE", "/apps/x?"),
        "permission_denied(convox:app:delete)",
    );
    check(
        &token(&["convox:*:*"], &[Role::Viewer]),
        form("POST", "/apps/x/releases?", b"build=B"),
        "permission_denied(convox:release:create)",
    );
    check(
        &token(&["convox:*:read"], &[Role::Admin]),
        req("GET", "/registries?"),
        "allow",
    );
    check(
        &token(&["convox:*:read"], &[Role::Admin]),
        req("DELETE", "/registries/quay.io?"),
        "token_scope(convox:registry:manage)",
    );
    check(
        &token(&["gateway:*:*", "convox:nothing:here"], &[Role::Admin]),
        req("GET", "/apps?"),
        "token_scope(convox:app:read)",
    );
}

// --- Parameter rules ---

#[test]
fn budget_caps_and_forced_resets_need_admin() {
    let d = user(&[Role::Deployer]);
    let o = user(&[Role::Ops]);
    let a = user(&[Role::Admin]);
    check(
        &d,
        form("POST", "/apps/x/budget?", b"alert-threshold-percent=80"),
        "allow",
    );
    for body in [
        &b"monthly-cap-usd=100"[..],
        b"at-cap-action=stop",
        b"pricing-adjustment=0.9",
        b"alert-threshold-percent=80&monthly-cap-usd=",
    ] {
        check(
            &d,
            form("POST", "/apps/x/budget?", body),
            "permission_denied(convox:budget:cap)",
        );
        check(&a, form("POST", "/apps/x/budget?", body), "allow");
    }
    check(
        &d,
        form("DELETE", "/apps/x/budget?", b"ack_by=alice"),
        "permission_denied(convox:budget:cap)",
    );
    check(
        &o,
        form("POST", "/apps/x/budget/reset?", b"ack_by=alice"),
        "allow",
    );
    check(
        &o,
        form(
            "POST",
            "/apps/x/budget/reset?",
            b"force_clear_cooldown=false",
        ),
        "allow",
    );
    for v in ["true", "1", "TRUE", "yes", ""] {
        let body = format!("force_clear_cooldown={v}");
        check(
            &o,
            form("POST", "/apps/x/budget/reset?", body.as_bytes()),
            "permission_denied(convox:budget:cap)",
        );
    }
}

#[test]
fn minting_an_admin_jwt_needs_its_own_permission() {
    let t = token(&["convox:jwt:create"], &[Role::Admin]);
    check(
        &t,
        form("POST", "/system/jwt/token?", b"durationInHour=1&role=read"),
        "allow",
    );
    check(
        &t,
        form("POST", "/system/jwt/token?", b"durationInHour=1&role=write"),
        "allow",
    );
    for body in [
        &b"durationInHour=1&role=admin"[..],
        b"durationInHour=1",
        b"role=rwa",
        b"role=Read",
    ] {
        check(
            &t,
            form("POST", "/system/jwt/token?", body),
            "token_scope(convox:jwt:admin)",
        );
    }
    check(
        &user(&[Role::Deployer]),
        form("POST", "/system/jwt/token?", b"role=read"),
        "permission_denied(convox:jwt:create)",
    );
    check(
        &user(&[Role::Admin]),
        form("POST", "/system/jwt/token?", b"role=admin"),
        "allow",
    );
}

#[test]
fn env_external_builds_privileged_runs_and_public_objects_raise_the_requirement() {
    let o = user(&[Role::Ops]);
    let d = user(&[Role::Deployer]);
    check(&d, form("POST", "/apps/x/releases?", b"env=A%3DB"), "allow");
    check(
        &o,
        form("POST", "/apps/x/releases?", b"env=A%3DB"),
        "permission_denied(convox:release:create)",
    );
    check(
        &token(&["convox:release:create"], &[Role::Deployer]),
        form("POST", "/apps/x/releases?", b"env="),
        "token_scope(convox:env:set)",
    );
    check(
        &d,
        form("POST", "/apps/x/builds?", b"external=true&url="),
        "permission_denied(convox:build:external)",
    );
    check(
        &d,
        form(
            "POST",
            "/apps/x/builds?",
            b"external=false&url=object%3A%2F%2Fx%2Fk",
        ),
        "allow",
    );
    let run = req("POST", "/apps/x/services/web/processes?");
    check(
        &o,
        with_headers(run, &[("Command", b"sleep 3600")]),
        "allow",
    );
    check(&o, with_headers(run, &[("Privileged", b"false")]), "allow");
    check(
        &o,
        with_headers(run, &[("Privileged", b"true")]),
        "permission_denied(convox:process:privileged)",
    );
    check(
        &o,
        with_headers(run, &[("system-critical", b"1")]),
        "permission_denied(convox:process:privileged)",
    );
    check(
        &o,
        with_headers(run, &[("Volumes", b"a%3D%2Fb")]),
        "permission_denied(convox:process:privileged)",
    );
    check(
        &user(&[Role::Admin]),
        with_headers(run, &[("Privileged", b"true")]),
        "allow",
    );
    let upload = req("POST", "/apps/x/objects/tmp/a.tgz?");
    check(
        &d,
        with_headers(upload, &[("Public", b"true")]),
        "permission_denied(convox:object:public)",
    );
    check(&d, with_headers(upload, &[("Public", b"false")]), "allow");
}

/// Deploys upload `tmp/<name>`; any other key may be the rack's own object (a build's stored
/// logs), which only an admin may write or delete, and read: a stored log may quote the rack
/// password the build printed, which `convox builds logs` streams scrubbed.
#[test]
fn objects_outside_tmp_are_written_deleted_and_read_by_admins_only() {
    let d = user(&[Role::Deployer]);
    let admin = user(&[Role::Admin]);
    let cicd = cicd_token();
    for grant in [&d, &cicd] {
        check(grant, req("POST", "/apps/x/objects/tmp/a.tgz?"), "allow");
    }
    check(&d, req("DELETE", "/apps/x/objects/tmp/a.tgz?"), "allow");
    for key in [
        "build/B1/logs",
        "tmp/a/b.tgz",
        "a.tgz",
        "tmpx/a.tgz",
        "x/tmp/a.tgz",
    ] {
        for method in ["POST", "DELETE"] {
            let target = format!("/apps/x/objects/{key}?");
            check(
                &d,
                req(method, &target),
                "permission_denied(convox:build:update)",
            );
            check(&admin, req(method, &target), "allow");
        }
        let target = format!("/apps/x/objects/{key}?");
        check(
            &cicd,
            req("POST", &target),
            "permission_denied(convox:build:update)",
        );
        check(
            &d,
            req("GET", &target),
            "permission_denied(convox:build:exec)",
        );
        check(&admin, req("GET", &target), "allow");
    }
    check(&d, req("GET", "/apps/x/objects/tmp/a.tgz?"), "allow");
}

/// Importing an image into a build rewrites that build, whichever it is (the promoted
/// release's too): an admin's rewrite, not a deployer's or a pipeline's new build.
#[test]
fn importing_an_image_into_a_build_is_a_rewrite() {
    let image = form("POST", "/apps/x/builds/B1/image?", b"image=org%2Fimg%3Atag");
    check(
        &user(&[Role::Deployer]),
        image,
        "permission_denied(convox:build:update)",
    );
    check(
        &cicd_token(),
        image,
        "permission_denied(convox:build:update)",
    );
    check(&user(&[Role::Admin]), image, "allow");
}

#[test]
fn only_the_cli_env_mask_config_is_readable_below_admin() {
    let v = user(&[Role::Viewer]);
    check(&v, req("GET", "/apps/x/configs/cli-env-mask?"), "allow");
    check(
        &v,
        req("GET", "/apps/x/configs/cli-env-mask2?"),
        "permission_denied(convox:config:read)",
    );
    check(&v, req("GET", "/apps/x/configs/cli%2Denv%2Dmask?"), "allow");
    check(
        &v,
        req("GET", "/apps/x/configs/database.yml?"),
        "permission_denied(convox:config:read)",
    );
    check(
        &user(&[Role::Deployer]),
        form("PUT", "/apps/x/configs/cli-env-mask?", b"value=Rk9P"),
        "allow",
    );
}

#[test]
fn the_registry_proxy_needs_push_for_writes() {
    let t = token(&["convox:image:pull"], &[Role::Admin]);
    check(&t, req("GET", "/v2/"), "allow");
    check(
        &t,
        req(
            "HEAD",
            "/v2/x/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        "allow",
    );
    check(
        &t,
        req("POST", "/v2/x/blobs/uploads/"),
        "token_scope(convox:image:push)",
    );
    check(
        &t,
        req("PUT", "/v2/x/manifests/latest"),
        "token_scope(convox:image:push)",
    );
    check(&t, req("GET", "/v2/x/y/../z"), "invalid_path");
}

// --- Routing ---

#[test]
fn routes_outside_the_table_are_unknown_and_tails_are_checked() {
    let a = user(&[Role::Admin]);
    for (method, target) in [
        ("GET", "/apps/x/environment?"),
        ("POST", "/apps/x/environment?"),
        ("DELETE", "/apps/x/environment/FOO?"),
        ("POST", "/apps/x/restart?"),
        ("GET", "/instances/i-1?"),
        ("GET", "/apps/x/formation?"),
        ("PATCH", "/apps/x?"),
        ("get", "/apps?"),
        ("GET", "/health"),
        ("DELETE", "/registries?server=x"),
        ("POST", "/apps/x/objects"),
    ] {
        check(&a, req(method, target), "unknown_route");
    }
    check(
        &a,
        req("GET", "/apps/x/objects/tmp/a:b.tgz"),
        "invalid_path",
    );
    check(&a, req("DELETE", "/registries/https:"), "invalid_path");
    check(&a, req("GET", "/apps/x/objects/tmp/ok.tgz"), "allow");
}

#[test]
fn the_racks_own_names_are_no_app() {
    let a = user(&[Role::Admin]);
    for (method, target) in [
        ("GET", "/apps/system?"),
        ("GET", "/apps/rack/processes?"),
        ("DELETE", "/apps/system/processes/api-5d?"),
        ("GET", "/apps/system/processes/api-5d/exec"),
        (
            "GET",
            "/apps/rack/processes/api-5d/files?file=/proc/1/environ",
        ),
    ] {
        let path = canonicalize_path(target.split('?').next().unwrap()).unwrap();
        let got = route(method, &path).map(|m| m.rule().name);
        assert!(
            matches!(got, Err(Unknown::ReservedApp(_))),
            "{method} {target}: {got:?}"
        );
        check(&a, req(method, target), "unknown_route");
    }
    // Names that merely start like them are apps.
    check(&a, req("GET", "/apps/systems?"), "allow");
    check(&a, req("GET", "/apps/racks/processes?"), "allow");
}

fn check_route(method: &str, path: &str, name: &str, vars: &[(&str, &str)]) {
    let p = canonicalize_path(path).unwrap();
    let m = route(method, &p).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    assert_eq!(m.rule().name, name, "{method} {path}");
    let got: Vec<(&str, &str)> = m.vars().iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(got, vars, "{method} {path}");
}

#[test]
fn routing_extracts_variables_in_registration_order() {
    check_route(
        "GET",
        "/apps/x/builds/B1.tgz",
        "build.export",
        &[("app", "x"), ("id", "B1")],
    );
    check_route(
        "GET",
        "/apps/x/builds/B1",
        "build.get",
        &[("app", "x"), ("id", "B1")],
    );
    check_route(
        "POST",
        "/apps/x/builds/import",
        "build.import",
        &[("app", "x")],
    );
    check_route(
        "GET",
        "/apps/x/builds/import",
        "build.get",
        &[("app", "x"), ("id", "import")],
    );
    check_route(
        "GET",
        "/apps/x/objects/tmp/a.tgz",
        "object.get",
        &[("app", "x"), ("key", "tmp/a.tgz")],
    );
    check_route(
        "DELETE",
        "/registries/quay.io:443/org/team",
        "registry.remove",
        &[("server", "quay.io:443/org/team")],
    );
    check_route(
        "PATCH",
        "/v2/x/blobs/uploads/abc-1",
        "image.proxy",
        &[("path", "x/blobs/uploads/abc-1")],
    );
    check_route("GET", "/v2/", "image.proxy", &[("path", "")]);
    check_route(
        "OPTIONS",
        "/custom/http/proxy/api/v1/",
        "proxy.http",
        &[("path", "api/v1/")],
    );
    check_route(
        "GET",
        "/proxy/db.svc/5432",
        "proxy.tcp",
        &[("host", "db.svc"), ("port", "5432")],
    );
    check_route(
        "GET",
        "/apps/x/processes/p1/exec",
        "process.exec",
        &[("app", "x"), ("pid", "p1")],
    );
    check_route("GET", "/machines", "local.machines", &[]);
    let p = canonicalize_path("/apps/x/builds/.tgz").unwrap();
    assert_eq!(route("GET", &p).unwrap().rule().name, "build.get");
    assert!(
        route("GET", &canonicalize_path("/apps/x/logs").unwrap())
            .unwrap()
            .expects_upgrade()
    );
}

#[test]
fn denials_carry_stable_kinds() {
    let reasons = [
        (
            DenyReason::MissingPermission(Perm::EnvSet.to_permission()),
            "permission_denied",
        ),
        (
            DenyReason::TokenScope(Perm::EnvSet.to_permission()),
            "token_scope",
        ),
        (DenyReason::MakerDisabled, "maker_disabled"),
        (
            DenyReason::MakerLacks(Perm::EnvSet.to_permission()),
            "maker_permission",
        ),
        (DenyReason::UserDisabled, "user_disabled"),
        (DenyReason::RoleNotForUsers, "role_not_for_users"),
        (DenyReason::NoRole, "no_role"),
        (DenyReason::UnknownRoute, "unknown_route"),
        (
            DenyReason::InvalidPath(PathError::NotAbsolute),
            "invalid_path",
        ),
        (
            DenyReason::InvalidParams(ParamError::Multipart),
            "invalid_params",
        ),
    ];
    for (r, kind) in reasons {
        assert_eq!(r.kind(), kind);
    }
    let d = Denied::from(Unknown::NoRoute);
    assert_eq!((d.kind(), d.route()), ("unknown_route", None));
    assert_eq!(d.to_string(), "no rack route matches");
}

#[test]
fn permitted_reports_what_was_required() {
    let p = canonicalize_path("/apps/x/releases").unwrap();
    let m = route("POST", &p).unwrap();
    let env = |k: &str| (k == "env").then(|| "A=B".to_owned());
    let ok = authorize(&m, &env, &user(&[Role::Deployer])).unwrap();
    assert_eq!(ok.required(), &[Perm::ReleaseCreate, Perm::EnvSet]);
    assert_eq!(ok.permission(), Perm::EnvSet);
    let ok = authorize(&m, &|_| None, &user(&[Role::Deployer])).unwrap();
    assert_eq!(ok.permission(), Perm::ReleaseCreate);
    assert_eq!(ok.vars(), &[("app", "x".to_owned())]);
}

/// The rack fills every env value into a manifest service's answer: a token that may read
/// secrets but not env values (shown none of a release's) may not read it either.
#[test]
fn a_manifest_service_needs_env_read_beside_secret_read() {
    let target = "/apps/x/manifest/services/web?";
    check(&user(&[Role::Admin]), req("GET", target), "allow");
    check(
        &token(&["convox:secret:read", "convox:env:read"], &[Role::Admin]),
        req("GET", target),
        "allow",
    );
    check(
        &token(&["convox:secret:read"], &[Role::Admin]),
        req("GET", target),
        "token_scope(convox:env:read)",
    );
    check(
        &user(&[Role::Deployer]),
        req("GET", target),
        "permission_denied(convox:secret:read)",
    );
}
