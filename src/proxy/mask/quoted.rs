//! Values the gateway restored into a call, taken back out of the rack's error answer to it.
//!
//! A `POST /apps/{app}/releases` whose posted env carried masks is forwarded with the real
//! values ([`restore_env_param`](super::restore_env_param)). A rack that refuses the release may
//! quote what it was sent: its error is `http.Error` text or `{"error":"…"}` (spec §1.5), and
//! anything it does not type is a 500 with the raw error text, such as a Kubernetes validation
//! error, which quotes the value it rejects (`Invalid value: "…"`). Such an answer would hand a
//! caller who may not read a value the very value it was shown masked. So every form in which a
//! restored value can stand in that text (as sent, JSON-escaped, and JSON-escaped the way Go's
//! `encoding/json` also escapes `<`, `>` and `&`) is replaced by the value's mask, the same mask
//! the caller read.
//!
//! A value of fewer than [`MIN_ANYWHERE`] bytes is replaced only where it stands as a word of
//! its own (no ASCII letter or digit on either side): replaced inside words, `1` or `on` would
//! garble every message, and three bytes inside a word say nothing of which word they are.
//!
//! **Invariant:** outside the replaced occurrences the answer is kept byte for byte; at each
//! position the longest matching form wins, so a value that contains another is replaced whole.

use crate::keys::AuditKey;

use super::{MaskError, mask_value};

/// The shortest value replaced wherever it occurs, inside words too.
pub const MIN_ANYWHERE: usize = 4;

/// One form a restored value can take in the answer, and the mask that replaces it.
struct Needle {
    bytes: Vec<u8>,
    mask: String,
}

/// `body` (an error answer to a call the gateway restored `put_back` into) with every
/// occurrence of a restored value replaced by its mask in `app`.
///
/// # Errors
/// [`MaskError::Key`] if the audit key cannot key the mask's HMAC.
pub fn scrub_quoted(
    body: &[u8],
    app: &str,
    put_back: &[(String, String)],
    audit: &AuditKey,
) -> Result<Vec<u8>, MaskError> {
    let mut needles = Vec::new();
    for (key, value) in put_back.iter().filter(|(_, v)| !v.is_empty()) {
        let mask = mask_value(audit, app, key, value)?;
        for form in forms(value) {
            if !needles.iter().any(|n: &Needle| n.bytes == form) {
                needles.push(Needle {
                    bytes: form,
                    mask: mask.clone(),
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
            .map(|&i| &needles[i])
            .find(|n| {
                body[at..].starts_with(&n.bytes)
                    && (n.bytes.len() >= MIN_ANYWHERE || stands_alone(body, at, n.bytes.len()))
            });
        match found {
            Some(n) => {
                out.extend_from_slice(n.mask.as_bytes());
                at += n.bytes.len();
            }
            None => {
                out.push(b);
                at += 1;
            }
        }
    }
    Ok(out)
}

/// The forms `value` takes in an answer: as it is, inside a JSON string, and inside a JSON
/// string written by Go's `encoding/json` (which also escapes `<`, `>` and `&`).
fn forms(value: &str) -> Vec<Vec<u8>> {
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(value)
        .to_owned();
    let go = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let mut forms = vec![value.as_bytes().to_vec()];
    for f in [json, go] {
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
