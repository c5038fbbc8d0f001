//! One HTTP request, from arrival to recorded answer: route (unauthenticated 404/405 first, as
//! the rack's router does), authenticate a plain route, and only then read the body, run the
//! handler or hand the socket to a session, render, record.
//!
//! A request refused before any handler (the router's 404/405, the auth middleware's 401) is
//! answered without its body being read, as the rack's Go server answers it: after the answer is
//! decided, and before its head goes out, the unread body is discarded up to Go's
//! `maxPostHandlerReadBytes` ([`MAX_POST_HANDLER_READ`]). A body that ends within it keeps the
//! connection alive; a longer one, or a declared `Content-Length` already at the limit (then
//! nothing is read), gets `Connection: close` and the connection is closed the Go way (see
//! `linger`). So a proxy in front sees the early 401 to a large upload while it is still sending.
//!
//! Invariant: every request is recorded exactly once with the status it got and the body bytes
//! that were read — for an early refusal, what the discard read (see [`discard_unread`]);
//! authentication happens after routing on plain routes and after the upgrade on sockets (spec
//! §1.5, §2.5); no lock is held while the body is read or the response is written.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, EXPECT, HeaderValue, UPGRADE};
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::auth;
use crate::gzip;
use crate::handlers::{self, Call};
use crate::linger::BodyLimitHit;
use crate::params::Params;
use crate::record::{Received, UsedParam};
use crate::respond::{self, Body, Envelope};
use crate::routes::{self, Kind, Resolution, RouteDef, RouteId, Vars};
use crate::sessions::{self, Session};
use crate::shared::Shared;
use crate::upgrade::{self, Handshake};

/// Go's `maxPostHandlerReadBytes`: the most of an unread request body its server discards after
/// the handler so that the connection can serve the next request.
const MAX_POST_HANDLER_READ: usize = 256 << 10;

/// A request body and, for object uploads, its SHA-256 (hex).
struct ReadBody {
    bytes: Bytes,
    sha256: Option<String>,
}

/// What the connection does after an early refusal, once the unread body is dealt with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// The body ended within the limit: the next request may follow.
    KeepAlive,
    /// `Connection: close`, closed at once (Go's `closeAfterReply` alone).
    Close,
    /// `Connection: close`, closed the Go way: FIN, linger, close (Go's `requestBodyLimitHit`).
    Linger,
}

/// The unread body of an early refusal after the discard.
struct Discarded {
    /// What the discard read.
    bytes: Bytes,
    after: After,
}

/// Serves one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    stop: watch::Receiver<bool>,
) -> Response<Body> {
    let seq = shared.next_arrival();
    let upgrade_ws = req
        .headers()
        .get_all(UPGRADE)
        .iter()
        .any(|v| v.as_bytes() == b"websocket");
    let resolution = match path_unescape(req.uri().path()) {
        Some(path) => routes::resolve(req.method().as_str(), &path, upgrade_ws),
        None => {
            let (parts, body) = req.into_parts();
            let body = read_body(body, false)
                .await
                .map(|b| b.bytes)
                .unwrap_or_default();
            let response = malformed_uri();
            record(&shared, seq, &parts, body, Vec::new(), false, &response);
            return response;
        }
    };
    let (route, vars) = match resolution {
        Resolution::Found { route, vars } => (route, vars),
        Resolution::MethodNotAllowed | Resolution::NotFound => {
            // Answered by the router itself: no authentication, no Request-Id, empty body, the
            // request body left unread.
            let status = if resolution == Resolution::NotFound {
                404
            } else {
                405
            };
            return refuse_unread(&shared, seq, req, respond::bare(status)).await;
        }
    };
    if route.kind == Kind::Socket {
        return socket(shared, seq, req, route, vars, stop).await;
    }

    let accepts_json = respond::accepts_json(req.headers());
    // `/check` is the one route outside the auth middleware (spec §1.1).
    if route.id != RouteId::Check && !auth::authenticate(req.headers(), &shared.password) {
        let envelope = Envelope {
            request_id: Some(shared.next_request_id()),
            authenticated: false,
            accepts_json,
        };
        let response = gzip_if_on(&shared, respond::unauthorized(&envelope)).await;
        let response = refuse_unread(&shared, seq, req, response).await;
        shared.answer_delay.pass().await;
        return response;
    }

    let hash = route.id == RouteId::ObjectStore;
    let (parts, body) = req.into_parts();
    let Ok(body) = read_body(body, hash).await else {
        return unreadable_body(&shared, seq, &parts);
    };
    let envelope = Envelope {
        request_id: Some(shared.next_request_id()),
        authenticated: route.id != RouteId::Check,
        accepts_json,
    };
    let mut call = call_of(&shared, &vars, &parts, &body.bytes, body.sha256);
    let reply = handlers::dispatch(route.id, &mut call);
    let response = gzip_if_on(&shared, respond::render(reply, &envelope)).await;
    let used = call.params.into_used();
    record(&shared, seq, &parts, body.bytes, used, false, &response);
    shared.answer_delay.pass().await;
    response
}

/// What a handler or session is given: the route's variables, the parameters read from the
/// query, headers and body with Go's precedence, and the body itself.
fn call_of<'a>(
    shared: &'a Shared,
    vars: &'a Vars,
    parts: &'a Parts,
    body: &'a Bytes,
    sha256: Option<String>,
) -> Call<'a> {
    Call {
        shared,
        vars,
        params: Params::new(&parts.method, parts.uri.query(), &parts.headers, body),
        body: body.clone(),
        sha256,
    }
}

/// The answer to a request whose body broke off or was malformed: a bare 400, recorded with no
/// body.
fn unreadable_body(shared: &Shared, seq: u64, parts: &Parts) -> Response<Body> {
    let response = respond::bare(400);
    record(
        shared,
        seq,
        parts,
        Bytes::new(),
        Vec::new(),
        false,
        &response,
    );
    response
}

/// A WebSocket route: the body is read (a handshake has none), gorilla's handshake checks run,
/// and authentication happens in the session after the upgrade (spec §2.5).
async fn socket(
    shared: Arc<Shared>,
    seq: u64,
    mut req: Request<Incoming>,
    route: &'static RouteDef,
    vars: Vars,
    stop: watch::Receiver<bool>,
) -> Response<Body> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let (parts, body) = req.into_parts();
    let Ok(body) = read_body(body, false).await else {
        return unreadable_body(&shared, seq, &parts);
    };
    let authenticated = auth::authenticate(&parts.headers, &shared.password);
    let mut call = call_of(&shared, &vars, &parts, &body.bytes, body.sha256);
    let response = match upgrade::check(&parts.headers, &parts.uri) {
        Handshake::Refuse { status, reason } => upgrade::refused(status, reason),
        Handshake::Accept(accept) => {
            let session = if authenticated {
                sessions::plan(route.id, &mut call, &parts.headers)
            } else {
                Session::unauthenticated()
            };
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    sessions::run(TokioIo::new(upgraded), session, stop).await;
                }
            });
            upgrade::accepted(&accept)
        }
    };
    let used = call.params.into_used();
    record(&shared, seq, &parts, body.bytes, used, true, &response);
    shared.handshake_delay.pass().await;
    response
}

/// Finishes a refusal decided before the body was read: discards the unread body as Go's server
/// does after a handler, marks the answer for how the connection goes on, and records it with
/// the bytes the discard read.
async fn refuse_unread(
    shared: &Shared,
    seq: u64,
    req: Request<Incoming>,
    mut response: Response<Body>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let discarded = discard_unread(&parts.headers, parts.version, body).await;
    if discarded.after != After::KeepAlive {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    if discarded.after == After::Linger {
        response.extensions_mut().insert(BodyLimitHit);
    }
    record(
        shared,
        seq,
        &parts,
        discarded.bytes,
        Vec::new(),
        false,
        &response,
    );
    response
}

/// Go's discard of a body its handler left unread (`chunkWriter.writeHeader`, before the answer's
/// head goes out), and what it read:
/// - no body: nothing, keep-alive;
/// - a client waiting for `100 Continue`, which is never sent: nothing, close at once;
/// - a declared `Content-Length` of at least [`MAX_POST_HANDLER_READ`]: nothing, linger;
/// - otherwise up to [`MAX_POST_HANDLER_READ`] + 1 bytes, as `io.CopyN` reads them: the whole
///   body and keep-alive when it ends within the limit, else those bytes and linger; a broken
///   body (bad chunking, the client gone) closes at once with what was read.
async fn discard_unread(headers: &HeaderMap, version: Version, mut body: Incoming) -> Discarded {
    let nothing = |after| Discarded {
        bytes: Bytes::new(),
        after,
    };
    if body.is_end_stream() {
        return nothing(After::KeepAlive);
    }
    if version >= Version::HTTP_11 && expects_continue(headers) {
        return nothing(After::Close);
    }
    let limit = MAX_POST_HANDLER_READ;
    if body
        .size_hint()
        .exact()
        .is_some_and(|declared| declared >= limit as u64)
    {
        return nothing(After::Linger);
    }
    let mut read = BytesMut::new();
    loop {
        let after = match body.frame().await {
            None => After::KeepAlive,
            Some(Err(_)) => After::Close,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = (limit + 1).saturating_sub(read.len());
                    read.extend_from_slice(data.get(..room).unwrap_or(&data));
                }
                if read.len() <= limit {
                    continue;
                }
                After::Linger
            }
        };
        return Discarded {
            bytes: read.freeze(),
            after,
        };
    }
}

/// Go's `Request.expectsContinue`: the first `Expect` value holds the token `100-continue`.
fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(EXPECT).is_some_and(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
    })
}

/// `response` gzip-encoded when the test-only switch is on.
async fn gzip_if_on(shared: &Shared, response: Response<Body>) -> Response<Body> {
    if shared.gzips_answers() {
        gzip::encode_response(response).await
    } else {
        response
    }
}

/// Reads the whole body into memory, hashing it on the way when asked.
async fn read_body(mut body: Incoming, hash: bool) -> Result<ReadBody, hyper::Error> {
    let mut buf = BytesMut::new();
    let mut sha = hash.then(Sha256::new);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if let Some(sha) = sha.as_mut() {
                sha.update(&data);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(ReadBody {
        bytes: buf.freeze(),
        sha256: sha.map(|s| hex::encode(s.finalize())),
    })
}

fn record(
    shared: &Shared,
    seq: u64,
    parts: &Parts,
    body: Bytes,
    params: Vec<UsedParam>,
    websocket: bool,
    response: &Response<Body>,
) {
    if !shared.recorder.is_on() {
        return;
    }
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let actor = rack_actor(&parts.headers);
    shared.recorder.push(Received {
        seq,
        method: parts.method.as_str().to_owned(),
        target: request_target(&parts.uri),
        headers,
        body,
        params,
        actor,
        websocket,
        status: response.status().as_u16(),
    });
}

/// The request target as on the request line: origin-form keeps its `?` even with an empty query.
fn request_target(uri: &Uri) -> String {
    match (uri.scheme(), uri.path_and_query()) {
        (None, Some(pq)) => pq.as_str().to_owned(),
        _ => uri.to_string(),
    }
}

/// Go's path unescaping (`url.PathUnescape` rules): `%XX` must be valid hex, `+` stays `+`.
fn path_unescape(path: &str) -> Option<String> {
    if !path.contains('%') {
        return Some(path.to_owned());
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// What Go's HTTP server answers to a request target it cannot parse.
fn malformed_uri() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"400 Bad Request")));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The actor a rack records for a password login (spec §2.2): the `Convox-Actor` header, else
/// `X-Convox-Actor`, each with control characters and surrounding blanks removed, else
/// `rack-password`. A JWT login's actor is the token's user, which this mock never issues.
fn rack_actor(headers: &http::HeaderMap) -> Option<String> {
    let jwt = crate::auth::basic_credentials(headers).is_some_and(|(user, _)| user == b"jwt");
    if jwt {
        return None;
    }
    let sanitized = |name: &str| {
        headers.get(name).map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
                .trim()
                .to_owned()
        })
    };
    Some(
        [sanitized("convox-actor"), sanitized("x-convox-actor")]
            .into_iter()
            .flatten()
            .find(|a| !a.is_empty())
            .unwrap_or_else(|| "rack-password".to_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_unescaping_is_strict_and_keeps_plus() {
        assert_eq!(path_unescape("/apps/a+b").as_deref(), Some("/apps/a+b"));
        assert_eq!(
            path_unescape("/apps/tmp%2Fx").as_deref(),
            Some("/apps/tmp/x")
        );
        assert_eq!(path_unescape("/apps/%zz"), None);
        assert_eq!(path_unescape("/apps/%4"), None);
    }

    #[test]
    fn expect_100_continue_is_a_token_of_the_first_value() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(EXPECT, v.parse().unwrap());
            h
        };
        assert!(expects_continue(&with("100-continue")));
        assert!(expects_continue(&with("100-Continue")));
        assert!(expects_continue(&with("foo, 100-continue")));
        assert!(!expects_continue(&with("100-continue-later")));
        assert!(!expects_continue(&HeaderMap::new()));
    }

    #[test]
    fn the_request_target_keeps_an_empty_query() {
        let uri: Uri = "/apps?".parse().unwrap();
        assert_eq!(request_target(&uri), "/apps?");
        let uri: Uri = "/apps/x/releases?limit=1".parse().unwrap();
        assert_eq!(request_target(&uri), "/apps/x/releases?limit=1");
    }
}
