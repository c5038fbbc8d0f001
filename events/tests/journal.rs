//! The store's journal, where an append becomes durable: records and checkpoints acknowledged
//! but indexed only in unsynced redb commits come back on open; a batch cut short by a crash is
//! dropped from its first lost frame on, even frames the disk kept after it, however the tear
//! falls; damage followed by intact records of a later batch refuses to open, and so does a
//! journaled checkpoint the store did not sign; a journal of the first frame format still
//! opens; a reader refuses a store whose journal holds records redb has not indexed, and after
//! a clean stop needs no journal.
//!
//! A crash is taken as a copy of both files while the store is open and idle: what a killed
//! process leaves on disk (redb at its last synced commit, the journal with every acknowledged
//! batch).
// Test code: helpers outside `#[test]` functions may fail the test by panicking.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use events::checkpoint::{self, NoteSigner};
use events::hash;
use events::store::conformance::{self, TestFold};
use events::store::redb::{LogReader, Options, Recovery, RedbStore, journal_path};
use events::store::{CheckpointPolicy, EventStore, StoreError};

const ORIGIN: &str = "journal.example/log";

/// No checkpoint after the first: every later record is indexed only in unsynced commits.
fn open(dir: &Path) -> Result<RedbStore<TestFold>, StoreError> {
    open_every(dir, 1_000_000)
}

/// A checkpoint at the first batch boundary at or after every `every` records.
fn open_every(dir: &Path, every: u64) -> Result<RedbStore<TestFold>, StoreError> {
    RedbStore::open(
        &dir.join("log.redb"),
        Options {
            origin: ORIGIN.into(),
            signer: NoteSigner::from_seed(ORIGIN, [7; 32]).unwrap(),
            policy: CheckpointPolicy {
                every,
                after: Duration::from_secs(3600),
                heartbeat: Duration::from_secs(3600),
            },
        },
        TestFold::default(),
    )
}

/// Opens the store in `dir` as another configuration would, `origin` signed with the key of
/// `seed`, and says why it was refused as incompatible (the test fails if it opens, or is
/// refused for another reason).
fn incompatible_as(dir: &Path, origin: &str, seed: u8) -> String {
    let opened = RedbStore::open(
        &dir.join("log.redb"),
        Options {
            origin: origin.into(),
            signer: NoteSigner::from_seed(origin, [seed; 32]).unwrap(),
            policy: CheckpointPolicy::default(),
        },
        TestFold::default(),
    );
    let refused = opened.err();
    assert!(
        matches!(refused, Some(StoreError::Incompatible(_))),
        "opened as {origin} with key seed {seed}: {refused:?}"
    );
    match refused {
        Some(StoreError::Incompatible(what)) => what,
        _ => String::new(),
    }
}

/// Copies the store's two files from `from` into a new directory.
fn crash_copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    let db = from.join("log.redb");
    std::fs::copy(&db, to.path().join("log.redb")).unwrap();
    std::fs::copy(journal_path(&db), journal_path(&to.path().join("log.redb"))).unwrap();
    to
}

/// The length of a frame's header: magic, the payload's length, the number (a record's seq or a
/// checkpoint's number), the batch's number in the pass, the frame's index in its batch, the
/// batch's frame count, the hash (SHA-256 of the header's first 32 bytes and the payload's
/// digest: a record's leaf hash, a note's SHA-256).
const HEADER: usize = 64;
/// The header of the first frame format (no batch; the hash is the payload's digest).
const HEADER_V1: usize = 48;

/// A frame of the journal: `RGJ2` (a record) or `RGC2` (a checkpoint).
#[derive(Clone, Copy, Debug)]
struct Frame {
    pos: usize,
    len: usize,
    checkpoint: bool,
    number: u64,
    batch: u64,
}

impl Frame {
    fn payload(self) -> std::ops::Range<usize> {
        self.pos + HEADER..self.pos + HEADER + self.len
    }
}

/// The frames from offset 0 on, as long as they follow each other: the latest pass over the
/// journal, and any of an earlier pass that its last frame happens to end next to.
fn frames(journal: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + HEADER <= journal.len() {
        let checkpoint = match &journal[pos..pos + 4] {
            b"RGJ2" => false,
            b"RGC2" => true,
            _ => break,
        };
        let len = u32::from_le_bytes(journal[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let number = u64::from_le_bytes(journal[pos + 8..pos + 16].try_into().unwrap());
        let batch = u64::from_le_bytes(journal[pos + 16..pos + 24].try_into().unwrap());
        out.push(Frame {
            pos,
            len,
            checkpoint,
            number,
            batch,
        });
        pos += HEADER + len;
    }
    out
}

/// The record frame of `seq`.
fn record_frame(journal: &[u8], seq: u64) -> Frame {
    *record_frames(journal)
        .iter()
        .find(|f| f.number == seq)
        .unwrap()
}

/// The frame of checkpoint `number`.
fn checkpoint_frame(journal: &[u8], number: u64) -> Frame {
    *frames(journal)
        .iter()
        .find(|f| f.checkpoint && f.number == number)
        .unwrap()
}

fn record_frames(journal: &[u8]) -> Vec<Frame> {
    frames(journal)
        .into_iter()
        .filter(|f| !f.checkpoint)
        .collect()
}

/// Asserts that opening was refused as corrupt at seq `at`, with a message that says `says`.
#[allow(clippy::panic, reason = "a test helper fails the test by panicking")]
fn refused_as_corrupt(opened: Result<RedbStore<TestFold>, StoreError>, at: u64, says: &str) {
    match opened {
        Err(StoreError::Corrupt { seq, what }) => {
            assert_eq!(seq.0, at, "{what}");
            assert!(what.contains(says), "{what}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(s) => panic!("opened with {} records", s.head().size),
    }
}

fn journal_of(dir: &Path) -> PathBuf {
    journal_path(&dir.join("log.redb"))
}

/// The leaf hashes of the records of `store` in `range`.
async fn hashes_of(store: &RedbStore<TestFold>, range: std::ops::Range<u64>) -> Vec<[u8; 32]> {
    store
        .read(range)
        .await
        .unwrap()
        .iter()
        .map(|r| r.hash.0)
        .collect()
}

/// A store with 40 acknowledged records after its first checkpoint, open and idle.
async fn store_with_journaled_records() -> (tempfile::TempDir, RedbStore<TestFold>, Vec<[u8; 32]>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    for i in 0..40 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    let hashes = hashes_of(&store, 0..u64::MAX).await;
    (dir, store, hashes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_only_in_the_journal_come_back_on_open() {
    let (dir, store, hashes) = store_with_journaled_records().await;
    assert_eq!(hashes.len(), 41);
    let copy = crash_copy(dir.path());

    // Without its journal, the copy holds only redb's synced commits: the journal is needed.
    let bare = tempfile::tempdir().unwrap();
    std::fs::copy(copy.path().join("log.redb"), bare.path().join("log.redb")).unwrap();
    let without = open(bare.path()).unwrap();
    assert!(
        without.head().size < 41,
        "redb alone kept {} records: the unsynced commits reached its file",
        without.head().size
    );
    drop(without);

    let reopened = open(copy.path()).unwrap();
    assert_eq!(
        reopened.recovered(),
        Recovery {
            rewrote_index: true,
            ..Recovery::default()
        },
        "nothing dropped; the index, not closed cleanly, rewritten before its recovery"
    );
    let back = hashes_of(&reopened, 0..u64::MAX).await;
    assert_eq!(back, hashes, "every acknowledged record, unchanged");
    assert_eq!(
        reopened.with_state(|s| s.clone()),
        store.with_state(|s| s.clone())
    );
    // The log goes on from there, and a reader sees all of it after a clean stop.
    reopened
        .append(vec![conformance::filler(99)])
        .await
        .unwrap();
    drop(reopened);
    // A store stopped cleanly reopens with nothing to report (its journal started over).
    let again = open(copy.path()).unwrap();
    assert_eq!(again.recovered(), Recovery::default(), "a clean stop");
    drop(again);
    assert_eq!(
        LogReader::open(&copy.path().join("log.redb"))
            .unwrap()
            .len()
            .unwrap(),
        42
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_short_by_a_crash_is_dropped_and_the_rest_kept() {
    let (dir, _store, hashes) = store_with_journaled_records().await;
    let copy = crash_copy(dir.path());
    let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
    let last = *frames(&journal).last().unwrap();
    assert!(
        !last.checkpoint && last.number == 40,
        "the last frame is the last acknowledged record: {last:?}"
    );
    // The last write stopped halfway through its record.
    tear(&mut journal, last);
    std::fs::write(journal_of(copy.path()), &journal).unwrap();

    let reopened = open(copy.path()).unwrap();
    let back = hashes_of(&reopened, 0..u64::MAX).await;
    assert_eq!(back, hashes[..40], "all but the torn record");
    assert_eq!(
        reopened.recovered(),
        Recovery {
            cut_short_at: Some(last.pos as u64),
            rewrote_index: true,
            ..Recovery::default()
        },
        "the frame that is not whole is reported where it begins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_before_intact_records_refuses_to_open() {
    let (dir, _store, _) = store_with_journaled_records().await;
    let copy = crash_copy(dir.path());
    let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
    let all = record_frames(&journal);
    let Frame {
        pos,
        len,
        number: seq,
        ..
    } = all[all.len() / 2];
    journal[pos + HEADER + len - 3] ^= 0x01;
    std::fs::write(journal_of(copy.path()), &journal).unwrap();

    refused_as_corrupt(open(copy.path()), seq, "journal is damaged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_refuses_records_the_index_does_not_hold_yet() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    for i in 0..10 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    drop(store);
    // A clean copy with 11 records, then 10 more journaled (and not indexed) on the original.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("log.redb"), copy.path().join("log.redb")).unwrap();
    let store = open(dir.path()).unwrap();
    for i in 10..20 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    std::fs::copy(journal_of(dir.path()), journal_of(copy.path())).unwrap();
    drop(store);

    let db = copy.path().join("log.redb");
    let err = LogReader::open(&db).err().expect("the reader must refuse");
    let text = err.to_string();
    assert!(
        text.contains(
            "10 records (from seq 11) and 0 checkpoints (from number 2) are in the journal"
        ),
        "{text}"
    );
    // Opening the store once indexes them; then the reader sees all 21.
    drop(open(copy.path()).unwrap());
    assert_eq!(LogReader::open(&db).unwrap().len().unwrap(), 21);
}

/// A store with checkpoints every 10 records, 35 records appended one by one, open and idle:
/// records 0..=35 and checkpoints 0..=3 (sizes 1, 11, 21, 31) live only in the journal.
async fn store_with_journaled_checkpoints() -> (tempfile::TempDir, RedbStore<TestFold>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_every(dir.path(), 10).unwrap();
    for i in 0..35 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_checkpoints_only_in_the_journal_come_back_on_open() {
    let (dir, store) = store_with_journaled_checkpoints().await;
    let cps = store.checkpoints(0..u64::MAX).await.unwrap();
    let sizes: Vec<u64> = cps.iter().map(|c| c.checkpoint.size).collect();
    assert_eq!(sizes, [1, 11, 21, 31]);
    let copy = crash_copy(dir.path());
    let journal = std::fs::read(journal_of(copy.path())).unwrap();
    let numbers: Vec<u64> = frames(&journal)
        .iter()
        .filter(|f| f.checkpoint)
        .map(|f| f.number)
        .collect();
    assert_eq!(numbers, [0, 1, 2, 3], "every checkpoint is journaled");

    let reopened = open_every(copy.path(), 10).unwrap();
    let back = reopened.checkpoints(0..u64::MAX).await.unwrap();
    let notes = |v: &[events::checkpoint::SignedCheckpoint]| {
        v.iter().map(|c| c.note.clone()).collect::<Vec<_>>()
    };
    assert_eq!(notes(&back), notes(&cps), "the same signed notes, in order");
    assert_eq!(reopened.head(), store.head());
    // The next checkpoint follows them with the next number.
    for i in 35..40 {
        reopened.append(vec![conformance::filler(i)]).await.unwrap();
    }
    let after = reopened.checkpoints(0..u64::MAX).await.unwrap();
    assert_eq!(after.len(), 5);
    assert_eq!(after[4].checkpoint.size, 41);
    let key = NoteSigner::from_seed(ORIGIN, [7; 32]).unwrap().verifier();
    for cp in &after {
        checkpoint::open_checkpoint(cp.note.as_bytes(), ORIGIN, &key).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_checkpoint_frame_is_dropped_with_its_batch_and_the_rest_kept() {
    let (dir, store) = store_with_journaled_checkpoints().await;
    let hashes = hashes_of(&store, 0..31).await;
    let copy = crash_copy(dir.path());
    let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
    let cp = checkpoint_frame(&journal, 3);
    // The crash tore the checkpoint's note; nothing after it reached the disk.
    let end = journal.len();
    journal[cp.pos + HEADER + cp.len / 2..end].fill(0);
    std::fs::write(journal_of(copy.path()), &journal).unwrap();

    let reopened = open_every(copy.path(), 10).unwrap();
    let sizes: Vec<u64> = reopened
        .checkpoints(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|c| c.checkpoint.size)
        .collect();
    assert_eq!(sizes, [1, 11, 21], "the torn checkpoint is not indexed");
    let back = hashes_of(&reopened, 0..u64::MAX).await;
    assert_eq!(back, hashes, "the records before the torn frame are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_checkpoint_the_store_did_not_sign_refuses_to_open() {
    let (dir, _store) = store_with_journaled_checkpoints().await;
    let copy = crash_copy(dir.path());
    let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
    let cp = checkpoint_frame(&journal, 2);
    // The same checkpoint signed by another key of the same name, with a whole frame around it.
    let note = std::str::from_utf8(&journal[cp.payload()]).unwrap();
    let (parsed, _) = checkpoint::parse_unverified(note.as_bytes()).unwrap();
    let forged = NoteSigner::from_seed(ORIGIN, [8; 32])
        .unwrap()
        .sign(&parsed)
        .note;
    assert_eq!(forged.len(), cp.len);
    journal[cp.payload()].copy_from_slice(forged.as_bytes());
    let note_digest = hash::object_digest(forged.as_bytes());
    let digest = hash::object_digest(&[&journal[cp.pos..cp.pos + 32], &note_digest.0].concat());
    journal[cp.pos + 32..cp.pos + HEADER].copy_from_slice(&digest.0);
    std::fs::write(journal_of(copy.path()), &journal).unwrap();

    refused_as_corrupt(
        open_every(copy.path(), 10),
        21,
        "journaled checkpoint 2 does not verify",
    );
}

/// Another key set after a crash (keys made anew, another log's) is named as such, here where
/// even the log's first checkpoint is only in the journal: the refusal does not read as a
/// damaged journal, and nothing is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_or_origin_after_a_crash_are_refused_as_such() {
    let (dir, _store) = store_with_journaled_checkpoints().await;
    let copy = crash_copy(dir.path());
    let what = incompatible_as(copy.path(), ORIGIN, 9);
    assert!(what.contains("first checkpoint"), "{what}");
    assert!(what.contains("is not signed by this key"), "{what}");
    assert!(what.contains("restore the log's own keys"), "{what}");
    // Another origin configured: named as the origin, not as a journaled checkpoint.
    let what = incompatible_as(copy.path(), "other.example/log", 7);
    assert!(
        what.contains(&format!("the log's origin is {ORIGIN:?}")),
        "{what}"
    );
    // Nothing was replayed or changed: the log's own keys open it, every checkpoint back.
    let reopened = open_every(copy.path(), 10).unwrap();
    assert_eq!(reopened.checkpoints(0..u64::MAX).await.unwrap().len(), 4);
}

/// Foreign keys after a crash where the database holds a checkpoint and the journal holds
/// more records: refused on the database's checkpoint before the journal is replayed, and
/// nothing lost by the refusal: the log's own keys then get every acknowledged record back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_keys_are_refused_before_the_journal_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    for i in 0..5 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    drop(store);
    let store = open(dir.path()).unwrap();
    for i in 5..10 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    let hashes = hashes_of(&store, 0..u64::MAX).await;
    let copy = crash_copy(dir.path());
    let journal = std::fs::read(journal_of(copy.path())).unwrap();
    assert!(
        frames(&journal)
            .iter()
            .any(|f| !f.checkpoint && f.number >= 6),
        "the journal holds the records appended after the clean stop"
    );

    let what = incompatible_as(copy.path(), ORIGIN, 9);
    assert!(what.contains("newest checkpoint (size 6)"), "{what}");
    assert!(what.contains("is not signed by this key"), "{what}");
    assert!(
        std::fs::read(journal_of(copy.path())).unwrap() == journal,
        "the refused open replayed nothing: the journal is as the crash left it"
    );
    let reopened = open(copy.path()).unwrap();
    assert_eq!(hashes_of(&reopened, 0..u64::MAX).await, hashes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_checkpoint_frame_before_intact_records_refuses_to_open() {
    let (dir, _store) = store_with_journaled_checkpoints().await;
    let copy = crash_copy(dir.path());
    let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
    let cp = checkpoint_frame(&journal, 1);
    journal[cp.pos + HEADER + cp.len - 5] ^= 0x01;
    std::fs::write(journal_of(copy.path()), &journal).unwrap();

    refused_as_corrupt(open_every(copy.path(), 10), 11, "journal is damaged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_right_after_a_checkpoint_leaves_nothing_to_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_every(dir.path(), 10).unwrap();
    for i in 0..10 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    let cps = store.checkpoints(0..u64::MAX).await.unwrap();
    assert_eq!(
        cps.last().unwrap().checkpoint.size,
        store.head().size,
        "the last batch cut a checkpoint: the stop has nothing to seal"
    );
    drop(store);
    // The reader sees redb alone: it must hold every record and checkpoint, synced.
    let reader = LogReader::open(&dir.path().join("log.redb")).unwrap();
    assert_eq!(reader.len().unwrap(), 11);
    assert_eq!(reader.checkpoints().unwrap().len(), cps.len());
}

/// Zeroes the second half of `frame`'s payload: its write did not reach the disk whole.
fn tear(journal: &mut [u8], frame: Frame) {
    journal[frame.pos + HEADER + frame.len / 2..frame.payload().end].fill(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_batch_followed_by_an_intact_one_refuses_to_open() {
    let (dir, _store, _) = store_with_journaled_records().await;
    let copy = crash_copy(dir.path());
    let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
    let (torn, kept) = (record_frame(&journal, 39), record_frame(&journal, 40));
    assert_eq!(
        kept.batch,
        torn.batch + 1,
        "one append, one batch: {torn:?} {kept:?}"
    );
    // Batch 40 was written only once batch 39 was durable: losing 39 is damage, not a crash.
    tear(&mut journal, torn);
    std::fs::write(journal_of(copy.path()), &journal).unwrap();

    refused_as_corrupt(open(copy.path()), 39, "journal is damaged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_first_frame_was_lost_is_dropped_whole_and_the_log_goes_on() {
    let (dir, store, hashes) = store_with_journaled_records().await;
    let three = (0..3).map(|i| conformance::filler(200 + i)).collect();
    store.append(three).await.unwrap();
    // The power failed during the batch's write: the disk kept its later frames, and of its
    // first half of it (its header whole), or nothing (not even its magic).
    let mut opened = Vec::new();
    for whole in [false, true] {
        let copy = crash_copy(dir.path());
        let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
        let batch: Vec<Frame> = (41..44).map(|seq| record_frame(&journal, seq)).collect();
        assert!(batch.iter().all(|f| f.batch == batch[0].batch), "{batch:?}");
        if whole {
            journal[batch[0].pos..batch[0].payload().end].fill(0);
        } else {
            tear(&mut journal, batch[0]);
        }
        std::fs::write(journal_of(copy.path()), &journal).unwrap();

        let reopened = open(copy.path()).unwrap();
        assert_eq!(
            hashes_of(&reopened, 0..u64::MAX).await,
            hashes,
            "the batch is dropped whole (first frame lost whole: {whole})"
        );
        assert_eq!(
            reopened.recovered(),
            Recovery {
                dropped: 2,
                cut_short_at: Some(batch[0].pos as u64),
                rewrote_index: true,
                ..Recovery::default()
            },
            "its two later frames dropped, and the byte where the batch breaks reported (first \
             frame lost whole: {whole})"
        );
        opened.push((copy, reopened));
    }
    let (copy, reopened) = opened.pop().unwrap();
    // Its frames are gone from the file: the next crash does not take them for damage.
    let after = reopened
        .append(vec![conformance::filler(300)])
        .await
        .unwrap();
    assert_eq!(after.first.0, 41);
    let again = crash_copy(copy.path());
    drop(reopened);
    let reopened = open(again.path()).unwrap();
    let back = hashes_of(&reopened, 0..u64::MAX).await;
    assert_eq!(back[..41], hashes[..]);
    assert_eq!(back[41..], [after.hashes[0].0]);
}

/// The index lost commits its sync acknowledged (a failed sync whose pages the page cache kept,
/// then dropped): the journal's pass, restarted once they were indexed, begins past the
/// index's end. Its first batch is intact, not a torn write: the open is refused, never
/// taken short with the seqs between reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_beginning_past_the_index_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    for i in 0..5 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    store.shutdown();
    drop(store);
    let older = std::fs::read(dir.path().join("log.redb")).unwrap();
    let store = open(dir.path()).unwrap();
    let lost = store.head().size;
    for i in 5..10 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    store.shutdown();
    drop(store);
    let store = open(dir.path()).unwrap();
    let first = store.head().size;
    let three = (10..13).map(conformance::filler).collect();
    store.append(three).await.unwrap();
    let copy = crash_copy(dir.path());
    drop(store);
    let journal = std::fs::read(journal_of(copy.path())).unwrap();
    let pass = record_frames(&journal);
    assert_eq!(
        (pass[0].pos, pass[0].number, pass[0].batch),
        (0, first, 0),
        "the pass begins with the one batch"
    );
    // The index as it was before the commits it lost.
    std::fs::write(copy.path().join("log.redb"), &older).unwrap();

    refused_as_corrupt(open(copy.path()), lost, "were lost");
}

/// `journal` rewritten in the first frame format (48-byte headers, `RGJ1` with the record's
/// leaf hash, `RGC1` with the note's SHA-256), as the store wrote it before frames carried
/// their batch.
fn first_format(journal: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames(journal) {
        let payload = &journal[f.payload()];
        let (magic, digest) = if f.checkpoint {
            (b"RGC1", hash::object_digest(payload))
        } else {
            (b"RGJ1", hash::leaf_hash(payload))
        };
        out.extend_from_slice(magic);
        out.extend_from_slice(&(f.len as u32).to_le_bytes());
        out.extend_from_slice(&f.number.to_le_bytes());
        out.extend_from_slice(&digest.0);
        out.extend_from_slice(payload);
    }
    out.resize(journal.len(), 0);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_of_the_first_frame_format_still_opens() {
    let (dir, store) = store_with_journaled_checkpoints().await;
    let hashes = hashes_of(&store, 0..u64::MAX).await;
    let cps = store.checkpoints(0..u64::MAX).await.unwrap();
    let copy = crash_copy(dir.path());
    let journal = std::fs::read(journal_of(copy.path())).unwrap();
    let old = first_format(&journal);
    assert!(
        frames(&old).is_empty(),
        "no frame of the current format is left"
    );
    std::fs::write(journal_of(copy.path()), &old).unwrap();

    let reopened = open_every(copy.path(), 10).unwrap();
    assert_eq!(hashes_of(&reopened, 0..u64::MAX).await, hashes);
    assert_eq!(
        reopened.checkpoints(0..u64::MAX).await.unwrap().len(),
        cps.len()
    );

    // Damage before intact frames of the first format is still refused: they carry no batch.
    let mut damaged = first_format(&journal);
    let at = frames(&journal)
        .iter()
        .take_while(|f| f.checkpoint || f.number != 20)
        .map(|f| HEADER_V1 + f.len)
        .sum::<usize>();
    damaged[at + HEADER_V1 + 3] ^= 0x01;
    let copy = crash_copy(dir.path());
    std::fs::write(journal_of(copy.path()), &damaged).unwrap();
    refused_as_corrupt(open_every(copy.path(), 10), 20, "journal is damaged");
}

/// A store's two files as a crash leaves them after appends of several events each (one batch
/// per append), and the leaf hashes of its records. Built once for the properties below.
struct Crashed {
    db: Vec<u8>,
    journal: Vec<u8>,
    hashes: Vec<[u8; 32]>,
}

/// Events per append: the last batch has four frames, so a crash can tear it in many ways.
const BATCHES: [u64; 8] = [1, 3, 2, 4, 1, 2, 3, 4];

fn crashed() -> &'static Crashed {
    static CRASHED: std::sync::OnceLock<Crashed> = std::sync::OnceLock::new();
    CRASHED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path()).unwrap();
            let mut i = 0;
            for n in BATCHES {
                let events = (i..i + n).map(conformance::filler).collect();
                store.append(events).await.unwrap();
                i += n;
            }
            let hashes = hashes_of(&store, 0..u64::MAX).await;
            let copy = crash_copy(dir.path());
            Crashed {
                db: std::fs::read(copy.path().join("log.redb")).unwrap(),
                journal: std::fs::read(journal_of(copy.path())).unwrap(),
                hashes,
            }
        })
    })
}

/// Opens the crashed store with `journal` in place of its journal.
fn open_with_journal(
    journal: &[u8],
) -> (tempfile::TempDir, Result<RedbStore<TestFold>, StoreError>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("log.redb"), &crashed().db).unwrap();
    std::fs::write(journal_of(dir.path()), journal).unwrap();
    let opened = open(dir.path());
    (dir, opened)
}

/// The record frames of earlier batches, and those of the last batch.
fn by_last_batch(journal: &[u8]) -> (Vec<Frame>, Vec<Frame>) {
    let records = record_frames(journal);
    let last = records.last().unwrap().batch;
    records.into_iter().partition(|f| f.batch < last)
}

/// Damages `frame` one of three ways: its payload's second half zeroed (a write cut short),
/// the whole frame zeroed (never written), or one payload byte flipped.
fn damage(journal: &mut [u8], frame: Frame, how: u8) {
    match how % 3 {
        0 => tear(journal, frame),
        1 => journal[frame.pos..frame.payload().end].fill(0),
        _ => journal[frame.payload().end - 1] ^= 0x40,
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(48))]

    /// However a crash tears the last batch (any of its frames, in any order), the store opens
    /// with every record before the first frame lost, and nothing after it.
    #[test]
    fn any_tear_of_the_last_batch_keeps_what_precedes_it(lost in 1u8..16, how in 0u8..3) {
        let c = crashed();
        let mut journal = c.journal.clone();
        let (_, batch) = by_last_batch(&journal);
        proptest::prop_assert_eq!(batch.len(), 4);
        let torn: Vec<Frame> = (0..4).filter(|i| lost & (1 << i) != 0).map(|i| batch[i]).collect();
        for f in &torn {
            damage(&mut journal, *f, how);
        }

        let (_dir, opened) = open_with_journal(&journal);
        let store = opened.unwrap();
        let kept = torn[0].number;
        proptest::prop_assert_eq!(store.head().size, kept);
        proptest::prop_assert_eq!(store.head().hash.0, c.hashes[kept as usize - 1]);
    }

    /// Damage to any frame of an earlier batch, with the batches after it intact, refuses to
    /// open at that frame's record.
    #[test]
    fn damage_before_the_last_batch_refuses_to_open(pick in 0usize..1000, how in 0u8..3) {
        let c = crashed();
        let mut journal = c.journal.clone();
        let (earlier, _) = by_last_batch(&journal);
        let frame = earlier[pick % earlier.len()];
        damage(&mut journal, frame, how);

        let (_dir, opened) = open_with_journal(&journal);
        match opened {
            Err(StoreError::Corrupt { seq, what }) => {
                proptest::prop_assert_eq!(seq.0, frame.number, "{}", what);
                proptest::prop_assert!(what.contains("journal is damaged"), "{}", what);
            }
            Err(e) => proptest::prop_assert!(false, "wrong error: {}", e),
            Ok(s) => proptest::prop_assert!(false, "opened with {} records", s.head().size),
        }
    }
}

/// A recovery that dropped a torn batch, then could not empty the journal (it failed, or the
/// process died first): the next open finds redb already holding every intact frame and the
/// torn batch's leftovers after them. That is the same crash seen twice, not damage, and the
/// store opens with every acknowledged record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_batch_seen_again_after_its_recovery_is_still_a_crash() {
    let (dir, store, hashes) = store_with_journaled_records().await;
    let three = (0..3).map(|i| conformance::filler(200 + i)).collect();
    store.append(three).await.unwrap();
    let copy = crash_copy(dir.path());
    let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
    let first = record_frame(&journal, 41);
    tear(&mut journal, first);
    std::fs::write(journal_of(copy.path()), &journal).unwrap();
    // The first recovery indexes records 0..41 in a synced commit and drops the torn batch.
    let recovered = open(copy.path()).unwrap();
    assert_eq!(hashes_of(&recovered, 0..u64::MAX).await, hashes);
    drop(recovered);
    // Its journal as it was before being emptied.
    std::fs::write(journal_of(copy.path()), &journal).unwrap();
    let again = open(copy.path()).unwrap();
    assert_eq!(hashes_of(&again, 0..u64::MAX).await, hashes);
}

/// The first block of the journal, as the direct writes align them.
const BLOCK: usize = 4096;

/// The journal starts over at offset 0 once redb holds everything durably, over the frames of
/// its previous pass. A crash during the new pass's first write may keep a later block of it
/// and lose the first, which then holds whatever it held before that write: that is a batch
/// cut short, dropped, never damage that refuses to open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_passs_first_write_cut_short_over_an_old_pass_is_still_a_crash() {
    let (dir, store, hashes) = store_with_journaled_records().await;
    // A clean stop syncs redb; the next open starts the journal over.
    drop(store);
    let store = open(dir.path()).unwrap();
    let before = std::fs::read(journal_of(dir.path())).unwrap();
    // One write over several blocks: the new pass's first batch.
    let batch: Vec<_> = (0..60).map(|i| conformance::filler(500 + i)).collect();
    store.append(batch).await.unwrap();
    let copy = crash_copy(dir.path());
    let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
    let written = record_frames(&journal);
    assert_eq!(written.first().map(|f| (f.pos, f.number)), Some((0, 41)));
    let last = record_frame(&journal, 100);
    assert!(last.pos > 2 * BLOCK, "the batch spans blocks: {last:?}");
    // The power failed during that write: its first block kept what it held before.
    journal[..BLOCK].copy_from_slice(&before[..BLOCK]);
    std::fs::write(journal_of(copy.path()), &journal).unwrap();

    let reopened = open(copy.path()).unwrap();
    assert_eq!(
        hashes_of(&reopened, 0..u64::MAX).await,
        hashes,
        "the cut batch is dropped, everything acknowledged before it kept"
    );
}
