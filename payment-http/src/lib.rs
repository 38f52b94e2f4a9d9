//! # payment-http
//!
//! The account API of SPEC §3 as axum [`Router`]s, generic over the core's store so it runs on
//! the in-memory store and on PostgreSQL alike. Input is validated at the edge ([`extract`],
//! [`cursor`]), errors are `application/problem+json` with a stable `code` ([`problem`]), and the
//! OpenAPI document is generated from the code ([`openapi`]).
//!
//! Three ways in:
//!
//! - [`router`]: the standalone application — [`accounts_router`] and [`operations_router`],
//!   problem+json answers for unknown routes (404) and wrong methods (405), tracing with a
//!   request id;
//! - [`accounts_router`]: only the four account routes with the layers they need (body limit,
//!   request metrics, timeout) and no fallback, so a host can `merge` or `nest` it into its own
//!   application, fallback and all;
//! - [`operations_router`]: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, for a host that
//!   has none of its own (the binary serves it on a separate admin listener when `ADMIN_ADDR` is
//!   set).
//!
//! Who the caller is comes from [`ApiState::identity`] ([`identity`]): the gateway's `X-User-Id`
//! by default, a verified JWT ([`identity::JwtBearer`]), or the host's own. [`edge::serve`] runs
//! a router on a listener with the guards a public port needs (header-read and idle timeouts, a
//! connection cap; [`edge::shed_load`] caps requests in progress).
//!
//! ```
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use axum::routing::get;
//! use axum::Router;
//! use payment_core::memory::MemoryStore;
//! use payment_core::Payments;
//! use payment_http::{accounts_router, ApiState, Limits};
//! use tower::ServiceExt;
//!
//! let payments = Payments::new(MemoryStore::default());
//! let state = ApiState::new(payments);
//! let host = Router::new()
//!     .route("/healthz", get(|| async { "the host's own" }))
//!     .nest("/payments", accounts_router(state, Limits::default()))
//!     .fallback(|| async { (StatusCode::NOT_FOUND, "the host's fallback") });
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let status = runtime.block_on(async {
//!     let request = Request::post("/payments/accounts").header("X-User-Id", "u1").body(Body::empty())?;
//!     let response = host.oneshot(request).await?;
//!     Ok::<_, Box<dyn std::error::Error>>(response.status())
//! })?;
//! assert_eq!(status, StatusCode::CREATED);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod accounts;
pub mod cursor;
pub mod edge;
pub mod extract;
pub mod identity;
pub mod openapi;
mod operations;
pub mod problem;
pub mod readiness;
mod telemetry;
pub mod trace_context;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::routing::{get, post};
use axum::{BoxError, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use payment_core::ports::Store;
use payment_core::Payments;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::identity::{GatewayHeader, Identity};
use crate::readiness::LastReadiness;

pub use accounts::{AccountCreated, BalanceBody, DepositRequest, LedgerEntryBody, LedgerPage, AMOUNT_TEXT_PATTERN};
pub use problem::{
    method_not_allowed_fallback, problem_fallback, with_problem_fallbacks, ApiError, ErrorCode, Problem,
};

/// An extra readiness check (e.g. Kafka), answering `Err(reason)` when not ready.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the handlers share. Cloning is cheap: a store handle and a few `Arc`s.
pub struct ApiState<S> {
    /// The use cases, on the store the routes read and write.
    pub payments: Payments<S>,
    /// Renders `/metrics`; without it the route answers an empty document.
    pub metrics: Option<PrometheusHandle>,
    /// Asked by `/readyz` after the store's ping.
    pub readiness: Option<ReadinessCheck>,
    /// Who is calling ([`identity`]); [`identity::GatewayHeader`] by default.
    pub identity: Identity,
    /// When set, `/readyz` answers from this verdict of [`readiness::probe_readiness`] instead
    /// of checking on every request.
    pub probed: Option<LastReadiness>,
}

impl<S: Store> ApiState<S> {
    /// The state of `payments` with the defaults: no metrics, no extra readiness check,
    /// identity from `X-User-Id`, readiness checked on request.
    pub fn new(payments: Payments<S>) -> Self {
        Self { payments, metrics: None, readiness: None, identity: Arc::new(GatewayHeader), probed: None }
    }
}

// By hand: a derive would ask `S: Clone` of the struct's users even where `Store` implies it.
impl<S: Store> Clone for ApiState<S> {
    fn clone(&self) -> Self {
        Self {
            payments: self.payments.clone(),
            metrics: self.metrics.clone(),
            readiness: self.readiness.clone(),
            identity: self.identity.clone(),
            probed: self.probed.clone(),
        }
    }
}

/// Limits of the HTTP layer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests running longer are answered `408`.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { request_timeout: Duration::from_secs(10) }
    }
}

/// `POST /accounts`, `POST /accounts/deposit`, `GET /accounts/balance`, `GET /accounts/ledger`,
/// with the body limit, request metrics and the timeout, and no fallback: axum refuses to merge
/// two routers that both have one, and the host's is the one that should answer.
pub fn accounts_router<S: Store>(state: ApiState<S>, limits: Limits) -> Router {
    Router::new()
        .route("/accounts", post(accounts::create_account::<S>))
        .route("/accounts/deposit", post(accounts::deposit::<S>))
        .route("/accounts/balance", get(accounts::balance::<S>))
        .route("/accounts/ledger", get(accounts::ledger::<S>))
        .with_state(Arc::new(state))
        .layer(axum::extract::DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .route_layer(axum::middleware::from_fn(telemetry::record))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async { ApiError::Timeout }))
                .timeout(limits.request_timeout),
        )
}

/// `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /openapi.json`, with request metrics and
/// the timeout (a hung readiness check answers `408`), and no fallback.
pub fn operations_router<S: Store>(state: ApiState<S>, limits: Limits) -> Router {
    Router::new()
        .route("/healthz", get(operations::healthz))
        .route("/readyz", get(operations::readyz::<S>))
        .route("/metrics", get(operations::metrics::<S>))
        .route("/openapi.json", get(operations::openapi))
        .with_state(Arc::new(state))
        .route_layer(axum::middleware::from_fn(telemetry::record))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async { ApiError::Timeout }))
                .timeout(limits.request_timeout),
        )
}

/// The standalone application: [`accounts_router`] and [`operations_router`], problem+json for
/// unknown routes and wrong methods ([`with_problem_fallbacks`]), and tracing with an
/// `x-request-id` (taken from the request or made up, and echoed).
pub fn router<S: Store>(state: ApiState<S>, limits: Limits) -> Router {
    let routes = accounts_router(state.clone(), limits).merge(operations_router(state, limits));
    with_request_tracing(with_problem_fallbacks(routes))
}

/// `router` traced: one `http` span per request, the child of the caller's `traceparent` when it
/// sends one ([`trace_context`]), with an `x-request-id` taken from the request or made up, and
/// echoed in the response. Apply it last, around everything the host serves.
pub fn with_request_tracing(router: Router) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(trace_context::request_span))
            .layer(PropagateRequestIdLayer::x_request_id()),
    )
}
