//! The one place the proxy turns an outcome into an HTTP answer.
//!
//! **Invariant:** every refusal has one status and one stable `kind`; unknown routes get the
//! empty 404 the convox CLI expects; internal causes are never sent to the caller; and every
//! answer carries the request id.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Why the proxy answered without forwarding (or could not finish forwarding).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("too many requests from this address")]
    RateLimited,
    #[error("the request's header block is over {0} bytes")]
    HeadersTooLarge(usize),
    #[error(
        "not authenticated: put a gateway API token in RACK_URL, e.g. https://convox:rgw_...@<gateway host>"
    )]
    Unauthenticated(&'static str),
    #[error("{what}")]
    BadRequest { kind: &'static str, what: String },
    #[error("unknown route")]
    UnknownRoute,
    #[error("{what}")]
    Forbidden { kind: &'static str, what: String },
    #[error("the audit log cannot record this call; nothing was forwarded")]
    AuditUnavailable,
    /// Nothing of the call reached the rack: it could not be connected to, or a lookup the
    /// call needed first failed.
    #[error("the rack did not answer; the call was not sent to it")]
    Upstream,
    /// The call was sent and the connection failed before the rack's answer came: the rack
    /// may have carried it out, which the caller (and an auditor) must not read as "not run".
    #[error(
        "the rack took the call but gave no answer; it may have carried it out, so check before repeating it"
    )]
    NoAnswer,
    /// The rack answered 401: it refused the gateway's own credentials (`rack.password`), which
    /// is the operator's to fix, not the caller's.
    #[error(
        "the rack refused the gateway's own credentials; the gateway's operator must check its rack password"
    )]
    RackRefusedGateway,
    /// The rack answered on a masking route, but its answer could not be read to hide the
    /// values this caller may not see, so it is withheld (never passed through unmasked).
    #[error("the rack's answer could not be read to hide its secrets, so it was withheld")]
    UnreadableAnswer(&'static str),
    /// The rack refused a WebSocket upgrade with this status: passed on as the rack sent it,
    /// with no body (a process that is gone answers 404).
    #[error("the rack refused the upgrade")]
    RackRefusedUpgrade(StatusCode),
}

/// A proxy answer with its request id.
pub struct Answer {
    pub error: ProxyError,
    pub request_id: String,
}

// === impl ProxyError ===

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ProxyError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ProxyError::UnknownRoute => StatusCode::NOT_FOUND,
            ProxyError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ProxyError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream
            | ProxyError::NoAnswer
            | ProxyError::RackRefusedGateway
            | ProxyError::UnreadableAnswer(_) => StatusCode::BAD_GATEWAY,
            ProxyError::RackRefusedUpgrade(status) => *status,
        }
    }

    /// The stable name of this refusal.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::RateLimited => "rate_limited",
            ProxyError::HeadersTooLarge(_) => "oversized_header_block",
            ProxyError::Unauthenticated(kind) => kind,
            ProxyError::BadRequest { kind, .. } | ProxyError::Forbidden { kind, .. } => kind,
            ProxyError::UnknownRoute => "unknown_route",
            ProxyError::AuditUnavailable => "audit_unavailable",
            ProxyError::Upstream => "upstream_unavailable",
            ProxyError::NoAnswer => "upstream_no_answer",
            ProxyError::RackRefusedGateway => "rack_refused_gateway",
            ProxyError::UnreadableAnswer(kind) => kind,
            ProxyError::RackRefusedUpgrade(_) => "rack_refused_upgrade",
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = self.error.status();
        // The CLI detects old racks by the exact empty 404: keep it empty. Other bodies are
        // printed by the CLI after its own "ERROR: ", so they carry no prefix of their own.
        let empty = matches!(
            self.error,
            ProxyError::UnknownRoute | ProxyError::RackRefusedUpgrade(_)
        );
        let body = if empty {
            Body::empty()
        } else {
            Body::from(format!("{} ({})\n", self.error, self.error.kind()))
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        let h = r.headers_mut();
        if !empty {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        if let ProxyError::Unauthenticated(_) = self.error {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"rack-gateway\""),
            );
        }
        if let ProxyError::AuditUnavailable | ProxyError::RateLimited = self.error {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            h.insert("x-request-id", id);
        }
        crate::proxy::headers::harden_response(h);
        // A flooding or credential-less client keeps no connection: each one it holds open is
        // a place on the listener (and unfinished headers) that others cannot have.
        if let ProxyError::RateLimited
        | ProxyError::Unauthenticated(_)
        | ProxyError::HeadersTooLarge(_) = self.error
        {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floods_and_missing_credentials_close_the_connection() {
        let answer = |error| {
            Answer {
                error,
                request_id: "r1".into(),
            }
            .into_response()
        };
        let closes = |r: &Response| {
            r.headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v == "close")
        };
        let flood = answer(ProxyError::RateLimited);
        assert_eq!(flood.status(), 429);
        assert!(closes(&flood));
        assert!(closes(&answer(ProxyError::Unauthenticated(
            "missing_credentials"
        ))));
        assert!(closes(&answer(ProxyError::HeadersTooLarge(1))));
        // A caller who authenticated keeps the connection the CLI reuses.
        assert!(!closes(&answer(ProxyError::UnknownRoute)));
        assert!(!closes(&answer(ProxyError::Forbidden {
            kind: "x",
            what: "y".into(),
        })));
    }
}
