//! The `rack-gateway` command line: its arguments and what each command does.
//!
//! `main.rs` parses and reports errors; each command here returns `anyhow::Result` only at this
//! edge, with messages that name the file or directory involved.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use events::event::{Permission, Principal, Role, TokenId};
use events::store::{CheckpointPolicy, EventStore};
use events::time::Clock;

use crate::export;
use crate::identity::admin::{self, TokenRequest};
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
    /// Run the gateway on embedded defaults: local keys and store, the mock rack, plain HTTP
    /// on 127.0.0.1, and a fresh dev-only admin token.
    Dev {
        #[arg(long, default_value = ".rack-gateway-dev")]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:0")]
        proxy: std::net::SocketAddr,
        #[arg(long, default_value = "127.0.0.1:0")]
        console: std::net::SocketAddr,
    },
    /// Run the gateway from a configuration file.
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the policy tables (role × permission, route → permission) as the README shows them.
    PolicyTables,
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
    /// Create, list or revoke API tokens (offline, against a stopped gateway's data directory).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Grant or revoke roles (offline, against a stopped gateway's data directory).
    Role {
        #[command(subcommand)]
        command: RoleCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret once.
    Create {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        name: String,
        /// The person the token acts for; it never has more than their current roles allow.
        #[arg(long)]
        owner: String,
        /// A permission the token may use (repeat for more).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Days until the token expires.
        #[arg(long)]
        expires_in_days: Option<u64>,
        /// Who is creating it (recorded in the event).
        #[arg(long, default_value = "system")]
        by: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// Revoke a token by id.
    Revoke {
        #[arg(long)]
        data: PathBuf,
        id: String,
        #[arg(long, default_value = "revoked from the command line")]
        reason: String,
        #[arg(long, default_value = "system")]
        by: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Grant a role (viewer, ops, deployer, admin) to a person.
    Grant {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "system")]
        by: String,
    },
    /// Revoke a role; the last admin cannot be removed.
    Revoke {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "system")]
        by: String,
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
        Command::Dev {
            data,
            proxy,
            console,
        } => runtime()?.block_on(crate::server::dev::run(crate::server::dev::DevOptions {
            data,
            proxy,
            console,
        }))?,
        Command::Serve { config } => runtime()?.block_on(crate::server::serve::run(&config))?,
        Command::PolicyTables => print!("{}", policy_tables()),
        Command::Token { command } => runtime()?.block_on(token(command))?,
        Command::Role { command } => runtime()?.block_on(role(command))?,
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

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn open(data: &std::path::Path) -> anyhow::Result<store::Store> {
    let (store, _) = store::open(data, CheckpointPolicy::default())
        .with_context(|| format!("opening the gateway's store in {}", data.display()))?;
    Ok(store)
}

fn parse_role(s: &str) -> anyhow::Result<Role> {
    Role::parse(s).with_context(|| format!("{s:?} is not a role (viewer, ops, deployer, admin)"))
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            data,
            name,
            owner,
            scopes,
            expires_in_days,
            by,
        } => {
            let store = open(&data)?;
            let expires = expires_in_days.map(|d| {
                Clock
                    .now()
                    .plus(std::time::Duration::from_secs(d.saturating_mul(86_400)))
            });
            let created = admin::create_token(
                &store,
                TokenRequest {
                    name,
                    owner: Principal(owner),
                    scopes: scopes.into_iter().map(Permission).collect(),
                    expires,
                    dev_only: false,
                    by: Principal(by),
                },
            )
            .await?;
            println!("id: {}", created.id);
            println!("token: {}", created.secret.expose());
            println!("The token is shown once; only its SHA-256 is recorded.");
        }
        TokenCommand::List { data } => {
            let store = open(&data)?;
            let now = Clock.now();
            store.with_state(|s| {
                for t in s.tokens.iter() {
                    let state = match (t.revoked, t.is_usable(now)) {
                        (Some(_), _) => "revoked",
                        (None, false) => "expired",
                        (None, true) => "active",
                    };
                    let scopes: Vec<&str> = t.scopes.iter().map(|p| p.0.as_str()).collect();
                    println!(
                        "{}  {:<8} {:<24} owner={} scopes={} last_used={}",
                        t.id,
                        state,
                        t.name,
                        t.owner,
                        scopes.join(","),
                        t.last_used.map_or("never".to_owned(), |t| t.to_string()),
                    );
                }
            });
        }
        TokenCommand::Revoke {
            data,
            id,
            reason,
            by,
        } => {
            let token = TokenId::from_hex(&id)
                .with_context(|| format!("{id:?} is not a token id (32 hex digits)"))?;
            let store = open(&data)?;
            let seq = admin::revoke_token(&store, token, Principal(by), reason).await?;
            println!("revoked {token} (seq {seq})");
        }
    }
    Ok(())
}

async fn role(command: RoleCommand) -> anyhow::Result<()> {
    match command {
        RoleCommand::Grant {
            data,
            user,
            role,
            by,
        } => {
            let role = parse_role(&role)?;
            let store = open(&data)?;
            let seq =
                admin::grant_role(&store, Principal(user.clone()), role, Principal(by)).await?;
            println!("granted {role} to {user} (seq {seq})");
        }
        RoleCommand::Revoke {
            data,
            user,
            role,
            by,
        } => {
            let role = parse_role(&role)?;
            let store = open(&data)?;
            let seq =
                admin::revoke_role(&store, Principal(user.clone()), role, Principal(by)).await?;
            println!("revoked {role} from {user} (seq {seq})");
        }
    }
    Ok(())
}

/// The README's policy section, generated from the route table and the roles.
pub fn policy_tables() -> String {
    format!(
        "### Roles and permissions\n\n{}\n### Routes and permissions\n\n{}",
        crate::policy::tables::role_permission_table(),
        crate::policy::tables::route_permission_table()
    )
}
