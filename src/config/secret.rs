//! A secret configuration value (the rack password): never printed. Its equality serves only to
//! tell one effective configuration from another; it is not constant-time, and no credential
//! a caller sends is ever checked against it.
//!
//! **Invariant:** `Debug` and `Display` show only that a value is set; the value leaves through
//! [`Secret::expose`], whose callers are the upstream request and the audit HMAC.

use std::fmt;

/// A secret string.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

// === impl Secret ===

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(secret)")
    }
}
