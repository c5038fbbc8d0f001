//! Tests of the frame codec and the caller-side handshake check, cross-checked against
//! mock-rack's independent codec.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method};
use mock_rack::ws as peer;
use tokio::io::AsyncWriteExt;

use super::*;

const LENGTH_CLASSES: [usize; 5] = [0, 125, 126, 65_535, 65_536];

fn payload(len: usize) -> Bytes {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

/// A frame header written by hand, so the tests do not depend on the writer they check.
fn raw_header(first: u8, len: u64, mask: Option<[u8; 4]>) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u8(first);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.put_u8(bit | len as u8),
        126..=65_535 => {
            out.put_u8(bit | 126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(bit | 127);
            out.put_u64(len);
        }
    }
    if let Some(key) = mask {
        out.put_slice(&key);
    }
    out
}

/// Reads one frame from `wire` as `role`.
async fn read_one(wire: &[u8], role: Role, max: usize) -> Result<Option<Frame>, CodecError> {
    FrameReader::new(wire, role, max).read_frame().await
}

async fn refused(wire: &[u8], role: Role, max: usize) -> Violation {
    match read_one(wire, role, max).await {
        Err(CodecError::Protocol(v)) => v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[tokio::test]
async fn every_length_class_round_trips_masked_and_unmasked() {
    for len in LENGTH_CLASSES {
        for (writer_role, reader_role) in
            [(Role::Client, Role::Server), (Role::Server, Role::Client)]
        {
            let (a, b) = tokio::io::duplex(1 << 20);
            let mut writer = FrameWriter::new(a, writer_role);
            let mut reader = FrameReader::new(b, reader_role, DEFAULT_MAX_PAYLOAD);
            let frame = Frame {
                fin: len % 2 == 0,
                opcode: Opcode::Binary,
                payload: payload(len),
            };
            let sent = frame.clone();
            let write = tokio::spawn(async move { writer.write_frame(&sent).await });
            let got = reader.read_frame().await.unwrap().unwrap();
            write.await.unwrap().unwrap();
            assert_eq!(got, frame, "len {len}, writer {writer_role:?}");
        }
    }
}

#[tokio::test]
async fn the_wire_format_uses_the_shortest_length_and_masks_only_as_a_client() {
    for len in LENGTH_CLASSES {
        let header = match len {
            0..=125 => 2,
            126..=65_535 => 4,
            _ => 10,
        };
        for (role, mask_len) in [(Role::Server, 0), (Role::Client, 4)] {
            let mut wire = Vec::new();
            let mut writer = FrameWriter::new(&mut wire, role);
            writer
                .write_frame(&Frame::text(payload(len)))
                .await
                .unwrap();
            assert_eq!(wire.len(), header + mask_len + len, "len {len} {role:?}");
            assert_eq!(wire[1] & 0x80 != 0, role == Role::Client);
            if role == Role::Server {
                assert_eq!(&wire[header..], &payload(len)[..]);
            }
        }
    }
}

#[tokio::test]
async fn mock_racks_codec_reads_what_we_write_and_we_read_what_it_writes() {
    for len in LENGTH_CLASSES {
        // Ours as a client, theirs as a server.
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut ours = FrameWriter::new(a, Role::Client);
        let mut theirs = peer::WsReader::new(b, peer::Role::Server);
        ours.write_frame(&Frame::text(payload(len))).await.unwrap();
        let got = theirs.read_frame().await.unwrap().unwrap();
        assert_eq!(
            (got.fin, got.opcode, got.payload),
            (true, peer::Opcode::Text, payload(len))
        );

        // Theirs as a client, ours as a server.
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut theirs = peer::WsWriter::new(a, peer::Role::Client);
        let mut ours = FrameReader::new(b, Role::Server, DEFAULT_MAX_PAYLOAD);
        theirs
            .send(false, peer::Opcode::Binary, &payload(len))
            .await
            .unwrap();
        let got = ours.read_frame().await.unwrap().unwrap();
        assert_eq!(
            got,
            Frame {
                fin: false,
                opcode: Opcode::Binary,
                payload: payload(len)
            }
        );
    }
}

#[tokio::test]
async fn an_invalid_utf8_text_frame_passes_byte_exact() {
    let bytes = Bytes::from_static(b"\xff\xfe caf\xc3 \xed\xa0\x80 \x00\x80");
    let mut wire = Vec::new();
    FrameWriter::new(&mut wire, Role::Client)
        .write_frame(&Frame::text(bytes.clone()))
        .await
        .unwrap();
    let got = read_one(&wire, Role::Server, 1024).await.unwrap().unwrap();
    assert_eq!(got, Frame::text(bytes));
}

#[tokio::test]
async fn a_frame_arriving_byte_by_byte_is_read_whole() {
    let mut wire = Vec::new();
    FrameWriter::new(&mut wire, Role::Client)
        .write_frame(&Frame::text(payload(300)))
        .await
        .unwrap();
    let (mut a, b) = tokio::io::duplex(16);
    let feed = tokio::spawn(async move {
        for byte in wire {
            a.write_all(&[byte]).await.unwrap();
        }
        a
    });
    let mut reader = FrameReader::new(b, Role::Server, 1024);
    assert_eq!(
        reader.read_frame().await.unwrap(),
        Some(Frame::text(payload(300)))
    );
    drop(feed.await.unwrap());
    assert!(
        reader.read_frame().await.unwrap().is_none(),
        "clean end between frames"
    );
}

#[tokio::test]
async fn a_connection_ending_inside_a_frame_is_truncated() {
    let mut wire = raw_header(0x81, 10, Some([1, 2, 3, 4]));
    wire.put_slice(b"abc");
    assert!(matches!(
        read_one(&wire, Role::Server, 1024).await,
        Err(CodecError::Truncated)
    ));
}

#[tokio::test]
async fn oversized_payloads_are_refused_before_they_are_read() {
    // Only the header is on the wire: the refusal must not wait for the payload.
    let wire = raw_header(0x82, 1025, Some([0; 4]));
    assert_eq!(
        refused(&wire, Role::Server, 1024).await,
        Violation::TooLarge {
            len: 1025,
            max: 1024
        }
    );
    let wire = raw_header(0x82, (16 << 20) + 1, None);
    assert_eq!(
        refused(&wire, Role::Client, DEFAULT_MAX_PAYLOAD).await,
        Violation::TooLarge {
            len: (16 << 20) + 1,
            max: DEFAULT_MAX_PAYLOAD
        }
    );
    let wire = raw_header(0x82, 1 << 63, None);
    assert_eq!(
        refused(&wire, Role::Client, usize::MAX).await,
        Violation::LengthOverflow
    );
    assert_eq!(Violation::TooLarge { len: 0, max: 0 }.close_code(), 1009);
}

#[tokio::test]
async fn fragmented_or_long_control_frames_are_refused() {
    for (opcode, first) in [
        (Opcode::Close, 0x08),
        (Opcode::Ping, 0x09),
        (Opcode::Pong, 0x0A),
    ] {
        let wire = raw_header(first, 0, Some([0; 4]));
        assert_eq!(
            refused(&wire, Role::Server, 1024).await,
            Violation::FragmentedControl { opcode }
        );
        let wire = raw_header(0x80 | first, 126, Some([0; 4]));
        assert_eq!(
            refused(&wire, Role::Server, 1024).await,
            Violation::ControlTooLong { opcode, len: 126 }
        );
    }
    // The writer will not produce them either.
    let mut writer = FrameWriter::new(Vec::new(), Role::Server);
    let long_ping = Frame {
        fin: true,
        opcode: Opcode::Ping,
        payload: payload(126),
    };
    assert!(matches!(
        writer.queue(&long_ping),
        Err(CodecError::Protocol(Violation::ControlTooLong { .. }))
    ));
    let split_pong = Frame {
        fin: false,
        opcode: Opcode::Pong,
        payload: Bytes::new(),
    };
    assert!(matches!(
        writer.queue(&split_pong),
        Err(CodecError::Protocol(Violation::FragmentedControl { .. }))
    ));
    assert!(!writer.has_pending());
}

#[tokio::test]
async fn reserved_opcodes_and_rsv_bits_are_refused() {
    for opcode in (0x3..=0x7).chain(0xB..=0xF) {
        let wire = raw_header(0x80 | opcode, 0, Some([0; 4]));
        assert_eq!(
            refused(&wire, Role::Server, 1024).await,
            Violation::ReservedOpcode { opcode }
        );
    }
    for bits in [0x40, 0x20, 0x10, 0x70] {
        let wire = raw_header(0x81 | bits, 0, Some([0; 4]));
        assert_eq!(
            refused(&wire, Role::Server, 1024).await,
            Violation::ReservedBits { bits }
        );
    }
}

#[tokio::test]
async fn masking_must_match_the_peers_role() {
    assert_eq!(
        refused(&raw_header(0x81, 1, None), Role::Server, 1024).await,
        Violation::Unmasked
    );
    let wire = raw_header(0x81, 1, Some([1, 2, 3, 4]));
    assert_eq!(refused(&wire, Role::Client, 1024).await, Violation::Masked);
}

#[tokio::test]
async fn every_client_frame_gets_a_fresh_mask() {
    let mut wire = Vec::new();
    let mut writer = FrameWriter::new(&mut wire, Role::Client);
    for _ in 0..4 {
        writer
            .write_frame(&Frame::text(&b"same"[..]))
            .await
            .unwrap();
    }
    let keys: Vec<&[u8]> = wire.chunks(10).map(|frame| &frame[2..6]).collect();
    let distinct: std::collections::HashSet<&[u8]> = keys.iter().copied().collect();
    assert_eq!(distinct.len(), 4, "keys: {keys:?}");
    assert!(!distinct.contains(&[0u8; 4][..]), "keys: {keys:?}");
}

#[test]
fn frame_helpers_say_what_convox_means() {
    assert!(Frame::eof().is_eof());
    assert!(!Frame::binary(&b"x"[..]).is_eof());
    assert!(!Frame::text(Bytes::new()).is_eof());
    let close = Frame::close(1008, &"r".repeat(200));
    assert_eq!(close.payload.len(), MAX_CONTROL_PAYLOAD);
    assert_eq!(close.close_code(), Some(1008));
    let accented = Frame::close(1000, &"é".repeat(100));
    assert_eq!(
        accented.payload.len(),
        2 + 122,
        "cut before a split character"
    );
    assert_eq!(Frame::text(&b"\x03\xe8"[..]).close_code(), None);
}

#[test]
fn the_accept_key_is_the_one_of_rfc_6455() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    // And the one mock-rack computes, for a key of the captured CLI handshake.
    let key = "1y4rF1VcW2vLEIYpWG8sjg==";
    assert_eq!(accept_key(key), peer::accept_key(key.as_bytes()));
}

fn upgrade_headers(extra: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "1y4rF1VcW2vLEIYpWG8sjg=="),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    for (name, value) in extra {
        h.insert(*name, HeaderValue::from_static(value));
    }
    h
}

/// One row of the upgrade table: the request's method and changed headers, and the outcome.
fn check(method: Method, extra: &[(&'static str, &'static str)], want: Result<(), UpgradeError>) {
    let got = check_upgrade(&method, &upgrade_headers(extra)).map(|_| ());
    assert_eq!(got, want, "{method} {extra:?}");
}

#[test]
fn valid_upgrades_are_recognised_as_browsers_and_the_cli_send_them() {
    let key = check_upgrade(&Method::GET, &upgrade_headers(&[])).unwrap();
    assert_eq!(key.as_str(), "1y4rF1VcW2vLEIYpWG8sjg==");
    assert_eq!(key.accept(), accept_key("1y4rF1VcW2vLEIYpWG8sjg=="));
    check(
        Method::GET,
        &[("connection", "keep-alive, Upgrade")],
        Ok(()),
    );
    check(Method::GET, &[("upgrade", "WebSocket")], Ok(()));
    check(
        Method::GET,
        &[("sec-websocket-extensions", "permessage-deflate")],
        Ok(()),
    );
}

#[test]
fn invalid_upgrades_are_refused_with_the_reason() {
    check(Method::POST, &[], Err(UpgradeError::Method(Method::POST)));
    check(
        Method::GET,
        &[("connection", "keep-alive")],
        Err(UpgradeError::Connection),
    );
    check(
        Method::GET,
        &[("upgrade", "h2c")],
        Err(UpgradeError::Upgrade),
    );
    check(
        Method::GET,
        &[("sec-websocket-version", "8")],
        Err(UpgradeError::Version),
    );
    check(
        Method::GET,
        &[("sec-websocket-key", "c2hvcnQ=")],
        Err(UpgradeError::Key),
    );
    check(
        Method::GET,
        &[("sec-websocket-key", "not base64!")],
        Err(UpgradeError::Key),
    );
    let mut two_keys = upgrade_headers(&[]);
    two_keys.append(
        "sec-websocket-key",
        HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
    );
    assert_eq!(
        check_upgrade(&Method::GET, &two_keys),
        Err(UpgradeError::Key)
    );
    let mut no_version = upgrade_headers(&[]);
    no_version.remove("sec-websocket-version");
    assert_eq!(
        check_upgrade(&Method::GET, &no_version),
        Err(UpgradeError::Version)
    );
}

#[test]
fn a_close_frame_carries_no_code_or_a_code_an_endpoint_may_send_and_a_utf8_reason() {
    use crate::proxy::ws::codec::Fragments;
    let close = |body: &[u8]| Frame {
        fin: true,
        opcode: Opcode::Close,
        payload: Bytes::copy_from_slice(body),
    };
    let with_code = |code: u16, reason: &[u8]| {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(reason);
        body
    };
    for code in [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
        assert_eq!(
            Fragments::default().check(&close(&with_code(code, b"bye"))),
            Ok(None),
            "{code}"
        );
    }
    assert_eq!(Fragments::default().check(&close(b"")), Ok(None));
    assert_eq!(
        Fragments::default().check(&close(&[3])),
        Err(Violation::CloseBody)
    );
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        assert_eq!(
            Fragments::default().check(&close(&with_code(code, b""))),
            Err(Violation::CloseCode { code }),
            "{code}"
        );
    }
    assert_eq!(
        Fragments::default().check(&close(&with_code(1000, b"\xff\xfe"))),
        Err(Violation::CloseReason)
    );
}
