//! The audit-first step: a permitted call becomes forwardable only once its `CommandRequested`
//! is durable.
//!
//! **Invariant:** [`Recorded`] has no public constructor; [`record`] is the only way to make one,
//! and it returns one only after the store acknowledged the append (durable and applied).
//! The forwarder accepts nothing else, so an unrecorded call cannot reach the rack.

use events::event::Event;
use events::seq::Seq;
use events::store::redb::FollowUp;
use events::store::{AppendError, Guard};
use projections::Projections;

use crate::store::Store;

/// A call whose intent is durable in the log.
#[derive(Debug)]
pub struct Recorded<T> {
    call: T,
    seq: Seq,
}

// === impl Recorded ===

impl<T> Recorded<T> {
    pub fn call(&self) -> &T {
        &self.call
    }

    /// The `seq` of the `CommandRequested` that allowed this call.
    pub fn seq(&self) -> Seq {
        self.seq
    }

    pub fn into_call(self) -> T {
        self.call
    }
}

/// Appends `intent` (a `CommandRequested` with decision allow) and, once it is durable, hands
/// back the call it allows. With `still_allowed`, only if that guard holds when the intent is
/// sequenced: the guard sees every record before it, so a revocation or demotion appended
/// while the gateway looked something up for the call stops the call here.
///
/// The guard is for calls that waited on something after they were checked (a rack lookup):
/// the sequencer writes what it staged before evaluating a guard, so every guarded intent
/// costs a journal write of its own, where unguarded ones share one per batch.
///
/// The caller's future may be dropped while it waits (hyper drops a handler whose client hung
/// up; a stop aborts what outlasts its drain), yet the intent, once handed to the store, is
/// written all the same: `if_abandoned` makes the record of that call's end (nothing was
/// forwarded), which the store appends after the intent when nobody was left to hear it.
///
/// # Errors
/// `Rejected` when the guard refused (nothing appended); otherwise the store's error: the
/// caller answers 503 and forwards nothing.
pub async fn record<T>(
    store: &Store,
    intent: Event,
    still_allowed: Option<Guard<Projections>>,
    call: T,
    if_abandoned: FollowUp,
) -> Result<Recorded<T>, AppendError> {
    let appended = store
        .append_heard(vec![intent], still_allowed, if_abandoned)
        .await?;
    Ok(Recorded {
        call,
        seq: appended.first,
    })
}
