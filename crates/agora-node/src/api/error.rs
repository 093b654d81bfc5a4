//! API errors: a status code and a message that says what was wrong, as `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use agora_client::types::ErrorBody;

/// An error returned by a handler.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message for the client.
    pub message: String,
}

impl ApiError {
    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into() }
    }

    /// 404: the object does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, message: message.into() }
    }

    /// 422: well-formed but refused (e.g. by the mempool).
    pub fn rejected(message: impl Into<String>) -> Self {
        Self { status: StatusCode::UNPROCESSABLE_ENTITY, message: message.into() }
    }

    /// 503: this node cannot serve the request now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.message })).into_response()
    }
}

impl From<agora_chain::ChainError> for ApiError {
    fn from(e: agora_chain::ChainError) -> Self {
        match e {
            agora_chain::ChainError::Rejected(e) => ApiError::rejected(e.to_string()),
            agora_chain::ChainError::Proof(e) => ApiError::bad_request(e),
            agora_chain::ChainError::Stopped | agora_chain::ChainError::Busy(_) => {
                ApiError::unavailable(e.to_string())
            }
        }
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;
