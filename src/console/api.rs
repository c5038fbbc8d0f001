//! The JSON of the gateway API (`/api/v1`): what its handlers read and answer, and what the
//! command line's client sends and reads, so the two cannot drift apart.
//!
//! These types are the wire form: strings where the domain has newtypes, times as decimal
//! unix nanoseconds in strings (as the log's JSON form writes them, since they exceed what a
//! JSON number carries exactly). Handlers convert to `TokenId`, `Principal` and `Permission` at
//! once. **Invariant:** request bodies refuse unknown fields; no answer carries a token's
//! secret or its hash except [`TokenCreatedBody`], the one answer that hands a new secret to
//! its creator, whose `Debug` hides it.
//!
//! Answers are read leniently: the client ignores fields it does not know, so a command line
//! older than its gateway still reads an answer that gained a field. Refusing them made it
//! report a failure for a call the gateway had carried out (a revocation it then retried, or
//! an operator left unsure whether a token was revoked). What this version answers is still
//! exactly the schema's fields: `schemas/api/v1/tokens.schema.json` keeps every body closed.

use std::fmt;

use events::time::Timestamp;
use projections::identities::Identities;
use projections::tokens::{Token, Tokens};
use serde::{Deserialize, Serialize};

use crate::policy::Grant;

/// `POST /api/v1/tokens`: a token to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    /// 1 to 64 bytes of UTF-8 text with no control or invisible characters.
    pub name: String,
    /// The email of the person the token acts for.
    pub owner: String,
    /// Permissions of the catalogue, exactly (`convox:app:read`, `gateway:token:manage`).
    pub scopes: Vec<String>,
    /// Days until the token expires (1 to [`MAX_EXPIRY_DAYS`]); absent: it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u64>,
}

/// The answer to a create (201): the secret, shown once, and where the creation was recorded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreatedBody {
    pub id: String,
    pub token: String,
    pub seq: u64,
}

/// `GET /api/v1/tokens`: every token the log knows, revoked and expired ones included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenListBody {
    pub tokens: Vec<TokenView>,
}

/// One token as the API shows it: never its secret nor the secret's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub owner: String,
    pub scopes: Vec<String>,
    pub created: String,
    pub expires: Option<String>,
    pub last_used: Option<String>,
    pub revoked: Option<String>,
    pub dev_only: bool,
    /// `active`, `expired` or `revoked`, at the time of the answer.
    pub state: TokenState,
    /// Who created the token (absent only in answers from before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The id of the token it was created with through the API; absent for one made offline
    /// or by `dev`. After a leak, the tokens the leaked one minted are those naming it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_with: Option<String>,
    /// What the token may do at the time of the answer: its scopes within its owner's current
    /// permissions, empty when it is not usable or its owner is disabled or holds no role. An
    /// access review sees here a token that is `active` yet grants nothing, and what comes back
    /// when its owner is granted a role again (absent only in answers from before the field
    /// existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<String>>,
}

/// Whether a token can be used at the time of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

/// `DELETE /api/v1/tokens/{id}`: why the token is revoked (recorded in `TokenRevoked`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeTokenBody {
    pub reason: String,
    /// Also every token made with this one (`created_with`), to any depth, that is not revoked
    /// yet; the named token may then be revoked already.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub with_descendants: bool,
}

/// The answer to a revoke (200): `seq` is the first revocation's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevokedBody {
    pub id: String,
    pub seq: u64,
    /// Every token this call revoked, in the order of their events: `id` first unless it was
    /// revoked before, then, with `with_descendants`, the tokens made with it (absent only in
    /// answers from before the field existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<String>,
}

/// Every refusal: a stable `kind`, what is wrong, and where when the request's content is at
/// fault (`body line 1 column 9`, `scopes[2]`, `id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub kind: String,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// The longest expiry a token can be given through the API: ten years.
pub const MAX_EXPIRY_DAYS: u64 = 3650;

// === impl TokenCreatedBody ===

impl fmt::Debug for TokenCreatedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCreatedBody")
            .field("id", &self.id)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

// === impl TokenView ===

impl TokenView {
    /// `t` as the API shows it at `now`, what it grants as `tokens` and `identities` say
    /// ([`Grant::of_token`]).
    pub fn of(t: &Token, tokens: &Tokens, identities: &Identities, now: Timestamp) -> TokenView {
        let state = match (t.revoked, t.is_usable(now)) {
            (Some(_), _) => TokenState::Revoked,
            (None, false) => TokenState::Expired,
            (None, true) => TokenState::Active,
        };
        TokenView {
            id: t.id.to_hex(),
            name: t.name.clone(),
            owner: t.owner.0.clone(),
            scopes: t.scopes.iter().map(|p| p.0.clone()).collect(),
            created: t.created.to_string(),
            expires: t.expires.map(|e| e.to_string()),
            last_used: t.last_used.map(|e| e.to_string()),
            revoked: t.revoked.map(|e| e.to_string()),
            dev_only: t.dev_only,
            state,
            created_by: Some(t.created_by.0.clone()),
            created_with: t.created_with.map(|id| id.to_hex()),
            grants: Some(if t.is_usable(now) {
                Grant::of_token(t, tokens, identities)
                    .permissions()
                    .into_iter()
                    .map(|p| p.as_str().to_owned())
                    .collect()
            } else {
                Vec::new()
            }),
        }
    }
}

// === impl TokenState ===

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

impl fmt::Display for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_refuse_unknown_fields_and_the_secret_never_prints() {
        let e = serde_json::from_str::<CreateTokenBody>(
            r#"{"name":"ci","owner":"a@example.com","scopes":[],"dev_only":true}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `dev_only`"), "{e}");
        let created = TokenCreatedBody {
            id: "00".repeat(16),
            token: "rgw_secret".into(),
            seq: 3,
        };
        assert!(!format!("{created:?}").contains("rgw_secret"));
    }
}
