//! Requests refused before their body is read, as the rack's Go server answers them: the
//! router's 404/405 and the auth middleware's 401 go out without waiting for the body; the unread
//! rest is discarded up to Go's `maxPostHandlerReadBytes` (256 KiB), a body that ends within it
//! keeps the connection alive, a longer one gets `Connection: close` and the connection ends with
//! FIN (EOF at the client) rather than a reset, even while the client is still sending.
//!
//! Invariant: each test writes raw bytes on a real socket and holds back (or trickles) the body,
//! so an answer that waits for the whole body fails on the deadline instead of passing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use mock_rack::{MockRack, SEED_APP};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, AUTH, DEADLINE, cli, read_response};

/// `Authorization` with a wrong password: `Basic base64("convox:wrong")`.
const WRONG: &str = "Basic Y29udm94Ondyb25n";
/// Go's `maxPostHandlerReadBytes`.
const LIMIT: usize = 256 << 10;

/// The head of a CLI upload (spec Appendix A, `convox deploy`): `Content-Length` and the given
/// `Authorization`, then the body's framing headers from `framing`.
fn upload_head(rack: &MockRack, method: &str, target: &str, auth: &str, framing: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: convox.go/dev\r\n{framing}Accept: */*\r\nAuthorization: {auth}\r\nContent-Type: application/octet-stream\r\nVersion: dev\r\nAccept-Encoding: gzip\r\n\r\n",
        support::host(rack)
    )
}

fn length(n: usize) -> String {
    format!("Content-Length: {n}\r\n")
}

/// Bytes that differ from position to position, so a shifted or truncated record shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Equal bytes; on a difference, says where instead of printing both in full.
fn assert_bytes(actual: &[u8], expected: &[u8], what: &str) {
    let first_difference = actual.iter().zip(expected).position(|(a, e)| a != e);
    assert!(
        actual == expected,
        "{what}: {} bytes, expected {}; first difference at {first_difference:?}",
        actual.len(),
        expected.len()
    );
}

/// The next read ends the connection cleanly: `Ok(0)`, not a reset and not more bytes.
async fn assert_eof(stream: &mut (impl AsyncRead + Unpin)) {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("neither EOF nor bytes within the deadline"))
    {
        Ok(0) => {}
        Ok(n) => panic!(
            "bytes after the answer: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("the connection ended with {:?}, not EOF", e.kind()),
    }
}

/// Sends `raw` on a new connection and checks the answer is a 401 with `Connection: close`,
/// then the end of the connection.
async fn refused_then_closed(rack: &MockRack, raw: &[u8]) {
    let mut stream = TcpStream::connect(rack.addr()).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let (reply, _) = read_response(&mut stream).await;
    assert_eq!(
        (reply.status, reply.header("connection")),
        (401, Some("close"))
    );
    assert_eof(&mut stream).await;
}

/// (a) A wrong password on a 64 MiB upload: the 401 comes while the client is still sending, with
/// `Connection: close`, and the connection then ends with EOF, not a reset: the rack shuts its
/// side and keeps taking (and dropping) what the client still sends, so the client's writes do
/// not fail under it — a proxy relaying the upload gets to read the answer instead of an error.
/// Nothing of the body is read (its declared length is past the limit).
#[tokio::test]
async fn a_refused_large_upload_gets_its_401_while_still_sending_then_eof() {
    let rack = support::rack().await;
    let total = 64 << 20;
    let head = upload_head(
        &rack,
        "POST",
        "/apps/x/objects/tmp/big.tgz?",
        WRONG,
        &length(total),
    );
    let stream = TcpStream::connect(rack.addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn({
        let (sent, done) = (sent.clone(), done.clone());
        async move {
            // A first chunk, then a trickle, until told to give up; then the client's FIN.
            let mut piece = vec![0x5A; 64 << 10];
            while !done.load(Ordering::Relaxed) {
                write.write_all(&piece).await?;
                sent.fetch_add(piece.len(), Ordering::Relaxed);
                piece.truncate(4096);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            write.shutdown().await
        }
    });

    let (reply, _) = read_response(&mut read).await;
    assert!(
        sent.load(Ordering::Relaxed) < total,
        "the answer came while the body was still being sent"
    );
    assert_eq!(reply.status, 401);
    assert_eq!(reply.text(), "invalid authentication\n");
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eof(&mut read).await;
    // The client notices the answer only a moment later, still sending meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    done.store(true, Ordering::Relaxed);
    let writes = tokio::time::timeout(DEADLINE, sender)
        .await
        .unwrap()
        .unwrap();
    assert!(
        writes.is_ok(),
        "the rack reset the connection while the client was sending: {writes:?}"
    );
    assert_eof(&mut read).await;

    let received = rack.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].status, 401);
    assert!(received[0].body.is_empty(), "nothing of the body was read");
}

/// The server's stop is not held up by a connection lingering after such a refusal: the linger
/// is bounded, whatever the client does.
#[tokio::test]
async fn a_stop_during_a_linger_still_ends_promptly() {
    let rack = support::rack().await;
    let head = upload_head(&rack, "POST", "/apps?", WRONG, &length(64 << 20));
    let mut stream = TcpStream::connect(rack.addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0x5A; 64 << 10]).await.unwrap();
    let (reply, _) = read_response(&mut stream).await;
    assert_eq!(
        (reply.status, reply.header("connection")),
        (401, Some("close"))
    );
    // The client neither closes nor reads on: the rack lingers, then stops.
    let started = tokio::time::Instant::now();
    tokio::time::timeout(DEADLINE, rack.shutdown())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eof(&mut stream).await;
}

/// (b) A wrong password on a small body that was sent whole: 401, the body discarded, and the
/// same connection then serves an authorized request (keep-alive, as Go keeps it).
#[tokio::test]
async fn a_refused_small_body_keeps_the_connection_for_the_next_request() {
    let rack = support::rack().await;
    let body = pattern(100 << 10);
    let mut raw = upload_head(
        &rack,
        "POST",
        "/apps/x/objects/tmp/small.tgz?",
        WRONG,
        &length(body.len()),
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let mut stream = TcpStream::connect(rack.addr()).await.unwrap();
    stream.write_all(&raw).await.unwrap();
    let (reply, _) = read_response(&mut stream).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("connection"), None);

    stream
        .write_all(cli(&rack, "GET", "/apps?").as_bytes())
        .await
        .unwrap();
    let (reply, _) = read_response(&mut stream).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()[0]["name"], "x");

    let received = rack.received();
    let statuses: Vec<u16> = received.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 200]);
    assert_bytes(&received[0].body, &body, "the discarded body, recorded");
    assert!(rack.object(SEED_APP, "tmp/small.tgz").is_none());
}

/// Go's limit is on the declared length left unread: 256 KiB − 1 is discarded and the
/// connection kept; 256 KiB is not read at all and the connection closes.
#[tokio::test]
async fn the_discard_stops_at_gos_256_kib() {
    let rack = support::rack().await;
    let under = pattern(LIMIT - 1);
    let mut raw = upload_head(&rack, "POST", "/apps?", WRONG, &length(under.len())).into_bytes();
    raw.extend_from_slice(&under);
    let mut stream = TcpStream::connect(rack.addr()).await.unwrap();
    stream.write_all(&raw).await.unwrap();
    let (reply, _) = read_response(&mut stream).await;
    assert_eq!((reply.status, reply.header("connection")), (401, None));
    stream
        .write_all(cli(&rack, "GET", "/system?").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut stream).await.0.status, 200);

    let at = pattern(LIMIT);
    let mut raw = upload_head(&rack, "POST", "/apps?", WRONG, &length(at.len())).into_bytes();
    raw.extend_from_slice(&at);
    refused_then_closed(&rack, &raw).await;

    let received = rack.received();
    let statuses: Vec<u16> = received.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 200, 401]);
    assert_bytes(&received[0].body, &under, "the discarded body, recorded");
    assert!(received[2].body.is_empty());
}

/// A chunked body has no declared length: Go reads up to the limit plus one byte to tell, and
/// closes when that much was there. The record holds what was read.
#[tokio::test]
async fn a_refused_chunked_body_over_the_limit_closes_after_the_limit() {
    let rack = support::rack().await;
    let body = pattern(LIMIT + (44 << 10));
    let mut raw = upload_head(
        &rack,
        "POST",
        "/apps/x/objects/tmp/chunked.tgz?",
        WRONG,
        "Transfer-Encoding: chunked\r\n",
    )
    .into_bytes();
    for piece in body.chunks(16 << 10) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    refused_then_closed(&rack, &raw).await;
    let received = rack.received();
    assert_bytes(&received[0].body, &body[..=LIMIT], "what the discard read");
}

/// (c) The router answers an unknown route (404) and a wrong method (405) with an empty body
/// before any of a large body is sent, and closes.
#[tokio::test]
async fn an_unknown_route_or_method_is_answered_before_the_body_is_sent() {
    let rack = support::rack().await;
    for (method, target, status) in [("POST", "/racks?", 404), ("PATCH", "/apps?", 405)] {
        let head = upload_head(&rack, method, target, AUTH, &length(8 << 20));
        let mut stream = TcpStream::connect(rack.addr()).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let (reply, _) = read_response(&mut stream).await;
        assert_eq!(reply.status, status, "{method} {target}");
        assert!(reply.body.is_empty());
        assert_eq!(reply.header("content-length"), Some("0"));
        assert_eq!(reply.header("connection"), Some("close"));
        assert_eq!(reply.header("request-id"), None);
        assert_eof(&mut stream).await;
    }
    let received = rack.received();
    let statuses: Vec<u16> = received.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 405]);
    assert!(received.iter().all(|r| r.body.is_empty()));
}

/// A client that waits for `100 Continue` never gets it on a refusal: Go answers at once and
/// closes, reading nothing (its `expectContinueReader` was never read).
#[tokio::test]
async fn a_refused_client_waiting_for_100_continue_gets_the_401_instead() {
    let rack = support::rack().await;
    let framing = format!("{}Expect: 100-continue\r\n", length(5 << 20));
    let head = upload_head(&rack, "POST", "/apps/x/objects/tmp/e.tgz?", WRONG, &framing);
    refused_then_closed(&rack, head.as_bytes()).await;
    assert!(rack.received()[0].body.is_empty());
}

/// (d) An authorized upload past the discard limit, sent while the answer is awaited, is read
/// whole: stored, hashed and recorded byte for byte.
#[tokio::test]
async fn an_authorized_large_upload_is_read_whole_and_recorded() {
    let rack = support::rack().await;
    let body = pattern(LIMIT * 4 + 7);
    let key = "tmp/whole.tgz";
    let head = upload_head(
        &rack,
        "POST",
        &format!("/apps/x/objects/{key}?"),
        AUTH,
        &length(body.len()),
    );
    let stream = TcpStream::connect(rack.addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let sender = tokio::spawn({
        let body = body.clone();
        async move {
            for piece in body.chunks(64 << 10) {
                write.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            write
        }
    });
    let (reply, _) = read_response(&mut read).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        format!("{{\n  \"Url\": \"object://x/{key}\"\n}}\n")
    );
    assert_eq!(reply.header("connection"), None);
    let _write = sender.await.unwrap();
    let stored = rack.object(SEED_APP, key).unwrap();
    assert_bytes(&stored.data, &body, "the stored object");
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&body)));
    let received = rack.received();
    assert_eq!(received.len(), 1);
    assert_bytes(&received[0].body, &body, "the recorded body");
}
