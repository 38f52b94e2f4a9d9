//! A host application that embeds the payment service: its own routes, fallback, health check
//! and Prometheus registry, with the accounts API mounted under `/payments` and the `pay.order`
//! consumer and the outbox publisher running on the host's runtime.
//!
//! ```text
//! KAFKA_BROKERS=localhost:9092 cargo run --example embed-in-axum
//! curl -XPOST localhost:3000/payments/accounts -H 'X-User-Id: 42'
//! ```

#![forbid(unsafe_code)]

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use payment_core::memory::MemoryStore;
use payment_kafka::{ConsumerConfig, KafkaConfig, PublisherConfig};
use payment_service::{PaymentService, ServiceError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the host until `shutdown` is cancelled, then waits for the payment tasks to stop.
pub async fn serve(
    listener: TcpListener,
    brokers: String,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let payments = PaymentService::new(MemoryStore::new())
        .kafka(KafkaConfig::new(brokers), ConsumerConfig::default(), PublisherConfig::default())
        .metrics(metrics.clone())
        .start(&shutdown)?;
    let app = Router::new()
        .route("/", get(|| async { "the shop" }))
        .route("/healthz", get(|| async { "the shop is alive" }))
        .route("/metrics", get(move || async move { metrics.render() }))
        .nest("/payments", payments.accounts.clone())
        .fallback(|| async { (StatusCode::NOT_FOUND, "the shop has no such page") });
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(ServiceError::Http)?;
    payments.stopped().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    // The host owns the process-wide pieces: the recorder, the signals, the listener.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "localhost:9092".into());
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 3000))).await?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    serve(listener, brokers, metrics, shutdown).await?;
    Ok(())
}
