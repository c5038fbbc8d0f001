//! RFC 6455 framing over any `AsyncRead`/`AsyncWrite`: one frame in, one frame out, for either
//! end of a connection. Written here, not taken from a library, because Convox puts arbitrary
//! bytes in text frames (`convox-api.md` §4.2) and the usual libraries refuse them.
//!
//! **Invariant:** payloads are bytes and are never interpreted (no UTF-8 check, no reassembly);
//! every announced length is checked against the reader's maximum before anything is allocated;
//! a frame that breaks §5 of the RFC (reserved bits or opcodes, wrong masking for the role,
//! fragmented or oversized control frames) is refused before its payload is read; and every
//! frame a client writes carries a fresh random masking key.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The default largest payload a reader accepts in one frame: 16 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 << 20;

/// The largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 §5.2). The reserved values 0x3–0x7 and 0xB–0xF have no variant:
/// a frame carrying one is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: the next fragment of a message.
    Continuation,
    /// 0x1: text; here, as on the rack, any bytes.
    Text,
    /// 0x2: binary; Convox uses an empty one as EOF.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

/// The end of the connection a reader or writer plays (RFC 6455 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Facing a client: reads masked frames, writes unmasked ones.
    Server,
    /// Facing a server: reads unmasked frames, writes masked ones.
    Client,
}

/// One frame, unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit: the last fragment of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The payload, unmasked, exactly as sent.
    pub payload: Bytes,
}

/// A way in which a peer broke RFC 6455. Each maps to the close code sent back (`close_code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// RSV1–3 set, but no extension is ever negotiated.
    #[error("reserved bits {bits:#04x} set without a negotiated extension")]
    ReservedBits {
        /// The first byte of the frame masked to its RSV bits.
        bits: u8,
    },
    /// An opcode the RFC reserves.
    #[error("reserved opcode {opcode:#x}")]
    ReservedOpcode {
        /// The opcode nibble.
        opcode: u8,
    },
    /// A control frame without FIN.
    #[error("fragmented {opcode:?} frame")]
    FragmentedControl {
        /// The control opcode.
        opcode: Opcode,
    },
    /// A control frame longer than 125 bytes.
    #[error("{opcode:?} frame of {len} bytes (control frames carry at most 125)")]
    ControlTooLong {
        /// The control opcode.
        opcode: Opcode,
        /// The announced length.
        len: u64,
    },
    /// A payload over the reader's limit.
    #[error("frame payload of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The reader's limit.
        max: usize,
    },
    /// A 64-bit length with its most significant bit set.
    #[error("64-bit payload length with the most significant bit set")]
    LengthOverflow,
    /// A client sent an unmasked frame.
    #[error("frame from a client is not masked")]
    Unmasked,
    /// A server sent a masked frame.
    #[error("frame from a server is masked")]
    Masked,
    /// A close frame whose body is a single byte (the status code needs two).
    #[error("close frame with a one-byte body")]
    CloseBody,
    /// A close frame with a status code no endpoint may send (RFC 6455 §7.4: 1005, 1006 and
    /// 1015 are for reports only, codes under 1000 and from 5000 are not status codes, and
    /// the others below 3000 are reserved for the protocol; 1012–1014 are registered).
    #[error("close frame with status code {code}, which no endpoint may send")]
    CloseCode {
        /// The status code.
        code: u16,
    },
    /// A close frame whose reason is not UTF-8 (RFC 6455 §5.5.1).
    #[error("close frame whose reason is not UTF-8")]
    CloseReason,
    /// A continuation frame with no fragmented message open.
    #[error("continuation frame outside a fragmented message")]
    StrayContinuation,
    /// A new text or binary frame while a fragmented message is still open.
    #[error("new data frame inside a fragmented message")]
    InterleavedMessage,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The transport failed.
    #[error("websocket transport: {0}")]
    Io(#[from] io::Error),
    /// The transport ended in the middle of a frame.
    #[error("websocket connection ended inside a frame")]
    Truncated,
    /// The peer broke the protocol (or the caller asked to write a frame the RFC forbids).
    #[error("websocket protocol violation: {0}")]
    Protocol(#[from] Violation),
    /// The system gave no randomness for a client's masking key.
    #[error("no randomness for a websocket masking key: {0}")]
    Entropy(getrandom::Error),
}

/// Reads frames from one direction of a connection.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    role: Role,
    max_payload: usize,
}

/// Writes frames to one direction of a connection.
///
/// Writing is split in two so it can be cancelled safely: `queue` encodes a frame into an
/// internal buffer, `flush` writes that buffer out and keeps its progress, so a `flush` dropped
/// half-way (e.g. in a `select!`) resumes where it stopped instead of cutting a frame.
pub struct FrameWriter<W> {
    io: W,
    role: Role,
    pending: BytesMut,
    /// A flush of the transport has begun and not returned (cancelled ones included).
    flushing: bool,
    closed: bool,
}

/// A parsed frame header: everything before the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

/// Tracks fragmented messages in one direction (RFC 6455 §5.4): a continuation needs an open
/// message, and a new message needs the previous one finished. Control frames may interleave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fragments {
    /// The kind (text or binary) of the message whose fragments are arriving, if one is open.
    open: Option<Opcode>,
}

// === impl Opcode ===

impl Opcode {
    /// The opcode of a frame's low nibble, if the RFC defines one.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The wire value.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames (RFC 6455 §5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

// === impl Frame ===

impl Frame {
    /// One unfragmented text frame.
    pub fn text(payload: impl Into<Bytes>) -> Frame {
        Frame {
            fin: true,
            opcode: Opcode::Text,
            payload: payload.into(),
        }
    }

    /// One unfragmented binary frame.
    pub fn binary(payload: impl Into<Bytes>) -> Frame {
        Frame {
            fin: true,
            opcode: Opcode::Binary,
            payload: payload.into(),
        }
    }

    /// Convox's end of stream: an empty binary frame (`convox-api.md` §4.2).
    pub fn eof() -> Frame {
        Frame::binary(Bytes::new())
    }

    /// A close frame with a status code and a reason (RFC 6455 §5.5.1); the reason is cut at
    /// a character boundary to fit the 125-byte limit.
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut keep = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(keep) {
            keep -= 1;
        }
        let mut body = BytesMut::with_capacity(2 + keep);
        body.put_u16(code);
        body.put_slice(reason.as_bytes().get(..keep).unwrap_or_default());
        Frame {
            fin: true,
            opcode: Opcode::Close,
            payload: body.freeze(),
        }
    }

    /// Whether this is Convox's EOF: a whole, empty binary message.
    pub fn is_eof(&self) -> bool {
        self.fin && self.opcode == Opcode::Binary && self.payload.is_empty()
    }

    /// The status code of a close frame, when it has one.
    pub fn close_code(&self) -> Option<u16> {
        match (self.opcode, self.payload.get(..2)) {
            (Opcode::Close, Some(&[hi, lo])) => Some(u16::from_be_bytes([hi, lo])),
            _ => None,
        }
    }
}

// === impl Violation ===

impl Violation {
    /// The close code to send the peer that committed this violation (RFC 6455 §7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            Violation::TooLarge { .. } => 1009,
            // Data not of its type: a close reason must be UTF-8 (§5.5.1).
            Violation::CloseReason => 1007,
            _ => 1002,
        }
    }
}

// === impl FrameReader ===

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader for the given role, refusing payloads over `max_payload` bytes.
    pub fn new(io: R, role: Role, max_payload: usize) -> FrameReader<R> {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            role,
            max_payload,
        }
    }

    /// The next frame, unmasked; `Ok(None)` when the transport ends cleanly between frames.
    ///
    /// Cancel-safe: bytes read before a cancellation stay buffered for the next call.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, CodecError> {
        loop {
            if let Some(header) = parse_header(&self.buf, self.role, self.max_payload)? {
                let total = header.header_len + header.payload_len;
                if self.buf.len() >= total {
                    let mut payload = self.buf.split_to(total);
                    payload.advance(header.header_len);
                    if let Some(key) = header.mask {
                        apply_mask(&mut payload, key);
                    }
                    return Ok(Some(Frame {
                        fin: header.fin,
                        opcode: header.opcode,
                        payload: payload.freeze(),
                    }));
                }
                // The length was checked against the maximum: this reservation is bounded.
                self.buf.reserve(total - self.buf.len());
            } else {
                self.buf.reserve(1024);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(CodecError::Truncated)
                };
            }
        }
    }

    /// Whether part of the next frame has come: a frame under way, which will settle what
    /// waits on the peer's next frame better than a clock.
    pub fn mid_frame(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Reads what the peer sends into the buffer, without taking frames out, until `limit`
    /// bytes are buffered; returns only when the transport ends (`Ok`) or fails: whatever came
    /// before stays buffered for [`FrameReader::read_frame`]. With `limit` bytes buffered it
    /// reads nothing more and never returns, so a peer cannot make it hold more than that.
    ///
    /// For a relay blocked writing this peer's frames to a side that is not reading them:
    /// a peer that left is seen then, not only once the other side reads again.
    ///
    /// Cancel-safe, as `read_frame`.
    pub async fn watch_for_end(&mut self, limit: usize) -> io::Result<()> {
        loop {
            let room = limit.saturating_sub(self.buf.len());
            if room == 0 {
                return std::future::pending().await;
            }
            self.buf.reserve(room.min(8 * 1024));
            let read = (&mut self.io)
                .take(room as u64)
                .read_buf(&mut self.buf)
                .await?;
            if read == 0 {
                return Ok(());
            }
        }
    }
}

// === impl FrameWriter ===

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer for the given role.
    pub fn new(io: W, role: Role) -> FrameWriter<W> {
        FrameWriter {
            io,
            role,
            pending: BytesMut::new(),
            flushing: false,
            closed: false,
        }
    }

    /// Encodes a frame behind any bytes still pending; a client masks it with a fresh key.
    /// Nothing is written until `flush`.
    ///
    /// Refuses control frames the RFC forbids (fragmented, or over 125 bytes).
    pub fn queue(&mut self, frame: &Frame) -> Result<(), CodecError> {
        if frame.opcode.is_control() {
            if !frame.fin {
                return Err(Violation::FragmentedControl {
                    opcode: frame.opcode,
                }
                .into());
            }
            if frame.payload.len() > MAX_CONTROL_PAYLOAD {
                return Err(Violation::ControlTooLong {
                    opcode: frame.opcode,
                    len: frame.payload.len() as u64,
                }
                .into());
            }
        }
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(mask_key()?),
        };
        encode(frame, mask, &mut self.pending);
        if frame.opcode == Opcode::Close {
            self.closed = true;
        }
        Ok(())
    }

    /// Writes every pending byte and flushes the transport.
    ///
    /// Cancel-safe: progress is kept, so a later call finishes the frame a cancelled one began.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.pending.is_empty() {
            let n = self.io.write(&self.pending).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.pending.advance(n);
        }
        // A TLS stream takes the bytes into its own buffer and holds them here, in its flush,
        // while the peer does not read: still pending, as far as the frame's reader is concerned.
        self.flushing = true;
        self.io.flush().await?;
        self.flushing = false;
        Ok(())
    }

    /// Queues and flushes one frame.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), CodecError> {
        self.queue(frame)?;
        Ok(self.flush().await?)
    }

    /// Whether a close frame has been queued: after it, the RFC allows no more data frames.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether bytes of a queued frame are still unwritten, or written into the transport (a
    /// TLS stream's buffer) but not yet through its flush.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.flushing
    }

    /// Shuts down the write side of the transport (after the pending bytes, if any were
    /// flushed).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

// === impl Fragments ===

impl Fragments {
    /// Checks one frame against the message sequence so far and records it; says the kind
    /// (text or binary) of the message a data frame belongs to, a continuation's included.
    pub(crate) fn check(&mut self, frame: &Frame) -> Result<Option<Opcode>, Violation> {
        match (frame.opcode, self.open) {
            (Opcode::Text | Opcode::Binary, Some(_)) => Err(Violation::InterleavedMessage),
            (Opcode::Continuation, None) => Err(Violation::StrayContinuation),
            (Opcode::Text | Opcode::Binary, None) => {
                self.open = (!frame.fin).then_some(frame.opcode);
                Ok(Some(frame.opcode))
            }
            (Opcode::Continuation, Some(kind)) => {
                if frame.fin {
                    self.open = None;
                }
                Ok(Some(kind))
            }
            (Opcode::Close, _) => check_close(&frame.payload).map(|()| None),
            (Opcode::Ping | Opcode::Pong, _) => Ok(None),
        }
    }

    /// The kind of the message whose fragments are arriving, if one is open.
    pub(crate) fn open(&self) -> Option<Opcode> {
        self.open
    }
}

/// A close frame's body: empty, or a status code an endpoint may send and a UTF-8 reason. One
/// that breaks this is not forwarded: the peer that sent it broke the protocol.
fn check_close(body: &[u8]) -> Result<(), Violation> {
    let [high, low, reason @ ..] = body else {
        return if body.is_empty() {
            Ok(())
        } else {
            Err(Violation::CloseBody)
        };
    };
    let code = u16::from_be_bytes([*high, *low]);
    if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
        return Err(Violation::CloseCode { code });
    }
    std::str::from_utf8(reason).map_err(|_| Violation::CloseReason)?;
    Ok(())
}

/// Parses the header at the front of `buf`: `Ok(None)` until all of it has arrived.
///
/// Checks run on the first two bytes where possible, so a bad frame is refused before its
/// extended length or payload is awaited.
fn parse_header(buf: &[u8], role: Role, max_payload: usize) -> Result<Option<Header>, Violation> {
    let (Some(&first), Some(&second)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let rsv = first & 0x70;
    if rsv != 0 {
        return Err(Violation::ReservedBits { bits: rsv });
    }
    let nibble = first & 0x0F;
    let opcode = Opcode::from_bits(nibble).ok_or(Violation::ReservedOpcode { opcode: nibble })?;
    let fin = first & 0x80 != 0;
    let masked = second & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(Violation::Unmasked),
        (Role::Client, true) => return Err(Violation::Masked),
        _ => {}
    }
    let short = second & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(Violation::FragmentedControl { opcode });
        }
        if usize::from(short) > MAX_CONTROL_PAYLOAD {
            return Err(Violation::ControlTooLong {
                opcode,
                len: extended_len(buf, short).unwrap_or(u64::from(short)),
            });
        }
    }
    let (len, mut at) = match short {
        126 | 127 => match extended_len(buf, short) {
            Some(len) => (len, if short == 126 { 4 } else { 10 }),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len >> 63 != 0 {
        return Err(Violation::LengthOverflow);
    }
    let payload_len = match usize::try_from(len) {
        Ok(n) if n <= max_payload => n,
        _ => {
            return Err(Violation::TooLarge {
                len,
                max: max_payload,
            });
        }
    };
    let mask = if masked {
        let Some(&[a, b, c, d]) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([a, b, c, d])
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        header_len: at,
        payload_len,
    }))
}

/// The 16- or 64-bit extended length that follows the second byte, once it has arrived.
fn extended_len(buf: &[u8], short: u8) -> Option<u64> {
    match short {
        126 => {
            let &[hi, lo] = buf.get(2..4)? else {
                return None;
            };
            Some(u64::from(u16::from_be_bytes([hi, lo])))
        }
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }
        _ => None,
    }
}

/// Appends one frame to `out` with the shortest length encoding, masked when `mask` is given.
fn encode(frame: &Frame, mask: Option<[u8; 4]>, out: &mut BytesMut) {
    let len = frame.payload.len();
    out.reserve(14 + len);
    out.put_u8(u8::from(frame.fin) << 7 | frame.opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0x00 };
    if len <= 125 {
        // `len` fits in seven bits here.
        out.put_u8(mask_bit | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.put_u8(mask_bit | 126);
        out.put_u16(short);
    } else {
        out.put_u8(mask_bit | 127);
        out.put_u64(len as u64);
    }
    if let Some(key) = mask {
        out.put_slice(&key);
    }
    let body = out.len();
    out.put_slice(&frame.payload);
    if let (Some(key), Some(tail)) = (mask, out.get_mut(body..)) {
        apply_mask(tail, key);
    }
}

/// XORs `bytes` with the repeated masking key (RFC 6455 §5.3); masking and unmasking are the
/// same operation.
fn apply_mask(bytes: &mut [u8], key: [u8; 4]) {
    let mut chunks = bytes.chunks_exact_mut(4);
    for chunk in &mut chunks {
        for (b, k) in chunk.iter_mut().zip(key) {
            *b ^= k;
        }
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// A fresh masking key from the system's randomness (RFC 6455 §5.3 requires it be
/// unpredictable).
fn mask_key() -> Result<[u8; 4], CodecError> {
    let mut key = [0u8; 4];
    getrandom::fill(&mut key).map_err(CodecError::Entropy)?;
    Ok(key)
}
