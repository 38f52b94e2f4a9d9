//! The HTTP application of the service: the payment-http router with this process's metrics.

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use payment_core::ports::Store;
use payment_core::Payments;
use payment_http::{router, ApiState, Limits};

pub fn app<S: Store>(payments: Payments<S>, metrics: PrometheusHandle) -> Router {
    router(ApiState { payments, metrics: Some(metrics), readiness: None }, Limits::default())
}
