//! The role × route matrix through the real gateway. Every line of the hand-written
//! `tests/expectations/role_route_matrix.txt` (written from the spec's Role and Secrets columns,
//! not generated from the route table) is sent over a socket in the convox CLI's shape with a
//! token of a viewer, an ops, a deployer, an admin and a `cicd` token, and the outcome is read
//! from what the gateway did: forwarded to the rack (`allow`), refused with a recorded denial and
//! nothing forwarded (`deny`), or answered by the gateway itself (`local`). Two more token kinds
//! must get exactly the viewer column: an admin's token scoped to the viewer permissions, and a
//! token with admin scopes whose owner is demoted to viewer while the gateway runs.
//! `src/policy/decide/tests.rs` checks the same file against `authorize` alone; this checks that
//! the proxy enforces it on the wire.
//!
//! **Invariant:** the expected word comes only from the file, the observed one only from the
//! answer on the socket, the mock rack's request log and the gateway's log, never from the
//! policy functions; every disagreement is collected and reported in one assertion.

use std::time::Instant;

use events::event::{CommandRequested, Decision, Event, Role};
use mock_rack::ws::{Opcode, Role as WsRole, WsReader, WsWriter};
use rack_gateway::policy::roles::{cicd_scopes, role_permissions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Body, DEADLINE, TestGateway, eventually, is_lookup, requested};

const MATRIX: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/expectations/role_route_matrix.txt"
));

/// The file's columns, in order.
const COLUMNS: [&str; 5] = ["viewer", "ops", "deployer", "admin", "cicd"];
const VIEWER: usize = 0;
const ADMIN: usize = 3;

/// Scopes that cover every rack permission: a token limited only by its owner's role.
const EVERYTHING: &[&str] = &["convox:*:*"];

/// The `Sec-WebSocket-Key` of the captured `convox logs` handshake (spec §4.1).
const WS_KEY: &str = "1y4rF1VcW2vLEIYpWG8sjg==";

/// One line of the expectation file.
struct Line {
    number: usize,
    /// The spec's method: `SOCKET` is a GET with the WebSocket upgrade.
    method: &'static str,
    /// The spec's pattern, `{var}`s unfilled.
    pattern: &'static str,
    expected: [&'static str; 5],
}

/// A token the matrix is sent with.
struct Caller {
    label: String,
    secret: String,
    /// The token id as `CommandRequested` records it.
    credential: String,
}

/// What the gateway did with one request, read from the wire and the two logs.
#[derive(Debug)]
struct Seen {
    status: u16,
    /// The answer's body; for an upgraded socket, the data frames in order.
    text: Vec<String>,
    /// For an upgraded socket: whether the EOF frame (an empty binary frame) came.
    eof: bool,
    /// What the rack received: method, target, and whether it carried `Upgrade: websocket`.
    forwarded: Vec<(String, String, bool)>,
    /// The `CommandRequested` records appended for the call.
    requested: Vec<CommandRequested>,
}

/// The requests sent and the lines whose outcome differed from the file.
#[derive(Default)]
struct Report {
    requests: usize,
    mismatches: Vec<String>,
}

// === The expectation file ===

fn matrix() -> Vec<Line> {
    let mut lines = Vec::new();
    for (n, text) in MATRIX.lines().enumerate() {
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let fields: Vec<&'static str> = text.split_whitespace().collect();
        let [method, pattern, v, o, d, a, c] = fields.as_slice() else {
            panic!("line {}: not METHOD PATH and five words: {text:?}", n + 1);
        };
        let expected = [*v, *o, *d, *a, *c];
        for word in expected {
            assert!(
                ["allow", "deny", "local"].contains(&word),
                "line {}: {word:?} is not allow, deny or local",
                n + 1
            );
        }
        lines.push(Line {
            number: n + 1,
            method,
            pattern,
            expected,
        });
    }
    // Exact, so that a truncated file cannot pass: one line per reachable route of spec §3
    // and method class of its `ANY` routes, plus the two local paths.
    assert_eq!(lines.len(), 112, "lines in the matrix");
    lines
}

/// A concrete path for a spec pattern, with the sample values of `src/policy/decide/tests.rs`:
/// each variable gets a value that fits its grammar (an object key as `convox deploy` sends it,
/// a registry server with a path, a registry API call, the seed app and process of the rack).
fn sample(pattern: &str) -> String {
    let tail_path = if pattern.starts_with("/v2/") {
        "x/manifests/latest"
    } else {
        "health"
    };
    pattern
        .replace("{key:.*}", "tmp/01362c476d019add69c8b81a11fa93.tgz")
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

// === Sending ===

/// The bytes of `line` as the CLI sends them with `caller`'s token. Plain requests carry no
/// parameter (the file's `allow`/`deny` is for the request with no optional parameters): the
/// CLI's `Content-Type: application/octet-stream` with an empty body, which every route's
/// allow-list takes, and the CLI's `?` with an empty query. Sockets are the captured handshake
/// of `convox logs` (spec §4.1, Appendix A.5): no query, no content type.
fn request_bytes(gw: &TestGateway, caller: &Caller, line: &Line, path: &str) -> Vec<u8> {
    let cli = gw.cli_as(&caller.secret);
    if line.method == "SOCKET" {
        let host = gw.proxy().to_string();
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: convox.go/dev\r\n\
             Authorization: {}\r\nConnection: Upgrade\r\nOrigin: http://{host}\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\
             Upgrade: websocket\r\nVersion: dev\r\n\r\n",
            cli.authorization()
        )
        .into_bytes()
    } else {
        cli.request(line.method, &format!("{path}?"), &[], Body::Empty)
    }
}

/// Sends `line` as `caller` on a fresh connection and gathers what the gateway did.
async fn send(gw: &TestGateway, caller: &Caller, line: &Line) -> Seen {
    let path = sample(line.pattern);
    let raw = request_bytes(gw, caller, line, &path);
    let since = gw.head();
    let rack_before = gw.rack().received().len();
    let (status, text, eof) = match line.method {
        "SOCKET" => socket(gw, &raw).await,
        // A HEAD answer announces a length but carries no body: read its head only.
        "HEAD" => {
            let mut tcp = TcpStream::connect(gw.proxy()).await.unwrap();
            tcp.write_all(&raw).await.unwrap();
            let (status, _) = read_head(&mut tcp).await;
            (status, Vec::new(), false)
        }
        _ => {
            let reply = gw.send_raw(&raw).await;
            (reply.status, vec![reply.text()], false)
        }
    };
    // The rack records a call before answering it, and the gateway answers the caller only after
    // the rack's answer (or its 101): nothing more can arrive for this call.
    let mut forwarded: Vec<(String, String, bool)> = gw
        .rack()
        .received()
        .into_iter()
        .skip(rack_before)
        .map(|r| {
            // The rack's own flag is set only on the sockets it serves: read the header.
            let upgrade = r
                .header("upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            (r.method, r.target, upgrade)
        })
        .collect();
    // `CommandRequested` is durable before the answer leaves (denials) or before the call is
    // forwarded (allowed calls), so it is in the log by now.
    let mut requested: Vec<CommandRequested> = gw
        .events_since(since)
        .await
        .iter()
        .filter_map(requested)
        .cloned()
        .collect();
    // The gateway's own lookups are rack calls of their own, recorded as such: not this
    // request's record or forwarding.
    let lookups: Vec<String> = requested
        .iter()
        .filter(|c| is_lookup(c))
        .map(|c| c.path.clone())
        .collect();
    requested.retain(|c| !is_lookup(c));
    forwarded.retain(|(method, target, ws)| {
        !(method == "GET" && !ws && lookups.iter().any(|p| target.split('?').next() == Some(p)))
    });
    if status == 101
        && let [c] = requested.as_slice()
        && c.decision == Decision::Allow
    {
        // A relayed stream counts against its owner's open streams until it has closed.
        let id = c.request.clone();
        eventually(&format!("StreamClosed of {}", id.0), || async {
            gw.events_since(since)
                .await
                .iter()
                .any(|r| matches!(&r.event, Event::StreamClosed { request, .. } if *request == id))
                .then_some(())
        })
        .await;
    }
    Seen {
        status,
        text,
        eof,
        forwarded,
        requested,
    }
}

/// Opens a WebSocket with `raw`. Upgraded: sends the EOF of an empty stdin (as the CLI does
/// when stdin ends), reads the data frames up to the EOF frame, closes. Not upgraded: the status
/// and the body.
async fn socket(gw: &TestGateway, raw: &[u8]) -> (u16, Vec<String>, bool) {
    let mut tcp = TcpStream::connect(gw.proxy()).await.unwrap();
    tcp.write_all(raw).await.unwrap();
    let (status, headers) = read_head(&mut tcp).await;
    if status != 101 {
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        tokio::time::timeout(DEADLINE, tcp.read_exact(&mut body))
            .await
            .expect("the body of a refused upgrade within the deadline")
            .unwrap();
        return (
            status,
            vec![String::from_utf8_lossy(&body).into_owned()],
            false,
        );
    }
    let (r, w) = tcp.into_split();
    let mut reader = WsReader::new(r, WsRole::Client);
    let mut writer = WsWriter::new(w, WsRole::Client);
    // The peer may already be gone; what it sent is still read below.
    let _ = writer.binary(b"").await;
    let mut text = Vec::new();
    let mut eof = false;
    loop {
        let frame = tokio::time::timeout(DEADLINE, reader.read_frame())
            .await
            .expect("a frame or the end of the socket within the deadline");
        match frame {
            Ok(Some(f)) if f.opcode == Opcode::Binary && f.payload.is_empty() => {
                eof = true;
                break;
            }
            Ok(Some(f)) if f.opcode == Opcode::Close => break,
            Ok(Some(f)) if f.opcode.is_control() => {}
            Ok(Some(f)) => text.push(String::from_utf8_lossy(&f.payload).into_owned()),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = writer.close(1000, b"").await;
    (status, text, eof)
}

/// Reads a response head byte by byte (nothing after it is consumed): status and headers.
async fn read_head(tcp: &mut TcpStream) -> (u16, Vec<(String, String)>) {
    let mut head = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            let n = tcp.read(&mut b).await.unwrap();
            assert!(n == 1, "the connection closed inside the response head");
            head.push(b[0]);
        }
    })
    .await
    .expect("a response head within the deadline");
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

// === Classifying ===

impl Seen {
    /// `allow`, `deny` or `local` when the gateway's behaviour is exactly one of them, otherwise
    /// what it did instead.
    fn outcome(&self, line: &Line, path: &str, caller: &Caller) -> String {
        let socket = line.method == "SOCKET";
        let wire_method = if socket { "GET" } else { line.method };
        let [c] = self.requested.as_slice() else {
            return format!("{} CommandRequested records", self.requested.len());
        };
        if c.credential.as_deref() != Some(caller.credential.as_str()) {
            return format!("recorded under credential {:?}", c.credential);
        }
        let forwarded = match self.forwarded.as_slice() {
            [] => false,
            [(m, target, ws)]
                if m == wire_method && target.split('?').next() == Some(path) && *ws == socket =>
            {
                true
            }
            other => return format!("forwarded something else: {other:?}"),
        };
        let policy_denial = c.reason == "permission_denied" || c.reason == "token_scope";
        let refused_on_the_wire = if socket {
            // Refused inside the socket, as the CLI shows it (spec §2.5, §4.3): why, exit 1, EOF
            // where the rack's stream ends with an exit line (exec, instance shells); a log
            // stream, a tunnel or a console carries none (the CLI prints or copies it).
            let exit_line = format!("{}1\n", mock_rack::EXIT_MARKER);
            let exits = line.pattern.ends_with("/exec") || line.pattern.ends_with("/shell");
            self.status == 101
                && self.eof
                && match self.text.as_slice() {
                    [why] => why.starts_with("ERROR: ") && !exits,
                    [why, exit] => why.starts_with("ERROR: ") && *exit == exit_line && exits,
                    _ => false,
                }
        } else {
            self.status == 403
                && (line.method == "HEAD"
                    || self
                        .text
                        .iter()
                        .all(|t| t.ends_with(&format!("({})\n", c.reason))))
        };
        let local = !socket
            && self.status == 404
            && self.text.iter().all(String::is_empty)
            && c.reason == "answered_locally";
        match (c.decision, forwarded) {
            (Decision::Allow, true) if c.reason.is_empty() => "allow".to_owned(),
            (Decision::Deny, false) if policy_denial && refused_on_the_wire => "deny".to_owned(),
            (Decision::Allow, false) if local => "local".to_owned(),
            _ => "something else".to_owned(),
        }
    }

    /// One line on what happened, for the report.
    fn summary(&self) -> String {
        let c = self.requested.first();
        let mut text: String = self.text.join(" | ");
        text.truncate(160);
        format!(
            "status {}, body {text:?}{}, forwarded {:?}, recorded {:?} {:?} ({})",
            self.status,
            if self.eof { " then EOF" } else { "" },
            self.forwarded,
            c.map(|c| c.decision),
            c.map_or("", |c| c.reason.as_str()),
            c.and_then(|c| c.permission.as_ref())
                .map_or("no permission", |p| p.0.as_str()),
        )
    }
}

// === Running ===

/// Sends every line as each caller in `plan` (a caller and the column it must match), every
/// DELETE line last. The outcome reads only whether the rack received the call, never its
/// answer, so no rack state can change it; ordering the deletions last still lets every other
/// line meet the seed app and process as they were.
async fn run(gw: &TestGateway, lines: &[Line], plan: &[(&Caller, usize)]) -> Report {
    let mut report = Report::default();
    for deletes in [false, true] {
        for (caller, column) in plan {
            for line in lines.iter().filter(|l| (l.method == "DELETE") == deletes) {
                let seen = send(gw, caller, line).await;
                report.requests += 1;
                let path = sample(line.pattern);
                let got = seen.outcome(line, &path, caller);
                let want = line.expected[*column];
                if got != want {
                    report.mismatches.push(format!(
                        "line {}: {} {} as {} ({} column): expected {want}, got {got}: {}",
                        line.number,
                        line.method,
                        line.pattern,
                        caller.label,
                        COLUMNS[*column],
                        seen.summary()
                    ));
                }
            }
        }
    }
    report
}

async fn caller(gw: &TestGateway, label: &str, email: &str, role: Role, scopes: &[&str]) -> Caller {
    let issued = gw.token_for(email, role, scopes).await;
    Caller {
        label: label.to_owned(),
        credential: issued.id.to_hex(),
        secret: issued.secret,
    }
}

fn scopes_of(role: Role) -> Vec<String> {
    role_permissions(role)
        .into_iter()
        .map(|p| p.to_permission().0)
        .collect()
}

/// Stops the gateway, then checks that the log recorded every request of `callers` once and
/// that nothing disagreed with the file.
async fn finish(gw: TestGateway, callers: &[&Caller], report: Report, started: Instant) {
    let elapsed = started.elapsed();
    let finished = gw.finish().await;
    let recorded = finished
        .events
        .iter()
        .filter_map(requested)
        .filter(|c| !is_lookup(c))
        .filter(|c| {
            callers
                .iter()
                .any(|k| c.credential.as_deref() == Some(k.credential.as_str()))
        })
        .count();
    println!(
        "role matrix: {} requests in {elapsed:.2?}, {} mismatches",
        report.requests,
        report.mismatches.len()
    );
    assert!(
        report.mismatches.is_empty(),
        "{} of {} requests disagree with tests/expectations/role_route_matrix.txt:\n{}",
        report.mismatches.len(),
        report.requests,
        report.mismatches.join("\n")
    );
    assert_eq!(
        recorded, report.requests,
        "one CommandRequested per request in the stopped log"
    );
}

// === The tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_and_a_cicd_token_get_what_the_file_says() {
    let started = Instant::now();
    let lines = matrix();
    let gw = TestGateway::start().await;
    let viewer = caller(
        &gw,
        "viewer",
        "viewer@example.com",
        Role::Viewer,
        EVERYTHING,
    )
    .await;
    let ops = caller(&gw, "ops", "ops@example.com", Role::Ops, EVERYTHING).await;
    let deployer = caller(
        &gw,
        "deployer",
        "deployer@example.com",
        Role::Deployer,
        EVERYTHING,
    )
    .await;
    let admin = caller(&gw, "admin", "admin@example.com", Role::Admin, EVERYTHING).await;
    let cicd_scopes: Vec<String> = cicd_scopes().into_iter().map(|p| p.0).collect();
    let cicd_scopes: Vec<&str> = cicd_scopes.iter().map(String::as_str).collect();
    let cicd = caller(
        &gw,
        "a cicd token",
        "ci-owner@example.com",
        Role::Deployer,
        &cicd_scopes,
    )
    .await;
    let plan = [
        (&viewer, 0),
        (&ops, 1),
        (&deployer, 2),
        (&admin, 3),
        (&cicd, 4),
    ];
    let report = run(&gw, &lines, &plan).await;
    assert_eq!(report.requests, lines.len() * COLUMNS.len());
    finish(
        gw,
        &[&viewer, &ops, &deployer, &admin, &cicd],
        report,
        started,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admins_token_scoped_to_viewer_gets_the_viewer_column() {
    let started = Instant::now();
    let lines = matrix();
    let gw = TestGateway::start().await;
    let viewer_scopes = scopes_of(Role::Viewer);
    let viewer_scopes: Vec<&str> = viewer_scopes.iter().map(String::as_str).collect();
    let scoped = caller(
        &gw,
        "an admin's viewer-scoped token",
        "scoped@example.com",
        Role::Admin,
        &viewer_scopes,
    )
    .await;
    // The same owner's unscoped token gets the admin column: the narrowing is the token's.
    let full = caller(
        &gw,
        "the same admin's full token",
        "scoped@example.com",
        Role::Admin,
        EVERYTHING,
    )
    .await;
    let mut report = run(&gw, &lines, &[(&full, ADMIN)]).await;
    let scoped_report = run(&gw, &lines, &[(&scoped, VIEWER)]).await;
    report.requests += scoped_report.requests;
    report.mismatches.extend(scoped_report.mismatches);
    finish(gw, &[&scoped, &full], report, started).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_an_owner_demoted_to_viewer_gets_the_viewer_column_at_once() {
    let started = Instant::now();
    let lines = matrix();
    let gw = TestGateway::start().await;
    let admin_scopes = scopes_of(Role::Admin);
    let admin_scopes: Vec<&str> = admin_scopes.iter().map(String::as_str).collect();
    let email = "demoted@example.com";
    let mut token = caller(&gw, "", email, Role::Admin, &admin_scopes).await;
    token.label = "an admin-scoped token before its owner's demotion".into();
    let mut report = run(&gw, &lines, &[(&token, ADMIN)]).await;
    // Demoted while the gateway runs: no restart, no new token.
    gw.grant(email, Role::Viewer).await;
    gw.revoke_role(email, Role::Admin).await;
    token.label = "the same token after its owner's demotion to viewer".into();
    let after = run(&gw, &lines, &[(&token, VIEWER)]).await;
    report.requests += after.requests;
    report.mismatches.extend(after.mismatches);
    finish(gw, &[&token], report, started).await;
}
