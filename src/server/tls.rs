//! The listeners' TLS: the certificate chain and key from the configuration, served by rustls.
//!
//! **Invariant:** a configured certificate that cannot be read or does not match its key stops
//! the gateway at start, naming the file; there is no fallback to plain HTTP.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
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

/// The rustls server configuration for `tls` (HTTP/1.1 only, as the convox CLI speaks), from
/// the certificate file whose SHA-256 the configuration recorded (refused if it changed since).
///
/// Errors about the key name the setting, never its value: a key pasted where its path goes
/// (`RACK_GATEWAY_TLS_KEY`) would otherwise be printed.
pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&tls.cert, &tls.cert_sha256)?;
    let key_error = |what: String| TlsError::File {
        path: "tls.key (the file it names)".into(),
        what,
    };
    let pem = crate::keys::read_private(&tls.key).map_err(|e| key_error(e.reason()))?;
    if memchr::memmem::find(&pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----").is_some()
        || memchr::memmem::find(&pem, b"Proc-Type: 4,ENCRYPTED").is_some()
    {
        return Err(key_error(
            "an encrypted private key; the gateway reads the key unencrypted, from a file only \
             its user may read (decrypt it with `openssl pkey -in KEY -out KEY.plain`)"
                .into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| key_error(format!("not a PEM private key: {}", pem_problem(&e))))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            // ring's loader refuses what it does not support, weak RSA included, with no word
            // of which it was.
            rustls::Error::General(_) => key_error(format!(
                "a key this gateway does not serve with ({e}): use RSA of 2048 to 8192 bits, \
                 ECDSA on P-256 or P-384, or Ed25519"
            )),
            e => TlsError::Config(e.to_string()),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certificates(path: &Path, sha256: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |what: String| TlsError::File {
        path: crate::config::shown_path(path),
        what,
    };
    let bytes = crate::config::read_as_recorded(path, sha256).map_err(file_error)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(format!("not a PEM certificate chain: {}", pem_problem(&e))))?;
    if chain.is_empty() {
        return Err(file_error("holds no certificate".into()));
    }
    Ok(chain)
}

/// What is wrong with a PEM file, without its bytes: the parser's own message quotes the line it
/// stopped at, which in a key written on one line (`echo $KEY > key.pem`) is the whole key.
pub(crate) fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "a section has no END line (is the file on one line?)".into()
        }
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed".into(),
        pem::Error::Base64Decode(_) => "a section is not valid base64".into(),
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "no item of the expected kind".into(),
        pem::Error::SectionTooLarge => "a section is larger than 256 MB".into(),
        _ => "malformed".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::*;

    /// Runs openssl in `dir` (the test command needs it, see `.ci/run`).
    fn openssl(dir: &Path, args: &[&str]) {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is needed to make test keys");
        assert!(status.success(), "openssl {args:?}");
    }

    /// The error of serving the certificate and key openssl's `req` made with `newkey`.
    fn served_with(newkey: &[&str], encrypt: bool) -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["req", "-x509"];
        args.extend_from_slice(newkey);
        args.extend_from_slice(&["-subj", "/CN=127.0.0.1", "-days", "1"]);
        args.extend_from_slice(&["-keyout", "key.pem", "-out", "cert.pem"]);
        if encrypt {
            args.extend_from_slice(&["-passout", "pass:secret"]);
        } else {
            args.push("-noenc");
        }
        openssl(dir.path(), &args);
        let key = dir.path().join("key.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let tls = Tls::at(dir.path().join("cert.pem"), key).unwrap();
        match server_config(&tls) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    /// A key rustls cannot serve with is refused saying what would do; an encrypted one saying
    /// it is encrypted; neither quotes the key. A usable one serves.
    #[test]
    fn a_weak_or_encrypted_key_is_refused_saying_what_would_do() {
        let weak = served_with(&["-newkey", "rsa:1024"], false);
        assert!(weak.starts_with("tls.key"), "{weak}");
        assert!(weak.contains("RSA of 2048 to 8192 bits"), "{weak}");
        let p521 = served_with(
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            false,
        );
        assert!(p521.contains("P-256 or P-384"), "{p521}");
        let encrypted = served_with(&["-newkey", "rsa:2048"], true);
        assert!(
            encrypted.contains("an encrypted private key"),
            "{encrypted}"
        );
        for e in [&weak, &p521, &encrypted] {
            assert!(!e.contains("BEGIN"), "{e}");
        }
        assert_eq!(served_with(&["-newkey", "rsa:2048"], false), "");
    }
}
