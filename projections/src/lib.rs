//! Pure folds from records to state: identities and roles, API tokens, and what the log says
//! about itself (origin, checkpoint keys, snapshots). The gateway answers every question about
//! "who may do what" from here, and nowhere else.
//!
//! **Invariant:** no I/O and no clock. State changes only in [`Projections::apply`], time comes
//! from `Record::time`, and a rebuild from seq 0 equals the live state. Snapshots convert the
//! state into their own serializable type (`snapshot`), so projection types stay private to
//! this crate's API and can change freely.
#![forbid(unsafe_code)]

pub mod identities;
pub mod log_info;
pub mod snapshot;
pub mod tokens;

use events::event::Event;
use events::fold::{Fold, FoldError};
use events::hash::Hash;
use events::record::StoredRecord;
use events::seq::Seq;

pub use identities::Identities;
pub use log_info::LogInfo;
pub use tokens::Tokens;

/// Every core projection, folded together in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Projections {
    position: Seq,
    last_hash: Hash,
    pub log: LogInfo,
    pub identities: Identities,
    pub tokens: Tokens,
}

// === impl Projections ===

impl Projections {
    /// The leaf hash of the last applied record (`hash::ZERO` before any).
    pub fn last_hash(&self) -> Hash {
        self.last_hash
    }

    /// Number of records applied.
    pub fn len(&self) -> u64 {
        self.position.0
    }

    pub fn is_empty(&self) -> bool {
        self.position.0 == 0
    }
}

impl Fold for Projections {
    /// Applies one record. Refuses a record out of order, or one whose `prev` is not the hash of
    /// the last applied record: a state restored from a snapshot that does not belong to this
    /// log fails at the first record replayed on top of it.
    fn apply(&mut self, stored: &StoredRecord) -> Result<(), FoldError> {
        let record = &stored.record;
        if record.seq != self.position {
            return Err(FoldError::OutOfOrder {
                expected: self.position,
                found: record.seq,
            });
        }
        if record.prev != self.last_hash {
            return Err(FoldError::Invalid {
                seq: record.seq,
                what: format!(
                    "prev {} is not the hash of the last applied record {}",
                    record.prev, self.last_hash
                ),
            });
        }
        let e = &record.event;
        // Kept for the one record after an API create's call, and only for it.
        let creating_call = self.tokens.creating_call.take();
        match e {
            Event::LogCreated { .. }
            | Event::CheckpointKeyAdded { .. }
            | Event::SnapshotRecorded { .. }
            | Event::ConfigApplied { .. } => self.log.apply(record),
            Event::RoleGranted { .. }
            | Event::RoleRevoked { .. }
            | Event::UserDisabled { .. }
            | Event::UserEnabled { .. } => self.identities.apply(e),
            Event::TokenCreated { .. } | Event::TokenRevoked { .. } => {
                self.tokens.apply(record, creating_call);
            }
            Event::CommandRequested(c) => {
                self.tokens.note_use(c, record.time);
                self.tokens.note_create_call(c);
            }
            Event::CommandCompleted(_)
            | Event::StreamOpened { .. }
            | Event::StreamClosed { .. }
            | Event::DenialsCounted { .. } => {}
        }
        self.position = self.position.next();
        self.last_hash = stored.hash;
        Ok(())
    }

    fn position(&self) -> Seq {
        self.position
    }
}

#[cfg(test)]
mod tests;
