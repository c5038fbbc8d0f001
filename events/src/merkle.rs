//! The Merkle tree math of RFC 6962 / RFC 9162 §2.1, and only the math: tree heads, inclusion
//! proofs and consistency proofs, built and verified. No I/O, no signing, no tile encoding.
//!
//! # Storage model
//!
//! The log stores every node of every *complete* (perfect) subtree and nothing else: node
//! `(level, index)` is `MTH(D[index·2^level : (index+1)·2^level])`, so level 0 holds the leaf
//! hashes.
//! A store learns which nodes to persist from [`Frontier::push`], and hands them back through the
//! one-method [`NodeReader`] trait.
//!
//! Roots and proofs for sizes that are not powers of two are computed on the fly. Every range that
//! the RFC 6962 recursion asks about, `[a, b)`, starts at a multiple of the smallest power of two
//! not below `b - a` (or at 0), so it splits into aligned complete subtrees of strictly decreasing
//! size: the binary digits of `b - a`. MTH of such a range is those subtree roots combined from the
//! *right*: `h = d[m-1]; for j in (0..m-1).rev() { h = node_hash(d[j], h) }`. It is not the left
//! fold. A root or a proof therefore costs O(log n) reads, for any old leaf or old size.
//!
//! # Invariant
//!
//! For a tree of `n` appended leaves the store holds node `(level, index)` exactly when
//! `(index + 1) << level <= n`. [`root`], [`inclusion_proof`] and [`consistency_proof`] read only
//! such nodes for the sizes they are given, so asking about any size up to `n` is always answerable.
//! A [`Frontier`] holds the `popcount(n)` roots of the complete subtrees that cover `[0, n)`, left
//! (largest) to right (smallest).
//!
//! Verification ([`verify_inclusion`], [`verify_consistency`]) takes untrusted input and returns
//! an error for anything malformed; nothing in this module panics.

use std::collections::HashMap;

use crate::hash::{Hash, node_hash};

/// The RFC 6962 §2.1 root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = Hash([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// Reads a stored complete-subtree node.
///
/// Node `(level, index)` is `MTH(D[index·2^level : (index+1)·2^level])`; level 0 is the leaf
/// hashes.
pub trait NodeReader {
    /// What a failed read reports.
    type Error: std::error::Error + Send + Sync + 'static;

    /// MUST return the node if `level`/`index` denote a complete subtree within the tree that has
    /// been appended so far. May fail for anything else (or for I/O reasons).
    ///
    /// # Errors
    ///
    /// Whatever the store reports; the functions of this module pass it on as
    /// [`MerkleError::Read`].
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a root or a proof could not be built from stored nodes.
#[derive(Debug, thiserror::Error)]
pub enum MerkleError<E> {
    /// The [`NodeReader`] failed.
    #[error("reading a stored Merkle tree node failed")]
    Read(#[source] E),
    /// An inclusion proof was asked for a leaf the tree does not have.
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// A consistency proof was asked for sizes that do not satisfy `0 < old <= new`.
    #[error("no consistency proof from size {old} to size {new}: need 0 < old <= new")]
    BadSizes {
        /// The older tree size.
        old: u64,
        /// The newer tree size.
        new: u64,
    },
}

/// Why a proof was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ProofError {
    /// The proof does not have the number of hashes that these sizes and this index call for.
    #[error("proof has {found} hashes, expected {expected}")]
    WrongLength {
        /// The length a valid proof has.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// The proof leads to another root than the (new) root given.
    #[error("proof leads to root {computed}, expected {expected}")]
    RootMismatch {
        /// The root given.
        expected: Hash,
        /// The root the proof leads to.
        computed: Hash,
    },
    /// A consistency proof leads to another old root than the one given.
    #[error("consistency proof leads to old root {computed}, expected {expected}")]
    OldRootMismatch {
        /// The old root given.
        expected: Hash,
        /// The old root the proof leads to.
        computed: Hash,
    },
    /// The leaf index is not below the tree size (this includes every index of the empty tree).
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index given.
        index: u64,
        /// The tree size given.
        size: u64,
    },
    /// The sizes of a consistency proof do not satisfy `0 < old <= new`.
    #[error("no consistency proof from size {old} to size {new}: need 0 < old <= new")]
    BadSizes {
        /// The older tree size given.
        old: u64,
        /// The newer tree size given.
        new: u64,
    },
}

/// The compact range `[0, size)`: the roots of the perfect subtrees that cover the tree, left to
/// right (one per set bit of `size`, largest first). O(log n) hashes; appending is amortized O(1),
/// worst O(log n).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Frontier {
    /// Leaves appended so far.
    size: u64,
    /// `hashes[j]` is the root of the j-th covering subtree; `hashes.len() == size.count_ones()`.
    hashes: Vec<Hash>,
}

/// An in-memory [`NodeReader`], filled from [`Frontier::push`] output: for tests, and for verifiers
/// that hold a whole export.
#[derive(Default, Clone, Debug)]
pub struct MemNodes {
    nodes: HashMap<(u8, u64), Hash>,
}

/// The error of [`MemNodes`]: the node asked for was never inserted.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
#[error("Merkle tree node (level {level}, index {index}) is not stored")]
pub struct MissingNode {
    /// The level asked for.
    pub level: u8,
    /// The index asked for.
    pub index: u64,
}

// === impl Frontier ===

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The covering subtree roots, left (largest) to right (smallest); one per set bit of
    /// [`Frontier::size`].
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends leaf hash number `self.size()` and returns every complete node it completes, as
    /// `(level, index, hash)`, starting with `(0, leaf_index, leaf)` and going up. These are exactly
    /// the nodes a store must persist.
    ///
    /// A tree of `u64::MAX` leaves is full: pushing to it changes nothing and returns no node.
    pub fn push(&mut self, leaf: Hash) -> Vec<(u8, u64, Hash)> {
        let mut out = Vec::with_capacity(completed_nodes(self.size) + 1);
        self.push_each(leaf, |level, index, h| out.push((level, index, h)));
        out
    }

    /// [`Frontier::push`] handing each node to `each` instead of collecting them: a store's
    /// sequencer pushes every record it appends and keeps only the interior nodes, so the
    /// vector would be one allocation per record for nothing.
    pub fn push_each(&mut self, leaf: Hash, mut each: impl FnMut(u8, u64, Hash)) {
        let index = self.size;
        let Some(next) = index.checked_add(1) else {
            return;
        };
        // Each trailing one bit of `index` is a complete subtree on the right edge that this leaf
        // pairs with; `index < u64::MAX`, so there are at most 63 of them.
        let merges = index.trailing_ones();
        let mut h = leaf;
        each(0, index, h);
        for level in 1..=merges {
            let Some(left) = self.hashes.pop() else {
                // Unreachable while `hashes.len() == size.count_ones()`, which every constructor
                // keeps; stop rather than panic.
                break;
            };
            h = node_hash(&left, &h);
            each(level as u8, index >> level, h);
        }
        self.hashes.push(h);
        self.size = next;
    }

    /// MTH of the whole tree (RFC 9162 §2.1.1): the covering roots combined from the right; for
    /// size 0 the empty root SHA-256("") ([`EMPTY_ROOT`]).
    pub fn root(&self) -> Hash {
        fold_right(self.hashes.iter().copied())
    }

    /// Rebuilds the frontier of a tree of `size` leaves from stored nodes, in `popcount(size)`
    /// reads.
    ///
    /// # Errors
    ///
    /// [`MerkleError::Read`] if the reader fails.
    pub fn load<R: NodeReader>(size: u64, r: &R) -> Result<Frontier, MerkleError<R::Error>> {
        let mut hashes = Vec::with_capacity(size.count_ones() as usize);
        let mut at = 0u64;
        for level in (0..64u32).rev() {
            if (size >> level) & 1 == 1 {
                hashes.push(read(r, level, at >> level)?);
                // `at + 2^level <= size`: no overflow.
                at += 1u64 << level;
            }
        }
        Ok(Frontier { size, hashes })
    }
}

// === impl MemNodes ===

impl MemNodes {
    /// No nodes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores node `(level, index)`, replacing any node stored there.
    pub fn insert(&mut self, level: u8, index: u64, h: Hash) {
        self.nodes.insert((level, index), h);
    }

    /// Appends `leaf` to `f` and stores every node that completes.
    pub fn append(&mut self, f: &mut Frontier, leaf: Hash) {
        for (level, index, h) in f.push(leaf) {
            self.insert(level, index, h);
        }
    }

    /// How many nodes are stored.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is stored.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl NodeReader for MemNodes {
    type Error = MissingNode;

    fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        self.nodes
            .get(&(level, index))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

impl<R: NodeReader + ?Sized> NodeReader for &R {
    type Error = R::Error;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        (**self).node(level, index)
    }
}

// === Building ===

/// How many interior nodes (levels 1 and up) appending leaf number `index` completes: one per
/// complete subtree on the tree's right edge that it pairs with, i.e. the trailing one bits of
/// `index`. A store keeps that many node hashes beside each record.
pub fn completed_nodes(index: u64) -> usize {
    index.trailing_ones() as usize
}

/// `MTH(D[0:size])` (RFC 9162 §2.1.1), from the `popcount(size)` stored roots of the complete
/// subtrees covering the tree; the empty root for size 0.
///
/// # Errors
///
/// [`MerkleError::Read`] if the reader fails.
pub fn root<R: NodeReader>(size: u64, r: &R) -> Result<Hash, MerkleError<R::Error>> {
    range_hash(0, size, r)
}

/// The RFC 9162 §2.1.3.1 inclusion proof (audit path) of leaf `index` in the tree of `size`
/// leaves, deepest sibling first. At most about 2·log2(size) reads.
///
/// # Errors
///
/// [`MerkleError::IndexOutOfRange`] unless `index < size`; [`MerkleError::Read`] if the reader
/// fails.
pub fn inclusion_proof<R: NodeReader>(
    index: u64,
    size: u64,
    r: &R,
) -> Result<Vec<Hash>, MerkleError<R::Error>> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    // PATH(m, D[lo:hi]) of RFC 9162, unrolled: each step descends into the half holding `index`
    // and records the other half's MTH. Collected root-first, returned leaf-first.
    let mut path = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let mid = lo + split(hi - lo);
        if index < mid {
            path.push(range_hash(mid, hi, r)?);
            hi = mid;
        } else {
            path.push(range_hash(lo, mid, r)?);
            lo = mid;
        }
    }
    path.reverse();
    Ok(path)
}

/// The RFC 9162 §2.1.4.1 consistency proof between tree sizes `old` and `new`, `0 < old <= new`
/// (empty when `old == new`). At most about 2·log2(new) reads.
///
/// # Errors
///
/// [`MerkleError::BadSizes`] unless `0 < old <= new`; [`MerkleError::Read`] if the reader fails.
pub fn consistency_proof<R: NodeReader>(
    old: u64,
    new: u64,
    r: &R,
) -> Result<Vec<Hash>, MerkleError<R::Error>> {
    if old == 0 || old > new {
        return Err(MerkleError::BadSizes { old, new });
    }
    // SUBPROOF(m, D[lo:hi], b) of RFC 9162, unrolled; `old` is absolute, so `m == n` is
    // `old == hi`. Invariant: lo < old <= hi. Collected root-first, returned leaf-first.
    let mut proof = Vec::new();
    let (mut lo, mut hi) = (0u64, new);
    let mut old_is_whole_subtree = true; // the flag b
    while old < hi {
        // lo < old < hi, so hi - lo >= 2.
        let mid = lo + split(hi - lo);
        if old <= mid {
            proof.push(range_hash(mid, hi, r)?);
            hi = mid;
        } else {
            proof.push(range_hash(lo, mid, r)?);
            lo = mid;
            old_is_whole_subtree = false;
        }
    }
    if !old_is_whole_subtree {
        proof.push(range_hash(lo, hi, r)?);
    }
    proof.reverse();
    Ok(proof)
}

// === Verifying ===

/// RFC 9162 §2.1.3.2: checks that `proof` proves leaf hash `leaf` at `index` in the tree of `size`
/// leaves whose root is `root`.
///
/// The proof binds the leaf to the root; the size and index are bound only through the root (a
/// signed tree head), as in RFC 9162.
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] unless `index < size` (so always for size 0);
/// [`ProofError::WrongLength`] if the proof has too few or too many hashes;
/// [`ProofError::RootMismatch`] if it leads elsewhere.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_len(index, size);
    let wrong_length = ProofError::WrongLength {
        expected,
        found: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // The steps of §2.1.3.2, with `f` for fn and `s` for sn.
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(wrong_length);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(wrong_length);
    }
    if r != *root {
        return Err(ProofError::RootMismatch {
            expected: *root,
            computed: r,
        });
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that `proof` proves the tree of `new` leaves with root `new_root`
/// extends the tree of `old` leaves with root `old_root`. For `old == new` the proof must be empty
/// and the roots equal.
///
/// # Errors
///
/// [`ProofError::BadSizes`] unless `0 < old <= new`; [`ProofError::WrongLength`] if the proof has
/// too few or too many hashes; [`ProofError::OldRootMismatch`] or [`ProofError::RootMismatch`] if
/// it leads to another old or new root.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    let expected = consistency_len(old, new);
    let wrong_length = ProofError::WrongLength {
        expected,
        found: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    if old == new {
        if old_root != new_root {
            return Err(ProofError::RootMismatch {
                expected: *new_root,
                computed: *old_root,
            });
        }
        return Ok(());
    }
    // Steps 1-2: when `old` is a power of two its root is the proof's implicit first hash.
    let (seed, rest) = if old.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(wrong_length),
        }
    };
    // Steps 3-4.
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Steps 5-6.
    let (mut fr, mut sr) = (seed, seed);
    for c in rest {
        if s == 0 {
            return Err(wrong_length);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    if s != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            expected: *old_root,
            computed: fr,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            expected: *new_root,
            computed: sr,
        });
    }
    Ok(())
}

// === Helpers ===

/// The largest power of two strictly below `n`, for `n >= 2` (the RFC 6962 split `k`); 1 for
/// smaller `n`, which no caller passes.
fn split(n: u64) -> u64 {
    let bits = 64 - n.saturating_sub(1).leading_zeros(); // bit length of n - 1, in 0..=64
    1u64.checked_shl(bits.saturating_sub(1)).unwrap_or(1)
}

/// One stored node, its error wrapped.
fn read<R: NodeReader>(r: &R, level: u32, index: u64) -> Result<Hash, MerkleError<R::Error>> {
    // Callers pass level < 64.
    r.node(level as u8, index).map_err(MerkleError::Read)
}

/// `MTH(D[start:end])` from stored nodes, for a range the RFC 6962 recursion produces: `start` is 0
/// or a multiple of the smallest power of two `>= end - start`. Such a range splits into aligned
/// complete subtrees of decreasing size (the largest aligned power of two at `start`, repeatedly),
/// whose roots combine from the right; one read per set bit of `end - start`. The empty range is
/// the empty root.
fn range_hash<R: NodeReader>(start: u64, end: u64, r: &R) -> Result<Hash, MerkleError<R::Error>> {
    let mut parts = Vec::with_capacity((end.saturating_sub(start)).count_ones() as usize);
    let mut at = start;
    while at < end {
        let len = end - at;
        let fits = len.checked_ilog2().unwrap_or(0); // floor(log2(len)); len >= 1
        let level = fits.min(at.trailing_zeros()); // trailing_zeros(0) == 64
        parts.push(read(r, level, at >> level)?);
        // `at + 2^level <= end`: no overflow.
        at += 1u64 << level;
    }
    Ok(fold_right(parts.into_iter()))
}

/// Combines subtree roots, left to right in the tree, from the right:
/// `d0 ⊕ (d1 ⊕ (… ⊕ d_{m-1}))`. The empty root for none.
fn fold_right(parts: impl DoubleEndedIterator<Item = Hash>) -> Hash {
    let mut rev = parts.rev();
    let Some(mut h) = rev.next() else {
        return EMPTY_ROOT;
    };
    for left in rev {
        h = node_hash(&left, &h);
    }
    h
}

/// The length of a valid inclusion proof for `index < size`: one hash per level below the point
/// where the paths to `index` and to the last leaf part (`inner`), plus one per complete subtree
/// to the left of `index` above it (`border`).
fn inclusion_len(index: u64, size: u64) -> usize {
    let last = size.saturating_sub(1);
    let inner = 64 - (index ^ last).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// The length of a valid consistency proof for `0 < old <= new`: the inclusion path of leaf
/// `old - 1` in the tree of `new` leaves, less the levels inside the complete subtree that ends at
/// `old`, plus that subtree's root unless it is the whole old tree.
fn consistency_len(old: u64, new: u64) -> usize {
    if old == new {
        return 0;
    }
    let shift = old.trailing_zeros();
    let last_old = old.saturating_sub(1);
    let inner = 64 - (last_old ^ new.saturating_sub(1)).leading_zeros();
    let border = last_old.checked_shr(inner).unwrap_or(0).count_ones();
    let seed = usize::from(!old.is_power_of_two());
    seed + (inner.saturating_sub(shift) + border) as usize
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
mod tests {
    use std::cell::Cell;

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;
    use crate::hash::{leaf_hash, object_digest};

    fn h(hex: &str) -> Hash {
        Hash::from_hex(hex).unwrap()
    }

    fn hs(hexes: &[&str]) -> Vec<Hash> {
        hexes.iter().map(|x| h(x)).collect()
    }

    // === Naive RFC 6962 §2.1 (= RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1), straight from the text ===

    /// The largest power of two strictly less than n, n > 1.
    fn naive_k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn naive_mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => object_digest(b""),
            1 => d[0],
            n => {
                let k = naive_k(n);
                node_hash(&naive_mth(&d[..k]), &naive_mth(&d[k..]))
            }
        }
    }

    fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n == 1 {
            return Vec::new();
        }
        let k = naive_k(n);
        if m < k {
            let mut p = naive_path(m, &d[..k]);
            p.push(naive_mth(&d[k..]));
            p
        } else {
            let mut p = naive_path(m - k, &d[k..]);
            p.push(naive_mth(&d[..k]));
            p
        }
    }

    fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { Vec::new() } else { vec![naive_mth(d)] };
        }
        let k = naive_k(n);
        if m <= k {
            let mut p = naive_subproof(m, &d[..k], b);
            p.push(naive_mth(&d[k..]));
            p
        } else {
            let mut p = naive_subproof(m - k, &d[k..], false);
            p.push(naive_mth(&d[..k]));
            p
        }
    }

    fn naive_proof(m: usize, d: &[Hash]) -> Vec<Hash> {
        naive_subproof(m, d, true)
    }

    // === Fixtures ===

    /// A tree of `n` distinct leaves, its stored nodes and its frontier.
    fn tree(n: usize) -> (Vec<Hash>, MemNodes, Frontier) {
        let leaves: Vec<Hash> = (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect();
        let mut nodes = MemNodes::new();
        let mut f = Frontier::new();
        for l in &leaves {
            nodes.append(&mut f, *l);
        }
        (leaves, nodes, f)
    }

    /// Counts reads, passing them on.
    struct Counting<R> {
        inner: R,
        reads: Cell<u64>,
    }

    impl<R: NodeReader> Counting<R> {
        fn new(inner: R) -> Self {
            Counting {
                inner,
                reads: Cell::new(0),
            }
        }

        fn take(&self) -> u64 {
            self.reads.replace(0)
        }
    }

    impl<R: NodeReader> NodeReader for Counting<R> {
        type Error = R::Error;

        fn node(&self, level: u8, index: u64) -> Result<Hash, R::Error> {
            self.reads.set(self.reads.get() + 1);
            self.inner.node(level, index)
        }
    }

    /// A store of any size without building it: node (level, index) is a made-up hash of its
    /// coordinates, and reading anything but a complete node within `size` fails. Good for counting
    /// and for checking which nodes are read, not for hashes.
    struct Synthetic {
        size: u64,
    }

    impl NodeReader for Synthetic {
        type Error = MissingNode;

        fn node(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
            if level < 64 && index < self.size >> level {
                let mut b = [0u8; 9];
                b[0] = level;
                b[1..].copy_from_slice(&index.to_be_bytes());
                Ok(leaf_hash(&b))
            } else {
                Err(MissingNode { level, index })
            }
        }
    }

    fn ceil_log2(n: u64) -> u64 {
        u64::from(64 - n.saturating_sub(1).leading_zeros())
    }

    // === Published vectors ===
    //
    // All from github.com/transparency-dev/merkle (the RFC 6962 reference vectors, also in
    // google/certificate-transparency): leaf inputs, node hashes, roots and compact ranges from
    // `testonly/constants.go` (LeafInputs, NodeHashes, RootHashes, CompactTrees, EmptyRootHash);
    // inclusion and consistency proofs from `proof/verify_test.go` (inclusionProofs,
    // consistencyProofs, roots, leaves); the single leaf hash from `rfc6962/rfc6962_test.go`.

    /// testonly/constants.go LeafInputs (= proof/verify_test.go `leaves`), as hex.
    const LEAF_INPUTS: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// testonly/constants.go NodeHashes: level, then index within the level.
    const NODE_HASHES: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];

    /// testonly/constants.go RootHashes, by tree size 0..=8 (size 0 is EmptyRootHash).
    const ROOT_HASHES: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// testonly/constants.go CompactTrees, by tree size 0..=8, as (level, index) into NODE_HASHES.
    const COMPACT_TREES: [&[(usize, usize)]; 9] = [
        &[],
        &[(0, 0)],
        &[(1, 0)],
        &[(1, 0), (0, 2)],
        &[(2, 0)],
        &[(2, 0), (0, 4)],
        &[(2, 0), (1, 2)],
        &[(2, 0), (1, 2), (0, 6)],
        &[(3, 0)],
    ];

    /// proof/verify_test.go inclusionProofs, (leaf index, tree size, proof). Leaf numbers there are
    /// 1-based (the test passes `p.leaf-1`); they are 0-based here. Its first entry, {0, 0, nil},
    /// is the invalid empty tree and is tested in `verification_refuses_malformed_input`.
    fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (0, 1, vec![]),
            (
                0,
                8,
                hs(&[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                5,
                8,
                hs(&[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
            (
                2,
                3,
                hs(&["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
            ),
            (
                1,
                5,
                hs(&[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ]),
            ),
        ]
    }

    /// proof/verify_test.go consistencyProofs, (old size, new size, proof).
    fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
        vec![
            (1, 1, vec![]),
            (
                1,
                8,
                hs(&[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ]),
            ),
            (
                6,
                8,
                hs(&[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
            (
                2,
                5,
                hs(&[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ]),
            ),
            (
                6,
                7,
                hs(&[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ]),
            ),
        ]
    }

    /// proof/verify_test.go sha256SomeHash: an arbitrary hash that is no node of the tree.
    fn some_hash() -> Hash {
        h("abacaba000000000000000000000000000000000000000000060061e00123456")
    }

    /// The tree of the 8 reference leaves.
    fn reference_tree() -> (Vec<Hash>, MemNodes, Vec<Frontier>) {
        let mut nodes = MemNodes::new();
        let mut f = Frontier::new();
        let mut leaves = Vec::new();
        let mut frontiers = vec![f.clone()];
        for input in LEAF_INPUTS {
            let leaf = leaf_hash(&hex::decode(input).unwrap());
            leaves.push(leaf);
            nodes.append(&mut f, leaf);
            frontiers.push(f.clone());
        }
        (leaves, nodes, frontiers)
    }

    #[test]
    fn hash_vectors() {
        // rfc6962/rfc6962_test.go: "RFC6962 Empty" and "RFC6962 Leaf".
        assert_eq!(
            EMPTY_ROOT,
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(EMPTY_ROOT, object_digest(b""));
        assert_eq!(
            leaf_hash(b"L123456"),
            h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
        );
    }

    #[test]
    fn reference_nodes_roots_and_frontiers() {
        let (_, nodes, frontiers) = reference_tree();
        // Every complete node of the 8-leaf tree is stored, and nothing else.
        let mut count = 0;
        for (level, row) in NODE_HASHES.iter().enumerate() {
            for (index, want) in row.iter().enumerate() {
                assert_eq!(
                    nodes.node(level as u8, index as u64).unwrap(),
                    h(want),
                    "node ({level}, {index})"
                );
                count += 1;
            }
        }
        assert_eq!(nodes.len(), count);
        for size in 0..=8u64 {
            let want = h(ROOT_HASHES[size as usize]);
            let f = &frontiers[size as usize];
            assert_eq!(f.size(), size);
            assert_eq!(f.root(), want, "Frontier::root({size})");
            assert_eq!(root(size, &nodes).unwrap(), want, "root({size})");
            let compact: Vec<Hash> = COMPACT_TREES[size as usize]
                .iter()
                .map(|&(l, i)| h(NODE_HASHES[l][i]))
                .collect();
            assert_eq!(f.hashes(), compact.as_slice(), "compact range {size}");
            assert_eq!(&Frontier::load(size, &nodes).unwrap(), f);
        }
    }

    #[test]
    fn reference_proofs_for_every_pair_match_naive() {
        let (leaves, nodes, _) = reference_tree();
        for size in 1..=8usize {
            for index in 0..size {
                assert_eq!(
                    inclusion_proof(index as u64, size as u64, &nodes).unwrap(),
                    naive_path(index, &leaves[..size])
                );
            }
            for old in 1..=size {
                assert_eq!(
                    consistency_proof(old as u64, size as u64, &nodes).unwrap(),
                    naive_proof(old, &leaves[..size])
                );
            }
        }
    }

    /// The arguments of one `verify_inclusion` call.
    #[derive(Clone)]
    struct Incl {
        leaf: Hash,
        index: u64,
        size: u64,
        proof: Vec<Hash>,
        root: Hash,
    }

    impl Incl {
        fn verify(&self) -> Result<(), ProofError> {
            verify_inclusion(&self.leaf, self.index, self.size, &self.proof, &self.root)
        }

        fn leaf(&self, leaf: Hash) -> Self {
            Self {
                leaf,
                ..self.clone()
            }
        }

        fn index(&self, index: u64) -> Self {
            Self {
                index,
                ..self.clone()
            }
        }

        fn size(&self, size: u64) -> Self {
            Self {
                size,
                ..self.clone()
            }
        }

        fn proof(&self, proof: Vec<Hash>) -> Self {
            Self {
                proof,
                ..self.clone()
            }
        }

        fn root(&self, root: Hash) -> Self {
            Self {
                root,
                ..self.clone()
            }
        }
    }

    /// The probes of transparency-dev/merkle proof/verify_test.go `corruptInclusionProof`, less
    /// "trailing/preceding garbage" (an empty byte string, which a `Hash` cannot be).
    fn corrupt_inclusion(good: &Incl) -> Vec<(String, Incl)> {
        let (index, size, p, root) = (good.index, good.size, &good.proof, good.root);
        let mut out: Vec<(String, Incl)> = [
            ("index - 1", good.index(index.wrapping_sub(1))),
            ("index + 1", good.index(index + 1)),
            ("index ^ 2", good.index(index ^ 2)),
            ("size * 2", good.size(size * 2)),
            ("size / 2", good.size(size / 2)),
            ("wrong leaf", good.leaf(leaf_hash(b"WrongLeaf"))),
            ("empty root", good.root(EMPTY_ROOT)),
            ("random root", good.root(some_hash())),
            (
                "trailing root",
                good.proof([p.as_slice(), &[root]].concat()),
            ),
            (
                "preceding root",
                good.proof([&[root], p.as_slice()].concat()),
            ),
        ]
        .into_iter()
        .map(|(d, c)| (d.to_string(), c))
        .collect();
        for i in 0..p.len() {
            let mut wrong = p.clone();
            wrong[i].0[0] ^= 8;
            out.push((format!("modified proof[{i}] bit 3"), good.proof(wrong)));
        }
        if !p.is_empty() {
            let removed = p[..p.len() - 1].to_vec();
            out.push(("removed component".into(), good.proof(removed)));
        }
        if p.len() > 1 {
            let inserted = [&[p[0], some_hash()], &p[1..]].concat();
            out.push(("inserted component".into(), good.proof(inserted)));
        }
        out
    }

    #[test]
    fn reference_inclusion_proofs() {
        let (leaves, nodes, _) = reference_tree();
        for (index, size, want) in inclusion_vectors() {
            assert_eq!(inclusion_proof(index, size, &nodes).unwrap(), want);
            let good = Incl {
                leaf: leaves[index as usize],
                index,
                size,
                proof: want,
                root: h(ROOT_HASHES[size as usize]),
            };
            good.verify().unwrap();
            for (desc, probe) in corrupt_inclusion(&good) {
                assert!(probe.verify().is_err(), "{index}/{size}: accepted {desc}");
            }
        }
    }

    /// The arguments of one `verify_consistency` call.
    #[derive(Clone)]
    struct Cons {
        old: u64,
        new: u64,
        old_root: Hash,
        new_root: Hash,
        proof: Vec<Hash>,
    }

    impl Cons {
        fn verify(&self) -> Result<(), ProofError> {
            verify_consistency(
                self.old,
                self.new,
                &self.old_root,
                &self.new_root,
                &self.proof,
            )
        }

        fn sizes(&self, old: u64, new: u64) -> Self {
            Self {
                old,
                new,
                ..self.clone()
            }
        }

        fn roots(&self, old_root: Hash, new_root: Hash) -> Self {
            Self {
                old_root,
                new_root,
                ..self.clone()
            }
        }

        fn proof(&self, proof: Vec<Hash>) -> Self {
            Self {
                proof,
                ..self.clone()
            }
        }
    }

    /// The probes of transparency-dev/merkle proof/verify_test.go `corruptConsistencyProof`, less
    /// the empty-byte-string garbage.
    fn corrupt_consistency(good: &Cons) -> Vec<(String, Cons)> {
        let (old, new, p) = (good.old, good.new, &good.proof);
        let (r1, r2) = (good.old_root, good.new_root);
        let wrong = leaf_hash(b"WrongRoot");
        let mut out: Vec<(String, Cons)> = [
            ("size1 - 1", good.sizes(old.wrapping_sub(1), new)),
            ("size1 + 1", good.sizes(old + 1, new)),
            ("size1 ^ 2", good.sizes(old ^ 2, new)),
            ("size2 * 2", good.sizes(old, new * 2)),
            ("size2 / 2", good.sizes(old, new / 2)),
            ("wrong root1", good.roots(wrong, r2)),
            ("wrong root2", good.roots(r1, wrong)),
            ("swapped roots", good.roots(r2, r1)),
            ("empty proof", good.proof(Vec::new())),
            ("trailing root1", good.proof([p.as_slice(), &[r1]].concat())),
            ("trailing root2", good.proof([p.as_slice(), &[r2]].concat())),
            (
                "preceding root1",
                good.proof([&[r1], p.as_slice()].concat()),
            ),
            (
                "preceding root2",
                good.proof([&[r2], p.as_slice()].concat()),
            ),
            (
                "preceding proof[0]",
                good.proof([&p[..1], p.as_slice()].concat()),
            ),
            ("truncated proof", good.proof(p[..p.len() - 1].to_vec())),
        ]
        .into_iter()
        .map(|(d, c)| (d.to_string(), c))
        .collect();
        for i in 0..p.len() {
            let mut flipped = p.clone();
            flipped[i].0[0] ^= 16;
            out.push((format!("modified proof[{i}] bit 4"), good.proof(flipped)));
        }
        out
    }

    #[test]
    fn reference_consistency_proofs() {
        let (_, nodes, _) = reference_tree();
        for (old, new, want) in consistency_vectors() {
            assert_eq!(consistency_proof(old, new, &nodes).unwrap(), want);
            let good = Cons {
                old,
                new,
                old_root: h(ROOT_HASHES[old as usize]),
                new_root: h(ROOT_HASHES[new as usize]),
                proof: want,
            };
            good.verify().unwrap();
            // As in verify_test.go, only non-trivial proofs are corrupted.
            if good.proof.is_empty() {
                continue;
            }
            for (desc, probe) in corrupt_consistency(&good) {
                assert!(probe.verify().is_err(), "{old}/{new}: accepted {desc}");
            }
        }
    }

    /// proof/verify_test.go TestVerifyConsistency's table, where it applies: this module requires
    /// `0 < old`, so the rows with size1 == 0 (which the Go verifier accepts) are refused here.
    #[test]
    fn consistency_edge_table() {
        let (r1, r2) = (leaf_hash(b"don't care 1"), leaf_hash(b"don't care 2"));
        let empty = EMPTY_ROOT;
        let none: &[Hash] = &[];
        let one = [EMPTY_ROOT];
        let refused: [(u64, u64, Hash, Hash, &[Hash]); 9] = [
            (0, 0, r1, r1, none),
            (0, 1, r1, r2, none),
            (1, 1, r1, r2, none),
            (1, 0, r1, r2, none),
            (2, 1, r1, r2, none),
            (1, 2, r1, r2, none),
            (1, 1, empty, r2, none),
            (1, 1, empty, empty, &one),
            (0, 1, empty, empty, &one),
        ];
        for (old, new, a, b, p) in refused {
            assert!(
                verify_consistency(old, new, &a, &b, p).is_err(),
                "{old}/{new}"
            );
        }
        verify_consistency(1, 1, &r2, &r2, none).unwrap();
    }

    // === The decomposition ===

    #[test]
    fn unbalanced_range_is_the_right_fold_not_the_left() {
        let (leaves, nodes, _) = tree(7);
        // [0, 7) = [0, 4) + [4, 6) + [6, 7).
        let d = [
            nodes.node(2, 0).unwrap(),
            nodes.node(1, 2).unwrap(),
            nodes.node(0, 6).unwrap(),
        ];
        let right = node_hash(&d[0], &node_hash(&d[1], &d[2]));
        let left = node_hash(&node_hash(&d[0], &d[1]), &d[2]);
        assert_eq!(naive_mth(&leaves), right);
        assert_ne!(naive_mth(&leaves), left);
        assert_eq!(root(7, &nodes).unwrap(), right);
    }

    #[test]
    fn range_hash_matches_naive_on_every_rfc_range() {
        // Every range the RFC 6962 recursion can produce within 130 leaves: [a, b) with a a
        // multiple of the smallest power of two >= b - a.
        let (leaves, nodes, _) = tree(130);
        let reader = Counting::new(&nodes);
        for a in 0..130u64 {
            for b in a + 1..=130 {
                if a % (b - a).next_power_of_two() != 0 {
                    continue;
                }
                let got = range_hash(a, b, &reader).unwrap();
                assert_eq!(
                    got,
                    naive_mth(&leaves[a as usize..b as usize]),
                    "[{a}, {b})"
                );
                assert_eq!(reader.take(), u64::from((b - a).count_ones()));
            }
        }
    }

    #[test]
    fn push_emits_exactly_the_complete_nodes() {
        let (leaves, _, _) = tree(300);
        let mut f = Frontier::new();
        let mut seen = std::collections::HashSet::new();
        for (i, leaf) in leaves.iter().enumerate() {
            let out = f.push(*leaf);
            assert_eq!(out[0], (0, i as u64, *leaf));
            for (level, index, hash) in out {
                let lo = (index as usize) << level;
                let hi = (index as usize + 1) << level;
                assert_eq!(hi, i + 1, "the node ends at the new leaf");
                assert_eq!(hash, naive_mth(&leaves[lo..hi]));
                assert!(seen.insert((level, index)));
            }
            let n = i as u64 + 1;
            let complete: u64 = (0..64).map(|l| n >> l).sum();
            assert_eq!(seen.len() as u64, complete);
            assert_eq!(f.hashes().len() as u32, n.count_ones());
            assert_eq!(f.root(), naive_mth(&leaves[..=i]));
        }
    }

    #[test]
    fn frontier_at_the_top_of_u64() {
        let full = Frontier::load(u64::MAX, &Synthetic { size: u64::MAX }).unwrap();
        assert_eq!(full.hashes().len(), 64);
        let mut pushed = full.clone();
        assert!(pushed.push(leaf_hash(b"x")).is_empty());
        assert_eq!(pushed, full);

        let mut f = Frontier::load(u64::MAX >> 1, &Synthetic { size: u64::MAX }).unwrap();
        let out = f.push(leaf_hash(b"x"));
        assert_eq!(out.len(), 64);
        assert_eq!(out.last().map(|n| (n.0, n.1)), Some((63, 0)));
        assert_eq!(f.size(), 1 << 63);
        assert_eq!(f.hashes().len(), 1);
    }

    // === Reads ===

    #[test]
    fn reads_are_logarithmic() {
        for size in [
            (1u64 << 20) + 12345,
            1_000_003,
            (1 << 40) - 1,
            (1 << 63) + 12345,
            u64::MAX,
        ] {
            let r = Counting::new(Synthetic { size });
            let bound = 2 * ceil_log2(size) + 2;
            root(size, &r).unwrap();
            assert_eq!(r.take(), u64::from(size.count_ones()));
            Frontier::load(size, &r).unwrap();
            assert_eq!(r.take(), u64::from(size.count_ones()));

            // Edges, powers of two and their neighbours, and a pseudo-random spread.
            let mut probes = vec![0, 1, size / 2, size - 2, size - 1];
            for l in 0..64 {
                let p = 1u64 << l;
                probes.extend([p - 1, p, p + 1]);
            }
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..500 {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                probes.push(x % size);
            }
            probes.retain(|&p| p < size);
            let (mut max_incl, mut max_cons) = (0, 0);
            for &index in &probes {
                let proof = inclusion_proof(index, size, &r).unwrap();
                let reads = r.take();
                assert!(reads <= bound, "inclusion {index}/{size}: {reads} reads");
                assert_eq!(proof.len(), inclusion_len(index, size));
                max_incl = max_incl.max(reads);

                let old = index + 1;
                let proof = consistency_proof(old, size, &r).unwrap();
                let reads = r.take();
                assert!(reads <= bound, "consistency {old}/{size}: {reads} reads");
                assert_eq!(proof.len(), consistency_len(old, size));
                max_cons = max_cons.max(reads);
            }
            eprintln!(
                "size {size}: root {} reads, inclusion <= {max_incl}, consistency <= {max_cons}, bound {bound}",
                size.count_ones()
            );
        }
    }

    #[test]
    fn big_real_tree_proofs_verify_in_few_reads() {
        const SIZE: usize = (1 << 20) + 12345;
        let (leaves, nodes, f) = tree(SIZE);
        let size = SIZE as u64;
        let r = Counting::new(&nodes);
        let bound = 2 * ceil_log2(size) + 2;
        let full_root = root(size, &r).unwrap();
        assert_eq!(r.take(), u64::from(size.count_ones()));
        assert_eq!(full_root, f.root());
        assert_eq!(Frontier::load(size, &nodes).unwrap(), f);

        let mut x = 12345u64;
        let mut probes = vec![0, 1, (1 << 20) - 1, 1 << 20, size - 1];
        for _ in 0..64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            probes.push((x >> 11) % size);
        }
        for index in probes {
            let proof = inclusion_proof(index, size, &r).unwrap();
            assert!(r.take() <= bound);
            verify_inclusion(&leaves[index as usize], index, size, &proof, &full_root).unwrap();

            let old = index + 1;
            let old_root = root(old, &nodes).unwrap();
            let proof = consistency_proof(old, size, &r).unwrap();
            assert!(r.take() <= bound);
            verify_consistency(old, size, &old_root, &full_root, &proof).unwrap();
        }
    }

    // === Errors ===

    #[test]
    fn building_refuses_bad_arguments_and_passes_read_errors_on() {
        let (_, nodes, _) = tree(5);
        assert!(matches!(
            inclusion_proof(5, 5, &nodes),
            Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
        ));
        assert!(matches!(
            inclusion_proof(0, 0, &nodes),
            Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
        ));
        assert!(matches!(
            consistency_proof(0, 5, &nodes),
            Err(MerkleError::BadSizes { old: 0, new: 5 })
        ));
        assert!(matches!(
            consistency_proof(4, 3, &nodes),
            Err(MerkleError::BadSizes { old: 4, new: 3 })
        ));
        assert_eq!(root(0, &MemNodes::new()).unwrap(), EMPTY_ROOT);
        assert_eq!(consistency_proof(5, 5, &nodes).unwrap(), Vec::<Hash>::new());

        // Beyond what was appended: the reader's error, with its source kept.
        let err = root(6, &nodes).unwrap_err();
        assert!(matches!(
            err,
            MerkleError::Read(MissingNode { level: 1, index: 2 })
        ));
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(
            source.to_string(),
            "Merkle tree node (level 1, index 2) is not stored"
        );
        assert!(inclusion_proof(0, 9, &nodes).is_err());
        assert!(consistency_proof(2, 9, &nodes).is_err());
        assert!(Frontier::load(8, &nodes).is_err());
    }

    #[test]
    fn verification_refuses_malformed_input() {
        let (leaves, nodes, f) = tree(8);
        let r8 = f.root();
        let leaf = leaves[3];
        let proof = inclusion_proof(3, 8, &nodes).unwrap();

        // Empty tree, index out of range.
        assert_eq!(
            verify_inclusion(&leaf, 0, 0, &[], &EMPTY_ROOT),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            verify_inclusion(&leaf, 8, 8, &proof, &r8),
            Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert!(verify_inclusion(&leaf, u64::MAX, u64::MAX, &proof, &r8).is_err());
        // Wrong lengths.
        assert_eq!(
            verify_inclusion(&leaf, 3, 8, &proof[..2], &r8),
            Err(ProofError::WrongLength {
                expected: 3,
                found: 2
            })
        );
        let mut long = proof.clone();
        long.push(r8);
        assert_eq!(
            verify_inclusion(&leaf, 3, 8, &long, &r8),
            Err(ProofError::WrongLength {
                expected: 3,
                found: 4
            })
        );
        assert_eq!(
            verify_inclusion(&leaf, 0, 1, &[leaf], &leaf),
            Err(ProofError::WrongLength {
                expected: 0,
                found: 1
            })
        );
        // Wrong root.
        assert_eq!(
            verify_inclusion(&leaf, 3, 8, &proof, &EMPTY_ROOT),
            Err(ProofError::RootMismatch {
                expected: EMPTY_ROOT,
                computed: r8
            })
        );
        verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();

        let r5 = root(5, &nodes).unwrap();
        let cproof = consistency_proof(5, 8, &nodes).unwrap();
        verify_consistency(5, 8, &r5, &r8, &cproof).unwrap();
        assert_eq!(
            verify_consistency(0, 8, &r5, &r8, &cproof),
            Err(ProofError::BadSizes { old: 0, new: 8 })
        );
        assert_eq!(
            verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]),
            Err(ProofError::BadSizes { old: 0, new: 0 })
        );
        assert_eq!(
            verify_consistency(8, 5, &r8, &r5, &cproof),
            Err(ProofError::BadSizes { old: 8, new: 5 })
        );
        assert!(matches!(
            verify_consistency(5, 8, &r5, &r8, &cproof[1..]),
            Err(ProofError::WrongLength { .. })
        ));
        assert!(matches!(
            verify_consistency(5, 8, &r5, &r8, &[]),
            Err(ProofError::WrongLength { .. })
        ));
        assert!(matches!(
            verify_consistency(5, 5, &r5, &r5, &cproof),
            Err(ProofError::WrongLength { .. })
        ));
        assert!(matches!(
            verify_consistency(5, 8, &r8, &r8, &cproof),
            Err(ProofError::OldRootMismatch { .. })
        ));
        assert!(matches!(
            verify_consistency(5, 8, &r5, &r5, &cproof),
            Err(ProofError::RootMismatch { .. })
        ));
        assert!(verify_consistency(u64::MAX, u64::MAX, &r5, &r8, &[]).is_err());
        verify_consistency(u64::MAX, u64::MAX, &r5, &r5, &[]).unwrap();
    }

    // === Properties ===

    fn hash_strategy() -> impl Strategy<Value = Hash> {
        any::<[u8; 32]>().prop_map(Hash)
    }

    /// Sizes and indices that stress the edges: small, huge, and anything.
    fn u64_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..20,
            (u64::MAX - 20)..=u64::MAX,
            (0u32..64).prop_map(|l| 1u64 << l),
            any::<u64>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn matches_naive_and_verifies(
            size in 1usize..=300,
            index_seed in any::<u64>(),
            old_seed in any::<u64>(),
            flip in any::<(usize, u8)>(),
        ) {
            let (leaves, nodes, f) = tree(size);
            let n = size as u64;
            let index = index_seed % n;
            let old = old_seed % n + 1;
            let full_root = naive_mth(&leaves);
            prop_assert_eq!(root(n, &nodes).unwrap(), full_root);
            prop_assert_eq!(f.root(), full_root);
            prop_assert_eq!(&Frontier::load(n, &nodes).unwrap(), &f);

            // Inclusion.
            let leaf = leaves[index as usize];
            let proof = inclusion_proof(index, n, &nodes).unwrap();
            prop_assert_eq!(&proof, &naive_path(index as usize, &leaves));
            prop_assert_eq!(proof.len(), inclusion_len(index, n));
            prop_assert_eq!(verify_inclusion(&leaf, index, n, &proof, &full_root), Ok(()));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i].0[flip.0 % 32] ^= 1 << (flip.1 % 8);
                prop_assert!(verify_inclusion(&leaf, index, n, &bad, &full_root).is_err());
            }
            // Every other index of the same tree is refused.
            for other in [index.wrapping_sub(1), index + 1, index ^ 1, index ^ 2, index_seed] {
                if other != index {
                    prop_assert!(verify_inclusion(&leaf, other, n, &proof, &full_root).is_err());
                }
            }
            prop_assert!(verify_inclusion(&leaf, index, n * 2, &proof, &full_root).is_err());
            prop_assert!(verify_inclusion(&leaf, index, n / 2, &proof, &full_root).is_err());
            if index != 0 {
                // Another leaf at this index.
                let wrong = leaves[0];
                prop_assert!(verify_inclusion(&wrong, index, n, &proof, &full_root).is_err());
            }

            // Consistency.
            let old_root = naive_mth(&leaves[..old as usize]);
            prop_assert_eq!(root(old, &nodes).unwrap(), old_root);
            let proof = consistency_proof(old, n, &nodes).unwrap();
            prop_assert_eq!(&proof, &naive_proof(old as usize, &leaves));
            prop_assert_eq!(proof.len(), consistency_len(old, n));
            prop_assert_eq!(verify_consistency(old, n, &old_root, &full_root, &proof), Ok(()));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i].0[flip.0 % 32] ^= 1 << (flip.1 % 8);
                prop_assert!(verify_consistency(old, n, &old_root, &full_root, &bad).is_err());
            }
            if old != n {
                let wrong = leaf_hash(b"WrongRoot");
                prop_assert!(verify_consistency(old, n, &wrong, &full_root, &proof).is_err());
                prop_assert!(verify_consistency(old, n, &old_root, &wrong, &proof).is_err());
                prop_assert!(verify_consistency(old, n, &full_root, &old_root, &proof).is_err());
                prop_assert!(verify_consistency(old, n * 2, &old_root, &full_root, &proof).is_err());
                prop_assert!(verify_consistency(old, n, &old_root, &full_root, &proof[1..]).is_err());
                let mut longer = proof.clone();
                longer.push(full_root);
                prop_assert!(verify_consistency(old, n, &old_root, &full_root, &longer).is_err());
            }
        }

        #[test]
        fn arbitrary_inclusion_input_is_refused(
            leaf in hash_strategy(),
            root_hash in hash_strategy(),
            index in u64_strategy(),
            size in u64_strategy(),
            pool in vec(hash_strategy(), 0..=130),
            exact_length in any::<bool>(),
        ) {
            // Half the time exactly as long as a valid proof, to get past the length check.
            let proof = if exact_length && index < size {
                let len = inclusion_len(index, size).min(pool.len());
                pool[..len].to_vec()
            } else {
                pool
            };
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root_hash).is_err());
        }

        #[test]
        fn arbitrary_consistency_input_is_refused(
            old_root in hash_strategy(),
            new_root in hash_strategy(),
            old in u64_strategy(),
            new in u64_strategy(),
            pool in vec(hash_strategy(), 0..=130),
            exact_length in any::<bool>(),
        ) {
            let proof = if exact_length && 0 < old && old <= new {
                let len = consistency_len(old, new).min(pool.len());
                pool[..len].to_vec()
            } else {
                pool
            };
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_err());
        }

        #[test]
        fn synthetic_huge_trees_read_only_complete_nodes(
            size in u64_strategy(),
            index_seed in any::<u64>(),
        ) {
            // The Synthetic reader fails on any node that is not complete within `size`.
            let r = Counting::new(Synthetic { size });
            let bound = 2 * ceil_log2(size) + 2;
            prop_assert!(root(size, &r).is_ok());
            prop_assert_eq!(r.take(), u64::from(size.count_ones()));
            if size > 0 {
                let index = index_seed % size;
                let p = inclusion_proof(index, size, &r).unwrap();
                prop_assert_eq!(p.len(), inclusion_len(index, size));
                prop_assert!(r.take() <= bound);
                let p = consistency_proof(index + 1, size, &r).unwrap();
                prop_assert_eq!(p.len(), consistency_len(index + 1, size));
                prop_assert!(r.take() <= bound);
            }
        }
    }
}
