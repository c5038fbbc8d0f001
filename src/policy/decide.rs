//! Deciding: which route a canonical request is ([`route`]), and whether a caller's effective
//! permissions cover everything that route needs with these parameters ([`authorize`]).
//!
//! A caller's effective permissions are a [`Grant`]: for a person, the union of their roles'
//! permissions (`cicd` never counts for a person); for an API token, its scopes intersected with
//! its owner's *current* role permissions, so demoting or disabling the owner narrows or stops the
//! token at once. A token someone made for another owner through the API is also held within its
//! maker's current role permissions (and theirs up the chain of tokens that made it): its maker
//! received its secret, so disabling the maker stops it too. A disabled user, or the owner or
//! maker of a token being disabled, gives nothing.
//!
//! **Invariant:** a [`Permitted`] can only be built by [`authorize`] (its fields are private),
//! and only when every requirement of the route, the base permission and every [`ParamRule`]
//! that fires, is held. Denials carry a fixed [`DenyReason`] whose `kind()` is stable, for events
//! and answers.
//!
//! [`ParamRule`]: super::routes::ParamRule

use std::collections::BTreeSet;
use std::fmt;
use std::sync::LazyLock;

use events::event::{Permission, Principal, Role};
use projections::identities::Identities;
use projections::tokens::{Token, Tokens};

use super::canonical::{CanonicalPath, ParamError, PathError, TailError};
use super::perm_set::PermSet;
use super::permissions::Perm;
use super::routes::{Disposition, ROUTES, RouteRule, When};

/// A request matched to a route, with its path variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched {
    rule: &'static RouteRule,
    method: String,
    vars: Vec<(&'static str, String)>,
}

/// Why no route matched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unknown {
    /// No route has this method and path: answer an empty 404 (what the CLI expects) and
    /// record the denial; forward nothing.
    #[error("no rack route matches")]
    NoRoute,
    /// A wildcard route's prefix matched but its tail does not fit the tail grammar: answer 400
    /// (`invalid_path`, as for a path outside the path grammar) and record it.
    #[error("route {route}: {error}")]
    BadTail {
        route: &'static str,
        error: TailError,
    },
    /// `/apps/system/…` or `/apps/rack/…`: the rack's provider maps these names to the rack's
    /// own namespace (where its API runs with the rack password), and only newer racks refuse
    /// them. Treated as no route: an empty 404, recorded.
    #[error("{0} is reserved for the rack itself and names no app")]
    ReservedApp(&'static str),
}

/// App names a rack keeps for itself ([`Unknown::ReservedApp`]).
pub const RESERVED_APPS: [&str; 2] = ["system", "rack"];

/// Where a caller stands: their current roles, or disabled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    Active(BTreeSet<Role>),
    Disabled,
}

/// A caller's effective permissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    state: GrantState,
}

/// Proof that a matched request was authorized. Only [`authorize`] builds one, and it cannot be
/// cloned: one proof, one forwarded request.
#[derive(Debug, PartialEq, Eq)]
pub struct Permitted {
    rule: &'static RouteRule,
    vars: Vec<(&'static str, String)>,
    required: Vec<Perm>,
}

/// A refusal, with its fixed reason and the route when one matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    reason: DenyReason,
    route: Option<&'static str>,
}

/// Every reason a request is refused. `kind()` is the stable name recorded in events and sent
/// in answers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DenyReason {
    /// The caller (or the owner of the token) does not hold this permission.
    #[error("missing permission {0}")]
    MissingPermission(Permission),
    /// The token's owner holds the permission but the token's scopes do not include it.
    #[error("the token's scopes do not include {0}")]
    TokenScope(Permission),
    /// A person who made the token for its owner (with a token of theirs, through the API) is
    /// disabled: they received its secret, so the token ends with their access
    /// ([`Grant::of_token`]).
    #[error(
        "the person who made this token for its owner is disabled; a gateway admin makes the owner a new token"
    )]
    MakerDisabled,
    /// The person who made the token for its owner no longer holds the permission.
    #[error(
        "the person who made this token for its owner no longer holds {0}; a gateway admin makes the owner a new token"
    )]
    MakerLacks(Permission),
    /// The user, or the owner of the token, is disabled.
    #[error("the user is disabled")]
    UserDisabled,
    /// A person holds only `cicd`, a role for tokens.
    #[error("cicd is a role for API tokens, not for people")]
    RoleNotForUsers,
    /// The user, or the owner of the token, holds no role.
    #[error("no role is granted")]
    NoRole,
    /// No route of the rack matches.
    #[error("no rack route matches")]
    UnknownRoute,
    /// The path was refused before matching.
    #[error("invalid path: {0}")]
    InvalidPath(PathError),
    /// A wildcard tail does not fit its grammar.
    #[error("invalid path: {0}")]
    InvalidTail(TailError),
    /// The parameters were refused.
    #[error("invalid parameters: {0}")]
    InvalidParams(ParamError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum GrantState {
    /// Nothing is allowed, for this reason.
    Refused(DenyReason),
    User {
        perms: PermSet,
    },
    Token {
        /// The owner's current permissions.
        owner: PermSet,
        /// The permissions the token's scopes name.
        scoped: PermSet,
        /// What every person who may have held a secret that minted the token holds now (the
        /// intersection); `None` when there is none but its owner ([`Tokens::makers`]).
        maker: Option<PermSet>,
    },
}

// === impl Matched ===

impl Matched {
    pub fn rule(&self) -> &'static RouteRule {
        self.rule
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    /// Path variables in pattern order; a wildcard tail's value is its segments joined by `/`.
    pub fn vars(&self) -> &[(&'static str, String)] {
        &self.vars
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the gateway answers this request itself (an empty 404, recorded at info level).
    pub fn answered_locally(&self) -> bool {
        self.rule.disposition == Disposition::AnswerLocally
    }

    /// Whether the route is a WebSocket: a GET without `Upgrade: websocket` to it is unknown at
    /// the rack (404), and must be treated as [`Unknown::NoRoute`] by the caller.
    pub fn expects_upgrade(&self) -> bool {
        self.rule.websocket
    }
}

// === impl Unknown ===

impl Unknown {
    pub fn kind(&self) -> &'static str {
        match self {
            Unknown::NoRoute => "unknown_route",
            Unknown::BadTail { .. } => "invalid_path",
            Unknown::ReservedApp(_) => "reserved_app",
        }
    }
}

// === impl Standing ===

impl Standing {
    /// Where `who` stands in the role table now.
    pub fn of(identities: &Identities, who: &Principal) -> Standing {
        if identities.is_disabled(who) {
            Standing::Disabled
        } else {
            Standing::Active(identities.roles(who))
        }
    }
}

// === impl Grant ===

impl Grant {
    /// A person's grant: the union of their roles. `cicd` does not count for a person; someone
    /// holding nothing else is refused with [`DenyReason::RoleNotForUsers`].
    pub fn for_user(standing: &Standing) -> Grant {
        let roles = match standing {
            Standing::Disabled => return Grant::refused(DenyReason::UserDisabled),
            Standing::Active(roles) => roles,
        };
        let people: Vec<Role> = roles.iter().copied().filter(|r| *r != Role::Cicd).collect();
        if people.is_empty() {
            let reason = if roles.contains(&Role::Cicd) {
                DenyReason::RoleNotForUsers
            } else {
                DenyReason::NoRole
            };
            return Grant::refused(reason);
        }
        let perms = people
            .into_iter()
            .fold(PermSet::EMPTY, |s, r| s.union(PermSet::of_role(r)));
        Grant {
            state: GrantState::User { perms },
        }
    }

    /// A token's grant: its scopes intersected with its owner's current permissions, and with
    /// those of each of `makers` (see [`Grant::of_token`]).
    ///
    /// A scope is a permission string, or one with `*` segments (`convox:app:*`); a scope that
    /// names nothing in the catalogue grants nothing. The owner's roles count in full here,
    /// `cicd` included, because `cicd` is a role for tokens; so do the makers'.
    pub fn for_token(scopes: &[Permission], owner: &Standing, makers: &[Standing]) -> Grant {
        let owner = match Grant::token_owner(owner) {
            Ok(held) => held,
            Err(reason) => return Grant::refused(reason),
        };
        let mut maker = None;
        for m in makers {
            let held = match m {
                Standing::Disabled => return Grant::refused(DenyReason::MakerDisabled),
                Standing::Active(roles) => roles
                    .iter()
                    .fold(PermSet::EMPTY, |s, r| s.union(PermSet::of_role(*r))),
            };
            maker = Some(maker.map_or(held, |m: PermSet| m.intersection(held)));
        }
        let scoped = PermSet::of_scopes(scopes);
        Grant {
            state: GrantState::Token {
                owner,
                scoped,
                maker,
            },
        }
    }

    /// What `token` grants now, by the token and role tables.
    ///
    /// Bounded by its owner's standing and by that of each person who may have held a secret
    /// that minted it ([`Tokens::makers`]: the owners of the tokens it was made with through
    /// the API, up the chain). Whoever made a token for someone else was handed its secret, so
    /// a person disabled or demoted loses what they could do through the tokens they made for
    /// others (a CI principal's, typically), and through what those made, not only through
    /// their own: offboarding someone stops every secret they were handed. A gateway admin
    /// makes a CI token anew before disabling its maker.
    pub fn of_token(token: &Token, tokens: &Tokens, identities: &Identities) -> Grant {
        let makers: Vec<Standing> = tokens
            .makers(token)
            .into_iter()
            .map(|m| Standing::of(identities, m))
            .collect();
        Grant::for_token(
            &token.scopes,
            &Standing::of(identities, &token.owner),
            &makers,
        )
    }

    /// What a token's owner holds, the bound of each of their tokens' grants: the union of
    /// their roles, `cicd` included; refused when they are disabled or hold no role.
    pub fn token_owner(owner: &Standing) -> Result<PermSet, DenyReason> {
        match owner {
            Standing::Disabled => Err(DenyReason::UserDisabled),
            Standing::Active(roles) if roles.is_empty() => Err(DenyReason::NoRole),
            Standing::Active(roles) => Ok(roles
                .iter()
                .fold(PermSet::EMPTY, |s, r| s.union(PermSet::of_role(*r)))),
        }
    }

    fn refused(reason: DenyReason) -> Grant {
        Grant {
            state: GrantState::Refused(reason),
        }
    }

    /// The effective permissions.
    pub fn permissions(&self) -> BTreeSet<Perm> {
        self.set().to_btree()
    }

    /// The effective permissions as a [`PermSet`].
    pub fn set(&self) -> PermSet {
        match &self.state {
            GrantState::Refused(_) => PermSet::EMPTY,
            GrantState::User { perms } => *perms,
            GrantState::Token {
                owner,
                scoped,
                maker,
            } => {
                let held = owner.intersection(*scoped);
                maker.map_or(held, |m| held.intersection(m))
            }
        }
    }

    /// Whether the grant holds `perm`.
    pub fn holds(&self, perm: Perm) -> bool {
        self.check(perm).is_ok()
    }

    /// Why the grant does not hold `perm` (`Ok` when it does): the gateway API refuses with
    /// the same reasons the proxy records.
    pub fn check(&self, perm: Perm) -> Result<(), DenyReason> {
        match &self.state {
            GrantState::Refused(reason) => Err(reason.clone()),
            GrantState::User { perms } if perms.contains(perm) => Ok(()),
            GrantState::User { .. } => Err(DenyReason::MissingPermission(perm.to_permission())),
            GrantState::Token { owner, .. } if !owner.contains(perm) => {
                Err(DenyReason::MissingPermission(perm.to_permission()))
            }
            GrantState::Token { scoped, .. } if !scoped.contains(perm) => {
                Err(DenyReason::TokenScope(perm.to_permission()))
            }
            GrantState::Token {
                maker: Some(maker), ..
            } if !maker.contains(perm) => Err(DenyReason::MakerLacks(perm.to_permission())),
            GrantState::Token { .. } => Ok(()),
        }
    }
}

// === impl Permitted ===

impl Permitted {
    pub fn rule(&self) -> &'static RouteRule {
        self.rule
    }

    pub fn vars(&self) -> &[(&'static str, String)] {
        &self.vars
    }

    /// Every permission the request needed: the base first, then each rule that fired.
    pub fn required(&self) -> &[Perm] {
        &self.required
    }

    /// The permission to record: the last requirement (the base when no rule fired).
    pub fn permission(&self) -> Perm {
        self.required
            .last()
            .copied()
            .unwrap_or(self.rule.permission)
    }
}

// === impl Denied ===

impl Denied {
    pub fn reason(&self) -> &DenyReason {
        &self.reason
    }

    /// The route's name, when a route matched.
    pub fn route(&self) -> Option<&'static str> {
        self.route
    }

    pub fn kind(&self) -> &'static str {
        self.reason.kind()
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.route {
            Some(r) => write!(f, "{r}: {}", self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl std::error::Error for Denied {}

impl From<PathError> for Denied {
    fn from(e: PathError) -> Denied {
        Denied {
            reason: DenyReason::InvalidPath(e),
            route: None,
        }
    }
}

impl From<Unknown> for Denied {
    fn from(e: Unknown) -> Denied {
        match e {
            Unknown::NoRoute | Unknown::ReservedApp(_) => Denied {
                reason: DenyReason::UnknownRoute,
                route: None,
            },
            Unknown::BadTail { route, error } => Denied {
                reason: DenyReason::InvalidTail(error),
                route: Some(route),
            },
        }
    }
}

impl Denied {
    /// A refusal of `matched`'s parameters.
    pub fn params(matched: &Matched, e: ParamError) -> Denied {
        Denied {
            reason: DenyReason::InvalidParams(e),
            route: Some(matched.rule.name),
        }
    }
}

// === impl DenyReason ===

impl DenyReason {
    /// The stable name: `permission_denied`, `token_scope`, `maker_disabled`,
    /// `maker_permission`, `user_disabled`,
    /// `role_not_for_users`, `no_role`, `unknown_route`, `invalid_path` or `invalid_params`.
    pub fn kind(&self) -> &'static str {
        match self {
            DenyReason::MissingPermission(_) => "permission_denied",
            DenyReason::TokenScope(_) => "token_scope",
            DenyReason::MakerDisabled => "maker_disabled",
            DenyReason::MakerLacks(_) => "maker_permission",
            DenyReason::UserDisabled => "user_disabled",
            DenyReason::RoleNotForUsers => "role_not_for_users",
            DenyReason::NoRole => "no_role",
            DenyReason::UnknownRoute => "unknown_route",
            DenyReason::InvalidPath(_) | DenyReason::InvalidTail(_) => "invalid_path",
            DenyReason::InvalidParams(_) => "invalid_params",
        }
    }
}

// === Deciding ===

/// One segment of a route pattern, parsed once.
enum PatSeg {
    Literal(&'static str),
    /// `{name}` with an optional literal suffix (`{key}.tgz`).
    Var {
        name: &'static str,
        suffix: &'static str,
    },
    /// `{*name}`: the rest of the path, checked by the route's tail grammar.
    Tail(&'static str),
}

/// Every route's pattern as segments, in [`ROUTES`] order: parsed once, because matching runs
/// on every request and the table is constant.
static PATTERNS: LazyLock<Vec<Vec<PatSeg>>> = LazyLock::new(|| {
    ROUTES
        .iter()
        .map(|rule| {
            rule.path
                .get(1..)
                .unwrap_or("")
                .split('/')
                .map(|pat| {
                    if let Some(name) = pat.strip_prefix("{*").and_then(|p| p.strip_suffix('}')) {
                        PatSeg::Tail(name)
                    } else if let Some((name, suffix)) = pat
                        .strip_prefix('{')
                        .and_then(|inner| inner.split_once('}'))
                    {
                        PatSeg::Var { name, suffix }
                    } else {
                        PatSeg::Literal(pat)
                    }
                })
                .collect()
        })
        .collect()
});

/// The methods an `ANY` route (the registry and in-cluster HTTP proxies) takes: what a Go
/// HTTP client sends. `CONNECT` is not one: hyper's client rewrites its target to the rack's
/// authority, so the path that was authorized and recorded would not be the one sent, and a 2xx
/// would turn the connection into a tunnel; `TRACE` would echo the gateway's upstream headers,
/// the rack's credentials among them, back to the caller. Others (extension methods) name
/// nothing the rack serves.
pub const ANY_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The route of a canonical request, first match in [`ROUTES`] order.
pub fn route(method: &str, path: &CanonicalPath) -> Result<Matched, Unknown> {
    let segments: Vec<&str> = path.segments().collect();
    if let ["apps", app, ..] = segments.as_slice()
        && let Some(reserved) = RESERVED_APPS.iter().find(|r| *r == app)
    {
        return Err(Unknown::ReservedApp(reserved));
    }
    for (rule, pattern) in ROUTES.iter().zip(PATTERNS.iter()) {
        if rule.disposition == Disposition::Unreachable {
            continue;
        }
        let method_fits = if rule.method == "ANY" {
            ANY_METHODS.contains(&method)
        } else {
            rule.method == method
        };
        if !method_fits {
            continue;
        }
        match match_pattern(rule, pattern, &segments) {
            None => continue,
            Some(Err(error)) => {
                return Err(Unknown::BadTail {
                    route: rule.name,
                    error,
                });
            }
            Some(Ok(vars)) => {
                return Ok(Matched {
                    rule,
                    method: method.to_owned(),
                    vars,
                });
            }
        }
    }
    Err(Unknown::NoRoute)
}

type Vars = Vec<(&'static str, String)>;

fn match_pattern(
    rule: &'static RouteRule,
    pattern: &[PatSeg],
    segments: &[&str],
) -> Option<Result<Vars, TailError>> {
    // Without a tail the lengths must agree; checking first spares most routes any work.
    let has_tail = matches!(pattern.last(), Some(PatSeg::Tail(_)));
    if !has_tail && segments.len() != pattern.len() {
        return None;
    }
    // Literals next: most candidates of the right length fail on one, before any allocation.
    for (pat, segment) in pattern.iter().zip(segments) {
        if let PatSeg::Literal(lit) = pat
            && segment != lit
        {
            return None;
        }
    }
    let mut vars = Vec::new();
    for (i, pat) in pattern.iter().enumerate() {
        match pat {
            PatSeg::Tail(name) => {
                // A tail starts after a `/`: the bare prefix (`/apps/x/objects`) is another route.
                let tail = segments.get(i..).filter(|t| !t.is_empty())?;
                let grammar = rule.tail?;
                return Some(grammar.check(tail).map(|()| {
                    vars.push((*name, tail.join("/")));
                    vars
                }));
            }
            PatSeg::Var { name, suffix } => {
                let value = segments.get(i)?.strip_suffix(suffix)?;
                if value.is_empty() {
                    return None;
                }
                vars.push((*name, value.to_owned()));
            }
            PatSeg::Literal(lit) => {
                if segments.get(i) != Some(lit) {
                    return None;
                }
            }
        }
    }
    (segments.len() == pattern.len()).then_some(Ok(vars))
}

/// Every permission `matched` needs with these parameters: the base, then each rule that fires.
pub fn requirements(matched: &Matched, params: &dyn Fn(&str) -> Option<String>) -> Vec<Perm> {
    let mut required = vec![matched.rule.permission];
    for rule in matched.rule.rules {
        let fires = match &rule.when {
            When::Present(k) => params(k).is_some(),
            When::PresentNotIn(k, values) => {
                params(k).is_some_and(|v| !values.contains(&v.as_str()))
            }
            When::AbsentOrNotIn(k, values) => {
                params(k).is_none_or(|v| !values.contains(&v.as_str()))
            }
            When::VarNotEq(name, value) => matched.var(name) != Some(*value),
            When::VarNotUnder(name, prefix) => !matched
                .var(name)
                .and_then(|v| v.strip_prefix(prefix))
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/')),
            When::MethodNotIn(methods) => !methods.contains(&matched.method.as_str()),
            When::Always => true,
        };
        if fires && !required.contains(&rule.require) {
            required.push(rule.require);
        }
    }
    required
}

/// Authorizes `matched` with its canonical parameters (`params` looks one up by its allow-list
/// name) for a caller whose effective permissions are `grant`.
pub fn authorize(
    matched: &Matched,
    params: &dyn Fn(&str) -> Option<String>,
    grant: &Grant,
) -> Result<Permitted, Denied> {
    let required = requirements(matched, params);
    for perm in &required {
        grant.check(*perm).map_err(|reason| Denied {
            reason,
            route: Some(matched.rule.name),
        })?;
    }
    Ok(Permitted {
        rule: matched.rule,
        vars: matched.vars.clone(),
        required,
    })
}

#[cfg(test)]
mod tests;
