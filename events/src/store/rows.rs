//! The `records` table's layout: how records and their Merkle nodes sit in redb's entries.
//!
//! A *row* holds one record: `[m][m × 32-byte hashes][canonical record bytes]`, the record and
//! the interior Merkle nodes its append completed (levels 1..=m, each the complete subtree that
//! ends at this leaf; level 0 is the record's leaf hash). Keeping the nodes in the record's row
//! means a commit rewrites one B-tree path, at its right edge, instead of two.
//!
//! An *entry* (format 4) is a group of consecutive rows under the seq of its first:
//! `[0xFF][n: u16 LE][n × u32 LE row lengths][n rows]`. redb's cost is mostly per entry (a
//! B-tree insert and its page), not per byte, and was most of the sequencer's indexing: a group
//! of up to [`GROUP_ROWS`] pays it once. Format 3 wrote one row per entry; such an entry begins
//! with m ≤ 64, never 0xFF, and reads as a group of one, so a store of either format reads the
//! same.
//!
//! **Invariant:** entries never overlap and leave no gap: each index commit writes the records
//! after the last one redb holds, so entry k+1 starts where entry k ends. Readers check it and
//! report a break as corruption at the first missing seq.

use std::ops::Range;

use redb::ReadableTable;

use super::{StoreError, io};
use crate::hash::Hash;
use crate::seq::Seq;

/// The most rows one entry holds: large enough that redb's per-entry cost is small beside the
/// rows' own bytes, small enough that reading one record decodes little.
pub const GROUP_ROWS: usize = 64;
/// An entry is closed early once its rows reach this many bytes (records are usually ~0.5 KB).
const GROUP_BYTES: usize = 64 << 10;
/// The most Merkle nodes a row holds: a tree of 2^64 leaves has 64 levels above them.
const MAX_NODES: u8 = 64;
/// First byte of a group entry; a single row's first byte is its node count, never above
/// [`MAX_NODES`], so the two cannot be confused.
const GROUP: u8 = 0xFF;
const _: () = assert!(GROUP > MAX_NODES);

/// Writes a row: `[m][m nodes][record bytes]`.
pub fn pack_row(row: &mut Vec<u8>, nodes: &[Hash], record: &[u8]) {
    // At most MAX_NODES: m always fits in a byte.
    row.push(u8::try_from(nodes.len()).unwrap_or(u8::MAX));
    for h in nodes {
        row.extend_from_slice(&h.0);
    }
    row.extend_from_slice(record);
}

/// Splits a row into its node hashes and its record bytes.
pub fn unpack_row(row: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&m, rest) = row.split_first()?;
    if m > MAX_NODES {
        return None;
    }
    let split = usize::from(m).checked_mul(32)?;
    (rest.len() >= split).then(|| rest.split_at(split))
}

/// Gathers consecutive rows into entries and hands each finished one to `insert`.
pub struct GroupWriter {
    first: u64,
    lengths: Vec<u32>,
    rows: Vec<u8>,
    entry: Vec<u8>,
}

impl GroupWriter {
    pub fn new() -> GroupWriter {
        GroupWriter {
            first: 0,
            lengths: Vec::with_capacity(GROUP_ROWS),
            rows: Vec::new(),
            entry: Vec::new(),
        }
    }

    /// Adds the row of `seq`, which must follow the previous one; writes the entry when full.
    pub fn push<E>(
        &mut self,
        seq: u64,
        nodes: &[Hash],
        record: &[u8],
        insert: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.lengths.is_empty() {
            self.first = seq;
        }
        let before = self.rows.len();
        pack_row(&mut self.rows, nodes, record);
        // A row is far below 4 GiB: the journal refuses payloads over 64 MiB.
        self.lengths
            .push(u32::try_from(self.rows.len() - before).unwrap_or(u32::MAX));
        if self.lengths.len() >= GROUP_ROWS || self.rows.len() >= GROUP_BYTES {
            self.finish(insert)?;
        }
        Ok(())
    }

    /// Writes the rows gathered so far, if any, as one entry.
    pub fn finish<E>(
        &mut self,
        insert: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.lengths.is_empty() {
            return Ok(());
        }
        self.entry.clear();
        self.entry.push(GROUP);
        // At most GROUP_ROWS rows: the count fits.
        let n = u16::try_from(self.lengths.len()).unwrap_or(u16::MAX);
        self.entry.extend_from_slice(&n.to_le_bytes());
        for len in &self.lengths {
            self.entry.extend_from_slice(&len.to_le_bytes());
        }
        self.entry.extend_from_slice(&self.rows);
        self.lengths.clear();
        self.rows.clear();
        insert(self.first, &self.entry)
    }
}

/// One entry, parsed: its rows, each `(nodes, record)`, the first at seq `first`.
pub struct Entry<'a> {
    pub first: u64,
    rows: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Entry<'a> {
    /// Parses the entry stored under `first`, refusing any malformed length or row.
    pub fn parse(first: u64, bytes: &'a [u8]) -> Result<Entry<'a>, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt {
            seq: Seq(first),
            what: format!("malformed entry in the records table: {what}"),
        };
        // `end` is then always defined.
        let fits = |n: usize| first.checked_add(n as u64).is_some();
        let Some((&GROUP, rest)) = bytes.split_first() else {
            let row = unpack_row(bytes)
                .filter(|_| fits(1))
                .ok_or_else(|| corrupt("malformed row"))?;
            return Ok(Entry {
                first,
                rows: vec![row],
            });
        };
        let (n, rest) = rest
            .split_first_chunk::<2>()
            .map(|(n, rest)| (usize::from(u16::from_le_bytes(*n)), rest))
            .ok_or_else(|| corrupt("no row count"))?;
        if n == 0 {
            return Err(corrupt("a group of no rows"));
        }
        if !fits(n) {
            return Err(corrupt("its rows run past the largest seq"));
        }
        let table_len = n
            .checked_mul(4)
            .filter(|&l| l <= rest.len())
            .ok_or_else(|| corrupt("row lengths cut short"))?;
        let (lengths, mut body) = rest.split_at(table_len);
        let mut rows = Vec::with_capacity(n);
        for len in lengths.chunks_exact(4) {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            let len = usize::try_from(len).map_err(|_| corrupt("row length"))?;
            if len > body.len() {
                return Err(corrupt("a row runs past the entry"));
            }
            let (row, tail) = body.split_at(len);
            rows.push(unpack_row(row).ok_or_else(|| corrupt("malformed row"))?);
            body = tail;
        }
        if !body.is_empty() {
            return Err(corrupt("bytes after the last row"));
        }
        Ok(Entry { first, rows })
    }

    /// The seq after this entry's last row.
    pub fn end(&self) -> u64 {
        self.first + self.rows.len() as u64
    }

    /// The row of `seq`, if this entry holds it.
    pub fn row(&self, seq: u64) -> Option<(&'a [u8], &'a [u8])> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.rows.get(i).copied()
    }

    /// The last row: `(seq, nodes, record)`.
    pub fn last(&self) -> (u64, &'a [u8], &'a [u8]) {
        // `parse` never yields an entry without rows.
        let (nodes, record) = self.rows.last().copied().unwrap_or_default();
        (self.end() - 1, nodes, record)
    }
}

/// The number of records the table holds (the seq after the last).
pub fn size(table: &impl ReadableTable<u64, &'static [u8]>) -> Result<u64, StoreError> {
    match table.last().map_err(io)? {
        None => Ok(0),
        Some((k, v)) => Ok(Entry::parse(k.value(), v.value())?.end()),
    }
}

/// Calls `f` with the row of `seq`: `(nodes, record)`. `None` if the table does not hold it.
pub fn with_row<R>(
    table: &impl ReadableTable<u64, &'static [u8]>,
    seq: u64,
    f: impl FnOnce(&[u8], &[u8]) -> R,
) -> Result<Option<R>, StoreError> {
    let Some(item) = table.range(..=seq).map_err(io)?.next_back() else {
        return Ok(None);
    };
    let (k, v) = item.map_err(io)?;
    let entry = Entry::parse(k.value(), v.value())?;
    Ok(entry.row(seq).map(|(nodes, record)| f(nodes, record)))
}

/// Calls `f(seq, record)` for each record of `range` the table holds, in order; stops early at
/// the table's end. A gap or an overlap between entries is corruption.
pub fn for_each_record(
    table: &impl ReadableTable<u64, &'static [u8]>,
    range: Range<u64>,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    for_each_row(table, range, |seq, _, record| f(seq, record))
}

/// As [`for_each_record`], with each row's stored Merkle nodes: `f(seq, nodes, record)`.
pub fn for_each_row(
    table: &impl ReadableTable<u64, &'static [u8]>,
    range: Range<u64>,
    mut f: impl FnMut(u64, &[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if range.is_empty() {
        return Ok(());
    }
    // The entry that holds `range.start` may begin before it. With none at or before it, the
    // first entry must begin at it (the table starts at seq 0).
    let (from, mut next) = match table.range(..=range.start).map_err(io)?.next_back() {
        Some(item) => (item.map_err(io)?.0.value(), None),
        None => (range.start, Some(range.start)),
    };
    for item in table.range(from..range.end).map_err(io)? {
        let (k, v) = item.map_err(io)?;
        let entry = Entry::parse(k.value(), v.value())?;
        if let Some(expected) = next
            && entry.first != expected
        {
            return Err(StoreError::Corrupt {
                seq: Seq(expected.min(entry.first)),
                what: format!(
                    "the records table's entries break at seq {expected}: the next begins at {}",
                    entry.first
                ),
            });
        }
        for (seq, &(nodes, record)) in (entry.first..).zip(&entry.rows) {
            if range.contains(&seq) {
                f(seq, nodes, record)?;
            }
        }
        next = Some(entry.end());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Entry, GROUP_ROWS, GroupWriter, pack_row, unpack_row};
    use crate::hash::Hash;
    use crate::store::StoreError;

    #[test]
    fn rows_round_trip_and_malformed_rows_are_refused() {
        let mut row = Vec::new();
        pack_row(&mut row, &[Hash([1; 32]), Hash([2; 32])], b"record");
        let (nodes, record) = unpack_row(&row).unwrap();
        assert_eq!(nodes.len(), 64);
        assert_eq!(record, b"record");
        assert_eq!(unpack_row(&[3, 0, 0]), None);
        assert_eq!(unpack_row(&[]), None);
    }

    fn entries(first: u64, records: &[&[u8]]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut w = GroupWriter::new();
        let mut insert = |k: u64, v: &[u8]| -> Result<(), ()> {
            out.push((k, v.to_vec()));
            Ok(())
        };
        for (i, r) in records.iter().enumerate() {
            let nodes = vec![Hash([i as u8; 32]); i % 3];
            w.push(first + i as u64, &nodes, r, &mut insert).unwrap();
        }
        w.finish(&mut insert).unwrap();
        out
    }

    #[test]
    fn groups_hold_consecutive_rows_and_close_when_full() {
        let records: Vec<Vec<u8>> = (0..GROUP_ROWS + 3).map(|i| vec![i as u8; i]).collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let written = entries(10, &refs);
        assert_eq!(
            written.len(),
            2,
            "a full group closes; the rest is a second entry"
        );
        assert_eq!(written[0].0, 10);
        assert_eq!(written[1].0, 10 + GROUP_ROWS as u64);
        for (first, bytes) in &written {
            let entry = Entry::parse(*first, bytes).unwrap();
            for seq in entry.first..entry.end() {
                let i = (seq - 10) as usize;
                let (nodes, record) = entry.row(seq).unwrap();
                assert_eq!(record, records[i].as_slice());
                assert_eq!(nodes.len(), 32 * (i % 3));
            }
            assert!(entry.row(entry.end()).is_none());
            assert!(entry.row(entry.first.wrapping_sub(1)).is_none());
        }
    }

    /// A format-3 entry (one row, no group header) reads as a group of one.
    #[test]
    fn a_single_row_entry_reads_as_a_group_of_one() {
        let mut row = Vec::new();
        pack_row(&mut row, &[Hash([9; 32])], b"old");
        let entry = Entry::parse(7, &row).unwrap();
        assert_eq!(entry.end(), 8);
        assert_eq!(entry.last(), (7, &[9u8; 32][..], &b"old"[..]));
    }

    #[test]
    fn malformed_groups_are_refused_at_their_seq() {
        let (first, good) = entries(5, &[b"a", b"bb", b"ccc"]).remove(0);
        let cut = |bytes: &[u8]| match Entry::parse(first, bytes) {
            Err(StoreError::Corrupt { seq, what }) => (seq.0, what),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a malformed entry was accepted"),
        };
        for len in [1, 2, 3, 8, good.len() - 1] {
            let (seq, what) = cut(&good[..len]);
            assert_eq!(seq, 5);
            assert!(what.contains("malformed entry"), "{what}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(cut(&longer).1.contains("after the last row"));
        assert!(cut(&[0xFF, 0, 0]).1.contains("no rows"));
        assert!(cut(&[65, 0]).1.contains("malformed row"), "m above 64");
        let at_the_top = Entry::parse(u64::MAX - 1, &good)
            .err()
            .map(|e| e.to_string());
        assert!(at_the_top.unwrap().contains("largest seq"));
    }
}
