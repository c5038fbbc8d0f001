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
    /// How long handler answers are held back, in milliseconds (test-only switch).
    answer_delay_ms: AtomicU64,
    /// How long WebSocket handshake answers are held back, in milliseconds (test-only switch).
    handshake_delay_ms: AtomicU64,
    /// How long answer bodies wait after their head, in milliseconds (test-only switch).
    body_stall_ms: AtomicU64,
    /// Whether answers go out chunked, without a length (test-only switch).
    chunked_answers: AtomicBool,
    /// Whether a release created with an `env` fails, quoting it (test-only switch).
    quote_release_env: AtomicBool,
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
            answer_delay_ms: AtomicU64::new(0),
            handshake_delay_ms: AtomicU64::new(0),
            body_stall_ms: AtomicU64::new(0),
            chunked_answers: AtomicBool::new(false),
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

    /// How long handler answers are held back now.
    pub(crate) fn answer_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.answer_delay_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn set_answer_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.answer_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// How long WebSocket handshake answers are held back now.
    pub(crate) fn handshake_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.handshake_delay_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn set_handshake_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.handshake_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether answers go out chunked now.
    pub(crate) fn chunks_answers(&self) -> bool {
        self.chunked_answers.load(Ordering::Relaxed)
    }

    pub(crate) fn set_chunked_answers(&self, on: bool) {
        self.chunked_answers.store(on, Ordering::Relaxed);
    }

    /// How long answer bodies wait after their head now.
    pub(crate) fn body_stall(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.body_stall_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn set_body_stall(&self, stall: std::time::Duration) {
        let ms = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX);
        self.body_stall_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether a release created with an `env` fails now, quoting it.
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
