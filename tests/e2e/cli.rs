//! The convox CLI's plain-HTTP request sequences (spec §6, §3.12 and Appendix A: apps, ps, env,
//! env set, env unset, releases, deploy's HTTP steps, scale, restart, rack, and run's HTTP
//! steps), replayed byte for byte through the gateway with the dev token in place of the
//! captured credentials.
//!
//! Each request is also sent, with the captured credentials, straight to a reference
//! `mock-rack` that has seen the same sequence, and every step checks (a) that the gateway's
//! answer is the rack's answer (status, content type, body bytes), (b) that the rack behind the
//! gateway received what the reference received (method, target, body bytes, the parameters its
//! handler used, the other headers) plus `X-Convox-Actor: dev@rack-gateway.local` and the rack's
//! own credentials instead of the caller's, and (c) that the log holds one `CommandRequested`
//! allowing exactly this call, then one `CommandCompleted` with its status and body digest.
//! The WebSocket steps of these commands are replayed in `cli_streams`.
//!
//! The gateway's side goes over one kept-alive connection per session, as Go's transport sends
//! a command's requests (a new one only after an answer that closed the connection), so what a
//! previous request leaves on a connection shows.
//!
//! **Invariant:** each flow is written once and called from thin tests.

use events::event::{AuthMethod, Decision, Principal};
use events::hash::Hash;
use events::store::EventStore;
use hmac::{Hmac, KeyInit, Mac};
use mock_rack::{MockRack, Received, SEED_APP, SEED_ENV, SEED_RELEASE};
use rack_gateway::keys::AuditKey;
use rack_gateway::server::dev::DEV_USER;
use sha2::{Digest, Sha256};

use crate::support::{
    Body, CAPTURED_AUTH, Cli, Finished, Reply, TestGateway, completed, read_reply, reference_rack,
    requested, send_to,
};

pub const APP_READ: &str = "convox:app:read";
pub const PROCESS_READ: &str = "convox:process:read";
pub const RELEASE_READ: &str = "convox:release:read";
pub const RACK_READ: &str = "convox:rack:read";
pub const ENV_SET: &str = "convox:env:set";
pub const OBJECT_CREATE: &str = "convox:object:create";
pub const BUILD_CREATE: &str = "convox:build:create";
pub const BUILD_READ: &str = "convox:build:read";
pub const RELEASE_PROMOTE: &str = "convox:release:promote";
pub const SERVICE_SCALE: &str = "convox:service:scale";
pub const SERVICE_RESTART: &str = "convox:service:restart";
pub const PROCESS_RUN: &str = "convox:process:run";
pub const PROCESS_STOP: &str = "convox:process:stop";

/// The body `convox env set A=B -a x` posts against the seeded env (spec Appendix A.4).
pub const CAPTURED_ENV_SET: &str = "env=A%3DB%0AFOO%3Dbar%0ASECRET_TOKEN%3Ds3cr3t";
/// The object key of the captured deploy (spec §6).
pub const DEPLOY_KEY: &str = "tmp/01362c476d019add69c8b81a11fa93.tgz";

/// A gateway, and a reference rack fed the same requests directly.
pub struct Session {
    pub gw: TestGateway,
    reference: MockRack,
    audit: AuditKey,
    credential: String,
    /// The request ids of the calls the gateway answered itself: none may have a completion,
    /// which is queued in the background and checked once the stop has flushed it.
    answered_locally: std::sync::Mutex<Vec<String>>,
    /// Requests sent with [`Session::replay`], all with the dev token.
    sent: std::sync::atomic::AtomicUsize,
    /// The kept-alive connection to the gateway's proxy, how many answers it has carried, and
    /// when it was last used.
    kept: tokio::sync::Mutex<Option<(tokio::net::TcpStream, usize, std::time::Instant)>>,
    /// Answers that ended their connection (`Connection: close`).
    closes: std::sync::atomic::AtomicUsize,
}

/// Whether the answer holds secrets: env values (a release, listed, read or created; spec §3's
/// Secrets column) or a process's command line (listed, read or run; shown scrubbed to a
/// caller without `convox:secret:read`). Its digest is not recorded, since a guess of a weak
/// value could be tested against it by anyone who reads the log and gets the same answer
/// masked.
fn answer_holds_secrets(method: &str, target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["", "apps", _, "releases"] => true,
        ["", "apps", _, "releases", _] => method == "GET",
        ["", "apps", _, "processes"] | ["", "system", "processes"] => method == "GET",
        ["", "apps", _, "processes", _] => method == "GET",
        ["", "apps", _, "services", _, "processes"] => method == "POST",
        _ => false,
    }
}

/// One CLI request and what the gateway must do with it.
pub struct Step<'a> {
    method: &'a str,
    target: String,
    extra: Vec<(&'a str, &'a str)>,
    body: Body<'a>,
    expect: Expect,
}

enum Expect {
    /// Forwarded, recorded with this permission and these recorded parameters.
    Forward {
        permission: &'static str,
        params: Vec<(String, Logged)>,
    },
    /// `GET /machines` and `GET /racks`: answered by the gateway (spec §2.6).
    Local,
}

/// How a parameter must appear in the log.
enum Logged {
    Plain(String),
    /// As `hmac-sha256:<hex>` of the value under the audit key.
    Secret(String),
}

// === impl Step ===

impl<'a> Step<'a> {
    pub fn new(method: &'a str, target: impl Into<String>) -> Step<'a> {
        Step {
            method,
            target: target.into(),
            extra: Vec::new(),
            body: Body::Empty,
            expect: Expect::Local,
        }
    }

    pub fn get(target: impl Into<String>) -> Step<'a> {
        Step::new("GET", target)
    }

    pub fn form(mut self, form: &'a str) -> Step<'a> {
        self.body = Body::Form(form);
        self
    }

    pub fn raw(mut self, bytes: &'a [u8]) -> Step<'a> {
        self.body = Body::Raw(bytes);
        self
    }

    pub fn header(mut self, name: &'a str, value: &'a str) -> Step<'a> {
        self.extra.push((name, value));
        self
    }

    /// Forwarded under `permission`.
    pub fn allows(mut self, permission: &'static str) -> Step<'a> {
        self.expect = Expect::Forward {
            permission,
            params: Vec::new(),
        };
        self
    }

    /// Recorded with this parameter in clear.
    pub fn param(self, key: &str, value: &str) -> Step<'a> {
        self.logged(key, Logged::Plain(value.to_owned()))
    }

    /// Recorded with this parameter as an HMAC.
    pub fn secret(self, key: &str, value: &str) -> Step<'a> {
        self.logged(key, Logged::Secret(value.to_owned()))
    }

    fn logged(mut self, key: &str, value: Logged) -> Step<'a> {
        match &mut self.expect {
            Expect::Forward { params, .. } => params.push((key.to_owned(), value)),
            Expect::Local => panic!("a locally answered step records no parameters"),
        }
        self
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

// === impl Session ===

impl Session {
    pub async fn start() -> Session {
        let gw = TestGateway::start().await;
        let audit = gw.keys().audit;
        let credential = gw.token_id(gw.token());
        Session {
            gw,
            reference: reference_rack().await,
            audit,
            credential,
            answered_locally: std::sync::Mutex::default(),
            sent: std::sync::atomic::AtomicUsize::new(0),
            kept: tokio::sync::Mutex::new(None),
            closes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Sends `raw` on the kept-alive connection (opened when there is none) and reads its
    /// answer; an answer saying `Connection: close` ends the connection, and only such an
    /// answer may. A connection the gateway drops without it fails the test, unless it sat idle
    /// long enough for the gateway's wait for a next request (10 s) to end it: that one is
    /// replaced first, as Go's transport replaces a connection the server closed.
    async fn send_kept(&self, raw: &[u8]) -> Reply {
        use tokio::io::AsyncWriteExt;
        const IDLE: std::time::Duration = std::time::Duration::from_secs(5);
        let mut kept = self.kept.lock().await;
        if kept.as_ref().is_some_and(|k| k.2.elapsed() > IDLE) {
            *kept = None;
        }
        let (stream, answered, used) = match kept.as_mut() {
            Some(k) => k,
            None => kept.insert((
                tokio::net::TcpStream::connect(self.gw.proxy())
                    .await
                    .unwrap(),
                0,
                std::time::Instant::now(),
            )),
        };
        stream.write_all(raw).await.unwrap();
        let reply = read_reply(stream).await.unwrap_or_else(|| {
            panic!("the gateway closed a kept-alive connection after {answered} answers")
        });
        *answered += 1;
        *used = std::time::Instant::now();
        if reply
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            self.closes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            *kept = None;
        }
        reply
    }

    /// How many answers ended their kept-alive connection.
    pub fn closes(&self) -> usize {
        self.closes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many requests [`Session::replay`] sent through the gateway, each authenticated.
    pub fn sent(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The reference rack, fed the same requests directly with the captured credentials.
    pub fn reference(&self) -> &MockRack {
        &self.reference
    }

    /// Stops both, then exports and verifies the gateway's data directory.
    pub async fn finish(self) -> Finished {
        self.reference.shutdown().await;
        let local = std::mem::take(&mut *self.answered_locally.lock().unwrap());
        let finished = self.gw.finish().await;
        for id in local {
            assert!(
                !finished
                    .events
                    .iter()
                    .filter_map(completed)
                    .any(|c| c.request.0 == id),
                "{id}: answered locally, nothing forwarded, nothing completed"
            );
        }
        finished
    }

    /// Sends `step` through the gateway and checks (a), (b) and (c) of the module doc.
    pub async fn replay(&self, step: Step<'_>) -> Reply {
        let what = step.what();
        let cli = self.gw.cli();
        let raw = cli.request(step.method, &step.target, &step.extra, step.body);
        let since = self.gw.head();
        let rack_before = self.gw.rack().received().len();
        let reply = self.send_kept(&raw).await;
        self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = reply.request_id();
        let (permission, params) = match step.expect {
            Expect::Local => {
                self.check_local(&what, &reply, rack_before, since).await;
                return reply;
            }
            Expect::Forward { permission, params } => (permission, params),
        };

        // (a) The answer is the rack's own.
        let reference_before = self.reference.received().len();
        let direct = send_to(
            self.reference.addr(),
            Cli::captured(&self.reference).request(
                step.method,
                &step.target,
                &step.extra,
                step.body,
            ),
        )
        .await;
        assert_eq!(reply.status, direct.status, "{what}: status");
        assert_eq!(
            reply.header("content-type"),
            direct.header("content-type"),
            "{what}: content type"
        );
        assert!(
            reply.body == direct.body,
            "{what}: body\n via the gateway: {:?}\n direct: {:?}",
            reply.text(),
            direct.text()
        );
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(reply.header("content-security-policy"), Some("sandbox"));
        assert_eq!(reply.header("set-cookie"), None);

        // (b) The rack received what the reference received, as the dev user, with the
        // rack's credentials.
        let got = self.gw.rack().received();
        let want = self.reference.received();
        assert_eq!(got.len(), rack_before + 1, "{what}: one request forwarded");
        assert_eq!(want.len(), reference_before + 1);
        let (g, w) = (&got[rack_before], &want[reference_before]);
        assert_eq!(
            (g.method.as_str(), g.target.as_str()),
            (step.method, step.target.as_str())
        );
        assert_eq!(
            (w.method.as_str(), w.target.as_str()),
            (step.method, step.target.as_str())
        );
        assert!(g.body == w.body, "{what}: body bytes");
        assert_eq!(g.params, w.params, "{what}: the parameters the rack used");
        assert_eq!(g.status, w.status, "{what}: the rack's status");
        assert_eq!(g.actor.as_deref(), Some(DEV_USER), "{what}: X-Convox-Actor");
        let rack_auth = g.header("authorization").unwrap_or_default();
        assert!(
            rack_auth.starts_with("Basic ") && rack_auth != cli.authorization(),
            "{what}: the caller's credentials reached the rack: {rack_auth}"
        );
        assert_ne!(rack_auth, CAPTURED_AUTH);
        assert_eq!(
            g.header("cookie"),
            None,
            "{what}: a cookie reached the rack"
        );
        assert_eq!(
            passed_headers(g),
            passed_headers(w),
            "{what}: the headers the rack saw, credentials, host and actor aside"
        );

        // (c) One decision allowing this call before it, one completion after it.
        let (decided, done) = self.gw.call_records(since, &id).await;
        assert!(decided.seq < done.seq, "{what}: completion before intent");
        let c = requested(&decided).unwrap();
        assert_eq!(c.decision, Decision::Allow, "{what}");
        assert_eq!(c.reason, "", "{what}");
        assert_eq!(
            c.permission.as_ref().map(|p| p.0.as_str()),
            Some(permission),
            "{what}: permission"
        );
        assert_eq!(c.method, step.method);
        assert_eq!(
            c.path,
            step.target.split('?').next().unwrap(),
            "{what}: path"
        );
        assert_eq!(c.actor, Principal(DEV_USER.into()));
        assert_eq!(c.auth, AuthMethod::Token);
        assert_eq!(c.credential.as_deref(), Some(self.credential.as_str()));
        assert_eq!(c.client_ip, "127.0.0.1");
        assert_eq!(c.user_agent, "convox.go/dev");
        let expected: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| match v {
                Logged::Plain(v) => (k, v),
                Logged::Secret(v) => (k, hmac(&self.audit, &v)),
            })
            .collect();
        assert_eq!(c.params, expected, "{what}: recorded parameters");
        let used = self.gw.store().with_state(|st| {
            st.tokens
                .iter()
                .find(|t| t.id.to_hex() == self.credential)
                .and_then(|t| t.last_used)
        });
        assert!(
            used.is_some_and(|t| t >= decided.time),
            "{what}: the token's last use is this call or later: {used:?}"
        );
        let d = completed(&done).unwrap();
        assert_eq!(d.status, reply.status, "{what}: recorded status");
        assert_eq!(d.failure, None, "{what}: the rack's answer was relayed");
        assert_eq!(d.bytes_out, reply.body.len() as u64, "{what}: bytes out");
        let digest =
            (!answer_holds_secrets(step.method, &step.target)).then(|| sha256(&reply.body));
        assert_eq!(d.sha256_out, digest, "{what}: digest out");
        match step.body {
            Body::Raw(bytes) => {
                assert_eq!(d.bytes_in, bytes.len() as u64, "{what}: bytes in");
                assert_eq!(d.sha256_in, Some(sha256(bytes)), "{what}: digest in");
            }
            Body::Empty | Body::Form(_) => assert_eq!(d.bytes_in, 0, "{what}: bytes in"),
        }
        reply
    }

    async fn check_local(&self, what: &str, reply: &Reply, rack_before: usize, since: u64) {
        // Spec §2.6 and §1.5: what the rack answers, an empty 404, which the CLI ignores.
        assert_eq!((reply.status, reply.body.len()), (404, 0), "{what}");
        assert_eq!(
            self.gw.rack().received().len(),
            rack_before,
            "{what} was forwarded"
        );
        let id = reply.request_id();
        let events = self.gw.events_since(since).await;
        let mine: Vec<_> = events
            .iter()
            .filter_map(requested)
            .filter(|c| c.request.0 == id)
            .collect();
        assert_eq!(mine.len(), 1, "{what}: one CommandRequested");
        assert_eq!(
            (
                mine[0].decision,
                mine[0].reason.as_str(),
                &mine[0].permission
            ),
            (Decision::Allow, "answered_locally", &None),
            "{what}"
        );
        self.answered_locally.lock().unwrap().push(id);
    }
}

/// The headers a rack saw, less those the gateway replaces (`Host`, `Authorization`, the actor)
/// and the body's framing.
fn passed_headers(r: &Received) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(n, _)| {
            // `Content-Length` frames the body, whose bytes are compared on their own: the
            // gateway leaves out the CLI's `Content-Length: 0` on a body-less POST. The gateway
            // may drop `Accept-Encoding` on routes whose answers it masks (issue 3, point 8).
            !matches!(
                n.as_str(),
                "host" | "authorization" | "x-convox-actor" | "content-length" | "accept-encoding"
            )
        })
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    h.sort();
    h
}

fn hmac(audit: &AuditKey, value: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&audit.0).unwrap();
    mac.update(value.as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

pub fn sha256(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

/// Go's `url.QueryEscape` (what `url.Values.Encode` writes).
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The env the CLI posts: the current env with `set` merged in and `unset` removed, sorted by
/// key, `KEY=VALUE` lines joined by `\n` (spec §5 "Release").
pub fn merged_env(current: &str, set: &[(&str, &str)], unset: &[&str]) -> String {
    let mut pairs: std::collections::BTreeMap<String, String> = current
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .collect();
    for (k, v) in set {
        pairs.insert((*k).to_owned(), (*v).to_owned());
    }
    for k in unset {
        pairs.remove(*k);
    }
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn env_form(env: &str) -> String {
    format!("env={}", query_escape(env))
}

// === Flows: one per CLI command ===

/// `convox apps` (A.1).
pub async fn apps(s: &Session) {
    s.replay(Step::get("/apps?").allows(APP_READ)).await;
}

/// `convox ps -a x` (A.2).
pub async fn ps(s: &Session) {
    s.replay(Step::get("/apps/x/processes?").allows(PROCESS_READ))
        .await;
    s.replay(Step::get("/apps/x/budget?").allows(APP_READ))
        .await;
}

/// `convox env -a x` with stdout not a TTY (A.3); returns the env it read.
pub async fn env(s: &Session) -> String {
    let list = s
        .replay(
            Step::get("/apps/x/releases?limit=1")
                .allows(RELEASE_READ)
                .param("limit", "1"),
        )
        .await
        .json();
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let release = s
        .replay(Step::get(format!("/apps/x/releases/{id}?")).allows(RELEASE_READ))
        .await
        .json();
    release["env"].as_str().unwrap().to_owned()
}

/// `convox rack` (A.7).
pub async fn rack(s: &Session) {
    s.replay(Step::get("/system?").allows(RACK_READ)).await;
}

/// `convox env set K=V… -a x` and `convox env unset K… -a x` (A.4, §3.12): read the env, ask
/// the rack's version, post the whole new env. Returns the new release.
pub async fn env_change(s: &Session, set: &[(&str, &str)], unset: &[&str]) -> serde_json::Value {
    let current = env(s).await;
    rack(s).await;
    let env = merged_env(&current, set, unset);
    let form = env_form(&env);
    let reply = s
        .replay(
            Step::new("POST", "/apps/x/releases?")
                .form(&form)
                .allows(ENV_SET)
                .secret("env", &env),
        )
        .await;
    assert_eq!(reply.status, 200);
    reply.json()
}

/// `convox releases -a x` (A.6).
pub async fn releases(s: &Session) {
    let app = s
        .replay(Step::get("/apps/x?").allows(APP_READ))
        .await
        .json();
    let list = s
        .replay(Step::get("/apps/x/releases?").allows(RELEASE_READ))
        .await
        .json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == app["release"]),
        "the active release is listed"
    );
}

/// `convox deploy -a x`, its HTTP steps in the order of the spec's timeline (§6): the source
/// upload, the build, the throw-away `GET /machines` before each WebSocket, the build polls,
/// the app check, the promote, the process poll and the final app checks.
pub async fn deploy(s: &Session) {
    rack(s).await;
    let tarball: Vec<u8> = [&[0x1f, 0x8b, 0x08, 0x00][..], &[0xAB; 205]].concat();
    assert_eq!(tarball.len(), 209, "the captured upload's size");
    let reply = s
        .replay(
            Step::new("POST", format!("/apps/x/objects/{DEPLOY_KEY}?"))
                .raw(&tarball)
                .allows(OBJECT_CREATE),
        )
        .await;
    let url = reply.json()["Url"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("object://x/{DEPLOY_KEY}"));
    let stored = s.gw.rack().object(SEED_APP, DEPLOY_KEY).unwrap();
    assert!(stored.data == tarball, "the uploaded bytes, unchanged");
    let form = format!("url={}", query_escape(&url));
    assert_eq!(
        form,
        "url=object%3A%2F%2Fx%2Ftmp%2F01362c476d019add69c8b81a11fa93.tgz"
    );
    let build = s
        .replay(
            Step::new("POST", "/apps/x/builds?")
                .form(&form)
                .allows(BUILD_CREATE)
                .param("url", &url),
        )
        .await
        .json();
    let build_id = build["id"].as_str().unwrap().to_owned();
    s.replay(Step::get("/machines?")).await;
    let mut release = String::new();
    for _ in 0..2 {
        let b = s
            .replay(Step::get(format!("/apps/x/builds/{build_id}?")).allows(BUILD_READ))
            .await
            .json();
        assert_eq!(b["status"], "complete");
        release = b["release"].as_str().unwrap().to_owned();
    }
    s.replay(Step::get("/machines?")).await;
    let app = s
        .replay(Step::get("/apps/x?").allows(APP_READ))
        .await
        .json();
    assert_eq!(app["status"], "running");
    let reply = s
        .replay(
            Step::new("POST", format!("/apps/x/releases/{release}/promote?"))
                .form("force=false")
                .allows(RELEASE_PROMOTE)
                .param("force", "false"),
        )
        .await;
    assert_eq!(reply.text(), "ok\n");
    s.replay(Step::get("/machines?")).await;
    s.replay(Step::get("/apps/x/processes?").allows(PROCESS_READ))
        .await;
    for _ in 0..3 {
        let app = s
            .replay(Step::get("/apps/x?").allows(APP_READ))
            .await
            .json();
        assert_eq!(app["release"].as_str(), Some(release.as_str()));
    }
}

/// `convox scale web --count 2 --cpu 512 --memory 1024`, then `convox scale` (§3.12).
pub async fn scale(s: &Session) {
    let reply = s
        .replay(
            Step::new("PUT", "/apps/x/services/web?")
                .form("count=2&cpu=512&memory=1024")
                .allows(SERVICE_SCALE)
                .param("count", "2")
                .param("cpu", "512")
                .param("memory", "1024"),
        )
        .await;
    assert_eq!(reply.text(), "ok\n");
    s.replay(Step::get("/apps/x/services?").allows(APP_READ))
        .await;
    s.replay(Step::get("/apps/x/processes?").allows(PROCESS_READ))
        .await;
    s.replay(Step::get("/apps/x/budget?").allows(APP_READ))
        .await;
}

/// `convox restart -a x`: list the services, restart each (§3.12).
pub async fn restart(s: &Session) {
    let services = s
        .replay(Step::get("/apps/x/services?").allows(APP_READ))
        .await
        .json();
    let names: Vec<String> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!names.is_empty());
    for name in names {
        let reply = s
            .replay(
                Step::new("POST", format!("/apps/x/services/{name}/restart?"))
                    .allows(SERVICE_RESTART),
            )
            .await;
        assert_eq!(reply.text(), "ok\n");
    }
}

/// `convox run web bin/migrate -a x`, its HTTP steps (A.9): start the pod with the command in a
/// header, poll it, the throw-away `GET /machines`, and stop it.
pub async fn run(s: &Session) {
    let process = s
        .replay(
            Step::new("POST", "/apps/x/services/web/processes?")
                .header("Command", "sleep 3600")
                .allows(PROCESS_RUN)
                .param("Command", "sleep 3600"),
        )
        .await
        .json();
    let pid = process["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        s.replay(Step::get(format!("/apps/x/processes/{pid}?")).allows(PROCESS_READ))
            .await;
    }
    s.replay(Step::get("/machines?")).await;
    let reply = s
        .replay(Step::new("DELETE", format!("/apps/x/processes/{pid}?")).allows(PROCESS_STOP))
        .await;
    assert_eq!(reply.text(), "ok\n");
}

/// Every sequence above on one gateway, in the order a newcomer might type them.
pub async fn everything(s: &Session) {
    apps(s).await;
    ps(s).await;
    env(s).await;
    env_change(s, &[("A", "B")], &[]).await;
    env_change(s, &[], &["FOO"]).await;
    releases(s).await;
    deploy(s).await;
    scale(s).await;
    restart(s).await;
    run(s).await;
    rack(s).await;
}

/// The raw secret never appears in the log or in the export.
pub fn assert_absent(finished: &Finished, secret: &str) {
    let log = std::fs::read(crate::support::log_path(finished.data.path())).unwrap();
    assert!(
        !log.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "{secret:?} is in the log file"
    );
    for entry in walk(finished.export.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret:?} is in {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

// === Tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_apps() {
    let s = Session::start().await;
    apps(&s).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_ps() {
    let s = Session::start().await;
    ps(&s).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_env() {
    let s = Session::start().await;
    assert_eq!(env(&s).await, SEED_ENV);
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_env_set_posts_the_captured_bytes_and_logs_only_an_hmac() {
    let s = Session::start().await;
    assert_eq!(
        env_form(&merged_env(SEED_ENV, &[("A", "B")], &[])),
        CAPTURED_ENV_SET
    );
    let release = env_change(&s, &[("A", "B")], &[]).await;
    assert_eq!(release["env"], "A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t");
    assert_ne!(release["id"], SEED_RELEASE);
    let finished = s.finish().await;
    assert_absent(&finished, "s3cr3t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_env_unset() {
    let s = Session::start().await;
    let release = env_change(&s, &[], &["FOO"]).await;
    assert_eq!(release["env"], "SECRET_TOKEN=s3cr3t");
    let finished = s.finish().await;
    assert_absent(&finished, "s3cr3t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_releases() {
    let s = Session::start().await;
    releases(&s).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_deploy_http_steps() {
    let s = Session::start().await;
    deploy(&s).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_scale() {
    let s = Session::start().await;
    scale(&s).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_restart() {
    let s = Session::start().await;
    restart(&s).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_rack() {
    let s = Session::start().await;
    rack(&s).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_run_http_steps() {
    let s = Session::start().await;
    run(&s).await;
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sequence_on_one_gateway() {
    let s = Session::start().await;
    everything(&s).await;
    // As Go's transport sends them, every command's requests on one kept-alive connection,
    // which no answer closed.
    assert_eq!(s.sent(), 41, "requests sent on the one connection");
    assert_eq!(s.closes(), 0);
    s.finish().await;
}

/// `Authorization: Bearer <token>` is accepted like the CLI's Basic header (issue point 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_works_like_basic() {
    let s = Session::start().await;
    let bearer = Cli::new(
        &s.gw.proxy().to_string(),
        &format!("Bearer {}", s.gw.token()),
    );
    let reply = s.gw.send_raw(bearer.get("/apps?")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(s.gw.rack().received().len(), 1);
    assert_eq!(s.gw.rack().received()[0].actor.as_deref(), Some(DEV_USER));
    s.finish().await;
}

/// A failing command (`convox apps info nope`): the rack's error passes through unchanged and
/// its status is the recorded completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rack_error_passes_through_and_is_completed() {
    let s = Session::start().await;
    let reply = s.replay(Step::get("/apps/nope?").allows(APP_READ)).await;
    assert_eq!(
        (reply.status, reply.text()),
        (404, "app not found: nope\n".into())
    );
    s.finish().await;
}

/// A streamed upload as `convox builds import` sends one (`Transfer-Encoding: chunked`, spec
/// §1.2), here to the object route: the rack stores the bytes unchanged and the completion
/// records their size and digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_streams_through_unchanged() {
    let s = Session::start().await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let key = "tmp/chunked.tgz";
    let chunked = |host: String, authorization: &str| {
        let mut out = format!(
            "POST /apps/x/objects/{key}? HTTP/1.1\r\nHost: {host}\r\nUser-Agent: convox.go/dev\r\n\
             Transfer-Encoding: chunked\r\nAccept: */*\r\nAuthorization: {authorization}\r\n\
             Content-Type: application/octet-stream\r\nVersion: dev\r\nAccept-Encoding: gzip\r\n\r\n"
        )
        .into_bytes();
        for part in data.chunks(64 * 1024) {
            out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    let since = s.gw.head();
    let reply =
        s.gw.send_raw(chunked(
            s.gw.proxy().to_string(),
            s.gw.cli().authorization(),
        ))
        .await;
    let direct = send_to(
        s.reference.addr(),
        chunked(s.reference.addr().to_string(), CAPTURED_AUTH),
    )
    .await;
    assert_eq!((reply.status, reply.text()), (direct.status, direct.text()));
    assert_eq!(reply.status, 200);
    let stored = s.gw.rack().object(SEED_APP, key).unwrap();
    assert!(stored.data == data, "the rack stored other bytes");
    let (_, done) = s.gw.call_records(since, &reply.request_id()).await;
    let d = completed(&done).unwrap();
    assert_eq!(
        (d.bytes_in, d.sha256_in),
        (data.len() as u64, Some(sha256(&data)))
    );
    s.finish().await;
}

/// The requests every replay sends are the CLI's, byte for byte: the builder's output is pinned
/// to the text captured from the CLI (spec Appendix A.1, A.4's POST, A.9's POST and DELETE),
/// host and credentials as captured.
#[test]
fn the_request_builder_writes_the_captured_requests_byte_for_byte() {
    let cli = Cli::new("127.0.0.1:18080", CAPTURED_AUTH);
    let captured = |lines: &[&str], body: &str| {
        let mut text = lines.join("\r\n");
        text.push_str("\r\n\r\n");
        text.push_str(body);
        text
    };
    let common = ["Accept: */*", "Authorization: Basic Y29udm94OlRPS0VOMTIz"];
    let tail = [
        "Content-Type: application/octet-stream",
        "Version: dev",
        "Accept-Encoding: gzip",
    ];
    fn head<'a>(line: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut lines = vec![line, "Host: 127.0.0.1:18080", "User-Agent: convox.go/dev"];
        lines.extend_from_slice(extra);
        lines
    }
    let get = |line: &str| {
        let mut lines = head(line, &common);
        lines.extend_from_slice(&tail);
        captured(&lines, "")
    };
    // A.1
    assert_eq!(
        String::from_utf8(cli.get("/apps?")).unwrap(),
        get("GET /apps? HTTP/1.1")
    );
    // A.4, the POST
    let env = "env=A%3DB%0AFOO%3Dbar%0ASECRET_TOKEN%3Ds3cr3t";
    let mut lines = head("POST /apps/x/releases? HTTP/1.1", &["Content-Length: 45"]);
    lines.extend_from_slice(&common);
    lines.extend_from_slice(&[
        "Content-Type: application/x-www-form-urlencoded",
        "Version: dev",
        "Accept-Encoding: gzip",
    ]);
    assert_eq!(
        String::from_utf8(cli.request("POST", "/apps/x/releases?", &[], Body::Form(env))).unwrap(),
        captured(&lines, env)
    );
    // A.9, the POST that starts the process and the DELETE that ends it
    let mut lines = head(
        "POST /apps/x/services/web/processes? HTTP/1.1",
        &["Content-Length: 0"],
    );
    lines.extend_from_slice(&common);
    lines.push("Command: sleep 3600");
    lines.extend_from_slice(&tail);
    assert_eq!(
        String::from_utf8(cli.request(
            "POST",
            "/apps/x/services/web/processes?",
            &[("Command", "sleep 3600")],
            Body::Empty
        ))
        .unwrap(),
        captured(&lines, "")
    );
    assert_eq!(
        String::from_utf8(cli.request(
            "DELETE",
            "/apps/x/processes/run-web-xyz12?",
            &[],
            Body::Empty
        ))
        .unwrap(),
        get("DELETE /apps/x/processes/run-web-xyz12? HTTP/1.1")
    );
}

/// A GET with a chunked body to a service behind the rack (`/custom/http/proxy`, whose far end
/// is not the rack): the body the log counts is the body that goes on, not dropped on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_on_a_get_goes_on_to_the_service() {
    let s = Session::start().await;
    let body = b"{\"query\":\"status\"}";
    let mut raw = format!(
        "GET /custom/http/proxy/search? HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        s.gw.proxy(),
        s.gw.cli().authorization(),
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    let since = s.gw.head();
    let reply = s.gw.send_raw(raw).await;
    let got = s.gw.rack().received();
    assert_eq!(got.len(), 1, "{}", reply.text());
    assert_eq!(&got[0].body[..], &body[..], "the body reached the far end");
    let (_, done) = s.gw.call_records(since, &reply.request_id()).await;
    let d = completed(&done).unwrap();
    // The route's request side holds credentials by design: its size is recorded, no digest.
    assert_eq!((d.bytes_in, d.sha256_in), (body.len() as u64, None));
    s.finish().await;
}

/// A parameter header the caller's `Connection` names is for this hop only: it never reaches
/// the rack, so it is not recorded either (a `Command` the log shows but the rack never got, or
/// the reverse, would make the log lie about what ran).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_header_named_by_connection_is_neither_recorded_nor_forwarded() {
    let s = Session::start().await;
    let since = s.gw.head();
    let raw = s.gw.cli().request(
        "POST",
        "/apps/x/services/web/processes?",
        &[
            ("Command", "echo ok"),
            ("Connection", "keep-alive, Command"),
        ],
        Body::Empty,
    );
    let reply = s.gw.send_raw(raw).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let got = s.gw.rack().received();
    let run = got.last().expect("the run was forwarded");
    assert_eq!(run.header("command"), None, "Command reached the rack");
    let (decided, _) = s.gw.call_records(since, &reply.request_id()).await;
    let recorded = &requested(&decided).unwrap().params;
    assert!(
        recorded.iter().all(|(k, _)| k != "Command"),
        "a Command the rack never got was recorded: {recorded:?}"
    );
    s.finish().await;
}

/// Only the headers a route lists (its option headers, the CLI's own, framing) reach the rack:
/// an option a rack might read that the table does not list is dropped, not forwarded
/// unrecorded. The HTTP proxy route carries a client's headers to the service behind the rack,
/// all but a method override and `Origin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_headers_reach_the_rack() {
    let s = Session::start().await;
    let origin = format!("http://{}", s.gw.proxy());
    let unlisted = [
        ("Origin", origin.as_str()),
        ("Tls", "true"),
        ("X-Api-Key", "k"),
        ("Accept-Language", "en"),
        ("X-Http-Method-Override", "DELETE"),
    ];
    let raw = s.gw.cli().request("GET", "/apps?", &unlisted, Body::Empty);
    assert_eq!(s.gw.send_raw(raw).await.status, 200);
    let raw = s.gw.cli().request(
        "GET",
        "/custom/http/proxy/status?",
        &[
            ("X-Host", "web.local"),
            ("X-Port", "80"),
            ("X-Api-Key", "k"),
            ("X-Http-Method-Override", "DELETE"),
            ("Origin", origin.as_str()),
        ],
        Body::Empty,
    );
    s.gw.send_raw(raw).await;
    let got = s.gw.rack().received();
    assert_eq!(got.len(), 2);
    for (name, _) in unlisted {
        assert_eq!(got[0].header(name), None, "{name} reached the rack");
    }
    for kept in ["accept", "user-agent", "version", "accept-encoding"] {
        assert!(got[0].header(kept).is_some(), "{kept} was dropped");
    }
    assert_eq!(got[1].header("x-host"), Some("web.local"));
    assert_eq!(got[1].header("x-api-key"), Some("k"));
    assert_eq!(got[1].header("x-http-method-override"), None);
    assert_eq!(got[1].header("origin"), None);
    s.finish().await;
}

/// `CONVOX_ACTOR=alice@example.com convox apps` adds `X-Convox-Actor` (spec Appendix A); the
/// rack must see the authenticated user instead, and never a cookie or the caller's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_actor_and_a_cookie_do_not_reach_the_rack() {
    let s = Session::start().await;
    let since = s.gw.head();
    let raw = s.gw.cli().request(
        "GET",
        "/apps?",
        &[
            ("X-Convox-Actor", "alice@example.com"),
            ("Cookie", "session=stolen"),
            ("Convox-Actor", "mallory@example.com"),
            ("X-Convox-Tid", "tid-1"),
            ("X-Forwarded-For", "10.9.8.7"),
            ("Connection", "keep-alive, X-Secret"),
            ("X-Secret", "1"),
        ],
        Body::Empty,
    );
    let reply = s.gw.send_raw(raw).await;
    assert_eq!(reply.status, 200);
    let got = s.gw.rack().received();
    assert_eq!(got.len(), 1);
    for gone in ["x-convox-tid", "x-forwarded-for", "x-secret", "connection"] {
        assert_eq!(got[0].header(gone), None, "{gone} reached the rack");
    }
    let (decided, _) = s.gw.call_records(since, &reply.request_id()).await;
    assert_eq!(
        requested(&decided).unwrap().client_ip,
        "127.0.0.1",
        "an untrusted peer's X-Forwarded-For is not the client address"
    );
    let headers: Vec<&str> = got[0]
        .headers
        .iter()
        .filter(|(n, _)| n.contains("actor"))
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
        .collect();
    assert_eq!(
        headers,
        [DEV_USER],
        "one actor header, the authenticated user"
    );
    assert_eq!(got[0].header("cookie"), None);
    assert_ne!(
        got[0].header("authorization"),
        Some(s.gw.cli().authorization())
    );
    s.finish().await;
}
