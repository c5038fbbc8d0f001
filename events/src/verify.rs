//! The verification core: checks an export (or a store's records) without trusting the writer.
//!
//! It checks every leaf hash and `prev` link, that `seq` is dense from 0, every checkpoint's
//! signature under the key, that checkpoints never shrink or fork, that each checkpoint's root is
//! the Merkle root of the records it covers (recomputed from the leaves, which implies the
//! consistency of consecutive checkpoints), the manifest chain, and every object's SHA-256.
//! Objects are read through [`Source`], so the same checks run on a directory, a store or a bucket.
//!
//! **Invariant:** the first failure is returned with what failed and where (a `seq` or an object
//! key) and the evidence; nothing is skipped silently. Only stored bytes are hashed, and event
//! bodies are never interpreted, so logs with newer event codes still verify; but every record
//! must be CBOR exactly as the gateway's decoder reads it (map keys ascending and unique, text
//! UTF-8), so that no signed record has two readings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cbor;
use crate::checkpoint::{self, Checkpoint, VerifierKey};
use crate::export::{self, KeyRef, Manifest};
use crate::hash::{self, Hash};
use crate::merkle::Frontier;
use crate::record;
use crate::time::Timestamp;

/// Where the verifier reads objects from.
pub trait Source {
    /// Every key under `prefix`, sorted. A prefix with no objects lists nothing.
    fn list(&self, prefix: &str) -> Result<Vec<String>, VerifyError>;
    /// The object at `key`, or `None` when there is none; one over `limit` is refused
    /// ([`VerifyError::Oversized`]) before it is read.
    fn get(&self, key: &str, limit: Limit<'_>) -> Result<Option<Vec<u8>>, VerifyError>;
}

/// How large an object may be, and what says so (named when it is larger).
#[derive(Clone, Copy, Debug)]
pub struct Limit<'a> {
    pub max: u64,
    pub set_by: &'a str,
    /// Whether a larger object proves the export altered ([`VerifyError::Oversized`]), or only
    /// that it is more than the verifier reads ([`VerifyError::TooLargeToCheck`]).
    pub proves_alteration: bool,
}

/// A manifest's room besides its checkpoints: the segment, the chain link and the key history.
const MANIFEST_BASE_BYTES: u64 = 1 << 20;
/// A manifest's room per checkpoint it may name (an entry takes about 160 bytes): a log idle
/// for long names a heartbeat checkpoint after another in one manifest.
const MANIFEST_BYTES_PER_CHECKPOINT: u64 = 512;

/// A manifest may name at most every checkpoint the export lists.
fn manifest_limit(checkpoints: usize) -> Limit<'static> {
    Limit {
        max: MANIFEST_BASE_BYTES
            .saturating_add(MANIFEST_BYTES_PER_CHECKPOINT.saturating_mul(checkpoints as u64)),
        set_by: "the checkpoints the export lists",
        proves_alteration: true,
    }
}

/// Checkpoint notes, before a manifest names them: no note is read past this.
pub const NOTE_LIMIT: Limit<'static> = Limit {
    max: checkpoint::MAX_NOTE_BYTES as u64,
    set_by: "the largest checkpoint note",
    proves_alteration: true,
};

/// How far past the size its manifest gives it a segment is still read: enough to name the
/// records inserted into it, not enough for a planted file to exhaust memory.
const SEGMENT_SLACK: u64 = 16 << 20;

/// The largest segment read at all, whatever a manifest says (a manifest is trusted only once
/// verified): a checkpoint interval's records hold far less. A larger one is not checked
/// (exit 2) rather than called altered: a busy interval of large records could make one.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// An object the listing named: found, or gone since it was listed.
fn get_listed(src: &impl Source, key: &str, limit: Limit<'_>) -> Result<Vec<u8>, VerifyError> {
    src.get(key, limit)?.ok_or_else(|| VerifyError::Missing {
        object: key.to_owned(),
        named_by: "the listing".into(),
    })
}

/// A segment is read up to [`SEGMENT_SLACK`] past the size its manifest gives it, and never
/// past [`MAX_SEGMENT_BYTES`].
fn segment_limit<'a>(manifest_key: &'a str, m: &Manifest) -> Limit<'a> {
    let by_manifest = m.segment.size.saturating_add(SEGMENT_SLACK);
    if by_manifest > MAX_SEGMENT_BYTES {
        return Limit {
            max: MAX_SEGMENT_BYTES,
            set_by: "the largest segment the verifier reads",
            proves_alteration: false,
        };
    }
    Limit {
        max: by_manifest,
        set_by: manifest_key,
        proves_alteration: true,
    }
}

/// An export in a local directory.
pub struct DirSource {
    root: PathBuf,
}

/// Whether the key was given by the auditor or taken from what is being verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyTrust {
    /// `--key`: a log rewritten and re-signed under another key fails.
    Pinned,
    /// Taken from the export itself: proves internal consistency only.
    Unpinned,
}

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub checkpoints: u64,
    pub segments: u64,
    /// Leaf hash of the last record.
    pub head_hash: Hash,
    /// Merkle root of all records.
    pub root: Hash,
    /// Size of the newest checkpoint; records after it are chained but not yet signed.
    pub signed_size: u64,
    pub key: String,
    pub trust: KeyTrust,
}

/// Progress reports, for a progress bar.
pub trait Progress {
    fn start(&mut self, total_records: u64);
    fn advance(&mut self, records: u64);
}

/// No progress display.
pub struct Quiet;

/// Why verification failed. Everything but `Io` and `Usage` is an integrity failure.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("seq {seq} in {object}: cannot read a record at byte {offset}: {what}")]
    Undecodable {
        seq: u64,
        object: String,
        offset: usize,
        what: String,
    },
    #[error("seq {expected}: missing or out of order (found seq {found} in {object})")]
    SeqMismatch {
        expected: u64,
        found: u64,
        object: String,
    },
    #[error(
        "seq {seq}: its hash {found} is not the prev {expected} recorded by seq {next} (record {seq} or that prev was altered)"
    )]
    HashChain {
        seq: u64,
        next: u64,
        expected: Hash,
        found: Hash,
    },
    #[error(
        "seq {seq}: altered: its prev {prev} is not the hash {expected} of seq {}, and its own hash does not link to what follows",
        seq.saturating_sub(1)
    )]
    Altered {
        seq: u64,
        prev: Hash,
        expected: Hash,
    },
    #[error("seq 0: prev must be 32 zero bytes, found {found}")]
    FirstPrev { found: Hash },
    /// A record, correctly chained, earlier than one before it: the store never sequences
    /// one so, so it was appended backdated by whoever held the log.
    #[error(
        "seq {seq}: its time {time} is before {latest}, the time of a record before it (the store never sequences a record earlier; it was appended backdated)"
    )]
    TimeBackwards { seq: u64, time: i64, latest: i64 },
    #[error(
        "seq {seq}: the records end at seq {seq}, but {object} covers {size} records (records were removed from the end; an export cut short before it wrote them looks the same: run the export again, which completes one cut short, then verify again)"
    )]
    Truncated { seq: u64, size: u64, object: String },
    #[error("{object}: checkpoint signature: {what}")]
    Signature { object: String, what: String },
    #[error(
        "seq {}: {object} signs root {expected} for size {size} but the records give {computed} (seq {} is the newest record it covers; every earlier link verified)",
        size.saturating_sub(1),
        size.saturating_sub(1)
    )]
    Root {
        object: String,
        size: u64,
        expected: Hash,
        computed: Hash,
    },
    #[error("{object}: checkpoints are inconsistent: {what}")]
    Inconsistent { object: String, what: String },
    #[error("{object}: missing (named by {named_by})")]
    Missing { object: String, named_by: String },
    #[error("{object}: SHA-256 is {found} but {named_by} says {expected}")]
    Digest {
        object: String,
        expected: String,
        found: String,
        named_by: String,
    },
    #[error("{object}: {what}")]
    Manifest { object: String, what: String },
    #[error("{object}: not named by any manifest")]
    Unlisted { object: String },
    /// A data directory's stored entries are broken at `seq` (an entry missing or cut short):
    /// its records were altered, not merely unreadable.
    #[error("seq {seq} in {object}: {what}")]
    Stored {
        seq: u64,
        object: String,
        what: String,
    },
    /// An object larger than what names it says, or than any of its kind can be: refused
    /// before it is read, so a planted multi-gigabyte file fails by name, not by memory.
    #[error("{object}: {size} bytes, more than the {max} that {limit} allows")]
    Oversized {
        object: String,
        size: u64,
        max: u64,
        limit: String,
    },
    /// An object more than the verifier reads, though nothing proves it altered: the export
    /// is not checked (exit 2), not found wanting.
    #[error("{object}: {size} bytes, more than the {max} that {limit} allows; not checked")]
    TooLargeToCheck {
        object: String,
        size: u64,
        max: u64,
        limit: String,
    },
    #[error("cannot read {object}: {what}")]
    Io { object: String, what: String },
    #[error("{0}")]
    Usage(String),
}

/// The chain and tree as records stream past.
struct Chain {
    next: u64,
    prev: Hash,
    frontier: Frontier,
    /// The frontier one record earlier, to test which record of a broken link was altered.
    before_last: Frontier,
    /// Checkpoint size → (expected root, object that claims it).
    roots: BTreeMap<u64, (Hash, String)>,
    pending: Option<Pending>,
    /// The latest time of the records so far: the store never sequences a record earlier.
    latest: Timestamp,
    /// A record earlier than `latest`, reported once the next record's link shows it was
    /// sequenced so (an altered time is a broken link, named as such).
    backwards: Option<(u64, Timestamp)>,
}

/// A broken link at `seq` whose culprit is not known yet: either record `seq - 1` was altered
/// (then the next record's prev, or the checkpoint root with `prev_in_n` as seq - 1's hash,
/// still agree with record `seq`) or record `seq` itself was.
struct Pending {
    seq: u64,
    prev_in_n: Hash,
    hash_before: Hash,
    /// The tree if record `seq - 1` had hashed to `prev_in_n`.
    alt: Frontier,
}

// === impl DirSource ===

impl DirSource {
    pub fn new(root: &Path) -> DirSource {
        DirSource {
            root: root.to_owned(),
        }
    }
}

impl Source for DirSource {
    fn list(&self, prefix: &str) -> Result<Vec<String>, VerifyError> {
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir.display().to_string(), &e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(prefix, &e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                return Err(VerifyError::Unlisted {
                    object: format!("{prefix}{}", name.to_string_lossy()),
                });
            };
            out.push(format!("{}/{name}", prefix.trim_end_matches('/')));
        }
        out.sort();
        Ok(out)
    }

    fn get(&self, key: &str, limit: Limit<'_>) -> Result<Option<Vec<u8>>, VerifyError> {
        use std::io::Read;
        let path = self.root.join(key);
        // An export holds files (a link to one, as a backup's link farm keeps them, is read as
        // that file): a device such as `/dev/zero` would be read up to the limit, and a pipe
        // would hold the verifier for ever on its open.
        let not_a_file = || VerifyError::Io {
            object: key.to_owned(),
            what: "not a regular file (a pipe, device or directory); an export holds only files"
                .into(),
        };
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(not_a_file()),
            // A link to nothing (a backup's store not mounted) is unreadable, not missing.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && std::fs::symlink_metadata(&path).is_err() =>
            {
                return Ok(None);
            }
            Err(e) => return Err(io_error(key, &e)),
        }
        // Opened without blocking, and checked again on the handle: a file swapped for a pipe
        // meanwhile does not hold the open, and a kernel file that reads as regular but blocks
        // (`/proc/kmsg`) answers "would block" rather than wait.
        let opened = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(key, &e)),
        };
        let (max, limit_proves) = (limit.max, limit.proves_alteration);
        let oversized = |size| {
            let (object, limit) = (key.to_owned(), limit.set_by.to_owned());
            if limit_proves {
                VerifyError::Oversized {
                    object,
                    size,
                    max,
                    limit,
                }
            } else {
                VerifyError::TooLargeToCheck {
                    object,
                    size,
                    max,
                    limit,
                }
            }
        };
        let meta = file.metadata().map_err(|e| io_error(key, &e))?;
        if !meta.is_file() {
            return Err(not_a_file());
        }
        let size = meta.len();
        if size > max {
            return Err(oversized(size));
        }
        // A file that grows while it is read stops one byte past the limit.
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(key, &e))?;
        match bytes.len() as u64 {
            n if n > max => Err(oversized(n)),
            _ => Ok(Some(bytes)),
        }
    }
}

fn io_error(object: &str, e: &std::io::Error) -> VerifyError {
    VerifyError::Io {
        object: object.to_owned(),
        what: e.to_string(),
    }
}

// === impl VerifyError ===

impl VerifyError {
    /// Integrity failures exit 1; usage and I/O errors exit 2.
    pub fn is_integrity(&self) -> bool {
        !matches!(
            self,
            VerifyError::Io { .. } | VerifyError::TooLargeToCheck { .. } | VerifyError::Usage(_)
        )
    }

    /// A stable name for the JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::Undecodable { .. } => "undecodable_record",
            VerifyError::Stored { .. } => "stored_entry_broken",
            VerifyError::SeqMismatch { .. } => "seq_mismatch",
            VerifyError::HashChain { .. } => "hash_chain",
            VerifyError::Altered { .. } => "record_altered",
            VerifyError::FirstPrev { .. } => "first_prev",
            VerifyError::TimeBackwards { .. } => "time_backwards",
            VerifyError::Truncated { .. } => "truncated",
            VerifyError::Signature { .. } => "checkpoint_signature",
            VerifyError::Root { .. } => "checkpoint_root",
            VerifyError::Inconsistent { .. } => "checkpoints_inconsistent",
            VerifyError::Missing { .. } => "object_missing",
            VerifyError::Digest { .. } => "digest_mismatch",
            VerifyError::Oversized { .. } => "object_oversized",
            VerifyError::TooLargeToCheck { .. } => "object_too_large_to_check",
            VerifyError::Manifest { .. } => "manifest",
            VerifyError::Unlisted { .. } => "object_unlisted",
            VerifyError::Io { .. } => "io",
            VerifyError::Usage(_) => "usage",
        }
    }

    /// The first failing record, when the failure is about one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::Undecodable { seq, .. }
            | VerifyError::Stored { seq, .. }
            | VerifyError::HashChain { seq, .. }
            | VerifyError::Altered { seq, .. }
            | VerifyError::Truncated { seq, .. }
            | VerifyError::TimeBackwards { seq, .. } => Some(*seq),
            VerifyError::SeqMismatch { expected, .. } => Some(*expected),
            VerifyError::FirstPrev { .. } => Some(0),
            VerifyError::Root { size, .. } => size.checked_sub(1),
            _ => None,
        }
    }

    /// The failing object, when the failure is about one.
    pub fn object(&self) -> Option<&str> {
        match self {
            VerifyError::Undecodable { object, .. }
            | VerifyError::Stored { object, .. }
            | VerifyError::SeqMismatch { object, .. }
            | VerifyError::Truncated { object, .. }
            | VerifyError::Signature { object, .. }
            | VerifyError::Root { object, .. }
            | VerifyError::Inconsistent { object, .. }
            | VerifyError::Missing { object, .. }
            | VerifyError::Digest { object, .. }
            | VerifyError::Oversized { object, .. }
            | VerifyError::TooLargeToCheck { object, .. }
            | VerifyError::Manifest { object, .. }
            | VerifyError::Unlisted { object }
            | VerifyError::Io { object, .. } => Some(object),
            _ => None,
        }
    }
}

// === impl Progress ===

impl Progress for Quiet {
    fn start(&mut self, _: u64) {}
    fn advance(&mut self, _: u64) {}
}

// === impl Chain ===

impl Chain {
    fn new(roots: BTreeMap<u64, (Hash, String)>) -> Chain {
        Chain {
            next: 0,
            prev: hash::ZERO,
            frontier: Frontier::new(),
            before_last: Frontier::new(),
            roots,
            pending: None,
            latest: Timestamp::default(),
            backwards: None,
        }
    }

    /// Checks one stored record: its seq, its link to the previous record, and any checkpoint
    /// root that ends with it.
    fn push(&mut self, bytes: &[u8], object: &str, offset: usize) -> Result<(), VerifyError> {
        self.push_leaf(bytes, hash::leaf_hash(bytes), object, offset)
            .map(|_| ())
    }

    /// As [`Chain::push`], with the record's leaf hash already computed (by a worker thread);
    /// returns where the record's event begins.
    fn push_leaf(
        &mut self,
        bytes: &[u8],
        leaf: Hash,
        object: &str,
        offset: usize,
    ) -> Result<usize, VerifyError> {
        let (header, event_at) =
            record::header_and_event_at(bytes).ok_or_else(|| VerifyError::Undecodable {
                seq: self.next,
                object: object.to_owned(),
                offset,
                what: "not a canonical record header".into(),
            })?;
        if header.seq.0 != self.next {
            return Err(VerifyError::SeqMismatch {
                expected: self.next,
                found: header.seq.0,
                object: object.to_owned(),
            });
        }
        if let Some(p) = self.pending.take() {
            // This record says what the previous one hashed to: that names the culprit.
            return Err(resolve(p, header.prev == self.prev));
        }
        if let Some((seq, time)) = self.backwards.take()
            && header.prev == self.prev
        {
            return Err(self.went_back(seq, time));
        }
        if header.time < self.latest {
            self.backwards = Some((header.seq.0, header.time));
        } else {
            self.latest = header.time;
        }
        if header.prev != self.prev {
            if self.next == 0 {
                return Err(VerifyError::FirstPrev { found: header.prev });
            }
            let mut alt = self.before_last.clone();
            alt.push(header.prev);
            self.pending = Some(Pending {
                seq: self.next,
                prev_in_n: header.prev,
                hash_before: self.prev,
                alt,
            });
        }
        self.before_last.clone_from(&self.frontier);
        self.frontier.push(leaf);
        if let Some(p) = &mut self.pending {
            p.alt.push(leaf);
        }
        self.prev = leaf;
        self.next += 1;
        self.check_root()?;
        Ok(event_at)
    }

    fn check_root(&mut self) -> Result<(), VerifyError> {
        if let Some((expected, cp)) = self.roots.get(&self.next) {
            let computed = self.frontier.root();
            if computed != *expected {
                if let Some(p) = self.pending.take() {
                    let earlier_altered = p.alt.root() == *expected;
                    return Err(resolve(p, earlier_altered));
                }
                return Err(VerifyError::Root {
                    object: cp.clone(),
                    size: self.next,
                    expected: *expected,
                    computed,
                });
            }
        }
        Ok(())
    }

    /// After the last record: no broken link is left open, and no checkpoint claims more
    /// records than there are.
    /// Record `seq`, at `time`, earlier than the latest record before it.
    fn went_back(&self, seq: u64, time: Timestamp) -> VerifyError {
        VerifyError::TimeBackwards {
            seq,
            time: time.0,
            latest: self.latest.0,
        }
    }

    fn finish(&mut self) -> Result<(), VerifyError> {
        if let Some(p) = self.pending.take() {
            // Nothing after the broken link says which side changed; name the earlier record.
            return Err(resolve(p, true));
        }
        if let Some((seq, time)) = self.backwards.take() {
            return Err(self.went_back(seq, time));
        }
        if let Some((size, (_, cp))) = self.roots.range(self.next + 1..).next() {
            return Err(VerifyError::Truncated {
                seq: self.next,
                size: *size,
                object: cp.clone(),
            });
        }
        Ok(())
    }
}

/// Names the altered record of a broken link: `seq - 1` when what follows agrees with record
/// `seq` (`earlier_altered`), else `seq` itself.
fn resolve(p: Pending, earlier_altered: bool) -> VerifyError {
    if earlier_altered {
        VerifyError::HashChain {
            seq: p.seq - 1,
            next: p.seq,
            expected: p.prev_in_n,
            found: p.hash_before,
        }
    } else {
        VerifyError::Altered {
            seq: p.seq,
            prev: p.prev_in_n,
            expected: p.hash_before,
        }
    }
}

/// Verifies an export read through `src`. With `key`, the checkpoints must verify under it
/// ([`KeyTrust::Pinned`]); without, the key is taken from manifest 0 ([`KeyTrust::Unpinned`]).
pub fn verify_export(
    src: &(impl Source + Sync),
    key: Option<&VerifierKey>,
    progress: &mut dyn Progress,
) -> Result<Summary, VerifyError> {
    let cp_keys = src.list("checkpoints/")?;
    let manifests = load_manifests(src, manifest_limit(cp_keys.len()))?;
    let Some((_, first)) = manifests.first() else {
        return Err(VerifyError::Missing {
            object: export::manifest_key(0),
            named_by: "the export layout".into(),
        });
    };
    let origin = first.origin.clone();
    let (key, trust) = choose_key(key, first)?;

    // Checkpoints: all of them, dense, each signed; manifests name them in order. Each note is
    // opened as it is read and only its checkpoint and digest kept: a planted export of many
    // notes, each up to the note limit, fails on the first bad one, not by memory.
    let mut checkpoints = Vec::new();
    let mut opener = Opened::new(&origin, &key);
    for (n, k) in cp_keys.iter().enumerate() {
        match export::parse_checkpoint_key(k) {
            Some(found) if found == n as u64 => {}
            // A gap in the numbering: checkpoint n was deleted.
            Some(_) => {
                return Err(VerifyError::Missing {
                    object: export::checkpoint_key(n as u64),
                    named_by: format!("the checkpoint numbering (found {k} next)"),
                });
            }
            None => return Err(VerifyError::Unlisted { object: k.clone() }),
        }
        let note = get_listed(src, k, NOTE_LIMIT)?;
        opener.open(k, &note)?;
        checkpoints.push(NoteRead {
            key: k.clone(),
            sha256: hash::object_digest(&note).to_hex(),
            size: note.len() as u64,
        });
    }
    let opened = opener.out;
    check_manifest_checkpoints(&manifests, &checkpoints, &opened)?;

    // Segments: exactly those the manifests name.
    let named: BTreeSet<&str> = manifests
        .iter()
        .map(|(_, m)| m.segment.key.as_str())
        .collect();
    let total = manifests.last().map(|(_, m)| m.end).unwrap_or(0);
    for k in src.list("segments/")? {
        if !named.contains(k.as_str()) {
            // The segment right after the last manifest: that manifest was deleted.
            if export::parse_segment_key(&k).is_some_and(|(first, _)| first == total) {
                return Err(VerifyError::Missing {
                    object: export::manifest_key(manifests.len() as u64),
                    named_by: format!(
                        "the manifest chain ({k} has no manifest: it was removed, or the export \
                         was cut short before it wrote it; run the export again, which completes \
                         one cut short, then verify again)"
                    ),
                });
            }
            return Err(VerifyError::Unlisted { object: k });
        }
    }

    progress.start(total);
    let mut chain = Chain::new(roots_of(&opened));
    chain.check_root()?;
    verify_segments(src, &manifests, &mut chain, &mut Vec::new(), progress)?;
    chain.finish()?;
    check_log_created(src, &manifests)?;
    Ok(Summary {
        records: chain.next,
        checkpoints: checkpoints.len() as u64,
        segments: manifests.len() as u64,
        head_hash: chain.prev,
        root: chain.frontier.root(),
        signed_size: opened.last().map(|c| c.size).unwrap_or(0),
        key: key.to_string(),
        trust,
    })
}

/// Feeds every stored record, in `seq` order, to the callback it is given.
pub type Feed<'a> = dyn FnMut(&mut dyn FnMut(u64, &[u8]) -> Result<(), VerifyError>) -> Result<(), VerifyError>
    + 'a;

/// Verifies records and checkpoints as a store holds them (no manifests). `first` is the stored
/// record 0 (it names the origin and, unpinned, the key); `feed` streams all records.
pub fn verify_records(
    first: &[u8],
    total: u64,
    notes: &[(String, Vec<u8>)],
    key: Option<&VerifierKey>,
    progress: &mut dyn Progress,
    feed: &mut Feed<'_>,
) -> Result<Summary, VerifyError> {
    progress.start(total);
    let (origin, checkpoint_key) = cbor::decode(first)
        .map_err(|e| e.to_string())
        .and_then(|v| log_created(&v))
        .map_err(|what| VerifyError::Undecodable {
            seq: 0,
            object: "record 0".into(),
            offset: 0,
            what,
        })?;
    let (key, trust) = match key {
        Some(k) => (k.clone(), KeyTrust::Pinned),
        None => (
            VerifierKey::parse(&checkpoint_key).map_err(|e| VerifyError::Signature {
                object: "record 0".into(),
                what: format!("LogCreated names an unreadable key: {e}"),
            })?,
            KeyTrust::Unpinned,
        ),
    };
    let opened = open_all(notes, &origin, &key)?;
    if opened.is_empty() {
        // A store signs its first checkpoint as it creates the log: a store without one has
        // had its checkpoints taken away, and nothing in it is signed.
        return Err(VerifyError::Missing {
            object: "log.redb checkpoint 0".into(),
            named_by: format!("a log of {total} records; nothing in it is signed"),
        });
    }
    let mut chain = Chain::new(roots_of(&opened));
    chain.check_root()?;
    let mut since = 0u64;
    feed(&mut |seq, bytes| {
        // As strictly as an export's records (a body with two readings, a repeated key or
        // broken UTF-8, fails), and with nothing after the record.
        let broken = match cbor::item_len(bytes) {
            Ok(len) if len == bytes.len() => None,
            Ok(len) => Some((len, "bytes after the record".to_owned())),
            Err(e) => Some((0, e.to_string())),
        };
        if let Some((offset, what)) = broken {
            return Err(VerifyError::Undecodable {
                seq,
                object: format!("log.redb key {seq}"),
                offset,
                what,
            });
        }
        chain.push(bytes, "log.redb", 0).map_err(|e| match e {
            VerifyError::SeqMismatch {
                expected, found, ..
            } => VerifyError::SeqMismatch {
                expected,
                found,
                object: format!("log.redb key {seq}"),
            },
            e => e,
        })?;
        since += 1;
        if since == 65536 {
            progress.advance(since);
            since = 0;
        }
        Ok(())
    })?;
    progress.advance(since);
    chain.finish()?;
    Ok(Summary {
        records: chain.next,
        checkpoints: notes.len() as u64,
        segments: 0,
        head_hash: chain.prev,
        root: chain.frontier.root(),
        signed_size: opened.last().map(|c| c.size).unwrap_or(0),
        key: key.to_string(),
        trust,
    })
}

fn load_manifests(
    src: &impl Source,
    limit: Limit<'_>,
) -> Result<Vec<(String, Manifest)>, VerifyError> {
    let keys = src.list("manifests/")?;
    let mut out: Vec<(String, Manifest)> = Vec::new();
    let mut prev_digest = "0".repeat(64);
    for (i, k) in keys.iter().enumerate() {
        let i = i as u64;
        if export::parse_manifest_key(k) != Some(i) {
            // A gap in the numbering means a manifest was deleted.
            let expected = export::manifest_key(i);
            return Err(if export::parse_manifest_key(k).is_some() {
                VerifyError::Missing {
                    object: expected,
                    named_by: format!("the manifest chain (found {k} next)"),
                }
            } else {
                VerifyError::Unlisted { object: k.clone() }
            });
        }
        let bytes = get_listed(src, k, limit)?;
        let bad = |what: String| VerifyError::Manifest {
            object: k.clone(),
            what,
        };
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        if m.version != export::MANIFEST_VERSION {
            return Err(bad(format!("unknown manifest version {}", m.version)));
        }
        if m.index != i {
            return Err(bad(format!("says it is manifest {}", m.index)));
        }
        if m.prev_manifest_sha256 != prev_digest {
            // The previous manifest's bytes changed after this one named them.
            return Err(match i.checked_sub(1) {
                Some(p) => VerifyError::Digest {
                    object: export::manifest_key(p),
                    expected: m.prev_manifest_sha256.clone(),
                    found: prev_digest,
                    named_by: k.clone(),
                },
                None => bad(format!(
                    "prev_manifest_sha256 must be 64 zeros for the first manifest, found {}",
                    m.prev_manifest_sha256
                )),
            });
        }
        // One manifest, one byte string: the newest manifest is named by nothing else yet,
        // so even an edit that keeps its meaning is refused.
        let mut canonical =
            serde_json::to_vec_pretty(&m).map_err(|e| bad(format!("cannot re-encode: {e}")))?;
        canonical.push(b'\n');
        if canonical != bytes {
            return Err(bad("not in canonical form (the bytes were edited)".into()));
        }
        let expected_first = out.last().map(|(_, p)| p.end).unwrap_or(0);
        if m.first != expected_first || m.end <= m.first {
            return Err(bad(format!(
                "covers records [{}, {}) but should start at {expected_first}",
                m.first, m.end
            )));
        }
        if m.segment.key != export::segment_key(m.first, m.end) {
            return Err(bad(format!(
                "names segment {} for its range",
                m.segment.key
            )));
        }
        // The key history only grows: each manifest extends the previous one's.
        if let Some((_, prev)) = out.last()
            && (m.origin != prev.origin || !m.keys.starts_with(&prev.keys))
        {
            return Err(bad("changes the origin or rewrites the key history".into()));
        }
        prev_digest = hash::object_digest(&bytes).to_hex();
        out.push((k.clone(), m));
    }
    Ok(out)
}

fn choose_key(
    pinned: Option<&VerifierKey>,
    first: &Manifest,
) -> Result<(VerifierKey, KeyTrust), VerifyError> {
    if let Some(k) = pinned {
        return Ok((k.clone(), KeyTrust::Pinned));
    }
    let entry = first.keys.first().ok_or_else(|| VerifyError::Manifest {
        object: export::manifest_key(0),
        what: "names no checkpoint key".into(),
    })?;
    let key = VerifierKey::parse(&entry.vkey).map_err(|e| VerifyError::Manifest {
        object: export::manifest_key(0),
        what: format!("unreadable checkpoint key: {e}"),
    })?;
    Ok((key, KeyTrust::Unpinned))
}

/// Opens every checkpoint under `key` and checks they never shrink, fork or go back in time.
fn open_all(
    notes: &[(String, Vec<u8>)],
    origin: &str,
    key: &VerifierKey,
) -> Result<Vec<Checkpoint>, VerifyError> {
    let mut opener = Opened::new(origin, key);
    for (object, note) in notes {
        opener.open(object, note)?;
    }
    Ok(opener.out)
}

/// A checkpoint note of an export as the manifests check it: its name, digest and length.
struct NoteRead {
    key: String,
    sha256: String,
    size: u64,
}

/// Checkpoints opened one note at a time, in order: each signed for `origin` by `key`, and
/// consistent with the one before it.
struct Opened<'a> {
    origin: &'a str,
    key: &'a VerifierKey,
    out: Vec<Checkpoint>,
}

impl<'a> Opened<'a> {
    fn new(origin: &'a str, key: &'a VerifierKey) -> Opened<'a> {
        Opened {
            origin,
            key,
            out: Vec::new(),
        }
    }

    /// Opens the note stored as `object`, after those opened before it.
    fn open(&mut self, object: &str, note: &[u8]) -> Result<(), VerifyError> {
        let out = &mut self.out;
        let cp = checkpoint::open_checkpoint(note, self.origin, self.key).map_err(|e| {
            VerifyError::Signature {
                object: object.to_owned(),
                what: e.to_string(),
            }
        })?;
        if let Some(prev) = out.last() {
            let what = if cp.size < prev.size {
                Some(format!("size {} after size {}", cp.size, prev.size))
            } else if cp.size == prev.size && cp.root != prev.root {
                Some(format!("two roots for size {}", cp.size))
            } else if cp.time < prev.time {
                Some("its time is before the previous checkpoint's".to_owned())
            } else {
                None
            };
            if let Some(what) = what {
                return Err(VerifyError::Inconsistent {
                    object: object.to_owned(),
                    what,
                });
            }
        }
        out.push(cp);
        Ok(())
    }
}

fn roots_of(opened: &[Checkpoint]) -> BTreeMap<u64, (Hash, String)> {
    opened
        .iter()
        .enumerate()
        .map(|(n, c)| (c.size, (c.root, export::checkpoint_key(n as u64))))
        .collect()
}

/// Each manifest names the checkpoints cut since the previous one, in order, with their
/// digests, and the last of them covers its segment's end.
fn check_manifest_checkpoints(
    manifests: &[(String, Manifest)],
    notes: &[NoteRead],
    opened: &[Checkpoint],
) -> Result<(), VerifyError> {
    let mut next = 0usize;
    for (mkey, m) in manifests {
        for r in &m.checkpoints {
            let Some(NoteRead {
                key: k,
                sha256,
                size,
            }) = notes.get(next)
            else {
                return Err(VerifyError::Missing {
                    object: r.key.clone(),
                    named_by: mkey.clone(),
                });
            };
            if *k != r.key {
                return Err(VerifyError::Manifest {
                    object: mkey.clone(),
                    what: format!("names {} where {k} comes next", r.key),
                });
            }
            check_digest(k, sha256, *size, r, mkey)?;
            next += 1;
        }
        let last = next.checked_sub(1).and_then(|i| opened.get(i));
        if m.checkpoints.is_empty() || last.map(|c| c.size) != Some(m.end) {
            return Err(VerifyError::Manifest {
                object: mkey.clone(),
                what: format!("no checkpoint it names covers its end {}", m.end),
            });
        }
    }
    Ok(())
}

fn check_digest(
    object: &str,
    found: &str,
    size: u64,
    r: &export::ObjectRef,
    named_by: &str,
) -> Result<(), VerifyError> {
    if found != r.sha256 || size != r.size {
        return Err(VerifyError::Digest {
            object: object.to_owned(),
            expected: r.sha256.clone(),
            found: found.to_owned(),
            named_by: named_by.to_owned(),
        });
    }
    Ok(())
}

/// A segment read and split into records, whose hashing has started on a worker thread.
struct Prepared<'m, T> {
    manifest: &'m (String, Manifest),
    bytes: Arc<Vec<u8>>,
    items: Arc<Vec<(usize, usize)>>,
    /// Where splitting stopped on bytes that are not a CBOR item.
    split_error: Option<cbor::SequenceStop>,
    /// Leaf hashes of the first half of `items`, computed on this thread.
    head: Vec<Hash>,
    /// The segment's digest and the leaf hashes of the second half.
    worker: T,
}

/// Checks every segment in order, hashing the next segment on a worker thread while the chain
/// of the current one is checked, so both cores work; failures are still reported in log order.
/// `keys` gathers the log's key history (its `LogCreated` and `CheckpointKeyAdded` records, as
/// the exporter writes it into each manifest) as the records pass.
fn verify_segments(
    src: &(impl Source + Sync),
    manifests: &[(String, Manifest)],
    chain: &mut Chain,
    keys: &mut Vec<KeyRef>,
    progress: &mut dyn Progress,
) -> Result<(), VerifyError> {
    std::thread::scope(|s| {
        let mut pending = None;
        for entry in manifests {
            let (mkey, m) = entry;
            let bytes = match src.get(&m.segment.key, segment_limit(mkey, m)) {
                Ok(Some(b)) => Arc::new(b),
                // A later segment's absence counts only once the earlier ones are checked.
                other => {
                    if let Some(p) = pending.take() {
                        finish_segment(chain, keys, p)?;
                    }
                    return Err(match other {
                        Err(e) => e,
                        _ => VerifyError::Missing {
                            object: m.segment.key.clone(),
                            named_by: mkey.clone(),
                        },
                    });
                }
            };
            // Each record checked as strictly as the gateway's decoder reads CBOR: a body
            // with two readings (a repeated key, broken UTF-8) fails here.
            let (items, split_error) = cbor::split_sequence(&bytes);
            let items = Arc::new(items);
            let mid = items.len() / 2;
            let worker = {
                let (bytes, items) = (bytes.clone(), items.clone());
                s.spawn(move || {
                    let digest = hash::object_digest(&bytes);
                    let tail = leaves(&bytes, items.get(mid..).unwrap_or_default());
                    (digest, tail)
                })
            };
            if let Some(p) = pending.take() {
                let done = p.manifest.1.end - p.manifest.1.first;
                finish_segment(chain, keys, p)?;
                progress.advance(done);
            }
            let head = leaves(&bytes, items.get(..mid).unwrap_or_default());
            pending = Some(Prepared {
                manifest: entry,
                bytes,
                items,
                split_error,
                head,
                worker,
            });
        }
        if let Some(p) = pending.take() {
            let done = p.manifest.1.end - p.manifest.1.first;
            finish_segment(chain, keys, p)?;
            progress.advance(done);
        }
        Ok(())
    })
}

/// The header of record `seq` at or after byte `from`, found by its canonical opening bytes.
fn find_header(bytes: &[u8], from: usize, seq: u64) -> Option<record::Header> {
    let mut opening = vec![0xa4, 0x00];
    cbor::encode(&cbor::Value::Uint(seq), &mut opening);
    opening.push(0x01);
    let rest = bytes.get(from..)?;
    rest.windows(opening.len())
        .enumerate()
        .filter(|(_, w)| *w == opening.as_slice())
        .filter_map(|(i, _)| record::header(rest.get(i..)?))
        .find(|h| h.seq.0 == seq)
}

fn leaves(bytes: &[u8], items: &[(usize, usize)]) -> Vec<Hash> {
    items
        .iter()
        .map(|&(at, len)| hash::leaf_hash(bytes.get(at..at + len).unwrap_or_default()))
        .collect()
}

/// Checks the records of a prepared segment in order, then its length and its digest.
fn finish_segment(
    chain: &mut Chain,
    keys: &mut Vec<KeyRef>,
    p: Prepared<'_, std::thread::ScopedJoinHandle<'_, (Hash, Vec<Hash>)>>,
) -> Result<(), VerifyError> {
    let (mkey, m) = p.manifest;
    let object = m.segment.key.as_str();
    let (digest, tail) = p
        .worker
        .join()
        .map_err(|_| VerifyError::Usage("a hashing thread panicked".into()))?;
    let bytes = p.bytes.as_slice();
    let item = |&(at, len): &(usize, usize)| bytes.get(at..at + len).unwrap_or_default();
    // A record whose length bytes were altered swallows or leaves bytes of the next one. When
    // the next one fails, name the previous record if it does not decode strictly, or if the
    // true next record (found by its header further on) does not chain to it as it now reads.
    let blame = |e: VerifyError, last: Option<(u64, &(usize, usize))>| {
        let Some((seq, r)) = last else {
            return e;
        };
        let previous = item(r);
        let altered = match record::decode(previous) {
            Err(bad) => Some(bad.to_string()),
            Ok(stored) => find_header(bytes, r.0 + r.1, seq + 1)
                .filter(|next| next.prev != stored.hash)
                .map(|_| "its length changed: the record after it does not chain to it".into()),
        };
        match altered {
            Some(what) => VerifyError::Undecodable {
                seq,
                object: object.to_owned(),
                offset: r.0,
                what,
            },
            None => e,
        }
    };
    let mut last = None;
    for (r, leaf) in p.items.iter().zip(p.head.iter().chain(tail.iter())) {
        let bytes = item(r);
        if chain.next >= m.end {
            let e = VerifyError::SeqMismatch {
                expected: m.end,
                found: record::header(bytes).map(|h| h.seq.0).unwrap_or(chain.next),
                object: object.to_owned(),
            };
            return Err(blame(e, last));
        }
        let seq = chain.next;
        let event_at = match chain.push_leaf(bytes, *leaf, object, r.0) {
            Ok(at) => at,
            Err(e) => {
                return Err(match e {
                    VerifyError::Undecodable { .. } | VerifyError::SeqMismatch { .. } => {
                        blame(e, last)
                    }
                    e => e,
                });
            }
        };
        if let Some(field) = record::code_at(bytes, event_at).and_then(key_field) {
            keys.push(key_added(bytes, field, seq, object, r.0)?);
        }
        last = Some((seq, r));
    }
    if let Some((offset, e)) = p.split_error {
        let e = VerifyError::Undecodable {
            seq: chain.next,
            object: object.to_owned(),
            offset,
            what: e.to_string(),
        };
        return Err(blame(e, last));
    }
    if chain.next != m.end {
        let e = VerifyError::Truncated {
            seq: chain.next,
            size: m.end,
            object: object.to_owned(),
        };
        return Err(blame(e, last));
    }
    // Nothing signs a manifest: the key history it tells an auditor must be the log's own.
    if m.keys != *keys {
        let at = m
            .keys
            .iter()
            .zip(keys.iter())
            .position(|(said, held)| said != held)
            .unwrap_or(m.keys.len().min(keys.len()));
        let show = |k: Option<&KeyRef>| {
            k.map_or("nothing".to_owned(), |k| {
                format!("{} from size {}", k.vkey, k.from_size)
            })
        };
        return Err(VerifyError::Manifest {
            object: mkey.clone(),
            what: format!(
                "its key history differs from the LogCreated and CheckpointKeyAdded records \
                 before {}: entry {at} says {}, the records hold {}",
                m.end,
                show(m.keys.get(at)),
                show(keys.get(at))
            ),
        });
    }
    let found = digest.to_hex();
    if found != m.segment.sha256 || bytes.len() as u64 != m.segment.size {
        return Err(VerifyError::Digest {
            object: object.to_owned(),
            expected: m.segment.sha256.clone(),
            found,
            named_by: mkey.to_owned(),
        });
    }
    Ok(())
}

/// The body field that holds the key a record of this code adds to the key history: 1 in
/// `LogCreated`, 0 in `CheckpointKeyAdded`; `None` for every other code.
fn key_field(code: &str) -> Option<u64> {
    match code {
        "G1000I" => Some(1),
        "G1001I" => Some(0),
        _ => None,
    }
}

/// The key a `LogCreated` or `CheckpointKeyAdded` record adds to the history, from `seq` on:
/// its body's `field`, read alone, so a newer gateway's optional fields (an event may gain
/// them) do not stop this verifier.
fn key_added(
    bytes: &[u8],
    field: u64,
    seq: u64,
    object: &str,
    offset: usize,
) -> Result<KeyRef, VerifyError> {
    let undecodable = |what: String| VerifyError::Undecodable {
        seq,
        object: object.to_owned(),
        offset,
        what,
    };
    let value = cbor::decode(bytes).map_err(|e| undecodable(e.to_string()))?;
    match body_text(&value, field) {
        Some(vkey) => Ok(KeyRef {
            vkey: vkey.to_owned(),
            from_size: seq,
        }),
        None => Err(undecodable(format!(
            "a key record without its key (body field {field}, text)"
        ))),
    }
}

/// Text field `field` of a record's event body (`{3: {0: code, 1: body}}`), whatever else the
/// body holds.
fn body_text(record: &cbor::Value, field: u64) -> Option<&str> {
    let body = map_entry(map_entry(record, 3)?, 1)?;
    match map_entry(body, field)? {
        cbor::Value::Text(text) => Some(text),
        _ => None,
    }
}

/// The value under key `k` of a CBOR map.
fn map_entry(v: &cbor::Value, k: u64) -> Option<&cbor::Value> {
    match v {
        cbor::Value::Map(entries) => entries.iter().find(|(key, _)| *key == k).map(|(_, v)| v),
        _ => None,
    }
}

/// Record 0's origin and first key, read for those fields alone as key records are: a newer
/// gateway's optional fields in `LogCreated` do not stop this verifier.
fn log_created(record: &cbor::Value) -> Result<(String, String), String> {
    let code = map_entry(record, 3).and_then(|event| map_entry(event, 0));
    if !matches!(code, Some(cbor::Value::Text(c)) if c == "G1000I") {
        return Err("record 0 is not LogCreated".into());
    }
    match (body_text(record, 0), body_text(record, 1)) {
        (Some(origin), Some(key)) => Ok((origin.to_owned(), key.to_owned())),
        _ => Err("record 0 (LogCreated) lacks its origin or its key".into()),
    }
}

/// Record 0 must be `LogCreated` for this origin and name the first key of the history.
fn check_log_created(
    src: &impl Source,
    manifests: &[(String, Manifest)],
) -> Result<(), VerifyError> {
    let Some((mkey, m)) = manifests.first() else {
        return Ok(());
    };
    let bytes = src
        .get(&m.segment.key, segment_limit(mkey, m))?
        .ok_or_else(|| VerifyError::Missing {
            object: m.segment.key.clone(),
            named_by: mkey.clone(),
        })?;
    let (origin, checkpoint_key) = cbor::decode_prefix(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|(value, _)| log_created(&value))
        .map_err(|what| VerifyError::Undecodable {
            seq: 0,
            object: m.segment.key.clone(),
            offset: 0,
            what,
        })?;
    match m.keys.first() {
        Some(first) if origin == m.origin && first.vkey == checkpoint_key => Ok(()),
        _ => Err(VerifyError::Manifest {
            object: mkey.clone(),
            what: "its origin or first key differs from record 0 (LogCreated)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor::Value;

    fn key_record(code: &str, body: Vec<(u64, Value)>) -> Vec<u8> {
        cbor::to_vec(&Value::Map(vec![(
            3,
            Value::Map(vec![(0, Value::Text(code.into())), (1, Value::Map(body))]),
        )]))
    }

    /// A key record is read for its key alone: one from a newer gateway, whose body holds a
    /// field this verifier does not know, still gives its key.
    #[test]
    fn a_key_record_is_read_for_its_key_alone() {
        let vkey = || Value::Text("log+01020304+AQ==".into());
        let added = key_record(
            "G1001I",
            vec![
                (0, vkey()),
                (1, Value::Text("system".into())),
                (2, Value::Text("a newer field".into())),
            ],
        );
        let created = key_record(
            "G1000I",
            vec![(0, Value::Text("origin".into())), (1, vkey())],
        );
        for (bytes, code) in [(&added, "G1001I"), (&created, "G1000I")] {
            let field = key_field(code).unwrap();
            assert_eq!(
                key_added(bytes, field, 7, "segment", 0).unwrap(),
                KeyRef {
                    vkey: "log+01020304+AQ==".into(),
                    from_size: 7
                }
            );
        }
        let keyless = key_record("G1001I", vec![(1, Value::Text("system".into()))]);
        assert_eq!(
            key_added(&keyless, 0, 7, "segment", 0).unwrap_err().kind(),
            "undecodable_record"
        );
        assert_eq!(key_field("G4000I"), None);
    }

    /// Record 0 is read for its origin and key alone, as key records are: a newer gateway's
    /// `LogCreated` with a field this verifier does not know still names both.
    #[test]
    fn record_0_is_read_for_its_origin_and_key_alone() {
        let newer = key_record(
            "G1000I",
            vec![
                (0, Value::Text("origin".into())),
                (1, Value::Text("log+01020304+AQ==".into())),
                (2, Value::Text("a newer field".into())),
            ],
        );
        let value = cbor::decode(&newer).unwrap();
        assert_eq!(
            log_created(&value).unwrap(),
            ("origin".to_owned(), "log+01020304+AQ==".to_owned())
        );
        let other = cbor::decode(&key_record("G1001I", vec![])).unwrap();
        assert_eq!(
            log_created(&other).unwrap_err(),
            "record 0 is not LogCreated"
        );
        let keyless = cbor::decode(&key_record(
            "G1000I",
            vec![(0, Value::Text("origin".into()))],
        ))
        .unwrap();
        assert!(log_created(&keyless).unwrap_err().contains("lacks"));
    }
}
