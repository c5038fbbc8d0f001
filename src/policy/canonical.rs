//! Canonical requests: the path, the query, the form body and the option headers of a request
//! are decoded once, checked against a strict grammar and the route's allow-list, and re-encoded
//! in one canonical form, before anything is authorized.
//!
//! Paths: the raw path (before `?`) is split on `/`, each segment is percent-decoded exactly
//! once, and the request is refused with a [`PathError`] naming the segment when a segment is
//! empty, `.` or `..`, encodes `/` (`%2F`) or `\` (`%5C`), holds a backslash, a control
//! character or NUL, decodes to a `%` (a double encoding), uses a character outside RFC 3986's
//! `pchar`, or is too long. Only the registry proxy (`/v2/…`) and the HTTP proxy
//! (`/custom/http/proxy/…`) may end in `/`. Wildcard tails have their own grammars ([`Tail`],
//! and `tests/expectations/TAIL_GRAMMAR.md`). The `?` of `GET /apps?` is the query marker and is
//! not part of the path.
//!
//! Parameters: Go's rack reads a form body first, then the query string, then a header of the
//! same name (spec §1.3), so a parameter can be smuggled through any of the three. Here a form
//! body, a query string and option headers are each parsed with Go's rules made strict (no `;`,
//! no bad escapes, no empty pairs, no bare keys), and the request is refused with a
//! [`ParamError`] for a duplicate key, a key outside the route's allow-list, a query key on a
//! non-GET request that the route does not list as a query key (the rack would read it as a form
//! value), a header named like one of the route's form or query keys, a multipart body, or a
//! content type the route does not take.
//!
//! **Invariant:** what is authorized is byte-for-byte what is forwarded. [`CanonicalPath`] is the
//! path to forward (every byte in it is a legal unescaped path byte, so it needs no re-encoding),
//! and [`CanonicalParams`] holds the query string and the form body re-encoded exactly as Go's
//! `url.Values.Encode` writes them (keys sorted), which is what the convox CLI sends, so the CLI's
//! requests pass unchanged. Raw bodies are streamed as received and never parsed.

use std::fmt;

use super::routes::{Body, Key, KeyClass, RouteRule};

/// The longest decoded path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// The longest decoded path segment accepted, in bytes (a file-name limit).
pub const MAX_SEGMENT_BYTES: usize = 255;
/// The longest raw query string accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;
/// The largest form body accepted, in bytes; the proxy reads at most this much before checking.
/// A release `env` is the whole environment, so this is generous.
pub const MAX_FORM_BYTES: usize = 1024 * 1024;

/// Path prefixes (as decoded segments) under which a trailing `/` is meaningful.
const TRAILING_SLASH_PREFIXES: &[&[&str]] = &[&["v2"], &["custom", "http", "proxy"]];

/// A path that passed [`canonicalize_path`]: decoded once, `/`-separated, starting with `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalPath {
    text: String,
}

/// Why a path was refused. `index` counts segments from 0, after the leading `/`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path is {len} bytes long; the limit is {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("path segment {index} is {len} bytes long; the limit is {limit}")]
    SegmentTooLong {
        index: usize,
        len: usize,
        limit: usize,
    },
    #[error("path segment {index} is empty")]
    EmptySegment { index: usize },
    #[error("path segment {index} is '.' or '..'")]
    DotSegment { index: usize },
    #[error("path segment {index} encodes '/' (%2F)")]
    EncodedSlash { index: usize },
    #[error("path segment {index} holds a backslash (encoded: {encoded})")]
    Backslash { index: usize, encoded: bool },
    #[error("path segment {index} holds control character 0x{byte:02x}")]
    ControlChar { index: usize, byte: u8 },
    #[error("path segment {index} has a malformed percent-escape")]
    BadEscape { index: usize },
    #[error("path segment {index} decodes to '%': a double encoding")]
    DoubleEncoded { index: usize },
    #[error("path segment {index} holds character 0x{byte:02x}, outside the path grammar")]
    ForbiddenChar { index: usize, byte: u8 },
}

/// The grammar of a wildcard tail. Each is documented on its variant and in
/// `tests/expectations/TAIL_GRAMMAR.md`; segments have already passed [`canonicalize_path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Object keys (`/apps/{app}/objects/{*key}`): 1 to 16 segments of `[A-Za-z0-9._-]+`,
    /// at most 255 bytes in all. The CLI sends `tmp/<30 hex>.tgz`.
    ObjectKey,
    /// Registry servers (`/registries/{*server}`): `host[:port]` then 0 to 7 path segments of
    /// `[A-Za-z0-9._-]+`; a host is dot-separated labels of `[A-Za-z0-9-]+`, a port 1 to 5 digits.
    RegistryServer,
    /// The Docker Registry HTTP API v2 (`/v2/{*path}`): empty (the `/v2/` base), `_catalog`,
    /// or `<name>/tags/list`, `<name>/manifests/<reference>`, `<name>/blobs/<digest>`,
    /// `<name>/blobs/uploads/` and `<name>/blobs/uploads/<uuid>`. A name is 1 to 4 components of
    /// `[a-z0-9]` runs joined by single `.`, `_` or `-`; a reference is a tag
    /// (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest (`<algorithm>:<32 to 128 hex>`); an upload
    /// id is `[A-Za-z0-9_.=-]{1,128}`.
    RegistryApi,
    /// A path on an in-cluster service (`/custom/http/proxy/{*path}`): 0 to 32 segments of the
    /// general path grammar, optionally ending in `/`.
    HttpPath,
}

/// Why a wildcard tail was refused: the grammar, the tail segment (from 0) and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tail segment {index} does not fit the {} grammar: {what}", tail.as_str())]
pub struct TailError {
    pub tail: Tail,
    pub index: usize,
    pub what: &'static str,
}

/// What the proxy knows of a request's parameters, as plain values.
#[derive(Clone, Copy, Debug)]
pub struct RequestParams<'a> {
    /// The request method, e.g. `POST`.
    pub method: &'a str,
    /// The `Content-Type` header, if any (only one is allowed; the proxy refuses more).
    pub content_type: Option<&'a str>,
    /// The raw query: `None` when the target has no `?`, `Some("")` for `GET /apps?`.
    pub query: Option<&'a str>,
    /// The body, read or not.
    pub body: RequestBody<'a>,
    /// Every request header, name and raw value, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// A request body as the proxy has it.
#[derive(Clone, Copy, Debug)]
pub enum RequestBody<'a> {
    /// No body (`Content-Length: 0` or none, and not chunked).
    Empty,
    /// The whole body, read because its content type is a form ([`reads_body`]).
    Buffered(&'a [u8]),
    /// A non-empty body that was not read: it will be streamed.
    Streaming,
}

/// Where a parameter was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Form,
    Query,
    Header,
}

/// One canonical parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub part: Part,
    /// The allow-list spelling for form, query and header keys of listed routes; the sent key
    /// for the opaque query of a proxy route.
    pub key: String,
    pub value: String,
    pub class: KeyClass,
}

/// The body to forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardBody {
    Empty,
    /// The canonical form encoding; forward exactly these bytes.
    Form(Vec<u8>),
    /// Stream the received body unchanged.
    Stream,
}

/// The parameters of a request, canonical: what is authorized and what is forwarded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanonicalParams {
    params: Vec<Param>,
    query: Option<String>,
    body: ForwardBody,
    content_type: Option<String>,
}

/// Why a request's parameters were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("{part} key {key:?} appears more than once")]
    DuplicateKey { part: Part, key: String },
    #[error("{part} key {key:?} is not one this route takes")]
    UnknownKey { part: Part, key: String },
    #[error("query key {key:?} on a {method} request: the rack would read it as a form value")]
    QueryOnNonGet { method: String, key: String },
    #[error("header {header:?} would be read as the parameter of the same name")]
    HeaderShadowsParam { header: String },
    #[error("multipart bodies are refused")]
    Multipart,
    #[error("content type {content_type:?} is not one this route takes")]
    ContentType { content_type: String },
    #[error("this route takes no body")]
    UnexpectedBody,
    #[error("the {part} is malformed at byte {at}: {what}")]
    Malformed {
        part: Part,
        at: usize,
        what: &'static str,
    },
    #[error("{part} key {key:?} has a value that is not UTF-8")]
    NotUtf8 { part: Part, key: String },
    #[error("header {header:?} has a control character in its value")]
    BadHeaderValue { header: String },
    #[error("the form body is over {limit} bytes")]
    FormTooLarge { limit: usize },
    #[error("the form body was not read before it was checked")]
    FormNotBuffered,
    #[error("the query string is over {limit} bytes")]
    QueryTooLong { limit: usize },
    #[error("{part} key {key:?}: its value, split at `/`, is read as a path tail: {tail}")]
    BadValue {
        part: Part,
        key: String,
        tail: TailError,
    },
}

// === impl CanonicalPath ===

impl CanonicalPath {
    /// The canonical path, also the exact path to forward.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The segments after the leading `/`; a trailing `/` yields a last empty segment.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.text.get(1..).unwrap_or("").split('/')
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// === impl PathError ===

impl PathError {
    /// A stable, greppable name for events and answers.
    pub fn kind(&self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path_not_absolute",
            PathError::TooLong { .. } => "path_too_long",
            PathError::SegmentTooLong { .. } => "path_segment_too_long",
            PathError::EmptySegment { .. } => "path_empty_segment",
            PathError::DotSegment { .. } => "path_dot_segment",
            PathError::EncodedSlash { .. } => "path_encoded_slash",
            PathError::Backslash { .. } => "path_backslash",
            PathError::ControlChar { .. } => "path_control_char",
            PathError::BadEscape { .. } => "path_bad_escape",
            PathError::DoubleEncoded { .. } => "path_double_encoded",
            PathError::ForbiddenChar { .. } => "path_forbidden_char",
        }
    }
}

// === impl Tail ===

impl Tail {
    pub fn as_str(self) -> &'static str {
        match self {
            Tail::ObjectKey => "object key",
            Tail::RegistryServer => "registry server",
            Tail::RegistryApi => "registry API",
            Tail::HttpPath => "HTTP path",
        }
    }

    /// Checks the tail segments (as split from a [`CanonicalPath`]) against the grammar.
    pub fn check(self, segments: &[&str]) -> Result<(), TailError> {
        let fail = |index: usize, what: &'static str| TailError {
            tail: self,
            index,
            what,
        };
        match self {
            Tail::ObjectKey => {
                if segments.is_empty() || segments.len() > 16 {
                    return Err(fail(0, "a key has 1 to 16 segments"));
                }
                let total: usize = segments.iter().map(|s| s.len() + 1).sum();
                if total > 256 {
                    return Err(fail(0, "a key is at most 255 bytes"));
                }
                for (i, s) in segments.iter().enumerate() {
                    if !is_word(s, |b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                        return Err(fail(i, "a key segment is [A-Za-z0-9._-]+"));
                    }
                }
                Ok(())
            }
            Tail::RegistryServer => {
                let Some((host, rest)) = segments.split_first() else {
                    return Err(fail(0, "a server names a host"));
                };
                if host.ends_with(':') && rest.first() == Some(&"") {
                    // `https://index.docker.io/v1/`, as Docker's own config spells servers: a
                    // URL that `DELETE /registries/{server}` could not name.
                    return Err(fail(
                        0,
                        "a server is host[:port][/path] with no scheme: `index.docker.io`, not \
                         `https://index.docker.io/v1/`",
                    ));
                }
                if rest.len() > 7 {
                    return Err(fail(8, "a server has at most 7 path segments"));
                }
                if !is_host_port(host) {
                    return Err(fail(
                        0,
                        "a host is labels of [A-Za-z0-9-] with an optional :port",
                    ));
                }
                for (i, s) in rest.iter().enumerate() {
                    if !is_word(s, |b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                        return Err(fail(i + 1, "a server path segment is [A-Za-z0-9._-]+"));
                    }
                }
                Ok(())
            }
            Tail::RegistryApi => check_registry_api(segments).map_err(|(i, what)| fail(i, what)),
            Tail::HttpPath => {
                if segments.len() > 32 {
                    return Err(fail(32, "a proxied path has at most 32 segments"));
                }
                // Empty segments can only be the last one: canonicalize_path refused the others.
                Ok(())
            }
        }
    }
}

// === impl Part ===

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Form => "form",
            Part::Query => "query",
            Part::Header => "header",
        })
    }
}

// === impl CanonicalParams ===

impl CanonicalParams {
    /// Every parameter: form keys (sorted), then query keys (sorted), then option headers.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The value of the parameter `name` (allow-list spelling), for [`super::decide::authorize`].
    pub fn get(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|p| p.key == name)
            .map(|p| p.value.clone())
    }

    /// The value of the form parameter `name`, only from the body: a query key of the same
    /// name (the proxy routes pass theirs on as they are) is not one.
    pub fn form_value(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.part == Part::Form && p.key == name)
            .map(|p| p.value.as_str())
    }

    /// The canonical query to forward: `None` for no `?`, `Some("")` for a bare `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The body to forward.
    pub fn body(&self) -> &ForwardBody {
        &self.body
    }

    /// The `Content-Type` to forward, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The request target to forward: the canonical path, then `?` and the canonical query when
    /// the request had a `?`.
    pub fn target(&self, path: &CanonicalPath) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", path.as_str()),
            None => path.as_str().to_owned(),
        }
    }
}

// === impl ParamError ===

impl ParamError {
    /// A stable, greppable name for events and answers.
    pub fn kind(&self) -> &'static str {
        match self {
            ParamError::DuplicateKey { .. } => "param_duplicate_key",
            ParamError::UnknownKey { .. } => "param_unknown_key",
            ParamError::QueryOnNonGet { .. } => "param_query_on_non_get",
            ParamError::HeaderShadowsParam { .. } => "param_header_shadows",
            ParamError::Multipart => "param_multipart",
            ParamError::ContentType { .. } => "param_content_type",
            ParamError::UnexpectedBody => "param_unexpected_body",
            ParamError::Malformed { .. } => "param_malformed",
            ParamError::NotUtf8 { .. } => "param_not_utf8",
            ParamError::BadHeaderValue { .. } => "param_bad_header_value",
            ParamError::FormTooLarge { .. } => "param_form_too_large",
            ParamError::FormNotBuffered => "param_form_not_buffered",
            ParamError::QueryTooLong { .. } => "param_query_too_long",
            ParamError::BadValue { .. } => "param_bad_value",
        }
    }
}

// === Paths ===

/// Splits a request target at its first `?` into the raw path and the raw query.
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Decodes and checks a raw path (the request target before `?`).
pub fn canonicalize_path(raw: &str) -> Result<CanonicalPath, PathError> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathError::NotAbsolute);
    };
    if raw.len() > 3 * MAX_PATH_BYTES {
        return Err(PathError::TooLong {
            len: raw.len(),
            limit: MAX_PATH_BYTES,
        });
    }
    let raw_segments: Vec<&str> = rest.split('/').collect();
    let last = raw_segments.len().saturating_sub(1);
    let mut decoded: Vec<String> = Vec::with_capacity(raw_segments.len());
    for (index, seg) in raw_segments.iter().enumerate() {
        let text = decode_segment(index, seg.as_bytes())?;
        if text.is_empty() {
            // A trailing `/` is kept only under a prefix where it means something.
            let prefix_ok = TRAILING_SLASH_PREFIXES
                .iter()
                .any(|p| p.len() <= decoded.len() && p.iter().zip(&decoded).all(|(a, b)| a == b));
            if index != last || !prefix_ok {
                return Err(PathError::EmptySegment { index });
            }
        }
        if text == "." || text == ".." {
            return Err(PathError::DotSegment { index });
        }
        if text.len() > MAX_SEGMENT_BYTES {
            return Err(PathError::SegmentTooLong {
                index,
                len: text.len(),
                limit: MAX_SEGMENT_BYTES,
            });
        }
        decoded.push(text);
    }
    let text = format!("/{}", decoded.join("/"));
    if text.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong {
            len: text.len(),
            limit: MAX_PATH_BYTES,
        });
    }
    Ok(CanonicalPath { text })
}

/// RFC 3986 `pchar` without `%`: the bytes a decoded segment may hold, and the only ones the
/// forwarded path contains.
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

fn decode_segment(index: usize, raw: &[u8]) -> Result<String, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let (byte, encoded) = if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_value);
            let lo = raw.get(i + 2).copied().and_then(hex_value);
            match (hi, lo) {
                (Some(h), Some(l)) => {
                    i += 3;
                    (h << 4 | l, true)
                }
                _ => return Err(PathError::BadEscape { index }),
            }
        } else {
            i += 1;
            (b, false)
        };
        match byte {
            b'/' => return Err(PathError::EncodedSlash { index }),
            b'\\' => return Err(PathError::Backslash { index, encoded }),
            b'%' => return Err(PathError::DoubleEncoded { index }),
            b if b < 0x20 || b == 0x7f => return Err(PathError::ControlChar { index, byte: b }),
            b if is_pchar(b) => out.push(b),
            b => return Err(PathError::ForbiddenChar { index, byte: b }),
        }
    }
    // Every byte pushed is ASCII, so this cannot fail; map the impossible case to an error
    // rather than panicking.
    String::from_utf8(out).map_err(|_| PathError::ForbiddenChar { index, byte: 0x80 })
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_word(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(ok)
}

fn is_host_port(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| is_word(l, |b| b.is_ascii_alphanumeric() || b == b'-') && l.len() <= 63);
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-z0-9]+` runs joined by single `.`, `_` or `-`.
fn is_repo_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || b"._-".contains(c))
        && b.windows(2).all(|w| w.iter().any(alnum))
}

fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=128).contains(&b.len())
        && b.first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

fn is_digest(s: &str) -> bool {
    match s.split_once(':') {
        Some((algo, hex)) => {
            is_word(algo, |b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b)
            }) && (32..=128).contains(&hex.len())
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        None => false,
    }
}

fn check_registry_api(segments: &[&str]) -> Result<(), (usize, &'static str)> {
    match segments {
        [""] | ["_catalog"] => return Ok(()),
        _ => {}
    }
    let n = segments.len();
    // Find the operation from the end; what precedes it is the repository name.
    let (name_len, op_ok) = match segments {
        [.., "tags", "list"] => (n - 2, true),
        [.., "manifests", r] => (n - 2, is_tag(r) || is_digest(r)),
        [.., "blobs", "uploads", ""] => (n - 3, true),
        [.., "blobs", "uploads", id] => (
            n - 3,
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.=-".contains(&b)),
        ),
        [.., "blobs", d] => (n - 2, is_digest(d)),
        _ => return Err((n.saturating_sub(1), "not a registry API operation")),
    };
    if !op_ok {
        return Err((
            n - 1,
            "a reference is a tag or a digest, an upload id is [A-Za-z0-9_.=-]",
        ));
    }
    if !(1..=4).contains(&name_len) {
        return Err((0, "a repository name has 1 to 4 components"));
    }
    for (i, s) in segments.iter().take(name_len).enumerate() {
        if !is_repo_component(s) {
            return Err((
                i,
                "a name component is [a-z0-9] runs joined by '.', '_' or '-'",
            ));
        }
    }
    Ok(())
}

// === Parameters ===

/// Whether a body with this content type must be read (up to [`MAX_FORM_BYTES`]) and passed as
/// [`RequestBody::Buffered`]: true for form bodies, which are parsed and re-encoded.
pub fn reads_body(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| media_type(ct).0 == FORM)
}

const FORM: &str = "application/x-www-form-urlencoded";
const OCTET: &str = "application/octet-stream";

/// The lower-cased media type and whether parameters follow it.
fn media_type(ct: &str) -> (String, bool) {
    match ct.split_once(';') {
        Some((m, params)) => (m.trim().to_ascii_lowercase(), !params.trim().is_empty()),
        None => (ct.trim().to_ascii_lowercase(), false),
    }
}

/// Produces the canonical parameters of a request for `rule`, or refuses them.
pub fn canonicalize_params(
    rule: &RouteRule,
    req: &RequestParams<'_>,
) -> Result<CanonicalParams, ParamError> {
    let spec = &rule.params;
    let opaque = spec.body == Body::Opaque;
    let mut params = Vec::new();

    // Body and content type.
    let media = req.content_type.map(media_type);
    let body_is_empty = match req.body {
        RequestBody::Empty => true,
        RequestBody::Buffered(b) => b.is_empty(),
        RequestBody::Streaming => false,
    };
    let refuse_ct = || ParamError::ContentType {
        content_type: req.content_type.unwrap_or("").to_owned(),
    };
    let (body, content_type) = match media.as_ref() {
        Some((m, _)) if m.starts_with("multipart/") => return Err(ParamError::Multipart),
        Some((m, has_params)) if m == FORM => {
            if *has_params || spec.body != Body::Form {
                return Err(refuse_ct());
            }
            let bytes = match req.body {
                RequestBody::Empty => &[][..],
                RequestBody::Buffered(b) if b.len() > MAX_FORM_BYTES => {
                    return Err(ParamError::FormTooLarge {
                        limit: MAX_FORM_BYTES,
                    });
                }
                RequestBody::Buffered(b) => b,
                RequestBody::Streaming => return Err(ParamError::FormNotBuffered),
            };
            let pairs = parse_urlencoded(Part::Form, bytes)?;
            let mut form = Vec::with_capacity(pairs.len());
            for (key, value) in pairs {
                let Some(k) = find_key(spec.form, &key, false) else {
                    return Err(ParamError::UnknownKey {
                        part: Part::Form,
                        key,
                    });
                };
                push_unique(&mut form, Part::Form, k, value)?;
            }
            form.sort_by(|a, b| a.key.cmp(&b.key));
            let encoded = encode_params(&form);
            params.extend(form);
            (
                ForwardBody::Form(encoded.into_bytes()),
                Some(FORM.to_owned()),
            )
        }
        Some((m, has_params)) if m == OCTET && !opaque => {
            if *has_params {
                return Err(refuse_ct());
            }
            if spec.body == Body::Raw {
                let b = if body_is_empty {
                    ForwardBody::Empty
                } else {
                    ForwardBody::Stream
                };
                (b, Some(OCTET.to_owned()))
            } else if body_is_empty {
                (ForwardBody::Empty, Some(OCTET.to_owned()))
            } else {
                return Err(ParamError::UnexpectedBody);
            }
        }
        Some(_) if opaque => {
            let b = if body_is_empty {
                ForwardBody::Empty
            } else {
                ForwardBody::Stream
            };
            (b, req.content_type.map(str::to_owned))
        }
        Some(_) => return Err(refuse_ct()),
        None => {
            if body_is_empty {
                (ForwardBody::Empty, None)
            } else if opaque {
                (ForwardBody::Stream, None)
            } else {
                return Err(ParamError::UnexpectedBody);
            }
        }
    };

    // Query string.
    let query = match req.query {
        None => None,
        Some(raw) => {
            if raw.len() > MAX_QUERY_BYTES {
                return Err(ParamError::QueryTooLong {
                    limit: MAX_QUERY_BYTES,
                });
            }
            let get_like = req.method == "GET" || req.method == "HEAD";
            let mut found: Vec<Param> = Vec::new();
            for (key, value) in parse_urlencoded(Part::Query, raw.as_bytes())? {
                if opaque {
                    if find_key(spec.headers, &key, true).is_some() {
                        return Err(ParamError::HeaderShadowsParam { header: key });
                    }
                    if found.iter().any(|p| p.key == key) {
                        return Err(ParamError::DuplicateKey {
                            part: Part::Query,
                            key,
                        });
                    }
                    found.push(Param {
                        part: Part::Query,
                        key,
                        value,
                        class: KeyClass::Secret,
                    });
                    continue;
                }
                match find_key(spec.query, &key, false) {
                    Some(k) => push_unique(&mut found, Part::Query, k, value)?,
                    None if !get_like => {
                        return Err(ParamError::QueryOnNonGet {
                            method: req.method.to_owned(),
                            key,
                        });
                    }
                    None => {
                        return Err(ParamError::UnknownKey {
                            part: Part::Query,
                            key,
                        });
                    }
                }
            }
            found.sort_by(|a, b| a.key.cmp(&b.key));
            let encoded = encode_params(&found);
            params.extend(found);
            Some(encoded)
        }
    };

    // Option headers; other headers are not parameters and are left to the proxy's hygiene.
    let mut found: Vec<Param> = Vec::new();
    for (name, value) in req.headers {
        if let Some(k) = find_key(spec.headers, name, true) {
            let Ok(text) = std::str::from_utf8(value) else {
                return Err(ParamError::NotUtf8 {
                    part: Part::Header,
                    key: k.name.to_owned(),
                });
            };
            if text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(ParamError::BadHeaderValue {
                    header: k.name.to_owned(),
                });
            }
            push_unique(&mut found, Part::Header, k, text.to_owned())?;
        } else if find_key(spec.form, name, true).is_some()
            || find_key(spec.query, name, true).is_some()
        {
            return Err(ParamError::HeaderShadowsParam {
                header: (*name).to_owned(),
            });
        }
    }
    // Allow-list order, so the record does not depend on the order headers arrived in.
    found.sort_by_key(|p| {
        spec.headers
            .iter()
            .position(|k| k.name == p.key)
            .unwrap_or(usize::MAX)
    });
    params.extend(found);

    Ok(CanonicalParams {
        params,
        query,
        body,
        content_type,
    })
}

fn find_key(keys: &'static [Key], name: &str, any_case: bool) -> Option<Key> {
    keys.iter()
        .find(|k| {
            if any_case {
                k.name.eq_ignore_ascii_case(name)
            } else {
                k.name == name
            }
        })
        .copied()
}

fn push_unique(
    out: &mut Vec<Param>,
    part: Part,
    key: Key,
    value: String,
) -> Result<(), ParamError> {
    if out.iter().any(|p| p.key == key.name) {
        return Err(ParamError::DuplicateKey {
            part,
            key: key.name.to_owned(),
        });
    }
    if let Some(grammar) = key.grammar {
        fits_as_tail(grammar.tail, grammar.under, &value).map_err(|tail| ParamError::BadValue {
            part,
            key: key.name.to_owned(),
            tail,
        })?;
    }
    out.push(Param {
        part,
        key: key.name.to_owned(),
        value,
        class: key.class,
    });
    Ok(())
}

/// Whether `key` is an object key of the app whose objects are under `objects`
/// (`/apps/{app}/objects`): what a path there could name ([`Tail::ObjectKey`]).
pub fn is_object_key(objects: &str, key: &str) -> bool {
    fits_as_tail(Tail::ObjectKey, objects, key).is_ok()
}

/// Whether a parameter's `value`, split at `/`, is a tail a path under `under` could name: what
/// [`canonicalize_path`] would refuse in a path (a `.` or `..` segment, an over-long one, a
/// path too long in all) is refused here too, beside the tail's own grammar.
fn fits_as_tail(grammar: Tail, under: &str, value: &str) -> Result<(), TailError> {
    let segments: Vec<&str> = value.split('/').collect();
    for (index, s) in segments.iter().enumerate() {
        let what = if *s == "." || *s == ".." {
            "a `.` or `..` segment, which no path keeps"
        } else if s.len() > MAX_SEGMENT_BYTES {
            "a segment longer than a path takes"
        } else {
            continue;
        };
        return Err(TailError {
            tail: grammar,
            index,
            what,
        });
    }
    grammar.check(&segments)?;
    if under.len() + 1 + value.len() > MAX_PATH_BYTES {
        return Err(TailError {
            tail: grammar,
            index: segments.len().saturating_sub(1),
            what: "longer than a path can name",
        });
    }
    Ok(())
}

/// Parses `k=v&k=v` strictly: every pair has a non-empty key and an `=`, no pair is empty, no
/// `;` (Go refuses it), no byte outside printable ASCII, every `%` starts a valid escape, `+` is
/// a space. Keys and values must decode to UTF-8.
fn parse_urlencoded(part: Part, raw: &[u8]) -> Result<Vec<(String, String)>, ParamError> {
    let mut out = Vec::new();
    if raw.is_empty() {
        return Ok(out);
    }
    let malformed = |at: usize, what: &'static str| ParamError::Malformed { part, at, what };
    let mut start = 0;
    for pair in raw.split(|b| *b == b'&') {
        let at = start;
        start += pair.len() + 1;
        if pair.is_empty() {
            return Err(malformed(at, "empty pair"));
        }
        if let Some(i) = pair
            .iter()
            .position(|b| *b < 0x21 || *b > 0x7e || *b == b';')
        {
            return Err(malformed(at + i, "a byte outside the query grammar"));
        }
        let Some(eq) = pair.iter().position(|b| *b == b'=') else {
            return Err(malformed(at, "a key without '='"));
        };
        let (k, v) = (
            pair.get(..eq).unwrap_or(&[]),
            pair.get(eq + 1..).unwrap_or(&[]),
        );
        if k.is_empty() {
            return Err(malformed(at, "an empty key"));
        }
        let key = unescape(k).ok_or_else(|| malformed(at, "a malformed percent-escape"))?;
        let value =
            unescape(v).ok_or_else(|| malformed(at + eq + 1, "a malformed percent-escape"))?;
        let key = String::from_utf8(key).map_err(|_| malformed(at, "a key that is not UTF-8"))?;
        let Ok(value) = String::from_utf8(value) else {
            return Err(ParamError::NotUtf8 { part, key });
        };
        out.push((key, value));
    }
    Ok(out)
}

fn unescape(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'%' => {
                let h = raw.get(i + 1).copied().and_then(hex_value)?;
                let l = raw.get(i + 2).copied().and_then(hex_value)?;
                out.push(h << 4 | l);
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
    Some(out)
}

/// Go's `url.QueryEscape`: unreserved bytes stay, a space becomes `+`, everything else `%XX`.
fn escape_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// A form body with the form parameter `key` set to `value`: the form parameters of `params`
/// (the canonical ones of a request), urlencoded as Go encodes them. The proxy canonicalizes
/// it again before forwarding, so what is recorded is what is forwarded.
pub fn form_with(params: &[Param], key: &str, value: &str) -> Vec<u8> {
    let form: Vec<Param> = params
        .iter()
        .filter(|p| p.part == Part::Form)
        .map(|p| Param {
            value: if p.key == key {
                value.to_owned()
            } else {
                p.value.clone()
            },
            ..p.clone()
        })
        .collect();
    encode_params(&form).into_bytes()
}

/// Go's `url.Values.Encode` for params already sorted by key.
fn encode_params(params: &[Param]) -> String {
    let mut out = String::new();
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        escape_into(&mut out, &p.key);
        out.push('=');
        escape_into(&mut out, &p.value);
    }
    out
}

#[cfg(test)]
mod tests;
