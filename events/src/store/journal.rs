//! The journal beside the redb file: where an append becomes durable.
//!
//! A batch of sealed records, and the checkpoint cut at its end if one is due, is written as
//! consecutive frames with one durable write (direct and synchronous where the file system offers
//! it, see [`super::direct`]; else a `write` and an `fdatasync`), and only then acknowledged; redb
//! indexes the same records and checkpoint afterwards, in commits that are not synced. A synced
//! redb commit (when the journal passes [`FLUSH_AT`], and on shutdown) makes everything before it
//! durable there too, after which the journal is written again from offset 0. One small sequential write
//! per batch replaces redb's copy-on-write page writes and their syncs on the durable path, and a
//! checkpoint costs no more than a record.
//!
//! Frames share one 48-byte header: magic, payload length (u32 LE), a number (u64 LE), a hash
//! (32 bytes), then the payload.
//! - `"RGJ1"`: a record. The number is its seq, the hash its leaf hash, the payload its
//!   canonical bytes.
//! - `"RGC1"`: a checkpoint. The number is its place in the store's checkpoint table, the hash
//!   the SHA-256 of the payload, the payload its signed note.
//!
//! The hash makes every frame self-checking, so a damaged frame is never taken for a whole one,
//! even as the last frame.
//! The file grows in zero-filled chunks of [`CHUNK`] (synced with the batch that needs them), so
//! a full disk refuses the append that needs more room rather than a later index commit.
//!
//! **Invariant:** frames from offset 0 hold consecutive seqs and, between them, consecutive
//! checkpoint numbers, each checkpoint right after the record that ends the tree it signs; every
//! acknowledged record and every checkpoint not yet in a synced redb commit is among them.
//! Recovery ([`Journal::recover`]) takes the frames from redb's durable size (and checkpoint
//! count) on, each decoded and chained to the one before it; it stops at the first frame that is
//! torn, stale (an earlier pass over the file) or out of sequence, and refuses to open if any
//! intact frame past that point would continue the log, because that means acknowledged records
//! were damaged, not merely a batch cut short by a crash.

use redb::StorageBackend;

use super::StoreError;
use super::direct::{BLOCK, DirectError, DirectFile};
use crate::checkpoint::{self, Checkpoint};
use crate::hash::{self, Hash};
use crate::record::{self, StoredRecord};
use crate::seq::Seq;

const RECORD: [u8; 4] = *b"RGJ1";
const CHECKPOINT: [u8; 4] = *b"RGC1";
// The recovery scan finds candidate frames by this first byte.
const _: () = assert!(RECORD[0] == CHECKPOINT[0]);
const HEADER: usize = 48;
/// The file grows by this much at a time, zero-filled.
pub const CHUNK: u64 = 256 << 10;
/// Past this offset the next commit is a synced redb commit and the journal starts over.
pub const FLUSH_AT: u64 = 4 << 20;
/// A payload larger than this is not a frame (the store's records are far smaller).
const MAX_PAYLOAD: u32 = 64 << 20;

/// The journal file and where the next batch goes.
pub(crate) struct Journal {
    file: Box<dyn StorageBackend>,
    /// The same file for direct synchronous writes, where the file system offers them; the
    /// buffered `file` (write, then `sync_data`) otherwise.
    direct: Option<DirectFile>,
    offset: u64,
    /// The bytes of the block `offset` falls in, before `offset`: a direct write rewrites that
    /// block whole, so it starts with them.
    tail: Vec<u8>,
    allocated: u64,
    /// Reused for every batch's frames: a fresh buffer of several KiB per batch made the
    /// allocator consolidate its free lists on the sequencer's thread each time.
    buf: Vec<u8>,
}

/// A checkpoint to journal: its number in the checkpoint table and its signed note.
#[derive(Clone, Copy)]
pub(crate) struct CheckpointEntry<'a> {
    pub number: u64,
    pub note: &'a str,
}

/// A checkpoint read back from the journal; its signature is not checked here.
pub(crate) struct JournaledCheckpoint {
    pub number: u64,
    pub note: String,
    pub checkpoint: Checkpoint,
}

/// What the journal holds past redb's durable state, in log order.
#[derive(Default)]
pub(crate) struct Recovered {
    pub records: Vec<StoredRecord>,
    pub checkpoints: Vec<JournaledCheckpoint>,
}

impl Recovered {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.checkpoints.is_empty()
    }
}

/// A frame read back, borrowed from the journal's bytes.
struct Frame<'a> {
    magic: [u8; 4],
    number: u64,
    hash: Hash,
    end: usize,
    bytes: &'a [u8],
}

/// What a whole frame holds.
enum Content {
    Record(StoredRecord),
    Checkpoint(JournaledCheckpoint),
}

impl Frame<'_> {
    /// What the frame holds, if its bytes are whole: they hash to the frame's hash, decode, and
    /// (a record) say the frame's seq.
    fn content(&self) -> Option<Content> {
        if self.magic == RECORD {
            if hash::leaf_hash(self.bytes) != self.hash {
                return None;
            }
            return record::decode(self.bytes)
                .ok()
                .filter(|s| s.record.seq.0 == self.number)
                .map(Content::Record);
        }
        if hash::object_digest(self.bytes) != self.hash {
            return None;
        }
        let note = String::from_utf8(self.bytes.to_vec()).ok()?;
        let (checkpoint, _) = checkpoint::parse_unverified(note.as_bytes()).ok()?;
        Some(Content::Checkpoint(JournaledCheckpoint {
            number: self.number,
            note,
            checkpoint,
        }))
    }
}

impl Journal {
    /// The journal in `file`, written through `direct` where that is given.
    pub(crate) fn open(
        file: Box<dyn StorageBackend>,
        direct: Option<DirectFile>,
    ) -> Result<Journal, StoreError> {
        let allocated = file.len().map_err(journal_io)?;
        Ok(Journal {
            file,
            direct,
            offset: 0,
            tail: Vec::new(),
            allocated,
            buf: Vec::new(),
        })
    }

    /// Writes `records`, then `checkpoint`, as frames after the last batch and syncs them: the
    /// durability point. Writes nothing when both are empty.
    pub(crate) fn append(
        &mut self,
        records: &[StoredRecord],
        checkpoint: Option<CheckpointEntry<'_>>,
    ) -> std::io::Result<()> {
        let size: usize = records
            .iter()
            .map(|r| HEADER + r.bytes.len())
            .sum::<usize>()
            + checkpoint.map_or(0, |c| HEADER + c.note.len());
        if size == 0 {
            return Ok(());
        }
        // The block `offset` falls in is written again from its start, padded to whole blocks.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.reserve(self.tail.len() + size + BLOCK);
        buf.extend_from_slice(&self.tail);
        let written = self.write_batch(&mut buf, records, checkpoint);
        // A burst's large buffer is not kept.
        if buf.capacity() <= CHUNK as usize {
            self.buf = buf;
        }
        written
    }

    /// [`Journal::append`]'s work, with the buffer that already holds the tail block's start.
    fn write_batch(
        &mut self,
        buf: &mut Vec<u8>,
        records: &[StoredRecord],
        checkpoint: Option<CheckpointEntry<'_>>,
    ) -> std::io::Result<()> {
        for r in records {
            put_frame(buf, RECORD, r.record.seq.0, &r.hash, &r.bytes)?;
        }
        if let Some(c) = checkpoint {
            let digest = hash::object_digest(c.note.as_bytes());
            put_frame(buf, CHECKPOINT, c.number, &digest, c.note.as_bytes())?;
        }
        let start = self.offset - self.tail.len() as u64;
        let end = start + buf.len() as u64;
        if end.div_ceil(BLOCK as u64) * BLOCK as u64 > self.allocated {
            self.grow(end)?;
            // Direct writes then overwrite allocated, zeroed blocks (no allocation or writeback
            // on the durable path), and a full disk fails this append rather than a later one.
            if self.direct.is_some() {
                self.file.sync_data()?;
            }
        }
        let used = buf.len();
        buf.resize(used.div_ceil(BLOCK) * BLOCK, 0);
        let direct = match self.direct.as_mut() {
            Some(d) => d.write_at(start, buf),
            None => Err(DirectError::Unsupported),
        };
        match direct {
            Ok(()) => {}
            Err(DirectError::Io(e)) => return Err(e),
            Err(DirectError::Unsupported) => {
                // Buffered from now on; the frames alone, as the file ends after them.
                self.direct = None;
                let frames = buf.get(self.tail.len()..used).unwrap_or_default();
                self.file.write(self.offset, frames)?;
                self.file.sync_data()?;
            }
        }
        let last_block = (used / BLOCK) * BLOCK;
        self.tail.clear();
        self.tail
            .extend_from_slice(buf.get(last_block..used).unwrap_or_default());
        self.offset = end;
        Ok(())
    }

    /// Whether the next commit should be a synced redb commit, so the journal can start over.
    pub(crate) fn needs_flush(&self) -> bool {
        self.offset >= FLUSH_AT
    }

    /// Whether anything was written since the journal last started over.
    pub(crate) fn holds_frames(&self) -> bool {
        self.offset > 0
    }

    /// Everything journaled is now durable in redb: write from the start again.
    pub(crate) fn restart(&mut self) {
        self.offset = 0;
        self.tail.clear();
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
    /// record before it (`last`, the hash of record `durable - 1`), and the checkpoints from
    /// number `checkpoints` (redb's synced count) on, each at the size the records before it
    /// reach.
    pub(crate) fn recover(
        &self,
        durable: u64,
        last: Hash,
        checkpoints: u64,
    ) -> Result<Recovered, StoreError> {
        // Read once: walking the frames with two reads each cost 13 ms on a 5.7 MB journal.
        let data = self.read_all()?;
        let mut out = Recovered::default();
        let mut pos = 0;
        // What the next frame of this pass must say, once one frame has been read.
        let mut pass_seq: Option<u64> = None;
        let mut pass_cp: Option<u64> = None;
        let mut last = last;
        while let Some(frame) = frame_at(&data, pos) {
            let next = durable + out.records.len() as u64;
            let next_cp = checkpoints + out.checkpoints.len() as u64;
            if frame.magic == RECORD {
                if pass_seq.is_some_and(|n| frame.number != n) {
                    break;
                }
                if frame.number >= durable {
                    if frame.number != next {
                        break;
                    }
                    let Some(Content::Record(stored)) = frame.content() else {
                        break;
                    };
                    if stored.record.prev != last {
                        break;
                    }
                    last = stored.hash;
                    out.records.push(stored);
                }
                pass_seq = Some(frame.number + 1);
            } else {
                if pass_cp.is_some_and(|n| frame.number != n) {
                    break;
                }
                let Some(Content::Checkpoint(cp)) = frame.content() else {
                    break;
                };
                let size = cp.checkpoint.size;
                if pass_seq.is_some_and(|n| size != n) {
                    break;
                }
                if frame.number >= checkpoints {
                    if frame.number != next_cp || size != next {
                        break;
                    }
                    out.checkpoints.push(cp);
                }
                pass_cp = Some(frame.number + 1);
                pass_seq = Some(size);
            }
            pos = frame.end;
        }
        let next = durable + out.records.len() as u64;
        let next_cp = checkpoints + out.checkpoints.len() as u64;
        if let Some(at) = continues_after(&data, pos, next, next_cp) {
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

    /// The whole file, as recovery reads it.
    fn read_all(&self) -> Result<Vec<u8>, StoreError> {
        let len = self.file.len().map_err(journal_io)?;
        let len = usize::try_from(len)
            .map_err(|_| StoreError::Io(format!("the journal: {len} bytes cannot be read")))?;
        let mut data = vec![0u8; len];
        self.file.read(0, &mut data).map_err(journal_io)?;
        Ok(data)
    }
}

/// The frame starting at `pos` in `data`, if one fits and has a frame's magic.
fn frame_at(data: &[u8], pos: usize) -> Option<Frame<'_>> {
    let head = data.get(pos..pos.checked_add(HEADER)?)?;
    let magic = [head[0], head[1], head[2], head[3]];
    if magic != RECORD && magic != CHECKPOINT {
        return None;
    }
    let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if size > MAX_PAYLOAD {
        return None;
    }
    let mut number = [0u8; 8];
    number.copy_from_slice(&head[8..16]);
    let number = u64::from_le_bytes(number);
    let hash = Hash::from_slice(&head[16..48]).unwrap_or(hash::ZERO);
    let start = pos + HEADER;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    let bytes = data.get(start..end)?;
    Some(Frame {
        magic,
        number,
        hash,
        end,
        bytes,
    })
}

/// Where, at or after `from`, an intact frame holds a record of seq `next` or later, or a
/// checkpoint of number `next_cp` or later: proof that the break at `from` lost acknowledged
/// entries. Stale frames hold earlier ones, so a frame's number is checked before its bytes are
/// hashed. Every byte offset is a candidate (a frame may start inside a torn one); both magics
/// begin with `R`, which is searched for first.
fn continues_after(data: &[u8], from: usize, next: u64, next_cp: u64) -> Option<u64> {
    let mut i = from;
    while i + HEADER <= data.len() {
        let rest = data.get(i..=data.len() - HEADER)?;
        i += rest.iter().position(|b| *b == RECORD[0])?;
        if let Some(frame) = frame_at(data, i) {
            let lost = if frame.magic == RECORD {
                frame.number >= next && matches!(frame.content(), Some(Content::Record(_)))
            } else {
                frame.number >= next_cp && matches!(frame.content(), Some(Content::Checkpoint(_)))
            };
            if lost {
                return Some(i as u64);
            }
        }
        i += 1;
    }
    None
}

/// Appends one frame to `buf`.
fn put_frame(
    buf: &mut Vec<u8>,
    magic: [u8; 4],
    number: u64,
    hash: &Hash,
    payload: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or_else(|| std::io::Error::other("an entry is too large for the journal"))?;
    buf.extend_from_slice(&magic);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&number.to_le_bytes());
    buf.extend_from_slice(&hash.0);
    buf.extend_from_slice(payload);
    Ok(())
}

fn journal_io(e: std::io::Error) -> StoreError {
    StoreError::Io(format!("the journal: {e}"))
}
