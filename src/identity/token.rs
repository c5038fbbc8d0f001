//! API token secrets: `rgw_` followed by 43 URL-safe base64 characters (256 random bits).
//!
//! **Invariant:** a [`TokenSecret`] never prints: `Debug` and `Display` show only its prefix,
//! and the only way to store or compare it is its SHA-256 ([`TokenSecret::sha256`]).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use events::hash::{self, Hash};

/// The prefix every token carries, so a leaked token is recognizable (secret scanners).
pub const PREFIX: &str = "rgw_";
/// Random bytes in a token: 256 bits.
const RANDOM_BYTES: usize = 32;
/// Characters after the prefix: 32 bytes in unpadded base64.
pub const ENCODED_LEN: usize = 43;

/// A token secret as the caller presents it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

/// Why a string is not a token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenSecretError {
    #[error("a token starts with {PREFIX}")]
    Prefix,
    #[error("a token has {ENCODED_LEN} characters after {PREFIX}, found {0}")]
    Length(usize),
    #[error("a token holds only URL-safe base64 characters")]
    Alphabet,
    #[error("cannot generate a token: {0}")]
    Random(String),
}

// === impl TokenSecret ===

impl TokenSecret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> Result<TokenSecret, TokenSecretError> {
        let mut raw = [0u8; RANDOM_BYTES];
        getrandom::fill(&mut raw).map_err(|e| TokenSecretError::Random(e.to_string()))?;
        Ok(TokenSecret(format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode(raw)
        )))
    }

    /// Parses a presented secret strictly: prefix, length, alphabet, canonical base64.
    pub fn parse(s: &str) -> Result<TokenSecret, TokenSecretError> {
        let body = s.strip_prefix(PREFIX).ok_or(TokenSecretError::Prefix)?;
        if body.len() != ENCODED_LEN {
            return Err(TokenSecretError::Length(body.len()));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenSecretError::Alphabet)?;
        if raw.len() != RANDOM_BYTES || URL_SAFE_NO_PAD.encode(&raw) != body {
            return Err(TokenSecretError::Alphabet);
        }
        Ok(TokenSecret(s.to_owned()))
    }

    /// What the log and the token table keep.
    pub fn sha256(&self) -> Hash {
        hash::object_digest(self.0.as_bytes())
    }

    /// The secret itself, for the one answer that hands it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSecret({PREFIX}…)")
    }
}

impl fmt::Display for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let a = TokenSecret::generate().unwrap();
        let b = TokenSecret::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(TokenSecret::parse(a.expose()).unwrap(), a);
        assert_eq!(a.expose().len(), PREFIX.len() + ENCODED_LEN);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = TokenSecret::generate().unwrap();
        let body = &good.expose()[PREFIX.len()..];
        assert_eq!(TokenSecret::parse(body), Err(TokenSecretError::Prefix));
        assert_eq!(
            TokenSecret::parse(&format!("{PREFIX}{}", &body[1..])),
            Err(TokenSecretError::Length(42))
        );
        let bad_char = format!("{PREFIX}{}+", &body[1..]);
        assert_eq!(
            TokenSecret::parse(&bad_char),
            Err(TokenSecretError::Alphabet)
        );
        // The last character carries 2 padding bits; setting one is a non-canonical encoding.
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = body.chars().last().unwrap();
        let value = ALPHABET.find(last).unwrap();
        assert_eq!(
            value & 0b11,
            0,
            "a canonical token ends with zero padding bits"
        );
        let padded = ALPHABET.chars().nth(value | 1).unwrap();
        let noncanonical = format!("{PREFIX}{}{padded}", &body[..42]);
        assert_eq!(
            TokenSecret::parse(&noncanonical),
            Err(TokenSecretError::Alphabet)
        );
    }

    #[test]
    fn secrets_never_print() {
        let t = TokenSecret::generate().unwrap();
        let shown = format!("{t} {t:?}");
        assert!(!shown.contains(&t.expose()[PREFIX.len()..]));
    }
}
