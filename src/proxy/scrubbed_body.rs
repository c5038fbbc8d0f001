//! An answer streamed to the caller with the rack password taken out as it passes: a diagnose
//! report (pods' logs and events, of any size), which need not be held whole to be scrubbed.
//!
//! **Invariant:** the data it gives out, concatenated, is what scrubbing the whole answer at
//! once gives ([`StreamScrub`]), however the rack's chunks cut it; it holds back no more than
//! a form of the password less a byte (a whole form of a password too short to be replaced
//! inside words, until the byte after it), and gives that out before the answer's trailers or
//! end. Errors of the inner body pass through as they come.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::mask::StreamScrub;

/// `inner` as the caller gets it, the password taken out of its data.
pub struct ScrubbedBody<B> {
    inner: B,
    scrub: StreamScrub,
    /// Trailers that came while bytes were held: they follow those bytes.
    trailers: Option<Frame<Bytes>>,
    /// The inner body has ended (or given its trailers, its last frame) and what it held
    /// has been given out or waits in `trailers`' place.
    done: bool,
}

impl<B> ScrubbedBody<B> {
    pub fn new(inner: B, scrub: StreamScrub) -> ScrubbedBody<B> {
        ScrubbedBody {
            inner,
            scrub,
            trailers: None,
            done: false,
        }
    }
}

impl<B> Body for ScrubbedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.scrub.push(data);
                        // All of it held back: nothing to give out yet.
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => {
                        // The last frame: hyper drops the body once it has written it.
                        this.done = true;
                        let held = this.scrub.finish();
                        if held.is_empty() {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        this.trailers = Some(trailers);
                        return Poll::Ready(Some(Ok(Frame::data(held))));
                    }
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.done = true;
                    let held = this.scrub.finish();
                    if !held.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(held))));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.trailers.is_none()
            && (self.done || self.inner.is_end_stream() && !self.scrub.holding())
    }

    /// Unknown: the replacement changes the length.
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use std::collections::VecDeque;
    use std::convert::Infallible;

    use http_body_util::BodyExt;

    use super::*;
    use crate::proxy::mask::{REDACTED, Scrubber};

    /// A body of the given chunks, as the rack's answer arrives.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }

        fn is_end_stream(&self) -> bool {
            self.0.is_empty()
        }
    }

    fn chunks(pieces: &[&'static [u8]]) -> ScrubbedBody<Chunks> {
        ScrubbedBody::new(
            Chunks(pieces.iter().map(|p| Bytes::from_static(p)).collect()),
            StreamScrub::new(Arc::new(Scrubber::new("s3cr3t-rack-pw")), REDACTED),
        )
    }

    /// A password the rack's chunks cut in two, or three, is taken out; the rest passes as it
    /// came, and a tail that only looked like the password's start is given out at the end.
    #[tokio::test]
    async fn a_password_cut_across_chunks_is_taken_out() {
        let body = chunks(&[
            b"pod log: RACK_URL=https://convox:s3cr",
            b"3t-ra",
            b"ck-pw@api\nend s3",
        ]);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            &out[..],
            &b"pod log: RACK_URL=https://convox:rgw-redacted@api\nend s3"[..]
        );
    }

    /// The body says it has ended only once what it held has been given out, so a meter
    /// around it does not count the answer whole before its last bytes.
    #[tokio::test]
    async fn it_ends_only_after_its_held_tail() {
        let mut body = chunks(&[b"tail s3cr"]);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"tail ");
        assert!(!body.is_end_stream());
        let last = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&last[..], b"s3cr");
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }
}
