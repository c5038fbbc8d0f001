//! The one place the gateway API turns an outcome into an HTTP answer.
//!
//! **Invariant:** every refusal has one status and one stable `kind`, and its body is an
//! [`ErrorBody`]; internal causes are never sent; every answer, success or refusal, carries the
//! request id and sets no cookie (the router's layer adds `Cache-Control: no-store`, since a
//! created secret must not be cached anywhere, and the browser hardening headers).

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use super::api::ErrorBody;

/// Why the API answered with a refusal.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("too many requests from this address")]
    RateLimited,
    #[error("not authenticated: send `Authorization: Bearer rgw_...` with a gateway API token")]
    Unauthenticated(&'static str),
    #[error("{what}")]
    Forbidden { kind: &'static str, what: String },
    /// The request's content is malformed; `at` says where. Nothing was appended.
    #[error("{what}")]
    BadRequest {
        kind: &'static str,
        what: String,
        at: Option<String>,
    },
    #[error("the request body is over {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    NotFound(String),
    /// No route of the API has this method and path.
    #[error("no API route is {0}; the API serves /api/v1/tokens")]
    UnknownRoute(String),
    #[error("{0}")]
    AlreadyRevoked(String),
    /// A revocation with descendants that did not reach every token (see `admin::revoke`).
    #[error("{0}")]
    RevocationIncomplete(String),
    #[error("the audit log cannot record this call; nothing was changed")]
    AuditUnavailable,
    #[error("the gateway could not complete this call")]
    Internal,
}

/// An answer with its request id.
pub struct Answer<T> {
    pub status: StatusCode,
    pub body: T,
    pub request_id: String,
}

// === impl ApiError ===

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) | ApiError::UnknownRoute(_) => StatusCode::NOT_FOUND,
            ApiError::AlreadyRevoked(_) | ApiError::RevocationIncomplete(_) => StatusCode::CONFLICT,
            ApiError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable name of this refusal.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::RateLimited => "rate_limited",
            ApiError::Unauthenticated(kind)
            | ApiError::Forbidden { kind, .. }
            | ApiError::BadRequest { kind, .. } => kind,
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::NotFound(_) => "no_such_token",
            ApiError::UnknownRoute(_) => "unknown_route",
            ApiError::AlreadyRevoked(_) => "already_revoked",
            ApiError::RevocationIncomplete(_) => "revocation_incomplete",
            ApiError::AuditUnavailable => "audit_unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// The refusal as an answer to the call `request_id`.
    pub fn answer(self, request_id: String) -> Response {
        let status = self.status();
        let body = ErrorBody {
            kind: self.kind().to_owned(),
            error: self.to_string(),
            at: match &self {
                ApiError::BadRequest { at, .. } => at.clone(),
                _ => None,
            },
        };
        let mut r = Answer {
            status,
            body,
            request_id,
        }
        .into_response();
        let h = r.headers_mut();
        if let ApiError::Unauthenticated(_) = self {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rack-gateway\""),
            );
        }
        if let ApiError::AuditUnavailable | ApiError::RateLimited = self {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        // As on the proxy: a flooding or credential-less client keeps no connection, since
        // each one it holds is a place on the listener that others cannot have.
        if let ApiError::RateLimited | ApiError::Unauthenticated(_) = self {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

impl<T: Serialize> Answer<T> {
    /// The answer to a call: `body` with `status` when it succeeded, else its error's answer;
    /// both carry the call's request id.
    pub fn of(result: Result<T, ApiError>, status: StatusCode, request_id: String) -> Response {
        match result {
            Ok(body) => Answer {
                status,
                body,
                request_id,
            }
            .into_response(),
            Err(e) => e.answer(request_id),
        }
    }
}

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        // `no-store`, `nosniff` and the rest: the router's layer, on every answer.
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            r.headers_mut().insert("x-request-id", id);
        }
        r
    }
}
