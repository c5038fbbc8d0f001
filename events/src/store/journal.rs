//! The journal beside the redb file: where an append becomes durable.
//!
//! A batch of sealed records is written as consecutive frames with one `write` and one
//! `fdatasync`, and only then acknowledged; redb indexes the same records in a commit that is
//! not synced, and a synced redb commit (at a checkpoint, when the journal passes
//! [`FLUSH_AT`], and on shutdown) makes everything before it durable there too, after which the
//! journal is written again from offset 0. One small sequential write per batch replaces redb's
//! copy-on-write page writes per batch on the durable path.
//!
//! Frame: `"RGJ1"`, the record's length (u32 LE), its seq (u64 LE), its leaf hash (32 bytes),
//! the canonical record bytes. The hash makes every frame self-checking, so a damaged record is
//! never taken for a whole one, even as the last frame.
//! The file grows in zero-filled chunks of [`CHUNK`] (synced with the batch that needs them), so
//! a full disk refuses the append that needs more room rather than a later index commit.
//!
//! **Invariant:** frames from offset 0 hold consecutive seqs; every acknowledged record not yet
//! in a synced redb commit is among them. Recovery ([`Journal::recover`]) takes the frames from
//! redb's durable size on, each decoded and chained to the record before it; it stops at the
//! first frame that is torn, stale (an earlier pass over the file) or out of sequence, and
//! refuses to open if any intact frame past that point would continue the log, because that
//! means acknowledged records were damaged, not merely a batch cut short by a crash.

use redb::StorageBackend;

use super::StoreError;
use crate::hash::{self, Hash};
use crate::record::{self, StoredRecord};
use crate::seq::Seq;

const MAGIC: [u8; 4] = *b"RGJ1";
const HEADER: usize = 48;
/// The file grows by this much at a time, zero-filled.
pub const CHUNK: u64 = 256 << 10;
/// Past this offset the next commit is a synced redb commit and the journal starts over.
pub const FLUSH_AT: u64 = 4 << 20;
/// A record larger than this is not a frame (the store's records are far smaller).
const MAX_RECORD: u32 = 64 << 20;

/// The journal file and where the next batch goes.
pub(crate) struct Journal {
    file: Box<dyn StorageBackend>,
    offset: u64,
    allocated: u64,
}

/// A frame read back.
struct Frame {
    seq: u64,
    hash: Hash,
    end: u64,
    bytes: Vec<u8>,
}

impl Frame {
    /// The record it holds, if the bytes are whole: they hash to the frame's hash, decode, and
    /// say the frame's seq.
    fn record(&self) -> Option<StoredRecord> {
        if hash::leaf_hash(&self.bytes) != self.hash {
            return None;
        }
        record::decode(&self.bytes)
            .ok()
            .filter(|s| s.record.seq.0 == self.seq)
    }
}

impl Journal {
    pub(crate) fn open(file: Box<dyn StorageBackend>) -> Result<Journal, StoreError> {
        let allocated = file.len().map_err(journal_io)?;
        Ok(Journal {
            file,
            offset: 0,
            allocated,
        })
    }

    /// Writes `records` as frames after the last batch and syncs them: the durability point.
    pub(crate) fn append(&mut self, records: &[StoredRecord]) -> std::io::Result<()> {
        let size: usize = records.iter().map(|r| HEADER + r.bytes.len()).sum();
        let mut buf = Vec::with_capacity(size);
        for r in records {
            let len = u32::try_from(r.bytes.len())
                .ok()
                .filter(|l| *l <= MAX_RECORD)
                .ok_or_else(|| std::io::Error::other("a record is too large for the journal"))?;
            buf.extend_from_slice(&MAGIC);
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&r.record.seq.0.to_le_bytes());
            buf.extend_from_slice(&r.hash.0);
            buf.extend_from_slice(&r.bytes);
        }
        let end = self.offset + buf.len() as u64;
        if end > self.allocated {
            self.grow(end)?;
        }
        self.file.write(self.offset, &buf)?;
        self.file.sync_data()?;
        self.offset = end;
        Ok(())
    }

    /// Whether the next commit should be a synced redb commit, so the journal can start over.
    pub(crate) fn needs_flush(&self) -> bool {
        self.offset >= FLUSH_AT
    }

    /// Everything journaled is now durable in redb: write from the start again.
    pub(crate) fn restart(&mut self) {
        self.offset = 0;
    }

    /// Zero-fills the file up to `end` rounded up to a chunk (synced by the caller's sync).
    fn grow(&mut self, end: u64) -> std::io::Result<()> {
        let target = end.div_ceil(CHUNK) * CHUNK;
        let zeros = vec![0u8; 64 << 10];
        let mut at = self.allocated;
        while at < target {
            let n = (target - at).min(zeros.len() as u64);
            self.file.write(at, &zeros[..n as usize])?;
            at += n;
        }
        self.allocated = target;
        Ok(())
    }

    /// The journaled records from `durable` (redb's synced size) on, each checked against the
    /// record before it (`last`, the hash of record `durable - 1`).
    pub(crate) fn recover(
        &self,
        durable: u64,
        last: Hash,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let len = self.file.len().map_err(journal_io)?;
        let mut out: Vec<StoredRecord> = Vec::new();
        let mut pos = 0u64;
        let mut prev_seq: Option<u64> = None;
        let mut last = last;
        while let Some(frame) = self.frame_at(pos, len)? {
            if prev_seq.is_some_and(|p| frame.seq != p + 1) {
                break;
            }
            if frame.seq >= durable {
                let expected = durable + out.len() as u64;
                if frame.seq != expected {
                    break;
                }
                let Some(stored) = frame.record() else {
                    break;
                };
                if stored.record.prev != last {
                    break;
                }
                last = stored.hash;
                out.push(stored);
            }
            prev_seq = Some(frame.seq);
            pos = frame.end;
        }
        let next = durable + out.len() as u64;
        if let Some(at) = self.continues_after(pos, len, next)? {
            return Err(StoreError::Corrupt {
                seq: Seq(next),
                what: format!(
                    "the journal is damaged at byte {pos}: an intact frame at byte {at} continues \
                     the log past it, so acknowledged records were lost; restore the data \
                     directory from a backup"
                ),
            });
        }
        Ok(out)
    }

    /// The frame starting at `pos`, if one fits and has the magic.
    fn frame_at(&self, pos: u64, len: u64) -> Result<Option<Frame>, StoreError> {
        if pos + HEADER as u64 > len {
            return Ok(None);
        }
        let mut head = [0u8; HEADER];
        self.file.read(pos, &mut head).map_err(journal_io)?;
        if head[..4] != MAGIC {
            return Ok(None);
        }
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&head[8..16]);
        let seq = u64::from_le_bytes(seq);
        let hash = Hash::from_slice(&head[16..48]).unwrap_or(hash::ZERO);
        let end = pos + HEADER as u64 + u64::from(size);
        if size > MAX_RECORD || end > len {
            return Ok(None);
        }
        let mut bytes = vec![0u8; size as usize];
        self.file
            .read(pos + HEADER as u64, &mut bytes)
            .map_err(journal_io)?;
        Ok(Some(Frame {
            seq,
            hash,
            end,
            bytes,
        }))
    }

    /// Where, after `from`, an intact frame holds a record of seq `next` or later: proof that
    /// the break at `from` lost acknowledged records. Stale frames hold earlier seqs.
    fn continues_after(&self, from: u64, len: u64, next: u64) -> Result<Option<u64>, StoreError> {
        let mut buf = vec![0u8; usize::try_from(len.saturating_sub(from)).unwrap_or(0)];
        if buf.is_empty() {
            return Ok(None);
        }
        self.file.read(from, &mut buf).map_err(journal_io)?;
        let mut i = 0;
        while i + HEADER <= buf.len() {
            if buf[i..i + 4] == MAGIC {
                let at = from + i as u64;
                if let Some(frame) = self.frame_at(at, len)?
                    && frame.seq >= next
                    && frame.record().is_some()
                {
                    return Ok(Some(at));
                }
            }
            i += 1;
        }
        Ok(None)
    }
}

fn journal_io(e: std::io::Error) -> StoreError {
    StoreError::Io(format!("the journal: {e}"))
}
