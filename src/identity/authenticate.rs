//! Authenticating a caller by API token: the one check the rack proxy and the gateway API both
//! run, from the `Authorization` header to the token the table holds for it.
//!
//! **Invariant:** a caller is authenticated only by a well-formed secret whose SHA-256 names a
//! token that is neither revoked nor expired at `now`; a dev-only token only where the listener
//! accepts dev tokens (`dev`), never under `serve`. Every refusal has a fixed
//! [`AuthError::reason`], the string the flood counters and `DenialsCounted` carry.

use events::store::EventStore;
use events::time::Timestamp;
use projections::Projections;
use projections::tokens::Token;

use super::credentials::{self, Credential, CredentialError, Schemes};

/// Why a caller is not authenticated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("the token is unknown, revoked or expired")]
    Unknown,
    #[error("dev-only tokens are refused by this gateway")]
    DevOnly,
}

// === impl AuthError ===

impl AuthError {
    /// A fixed, greppable reason for events and counters.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Credential(e) => e.reason(),
            AuthError::Unknown => "unknown_or_expired_token",
            AuthError::DevOnly => "dev_token_refused",
        }
    }
}

/// The token the `Authorization` header values present, if it is usable at `now`.
///
/// `accepts_dev_tokens` is true only under `dev`: that is what keeps a dev-only token away
/// from a real rack and from a real gateway's API.
pub fn token(
    store: &impl EventStore<Projections>,
    authorization: &[&[u8]],
    schemes: Schemes,
    now: Timestamp,
    accepts_dev_tokens: bool,
) -> Result<Token, AuthError> {
    let Credential::Token(secret) = credentials::parse(authorization, schemes)?;
    let hash = secret.sha256();
    let token = store
        .with_state(|s| s.tokens.usable_by_secret(&hash, now).cloned())
        .ok_or(AuthError::Unknown)?;
    if token.dev_only && !accepts_dev_tokens {
        return Err(AuthError::DevOnly);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use events::event::{Permission, Principal};
    use events::store::CheckpointPolicy;

    use super::*;
    use crate::identity::admin::{self, TokenRequest};
    use crate::keys::Keys;
    use crate::store;

    #[tokio::test]
    async fn usable_tokens_pass_and_dev_tokens_only_where_accepted() {
        let dir = tempfile::tempdir().unwrap();
        Keys::init(dir.path(), "auth.test/log").unwrap();
        let (store, _) = store::open(dir.path(), CheckpointPolicy::default()).unwrap();
        let create = |dev_only| TokenRequest {
            name: "t".into(),
            owner: Principal("a@example.com".into()),
            scopes: vec![Permission("convox:app:read".into())],
            expires: None,
            dev_only,
            by: Principal("system".into()),
        };
        let real = admin::create_token(&store, create(false)).await.unwrap();
        let dev = admin::create_token(&store, create(true)).await.unwrap();
        let now = Timestamp(1);
        let header = |t: &str| format!("Bearer {t}").into_bytes();
        let check = |h: &[u8], accepts| {
            token(&store, &[h], Schemes::BearerOnly, now, accepts).map(|t| t.id)
        };
        assert_eq!(check(&header(real.secret.expose()), false), Ok(real.id));
        assert_eq!(check(&header(dev.secret.expose()), true), Ok(dev.id));
        assert_eq!(
            check(&header(dev.secret.expose()), false),
            Err(AuthError::DevOnly)
        );
        let unknown = crate::identity::TokenSecret::generate().unwrap();
        assert_eq!(
            check(&header(unknown.expose()), true),
            Err(AuthError::Unknown)
        );
        admin::revoke_token(&store, real.id, Principal("system".into()), "t".into())
            .await
            .unwrap();
        assert_eq!(
            check(&header(real.secret.expose()), true).map_err(|e| e.reason()),
            Err("unknown_or_expired_token")
        );
        assert_eq!(
            token(&store, &[], Schemes::BearerOnly, now, true).map_err(|e| e.reason()),
            Err("missing_credentials")
        );
    }
}
