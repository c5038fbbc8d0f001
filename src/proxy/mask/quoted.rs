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

/// A value looked for in answers and in a stream's frames (a WebSocket's output, from the
/// rack), its forms made once: most answers and frames hold none, and then nothing is copied.
#[derive(Clone)]
pub struct Scrubber {
    value: String,
    /// Every form of the value, longest first (see [`needles`]).
    needles: Vec<Vec<u8>>,
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
            needles(value)
        };
        Scrubber {
            value: value.to_owned(),
            finders: needles
                .iter()
                .map(|n| memchr::memmem::Finder::new(n).into_owned())
                .collect(),
            needles,
        }
    }

    /// `bytes` with every occurrence of the value, in each of its forms, replaced by
    /// `replacement`, or `None` when no form of it is there.
    pub fn scrub(&self, bytes: &[u8], replacement: &str) -> Option<Vec<u8>> {
        self.holds(bytes)
            .then(|| scan(bytes, &self.needles, replacement.as_bytes(), None, false).0)
    }

    /// Whether any form of the value is in `bytes`: a search, no copy.
    pub fn holds(&self, bytes: &[u8]) -> bool {
        self.finders.iter().any(|f| f.find(bytes).is_some())
    }

    /// Whether a tail of `bytes` could begin a form of the value (is a proper prefix of one).
    fn has_open_tail(&self, bytes: &[u8]) -> bool {
        let longest = self.needles.first().map_or(0, Vec::len);
        (bytes.len().saturating_sub(longest.saturating_sub(1))..bytes.len()).any(|at| {
            bytes
                .get(at..)
                .is_some_and(|rest| begins_a_form(&self.needles, rest))
        })
    }
}

/// The value taken out of a stream that arrives in pieces cut anywhere (a WebSocket's text
/// messages, cut wherever the rack's reads and frames cut them): a piece's tail that could
/// begin a form of the value is held back until the next piece, or the end, shows whether it
/// does.
///
/// **Invariant:** what [`StreamScrub::push`] and [`StreamScrub::finish`] give out, in order
/// and concatenated, is what [`Scrubber::scrub`] makes of the whole stream, however it was cut;
/// what is held is never longer than the longest form less one byte (or, for a value too
/// short to be replaced inside words, a whole form waiting for the byte after it).
#[derive(Debug)]
pub struct StreamScrub {
    scrubber: std::sync::Arc<Scrubber>,
    replacement: &'static str,
    /// Bytes received and not given out yet.
    held: Vec<u8>,
    /// How many bytes received were given out (or replaced): where the held bytes start.
    used: u64,
    /// The last byte received that was given out (or replaced): a short value's word
    /// boundary looks at it.
    before: Option<u8>,
}

impl StreamScrub {
    pub fn new(scrubber: std::sync::Arc<Scrubber>, replacement: &'static str) -> StreamScrub {
        StreamScrub {
            scrubber,
            replacement,
            held: Vec::new(),
            used: 0,
            before: None,
        }
    }

    /// A new stream that takes out the same value: for a stream of its own beside this one.
    pub fn fresh(&self) -> StreamScrub {
        StreamScrub::new(std::sync::Arc::clone(&self.scrubber), self.replacement)
    }

    /// The scrubber whose value this takes out.
    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    /// What of the stream can go out now that `piece` follows what was held: `piece` itself,
    /// uncopied, when it holds no part of the value and nothing was held.
    pub fn push(&mut self, piece: bytes::Bytes) -> bytes::Bytes {
        if self.held.is_empty()
            && !self.scrubber.holds(&piece)
            && !self.scrubber.has_open_tail(&piece)
        {
            self.before = piece.last().copied().or(self.before);
            self.used += piece.len() as u64;
            return piece;
        }
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(&piece);
        self.give_out(buf, true)
    }

    /// Everything still held, as the end of the stream: the value taken out of it.
    pub fn finish(&mut self) -> bytes::Bytes {
        let buf = std::mem::take(&mut self.held);
        self.give_out(buf, false)
    }

    /// Whether bytes are held back.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Where in the stream the held bytes start: when it moves, the tail held is another one
    /// (a wait for it starts over).
    pub fn held_from(&self) -> u64 {
        self.used
    }

    fn give_out(&mut self, buf: Vec<u8>, more: bool) -> bytes::Bytes {
        let (out, used) = scan(
            &buf,
            &self.scrubber.needles,
            self.replacement.as_bytes(),
            self.before,
            more,
        );
        if let Some(last) = used.checked_sub(1).and_then(|i| buf.get(i)) {
            self.before = Some(*last);
        }
        self.used += used as u64;
        self.held = buf.get(used..).unwrap_or_default().to_vec();
        out.into()
    }
}

/// The forms of `value` (see [`forms`]), longest first: at one position the whole form wins
/// over a shorter one it starts with.
fn needles(value: &str) -> Vec<Vec<u8>> {
    let mut needles = forms(value);
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    needles
}

/// Whether `rest` is a proper prefix of one of `needles`: more bytes could complete a form.
fn begins_a_form(needles: &[Vec<u8>], rest: &[u8]) -> bool {
    needles
        .iter()
        .any(|n| n.len() > rest.len() && n.starts_with(rest))
}

/// The one scan [`Scrubber`] and [`StreamScrub`] share: `body` (which follows
/// the byte `before` in its stream, if any) with each form in `needles` (longest first)
/// replaced by `replacement`, and how many bytes of `body` that covers. With `more` (more of
/// the stream may follow), the scan stops where more bytes could change what it finds: at a
/// tail that begins a form, or at a short value's form whose next byte decides whether it
/// stands alone; without, it covers all of `body`.
fn scan(
    body: &[u8],
    needles: &[Vec<u8>],
    replacement: &[u8],
    before: Option<u8>,
    more: bool,
) -> (Vec<u8>, usize) {
    let longest = needles.first().map_or(0, Vec::len);
    let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    // A form can start (or begin) only where one's first byte stands: the bytes between are
    // copied without comparing any form, so a large piece costs one pass.
    let mut starts = [false; 256];
    for first in needles.iter().filter_map(|n| n.first()) {
        if let Some(slot) = starts.get_mut(usize::from(*first)) {
            *slot = true;
        }
    }
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    'scan: loop {
        let rest = body.get(at..).unwrap_or_default();
        let skip = rest
            .iter()
            .position(|&b| starts.get(usize::from(b)).copied().unwrap_or(true))
            .unwrap_or(rest.len());
        out.extend_from_slice(rest.get(..skip).unwrap_or_default());
        at += skip;
        let Some((&b, _)) = body.get(at..).and_then(<[u8]>::split_first) else {
            break;
        };
        let rest = body.get(at..).unwrap_or_default();
        if more && rest.len() < longest && begins_a_form(needles, rest) {
            break;
        }
        let prev = match at.checked_sub(1) {
            Some(i) => body.get(i).copied(),
            None => before,
        };
        for n in needles {
            if !rest.starts_with(n) {
                continue;
            }
            // A short value is replaced only where it stands as a word of its own.
            let alone = n.len() >= MIN_ANYWHERE
                || match body.get(at + n.len()) {
                    Some(&next) => !word(prev) && !word(Some(next)),
                    None if more => break 'scan,
                    None => !word(prev),
                };
            if alone {
                out.extend_from_slice(replacement);
                at += n.len();
                continue 'scan;
            }
        }
        out.push(b);
        at += 1;
    }
    (out, at)
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
