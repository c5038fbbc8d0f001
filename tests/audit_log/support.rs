//! What the audit-log tests share: realistic events, appending them concurrently, the two
//! binaries under test, and running a command under a deadline.
//!
//! **Invariant:** nothing here sleeps; every wait is bounded by a deadline and fails with the
//! command line and its output, so a hung child can never hang the test binary.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use events::event::{
    AuthMethod, CommandCompleted, CommandRequested, Decision, Event, Permission, Principal,
    RequestId, Role, TokenId,
};
use events::hash::{self, Hash};
use events::store::{CheckpointPolicy, EventStore};
use events::time::Timestamp;
use rack_gateway::store::Store;

#[path = "../common/workspace_bin.rs"]
mod workspace_bin;

/// The origin (and checkpoint key name) of every log these tests create.
pub const ORIGIN: &str = "audit-log.test/log";

/// Checkpoints every `every` records and never on a timer, so segment boundaries depend only on
/// the appends (an hour is far beyond any test).
pub fn policy(every: u64) -> CheckpointPolicy {
    CheckpointPolicy {
        every,
        after: Duration::from_secs(3600),
        heartbeat: Duration::from_secs(3600),
    }
}

/// A multi-threaded runtime for driving the store from a plain `#[test]`.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// === Events ===

const ROLES: [Role; 4] = [Role::Viewer, Role::Ops, Role::Deployer, Role::Admin];

/// Event number `k` of a gateway's day: mostly proxied calls and their completions, with role
/// changes and token lifecycle mixed in. A pure function of `k`.
pub fn event(k: u64) -> Event {
    let admin = Principal("admin@acme-corp.example".to_owned());
    let block = k / 100;
    match k % 100 {
        0 => Event::RoleGranted {
            user: user(block),
            role: ROLES[(block % 4) as usize],
            by: admin,
        },
        50 => Event::RoleRevoked {
            user: user(block + 7),
            role: ROLES[(block % 4) as usize],
            by: admin,
        },
        25 => Event::TokenCreated {
            token: token_id(block),
            name: format!("ci-deploy-{block}"),
            owner: user(block),
            scopes: vec![Permission("convox:release:create".to_owned())],
            secret_sha256: hash::object_digest(&k.to_be_bytes()),
            expires: Some(Timestamp(4_102_444_800_000_000_000)),
            dev_only: false,
            by: admin,
            by_token: None,
        },
        75 => Event::TokenRevoked {
            token: token_id(block.saturating_sub(3)),
            by: admin,
            reason: "rotated".to_owned(),
        },
        n if n % 2 == 1 => command_completed(k - 1),
        _ => command_requested(k),
    }
}

/// A proxied `POST /apps/<app>/releases`, secrets already replaced by HMACs.
pub fn command_requested(k: u64) -> Event {
    let denied = k % 46 == 12;
    Event::CommandRequested(Box::new(CommandRequested {
        request: RequestId(format!("req_{k:022}")),
        actor: user(k),
        auth: AuthMethod::Session,
        credential: Some(format!("sess_{:016x}", mix(k))),
        client_ip: format!("10.{}.{}.{}", (k >> 16) & 0xff, (k >> 8) & 0xff, k & 0xff),
        user_agent: "convox/3.19.4 (linux/amd64) go1.22.5".to_owned(),
        method: "POST".to_owned(),
        path: format!("/apps/app-{}/releases", k % 37),
        permission: Some(Permission("convox:release:create".to_owned())),
        decision: if denied {
            Decision::Deny
        } else {
            Decision::Allow
        },
        reason: if denied {
            "role viewer lacks convox:release:create".to_owned()
        } else {
            String::new()
        },
        params: vec![
            ("env".to_owned(), hmac(k, 1)),
            ("build_args".to_owned(), hmac(k, 2)),
        ],
    }))
}

/// The completion of `command_requested(k)`.
pub fn command_completed(k: u64) -> Event {
    Event::CommandCompleted(Box::new(CommandCompleted {
        request: RequestId(format!("req_{k:022}")),
        status: 200,
        duration_ns: 3_000_000 + mix(k) % 400_000_000,
        bytes_in: 512 + mix(k ^ 1) % 65_536,
        bytes_out: 256 + mix(k ^ 2) % 4_096,
        sha256_in: Some(hash::object_digest(&mix(k ^ 3).to_be_bytes())),
        sha256_out: Some(hash::object_digest(&mix(k ^ 4).to_be_bytes())),
        failure: None,
    }))
}

fn user(k: u64) -> Principal {
    Principal(format!("user{:02}@acme-corp.example", k % 64))
}

fn token_id(n: u64) -> TokenId {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&mix(n).to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    TokenId(id)
}

fn hmac(k: u64, salt: u64) -> String {
    format!(
        "hmac-sha256:{}",
        hash::object_digest(&[k.to_be_bytes(), salt.to_be_bytes()].concat()).to_hex()
    )
}

/// SplitMix64, to make values look random while staying a function of `k`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Appends `batches` batches of `batch` events from `tasks` concurrent tasks, numbering events
/// from `from`. Returns the leaf hash of every appended record by seq.
pub async fn append_concurrently(
    store: &Arc<Store>,
    from: u64,
    batches: u64,
    batch: u64,
    tasks: u64,
) -> Vec<(u64, Hash)> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for b in (t..batches).step_by(tasks as usize) {
                let first = from + b * batch;
                let events = (first..first + batch).map(event).collect();
                let a = store.append(events).await.expect("append");
                acked.extend((a.first.0..).zip(a.hashes));
            }
            acked
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("appender task"));
    }
    all.sort();
    all
}

// === Binaries ===

/// The gateway binary, built by cargo for this test target.
pub fn rack_gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rack-gateway"))
}

/// The auditor's verifier. It lives in another package, so it is not a `CARGO_BIN_EXE` of this
/// one: it is found beside this test binary (`<target>/<profile>/rack-audit`). It is built there
/// with the same target dir and profile once per run before use, which is a no-op when it is up
/// to date and builds it when it is missing, so a stale binary is never what gets tested.
pub fn rack_audit() -> Command {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    Command::new(PATH.get_or_init(|| workspace_bin::build("rack-audit")))
}

/// Runs `cmd` to completion, failing the test (after killing it) if it outlives `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let (tx, rx) = mpsc::channel();
    let pipes: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().expect("stdout")),
        Box::new(child.stderr.take().expect("stderr")),
    ];
    for (i, mut pipe) in pipes.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send((i, buf));
        });
    }
    drop(tx);
    let deadline = Instant::now() + limit;
    let mut outputs = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, buf)) => outputs[i] = buf,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{shown} did not finish within {limit:?}");
            }
        }
    }
    let status = child.wait().expect("wait");
    let [stdout, stderr] = outputs;
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create_dir_all");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
