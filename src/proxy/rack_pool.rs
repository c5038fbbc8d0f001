//! Kept-alive HTTP/1.1 connections to the rack, each driven by the call that uses it.
//!
//! A general client (hyper-util's pooled one) runs every connection as a task of its own: the
//! call hands its request to that task and gets the answer's head and each piece of its body
//! back through channels, every hand-off a wake-up of another task, and the connection goes
//! back to a keyed pool through one more task spawned per call. The gateway talks to one rack,
//! one call at a time per connection, so here the call itself drives its connection: the
//! future that waits for the answer, then the answer's body, poll the connection in the task
//! that serves the caller, and the connection goes back to a plain stack of idle ones when the
//! body has been read to its end.
//!
//! **Invariants:** a connection is reused only after its last answer was read to the end and
//! hyper reports it idle, its last call's body sent too (an answer dropped part-way, or one
//! that ended while its call's upload went on, closes it: HTTP/1.1 has no other way to
//! abandon either); a request
//! is retried on another connection when hyper hands it back unsent (an idle connection the
//! rack closed), and after it was written only when it is a `GET` or `HEAD` without a body,
//! marked as one the rack itself answers ([`RackReads`]), whose reused connection ended before
//! a whole answer head came (the rack closed it as the call went out), once, on a new
//! connection: a safe call read twice changes nothing, any other
//! may have been carried out (and a resent call that fails still counts as one the rack may
//! have read); a connection idle for longer than [`IDLE_TIMEOUT`] is closed, not used.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use super::rack_tls::{RackConnector, RackStream};
use super::upstream::UpstreamBody;

/// How long an idle connection is kept for the next call.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept at most; more are closed as their calls end.
pub const MAX_IDLE: usize = 64;
/// How often idle connections are looked at: closed once the rack has closed its side, or
/// they idled out, instead of held half-closed until a call takes them.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Where the rack is and the connections to it that wait for a call.
pub struct RackPool {
    connector: RackConnector,
    host: String,
    port: u16,
    idle: Mutex<Vec<Idle>>,
    /// Whether the task that sweeps `idle` ([`SWEEP_EVERY`]) was started (by the first call).
    sweeping: AtomicBool,
}

struct Idle {
    conn: Driven,
    since: Instant,
}

type Connection = http1::Connection<TokioIo<RackStream>, UpstreamBody>;

/// One connection: the half that sends requests and the state machine that does its I/O,
/// polled by whoever holds the pair.
struct Driven {
    sender: http1::SendRequest<UpstreamBody>,
    /// `None` once the connection's future has completed (closed or failed): dropped then, so
    /// that a request queued on it and not yet taken comes back unsent instead of waiting on
    /// a dispatcher nobody polls.
    conn: Option<Pin<Box<Connection>>>,
}

/// Why a call got no answer from the rack.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, TLS refused, timed out): the rack
    /// never received the call.
    #[error("connecting to the rack: {0}")]
    Connect(#[source] std::io::Error),
    /// A new connection failed before any byte of the call was written: the rack never
    /// received it.
    #[error("the rack's connection closed before the call was sent: {0}")]
    Unsent(#[source] hyper::Error),
    /// The connection failed after the call was handed to it: the rack may have read it.
    #[error("exchanging the call with the rack: {0}")]
    Http(#[source] hyper::Error),
}

impl SendError {
    /// Whether the rack certainly never received the call.
    pub fn never_sent(&self) -> bool {
        matches!(self, SendError::Connect(_) | SendError::Unsent(_))
    }

    /// Whether the rack could not be sent the call because the caller's body failed (the
    /// caller went away mid-upload, or stalled): hyper reports a body's error as the user's,
    /// with the body's own error (an `io::Error` here) as its cause; its other user errors
    /// carry none.
    pub fn caller_body_failed(&self) -> bool {
        match self {
            SendError::Connect(_) | SendError::Unsent(_) => false,
            SendError::Http(e) => {
                e.is_user()
                    && std::error::Error::source(e).is_some_and(|c| c.is::<std::io::Error>())
            }
        }
    }
}

// === impl RackPool ===

impl RackPool {
    pub fn new(connector: RackConnector, host: String, port: u16) -> RackPool {
        RackPool {
            connector,
            host,
            port,
            idle: Mutex::new(Vec::new()),
            sweeping: AtomicBool::new(false),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection, or a new one, and
    /// returns the answer whose body drives that connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<RackBody>, SendError> {
        // Read first: a swap on every call would write the line both cores' calls read.
        if !self.sweeping.load(Ordering::Relaxed) && !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep_while_used(Arc::downgrade(self)));
        }
        // After a written call failed, its copy goes out once more, on a new connection; if
        // that fails too, the call fails as the first attempt did: the rack may have read it.
        let mut resent: Option<hyper::Error> = None;
        let failed = |e: SendError, resent: &mut Option<hyper::Error>| match resent.take() {
            Some(first) => SendError::Http(first),
            None => e,
        };
        loop {
            let checked_out = if resent.is_some() {
                None
            } else {
                self.checkout().await
            };
            let (mut conn, reused) = match checked_out {
                Some(conn) => (conn, true),
                None => match self.connect().await {
                    Ok(conn) => (conn, false),
                    Err(e) => return Err(failed(e, &mut resent)),
                },
            };
            let replay = if reused { replay_of(&req) } else { None };
            let answer = conn.sender.try_send_request(req);
            let mut answer = std::pin::pin!(answer);
            let answered = poll_fn(|cx| {
                if let Poll::Ready(r) = answer.as_mut().poll(cx) {
                    return Poll::Ready(r);
                }
                conn.drive(cx);
                answer.as_mut().poll(cx)
            })
            .await;
            match answered {
                Ok(response) => {
                    let pool = Arc::clone(self);
                    return Ok(response.map(|incoming| RackBody {
                        incoming,
                        conn: Some(conn),
                        pool,
                    }));
                }
                Err(mut e) => match (e.take_message(), replay) {
                    // Handed back unwritten by a connection the rack had closed while idle.
                    (Some(unsent), _) if reused => req = unsent,
                    (Some(_), _) => {
                        return Err(failed(SendError::Unsent(e.into_error()), &mut resent));
                    }
                    (None, Some(copy)) if closed_before_answer(e.error()) => {
                        req = copy;
                        resent = Some(e.into_error());
                    }
                    (None, _) => {
                        return Err(failed(SendError::Http(e.into_error()), &mut resent));
                    }
                },
            }
        }
    }

    /// The most recently used idle connection that is still open and ready for a request.
    async fn checkout(&self) -> Option<Driven> {
        loop {
            let mut conn = self.pop_idle()?;
            if poll_fn(|cx| conn.poll_ready(cx)).await {
                return Some(conn);
            }
        }
    }

    /// Closes the idle connections the rack has closed, and those that idled out.
    fn sweep(&self) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        // Looked at, not waited on: the call that takes a connection polls it again with its
        // own waker.
        let mut cx = Context::from_waker(Waker::noop());
        idle.retain_mut(|entry| {
            entry.since.elapsed() < IDLE_TIMEOUT
                && !matches!(entry.conn.poll_ready(&mut cx), Poll::Ready(false))
        });
    }

    fn pop_idle(&self) -> Option<Driven> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.conn);
            }
        }
        None
    }

    /// A new connection to the rack (plain or TLS as configured): for a call, or a WebSocket.
    pub async fn open(&self) -> std::io::Result<RackStream> {
        self.connector.connect(&self.host, self.port).await
    }

    async fn connect(&self) -> Result<Driven, SendError> {
        let io = self.open().await.map_err(SendError::Connect)?;
        let (sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Connect(std::io::Error::other(e)))?;
        Ok(Driven {
            sender,
            conn: Some(Box::pin(conn)),
        })
    }

    /// Keeps `conn` for the next call if it is idle now: one whose answer ended while the rack
    /// is still being sent the call's body (a refusal answered before the upload was read) is
    /// closed, not left for the next caller to wait behind, nor to drive a finished call's
    /// upload.
    fn put(&self, conn: Driven) {
        if conn.conn.is_none() || !conn.sender.is_ready() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        // The oldest sit at the bottom of the stack, where a quiet spell after a busy one
        // leaves them unused: closed once they have idled out, not kept half-closed by a rack
        // that dropped them.
        let expired = idle
            .iter()
            .take_while(|entry| entry.since.elapsed() >= IDLE_TIMEOUT)
            .count();
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }
}

/// A request's mark that the rack itself answers it: its `GET` and `HEAD` read and change
/// nothing, so one may be asked again ([`RackPool::send`]). A request without it (one the
/// rack passes on to another server: an app, whose handlers may change something on any
/// method, or the registry) is sent once.
#[derive(Clone, Copy, Debug)]
pub struct RackReads;

/// A copy of `req` to send again should its reused connection end before answering: only of
/// a `GET` or `HEAD` without a body (safe to read twice, nothing to stream again) that the
/// rack itself answers ([`RackReads`]).
fn replay_of(req: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    let safe = matches!(*req.method(), http::Method::GET | http::Method::HEAD)
        && req.extensions().get::<RackReads>().is_some();
    if !safe || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(UpstreamBody::default());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// Whether a written call's connection ended before a whole answer head came: closed by the
/// rack, or reset. hyper reports an end inside a head as the same incomplete message, so a
/// safe call whose answer was cut short in its head is asked again too; a whole head the rack
/// did send, however malformed, is not a reason to ask again.
fn closed_before_answer(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() {
        return true;
    }
    let io = std::error::Error::source(e).and_then(|c| c.downcast_ref::<std::io::Error>());
    io.is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        )
    })
}

/// Sweeps the pool's idle connections every [`SWEEP_EVERY`] for as long as the pool exists.
async fn sweep_while_used(pool: Weak<RackPool>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.sweep();
    }
}

// === impl Driven ===

impl Driven {
    /// Lets the connection read and write what it can; wakes the caller's task when it can do
    /// more.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut()
            && conn.as_mut().poll(cx).is_ready()
        {
            self.conn = None;
        }
    }

    /// `true` once the connection can take a request, `false` if it closed or failed.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        self.drive(cx);
        if self.conn.is_none() {
            return Poll::Ready(false);
        }
        match self.sender.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(true),
            Poll::Ready(Err(_)) => Poll::Ready(false),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The body of the rack's answer; reading it drives the connection it comes on, which goes
/// back to the pool once the body has ended.
pub struct RackBody {
    incoming: Incoming,
    conn: Option<Driven>,
    pool: Arc<RackPool>,
}

impl RackBody {
    fn check_in(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put(conn);
        }
    }
}

impl http_body::Body for RackBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let mut polled = Pin::new(&mut this.incoming).poll_frame(cx);
        if polled.is_pending()
            && let Some(conn) = this.conn.as_mut()
        {
            // The body asked for more (the connection reads only what is wanted); let the
            // connection read it, then look again.
            conn.drive(cx);
            polled = Pin::new(&mut this.incoming).poll_frame(cx);
        }
        match &polled {
            Poll::Ready(None) => this.check_in(),
            // A connection that failed mid-answer is not reused.
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

impl Drop for RackBody {
    fn drop(&mut self) {
        // Read to its end (or empty from the start): the connection is reusable. Dropped
        // part-way, the connection closes with it.
        if self.incoming.is_end_stream() {
            self.check_in();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::{Rack, Secret};
    use crate::proxy::upstream::Upstream;
    use http::Uri;

    /// What the test rack does after answering a call on a connection.
    #[derive(Clone, Copy)]
    enum After {
        KeepOpen,
        Close,
        /// On the first connection only: the call answered 403 before its body was read, then
        /// the rest read and nothing more answered (the others keep open).
        RefuseFirst,
        /// On the first connection only: the next call read, then the connection closed
        /// without an answer (as a rack closing an idle connection just as a call arrives).
        HangUpOnSecond,
    }

    /// A rack on loopback that answers every call with `body` and counts the connections it
    /// accepted.
    async fn rack(body: &'static [u8], after: After) -> (Upstream, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                let refuse = first && matches!(after, After::RefuseFirst);
                let hang_up = first && matches!(after, After::HangUpOnSecond);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    for call in 0.. {
                        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => seen.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.clear();
                        if hang_up && call == 1 {
                            return;
                        }
                        let status = if refuse { "403 Forbidden" } else { "200 OK" };
                        let head = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        if socket.write_all(head.as_bytes()).await.is_err()
                            || socket.write_all(body).await.is_err()
                        {
                            return;
                        }
                        match after {
                            After::Close => return,
                            After::RefuseFirst if refuse => {
                                while let Ok(n) = socket.read(&mut buf).await {
                                    if n == 0 {
                                        return;
                                    }
                                }
                                return;
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
        let upstream = upstream_at(port);
        (upstream, accepted)
    }

    /// A plain rack on this machine's `port`.
    fn rack_at(port: u16) -> Rack {
        Rack {
            url: format!("http://127.0.0.1:{port}"),
            password: Secret::new("pw".into()),
            ca_file: None,
            ca_sha256: None,
            pin_sha256: None,
            insecure_skip_verify: false,
        }
    }

    fn upstream_at(port: u16) -> Upstream {
        Upstream::new(&rack_at(port)).unwrap()
    }

    /// The pool alone, whose calls carry their own `Host` (see [`bare_get`]).
    fn pool_at(port: u16) -> Arc<RackPool> {
        let connector = crate::proxy::rack_tls::RackConnector::new(&rack_at(port), false).unwrap();
        Arc::new(RackPool::new(connector, "127.0.0.1".into(), port))
    }

    /// `GET /apps` with no `Host`, which [`Upstream::send`] adds, marked as the rack's own.
    fn get_on(uri: Uri) -> Request<UpstreamBody> {
        let mut req = Request::new(
            Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *req.uri_mut() = uri;
        req.extensions_mut().insert(RackReads);
        req
    }

    fn get(upstream: &Upstream) -> Request<UpstreamBody> {
        get_on(upstream.uri("/apps").unwrap())
    }

    /// `GET /apps` as [`RackPool::send`] takes it: with a `Host`.
    fn bare_get() -> Request<UpstreamBody> {
        let mut req = get_on(Uri::from_static("/apps"));
        req.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("rack"));
        req
    }

    async fn call(upstream: &Upstream) -> Result<Bytes, SendError> {
        let answer = upstream.send(get(upstream)).await?;
        Ok(answer.into_body().collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn calls_read_to_their_end_share_one_connection() {
        let (upstream, accepted) = rack(b"ok", After::KeepOpen).await;
        for _ in 0..3 {
            assert_eq!(call(&upstream).await.unwrap(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    /// The rack closed the idle connection: the next call goes out on a new one, unharmed.
    #[tokio::test]
    async fn a_connection_the_rack_closed_is_replaced() {
        let (upstream, accepted) = rack(b"ok", After::Close).await;
        for _ in 0..3 {
            assert_eq!(call(&upstream).await.unwrap(), "ok");
            // Let the close reach the gateway's side before the next call.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// The rack closes a kept connection as a `GET` arrives on it, unanswered: the `GET` is
    /// asked again on a new connection, and its caller gets the answer.
    #[tokio::test]
    async fn a_get_the_rack_hung_up_on_is_asked_again() {
        let (upstream, accepted) = rack(b"ok", After::HangUpOnSecond).await;
        assert_eq!(call(&upstream).await.unwrap(), "ok");
        assert_eq!(call(&upstream).await.unwrap(), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// A `GET` the rack passes on to an app (`/custom/http/proxy/…`, unmarked), whose handler
    /// may change something: not sent again, and it fails as a call the app may have received.
    #[tokio::test]
    async fn a_get_for_an_app_the_rack_hung_up_on_is_not_sent_again() {
        let (upstream, accepted) = rack(b"ok", After::HangUpOnSecond).await;
        assert_eq!(call(&upstream).await.unwrap(), "ok");
        let mut for_app = get(&upstream);
        for_app.extensions_mut().remove::<RackReads>();
        let Err(failed) = upstream.send(for_app).await else {
            panic!("a GET for an app the rack hung up on was answered");
        };
        assert!(!failed.never_sent(), "{failed}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    /// The same for a `POST`: the rack may have carried it out, so it is not sent again and
    /// fails as a call the rack may have received.
    #[tokio::test]
    async fn a_post_the_rack_hung_up_on_is_not_sent_again() {
        let (upstream, accepted) = rack(b"ok", After::HangUpOnSecond).await;
        assert_eq!(call(&upstream).await.unwrap(), "ok");
        let mut post = get(&upstream);
        *post.method_mut() = http::Method::POST;
        let Err(failed) = upstream.send(post).await else {
            panic!("a POST the rack hung up on was answered");
        };
        assert!(!failed.never_sent(), "{failed}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    /// A `GET` asked again after the rack hung up on it, where no new connection can be made:
    /// it fails as a call the rack may have read (the first copy reached it), not as one it
    /// never got.
    #[tokio::test]
    async fn a_get_asked_again_in_vain_may_have_reached_the_rack() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            // No other connection is taken.
            drop(listener);
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
            // The next call is read, then the connection closed unanswered.
            let _ = socket.read(&mut buf).await;
        });
        let upstream = upstream_at(port);
        assert_eq!(call(&upstream).await.unwrap(), "ok");
        let failed = call(&upstream).await.unwrap_err();
        assert!(!failed.never_sent(), "{failed}");
    }

    /// An answer dropped before its end leaves its connection unusable: it is not reused.
    #[tokio::test]
    async fn an_answer_dropped_part_way_closes_its_connection() {
        static BIG: [u8; 1 << 20] = [b'x'; 1 << 20];
        let (upstream, accepted) = rack(&BIG, After::KeepOpen).await;
        let answer = upstream.send(get(&upstream)).await.unwrap();
        let mut body = answer.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| d.len() < BIG.len()));
        drop(body);
        assert_eq!(call(&upstream).await.unwrap().len(), BIG.len());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // Read to its end, the second connection is the one the third call uses.
        assert_eq!(call(&upstream).await.unwrap().len(), BIG.len());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// An upload the caller is still streaming.
    struct Streaming(tokio::sync::mpsc::Receiver<Bytes>);

    impl http_body::Body for Streaming {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|piece| piece.map(|b| Ok(http_body::Frame::data(b))))
        }
    }

    /// The rack refuses an upload before reading it (as it does a call it cannot route): the
    /// answer ends while the call's body is still being sent. That connection is not idle and
    /// is not reused: the next caller does not wait behind the first one's upload.
    #[tokio::test]
    async fn a_connection_still_sending_an_upload_is_not_reused() {
        let (upstream, accepted) = rack(b"ok", After::RefuseFirst).await;
        let (upload, body) = tokio::sync::mpsc::channel(1);
        upload
            .send(Bytes::from_static(b"first piece"))
            .await
            .unwrap();
        let mut req = Request::new(Streaming(body).boxed_unsync());
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = upstream.uri("/apps").unwrap();
        let refused = upstream.send(req).await.unwrap();
        assert_eq!(refused.status(), 403);
        refused.into_body().collect().await.unwrap();
        // The upload is still open: the next call goes out on a connection of its own.
        let next = tokio::time::timeout(Duration::from_secs(5), call(&upstream))
            .await
            .expect("the next call waited behind an unfinished upload");
        assert_eq!(next.unwrap(), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        drop(upload);
    }

    /// The rack closes a connection taken for a call just before the call is handed to it: the
    /// call comes back unsent (to go out on another connection), not left waiting on a
    /// connection that has ended.
    #[tokio::test]
    async fn a_call_on_a_connection_that_ended_comes_back_unsent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    // Closed a moment after its one answer.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                });
            }
        });
        let pool = pool_at(port);
        let answer = pool.send(bare_get()).await.unwrap();
        answer.into_body().collect().await.unwrap();
        // Taken as checkout takes it, ready; then the rack's FIN arrives first.
        let mut conn = pool.pop_idle().expect("the connection was kept");
        assert!(poll_fn(|cx| conn.poll_ready(cx)).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = conn.sender.try_send_request(bare_get());
        let mut answer = std::pin::pin!(answer);
        let answered = tokio::time::timeout(
            Duration::from_secs(5),
            poll_fn(|cx| {
                if let Poll::Ready(r) = answer.as_mut().poll(cx) {
                    return Poll::Ready(r);
                }
                conn.drive(cx);
                answer.as_mut().poll(cx)
            }),
        )
        .await
        .expect("the call waited on a connection that had ended");
        let mut failed = answered.expect_err("a closed connection answered");
        assert!(
            failed.take_message().is_some(),
            "the call was not handed back"
        );
    }

    /// An idle connection the rack closed is closed by the sweep, not held half-closed until a
    /// call takes it; one still open stays.
    #[tokio::test]
    async fn the_sweep_closes_idle_connections_the_rack_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (close, closing) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
            let _ = closing.await;
        });
        let pool = pool_at(port);
        let answer = pool.send(bare_get()).await.unwrap();
        answer.into_body().collect().await.unwrap();
        let idle = || pool.idle.lock().unwrap().len();
        pool.sweep();
        assert_eq!(idle(), 1, "an open connection was swept");
        drop(close);
        tokio::time::sleep(Duration::from_millis(100)).await;
        pool.sweep();
        assert_eq!(idle(), 0, "a connection the rack closed was kept");
    }

    /// Nothing listens: the call fails as one the rack never received.
    #[tokio::test]
    async fn a_rack_that_refuses_connections_never_got_the_call() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let upstream = upstream_at(port);
        let failed = call(&upstream).await.unwrap_err();
        assert!(failed.never_sent(), "{failed}");
        assert!(!failed.caller_body_failed());
    }
}
