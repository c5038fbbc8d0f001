//! The request log tests read back: every request the rack received, with the parameters its
//! handler used and where each came from.
//!
//! Invariant: recording never changes an answer; the log's lock is held only to push or copy, and
//! bodies are shared `Bytes`, so recording a large upload copies nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

/// Where a parameter value came from, in the rack's lookup order (spec §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamSource {
    /// The `application/x-www-form-urlencoded` body of a POST, PUT or PATCH.
    Form,
    /// The query string.
    Query,
    /// A request header.
    Header,
}

/// One parameter a handler read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedParam {
    /// The name the handler asked for (`env`, `limit`, `Command`, …).
    pub name: String,
    /// The decoded value it got.
    pub value: String,
    /// Where the value came from.
    pub source: ParamSource,
}

/// One request as the rack received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Arrival order, starting at 0 for the first request after start.
    pub seq: u64,
    /// The request method (`GET`, `POST`, …).
    pub method: String,
    /// The request target exactly as on the request line, e.g. `/apps?` (the `?` kept).
    pub target: String,
    /// Every header, lower-cased names, values as raw bytes, in received order (repeated names
    /// are grouped where they first appeared).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The request body, byte for byte (empty for WebSocket upgrades).
    pub body: Bytes,
    /// The parameters the handler used, in the order it read them.
    pub params: Vec<UsedParam>,
    /// The actor the rack records for this call (spec §2.2): `Convox-Actor`, else
    /// `X-Convox-Actor`, else `rack-password`; `None` for a JWT login.
    pub actor: Option<String>,
    /// Whether this was a WebSocket upgrade request.
    pub websocket: bool,
    /// The status the rack answered (101 for an accepted upgrade).
    pub status: u16,
}

/// The shared request log.
#[derive(Debug)]
pub(crate) struct Recorder {
    on: AtomicBool,
    items: Mutex<Vec<Received>>,
}

// === impl Received ===

impl Received {
    /// The first value of a header, if present and UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The parameter the handler used under `name`, if any.
    pub fn param(&self, name: &str) -> Option<&UsedParam> {
        self.params.iter().find(|p| p.name == name)
    }
}

// === impl Recorder ===

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            on: AtomicBool::new(true),
            items: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub(crate) fn set_on(&self, on: bool) {
        self.on.store(on, Ordering::Relaxed);
    }

    pub(crate) fn push(&self, item: Received) {
        if self.is_on() {
            self.lock().push(item);
        }
    }

    /// A copy of the log in arrival order.
    pub(crate) fn snapshot(&self) -> Vec<Received> {
        let mut items = self.lock().clone();
        items.sort_by_key(|r| r.seq);
        items
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
        // A panic while pushing cannot leave the Vec inconsistent, so a poisoned lock is usable.
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
