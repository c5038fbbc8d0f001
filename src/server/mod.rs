//! Listeners: the accept loop every router is served by, with the limits and the graceful
//! shutdown they share, and the two programs that use it (`dev` and `serve`).
//!
//! **Invariant:** every connection gets a header-read timeout and a bounded header block, so a
//! client that never finishes its headers or sends an oversized block is cut off without
//! reaching a handler; shutdown stops accepting, lets in-flight requests finish (bounded), and
//! only then lets the store finish its appends.

pub mod dev;
pub mod serve;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long in-flight requests may take to finish once shutdown starts.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop` turns true, then drains connections.
pub fn spawn(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut builder = Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        let builder = Arc::new(builder);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    // Out of file descriptors and the like: keep serving what is open.
                    Err(_) => continue,
                },
                _ = stop.changed() => break,
            };
            let _ = stream.set_nodelay(true);
            let service = router
                .clone()
                .map_request(move |mut req: http::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    req
                })
                .map_err(|e: Infallible| e);
            let (builder, watcher) = (builder.clone(), graceful.watcher());
            tokio::spawn(async move {
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                );
                let _ = watcher.watch(conn.into_owned()).await;
            });
        }
        let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    })
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub async fn stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
