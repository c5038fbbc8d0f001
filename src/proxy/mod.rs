//! The rack proxy: every Convox API call is authenticated, canonicalized, authorized, recorded
//! durably, and only then forwarded to the rack (see the architecture's "Audit-first,
//! fail-closed").
//!
//! **Invariant:** no byte reaches the rack unless a `CommandRequested` with decision `allow`
//! for exactly that canonical request is durable in the log.

pub mod flood;
pub mod headers;
pub mod metered;
pub mod upstream;
