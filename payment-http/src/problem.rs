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
    /// The reason phrase of the status.
    pub title: String,
    /// The HTTP status, repeated for clients that lose it.
    pub status: u16,
    /// What went wrong with this request, for humans.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: ErrorCode,
}

/// The stable `code` of a problem document; clients branch on it, never on `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// `X-User-Id` absent (401).
    MissingUserId,
    /// `X-User-Id` present but malformed or repeated (400).
    InvalidUserId,
    /// `AUTH_MODE=jwt`: no `Authorization: Bearer` token (401, with a `Bearer` challenge).
    MissingToken,
    /// `AUTH_MODE=jwt`: the token does not verify, expired, or names no valid user (401).
    InvalidToken,
    /// `AUTH_MODE=jwt`: `X-User-Id` names another user than the token (403).
    UserMismatch,
    /// `Idempotency-Key` malformed or repeated (400).
    InvalidIdempotencyKey,
    /// `X-Request-Id` malformed or repeated (400).
    InvalidRequestId,
    /// The body is not JSON of the expected shape (400).
    MalformedJson,
    /// The body is not `application/json` (415).
    UnsupportedMediaType,
    /// The body exceeds the limit (413).
    PayloadTooLarge,
    /// The amount is not valid money (422).
    InvalidAmount,
    /// A query parameter is malformed or out of range (400).
    InvalidQuery,
    /// The `before` cursor was not issued by this API (400).
    InvalidCursor,
    /// The caller already has an account (409).
    AccountExists,
    /// The caller has no account (404).
    AccountNotFound,
    /// The deposit would take the balance over its limit (422).
    BalanceLimit,
    /// The `Idempotency-Key` was used for a different deposit (409).
    IdempotencyKeyReused,
    /// Storage is unreachable or contended; retry later (503).
    Unavailable,
    /// Storage or Kafka not usable (503, from `/readyz`).
    NotReady,
    /// Too many requests in progress; retry after `Retry-After` seconds (503).
    Overloaded,
    /// The request ran past the time limit (408).
    Timeout,
    /// A bug; the request changed nothing (500).
    Internal,
    /// No route has this path (404).
    NotFound,
    /// The path exists but not with this method (405).
    MethodNotAllowed,
}

impl ErrorCode {
    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 24] = {
        use ErrorCode::*;
        [
            MissingUserId,
            InvalidUserId,
            MissingToken,
            InvalidToken,
            UserMismatch,
            InvalidIdempotencyKey,
            InvalidRequestId,
            MalformedJson,
            UnsupportedMediaType,
            PayloadTooLarge,
            InvalidAmount,
            InvalidQuery,
            InvalidCursor,
            AccountExists,
            AccountNotFound,
            BalanceLimit,
            IdempotencyKeyReused,
            Unavailable,
            NotReady,
            Overloaded,
            Timeout,
            Internal,
            NotFound,
            MethodNotAllowed,
        ]
    };

    /// The code and the HTTP status it is always answered with: the one status mapping.
    pub fn describe(self) -> (&'static str, StatusCode) {
        use ErrorCode::*;
        match self {
            MissingUserId => ("missing_user_id", StatusCode::UNAUTHORIZED),
            InvalidUserId => ("invalid_user_id", StatusCode::BAD_REQUEST),
            MissingToken => ("missing_token", StatusCode::UNAUTHORIZED),
            InvalidToken => ("invalid_token", StatusCode::UNAUTHORIZED),
            UserMismatch => ("user_mismatch", StatusCode::FORBIDDEN),
            InvalidIdempotencyKey => ("invalid_idempotency_key", StatusCode::BAD_REQUEST),
            InvalidRequestId => ("invalid_request_id", StatusCode::BAD_REQUEST),
            MalformedJson => ("malformed_json", StatusCode::BAD_REQUEST),
            UnsupportedMediaType => ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
            PayloadTooLarge => ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            InvalidAmount => ("invalid_amount", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidQuery => ("invalid_query", StatusCode::BAD_REQUEST),
            InvalidCursor => ("invalid_cursor", StatusCode::BAD_REQUEST),
            AccountExists => ("account_exists", StatusCode::CONFLICT),
            AccountNotFound => ("account_not_found", StatusCode::NOT_FOUND),
            BalanceLimit => ("balance_limit", StatusCode::UNPROCESSABLE_ENTITY),
            IdempotencyKeyReused => ("idempotency_key_reused", StatusCode::CONFLICT),
            Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
            NotReady => ("not_ready", StatusCode::SERVICE_UNAVAILABLE),
            Overloaded => ("overloaded", StatusCode::SERVICE_UNAVAILABLE),
            Timeout => ("timeout", StatusCode::REQUEST_TIMEOUT),
            Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
            NotFound => ("not_found", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    /// The code as it appears in the problem document.
    pub fn as_str(self) -> &'static str {
        self.describe().0
    }

    /// The status this code is answered with.
    pub fn status(self) -> StatusCode {
        self.describe().1
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `X-User-Id` absent.
    #[error("the X-User-Id header is missing")]
    MissingUserId,
    /// `X-User-Id` malformed or sent more than once.
    #[error("the X-User-Id header is invalid: {0}")]
    InvalidUserId(String),
    /// No `Authorization: Bearer` token.
    #[error("an Authorization: Bearer token is required")]
    MissingToken,
    /// The token was refused; the reason is fixed text, safe in a header.
    #[error("the bearer token was refused: {0}")]
    InvalidToken(&'static str),
    /// `X-User-Id` names another user than the verified token.
    #[error("X-User-Id names another user than the bearer token")]
    UserMismatch,
    /// `Idempotency-Key` malformed or sent more than once.
    #[error("the Idempotency-Key header is invalid: {0}")]
    InvalidIdempotencyKey(String),
    /// `X-Request-Id` malformed or sent more than once.
    #[error("the X-Request-Id header is invalid: {0}")]
    InvalidRequestId(String),
    /// The body is not JSON of the expected shape.
    #[error("the request body is not valid JSON of the expected shape: {0}")]
    MalformedJson(String),
    /// The body is not `application/json`.
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// The body exceeds the limit, in bytes.
    #[error("the request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The amount is missing or not valid money.
    #[error("invalid amount: {0}")]
    InvalidAmount(String),
    /// A query parameter is malformed or out of range.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// The `before` cursor was not issued by this API.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// A use case refused or failed; its status follows the core's reason.
    #[error(transparent)]
    Core(#[from] payment_core::Error),
    /// A readiness check failed.
    #[error("not ready: {0}")]
    NotReady(String),
    /// More requests in progress than the service takes; shed, not queued.
    #[error("the service is at capacity; retry shortly")]
    Overloaded,
    /// The request ran past [`crate::Limits::request_timeout`].
    #[error("the request timed out")]
    Timeout,
    /// No route has this path.
    #[error("no route has this path")]
    NotFound,
    /// The path exists but not with this method.
    #[error("this path does not accept this method")]
    MethodNotAllowed,
}

impl ApiError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        use payment_core::Error as Core;
        match self {
            ApiError::MissingUserId => ErrorCode::MissingUserId,
            ApiError::InvalidUserId(_) => ErrorCode::InvalidUserId,
            ApiError::MissingToken => ErrorCode::MissingToken,
            ApiError::InvalidToken(_) => ErrorCode::InvalidToken,
            ApiError::UserMismatch => ErrorCode::UserMismatch,
            ApiError::InvalidIdempotencyKey(_) => ErrorCode::InvalidIdempotencyKey,
            ApiError::InvalidRequestId(_) => ErrorCode::InvalidRequestId,
            ApiError::MalformedJson(_) => ErrorCode::MalformedJson,
            ApiError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::InvalidAmount(_) => ErrorCode::InvalidAmount,
            ApiError::InvalidQuery(_) => ErrorCode::InvalidQuery,
            ApiError::InvalidCursor(_) => ErrorCode::InvalidCursor,
            ApiError::Core(Core::AccountExists) => ErrorCode::AccountExists,
            ApiError::Core(Core::AccountNotFound) => ErrorCode::AccountNotFound,
            ApiError::Core(Core::BalanceLimit) => ErrorCode::BalanceLimit,
            ApiError::Core(Core::IdempotencyKeyReused) => ErrorCode::IdempotencyKeyReused,
            ApiError::Core(Core::Store(StoreError::Conflict(_) | StoreError::Unavailable(_))) => ErrorCode::Unavailable,
            ApiError::Core(Core::Store(StoreError::Invariant(_))) => ErrorCode::Internal,
            ApiError::NotReady(_) => ErrorCode::NotReady,
            ApiError::Overloaded => ErrorCode::Overloaded,
            ApiError::Timeout => ErrorCode::Timeout,
            ApiError::NotFound => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// The RFC 6750 challenge of a refused bearer token; the reasons are fixed text, so they
    /// cannot break out of the quoted string.
    fn bearer_challenge(&self) -> Option<HeaderValue> {
        match self {
            ApiError::MissingToken => Some(HeaderValue::from_static("Bearer realm=\"payments\"")),
            ApiError::InvalidToken(reason) => {
                let reason: String = reason.chars().filter(|c| *c != '"' && *c != '\\').collect();
                HeaderValue::from_str(&format!(
                    "Bearer realm=\"payments\", error=\"invalid_token\", error_description=\"{reason}\""
                ))
                .ok()
            }
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        let status = code.status();
        let detail = match code {
            // The invariant's text may name stored data; it goes to the log, not to the client.
            ErrorCode::Internal => {
                tracing::error!(error = %self, "storage invariant violated");
                "internal error".to_string()
            }
            ErrorCode::Overloaded => self.to_string(),
            // The cause (a store or broker error) may name hosts, users or SQL: log it, answer
            // generically.
            _ if status.is_server_error() => {
                tracing::warn!(error = %self, "request failed");
                match code {
                    ErrorCode::NotReady => "a dependency of the service is not usable".to_string(),
                    _ => "the service is unavailable; retry shortly".to_string(),
                }
            }
            _ => self.to_string(),
        };
        let problem = Problem {
            kind: format!("https://payments.example/problems/{}", code.as_str()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(challenge) = self.bearer_challenge() {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// Answers a request no route matched: `404` problem+json, code `not_found`. Use it as
/// [`axum::Router::fallback`].
pub async fn problem_fallback() -> ApiError {
    ApiError::NotFound
}

/// Answers a known path with a method it does not accept: `405` problem+json, code
/// `method_not_allowed` (axum still sets `Allow`). Use it as
/// [`axum::Router::method_not_allowed_fallback`].
pub async fn method_not_allowed_fallback() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Sets both problem+json fallbacks on `router`. Call it after the last route is added and after
/// any nesting or merging: axum applies the 405 fallback to the routes present at that moment.
pub fn with_problem_fallbacks<S: Clone + Send + Sync + 'static>(router: axum::Router<S>) -> axum::Router<S> {
    router.fallback(problem_fallback).method_not_allowed_fallback(method_not_allowed_fallback)
}
