//! Tests of configuration loading: overrides, refusals with the key named, and the audit digest.

use std::collections::HashMap;

use super::*;
use crate::keys::AuditKey;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    f
}

const BASE: &str = r#"
data = "/var/lib/rack-gateway"
[proxy]
listen = "127.0.0.1:9000"
[rack]
url = "https://api.rack.example"
"#;

#[test]
fn file_then_environment_overrides() {
    let f = file(BASE);
    let c = load(
        Some(f.path()),
        &env(&[
            ("RACK_GATEWAY_RACK_PASSWORD", "s3cret"),
            ("RACK_GATEWAY_PROXY_LISTEN", "127.0.0.1:9100"),
        ]),
    )
    .unwrap();
    assert_eq!(c.proxy_listen.port(), 9100);
    assert_eq!(c.console_listen.port(), 8081);
    assert_eq!(c.rack.password.expose(), "s3cret");
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "the password never prints"
    );
}

#[test]
fn refusals_name_the_key() {
    let with_pw = |text: &str| {
        let f = file(text);
        load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]))
            .unwrap_err()
            .to_string()
    };
    assert!(with_pw(&format!("{BASE}\n[extra]\nthing = 1\n")).contains("extra.thing"));
    assert!(with_pw(&BASE.replace("127.0.0.1:9000", "nowhere")).contains("proxy.listen"));
    assert!(
        with_pw(&BASE.replace("https://api.rack.example", "https://convox:pw@api"))
            .contains("rack.url")
    );
    // A password with a `/` in it would end the host early and pass for a path, to be recorded
    // with the configuration; the error does not repeat it.
    let e = with_pw(&BASE.replace(
        "https://api.rack.example",
        "https://convox:ab/cdpw@rack.example",
    ));
    assert!(e.contains("rack.url") && e.contains("credentials"), "{e}");
    assert!(!e.contains("cdpw"), "{e}");
    for port in [":99999", ":5443x", ":0", ":"] {
        let e = with_pw(&BASE.replace(
            "https://api.rack.example",
            &format!("https://api.rack.example{port}"),
        ));
        assert!(
            e.contains("rack.url") && e.contains("not 1 to 65535"),
            "{port}: {e}"
        );
    }
    assert!(with_pw(&BASE.replace("https://api.rack.example", "https://[::1:443")).contains("[ "));
    // A query is named as such, not taken for a port and repeated.
    let e = with_pw(&BASE.replace(
        "https://api.rack.example",
        "https://api.rack.example:8443?token=abc",
    ));
    assert!(e.contains("query") && !e.contains("abc"), "{e}");
    assert!(with_pw(&BASE.replace("127.0.0.1:9000", "0.0.0.0:9000")).contains("not a loopback"));
    assert!(with_pw(&BASE.replace("127.0.0.1:9000", "127.0.0.1:8081")).contains("console.listen"));
    // In any shape, a password in the file is refused as one.
    for written in [
        format!("{BASE}password = \"inline\"\n"),
        format!("{BASE}password = [\"inline\"]\n"),
        format!("\"rack.password\" = \"inline\"\n{BASE}"),
    ] {
        let f = file(&written);
        let e = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("must not be written"), "{written}: {e}");
        assert!(!e.contains("inline"), "{e}");
    }
    let f = file(BASE);
    let e = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
    assert!(e.contains("rack.password"), "{e}");
    let e = load(
        Some(f.path()),
        &env(&[
            ("RACK_GATEWAY_RACK_PASSWORD", "p"),
            ("RACK_GATEWAY_LIMITS_PER_IP_PER_MINUTE", "lots"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("RACK_GATEWAY_LIMITS_PER_IP_PER_MINUTE"), "{e}");
}

#[test]
fn plain_http_off_loopback_is_allowed_behind_trusted_proxies() {
    let f = file(&BASE.replace("127.0.0.1:9000", "0.0.0.0:9000"));
    let c = load(
        Some(f.path()),
        &env(&[
            ("RACK_GATEWAY_RACK_PASSWORD", "p"),
            ("RACK_GATEWAY_TRUSTED_PROXIES", "10.0.0.5, 10.0.0.6"),
        ]),
    )
    .unwrap();
    assert_eq!(c.trusted_proxies.len(), 2);
    // A proxy on this host only: it would reach a loopback listener, and the public one would
    // take credentials in clear from anyone connecting directly.
    for local in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
        let e = load(
            Some(f.path()),
            &env(&[
                ("RACK_GATEWAY_RACK_PASSWORD", "p"),
                ("RACK_GATEWAY_TRUSTED_PROXIES", local),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("proxy.listen is 0.0.0.0:9000"), "{local}: {e}");
    }
}

/// An address that is no host's (`0.0.0.0`, `::`, broadcast, multicast, mapped forms too) is
/// never a proxy: listed as one, perhaps to mean "everyone", it is refused by name rather than
/// let plain HTTP start on a public address.
#[test]
fn a_trusted_proxy_that_can_never_connect_is_refused() {
    let f = file(&BASE.replace("127.0.0.1:9000", "0.0.0.0:9000"));
    for listed in [
        "0.0.0.0",
        "::",
        "255.255.255.255",
        "224.0.0.1",
        "ff02::1",
        "::ffff:0.0.0.0",
        "10.0.0.5, 0.0.0.0",
    ] {
        let e = load(
            Some(f.path()),
            &env(&[
                ("RACK_GATEWAY_RACK_PASSWORD", "p"),
                ("RACK_GATEWAY_TRUSTED_PROXIES", listed),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("trusted_proxies") && e.contains("can never be a proxy"),
            "{listed}: {e}"
        );
    }
}

#[test]
fn the_digest_changes_with_security_settings_and_hides_the_password() {
    let f = file(BASE);
    let audit = AuditKey([5; 32]);
    let a = load(
        Some(f.path()),
        &env(&[("RACK_GATEWAY_RACK_PASSWORD", "one")]),
    )
    .unwrap();
    let b = load(
        Some(f.path()),
        &env(&[("RACK_GATEWAY_RACK_PASSWORD", "two")]),
    )
    .unwrap();
    assert_ne!(
        a.digest(&audit),
        b.digest(&audit),
        "a password rotation is visible"
    );
    assert_eq!(a.digest(&audit), a.clone().digest(&audit));
    let shown = format!("{:?}", a.audit_values(&audit));
    assert!(!shown.contains("one\""), "{shown}");
    assert!(shown.contains("hmac-sha256/config:"), "{shown}");
}

/// Trusted proxies and protected env vars are sets: written in another order, or with a
/// repeat, they are the same configuration (no new `ConfigApplied`); another member is not.
#[test]
fn the_digest_of_a_set_ignores_its_order_and_repeats() {
    let audit = AuditKey([5; 32]);
    let digest = |proxies: &str, protected: &str| {
        let text = BASE.replacen(
            "data = ",
            &format!("trusted_proxies = [{proxies}]\nprotected_env = [{protected}]\ndata = "),
            1,
        );
        let f = file(&text);
        load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]))
            .unwrap()
            .digest(&audit)
    };
    let first = digest(r#""10.0.0.1", "10.0.0.2""#, r#""web:A", "*:B""#);
    assert_eq!(
        digest(
            r#""10.0.0.2", "10.0.0.1", "::ffff:10.0.0.2""#,
            r#""*:B", "web:A", "web:A""#
        ),
        first
    );
    assert_ne!(digest(r#""10.0.0.1""#, r#""web:A", "*:B""#), first);
    assert_ne!(digest(r#""10.0.0.1", "10.0.0.2""#, r#""web:A""#), first);
}

#[test]
fn protected_env_is_app_and_key_pairs() {
    let f = file(&format!(
        "{BASE}protected_env = [\"web:DATABASE_URL\", \"*:STRIPE_KEY\"]\n"
    ));
    let e = load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]));
    // `protected_env` is a top-level key: written after [rack] it belongs to that table.
    let why = e
        .expect_err("protected_env under [rack] is refused")
        .to_string();
    assert!(why.contains("protected_env"), "{why}");
    let text = BASE.replacen(
        "data = ",
        "protected_env = [\"web:DATABASE_URL\", \"*:STRIPE_KEY\"]\ndata = ",
        1,
    );
    let f = file(&text);
    let c = load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")])).unwrap();
    assert_eq!(c.protected_env["web"], vec!["DATABASE_URL".to_owned()]);
    assert_eq!(c.protected_env["*"], vec!["STRIPE_KEY".to_owned()]);
    // Each would protect what no app or env has: matching is exact.
    for entry in [
        "nokey",
        "*: STRIPE_KEY",
        "web :KEY",
        "web:A=B",
        "web:A:B",
        "\"*:STRIPE_KEY\"",
        "Web:DATABASE_URL",
        "web:1KEY",
        "*:A;B",
        "*:A-B",
        "**:KEY",
    ] {
        let bad = BASE.replacen(
            "data = ",
            &format!("protected_env = [{entry:?}]\ndata = "),
            1,
        );
        let f = file(&bad);
        let e = load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("protected_env"), "{entry}: {e}");
    }
    // As an env file passes it, quotes kept.
    let quoted = load(
        Some(file(BASE).path()),
        &env(&[
            ("RACK_GATEWAY_RACK_PASSWORD", "p"),
            ("RACK_GATEWAY_PROTECTED_ENV", "\"*:STRIPE_KEY\""),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(quoted.contains("quotes are not part"), "{quoted}");
    let c = load(
        Some(file(BASE).path()),
        &env(&[
            ("RACK_GATEWAY_RACK_PASSWORD", "p"),
            ("RACK_GATEWAY_PROTECTED_ENV", "*:STRIPE_KEY, web-2:_X9"),
        ]),
    )
    .unwrap();
    assert_eq!(c.protected_env["web-2"], vec!["_X9".to_owned()]);
}

#[test]
fn a_file_that_does_not_parse_is_refused_without_echoing_its_text() {
    // A bad escape in a value that must not be in the file at all: the refusal names the line,
    // and never prints the line's text.
    let f = file(&format!("{BASE}password = \"hunter2\\qx\"\n"));
    let e = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(e.contains("line 7"), "{e}");
}

#[test]
fn a_plain_http_rack_must_be_on_this_machine() {
    for (url, ok) in [
        ("http://127.0.0.1:5443", true),
        ("http://[::1]:5443", true),
        ("http://localhost:5443", true),
        ("https://api.rack.example", true),
        ("http://api.rack.example", false),
        ("http://10.0.0.7:5443", false),
        ("http://[2001:db8::1]:5443", false),
    ] {
        let f = file(&BASE.replace("https://api.rack.example", url));
        let got = load(
            Some(f.path()),
            &env(&[("RACK_GATEWAY_RACK_PASSWORD", "pw")]),
        );
        assert_eq!(
            got.is_ok(),
            ok,
            "{url}: {:?}",
            got.err().map(|e| e.to_string())
        );
        if !ok {
            assert!(got.unwrap_err().to_string().contains("https://"), "{url}");
        }
    }
}

#[test]
fn the_digest_covers_how_soon_tampering_shows_and_the_stream_limits() {
    let f = file(BASE);
    let audit = AuditKey([5; 32]);
    let digest = |vars: &[(&str, &str)]| {
        let mut all = vec![("RACK_GATEWAY_RACK_PASSWORD", "pw")];
        all.extend_from_slice(vars);
        load(Some(f.path()), &env(&all)).unwrap().digest(&audit)
    };
    let base = digest(&[]);
    for var in [
        "RACK_GATEWAY_CHECKPOINTS_AFTER_SECS",
        "RACK_GATEWAY_CHECKPOINTS_HEARTBEAT_SECS",
        "RACK_GATEWAY_LIMITS_HEADER_TIMEOUT_SECS",
        "RACK_GATEWAY_LIMITS_STREAM_IDLE_SECS",
    ] {
        assert_ne!(digest(&[(var, "7")]), base, "{var} is not in the digest");
    }
}

#[test]
fn an_unknown_or_unreadable_override_is_refused_not_ignored() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let vars = |list: Vec<(&str, OsString)>| -> Vec<(OsString, OsString)> {
        list.into_iter()
            .map(|(k, v)| (OsString::from(k), v))
            .collect()
    };
    let allowed = ["RACK_GATEWAY_TOKEN"];
    let got = overrides(
        vars(vec![
            ("RACK_GATEWAY_RACK_PASSWORD", "pw".into()),
            ("RACK_GATEWAY_TOKEN", "rgw_cli".into()),
            ("HOME", "/root".into()),
            ("RACK_GATEWAYISH", "x".into()),
        ]),
        &allowed,
    )
    .unwrap();
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [("RACK_GATEWAY_RACK_PASSWORD".to_owned(), "pw".to_owned())],
        "ours are kept, the CLI's token and others' are passed over"
    );
    // A misspelled protection would leave a secret unprotected without a word.
    let e = overrides(
        vars(vec![("RACK_GATEWAY_PROTECTED_ENVS", "*:STRIPE_KEY".into())]),
        &allowed,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("RACK_GATEWAY_PROTECTED_ENVS: not a configuration variable"),
        "{e}"
    );
    // So is one in the wrong case: the environment's names are case-sensitive.
    let e = overrides(
        vars(vec![("rack_gateway_protected_env", "*:STRIPE_KEY".into())]),
        &allowed,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("rack_gateway_protected_env: not a configuration variable"),
        "{e}"
    );
    // A value that is not UTF-8 is not read as unset (which would fall back to the file).
    let e = overrides(
        vars(vec![(
            "RACK_GATEWAY_TRUSTED_PROXIES",
            OsString::from_vec(vec![0x31, 0xff]),
        )]),
        &allowed,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(e, "RACK_GATEWAY_TRUSTED_PROXIES: its value is not UTF-8");
    // An empty value (a template's unset variable) would clear every protected key.
    // So would a list of empty entries (`${GLOBAL},${APP}` with both unset).
    for empty in ["", " ", ",", " , "] {
        let e = overrides(
            vars(vec![("RACK_GATEWAY_PROTECTED_ENV", empty.into())]),
            &allowed,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("RACK_GATEWAY_PROTECTED_ENV: set but empty"),
            "{e}"
        );
    }
}

#[test]
fn a_number_the_parser_cannot_hold_is_not_echoed() {
    // The second is the first's digits as the parser would print it (in decimal).
    for (value, printed) in [
        ("123456789012345678901234", "123456789012345678901234"),
        (
            "0xdeadbeefdeadbeefdeadbeef",
            "68915718021581205938132336367",
        ),
    ] {
        let f = file(&format!("{BASE}password_file = {value}\n"));
        let e = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
        assert!(e.contains("line 7"), "{e}");
        assert!(e.contains("(a value, not shown)"), "{e}");
        assert!(!e.contains(&printed[..8]), "{e}");
    }
    // The parser's hints stay.
    let f = file(&format!("{BASE}password_file = \"a\\qb\"\n"));
    let e = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
    assert!(e.contains("expected `b`"), "{e}");
}

#[test]
fn a_duration_over_a_day_is_refused_with_its_key() {
    for (key, var) in [
        (
            "limits.header_timeout_secs",
            "RACK_GATEWAY_LIMITS_HEADER_TIMEOUT_SECS",
        ),
        (
            "limits.form_timeout_secs",
            "RACK_GATEWAY_LIMITS_FORM_TIMEOUT_SECS",
        ),
        (
            "checkpoints.heartbeat_secs",
            "RACK_GATEWAY_CHECKPOINTS_HEARTBEAT_SECS",
        ),
    ] {
        let f = file(BASE);
        let load_with = |v: &str| {
            load(
                Some(f.path()),
                &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p"), (var, v)]),
            )
        };
        let e = load_with("18446744073709551615").unwrap_err().to_string();
        assert!(e.starts_with(key), "{e}");
        assert!(e.contains("more than a day"), "{e}");
        assert!(load_with("86400").is_ok(), "{key}: a day is allowed");
    }
}

#[test]
fn a_trust_setting_on_a_plain_rack_is_refused() {
    let plain = BASE.replace("https://api.rack.example", "http://127.0.0.1:5443");
    for (line, key) in [
        (
            format!("pin_sha256 = \"{}\"", "ab".repeat(32)),
            "rack.pin_sha256",
        ),
        (
            "ca_file = \"/etc/ssl/certs/ca-certificates.crt\"".to_owned(),
            "rack.ca_file",
        ),
        (
            "insecure_skip_verify = true".to_owned(),
            "rack.insecure_skip_verify",
        ),
    ] {
        let f = file(&format!("{plain}{line}\n"));
        let e = load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(key), "{e}");
        assert!(e.contains("https:// rack only"), "{e}");
    }
    let f = file(&format!("{plain}insecure_skip_verify = false\n"));
    assert!(load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")])).is_ok());
}

#[test]
fn one_way_to_trust_the_rack_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not read for this").unwrap();
    let pin = format!("pin_sha256 = \"{}\"", "ab".repeat(32));
    for (lines, key) in [
        (format!("{pin}\nca_file = {ca:?}"), "rack.ca_file"),
        (
            format!("{pin}\ninsecure_skip_verify = true"),
            "rack.insecure_skip_verify",
        ),
        (
            format!("ca_file = {ca:?}\ninsecure_skip_verify = true"),
            "rack.insecure_skip_verify",
        ),
    ] {
        let f = file(&format!("{BASE}{lines}\n"));
        let e = load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(key) && e.contains("choose one"), "{e}");
    }
    let f = file(&format!("{BASE}{pin}\n"));
    assert!(load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")])).is_ok());
}

#[test]
fn the_digest_follows_the_ca_bundle_contents_not_only_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let f = file(&format!("{BASE}ca_file = {ca:?}\n"));
    let audit = AuditKey([5; 32]);
    let digest = || {
        load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]))
            .unwrap()
            .digest(&audit)
    };
    std::fs::write(&ca, "one bundle").unwrap();
    let first = digest();
    assert_eq!(digest(), first);
    std::fs::write(&ca, "another bundle").unwrap();
    assert_ne!(digest(), first, "a replaced bundle is a new configuration");
    std::fs::remove_file(&ca).unwrap();
    let e = load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("rack.ca_file"), "{e}");
}

/// The configuration and the rack's CA bundle decide where the rack password goes: one that
/// its group or others may change is refused, saying what to do; readable by all is fine.
#[test]
fn a_configuration_or_ca_bundle_others_may_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let password = env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]);
    let f = file(BASE);
    for open in [0o664, 0o646] {
        mode(f.path(), open);
        let e = load(Some(f.path()), &password).unwrap_err().to_string();
        assert!(e.contains(&format!("has mode {open:03o}")), "{e}");
        assert!(e.contains("chmod go-w"), "{e}");
    }
    mode(f.path(), 0o644);
    load(Some(f.path()), &password).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "a bundle").unwrap();
    let with_ca = file(&format!("{BASE}ca_file = {ca:?}\n"));
    mode(&ca, 0o666);
    let e = load(Some(with_ca.path()), &password)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("rack.ca_file"), "{e}");
    assert!(e.contains("chmod go-w"), "{e}");
    mode(&ca, 0o644);
    load(Some(with_ca.path()), &password).unwrap();
}

/// A FIFO named as the configuration (or any file the operator names) is refused at once, not
/// waited on for a writer that never comes.
#[test]
fn a_fifo_named_as_the_configuration_is_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("gateway.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let e = load(Some(&fifo), &env(&[])).unwrap_err().to_string();
    assert!(e.contains("is not a regular file"), "{e}");
}

/// A password file others may read is refused, saying which key and what to do; a private
/// one is read, its line end dropped.
#[test]
fn a_password_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let secret = file("hunter2\n");
    let f = file(&format!(
        "{BASE}password_file = {:?}\n",
        secret.path().display().to_string()
    ));
    std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
    assert!(e.contains("rack.password_file"), "{e}");
    assert!(e.contains("chmod 600"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = load(Some(f.path()), &env(&[])).unwrap();
    assert_eq!(c.rack.password.expose(), "hunter2");
}

/// The file's shapes are held to their keys: a list where one value goes is refused, not read
/// as its only item, and a quoted name with a dot is not taken for a table's key (it would
/// stand beside that key, and one of the two would win); a list key takes a list.
#[test]
fn a_value_has_the_shape_of_its_key() {
    let pw = env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]);
    let f = file(&format!("{BASE}insecure_skip_verify = [true]\n"));
    let e = load(Some(f.path()), &pw).unwrap_err().to_string();
    assert!(
        e.starts_with("rack.insecure_skip_verify (from ") && e.ends_with("not a list"),
        "{e}"
    );
    // Each key takes one TOML type: a string where a boolean or a number goes, or the
    // reverse, is refused and named, not read as the text it would be in the environment.
    for (text, key, wanted) in [
        (
            format!("{BASE}insecure_skip_verify = \"true\"\n"),
            "rack.insecure_skip_verify",
            "takes true or false, not a string",
        ),
        (
            format!("{BASE}[checkpoints]\nevery = \"4096\"\n"),
            "checkpoints.every",
            "takes a whole number, not a string",
        ),
        (
            format!("{BASE}[limits]\nper_ip_per_minute = 1.5\n"),
            "limits.per_ip_per_minute",
            "takes a whole number, not a float",
        ),
        (
            BASE.replace("data = \"/var/lib/rack-gateway\"", "data = 1"),
            "data",
            "takes a string, not an integer",
        ),
        (
            format!("{BASE}[tls]\ncert = true\nkey = \"k.pem\"\n"),
            "tls.cert",
            "takes a string, not a boolean",
        ),
        (
            format!("trusted_proxies = [1]\n{BASE}"),
            "trusted_proxies",
            "takes a list of strings, and 1 is an integer",
        ),
    ] {
        let f = file(&text);
        let e = load(Some(f.path()), &pw).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{key} (from ")) && e.ends_with(wanted),
            "{e}"
        );
    }
    let f = file(&format!("\"proxy.listen\" = \"127.0.0.1:9200\"\n{BASE}"));
    let e = load(Some(f.path()), &pw).unwrap_err().to_string();
    assert!(
        e.contains("\"proxy.listen\"") && e.contains("[section]"),
        "{e}"
    );
    // A table where a value goes, even an empty one, and an empty table of no section.
    for (text, what) in [
        ("[tls]\ncert = {}\nkey = {}\n", "tls.cert (from "),
        ("[rack.pin_sha256]\n", "rack.pin_sha256 (from "),
        ("[limts]\n", "[limts] (an empty table"),
        ("[rack.tls]\n", "[rack.tls] (an empty table"),
    ] {
        let f = file(&format!("{BASE}{text}"));
        let e = load(Some(f.path()), &pw).unwrap_err().to_string();
        assert!(e.starts_with(what), "{text}: {e}");
    }
    // An empty table of a section is nothing set, as its absence is.
    let f = file(&format!("{BASE}[limits]\n"));
    load(Some(f.path()), &pw).unwrap();
    let f = file(&format!(
        "trusted_proxies = [\"10.0.0.1\", \"10.0.0.2\"]\nprotected_env = [\"*:K\"]\n{BASE}"
    ));
    let c = load(Some(f.path()), &pw).unwrap();
    assert_eq!(c.trusted_proxies.len(), 2);
}

/// The password from a variable and from a file at once is refused: a stale variable would
/// hide a rotated file.
#[test]
fn a_password_comes_from_one_place() {
    let secret = file("rotated\n");
    let f = file(&format!(
        "{BASE}password_file = {:?}\n",
        secret.path().display().to_string()
    ));
    std::fs::set_permissions(
        secret.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let e = load(
        Some(f.path()),
        &env(&[("RACK_GATEWAY_RACK_PASSWORD", "stale")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("keep one"), "{e}");
    assert!(!e.contains("stale") && !e.contains("rotated"), "{e}");
}

/// An IPv4 loopback address written as IPv6 (`::ffff:127.0.0.1`) is loopback, as the server
/// itself judges it.
#[test]
fn a_mapped_loopback_address_is_loopback() {
    let f = file(&BASE.replace("127.0.0.1:9000", "[::ffff:127.0.0.1]:9000"));
    let c = load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")])).unwrap();
    assert_eq!(c.proxy_listen.port(), 9000);
}

/// A password pasted where its file's path goes is not printed back: the error names the
/// setting and where it came from, not its value.
#[test]
fn a_password_file_setting_is_not_echoed() {
    let f = file(BASE);
    let e = load(
        Some(f.path()),
        &env(&[("RACK_GATEWAY_RACK_PASSWORD_FILE", "hunter2-pasted")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "rack.password_file (from RACK_GATEWAY_RACK_PASSWORD_FILE): the file cannot be read"
        ),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
}

/// A certificate file's contents (with its key, as some tools keep them) pasted where its path
/// goes are not printed back: the error says the value is not a path.
#[test]
fn a_pem_block_given_as_a_path_is_not_echoed() {
    let f = file(BASE);
    let pasted =
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49pasted\n-----END PRIVATE KEY-----\n";
    let e = load(
        Some(f.path()),
        &env(&[
            ("RACK_GATEWAY_RACK_PASSWORD", "p"),
            ("RACK_GATEWAY_TLS_CERT", pasted),
            ("RACK_GATEWAY_TLS_KEY", "/etc/rack-gateway/key.pem"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("tls.cert (from RACK_GATEWAY_TLS_CERT)"),
        "{e}"
    );
    assert!(e.contains("not a path"), "{e}");
    assert!(!e.contains("MIGHAgEAMBMGByqGSM49pasted"), "{e}");
}

/// Keys that exclude each other, one set in the file and one by a variable: the refusal says
/// where each came from, and that the variable did not unset the file's key.
#[test]
fn a_conflict_names_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not read for this").unwrap();
    let f = file(&format!("{BASE}ca_file = {ca:?}\n"));
    let shown = f.path().display().to_string();
    let e = load(
        Some(f.path()),
        &env(&[
            ("RACK_GATEWAY_RACK_PASSWORD", "p"),
            ("RACK_GATEWAY_RACK_PIN_SHA256", &"ab".repeat(32)),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(&format!("rack.ca_file (from {shown}): set with rack.pin_sha256 (from RACK_GATEWAY_RACK_PIN_SHA256)")),
        "{e}"
    );
    assert!(e.contains("a variable does not unset"), "{e}");
    // Both in the file: no word about variables.
    let f = file(&format!(
        "{BASE}ca_file = {ca:?}\npin_sha256 = \"{}\"\n",
        "ab".repeat(32)
    ));
    let e = load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("choose one") && !e.contains("variable"), "{e}");

    let secret = file("rotated\n");
    let f = file(&format!(
        "{BASE}password_file = {:?}\n",
        secret.path().display().to_string()
    ));
    let e = load(
        Some(f.path()),
        &env(&[("RACK_GATEWAY_RACK_PASSWORD", "stale")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("rack.password (from RACK_GATEWAY_RACK_PASSWORD): is set, and so is rack.password_file (from "),
        "{e}"
    );
    assert!(e.contains("a variable does not unset"), "{e}");
}

/// Half of the listener's certificate pair is refused naming the half that is missing and
/// where the other came from.
#[test]
fn a_certificate_without_its_key_names_both() {
    let f = file(&format!("{BASE}[tls]\ncert = \"/etc/rg/cert.pem\"\n"));
    let e = load(Some(f.path()), &env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "tls.key: not set, but tls.cert (from {}) is",
            f.path().display()
        )),
        "{e}"
    );
    let e = load(
        Some(file(BASE).path()),
        &env(&[
            ("RACK_GATEWAY_RACK_PASSWORD", "p"),
            ("RACK_GATEWAY_TLS_KEY", "/etc/rg/key.pem"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("tls.cert: not set, but tls.key (from RACK_GATEWAY_TLS_KEY) is"),
        "{e}"
    );
}

/// An empty path in the file is refused with its key: read as a path, `""` names the working
/// directory or fails later without saying which key held it.
#[test]
fn an_empty_path_is_refused_with_its_key() {
    let pw = env(&[("RACK_GATEWAY_RACK_PASSWORD", "p")]);
    for (text, key) in [
        (BASE.replace("/var/lib/rack-gateway", ""), "data"),
        (format!("{BASE}ca_file = \"\"\n"), "rack.ca_file"),
        (format!("{BASE}ca_file = \" \"\n"), "rack.ca_file"),
        (
            format!("{BASE}[tls]\ncert = \"\"\nkey = \"/etc/rg/key.pem\"\n"),
            "tls.cert",
        ),
        (
            format!("{BASE}[tls]\ncert = \"/etc/rg/cert.pem\"\nkey = \"\"\n"),
            "tls.key",
        ),
    ] {
        let f = file(&text);
        let e = load(Some(f.path()), &pw).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{key} (from ")) && e.contains("is empty"),
            "{key}: {e}"
        );
    }
    let f = file(&format!("{BASE}password_file = \"\"\n"));
    let e = load(Some(f.path()), &env(&[])).unwrap_err().to_string();
    assert!(
        e.starts_with("rack.password_file (from ") && e.contains("is empty"),
        "{e}"
    );
}
