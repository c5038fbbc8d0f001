//! The gateway API's client: what `rack-gateway token create|list|revoke --gateway URL` speaks
//! to a running gateway's console, with the pooled hyper client and the TLS connector the proxy
//! uses towards the rack.
//!
//! **Invariant:** the token goes only in `Authorization: Bearer` (marked sensitive), only to
//! the URL given, and only over TLS or to a loopback address over plain HTTP; it is held as a
//! [`TokenSecret`] and never printed. A refusal comes back with the API's own `kind`, message
//! and place, and an answer that is not the API's is an error, never a guess.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use events::event::TokenId;
use http::uri::{Authority, Scheme, Uri};
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::api::{
    CreateTokenBody, ErrorBody, RevokeTokenBody, TokenCreatedBody, TokenListBody, TokenRevokedBody,
};
use super::tokens::TOKENS;
use crate::identity::TokenSecret;
use crate::proxy::rack_tls::{RackConnector, RackTlsError, Trust};

/// How long one call may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (a list of many tokens).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// A running gateway's console, as `--gateway` names it: `https://host[:port][/prefix]`, or
/// `http://` to a loopback address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUrl {
    scheme: Scheme,
    authority: Authority,
    prefix: String,
}

/// A client of one gateway's API, acting with one token.
pub struct Client {
    http: HttpClient<RackConnector, Full<Bytes>>,
    base: GatewayUrl,
    authorization: HeaderValue,
}

/// Why a call to the gateway API did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--gateway {url:?}: {what}")]
    Url { url: String, what: String },
    #[error("an https gateway needs --ca-file or --pin-sha256 to trust its certificate")]
    NoTrust,
    #[error("trusting the gateway's certificate: {0}")]
    Tls(#[from] RackTlsError),
    #[error("cannot reach the gateway at {url}: {what}")]
    Unreachable { url: String, what: String },
    #[error("the gateway refused ({status} {}): {}{}", .body.kind, .body.error, .body.at.as_ref().map(|a| format!(" (at {a})")).unwrap_or_default())]
    Refused { status: u16, body: ErrorBody },
    #[error("the answer ({status}) is not the gateway API's: {what}")]
    Answer { status: u16, what: String },
}

// === impl GatewayUrl ===

impl GatewayUrl {
    /// Parses and checks a console URL: no credentials, query or fragment in it, and plain
    /// HTTP only to `localhost` or a loopback address (the token would cross the network in
    /// clear otherwise).
    pub fn parse(url: &str) -> Result<GatewayUrl, ClientError> {
        let refuse = |what: &str| ClientError::Url {
            url: shown(url),
            what: what.to_owned(),
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| refuse(&e.to_string()))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| refuse("no scheme; use https://host or http://127.0.0.1:port"))?;
        let authority = uri.authority().cloned().ok_or_else(|| refuse("no host"))?;
        if authority.as_str().contains('@') {
            return Err(refuse(
                "credentials do not go in the URL; the token is read from RACK_GATEWAY_TOKEN",
            ));
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(refuse("a console URL has no query or fragment"));
        }
        // The path would go out with every call and into every error this client prints.
        if crate::proxy::redact::holds_gateway_token(uri.path()) {
            return Err(refuse(
                "a gateway token does not go in the URL; it is read from RACK_GATEWAY_TOKEN",
            ));
        }
        if scheme == Scheme::HTTP {
            if !is_loopback(authority.host()) {
                return Err(refuse(
                    "plain http:// only to a loopback address; use https:// for another host",
                ));
            }
        } else if scheme != Scheme::HTTPS {
            return Err(refuse("the scheme is http or https"));
        }
        Ok(GatewayUrl {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The URI of `path` (which starts with `/`) on this gateway.
    fn at(&self, path: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path}", self.prefix))
            .build()
    }
}

impl fmt::Display for GatewayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

// === impl Client ===

impl Client {
    /// A client of the gateway at `base` acting with `token`; an https gateway is trusted as
    /// `trust` says (a CA bundle or a pinned certificate, never blindly).
    pub fn new(
        base: GatewayUrl,
        token: &TokenSecret,
        trust: Trust<'_>,
    ) -> Result<Client, ClientError> {
        if base.is_https() && trust.ca_file.is_none() && trust.pin_sha256.is_none() {
            return Err(ClientError::NoTrust);
        }
        let trust = Trust {
            insecure_skip_verify: false,
            ..trust
        };
        let connector = RackConnector::with_trust(&trust, base.is_https())?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| ClientError::Url {
                url: base.to_string(),
                what: "the token cannot be sent in a header".into(),
            })?;
        authorization.set_sensitive(true);
        Ok(Client {
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            base,
            authorization,
        })
    }

    /// `POST /api/v1/tokens`.
    pub async fn create(&self, body: &CreateTokenBody) -> Result<TokenCreatedBody, ClientError> {
        self.call(Method::POST, TOKENS, Some(body), StatusCode::CREATED)
            .await
    }

    /// `GET /api/v1/tokens`.
    pub async fn list(&self) -> Result<TokenListBody, ClientError> {
        self.call::<(), _>(Method::GET, TOKENS, None, StatusCode::OK)
            .await
    }

    /// `DELETE /api/v1/tokens/{id}`.
    pub async fn revoke(
        &self,
        id: TokenId,
        body: &RevokeTokenBody,
    ) -> Result<TokenRevokedBody, ClientError> {
        let path = format!("{TOKENS}/{id}");
        self.call(Method::DELETE, &path, Some(body), StatusCode::OK)
            .await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        expect: StatusCode,
    ) -> Result<T, ClientError> {
        let unreachable = |what: String| ClientError::Unreachable {
            url: self.base.to_string(),
            what,
        };
        let uri = self.base.at(path).map_err(|e| unreachable(e.to_string()))?;
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| unreachable(e.to_string()))?,
            None => Vec::new(),
        };
        let mut req = http::Request::new(Full::new(Bytes::from(bytes)));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(header::AUTHORIZATION, self.authorization.clone());
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("rack-gateway/", env!("CARGO_PKG_VERSION"))),
        );
        if body.is_some() {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        let exchange = async {
            let response = self
                .http
                .request(req)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| ClientError::Answer {
                    status: status.as_u16(),
                    what: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, ClientError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))??;
        if status == expect {
            return serde_json::from_slice(&body).map_err(|e| ClientError::Answer {
                status: status.as_u16(),
                what: e.to_string(),
            });
        }
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(body) => Err(ClientError::Refused {
                status: status.as_u16(),
                body,
            }),
            Err(_) => Err(ClientError::Answer {
                status: status.as_u16(),
                what: format!("not an API error body: {:?}", shown_answer(&body)),
            }),
        }
    }
}

/// The start of an answer the client cannot read, for diagnosis, less any token secret
/// (redacted before the cut, so no part of one shows): an answer in an unexpected status may
/// still be a create's, which holds a new token.
fn shown_answer(body: &[u8]) -> String {
    crate::proxy::redact::gateway_tokens(&String::from_utf8_lossy(body))
        .chars()
        .take(200)
        .collect()
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.to_string())
            .finish_non_exhaustive()
    }
}

/// Whether `host` (as a URI writes it, an IPv6 address in brackets) names this machine.
fn is_loopback(host: &str) -> bool {
    crate::config::is_loopback_name(host.trim_start_matches('[').trim_end_matches(']'))
}

/// An error and its causes on one line (hyper's own message says little: "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `url` as an error may show it: without what could be a secret. A token put in the URL by
/// mistake (`https://convox:rgw_…@gw`, `?token=rgw_…`) is exactly what the refusal is about,
/// and the message goes to a terminal or a CI log; so userinfo, query and fragment are cut, a
/// gateway token in the path is redacted, and a URL with no `://` is not shown at all.
fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not shown: not a URL)".to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rfind('@') {
        Some(at) => format!("…@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let path = tail.find(['?', '#']).map_or(tail, |cut| &tail[..cut]);
    let cut = if path.len() < tail.len() { "…" } else { "" };
    let path = crate::proxy::redact::gateway_tokens(path);
    format!("{scheme}://{host}{path}{cut}")
}

#[cfg(test)]
mod tests {
    use super::shown_answer;
    use crate::identity::token::TokenSecret;

    #[test]
    fn an_unreadable_answer_is_shown_without_a_token() {
        let token = TokenSecret::generate().unwrap();
        let secret = token.expose();
        // A create's answer, its secret straddling the 200th character.
        let body = format!("{{\"id\":\"{}\",\"token\":\"{secret}\"}}", "a".repeat(170));
        let text = shown_answer(body.as_bytes());
        assert!(text.contains("[redacted]"), "{text}");
        assert!(!text.contains(&secret[..8]), "{text}");
        assert_eq!(
            shown_answer(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn a_refused_url_never_shows_a_token_put_in_it() {
        for url in [
            "https://convox:rgw_SECRETSECRET@gw.example.com",
            "https://rgw_SECRETSECRET@gw.example.com/x",
            "https://gw.example.com/?token=rgw_SECRETSECRET",
            "https://gw.example.com/#rgw_SECRETSECRET",
            "rgw_SECRETSECRET",
            "gw example rgw_SECRETSECRET",
        ] {
            let e = GatewayUrl::parse(url).unwrap_err().to_string();
            assert!(!e.contains("SECRET"), "{url}: {e}");
        }
        let e = GatewayUrl::parse("https://convox:rgw_SECRET@gw.example.com")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--gateway \"https://…@gw.example.com\": credentials"),
            "{e}"
        );
        // A whole token in the path: refused for what it is, and redacted when the refusal is
        // about something else (a query).
        let token = TokenSecret::generate().unwrap();
        let secret = token.expose();
        for (url, why) in [
            (
                format!("https://gw.example.com/{secret}"),
                "a gateway token does not go in the URL",
            ),
            (
                format!("https://gw.example.com/console/{secret}/"),
                "a gateway token does not go in the URL",
            ),
            (
                format!("https://gw.example.com/{secret}?x=1"),
                "has no query",
            ),
        ] {
            let e = GatewayUrl::parse(&url).unwrap_err().to_string();
            assert!(!e.contains(&secret[4..]), "{e}");
            assert!(e.contains("[redacted]") && e.contains(why), "{e}");
        }
    }

    use super::*;

    fn check(url: &str, ok: bool) {
        assert_eq!(GatewayUrl::parse(url).is_ok(), ok, "{url}");
    }

    #[test]
    fn plain_http_only_to_loopback_and_never_with_credentials() {
        check("http://127.0.0.1:8080", true);
        check("http://127.8.0.1:8080/", true);
        check("http://[::1]:8080", true);
        check("http://localhost:8080", true);
        check("https://gateway.example.com", true);
        check("https://gateway.example.com/console/", true);
        check("http://gateway.example.com", false);
        check("http://10.0.0.1:8080", false);
        check("http://[::ffff:10.0.0.1]:8080", false);
        // The loopback address a listener may be given as IPv6, as the server judges it.
        check("http://[::ffff:127.0.0.1]:8080", true);
        check("http://localhost.example.com", false);
        check("https://convox:rgw_x@gateway.example.com", false);
        check("https://gateway.example.com/?a=b", false);
        check("ftp://gateway.example.com", false);
        check("gateway.example.com", false);
        let url = GatewayUrl::parse("https://gw.example.com/console/").unwrap();
        assert_eq!(
            url.at("/api/v1/tokens").unwrap().to_string(),
            "https://gw.example.com/console/api/v1/tokens"
        );
    }

    #[test]
    fn an_https_gateway_needs_a_ca_or_a_pin_and_the_token_never_prints() {
        let token = TokenSecret::generate().unwrap();
        let url = GatewayUrl::parse("https://gw.example.com").unwrap();
        assert!(matches!(
            Client::new(url, &token, Trust::default()),
            Err(ClientError::NoTrust)
        ));
        let local = GatewayUrl::parse("http://127.0.0.1:1").unwrap();
        let client = Client::new(local, &token, Trust::default()).unwrap();
        assert!(!format!("{client:?}").contains(token.expose()));
    }
}
