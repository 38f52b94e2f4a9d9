//! The routes an operator or orchestrator calls, not a shopper: liveness, readiness, Prometheus
//! metrics and the OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use payment_core::ports::Store;

use crate::problem::ApiError;
use crate::readiness::{self, Verdict};
use crate::ApiState;

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The store answers, and the extra [`crate::ReadinessCheck`] passes: the last background
/// probe's verdict when [`ApiState::probed`] is set, else checked now.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Storage (and Kafka, if configured) usable"),
))]
pub async fn readyz<S: Store>(State(state): State<Arc<ApiState<S>>>) -> Result<&'static str, ApiError> {
    match &state.probed {
        Some(last) => match last.get() {
            Verdict::Ready => Ok("ready"),
            // The probe logged the cause when the verdict changed.
            Verdict::NotReady => Err(ApiError::NotReady("the last probe failed".into())),
            Verdict::Unknown => Err(ApiError::NotReady("not probed yet".into())),
        },
        None => {
            readiness::check(&state.payments, state.readiness.as_ref()).await.map_err(ApiError::NotReady)?;
            Ok("ready")
        }
    }
}

/// The Prometheus exposition of [`ApiState::metrics`], empty without one.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics<S: Store>(State(state): State<Arc<ApiState<S>>>) -> Response {
    let text = state.metrics.as_ref().map(|handle| handle.render()).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The document in [`crate::openapi`].
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document", content_type = "application/json")))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document_json()).into_response()
}

/// The problem codes of the operation routes, for the document.
pub(crate) const READYZ_PROBLEMS: &[crate::ErrorCode] =
    &[crate::ErrorCode::NotReady, crate::ErrorCode::Timeout, crate::ErrorCode::Overloaded];
