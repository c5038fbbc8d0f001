//! The store's journal, where an append becomes durable: records acknowledged but indexed only in
//! unsynced redb commits come back on open; a batch cut short by a crash is dropped; damage
//! followed by intact records refuses to open; a reader refuses a store whose journal holds
//! records redb has not indexed.
//!
//! A crash is taken as a copy of both files while the store is open and idle: what a killed
//! process leaves on disk (redb at its last synced commit, the journal with every acknowledged
//! batch).
// Test code: helpers outside `#[test]` functions may fail the test by panicking.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use events::checkpoint::NoteSigner;
use events::store::conformance::{self, TestFold};
use events::store::redb::{LogReader, Options, RedbStore, journal_path};
use events::store::{CheckpointPolicy, EventStore, StoreError};

const ORIGIN: &str = "journal.example/log";

/// No checkpoint after the first, so every later record is indexed only in unsynced commits.
fn open(dir: &Path) -> Result<RedbStore<TestFold>, StoreError> {
    RedbStore::open(
        &dir.join("log.redb"),
        Options {
            origin: ORIGIN.into(),
            signer: NoteSigner::from_seed(ORIGIN, [7; 32]).unwrap(),
            policy: CheckpointPolicy {
                every: 1_000_000,
                after: Duration::from_secs(3600),
                heartbeat: Duration::from_secs(3600),
            },
        },
        TestFold::default(),
    )
}

/// Copies the store's two files from `from` into a new directory.
fn crash_copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    let db = from.join("log.redb");
    std::fs::copy(&db, to.path().join("log.redb")).unwrap();
    std::fs::copy(journal_path(&db), journal_path(&to.path().join("log.redb"))).unwrap();
    to
}

/// The frames of the current pass over a journal: (offset, record length, seq). A frame is
/// `RGJ1`, length, seq, leaf hash (48 bytes), then the record.
fn frames(journal: &[u8]) -> Vec<(usize, usize, u64)> {
    let mut out: Vec<(usize, usize, u64)> = Vec::new();
    let mut pos = 0;
    while pos + 48 <= journal.len() && &journal[pos..pos + 4] == b"RGJ1" {
        let len = u32::from_le_bytes(journal[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(journal[pos + 8..pos + 16].try_into().unwrap());
        if out.last().is_some_and(|(_, _, s)| seq != s + 1) {
            break;
        }
        out.push((pos, len, seq));
        pos += 48 + len;
    }
    out
}

fn journal_of(dir: &Path) -> PathBuf {
    journal_path(&dir.join("log.redb"))
}

/// A store with 40 acknowledged records after its first checkpoint, open and idle.
async fn store_with_journaled_records() -> (tempfile::TempDir, RedbStore<TestFold>, Vec<[u8; 32]>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    for i in 0..40 {
        store.append(vec![conformance::filler(i)]).await.unwrap();
    }
    let hashes = store
        .read(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|r| r.hash.0)
        .collect();
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
    let back: Vec<[u8; 32]> = reopened
        .read(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|r| r.hash.0)
        .collect();
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
    let all = frames(&journal);
    let (pos, len, seq) = *all.last().unwrap();
    assert_eq!(seq, 40, "the last frame is the last acknowledged record");
    // The last write stopped halfway through its record.
    journal[pos + 48 + len / 2..pos + 48 + len].fill(0);
    std::fs::write(journal_of(copy.path()), &journal).unwrap();

    let reopened = open(copy.path()).unwrap();
    let back: Vec<[u8; 32]> = reopened
        .read(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|r| r.hash.0)
        .collect();
    assert_eq!(back, hashes[..40], "all but the torn record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_before_intact_records_refuses_to_open() {
    let (dir, _store, _) = store_with_journaled_records().await;
    let copy = crash_copy(dir.path());
    let mut journal = std::fs::read(journal_of(copy.path())).unwrap();
    let all = frames(&journal);
    let (pos, len, seq) = all[all.len() / 2];
    journal[pos + 48 + len - 3] ^= 0x01;
    std::fs::write(journal_of(copy.path()), &journal).unwrap();

    match open(copy.path()) {
        Err(StoreError::Corrupt { seq: at, what }) => {
            assert_eq!(at.0, seq, "{what}");
            assert!(what.contains("journal is damaged"), "{what}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(s) => panic!("opened with {} records", s.head().size),
    }
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
        text.contains("10 records (from seq 11) are in the journal"),
        "{text}"
    );
    // Opening the store once indexes them; then the reader sees all 21.
    drop(open(copy.path()).unwrap());
    assert_eq!(LogReader::open(&db).unwrap().len().unwrap(), 21);
}
