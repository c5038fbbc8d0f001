//! Bodies that count what passes: bytes and SHA-256 of a streamed request or response, reported
//! once when the stream ends (or is dropped early), for `CommandCompleted`. A body whose digest
//! is recorded nowhere (it holds secrets by design) is counted without being hashed.
//!
//! **Invariant:** frames pass through unchanged and unbuffered; the report is sent exactly once,
//! saying whether the stream reached its end (a body dropped once its inner body says it has
//! ended did: hyper stops polling a body at its known length).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use events::hash::Hash;
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};

/// What passed through a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meter {
    pub bytes: u64,
    /// `None` for a body counted without its digest ([`Metered::digest_if`]).
    pub sha256: Option<Hash>,
    /// Whether the body reached its end (false: the peer went away or an error cut it).
    pub complete: bool,
}

impl Meter {
    /// The body's SHA-256, if it passed whole: a digest of part of a body is recorded nowhere.
    pub fn digest(&self) -> Option<Hash> {
        self.sha256.filter(|_| self.complete)
    }
}

/// Called once with the final count.
pub type OnDone = Box<dyn FnOnce(Meter) + Send + Sync>;

/// A body wrapper that counts and hashes data frames.
pub struct Metered<B: Body> {
    inner: B,
    bytes: u64,
    /// `None` once the digest is not wanted.
    hasher: Option<Sha256>,
    done: Option<OnDone>,
    /// Where the bytes so far are also kept, for a reader that cannot wait for the report.
    progress: Option<Arc<AtomicU64>>,
}

// === impl Metered ===

impl<B: Body> Metered<B> {
    pub fn new(inner: B, done: OnDone) -> Metered<B> {
        Metered {
            inner,
            bytes: 0,
            hasher: Some(Sha256::new()),
            done: Some(done),
            progress: None,
        }
    }

    /// Also keeps the count of bytes passed so far in `progress`, frame by frame.
    pub fn counting_into(mut self, progress: Arc<AtomicU64>) -> Metered<B> {
        self.progress = Some(progress);
        self
    }

    /// Counts bytes only, when `digest` is false: the report's `sha256` is `None`. Hashing a
    /// body nobody records the digest of is CPU for nothing on every such call.
    pub fn digest_if(mut self, digest: bool) -> Metered<B> {
        if !digest {
            self.hasher = None;
        }
        self
    }

    fn finish(&mut self, complete: bool) {
        if let Some(done) = self.done.take() {
            done(Meter {
                bytes: self.bytes,
                sha256: self.hasher.take().map(|h| Hash(h.finalize().into())),
                complete,
            });
        }
    }
}

impl<B> Body for Metered<B>
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    if let Some(h) = &mut this.hasher {
                        h.update(data);
                    }
                    if let Some(p) = &this.progress {
                        p.store(this.bytes, Ordering::Relaxed);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish(false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for Metered<B> {
    fn drop(&mut self) {
        let ended = self.inner.is_end_stream();
        self.finish(ended);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Full};

    use super::*;

    #[tokio::test]
    async fn counts_hashes_and_reports_once() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let body = Metered::new(
            Full::new(Bytes::from_static(b"hello")),
            Box::new(move |m| sink.lock().unwrap().push(m)),
        );
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"hello");
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes, 5);
        assert_eq!(got[0].sha256, Some(events::hash::object_digest(b"hello")));
        assert_eq!(got[0].digest(), got[0].sha256);
        assert!(got[0].complete);
    }

    #[tokio::test]
    async fn a_body_counted_without_its_digest_reports_none() {
        let got = Arc::new(Mutex::new(None));
        let sink = got.clone();
        let body = Metered::new(
            Full::new(Bytes::from_static(b"hello")),
            Box::new(move |m| *sink.lock().unwrap() = Some(m)),
        )
        .digest_if(false);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"hello");
        let m = got.lock().unwrap().unwrap();
        assert_eq!(
            (m.bytes, m.complete, m.sha256, m.digest()),
            (5, true, None, None)
        );
    }

    /// hyper stops polling a body whose length it knows once that much has passed, and drops
    /// it: that body reached its end.
    #[tokio::test]
    async fn a_body_dropped_at_its_end_reports_complete() {
        let got = Arc::new(Mutex::new(None));
        let sink = got.clone();
        let progress = Arc::new(AtomicU64::new(0));
        let mut body = Metered::new(
            Full::new(Bytes::from_static(b"hello")),
            Box::new(move |m| *sink.lock().unwrap() = Some(m)),
        )
        .counting_into(progress.clone());
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.data_ref().map(|d| d.len()), Some(5));
        assert_eq!(progress.load(Ordering::Relaxed), 5);
        assert!(got.lock().unwrap().is_none(), "reported before the end");
        drop(body);
        let m = got.lock().unwrap().unwrap();
        assert!(m.complete);
        assert_eq!(m.bytes, 5);
    }

    #[test]
    fn a_body_dropped_early_reports_incomplete() {
        let got = Arc::new(Mutex::new(None));
        let sink = got.clone();
        drop(Metered::new(
            Full::new(Bytes::from_static(b"x")),
            Box::new(move |m| *sink.lock().unwrap() = Some(m)),
        ));
        assert_eq!(got.lock().unwrap().map(|m| m.complete), Some(false));
    }
}
