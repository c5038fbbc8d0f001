//! The `rack-gateway` binary: parses the command line and reports errors at the edge.

use clap::Parser;

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
