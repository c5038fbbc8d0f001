//! `rack-bench rebuild`: how long the projections take to come back, from seq 0 and from a
//! snapshot, and how much memory that takes.
//!
//! **Invariant:** the store is open for writing (`RedbStore`) only while it is being filled, in
//! a child process (`--fill-only`) that shuts it down and exits before any `LogReader` opens
//! the file (redb admits one opener), so the writer's memory never counts in the rebuild's RSS.
//! Every record is read through `LogReader::for_each_raw`, decoded strictly with
//! `events::record::decode` and folded with `Fold::apply` into a fresh `Projections`, exactly
//! as a gateway start without a snapshot would; the restart from a snapshot must reach a state
//! equal to the full replay's, or the bench fails.

use std::fs;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use events::fold::Fold;
use events::record;
use events::seq::Seq;
use events::store::redb::LogReader;
use events::store::{EventStore, StoreError};
use projections::Projections;
use projections::snapshot::{self, SnapshotKey};

use crate::fs_check::Refusal;
use crate::io_account::Io;
use crate::report::Figure;
use crate::{bench_log, fs_check, memory, workload};

const BENCH: &str = "rebuild";
/// Events per `append` call while filling.
const FILL_BATCH: u64 = 1_000;
/// Fill calls in flight at once: one being committed while the next is encoded.
const FILL_TASKS: usize = 2;
const GOAL_REPLAY_S_PER_MILLION: f64 = 2.0;
const GOAL_RESTART_MS: f64 = 100.0;

/// Arguments of `rack-bench rebuild`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory; the store is `<DATA>/log.redb`.
    #[arg(long)]
    pub data: PathBuf,
    /// Records the log must hold; it is filled with a realistic mix first if it holds fewer.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub records: u64,
    /// Take the snapshot this many records before the head, so the restart replays them.
    #[arg(long, default_value_t = 0)]
    pub snapshot_behind: u64,
    /// Internal: only fill the log. `rebuild` runs the fill as a child process so the memory
    /// the writer used does not count in the rebuild's peak RSS.
    #[arg(long, hide = true)]
    pub fill_only: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if !args.fill_only {
        fs_check::prepare(BENCH, &args.data)?;
    }
    let path = bench_log::log_path(&args.data);
    let have = if path.exists() {
        open_reader(&path)?.len()?
    } else {
        0
    };
    if args.fill_only {
        return fill(args, have);
    }
    if have < args.records {
        fill_in_child(&args.data, args.records)?;
    }

    let reader = open_reader(&path)?;
    let total = reader.len()?;
    let log_mib = fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / MIB;
    let reset_worked = memory::reset_peak();
    let rss_before = memory::rss_mib()?;

    // Baseline: the raw bytes of every record, not decoded. The first pass warms the cache.
    let (cold_raw, _) = raw_pass(&reader, total)?;
    let (raw, raw_bytes) = raw_pass(&reader, total)?;

    // (a) Replay from seq 0: decode + fold, as a start without a snapshot.
    let snap_at = total.saturating_sub(args.snapshot_behind);
    let mut at_snapshot: Option<Projections> = None;
    let mut state = Projections::default();
    let started = Instant::now();
    reader.for_each_raw(0..total, |seq, bytes| {
        if seq == snap_at && at_snapshot.is_none() {
            at_snapshot = Some(state.clone());
        }
        let stored = record::decode(bytes).map_err(|e| corrupt(seq, e))?;
        state.apply(&stored).map_err(|e| corrupt(seq, e))
    })?;
    let replay = started.elapsed();
    if state.position() != Seq(total) {
        bail!(
            "replay ended at {} but the log holds {total} records",
            state.position()
        );
    }
    let replay_peak = memory::peak_rss_mib()?;
    let at_snapshot = at_snapshot.unwrap_or_else(|| state.clone());

    // Where the replay's time goes: strict decoding alone, without the fold.
    let started = Instant::now();
    reader.for_each_raw(0..total, |seq, bytes| {
        black_box(record::decode(bytes).map_err(|e| corrupt(seq, e))?);
        Ok(())
    })?;
    let decode_only = started.elapsed();

    let per_million = replay.as_secs_f64() * 1e6 / total as f64;
    Figure::new(BENCH, "replay_from_zero", replay.as_secs_f64(), "s")
        .baseline(
            "for_each_raw over the same records, bytes only (no decode, no fold)",
            raw.as_secs_f64(),
        )
        .with("records", total)
        .with("records_per_s", total as f64 / replay.as_secs_f64())
        .with("raw_bytes", raw_bytes)
        .with("first_raw_pass_s", cold_raw.as_secs_f64())
        .with("decode_only_s", decode_only.as_secs_f64())
        .with("fold_s", (replay.saturating_sub(decode_only)).as_secs_f64())
        .with("s_per_million", per_million)
        .with("goal", "≤ 2 s for 1,000,000 records")
        .with("goal_met", per_million <= GOAL_REPLAY_S_PER_MILLION)
        .print();

    // (b) Snapshot, then restart from it: read + authenticate + replay what came after.
    drop(reader);
    let key = SnapshotKey(random_key()?);
    let snap_path = args.data.join("rack-bench-snapshot.rgw");
    let started = Instant::now();
    let (bytes, _digest) = snapshot::write(&at_snapshot, &key).context("cannot write snapshot")?;
    write_synced(&snap_path, &bytes)?;
    let snapshot_write = started.elapsed();

    let t0 = Instant::now();
    let file =
        fs::read(&snap_path).with_context(|| format!("cannot read {}", snap_path.display()))?;
    let t1 = Instant::now();
    let loaded = snapshot::read(&file, &key).context("cannot read back the snapshot")?;
    let t2 = Instant::now();
    let reader = open_reader(&path)?;
    let t3 = Instant::now();
    let mut restarted = loaded.state;
    let from = loaded.covers.0;
    reader.for_each_raw(from..total, |seq, bytes| {
        let stored = record::decode(bytes).map_err(|e| corrupt(seq, e))?;
        restarted.apply(&stored).map_err(|e| corrupt(seq, e))
    })?;
    let t4 = Instant::now();
    drop(reader);
    fs::remove_file(&snap_path)
        .with_context(|| format!("cannot remove {}", snap_path.display()))?;
    let restart = t4 - t0;
    let matches = restarted == state;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Figure::new(BENCH, "restart_from_snapshot", ms(restart), "ms")
        .baseline("replay from seq 0 (figure replay_from_zero)", ms(replay))
        .with("records_after_snapshot", total - from)
        .with("snapshot_bytes", bytes.len())
        .with("snapshot_write_ms", ms(snapshot_write))
        .with("read_file_ms", ms(t1 - t0))
        .with("mac_and_parse_ms", ms(t2 - t1))
        .with("open_log_ms", ms(t3 - t2))
        .with("replay_tail_ms", ms(t4 - t3))
        .with("state_matches_full_replay", matches)
        .with("goal", "≤ 100 ms")
        .with("goal_met", ms(restart) <= GOAL_RESTART_MS)
        .print();
    if !matches {
        bail!("the state restarted from the snapshot differs from the full replay");
    }

    // (c) Peak memory of the rebuild phases (the fill ran in its own process).
    Figure::new(BENCH, "peak_rss", replay_peak, "MiB")
        .baseline("size of log.redb", log_mib)
        .with(
            "phases",
            if reset_worked {
                "raw passes + replay from seq 0"
            } else {
                "whole process (VmHWM reset refused)"
            },
        )
        .with("process_peak_rss_mib", memory::peak_rss_mib()?)
        .with("rss_now_mib", memory::rss_mib()?)
        .with("rss_before_phases_mib", rss_before)
        .with("records", total)
        .print();
    Ok(())
}

/// Runs the fill in a child process (this binary, `rebuild --fill-only`) whose `fill` figure
/// goes straight to our stdout. Its refusal (exit 2) is ours.
pub fn fill_in_child(data: &Path, records: u64) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this executable to run the fill")?;
    let status = Command::new(exe)
        .arg("rebuild")
        .arg("--data")
        .arg(data)
        .arg("--records")
        .arg(records.to_string())
        .arg("--fill-only")
        .status()
        .context("cannot start the fill process")?;
    match status.code() {
        Some(0) => Ok(()),
        Some(2) => Err(Refusal("the fill refused to run (see above)".into()).into()),
        _ => bail!("the fill process failed: {status}"),
    }
}

/// Appends the realistic mix in `FILL_BATCH`-event calls until the log holds `args.records`,
/// and prints the `fill` figure (its peak RSS is this whole process's: it does nothing else).
/// The store is closed on return.
fn fill(args: &Args, have: u64) -> Result<()> {
    let t_open = Instant::now();
    let store = Arc::new(bench_log::open(&args.data)?);
    let open = t_open.elapsed();
    let before = store.head().size;
    let to_add = args.records.saturating_sub(before);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let next = Arc::new(AtomicU64::new(0));
    let io_before = Io::now()?;
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::with_capacity(FILL_TASKS);
        for _ in 0..FILL_TASKS {
            let (store, next) = (store.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let from = next.fetch_add(FILL_BATCH, Ordering::Relaxed);
                    if from >= to_add {
                        break;
                    }
                    let to = (from + FILL_BATCH).min(to_add);
                    let batch = (before + from..before + to).map(workload::mixed).collect();
                    store
                        .append(batch)
                        .await
                        .with_context(|| format!("fill append at {from} failed"))?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await.context("a fill task panicked")??;
        }
        anyhow::Ok(())
    })?;
    let elapsed = started.elapsed();
    let after = store.head().size;
    let t_shut = Instant::now();
    store.shutdown();
    drop(store);
    let shutdown = t_shut.elapsed();
    drop(runtime);
    let io = io_before.until(Io::now()?);
    let added = (after - before).max(1) as f64;
    let peak = memory::peak_rss_mib()?;
    Figure::new(BENCH, "fill", elapsed.as_secs_f64(), "s")
        .with("records_before", have)
        .with("records_after", after)
        .with("records_added", after - before)
        .with(
            "events_per_s",
            to_add as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE),
        )
        .with("events_per_append", FILL_BATCH)
        .with("appends_in_flight", FILL_TASKS)
        .with("open_s", open.as_secs_f64())
        .with("shutdown_s", shutdown.as_secs_f64())
        .with("pwrite_bytes_per_event", io.wchar as f64 / added)
        .with(
            "device_write_bytes_per_event",
            io.write_bytes as f64 / added,
        )
        .with("peak_rss_mib", peak)
        .print();
    Ok(())
}

/// One pass over the raw bytes of `0..total`: its duration and the bytes seen.
fn raw_pass(reader: &LogReader, total: u64) -> Result<(Duration, u64)> {
    let mut bytes = 0u64;
    let started = Instant::now();
    reader.for_each_raw(0..total, |_, b| {
        bytes += black_box(b).len() as u64;
        Ok(())
    })?;
    Ok((started.elapsed(), bytes))
}

fn open_reader(path: &Path) -> Result<LogReader> {
    LogReader::open(path).with_context(|| format!("cannot open {} for reading", path.display()))
}

fn corrupt(seq: u64, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        seq: Seq(seq),
        what: e.to_string(),
    }
}

fn random_key() -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("cannot read /dev/urandom for the snapshot key")?;
    Ok(key)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;
