//! What a secret looks like in text: credentials in URLs and DSNs, JWTs, well-known token
//! formats and random-looking material. One set of detectors for the two places that hide
//! secrets by value: env values in rack answers ([`super::mask`]) and the command lines that
//! enter the log ([`super::redact`]).
//!
//! **Invariant:** pure functions of the text; when in doubt they call it secret, since a value
//! wrongly hidden costs a reader a look at the rack, and a secret wrongly shown cannot be
//! taken back.

use std::ops::Range;

/// The byte ranges of credentials in `s`: the password of every `scheme://user:password@host`
/// (or the user, when a lone user is a secret by `lone_user_secret`), and, in text without a
/// URL, of a leading `user:password@host` (a DSN such as Go's MySQL
/// `user:pass@tcp(host:3306)/db`). Env masking passes [`looks_like_token`]; the log passes its
/// stricter test.
///
/// A URL's userinfo runs to the last `@` before the next whitespace or the next URL's scheme, as
/// a password may hold a raw `@`, `/`, `?` or `,` (the rack writes its password into the URL
/// unescaped): a path or query with an `@` in it may be taken for a password, rather than a
/// password staying in clear.
pub(crate) fn credential_ranges(
    s: &str,
    lone_user_secret: &dyn Fn(&str) -> bool,
) -> Vec<Range<usize>> {
    let separators: Vec<usize> = s.match_indices("://").map(|(i, _)| i).collect();
    let mut out = Vec::new();
    for (n, &sep) in separators.iter().enumerate() {
        let authority = sep + 3;
        let next_url = separators
            .get(n + 1)
            .map_or(s.len(), |&next| scheme_start(s, next).max(authority));
        let rest = s.get(authority..next_url).unwrap_or_default();
        let region = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let Some(at) = rest.get(..region).and_then(|r| r.rfind('@')) else {
            continue;
        };
        if let Some(r) = userinfo_secret(rest.get(..at).unwrap_or_default(), lone_user_secret) {
            out.push(authority + r.start..authority + r.end);
        }
    }
    if separators.is_empty() {
        let head_len = s
            .find(|c: char| matches!(c, '/' | '(') || c.is_whitespace())
            .unwrap_or(s.len());
        let head = s.get(..head_len).unwrap_or_default();
        // Only a password here: a lone `user@host` is an address, not a credential.
        if let Some(r) = head
            .rfind('@')
            .and_then(|at| userinfo_secret(head.get(..at).unwrap_or_default(), lone_user_secret))
            .filter(|r| r.start > 0)
        {
            out.push(r);
        }
    }
    out
}

/// Where the scheme of the URL whose `://` is at `sep` starts: just after the last character
/// before it that a scheme cannot hold (a character boundary, whatever that character's width).
fn scheme_start(s: &str, sep: usize) -> usize {
    s.get(..sep)
        .and_then(|before| {
            before
                .char_indices()
                .rfind(|(_, c)| !(c.is_ascii_alphanumeric() || "+-.".contains(*c)))
        })
        .map_or(0, |(j, c)| j + c.len_utf8())
}

/// In a URL's `userinfo`, the range of the secret part: the password, or a lone user that
/// `lone_user_secret` calls secret.
fn userinfo_secret(
    userinfo: &str,
    lone_user_secret: &dyn Fn(&str) -> bool,
) -> Option<Range<usize>> {
    match userinfo.find(':') {
        Some(colon) if colon + 1 < userinfo.len() => Some(colon + 1..userinfo.len()),
        Some(_) => None,
        None if lone_user_secret(userinfo) => Some(0..userinfo.len()),
        None => None,
    }
}

/// Whether the name of a `name=value` pair (inside an env value, a command's `--flag=value`)
/// says its value is secret: it holds a password, secret, token or credential word, or an API,
/// access or private key's name (`APIKEY`, `API_KEY`, `ACCESS_KEY`, `PRIVATE_KEY`); a word of it
/// is `PWD`, `PW` or `PASS`; or it has a key word qualified as a secret's (`API`, `ACCESS`,
/// `PRIVATE`, `ACCOUNT`, `SIGNING`, `ENCRYPTION`, `MASTER`, `SHARED`, `AUTH`, `HMAC`, `CLIENT`)
/// in any spelling (`api_key`, `apiKey`, `--api-key`, `apikey`). Not a bare `key` or `auth`, as
/// in `-Djavax.net.ssl.keyStore=`, `signing_keystore=` or `auth_mode=`: the value is what the
/// name is for. One rule for the log's scrubber and the env masking.
pub(crate) fn pair_name_secret(name: &str) -> bool {
    const ANYWHERE: &[&str] = &[
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "SECRET",
        "TOKEN",
        "CREDENTIAL",
        "APIKEY",
        "API_KEY",
        "ACCESS_KEY",
        "PRIVATE_KEY",
    ];
    const KEY_OF: &[&str] = &[
        "API",
        "ACCESS",
        "PRIVATE",
        "ACCOUNT",
        "SIGNING",
        "ENCRYPTION",
        "MASTER",
        "SHARED",
        "AUTH",
        "HMAC",
        "CLIENT",
    ];
    let upper = name.to_ascii_uppercase();
    if ANYWHERE.iter().any(|n| upper.contains(n)) {
        return true;
    }
    let words = words(name);
    words.iter().enumerate().any(|(i, w)| {
        matches!(w.as_str(), "PWD" | "PW" | "PASS")
            || KEY_OF.iter().any(|q| {
                w.strip_prefix(q) == Some("KEY")
                    || (w == q && words.get(i + 1).is_some_and(|n| n == "KEY"))
            })
    })
}

/// Upper-cased words of a key: split at anything not alphanumeric and at `aB` boundaries.
pub(crate) fn words(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_uppercase());
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A word that is secret material by its looks alone: a well-known token format, a JWT, or a
/// random-looking string.
pub(crate) fn looks_like_token(w: &str) -> bool {
    is_known_token(w) || is_jwt(w) || random_looking(w)
}

/// A JWT: three base64url parts, the first a JSON object (`eyJ`).
pub(crate) fn is_jwt(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    let b64url = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
    };
    parts.len() == 3
        && w.starts_with("eyJ")
        && parts.iter().take(2).all(|p| p.len() >= 4 && b64url(p))
        && parts.iter().all(|p| b64url(p))
}

/// The prefixes of well-known API tokens (GitHub, GitLab, Slack, Stripe, OpenAI, Google, npm,
/// PyPI, …, and the gateway's own): what marks a word as a token whatever else it looks like.
const KNOWN_TOKEN_PREFIXES: &[&str] = &[
    "rgw_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "whsec_",
    "sk-",
    "AIza",
    "SG.",
    "npm_",
    "pypi-",
    "dop_v1_",
    "shpat_",
    "hf_",
];

pub(crate) fn is_known_token(w: &str) -> bool {
    let aws = (w.starts_with("AKIA") || w.starts_with("ASIA"))
        && w.len() == 20
        && w.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    aws || (w.len() >= 16 && KNOWN_TOKEN_PREFIXES.iter().any(|p| w.starts_with(p)))
}

/// A long random-looking string: a run of base64/base64url characters of 20 or more with
/// letters and digits that switch character class as often as random text does, 32 or more
/// hex digits, or a symbol-rich password-like value.
///
/// In an absolute path (a value that starts with `/`) each segment is judged on its own, and the
/// symbol-rich rule does not apply: its slashes separate words rather than sit inside a token.
pub(crate) fn random_looking(v: &str) -> bool {
    let path = v.starts_with('/');
    let token_byte = |b: u8| {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'-') || (b == b'/' && !path)
    };
    let bytes = v.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes.get(i).copied().is_some_and(token_byte) {
            i += 1;
            continue;
        }
        let start = i;
        while bytes.get(i).copied().is_some_and(token_byte) {
            i += 1;
        }
        if random_token(bytes.get(start..i).unwrap_or_default()) {
            return true;
        }
    }
    // A password with symbols: no spaces, every kind of character, rarely two alike in a row.
    !path
        && !v.contains(char::is_whitespace)
        && v.len() >= 16
        && v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes().any(|b| b.is_ascii_alphabetic())
        && v.bytes().any(|b| b.is_ascii_punctuation())
        && transitions(bytes) * 10 >= (bytes.len() - 1) * 6
        && entropy_bits_per_char(bytes) >= 3.5
}

fn random_token(t: &[u8]) -> bool {
    let hex = t.iter().all(u8::is_ascii_hexdigit)
        && (t.iter().all(|b| !b.is_ascii_uppercase()) || t.iter().all(|b| !b.is_ascii_lowercase()));
    if hex {
        return t.len() >= 32
            && t.iter().any(u8::is_ascii_digit)
            && t.iter().any(u8::is_ascii_alphabetic)
            && entropy_bits_per_char(t) >= 3.0;
    }
    t.len() >= 20
        && t.iter().any(u8::is_ascii_digit)
        && t.iter().any(u8::is_ascii_alphabetic)
        && transitions(t) * 10 >= (t.len() - 1) * 4
        && entropy_bits_per_char(t) >= 3.5
}

/// How many neighbours differ in class (lower, upper, digit, other).
fn transitions(t: &[u8]) -> usize {
    let class = |b: &u8| match b {
        b'a'..=b'z' => 0,
        b'A'..=b'Z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    };
    t.windows(2)
        .filter(|w| w.first().map(class) != w.get(1).map(class))
        .count()
}

/// Shannon entropy of the byte distribution.
fn entropy_bits_per_char(t: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for b in t {
        if let Some(c) = counts.get_mut(usize::from(*b)) {
            *c += 1;
        }
    }
    let n = t.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}
