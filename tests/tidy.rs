//! Repository rules as tests: every source file opens with a `//!` doc, and ARCHITECTURE.md's
//! code map names every workspace member and every top-level `src/` module.
// Test code: a failed read is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["src", "events", "projections", "tools", "tests", "fuzz"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|p| {
            let text = fs::read_to_string(p).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(missing.is_empty(), "files without a //! doc: {missing:?}");
}

#[test]
fn architecture_names_every_member_and_top_level_module() {
    let arch = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find(|l| l.starts_with("members"))
        .unwrap()
        .to_owned();
    for m in members.split('"').skip(1).step_by(2) {
        let name = if m == "." { "src/" } else { m };
        assert!(
            arch.contains(name),
            "ARCHITECTURE.md does not name member {name}"
        );
    }
    let lib = fs::read_to_string(root().join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(m) = line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            assert!(
                arch.contains(&format!("`{m}`")),
                "ARCHITECTURE.md does not name src module {m}"
            );
        }
    }
}

#[test]
fn readme_policy_tables_are_generated_from_the_code() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let begin = "<!-- policy-tables:begin -->\n";
    let start = readme.find(begin).unwrap() + begin.len();
    let end = readme.find("<!-- policy-tables:end -->").unwrap();
    assert_eq!(
        &readme[start..end],
        rack_gateway::cli::policy_tables(),
        "README.md's policy tables are stale: paste the output of `rack-gateway policy-tables`"
    );
}
