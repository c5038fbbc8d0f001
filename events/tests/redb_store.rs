//! The embedded store against the conformance suite, plus what only redb can show: one durable
//! sync per acknowledged batch (journal and database files both counted), recovery after a failed commit, and the group commit batching.
// Test code: helpers outside `#[test]` functions may fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use events::checkpoint::NoteSigner;
use events::store::conformance::{self, TestFold};
use events::store::redb::{BACKGROUND_DELAY, Options, REWRITE_RETRY, RedbStore};
use events::store::test_disk::{Disk, Failure};
use events::store::{AppendError, CheckpointPolicy, EventStore, Head};

const ORIGIN: &str = "conformance.example/log";

fn signer() -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, [42; 32]).unwrap()
}

fn options() -> Options {
    Options {
        origin: ORIGIN.into(),
        signer: signer(),
        policy: CheckpointPolicy {
            every: 64,
            ..CheckpointPolicy::default()
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_store_passes_the_conformance_suite() {
    conformance::run_all(
        |dir| RedbStore::open(&dir.join("log.redb"), options(), TestFold::default()).unwrap(),
        ORIGIN,
        &signer().verifier(),
    )
    .await;
}

fn open_on(path: &std::path::Path, disk: &Disk) -> RedbStore<TestFold> {
    RedbStore::open_with(disk.opener(path), options(), TestFold::default()).unwrap()
}

/// A killed process keeps the page cache, so crash tests alone cannot prove durability: count
/// the syncs instead. Every acknowledged batch must have been synced before its ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_batch_is_synced_first() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = open_on(&dir.path().join("log.redb"), &disk);
    for i in 0..50 {
        let before = disk.syncs();
        store.append(vec![conformance::filler(i)]).await.unwrap();
        let after = disk.syncs();
        assert!(after > before, "append {i} was acknowledged without a sync");
    }
}

/// `writers` tasks, each appending `each` distinct fillers one call at a time.
fn spawn_writers(
    store: &Arc<RedbStore<TestFold>>,
    writers: u64,
    each: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    store
                        .append(vec![conformance::filler(w * each + i)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect()
}

/// Concurrent appends share transactions: far fewer syncs than appends, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = Arc::new(open_on(&dir.path().join("log.redb"), &disk));
    let start_syncs = disk.syncs();
    let start = store.head().size;
    let tasks = spawn_writers(&store, 64, 20);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.head().size, start + 64 * 20);
    let used = disk.syncs() - start_syncs;
    assert!(
        used < 64 * 20,
        "{used} syncs for {} appends: no batching",
        64 * 20
    );
}

/// A failed commit answers Unavailable, leaves nothing behind, and the store recovers by itself
/// when the disk works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_commit_is_unavailable_and_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = open_on(&dir.path().join("log.redb"), &disk);
    store.append(vec![conformance::filler(1)]).await.unwrap();
    let head = store.head();
    let state = store.with_state(|s| s.clone());
    disk.fail(Some(Failure::Full));
    for i in 0..3 {
        let r = store.append(vec![conformance::filler(i)]).await;
        assert!(matches!(r, Err(AppendError::Unavailable(_))), "{r:?}");
    }
    assert_eq!(store.head(), head);
    assert_eq!(store.with_state(|s| s.clone()), state);
    disk.fail(None);
    let a = store.append(vec![conformance::filler(9)]).await.unwrap();
    assert_eq!(
        a.first.0, head.size,
        "nothing of the failed appends was sequenced"
    );
    let all = store.read(0..u64::MAX).await.unwrap();
    assert_eq!(all.last().unwrap().record.prev, head.hash);
}

/// Whether the journal beside `path` holds `needle` (a filler's user name) anywhere.
fn journal_holds(path: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(events::store::redb::journal_path(path)).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn holds_filler(records: &[events::record::StoredRecord], i: u64) -> bool {
    records
        .iter()
        .any(|r| r.record.event == conformance::filler(i))
}

/// A store holding one record (its head returned) whose next write, of fillers `2..2 + n`, was
/// answered `Unavailable` because `failing` syncs from then on fail; on a disk that `dies` at
/// the first failed sync, no write after it reaches the file either.
async fn store_whose_next_write_fails(
    failing: u64,
    n: u64,
    dies: bool,
) -> (tempfile::TempDir, Disk, RedbStore<TestFold>, Head) {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = open_on(&dir.path().join("log.redb"), &disk);
    store.append(vec![conformance::filler(1)]).await.unwrap();
    let head = store.head();
    disk.dies_at_failed_sync(dies);
    disk.fail_syncs(failing);
    let r = store
        .append((2..2 + n).map(conformance::filler).collect())
        .await;
    assert!(matches!(r, Err(AppendError::Unavailable(_))), "{r:?}");
    (dir, disk, store, head)
}

/// A journal write whose sync fails may have reached the file all the same (Linux reports a
/// writeback error at `fdatasync`; the bytes were written). Its appends were answered
/// `Unavailable`, so the reopen that follows, and every later open, must leave them out: the
/// next append takes their seq, and a grant answered as failed never comes into force later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_as_failed_never_enters_the_log() {
    // A disk that dies at the failed sync: nothing can erase the write from the file.
    let (dir, disk, store, head) = store_whose_next_write_fails(u64::MAX, 2, true).await;
    let path = dir.path().join("log.redb");
    assert!(
        journal_holds(&path, "user-2@example.com"),
        "the failed write did not reach the file, so this test shows nothing"
    );
    disk.fail_syncs(0);
    disk.dies_at_failed_sync(false);
    let next = store.append(vec![conformance::filler(4)]).await.unwrap();
    assert_eq!(
        next.first.0, head.size,
        "the failed write was taken into the log"
    );
    let all = store.read(0..u64::MAX).await.unwrap();
    assert_eq!(all.len() as u64, head.size + 1);
    assert!(!holds_filler(&all, 2) && !holds_filler(&all, 3));
    assert_eq!(all.last().unwrap().record.prev, head.hash);
    store.shutdown();
    drop(store);

    let store = open_on(&path, &disk);
    let again = store.read(0..u64::MAX).await.unwrap();
    assert!(!holds_filler(&again, 2) && !holds_filler(&again, 3));
    assert_eq!(again[..all.len()], all[..]);
}

/// A write whose sync failed, on a disk that still refuses syncs, so that the store cannot be
/// reopened: the process is stopped then. Its appends were answered as failed, and the next
/// open, which knows nothing of the failure, must not find them: the write was erased through
/// the open journal before the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_as_failed_stays_out_when_the_store_stops_before_it_reopens() {
    let (dir, _disk, store, head) = store_whose_next_write_fails(u64::MAX, 2, false).await;
    let path = dir.path().join("log.redb");
    assert!(
        !journal_holds(&path, "user-2@example.com"),
        "the failed write is still in the journal"
    );
    store.shutdown();
    drop(store);
    let reopened = open_on(&path, &Disk::default());
    let all = reopened.read(0..u64::MAX).await.unwrap();
    assert!(!holds_filler(&all, 2) && !holds_filler(&all, 3));
    assert_eq!(reopened.head(), head);
}

/// The erasing comes before the answer: a copy of the files taken right after an append was
/// answered `Unavailable` (what a crash would leave) does not hold it, when the disk works
/// again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_as_failed_is_erased_before_the_answer() {
    let (dir, _disk, store, head) = store_whose_next_write_fails(1, 1, false).await;
    let path = dir.path().join("log.redb");

    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().join("log.redb");
    std::fs::copy(&path, &copied).unwrap();
    let journal = events::store::redb::journal_path(&path);
    std::fs::copy(&journal, events::store::redb::journal_path(&copied)).unwrap();
    let reopened = open_on(&copied, &Disk::default());
    let all = reopened.read(0..u64::MAX).await.unwrap();
    assert!(!holds_filler(&all, 2), "the answered failure is in the log");
    assert_eq!(reopened.head(), head);
    drop(store);
}

/// A reopen after a failed write returns redb to its last synced commit; while the files cannot
/// be reopened and the journal recovered, a reader is refused, never handed a short log as if
/// it were whole, and the store comes back whole once the disk works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_is_refused_while_the_journal_cannot_be_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = open_on(&dir.path().join("log.redb"), &disk);
    for i in 0..40 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    let size = store.head().size;
    // Indexed, in commits that are not synced: readable, but not what a reopen returns to.
    assert_eq!(store.read(0..size).await.unwrap().len() as u64, size);
    disk.fail_syncs(u64::MAX);
    let r = store.append(vec![conformance::filler(99)]).await;
    assert!(matches!(r, Err(AppendError::Unavailable(_))), "{r:?}");
    assert_eq!(store.head().size, size);
    match store.read(0..size).await {
        Ok(records) => assert_eq!(records.len() as u64, size, "a short read answered Ok"),
        Err(e) => assert!(matches!(e, events::store::StoreError::Io(_)), "{e}"),
    }
    disk.fail_syncs(0);
    store.append(vec![conformance::filler(100)]).await.unwrap();
    assert_eq!(
        store.read(0..u64::MAX).await.unwrap().len() as u64,
        size + 1
    );
}

fn open_with_policy(dir: &std::path::Path, policy: CheckpointPolicy) -> RedbStore<TestFold> {
    let options = Options {
        origin: ORIGIN.into(),
        signer: signer(),
        policy,
    };
    RedbStore::open(&dir.join("log.redb"), options, TestFold::default()).unwrap()
}

/// Polls `f` until it returns `Some`, or fails after `secs` seconds.
async fn eventually<T>(secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met in {secs}s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_cut_every_n_records_at_batch_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_policy(
        dir.path(),
        CheckpointPolicy {
            every: 10,
            after: std::time::Duration::from_secs(3600),
            heartbeat: std::time::Duration::from_secs(3600),
        },
    );
    for i in 0..25 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    let sizes: Vec<u64> = store
        .checkpoints(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|c| c.checkpoint.size)
        .collect();
    assert_eq!(sizes, vec![1, 11, 21]);
    // A batch that crosses the boundary is checkpointed at its end, not split.
    store
        .append((0..15).map(conformance::filler).collect())
        .await
        .unwrap();
    let last = store.checkpoints(0..u64::MAX).await.unwrap();
    assert_eq!(last.last().unwrap().checkpoint.size, 41);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_records_are_checkpointed_after_t_and_idle_logs_get_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_policy(
        dir.path(),
        CheckpointPolicy {
            every: 1_000_000,
            after: std::time::Duration::from_millis(40),
            heartbeat: std::time::Duration::from_millis(150),
        },
    );
    store.append(vec![conformance::filler(1)]).await.unwrap();
    let size = store.head().size;
    let cps = eventually(10, async || {
        let cps = store.checkpoints(0..u64::MAX).await.unwrap();
        cps.iter().any(|c| c.checkpoint.size == size).then_some(cps)
    })
    .await;
    let timed = cps
        .iter()
        .find(|c| c.checkpoint.size == size)
        .unwrap()
        .clone();
    // Idle: a heartbeat with the same size and root and a later time.
    let beat = eventually(10, async || {
        let cps = store.checkpoints(0..u64::MAX).await.unwrap();
        cps.into_iter()
            .find(|c| c.checkpoint.size == size && c.checkpoint.time > timed.checkpoint.time)
    })
    .await;
    assert_eq!(beat.checkpoint.root, timed.checkpoint.root);
    assert_eq!(store.head().size, size, "heartbeats add no records");
}

/// The private key never reaches the store file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_file_holds_no_private_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_policy(dir.path(), CheckpointPolicy::default());
    for i in 0..100 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    store.shutdown();
    let bytes = std::fs::read(dir.path().join("log.redb")).unwrap();
    let seed = signer().seed().to_vec();
    assert!(!bytes.windows(seed.len()).any(|w| w == seed.as_slice()));
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&seed);
    assert!(!bytes.windows(b64.len()).any(|w| w == b64.as_bytes()));
}

/// Shutdown seals the tail: the last records are covered by a checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_a_checkpoint_for_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_policy(dir.path(), CheckpointPolicy::default());
    for i in 0..7 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    let size = store.head().size;
    store.shutdown();
    drop(store);
    let reader = events::store::redb::LogReader::open(&dir.path().join("log.redb")).unwrap();
    let last = reader.checkpoints().unwrap().pop().unwrap();
    assert_eq!(last.checkpoint.size, size);
}

/// Proofs read from the stored nodes verify against the roots the store signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_from_stored_nodes_verify_against_signed_roots() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_policy(
        dir.path(),
        CheckpointPolicy {
            every: 97,
            ..CheckpointPolicy::default()
        },
    );
    for chunk in 0..30u64 {
        store
            .append(
                (0..37)
                    .map(|i| conformance::filler(chunk * 37 + i))
                    .collect(),
            )
            .await
            .unwrap();
    }
    let head = store.head();
    let records = store.read(0..u64::MAX).await.unwrap();
    for seq in [0, 1, 2, 63, 64, 500, head.size - 2, head.size - 1] {
        let proof = store.inclusion_proof(seq, head.size).unwrap();
        events::merkle::verify_inclusion(
            &records[seq as usize].hash,
            seq,
            head.size,
            &proof,
            &head.root,
        )
        .unwrap();
    }
    let cps = store.checkpoints(0..u64::MAX).await.unwrap();
    assert!(cps.len() > 5);
    for pair in cps.windows(2) {
        let (a, b) = (&pair[0].checkpoint, &pair[1].checkpoint);
        let proof = store.consistency_proof(a.size, b.size).unwrap();
        events::merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &proof).unwrap();
    }
}

/// A subscriber that falls behind is told the exact gap, re-reads it, and misses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_subscriber_is_told_the_gap_and_misses_nothing() {
    use events::store::Delivery;
    let dir = tempfile::tempdir().unwrap();
    let store = open_with_policy(dir.path(), CheckpointPolicy::default());
    let mut sub = store.subscribe();
    let start = store.head().size;
    // More single-append batches than the subscription buffers, while nobody reads.
    for i in 0..1100 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    let end = store.head().size;
    let mut next = start;
    let mut gaps = 0;
    while next < end {
        match sub.next().await {
            Delivery::Record(r) => {
                assert_eq!(r.record.seq.0, next);
                next += 1;
            }
            Delivery::Gap { from, to } => {
                assert_eq!(from, next, "a gap starts where delivery stopped");
                let missed = store.read(from..to).await.unwrap();
                assert_eq!(missed.len() as u64, to - from);
                next = to;
                sub.resume_at(to);
                gaps += 1;
            }
            Delivery::Closed => panic!("closed early"),
        }
    }
    assert!(
        gaps >= 1,
        "the subscriber lagged, so a gap must have been reported"
    );
}

/// redb indexes acknowledged records after the acknowledgement, in batches of its own; a reader
/// still gets every record up to the head it saw, with the head's hash, while appends keep the
/// sequencer busy, and a checkpoint as soon as its batch is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_see_every_acknowledged_record_while_indexing_lags() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_on(&dir.path().join("log.redb"), &Disk::default()));
    let writers = spawn_writers(&store, 16, 150);
    let mut reads = 0;
    while writers.iter().any(|w| !w.is_finished()) || reads == 0 {
        let head = store.head();
        let records = store.read(0..head.size).await.unwrap();
        assert_eq!(
            records.len() as u64,
            head.size,
            "a record below the head was missing"
        );
        assert_eq!(records.last().unwrap().hash, head.hash);
        let cps = store.checkpoints(0..u64::MAX).await.unwrap();
        let covered = cps.last().unwrap().checkpoint.size;
        // A checkpoint is cut at the first batch boundary after 64 new records, and a batch
        // here holds at most 16 (one per writer): the last one is at most 80 behind the head.
        assert!(
            covered + 80 >= head.size,
            "checkpoint at {covered}, head {}",
            head.size
        );
        reads += 1;
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(store.head().size, 1 + 16 * 150);
    assert_eq!(store.read(0..u64::MAX).await.unwrap().len(), 1 + 16 * 150);
}

/// The journal is the durability point: a batch it took is answered, and stays in the log, even
/// when redb then cannot index it (its file cannot grow). Until redb can be written again the
/// store refuses appends (fail-closed); then it indexes the answered batch from the journal,
/// and nothing refused in between is in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answered_batch_survives_an_index_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = open_on(&dir.path().join("log.redb"), &disk);
    store.append(vec![conformance::filler(1)]).await.unwrap();
    disk.fail_index(Some(Failure::Full));
    let mut answered = Vec::new();
    let mut refused = None;
    for b in 0..200u64 {
        let batch: Vec<_> = (0..500)
            .map(|i| conformance::filler(b * 1000 + i))
            .collect();
        match store.append(batch).await {
            Ok(a) => answered.push(a),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(refused, Some(AppendError::Unavailable(_))),
        "no append was refused while redb could not be written: {refused:?}"
    );
    let last = answered.last().unwrap();
    let end = last.first.0 + last.hashes.len() as u64;

    disk.fail_index(None);
    let after = store.append(vec![conformance::filler(7)]).await.unwrap();
    assert_eq!(after.first.0, end, "a refused batch was sequenced");
    let all = store.read(0..u64::MAX).await.unwrap();
    assert_eq!(all.len() as u64, end + 1);
    for a in &answered {
        let first = a.first.0 as usize;
        assert_eq!(all[first].hash, a.hashes[0], "an answered batch is missing");
    }
}

/// A background append (a completion) does not start a journal write of its own: the next
/// awaited append, arriving within [`BACKGROUND_DELAY`], carries it in the same write, after
/// it in the log. A pause lets the sequencer take the background one first, so a store that
/// wrote it alone would use two syncs here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_append_joins_the_next_awaited_write() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = open_on(&dir.path().join("log.redb"), &disk);
    store.append(vec![conformance::filler(0)]).await.unwrap();
    for attempt in 1..=20u64 {
        let before = disk.syncs();
        let started = std::time::Instant::now();
        let background = store.enqueue(vec![conformance::filler(attempt * 2)]);
        std::thread::sleep(BACKGROUND_DELAY / 8);
        let awaited = store.append(vec![conformance::filler(attempt * 2 + 1)]);
        if started.elapsed() >= BACKGROUND_DELAY / 2 {
            // Too slow a moment to tell: the delay may have run out. Try again.
            awaited.await.unwrap();
            background.await.unwrap();
            continue;
        }
        let awaited = awaited.await.unwrap();
        let background = background.await.unwrap();
        assert_eq!(
            background.first.0 + 1,
            awaited.first.0,
            "the background append keeps its place in the queue"
        );
        assert_eq!(
            disk.syncs() - before,
            1,
            "the background append was written on its own"
        );
        return;
    }
    panic!("every attempt took longer than the background delay");
}

/// With no awaited append to join, a background append is still written, soon: it wakes the
/// idle sequencer (background appends do not go over its queue), which writes it after the delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_background_append_is_written_after_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = open_on(&dir.path().join("log.redb"), &disk);
    let size = store.head().size;
    // Opening appended records; once they are indexed (2 ms after the last append) the
    // sequencer is idle, and with these options wakes on its own only once a second (its
    // checkpoint tick): an append left for it to find would take that long; a woken one takes
    // the 2 ms delay and one write.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let written = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        store.enqueue(vec![conformance::filler(1)]),
    )
    .await
    .expect("a lone background append waited for the sequencer's idle tick")
    .unwrap();
    assert_eq!(written.first.0, size);
    assert_eq!(store.head().size, size + 1);
}

/// A shutdown right after a background append writes it first: it is in the log on reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_writes_the_waiting_background_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let disk = Disk::default();
    let store = open_on(&path, &disk);
    let size = store.head().size;
    drop(store.enqueue(vec![conformance::filler(1)]));
    store.shutdown();
    drop(store);
    let store = open_on(&path, &disk);
    assert_eq!(
        store.head().size,
        size + 1,
        "the background append was lost"
    );
}

/// A background append nobody waits for (a completion whose answer has gone) is not lost to a
/// write that fails: it is kept, and the first batch written once the disk works again holds
/// it, before anything appended after it. One that is awaited gets the failure, and is not
/// written later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_background_append_outlives_a_failed_write() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = open_on(&dir.path().join("log.redb"), &disk);
    store.append(vec![conformance::filler(0)]).await.unwrap();
    disk.fail(Some(Failure::Full));
    drop(store.enqueue(vec![conformance::filler(1)]));
    let awaited_background = store.enqueue(vec![conformance::filler(2)]);
    // Enqueued before it, the background appends share this write, or failed before it.
    let r = store.append(vec![conformance::filler(3)]).await;
    assert!(matches!(r, Err(AppendError::Unavailable(_))), "{r:?}");
    let r = awaited_background.await;
    assert!(matches!(r, Err(AppendError::Unavailable(_))), "{r:?}");
    disk.fail(None);
    let after = store.append(vec![conformance::filler(4)]).await.unwrap();
    let all = store.read(0..u64::MAX).await.unwrap();
    let kept: Vec<u64> = all
        .iter()
        .filter(|r| holds_filler(std::slice::from_ref(r), 1))
        .map(|r| r.record.seq.0)
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "the dropped background append is written once"
    );
    assert!(kept[0] < after.first.0, "and before what came after it");
    assert!(
        !holds_filler(&all, 2),
        "an awaited one that failed stays out"
    );
    assert!(
        !holds_filler(&all, 3),
        "an awaited append that failed stays out"
    );
}

/// What a failed write kept is written by the shutdown if nothing else came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_writes_what_a_failed_write_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let disk = Disk::default();
    let store = open_on(&path, &disk);
    disk.fail(Some(Failure::ReadOnly));
    drop(store.enqueue(vec![conformance::filler(1)]));
    let r = store.append(vec![conformance::filler(2)]).await;
    assert!(matches!(r, Err(AppendError::Unavailable(_))), "{r:?}");
    disk.fail(None);
    store.shutdown();
    drop(store);
    let store = open_on(&path, &disk);
    let all = store.read(0..u64::MAX).await.unwrap();
    assert!(holds_filler(&all, 1), "the kept background append was lost");
    assert!(!holds_filler(&all, 2));
}

/// Polls `future` once, so an append is handed to the sequencer, then drops it: the caller has
/// gone away.
async fn submit_and_leave<F: std::future::Future<Output: std::fmt::Debug>>(future: F) {
    let mut future = std::pin::pin!(future);
    tokio::select! {
        biased;
        r = &mut future => panic!("the append was answered at once: {r:?}"),
        () = std::future::ready(()) => {}
    }
}

/// The `seq` of the record holding filler `i`, if one does.
fn seq_of(records: &[events::record::StoredRecord], i: u64) -> Option<u64> {
    records
        .iter()
        .find(|r| r.record.event == conformance::filler(i))
        .map(|r| r.record.seq.0)
}

/// The `seq` of the record holding filler `i`; the test fails if none does.
fn written(records: &[events::record::StoredRecord], i: u64) -> u64 {
    seq_of(records, i).unwrap_or_else(|| panic!("filler {i} is not in the log"))
}

/// A follow-up that appends filler `i`.
fn follow(i: u64) -> events::store::redb::FollowUp {
    Box::new(move || vec![conformance::filler(i)])
}

/// An append whose caller goes away is written all the same, and its follow-up after it:
/// whether the caller left while its write was under way (the answer finds nobody) or before
/// the sequencer took it (it is staged for nobody). An append whose caller hears the answer
/// gets no follow-up, nor does one that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_written_with_nobody_to_hear_it_gets_its_follow_up() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = Arc::new(open_on(&dir.path().join("log.redb"), &disk));
    store.append(vec![conformance::filler(0)]).await.unwrap();
    // Indexed: the sequencer is idle, so the next write is the journal's, for what follows.
    store.read(0..u64::MAX).await.unwrap();

    disk.hold_writes(true);
    let writing = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .append_heard(vec![conformance::filler(1)], None, follow(101))
                .await
        }
    });
    eventually(5, async || (disk.writes_held() > 0).then_some(())).await;
    // Behind that write, in the queue: handed over, then left before the sequencer takes it.
    submit_and_leave(store.append_heard(vec![conformance::filler(2)], None, follow(102))).await;
    writing.abort();
    assert!(writing.await.unwrap_err().is_cancelled());
    disk.hold_writes(false);

    let heard = store
        .append_heard(vec![conformance::filler(3)], None, follow(103))
        .await
        .unwrap();
    disk.fail(Some(Failure::Full));
    let failed = store
        .append_heard(vec![conformance::filler(4)], None, follow(104))
        .await;
    assert!(
        matches!(failed, Err(AppendError::Unavailable(_))),
        "{failed:?}"
    );
    disk.fail(None);
    store.append(vec![conformance::filler(5)]).await.unwrap();

    let all = store.read(0..u64::MAX).await.unwrap();
    let at = |i| seq_of(&all, i);
    let written = |i| written(&all, i);
    assert!(
        written(1) < written(101) && written(101) < written(5),
        "the follow-up of an append answered to nobody comes after it, in the next batch"
    );
    assert_eq!(
        written(2) + 1,
        written(102),
        "one staged for nobody has it right after"
    );
    assert_eq!(written(3), heard.first.0);
    assert_eq!(at(103), None, "an answered append has no follow-up");
    assert_eq!(
        (at(4), at(104)),
        (None, None),
        "a failed append has neither"
    );
}

/// An append whose answer came but was never read (its caller was dropped after the answer,
/// before it looked) gets its follow-up too: the wait, dropped holding it, hands it over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_never_read_gets_its_follow_up() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = open_on(&dir.path().join("log.redb"), &disk);
    let mut unread = Box::pin(store.append_heard(vec![conformance::filler(1)], None, follow(101)));
    // Polled once, while no write can end: handed over, not answered yet.
    disk.hold_writes(true);
    tokio::select! {
        biased;
        _ = &mut unread => panic!("answered at once"),
        () = std::future::ready(()) => {}
    }
    disk.hold_writes(false);
    // Handed over after it, answered after it: by now its answer has come.
    store.append(vec![conformance::filler(2)]).await.unwrap();
    let size = store.head().size;
    // Indexed 2 ms after the last append, the sequencer then sleeps until its tick (as in
    // `a_lone_background_append_is_written_after_the_delay`).
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(unread);
    // Written soon, on its own: it wakes the sequencer, which with these options would
    // otherwise look again only at its one-second tick.
    tokio::time::timeout(std::time::Duration::from_millis(500), async {
        while store.head().size == size {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the follow-up waited for the sequencer's idle tick");
    store.append(vec![conformance::filler(3)]).await.unwrap();
    let all = store.read(0..u64::MAX).await.unwrap();
    let written = |i| written(&all, i);
    assert!(written(1) < written(2) && written(2) < written(101) && written(101) < written(3));
}

/// An append refused while its caller is gone (the disk failing) is kept with its follow-up,
/// and both are written, together and in order, once the disk works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unheard_append_that_fails_is_kept_with_its_follow_up() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::default();
    let store = Arc::new(open_on(&dir.path().join("log.redb"), &disk));
    store.append(vec![conformance::filler(0)]).await.unwrap();
    disk.fail(Some(Failure::Full));
    for i in [1, 2] {
        // Another append holds the sequencer in a write, which will fail: this one waits in the
        // queue when its caller leaves, and is taken by a batch that cannot be written.
        disk.hold_writes(true);
        let before = tokio::spawn({
            let store = store.clone();
            async move { store.append(vec![conformance::filler(10 + i)]).await }
        });
        eventually(5, async || (disk.writes_held() > 0).then_some(())).await;
        submit_and_leave(store.append_heard(vec![conformance::filler(i)], None, follow(100 + i)))
            .await;
        disk.hold_writes(false);
        let r = before.await.unwrap();
        assert!(matches!(r, Err(AppendError::Unavailable(_))), "{r:?}");
    }
    disk.fail(None);
    store.append(vec![conformance::filler(9)]).await.unwrap();
    let all = store.read(0..u64::MAX).await.unwrap();
    let written = |i| written(&all, i);
    assert_eq!(
        [written(1), written(101), written(2), written(102)],
        [0, 1, 2, 3].map(|k| written(1) + k),
        "each append with its follow-up, in order"
    );
    assert!(written(102) < written(9));
    assert_eq!((seq_of(&all, 11), seq_of(&all, 12)), (None, None));
}

/// A filler event whose record is about 600 bytes, so a test reaches the journal's restart with
/// few records.
fn wide(i: u64) -> events::event::Event {
    events::event::Event::UserEnabled {
        user: events::event::Principal(format!("user-{i}-{}@example.com", "x".repeat(480))),
        by: events::event::Principal("conformance".into()),
    }
}

/// Appends `events` one batch at a time, keeping each acknowledged record's seq and hash.
async fn append_all(
    store: &RedbStore<TestFold>,
    batches: impl IntoIterator<Item = Vec<events::event::Event>>,
    acked: &mut Vec<(u64, events::hash::Hash)>,
) {
    for batch in batches {
        let a = store.append(batch).await.unwrap();
        acked.extend((a.first.0..).zip(a.hashes));
    }
}

/// 30 batches of 500 [`wide`] records, about 9 MB: the journal passes its restart point twice.
fn wide_batches() -> impl Iterator<Item = Vec<events::event::Event>> {
    (0..30u64).map(|b| (b * 500..(b + 1) * 500).map(wide).collect())
}

/// Appends [`wide_batches`] until one is refused, keeping what was acknowledged; the refusal.
async fn append_until_refused(
    store: &RedbStore<TestFold>,
    acked: &mut Vec<(u64, events::hash::Hash)>,
) -> Option<AppendError> {
    for batch in wide_batches() {
        match store.append(batch).await {
            Ok(a) => acked.extend((a.first.0..).zip(a.hashes)),
            Err(e) => return Some(e),
        }
    }
    None
}

/// A store whose synced commit at the journal's first restart failed, and then the reopen's
/// rewrite of the index: it refuses appends until [`REWRITE_RETRY`] has passed.
struct RewriteFailed {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    disk: Disk,
    store: RedbStore<TestFold>,
    /// What was acknowledged before the refusal.
    acked: Vec<(u64, events::hash::Hash)>,
    refused: Option<AppendError>,
}

async fn rewrite_failed() -> RewriteFailed {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let disk = Disk::default();
    let store = open_on(&path, &disk);
    let mut acked = Vec::new();
    disk.fail_commit_syncs(1);
    disk.fail_rewrite_syncs(1);
    let refused = append_until_refused(&store, &mut acked).await;
    RewriteFailed {
        _dir: dir,
        path,
        disk,
        store,
        acked,
        refused,
    }
}

/// Every record in `acked` is in the store, at its seq.
async fn holds_all(store: &RedbStore<TestFold>, acked: &[(u64, events::hash::Hash)]) {
    let all = store.read(0..u64::MAX).await.unwrap();
    for (seq, hash) in acked {
        let found = all.get(*seq as usize).map(|r| r.hash);
        assert_eq!(
            found,
            Some(*hash),
            "acknowledged record {seq} is not in the log"
        );
    }
}

/// A synced index commit whose sync answers EIO may have put its pages in the page cache only:
/// Linux marks them clean, a later sync does not write them, and they are gone once the cache
/// drops them. redb's recovery on the next open would commit over them, and the journal, the
/// records' only durable copy, then start over. The file is rewritten as it reads and synced
/// before redb recovers it, so once the cache has dropped what never reached the disk, every
/// acknowledged record is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_whose_sync_failed_at_a_stop_is_made_durable_before_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let disk = Disk::default();
    let store = open_on(&path, &disk);
    let mut acked = Vec::new();
    append_all(&store, (0..40).map(|i| vec![wide(i)]), &mut acked).await;
    // The stop's synced commit of the index fails.
    disk.fail_commit_syncs(1);
    store.shutdown();
    drop(store);
    assert_eq!(disk.failed_syncs(), 1);

    let store = open_on(&path, &disk);
    assert!(
        store.recovered().rewrote_index,
        "an index not closed cleanly was recovered as it was: {:?}",
        store.recovered()
    );
    holds_all(&store, &acked).await;
    append_all(&store, (40..60).map(|i| vec![wide(i)]), &mut acked).await;
    store.shutdown();
    drop(store);

    disk.lose_unsynced();
    let store = open_on(&path, &disk);
    holds_all(&store, &acked).await;
}

/// The same for a synced commit that fails while the store runs (the journal is due to start
/// over): the reopen that follows rewrites the file before redb recovers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_whose_sync_failed_while_running_is_made_durable_before_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let disk = Disk::default();
    let store = open_on(&path, &disk);
    let mut acked = Vec::new();
    disk.fail_commit_syncs(1);
    // The first time the journal passes its restart point, with the failing sync.
    append_all(&store, wide_batches(), &mut acked).await;
    assert_eq!(disk.failed_syncs(), 1);
    store.shutdown();
    drop(store);

    disk.lose_unsynced();
    let store = open_on(&path, &disk);
    holds_all(&store, &acked).await;
}

/// When the host drops the pages of the commit whose sync failed before the store opens again
/// (a reboot), redb falls back to its last synced commit and the journal, which did not start
/// over, holds every record after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_after_an_index_sync_failed_recovers_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let disk = Disk::default();
    let store = open_on(&path, &disk);
    let mut acked = Vec::new();
    append_all(&store, (0..40).map(|i| vec![wide(i)]), &mut acked).await;
    disk.fail_commit_syncs(1);
    store.shutdown();
    drop(store);
    assert_eq!(disk.failed_syncs(), 1);

    disk.lose_unsynced();
    let store = open_on(&path, &disk);
    holds_all(&store, &acked).await;
}

/// A running store reopens after a failed index write and recovers from its journal. Should
/// a frame of its last, acknowledged batch read as damaged by then, recovery would take the
/// batch for one a crash cut short and drop it, clearing the journal, the records' only
/// durable copy: the reopen refuses instead, and leaves the journal as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_that_would_lose_acknowledged_records_refuses_and_keeps_the_journal() {
    // The batch of the failed commit is the last acknowledged, and no reopen touches the
    // journal until the retry delay has passed.
    let RewriteFailed {
        _dir,
        path,
        disk,
        store,
        refused,
        ..
    } = rewrite_failed().await;
    assert!(refused.is_some(), "no append was refused");
    // The host drops the index's pages that never reached the disk: the journal alone holds
    // the batches after redb's last synced commit. Then a byte in the middle of the
    // acknowledged last batch (500 frames) goes bad.
    disk.lose_unsynced();
    let journal = events::store::redb::journal_path(&path);
    let mut bytes = std::fs::read(&journal).unwrap();
    let frames: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter_map(|(at, w)| (w == b"RGJ2").then_some(at))
        .collect();
    let damaged = frames[frames.len() - 250] + 100;
    bytes[damaged] ^= 0xFF;
    std::fs::write(&journal, &bytes).unwrap();
    tokio::time::sleep(REWRITE_RETRY + std::time::Duration::from_millis(100)).await;
    let refused = store.append(vec![wide(1_000_000)]).await;
    let Err(AppendError::Unavailable(why)) = refused else {
        panic!("a reopen that lost acknowledged records took an append: {refused:?}");
    };
    assert!(
        why.contains("no longer gives acknowledged records"),
        "{why}"
    );
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        bytes,
        "the journal was changed"
    );
    store.shutdown();
}

/// A rewrite that fails (its sync answers EIO too) fails the reopen, which refuses appends,
/// says why, and recovers nothing: when the cache drops what never reached the disk meanwhile,
/// the next open still finds every acknowledged record. A reopen within [`REWRITE_RETRY`] of
/// the failure does not touch the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_that_fails_refuses_appends_and_recovers_nothing() {
    let RewriteFailed {
        _dir,
        path,
        disk,
        store,
        mut acked,
        refused,
    } = rewrite_failed().await;
    let Some(AppendError::Unavailable(why)) = refused else {
        panic!("no append was refused while the index could not be rewritten: {refused:?}");
    };
    assert!(why.contains("rewriting it to make it durable"), "{why}");
    assert_eq!(disk.failed_syncs(), 2);
    // The rewrite would work now: refused all the same, for the same reason, until the delay.
    let syncs = disk.syncs();
    let again = store.append(vec![wide(100_000)]).await;
    let Err(AppendError::Unavailable(why)) = again else {
        panic!("tried again within the retry delay: {again:?}");
    };
    assert!(why.contains("rewriting it to make it durable"), "{why}");
    assert_eq!(
        disk.syncs(),
        syncs,
        "the file was touched within the retry delay"
    );
    store.shutdown();
    drop(store);

    disk.lose_unsynced();
    let store = open_on(&path, &disk);
    holds_all(&store, &acked).await;
    append_all(&store, (0..3).map(|i| vec![wide(200_000 + i)]), &mut acked).await;
    holds_all(&store, &acked).await;
}

/// After a failed rewrite, a reopen once [`REWRITE_RETRY`] has passed rewrites the file and the
/// running store takes appends again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_rewrite_failed_works_again_after_the_retry_delay() {
    let RewriteFailed {
        _dir,
        path,
        disk,
        store,
        mut acked,
        refused,
    } = rewrite_failed().await;
    assert!(refused.is_some(), "no append was refused");
    tokio::time::sleep(REWRITE_RETRY + std::time::Duration::from_millis(100)).await;
    append_all(&store, (0..3).map(|i| vec![wide(100_000 + i)]), &mut acked).await;
    store.shutdown();
    drop(store);

    disk.lose_unsynced();
    let store = open_on(&path, &disk);
    holds_all(&store, &acked).await;
}

/// A store is open in one process (or one handle) at a time, held by its lock file from before
/// the database is opened, so no second opener can rewrite or recover the file meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_a_store_is_refused_by_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let store = RedbStore::open(&path, options(), TestFold::default()).unwrap();
    let Err(e) = RedbStore::open(&path, options(), TestFold::default()) else {
        panic!("a second open of a store in use worked");
    };
    assert!(e.to_string().contains("open in another process"), "{e}");
    drop(store);
    RedbStore::open(&path, options(), TestFold::default()).unwrap();
}

/// A reopen that rewrote the index and then failed (the replay's commit, on a disk that stays
/// full: the rewrite writes blocks the file has, the commit needs more) is not tried again for
/// every append: each would read, write and sync the whole index again on the sequencer's
/// thread. Appends are refused at once until [`REWRITE_RETRY`] has passed; then the reopen is
/// tried again, and the store goes on once the disk has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopen_that_rewrote_the_index_in_vain_is_not_tried_again_for_every_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let disk = Disk::default();
    let store = open_on(&path, &disk);
    let mut acked = Vec::new();
    disk.index_cannot_grow(true);
    let refused = append_until_refused(&store, &mut acked).await;
    assert!(refused.is_some(), "the index grew on a full disk");
    // One append now reopens the store, rewriting the index (a sync), and fails again.
    let _ = store.append(vec![wide(100_000)]).await;
    let syncs = disk.syncs();
    for i in 1..6 {
        let again = store.append(vec![wide(100_000 + i)]).await;
        // A rewrite of this small index takes milliseconds: held back the least, and said.
        assert!(
            matches!(&again, Err(AppendError::Unavailable(why)) if why.contains("tries again after 1 s")),
            "appended while the index cannot grow, or not told when it is tried again: {again:?}"
        );
    }
    assert_eq!(
        disk.syncs(),
        syncs,
        "the index was rewritten again within REWRITE_RETRY"
    );
    disk.index_cannot_grow(false);
    tokio::time::sleep(REWRITE_RETRY).await;
    append_all(&store, [vec![wide(200_000)]], &mut acked).await;
    holds_all(&store, &acked).await;
}
