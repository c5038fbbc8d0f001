//! What every proxied call shares: the store, the keys, the rack connection, the flood
//! counters (shared with the gateway API), and the router that sends every path to the handler.
//!
//! **Invariant:** the proxy router has one fallback and no cookie or session layer: it answers
//! only the rack API, and every path, known or not, goes through the same pipeline.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use events::store::EventStore;
use events::time::{Clock, Timestamp};
use http::HeaderMap;

use super::flood::Flood;
use super::streams::Streams;
use super::upstream::Upstream;
use super::{handler, headers};
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
    /// Whether the proxy listener terminates TLS itself: then a browser's `Origin` must be
    /// `https`, so a page served in clear on the gateway's host (a network that rewrites plain
    /// HTTP) cannot call it with a cached login.
    pub serves_tls: bool,
    trusted_proxies: Vec<IpAddr>,
    pub limits: Limits,
    pub streams: Arc<Streams>,
    /// Protected env vars by app (`*` for every app).
    pub protected_env: std::collections::BTreeMap<String, Vec<String>>,
    /// The bytes of rack answers held to be rewritten, over all callers.
    pub answers: crate::proxy::answers::Budget,
    flood: Arc<Flood>,
    ids: RequestIds,
}

/// Request ids unique to this process run: a random prefix and a counter.
#[derive(Debug)]
pub struct RequestIds {
    prefix: String,
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
        ProxyState {
            store,
            keys,
            upstream,
            accepts_dev_tokens,
            serves_tls: false,
            trusted_proxies,
            limits,
            streams: Arc::new(Streams::default()),
            protected_env: std::collections::BTreeMap::new(),
            answers: crate::proxy::answers::Budget::default(),
            flood: Arc::new(Flood::new(limits.per_ip_per_minute)),
            ids: RequestIds::new(),
        }
    }

    /// A request id unique to this process run: a random prefix and a counter.
    pub fn next_request_id(&self) -> String {
        self.ids.next()
    }

    /// The flood limits and counts, for the other listener to share.
    pub fn flood(&self) -> Arc<Flood> {
        self.flood.clone()
    }

    /// The limits of each of this gateway's listeners, sharing its [`Flood`]: a new connection
    /// is charged to its network's budget ([`Flood::admit_connection`]), and a connection or
    /// request head refused before any handler saw it (over its network's budget or share, in
    /// clear from a public address, a head that stopped partway, or that hyper found too large
    /// or malformed) is counted per network, as unauthenticated noise is counted.
    pub fn listener_limits(&self, header_timeout: Duration) -> crate::server::Limits {
        let (counts, admits) = (self.flood.clone(), self.flood.clone());
        crate::server::Limits {
            header_timeout,
            on_refused: Some(Arc::new(move |ip, refused: crate::server::Refusal| {
                counts.count_denial(ip, refused.reason(), Clock.now())
            })),
            admit: Some(Arc::new(move |ip| admits.admit_connection(ip, Clock.now()))),
        }
    }

    /// The proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> &[IpAddr] {
        &self.trusted_proxies
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
        headers::is_trusted(ip, &self.trusted_proxies)
    }

    /// The scheme a caller's `Origin` must carry to be the gateway's own (see
    /// [`headers::public_scheme`]).
    pub fn public_scheme(&self, peer: IpAddr, headers: &http::HeaderMap) -> Option<&'static str> {
        headers::public_scheme(self.serves_tls, self.is_trusted(peer), headers)
    }

    /// The caller's address (see [`headers::client_ip`]).
    pub fn client_ip(&self, peer: SocketAddr, request_headers: &HeaderMap) -> IpAddr {
        headers::client_ip(peer, request_headers, &self.trusted_proxies)
    }

    pub fn allow(&self, ip: IpAddr, now: Timestamp) -> bool {
        self.flood.allow(ip, now)
    }

    pub fn count_denial(&self, ip: IpAddr, reason: &'static str, now: Timestamp) {
        self.flood.count_denial(ip, reason, now);
    }

    /// Shutdown: closes every open WebSocket and waits (bounded) until each has recorded its
    /// `StreamClosed`, so a stop leaves no stream without its end in the log.
    pub async fn close_streams(&self) {
        self.streams.close_all();
        // Longer than a relay's own bounded close, which starts a moment after `close_all`, so
        // a stream whose peer stopped reading still records its end before the store closes.
        let wait = crate::proxy::ws::CLOSE_TIMEOUT + std::time::Duration::from_secs(2);
        if !self.streams.closed(wait).await {
            crate::server::say(format_args!(
                "warning: {} streams did not close within {} s of shutdown",
                self.streams.len(),
                wait.as_secs()
            ));
        }
    }

    /// Appends the coalesced denials whose minute is over (all of them when `flush`).
    pub async fn flush_denials(&self, flush: bool) {
        let due = self.flood.drain(Clock.now(), flush);
        if due.is_empty() {
            return;
        }
        if self.store.append(due.events()).await.is_err() {
            if flush {
                // The last flush, at shutdown: nothing will try again, so say what is lost.
                crate::server::say(format_args!(
                    "warning: the log could not take the last {} denial summaries ({} \
                     unauthenticated refusals) at shutdown",
                    due.summaries(),
                    due.refusals()
                ));
            }
            // Put back, to be recorded with the next counts; the store reports why it failed.
            self.flood.restore(due);
        }
    }
}

// === impl RequestIds ===

impl RequestIds {
    /// A process's ids start with 64 random bits: completions find their intent by request id
    /// alone, so two runs of the gateway must not share a prefix. Should the system's
    /// randomness fail, the clock's nanoseconds stand in, which still differ from run to run.
    pub fn new() -> RequestIds {
        let mut prefix = [0u8; 8];
        if getrandom::fill(&mut prefix).is_err() {
            let nanos = Clock.now().as_nanos().unsigned_abs();
            prefix = (nanos ^ u64::from(std::process::id())).to_be_bytes();
        }
        RequestIds {
            prefix: hex::encode(prefix),
            counter: AtomicU64::new(0),
        }
    }

    /// The next id: `<16 hex>-<8 hex>`.
    pub fn next(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:08x}", self.prefix)
    }
}

impl Default for RequestIds {
    fn default() -> RequestIds {
        RequestIds::new()
    }
}

/// The rack proxy for one connection from `peer`, as a hyper service: every request goes to the
/// one pipeline. No router sits in between: with one path for everything, a router's
/// per-request work (matching, extensions, a boxed handler future) buys nothing.
pub fn service(
    state: Arc<ProxyState>,
    peer: SocketAddr,
    upgrading: crate::server::Upgrading,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Send
+ 'static {
    hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let state = state.clone();
        // Only a request hyper may upgrade can become a relayed stream: the others need no
        // mark (and no extension map made for it on every call).
        if req
            .extensions()
            .get::<hyper::upgrade::OnUpgrade>()
            .is_some()
        {
            req.extensions_mut().insert(upgrading.clone());
        }
        async move { Ok(handler::handle(state, peer, req.map(axum::body::Body::new)).await) }
    })
}

/// Appends coalesced denials every few seconds until `stopped` holds `true` (or its sender is
/// gone), then returns: a stop awaits it rather than aborting it, so a flush under way (its
/// counts taken, its append not yet answered) ends, restoring its counts if the log refused
/// them, before the last flush takes what is left.
pub fn spawn_denial_flusher(
    state: Arc<ProxyState>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => state.flush_denials(false).await,
                () = async {
                    let _ = stopped.wait_for(|stop| *stop).await;
                } => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use events::store::CheckpointPolicy;

    use super::*;
    use crate::config::{Rack, Secret};

    /// The flusher ends at the stop signal by itself, its last flush done, rather than being
    /// cut off wherever it stood; the counts it took are in the log.
    #[tokio::test]
    async fn the_denial_flusher_ends_at_the_stop_signal() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::init(dir.path(), "state.test/log").unwrap();
        let (store, _) = crate::store::open(dir.path(), CheckpointPolicy::default()).unwrap();
        let store = Arc::new(store);
        let upstream = Upstream::new(&Rack {
            url: "http://127.0.0.1:9".into(),
            password: Secret::new("unused".into()),
            ca_file: None,
            ca_sha256: None,
            pin_sha256: None,
            insecure_skip_verify: false,
        })
        .unwrap();
        let state = Arc::new(ProxyState::new(
            store.clone(),
            Arc::new(keys),
            upstream,
            false,
            Vec::new(),
            Limits {
                per_ip_per_minute: 600,
                streams_per_principal: 4,
                header_timeout: Duration::from_secs(5),
                stream_idle: Duration::from_secs(5),
                form_timeout: Duration::from_secs(30),
            },
        ));
        let before = store.head().size;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let flusher = spawn_denial_flusher(state.clone(), stopped);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), flusher)
            .await
            .expect("the flusher outlived the stop signal")
            .expect("the flusher ended by itself, not cancelled");
        // Counted after it stopped: the stop's own last flush records it.
        state.count_denial(
            "192.0.2.1".parse().unwrap(),
            "missing_credentials",
            Clock.now(),
        );
        state.flush_denials(true).await;
        assert_eq!(store.head().size, before + 1);
        store.shutdown();
    }
}
