//! The audit-first step: a permitted call becomes forwardable only once its `CommandRequested`
//! is durable.
//!
//! **Invariant:** [`Recorded`] has no public constructor; [`record`] is the only way to make one,
//! and it returns one only after the store acknowledged the append (durable and applied).
//! The forwarder accepts nothing else, so an unrecorded call cannot reach the rack.

use events::event::Event;
use events::seq::Seq;
use events::store::{AppendError, EventStore, Guard};
use projections::Projections;

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

/// Appends `intent` (a `CommandRequested` with decision allow) if `still_allowed` holds when it
/// is sequenced, and, once it is durable, hands back the call it allows. The guard sees every
/// record before it: a revocation or demotion appended while the call was checked, or while
/// the gateway looked something up for it, stops the call here.
///
/// # Errors
/// `Rejected` when the guard refused (nothing appended); otherwise the store's error: the
/// caller answers 503 and forwards nothing.
pub async fn record<T>(
    store: &impl EventStore<Projections>,
    intent: Event,
    still_allowed: Guard<Projections>,
    call: T,
) -> Result<Recorded<T>, AppendError> {
    let appended = store.append_if(vec![intent], still_allowed).await?;
    Ok(Recorded {
        call,
        seq: appended.first,
    })
}
