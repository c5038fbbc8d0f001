//! End-to-end tests over real TCP against `mock_rack::MockRack`: the gateway's handshake and
//! codec as a client of the rack's exec socket, and a whole relay from a caller to the rack.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use events::hash::Hash;
use http::Request;
use mock_rack::ws::{Message, Role as PeerRole, WsReader, WsWriter};
use mock_rack::{EXIT_CODE_HEADER, EXIT_MARKER as RACK_MARKER, MockRack, SEED_APP, SEED_PROCESS};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::*;

const PASSWORD: &str = "rack-password";
const PATIENCE: Duration = Duration::from_secs(10);

/// What a caller's exec session sends on stdin: invalid UTF-8, and a character cut in two.
const STDIN: [&[u8]; 3] = [b"\xff\xfe raw\n", b"caf\xc3", b"\xa9\n"];

async fn rack() -> MockRack {
    MockRack::start(SocketAddr::from(([127, 0, 0, 1], 0)), PASSWORD)
        .await
        .unwrap()
}

/// The upstream request as the proxy handler builds it: exec on the seeded process, the rack's
/// credentials, an `Origin` naming the rack itself, the CLI's option headers.
fn exec_request(rack: &MockRack, origin: &str, exit_code: &str) -> Request<()> {
    let host = rack.addr().to_string();
    let credentials = STANDARD.encode(format!("convox:{PASSWORD}"));
    Request::get(format!("/apps/{SEED_APP}/processes/{SEED_PROCESS}/exec"))
        .header("host", &host)
        .header("authorization", format!("Basic {credentials}"))
        .header("origin", origin.replace("{host}", &host))
        .header("command", "cat")
        .header("tty", "false")
        .header(EXIT_CODE_HEADER, exit_code)
        .body(())
        .unwrap()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no result within {PATIENCE:?}"),
    }
}

#[tokio::test]
async fn the_gateway_codec_drives_the_racks_exec_socket_byte_exact() {
    assert_eq!(EXIT_MARKER, RACK_MARKER);
    let rack = rack().await;
    let tcp = TcpStream::connect(rack.addr()).await.unwrap();
    let request = exec_request(&rack, "http://{host}", "3");
    let upgraded = within("the handshake", connect_upstream(tcp, request))
        .await
        .unwrap();
    let (read, write) = tokio::io::split(upgraded);
    let mut reader = FrameReader::new(read, Role::Client, DEFAULT_MAX_PAYLOAD);
    let mut writer = FrameWriter::new(write, Role::Client);

    for piece in STDIN {
        writer.write_frame(&Frame::text(piece)).await.unwrap();
    }
    writer.write_frame(&Frame::eof()).await.unwrap();

    for piece in STDIN {
        let echo = within("the echo", reader.read_frame())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(echo, Frame::text(piece));
    }
    // The command's output after stdin closed comes before its exit marker.
    let late = within("the output after EOF", reader.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late, Frame::text(mock_rack::AFTER_EOF_OUTPUT));
    let marker = within("the marker", reader.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marker, Frame::text(exit_line(3)));
    let eof = within("the EOF", reader.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert!(eof.is_eof(), "{eof:?}");

    // The rack never closes first (convox-api.md §4.2); it answers a close.
    writer.write_frame(&Frame::close(1000, "")).await.unwrap();
    let answer = within("the close", reader.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.close_code(), Some(1000));
    rack.shutdown().await;
}

#[tokio::test]
async fn a_caller_relayed_to_the_rack_gets_its_echo_the_exit_code_and_a_close() {
    let rack = rack().await;
    let tcp = TcpStream::connect(rack.addr()).await.unwrap();
    let request = exec_request(&rack, "http://{host}", "42");
    let upstream = within("the handshake", connect_upstream(tcp, request))
        .await
        .unwrap();

    // The caller speaks through mock-rack's codec, so both codecs check each other.
    let (caller_end, gateway_end) = tokio::io::duplex(64 * 1024);
    let (_cancel, cancelled) = watch::channel(false);
    let config = RelayConfig {
        idle_after_eof: Duration::from_millis(100),
        ..RelayConfig::default()
    };
    let relay = tokio::spawn(relay(gateway_end, upstream, config, cancelled, None));
    let (read, write) = tokio::io::split(caller_end);
    let mut caller_in = WsReader::new(read, PeerRole::Client);
    let mut caller_out = WsWriter::new(write, PeerRole::Client);

    for piece in STDIN {
        caller_out.text(piece).await.unwrap();
    }
    caller_out.binary(b"").await.unwrap();
    let mut output = Vec::new();
    for piece in STDIN {
        let echo = within("the echo", caller_in.read_message()).await.unwrap();
        assert_eq!(echo, Some(Message::Text(Bytes::from_static(piece))));
        output.extend_from_slice(piece);
    }
    // Relayed after the caller's EOF: the command's last output, then its exit marker.
    let late = within("the output after EOF", caller_in.read_message())
        .await
        .unwrap();
    assert_eq!(
        late,
        Some(Message::Text(Bytes::from_static(
            mock_rack::AFTER_EOF_OUTPUT
        )))
    );
    output.extend_from_slice(mock_rack::AFTER_EOF_OUTPUT);
    let marker = within("the marker", caller_in.read_message())
        .await
        .unwrap();
    assert_eq!(marker, Some(Message::Text(Bytes::from(exit_line(42)))));
    output.extend_from_slice(exit_line(42).as_bytes());
    let eof = within("the EOF", caller_in.read_message()).await.unwrap();
    assert_eq!(eof, Some(Message::Binary(Bytes::new())));
    let close = within("the close", caller_in.read_message()).await.unwrap();
    assert!(
        matches!(close, Some(Message::Close(Some(ref c))) if c.code == 1000),
        "{close:?}"
    );

    let stats = within("the relay's end", relay).await.unwrap();
    let input = STDIN.concat();
    assert_eq!(stats.closed_by, ClosedBy::Idle);
    assert_eq!(stats.exit_code, Some(42));
    assert_eq!((stats.eof_in, stats.eof_out), (true, true));
    assert_eq!(
        (stats.bytes_in, stats.bytes_out),
        (input.len() as u64, output.len() as u64)
    );
    assert_eq!(stats.sha256_in, Hash(Sha256::digest(&input).into()));
    assert_eq!(stats.sha256_out, Hash(Sha256::digest(&output).into()));
    rack.shutdown().await;
}

#[tokio::test]
async fn a_refused_upgrade_returns_the_racks_status_and_body() {
    let rack = rack().await;
    let tcp = TcpStream::connect(rack.addr()).await.unwrap();
    // The caller's own Origin, not rewritten: the rack's same-origin check (spec §4.6).
    let request = exec_request(&rack, "https://gateway.example.com", "0");
    match within("the handshake", connect_upstream(tcp, request)).await {
        Err(ConnectError::Refused { status, body }) => {
            assert_eq!(status, http::StatusCode::FORBIDDEN);
            assert!(
                String::from_utf8_lossy(&body).contains("origin not allowed"),
                "{body:?}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    rack.shutdown().await;
}

#[tokio::test]
async fn a_request_that_is_not_a_get_is_not_sent() {
    let (ours, mut theirs) = tokio::io::duplex(64);
    let request = Request::post("/apps/x/logs").body(()).unwrap();
    let result = connect_upstream(ours, request).await;
    assert!(
        matches!(result, Err(ConnectError::Method(http::Method::POST))),
        "{result:?}"
    );
    // The refusal dropped our end: the rack's end reads EOF, and not one byte before it.
    let mut sent = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut theirs, &mut sent)
        .await
        .unwrap();
    assert!(sent.is_empty(), "{sent:?}");
}
