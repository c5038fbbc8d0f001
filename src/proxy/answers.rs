//! The rack answers the gateway reads whole to rewrite them (masked env, restored env): bounded
//! each ([`MAX_MASKED_BODY`]) and, over all callers at once, by one budget of bytes held. Error
//! answers, read whole to take the rack password out (decoded first when gzip-encoded), are
//! held outside the budget, each bounded by [`MAX_ERROR_ANSWER`] and [`ERROR_ANSWER_DEADLINE`].
//!
//! Without the shared budget, callers who cannot read every env value could each make the
//! gateway hold a release list of many megabytes (read whole, then rewritten) for as long as
//! they take to read the answer, on every connection they hold.
//!
//! **Invariant:** every byte of a 2xx answer read is counted against the budget, twice (the answer and its
//! rewritten copy), before it is kept, or [`REWRITE_COST`] times when it is read to be rewritten
//! (the rewrite's working memory); and the rewritten copy stays counted until its last
//! piece has been handed to the connection ([`Rewritten`], sent in pieces of [`PIECE`] so the
//! connection holds little of it). A read waits for room only while it holds none: it reserves
//! what the answer's length says (or [`FIRST`] when unknown), taking none of it until all is
//! free, and takes more without waiting, failing at once when there is none, so reads never
//! wait on each other's room. The pieces are copies: a piece the connection still queues
//! after the body is gone holds only itself.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::mask::{MAX_MASKED_BODY, REWRITE_COST};

/// The bytes of answers held at once, over all callers.
pub const DEFAULT_BUDGET: usize = 256 * 1024 * 1024;
/// How long a read waits for room before it fails.
pub const WAIT: Duration = Duration::from_secs(10);
/// What a read of unknown length reserves before its first byte.
pub const FIRST: usize = 256 * 1024;
/// The pieces a rewritten answer is handed to the connection in.
pub const PIECE: usize = 64 * 1024;
/// The budget is counted in units of this many bytes.
const UNIT: usize = 1024;
/// How often a read waiting for room looks again.
const RETRY: Duration = Duration::from_millis(5);

/// The largest error answer read (short `http.Error` text): held per call, outside the
/// budget, so that error answers never wait on room the release lists hold; small enough that
/// callers holding many of them hold little.
pub const MAX_ERROR_ANSWER: usize = 64 * 1024;
/// How long an error answer may take to arrive whole once its head has.
pub const ERROR_ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// Why an answer was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is over {MAX_MASKED_BODY} bytes")]
    TooLarge,
    #[error("the rack's error answer is over {MAX_ERROR_ANSWER} bytes")]
    ErrorTooLarge,
    #[error("the rack's error answer did not arrive whole in time")]
    ErrorTooSlow,
    #[error("the rack's gzip-encoded error answer does not decode")]
    ErrorUndecodable,
    #[error("the answer could not be read")]
    Unreadable,
    /// As `Unreadable`, of an error answer: its kind says the rack refused the call.
    #[error("the rack's error answer could not be read")]
    ErrorUnreadable,
    #[error("the gateway holds as many answers as it may; try again")]
    Busy,
}

/// The shared budget. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct Budget {
    room: Arc<Semaphore>,
    wait: Duration,
}

/// Room taken in the budget; given back when dropped.
#[derive(Debug)]
pub struct Held {
    permit: OwnedSemaphorePermit,
}

/// A rewritten answer as a body: handed out in pieces of [`PIECE`], holding its room until the
/// last piece is taken.
pub struct Rewritten {
    rest: Bytes,
    held: Option<Held>,
}

// === impl ReadError ===

impl ReadError {
    /// The error kind recorded and told to the caller.
    pub fn kind(self) -> &'static str {
        match self {
            ReadError::TooLarge => "answer_too_large",
            ReadError::ErrorTooLarge => "error_answer_too_large",
            ReadError::ErrorTooSlow => "error_answer_too_slow",
            ReadError::ErrorUndecodable => "error_answer_undecodable",
            ReadError::ErrorUnreadable => "error_answer_unreadable",
            ReadError::Unreadable => "answer_unreadable",
            ReadError::Busy => "answers_budget_full",
        }
    }
}

// === impl Budget ===

impl Budget {
    /// A budget of `bytes`, whose reads wait at most `wait` for room.
    pub fn new(bytes: usize, wait: Duration) -> Budget {
        Budget {
            room: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))),
            wait,
        }
    }

    /// Reads `body` whole, its room (and its rewritten copy's) taken before each piece is kept.
    pub async fn read<B>(&self, body: B) -> Result<(Bytes, Held), ReadError>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        self.read_holding(body, 2).await
    }

    /// As [`Budget::read`], for an answer to be rewritten: the room held covers the rewrite's
    /// working memory too ([`REWRITE_COST`] per byte), so that the rewrite never needs room it
    /// would have to wait for; [`Budget::fit`] gives back what the rewritten copy does not use.
    pub async fn read_to_rewrite<B>(&self, body: B) -> Result<(Bytes, Held), ReadError>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        self.read_holding(body, REWRITE_COST).await
    }

    /// Reads `body` whole, holding `per_byte` bytes of room for each byte kept.
    async fn read_holding<B>(
        &self,
        mut body: B,
        per_byte: usize,
    ) -> Result<(Bytes, Held), ReadError>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        let known = body.size_hint().exact();
        if known.is_some_and(|n| n > MAX_MASKED_BODY as u64) {
            return Err(ReadError::TooLarge);
        }
        let first = known.map_or(FIRST, |n| usize::try_from(n).unwrap_or(MAX_MASKED_BODY));
        let mut held = self.reserve(units(per_byte * first)?).await?;
        let whole = collect(&mut body, MAX_MASKED_BODY, ReadError::TooLarge, |len| {
            self.grow_to(&mut held, per_byte * len)
        })
        .await?;
        Ok((whole, held))
    }

    /// Waits up to the budget's wait for `units` of room, taking none until all are free:
    /// tokio's `acquire_many` would take what is free at once and hold it while it waits,
    /// starving every other read behind one large one.
    async fn reserve(&self, units: u32) -> Result<Held, ReadError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            match self.room.clone().try_acquire_many_owned(units) {
                Ok(permit) => return Ok(Held { permit }),
                Err(tokio::sync::TryAcquireError::NoPermits)
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(RETRY).await;
                }
                Err(_) => return Err(ReadError::Busy),
            }
        }
    }

    /// Makes `held` cover exactly a rewritten copy of `len` bytes once the answer it was read
    /// for is gone: the surplus goes back, a shortfall is taken without waiting.
    pub fn fit(&self, held: &mut Held, len: usize) -> Result<(), ReadError> {
        let want = len.div_ceil(UNIT);
        let have = held.units();
        if have > want {
            drop(held.permit.split(have - want));
            return Ok(());
        }
        self.grow_to(held, len)
    }

    /// Takes what `held` lacks to cover `bytes`, without waiting: a read that holds room never
    /// waits for more (it would wait on reads that wait on it).
    fn grow_to(&self, held: &mut Held, bytes: usize) -> Result<(), ReadError> {
        let more = bytes.div_ceil(UNIT).saturating_sub(held.units());
        if more == 0 {
            return Ok(());
        }
        let more = u32::try_from(more).map_err(|_| ReadError::TooLarge)?;
        let permit = self
            .room
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| ReadError::Busy)?;
        held.permit.merge(permit);
        Ok(())
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(DEFAULT_BUDGET, WAIT)
    }
}

fn units(bytes: usize) -> Result<u32, ReadError> {
    u32::try_from(bytes.div_ceil(UNIT)).map_err(|_| ReadError::TooLarge)
}

// === impl Held ===

impl Held {
    fn units(&self) -> usize {
        self.permit.num_permits()
    }
}

/// Reads an error answer whole, up to [`MAX_ERROR_ANSWER`] bytes and within
/// [`ERROR_ANSWER_DEADLINE`], outside the budget.
pub async fn read_error<B>(body: B) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes> + Unpin,
{
    tokio::time::timeout(ERROR_ANSWER_DEADLINE, read_error_whole(body))
        .await
        .map_err(|_| ReadError::ErrorTooSlow)?
}

async fn read_error_whole<B>(mut body: B) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes> + Unpin,
{
    if body
        .size_hint()
        .exact()
        .is_some_and(|n| n > MAX_ERROR_ANSWER as u64)
    {
        return Err(ReadError::ErrorTooLarge);
    }
    collect(
        &mut body,
        MAX_ERROR_ANSWER,
        ReadError::ErrorTooLarge,
        |_| Ok(()),
    )
    .await
    .map_err(|e| match e {
        ReadError::Unreadable => ReadError::ErrorUnreadable,
        e => e,
    })
}

/// A gzip-encoded error answer (read by [`read_error`]) decoded, so the rack password can be
/// taken out and the caller shown the rack's reason: the CLI's Go client asks every rack for
/// gzip, and a proxy in front of the rack may honour that. Bounded like an answer in clear
/// ([`MAX_ERROR_ANSWER`] decoded), so a small answer cannot inflate into a large one. Several
/// members in a row decode as one text, as Go's reader takes them. An empty body is empty
/// text, as Go's client reads it (the CLI reads an empty 404 as `response status 404`).
pub fn gunzip_error(encoded: &[u8]) -> Result<Bytes, ReadError> {
    use std::io::Read;
    if encoded.is_empty() {
        return Ok(Bytes::new());
    }
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(encoded)
        .take(MAX_ERROR_ANSWER as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|_| ReadError::ErrorUndecodable)?;
    if text.len() > MAX_ERROR_ANSWER {
        return Err(ReadError::ErrorTooLarge);
    }
    Ok(Bytes::from(text))
}

/// Reads `body` whole, refused with `too_large` past `max` bytes; `room` is asked for the
/// length the body will have before each piece is kept.
async fn collect<B>(
    body: &mut B,
    max: usize,
    too_large: ReadError,
    mut room: impl FnMut(usize) -> Result<(), ReadError>,
) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ReadError::Unreadable)?;
        let Ok(data) = frame.into_data() else {
            // Trailers carry no body bytes.
            continue;
        };
        let len = buf.len() + data.len();
        if len > max {
            return Err(too_large);
        }
        room(len)?;
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

// === impl Rewritten ===

impl Rewritten {
    pub fn new(answer: Bytes, held: Held) -> Rewritten {
        Rewritten {
            rest: answer,
            held: Some(held),
        }
    }
}

impl Body for Rewritten {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            self.held = None;
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(PIECE);
        // A copy, not a view: the connection may keep a piece queued after the body is gone,
        // and a view would keep the whole answer allocated outside the budget.
        let piece = Bytes::copy_from_slice(&self.rest.split_to(n));
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    fn body(len: usize) -> Full<Bytes> {
        Full::new(Bytes::from(vec![b'x'; len]))
    }

    /// A body that does not say its length (as a chunked answer).
    struct Unsized(Full<Bytes>);

    impl Body for Unsized {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Pin::new(&mut self.0).poll_frame(cx)
        }
    }

    fn budget(units: usize) -> Budget {
        Budget::new(units * UNIT, Duration::from_millis(50))
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A gzip error answer decodes to the rack's text, members in a row as one; one that
    /// inflates past the bound, or that is not whole gzip, is refused with its own kind.
    #[test]
    fn gzip_error_answers_decode_within_the_bound() {
        let text = b"app not found: x\n";
        assert_eq!(gunzip_error(&gzip(text)).unwrap(), &text[..]);
        let mut two = gzip(b"first ");
        two.extend(gzip(b"second"));
        assert_eq!(gunzip_error(&two).unwrap(), &b"first second"[..]);
        assert_eq!(gunzip_error(b"").unwrap(), &b""[..]);
        let whole = vec![b'a'; MAX_ERROR_ANSWER];
        assert_eq!(gunzip_error(&gzip(&whole)).unwrap().len(), MAX_ERROR_ANSWER);

        // 1 MiB of one byte is about a kilobyte encoded.
        let bomb = gzip(&vec![b'a'; 1 << 20]);
        assert!(bomb.len() < 4096, "{}", bomb.len());
        assert_eq!(gunzip_error(&bomb), Err(ReadError::ErrorTooLarge));
        let over = gzip(&vec![b'a'; MAX_ERROR_ANSWER + 1]);
        assert_eq!(gunzip_error(&over), Err(ReadError::ErrorTooLarge));

        let encoded = gzip(text);
        for bad in [
            &b"app not found"[..],
            &encoded[..encoded.len() - 3],
            &encoded[..10],
        ] {
            assert_eq!(
                gunzip_error(bad),
                Err(ReadError::ErrorUndecodable),
                "{bad:?}"
            );
        }
        let mut flipped = encoded.clone();
        let crc = flipped.len() - 8;
        flipped[crc] ^= 1;
        assert_eq!(gunzip_error(&flipped), Err(ReadError::ErrorUndecodable));
    }

    /// An answer and its rewritten copy are counted while they are held; a read that finds no
    /// room within the wait fails, and the surplus goes back once the copy is made.
    #[tokio::test]
    async fn answers_held_at_once_stay_within_the_budget() {
        let budget = budget(16);
        let (first, mut held) = budget.read(body(5 * UNIT)).await.unwrap();
        assert_eq!(first.len(), 5 * UNIT);
        assert_eq!(
            budget.read(body(5 * UNIT)).await.err(),
            Some(ReadError::Busy),
            "10 of 16 units are held: the answer and room for its copy"
        );
        drop(first);
        budget.fit(&mut held, 3 * UNIT).unwrap();
        let (_second, _held2) = budget.read(body(5 * UNIT)).await.unwrap();
        drop(held);
        let (_third, _held3) = budget.read(body(3 * UNIT)).await.unwrap();
    }

    /// An answer read to be rewritten holds room for the rewrite's working memory from the
    /// start, and gives back all but the rewritten copy's once the copy is made.
    #[tokio::test]
    async fn a_rewrite_is_counted_before_it_is_made() {
        let budget = budget(2 * REWRITE_COST);
        assert_eq!(
            budget.read_to_rewrite(body(3 * UNIT)).await.err(),
            Some(ReadError::Busy),
            "room for two units' rewrite only"
        );
        let (answer, mut held) = budget.read_to_rewrite(body(2 * UNIT)).await.unwrap();
        assert_eq!(held.units(), 2 * REWRITE_COST);
        assert_eq!(
            budget.read(body(UNIT)).await.err(),
            Some(ReadError::Busy),
            "all the room is held while the rewrite runs"
        );
        drop(answer);
        budget.fit(&mut held, 2 * UNIT).unwrap();
        let (_next, _held) = budget.read(body(3 * UNIT)).await.unwrap();
    }

    /// A read waiting for more room than is free takes none of it meanwhile: a smaller read
    /// behind it gets what is free at once.
    #[tokio::test]
    async fn a_waiting_read_does_not_starve_smaller_ones() {
        let budget = Budget::new(16 * UNIT, Duration::from_secs(5));
        let (_first, held) = budget.read(body(5 * UNIT)).await.unwrap();
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.read(body(5 * UNIT)).await.map(|(b, _)| b.len()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let small = tokio::time::timeout(Duration::from_millis(500), budget.read(body(2 * UNIT)))
            .await
            .expect("the small read waited behind the large one");
        let (_small, small_held) = small.unwrap();
        drop(small_held);
        drop(held);
        assert_eq!(waiting.await.unwrap(), Ok(5 * UNIT));
    }

    /// A read of unknown length takes more room as it goes, without waiting: with none left
    /// it fails at once rather than wait on reads that may be waiting on it.
    #[tokio::test]
    async fn a_read_of_unknown_length_never_waits_holding_room() {
        let budget = Budget::new(4 * FIRST, Duration::from_secs(3600));
        let (_big, _held) = budget.read(Unsized(body(FIRST))).await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            budget.read(Unsized(body(2 * FIRST))).await.err(),
            Some(ReadError::Busy)
        );
        assert!(started.elapsed() < Duration::from_secs(10), "it waited");
    }

    /// The rewritten answer keeps its room until its last piece is handed out.
    #[tokio::test]
    async fn a_rewritten_answer_holds_its_room_until_its_last_piece_is_taken() {
        let budget = budget(8);
        let (answer, mut held) = budget.read(body(3 * UNIT)).await.unwrap();
        budget.fit(&mut held, answer.len()).unwrap();
        let mut rewritten = Rewritten::new(answer, held);
        assert_eq!(
            budget.read(body(3 * UNIT)).await.err(),
            Some(ReadError::Busy),
            "3 held, 5 free, 6 needed"
        );
        let mut sent = 0;
        while let Some(frame) = rewritten.frame().await {
            sent += frame.unwrap().into_data().unwrap().len();
        }
        assert_eq!(sent, 3 * UNIT);
        let (_again, _held) = budget.read(body(3 * UNIT)).await.unwrap();
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused() {
        let budget = Budget::default();
        assert_eq!(
            budget.read(body(MAX_MASKED_BODY + 1)).await.err(),
            Some(ReadError::TooLarge)
        );
        assert_eq!(
            budget.read(Unsized(body(MAX_MASKED_BODY + 1))).await.err(),
            Some(ReadError::TooLarge)
        );
        let (whole, _held) = budget.read(body(MAX_MASKED_BODY)).await.unwrap();
        assert_eq!(whole.len(), MAX_MASKED_BODY);
    }
}
