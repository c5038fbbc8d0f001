//! `rack-bench`: the benchmarks of the event log, one subcommand per question.
//!
//! **Invariant:** every figure leaves as one JSON line on stdout (see `report`), every
//! subcommand first names the filesystem of `--data` and refuses tmpfs (exit 2), and an error
//! never leaves a partial figure behind: figures are printed only once measured. Exit codes:
//! 0 measured, 1 failed, 2 refused to run (memory filesystem, or not a rack-bench log).

mod append;
mod bench_log;
mod fs_check;
mod io_account;
mod latency;
mod memory;
mod proxy;
mod rebuild;
mod report;
mod sync_baseline;
mod verify;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Benchmarks of the Rack Gateway event log. Every figure is printed as one JSON line.
#[derive(Parser, Debug)]
#[command(name = "rack-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Durable appends per second and per-call latency with W concurrent writers, against one
    /// write+fdatasync per event on a plain file.
    Append(append::Args),
    /// Replay time of the whole log into fresh projections, restart time from a snapshot, and
    /// peak memory; fills the log first if it is smaller than --records.
    Rebuild(rebuild::Args),
    /// Offline verification of an export (`rack-audit verify`'s core) against
    /// `openssl dgst -sha256` over the same bytes.
    Verify(verify::Args),
    /// Requests/s and p50/p99 of the CLI's request mix direct to mock-rack, through nginx as a
    /// plain reverse proxy, and through the gateway, in one run with one load generator.
    Proxy(proxy::Args),
}

/// The gateway's own allocator (see `rack-gateway`'s `main.rs`): the gateway measured here runs
/// in this process, so it must allocate as the product does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Append(args) => append::run(args),
        Command::Rebuild(args) => rebuild::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Proxy(args) => proxy::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<fs_check::Refusal>().is_some() => {
            eprintln!("rack-bench: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("rack-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
