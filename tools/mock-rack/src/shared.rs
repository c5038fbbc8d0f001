//! What every connection shares: the configured password, the rack state, the request log, the
//! counters behind `Request-Id` and arrival order, and the test-only compression switch.
//!
//! Invariant: the state mutex is a std mutex taken only inside synchronous code and released
//! before any await or response write; a poisoned lock is recovered, because every state method
//! leaves the state consistent before it can panic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::record::Recorder;
use crate::state::State;

/// Shared by every connection of one `MockRack`.
pub(crate) struct Shared {
    pub password: String,
    pub recorder: Recorder,
    /// Whether handler answers are gzip-encoded whatever the request asked (test-only switch).
    gzip_answers: AtomicBool,
    state: Mutex<State>,
    request_ids: AtomicU64,
    arrivals: AtomicU64,
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(password: &str) -> Shared {
        Shared {
            password: password.to_owned(),
            recorder: Recorder::new(),
            gzip_answers: AtomicBool::new(false),
            state: Mutex::new(State::seeded(password)),
            request_ids: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
        }
    }

    /// The rack state, for one synchronous operation.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether handler answers are gzip-encoded now.
    pub(crate) fn gzips_answers(&self) -> bool {
        self.gzip_answers.load(Ordering::Relaxed)
    }

    pub(crate) fn set_gzip_answers(&self, on: bool) {
        self.gzip_answers.store(on, Ordering::Relaxed);
    }

    /// The next `Request-Id`: 12 hex digits, like stdapi's `generateId(12)`.
    pub(crate) fn next_request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{n:012x}")
    }

    /// The arrival number of the next request.
    pub(crate) fn next_arrival(&self) -> u64 {
        self.arrivals.fetch_add(1, Ordering::Relaxed)
    }
}
