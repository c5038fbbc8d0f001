//! The two HTTP halves of a relayed WebSocket: checking the caller's upgrade request (the
//! gateway is its server) and performing the gateway's own upgrade to the rack (the gateway is
//! its client), per RFC 6455 §4.
//!
//! **Invariant:** the upstream handshake carries a fresh random key and offers no extension,
//! and succeeds only on `101` with `Upgrade: websocket`, `Connection: upgrade`, the
//! `Sec-WebSocket-Accept` derived from that key and no extension, so the relay's codec
//! (which refuses reserved bits) always speaks what was agreed. Which headers the upstream
//! request carries besides (`Host`, `Authorization`, the rewritten `Origin`, the Convox option
//! headers) is the proxy handler's decision, not this module's.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{
    CONNECTION, HeaderName, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS,
    SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncRead, AsyncWrite};

/// The GUID RFC 6455 §1.3 appends to the client's key before hashing.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How much of a refused upgrade's body is kept for the caller (gorilla's are one line).
const REFUSAL_BODY_LIMIT: usize = 64 * 1024;

/// A caller's valid `Sec-WebSocket-Key`: base64 of 16 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientKey(String);

/// Why a caller's request is not a valid WebSocket upgrade (answer 400, or 405 for the method).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// Not a GET.
    #[error("a websocket upgrade must be a GET, not {0}")]
    Method(Method),
    /// No `upgrade` token in `Connection`.
    #[error("the 'Connection' header has no 'upgrade' token")]
    Connection,
    /// No `websocket` token in `Upgrade`.
    #[error("the 'Upgrade' header has no 'websocket' token")]
    Upgrade,
    /// `Sec-WebSocket-Version` is missing, repeated or not 13.
    #[error("'Sec-WebSocket-Version' must be 13")]
    Version,
    /// `Sec-WebSocket-Key` is missing, repeated or not the base64 of 16 bytes.
    #[error("'Sec-WebSocket-Key' must be the base64 of 16 bytes")]
    Key,
}

/// Why the gateway's upgrade to the rack failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The request given was not a GET.
    #[error("a websocket handshake is a GET, not {0}")]
    Method(Method),
    /// HTTP on the rack connection failed.
    #[error("the rack connection failed during the websocket handshake: {0}")]
    Http(#[from] hyper::Error),
    /// The rack answered with something other than 101 (e.g. 403 for a foreign `Origin`,
    /// `convox-api.md` §4.6); the status and (up to 64 KiB of) the body, for the caller.
    #[error("the rack refused the websocket upgrade with {status}")]
    Refused {
        /// The rack's status.
        status: StatusCode,
        /// The start of the rack's body.
        body: Bytes,
    },
    /// The rack answered 101 but not as RFC 6455 §4.1 requires.
    #[error("the rack's websocket handshake is invalid: {0}")]
    Handshake(&'static str),
    /// The system gave no randomness for the key.
    #[error("no randomness for a websocket key: {0}")]
    Entropy(getrandom::Error),
}

// === impl ClientKey ===

impl ClientKey {
    /// The key as the caller sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `Sec-WebSocket-Accept` value answering this key.
    pub fn accept(&self) -> String {
        accept_key(&self.0)
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key ‖ GUID)), RFC 6455
/// §4.2.2 item 5.4.
pub fn accept_key(sec_websocket_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(sec_websocket_key.as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Checks that a caller's request is a WebSocket upgrade the gateway can serve (RFC 6455
/// §4.2.1): GET, `Upgrade: websocket`, `Connection: upgrade` (as tokens, any case),
/// `Sec-WebSocket-Version: 13` and one `Sec-WebSocket-Key` that is the base64 of 16 bytes.
/// Extensions and subprotocols the caller offers are not errors; the gateway accepts none.
pub fn check_upgrade(method: &Method, headers: &HeaderMap) -> Result<ClientKey, UpgradeError> {
    if method != Method::GET {
        return Err(UpgradeError::Method(method.clone()));
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(UpgradeError::Connection);
    }
    if !asks_for_websocket(headers) {
        return Err(UpgradeError::Upgrade);
    }
    match single(headers, &SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes().trim_ascii() == b"13" => {}
        _ => return Err(UpgradeError::Version),
    }
    let key = single(headers, &SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or(UpgradeError::Key)?;
    match STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => Ok(ClientKey(key.to_owned())),
        _ => Err(UpgradeError::Key),
    }
}

/// Performs the WebSocket handshake with the rack over `io` (a connected stream) and returns
/// the upgraded connection, ready for `relay`.
///
/// `request` is the upstream request as the proxy handler built it: GET, an origin-form URI,
/// `Host`, the rack's `Authorization`, an `Origin` naming the rack's host (or none) and the
/// option headers. This function sets `Upgrade`, `Connection`, `Sec-WebSocket-Version` and a
/// fresh `Sec-WebSocket-Key`, removes any `Sec-WebSocket-Extensions`, and checks the answer.
/// It sets no timeout: wrap it in `tokio::time::timeout`.
pub async fn connect_upstream<S>(
    io: S,
    request: Request<()>,
) -> Result<TokioIo<Upgraded>, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let key = fresh_key()?;
    let (mut parts, ()) = request.into_parts();
    if parts.method != Method::GET {
        return Err(ConnectError::Method(parts.method));
    }
    let headers = &mut parts.headers;
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    let key_value = HeaderValue::from_str(&key).map_err(|_| ConnectError::Handshake("key"))?;
    headers.insert(SEC_WEBSOCKET_KEY, key_value);
    let request = Request::from_parts(parts, Empty::<Bytes>::new());

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    // The connection is driven here, not spawned, so dropping this future (a timeout, the
    // caller leaving) drops the connection with it. It finishes `Ok` once it has handed the
    // stream to the upgrade (or closed); from then on it stays pending, so every `select!`
    // below may poll it again, and only its errors end the handshake.
    let mut conn = std::pin::pin!(async move {
        match conn.with_upgrades().await {
            Err(e) => e,
            Ok(()) => std::future::pending().await,
        }
    });
    let mut response = tokio::select! {
        response = sender.send_request(request) => response?,
        failed = &mut conn => return Err(failed.into()),
    };
    drop(sender);

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let limited = Limited::new(response.into_body(), REFUSAL_BODY_LIMIT);
        let mut collect = std::pin::pin!(limited.collect());
        // If the connection fails, what it read is already in the body's channel.
        let body = tokio::select! {
            body = &mut collect => body,
            _ = &mut conn => collect.await,
        };
        let body = body.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(ConnectError::Refused { status, body });
    }
    let answer = response.headers();
    if !has_token(answer, &UPGRADE, "websocket") {
        return Err(ConnectError::Handshake("101 without 'Upgrade: websocket'"));
    }
    if !has_token(answer, &CONNECTION, "upgrade") {
        return Err(ConnectError::Handshake("101 without 'Connection: upgrade'"));
    }
    let expected = accept_key(&key);
    match single(answer, &SEC_WEBSOCKET_ACCEPT) {
        Some(accept) if accept.as_bytes().trim_ascii() == expected.as_bytes() => {}
        _ => return Err(ConnectError::Handshake("wrong 'Sec-WebSocket-Accept'")),
    }
    if answer.contains_key(SEC_WEBSOCKET_EXTENSIONS) {
        return Err(ConnectError::Handshake("an extension nobody offered"));
    }
    let upgraded = tokio::select! {
        upgraded = hyper::upgrade::on(&mut response) => upgraded?,
        failed = &mut conn => return Err(failed.into()),
    };
    Ok(TokioIo::new(upgraded))
}

/// A random `Sec-WebSocket-Key` (RFC 6455 §4.1: 16 random bytes, base64).
fn fresh_key() -> Result<String, ConnectError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(ConnectError::Entropy)?;
    Ok(STANDARD.encode(raw))
}

/// Whether the request asks for a WebSocket (`Upgrade` holds the `websocket` token), read as
/// [`check_upgrade`] reads it: a request is routed as a socket by the same judgement that
/// then checks its handshake.
pub fn asks_for_websocket(headers: &HeaderMap) -> bool {
    has_token(headers, &UPGRADE, "websocket")
}

/// Whether any value of `name`, read as a comma-separated token list, holds `token` (ASCII
/// case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The value of a header that must appear exactly once.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}
