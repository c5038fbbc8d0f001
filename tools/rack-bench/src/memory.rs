//! Peak resident memory of this process, per phase.
//!
//! **Invariant:** figures come from the kernel's own accounting (`VmHWM` in
//! `/proc/self/status`), never from an allocator estimate. [`reset_peak`] writes `5` to
//! `/proc/self/clear_refs` (Linux ≥ 4.0) so one phase's peak is not inherited from the one
//! before; when the kernel refuses, it says so and the next figure is the process's lifetime peak.

use std::fs;

use anyhow::{Context, Result};

/// `VmHWM` (peak resident set size) in MiB.
pub fn peak_rss_mib() -> Result<f64> {
    kib_field("VmHWM:").map(|k| k as f64 / 1024.0)
}

/// `VmRSS` (current resident set size) in MiB.
pub fn rss_mib() -> Result<f64> {
    kib_field("VmRSS:").map(|k| k as f64 / 1024.0)
}

/// Resets `VmHWM` to the current RSS; `false` when the kernel did not allow it.
pub fn reset_peak() -> bool {
    fs::write("/proc/self/clear_refs", b"5").is_ok()
}

fn kib_field(name: &str) -> Result<u64> {
    let status =
        fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {name} in /proc/self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_peak_rss() {
        let peak = peak_rss_mib().unwrap();
        assert!(peak > 0.0 && peak >= rss_mib().unwrap() - 1.0);
    }
}
