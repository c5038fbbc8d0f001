//! Request parameters read the way the rack's Go code reads them (spec §1.3, `stdapi`): the
//! `param` tag reads `r.Form` (urlencoded body of POST/PUT/PATCH first, then the query string),
//! `header` and `query` tags read only their source, and `c.Value` reads the form and falls back
//! to a same-named header. Every value a handler takes is recorded with its source.
//!
//! Invariant: parsing follows Go's `url.ParseQuery` (first duplicate wins, `;` pairs and bad
//! escapes are dropped, `+` is a space), a body is never parsed as a form unless the method and
//! content type say so, and a value is recorded only when a handler actually read it.

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
    let mut out = Vec::new();
    for pair in query.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let (Some(k), Some(v)) = (query_unescape(key), query_unescape(value)) {
            out.push((k, v));
        }
    }
    out
}

/// Go's `url.QueryUnescape`: `+` is a space and every `%` needs two hex digits.
fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = hex_digit(*bytes.get(i + 1)?)?;
                let lo = hex_digit(*bytes.get(i + 2)?)?;
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
    Some(String::from_utf8_lossy(&out).into_owned())
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

/// Go's `strconv.Quote` for the ASCII cases handlers meet; other bytes are escaped as `\x..`.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
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
