//! A caller's connection after a WebSocket upgrade, as the relay uses it: the stream this
//! server accepted, taken back out of hyper's boxed `Upgraded`, so the TCP socket under it (and
//! under TLS) can be watched for the caller's end ([`crate::proxy::ws::Hangup`]).
//!
//! **Invariant:** bytes hyper read past the upgrade request come first, then the stream's own,
//! in order; a stream of a type this server does not make (a test's) is relayed as hyper gave
//! it, without a socket to watch.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::{Counted, Marked};

/// An upgraded caller connection; see the module.
pub struct UpgradedCaller {
    /// What hyper had read past the upgrade request, not yet given out.
    read_first: Bytes,
    io: Io,
}

type Plain = Marked<Counted<TcpStream>>;
type Tls = Marked<TlsStream<Counted<TcpStream>>>;

enum Io {
    Plain(Plain),
    Tls(Box<Tls>),
    Other(TokioIo<Upgraded>),
}

// === impl UpgradedCaller ===

impl UpgradedCaller {
    /// Takes the stream this server accepted back out of `upgraded`.
    pub fn new(upgraded: Upgraded) -> UpgradedCaller {
        let upgraded = match upgraded.downcast::<TokioIo<Plain>>() {
            Ok(parts) => {
                return UpgradedCaller::of(parts.read_buf, Io::Plain(parts.io.into_inner()));
            }
            Err(upgraded) => upgraded,
        };
        match upgraded.downcast::<TokioIo<Tls>>() {
            Ok(parts) => {
                UpgradedCaller::of(parts.read_buf, Io::Tls(Box::new(parts.io.into_inner())))
            }
            Err(upgraded) => UpgradedCaller::of(Bytes::new(), Io::Other(TokioIo::new(upgraded))),
        }
    }

    fn of(read_first: Bytes, io: Io) -> UpgradedCaller {
        UpgradedCaller { read_first, io }
    }

    /// The TCP socket under the connection (and under its TLS), when this server accepted it.
    pub fn socket(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Plain(plain) => Some(&plain.io.io),
            Io::Tls(tls) => Some(&tls.io.get_ref().0.io),
            Io::Other(_) => None,
        }
    }

    fn io(&mut self) -> Pin<&mut (dyn IoStream + '_)> {
        match &mut self.io {
            Io::Plain(plain) => Pin::new(plain),
            Io::Tls(tls) => Pin::new(&mut **tls),
            Io::Other(other) => Pin::new(other),
        }
    }
}

trait IoStream: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> IoStream for T {}

impl AsyncRead for UpgradedCaller {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.read_first.is_empty() {
            let n = this.read_first.len().min(buf.remaining());
            buf.put_slice(&this.read_first[..n]);
            this.read_first.advance(n);
            return Poll::Ready(Ok(()));
        }
        this.io().poll_read(cx, buf)
    }
}

impl AsyncWrite for UpgradedCaller {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(plain) => plain.is_write_vectored(),
            Io::Tls(tls) => tls.is_write_vectored(),
            Io::Other(other) => other.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().io().poll_shutdown(cx)
    }
}
