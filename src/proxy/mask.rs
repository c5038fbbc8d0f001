//! Env masking in rack answers, masked values restored on the way back, and the rack password
//! scrubbed from external builds (issue 3, point 8; spec §3.4, §3.13, §5).
//!
//! A Convox env is the `env` string of a release: `KEY=VALUE` lines joined by `\n`, read the
//! rack's way (Go's `bufio.Scanner` lines, a trailing `\r` dropped, split at the first `=`, the
//! key trimmed, lines without `=` or with an empty key ignored, the last of duplicates wins).
//! A hidden value becomes `rgw-masked:<8 hex>`, the first 4 bytes of
//! HMAC-SHA256(mask key, len(app) ‖ app ‖ len(key) ‖ key ‖ value), lengths as 8-byte
//! big-endian (a key may hold any byte, NUL included, so no separator would keep the three
//! apart), where the mask key is
//! derived from the audit key for masks alone ([`AuditKey::derive`]): stable for one value of
//! one key of one app, saying nothing about the value to anyone without the audit key, and
//! never equal to the HMAC a recorded parameter carries.
//!
//! Who sees what ([`Visibility`]): without `convox:env:read` every value is masked; with it but
//! without `convox:secret:read`, secret-classified values are masked ([`is_secret`]: by name
//! *or* by value); protected keys (per app) are masked for everyone.
//!
//! A value with newlines leaves stray lines (`Env::strays`) that nothing classifies: for a
//! caller who may not read every value they are masked whole (`mask(app, "", line)`), and such
//! a caller may post them back only as those masks ([`stray_in_clear`]).
//!
//! Answers are rewritten in place: only the bytes of a hidden value or stray line, inside the
//! `env` string token, change; every other byte of the answer (field order, indentation, Go's `\u003c`
//! escapes) is kept, and an answer with nothing to hide comes back byte for byte.
//!
//! **Invariant:** this module is pure (no I/O, no clock; keys, apps and decisions are
//! arguments). An answer it cannot parse is an error, never passed through unmasked; a masked
//! value posted back is restored only to the current value of the same key of the same app, any
//! other use is refused; a protected key can be neither added, removed nor changed.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use hmac::{KeyInit, Mac};

use crate::keys::AuditKey;
use crate::policy::decide::Grant;
use crate::policy::permissions::Perm;
use crate::policy::routes::RouteRule;
use crate::proxy::redact;
use crate::proxy::secret_text::{
    credential_ranges, is_jwt, is_known_token, looks_like_token, pair_name_secret, random_looking,
    words,
};

mod manifest;
mod quoted;

pub use quoted::{Scrubber, StreamScrub};

/// What every mask starts with.
pub const MASK_PREFIX: &str = "rgw-masked:";

/// What replaces a credential in a build's `repository` URL.
pub const REDACTED: &str = "rgw-redacted";

/// The largest answer the proxy buffers to rewrite; a larger one is refused (502).
pub const MAX_MASKED_BODY: usize = 16 * 1024 * 1024;

/// What a rewrite holds at its peak, in bytes per byte of the answer, counted against the
/// answers budget before it starts: the answer, its decoded strings and their positions in it
/// (4 bytes per byte), the edits and the rewritten copy, which outgrows the answer when short
/// values become masks. An estimate with headroom: an answer of nothing but one-character
/// values may hold more.
pub const REWRITE_COST: usize = 12;

/// How deeply an answer may nest (the rack's answers nest two or three levels).
const MAX_DEPTH: usize = 64;

/// The 4 bytes of the HMAC a mask shows.
const MASK_TAG_BYTES: usize = 4;

/// What of an env a caller may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// No `convox:env:read`: every value masked.
    NoEnv,
    /// `convox:env:read` without `convox:secret:read`: secret-classified values masked.
    NonSecret,
    /// Both: only protected keys masked.
    All,
}

/// Which rewrite a route's (2xx) answer needs before it reaches the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMask {
    /// A release or a list of releases: [`mask_release_json`].
    ReleaseEnv,
    /// A build or a list of builds: [`scrub_external_build`].
    BuildRepository,
    /// A process or a list of processes, for a caller who may not read secrets:
    /// [`scrub_process_commands`].
    ProcessCommand,
    /// An answer that quotes pods' logs and events (a diagnose report): the rack password taken
    /// out wherever it appears, as log streams have it. A rack gives every pod `RACK_URL`
    /// unless its `system-env-disable` gate is on, and a crashing process may print it.
    RackPassword,
}

/// Why an answer could not be masked or a posted env restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("the rack's answer is not valid JSON (byte {at}: {what})")]
    Json { at: usize, what: &'static str },
    #[error("the rack's answer has an unexpected shape: {0}")]
    Shape(&'static str),
    #[error(
        "{key}: a masked value stands only for the current value of that same variable in this \
         app; set the variable in clear, or read the env again and post what you read"
    )]
    MaskMisused { key: String },
    #[error(
        "{key} is a protected variable of this app: it cannot be set, changed or removed through the gateway"
    )]
    ProtectedChange { key: String },
    #[error(
        "env line {line} sets no variable (a line without `=`, or part of a value with \
         newlines); the rack ignores such lines, and you may post them back only as the masks \
         you were shown"
    )]
    LineInClear { line: usize },
    #[error(
        "{key}: its current value cannot be posted back so that the rack reads it unchanged \
         (the rack drops a line's last carriage return); set the variable in clear"
    )]
    Unrestorable { key: String },
    #[error("the audit key cannot key an HMAC")]
    Key,
}

/// A parsed env: the text exactly as given, and where its entries are.
///
/// `Debug` shows the keys only, never a value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Env {
    text: String,
    entries: Vec<Entry>,
    /// The lines that set nothing (no `=`, or an empty key) and are not blank: the rack ignores
    /// them, but the text keeps them, so they may hold a multi-line value's continuation.
    others: Vec<Range<usize>>,
}

/// One `KEY=VALUE` line: the trimmed key and the value, as byte ranges of the text.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    key: Range<usize>,
    value: Range<usize>,
}

/// A line of [`Env::strays`]: where it is (from its key, for an entry), and whether the rack
/// reads it as an entry, so that its whole-line mask keeps an `=` and the CLI's `env set`
/// posts it back rather than dropping it.
struct Stray {
    line: Range<usize>,
    sets: bool,
}

// === impl Visibility ===

impl Visibility {
    /// The visibility a grant gives: `convox:env:read`, then `convox:secret:read` on top.
    pub fn of(grant: &Grant) -> Visibility {
        match (grant.holds(Perm::EnvRead), grant.holds(Perm::SecretRead)) {
            (false, _) => Visibility::NoEnv,
            (true, false) => Visibility::NonSecret,
            (true, true) => Visibility::All,
        }
    }

    /// Whether this caller must not see `value` of `key` (protected keys aside).
    pub fn hides(self, key: &str, value: &str) -> bool {
        match self {
            Visibility::NoEnv => true,
            Visibility::NonSecret => is_secret(key, value),
            Visibility::All => false,
        }
    }
}

// === impl MaskError ===

impl MaskError {
    /// A stable, greppable name for events and answers.
    pub fn kind(&self) -> &'static str {
        match self {
            MaskError::Json { .. } => "mask_unparseable",
            MaskError::Shape(_) => "mask_unexpected_shape",
            MaskError::MaskMisused { .. } => "masked_value_misused",
            MaskError::ProtectedChange { .. } => "protected_env_change",
            MaskError::LineInClear { .. } => "env_line_in_clear",
            MaskError::Unrestorable { .. } => "masked_value_unrestorable",
            MaskError::Key => "mask_key",
        }
    }

    /// Whether the error is the caller's (refuse, 403) rather than the rack's answer (502).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            MaskError::MaskMisused { .. }
                | MaskError::ProtectedChange { .. }
                | MaskError::LineInClear { .. }
                | MaskError::Unrestorable { .. }
        )
    }
}

// === impl Env ===

impl Env {
    /// Reads an env the way the rack does (`structs.Environment.Load`); never fails.
    pub fn parse(text: &str) -> Env {
        let bytes = text.as_bytes();
        let mut entries = Vec::new();
        let mut others = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let newline = text
                .get(start..)
                .and_then(|rest| rest.find('\n'))
                .map(|i| start + i);
            let line_end = newline.unwrap_or(text.len());
            // `bufio.ScanLines` drops one trailing `\r`.
            let content_end = if line_end > start && bytes.get(line_end - 1) == Some(&b'\r') {
                line_end - 1
            } else {
                line_end
            };
            let line = text.get(start..content_end).unwrap_or_default();
            let raw_key = line.find('=').and_then(|eq| Some((eq, line.get(..eq)?)));
            match raw_key {
                Some((eq, raw_key)) if !raw_key.trim().is_empty() => {
                    let key_start = start + (raw_key.len() - raw_key.trim_start().len());
                    entries.push(Entry {
                        key: key_start..key_start + raw_key.trim().len(),
                        value: start + eq + 1..content_end,
                    });
                }
                _ if !line.trim().is_empty() => others.push(start..content_end),
                _ => {}
            }
            start = newline.map_or(text.len(), |i| i + 1);
        }
        Env {
            text: text.to_owned(),
            entries,
            others,
        }
    }

    /// The env of the newest release in a rack answer: a release, or a list of releases newest
    /// first (`GET /apps/{app}/releases?limit=1`, what `convox env` reads, spec §5
    /// "Environment"); an empty list is an empty env.
    ///
    /// # Errors
    /// The answer is not JSON, or not a release or a list of them.
    pub fn from_releases_json(body: &[u8]) -> Result<Env, MaskError> {
        let fields = string_fields(body, "env")?;
        let newest = fields.into_iter().rfind(|f| f.object == 0);
        Ok(newest.map_or_else(Env::default, |f| Env::parse(&f.decoded)))
    }

    /// The text exactly as parsed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value of `key` as the rack reads it (the last line that sets it).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|e| self.key(e) == key)
            .map(|e| self.value(e))
    }

    /// Every `KEY=VALUE` line in order, duplicates included (the trimmed key and the value).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|e| (self.key(e), self.value(e)))
    }

    /// The env as the rack holds it: each key once, with its last value.
    pub fn to_map(&self) -> BTreeMap<&str, &str> {
        self.entries().collect()
    }

    /// The lines shown (and restored) only whole to a caller who may not read every value:
    /// the lines of a multi-line value after its first. Nothing marks them, so they are judged
    /// by form alone, wherever they stand: a line that sets nothing, and an entry that is a
    /// piece of a value ([`is_stray_entry`]).
    fn strays(&self) -> Vec<Stray> {
        let mut lines: Vec<(Range<usize>, Option<&Entry>)> = self
            .entries
            .iter()
            .map(|e| (e.key.start..e.value.end, Some(e)))
            .chain(self.others.iter().map(|r| (r.clone(), None)))
            .collect();
        lines.sort_by_key(|(r, _)| r.start);
        let mut out = Vec::new();
        let mut after_nothing = false;
        for (line, entry) in lines {
            // A short padded tail in one case (`QQ==`) is told apart by what precedes it: the
            // body's last full line, which sets nothing.
            let stray = entry.is_none_or(|e| {
                let (key, value) = (self.key(e), self.value(e));
                is_stray_entry(key, value) || (after_nothing && is_base64_tail(key, value))
            });
            if stray {
                out.push(Stray {
                    line,
                    sets: entry.is_some(),
                });
            }
            after_nothing = entry.is_none();
        }
        out
    }

    /// See [`stray_in_clear`].
    fn stray_in_clear(&self) -> Option<usize> {
        let stray = self
            .strays()
            .into_iter()
            .find(|s| !self.line(&s.line).contains(MASK_PREFIX))?;
        Some(
            self.text
                .get(..stray.line.start)
                .unwrap_or_default()
                .matches('\n')
                .count()
                + 1,
        )
    }

    fn line(&self, range: &Range<usize>) -> &str {
        self.text.get(range.clone()).unwrap_or_default()
    }

    fn key(&self, e: &Entry) -> &str {
        self.text.get(e.key.clone()).unwrap_or_default()
    }

    fn value(&self, e: &Entry) -> &str {
        self.text.get(e.value.clone()).unwrap_or_default()
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("keys", &self.entries().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

// === Routes ===

/// The rewrite a route's answer needs: routes whose answer carries a release env (spec §3.4,
/// §3.13: every item of the list, the get, and the release a create answers with), routes
/// whose answer is a build (an external build's `repository` carries the rack password, and it
/// is stored, so every later get or list of builds shows it too), routes whose answer is a
/// process (a run's `command`, spec §5), and a diagnose report (pods' logs).
pub fn response_mask(rule: &RouteRule) -> Option<ResponseMask> {
    match rule.name {
        "release.list" | "release.get" | "release.create" => Some(ResponseMask::ReleaseEnv),
        "build.create" | "build.list" | "build.get" | "build.update" | "build.import" => {
            Some(ResponseMask::BuildRepository)
        }
        "process.list" | "process.get" | "process.run" | "rack.processes" => {
            Some(ResponseMask::ProcessCommand)
        }
        "app.diagnose" => Some(ResponseMask::RackPassword),
        _ => None,
    }
}

/// Whether the route's answer is rewritten: the proxy strips `Accept-Encoding` upstream, and
/// refuses (recorded 502) a `Content-Encoding` answer or one it cannot parse.
pub fn masks_response(rule: &RouteRule) -> bool {
    response_mask(rule).is_some()
}

// === Classification ===

/// Whether a value is secret: by its key's name or by the value itself. A secret-looking name
/// always wins, whatever the value.
pub fn is_secret(key: &str, value: &str) -> bool {
    secret_name(key) || secret_value(value)
}

/// Whether a key names a secret: `…TOKEN`, `…SECRET…`, `…PASSWORD`, `…KEY`, `DATABASE_URL`,
/// `…DSN`, `…CREDENTIALS`, and the like, in `SNAKE_CASE` or `camelCase`.
pub fn secret_name(key: &str) -> bool {
    const ANYWHERE: &[&str] = &[
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "CREDENTIAL",
        "APIKEY",
        "DATABASE_URL",
        "DATABASEURL",
    ];
    const WORDS: &[&str] = &[
        "KEY", "KEYS", "PASS", "PWD", "PW", "DSN", "SALT", "PEPPER", "AUTH", "CREDS", "CERTKEY",
    ];
    let upper = key.to_ascii_uppercase();
    if ANYWHERE.iter().any(|s| upper.contains(s)) {
        return true;
    }
    words(key)
        .iter()
        .any(|w| WORDS.contains(&w.as_str()) || (w.len() > 3 && w.ends_with("KEY")))
}

/// Whether a value looks secret whatever its name: a URL (or `user:pass@host` DSN) with
/// credentials, a JWT, a private key, a well-known token format, or a long random-looking
/// string.
pub fn secret_value(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() {
        return false;
    }
    if !credential_ranges(v, &looks_like_token).is_empty() || v.contains("PRIVATE KEY") {
        return true;
    }
    if v.split_whitespace().any(|w| is_jwt(w) || is_known_token(w)) {
        return true;
    }
    holds_secret_pair(v) || random_looking(v)
}

/// `s` without the quotes around it.
fn unquoted(s: &str) -> &str {
    s.trim_matches(|c| c == '"' || c == '\'')
}

/// Whether a value holds a pair whose name says secret ([`pair_name_secret`]) and whose value
/// is not empty: `name=value` (a JDBC URL's `?password=…`, a libpq or ADO.NET connection
/// string's `password=…` or `Pwd=…;`, a URL's `api_key=…` query, a flag's
/// `--encryption-key=…`), `name: value` or `name:value` (JSON, YAML, a header such as
/// `Authorization: Basic …`), and a flag followed by its value (`--password hunter2`, as the
/// log's scrubber reads a command line). Parts are split at whitespace, `;`, `&`, `?`, `,`,
/// braces and brackets; quotes around a name or value are not part of it. A `:` followed by `//`
/// is a URL's, not a pair's (credentials in URLs are found by [`credential_ranges`]).
fn holds_secret_pair(v: &str) -> bool {
    let parts: Vec<&str> = v
        .split(|c: char| {
            c.is_whitespace() || matches!(c, ';' | '&' | '?' | ',' | '{' | '}' | '[' | ']')
        })
        .filter(|p| !p.is_empty())
        .collect();
    parts.iter().enumerate().any(|(i, part)| {
        let next = || parts.get(i + 1).map(|n| unquoted(n)).unwrap_or_default();
        let pair = part.split_once('=').or_else(|| {
            part.split_once(':')
                .filter(|(_, rest)| !rest.starts_with("//"))
        });
        match pair {
            Some((name, value)) => {
                let value = match unquoted(value) {
                    "" => next(),
                    value => value,
                };
                !value.is_empty() && pair_name_secret(unquoted(name))
            }
            // A flag whose value is the next part.
            None => part.starts_with('-') && pair_name_secret(part) && !next().is_empty(),
        }
    })
}

// === Masks ===

/// The mask of `value` of `key` in `app`: `rgw-masked:` and the first 4 bytes, in hex, of
/// HMAC-SHA256(mask key, len(app) ‖ app ‖ len(key) ‖ key ‖ value); see the module doc.
///
/// # Errors
/// [`MaskError::Key`] if the HMAC refuses the key (never for a 32-byte key).
pub fn mask_value(
    audit: &AuditKey,
    app: &str,
    key: &str,
    value: &str,
) -> Result<String, MaskError> {
    MaskKey::derive(audit)?.mask(app, key, value)
}

/// What the mask key is derived for ([`AuditKey::derive`]). Version 1 was derived as
/// `HMAC(audit key, label)`, which a caller could have recorded by sending the label as a secret
/// value; version 2 joined app, key and value with NUL bytes, which a key may hold (`A` with
/// `B\0C` read as `A\0B` with `C`). Masks made under either no longer restore: a mask lives
/// from one answer to the post that sends it back.
const MASK_KEY_LABEL: &str = "rack-gateway env mask key v3";

/// The key masks are made under, derived once per answer or post.
struct MaskKey([u8; 32]);

impl MaskKey {
    fn derive(audit: &AuditKey) -> Result<MaskKey, MaskError> {
        // A key of its own, derived from the audit key: a recorded parameter is
        // `HMAC(audit, value)` for any value a caller sends, so a mask under the audit key
        // itself would let whoever reads the log test a guess by sending the mask's input.
        audit
            .derive(MASK_KEY_LABEL)
            .map(MaskKey)
            .ok_or(MaskError::Key)
    }

    fn mac(
        &self,
        app: &str,
        key: &str,
        value: &str,
    ) -> Result<hmac::Hmac<sha2::Sha256>, MaskError> {
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0)
            .map_err(|_| MaskError::Key)?;
        for field in [app, key] {
            m.update(&(field.len() as u64).to_be_bytes());
            m.update(field.as_bytes());
        }
        m.update(value.as_bytes());
        Ok(m)
    }

    fn mask(&self, app: &str, key: &str, value: &str) -> Result<String, MaskError> {
        let tag = self.mac(app, key, value)?.finalize().into_bytes();
        let shown: Vec<u8> = tag.iter().copied().take(MASK_TAG_BYTES).collect();
        Ok(format!("{MASK_PREFIX}{}", hex::encode(shown)))
    }
}

/// Masks the env of a release answer (`GET …/releases`, `GET …/releases/{id}`,
/// `POST …/releases`): a release object or a list of them, every item's `env`.
///
/// Callers per [`Visibility`]; keys in `protected` are masked for everyone. Only the bytes of
/// hidden values change; with nothing to hide, the answer comes back byte for byte.
///
/// # Errors
/// The body is not JSON, or not a release or a list of releases (an object's `env` neither a
/// string nor null): the proxy answers a recorded 502, never the unmasked body.
pub fn mask_release_json(
    body: &[u8],
    app: &str,
    who: Visibility,
    audit: &AuditKey,
    protected: &[String],
) -> Result<Vec<u8>, MaskError> {
    let masks = MaskKey::derive(audit)?;
    // The keys the answer's envs read out of values' bytes (a short padded base64 tail in one
    // case, `QQ`, is told apart only by the line before it): a description naming one quotes
    // a piece of a value.
    let mut stray_keys = std::collections::HashSet::new();
    let env_masked = rewrite_string_fields(body, "env", &mut |env| {
        let parsed = Env::parse(env);
        let strays = parsed.strays();
        let stray_starts: std::collections::HashSet<usize> =
            strays.iter().map(|s| s.line.start).collect();
        let mut edits = Vec::new();
        let mut hidden_stray = false;
        for e in &parsed.entries {
            let (key, value) = (parsed.key(e), parsed.value(e));
            let hidden = protected.iter().any(|p| p == key) || who.hides(key, value);
            // A stray line's value goes with its line (below), never on its own.
            if stray_starts.contains(&e.key.start) {
                hidden_stray |= hidden;
                stray_keys.insert(key.to_owned());
                continue;
            }
            if hidden {
                edits.push((e.value.clone(), masks.mask(app, key, value)?));
            }
        }
        // A caller who may not read every value cannot be shown a line nothing classifies.
        if edits.is_empty() && !hidden_stray && who == Visibility::All {
            return Ok(edits);
        }
        // A value with newlines (`convox env set K="$(cat key.pem)"`) is stored as posted: its
        // first line is the entry, the rest are lines the rack ignores or reads as keys made
        // of the value's bytes. Each is masked whole, its key too; one the rack reads as an
        // entry keeps an `=`, so `env set` posts it back and the gateway restores it.
        for stray in strays {
            let mut shown = masks.mask(app, "", parsed.line(&stray.line))?;
            if stray.sets {
                shown.push('=');
            }
            edits.push((stray.line, shown));
        }
        Ok(edits)
    })?;
    // The rack names every key an env change touched in the release's description, stray
    // lines' keys (made of a value's bytes) too: such a description is masked whole.
    let described = rewrite_string_fields(&env_masked, "description", &mut |description| {
        if description_names_only_variables(description, &stray_keys) {
            return Ok(Vec::new());
        }
        Ok(vec![(
            0..description.len(),
            masks.mask(app, DESCRIPTION_DOMAIN, description)?,
        )])
    })?;
    mask_defaults_with(&described, app, who, &masks, protected)
}

/// Masks the env defaults in the `manifest` of a build or release answer (one or a list; see
/// [`manifest`]), for a caller per [`Visibility`] and `protected` keys as the env's own values
/// are; with nothing to hide, the answer comes back byte for byte.
///
/// # Errors
/// The body is not JSON, or a `manifest` is neither a string nor null.
pub fn mask_manifest_defaults(
    body: &[u8],
    app: &str,
    who: Visibility,
    audit: &AuditKey,
    protected: &[String],
) -> Result<Vec<u8>, MaskError> {
    mask_defaults_with(body, app, who, &MaskKey::derive(audit)?, protected)
}

fn mask_defaults_with(
    body: &[u8],
    app: &str,
    who: Visibility,
    masks: &MaskKey,
    protected: &[String],
) -> Result<Vec<u8>, MaskError> {
    rewrite_string_fields(body, "manifest", &mut |text| {
        let mut failed = None;
        let masked = manifest::mask_defaults(text, &mut |key, value| {
            let hidden = protected.iter().any(|p| p == key) || who.hides(key, value);
            if !hidden {
                return None;
            }
            let domain = format!("{MANIFEST_DOMAIN}\0{key}");
            match masks.mask(app, &domain, value) {
                Ok(shown) => Some(shown),
                Err(e) => {
                    failed = Some(e);
                    Some(String::new())
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(match masked {
            Ok(masked) if masked == text => Vec::new(),
            Ok(masked) => vec![(0..text.len(), masked)],
            // What cannot be read for certain is not shown at all.
            Err(_) => vec![(0..text.len(), masks.mask(app, MANIFEST_DOMAIN, text)?)],
        })
    })
}

/// The key a manifest's masks are made under: a default's is this, a NUL and its key, so it
/// never equals the mask of the env's own value (which would tell a caller who knows the
/// default whether the app runs with it); a manifest masked whole, this alone.
const MANIFEST_DOMAIN: &str = "\0manifest";

/// The key a release description's mask is made under: not `""`, that of stray lines, so a
/// description a caller wrote (`env <guess>`) cannot be compared with a hidden line's mask
/// (only a variable whose name starts with a NUL would share it).
const DESCRIPTION_DOMAIN: &str = "\0description";

/// Whether a release's `description` can be shown to a caller who may not read every value.
/// A release made by an env change is described `env add:K change:K remove:K` (the rack's
/// `common.EnvDiff`), naming each key the rack read, and a multi-line value's later lines that
/// hold an `=` are read as keys made of its bytes (a PEM's padded last line, a JSON line):
/// shown only where every key named is a variable's name ([`is_stray_entry`]) and none is a
/// key `strays` read out of a value's bytes. Any other description (a build's, the caller's
/// own) names no key.
fn description_names_only_variables(
    description: &str,
    strays: &std::collections::HashSet<String>,
) -> bool {
    let Some(diff) = description.strip_prefix("env ") else {
        return true;
    };
    diff.split(' ').all(|item| {
        ["add:", "change:", "remove:"].iter().any(|verb| {
            item.strip_prefix(verb)
                .is_some_and(|key| !is_stray_entry(key, "") && !strays.contains(key))
        })
    })
}

/// Whether `a` and `b` are the same bytes, in time that depends on their lengths only.
fn same_bytes(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether an entry the rack reads is really a piece of a value: its key cannot name a variable
/// as people name them (`[-._a-zA-Z0-9]+`; a JSON or YAML line, a base64 line with `+` or `/`),
/// or the line is the last, padded line of a base64 body (`…=` or `…==` reads as a key made of
/// its bytes and the value `` or `=`) and its key is not written as names are (one case,
/// digits and `_`), which base64 of any length almost never is. Wrapping widths vary (PEM 64,
/// OpenSSH 70, MIME 76), so the line's length says nothing.
fn is_stray_entry(key: &str, value: &str) -> bool {
    let name = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let conventional = |upper: bool| {
        key.bytes().all(|b| {
            b.is_ascii_digit()
                || b == b'_'
                || (b.is_ascii_alphabetic() && b.is_ascii_uppercase() == upper)
        })
    };
    !name || (is_base64_tail(key, value) && !conventional(true) && !conventional(false))
}

/// Whether an entry could be the last, padded line of a base64 body: base64 characters, then
/// one or two `=` (the entry's own and its value's).
fn is_base64_tail(key: &str, value: &str) -> bool {
    !key.is_empty()
        && value.len() <= 1
        && value.bytes().all(|b| b == b'=')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
}

/// Removes the credentials from the `repository` URL of a build answer (a build or a list of
/// builds): an `external=true` build carries `https://convox:<rack password>@api.<domain>/<app>`
/// (spec §3.3, §3.13), and the rack keeps it, so every later get or list shows it too. The
/// password (or a token-like lone user) becomes `rgw-redacted`, for every caller: whoever holds
/// the rack password can bypass the gateway.
///
/// # Errors
/// The body is not JSON, or not a build or a list of builds.
pub fn scrub_external_build(body: &[u8]) -> Result<Vec<u8>, MaskError> {
    rewrite_string_fields(body, "repository", &mut |repository| {
        Ok(credential_ranges(repository, &looks_like_token)
            .into_iter()
            .map(|r| (r, REDACTED.to_owned()))
            .collect())
    })
}

/// Takes what `scrub` removes (the rack password, in the forms an answer quotes it) out of the
/// `manifest` of a release answer (a release or a list of them). A release copies its build's
/// manifest, which a build could read from anywhere in its process before the gateway held the
/// manifest's path inside the source; its `env` is left to the env masks, since `convox env
/// set` posts that back.
///
/// # Errors
/// The body is not JSON, or a `manifest` is neither a string nor null.
pub fn scrub_release_manifests(
    body: &[u8],
    scrub: &dyn Fn(&[u8]) -> Vec<u8>,
) -> Result<Vec<u8>, MaskError> {
    replace_string_fields(body, "manifest", &|manifest| {
        String::from_utf8_lossy(&scrub(manifest.as_bytes())).into_owned()
    })
}

/// Scrubs the `command` of a process answer (a process or a list of them) as the log records a
/// run's command ([`redact::scrub`]): the rack shows a `convox run` process with the command
/// it was started with, so `convox ps` would otherwise show a viewer the
/// `PGPASSWORD=… psql` the log itself keeps only scrubbed.
///
/// # Errors
/// The body is not JSON, or not a process or a list of processes.
pub fn scrub_process_commands(body: &[u8]) -> Result<Vec<u8>, MaskError> {
    replace_string_fields(body, "command", &redact::scrub)
}

/// Rewrites each string member named `field` (see [`rewrite_string_fields`]) whole, as
/// `replace` gives it; a member it gives back unchanged keeps its bytes.
fn replace_string_fields(
    body: &[u8],
    field: &str,
    replace: &dyn Fn(&str) -> String,
) -> Result<Vec<u8>, MaskError> {
    rewrite_string_fields(body, field, &mut |text| {
        let replaced = replace(text);
        Ok(if replaced == text {
            Vec::new()
        } else {
            vec![(0..text.len(), replaced)]
        })
    })
}

// === Restoring ===

/// The longest env line the rack reads: Go's `bufio.Scanner` holds at most 64 KiB
/// (`bufio.MaxScanTokenSize`), a line and its newline, and stops at a longer one, so the rack's
/// `Environment.Load` fails there, or keeps only the lines before it wherever its error is not
/// checked: the keys after the line, protected ones included, would be gone from the release.
pub const ENV_LINE_MAX: usize = 64 * 1024 - 1;

/// The number (from 1) of the first line of a posted env longer than [`ENV_LINE_MAX`] bytes
/// (a trailing `\r` counted, as it takes the scanner's room too).
pub fn overlong_line(env: &str) -> Option<usize> {
    env.split('\n')
        .position(|line| line.len() > ENV_LINE_MAX)
        .map(|i| i + 1)
}

/// The first key a posted env sets on more than one line to different values, as the rack
/// reads keys; `None` when each is set once, or again to the same value (as the padded base64
/// tail lines of one certificate held in two variables are, which `convox releases rollback`
/// posts back as read).
pub fn set_twice(env: &str) -> Option<String> {
    let env = Env::parse(env);
    let mut seen = std::collections::HashMap::new();
    env.entries()
        .find(|(key, value)| *seen.entry(*key).or_insert(*value) != *value)
        .map(|(key, _)| key.to_owned())
}

/// The first stray line (`Env::strays`: a line that sets nothing, or one whose key is made of a
/// value's bytes) that a posted env carries in clear rather than as a mask: its line number,
/// counting from 1.
///
/// A caller shown stray lines masked whole (one who may not read every value, or anyone once a
/// protected value is hidden) must not post one in clear: the answer to the post would show the
/// mask of each such line, made as the hidden line's is, so one release could test thousands
/// of guesses of a hidden line, without changing what the rack reads (it ignores lines that set
/// nothing). Such a caller posts stray lines back only as the masks it was shown: the proxy
/// refuses the first kind of caller by this, and [`restore_env_param`] the second.
pub fn stray_in_clear(env: &str) -> Option<usize> {
    Env::parse(env).stray_in_clear()
}

/// Whether restoring a posted `env` needs the app's current env: it carries a mask, or the app
/// has protected keys (whose change must be detected).
pub fn needs_current_env(env: &str, protected: &[String]) -> bool {
    env.contains(MASK_PREFIX) || !protected.is_empty()
}

/// Restores the masked values of an `env` posted to `POST /apps/{app}/releases` (what
/// `convox env set` and `env unset` post back after reading a masked env).
///
/// `current` is the env of the app's newest release (what the CLI read: see
/// [`Env::from_releases_json`]). A value equal to the mask of the current value of the same key
/// of the same app becomes that value; a line that is the whole-line mask of a stray line of
/// the current env (`Env::strays`, with its `=` when the rack reads it as an entry) becomes that
/// line; any other use of `rgw-masked:` is refused; and so is a protected value posted in clear,
/// and any difference, once restored, between the posted and the current value of a protected
/// key (added, removed or changed), and a stray line in clear once the current env holds a
/// protected value (every caller was shown the stray lines masked: [`stray_in_clear`]). Lines
/// are kept as posted but for restored ones.
///
/// # Errors
/// [`MaskError::MaskMisused`], [`MaskError::ProtectedChange`] or [`MaskError::LineInClear`]:
/// refuse the request (403, recorded as denied) and forward nothing.
pub fn restore_env_param(
    env: &str,
    app: &str,
    current: &Env,
    audit: &AuditKey,
    protected: &[String],
) -> Result<String, MaskError> {
    let posted = Env::parse(env);
    let masks = MaskKey::derive(audit)?;
    let current_values = current.to_map();
    // A line shown masked whole stands for that stray line of the current env, exactly, and
    // in the form it was shown: with its `=` when the rack reads it as an entry, else bare.
    // One mask per current stray line, looked up (the caller has read every one of them).
    let mut whole_lines: std::collections::HashMap<(String, bool), &str> =
        std::collections::HashMap::new();
    if env.contains(MASK_PREFIX) {
        for stray in current.strays() {
            let line = current.line(&stray.line);
            whole_lines.insert((masks.mask(app, "", line)?, stray.sets), line);
        }
    }
    let whole = |shown: &str, sets: bool| whole_lines.get(&(shown.to_owned(), sets)).copied();
    // The current value of each key, looked up once (the rack's last-wins), and its mask, made
    // once per key however many times it is posted.
    let mut expected: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    let misused_line = || MaskError::MaskMisused {
        key: "a line shown masked whole".to_owned(),
    };
    let mut splices: Vec<(Range<usize>, std::borrow::Cow<'_, str>)> = Vec::new();
    let mut effective: BTreeMap<&str, &str> = BTreeMap::new();
    for e in &posted.entries {
        let (key, value) = (posted.key(e), posted.value(e));
        if key.contains(MASK_PREFIX) {
            // `<mask>=`: an entry of the current env shown whole.
            let line = whole(key, true)
                .filter(|_| value.is_empty())
                .ok_or_else(misused_line)?;
            splices.push((e.key.start..e.value.end, line.into()));
            if let Some((k, v)) = line.split_once('=')
                && !k.trim().is_empty()
            {
                effective.insert(k.trim(), v);
            }
            continue;
        }
        if protected.iter().any(|p| p == key) && !value.contains(MASK_PREFIX) {
            // Unchanged or not, a protected value in clear is refused: a post that went
            // through when it matched would confirm a guess of a value no one may read.
            return Err(MaskError::ProtectedChange {
                key: key.to_owned(),
            });
        }
        let value = if value.contains(MASK_PREFIX) {
            let real = current_values.get(key).copied();
            let shown = match (real, expected.get(key)) {
                (Some(_), Some(shown)) => Some(shown.as_str()),
                (Some(real), None) => {
                    let shown = masks.mask(app, key, real)?;
                    Some(expected.entry(key).or_insert(shown).as_str())
                }
                (None, _) => None,
            };
            let real = real
                .filter(|_| shown.is_some_and(|shown| same_bytes(shown, value)))
                .ok_or_else(|| MaskError::MaskMisused {
                    key: key.to_owned(),
                })?;
            // The rack drops a line's last carriage return: a value that ends in one keeps it
            // only with another after it, unless the posted line already ends in one.
            let cr_follows = env.get(e.value.end..).is_some_and(|r| r.starts_with('\r'));
            let spliced = if real.ends_with('\r') && !cr_follows {
                format!("{real}\r").into()
            } else {
                real.into()
            };
            splices.push((e.value.clone(), spliced));
            real
        } else {
            value
        };
        effective.insert(key, value);
    }
    for r in &posted.others {
        let text = posted.line(r);
        if text.contains(MASK_PREFIX) {
            // A line that sets nothing, shown whole (`convox releases rollback` posts an
            // earlier release's env back as it read it).
            let line = whole(text, false).ok_or_else(misused_line)?;
            splices.push((r.clone(), line.into()));
        }
    }
    if protected
        .iter()
        .any(|p| current_values.contains_key(p.as_str()))
        && let Some(line) = posted.stray_in_clear()
    {
        return Err(MaskError::LineInClear { line });
    }
    splices.sort_by_key(|(r, _)| r.start);
    let mut out = String::with_capacity(env.len());
    let mut copied = 0;
    for (range, text) in splices {
        out.push_str(env.get(copied..range.start).unwrap_or_default());
        out.push_str(&text);
        copied = range.end;
    }
    out.push_str(env.get(copied..).unwrap_or_default());
    for key in protected {
        if effective.get(key.as_str()) != current_values.get(key.as_str()) {
            return Err(MaskError::ProtectedChange { key: key.clone() });
        }
    }
    // What the rack will read of the text forwarded is what was checked: each key's value as
    // posted, or as restored.
    let reread = Env::parse(&out);
    let reread = reread.to_map();
    if let Some((key, _)) = effective.iter().find(|(k, v)| reread.get(*k) != Some(*v)) {
        return Err(if protected.iter().any(|p| p == key) {
            MaskError::ProtectedChange {
                key: (*key).to_owned(),
            }
        } else {
            MaskError::Unrestorable {
                key: (*key).to_owned(),
            }
        });
    }
    Ok(out)
}

/// The protected key a one-off process's `Environment` would set, if any: the option is a
/// urlencoded map (spec §3.5) that the rack lays over the release's env for that process, so a
/// protected value could be swapped for a process that runs with the app's credentials. Keys
/// are read as Go's `url.ParseQuery` reads them (`+` a space, `%XX` decoded), and a key that
/// does not decode is compared as sent.
pub fn protected_in_run_env<'a>(environment: &str, protected: &'a [String]) -> Option<&'a str> {
    // `;` too: Go before 1.17 split pairs on it, and a rack built with it would.
    environment
        .split(['&', ';'])
        .map(|pair| pair.split_once('=').map_or(pair, |(k, _)| k))
        .map(|key| {
            let spaced = key.replace('+', " ");
            percent_encoding::percent_decode_str(&spaced)
                .decode_utf8()
                .map_or(spaced.clone(), |k| k.into_owned())
        })
        .find_map(|key| protected.iter().find(|p| **p == key).map(String::as_str))
}

// === JSON, read in place ===

/// A string member found in a top-level object of an answer.
struct Field {
    /// Which top-level object (0 for a single object; the index in a list).
    object: usize,
    /// The decoded string.
    decoded: String,
    /// For each decoded byte, where it starts in the body; one more for the closing quote.
    /// (`u32`: a body is at most [`MAX_MASKED_BODY`], and these take 4 bytes per byte of it.)
    offsets: Vec<u32>,
}

/// Rewrites the string members named `field` (Go's case-insensitive match) of an object or of
/// the objects of a list. `rewrite` returns edits in decoded coordinates; each replaces the
/// encoded bytes of its range with the JSON-escaped text, and nothing else changes.
fn rewrite_string_fields(
    body: &[u8],
    field: &str,
    rewrite: &mut dyn FnMut(&str) -> Result<Edits, MaskError>,
) -> Result<Vec<u8>, MaskError> {
    let mut splices: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    for f in string_fields(body, field)? {
        for (range, text) in rewrite(&f.decoded)? {
            let (Some(&start), Some(&end)) = (f.offsets.get(range.start), f.offsets.get(range.end))
            else {
                return Err(MaskError::Shape("an edit falls outside its string"));
            };
            let (start, end) = (start as usize, end as usize);
            let mut encoded = Vec::with_capacity(text.len());
            escape_go(&text, &mut encoded);
            splices.push((start..end, encoded));
        }
    }
    if splices.is_empty() {
        return Ok(body.to_vec());
    }
    splices.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(body.len() + 16 * splices.len());
    let mut copied = 0;
    for (range, text) in splices {
        if range.start < copied {
            return Err(MaskError::Shape("overlapping edits"));
        }
        out.extend_from_slice(body.get(copied..range.start).unwrap_or_default());
        out.extend_from_slice(&text);
        copied = range.end;
    }
    out.extend_from_slice(body.get(copied..).unwrap_or_default());
    Ok(out)
}

/// Validates the whole body as JSON and returns the string members named `field` of the
/// top-level object or of each object of a top-level list. A `null` list item or member is
/// skipped (Go decodes it as the zero value); any other kind of item or member is refused.
fn string_fields(body: &[u8], field: &str) -> Result<Vec<Field>, MaskError> {
    if let Err(e) = std::str::from_utf8(body) {
        return Err(MaskError::Json {
            at: e.valid_up_to(),
            what: "not UTF-8",
        });
    }
    let json = Json { b: body };
    let mut fields = Vec::new();
    let start = json.ws(0);
    let end = match body.get(start) {
        Some(b'{') => {
            let mut members = Vec::new();
            let end = json.object(start, 1, Some(&mut members))?;
            json.take_fields(0, members, field, &mut fields)?;
            end
        }
        Some(b'[') => {
            let mut items = Vec::new();
            let end = json.array(start, 1, Some(&mut items))?;
            for (index, item) in items.into_iter().enumerate() {
                match body.get(item.start) {
                    Some(b'{') => {
                        let mut members = Vec::new();
                        json.object(item.start, 2, Some(&mut members))?;
                        json.take_fields(index, members, field, &mut fields)?;
                    }
                    Some(b'n') => {}
                    _ => return Err(MaskError::Shape("a list item is not an object")),
                }
            }
            end
        }
        Some(b'n') => json.value(start, 1)?,
        Some(_) => {
            json.value(start, 1)?;
            return Err(MaskError::Shape("neither an object nor a list"));
        }
        None => return Err(json.err(start, "empty body")),
    };
    let rest = json.ws(end);
    if rest != body.len() {
        return Err(json.err(rest, "data after the value"));
    }
    Ok(fields)
}

/// A strict RFC 8259 reader over a body already known to be UTF-8.
struct Json<'a> {
    b: &'a [u8],
}

/// Replacements inside a decoded string: a byte range and the text to put there.
type Edits = Vec<(Range<usize>, String)>;

/// A member of an object: its decoded key and where its value lies.
type Member = (String, Range<usize>);

impl Json<'_> {
    fn err(&self, at: usize, what: &'static str) -> MaskError {
        MaskError::Json { at, what }
    }

    fn ws(&self, mut i: usize) -> usize {
        while matches!(self.b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    }

    fn take_fields(
        &self,
        object: usize,
        members: Vec<Member>,
        field: &str,
        out: &mut Vec<Field>,
    ) -> Result<(), MaskError> {
        for (key, value) in members {
            if !go_fold_eq(&key, field) {
                continue;
            }
            match self.b.get(value.start) {
                Some(b'"') => {
                    let (decoded, offsets, _) = self.string(value.start)?;
                    out.push(Field {
                        object,
                        decoded,
                        offsets,
                    });
                }
                Some(b'n') => {}
                _ => return Err(MaskError::Shape("a masked field is not a string")),
            }
        }
        Ok(())
    }

    /// The end of the value starting at `i` (no leading whitespace).
    fn value(&self, i: usize, depth: usize) -> Result<usize, MaskError> {
        match self.b.get(i) {
            Some(b'{') => self.object(i, depth + 1, None),
            Some(b'[') => self.array(i, depth + 1, None),
            Some(b'"') => self.skip_string(i),
            Some(b't') => self.literal(i, b"true"),
            Some(b'f') => self.literal(i, b"false"),
            Some(b'n') => self.literal(i, b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(i),
            Some(_) => Err(self.err(i, "unexpected character")),
            None => Err(self.err(i, "unexpected end")),
        }
    }

    fn object(
        &self,
        i: usize,
        depth: usize,
        mut members: Option<&mut Vec<Member>>,
    ) -> Result<usize, MaskError> {
        if depth > MAX_DEPTH {
            return Err(self.err(i, "nested too deeply"));
        }
        let mut i = self.ws(i + 1);
        if self.b.get(i) == Some(&b'}') {
            return Ok(i + 1);
        }
        loop {
            if self.b.get(i) != Some(&b'"') {
                return Err(self.err(i, "expected a member name"));
            }
            let (key, end) = match members {
                Some(_) => {
                    let (key, _, end) = self.string(i)?;
                    (Some(key), end)
                }
                None => (None, self.skip_string(i)?),
            };
            i = self.ws(end);
            if self.b.get(i) != Some(&b':') {
                return Err(self.err(i, "expected ':'"));
            }
            let start = self.ws(i + 1);
            let end = self.value(start, depth)?;
            if let (Some(list), Some(key)) = (members.as_deref_mut(), key) {
                list.push((key, start..end));
            }
            i = self.ws(end);
            match self.b.get(i) {
                Some(b',') => i = self.ws(i + 1),
                Some(b'}') => return Ok(i + 1),
                _ => return Err(self.err(i, "expected ',' or '}'")),
            }
        }
    }

    fn array(
        &self,
        i: usize,
        depth: usize,
        mut items: Option<&mut Vec<Range<usize>>>,
    ) -> Result<usize, MaskError> {
        if depth > MAX_DEPTH {
            return Err(self.err(i, "nested too deeply"));
        }
        let mut i = self.ws(i + 1);
        if self.b.get(i) == Some(&b']') {
            return Ok(i + 1);
        }
        loop {
            let end = self.value(i, depth)?;
            if let Some(list) = items.as_deref_mut() {
                list.push(i..end);
            }
            i = self.ws(end);
            match self.b.get(i) {
                Some(b',') => i = self.ws(i + 1),
                Some(b']') => return Ok(i + 1),
                _ => return Err(self.err(i, "expected ',' or ']'")),
            }
        }
    }

    fn literal(&self, i: usize, word: &[u8]) -> Result<usize, MaskError> {
        if self.b.get(i..i + word.len()) == Some(word) {
            Ok(i + word.len())
        } else {
            Err(self.err(i, "unexpected word"))
        }
    }

    fn number(&self, start: usize) -> Result<usize, MaskError> {
        let digits = |mut i: usize| {
            let from = i;
            while self.b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            (i, i > from)
        };
        let mut i = start;
        if self.b.get(i) == Some(&b'-') {
            i += 1;
        }
        match self.b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i).0,
            _ => return Err(self.err(i, "malformed number")),
        }
        if self.b.get(i) == Some(&b'.') {
            let (end, any) = digits(i + 1);
            if !any {
                return Err(self.err(i, "malformed number"));
            }
            i = end;
        }
        if matches!(self.b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(self.b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let (end, any) = digits(i);
            if !any {
                return Err(self.err(i, "malformed number"));
            }
            i = end;
        }
        Ok(i)
    }

    /// The end of the string starting at `i`, checked but not decoded.
    fn skip_string(&self, start: usize) -> Result<usize, MaskError> {
        let mut i = start + 1;
        loop {
            match self.b.get(i) {
                Some(b'"') => return Ok(i + 1),
                Some(b'\\') => i = self.escape(i)?.1,
                Some(b) if *b < 0x20 => return Err(self.err(i, "control character in a string")),
                Some(_) => i += 1,
                None => return Err(self.err(i, "unterminated string")),
            }
        }
    }

    /// The escape at `i` (a backslash): the code unit it stands for and where it ends.
    fn escape(&self, i: usize) -> Result<(u32, usize), MaskError> {
        let unit = match self.b.get(i + 1) {
            Some(b'"') => u32::from(b'"'),
            Some(b'\\') => u32::from(b'\\'),
            Some(b'/') => u32::from(b'/'),
            Some(b'b') => 0x08,
            Some(b'f') => 0x0C,
            Some(b'n') => u32::from(b'\n'),
            Some(b'r') => u32::from(b'\r'),
            Some(b't') => u32::from(b'\t'),
            Some(b'u') => {
                let hex = self
                    .b
                    .get(i + 2..i + 6)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or_else(|| self.err(i, "malformed \\u escape"))?;
                return Ok((hex, i + 6));
            }
            _ => return Err(self.err(i, "malformed escape")),
        };
        Ok((unit, i + 2))
    }

    /// Decodes the string at `start`: its text, the body offset where each of its bytes
    /// starts (plus the closing quote's), and where the token ends. Lone surrogates become
    /// U+FFFD, as Go decodes them.
    fn string(&self, start: usize) -> Result<(String, Vec<u32>, usize), MaskError> {
        let mut text = String::new();
        let mut offsets: Vec<u32> = Vec::new();
        let at = |i: usize| u32::try_from(i).map_err(|_| self.err(i, "the answer is too large"));
        let mut i = start + 1;
        loop {
            match self.b.get(i) {
                Some(b'"') => {
                    offsets.push(at(i)?);
                    return Ok((text, offsets, i + 1));
                }
                Some(b'\\') => {
                    let escape = at(i)?;
                    let (unit, next) = self.escape(i)?;
                    i = next;
                    let c = if (0xD800..0xDC00).contains(&unit) {
                        // A high surrogate: a low one must follow for a valid pair.
                        match (self.b.get(i), self.b.get(i + 1)) {
                            (Some(b'\\'), Some(b'u')) => {
                                let (low, after) = self.escape(i)?;
                                if (0xDC00..0xE000).contains(&low) {
                                    i = after;
                                    char::from_u32(
                                        0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00),
                                    )
                                } else {
                                    None
                                }
                            }
                            _ => None,
                        }
                    } else {
                        char::from_u32(unit)
                    };
                    let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                    offsets.extend(std::iter::repeat_n(escape, c.len_utf8()));
                    text.push(c);
                }
                Some(b) if *b < 0x20 => return Err(self.err(i, "control character in a string")),
                Some(_) => {
                    // Copy one whole UTF-8 character (the body is valid UTF-8).
                    let len = utf8_len(self.b.get(i).copied().unwrap_or(0));
                    let chunk = self
                        .b
                        .get(i..i + len)
                        .and_then(|c| std::str::from_utf8(c).ok())
                        .ok_or_else(|| self.err(i, "not UTF-8"))?;
                    text.push_str(chunk);
                    offsets.extend(at(i)?..at(i + len)?);
                    i += len;
                }
                None => return Err(self.err(i, "unterminated string")),
            }
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Go's `encoding/json` field matching: equal under simple case folding, where `ſ` (U+017F)
/// folds to `s` and the Kelvin sign (U+212A) to `k`.
fn go_fold_eq(key: &str, field: &str) -> bool {
    let fold = |c: char| match c {
        '\u{017F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    key.chars().map(fold).eq(field.chars().map(fold))
}

/// Appends `s` as the inside of a JSON string, escaped as Go's `json.Marshal` does (`<`, `>`,
/// `&`, U+2028 and U+2029 included).
fn escape_go(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                let n = u32::from(c);
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    let nibble = usize::try_from((n >> shift) & 0xF).unwrap_or(0);
                    out.push(HEX.get(nibble).copied().unwrap_or(b'0'));
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests;
