//! What the `payment-service` binary runs: [`Settings`] → a store (PostgreSQL, or in memory),
//! a Kafka cluster (or an embedded one) → [`PaymentService`] → an HTTP listener, until `stop`.

use std::future::Future;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use payment_core::app::DepositBatching;
use payment_core::memory::MemoryStore;
use payment_core::ports::{Outbox, Retention, RetentionPolicy, Store};
use payment_kafka::{ConsumerConfig, KafkaConfig, PublisherConfig, TopicLayout, Topics};
use payment_postgres::{PgConfig, PgStore};
use rdkafka::mocking::MockCluster;
use tokio_util::sync::CancellationToken;

use crate::settings::{RetentionCheck, Settings};
use crate::{PaymentService, ServiceError};

/// Partitions of each topic on the embedded broker.
const EMBEDDED_PARTITIONS: i32 = 4;
/// The mock cluster holds an empty fetch for its whole wait, even when a message arrives.
const EMBEDDED_FETCH_WAIT_MAX: Duration = Duration::from_millis(10);
/// How often the inbox retention is checked against `pay.order`'s again.
const RETENTION_RECHECK: Duration = Duration::from_secs(3600);
/// How long the start waits for the cluster's answer about topics and their retention.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the service until `stop` completes, then stops taking work, finishes the batch in hand,
/// flushes the outbox and returns. `metrics` is rendered at `/metrics`.
pub async fn run(
    settings: Settings,
    metrics: Option<PrometheusHandle>,
    stop: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let topics = Topics {
        pay_order: settings.topic_pay_order.clone(),
        order_paid: settings.topic_order_paid.clone(),
        order_payment_failed: settings.topic_order_payment_failed.clone(),
        dead_letter: settings.topic_dead_letter.clone(),
    };
    // The embedded broker lives on this task (it is not Send) until the service stops.
    let (embedded, brokers) = match &settings.kafka_brokers {
        Some(brokers) => (None, brokers.clone()),
        None => {
            let cluster = MockCluster::new(1).map_err(ServiceError::EmbeddedBroker)?;
            for topic in topics.all() {
                cluster.create_topic(topic, EMBEDDED_PARTITIONS, 1).map_err(ServiceError::EmbeddedBroker)?;
            }
            let brokers = cluster.bootstrap_servers();
            tracing::warn!(bootstrap_servers = %brokers, "KAFKA_BROKERS unset: embedded Kafka-protocol broker (librdkafka mock cluster) started; produce pay.order there");
            // On its own line, for a person to copy into a Kafka client.
            println!("Kafka bootstrap servers: {brokers}");
            (Some(cluster), brokers)
        }
    };
    let kafka = KafkaConfig { brokers, topics, extra: settings.kafka_properties.clone() };
    // Refuse a protected librdkafka override before anything else starts.
    kafka.check()?;
    let policy = settings.retention_policy();
    let consumer = ConsumerConfig {
        group_id: settings.kafka_group_id.clone(),
        batch_max_messages: settings.batch_max_messages,
        batch_linger: Duration::from_millis(settings.batch_linger_ms),
        fetch_wait_max: match embedded {
            Some(_) => EMBEDDED_FETCH_WAIT_MAX,
            None => Duration::from_millis(settings.kafka_fetch_wait_max_ms),
        },
        ..ConsumerConfig::default()
    };
    if embedded.is_none() {
        if settings.create_topics {
            let layout = TopicLayout {
                partitions: settings.topic_partitions,
                replication_factor: settings.topic_replication_factor,
            };
            payment_kafka::ensure_topics(&kafka, layout, ADMIN_TIMEOUT).await?;
        }
        let inbox = policy.inbox_max_age;
        if settings.inbox_retention_check == RetentionCheck::Refuse {
            payment_kafka::check_inbox_retention(&kafka, inbox, true, ADMIN_TIMEOUT).await?;
        }
        // Again every hour (a topic's retention can be raised while the service runs), with a
        // warning only; in `warn` mode the first check is this one, so the start does not wait
        // for a broker that is slow to answer (or never does: the mock cluster).
        let kafka = kafka.clone();
        let skip_first = settings.inbox_retention_check == RetentionCheck::Refuse;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RETENTION_RECHECK);
            if skip_first {
                every.tick().await;
            }
            loop {
                every.tick().await;
                if let Err(error) = payment_kafka::check_inbox_retention(&kafka, inbox, false, ADMIN_TIMEOUT).await {
                    tracing::warn!(%error, "the inbox retention could not be checked");
                }
            }
        });
    }
    match &settings.database_url {
        Some(url) => {
            let config = PgConfig { max_connections: settings.database_max_connections, ..PgConfig::default() };
            let store = PgStore::connect(url, &config).await?;
            store.migrate().await?;
            tracing::info!("PostgreSQL store ready, migrations applied");
            check_durability(&store, settings.database_allow_lost_commits).await?;
            serve(store, &settings, kafka, consumer, policy, metrics, stop).await
        }
        None => {
            tracing::warn!(
                "DATABASE_URL unset: IN-MEMORY STORE, NOT DURABLE — every account and payment is lost at exit"
            );
            serve(MemoryStore::new(), &settings, kafka, consumer, policy, metrics, stop).await
        }
    }
}

async fn serve<S: Store + Outbox + Retention>(
    store: S,
    settings: &Settings,
    kafka: KafkaConfig,
    consumer: ConsumerConfig,
    policy: RetentionPolicy,
    metrics: Option<PrometheusHandle>,
    stop: impl Future<Output = ()>,
) -> Result<(), ServiceError> {
    let publisher = PublisherConfig {
        batch_rows: settings.outbox_batch_rows,
        poll_interval: Duration::from_millis(settings.outbox_poll_ms),
        leader_give_up_after: Duration::from_secs(settings.outbox_leader_give_up_secs),
        linger: Duration::from_millis(settings.outbox_linger_ms),
        ..PublisherConfig::default()
    };
    let deposits = DepositBatching {
        max_requests: settings.deposit_batch_max_requests,
        linger: Duration::from_micros(settings.deposit_batch_linger_us),
        ..DepositBatching::default()
    };
    let mut service = PaymentService::new(store)
        .kafka(kafka, consumer, publisher)
        .retention(policy, Duration::from_secs(settings.retention_interval_seconds))
        .deposit_batching(deposits);
    if let Some(metrics) = metrics {
        service = service.metrics(metrics);
    }
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .map_err(|source| ServiceError::Listen { addr: settings.http_addr, source })?;
    let shutdown = CancellationToken::new();
    let running = service.start(&shutdown)?;
    let routes = running.accounts.clone().merge(running.operations.clone());
    let app = payment_http::with_request_tracing(payment_http::with_problem_fallbacks(routes));
    tracing::info!(addr = %settings.http_addr, "HTTP API listening");
    let http_shutdown = shutdown.clone();
    let http = axum::serve(listener, app).with_graceful_shutdown(async move { http_shutdown.cancelled().await });

    let stopping = async {
        tokio::select! {
            () = stop => tracing::info!("shutting down: no new work; finishing the batch in hand and flushing the outbox"),
            () = shutdown.cancelled() => {}
        }
        shutdown.cancel();
    };
    let (served, ()) = tokio::join!(async { http.await }, stopping);
    let stopped = running.stopped().await;
    served.map_err(ServiceError::Http)?;
    stopped?;
    tracing::info!("stopped");
    Ok(())
}

/// Refuses a server that can lose acknowledged commits, unless allowed (then warns loudly); the
/// `payment_database_durable` gauge says which (issue 18 (7), `docs/guarantees.md`).
async fn check_durability(store: &PgStore, allow_lost_commits: bool) -> Result<(), ServiceError> {
    let durability = store.durability().await?;
    let durable = !durability.loses_acknowledged_commits();
    metrics::gauge!(DATABASE_DURABLE).set(if durable { 1.0 } else { 0.0 });
    if durable {
        tracing::info!(%durability, "PostgreSQL keeps the commits it acknowledges");
        return Ok(());
    }
    if !allow_lost_commits {
        return Err(ServiceError::LostCommits(durability));
    }
    tracing::warn!(
        %durability,
        "DATABASE_ALLOW_LOST_COMMITS: POSTGRESQL CAN LOSE ACKNOWLEDGED COMMITS — a database crash can lose payments \
         whose events were published, and a re-send of such a command pays it again"
    );
    Ok(())
}

/// Gauge: 1 when PostgreSQL keeps every commit it acknowledged (`fsync` on, `synchronous_commit`
/// not `off`), 0 when it was started anyway with `DATABASE_ALLOW_LOST_COMMITS`.
pub const DATABASE_DURABLE: &str = "payment_database_durable";
