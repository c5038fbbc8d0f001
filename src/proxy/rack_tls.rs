//! TLS to the rack: how the gateway decides the rack is the rack.
//!
//! The rack's API serves a certificate it generates itself at every start, so three modes are
//! offered, and one must be chosen explicitly for an `https://` rack URL: a CA bundle
//! (`rack.ca_file`, e.g. the system bundle for a rack behind a public ingress), a pinned
//! SHA-256 of the rack's certificate (`rack.pin_sha256`), or a logged opt-out
//! (`rack.insecure_skip_verify`). Connections for plain requests and for WebSockets come from
//! the same [`RackConnector`]. The command line's client of the gateway API
//! (`token --gateway https://…`) trusts the gateway's console through the same connector, with
//! a [`Trust`] from its flags.
//!
//! **Invariant:** with a pin, a certificate whose DER does not hash to the pin fails the
//! handshake before any byte of a request is sent; handshake signatures are always checked.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::Rack;

/// How long connecting to the rack, the TLS handshake included, may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connection to the rack, plain or TLS.
pub enum RackStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Opens connections to the rack (also a tower service, as the command line's client of the
/// gateway API needs).
#[derive(Clone)]
pub struct RackConnector {
    tls: Option<tokio_rustls::TlsConnector>,
}

/// How a server's certificate is trusted; at most one of the three is used, in this order.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trust<'a> {
    /// The SHA-256 (hex) of the server's certificate.
    pub pin_sha256: Option<&'a str>,
    /// A PEM CA bundle.
    pub ca_file: Option<&'a Path>,
    /// The SHA-256 (hex) `ca_file` held when the configuration recorded it; a bundle that no
    /// longer does is refused.
    pub ca_sha256: Option<&'a str>,
    /// Any certificate (signatures still checked); logged.
    pub insecure_skip_verify: bool,
}

/// Why TLS to the rack cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum RackTlsError {
    #[error(
        "rack.url is https: choose how to trust the rack with rack.ca_file, rack.pin_sha256, \
         or (logged) rack.insecure_skip_verify"
    )]
    NoTrust,
    #[error("CA bundle {path}: {what}")]
    CaFile { path: String, what: String },
    #[error("rack TLS configuration: {0}")]
    Config(String),
}

/// Accepts exactly the certificate whose SHA-256 is pinned, or any with the opt-out.
#[derive(Debug)]
struct PinVerifier {
    pin: Option<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

// === impl RackConnector ===

impl RackConnector {
    /// The connector for `rack`: plain for `http://`, TLS with the configured trust otherwise.
    pub fn new(rack: &Rack, https: bool) -> Result<RackConnector, RackTlsError> {
        let trust = Trust {
            pin_sha256: rack.pin_sha256.as_deref(),
            ca_file: rack.ca_file.as_deref(),
            ca_sha256: rack.ca_sha256.as_deref(),
            insecure_skip_verify: rack.insecure_skip_verify,
        };
        RackConnector::with_trust(&trust, https)
    }

    /// A connector: plain when not `https`, TLS trusting as `trust` says otherwise.
    pub fn with_trust(trust: &Trust<'_>, https: bool) -> Result<RackConnector, RackTlsError> {
        if !https {
            return Ok(RackConnector { tls: None });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| RackTlsError::Config(e.to_string()))?;
        let config = if let Some(pin) = trust.pin_sha256 {
            let mut raw = [0u8; 32];
            hex::decode_to_slice(pin, &mut raw).map_err(|_| {
                RackTlsError::Config("the pinned SHA-256 is not 64 hex digits".into())
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier {
                    pin: Some(raw),
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth()
        } else if let Some(ca) = trust.ca_file {
            let mut roots = rustls::RootCertStore::empty();
            let bytes = match trust.ca_sha256 {
                Some(sha256) => crate::config::read_as_recorded(ca, sha256),
                None => std::fs::read(ca).map_err(|e| format!("cannot be read: {e}")),
            }
            .map_err(|what| RackTlsError::CaFile {
                path: ca.display().to_string(),
                what,
            })?;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| RackTlsError::CaFile {
                    path: ca.display().to_string(),
                    what: crate::server::tls::pem_problem(&e),
                })?;
                roots.add(cert).map_err(|e| RackTlsError::CaFile {
                    path: ca.display().to_string(),
                    what: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                // An empty store would fail every handshake later with a vaguer error.
                return Err(RackTlsError::CaFile {
                    path: ca.display().to_string(),
                    what: "holds no PEM certificate".into(),
                });
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else if trust.insecure_skip_verify {
            eprintln!(
                "rack-gateway: WARNING: rack.insecure_skip_verify is set: the rack's certificate is \
                 not verified; set rack.pin_sha256 instead"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier {
                    pin: None,
                    algorithms: provider.signature_verification_algorithms,
                }))
                .with_no_client_auth()
        } else {
            return Err(RackTlsError::NoTrust);
        };
        Ok(RackConnector {
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
        })
    }

    /// A connection to `host:port` (an IPv6 literal bracketed or not), TLS when configured,
    /// within [`CONNECT_TIMEOUT`]: a rack that takes the connection but never finishes the
    /// handshake fails the call instead of holding it and its caller. Only the connecting is
    /// bounded; a stream once open lives as long as its caller keeps it.
    pub async fn connect(&self, host: &str, port: u16) -> std::io::Result<RackStream> {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_now(host, port))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "the rack did not accept a connection within {} s",
                        CONNECT_TIMEOUT.as_secs()
                    ),
                )
            })?
    }

    async fn connect_now(&self, host: &str, port: u16) -> std::io::Result<RackStream> {
        let tcp = match &self.tls {
            Some(_) => TcpStream::connect((host, port)).await?,
            None => connect_loopback(host, port).await?,
        };
        let _ = tcp.set_nodelay(true);
        let _ = crate::server::keepalive::keep_alive(&tcp);
        match &self.tls {
            None => Ok(RackStream::Plain(tcp)),
            Some(tls) => {
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                Ok(RackStream::Tls(Box::new(tls.connect(name, tcp).await?)))
            }
        }
    }
}

/// A plain connection, made only to a loopback address `host` resolves to: the configuration
/// allows plain `http://` only to this machine, and `localhost` is a name a resolver without
/// an `/etc/hosts` entry could send elsewhere, with the rack password in clear.
async fn connect_loopback(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let mut last = None;
    let mut resolved = Vec::new();
    for addr in tokio::net::lookup_host((host, port)).await? {
        if !addr.ip().to_canonical().is_loopback() {
            resolved.push(addr.ip());
            continue;
        }
        match TcpStream::connect(addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the plain http:// rack {host} resolves to no loopback address ({resolved:?}); \
                 a rack off this machine needs https://"
            ),
        )
    }))
}

impl tower::Service<Uri> for RackConnector {
    type Response = TokioIo<RackStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<RackStream>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default().to_owned();
            let default = if this.tls.is_some() { 443 } else { 80 };
            let port = uri.port_u16().unwrap_or(default);
            this.connect(&host, port).await.map(TokioIo::new)
        })
    }
}

// === impl RackStream ===

impl Connection for RackStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for RackStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RackStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            RackStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for RackStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            RackStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            RackStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RackStream::Plain(s) => Pin::new(s).poll_flush(cx),
            RackStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            RackStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            RackStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

// === impl PinVerifier ===

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) if <[u8; 32]>::from(Sha256::digest(end_entity.as_ref())) == pin => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(
                "the certificate does not match the pinned SHA-256".into(),
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain rack is reached only on this machine, whatever its name resolves to.
    #[tokio::test]
    async fn a_plain_connection_goes_to_loopback_only() {
        let plain = RackConnector::with_trust(&Trust::default(), false).unwrap();
        let refused = plain.connect("10.255.255.1", 80).await.err().unwrap();
        assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(
            refused.to_string().contains("no loopback address"),
            "{refused}"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(plain.connect("localhost", port).await.is_ok());
        assert!(plain.connect("127.0.0.1", port).await.is_ok());
    }
}
