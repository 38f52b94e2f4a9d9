//! The HTTP application of the service: the payment-http router with this process's metrics.

use std::sync::Arc;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use payment_core::ports::Store;
use payment_core::Payments;
use payment_http::{router, ApiState, Limits, ReadinessCheck};
use payment_kafka::KafkaProbe;

/// `/readyz` also asks Kafka, as the consumer and the publisher need it.
pub fn app<S: Store>(payments: Payments<S>, metrics: PrometheusHandle, kafka: KafkaProbe) -> Router {
    let kafka = Arc::new(kafka);
    let readiness: ReadinessCheck = Arc::new(move || {
        let kafka = kafka.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || kafka.check()).await.unwrap_or_else(|e| Err(e.to_string()))
        })
    });
    router(ApiState { payments, metrics: Some(metrics), readiness: Some(readiness) }, Limits::default())
}
