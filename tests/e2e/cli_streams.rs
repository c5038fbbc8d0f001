//! The convox CLI's sequences that open WebSockets, replayed byte for byte through the gateway
//! to `mock-rack` over real sockets: `convox run web bin/migrate -a x` (spec §4.4, Appendix
//! A.9: start the pod, poll it, `GET /machines`, the exec socket with the real command in its
//! `Command` header, stop the pod), `convox deploy -a x` (spec §6: upload, build, the build log
//! socket, the build polls, its second reading, promote, the app log socket, the final polls),
//! `convox exec` (A.8) and `convox logs` (A.5), each a `GET /machines` and its socket.
//!
//! The plain requests go through `cli::Session::replay`, which checks each against a reference
//! rack fed the same request directly. Each socket is opened the same way on both, and what
//! came back through the gateway must be what the rack sent, frame for frame. On top of that,
//! each test checks the bytes both ways (invalid UTF-8 in a text frame, a character split
//! across two frames), the exit code the CLI reads from the marker, the upgrades the rack
//! received (as the authenticated user, with the rack's credentials and its own `Origin`), and
//! the log: one `CommandRequested` per request that passed authentication, and for each socket
//! a `StreamOpened` and a `StreamClosed` with its byte counts and exit code. A refusal per
//! sequence shows what a caller without the permission sees, and that nothing reaches the rack.
//!
//! These paths matter because a WebSocket is where a `run` says what it executes (the start
//! request carries only `sleep 3600`) and where build output comes back, and because the
//! sockets are kept open until the CLI exits (spec §4.2): the tests close them only at the end,
//! the way the CLI's exit does, without a close frame.

use events::event::{Decision, Event, Role};
use events::record::Record;
use mock_rack::ws::{Frame, Opcode, accept_key};
use mock_rack::{AFTER_EOF_OUTPUT, EXIT_MARKER, MockRack, Received, SEED_APP};
use rack_gateway::server::dev::DEV_USER;

use crate::cli::{
    APP_READ, BUILD_CREATE, BUILD_READ, DEPLOY_KEY, OBJECT_CREATE, PROCESS_READ, PROCESS_RUN,
    PROCESS_STOP, RACK_READ, RELEASE_PROMOTE, Session, Step, assert_absent,
};
use crate::support::{
    Body, CAPTURED_AUTH, Cli, Socket, TestGateway, completed, eventually, next_frame, open_socket,
    requested, until_eof,
};

const EXEC_RUN: &str = "convox:exec:run";
const LOG_READ: &str = "convox:log:read";

/// The `Sec-WebSocket-Key` of the captured run (A.9) and of the captured log stream (A.5); the
/// build log sockets, not captured, get keys of their own.
const RUN_KEY: &str = "RUSw5GcUbtfOtBF7Gq51mg==";
const APP_LOGS_KEY: &str = "1y4rF1VcW2vLEIYpWG8sjg==";
const BUILD_LOGS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const FINAL_BUILD_LOGS_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEA==";

/// The exec handshake of `convox run web bin/migrate -a x` as captured (A.9, `Host` filled in).
const CAPTURED_RUN_EXEC: &str = "GET /apps/x/processes/run-web-xyz12/exec HTTP/1.1\r\n\
    Host: 127.0.0.1:18080\r\n\
    User-Agent: convox.go/dev\r\n\
    Authorization: Basic Y29udm94OlRPS0VOMTIz\r\n\
    Command: bin/migrate\r\n\
    Connection: Upgrade\r\n\
    Entrypoint: true\r\n\
    Origin: http://127.0.0.1:18080\r\n\
    Sec-WebSocket-Key: RUSw5GcUbtfOtBF7Gq51mg==\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Tty: false\r\n\
    Upgrade: websocket\r\n\
    Version: dev\r\n\
    \r\n";

/// The form of the captured build start (spec Appendix A, "Captured body of a v3 source upload").
const CAPTURED_BUILD_FORM: &str = "url=object%3A%2F%2Fx%2Ftmp%2F01362c476d019add69c8b81a11fa93.tgz";

/// The run's stdin, one text frame each: the captured `echo hi\n`, a line that is not UTF-8, and
/// `é` (`c3 a9`) split between two frames. The CLI then sends EOF, an empty binary frame.
const STDIN: [&[u8]; 4] = [b"echo hi\n", b"echo \xff\xfe hi\n", b"\xc3", b"\xa9"];

/// The exec options the CLI sends for `convox run` with stdin from a file (A.9).
fn run_options(command: &str) -> [(&str, &str); 3] {
    [
        ("Command", command),
        ("Entrypoint", "true"),
        ("Tty", "false"),
    ]
}

/// What `convox run` saw.
struct Attached {
    pid: String,
    /// The data frames the CLI read before the rack's EOF.
    frames: Vec<Frame>,
}

/// What `convox deploy` saw.
struct Deployed {
    build: String,
    release: String,
    /// The build log as the first socket delivered it (the second must match).
    build_log: Vec<Frame>,
    app_log: Vec<Frame>,
}

// === Flows ===

/// `convox run web <command> -a x` with stdin from a file (spec §4.4, A.9): start the pod with
/// `sleep 3600`, poll it until it ran twice, `GET /machines`, exec the real command with `STDIN`
/// and EOF, ping the finished stream as the CLI's keepalive does, stop the pod (the CLI's
/// deferred `ProcessStop`), then exit, which drops the socket without a close frame.
async fn run_attached(s: &Session, command: &str) -> Attached {
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
        let polled = s
            .replay(Step::get(format!("/apps/x/processes/{pid}?")).allows(PROCESS_READ))
            .await
            .json();
        assert_eq!(polled["status"], "running");
    }
    s.replay(Step::get("/machines?")).await;

    let path = format!("/apps/x/processes/{pid}/exec");
    let (mut via, frames) = exec(s, &path, RUN_KEY, &run_options(command)).await;

    // Nobody closes a finished stream (spec §4.2): the CLI keeps pinging it, the rack answers.
    via.writer.ping(b"keepalive").await.unwrap();
    let pong = next_frame(&mut via.reader)
        .await
        .expect("the finished stream is still open");
    assert_eq!(
        (pong.opcode, &pong.payload[..]),
        (Opcode::Pong, &b"keepalive"[..])
    );

    let stopped = s
        .replay(Step::new("DELETE", format!("/apps/x/processes/{pid}?")).allows(PROCESS_STOP))
        .await;
    assert_eq!(stopped.text(), "ok\n");
    drop(via);
    Attached { pid, frames }
}

/// `convox deploy -a x` in the order of the spec's timeline (§6). The CLI keeps every socket it
/// opened until it exits; so does this flow, and it drops them all at the end.
async fn deploy(s: &Session) -> Deployed {
    let mut open = Vec::new();
    s.replay(Step::get("/system?").allows(RACK_READ)).await;
    let tarball: Vec<u8> = [&[0x1f, 0x8b, 0x08, 0x00][..], &[0xAB; 205]].concat();
    let uploaded = s
        .replay(
            Step::new("POST", format!("/apps/x/objects/{DEPLOY_KEY}?"))
                .raw(&tarball)
                .allows(OBJECT_CREATE),
        )
        .await;
    let url = format!("object://x/{DEPLOY_KEY}");
    assert_eq!(uploaded.json()["Url"], url.as_str());
    let stored = s.gw.rack().object(SEED_APP, DEPLOY_KEY).unwrap();
    assert!(stored.data == tarball, "the rack stored other bytes");
    let build = s
        .replay(
            Step::new("POST", "/apps/x/builds?")
                .form(CAPTURED_BUILD_FORM)
                .allows(BUILD_CREATE)
                .param("url", &url),
        )
        .await
        .json();
    assert_eq!(build["status"], "running", "as the real rack answers");
    let id = build["id"].as_str().unwrap().to_owned();

    s.replay(Step::get("/machines?")).await;
    let logs = format!("/apps/x/builds/{id}/logs");
    let (socket, build_log) = stream(s, &logs, BUILD_LOGS_KEY, &[]).await;
    open.push(socket);

    let mut release = String::new();
    for _ in 0..2 {
        let b = s
            .replay(Step::get(format!("/apps/x/builds/{id}?")).allows(BUILD_READ))
            .await
            .json();
        assert_eq!(b["status"], "complete");
        release = b["release"].as_str().unwrap().to_owned();
    }
    // finalizeBuildLogs reads the whole log again and prints what it had not shown.
    s.replay(Step::get("/machines?")).await;
    let (socket, again) = stream(s, &logs, FINAL_BUILD_LOGS_KEY, &[]).await;
    open.push(socket);
    assert_eq!(again, build_log, "the second reading is the same log");

    let app = s
        .replay(Step::get("/apps/x?").allows(APP_READ))
        .await
        .json();
    assert_eq!(app["status"], "running");
    let promoted = s
        .replay(
            Step::new("POST", format!("/apps/x/releases/{release}/promote?"))
                .form("force=false")
                .allows(RELEASE_PROMOTE)
                .param("force", "false"),
        )
        .await;
    assert_eq!(promoted.text(), "ok\n");
    s.replay(Step::get("/machines?")).await;
    let (socket, app_log) = stream(
        s,
        "/apps/x/logs",
        APP_LOGS_KEY,
        &[("Prefix", "true"), ("Since", "5s")],
    )
    .await;
    open.push(socket);
    s.replay(Step::get("/apps/x/processes?").allows(PROCESS_READ))
        .await;
    for _ in 0..3 {
        let app = s
            .replay(Step::get("/apps/x?").allows(APP_READ))
            .await
            .json();
        assert_eq!(app["release"].as_str(), Some(release.as_str()));
    }
    drop(open);
    Deployed {
        build: id,
        release,
        build_log,
        app_log,
    }
}

/// Opens an exec socket as the CLI does, through the gateway and directly on the reference
/// rack, sends `STDIN` and EOF on both and reads both to EOF: they must match frame for frame.
/// Returns the gateway's socket, still open, and its frames.
async fn exec(
    s: &Session,
    path: &str,
    key: &str,
    options: &[(&str, &str)],
) -> (Socket, Vec<Frame>) {
    let mut via = open_socket(s.gw.proxy(), s.gw.cli().websocket(path, key, options)).await;
    assert_upgraded(&via, key);
    let mut direct = open_socket(
        s.reference().addr(),
        Cli::captured(s.reference()).websocket(path, key, options),
    )
    .await;
    assert_upgraded(&direct, key);
    for socket in [&mut via, &mut direct] {
        for frame in STDIN {
            socket.writer.text(frame).await.unwrap();
        }
        socket.writer.binary(b"").await.unwrap();
    }
    let frames = until_eof(&mut via.reader).await;
    assert_eq!(
        frames,
        until_eof(&mut direct.reader).await,
        "the exec stream through the gateway is the rack's own, frame for frame"
    );
    (via, frames)
}

/// Opens a read-only stream as the CLI does, through the gateway and directly on the reference
/// rack, and reads both to EOF: they must match frame for frame. Returns the gateway's socket,
/// still open, and its frames.
async fn stream(
    s: &Session,
    path: &str,
    key: &str,
    options: &[(&str, &str)],
) -> (Socket, Vec<Frame>) {
    let mut via = open_socket(s.gw.proxy(), s.gw.cli().websocket(path, key, options)).await;
    assert_upgraded(&via, key);
    let frames = until_eof(&mut via.reader).await;
    let mut direct = open_socket(
        s.reference().addr(),
        Cli::captured(s.reference()).websocket(path, key, options),
    )
    .await;
    assert_upgraded(&direct, key);
    assert_eq!(
        frames,
        until_eof(&mut direct.reader).await,
        "{path}: the stream through the gateway is the rack's own, frame for frame"
    );
    assert!(!frames.is_empty(), "{path}: the rack sent nothing");
    assert!(
        frames.iter().all(|f| f.fin && f.opcode == Opcode::Text),
        "{path}: data travels in text frames (spec §4.2)"
    );
    (via, frames)
}

// === Checks ===

/// The answer to the CLI's upgrade: `101` with the accept key its dialer checks.
fn assert_upgraded(socket: &Socket, key: &str) {
    let head = &socket.head;
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.header("upgrade"), Some("websocket"));
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(accept_key(key.as_bytes()).as_str())
    );
}

/// What the CLI makes of an exec stream (spec §4.3): it looks for the exit marker in each read,
/// writes what precedes it to stdout and exits with the marker's code; no marker means 0.
fn cli_exit(frames: &[Frame]) -> (Vec<u8>, i64) {
    let marker = EXIT_MARKER.as_bytes();
    let mut stdout = Vec::new();
    for frame in frames {
        let payload = &frame.payload[..];
        if let Some(at) = payload.windows(marker.len()).position(|w| w == marker) {
            stdout.extend_from_slice(&payload[..at]);
            let rest = &payload[at + marker.len()..];
            let line = rest.split(|&b| b == b'\n').next().unwrap();
            let code = std::str::from_utf8(line).unwrap().trim().parse().unwrap();
            return (stdout, code);
        }
        stdout.extend_from_slice(payload);
    }
    (stdout, 0)
}

fn payload_len(frames: &[Frame]) -> u64 {
    frames.iter().map(|f| f.payload.len() as u64).sum()
}

/// `METHOD target` of every request the rack received, in order.
fn targets(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

/// A socket upgrade as the rack received it through the gateway: the CLI's path and options,
/// nothing else of the caller's; the authenticated user as the actor; the rack's credentials
/// and the rack's own host as `Origin` (spec §4.6). The parameters its handler used are those it
/// used for the same upgrade sent directly.
fn assert_forwarded_upgrade(
    got: &Received,
    direct: &Received,
    rack: &MockRack,
    caller: &Cli,
    path: &str,
    options: &[(&str, &str)],
) {
    assert_eq!((got.method.as_str(), got.target.as_str()), ("GET", path));
    assert!(got.websocket && got.status == 101, "{path}: {got:?}");
    assert_eq!(
        got.actor.as_deref(),
        Some(DEV_USER),
        "{path}: X-Convox-Actor"
    );
    let auth = got.header("authorization").unwrap_or_default();
    assert!(
        auth.starts_with("Basic ") && auth != caller.authorization() && auth != CAPTURED_AUTH,
        "{path}: the caller's credentials reached the rack: {auth}"
    );
    let host = rack.addr().to_string();
    assert_eq!(got.header("host"), Some(host.as_str()));
    assert_eq!(
        got.header("origin"),
        Some(format!("http://{host}").as_str())
    );
    assert_eq!(got.header("user-agent"), Some("convox.go/dev"));
    assert_eq!(got.header("version"), Some("dev"));
    for (name, value) in options {
        assert_eq!(got.header(name), Some(*value), "{path}: {name}");
    }
    let handshake = [
        "host",
        "user-agent",
        "authorization",
        "connection",
        "upgrade",
        "origin",
        "sec-websocket-key",
        "sec-websocket-version",
        "version",
        "x-convox-actor",
    ];
    let mut others: Vec<String> = got
        .headers
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !handshake.contains(&n.as_str()))
        .collect();
    others.sort();
    let mut sent: Vec<String> = options
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    sent.sort();
    assert_eq!(others, sent, "{path}: the headers beyond the handshake");
    assert_eq!(
        got.params, direct.params,
        "{path}: the parameters the rack used"
    );
}

/// One line per `CommandRequested`: method, path, decision, reason (`-` if none), permission.
fn decisions(events: &[Record]) -> Vec<String> {
    events
        .iter()
        .filter_map(requested)
        .map(|c| {
            format!(
                "{} {} {:?} {} {}",
                c.method,
                c.path,
                c.decision,
                if c.reason.is_empty() { "-" } else { &c.reason },
                c.permission.as_ref().map_or("-", |p| p.0.as_str())
            )
        })
        .collect()
}

/// The log of one stream: its `CommandRequested`, and the counts and exit code of its
/// `StreamClosed`.
struct Streamed<'a> {
    requested: &'a Record,
    bytes_in: u64,
    bytes_out: u64,
    exit_code: Option<i64>,
}

/// Every allowed socket call to `path`, in order, with its one `StreamOpened` and one
/// `StreamClosed` (in that order, after the decision) and no `CommandCompleted`.
fn streams<'a>(events: &'a [Record], path: &str) -> Vec<Streamed<'a>> {
    events
        .iter()
        .filter(|r| requested(r).is_some_and(|c| c.path == path && c.decision == Decision::Allow))
        .map(|decided| {
            let id = requested(decided).unwrap().request.0.as_str();
            let opened: Vec<&Record> = events
                .iter()
                .filter(|r| matches!(&r.event, Event::StreamOpened { request } if request.0 == id))
                .collect();
            let closed: Vec<(&Record, u64, u64, Option<i64>)> = events
                .iter()
                .filter_map(|r| match &r.event {
                    Event::StreamClosed {
                        request,
                        bytes_in,
                        bytes_out,
                        exit_code,
                        ..
                    } if request.0 == id => Some((r, *bytes_in, *bytes_out, *exit_code)),
                    _ => None,
                })
                .collect();
            assert_eq!(opened.len(), 1, "{path}: StreamOpened of {id}");
            assert_eq!(closed.len(), 1, "{path}: StreamClosed of {id}");
            assert!(
                decided.seq < opened[0].seq && opened[0].seq < closed[0].0.seq,
                "{path}: decided, opened, closed, in that order"
            );
            assert!(
                !events
                    .iter()
                    .filter_map(completed)
                    .any(|c| c.request.0 == id),
                "{path}: a stream is bracketed by its own events, not completed"
            );
            Streamed {
                requested: decided,
                bytes_in: closed[0].1,
                bytes_out: closed[0].2,
                exit_code: closed[0].3,
            }
        })
        .collect()
}

fn count(events: &[Record], f: fn(&Event) -> bool) -> usize {
    events.iter().filter(|r| f(&r.event)).count()
}

/// Waits until the log holds `n` `StreamClosed` records.
async fn streams_closed(gw: &TestGateway, n: usize) {
    eventually(&format!("{n} StreamClosed"), || async {
        let events = gw.events().await;
        (count(&events, |e| matches!(e, Event::StreamClosed { .. })) >= n).then_some(())
    })
    .await;
}

/// The rack's socket upgrades, in order.
fn upgrades(rack: &MockRack) -> Vec<Received> {
    rack.received()
        .into_iter()
        .filter(|r| r.websocket)
        .collect()
}

// === Tests ===

/// `convox run web bin/migrate -a x` (A.9): the handshake bytes are the captured ones, stdin and
/// output cross the gateway unchanged both ways, the CLI exits with the rack's code, the rack
/// ran the real command as the authenticated user, and the log holds the scrubbed command and
/// the stream's counts and exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_run_attached_is_relayed_byte_exact_and_recorded() {
    let captured = Cli::new("127.0.0.1:18080", CAPTURED_AUTH).websocket(
        "/apps/x/processes/run-web-xyz12/exec",
        RUN_KEY,
        &run_options("bin/migrate"),
    );
    assert_eq!(
        String::from_utf8(captured).unwrap(),
        CAPTURED_RUN_EXEC,
        "the handshake is written as the CLI writes it"
    );

    let s = Session::start().await;
    let run = run_attached(&s, "bin/migrate").await;
    let pid = run.pid.as_str();
    let exec = format!("/apps/x/processes/{pid}/exec");

    // Both ways, byte for byte: stdin comes back as the rack echoed it, frame for frame, the
    // invalid UTF-8 and the split character included, then what the command wrote after its
    // stdin closed (relayed past the CLI's EOF), then the exit marker.
    let marker = format!("{EXIT_MARKER}0\n");
    let mut want: Vec<&[u8]> = STDIN.to_vec();
    want.push(AFTER_EOF_OUTPUT);
    want.push(marker.as_bytes());
    let got: Vec<&[u8]> = run.frames.iter().map(|f| &f.payload[..]).collect();
    assert_eq!(got, want);
    assert!(run.frames.iter().all(|f| f.fin && f.opcode == Opcode::Text));
    let (stdout, code) = cli_exit(&run.frames);
    assert_eq!(
        stdout,
        [STDIN.concat(), AFTER_EOF_OUTPUT.to_vec()].concat(),
        "what the CLI prints"
    );
    assert_eq!(code, 0, "the exit code the CLI returns");

    // The rack: the CLI's requests in order (`GET /machines` answered by the gateway), the
    // socket as the dev user with the real command.
    assert_eq!(
        targets(&s.gw.rack().received()),
        [
            "POST /apps/x/services/web/processes?".to_owned(),
            format!("GET /apps/x/processes/{pid}?"),
            format!("GET /apps/x/processes/{pid}?"),
            format!("GET {exec}"),
            format!("DELETE /apps/x/processes/{pid}?"),
        ]
    );
    let got = upgrades(s.gw.rack());
    let direct = upgrades(s.reference());
    assert_eq!((got.len(), direct.len()), (1, 1));
    assert_forwarded_upgrade(
        &got[0],
        &direct[0],
        s.gw.rack(),
        &s.gw.cli(),
        &exec,
        &run_options("bin/migrate"),
    );
    assert_eq!(
        got[0].param("command").map(|p| p.value.as_str()),
        Some("bin/migrate"),
        "the rack ran the real command"
    );

    // The log: one decision per request, the exec's with its command; the stream opened before
    // the pod was stopped and closed only when the CLI went away.
    streams_closed(&s.gw, 1).await;
    let credential = s.gw.token_id(s.gw.token());
    let finished = s.finish().await;
    let events = &finished.events;
    assert_eq!(
        decisions(events),
        [
            format!("POST /apps/x/services/web/processes Allow - {PROCESS_RUN}"),
            format!("GET /apps/x/processes/{pid} Allow - {PROCESS_READ}"),
            format!("GET /apps/x/processes/{pid} Allow - {PROCESS_READ}"),
            "GET /machines Allow answered_locally -".to_owned(),
            format!("GET {exec} Allow - {EXEC_RUN}"),
            format!("DELETE /apps/x/processes/{pid} Allow - {PROCESS_STOP}"),
        ]
    );
    let streamed = streams(events, &exec);
    assert_eq!(streamed.len(), 1);
    let c = requested(streamed[0].requested).unwrap();
    assert_eq!(
        c.params,
        [
            ("Command".to_owned(), "bin/migrate".to_owned()),
            ("Entrypoint".to_owned(), "true".to_owned()),
            ("Tty".to_owned(), "false".to_owned()),
        ]
    );
    assert_eq!(c.actor.0, DEV_USER);
    assert_eq!(c.credential.as_deref(), Some(credential.as_str()));
    assert_eq!(c.user_agent, "convox.go/dev");
    assert_eq!(
        (
            streamed[0].bytes_in,
            streamed[0].bytes_out,
            streamed[0].exit_code
        ),
        (
            STDIN.iter().map(|f| f.len() as u64).sum(),
            payload_len(&run.frames),
            Some(0)
        ),
        "StreamClosed: stdin bytes, output bytes (the marker line included), exit code"
    );
    let stop = events
        .iter()
        .find(|r| requested(r).is_some_and(|c| c.method == "DELETE"))
        .unwrap()
        .seq;
    let opened = events
        .iter()
        .find(|r| matches!(r.event, Event::StreamOpened { .. }))
        .unwrap()
        .seq;
    let closed = events
        .iter()
        .find(|r| matches!(r.event, Event::StreamClosed { .. }))
        .unwrap()
        .seq;
    assert!(
        opened < stop && stop < closed,
        "the finished stream stayed open until the CLI exited"
    );
}

/// `convox run` with a credential in its command: the rack gets the command as typed, the log
/// only its scrubbed form, and the password is nowhere in the log or the export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_run_records_its_command_scrubbed() {
    let command = "bin/migrate --database-url=postgres://admin:hunter2@db:5432/app";
    let s = Session::start().await;
    let run = run_attached(&s, command).await;
    let exec = format!("/apps/x/processes/{}/exec", run.pid);
    let got = upgrades(s.gw.rack());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("command"), Some(command));
    assert_eq!(
        got[0].param("command").map(|p| p.value.as_str()),
        Some(command)
    );
    assert_eq!(
        cli_exit(&run.frames),
        ([STDIN.concat(), AFTER_EOF_OUTPUT.to_vec()].concat(), 0)
    );
    streams_closed(&s.gw, 1).await;
    let finished = s.finish().await;
    let streamed = streams(&finished.events, &exec);
    assert_eq!(streamed.len(), 1);
    assert_eq!(
        requested(streamed[0].requested).unwrap().params[0],
        (
            "Command".to_owned(),
            "bin/migrate --database-url=postgres://admin:[redacted]@db:5432/app".to_owned()
        )
    );
    assert_absent(&finished, "hunter2");
}

/// `convox run` by an ops user whose token leaves out `convox:exec:run`: the pod starts (the
/// token may start and stop processes), the exec socket is upgraded and refused inside, the way
/// the rack reports its own errors (spec §2.5): `ERROR: <why>`, the exit marker with 1, EOF.
/// The CLI prints the reason and exits 1, its deferred stop still runs, and the socket never
/// reaches the rack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_run_without_exec_is_refused_inside_the_socket() {
    let gw = TestGateway::start().await;
    let ops = gw
        .token_for(
            "ops@example.com",
            Role::Ops,
            &[PROCESS_RUN, PROCESS_READ, PROCESS_STOP],
        )
        .await;
    let cli = gw.cli_as(&ops.secret);
    let started = gw
        .send_raw(cli.request(
            "POST",
            "/apps/x/services/web/processes?",
            &[("Command", "sleep 3600")],
            Body::Empty,
        ))
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
    let pid = started.json()["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let polled = gw
            .send_raw(cli.get(&format!("/apps/x/processes/{pid}?")))
            .await;
        assert_eq!(polled.json()["status"], "running");
    }
    let machines = gw.send_raw(cli.get("/machines?")).await;
    assert_eq!((machines.status, machines.body.len()), (404, 0));

    let exec = format!("/apps/x/processes/{pid}/exec");
    let mut socket = open_socket(
        gw.proxy(),
        cli.websocket(&exec, RUN_KEY, &run_options("bin/migrate")),
    )
    .await;
    assert_upgraded(&socket, RUN_KEY);
    socket.writer.text(b"echo hi\n").await.unwrap();
    socket.writer.binary(b"").await.unwrap();
    let frames = until_eof(&mut socket.reader).await;
    assert_eq!(frames.len(), 2, "{frames:?}");
    let error = String::from_utf8(frames[0].payload.to_vec()).unwrap();
    assert!(
        error.starts_with("ERROR: ") && error.ends_with('\n') && error.contains(EXEC_RUN),
        "{error:?}"
    );
    assert_eq!(
        &frames[1].payload[..],
        format!("{EXIT_MARKER}1\n").as_bytes()
    );
    assert_eq!(
        cli_exit(&frames),
        (error.into_bytes(), 1),
        "the CLI prints the reason and exits 1"
    );
    let close = next_frame(&mut socket.reader)
        .await
        .expect("the gateway closes after the caller's EOF");
    assert_eq!(
        (close.opcode, &close.payload[..]),
        (Opcode::Close, &1000u16.to_be_bytes()[..])
    );
    let stopped = gw
        .send_raw(cli.request(
            "DELETE",
            &format!("/apps/x/processes/{pid}?"),
            &[],
            Body::Empty,
        ))
        .await;
    assert_eq!((stopped.status, stopped.text()), (200, "ok\n".to_owned()));
    drop(socket);

    assert_eq!(
        targets(&gw.rack().received()),
        [
            "POST /apps/x/services/web/processes?".to_owned(),
            format!("GET /apps/x/processes/{pid}?"),
            format!("GET /apps/x/processes/{pid}?"),
            format!("DELETE /apps/x/processes/{pid}?"),
        ],
        "the refused socket never reached the rack"
    );
    let finished = gw.finish().await;
    let events = &finished.events;
    assert_eq!(
        decisions(events),
        [
            format!("POST /apps/x/services/web/processes Allow - {PROCESS_RUN}"),
            format!("GET /apps/x/processes/{pid} Allow - {PROCESS_READ}"),
            format!("GET /apps/x/processes/{pid} Allow - {PROCESS_READ}"),
            "GET /machines Allow answered_locally -".to_owned(),
            format!("GET {exec} Deny token_scope {EXEC_RUN}"),
            format!("DELETE /apps/x/processes/{pid} Allow - {PROCESS_STOP}"),
        ]
    );
    let refused = events
        .iter()
        .filter_map(requested)
        .find(|c| c.path == exec)
        .unwrap();
    assert_eq!(refused.actor.0, "ops@example.com");
    assert_eq!(
        refused.params[0],
        ("Command".to_owned(), "bin/migrate".to_owned()),
        "the refused command is on record"
    );
    assert_eq!(
        count(events, |e| matches!(
            e,
            Event::StreamOpened { .. } | Event::StreamClosed { .. }
        )),
        0,
        "no stream was opened"
    );
}

/// `convox deploy -a x` (§6): every plain request as the reference rack answers it, both build
/// log sockets and the app log socket as the rack streamed them (non-UTF-8 build output
/// included), the rack's record of the sequence, and the log's: one decision per request, a
/// stream bracket per socket with the bytes the CLI received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_deploy_streams_its_build_log_and_is_recorded() {
    let s = Session::start().await;
    let d = deploy(&s).await;
    let (build, release) = (d.build.as_str(), d.release.as_str());
    let build_logs = format!("/apps/x/builds/{build}/logs");

    let log = crate::support::payloads(&d.build_log);
    assert!(
        std::str::from_utf8(&log).is_err(),
        "the build output's non-UTF-8 bytes arrive unchanged"
    );
    assert!(
        log.ends_with(format!("Release: {release}\n").as_bytes()),
        "the build log names the release that gets promoted"
    );

    let machines = "GET /machines Allow answered_locally -".to_owned();
    let app_read = format!("GET /apps/x Allow - {APP_READ}");
    let build_read = format!("GET /apps/x/builds/{build} Allow - {BUILD_READ}");
    let build_log = format!("GET {build_logs} Allow - {BUILD_READ}");
    // Where the log is read from is looked up (and recorded) before each log socket opens.
    let log_lookup = format!("GET /apps/x/builds/{build} Allow build_log_lookup -");
    let expected = [
        format!("GET /system Allow - {RACK_READ}"),
        format!("POST /apps/x/objects/{DEPLOY_KEY} Allow - {OBJECT_CREATE}"),
        format!("POST /apps/x/builds Allow - {BUILD_CREATE}"),
        machines.clone(),
        log_lookup.clone(),
        build_log.clone(),
        build_read.clone(),
        build_read,
        machines.clone(),
        log_lookup,
        build_log,
        app_read.clone(),
        format!("POST /apps/x/releases/{release}/promote Allow - {RELEASE_PROMOTE}"),
        machines,
        format!("GET /apps/x/logs Allow - {LOG_READ}"),
        format!("GET /apps/x/processes Allow - {PROCESS_READ}"),
        app_read.clone(),
        app_read.clone(),
        app_read,
    ];
    assert_eq!(
        targets(&s.gw.rack().received()),
        [
            "GET /system?".to_owned(),
            format!("POST /apps/x/objects/{DEPLOY_KEY}?"),
            "POST /apps/x/builds?".to_owned(),
            format!("GET /apps/x/builds/{build}"),
            format!("GET {build_logs}"),
            format!("GET /apps/x/builds/{build}?"),
            format!("GET /apps/x/builds/{build}?"),
            format!("GET /apps/x/builds/{build}"),
            format!("GET {build_logs}"),
            "GET /apps/x?".to_owned(),
            format!("POST /apps/x/releases/{release}/promote?"),
            "GET /apps/x/logs".to_owned(),
            "GET /apps/x/processes?".to_owned(),
            "GET /apps/x?".to_owned(),
            "GET /apps/x?".to_owned(),
            "GET /apps/x?".to_owned(),
        ],
        "the CLI's sequence, less what the gateway answers itself, with its lookups"
    );
    let got = upgrades(s.gw.rack());
    let direct = upgrades(s.reference());
    assert_eq!((got.len(), direct.len()), (3, 3));
    let cli = s.gw.cli();
    let app_logs_options = [("Prefix", "true"), ("Since", "5s")];
    assert_forwarded_upgrade(&got[0], &direct[0], s.gw.rack(), &cli, &build_logs, &[]);
    assert_forwarded_upgrade(&got[1], &direct[1], s.gw.rack(), &cli, &build_logs, &[]);
    assert_forwarded_upgrade(
        &got[2],
        &direct[2],
        s.gw.rack(),
        &cli,
        "/apps/x/logs",
        &app_logs_options,
    );

    streams_closed(&s.gw, 3).await;
    let finished = s.finish().await;
    let events = &finished.events;
    assert_eq!(decisions(events), expected);
    let builds = streams(events, &build_logs);
    assert_eq!(builds.len(), 2);
    for b in &builds {
        assert!(
            requested(b.requested).unwrap().params.is_empty(),
            "the CLI sends no log options for a build log"
        );
        assert_eq!(
            (b.bytes_in, b.bytes_out, b.exit_code),
            (0, log.len() as u64, None),
            "StreamClosed of the build log: nothing in, the log out, no exit code"
        );
    }
    let apps = streams(events, "/apps/x/logs");
    assert_eq!(apps.len(), 1);
    assert_eq!(
        requested(apps[0].requested).unwrap().params,
        [
            ("Prefix".to_owned(), "true".to_owned()),
            ("Since".to_owned(), "5s".to_owned()),
        ]
    );
    assert_eq!(
        (apps[0].bytes_in, apps[0].bytes_out),
        (0, payload_len(&d.app_log))
    );
    assert_eq!(
        count(events, |e| matches!(e, Event::StreamOpened { .. })),
        3,
        "one stream per socket, none for the plain requests"
    );
}

/// `convox deploy -a x` by a viewer: the rack check passes, the source upload is refused with a
/// readable 403 before any byte of it reaches the rack, and the CLI stops there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_deploy_by_a_viewer_stops_at_the_upload() {
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for("viewer@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    let cli = gw.cli_as(&viewer.secret);
    let system = gw.send_raw(cli.get("/system?")).await;
    assert_eq!(system.status, 200);
    let tarball: Vec<u8> = [&[0x1f, 0x8b, 0x08, 0x00][..], &[0xAB; 205]].concat();
    let upload = gw
        .send_raw(cli.request(
            "POST",
            &format!("/apps/x/objects/{DEPLOY_KEY}?"),
            &[],
            Body::Raw(&tarball),
        ))
        .await;
    assert_eq!(upload.status, 403, "{}", upload.text());
    assert_eq!(
        upload.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        upload.text().contains(OBJECT_CREATE),
        "the CLI prints why: {}",
        upload.text()
    );
    let denied = upload.request_id();
    assert_eq!(targets(&gw.rack().received()), ["GET /system?"]);
    assert!(gw.rack().object(SEED_APP, DEPLOY_KEY).is_none());

    let finished = gw.finish().await;
    let events = &finished.events;
    assert_eq!(
        decisions(events),
        [
            format!("GET /system Allow - {RACK_READ}"),
            format!("POST /apps/x/objects/{DEPLOY_KEY} Deny permission_denied {OBJECT_CREATE}"),
        ]
    );
    assert!(
        !events
            .iter()
            .filter_map(completed)
            .any(|c| c.request.0 == denied),
        "nothing was forwarded, nothing completed"
    );
}

/// The `Sec-WebSocket-Key` of the captured exec (A.8).
const EXEC_KEY: &str = "yi1fAdGcQ9/LCIPojeHF3A==";

/// The exec handshake of `convox exec web-5d8f7c9b4-abcde 'ls -la' -a x` as captured (A.8,
/// `Host` filled in).
const CAPTURED_EXEC: &str = "GET /apps/x/processes/web-5d8f7c9b4-abcde/exec HTTP/1.1\r\n\
    Host: 127.0.0.1:18080\r\n\
    User-Agent: convox.go/dev\r\n\
    Authorization: Basic Y29udm94OlRPS0VOMTIz\r\n\
    Command: ls -la\r\n\
    Connection: Upgrade\r\n\
    Origin: http://127.0.0.1:18080\r\n\
    Sec-WebSocket-Key: yi1fAdGcQ9/LCIPojeHF3A==\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Tty: false\r\n\
    Upgrade: websocket\r\n\
    Version: dev\r\n\
    \r\n";

/// The log handshake of `convox logs -a x` as captured (A.5, `Host` filled in).
const CAPTURED_LOGS: &str = "GET /apps/x/logs HTTP/1.1\r\n\
    Host: 127.0.0.1:18080\r\n\
    User-Agent: convox.go/dev\r\n\
    Authorization: Basic Y29udm94OlRPS0VOMTIz\r\n\
    Connection: Upgrade\r\n\
    Origin: http://127.0.0.1:18080\r\n\
    Prefix: true\r\n\
    Sec-WebSocket-Key: 1y4rF1VcW2vLEIYpWG8sjg==\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Upgrade: websocket\r\n\
    Version: dev\r\n\
    \r\n";

/// `convox exec web-5d8f7c9b4-abcde 'ls -la' -a x` with stdin from a file (A.8): `GET /machines`,
/// then the exec socket with the captured handshake; stdin (the captured `echo hi\n`, then
/// invalid UTF-8 and a split character) and the rack's answer cross the gateway unchanged, the
/// CLI exits with the rack's code, the rack gets the socket as the authenticated user, and the
/// log holds both decisions and the stream's counts and exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_exec_is_relayed_byte_exact_and_recorded() {
    let exec_path = crate::streams::EXEC;
    let options = [("Command", "ls -la"), ("Tty", "false")];
    assert_eq!(
        String::from_utf8(
            Cli::new("127.0.0.1:18080", CAPTURED_AUTH).websocket(exec_path, EXEC_KEY, &options)
        )
        .unwrap(),
        CAPTURED_EXEC,
        "the handshake is written as the CLI writes it"
    );

    let s = Session::start().await;
    s.replay(Step::get("/machines?")).await;
    let (via, frames) = exec(&s, exec_path, EXEC_KEY, &options).await;
    let marker = format!("{EXIT_MARKER}0\n");
    let mut want: Vec<&[u8]> = STDIN.to_vec();
    want.push(AFTER_EOF_OUTPUT);
    want.push(marker.as_bytes());
    let got: Vec<&[u8]> = frames.iter().map(|f| &f.payload[..]).collect();
    assert_eq!(
        got, want,
        "stdin echoed byte for byte, then the output and the marker"
    );
    assert!(frames.iter().all(|f| f.fin && f.opcode == Opcode::Text));
    assert_eq!(
        cli_exit(&frames),
        ([STDIN.concat(), AFTER_EOF_OUTPUT.to_vec()].concat(), 0),
        "what the CLI prints, and its exit code"
    );
    drop(via);

    assert_eq!(
        targets(&s.gw.rack().received()),
        [format!("GET {exec_path}")],
        "`GET /machines` is answered by the gateway; the socket reaches the rack"
    );
    let got = upgrades(s.gw.rack());
    let direct = upgrades(s.reference());
    assert_eq!((got.len(), direct.len()), (1, 1));
    assert_forwarded_upgrade(
        &got[0],
        &direct[0],
        s.gw.rack(),
        &s.gw.cli(),
        exec_path,
        &options,
    );
    assert_eq!(
        got[0].param("command").map(|p| p.value.as_str()),
        Some("ls -la")
    );

    streams_closed(&s.gw, 1).await;
    let credential = s.gw.token_id(s.gw.token());
    let finished = s.finish().await;
    let events = &finished.events;
    assert_eq!(
        decisions(events),
        [
            "GET /machines Allow answered_locally -".to_owned(),
            format!("GET {exec_path} Allow - {EXEC_RUN}"),
        ]
    );
    let streamed = streams(events, exec_path);
    assert_eq!(streamed.len(), 1);
    let c = requested(streamed[0].requested).unwrap();
    assert_eq!(
        c.params,
        [
            ("Command".to_owned(), "ls -la".to_owned()),
            ("Tty".to_owned(), "false".to_owned()),
        ]
    );
    assert_eq!(c.actor.0, DEV_USER);
    assert_eq!(c.credential.as_deref(), Some(credential.as_str()));
    assert_eq!(
        (
            streamed[0].bytes_in,
            streamed[0].bytes_out,
            streamed[0].exit_code
        ),
        (
            STDIN.iter().map(|f| f.len() as u64).sum(),
            payload_len(&frames),
            Some(0)
        ),
        "StreamClosed: stdin bytes, output bytes (the marker line included), exit code"
    );
}

/// `convox logs -a x` (A.5): `GET /machines`, then the log socket with the captured handshake;
/// the log through the gateway is the rack's own, frame for frame, the rack gets the socket as
/// the authenticated user with the CLI's `Prefix`, and the log holds both decisions and the
/// stream's byte counts (nothing in, the log's bytes out, no exit code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convox_logs_is_relayed_and_recorded() {
    let path = "/apps/x/logs";
    let options = [("Prefix", "true")];
    assert_eq!(
        String::from_utf8(Cli::new("127.0.0.1:18080", CAPTURED_AUTH).websocket(
            path,
            APP_LOGS_KEY,
            &options
        ))
        .unwrap(),
        CAPTURED_LOGS,
        "the handshake is written as the CLI writes it"
    );

    let s = Session::start().await;
    s.replay(Step::get("/machines?")).await;
    let (socket, frames) = stream(&s, path, APP_LOGS_KEY, &options).await;
    drop(socket);

    assert_eq!(targets(&s.gw.rack().received()), [format!("GET {path}")]);
    let got = upgrades(s.gw.rack());
    let direct = upgrades(s.reference());
    assert_eq!((got.len(), direct.len()), (1, 1));
    assert_forwarded_upgrade(
        &got[0],
        &direct[0],
        s.gw.rack(),
        &s.gw.cli(),
        path,
        &options,
    );

    streams_closed(&s.gw, 1).await;
    let finished = s.finish().await;
    let events = &finished.events;
    assert_eq!(
        decisions(events),
        [
            "GET /machines Allow answered_locally -".to_owned(),
            format!("GET {path} Allow - {LOG_READ}"),
        ]
    );
    let streamed = streams(events, path);
    assert_eq!(streamed.len(), 1);
    assert_eq!(
        requested(streamed[0].requested).unwrap().params,
        [("Prefix".to_owned(), "true".to_owned())]
    );
    assert_eq!(
        (
            streamed[0].bytes_in,
            streamed[0].bytes_out,
            streamed[0].exit_code
        ),
        (0, payload_len(&frames), None)
    );
}
