//! `rack-bench verify`: how fast the auditor's verifier checks an export, against the hashing
//! limit of this CPU (`openssl dgst -sha256` over the same segment bytes).
//!
//! **Invariant:** both sides read the same files, each measured on its second pass so both find
//! them in the page cache; the verifier is the same `events::verify::verify_export` that
//! `rack-audit verify` runs, with the key pinned, and the bench fails if verification fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use events::verify::{self, DirSource, Quiet};
use rack_gateway::keys::Keys;

use crate::report::Figure;
use crate::{bench_log, fs_check, rebuild};

const BENCH: &str = "verify";
const GOAL_RATIO: f64 = 0.5;

/// Arguments of `rack-bench verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory of the log to export and verify (filled first if it holds fewer records).
    #[arg(long)]
    pub data: PathBuf,
    /// Where the export is written (existing identical objects are adopted).
    #[arg(long)]
    pub out: PathBuf,
    /// Records the log must hold.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
}

pub fn run(args: &Args) -> Result<()> {
    fs_check::prepare(BENCH, &args.data)?;
    fs_check::prepare(BENCH, &args.out)?;
    let log = bench_log::log_path(&args.data);
    let have = if log.exists() {
        events::store::redb::LogReader::open(&log)?.len()?
    } else {
        0
    };
    if have < args.records {
        rebuild::fill_in_child(&args.data, args.records)?;
    }
    let key = Keys::load(&args.data)?.vkey();
    let started = Instant::now();
    let exported = rack_gateway::export::export_local(&log, &args.out)
        .with_context(|| format!("cannot export to {}", args.out.display()))?;
    let export_time = started.elapsed();

    let segments = segment_files(&args.out)?;
    let bytes: u64 = segments
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();

    let openssl = (0..2)
        .map(|_| openssl_pass(&segments))
        .collect::<Result<Vec<_>>>()?;
    let mut summary = None;
    let mut times = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        let s = verify::verify_export(&DirSource::new(&args.out), Some(&key), &mut Quiet)
            .map_err(|e| anyhow::anyhow!("verification failed: {e}"))?;
        times.push(t.elapsed());
        summary = Some(s);
    }
    let Some(summary) = summary else {
        bail!("no verification ran");
    };
    let verify_time = times.last().copied().unwrap_or(Duration::MAX);
    let openssl_time = openssl.last().copied().unwrap_or(Duration::MAX);
    let rate = |t: Duration| bytes as f64 / t.as_secs_f64().max(f64::MIN_POSITIVE) / 1e6;
    let ratio = rate(verify_time) / rate(openssl_time);
    Figure::new(BENCH, "throughput", rate(verify_time), "MB/s")
        .baseline(
            "openssl dgst -sha256 over the same segment files (second pass, page cache warm)",
            rate(openssl_time),
        )
        .with("records", summary.records)
        .with("segments", summary.segments)
        .with("checkpoints", summary.checkpoints)
        .with("segment_bytes", bytes)
        .with("verify_s", verify_time.as_secs_f64())
        .with(
            "verify_first_pass_s",
            times.first().map(|t| t.as_secs_f64()),
        )
        .with("openssl_s", openssl_time.as_secs_f64())
        .with(
            "records_per_s",
            summary.records as f64 / verify_time.as_secs_f64(),
        )
        .with("export_s", export_time.as_secs_f64())
        .with("export_written", exported.written)
        .with("goal", "≥ 0.5 × openssl's bytes/s")
        .with("goal_met", ratio >= GOAL_RATIO)
        .print();
    Ok(())
}

fn segment_files(out: &Path) -> Result<Vec<PathBuf>> {
    let dir = out.join("segments");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.sort();
    Ok(files)
}

fn openssl_pass(files: &[PathBuf]) -> Result<Duration> {
    let started = Instant::now();
    let status = Command::new("openssl")
        .arg("dgst")
        .arg("-sha256")
        .args(files)
        .stdout(Stdio::null())
        .status()
        .context("cannot run openssl (is it installed?)")?;
    if !status.success() {
        bail!("openssl dgst failed: {status}");
    }
    Ok(started.elapsed())
}
