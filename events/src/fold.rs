//! The fold contract: how state is derived from the log.
//!
//! Projections (and any other derived state, such as the test folds of the store conformance
//! suite) implement [`Fold`]. The store's sequencer applies every committed record to one fold,
//! and a rebuild from seq 0 applies the same records to a fresh one: both must agree.

use crate::record::StoredRecord;
use crate::seq::Seq;

/// State the sequencer keeps current: the projections, or any pure fold over records.
///
/// `apply` MUST be a pure function of the state and the record (no clock, no I/O), and MUST
/// refuse a record whose `seq` is not `position()`, so a reader that lags can never skip one.
pub trait Fold: Send + Sync + 'static {
    /// Folds one record in. An `Err` means the record was not applied and the state is unchanged.
    /// The record comes with its stored bytes' leaf hash, computed once by whoever read them, so
    /// a fold that checks the chain never re-encodes or re-hashes.
    fn apply(&mut self, record: &StoredRecord) -> Result<(), FoldError>;
    /// The `seq` this state expects next: 0 for a fresh state.
    fn position(&self) -> Seq;
}

/// Why a fold refused a record.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FoldError {
    #[error("record seq {found} applied where seq {expected} was expected")]
    OutOfOrder { expected: Seq, found: Seq },
    #[error("record seq {seq}: {what}")]
    Invalid { seq: Seq, what: String },
}
