//! Tests of env masking: visibility, stable masks, restoring posted masks, protected keys,
//! secrets found by value, and external build scrubbing.

use std::collections::BTreeSet;

use events::event::{Permission, Role};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::*;
use crate::policy::canonical::{RequestBody, RequestParams, canonicalize_params, form_with};
use crate::policy::decide::Standing;
use crate::policy::routes::{ROUTES, Secrecy};

fn audit() -> AuditKey {
    AuditKey([7; 32])
}

fn mask(app: &str, key: &str, value: &str) -> String {
    mask_value(&audit(), app, key, value).unwrap()
}

#[test]
fn no_recorded_parameter_can_reproduce_a_mask() {
    // A parameter a caller sends is recorded as HMAC(audit key, value); were masks made under the
    // same key, sending the mask's input would reveal whether the guess is a masked value.
    let m = mask("x", "SECRET_TOKEN", "s3cr3t");
    let tag = m.strip_prefix(MASK_PREFIX).unwrap();
    assert_eq!(tag.len(), 2 * MASK_TAG_BYTES);
    let input = "\0\0\0\0\0\0\0\x01x\0\0\0\0\0\0\0\x0cSECRET_TOKENs3cr3t";
    let recorded = crate::config::hmac_value(&audit(), input);
    let recorded = recorded.strip_prefix("hmac-sha256:").unwrap();
    assert!(
        !recorded.starts_with(tag),
        "a mask equals a recorded parameter's HMAC"
    );
    // Still a function of app, key and value, as restoring relies on.
    assert_eq!(m, mask("x", "SECRET_TOKEN", "s3cr3t"));
    assert_ne!(m, mask("y", "SECRET_TOKEN", "s3cr3t"));
    assert_ne!(m, mask("x", "OTHER", "s3cr3t"));
}

/// `GET /apps/x/releases/RAAAAAAAAA` on the mock rack, byte for byte (seeded env).
const SEEDED_RELEASE: &str = r#"{
  "id": "RAAAAAAAAA",
  "app": "x",
  "build": "BAAAAAAAAA",
  "env": "FOO=bar\nSECRET_TOKEN=s3cr3t",
  "manifest": "services:\n  web:\n    build: .\n    port: 3000\n",
  "description": "",
  "created": "2026-01-01T00:00:06Z"
}
"#;

/// `GET /apps/x/releases?limit=1` on the mock rack, byte for byte.
const SEEDED_LIST: &str = r#"[
  {
    "id": "RAAAAAAAAA",
    "app": "x",
    "build": "BAAAAAAAAA",
    "env": "FOO=bar\nSECRET_TOKEN=s3cr3t",
    "manifest": "services:\n  web:\n    build: .\n    port: 3000\n",
    "description": "",
    "created": "2026-01-01T00:00:06Z"
  }
]
"#;

/// A `structs.Release` (§5) as the rack's `json.MarshalIndent` writes it: Go escapes `<`, `>`,
/// `&`; a secret by value under an innocent name; a PEM key with literal `\n`s.
const CAPTURED_RELEASE: &str = r#"{
  "id": "RBCDEFGHIJ",
  "app": "x",
  "build": "BBCDEFGHIJ",
  "env": "A=B\nDATABASE_URL=postgres://app:hunter2@db.internal:5432/app?sslmode=require\nGREETING=\u003cb\u003ehi\u003c/b\u003e \u0026 bye\nNOTES=postgres://u:p@h/db\nPORT=3000\nTLS_PEM=-----BEGIN RSA PRIVATE KEY-----\\nMIIB\\n-----END RSA PRIVATE KEY-----",
  "manifest": "environment:\n  - PORT=3000\n",
  "description": "build of A \u0026 B",
  "created": "2026-06-26T10:00:00Z"
}
"#;

/// The releases list after `convox env set A=B` (§6, A.4): newest first, every item with its
/// env (§0 item 9), compact (`json.NewEncoder`), one item `null`.
const CAPTURED_LIST: &str = "[{\"id\":\"RAAAAAAAAB\",\"app\":\"x\",\"build\":\"BAAAAAAAAA\",\
\"env\":\"A=B\\nFOO=bar\\nSECRET_TOKEN=s3cr3t\",\"manifest\":\"\",\"description\":\"\",\
\"created\":\"2026-01-01T00:00:09Z\"},{\"id\":\"RAAAAAAAAA\",\"app\":\"x\",\
\"build\":\"BAAAAAAAAA\",\"env\":\"FOO=bar\\nSECRET_TOKEN=s3cr3t\",\"manifest\":\"\",\
\"description\":\"\",\"created\":\"2026-01-01T00:00:06Z\"},null]\n";

/// Odd but valid: escaped `=` and letters, `\r\n` lines, duplicates, a line without `=`, an
/// empty value, a key with spaces, a non-ASCII value, a field spelt `Env` (Go matches it).
const ODD_RELEASE: &str = r#"{"id":"R1","Env":"K\u003d1\r\nK=2\r\njunk\r\n  SPACED  =x y\r\nEMPTY=\r\nUNI=caf\u00e9 \ud83d\ude00\r\n","manifest":null}"#;

/// A row of masking cases: name, answer, who asks, protected keys, hidden keys per release.
type MaskCase<'a> = (
    &'a str,
    &'a str,
    Visibility,
    &'a [&'a str],
    &'a [&'a [&'a str]],
);

/// A row of restore cases: name, posted env, protected keys, forwarded env or refusal kind.
type RestoreCase<'a> = (&'a str, &'a str, &'a [&'a str], Result<&'a str, &'a str>);

/// One masking case: the answer, who asks, the protected keys, and, per release of the answer,
/// the keys whose values must come back masked.
fn check(case: &str, body: &str, who: Visibility, protected: &[&str], hidden: &[&[&str]]) {
    let protected: Vec<String> = protected.iter().map(|p| (*p).to_owned()).collect();
    let out = mask_release_json(body.as_bytes(), "x", who, &audit(), &protected)
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    let before: serde_json::Value = serde_json::from_str(body).unwrap();
    let after: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let releases = |v: &serde_json::Value| match v {
        serde_json::Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    let (before, after) = (releases(&before), releases(&after));
    assert_eq!(before.len(), after.len(), "{case}");
    assert_eq!(before.len(), hidden.len(), "{case}: table row");
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let field = ["env", "Env"]
            .into_iter()
            .find(|f| b.get(f).is_some())
            .unwrap_or("env");
        let Some(env) = b.get(field).and_then(|e| e.as_str()) else {
            assert_eq!(a, b, "{case}: release {i}");
            continue;
        };
        let parsed = Env::parse(env);
        // Unless the caller reads every value and nothing is hidden, stray lines are masked
        // whole (with an `=` kept for those the rack reads as entries).
        let strays = if who != Visibility::All || !hidden[i].is_empty() {
            parsed.strays()
        } else {
            Vec::new()
        };
        let mut edits: Vec<(std::ops::Range<usize>, String)> = strays
            .iter()
            .map(|s| {
                let shown = mask("x", "", &env[s.line.clone()]);
                (s.line.clone(), if s.sets { shown + "=" } else { shown })
            })
            .collect();
        for e in &parsed.entries {
            let (k, v) = (parsed.key(e), parsed.value(e));
            if strays.iter().any(|s| s.line.start == e.key.start) {
                continue;
            }
            if hidden[i].contains(&k) {
                edits.push((e.value.clone(), mask("x", k, v)));
            } else {
                assert!(
                    !protected.iter().any(|p| p == k),
                    "{case}: protected {k} not hidden"
                );
            }
        }
        edits.sort_by_key(|(r, _)| r.start);
        let mut expected = String::new();
        let mut copied = 0;
        for (r, text) in edits {
            expected.push_str(&env[copied..r.start]);
            expected.push_str(&text);
            copied = r.end;
        }
        expected.push_str(&env[copied..]);
        let mut want = b.clone();
        want[field] = serde_json::Value::String(expected);
        // The fixtures' manifests declare defaults one per line, each equal to the env's
        // value: hidden where the env's value is.
        if let Some(manifest) = b.get("manifest").and_then(|m| m.as_str()) {
            let lines: Vec<String> = manifest
                .split_inclusive('\n')
                .map(|line| {
                    let declared = line.strip_prefix("  - ").map(str::trim_end);
                    match declared.and_then(|d| d.split_once('=')) {
                        Some((k, v)) if hidden[i].contains(&k) => {
                            let shown = mask("x", &format!("\0manifest\0{k}"), v);
                            format!("  - \"{k}={shown}\"\n")
                        }
                        _ => line.to_owned(),
                    }
                })
                .collect();
            want["manifest"] = serde_json::Value::String(lines.concat());
        }
        assert_eq!(a, &want, "{case}: release {i}");
    }
    if who == Visibility::All && hidden.iter().all(|h| h.is_empty()) {
        assert_eq!(out, body.as_bytes(), "{case}: not byte-identical");
    }
}

#[test]
fn release_answers_are_masked_per_visibility() {
    use Visibility::{All, NoEnv, NonSecret};
    let every = &["A", "DATABASE_URL", "GREETING", "NOTES", "PORT", "TLS_PEM"][..];
    let secrets = &["DATABASE_URL", "NOTES", "TLS_PEM"][..];
    let seeded = &["FOO", "SECRET_TOKEN"][..];
    let odd_all = &["K", "SPACED", "EMPTY", "UNI"][..];
    #[rustfmt::skip]
    let cases: &[MaskCase] = &[
        ("seeded, no env read", SEEDED_RELEASE, NoEnv, &[], &[seeded]),
        ("seeded, env read", SEEDED_RELEASE, NonSecret, &[], &[&["SECRET_TOKEN"]]),
        ("seeded, secret read", SEEDED_RELEASE, All, &[], &[&[]]),
        ("seeded, protected FOO, secret read", SEEDED_RELEASE, All, &["FOO"], &[&["FOO"]]),
        ("seeded, protected FOO, env read", SEEDED_RELEASE, NonSecret, &["FOO"], &[seeded]),
        ("seeded list, no env read", SEEDED_LIST, NoEnv, &[], &[seeded]),
        ("seeded list, env read", SEEDED_LIST, NonSecret, &[], &[&["SECRET_TOKEN"]]),
        ("seeded list, secret read", SEEDED_LIST, All, &[], &[&[]]),
        ("captured, no env read", CAPTURED_RELEASE, NoEnv, &[], &[every]),
        ("captured, env read", CAPTURED_RELEASE, NonSecret, &[], &[secrets]),
        ("captured, secret read", CAPTURED_RELEASE, All, &[], &[&[]]),
        ("captured, protected PORT", CAPTURED_RELEASE, All, &["PORT", "ABSENT"], &[&["PORT"]]),
        ("captured list, no env read", CAPTURED_LIST, NoEnv, &[], &[&["A", "FOO", "SECRET_TOKEN"], seeded, &[]]),
        ("captured list, env read", CAPTURED_LIST, NonSecret, &[], &[&["SECRET_TOKEN"], &["SECRET_TOKEN"], &[]]),
        ("captured list, secret read", CAPTURED_LIST, All, &[], &[&[], &[], &[]]),
        ("odd, no env read", ODD_RELEASE, NoEnv, &[], &[odd_all]),
        ("odd, env read", ODD_RELEASE, NonSecret, &[], &[&[]]),
        ("odd, protected K", ODD_RELEASE, All, &["K"], &[&["K"]]),
        ("empty env", r#"{"id":"R1","env":""}"#, NoEnv, &[], &[&[]]),
        ("null env", r#"{"id":"R1","env":null}"#, NoEnv, &[], &[&[]]),
        ("no env", r#"{"id":"R1"}"#, NoEnv, &[], &[&[]]),
        ("empty list", "[]\n", NoEnv, &[], &[]),
        ("null answer", "null", NoEnv, &[], &[&[]]),
    ];
    for (case, body, who, protected, hidden) in cases {
        check(case, body, *who, protected, hidden);
    }
}

/// A release whose manifest declares defaults: a plain one, a secret one by name and by
/// value, one of a protected key, one without a default.
const RELEASE_WITH_DEFAULTS: &str = r#"{"id":"R1","app":"x","env":"PORT=3000","manifest":"environment:\n  - PORT=3000\n  - API_TOKEN=tok\n  - DSN=postgres://u:hunter2@db/x\n  - LOCKED=abc\n  - NEEDED\nservices:\n  web:\n    environment: [WEB=1]\n","description":""}"#;

#[test]
fn manifest_defaults_are_masked_as_env_values_are() {
    use Visibility::{All, NoEnv, NonSecret};
    let shown = |k: &str, v: &str| format!("{k}={}", mask("x", &format!("\0manifest\0{k}"), v));
    let masked = |who, protected: &[String]| {
        let out = mask_release_json(
            RELEASE_WITH_DEFAULTS.as_bytes(),
            "x",
            who,
            &audit(),
            protected,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["manifest"].as_str().unwrap().to_owned()
    };
    let none = masked(NoEnv, &[]);
    for (k, v) in [
        ("PORT", "3000"),
        ("API_TOKEN", "tok"),
        ("DSN", "postgres://u:hunter2@db/x"),
        ("LOCKED", "abc"),
        ("WEB", "1"),
    ] {
        assert!(
            none.contains(&format!("\"{}\"", shown(k, v))),
            "{k}: {none}"
        );
        assert!(!none.contains(&format!("{k}={v}")), "{k} shown: {none}");
    }
    assert!(none.contains("  - NEEDED\nservices:\n  web:\n    environment: ["));
    // A default's mask is not the env value's: equal masks would say the app runs with it.
    assert!(!none.contains(&mask("x", "PORT", "3000")));
    let env_read = masked(NonSecret, &[]);
    assert!(env_read.contains("  - PORT=3000\n") && env_read.contains("[WEB=1]"));
    assert!(env_read.contains(&shown("API_TOKEN", "tok")));
    assert!(env_read.contains(&shown("DSN", "postgres://u:hunter2@db/x")));
    assert!(env_read.contains("  - LOCKED=abc\n"));
    let protected = masked(All, &["LOCKED".to_owned()]);
    assert!(protected.contains(&shown("LOCKED", "abc")));
    assert!(protected.contains("API_TOKEN=tok") && protected.contains("hunter2"));
    // Who reads everything of an app with nothing protected gets the manifest as it was.
    let body =
        mask_release_json(RELEASE_WITH_DEFAULTS.as_bytes(), "x", All, &audit(), &[]).unwrap();
    assert_eq!(body, RELEASE_WITH_DEFAULTS.as_bytes());
}

/// A manifest whose defaults cannot be found for certain is masked whole, for any caller who
/// may not read every value; builds are masked alike.
#[test]
fn manifests_not_read_for_certain_are_masked_whole() {
    let unread = "x: &e [SECRET=1]\nenvironment: *e\n";
    let body = serde_json::json!([{ "id": "B1", "manifest": unread }]).to_string();
    for who in [Visibility::NoEnv, Visibility::NonSecret] {
        let out = mask_manifest_defaults(body.as_bytes(), "x", who, &audit(), &[]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["manifest"], mask("x", "\0manifest", unread));
    }
    let out = mask_release_json(
        body.as_bytes(),
        "x",
        Visibility::All,
        &audit(),
        &["A".into()],
    )
    .unwrap();
    assert!(!String::from_utf8(out).unwrap().contains("SECRET=1"));
    // A build's manifest as a release's.
    let build = r#"{"id":"B1","manifest":"environment:\n  - KEY=v\n","status":"complete"}"#;
    let out =
        mask_manifest_defaults(build.as_bytes(), "x", Visibility::NoEnv, &audit(), &[]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["manifest"],
        format!(
            "environment:\n  - \"KEY={}\"\n",
            mask("x", "\0manifest\0KEY", "v")
        )
    );
    assert_eq!(v["status"], "complete");
}

#[test]
fn masking_rewrites_only_the_hidden_values() {
    let out = mask_release_json(
        SEEDED_RELEASE.as_bytes(),
        "x",
        Visibility::NonSecret,
        &audit(),
        &[],
    )
    .unwrap();
    let want = SEEDED_RELEASE.replace("s3cr3t", &mask("x", "SECRET_TOKEN", "s3cr3t"));
    assert_eq!(String::from_utf8(out).unwrap(), want);
    // Go's escapes elsewhere in the answer, and in values left visible, stay as they were.
    let out = mask_release_json(
        CAPTURED_RELEASE.as_bytes(),
        "x",
        Visibility::NonSecret,
        &audit(),
        &[],
    )
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains(r#"GREETING=\u003cb\u003ehi\u003c/b\u003e \u0026 bye\n"#));
    assert!(out.contains(r#""description": "build of A \u0026 B","#));
    assert!(!out.contains("hunter2") && !out.contains("MIIB") && !out.contains("u:p@h"));
}

#[test]
fn unparseable_answers_are_errors_never_passed_through() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let cases: &[(&str, &[u8], &str)] = &[
        ("empty", b"", "mask_unparseable"),
        (
            "rack error text",
            b"release not found: R1\n",
            "mask_unparseable",
        ),
        (
            "gzip",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00",
            "mask_unparseable",
        ),
        ("truncated", br#"{"env":"FOO=bar"#, "mask_unparseable"),
        (
            "trailing data",
            br#"{"env":"FOO=bar"} {}"#,
            "mask_unparseable",
        ),
        (
            "raw control character",
            b"{\"env\":\"A=\x01\"}",
            "mask_unparseable",
        ),
        ("bad escape", br#"{"env":"A=\x"}"#, "mask_unparseable"),
        ("bad number", br#"{"n":01,"env":"A=1"}"#, "mask_unparseable"),
        ("single quotes", br#"{'env':'A=1'}"#, "mask_unparseable"),
        ("not UTF-8", b"{\"env\":\"A=\xff\"}", "mask_unparseable"),
        ("too deep", deep.as_bytes(), "mask_unparseable"),
        ("env is a number", br#"{"env":3}"#, "mask_unexpected_shape"),
        (
            "env is an object",
            br#"[{"env":{"A":"1"}}]"#,
            "mask_unexpected_shape",
        ),
        (
            "ENV is a list",
            br#"{"ENV":["A=1"]}"#,
            "mask_unexpected_shape",
        ),
        ("a string", br#""A=1""#, "mask_unexpected_shape"),
        ("list of strings", br#"["A=1"]"#, "mask_unexpected_shape"),
    ];
    for (case, body, kind) in cases {
        for who in [Visibility::NoEnv, Visibility::All] {
            let got = mask_release_json(body, "x", who, &audit(), &[]);
            assert_eq!(got.map_err(|e| e.kind()), Err(*kind), "{case}");
        }
    }
}

#[test]
fn masks_are_stable_and_reveal_nothing() {
    let m = mask("x", "SECRET_TOKEN", "s3cr3t");
    assert_eq!(m, mask("x", "SECRET_TOKEN", "s3cr3t"));
    let tag = m.strip_prefix(MASK_PREFIX).unwrap();
    assert_eq!(tag.len(), 8);
    assert!(
        tag.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let others = [
        mask("y", "SECRET_TOKEN", "s3cr3t"),
        mask("x", "OTHER", "s3cr3t"),
        mask("x", "SECRET_TOKEN", "s3cr3u"),
        mask_value(&AuditKey([8; 32]), "x", "SECRET_TOKEN", "s3cr3t").unwrap(),
        // The lengths keep app, key and value apart, whatever bytes a key holds.
        mask("xS", "ECRET_TOKEN", "s3cr3t"),
        mask("x", "SECRET_TOKENs", "3cr3t"),
    ];
    assert_ne!(mask("x", "A", "B\0C"), mask("x", "A\0B", "C"));
    for o in &others {
        assert_ne!(&m, o);
    }
    // The mask is the HMAC the module doc describes, truncated: not the value, not reversible
    // without the audit key.
    let mut derive = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[7; 32]).unwrap();
    derive.update(b"\xffrack-gateway env mask key v3");
    let mask_key = derive.finalize().into_bytes();
    // The mask key is never what a caller's secret value is recorded as, the label's text
    // included.
    assert_ne!(
        crate::config::hmac_value(&AuditKey([7; 32]), "rack-gateway env mask key v3"),
        format!("hmac-sha256:{}", hex::encode(mask_key))
    );
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&mask_key).unwrap();
    mac.update(b"\0\0\0\0\0\0\0\x01x\0\0\0\0\0\0\0\x0cSECRET_TOKENs3cr3t");
    let full = hex::encode(mac.finalize().into_bytes());
    assert_eq!(m, format!("rgw-masked:{}", &full[..8]));
    assert!(!m.contains("s3cr3t"));
}

/// One restore case: what is posted, the current env, the protected keys, and the env to
/// forward or the refusal's kind.
fn check_restore(
    case: &str,
    posted: &str,
    current: &str,
    protected: &[&str],
    want: Result<&str, &str>,
) {
    let protected: Vec<String> = protected.iter().map(|p| (*p).to_owned()).collect();
    let current = Env::parse(current);
    let got = restore_env_param(posted, "x", &current, &audit(), &protected);
    match (&got, want) {
        (Ok(env), Ok(w)) => assert_eq!(env, w, "{case}"),
        (Err(e), Err(kind)) => {
            assert_eq!(e.kind(), kind, "{case}");
            assert!(e.is_refusal(), "{case}");
            assert!(!e.to_string().contains("s3cr3t"), "{case}");
        }
        _ => panic!("{case}: got {got:?}, want {want:?}"),
    }
    let needed = needs_current_env(posted, &protected);
    if !needed {
        assert_eq!(
            got.as_deref(),
            Ok(posted),
            "{case}: restored without needing to"
        );
    }
}

#[test]
fn masked_values_are_restored_only_for_the_same_key_of_the_same_app() {
    let seeded = "FOO=bar\nSECRET_TOKEN=s3cr3t";
    let m = mask("x", "SECRET_TOKEN", "s3cr3t");
    let foo = mask("x", "FOO", "bar");
    let set = format!("A=B\nFOO=bar\nSECRET_TOKEN={m}");
    let unset = format!("SECRET_TOKEN={m}");
    let all_masked = format!("A=B\nFOO={foo}\nSECRET_TOKEN={m}");
    let crlf = format!("A=B\r\nSECRET_TOKEN={m}\r\n");
    let dup = format!("SECRET_TOKEN=new\nSECRET_TOKEN={m}");
    let other_key = format!("FOO=bar\nOTHER={m}\nSECRET_TOKEN={m}");
    let other_app = format!(
        "FOO=bar\nSECRET_TOKEN={}",
        mask("y", "SECRET_TOKEN", "s3cr3t")
    );
    let stale = format!("FOO=bar\nSECRET_TOKEN={}", mask("x", "SECRET_TOKEN", "old"));
    let absent = format!("NEW={}", mask("x", "NEW", ""));
    let upper = format!(
        "SECRET_TOKEN={}",
        m.to_uppercase().replace("RGW-MASKED:", MASK_PREFIX)
    );
    assert_ne!(
        upper,
        format!("SECRET_TOKEN={m}"),
        "the mask has hex letters"
    );
    let embedded = format!("SECRET_TOKEN=x{m}");
    let short = format!("SECRET_TOKEN={}", &m[..m.len() - 1]);
    let protected_kept = format!("A=B\nFOO={foo}\nSECRET_TOKEN={m}");
    let mask_key = format!("FOO=bar\n{}=1\nSECRET_TOKEN={m}", mask("x", "", "junk"));
    let mask_line = format!("FOO=bar\n{}\nSECRET_TOKEN={m}", mask("x", "", "junk"));
    #[rustfmt::skip]
    let cases: Vec<RestoreCase> = vec![
        ("env set A=B", &set, &[], Ok("A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t")),
        ("env unset FOO", &unset, &[], Ok("SECRET_TOKEN=s3cr3t")),
        ("every value masked", &all_masked, &[], Ok("A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t")),
        ("CRLF lines kept", &crlf, &[], Ok("A=B\r\nSECRET_TOKEN=s3cr3t\r\n")),
        ("duplicates", &dup, &[], Ok("SECRET_TOKEN=new\nSECRET_TOKEN=s3cr3t")),
        ("in clear", "A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t", &[], Ok("A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t")),
        ("another key", &other_key, &[], Err("masked_value_misused")),
        ("another app", &other_app, &[], Err("masked_value_misused")),
        ("stale mask", &stale, &[], Err("masked_value_misused")),
        ("key not in the current env", &absent, &[], Err("masked_value_misused")),
        ("upper-case mask", &upper, &[], Err("masked_value_misused")),
        ("mask inside a value", &embedded, &[], Err("masked_value_misused")),
        ("truncated mask", &short, &[], Err("masked_value_misused")),
        ("protected kept through its mask", &protected_kept, &["FOO"], Ok("A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t")),
        // Even unchanged: otherwise each post would confirm or refute a guess of the value.
        ("protected posted in clear", "FOO=bar\nSECRET_TOKEN=x", &["FOO"], Err("protected_env_change")),
        ("mask in a key", &mask_key, &[], Err("masked_value_misused")),
        ("mask in a line that sets nothing", &mask_line, &[], Err("masked_value_misused")),
        ("protected changed", "FOO=baz\nSECRET_TOKEN=s3cr3t", &["FOO"], Err("protected_env_change")),
        ("protected removed", &unset, &["FOO"], Err("protected_env_change")),
        ("protected added", "FOO=bar\nNEW=1\nSECRET_TOKEN=s3cr3t", &["NEW"], Err("protected_env_change")),
        ("protected duplicate wins last", "FOO=bar\nFOO=baz\nSECRET_TOKEN=s3cr3t", &["FOO"], Err("protected_env_change")),
    ];
    for (case, posted, protected, want) in cases {
        check_restore(case, posted, seeded, protected, want);
    }
}

/// A certificate whose base64 body ends in a short padded line in one case (`QQ==`): a stray
/// line only by its place, after the body's last full line.
const SHORT_TAIL_PEM: &str =
    "CERT=-----BEGIN X-----\nMIIEowIBAAKCAQEAu1SU1L\nQQ==\n-----END X-----\nZ=1";

#[test]
fn a_description_naming_a_stray_key_is_masked_whole() {
    // The rack describes a release made by an env change by the keys it read: a PEM's padded
    // last line and a JSON line of a multi-line value are keys made of the value's bytes. A
    // short padded tail in one case (`QQ==`) reads as a name, and is told apart only by its
    // place in the env beside the description.
    let described = |env: &str, description: &str| {
        let body = serde_json::json!([{ "id": "R2", "env": env, "description": description }]);
        body.to_string()
    };
    let pem = SHORT_TAIL_PEM;
    for (env, description, shown) in [
        (pem, "env add:CERT add:QQ", false),
        (pem, "env add:CERT add:Z", true),
        (
            "A=1",
            "env add:PORT change:DATABASE_URL remove:OLD_KEY",
            true,
        ),
        ("A=1", "env add:my-key.v2 add:zone_1", true),
        ("A=1", "built from main (abc123)", true),
        ("A=1", "", true),
        ("A=1", "env add:TLS_KEY add:9z+40RQzuVaE8AkAFmx", false),
        ("A=1", "env add:MIIEowIBAAKCAQEAu1SU1Lb", false),
        (
            "A=1",
            "env add:SA add:\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIE",
            false,
        ),
        ("A=1", "env add:", false),
        ("A=1", "env anything else", false),
    ] {
        let body = described(env, description);
        for who in [Visibility::NoEnv, Visibility::NonSecret] {
            let out = mask_release_json(body.as_bytes(), "x", who, &audit(), &[]).unwrap();
            let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let want = if shown {
                description.to_owned()
            } else {
                mask("x", "\0description", description)
            };
            assert_eq!(
                out[0]["description"],
                want.as_str(),
                "{description:?} {who:?}"
            );
        }
    }
}

#[test]
fn every_line_of_a_multi_line_value_is_masked() {
    // `convox env set TLS_KEY="$(cat key.pem)"`: the rack stores the newlines as posted, so the
    // key's body follows its entry as lines that set nothing, and a base64 line ending in `=`
    // reads as a key made of the value's bytes.
    let env = "PORT=3000\nTLS_KEY=-----BEGIN PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1L\n9z+40RQzuVaE8AkAFmx==\n-----END PRIVATE KEY-----\n\nZONE=eu\n";
    let body = serde_json::json!({ "id": "R1", "env": env }).to_string();
    let m = |k: &str, v: &str| mask("x", k, v);
    let whole = |line: &str| mask("x", "", line);
    // The padded base64 line reads as an entry: its mask keeps the `=`.
    let strays = format!(
        "{}\n{}=\n{}",
        whole("MIIEowIBAAKCAQEAu1SU1L"),
        whole("9z+40RQzuVaE8AkAFmx=="),
        whole("-----END PRIVATE KEY-----"),
    );
    for (who, protected, want) in [
        (
            Visibility::NoEnv,
            &[][..],
            format!(
                "PORT={}\nTLS_KEY={}\n{}\n\nZONE={}\n",
                m("PORT", "3000"),
                m("TLS_KEY", "-----BEGIN PRIVATE KEY-----"),
                strays,
                m("ZONE", "eu"),
            ),
        ),
        (
            Visibility::NonSecret,
            &[][..],
            format!(
                "PORT=3000\nTLS_KEY={}\n{}\n\nZONE=eu\n",
                m("TLS_KEY", "-----BEGIN PRIVATE KEY-----"),
                strays,
            ),
        ),
        (
            Visibility::All,
            &["TLS_KEY".to_owned()][..],
            format!(
                "PORT=3000\nTLS_KEY={}\n{}\n\nZONE=eu\n",
                m("TLS_KEY", "-----BEGIN PRIVATE KEY-----"),
                strays,
            ),
        ),
        // Nothing hidden: the caller reads the value whole, byte for byte.
        (Visibility::All, &[][..], env.to_owned()),
    ] {
        let out = mask_release_json(body.as_bytes(), "x", who, &audit(), protected).unwrap();
        let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["env"], want.as_str(), "{who:?} {protected:?}");
    }
    // A padded last line made only of letters is a stray line wherever it stands (right after
    // its entry, for a two-line value) and whatever its length (OpenSSH wraps at 70); a name may
    // start with a digit; an empty variable named as names are (`FOO=`) is an entry; and a
    // line nothing classifies as secret is masked for a caller who may not read secrets, even
    // when nothing else is hidden; an empty value right after an ordinary entry is an entry.
    let env = "A=1\nK=-----BEGIN X-----\nMIIEowIB\nAkAFmx==\nB=\nSMTP=host: smtp.x\n\
               password: hunter2\nS=bjpvcGVu\nAbCdEf==\n9LIVES=x\nT=x\n\
               wFIMcjQ5fiWeNa7wAAAAhvcHNAcHJvZA==\nFOO=\nAPI=\n";
    let body = serde_json::json!({ "id": "R1", "env": env }).to_string();
    for (who, protected, want) in [
        (
            Visibility::NonSecret,
            &[][..],
            format!(
                "A=1\nK=-----BEGIN X-----\n{}\n{}=\nB=\nSMTP=host: smtp.x\n{}\nS=bjpvcGVu\n{}=\n\
                 9LIVES=x\nT=x\n{}=\nFOO=\nAPI=\n",
                whole("MIIEowIB"),
                whole("AkAFmx=="),
                whole("password: hunter2"),
                whole("AbCdEf=="),
                whole("wFIMcjQ5fiWeNa7wAAAAhvcHNAcHJvZA=="),
            ),
        ),
        (
            Visibility::All,
            &["A".to_owned()][..],
            format!(
                "A={}\nK=-----BEGIN X-----\n{}\n{}=\nB=\nSMTP=host: smtp.x\n{}\nS=bjpvcGVu\n{}=\n\
                 9LIVES=x\nT=x\n{}=\nFOO=\nAPI=\n",
                m("A", "1"),
                whole("MIIEowIB"),
                whole("AkAFmx=="),
                whole("password: hunter2"),
                whole("AbCdEf=="),
                whole("wFIMcjQ5fiWeNa7wAAAAhvcHNAcHJvZA=="),
            ),
        ),
    ] {
        let out = mask_release_json(body.as_bytes(), "x", who, &audit(), protected).unwrap();
        let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["env"], want.as_str(), "{who:?} {protected:?}");
    }
}

#[test]
fn a_run_may_not_set_a_protected_key() {
    let protected = ["DATABASE_URL".to_owned()];
    for (environment, want) in [
        ("DATABASE_URL=postgres://elsewhere", Some("DATABASE_URL")),
        ("A=1&DATABASE%5FURL=x", Some("DATABASE_URL")),
        ("DATABASE_URL", Some("DATABASE_URL")),
        ("A=1&B=DATABASE_URL", None),
        ("A=1;DATABASE_URL=x", Some("DATABASE_URL")),
        ("DATABASE_URLS=x", None),
        ("", None),
    ] {
        assert_eq!(
            protected_in_run_env(environment, &protected),
            want,
            "{environment}"
        );
    }
}

/// `convox env set` reads the env, keeps the lines that hold an `=` and posts them back sorted
/// by key: a short padded tail shown masked whole (`<mask>=`) then stands after an entry, where
/// it no longer reads as a piece of a value. It is restored all the same, or no variable of such
/// an app could be set; `convox releases rollback`, which posts the env as read, gets it back
/// in place.
#[test]
fn a_line_shown_masked_whole_is_restored_where_the_cli_posts_it() {
    let env = SHORT_TAIL_PEM;
    let body = serde_json::json!({ "id": "R1", "env": env }).to_string();
    let out = mask_release_json(body.as_bytes(), "x", Visibility::NoEnv, &audit(), &[]).unwrap();
    let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let shown = out["env"].as_str().unwrap();
    let tail = format!("{}=", mask("x", "", "QQ=="));
    assert!(shown.contains(&format!("\n{tail}\n")), "{shown}");
    let current = Env::parse(env);
    let rollback = restore_env_param(shown, "x", &current, &audit(), &[]);
    assert_eq!(rollback.as_deref(), Ok(env));
    let mut lines: Vec<&str> = shown.lines().filter(|l| l.contains('=')).collect();
    lines.push("NEW=1");
    lines.sort_unstable();
    let set = restore_env_param(&lines.join("\n"), "x", &current, &audit(), &[]);
    assert_eq!(
        set.as_deref(),
        Ok("CERT=-----BEGIN X-----\nNEW=1\nZ=1\nQQ==")
    );
}

#[test]
fn a_short_tail_and_a_protected_key_shaped_like_one_are_masked() {
    let whole = |line: &str| mask("x", "", line);
    // A padded tail in one case, after the body's last full line: stray by its place.
    let env = "K=-----BEGIN X-----\nMIIEowIBAAKCAQEAu1SU1L\nQQ==\n-----END X-----\nZ=1";
    let body = serde_json::json!({ "id": "R1", "env": env }).to_string();
    let out = mask_release_json(
        body.as_bytes(),
        "x",
        Visibility::All,
        &audit(),
        &["K".to_owned()],
    )
    .unwrap();
    let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let shown = out["env"].as_str().unwrap();
    assert!(
        shown.contains(&format!("\n{}=\n", whole("QQ=="))),
        "{shown}"
    );
    assert!(!shown.contains("QQ"), "{shown}");
    // A protected key that reads as a stray line (mixed case, empty) is hidden, whole, and
    // comes back through the restore; posted in clear it is refused.
    let env = "ApiKey=\nA=1";
    let current = Env::parse(env);
    let body = serde_json::json!({ "id": "R1", "env": env }).to_string();
    let protected = ["ApiKey".to_owned()];
    let out =
        mask_release_json(body.as_bytes(), "x", Visibility::All, &audit(), &protected).unwrap();
    let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let shown = out["env"].as_str().unwrap();
    assert_eq!(shown, format!("{}=\nA=1", whole("ApiKey=")));
    let restored = restore_env_param(
        &format!("{shown}\nB=2"),
        "x",
        &current,
        &audit(),
        &protected,
    );
    assert_eq!(restored.as_deref(), Ok("ApiKey=\nA=1\nB=2"));
    let clear = restore_env_param("ApiKey=\nA=1", "x", &current, &audit(), &protected);
    assert_eq!(clear.map_err(|e| e.kind()), Err("protected_env_change"));
}

#[test]
fn lines_masked_whole_come_back_as_they_were() {
    let env = "A=1\nK=-----BEGIN X-----\nMIIEowIB\nAkAFmx==\n-----END X-----\nZ=2";
    let current = Env::parse(env);
    let body = serde_json::json!({ "id": "R1", "env": env }).to_string();
    let read = mask_release_json(body.as_bytes(), "x", Visibility::NoEnv, &audit(), &[]).unwrap();
    let shown = Env::from_releases_json(&read).unwrap();
    // `convox releases rollback` posts what it read back as it is: restored exactly.
    let restored = restore_env_param(shown.as_str(), "x", &current, &audit(), &[]).unwrap();
    assert_eq!(restored, env);
    // `convox env set B=3` posts what the CLI's `Load` kept: the entries, the one shown whole
    // with its `=` among them, which comes back as it was; lines that set nothing are dropped,
    // as the real CLI drops them.
    let mut lines: Vec<String> = shown.entries().map(|(k, v)| format!("{k}={v}")).collect();
    lines.push("B=3".into());
    let restored = restore_env_param(&lines.join("\n"), "x", &current, &audit(), &[]).unwrap();
    assert_eq!(restored, "A=1\nK=-----BEGIN X-----\nAkAFmx==\nZ=2\nB=3");
    // Wherever a restored line lands, it is still shown whole: strays are judged by form.
    let body = serde_json::json!({ "id": "R2", "env": restored }).to_string();
    let again =
        mask_release_json(body.as_bytes(), "x", Visibility::NonSecret, &audit(), &[]).unwrap();
    let again = String::from_utf8(again).unwrap();
    assert!(!again.contains("AkAFmx"), "{again}");
    // A line's mask stands for that line only, in the form it was shown: with a value after
    // its `=`, without the `=` it was shown with, or for a line the current env does not hold,
    // it is refused.
    let stray = mask("x", "", "AkAFmx==");
    for posted in [
        format!("A=1\n{stray}=x"),
        format!("A=1\n{stray}"),
        format!("A=1\n{}", mask("x", "", "gone")),
    ] {
        let got = restore_env_param(&posted, "x", &current, &audit(), &[]).map_err(|e| e.kind());
        assert_eq!(got, Err("masked_value_misused"), "{posted}");
    }
}

#[test]
fn a_masked_answer_posted_back_restores_the_current_env() {
    // `convox env set A=B` by a caller without env read: read masked, merge, post, restore.
    let read = mask_release_json(
        SEEDED_LIST.as_bytes(),
        "x",
        Visibility::NoEnv,
        &audit(),
        &[],
    )
    .unwrap();
    let current = Env::from_releases_json(SEEDED_LIST.as_bytes()).unwrap();
    let masked = Env::from_releases_json(&read).unwrap();
    let mut lines: Vec<String> = masked.entries().map(|(k, v)| format!("{k}={v}")).collect();
    lines.push("A=B".into());
    lines.sort();
    let posted = lines.join("\n");
    let restored = restore_env_param(&posted, "x", &current, &audit(), &[]).unwrap();
    assert_eq!(restored, "A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t");
    // The form the proxy forwards, canonicalized again, carries the restored env.
    let rule = ROUTES.iter().find(|r| r.name == "release.create").unwrap();
    let params = |body: &[u8]| {
        canonicalize_params(
            rule,
            &RequestParams {
                method: "POST",
                content_type: Some("application/x-www-form-urlencoded"),
                query: Some(""),
                body: RequestBody::Buffered(body),
                headers: &[],
            },
        )
        .unwrap()
    };
    let sent = format!(
        "build=B1&description=hi+there&env={}",
        utf8_percent_encode(&posted, NON_ALPHANUMERIC)
    );
    let form = form_with(params(sent.as_bytes()).params(), "env", &restored);
    let forwarded = params(&form);
    assert_eq!(forwarded.get("env").as_deref(), Some(restored.as_str()));
    assert_eq!(forwarded.get("build").as_deref(), Some("B1"));
    assert_eq!(forwarded.get("description").as_deref(), Some("hi there"));
}

#[test]
fn secrets_are_classified_by_name_or_by_value() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, bool)] = &[
        // By value, under innocent names.
        ("NOTES", "postgres://u:p@h/db", true),
        ("REDIS_URL", "redis://:pw@cache:6379/0", true),
        ("UPSTREAMS", "https://a.example,https://user:pw@b.example", true),
        // A raw `,` or `?` in a password: the userinfo runs to the last `@`.
        ("HOOK", "https://bot:p,w?x@hooks.example/in", true),
        // A multi-byte character right before the next URL.
        ("UPSTREAMS", "\u{201c}postgres://app:hunter2@db/app\u{201d},\u{201c}redis://cache:6379\u{201d}", true),
        ("MYSQL", "app:hunter2@tcp(db:3306)/app", true),
        ("CLONE_FROM", "https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/o/r", true),
        ("SESSION", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl", true),
        ("HEADER", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", true),
        ("TLS", "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXk=", true),
        ("GH", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", true),
        ("STRIPE", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", true),
        ("AWS_ID", "AKIAIOSFODNN7EXAMPLE", true),
        ("AWS", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", true),
        ("RANDOM", "sDmD8j2PaiGo9TkgD9Z4", true),
        ("RANDOM_URLSAFE", "bEH7CS-_iEz5MBcGdIS_ue-P5HfIfpXu", true),
        ("HEX", "3c6e0b8a9c15224a8228b9a98ca1531d", true),
        ("SYMBOLS", "Xk9#mP2$vL8@qR4!zT6&", true),
        ("GATEWAY", "rgw_Zm9vYmFyYmF6cXV4cXV1eHh5enp5", true),
        // Random material that starts with `/`, alone or after a path.
        ("SEED", "/x8Kq3mZ9vT2bQw7LpR4sN1uY6eH0jC5aD3fG8kM=", true),
        ("CMD", "/bin/run --token 9fK2xQ7mZ3vT8bLw1pR5sN0uY4eH6jC2", true),
        // A password given as a pair inside the value.
        ("SPRING_DATASOURCE_URL", "jdbc:postgresql://db/app?user=u&password=hunter2", true),
        ("PG_CONN", "host=db user=u password=hunter2", true),
        ("CONN", "Server=db;Database=app;User Id=u;Pwd=Hunter2!x;", true),
        ("CALLBACK", "https://api.example.com/v1?api_key=abc123", true),
        ("ADMIN_PW", "Tr0ub4dor&3", true),
        ("OPTS", "encryption_key=correcthorse --verbose", true),
        ("AZURE", "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc;", true),
        ("FLAGS", "--master-key=correcthorse --auth-key=pw", true),
        ("MORE", "apikey=abc", true),
        // A pair written as JSON, YAML or a header, or a flag and its value apart.
        ("APP_CONFIG", r#"{"user":"app","password":"Summer2024!"}"#, true),
        ("APP_CONFIG_SPACED", r#"{ "user": "app", "api_key": "abc" }"#, true),
        ("SETTINGS", "password: hunter2", true),
        ("EXTRA_ARGS", "--user app --password Summer2024!", true),
        ("UPSTREAM_AUTH_HDR", "Authorization: Basic dXNlcjpwYXNz", true),
        // Random material is masked even when it is only an id: a UUID, a commit hash.
        ("TENANT", "123e4567-e89b-12d3-a456-426614174000", true),
        ("GIT_SHA", "da39a3ee5e6b4b0d3255bfef95601890afd80709", true),
        // Names win on the secret side, whatever the value.
        ("SECRET_TOKEN", "abc", true),
        ("API_KEY", "", true),
        ("apiKey", "x", true),
        ("DB_PASSWORD", "changeme", true),
        ("SMTP_PASS", "x", true),
        ("DATABASE_URL", "sqlite:///tmp/db", true),
        ("SECRET_KEY_BASE", "development", true),
        ("AWS_ACCESS_KEY_ID", "x", true),
        ("SENTRY_DSN", "x", true),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/etc/gcp.json", true),
        // Neither.
        ("FOO", "bar", false),
        ("PORT", "3000", false),
        ("NODE_ENV", "production", false),
        ("REDIS_URL", "redis://cache:6379/0", false),
        ("REPO", "ssh://git@github.com/o/r", false),
        ("HOME_PAGE", "https://example.com/path/to/x?y=1", false),
        ("CONTACT", "ops@example.com", false),
        ("VERSION", "v1.2.3-build.20240101-abcdef", false),
        ("BUILD", "app-web-20240101-123456789", false),
        ("NAME", "production2024server", false),
        ("CLASS", "ThisIsAVeryLongCamelCaseName", false),
        ("DATA_DIR", "/var/lib/postgresql/14/main", false),
        ("STATIC_ROOT", "/srv/app-2024/public_html/assets-v3.1.4/img", false),
        ("PG_HOST", "host=db user=u dbname=app sslmode=require", false),
        ("JAVA_OPTS", "-Djavax.net.ssl.keyStore=/etc/ks.jks -Xmx512m", false),
        ("LOGIN_URL", "https://example.com/login?auth_mode=popup&sortKey=name", false),
        ("SIGNER", "hmac_algorithm=sha256 signing_keystore=/etc/x.jks", false),
        ("NODE_OPTIONS", "--max-old-space-size=4096", false),
        ("LANG", "en_US.UTF-8", false),
        ("IMAGE", "registry.example.com/team/app:20240101", false),
        ("PASSENGER_COUNT", "4", false),
        ("AUTHOR", "someone", false),
        ("KEYCLOAK_REALM", "main", false),
        // The same shapes with names that say nothing of a secret, or nothing after them.
        ("APP_CONFIG_PLAIN", r#"{"user":"app","mode":"fast"}"#, false),
        ("SETTINGS_PLAIN", "timeout: 30", false),
        ("EXTRA_ARGS_PLAIN", "--user app --verbose", false),
        ("ENDS_WITH_FLAG", "--workers 4 --password", false),
        ("SERVICE_URL", "https://api.example.com:8443/v1", false),
    ];
    for (key, value, secret) in cases {
        assert_eq!(is_secret(key, value), *secret, "{key}={value}");
    }
}

#[test]
fn external_builds_lose_the_rack_password() {
    // The mock rack's answer to `POST /apps/x/builds` `external=true&url=`, then its list.
    let created = r#"{
  "id": "BAAAAAAAAB",
  "app": "x",
  "manifest": "",
  "repository": "https://convox:pw@api.mock/x",
  "status": "created",
  "started": "2026-01-01T00:00:08Z"
}
"#;
    let list = r#"[{"id":"BAAAAAAAAB","repository":"https://convox:pw@api.mock/x"},{"id":"BAAAAAAAAA","repository":""},null]"#;
    let token_user =
        r#"{"repository":"https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/o/r"}"#;
    #[rustfmt::skip]
    let cases: &[(&str, &str, Result<String, &str>)] = &[
        ("created", created, Ok(created.replace("convox:pw@", "convox:rgw-redacted@"))),
        ("list", list, Ok(list.replace("convox:pw@", "convox:rgw-redacted@"))),
        ("lone token user", token_user, Ok(r#"{"repository":"https://rgw-redacted@github.com/o/r"}"#.to_owned())),
        ("no credentials", r#"{"repository":"https://api.mock/x"}"#, Ok(r#"{"repository":"https://api.mock/x"}"#.to_owned())),
        ("null", r#"{"repository":null}"#, Ok(r#"{"repository":null}"#.to_owned())),
        ("Go's case-insensitive match", r#"{"Repository":"https://convox:pw@api.mock/x"}"#, Ok(r#"{"Repository":"https://convox:rgw-redacted@api.mock/x"}"#.to_owned())),
        ("escaped", r#"{"repository":"https:\/\/convox:p\u0026w@api.mock\/x"}"#, Ok(r#"{"repository":"https:\/\/convox:rgw-redacted@api.mock\/x"}"#.to_owned())),
        ("a raw / and @ in the password", r#"{"repository":"https://convox:a/b@c@api.mock/x"}"#, Ok(r#"{"repository":"https://convox:rgw-redacted@api.mock/x"}"#.to_owned())),
        ("text", "build not found\n", Err("mask_unparseable")),
        ("repository is a number", r#"{"repository":1}"#, Err("mask_unexpected_shape")),
    ];
    for (case, body, want) in cases {
        let got = scrub_external_build(body.as_bytes())
            .map(|b| String::from_utf8(b).unwrap())
            .map_err(|e| e.kind());
        assert_eq!(got, want.clone(), "{case}");
    }
}

#[test]
fn masking_routes_are_every_route_whose_answer_carries_env_a_build_or_pod_logs() {
    for rule in ROUTES.iter() {
        let want = match rule.name {
            "release.list" | "release.get" | "release.create" => Some(ResponseMask::ReleaseEnv),
            n if n.starts_with("build.")
                && !matches!(n, "build.export" | "build.image" | "build.logs") =>
            {
                Some(ResponseMask::BuildRepository)
            }
            "process.list" | "process.get" | "process.run" | "rack.processes" => {
                Some(ResponseMask::ProcessCommand)
            }
            "app.diagnose" => Some(ResponseMask::RackPassword),
            _ => None,
        };
        assert_eq!(response_mask(rule), want, "{}", rule.name);
        assert_eq!(masks_response(rule), want.is_some(), "{}", rule.name);
        if rule.secrets.response == Secrecy::Sensitive {
            assert_eq!(want, Some(ResponseMask::ReleaseEnv), "{}", rule.name);
        }
    }
}

#[test]
fn process_commands_are_scrubbed_as_the_log_records_them() {
    let list = r#"[{"id":"web-1","command":"PGPASSWORD=hunter2 psql -h db","name":"web"},{"id":"web-2","command":"bin/web","name":"web"}]"#;
    let out = String::from_utf8(scrub_process_commands(list.as_bytes()).unwrap()).unwrap();
    assert!(!out.contains("hunter2"), "{out}");
    assert!(out.contains(r#""command":"bin/web""#), "{out}");
    let want = crate::proxy::redact::scrub("PGPASSWORD=hunter2 psql -h db");
    assert!(out.contains(&want), "{out}");
    // Nothing to scrub: byte for byte.
    let one = r#"{"id":"web-2","command":"bin/web"}"#;
    assert_eq!(
        scrub_process_commands(one.as_bytes()).unwrap(),
        one.as_bytes()
    );
    assert!(scrub_process_commands(b"{\"command\":1}").is_err());
}

#[test]
fn envs_are_read_the_way_the_rack_reads_them() {
    let text = "A=1\nB==2\r\nC=\n  D =x y\n=nokey\nnoeq\n\nA=3\r\r\nE=last";
    let env = Env::parse(text);
    assert_eq!(env.as_str(), text);
    let entries: Vec<(&str, &str)> = env.entries().collect();
    assert_eq!(
        entries,
        [
            ("A", "1"),
            ("B", "=2"),
            ("C", ""),
            ("D", "x y"),
            ("A", "3\r"),
            ("E", "last")
        ]
    );
    assert_eq!(env.get("A"), Some("3\r"));
    assert_eq!(env.get("nokey"), None);
    assert_eq!(env.to_map().len(), 5);
    assert!(!format!("{env:?}").contains("last"));
    let newest = Env::from_releases_json(CAPTURED_LIST.as_bytes()).unwrap();
    assert_eq!(newest.as_str(), "A=B\nFOO=bar\nSECRET_TOKEN=s3cr3t");
    assert_eq!(
        Env::from_releases_json(SEEDED_RELEASE.as_bytes())
            .unwrap()
            .get("FOO"),
        Some("bar")
    );
    assert_eq!(Env::from_releases_json(b"[]").unwrap(), Env::default());
    assert!(Env::from_releases_json(b"release not found\n").is_err());
}

#[test]
fn visibility_follows_env_and_secret_read() {
    let user = |roles: &[Role]| {
        Visibility::of(&Grant::for_user(&Standing::Active(
            roles.iter().copied().collect(),
        )))
    };
    assert_eq!(user(&[Role::Viewer]), Visibility::NoEnv);
    assert_eq!(user(&[Role::Ops]), Visibility::NonSecret);
    assert_eq!(user(&[Role::Deployer]), Visibility::NonSecret);
    assert_eq!(user(&[Role::Admin]), Visibility::All);
    let owner = Standing::Active(BTreeSet::from([Role::Admin]));
    let scoped = Grant::for_token(&[Permission("convox:release:read".into())], &owner, &[]);
    assert_eq!(Visibility::of(&scoped), Visibility::NoEnv);
    let cicd = Grant::for_token(
        &[Permission("convox:*:*".into())],
        &Standing::Active(BTreeSet::from([Role::Cicd])),
        &[],
    );
    assert_eq!(Visibility::of(&cicd), Visibility::NoEnv);
    assert_eq!(
        Visibility::of(&Grant::for_user(&Standing::Disabled)),
        Visibility::NoEnv
    );
}

/// `body` with `value` taken out, as the gateway takes the rack password out of a whole answer.
fn scrub_value(body: &[u8], value: &str, replacement: &str) -> Vec<u8> {
    Scrubber::new(value)
        .scrub(body, replacement)
        .unwrap_or_else(|| body.to_vec())
}

/// The rack password in each form an answer can quote it: as it is or percent-encoded (as a form
/// value or a URL's userinfo), each bare, JSON-escaped (Go's way too) or JSON-escaped twice.
#[test]
fn a_value_is_replaced_in_every_form_it_is_quoted_in() {
    let pw = "p w/<&>+$\"\\";
    let cases = [
        ("as it is", r#"x p w/<&>+$"\ y"#),
        ("JSON", r#"{"error":"p w/<&>+$\"\\"}"#),
        ("Go's JSON", r#"{"error":"p w/\u003c\u0026\u003e+$\"\\"}"#),
        (
            "quoted, then JSON as Go writes it",
            r#"{"error":"bad: \"p w/\u003c\u0026\u003e+$\\\"\\\\\""}"#,
        ),
        ("a form value", "env=p+w%2F%3C%26%3E%2B%24%22%5C&x=1"),
        (
            "a URL's userinfo",
            "https://convox:p%20w%2F%3C&%3E+$%22%5C@rack/x",
        ),
        (
            "a URL's userinfo, as Go's JSON",
            r#"{"error":"https://convox:p%20w%2F%3C\u0026%3E+$%22%5C@rack/x"}"#,
        ),
    ];
    let want = [
        "x rgw-redacted y",
        r#"{"error":"rgw-redacted"}"#,
        r#"{"error":"rgw-redacted"}"#,
        r#"{"error":"bad: \"rgw-redacted\""}"#,
        "env=rgw-redacted&x=1",
        "https://convox:rgw-redacted@rack/x",
        r#"{"error":"https://convox:rgw-redacted@rack/x"}"#,
    ];
    for ((case, body), want) in cases.iter().zip(want) {
        let got = scrub_value(body.as_bytes(), pw, REDACTED);
        assert_eq!(String::from_utf8(got).unwrap(), want, "{case}");
    }
    assert_eq!(scrub_value(b"nothing here", pw, REDACTED), b"nothing here");
    assert_eq!(scrub_value(b"empty", "", REDACTED), b"empty");
    // Not UTF-8 around it: the other bytes are kept as they are.
    assert_eq!(
        scrub_value(b"\xff\xfeAbCd1234\xff", "AbCd1234", REDACTED),
        [&b"\xff\xfe"[..], REDACTED.as_bytes(), b"\xff"].concat()
    );
    // A short value only where it stands alone.
    assert_eq!(
        scrub_value(b"pw=42 x42y 1420 (42)", "42", REDACTED),
        b"pw=rgw-redacted x42y 1420 (rgw-redacted)"
    );
}

/// A stream scrubbed piece by piece, however it is cut, gives out what the whole stream
/// scrubbed at once gives: every cut into two and three pieces, and byte by byte, of bodies
/// with each form of a long value, a short value (replaced only as a word of its own), forms
/// that begin like other forms, and none.
#[test]
fn a_stream_cut_anywhere_is_scrubbed_as_the_whole() {
    use std::sync::Arc;
    let streamed = |pw: &str, pieces: &[&[u8]]| {
        let mut s = StreamScrub::new(Arc::new(Scrubber::new(pw)), REDACTED);
        let mut out = Vec::new();
        for piece in pieces {
            out.extend_from_slice(&s.push(bytes::Bytes::copy_from_slice(piece)));
        }
        out.extend_from_slice(&s.finish());
        assert!(!s.holding());
        out
    };
    let long = "p w/<&>+$\"\\";
    let cases: [(&str, &[u8]); 8] = [
        (
            long,
            br#"a {"error":"p w/\u003c\u0026\u003e+$\"\\"} b p w/<&>+$"\ c"#,
        ),
        (
            long,
            b"env=p+w%2F%3C%26%3E%2B%24%22%5C&x=1 https://convox:p%20w%2F%3C&%3E+$%22%5C@r",
        ),
        (long, b"p w/<&>+$ almost, then p w/<&>+$\"\\"),
        ("s3cr3t", b"s3cr3s3cr3t s3cr3ts3cr3t s3 \xff\xfes3cr3t"),
        ("42", b"pw=42 x42y 1420 (42) 42"),
        ("42", b"42"),
        ("aaab", b"aaaaaab aab aaab"),
        ("s3cr3t", b"nothing in here at all \xff"),
    ];
    for (pw, body) in cases {
        let whole = scrub_value(body, pw, REDACTED);
        assert_eq!(streamed(pw, &[body]), whole, "{pw:?} in one piece");
        let singles: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(streamed(pw, &singles), whole, "{pw:?} byte by byte");
        for i in 0..=body.len() {
            for j in i..=body.len() {
                let pieces = [&body[..i], &body[i..j], &body[j..]];
                assert_eq!(streamed(pw, &pieces), whole, "{pw:?} cut at {i} and {j}");
            }
        }
    }
}

/// A piece that holds no part of the value goes out as it came, uncopied; a tail that could
/// begin the value is held, and no longer than the value less a byte.
#[test]
fn a_stream_holds_back_only_what_could_begin_the_value() {
    use std::sync::Arc;
    let mut s = StreamScrub::new(Arc::new(Scrubber::new("s3cr3t")), REDACTED);
    let piece = bytes::Bytes::from_static(b"plain output\n");
    let out = s.push(piece.clone());
    assert_eq!(out.as_ptr(), piece.as_ptr(), "not copied");
    assert!(!s.holding());
    assert_eq!(
        &s.push(bytes::Bytes::from_static(b"pushing s3cr")),
        &b"pushing "[..]
    );
    assert!(s.holding());
    assert_eq!(
        &s.push(bytes::Bytes::from_static(b"3t done")),
        &b"rgw-redacted done"[..]
    );
    assert!(!s.holding());
    assert_eq!(
        &s.push(bytes::Bytes::from_static(b"ends s3cr3")),
        &b"ends "[..]
    );
    assert_eq!(
        &s.finish(),
        &b"s3cr3"[..],
        "the end of the stream: no form there"
    );
}

#[test]
fn a_key_set_again_to_another_value_is_found_and_one_set_again_alike_is_not() {
    assert_eq!(set_twice("A=1\nB=2\n A =3"), Some("A".to_owned()));
    assert_eq!(set_twice("A=1\nB=2"), None);
    // Two variables holding one certificate: its padded base64 tail is a line the rack reads
    // as a key, twice, with the same (empty) value.
    let pem = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----";
    let env = format!("TLS_CERT={pem}\nTLS_CHAIN={pem}");
    assert_eq!(set_twice(&env), None, "{env}");
    assert_eq!(
        set_twice("K=rgw-masked:0123abcd\nK=rgw-masked:4567cdef").as_deref(),
        Some("K")
    );
}

/// The rack's line scanner holds a line and its newline in 64 KiB: the longest line it reads
/// passes, one byte more is found, by its line number.
#[test]
fn env_lines_longer_than_the_rack_reads_are_found() {
    let longest = format!("A={}", "a".repeat(ENV_LINE_MAX - 2));
    assert_eq!(longest.len(), 65_535);
    assert_eq!(overlong_line(&format!("X=1\n{longest}\nB=2")), None);
    assert_eq!(overlong_line(&format!("X=1\n{longest}a\nB=2")), Some(2));
    assert_eq!(
        overlong_line(&format!("{longest}\r")),
        Some(1),
        "a `\\r` takes room"
    );
    assert_eq!(overlong_line(""), None);
}

#[test]
fn stray_lines_in_clear_are_found_by_line() {
    assert_eq!(stray_in_clear("A=1\nB=2"), None);
    assert_eq!(stray_in_clear(""), None);
    assert_eq!(
        stray_in_clear("A=1\n\nB=2\n"),
        None,
        "blank lines set nothing and hide nothing"
    );
    assert_eq!(stray_in_clear("A=1\npassword: hunter2\nB=2"), Some(2));
    assert_eq!(stray_in_clear("=empty key\nA=1"), Some(1));
    assert_eq!(
        stray_in_clear("A=-----BEGIN\nMIIB+/x=\nB=2"),
        Some(2),
        "a key made of a value's bytes"
    );
    // Masks of stray lines, as they were shown, are posted back; `restore_env_param` checks them.
    assert_eq!(
        stray_in_clear("A=1\nrgw-masked:0123abcd\nrgw-masked:89abcdef=\nB=2"),
        None
    );
}

/// Stray lines in clear, from a caller who may read every value: taken while the app's
/// protected keys are not set (the caller was shown them in clear), refused once one is (the
/// answer showed every stray line masked, so a line in clear would be a guess).
#[test]
fn stray_lines_in_clear_are_refused_once_a_protected_value_is_hidden() {
    let current = "A=1\npassword: hunter2\nB=2";
    check_restore(
        "protected key not set",
        "A=1\npassword: hunter2\nB=3",
        current,
        &["DB_PASSWORD"],
        Ok("A=1\npassword: hunter2\nB=3"),
    );
    let posted = format!(
        "A=1\npassword: guess\nB=2\nDB_PASSWORD={}",
        mask("x", "DB_PASSWORD", "s3cr3t")
    );
    check_restore(
        "protected key set",
        &posted,
        "A=1\npassword: hunter2\nB=2\nDB_PASSWORD=s3cr3t",
        &["DB_PASSWORD"],
        Err("env_line_in_clear"),
    );
}

/// The rack drops a line's last carriage return, so a value that ends in one (a line stored
/// as `K=v\r\r\n`) is restored with another after it: `convox env set` by a caller shown it
/// masked leaves it, a protected one included, as it was.
#[test]
fn a_restored_value_ending_in_a_carriage_return_keeps_it() {
    let cr = |k: &str| mask("x", k, "abc\r");
    #[rustfmt::skip]
    let cases: &[RestoreCase] = &[
        ("protected, LF", &format!("A=2\nPROT={}\n", cr("PROT")), &["PROT"], Ok("A=2\nPROT=abc\r\r\n")),
        ("protected, last line", &format!("A=2\nPROT={}", cr("PROT")), &["PROT"], Ok("A=2\nPROT=abc\r\r")),
        ("protected, CRLF", &format!("A=2\r\nPROT={}\r\n", cr("PROT")), &["PROT"], Ok("A=2\r\nPROT=abc\r\r\n")),
        ("unprotected", &format!("A=2\nPROT={}\n", cr("PROT")), &[], Ok("A=2\nPROT=abc\r\r\n")),
    ];
    for (case, posted, protected, want) in cases {
        check_restore(case, posted, "PROT=abc\r\r\nA=1\n", protected, *want);
        if let Ok(env) = want {
            assert_eq!(Env::parse(env).get("PROT"), Some("abc\r"), "{case}");
        }
    }
}
