//! WebSocket commands through the gateway: exec relayed byte-exact both ways (invalid UTF-8 in
//! a text frame, a character split across frames) with its exit code recorded, a caller
//! without the permission refused inside the socket with nothing forwarded, an upgrade the rack
//! refuses passed on with the rack's status, and a stop that closes open streams and keeps the
//! records of answers just sent.

use std::time::Duration;

use events::event::{Decision, Event, Role};
use events::time::Clock;
use mock_rack::ws::{Opcode, WsReader, WsWriter};

use crate::cli::sha256;
use crate::support::{
    TestGateway, basic, eventually, open_socket, open_socket_within, payloads, requested,
    requested_paths, texts, until_eof,
};

pub(crate) const EXEC: &str = "/apps/x/processes/web-5d8f7c9b4-abcde/exec";

/// Opens a WebSocket through the gateway as the CLI does and returns the frame reader, the
/// writer and the status.
pub(crate) async fn open(
    gw: &TestGateway,
    token: &str,
    path: &str,
) -> (
    String,
    WsReader<tokio::net::tcp::OwnedReadHalf>,
    WsWriter<tokio::net::tcp::OwnedWriteHalf>,
) {
    let socket = open_socket(gw.proxy(), upgrade(gw, token, path)).await;
    (socket.head.status.to_string(), socket.reader, socket.writer)
}

/// The upgrade request the CLI sends to open `path` with `token` (`convox exec`'s headers).
fn upgrade(gw: &TestGateway, token: &str, path: &str) -> String {
    let host = gw.proxy().to_string();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Authorization: {}\r\nCommand: ls -la\r\nConnection: Upgrade\r\nHeight: 24\r\n\
         Origin: http://{host}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nWidth: 80\r\n\r\n",
        basic(&format!("convox:{token}"))
    )
}

/// `Upgrade` is a list of protocols: a handshake naming another beside `websocket` is routed as
/// a socket, by the reading its handshake is then checked with, and relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_listing_websocket_among_others_is_a_socket() {
    let gw = TestGateway::start().await;
    let request = upgrade(&gw, gw.token(), EXEC);
    let listed = request.replace("Upgrade: websocket\r\n", "Upgrade: foo/2, WebSocket\r\n");
    assert_ne!(listed, request);
    let mut socket = open_socket(gw.proxy(), listed).await;
    assert!(
        socket.head.status.to_string().contains("101"),
        "{}",
        socket.head.status
    );
    socket.writer.binary(b"").await.unwrap();
    let frames = until_eof(&mut socket.reader).await;
    assert!(!frames.is_empty());
    assert_eq!(gw.rack().received().len(), 1, "relayed to the rack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_is_relayed_byte_exact_and_its_exit_code_recorded() {
    let gw = TestGateway::start().await;
    let since = gw.head();
    let (status, mut reader, mut writer) = open(&gw, gw.token(), EXEC).await;
    assert!(status.contains("101"), "{status}");
    let invalid = b"echo \xff\xfe hi\n".to_vec();
    let e_acute = "\u{e9}".as_bytes().to_vec();
    writer.text(&invalid).await.unwrap();
    writer.text(&e_acute[..1]).await.unwrap();
    writer.text(&e_acute[1..]).await.unwrap();
    writer.binary(b"").await.unwrap();
    let frames = until_eof(&mut reader).await;
    let payloads: Vec<&[u8]> = frames.iter().map(|f| f.payload.as_ref()).collect();
    assert_eq!(
        payloads[0],
        invalid.as_slice(),
        "invalid UTF-8 comes back as sent"
    );
    assert_eq!(payloads[1], &e_acute[..1]);
    assert_eq!(
        payloads[2],
        &e_acute[1..],
        "a split character comes back split, byte-exact"
    );
    assert!(
        payloads
            .last()
            .is_some_and(|p| p.starts_with(mock_rack::EXIT_MARKER.as_bytes())),
        "{payloads:?}"
    );
    writer.close(1000, b"").await.unwrap();
    let rack = gw.rack().received();
    let upgrade = rack
        .iter()
        .find(|r| r.websocket)
        .expect("the rack got the upgrade");
    assert_eq!(upgrade.actor.as_deref(), Some("dev@rack-gateway.local"));
    let closed = eventually("StreamClosed", || async {
        gw.events_since(since)
            .await
            .into_iter()
            .find_map(|r| match r.event {
                Event::StreamClosed {
                    bytes_in,
                    exit_code,
                    sha256_in,
                    sha256_out,
                    ended,
                    ..
                } => Some((bytes_in, exit_code, sha256_in, sha256_out, ended)),
                _ => None,
            })
    })
    .await;
    // The output's digest covers its data payloads as relayed, up to EOF. What the caller
    // typed into an exec holds secrets by design (the route's request side is sensitive): its
    // size is recorded, not a digest a guess of a short input could be tested against.
    let received = payloads.concat();
    assert_eq!(
        closed,
        (
            invalid.len() as u64 + 2,
            Some(0),
            None,
            Some(sha256(&received)),
            Some("caller_closed".to_owned())
        )
    );
    gw.finish().await;
}

/// The rack password in a stream's output (a process printing the URL it pushes to) reaches
/// the caller replaced, here through the exec echo of the mock rack; the rest passes as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rack_password_never_reaches_the_caller_in_a_streams_output() {
    let gw = TestGateway::start().await;
    let (status, mut reader, mut writer) = open(&gw, gw.token(), EXEC).await;
    assert!(status.contains("101"), "{status}");
    let password = rack_password(&gw);
    let line = [
        format!("push https://convox:{password}@api.rack/v2 ").as_bytes(),
        b"\xff\n",
    ]
    .concat();
    writer.text(&line).await.unwrap();
    writer.binary(b"").await.unwrap();
    let frames = until_eof(&mut reader).await;
    let echoed = &frames[0].payload;
    assert_eq!(
        &echoed[..],
        &b"push https://convox:rgw-redacted@api.rack/v2 \xff\n"[..]
    );
    writer.close(1000, b"").await.unwrap();
    let finished = gw.finish().await;
    assert!(
        !format!("{:?}", finished.events).contains(&password),
        "nor the log"
    );
}

/// The gateway's own rack password, as the rack received it with the first upgrade.
fn rack_password(gw: &TestGateway) -> String {
    let upgrade = gw
        .rack()
        .received()
        .into_iter()
        .find(|r| r.websocket)
        .expect("the rack got the upgrade");
    use base64::Engine;
    let basic = upgrade.header("authorization").unwrap().to_owned();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.strip_prefix("Basic ").unwrap())
        .unwrap();
    let password = String::from_utf8(decoded)
        .unwrap()
        .strip_prefix("convox:")
        .unwrap()
        .to_owned();
    assert!(password.len() >= 16, "{password}");
    password
}

/// A message the rack sends in fragments, as gorilla writes one longer than its buffer (a
/// text frame that does not end it, continuations, and an empty continuation that does),
/// reaches the caller whole, the rack password taken out where it straddles two fragments,
/// and the stream goes on to its exit code and EOF: an empty continuation frame is no EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_rack_sends_in_fragments_arrives_whole_and_scrubbed() {
    let gw = TestGateway::start().await;
    gw.rack().set_fragmented_output(true);
    let (status, mut reader, mut writer) = open(&gw, gw.token(), EXEC).await;
    assert!(status.contains("101"), "{status}");
    let password = rack_password(&gw);
    // The password begins 5 bytes before the first fragment ends; the message spans 3.
    let url = format!("https://convox:{password}@api.rack/v2");
    let lead = "a".repeat(mock_rack::FRAGMENT - 5 - "https://convox:".len());
    let tail = "b".repeat(mock_rack::FRAGMENT + 100);
    let line = format!("{lead}{url} {tail}\n");
    writer.text(line.as_bytes()).await.unwrap();
    writer.binary(b"").await.unwrap();
    let frames = until_eof(&mut reader).await;
    assert!(
        frames.iter().any(|f| f.opcode == Opcode::Continuation),
        "the fragments were relayed as fragments"
    );
    let output = String::from_utf8(payloads(&frames)).unwrap();
    let expected = format!(
        "{lead}https://convox:rgw-redacted@api.rack/v2 {tail}\n{}{}0\n",
        String::from_utf8_lossy(mock_rack::AFTER_EOF_OUTPUT),
        mock_rack::EXIT_MARKER
    );
    assert_eq!(output.len(), expected.len());
    assert!(
        output == expected,
        "the output differs from what was sent, scrubbed"
    );
    assert!(!output.contains(&password));
    writer.close(1000, b"").await.unwrap();
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_exec_is_refused_inside_the_socket() {
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for("viewer@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    let before = gw.rack().received().len();
    let (status, mut reader, _writer) = open(&gw, &viewer.secret, EXEC).await;
    assert!(
        status.contains("101"),
        "the CLI needs the upgrade to show why: {status}"
    );
    let text = texts(&until_eof(&mut reader).await);
    assert!(text[0].starts_with("ERROR: "), "{text:?}");
    assert!(
        text[0].contains("missing permission convox:exec:run"),
        "{text:?}"
    );
    assert_eq!(
        text.last().map(String::as_str),
        Some(format!("{}1\n", mock_rack::EXIT_MARKER).as_str())
    );
    assert_eq!(gw.rack().received().len(), before, "nothing was forwarded");
    let finished = gw.finish().await;
    let denied: Vec<_> = finished
        .events
        .iter()
        .filter_map(requested)
        .filter(|r| r.decision == Decision::Deny)
        .map(|r| (r.path.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(denied, [(EXEC, "permission_denied")], "recorded as denied");
}

/// A refused tunnel (`convox proxy`) gets the reason and EOF, without the exit marker: the CLI
/// copies a tunnel's frames into the local connection, where the marker is not an exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tunnel_carries_no_exit_marker() {
    let gw = TestGateway::start().await;
    let viewer = gw
        .token_for("viewer@example.com", Role::Viewer, &["convox:*:*"])
        .await;
    let host = gw.proxy().to_string();
    let request = format!(
        "GET /proxy/10.0.0.5/5432 HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Authorization: {}\r\nConnection: Upgrade\r\nOrigin: http://{host}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Upgrade: websocket\r\n\r\n",
        basic(&format!("convox:{}", viewer.secret))
    );
    let before = gw.rack().received().len();
    let mut socket = open_socket(gw.proxy(), request).await;
    assert!(socket.head.status.to_string().contains("101"));
    let text = texts(&until_eof(&mut socket.reader).await);
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].starts_with("ERROR: "), "{text:?}");
    assert_eq!(gw.rack().received().len(), before, "nothing was forwarded");
    gw.finish().await;
}

/// `convox proxy --tls` asks the rack, in a `TLS` header, to wrap its connection to the target:
/// the option reaches the rack and the log, unlike a header the route does not list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnels_tls_option_reaches_the_rack_and_the_log() {
    let gw = TestGateway::start().await;
    let host = gw.proxy().to_string();
    let request = format!(
        "GET /proxy/10.0.0.5/5432 HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\n\
         Authorization: {}\r\nConnection: Upgrade\r\nOrigin: http://{host}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Tls: true\r\nX-Unlisted: 1\r\nUpgrade: websocket\r\n\r\n",
        basic(&format!("convox:{}", gw.token()))
    );
    let since = gw.head();
    let _socket = open_socket(gw.proxy(), request).await;
    let got = gw.rack().received();
    let tunnel = got.last().expect("the upgrade reached the rack");
    assert!(tunnel.target.starts_with("/proxy/10.0.0.5/5432"));
    assert_eq!(tunnel.header("tls"), Some("true"));
    assert_eq!(tunnel.header("x-unlisted"), None);
    let events = gw.events_since(since).await;
    let recorded = events
        .iter()
        .filter_map(crate::support::requested)
        .find(|c| c.path == "/proxy/10.0.0.5/5432")
        .expect("the tunnel's record");
    assert_eq!(recorded.params, [("TLS".to_owned(), "true".to_owned())]);
    gw.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_stream_through_with_their_non_utf8_bytes_and_end_at_eof() {
    let gw = TestGateway::start().await;
    let since = gw.head();
    let (status, mut reader, mut writer) = open(&gw, gw.token(), "/apps/x/logs").await;
    assert!(status.contains("101"), "{status}");
    let frames = until_eof(&mut reader).await;
    let bytes = payloads(&frames);
    assert!(
        bytes.windows(3).any(|w| w == b"\xff\xfe\xfd"),
        "the container's non-UTF-8 output arrives unchanged"
    );
    assert!(
        frames
            .iter()
            .all(|f| f.opcode == Opcode::Text || f.opcode == Opcode::Continuation)
    );
    writer.binary(b"").await.unwrap();
    writer.close(1000, b"").await.unwrap();
    let out = bytes.len() as u64;
    let closed = eventually("StreamClosed", || async {
        gw.events_since(since)
            .await
            .into_iter()
            .find_map(|r| match r.event {
                Event::StreamClosed { bytes_out, .. } => Some(bytes_out),
                _ => None,
            })
    })
    .await;
    assert_eq!(
        closed, out,
        "StreamClosed counts exactly what the caller received"
    );
    gw.finish().await;
}

/// A user at the open-stream limit (the CLI keeps finished log sockets open until it exits)
/// gets the upgrade and the reason inside the socket, as for any refused WebSocket, and
/// nothing reaches the rack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_over_the_limit_is_refused_inside_the_socket() {
    let gw = TestGateway::start().await;
    let mut held = Vec::new();
    for _ in 0..rack_gateway::config::DEFAULT_STREAMS_PER_PRINCIPAL {
        let (status, mut reader, writer) = open(&gw, gw.token(), "/apps/x/logs").await;
        assert!(status.contains("101"), "{status}");
        let _ = until_eof(&mut reader).await;
        held.push((reader, writer));
    }
    let before = gw.rack().received().len();
    let (status, mut reader, _writer) = open(&gw, gw.token(), "/apps/x/logs").await;
    assert!(status.contains("101"), "{status}");
    let text = texts(&until_eof(&mut reader).await);
    assert!(
        text[0].starts_with("ERROR: too many open streams"),
        "{text:?}"
    );
    assert_eq!(gw.rack().received().len(), before, "nothing was forwarded");
    drop(held);
    gw.finish().await;
}

/// A stream lasts no longer than its token: at the token's expiry it is closed as a revoked
/// one is (close 1008), even though neither side ended it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires() {
    let gw = TestGateway::start().await;
    gw.grant("ops@example.com", Role::Admin).await;
    let expires = Clock.now().plus(Duration::from_millis(1500));
    let issued = gw
        .issue("ops@example.com", &["convox:*:*"], Some(expires))
        .await;
    let (status, mut reader, _writer) = open(&gw, &issued.secret, "/apps/x/logs").await;
    assert!(status.contains("101"), "{status}");
    // The rack's logs and EOF; the caller sends no EOF, so nothing else would end the stream.
    let _ = until_eof(&mut reader).await;
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read_frame().await {
                Ok(Some(f)) if f.opcode == Opcode::Close => break Some(f),
                Ok(Some(_)) => {}
                _ => break None,
            }
        }
    })
    .await
    .expect("the stream ended within 10 s")
    .expect("a close frame");
    assert_eq!(close.payload.get(..2), Some(&1008u16.to_be_bytes()[..]));
    assert!(Clock.now() >= expires, "closed before the token expired");
    let finished = gw.finish().await;
    let ended: Vec<Option<String>> = finished
        .events
        .iter()
        .filter_map(|r| match &r.event {
            Event::StreamClosed { ended, .. } => Some(ended.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [Some("token_expired".to_owned())]);
}

/// A stream of a token someone made for its owner through the API closes when its maker is
/// disabled, as when its owner is (close 1008): the maker was handed its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_the_maker_of_its_token_is_disabled() {
    let gw = TestGateway::start().await;
    let makers = gw
        .token_for(
            "maker@example.com",
            Role::Admin,
            &["convox:*:*", "gateway:token:manage"],
        )
        .await;
    gw.grant("ops@example.com", Role::Ops).await;
    let issued = gw
        .issue_made_with("ops@example.com", &["convox:log:read"], makers.id)
        .await;
    let (status, mut reader, _writer) = open(&gw, &issued.secret, "/apps/x/logs").await;
    assert!(status.contains("101"), "{status}");
    let _ = until_eof(&mut reader).await;
    gw.disable("maker@example.com").await;
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read_frame().await {
                Ok(Some(f)) if f.opcode == Opcode::Close => break Some(f),
                Ok(Some(_)) => {}
                _ => break None,
            }
        }
    })
    .await
    .expect("the stream ended within 10 s of the maker's disabling")
    .expect("a close frame");
    assert_eq!(close.payload.get(..2), Some(&1008u16.to_be_bytes()[..]));
    let finished = gw.finish().await;
    let ended: Vec<Option<String>> = finished
        .events
        .iter()
        .filter_map(|r| match &r.event {
            Event::StreamClosed { ended, .. } => Some(ended.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(ended, [Some("cancelled".to_owned())]);
}

/// A stop while a stream is open and an answer has just gone: the stream is closed and its end
/// recorded, and the answer's completion is in the log, not lost to the shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_records_open_streams_and_answers_just_sent() {
    let gw = TestGateway::start().await;
    let (status, _reader, mut writer) = open(&gw, gw.token(), EXEC).await;
    assert!(status.contains("101"), "{status}");
    writer.text(b"still typing").await.unwrap();
    let reply = gw.send_raw(gw.cli().get("/apps?")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let request = reply.request_id();
    // Stop at once: no wait for the completion or the stream.
    let done = gw.finish().await;
    let opened: Vec<&str> = done
        .events
        .iter()
        .filter_map(|r| match &r.event {
            Event::StreamOpened { request } => Some(request.0.as_str()),
            _ => None,
        })
        .collect();
    let closed: Vec<(&str, u64)> = done
        .events
        .iter()
        .filter_map(|r| match &r.event {
            Event::StreamClosed {
                request, bytes_in, ..
            } => Some((request.0.as_str(), *bytes_in)),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(
        closed,
        vec![(opened[0], b"still typing".len() as u64)],
        "the open stream was closed by the stop and recorded with what it carried"
    );
    assert!(
        done.events.iter().any(|r| matches!(
            &r.event,
            Event::CommandCompleted(c) if c.request.0 == request && c.status == 200
        )),
        "the completion of the answer sent just before the stop is recorded"
    );
}

/// The rack refusing an upgrade (here a resource console the rack does not serve) is passed on
/// as the rack answered it, an empty 404, and recorded with that status; not reported as a rack
/// that did not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_the_rack_refuses_is_answered_with_the_racks_status() {
    let gw = TestGateway::start().await;
    let host = gw.proxy().to_string();
    let request = format!(
        "GET /apps/x/resources/db/console HTTP/1.1\r\nHost: {host}\r\n\
         User-Agent: Go-http-client/1.1\r\nAuthorization: {}\r\nConnection: Upgrade\r\n\
         Origin: http://{host}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n\r\n",
        basic(&format!("convox:{}", gw.token()))
    );
    let reply = gw.send_raw(request).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(reply.body.is_empty(), "{reply:?}");
    let (requested, completed) = gw.call_records(0, &reply.request_id()).await;
    assert!(
        matches!(&requested.event, Event::CommandRequested(c) if c.path == "/apps/x/resources/db/console"),
        "{requested:?}"
    );
    assert!(
        matches!(&completed.event, Event::CommandCompleted(c) if c.status == 404),
        "{completed:?}"
    );
    gw.finish().await;
}

/// A finished build's log is read by the rack from the object its record names, which an
/// imported (or rewritten) record can point anywhere. A caller without `convox:object:read`
/// (a `cicd` token) reads a build's own log, but not another object through it: refused inside
/// the socket, recorded, with the record lookup recorded too, and nothing streamed. An admin
/// reads the same socket, which shows the rack would have streamed that object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_log_that_names_another_object_is_refused_without_object_read() {
    use crate::support::Body;
    let gw = TestGateway::start().await;
    // A cicd token: a deployer's, scoped to what the cicd role holds.
    let scopes: Vec<String> = rack_gateway::policy::roles::cicd_scopes()
        .into_iter()
        .map(|p| p.0)
        .collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let ci = gw
        .token_for("ci@example.com", Role::Deployer, &scopes)
        .await;
    let admin = gw.cli();
    let builds = gw.send_raw(admin.get("/apps/x/builds?")).await.json();
    let id = builds[0]["id"].as_str().unwrap().to_owned();
    let logs = format!("/apps/x/builds/{id}/logs");

    // The build's own log: streamed to the cicd token, after a recorded lookup of the record.
    let since = gw.head();
    let (status, mut reader, _writer) = open(&gw, &ci.secret, &logs).await;
    assert!(status.contains("101"), "{status}");
    let own = payloads(&until_eof(&mut reader).await);
    assert!(
        own.windows(9).any(|w| w == b"Building:"),
        "{}",
        String::from_utf8_lossy(&own)
    );

    let order: Vec<String> = eventually("the stream's records", || async {
        let e = gw.events_since(since).await;
        e.iter()
            .any(|r| matches!(r.event, Event::StreamOpened { .. }))
            .then_some(e)
    })
    .await
    .iter()
    .filter_map(|r| match &r.event {
        Event::CommandRequested(c) => Some(format!("requested {} {:?}", c.path, c.reason)),
        Event::StreamOpened { .. } => Some("opened".to_owned()),
        _ => None,
    })
    .collect();
    assert_eq!(
        order[..3],
        [
            format!("requested /apps/x/builds/{id} \"build_log_lookup\""),
            format!("requested {logs} \"\""),
            "opened".to_owned(),
        ],
        "the record is looked up, and that recorded, before the socket is"
    );

    // An upload of app x, and the build's record pointed at it (as an import can do).
    let secret = b"SOURCE-WITH-A-SECRET".to_vec();
    let stored = gw
        .send_raw(admin.request(
            "POST",
            "/apps/x/objects/tmp/source.tgz?",
            &[],
            Body::Raw(&secret),
        ))
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    let set_build = |form: &'static str| {
        let (gw, admin, id) = (&gw, &admin, &id);
        async move {
            let updated = gw
                .send_raw(admin.request(
                    "PUT",
                    &format!("/apps/x/builds/{id}?"),
                    &[],
                    Body::Form(form),
                ))
                .await;
            assert_eq!(updated.status, 200, "{}", updated.text());
        }
    };
    set_build("logs=object%3A%2F%2Fx%2Ftmp%2Fsource.tgz").await;

    let text = refused_build_log(
        &gw,
        &ci.secret,
        &id,
        "convox:object:read",
        "build_log_elsewhere",
    )
    .await;
    assert!(!text.concat().contains("SOURCE-WITH"), "{text:?}");

    // With `convox:object:read`, the same socket streams the object: what was kept from cicd.
    let (status, mut reader, _writer) = open(&gw, gw.token(), &logs).await;
    assert!(status.contains("101"), "{status}");
    let streamed = payloads(&until_eof(&mut reader).await);
    assert_eq!(streamed, secret);

    // A log no object route could name (a rack that keeps objects on its disk would read any
    // file of its pod): refused even with `convox:object:read`, nothing reaching the rack.
    set_build("logs=object%3A%2F%2Fx%2F..%2F..%2Fsecrets%2Ftoken").await;
    refused_build_log(
        &gw,
        gw.token(),
        &id,
        "no object a path could name",
        "build_log_outside",
    )
    .await;
    // A record whose log names the rack password (a URL the rack or an importer built with
    // it): the refusal quotes the URL without it, to the caller and in the log.
    let password = rack_password(&gw);
    let with_password = format!("logs=https%3A%2F%2Fconvox%3A{password}%40rack.internal%2Flog");
    let updated = gw
        .send_raw(admin.request(
            "PUT",
            &format!("/apps/x/builds/{id}?"),
            &[],
            Body::Form(&with_password),
        ))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let since = gw.head();
    let text = refused_build_log(
        &gw,
        &ci.secret,
        &id,
        "@rack.internal/log as its log",
        "build_log_elsewhere",
    )
    .await;
    assert!(!text.concat().contains(&password), "{text:?}");
    let recorded = format!("{:?}", gw.events_since(since).await);
    assert!(
        !recorded.contains(&password),
        "the password reached the log"
    );
    set_build("logs=object%3A%2F%2Fx%2Ftmp%2Fsource.tgz").await;

    // Set running again (as `build.image` does to a finished build, keeping its log): still
    // refused, since the rack reads that log once the build ends.
    set_build("status=running").await;
    let (status, mut reader, _writer) = open(&gw, &ci.secret, &logs).await;
    assert!(status.contains("101"), "{status}");
    let first = until_eof(&mut reader).await.remove(0);
    assert!(
        String::from_utf8_lossy(&first.payload).contains("which is not a build log"),
        "{first:?}"
    );
    gw.finish().await;
}

/// Opens build `id`'s log socket as `token` and checks it is refused inside the socket, its
/// `ERROR:` line saying `said`: no log socket reaches the rack, and the log holds the record's
/// lookup, allowed, then the call, denied for `reason`. The text frames the caller got.
async fn refused_build_log(
    gw: &TestGateway,
    token: &str,
    id: &str,
    said: &str,
    reason: &str,
) -> Vec<String> {
    let logs = format!("/apps/x/builds/{id}/logs");
    let sockets = || gw.rack().received().iter().filter(|r| r.websocket).count();
    let before = sockets();
    let since = gw.head();
    let (status, mut reader, _writer) = open(gw, token, &logs).await;
    assert!(status.contains("101"), "{status}");
    let text = texts(&until_eof(&mut reader).await);
    assert!(
        text[0].starts_with("ERROR: ") && text[0].contains(said),
        "{text:?}"
    );
    assert_eq!(sockets(), before, "no log socket reached the rack");
    let events = eventually("the refusal's records", || async {
        let e = gw.events_since(since).await;
        e.iter()
            .any(|r| matches!(&r.event, Event::CommandRequested(c) if c.reason == reason))
            .then_some(e)
    })
    .await;
    assert_eq!(
        requested_paths(&events),
        [
            (
                format!("/apps/x/builds/{id}"),
                "build_log_lookup".to_owned(),
                "Allow".to_owned()
            ),
            (logs, reason.to_owned(), "Deny".to_owned()),
        ]
    );
    text
}

/// A rack runs each build as a process of the service `build`, with the rack password in its
/// environment. A caller who may exec (ops) but not `convox:build:exec` is refused exec into it
/// and its files, after a recorded lookup of the process; any other process is theirs to exec
/// into, and an admin execs into a build's process without a lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builds_process_is_closed_to_exec_without_build_exec() {
    use crate::support::Body;
    let gw = TestGateway::start().await;
    let ops = gw
        .token_for("ops@example.com", Role::Ops, &["convox:*:*"])
        .await;
    let admin = gw.cli();
    // What the rack's `BuildCreate` does: `ProcessRun(app, "build", …)`.
    let build = gw
        .send_raw(admin.request(
            "POST",
            "/apps/x/services/build/processes?",
            &[("Command", "build -method tgz")],
            Body::Empty,
        ))
        .await;
    assert_eq!(build.status, 200, "{}", build.text());
    let pid = build.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(build.json()["name"], "build");
    let exec = format!("/apps/x/processes/{pid}/exec");
    let sockets = || gw.rack().received().iter().filter(|r| r.websocket).count();

    let before = sockets();
    let since = gw.head();
    let (status, mut reader, _writer) = open(&gw, &ops.secret, &exec).await;
    assert!(status.contains("101"), "{status}");
    let text = texts(&until_eof(&mut reader).await);
    assert!(
        text[0].starts_with("ERROR: ") && text[0].contains("convox:build:exec"),
        "{text:?}"
    );
    assert_eq!(
        text.last().map(String::as_str),
        Some(format!("{}1\n", mock_rack::EXIT_MARKER).as_str())
    );
    assert_eq!(sockets(), before, "no exec reached the rack");
    let files = gw
        .send_raw(gw.cli_as(&ops.secret).get(&format!(
            "/apps/x/processes/{pid}/files?file=%2Fproc%2F1%2Fenviron"
        )))
        .await;
    assert_eq!(files.status, 403, "{}", files.text());
    assert!(
        files.text().contains("convox:build:exec"),
        "{}",
        files.text()
    );
    let requested = eventually("the refusals' records", || async {
        let r = requested_paths(&gw.events_since(since).await);
        (r.len() == 4).then_some(r)
    })
    .await;
    let lookup = (
        format!("/apps/x/processes/{pid}"),
        "build_process_lookup".to_owned(),
        "Allow".to_owned(),
    );
    assert_eq!(
        requested,
        [
            lookup.clone(),
            (exec.clone(), "build_process".to_owned(), "Deny".to_owned()),
            lookup,
            (
                format!("/apps/x/processes/{pid}/files"),
                "build_process".to_owned(),
                "Deny".to_owned()
            ),
        ]
    );

    // Another process: the same caller's exec goes through, after its lookup.
    let (status, mut reader, mut writer) = open(&gw, &ops.secret, EXEC).await;
    assert!(status.contains("101"), "{status}");
    writer.binary(b"").await.unwrap();
    let frames = until_eof(&mut reader).await;
    assert!(
        !String::from_utf8_lossy(&frames[0].payload).starts_with("ERROR: "),
        "{frames:?}"
    );
    assert_eq!(sockets(), before + 1);

    // An admin holds `convox:build:exec`.
    let at = gw.head();
    let (status, mut reader, mut writer) = open(&gw, gw.token(), &exec).await;
    assert!(status.contains("101"), "{status}");
    writer.binary(b"").await.unwrap();
    until_eof(&mut reader).await;
    assert_eq!(sockets(), before + 2);
    let lookups = gw
        .events_since(at)
        .await
        .iter()
        .filter(|r| matches!(&r.event, Event::CommandRequested(c) if c.reason.ends_with("_lookup")))
        .count();
    assert_eq!(lookups, 0, "no lookup for a caller who holds it");
    gw.finish().await;
}

/// A token revoked while the gateway looks up the process of a file call stops there: the
/// call's intent is guarded once a lookup came after its check, so nothing but the lookup
/// reaches the rack and the refusal is recorded after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_during_the_process_lookup_forwards_nothing() {
    let gw = TestGateway::start().await;
    let ops = gw
        .token_for("ops@example.com", Role::Ops, &["convox:*:*"])
        .await;
    let target = "/apps/x/processes/web-5d8f7c9b4-abcde/files?file=%2Fetc%2Fhosts";
    let run = gw
        .revoke_during_lookup(ops.id, gw.cli_as(&ops.secret).get(target))
        .await;
    assert_eq!(run.reply.status, 401, "{}", run.reply.text());
    assert_eq!(
        run.sent,
        ["GET /apps/x/processes/web-5d8f7c9b4-abcde"],
        "only the lookup reached the rack"
    );
    assert_eq!(
        run.decided,
        [
            ("build_process_lookup".to_owned(), "Allow".to_owned()),
            ("token_no_longer_usable".to_owned(), "Deny".to_owned()),
        ]
    );
    gw.finish().await;
}

/// A rack that takes a WebSocket handshake and does not answer it within the gateway's 10 s:
/// the caller gets 502, and the call's end is recorded as that 502 (`upstream_no_answer`: the
/// rack may have started the command), as an HTTP call's is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_the_rack_never_answers_is_recorded_as_the_502_it_answers() {
    let gw = TestGateway::start().await;
    gw.rack()
        .set_handshake_delay(std::time::Duration::from_secs(12));
    let since = gw.head();
    // Longer than the gateway's own 10 s wait, which the test client's usual wait equals.
    let socket = open_socket_within(
        gw.proxy(),
        upgrade(&gw, gw.token(), EXEC),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(socket.head.status, 502, "{}", socket.head.text());
    let (_, done) = gw.call_records(since, &socket.head.request_id()).await;
    let done = crate::support::completed(&done).unwrap();
    assert_eq!(
        (done.status, done.failure.as_deref()),
        (502, Some("upstream_no_answer"))
    );
    gw.rack().set_handshake_delay(std::time::Duration::ZERO);
    gw.finish().await;
}
