//! Turns handler results into HTTP responses the way the rack's `stdapi` writes them (spec §1.4,
//! §1.5): indented JSON with a newline, `ok\n`, `http.Error` text or `{"error":…}` for JSON
//! clients, empty 404/405 bodies, and the `Request-Id` and security headers.
//!
//! Invariant: this is the only module that builds response bytes; JSON is escaped like Go's
//! `encoding/json` (`<`, `>`, `&`, U+2028, U+2029), so bodies match the real rack byte for byte.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::error::RackError;

/// A response body as hyper sends it.
pub(crate) type Body = Full<Bytes>;

/// What a handler produced.
#[derive(Debug)]
pub(crate) enum Reply {
    /// `c.RenderJSON`: 200, `application/json`, the encoded value.
    Json(Bytes),
    /// `c.RenderOK`: 200, `ok\n`.
    Ok,
    /// A returned error, rendered by `writeErrorResponse`.
    Error(RackError),
    /// A raw stream (`ObjectFetch`): 200 with a sniffed content type.
    Stream(Bytes),
    /// `WriteHeader(http.StatusAccepted)` and no body (`BuildImportImage`): 202, empty.
    Accepted,
}

/// How the request asked to be answered, and what the rack adds around a handler.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    /// `Request-Id`, set on every matched plain-HTTP route.
    pub request_id: Option<String>,
    /// Whether the auth middleware passed (adds `nosniff` and `X-Frame-Options`).
    pub authenticated: bool,
    /// Whether `Accept` lists `application/json` (errors become JSON).
    pub accepts_json: bool,
}

// === impl Reply ===

impl Reply {
    /// `c.RenderJSON(v)`.
    pub(crate) fn json<T: Serialize>(value: &T) -> Reply {
        match go_json(value, true) {
            Ok(body) => Reply::Json(Bytes::from(body)),
            Err(e) => Reply::Error(RackError::Internal(e.to_string())),
        }
    }

    /// The reply for a handler result.
    pub(crate) fn from_result<T: Serialize>(result: Result<T, RackError>) -> Reply {
        match result {
            Ok(v) => Reply::json(&v),
            Err(e) => Reply::Error(e),
        }
    }

    /// `RenderOK` or the error.
    pub(crate) fn ok_or(result: Result<(), RackError>) -> Reply {
        match result {
            Ok(()) => Reply::Ok,
            Err(e) => Reply::Error(e),
        }
    }
}

/// Builds the response for a handler's reply.
pub(crate) fn render(reply: Reply, envelope: &Envelope) -> Response<Body> {
    let mut response = match reply {
        Reply::Json(body) => with_type(200, "application/json", body),
        Reply::Ok => with_type(
            200,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"ok\n"),
        ),
        Reply::Error(e) => error_response(e.status(), e.message(), envelope.accepts_json),
        Reply::Accepted => bare(202),
        Reply::Stream(body) => match sniff(&body) {
            Some(ct) => with_type(200, ct, body),
            None => bare(200),
        },
    };
    let headers = response.headers_mut();
    if let Some(id) = &envelope.request_id
        && let Ok(v) = HeaderValue::from_str(id)
    {
        headers.insert(HeaderName::from_static("request-id"), v);
    }
    if envelope.authenticated {
        headers.insert(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        );
    }
    response
}

/// The auth middleware's refusal: 401 `invalid authentication` with a Basic challenge (spec §2.2).
pub(crate) fn unauthorized(envelope: &Envelope) -> Response<Body> {
    let mut response = render(Reply::Error(RackError::Unauthorized), envelope);
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"convox\""),
    );
    response
}

/// A response with a status and nothing else: unknown routes (404) and wrong methods (405).
pub(crate) fn bare(status: u16) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status_code(status);
    response
}

/// Go's `http.Error`, or `{"error":…}` when the client accepts JSON (stdapi `writeErrorResponse`).
pub(crate) fn error_response(status: u16, message: &str, as_json: bool) -> Response<Body> {
    if as_json {
        #[derive(Serialize)]
        struct JsonError<'a> {
            error: &'a str,
        }
        if let Ok(body) = go_json(&JsonError { error: message }, false) {
            return with_type(status, "application/json", Bytes::from(body));
        }
    }
    let mut body = Vec::with_capacity(message.len() + 1);
    body.extend_from_slice(message.as_bytes());
    body.push(b'\n');
    let mut response = with_type(status, "text/plain; charset=utf-8", Bytes::from(body));
    response.headers_mut().insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Whether `Accept` lists `application/json` as one of its media types (stdapi `acceptsJSON`).
pub(crate) fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(http::header::ACCEPT) else {
        return false;
    };
    accept
        .as_bytes()
        .split(|&b| b == b',')
        .filter_map(|part| part.split(|&b| b == b';').next())
        .any(|media| media.trim_ascii() == b"application/json")
}

/// Encodes like Go: `json.MarshalIndent(v, "", "  ")` plus a newline when `indent`, else
/// `json.NewEncoder(w).Encode(v)` (compact plus a newline); HTML-unsafe characters escaped.
pub(crate) fn go_json<T: Serialize>(value: &T, indent: bool) -> Result<Vec<u8>, serde_json::Error> {
    let raw = if indent {
        serde_json::to_vec_pretty(value)?
    } else {
        serde_json::to_vec(value)?
    };
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        // These characters can only occur inside JSON strings, so escaping them is safe.
        match (b, raw.get(i + 1), raw.get(i + 2)) {
            (b'<', _, _) => out.extend_from_slice(b"\\u003c"),
            (b'>', _, _) => out.extend_from_slice(b"\\u003e"),
            (b'&', _, _) => out.extend_from_slice(b"\\u0026"),
            (0xE2, Some(0x80), Some(0xA8)) => {
                out.extend_from_slice(b"\\u2028");
                i += 2;
            }
            (0xE2, Some(0x80), Some(0xA9)) => {
                out.extend_from_slice(b"\\u2029");
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    out.push(b'\n');
    Ok(out)
}

/// Go's `http.DetectContentType` for what objects hold: gzip, text, or binary; `None` for an
/// empty body, which Go leaves without a `Content-Type`.
fn sniff(body: &[u8]) -> Option<&'static str> {
    if body.is_empty() {
        return None;
    }
    if body.starts_with(&[0x1F, 0x8B, 0x08]) {
        return Some("application/x-gzip");
    }
    let head = body.get(..512).unwrap_or(body);
    let binary = head
        .iter()
        .any(|&b| matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F));
    Some(if binary {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    })
}

fn with_type(status: u16, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status_code(status);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_indented_newline_terminated_and_html_escaped() {
        #[derive(Serialize)]
        struct S {
            env: &'static str,
            list: Vec<u8>,
        }
        let out = go_json(
            &S {
                env: "A=<b>&c\u{2028}",
                list: vec![],
            },
            true,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"env\": \"A=\\u003cb\\u003e\\u0026c\\u2028\",\n  \"list\": []\n}\n"
        );
    }

    #[test]
    fn accept_must_name_application_json_exactly() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("text/html, application/json;q=0.9"),
        );
        assert!(accepts_json(&h));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!accepts_json(&h));
    }

    #[test]
    fn sniffing_tells_gzip_text_and_binary_apart() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&[0x1F, 0x8B, 0x08, 0]), Some("application/x-gzip"));
        assert_eq!(sniff(b"hello\n"), Some("text/plain; charset=utf-8"));
        assert_eq!(sniff(&[1, 2, 3]), Some("application/octet-stream"));
    }
}
