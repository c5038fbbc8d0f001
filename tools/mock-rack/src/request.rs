//! One HTTP request, from arrival to recorded answer: route (unauthenticated 404/405 first, as
//! the rack's router does), read the body, authenticate, run the handler or hand the socket to a
//! session, render, record.
//!
//! Invariant: every request is recorded exactly once with the status it got; authentication
//! happens after routing on plain routes and after the upgrade on sockets (spec §1.5, §2.5); no
//! lock is held while the body is read or the response is written.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderValue, UPGRADE};
use http::request::Parts;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::auth;
use crate::gzip;
use crate::handlers::{self, Call};
use crate::params::Params;
use crate::record::{Received, UsedParam};
use crate::respond::{self, Body, Envelope};
use crate::routes::{self, Kind, Resolution, RouteId};
use crate::sessions::{self, Session};
use crate::shared::Shared;
use crate::upgrade::{self, Handshake};

/// A request body and, for object uploads, its SHA-256 (hex).
struct ReadBody {
    bytes: Bytes,
    sha256: Option<String>,
}

/// Serves one request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
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
    let on_upgrade = match &resolution {
        Resolution::Found { route, .. } if route.kind == Kind::Socket => {
            Some(hyper::upgrade::on(&mut req))
        }
        _ => None,
    };
    let hash =
        matches!(&resolution, Resolution::Found { route, .. } if route.id == RouteId::ObjectStore);
    let (parts, body) = req.into_parts();
    let body = match read_body(body, hash).await {
        Ok(b) => b,
        Err(_) => {
            let response = respond::bare(400);
            record(
                &shared,
                seq,
                &parts,
                Bytes::new(),
                Vec::new(),
                false,
                &response,
            );
            return response;
        }
    };
    let (route, vars) = match resolution {
        Resolution::Found { route, vars } => (route, vars),
        Resolution::MethodNotAllowed | Resolution::NotFound => {
            // Answered by the router itself: no authentication, no Request-Id, empty body.
            let status = if resolution == Resolution::NotFound {
                404
            } else {
                405
            };
            let response = respond::bare(status);
            record(
                &shared,
                seq,
                &parts,
                body.bytes,
                Vec::new(),
                false,
                &response,
            );
            return response;
        }
    };
    let authenticated = auth::authenticate(&parts.headers, &shared.password);
    let params = Params::new(
        &parts.method,
        parts.uri.query(),
        &parts.headers,
        &body.bytes,
    );
    let mut call = Call {
        shared: &shared,
        vars: &vars,
        params,
        body: body.bytes.clone(),
        sha256: body.sha256,
    };

    if route.kind == Kind::Socket {
        let response = match upgrade::check(&parts.headers, &parts.uri) {
            Handshake::Refuse { status, reason } => upgrade::refused(status, reason),
            Handshake::Accept(accept) => {
                let session = if authenticated {
                    sessions::plan(route.id, &mut call, &parts.headers)
                } else {
                    Session::unauthenticated()
                };
                if let Some(on_upgrade) = on_upgrade {
                    tokio::spawn(async move {
                        if let Ok(upgraded) = on_upgrade.await {
                            sessions::run(TokioIo::new(upgraded), session, stop).await;
                        }
                    });
                }
                upgrade::accepted(&accept)
            }
        };
        let used = call.params.into_used();
        record(&shared, seq, &parts, body.bytes, used, true, &response);
        shared.handshake_delay.pass().await;
        return response;
    }

    let mut envelope = Envelope {
        request_id: Some(shared.next_request_id()),
        authenticated: false,
        accepts_json: respond::accepts_json(&parts.headers),
    };
    // `/check` is the one route outside the auth middleware (spec §1.1).
    let response = if route.id == RouteId::Check || authenticated {
        envelope.authenticated = route.id != RouteId::Check;
        let reply = handlers::dispatch(route.id, &mut call);
        respond::render(reply, &envelope)
    } else {
        respond::unauthorized(&envelope)
    };
    let response = if shared.gzips_answers() {
        gzip::encode_response(response).await
    } else {
        response
    };
    let used = call.params.into_used();
    record(&shared, seq, &parts, body.bytes, used, false, &response);
    shared.answer_delay.pass().await;
    response
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
    fn the_request_target_keeps_an_empty_query() {
        let uri: Uri = "/apps?".parse().unwrap();
        assert_eq!(request_target(&uri), "/apps?");
        let uri: Uri = "/apps/x/releases?limit=1".parse().unwrap();
        assert_eq!(request_target(&uri), "/apps/x/releases?limit=1");
    }
}
