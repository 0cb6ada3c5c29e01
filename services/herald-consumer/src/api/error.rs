//! One error type for the read routes (`GET /notifications/{userID}` and its stream), answered
//! as `{"message": ...}` with its status, as the producer's `AppError` is.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_auth::AuthError;
use herald_kit::http::JsonError;
use herald_model::UserId;

/// How long a client is asked to wait before retrying a 503.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a read is not answered with the user's notifications.
#[derive(Debug)]
pub enum ReadError {
    /// No valid credentials (401 with `WWW-Authenticate`).
    Unauthenticated(AuthError),
    /// The path's user id breaks the id rule (400).
    BadUserId,
    /// The caller may not read this user's inbox (403).
    Forbidden(UserId),
    /// A query this API does not take (400).
    BadRequest(String),
    /// Not answerable completely right now (503 with `Retry-After`).
    Unavailable(String),
    /// Another member's answer (or an extractor's), passed on as it came.
    Relayed(Box<Response>),
}

impl ReadError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(message.into())
    }

    /// A 503, this member's or another's: asking another member holding the partition may help.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ReadError::Unavailable(_) => true,
            ReadError::Relayed(response) => response.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE,
            _ => false,
        }
    }
}

impl From<AuthError> for ReadError {
    fn from(error: AuthError) -> Self {
        Self::Unauthenticated(error)
    }
}

impl IntoResponse for ReadError {
    fn into_response(self) -> Response {
        match self {
            ReadError::Unauthenticated(e) => herald_kit::http::unauthorized(&e),
            ReadError::BadUserId => JsonError::new(StatusCode::BAD_REQUEST, UserId::RULE).into_response(),
            ReadError::Forbidden(user) => {
                JsonError::new(StatusCode::FORBIDDEN, format!("this token may not read user {user}'s notifications"))
                    .into_response()
            }
            ReadError::BadRequest(message) => JsonError::new(StatusCode::BAD_REQUEST, message).into_response(),
            ReadError::Unavailable(message) => JsonError::unavailable(message, RETRY_AFTER).into_response(),
            ReadError::Relayed(response) => *response,
        }
    }
}
