//! A value no caller may see, taken out of a rack answer that quotes it in any form: the rack
//! password, which the rack writes into URLs (an external build's `repository`, and whatever
//! error or build reason quotes such a URL). Whoever reads it can bypass the gateway.
//!
//! The value is looked for in every form it can take in an answer: as it is, or percent-encoded
//! as Go's `url` package writes a form value or a URL's userinfo; each of those as it is, inside
//! a JSON string (also as Go's `encoding/json` writes it, escaping `<`, `>` and `&`), or inside a
//! JSON string twice (a quoted error wrapped in `{"error":…}`).
//!
//! A value of fewer than [`MIN_ANYWHERE`] bytes is replaced only where it stands as a word of
//! its own (no ASCII letter or digit on either side): replaced inside words, it would garble
//! every message, and three bytes inside a word say nothing of which word they are.
//!
//! **Invariant:** outside the replaced occurrences the answer is kept byte for byte; at each
//! position the longest matching form wins.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

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

/// `body` with every occurrence of `value`, in each of its forms, replaced by `replacement`.
pub fn scrub_value(body: &[u8], value: &str, replacement: &str) -> Vec<u8> {
    if value.is_empty() {
        return body.to_vec();
    }
    let mut needles = forms(value);
    // Longest first: at one position the whole form wins over a shorter one it starts with.
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    while let Some((&b, rest)) = body.get(at..).and_then(<[u8]>::split_first) {
        let found = needles.iter().find(|n| {
            n.first() == Some(&b)
                && rest.starts_with(n.get(1..).unwrap_or_default())
                && (n.len() >= MIN_ANYWHERE || stands_alone(body, at, n.len()))
        });
        match found {
            Some(n) => {
                out.extend_from_slice(replacement.as_bytes());
                at += n.len();
            }
            None => {
                out.push(b);
                at += 1;
            }
        }
    }
    out
}

/// A value looked for in a stream's frames (a WebSocket's output, from the rack), its forms
/// made once: most frames hold none, and then nothing is copied.
#[derive(Clone)]
pub struct Scrubber {
    value: String,
    /// A searcher per form, built once.
    finders: Vec<memchr::memmem::Finder<'static>>,
}

impl PartialEq for Scrubber {
    fn eq(&self, other: &Scrubber) -> bool {
        self.value == other.value
    }
}

impl Eq for Scrubber {}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber(..)")
    }
}

impl Scrubber {
    pub fn new(value: &str) -> Scrubber {
        let needles = if value.is_empty() {
            Vec::new()
        } else {
            forms(value)
        };
        Scrubber {
            value: value.to_owned(),
            finders: needles
                .iter()
                .map(|n| memchr::memmem::Finder::new(n).into_owned())
                .collect(),
        }
    }

    /// `bytes` with every form of the value replaced by `replacement` (as [`scrub_value`]), or
    /// `None` when no form of it is there.
    pub fn scrub(&self, bytes: &[u8], replacement: &str) -> Option<Vec<u8>> {
        self.holds(bytes)
            .then(|| scrub_value(bytes, &self.value, replacement))
    }

    /// Whether any form of the value is in `bytes`: a search, no copy.
    pub fn holds(&self, bytes: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(bytes).is_some())
    }
}

/// The forms `value` takes in an answer, each once.
fn forms(value: &str) -> Vec<Vec<u8>> {
    let encoded = [
        value.to_owned(),
        utf8_percent_encode(value, GO_QUERY)
            .to_string()
            .replace("%20", "+"),
        utf8_percent_encode(value, GO_USERINFO).to_string(),
    ];
    let mut forms: Vec<Vec<u8>> = Vec::new();
    for e in encoded {
        let once = json_inner(&e);
        let twice = json_inner(&once);
        for f in [
            go_json(&twice),
            json_inner(&go_json(&once)),
            twice,
            go_json(&once),
            once,
            e,
        ] {
            if !forms.iter().any(|known| known == f.as_bytes()) {
                forms.push(f.into_bytes());
            }
        }
    }
    forms
}

/// `s` as it stands inside a JSON string.
fn json_inner(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(s)
        .to_owned()
}

/// A JSON string's inside as Go's `encoding/json` writes it: `<`, `>` and `&` escaped too.
fn go_json(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Whether `body[at..at + len]` has no ASCII letter or digit right before or after it.
fn stands_alone(body: &[u8], at: usize, len: usize) -> bool {
    let word = |i: Option<usize>| {
        i.and_then(|i| body.get(i))
            .is_some_and(u8::is_ascii_alphanumeric)
    };
    !word(at.checked_sub(1)) && !word(Some(at + len))
}
