//! The console and gateway API listener, on its own origin apart from the rack proxy.
//!
//! It answers its health check and the token API (`/api/v1/tokens`, see [`tokens`]); any other
//! method and path is refused as [`unknown_route`] says. The API authenticates with
//! `Authorization: Bearer rgw_...` only and sets and reads no cookie: there
//! is no ambient credential a browser would attach by itself, so a cross-site request cannot act
//! with a user's authority and the API needs no CSRF token. **Invariant:** nothing here proxies
//! to the rack; every API call is limited, authenticated and authorized as [`auth`] says, and a
//! change reaches the log only through `identity::admin`.

pub mod api;
pub mod auth;
pub mod client;
pub mod respond;
pub mod tokens;
pub mod unknown_route;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use http::HeaderMap;

use crate::proxy::flood::Flood;
use crate::proxy::headers;
use crate::proxy::state::{ProxyState, RequestIds};
use crate::store::Store;

/// What the API's handlers share; the store, the flood limits, the trusted proxies and the
/// dev-token rule are the rack proxy's, so a caller meets one gateway whichever listener it calls.
pub struct ConsoleState {
    pub store: Arc<Store>,
    flood: Arc<Flood>,
    trusted_proxies: Vec<IpAddr>,
    /// `dev` accepts its own dev-only tokens; `serve` refuses them here as on the proxy.
    accepts_dev_tokens: bool,
    ids: RequestIds,
}

// === impl ConsoleState ===

impl ConsoleState {
    /// The console of the gateway whose rack proxy is `proxy`.
    pub fn beside(proxy: &ProxyState) -> ConsoleState {
        ConsoleState {
            store: proxy.store.clone(),
            flood: proxy.flood(),
            trusted_proxies: proxy.trusted_proxies().to_vec(),
            accepts_dev_tokens: proxy.accepts_dev_tokens,
            ids: RequestIds::new(),
        }
    }

    fn client_ip(&self, peer: SocketAddr, request_headers: &HeaderMap) -> IpAddr {
        headers::client_ip(peer, request_headers, &self.trusted_proxies)
    }
}

/// The console's router.
pub fn app(state: Arc<ConsoleState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz_get))
        .merge(tokens::routes())
        .fallback(unknown_route::unknown_route)
        .method_not_allowed_fallback(unknown_route::unknown_route)
        .with_state(state)
        .layer(axum::middleware::map_response(console_headers))
}

/// The headers of every console answer, whichever handler or rejection made it: never cached
/// (a created secret is in one), never sniffed into another type, and never framed or run
/// as a page by a browser (the console answers JSON and text only).
async fn console_headers(mut r: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; sandbox"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

async fn healthz_get() -> &'static str {
    "ok\n"
}
