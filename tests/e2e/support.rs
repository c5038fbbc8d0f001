//! The harness: `TestGateway` (a dev gateway on a temporary data directory, port 0 listeners,
//! `mock-rack` linked in), a raw HTTP/1.1 client that writes exactly the bytes it is given, the
//! convox CLI's request and WebSocket handshake shapes (spec §1.2, §4.1, Appendix A), a
//! WebSocket client on `mock-rack`'s codec, identity changes through `identity::admin`, and the
//! log, read live from the store or from the file after the stop.
//!
//! **Invariant:** nothing is added to a request behind the test's back; every network read and
//! every wait for the log has a deadline and fails with what it was waiting for.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use events::event::{
    CommandCompleted, CommandRequested, Event, Permission, Principal, Role, TokenId,
};
use events::record::{self, Record};
use events::store::EventStore;
use events::store::redb::LogReader;
use events::time::{Clock, Timestamp};
use events::verify::{self, DirSource, KeyTrust, Quiet};
use mock_rack::MockRack;
use mock_rack::ws::{Frame, Opcode, Role as WsRole, WsReader, WsWriter};
use rack_gateway::identity::admin::{self, TokenRequest};
use rack_gateway::keys::Keys;
use rack_gateway::server::dev::{self, DevOptions, Running};
use rack_gateway::store::{self as gateway_store, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[path = "../common/eventually.rs"]
mod eventually;
pub use eventually::eventually_within;

/// How long any single read, or any wait for the log, may take.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// The password of the reference racks; the CLI captures used `RACK_URL=http://convox:TOKEN123@…`.
pub const REFERENCE_PASSWORD: &str = "TOKEN123";
/// `Authorization` exactly as captured: `Basic base64("convox:TOKEN123")` (spec Appendix A).
pub const CAPTURED_AUTH: &str = "Basic Y29udm94OlRPS0VOMTIz";
/// Who the tests' identity changes are made by.
pub const BY: &str = "system";

/// A dev gateway under test.
pub struct TestGateway {
    dir: tempfile::TempDir,
    running: Running,
}

/// What is left once a gateway stopped: its whole log, read from the file, and its directories.
pub struct Finished {
    pub events: Vec<Record>,
    /// The data directory, kept for checks on its files.
    pub data: tempfile::TempDir,
    pub export: tempfile::TempDir,
}

impl Finished {
    /// The records from `seq` on, read after the stop (which flushes what was queued).
    pub fn since(&self, seq: u64) -> Vec<Record> {
        self.events
            .iter()
            .filter(|r| r.seq.0 >= seq)
            .cloned()
            .collect()
    }
}

/// A token created for a test.
#[derive(Debug, Clone)]
pub struct Issued {
    pub id: TokenId,
    pub secret: String,
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A request body as the CLI sends it (spec §1.3).
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// No body: `Content-Type: application/octet-stream`, `Content-Length: 0` on POST and PUT.
    Empty,
    /// `application/x-www-form-urlencoded`.
    Form(&'a str),
    /// Raw `application/octet-stream` bytes.
    Raw(&'a [u8]),
}

/// Builds requests exactly as the convox CLI writes them to one host with one credential.
#[derive(Debug, Clone)]
pub struct Cli {
    host: String,
    authorization: String,
}

// === impl TestGateway ===

impl TestGateway {
    /// A fresh dev gateway on its own data directory.
    pub async fn start() -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let running = dev::start(&options(dir.path())).await.unwrap();
        TestGateway { dir, running }
    }

    /// A dev gateway whose networks may each send `per_minute` requests a minute.
    pub async fn start_limited(per_minute: u32) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let options = DevOptions {
            per_ip_per_minute: per_minute,
            ..options(dir.path())
        };
        let running = dev::start(&options).await.unwrap();
        TestGateway { dir, running }
    }

    /// A dev gateway on a store the test opened itself in `dir` (fault injection).
    pub async fn start_on(dir: tempfile::TempDir, store: Store, keys: Keys) -> TestGateway {
        let running = dev::start_with(&options(dir.path()), store, keys)
            .await
            .unwrap();
        TestGateway { dir, running }
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    pub fn proxy(&self) -> SocketAddr {
        self.running.proxy
    }

    /// The dev admin token `dev` created at start.
    pub fn token(&self) -> &str {
        &self.running.token
    }

    pub fn rack(&self) -> &MockRack {
        &self.running.rack
    }

    pub fn store(&self) -> &Store {
        &self.running.store
    }

    /// The number of records in the log now.
    pub fn head(&self) -> u64 {
        self.store().head().size
    }

    /// The audit key secret values are HMAC'd with.
    pub fn keys(&self) -> Keys {
        Keys::load(self.data()).unwrap()
    }

    /// The CLI, pointed at the gateway with the dev token.
    pub fn cli(&self) -> Cli {
        self.cli_as(self.token())
    }

    /// The CLI, pointed at the gateway with `token` (`RACK_URL=http://convox:<token>@…`).
    pub fn cli_as(&self, token: &str) -> Cli {
        Cli::new(
            &self.proxy().to_string(),
            &basic(&format!("convox:{token}")),
        )
    }

    /// Writes exactly `bytes` to the proxy on a fresh connection and reads one response.
    pub async fn send_raw(&self, bytes: impl AsRef<[u8]>) -> Reply {
        send_to(self.proxy(), bytes).await
    }

    /// Every record of the log, read through the store.
    pub async fn events(&self) -> Vec<Record> {
        self.events_since(0).await
    }

    /// The records from `seq` on.
    pub async fn events_since(&self, seq: u64) -> Vec<Record> {
        self.store()
            .read(seq..u64::MAX)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.record)
            .collect()
    }

    /// The id of the token whose secret is `secret`, as `CommandRequested` records it.
    pub fn token_id(&self, secret: &str) -> String {
        let hash = rack_gateway::identity::token::TokenSecret::parse(secret)
            .unwrap()
            .sha256();
        self.store().with_state(|s| {
            s.tokens
                .iter()
                .find(|t| t.secret_sha256 == hash)
                .map(|t| t.id.to_hex())
                .unwrap()
        })
    }

    /// Grants `role` to `email` unless they hold it.
    pub async fn grant(&self, email: &str, role: Role) {
        let user = Principal(email.to_owned());
        if self
            .store()
            .with_state(|s| s.identities.roles(&user).contains(&role))
        {
            return;
        }
        admin::grant_role(self.store(), user, role, Principal(BY.into()))
            .await
            .unwrap();
    }

    pub async fn revoke_role(&self, email: &str, role: Role) {
        admin::revoke_role(
            self.store(),
            Principal(email.to_owned()),
            role,
            Principal(BY.into()),
        )
        .await
        .unwrap();
    }

    /// Disables `email`: `UserDisabled` appended through the store.
    pub async fn disable(&self, email: &str) {
        self.store()
            .append(vec![Event::UserDisabled {
                user: Principal(email.to_owned()),
                by: Principal(BY.into()),
                reason: "e2e: left the company".into(),
            }])
            .await
            .unwrap();
    }

    /// Creates a token for `email` with `scopes` and an optional expiry.
    pub async fn issue(&self, email: &str, scopes: &[&str], expires: Option<Timestamp>) -> Issued {
        let created = admin::create_token(
            self.store(),
            TokenRequest {
                name: "e2e".into(),
                owner: Principal(email.to_owned()),
                scopes: scopes.iter().map(|s| Permission((*s).to_owned())).collect(),
                expires,
                dev_only: false,
                by: Principal(BY.into()),
            },
        )
        .await
        .unwrap();
        Issued {
            id: created.id,
            secret: created.secret.expose().to_owned(),
        }
    }

    /// Creates a token for `email` with `scopes` as the gateway API does when called with the
    /// token `with` (recorded as made with it, by its owner).
    pub async fn issue_made_with(&self, email: &str, scopes: &[&str], with: TokenId) -> Issued {
        let caller = self
            .store()
            .with_state(|s| s.tokens.get(&with).cloned())
            .expect("the calling token exists");
        let intent = rack_gateway::identity::TokenCall {
            request_id: "e2e-create",
            token: &caller,
            ip: std::net::IpAddr::from([127, 0, 0, 1]),
            user_agent: "e2e",
        }
        .requested(
            "POST",
            "/api/v1/tokens",
            None,
            events::event::Decision::Allow,
            "",
            Vec::new(),
        );
        let created = admin::create_token_as(
            self.store(),
            TokenRequest {
                name: "e2e".into(),
                owner: Principal(email.to_owned()),
                scopes: scopes.iter().map(|s| Permission((*s).to_owned())).collect(),
                expires: None,
                dev_only: false,
                by: caller.owner.clone(),
            },
            &caller,
            Clock.now(),
            intent,
        )
        .await
        .unwrap();
        Issued {
            id: created.id,
            secret: created.secret.expose().to_owned(),
        }
    }

    /// Grants `role` to `email` and creates a token for them with `scopes`.
    pub async fn token_for(&self, email: &str, role: Role, scopes: &[&str]) -> Issued {
        self.grant(email, role).await;
        self.issue(email, scopes, None).await
    }

    pub async fn revoke_token(&self, id: TokenId) {
        admin::revoke_token(self.store(), id, Principal(BY.into()), "e2e".into())
            .await
            .unwrap();
    }

    /// Sends `request` with token `id`, and revokes the token once the rack has taken the
    /// gateway's lookup for the call, whose answer the rack holds back meanwhile.
    pub async fn revoke_during_lookup(&self, id: TokenId, request: Vec<u8>) -> RevokedDuringLookup {
        let since = self.head();
        let before = self.rack().received().len();
        self.rack().set_answer_delay(Duration::from_millis(1500));
        let call = tokio::spawn(send_to(self.proxy(), request));
        eventually("the lookup at the rack", || async {
            (self.rack().received().len() > before).then_some(())
        })
        .await;
        self.revoke_token(id).await;
        let reply = call.await.unwrap();
        self.rack().set_answer_delay(Duration::ZERO);
        let sent = self.rack().received()[before..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.target))
            .collect();
        let decided = requested_paths(&self.events_since(since).await)
            .into_iter()
            .map(|(_, reason, decision)| (reason, decision))
            .collect();
        RevokedDuringLookup {
            reply,
            sent,
            decided,
        }
    }

    /// Polls the log until the call answered with `request_id` has its `CommandCompleted`;
    /// returns the one `CommandRequested` and the one `CommandCompleted` of that call.
    pub async fn call_records(&self, since: u64, request_id: &str) -> (Record, Record) {
        let completed = eventually(&format!("CommandCompleted of {request_id}"), || async {
            let events = self.events_since(since).await;
            let done: Vec<&Record> = events
                .iter()
                .filter(|r| completed(r).is_some_and(|c| c.request.0 == request_id))
                .collect();
            (!done.is_empty()).then(|| events.clone())
        })
        .await;
        let requested: Vec<&Record> = completed_filter(&completed, request_id, true);
        let done: Vec<&Record> = completed_filter(&completed, request_id, false);
        assert_eq!(requested.len(), 1, "CommandRequested of {request_id}");
        assert_eq!(done.len(), 1, "CommandCompleted of {request_id}");
        (requested[0].clone(), done[0].clone())
    }

    /// Stops the gateway and starts `dev` again on the same data directory.
    pub async fn restart(self) -> TestGateway {
        let TestGateway { dir, running } = self;
        running.stop().await;
        let log = gateway_store::log_path(dir.path());
        eventually("the stopped gateway to close its store", || async {
            LogReader::open(&log).ok().map(drop)
        })
        .await;
        let running = dev::start(&options(dir.path())).await.unwrap();
        TestGateway { dir, running }
    }

    /// Stops the gateway (which flushes the counted denials), reads the whole log from the
    /// file, exports the data directory and verifies the export pinned to the directory's key.
    pub async fn finish(self) -> Finished {
        let TestGateway { dir, running } = self;
        let keys = Keys::load(dir.path()).unwrap();
        running.stop().await;
        let log = gateway_store::log_path(dir.path());
        // The file is readable once the last task holding the store has let go of it.
        let reader = eventually("the stopped gateway to close its store", || async {
            LogReader::open(&log).ok()
        })
        .await;
        let size = reader.len().unwrap();
        let events: Vec<Record> = reader
            .read_raw(0..size)
            .unwrap()
            .into_iter()
            .map(|(_, bytes)| record::decode(&bytes).unwrap().record)
            .collect();
        drop(reader);
        assert_eq!(events.len() as u64, size);
        let export = tempfile::tempdir().unwrap();
        let written = rack_gateway::export::export_local(&log, export.path()).unwrap();
        assert_eq!(written.records, size, "every record exported");
        let summary = verify::verify_export(
            &DirSource::new(export.path()),
            Some(&keys.vkey()),
            &mut Quiet,
        )
        .unwrap_or_else(|e| panic!("the export of the test's data does not verify: {e}"));
        assert_eq!(summary.records, size);
        assert_eq!(summary.trust, KeyTrust::Pinned);
        assert_eq!(summary.signed_size, size, "the stop sealed the log");
        Finished {
            events,
            data: dir,
            export,
        }
    }
}

fn options(data: &Path) -> DevOptions {
    DevOptions {
        data: data.to_owned(),
        proxy: SocketAddr::from(([127, 0, 0, 1], 0)),
        console: SocketAddr::from(([127, 0, 0, 1], 0)),
        per_ip_per_minute: dev::DEV_PER_IP_PER_MINUTE,
        rack_runtime: None,
    }
}

fn completed_filter<'a>(events: &'a [Record], id: &str, want_requested: bool) -> Vec<&'a Record> {
    events
        .iter()
        .filter(|r| {
            if want_requested {
                requested(r).is_some_and(|c| c.request.0 == id)
            } else {
                completed(r).is_some_and(|c| c.request.0 == id)
            }
        })
        .collect()
}

// === The log ===

pub fn requested(r: &Record) -> Option<&CommandRequested> {
    match &r.event {
        Event::CommandRequested(c) => Some(c),
        _ => None,
    }
}

/// What [`TestGateway::revoke_during_lookup`] saw: the reply, each request the rack got from
/// the call on (`METHOD target`), and each `CommandRequested` since as (reason, decision).
pub struct RevokedDuringLookup {
    pub reply: Reply,
    pub sent: Vec<String>,
    pub decided: Vec<(String, String)>,
}

/// Each `CommandRequested` of `records` as (path, reason, decision), in log order.
pub fn requested_paths(records: &[Record]) -> Vec<(String, String, String)> {
    records
        .iter()
        .filter_map(requested)
        .map(|c| {
            (
                c.path.clone(),
                c.reason.clone(),
                format!("{:?}", c.decision),
            )
        })
        .collect()
}

/// A rack call the gateway made itself to check a caller's call (a build's record before its
/// log socket, the current env before restoring masked values): recorded under the caller's
/// credential, with request id `<caller's>.<suffix>` and reason `*_lookup`. It is not a request
/// the test sent.
pub fn is_lookup(c: &CommandRequested) -> bool {
    c.reason.ends_with("_lookup") && c.request.0.contains('.')
}

pub fn completed(r: &Record) -> Option<&CommandCompleted> {
    match &r.event {
        Event::CommandCompleted(c) => Some(c),
        _ => None,
    }
}

/// `(ip, reason, count)` of every `DenialsCounted`.
pub fn denials(events: &[Record]) -> Vec<(String, String, u64)> {
    events
        .iter()
        .filter_map(|r| match &r.event {
            Event::DenialsCounted {
                ip, reason, count, ..
            } => Some((ip.clone(), reason.clone(), *count)),
            _ => None,
        })
        .collect()
}

/// Polls `f` until it returns `Some`, failing after [`DEADLINE`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(DEADLINE, what, f).await
}

// === The wire ===

/// `Basic base64(userinfo)`, as the CLI builds it from `RACK_URL` (spec §2.1).
pub fn basic(userinfo: &str) -> String {
    format!("Basic {}", STANDARD.encode(userinfo))
}

/// Writes exactly `bytes` to `addr` on a fresh connection and reads one response.
pub async fn send_to(addr: SocketAddr, bytes: impl AsRef<[u8]>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A server may answer and close before reading all of a refused request: the answer
    // matters, not the failed write.
    let written = stream.write_all(bytes.as_ref()).await;
    read_reply(&mut stream).await.unwrap_or_else(|| {
        panic!("{addr} closed the connection without answering (write: {written:?})")
    })
}

/// Reads one response: the head, then a `Content-Length`, chunked or read-to-close body.
/// `None` when the peer closed (or reset) before a complete head.
pub async fn read_reply(stream: &mut TcpStream) -> Option<Reply> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if !fill(stream, &mut buf).await {
            return None;
        }
    };
    let mut reply = parse_head(&buf[..head_end]);
    let status = reply.status;
    let mut rest = buf.split_off(head_end);
    if status < 200 || status == 204 || status == 304 {
        return Some(reply);
    }
    if reply
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        reply.body = read_chunked(stream, rest).await;
    } else if let Some(len) = reply.header("content-length") {
        let len: usize = len.parse().unwrap();
        while rest.len() < len {
            assert!(fill(stream, &mut rest).await, "closed inside the body");
        }
        assert_eq!(rest.len(), len, "bytes after the body");
        reply.body = rest;
    } else {
        while fill(stream, &mut rest).await {}
        reply.body = rest;
    }
    Some(reply)
}

/// A response head (status line and headers, up to the empty line), as a body-less `Reply`.
fn parse_head(head: &[u8]) -> Reply {
    let head = std::str::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    // HTTP/1.1, or 1.0 in answer to a request sent as 1.0.
    assert!(
        status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 "),
        "{status_line}"
    );
    let status: u16 = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: Vec::new(),
    }
}

async fn read_chunked(stream: &mut TcpStream, mut buf: Vec<u8>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            assert!(fill(stream, &mut buf).await, "closed inside a chunk size");
        };
        let line = std::str::from_utf8(&buf[..line_end]).unwrap();
        let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
        buf.drain(..line_end + 2);
        if size == 0 {
            // No trailers are expected: the last chunk is followed by an empty line.
            while buf.len() < 2 {
                assert!(fill(stream, &mut buf).await, "closed before the end");
            }
            return body;
        }
        while buf.len() < size + 2 {
            assert!(fill(stream, &mut buf).await, "closed inside a chunk");
        }
        body.extend_from_slice(&buf[..size]);
        assert_eq!(&buf[size..size + 2], b"\r\n");
        buf.drain(..size + 2);
    }
}

/// Reads more bytes into `buf`; `false` on end of stream or reset.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(DEADLINE, stream.read(&mut chunk)).await {
        Ok(Ok(0)) | Ok(Err(_)) => false,
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(_) => panic!("no bytes within {DEADLINE:?}"),
    }
}

// === WebSockets ===

/// A WebSocket as the CLI holds one: the answer to its upgrade request, then frames both ways.
pub struct Socket {
    /// The status and headers of the answer to the upgrade (no body is read).
    pub head: Reply,
    pub reader: WsReader<OwnedReadHalf>,
    pub writer: WsWriter<OwnedWriteHalf>,
}

/// Writes exactly `request` (an upgrade request) to `addr` on a fresh connection and reads the
/// answer's head byte by byte, so that no frame sent right behind it is consumed.
pub async fn open_socket(addr: SocketAddr, request: impl AsRef<[u8]>) -> Socket {
    open_socket_within(addr, request, DEADLINE).await
}

/// As [`open_socket`], waiting up to `deadline` for each byte of the answer's head.
pub async fn open_socket_within(
    addr: SocketAddr,
    request: impl AsRef<[u8]>,
    deadline: Duration,
) -> Socket {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_ref()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(deadline, tcp.read(&mut b))
            .await
            .unwrap_or_else(|_| panic!("no answer to the upgrade within {deadline:?}"))
            .unwrap();
        assert!(
            n == 1,
            "{addr} closed before answering the upgrade: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let (r, w) = tcp.into_split();
    Socket {
        head: parse_head(&head),
        reader: WsReader::new(r, WsRole::Client),
        writer: WsWriter::new(w, WsRole::Client),
    }
}

/// The next frame, control frames included; `None` when the connection ended between frames.
pub async fn next_frame(reader: &mut WsReader<OwnedReadHalf>) -> Option<Frame> {
    tokio::time::timeout(DEADLINE, reader.read_frame())
        .await
        .unwrap_or_else(|_| panic!("no frame within {DEADLINE:?}"))
        .unwrap()
}

/// Reads frames until the empty binary frame (EOF); returns the data frames before it, in order.
pub async fn until_eof(reader: &mut WsReader<OwnedReadHalf>) -> Vec<Frame> {
    let mut frames = Vec::new();
    loop {
        let frame = next_frame(reader)
            .await
            .expect("the stream stays open until EOF");
        if frame.opcode == Opcode::Binary && frame.payload.is_empty() {
            return frames;
        }
        if !frame.opcode.is_control() {
            frames.push(frame);
        }
    }
}

/// The payloads of `frames`, joined in order: a stream's data as the caller got it.
pub fn payloads(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.payload.to_vec()).collect()
}

/// Each frame's payload as text (lossy), in order: what the CLI prints of a refusal.
pub fn texts(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect()
}

// === impl Reply ===

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The gateway's request id of this call.
    pub fn request_id(&self) -> String {
        self.header("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id: {self:?}"))
            .to_owned()
    }
}

// === impl Cli ===

impl Cli {
    pub fn new(host: &str, authorization: &str) -> Cli {
        Cli {
            host: host.to_owned(),
            authorization: authorization.to_owned(),
        }
    }

    /// The CLI pointed at a reference rack with the captured credentials.
    pub fn captured(rack: &MockRack) -> Cli {
        Cli::new(&rack.addr().to_string(), CAPTURED_AUTH)
    }

    pub fn authorization(&self) -> &str {
        &self.authorization
    }

    /// A request as Go's client writes it (spec Appendix A): `Host`, `User-Agent`, then
    /// `Content-Length` when there is a body or the method is POST or PUT, then the other
    /// headers sorted by name (`extra` among them), then the transport's `Accept-Encoding`.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        extra: &[(&str, &str)],
        body: Body<'_>,
    ) -> Vec<u8> {
        let (content_type, bytes): (&str, &[u8]) = match body {
            Body::Empty => ("application/octet-stream", b""),
            Body::Form(f) => ("application/x-www-form-urlencoded", f.as_bytes()),
            Body::Raw(b) => ("application/octet-stream", b),
        };
        let mut out = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: convox.go/dev\r\n",
            self.host
        );
        if !bytes.is_empty() || method == "POST" || method == "PUT" {
            out.push_str(&format!("Content-Length: {}\r\n", bytes.len()));
        }
        let mut sorted: Vec<(&str, &str)> = vec![
            ("Accept", "*/*"),
            ("Authorization", &self.authorization),
            ("Content-Type", content_type),
            ("Version", "dev"),
        ];
        sorted.extend_from_slice(extra);
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in sorted {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("Accept-Encoding: gzip\r\n\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(bytes);
        out
    }

    /// A body-less request (spec Appendix A.1).
    pub fn get(&self, target: &str) -> Vec<u8> {
        self.request("GET", target, &[], Body::Empty)
    }

    /// A WebSocket upgrade as the CLI's dialer writes it (spec §4.1, Appendix A.5, A.8, A.9):
    /// `Host`, `User-Agent`, then the other headers sorted by name, the options (`extra`) among
    /// them; no query string, no `Content-Type`, no `Accept-Encoding`, no body.
    pub fn websocket(&self, path: &str, key: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let origin = format!("http://{}", self.host.to_ascii_lowercase());
        let mut out = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: convox.go/dev\r\n",
            self.host
        );
        let mut sorted: Vec<(&str, &str)> = vec![
            ("Authorization", &self.authorization),
            ("Connection", "Upgrade"),
            ("Origin", &origin),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"),
            ("Upgrade", "websocket"),
            ("Version", "dev"),
        ];
        sorted.extend_from_slice(extra);
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in sorted {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// A well-formed token that no one created.
pub fn unknown_token() -> String {
    rack_gateway::identity::token::TokenSecret::generate()
        .unwrap()
        .expose()
        .to_owned()
}

/// A reference rack with the captured password, to compare the gateway's answers with.
pub async fn reference_rack() -> MockRack {
    MockRack::start(SocketAddr::from(([127, 0, 0, 1], 0)), REFERENCE_PASSWORD)
        .await
        .unwrap()
}

/// The path of a data directory's log file.
pub fn log_path(data: &Path) -> PathBuf {
    gateway_store::log_path(data)
}
