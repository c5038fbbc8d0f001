//! A real full disk: the gateway's data directory on a small tmpfs, the filesystem filled to
//! `ENOSPC` by a filler file. While the store cannot append, every proxied request, whatever its
//! kind, answers 503 and the rack receives nothing; once the filler is deleted the gateway
//! resumes without a restart, and the log verifies. `fail_closed` shows the same with an
//! injected failing backend; this test shows it with the kernel's own `ENOSPC`.
//!
//! **A full filesystem does not stop the store at once, and it should not.** tmpfs takes a page
//! when a page is first written, not when a file is extended, and redb extends its file with
//! `set_len` (a hole, no space taken) and commits copy-on-write into free pages of its file. A page
//! the file wrote once and later freed is reused without new space, so commits that fit in such
//! pages still succeed, durably, on a full filesystem. The store cannot append only once a commit
//! needs a page the filesystem has to provide. So, after filling, the test *drains* the store's
//! room: it sends refused-locally requests (`GET /x?`: an unknown route, recorded as a denial,
//! never forwarded) until the store refuses two in a row. Why two: after a failed commit redb fails
//! every later call on that handle, so the store reopens its file before the next batch, and a
//! reopened redb counts as free every page the committed log does not use; it can have more room
//! than at the first refusal (after a single refusal, requests of the batch do get through now and
//! then), and a refusal right after a reopen means a commit of that size cannot fit until space
//! returns. A commit of a larger record needs at least as many pages (same B-tree, same next seq,
//! same Merkle nodes in its row), and the drain's record is no larger than any the batch makes
//! (checked against the batch's own records once space is back), so from then on every request of
//! the batch must be refused: the outcome does not depend on how much room the store's file
//! happened to have.
//!
//! **The recovery is the store's, for real.** A failed commit latches redb's I/O error on the
//! open database; only the store's reopen lets it append again once space returns, and its view
//! must be rolled back: the first record after the outage takes the head from before it, the
//! file takes the pages it could not get before, and the export verifies.
//!
//! **Invariant:** the tmpfs is always unmounted (a guard, lazily if a failed test still holds a
//! file on it). Mounting needs root; where it is refused the test says why and passes, except
//! under `CI=true`, where it fails.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use events::cbor;
use events::event::Event;
use events::record::Record;
use events::store::redb::REWRITE_RETRY;
use events::store::{CheckpointPolicy, EventStore};
use events::time::Clock;
use rack_gateway::keys::Keys;
use rack_gateway::server::dev::DEV_ORIGIN;

use crate::support::{Body, Cli, TestGateway, log_path, requested};

/// The size of the filesystem: room for the keys and a young log, little else.
const TMPFS_SIZE: &str = "8m";
/// More refused requests than the store's file can hold records for on the full filesystem.
const MOST_DRAINED: usize = 5_000;

/// A tmpfs mounted on a fresh temporary directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

/// One request of the batch: what it is, its bytes, and its status when the disk has room.
struct Sent {
    what: &'static str,
    raw: Vec<u8>,
    status: u16,
}

// === impl Tmpfs ===

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs -o size={size} tmpfs {}: {} {}",
                dir.path().display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // A test that failed midway may still hold the store open: detach the mount now,
            // the kernel frees it when the last file on it is closed.
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
        // The directory itself goes with `dir`, now that nothing is mounted on it.
    }
}

/// What a client sends, one of each kind: the CLI's commonest calls, a secret-bearing one, an
/// upload, one answered locally for an unknown route and one refused for its path.
fn batch(cli: &Cli) -> Vec<Sent> {
    let sent = |what, raw, status| Sent { what, raw, status };
    vec![
        sent("list apps", cli.get("/apps?"), 200),
        sent("read env", cli.get("/apps/x/releases?limit=1"), 200),
        sent(
            "set env",
            cli.request(
                "POST",
                "/apps/x/releases?",
                &[],
                Body::Form("env=A%3DB%0AFOO%3Dbar%0ASECRET_TOKEN%3Ds3cr3t"),
            ),
            200,
        ),
        sent(
            "upload an object",
            cli.request(
                "POST",
                "/apps/x/objects/tmp/a.tgz?",
                &[],
                Body::Raw(&[0x1f, 0x8b, 0x08, 0x00, 1, 2, 3]),
            ),
            200,
        ),
        sent("system", cli.get("/system?"), 200),
        sent("unknown route", cli.get("/no/such/route?"), 404),
        sent("dot segment", cli.get("/apps/../system?"), 400),
    ]
}

/// Writes a filler file until the filesystem refuses a byte more.
fn fill(dir: &Path) -> File {
    let mut filler = File::create(dir.join("filler")).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        match filler.write(&chunk) {
            // A short write took the last free pages; the next one says the disk is full.
            Ok(n) => assert!(n > 0, "a write of nothing"),
            Err(e) if e.kind() == ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let probe = File::create(dir.join("probe")).and_then(|mut f| f.write_all(b"x"));
    assert!(
        probe
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::StorageFull),
        "not one more byte fits: {probe:?}"
    );
    filler
}

/// The blocks the filesystem gave a file, in bytes.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_filesystem_answers_503_and_forwards_nothing_then_recovers_when_space_returns() {
    let tmpfs = match Tmpfs::mount(TMPFS_SIZE) {
        Ok(t) => t,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "CI=true, yet the full-disk test cannot mount its tmpfs (it needs root or \
             CAP_SYS_ADMIN): {why}"
        ),
        Err(why) => {
            eprintln!("full_disk: skipped, cannot mount a tmpfs (needs root): {why}");
            return;
        }
    };
    let data = tempfile::tempdir_in(tmpfs.path()).unwrap();
    Keys::init(data.path(), DEV_ORIGIN).unwrap();
    let (store, keys) =
        rack_gateway::store::open(data.path(), CheckpointPolicy::default()).unwrap();
    let gw = TestGateway::start_on(data, store, keys).await;
    let log = log_path(gw.data());
    let cli = gw.cli();

    let filler = fill(tmpfs.path());

    // Drain: recorded refusals, never forwarded, until the store refuses right after a reopen.
    let mut drained = Vec::new();
    let mut refused_in_a_row = 0;
    while refused_in_a_row < 2 {
        assert!(
            drained.len() < MOST_DRAINED,
            "the store still appends after {MOST_DRAINED} records on a full filesystem"
        );
        let reply = gw.send_raw(cli.get("/x?")).await;
        match reply.status {
            404 => {
                refused_in_a_row = 0;
                drained.push(reply.request_id());
            }
            503 => refused_in_a_row += 1,
            other => panic!("draining: {other} {}", reply.text()),
        }
    }
    assert!(gw.rack().received().is_empty(), "a refusal was forwarded");

    // The outage: every kind of request, twice over, answers 503 and reaches nothing.
    let head = gw.head();
    let blocks = allocated(&log);
    let mut refused = Vec::new();
    for round in 0..2 {
        for s in batch(&cli) {
            let reply = gw.send_raw(&s.raw).await;
            assert_eq!(
                reply.status,
                503,
                "{} (round {round}) on a full disk: {}",
                s.what,
                reply.text()
            );
            assert_eq!(reply.header("retry-after"), Some("5"), "{}", s.what);
            assert!(reply.text().contains("(audit_unavailable)"), "{}", s.what);
            refused.push(reply.request_id());
        }
    }
    assert!(
        gw.rack().received().is_empty(),
        "the rack was reached while the log could not record: {:?}",
        gw.rack().received()
    );
    assert_eq!(gw.head(), head, "nothing was appended");
    // The store says why: its commit found no space.
    let now = Clock.now();
    let probe = gw
        .store()
        .append(vec![Event::DenialsCounted {
            ip: "192.0.2.1".into(),
            reason: format!("full-disk probe {}", "p".repeat(2048)),
            count: 1,
            first: now,
            last: now,
        }])
        .await;
    let why = probe.expect_err("a 2 KiB record was appended on a full filesystem");
    assert!(
        why.to_string().contains("No space left on device"),
        "the store refuses for lack of space: {why}"
    );
    assert_eq!(allocated(&log), blocks, "the log file cannot grow");

    // Space returns: the same gateway appends and forwards again, once its store has
    // recovered the index file (a rewrite before recovery that failed for lack of space is
    // tried again after REWRITE_RETRY; until then calls are refused as during the outage).
    drop(filler);
    std::fs::remove_file(tmpfs.path().join("filler")).unwrap();
    let deadline = std::time::Instant::now() + REWRITE_RETRY + std::time::Duration::from_secs(5);
    let reply = loop {
        let reply = gw.send_raw(cli.get("/apps?")).await;
        if reply.status != 503 || std::time::Instant::now() > deadline {
            break reply;
        }
        assert!(
            reply.text().contains("(audit_unavailable)"),
            "{}",
            reply.text()
        );
        refused.push(reply.request_id());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(gw.rack().received().len(), 1);
    let (first, _) = gw.call_records(head, &reply.request_id()).await;
    assert_eq!(first.seq.0, head, "the first record after the outage");
    assert!(
        allocated(&log) > blocks,
        "the log file took the space it could not get during the outage"
    );
    let mut recovered = Vec::new();
    for s in batch(&cli) {
        let reply = gw.send_raw(&s.raw).await;
        assert_eq!(reply.status, s.status, "{} after the outage", s.what);
        recovered.push(reply.request_id());
    }
    let forwarded = batch(&cli).iter().filter(|s| s.status == 200).count();
    assert_eq!(gw.rack().received().len(), 1 + forwarded);
    let reply = gw.send_raw(cli.get("/x?")).await;
    assert_eq!(reply.status, 404);
    drained.push(reply.request_id());

    let finished = gw.finish().await;
    let recorded = |id: &String| {
        finished
            .events
            .iter()
            .find(|r| requested(r).is_some_and(|c| &c.request.0 == id))
    };
    for id in &refused {
        assert!(
            recorded(id).is_none(),
            "{id} answered 503 yet is in the log"
        );
    }
    // The premise of the drain: no request of the batch records less than the drain's request
    // (compared as events: a record's seq takes more bytes as the log grows).
    let size = |r: &Record| cbor::to_vec(&r.event.to_value()).len();
    let largest_drained = drained
        .iter()
        .map(|id| size(recorded(id).unwrap()))
        .max()
        .unwrap();
    for (s, id) in batch(&cli).iter().zip(&recovered) {
        let size =
            size(recorded(id).unwrap_or_else(|| panic!("{} after the outage is recorded", s.what)));
        assert!(
            size >= largest_drained,
            "{} records {size} bytes, less than the drain's {largest_drained}",
            s.what
        );
    }
    drop(finished);
    drop(tmpfs);
}
