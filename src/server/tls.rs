//! The listeners' TLS: the certificate chain and key from the configuration, served by rustls.
//!
//! **Invariant:** a configured certificate that cannot be read or does not match its key stops
//! the gateway at start, naming the file; there is no fallback to plain HTTP.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Tls;

/// Why the TLS configuration cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {what}")]
    File { path: String, what: String },
    #[error("tls.cert and tls.key do not make a usable server configuration: {0}")]
    Config(String),
}

/// The rustls server configuration for `tls` (HTTP/1.1 only, as the convox CLI speaks).
pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&tls.cert)?;
    let pem = crate::keys::read_private(&tls.key).map_err(|e| TlsError::File {
        path: tls.key.display().to_string(),
        what: e.to_string(),
    })?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::File {
        path: tls.key.display().to_string(),
        what: format!("not a PEM private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |what: String| TlsError::File {
        path: path.display().to_string(),
        what,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(file_error("holds no certificate".into()));
    }
    Ok(chain)
}
