//! What the API answers on a method and path that is none of its routes: a 404 in the API's own
//! terms, after the same limit and authentication as every route.
//!
//! A token probing the API for endpoints it does not have is worth an auditor's attention, so
//! an authenticated caller's miss is recorded (one `CommandRequested`, decision `deny`, reason
//! `unknown_route`, no permission); an unauthenticated one is counted per address, like every
//! unauthenticated refusal. **Invariant:** the recorded path is the request's path as the HTTP
//! parser accepted it (no query), its secret-looking segments redacted
//! ([`redact::unrouted_path`]: a token pasted into a URL), cut to [`MAX_RECORDED_PATH`] bytes,
//! so a caller cannot make one record arbitrarily large.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use events::time::Clock;

use super::ConsoleState;
use super::auth::{self, Call};
use super::respond::ApiError;
use crate::proxy::redact;

/// The longest path recorded for a miss; a longer one is cut and marked.
pub const MAX_RECORDED_PATH: usize = 256;

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
        recorded_path(&redact::unrouted_path(req.uri().path())),
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

/// `path`, cut to [`MAX_RECORDED_PATH`] bytes with `…` when longer. The HTTP parser admits only
/// ASCII in a path, so the cut never splits a character; a defensive check keeps it so.
fn recorded_path(path: &str) -> String {
    if path.len() <= MAX_RECORDED_PATH {
        return path.to_owned();
    }
    let mut end = MAX_RECORDED_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

#[cfg(test)]
mod tests {
    use super::{MAX_RECORDED_PATH, recorded_path};

    #[test]
    fn long_paths_are_cut_and_marked() {
        assert_eq!(recorded_path("/api/v2/users"), "/api/v2/users");
        let long = format!("/{}", "a".repeat(2 * MAX_RECORDED_PATH));
        let cut = recorded_path(&long);
        assert_eq!(cut.len(), MAX_RECORDED_PATH + "…".len());
        assert!(cut.ends_with('…'));
        let multibyte = "é".repeat(MAX_RECORDED_PATH);
        assert!(recorded_path(&multibyte).ends_with('…'));
    }
}
