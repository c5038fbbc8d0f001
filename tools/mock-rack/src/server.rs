//! The listener: accepts TCP connections, serves each with hyper's HTTP/1.1 server (upgrades
//! enabled) over a [`Lingering`] socket, and stops everything on one signal.
//!
//! An answer marked [`BodyLimitHit`] (a request refused with more of its body unread than Go
//! discards) arms its connection's [`Linger`]: hyper then shuts the connection down the Go way,
//! FIN first and the close only after the client had time to read the answer (see `linger`).
//!
//! Invariant: every task the server starts (accept loop, connections, sockets) holds a clone of
//! the stop receiver and drops it when it ends, so `Stop::wait` returning means the server is
//! idle; after the signal no new connection is accepted and open ones are drained or dropped.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::linger::{BodyLimitHit, Linger, Lingering};
use crate::request;
use crate::shared::Shared;
use crate::stall::Stalled;

/// How long a connection may take to finish its in-flight request after the stop signal.
const DRAIN: Duration = Duration::from_secs(5);

/// Stops a running server.
#[derive(Debug)]
pub(crate) struct Stop {
    tx: watch::Sender<bool>,
}

// === impl Stop ===

impl Stop {
    /// Tells every task to finish; idempotent.
    pub(crate) fn signal(&self) {
        self.tx.send_replace(true);
    }

    /// Waits until every task has ended (bounded by the drain time plus a margin).
    pub(crate) async fn wait(&self) {
        let _ = tokio::time::timeout(DRAIN * 2, self.tx.closed()).await;
    }
}

/// Resolves once the stop signal is given (or its sender is gone), holding no borrow of the
/// channel afterwards, so it can sit in a `select!` next to other work.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Starts serving `listener` on the current runtime.
pub(crate) fn spawn(listener: TcpListener, shared: Arc<Shared>) -> Stop {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(accept_loop(listener, shared, rx));
    Stop { tx }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, rx: watch::Receiver<bool>) {
    let mut stop = rx.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, shared.clone(), rx.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, rx: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let mut stop = rx.clone();
    let linger = Linger::default();
    let io = Lingering::new(stream, linger.clone());
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let rx = rx.clone();
        let linger = linger.clone();
        async move {
            let stall = shared.body_stall.get();
            let chunked = shared.chunks_answers();
            let mut response = request::handle(shared, req, rx).await;
            if response.extensions().get::<BodyLimitHit>().is_some() {
                // Before hyper writes the answer, so the shutdown after it lingers.
                linger.arm();
            }
            if chunked {
                response.headers_mut().remove(http::header::CONTENT_LENGTH);
            }
            Ok::<_, Infallible>(response.map(|body| Stalled::new(body, stall, chunked)))
        }
    });
    let conn = http1::Builder::new()
        // The rack's `ReadHeaderTimeout` (spec §1.1); hyper needs a timer to enforce it.
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // Go writes canonical header names (`Content-Type`); so does this mock.
        .title_case_headers(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
        }
    }
}
