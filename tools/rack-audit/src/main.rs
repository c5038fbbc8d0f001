//! `rack-audit`: the auditor's standalone verifier. It trusts nothing but the key it is given.
//!
//! It depends on the `events` verification core and the embedded store reader only: no HTTP
//! server and no projections (a test checks `cargo tree -p rack-audit`). Exit codes: 0 intact,
//! 1 an integrity failure (named: the first failing `seq` or object), 2 usage or I/O errors.

mod commands;
mod input;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Verify a Rack Gateway audit log export or data directory.
#[derive(Parser, Debug)]
#[command(name = "rack-audit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check every record, link, checkpoint, manifest and digest.
    Verify {
        /// An export directory or a gateway data directory.
        path: std::path::PathBuf,
        /// The checkpoint key (C2SP vkey) to pin; without it the key is taken from the export.
        #[arg(long)]
        key: Option<String>,
        /// Print the summary or the failure as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prove that record SEQ is included in the tree of a checkpoint.
    Prove {
        path: std::path::PathBuf,
        #[arg(long)]
        seq: u64,
        /// Checkpoint number (default: the newest).
        #[arg(long)]
        checkpoint: Option<u64>,
        #[arg(long)]
        key: Option<String>,
    },
    /// Prove that checkpoint OLD's tree is a prefix of checkpoint NEW's (default: the newest).
    ///
    /// With `--old-note`, OLD is a checkpoint note saved from an earlier export (`--key`
    /// required): a log rolled back, truncated or forked since then fails here, which no check
    /// of the export alone can see.
    Consistency {
        path: std::path::PathBuf,
        #[arg(
            long,
            required_unless_present = "old_note",
            conflicts_with = "old_note"
        )]
        old: Option<u64>,
        /// A checkpoint note kept from an earlier export.
        #[arg(long, requires = "key")]
        old_note: Option<std::path::PathBuf>,
        #[arg(long)]
        new: Option<u64>,
        #[arg(long)]
        key: Option<String>,
    },
    /// Print records in the JSON form, one per line.
    Dump {
        path: std::path::PathBuf,
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long)]
        to: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Verify { path, key, json } => commands::verify(&path, key.as_deref(), json),
        Command::Prove {
            path,
            seq,
            checkpoint,
            key,
        } => commands::prove(&path, seq, checkpoint, key.as_deref()),
        Command::Consistency {
            path,
            old,
            old_note,
            new,
            key,
        } => {
            let old = match (old, old_note) {
                (_, Some(note)) => commands::Old::Saved(note),
                (Some(n), None) => commands::Old::Number(n),
                (None, None) => unreachable!("clap requires --old or --old-note"),
            };
            commands::consistency(&path, old, new, key.as_deref())
        }
        Command::Dump { path, from, to } => commands::dump(&path, from, to),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rack-audit: {e:#}");
            ExitCode::from(2)
        }
    }
}
