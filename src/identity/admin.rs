//! Token and role changes: each builds its event, and those that must happen at most once or
//! keep an invariant are appended with a guard the sequencer evaluates.
//!
//! **Invariant:** a token is revoked at most once and only if it exists; a role is granted only
//! to a user who does not hold it and never `cicd` to a person; the last enabled admin cannot
//! lose the role. These hold under concurrency because they are guards, not prior reads.

use events::event::{Event, Permission, Principal, Role, TokenId};
use events::seq::Seq;
use events::store::{AppendError, EventStore, Rejected};
use events::time::Timestamp;
use projections::Projections;

use super::token::{TokenSecret, TokenSecretError};

/// Why an administrative change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Token(#[from] TokenSecretError),
}

/// What creating a token returns: the secret, shown once, and where it was recorded.
#[derive(Debug)]
pub struct CreatedToken {
    pub id: TokenId,
    pub secret: TokenSecret,
    pub seq: Seq,
}

/// What a new token should be.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub name: String,
    pub owner: Principal,
    pub scopes: Vec<Permission>,
    pub expires: Option<Timestamp>,
    pub dev_only: bool,
    pub by: Principal,
}

const MAX_NAME: usize = 64;

/// Creates a token: a fresh id and secret, recorded as `TokenCreated` with only the secret's hash.
pub async fn create_token(
    store: &impl EventStore<Projections>,
    req: TokenRequest,
) -> Result<CreatedToken, AdminError> {
    if req.name.is_empty() || req.name.len() > MAX_NAME || req.name.chars().any(char::is_control) {
        return Err(AdminError::Invalid(format!(
            "a token name has 1 to {MAX_NAME} printable characters"
        )));
    }
    check_principal(&req.owner)?;
    for s in &req.scopes {
        check_permission(s)?;
    }
    if req.scopes.is_empty() {
        return Err(AdminError::Invalid(
            "a token needs at least one scope".into(),
        ));
    }
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let id = TokenId(id);
    let secret = TokenSecret::generate()?;
    let appended = store
        .append_if(
            vec![Event::TokenCreated {
                token: id,
                name: req.name,
                owner: req.owner,
                scopes: req.scopes,
                secret_sha256: secret.sha256(),
                expires: req.expires,
                dev_only: req.dev_only,
                by: req.by,
            }],
            Box::new(move |s: &Projections| match s.tokens.get(&id) {
                Some(_) => Err(Rejected("token id already exists")),
                None => Ok(()),
            }),
        )
        .await?;
    Ok(CreatedToken {
        id,
        secret,
        seq: appended.first,
    })
}

/// Revokes a token that exists and is not revoked yet.
pub async fn revoke_token(
    store: &impl EventStore<Projections>,
    token: TokenId,
    by: Principal,
    reason: String,
) -> Result<Seq, AdminError> {
    let appended = store
        .append_if(
            vec![Event::TokenRevoked { token, by, reason }],
            Box::new(move |s: &Projections| match s.tokens.get(&token) {
                None => Err(Rejected("no such token")),
                Some(t) if t.revoked.is_some() => Err(Rejected("token already revoked")),
                Some(_) => Ok(()),
            }),
        )
        .await?;
    Ok(appended.first)
}

/// Grants `role` to a person who does not hold it yet.
pub async fn grant_role(
    store: &impl EventStore<Projections>,
    user: Principal,
    role: Role,
    by: Principal,
) -> Result<Seq, AdminError> {
    check_principal(&user)?;
    if role == Role::Cicd {
        return Err(AdminError::Invalid(
            "cicd is a token-only role; create a token with cicd scopes instead".into(),
        ));
    }
    let who = user.clone();
    let appended = store
        .append_if(
            vec![Event::RoleGranted { user, role, by }],
            Box::new(move |s: &Projections| {
                if s.identities.roles(&who).contains(&role) {
                    Err(Rejected("the user already holds this role"))
                } else {
                    Ok(())
                }
            }),
        )
        .await?;
    Ok(appended.first)
}

/// Takes `role` from a user who holds it; never the last enabled admin.
pub async fn revoke_role(
    store: &impl EventStore<Projections>,
    user: Principal,
    role: Role,
    by: Principal,
) -> Result<Seq, AdminError> {
    let who = user.clone();
    let appended = store
        .append_if(
            vec![Event::RoleRevoked { user, role, by }],
            Box::new(move |s: &Projections| {
                if !s.identities.roles(&who).contains(&role) {
                    Err(Rejected("the user does not hold this role"))
                } else if role == Role::Admin && s.identities.count_with(Role::Admin) <= 1 {
                    Err(Rejected("refusing to remove the last admin"))
                } else {
                    Ok(())
                }
            }),
        )
        .await?;
    Ok(appended.first)
}

/// A person is named by an email address: one `@`, something on both sides, no spaces.
fn check_principal(p: &Principal) -> Result<(), AdminError> {
    let ok = matches!(p.0.split_once('@'), Some((a, b)) if !a.is_empty() && b.contains('.') && !b.contains('@'))
        && p.0.len() <= 254
        && !p.0.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "{:?} is not an email address",
            p.0
        )))
    }
}

/// A permission is `convox:<resource>:<action>` in lowercase letters, digits and `-`, or `*`.
fn check_permission(p: &Permission) -> Result<(), AdminError> {
    let word = |s: &str| {
        !s.is_empty()
            && (s == "*"
                || s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    };
    let parts: Vec<&str> = p.0.split(':').collect();
    match parts.as_slice() {
        ["convox", resource, action] if word(resource) && word(action) => Ok(()),
        _ => Err(AdminError::Invalid(format!(
            "{:?} is not a permission (convox:<resource>:<action>)",
            p.0
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use events::store::CheckpointPolicy;

    use super::*;
    use crate::keys::Keys;
    use crate::store::{self, Store};

    fn p(s: &str) -> Principal {
        Principal(s.to_owned())
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        Keys::init(dir.path(), "admin.test/log").unwrap();
        let (store, _) = store::open(dir.path(), CheckpointPolicy::default()).unwrap();
        (dir, store)
    }

    fn request() -> TokenRequest {
        TokenRequest {
            name: "ci".into(),
            owner: p("dev@example.com"),
            scopes: vec![Permission("convox:app:read".into())],
            expires: None,
            dev_only: false,
            by: p("admin@example.com"),
        }
    }

    #[tokio::test]
    async fn a_created_token_is_found_by_its_secret_and_only_its_hash_is_stored() {
        let (dir, store) = open();
        let t = create_token(&store, request()).await.unwrap();
        let found = store.with_state(|s| {
            s.tokens
                .usable_by_secret(&t.secret.sha256(), Timestamp(0))
                .map(|t| t.id)
        });
        assert_eq!(found, Some(t.id));
        drop(store);
        let bytes = std::fs::read(store::log_path(dir.path())).unwrap();
        let secret = t.secret.expose().as_bytes();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_revocations_of_one_token_record_one_event() {
        let (_dir, store) = open();
        let store = Arc::new(store);
        let t = create_token(&*store, request()).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                revoke_token(&*store, t.id, p("admin@example.com"), "x".into()).await
            }));
        }
        let mut ok = 0;
        for task in tasks {
            if task.await.unwrap().is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 1);
        assert!(
            revoke_token(&*store, TokenId([9; 16]), p("a@example.com"), String::new())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn roles_are_granted_once_cicd_never_to_people_and_the_last_admin_stays() {
        let (_dir, store) = open();
        let admin = p("root@example.com");
        grant_role(&store, admin.clone(), Role::Admin, p("system"))
            .await
            .unwrap();
        assert!(
            grant_role(&store, admin.clone(), Role::Admin, p("system"))
                .await
                .is_err()
        );
        assert!(matches!(
            grant_role(&store, p("bot@example.com"), Role::Cicd, p("system")).await,
            Err(AdminError::Invalid(_))
        ));
        assert!(
            revoke_role(&store, admin.clone(), Role::Admin, p("system"))
                .await
                .is_err()
        );
        grant_role(&store, p("two@example.com"), Role::Admin, p("system"))
            .await
            .unwrap();
        revoke_role(&store, admin.clone(), Role::Admin, p("system"))
            .await
            .unwrap();
        assert!(store.with_state(|s| s.identities.roles(&admin).is_empty()));
    }

    #[tokio::test]
    async fn malformed_requests_are_refused_before_anything_is_appended() {
        let (_dir, store) = open();
        let before = store.head().size;
        for bad in [
            TokenRequest {
                name: String::new(),
                ..request()
            },
            TokenRequest {
                owner: p("not an email"),
                ..request()
            },
            TokenRequest {
                scopes: vec![Permission("admin".into())],
                ..request()
            },
            TokenRequest {
                scopes: vec![],
                ..request()
            },
        ] {
            assert!(matches!(
                create_token(&store, bad).await,
                Err(AdminError::Invalid(_))
            ));
        }
        assert_eq!(store.head().size, before);
    }
}
