//! The console and gateway API listener, on its own origin apart from the rack proxy.
//!
//! So far it answers only its health check; the console pages and the gateway API arrive with
//! the issues that need them. **Invariant:** nothing here proxies to the rack.

use axum::Router;
use axum::routing::get;

/// The console's router.
pub fn app() -> Router {
    Router::new().route("/healthz", get(healthz_get))
}

async fn healthz_get() -> &'static str {
    "ok\n"
}
