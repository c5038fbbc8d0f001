//! The route table and the matcher, mirroring the rack's gorilla/mux router (spec §3, §1.5):
//! first match wins, `{x}` is one non-empty segment, `{x:.*}` is the rest of the path, paths are
//! matched exactly (no cleaning, no trailing-slash redirects), and a `SOCKET` route is a GET
//! carrying the header `Upgrade: websocket` (exact value).
//!
//! Invariant: resolution is a pure function of method, decoded path and that header; a path that
//! matches with the wrong method is 405 only when every other matcher of the route agreed, as in
//! gorilla/mux; anything else unmatched is 404. Both are answered before authentication.

use crate::routes::Kind::{Plain, Socket};

/// Every route this mock serves; the names follow the rack's handlers (`pkg/api/routes.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteId {
    Check,
    Auth,
    AppList,
    AppCreate,
    AppGet,
    AppUpdate,
    AppDelete,
    AppCancel,
    AppLogs,
    AppBudgetGet,
    AppDiagnose,
    AppConfigList,
    AppConfigGet,
    AppConfigSet,
    ObjectList,
    ObjectStore,
    ObjectFetch,
    ObjectExists,
    ObjectDelete,
    BuildCreate,
    BuildList,
    BuildGet,
    BuildUpdate,
    BuildImportImage,
    BuildLogs,
    ReleaseList,
    ReleaseCreate,
    ReleaseGet,
    ReleasePromote,
    ProcessList,
    ProcessGet,
    ProcessStop,
    ProcessExec,
    ProcessLogs,
    ProcessRun,
    ServiceList,
    ServiceUpdate,
    ServiceRestart,
    ServiceLogs,
    SystemGet,
    SystemUpdate,
    SystemProcesses,
    SystemReleases,
    SystemLogs,
}

/// Plain HTTP, or a WebSocket (`SOCKET` in `routes.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    Socket,
}

/// One row of the table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RouteDef {
    pub method: &'static str,
    pub pattern: &'static str,
    pub id: RouteId,
    pub kind: Kind,
}

/// Path variables captured by a match, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Vars(Vec<(&'static str, String)>);

/// The outcome of routing one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    Found {
        route: &'static RouteDef,
        vars: Vars,
    },
    MethodNotAllowed,
    NotFound,
}

const fn route(method: &'static str, pattern: &'static str, id: RouteId, kind: Kind) -> RouteDef {
    RouteDef {
        method,
        pattern,
        id,
        kind,
    }
}

/// The table, in registration order. `SOCKET` routes are listed with method `GET`.
pub(crate) static ROUTES: &[RouteDef] = &[
    route("GET", "/check", RouteId::Check, Plain),
    route("GET", "/auth", RouteId::Auth, Plain),
    route("GET", "/apps", RouteId::AppList, Plain),
    route("POST", "/apps", RouteId::AppCreate, Plain),
    route("GET", "/apps/{name}", RouteId::AppGet, Plain),
    route("PUT", "/apps/{name}", RouteId::AppUpdate, Plain),
    route("DELETE", "/apps/{name}", RouteId::AppDelete, Plain),
    route("POST", "/apps/{name}/cancel", RouteId::AppCancel, Plain),
    route("GET", "/apps/{name}/logs", RouteId::AppLogs, Socket),
    route("GET", "/apps/{app}/budget", RouteId::AppBudgetGet, Plain),
    route("GET", "/apps/{app}/diagnose", RouteId::AppDiagnose, Plain),
    route("GET", "/apps/{app}/configs", RouteId::AppConfigList, Plain),
    route(
        "GET",
        "/apps/{app}/configs/{name}",
        RouteId::AppConfigGet,
        Plain,
    ),
    route(
        "PUT",
        "/apps/{app}/configs/{name}",
        RouteId::AppConfigSet,
        Plain,
    ),
    route("GET", "/apps/{app}/objects", RouteId::ObjectList, Plain),
    route(
        "POST",
        "/apps/{app}/objects/{key:.*}",
        RouteId::ObjectStore,
        Plain,
    ),
    route(
        "GET",
        "/apps/{app}/objects/{key:.*}",
        RouteId::ObjectFetch,
        Plain,
    ),
    route(
        "HEAD",
        "/apps/{app}/objects/{key:.*}",
        RouteId::ObjectExists,
        Plain,
    ),
    route(
        "DELETE",
        "/apps/{app}/objects/{key:.*}",
        RouteId::ObjectDelete,
        Plain,
    ),
    route("POST", "/apps/{app}/builds", RouteId::BuildCreate, Plain),
    route("GET", "/apps/{app}/builds", RouteId::BuildList, Plain),
    route("GET", "/apps/{app}/builds/{id}", RouteId::BuildGet, Plain),
    route(
        "PUT",
        "/apps/{app}/builds/{id}",
        RouteId::BuildUpdate,
        Plain,
    ),
    route(
        "POST",
        "/apps/{app}/builds/{id}/image",
        RouteId::BuildImportImage,
        Plain,
    ),
    route(
        "GET",
        "/apps/{app}/builds/{id}/logs",
        RouteId::BuildLogs,
        Socket,
    ),
    route("GET", "/apps/{app}/releases", RouteId::ReleaseList, Plain),
    route(
        "POST",
        "/apps/{app}/releases",
        RouteId::ReleaseCreate,
        Plain,
    ),
    route(
        "GET",
        "/apps/{app}/releases/{id}",
        RouteId::ReleaseGet,
        Plain,
    ),
    route(
        "POST",
        "/apps/{app}/releases/{id}/promote",
        RouteId::ReleasePromote,
        Plain,
    ),
    route("GET", "/apps/{app}/processes", RouteId::ProcessList, Plain),
    route(
        "GET",
        "/apps/{app}/processes/{pid}",
        RouteId::ProcessGet,
        Plain,
    ),
    route(
        "DELETE",
        "/apps/{app}/processes/{pid}",
        RouteId::ProcessStop,
        Plain,
    ),
    route(
        "GET",
        "/apps/{app}/processes/{pid}/exec",
        RouteId::ProcessExec,
        Socket,
    ),
    route(
        "GET",
        "/apps/{app}/processes/{pid}/logs",
        RouteId::ProcessLogs,
        Socket,
    ),
    route(
        "POST",
        "/apps/{app}/services/{service}/processes",
        RouteId::ProcessRun,
        Plain,
    ),
    route("GET", "/apps/{app}/services", RouteId::ServiceList, Plain),
    route(
        "PUT",
        "/apps/{app}/services/{name}",
        RouteId::ServiceUpdate,
        Plain,
    ),
    route(
        "POST",
        "/apps/{app}/services/{name}/restart",
        RouteId::ServiceRestart,
        Plain,
    ),
    route(
        "GET",
        "/apps/{app}/services/{service}/logs",
        RouteId::ServiceLogs,
        Socket,
    ),
    route("GET", "/system", RouteId::SystemGet, Plain),
    route("PUT", "/system", RouteId::SystemUpdate, Plain),
    route("GET", "/system/processes", RouteId::SystemProcesses, Plain),
    route("GET", "/system/releases", RouteId::SystemReleases, Plain),
    route("GET", "/system/logs", RouteId::SystemLogs, Socket),
];

// === impl Vars ===

impl Vars {
    /// The variable `name`, or the empty string (Go's `mux.Vars(r)[name]`).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Routes a request. `upgrade_websocket` is whether some `Upgrade` header equals `websocket`.
pub(crate) fn resolve(method: &str, path: &str, upgrade_websocket: bool) -> Resolution {
    let mut method_mismatch = false;
    for def in ROUTES {
        let Some(vars) = match_pattern(def.pattern, path) else {
            continue;
        };
        // gorilla/mux: a failing header matcher makes the route not match at all; only a
        // failing method matcher, with every other matcher passing, is a method mismatch.
        if def.kind == Socket && !upgrade_websocket {
            continue;
        }
        if def.method == method {
            return Resolution::Found { route: def, vars };
        }
        method_mismatch = true;
    }
    if method_mismatch {
        Resolution::MethodNotAllowed
    } else {
        Resolution::NotFound
    }
}

/// Matches a decoded path against one pattern.
fn match_pattern(pattern: &'static str, path: &str) -> Option<Vars> {
    let mut rest = path.strip_prefix('/')?;
    let mut vars = Vars::default();
    let mut segments = pattern.strip_prefix('/')?.split('/').peekable();
    while let Some(seg) = segments.next() {
        if let Some(var) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if let Some(name) = var.strip_suffix(":.*") {
                vars.0.push((name, rest.to_owned()));
                return Some(vars);
            }
            let (value, tail) = split_segment(rest);
            if value.is_empty() {
                return None;
            }
            vars.0.push((var, value.to_owned()));
            rest = tail;
        } else {
            let (value, tail) = split_segment(rest);
            if value != seg {
                return None;
            }
            rest = tail;
        }
        match (segments.peek().is_some(), rest.strip_prefix('/')) {
            (true, Some(tail)) => rest = tail,
            (true, None) => return None,
            (false, _) => {}
        }
    }
    rest.is_empty().then_some(vars)
}

/// Splits off the first segment; the remainder keeps its leading `/`.
fn split_segment(path: &str) -> (&str, &str) {
    match path.find('/') {
        Some(at) => path.split_at(at),
        None => (path, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: &str, path: &str, ws: bool) -> (RouteId, Vars) {
        match resolve(method, path, ws) {
            Resolution::Found { route, vars } => (route.id, vars),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn variables_capture_one_segment_and_rest_captures_all() {
        let (id, vars) = found("GET", "/apps/x/releases/R1", false);
        assert_eq!(id, RouteId::ReleaseGet);
        assert_eq!((vars.get("app"), vars.get("id")), ("x", "R1"));
        let (id, vars) = found("POST", "/apps/x/objects/tmp/a/b.tgz", false);
        assert_eq!(id, RouteId::ObjectStore);
        assert_eq!(vars.get("key"), "tmp/a/b.tgz");
        let (_, vars) = found("POST", "/apps/x/objects/", false);
        assert_eq!(vars.get("key"), "");
    }

    #[test]
    fn paths_match_exactly() {
        assert_eq!(resolve("GET", "/apps/", false), Resolution::NotFound);
        assert_eq!(
            resolve("GET", "/apps//releases", false),
            Resolution::NotFound
        );
        assert_eq!(resolve("GET", "/machines", false), Resolution::NotFound);
        assert_eq!(resolve("GET", "/racks", false), Resolution::NotFound);
        assert_eq!(resolve("GET", "apps", false), Resolution::NotFound);
        assert_eq!(
            resolve("GET", "/apps/x/processes/p/exec/more", true),
            Resolution::NotFound
        );
    }

    #[test]
    fn a_known_path_with_another_method_is_405() {
        assert_eq!(
            resolve("PATCH", "/apps", false),
            Resolution::MethodNotAllowed
        );
        assert_eq!(
            resolve("HEAD", "/system", false),
            Resolution::MethodNotAllowed
        );
    }

    #[test]
    fn socket_routes_need_the_upgrade_header_first() {
        assert_eq!(found("GET", "/apps/x/logs", true).0, RouteId::AppLogs);
        // Spec §1.5: a GET to a WebSocket-only route without `Upgrade: websocket` is 404.
        assert_eq!(resolve("GET", "/apps/x/logs", false), Resolution::NotFound);
        assert_eq!(resolve("POST", "/apps/x/logs", false), Resolution::NotFound);
        assert_eq!(
            resolve("POST", "/apps/x/logs", true),
            Resolution::MethodNotAllowed
        );
        assert_eq!(resolve("GET", "/system/logs", false), Resolution::NotFound);
    }
}
