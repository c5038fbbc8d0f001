//! Reading the configuration: the TOML file, then `RACK_GATEWAY_*` overrides, then checks.
//!
//! **Invariant:** every key the gateway reads is listed in [`KEYS`] with its environment
//! variable; an unknown key in the file, a malformed value or an unsafe combination (plain HTTP
//! on a non-loopback address without trusted proxies, a rack password written in the file) is
//! refused with the key and the reason.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Checkpoints, Config, Limits, Rack, Secret, Tls};

/// Every key: its dotted name in the file and the environment variable that overrides it.
pub const KEYS: &[(&str, &str)] = &[
    ("data", "RACK_GATEWAY_DATA"),
    ("proxy.listen", "RACK_GATEWAY_PROXY_LISTEN"),
    ("console.listen", "RACK_GATEWAY_CONSOLE_LISTEN"),
    ("tls.cert", "RACK_GATEWAY_TLS_CERT"),
    ("tls.key", "RACK_GATEWAY_TLS_KEY"),
    ("trusted_proxies", "RACK_GATEWAY_TRUSTED_PROXIES"),
    ("protected_env", "RACK_GATEWAY_PROTECTED_ENV"),
    ("rack.url", "RACK_GATEWAY_RACK_URL"),
    ("rack.password", "RACK_GATEWAY_RACK_PASSWORD"),
    ("rack.password_file", "RACK_GATEWAY_RACK_PASSWORD_FILE"),
    ("rack.ca_file", "RACK_GATEWAY_RACK_CA_FILE"),
    ("rack.pin_sha256", "RACK_GATEWAY_RACK_PIN_SHA256"),
    (
        "rack.insecure_skip_verify",
        "RACK_GATEWAY_RACK_INSECURE_SKIP_VERIFY",
    ),
    ("checkpoints.every", "RACK_GATEWAY_CHECKPOINTS_EVERY"),
    (
        "checkpoints.after_secs",
        "RACK_GATEWAY_CHECKPOINTS_AFTER_SECS",
    ),
    (
        "checkpoints.heartbeat_secs",
        "RACK_GATEWAY_CHECKPOINTS_HEARTBEAT_SECS",
    ),
    (
        "limits.per_ip_per_minute",
        "RACK_GATEWAY_LIMITS_PER_IP_PER_MINUTE",
    ),
    (
        "limits.streams_per_principal",
        "RACK_GATEWAY_LIMITS_STREAMS_PER_PRINCIPAL",
    ),
    (
        "limits.header_timeout_secs",
        "RACK_GATEWAY_LIMITS_HEADER_TIMEOUT_SECS",
    ),
    (
        "limits.stream_idle_secs",
        "RACK_GATEWAY_LIMITS_STREAM_IDLE_SECS",
    ),
    (
        "limits.form_timeout_secs",
        "RACK_GATEWAY_LIMITS_FORM_TIMEOUT_SECS",
    ),
];

/// The keys whose value is a list: an array in the file, comma-separated in a variable.
const LISTS: &[&str] = &["trusted_proxies", "protected_env"];

/// Keys whose TOML value is `true` or `false`, and keys whose value is a whole number; every
/// other key takes a string (a list key, a list of strings or one string of commas). The
/// environment gives each as text, parsed the same way.
const BOOLEANS: &[&str] = &["rack.insecure_skip_verify"];
const INTEGERS: &[&str] = &[
    "checkpoints.every",
    "checkpoints.after_secs",
    "checkpoints.heartbeat_secs",
    "limits.per_ip_per_minute",
    "limits.streams_per_principal",
    "limits.header_timeout_secs",
    "limits.stream_idle_secs",
    "limits.form_timeout_secs",
];

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {what}")]
    Read { path: PathBuf, what: String },
    #[error("{path}: not valid TOML: {what}")]
    Toml { path: PathBuf, what: String },
    #[error("{key}: unknown configuration key")]
    Unknown { key: String },
    #[error("{key} (from {source_name}): {what}")]
    Value {
        key: &'static str,
        source_name: String,
        what: String,
    },
    #[error("{key}: required")]
    Missing { key: &'static str },
    #[error("{key}: not set, but {other} is: set both, or neither for plain HTTP")]
    TlsHalf { key: &'static str, other: String },
    #[error("{0}")]
    Unsafe(String),
    #[error(
        "{name}: not a configuration variable (a misspelled override would be ignored); the \
         variables are listed in src/config/file.rs"
    )]
    UnknownVariable { name: String },
    #[error("{name}: its value is not UTF-8")]
    NotUnicode { name: String },
    #[error(
        "{name}: set but empty (a template's unset variable?); unset it to keep the file's value \
         or the default, or write an empty value in the configuration file"
    )]
    Empty { name: String },
}

/// The longest duration a `*_secs` key takes: a day.
const MAX_SECS: u64 = 86_400;

/// The prefix of every override, and of the CLI's token variable.
const PREFIX: &str = "RACK_GATEWAY_";

/// The `RACK_GATEWAY_*` overrides among `vars` (the process's environment), by name.
///
/// **Invariant:** every such variable is used or refused. One misspelled (say
/// `RACK_GATEWAY_PROTECTED_ENVS`) would otherwise leave the file's or the default value in
/// force with nothing to show it, a value that is not UTF-8 would read as unset, and an empty
/// one (an unset template variable) would clear the file's value. `allowed`
/// names the variables of the prefix that other commands read (the CLI's token).
pub fn overrides(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    allowed: &[&str],
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, value) in vars {
        let Some(name) = name.to_str() else {
            // A name that is not UTF-8 cannot be one of ours.
            continue;
        };
        // In any case: `rack_gateway_data` is a misspelling as much as a wrong word is.
        let ours = name
            .get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX));
        if !ours || allowed.contains(&name) {
            continue;
        }
        if !KEYS.iter().any(|(_, var)| *var == name) {
            return Err(ConfigError::UnknownVariable {
                name: name.to_owned(),
            });
        }
        let value = value.into_string().map_err(|_| ConfigError::NotUnicode {
            name: name.to_owned(),
        })?;
        // `RACK_GATEWAY_PROTECTED_ENV=${UNSET}` would drop every protected key, and an empty
        // list of trusted proxies or limits is never what a template meant either; nor is a
        // list of empty entries (`${GLOBAL},${APP}` with both unset).
        if value.split(',').all(|entry| entry.trim().is_empty()) {
            return Err(ConfigError::Empty {
                name: name.to_owned(),
            });
        }
        out.insert(name.to_owned(), value);
    }
    Ok(out)
}

/// A value and where it came from, for error messages.
struct Raw {
    text: String,
    from: String,
    /// Set by an environment variable, not the file.
    from_env: bool,
}

/// Loads `path` (if given), applies the overrides `env` returns, and checks the result.
pub fn load(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut raw: BTreeMap<&'static str, Raw> = BTreeMap::new();
    if let Some(path) = path {
        // It decides where the rack password goes: no one but its owner may change it.
        let read = |what: String| ConfigError::Read {
            path: path.to_owned(),
            what,
        };
        let bytes = crate::keys::read_trusted(path).map_err(|e| read(e.reason()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            read(format!(
                "is not UTF-8 (byte {} is not), as TOML must be",
                e.utf8_error().valid_up_to()
            ))
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml {
                path: path.to_owned(),
                // The message and the line, never the line's text: it may hold a secret.
                what: match e.span() {
                    Some(span) => format!(
                        "line {}: {}",
                        text.as_bytes()
                            .iter()
                            .take(span.start)
                            .filter(|b| **b == b'\n')
                            .count()
                            + 1,
                        without_quoted_numbers(e.message())
                    ),
                    None => without_quoted_numbers(e.message()),
                },
            })?;
        flatten(&table, "", path, &mut raw)?;
    }
    for (key, var) in KEYS {
        if let Some(v) = env(var) {
            raw.insert(
                key,
                Raw {
                    text: v,
                    from: (*var).to_owned(),
                    from_env: true,
                },
            );
        }
    }
    build(&raw)
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    path: &Path,
    out: &mut BTreeMap<&'static str, Raw>,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let dotted = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        // Before any other judgement of its shape, which might read as advice to write it.
        if dotted == "rack.password" {
            return Err(ConfigError::Unsafe(format!(
                "{}: rack.password must not be written in the configuration file; use \
                 RACK_GATEWAY_RACK_PASSWORD or rack.password_file",
                path.display()
            )));
        }
        // `"proxy.listen" = …` is one key with a dot in its name, not the proxy table's
        // `listen`: taken as that, it would stand beside `[proxy] listen` and one would win.
        if k.contains('.') {
            return Err(ConfigError::Unknown {
                key: format!("{dotted:?} (a quoted name with a dot; write [section] name = …)"),
            });
        }
        if let toml::Value::Table(inner) = v {
            // A table where a value goes (`cert = {}`), or an empty one no key lives in (a
            // misspelt `[limts]`), would otherwise be read as nothing at all.
            if let Some((key, _)) = KEYS.iter().find(|(key, _)| *key == dotted) {
                return Err(ConfigError::Value {
                    key,
                    source_name: path.display().to_string(),
                    what: "takes a value, not a table".into(),
                });
            }
            let section = format!("{dotted}.");
            if inner.is_empty() && !KEYS.iter().any(|(key, _)| key.starts_with(&section)) {
                return Err(ConfigError::Unknown {
                    key: format!("[{dotted}] (an empty table no key belongs to)"),
                });
            }
            flatten(inner, &dotted, path, out)?;
            continue;
        }
        let Some((key, _)) = KEYS.iter().find(|(key, _)| *key == dotted) else {
            return Err(ConfigError::Unknown { key: dotted });
        };
        let mistyped = |what: String| ConfigError::Value {
            key,
            source_name: path.display().to_string(),
            what,
        };
        let (boolean, integer) = (BOOLEANS.contains(key), INTEGERS.contains(key));
        let text = match v {
            toml::Value::Boolean(b) if boolean => b.to_string(),
            toml::Value::Integer(i) if integer => i.to_string(),
            toml::Value::String(s) if !boolean && !integer => s.clone(),
            // A list where one value goes (`insecure_skip_verify = [true]`) is not that value.
            toml::Value::Array(_) if !LISTS.contains(key) => {
                return Err(mistyped("takes one value, not a list".into()));
            }
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str().map(str::to_owned).ok_or_else(|| {
                        mistyped(format!("takes a list of strings, and {i} is {}", a_type(i)))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            // `insecure_skip_verify = "true"`, `every = "4096"`, `data = 1`: each key takes
            // one type, and another is a mistake to point out, not a value to read as text.
            other => {
                let wanted = if boolean {
                    "true or false"
                } else if integer {
                    "a whole number"
                } else {
                    "a string"
                };
                return Err(mistyped(format!("takes {wanted}, not {}", a_type(other))));
            }
        };
        out.insert(
            key,
            Raw {
                text,
                from: path.display().to_string(),
                from_env: false,
            },
        );
    }
    Ok(())
}

fn build(raw: &BTreeMap<&'static str, Raw>) -> Result<Config, ConfigError> {
    let get = |key: &'static str| raw.get(key);
    let text = |key: &'static str| get(key).map(|r| r.text.clone());
    let value_err = |key: &'static str, what: String| ConfigError::Value {
        key,
        source_name: get(key).map_or_else(|| "default".to_owned(), |r| r.from.clone()),
        what,
    };
    let addr = |key: &'static str, default: &str| -> Result<SocketAddr, ConfigError> {
        let t = text(key).unwrap_or_else(|| default.to_owned());
        t.parse()
            .map_err(|_| value_err(key, format!("{t:?} is not an address like 127.0.0.1:8080")))
    };
    let number = |key: &'static str, default: u64| -> Result<u64, ConfigError> {
        match text(key) {
            None => Ok(default),
            Some(t) => t
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| value_err(key, format!("{t:?} is not a positive whole number"))),
        }
    };
    // Durations are bounded: a deadline is added to the clock, and one near `u64::MAX` seconds
    // would overflow it on every connection instead of being refused here.
    let secs = |key: &'static str, default: u64| -> Result<Duration, ConfigError> {
        let n = number(key, default)?;
        if n > MAX_SECS {
            return Err(value_err(
                key,
                format!("{n} s is more than a day ({MAX_SECS} s)"),
            ));
        }
        Ok(Duration::from_secs(n))
    };
    let small = |key: &'static str, default: u64| -> Result<u32, ConfigError> {
        u32::try_from(number(key, default)?).map_err(|_| value_err(key, "too large".into()))
    };
    let flag = |key: &'static str| -> Result<bool, ConfigError> {
        match text(key).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(t) => Err(value_err(key, format!("{t:?} is not true or false"))),
        }
    };
    // A key and where its value came from, for a refusal that involves two keys.
    let named = |key: &'static str| match get(key) {
        Some(r) => format!("{key} (from {})", r.from),
        None => key.to_owned(),
    };
    // Two keys that exclude each other, set in the file and in the environment: the variable
    // does not clear the file's key, which an operator who set only the variable may not know.
    let where_to_unset = |a: &'static str, b: &'static str| {
        let from_env = |key| get(key).is_some_and(|r| r.from_env);
        if from_env(a) == from_env(b) {
            ""
        } else {
            "; a variable does not unset the other key in the file, so remove one of the two"
        }
    };
    // An empty path (`ca_file = ""`) is no file; read as one, it names the working directory
    // or fails later with a message about the path "" instead of the key.
    let path = |key: &'static str| -> Result<Option<PathBuf>, ConfigError> {
        match get(key) {
            None => Ok(None),
            Some(r) if r.text.trim().is_empty() => Err(value_err(
                key,
                "is empty: give a path, or leave the key out".into(),
            )),
            Some(r) => Ok(Some(PathBuf::from(&r.text))),
        }
    };

    let data = path("data")?.ok_or(ConfigError::Missing { key: "data" })?;
    let proxy_listen = addr("proxy.listen", "127.0.0.1:8080")?;
    let console_listen = addr("console.listen", "127.0.0.1:8081")?;
    if proxy_listen == console_listen {
        return Err(value_err(
            "console.listen",
            "the console must listen on another port or host than the rack proxy".into(),
        ));
    }
    let tls = match (path("tls.cert")?, path("tls.key")?) {
        (Some(cert), Some(key)) => Some(
            Tls::at(cert.clone(), key)
                .map_err(|e| value_err("tls.cert", format!("{}: {e}", super::shown_path(&cert))))?,
        ),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::TlsHalf {
                key: "tls.key",
                other: named("tls.cert"),
            });
        }
        (None, Some(_)) => {
            return Err(ConfigError::TlsHalf {
                key: "tls.cert",
                other: named("tls.key"),
            });
        }
    };
    let trusted_proxies = match get("trusted_proxies") {
        None => Vec::new(),
        Some(r) => r
            .text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                let ip = s.parse::<IpAddr>().map_err(|_| {
                    value_err("trusted_proxies", format!("{s:?} is not an IP address"))
                })?;
                if never_a_peer(ip) {
                    // `0.0.0.0` or `::` meant as "everyone" would trust no one, and would let
                    // plain HTTP start on a public address that then refuses every caller.
                    return Err(value_err(
                        "trusted_proxies",
                        format!(
                            "{s:?} is no host's address (unspecified, broadcast or multicast) \
                             and can never be a proxy: list each proxy's own address"
                        ),
                    ));
                }
                Ok(ip)
            })
            .collect::<Result<_, _>>()?,
    };
    let mut protected_env: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(r) = get("protected_env") {
        for entry in r.text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((app, key)) = entry
                .split_once(':')
                .filter(|(a, k)| !a.is_empty() && !k.is_empty())
            else {
                return Err(value_err(
                    "protected_env",
                    format!("{entry:?} is not app:KEY (use *:KEY for every app)"),
                ));
            };
            // Matched exactly: `*: KEY`, a quoted `"*:KEY"` (an env file's quotes kept) or
            // `Web:KEY` would protect what no app or env has, protection silently off.
            let app_ok = app == "*"
                || app
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            let key_ok = key
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !app_ok || !key_ok {
                return Err(value_err(
                    "protected_env",
                    format!(
                        "{entry:?}: the app is `*` or an app name (lowercase letters, digits, \
                         `-`) and KEY an env name (letters, digits, `_`, not starting with a \
                         digit); quotes are not part of the value"
                    ),
                ));
            }
            protected_env
                .entry(app.to_owned())
                .or_default()
                .push(key.to_owned());
        }
    }
    let url = get("rack.url")
        .map(|r| r.text.clone())
        .ok_or(ConfigError::Missing { key: "rack.url" })?;
    check_rack_url(&url).map_err(|what| value_err("rack.url", what))?;
    let password = match (get("rack.password"), path("rack.password_file")?) {
        // One decides: a stale variable would hide a rotated password file.
        (Some(_), Some(_)) => {
            return Err(value_err(
                "rack.password",
                format!(
                    "is set, and so is {}: keep one{}",
                    named("rack.password_file"),
                    where_to_unset("rack.password", "rack.password_file")
                ),
            ));
        }
        (Some(r), None) => r.text.clone(),
        (None, Some(file)) => {
            // The value is not repeated: a password pasted where its path goes would be.
            let bytes = crate::keys::read_private(&file)
                .map_err(|e| value_err("rack.password_file", format!("the file {}", e.reason())))?;
            String::from_utf8(bytes)
                .map_err(|_| value_err("rack.password_file", "the file is not UTF-8".into()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned()
        }
        (None, None) => {
            return Err(ConfigError::Missing {
                key: "rack.password",
            });
        }
    };
    if password.is_empty() {
        return Err(value_err("rack.password", "empty".into()));
    }
    let pin_sha256 = get("rack.pin_sha256").map(|r| r.text.to_ascii_lowercase());
    if let Some(pin) = &pin_sha256
        && (pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(value_err(
            "rack.pin_sha256",
            "expected 64 hex digits".into(),
        ));
    }
    let ca_file = path("rack.ca_file")?;
    let insecure_skip_verify = flag("rack.insecure_skip_verify")?;
    let set: Vec<&'static str> = [
        ("rack.pin_sha256", pin_sha256.is_some()),
        ("rack.ca_file", ca_file.is_some()),
        ("rack.insecure_skip_verify", insecure_skip_verify),
    ]
    .into_iter()
    .filter_map(|(key, on)| on.then_some(key))
    .collect();
    if let Some(key) = set.first()
        && url.starts_with("http://")
    {
        // A trust setting on a plain rack would be recorded as if it protected the connection.
        return Err(value_err(
            key,
            "applies to an https:// rack only; rack.url is http://, reached in clear".into(),
        ));
    }
    if let [first, second, ..] = set.as_slice() {
        // Only one would decide; the other would be recorded as if it did.
        return Err(value_err(
            second,
            format!(
                "set with {}: choose one way to trust the rack's certificate{}",
                named(first),
                where_to_unset(first, second)
            ),
        ));
    }
    let ca_sha256 = match &ca_file {
        None => None,
        Some(file) => {
            // Whom the gateway trusts with the rack password: no one but its owner may change
            // it. What it holds now is recorded, and checked again when the rack is reached.
            let bytes = crate::keys::read_trusted(file).map_err(|e| {
                value_err(
                    "rack.ca_file",
                    format!("{}: {}", super::shown_path(file), e.reason()),
                )
            })?;
            Some(events::hash::object_digest(&bytes).to_hex())
        }
    };
    let config = Config {
        data,
        proxy_listen,
        console_listen,
        tls,
        trusted_proxies,
        protected_env,
        rack: Rack {
            url,
            password: Secret::new(password),
            ca_file,
            ca_sha256,
            pin_sha256,
            insecure_skip_verify,
        },
        checkpoints: Checkpoints {
            every: number("checkpoints.every", 4096)?,
            after: secs("checkpoints.after_secs", 10)?,
            heartbeat: secs("checkpoints.heartbeat_secs", 300)?,
        },
        limits: Limits {
            per_ip_per_minute: small("limits.per_ip_per_minute", 600)?,
            streams_per_principal: small(
                "limits.streams_per_principal",
                u64::from(super::DEFAULT_STREAMS_PER_PRINCIPAL),
            )?,
            header_timeout: secs("limits.header_timeout_secs", 10)?,
            stream_idle: secs("limits.stream_idle_secs", 5)?,
            form_timeout: secs(
                "limits.form_timeout_secs",
                super::DEFAULT_FORM_TIMEOUT.as_secs(),
            )?,
        },
    };
    check_transport(&config)?;
    Ok(config)
}

/// A TOML parser's message with every back-quoted number left out: the parser quotes an
/// integer it cannot hold (`invalid type: integer `123…` as i128`), and an unquoted password
/// of digits is such an integer. Its hints (`expected `=``) hold no digits and stay.
fn without_quoted_numbers(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    out.push_str(parts.next().unwrap_or_default());
    let mut quoted = true;
    for part in parts {
        if quoted && part.bytes().any(|b| b.is_ascii_digit()) {
            out.push_str("`(a value, not shown)");
        } else {
            out.push('`');
            out.push_str(part);
        }
        quoted = !quoted;
    }
    out
}

/// `http(s)://host[:port][/prefix]` with no credentials, query or fragment.
fn check_rack_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    // Anywhere: a password with a `/` in it (`https://convox:ab/cd@rack`) would otherwise end
    // the host early and pass for a path, to be recorded with the configuration.
    if rest.contains('@') {
        return Err("must not carry credentials; the password comes from rack.password".into());
    }
    if url.contains('?') || url.contains('#') {
        return Err("must not carry a query or fragment".into());
    }
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err("has no host".into());
    }
    let (name, port) = split_host(host).ok_or("has an unclosed [ in its host")?;
    if let Some(port) = port
        && !port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Err(format!("has port {port:?}, which is not 1 to 65535"));
    }
    if url.starts_with("http://") && !is_loopback_name(name) {
        return Err(
            "uses plain http:// to a host that is not loopback: the rack password and every \
             command would cross the network in clear; use https://"
                .into(),
        );
    }
    Ok(())
}

/// A URL's host (`name[:port]`, `[v6][:port]`) as its name and its port, if it has one;
/// `None` for a `[` never closed.
fn split_host(host: &str) -> Option<(&str, Option<&str>)> {
    match host.strip_prefix('[') {
        Some(v6) => v6
            .split_once(']')
            .map(|(name, after)| (name, after.strip_prefix(':'))),
        None => Some(match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }),
    }
}

/// Whether a host's name (no brackets, no port) names this machine: `localhost`, or a
/// loopback address, an IPv4 one written as IPv6 (`::ffff:127.0.0.1`) included.
pub(crate) fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Plain HTTP is allowed only on loopback addresses, or behind configured trusted proxies. A
/// proxy on this host does not count for a listener off loopback: it reaches a loopback
/// listener, and the public one would take credentials in clear from whoever connects
/// directly (answered 403, but only once they are sent).
fn check_transport(c: &Config) -> Result<(), ConfigError> {
    let proxied = c
        .trusted_proxies
        .iter()
        .any(|p| !p.to_canonical().is_loopback());
    if c.tls.is_some() || proxied {
        return Ok(());
    }
    for (name, addr) in [
        ("proxy.listen", c.proxy_listen),
        ("console.listen", c.console_listen),
    ] {
        if !addr.ip().to_canonical().is_loopback() {
            return Err(ConfigError::Unsafe(format!(
                "{name} is {addr}, which is not a loopback address, and no TLS certificate is \
                 configured: set tls.cert and tls.key, or list the terminating proxies in \
                 trusted_proxies (one on this host reaches a loopback listener: listen there)"
            )));
        }
    }
    Ok(())
}

/// A TOML value's type as a message names it: `a string`, `an integer`.
fn a_type(v: &toml::Value) -> String {
    let kind = v.type_str();
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

/// Whether `ip` can never be the source of a TCP connection: unspecified, IPv4 broadcast, or
/// multicast (IPv4-mapped forms too).
fn never_a_peer(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

#[cfg(test)]
mod tests;
