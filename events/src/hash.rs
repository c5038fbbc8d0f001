//! SHA-256 hashes as the log uses them: the RFC 6962 leaf and interior hashes.
//!
//! Every reader hashes the exact stored bytes of a record; nothing is re-encoded before hashing.
//! The one-byte prefixes (0x00 for leaves, 0x01 for interior nodes) are the RFC 6962 §2.1 domain
//! separation, so a leaf can never be confused with an interior node.

use std::fmt;

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a record's leaf hash, a Merkle node, a root or an object digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash(pub [u8; 32]);

/// The hash of nothing: the `prev` of record 0 (32 zero bytes), not the hash of any input.
pub const ZERO: Hash = Hash([0; 32]);

// === impl Hash ===

impl Hash {
    /// Parses 64 lowercase or uppercase hex digits.
    pub fn from_hex(s: &str) -> Option<Hash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }

    /// The 64 lowercase hex digits, the JSON form of a hash.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Takes exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Hash> {
        <[u8; 32]>::try_from(b).ok().map(Hash)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// RFC 6962 §2.1 leaf hash: `SHA-256(0x00 || bytes)`, over the stored bytes of a record.
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(bytes);
    Hash(h.finalize().into())
}

/// RFC 6962 §2.1 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// Plain SHA-256 of a whole object (a segment, a manifest); not domain-separated, so it matches
/// `sha256sum` and the S3 checksum of the same bytes.
pub fn object_digest(bytes: &[u8]) -> Hash {
    Hash(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_leaf_matches_rfc6962_vector() {
        // SHA-256 of the single byte 0x00: the leaf hash of the empty leaf in the RFC 6962 vectors.
        assert_eq!(
            leaf_hash(b"").to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_wrong_length() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("00"), None);
    }
}
