//! Tests of the in-socket refusal: what the caller sees, frame by frame, and that the wait for
//! its goodbye is bounded.

use std::time::Duration;

use bytes::Bytes;
use mock_rack::ws::{
    CloseFrame, Frame as PeerFrame, Message, Opcode as PeerOpcode, Role as PeerRole,
};
use mock_rack::ws::{WsReader, WsWriter};
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

use super::*;

const PATIENCE: Duration = Duration::from_secs(10);
const REASON: &str = "permission denied: convox:process:exec is required (role viewer); ask an admin for the ops role";

struct Caller {
    reader: WsReader<ReadHalf<DuplexStream>>,
    writer: WsWriter<WriteHalf<DuplexStream>>,
}

fn caller(io: DuplexStream) -> Caller {
    let (read, write) = tokio::io::split(io);
    Caller {
        reader: WsReader::new(read, PeerRole::Client),
        writer: WsWriter::new(write, PeerRole::Client),
    }
}

async fn next(caller: &mut Caller) -> Option<PeerFrame> {
    match tokio::time::timeout(PATIENCE, caller.reader.read_frame()).await {
        Ok(frame) => frame.unwrap(),
        Err(_) => panic!("no frame within {PATIENCE:?}"),
    }
}

fn text(payload: String) -> PeerFrame {
    PeerFrame {
        fin: true,
        opcode: PeerOpcode::Text,
        payload: Bytes::from(payload),
    }
}

/// Reads the three frames of a refusal and checks them against the exact bytes expected.
async fn expect_refusal(caller: &mut Caller, reason_line: &str) {
    assert_eq!(
        next(caller).await,
        Some(text(format!("ERROR: {reason_line}\n")))
    );
    assert_eq!(
        next(caller).await,
        Some(text("F1E49A85-0AD7-4AEF-A618-C249C6E6568D:1\n".to_owned()))
    );
    assert_eq!(
        next(caller).await,
        Some(PeerFrame {
            fin: true,
            opcode: PeerOpcode::Binary,
            payload: Bytes::new()
        })
    );
}

#[tokio::test]
async fn the_caller_sees_the_error_the_exit_marker_and_eof_then_a_close_after_its_eof() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    // A long linger: the refusal must end on the caller's EOF, not on the timer.
    let refusal = tokio::spawn(refuse(ours, REASON, Duration::from_secs(3600), true));
    let mut caller = caller(theirs);
    expect_refusal(&mut caller, REASON).await;

    // The CLI copies stdin and pings; nothing of it goes anywhere, pings are answered.
    caller.writer.text(b"echo hi\n").await.unwrap();
    caller.writer.ping(b"p").await.unwrap();
    assert_eq!(
        caller.reader.read_message().await.unwrap(),
        Some(Message::Pong(Bytes::from_static(b"p")))
    );
    caller.writer.binary(b"").await.unwrap();
    assert_eq!(
        caller.reader.read_message().await.unwrap(),
        Some(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: Bytes::new()
        })))
    );
    assert_eq!(
        caller.reader.read_message().await.unwrap(),
        None,
        "then the connection ends"
    );
    tokio::time::timeout(PATIENCE, refusal)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_silent_caller_is_closed_after_the_linger() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let refusal = tokio::spawn(refuse(ours, REASON, Duration::from_millis(20), true));
    let mut caller = caller(theirs);
    expect_refusal(&mut caller, REASON).await;
    let close = next(&mut caller).await.unwrap();
    assert_eq!(
        (close.opcode, &close.payload[..]),
        (PeerOpcode::Close, &b"\x03\xe8"[..])
    );
    tokio::time::timeout(PATIENCE, refusal)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_reason_stays_one_line_and_cannot_forge_a_marker() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let forged = "denied\nF1E49A85-0AD7-4AEF-A618-C249C6E6568D:0\r\nF1E4F1E49A85-0AD7-4AEF-A618-C249C6E6568D:9A85-0AD7-4AEF-A618-C249C6E6568D:0";
    let refusal = tokio::spawn(refuse(ours, forged, Duration::from_millis(20), true));
    let mut caller = caller(theirs);
    let line = next(&mut caller).await.unwrap().payload;
    assert!(line.starts_with(b"ERROR: denied "), "{line:?}");
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "{line:?}");
    assert!(
        !line
            .windows(EXIT_MARKER.len())
            .any(|w| w == EXIT_MARKER.as_bytes()),
        "{line:?}"
    );
    tokio::time::timeout(PATIENCE, refusal)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_caller_already_gone_is_an_error() {
    let (ours, theirs) = tokio::io::duplex(64);
    drop(theirs);
    let result = refuse(ours, REASON, Duration::from_secs(3600), true).await;
    assert!(matches!(result, Err(CodecError::Io(_))), "{result:?}");
}

/// A log stream reports no exit code, and the CLI copies it to the terminal as it is: the
/// refusal there is the error line and EOF, without the marker.
#[tokio::test]
async fn a_refused_log_stream_gets_no_exit_marker() {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let refusal = tokio::spawn(refuse(ours, REASON, Duration::from_millis(20), false));
    let mut caller = caller(theirs);
    assert_eq!(
        next(&mut caller).await,
        Some(text(format!("ERROR: {REASON}\n")))
    );
    assert_eq!(
        next(&mut caller).await,
        Some(PeerFrame {
            fin: true,
            opcode: PeerOpcode::Binary,
            payload: Bytes::new()
        })
    );
    tokio::time::timeout(PATIENCE, refusal)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
