//! The durability baseline: a plain file, one `write` + `fdatasync` per event, sequentially.
//!
//! **Invariant:** the baseline writes the same bytes per event as the store stores (one sealed
//! record), in the same directory (same filesystem, same device) and in the same run as the
//! figure it is compared with, and each write is durable (`File::sync_data`, which is
//! `fdatasync(2)` on Linux) before the next starts. The file is appended to, not preallocated,
//! as a naive log would be, so every sync also commits the file's new size. It is removed
//! afterwards.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::latency::{Samples, Summary};

/// One run of the baseline.
pub struct Measured {
    pub events: u64,
    pub elapsed: Duration,
    pub samples: Samples,
}

/// Two runs (before and after the measured phase) taken together.
pub struct Combined {
    pub events_per_s: f64,
    pub before_per_s: f64,
    pub after_per_s: f64,
    pub latency: Summary,
}

// === impl Measured ===

impl Measured {
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Both runs as one: total events over total time, percentiles over every sample.
    pub fn combine(self, after: Measured) -> Combined {
        let (before_per_s, after_per_s) = (self.events_per_s(), after.events_per_s());
        let events = self.events + after.events;
        let elapsed = self.elapsed + after.elapsed;
        let mut samples = self.samples;
        samples.merge(after.samples);
        Combined {
            events_per_s: events as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
            before_per_s,
            after_per_s,
            latency: samples.summary(),
        }
    }
}

/// Appends `record` `count` times to a fresh file under `dir`, each followed by `fdatasync`.
pub fn run(dir: &Path, record: &[u8], count: u64) -> Result<Measured> {
    let path = dir.join("rack-bench-fdatasync.dat");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.sync_all()?;
    let mut samples = Samples::with_capacity(usize::try_from(count).unwrap_or(0));
    let started = Instant::now();
    for _ in 0..count {
        let t = Instant::now();
        file.write_all(record)
            .with_context(|| format!("write to {}", path.display()))?;
        file.sync_data()
            .with_context(|| format!("fdatasync {}", path.display()))?;
        samples.push(t.elapsed());
    }
    let elapsed = started.elapsed();
    drop(file);
    fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(Measured {
        events: count,
        elapsed,
        samples,
    })
}
