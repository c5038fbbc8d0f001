//! The bad input table of issue 3: credentials, identities, paths (point 6), parameters
//! (point 6), routes outside the table, an oversized header block and a client that never
//! finishes its headers. Every case gets a clear status, reaches nothing at the rack, and is
//! recorded: a `CommandRequested` with decision deny and the reason's kind when the caller
//! authenticated, otherwise no `CommandRequested` at all and one `DenialsCounted` at the stop.
//!
//! One row is bad input from the other side: a gzip-encoded answer of the rack on a masking
//! route. That call is allowed and reaches the rack, as it must; the answer cannot be read to
//! be masked, so the client gets a 502 and nothing of it, and the call is recorded as allowed
//! with a 502 completion.
//!
//! **Invariant:** the table goes through one `check` (the rack's answers through
//! `check_gzip_answer`); each test names one case.

use std::time::{Duration, Instant};

use events::event::{Decision, Event, Role};
use events::time::{Clock, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    Body, CAPTURED_AUTH, TestGateway, basic, completed, denials, eventually_within, read_reply,
    requested, unknown_token,
};

/// How the request authenticates.
enum Auth {
    /// The dev admin token.
    Dev,
    /// No `Authorization` header.
    Missing,
    /// This exact `Authorization` value.
    Raw(String),
    /// The dev token's header, twice.
    Twice,
    /// A well-formed token nobody created.
    Unknown,
    /// A token of a deployer, revoked.
    Revoked,
    /// A token of a deployer that expired a second ago.
    Expired,
    /// A token whose owner (a deployer) was disabled.
    OwnerDisabled,
    /// A token with every scope whose owner held viewer and deployer and lost deployer.
    OwnerDemoted,
    /// A token whose owner lost their only role.
    OwnerRoleRevoked,
    /// A deployer's token scoped to app and release reads.
    ReadOnlyScope,
    /// A deployer's `cicd` token.
    Cicd,
    /// A deployer's token with every scope: it may set env and read values not classified
    /// secret.
    Deployer,
}

/// What must happen.
enum Expect {
    /// 401, no event now, one `DenialsCounted` with this reason at the stop.
    Counted(&'static str),
    /// This status and a `CommandRequested` deny with this reason.
    Recorded(u16, &'static str),
}

/// One row of the table.
struct Case {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    content_type: Option<String>,
    body: Vec<u8>,
    auth: Auth,
    expect: Expect,
    /// Sent as HTTP/1.0 instead of the CLI's HTTP/1.1.
    http_1_0: bool,
}

// === impl Case ===

impl Case {
    fn new(method: &'static str, target: impl Into<String>) -> Case {
        Case {
            method,
            target: target.into(),
            headers: Vec::new(),
            content_type: Some("application/octet-stream".into()),
            body: Vec::new(),
            auth: Auth::Dev,
            expect: Expect::Recorded(0, ""),
            http_1_0: false,
        }
    }

    fn get(target: impl Into<String>) -> Case {
        Case::new("GET", target)
    }

    fn post(target: impl Into<String>) -> Case {
        Case::new("POST", target)
    }

    fn auth(mut self, auth: Auth) -> Case {
        self.auth = auth;
        self
    }

    fn form(self, form: &str) -> Case {
        self.body("application/x-www-form-urlencoded", form.as_bytes())
    }

    fn body(mut self, content_type: &str, body: &[u8]) -> Case {
        self.content_type = Some(content_type.to_owned());
        self.body = body.to_vec();
        self
    }

    fn header(mut self, name: &str, value: &str) -> Case {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn http_1_0(mut self) -> Case {
        self.http_1_0 = true;
        self
    }

    fn counted(mut self, reason: &'static str) -> Case {
        self.expect = Expect::Counted(reason);
        self
    }

    fn denied(mut self, status: u16, reason: &'static str) -> Case {
        self.expect = Expect::Recorded(status, reason);
        self
    }

    /// The request in the CLI's shape (spec Appendix A) with this case's changes.
    fn bytes(&self, host: &str, authorization: &[String]) -> Vec<u8> {
        let version = if self.http_1_0 { "1.0" } else { "1.1" };
        let mut out = format!(
            "{} {} HTTP/{version}\r\nHost: {host}\r\nUser-Agent: convox.go/dev\r\n",
            self.method, self.target
        );
        if !self.body.is_empty() || self.method == "POST" || self.method == "PUT" {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("Accept: */*\r\n");
        for a in authorization {
            out.push_str(&format!("Authorization: {a}\r\n"));
        }
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(ct) = &self.content_type {
            out.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        out.push_str("Version: dev\r\nAccept-Encoding: gzip\r\n\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// The `Authorization` values of `auth`, after making the identity changes it needs.
async fn credentials(gw: &TestGateway, auth: &Auth) -> Vec<String> {
    let header = |secret: &str| vec![basic(&format!("convox:{secret}"))];
    let every = ["convox:*:*"];
    match auth {
        Auth::Dev => header(gw.token()),
        Auth::Missing => Vec::new(),
        Auth::Raw(v) => vec![v.clone()],
        Auth::Twice => [header(gw.token()), header(gw.token())].concat(),
        Auth::Unknown => header(&unknown_token()),
        Auth::Revoked => {
            let t = gw
                .token_for("revoked@example.com", Role::Deployer, &every)
                .await;
            gw.revoke_token(t.id).await;
            header(&t.secret)
        }
        Auth::Expired => {
            gw.grant("expired@example.com", Role::Deployer).await;
            let a_second_ago = Timestamp(Clock.now().0 - 1_000_000_000);
            let t = gw
                .issue("expired@example.com", &every, Some(a_second_ago))
                .await;
            header(&t.secret)
        }
        Auth::OwnerDisabled => {
            let t = gw
                .token_for("gone@example.com", Role::Deployer, &every)
                .await;
            gw.disable("gone@example.com").await;
            header(&t.secret)
        }
        Auth::OwnerDemoted => {
            gw.grant("demoted@example.com", Role::Viewer).await;
            let t = gw
                .token_for("demoted@example.com", Role::Deployer, &every)
                .await;
            gw.revoke_role("demoted@example.com", Role::Deployer).await;
            header(&t.secret)
        }
        Auth::OwnerRoleRevoked => {
            let t = gw
                .token_for("former@example.com", Role::Deployer, &every)
                .await;
            gw.revoke_role("former@example.com", Role::Deployer).await;
            header(&t.secret)
        }
        Auth::ReadOnlyScope => {
            let t = gw
                .token_for(
                    "reader@example.com",
                    Role::Deployer,
                    &["convox:app:read", "convox:release:read"],
                )
                .await;
            header(&t.secret)
        }
        Auth::Deployer => {
            let t = gw
                .token_for("deployer@example.com", Role::Deployer, &every)
                .await;
            header(&t.secret)
        }
        Auth::Cicd => {
            gw.grant("ci-owner@example.com", Role::Deployer).await;
            let scopes = rack_gateway::policy::roles::cicd_scopes();
            let scopes: Vec<&str> = scopes.iter().map(|p| p.0.as_str()).collect();
            let t = gw.issue("ci-owner@example.com", &scopes, None).await;
            header(&t.secret)
        }
    }
}

/// Runs one case on a fresh gateway; returns the text of the answer.
async fn check(case: Case) -> String {
    let gw = TestGateway::start().await;
    let authorization = credentials(&gw, &case.auth).await;
    let since = gw.head();
    let raw = case.bytes(&gw.proxy().to_string(), &authorization);
    let what = format!("{} {}", case.method, case.target);
    let reply = gw.send_raw(&raw).await;
    let (status, reason) = match case.expect {
        Expect::Counted(r) => (401, r),
        Expect::Recorded(s, r) => (s, r),
    };
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
    if status == 404 {
        assert!(
            reply.body.is_empty(),
            "{what}: the CLI expects an empty 404"
        );
    } else {
        assert!(
            reply.text().ends_with(&format!("({reason})\n")),
            "{what}: the answer names {reason}: {:?}",
            reply.text()
        );
    }
    if status == 401 {
        assert!(reply.header("www-authenticate").is_some(), "{what}");
    }
    if matches!(case.expect, Expect::Counted(_)) {
        // A client without credentials keeps no place on the listener.
        assert_eq!(reply.header("connection"), Some("close"), "{what}");
    }
    assert!(
        gw.rack().received().is_empty(),
        "{what} reached the rack: {:?}",
        gw.rack().received()
    );
    let events = gw.events_since(since).await;
    let decided: Vec<_> = events.iter().filter_map(requested).collect();
    match case.expect {
        Expect::Counted(_) => {
            assert!(decided.is_empty(), "{what}: unauthenticated, yet recorded");
        }
        Expect::Recorded(..) => {
            assert_eq!(decided.len(), 1, "{what}: one CommandRequested");
            let c = decided[0];
            assert_eq!(
                (c.decision, c.reason.as_str()),
                (Decision::Deny, reason),
                "{what}"
            );
            assert_eq!(c.request.0, reply.request_id(), "{what}");
            assert_eq!(c.method, case.method, "{what}");
        }
    }
    let finished = gw.finish().await;
    // Read after the stop, which flushes the completions queued in the background.
    let after = finished.since(since);
    assert!(
        after.iter().all(|r| crate::support::completed(r).is_none()),
        "{what}: a denial has no completion"
    );
    let counted: Vec<_> = denials(&after);
    match case.expect {
        Expect::Counted(r) => assert_eq!(
            counted,
            [("127.0.0.1".to_owned(), r.to_owned(), 1)],
            "{what}: counted at the stop"
        ),
        Expect::Recorded(..) => assert!(counted.is_empty(), "{what}: {counted:?}"),
    }
    reply.text()
}

/// The handshake of a log socket (spec §4.1).
fn logs_upgrade() -> Case {
    Case::get("/apps/x/logs")
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13")
}

fn releases_env() -> Case {
    Case::post("/apps/x/releases?").form("env=A%3DB")
}

// === Credentials ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_authorization() {
    check(
        Case::get("/apps?")
            .auth(Auth::Missing)
            .counted("missing_credentials"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_basic_credentials() {
    check(
        Case::get("/apps?")
            .auth(Auth::Raw("Basic !!!!".into()))
            .counted("malformed_basic"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_without_a_colon() {
    check(
        Case::get("/apps?")
            .auth(Auth::Raw(basic("convox")))
            .counted("malformed_basic"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_scheme() {
    check(
        Case::get("/apps?")
            .auth(Auth::Raw("Digest username=\"convox\"".into()))
            .counted("unsupported_scheme"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_authorization_header() {
    let huge = basic(&format!("convox:rgw_{}", "A".repeat(1100)));
    assert!(huge.len() > 1024);
    check(
        Case::get("/apps?")
            .auth(Auth::Raw(huge))
            .counted("oversized_authorization"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers() {
    check(
        Case::get("/apps?")
            .auth(Auth::Twice)
            .counted("repeated_authorization"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rack_password_instead_of_a_token() {
    check(
        Case::get("/apps?")
            .auth(Auth::Raw(CAPTURED_AUTH.into()))
            .counted("malformed_token"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_jwt_login() {
    check(
        Case::get("/apps?")
            .auth(Auth::Raw(basic(&format!("jwt:{}", unknown_token()))))
            .counted("rack_jwt_refused"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token() {
    check(
        Case::get("/apps?")
            .auth(Auth::Unknown)
            .counted("unknown_or_expired_token"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token() {
    check(
        Case::get("/apps?")
            .auth(Auth::Revoked)
            .counted("unknown_or_expired_token"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token() {
    check(
        Case::get("/apps?")
            .auth(Auth::Expired)
            .counted("unknown_or_expired_token"),
    )
    .await;
}

// === Identities ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_owner_was_disabled() {
    check(
        Case::get("/apps?")
            .auth(Auth::OwnerDisabled)
            .denied(403, "user_disabled"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_owner_was_demoted() {
    check(
        releases_env()
            .auth(Auth::OwnerDemoted)
            .denied(403, "permission_denied"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_owner_lost_their_role() {
    check(
        Case::get("/apps?")
            .auth(Auth::OwnerRoleRevoked)
            .denied(403, "no_role"),
    )
    .await;
}

/// The throw-away `GET /machines` (or `GET /racks`) before a socket is answered locally only
/// when the token's owner stands: a token whose owner was disabled or lost every role is
/// refused and recorded as any call is, not recorded as allowed. (A token scoped without
/// `convox:auth:check` is answered locally: `cli_streams` replays one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_get_before_a_socket_by_a_token_that_may_not() {
    check(
        Case::get("/machines?")
            .auth(Auth::OwnerDisabled)
            .denied(403, "user_disabled"),
    )
    .await;
    check(
        Case::get("/racks?")
            .auth(Auth::OwnerRoleRevoked)
            .denied(403, "no_role"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_creating_a_release() {
    check(
        releases_env()
            .auth(Auth::ReadOnlyScope)
            .denied(403, "token_scope"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cicd_token_setting_env() {
    check(releases_env().auth(Auth::Cicd).denied(403, "token_scope")).await;
}

// === Paths (issue point 6) ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_dot_segment() {
    check(Case::get("/apps/x/../../system?").denied(400, "path_dot_segment")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_dot_dot_segment() {
    check(Case::get("/apps/%2E%2E/system?").denied(400, "path_dot_segment")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dot_segment() {
    check(Case::get("/apps/./x?").denied(400, "path_dot_segment")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_segment() {
    check(Case::get("/apps//releases?").denied(400, "path_empty_segment")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_slash() {
    check(Case::get("/apps/?").denied(400, "path_empty_segment")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_slash() {
    check(Case::get("/apps/x%2Freleases?").denied(400, "path_encoded_slash")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_slash_in_lower_case() {
    check(Case::get("/apps/x%2freleases?").denied(400, "path_encoded_slash")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_backslash() {
    check(Case::get("/apps/x%5Creleases?").denied(400, "path_backslash")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_nul() {
    check(Case::get("/apps/x%00?").denied(400, "path_control_char")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_control_character() {
    check(Case::get("/apps/x%1B?").denied(400, "path_control_char")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_delete_character() {
    check(Case::get("/apps/x%7F?").denied(400, "path_control_char")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_encoded_slash() {
    check(Case::get("/apps/x%252Freleases?").denied(400, "path_double_encoded")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_long_segment() {
    check(Case::get(format!("/apps/{}?", "a".repeat(256))).denied(400, "path_segment_too_long"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_key_climbing_out() {
    check(
        Case::post("/apps/x/objects/tmp/../../../system?")
            .body("application/octet-stream", b"x")
            .denied(400, "path_dot_segment"),
    )
    .await;
}

/// A wildcard route's tail outside its grammar (`~` is no object key character): a 400 like
/// any other path outside the grammar, not the empty 404 of a route the rack lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_key_outside_its_grammar() {
    check(
        Case::post("/apps/x/objects/tmp/a~b?")
            .body("application/octet-stream", b"x")
            .denied(400, "invalid_path"),
    )
    .await;
}

/// `CONNECT` on a route that takes any method: hyper's client would send it to the rack's
/// authority instead of the authorized path, so it names no route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_to_the_registry_proxy() {
    check(Case::new("CONNECT", "/v2/").denied(404, "unknown_route")).await;
}

/// `TRACE` would echo the gateway's upstream request, the rack's credentials in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_through_the_http_proxy() {
    check(
        Case::new("TRACE", "/custom/http/proxy/x?")
            .header("X-Host", "web.x")
            .header("X-Port", "80")
            .denied(404, "unknown_route"),
    )
    .await;
}

// === Parameters (issue point 6) ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_in_the_query_string_of_the_post() {
    check(Case::post("/apps/x/releases?env=A%3DB").denied(400, "param_query_on_non_get")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_twice() {
    check(
        Case::post("/apps/x/releases?")
            .form("env=A%3DB&env=C%3DD")
            .denied(400, "param_duplicate_key"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_in_a_multipart_body() {
    let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"env\"\r\n\r\nA=B\r\n--XyZ--\r\n";
    check(
        Case::post("/apps/x/releases?")
            .body("multipart/form-data; boundary=XyZ", body)
            .denied(400, "param_multipart"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_form_key() {
    check(
        Case::post("/apps/x/releases?")
            .form("color=red&env=A%3DB")
            .denied(400, "param_unknown_key"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_where_a_form_is_expected() {
    check(
        Case::post("/apps/x/releases?")
            .body("application/json", br#"{"env":"A=B"}"#)
            .denied(400, "param_content_type"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_content_type_with_parameters() {
    check(
        Case::post("/apps/x/releases?")
            .body(
                "application/x-www-form-urlencoded; charset=utf-8",
                b"env=A%3DB",
            )
            .denied(400, "param_content_type"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_in_a_header() {
    check(
        Case::post("/apps/x/releases?")
            .header("Env", "A=B")
            .denied(400, "param_header_shadows"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_content_types() {
    check(
        Case::post("/apps/x/releases?")
            .form("env=A%3DB")
            .header("Content-Type", "application/octet-stream")
            .denied(400, "duplicate_content_type"),
    )
    .await;
}

/// The CLI's budget commands send `ack_by` as `$CONVOX_ACTOR`, else `$USER`, which the rack
/// takes as the action's actor: the caller's own name is forwarded instead, and recorded as
/// forwarded, the body's other fields kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_by_naming_someone_else_is_the_caller_upstream() {
    use crate::support::Body;
    let gw = TestGateway::start().await;
    let cli = gw.cli();
    let since = gw.head();
    let reply = gw
        .send_raw(cli.request(
            "POST",
            "/apps/x/budget/reset?",
            &[],
            Body::Form("ack_by=alice&reset_period=true"),
        ))
        .await;
    let received = gw.rack().received();
    let last = received.last().unwrap();
    assert_eq!(last.target, "/apps/x/budget/reset?", "{reply:?}");
    let caller = rack_gateway::server::dev::DEV_USER;
    let sent = format!("ack_by={}&reset_period=true", caller.replace('@', "%40"));
    assert_eq!(std::str::from_utf8(&last.body).unwrap(), sent);
    let (requested, _) = gw.call_records(since, &reply.request_id()).await;
    let Event::CommandRequested(c) = &requested.event else {
        panic!("{requested:?}");
    };
    assert_eq!(c.decision, Decision::Allow);
    assert!(
        c.params.contains(&("ack_by".to_owned(), caller.to_owned())),
        "{:?}",
        c.params
    );
    // The caller's own name passes as sent.
    let own = format!("ack_by={}", caller.replace('@', "%40"));
    let reply = gw
        .send_raw(cli.request(
            "POST",
            "/apps/x/budget/dismiss-recovery?",
            &[],
            Body::Form(&own),
        ))
        .await;
    let received = gw.rack().received();
    assert_eq!(
        std::str::from_utf8(&received.last().unwrap().body).unwrap(),
        own,
        "{reply:?}"
    );
    gw.finish().await;
}

/// `ack_by` is rewritten only as a form value: on the proxy routes, which pass their query and
/// body on as they are, a query key of that name goes on unchanged and the body with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_by_query_key_on_a_proxy_route_leaves_the_call_as_sent() {
    use crate::support::Body;
    let gw = TestGateway::start().await;
    let body = b"{\"any\":\"payload\"}";
    let since = gw.head();
    let reply = gw
        .send_raw(gw.cli().request(
            "PUT",
            "/custom/http/proxy/upload?ack_by=alice",
            &[],
            Body::Raw(body),
        ))
        .await;
    let received = gw.rack().received();
    let last = received.last().unwrap();
    assert_eq!(
        last.target, "/custom/http/proxy/upload?ack_by=alice",
        "{reply:?}"
    );
    assert_eq!(&last.body[..], &body[..], "the body reached the far end");
    let (_, done) = gw.call_records(since, &reply.request_id()).await;
    let done = crate::support::completed(&done).unwrap();
    assert_eq!(done.bytes_in, body.len() as u64);
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_query_key() {
    check(Case::get("/apps?env=1").denied(400, "param_unknown_key")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_key_twice() {
    check(Case::get("/apps/x/releases?limit=1&limit=100").denied(400, "param_duplicate_key")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semicolon_in_the_query() {
    check(Case::get("/apps/x/releases?limit=1;limit=100").denied(400, "param_malformed")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_on_a_body_less_route() {
    check(
        Case::post("/apps/x/services/web/restart?")
            .body("application/octet-stream", b"surprise")
            .denied(400, "param_unexpected_body"),
    )
    .await;
}

/// A form body over the 1 MiB the gateway reads: refused, and recorded like every other
/// refusal of an authenticated caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_body_over_the_limit() {
    let form = format!("env=A%3D{}", "a".repeat(1024 * 1024));
    check(
        Case::post("/apps/x/releases?")
            .form(&form)
            .denied(400, "param_form_too_large"),
    )
    .await;
}

// === Routes outside the table ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_outside_the_table() {
    check(Case::get("/no/such/route?").denied(404, "unknown_route")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_path_with_another_method() {
    check(Case::new("PATCH", "/apps?").denied(404, "unknown_route")).await;
}

/// The rack's provider maps `system` to its own namespace, where its API holds the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_racks_own_namespace_as_an_app() {
    check(Case::get("/apps/system/processes?").denied(404, "reserved_app")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_created_under_the_racks_own_name() {
    check(
        Case::post("/apps?")
            .form("name=rack")
            .denied(403, "reserved_app"),
    )
    .await;
}

/// A mask outside `convox env set`'s `env` would reach the rack as a literal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mask_outside_a_posted_env() {
    check(
        Case::post("/apps/x/services/web/processes?")
            .header("Command", "sh")
            .header("Environment", "TOKEN=rgw-masked:0123abcd")
            .denied(403, "masked_value_misused"),
    )
    .await;
}

/// Each line is shown masked on its own, so a key set on many lines would test many guesses
/// of its value at once; the trimmed key is the one the rack reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_that_sets_a_key_twice() {
    check(
        Case::post("/apps/x/releases?")
            .form("env=DB_PASSWORD%3Dguess1%0AOTHER%3D1%0A+DB_PASSWORD+%3Dguess2")
            .denied(403, "env_key_repeated"),
    )
    .await;
}

/// Go's line scanner stops at a line of 64 KiB, and the rack with it: the keys after such a
/// line (a protected one among them) would not reach the release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_line_longer_than_the_rack_reads() {
    // `A=` and 65,534 bytes: one byte over.
    let form = format!("env=A%3D{}%0AB%3D1", "a".repeat(64 * 1024 - 2));
    check(
        Case::post("/apps/x/releases?")
            .form(&form)
            .denied(403, "env_line_too_long"),
    )
    .await;
}

/// A form whose chunked framing is broken: refused as unreadable, not as too large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_with_broken_chunks() {
    check(
        Case::post("/apps/x/releases?")
            .body(
                "application/x-www-form-urlencoded",
                b"zz\r\nenv=A%3DB\r\n0\r\n\r\n",
            )
            .header("Transfer-Encoding", "chunked")
            .denied(400, "param_form_unreadable"),
    )
    .await;
}

/// A caller who may not read every value is shown stray lines (lines that set nothing) masked
/// whole, so one posted in clear, which the answer would show masked the same way, is a guess
/// of a hidden line: refused, wherever it stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_line_that_sets_nothing_from_a_deployer() {
    check(
        Case::post("/apps/x/releases?")
            .form("env=A%3D1%0Apassword%3A+guess1%0AB%3D2")
            .auth(Auth::Deployer)
            .denied(403, "env_line_in_clear"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_rack_environment_route() {
    check(
        Case::post("/apps/x/environment?")
            .body("application/octet-stream", b"A=B\n")
            .denied(404, "unknown_route"),
    )
    .await;
}

/// hyper upgrades only HTTP/1.1 connections: an HTTP/1.0 upgrade is refused before anything
/// is recorded as allowed, and the rack never sees its handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_over_http_1_0() {
    check(logs_upgrade().http_1_0().denied(400, "invalid_upgrade")).await;
}

/// An upgrade without credentials is refused before the upgrade: a 401, not a 101 with the
/// refusal inside the socket (that is for callers who are known but not permitted), counted as
/// unauthenticated noise, and the rack never sees the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_without_credentials() {
    check(
        logs_upgrade()
            .auth(Auth::Missing)
            .counted("missing_credentials"),
    )
    .await;
}

/// The same upgrade with a token the gateway does not know: also refused before the upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upgrade_with_an_unknown_token() {
    check(
        logs_upgrade()
            .auth(Auth::Unknown)
            .counted("unknown_or_expired_token"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_route_without_the_upgrade() {
    check(Case::get("/apps/x/logs?").denied(404, "unknown_route")).await;
}

// === The rack's answers ===

/// A gzip-encoded answer on a masking route, from a rack (or a proxy in front of it) that
/// compresses whatever it was asked: the gateway asked for the answer uncompressed (no
/// `Accept-Encoding` upstream), cannot read it to mask it, and answers a recorded 502 with
/// nothing of the answer in it. The same caller's answer on a route that masks nothing passes
/// compressed, as the rack sent it, which shows the rack really compressed.
///
/// `role`: the caller, a token with every scope for a user of that role, or the dev admin.
async fn check_gzip_answer(target: &str, role: Option<Role>) {
    let gw = TestGateway::start().await;
    let secret = match role {
        Some(role) => {
            gw.token_for("reader@example.com", role, &["convox:*:*"])
                .await
                .secret
        }
        None => gw.token().to_owned(),
    };
    let cli = gw.cli_as(&secret);
    gw.rack().set_gzip_answers(true);
    let since = gw.head();
    let reply = gw.send_raw(cli.get(target)).await;
    assert_eq!(reply.status, 502, "{target}: {}", reply.text());
    assert!(
        reply.text().ends_with(
            "could not be read to hide its secrets, so it was withheld (answer_encoded)\n"
        ),
        "{target}: {:?}",
        reply.text()
    );
    assert_eq!(reply.header("content-encoding"), None, "{target}");
    assert!(
        !reply.body.starts_with(&[0x1F, 0x8B]),
        "{target}: gzip bytes"
    );
    // The mock's gzip keeps the answer's bytes in clear: none of the env reached the client.
    for (key, value) in mock_rack::SEED_ENV
        .lines()
        .filter_map(|l| l.split_once('='))
    {
        assert!(
            !reply.text().contains(key) && !reply.text().contains(value),
            "{target}: {key} reached the client: {:?}",
            reply.text()
        );
    }
    let received = gw.rack().received();
    assert_eq!(
        received.len(),
        1,
        "{target}: the call reached the rack once"
    );
    assert_eq!(received[0].status, 200, "{target}: the rack answered");
    assert_eq!(
        received[0].header("accept-encoding"),
        None,
        "{target}: Accept-Encoding stripped upstream on a masking route"
    );
    let (decided, done) = gw.call_records(since, &reply.request_id()).await;
    let decided = requested(&decided).unwrap();
    assert_eq!(
        (decided.decision, decided.reason.as_str()),
        (Decision::Allow, ""),
        "{target}"
    );
    let done = completed(&done).unwrap();
    assert_eq!(
        (done.status, done.bytes_out, done.sha256_out),
        (502, 0, None),
        "{target}: the completion records the 502 and that nothing was sent"
    );
    assert_eq!(
        done.failure.as_deref(),
        Some("answer_encoded"),
        "{target}: the completion says why the gateway answered itself"
    );

    // A route that masks nothing: the client's `Accept-Encoding` is forwarded and the
    // compressed answer passes as sent.
    let reply = gw.send_raw(cli.get("/apps?")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-encoding"), Some("gzip"));
    assert!(reply.body.starts_with(&[0x1F, 0x8B, 0x08]));
    let received = gw.rack().received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].header("accept-encoding"), Some("gzip"));
    let finished = gw.finish().await;
    let log = format!("{:?}", finished.events);
    assert!(!log.contains("s3cr3t"), "the secret never enters the log");
}

/// The env the deployer reads with `convox env` (`release.list`), where its secrets are masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_encoded_upstream_response_on_a_masking_route() {
    check_gzip_answer("/apps/x/releases?limit=1", Some(Role::Deployer)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_encoded_release_for_a_viewer() {
    let release = format!("/apps/x/releases/{}?", mock_rack::SEED_RELEASE);
    check_gzip_answer(&release, Some(Role::Viewer)).await;
}

/// Builds are rewritten for every caller (an external build's repository carries the rack
/// password), the admin included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_encoded_build_for_the_admin() {
    let build = format!("/apps/x/builds/{}?", mock_rack::SEED_BUILD);
    check_gzip_answer(&build, None).await;
}

// === The connection ===

/// How a refused request head reaches the gateway.
enum Sent {
    /// In one write, so the gateway may take the head whole before judging it.
    Whole(Vec<u8>),
    /// In writes of this many bytes, so the gateway's buffer fills partway through the head.
    Trickled(Vec<u8>, usize),
}

/// Sends a head the gateway must refuse before any handler sees it: `status` comes back,
/// nothing is forwarded or recorded one by one, and the refusal is counted once as `reason`.
async fn check_refused_head(sent: impl FnOnce(&TestGateway) -> Sent, status: u16, reason: &str) {
    let gw = TestGateway::start().await;
    let since = gw.head();
    let sent = sent(&gw);
    let mut stream = TcpStream::connect(gw.proxy()).await.unwrap();
    // The gateway may stop reading once it has refused: a failed write is expected.
    match sent {
        Sent::Whole(raw) => {
            let _ = stream.write_all(&raw).await;
        }
        Sent::Trickled(raw, size) => {
            for chunk in raw.chunks(size) {
                if stream.write_all(chunk).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let reply = read_reply(&mut stream)
        .await
        .expect("an answer before the connection closed");
    assert_eq!(reply.status, status);
    drop(stream);
    assert!(gw.rack().received().is_empty());
    let events = gw.events_since(since).await;
    assert!(events.iter().all(|r| requested(r).is_none()));
    let finished = gw.finish().await;
    let after = finished.since(since);
    assert!(
        after.iter().all(|r| requested(r).is_none()),
        "nothing recorded one by one"
    );
    // Unauthenticated noise: one counted summary, never an event per request.
    assert_eq!(
        denials(&after),
        [("127.0.0.1".to_owned(), reason.to_owned(), 1)]
    );
}

/// The CLI's `GET /apps?` with `count` more headers of `size` bytes each.
fn padded_request(gw: &TestGateway, count: usize, size: usize) -> Vec<u8> {
    let pad = "a".repeat(size);
    let pads: Vec<(String, String)> = (0..count)
        .map(|i| (format!("X-Pad-{i}"), pad.clone()))
        .collect();
    let extra: Vec<(&str, &str)> = pads.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    gw.cli().request("GET", "/apps?", &extra, Body::Empty)
}

/// A network that holds its whole share of the listener's connections: one more is closed
/// before a byte is read, and counted once (`connection_limit`), nothing recorded one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_its_networks_share() {
    use rack_gateway::server::{connection_cap, per_network_share};
    let gw = TestGateway::start().await;
    let since = gw.head();
    let share = per_network_share(connection_cap()) as usize;
    let mut held = Vec::with_capacity(share);
    for _ in 0..share {
        held.push(TcpStream::connect(gw.proxy()).await.unwrap());
    }
    // Every held connection is taken before the next is accepted: the listener serves one by
    // one. A request on the last still gets its answer.
    let last = held.last_mut().unwrap();
    last.write_all(&gw.cli().get("/apps?")).await.unwrap();
    let reply = read_reply(last)
        .await
        .expect("an answer on a held connection");
    assert_eq!(reply.status, 200);
    let mut over = TcpStream::connect(gw.proxy()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), over.read(&mut buf))
        .await
        .expect("the connection over the share is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(held);
    drop(over);
    let finished = gw.finish().await;
    let after = finished.since(since);
    assert_eq!(
        denials(&after),
        [("127.0.0.1".to_owned(), "connection_limit".to_owned(), 1)]
    );
}

/// More than 64 KiB of headers, sent at once: a 431, counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_block() {
    let sent = |gw: &TestGateway| {
        let raw = padded_request(gw, 9, 8 * 1024);
        assert!(raw.len() > 64 * 1024);
        Sent::Whole(raw)
    };
    check_refused_head(sent, 431, "oversized_header_block").await;
}

/// The same head in 1 KiB writes: refused by the HTTP parser as its buffer fills, before the
/// head is whole, and counted all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_block_sent_slowly() {
    let sent = |gw: &TestGateway| Sent::Trickled(padded_request(gw, 9, 8 * 1024), 1024);
    check_refused_head(sent, 431, "oversized_header_block").await;
}

/// 120 small headers: past the parser's count of header lines, though far under 64 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_header_lines() {
    let sent = |gw: &TestGateway| {
        let raw = padded_request(gw, 120, 8);
        assert!(raw.len() < 8 * 1024);
        Sent::Whole(raw)
    };
    check_refused_head(sent, 431, "oversized_header_block").await;
}

/// A header line without a colon: not HTTP, a 400, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_head() {
    let raw = b"GET /apps? HTTP/1.1\r\nHost: 127.0.0.1\r\nnot a header\r\n\r\n".to_vec();
    check_refused_head(|_| Sent::Whole(raw), 400, "malformed_request_head").await;
}

/// Past its network's limit a caller gets 429 before authentication: nothing forwarded,
/// nothing recorded one by one, and the refusals counted (`rate_limited`), so a flood shows in
/// the log by its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_rate_limit() {
    let gw = TestGateway::start_limited(3).await;
    let since = gw.head();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(gw.send_raw(gw.cli().get("/apps?")).await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(gw.rack().received().len(), 3);
    let finished = gw.finish().await;
    let after = finished.since(since);
    assert_eq!(after.iter().filter_map(requested).count(), 3);
    assert_eq!(
        denials(&after),
        [("127.0.0.1".to_owned(), "rate_limited".to_owned(), 2)]
    );
}

/// A network that opens connections past its budget (twice its requests' a minute) has each
/// further one closed before a byte is read or a TLS handshake begun: connections opened and
/// never used (a handshake flood, a connect scan) pass neither the request limit nor the log
/// otherwise. Nothing is forwarded or recorded one by one for them, and they are counted
/// (`connection_rate_limited`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_rate_limit() {
    use rack_gateway::proxy::flood::CONNECTIONS_PER_REQUEST;
    let gw = TestGateway::start_limited(3).await;
    let since = gw.head();
    let budget = 3 * CONNECTIONS_PER_REQUEST as usize;
    // Opened and closed unused, as a port check does: not counted as refusals, but charged.
    for _ in 0..budget - 1 {
        drop(TcpStream::connect(gw.proxy()).await.unwrap());
    }
    let reply = gw.send_raw(gw.cli().get("/apps?")).await;
    assert_eq!(reply.status, 200, "the budget's last connection is served");
    for _ in 0..2 {
        let mut over = TcpStream::connect(gw.proxy()).await.unwrap();
        let _ = over.write_all(&gw.cli().get("/apps?")).await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), over.read(&mut buf))
            .await
            .expect("a connection over the budget is closed at once");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert_eq!(gw.rack().received().len(), 1);
    let finished = gw.finish().await;
    let after = finished.since(since);
    assert_eq!(after.iter().filter_map(requested).count(), 1);
    assert_eq!(
        denials(&after),
        [(
            "127.0.0.1".to_owned(),
            "connection_rate_limited".to_owned(),
            2
        )]
    );
}

/// How a slow client behaves on its connection before going silent.
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends half a request line.
    HalfALine,
    /// Sends a whole request line and one header, never the blank line.
    HalfTheHeaders,
    /// Completes one request on a keep-alive connection, then sends nothing more.
    IdleAfterOne,
}

/// The gateway must close a slow client's connection within its header timeout (10 s in dev;
/// the deadline here is 15 s), without an answer (as Go's server and nginx close it), forward
/// and record nothing for it, and keep serving others. A client that stopped partway through a
/// request head is counted as unauthenticated noise (`header_timeout`); one that sent nothing,
/// or sat idle after its answer, as keep-alive clients do, is not.
async fn check_slow(slow: Slow) {
    let gw = TestGateway::start().await;
    let since = gw.head();
    let mut stream = TcpStream::connect(gw.proxy()).await.unwrap();
    let mut served = 0;
    match slow {
        Slow::Silent => {}
        Slow::HalfALine => stream.write_all(b"GET /apps? HT").await.unwrap(),
        Slow::HalfTheHeaders => stream
            .write_all(b"GET /apps? HTTP/1.1\r\nHost: gw\r\nUser-Agent: convox.go/dev\r\n")
            .await
            .unwrap(),
        Slow::IdleAfterOne => {
            stream.write_all(&gw.cli().get("/apps?")).await.unwrap();
            let reply = read_reply(&mut stream).await.unwrap();
            assert_eq!(reply.status, 200);
            served += 1;
        }
    }
    let started = Instant::now();
    let mut answered = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let left = Duration::from_secs(15).saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => answered.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the connection is still open after 15 s"),
        }
    }
    assert!(
        answered.is_empty(),
        "nothing may precede the close: {:?}",
        String::from_utf8_lossy(&answered)
    );
    let partial = matches!(slow, Slow::HalfALine | Slow::HalfTheHeaders);
    drop(stream);
    // The gateway still serves everyone else.
    let reply = gw.send_raw(gw.cli().get("/apps?")).await;
    assert_eq!(reply.status, 200);
    served += 1;
    assert_eq!(gw.rack().received().len(), served);
    let events = eventually_within(Duration::from_secs(10), "the calls' records", || async {
        let e = gw.events_since(since).await;
        (e.iter().filter_map(requested).count() == served).then_some(e)
    })
    .await;
    assert!(
        events
            .iter()
            .filter_map(requested)
            .all(|c| c.decision == Decision::Allow),
        "only the served calls are recorded"
    );
    let finished = gw.finish().await;
    let counted = denials(&finished.events);
    if partial {
        assert_eq!(
            counted,
            [("127.0.0.1".to_owned(), "header_timeout".to_owned(), 1)]
        );
    } else {
        assert!(
            counted.is_empty(),
            "an idle connection is no refusal: {counted:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_line() {
    check_slow(Slow::HalfALine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers() {
    check_slow(Slow::HalfTheHeaders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_connects_and_sends_nothing() {
    check_slow(Slow::Silent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_idles_after_one_request() {
    check_slow(Slow::IdleAfterOne).await;
}

/// A token revoked while its caller's body is still arriving (authenticated at the headers)
/// stops at the end of the body: nothing reaches the rack, and the refusal is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_its_body_arrives() {
    let gw = TestGateway::start().await;
    let issued = gw
        .token_for("deployer@example.com", Role::Deployer, &["convox:*:*"])
        .await;
    let body = b"env=A%3DB";
    let head = format!(
        "POST /apps/x/releases? HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        basic(&format!("convox:{}", issued.secret)),
        body.len()
    );
    let rack_before = gw.rack().received().len();
    let since = gw.head();
    let mut tcp = TcpStream::connect(gw.proxy()).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body[..3]).await.unwrap();
    // The headers are in, so the token was checked; it is revoked before the body ends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.revoke_token(issued.id).await;
    tcp.write_all(&body[3..]).await.unwrap();
    let reply = read_reply(&mut tcp).await.expect("an answer");
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(
        gw.rack().received().len(),
        rack_before,
        "the rack was reached"
    );
    let denied: Vec<String> = gw
        .events_since(since)
        .await
        .iter()
        .filter_map(requested)
        .map(|c| format!("{:?} {}", c.decision, c.reason))
        .collect();
    assert_eq!(denied, ["Deny token_no_longer_usable"]);
    gw.finish().await;
}

/// An upload already on its way when its token is revoked stops there: the rest of the body
/// never reaches the rack, the caller is told why, and the completion records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_token_is_revoked_on_its_way_is_cut() {
    let gw = TestGateway::start().await;
    let issued = gw
        .token_for("deployer@example.com", Role::Deployer, &["convox:*:*"])
        .await;
    let body = vec![b'x'; 1 << 20];
    let head = format!(
        "POST /apps/x/objects/tmp/big.tgz? HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        basic(&format!("convox:{}", issued.secret)),
        body.len()
    );
    let since = gw.head();
    let mut tcp = TcpStream::connect(gw.proxy()).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body[..64 << 10]).await.unwrap();
    // The upload is under way (its intent recorded, its first bytes sent on).
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.revoke_token(issued.id).await;
    // The rest may be refused as it comes: the gateway answers and closes.
    let _ = tcp.write_all(&body[64 << 10..]).await;
    let reply = read_reply(&mut tcp).await;
    if let Some(reply) = &reply {
        assert_eq!(reply.status, 401, "{}", reply.text());
    }
    assert!(
        gw.rack().object("x", "tmp/big.tgz").is_none(),
        "the rack stored the object"
    );
    let done = completion_of(&gw, since, "/apps/x/objects/tmp/big.tgz").await;
    assert_eq!(
        (done.status, done.failure.as_deref()),
        (401, Some("token_no_longer_usable"))
    );
    assert!(done.bytes_in < body.len() as u64, "{done:?}");
    gw.finish().await;
}

/// An answer still streaming when its token is revoked stops there: the caller gets the head
/// and less than the body, and the completion records why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_whose_token_is_revoked_on_its_way_is_cut() {
    let gw = TestGateway::start().await;
    let issued = gw
        .token_for("ops@example.com", Role::Ops, &["convox:*:*"])
        .await;
    // The rack answers the head at once and the body a while later.
    gw.rack().set_body_stall(Duration::from_millis(600));
    let request = format!(
        "GET /apps? HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\n\r\n",
        basic(&format!("convox:{}", issued.secret)),
    );
    let since = gw.head();
    let mut tcp = TcpStream::connect(gw.proxy()).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.revoke_token(issued.id).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
    gw.rack().set_body_stall(Duration::ZERO);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("\"name\""), "the body passed: {text}");
    let done = completion_of(&gw, since, "/apps").await;
    assert_eq!(
        (done.status, done.failure.as_deref(), done.bytes_out),
        (200, Some("token_no_longer_usable"), 0)
    );
    gw.finish().await;
}

/// Sends `GET path` with `secret` while the rack holds its answer's body back, makes `change`
/// once the call is under way, and returns what the caller got and the call's completion.
async fn changed_while_answered(
    gw: &TestGateway,
    secret: &str,
    path: &str,
    change: impl std::future::Future<Output = ()>,
) -> (String, events::event::CommandCompleted) {
    gw.rack().set_body_stall(Duration::from_millis(600));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic(&format!("convox:{secret}")),
    );
    let since = gw.head();
    let mut tcp = TcpStream::connect(gw.proxy()).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    change.await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
    gw.rack().set_body_stall(Duration::ZERO);
    let recorded = path.split('?').next().unwrap_or_default();
    let done = completion_of(gw, since, recorded).await;
    (String::from_utf8_lossy(&got).into_owned(), done)
}

/// An answer the gateway reads whole before sending any of it (to mask it, or an error answer
/// to scrub it) gives nothing to a caller whose token was revoked while it was read: refused,
/// as a streamed answer is cut. Each row: owner, role, path, the rack's status, and what of the
/// answer must not reach the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_read_whole_whose_token_is_revoked_while_read_are_refused() {
    let gw = TestGateway::start().await;
    let cases: [(&str, Role, &str, u16, &[&str]); 2] = [
        (
            "admin2@example.com",
            Role::Admin,
            "/apps/x/releases?",
            200,
            &["s3cr3t", "FOO="],
        ),
        (
            "ops2@example.com",
            Role::Ops,
            "/apps/nope/releases?",
            404,
            &["nope"],
        ),
    ];
    for (owner, role, path, status, withheld) in cases {
        let issued = gw.token_for(owner, role, &["convox:*:*"]).await;
        let (text, done) =
            changed_while_answered(&gw, &issued.secret, path, gw.revoke_token(issued.id)).await;
        assert!(text.starts_with("HTTP/1.1 401"), "{path}: {text}");
        for part in withheld {
            assert!(
                !text.contains(part),
                "{path}: {part} reached the caller: {text}"
            );
        }
        assert_eq!(
            (done.status, done.failure.as_deref(), done.bytes_out),
            (status, Some("token_no_longer_usable"), 0),
            "{path}"
        );
    }
    gw.finish().await;
}

/// What decides a masked answer's values is relied on for the whole call: a token's owner who
/// loses the role that let them read secrets while the answer comes (keeping one that may list
/// releases) gets it refused, not in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_who_loses_secret_read_while_answered_gets_no_values() {
    let gw = TestGateway::start().await;
    let issued = gw
        .token_for("admin3@example.com", Role::Admin, &["convox:*:*"])
        .await;
    gw.grant("admin3@example.com", Role::Viewer).await;
    let (text, done) = changed_while_answered(
        &gw,
        &issued.secret,
        "/apps/x/releases?",
        gw.revoke_role("admin3@example.com", Role::Admin),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(!text.contains("s3cr3t") && !text.contains("FOO="), "{text}");
    assert_eq!(
        (done.status, done.failure.as_deref(), done.bytes_out),
        (200, Some("permission_no_longer_held"), 0)
    );
    // Still a viewer: the next call is answered, masked.
    let again = gw
        .send_raw(gw.cli_as(&issued.secret).get("/apps/x/releases?"))
        .await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert!(!again.text().contains("s3cr3t"), "{}", again.text());
    gw.finish().await;
}

/// The completion of the call to `path` recorded since `since`, once it is (completions are
/// written in the background).
async fn completion_of(
    gw: &TestGateway,
    since: u64,
    path: &str,
) -> events::event::CommandCompleted {
    crate::support::eventually(&format!("the completion of {path}"), || async {
        let events = gw.events_since(since).await;
        let call = events
            .iter()
            .filter_map(requested)
            .find(|c| c.path == path)?;
        events
            .iter()
            .filter_map(completed)
            .find(|c| c.request == call.request)
            .cloned()
    })
    .await
}

/// The rack takes a service's name for a process (`ProcessExec` picks one of its processes), so
/// process `build` is a running build, whose environment holds the rack password; a process run
/// as the `build` service gets a build's unconfined seccomp profile. Both need
/// `convox:build:exec`, which a deployer lacks; no lookup of a process `build` is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_build_service_named_as_a_process() {
    check(
        Case::get("/apps/x/processes/build/files?file=%2Fproc%2F1%2Fenviron")
            .auth(Auth::Deployer)
            .denied(403, "build_process"),
    )
    .await;
    // A pid the rack's label selector would read as the build service.
    for pid in ["%3Dbuild", "build%2Capp%3Dx", "Build"] {
        check(
            Case::get(format!("/apps/x/processes/{pid}/files?file=%2Fetc%2Fhosts"))
                .auth(Auth::Deployer)
                .denied(403, "build_process"),
        )
        .await;
    }
    check(
        Case::post("/apps/x/services/build/processes?")
            .header("Command", "sh")
            .auth(Auth::Deployer)
            .denied(403, "build_process"),
    )
    .await;
}

/// The rack runs `tar` and `rm` in the process with a file route's values as arguments: none
/// may be an option (`tar -cf - -I<cmd>` runs a program), and extra `tar` flags are the rack's
/// own allow-list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_arguments_that_are_options() {
    for case in [
        Case::get("/apps/x/processes/web-1/files?file=-Itouch"),
        Case::get("/apps/x/processes/web-1/files?file=--use-compress-program%3Dsh"),
        Case::new(
            "DELETE",
            "/apps/x/processes/web-1/files?files=%2Ftmp%2Fa%2C-rf",
        ),
        Case::post("/apps/x/processes/web-1/files?tar-extra=--to-command%3Dsh")
            .body("application/octet-stream", b""),
        Case::post(
            "/apps/x/processes/web-1/files?tar-extra=--no-same-owner%2C--strip-components%3D",
        )
        .body("application/octet-stream", b""),
    ] {
        check(
            case.auth(Auth::Deployer)
                .denied(403, "file_argument_option"),
        )
        .await;
    }
    // Paths, and the flags the rack allows, go on.
    let gw = TestGateway::start().await;
    for (method, target) in [
        ("GET", "/apps/x/processes/web-1/files?file=%2Fetc%2Fhosts"),
        (
            "DELETE",
            "/apps/x/processes/web-1/files?files=%2Ftmp%2Fa%2C%2Ftmp%2Fb-c",
        ),
        (
            "POST",
            "/apps/x/processes/web-1/files?tar-extra=--no-same-owner%2C--strip-components%3D2",
        ),
    ] {
        let before = gw.rack().received().len();
        let reply = gw
            .send_raw(gw.cli().request(method, target, &[], Body::Raw(b"")))
            .await;
        let received = gw.rack().received();
        assert_eq!(received.len(), before + 1, "{target}: {}", reply.text());
        assert_eq!(received[before].target, target);
    }
    gw.finish().await;
}

/// A build's source is an object of the same app, as the CLI uploads it; its manifest a file
/// name inside that source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_from_elsewhere() {
    for url in [
        "object%3A%2F%2Fother%2Ftmp%2Fsource.tgz",
        "dir%3A%2F%2F%2Fproc%2Fself",
        "object%3A%2F%2Fx%2Ftmp%2F..%2F..%2Fsource.tgz",
        "https%3A%2F%2Fexample.com%2Fsource.tgz",
    ] {
        check(
            Case::post("/apps/x/builds?")
                .form(&format!("url={url}"))
                .auth(Auth::Deployer)
                .denied(403, "build_source_elsewhere"),
        )
        .await;
    }
    for manifest in ["..%2F..%2Fproc%2Fself%2Fenviron", "deploy%2F..%2F..%2Fx"] {
        check(
            Case::post("/apps/x/builds?")
                .form(&format!(
                    "manifest={manifest}&url=object%3A%2F%2Fx%2Ftmp%2Fsource.tgz"
                ))
                .auth(Auth::Deployer)
                .denied(403, "build_manifest_outside"),
        )
        .await;
    }
    // As `convox deploy -m` sends a file name as typed: inside the source, forwarded.
    let gw = TestGateway::start().await;
    for manifest in [
        "convox.yml",
        ".%2Fconvox.staging.yml",
        "%2Fdeploy%2Fconvox.yml",
        "",
    ] {
        let form = format!("manifest={manifest}&url=object%3A%2F%2Fx%2Ftmp%2Fsource.tgz");
        let before = gw.rack().received().len();
        let reply = gw
            .send_raw(
                gw.cli()
                    .request("POST", "/apps/x/builds?", &[], Body::Form(&form)),
            )
            .await;
        assert_eq!(
            gw.rack().received().len(),
            before + 1,
            "{manifest}: {}",
            reply.text()
        );
    }
    gw.finish().await;
}

/// The rack appends each build argument to its build process's command line unquoted: one
/// that a shell would split or expand is refused, without quoting it (build arguments are
/// secret parameters), and the comma-joined `KEY=VALUE` items the CLI sends go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_args_a_shell_would_split_or_expand() {
    let source = "url=object%3A%2F%2Fx%2Ftmp%2Fsource.tgz";
    for (args, item, quoted) in [
        // `-url dir:///proc/self` with `manifest=environ` would copy the build process's
        // environment (the rack password) into the build's record.
        ("A%3D1+-url+dir%3A%2F%2F%2Fproc%2Fself", 1, "dir:"),
        ("A%3D1%2CB%3D%24%28cat+%2Fproc%2F1%2Fenviron%29", 2, "$(cat"),
        ("A%3D1%2CB%3D2%2CC%3D%60id%60", 3, "`id`"),
        ("A%3D1%3Bid", 1, ";id"),
        ("-url%3Ddir%3A%2F%2F%2Fproc%2Fself", 1, "-url"),
        ("A%3D1%2C", 2, "A=1"),
    ] {
        let text = check(
            Case::post("/apps/x/builds?")
                .form(&format!("build-args={args}&manifest=environ&{source}"))
                .auth(Auth::Deployer)
                .denied(403, "build_args_unsafe"),
        )
        .await;
        assert!(
            text.contains(&format!("build-args item {item} is not KEY=VALUE")),
            "{args}: {text}"
        );
        assert!(
            !text.contains(quoted),
            "{args}: the answer quotes it: {text}"
        );
    }
    let gw = TestGateway::start().await;
    let form = format!(
        "build-args=A%3D1%2CNODE_OPTIONS%3D--max-old-space-size%3D4096%2CU%3Dhttps%3A%2F%2Fe.x%2Fa&{source}"
    );
    let reply = gw
        .send_raw(
            gw.cli()
                .request("POST", "/apps/x/builds?", &[], Body::Form(&form)),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received = gw.rack().received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].body, form.as_bytes());
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_form_post() {
    // A browser that cached a Basic login sends it along with another site's form.
    check(
        Case::post("/apps/x/releases?")
            .form("env=A%3DB")
            .header("Origin", "https://evil.example")
            .denied(403, "cross_origin"),
    )
    .await;
}

// === How refusals read ===

/// The CLI prints a failed call as `ERROR: <body>` (spec §1.5, the rack's own errors are a bare
/// `msg\n`), so a refusal's body must not carry its own `ERROR: ` prefix, or the user reads
/// `ERROR: ERROR: …`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_reads_once_as_an_error_in_the_cli() {
    let gw = TestGateway::start().await;
    let reply = gw
        .send_raw(b"GET /apps? HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec())
        .await;
    assert_eq!(reply.status, 401);
    let cli_prints = format!("ERROR: {}", reply.text().trim());
    assert!(
        !cli_prints.starts_with("ERROR: ERROR:"),
        "the CLI would print {cli_prints:?}"
    );
    gw.finish().await;
}

/// A method, or a path that matches no route, as long as the header block allows, is recorded
/// cut and marked, so one call cannot write a record of tens of kilobytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_method_or_unrouted_path_is_recorded_cut() {
    let gw = TestGateway::start().await;
    let since = gw.head();
    let method = "M".repeat(2000);
    let long_segment = format!("/{}?", "p".repeat(1000));
    let long_path = format!("/{}?", "p/".repeat(3000));
    let cases = [
        (method.as_str(), "/apps?", 404, "unknown_route"),
        ("GET", long_segment.as_str(), 400, "path_segment_too_long"),
        ("GET", long_path.as_str(), 400, "path_too_long"),
    ];
    for (m, target, status, _) in cases {
        let reply = gw
            .send_raw(
                gw.cli()
                    .request(m, target, &[], crate::support::Body::Empty),
            )
            .await;
        assert_eq!(reply.status, status, "{m:.8} {target:.16}");
    }
    let events = gw.events_since(since).await;
    let decided: Vec<_> = events.iter().filter_map(requested).collect();
    assert_eq!(decided.len(), 3);
    let reasons: Vec<&str> = decided.iter().map(|c| c.reason.as_str()).collect();
    assert_eq!(reasons, cases.map(|c| c.3));
    assert_eq!(decided[0].method, format!("{}…", "M".repeat(32)));
    for c in &decided[1..] {
        assert_eq!(c.path.len(), 256 + "…".len(), "{}", c.path);
        assert!(c.path.ends_with('…'));
    }
    assert!(gw.rack().received().is_empty());
    gw.finish().await;
}
