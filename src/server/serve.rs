//! `rack-gateway serve --config FILE`: the gateway in production.
//!
//! **Invariant:** it refuses to start without the keys, on an unsafe transport (the config's
//! checks), or with a listener it cannot serve as configured; the effective configuration is
//! recorded as `ConfigApplied` whenever it differs from the last one the log holds, before any
//! request is served.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use events::event::Event;
use events::store::{CheckpointPolicy, EventStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::console::{self, ConsoleState};
use crate::proxy::upstream::Upstream;
use crate::proxy::{self, ProxyState};
use crate::store;

/// Runs the gateway until SIGTERM or Ctrl-C.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    // First: a SIGTERM while the store opens or the configuration is recorded must wait for a
    // graceful stop, not kill the process midway through an append.
    let stop_requested = super::stop_signal().context("installing the signal handlers")?;
    let overrides = config::overrides(std::env::vars_os(), &[crate::cli::TOKEN_ENV])?;
    let config = config::load(Some(config_path), &|k| overrides.get(k).cloned())?;
    let tls = config
        .tls
        .as_ref()
        .map(super::tls::server_config)
        .transpose()?;
    let opening = || {
        format!(
            "opening the gateway's data directory {}",
            config.data.display()
        )
    };
    // Refused before the log is opened, which may write to it (a new log's first records, an
    // index rewritten after a crash).
    let keys = store::keys(&config.data).with_context(opening)?;
    if keys.checkpoint.name() == super::dev::DEV_ORIGIN {
        anyhow::bail!(
            "{}: this data directory holds a dev log ({:?}), whose dev user `dev` made an admin; \
             `serve` runs on a log of its own: give data another directory and run \
             `rack-gateway keys init` there",
            config.data.display(),
            super::dev::DEV_ORIGIN
        );
    }
    let (store, keys) = store::open_keyed(
        &config.data,
        keys,
        CheckpointPolicy {
            every: config.checkpoints.every,
            after: config.checkpoints.after,
            heartbeat: config.checkpoints.heartbeat,
        },
    )
    .with_context(opening)?;
    let store = Arc::new(store);
    // The rack's TLS settings are checked first: the log records only a configuration that
    // serves.
    let upstream = Upstream::new(&config.rack)?;
    // So are the listeners: a port taken or an address this host lacks stops the start before
    // anything is recorded.
    let proxy_listener = TcpListener::bind(config.proxy_listen)
        .await
        .with_context(|| format!("binding proxy.listen {}", config.proxy_listen))?;
    let console_listener = TcpListener::bind(config.console_listen)
        .await
        .with_context(|| format!("binding console.listen {}", config.console_listen))?;
    record_config(&store, &config, &keys).await?;
    let mut proxy_state = ProxyState::new(
        store.clone(),
        Arc::new(keys),
        upstream,
        false,
        config.trusted_proxies.clone(),
        config.limits,
    );
    proxy_state.protected_env = config.protected_env.clone();
    proxy_state.serves_tls = tls.is_some();
    let state = Arc::new(proxy_state);
    let scheme = if tls.is_some() { "https" } else { "http" };
    super::say(format_args!(
        "rack proxy: {scheme}://{}",
        proxy_listener.local_addr()?
    ));
    super::say(format_args!(
        "console: {scheme}://{}",
        console_listener.local_addr()?
    ));
    // Before the listeners: it sees every revocation that could concern a stream they open.
    let watcher = proxy::streams::spawn_watcher(store.clone(), state.streams.clone());
    let (stop, stopped) = watch::channel(false);
    let flusher = proxy::state::spawn_denial_flusher(state.clone(), stopped.clone());
    let servers = [
        super::spawn_proxy(
            proxy_listener,
            state.clone(),
            config.limits.header_timeout,
            tls.clone(),
            stopped.clone(),
        ),
        super::spawn_with_tls(
            console_listener,
            console::app(Arc::new(ConsoleState::beside(&state))),
            state.listener_limits(config.limits.header_timeout),
            tls,
            config.trusted_proxies.clone().into(),
            stopped,
        ),
    ];
    stop_requested.await;
    let _ = stop.send(true);
    for s in servers {
        let _ = s.await;
    }
    let _ = flusher.await;
    watcher.abort();
    state.close_streams().await;
    state.flush_denials(true).await;
    store::snapshot_at_stop(&store, &state.keys, &config.data).await;
    store.shutdown();
    Ok(())
}

/// Appends `ConfigApplied` when the effective configuration differs from the last recorded.
async fn record_config(
    store: &store::Store,
    config: &Config,
    keys: &crate::keys::Keys,
) -> anyhow::Result<()> {
    let digest = config.digest(&keys.audit);
    if store.with_state(|s| s.log.config_digest) == Some(digest) {
        return Ok(());
    }
    store
        .append(vec![Event::ConfigApplied {
            digest,
            values: config.audit_values(&keys.audit),
        }])
        .await
        .context("recording the configuration")?;
    Ok(())
}
