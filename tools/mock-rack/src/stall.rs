//! Test-only shapes of an answer's body on the wire: a head that goes out at once with a body
//! that waits, as from a rack that answered and then stalled (`MockRack::set_body_stall`), and
//! a body sent chunked in small pieces without a length, as Go's server sends an answer larger
//! than its buffer (`MockRack::set_chunked_answers`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};

/// The piece size of a chunked answer: small, so that an answer spans many chunks.
const PIECE: usize = 1024;

/// A body that yields nothing until `stall` has passed, then `inner`, whole or (chunked) in
/// pieces of [`PIECE`] bytes with no length announced.
pub(crate) struct Stalled {
    inner: Full<Bytes>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    chunked: bool,
    /// What is left of `inner`'s data to hand out in pieces.
    rest: Bytes,
}

impl Stalled {
    pub(crate) fn new(inner: Full<Bytes>, stall: Duration, chunked: bool) -> Stalled {
        Stalled {
            inner,
            sleep: (!stall.is_zero()).then(|| Box::pin(tokio::time::sleep(stall))),
            chunked,
            rest: Bytes::new(),
        }
    }
}

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(sleep) = this.sleep.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        if !this.chunked {
            return Pin::new(&mut this.inner).poll_frame(cx);
        }
        if this.rest.is_empty() {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.rest = data,
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
        let piece = this.rest.split_to(this.rest.len().min(PIECE));
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.sleep.is_none() && self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.chunked {
            // No length: hyper sends the answer chunked.
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}
