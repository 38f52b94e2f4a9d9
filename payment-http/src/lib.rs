//! # payment-http
//!
//! The account API of SPEC §3 as an axum [`Router`], generic over the core's store so it runs on
//! the in-memory store and on PostgreSQL alike. Input is validated at the edge ([`extract`]),
//! errors are `application/problem+json` with a stable `code` ([`problem`]), and the OpenAPI
//! document is generated from the code ([`openapi`]).

pub mod extract;
pub mod openapi;
pub mod problem;
mod routes;
mod telemetry;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{BoxError, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use payment_core::ports::Store;
use payment_core::Payments;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use problem::{ApiError, Problem};
pub use routes::{AccountCreated, BalanceBody, DepositRequest, LedgerEntryBody, LedgerPage};

/// An extra readiness check (e.g. Kafka), answering `Err(reason)` when not ready.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What the handlers share.
pub struct ApiState<S> {
    pub payments: Payments<S>,
    /// Renders `/metrics`; without it the route answers an empty document.
    pub metrics: Option<PrometheusHandle>,
    pub readiness: Option<ReadinessCheck>,
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

/// The API with tracing (with a request id), timeouts, body limits and request metrics.
pub fn router<S: Store>(state: ApiState<S>, limits: Limits) -> Router {
    let routes = Router::new()
        .route("/accounts", post(routes::create_account::<S>))
        .route("/accounts/deposit", post(routes::deposit::<S>))
        .route("/accounts/balance", get(routes::balance::<S>))
        .route("/accounts/ledger", get(routes::ledger::<S>))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz::<S>))
        .route("/metrics", get(routes::metrics::<S>))
        .route("/openapi.json", get(routes::openapi))
        .with_state(Arc::new(state));
    routes
        .layer(axum::extract::DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .route_layer(axum::middleware::from_fn(telemetry::record))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("http", method = %request.method(), uri = %request.uri(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(HandleErrorLayer::new(|_: BoxError| async { ApiError::Timeout }))
                .timeout(limits.request_timeout),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such route") })
}
