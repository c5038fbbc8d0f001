//! The credentials a caller presents: on the rack proxy, `Authorization: Basic` as the convox
//! CLI builds it from `RACK_URL` (`convox:<token>`; like the rack, any username but `jwt`, since
//! the CLI sends whichever `RACK_URL` holds), or `Authorization: Bearer <token>`; on the gateway
//! API, `Bearer` only ([`Schemes`]).
//!
//! **Invariant:** parsing is strict and bounded: one header, at most [`MAX_HEADER`] bytes,
//! canonical base64, a password that is a well-formed token. Anything else is a typed refusal
//! with a fixed reason, never a guess. The rack's own JWT logins (username `jwt`) are refused:
//! the gateway authenticates people and CI, never rack-minted credentials.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::token::{TokenSecret, TokenSecretError};

/// The longest `Authorization` value accepted; a token header is about 70 bytes.
pub const MAX_HEADER: usize = 1024;

/// A credential the proxy can check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token(TokenSecret),
}

/// Why a request's credentials were refused. `reason()` is the stable string recorded in events.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("no Authorization header")]
    Missing,
    #[error("more than one Authorization header")]
    Repeated,
    #[error("the Authorization header is longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("the Authorization scheme must be Basic or Bearer")]
    Scheme,
    #[error("the Basic credentials are not valid base64 of user:password")]
    Basic,
    #[error("rack JWT credentials are not accepted by the gateway; use a gateway token")]
    RackJwt,
    #[error("the password is not a gateway token: {0}")]
    Token(#[from] TokenSecretError),
}

// === impl CredentialError ===

impl CredentialError {
    /// A fixed, greppable reason for events and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            CredentialError::Missing => "missing_credentials",
            CredentialError::Repeated => "repeated_authorization",
            CredentialError::TooLong => "oversized_authorization",
            CredentialError::Scheme => "unsupported_scheme",
            CredentialError::Basic => "malformed_basic",
            CredentialError::RackJwt => "rack_jwt_refused",
            CredentialError::Token(_) => "malformed_token",
        }
    }
}

/// Which `Authorization` schemes a listener takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schemes {
    /// The rack proxy: `Basic` as the convox CLI sends it, or `Bearer`.
    BasicOrBearer,
    /// The gateway API: `Bearer` only. A browser never attaches a bearer token by itself (it
    /// does replay `Basic` credentials it once prompted for), so an API that takes only bearer
    /// tokens and no cookies has no ambient credential a cross-site request could ride on.
    BearerOnly,
}

/// Parses the values of a request's `Authorization` headers as the rack proxy takes them.
pub fn from_authorization(values: &[&[u8]]) -> Result<Credential, CredentialError> {
    parse(values, Schemes::BasicOrBearer)
}

/// Parses the values of a request's `Authorization` headers, accepting only `schemes`.
pub fn parse(values: &[&[u8]], schemes: Schemes) -> Result<Credential, CredentialError> {
    let value = match values {
        [] => return Err(CredentialError::Missing),
        [one] => *one,
        _ => return Err(CredentialError::Repeated),
    };
    if value.len() > MAX_HEADER {
        return Err(CredentialError::TooLong);
    }
    let value = std::str::from_utf8(value).map_err(|_| CredentialError::Scheme)?;
    let (scheme, rest) = value.split_once(' ').ok_or(CredentialError::Scheme)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credential::Token(TokenSecret::parse(rest)?));
    }
    if !scheme.eq_ignore_ascii_case("basic") || schemes == Schemes::BearerOnly {
        return Err(CredentialError::Scheme);
    }
    let raw = STANDARD.decode(rest).map_err(|_| CredentialError::Basic)?;
    let userinfo = String::from_utf8(raw).map_err(|_| CredentialError::Basic)?;
    let (user, password) = userinfo.split_once(':').ok_or(CredentialError::Basic)?;
    if user == "jwt" {
        return Err(CredentialError::RackJwt);
    }
    Ok(Credential::Token(TokenSecret::parse(password)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(userinfo: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(userinfo)).into_bytes()
    }

    fn check(values: &[&[u8]], expect: Result<(), CredentialError>) {
        let got = from_authorization(values).map(|_| ());
        assert_eq!(
            got,
            expect,
            "{:?}",
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_clis_basic_header_and_bearer_are_accepted() {
        let t = TokenSecret::generate().unwrap();
        let h = basic(&format!("convox:{}", t.expose()));
        assert_eq!(from_authorization(&[&h]), Ok(Credential::Token(t.clone())));
        let b = format!("Bearer {}", t.expose()).into_bytes();
        assert_eq!(from_authorization(&[&b]), Ok(Credential::Token(t)));
    }

    #[test]
    fn malformed_headers_are_refused_with_their_reason() {
        let t = TokenSecret::generate().unwrap();
        let good = basic(&format!("convox:{}", t.expose()));
        check(&[], Err(CredentialError::Missing));
        check(&[&good, &good], Err(CredentialError::Repeated));
        check(
            &[&vec![b'a'; MAX_HEADER + 1]],
            Err(CredentialError::TooLong),
        );
        check(&[b"Digest abc"], Err(CredentialError::Scheme));
        check(&[b"Basic"], Err(CredentialError::Scheme));
        check(&[b"Basic !!!!"], Err(CredentialError::Basic));
        check(&[&basic("no-colon")], Err(CredentialError::Basic));
        check(
            &[&basic(&format!("jwt:{}", t.expose()))],
            Err(CredentialError::RackJwt),
        );
        check(
            &[&basic("convox:the-shared-rack-password")],
            Err(CredentialError::Token(TokenSecretError::Prefix)),
        );
        // Percent-escapes are kept by the CLI and never decoded here: an escaped token is not a token.
        let escaped = t.expose().replacen('_', "%5F", 1);
        assert!(from_authorization(&[&basic(&format!("convox:{escaped}"))]).is_err());
    }

    #[test]
    fn the_gateway_api_takes_bearer_only() {
        let t = TokenSecret::generate().unwrap();
        let b = format!("Bearer {}", t.expose()).into_bytes();
        assert_eq!(
            parse(&[&b], Schemes::BearerOnly),
            Ok(Credential::Token(t.clone()))
        );
        let h = basic(&format!("convox:{}", t.expose()));
        assert_eq!(
            parse(&[&h], Schemes::BearerOnly),
            Err(CredentialError::Scheme)
        );
    }
}
