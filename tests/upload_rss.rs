//! A 1 GiB object upload streams through `rack-gateway serve` without being buffered: the
//! acceptance bound is a gateway peak RSS (`VmHWM`) under 100 MB for the whole upload.
//!
//! The gateway and the rack are separate processes (`rack-gateway serve` and the `mock-rack`
//! binary), so the figure read from `/proc/<gateway pid>/status` is the gateway's alone; the mock
//! rack keeps the whole object in its own memory, which does not count. The client writes the
//! body as the convox CLI sends an object (`POST /apps/{app}/objects/{key}` with
//! `Content-Length`, spec §3.3 and Appendix A), generating it on the fly. The test also checks
//! that the rack stored exactly the bytes sent (length and SHA-256, read back from the rack
//! directly) and that the gateway's `CommandCompleted` carries the same byte count and digest.
//!
//! `mock-rack` lives in another package, so it is not a `CARGO_BIN_EXE` of this one: it is built
//! beside this test binary with the same target dir and profile (`cargo build -p mock-rack`, a
//! no-op when up to date), as `tests/audit_log` does for `rack-audit`.
#![cfg(target_os = "linux")]
// Test code: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use events::event::{Decision, Event, Permission, Principal, Role};
use events::hash::Hash;
use events::store::CheckpointPolicy;
use rack_gateway::identity::admin::{self, TokenRequest};
use rack_gateway::keys::Keys;
use rack_gateway::store;
use sha2::{Digest, Sha256};

#[path = "common/workspace_bin.rs"]
mod workspace_bin;

/// The upload: 1 GiB, written in 1 MiB chunks.
const CHUNK: usize = 1 << 20;
const CHUNKS: u64 = 1024;
const TOTAL: u64 = CHUNKS * CHUNK as u64;
/// The acceptance bound on the gateway's peak resident set.
const RSS_LIMIT_BYTES: u64 = 100_000_000;
/// Below this, the figure cannot be a running gateway's (a sign of reading the wrong thing).
const RSS_FLOOR_BYTES: u64 = 2 << 20;
/// How long one network read or write, a child's start or its stop may take.
const DEADLINE: Duration = Duration::from_secs(60);
const RACK_PASSWORD: &str = "rack-pw";
const APP: &str = mock_rack::SEED_APP;

// === Processes ===

/// A child process that is killed (and reaped) when dropped, unless it was stopped before.
struct Spawned {
    child: Option<Child>,
    what: &'static str,
}

impl Spawned {
    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits for the exit, failing the test if it takes over `DEADLINE`.
    fn terminate(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id();
        signal("-TERM", pid);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(DEADLINE) {
            Ok(status) => status.expect("waiting for the child"),
            Err(_) => {
                signal("-KILL", pid);
                panic!(
                    "{} (pid {pid}) did not stop within {DEADLINE:?} of SIGTERM",
                    self.what
                );
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Spawns `cmd` (stderr to `stderr_file`) and waits for a stdout line starting with `prefix`,
/// returning the rest of that line. Later stdout lines are drained so the child never blocks.
fn spawn_until_line(
    mut cmd: Command,
    what: &'static str,
    prefix: &'static str,
    stderr_file: &Path,
) -> (Spawned, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr_file).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let spawned = Spawned {
        child: Some(child),
        what,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // Once the wanted line is found nobody listens; the lines are still read.
            let _ = tx.send(line);
        }
    });
    let until = Instant::now() + DEADLINE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return (spawned, rest.to_owned());
                }
            }
            Err(e) => panic!(
                "{what} never printed {prefix:?} ({e:?}); its stderr:\n{}",
                std::fs::read_to_string(stderr_file).unwrap_or_default()
            ),
        }
    }
}

// === Gateway setup ===

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Keys and one token, made offline in `data`: a deployer's token scoped to uploads only.
fn upload_token(data: &Path) -> String {
    Keys::init(data, "upload-rss.test/log").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (store, _) = store::open(data, CheckpointPolicy::default()).unwrap();
        let owner = Principal("ci@example.com".into());
        admin::grant_role(
            &store,
            owner.clone(),
            Role::Deployer,
            Principal("system".into()),
        )
        .await
        .unwrap();
        let token = admin::create_token(
            &store,
            TokenRequest {
                name: "upload".into(),
                owner,
                scopes: vec![Permission("convox:object:create".into())],
                expires: None,
                dev_only: false,
                by: Principal("system".into()),
            },
        )
        .await
        .unwrap();
        store.shutdown();
        token.secret.expose().to_owned()
    })
}

// === HTTP ===

/// A response head: status, headers (lower-case names) and the body bytes read past it.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    rest: Vec<u8>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> u64 {
        self.header("content-length")
            .unwrap_or_else(|| panic!("no Content-Length in {:?}", self.headers))
            .parse()
            .unwrap()
    }
}

fn read_head(stream: &mut TcpStream) -> Head {
    let mut buf = Vec::new();
    let mut block = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut block).expect("reading a response head");
        assert!(
            n > 0,
            "the connection closed before a response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&block[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Head {
        status,
        headers,
        rest: buf[end + 4..].to_vec(),
    }
}

/// Reads a whole (small) `Content-Length` body.
fn read_small_body(stream: &mut TcpStream, head: &Head) -> Vec<u8> {
    let len = usize::try_from(head.content_length()).unwrap();
    assert!(len <= 1 << 20, "a {len}-byte answer is not a small body");
    let mut body = head.rest.clone();
    let mut block = [0u8; 8192];
    while body.len() < len {
        let n = stream.read(&mut block).expect("reading a response body");
        assert!(
            n > 0,
            "the connection closed {} bytes early",
            len - body.len()
        );
        body.extend_from_slice(&block[..n]);
    }
    body.truncate(len);
    body
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream
}

fn basic(password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("convox:{password}")))
}

// === The upload ===

/// SplitMix64, so the body looks random while staying a function of its position.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Chunk `i` of the body: one pseudo-random 1 MiB block with the chunk number in its first 8
/// bytes, so a lost, repeated or reordered chunk changes the digest.
fn fill_chunk(base: &[u8], i: u64, out: &mut [u8]) {
    out.copy_from_slice(base);
    out[..8].copy_from_slice(&i.to_be_bytes());
}

/// What the client sent and got back.
struct Uploaded {
    status: u16,
    body: Vec<u8>,
    sha256: [u8; 32],
}

/// `POST /apps/{app}/objects/{key}?` with `Content-Length` and the CLI's headers (spec Appendix
/// A), the body generated and hashed chunk by chunk as it is written.
fn upload(gateway: SocketAddr, key: &str, token: &str) -> Uploaded {
    let mut stream = connect(gateway);
    let head = format!(
        "POST /apps/{APP}/objects/{key}? HTTP/1.1\r\nHost: {gateway}\r\n\
         User-Agent: convox.go/dev\r\nContent-Length: {TOTAL}\r\nAccept: */*\r\n\
         Authorization: {}\r\nContent-Type: application/octet-stream\r\nVersion: dev\r\n\
         Accept-Encoding: gzip\r\n\r\n",
        basic(token)
    );
    stream.write_all(head.as_bytes()).unwrap();
    let base: Vec<u8> = (0..CHUNK as u64 / 8)
        .flat_map(|k| mix(k).to_le_bytes())
        .collect();
    let mut chunk = vec![0u8; CHUNK];
    let mut sha = Sha256::new();
    for i in 0..CHUNKS {
        fill_chunk(&base, i, &mut chunk);
        sha.update(&chunk);
        if let Err(e) = stream.write_all(&chunk) {
            // The gateway may have answered early (a refusal): show that answer.
            let answer = read_head(&mut stream);
            panic!(
                "writing chunk {i} failed ({e}); the gateway answered {} {:?}",
                answer.status, answer.headers
            );
        }
    }
    let answer = read_head(&mut stream);
    let body = read_small_body(&mut stream, &answer);
    Uploaded {
        status: answer.status,
        body,
        sha256: sha.finalize().into(),
    }
}

/// Reads the object back from the rack itself (not through the gateway): its length and SHA-256.
fn fetch_from_rack(rack: SocketAddr, key: &str) -> (u64, [u8; 32]) {
    let mut stream = connect(rack);
    let req = format!(
        "GET /apps/{APP}/objects/{key}? HTTP/1.1\r\nHost: {rack}\r\nAuthorization: {}\r\n\
         Connection: close\r\n\r\n",
        basic(RACK_PASSWORD)
    );
    stream.write_all(req.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert_eq!(head.status, 200, "the rack has no object {key}");
    let len = head.content_length();
    let mut sha = Sha256::new();
    sha.update(&head.rest);
    let mut got = head.rest.len() as u64;
    let mut block = vec![0u8; CHUNK];
    while got < len {
        let n = stream
            .read(&mut block)
            .expect("reading the object from the rack");
        assert!(n > 0, "the rack's answer ended {} bytes early", len - got);
        sha.update(&block[..n]);
        got += n as u64;
    }
    assert_eq!(got, len, "the rack sent more than its Content-Length");
    (len, sha.finalize().into())
}

// === /proc ===

/// A field of `/proc/<pid>/status` in bytes (`VmHWM:   12345 kB`).
fn proc_status_bytes(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc status:\n{status}"));
    let kb: u64 = line
        .trim()
        .strip_suffix(" kB")
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field}: {line:?} is not `<n> kB`"));
    kb * 1024
}

/// The gateway's `/proc/<pid>/status`, after checking the pid is still the gateway's.
fn gateway_status(gateway: &Spawned) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gateway.pid())).unwrap();
    let name = status
        .lines()
        .find_map(|l| l.strip_prefix("Name:"))
        .map(str::trim);
    assert_eq!(
        name,
        Some("rack-gateway"),
        "pid {} is not the gateway",
        gateway.pid()
    );
    status
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

// === The test ===

#[test]
fn a_one_gib_object_upload_streams_through_the_gateway_under_100_mb_of_rss() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let mut rack_cmd = Command::new(workspace_bin::build("mock-rack"));
    rack_cmd.args(["--listen", "127.0.0.1:0", "--password", RACK_PASSWORD]);
    let (rack, rack_url) = spawn_until_line(
        rack_cmd,
        "mock-rack",
        "listening on http://",
        &dir.path().join("mock-rack.stderr"),
    );
    let rack_addr: SocketAddr = rack_url.parse().unwrap();

    let token = upload_token(&data);
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "data = {data:?}\n[proxy]\nlisten = \"127.0.0.1:0\"\n\
             [console]\nlisten = \"127.0.0.1:{}\"\n[rack]\nurl = \"http://{rack_addr}\"\n",
            free_port(),
        ),
    )
    .unwrap();
    let mut gateway_cmd = Command::new(env!("CARGO_BIN_EXE_rack-gateway"));
    gateway_cmd
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RACK_GATEWAY_RACK_PASSWORD", RACK_PASSWORD);
    let (gateway, proxy) = spawn_until_line(
        gateway_cmd,
        "rack-gateway serve",
        "rack proxy: http://",
        &dir.path().join("gateway.stderr"),
    );
    let proxy: SocketAddr = proxy.parse().unwrap();
    let before = proc_status_bytes(&gateway_status(&gateway), "VmHWM");
    let setup = started.elapsed();

    // The CLI's key shape: tmp/<30 hex>.tgz.
    let key = format!(
        "tmp/{:030x}.tgz",
        (u128::from(mix(7)) << 56) | u128::from(mix(8))
    );
    let upload_started = Instant::now();
    let sent = upload(proxy, &key, &token);
    let upload_time = upload_started.elapsed();
    assert_eq!(
        sent.status,
        200,
        "the upload was refused: {}",
        String::from_utf8_lossy(&sent.body)
    );
    let answer: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        answer["Url"],
        format!("object://{APP}/{key}"),
        "the rack's answer comes back: {answer}"
    );

    // The gateway's peak resident set over its whole life so far, upload included.
    let status = gateway_status(&gateway);
    let hwm = proc_status_bytes(&status, "VmHWM");
    let rss = proc_status_bytes(&status, "VmRSS");
    eprintln!(
        "gateway VmHWM: {:.1} MiB before the upload, {:.1} MiB after ({hwm} bytes; VmRSS now \
         {:.1} MiB); 1 GiB upload took {upload_time:.2?}",
        mib(before),
        mib(hwm),
        mib(rss)
    );
    assert!(
        hwm >= RSS_FLOOR_BYTES && hwm >= rss && hwm >= before,
        "implausible reading for a running gateway: VmHWM {hwm}, VmRSS {rss}, before {before}"
    );
    assert!(
        hwm < RSS_LIMIT_BYTES,
        "the gateway's peak RSS was {hwm} bytes ({:.1} MiB) for a 1 GiB upload; the bound is \
         {RSS_LIMIT_BYTES} bytes",
        mib(hwm)
    );

    // The rack holds exactly what was sent.
    let verify_started = Instant::now();
    let (stored_len, stored_sha) = fetch_from_rack(rack_addr, &key);
    assert_eq!(stored_len, TOTAL, "the rack stored {stored_len} bytes");
    assert_eq!(
        hex::encode(stored_sha),
        hex::encode(sent.sha256),
        "the rack stored other bytes than were sent"
    );
    let verify_time = verify_started.elapsed();

    // Stop the gateway (it closes its store) and read what it recorded.
    let exit = gateway.terminate();
    assert!(exit.success(), "the gateway exited with {exit}");
    drop(rack);
    let reader = events::store::redb::LogReader::open(&store::log_path(&data)).unwrap();
    let mut requested = Vec::new();
    let mut completed = Vec::new();
    reader
        .for_each_raw(0..u64::MAX, |_, b| {
            match events::record::decode(b).unwrap().record.event {
                Event::CommandRequested(r) => requested.push(*r),
                Event::CommandCompleted(c) => completed.push(*c),
                _ => {}
            }
            Ok(())
        })
        .unwrap();
    let path = format!("/apps/{APP}/objects/{key}");
    let uploads: Vec<_> = requested
        .iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .collect();
    assert_eq!(uploads.len(), 1, "one upload recorded: {requested:?}");
    let request = uploads[0];
    assert_eq!(request.decision, Decision::Allow);
    assert_eq!(
        request.permission,
        Some(Permission("convox:object:create".into()))
    );
    let done: Vec<_> = completed
        .iter()
        .filter(|c| c.request == request.request)
        .collect();
    assert_eq!(done.len(), 1, "one completion of the upload: {completed:?}");
    let done = done[0];
    assert_eq!(done.status, 200);
    assert_eq!(done.bytes_in, TOTAL, "recorded bytes in");
    assert_eq!(
        done.sha256_in,
        Some(Hash(sent.sha256)),
        "the recorded SHA-256 is the streamed body's"
    );
    assert_eq!(done.bytes_out, sent.body.len() as u64, "recorded bytes out");
    eprintln!(
        "setup {setup:.2?}, upload {upload_time:.2?}, read-back from the rack {verify_time:.2?}, \
         total {:.2?}",
        started.elapsed()
    );
}
