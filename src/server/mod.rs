//! Listeners: the accept loop every router is served by, with the limits and the graceful
//! shutdown they share, and the two programs that use it (`dev` and `serve`).
//!
//! **Invariant:** every connection gets a header-read timeout and a bounded header block, so a
//! client that never finishes its headers or sends an oversized block is cut off without
//! reaching a handler; shutdown stops accepting, lets in-flight requests finish (bounded), and
//! only then lets the store finish its appends.

pub mod dev;
pub mod keepalive;
pub mod serve;
pub mod tls;
pub mod upgraded;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long in-flight requests may take to finish once shutdown starts.
pub const DRAIN: Duration = Duration::from_secs(10);
/// How many connections one network (see [`crate::proxy::flood::network`]) may hold open on a
/// listener: enough for many CLIs behind one NAT, too few for one client to take every file
/// descriptor the gateway has. Trusted proxies, which carry everyone, are not counted.
pub const MAX_CONNECTIONS_PER_NETWORK: u32 = 256;
/// The most connections one listener holds open, whatever the file-descriptor limit allows:
/// each may hold 64 KiB of unfinished head, so many networks together (an IPv6 /48 is 65,536
/// of them) cannot take the gateway's memory either.
pub const MAX_CONNECTIONS: u32 = 16 * 1024;

/// How many connections one listener may hold open: [`MAX_CONNECTIONS`], or less when the
/// process may not open that many files. A connection can need a second descriptor (its rack
/// connection), a WebSocket stream on the rack proxy a third (the watch on its caller's socket,
/// [`crate::proxy::ws::Hangup`]), and there are two listeners: a fifth of the descriptors left
/// after a reserve (the store's files, the rack's pool when idle, the process itself) is each
/// listener's count of connections.
///
/// The first call raises the soft descriptor limit to the hard one, as servers do: a systemd
/// service starts at 1024, which four networks of 256 connections would use up, after which
/// accepts and the rack's connections fail for everyone.
pub fn connection_cap() -> u32 {
    static CAP: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        const RESERVE: u64 = 512;
        let limit = getrlimit(Resource::Nofile);
        let soft = match (limit.current, limit.maximum) {
            (Some(current), Some(maximum)) if current < maximum => {
                let raised = Rlimit {
                    current: Some(maximum),
                    maximum: Some(maximum),
                };
                if setrlimit(Resource::Nofile, raised).is_ok() {
                    maximum
                } else {
                    current
                }
            }
            // No hard limit (macOS's default): a finite soft one as high as the system takes.
            (Some(current), None) => [65_536, 10_240]
                .into_iter()
                .filter(|want| *want > current)
                .find(|want| {
                    let raised = Rlimit {
                        current: Some(*want),
                        maximum: None,
                    };
                    setrlimit(Resource::Nofile, raised).is_ok()
                })
                .unwrap_or(current),
            (Some(current), _) => current,
            // Unlimited.
            (None, _) => u64::MAX,
        };
        let share = soft.saturating_sub(RESERVE) / 5;
        u32::try_from(share)
            .unwrap_or(u32::MAX)
            .clamp(16, MAX_CONNECTIONS)
    })
}

/// How many connections one network may hold on a listener that holds `cap`: at most
/// [`MAX_CONNECTIONS_PER_NETWORK`], and never more than a quarter of the listener, so that on
/// a host with few file descriptors one address still cannot take every place.
pub fn per_network_share(cap: u32) -> u32 {
    MAX_CONNECTIONS_PER_NETWORK.min(cap / 4).max(1)
}

/// How many connections one IPv6 site ([`crate::proxy::flood::site`]) may hold on a listener
/// that holds `cap`: [`NETWORKS_PER_SITE`](crate::proxy::flood::NETWORKS_PER_SITE) networks'
/// shares, so one customer's /48 cannot take every place by spreading over its /64s, but never
/// more than a quarter of the listener either (nor less than one network's share), so that on
/// a host with few file descriptors one site cannot take every place.
pub fn per_site_share(cap: u32) -> u32 {
    let network = per_network_share(cap);
    network
        .saturating_mul(crate::proxy::flood::NETWORKS_PER_SITE)
        .min(cap / 4)
        .max(network)
}

/// Why a listener refused a connection or a request head before any service saw it. hyper
/// answers heads itself (408 unsent, 431, 400), and the accept loop closes a connection over
/// its network's share at once, so no handler runs: without this report a flood of them would
/// leave no trace in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Part of a head, then nothing until the header timer ran out.
    Timeout,
    /// A head over [`MAX_HEAD_BYTES`], or with more header lines than hyper takes: a 431.
    TooLarge,
    /// Bytes that are not an HTTP/1.1 request head: a 400.
    Malformed,
    /// A connection over its network's share of the listener, or the listener's: closed
    /// before a byte is read.
    ConnectionLimit,
    /// A connection over its network's budget of new connections a minute
    /// ([`crate::proxy::flood::Flood::admit_connection`]): closed before a byte is read.
    ConnectionRate,
    /// A connection in clear from a peer that is neither loopback nor a trusted proxy: a 403.
    InClear,
    /// Bytes that are not a TLS handshake this listener takes (plain HTTP sent to a TLS port,
    /// no version or cipher in common): closed with TLS's alert. A client that closes, sends
    /// an alert (a certificate it does not trust) or goes silent before the handshake ends is
    /// not reported: a port check does that.
    TlsHandshake,
}

impl Refusal {
    /// What ended the connection, if it was a refused head.
    fn of(error: &hyper::Error) -> Option<Refusal> {
        if error.is_timeout() {
            Some(Refusal::Timeout)
        } else if error.is_parse_too_large() {
            Some(Refusal::TooLarge)
        } else if error.is_parse() {
            Some(Refusal::Malformed)
        } else {
            None
        }
    }

    /// The reason it is counted under, as an unauthenticated refusal (`DenialsCounted`).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Timeout => "header_timeout",
            // As the proxy's own check names a head hyper took whole but that is over the bound.
            Refusal::TooLarge => "oversized_header_block",
            Refusal::Malformed => "malformed_request_head",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::ConnectionRate => "connection_rate_limited",
            Refusal::InClear => "plain_http_refused",
            Refusal::TlsHandshake => "tls_handshake_refused",
        }
    }
}

/// What a listener does with a refused connection or request head: the peer's address and
/// why, to be counted as an unauthenticated refusal, so a connection, slow-headers or garbage
/// flood shows in the log by its size. A silent connection, or a keep-alive one idle after its answer, is not reported: both
/// are ordinary.
pub type OnRefused = Arc<dyn Fn(IpAddr, Refusal) + Send + Sync>;

/// Whether a listener takes a new connection from a peer's address (its network's budget of
/// connections a minute): `false` closes it at once, reported as [`Refusal::ConnectionRate`].
/// Trusted proxies, which carry everyone, are not asked.
pub type Admit = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Serves `router` on `listener` until `stop` turns true, then drains connections.
pub fn spawn(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_with_tls(listener, router, limits, None, Arc::from([]), stop)
}

/// A listener's limits on what a connection may take before it has sent a whole request head.
pub struct Limits {
    /// How long a request head may take to arrive (and a TLS handshake to finish).
    pub header_timeout: Duration,
    pub on_refused: Option<OnRefused>,
    pub admit: Option<Admit>,
}

/// As [`spawn`], terminating TLS with `tls` when given; a failed TLS handshake (bounded by the
/// header timeout) drops that connection only, and is reported when rustls refused the
/// client's bytes ([`Refusal::TlsHandshake`]). Without TLS only loopback peers and the
/// `trusted` proxies are served (see `serve_with_tls`).
pub fn spawn_with_tls(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    trusted: Arc<[IpAddr]>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    // No router here relays a WebSocket, so none reads the connection's `Upgrading` mark.
    let service_for = move |peer: SocketAddr, _: Upgrading| {
        let service = router
            .clone()
            .map_request(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            })
            .map_err(|e: Infallible| e);
        TowerToHyperService::new(service)
    };
    serve_with_tls(listener, service_for, limits, tls, trusted, stop)
}

/// Serves the rack proxy on `listener` as [`spawn_with_tls`] serves a router: each connection
/// gets the proxy's own hyper service for its peer ([`crate::proxy::service`]).
pub fn spawn_proxy(
    listener: TcpListener,
    state: Arc<crate::proxy::ProxyState>,
    header_timeout: Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let trusted = Arc::from(state.trusted_proxies());
    let limits = state.listener_limits(header_timeout);
    let service_for = move |peer, upgrading| crate::proxy::service(state.clone(), peer, upgrading);
    serve_with_tls(listener, service_for, limits, tls, trusted, stop)
}

/// The accept loop: serves each connection with the service `service_for` gives for its peer.
/// Routers go through [`spawn_with_tls`]; the rack proxy, whose every request takes one path,
/// goes through [`spawn_proxy`] with a hyper service of its own and skips a router's
/// per-request work.
///
/// Connections are served by hyper's HTTP/1 server directly: its header-read timer runs from
/// the first poll, so a client that connects and sends nothing is cut off like one that stops
/// mid-header (a protocol-sniffing server would wait for its first byte with no timer). hyper
/// closes such a connection without an answer, as Go's server and nginx do; one that had sent
/// part of a head since its last answer is also reported to `on_refused`, as is a head
/// hyper refused as too large or malformed. A silent connection, or a keep-alive one idle
/// after its answer, is not: both are ordinary.
///
/// Plain HTTP (no `tls`) is served only to loopback peers and the `trusted` proxies: a listener
/// on a public address behind a proxy must not take credentials in clear from anyone who
/// reaches it directly. Any other peer gets a 403 saying so, and the connection is closed.
fn serve_with_tls<F, S>(
    listener: TcpListener,
    service_for: F,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    trusted: Arc<[IpAddr]>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(SocketAddr, Upgrading) -> S + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: 'static + Send,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let Limits {
        header_timeout,
        on_refused,
        admit,
    } = limits;
    tokio::spawn(async move {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        let builder = Arc::new(builder);
        let mut connections = tokio::task::JoinSet::new();
        let open = Arc::new(OpenConnections::default());
        let cap = connection_cap();
        loop {
            while connections.try_join_next().is_some() {}
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    // Out of file descriptors and the like: keep serving what is open, and
                    // give it a moment rather than spinning on the failing accept.
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => break,
            };
            let trusted_peer = crate::proxy::headers::is_trusted(peer.ip(), &trusted);
            let refused = |why| {
                if let Some(report) = &on_refused {
                    report(peer.ip(), why);
                }
            };
            // Over its network's budget of new connections: closed at once, before a byte is
            // read or a handshake begun.
            if !trusted_peer && admit.as_ref().is_some_and(|admit| !admit(peer.ip())) {
                refused(Refusal::ConnectionRate);
                continue;
            }
            // Over its network's share, or the listener's: closed at once, before any byte is
            // read. Trusted proxies, which carry everyone, have no share of their own, but count
            // toward the listener's.
            let shares = (!trusted_peer).then(|| Shares {
                network: per_network_share(cap),
                site: per_site_share(cap),
            });
            let Some(held) = open.take(peer.ip(), shares, cap) else {
                refused(Refusal::ConnectionLimit);
                continue;
            };
            // The place goes with the stream: an upgraded connection (a WebSocket) keeps it
            // until its relay drops the stream, after hyper has finished with the connection.
            let upgrading = Upgrading::default();
            let stream = Counted::new(stream, held, &upgrading);
            if acceptor.is_none() && !served_in_clear(peer.ip(), trusted_peer) {
                refused(Refusal::InClear);
                connections.spawn(refuse_plain(stream));
                continue;
            }
            let _ = stream.io.set_nodelay(true);
            let _ = keepalive::keep_alive(&stream.io);
            let service = service_for(peer, upgrading);
            let (builder, acceptor, stop) = (builder.clone(), acceptor.clone(), stop.clone());
            let on_refused = on_refused.clone();
            let unanswered = Unanswered::default();
            connections.spawn(async move {
                let refused = match acceptor {
                    None => serve_one(&builder, marked(stream, &unanswered), service, stop).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                serve_one(&builder, marked(tls, &unanswered), service, stop).await
                            }
                            Ok(Err(e)) if refused_handshake(&e) => Some(Refusal::TlsHandshake),
                            Ok(Err(_)) | Err(_) => return,
                        }
                    }
                };
                // A timer that ran out between requests is an idle keep-alive connection,
                // not a slow head.
                let refused = refused.filter(|r| *r != Refusal::Timeout || unanswered.is_set());
                if let (Some(refused), Some(report)) = (refused, on_refused) {
                    report(peer.ip(), refused);
                }
            });
        }
        // Stop accepting, at once: a connection the kernel completed into the backlog during
        // the drain would send its request and be reset unanswered. Then let in-flight
        // requests finish, within the drain bound.
        drop(listener);
        let _ = tokio::time::timeout(DRAIN, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        connections.abort_all();
        // Aborting only asks: each connection's future is dropped when a worker next polls it,
        // and its drop is what records a call cut short (`Pending`, the answer's meter). Wait
        // for every drop, so the store is not shut before those completions are enqueued.
        while connections.join_next().await.is_some() {}
    })
}

/// Whether a failed TLS accept refused what the client sent (bytes that are no TLS, or a
/// handshake with nothing in common), rather than the client giving up (an alert it sent, such
/// as a certificate it does not trust, or `close_notify` mid-handshake) or the gateway's own
/// failure: tokio-rustls reports every one of them as `InvalidData`.
fn refused_handshake(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| {
            matches!(
                tls,
                rustls::Error::InvalidMessage(_)
                    | rustls::Error::InappropriateMessage { .. }
                    | rustls::Error::InappropriateHandshakeMessage { .. }
                    | rustls::Error::PeerIncompatible(_)
                    | rustls::Error::PeerMisbehaved(_)
                    | rustls::Error::DecryptError
                    | rustls::Error::NoApplicationProtocol
            )
        })
}

/// The connections open on one listener: in all, and by network.
#[derive(Debug, Default)]
struct OpenConnections {
    counts: std::sync::Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_network: std::collections::HashMap<IpAddr, u32>,
    by_site: std::collections::HashMap<IpAddr, u32>,
}

/// How many places one network, and one IPv6 site, may hold.
#[derive(Debug, Clone, Copy)]
struct Shares {
    network: u32,
    site: u32,
}

/// One counted connection; dropping it (the connection's task ends) gives its place back.
struct Held {
    open: Arc<OpenConnections>,
    /// The network it counts for, unless it has no share (a trusted proxy).
    network: Option<IpAddr>,
    /// The IPv6 site it counts for too.
    site: Option<IpAddr>,
}

impl OpenConnections {
    /// A place for a connection from `peer`, unless the listener holds `cap` already, or
    /// `peer`'s network or IPv6 site holds its share (or the counts cannot be read: refused
    /// rather than guessed). A trusted proxy has no `shares`.
    fn take(self: &Arc<Self>, peer: IpAddr, shares: Option<Shares>, cap: u32) -> Option<Held> {
        use crate::proxy::flood::{network, site};
        let mut counts = self.counts.lock().ok()?;
        if counts.total >= cap {
            return None;
        }
        let (network, site) = match shares {
            Some(shares) => {
                let network = network(peer);
                let site = site(peer);
                let held = |map: &std::collections::HashMap<IpAddr, u32>, key| {
                    map.get(&key).copied().unwrap_or(0)
                };
                if held(&counts.by_network, network) >= shares.network
                    || site.is_some_and(|s| held(&counts.by_site, s) >= shares.site)
                {
                    return None;
                }
                *counts.by_network.entry(network).or_insert(0) += 1;
                if let Some(s) = site {
                    *counts.by_site.entry(s).or_insert(0) += 1;
                }
                (Some(network), site)
            }
            None => (None, None),
        };
        counts.total += 1;
        Some(Held {
            open: self.clone(),
            network,
            site,
        })
    }
}

/// Gives back one place of `key` in `map`, forgetting a key with none left.
fn give_back(map: &mut std::collections::HashMap<IpAddr, u32>, key: Option<IpAddr>) {
    if let Some(key) = key
        && let Some(n) = map.get_mut(&key)
    {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.open.counts.lock() {
            counts.total = counts.total.saturating_sub(1);
            give_back(&mut counts.by_network, self.network);
            give_back(&mut counts.by_site, self.site);
        }
    }
}

/// A connection's stream and its place on the listener ([`Held`]), given back when the
/// stream is dropped. While it serves HTTP, a write the client does not read for
/// [`crate::stall::LIMIT`] fails: otherwise a client that stops reading holds its connection,
/// the answer's buffers and the call's completion for ever, with no header timer running
/// (hyper starts that only after an answer is sent). Once a WebSocket relay owns it
/// ([`Upgrading::relayed`]) the relay keeps its own time, and a `convox logs` piped into a
/// paused pager is not cut off.
struct Counted<I> {
    io: I,
    _held: Held,
    writes: crate::stall::Stall,
    upgrading: Upgrading,
}

impl<I> Counted<I> {
    fn new(io: I, held: Held, upgrading: &Upgrading) -> Counted<I> {
        Counted {
            io,
            _held: held,
            writes: crate::stall::Stall::default(),
            upgrading: upgrading.clone(),
        }
    }

    /// `written`, bounded by the stall limit unless a relay owns the connection.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if self.upgrading.is_relayed() {
            return written;
        }
        self.writes.bound(cx, written, client_gone)
    }
}

/// A connection's mark, in each of its requests' extensions, that a WebSocket relay now owns
/// it; see [`Counted`].
#[derive(Clone, Debug, Default)]
pub struct Upgrading(Arc<AtomicBool>);

impl Upgrading {
    /// The connection is a relayed stream from now on.
    pub fn relayed(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_relayed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A connection's mark that the client sent bytes after the last ones the gateway wrote: at a
/// header timeout, that it stopped partway through a request head rather than sat idle.
#[derive(Clone, Debug, Default)]
struct Unanswered(Arc<AtomicBool>);

impl Unanswered {
    fn set(&self, unanswered: bool) {
        self.0.store(unanswered, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

/// The HTTP bytes of a connection (inside TLS, when it is served over TLS), marking in
/// [`Unanswered`] whether the client sent any since the gateway last wrote: a TLS handshake's
/// own messages, or records rustls holds decrypted, would mislead a mark on the socket.
struct Marked<I> {
    io: I,
    unanswered: Unanswered,
}

impl<I: AsyncRead + Unpin> AsyncRead for Marked<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.unanswered.set(true);
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Marked<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.answered(&written);
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.answered(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// `io` for hyper, marked (see [`Marked`]).
fn marked<I>(io: I, unanswered: &Unanswered) -> TokioIo<Marked<I>> {
    TokioIo::new(Marked {
        io,
        unanswered: unanswered.clone(),
    })
}

impl<I> Marked<I> {
    /// Bytes went to the client: what it sent before is answered.
    fn answered(&self, written: &Poll<std::io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = written
            && *n > 0
        {
            self.unanswered.set(false);
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.bounded(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.bounded(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn client_gone<T>() -> std::io::Result<T> {
    Err(crate::stall::timed_out("the client read nothing"))
}

/// Whether a plain-HTTP listener serves `peer`: a loopback address or a trusted proxy.
fn served_in_clear(peer: IpAddr, trusted_peer: bool) -> bool {
    trusted_peer || peer.to_canonical().is_loopback()
}

/// What a peer that is neither loopback nor a trusted proxy gets from a plain-HTTP listener.
async fn refuse_plain(mut stream: Counted<tokio::net::TcpStream>) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = "this gateway serves plain HTTP only to loopback and its trusted proxies; \
                        connect through the proxy, or configure TLS\n";
    let answer = format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves one connection until it ends or shutdown asks it to finish its current request;
/// says why when it ended on a refused head.
async fn serve_one<I, S>(
    builder: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    mut stop: watch::Receiver<bool>,
) -> Option<Refusal>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming> + Send,
    S::Future: Send + 'static,
    S::ResBody: 'static + Send,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        ended = conn.as_mut() => ended.err().as_ref().and_then(Refusal::of),
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
            None
        }
    }
}

/// A future that resolves when the process is asked to stop (Ctrl-C, SIGTERM, or SIGHUP: the
/// terminal that ran `dev` closed, or a reload the gateway does not do); the handlers are
/// installed by this call, so call it before announcing that the gateway is up. Each of those
/// signals' default action would end the process with completions, denial summaries and the
/// stop's snapshot unwritten.
///
/// Once it has resolved, a second Ctrl-C or SIGTERM ends the process at once (exit status 130
/// or 143, as the signal's default would): a graceful stop held up (calls that do not finish
/// within the drain, a disk that stalls the store's last writes) then needs no SIGKILL. What
/// was acknowledged is durable in the journal whenever the process ends.
pub fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        // Registered now, not when first polled: a signal that arrives after the caller has
        // printed its addresses must stop the gateway gracefully, never by the default action.
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
                _ = hangup.recv() => {},
            }
            tokio::spawn(async move {
                let status = tokio::select! {
                    _ = interrupt.recv() => 130,
                    _ = terminate.recv() => 143,
                };
                eprintln!(
                    "rack-gateway: a second stop signal: ending now, without waiting for the \
                     graceful stop (acknowledged records are in the journal)"
                );
                std::process::exit(status);
            });
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Prints one line for the operator; a closed or full stdout never stops the gateway.
pub fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mark a header timeout is judged by: set by what the client sends, cleared by what
    /// the gateway writes, on the HTTP bytes.
    #[tokio::test]
    async fn the_mark_follows_the_bytes_read_and_written() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(256);
        let unanswered = Unanswered::default();
        let mut marked = Marked {
            io: server,
            unanswered: unanswered.clone(),
        };
        assert!(!unanswered.is_set(), "nothing read yet");
        client.write_all(b"GET /apps? HTTP/1.1\r\n").await.unwrap();
        let mut head = [0u8; 64];
        assert!(marked.read(&mut head).await.unwrap() > 0);
        assert!(unanswered.is_set(), "part of a head, unanswered");
        marked
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await
            .unwrap();
        assert!(!unanswered.is_set(), "answered");
        drop(client);
        assert_eq!(marked.read(&mut head).await.unwrap(), 0);
        assert!(!unanswered.is_set(), "an end of stream is no byte sent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_the_client_does_not_read_fails_after_the_stall_limit() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let open = Arc::new(OpenConnections::default());
        let place = || open.take("127.0.0.1".parse().unwrap(), None, 10).unwrap();
        let answer = vec![7u8; 8192];

        // A client that reads a little now and then keeps its connection, however long the
        // answer takes.
        let (mut client, server) = tokio::io::duplex(1024);
        let mut stream = Counted::new(server, place(), &Upgrading::default());
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 8192];
            let mut at = 0;
            while at < got.len() {
                tokio::time::sleep(crate::stall::LIMIT / 2).await;
                at += client
                    .read(&mut got[at..(at + 512).min(8192)])
                    .await
                    .unwrap();
            }
            got
        });
        let started = tokio::time::Instant::now();
        stream.write_all(&answer).await.unwrap();
        assert!(
            started.elapsed() > crate::stall::LIMIT * 4,
            "the reads were spread out"
        );
        drop(stream);
        assert_eq!(reader.await.unwrap(), answer);

        // One that stops reading loses it once a write has waited the whole limit.
        let (client, server) = tokio::io::duplex(1024);
        let mut stream = Counted::new(server, place(), &Upgrading::default());
        let started = tokio::time::Instant::now();
        let e = tokio::time::timeout(crate::stall::LIMIT * 10, stream.write_all(&answer))
            .await
            .expect("the write gave up")
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= crate::stall::LIMIT);
        drop(client);

        // Once a relay owns the connection, the relay's own timers are the bound.
        let (client, server) = tokio::io::duplex(1024);
        let upgrading = Upgrading::default();
        let mut stream = Counted::new(server, place(), &upgrading);
        upgrading.relayed();
        let waited =
            tokio::time::timeout(crate::stall::LIMIT * 10, stream.write_all(&answer)).await;
        assert!(
            waited.is_err(),
            "a relayed stream's write was cut: {waited:?}"
        );
        drop(client);
    }

    #[test]
    fn a_networks_share_is_at_most_a_quarter_of_the_listener() {
        assert_eq!(
            per_network_share(MAX_CONNECTIONS),
            MAX_CONNECTIONS_PER_NETWORK
        );
        // `LimitNOFILE=1024`: (1024 - 512) / 5 places per listener.
        assert_eq!(per_network_share(102), 25);
        assert_eq!(per_network_share(128), 32);
        assert_eq!(per_network_share(16), 4);
        assert_eq!(per_network_share(0), 1);
        // A site: four networks' shares, and never more than a quarter of the listener.
        assert_eq!(
            per_site_share(MAX_CONNECTIONS),
            4 * MAX_CONNECTIONS_PER_NETWORK
        );
        assert_eq!(per_site_share(4096), MAX_CONNECTIONS_PER_NETWORK * 4);
        assert_eq!(per_site_share(896), 224);
        assert_eq!(per_site_share(128), 32);
        assert_eq!(per_site_share(0), 1);
    }

    /// The shares the tests hold connections to: three a network, twelve a site.
    const SHARES: Shares = Shares {
        network: 3,
        site: 12,
    };

    #[test]
    fn one_network_holds_at_most_its_share_of_connections() {
        let open = Arc::new(OpenConnections::default());
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        let held: Vec<Held> = (0..3)
            .map(|_| open.take(a, Some(SHARES), 10).unwrap())
            .collect();
        assert!(
            open.take(same_64, Some(SHARES), 10).is_none(),
            "the /64 is full"
        );
        assert!(
            open.take("192.0.2.1".parse().unwrap(), Some(SHARES), 10)
                .is_some()
        );
        drop(held);
        let again = open.take(same_64, Some(SHARES), 10);
        assert!(again.is_some(), "places come back when connections end");
        drop(again);
        let counts = open.counts.lock().unwrap();
        assert!(
            counts.by_network.is_empty() && counts.total == 0,
            "a network with no connection is forgotten"
        );
    }

    /// The /64s of one IPv6 /48 hold the site's share together; another /48 and IPv4
    /// addresses are not held by it; the site's places come back as its connections end.
    #[test]
    fn one_ipv6_site_holds_a_few_networks_shares() {
        let open = Arc::new(OpenConnections::default());
        let in_site = |n: u16| IpAddr::from([0x2001, 0xdb8, 1, n, 0, 0, 0, 1]);
        let held: Vec<Held> = (0..100u16)
            .flat_map(|n| std::iter::repeat_n(n, 3))
            .filter_map(|n| open.take(in_site(n), Some(SHARES), 1000))
            .collect();
        assert_eq!(held.len(), SHARES.site as usize);
        assert!(
            open.take(in_site(999), Some(SHARES), 1000).is_none(),
            "the site is full"
        );
        let other = open.take("2001:db8:2::1".parse().unwrap(), Some(SHARES), 1000);
        assert!(other.is_some(), "another /48");
        let v4: Vec<Held> = (0..10u8)
            .filter_map(|i| open.take(IpAddr::from([192, 0, 2, i]), Some(SHARES), 1000))
            .collect();
        assert_eq!(v4.len(), 10, "IPv4 addresses have no site");
        drop((held, other, v4));
        assert!(open.take(in_site(999), Some(SHARES), 1000).is_some());
        let counts = open.counts.lock().unwrap();
        assert!(
            counts.by_site.is_empty() && counts.by_network.is_empty() && counts.total == 0,
            "{counts:?}"
        );
    }

    #[test]
    fn a_listener_holds_at_most_its_cap_whatever_the_networks() {
        let open = Arc::new(OpenConnections::default());
        let held: Vec<Held> = (0..4u8)
            .map(|i| {
                let ip = IpAddr::from([192, 0, 2, i]);
                open.take(ip, Some(SHARES), 4).unwrap()
            })
            .collect();
        assert!(
            open.take("192.0.2.9".parse().unwrap(), Some(SHARES), 4)
                .is_none()
        );
        // A trusted proxy has no share of its own, but the cap holds for it too.
        assert!(open.take("10.0.0.5".parse().unwrap(), None, 4).is_none());
        drop(held);
        let proxy: Vec<Held> = (0..4)
            .map(|_| open.take("10.0.0.5".parse().unwrap(), None, 4).unwrap())
            .collect();
        assert_eq!(proxy.len(), 4, "a proxy is not held to one network's share");
        assert!(connection_cap() >= 16 && connection_cap() <= MAX_CONNECTIONS);
    }

    /// hyper finishes with a connection when it upgrades; the WebSocket relay then owns the
    /// stream, and the connection's place must stay taken until the relay drops it.
    #[tokio::test]
    async fn an_upgraded_connection_keeps_its_place_until_its_stream_is_dropped() {
        use http_body_util::Empty;
        use hyper::body::Bytes;
        let open = Arc::new(OpenConnections::default());
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let held = open.take(peer, Some(SHARES), 10).unwrap();
        let (client_io, server_io) = tokio::io::duplex(4096);
        let server_io = Counted::new(server_io, held, &Upgrading::default());
        let (upgraded_tx, upgraded_rx) = tokio::sync::oneshot::channel();
        let upgraded_tx = Arc::new(std::sync::Mutex::new(Some(upgraded_tx)));
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            let tx = upgraded_tx.clone();
            async move {
                let on_upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let (Ok(upgraded), Some(tx)) = (on_upgrade.await, tx.lock().unwrap().take())
                    {
                        let _ = tx.send(upgraded);
                    }
                });
                let mut answer = http::Response::new(Empty::<Bytes>::new());
                *answer.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                answer
                    .headers_mut()
                    .insert(http::header::UPGRADE, "websocket".parse().unwrap());
                answer
                    .headers_mut()
                    .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
                Ok::<_, Infallible>(answer)
            }
        });
        let server = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server_io), service)
                .with_upgrades(),
        );
        let (mut sender, client) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
            .await
            .unwrap();
        let client = tokio::spawn(client.with_upgrades());
        let mut req = http::Request::new(Empty::<Bytes>::new());
        req.headers_mut()
            .insert(http::header::UPGRADE, "websocket".parse().unwrap());
        req.headers_mut()
            .insert(http::header::CONNECTION, "upgrade".parse().unwrap());
        let answer = sender.send_request(req).await.unwrap();
        assert_eq!(answer.status(), 101);
        let upgraded = upgraded_rx.await.unwrap();
        // hyper is done with the connection; the stream lives on in `upgraded`.
        server.await.unwrap().unwrap();
        let count = || open.counts.lock().unwrap().total;
        assert_eq!(count(), 1, "the upgraded stream still holds its place");
        drop(upgraded);
        assert_eq!(count(), 0, "dropping the stream gives the place back");
        drop(client);
    }

    #[test]
    fn plain_http_serves_only_loopback_and_trusted_proxies() {
        let trusted: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap()];
        for (peer, served) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("10.0.0.5", true),
            ("::ffff:10.0.0.5", true),
            ("10.0.0.6", false),
            ("203.0.113.9", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(
                {
                    let peer: IpAddr = peer.parse().unwrap();
                    served_in_clear(peer, crate::proxy::headers::is_trusted(peer, &trusted))
                },
                served,
                "{peer}"
            );
        }
    }
}
