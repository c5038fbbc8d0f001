//! The token API: create, list and revoke API tokens on a running gateway.
//!
//! | Route | Body | Answer |
//! |---|---|---|
//! | `POST /api/v1/tokens` | [`CreateTokenBody`] | 201 [`TokenCreatedBody`]: the secret, once |
//! | `GET /api/v1/tokens` | none | 200 [`TokenListBody`]: never secrets or hashes |
//! | `DELETE /api/v1/tokens/{id}` | [`RevokeTokenBody`] | 200 [`TokenRevokedBody`] |
//!
//! Refusals ([`ApiError`]): 429 over the address's limit; 401 without a usable bearer token
//! (counted); 403 without `gateway:token:manage`, or when the new token's scopes reach beyond
//! its owner's or the caller's current permissions or it would outlive the caller's token
//! (recorded); 400 for malformed content (not
//! JSON, unknown fields, an unknown permission, a bad id, an expiry out of range) and 413 for
//! an oversized body, recorded as the caller's denial with where it went wrong and nothing of
//! the content (the caller is known by then, and every authenticated denial is recorded one by
//! one); 404 and 409
//! for revoking a token that does not exist or is already revoked (recorded), and 409
//! `revocation_incomplete` when a revocation with descendants landed but did not reach every
//! token (see `admin::revoke`); 503 when the log cannot record the call. Any other method or
//! path of the listener is a 404 `unknown_route` ([`super::unknown_route`]): recorded when the
//! caller is authenticated, counted when not.
//!
//! **Invariant:** a change is appended only through `identity::admin` (the existing
//! `TokenCreated` and `TokenRevoked`, with the caller's owner as `by`), after the caller is
//! admitted and the content is valid; a list is recorded as an allowed `CommandRequested`
//! before it is answered.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::get;
use events::event::{Permission, Principal, TokenId};
use events::store::{AppendError, EventStore};
use events::time::Clock;
use http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::ConsoleState;
use super::api::{
    CreateTokenBody, MAX_EXPIRY_DAYS, RevokeTokenBody, TokenCreatedBody, TokenListBody,
    TokenRevokedBody, TokenView,
};
use super::auth::{self, Call, Caller, TOKEN_MANAGE};
use super::respond::{Answer, ApiError};
use crate::identity::admin::{self, AdminError, Ceiling, Reach, TokenRequest};
use crate::proxy::redact;

/// The collection's path.
pub const TOKENS: &str = "/api/v1/tokens";
/// The largest request body read: a create names at most the catalogue's permissions.
pub const MAX_BODY: usize = 16 * 1024;
/// How long a request body may take to arrive.
const BODY_WAIT: Duration = Duration::from_secs(30);
/// The token routes, each beside its handler.
pub fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route(TOKENS, get(tokens_get).post(tokens_post))
        .route("/api/v1/tokens/{id}", axum::routing::delete(token_delete))
}

/// `POST /api/v1/tokens`.
pub async fn tokens_post(
    State(state): State<Arc<ConsoleState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: Request,
) -> Response {
    let call = Call::new(
        &state,
        peer,
        req.headers(),
        "POST",
        TOKENS.to_owned(),
        Clock.now(),
    );
    let request_id = call.request_id.clone();
    Answer::of(
        create(&state, &call, req).await,
        StatusCode::CREATED,
        request_id,
    )
}

/// `GET /api/v1/tokens` (and `HEAD`, which the router sends here too: recorded as sent).
pub async fn tokens_get(
    State(state): State<Arc<ConsoleState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    method: http::Method,
    headers: HeaderMap,
) -> Response {
    let call = Call::new(
        &state,
        peer,
        &headers,
        method.as_str(),
        TOKENS.to_owned(),
        Clock.now(),
    );
    let request_id = call.request_id.clone();
    Answer::of(
        list(&state, &call, &headers).await,
        StatusCode::OK,
        request_id,
    )
}

/// `DELETE /api/v1/tokens/{id}`. The id is read from the raw path, after admission, so a
/// malformed one is refused in the API's own terms and never before the caller is known.
pub async fn token_delete(
    State(state): State<Arc<ConsoleState>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: Request,
) -> Response {
    let id = req
        .uri()
        .path()
        .strip_prefix(TOKENS)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(parse_id);
    let path = match id {
        Some(id) => format!("{TOKENS}/{id}"),
        None => format!("{TOKENS}/{{id}}"),
    };
    let call = Call::new(&state, peer, req.headers(), "DELETE", path, Clock.now());
    let request_id = call.request_id.clone();
    Answer::of(
        revoke(&state, &call, id, req).await,
        StatusCode::OK,
        request_id,
    )
}

async fn create(
    state: &ConsoleState,
    call: &Call,
    req: Request,
) -> Result<TokenCreatedBody, ApiError> {
    let (parts, body) = req.into_parts();
    let caller = auth::admit(state, call, &parts.headers).await?;
    let body: CreateTokenBody = read_json(state, call, &caller, &parts.headers, body).await?;
    let expires = match body.expires_in_days {
        None => None,
        Some(days) if (1..=MAX_EXPIRY_DAYS).contains(&days) => {
            Some(call.now.plus(Duration::from_secs(days * 86_400)))
        }
        Some(days) => {
            return Err(malformed(
                state,
                call,
                &caller,
                "invalid_field",
                format!("an expiry is 1 to {MAX_EXPIRY_DAYS} days, not {days}"),
                "expires_in_days",
            )
            .await);
        }
    };
    let params = vec![
        ("name".to_owned(), body.name.clone()),
        ("owner".to_owned(), body.owner.clone()),
        ("scopes".to_owned(), body.scopes.join(",")),
        (
            "expires_in_days".to_owned(),
            body.expires_in_days
                .map(|d| d.to_string())
                .unwrap_or_default(),
        ),
    ];
    let request = TokenRequest {
        name: body.name,
        owner: Principal(body.owner),
        scopes: body.scopes.into_iter().map(Permission).collect(),
        expires,
        dev_only: false,
        by: caller.token.owner.clone(),
    };
    let intent = call.allowed(&caller, params.clone());
    let e = match admin::create_token_as(&*state.store, request, &caller.token, call.now, intent)
        .await
    {
        Ok(created) => {
            return Ok(TokenCreatedBody {
                id: created.id.to_hex(),
                token: created.secret.expose().to_owned(),
                seq: created.seq.0,
            });
        }
        Err(e) => e,
    };
    let (permission, kind) = match &e {
        AdminError::Invalid { field, what } => {
            return Err(
                malformed(state, call, &caller, "invalid_field", what.clone(), field).await,
            );
        }
        AdminError::Exceeds {
            whose: Ceiling::Owner,
            permission,
        } => (permission.clone(), "beyond_owner_permissions"),
        AdminError::Exceeds {
            whose: Ceiling::Caller,
            permission,
        } => (permission.clone(), "beyond_caller_permissions"),
        AdminError::Outlives { .. } => (TOKEN_MANAGE.to_permission(), "beyond_caller_expiry"),
        // The caller was revoked, expired or demoted while its request came in (seen before
        // the append, or by its guard).
        AdminError::CallerCannotManage | AdminError::Append(AppendError::Rejected(_)) => {
            (TOKEN_MANAGE.to_permission(), "beyond_current_permissions")
        }
        AdminError::Append(_) => return Err(ApiError::AuditUnavailable),
        AdminError::Token(_) => return Err(ApiError::Internal),
    };
    let refusal = ApiError::Forbidden {
        kind,
        what: e.to_string(),
    };
    Err(call
        .deny(state, &caller, Some(permission), params, refusal)
        .await)
}

async fn list(
    state: &ConsoleState,
    call: &Call,
    headers: &HeaderMap,
) -> Result<TokenListBody, ApiError> {
    let caller = auth::admit(state, call, headers).await?;
    call.allow(state, &caller).await?;
    let tokens = state.store.with_state(|s| {
        s.tokens
            .iter()
            .map(|t| TokenView::of(t, &s.tokens, &s.identities, call.now))
            .collect()
    });
    Ok(TokenListBody { tokens })
}

async fn revoke(
    state: &ConsoleState,
    call: &Call,
    id: Option<TokenId>,
    req: Request,
) -> Result<TokenRevokedBody, ApiError> {
    let (parts, body) = req.into_parts();
    let caller = auth::admit(state, call, &parts.headers).await?;
    let Some(id) = id else {
        return Err(malformed(
            state,
            call,
            &caller,
            "invalid_id",
            "a token id is 32 lowercase hex digits, as the list shows it".into(),
            "id",
        )
        .await);
    };
    let body: RevokeTokenBody = read_json(state, call, &caller, &parts.headers, body).await?;
    let reason = body.reason;
    let reach = if body.with_descendants {
        Reach::WithDescendants
    } else {
        Reach::Token
    };
    // Checked before anything is recorded: the refusal records where, not the text.
    if let Err(AdminError::Invalid { field, what }) =
        admin::check_free_text("reason", "a reason", &reason, admin::MAX_REASON)
    {
        return Err(malformed(state, call, &caller, "invalid_field", what, &field).await);
    }
    let mut params = vec![
        ("id".to_owned(), id.to_hex()),
        ("reason".to_owned(), reason.clone()),
    ];
    if body.with_descendants {
        params.push(("with_descendants".to_owned(), "true".to_owned()));
    }
    let refusal = state.store.with_state(|s| match s.tokens.get(&id) {
        None => Some(ApiError::NotFound(format!("no token has the id {id}"))),
        Some(_) => admin::revocable(s, id, reach).err().map(|_| {
            ApiError::AlreadyRevoked(match reach {
                Reach::Token => format!("token {id} is already revoked"),
                Reach::WithDescendants => {
                    format!("token {id} and every token made with it are already revoked")
                }
            })
        }),
    });
    if let Some(refusal) = refusal {
        return Err(call
            .deny(
                state,
                &caller,
                Some(TOKEN_MANAGE.to_permission()),
                params,
                refusal,
            )
            .await);
    }
    let intent = call.allowed(&caller, params.clone());
    // A task of its own: a revocation with descendants may take several entries, and the
    // caller going away after the first must not leave the rest undone.
    let (store, token, now) = (state.store.clone(), caller.token.clone(), call.now);
    let revoking = tokio::spawn(async move {
        admin::revoke_token_as(&*store, id, reach, reason, &token, now, intent).await
    });
    let Ok(revoked) = revoking.await else {
        return Err(ApiError::Internal);
    };
    match revoked {
        Ok(revoked) if revoked.complete => Ok(TokenRevokedBody {
            id: id.to_hex(),
            seq: revoked.seq.0,
            revoked: revoked.tokens.iter().map(TokenId::to_hex).collect(),
        }),
        // Recorded as they landed; the caller must know that some were not reached.
        Ok(revoked) => Err(ApiError::RevocationIncomplete(
            revoked.unfinished(id, "with_descendants"),
        )),
        Err(AdminError::Append(AppendError::Rejected(r))) => {
            let refusal = if r.0 == admin::CALLER_CANNOT_MANAGE {
                // The caller was revoked, expired or demoted while its request came in.
                ApiError::Forbidden {
                    kind: "beyond_current_permissions",
                    what: format!("token {id} was not revoked: {r}"),
                }
            } else if r.0 == admin::OUTRACED {
                // Tokens of the tree are still live: not `already_revoked`.
                ApiError::RevocationIncomplete(format!("token {id}: {r} with with_descendants"))
            } else {
                // A revocation that raced this one was sequenced first.
                ApiError::AlreadyRevoked(format!("token {id}: {r}"))
            };
            Err(call
                .deny(
                    state,
                    &caller,
                    Some(TOKEN_MANAGE.to_permission()),
                    params,
                    refusal,
                )
                .await)
        }
        Err(AdminError::Append(_)) => Err(ApiError::AuditUnavailable),
        Err(_) => Err(ApiError::Internal),
    }
}

/// A refusal of malformed content from an authenticated caller: recorded one by one, as every
/// authenticated denial is, with where the content went wrong and nothing of the content.
async fn malformed(
    state: &ConsoleState,
    call: &Call,
    caller: &Caller,
    kind: &'static str,
    what: String,
    at: &str,
) -> ApiError {
    let refusal = ApiError::BadRequest {
        kind,
        what,
        at: Some(at.to_owned()),
    };
    refused(state, call, caller, at, refusal).await
}

/// Records `refusal` of the caller's malformed content (`at` says where) and answers it.
async fn refused(
    state: &ConsoleState,
    call: &Call,
    caller: &Caller,
    at: &str,
    refusal: ApiError,
) -> ApiError {
    let params = vec![("at".to_owned(), at.to_owned())];
    call.deny(
        state,
        caller,
        Some(TOKEN_MANAGE.to_permission()),
        params,
        refusal,
    )
    .await
}

/// Reads a bounded `application/json` body into `T`, refusing unknown fields (the types say so).
async fn read_json<T: DeserializeOwned>(
    state: &ConsoleState,
    call: &Call,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(malformed(
            state,
            call,
            caller,
            "invalid_content_type",
            "the body must be sent as application/json".into(),
            "Content-Type",
        )
        .await);
    }
    // Bounded in time as in size: a body sent a byte a minute would hold the connection.
    let Ok(read) = tokio::time::timeout(BODY_WAIT, axum::body::to_bytes(body, MAX_BODY)).await
    else {
        return Err(malformed(
            state,
            call,
            caller,
            "body_too_slow",
            format!("the body did not arrive within {} s", BODY_WAIT.as_secs()),
            "body",
        )
        .await);
    };
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(e) if crate::limited::over_limit(&e) => {
            return Err(refused(state, call, caller, "body", ApiError::TooLarge(MAX_BODY)).await);
        }
        // The connection ended or broke mid-body: not a body too large.
        Err(_) => {
            return Err(malformed(
                state,
                call,
                caller,
                "body_unreadable",
                "the body could not be read whole; the connection ended or broke".into(),
                "body",
            )
            .await);
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(body) => Ok(body),
        Err(e) => {
            let at = format!("body line {} column {}", e.line(), e.column());
            let full = e.to_string();
            let what = full
                .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
                .unwrap_or(&full);
            // The parser quotes what it could not take (`invalid type: string "…"`, an unknown
            // key): a secret pasted into the wrong field must not come back in the answer.
            let what = redact::scrub(&redact::gateway_tokens(what));
            Err(malformed(state, call, caller, "invalid_json", what, &at).await)
        }
    }
}

/// A token id exactly as the API writes it: 32 lowercase hex digits.
fn parse_id(s: &str) -> Option<TokenId> {
    let canonical = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    canonical.then(|| TokenId::from_hex(s)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_only_in_their_listed_form() {
        let id = TokenId([0xab; 16]);
        assert_eq!(parse_id(&id.to_hex()), Some(id));
        assert_eq!(parse_id(&id.to_hex().to_uppercase()), None);
        assert_eq!(parse_id(&id.to_hex()[1..]), None);
        assert_eq!(parse_id("zz"), None);
        assert_eq!(parse_id(&format!("{}/x", id.to_hex())), None);
    }
}
