//! Who is calling: the one question every account route asks before it touches an account.
//!
//! The routes do not decide how identity is established; an [`Authenticate`] held in
//! [`crate::ApiState::identity`] does, so a host can plug in its own (mTLS, sessions, an
//! introspection call). Two come with the crate:
//!
//! - [`GatewayHeader`] (`AUTH_MODE=header`, the default): `X-User-Id` as set by a gateway that
//!   authenticated the caller and overwrote whatever the client sent. Anyone who reaches the port
//!   directly is any user: see `docs/security.md`.
//! - [`JwtBearer`] (`AUTH_MODE=jwt`): `Authorization: Bearer <JWT>`, verified against local keys
//!   that are re-read when their file changes ([`jwt`]).
//!
//! A host's own identity, as a trait object:
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::body::Body;
//! use axum::http::request::Parts;
//! use axum::http::{Request, StatusCode};
//! use payment_core::domain::UserId;
//! use payment_core::memory::MemoryStore;
//! use payment_core::Payments;
//! use payment_http::identity::Authenticate;
//! use payment_http::{accounts_router, ApiError, ApiState, Limits};
//! use tower::ServiceExt;
//!
//! /// Trusts a session cookie the host's own middleware already checked (here: any `session=u-...`).
//! struct SessionCookie;
//!
//! #[axum::async_trait]
//! impl Authenticate for SessionCookie {
//!     async fn authenticate(&self, parts: &Parts) -> Result<UserId, ApiError> {
//!         let cookie = parts.headers.get("cookie").and_then(|v| v.to_str().ok()).ok_or(ApiError::MissingToken)?;
//!         let user = cookie.strip_prefix("session=").ok_or(ApiError::InvalidToken("not a session cookie"))?;
//!         UserId::new(user).map_err(|_| ApiError::InvalidToken("the session names no valid user"))
//!     }
//! }
//!
//! let mut state = ApiState::new(Payments::new(MemoryStore::default()));
//! state.identity = Arc::new(SessionCookie);
//! let app = accounts_router(state, Limits::default());
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let (with_cookie, header_only) = runtime.block_on(async {
//!     let open = Request::post("/accounts").header("cookie", "session=u-1").body(Body::empty())?;
//!     let forged = Request::post("/accounts").header("x-user-id", "u-1").body(Body::empty())?;
//!     let a = app.clone().oneshot(open).await?.status();
//!     let b = app.oneshot(forged).await?.status();
//!     Ok::<_, Box<dyn std::error::Error>>((a, b))
//! })?;
//! assert_eq!(with_cookie, StatusCode::CREATED);
//! assert_eq!(header_only, StatusCode::UNAUTHORIZED);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod jwt;
mod keys;

use std::sync::Arc;

use axum::async_trait;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use payment_core::domain::UserId;

pub use jwt::{JwtBearer, JwtSettings};
pub use keys::KeyError;

use crate::problem::ApiError;

/// Establishes the caller of a request, or refuses it.
///
/// Refuse with [`ApiError::MissingToken`] / [`ApiError::InvalidToken`] (401 with a `Bearer`
/// challenge), [`ApiError::MissingUserId`] (401), [`ApiError::InvalidUserId`] (400) or
/// [`ApiError::UserMismatch`] (403); other errors are answered with their own status.
#[async_trait]
pub trait Authenticate: Send + Sync + 'static {
    /// The caller of the request whose head is `parts`.
    async fn authenticate(&self, parts: &Parts) -> Result<UserId, ApiError>;
}

/// The identity the routers ask; cheap to clone.
pub type Identity = Arc<dyn Authenticate>;

/// `AUTH_MODE=header`: the user is the `X-User-Id` header, exactly one, set by a trusted gateway.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayHeader;

#[async_trait]
impl Authenticate for GatewayHeader {
    async fn authenticate(&self, parts: &Parts) -> Result<UserId, ApiError> {
        user_header(parts)?.ok_or(ApiError::MissingUserId)
    }
}

/// The `X-User-Id` header, if present: exactly one value, a valid [`UserId`].
pub(crate) fn user_header(parts: &Parts) -> Result<Option<UserId>, ApiError> {
    let Some(value) = single(parts, "x-user-id").map_err(|()| ApiError::InvalidUserId("sent more than once".into()))?
    else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ApiError::InvalidUserId("not visible ASCII".into()))?;
    UserId::new(text).map(Some).map_err(|e| ApiError::InvalidUserId(e.to_string()))
}

/// The one value of a header that must not be repeated: a gateway that appends instead of
/// replacing would otherwise let the first (client-chosen) value win.
pub(crate) fn single<'a>(parts: &'a Parts, name: &str) -> Result<Option<&'a HeaderValue>, ()> {
    let mut values = parts.headers.get_all(name).iter();
    let first = values.next();
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}
