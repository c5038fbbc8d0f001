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

fn golden() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/fixtures/log-v1")
}

/// A copy of the golden export without the objects named `gone`.
fn golden_without(gone: &[&str]) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("tempdir");
    support::copy_dir(&golden(), copy.path());
    for key in gone {
        std::fs::remove_file(copy.path().join(key)).expect("rm");
    }
    copy
}

fn golden_key() -> String {
    std::fs::read_to_string(golden().join("vkey"))
        .expect("golden vkey")
        .trim()
        .to_owned()
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn prove_gives_an_inclusion_proof_that_verifies_against_the_signed_root() {
    let key = golden_key();
    let out = support::run(
        support::rack_audit()
            .arg("prove")
            .arg(golden())
            .args(["--seq", "100", "--key", &key]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["verified"], true);
    assert_eq!(v["seq"], 100);
    assert_eq!(v["key_trust"], "pinned");
    let proof: Vec<events::hash::Hash> = v["proof"]
        .as_array()
        .expect("proof")
        .iter()
        .map(|h| events::hash::Hash::from_hex(h.as_str().expect("hex")).expect("hash"))
        .collect();
    let leaf = events::hash::Hash::from_hex(v["leaf_hash"].as_str().expect("leaf")).expect("hash");
    let root = events::hash::Hash::from_hex(v["root"].as_str().expect("root")).expect("hash");
    let size = v["size"].as_u64().expect("size");
    events::merkle::verify_inclusion(&leaf, 100, size, &proof, &root).expect("the proof verifies");
    // The same proof does not prove another record.
    assert!(events::merkle::verify_inclusion(&leaf, 101, size, &proof, &root).is_err());
    // A seq the checkpoint does not cover is refused.
    let out = support::run(
        support::rack_audit()
            .arg("prove")
            .arg(golden())
            .args(["--seq", "100000"]),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn consistency_proves_one_checkpoint_extends_another() {
    let key = golden_key();
    let out = support::run(
        support::rack_audit()
            .arg("consistency")
            .arg(golden())
            .args(["--old", "1", "--new", "5", "--key", &key]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["verified"], true);
    assert!(v["old"]["size"].as_u64() < v["new"]["size"].as_u64());
    // Under another key the checkpoints do not open.
    let other =
        events::checkpoint::NoteSigner::from_seed("golden.rack-gateway.test/log-v1", [9; 32])
            .expect("key")
            .verifier()
            .to_string();
    let out = support::run(
        support::rack_audit()
            .arg("consistency")
            .arg(golden())
            .args(["--old", "1", "--new", "5", "--key", &other]),
        Duration::from_secs(60),
    );
    // A log re-signed under another key is tampering, exit 1, not a usage error.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json_of(&out)["verified"], false);
}

/// An auditor keeps the newest checkpoint of each export and checks the next export against
/// it: a log truncated or rolled back since fails, which no check of the new export alone sees.
#[test]
fn a_saved_checkpoint_catches_a_log_rolled_back_since() {
    let key = golden_key();
    let saved = tempfile::tempdir().expect("tempdir");
    let note = |n: u64| {
        let to = saved.path().join(format!("{n}.note"));
        std::fs::copy(golden().join(format!("checkpoints/{n:010}.note")), &to).expect("copy");
        to
    };
    let check = |export: &std::path::Path, note: &std::path::Path| {
        support::run(
            support::rack_audit()
                .arg("consistency")
                .arg(export)
                .arg("--old-note")
                .arg(note)
                .args(["--key", &key]),
            Duration::from_secs(60),
        )
    };
    // The same log, grown since the saved checkpoint (or exactly at it): consistent.
    for n in [1, 6] {
        let out = check(&golden(), &note(n));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json_of(&out)["verified"], true, "checkpoint {n}");
    }
    // The export no longer reaches the saved checkpoint: rolled back, its last manifest,
    // segment and checkpoint gone, what is left whole.
    let rolled_back = golden_without(&[
        "manifests/0000000006.json",
        "segments/00000000000000000322-00000000000000000346.cbor",
        "checkpoints/0000000006.note",
    ]);
    let out = check(rolled_back.path(), &note(6));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json_of(&out);
    assert_eq!(v["verified"], false);
    assert!(
        v["error"].as_str().expect("error").contains("rolled back"),
        "{v}"
    );
    // Cut short but still holding the checkpoint saved: its records are gone, so the export
    // does not verify, whatever its notes say.
    let cut = golden_without(&[
        "manifests/0000000006.json",
        "segments/00000000000000000322-00000000000000000346.cbor",
    ]);
    let out = check(cut.path(), &note(6));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["verified"], false);
    // A saved checkpoint is trusted only under a pinned key.
    let out = support::run(
        support::rack_audit()
            .arg("consistency")
            .arg(golden())
            .arg("--old-note")
            .arg(note(1)),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn dump_prints_records_in_the_json_form() {
    let out = support::run(
        support::rack_audit()
            .arg("dump")
            .arg(golden())
            .args(["--from", "0", "--to", "3"]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["code"], "G1000I");
    assert_eq!(lines[0]["seq"], 0);
    assert_eq!(lines[2]["seq"], 2);
    assert_eq!(lines[1]["prev"], lines[0]["hash"]);
}
