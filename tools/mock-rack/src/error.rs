//! The rack's typed handler errors (`structs.ErrNotFound` and friends, spec §1.5), in one enum.
//!
//! Invariant: each variant maps to exactly one HTTP status, and its message is the text the real
//! rack would send, verbatim; the response module is the only place that turns one into bytes.

/// A handler failure, as the rack's `stdapi` layer would render it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RackError {
    /// `structs.ErrBadRequest`: 400.
    #[error("{0}")]
    BadRequest(String),
    /// The auth middleware's `invalid authentication`: 401.
    #[error("invalid authentication")]
    Unauthorized,
    /// `stdapi.Errorf(403, …)`: 403.
    #[error("{0}")]
    Forbidden(String),
    /// `structs.ErrNotFound`: 404.
    #[error("{0}")]
    NotFound(String),
    /// `structs.ErrUnprocessable`: 422.
    #[error("{0}")]
    Unprocessable(String),
    /// Any untyped error (strconv, Kubernetes): 500 with the raw text.
    #[error("{0}")]
    Internal(String),
    /// `structs.ErrNotImplemented` / the k8s provider's "unimplemented": 501.
    #[error("{0}")]
    NotImplemented(String),
}

// === impl RackError ===

impl RackError {
    /// The status code the rack answers with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            RackError::BadRequest(_) => 400,
            RackError::Unauthorized => 401,
            RackError::Forbidden(_) => 403,
            RackError::NotFound(_) => 404,
            RackError::Unprocessable(_) => 422,
            RackError::Internal(_) => 500,
            RackError::NotImplemented(_) => 501,
        }
    }

    /// The message, without the trailing newline `http.Error` adds.
    pub(crate) fn message(&self) -> &str {
        match self {
            RackError::Unauthorized => "invalid authentication",
            RackError::BadRequest(m)
            | RackError::Forbidden(m)
            | RackError::NotFound(m)
            | RackError::Unprocessable(m)
            | RackError::Internal(m)
            | RackError::NotImplemented(m) => m,
        }
    }
}
