//! `rack-gateway dev`: the gateway on embedded defaults for a newcomer's machine: plain HTTP on
//! 127.0.0.1, the embedded store and keys in a local data directory, and `mock-rack` linked in
//! as the rack.
//!
//! **Invariant:** every start revokes the previous dev tokens and creates one fresh admin token
//! marked dev-only (all as events), scoped to the rack and to managing tokens; tokens it creates
//! through the API are dev-only too, and `serve` refuses dev-only tokens on both listeners, so
//! a dev token can never reach a real rack or a real gateway's API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use events::event::{Permission, Principal, Role};
use events::store::CheckpointPolicy;
use events::time::Clock;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Limits, Rack, Secret};
use crate::console::{self, ConsoleState};
use crate::identity::admin::{self, TokenRequest};
use crate::keys::Keys;
use crate::policy::Perm;
use crate::proxy::upstream::Upstream;
use crate::proxy::{self, ProxyState};
use crate::store;

/// The person the dev token acts for.
pub const DEV_USER: &str = "dev@rack-gateway.local";
/// The log name of a dev data directory.
pub const DEV_ORIGIN: &str = "rack-gateway.dev/log";

/// Where `dev` listens and keeps its data.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub data: PathBuf,
    pub proxy: SocketAddr,
    pub console: SocketAddr,
    /// Requests per minute from one address before anything is appended
    /// ([`DEV_PER_IP_PER_MINUTE`] for the command).
    pub per_ip_per_minute: u32,
    /// The runtime the linked mock rack runs on; `None`: the gateway's own. A benchmark gives
    /// the rack its own runtime, as a real rack is another process.
    pub rack_runtime: Option<tokio::runtime::Handle>,
}

/// `dev`'s per-address rate limit: generous for one person's CLI, still a limit.
pub const DEV_PER_IP_PER_MINUTE: u32 = 6000;

/// A running dev gateway (for tests and the command).
pub struct Running {
    pub proxy: SocketAddr,
    pub console: SocketAddr,
    pub token: String,
    pub rack: mock_rack::MockRack,
    pub store: Arc<store::Store>,
    /// Where the store and its snapshot live.
    data: PathBuf,
    state: Arc<ProxyState>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts the dev gateway and returns once it is listening.
pub async fn start(opts: &DevOptions) -> anyhow::Result<Running> {
    for (name, addr) in [("--proxy", opts.proxy), ("--console", opts.console)] {
        // Plain HTTP, and a printed admin token: for this machine only.
        if !addr.ip().to_canonical().is_loopback() {
            anyhow::bail!(
                "{name} {addr}: `dev` serves plain HTTP and prints an admin token, so it listens \
                 only on a loopback address (127.0.0.1 or ::1); use `serve` with TLS for \
                 anything else"
            );
        }
    }
    ensure_keys(&opts.data)?;
    let (store, keys) = store::open(&opts.data, CheckpointPolicy::default())
        .with_context(|| format!("opening the store in {}", opts.data.display()))?;
    start_with(opts, store, keys).await
}

/// As [`start`], on a store the caller opened with `keys` from `opts.data` (the end-to-end tests
/// open it on a storage backend they can make fail).
pub async fn start_with(
    opts: &DevOptions,
    store: store::Store,
    keys: Keys,
) -> anyhow::Result<Running> {
    // Bound first, as `serve` does: a port taken stops the start before anything is recorded
    // (a dev token revoked and another minted that nobody sees).
    let proxy_listener = TcpListener::bind(opts.proxy)
        .await
        .with_context(|| format!("binding the rack proxy on {}", opts.proxy))?;
    let console_listener = TcpListener::bind(opts.console)
        .await
        .with_context(|| format!("binding the console on {}", opts.console))?;
    let mut pw = [0u8; 24];
    getrandom::fill(&mut pw).map_err(|e| anyhow::anyhow!("cannot generate a password: {e}"))?;
    let password = hex::encode(pw);
    let rack_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let rack = match &opts.rack_runtime {
        Some(rt) => {
            let password = password.clone();
            rt.spawn(async move { mock_rack::MockRack::start(rack_addr, &password).await })
                .await
                .context("the mock rack's runtime stopped")?
        }
        None => mock_rack::MockRack::start(rack_addr, &password).await,
    }
    .context("starting the mock rack")?;
    let store = Arc::new(store);
    let token = fresh_dev_token(&store).await?;
    let upstream = Upstream::new(&Rack {
        url: rack.url(),
        password: Secret::new(password),
        ca_file: None,
        ca_sha256: None,
        pin_sha256: None,
        insecure_skip_verify: false,
    })?;
    let state = Arc::new(ProxyState::new(
        store.clone(),
        Arc::new(keys),
        upstream,
        true,
        Vec::new(),
        Limits {
            per_ip_per_minute: opts.per_ip_per_minute,
            streams_per_principal: crate::config::DEFAULT_STREAMS_PER_PRINCIPAL,
            header_timeout: std::time::Duration::from_secs(10),
            stream_idle: std::time::Duration::from_secs(5),
            form_timeout: crate::config::DEFAULT_FORM_TIMEOUT,
        },
    ));
    let proxy = proxy_listener.local_addr()?;
    let console = console_listener.local_addr()?;
    // Before the listeners: it sees every revocation that could concern a stream they open.
    let watcher = proxy::streams::spawn_watcher(store.clone(), state.streams.clone());
    let (stop, stopped) = watch::channel(false);
    let header_timeout = std::time::Duration::from_secs(10);
    let tasks = vec![
        super::spawn_proxy(
            proxy_listener,
            state.clone(),
            header_timeout,
            None,
            stopped.clone(),
        ),
        super::spawn(
            console_listener,
            console::app(Arc::new(ConsoleState::beside(&state))),
            state.listener_limits(header_timeout),
            stopped.clone(),
        ),
        proxy::state::spawn_denial_flusher(state.clone(), stopped),
        watcher,
    ];
    Ok(Running {
        proxy,
        console,
        token,
        rack,
        store,
        data: opts.data.clone(),
        state,
        stop,
        tasks,
    })
}

/// Runs `rack-gateway dev` until Ctrl-C.
pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    let stop_requested = super::stop_signal().context("installing the signal handlers")?;
    let running = start(&opts).await?;
    // Nothing reads the linked rack's request log here (the tests do, in process): kept on, it
    // would hold every request and upload for the life of the command.
    running.rack.set_recording(false);
    super::say(format_args!("console: http://{}", running.console));
    super::say(format_args!(
        "RACK_URL=http://convox:{}@{}",
        running.token, running.proxy
    ));
    super::say(format_args!("rack: {} (mock-rack)", running.rack.url()));
    super::say(format_args!("data: {}", opts.data.display()));
    stop_requested.await;
    running.stop().await;
    Ok(())
}

// === impl Running ===

impl Running {
    /// Stops accepting, drains requests, records pending counts, and closes the store.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut tasks = self.tasks.into_iter();
        // The listeners, then the denial flusher, which ends at the stop signal.
        for t in tasks.by_ref().take(3) {
            let _ = t.await;
        }
        for t in tasks {
            t.abort();
        }
        self.state.close_streams().await;
        self.state.flush_denials(true).await;
        store::snapshot_at_stop(&self.store, &self.state.keys, &self.data).await;
        self.store.shutdown();
        self.rack.shutdown().await;
    }
}

/// Creates the dev keys on first use; refuses a data directory that holds another log. `dev`
/// grants its user admin and prints a token, which must never happen to a deployment's log
/// (the admin would count for the last-admin rule there).
fn ensure_keys(data: &Path) -> anyhow::Result<()> {
    if !data.join("keys").exists() {
        // A log whose keys are missing (restored without them, or kept on a mount that is not
        // there) is a deployment's until shown otherwise: dev keys beside it would make it
        // unreadable to `serve` as well.
        if store::log_path(data).exists() {
            anyhow::bail!(
                "{}: this data directory holds a log but no keys; `dev` makes keys only for a \
                 new log: restore the keys beside it, or pass another --data",
                data.display()
            );
        }
        match Keys::init(data, DEV_ORIGIN) {
            Ok(_) => return Ok(()),
            // Another `dev` on this directory made them meanwhile: checked below as any.
            Err(crate::keys::KeyError::Exists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let keys = Keys::load(data)?;
    let origin = keys.checkpoint.name();
    if origin != DEV_ORIGIN {
        anyhow::bail!(
            "{}: this data directory holds the log {origin:?}, not a dev log ({DEV_ORIGIN:?}); \
             `dev` grants its user admin and prints a token, so it runs only on a directory of \
             its own: pass another --data, or use `serve` for this one",
            data.display()
        );
    }
    Ok(())
}

/// Grants the dev user admin (once), revokes every earlier dev token, and creates a new one.
async fn fresh_dev_token(store: &store::Store) -> anyhow::Result<String> {
    let user = Principal(DEV_USER.to_owned());
    let system = Principal(admin::SYSTEM.to_owned());
    let (holds, disabled) = {
        use events::store::EventStore;
        store.with_state(|s| {
            (
                s.identities.assigned(&user).contains(&Role::Admin),
                s.identities.is_disabled(&user),
            )
        })
    };
    if disabled {
        anyhow::bail!(
            "the dev user {DEV_USER} is disabled in this data directory, so a token for it \
             would grant nothing: run `rack-gateway user enable --data DIR --user {DEV_USER}`, \
             or pass another --data"
        );
    }
    if !holds {
        admin::grant_role(store, user.clone(), Role::Admin, system.clone()).await?;
    }
    let now = Clock.now();
    let stale: Vec<_> = {
        use events::store::EventStore;
        store.with_state(|s| {
            s.tokens
                .iter()
                .filter(|t| t.dev_only && t.revoked.is_none())
                .map(|t| t.id)
                .collect()
        })
    };
    for id in stale {
        admin::revoke_token(
            store,
            id,
            system.clone(),
            "replaced by a new dev start".into(),
        )
        .await?;
    }
    let created = admin::create_token(
        store,
        TokenRequest {
            name: format!("dev {now}"),
            owner: user,
            scopes: vec![
                Permission("convox:*:*".into()),
                Perm::GatewayTokenManage.to_permission(),
            ],
            expires: None,
            dev_only: true,
            by: system,
        },
    )
    .await?;
    Ok(created.secret.expose().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dev` on `data`, both listeners on fresh loopback ports.
    fn on_loopback(data: &Path) -> DevOptions {
        DevOptions {
            data: data.to_owned(),
            proxy: "127.0.0.1:0".parse().unwrap(),
            console: "127.0.0.1:0".parse().unwrap(),
            per_ip_per_minute: DEV_PER_IP_PER_MINUTE,
            rack_runtime: None,
        }
    }

    #[tokio::test]
    async fn dev_listens_on_loopback_only() {
        let dir = tempfile::tempdir().unwrap();
        for (proxy, console, named) in [
            ("0.0.0.0:0", "127.0.0.1:0", "--proxy"),
            ("127.0.0.1:0", "[::]:0", "--console"),
        ] {
            let opts = DevOptions {
                data: dir.path().to_owned(),
                proxy: proxy.parse().unwrap(),
                console: console.parse().unwrap(),
                per_ip_per_minute: DEV_PER_IP_PER_MINUTE,
                rack_runtime: None,
            };
            let Err(e) = start(&opts).await else {
                panic!("dev started on {proxy} and {console}");
            };
            let e = e.to_string();
            assert!(e.contains(named) && e.contains("loopback"), "{e}");
        }
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing was made before the refusal"
        );
    }

    /// A deployment's data directory (another origin) is refused before anything is appended.
    #[tokio::test]
    async fn dev_refuses_a_data_directory_of_another_log() {
        let dir = tempfile::tempdir().unwrap();
        Keys::init(dir.path(), "gateway.example.com/log").unwrap();
        let opts = on_loopback(dir.path());
        let Err(e) = start(&opts).await else {
            panic!("dev started on another log's directory");
        };
        let e = e.to_string();
        assert!(
            e.contains("gateway.example.com/log") && e.contains("serve"),
            "{e}"
        );
        assert!(
            !store::log_path(dir.path()).exists(),
            "no log was opened or written"
        );
    }

    /// A port already taken stops the start before any dev token is revoked or minted.
    #[tokio::test]
    async fn a_taken_port_stops_dev_before_anything_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let opts = DevOptions {
            console: taken.local_addr().unwrap(),
            ..on_loopback(dir.path())
        };
        let Err(e) = start(&opts).await else {
            panic!("dev started on a taken port");
        };
        assert!(format!("{e:#}").contains("binding the console"), "{e:#}");
        let (store, _) = store::open(dir.path(), CheckpointPolicy::default()).unwrap();
        use events::store::EventStore;
        let (tokens, admins) = store.with_state(|s| {
            (
                s.tokens.iter().count(),
                s.identities.roles(&Principal(DEV_USER.into())).len(),
            )
        });
        assert_eq!((tokens, admins), (0, 0), "nothing was recorded");
    }

    /// A log whose keys are missing gets no dev keys beside it.
    #[tokio::test]
    async fn dev_refuses_a_log_without_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        Keys::init(dir.path(), "gateway.example.com/log").unwrap();
        drop(store::open(dir.path(), CheckpointPolicy::default()).unwrap());
        std::fs::remove_dir_all(dir.path().join("keys")).unwrap();
        let opts = on_loopback(dir.path());
        let Err(e) = start(&opts).await else {
            panic!("dev started on a log without its keys");
        };
        assert!(e.to_string().contains("no keys"), "{e}");
        assert!(
            !dir.path().join("keys").exists(),
            "no dev keys were made beside the log"
        );
    }

    /// A dev user disabled in the directory (behind another admin) is named as such at start,
    /// not refused as a role it already holds.
    #[tokio::test]
    async fn a_disabled_dev_user_is_named_at_start() {
        let dir = tempfile::tempdir().unwrap();
        start(&on_loopback(dir.path())).await.unwrap().stop().await;
        let (store, _) = store::open(dir.path(), CheckpointPolicy::default()).unwrap();
        let system = Principal(admin::SYSTEM.into());
        admin::grant_role(
            &store,
            Principal("root@example.com".into()),
            Role::Admin,
            system.clone(),
        )
        .await
        .unwrap();
        admin::disable_user(&store, Principal(DEV_USER.into()), system, "left".into())
            .await
            .unwrap();
        drop(store);
        let Err(e) = start(&on_loopback(dir.path())).await else {
            panic!("dev started with its user disabled");
        };
        assert!(
            e.to_string().contains("disabled") && e.to_string().contains("user enable"),
            "{e}"
        );
    }
}
