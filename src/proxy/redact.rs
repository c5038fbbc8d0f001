//! What of a request's parameters enters the log: plain values as sent, secret values as
//! `hmac-sha256:<hex>` under the audit key, and command lines after scrubbing by value.
//!
//! **Invariant:** no value of a parameter the route table classes as secret is recorded in
//! clear; command text keeps its shape but loses credentials in URLs, private keys, JWTs and
//! long high-entropy words.

use crate::config::hmac_value;
use crate::keys::AuditKey;
use crate::policy::canonical::Param;
use crate::policy::routes::KeyClass;

/// The parameters as recorded in `CommandRequested`.
pub fn params(params: &[Param], audit: &AuditKey) -> Vec<(String, String)> {
    params
        .iter()
        .map(|p| {
            let value = match p.class {
                KeyClass::Plain => p.value.clone(),
                KeyClass::Secret => hmac_value(audit, &p.value),
                KeyClass::Command => scrub(&p.value),
            };
            (p.key.clone(), value)
        })
        .collect()
}

/// Replaces likely secrets in free text, word by word.
pub fn scrub(text: &str) -> String {
    if text.contains("-----BEGIN") {
        return "[redacted: private key]".to_owned();
    }
    text.split(' ')
        .map(scrub_word)
        .collect::<Vec<_>>()
        .join(" ")
}

fn scrub_word(word: &str) -> String {
    // user:password@ inside a URL.
    if let Some(scheme_end) = word.find("://") {
        let rest = &word[scheme_end + 3..];
        if let Some(at) = rest.find('@')
            && rest[..at].contains(':')
        {
            let user = rest[..at].split(':').next().unwrap_or_default();
            return format!(
                "{}{user}:[redacted]@{}",
                &word[..scheme_end + 3],
                &rest[at + 1..]
            );
        }
    }
    // KEY=value where the value looks secret, and bare secret-looking words.
    if let Some((k, v)) = word.split_once('=')
        && looks_secret(v)
    {
        return format!("{k}=[redacted]");
    }
    if looks_secret(word) {
        return "[redacted]".to_owned();
    }
    word.to_owned()
}

/// A gateway token, a JWT, or a long word with the character mix of random material.
fn looks_secret(w: &str) -> bool {
    if w.starts_with("rgw_") || (w.starts_with("eyJ") && w.matches('.').count() == 2) {
        return true;
    }
    if w.len() < 24 || w.contains('/') {
        return false;
    }
    let classes = [
        w.bytes().any(|b| b.is_ascii_lowercase()),
        w.bytes().any(|b| b.is_ascii_uppercase()),
        w.bytes().any(|b| b.is_ascii_digit()),
    ];
    let dense = w
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'-' | b'='))
        .count();
    classes.iter().filter(|c| **c).count() >= 2 && dense * 10 >= w.len() * 9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_keep_their_shape_and_lose_their_secrets() {
        assert_eq!(scrub("ls -la /app"), "ls -la /app");
        assert_eq!(
            scrub("psql postgres://admin:hunter2@db:5432/app"),
            "psql postgres://admin:[redacted]@db:5432/app"
        );
        assert_eq!(
            scrub("curl -H token=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
            "curl -H token=[redacted]"
        );
        assert_eq!(
            scrub("echo eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"),
            "echo [redacted]"
        );
        assert_eq!(
            scrub("cat <<EOF\n-----BEGIN RSA PRIVATE KEY-----"),
            "[redacted: private key]"
        );
        assert_eq!(scrub("bin/migrate --verbose"), "bin/migrate --verbose");
    }

    #[test]
    fn secret_params_become_hmacs() {
        use crate::policy::canonical::Part;
        let audit = AuditKey([1; 32]);
        let recorded = params(
            &[
                Param {
                    part: Part::Form,
                    key: "env".into(),
                    value: "SECRET=s3cr3t".into(),
                    class: KeyClass::Secret,
                },
                Param {
                    part: Part::Form,
                    key: "description".into(),
                    value: "hello".into(),
                    class: KeyClass::Plain,
                },
            ],
            &audit,
        );
        assert!(recorded[0].1.starts_with("hmac-sha256:"));
        assert!(!recorded[0].1.contains("s3cr3t"));
        assert_eq!(recorded[1].1, "hello");
    }
}
