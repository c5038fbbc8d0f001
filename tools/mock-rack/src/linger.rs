//! How the rack's Go server closes a connection whose request body it left unread (`net/http`
//! `closeWriteAndWait`, golang.org/issue/3595): once the answer is out it shuts its write side
//! (FIN), waits up to [`RST_AVOIDANCE`], and only then closes the socket. Closing at once, with
//! the client's bytes still unread in the receive buffer, makes the kernel send RST, and a client
//! that is still sending can lose the answer it was already sent: the early 401 to a large upload
//! would vanish for the proxy in front, which is exactly what it must see.
//!
//! [`Lingering`] wraps every accepted socket. `request` marks an answer with [`BodyLimitHit`],
//! `server` arms the connection's [`Linger`] switch when it sees the mark, and the shutdown hyper's
//! HTTP/1 server performs on a connection it does not keep alive (`poll_shutdown`, after the
//! answer is flushed; a `Connection: close` answer and a dropped unread body both end keep-alive)
//! then shuts the write side, reads and discards what the client still sends until it closes or
//! [`RST_AVOIDANCE`] has passed, and only then reports done; hyper drops the socket after that.
//!
//! Go sleeps through the delay without reading; reading instead (RFC 9112 §9.6 advises it) keeps
//! the client's sends from stalling on a full window and ends the wait as soon as the client
//! closes. Either way a client still sending after the delay gets RST, as from Go.
//!
//! Invariant: an unarmed socket reads, writes and shuts down exactly as the plain `TcpStream`
//! (graceful stop, keep-alive answers, upgraded WebSockets), so only a connection refused with its
//! body unread lingers; a lingering shutdown ends within [`RST_AVOIDANCE`] whatever the client
//! does, so the server's drain on stop still bounds every connection.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Go's `rstAvoidanceDelay`: how long the write side stays shut before the socket closes.
pub(crate) const RST_AVOIDANCE: Duration = Duration::from_millis(500);

/// How many bytes one read of a lingering shutdown discards at most.
const DISCARD_CHUNK: usize = 16 * 1024;

/// How many reads one poll of a lingering shutdown makes before it yields, so a client sending
/// fast cannot keep the task (and the timer that ends the wait) from the scheduler.
const READS_PER_POLL: usize = 32;

/// The mark on an answer whose request body was left unread beyond Go's limit: its connection
/// must close the Go way (Go's `requestBodyLimitHit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BodyLimitHit;

/// Whether a connection's shutdown lingers; shared by the socket and the connection's service.
#[derive(Debug, Clone, Default)]
pub(crate) struct Linger(Arc<AtomicBool>);

// === impl Linger ===

impl Linger {
    /// Makes the connection's shutdown linger; there is no way back, as in Go.
    pub(crate) fn arm(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn armed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Where a lingering shutdown is.
enum Shutdown {
    /// Not started.
    Open,
    /// Write side shut; discarding what arrives until EOF or the timer.
    Draining(Pin<Box<Sleep>>),
    /// Over: the client closed, the delay passed, or reading failed.
    Done,
}

/// An accepted socket whose shutdown lingers once [`Linger`] is armed.
pub(crate) struct Lingering {
    inner: TcpStream,
    linger: Linger,
    shutdown: Shutdown,
}

// === impl Lingering ===

impl Lingering {
    pub(crate) fn new(inner: TcpStream, linger: Linger) -> Lingering {
        Lingering {
            inner,
            linger,
            shutdown: Shutdown::Open,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.shutdown {
                Shutdown::Open => {
                    // Sends FIN once what was written has gone out.
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    if !this.linger.armed() {
                        this.shutdown = Shutdown::Done;
                        continue;
                    }
                    this.shutdown = Shutdown::Draining(Box::pin(tokio::time::sleep(RST_AVOIDANCE)));
                }
                Shutdown::Draining(timer) => {
                    if timer.as_mut().poll(cx).is_ready() {
                        this.shutdown = Shutdown::Done;
                        continue;
                    }
                    match discard(&mut this.inner, cx) {
                        Poll::Ready(()) => this.shutdown = Shutdown::Done,
                        // A full batch read: let the scheduler (and the timer) run first.
                        Poll::Pending if !timer.is_elapsed() => return Poll::Pending,
                        Poll::Pending => this.shutdown = Shutdown::Done,
                    }
                }
                Shutdown::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Reads and drops what the client sends: `Ready` once it closed or reading failed, `Pending`
/// when nothing more is there yet (the socket will wake the task) or after a full batch of reads
/// (the task is woken again at once).
fn discard(stream: &mut TcpStream, cx: &mut Context<'_>) -> Poll<()> {
    let mut scratch = [0u8; DISCARD_CHUNK];
    for _ in 0..READS_PER_POLL {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Pending => return Poll::Pending,
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair(linger: Linger) -> (Lingering, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Lingering::new(server, linger), client)
    }

    #[tokio::test]
    async fn an_unarmed_shutdown_sends_fin_and_returns_at_once() {
        let (mut server, mut client) = pair(Linger::default()).await;
        server.write_all(b"answer").await.unwrap();
        tokio::time::timeout(Duration::from_millis(100), server.shutdown())
            .await
            .unwrap()
            .unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
    }

    #[tokio::test]
    async fn an_armed_shutdown_ends_when_the_client_closes() {
        let linger = Linger::default();
        let (mut server, mut client) = pair(linger.clone()).await;
        linger.arm();
        client.write_all(&[7u8; 100_000]).await.unwrap();
        server.write_all(b"answer").await.unwrap();
        let shutdown = tokio::spawn(async move { server.shutdown().await });
        let mut got = Vec::new();
        // The FIN comes while the client's bytes are still unread on the server.
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
        drop(client);
        let ended = tokio::time::timeout(RST_AVOIDANCE / 2, shutdown).await;
        assert!(ended.unwrap().unwrap().is_ok(), "ended on the client's EOF");
    }

    #[tokio::test]
    async fn an_armed_shutdown_ends_after_the_delay_while_the_client_keeps_sending() {
        let linger = Linger::default();
        let (mut server, client) = pair(linger.clone()).await;
        linger.arm();
        let (_read, mut write) = client.into_split();
        let sender =
            tokio::spawn(async move { while write.write_all(&[1u8; 4096]).await.is_ok() {} });
        let started = tokio::time::Instant::now();
        tokio::time::timeout(RST_AVOIDANCE * 4, server.shutdown())
            .await
            .unwrap()
            .unwrap();
        assert!(started.elapsed() >= RST_AVOIDANCE);
        drop(server);
        // The client's writes fail once the socket is gone.
        tokio::time::timeout(RST_AVOIDANCE * 4, sender)
            .await
            .unwrap()
            .unwrap();
    }
}
