//! Another binary of the workspace for a test that runs it as its own process: built with
//! `cargo build -p <package>` beside the test binary, into the same target directory and
//! profile, so a clean checkout needs nothing built by hand. Included with `#[path]` by the
//! test targets that need it (`tests/audit_log`, `tests/upload_rss.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the build may take on a cold machine before the test fails.
const BUILD_LIMIT: Duration = Duration::from_secs(900);

/// Builds `package`'s binary of the same name and returns its path; the test fails, after the
/// build is killed, if it does not succeed within [`BUILD_LIMIT`].
pub fn build(package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary sits in <target>/<profile>/deps");
    let target = profile_dir.parent().expect("<target>/<profile>");
    let bin = profile_dir.join(package);
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target)
        .args(["build", "-p", package]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            build.arg("--release");
        }
        Some(other) => {
            build.args(["--profile", other]);
        }
    }
    let child = build
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `cargo build -p {package}`: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(BUILD_LIMIT) else {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("`cargo build -p {package}` took over {BUILD_LIMIT:?}");
    };
    let out = out.expect("waiting for cargo build");
    assert!(
        out.status.success() && bin.is_file(),
        "cannot build {package} at {}: `cargo build -p {package}` with CARGO_TARGET_DIR={} \
         ended {}:\n{}",
        bin.display(),
        target.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}
