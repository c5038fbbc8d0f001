//! What of a request's parameters enters the log: plain values as sent, secret values as
//! `hmac-sha256:<hex>` under the audit key, and command lines after scrubbing by value.
//!
//! **Invariant:** no value of a parameter the route table classes as secret is recorded in
//! clear; command text keeps its shape but loses credentials in URLs, private keys, JWTs,
//! long high-entropy words and the values its flags and headers name as secret.

use std::borrow::Cow;

use crate::config::hmac_value;
use crate::identity::token;
use crate::keys::AuditKey;
use crate::policy::canonical::{Param, Part, Tail};
use crate::policy::routes::{KeyClass, RouteRule};
use crate::proxy::secret_text::{credential_ranges, looks_like_token, pair_name_secret};

/// The parameters as recorded in `CommandRequested`. A secret query parameter's key is the
/// caller's own text on the proxy routes (the query of what serves behind the rack, where a
/// webhook may take its secret as a key): one that reads as a secret is recorded as
/// `[redacted]`, its value as an HMAC all the same.
pub fn params(params: &[Param], audit: &AuditKey) -> Vec<(String, String)> {
    params
        .iter()
        .map(|p| {
            let value = match p.class {
                KeyClass::Plain => p.value.clone(),
                KeyClass::Secret => hmac_value(audit, &p.value),
                KeyClass::Command => scrub(&p.value),
            };
            let key = if p.part == Part::Query
                && p.class == KeyClass::Secret
                && holds_secret_word(&p.key)
            {
                REDACTED.to_owned()
            } else {
                p.key.clone()
            };
            (key, value)
        })
        .collect()
}

/// The most bytes of a user agent recorded, the cut's ellipsis included: every event of the
/// call carries it, and a header may be tens of kilobytes.
pub const MAX_USER_AGENT: usize = 512;

/// The user agent as every event of a call records it (on both listeners): its one value,
/// scrubbed like a command line (a CI job may put a URL with a token there), cut to at most
/// [`MAX_USER_AGENT`] bytes, ending in `…` when cut; empty when it is absent or sent twice.
pub fn user_agent(headers: &http::HeaderMap) -> String {
    let mut agent = scrub(
        &crate::proxy::headers::single(headers, http::header::USER_AGENT).unwrap_or_default(),
    );
    if agent.len() > MAX_USER_AGENT {
        let mut cut = MAX_USER_AGENT - '…'.len_utf8();
        while !agent.is_char_boundary(cut) {
            cut -= 1;
        }
        agent.truncate(cut);
        agent.push('…');
    }
    agent
}

/// How a PEM block (a private key) opens: text holding one is withheld whole.
const PEM_BEGIN: &str = "-----BEGIN";

/// What replaces a secret in recorded text: a path segment, a command word or part of one.
const REDACTED: &str = "[redacted]";

/// `text` with every gateway token's secret in it (`rgw_` and a run of 43 or more URL-safe
/// base64 characters, as a path segment or inside one: a `….tgz` name, a registry's
/// `user:…@host`) replaced by `[redacted]`, the whole run with it. Every `CommandRequested`
/// path goes through it, on both listeners, so a token pasted into a URL never enters the log;
/// everything else is kept as it is, since a routed path's segments are the names the rack was
/// sent. The token client shows an answer it cannot read through it too.
pub fn gateway_tokens(text: &str) -> Cow<'_, str> {
    let b64url = |b: &&u8| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_';
    let mut out = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(at) = text.get(from..).and_then(|rest| rest.find(token::PREFIX)) {
        let start = from + at;
        let after = start + token::PREFIX.len();
        // The whole run of token characters goes, so a secret cannot hide behind a decoy
        // (`rgw_rgw_…`, `rgw_backup_…`) whose match would end inside it.
        let run = text
            .as_bytes()
            .get(after..)
            .unwrap_or_default()
            .iter()
            .take_while(b64url)
            .count();
        if run >= token::ENCODED_LEN {
            out.push_str(text.get(copied..start).unwrap_or_default());
            out.push_str(REDACTED);
            copied = after + run;
            from = copied;
        } else {
            from = after;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

/// Whether `text` holds a gateway token's secret, as [`gateway_tokens`] finds one: text that
/// would be kept or sent with it is refused rather than rewritten.
pub fn holds_gateway_token(text: &str) -> bool {
    matches!(gateway_tokens(text), Cow::Owned(_))
}

/// The longest unrouted path recorded; a longer one is cut and marked, so a caller cannot make
/// one record as large as the header block allows (64 KiB).
pub const MAX_RECORDED_PATH: usize = 256;

/// The longest method recorded: the HTTP parser takes a method of any length, and every
/// recorded call (a miss included) names its method.
pub const MAX_RECORDED_METHOD: usize = 32;

/// A path that matched no route, as recorded: the caller's free text, so each segment that,
/// percent-decoded, reads as a secret in a command line would (a token, a long random word, a
/// URL's password, `token=…`) becomes `[redacted]` whole. The slashes stay, so a probe keeps
/// its shape; the whole is cut to [`MAX_RECORDED_PATH`] bytes.
pub fn unrouted_path(path: &str) -> Cow<'_, str> {
    match secret_segments(path) {
        Cow::Borrowed(path) => cut(path, MAX_RECORDED_PATH),
        Cow::Owned(redacted) => Cow::Owned(cut(&redacted, MAX_RECORDED_PATH).into_owned()),
    }
}

/// A routed path as recorded. The names of the rack's own resources are kept as sent, but the
/// tail of the HTTP proxy route is a path of whatever serves behind the rack, where a webhook's
/// secret or a signed link may stand: its secret-looking segments go as an unrouted path's do
/// (its query is recorded as HMACs, like any secret parameter).
pub fn routed_path<'a>(route: &RouteRule, path: &'a str) -> Cow<'a, str> {
    if route.tail == Some(Tail::HttpPath) {
        secret_segments(path)
    } else {
        Cow::Borrowed(path)
    }
}

/// `path` with each segment that, percent-decoded, reads as a secret replaced by `[redacted]`.
fn secret_segments(path: &str) -> Cow<'_, str> {
    let secret = |segment: &str| {
        let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
        scrub_word(&decoded) != decoded
    };
    if !path.split('/').any(secret) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(
        path.split('/')
            .map(|s| if secret(s) { REDACTED } else { s })
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// `text` cut to at most `max` bytes (at a character boundary) and marked with `…` when
/// longer.
pub fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// Replaces likely secrets in free text, word by word; the whitespace between words is kept.
/// A secret also goes when the word before says what it is: the value after a flag whose name
/// says secret (`--password hunter2`, as `--password=hunter2` would be), the value of a header
/// whose name says so (`X-Api-Key: …`, and an `Authorization:` header's credentials after their
/// scheme), and the password of `user:password` after curl's `-u`/`--user`. A secret value that
/// opens a quote (`--password 'two words'`, `PGPASSWORD="a b"`) goes to the word that closes it.
pub fn scrub(text: &str) -> String {
    if text.contains(PEM_BEGIN) {
        return "[redacted: private key]".to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut named = Named::Nothing;
    while !rest.is_empty() {
        let word = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&rest[..word]);
        rest = &rest[word..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        let (scrubbed, next) = match named {
            Named::Header if auth_scheme(word) => (word.to_owned(), Named::Secret),
            Named::Header | Named::Secret => (REDACTED.to_owned(), Named::quoted(word)),
            Named::Quoted(q) if word.contains(q) => (REDACTED.to_owned(), Named::Nothing),
            Named::Quoted(q) => (REDACTED.to_owned(), Named::Quoted(q)),
            Named::UserPassword => match word.split_once(':') {
                Some((user, _)) => (
                    format!("{}:{REDACTED}", scrub_word(user)),
                    Named::quoted(word),
                ),
                None => (scrub_word(word), Named::Nothing),
            },
            Named::Nothing => {
                let scrubbed = scrub_word(word);
                // A word that is itself a secret (`-pMySuperSecretPassword2024`) names nothing,
                // but may open a quote its value goes on in (`NAME='two words'`).
                let next = if scrubbed == word {
                    Named::of(word)
                } else {
                    Named::quoted(word.split_once('=').map_or(word, |(_, value)| value))
                };
                (scrubbed, next)
            }
        };
        out.push_str(&scrubbed);
        named = next;
        rest = &rest[end..];
    }
    out
}

/// Whether any word of `text`, judged alone, is a secret as [`scrub`] sees one: what an
/// operator types for the log to keep (a token's name, a reason for revoking one) is checked
/// with this. Not by the words around it: `leaked in an Authorization: header` says what
/// happened, and refusing it would stand in the way of a revocation.
pub fn holds_secret_word(text: &str) -> bool {
    text.contains(PEM_BEGIN) || text.split_whitespace().any(|w| scrub_word(w) != w)
}

/// What a command word says of the word after it.
#[derive(Clone, Copy)]
enum Named {
    Nothing,
    /// The next word is a secret: a secret-named flag's or header's value, credentials.
    Secret,
    /// The next word is an `Authorization` header's value: a scheme, or the credentials.
    Header,
    /// The next word may be `user:password` (curl's `-u`, `--user`).
    UserPassword,
    /// A secret value opened this quote: the words up to the one that closes it go too.
    Quoted(char),
}

impl Named {
    fn of(word: &str) -> Self {
        let bare = word.trim_matches(|c| matches!(c, '"' | '\''));
        let lower = bare.to_ascii_lowercase();
        if let Some(value) = lower
            .find("authorization:")
            .map(|at| &bare[at + "authorization:".len()..])
        {
            return match value {
                "" => Self::Header,
                v if auth_scheme(v) => Self::Secret,
                _ => Self::Nothing,
            };
        }
        // A header whose name says secret: `X-Api-Key:`, `PRIVATE-TOKEN:`.
        if let Some(name) = bare.strip_suffix(':')
            && !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && pair_name_secret(name)
        {
            return Self::Secret;
        }
        let Some(flag) = bare.strip_prefix('-') else {
            return Self::Nothing;
        };
        let name = flag.trim_start_matches('-');
        if name.is_empty() || name.contains('=') {
            Self::Nothing
        } else if pair_name_secret(name) {
            Self::Secret
        } else if matches!(bare, "-u" | "--user") {
            Self::UserPassword
        } else {
            Self::Nothing
        }
    }

    /// After a secret `value`: whether it opened a quote it does not close, which its later
    /// words are inside. Whatever quote it stands in (`sh -c "… --password 'a b' …"`), its own
    /// is the one that ends it.
    fn quoted(value: &str) -> Self {
        match value.chars().next() {
            Some(q @ ('"' | '\'')) if !value[1..].contains(q) => Self::Quoted(q),
            _ => Self::Nothing,
        }
    }
}

/// An HTTP authorization scheme, whose credentials follow it as the next word.
fn auth_scheme(word: &str) -> bool {
    let bare = word.trim_matches(|c| matches!(c, '"' | '\''));
    ["bearer", "basic", "token", "digest"]
        .iter()
        .any(|s| bare.eq_ignore_ascii_case(s))
}

fn scrub_word(word: &str) -> String {
    let word = scrub_userinfo(word);
    // KEY=value where the name or the value says secret, and bare secret-looking words.
    if let Some((k, v)) = word.split_once('=')
        && !v.is_empty()
        && (pair_name_secret(k) || looks_secret(v))
    {
        return format!("{k}={REDACTED}");
    }
    if looks_secret(&word) {
        return REDACTED.to_owned();
    }
    word
}

/// Every credential in `word` (see [`credential_ranges`]) replaced by `[redacted]`: a URL's
/// `user:password@` keeps its user, a lone user that [`looks_secret`] goes.
fn scrub_userinfo(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut copied = 0;
    for r in credential_ranges(word, &looks_secret) {
        out.push_str(word.get(copied..r.start).unwrap_or_default());
        out.push_str(REDACTED);
        copied = r.end;
    }
    out.push_str(word.get(copied..).unwrap_or_default());
    out
}

/// Secret material by its looks ([`looks_like_token`]), or any long dense word mixing cases or
/// digits (`-pMySuperSecretPassword2024`). The second rule is the log's alone: a command word
/// wrongly redacted costs an auditor a little context, whereas the env values a reader is
/// shown are hidden by [`looks_like_token`] only, so that ordinary values stay readable.
fn looks_secret(w: &str) -> bool {
    looks_like_token(w) || dense_mixed(w)
}

fn dense_mixed(w: &str) -> bool {
    if w.len() < 24 {
        return false;
    }
    let classes = [
        w.bytes().any(|b| b.is_ascii_lowercase()),
        w.bytes().any(|b| b.is_ascii_uppercase()),
        w.bytes().any(|b| b.is_ascii_digit()),
    ];
    // `/` is not dense: base64 holds a few, a path's many keep it readable.
    let dense = w
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'-' | b'='))
        .count();
    classes.iter().filter(|c| **c).count() >= 2 && dense * 10 >= w.len() * 9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::token::TokenSecret;

    #[test]
    fn paths_lose_pasted_secrets_and_keep_their_shape() {
        let token = TokenSecret::generate().unwrap();
        let secret = token.expose();
        assert_eq!(
            gateway_tokens(&format!("/apps/{secret}/releases")),
            "/apps/[redacted]/releases"
        );
        // Inside a segment too.
        assert_eq!(
            gateway_tokens(&format!("/apps/x/builds/{secret}.tgz")),
            "/apps/x/builds/[redacted].tgz"
        );
        assert_eq!(
            gateway_tokens(&format!("/registries/ci:{secret}@ghcr.io")),
            "/registries/ci:[redacted]@ghcr.io"
        );
        // A decoy in front of it does not leave any of it behind.
        for decoy in [
            "rgw_",
            "rgw_backup_",
            "rgw_0123456789abcdefghijABCDEFGHIJ012345678",
        ] {
            assert_eq!(
                gateway_tokens(&format!("/apps/{decoy}{secret}/x")),
                "/apps/[redacted]/x",
                "{decoy}"
            );
        }
        // Only a token's shape goes from a routed path: the rest is what the rack got.
        assert_eq!(
            gateway_tokens("/apps/rgw_backup/objects/x"),
            "/apps/rgw_backup/objects/x"
        );
        let key = "tmp/0f9e8d7c6b5a49382716a5b4c3d2e1f0.tgz";
        assert_eq!(gateway_tokens(key), key);
        // An unrouted path loses whatever reads as a secret, escaped or not.
        assert_eq!(
            unrouted_path(&format!("/x/{}/y", secret.replace('_', "%5F"))),
            "/x/[redacted]/y"
        );
        assert_eq!(
            unrouted_path("/hook/token=hunter2/ghp_0123456789abcdefghijABCDEFGHIJ012345"),
            "/hook/[redacted]/[redacted]"
        );
        assert_eq!(unrouted_path("/no/such/route"), "/no/such/route");
        assert!(matches!(unrouted_path("/a/b"), Cow::Borrowed(_)));
        // Cut and marked past the bound, at a character boundary.
        let long = format!("/{}", "a".repeat(2 * MAX_RECORDED_PATH));
        let cut_path = unrouted_path(&long);
        assert_eq!(cut_path.len(), MAX_RECORDED_PATH + "…".len());
        assert!(cut_path.ends_with('…'));
        let multibyte = format!("/{}", "é".repeat(MAX_RECORDED_PATH));
        assert!(unrouted_path(&multibyte).ends_with('…'));
        assert_eq!(cut("GET", MAX_RECORDED_METHOD), "GET");
    }

    #[test]
    fn commands_keep_their_shape_and_lose_their_secrets() {
        assert_eq!(scrub("ls -la /app"), "ls -la /app");
        assert_eq!(
            scrub("psql postgres://admin:hunter2@db:5432/app"),
            "psql postgres://admin:[redacted]@db:5432/app"
        );
        assert_eq!(
            scrub("curl -H token=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
            "curl -H token=[redacted]"
        );
        assert_eq!(
            scrub("echo eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"),
            "echo [redacted]"
        );
        assert_eq!(
            scrub("cat <<EOF\n-----BEGIN RSA PRIVATE KEY-----"),
            "[redacted: private key]"
        );
        assert_eq!(scrub("bin/migrate --verbose"), "bin/migrate --verbose");
    }

    #[test]
    fn secrets_with_slashes_names_or_odd_urls_are_scrubbed_too() {
        // Base64 material holds `/`; a path's many slashes keep it readable.
        assert_eq!(
            scrub("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY aws s3 ls"),
            "AWS_SECRET_ACCESS_KEY=[redacted] aws s3 ls"
        );
        assert_eq!(
            scrub("echo wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            "echo [redacted]"
        );
        assert_eq!(
            scrub("ls /usr/lib/x86_64-linux-gnu/libSomething2.so"),
            "ls /usr/lib/x86_64-linux-gnu/libSomething2.so"
        );
        // A name that says secret hides even a short value.
        assert_eq!(
            scrub("PGPASSWORD=hunter2 psql --api-token=abc"),
            "PGPASSWORD=[redacted] psql --api-token=[redacted]"
        );
        // A token as the URL's user; a plain user stays.
        assert_eq!(
            scrub("git clone https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r"),
            "git clone https://[redacted]@github.com/o/r"
        );
        assert_eq!(
            scrub("git clone ssh://git@github.com/o/r"),
            "git clone ssh://git@github.com/o/r"
        );
        // A raw `@` in the password, and two URLs in one word.
        assert_eq!(
            scrub("psql postgres://u:p@ss@host/db"),
            "psql postgres://u:[redacted]@host/db"
        );
        assert_eq!(
            scrub("x a://u:p@h,b://v:p2@h2"),
            "x a://u:[redacted]@h,b://v:[redacted]@h2"
        );
        // A memorable password glued to its flag, and a DSN without a scheme.
        assert_eq!(
            scrub("mysql -pMySuperSecretPassword2024 app"),
            "mysql [redacted] app"
        );
        assert_eq!(
            scrub("migrate app:s3cr3t@tcp(db:3306)/app"),
            "migrate app:[redacted]@tcp(db:3306)/app"
        );
        // A lone URL user that only the log's dense-word rule takes for a token, and a URL
        // right after a multi-byte character.
        assert_eq!(
            scrub("git clone https://3f9a2c7d1e8b4f60a5c9d2e7@git.example.com/o/r"),
            "git clone https://[redacted]@git.example.com/o/r"
        );
        assert_eq!(
            scrub("x \u{2192}postgres://u:hunter2@db/app"),
            "x \u{2192}postgres://u:[redacted]@db/app"
        );
        // Words are split at any whitespace, which is kept as it was.
        assert_eq!(
            scrub("sh -c\tTOKEN=abc\nls  -la"),
            "sh -c\tTOKEN=[redacted]\nls  -la"
        );
    }

    #[test]
    fn a_secret_named_by_the_word_before_it_is_scrubbed() {
        // A secret-named flag's value as its own word, as with `=`.
        assert_eq!(
            scrub("mysql --password hunter2 -h db"),
            "mysql --password [redacted] -h db"
        );
        assert_eq!(
            scrub("deploy --api-token abc --client-secret 'p w  x' -v"),
            "deploy --api-token [redacted] --client-secret [redacted] [redacted]  [redacted] -v"
        );
        // Credentials after an authorization scheme or header name, quoted or not.
        assert_eq!(
            scrub("curl -H \"Authorization: Bearer abc123\" https://api"),
            "curl -H \"Authorization: Bearer [redacted] https://api"
        );
        assert_eq!(
            scrub("curl -H 'Authorization: hunter2' x"),
            "curl -H 'Authorization: [redacted] x"
        );
        assert_eq!(
            scrub("http :80 Authorization:'token abc' x"),
            "http :80 Authorization:'token [redacted] x"
        );
        // Without the header's name, a scheme's name is an ordinary word.
        assert_eq!(scrub("basic token for ci"), "basic token for ci");
        // Any header whose name says secret.
        assert_eq!(
            scrub("curl -H 'X-Api-Key: hunter2hunter2' x"),
            "curl -H 'X-Api-Key: [redacted] x"
        );
        assert_eq!(
            scrub("curl -H PRIVATE-TOKEN: abc x"),
            "curl -H PRIVATE-TOKEN: [redacted] x"
        );
        // A quoted secret goes to its closing quote in every form, inside another quote too.
        assert_eq!(
            scrub("curl -u 'alice:pass word' x"),
            "curl -u 'alice:[redacted] [redacted] x"
        );
        assert_eq!(
            scrub("PGPASSWORD='two words' psql"),
            "PGPASSWORD=[redacted] [redacted] psql"
        );
        assert_eq!(
            scrub("sh -c \"mysql --password 'a b' db\""),
            "sh -c \"mysql --password [redacted] [redacted] db\""
        );
        // curl's user and password: the user stays.
        assert_eq!(
            scrub("curl -u alice:hunter2 https://api"),
            "curl -u alice:[redacted] https://api"
        );
        assert_eq!(scrub("curl --user alice x"), "curl --user alice x");
        // Flags that name nothing secret, and a flag with its value glued on, are as before.
        assert_eq!(
            scrub("rake db:migrate --verbose true -p 5432"),
            "rake db:migrate --verbose true -p 5432"
        );
        assert_eq!(scrub("x --token=abc y"), "x --token=[redacted] y");
        assert_eq!(scrub("--password"), "--password");
    }

    #[test]
    fn text_typed_for_the_log_is_judged_word_by_word() {
        // What an operator writes about a leak is not refused for the words around it.
        for plain in [
            "leaked in an Authorization: header",
            "old --token leaked",
            "rotated after curl -u alice:x",
        ] {
            assert!(!holds_secret_word(plain), "{plain}");
        }
        for secret in [
            "pasted ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "postgres://u:hunter2@db/app",
            "-----BEGIN PRIVATE KEY-----",
        ] {
            assert!(holds_secret_word(secret), "{secret}");
        }
    }

    #[test]
    fn a_user_agent_is_recorded_once_scrubbed_and_bounded() {
        let agent = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(http::header::USER_AGENT, v.parse().unwrap());
            }
            user_agent(&h)
        };
        assert_eq!(agent(&["convox.go/dev"]), "convox.go/dev");
        assert_eq!(agent(&["a", "b"]), "", "a second value is not taken");
        assert_eq!(
            agent(&["ci postgres://u:hunter2@db/app"]),
            "ci postgres://u:[redacted]@db/app"
        );
        let long = agent(&[&"word ".repeat(400)]);
        assert_eq!(long.len(), MAX_USER_AGENT);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn secret_params_become_hmacs() {
        let audit = AuditKey([1; 32]);
        let recorded = params(
            &[
                Param {
                    part: Part::Form,
                    key: "env".into(),
                    value: "SECRET=s3cr3t".into(),
                    class: KeyClass::Secret,
                },
                Param {
                    part: Part::Form,
                    key: "description".into(),
                    value: "hello".into(),
                    class: KeyClass::Plain,
                },
            ],
            &audit,
        );
        // Keyed under the audit key (a known answer, from another implementation): a plain
        // SHA-256 would let whoever reads the log test guesses against it.
        assert_eq!(
            recorded[0].1,
            "hmac-sha256:6abf07cd6d968955c58af36e4e1f06873e22336e8eff5969264576f63af5fcff"
        );
        assert_eq!(recorded[1].1, "hello");
        // A proxy route's query keys are the caller's text: a secret-looking one goes.
        let github = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
        let query = |key: &str| Param {
            part: Part::Query,
            key: key.into(),
            value: String::new(),
            class: KeyClass::Secret,
        };
        let spaced = format!("token {github}");
        let recorded = params(
            &[query(github), query("sig"), query(&spaced), query("page")],
            &audit,
        );
        let keys: Vec<&str> = recorded.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["[redacted]", "sig", "[redacted]", "page"]);
        assert!(recorded.iter().all(|(_, v)| v
            == "hmac-sha256:2e72eb6626e1d4f7fc6dff111585898f2e37c471a68862f07f10aa2824d57c75"));
    }
}
