//! Test-only: an answer whose head goes out at once and whose body waits, as from a rack that
//! answered and then stalled (see `MockRack::set_body_stall`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};

/// A body that yields nothing until `stall` has passed, then `inner`.
pub(crate) struct Stalled {
    inner: Full<Bytes>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stalled {
    pub(crate) fn new(inner: Full<Bytes>, stall: Duration) -> Stalled {
        Stalled {
            inner,
            sleep: (!stall.is_zero()).then(|| Box::pin(tokio::time::sleep(stall))),
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
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.sleep.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
