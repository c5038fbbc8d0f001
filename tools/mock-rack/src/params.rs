//! Request parameters read the way the rack's Go code reads them (spec §1.3, `stdapi`): the
//! `param` tag reads `r.Form` (urlencoded body of POST/PUT/PATCH first, then the query string),
//! `header` and `query` tags read only their source, and `c.Value` reads the form and falls back
//! to a same-named header. Every value a handler takes is recorded with its source.
//!
//! Invariant: parsing follows Go's `url.ParseQuery` (first duplicate wins, `;` pairs and bad
//! escapes are dropped, `+` is a space, and the error Go returns beside the pairs is kept for the
//! callers that check it), a body is never parsed as a form unless the method and content type
//! say so, and a value is recorded only when a handler actually read it.

use http::{HeaderMap, Method};

use crate::record::{ParamSource, UsedParam};

/// The parameters of one request, and the ones its handler used.
pub(crate) struct Params<'r> {
    form: Vec<(String, String)>,
    query: Vec<(String, String)>,
    headers: &'r HeaderMap,
    used: Vec<UsedParam>,
}

// === impl Params ===

impl<'r> Params<'r> {
    /// Parses the query string, and the body when Go's `ParseForm` would: a POST, PUT or PATCH
    /// whose media type is `application/x-www-form-urlencoded`. GET and DELETE form bodies are
    /// ignored, as the rack ignores them (spec §1.3).
    pub(crate) fn new(
        method: &Method,
        raw_query: Option<&str>,
        headers: &'r HeaderMap,
        body: &[u8],
    ) -> Params<'r> {
        let parses_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        let form = if parses_body && is_urlencoded(headers) {
            parse_query(&String::from_utf8_lossy(body))
        } else {
            Vec::new()
        };
        Params {
            form,
            query: raw_query.map(parse_query).unwrap_or_default(),
            headers,
            used: Vec::new(),
        }
    }

    /// A `param:"name"` option (`stdapi.fetchForm`): the first value of `r.Form[name]`, even
    /// when empty; body values precede query values.
    pub(crate) fn form(&mut self, name: &str) -> Option<String> {
        let (value, source) = self.form_value(name)?;
        self.note(name, &value, source);
        Some(value)
    }

    /// `c.Value(name)`: the form value if non-empty, else the same-named header if non-empty,
    /// else the empty string.
    pub(crate) fn value(&mut self, name: &str) -> String {
        if let Some((value, source)) = self.form_value(name).filter(|(v, _)| !v.is_empty()) {
            self.note(name, &value, source);
            return value;
        }
        match self.header_value(name) {
            Some(value) if !value.is_empty() => {
                self.note(name, &value, ParamSource::Header);
                value
            }
            _ => String::new(),
        }
    }

    /// A `header:"Name"` option (`stdapi.fetchHeader`): the first value, even when empty.
    pub(crate) fn header(&mut self, name: &str) -> Option<String> {
        let value = self.header_value(name)?;
        self.note(name, &value, ParamSource::Header);
        Some(value)
    }

    /// A `header:"Name" default:"…"` option (`stdapi.fetchHeader` with a default tag): the
    /// first value, or `default` when that value is empty (Go's `coalesce`); absent stays
    /// absent. The value recorded is the one the handler got.
    pub(crate) fn header_or(&mut self, name: &str, default: &str) -> Option<String> {
        let raw = self.header_value(name)?;
        let value = if raw.is_empty() {
            default.to_owned()
        } else {
            raw
        };
        self.note(name, &value, ParamSource::Header);
        Some(value)
    }

    /// A `query:"name"` option (`stdapi.fetchQuery`): the first query value, even when empty.
    pub(crate) fn query(&mut self, name: &str) -> Option<String> {
        let value = first(&self.query, name)?.to_owned();
        self.note(name, &value, ParamSource::Query);
        Some(value)
    }

    /// The values the handler used, in the order it first read them.
    pub(crate) fn into_used(self) -> Vec<UsedParam> {
        self.used
    }

    fn form_value(&self, name: &str) -> Option<(String, ParamSource)> {
        if let Some(v) = first(&self.form, name) {
            return Some((v.to_owned(), ParamSource::Form));
        }
        first(&self.query, name).map(|v| (v.to_owned(), ParamSource::Query))
    }

    fn header_value(&self, name: &str) -> Option<String> {
        let value = self.headers.get(name)?;
        Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
    }

    fn note(&mut self, name: &str, value: &str, source: ParamSource) {
        let seen = self
            .used
            .iter()
            .any(|u| u.name == name && u.source == source);
        if !seen {
            self.used.push(UsedParam {
                name: name.to_owned(),
                value: value.to_owned(),
                source,
            });
        }
    }
}

/// Go's `strconv.Atoi`, with its error text (handlers answer 500 with it, spec §1.5).
pub(crate) fn atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", go_quote(s)))
}

/// Go's `url.ParseQuery`: pairs in order, keys with `;` or undecodable escapes dropped.
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    parse_query_checked(query).0
}

/// Go's `url.ParseQuery` with the error it returns beside the pairs it kept: the last
/// `invalid semicolon separator in query` if any pair had a `;`, else the first
/// `invalid URL escape "…"`. `stdapi` checks it for `map[string]string` options, where
/// `ParseForm`'s own error on the outer form is ignored.
pub(crate) fn parse_query_checked(query: &str) -> (Vec<(String, String)>, Option<String>) {
    let mut out = Vec::new();
    let mut err: Option<String> = None;
    for pair in query.split('&') {
        if pair.contains(';') {
            err = Some("invalid semicolon separator in query".to_owned());
            continue;
        }
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match query_unescape(key).and_then(|k| Ok((k, query_unescape(value)?))) {
            Ok(kv) => out.push(kv),
            Err(e) => {
                err.get_or_insert(e);
            }
        }
    }
    (out, err)
}

/// Go's `url.QueryUnescape`: `+` is a space and every `%` needs two hex digits; the error is
/// Go's `EscapeError` text, quoting at most the 3 bytes from the bad `%`.
fn query_unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = |at: usize| bytes.get(at).copied().and_then(hex_digit);
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    let bad = bytes.get(i..(i + 3).min(bytes.len())).unwrap_or_default();
                    return Err(format!("invalid URL escape {}", go_quote_bytes(bad)));
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn is_urlencoded(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(http::header::CONTENT_TYPE) else {
        return false;
    };
    let media = ct
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default();
    media
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// Go's `strconv.Quote` of a string.
fn go_quote(s: &str) -> String {
    go_quote_bytes(s.as_bytes())
}

/// Go's `strconv.Quote` for the cases handlers meet: bytes that are not UTF-8 as `\x..`,
/// control characters escaped, other characters as they are.
fn go_quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{b}' => out.push_str("\\v"),
                '\u{c}' => out.push_str("\\f"),
                c if u32::from(c) < 0x80 && c.is_control() => {
                    out.push_str(&format!("\\x{:02x}", u32::from(c)));
                }
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// Go's `time.ParseDuration`, in nanoseconds, with its error texts (a `*time.Duration` option
/// such as the log streams' `Since`; the handler's error is rendered like any other, spec §1.5).
pub(crate) fn parse_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", time_quote(orig.as_bytes()));
    let mut s = orig.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let (part, rest) = duration_part(s, orig).map_err(|e| e.unwrap_or_else(invalid))?;
        s = rest;
        total = total.checked_add(part).ok_or_else(invalid)?;
        if total > 1 << 63 {
            return Err(invalid());
        }
    }
    if neg {
        // `-Duration(d)`: 1<<63 wraps to the smallest i64, as in Go.
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// One `[0-9]*(\.[0-9]*)?unit` of a duration: its nanoseconds and the rest. `Err(None)` is
/// Go's plain `invalid duration`; `Err(Some(text))` a more specific error.
fn duration_part<'s>(s: &'s [u8], orig: &str) -> Result<(u64, &'s [u8]), Option<String>> {
    if !s.first().is_some_and(|&c| c == b'.' || c.is_ascii_digit()) {
        return Err(None);
    }
    let (whole, rest) = leading_int(s).ok_or(None)?;
    let pre = rest.len() != s.len();
    let (mut frac, mut scale, mut s, mut post) = (0, 1.0, rest, false);
    if let Some(after_dot) = s.strip_prefix(b".") {
        (frac, scale, s) = leading_fraction(after_dot);
        post = s.len() != after_dot.len();
    }
    if !pre && !post {
        return Err(None);
    }
    let unit_len = s
        .iter()
        .position(|&c| c == b'.' || c.is_ascii_digit())
        .unwrap_or(s.len());
    let (unit, rest) = s.split_at(unit_len);
    if unit.is_empty() {
        return Err(Some(format!(
            "time: missing unit in duration {}",
            time_quote(orig.as_bytes())
        )));
    }
    let Some(unit_ns) = duration_unit(unit) else {
        return Err(Some(format!(
            "time: unknown unit {} in duration {}",
            time_quote(unit),
            time_quote(orig.as_bytes())
        )));
    };
    if whole > (1 << 63) / unit_ns {
        return Err(None);
    }
    let mut v = whole * unit_ns;
    if frac > 0 {
        // Go: `v += uint64(float64(f) * (float64(unit) / scale))`, truncating.
        let add = (frac as f64 * (unit_ns as f64 / scale)) as u64;
        v = v.saturating_add(add);
        if v > 1 << 63 {
            return Err(None);
        }
    }
    Ok((v, rest))
}

/// Go's `time.leadingInt`: the leading digits, `None` past 1<<63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (head, rest) = s.split_at(digits);
    let mut x: u64 = 0;
    for &c in head {
        if x > (1 << 63) / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > 1 << 63 {
            return None;
        }
    }
    Some((x, rest))
}

/// Go's `time.leadingFraction`: the digits after the dot as an integer and its scale; digits
/// past what fits are consumed and ignored.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (head, rest) = s.split_at(digits);
    let (mut x, mut scale, mut overflow) = (0u64, 1.0f64, false);
    for &c in head {
        if overflow {
            continue;
        }
        if x > ((1 << 63) - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > 1 << 63 {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, rest)
}

/// Go's `time.unitMap`, in nanoseconds.
fn duration_unit(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => 1,
        // `us`, `µs` (U+00B5) and `μs` (U+03BC).
        b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
        b"ms" => 1_000_000,
        b"s" => 1_000_000_000,
        b"m" => 60_000_000_000,
        b"h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// The `time` package's own `quote`: `"` and `\` escaped, and every byte of a character that
/// is not printable ASCII as `\x..`.
fn time_quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b' '..=0x7f => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[test]
    fn go_query_parsing_keeps_order_and_drops_bad_pairs() {
        assert_eq!(
            parse_query("a=1&b=x+y&a=2&c=%zz&d;e=3&&f&g=%41"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("a".into(), "2".into()),
                ("f".into(), "".into()),
                ("g".into(), "A".into()),
            ]
        );
    }

    #[test]
    fn the_first_duplicate_wins() {
        let h = headers(&[FORM]);
        let mut p = Params::new(
            &Method::POST,
            Some("name=q1&name=q2"),
            &h,
            b"name=f1&name=f2",
        );
        assert_eq!(p.form("name").as_deref(), Some("f1"));
        let mut p = Params::new(&Method::POST, Some("name=q1&name=q2"), &h, b"");
        assert_eq!(p.form("name").as_deref(), Some("q1"));
    }

    #[test]
    fn value_prefers_form_then_query_then_header() {
        let h = headers(&[FORM, ("name", "h")]);
        let mut p = Params::new(&Method::POST, Some("name=q"), &h, b"name=f");
        assert_eq!(p.value("name"), "f");
        let mut p = Params::new(&Method::POST, Some("name=q"), &h, b"");
        assert_eq!(p.value("name"), "q");
        let mut p = Params::new(&Method::POST, None, &h, b"");
        assert_eq!(p.value("name"), "h");
        let used = p.into_used();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].source, ParamSource::Header);
    }

    #[test]
    fn an_empty_form_value_falls_back_to_the_header_in_value_only() {
        let h = headers(&[FORM, ("name", "h")]);
        let mut p = Params::new(&Method::POST, None, &h, b"name=");
        assert_eq!(p.value("name"), "h");
        assert_eq!(p.form("name").as_deref(), Some(""));
    }

    #[test]
    fn get_and_delete_bodies_and_other_content_types_are_not_forms() {
        let h = headers(&[FORM]);
        let mut p = Params::new(&Method::GET, None, &h, b"generated=true");
        assert_eq!(p.form("generated"), None);
        let mut p = Params::new(&Method::DELETE, None, &h, b"ack_by=x");
        assert_eq!(p.form("ack_by"), None);
        let octet = headers(&[("content-type", "application/octet-stream")]);
        let mut p = Params::new(&Method::POST, None, &octet, b"a=b");
        assert_eq!(p.form("a"), None);
        assert!(p.into_used().is_empty());
    }

    #[test]
    fn parse_query_reports_the_error_go_returns_beside_the_pairs() {
        let ok = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            parse_query_checked("a=1&b=x+y&&f"),
            (ok(&[("a", "1"), ("b", "x y"), ("f", "")]), None)
        );
        assert_eq!(
            parse_query_checked("a=%zz&b=2"),
            (
                ok(&[("b", "2")]),
                Some("invalid URL escape \"%zz\"".to_owned())
            )
        );
        // The first escape error is kept; only the 3 bytes from the `%` are quoted.
        assert_eq!(
            parse_query_checked("%4=1&b=%zzzz").1.as_deref(),
            Some("invalid URL escape \"%4\"")
        );
        assert_eq!(
            parse_query_checked("b=%zzzz").1.as_deref(),
            Some("invalid URL escape \"%zz\"")
        );
        // A `;` pair's error replaces an earlier escape error, and is not replaced by a later.
        assert_eq!(
            parse_query_checked("a=%zz&b=1;c=2&d=%q").1.as_deref(),
            Some("invalid semicolon separator in query")
        );
        // Bytes that are not UTF-8 are quoted as `\x..`.
        assert_eq!(
            parse_query_checked("a=%\u{20ac}").1.as_deref(),
            Some("invalid URL escape \"%\\xe2\\x82\"")
        );
    }

    #[test]
    fn parse_duration_matches_go() {
        let s = 1_000_000_000;
        for (input, ns) in [
            ("0", 0),
            ("-0", 0),
            ("5s", 5 * s),
            ("2m", 120 * s),
            ("2m0s", 120 * s),
            ("1h30m", 5400 * s),
            ("+1.5h", 5400 * s),
            ("-1.5h", -5400 * s),
            (".5s", s / 2),
            ("1.s", s),
            ("300ms", 300_000_000),
            ("1us", 1_000),
            ("1\u{b5}s", 1_000),
            ("1\u{3bc}s", 1_000),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("0.100000000000000000000h", 360 * s),
        ] {
            assert_eq!(parse_duration(input), Ok(ns), "{input}");
        }
        for (input, err) in [
            ("", "time: invalid duration \"\""),
            ("-", "time: invalid duration \"-\""),
            ("s", "time: invalid duration \"s\""),
            (".s", "time: invalid duration \".s\""),
            ("5", "time: missing unit in duration \"5\""),
            ("1h5", "time: missing unit in duration \"1h5\""),
            (
                "5 minutes",
                "time: unknown unit \" minutes\" in duration \"5 minutes\"",
            ),
            ("3d", "time: unknown unit \"d\" in duration \"3d\""),
            (
                "1\u{e9}",
                "time: unknown unit \"\\xc3\\xa9\" in duration \"1\\xc3\\xa9\"",
            ),
            (
                "9223372036854775808ns",
                "time: invalid duration \"9223372036854775808ns\"",
            ),
            ("3000000h", "time: invalid duration \"3000000h\""),
        ] {
            assert_eq!(parse_duration(input), Err(err.to_owned()), "{input}");
        }
    }

    #[test]
    fn a_header_default_fills_an_empty_value_only() {
        let h = headers(&[("since", ""), ("tail", "")]);
        let mut p = Params::new(&Method::GET, None, &h, b"");
        assert_eq!(p.header_or("Since", "2m").as_deref(), Some("2m"));
        assert_eq!(p.header_or("Follow", "true"), None);
        assert_eq!(p.header("Tail").as_deref(), Some(""));
        let used = p.into_used();
        assert_eq!(
            (used[0].name.as_str(), used[0].value.as_str()),
            ("Since", "2m")
        );
    }

    #[test]
    fn atoi_matches_go_error_text() {
        assert_eq!(atoi("+12"), Ok(12));
        assert_eq!(atoi("-3"), Ok(-3));
        assert_eq!(
            atoi("abc"),
            Err("strconv.Atoi: parsing \"abc\": invalid syntax".to_owned())
        );
        assert_eq!(
            atoi("99999999999999999999"),
            Err("strconv.Atoi: parsing \"99999999999999999999\": value out of range".to_owned())
        );
    }
}
