//! How long one step of a transfer may wait on the peer: a write the client does not read, a
//! request body the client does not send. Without a bound, a peer that stops holds its
//! connection, its buffers and its call's completion for as long as it likes.
//!
//! **Invariant:** the bound is on each wait, not on the whole transfer: every step that makes
//! progress starts the clock again, so a slow but steady peer is never cut off.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// How long one write may wait for the client to read, or one read of a request body for the
/// client to send: nginx's `send_timeout` and `client_body_timeout`.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The clock of one stream's waits.
#[derive(Default)]
pub struct Stall {
    /// Running while a step waits.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    /// `step` as it is once it is ready; while it is pending the clock runs, and a step still
    /// pending after [`LIMIT`] becomes `gave_up()`.
    pub fn bound<T>(
        &mut self,
        cx: &mut Context<'_>,
        step: Poll<T>,
        gave_up: impl FnOnce() -> T,
    ) -> Poll<T> {
        if step.is_ready() {
            self.timer = None;
            return step;
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LIMIT)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(gave_up()),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The error a step that waited too long ends with.
pub fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} for {} s", LIMIT.as_secs()),
    )
}

/// A request body whose every frame must come within [`LIMIT`] of asking for it.
pub struct Bounded<B> {
    inner: B,
    stall: Stall,
}

impl<B> Bounded<B> {
    pub fn new(inner: B) -> Bounded<B> {
        Bounded {
            inner,
            stall: Stall::default(),
        }
    }
}

impl<B> Body for Bounded<B>
where
    B: Body<Data = Bytes, Error = std::io::Error> + Unpin,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        this.stall.bound(cx, frame, || {
            Some(Err(timed_out("the client sent nothing of the body")))
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    type Sent = Result<Frame<Bytes>, std::io::Error>;

    /// A body whose frames are what a channel receives.
    struct Channel(tokio::sync::mpsc::Receiver<Sent>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Sent>> {
            self.0.poll_recv(cx)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_may_be_slow_but_not_stop() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Sent>(1);
        let mut body = Bounded::new(Channel(rx));
        let sender = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(LIMIT - Duration::from_secs(1)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .unwrap();
            }
            // Then nothing, with the sender still there.
            tokio::time::sleep(LIMIT * 10).await;
            drop(tx);
        });
        let started = tokio::time::Instant::now();
        for _ in 0..5 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        assert!(started.elapsed() > LIMIT * 4);
        let stopped = tokio::time::Instant::now();
        let e = body.frame().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(stopped.elapsed(), LIMIT);
        sender.abort();
    }
}
