//! Tampering with an export: every kind of damage an operator with disk access could do to the
//! exported segments, checkpoints and manifests, and the first failure the verifier must name.
//!
//! One pristine export of over 10,000 records is built once per run (`pristine`); each case copies
//! it, damages the copy, verifies it against the pinned key and compares the failure's kind, `seq`
//! and object exactly. The acceptance flow at the end drives the two binaries end to end.
//!
//! **Invariant:** the pristine export is never modified; every case works on its own copy.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use events::cbor;
use events::checkpoint::{self, NoteSigner, VerifierKey};
use events::event::{Event, Principal, Role};
use events::export::{self, KeyRef, Manifest, ObjectRef};
use events::hash::{self, Hash};
use events::merkle::Frontier;
use events::record;
use events::store::EventStore;
use events::verify::{self, DirSource, KeyTrust, Quiet, Summary, VerifyError};
use rack_gateway::keys::Keys;

use crate::support::{self, ORIGIN};

/// The shared, never-modified export and what the cases need to know about it.
struct Pristine {
    export: PathBuf,
    vkey: VerifierKey,
    records: u64,
    /// `(key, first, end)` in log order.
    segments: Vec<(String, u64, u64)>,
    manifests: Vec<String>,
    checkpoints: Vec<String>,
}

/// One kind of damage (or none).
#[derive(Clone, Copy, Debug)]
enum Case {
    Pristine,
    FlippedBit,
    FlippedSeqField,
    FlippedTimeField,
    FlippedPrevField,
    FlippedEventCode,
    DeletedRecord,
    SwappedRecords,
    InsertedDuplicate,
    TruncatedTail,
    DeletedSegment,
    DeletedManifest,
    DeletedCheckpoint,
    ForgedSignature,
    SegmentDigestInManifest,
    CheckpointDigestInManifest,
    EditedMiddleManifest,
    ReformattedLastManifest,
    /// A key added to the newest manifest's history, its form canonical: nothing chains to it
    /// yet, and nothing signs a manifest.
    ForgedKeyInLastManifest,
    /// A file grown (sparse, all zeros) to gigabytes where each kind of object lives.
    PlantedHugeCheckpoint,
    PlantedHugeManifest,
    PlantedHugeSegment,
}

/// What verification of a damaged copy must report.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Intact,
    /// Exactly this failure.
    Failure {
        kind: &'static str,
        seq: Option<u64>,
        object: Option<String>,
    },
    /// An integrity failure naming this record, whatever its kind.
    Names(u64),
}

/// A part of a stored record: `{0: seq, 1: time, 2: prev, 3: {0: code, 1: body}}`.
#[derive(Clone, Copy, Debug)]
enum Field {
    Seq,
    Time,
    Prev,
    Code,
    /// The record's last byte: inside a hash or a hex string of the body.
    BodyEnd,
}

// === The shared export ===

/// At least this many records are sealed in the shared export.
const MIN_RECORDS: u64 = 10_000;

fn pristine() -> &'static Pristine {
    static PRISTINE: OnceLock<Pristine> = OnceLock::new();
    PRISTINE.get_or_init(build_pristine)
}

/// A directory for this process's shared fixture under cargo's temp dir. Statics are never
/// dropped, so fixtures of finished runs (whose pid is gone) are removed here instead.
fn fixture_root() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit_log-fixtures");
    std::fs::create_dir_all(&base).expect("fixture base");
    for entry in std::fs::read_dir(&base)
        .expect("read fixture base")
        .flatten()
    {
        let name = entry.file_name();
        let alive = name
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fixture dir");
    dir
}

/// Keys, a store with a checkpoint every 1,000 records, ~10,000 events appended by 8 concurrent
/// tasks in batches of 25, then the local export.
fn build_pristine() -> Pristine {
    let started = Instant::now();
    let root = fixture_root();
    let data = root.join("data");
    let vkey = Keys::init(&data, ORIGIN).expect("keys init").vkey();
    let (store, _) = rack_gateway::store::open(&data, support::policy(1000)).expect("open store");
    let store = Arc::new(store);
    let rt = support::runtime();
    rt.block_on(async {
        let batch = 25;
        let mut next = 0;
        let acked = support::append_concurrently(&store, next, MIN_RECORDS / batch, batch, 8).await;
        assert_eq!(acked.len() as u64, MIN_RECORDS);
        next += MIN_RECORDS;
        // Records past the newest checkpoint are not exported: append until one covers enough.
        loop {
            let cps = store.checkpoints(0..u64::MAX).await.expect("checkpoints");
            let sealed = cps.last().map(|c| c.checkpoint.size).unwrap_or(0);
            if sealed >= MIN_RECORDS {
                break;
            }
            support::append_concurrently(&store, next, 1, batch, 1).await;
            next += batch;
        }
    });
    drop(rt);
    drop(Arc::try_unwrap(store).ok().expect("no other store handle"));
    let export_dir = root.join("export");
    let summary =
        rack_gateway::export::export_local(&rack_gateway::store::log_path(&data), &export_dir)
            .expect("export");
    assert!(summary.records >= MIN_RECORDS, "{summary:?}");
    let list = |sub: &str| -> Vec<String> {
        let mut keys: Vec<String> = std::fs::read_dir(export_dir.join(sub))
            .expect("export listing")
            .map(|e| format!("{sub}/{}", e.expect("entry").file_name().to_string_lossy()))
            .collect();
        keys.sort();
        keys
    };
    let segments = list("segments")
        .into_iter()
        .map(|k| {
            let (first, end) = export::parse_segment_key(&k).expect("segment key");
            (k, first, end)
        })
        .collect::<Vec<_>>();
    let (manifests, checkpoints) = (list("manifests"), list("checkpoints"));
    let p = Pristine {
        export: export_dir,
        vkey,
        records: summary.records,
        segments,
        manifests,
        checkpoints,
    };
    assert!(p.segments.len() >= 10, "{} segments", p.segments.len());
    eprintln!(
        "tamper fixture: {} records, {} segments, {} checkpoints in {:?}",
        p.records,
        p.segments.len(),
        p.checkpoints.len(),
        started.elapsed()
    );
    p
}

// === Helpers on an export directory ===

/// The byte range of each record of a segment (a CBOR sequence), walked with `item_len`.
fn record_ranges(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = cbor::item_len(&bytes[at..]).expect("pristine segment item");
        out.push(at..at + len);
        at += len;
    }
    out
}

/// The segment in the middle of the log (by index).
fn middle_segment(p: &Pristine) -> &(String, u64, u64) {
    &p.segments[p.segments.len() / 2]
}

/// A proxied-call record near the middle of `segment`, not its first or last: its last byte is
/// inside a hash or a hex string, so flipping it changes only its leaf hash.
fn middle_record(dir: &Path, segment: &(String, u64, u64)) -> u64 {
    let (key, first, end) = segment;
    let bytes = std::fs::read(dir.join(key)).expect("segment");
    let ranges = record_ranges(&bytes);
    let mid = (end - first) / 2;
    (mid..end - first - 1)
        .find(|&i| {
            let r = ranges[i as usize].clone();
            matches!(
                record::decode(&bytes[r])
                    .expect("pristine record")
                    .record
                    .event,
                Event::CommandRequested(_) | Event::CommandCompleted(_)
            )
        })
        .map(|i| first + i)
        .expect("a proxied call in the middle segment")
}

/// Rewrites `segment` with `edit(bytes, byte range of each record)`.
fn edit_segment(
    dir: &Path,
    segment: &(String, u64, u64),
    edit: impl FnOnce(&mut Vec<u8>, &[Range<usize>]),
) {
    let path = dir.join(&segment.0);
    let mut bytes = std::fs::read(&path).expect("segment");
    let ranges = record_ranges(&bytes);
    edit(&mut bytes, &ranges);
    std::fs::write(&path, bytes).expect("write segment");
}

/// Flips the low bit of one byte of `field` in record `seq` of `segment`.
fn flip_bit(dir: &Path, segment: &(String, u64, u64), seq: u64, field: Field) {
    edit_segment(dir, segment, |bytes, ranges| {
        let r = ranges[(seq - segment.1) as usize].clone();
        let at = r.start + field_offset(&bytes[r.clone()], field);
        bytes[at] ^= 0x01;
    });
}

/// The offset in canonical record bytes of the last byte of `field`'s value (the middle of
/// `prev`, the fourth character of the code), read from the fixed record layout.
fn field_offset(record: &[u8], field: Field) -> usize {
    // The extra bytes of a shortest-form argument, by the head's additional information.
    let width = |head: u8| match head & 0x1f {
        0..=23 => 0,
        24 => 1,
        25 => 2,
        26 => 4,
        _ => 8,
    };
    let seq_end = 2 + width(record[2]);
    let time_end = seq_end + 2 + width(record[seq_end + 2]);
    let prev = time_end + 4; // key 2, then 0x58 0x20
    let event = prev + 32 + 1; // key 3
    match field {
        Field::Seq => seq_end,
        Field::Time => time_end,
        Field::Prev => prev + 16,
        // {0: "Gnnnn?"}: map head, key 0, text head, then the characters.
        Field::Code => event + 3 + 3,
        Field::BodyEnd => record.len() - 1,
    }
}

fn read_manifest(dir: &Path, key: &str) -> Manifest {
    serde_json::from_slice(&std::fs::read(dir.join(key)).expect("manifest")).expect("manifest json")
}

/// Writes a manifest as the exporter does (pretty JSON and a newline) and returns its digest.
fn write_manifest(dir: &Path, key: &str, m: &Manifest) -> String {
    let mut bytes = serde_json::to_vec_pretty(m).expect("manifest json");
    bytes.push(b'\n');
    std::fs::write(dir.join(key), &bytes).expect("write manifest");
    hash::object_digest(&bytes).to_hex()
}

/// Changes one hex digit of a SHA-256.
fn other_digest(hex: &str) -> String {
    let mut s = hex.to_owned();
    let first = if s.starts_with('0') { "1" } else { "0" };
    s.replace_range(0..1, first);
    s
}

fn verify_copy(dir: &Path, key: Option<&VerifierKey>) -> Result<Summary, VerifyError> {
    verify::verify_export(&DirSource::new(dir), key, &mut Quiet)
}

// === The table ===

/// A copy of the pristine export to damage, in a directory that lives as long as the guard.
fn fresh_copy(p: &Pristine) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("export");
    support::copy_dir(&p.export, &dir);
    (tmp, dir)
}

/// Damages a fresh copy of the pristine export as `case` says and checks that verification
/// against the pinned key reports exactly what `case` expects.
fn check(case: Case) {
    let p = pristine();
    let (_tmp, dir) = fresh_copy(p);
    let expect = tamper(case, p, &dir);
    let (got, shown) = match verify_copy(&dir, Some(&p.vkey)) {
        Ok(s) => {
            assert_eq!(s.trust, KeyTrust::Pinned);
            assert_eq!(s.records, p.records, "{case:?}: {s:?}");
            assert_eq!(s.segments, p.segments.len() as u64);
            assert_eq!(s.checkpoints, p.checkpoints.len() as u64);
            (Expect::Intact, format!("{s:?}"))
        }
        Err(e) => {
            assert!(e.is_integrity(), "{case:?}: {e}");
            let got = match (&expect, e.seq()) {
                (Expect::Names(_), Some(seq)) => Expect::Names(seq),
                _ => Expect::Failure {
                    kind: e.kind(),
                    seq: e.seq(),
                    object: e.object().map(str::to_owned),
                },
            };
            (got, e.to_string())
        }
    };
    assert_eq!(got, expect, "{case:?}: the verifier said: {shown}");
}

/// Applies the damage of `case` to `dir` and returns what verification must report.
fn tamper(case: Case, p: &Pristine, dir: &Path) -> Expect {
    let failure = |kind, seq, object: Option<&str>| Expect::Failure {
        kind,
        seq,
        object: object.map(str::to_owned),
    };
    let seg = middle_segment(p);
    match case {
        Case::Pristine => Expect::Intact,
        Case::FlippedBit => {
            let seq = middle_record(dir, seg);
            flip_bit(dir, seg, seq, Field::BodyEnd);
            // Its bytes still parse; its hash no longer matches the prev of seq + 1.
            failure("hash_chain", Some(seq), None)
        }
        Case::FlippedSeqField => {
            let seq = middle_record(dir, seg);
            flip_bit(dir, seg, seq, Field::Seq);
            failure("seq_mismatch", Some(seq), Some(&seg.0))
        }
        Case::FlippedTimeField => {
            let seq = middle_record(dir, seg);
            flip_bit(dir, seg, seq, Field::Time);
            failure("hash_chain", Some(seq), None)
        }
        Case::FlippedPrevField => {
            let seq = middle_record(dir, seg);
            flip_bit(dir, seg, seq, Field::Prev);
            // Record seq - 1 is intact; the damaged record is seq (its prev, and so its hash).
            Expect::Names(seq)
        }
        Case::FlippedEventCode => {
            let seq = middle_record(dir, seg);
            flip_bit(dir, seg, seq, Field::Code);
            failure("hash_chain", Some(seq), None)
        }
        Case::DeletedRecord => {
            let seq = middle_record(dir, seg);
            edit_segment(dir, seg, |bytes, ranges| {
                bytes.drain(ranges[(seq - seg.1) as usize].clone());
            });
            failure("seq_mismatch", Some(seq), Some(&seg.0))
        }
        Case::SwappedRecords => {
            let seq = middle_record(dir, seg);
            edit_segment(dir, seg, |bytes, ranges| {
                let i = (seq - seg.1) as usize;
                let (a, b) = (ranges[i].clone(), ranges[i + 1].clone());
                let swapped = [&bytes[b.clone()], &bytes[a.clone()]].concat();
                bytes.splice(a.start..b.end, swapped);
            });
            failure("seq_mismatch", Some(seq), Some(&seg.0))
        }
        Case::InsertedDuplicate => {
            let seq = middle_record(dir, seg);
            edit_segment(dir, seg, |bytes, ranges| {
                let i = (seq - seg.1) as usize;
                let copy = bytes[ranges[i - 3].clone()].to_vec();
                bytes.splice(ranges[i].start..ranges[i].start, copy);
            });
            failure("seq_mismatch", Some(seq), Some(&seg.0))
        }
        Case::TruncatedTail => {
            let last = p.segments.last().expect("a segment");
            let path = dir.join(&last.0);
            let mut bytes = std::fs::read(&path).expect("segment");
            let ranges = record_ranges(&bytes);
            let cut = bytes.len() / 2;
            let i = ranges.iter().position(|r| r.end > cut).expect("cut inside");
            bytes.truncate(cut);
            std::fs::write(&path, bytes).expect("write");
            let seq = last.1 + i as u64;
            // Cut inside record i: it cannot be read. Cut exactly before it: it is missing.
            let kind = if ranges[i].start == cut {
                "truncated"
            } else {
                "undecodable_record"
            };
            failure(kind, Some(seq), Some(&last.0))
        }
        Case::DeletedSegment => {
            std::fs::remove_file(dir.join(&seg.0)).expect("remove segment");
            failure("object_missing", None, Some(&seg.0))
        }
        Case::DeletedManifest => {
            let m = &p.manifests[p.manifests.len() / 2];
            std::fs::remove_file(dir.join(m)).expect("remove manifest");
            failure("object_missing", None, Some(m))
        }
        Case::DeletedCheckpoint => {
            let cp = &p.checkpoints[p.checkpoints.len() / 2];
            std::fs::remove_file(dir.join(cp)).expect("remove checkpoint");
            failure("object_missing", None, Some(cp))
        }
        Case::ForgedSignature => {
            let cp = &p.checkpoints[p.checkpoints.len() / 2];
            let path = dir.join(cp);
            let note = std::fs::read_to_string(&path).expect("note");
            let sig_at = note.trim_end().rfind(' ').expect("signature line") + 1;
            // Well inside the signature, past the 4-byte key id (the first 6 base64 digits).
            let at = sig_at + 40;
            let was = note.as_bytes()[at];
            let now = if was == b'A' { "B" } else { "A" };
            let mut forged = note.clone();
            forged.replace_range(at..at + 1, now);
            std::fs::write(&path, forged).expect("write note");
            failure("checkpoint_signature", None, Some(cp))
        }
        Case::SegmentDigestInManifest => {
            // The last manifest: no later manifest chains to it, so only the digest can tell.
            let key = p.manifests.last().expect("a manifest");
            let mut m = read_manifest(dir, key);
            m.segment.sha256 = other_digest(&m.segment.sha256);
            write_manifest(dir, key, &m);
            failure("digest_mismatch", None, Some(&m.segment.key))
        }
        Case::PlantedHugeCheckpoint => {
            let cp = &p.checkpoints[p.checkpoints.len() / 2];
            grow(&dir.join(cp), 3 << 30);
            failure("object_oversized", None, Some(cp))
        }
        Case::PlantedHugeManifest => {
            let key = &p.manifests[p.manifests.len() / 2];
            grow(&dir.join(key), 3 << 30);
            failure("object_oversized", None, Some(key))
        }
        Case::PlantedHugeSegment => {
            grow(&dir.join(&seg.0), 3 << 30);
            failure("object_oversized", None, Some(&seg.0))
        }
        Case::CheckpointDigestInManifest => {
            let key = p.manifests.last().expect("a manifest");
            let mut m = read_manifest(dir, key);
            let cp = m.checkpoints.last_mut().expect("a checkpoint");
            cp.sha256 = other_digest(&cp.sha256);
            let named = cp.key.clone();
            write_manifest(dir, key, &m);
            failure("digest_mismatch", None, Some(&named))
        }
        Case::EditedMiddleManifest => {
            // Rewritten consistently with itself: only the next manifest's chain link can tell,
            // and the failure names the edited manifest, not the one that noticed.
            let key = &p.manifests[p.manifests.len() / 2];
            let mut m = read_manifest(dir, key);
            m.keys.push(KeyRef {
                vkey: "forged+00000000+AQ==".into(),
                from_size: m.end,
            });
            write_manifest(dir, key, &m);
            failure("digest_mismatch", None, Some(key))
        }
        Case::ForgedKeyInLastManifest => {
            let key = p.manifests.last().expect("a manifest");
            let mut m = read_manifest(dir, key);
            m.keys.push(KeyRef {
                vkey: "forged+00000000+AQ==".into(),
                from_size: m.first,
            });
            write_manifest(dir, key, &m);
            failure("manifest", None, Some(key))
        }
        Case::ReformattedLastManifest => {
            // Same meaning, other bytes: the newest manifest is chained by nothing yet, so a
            // manifest must be in its one canonical form.
            let key = p.manifests.last().expect("a manifest");
            let path = dir.join(key);
            let mut bytes = std::fs::read(&path).expect("manifest");
            bytes.push(b'\n');
            std::fs::write(&path, bytes).expect("write manifest");
            failure("manifest", None, Some(key))
        }
    }
}

#[test]
fn edited_middle_manifest_is_named_itself() {
    check(Case::EditedMiddleManifest);
}

#[test]
fn reformatted_last_manifest_is_refused() {
    check(Case::ReformattedLastManifest);
}

#[test]
fn a_key_forged_into_the_last_manifest_is_refused() {
    check(Case::ForgedKeyInLastManifest);
}

/// Every single byte of a record, flipped in turn: each time the verifier names that record.
/// Runs over one record of each code in the middle segment, so optional trailing fields and
/// length bytes of every shape are covered whichever record the random workload put there.
#[test]
fn every_byte_of_a_record_flipped_names_that_record() {
    let p = pristine();
    let seg = middle_segment(p);
    let (_tmp, dir) = fresh_copy(p);
    let path = dir.join(&seg.0);
    let pristine_bytes = std::fs::read(&path).expect("segment");
    let ranges = record_ranges(&pristine_bytes);
    // One record per code, not the first or last of the segment.
    let mut by_code = BTreeMap::new();
    for (i, r) in ranges.iter().enumerate().skip(1).take(ranges.len() - 2) {
        let code = record::decode(&pristine_bytes[r.clone()])
            .expect("pristine record")
            .record
            .event
            .code();
        by_code.entry(code).or_insert((seg.1 + i as u64, r.clone()));
    }
    assert!(
        by_code.len() >= 3,
        "the workload should mix codes: {by_code:?}"
    );
    for (code, (seq, range)) in by_code {
        for at in range.clone() {
            let mut bytes = pristine_bytes.clone();
            bytes[at] ^= 0x01;
            std::fs::write(&path, &bytes).expect("write");
            let e = verify_copy(&dir, Some(&p.vkey)).expect_err("a flipped byte must fail");
            assert_eq!(
                e.seq(),
                Some(seq),
                "byte {} of seq {seq} ({code}): the verifier said: {e}",
                at - range.start
            );
        }
    }
}

/// The data directory the pristine export was made from.
fn fixture_data(p: &Pristine) -> PathBuf {
    p.export.parent().expect("fixture root").join("data")
}

/// A copy of the fixture's data directory to damage, and its store's path.
fn data_copy(p: &Pristine) -> (tempfile::TempDir, PathBuf) {
    let copy = tempfile::tempdir().expect("tempdir");
    support::copy_dir(&fixture_data(p), copy.path());
    let log = rack_gateway::store::log_path(copy.path());
    (copy, log)
}

/// Runs `rack-audit COMMAND DIR ARGS…` on a damaged data directory: it must exit 1, an
/// integrity failure, and print that failure as JSON, which is returned.
fn integrity_failure(command: &str, dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = support::run(
        support::rack_audit().arg(command).arg(dir).args(args),
        Duration::from_secs(120),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{command}: {said}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{command}: {e}: {said}"))
}

/// A data directory whose database was edited (an entry of records deleted) fails as an
/// integrity failure, exit 1, naming the seq where the entries break; not as an I/O error.
#[test]
fn a_data_directory_with_a_deleted_entry_is_an_integrity_failure() {
    let p = pristine();
    let (copy, log) = data_copy(p);
    let removed = {
        let records = redb::TableDefinition::<u64, &[u8]>::new("records");
        let db = redb::Database::open(&log).expect("open the copied database");
        let txn = db.begin_write().expect("write");
        let removed = {
            let mut table = txn.open_table(records).expect("records");
            let keys: Vec<u64> = redb::ReadableTable::iter(&table)
                .expect("iter")
                .map(|e| e.expect("entry").0.value())
                .collect();
            let middle = keys[keys.len() / 2];
            table.remove(middle).expect("remove");
            middle
        };
        txn.commit().expect("commit");
        removed
    };
    let v = integrity_failure("verify", copy.path(), &["--json"]);
    assert_eq!(v["failure"]["kind"], "stored_entry_broken", "{v}");
    assert_eq!(v["failure"]["seq"], removed, "{v}");
}

/// A data directory whose newest entry of records was overwritten with bytes that are no group
/// of records, or whose records were all removed (its checkpoints kept or not), is damaged: an
/// integrity failure (exit 1, `stored_entry_broken`), not an error reading it.
#[test]
fn a_data_directory_with_a_broken_last_entry_or_no_records_is_an_integrity_failure() {
    let p = pristine();
    let records = redb::TableDefinition::<u64, &[u8]>::new("records");
    // `verify`, and `prove`, which trusts a store only once it verifies whole.
    let key = p.vkey.to_string();
    let fails = |dir: &Path| {
        for (command, args) in [
            ("verify", vec!["--json", "--key", &key]),
            ("prove", vec!["--seq", "1", "--key", &key]),
        ] {
            let v = integrity_failure(command, dir, &args);
            assert_eq!(v["failure"]["kind"], "stored_entry_broken", "{v}");
        }
    };
    let broken_last_entry = |journal: bool| {
        let (copy, log) = data_copy(p);
        {
            let db = redb::Database::open(&log).expect("open the copied database");
            let txn = db.begin_write().expect("write");
            {
                let mut table = txn.open_table(records).expect("records");
                let last = redb::ReadableTable::last(&table)
                    .expect("last")
                    .expect("an entry")
                    .0
                    .value();
                table.insert(last, &[0xFF, 0, 0][..]).expect("overwrite");
            }
            txn.commit().expect("commit");
        }
        // With its journal, opening the store reads the broken entry; without, counting does.
        if !journal {
            std::fs::remove_file(events::store::redb::journal_path(&log)).expect("no journal");
        }
        fails(copy.path());
    };
    broken_last_entry(true);
    broken_last_entry(false);
    let (emptied, log) = data_copy(p);
    {
        let db = redb::Database::open(&log).expect("open the copied database");
        let txn = db.begin_write().expect("write");
        txn.delete_table(records).expect("delete the records");
        txn.open_table(records).expect("an empty table");
        txn.commit().expect("commit");
    }
    // Its journal too, whose frames hold the records.
    std::fs::remove_file(events::store::redb::journal_path(&log)).expect("remove the journal");
    fails(emptied.path());
    // And with its checkpoints gone as well: a store is created holding its record 0.
    {
        let checkpoints = redb::TableDefinition::<u64, &str>::new("checkpoints");
        let db = redb::Database::open(&log).expect("open the emptied database");
        let txn = db.begin_write().expect("write");
        txn.delete_table(checkpoints)
            .expect("delete the checkpoints");
        txn.open_table(checkpoints).expect("an empty table");
        txn.commit().expect("commit");
    }
    fails(emptied.path());
}

/// A data directory's records are held to the same strict reading as an export's: its newest
/// record with a byte after it (so that no later link or checkpoint pins its bytes) fails.
#[test]
fn a_data_directory_record_with_bytes_after_it_fails() {
    let p = pristine();
    let data = fixture_data(p);
    let reader = events::store::redb::LogReader::open(&rack_gateway::store::log_path(&data))
        .expect("the fixture's store");
    let size = reader.len().expect("len");
    let mut stored = reader.read_raw(0..size).expect("records");
    let notes: Vec<(String, Vec<u8>)> = reader
        .checkpoints()
        .expect("checkpoints")
        .into_iter()
        .enumerate()
        .map(|(n, c)| (export::checkpoint_key(n as u64), c.note.into_bytes()))
        .collect();
    let last = stored.last_mut().expect("a record");
    last.1.push(0);
    let first = stored.first().expect("record 0").1.clone();
    let e = verify::verify_records(&first, size, &notes, Some(&p.vkey), &mut Quiet, &mut |f| {
        stored.iter().try_for_each(|(seq, bytes)| f(*seq, bytes))
    })
    .expect_err("a record with a byte after it");
    assert_eq!(e.kind(), "undecodable_record", "{e}");
    assert_eq!(e.seq(), Some(size - 1), "{e}");
}

/// A data directory whose checkpoints were all deleted holds nothing signed: with the key
/// pinned it fails (exit 1), never "OK … pinned" over records anyone could have written.
#[test]
fn a_data_directory_without_checkpoints_fails() {
    let p = pristine();
    let (copy, log) = data_copy(p);
    {
        let checkpoints = redb::TableDefinition::<u64, &str>::new("checkpoints");
        let db = redb::Database::open(&log).expect("open the copied database");
        let txn = db.begin_write().expect("write");
        txn.delete_table(checkpoints)
            .expect("delete the checkpoints");
        txn.open_table(checkpoints).expect("an empty table");
        txn.commit().expect("commit");
    }
    // Its journal too, whose checkpoint frames would show the deletion.
    std::fs::remove_file(events::store::redb::journal_path(&log)).expect("remove the journal");
    let key = p.vkey.to_string();
    let v = integrity_failure("verify", copy.path(), &["--key", &key, "--json"]);
    assert_eq!(v["failure"]["kind"], "object_missing", "{v}");
    assert!(
        v["failure"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing in it is signed")),
        "{v}"
    );
}

/// A data directory with one checkpoint deleted between others: the verifier names it missing
/// (the others are not renumbered over the gap), and the gateway's store refuses to open
/// rather than write its next checkpoint over a signed one.
#[test]
fn a_data_directory_with_a_checkpoint_deleted_between_others_names_it() {
    let p = pristine();
    let (copy, log) = data_copy(p);
    let removed = {
        let checkpoints = redb::TableDefinition::<u64, &str>::new("checkpoints");
        let db = redb::Database::open(&log).expect("open the copied database");
        let txn = db.begin_write().expect("write");
        let removed = {
            let mut table = txn.open_table(checkpoints).expect("checkpoints");
            let n = redb::ReadableTableMetadata::len(&table).expect("len");
            assert!(n >= 3, "{n} checkpoints");
            table.remove(n / 2).expect("remove");
            n / 2
        };
        txn.commit().expect("commit");
        removed
    };
    // Its journal too, whose checkpoint frames would show the deletion.
    std::fs::remove_file(events::store::redb::journal_path(&log)).expect("remove the journal");
    let v = integrity_failure("verify", copy.path(), &["--json"]);
    assert_eq!(v["failure"]["kind"], "object_missing", "{v}");
    assert!(
        v["failure"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&events::export::checkpoint_key(removed))),
        "{v}"
    );
    let opened = rack_gateway::store::open(copy.path(), events::store::CheckpointPolicy::default());
    match opened {
        Err(e) => assert!(
            e.to_string()
                .contains(&format!("checkpoint {removed} is missing")),
            "{e}"
        ),
        Ok(_) => panic!("a store with checkpoint {removed} missing was opened"),
    }
}

/// A data directory whose checkpoint note was cut short fails as an export's would: an
/// integrity failure (exit 1) naming that checkpoint, not an unreadable store (exit 2).
#[test]
fn a_data_directory_with_a_damaged_checkpoint_names_it() {
    let p = pristine();
    let (copy, log) = data_copy(p);
    let checkpoints = redb::TableDefinition::<u64, &str>::new("checkpoints");
    let damaged = {
        let db = redb::Database::open(&log).expect("open the copied database");
        let txn = db.begin_write().expect("write");
        let damaged = {
            let mut table = txn.open_table(checkpoints).expect("checkpoints");
            let entries: Vec<(u64, String)> = redb::ReadableTable::iter(&table)
                .expect("iter")
                .map(|e| {
                    let (k, v) = e.expect("entry");
                    (k.value(), v.value().to_owned())
                })
                .collect();
            let (n, (key, note)) = entries
                .iter()
                .enumerate()
                .nth(entries.len() / 2)
                .expect("a checkpoint");
            table
                .insert(*key, &note[..note.len() / 2])
                .expect("cut the note");
            n
        };
        txn.commit().expect("commit");
        damaged
    };
    // Its journal too, whose checkpoint frames hold the note whole.
    std::fs::remove_file(events::store::redb::journal_path(&log)).expect("remove the journal");
    let key = p.vkey.to_string();
    let v = integrity_failure("verify", copy.path(), &["--key", &key, "--json"]);
    assert_eq!(
        v["failure"]["object"],
        export::checkpoint_key(damaged as u64),
        "{v}"
    );
    // What reads the store's checkpoints (an export) is told which one, as corruption.
    match events::store::redb::LogReader::open(&log)
        .expect("open the store")
        .checkpoints()
    {
        Err(events::store::StoreError::Corrupt { what, .. }) => assert!(
            what.contains(&format!("stored checkpoint {damaged} does not parse")),
            "{what}"
        ),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a damaged checkpoint was read"),
    }
}

#[test]
fn pristine_export_verifies_against_the_pinned_key() {
    check(Case::Pristine);
}

#[test]
fn flipped_bit_in_a_record_names_its_seq() {
    check(Case::FlippedBit);
}

#[test]
fn flipped_bit_in_the_seq_field_names_that_record() {
    check(Case::FlippedSeqField);
}

#[test]
fn flipped_bit_in_the_time_field_names_that_record() {
    check(Case::FlippedTimeField);
}

/// Fails today: the verifier names seq - 1, an intact record (see the report).
#[test]
fn flipped_bit_in_the_prev_field_names_that_record() {
    check(Case::FlippedPrevField);
}

#[test]
fn flipped_bit_in_the_event_code_names_that_record() {
    check(Case::FlippedEventCode);
}

#[test]
fn deleted_record_names_its_seq() {
    check(Case::DeletedRecord);
}

#[test]
fn swapped_records_name_the_first() {
    check(Case::SwappedRecords);
}

#[test]
fn inserted_duplicate_names_the_seq_where_it_appears() {
    check(Case::InsertedDuplicate);
}

#[test]
fn truncated_tail_names_the_last_segment_and_seq() {
    check(Case::TruncatedTail);
}

#[test]
fn deleted_segment_names_the_segment() {
    check(Case::DeletedSegment);
}

#[test]
fn deleted_manifest_names_the_missing_manifest() {
    check(Case::DeletedManifest);
}

/// Named itself, not as the next checkpoint "not named by any manifest".
#[test]
fn deleted_checkpoint_names_the_missing_checkpoint() {
    check(Case::DeletedCheckpoint);
}

/// Each is refused by name before it is read: the verifier never holds gigabytes for it.
#[test]
fn a_planted_huge_object_is_named_not_read() {
    for case in [
        Case::PlantedHugeCheckpoint,
        Case::PlantedHugeManifest,
        Case::PlantedHugeSegment,
    ] {
        check(case);
    }
}

/// A segment its (last, not yet verified) manifest claims to be huge is not read past the
/// verifier's ceiling either; nothing proves it altered, so the export is reported as not
/// checked (exit 2), not as tampered with.
#[test]
fn a_segment_claimed_huge_is_not_checked_rather_than_read() {
    let p = pristine();
    let (_tmp, dir) = fresh_copy(p);
    let key = p.manifests.last().expect("a manifest");
    let mut m = read_manifest(&dir, key);
    m.segment.size = 1 << 40;
    write_manifest(&dir, key, &m);
    grow(&dir.join(&m.segment.key), 3 << 30);
    let e = verify_copy(&dir, Some(&p.vkey)).expect_err("not read");
    assert_eq!(e.kind(), "object_too_large_to_check", "{e}");
    assert_eq!(e.object(), Some(m.segment.key.as_str()));
    assert!(!e.is_integrity(), "{e}");
}

/// A segment replaced by a link to an endless device, or by a pipe no one writes, is refused by
/// name before it is opened, never read for its length or waited on; a link to the segment
/// itself (a backup's link farm) is read as the segment.
#[test]
fn a_segment_that_is_no_file_is_refused_unread() {
    let p = pristine();
    let (_tmp, dir) = fresh_copy(p);
    let segment = &middle_segment(p).0;
    let path = dir.join(segment);
    let kept = dir.join("kept-segment");
    std::fs::rename(&path, &kept).expect("move the segment");
    std::os::unix::fs::symlink(&kept, &path).expect("link");
    verify_copy(&dir, Some(&p.vkey)).expect("a link to the segment is the segment");
    // A link to nothing (a backup's store not mounted) is unreadable, not proof of tampering.
    std::fs::rename(&kept, dir.join("elsewhere")).expect("move the segment away");
    let e = verify_copy(&dir, Some(&p.vkey)).expect_err("a dangling link");
    assert_eq!(e.kind(), "io", "{e}");
    assert!(!e.is_integrity(), "{e}");
    std::fs::remove_file(&path).expect("remove the link");
    std::os::unix::fs::symlink("/dev/zero", &path).expect("link");
    let e = verify_copy(&dir, Some(&p.vkey)).expect_err("a link is not a segment");
    assert_eq!(e.object(), Some(segment.as_str()), "{e}");
    assert!(e.to_string().contains("not a regular file"), "{e}");

    std::fs::remove_file(&path).expect("remove the link");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(verify_copy(&dir, Some(&p.vkey)).map(|_| ()));
    });
    let e = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the verifier waited on a pipe")
        .expect_err("a pipe is not a segment");
    assert!(e.to_string().contains("not a regular file"), "{e}");
}

/// `path` made `len` bytes long; the added bytes are a hole, so the disk holds none of them.
fn grow(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("object to grow");
    file.set_len(len).expect("grow");
}

#[test]
fn forged_checkpoint_signature_names_the_checkpoint() {
    check(Case::ForgedSignature);
}

#[test]
fn segment_digest_changed_in_a_manifest_names_the_segment() {
    check(Case::SegmentDigestInManifest);
}

#[test]
fn checkpoint_digest_changed_in_a_manifest_names_the_checkpoint() {
    check(Case::CheckpointDigestInManifest);
}

// === A full rewrite under a fresh key ===

/// An operator with disk access rewrites one record's event and makes everything consistent
/// again: re-chains every later record, re-encodes the segments, recomputes every checkpoint's
/// root and re-signs it with a fresh key of the same name, names that key in record 0
/// (`LogCreated`, which the verifier ties to the manifests' key history) and in every manifest,
/// and rewrites the manifests with correct digests and chain. Only a pinned key catches it.
#[test]
fn rewrite_resigned_under_a_fresh_key_passes_unpinned_and_fails_pinned() {
    let p = pristine();
    let (_tmp, dir) = fresh_copy(p);
    let target = middle_record(&dir, middle_segment(p));
    let fresh = NoteSigner::generate(ORIGIN).expect("fresh key");
    let fresh_vkey = fresh.verifier().to_string();
    rewrite_and_sign(p, &dir, &fresh, &mut |rec| {
        if rec.seq.0 == 0 {
            let Event::LogCreated { origin, .. } = rec.event.clone() else {
                panic!("record 0 is not LogCreated");
            };
            rec.event = Event::LogCreated {
                origin,
                checkpoint_key: fresh_vkey.clone(),
            };
        }
        if rec.seq.0 == target {
            rec.event = Event::RoleGranted {
                user: Principal("mallory@acme-corp.example".to_owned()),
                role: Role::Admin,
                by: Principal("admin@acme-corp.example".to_owned()),
            };
        }
    });

    let unpinned = verify_copy(&dir, None).expect("a consistent rewrite verifies unpinned");
    assert_eq!(unpinned.trust, KeyTrust::Unpinned);
    assert_eq!(unpinned.key, fresh_vkey);
    assert_eq!(unpinned.records, p.records);
    let original = verify_copy(&p.export, Some(&p.vkey)).expect("pristine");
    assert_ne!(unpinned.root, original.root, "the rewrite changed nothing");

    let pinned = verify_copy(&dir, Some(&p.vkey)).expect_err("a pinned key catches the rewrite");
    assert_eq!(pinned.kind(), "checkpoint_signature", "{pinned}");
    assert_eq!(pinned.object(), Some(p.checkpoints[0].as_str()), "{pinned}");
}

/// Whoever holds the signing key can append a record dated earlier than the one before it (a
/// grant "from last month"); everything else about it is consistent and signed. The store never
/// sequences a record earlier than its predecessor, so the verifier names it.
#[test]
fn a_backdated_record_signed_with_the_real_key_is_named() {
    let p = pristine();
    let (_tmp, dir) = fresh_copy(p);
    let target = middle_record(&dir, middle_segment(p));
    let data = fixture_data(p);
    let signer = Keys::load(&data).expect("the fixture's keys").checkpoint;
    let month = 30 * 24 * 3600 * 1_000_000_000_i64;
    rewrite_and_sign(p, &dir, &signer, &mut |rec| {
        if rec.seq.0 == target {
            rec.time = events::time::Timestamp(rec.time.0 - month);
        }
    });
    let e = verify_copy(&dir, Some(&p.vkey)).expect_err("a backdated record");
    assert_eq!(e.kind(), "time_backwards", "{e}");
    assert_eq!(e.seq(), Some(target), "{e}");
    assert!(e.is_integrity());
}

/// Rewrites every record of the copy at `dir` with `edit`, re-chains them, re-encodes the
/// segments, recomputes and signs every checkpoint with `signer`, and rewrites the manifests
/// with correct digests, chain and `signer` as the whole key history: a log changed by whoever
/// holds `signer`, consistent everywhere.
fn rewrite_and_sign(
    p: &Pristine,
    dir: &Path,
    signer: &NoteSigner,
    edit: &mut dyn FnMut(&mut record::Record),
) {
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    let mut frontier = Frontier::new();
    let mut prev = hash::ZERO;
    for (key, first, _) in &p.segments {
        let bytes = std::fs::read(dir.join(key)).expect("segment");
        let mut out = Vec::with_capacity(bytes.len());
        for (i, r) in record_ranges(&bytes).into_iter().enumerate() {
            let seq = first + i as u64;
            let mut rec = record::decode(&bytes[r]).expect("pristine record").record;
            edit(&mut rec);
            rec.prev = prev;
            let stored = rec.seal();
            prev = stored.hash;
            frontier.push(stored.hash);
            roots.insert(seq + 1, frontier.root());
            out.extend_from_slice(&stored.bytes);
        }
        segments.push(out);
    }
    for ((key, _, _), bytes) in p.segments.iter().zip(&segments) {
        std::fs::write(dir.join(key), bytes).expect("write segment");
    }
    let mut notes: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for key in &p.checkpoints {
        let note = std::fs::read(dir.join(key)).expect("note");
        let (mut cp, _) = checkpoint::parse_unverified(&note).expect("pristine note");
        cp.root = roots[&cp.size];
        let signed = signer.sign(&cp).note.into_bytes();
        std::fs::write(dir.join(key), &signed).expect("write note");
        notes.insert(key.clone(), signed);
    }
    let object = |key: &str, bytes: &[u8]| ObjectRef {
        key: key.to_owned(),
        sha256: hash::object_digest(bytes).to_hex(),
        size: bytes.len() as u64,
    };
    let vkey = signer.verifier().to_string();
    let mut prev_manifest = "0".repeat(64);
    for (i, key) in p.manifests.iter().enumerate() {
        let mut m = read_manifest(dir, key);
        m.segment = object(&m.segment.key, &segments[i]);
        for c in &mut m.checkpoints {
            *c = object(&c.key, &notes[&c.key]);
        }
        m.prev_manifest_sha256 = prev_manifest;
        m.keys = vec![KeyRef {
            vkey: vkey.clone(),
            from_size: 0,
        }];
        prev_manifest = write_manifest(dir, key, &m);
    }
}

// === The acceptance flow, through the binaries ===

/// Records in the acceptance store: the project's cap on test data.
const ACCEPTANCE_EVENTS: u64 = 20_000;

/// Whether `text` says `seq <n>` with nothing more to the number.
fn names_seq(text: &str, n: u64) -> bool {
    let needle = format!("seq {n}");
    text.match_indices(&needle).any(|(at, _)| {
        !text[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

#[test]
fn acceptance_flow_through_the_binaries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let out = tmp.path().join("export");
    let limit = Duration::from_secs(120);

    let init = support::run(
        support::rack_gateway()
            .args(["keys", "init", "--data"])
            .arg(&data),
        limit,
    );
    assert!(init.status.success(), "keys init: {init:?}");
    let stdout = String::from_utf8_lossy(&init.stdout).into_owned();
    let vkey = stdout
        .lines()
        .last()
        .expect("keys init prints the vkey")
        .trim();
    VerifierKey::parse(vkey).expect("keys init prints a vkey");

    // 20,000 events in batches of 1,000 per append. Concurrent appends share commits, and a
    // checkpoint every 1,000 records cuts one at every commit, so the last one seals them all.
    let started = Instant::now();
    {
        let (store, _) =
            rack_gateway::store::open(&data, support::policy(1000)).expect("open store");
        let store = Arc::new(store);
        let rt = support::runtime();
        let acked = rt.block_on(support::append_concurrently(
            &store,
            0,
            ACCEPTANCE_EVENTS / 1000,
            1000,
            4,
        ));
        assert_eq!(acked.len() as u64, ACCEPTANCE_EVENTS);
        assert_eq!(store.head().size, ACCEPTANCE_EVENTS + 1);
    }
    let filled = started.elapsed();
    eprintln!("acceptance: {ACCEPTANCE_EVENTS} events appended in {filled:?}");

    let exported = support::run(
        support::rack_gateway()
            .args(["audit", "export", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&out),
        limit,
    );
    assert!(exported.status.success(), "audit export: {exported:?}");

    let verify = |args: &[&str], path: &Path| {
        let o = support::run(
            support::rack_audit().arg("verify").arg(path).args(args),
            limit,
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), text)
    };

    let (code, text) = verify(&[], &out);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("UNPINNED"), "{text}");
    let (code, text) = verify(&["--key", vkey], &out);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("OK: {} records", ACCEPTANCE_EVENTS + 1)),
        "{text}"
    );
    assert!(!text.contains("UNPINNED"), "{text}");

    // One byte of one record in the middle of the log.
    let mut segments: Vec<String> = std::fs::read_dir(out.join("segments"))
        .expect("segments")
        .map(|e| {
            format!(
                "segments/{}",
                e.expect("entry").file_name().to_string_lossy()
            )
        })
        .collect();
    segments.sort();
    let key = segments[segments.len() / 2].clone();
    let (first, end) = export::parse_segment_key(&key).expect("segment key");
    let segment = (key, first, end);
    let seq = middle_record(&out, &segment);
    flip_bit(&out, &segment, seq, Field::BodyEnd);

    let (code, text) = verify(&["--key", vkey], &out);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        names_seq(&text, seq),
        "the failure must name seq {seq}: {text}"
    );
    let (code, text) = verify(&["--key", vkey, "--json"], &out);
    assert_eq!(code, Some(1), "{text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("--json prints JSON");
    assert_eq!(v["result"], "fail", "{v}");
    assert_eq!(v["failure"]["seq"], seq, "{v}");
    assert_eq!(v["failure"]["kind"], "hash_chain", "{v}");

    let (code, text) = verify(&[], &tmp.path().join("no-such-export"));
    assert_eq!(code, Some(2), "{text}");
    let (code, text) = verify(&["--key", "not-a-vkey"], &out);
    assert_eq!(code, Some(2), "{text}");
}

/// Random damage to a segment (flipped bytes, cut tails, inserted junk, duplicated spans) is
/// always refused with an integrity failure, never a panic and never an OK.
#[test]
fn random_damage_to_a_segment_is_always_refused() {
    let p = pristine();
    let seg = middle_segment(p);
    let (_tmp, dir) = fresh_copy(p);
    let path = dir.join(&seg.0);
    let pristine_bytes = std::fs::read(&path).expect("segment");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for round in 0..120 {
        let mut bytes = pristine_bytes.clone();
        let at = next(bytes.len());
        match round % 4 {
            0 => bytes[at] ^= 1 << next(8),
            1 => bytes.truncate(at),
            2 => {
                let junk: Vec<u8> = (0..1 + next(40)).map(|_| next(256) as u8).collect();
                bytes.splice(at..at, junk);
            }
            _ => {
                let len = 1 + next(300).min(bytes.len() - at - 1);
                let span = bytes[at..at + len].to_vec();
                bytes.splice(at..at, span);
            }
        }
        std::fs::write(&path, &bytes).expect("write");
        match verify_copy(&dir, Some(&p.vkey)) {
            Ok(s) => panic!("round {round}: damaged segment verified: {s:?}"),
            Err(e) => assert!(e.is_integrity(), "round {round}: {e}"),
        }
    }
}

/// A source that counts the checkpoint notes read from it.
struct CountingNotes {
    inner: DirSource,
    notes: std::sync::atomic::AtomicUsize,
}

impl verify::Source for CountingNotes {
    fn list(&self, prefix: &str) -> Result<Vec<String>, VerifyError> {
        self.inner.list(prefix)
    }

    fn get(&self, key: &str, limit: verify::Limit<'_>) -> Result<Option<Vec<u8>>, VerifyError> {
        if key.starts_with("checkpoints/") {
            self.notes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.get(key, limit)
    }
}

/// Each checkpoint note is opened as it is read, so a forged one stops the verifier before the
/// notes after it are read: an export planted with many notes, each up to the note limit, fails
/// on its first bad one, not by the memory of holding them all.
#[test]
fn a_forged_note_is_found_before_the_notes_after_it_are_read() {
    let p = pristine();
    let (_tmp, dir) = fresh_copy(p);
    tamper(Case::ForgedSignature, p, &dir);
    let forged = p.checkpoints.len() / 2;
    let src = CountingNotes {
        inner: DirSource::new(&dir),
        notes: std::sync::atomic::AtomicUsize::new(0),
    };
    let failed =
        verify::verify_export(&src, Some(&p.vkey), &mut Quiet).expect_err("a forged note verified");
    assert_eq!(failed.kind(), "checkpoint_signature", "{failed}");
    assert!(
        forged + 1 < p.checkpoints.len(),
        "the forged note is the last"
    );
    assert_eq!(
        src.notes.load(std::sync::atomic::Ordering::SeqCst),
        forged + 1,
        "notes read before the forged one was refused"
    );
}
