//! The golden log `schemas/fixtures/log-v1/` must decode, verify and fold in every version.
//!
//! It was written once by `examples/build_golden_log.rs` and is never regenerated: if this test
//! fails, the change broke compatibility with logs already in the field.
// Test code: a failed read is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use events::checkpoint::VerifierKey;
use events::event::{CODES, Event};
use events::fold::Fold;
use events::record;
use events::verify::{self, DirSource, KeyTrust, Quiet};
use projections::Projections;

fn golden() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas/fixtures/log-v1")
}

fn records() -> Vec<record::StoredRecord> {
    let dir = golden().join("segments");
    let mut keys: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let bytes = std::fs::read(&k).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let len = events::cbor::item_len(&bytes[at..]).unwrap();
            out.push(record::decode(&bytes[at..at + len]).expect("strict decode"));
            at += len;
        }
    }
    out
}

#[test]
fn golden_log_verifies_against_its_pinned_key() {
    let vkey = std::fs::read_to_string(golden().join("vkey")).unwrap();
    let key = VerifierKey::parse(vkey.trim()).unwrap();
    let s = verify::verify_export(&DirSource::new(&golden()), Some(&key), &mut Quiet).unwrap();
    assert_eq!(s.trust, KeyTrust::Pinned);
    assert_eq!(s.records, 346);
    assert_eq!(s.signed_size, 346);
    assert_eq!(s.checkpoints, 7);
}

#[test]
fn golden_log_decodes_strictly_and_holds_every_v1_code() {
    let records = records();
    assert_eq!(records.len(), 346);
    let codes: BTreeSet<&str> = records.iter().map(|r| r.record.event.code()).collect();
    let v1: BTreeSet<&str> = CODES.iter().copied().collect();
    assert_eq!(codes, v1);
    for r in &records {
        assert_eq!(
            r.record.encode(),
            r.bytes,
            "seq {} re-encodes",
            r.record.seq
        );
    }
}

#[test]
fn golden_log_folds_into_the_expected_state() {
    let mut state = Projections::default();
    for r in records() {
        state.apply(&r).unwrap();
    }
    assert_eq!(state.len(), 346);
    assert_eq!(state.log.origin, "golden.rack-gateway.test/log-v1");
    assert_eq!(state.log.keys.len(), 2, "LogCreated and CheckpointKeyAdded");
    assert_eq!(state.log.snapshots.len(), 1);
    assert!(state.log.config_digest.is_some());
    let tokens: Vec<_> = state.tokens.iter().collect();
    assert_eq!(tokens.len(), 20);
    assert_eq!(tokens.iter().filter(|t| t.revoked.is_some()).count(), 20);
    assert!(tokens.iter().any(|t| t.last_used.is_some()));
    let users: Vec<_> = state.identities.users().collect();
    assert!(!users.is_empty());
    let first = records().into_iter().next().unwrap();
    assert!(matches!(first.record.event, Event::LogCreated { .. }));
}

/// The golden log's state, as a snapshot, is pinned to the snapshot version: a fold whose result
/// on the golden log changed (or a new snapshot layout) fails here until `snapshot::VERSION` is
/// bumped, so a snapshot written by the old folds is never restored under the new ones.
#[test]
fn the_golden_state_is_pinned_to_the_snapshot_version() {
    let mut state = Projections::default();
    for r in records() {
        state.apply(&r).unwrap();
    }
    let (bytes, _) =
        projections::snapshot::write(&state, &projections::snapshot::SnapshotKey([0; 32])).unwrap();
    let digest = events::hash::object_digest(&bytes).to_hex();
    assert_eq!(
        (projections::snapshot::VERSION, digest.as_str()),
        (
            7,
            "37604dbe9fafd1f73c3811a1612832ed5d4a4dc4fd1cf6d068759b099cf61b9c"
        ),
        "the golden log folds into another state: bump snapshot::VERSION, then pin the new \
         version and digest here"
    );
}
