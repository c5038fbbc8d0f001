//! Crash safety of the embedded store: SIGKILL at random moments while eight appenders run, then
//! reopen and check that nothing acknowledged was lost or changed, that the chain and every
//! checkpoint still verify, and that appends continue at the head.
//!
//! The test binary is its own child: with `RACK_CRASH_CHILD=<dir>` set, `crash_child` opens the
//! store in `<dir>` and appends until killed, printing `ACK <seq> <leaf hash>` (flushed) for each
//! record of each append that resolved `Ok`, which the store promises only once it is durable.
//!
//! **Invariant:** an `ACK` line is written only after its append resolved, so every seq the
//! parent read before the kill must be on disk with the same hash afterwards.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use events::checkpoint::VerifierKey;
use events::export;
use events::hash::{self, Hash};
use events::store::EventStore;
use events::store::redb::{Options, RedbStore};
use events::time::Clock;
use events::verify::{self, KeyTrust, Quiet};
use projections::Projections;
use rack_gateway::keys::Keys;

use crate::support::{self, ORIGIN};

/// Set in the child's environment: the data directory it appends to.
const CHILD_ENV: &str = "RACK_CRASH_CHILD";
/// Replays a run: the seed the parent prints.
const SEED_ENV: &str = "RACK_CRASH_SEED";
const ROUNDS: u32 = 50;
const APPENDERS: u64 = 8;

/// Checkpoints often, so kills also land while checkpoints are being cut.
fn child_policy() -> events::store::CheckpointPolicy {
    events::store::CheckpointPolicy {
        every: 64,
        after: Duration::from_millis(20),
        heartbeat: Duration::from_millis(200),
    }
}

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

// === impl Rng ===

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// The child: appends from eight tasks forever. Run only as the child (`--ignored`).
#[test]
#[ignore = "the crash test's child process; the crash test runs it"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir).to_owned();
    let (store, _) = rack_gateway::store::open(&dir, child_policy()).expect("child: open store");
    let store = Arc::new(store);
    // Distinct event numbers in every run, so no two runs append identical records.
    let base = (Clock.now().as_nanos() as u64 % 1_000_000_000) * 1_000;
    support::runtime().block_on(async {
        let mut tasks = Vec::new();
        for t in 0..APPENDERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let k = base + n * APPENDERS + t;
                    let events = (0..1 + n % 3).map(|i| support::event(k * 4 + i)).collect();
                    let a = match store.append(events).await {
                        Ok(a) => a,
                        // Exit at once: the parent sees an exit that is not its SIGKILL.
                        Err(e) => {
                            eprintln!("child: append failed: {e}");
                            std::process::exit(3);
                        }
                    };
                    let mut line = String::new();
                    for (i, h) in a.hashes.iter().enumerate() {
                        line.push_str(&format!("ACK {} {}\n", a.first.0 + i as u64, h.to_hex()));
                    }
                    let mut out = std::io::stdout().lock();
                    out.write_all(line.as_bytes()).expect("child: stdout");
                    out.flush().expect("child: flush");
                }
            }));
        }
        for t in tasks {
            t.await.expect("child: appender");
        }
    });
}

/// What one killed child acknowledged, and its stderr for diagnosis.
struct Round {
    acks: Vec<(u64, Hash)>,
    stderr: String,
}

/// Starts the child on `dir`, kills it with SIGKILL at a random moment, and returns every
/// complete `ACK` line it printed. Most rounds start the clock at the first ACK so appends are
/// in flight; every fifth starts it at spawn, so some kills land while the store is opening.
fn run_child(dir: &Path, rng: &mut Rng, round: u32) -> Round {
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--ignored",
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let spawned = Instant::now();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                // A line cut by the kill has no newline: not an acknowledgement we saw whole.
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {
                    if let Some(ack) = parse_ack(&line) {
                        let _ = tx.send(ack);
                    }
                }
            }
        }
    });
    let mut stderr_pipe = child.stderr.take().expect("child stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr_pipe.read_to_string(&mut s);
        s
    });

    let mut acks = Vec::new();
    let from_spawn = round % 5 == 4;
    let start = if from_spawn {
        spawned
    } else {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(ack) => {
                acks.push(ack);
                Instant::now()
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = stderr_reader.join().unwrap_or_default();
                panic!("round {round}: the child acknowledged nothing within 20 s:\n{stderr}");
            }
        }
    };
    let kill_at = start + Duration::from_millis(rng.between(5, 60));
    // Collect acknowledgements until the kill moment; this is the child's running time, not a wait.
    while let Some(left) = kill_at.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(ack) => acks.push(ack),
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("wait for the child");
    reader.join().expect("stdout reader");
    acks.extend(rx.try_iter());
    let stderr = stderr_reader.join().unwrap_or_default();
    assert_eq!(
        status.signal(),
        Some(9),
        "round {round}: the child ended on its own ({status}) before the kill:\n{stderr}"
    );
    Round { acks, stderr }
}

fn parse_ack(line: &str) -> Option<(u64, Hash)> {
    let mut words = line.trim_end().strip_prefix("ACK ")?.split(' ');
    let seq = words.next()?.parse().ok()?;
    let h = Hash::from_hex(words.next()?)?;
    words.next().is_none().then_some((seq, h))
}

/// Reopens the store in the parent and checks everything acknowledged so far, the chain and
/// checkpoints under the pinned key, and that the next append lands at the head.
fn reopen_and_check(
    dir: &Path,
    keys: &Keys,
    acked: &BTreeMap<u64, Hash>,
    round: u32,
    child_stderr: &str,
) -> (u64, Hash) {
    let options = Options {
        origin: ORIGIN.to_owned(),
        signer: keys.checkpoint.clone(),
        policy: child_policy(),
    };
    let log = rack_gateway::store::log_path(dir);
    let store = RedbStore::open(&log, options, Projections::default())
        .unwrap_or_else(|e| panic!("round {round}: reopen after SIGKILL: {e}\n{child_stderr}"));
    let size = store.head().size;
    let stored = store.read_raw(0..size).expect("read records");
    assert_eq!(
        stored.len() as u64,
        size,
        "round {round}: records are not dense"
    );
    for (&seq, want) in acked {
        let Some((at, bytes)) = stored.get(seq as usize) else {
            panic!("round {round}: acknowledged seq {seq} is gone (the log has {size} records)");
        };
        assert_eq!(*at, seq, "round {round}");
        assert_eq!(
            hash::leaf_hash(bytes),
            *want,
            "round {round}: acknowledged seq {seq} changed"
        );
    }

    let rt = support::runtime();
    let notes: Vec<(String, Vec<u8>)> = rt
        .block_on(store.checkpoints(0..u64::MAX))
        .expect("checkpoints")
        .into_iter()
        .enumerate()
        .map(|(n, c)| (export::checkpoint_key(n as u64), c.note.into_bytes()))
        .collect();
    let key: VerifierKey = keys.vkey();
    let (_, first) = stored.first().expect("record 0");
    let summary = verify::verify_records(first, size, &notes, Some(&key), &mut Quiet, &mut |f| {
        stored.iter().try_for_each(|(seq, bytes)| f(*seq, bytes))
    })
    .unwrap_or_else(|e| panic!("round {round}: the reopened log does not verify: {e}"));
    assert_eq!(summary.records, size);
    assert_eq!(summary.trust, KeyTrust::Pinned);

    let a = rt
        .block_on(store.append(vec![support::command_requested(
            u64::MAX - u64::from(round),
        )]))
        .unwrap_or_else(|e| panic!("round {round}: append after reopen: {e}"));
    assert_eq!(
        a.first.0, size,
        "round {round}: the append did not land at the head"
    );
    assert_eq!(store.head().size, size + 1, "round {round}");
    let back = store.read_raw(size..size + 1).expect("read back");
    let h = a.hashes.first().copied().expect("one hash");
    assert_eq!(back.first().map(|(_, b)| hash::leaf_hash(b)), Some(h));
    (size, h)
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Clock.now().as_nanos() as u64 ^ u64::from(std::process::id()))
        | 1;
    eprintln!("crash test seed {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let keys = Keys::init(dir, ORIGIN).expect("keys init");
    let started = Instant::now();
    let mut acked: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut rounds_with_acks = 0;
    for round in 0..ROUNDS {
        let Round { acks, stderr } = run_child(dir, &mut rng, round);
        rounds_with_acks += u32::from(!acks.is_empty());
        for (seq, h) in acks {
            if let Some(before) = acked.insert(seq, h) {
                assert_eq!(
                    before, h,
                    "round {round}: seq {seq} was acknowledged twice with different records"
                );
            }
        }
        // The parent's own append is acknowledged too: later rounds hold it to the same standard.
        let (seq, h) = reopen_and_check(dir, &keys, &acked, round, &stderr);
        acked.insert(seq, h);
    }
    let took = started.elapsed();
    eprintln!(
        "crash test: {ROUNDS} kills, {} acknowledged records checked, {:?}",
        acked.len(),
        took
    );
    assert!(
        rounds_with_acks >= ROUNDS * 3 / 4,
        "only {rounds_with_acks} of {ROUNDS} rounds acknowledged anything before the kill"
    );
}
