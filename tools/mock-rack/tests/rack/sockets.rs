//! WebSockets as the rack serves them (spec §4, §2.5): log streams end with an empty binary
//! frame, exec echoes stdin byte for byte and ends with the exit marker, authentication happens
//! after the upgrade, a foreign `Origin` is refused before it, and nobody closes a finished socket.
//!
//! Invariant: frames are compared as bytes; nothing here decodes text frames as UTF-8.

use bytes::Bytes;
use mock_rack::ws::{CloseFrame, Message, Opcode};
use mock_rack::{AFTER_EOF_OUTPUT, EXIT_CODE_HEADER, EXIT_MARKER, ParamSource, SEED_PROCESS};

use crate::support::{self, AUTH, ws_connect, ws_request};

#[tokio::test]
async fn app_logs_stream_lines_then_an_empty_binary_frame_and_stay_open() {
    let rack = support::rack().await;
    let raw = ws_request(&rack, "/apps/x/logs", AUTH, &[("Prefix", "true")]);
    let (reply, ws) = ws_connect(&rack, &raw).await;
    assert_eq!(reply.status, 101);
    // RFC 6455 §1.3 for the captured key `1y4rF1VcW2vLEIYpWG8sjg==`.
    assert_eq!(
        reply.header("sec-websocket-accept"),
        Some(mock_rack::ws::accept_key(b"1y4rF1VcW2vLEIYpWG8sjg==").as_str())
    );
    assert_eq!(reply.header("upgrade"), Some("websocket"));
    let mut ws = ws.unwrap();
    let lines = ws.until_eof().await;
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        format!("2026-01-01T00:00:07Z service/web/{SEED_PROCESS} Starting web on port 3000\n")
    );
    let mut binary =
        format!("2026-01-01T00:00:07Z service/web/{SEED_PROCESS} binary output ").into_bytes();
    binary.extend_from_slice(b"\xff\xfe\xfd from the container\n");
    assert_eq!(lines[1], binary);
    ws.assert_open().await;
    ws.assert_open().await;
    // The client closes; the rack answers the close.
    ws.writer.close(1000, b"").await.unwrap();
    assert_eq!(
        ws.next().await,
        Some(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: Bytes::new()
        })))
    );

    let received = rack.received();
    let upgrade = received.iter().find(|r| r.websocket).unwrap();
    assert_eq!(
        (upgrade.target.as_str(), upgrade.status),
        ("/apps/x/logs", 101)
    );
    let prefix = upgrade.param("Prefix").unwrap();
    assert_eq!(
        (prefix.value.as_str(), prefix.source),
        ("true", ParamSource::Header)
    );
}

#[tokio::test]
async fn build_service_process_and_rack_logs_end_with_eof() {
    let rack = support::rack().await;
    for (path, expect_lines) in [
        ("/apps/x/builds/BAAAAAAAAA/logs", true),
        ("/apps/x/services/web/logs", true),
        (&*format!("/apps/x/processes/{SEED_PROCESS}/logs"), true),
        ("/apps/x/processes/gone/logs", false),
        ("/system/logs", true),
    ] {
        let (reply, ws) = ws_connect(&rack, &ws_request(&rack, path, AUTH, &[])).await;
        assert_eq!(reply.status, 101, "{path}");
        let lines = ws.unwrap().until_eof().await;
        assert_eq!(!lines.is_empty(), expect_lines, "{path}");
        if expect_lines {
            assert!(
                lines.iter().any(|l| std::str::from_utf8(l).is_err()),
                "{path}: a non-UTF-8 line"
            );
        }
    }
    let (_, ws) = ws_connect(
        &rack,
        &ws_request(&rack, "/apps/x/builds/BNOPE/logs", AUTH, &[]),
    )
    .await;
    assert_eq!(
        ws.unwrap().until_eof().await,
        ["ERROR: build not found: BNOPE\n"]
    );
    let (_, ws) = ws_connect(
        &rack,
        &ws_request(
            &rack,
            "/apps/x/logs",
            AUTH,
            &[("Filter", "health"), ("Tail", "1")],
        ),
    )
    .await;
    assert_eq!(ws.unwrap().until_eof().await, ["GET /health 200 1ms\n"]);
}

/// `convox exec` with stdin from a file (spec Appendix A.8), plus the byte-exactness cases.
#[tokio::test]
async fn exec_echoes_stdin_byte_exact_and_ends_with_the_exit_marker() {
    let rack = support::rack().await;
    let raw = ws_request(
        &rack,
        &format!("/apps/x/processes/{SEED_PROCESS}/exec"),
        AUTH,
        &[("Command", "ls -la"), ("Tty", "false")],
    );
    let (reply, ws) = ws_connect(&rack, &raw).await;
    assert_eq!(reply.status, 101);
    let mut ws = ws.unwrap();

    ws.writer.text(b"echo hi\n").await.unwrap();
    assert_eq!(
        ws.next().await,
        Some(Message::Text(Bytes::from_static(b"echo hi\n")))
    );
    // "é" split across two frames: each frame comes back as it went.
    ws.writer.text(b"caf\xc3").await.unwrap();
    ws.writer.text(b"\xa9\n").await.unwrap();
    assert_eq!(
        ws.next().await,
        Some(Message::Text(Bytes::from_static(b"caf\xc3")))
    );
    assert_eq!(
        ws.next().await,
        Some(Message::Text(Bytes::from_static(b"\xa9\n")))
    );
    // Not UTF-8 at all.
    ws.writer.text(b"\xff\xfe\x00\x80").await.unwrap();
    assert_eq!(
        ws.next().await,
        Some(Message::Text(Bytes::from_static(b"\xff\xfe\x00\x80")))
    );
    // One message in two fragments, a ping in between.
    ws.writer.send(false, Opcode::Text, b"frag").await.unwrap();
    ws.writer.ping(b"p").await.unwrap();
    ws.writer
        .send(true, Opcode::Continuation, b"\xe2\x82\xac")
        .await
        .unwrap();
    assert_eq!(
        ws.next().await,
        Some(Message::Pong(Bytes::from_static(b"p")))
    );
    assert_eq!(
        ws.next().await,
        Some(Message::Text(Bytes::from_static(b"frag\xe2\x82\xac")))
    );

    ws.writer.binary(b"").await.unwrap();
    assert_eq!(
        ws.until_eof().await,
        [
            Bytes::from_static(AFTER_EOF_OUTPUT),
            Bytes::from(format!("{EXIT_MARKER}0\n"))
        ]
    );
    ws.assert_open().await;

    let upgrade = rack.received().into_iter().find(|r| r.websocket).unwrap();
    let command = upgrade.param("command").unwrap();
    assert_eq!(
        (command.value.as_str(), command.source),
        ("ls -la", ParamSource::Header)
    );
}

#[tokio::test]
async fn exec_reports_the_requested_exit_code() {
    let rack = support::rack().await;
    let raw = ws_request(
        &rack,
        "/apps/x/processes/web/exec",
        AUTH,
        &[("Command", "false"), (EXIT_CODE_HEADER, "3")],
    );
    let (_, ws) = ws_connect(&rack, &raw).await;
    let mut ws = ws.unwrap();
    ws.writer.binary(b"").await.unwrap();
    assert_eq!(
        ws.until_eof().await,
        [
            Bytes::from_static(AFTER_EOF_OUTPUT),
            Bytes::from(format!("{EXIT_MARKER}3\n"))
        ]
    );
}

/// The controller writes the exit marker before the provider's error (`ProcessExec`).
#[tokio::test]
async fn exec_into_a_missing_pod_reports_the_kubernetes_error() {
    let rack = support::rack().await;
    let raw = ws_request(
        &rack,
        "/apps/x/processes/nope/exec",
        AUTH,
        &[("Command", "sh")],
    );
    let (_, ws) = ws_connect(&rack, &raw).await;
    assert_eq!(
        ws.unwrap().until_eof().await,
        [
            format!("{EXIT_MARKER}0\n"),
            "ERROR: pods \"nope\" not found\n".to_owned()
        ]
    );
}

/// Spec §2.5: the rack upgrades first, then refuses inside the socket.
#[tokio::test]
async fn a_bad_password_on_a_websocket_gets_101_then_an_error_frame() {
    let rack = support::rack().await;
    for path in ["/apps/x/logs", "/apps/x/processes/web/exec"] {
        let raw = ws_request(&rack, path, "Basic Y29udm94Ondyb25n", &[("Command", "ls")]);
        let (reply, ws) = ws_connect(&rack, &raw).await;
        assert_eq!(reply.status, 101, "{path}");
        let mut ws = ws.unwrap();
        assert_eq!(
            ws.until_eof().await,
            ["ERROR: invalid authentication\n"],
            "{path}"
        );
        ws.assert_open().await;
    }
    assert!(
        rack.received().iter().all(|r| r.params.is_empty()),
        "no handler ran"
    );
}

/// Spec §4.6: gorilla's same-origin check refuses before upgrading (and before auth).
#[tokio::test]
async fn a_cross_origin_upgrade_is_403() {
    let rack = support::rack().await;
    let raw = ws_request(
        &rack,
        "/apps/x/logs",
        "Basic Y29udm94Ondyb25n",
        &[("Origin", "https://gateway.example.com")],
    );
    let (reply, ws) = ws_connect(&rack, &raw).await;
    assert!(ws.is_none());
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.text(),
        "Forbidden\nERROR: websocket: request origin not allowed by Upgrader.CheckOrigin\n"
    );
    assert_eq!(reply.header("sec-websocket-version"), Some("13"));
    // Without an Origin header the check passes.
    let raw = ws_request(&rack, "/apps/x/logs", AUTH, &[])
        .replace(&format!("Origin: http://{}\r\n", support::host(&rack)), "");
    assert_eq!(ws_connect(&rack, &raw).await.0.status, 101);
}

#[tokio::test]
async fn shutdown_ends_open_sockets() {
    let rack = support::rack().await;
    let (_, ws) = ws_connect(&rack, &ws_request(&rack, "/apps/x/logs", AUTH, &[])).await;
    let mut ws = ws.unwrap();
    ws.until_eof().await;
    let addr = rack.addr();
    tokio::time::timeout(support::DEADLINE, rack.shutdown())
        .await
        .unwrap();
    let end = tokio::time::timeout(support::DEADLINE, ws.reader.read_message())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}
