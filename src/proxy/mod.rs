//! The rack proxy: every Convox API call is authenticated, canonicalized, authorized, recorded
//! durably, and only then forwarded to the rack (see the architecture's "Audit-first,
//! fail-closed").
//!
//! **Invariant:** no byte reaches the rack unless a `CommandRequested` with decision `allow`
//! for exactly that canonical request is durable in the log.

pub mod answers;
pub mod build_logs;
pub mod build_process;
pub mod build_request;
pub mod flood;
pub mod handler;
pub mod headers;
pub mod intent;
pub mod mask;
pub mod metered;
pub mod rack_pool;
pub mod rack_tls;
pub mod redact;
pub mod respond;
pub mod revocable;
pub mod scrubbed_body;
pub mod secret_text;
pub mod state;
pub mod streams;
pub mod upstream;
pub mod ws;

pub use state::{ProxyState, service};
