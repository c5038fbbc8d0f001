//! Bytes this process handed to the kernel and to the storage layer, from `/proc/self/io`.
//!
//! **Invariant:** figures are the kernel's per-process accounting (all threads, including the
//! store's sequencer), read before and after one phase; nothing is estimated. `wchar` counts
//! bytes passed to `write`/`pwrite`; `write_bytes` counts bytes of page cache this process
//! dirtied, i.e. what reaches the device (each commit's `fdatasync` cleans its pages, so a page
//! rewritten by the next commit counts again, as it is written again).

use std::fs;

use anyhow::{Context, Result};

/// A reading of `/proc/self/io`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Io {
    pub wchar: u64,
    pub write_bytes: u64,
    pub syscw: u64,
}

// === impl Io ===

impl Io {
    pub fn now() -> Result<Io> {
        let text = fs::read_to_string("/proc/self/io").context("cannot read /proc/self/io")?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .with_context(|| format!("no {name} in /proc/self/io"))
        };
        Ok(Io {
            wchar: field("wchar:")?,
            write_bytes: field("write_bytes:")?,
            syscw: field("syscw:")?,
        })
    }

    /// What happened between `self` (earlier) and `later`.
    pub fn until(self, later: Io) -> Io {
        Io {
            wchar: later.wchar.saturating_sub(self.wchar),
            write_bytes: later.write_bytes.saturating_sub(self.write_bytes),
            syscw: later.syscw.saturating_sub(self.syscw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_a_write() {
        let before = Io::now().unwrap();
        let dir = std::env::temp_dir().join(format!("rack-bench-io-{}", std::process::id()));
        fs::write(&dir, [0u8; 4096]).unwrap();
        let d = before.until(Io::now().unwrap());
        fs::remove_file(&dir).unwrap();
        assert!(d.wchar >= 4096 && d.syscw >= 1, "{d:?}");
    }
}
