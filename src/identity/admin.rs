//! Token and role changes: each builds its event, and those that must happen at most once or
//! keep an invariant are appended with a guard the sequencer evaluates.
//!
//! **Invariant:** a token is revoked at most once and only if it exists; a role is granted only
//! to a user who does not hold it and never `cicd` to a person; the last enabled admin cannot
//! lose the role; a token created by a caller ([`create_token_as`]) never carries a permission
//! beyond its owner's or its creator's current ones, and is dev-only when its creator is. These
//! hold under concurrency because they are guards, not prior reads.

use std::fmt;
use std::sync::{Arc, Mutex};

use events::event::{Event, Permission, Principal, Role, TokenId};
use events::seq::Seq;
use events::store::{AppendError, EventStore, Rejected};
use events::time::{Clock, Timestamp};
use projections::Projections;
use projections::tokens::Token;

use super::token::{TokenSecret, TokenSecretError};
use crate::policy::{Grant, Perm, PermSet, Standing};

/// Why an administrative change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The request is malformed; `field` names the part at fault (`scopes[2]`).
    #[error("{field}: {what}")]
    Invalid { field: String, what: String },
    /// The new token would carry `permission`, which `whose` does not hold now.
    #[error("{permission} is beyond {whose} current permissions")]
    Exceeds {
        whose: Ceiling,
        permission: Permission,
    },
    /// The new token would expire after the token that creates it (or never): a policy
    /// refusal of an authenticated caller, not malformed content.
    #[error(
        "a token cannot outlive the token that creates it, which expires at {limit} (unix \
         nanoseconds); {}",
        outlives_hint(*days_left)
    )]
    Outlives { limit: Timestamp, days_left: u64 },
    /// The calling token no longer stands (revoked or expired since the call was admitted) or
    /// no longer holds [`Perm::GatewayTokenManage`] (its owner demoted or disabled): refused
    /// for that, not for what the request asked.
    #[error("{CALLER_CANNOT_MANAGE}")]
    CallerCannotManage,
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Token(#[from] TokenSecretError),
}

/// What a caller refused by [`AdminError::Outlives`] can do: the expiry it may ask for.
fn outlives_hint(days_left: u64) -> String {
    match days_left {
        0 => "it expires within a day: create this token with a longer-lived one".to_owned(),
        1 => "set expires_in_days (`--expires-in-days`) to 1".to_owned(),
        n => format!("set expires_in_days (`--expires-in-days`) to at most {n}"),
    }
}

/// Whose current permissions bound a token created by a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    /// The new token's owner: a token never acts beyond the person it acts for.
    Owner,
    /// The calling token (what it grants: [`Grant::of_token`]): no one mints more than they
    /// hold.
    Caller,
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

/// The calling token and the moment of the call, which bound a token it creates.
#[derive(Clone, Copy)]
struct Bound {
    caller: TokenId,
    now: Timestamp,
}

// === impl Bound ===

impl Bound {
    /// The bound as it is when the guard runs: the caller's token is judged at the append, not
    /// when the call began, so one that expired meanwhile is no longer usable.
    fn at_append(self) -> Bound {
        Bound {
            now: self.now.max(Clock.now()),
            ..self
        }
    }
}

// === impl Ceiling ===

impl fmt::Display for Ceiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ceiling::Owner => "the owner's",
            Ceiling::Caller => "the calling token's",
        })
    }
}

const MAX_NAME: usize = 64;
/// The longest revocation reason.
pub const MAX_REASON: usize = 256;

/// Checks text an operator types that the log keeps for good (a token's name, a revocation's
/// reason): 1 to `max` bytes, printable, and nothing the log's scrubber would take for a secret
/// (a token pasted into the reason for revoking it, a URL with its password). Such text is
/// refused, not rewritten: what is stored is what was typed.
pub fn check_free_text(field: &str, what: &str, text: &str, max: usize) -> Result<(), AdminError> {
    if text.is_empty() || text.len() > max || text.chars().any(|c| c.is_control() || is_format(c)) {
        return Err(invalid(
            field,
            &format!(
                "{what} is 1 to {max} bytes of UTF-8 text with no control or invisible \
                 characters"
            ),
        ));
    }
    if crate::proxy::redact::holds_secret_word(text) {
        return Err(invalid(
            field,
            &format!(
                "{what} holds what looks like a secret (a token, a URL's password, a key); the \
                 log keeps it for good, so describe it without it"
            ),
        ));
    }
    Ok(())
}

/// Creates a token: a fresh id and secret, recorded as `TokenCreated` with only the secret's hash.
///
/// This is the bootstrap path (the offline command line, `dev`): its scopes may use `*`
/// segments, and they are bounded only when used, by the owner's roles at that moment.
pub async fn create_token(
    store: &impl EventStore<Projections>,
    req: TokenRequest,
) -> Result<CreatedToken, AdminError> {
    create(store, req, None, None).await
}

/// Creates a token on behalf of `caller`, an authenticated token (the gateway API).
///
/// On top of [`create_token`]: every scope names a permission of the catalogue exactly (a `*`
/// scope would grow with the catalogue past what was checked today); the scopes stay within
/// the new token's owner's current permissions and within `caller`'s current effective
/// permissions ([`AdminError::Exceeds`]); the event names `caller`'s owner as `by`; and a token
/// created by a dev-only token is dev-only, so `dev` cannot mint a token `serve` accepts. The
/// bounds are checked before and again by the guard at the append, so a demotion or a
/// revocation of the caller that races the request is never overtaken. `intent` is the call's
/// `CommandRequested` (which token, from where, with which request id): appended in the same
/// entry, before `TokenCreated`, so neither is in the log without the other.
pub async fn create_token_as(
    store: &impl EventStore<Projections>,
    req: TokenRequest,
    caller: &Token,
    now: Timestamp,
    intent: Event,
) -> Result<CreatedToken, AdminError> {
    for (i, scope) in req.scopes.iter().enumerate() {
        if Perm::parse(&scope.0).is_none() {
            return Err(AdminError::Invalid {
                field: format!("scopes[{i}]"),
                what: format!(
                    "{} is not a permission of the catalogue (`rack-gateway policy-tables` lists them; `*` is not accepted here)",
                    quoted(&scope.0)
                ),
            });
        }
        if req.scopes[..i].contains(scope) {
            return Err(invalid(
                &format!("scopes[{i}]"),
                "this scope is listed twice",
            ));
        }
    }
    let req = TokenRequest {
        dev_only: req.dev_only || caller.dev_only,
        by: caller.owner.clone(),
        ..req
    };
    create(
        store,
        req,
        Some(Bound {
            caller: caller.id,
            now,
        }),
        Some(intent),
    )
    .await
}

async fn create(
    store: &impl EventStore<Projections>,
    req: TokenRequest,
    bound: Option<Bound>,
    intent: Option<Event>,
) -> Result<CreatedToken, AdminError> {
    check_free_text("name", "a token name", &req.name, MAX_NAME)?;
    check_new_principal("owner", &req.owner)?;
    check_by(&req.by)?;
    for (i, s) in req.scopes.iter().enumerate() {
        check_permission(&format!("scopes[{i}]"), s)?;
        if PermSet::of_scopes(std::slice::from_ref(s)).is_empty() {
            // A typo would otherwise make a token that grants nothing, or that starts granting
            // once a later catalogue holds what it names.
            return Err(invalid(
                &format!("scopes[{i}]"),
                &format!(
                    "{} names no permission of the catalogue (`rack-gateway policy-tables` \
                     lists them)",
                    quoted(&s.0)
                ),
            ));
        }
    }
    if req.scopes.is_empty() {
        return Err(invalid("scopes", "a token needs at least one scope"));
    }
    // The caller first: one revoked, expired or demoted while its request came in is refused
    // for that, not told its request exceeds or outlives what it no longer holds.
    if let Some(b) = &bound
        && store.with_state(|s| manager(s, b).is_none())
    {
        return Err(AdminError::CallerCannotManage);
    }
    if let Some(b) = &bound
        && let Some(limit) = store.with_state(|s| s.tokens.get(&b.caller).and_then(|t| t.expires))
        && req.expires.is_none_or(|e| e > limit)
    {
        // Otherwise a token about to expire could hand its holder one that never does.
        let days_left = limit.since(b.now).as_secs() / 86_400;
        return Err(AdminError::Outlives { limit, days_left });
    }
    if let Some(b) = &bound
        && let Some((whose, perm)) = store.with_state(|s| exceeding(s, &req.scopes, &req.owner, b))
    {
        return Err(AdminError::Exceeds {
            whose,
            permission: perm.to_permission(),
        });
    }
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| TokenSecretError::Random(e.to_string()))?;
    let id = TokenId(id);
    let secret = TokenSecret::generate()?;
    let (scopes, owner) = (req.scopes.clone(), req.owner.clone());
    let created = Event::TokenCreated {
        token: id,
        name: req.name,
        owner: req.owner,
        scopes: req.scopes,
        secret_sha256: secret.sha256(),
        expires: req.expires,
        dev_only: req.dev_only,
        by: req.by,
        by_token: bound.as_ref().map(|b| b.caller),
    };
    let (events, at) = entry(intent, [created]);
    let appended = store
        .append_if(
            events,
            Box::new(move |s: &Projections| {
                if s.tokens.get(&id).is_some() {
                    return Err(Rejected("token id already exists"));
                }
                // The caller's token as it is when the token is created, not when the call
                // began: one that expired meanwhile creates nothing.
                let bound = bound.map(Bound::at_append);
                match &bound {
                    Some(b) if exceeding(s, &scopes, &owner, b).is_some() => Err(Rejected(
                        "the scopes are beyond the owner's or the caller's current permissions",
                    )),
                    _ => Ok(()),
                }
            }),
        )
        .await?;
    Ok(CreatedToken {
        id,
        secret,
        seq: Seq(appended.first.0 + at),
    })
}

/// What keeps a caller's new token from being created in `s`: the caller no longer holds
/// [`Perm::GatewayTokenManage`] (a calling token that is no longer usable holds nothing), or
/// the first permission `scopes` name that the owner or the caller does not hold.
fn exceeding(
    s: &Projections,
    scopes: &[Permission],
    owner: &Principal,
    bound: &Bound,
) -> Option<(Ceiling, Perm)> {
    let owner_holds = Grant::for_token(scopes, &Standing::of(&s.identities, owner), &[]);
    let Some(caller_holds) = manager(s, bound) else {
        return Some((Ceiling::Caller, Perm::GatewayTokenManage));
    };
    PermSet::of_scopes(scopes).iter().find_map(|p| {
        if !owner_holds.holds(p) {
            Some((Ceiling::Owner, p))
        } else if !caller_holds.holds(p) {
            Some((Ceiling::Caller, p))
        } else {
            None
        }
    })
}

/// What the calling token grants in `s`, if it is still usable and may still manage tokens.
fn manager(s: &Projections, bound: &Bound) -> Option<Grant> {
    s.tokens
        .get(&bound.caller)
        .filter(|t| t.is_usable(bound.now))
        .map(|t| Grant::of_token(t, &s.tokens, &s.identities))
        .filter(|g| g.holds(Perm::GatewayTokenManage))
}

/// Which tokens a revocation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The token named.
    Token,
    /// The token named, if not revoked yet, and every token made with it, to any depth
    /// ([`projections::tokens::Tokens::made_with`]) that is not revoked yet: after a leak,
    /// what the leaked token minted goes with it.
    WithDescendants,
}

/// What a revocation revoked: the seq of its first `TokenRevoked`, and the tokens, in the
/// order of their events (the named token first, when it was not revoked before).
/// `complete` is false when tokens made with them meanwhile were left (see [`revoke`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub seq: Seq,
    pub tokens: Vec<TokenId>,
    pub complete: bool,
}

impl Revoked {
    /// What the caller of a revocation that is not `complete` is told; `again` says how to
    /// ask for the rest (the API's field or the command line's flag).
    pub fn unfinished(&self, token: TokenId, again: &str) -> String {
        let ids: Vec<String> = self.tokens.iter().map(TokenId::to_hex).collect();
        format!(
            "revoked {} (from seq {}), but tokens were still being made with them, or the log \
             stopped taking records: revoke {token} again with {again}",
            ids.join(", "),
            self.seq
        )
    }
}

/// The guard's refusal of a round whose listed tokens another call revoked, all of them,
/// after they were listed: nothing is appended and the round lists again.
const NONE_LEFT_LIVE: &str = "every token listed was revoked by another call meanwhile";

/// The refusal of a revocation with descendants whose every round found its listed tokens
/// revoked by other calls first while more were made with the tree: nothing was revoked by
/// this call, and tokens of the tree are still live.
pub const OUTRACED: &str = "nothing was revoked: other calls revoked every token listed first, \
     while more were made with the tree; revoke it again";

/// How many entries one revocation with its descendants may take (see [`revoke`]).
const MAX_ROUNDS: usize = 8;

/// The tokens a revocation of `token` with `reach` revokes now, or why there are none.
pub fn revocable(s: &Projections, token: TokenId, reach: Reach) -> Result<Vec<TokenId>, Rejected> {
    let root = s.tokens.get(&token).ok_or(Rejected("no such token"))?;
    let mut out: Vec<TokenId> = root
        .revoked
        .is_none()
        .then_some(token)
        .into_iter()
        .collect();
    if reach == Reach::WithDescendants {
        out.extend(
            s.tokens
                .made_with(token)
                .into_iter()
                .filter(|id| s.tokens.unrevoked(id)),
        );
    }
    match (out.is_empty(), reach) {
        (false, _) => Ok(out),
        (true, Reach::Token) => Err(Rejected("token already revoked")),
        (true, Reach::WithDescendants) => Err(Rejected(
            "the token and every token made with it are already revoked",
        )),
    }
}

/// Revokes a token that exists and is not revoked yet: the bootstrap path (the offline command
/// line), whose operator holds the data directory.
pub async fn revoke_token(
    store: &impl EventStore<Projections>,
    token: TokenId,
    by: Principal,
    reason: String,
) -> Result<Seq, AdminError> {
    revoke(store, token, Reach::Token, by, reason, None, None)
        .await
        .map(|r| r.seq)
}

/// As [`revoke_token`], reaching as far as `reach` says.
pub async fn revoke_tokens(
    store: &impl EventStore<Projections>,
    token: TokenId,
    reach: Reach,
    by: Principal,
    reason: String,
) -> Result<Revoked, AdminError> {
    revoke(store, token, reach, by, reason, None, None).await
}

/// Revokes a token on behalf of `caller` (the API): as [`revoke_tokens`], and only while
/// `caller` is usable and holds [`Perm::GatewayTokenManage`] at the moment of the append, so a
/// caller revoked or demoted while its request came in revokes nothing (the append is
/// rejected with [`CALLER_CANNOT_MANAGE`]). `intent` is the call's `CommandRequested`,
/// appended in the same entry before the `TokenRevoked` events.
pub async fn revoke_token_as(
    store: &impl EventStore<Projections>,
    token: TokenId,
    reach: Reach,
    reason: String,
    caller: &Token,
    now: Timestamp,
    intent: Event,
) -> Result<Revoked, AdminError> {
    let bound = Bound {
        caller: caller.id,
        now,
    };
    revoke(
        store,
        token,
        reach,
        caller.owner.clone(),
        reason,
        Some(bound),
        Some(intent),
    )
    .await
}

/// Revokes in entries of one `TokenRevoked` per token, the first after the call's intent.
///
/// A plain revocation is one entry, refused if the token was revoked meanwhile. With its
/// descendants, each round revokes what is live just before it, and its guard refuses it only
/// if the caller may no longer manage tokens (checked for the first round: the later ones sweep
/// for the same call, which may have revoked the caller itself), or if another call revoked
/// every token it lists meanwhile (then it lists again). A listed token revoked by another call
/// meanwhile is recorded revoked again (the fold keeps the first) and not reported as revoked
/// here, so revoking tokens of the tree cannot hold the rounds off; nor can making them, since
/// a revoked token makes no more: a round finds only what the tokens still live made while the
/// one before was written. After [`MAX_ROUNDS`] rounds, or if the log stops taking records
/// after the first, what was revoked is returned as not `complete`.
async fn revoke(
    store: &impl EventStore<Projections>,
    token: TokenId,
    reach: Reach,
    by: Principal,
    reason: String,
    bound: Option<Bound>,
    intent: Option<Event>,
) -> Result<Revoked, AdminError> {
    check_free_text("reason", "a reason", &reason, MAX_REASON)?;
    check_by(&by)?;
    let mut done: Option<Revoked> = None;
    let mut intent = intent;
    for _ in 0..MAX_ROUNDS {
        let listed = match store.with_state(|s| revocable(s, token, reach)) {
            Ok(listed) => listed,
            Err(r) => {
                return match done {
                    // Nothing left after an entry that landed: done.
                    Some(d) => Ok(Revoked {
                        complete: true,
                        ..d
                    }),
                    None => Err(AdminError::Append(AppendError::Rejected(r))),
                };
            }
        };
        let (events, at) = entry(
            intent.clone(),
            listed.iter().map(|&token| Event::TokenRevoked {
                token,
                by: by.clone(),
                reason: reason.clone(),
            }),
        );
        let guarded = listed.clone();
        let bound = bound.filter(|_| done.is_none());
        // Which listed tokens were still live as the entry was sequenced: those it revoked.
        let revoked_here = Arc::new(Mutex::new(Vec::new()));
        let seen = revoked_here.clone();
        let appended = store
            .append_if(
                events,
                Box::new(move |s: &Projections| {
                    let bound = bound.map(Bound::at_append);
                    if bound.as_ref().is_some_and(|b| manager(s, b).is_none()) {
                        return Err(Rejected(CALLER_CANNOT_MANAGE));
                    }
                    let live: Vec<TokenId> = guarded
                        .iter()
                        .copied()
                        .filter(|id| s.tokens.unrevoked(id))
                        .collect();
                    match reach {
                        Reach::Token if live.len() < guarded.len() => {
                            Err(Rejected("token already revoked"))
                        }
                        // Another call revoked them all meanwhile: list again.
                        Reach::WithDescendants if live.is_empty() => Err(Rejected(NONE_LEFT_LIVE)),
                        _ => {
                            if let Ok(mut slot) = seen.lock() {
                                *slot = live;
                            }
                            Ok(())
                        }
                    }
                }),
            )
            .await;
        let revoked_here = revoked_here
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        match appended {
            Ok(a) => {
                intent = None;
                // The first of its records that revoked a token live until then.
                let first = listed
                    .iter()
                    .position(|id| revoked_here.first() == Some(id))
                    .unwrap_or(0);
                let seq = Seq(a.first.0 + at + first as u64);
                match &mut done {
                    Some(d) => d.tokens.extend(revoked_here),
                    None => {
                        done = Some(Revoked {
                            seq,
                            tokens: revoked_here,
                            complete: reach == Reach::Token,
                        });
                    }
                }
                if reach == Reach::Token {
                    break;
                }
            }
            Err(AppendError::Rejected(r)) if r.0 == NONE_LEFT_LIVE => {}
            Err(e) => {
                return match done {
                    // What landed stays landed; the caller is told the rest was not reached.
                    Some(d) => Ok(d),
                    None => Err(e.into()),
                };
            }
        }
    }
    let Some(mut d) = done else {
        // Every round's tokens were revoked by other calls first: not the log failing (it took
        // every record it was given). Nothing left is refused as when the tree was revoked
        // before the call; tokens still live, as outraced.
        let why = store
            .with_state(|s| revocable(s, token, reach))
            .err()
            .unwrap_or(Rejected(OUTRACED));
        return Err(AdminError::Append(AppendError::Rejected(why)));
    };
    // The last round may have left nothing behind.
    d.complete = d.complete || store.with_state(|s| revocable(s, token, reach)).is_err();
    Ok(d)
}

/// The entry that records `changes`, after the API call's `intent` when there is one, and the
/// place of the first change in it.
fn entry(intent: Option<Event>, changes: impl IntoIterator<Item = Event>) -> (Vec<Event>, u64) {
    let at = u64::from(intent.is_some());
    (intent.into_iter().chain(changes).collect(), at)
}

/// The guard's refusal when the calling token may no longer manage tokens.
pub const CALLER_CANNOT_MANAGE: &str = "the calling token may no longer manage tokens";

/// Grants `role` to a person who does not hold it yet.
pub async fn grant_role(
    store: &impl EventStore<Projections>,
    user: Principal,
    role: Role,
    by: Principal,
) -> Result<Seq, AdminError> {
    check_new_principal("user", &user)?;
    check_by(&by)?;
    if role == Role::Cicd {
        let scopes: Vec<String> = crate::policy::roles::cicd_scopes()
            .iter()
            .map(|p| format!("--scope {}", p.0))
            .collect();
        return Err(invalid(
            "role",
            &format!(
                "cicd is a token-only role; create a token with its scopes instead, for a \
                 deployer or admin owner: `token create {}`",
                scopes.join(" ")
            ),
        ));
    }
    let who = user.clone();
    let appended = store
        .append_if(
            vec![Event::RoleGranted { user, role, by }],
            Box::new(move |s: &Projections| {
                if s.identities.assigned(&who).contains(&role) {
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
    check_by(&by)?;
    let who = user.clone();
    let appended = store
        .append_if(
            vec![Event::RoleRevoked { user, role, by }],
            Box::new(move |s: &Projections| {
                if !s.identities.assigned(&who).contains(&role) {
                    Err(Rejected("the user does not hold this role"))
                } else if role == Role::Admin
                    && !s.identities.is_disabled(&who)
                    && s.identities.count_with(Role::Admin) <= 1
                {
                    Err(Rejected("refusing to remove the last admin"))
                } else {
                    Ok(())
                }
            }),
        )
        .await?;
    Ok(appended.first)
}

/// Disables a person: every role and token of theirs stops at once, and streams end (their
/// roles stay assigned and come back with [`enable_user`]); never the last enabled admin.
pub async fn disable_user(
    store: &impl EventStore<Projections>,
    user: Principal,
    by: Principal,
    reason: String,
) -> Result<Seq, AdminError> {
    check_principal("user", &user)?;
    check_by(&by)?;
    check_free_text("reason", "a reason", &reason, MAX_REASON)?;
    let who = user.clone();
    let appended = store
        .append_if(
            vec![Event::UserDisabled { user, by, reason }],
            Box::new(move |s: &Projections| {
                let ids = &s.identities;
                if ids.is_disabled(&who) {
                    Err(Rejected("the user is already disabled"))
                } else if ids.assigned(&who).is_empty() && !s.tokens.iter().any(|t| t.owner == who)
                {
                    // A typo or another spelling of a person would record a disable of
                    // nobody, and leave the person as they were.
                    Err(Rejected(
                        "no such person: they hold no role and own no token (names are exact)",
                    ))
                } else if ids.assigned(&who).contains(&Role::Admin)
                    && ids.count_with(Role::Admin) <= 1
                {
                    Err(Rejected("refusing to disable the last admin"))
                } else {
                    Ok(())
                }
            }),
        )
        .await?;
    Ok(appended.first)
}

/// Enables a disabled person: their assigned roles, and the tokens they own, count again.
pub async fn enable_user(
    store: &impl EventStore<Projections>,
    user: Principal,
    by: Principal,
) -> Result<Seq, AdminError> {
    check_principal("user", &user)?;
    check_by(&by)?;
    let who = user.clone();
    let appended = store
        .append_if(
            vec![Event::UserEnabled { user, by }],
            Box::new(move |s: &Projections| {
                if s.identities.is_disabled(&who) {
                    Ok(())
                } else {
                    Err(Rejected("the user is not disabled"))
                }
            }),
        )
        .await?;
    Ok(appended.first)
}

/// `text` as a refusal quotes it: a gateway token's secret pasted into the wrong field (an
/// owner, a scope) is not repeated to the terminal, the CI log or the API's answer.
pub fn quoted(text: &str) -> String {
    format!("{:?}", crate::proxy::redact::gateway_tokens(text))
}

/// Unicode's format characters (category Cf) that text may not hold: invisible, they make two
/// names read the same, and the bidirectional ones reorder what a terminal shows of a line
/// (`token list`, an audit export). The ranges are Unicode 15's Cf.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{AD}'
            | '\u{600}'..='\u{605}'
            | '\u{61C}'
            | '\u{6DD}'
            | '\u{70F}'
            | '\u{890}'..='\u{891}'
            | '\u{8E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

fn invalid(field: &str, what: &str) -> AdminError {
    AdminError::Invalid {
        field: field.to_owned(),
        what: what.to_owned(),
    }
}

/// A person is named by an email address: one `@`, something on both sides, printable ASCII
/// only (no spaces), as Google Workspace issues them. ASCII keeps one person from having two
/// names that read the same: `admin@example.com` followed by a zero-width space, or with a
/// Cyrillic `а`, would be a second admin that an access review cannot tell apart. The log keeps
/// the name for good (in the call's parameters even when it is refused), so one with a gateway
/// token's secret pasted into it is refused too. Only that: the scrubber's other rules would
/// take some real addresses (long, dense, with digits) for secrets.
pub fn check_principal(field: &str, p: &Principal) -> Result<(), AdminError> {
    let ok = matches!(p.0.split_once('@'), Some((a, b)) if !a.is_empty() && b.contains('.') && !b.contains('@'))
        && p.0.len() <= 254
        && p.0.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(invalid(
            field,
            &format!(
                "{} is not an email address (printable ASCII, one @)",
                quoted(&p.0)
            ),
        ));
    }
    if crate::proxy::redact::holds_gateway_token(&p.0) {
        return Err(invalid(
            field,
            "holds a gateway token's secret; the log keeps this name for good, so name the \
             person by their email address",
        ));
    }
    Ok(())
}

/// A name that is given access (a role, a token): [`check_principal`]'s rule, in lowercase.
///
/// Names are compared exactly, and an identity provider gives one spelling of an address
/// (Google Workspace's is lowercase): `Alice@Example.com` would be a second principal that no
/// sign-in matches and that disabling `alice@example.com` leaves standing. Names already in the
/// log keep working where access is taken away (revoke, disable, enable), so an old spelling
/// can always be stopped.
pub fn check_new_principal(field: &str, p: &Principal) -> Result<(), AdminError> {
    check_principal(field, p)?;
    if p.0.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid(
            field,
            &format!(
                "{} has capital letters; names are compared exactly, so give access to the \
                 address in lowercase ({})",
                quoted(&p.0),
                quoted(&p.0.to_ascii_lowercase())
            ),
        ));
    }
    Ok(())
}

/// Who makes a change: the gateway itself (`system`, the bootstrap's default) or a person, held
/// to [`check_principal`]'s rule, since the log keeps the name for good.
fn check_by(by: &Principal) -> Result<(), AdminError> {
    if by.0 == SYSTEM {
        return Ok(());
    }
    check_principal("by", by)
}

/// The actor of changes the gateway makes itself, and of the offline command line's by default.
pub const SYSTEM: &str = "system";

/// A permission is `convox:<resource>:<action>` (a rack permission) or
/// `gateway:<resource>:<action>` (the gateway's own), in lowercase letters, digits and `-`, or
/// `*` after the scheme.
fn check_permission(field: &str, p: &Permission) -> Result<(), AdminError> {
    let word = |s: &str| {
        !s.is_empty()
            && (s == "*"
                || s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    };
    let parts: Vec<&str> = p.0.split(':').collect();
    match parts.as_slice() {
        ["convox" | "gateway", resource, action] if word(resource) && word(action) => Ok(()),
        _ => Err(invalid(
            field,
            &format!(
                "{} is not a permission (convox:<resource>:<action> or gateway:<resource>:<action>)",
                quoted(&p.0)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use events::store::CheckpointPolicy;

    use super::*;
    use crate::keys::Keys;
    use crate::store::{self, Store};

    /// The `CommandRequested` an API call by `caller` appends with its change.
    fn intent(caller: &Token) -> Event {
        crate::identity::token_call::TokenCall {
            request_id: "test-1",
            token: caller,
            ip: std::net::IpAddr::from([127, 0, 0, 1]),
            user_agent: "test",
        }
        .requested(
            "POST",
            "/api/v1/tokens",
            None,
            events::event::Decision::Allow,
            "",
            Vec::new(),
        )
    }

    /// The limit on typed text is in bytes, and the refusal says so: 21 three-byte characters
    /// fit a name, 22 do not.
    #[test]
    fn typed_text_is_bounded_in_bytes_and_told_so() {
        assert!(check_free_text("name", "a token name", &"名".repeat(21), MAX_NAME).is_ok());
        let Err(AdminError::Invalid { field, what }) =
            check_free_text("name", "a token name", &"名".repeat(22), MAX_NAME)
        else {
            panic!("66 bytes is over the name's 64");
        };
        assert_eq!(field, "name");
        assert!(what.contains("1 to 64 bytes"), "{what}");
    }

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

    /// The offline command line names who makes a change and which scopes a token has: both
    /// are kept for good, so text that is neither `system` nor a person, and a scope that names
    /// nothing in the catalogue, are refused before anything is appended.
    #[tokio::test]
    async fn who_changes_is_system_or_a_person_and_every_scope_names_a_permission() {
        let (_dir, store) = open();
        let head = store.head().size;
        let pasted = TokenSecret::generate().unwrap().expose().to_owned();
        fn refused_by<T>(r: Result<T, AdminError>) -> bool {
            matches!(r, Err(AdminError::Invalid { ref field, .. }) if field == "by")
        }
        for by in ["alice\u{1b}[2J", pasted.as_str(), "", "root"] {
            let req = TokenRequest {
                by: p(by),
                ..request()
            };
            assert!(
                refused_by(create_token(&store, req).await),
                "create by {by:?}"
            );
            assert!(
                refused_by(revoke_token(&store, TokenId([1; 16]), p(by), "x".into()).await),
                "revoke by {by:?}"
            );
            assert!(
                refused_by(grant_role(&store, p("a@example.com"), Role::Ops, p(by)).await),
                "grant by {by:?}"
            );
            assert!(
                refused_by(revoke_role(&store, p("a@example.com"), Role::Ops, p(by)).await),
                "revoke role by {by:?}"
            );
        }
        for (scope, names) in [("convox:apps:read", false), ("convox:app:*", true)] {
            let req = TokenRequest {
                scopes: vec![Permission(scope.into())],
                ..request()
            };
            let created = create_token(&store, req).await;
            if names {
                created.unwrap();
            } else {
                assert!(
                    matches!(created, Err(AdminError::Invalid { ref field, ref what })
                        if field == "scopes[0]" && what.contains("names no permission")),
                    "{scope}"
                );
            }
        }
        assert_eq!(
            store.head().size,
            head + 1,
            "only the valid token was recorded"
        );
        let by = |who: &str| TokenRequest {
            by: p(who),
            ..request()
        };
        create_token(&store, by(SYSTEM)).await.unwrap();
        create_token(&store, by("admin@example.com")).await.unwrap();
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
        let records = store.read(0..store.head().size).await.unwrap();
        let revoked = records
            .iter()
            .filter(
                |r| matches!(&r.record.event, Event::TokenRevoked { token, .. } if *token == t.id),
            )
            .count();
        assert_eq!(revoked, 1, "one TokenRevoked in the log");
        assert!(
            revoke_token(&*store, TokenId([9; 16]), p("a@example.com"), String::new())
                .await
                .is_err()
        );
    }

    /// A token made offline names its maker as typed (`--by`, any text in older logs), not as
    /// a caller the gateway authenticated: it has no maker bound, whoever `by` names and
    /// whatever they hold. Only a token made with another, through the API, is bounded by who
    /// held that one.
    #[tokio::test]
    async fn a_token_made_offline_acts_with_its_owners_roles_whoever_it_names_as_maker() {
        let (_dir, store) = open();
        grant_role(&store, p("dev@example.com"), Role::Deployer, p(SYSTEM))
            .await
            .unwrap();
        for (i, by) in ["root", "ops-lead@example.com", SYSTEM]
            .into_iter()
            .enumerate()
        {
            let id = TokenId([u8::try_from(i).unwrap() + 1; 16]);
            store
                .append(vec![Event::TokenCreated {
                    token: id,
                    name: "ci".into(),
                    owner: p("dev@example.com"),
                    scopes: vec![Permission("convox:app:read".into())],
                    secret_sha256: TokenSecret::generate().unwrap().sha256(),
                    expires: None,
                    dev_only: false,
                    by: p(by),
                    by_token: None,
                }])
                .await
                .unwrap();
            let holds = store.with_state(|s| {
                Grant::of_token(s.tokens.get(&id).unwrap(), &s.tokens, &s.identities)
                    .check(Perm::AppRead)
            });
            assert_eq!(holds, Ok(()), "made offline by {by:?}");
        }
    }

    /// Access goes to lowercase names only: a capitalised spelling would be a second principal
    /// that disabling the first leaves standing. Access is taken from a name as the log has it.
    #[tokio::test]
    async fn access_is_given_to_lowercase_names_only() {
        let (_dir, store) = open();
        let head = store.head().size;
        let refused = grant_role(&store, p("Alice@Example.com"), Role::Viewer, p(SYSTEM)).await;
        assert!(
            matches!(&refused, Err(AdminError::Invalid { field, what })
                if field == "user" && what.contains("\"alice@example.com\"")),
            "{refused:?}"
        );
        let owned = create_token(
            &store,
            TokenRequest {
                owner: p("Dev@example.com"),
                ..request()
            },
        )
        .await;
        assert!(
            matches!(&owned, Err(AdminError::Invalid { field, .. }) if field == "owner"),
            "{owned:?}"
        );
        assert_eq!(store.head().size, head, "nothing was recorded");
        // A capitalised name already in the log (from before this rule) can still be stopped.
        let old = p("Old@example.com");
        store
            .append(vec![
                Event::RoleGranted {
                    user: p("root@example.com"),
                    role: Role::Admin,
                    by: p(SYSTEM),
                },
                Event::RoleGranted {
                    user: old.clone(),
                    role: Role::Ops,
                    by: p(SYSTEM),
                },
            ])
            .await
            .unwrap();
        disable_user(&store, old.clone(), p(SYSTEM), "left".into())
            .await
            .unwrap();
        enable_user(&store, old.clone(), p(SYSTEM)).await.unwrap();
        revoke_role(&store, old.clone(), Role::Ops, p(SYSTEM))
            .await
            .unwrap();
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
        // Refused with the token command that makes what was meant, every cicd scope in it.
        let refused = grant_role(&store, p("bot@example.com"), Role::Cicd, p("system")).await;
        let Err(AdminError::Invalid { ref what, .. }) = refused else {
            panic!("{refused:?}");
        };
        for scope in crate::policy::roles::cicd_scopes() {
            assert!(
                what.contains(&format!("--scope {} ", scope.0))
                    || what.ends_with(&format!("--scope {}`", scope.0)),
                "{what}"
            );
        }
        // A token's secret pasted as the person is refused, whose name the log would keep; a
        // long address with digits is a person.
        let pasted = format!("{}@example.com", TokenSecret::generate().unwrap().expose());
        assert!(matches!(
            grant_role(&store, p(&pasted), Role::Viewer, p("system")).await,
            Err(AdminError::Invalid { ref field, .. }) if field == "user"
        ));
        grant_role(
            &store,
            p("christopher.anderson1@example.com"),
            Role::Viewer,
            p("system"),
        )
        .await
        .unwrap();
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

    /// A disabled user's roles are still assigned: revoking one works and stays revoked when
    /// the user comes back, granting one twice is refused, and a disabled admin is not the
    /// last admin.
    #[tokio::test]
    async fn a_disabled_users_roles_are_changed_as_assigned() {
        let (_dir, store) = open();
        let root = p("root@example.com");
        let gone = p("gone@example.com");
        for user in [&root, &gone] {
            grant_role(&store, user.clone(), Role::Admin, p("system"))
                .await
                .unwrap();
        }
        let toggle = |e: Event| {
            let store = &store;
            async move { store.append(vec![e]).await.unwrap() }
        };
        toggle(Event::UserDisabled {
            user: gone.clone(),
            by: root.clone(),
            reason: "left".into(),
        })
        .await;
        assert!(
            grant_role(&store, gone.clone(), Role::Admin, p("system"))
                .await
                .is_err(),
            "granted twice"
        );
        revoke_role(&store, gone.clone(), Role::Admin, p("system"))
            .await
            .unwrap();
        toggle(Event::UserEnabled {
            user: gone.clone(),
            by: root.clone(),
        })
        .await;
        assert!(store.with_state(|s| s.identities.roles(&gone).is_empty()));
        // The one enabled admin stays.
        assert!(
            revoke_role(&store, root.clone(), Role::Admin, p("system"))
                .await
                .is_err()
        );
    }

    /// Disabling stops a person's roles and tokens at once and keeps their roles for an enable;
    /// the last enabled admin is never disabled, and each change happens once.
    #[tokio::test]
    async fn a_person_is_disabled_and_enabled_once_and_never_the_last_admin() {
        let (_dir, store) = open();
        let root = p("root@example.com");
        let dev = p("dev@example.com");
        grant_role(&store, root.clone(), Role::Admin, p(SYSTEM))
            .await
            .unwrap();
        grant_role(&store, dev.clone(), Role::Deployer, p(SYSTEM))
            .await
            .unwrap();
        let t = create_token(&store, request()).await.unwrap();
        let usable = |store: &Store| {
            store.with_state(|s| {
                let t = s.tokens.get(&t.id).unwrap();
                Grant::of_token(t, &s.tokens, &s.identities).holds(Perm::AppRead)
            })
        };
        assert!(usable(&store));
        assert!(matches!(
            disable_user(&store, root.clone(), p(SYSTEM), "left".into()).await,
            Err(AdminError::Append(AppendError::Rejected(Rejected(why)))) if why.contains("last admin")
        ));
        disable_user(&store, dev.clone(), root.clone(), "left the team".into())
            .await
            .unwrap();
        assert!(!usable(&store), "the owner's token stops at once");
        assert!(store.with_state(|s| s.identities.roles(&dev).is_empty()));
        assert!(
            disable_user(&store, dev.clone(), root.clone(), "again".into())
                .await
                .is_err()
        );
        assert!(matches!(
            disable_user(&store, p("x@example.com"), root.clone(), String::new()).await,
            Err(AdminError::Invalid { ref field, .. }) if field == "reason"
        ));
        for nobody in ["Dev@example.com", "nobody@example.com"] {
            assert!(
                matches!(
                    disable_user(&store, p(nobody), root.clone(), "x".into()).await,
                    Err(AdminError::Append(AppendError::Rejected(Rejected(why)))) if why.contains("no such person")
                ),
                "{nobody}"
            );
        }
        enable_user(&store, dev.clone(), root.clone())
            .await
            .unwrap();
        assert!(usable(&store), "the roles were kept");
        assert!(
            enable_user(&store, dev.clone(), root.clone())
                .await
                .is_err()
        );
        // Disabled, then stripped of every role (owning no token): still known to the log as
        // disabled, and said so.
        let ex = p("ex@example.com");
        grant_role(&store, ex.clone(), Role::Viewer, root.clone())
            .await
            .unwrap();
        disable_user(&store, ex.clone(), root.clone(), "gone".into())
            .await
            .unwrap();
        revoke_role(&store, ex.clone(), Role::Viewer, root.clone())
            .await
            .unwrap();
        assert!(matches!(
            disable_user(&store, ex.clone(), root.clone(), "again".into()).await,
            Err(AdminError::Append(AppendError::Rejected(Rejected(why)))) if why.contains("already disabled")
        ));
        enable_user(&store, ex.clone(), root.clone()).await.unwrap();
        // No role, yet a token's owner: a person the log knows.
        revoke_role(&store, dev.clone(), Role::Deployer, root.clone())
            .await
            .unwrap();
        disable_user(&store, dev.clone(), root.clone(), "gone".into())
            .await
            .unwrap();
    }

    /// A token for `owner` holding `role`, with `scopes`, as an API caller.
    async fn caller(store: &Store, owner: &str, role: Role, scopes: &[&str]) -> Token {
        grant_role(store, p(owner), role, p("system"))
            .await
            .unwrap();
        let t = create_token(
            store,
            TokenRequest {
                owner: p(owner),
                scopes: scopes.iter().map(|s| Permission((*s).into())).collect(),
                ..request()
            },
        )
        .await
        .unwrap();
        store.with_state(|s| s.tokens.get(&t.id).cloned()).unwrap()
    }

    /// A leaked management token's descendant keeps minting tokens while the root is revoked
    /// with its descendants: once the revocation returns, every token made with the root, to
    /// any depth, is revoked, and none can be made with them any more.
    #[tokio::test]
    async fn a_revocation_with_descendants_outruns_tokens_made_meanwhile() {
        let (_dir, store, root) = managing_root().await;
        let (now, manage) = (Timestamp(1), MANAGE);
        let made = create_token_as(
            &store,
            for_owner("root@example.com", &manage),
            &root,
            now,
            intent(&root),
        )
        .await
        .unwrap();
        let minter = store
            .with_state(|s| s.tokens.get(&made.id).cloned())
            .unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mint = async {
            let mut minted = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = for_owner("root@example.com", &manage);
                match create_token_as(&store, req, &minter, now, intent(&minter)).await {
                    Ok(_) => minted += 1,
                    Err(_) => break,
                }
            }
            minted
        };
        let revoke = async {
            tokio::task::yield_now().await;
            let r = revoke_tokens(
                &store,
                root.id,
                Reach::WithDescendants,
                p("system"),
                "leaked".into(),
            )
            .await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            r
        };
        let (minted, revoked) = tokio::join!(mint, revoke);
        let revoked = revoked.unwrap();
        assert!(revoked.complete, "{revoked:?}");
        let tree = store.with_state(|s| s.tokens.made_with(root.id));
        assert_eq!(
            unrevoked_in_tree(&store, root.id),
            [],
            "made meanwhile and left: {minted} minted"
        );
        assert_eq!(
            tree.len(),
            1 + minted,
            "each minted token descends from the root"
        );
        assert!(
            create_token_as(
                &store,
                for_owner("root@example.com", &manage),
                &minter,
                now,
                intent(&minter)
            )
            .await
            .is_err()
        );
    }

    /// Neither revoking tokens of the tree meanwhile (as a leaked management token may, one by
    /// one) nor the caller being in the tree (it revokes itself with the rest) keeps the
    /// revocation from reaching every token made with the root.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revocation_with_descendants_lands_whatever_the_tree_does_meanwhile() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (_dir, store, root) = managing_root().await;
        let store = Arc::new(store);
        let (now, manage) = (Timestamp(1), MANAGE);
        let mut children = Vec::new();
        for _ in 0..200 {
            let req = for_owner("root@example.com", &manage);
            let made = create_token_as(&*store, req, &root, now, intent(&root)).await;
            children.push(made.unwrap().id);
        }
        let minter = store
            .with_state(|s| s.tokens.get(&children[0]).cloned())
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // The leaked tree revokes its own tokens, one call each from four callers, and makes
        // new ones.
        let mut tasks = Vec::new();
        for part in 0..4 {
            let (store, stop) = (store.clone(), stop.clone());
            let mine: Vec<TokenId> = children.iter().skip(1 + part).step_by(4).copied().collect();
            tasks.push(tokio::spawn(async move {
                for child in mine {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // Refused only when the root's revocation took it first.
                    let _ =
                        revoke_tokens(&*store, child, Reach::Token, p("system"), "x".into()).await;
                }
            }));
        }
        {
            let (store, stop) = (store.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let req = for_owner("root@example.com", &manage);
                    let made = create_token_as(&*store, req, &minter, now, intent(&minter)).await;
                    if made.is_err() {
                        break;
                    }
                }
            }));
        }
        tokio::task::yield_now().await;
        // The root revokes itself with its descendants, as a caller in the tree.
        let revoked = revoke_token_as(
            &*store,
            root.id,
            Reach::WithDescendants,
            "leaked".into(),
            &root,
            now,
            intent(&root),
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        let revoked = revoked.unwrap();
        assert!(revoked.complete, "{revoked:?}");
        assert_eq!(revoked.tokens.first(), Some(&root.id));
        assert_eq!(unrevoked_in_tree(&store, root.id), []);
    }

    /// Two revocations of one tree at once: each reports only what it revoked, so between them
    /// every token is reported once, whichever ran first or however their rounds interleaved.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_revocations_of_one_tree_report_each_token_once() {
        use std::collections::BTreeSet;
        use std::sync::Arc;
        let (_dir, store, root) = managing_root().await;
        let store = Arc::new(store);
        let (now, manage) = (Timestamp(1), MANAGE);
        for _ in 0..60 {
            let req = for_owner("root@example.com", &manage);
            create_token_as(&*store, req, &root, now, intent(&root))
                .await
                .unwrap();
        }
        let tree: BTreeSet<TokenId> = store.with_state(|s| {
            std::iter::once(root.id)
                .chain(s.tokens.made_with(root.id))
                .collect()
        });
        let run = || {
            let store = store.clone();
            tokio::spawn(async move {
                revoke_tokens(
                    &*store,
                    root.id,
                    Reach::WithDescendants,
                    p("system"),
                    "x".into(),
                )
                .await
            })
        };
        let (a, b) = (run(), run());
        let mut reported = Vec::new();
        for r in [a.await.unwrap(), b.await.unwrap()] {
            match r {
                Ok(r) => {
                    assert!(r.complete, "{r:?}");
                    reported.extend(r.tokens);
                }
                // The other took every token first.
                Err(AdminError::Append(AppendError::Rejected(_))) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        let once: BTreeSet<TokenId> = reported.iter().copied().collect();
        assert_eq!(once.len(), reported.len(), "a token reported twice");
        assert_eq!(once, tree);
    }

    /// A store that, at each `append_if`, first appends the next of `meanwhile` itself: what
    /// another call got sequenced between a revocation's listing and its entry,
    /// deterministically.
    struct Meanwhile<'a> {
        inner: &'a Store,
        meanwhile: std::sync::Mutex<std::collections::VecDeque<Vec<Event>>>,
    }

    impl EventStore<Projections> for Meanwhile<'_> {
        async fn append(&self, events: Vec<Event>) -> Result<events::store::Appended, AppendError> {
            self.inner.append(events).await
        }

        async fn append_if(
            &self,
            events: Vec<Event>,
            guard: events::store::Guard<Projections>,
        ) -> Result<events::store::Appended, AppendError> {
            let next = self.meanwhile.lock().unwrap().pop_front();
            if let Some(other) = next {
                self.inner.append(other).await.unwrap();
            }
            self.inner.append_if(events, guard).await
        }

        async fn read(
            &self,
            range: std::ops::Range<u64>,
        ) -> Result<Vec<events::record::StoredRecord>, events::store::StoreError> {
            self.inner.read(range).await
        }

        fn head(&self) -> events::store::Head {
            self.inner.head()
        }

        async fn checkpoints(
            &self,
            range: std::ops::Range<u64>,
        ) -> Result<Vec<events::checkpoint::SignedCheckpoint>, events::store::StoreError> {
            self.inner.checkpoints(range).await
        }

        fn with_state<R>(&self, f: impl FnOnce(&Projections) -> R) -> R {
            self.inner.with_state(f)
        }

        fn subscribe(&self) -> events::store::Subscription {
            self.inner.subscribe()
        }
    }

    fn revoked_by_other(token: TokenId) -> Event {
        Event::TokenRevoked {
            token,
            by: p("other@example.com"),
            reason: "another call".into(),
        }
    }

    /// Tokens another call revoked between the listing and the entry: recorded again (the
    /// fold keeps the first) but not reported; all of them: the round lists again and finds
    /// nothing left; a plain revocation: refused, nothing appended.
    #[tokio::test]
    async fn tokens_revoked_meanwhile_are_not_reported_nor_block_the_rest() {
        let (_dir, store, root) = managing_root().await;
        let now = Timestamp(1);
        let mut children = Vec::new();
        for _ in 0..3 {
            let req = for_owner("root@example.com", &MANAGE);
            let made = create_token_as(&store, req, &root, now, intent(&root)).await;
            children.push(made.unwrap().id);
        }
        let meddled = |events: Vec<Event>| Meanwhile {
            inner: &store,
            meanwhile: std::sync::Mutex::new([events].into()),
        };
        let revoked_at =
            |id: TokenId| store.with_state(|s| s.tokens.get(&id).and_then(|t| t.revoked));

        // One child revoked meanwhile.
        let one = meddled(vec![revoked_by_other(children[1])]);
        let before = store.head().size;
        let r = revoke_tokens(
            &one,
            root.id,
            Reach::WithDescendants,
            p("system"),
            "x".into(),
        )
        .await
        .unwrap();
        assert!(r.complete);
        let mut rest = r.tokens[1..].to_vec();
        rest.sort();
        let mut expected = vec![children[0], children[2]];
        expected.sort();
        assert_eq!((r.tokens[0], rest), (root.id, expected));
        let first_at = revoked_at(children[1]);
        assert!(first_at.is_some());
        let recorded = store.read(before..u64::MAX).await.unwrap();
        let of_child: Vec<_> = recorded
            .iter()
            .filter(|r| matches!(&r.record.event, Event::TokenRevoked { token, .. } if *token == children[1]))
            .collect();
        assert_eq!(of_child.len(), 2, "the other call's, and this one's again");
        assert_eq!(
            r.seq.0,
            of_child[0].record.seq.0 + 1,
            "seq is this call's first record"
        );

        // A second tree, all of it revoked meanwhile: nothing appended by this call.
        let made = create_token_as(
            &store,
            for_owner("root@example.com", &MANAGE),
            &root,
            now,
            intent(&root),
        )
        .await;
        assert!(made.is_err(), "the root is revoked and makes no more");
        let other = caller(&store, "other@example.com", Role::Admin, &MANAGE).await;
        let kid = create_token_as(
            &store,
            for_owner("other@example.com", &MANAGE),
            &other,
            now,
            intent(&other),
        )
        .await
        .unwrap()
        .id;
        let all = meddled(vec![revoked_by_other(other.id), revoked_by_other(kid)]);
        let before = store.head().size;
        let refused = revoke_tokens(
            &all,
            other.id,
            Reach::WithDescendants,
            p("system"),
            "x".into(),
        )
        .await;
        assert!(
            matches!(&refused, Err(AdminError::Append(AppendError::Rejected(_)))),
            "{refused:?}"
        );
        assert_eq!(
            store.head().size,
            before + 2,
            "only the other call's records"
        );

        // A plain revocation of a token revoked meanwhile: refused, as before.
        let third = caller(&store, "third@example.com", Role::Admin, &MANAGE).await;
        let plain = meddled(vec![revoked_by_other(third.id)]);
        let before = store.head().size;
        let refused = revoke_tokens(&plain, third.id, Reach::Token, p("system"), "x".into()).await;
        assert!(
            matches!(&refused, Err(AdminError::Append(AppendError::Rejected(r))) if r.0 == "token already revoked"),
            "{refused:?}"
        );
        assert_eq!(store.head().size, before + 1);
    }

    /// Should other calls revoke what every round listed while more is made with the tree
    /// (written here straight to the log, past the rule that a revoked token makes none), the
    /// revocation ends refused as outraced (a token of the tree is still live), never as the
    /// log being unavailable.
    #[tokio::test]
    async fn rounds_all_raced_end_as_a_conflict() {
        let (_dir, store, root) = managing_root().await;
        let made = |n: u8| TokenId([0xA0 + n; 16]);
        let made_with_root = |n: u8| Event::TokenCreated {
            token: made(n),
            name: format!("made-{n}"),
            owner: p("root@example.com"),
            scopes: vec![Permission("convox:app:read".into())],
            secret_sha256: events::hash::Hash([n; 32]),
            expires: None,
            dev_only: false,
            by: p("root@example.com"),
            by_token: Some(root.id),
        };
        // Round 1 lists the root; each later round the token made during the one before.
        let mut rounds = std::collections::VecDeque::new();
        let mut listed = root.id;
        for n in 0..MAX_ROUNDS as u8 {
            rounds.push_back(vec![revoked_by_other(listed), made_with_root(n)]);
            listed = made(n);
        }
        let raced = Meanwhile {
            inner: &store,
            meanwhile: std::sync::Mutex::new(rounds),
        };
        let before = store.head().size;
        let refused = revoke_tokens(
            &raced,
            root.id,
            Reach::WithDescendants,
            p("system"),
            "x".into(),
        )
        .await;
        assert!(
            matches!(&refused, Err(AdminError::Append(AppendError::Rejected(r))) if r.0 == OUTRACED),
            "{refused:?}"
        );
        assert!(
            raced.meanwhile.lock().unwrap().is_empty(),
            "a round not run"
        );
        let last = made(MAX_ROUNDS as u8 - 1);
        assert!(
            store.with_state(|s| s.tokens.unrevoked(&last)),
            "the token made in the last round is live"
        );
        assert_eq!(
            store.head().size,
            before + 2 * MAX_ROUNDS as u64,
            "only the other calls' records"
        );
    }

    /// What the revocation tests' tokens may do: read apps, and make tokens.
    const MANAGE: [&str; 2] = ["convox:app:read", "gateway:token:manage"];

    /// `root` and the tokens made with it that are not revoked.
    fn unrevoked_in_tree(store: &Store, root: TokenId) -> Vec<TokenId> {
        store.with_state(|s| {
            std::iter::once(root)
                .chain(s.tokens.made_with(root))
                .filter(|id| s.tokens.unrevoked(id))
                .collect()
        })
    }

    /// A store whose admin holds a token that may make tokens: the root of a tree.
    async fn managing_root() -> (tempfile::TempDir, Store, Token) {
        let (dir, store) = open();
        let root = caller(&store, "root@example.com", Role::Admin, &MANAGE).await;
        (dir, store, root)
    }

    fn for_owner(owner: &str, scopes: &[&str]) -> TokenRequest {
        TokenRequest {
            owner: p(owner),
            scopes: scopes.iter().map(|s| Permission((*s).into())).collect(),
            ..request()
        }
    }

    #[tokio::test]
    async fn a_caller_mints_nothing_beyond_the_owner_or_itself() {
        let (_dir, store) = open();
        let now = Timestamp(1);
        let admin = caller(
            &store,
            "root@example.com",
            Role::Admin,
            &["convox:*:*", "gateway:token:manage"],
        )
        .await;
        grant_role(&store, p("viewer@example.com"), Role::Viewer, p("system"))
            .await
            .unwrap();
        // An admin's token that may manage tokens but reads apps and nothing else.
        let narrow = caller(
            &store,
            "lead@example.com",
            Role::Admin,
            &["convox:app:read", "gateway:token:manage"],
        )
        .await;
        // A deployer cannot manage tokens, whatever their token's scopes say.
        let deployer = caller(
            &store,
            "dep@example.com",
            Role::Deployer,
            &["convox:*:*", "gateway:token:manage"],
        )
        .await;
        grant_role(
            &store,
            p("deployer@example.com"),
            Role::Deployer,
            p("system"),
        )
        .await
        .unwrap();
        let before = store.head().size;
        let over_owner = create_token_as(
            &store,
            for_owner("viewer@example.com", &["convox:env:set"]),
            &admin,
            now,
            intent(&admin),
        )
        .await;
        assert!(matches!(
            over_owner,
            Err(AdminError::Exceeds { whose: Ceiling::Owner, permission }) if permission.0 == "convox:env:set"
        ));
        let nobody = create_token_as(
            &store,
            for_owner("nobody@example.com", &["convox:app:read"]),
            &admin,
            now,
            intent(&admin),
        )
        .await;
        assert!(matches!(
            nobody,
            Err(AdminError::Exceeds {
                whose: Ceiling::Owner,
                ..
            })
        ));
        let over_caller = create_token_as(
            &store,
            for_owner("deployer@example.com", &["convox:env:set"]),
            &narrow,
            now,
            intent(&narrow),
        )
        .await;
        assert!(matches!(
            over_caller,
            Err(AdminError::Exceeds { whose: Ceiling::Caller, permission }) if permission.0 == "convox:env:set"
        ));
        let not_a_manager = create_token_as(
            &store,
            for_owner("viewer@example.com", &["convox:app:read"]),
            &deployer,
            now,
            intent(&deployer),
        )
        .await;
        assert!(
            matches!(not_a_manager, Err(AdminError::CallerCannotManage)),
            "{not_a_manager:?}"
        );
        for bad in [
            &["convox:*:*"][..],
            &["convox:app:reed"],
            &["convox:app:read", "convox:app:read"],
        ] {
            assert!(matches!(
                create_token_as(&store, for_owner("viewer@example.com", bad), &admin, now, intent(&admin)).await,
                Err(AdminError::Invalid { field, .. }) if field.starts_with("scopes[")
            ));
        }
        assert_eq!(store.head().size, before, "refusals append nothing");
        let made = create_token_as(
            &store,
            for_owner("viewer@example.com", &["convox:app:read"]),
            &admin,
            now,
            intent(&admin),
        )
        .await
        .unwrap();
        let t = store
            .with_state(|s| s.tokens.get(&made.id).cloned())
            .unwrap();
        assert_eq!(t.owner, p("viewer@example.com"));
        assert!(!t.dev_only);
        revoke_token(&store, admin.id, p("system"), "gone".into())
            .await
            .unwrap();
        assert!(
            matches!(
                create_token_as(
                    &store,
                    for_owner("viewer@example.com", &["convox:app:read"]),
                    &admin,
                    now,
                    intent(&admin)
                )
                .await,
                Err(AdminError::CallerCannotManage)
            ),
            "a revoked caller is refused for that"
        );
    }

    /// The API's revocation is the calling token's act at the moment it is appended: a caller
    /// revoked or demoted while its request came in revokes nothing.
    #[tokio::test]
    async fn a_caller_revokes_only_while_it_may_manage_tokens() {
        let (_dir, store) = open();
        let now = Timestamp(1);
        let manage = ["convox:*:*", "gateway:token:manage"];
        let admin = caller(&store, "root@example.com", Role::Admin, &manage).await;
        let other = caller(&store, "other@example.com", Role::Admin, &manage).await;
        let victim = create_token(&store, request()).await.unwrap().id;
        let revoked_by = |id| store.with_state(|s| s.tokens.get(&id).and_then(|t| t.revoked));

        revoke_token(&store, other.id, p("system"), "gone".into())
            .await
            .unwrap();
        let before = store.head().size;
        let refused = revoke_token_as(
            &store,
            victim,
            Reach::Token,
            "x".into(),
            &other,
            now,
            intent(&other),
        )
        .await;
        assert!(
            matches!(&refused, Err(AdminError::Append(AppendError::Rejected(r))) if r.0 == CALLER_CANNOT_MANAGE),
            "{refused:?}"
        );
        assert_eq!(store.head().size, before, "a refusal appends nothing");
        assert_eq!(revoked_by(victim), None);

        let seq = revoke_token_as(
            &store,
            victim,
            Reach::Token,
            "rotated".into(),
            &admin,
            now,
            intent(&admin),
        )
        .await
        .unwrap()
        .seq;
        assert!(seq.0 >= before);
        assert!(revoked_by(victim).is_some());
    }

    #[tokio::test]
    async fn a_dev_only_caller_mints_dev_only_tokens_recorded_as_its_owner() {
        let (_dir, store) = open();
        grant_role(&store, p("dev@example.com"), Role::Admin, p("system"))
            .await
            .unwrap();
        let dev = create_token(
            &store,
            TokenRequest {
                owner: p("dev@example.com"),
                scopes: vec![
                    Permission("convox:*:*".into()),
                    Permission("gateway:token:manage".into()),
                ],
                dev_only: true,
                ..request()
            },
        )
        .await
        .unwrap();
        let dev = store
            .with_state(|s| s.tokens.get(&dev.id).cloned())
            .unwrap();
        let made = create_token_as(
            &store,
            for_owner("dev@example.com", &["convox:app:read"]),
            &dev,
            Timestamp(1),
            intent(&dev),
        )
        .await
        .unwrap();
        assert!(store.with_state(|s| s.tokens.get(&made.id).is_some_and(|t| t.dev_only)));
        let by = store
            .read(made.seq.0..made.seq.0 + 1)
            .await
            .unwrap()
            .into_iter()
            .find_map(|r| match r.record.event {
                Event::TokenCreated { by, .. } => Some(by),
                _ => None,
            });
        assert_eq!(by, Some(p("dev@example.com")));
    }

    /// Names an access review could not tell apart, and text that reorders a terminal's line,
    /// are refused; a refusal never repeats a token secret pasted into the wrong field.
    #[tokio::test]
    async fn lookalike_names_invisible_text_and_pasted_secrets_are_refused_unrepeated() {
        let (_dir, store) = open();
        let before = store.head().size;
        let secret = crate::identity::TokenSecret::generate().unwrap();
        let secret = secret.expose().to_owned();
        for owner in [
            "admin@example.com\u{200B}",
            "\u{430}dmin@example.com",
            "admin@ex\u{AD}ample.com",
            secret.as_str(),
        ] {
            let refused = create_token(
                &store,
                TokenRequest {
                    owner: p(owner),
                    ..request()
                },
            )
            .await;
            let Err(AdminError::Invalid { field, what }) = refused else {
                panic!("{owner:?}: {refused:?}");
            };
            assert_eq!(field, "owner");
            assert!(!what.contains(&secret), "{what}");
        }
        for name in ["ci\u{202E}nimda", "ci\u{2066}", "c\u{200D}i"] {
            assert!(
                matches!(
                    create_token(
                        &store,
                        TokenRequest {
                            name: name.to_owned(),
                            ..request()
                        },
                    )
                    .await,
                    Err(AdminError::Invalid { .. })
                ),
                "{name:?}"
            );
        }
        let scope = create_token(
            &store,
            TokenRequest {
                scopes: vec![Permission(secret.clone())],
                ..request()
            },
        )
        .await;
        let Err(AdminError::Invalid { what, .. }) = scope else {
            panic!("{scope:?}");
        };
        assert!(
            what.contains("[redacted]") && !what.contains(&secret),
            "{what}"
        );
        assert_eq!(store.head().size, before);
        // Text outside ASCII that shows as written is still a name.
        create_token(
            &store,
            TokenRequest {
                name: "déploiement nocturne".into(),
                ..request()
            },
        )
        .await
        .unwrap();
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
                Err(AdminError::Invalid { .. })
            ));
        }
        assert_eq!(store.head().size, before);
    }
}
