//! Every error answer of the admin API, in one place. What the caller got
//! wrong is said in full (400, 401, 404, 409, 422); what broke inside (a
//! store error, a panicked task) is logged with its detail and answered
//! with a line that shows none of it: no paths, engine messages or panics.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub enum Failure {
    BadRequest(String),
    Unauthorized,
    NotFound(String),
    Conflict(String),
    Unprocessable(String),
    /// The router cannot do it now, for a reason that is no secret
    /// (`stopping`, `store not writable`).
    Unavailable(&'static str),
    /// The store failed; `detail` goes to the log only.
    Store(String),
    /// A task panicked; `detail` goes to the log only.
    Internal(String),
}

impl Failure {
    /// A store call's error: a missing thing is a 404, the rest a 503.
    pub fn store(e: impl std::fmt::Display) -> Self {
        Failure::Store(e.to_string())
    }
}

impl From<crate::storage::LogError> for Failure {
    fn from(e: crate::storage::LogError) -> Self {
        match e {
            crate::storage::LogError::NotFound(what) => Failure::NotFound(format!("no such {what}")),
            other => Failure::store(other),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, said) = match self {
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Failure::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized".into()),
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Failure::Conflict(m) => (StatusCode::CONFLICT, m),
            Failure::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            Failure::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m.into()),
            Failure::Store(detail) => {
                tracing::error!(error = %detail, "Admin API: the store failed.");
                (StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable; the router's log says why".into())
            }
            Failure::Internal(detail) => {
                tracing::error!(error = %detail, "Admin API: a task failed.");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error; the router's log says why".into())
            }
        };
        (status, Json(json!({ "error": said }))).into_response()
    }
}
