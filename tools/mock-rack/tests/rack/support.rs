//! Test plumbing: a mock rack on port 0, a raw HTTP/1.1 client that sends exactly the bytes it is
//! given, and a WebSocket client built on the crate's own codec in the client role.
//!
//! Invariant: requests are composed from the CLI's captured header blocks (spec Appendix A) and
//! nothing is added behind the test's back; every network read has a deadline.

use std::time::Duration;

use bytes::Bytes;
use mock_rack::MockRack;
use mock_rack::ws::{Message, Role, WsReader, WsWriter};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The password of every test rack; the CLI captures used `RACK_URL=http://convox:TOKEN123@…`.
pub const PASSWORD: &str = "TOKEN123";
/// `Authorization` exactly as captured: `Basic base64("convox:TOKEN123")`.
pub const AUTH: &str = "Basic Y29udm94OlRPS0VOMTIz";
/// How long any single read may take.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub async fn rack() -> MockRack {
    MockRack::start("127.0.0.1:0".parse().unwrap(), PASSWORD)
        .await
        .unwrap()
}

pub fn host(rack: &MockRack) -> String {
    rack.addr().to_string()
}

/// A body-less CLI request (spec Appendix A.1): `Content-Type: application/octet-stream` even
/// with no body.
pub fn cli(rack: &MockRack, method: &str, target: &str) -> String {
    cli_with(rack, method, target, &[], None)
}

/// A CLI request with extra headers (placed before `Content-Type`, as Go sorts them) and an
/// optional urlencoded form body (spec Appendix A.4).
pub fn cli_with(
    rack: &MockRack,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    form: Option<&str>,
) -> String {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: convox.go/dev\r\n",
        host(rack)
    );
    match form {
        Some(body) => req.push_str(&format!("Content-Length: {}\r\n", body.len())),
        None if method == "POST" || method == "PUT" => req.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    req.push_str(&format!("Accept: */*\r\nAuthorization: {AUTH}\r\n"));
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let ct = if form.is_some() {
        "application/x-www-form-urlencoded"
    } else {
        "application/octet-stream"
    };
    req.push_str(&format!(
        "Content-Type: {ct}\r\nVersion: dev\r\nAccept-Encoding: gzip\r\n\r\n"
    ));
    if let Some(body) = form {
        req.push_str(body);
    }
    req
}

/// Sends raw request bytes on a fresh connection and reads one response.
pub async fn send(rack: &MockRack, raw: impl AsRef<[u8]>) -> Reply {
    let mut stream = TcpStream::connect(rack.addr()).await.unwrap();
    stream.write_all(raw.as_ref()).await.unwrap();
    let (reply, _) = read_response(&mut stream).await;
    reply
}

/// Sends a body-less CLI request.
pub async fn call(rack: &MockRack, method: &str, target: &str) -> Reply {
    send(rack, cli(rack, method, target)).await
}

/// Sends a CLI form request.
pub async fn call_form(rack: &MockRack, method: &str, target: &str, form: &str) -> Reply {
    send(rack, cli_with(rack, method, target, &[], Some(form))).await
}

/// Reads a response head and a `Content-Length` body; returns bytes read past the head when the
/// response is `101` (they belong to the WebSocket). Reads from a whole socket or from the read
/// half of one whose other half is still sending.
pub async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> (Reply, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "connection closed before the response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status: u16 = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut rest = buf[head_end..].to_vec();
    if status == 101 {
        return (
            Reply {
                status,
                headers,
                body: Vec::new(),
            },
            rest,
        );
    }
    let reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let len: usize = reply
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    while rest.len() < len {
        let mut chunk = vec![0u8; len - rest.len()];
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed inside the body");
        rest.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(rest.len(), len, "bytes after the body");
    (
        Reply {
            body: rest,
            ..reply
        },
        Vec::new(),
    )
}

/// A client WebSocket.
pub struct Ws {
    pub reader: WsReader<OwnedReadHalf>,
    pub writer: WsWriter<OwnedWriteHalf>,
}

impl Ws {
    /// The next message, failing the test after the deadline.
    pub async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(DEADLINE, self.reader.read_message())
            .await
            .unwrap()
            .unwrap()
    }

    /// Text frames until the empty binary EOF frame (spec §4.2).
    pub async fn until_eof(&mut self) -> Vec<Bytes> {
        let mut texts = Vec::new();
        loop {
            match self.next().await {
                Some(Message::Text(t)) => texts.push(t),
                Some(Message::Binary(b)) if b.is_empty() => return texts,
                other => panic!("unexpected before EOF: {other:?}"),
            }
        }
    }

    /// Pings and expects the pong: the socket is still open after EOF (spec §0 item 4).
    pub async fn assert_open(&mut self) {
        self.writer.ping(b"alive?").await.unwrap();
        assert_eq!(
            self.next().await,
            Some(Message::Pong(Bytes::from_static(b"alive?")))
        );
    }
}

/// The CLI's WebSocket handshake (spec Appendix A.5): options as headers, no `Content-Type`.
pub fn ws_request(rack: &MockRack, path: &str, auth: &str, extra: &[(&str, &str)]) -> String {
    let host = host(rack);
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: convox.go/dev\r\nAuthorization: {auth}\r\n"
    );
    let mut headers: Vec<(String, String)> = vec![
        ("Connection".into(), "Upgrade".into()),
        ("Origin".into(), format!("http://{host}")),
        (
            "Sec-WebSocket-Key".into(),
            "1y4rF1VcW2vLEIYpWG8sjg==".into(),
        ),
        ("Sec-WebSocket-Version".into(), "13".into()),
        ("Upgrade".into(), "websocket".into()),
        ("Version".into(), "dev".into()),
    ];
    for (k, v) in extra {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        headers.push(((*k).to_owned(), (*v).to_owned()));
    }
    // Go writes request headers sorted by name.
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Opens a WebSocket; returns the handshake reply and, on 101, the socket.
pub async fn ws_connect(rack: &MockRack, raw: &str) -> (Reply, Option<Ws>) {
    let mut stream = TcpStream::connect(rack.addr()).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let (reply, leftover) = read_response(&mut stream).await;
    if reply.status != 101 {
        return (reply, None);
    }
    let (read, write) = stream.into_split();
    let mut reader = WsReader::new(read, Role::Client);
    reader.prepend(&leftover);
    let writer = WsWriter::new(write, Role::Client);
    (reply, Some(Ws { reader, writer }))
}
