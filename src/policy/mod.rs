//! Policy: which rack route a request is, what it is allowed to carry, and who may send it.
//!
//! The module is pure: it takes the method, the raw path and query, the content type, the form
//! body and the headers as plain values, and returns decisions. It does no I/O, reads no clock and
//! knows no HTTP server type, so the proxy, the console and the tests all ask it the same way.
//! The order of use is fixed: [`canonical::canonicalize_path`], then [`decide::route`], then
//! [`canonical::canonicalize_params`] with the matched route's allow-list, then
//! [`decide::authorize`]; what was authorized (the canonical path, query, form body and option
//! headers) is exactly what the proxy forwards.
//!
//! **Invariant:** nothing outside [`routes::ROUTES`] is ever forwarded, every route names one
//! base [`permissions::Perm`], and a [`routes::ParamRule`] can only add a requirement: no
//! parameter, header or path value can lower what a route needs. Only [`decide`] can build a
//! [`decide::Permitted`].

pub mod canonical;
pub mod decide;
pub mod perm_set;
pub mod permissions;
pub mod roles;
pub mod routes;
pub mod tables;

pub use canonical::{
    CanonicalParams, CanonicalPath, ParamError, PathError, RequestBody, RequestParams, TailError,
    canonicalize_params, canonicalize_path,
};
pub use decide::{
    Denied, DenyReason, Grant, Matched, Permitted, Standing, Unknown, authorize, route,
};
pub use perm_set::PermSet;
pub use permissions::Perm;
pub use routes::{ROUTES, RouteRule};
