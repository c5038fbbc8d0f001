//! The test-only compression switch ([`MockRack::set_gzip_answers`](crate::MockRack)): a rack,
//! or a proxy in front of it, that sends `Content-Encoding: gzip` whatever the request's
//! `Accept-Encoding` said. The real rack never does this; a gateway must cope with it anyway.
//!
//! The encoding is valid gzip (RFC 1952) made of *stored* deflate blocks (RFC 1951 §3.2.4):
//! every decoder reads it, and the answer's own bytes still stand in clear inside the stream,
//! so a test can tell from the raw bytes whether an answer's content reached a client.
//!
//! Invariant: an answer without a body, or already encoded, is left as it is; any other answer
//! is the same status and headers plus `Content-Encoding: gzip`, its body the encoding of the
//! original bytes.

use bytes::Bytes;
use http::Response;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, HeaderValue};
use http_body_util::{BodyExt, Full};

use crate::respond::Body;

/// The most bytes one stored block holds.
const MAX_STORED: usize = 0xFFFF;

/// `response` with its body gzip-encoded.
pub(crate) async fn encode_response(response: Response<Body>) -> Response<Body> {
    if response.headers().contains_key(CONTENT_ENCODING) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    if bytes.is_empty() {
        return Response::from_parts(parts, Full::new(bytes));
    }
    parts
        .headers
        .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    // hyper computes the length of the new body.
    parts.headers.remove(CONTENT_LENGTH);
    Response::from_parts(parts, Full::new(Bytes::from(encode(&bytes))))
}

/// `data` as a gzip member of stored deflate blocks.
pub(crate) fn encode(data: &[u8]) -> Vec<u8> {
    // ID1 ID2, CM = deflate, no flags, no mtime, no extra flags, OS = unknown.
    let mut out = vec![0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xFF];
    let mut blocks = data.chunks(MAX_STORED).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[0x01, 0x00, 0x00, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        // BFINAL on the last block, BTYPE = 00 (stored); the header byte ends the bit stream's
        // byte, so LEN and NLEN start byte-aligned.
        out.push(u8::from(blocks.peek().is_none()));
        let len = u16::try_from(block.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    // ISIZE is the length modulo 2^32.
    let isize = u32::try_from(data.len() & 0xFFFF_FFFF).unwrap_or(u32::MAX);
    out.extend_from_slice(&isize.to_le_bytes());
    out
}

/// CRC-32 of gzip (ISO-HDLC: reflected polynomial 0xEDB88320).
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a gzip member of stored blocks back: its data, checked against its trailer.
    fn decode_stored(gz: &[u8]) -> Vec<u8> {
        assert_eq!(
            &gz[..4],
            &[0x1F, 0x8B, 0x08, 0x00],
            "gzip, deflate, no flags"
        );
        let mut at = 10;
        let mut out = Vec::new();
        loop {
            let header = gz[at];
            assert_eq!(header & 0b110, 0, "a stored block");
            let len = usize::from(u16::from_le_bytes([gz[at + 1], gz[at + 2]]));
            let nlen = u16::from_le_bytes([gz[at + 3], gz[at + 4]]);
            assert_eq!(usize::from(!nlen), len);
            out.extend_from_slice(&gz[at + 5..at + 5 + len]);
            at += 5 + len;
            if header & 1 == 1 {
                break;
            }
        }
        let crc = u32::from_le_bytes(gz[at..at + 4].try_into().unwrap());
        let size = u32::from_le_bytes(gz[at + 4..at + 8].try_into().unwrap());
        assert_eq!(crc, crc32(&out));
        assert_eq!(size as usize, out.len());
        assert_eq!(at + 8, gz.len(), "nothing after the trailer");
        out
    }

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn the_encoding_is_stored_blocks_that_read_back() {
        assert_eq!(
            encode(b""),
            [
                0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF, 1, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        let small = b"{\n  \"env\": \"FOO=bar\"\n}\n";
        let gz = encode(small);
        assert_eq!(decode_stored(&gz), small);
        assert!(gz.windows(small.len()).any(|w| w == small), "in clear");
        let large: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(decode_stored(&encode(&large)), large);
    }
}
