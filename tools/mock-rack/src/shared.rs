//! What every connection shares: the configured password, the rack state, the request log, the
//! counters behind `Request-Id` and arrival order, and the test-only compression, delay and
//! quoting switches.
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
    /// How long handler answers are held back (test-only switch).
    pub answer_delay: Wait,
    /// How long WebSocket handshake answers are held back (test-only switch).
    pub handshake_delay: Wait,
    /// How long answer bodies wait after their head (test-only switch).
    pub body_stall: Wait,
    /// Whether answers go out chunked, without a length (test-only switch).
    chunked_answers: AtomicBool,
    /// Whether exec output goes out in fragments, as gorilla writes it (test-only switch).
    fragmented_output: AtomicBool,
    /// Whether creating or promoting a release fails, quoting its env (test-only switch).
    quote_release_env: AtomicBool,
    state: Mutex<State>,
    request_ids: AtomicU64,
    arrivals: AtomicU64,
}

/// A test-only wait, switched at run time: zero (the state at start) waits not at all.
#[derive(Debug, Default)]
pub(crate) struct Wait(AtomicU64);

// === impl Wait ===

impl Wait {
    /// The wait now.
    pub(crate) fn get(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.load(Ordering::Relaxed))
    }

    /// Sleeps for the wait now, if there is one.
    pub(crate) async fn pass(&self) {
        let wait = self.get();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits `wait` from now on, in whole milliseconds.
    pub(crate) fn set(&self, wait: std::time::Duration) {
        self.0.store(
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

// === impl Shared ===

impl Shared {
    pub(crate) fn new(password: &str) -> Shared {
        Shared {
            password: password.to_owned(),
            recorder: Recorder::new(),
            gzip_answers: AtomicBool::new(false),
            answer_delay: Wait::default(),
            handshake_delay: Wait::default(),
            body_stall: Wait::default(),
            chunked_answers: AtomicBool::new(false),
            fragmented_output: AtomicBool::new(false),
            quote_release_env: AtomicBool::new(false),
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

    /// Whether answers go out chunked now.
    pub(crate) fn chunks_answers(&self) -> bool {
        self.chunked_answers.load(Ordering::Relaxed)
    }

    pub(crate) fn set_chunked_answers(&self, on: bool) {
        self.chunked_answers.store(on, Ordering::Relaxed);
    }

    /// Whether exec output goes out in fragments now.
    pub(crate) fn fragments_output(&self) -> bool {
        self.fragmented_output.load(Ordering::Relaxed)
    }

    pub(crate) fn set_fragmented_output(&self, on: bool) {
        self.fragmented_output.store(on, Ordering::Relaxed);
    }

    /// Whether creating or promoting a release fails now, quoting its env.
    pub(crate) fn quotes_release_env(&self) -> bool {
        self.quote_release_env.load(Ordering::Relaxed)
    }

    pub(crate) fn set_quote_release_env(&self, on: bool) {
        self.quote_release_env.store(on, Ordering::Relaxed);
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
