//! The token API (`/api/v1/tokens` on the console listener) and `rack-gateway token
//! … --gateway`, over real sockets against a dev gateway with the mock rack behind it.
//!
//! It checks that an admin's token creates, lists and revokes tokens, that a created token
//! works on the proxy at once and stops there at once when revoked, that every refusal is
//! counted (unauthenticated) or recorded (malformed, not permitted, beyond the owner's or the
//! caller's permissions), that malformed content changes nothing, that a failing log answers
//! 503, that a dev-only token is refused where dev tokens are, and that the real binary speaks
//! the API with its token from the environment only.
// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use events::event::{CommandRequested, Decision, Event, Permission, Principal, Role, TokenId};
use events::record::{self, Record};
use events::store::redb::LogReader;
use events::store::{CheckpointPolicy, EventStore};
use events::time::Clock;
use rack_gateway::identity::admin::{self, TokenRequest};
use rack_gateway::proxy::redact::MAX_RECORDED_PATH;
use rack_gateway::server::dev::{self, DEV_USER, DevOptions, Running};
use rack_gateway::store;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "common/eventually.rs"]
mod eventually;
#[path = "common/test_certs.rs"]
mod test_certs;
use eventually::eventually_within;
use test_certs::certificate;

/// How long any read, or any wait for the log, may take.
const DEADLINE: Duration = Duration::from_secs(10);
const TOKENS: &str = "/api/v1/tokens";

/// A dev gateway on its own data directory.
struct Gateway {
    dir: tempfile::TempDir,
    running: Running,
}

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

// === impl Gateway ===

impl Gateway {
    async fn start() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let running = dev::start(&DevOptions {
            data: dir.path().to_owned(),
            proxy: SocketAddr::from(([127, 0, 0, 1], 0)),
            console: SocketAddr::from(([127, 0, 0, 1], 0)),
            per_ip_per_minute: dev::DEV_PER_IP_PER_MINUTE,
            rack_runtime: None,
        })
        .await
        .unwrap();
        Gateway { dir, running }
    }

    /// The dev admin token `dev` printed.
    fn admin(&self) -> &str {
        &self.running.token
    }

    fn store(&self) -> &store::Store {
        &self.running.store
    }

    fn head(&self) -> u64 {
        self.store().head().size
    }

    async fn events_since(&self, seq: u64) -> Vec<Record> {
        self.store()
            .read(seq..u64::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.record)
            .collect()
    }

    /// The events appended from `seq` on.
    async fn appended_since(&self, seq: u64) -> Vec<Event> {
        self.events_since(seq)
            .await
            .into_iter()
            .map(|r| r.event)
            .collect()
    }

    /// Grants `role` to `email` and creates a token for them with `scopes` (offline path).
    async fn token_for(&self, email: &str, role: Role, scopes: &[&str]) -> (TokenId, String) {
        let user = Principal(email.to_owned());
        if !self
            .store()
            .with_state(|s| s.identities.roles(&user).contains(&role))
        {
            admin::grant_role(self.store(), user.clone(), role, Principal("system".into()))
                .await
                .unwrap();
        }
        let created = admin::create_token(
            self.store(),
            TokenRequest {
                name: "test".into(),
                owner: user,
                scopes: scopes.iter().map(|s| Permission((*s).into())).collect(),
                expires: None,
                dev_only: false,
                by: Principal("system".into()),
            },
        )
        .await
        .unwrap();
        (created.id, created.secret.expose().to_owned())
    }

    /// A call to the API with `Authorization: Bearer <token>` and a JSON body.
    async fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
        let auth = format!("Bearer {token}");
        let body = body.map(|b| b.to_string());
        let mut headers = vec![("Authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        send(
            self.running.console,
            method,
            path,
            &headers,
            body.as_deref().map(str::as_bytes),
        )
        .await
    }

    /// `GET /apps` on the proxy as the convox CLI sends it with `token`.
    async fn proxy_status(&self, token: &str) -> u16 {
        let auth = format!("Basic {}", STANDARD.encode(format!("convox:{token}")));
        send(
            self.running.proxy,
            "GET",
            "/apps",
            &[("Authorization", &auth)],
            None,
        )
        .await
        .status
    }

    /// Runs the real binary with `args`, the token (if any) in `RACK_GATEWAY_TOKEN` only.
    async fn cli(&self, args: &[&str], token: Option<&str>) -> Output {
        run_cli(args, token).await
    }

    fn console_url(&self) -> String {
        format!("http://{}", self.running.console)
    }

    /// Stops the gateway (which appends the counted denials) and reads its whole log.
    async fn finish(self) -> (Vec<Record>, tempfile::TempDir) {
        let Gateway { dir, running } = self;
        running.stop().await;
        let log = store::log_path(dir.path());
        let reader = eventually("the stopped gateway to close its store", || async {
            LogReader::open(&log).ok()
        })
        .await;
        let size = reader.len().unwrap();
        let events = reader
            .read_raw(0..size)
            .unwrap()
            .into_iter()
            .map(|(_, bytes)| record::decode(&bytes).unwrap().record)
            .collect();
        (events, dir)
    }
}

// === impl Reply ===

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The refusal's `kind`, after checking the status and the error body's shape.
    fn refused(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        v["kind"].as_str().unwrap().to_owned()
    }
}

// === Helpers ===

/// Writes one request on a fresh connection (`Connection: close`) and reads the answer.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("an answer within the deadline")
        .unwrap();
    let at = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(raw[..at].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[at + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let at = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..at]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[at + 2..at + 2 + size]);
        rest = &rest[at + 4 + size..];
    }
}

async fn run_cli(args: &[&str], token: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let token = token.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rack-gateway"));
        cmd.args(&args).env_remove("RACK_GATEWAY_TOKEN");
        if let Some(t) = token {
            cmd.env("RACK_GATEWAY_TOKEN", t);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Polls `f` until it returns `Some`, failing after [`DEADLINE`] with `what`.
async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, f).await
}

fn requested(r: &Record) -> Option<&CommandRequested> {
    match &r.event {
        Event::CommandRequested(c) => Some(c),
        _ => None,
    }
}

/// The one `CommandRequested` appended since `since`, which must be the only record.
async fn one_denial(gw: &Gateway, since: u64) -> CommandRequested {
    let events = gw.events_since(since).await;
    assert_eq!(events.len(), 1, "exactly one record: {events:?}");
    let c = requested(&events[0]).expect("a CommandRequested").clone();
    assert_eq!(c.decision, Decision::Deny);
    c
}

/// The one `CommandRequested` appended since `since`, a denial, beside which only completions
/// of calls answered before may have landed.
async fn one_denied_call(gw: &Gateway, since: u64) -> CommandRequested {
    let events = gw.events_since(since).await;
    let calls: Vec<&CommandRequested> = events.iter().filter_map(requested).collect();
    assert!(
        events
            .iter()
            .all(|r| requested(r).is_some() || matches!(r.event, Event::CommandCompleted(_))),
        "only calls and completions: {events:?}"
    );
    let [c] = <[&CommandRequested; 1]>::try_from(calls).expect("exactly one call");
    assert_eq!(c.decision, Decision::Deny);
    c.clone()
}

/// The record before `seq` is the allowed `CommandRequested` of the API call `reply` answered.
async fn assert_the_call_precedes(gw: &Gateway, seq: u64, method: &str, path: &str, reply: &Reply) {
    let before = gw.events_since(seq - 1).await.remove(0);
    let call = requested(&before).expect("the change's CommandRequested right before it");
    assert_eq!(
        (call.method.as_str(), call.path.as_str(), call.decision),
        (method, path, Decision::Allow)
    );
    assert_eq!(Some(call.request.0.as_str()), reply.header("x-request-id"));
    assert!(call.credential.is_some(), "the calling token is named");
}

/// A user agent is recorded as the proxy records it: scrubbed like a command line, so a CI job
/// that put its rack URL there leaves no token in the log; a second one is not taken. A `HEAD`
/// is recorded as a `HEAD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_records_the_user_agent_scrubbed_and_the_method_as_sent() {
    let gw = Gateway::start().await;
    let leaked = "rgw_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcd";
    let agent = format!("deploy-bot http://convox:{leaked}@127.0.0.1:5443");
    let auth = format!("Bearer {}", gw.admin());
    let since = gw.head();
    for (method, agents) in [
        ("GET", vec![agent.as_str()]),
        ("HEAD", vec![agent.as_str()]),
        ("GET", vec!["one", "two"]),
    ] {
        let mut headers = vec![("Authorization", auth.as_str())];
        headers.extend(agents.iter().map(|a| ("User-Agent", *a)));
        let reply = send(gw.running.console, method, TOKENS, &headers, None).await;
        assert_eq!(reply.status, 200, "{method}");
    }
    let calls: Vec<CommandRequested> = gw
        .events_since(since)
        .await
        .iter()
        .filter_map(requested)
        .cloned()
        .collect();
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.user_agent.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", "deploy-bot http://convox:[redacted]@127.0.0.1:5443"),
            ("HEAD", "deploy-bot http://convox:[redacted]@127.0.0.1:5443"),
            ("GET", ""),
        ]
    );
    gw.finish().await;
}

/// The token `id` in a list answer.
fn entry_of(listed: &Value, id: &str) -> Value {
    listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed: {listed}"))
        .clone()
}

fn create_body(owner: &str, scopes: &[&str]) -> Value {
    json!({"name": "ci", "owner": owner, "scopes": scopes, "expires_in_days": 30})
}

// === Tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_creates_lists_and_revokes_and_the_proxy_follows_at_once() {
    let gw = Gateway::start().await;
    gw.token_for("deployer@example.com", Role::Deployer, &["convox:app:read"])
        .await;
    let created = gw
        .api(
            "POST",
            TOKENS,
            gw.admin(),
            Some(create_body(
                "deployer@example.com",
                &["convox:app:read", "convox:release:read"],
            )),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    assert_eq!(created.header("cache-control"), Some("no-store"));
    assert!(created.header("set-cookie").is_none());
    let v = created.json();
    let (id, secret) = (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    );
    assert!(secret.starts_with("rgw_"));
    let seq = v["seq"].as_u64().unwrap();
    let record = gw.events_since(seq).await.remove(0);
    // The calling token, as the call's own record (just before) names it.
    let caller = gw
        .events_since(seq - 1)
        .await
        .into_iter()
        .find_map(|r| match r.event {
            Event::CommandRequested(c) => c.credential,
            _ => None,
        })
        .unwrap();
    match &record.event {
        Event::TokenCreated {
            token,
            owner,
            scopes,
            expires,
            dev_only,
            by,
            by_token,
            ..
        } => {
            assert_eq!(token.to_hex(), id);
            assert_eq!(owner.0, "deployer@example.com");
            assert_eq!(scopes.len(), 2);
            assert!(expires.is_some());
            assert!(*dev_only, "a dev-only caller mints dev-only tokens");
            assert_eq!(by.0, DEV_USER, "the caller is the actor");
            assert_eq!(
                by_token.map(|t| t.to_hex()),
                Some(caller.clone()),
                "the token it was made with"
            );
        }
        other => panic!("expected TokenCreated at {seq}, found {other:?}"),
    }
    // The call itself is recorded in the same entry, just before: which token asked, from
    // where, under which request id.
    assert_the_call_precedes(&gw, seq, "POST", TOKENS, &created).await;
    assert_eq!(gw.proxy_status(&secret).await, 200, "the new token works");

    let listed = gw.api("GET", TOKENS, gw.admin(), None).await;
    assert_eq!(listed.status, 200);
    let text = String::from_utf8_lossy(&listed.body).into_owned();
    let hash = gw.store().with_state(|s| {
        s.tokens
            .get(&TokenId::from_hex(&id).unwrap())
            .unwrap()
            .secret_sha256
    });
    for hidden in [secret.as_str(), &hash.to_hex()] {
        assert!(!text.contains(hidden), "the list shows a secret or hash");
    }
    let entry = |listed: Value| entry_of(&listed, &id);
    let mine = entry(listed.json());
    assert_eq!(mine["owner"], "deployer@example.com");
    assert_eq!(
        mine["created_by"], DEV_USER,
        "who made a token for another owner"
    );
    assert_eq!(
        mine["created_with"],
        caller.as_str(),
        "and with which token"
    );
    let dev = entry_of(&listed.json(), &caller);
    assert!(
        dev.get("created_with").is_none(),
        "dev's own token was made by no token: {dev}"
    );
    assert_eq!(
        mine["scopes"],
        json!(["convox:app:read", "convox:release:read"])
    );
    assert_eq!(mine["state"], "active");
    assert_eq!(
        mine["grants"],
        json!(["convox:app:read", "convox:release:read"])
    );
    assert!(
        mine["last_used"].is_string(),
        "the proxy call marked it used"
    );
    assert!(mine["revoked"].is_null());
    assert!(mine["created"].is_string() && mine["expires"].is_string());
    // Its owner demoted to nothing: still `active`, and the list shows it grants nothing.
    admin::revoke_role(
        gw.store(),
        Principal("deployer@example.com".into()),
        Role::Deployer,
        Principal("system".into()),
    )
    .await
    .unwrap();
    let mine = entry(gw.api("GET", TOKENS, gw.admin(), None).await.json());
    assert_eq!(
        (&mine["state"], &mine["grants"]),
        (&json!("active"), &json!([]))
    );
    assert_eq!(gw.proxy_status(&secret).await, 403, "and grants nothing");
    admin::grant_role(
        gw.store(),
        Principal("deployer@example.com".into()),
        Role::Deployer,
        Principal("system".into()),
    )
    .await
    .unwrap();

    let path = format!("{TOKENS}/{id}");
    let revoked = gw
        .api(
            "DELETE",
            &path,
            gw.admin(),
            Some(json!({"reason": "rotated"})),
        )
        .await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.json());
    let seq = revoked.json()["seq"].as_u64().unwrap();
    match &gw.events_since(seq).await[0].event {
        Event::TokenRevoked { token, by, reason } => {
            assert_eq!(token.to_hex(), id);
            assert_eq!(by.0, DEV_USER);
            assert_eq!(reason, "rotated");
        }
        other => panic!("expected TokenRevoked, found {other:?}"),
    }
    assert_the_call_precedes(&gw, seq, "DELETE", &path, &revoked).await;
    assert_eq!(gw.proxy_status(&secret).await, 401, "revoked at once");

    let before = gw.head();
    let again = gw
        .api(
            "DELETE",
            &path,
            gw.admin(),
            Some(json!({"reason": "twice"})),
        )
        .await;
    assert_eq!(again.refused(409), "already_revoked");
    assert_eq!(one_denial(&gw, before).await.reason, "already_revoked");
    let before = gw.head();
    let unknown = format!("{TOKENS}/{}", TokenId([7; 16]).to_hex());
    let missing = gw
        .api("DELETE", &unknown, gw.admin(), Some(json!({"reason": "x"})))
        .await;
    assert_eq!(missing.refused(404), "no_such_token");
    assert_eq!(one_denial(&gw, before).await.reason, "no_such_token");
    let listed = gw.api("GET", TOKENS, gw.admin(), None).await.json();
    assert!(
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str() && t["state"] == "revoked" && t["revoked"].is_string())
    );
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_the_gateway_permission_get_403_everywhere_and_each_is_recorded() {
    let gw = Gateway::start().await;
    let every = ["convox:*:*", "gateway:token:manage"];
    let (viewer_id, viewer) = gw
        .token_for("viewer@example.com", Role::Viewer, &every)
        .await;
    let (deployer_id, deployer) = gw
        .token_for("deployer@example.com", Role::Deployer, &every)
        .await;
    // An admin's token without the gateway scope: the owner holds it, the token does not.
    let (unscoped_id, unscoped) = gw
        .token_for("root@example.com", Role::Admin, &["convox:*:*"])
        .await;
    let target = format!("{TOKENS}/{}", viewer_id.to_hex());
    for (id, secret, owner, kind) in [
        (
            viewer_id,
            &viewer,
            "viewer@example.com",
            "permission_denied",
        ),
        (
            deployer_id,
            &deployer,
            "deployer@example.com",
            "permission_denied",
        ),
        (unscoped_id, &unscoped, "root@example.com", "token_scope"),
    ] {
        for (method, path, body) in [
            (
                "POST",
                TOKENS,
                Some(create_body(owner, &["convox:app:read"])),
            ),
            ("GET", TOKENS, None),
            ("DELETE", target.as_str(), Some(json!({"reason": "x"}))),
        ] {
            let before = gw.head();
            let reply = gw.api(method, path, secret, body).await;
            assert_eq!(reply.refused(403), kind, "{method} {path} as {owner}");
            let c = one_denial(&gw, before).await;
            assert_eq!(c.actor.0, owner);
            assert_eq!(c.credential, Some(id.to_hex()));
            assert_eq!(c.method, method);
            assert_eq!(c.path, path);
            assert_eq!(c.reason, kind);
            assert_eq!(
                c.permission.as_ref().map(|p| p.0.as_str()),
                Some("gateway:token:manage")
            );
        }
    }
    assert_eq!(
        gw.proxy_status(&viewer).await,
        200,
        "the tokens themselves work"
    );
    gw.finish().await;
}

/// A token an admin made for someone else (a CI principal's, typically) is held within its
/// maker's current roles as well as its owner's: the maker was handed its secret, so demoting
/// the maker narrows it and disabling the maker stops it, on the proxy and on the API, while
/// tokens the owner's own came from elsewhere keep working. So are the tokens made with a token
/// the maker made (whoever holds that one holds them). Enabling the maker again restores it:
/// the bound is the role table now, not a revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_for_another_holds_no_more_than_its_maker_now_does() {
    let gw = Gateway::start().await;
    let alice = Principal("alice@example.com".into());
    let (_, by_alice) = gw
        .token_for(
            &alice.0,
            Role::Admin,
            &["convox:*:*", "gateway:token:manage"],
        )
        .await;
    let (_, bot_own) = gw
        .token_for("ci-bot@example.com", Role::Deployer, &["convox:app:read"])
        .await;
    gw.token_for("bob@example.com", Role::Admin, &["convox:app:read"])
        .await;
    let cicd: Vec<String> = rack_gateway::policy::roles::cicd_scopes()
        .into_iter()
        .map(|p| p.0)
        .collect();
    let cicd: Vec<&str> = cicd.iter().map(String::as_str).collect();
    let mut made = Vec::new();
    for (owner, scopes) in [
        ("ci-bot@example.com", cicd.clone()),
        (
            "bob@example.com",
            vec!["gateway:token:manage", "convox:app:read"],
        ),
    ] {
        let reply = gw
            .api("POST", TOKENS, &by_alice, Some(create_body(owner, &scopes)))
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.json());
        let v = reply.json();
        made.push((
            v["id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        ));
    }
    let [(ci_id, ci), (_, bobs)] = <[(String, String); 2]>::try_from(made).unwrap();
    // Made with the token alice made for bob: whoever holds that one holds these, so alice
    // bounds them too, for bob himself and for carol.
    gw.token_for("carol@example.com", Role::Viewer, &["convox:app:read"])
        .await;
    let mut chained = Vec::new();
    for owner in ["bob@example.com", "carol@example.com"] {
        let reply = gw
            .api(
                "POST",
                TOKENS,
                &bobs,
                Some(
                    json!({"name": "ci", "owner": owner, "scopes": ["convox:app:read"],
                    "expires_in_days": 29}),
                ),
            )
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.json());
        chained.push(reply.json()["token"].as_str().unwrap().to_owned());
        assert_eq!(gw.proxy_status(chained.last().unwrap()).await, 200);
    }
    let grants = |listed: &Value| -> Vec<String> {
        let mut g: Vec<String> = entry_of(listed, &ci_id)["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        g.sort();
        g
    };
    let listed = gw.api("GET", TOKENS, gw.admin(), None).await.json();
    assert_eq!(entry_of(&listed, &ci_id)["created_by"], alice.0.as_str());
    let mut all = cicd.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    all.sort();
    assert_eq!(grants(&listed), all, "the maker holds every scope");
    assert_eq!(gw.proxy_status(&ci).await, 200);

    // Demoted to viewer: the CI token keeps only the reads a viewer holds.
    let system = Principal("system".into());
    admin::grant_role(gw.store(), alice.clone(), Role::Viewer, system.clone())
        .await
        .unwrap();
    admin::revoke_role(gw.store(), alice.clone(), Role::Admin, system.clone())
        .await
        .unwrap();
    let listed = gw.api("GET", TOKENS, gw.admin(), None).await.json();
    let viewer = rack_gateway::policy::roles::role_permissions(Role::Viewer);
    let narrowed: Vec<String> = all
        .iter()
        .filter(|p| viewer.iter().any(|v| v.as_str() == p.as_str()))
        .cloned()
        .collect();
    assert!(narrowed.len() < all.len() && !narrowed.is_empty());
    assert_eq!(grants(&listed), narrowed, "narrowed to the maker's roles");
    assert_eq!(gw.proxy_status(&ci).await, 200, "app reads are a viewer's");
    let before = gw.head();
    let auth = format!("Basic {}", STANDARD.encode(format!("convox:{ci}")));
    let promote = send(
        gw.running.proxy,
        "POST",
        "/apps/x/releases/R1/promote",
        &[("Authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(
        promote.status,
        403,
        "{:?}",
        String::from_utf8_lossy(&promote.body)
    );
    let c = one_denied_call(&gw, before).await;
    assert_eq!(
        (c.reason.as_str(), c.permission.map(|p| p.0)),
        (
            "maker_permission",
            Some("convox:release:promote".to_owned())
        )
    );

    // Disabled: every token she made for others stops, wherever it is used.
    admin::disable_user(gw.store(), alice.clone(), system.clone(), "left".into())
        .await
        .unwrap();
    let before = gw.head();
    assert_eq!(gw.proxy_status(&ci).await, 403);
    let c = one_denied_call(&gw, before).await;
    assert_eq!(
        (c.actor.0.as_str(), c.reason.as_str()),
        ("ci-bot@example.com", "maker_disabled")
    );
    let before = gw.head();
    let reply = gw.api("GET", TOKENS, &bobs, None).await;
    assert_eq!(reply.refused(403), "maker_disabled");
    assert_eq!(one_denial(&gw, before).await.reason, "maker_disabled");
    for (token, owner) in chained.iter().zip(["bob", "carol"]) {
        assert_eq!(
            gw.proxy_status(token).await,
            403,
            "{owner}'s token made with the one alice made for bob"
        );
    }
    let listed = gw.api("GET", TOKENS, gw.admin(), None).await.json();
    assert_eq!(entry_of(&listed, &ci_id)["state"], "active");
    assert!(
        grants(&listed).is_empty(),
        "the list shows it grants nothing"
    );
    assert_eq!(
        gw.proxy_status(&bot_own).await,
        200,
        "the owner's token from elsewhere is not the maker's"
    );

    admin::enable_user(gw.store(), alice.clone(), system)
        .await
        .unwrap();
    assert_eq!(gw.proxy_status(&ci).await, 200, "the bound follows her");
    gw.finish().await;
}

/// A caller without credentials keeps no connection, even when it asks to: each one it holds
/// is a place on the listener that others cannot have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_closes_a_keep_alive_connection() {
    let gw = Gateway::start().await;
    let mut stream = TcpStream::connect(gw.running.console).await.unwrap();
    let req = format!("GET {TOKENS} HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("the gateway closes the connection after its 401")
        .unwrap();
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_garbled_credentials_get_401_and_are_counted_not_recorded() {
    let gw = Gateway::start().await;
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("convox:{}", gw.admin()))
    );
    let unknown = format!(
        "Bearer {}",
        rack_gateway::identity::TokenSecret::generate()
            .unwrap()
            .expose()
    );
    let before = gw.head();
    for (auth, kind) in [
        (None, "missing_credentials"),
        (Some("Bearer rgw_garbled"), "malformed_token"),
        (Some("Bearer"), "unsupported_scheme"),
        (Some(basic.as_str()), "unsupported_scheme"),
        (Some(unknown.as_str()), "unknown_or_expired_token"),
    ] {
        for (method, path) in [
            ("GET", TOKENS),
            ("POST", TOKENS),
            ("DELETE", "/api/v1/tokens/x"),
        ] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();
            let reply = send(gw.running.console, method, path, &headers, None).await;
            assert_eq!(reply.refused(401), kind, "{method} {path} with {auth:?}");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer realm=\"rack-gateway\"")
            );
        }
    }
    assert_eq!(gw.head(), before, "nothing is recorded one by one");
    let (events, _dir) = gw.finish().await;
    let counted = |reason: &str| -> u64 {
        events
            .iter()
            .filter_map(|r| match &r.event {
                Event::DenialsCounted {
                    ip,
                    reason: why,
                    count,
                    ..
                } if ip == "127.0.0.1" && why == reason => Some(*count),
                _ => None,
            })
            .sum()
    };
    assert_eq!(counted("missing_credentials"), 3);
    assert_eq!(counted("malformed_token"), 3);
    assert_eq!(counted("unsupported_scheme"), 6);
    assert_eq!(counted("unknown_or_expired_token"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_mints_beyond_the_owners_or_their_own_permissions() {
    let gw = Gateway::start().await;
    gw.token_for("viewer@example.com", Role::Viewer, &["convox:app:read"])
        .await;
    gw.token_for("deployer@example.com", Role::Deployer, &["convox:app:read"])
        .await;
    // The admin may manage tokens, but this token of theirs reads apps and nothing else.
    let (_, narrow) = gw
        .token_for(
            "root@example.com",
            Role::Admin,
            &["gateway:token:manage", "convox:app:read"],
        )
        .await;
    for (token, owner, scopes, kind, permission) in [
        (
            gw.admin().to_owned(),
            "viewer@example.com",
            vec!["convox:app:read", "convox:env:set"],
            "beyond_owner_permissions",
            "convox:env:set",
        ),
        (
            gw.admin().to_owned(),
            "nobody@example.com",
            vec!["convox:app:read"],
            "beyond_owner_permissions",
            "convox:app:read",
        ),
        (
            gw.admin().to_owned(),
            "viewer@example.com",
            vec!["gateway:token:manage"],
            "beyond_owner_permissions",
            "gateway:token:manage",
        ),
        (
            narrow.clone(),
            "deployer@example.com",
            vec!["convox:app:read", "convox:release:create"],
            "beyond_caller_permissions",
            "convox:release:create",
        ),
    ] {
        let before = gw.head();
        let reply = gw
            .api("POST", TOKENS, &token, Some(create_body(owner, &scopes)))
            .await;
        assert_eq!(reply.refused(403), kind, "{owner} {scopes:?}");
        let c = one_denial(&gw, before).await;
        assert_eq!(c.reason, kind);
        assert_eq!(c.permission, Some(Permission(permission.into())));
        assert!(c.params.iter().any(|(k, v)| k == "owner" && v == owner));
    }
    // Within both bounds, the narrow token mints.
    let ok = gw
        .api(
            "POST",
            TOKENS,
            &narrow,
            Some(create_body("deployer@example.com", &["convox:app:read"])),
        )
        .await;
    assert_eq!(ok.status, 201);
    let seq = ok.json()["seq"].as_u64().unwrap();
    assert!(matches!(
        &gw.events_since(seq).await[0].event,
        Event::TokenCreated { by, dev_only: false, .. } if by.0 == "root@example.com"
    ));
    gw.finish().await;
}

/// A token that expires cannot mint one that outlives it (or never expires): otherwise a token
/// about to expire, or a leaked one, could hand its holder a lasting credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_mints_one_that_outlives_it() {
    let gw = Gateway::start().await;
    let root = Principal("root@example.com".into());
    admin::grant_role(
        gw.store(),
        root.clone(),
        Role::Admin,
        Principal("system".into()),
    )
    .await
    .unwrap();
    let ten_days = Clock.now().plus(Duration::from_secs(10 * 86_400));
    let expiring = admin::create_token(
        gw.store(),
        TokenRequest {
            name: "short".into(),
            owner: root,
            scopes: vec![
                Permission("gateway:token:manage".into()),
                Permission("convox:app:read".into()),
            ],
            expires: Some(ten_days),
            dev_only: false,
            by: Principal("system".into()),
        },
    )
    .await
    .unwrap();
    let secret = expiring.secret.expose().to_owned();
    let body = |days: Option<u32>| {
        let mut b =
            json!({"name": "ci", "owner": "root@example.com", "scopes": ["convox:app:read"]});
        if let Some(d) = days {
            b["expires_in_days"] = json!(d);
        }
        b
    };
    // An authenticated caller refused by policy: a recorded 403, nothing created.
    for days in [Some(30), None] {
        let before = gw.head();
        let reply = gw.api("POST", TOKENS, &secret, Some(body(days))).await;
        assert_eq!(reply.refused(403), "beyond_caller_expiry", "{days:?}");
        // The caller's token has 10 days less the moments since: it says what may be asked.
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.ends_with("set expires_in_days (`--expires-in-days`) to at most 9"),
            "{error}"
        );
        let appended = gw.appended_since(before).await;
        assert!(
            matches!(appended.as_slice(), [Event::CommandRequested(c)]
                if c.decision == Decision::Deny && c.reason == "beyond_caller_expiry"),
            "{days:?}: {appended:?}"
        );
    }
    let ok = gw.api("POST", TOKENS, &secret, Some(body(Some(5)))).await;
    assert_eq!(ok.status, 201, "{:?}", String::from_utf8_lossy(&ok.body));
    gw.finish().await;
}

/// After a leak: the tokens a management token minted, and what those minted, are found by
/// `created_with` and revoked with it in one entry; a token made by another is not. Asked
/// again once the named token is revoked alone, only what it made is revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_revoked_with_every_token_made_with_it() {
    let gw = Gateway::start().await;
    let body = |name: &str, scopes: &[&str], days: u32| json!({"name": name, "owner": DEV_USER, "scopes": scopes, "expires_in_days": days});
    let manage = ["gateway:token:manage", "convox:app:read"];
    let create = |by: String, b: Value| {
        let gw = &gw;
        async move {
            let reply = gw.api("POST", TOKENS, &by, Some(b)).await;
            assert_eq!(reply.status, 201, "{:?}", reply.json());
            let v = reply.json();
            (
                v["id"].as_str().unwrap().to_owned(),
                v["token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let admin = gw.admin().to_owned();
    let (t1, t1_secret) = create(admin.clone(), body("leaked", &manage, 30)).await;
    let (t2, t2_secret) = create(t1_secret.clone(), body("minted", &manage, 29)).await;
    let (t3, t3_secret) = create(
        t2_secret.clone(),
        body("minted-2", &["convox:app:read"], 28),
    )
    .await;
    let (other, other_secret) =
        create(admin.clone(), body("other", &["convox:app:read"], 30)).await;
    let revoke = |id: &str, descendants: bool| {
        let (gw, admin) = (&gw, admin.clone());
        let path = format!("{TOKENS}/{id}");
        async move {
            let mut b = json!({"reason": "leaked in a CI log"});
            if descendants {
                b["with_descendants"] = json!(true);
            }
            gw.api("DELETE", &path, &admin, Some(b)).await
        }
    };

    // Revoked alone first: the tokens it made still work.
    let alone = revoke(&t1, false).await;
    assert_eq!(alone.status, 200, "{:?}", alone.json());
    assert_eq!(alone.json()["revoked"], json!([t1]));
    assert_eq!(gw.proxy_status(&t2_secret).await, 200);
    assert_eq!(revoke(&t1, false).await.refused(409), "already_revoked");

    // With its descendants: what it made, and what that made, in one entry after the call.
    let before = gw.head();
    let all = revoke(&t1, true).await;
    assert_eq!(all.status, 200, "{:?}", all.json());
    assert_eq!(all.json()["revoked"], json!([t2, t3]));
    let appended = gw.appended_since(before).await;
    match appended.as_slice() {
        [
            Event::CommandRequested(c),
            Event::TokenRevoked { token: a, .. },
            Event::TokenRevoked { token: b, .. },
        ] => {
            assert_eq!(c.decision, Decision::Allow);
            assert!(
                c.params
                    .contains(&("with_descendants".to_owned(), "true".to_owned())),
                "{:?}",
                c.params
            );
            assert_eq!((a.to_hex(), b.to_hex()), (t2.clone(), t3.clone()));
        }
        other => panic!("{other:?}"),
    }
    for secret in [&t1_secret, &t2_secret, &t3_secret] {
        assert_eq!(gw.proxy_status(secret).await, 401);
    }
    assert_eq!(gw.proxy_status(&other_secret).await, 200, "made by another");
    let listed = gw.api("GET", TOKENS, &admin, None).await.json();
    assert_eq!(entry_of(&listed, &other)["state"], "active");
    assert_eq!(entry_of(&listed, &t3)["created_with"], t2.as_str());

    // Nothing left to revoke: refused and recorded, nothing else appended.
    assert_eq!(revoke(&t1, true).await.refused(409), "already_revoked");
    gw.finish().await;
}

/// Sends malformed content as the admin and checks the 400: its `kind`, where it points
/// (`at` starts with `at`), and that it was recorded as the admin's denial, with where and
/// nothing of the content. `typed` sends `Content-Type: application/json`. Returns what the
/// answer says is wrong.
async fn check_malformed(
    gw: &Gateway,
    (method, path, typed): (&str, &str, bool),
    body: &str,
    kind: &str,
    at: &str,
) -> String {
    let admin = format!("Bearer {}", gw.admin());
    let mut headers = vec![("Authorization", admin.as_str())];
    if typed {
        headers.push(("Content-Type", "application/json"));
    }
    let before = gw.head();
    let reply = send(
        gw.running.console,
        method,
        path,
        &headers,
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(reply.refused(400), kind, "{method} {path} {body}");
    let v = reply.json();
    let where_ = v["at"].as_str().unwrap_or_else(|| panic!("no `at`: {v}"));
    assert!(where_.starts_with(at), "{body}: at {where_:?}, not {at:?}");
    let denial = one_denial(gw, before).await;
    assert_eq!(denial.reason, kind, "{method} {path} {body}");
    assert_eq!(
        denial.actor.0, "dev@rack-gateway.local",
        "the admin's denial"
    );
    assert_eq!(denial.params, [("at".to_owned(), where_.to_owned())]);
    v["error"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_content_gets_400_with_what_and_where_and_is_recorded() {
    let gw = Gateway::start().await;
    gw.token_for("viewer@example.com", Role::Viewer, &["convox:app:read"])
        .await;
    let post = ("POST", TOKENS, true);
    let create = |fields: &str| {
        format!(
            r#"{{"name":"ci","owner":"viewer@example.com","scopes":["convox:app:read"]{fields}}}"#
        )
    };
    check_malformed(
        &gw,
        post,
        r#"{"name": "#,
        "invalid_json",
        "body line 1 column",
    )
    .await;
    check_malformed(
        &gw,
        post,
        &create(r#","dev_only":false"#),
        "invalid_json",
        "body line 1 column",
    )
    .await;
    check_malformed(
        &gw,
        post,
        r#"{"name":"ci","owner":"viewer@example.com","scopes":"convox:app:read"}"#,
        "invalid_json",
        "body line 1 column",
    )
    .await;
    // The parser quotes a value it cannot take; a token's secret pasted there, or as a key,
    // does not come back.
    let pasted = format!("rgw_{}", "Ab1-".repeat(11));
    for fields in [
        format!(r#","expires_in_days":"{pasted}""#),
        format!(r#","{pasted}":1"#),
    ] {
        let what = check_malformed(
            &gw,
            post,
            &create(&fields),
            "invalid_json",
            "body line 1 column",
        )
        .await;
        assert!(
            !what.contains(&pasted) && what.contains("[redacted]"),
            "{what}"
        );
    }
    check_malformed(
        &gw,
        post,
        r#"{"name":"ci","owner":"viewer@example.com","scopes":["convox:app:read","convox:app:reed"]}"#,
        "invalid_field",
        "scopes[1]",
    )
    .await;
    check_malformed(
        &gw,
        post,
        r#"{"name":"ci","owner":"viewer@example.com","scopes":["convox:*:*"]}"#,
        "invalid_field",
        "scopes[0]",
    )
    .await;
    check_malformed(
        &gw,
        post,
        r#"{"name":"ci","owner":"viewer@example.com","scopes":[]}"#,
        "invalid_field",
        "scopes",
    )
    .await;
    check_malformed(
        &gw,
        post,
        r#"{"name":"ci","owner":"not an email","scopes":["convox:app:read"]}"#,
        "invalid_field",
        "owner",
    )
    .await;
    check_malformed(
        &gw,
        post,
        r#"{"name":"","owner":"viewer@example.com","scopes":["convox:app:read"]}"#,
        "invalid_field",
        "name",
    )
    .await;
    for days in ["0", "3651"] {
        let body = create(&format!(r#","expires_in_days":{days}"#));
        check_malformed(&gw, post, &body, "invalid_field", "expires_in_days").await;
    }
    check_malformed(
        &gw,
        ("POST", TOKENS, false),
        &create(""),
        "invalid_content_type",
        "Content-Type",
    )
    .await;
    let reason = r#"{"reason":"x"}"#;
    let id = TokenId([0xab; 16]).to_hex();
    let good = format!("{TOKENS}/{id}");
    for bad in ["xyz".to_owned(), id.to_uppercase(), format!("{id}0")] {
        let path = format!("{TOKENS}/{bad}");
        check_malformed(&gw, ("DELETE", &path, true), reason, "invalid_id", "id").await;
    }
    let delete = ("DELETE", good.as_str(), true);
    check_malformed(&gw, delete, "", "invalid_json", "body line 1 column").await;
    check_malformed(&gw, delete, r#"{"reason":""}"#, "invalid_field", "reason").await;
    // A token pasted into the reason for revoking it, or into a name, would stay in the log
    // for good: refused, and the refusal records where, not the text.
    let pasted = format!(r#"{{"reason":"leaked: {}"}}"#, gw.admin());
    check_malformed(&gw, delete, &pasted, "invalid_field", "reason").await;
    let named = format!(
        r#"{{"name":"ci {}","owner":"viewer@example.com","scopes":["convox:app:read"]}}"#,
        gw.admin()
    );
    check_malformed(&gw, post, &named, "invalid_field", "name").await;
    check_malformed(
        &gw,
        delete,
        r#"{"reason":"x","by":"someone@example.com"}"#,
        "invalid_json",
        "body line 1 column",
    )
    .await;
    let malformed = 21;

    let admin = format!("Bearer {}", gw.admin());
    let huge = create(&format!(r#","name2":"{}""#, "a".repeat(20_000)));
    let before = gw.head();
    let reply = send(
        gw.running.console,
        "POST",
        TOKENS,
        &[
            ("Authorization", admin.as_str()),
            ("Content-Type", "application/json"),
        ],
        Some(huge.as_bytes()),
    )
    .await;
    assert_eq!(reply.refused(413), "body_too_large");
    assert_eq!(one_denial(&gw, before).await.reason, "body_too_large");
    let (events, _dir) = gw.finish().await;
    let malformed_reason =
        |reason: &str| reason.starts_with("invalid_") || reason == "body_too_large";
    let recorded = events
        .iter()
        .filter_map(requested)
        .filter(|c| c.decision == Decision::Deny && malformed_reason(&c.reason))
        .count();
    assert_eq!(recorded, malformed + 1, "each refusal is recorded");
    assert!(
        !events.iter().any(|r| matches!(
            &r.event,
            Event::DenialsCounted { reason, .. } if malformed_reason(reason)
        )),
        "an authenticated caller's refusals are not merely counted"
    );
}

/// A body cut short by the caller (it stops sending, its half of the connection closed) is
/// not an oversized body: the refusal says what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_is_not_recorded_as_too_large() {
    let gw = Gateway::start().await;
    let mut stream = TcpStream::connect(gw.running.console).await.unwrap();
    let head = format!(
        "POST {TOKENS} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        gw.admin()
    );
    let before = gw.head();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("body_unreadable"), "{text}");
    assert_eq!(one_denial(&gw, before).await.reason, "body_unreadable");
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_log_cannot_append_the_api_answers_503_and_changes_nothing() {
    let gw = Gateway::start().await;
    let (viewer_id, viewer) = gw
        .token_for(
            "viewer@example.com",
            Role::Viewer,
            &["convox:*:*", "gateway:token:manage"],
        )
        .await;
    gw.store().shutdown();
    let path = format!("{TOKENS}/{}", viewer_id.to_hex());
    for (token, method, path, body) in [
        (
            gw.admin(),
            "POST",
            TOKENS,
            Some(create_body("viewer@example.com", &["convox:app:read"])),
        ),
        (gw.admin(), "GET", TOKENS, None),
        (
            gw.admin(),
            "DELETE",
            path.as_str(),
            Some(json!({"reason": "x"})),
        ),
        (viewer.as_str(), "GET", TOKENS, None),
    ] {
        let reply = gw.api(method, path, token, body).await;
        assert_eq!(reply.refused(503), "audit_unavailable", "{method} {path}");
        assert_eq!(reply.header("retry-after"), Some("5"));
    }
    assert!(gw.store().with_state(|s| {
        s.tokens
            .get(&viewer_id)
            .is_some_and(|t| t.revoked.is_none())
    }));
}

/// A console as `serve` wires it (dev-only tokens refused, TLS when given), on its own data
/// directory with an admin, `root@example.com`, and the rack unreachable (the API never
/// calls it).
struct ServeConsole {
    addr: SocketAddr,
    store: Arc<store::Store>,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl ServeConsole {
    async fn start(tls: Option<&Path>) -> ServeConsole {
        use rack_gateway::config::{Limits, Rack, Secret, Tls};
        use rack_gateway::console::{self, ConsoleState};
        use rack_gateway::keys::Keys;
        use rack_gateway::proxy::ProxyState;
        use rack_gateway::proxy::upstream::Upstream;

        let dir = tempfile::tempdir().unwrap();
        Keys::init(dir.path(), "token-api.test/log").unwrap();
        let (store, keys) = store::open(dir.path(), CheckpointPolicy::default()).unwrap();
        let store = Arc::new(store);
        admin::grant_role(
            &*store,
            Principal("root@example.com".into()),
            Role::Admin,
            Principal("system".into()),
        )
        .await
        .unwrap();
        let upstream = Upstream::new(&Rack {
            url: "http://127.0.0.1:9".into(),
            password: Secret::new("unused".into()),
            ca_file: None,
            ca_sha256: None,
            pin_sha256: None,
            insecure_skip_verify: false,
        })
        .unwrap();
        let proxy = ProxyState::new(
            store.clone(),
            Arc::new(keys),
            upstream,
            false,
            Vec::new(),
            Limits {
                per_ip_per_minute: 600,
                streams_per_principal: 4,
                header_timeout: Duration::from_secs(5),
                stream_idle: Duration::from_secs(5),
                form_timeout: Duration::from_secs(30),
            },
        );
        let tls = tls.map(|d| {
            rack_gateway::server::tls::server_config(
                &Tls::at(d.join("cert.pem"), d.join("key.pem")).unwrap(),
            )
            .unwrap()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let server = rack_gateway::server::spawn_with_tls(
            listener,
            console::app(Arc::new(ConsoleState::beside(&proxy))),
            rack_gateway::server::Limits {
                header_timeout: Duration::from_secs(5),
                on_refused: None,
                admit: None,
            },
            tls,
            Arc::from([]),
            stopped,
        );
        ServeConsole {
            addr,
            store,
            stop,
            server,
            _dir: dir,
        }
    }

    /// A token of the admin's that may manage tokens.
    async fn admin_token(&self, dev_only: bool) -> String {
        let created = admin::create_token(
            &*self.store,
            TokenRequest {
                name: "t".into(),
                owner: Principal("root@example.com".into()),
                scopes: vec![Permission("gateway:token:manage".into())],
                expires: None,
                dev_only,
                by: Principal("system".into()),
            },
        )
        .await
        .unwrap();
        created.secret.expose().to_owned()
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.server.await.unwrap();
        self.store.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dev_only_token_is_refused_where_dev_tokens_are() {
    let console = ServeConsole::start(None).await;
    let (real, dev) = (
        console.admin_token(false).await,
        console.admin_token(true).await,
    );
    let get = |t: String| {
        let addr = console.addr;
        async move {
            let auth = format!("Bearer {t}");
            send(addr, "GET", TOKENS, &[("Authorization", &auth)], None).await
        }
    };
    assert_eq!(get(real).await.status, 200);
    assert_eq!(get(dev).await.refused(401), "dev_token_refused");
    console.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_trusts_an_https_gateway_by_its_ca_or_its_pinned_certificate_only() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    use sha2::{Digest, Sha256};

    let certs = tempfile::tempdir().unwrap();
    certificate(certs.path());
    let console = ServeConsole::start(Some(certs.path())).await;
    let token = console.admin_token(false).await;
    let url = format!("https://{}", console.addr);
    let ca = certs.path().join("ca.pem");
    let der = CertificateDer::from_pem_file(certs.path().join("cert.pem")).unwrap();
    let pin = hex::encode(Sha256::digest(der.as_ref()));
    let list = |extra: Vec<String>| {
        let mut args = vec![
            "token".to_owned(),
            "list".into(),
            "--gateway".into(),
            url.clone(),
        ];
        args.extend(extra);
        let token = token.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&args, Some(&token)).await
        }
    };
    let by_ca = list(vec!["--ca-file".into(), ca.to_str().unwrap().into()]).await;
    assert!(stdout(&by_ca).contains("owner=root@example.com"));
    let by_pin = list(vec!["--pin-sha256".into(), pin]).await;
    assert!(stdout(&by_pin).contains("owner=root@example.com"));
    for (extra, says) in [
        (vec![], "needs --ca-file or --pin-sha256"),
        (
            vec!["--pin-sha256".to_owned(), "ab".repeat(32)],
            "cannot reach the gateway",
        ),
        (
            vec![
                "--ca-file".to_owned(),
                certs.path().join("key.pem").to_str().unwrap().into(),
            ],
            "CA bundle",
        ),
    ] {
        let refused = list(extra).await;
        assert!(!refused.status.success());
        let err = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert!(err.contains(says), "{err}");
        assert!(!err.contains(&token));
    }
    console.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_and_revokes_against_a_running_gateway() {
    let gw = Gateway::start().await;
    gw.token_for("deployer@example.com", Role::Deployer, &["convox:app:read"])
        .await;
    let url = gw.console_url();
    let admin = gw.admin().to_owned();
    let created = gw
        .cli(
            &[
                "token",
                "create",
                "--gateway",
                &url,
                "--name",
                "from-cli",
                "--owner",
                "deployer@example.com",
                "--scope",
                "convox:app:read",
                "--scope",
                "convox:build:read",
            ],
            Some(&admin),
        )
        .await;
    let out = stdout(&created);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let id = lines[0].strip_prefix("id: ").unwrap().to_owned();
    let secret = lines[1].strip_prefix("token: ").unwrap().to_owned();
    assert_eq!(
        lines[2],
        "The token is shown once; only its SHA-256 is recorded."
    );
    assert!(!out.contains(&admin) && !String::from_utf8_lossy(&created.stderr).contains(&admin));
    assert_eq!(gw.proxy_status(&secret).await, 200);

    let listed = stdout(
        &gw.cli(&["token", "list", "--gateway", &url], Some(&admin))
            .await,
    );
    let line = listed
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap()
        .to_owned();
    assert!(line.contains(" active "), "{line}");
    assert!(line.contains(
        "owner=deployer@example.com scopes=convox:app:read,convox:build:read \
         grants=convox:app:read,convox:build:read last_used="
    ));
    assert!(
        line.contains(&format!(" created_by={DEV_USER} created_with=")),
        "{line}"
    );
    let made_with = line.rsplit("created_with=").next().unwrap_or_default();
    assert!(
        made_with.len() == 32 && made_with != id,
        "the admin's token: {line}"
    );
    assert!(!listed.contains(&secret) && !listed.contains(&admin));

    let revoked = stdout(
        &gw.cli(
            &[
                "token",
                "revoke",
                "--gateway",
                &url,
                &id,
                "--reason",
                "done",
            ],
            Some(&admin),
        )
        .await,
    );
    assert!(
        revoked.starts_with(&format!("revoked {id} (seq ")),
        "{revoked}"
    );
    assert_eq!(gw.proxy_status(&secret).await, 401);

    // Refusals come back as the API's, with a failing exit.
    let denied = gw
        .cli(&["token", "revoke", "--gateway", &url, &id], Some(&admin))
        .await;
    assert!(!denied.status.success());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("409 already_revoked"));
    let unset = gw.cli(&["token", "list", "--gateway", &url], None).await;
    assert!(!unset.status.success());
    assert!(String::from_utf8_lossy(&unset.stderr).contains("RACK_GATEWAY_TOKEN"));
    let far = gw
        .cli(
            &["token", "list", "--gateway", "http://192.0.2.1:8080"],
            Some(&admin),
        )
        .await;
    assert!(!far.status.success());
    assert!(String::from_utf8_lossy(&far.stderr).contains("loopback"));

    // Online and offline print the same lines for the same state.
    let online = stdout(
        &gw.cli(&["token", "list", "--gateway", &url], Some(&admin))
            .await,
    );
    let (_, dir) = gw.finish().await;
    let data = dir.path().to_str().unwrap().to_owned();
    let offline = stdout(&run_cli(&["token", "list", "--data", &data], None).await);
    assert_eq!(online, offline);
    assert!(
        offline
            .lines()
            .any(|l| l.starts_with(&id) && l.contains(" revoked "))
    );
}

#[tokio::test]
async fn offline_and_online_modes_are_mutually_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let check = |o: Output, what: &str| {
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(err.contains(what), "{err}");
        assert!(!Path::new(data).join("log.redb").exists(), "nothing opened");
    };
    let both = ["--data", data, "--gateway", "http://127.0.0.1:9"];
    for command in [
        vec!["token", "list"],
        vec![
            "token",
            "create",
            "--name",
            "n",
            "--owner",
            "a@example.com",
            "--scope",
            "convox:app:read",
        ],
        vec!["token", "revoke", "00000000000000000000000000000000"],
    ] {
        let mut args = command.clone();
        args.extend_from_slice(&both);
        check(run_cli(&args, None).await, "cannot be used with");
        check(run_cli(&command, None).await, "required");
    }
    check(
        run_cli(
            &[
                "token",
                "revoke",
                "00000000000000000000000000000000",
                "--gateway",
                "http://127.0.0.1:9",
                "--by",
                "x@example.com",
            ],
            None,
        )
        .await,
        "cannot be used with",
    );
    check(
        run_cli(
            &["token", "list", "--data", data, "--ca-file", "/dev/null"],
            None,
        )
        .await,
        "--gateway",
    );
}

/// A token's secret in an API path (looked up with a method the route does not have, or
/// behind a trailing slash) is recorded as `[redacted]`, never in clear: the log is kept for
/// good. The log file holds it nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_secret_in_an_api_path_is_recorded_redacted() {
    let gw = Gateway::start().await;
    let (_, leaked) = gw
        .token_for("leaked@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    let cases = [
        (
            "GET",
            format!("{TOKENS}/{leaked}"),
            format!("{TOKENS}/[redacted]"),
        ),
        (
            "DELETE",
            format!("{TOKENS}/{leaked}/"),
            format!("{TOKENS}/[redacted]/"),
        ),
    ];
    for (method, path, recorded) in &cases {
        let since = gw.head();
        let reply = gw.api(method, path, gw.admin(), None).await;
        assert_eq!(reply.refused(404), "unknown_route", "{method} {path}");
        let denial = one_denial(&gw, since).await;
        assert_eq!(&denial.path, recorded, "{method} {path}");
    }
    let (_, dir) = gw.finish().await;
    let log = std::fs::read(store::log_path(dir.path())).unwrap();
    assert!(
        !log.windows(leaked.len()).any(|w| w == leaked.as_bytes()),
        "the secret is in the log file"
    );
}

/// A method and path that is no route of the API: a 404 `unknown_route` in the API's terms.
/// With a valid token the miss is recorded (a denial with no permission), whatever the token
/// may do; without one it is counted, as every unauthenticated refusal. An over-long path is
/// recorded cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_get_404_recorded_when_authenticated_and_counted_when_not() {
    let gw = Gateway::start().await;
    let (_, viewer) = gw
        .token_for("viewer@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    let long = format!("/api/v1/{}", "x".repeat(1000));
    // The HTTP parser takes a method of any length; the record keeps its first 32 bytes.
    let long_method = "M".repeat(1000);
    for (method, path) in [
        ("GET", "/api/v1/users"),
        ("POST", "/admin"),
        ("PUT", TOKENS),
        ("PATCH", "/api/v1/tokens/x"),
        ("GET", long.as_str()),
        (long_method.as_str(), "/api/v1/users"),
    ] {
        for token in [gw.admin(), viewer.as_str()] {
            let since = gw.head();
            let reply = gw.api(method, path, token, None).await;
            assert_eq!(reply.refused(404), "unknown_route", "{method} {path}");
            let denial = one_denial(&gw, since).await;
            if method.len() <= 32 {
                assert_eq!(denial.method, method);
            } else {
                assert_eq!(denial.method, format!("{}…", &method[..32]));
            }
            assert_eq!(denial.reason, "unknown_route");
            assert_eq!(denial.permission, None, "{method} {path}");
            if path.len() <= MAX_RECORDED_PATH {
                assert_eq!(denial.path, path);
            } else {
                assert_eq!(denial.path.len(), MAX_RECORDED_PATH + '…'.len_utf8());
                assert!(denial.path.ends_with('…'));
                assert!(path.starts_with(denial.path.trim_end_matches('…')));
            }
        }
    }
    let before = gw.head();
    let reply = send(gw.running.console, "GET", "/api/v1/users", &[], None).await;
    assert_eq!(reply.refused(401), "missing_credentials");
    assert_eq!(
        gw.head(),
        before,
        "an unauthenticated miss is not recorded one by one"
    );
    let (events, _dir) = gw.finish().await;
    assert!(events.iter().any(|r| matches!(
        &r.event,
        Event::DenialsCounted { reason, .. } if reason == "missing_credentials"
    )));
}

/// Every console answer, whichever handler or refusal made it, is never cached, sniffed, framed
/// or run as a page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_answer_carries_the_browser_hardening_headers() {
    let gw = Gateway::start().await;
    let admin = format!("Bearer {}", gw.admin());
    let answers = [
        send(gw.running.console, "GET", "/healthz", &[], None).await,
        send(
            gw.running.console,
            "GET",
            TOKENS,
            &[("Authorization", &admin)],
            None,
        )
        .await,
        send(gw.running.console, "GET", TOKENS, &[], None).await,
        send(
            gw.running.console,
            "GET",
            "/nowhere",
            &[("Authorization", &admin)],
            None,
        )
        .await,
    ];
    for reply in &answers {
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("x-frame-options"), Some("DENY"));
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(
            reply.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'; sandbox")
        );
    }
}

/// Offboarding from the command line: `user disable` stops a person's tokens (the list shows
/// they grant nothing), `user enable` brings them back, and the last admin stays enabled.
#[tokio::test]
async fn the_cli_disables_and_enables_a_person_and_keeps_the_last_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let ok = |o: Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stdout(&o)
    };
    ok(run_cli(&["keys", "init", "--data", data], None).await);
    for (user, role) in [
        ("root@example.com", "admin"),
        ("dev@example.com", "deployer"),
    ] {
        ok(run_cli(
            &[
                "role", "grant", "--data", data, "--user", user, "--role", role,
            ],
            None,
        )
        .await);
    }
    ok(run_cli(
        &[
            "token",
            "create",
            "--data",
            data,
            "--name",
            "ci",
            "--owner",
            "dev@example.com",
            "--scope",
            "convox:app:read",
        ],
        None,
    )
    .await);
    let grants = |listed: String| {
        listed
            .lines()
            .find(|l| l.contains("owner=dev@example.com"))
            .and_then(|l| l.split(" grants=").nth(1))
            .and_then(|g| g.split(' ').next())
            .unwrap()
            .to_owned()
    };
    let list_args = ["token", "list", "--data", data];
    let list = || run_cli(&list_args, None);
    assert_eq!(grants(ok(list().await)), "convox:app:read");
    let disabled = ok(run_cli(
        &[
            "user",
            "disable",
            "--data",
            data,
            "--user",
            "dev@example.com",
            "--reason",
            "left the team",
            "--by",
            "root@example.com",
        ],
        None,
    )
    .await);
    assert!(
        disabled.starts_with("disabled dev@example.com"),
        "{disabled}"
    );
    assert_eq!(grants(ok(list().await)), "nothing");
    // A token made offline for a disabled owner is made, with a warning that it grants nothing.
    let made = run_cli(
        &[
            "token",
            "create",
            "--data",
            data,
            "--name",
            "prepared",
            "--owner",
            "dev@example.com",
            "--scope",
            "convox:app:read",
        ],
        None,
    )
    .await;
    assert!(made.status.success());
    let warned = String::from_utf8_lossy(&made.stderr);
    assert!(
        warned.contains("owner \"dev@example.com\" is disabled: this token grants nothing"),
        "{warned}"
    );
    let last = run_cli(
        &[
            "user",
            "disable",
            "--data",
            data,
            "--user",
            "root@example.com",
            "--reason",
            "x",
        ],
        None,
    )
    .await;
    assert!(!last.status.success());
    assert!(
        String::from_utf8_lossy(&last.stderr).contains("last admin"),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    ok(run_cli(
        &[
            "user",
            "enable",
            "--data",
            data,
            "--user",
            "dev@example.com",
        ],
        None,
    )
    .await);
    assert_eq!(grants(ok(list().await)), "convox:app:read");
}

/// The offline `token create` refuses an owner who holds no role (the API refuses scopes
/// beyond the owner's roles; offline, a typo would make a token that starts granting once
/// someone of that name is given a role), and a secret pasted as the owner, the maker (`--by`)
/// or a role is not printed back.
#[tokio::test]
async fn the_offline_cli_refuses_a_roleless_owner_and_never_repeats_a_pasted_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    stdout(&run_cli(&["keys", "init", "--data", data], None).await);
    stdout(
        &run_cli(
            &[
                "role",
                "grant",
                "--data",
                data,
                "--user",
                "dev@example.com",
                "--role",
                "viewer",
            ],
            None,
        )
        .await,
    );
    let create = |owner: &str| {
        let args: Vec<String> = [
            "token",
            "create",
            "--data",
            data,
            "--name",
            "ci",
            "--owner",
            owner,
            "--scope",
            "convox:app:read",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&args, None).await
        }
    };
    let typo = create("dve@example.com").await;
    assert!(!typo.status.success());
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("\"dve@example.com\" holds no role") && stderr.contains("role grant"),
        "{stderr}"
    );
    // A secret pasted as the maker is not printed back either.
    let secret = rack_gateway::identity::TokenSecret::generate().unwrap();
    let secret = secret.expose();
    let refused = run_cli(
        &[
            "token",
            "create",
            "--data",
            data,
            "--name",
            "ci",
            "--owner",
            "dev@example.com",
            "--scope",
            "convox:app:read",
            "--by",
            secret,
        ],
        None,
    )
    .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("is not an email address") && !stderr.contains(secret),
        "{stderr}"
    );
    let pasted = create(secret).await;
    assert!(!pasted.status.success());
    let stderr = String::from_utf8_lossy(&pasted.stderr);
    assert!(
        stderr.contains("is not an email address") && !stderr.contains(secret),
        "{stderr}"
    );
    let role = run_cli(
        &[
            "role",
            "grant",
            "--data",
            data,
            "--user",
            "dev@example.com",
            "--role",
            secret,
        ],
        None,
    )
    .await;
    assert!(!role.status.success());
    let stderr = String::from_utf8_lossy(&role.stderr);
    assert!(
        stderr.contains("is not a role") && !stderr.contains(secret),
        "{stderr}"
    );
    // Nothing was created by the refusals; the owner with a role gets a token.
    let listed = stdout(&run_cli(&["token", "list", "--data", data], None).await);
    assert!(!listed.contains("owner="), "{listed}");
    let made = stdout(&create("dev@example.com").await);
    assert!(made.starts_with("id: "), "{made}");
}
