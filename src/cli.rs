//! The `rack-gateway` command line: its arguments and what each command does.
//!
//! `main.rs` parses and reports errors; each command here returns `anyhow::Result` only at this
//! edge, with messages that name the file or directory involved.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use events::event::{Permission, Principal, Role, TokenId};
use events::store::{CheckpointPolicy, EventStore};
use events::time::Clock;

use crate::console::api::{CreateTokenBody, RevokeTokenBody, TokenView};
use crate::console::client::{Client, GatewayUrl};
use crate::export;
use crate::identity::TokenSecret;
use crate::identity::admin::{self, TokenRequest};
use crate::keys::{self, Keys};
use crate::proxy::rack_tls::Trust;
use crate::store;

/// The environment variable the online token commands read the caller's API token from; never
/// an argument, so it stays out of shell history and process listings.
pub const TOKEN_ENV: &str = "RACK_GATEWAY_TOKEN";

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
    /// Create, list or revoke API tokens: online against a running gateway's API (`--gateway`,
    /// with an admin's token in RACK_GATEWAY_TOKEN), or offline against a stopped gateway's
    /// data directory (`--data`, for bootstrap).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Grant or revoke roles (offline, against a stopped gateway's data directory).
    Role {
        #[command(subcommand)]
        command: RoleCommand,
    },
    /// Disable or enable a person (offline, against a stopped gateway's data directory).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print its secret once.
    Create {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
        /// The person the token acts for; it never has more than their current roles allow.
        #[arg(long)]
        owner: String,
        /// A permission the token may use (repeat for more). Online, each names a permission of
        /// the catalogue exactly, within the owner's and the caller's current permissions.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Days until the token expires, 1 to 3650, as the gateway's API takes them; absent,
        /// it does not expire.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=crate::console::api::MAX_EXPIRY_DAYS))]
        expires_in_days: Option<u64>,
        /// Who is creating it (recorded in the event); offline only: online, the gateway
        /// records the owner of the token in RACK_GATEWAY_TOKEN.
        #[arg(long, default_value = admin::SYSTEM, conflicts_with = "gateway")]
        by: String,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Revoke a token by id.
    Revoke {
        #[command(flatten)]
        target: Target,
        id: String,
        #[arg(long, default_value = "revoked from the command line")]
        reason: String,
        /// Also revoke every token made with this one (`created_with` in `token list`), to any
        /// depth: what a leaked token minted goes with it. The named token may be revoked
        /// already.
        #[arg(long)]
        with_descendants: bool,
        /// Who is revoking it (recorded in the event); offline only.
        #[arg(long, default_value = admin::SYSTEM, conflicts_with = "gateway")]
        by: String,
    },
}

/// Where a token command works: exactly one of a data directory (offline) and a gateway's
/// console URL (online).
#[derive(Args, Debug)]
pub struct Target {
    #[command(flatten)]
    pub place: Place,
    /// For an https gateway: a PEM CA bundle to verify its certificate against (the gateway's
    /// own `tls.cert` when it is self-signed).
    // `conflicts_with = "data"` rather than `requires = "gateway"`: clap takes any member of a
    // group as meeting a `requires` on one of them (clap-rs/clap#4707).
    #[arg(long, conflicts_with_all = ["data", "pin_sha256"])]
    pub ca_file: Option<PathBuf>,
    /// For an https gateway: the SHA-256 (64 hex digits) of its certificate.
    #[arg(long, conflicts_with = "data")]
    pub pin_sha256: Option<String>,
}

/// The data directory or the gateway URL, never both.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Place {
    /// Offline: a stopped gateway's data directory.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Online: a running gateway's console URL (https://, or http:// to a loopback address);
    /// the caller's API token is read from RACK_GATEWAY_TOKEN.
    #[arg(long)]
    pub gateway: Option<String>,
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
        #[arg(long, default_value = admin::SYSTEM)]
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
        #[arg(long, default_value = admin::SYSTEM)]
        by: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Disable a person, offline against a stopped gateway's data directory: their roles and
    /// every token they own stop when it starts again (the roles stay assigned for an enable);
    /// the last enabled admin cannot be disabled.
    Disable {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        user: String,
        /// Why (recorded in the event, kept for good).
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = admin::SYSTEM)]
        by: String,
    },
    /// Enable a disabled person: their roles and tokens count again.
    Enable {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = admin::SYSTEM)]
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
            per_ip_per_minute: crate::server::dev::DEV_PER_IP_PER_MINUTE,
            rack_runtime: None,
        }))?,
        Command::Serve { config } => runtime()?.block_on(crate::server::serve::run(&config))?,
        Command::PolicyTables => print!("{}", policy_tables()),
        Command::Token { command } => runtime()?.block_on(token(command))?,
        Command::Role { command } => runtime()?.block_on(role(command))?,
        Command::User { command } => runtime()?.block_on(user(command))?,
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
    Role::parse(s).with_context(|| {
        format!(
            "{} is not a role (viewer, ops, deployer, admin)",
            admin::quoted(s)
        )
    })
}

/// Where a token command runs, resolved: the store, or a client of the running gateway.
enum Tokens {
    Offline(store::Store),
    Online(Box<Client>),
}

async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            target,
            name,
            owner,
            scopes,
            expires_in_days,
            by,
        } => {
            let (id, secret) = match target.resolve()? {
                Tokens::Offline(store) => {
                    // The API refuses scopes beyond the owner's roles; offline, an owner with
                    // none (a typo, say) would get a token that grants nothing today and starts
                    // granting whenever someone of that name is given a role.
                    let owner = Principal(owner);
                    admin::check_new_principal("owner", &owner)?;
                    if store.with_state(|s| s.identities.assigned(&owner).is_empty()) {
                        anyhow::bail!(
                            "owner {} holds no role; a token grants at most its owner's roles, \
                             so grant one first (rack-gateway role grant --data DIR --user \
                             EMAIL --role ROLE)",
                            admin::quoted(&owner.0)
                        );
                    }
                    if store.with_state(|s| s.identities.is_disabled(&owner)) {
                        // Made all the same (the bootstrap path may prepare one), but said: it
                        // grants nothing until the owner is enabled, and everything then.
                        eprintln!(
                            "warning: owner {} is disabled: this token grants nothing until they \
                             are enabled again (rack-gateway user enable --data DIR --user EMAIL)",
                            admin::quoted(&owner.0)
                        );
                    }
                    let expires = expires_in_days.map(|d| {
                        Clock
                            .now()
                            .plus(std::time::Duration::from_secs(d.saturating_mul(86_400)))
                    });
                    let created = admin::create_token(
                        &store,
                        TokenRequest {
                            name,
                            owner,
                            scopes: scopes.into_iter().map(Permission).collect(),
                            expires,
                            dev_only: false,
                            by: Principal(by),
                        },
                    )
                    .await?;
                    (created.id.to_hex(), created.secret.expose().to_owned())
                }
                Tokens::Online(client) => {
                    let created = client
                        .create(&CreateTokenBody {
                            name,
                            owner,
                            scopes,
                            expires_in_days,
                        })
                        .await?;
                    (created.id, created.token)
                }
            };
            println!("id: {id}");
            println!("token: {secret}");
            println!("The token is shown once; only its SHA-256 is recorded.");
        }
        TokenCommand::List { target } => {
            let tokens = match target.resolve()? {
                Tokens::Offline(store) => {
                    let now = Clock.now();
                    store.with_state(|s| {
                        s.tokens
                            .iter()
                            .map(|t| TokenView::of(t, &s.tokens, &s.identities, now))
                            .collect()
                    })
                }
                Tokens::Online(client) => client.list().await?.tokens,
            };
            for t in &tokens {
                println!("{}", list_line(t));
            }
        }
        TokenCommand::Revoke {
            target,
            id,
            reason,
            with_descendants,
            by,
        } => {
            // Not echoed: a secret passed here by mistake would land in a terminal or CI log.
            let token = TokenId::from_hex(&id).context(
                "the argument is not a token id (32 hex digits, as `token list` shows it); a \
                 token's secret is never what revoke takes",
            )?;
            let reach = if with_descendants {
                admin::Reach::WithDescendants
            } else {
                admin::Reach::Token
            };
            let (seq, revoked) = match target.resolve()? {
                Tokens::Offline(store) => {
                    let r =
                        admin::revoke_tokens(&store, token, reach, Principal(by), reason).await?;
                    if !r.complete {
                        anyhow::bail!(r.unfinished(token, "--with-descendants"));
                    }
                    (r.seq.0, r.tokens.iter().map(TokenId::to_hex).collect())
                }
                Tokens::Online(client) => {
                    let body = RevokeTokenBody {
                        reason,
                        with_descendants,
                    };
                    let r = client.revoke(token, &body).await?;
                    // A gateway from before `revoked` existed revoked the token named.
                    let ids = if r.revoked.is_empty() {
                        vec![r.id]
                    } else {
                        r.revoked
                    };
                    (r.seq, ids)
                }
            };
            for (i, id) in revoked.iter().enumerate() {
                if i == 0 {
                    println!("revoked {id} (seq {seq})");
                } else {
                    println!("revoked {id}");
                }
            }
        }
    }
    Ok(())
}

/// One line of `token list`, the same offline and online.
fn list_line(t: &TokenView) -> String {
    format!(
        "{}  {:<8} {:<24} owner={} scopes={} grants={} last_used={} created_by={} created_with={}",
        t.id,
        t.state.as_str(),
        t.name,
        t.owner,
        t.scopes.join(","),
        match t.grants.as_deref() {
            None => "unknown".to_owned(),
            Some([]) => "nothing".to_owned(),
            Some(g) => g.join(","),
        },
        t.last_used.as_deref().unwrap_or("never"),
        t.created_by.as_deref().unwrap_or("unknown"),
        t.created_with.as_deref().unwrap_or("none"),
    )
}

// === impl Target ===

impl Target {
    /// Opens the store, or builds the client with the token from [`TOKEN_ENV`] (whose value
    /// no message ever shows).
    fn resolve(self) -> anyhow::Result<Tokens> {
        match (self.place.data, self.place.gateway) {
            (Some(data), None) => Ok(Tokens::Offline(open(&data)?)),
            (None, Some(url)) => {
                let url = GatewayUrl::parse(&url)?;
                let raw = std::env::var(TOKEN_ENV).map_err(|_| {
                    anyhow::anyhow!("--gateway needs an admin's API token in {TOKEN_ENV}")
                })?;
                let token = TokenSecret::parse(raw.trim())
                    .with_context(|| format!("{TOKEN_ENV} does not hold a gateway API token"))?;
                let trust = Trust {
                    pin_sha256: self.pin_sha256.as_deref(),
                    ca_file: self.ca_file.as_deref(),
                    ca_sha256: None,
                    insecure_skip_verify: false,
                };
                Ok(Tokens::Online(Box::new(Client::new(url, &token, trust)?)))
            }
            // clap's group makes exactly one of the two present.
            _ => anyhow::bail!("give exactly one of --data DIR and --gateway URL"),
        }
    }
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

async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Disable {
            data,
            user,
            reason,
            by,
        } => {
            let store = open(&data)?;
            let seq =
                admin::disable_user(&store, Principal(user.clone()), Principal(by), reason).await?;
            println!("disabled {user} (seq {seq})");
        }
        UserCommand::Enable { data, user, by } => {
            let store = open(&data)?;
            let seq = admin::enable_user(&store, Principal(user.clone()), Principal(by)).await?;
            println!("enabled {user} (seq {seq})");
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Cli;

    /// Offline as online, a token lives 1 to 3650 days: `0` would mint one already expired.
    #[test]
    fn a_token_expiry_is_one_to_3650_days() {
        let create = |days: &str| {
            Cli::try_parse_from([
                "rack-gateway",
                "token",
                "create",
                "--data",
                "/nonexistent",
                "--name",
                "ci",
                "--owner",
                "ci@example.com",
                "--scope",
                "convox:app:read",
                "--expires-in-days",
                days,
            ])
        };
        assert!(create("1").is_ok());
        assert!(create("3650").is_ok());
        for bad in ["0", "3651", "x"] {
            let e = create(bad).unwrap_err().to_string();
            assert!(e.contains("--expires-in-days"), "{bad}: {e}");
        }
    }
}
