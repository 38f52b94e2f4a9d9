//! Errors as `application/problem+json` (RFC 9457) with a stable machine `code`. The one place
//! where core errors become HTTP statuses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use payment_core::ports::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `invalid_amount`.
    pub code: String,
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the X-User-Id header is missing")]
    MissingUserId,
    #[error("the X-User-Id header is invalid: {0}")]
    InvalidUserId(String),
    #[error("the Idempotency-Key header is invalid: {0}")]
    InvalidIdempotencyKey(String),
    #[error("the request body is not valid JSON of the expected shape: {0}")]
    MalformedJson(String),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    #[error("the user already has an account")]
    AccountExists,
    #[error("the user has no account")]
    AccountNotFound,
    #[error("the deposit would take the balance over its limit")]
    BalanceLimit,
    #[error("the Idempotency-Key was used for a different request")]
    IdempotencyKeyReused,
    #[error("the service is temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("the request timed out")]
    Timeout,
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MissingUserId => StatusCode::UNAUTHORIZED,
            InvalidUserId(_) | InvalidIdempotencyKey(_) | MalformedJson(_) | InvalidQuery(_) | InvalidCursor(_) => {
                StatusCode::BAD_REQUEST
            }
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            InvalidAmount(_) | BalanceLimit => StatusCode::UNPROCESSABLE_ENTITY,
            AccountExists | IdempotencyKeyReused => StatusCode::CONFLICT,
            AccountNotFound => StatusCode::NOT_FOUND,
            Unavailable(_) | NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Timeout => StatusCode::REQUEST_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MissingUserId => "missing_user_id",
            InvalidUserId(_) => "invalid_user_id",
            InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            MalformedJson(_) => "malformed_json",
            UnsupportedMediaType => "unsupported_media_type",
            PayloadTooLarge(_) => "payload_too_large",
            InvalidAmount(_) => "invalid_amount",
            InvalidQuery(_) => "invalid_query",
            InvalidCursor(_) => "invalid_cursor",
            AccountExists => "account_exists",
            AccountNotFound => "account_not_found",
            BalanceLimit => "balance_limit",
            IdempotencyKeyReused => "idempotency_key_reused",
            Unavailable(_) => "unavailable",
            NotReady(_) => "not_ready",
            Timeout => "timeout",
            Internal => "internal",
        }
    }
}

impl From<payment_core::Error> for ApiError {
    fn from(error: payment_core::Error) -> Self {
        use payment_core::Error;
        match error {
            Error::AccountExists => ApiError::AccountExists,
            Error::AccountNotFound => ApiError::AccountNotFound,
            Error::BalanceLimit => ApiError::BalanceLimit,
            Error::IdempotencyKeyReused => ApiError::IdempotencyKeyReused,
            Error::Store(StoreError::Conflict(detail) | StoreError::Unavailable(detail)) => {
                ApiError::Unavailable(detail)
            }
            Error::Store(StoreError::Invariant(detail)) => {
                tracing::error!(%detail, "storage invariant violated");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        let problem = Problem {
            kind: format!("https://payments.example/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_string(),
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
