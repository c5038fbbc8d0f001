//! Who may call the gateway API, and how each call is recorded: the per-address limit, the
//! token authentication the rack proxy runs (`Bearer` only here), and the gateway permission
//! every endpoint needs; then the call's `CommandRequested` when it is refused or read-only.
//!
//! **Invariant:** the order is limit, authenticate, authorize, and a refusal leaves before the
//! next step. As on the proxy, unauthenticated refusals are counted per address, reason and
//! minute (`DenialsCounted`, through the shared [`Flood`](crate::proxy::flood::Flood)), never
//! one event each; authenticated refusals are one `CommandRequested` each, with decision
//! `deny`, durable before the answer (503 when the log cannot take it).

use std::net::{IpAddr, SocketAddr};

use events::event::{Decision, Event, Permission};
use events::store::EventStore;
use events::time::Timestamp;
use http::{HeaderMap, HeaderValue, header};
use projections::tokens::Token;

use super::ConsoleState;
use super::respond::ApiError;
use crate::identity::credentials::Schemes;
use crate::identity::{TokenCall, authenticate};
use crate::policy::{Grant, Perm};

/// The permission every endpoint of the token API needs.
pub const TOKEN_MANAGE: Perm = Perm::GatewayTokenManage;

/// One call to the API: what its records carry.
pub struct Call {
    pub request_id: String,
    pub ip: IpAddr,
    pub user_agent: String,
    pub method: String,
    /// The path as recorded: the route's, with the token id when it is well formed.
    pub path: String,
    pub now: Timestamp,
}

/// An authenticated caller whose effective permissions include [`TOKEN_MANAGE`].
pub struct Caller {
    pub token: Token,
    /// The caller's effective permissions: its scopes within its owner's current roles, and
    /// within its makers' ([`Grant::of_token`]).
    pub grant: Grant,
}

// === impl Call ===

impl Call {
    pub fn new(
        state: &ConsoleState,
        peer: SocketAddr,
        headers: &HeaderMap,
        method: &str,
        path: String,
        now: Timestamp,
    ) -> Call {
        let user_agent = crate::proxy::redact::user_agent(headers);
        Call {
            request_id: state.ids.next(),
            ip: state.client_ip(peer, headers),
            user_agent,
            method: method.to_owned(),
            path,
            now,
        }
    }

    /// Counts a refusal that is not recorded one by one: the caller is not authenticated.
    pub fn count(&self, state: &ConsoleState, reason: &'static str) {
        state.flood.count_denial(self.ip, reason, self.now);
    }

    /// The `CommandRequested` of this call by `caller`; no permission for a path that is no
    /// route.
    fn event(
        &self,
        caller: &Caller,
        permission: Option<Permission>,
        decision: Decision,
        reason: &str,
        params: Vec<(String, String)>,
    ) -> Event {
        TokenCall {
            request_id: &self.request_id,
            token: &caller.token,
            ip: self.ip,
            user_agent: &self.user_agent,
        }
        .requested(
            &self.method,
            &self.path,
            permission,
            decision,
            reason,
            params,
        )
    }

    /// Records an authenticated refusal (one event), then returns `refusal` to answer with; if
    /// the log cannot take the record, the answer is 503 instead.
    pub async fn deny(
        &self,
        state: &ConsoleState,
        caller: &Caller,
        permission: Option<Permission>,
        params: Vec<(String, String)>,
        refusal: ApiError,
    ) -> ApiError {
        let event = self.event(caller, permission, Decision::Deny, refusal.kind(), params);
        match state.store.append(vec![event]).await {
            Ok(_) => refusal,
            Err(_) => ApiError::AuditUnavailable,
        }
    }

    /// The `CommandRequested` of an allowed call by `caller` with `params`, for a change that
    /// appends it in one entry with its own event (a token created or revoked).
    pub fn allowed(&self, caller: &Caller, params: Vec<(String, String)>) -> Event {
        self.event(
            caller,
            Some(TOKEN_MANAGE.to_permission()),
            Decision::Allow,
            "",
            params,
        )
    }

    /// Records an allowed call that changes nothing (a read), before it is answered.
    pub async fn allow(&self, state: &ConsoleState, caller: &Caller) -> Result<(), ApiError> {
        let event = self.allowed(caller, Vec::new());
        state
            .store
            .append(vec![event])
            .await
            .map(|_| ())
            .map_err(|_| ApiError::AuditUnavailable)
    }
}

/// Limits, authenticates and authorizes `call`: the caller, or the refusal to answer with
/// (already counted or recorded).
pub async fn admit(
    state: &ConsoleState,
    call: &Call,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let caller = identify(state, call, headers)?;
    if let Err(reason) = caller.grant.check(TOKEN_MANAGE) {
        let refusal = ApiError::Forbidden {
            kind: reason.kind(),
            what: format!("{reason}; managing tokens needs {TOKEN_MANAGE}"),
        };
        return Err(call
            .deny(
                state,
                &caller,
                Some(TOKEN_MANAGE.to_permission()),
                Vec::new(),
                refusal,
            )
            .await);
    }
    Ok(caller)
}

/// Limits and authenticates `call`, without asking for any permission: the caller, or the
/// refusal to answer with (already counted).
pub fn identify(
    state: &ConsoleState,
    call: &Call,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    if !state.flood.allow(call.ip, call.now) {
        return Err(ApiError::RateLimited);
    }
    let values: Vec<&[u8]> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let token = authenticate::token(
        &*state.store,
        &values,
        Schemes::BearerOnly,
        call.now,
        state.accepts_dev_tokens,
    )
    .map_err(|e| {
        call.count(state, e.reason());
        ApiError::Unauthenticated(e.reason())
    })?;
    let grant = state
        .store
        .with_state(|s| Grant::of_token(&token, &s.tokens, &s.identities));
    Ok(Caller { token, grant })
}
