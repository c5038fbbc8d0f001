//! The connection to the rack: kept-alive HTTP/1.1 connections ([`super::rack_pool`]; TLS as
//! `rack_tls` configures it), the rack's base URL and the credentials the gateway (not the
//! caller) presents.
//!
//! **Invariant:** the rack password leaves this module only inside the `Authorization` value it
//! builds (error and build answers lose it here, [`Upstream::scrub_password`]); requests
//! go only to the configured rack; the path forwarded is the canonical one that was
//! authorized, prefixed with the rack URL's own path.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use http::uri::{Scheme, Uri};

use super::rack_pool::{RackBody, RackPool, SendError};
use super::rack_tls::{RackConnector, RackStream, RackTlsError};

use crate::config::Rack;
use crate::proxy::mask::{REDACTED, Scrubber};

/// The body type the gateway sends upstream.
pub type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::io::Error>;

/// A configured rack.
pub struct Upstream {
    pool: Arc<RackPool>,
    scheme: Scheme,
    prefix: String,
    authorization: HeaderValue,
    /// The rack password's forms, to take it back out of answers and the rack's WebSocket
    /// output; the password itself is sent only inside `authorization`.
    scrubber: Arc<Scrubber>,
    /// The `Host` of every forwarded request, made once (as the HTTP client would make it per
    /// request: the port only when it is not the scheme's default).
    host: HeaderValue,
}

/// Why the rack cannot be reached as configured.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("rack.url {url:?}: {what}")]
    Url { url: String, what: String },
    #[error(transparent)]
    Tls(#[from] RackTlsError),
}

// === impl Upstream ===

impl Upstream {
    pub fn new(rack: &Rack) -> Result<Upstream, UpstreamError> {
        let uri: Uri = rack
            .url
            .parse()
            .map_err(|e: http::uri::InvalidUri| UpstreamError::Url {
                url: rack.url.clone(),
                what: e.to_string(),
            })?;
        let scheme = uri.scheme().cloned().ok_or_else(|| UpstreamError::Url {
            url: rack.url.clone(),
            what: "no scheme".into(),
        })?;
        let authority = uri.authority().cloned().ok_or_else(|| UpstreamError::Url {
            url: rack.url.clone(),
            what: "no host".into(),
        })?;
        let prefix = uri.path().trim_end_matches('/').to_owned();
        let credentials = STANDARD.encode(format!("convox:{}", rack.password.expose()));
        let mut authorization =
            HeaderValue::from_str(&format!("Basic {credentials}")).map_err(|_| {
                UpstreamError::Url {
                    url: rack.url.clone(),
                    what: "the rack password cannot be sent in a header".into(),
                }
            })?;
        authorization.set_sensitive(true);
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host).map_err(|_| UpstreamError::Url {
            url: rack.url.clone(),
            what: "the host cannot be sent in a header".into(),
        })?;
        let connector = RackConnector::new(rack, scheme == Scheme::HTTPS)?;
        let port = authority.port_u16().unwrap_or(default_port);
        // No total request timeout: log and exec streams live as long as the caller keeps them.
        let pool = Arc::new(RackPool::new(connector, authority.host().to_owned(), port));
        Ok(Upstream {
            pool,
            scheme,
            prefix,
            authorization,
            scrubber: Arc::new(Scrubber::new(rack.password.expose())),
            host,
        })
    }

    /// The request-line URI (origin-form) of a canonical path and query on the rack.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        Uri::builder()
            .path_and_query(format!("{}{path_and_query}", self.prefix))
            .build()
    }

    /// Sends a call (its URI from [`Upstream::uri`]) to the rack, with the rack's `Host`.
    pub async fn send(
        &self,
        mut req: http::Request<UpstreamBody>,
    ) -> Result<http::Response<RackBody>, SendError> {
        req.headers_mut()
            .insert(http::header::HOST, self.host.clone());
        self.pool.send(req).await
    }

    /// The `Authorization` value carrying the rack password (marked sensitive).
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    /// `body` with the rack password, in each form an answer can quote it, replaced by
    /// `rgw-redacted`: for error answers and build answers, which may quote a URL the rack
    /// built with it, and a release's manifest. (A release's env is left to the env masks: a
    /// value rewritten here would not survive `convox env set`, which posts the env back.)
    pub fn scrub_password(&self, body: &[u8]) -> Vec<u8> {
        self.scrubber
            .scrub(body, REDACTED)
            .unwrap_or_else(|| body.to_vec())
    }

    /// What takes the rack password out, its forms made once: of whole answers
    /// ([`Upstream::scrub_password`]), and of what streams from the rack.
    pub fn scrubber(&self) -> &Arc<Scrubber> {
        &self.scrubber
    }

    /// The `Host` header of every forwarded request and WebSocket handshake (the rack's
    /// same-origin check compares a WebSocket's `Origin` with it).
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.scheme.as_str()
    }

    /// A new connection to the rack (plain or TLS as configured), for a WebSocket.
    pub async fn connect(&self) -> std::io::Result<RackStream> {
        self.pool.open().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn host_of(url: &str) -> String {
        let upstream = Upstream::new(&Rack {
            url: url.into(),
            password: Secret::new("pw".into()),
            ca_file: None,
            ca_sha256: None,
            // An https rack needs a trust anchor; the test connects nowhere.
            pin_sha256: url.starts_with("https").then(|| "ab".repeat(32)),
            insecure_skip_verify: false,
        })
        .unwrap();
        upstream.host().to_str().unwrap().to_owned()
    }

    /// A rack at an IPv6 literal (`http://[::1]:port`, which the configuration accepts) is
    /// reached: the URI's bracketed host is not a name to resolve.
    #[tokio::test]
    async fn a_rack_at_an_ipv6_literal_is_reached() {
        let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = Upstream::new(&Rack {
            url: format!("http://[::1]:{port}"),
            password: Secret::new("pw".into()),
            ca_file: None,
            ca_sha256: None,
            pin_sha256: None,
            insecure_skip_verify: false,
        })
        .unwrap();
        let accepted = tokio::spawn(async move { listener.accept().await });
        upstream.connect().await.unwrap();
        accepted.await.unwrap().unwrap();
    }

    /// Forwarded requests and WebSocket handshakes (whose `Origin` the rack compares with it)
    /// carry this one `Host`: the port only when it is not the scheme's default.
    #[test]
    fn the_rack_host_names_a_port_only_when_it_is_not_the_default() {
        assert_eq!(host_of("https://rack.example:443/prefix"), "rack.example");
        assert_eq!(host_of("http://rack.example:80"), "rack.example");
        assert_eq!(host_of("http://127.0.0.1:5443"), "127.0.0.1:5443");
        assert_eq!(host_of("https://rack.example:80"), "rack.example:80");
    }
}
