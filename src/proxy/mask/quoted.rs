//! Values a caller may not see, taken out of a rack answer that quotes them in any form.
//!
//! Two kinds of value can stand in an answer that was not built to hold them:
//! - **Values the gateway restored into a call.** A `POST /apps/{app}/releases` whose posted env
//!   carried masks is forwarded with the real values
//!   ([`restore_env_param`](super::restore_env_param)). A rack that refuses the release may
//!   quote what it was sent: its error is `http.Error` text or `{"error":"…"}` (spec §1.5), and
//!   anything it does not type is a 500 with the raw error text, such as a Kubernetes
//!   validation error, which quotes the value it rejects (`Invalid value: "…"`). Such a value
//!   becomes its mask, the same mask the caller read ([`scrub_quoted`]).
//! - **The rack password**, which the rack writes into URLs (an external build's
//!   `repository`, and whatever error or build reason quotes one): whoever reads it can bypass
//!   the gateway ([`scrub_value`]).
//!
//! A value is looked for in every form it can take in an answer: as it is; inside a JSON
//! string, also as Go's `encoding/json` writes it (escaping `<`, `>` and `&`); and
//! percent-encoded as Go's `url` package writes a form value or a URL's userinfo.
//!
//! A value of fewer than [`MIN_ANYWHERE`] bytes is replaced only where it stands as a word of
//! its own (no ASCII letter or digit on either side): replaced inside words, `1` or `on` would
//! garble every message, and three bytes inside a word say nothing of which word they are.
//!
//! **Invariant:** outside the replaced occurrences the answer is kept byte for byte; at each
//! position the longest matching form wins, so a value that contains another is replaced whole.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::keys::AuditKey;

use super::{MaskError, mask_value};

/// The shortest value replaced wherever it occurs, inside words too.
pub const MIN_ANYWHERE: usize = 4;

/// What Go's `url.QueryEscape` escapes (it writes a space as `+`).
const GO_QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What Go's `url` escapes in a userinfo's password (`encodeUserPassword`).
const GO_USERINFO: &AsciiSet = &GO_QUERY
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=');

/// One form a value can take in the answer, and what replaces it.
struct Needle<'a> {
    bytes: Vec<u8>,
    replacement: &'a str,
}

/// `body` (an answer to a call the gateway restored `put_back` into) with every occurrence of a
/// restored value replaced by its mask in `app`.
///
/// # Errors
/// [`MaskError::Key`] if the audit key cannot key the mask's HMAC.
pub fn scrub_quoted(
    body: &[u8],
    app: &str,
    put_back: &[(String, String)],
    audit: &AuditKey,
) -> Result<Vec<u8>, MaskError> {
    let masks = put_back
        .iter()
        .map(|(key, value)| Ok((value.as_str(), mask_value(audit, app, key, value)?)))
        .collect::<Result<Vec<_>, MaskError>>()?;
    Ok(replace(
        body,
        masks.iter().map(|(value, mask)| (*value, mask.as_str())),
    ))
}

/// `body` with every occurrence of `value`, in each of its forms, replaced by `replacement`.
pub fn scrub_value(body: &[u8], value: &str, replacement: &str) -> Vec<u8> {
    replace(body, std::iter::once((value, replacement)))
}

/// `body` with each form of each value replaced by that value's replacement.
fn replace<'a>(body: &[u8], values: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut needles: Vec<Needle<'a>> = Vec::new();
    for (value, replacement) in values.filter(|(v, _)| !v.is_empty()) {
        for form in forms(value) {
            if !needles.iter().any(|n| n.bytes == form) {
                needles.push(Needle {
                    bytes: form,
                    replacement,
                });
            }
        }
    }
    // Longest first: at one position the whole value wins over a value it contains.
    needles.sort_by_key(|n| std::cmp::Reverse(n.bytes.len()));
    let mut by_first: [Vec<usize>; 256] = std::array::from_fn(|_| Vec::new());
    for (i, n) in needles.iter().enumerate() {
        if let Some(&b) = n.bytes.first() {
            by_first[usize::from(b)].push(i);
        }
    }
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    while let Some(&b) = body.get(at) {
        let found = by_first[usize::from(b)]
            .iter()
            .filter_map(|&i| needles.get(i))
            .find(|n| {
                body[at..].starts_with(&n.bytes)
                    && (n.bytes.len() >= MIN_ANYWHERE || stands_alone(body, at, n.bytes.len()))
            });
        match found {
            Some(n) => {
                out.extend_from_slice(n.replacement.as_bytes());
                at += n.bytes.len();
            }
            None => {
                out.push(b);
                at += 1;
            }
        }
    }
    out
}

/// The forms `value` takes in an answer, each once.
fn forms(value: &str) -> Vec<Vec<u8>> {
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(value)
        .to_owned();
    let go_json = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let query = utf8_percent_encode(value, GO_QUERY)
        .to_string()
        .replace("%20", "+");
    let userinfo = utf8_percent_encode(value, GO_USERINFO).to_string();
    let mut forms = vec![value.as_bytes().to_vec()];
    for f in [json, go_json, query, userinfo] {
        if !forms.iter().any(|known| known == f.as_bytes()) {
            forms.push(f.into_bytes());
        }
    }
    forms
}

/// Whether `body[at..at + len]` has no ASCII letter or digit right before or after it.
fn stands_alone(body: &[u8], at: usize, len: usize) -> bool {
    let word = |i: Option<usize>| {
        i.and_then(|i| body.get(i))
            .is_some_and(u8::is_ascii_alphanumeric)
    };
    !word(at.checked_sub(1)) && !word(Some(at + len))
}
