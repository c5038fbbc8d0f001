//! The rack answers the gateway reads whole to rewrite them (masked env, restored env): bounded
//! each ([`MAX_MASKED_BODY`]) and, over all callers at once, by one budget of bytes held.
//!
//! Without the shared budget, callers who cannot read every env value could each make the
//! gateway hold a release list of many megabytes (read whole, then rewritten) for as long as
//! they take to read the answer, on every connection they hold.
//!
//! **Invariant:** every byte read is counted against the budget before it is kept, and stays
//! counted until the [`Held`] that carries it is dropped (when the rewritten answer has been
//! sent or abandoned). A read that cannot get room within [`WAIT`] fails; nothing waits forever.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::mask::MAX_MASKED_BODY;

/// The bytes of answers held at once, over all callers.
pub const DEFAULT_BUDGET: usize = 256 * 1024 * 1024;
/// How long a read waits for room before it fails.
pub const WAIT: Duration = Duration::from_secs(10);
/// The budget is counted in units of this many bytes.
const UNIT: usize = 1024;

/// Why an answer was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is over {MAX_MASKED_BODY} bytes")]
    TooLarge,
    #[error("the answer could not be read")]
    Unreadable,
    #[error("the gateway holds as many answers as it may; try again")]
    Busy,
}

/// The shared budget. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct Budget {
    room: Arc<Semaphore>,
    wait: Duration,
}

/// Room taken in the budget; given back when dropped.
#[derive(Debug)]
pub struct Held {
    permit: Option<OwnedSemaphorePermit>,
}

// === impl ReadError ===

impl ReadError {
    /// The error kind recorded and told to the caller.
    pub fn kind(self) -> &'static str {
        match self {
            ReadError::TooLarge => "answer_too_large",
            ReadError::Unreadable => "answer_unreadable",
            ReadError::Busy => "answers_budget_full",
        }
    }
}

// === impl Budget ===

impl Budget {
    /// A budget of `bytes`, whose reads wait at most `wait` for room.
    pub fn new(bytes: usize, wait: Duration) -> Budget {
        Budget {
            room: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))),
            wait,
        }
    }

    /// Reads `body` whole, counting each piece against the budget before keeping it.
    pub async fn read<B>(&self, body: B) -> Result<(Bytes, Held), ReadError>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        let mut body = body;
        let mut held = Held { permit: None };
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ReadError::Unreadable)?;
            let Ok(data) = frame.into_data() else {
                // Trailers carry no body bytes.
                continue;
            };
            if buf.len() + data.len() > MAX_MASKED_BODY {
                return Err(ReadError::TooLarge);
            }
            let before = buf.len().div_ceil(UNIT);
            let after = (buf.len() + data.len()).div_ceil(UNIT);
            self.take(&mut held, after - before).await?;
            buf.extend_from_slice(&data);
        }
        Ok((buf.freeze(), held))
    }

    /// Counts `bytes` more against the budget in `held` (a rewritten copy of an answer).
    pub async fn hold(&self, held: &mut Held, bytes: usize) -> Result<(), ReadError> {
        self.take(held, bytes.div_ceil(UNIT)).await
    }

    async fn take(&self, held: &mut Held, units: usize) -> Result<(), ReadError> {
        if units == 0 {
            return Ok(());
        }
        let units = u32::try_from(units).map_err(|_| ReadError::TooLarge)?;
        let permit = tokio::time::timeout(self.wait, self.room.clone().acquire_many_owned(units))
            .await
            .map_err(|_| ReadError::Busy)?
            .map_err(|_| ReadError::Busy)?;
        match &mut held.permit {
            Some(p) => p.merge(permit),
            None => held.permit = Some(permit),
        }
        Ok(())
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(DEFAULT_BUDGET, WAIT)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    fn body(len: usize) -> Full<Bytes> {
        Full::new(Bytes::from(vec![b'x'; len]))
    }

    /// Room is taken as an answer is read and given back when its holder is dropped; a read
    /// that finds no room within the wait fails instead of waiting on.
    #[tokio::test]
    async fn answers_held_at_once_stay_within_the_budget() {
        let budget = Budget::new(8 * UNIT, Duration::from_millis(50));
        let (first, mut held) = budget.read(body(5 * UNIT)).await.unwrap();
        assert_eq!(first.len(), 5 * UNIT);
        assert_eq!(
            budget.read(body(5 * UNIT)).await.err(),
            Some(ReadError::Busy),
            "5 of 8 units are held"
        );
        budget.hold(&mut held, 3 * UNIT).await.unwrap();
        assert_eq!(
            budget.read(body(1)).await.err(),
            Some(ReadError::Busy),
            "the rewritten copy counts too"
        );
        drop(held);
        let (again, _held) = budget.read(body(8 * UNIT)).await.unwrap();
        assert_eq!(again.len(), 8 * UNIT);
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused() {
        let budget = Budget::default();
        assert_eq!(
            budget.read(body(MAX_MASKED_BODY + 1)).await.err(),
            Some(ReadError::TooLarge)
        );
        let (whole, _held) = budget.read(body(MAX_MASKED_BODY)).await.unwrap();
        assert_eq!(whole.len(), MAX_MASKED_BODY);
    }
}
