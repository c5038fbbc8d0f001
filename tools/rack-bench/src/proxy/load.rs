//! The one load generator of `rack-bench proxy`: a fixed number of closed-loop HTTP/1.1
//! keep-alive connections, each sending the CLI's requests one after another.
//!
//! **Invariant:** every target (rack, nginx, gateway) gets byte-identical requests apart from
//! the `Host` and `Authorization` values, in the same order and mix; a request is *measured*
//! when it completes inside the window `[warm-up end, warm-up end + seconds]`, and every
//! measured request is counted exactly once: as a latency sample when its status is 200 and
//! its body was read to the end, or as an error otherwise. No new request starts after the
//! window closes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

use crate::latency::{Samples, Summary};

/// `convox env set A=B -a x`'s form body, as captured (spec Appendix A.4).
pub const ENV_FORM: &str = "env=A%3DB%0AFOO%3Dbar%0ASECRET_TOKEN%3Ds3cr3t";

/// The request mix: each connection cycles through these, starting at its own offset, so the
/// three are sent equally often.
pub const MIX: [Kind; 3] = [Kind::Apps, Kind::Releases, Kind::ReleaseCreate];

/// The first client address; connection `i` binds `127.0.0.(10 + i)` (all of 127/8 is
/// loopback on Linux), so every connection is its own client, as 32 CLI users would be.
const FIRST_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);
/// How many error messages are kept for the report.
const ERRORS_KEPT: usize = 3;

/// One request of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `convox apps`: `GET /apps?`.
    Apps,
    /// `convox releases -a x`: `GET /apps/x/releases?`.
    Releases,
    /// `convox env set`: `POST /apps/x/releases?` with the whole env as a form.
    ReleaseCreate,
}

/// Where the load goes and how long.
pub struct Plan {
    pub target: SocketAddr,
    /// The `Authorization` header value (`Basic base64(convox:<secret>)`).
    pub authorization: String,
    pub connections: usize,
    pub warmup: Duration,
    pub seconds: Duration,
}

/// The window the caller should take its own measurements over (CPU time).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

/// What the measured window saw, merged over all connections.
#[derive(Default)]
pub struct Outcome {
    /// Successful measured requests per kind, in [`MIX`] order.
    pub samples: [Samples; 3],
    /// The same samples, all kinds together.
    pub all: Samples,
    /// Measured requests that failed (non-200 status, transport error, truncated body).
    pub errors: u64,
    /// Failures during the warm-up (reported, not fatal).
    pub warmup_errors: u64,
    /// The first few failure descriptions.
    pub error_examples: Vec<String>,
    /// Response body bytes of the measured successful requests.
    pub body_bytes: u64,
    /// Connections the server closed and the generator had to open again.
    pub reconnects: u64,
    /// Requests answered 200 in any phase (warm-up, window, drain).
    pub answered: u64,
}

/// Per-kind and overall latency of one run.
pub struct Measured {
    pub all: Summary,
    pub by_kind: [Summary; 3],
}

// === impl Kind ===

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Apps => "GET /apps?",
            Kind::Releases => "GET /apps/x/releases?",
            Kind::ReleaseCreate => "POST /apps/x/releases? env=...",
        }
    }

    fn request(self, host: &HeaderValue, authorization: &HeaderValue) -> Request<Full<Bytes>> {
        let (method, target, body) = match self {
            Kind::Apps => (Method::GET, "/apps?", None),
            Kind::Releases => (Method::GET, "/apps/x/releases?", None),
            Kind::ReleaseCreate => (Method::POST, "/apps/x/releases?", Some(ENV_FORM)),
        };
        let mut req = Request::new(Full::new(
            body.map_or_else(Bytes::new, |b| Bytes::from_static(b.as_bytes())),
        ));
        *req.method_mut() = method;
        *req.uri_mut() = hyper::Uri::from_static(target);
        // The CLI's headers in the CLI's order (spec §1.2, Appendix A.1 and A.4).
        let h = req.headers_mut();
        h.insert(hyper::header::HOST, host.clone());
        h.insert(
            hyper::header::USER_AGENT,
            HeaderValue::from_static("convox.go/dev"),
        );
        if let Some(body) = body {
            h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        h.insert(hyper::header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(hyper::header::AUTHORIZATION, authorization.clone());
        h.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static(match body {
                Some(_) => "application/x-www-form-urlencoded",
                None => "application/octet-stream",
            }),
        );
        h.insert(
            HeaderName::from_static("version"),
            HeaderValue::from_static("dev"),
        );
        h.insert(
            hyper::header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
        req
    }
}

// === impl Outcome ===

impl Outcome {
    /// Adds another window's outcome of the same target.
    pub fn merge(&mut self, other: Outcome) {
        let [a, b, c] = other.samples;
        for (mine, theirs) in self.samples.iter_mut().zip([a, b, c]) {
            mine.merge(theirs);
        }
        self.all.merge(other.all);
        self.errors += other.errors;
        self.warmup_errors += other.warmup_errors;
        let room = ERRORS_KEPT.saturating_sub(self.error_examples.len());
        self.error_examples
            .extend(other.error_examples.into_iter().take(room));
        self.body_bytes += other.body_bytes;
        self.reconnects += other.reconnects;
        self.answered += other.answered;
    }

    /// The latency summaries, overall and per kind.
    pub fn measured(self) -> Measured {
        let [a, b, c] = self.samples;
        Measured {
            all: self.all.summary(),
            by_kind: [a.summary(), b.summary(), c.summary()],
        }
    }
}

/// Runs the plan on the current runtime: connects every connection first, then starts the
/// clock; returns once every connection has finished its last request.
pub async fn run(plan: &Plan, on_window: impl FnOnce(Window)) -> Result<Outcome> {
    let host = HeaderValue::from_str(&plan.target.to_string())?;
    let authorization = HeaderValue::from_str(&plan.authorization)
        .context("the Authorization value is not a valid header")?;
    let mut senders = Vec::with_capacity(plan.connections);
    for i in 0..plan.connections {
        let source = client_address(i)?;
        let sender = connect(plan.target, source)
            .await
            .with_context(|| format!("connecting from {source} to {}", plan.target))?;
        senders.push((source, sender));
    }
    let start = Instant::now() + Duration::from_millis(50);
    let window = Window {
        start: start + plan.warmup,
        end: start + plan.warmup + plan.seconds,
    };
    on_window(window);
    let mut tasks = Vec::with_capacity(plan.connections);
    for (i, (source, sender)) in senders.into_iter().enumerate() {
        let conn = Connection {
            target: plan.target,
            source,
            host: host.clone(),
            authorization: authorization.clone(),
            offset: i % MIX.len(),
        };
        tasks.push(tokio::spawn(conn.drive(sender, start, window)));
    }
    let mut outcome = Outcome {
        samples: [Samples::default(), Samples::default(), Samples::default()],
        all: Samples::default(),
        errors: 0,
        warmup_errors: 0,
        error_examples: Vec::new(),
        body_bytes: 0,
        reconnects: 0,
        answered: 0,
    };
    for t in tasks {
        let part = t.await.context("a load generator task panicked")??;
        let [a, b, c] = part.samples;
        let [oa, ob, oc] = &mut outcome.samples;
        oa.merge(a);
        ob.merge(b);
        oc.merge(c);
        outcome.all.merge(part.all);
        outcome.errors += part.errors;
        outcome.warmup_errors += part.warmup_errors;
        outcome.body_bytes += part.body_bytes;
        outcome.reconnects += part.reconnects;
        outcome.answered += part.answered;
        for e in part.error_examples {
            if outcome.error_examples.len() < ERRORS_KEPT {
                outcome.error_examples.push(e);
            }
        }
    }
    Ok(outcome)
}

/// Connection `i`'s client address.
fn client_address(i: usize) -> Result<IpAddr> {
    let i = u32::try_from(i)?;
    let ip = u32::from(FIRST_CLIENT)
        .checked_add(i)
        .filter(|ip| Ipv4Addr::from(*ip).octets()[0] == 127)
        .context("too many connections for distinct loopback client addresses")?;
    Ok(IpAddr::V4(Ipv4Addr::from(ip)))
}

async fn connect(target: SocketAddr, source: IpAddr) -> Result<SendRequest<Full<Bytes>>> {
    let socket = TcpSocket::new_v4()?;
    socket
        .bind(SocketAddr::new(source, 0))
        .with_context(|| format!("cannot bind the client address {source}"))?;
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::Builder::new()
        // Go's transport writes canonical header names (`User-Agent`), as the CLI does.
        .title_case_headers(true)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One closed-loop connection.
struct Connection {
    target: SocketAddr,
    source: IpAddr,
    host: HeaderValue,
    authorization: HeaderValue,
    offset: usize,
}

/// What one connection measured.
struct Part {
    samples: [Samples; 3],
    all: Samples,
    errors: u64,
    warmup_errors: u64,
    error_examples: Vec<String>,
    body_bytes: u64,
    reconnects: u64,
    answered: u64,
}

// === impl Connection ===

impl Connection {
    async fn drive(
        self,
        mut sender: SendRequest<Full<Bytes>>,
        start: Instant,
        window: Window,
    ) -> Result<Part> {
        let mut part = Part {
            samples: [Samples::default(), Samples::default(), Samples::default()],
            all: Samples::default(),
            errors: 0,
            warmup_errors: 0,
            error_examples: Vec::new(),
            body_bytes: 0,
            reconnects: 0,
            answered: 0,
        };
        tokio::time::sleep_until(start.into()).await;
        let mut n = self.offset;
        while Instant::now() < window.end {
            if sender.ready().await.is_err() {
                // The server closed the keep-alive connection between requests: open it again.
                part.reconnects += 1;
                sender = connect(self.target, self.source).await.with_context(|| {
                    format!("reconnecting from {} to {}", self.source, self.target)
                })?;
                continue;
            }
            let slot = n % MIX.len();
            let kind = MIX[slot];
            n += 1;
            let sent = Instant::now();
            let result = exchange(&mut sender, kind.request(&self.host, &self.authorization)).await;
            let done = Instant::now();
            let measured = done >= window.start && done <= window.end;
            if result.is_ok() {
                part.answered += 1;
            }
            match result {
                Ok(bytes) if measured => {
                    part.samples[slot].push(done - sent);
                    part.all.push(done - sent);
                    part.body_bytes += bytes;
                }
                Ok(_) => {}
                Err(e) => {
                    if measured {
                        part.errors += 1;
                    } else if done < window.start {
                        part.warmup_errors += 1;
                    }
                    if part.error_examples.len() < ERRORS_KEPT {
                        part.error_examples.push(format!("{}: {e:#}", kind.label()));
                    }
                }
            }
        }
        Ok(part)
    }
}

/// Sends one request and reads its whole answer; the body's length when the status is 200.
async fn exchange(sender: &mut SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> Result<u64> {
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            bytes += data.len() as u64;
        }
    }
    if status != StatusCode::OK {
        anyhow::bail!("status {status} ({bytes} body bytes)");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_stay_in_loopback() {
        assert_eq!(
            client_address(0).ok(),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10)))
        );
        assert_eq!(
            client_address(300).ok(),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 54)))
        );
        assert!(client_address(usize::MAX).is_err());
        assert!(client_address(1 << 24).is_err());
    }

    /// What goes on the wire is what the CLI sent in the capture (spec Appendix A.1, A.4).
    #[tokio::test]
    async fn wire_bytes_match_the_cli_capture() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            for expected_len in [None, Some(45usize)] {
                let start = seen.len();
                loop {
                    let text = String::from_utf8_lossy(&seen[start..]).into_owned();
                    let complete = text
                        .find("\r\n\r\n")
                        .is_some_and(|end| text.len() >= end + 4 + expected_len.unwrap_or(0));
                    if complete {
                        break;
                    }
                    let n = sock.read(&mut buf).await.unwrap();
                    assert!(n > 0);
                    seen.extend_from_slice(&buf[..n]);
                }
                sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n[]\n")
                    .await
                    .unwrap();
            }
            String::from_utf8(seen).unwrap()
        });
        let mut sender = connect(addr, IpAddr::V4(Ipv4Addr::LOCALHOST))
            .await
            .unwrap();
        let host = HeaderValue::from_str(&addr.to_string()).unwrap();
        let auth = HeaderValue::from_static("Basic Y29udm94OlRPS0VOMTIz");
        for kind in [Kind::Apps, Kind::ReleaseCreate] {
            assert_eq!(
                exchange(&mut sender, kind.request(&host, &auth))
                    .await
                    .unwrap(),
                3
            );
        }
        let wire = server.await.unwrap();
        let head = |line: &str| {
            format!("{line} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: convox.go/dev\r\n")
        };
        let tail = "Accept: */*\r\nAuthorization: Basic Y29udm94OlRPS0VOMTIz\r\n";
        let expected = format!(
            "{}{tail}Content-Type: application/octet-stream\r\nVersion: dev\r\n\
             Accept-Encoding: gzip\r\n\r\n\
             {}Content-Length: 45\r\n{tail}Content-Type: application/x-www-form-urlencoded\r\n\
             Version: dev\r\nAccept-Encoding: gzip\r\n\r\n{ENV_FORM}",
            head("GET /apps?"),
            head("POST /apps/x/releases?"),
        );
        assert_eq!(wire, expected);
    }

    #[test]
    fn requests_carry_the_cli_headers_in_order() {
        let host = HeaderValue::from_static("127.0.0.1:1");
        let auth = HeaderValue::from_static("Basic Y29udm94OlRPS0VOMTIz");
        let req = Kind::ReleaseCreate.request(&host, &auth);
        let names: Vec<&str> = req.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(
            names,
            [
                "host",
                "user-agent",
                "content-length",
                "accept",
                "authorization",
                "content-type",
                "version",
                "accept-encoding"
            ]
        );
        assert_eq!(req.headers()["content-length"], "45");
        let req = Kind::Apps.request(&host, &auth);
        assert_eq!(req.uri(), "/apps?");
        assert_eq!(req.headers()["content-type"], "application/octet-stream");
        assert!(req.headers().get("content-length").is_none());
    }
}
