//! Golden fixtures are append-only: a committed fixture never changes and is never deleted. This
//! is the check every fixture suite runs (the events' CBOR fixtures, the gateway API's JSON
//! bodies) against the `sha256sum` lines it pins, and the one reader of a fixture directory.

use std::fs::DirEntry;
use std::path::Path;

use sha2::{Digest, Sha256};

/// One fixture file: its name without the extension, the type that name gives, and its bytes.
pub struct Fixture {
    pub name: String,
    /// `<Type>` of `<Type>.<ext>` (the first shape) or of `<Type>-<n>.<ext>` (a later one).
    pub kind: String,
    pub bytes: Vec<u8>,
}

/// Every fixture in `dir`, sorted by name. Entries `passed_over` accepts are skipped; any other
/// entry that is not named `<Type>.<extension>` or `<Type>-<n>.<extension>` (n >= 2) fails the
/// calling test, naming the file; so does a directory without fixtures.
#[allow(clippy::panic, clippy::unwrap_used)]
pub fn read_dir(
    dir: &Path,
    extension: &str,
    passed_over: &dyn Fn(&DirEntry) -> bool,
) -> Vec<Fixture> {
    let suffix = format!(".{extension}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if passed_over(&entry) {
            continue;
        }
        let file_name = entry.file_name().into_string().unwrap();
        let name = file_name
            .strip_suffix(&suffix)
            .unwrap_or_else(|| panic!("{}/{file_name}: not a {suffix} fixture", dir.display()));
        let kind = match name.split_once('-') {
            None => name,
            Some((kind, n)) => {
                let n: u32 = n.parse().unwrap_or_else(|_| {
                    panic!("{file_name}: a later shape is named <Type>-<n>{suffix}")
                });
                assert!(n >= 2, "{file_name}: the first shape is <Type>{suffix}");
                kind
            }
        };
        out.push(Fixture {
            name: name.to_owned(),
            kind: kind.to_owned(),
            bytes: std::fs::read(entry.path()).unwrap(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!out.is_empty(), "no fixtures found in {}", dir.display());
    out
}

/// Fails the calling test unless every fixture (`name`, `bytes`) is pinned in `pins` (lines of
/// `sha256sum` output for `<name>.<extension>`) with the SHA-256 of its bytes, and every pinned
/// fixture is still there. A new fixture fails with the line to add.
#[allow(clippy::panic)]
pub fn check_pinned(pins: &str, extension: &str, fixtures: &[(&str, &[u8])]) {
    let suffix = format!(".{extension}");
    let pins: Vec<(&str, &str)> = pins
        .lines()
        .map(|line| {
            line.split_once("  ")
                .and_then(|(sha, file)| Some((file.strip_suffix(&suffix)?, sha)))
                .unwrap_or_else(|| panic!("{line:?}: not a `sha256sum` line of a {suffix} file"))
        })
        .collect();
    for (name, bytes) in fixtures {
        let actual = hex::encode(Sha256::digest(bytes));
        let Some((_, pinned)) = pins.iter().find(|(pin, _)| pin == name) else {
            panic!("{name}: new fixture; pin it in FIXTURE_SHA256: {actual}  {name}{suffix}");
        };
        assert_eq!(
            actual, *pinned,
            "{name}: a committed fixture changed; fixtures are append-only (schemas/fixtures/README.md)"
        );
    }
    for (name, _) in &pins {
        assert!(
            fixtures.iter().any(|(f, _)| f == name),
            "{name}: a committed fixture was deleted"
        );
    }
}
