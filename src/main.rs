//! The `rack-gateway` binary: parses the command line and reports errors at the edge.

use clap::Parser;

/// mimalloc rather than glibc's malloc: the proxy's workers allocate what the store's sequencer
/// thread frees (the events it seals), and glibc answers most such frees with a lock on the
/// allocating thread's arena, contended under load (most of the gateway's futex calls in the
/// proxy benchmark). mimalloc hands a freed block back to its owner without a lock. Built
/// without transparent huge pages: faulting them in stalled requests by milliseconds (README,
/// "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = rack_gateway::cli::Cli::parse();
    match rack_gateway::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rack-gateway: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
