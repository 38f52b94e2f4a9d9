//! Runs the service: a store, the HTTP API, the `pay.order` consumer, the outbox publisher and
//! retention, until SIGINT/SIGTERM; then stops taking work, finishes the batch and flushes.

use std::future::Future;
use std::time::Duration;

use payment_core::memory::MemoryStore;
use payment_core::ports::{Outbox, Retention, RetentionPolicy, Store};
use payment_core::Payments;
use payment_kafka::{
    ConsumerConfig, KafkaConfig, KafkaProbe, OutboxPublisher, PayOrderConsumer, PublisherConfig, Topics,
};
use payment_postgres::{PgConfig, PgStore};
use rdkafka::mocking::MockCluster;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::settings::{RetentionCheck, Settings};

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Postgres(#[from] payment_postgres::PostgresError),
    #[error(transparent)]
    Kafka(#[from] payment_kafka::KafkaError),
    #[error("cannot start the embedded Kafka broker: {0}")]
    MockCluster(#[source] rdkafka::error::KafkaError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
}

/// Partitions of each topic on the embedded broker.
const EMBEDDED_PARTITIONS: i32 = 4;

/// Runs until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> Result<(), ServiceError> {
    run_until(settings, shutdown_signal()).await
}

/// Runs until `stop` completes (embedding services and tests choose their own trigger).
pub async fn run_until(settings: Settings, stop: impl Future<Output = ()>) -> Result<(), ServiceError> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| ServiceError::Metrics(e.to_string()))?;
    let topics = Topics {
        pay_order: settings.topic_pay_order.clone(),
        order_paid: settings.topic_order_paid.clone(),
        order_payment_failed: settings.topic_order_payment_failed.clone(),
        dead_letter: settings.topic_dead_letter.clone(),
    };
    // The embedded broker lives on this task (it is not Send) until the service stops.
    let (_embedded, brokers) = match &settings.kafka_brokers {
        Some(brokers) => (None, brokers.clone()),
        None => {
            let cluster = MockCluster::new(1).map_err(ServiceError::MockCluster)?;
            for topic in [&topics.pay_order, &topics.order_paid, &topics.order_payment_failed, &topics.dead_letter] {
                cluster.create_topic(topic, EMBEDDED_PARTITIONS, 1).map_err(ServiceError::MockCluster)?;
            }
            let brokers = cluster.bootstrap_servers();
            tracing::warn!(bootstrap_servers = %brokers, "KAFKA_BROKERS unset: embedded Kafka-protocol broker (librdkafka mock cluster) started; produce pay.order there");
            (Some(cluster), brokers)
        }
    };
    let kafka = KafkaConfig { brokers, topics, extra: settings.kafka_properties.clone() };
    // Refuse a protected librdkafka override before anything else starts.
    kafka.check()?;
    if _embedded.is_none() {
        let refuse = settings.inbox_retention_check == RetentionCheck::Refuse;
        let inbox = policy(&settings).inbox_max_age;
        payment_kafka::check_inbox_retention(&kafka, inbox, refuse, Duration::from_secs(10)).await?;
    }
    match &settings.database_url {
        Some(url) => {
            let store = PgStore::connect(
                url,
                &PgConfig { max_connections: settings.database_max_connections, ..PgConfig::default() },
            )
            .await?;
            store.migrate().await?;
            tracing::info!("PostgreSQL store ready, migrations applied");
            serve(store, &settings, kafka, metrics, stop).await
        }
        None => {
            tracing::warn!(
                "DATABASE_URL unset: IN-MEMORY STORE, NOT DURABLE — every account and payment is lost at exit"
            );
            serve(MemoryStore::new(), &settings, kafka, metrics, stop).await
        }
    }
}

async fn serve<S: Store + Outbox + Retention>(
    store: S,
    settings: &Settings,
    kafka: KafkaConfig,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    stop: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let payments = Payments::new(store.clone());
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let consumer_config = ConsumerConfig {
        group_id: settings.kafka_group_id.clone(),
        batch_max_messages: settings.batch_max_messages,
        batch_linger: settings.batch_linger(),
        ..ConsumerConfig::default()
    };
    let consumer = PayOrderConsumer::new(&kafka, consumer_config, payments.clone())?;
    tasks.spawn(consumer.run(shutdown.clone()));
    let publisher_config = PublisherConfig {
        batch_rows: settings.outbox_batch_rows,
        poll_interval: Duration::from_millis(settings.outbox_poll_ms),
        leader_give_up_after: Duration::from_secs(settings.outbox_leader_give_up_secs),
        ..PublisherConfig::default()
    };
    let publisher = OutboxPublisher::new(&kafka, publisher_config, store.clone())?;
    tasks.spawn(publisher.run(shutdown.clone()));
    tasks.spawn(retention(
        store.clone(),
        policy(settings),
        Duration::from_secs(settings.retention_interval_seconds),
        shutdown.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .map_err(|source| ServiceError::Listen { addr: settings.http_addr, source })?;
    tracing::info!(addr = %settings.http_addr, "HTTP API listening");
    let probe = KafkaProbe::new(&kafka, Duration::from_secs(2))?;
    let app = crate::http::app(payments, metrics, probe);
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move { http_shutdown.cancelled().await });
        if let Err(error) = serve.await {
            tracing::error!(%error, "HTTP server failed");
        }
    });

    stop.await;
    tracing::info!("shutting down: no new work; finishing the batch in hand and flushing the outbox");
    shutdown.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(())
}

fn policy(settings: &Settings) -> RetentionPolicy {
    const HOUR: u64 = 3600;
    RetentionPolicy {
        inbox_max_age: Duration::from_secs(settings.inbox_retention_hours * HOUR),
        published_outbox_max_age: Duration::from_secs(settings.outbox_retention_hours * HOUR),
        idempotency_max_age: Duration::from_secs(settings.idempotency_retention_hours * HOUR),
        ..RetentionPolicy::default()
    }
}

async fn retention<S: Retention>(store: S, policy: RetentionPolicy, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(error) = store.prune(policy).await {
            tracing::warn!(%error, "retention pass failed; will retry at the next interval");
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the service");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
