//! What the API answers on a method and path that is none of its routes: a 404 in the API's own
//! terms, after the same limit and authentication as every route.
//!
//! A token probing the API for endpoints it does not have is worth an auditor's attention, so
//! an authenticated caller's miss is recorded (one `CommandRequested`, decision `deny`, reason
//! `unknown_route`, no permission); an unauthenticated one is counted per address, like every
//! unauthenticated refusal. **Invariant:** the recorded path is the request's path as the HTTP
//! parser accepted it (no query), its secret-looking segments redacted
//! and cut ([`redact::unrouted_path`]: a token pasted into a URL; [`redact::MAX_RECORDED_PATH`]
//! bytes), so a caller cannot make one record arbitrarily large.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use events::time::Clock;

use super::ConsoleState;
use super::auth::{self, Call};
use super::respond::ApiError;
use crate::proxy::redact;

/// The console router's fallback, for unknown paths and for known paths with another method.
pub async fn unknown_route(
    State(state): State<Arc<ConsoleState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let call = Call::new(
        &state,
        peer,
        req.headers(),
        req.method().as_str(),
        redact::unrouted_path(req.uri().path()).into_owned(),
        Clock.now(),
    );
    let refusal = match auth::identify(&state, &call, req.headers()) {
        Ok(caller) => {
            let refusal = ApiError::UnknownRoute(format!("{} {}", call.method, call.path));
            call.deny(&state, &caller, None, Vec::new(), refusal).await
        }
        Err(refused) => refused,
    };
    refusal.answer(call.request_id.clone())
}
