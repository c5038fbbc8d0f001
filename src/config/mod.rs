//! The gateway's configuration: a TOML file, every key overridable by a `RACK_GATEWAY_*`
//! environment variable, secrets from the environment or from files, and the audit digest of
//! what is in effect.
//!
//! **Invariant:** a configuration is refused as a whole, with the key and the reason, when any
//! value is malformed or a key is unknown; secret values are held in [`Secret`], which never
//! prints, and enter the log only as HMACs (see [`Config::audit_values`]).

mod file;
mod secret;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use events::hash::{self, Hash};
use hmac::{KeyInit, Mac};

pub(crate) use file::is_loopback_name;
pub use file::{ConfigError, load, overrides};
pub use secret::Secret;

use crate::keys::AuditKey;

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the keys, the store and snapshots live.
    pub data: PathBuf,
    /// The rack proxy listener (the convox CLI's `RACK_URL`).
    pub proxy_listen: SocketAddr,
    /// The console and gateway API listener: another port or host than the proxy.
    pub console_listen: SocketAddr,
    pub tls: Option<Tls>,
    /// Peers whose `X-Forwarded-*` headers are believed (exact addresses).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Env vars masked for everyone and never changed through the gateway, by app (`*`: all).
    pub protected_env: BTreeMap<String, Vec<String>>,
    pub rack: Rack,
    pub checkpoints: Checkpoints,
    pub limits: Limits,
}

/// The certificate and key the listeners serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: PathBuf,
    /// The SHA-256 (hex) of `cert`'s contents when the configuration was loaded, recorded: the
    /// certificate callers pin or check is replaced at the same path by a renewal or by an
    /// intruder alike. The key must match it (rustls checks), so a new key needs a new one.
    pub cert_sha256: String,
    pub key: PathBuf,
}

/// The upstream rack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rack {
    /// `http(s)://host[:port][/prefix]`, without credentials.
    pub url: String,
    pub password: Secret,
    /// A CA bundle to verify the rack's certificate against.
    pub ca_file: Option<PathBuf>,
    /// The SHA-256 (hex) of `ca_file`'s contents when the configuration was loaded: a bundle
    /// replaced at the same path changes which racks are trusted, so it is recorded.
    pub ca_sha256: Option<String>,
    /// The SHA-256 of the rack certificate (hex), pinned instead of a CA.
    pub pin_sha256: Option<String>,
    /// An explicit, logged opt-out for racks with self-signed certificates and no pin.
    pub insecure_skip_verify: bool,
}

/// When checkpoints are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoints {
    pub every: u64,
    pub after: Duration,
    pub heartbeat: Duration,
}

/// How many WebSocket streams one user may hold open at once, unless configured: a `convox
/// deploy` keeps up to 14 finished log sockets open until the CLI exits.
pub const DEFAULT_STREAMS_PER_PRINCIPAL: u32 = 16;

/// How long a form body may take to arrive unless configured: a form is small (at most
/// 1 MiB), so this is generous for the slowest link a CLI is used over.
pub const DEFAULT_FORM_TIMEOUT: Duration = Duration::from_secs(30);

/// Bounds on what callers may consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute from one IP address before anything is appended.
    pub per_ip_per_minute: u32,
    /// Concurrent WebSocket streams per principal.
    pub streams_per_principal: u32,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// How long a stream whose rack side has ended (its EOF) may stay without data before the
    /// gateway closes it; the caller's EOF is not awaited (the CLI sends none on log sockets).
    pub stream_idle: Duration,
    /// How long a form body may take to arrive once its headers are in: the caller's credential
    /// was checked at the headers, and a body that trickles in keeps that check waiting to be
    /// used (the token is checked again at the end, but the slot is held all along).
    pub form_timeout: Duration,
}

/// A path setting's value as an error message shows it: as given, unless it cannot be a path
/// but may be a secret (a PEM block, or several lines, pasted where the path goes: a file of a
/// certificate and its key together, say).
pub fn shown_path(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    if text.contains(['\n', '\r']) || text.contains("-----") {
        "(a value that is not a path: it holds a PEM block or a line break; give the file's path)"
            .to_owned()
    } else {
        text.into_owned()
    }
}

/// The SHA-256 (hex) of the file at `path`, as the configuration records it.
pub(crate) fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    Ok(hash::object_digest(&std::fs::read(path)?).to_hex())
}

/// The file at `path`, read to be used, if it still holds what the configuration recorded
/// (`sha256`, from [`file_sha256`] at load): a file replaced between the two reads (opening the
/// store may take a while) would otherwise be served or trusted while `ConfigApplied` names the
/// one before.
pub fn read_as_recorded(path: &std::path::Path, sha256: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let now = hash::object_digest(&bytes).to_hex();
    if now != sha256 {
        return Err(format!(
            "changed while the gateway started (SHA-256 {sha256} when the configuration was \
             read, {now} now); start it again"
        ));
    }
    Ok(bytes)
}

// === impl Tls ===

impl Tls {
    /// The certificate at `cert`, with the SHA-256 it holds now, and the key at `key`.
    ///
    /// # Errors
    /// The certificate cannot be read.
    pub fn at(cert: PathBuf, key: PathBuf) -> std::io::Result<Tls> {
        let cert_sha256 = file_sha256(&cert)?;
        Ok(Tls {
            cert,
            cert_sha256,
            key,
        })
    }
}

// === impl Config ===

impl Config {
    /// The security-relevant settings as they are recorded in `ConfigApplied`: plain values,
    /// and secrets as [`config_secret_value`], so a rotation is visible but the secret is not.
    pub fn audit_values(&self, audit: &AuditKey) -> Vec<(String, String)> {
        let mut v = BTreeMap::new();
        v.insert("proxy.listen", self.proxy_listen.to_string());
        v.insert("console.listen", self.console_listen.to_string());
        v.insert(
            "tls",
            match &self.tls {
                // The served certificate: which file, and what it held.
                Some(t) => format!("cert:{} sha256:{}", t.cert.display(), t.cert_sha256),
                None => "off".to_owned(),
            },
        );
        // Sets, as the gateway uses them: the order they were written in, or a repeat, is no
        // new configuration (and no new record).
        let trusted: BTreeSet<IpAddr> = self
            .trusted_proxies
            .iter()
            .map(|ip| ip.to_canonical())
            .collect();
        let trusted: Vec<String> = trusted.iter().map(IpAddr::to_string).collect();
        v.insert("trusted_proxies", trusted.join(","));
        let protected: BTreeSet<String> = self
            .protected_env
            .iter()
            .flat_map(|(app, keys)| keys.iter().map(move |k| format!("{app}:{k}")))
            .collect();
        v.insert(
            "protected_env",
            protected.into_iter().collect::<Vec<_>>().join(","),
        );
        v.insert("rack.url", self.rack.url.clone());
        v.insert(
            "rack.password",
            config_secret_value(audit, self.rack.password.expose()),
        );
        v.insert(
            "rack.tls",
            match (
                &self.rack.pin_sha256,
                &self.rack.ca_file,
                self.rack.insecure_skip_verify,
            ) {
                (Some(pin), _, _) => format!("pinned:{pin}"),
                (None, Some(ca), _) => format!(
                    "ca:{} sha256:{}",
                    ca.display(),
                    self.rack.ca_sha256.as_deref().unwrap_or("unread")
                ),
                (None, None, true) => "insecure-skip-verify".to_owned(),
                (None, None, false) if self.rack.url.starts_with("http://") => {
                    "none (plain http to this machine)".to_owned()
                }
                // Never served: an https rack with no trust setting is refused at start
                // (`RackTlsError::NoTrust`), before anything is recorded.
                (None, None, false) => "none (refused for an https rack)".to_owned(),
            },
        );
        v.insert(
            "limits.per_ip_per_minute",
            self.limits.per_ip_per_minute.to_string(),
        );
        v.insert(
            "limits.streams_per_principal",
            self.limits.streams_per_principal.to_string(),
        );
        v.insert(
            "limits.header_timeout_secs",
            self.limits.header_timeout.as_secs().to_string(),
        );
        v.insert(
            "limits.stream_idle_secs",
            self.limits.stream_idle.as_secs().to_string(),
        );
        v.insert(
            "limits.form_timeout_secs",
            self.limits.form_timeout.as_secs().to_string(),
        );
        v.insert("checkpoints.every", self.checkpoints.every.to_string());
        // How long a tampering could go unnoticed: as security-relevant as `every`.
        v.insert(
            "checkpoints.after_secs",
            self.checkpoints.after.as_secs().to_string(),
        );
        v.insert(
            "checkpoints.heartbeat_secs",
            self.checkpoints.heartbeat.as_secs().to_string(),
        );
        v.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The digest of [`Config::audit_values`]: equal digests mean the same effective settings.
    pub fn digest(&self, audit: &AuditKey) -> Hash {
        let mut text = String::new();
        for (k, v) in self.audit_values(audit) {
            text.push_str(&k);
            text.push('=');
            text.push_str(&v);
            text.push('\n');
        }
        hash::object_digest(text.as_bytes())
    }
}

/// `hmac-sha256:<hex>` of a secret under the audit key: how secrets appear in events.
pub fn hmac_value(audit: &AuditKey, secret: &str) -> String {
    format!("hmac-sha256:{}", hmac_hex(&audit.0, secret))
}

/// HMAC-SHA256 of `secret` under `key`, in hex. A 32-byte key is always accepted; an empty tag
/// would only ever be a visible bug.
fn hmac_hex(key: &[u8], secret: &str) -> String {
    match <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(secret.as_bytes());
            hex::encode(m.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// What the key of [`config_secret_value`] is derived for ([`AuditKey::derive`]).
const CONFIG_SECRET_LABEL: &str = "rack-gateway config secret v1";

/// `hmac-sha256/config:<hex>` of a configured secret (the rack password), under a key of its
/// own derived from the audit key: a rotation shows, and whoever holds the audit key and the
/// password can check it. Not [`hmac_value`], which is what any caller gets recorded for a
/// secret parameter it sends: under the same key, whoever reads the log could test guesses of
/// the rack's password by sending them as env values and comparing.
pub fn config_secret_value(audit: &AuditKey, secret: &str) -> String {
    let tag = audit
        .derive(CONFIG_SECRET_LABEL)
        .map(|key| hmac_hex(&key, secret))
        .unwrap_or_default();
    format!("hmac-sha256/config:{tag}")
}

#[cfg(test)]
mod read_tests {
    use super::*;

    /// The rack password is recorded under a key of its own: a rotation shows, and no value a
    /// caller sends is recorded as it (a secret parameter's record is `hmac_value`).
    #[test]
    fn the_rack_password_is_recorded_apart_from_what_callers_send() {
        let audit = AuditKey([7; 32]);
        let recorded = config_secret_value(&audit, "rack-pw");
        assert!(recorded.starts_with("hmac-sha256/config:"), "{recorded}");
        assert_eq!(recorded.len(), "hmac-sha256/config:".len() + 64);
        assert_eq!(recorded, config_secret_value(&audit, "rack-pw"));
        assert_ne!(recorded, config_secret_value(&audit, "rotated"));
        assert_ne!(recorded, config_secret_value(&AuditKey([8; 32]), "rack-pw"));
        let tag = &recorded["hmac-sha256/config:".len()..];
        for sent in ["rack-pw", "rack-gateway config secret v1rack-pw"] {
            assert!(!hmac_value(&audit, sent).ends_with(tag), "{sent}");
        }
        // Nor is the key it is made under: sending the label records another value.
        let key = audit.derive(CONFIG_SECRET_LABEL).unwrap();
        assert_ne!(
            hmac_value(&audit, CONFIG_SECRET_LABEL),
            format!("hmac-sha256:{}", hex::encode(key))
        );
    }

    /// A file is used only if it still holds what the configuration recorded.
    #[test]
    fn a_file_changed_since_it_was_recorded_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.pem");
        std::fs::write(&path, "recorded").unwrap();
        let sha256 = file_sha256(&path).unwrap();
        assert_eq!(read_as_recorded(&path, &sha256).unwrap(), b"recorded");
        std::fs::write(&path, "replaced").unwrap();
        let e = read_as_recorded(&path, &sha256).unwrap_err();
        assert!(e.starts_with("changed while the gateway started"), "{e}");
    }
}
