//! Golden fixtures are append-only: a committed fixture never changes and is never deleted. This
//! is the check every fixture suite runs (the events' CBOR fixtures, the gateway API's JSON
//! bodies) against the `sha256sum` lines it pins.

use sha2::{Digest, Sha256};

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
