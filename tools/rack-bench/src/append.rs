//! `rack-bench append`: durable appends per second through the embedded store, W writers.
//!
//! **Invariant:** an event is counted only once its `append` resolved `Ok`, which by the
//! `EventStore` contract means it is durable and applied; every call carries exactly one event
//! (the audit-first path: one `CommandRequested` per proxied call), and its latency is taken
//! around that one call. The baseline (one `write` + `fdatasync` per event) runs in the same
//! process, in the same directory, with the same record bytes, never while the store appends:
//! half just before the writers start (the store open and idle) and half after it is shut down.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use events::record::Record;
use events::seq::Seq;
use events::store::EventStore;
use events::time::Clock;

use crate::io_account::Io;
use crate::latency::Samples;
use crate::report::Figure;
use crate::{bench_log, fs_check, sync_baseline, workload};

const BENCH: &str = "append";
/// The most events the baseline syncs one by one.
const BASELINE_MAX: u64 = 2_000;
const GOAL_EVENTS_PER_S: f64 = 100_000.0;
const GOAL_WRITERS: usize = 64;

/// Arguments of `rack-bench append`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory; the store is `<DATA>/log.redb` (created if missing).
    #[arg(long)]
    pub data: PathBuf,
    /// Events to append in total, across all writers.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub events: u64,
    /// Concurrent writers (tokio tasks), each appending one event per call.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub writers: u64,
}

pub fn run(args: &Args) -> Result<()> {
    fs_check::prepare(BENCH, &args.data)?;
    let writers = usize::try_from(args.writers)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;

    let store = Arc::new(bench_log::open(&args.data)?);
    let before = store.head();

    // One record as the store will seal it, to report its size and to feed the baseline.
    let sample_event = workload::command_requested(before.size);
    let event_bytes = workload::event_len(&sample_event);
    let sample = Record {
        seq: Seq(before.size),
        time: Clock.now(),
        prev: before.hash,
        event: sample_event,
    }
    .seal();
    let record_bytes = sample.bytes.len();
    Figure::new(BENCH, "record_bytes", record_bytes as f64, "bytes")
        .baseline("target record size (~300 bytes)", 300.0)
        .with("event_bytes", event_bytes)
        .with("event", "G4000I CommandRequested")
        .print();

    // Half the baseline before the store runs and half after, so drift of the device during
    // the run (other I/O on a shared disk) shows up as a difference between the two.
    let base_n = args.events.min(BASELINE_MAX);
    let base_before = sync_baseline::run(&args.data, &sample.bytes, base_n / 2)?;

    let next = Arc::new(AtomicU64::new(0));
    let io_before = Io::now()?;
    let started = Instant::now();
    let capacity = usize::try_from(args.events / args.writers + 1).unwrap_or(0);
    let per_writer = runtime.block_on(async {
        let mut tasks = Vec::with_capacity(writers);
        for _ in 0..writers {
            let store = store.clone();
            let next = next.clone();
            let total = args.events;
            let base = before.size;
            tasks.push(tokio::spawn(async move {
                let mut samples = Samples::with_capacity(capacity);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let event = workload::command_requested(base + i);
                    let t = Instant::now();
                    store
                        .append(vec![event])
                        .await
                        .with_context(|| format!("append of event {i} failed"))?;
                    samples.push(t.elapsed());
                }
                anyhow::Ok(samples)
            }));
        }
        let mut all = Vec::with_capacity(writers);
        for t in tasks {
            all.push(t.await.context("a writer task panicked")??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed();
    let after = store.head();
    store.shutdown();
    drop(store);
    drop(runtime);
    let io = io_before.until(Io::now()?);

    let mut samples = Samples::default();
    for s in per_writer {
        samples.merge(s);
    }
    let latency = samples.summary();
    if latency.count as u64 != args.events || after.size - before.size != args.events {
        bail!(
            "appended {} events ({} calls timed) but asked for {}",
            after.size - before.size,
            latency.count,
            args.events
        );
    }
    let store_rate = args.events as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    let log_bytes = std::fs::metadata(bench_log::log_path(&args.data))
        .map(|m| m.len())
        .unwrap_or(0);

    let base_after = sync_baseline::run(&args.data, &sample.bytes, base_n - base_n / 2)?;
    let base = base_before.combine(base_after);
    let base_what = format!(
        "plain file, one write+fdatasync per {record_bytes}-byte event, sequential, {base_n} \
         events (half before, half after the store run)"
    );

    let goal_met = (writers == GOAL_WRITERS).then_some(store_rate >= GOAL_EVENTS_PER_S);
    Figure::new(BENCH, "throughput", store_rate, "events/s")
        .baseline(base_what.clone(), base.events_per_s)
        .with("writers", writers)
        .with("events", args.events)
        .with("elapsed_s", elapsed.as_secs_f64())
        .with("record_bytes", record_bytes)
        .with("log_records_after", after.size)
        .with("log_file_bytes", log_bytes)
        .with(
            "pwrite_bytes_per_event",
            io.wchar as f64 / args.events as f64,
        )
        .with(
            "device_write_bytes_per_event",
            io.write_bytes as f64 / args.events as f64,
        )
        .with(
            "write_calls_per_event",
            io.syscw as f64 / args.events as f64,
        )
        .with("baseline_events_per_s_before", base.before_per_s)
        .with("baseline_events_per_s_after", base.after_per_s)
        .with("goal", "≥ 100,000 durable events/s at 64 writers")
        .with("goal_met", goal_met)
        .print();
    Figure::new(BENCH, "latency_p50", latency.p50_us, "µs")
        .baseline(base_what.clone(), base.latency.p50_us)
        .with("writers", writers)
        .with("mean_us", latency.mean_us)
        .with("baseline_mean_us", base.latency.mean_us)
        .print();
    Figure::new(BENCH, "latency_p99", latency.p99_us, "µs")
        .baseline(base_what, base.latency.p99_us)
        .with("writers", writers)
        .with("max_us", latency.max_us)
        .with("baseline_max_us", base.latency.max_us)
        .print();
    Ok(())
}
