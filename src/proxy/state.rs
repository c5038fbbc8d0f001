//! What every proxied call shares: the store, the keys, the rack connection, the flood
//! counters, and the router that sends every path to the handler.
//!
//! **Invariant:** the proxy router has one fallback and no cookie or session layer: it answers
//! only the rack API, and every path, known or not, goes through the same pipeline.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use events::store::EventStore;
use events::time::{Clock, Timestamp};
use http::HeaderMap;

use super::flood::{DenialCounter, RateLimiter};
use super::handler;
use super::streams::Streams;
use super::upstream::Upstream;
use crate::config::Limits;
use crate::keys::Keys;
use crate::store::Store;

/// Shared state of the rack proxy.
pub struct ProxyState {
    pub store: Arc<Store>,
    pub keys: Arc<Keys>,
    pub upstream: Upstream,
    /// `dev` accepts its own dev-only tokens; `serve` refuses them.
    pub accepts_dev_tokens: bool,
    trusted_proxies: Vec<IpAddr>,
    pub limits: Limits,
    pub streams: Arc<Streams>,
    /// Protected env vars by app (`*` for every app).
    pub protected_env: std::collections::BTreeMap<String, Vec<String>>,
    limiter: Mutex<RateLimiter>,
    denials: Mutex<DenialCounter>,
    id_prefix: String,
    counter: AtomicU64,
}

// === impl ProxyState ===

impl ProxyState {
    pub fn new(
        store: Arc<Store>,
        keys: Arc<Keys>,
        upstream: Upstream,
        accepts_dev_tokens: bool,
        trusted_proxies: Vec<IpAddr>,
        limits: Limits,
    ) -> ProxyState {
        let mut prefix = [0u8; 4];
        let _ = getrandom::fill(&mut prefix);
        ProxyState {
            store,
            keys,
            upstream,
            accepts_dev_tokens,
            trusted_proxies,
            limits,
            streams: Arc::new(Streams::default()),
            protected_env: std::collections::BTreeMap::new(),
            limiter: Mutex::new(RateLimiter::new(limits.per_ip_per_minute)),
            denials: Mutex::new(DenialCounter::default()),
            id_prefix: hex::encode(prefix),
            counter: AtomicU64::new(0),
        }
    }

    /// A request id unique to this process run: a random prefix and a counter.
    pub fn next_request_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:08x}", self.id_prefix)
    }

    /// The protected env vars of `app`: its own and those protected for every app.
    pub fn protected_env(&self, app: &str) -> Vec<String> {
        let mut keys: Vec<String> = ["*", app]
            .iter()
            .filter_map(|a| self.protected_env.get(*a))
            .flatten()
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.contains(&ip)
    }

    /// The caller's address: the peer, or, behind a trusted proxy, the last address that proxy
    /// appended to `X-Forwarded-For`.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        if !self.is_trusted(peer.ip()) {
            return peer.ip();
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .next_back()
            .unwrap_or(peer.ip())
    }

    pub fn allow(&self, ip: IpAddr, now: Timestamp) -> bool {
        self.limiter.lock().is_ok_and(|mut l| l.allow(ip, now))
    }

    pub fn count_denial(&self, ip: IpAddr, reason: &'static str, now: Timestamp) {
        if let Ok(mut d) = self.denials.lock() {
            d.note(ip, reason, now);
        }
    }

    /// Appends the coalesced denials whose minute is over (all of them when `flush`).
    pub async fn flush_denials(&self, flush: bool) {
        let due = match self.denials.lock() {
            Ok(mut d) => d.drain(Clock.now(), flush),
            Err(_) => Vec::new(),
        };
        if !due.is_empty() {
            // A failed append leaves these uncounted in the log; the store reports why.
            let _ = self.store.append(due).await;
        }
    }
}

/// The rack proxy's router: every request goes to the one pipeline.
pub fn app(state: Arc<ProxyState>) -> Router {
    Router::new().fallback(handler::handle).with_state(state)
}

/// Appends coalesced denials every few seconds until the process ends.
pub fn spawn_denial_flusher(state: Arc<ProxyState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            state.flush_denials(false).await;
        }
    })
}
