//! Routing, authentication and parameter precedence as the rack's stdapi stack does them: empty
//! 404/405 answered before authentication (spec §1.5, §1.6), 401 `invalid authentication`
//! (spec §2.2), and Go's form/query/header precedence with the first duplicate winning (§1.3).
//!
//! Invariant: every expectation here is a literal from the spec or the rack's Go source.

use mock_rack::ParamSource;

use crate::support::{self, AUTH, call, call_form, cli, cli_with, send};

#[tokio::test]
async fn an_unknown_route_is_404_with_an_empty_body_even_unauthenticated() {
    let rack = support::rack().await;
    for target in ["/machines?", "/racks?", "/apps/x/environment?", "/apps/"] {
        let reply = call(&rack, "GET", target).await;
        assert_eq!(reply.status, 404, "{target}");
        assert!(reply.body.is_empty(), "{target}");
        assert_eq!(reply.header("content-length"), Some("0"));
        assert_eq!(reply.header("content-type"), None);
        assert_eq!(
            reply.header("request-id"),
            None,
            "the router answers, not a route"
        );
    }
    let bad = cli(&rack, "GET", "/machines?").replace(AUTH, "Basic Y29udm94Ondyb25n");
    let reply = send(&rack, bad).await;
    assert_eq!((reply.status, reply.body.len()), (404, 0));
}

#[tokio::test]
async fn a_known_path_with_the_wrong_method_is_405_with_an_empty_body() {
    let rack = support::rack().await;
    let reply = call(&rack, "PATCH", "/apps?").await;
    assert_eq!((reply.status, reply.body.len()), (405, 0));
    // A GET to a socket route without `Upgrade: websocket` does not match at all.
    let reply = call(&rack, "GET", "/apps/x/logs?").await;
    assert_eq!((reply.status, reply.body.len()), (404, 0));
}

#[tokio::test]
async fn a_wrong_password_gets_the_racks_401() {
    let rack = support::rack().await;
    // base64("convox:wrong")
    let raw = cli(&rack, "GET", "/apps?").replace(AUTH, "Basic Y29udm94Ondyb25n");
    let reply = send(&rack, raw).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.text(), "invalid authentication\n");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Basic realm=\"convox\"")
    );
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert!(reply.header("request-id").is_some());
    assert_eq!(rack.received()[0].status, 401);

    // No credentials at all, and a JSON client (spec §1.5).
    let raw = cli(&rack, "GET", "/apps?")
        .replace(&format!("Authorization: {AUTH}\r\n"), "")
        .replace("Accept: */*", "Accept: application/json");
    let reply = send(&rack, raw).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.text(), "{\"error\":\"invalid authentication\"}\n");
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn health_and_auth_routes() {
    let rack = support::rack().await;
    let raw = format!(
        "GET /check HTTP/1.1\r\nHost: {}\r\n\r\n",
        support::host(&rack)
    );
    let reply = send(&rack, raw).await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
    let reply = call(&rack, "GET", "/auth?").await;
    assert_eq!((reply.status, reply.text()), (200, "ok\n"));
}

#[tokio::test]
async fn the_first_of_duplicate_parameters_wins() {
    let rack = support::rack().await;
    let reply = call_form(&rack, "POST", "/apps?name=third", "name=first&name=second").await;
    assert_eq!(reply.json()["name"], "first");
    let used = rack.received()[0].param("name").cloned().unwrap();
    assert_eq!(
        (used.value.as_str(), used.source),
        ("first", ParamSource::Form)
    );
    let list = call(&rack, "GET", "/apps/x/releases?limit=1&limit=5")
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn form_beats_query_beats_header() {
    let rack = support::rack().await;
    let header = [("Name", "fromheader")];
    let cases = [
        (
            Some("name=fromform"),
            "/apps?name=fromquery",
            "fromform",
            ParamSource::Form,
        ),
        (
            None,
            "/apps?name=fromquery",
            "fromquery",
            ParamSource::Query,
        ),
        (None, "/apps?", "fromheader", ParamSource::Header),
    ];
    for (form, target, expected, source) in cases {
        rack.clear_received();
        let reply = send(&rack, cli_with(&rack, "POST", target, &header, form)).await;
        assert_eq!(reply.status, 200, "{target}");
        assert_eq!(reply.json()["name"], expected);
        let used = rack.received()[0].param("name").cloned().unwrap();
        assert_eq!((used.value.as_str(), used.source), (expected, source));
    }
}

/// Go parses a body as a form only for POST, PUT and PATCH (spec §1.3): `c.Value("prefix")` on a
/// GET sees the query string but not the GET's form body.
#[tokio::test]
async fn a_get_form_body_is_ignored() {
    let rack = support::rack().await;
    let reply = send(
        &rack,
        cli_with(&rack, "GET", "/apps/x/objects?", &[], Some("prefix=..")),
    )
    .await;
    assert_eq!((reply.status, reply.text()), (501, "unimplemented\n"));
    assert!(rack.received()[0].params.is_empty());
    assert_eq!(rack.received()[0].body, "prefix=..");
    let reply = call(&rack, "GET", "/apps/x/objects?prefix=..").await;
    assert_eq!(reply.status, 400);
}

#[tokio::test]
async fn the_actor_header_is_recorded() {
    let rack = support::rack().await;
    let raw = cli_with(
        &rack,
        "GET",
        "/apps?",
        &[("X-Convox-Actor", "alice@example.com")],
        None,
    );
    assert_eq!(send(&rack, raw).await.status, 200);
    assert_eq!(call(&rack, "GET", "/apps?").await.status, 200);
    // `Convox-Actor` wins over `X-Convox-Actor` (spec §2.2): a gateway that let a client's
    // through would show here.
    let both = cli_with(
        &rack,
        "GET",
        "/apps?",
        &[
            ("X-Convox-Actor", "alice@example.com"),
            ("Convox-Actor", "mallory\t@example.com "),
        ],
        None,
    );
    assert_eq!(send(&rack, both).await.status, 200);
    let received = rack.received();
    assert_eq!(received[0].actor.as_deref(), Some("alice@example.com"));
    assert_eq!(received[1].actor.as_deref(), Some("rack-password"));
    assert_eq!(received[2].actor.as_deref(), Some("mallory@example.com"));
}

#[tokio::test]
async fn errors_and_malformed_targets() {
    let rack = support::rack().await;
    let reply = call(&rack, "GET", "/apps/nope?").await;
    assert_eq!((reply.status, reply.text()), (404, "app not found: nope\n"));
    let reply = call(&rack, "GET", "/apps/x/releases?limit=ten").await;
    assert_eq!(
        (reply.status, reply.text()),
        (500, "strconv.Atoi: parsing \"ten\": invalid syntax\n")
    );
    let reply = call(&rack, "PUT", "/system?").await;
    assert_eq!(reply.status, 501);
    assert!(
        reply
            .text()
            .starts_with("direct rack doesn't support update")
    );
    let reply = call(&rack, "GET", "/apps/%zz?").await;
    assert_eq!((reply.status, reply.text()), (400, "400 Bad Request"));
}

#[tokio::test]
async fn requests_are_recorded_in_order_with_raw_bytes() {
    let rack = support::rack().await;
    call(&rack, "GET", "/system?").await;
    call_form(&rack, "POST", "/apps/x/releases?", "env=A%3DB").await;
    call(&rack, "GET", "/machines?").await;
    let received = rack.received();
    let summary: Vec<(u64, &str, &str, u16)> = received
        .iter()
        .map(|r| (r.seq, r.method.as_str(), r.target.as_str(), r.status))
        .collect();
    assert_eq!(
        summary,
        [
            (0, "GET", "/system?", 200),
            (1, "POST", "/apps/x/releases?", 200),
            (2, "GET", "/machines?", 404)
        ]
    );
    assert_eq!(received[1].body, "env=A%3DB");
    assert_eq!(received[1].header("version"), Some("dev"));
    rack.clear_received();
    assert!(rack.received().is_empty());
    rack.set_recording(false);
    call(&rack, "GET", "/system?").await;
    assert!(rack.received().is_empty());
}

/// The test-only switch: handler answers come gzip-encoded whatever `Accept-Encoding` said (a
/// misbehaving rack); the router's empty answers stay empty; off again, answers are plain.
#[tokio::test]
async fn the_gzip_switch_encodes_every_handler_answer() {
    let rack = support::rack().await;
    let plain = call(&rack, "GET", "/apps/x/releases?").await;
    assert_eq!(plain.header("content-encoding"), None);
    rack.set_gzip_answers(true);
    // No `Accept-Encoding` at all: still gzip.
    let raw = cli(&rack, "GET", "/apps/x/releases?").replace("Accept-Encoding: gzip\r\n", "");
    let gzipped = send(&rack, raw).await;
    assert_eq!(gzipped.status, 200);
    assert_eq!(gzipped.header("content-encoding"), Some("gzip"));
    assert_eq!(gzipped.header("content-type"), plain.header("content-type"));
    assert_eq!(&gzipped.body[..3], [0x1F, 0x8B, 0x08], "a gzip member");
    // Stored blocks: the plain answer stands in clear inside the stream.
    assert!(
        gzipped
            .body
            .windows(plain.body.len())
            .any(|w| w == plain.body),
        "the answer inside the gzip"
    );
    assert_eq!(gzipped.body.len(), plain.body.len() + 10 + 5 + 8);
    let refused = send(
        &rack,
        cli(&rack, "GET", "/apps?").replace(AUTH, "Basic eDp5"),
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("content-encoding"), Some("gzip"));
    let unknown = call(&rack, "GET", "/machines?").await;
    assert_eq!((unknown.status, unknown.body.len()), (404, 0));
    assert_eq!(unknown.header("content-encoding"), None);
    rack.set_gzip_answers(false);
    let again = call(&rack, "GET", "/apps/x/releases?").await;
    assert_eq!(again.header("content-encoding"), None);
    assert_eq!(again.body, plain.body);
}
