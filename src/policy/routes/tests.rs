//! Tests of the route table against the spec's list of routes, typed by hand from section 3 of
//! `convox-api.md`, and of the table's own consistency rules.

use std::collections::BTreeSet;

use super::*;

/// Every route of section 3, as the spec writes it (100 routes plus `/auth` and `/check`).
const SPEC_ROUTES: &[&str] = &[
    // 3.1
    "GET /check",
    "GET /auth",
    // 3.2
    "GET /apps",
    "POST /apps",
    "GET /apps/{name}",
    "PUT /apps/{name}",
    "DELETE /apps/{name}",
    "POST /apps/{name}/cancel",
    "GET /apps/{app}/diagnose",
    "SOCKET /apps/{name}/logs",
    "GET /apps/{app}/manifest/services/{service}",
    "GET /apps/{name}/metrics",
    "GET /apps/{app}/metrics-by-service",
    "GET /apps/{app}/configs",
    "GET /apps/{app}/configs/{name}",
    "PUT /apps/{app}/configs/{name}",
    "GET /apps/{app}/budget",
    "POST /apps/{app}/budget",
    "DELETE /apps/{app}/budget",
    "POST /apps/{app}/budget/reset",
    "GET /apps/{app}/budget/shutdown-state",
    "POST /apps/{app}/budget/simulate-shutdown",
    "POST /apps/{app}/budget/dismiss-recovery",
    "GET /apps/{app}/cost",
    "GET /apps/{app}/balancers",
    // 3.3
    "POST /apps/{app}/objects/{key:.*}",
    "GET /apps/{app}/objects/{key:.*}",
    "HEAD /apps/{app}/objects/{key:.*}",
    "DELETE /apps/{app}/objects/{key:.*}",
    "GET /apps/{app}/objects",
    "POST /apps/{app}/builds",
    "GET /apps/{app}/builds",
    "GET /apps/{app}/builds/{id}",
    "GET /apps/{app}/builds/{id}.tgz",
    "POST /apps/{app}/builds/import",
    "POST /apps/{app}/builds/{id}/image",
    "PUT /apps/{app}/builds/{id}",
    "SOCKET /apps/{app}/builds/{id}/logs",
    // 3.4
    "GET /apps/{app}/releases",
    "GET /apps/{app}/releases/{id}",
    "POST /apps/{app}/releases",
    "POST /apps/{app}/releases/{id}/promote",
    // 3.5
    "GET /apps/{app}/processes",
    "GET /apps/{app}/processes/{pid}",
    "DELETE /apps/{app}/processes/{pid}",
    "POST /apps/{app}/services/{service}/processes",
    "SOCKET /apps/{app}/processes/{pid}/exec",
    "SOCKET /apps/{app}/processes/{pid}/logs",
    "SOCKET /apps/{app}/services/{service}/logs",
    "GET /apps/{app}/processes/{pid}/files",
    "POST /apps/{app}/processes/{pid}/files",
    "DELETE /apps/{app}/processes/{pid}/files",
    "GET /apps/{app}/services",
    "PUT /apps/{app}/services/{name}",
    "POST /apps/{app}/services/{name}/restart",
    "GET /apps/{app}/services/{service}/metrics",
    "POST /apps/{app}/services/{service}/scale-override",
    "POST /apps/{app}/services/{service}/triggers/enable",
    "POST /apps/{app}/services/{service}/triggers/disable",
    "POST /apps/{app}/services/{service}/triggers/threshold",
    // 3.6
    "GET /apps/{app}/resources",
    "GET /apps/{app}/resources/{name}",
    "GET /apps/{app}/resources/{name}/data",
    "PUT /apps/{app}/resources/{name}/data",
    "SOCKET /apps/{app}/resources/{name}/console",
    // 3.7
    "GET /resources",
    "OPTIONS /resources",
    "POST /resources",
    "GET /resources/{name}",
    "PUT /resources/{name}",
    "DELETE /resources/{name}",
    "POST /resources/{name}/links",
    "DELETE /resources/{name}/links/{app}",
    // 3.8
    "GET /certificates",
    "POST /certificates",
    "POST /certificates/generate",
    "POST /certificates/{id}/renew",
    "DELETE /certificates/{id}",
    "PUT /apps/{app}/ssl/{service}/{port}",
    "GET /letsencrypt/config",
    "PUT /letsencrypt/config",
    // 3.9
    "GET /instances",
    "DELETE /instances/{id}",
    "POST /instances/keyroll",
    "SOCKET /instances/{id}/shell",
    "GET /registries",
    "POST /registries",
    "DELETE /registries/{server:.*}",
    "ANY /v2/{path:.*}",
    "SOCKET /proxy/{host}/{port}",
    "ANY /custom/http/proxy/{path:.*}",
    // 3.10
    "GET /system",
    "PUT /system",
    "GET /system/capacity",
    "GET /system/metrics",
    "GET /system/processes",
    "GET /system/releases",
    "SOCKET /system/logs",
    "POST /system/jwt/token",
    "PUT /system/jwt/rotate",
    "POST /system/karpenter/cleanup",
    "POST /events",
];

/// The placeholders `routes.go` registers with an empty method and path (end of 3.10).
const SPEC_PLACEHOLDERS: &[&str] = &[
    "Initialize",
    "Start",
    "SystemInstall",
    "SystemUninstall",
    "Workers",
];

/// What the CLI sends before every WebSocket (2.6, 3.11), answered locally.
const SPEC_LOCAL: &[&str] = &["GET /machines", "GET /racks"];

fn key(r: &RouteRule) -> String {
    format!("{} {}", r.method_label(), r.spec_path())
}

fn check_same(what: &str, spec: &[&str], table: Vec<String>) {
    let spec: BTreeSet<String> = spec.iter().map(|s| (*s).to_owned()).collect();
    let table_set: BTreeSet<String> = table.iter().cloned().collect();
    assert_eq!(
        table_set.len(),
        table.len(),
        "{what}: a route is listed twice"
    );
    let missing: Vec<_> = spec.difference(&table_set).collect();
    let extra: Vec<_> = table_set.difference(&spec).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: in the spec, not in ROUTES: {missing:?}; in ROUTES, not in the spec: {extra:?}"
    );
}

#[test]
fn every_spec_route_is_in_the_table_and_nothing_else_is_forwarded() {
    assert_eq!(SPEC_ROUTES.len(), 102);
    let of = |d: Disposition| ROUTES.iter().filter(move |r| r.disposition == d);
    check_same(
        "forwarded",
        SPEC_ROUTES,
        of(Disposition::Forward).map(key).collect(),
    );
    check_same(
        "local",
        SPEC_LOCAL,
        of(Disposition::AnswerLocally).map(key).collect(),
    );
    let placeholders: Vec<String> = of(Disposition::Unreachable)
        .map(|r| {
            let n = r.name.trim_start_matches("placeholder.");
            n.split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect();
    check_same("placeholders", SPEC_PLACEHOLDERS, placeholders);
    for r in of(Disposition::Unreachable) {
        assert!(r.method.is_empty() && r.path.is_empty(), "{}", r.name);
    }
}

#[test]
fn names_are_unique_and_patterns_well_formed() {
    let names: BTreeSet<&str> = ROUTES.iter().map(|r| r.name).collect();
    assert_eq!(names.len(), ROUTES.len());
    for r in ROUTES
        .iter()
        .filter(|r| r.disposition != Disposition::Unreachable)
    {
        assert!(!r.name.is_empty());
        assert!(r.path.starts_with('/'), "{}", r.name);
        let segs: Vec<&str> = r.path.split('/').skip(1).collect();
        for (i, s) in segs.iter().enumerate() {
            assert!(!s.is_empty(), "{}: empty pattern segment", r.name);
            if s.starts_with("{*") {
                assert_eq!(i + 1, segs.len(), "{}: a tail is last", r.name);
                assert!(r.tail.is_some(), "{}: a tail needs a grammar", r.name);
            }
        }
        if r.tail.is_some() {
            assert!(r.path.contains("/{*"), "{}", r.name);
        }
        assert!(
            ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "ANY"].contains(&r.method),
            "{}",
            r.name
        );
    }
}

#[test]
fn websockets_are_gets_with_header_options_only() {
    let sockets: Vec<_> = ROUTES.iter().filter(|r| r.websocket).collect();
    assert!(sockets.len() >= 8, "{}", sockets.len());
    for r in sockets {
        assert_eq!(r.method, "GET", "{}", r.name);
        assert_eq!(r.params.body, Body::None, "{}", r.name);
        assert!(
            r.params.form.is_empty() && r.params.query.is_empty(),
            "{}",
            r.name
        );
    }
}

#[test]
fn no_key_is_read_from_two_places_and_no_query_key_shadows_a_form_key() {
    for r in ROUTES {
        let keys: Vec<(&str, Key)> = r.keys().collect();
        for (i, (part, k)) in keys.iter().enumerate() {
            for (other, k2) in keys.iter().skip(i + 1) {
                let documented = r.name == "rack.update" && k.name == "version";
                assert!(
                    documented || !k.name.eq_ignore_ascii_case(k2.name),
                    "{}: {} in {part} and {other}",
                    r.name,
                    k.name
                );
            }
        }
        if r.params.body != Body::Form {
            assert!(
                r.params.form.is_empty(),
                "{}: form keys without a form body",
                r.name
            );
        }
        if r.method != "GET" && !r.params.form.is_empty() {
            assert!(r.params.query.is_empty(), "{}", r.name);
        }
    }
}

#[test]
fn rules_name_parameters_the_route_takes() {
    for r in ROUTES {
        for rule in r.rules {
            let known = |k: &str| r.keys().any(|(_, key)| key.name == k);
            match &rule.when {
                When::Present(k) | When::PresentNotIn(k, _) | When::AbsentOrNotIn(k, _) => {
                    assert!(known(k), "{}: rule on unknown parameter {k}", r.name)
                }
                When::VarNotEq(v, _) => {
                    assert!(r.path.contains(&format!("{{{v}}}")), "{}: {v}", r.name)
                }
                When::VarNotUnder(v, _) => {
                    assert!(r.path.contains(&format!("{{*{v}}}")), "{}: {v}", r.name)
                }
                When::MethodNotIn(_) => assert_eq!(r.method, "ANY", "{}", r.name),
                When::Always => {}
            }
            assert_ne!(rule.require, r.permission, "{}: a rule must raise", r.name);
        }
    }
}

#[test]
fn flags_match_the_spec() {
    let named = |n: &str| by_name(n).map(|r| (r.mints_jwt, r.secrets)).unwrap();
    assert!(named("jwt.create").0);
    assert_eq!(ROUTES.iter().filter(|r| r.mints_jwt).count(), 1);
    // §3.13 request side.
    for (route, key) in [
        ("release.create", "env"),
        ("config.set", "value"),
        ("registry.add", "password"),
        ("cert.import", "key"),
        ("build.image", "src-creds-pass"),
        ("rack.update", "parameters"),
        ("app.update", "parameters"),
        ("resource.create", "parameters"),
        ("resource.update", "parameters"),
        ("process.run", "Environment"),
        ("instance.shell", "Private-Key"),
    ] {
        let r = by_name(route).unwrap();
        let (_, k) = r.keys().find(|(_, k)| k.name == key).unwrap();
        assert_eq!(k.class, KeyClass::Secret, "{route} {key}");
        assert!(r.secrets.request >= Secrecy::Sensitive, "{route}");
    }
    for (route, key) in [
        ("process.run", "Command"),
        ("process.exec", "Command"),
        ("instance.shell", "Command"),
    ] {
        let r = by_name(route).unwrap();
        assert!(
            r.keys()
                .any(|(_, k)| k.name == key && k.class == KeyClass::Command),
            "{route}"
        );
    }
    // §3.13 response side: credentials.
    for route in [
        "config.list",
        "config.get",
        "registry.list",
        "registry.add",
        "app_resource.list",
        "app_resource.get",
        "app_resource.export",
        "resource.list",
        "resource.get",
        "jwt.create",
        "instance.keyroll",
    ] {
        assert_eq!(named(route).1.response, Secrecy::Credential, "{route}");
    }
    for route in ["release.list", "release.get", "release.create"] {
        assert_eq!(named(route).1.response, Secrecy::Sensitive, "{route}");
    }
    // Streaming bodies (§10 point 6).
    for route in [
        "object.create",
        "object.get",
        "build.import",
        "build.export",
        "file.get",
        "file.put",
        "app_resource.export",
        "app_resource.import",
        "image.proxy",
    ] {
        assert_ne!(by_name(route).unwrap().stream, Stream::None, "{route}");
    }
}

#[test]
fn exit_code_streams_are_websocket_routes_of_the_table() {
    for name in EXIT_CODE_STREAMS {
        let rule = ROUTES.iter().find(|r| r.name == *name);
        assert!(
            rule.is_some_and(|r| r.websocket),
            "{name} is not a WebSocket route of the table"
        );
    }
}

#[test]
fn tunnel_streams_are_the_websocket_routes_to_a_host_and_port() {
    // Every socket of the table that carries another program's bytes (a TCP tunnel to a host
    // and port), and nothing else: the others are logs and terminals, searched for the rack
    // password.
    let mut tunnels: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.websocket && r.path.ends_with("/{host}/{port}"))
        .map(|r| r.name)
        .collect();
    let mut listed = TUNNEL_STREAMS.to_vec();
    tunnels.sort_unstable();
    listed.sort_unstable();
    assert_eq!(listed, tunnels);
    assert!(!tunnels.is_empty());
}

#[test]
fn log_streams_are_the_websocket_routes_of_logs() {
    // Each log socket of the table, and nothing else: on any other socket the rack reads the
    // caller's input, and input waiting there is a command busy elsewhere.
    let mut logs: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.websocket && r.path.ends_with("/logs"))
        .map(|r| r.name)
        .collect();
    let mut listed = LOG_STREAMS.to_vec();
    logs.sort_unstable();
    listed.sort_unstable();
    assert_eq!(listed, logs);
    assert!(LOG_STREAMS.iter().all(|n| !EXIT_CODE_STREAMS.contains(n)));
}
