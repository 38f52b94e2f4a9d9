//! Input at the edge: the caller (as [`crate::identity`] establishes it), the idempotency key
//! and exact-decimal JSON bodies, each validated once and refused with a precise problem.

use std::sync::Arc;

use axum::async_trait;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use payment_core::domain::{IdError, IdempotencyKey, RequestId, UserId};
use payment_core::ports::Store;
use serde::de::DeserializeOwned;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};
use utoipa::IntoParams;

use crate::problem::ApiError;
use crate::ApiState;

/// The body limit of every route: 16 KiB (SPEC §3).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The caller, as [`crate::ApiState::identity`] establishes it: the gateway's `X-User-Id`
/// header by default, a verified bearer token in `AUTH_MODE=jwt`, or the host's own.
pub struct Caller(pub UserId);

/// What `X-User-Id` accepts, as the OpenAPI document declares it; the test suite checks the two
/// agree. [`UserId::new`] is the rule, this is its description.
pub const USER_ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,64}$";

/// What [`IdempotencyHeader`] accepts: 1..=255 printable ASCII characters, spaces included.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[ -~]{1,255}$";

#[async_trait]
impl<St: Store> FromRequestParts<Arc<ApiState<St>>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState<St>>) -> Result<Self, ApiError> {
        state.identity.authenticate(parts).await.map(Caller)
    }
}

impl IntoParams for Caller {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header_parameter(
            "X-User-Id",
            Required::True,
            UserId::MAX_LEN,
            USER_ID_PATTERN,
            "The caller, set by the gateway (`AUTH_MODE=header`, the default); exactly one. Absent: 401 `missing_user_id`; malformed or repeated: 400 `invalid_user_id`. With `AUTH_MODE=jwt` the caller is the bearer token's user and this header is optional: when present it must name the same user (else 403 `user_mismatch`).",
        )]
    }
}

/// A string header parameter with the length and pattern its extractor enforces.
fn header_parameter(name: &str, required: Required, max_len: usize, pattern: &str, description: &str) -> Parameter {
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max_len))
        .pattern(Some(pattern));
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(required)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// The optional `Idempotency-Key` header: at most one, matching [`IDEMPOTENCY_KEY_PATTERN`].
pub struct IdempotencyHeader(pub Option<IdempotencyKey>);

#[async_trait]
impl<S: Send + Sync> FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        optional_id(parts, "idempotency-key", |text| IdempotencyKey::new(text), ApiError::InvalidIdempotencyKey)
            .map(Self)
    }
}

impl IntoParams for IdempotencyHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header_parameter(
            "Idempotency-Key",
            Required::False,
            IdempotencyKey::MAX_LEN,
            IDEMPOTENCY_KEY_PATTERN,
            "At most one. A retry with the same key and body gets the first answer and credits once; the same key with another body: 409 `idempotency_key_reused`; malformed or repeated: 400 `invalid_idempotency_key`.",
        )]
    }
}

/// An optional header holding an id: absent is `None`; repeated, not visible ASCII, or refused by
/// `parse` is `invalid` with the reason.
fn optional_id<T>(
    parts: &Parts,
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, IdError>,
    invalid: fn(String) -> ApiError,
) -> Result<Option<T>, ApiError> {
    let value = crate::identity::single(parts, name).map_err(|()| invalid("sent more than once".into()))?;
    let Some(value) = value else { return Ok(None) };
    let text = value.to_str().map_err(|_| invalid("not visible ASCII".into()))?;
    parse(text).map(Some).map_err(|e| invalid(e.to_string()))
}

/// What [`RequestIdHeader`] accepts: 1..=128 printable ASCII characters, no spaces.
pub const REQUEST_ID_PATTERN: &str = "^[!-~]{1,128}$";

/// The `X-Request-Id` header: at most one, matching [`REQUEST_ID_PATTERN`]. The service's own
/// router ([`with_request_tracing`](crate::with_request_tracing)) makes one up when a request has none, and logs it with the
/// request; a deposit without an `Idempotency-Key` records it as its ledger entry's cause.
pub struct RequestIdHeader(pub Option<RequestId>);

#[async_trait]
impl<S: Send + Sync> FromRequestParts<S> for RequestIdHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        optional_id(parts, "x-request-id", |text| RequestId::new(text), ApiError::InvalidRequestId).map(Self)
    }
}

impl IntoParams for RequestIdHeader {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header_parameter(
            "X-Request-Id",
            Required::False,
            RequestId::MAX_LEN,
            REQUEST_ID_PATTERN,
            "At most one; echoed in the response, made up when absent. A deposit without an `Idempotency-Key` records it in its ledger entry, so the entry can be traced to the request. Malformed or repeated: 400 `invalid_request_id`.",
        )]
    }
}

/// A JSON body: `application/json` (else 415), at most [`MAX_BODY_BYTES`] (else 413), parsed
/// with numbers kept as text (else 400) into `T`.
pub struct JsonBody<T>(pub T);

#[async_trait]
impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(MAX_BODY_BYTES)
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::MalformedJson(e.to_string()))
    }
}
