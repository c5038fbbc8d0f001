//! API tokens: a fold over token events, indexed by id and by the SHA-256 of the secret.
//!
//! **Invariant:** only the SHA-256 of a secret is ever held; a token is usable exactly when it
//! was created, not revoked, and not expired at the `now` the caller passes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use events::event::{
    AuthMethod, CommandRequested, Decision, Event, Permission, Principal, TokenId,
};
use events::hash::Hash;
use events::record::Record;
use events::time::Timestamp;

/// One token as the log describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: TokenId,
    pub name: String,
    pub owner: Principal,
    pub scopes: Vec<Permission>,
    pub secret_sha256: Hash,
    pub created: Timestamp,
    pub expires: Option<Timestamp>,
    pub dev_only: bool,
    pub revoked: Option<Timestamp>,
    pub last_used: Option<Timestamp>,
    /// Who created it (`TokenCreated.by`): a token made for another owner acts with that
    /// owner's roles, so an access review needs to see who made it.
    pub created_by: Principal,
    /// The token it was created with (`TokenCreated.by_token`), through the API: when a token
    /// leaks, what it minted is found by this. `None` for one made offline or by `dev`.
    pub created_with: Option<TokenId>,
}

/// The token table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub(crate) by_id: BTreeMap<TokenId, Token>,
    pub(crate) by_secret: HashMap<Hash, TokenId>,
    /// The token of the API create call just folded, for the `TokenCreated` that follows it in
    /// the same entry. `None` between entries (a create's entry ends with its `TokenCreated`),
    /// so it is in no snapshot.
    pub(crate) creating_call: Option<TokenId>,
}

/// The gateway API's path for tokens, as its calls are recorded: a `POST` there, allowed and
/// made with a token, is a create, whose `TokenCreated` is the next record.
const TOKENS_API: &str = "/api/v1/tokens";

// === impl Tokens ===

impl Tokens {
    /// Folds a token event; `creating_call` is what [`Tokens::note_create_call`] kept from the
    /// record before it.
    pub(crate) fn apply(&mut self, record: &Record, creating_call: Option<TokenId>) {
        match &record.event {
            Event::TokenCreated {
                token,
                name,
                owner,
                scopes,
                secret_sha256,
                expires,
                dev_only,
                by,
                by_token,
            } => {
                // The first creation of an id (or a secret) stands: the append guard refuses a
                // second, and a log that holds one anyway must fold alike whether rebuilt or
                // restored from a snapshot, never reviving a revoked token.
                if self.by_id.contains_key(token) || self.by_secret.contains_key(secret_sha256) {
                    return;
                }
                self.by_secret.insert(*secret_sha256, *token);
                self.by_id.insert(
                    *token,
                    Token {
                        id: *token,
                        name: name.clone(),
                        owner: owner.clone(),
                        scopes: scopes.clone(),
                        secret_sha256: *secret_sha256,
                        created: record.time,
                        expires: *expires,
                        dev_only: *dev_only,
                        revoked: None,
                        last_used: None,
                        created_by: by.clone(),
                        // Records from before `by_token` existed: the create call's own
                        // record, just before, names the token it was made with.
                        created_with: by_token.or(creating_call),
                    },
                );
            }
            Event::TokenRevoked { token, .. } => {
                if let Some(t) = self.by_id.get_mut(token)
                    && t.revoked.is_none()
                {
                    t.revoked = Some(record.time);
                }
            }
            _ => {}
        }
    }

    /// A proxied call authenticated by a token marks it used if it was allowed (even one
    /// recorded just after a revocation or an expiry: it was checked microseconds before, and it
    /// reached the rack), or was refused while the token was usable. A call refused because the
    /// token had just been revoked or had expired is not use, and an access review must not
    /// read it as use after the end.
    pub(crate) fn note_use(&mut self, c: &CommandRequested, time: Timestamp) {
        if c.auth != AuthMethod::Token {
            return;
        }
        let Some(id) = c.credential.as_deref().and_then(TokenId::from_hex) else {
            return;
        };
        if let Some(t) = self.by_id.get_mut(&id)
            && (c.decision == Decision::Allow || t.is_usable(time))
        {
            t.last_used = Some(time);
        }
    }

    /// Keeps the calling token of an allowed API create, for the `TokenCreated` next.
    pub(crate) fn note_create_call(&mut self, c: &CommandRequested) {
        self.creating_call = (c.decision == Decision::Allow
            && c.auth == AuthMethod::Token
            && c.method == "POST"
            && c.path == TOKENS_API)
            .then(|| c.credential.as_deref().and_then(TokenId::from_hex))
            .flatten();
    }

    pub fn get(&self, id: &TokenId) -> Option<&Token> {
        self.by_id.get(id)
    }

    /// Whether `id` names a token usable at `now` (not revoked, not expired): what a call made
    /// with it must find when it is checked and as long as it goes on.
    pub fn usable(&self, id: &TokenId, now: Timestamp) -> bool {
        self.by_id.get(id).is_some_and(|t| t.is_usable(now))
    }

    /// Whether `id` names a token that is not revoked (it may have expired): one a revocation
    /// still has to reach.
    pub fn unrevoked(&self, id: &TokenId) -> bool {
        self.by_id.get(id).is_some_and(|t| t.revoked.is_none())
    }

    /// The token whose secret hashes to `secret_sha256`, if it is usable at `now`.
    pub fn usable_by_secret(&self, secret_sha256: &Hash, now: Timestamp) -> Option<&Token> {
        let t = self.by_id.get(self.by_secret.get(secret_sha256)?)?;
        t.is_usable(now).then_some(t)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Token> {
        self.by_id.values()
    }

    /// Every token made with `root` (its `created_with`), and with those in turn, to any
    /// depth, revoked ones included, breadth first; `root` is not among them. What a leaked
    /// token minted, and what those minted, is revoked with it.
    ///
    /// One pass over the table per generation: it runs under the state's lock and in an
    /// append's guard, and tokens are never removed from the table.
    pub fn made_with(&self, root: TokenId) -> Vec<TokenId> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::from([root]);
        let mut frontier = BTreeSet::from([root]);
        while !frontier.is_empty() {
            let next: Vec<TokenId> = self
                .by_id
                .values()
                .filter(|t| t.created_with.is_some_and(|p| frontier.contains(&p)))
                .filter(|t| seen.insert(t.id))
                .map(|t| t.id)
                .collect();
            out.extend_from_slice(&next);
            frontier = next.into_iter().collect();
        }
        out
    }
}

impl Tokens {
    /// Who may have held a secret that minted `token`: the owners of the tokens it was made
    /// with through the gateway API (`created_with`), up the chain, other than its own owner,
    /// nearest first, each once. A token made with another went, secret and all, to whoever
    /// held that one: its owner, or whoever that token went to in turn. Empty for a token
    /// made offline or by `dev` (the chain ends there: whoever runs the gateway) and for one
    /// made with its own owner's tokens only.
    ///
    /// The chain follows earlier tokens only (a token is made with one that exists), and stops
    /// at an id the table does not hold or has visited, whatever a log holds.
    pub fn makers(&self, token: &Token) -> Vec<&Principal> {
        let mut out: Vec<&Principal> = Vec::new();
        let mut seen = BTreeSet::from([token.id]);
        let mut next = token.created_with;
        while let Some(id) = next.filter(|id| seen.insert(*id)) {
            let Some(parent) = self.by_id.get(&id) else {
                break;
            };
            if parent.owner != token.owner && !out.contains(&&parent.owner) {
                out.push(&parent.owner);
            }
            next = parent.created_with;
        }
        out
    }
}

// === impl Token ===

impl Token {
    /// Not revoked and not expired at `now`.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| now < e)
    }
}
