//! The export layout: where each object of a compliance export lives and what a manifest says.
//!
//! An export is a set of immutable objects under deterministic keys:
//!
//! ```text
//! segments/00000000000000000000-00000000000000004096.cbor   records [0, 4096), a CBOR sequence
//! checkpoints/0000000003.note                               checkpoint number 3, a signed note
//! manifests/0000000000.json                                 manifest of segment 0
//! ```
//!
//! Segment `i` holds the records between two consecutive checkpoint sizes, so every segment is
//! sealed by the checkpoint that covers its end. Its manifest names the segment and every
//! checkpoint cut since the previous manifest (the last one covers the segment), with the SHA-256
//! of each, the SHA-256 of the previous manifest, and the checkpoint key history.
//!
//! **Invariant:** object keys come only from the functions here, so the local export, the S3
//! export and the verifier can never disagree about where an object is.

use serde::{Deserialize, Serialize};

/// The manifest format this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// One immutable object of an export and its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    pub key: String,
    /// Lowercase hex SHA-256 of the object's bytes.
    pub sha256: String,
    pub size: u64,
}

/// A checkpoint key and the tree size from which the log used it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    /// The C2SP vkey text.
    pub vkey: String,
    pub from_size: u64,
}

/// The manifest of one segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub origin: String,
    pub index: u64,
    /// The segment holds records `[first, end)`.
    pub first: u64,
    pub end: u64,
    pub segment: ObjectRef,
    /// Checkpoints cut since the previous manifest; the last one has size `end`.
    pub checkpoints: Vec<ObjectRef>,
    /// Lowercase hex SHA-256 of the previous manifest object; 64 zeros for manifest 0.
    pub prev_manifest_sha256: String,
    pub keys: Vec<KeyRef>,
}

/// The key of the segment holding records `[first, end)`.
pub fn segment_key(first: u64, end: u64) -> String {
    format!("segments/{first:020}-{end:020}.cbor")
}

/// The key of checkpoint number `n` (the order the store cut them in).
pub fn checkpoint_key(n: u64) -> String {
    format!("checkpoints/{n:010}.note")
}

/// The key of manifest `index`.
pub fn manifest_key(index: u64) -> String {
    format!("manifests/{index:010}.json")
}

/// The checkpoint number in a checkpoint key, if it is one.
pub fn parse_checkpoint_key(key: &str) -> Option<u64> {
    parse_number(key.strip_prefix("checkpoints/")?.strip_suffix(".note")?, 10)
}

/// The manifest index in a manifest key, if it is one.
pub fn parse_manifest_key(key: &str) -> Option<u64> {
    parse_number(key.strip_prefix("manifests/")?.strip_suffix(".json")?, 10)
}

/// `(first, end)` of a segment key, if it is one.
pub fn parse_segment_key(key: &str) -> Option<(u64, u64)> {
    let body = key.strip_prefix("segments/")?.strip_suffix(".cbor")?;
    let (a, b) = body.split_once('-')?;
    Some((parse_number(a, 20)?, parse_number(b, 20)?))
}

fn parse_number(s: &str, width: usize) -> Option<u64> {
    if s.len() != width || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_in_log_order() {
        assert_eq!(
            parse_segment_key(&segment_key(4096, 8192)),
            Some((4096, 8192))
        );
        assert_eq!(parse_checkpoint_key(&checkpoint_key(12)), Some(12));
        assert_eq!(parse_manifest_key(&manifest_key(7)), Some(7));
        assert!(segment_key(999, 1000) < segment_key(1000, 2000));
        assert!(manifest_key(9) < manifest_key(10));
        assert_eq!(parse_manifest_key("manifests/7.json"), None);
        assert_eq!(parse_segment_key("segments/x-y.cbor"), None);
    }
}
