//! A small RFC 6455 codec, written here rather than taken from a library so that it can do what
//! Convox needs and libraries refuse: text frames carry arbitrary bytes (spec §4.2), and an empty
//! binary frame is an ordinary message (the EOF signal). It serves both roles, so tests drive the
//! mock rack (and the gateway) with the same code.
//!
//! The gateway has a codec of its own (`src/proxy/ws/codec.rs`) and the two stay apart on
//! purpose: the relay tests check the gateway's framing against one written separately, so a
//! framing mistake in either shows up as a disagreement instead of passing unseen because both
//! ends share it.
//!
//! Invariant: payloads are never interpreted (no UTF-8 validation, no reassembly across
//! messages), every length is checked against a maximum before anything is allocated, and frames
//! from the peer are checked for the masking their role requires (RFC 6455 §5.1).

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The GUID of RFC 6455 §1.3 that `Sec-WebSocket-Accept` hashes with the client's key.
pub const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest message (and so frame) accepted by default: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;

/// A frame opcode (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x0: the next fragment of a message.
    Continuation,
    /// 0x1: text; here, any bytes.
    Text,
    /// 0x2: binary.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

/// Which end of the connection this codec is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads masked frames, writes unmasked ones.
    Server,
    /// Reads unmasked frames, writes masked ones.
    Client,
}

/// One frame, unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit: last fragment of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The payload, unmasked.
    pub payload: Bytes,
}

/// A whole message: data reassembled from its fragments, or a control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message; the bytes are not checked for UTF-8.
    Text(Bytes),
    /// A binary message; Convox uses an empty one as EOF.
    Binary(Bytes),
    /// A ping with its application data.
    Ping(Bytes),
    /// A pong with its application data.
    Pong(Bytes),
    /// A close frame, with its status code and reason when present.
    Close(Option<CloseFrame>),
}

/// The body of a close frame (RFC 6455 §5.5.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code, e.g. 1000.
    pub code: u16,
    /// The reason, as sent.
    pub reason: Bytes,
}

/// Why a WebSocket stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The transport failed or ended in the middle of a frame.
    #[error("websocket transport: {0}")]
    Io(#[from] io::Error),
    /// The peer broke RFC 6455.
    #[error("websocket protocol violation: {0}")]
    Protocol(&'static str),
    /// A frame or message is larger than the reader accepts.
    #[error("websocket message of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// The announced or accumulated length.
        len: u64,
        /// The reader's limit.
        max: usize,
    },
}

/// A parsed frame header: everything before the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, when the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Bytes of header, masking key included.
    pub header_len: usize,
    /// Bytes of payload.
    pub payload_len: usize,
}

/// Reads frames and messages from one direction of a connection.
pub struct WsReader<R> {
    io: R,
    buf: BytesMut,
    role: Role,
    max: usize,
    /// A fragmented message being reassembled: its opcode and the bytes so far.
    partial: Option<(Opcode, BytesMut)>,
}

/// Writes frames to one direction of a connection.
pub struct WsWriter<W> {
    io: W,
    role: Role,
    buf: BytesMut,
}

// === impl Opcode ===

impl Opcode {
    /// The opcode for the low nibble of a frame's first byte, if defined.
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

    /// The opcode's wire value.
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

// === impl WsError ===

impl WsError {
    /// The close code to send the peer for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Io(_) => 1006,
            WsError::Protocol(_) => 1002,
            WsError::TooLarge { .. } => 1009,
        }
    }
}

// === impl WsReader ===

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// A reader for `role` with the default size limit.
    pub fn new(io: R, role: Role) -> WsReader<R> {
        WsReader::with_max(io, role, DEFAULT_MAX_MESSAGE)
    }

    /// A reader for `role` accepting messages of at most `max` bytes.
    pub fn with_max(io: R, role: Role, max: usize) -> WsReader<R> {
        WsReader {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            role,
            max,
            partial: None,
        }
    }

    /// Bytes already read from the transport that belong to frames not yet returned (e.g. data
    /// that arrived right behind the upgrade response).
    pub fn prepend(&mut self, bytes: &[u8]) {
        let mut joined = BytesMut::with_capacity(bytes.len() + self.buf.len());
        joined.extend_from_slice(bytes);
        joined.extend_from_slice(&self.buf);
        self.buf = joined;
    }

    /// The next frame, or `None` when the transport ends cleanly between frames.
    ///
    /// Cancel-safe: bytes read before a cancellation stay buffered for the next call.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, WsError> {
        loop {
            if let Some(header) = parse_header(&self.buf, self.role, self.max)? {
                let total = header.header_len + header.payload_len;
                if self.buf.len() >= total {
                    let mut bytes = self.buf.split_to(total);
                    bytes.advance(header.header_len);
                    if let Some(mask) = header.mask {
                        apply_mask(&mut bytes, mask);
                    }
                    return Ok(Some(Frame {
                        fin: header.fin,
                        opcode: header.opcode,
                        payload: bytes.freeze(),
                    }));
                }
                self.buf.reserve(total - self.buf.len());
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(WsError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// The next message: data frames are reassembled, control frames come back as they arrive
    /// (also in the middle of a fragmented message). `None` when the transport ends cleanly.
    ///
    /// Cancel-safe, like `read_frame`: a partly reassembled message is kept.
    pub async fn read_message(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            let Some(frame) = self.read_frame().await? else {
                if self.partial.is_some() {
                    return Err(WsError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                return Ok(None);
            };
            match frame.opcode {
                Opcode::Ping => return Ok(Some(Message::Ping(frame.payload))),
                Opcode::Pong => return Ok(Some(Message::Pong(frame.payload))),
                Opcode::Close => {
                    return parse_close(frame.payload).map(|c| Some(Message::Close(c)));
                }
                Opcode::Text | Opcode::Binary => {
                    if self.partial.is_some() {
                        return Err(WsError::Protocol(
                            "new data frame inside a fragmented message",
                        ));
                    }
                    if frame.fin {
                        return Ok(Some(data_message(frame.opcode, frame.payload)));
                    }
                    self.partial = Some((frame.opcode, BytesMut::from(&frame.payload[..])));
                }
                Opcode::Continuation => {
                    let Some((opcode, mut acc)) = self.partial.take() else {
                        return Err(WsError::Protocol("continuation frame without a message"));
                    };
                    let len = acc.len() + frame.payload.len();
                    if len > self.max {
                        return Err(WsError::TooLarge {
                            len: len as u64,
                            max: self.max,
                        });
                    }
                    acc.extend_from_slice(&frame.payload);
                    if frame.fin {
                        return Ok(Some(data_message(opcode, acc.freeze())));
                    }
                    self.partial = Some((opcode, acc));
                }
            }
        }
    }
}

// === impl WsWriter ===

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    /// A writer for `role`.
    pub fn new(io: W, role: Role) -> WsWriter<W> {
        WsWriter {
            io,
            role,
            buf: BytesMut::new(),
        }
    }

    /// Writes and flushes one frame; a client masks it with a fresh key.
    pub async fn send(&mut self, fin: bool, opcode: Opcode, payload: &[u8]) -> io::Result<()> {
        let mask = match self.role {
            Role::Server => None,
            Role::Client => Some(mask_key()),
        };
        self.buf.clear();
        encode_frame(fin, opcode, payload, mask, &mut self.buf);
        self.io.write_all(&self.buf).await?;
        self.io.flush().await
    }

    /// One unfragmented text frame.
    pub async fn text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(true, Opcode::Text, payload).await
    }

    /// One unfragmented binary frame; `binary(&[])` is Convox's EOF.
    pub async fn binary(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(true, Opcode::Binary, payload).await
    }

    /// A ping.
    pub async fn ping(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(true, Opcode::Ping, payload).await
    }

    /// A pong echoing a ping's payload.
    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(true, Opcode::Pong, payload).await
    }

    /// A close frame with a status code and reason.
    pub async fn close(&mut self, code: u16, reason: &[u8]) -> io::Result<()> {
        let mut body = Vec::with_capacity(2 + reason.len());
        body.extend_from_slice(&code.to_be_bytes());
        body.extend_from_slice(reason);
        self.send(true, Opcode::Close, &body).await
    }

    /// Shuts down the write side of the transport.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(client_key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(client_key);
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Whether a `Sec-WebSocket-Key` is the base64 of 16 bytes, as gorilla requires.
pub fn is_valid_client_key(key: &[u8]) -> bool {
    STANDARD.decode(key).is_ok_and(|k| k.len() == 16)
}

/// Parses the header at the front of `buf`: `Ok(None)` until enough bytes are there.
///
/// Refuses reserved bits (no extension is ever negotiated), unknown opcodes, fragmented or
/// oversized control frames, 64-bit lengths with the top bit set, lengths over `max`, and frames
/// whose masking does not fit the reader's role.
pub fn parse_header(buf: &[u8], role: Role, max: usize) -> Result<Option<FrameHeader>, WsError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(WsError::Protocol("unknown opcode"))?;
    let fin = b0 & 0x80 != 0;
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => return Err(WsError::Protocol("client frame is not masked")),
        (Role::Client, true) => return Err(WsError::Protocol("server frame is masked")),
        _ => {}
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(b);
                (u64::from_be_bytes(raw), 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len >> 63 != 0 {
        return Err(WsError::Protocol(
            "64-bit length with the most significant bit set",
        ));
    }
    if opcode.is_control() {
        if !fin {
            return Err(WsError::Protocol("fragmented control frame"));
        }
        if len > 125 {
            return Err(WsError::Protocol("control frame payload over 125 bytes"));
        }
    }
    let payload_len = match usize::try_from(len) {
        Ok(n) if n <= max => n,
        _ => return Err(WsError::TooLarge { len, max }),
    };
    let mask = if masked {
        let Some(k) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        at += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        opcode,
        mask,
        header_len: at,
        payload_len,
    }))
}

/// Decodes one whole frame from the front of `buf`, returning it and the bytes it used.
pub fn decode_frame(buf: &[u8], role: Role, max: usize) -> Result<Option<(Frame, usize)>, WsError> {
    let Some(header) = parse_header(buf, role, max)? else {
        return Ok(None);
    };
    let total = header.header_len + header.payload_len;
    let Some(raw) = buf.get(header.header_len..total) else {
        return Ok(None);
    };
    let mut payload = BytesMut::from(raw);
    if let Some(mask) = header.mask {
        apply_mask(&mut payload, mask);
    }
    let frame = Frame {
        fin: header.fin,
        opcode: header.opcode,
        payload: payload.freeze(),
    };
    Ok(Some((frame, total)))
}

/// Appends one frame to `out`, masked with `mask` when given (clients must mask, servers must not).
pub fn encode_frame(
    fin: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut BytesMut,
) {
    out.reserve(14 + payload.len());
    out.put_u8(u8::from(fin) << 7 | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.put_u8(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(mask_bit | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(mask_bit | 127);
            out.put_u64(n as u64);
        }
    }
    match mask {
        Some(key) => {
            out.put_slice(&key);
            let start = out.len();
            out.put_slice(payload);
            if let Some(tail) = out.get_mut(start..) {
                apply_mask(tail, key);
            }
        }
        None => out.put_slice(payload),
    }
}

fn apply_mask(bytes: &mut [u8], key: [u8; 4]) {
    for (b, k) in bytes.iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

fn mask_key() -> [u8; 4] {
    let mut key = [0u8; 4];
    if getrandom::fill(&mut key).is_err() {
        // Masking only protects intermediaries from crafted bytes; a fixed key still frames
        // correctly, so a failing entropy source must not stop a test client.
        key = [0x6d, 0x6f, 0x63, 0x6b];
    }
    key
}

fn data_message(opcode: Opcode, payload: Bytes) -> Message {
    if opcode == Opcode::Binary {
        Message::Binary(payload)
    } else {
        Message::Text(payload)
    }
}

fn parse_close(payload: Bytes) -> Result<Option<CloseFrame>, WsError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(WsError::Protocol("close frame with a one-byte body")),
        _ => {
            let mut payload = payload;
            let code = payload.get_u16();
            Ok(Some(CloseFrame {
                code,
                reason: payload,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, opcode: Opcode, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_frame(fin, opcode, payload, Some([1, 2, 3, 4]), &mut out);
        out
    }

    #[test]
    fn the_accept_key_matches_rfc_6455_section_1_3() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(is_valid_client_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_client_key(b"c2hvcnQ="));
    }

    #[test]
    fn masked_frames_round_trip_at_every_length_encoding() {
        for len in [0usize, 1, 125, 126, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let wire = client_frame(true, Opcode::Binary, &payload);
            let (frame, used) = decode_frame(&wire, Role::Server, usize::MAX >> 1)
                .unwrap()
                .unwrap();
            assert_eq!(used, wire.len());
            assert_eq!(frame.payload, payload);
        }
    }

    #[test]
    fn text_frames_are_not_checked_for_utf8() {
        let wire = client_frame(true, Opcode::Text, b"\xff\xfe\xc3");
        let (frame, _) = decode_frame(&wire, Role::Server, 1024).unwrap().unwrap();
        assert_eq!(frame.opcode, Opcode::Text);
        assert_eq!(&frame.payload[..], b"\xff\xfe\xc3");
    }

    #[test]
    fn partial_input_asks_for_more() {
        let wire = client_frame(true, Opcode::Text, b"hello");
        for cut in 0..wire.len() {
            assert!(
                decode_frame(&wire[..cut], Role::Server, 1024)
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[test]
    fn protocol_violations_are_refused() {
        let mut unmasked = BytesMut::new();
        encode_frame(true, Opcode::Text, b"x", None, &mut unmasked);
        assert!(matches!(
            decode_frame(&unmasked, Role::Server, 1024),
            Err(WsError::Protocol(_))
        ));
        assert!(matches!(
            decode_frame(&client_frame(true, Opcode::Text, b"x"), Role::Client, 1024),
            Err(WsError::Protocol(_))
        ));
        let mut rsv = client_frame(true, Opcode::Text, b"x");
        rsv[0] |= 0x40;
        assert!(matches!(
            decode_frame(&rsv, Role::Server, 1024),
            Err(WsError::Protocol(_))
        ));
        let fragmented_ping = client_frame(false, Opcode::Ping, b"x");
        assert!(matches!(
            decode_frame(&fragmented_ping, Role::Server, 1024),
            Err(WsError::Protocol(_))
        ));
        let big_ping = client_frame(true, Opcode::Ping, &[0; 126]);
        assert!(matches!(
            decode_frame(&big_ping, Role::Server, 1024),
            Err(WsError::Protocol(_))
        ));
        let huge = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            decode_frame(&huge, Role::Server, 1024),
            Err(WsError::Protocol(_))
        ));
        let long = client_frame(true, Opcode::Binary, &[0; 2000]);
        assert!(matches!(
            decode_frame(&long, Role::Server, 1024),
            Err(WsError::TooLarge {
                len: 2000,
                max: 1024
            })
        ));
        let bad_opcode = [0x83, 0x80, 0, 0, 0, 0];
        assert!(matches!(
            decode_frame(&bad_opcode, Role::Server, 1024),
            Err(WsError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn fragments_reassemble_around_interleaved_control_frames() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&client_frame(false, Opcode::Text, b"caf"));
        wire.extend_from_slice(&client_frame(true, Opcode::Ping, b"p"));
        wire.extend_from_slice(&client_frame(false, Opcode::Continuation, b"\xc3"));
        wire.extend_from_slice(&client_frame(true, Opcode::Continuation, b"\xa9"));
        wire.extend_from_slice(&client_frame(true, Opcode::Binary, b""));
        wire.extend_from_slice(&client_frame(true, Opcode::Close, b"\x03\xe8bye"));
        let mut reader = WsReader::new(&wire[..], Role::Server);
        assert_eq!(
            reader.read_message().await.unwrap(),
            Some(Message::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(
            reader.read_message().await.unwrap(),
            Some(Message::Text(Bytes::from_static("café".as_bytes())))
        );
        assert_eq!(
            reader.read_message().await.unwrap(),
            Some(Message::Binary(Bytes::new()))
        );
        assert_eq!(
            reader.read_message().await.unwrap(),
            Some(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: Bytes::from_static(b"bye")
            })))
        );
        assert_eq!(reader.read_message().await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stray_continuation_or_an_interrupted_message_is_an_error() {
        let wire = client_frame(true, Opcode::Continuation, b"x");
        let mut reader = WsReader::new(&wire[..], Role::Server);
        assert!(matches!(
            reader.read_message().await,
            Err(WsError::Protocol(_))
        ));

        let mut wire = client_frame(false, Opcode::Text, b"a");
        wire.extend_from_slice(&client_frame(true, Opcode::Text, b"b"));
        let mut reader = WsReader::new(&wire[..], Role::Server);
        assert!(matches!(
            reader.read_message().await,
            Err(WsError::Protocol(_))
        ));

        let wire = client_frame(false, Opcode::Text, b"a");
        let mut reader = WsReader::new(&wire[..], Role::Server);
        assert!(matches!(reader.read_message().await, Err(WsError::Io(_))));
    }

    #[tokio::test]
    async fn a_writer_and_reader_of_opposite_roles_agree() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut client = WsWriter::new(a, Role::Client);
        let mut server = WsReader::new(b, Role::Server);
        client.text(b"\xff").await.unwrap();
        client.binary(&[]).await.unwrap();
        client.close(1000, b"").await.unwrap();
        assert_eq!(
            server.read_message().await.unwrap(),
            Some(Message::Text(Bytes::from_static(b"\xff")))
        );
        assert_eq!(
            server.read_message().await.unwrap(),
            Some(Message::Binary(Bytes::new()))
        );
        assert!(matches!(
            server.read_message().await.unwrap(),
            Some(Message::Close(Some(_)))
        ));
    }
}
