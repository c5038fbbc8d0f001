//! The journal beside the redb file: where an append becomes durable.
//!
//! A batch of sealed records, and the checkpoint cut at its end if one is due, is written as
//! consecutive frames with one durable write (direct and synchronous where the file system offers
//! it, see [`super::direct`]; else a `write` and an `fdatasync`), and only then acknowledged; redb
//! indexes the same records and checkpoint afterwards, in commits that are not synced. A synced
//! redb commit (when the journal passes [`FLUSH_AT`], and on shutdown) makes everything before it
//! durable there too, after which the journal is written again from offset 0 (its first block
//! zeroed first, see [`Journal::restart`]). One small sequential write
//! per batch replaces redb's copy-on-write page writes and their syncs on the durable path, and a
//! checkpoint costs no more than a record.
//!
//! Frames share one 64-byte header: magic, payload length (u32 LE), a number (u64 LE), the
//! frame's place (its batch's number in this pass over the file, u64 LE; its index in the
//! batch and the batch's frame count, u32 LE each), a hash (32 bytes), then the payload. The
//! hash is SHA-256 of the header's first 32 bytes and the payload's digest (a record's leaf
//! hash, a note's SHA-256), so every frame is self-checking, its place included, and a damaged
//! frame is never taken for a whole one, even as the last frame.
//! - `"RGJ2"`: a record. The number is its seq, the payload its canonical bytes.
//! - `"RGC2"`: a checkpoint. The number is its place in the store's checkpoint table, the
//!   payload its signed note.
//!
//! Journals written before frames carried their place (`"RGJ1"`/`"RGC1"`: a 48-byte header
//! whose hash is the record's leaf hash or the note's SHA-256) are still read, never written.
//! The file grows in zero-filled chunks of [`CHUNK`] (synced with the batch that needs them), so
//! a full disk refuses the append that needs more room rather than a later index commit.
//!
//! **Invariant:** frames from offset 0 hold consecutive seqs and, between them, consecutive
//! checkpoint numbers, each checkpoint right after the record that ends the tree it signs; every
//! acknowledged record and every checkpoint not yet in a synced redb commit is among them.
//! Recovery ([`Journal::recover`]) takes the frames from redb's durable size (and checkpoint
//! count) on, each decoded and chained to the one before it; it stops at the first frame that is
//! torn, stale (an earlier pass over the file) or out of sequence. A batch's write may reach the
//! disk in pieces, in any order, if the power fails during it, so intact frames past that point
//! are dropped if they belong to the batch the break is in (it was never acknowledged; its
//! frames before the break are kept, like any intact record never acknowledged); any
//! other intact frame that would continue the log makes recovery refuse to open, because that
//! means acknowledged records were damaged, not merely the last batch cut short by a crash.

use redb::StorageBackend;
use sha2::{Digest, Sha256};

use super::StoreError;
use super::direct::{BLOCK, DirectError, DirectFile};
use super::redb::Recovery;
use crate::checkpoint::{self, Checkpoint};
use crate::hash::{self, Hash};
use crate::record::{self, StoredRecord};
use crate::seq::Seq;

const RECORD: [u8; 4] = *b"RGJ2";
const CHECKPOINT: [u8; 4] = *b"RGC2";
/// The frames of journals written before frames carried their batch; read, never written.
const RECORD_V1: [u8; 4] = *b"RGJ1";
const CHECKPOINT_V1: [u8; 4] = *b"RGC1";
// The recovery scan finds candidate frames by this first byte.
const _: () = assert!(
    RECORD[0] == CHECKPOINT[0] && RECORD[0] == RECORD_V1[0] && RECORD[0] == CHECKPOINT_V1[0]
);
const HEADER: usize = 64;
const HEADER_V1: usize = 48;
/// The part of a header its hash covers, with the payload.
const COVERED: usize = 32;
/// The file grows by this much at a time, zero-filled.
pub const CHUNK: u64 = 256 << 10;
/// Past this offset the next commit is a synced redb commit and the journal starts over.
pub const FLUSH_AT: u64 = 4 << 20;
/// A payload larger than this is not a frame (the store's records are far smaller).
const MAX_PAYLOAD: u32 = 64 << 20;
/// The longest journal recovery reads. One is folded into the index once it passes
/// [`FLUSH_AT`], so it holds that and one batch; a longer file is not a journal this store
/// wrote (or its length was damaged), and reading it whole could exhaust memory.
const MAX_JOURNAL: u64 = 1 << 30;

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
    /// The next batch's number in this pass over the file (0 after every restart).
    batch: u64,
    /// Where the last batch written ends, in whole blocks: after a failed write, what of it
    /// may have reached the file.
    attempted: u64,
}

/// Where a frame sits in the batches of its pass. Written in every frame, so that recovery can
/// tell a frame of the batch a crash cut short (its write reached the disk in pieces, in any
/// order) from a frame of a later batch, whose presence proves acknowledged frames were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Place {
    batch: u64,
    index: u32,
    count: u32,
}

impl Place {
    /// The batch a break right after this frame is in: its own, unless it is its batch's last
    /// frame.
    fn broken_batch(self) -> u64 {
        if self.index.saturating_add(1) < self.count {
            self.batch
        } else {
            // Saturating: a crafted header may say any batch.
            self.batch.saturating_add(1)
        }
    }
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

/// Where a journal write that reported failure began: the first seq and checkpoint number it
/// held. Its frames may have reached the disk all the same (a failed `fdatasync` does not undo
/// the write); its appends were answered `Err`, so recovery must never take them for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FailedWrite {
    pub seq: u64,
    pub checkpoint: u64,
}

/// What the journal holds past redb's durable state, in log order.
#[derive(Default)]
pub(crate) struct Recovered {
    pub records: Vec<StoredRecord>,
    pub checkpoints: Vec<JournaledCheckpoint>,
    /// What was dropped, and where the walk stopped short. Frames dropped (of a torn batch,
    /// or of the [`FailedWrite`] recovery was told of) must not outlive this pass: the writer
    /// clears the file ([`Journal::clear`]) once the rest is indexed, so that a later pass never
    /// takes them for its own. A frame that is not whole where the walk stopped, with nothing
    /// intact after it, is a crash's torn write or damage to the last acknowledged batch; the
    /// two look the same on the disk, so it is dropped either way and its place reported.
    pub found: Recovery,
}

impl Recovered {
    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.checkpoints.is_empty()
    }
}

/// A frame read back, borrowed from the journal's bytes.
struct Frame<'a> {
    record: bool,
    number: u64,
    /// `None` in a frame of the first format.
    place: Option<Place>,
    /// The header's first [`COVERED`] bytes.
    head: &'a [u8],
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
    /// Whether the frame's hash says its payload has `digest` (a record's leaf hash, a note's
    /// SHA-256), for its format.
    fn covers(&self, digest: &Hash) -> bool {
        match self.place {
            Some(_) => frame_digest(self.head, digest) == self.hash,
            None => *digest == self.hash,
        }
    }

    /// What the frame holds, if its bytes are whole: they hash to the frame's hash, decode, and
    /// (a record) say the frame's seq.
    fn content(&self) -> Option<Content> {
        if self.record {
            // Decoding computes the leaf hash, which the frame's hash covers: one hash per
            // record.
            return record::decode(self.bytes)
                .ok()
                .filter(|s| self.covers(&s.hash) && s.record.seq.0 == self.number)
                .map(Content::Record);
        }
        if !self.covers(&hash::object_digest(self.bytes)) {
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
            batch: 0,
            attempted: 0,
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
        let count = records.len() + usize::from(checkpoint.is_some());
        let count = u32::try_from(count)
            .map_err(|_| std::io::Error::other("a batch is too large for the journal"))?;
        let mut place = Place {
            batch: self.batch,
            index: 0,
            count,
        };
        for r in records {
            put_frame(buf, RECORD, r.record.seq.0, place, &r.hash, &r.bytes)?;
            place.index += 1;
        }
        if let Some(c) = checkpoint {
            let digest = hash::object_digest(c.note.as_bytes());
            put_frame(buf, CHECKPOINT, c.number, place, &digest, c.note.as_bytes())?;
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
        self.attempted = start + buf.len() as u64;
        self.write_durably(start, buf, self.tail.len()..used)?;
        let last_block = (used / BLOCK) * BLOCK;
        self.tail.clear();
        self.tail
            .extend_from_slice(buf.get(last_block..used).unwrap_or_default());
        self.offset = end;
        self.batch += 1;
        Ok(())
    }

    /// Writes whole `blocks` at `start` and waits until they are durable: one direct synchronous
    /// write where the file system takes it, else (from then on) the bytes of `blocks` in
    /// `changed` alone, as the file may end after them, then an `fdatasync`.
    fn write_durably(
        &mut self,
        start: u64,
        blocks: &[u8],
        changed: std::ops::Range<usize>,
    ) -> std::io::Result<()> {
        let direct = match self.direct.as_mut() {
            Some(d) => d.write_at(start, blocks),
            None => Err(DirectError::Unsupported),
        };
        match direct {
            Ok(()) => Ok(()),
            Err(DirectError::Io(e)) => Err(e),
            Err(DirectError::Unsupported) => {
                self.direct = None;
                let at = start + changed.start as u64;
                self.file
                    .write(at, blocks.get(changed).unwrap_or_default())?;
                self.file.sync_data()
            }
        }
    }

    /// Zeroes, durably, whatever of the last batch's write reached the file, after that write
    /// reported failure: its appends are answered as failed, and must not come back on a later
    /// open that does not know of the failure (the process stopped before the store could be
    /// reopened). The acknowledged frames before it, in the same block, are written again as
    /// they were.
    ///
    /// # Errors
    /// The zeroing failed too; the failed write may then still be in the file.
    pub(crate) fn erase_failed(&mut self) -> std::io::Result<()> {
        if self.attempted <= self.offset {
            return Ok(());
        }
        let start = self.offset - self.tail.len() as u64;
        let len = usize::try_from(self.attempted - start)
            .map_err(|_| std::io::Error::other("a batch is too large for the journal"))?;
        let mut blocks = std::mem::take(&mut self.buf);
        blocks.clear();
        blocks.extend_from_slice(&self.tail);
        blocks.resize(len, 0);
        let erased = self.write_durably(start, &blocks, self.tail.len()..len);
        self.buf = blocks;
        erased
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
    ///
    /// The first block is zeroed, durably, first. Recovery reads from offset 0 with nothing to
    /// check the first frame against, so a frame of the previous pass there (the new pass's
    /// first write cut short by a crash, its first block lost and a later one kept) would be
    /// walked as this pass's, and the new pass's intact frames past it taken for proof that
    /// acknowledged records were lost. A zeroed first block ends the walk at once, as in the
    /// first pass over a fresh file.
    ///
    /// # Errors
    /// The zeroing write failed; the journal is left as it was and must not be written again
    /// from the start.
    pub(crate) fn restart(&mut self) -> std::io::Result<()> {
        if self.allocated > 0 {
            self.write_durably(0, &[0u8; BLOCK], 0..BLOCK)?;
        }
        self.offset = 0;
        self.tail.clear();
        self.batch = 0;
        Ok(())
    }

    /// Empties the file and starts over: after recovery dropped frames of a torn batch, once
    /// everything before it is durable in redb.
    pub(crate) fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.allocated = 0;
        self.restart()
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
    /// reach. Frames of `failed` (the write this writer saw fail) and after it are not taken.
    pub(crate) fn recover(
        &self,
        durable: u64,
        last: Hash,
        checkpoints: u64,
        failed: Option<FailedWrite>,
    ) -> Result<Recovered, StoreError> {
        // Read once: walking the frames with two reads each cost 13 ms on a 5.7 MB journal.
        let data = self.read_all()?;
        let mut out = Recovered::default();
        let mut pos = 0;
        // What the next frame of this pass must say, once one frame has been read.
        let mut pass_seq: Option<u64> = None;
        let mut pass_cp: Option<u64> = None;
        let mut last = last;
        // The batch a break here would be in, which a crash may have cut short: the pass's
        // first until an intact frame is read, then as the last one read says. Frames of the first
        // format carry no batch: nothing past their break may be whole.
        let mut torn = Some(0);
        // The frame of `failed` the walk stopped at.
        let mut refused: Option<Frame<'_>> = None;
        while let Some(frame) = frame_at(&data, pos) {
            let next = durable + out.records.len() as u64;
            let next_cp = checkpoints + out.checkpoints.len() as u64;
            if frame.record {
                if pass_seq.is_some_and(|n| frame.number != n) {
                    break;
                }
                if failed.is_some_and(|f| frame.number >= f.seq) {
                    refused = Some(frame);
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
                // Taken, or already durable in redb: either way intact, so a break after it
                // is in the batch it names (a journal a failed clear left behind holds only
                // frames of the second kind before its torn batch).
                torn = frame.place.map(Place::broken_batch);
                pass_seq = Some(frame.number + 1);
            } else {
                if pass_cp.is_some_and(|n| frame.number != n) {
                    break;
                }
                if failed.is_some_and(|f| frame.number >= f.checkpoint) {
                    refused = Some(frame);
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
                torn = frame.place.map(Place::broken_batch);
                pass_cp = Some(frame.number + 1);
                pass_seq = Some(size);
            }
            pos = frame.end;
        }
        if let Some(first) = refused {
            // The failed write is the last thing this writer wrote: nothing past it is the log's.
            out.found.refused = failed_frames(&data, first);
            return Ok(out);
        }
        let next = durable + out.records.len() as u64;
        let next_cp = checkpoints + out.checkpoints.len() as u64;
        // An intact frame where the walk stopped, numbered past what comes next: no crash
        // writes one (a torn write leaves a frame that does not check, and an older pass's are
        // numbered lower), so records between were acknowledged and lost, whatever batch it is
        // in. Dropped as a torn batch, the journal's pass would open short and reuse their seqs.
        if let Some(frame) = frame_at(&data, pos)
            && frame.content().is_some()
        {
            let (what, expected) = if frame.record {
                ("record", next)
            } else {
                ("checkpoint", next_cp)
            };
            if frame.number > expected {
                return Err(StoreError::Corrupt {
                    seq: Seq(next),
                    what: format!(
                        "the journal holds {what} {} at byte {pos} where {what} {expected} comes \
                     next: acknowledged records between were lost (the index or the journal \
                     lost what its sync acknowledged); restore the data directory from a backup",
                        frame.number
                    ),
                });
            }
        }
        let after = continues_after(&data, pos, next, next_cp, torn);
        out.found.dropped = after.dropped;
        out.found.cut_short_at = (after.dropped > 0
            || begins_broken_frame(&data, pos, next, next_cp))
        .then_some(pos as u64);
        if let Some(at) = after.lost {
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
        if len > MAX_JOURNAL {
            return Err(StoreError::Io(format!(
                "the journal is {len} bytes, more than the {MAX_JOURNAL} a journal of this store \
                 can reach (it is folded into the index past {FLUSH_AT}): not this store's \
                 journal, or its length is damaged"
            )));
        }
        let len = usize::try_from(len)
            .map_err(|_| StoreError::Io(format!("the journal: {len} bytes cannot be read")))?;
        let mut data = vec![0u8; len];
        self.file.read(0, &mut data).map_err(journal_io)?;
        Ok(data)
    }
}

/// The frame starting at `pos` in `data`, if one fits and has a frame's magic.
fn frame_at(data: &[u8], pos: usize) -> Option<Frame<'_>> {
    let magic = data.get(pos..pos.checked_add(4)?)?;
    let (record, header) = match <[u8; 4]>::try_from(magic).ok()? {
        RECORD => (true, HEADER),
        CHECKPOINT => (false, HEADER),
        RECORD_V1 => (true, HEADER_V1),
        CHECKPOINT_V1 => (false, HEADER_V1),
        _ => return None,
    };
    let head = data.get(pos..pos.checked_add(header)?)?;
    let size = u32::from_le_bytes(head.get(4..8)?.try_into().ok()?);
    if size > MAX_PAYLOAD {
        return None;
    }
    let number = u64::from_le_bytes(head.get(8..16)?.try_into().ok()?);
    let place = (header == HEADER)
        .then(|| {
            Some(Place {
                batch: u64::from_le_bytes(head.get(16..24)?.try_into().ok()?),
                index: u32::from_le_bytes(head.get(24..28)?.try_into().ok()?),
                count: u32::from_le_bytes(head.get(28..32)?.try_into().ok()?),
            })
        })
        .flatten();
    let hash = Hash::from_slice(head.get(header - 32..header)?).unwrap_or(hash::ZERO);
    let start = pos + header;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    let bytes = data.get(start..end)?;
    Some(Frame {
        record,
        number,
        place,
        head: head.get(..COVERED)?,
        hash,
        end,
        bytes,
    })
}

/// The frames of the failed write that starts with `first`: those of its batch, in a row.
fn failed_frames(data: &[u8], first: Frame<'_>) -> usize {
    let batch = first.place.map(|p| p.batch);
    let mut count = 1;
    let mut pos = first.end;
    while let Some(frame) = frame_at(data, pos) {
        if frame.place.map(|p| p.batch) != batch {
            break;
        }
        count += 1;
        pos = frame.end;
    }
    count
}

/// Whether the bytes at `pos`, where the walk stopped, begin a frame that is not whole and
/// would hold a record of seq `next` or later, or a checkpoint of number `next_cp` or later:
/// its magic is there but its header does not fit or its number is not an earlier pass's. The
/// zeroes after a clean end, and a stale frame of an earlier pass (whose numbers are all
/// below those), begin none.
fn begins_broken_frame(data: &[u8], pos: usize, next: u64, next_cp: u64) -> bool {
    let Some(magic) = data.get(pos..pos.saturating_add(4)) else {
        return false;
    };
    if ![RECORD, CHECKPOINT, RECORD_V1, CHECKPOINT_V1]
        .contains(&<[u8; 4]>::try_from(magic).unwrap_or_default())
    {
        return false;
    }
    match frame_at(data, pos) {
        None => true,
        Some(frame) if frame.record => frame.number >= next,
        Some(frame) => frame.number >= next_cp,
    }
}

/// What lies past a break.
struct After {
    /// The first intact frame that continues the log outside the batch a crash may have cut.
    lost: Option<u64>,
    /// Intact frames that continue the log inside it.
    dropped: usize,
}

/// What lies at or after `from`: intact frames holding a record of seq `next` or later, or a
/// checkpoint of number `next_cp` or later. In batch `torn` (frames of the current format only)
/// they are pieces of a write a crash cut short, never acknowledged; anywhere else they prove
/// that the break at `from` lost acknowledged entries. Stale frames hold earlier ones, so a
/// frame's number is checked before its bytes are hashed. Every byte offset is a candidate (a
/// frame may start inside a torn one); every magic begins with `R`, which is searched for
/// first.
fn continues_after(data: &[u8], from: usize, next: u64, next_cp: u64, torn: Option<u64>) -> After {
    let mut after = After {
        lost: None,
        dropped: 0,
    };
    let mut i = from;
    while i + HEADER_V1 <= data.len() {
        let Some(skip) = data
            .get(i..=data.len() - HEADER_V1)
            .and_then(|rest| rest.iter().position(|b| *b == RECORD[0]))
        else {
            break;
        };
        i += skip;
        if let Some(frame) = frame_at(data, i) {
            let continues = if frame.record {
                frame.number >= next && matches!(frame.content(), Some(Content::Record(_)))
            } else {
                frame.number >= next_cp && matches!(frame.content(), Some(Content::Checkpoint(_)))
            };
            if continues {
                let unacknowledged = matches!(
                    (torn, frame.place),
                    (Some(t), Some(p)) if p.batch == t
                );
                if !unacknowledged {
                    after.lost = Some(i as u64);
                    return after;
                }
                after.dropped += 1;
                i = frame.end;
                continue;
            }
        }
        i += 1;
    }
    after
}

/// Appends one frame to `buf`; `digest` is the payload's (a record's leaf hash, a note's
/// SHA-256).
fn put_frame(
    buf: &mut Vec<u8>,
    magic: [u8; 4],
    number: u64,
    place: Place,
    digest: &Hash,
    payload: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_PAYLOAD)
        .ok_or_else(|| std::io::Error::other("an entry is too large for the journal"))?;
    let start = buf.len();
    buf.extend_from_slice(&magic);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&number.to_le_bytes());
    buf.extend_from_slice(&place.batch.to_le_bytes());
    buf.extend_from_slice(&place.index.to_le_bytes());
    buf.extend_from_slice(&place.count.to_le_bytes());
    let hash = frame_digest(buf.get(start..).unwrap_or_default(), digest);
    buf.extend_from_slice(&hash.0);
    buf.extend_from_slice(payload);
    Ok(())
}

/// A frame's hash: SHA-256 of its header's first [`COVERED`] bytes and its payload's digest
/// (a record's leaf hash, which the sequencer already has; a note's SHA-256), so a damaged
/// place is never taken for a whole one and the payload is hashed once.
fn frame_digest(head: &[u8], payload: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(head);
    h.update(payload.0);
    Hash(h.finalize().into())
}

fn journal_io(e: std::io::Error) -> StoreError {
    StoreError::Io(format!("the journal: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of `magic` numbered `number`, its payload not a record or note (recovery's
    /// walk would find it not whole).
    fn frame(magic: [u8; 4], number: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        let place = Place {
            batch: 0,
            index: 0,
            count: 1,
        };
        put_frame(&mut buf, magic, number, place, &hash::ZERO, b"payload").unwrap();
        buf
    }

    /// Where the walk stopped, a frame of this pass that is not whole is reported, a header cut
    /// off by the end of the file included; zeroes and a stale frame of an earlier pass are
    /// not.
    #[test]
    fn a_broken_frame_where_the_walk_stopped_is_told_from_a_clean_end() {
        let mut data = vec![0u8; 16];
        data.extend(frame(RECORD, 10));
        let at = 16;
        assert!(
            begins_broken_frame(&data, at, 10, 3),
            "a record of the next seq"
        );
        assert!(
            begins_broken_frame(&data, at, 9, 3),
            "a record past the next seq"
        );
        assert!(!begins_broken_frame(&data, at, 11, 3), "a stale record");
        assert!(!begins_broken_frame(&data, 0, 10, 3), "zeroes");
        assert!(
            !begins_broken_frame(&data, data.len(), 10, 3),
            "the end of the file"
        );
        let cut = &data[..at + HEADER / 2];
        assert!(
            begins_broken_frame(cut, at, 99, 99),
            "a header the file cuts off"
        );

        let mut data = vec![0u8; 16];
        data.extend(frame(CHECKPOINT, 3));
        assert!(
            begins_broken_frame(&data, at, 99, 3),
            "a checkpoint of the next number"
        );
        assert!(!begins_broken_frame(&data, at, 0, 4), "a stale checkpoint");
    }
}
