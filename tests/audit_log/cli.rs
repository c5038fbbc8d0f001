//! The command lines around the log: the auditor's verifier stays free of server code, and the
//! gateway's key commands print one stable public key and never overwrite a key.

use std::time::Duration;

use events::checkpoint::VerifierKey;

use crate::support;

/// Crates the auditor's verifier must not link: HTTP servers and the gateway's projections.
const FORBIDDEN: &[&str] = &["hyper", "axum", "warp", "tower", "projections"];

#[test]
fn rack_audit_links_no_http_server_and_no_projections() {
    let out = support::run(
        std::process::Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "tree",
                "-p",
                "rack-audit",
                "--edges",
                "normal",
                "--prefix",
                "none",
            ]),
        Duration::from_secs(300),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"rack-audit") && crates.contains(&"events"),
        "{text}"
    );
    let linked: Vec<&&str> = crates
        .iter()
        .filter(|c| {
            FORBIDDEN
                .iter()
                .any(|f| **c == *f || c.starts_with(&format!("{f}-")))
        })
        .collect();
    assert!(linked.is_empty(), "rack-audit links {linked:?}:\n{text}");
}

#[test]
fn keys_show_prints_the_vkey_keys_init_printed_and_init_never_overwrites() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let limit = Duration::from_secs(60);
    let keys = |cmd: &str| {
        support::run(
            support::rack_gateway()
                .args(["keys", cmd, "--data"])
                .arg(&data),
            limit,
        )
    };
    let last_line = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };

    let init = keys("init");
    assert!(init.status.success(), "keys init: {init:?}");
    let printed = last_line(&init);
    let parsed = VerifierKey::parse(&printed).expect("keys init prints a vkey");
    assert_eq!(parsed.name(), rack_gateway::keys::DEFAULT_ORIGIN);

    let show = keys("show");
    assert!(show.status.success(), "keys show: {show:?}");
    let shown = last_line(&show);
    assert_eq!(
        VerifierKey::parse(&shown).expect("keys show prints a vkey"),
        parsed
    );
    assert_eq!(shown, printed);

    let files = ["checkpoint.key", "audit.key", "snapshot.key"];
    let read_all = || {
        files
            .iter()
            .map(|f| std::fs::read(data.join("keys").join(f)).expect("key file"))
            .collect::<Vec<_>>()
    };
    let before = read_all();
    let again = keys("init");
    assert!(
        !again.status.success(),
        "a second keys init succeeded: {again:?}"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{again:?}"
    );
    assert_eq!(read_all(), before, "a refused keys init changed a key file");
    assert_eq!(last_line(&keys("show")), printed);
}
