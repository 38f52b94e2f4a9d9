//! The service's HTTP routers: the accounts API and the operations endpoints, whose readiness
//! also asks Kafka when the service consumes from it.

use std::sync::Arc;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use payment_core::ports::Store;
use payment_core::Payments;
use payment_http::{ApiState, Limits, ReadinessCheck};
use payment_kafka::KafkaProbe;

/// `(accounts, operations)`.
pub fn routers<S: Store>(
    payments: Payments<S>,
    metrics: Option<PrometheusHandle>,
    kafka: Option<KafkaProbe>,
    limits: Limits,
) -> (Router, Router) {
    let readiness = kafka.map(|kafka| {
        let kafka = Arc::new(kafka);
        let check: ReadinessCheck = Arc::new(move || {
            let kafka = kafka.clone();
            Box::pin(async move {
                tokio::task::spawn_blocking(move || kafka.check()).await.unwrap_or_else(|e| Err(e.to_string()))
            })
        });
        check
    });
    let state = ApiState { payments, metrics, readiness };
    (payment_http::accounts_router(state.clone(), limits), payment_http::operations_router(state, limits))
}
