//! The `rack-gateway` command line: its arguments and what each command does.
//!
//! `main.rs` parses and reports errors; each command here returns `anyhow::Result` only at this
//! edge, with messages that name the file or directory involved.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::export;
use crate::keys::{self, Keys};
use crate::store;

/// Rack Gateway: the audit-first security gateway for a Convox rack.
#[derive(Parser, Debug)]
#[command(name = "rack-gateway", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or show the gateway's keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create the checkpoint, audit and snapshot keys under DATA/keys (never overwrites).
    Init {
        #[arg(long)]
        data: PathBuf,
        /// The log's name: the checkpoint origin.
        #[arg(long, default_value = keys::DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Print the public checkpoint key in C2SP vkey form.
    Show {
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Write sealed segments, manifests and checkpoints of DATA's log into OUT.
    Export {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keys {
            command: KeysCommand::Init { data, origin },
        } => {
            let keys = Keys::init(&data, &origin)?;
            println!("created keys in {}", data.join("keys").display());
            println!("{}", keys.vkey());
        }
        Command::Keys {
            command: KeysCommand::Show { data },
        } => println!("{}", Keys::load(&data)?.vkey()),
        Command::Audit {
            command: AuditCommand::Export { data, out },
        } => {
            let log = store::log_path(&data);
            if !log.exists() {
                anyhow::bail!("{}: no event store here", log.display());
            }
            let s = export::export_local(&log, &out)
                .with_context(|| format!("exporting {} to {}", log.display(), out.display()))?;
            println!(
                "exported {} records in {} segments with {} checkpoints to {} ({} objects written, {} already there)",
                s.records,
                s.segments,
                s.checkpoints,
                out.display(),
                s.written,
                s.adopted
            );
        }
    }
    Ok(())
}
