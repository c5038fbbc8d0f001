//! The `EventStore` contract: the only way anything enters the log.
//!
//! A store owns a **sequencer**: it alone assigns `seq`, `time` and `prev`, evaluates guards
//! against the projections at the moment of sequencing, and applies each committed batch to the
//! in-process projections before any append of that batch resolves (read-your-writes). Stores
//! share this contract and the conformance suite (`conformance`, behind `test-util`), and no code:
//! each is written natively for its engine.
//!
//! **Invariant:** an append that resolves `Ok` is durable, and the projections have applied it.
//! An append that resolves `Err` left nothing in the log and nothing in the projections, even
//! where its write reached the disk before failing: the store erases it before answering, or,
//! if the disk still refuses, before it appends anything else. Only a process that stops in
//! that window leaves such a write to the next open, like any write a crash interrupts.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use crate::checkpoint::SignedCheckpoint;
use crate::event::Event;
pub use crate::fold::{Fold, FoldError};
use crate::hash::Hash;
use crate::record::StoredRecord;
use crate::seq::Seq;

#[cfg(feature = "redb-store")]
mod direct;
#[cfg(feature = "redb-store")]
mod journal;
#[cfg(feature = "redb-store")]
pub mod redb;
#[cfg(feature = "redb-store")]
mod rows;

#[cfg(feature = "test-util")]
pub mod conformance;
#[cfg(feature = "test-util")]
pub mod test_disk;

/// A guard: a pure check of the projections, evaluated by the sequencer after every earlier
/// record has been applied. It decides whether its entry is sequenced at all.
pub type Guard<S> = Box<dyn FnOnce(&S) -> Result<(), Rejected> + Send>;

/// A guard's refusal: the entry was not appended. The reason is a fixed, greppable string.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("rejected by guard: {0}")]
pub struct Rejected(pub &'static str);

/// What an append returns once its records are durable and applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The `seq` of the first record of this entry.
    pub first: Seq,
    /// The leaf hash of each record of the entry, in order.
    pub hashes: Vec<Hash>,
}

/// The newest record of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Number of records (the next `seq`).
    pub size: u64,
    /// Leaf hash of record `size - 1`, or zero for an empty log.
    pub hash: Hash,
    /// Merkle root of the whole log.
    pub root: Hash,
}

/// Why an append did not happen. Callers that answer a request map `Unavailable` to 503 and
/// forward nothing (the audit-first rule); `Rejected` is a normal business outcome.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error("the event store cannot append: {0}")]
    Unavailable(String),
    #[error("an append must carry at least one event")]
    Empty,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O: {0}")]
    Io(String),
    #[error("stored record seq {seq} is corrupt: {what}")]
    Corrupt { seq: Seq, what: String },
    /// The store is sound but not for this opening: a format this build does not read, keys
    /// or an origin that are not the log's, a state that does not match it.
    #[error("store cannot be opened as configured: {0}")]
    Incompatible(String),
}

/// An error of the embedded store's files (redb, the journal), as a [`StoreError::Io`].
#[cfg(feature = "redb-store")]
fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

/// When checkpoints are cut. A checkpoint is cut at the first batch boundary at or after every
/// `every` records, after `after` with new records, and as a heartbeat after `heartbeat` idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointPolicy {
    pub every: u64,
    pub after: Duration,
    pub heartbeat: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            every: 4096,
            after: Duration::from_secs(10),
            heartbeat: Duration::from_secs(300),
        }
    }
}

/// The contract of every store (embedded redb, PostgreSQL).
pub trait EventStore<S: Fold>: Send + Sync {
    /// Appends `events` as consecutive records.
    ///
    /// MUST NOT resolve `Ok` before the records are durable and applied to the state. MUST assign
    /// consecutive `seq`, a `time` no earlier than the previous record's, and `prev` = the leaf
    /// hash of the previous record. On `Err` nothing of this call is in the log or the state.
    fn append(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Appended, AppendError>> + Send;

    /// Appends `events` only if `guard` accepts the state at the moment of sequencing, after
    /// every earlier record (including earlier entries of the same batch) has been applied.
    /// A rejected guard rejects this entry alone.
    fn append_if(
        &self,
        events: Vec<Event>,
        guard: Guard<S>,
    ) -> impl Future<Output = Result<Appended, AppendError>> + Send;

    /// The durable records with `seq` in `range` (clamped to the head), decoded strictly.
    fn read(
        &self,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Vec<StoredRecord>, StoreError>> + Send;

    /// The newest durable state of the log.
    fn head(&self) -> Head;

    /// Checkpoints in the order they were cut, numbered from 0, `range` clamped.
    fn checkpoints(
        &self,
        range: Range<u64>,
    ) -> impl Future<Output = Result<Vec<SignedCheckpoint>, StoreError>> + Send;

    /// Runs `f` on the current state (which includes every resolved append).
    fn with_state<R>(&self, f: impl FnOnce(&S) -> R) -> R;

    /// Records as they are committed. A subscriber that falls behind is told the gap and
    /// re-reads it (see [`Subscription`]).
    fn subscribe(&self) -> Subscription;
}

/// A stream of committed records without gaps: on a lagging receiver it re-reads from the store.
pub struct Subscription {
    pub(crate) next: u64,
    pub(crate) rx: tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<StoredRecord>>>,
    pub(crate) buffered: std::collections::VecDeque<SharedRecord>,
}

/// A delivered record, shared with every other subscriber of its batch: a subscription hands
/// out references into the committed batch instead of copying each record for each watcher.
#[derive(Debug, Clone)]
pub struct SharedRecord {
    batch: std::sync::Arc<Vec<StoredRecord>>,
    index: usize,
}

impl std::ops::Deref for SharedRecord {
    type Target = StoredRecord;

    fn deref(&self) -> &StoredRecord {
        // `index` is always within `batch`: only `Subscription::next` builds one, from
        // `0..batch.len()`.
        &self.batch[self.index]
    }
}

/// What a subscription yields.
#[derive(Debug)]
pub enum Delivery {
    Record(SharedRecord),
    /// Records `[from, to)` were missed; the caller re-reads them with `read` and then continues.
    Gap {
        from: u64,
        to: u64,
    },
    Closed,
}

// === impl Subscription ===

impl Subscription {
    /// The next record in `seq` order, or the gap the caller must re-read first.
    pub async fn next(&mut self) -> Delivery {
        loop {
            if let Some(r) = self.buffered.pop_front() {
                if r.record.seq.0 < self.next {
                    continue;
                }
                if r.record.seq.0 > self.next {
                    let gap = Delivery::Gap {
                        from: self.next,
                        to: r.record.seq.0,
                    };
                    self.buffered.push_front(r);
                    return gap;
                }
                self.next += 1;
                return Delivery::Record(r);
            }
            match self.rx.recv().await {
                Ok(batch) => self
                    .buffered
                    .extend((0..batch.len()).map(|index| SharedRecord {
                        batch: batch.clone(),
                        index,
                    })),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Delivery::Closed,
            }
        }
    }

    /// Marks `[.., to)` as handled after the caller re-read a gap.
    pub fn resume_at(&mut self, to: u64) {
        self.next = self.next.max(to);
    }
}
