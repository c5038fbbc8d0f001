//! Who is calling: API tokens (their format, their secret's hash, the `Authorization` header the
//! convox CLI sends, the one authentication both listeners run) and the token and role changes
//! an administrator makes.
//!
//! **Invariant:** a token's secret exists in clear only in the one answer that creates it; the
//! log and the projections hold its SHA-256. Every change here is an event appended through the
//! store, with a guard where a change must happen at most once (revoking a token, removing the
//! last admin).

pub mod admin;
pub mod authenticate;
pub mod credentials;
pub mod token;
pub mod token_call;

pub use authenticate::AuthError;
pub use credentials::{Credential, CredentialError, Schemes};
pub use token::{TokenSecret, TokenSecretError};
pub use token_call::TokenCall;
