//! Basic authentication as the rack checks it (spec §2.2, `pkg/api/api.go authenticate`): the
//! password of `Authorization: Basic …` must equal the configured one; the username is ignored,
//! except `jwt`, whose password would be a rack-signed JWT that this mock never issues.
//!
//! Invariant: the comparison takes time independent of where the passwords differ, and a missing
//! or malformed header is simply a wrong password; an empty configured password accepts every
//! password login, as the rack does when its `PASSWORD` is empty (a JWT login still fails).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits tolerated.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Whether the request's credentials would pass the rack's `authenticate` middleware.
pub(crate) fn authenticate(headers: &HeaderMap, password: &str) -> bool {
    match basic_credentials(headers) {
        // A JWT is checked against the rack's key whatever `PASSWORD` is.
        Some((user, _)) if user == b"jwt" => false,
        _ if password.is_empty() => true,
        Some((_, pass)) => constant_time_eq(&pass, password.as_bytes()),
        None => false,
    }
}

/// Go's `Request.BasicAuth`: case-insensitive `Basic ` prefix, standard base64, split at the
/// first `:`.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(Vec<u8>, Vec<u8>)> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    // Go's decoder skips CR and LF inside the input.
    let cleaned: Vec<u8> = rest
        .iter()
        .copied()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    let decoded = GO_STD.decode(cleaned).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let (user, pass) = decoded.split_at(colon);
    Some((user.to_vec(), pass.get(1..).unwrap_or_default().to_vec()))
}

/// Compares every byte of the longer input, so timing reveals at most the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(userinfo: &str) -> HeaderMap {
        with_auth(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(userinfo)
        ))
    }

    #[test]
    fn any_username_but_jwt_is_ignored() {
        assert!(authenticate(&basic("convox:TOKEN123"), "TOKEN123"));
        assert!(authenticate(&basic("anyone:TOKEN123"), "TOKEN123"));
        assert!(authenticate(&basic(":TOKEN123"), "TOKEN123"));
        assert!(!authenticate(&basic("jwt:TOKEN123"), "TOKEN123"));
    }

    #[test]
    fn the_password_is_compared_as_sent_percent_escapes_included() {
        // Spec §2.1: the CLI sends the userinfo still percent-escaped.
        assert!(authenticate(&basic("convox:p%40ss"), "p%40ss"));
        assert!(!authenticate(&basic("convox:p@ss"), "p%40ss"));
        assert!(authenticate(&basic("convox:a:b"), "a:b"));
    }

    #[test]
    fn wrong_missing_or_malformed_credentials_fail() {
        assert!(!authenticate(&basic("convox:nope"), "TOKEN123"));
        assert!(!authenticate(&basic("convox:TOKEN1234"), "TOKEN123"));
        assert!(!authenticate(&HeaderMap::new(), "TOKEN123"));
        assert!(!authenticate(&with_auth("Bearer TOKEN123"), "TOKEN123"));
        assert!(!authenticate(&with_auth("Basic !!!"), "TOKEN123"));
        assert!(authenticate(
            &with_auth("bAsIc Y29udm94OlRPS0VOMTIz"),
            "TOKEN123"
        ));
    }

    #[test]
    fn an_empty_password_accepts_every_password_login_but_no_jwt() {
        assert!(authenticate(&HeaderMap::new(), ""));
        assert!(authenticate(&basic("convox:anything"), ""));
        assert!(!authenticate(
            &basic("jwt:eyJhbGciOiJIUzI1NiJ9.e30.sig"),
            ""
        ));
    }
}
