//! `mock-rack`: a stateful fake Convox v3 rack over real HTTP/1.1 and WebSockets, faithful to
//! section 7 of the upstream protocol spec (`convox-api.md`), for the gateway's `dev` command and
//! end-to-end tests.
//!
//! It answers like the rack's own `stdapi`/gorilla stack — empty 404s for unknown routes, 401
//! `invalid authentication`, both before the request body is read and with Go's discard of it
//! and Go's close after it, WebSocket authentication after the upgrade, Go's parameter
//! precedence — and records every request with the parameters its handler used, so a test can
//! compare what a gateway forwarded with what the rack acted on.
//!
//! Invariant: everything the rack knows lives in memory behind one std mutex that is never held
//! across an await; responses are deterministic (no clock, no randomness), and the rack's quirks
//! are reproduced on purpose, each citing the spec section it comes from.
#![forbid(unsafe_code)]

mod auth;
mod clock;
mod error;
mod gzip;
mod handlers;
mod linger;
mod params;
mod record;
mod request;
mod respond;
mod routes;
mod server;
mod sessions;
mod shapes;
mod shared;
mod stall;
mod state;
mod upgrade;
pub mod ws;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;

pub use record::{ParamSource, Received, UsedParam};
pub use sessions::{AFTER_EOF_OUTPUT, EXIT_CODE_HEADER, EXIT_MARKER, FRAGMENT};
pub use state::{
    RACK_VERSION, SEED_APP, SEED_BUILD, SEED_ENV, SEED_PROCESS, SEED_RELEASE, SEED_SERVICE,
    StoredObject,
};

use crate::shared::Shared;

/// A running mock rack. Dropping it stops the server without waiting; `shutdown` waits.
pub struct MockRack {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: server::Stop,
}

// === impl MockRack ===

impl MockRack {
    /// Binds (port 0 allowed) and serves in the background on the current tokio runtime.
    /// An empty `password` accepts any credentials, as the rack does with an empty `PASSWORD`.
    pub async fn start(listen: SocketAddr, password: &str) -> std::io::Result<MockRack> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(password));
        let stop = server::spawn(listener, shared.clone());
        Ok(MockRack { addr, shared, stop })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (an unspecified bind address is reported as loopback).
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Every request the rack received, in arrival order: method, raw target, headers, body, the
    /// parameters its handler used, the `X-Convox-Actor` header and the status it got.
    pub fn received(&self) -> Vec<Received> {
        self.shared.recorder.snapshot()
    }

    /// Forgets the requests received so far.
    pub fn clear_received(&self) {
        self.shared.recorder.clear();
    }

    /// Turns request recording on or off (on at start); benchmarks turn it off so the log does
    /// not grow.
    pub fn set_recording(&self, on: bool) {
        self.shared.recorder.set_on(on);
    }

    /// Test-only: from now on (`true`) every answer of a route handler that has a body is sent
    /// with `Content-Encoding: gzip`, whatever the request's `Accept-Encoding` said, as from a
    /// misbehaving rack or a compressing proxy in front of it; `false` (the state at start)
    /// answers as the rack does. The router's empty 404/405 and WebSocket handshakes are not
    /// affected. The gzip is made of stored deflate blocks, so the answer's bytes stay readable
    /// in the raw body (see the `gzip` module).
    pub fn set_gzip_answers(&self, on: bool) {
        self.shared.set_gzip_answers(on);
    }

    /// Test-only: from now on every answer of a route handler is held back for `delay` after
    /// the request was handled and recorded, as from a slow rack; zero (the state at start)
    /// answers at once. WebSocket handshakes and the router's empty 404/405 are not affected.
    pub fn set_answer_delay(&self, delay: std::time::Duration) {
        self.shared.answer_delay.set(delay);
    }

    /// Test-only: from now on every WebSocket handshake is answered `delay` after it was
    /// recorded (its session starts once the caller has the answer), as from a slow rack; zero
    /// (the state at start) answers at once.
    pub fn set_handshake_delay(&self, delay: std::time::Duration) {
        self.shared.handshake_delay.set(delay);
    }

    /// Test-only: from now on every answer's body goes out chunked in small pieces, without a
    /// `Content-Length`, as Go's server sends an answer larger than its write buffer (a release
    /// list with env, an object); off (the state at start) sends each with its length.
    pub fn set_chunked_answers(&self, on: bool) {
        self.shared.set_chunked_answers(on);
    }

    /// Test-only: from now on an exec socket's output (what it echoes) goes out as gorilla's
    /// message writer sends a message longer than its buffer: a text frame that does not end
    /// it, continuation frames, and an empty continuation frame that does; off (the state at
    /// start) sends each message as one frame.
    pub fn set_fragmented_output(&self, on: bool) {
        self.shared.set_fragmented_output(on);
    }

    /// Test-only: from now on every answer's head goes out at once and its body only after
    /// `stall`, as from a rack that answered and then stalled; zero (the state at start) sends
    /// both together.
    pub fn set_body_stall(&self, stall: std::time::Duration) {
        self.shared.body_stall.set(stall);
    }

    /// Test-only: from now on (`true`) `POST /apps/{app}/releases` fails with a 500 whose text
    /// quotes the env the release would have had (the posted `env`, else the newest release's),
    /// as a rack whose provider rejects a value and says which (Kubernetes' validation errors
    /// quote it: `Invalid value: "…"`); nothing is created. `POST …/releases/{id}/promote`
    /// fails with a 500 quoting the release's last env value as YAML does a scalar it cannot
    /// decode (a manifest the env was filled into), its first 7 bytes and `...` when longer
    /// than 10; nothing is promoted. `POST …/processes` with a `Release` fails the same way
    /// for that release, and nothing runs.
    /// `false` (the state at start) creates and promotes.
    pub fn set_quoting_release_errors(&self, on: bool) {
        self.shared.set_quote_release_env(on);
    }

    /// Test-only: sets `app`'s status, as a rack does while it applies a promote or a parameter
    /// change (`updating`), which refuses another promote without `force`; `false` when there
    /// is no such app.
    pub fn set_app_status(&self, app: &str, status: &str) -> bool {
        self.shared.state().app_status_set(app, status).is_ok()
    }

    /// The object stored under `app` and `key` by `POST /apps/{app}/objects/{key}`.
    pub fn object(&self, app: &str, key: &str) -> Option<StoredObject> {
        self.shared.state().object_fetch(app, key).ok()
    }

    /// Stops accepting, ends open sockets, drains in-flight requests and waits for all of it.
    pub async fn shutdown(self) {
        self.stop.signal();
        self.stop.wait().await;
    }
}

impl Drop for MockRack {
    fn drop(&mut self) {
        self.stop.signal();
    }
}

impl std::fmt::Debug for MockRack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockRack")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
