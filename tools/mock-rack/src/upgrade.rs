//! The WebSocket handshake as the rack's gorilla `Upgrader` performs it (spec §4.1, §4.6), with
//! stdapi's habit of appending `ERROR: <reason>` to a refused handshake's body.
//!
//! Invariant: checks run in gorilla's order — `Connection: upgrade`, `Upgrade: websocket`,
//! `Sec-WebSocket-Version: 13`, same origin (403), a 16-byte key — and all of them come before
//! authentication, which the rack only does after upgrading (spec §2.5).

use bytes::Bytes;
use http::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, Response, StatusCode, Uri};
use http_body_util::Full;

use crate::respond::Body;
use crate::ws;

/// Whether the handshake may proceed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// Upgrade, answering with this `Sec-WebSocket-Accept`.
    Accept(String),
    /// Refuse with a status and gorilla's reason.
    Refuse { status: u16, reason: &'static str },
}

/// Runs gorilla's checks on an upgrade request that routing already matched.
pub(crate) fn check(headers: &HeaderMap, uri: &Uri) -> Handshake {
    let refuse = |status, reason| Handshake::Refuse { status, reason };
    if !has_token(headers, CONNECTION.as_str(), "upgrade") {
        return refuse(
            400,
            "websocket: the client is not using the websocket protocol: 'upgrade' token not found in 'Connection' header",
        );
    }
    if !has_token(headers, UPGRADE.as_str(), "websocket") {
        return refuse(
            400,
            "websocket: the client is not using the websocket protocol: 'websocket' token not found in 'Upgrade' header",
        );
    }
    if !has_token(headers, "sec-websocket-version", "13") {
        return refuse(
            400,
            "websocket: unsupported version: 13 not found in 'Sec-Websocket-Version' header",
        );
    }
    if !same_origin(headers, uri) {
        return refuse(
            403,
            "websocket: request origin not allowed by Upgrader.CheckOrigin",
        );
    }
    match headers.get(SEC_WEBSOCKET_KEY) {
        Some(key) if ws::is_valid_client_key(key.as_bytes()) => {
            Handshake::Accept(ws::accept_key(key.as_bytes()))
        }
        _ => refuse(
            400,
            "websocket: not a websocket handshake: 'Sec-WebSocket-Key' header must be Base64 encoded value of 16-byte in length",
        ),
    }
}

/// `101 Switching Protocols` with the accept key.
pub(crate) fn accepted(accept: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// gorilla's `returnError` (`http.Error(w, StatusText(status), status)` with
/// `Sec-Websocket-Version: 13`), followed by stdapi's `ERROR: <reason>\n` line.
pub(crate) fn refused(status: u16, reason: &str) -> Response<Body> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let text = code.canonical_reason().unwrap_or("");
    let body = format!("{text}\nERROR: {reason}\n");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert("sec-websocket-version", HeaderValue::from_static("13"));
    response
}

/// gorilla's `tokenListContainsValue`: comma-separated tokens, compared case-insensitively.
fn has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// gorilla's `checkSameOrigin`: no `Origin` passes; otherwise the host of the `Origin` URL must
/// equal the request's `Host`, ignoring ASCII case.
fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true;
    };
    let host = uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or_else(|| headers.get(http::header::HOST).map(HeaderValue::as_bytes))
        .unwrap_or_default();
    origin_host(origin.as_bytes()).eq_ignore_ascii_case(host)
}

/// The host part of an origin URL as Go's `url.Parse` reports it: after `scheme://` and any
/// userinfo, up to the path; a value without `://` has no host.
fn origin_host(origin: &[u8]) -> &[u8] {
    let Some(at) = origin.windows(3).position(|w| w == b"://") else {
        return b"";
    };
    let rest = origin.get(at + 3..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = rest.get(..end).unwrap_or_default();
    match authority.iter().rposition(|&b| b == b'@') {
        Some(i) => authority.get(i + 1..).unwrap_or_default(),
        None => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn handshake(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "127.0.0.1:18080"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", KEY),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        for (k, v) in extra {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn uri() -> Uri {
        Uri::from_static("/apps/x/logs")
    }

    #[test]
    fn the_cli_handshake_is_accepted() {
        let h = handshake(&[("origin", "http://127.0.0.1:18080")]);
        assert_eq!(
            check(&h, &uri()),
            Handshake::Accept("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned())
        );
        assert!(matches!(
            check(&handshake(&[]), &uri()),
            Handshake::Accept(_)
        ));
        let h = handshake(&[("origin", "HTTP://127.0.0.1:18080/")]);
        assert!(matches!(check(&h, &uri()), Handshake::Accept(_)));
    }

    #[test]
    fn a_foreign_origin_is_403() {
        for origin in [
            "https://gateway.example.com",
            "null",
            "http://127.0.0.1:18081",
        ] {
            let h = handshake(&[("origin", origin)]);
            assert!(
                matches!(check(&h, &uri()), Handshake::Refuse { status: 403, .. }),
                "{origin}"
            );
        }
    }

    #[test]
    fn broken_handshakes_are_400_in_gorilla_order() {
        let h = handshake(&[("connection", "keep-alive"), ("origin", "null")]);
        assert!(
            matches!(check(&h, &uri()), Handshake::Refuse { status: 400, reason } if reason.contains("'Connection'"))
        );
        let h = handshake(&[("sec-websocket-version", "8")]);
        assert!(
            matches!(check(&h, &uri()), Handshake::Refuse { status: 400, reason } if reason.contains("version"))
        );
        let h = handshake(&[("sec-websocket-key", "c2hvcnQ=")]);
        assert!(
            matches!(check(&h, &uri()), Handshake::Refuse { status: 400, reason } if reason.contains("Key"))
        );
    }
}
