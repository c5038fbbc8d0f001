//! Streamed bodies that stop when the caller's credential stops standing: a download, an upload
//! or a long answer outlives a revocation, an expiry, or its owner's demotion otherwise (a
//! WebSocket is closed by [`super::streams`]; a plain call's bodies are cut here).
//!
//! **Invariant:** a frame passes only if the call's [`Credential`] was found standing less than
//! [`RECHECK`] before it came (at the call's start, or at an earlier frame), so nothing flows
//! more than [`RECHECK`] after the credential stopped standing. A cut is an error frame, which
//! ends the transfer incomplete on both sides; its reason is kept for the call's completion.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use events::store::Rejected;
use http_body::{Body, Frame, SizeHint};

/// How long a check holds: a body's first frames within it of the call's start pass unchecked
/// (most answers are one frame), and a long transfer is checked at most this often.
pub const RECHECK: Duration = Duration::from_millis(100);

/// Why a body was cut.
#[derive(Debug, thiserror::Error)]
#[error("the caller's credential no longer stands ({0})")]
pub struct Revoked(pub &'static str);

/// One call's credential, shared by its request and answer bodies: how to check that it still
/// stands, and why it did not once it was found not to.
pub struct Credential {
    check: Box<dyn Fn() -> Result<(), Rejected> + Send + Sync>,
    cut: OnceLock<Rejected>,
}

// === impl Credential ===

impl Credential {
    /// `check` answers whether the credential stands now (token usable, permissions held).
    pub fn new(check: impl Fn() -> Result<(), Rejected> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Credential {
            check: Box::new(check),
            cut: OnceLock::new(),
        })
    }

    /// Why a body of the call was cut, if one was.
    pub fn cut(&self) -> Option<&Rejected> {
        self.cut.get()
    }

    /// Checks the credential now (once it was found not to stand, it never does again): for
    /// each body frame past [`RECHECK`], and for an answer read whole before any of it goes to
    /// the caller, which may have taken longer than that.
    pub fn stands(&self) -> Result<(), Revoked> {
        if let Some(why) = self.cut.get() {
            return Err(Revoked(why.0));
        }
        (self.check)().map_err(|why| Revoked(self.cut.get_or_init(|| why).0))
    }
}

/// A body that passes frames while its call's credential stands.
pub struct Revocable<B> {
    inner: B,
    credential: Arc<Credential>,
    checked: Instant,
}

// === impl Revocable ===

impl<B> Revocable<B> {
    /// `inner`, whose call's credential was found standing at `checked`.
    pub fn new(inner: B, credential: Arc<Credential>, checked: Instant) -> Revocable<B> {
        Revocable {
            inner,
            credential,
            checked,
        }
    }
}

impl<B> Body for Revocable<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        let Some(Ok(frame)) = frame else {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        };
        let now = Instant::now();
        if now.duration_since(this.checked) >= RECHECK || this.credential.cut().is_some() {
            if let Err(revoked) = this.credential.stands() {
                return Poll::Ready(Some(Err(Box::new(revoked))));
            }
            this.checked = now;
        }
        Poll::Ready(Some(Ok(frame)))
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
    use std::sync::atomic::{AtomicBool, Ordering};

    use http_body_util::BodyExt;

    use super::*;

    /// A body of `n` data frames, each ready when polled.
    struct Frames(usize);

    impl Body for Frames {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            if self.0 == 0 {
                return Poll::Ready(None);
            }
            self.0 -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"chunk")))))
        }
    }

    fn frames(n: usize) -> Frames {
        Frames(n)
    }

    /// Frames within [`RECHECK`] of the last check pass unchecked; the first after it is
    /// checked, and once the credential does not stand that frame and every later one are
    /// refused, with the reason kept.
    #[tokio::test]
    async fn a_body_stops_at_its_first_frame_checked_after_the_credential_fell() {
        let standing = Arc::new(AtomicBool::new(true));
        let checks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (s, c) = (standing.clone(), checks.clone());
        let credential = Credential::new(move || {
            c.fetch_add(1, Ordering::Relaxed);
            if s.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err(Rejected("token_no_longer_usable"))
            }
        });
        let mut body = Revocable::new(frames(4), credential.clone(), Instant::now());
        assert!(body.frame().await.unwrap().is_ok());
        assert_eq!(checks.load(Ordering::Relaxed), 0, "checked within RECHECK");
        standing.store(false, Ordering::Relaxed);
        assert!(body.frame().await.unwrap().is_ok(), "passes until RECHECK");
        body.checked -= RECHECK;
        let cut = body.frame().await.unwrap().unwrap_err();
        assert!(cut.to_string().contains("token_no_longer_usable"), "{cut}");
        assert_eq!(credential.cut(), Some(&Rejected("token_no_longer_usable")));
        // The other body of the call stops at its next frame, checked or not.
        let mut other = Revocable::new(frames(1), credential, Instant::now());
        assert!(other.frame().await.unwrap().is_err());
    }

    /// A credential that stands lets a long body through whole, checked as it goes.
    #[tokio::test]
    async fn a_standing_credential_passes_every_frame() {
        let credential = Credential::new(|| Ok(()));
        let mut body = Revocable::new(frames(3), credential.clone(), Instant::now() - RECHECK);
        let mut n = 0;
        while let Some(frame) = body.frame().await {
            assert!(frame.is_ok());
            n += 1;
        }
        assert_eq!((n, credential.cut()), (3, None));
    }
}
