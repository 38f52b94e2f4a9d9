//! What the `payment-service` binary runs: [`Settings`] → a store (PostgreSQL, or in memory),
//! a Kafka cluster (or an embedded one) → [`PaymentService`] → an HTTP listener, until `stop`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use payment_core::app::DepositBatching;
use payment_core::memory::MemoryStore;
use payment_core::ports::{Outbox, Retention, RetentionPolicy, Store};
use payment_http::readiness::ProbeSettings;
use payment_kafka::{ConsumerConfig, EmbeddedCluster, KafkaConfig, PublisherConfig, TopicLayout};
use payment_postgres::{PgConfig, PgStore};
use tokio_util::sync::CancellationToken;

use crate::settings::{Migrate, RetentionCheck, Settings};
use crate::{PaymentService, ServiceError};

/// Partitions of each topic on the embedded broker.
const EMBEDDED_PARTITIONS: i32 = 4;
/// The mock cluster holds an empty fetch for its whole wait, even when a message arrives.
const EMBEDDED_FETCH_WAIT_MAX: Duration = Duration::from_millis(10);
/// Requests in progress on the admin listener: probes and scrapes, a handful at a time.
const ADMIN_REQUESTS_MAX: usize = 32;
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
    let topics = settings.topics();
    let database_url = settings.database_url()?;
    let kafka_properties = settings.kafka_properties()?;
    if settings.require_external {
        let missing: Vec<&str> =
            [("DATABASE_URL", database_url.is_none()), ("KAFKA_BROKERS", settings.kafka_brokers.is_none())]
                .into_iter()
                .filter_map(|(name, missing)| missing.then_some(name))
                .collect();
        if !missing.is_empty() {
            return Err(ServiceError::NotExternal { missing: missing.join(" and ") });
        }
    }
    // The embedded broker lives on this task (it is not Send) until the service stops.
    let (embedded, brokers) = match &settings.kafka_brokers {
        Some(brokers) => (None, brokers.clone()),
        None => {
            let cluster = EmbeddedCluster::start(1).map_err(ServiceError::EmbeddedBroker)?;
            for topic in topics.all() {
                cluster.create_topic(topic, EMBEDDED_PARTITIONS, 1).map_err(ServiceError::EmbeddedBroker)?;
            }
            let brokers = cluster.bootstrap_servers().map_err(ServiceError::EmbeddedBroker)?;
            tracing::warn!(bootstrap_servers = %brokers, "KAFKA_BROKERS unset: embedded Kafka-protocol broker (librdkafka mock cluster) started; produce pay.order there");
            // On its own line, for a person to copy into a Kafka client.
            println!("Kafka bootstrap servers: {brokers}");
            (Some(cluster), brokers)
        }
    };
    let kafka = KafkaConfig { brokers, topics, extra: kafka_properties };
    // Refuse a protected librdkafka override before anything else starts.
    kafka.check()?;
    let policy = settings.retention_policy();
    let consumer = ConsumerConfig {
        group_id: settings.kafka_group_id.clone(),
        batch_max_messages: settings.batch_max_messages,
        max_batches_in_flight: settings.consumer_max_batches_in_flight,
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
    match &database_url {
        Some(url) => {
            if settings.consumer_max_batches_in_flight as u32 >= settings.database_max_connections {
                // Each batch in flight holds a connection: with none left, deposits, reads and the
                // publisher wait for the pool's acquire timeout behind the consumer.
                tracing::warn!(
                    max_batches_in_flight = settings.consumer_max_batches_in_flight,
                    database_max_connections = settings.database_max_connections,
                    "CONSUMER_MAX_BATCHES_IN_FLIGHT takes every database connection; raise DATABASE_MAX_CONNECTIONS"
                );
            }
            let config = PgConfig { max_connections: settings.database_max_connections, ..PgConfig::default() };
            let store = PgStore::connect(url.expose(), &config).await?;
            match settings.migrate {
                Migrate::Auto => {
                    store.migrate().await?;
                    tracing::info!("PostgreSQL store ready, migrations applied");
                }
                Migrate::Skip => {
                    store.check_schema().await?;
                    tracing::info!("PostgreSQL store ready, schema current (MIGRATE=skip)");
                }
            }
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
    let probe =
        ProbeSettings { interval: Duration::from_millis(settings.readiness_probe_ms), ..ProbeSettings::default() };
    service = service.identity(crate::http::identity(settings)?).readiness_probe(probe);
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr).await.map_err(|source| ServiceError::Listen { addr, source })
    };
    let listener = bind(settings.http_addr).await?;
    let admin_listener = match settings.admin_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let running = service.start(&shutdown)?;
    let edge = crate::http::edge_limits(settings);
    let finish = |router| payment_http::with_request_tracing(payment_http::with_problem_fallbacks(router));
    // With an admin listener the operation routes leave the public port: metrics and the
    // readiness verdict are for operators, not for whoever reaches the API.
    let (public, admin) = match admin_listener {
        Some(admin) => (finish(running.accounts.clone()), Some((admin, finish(running.operations.clone())))),
        None => (finish(running.accounts.clone().merge(running.operations.clone())), None),
    };
    let public = payment_http::edge::shed_load(public, settings.http_requests_max);
    tracing::info!(addr = %settings.http_addr, "HTTP API listening");
    let http = payment_http::edge::serve(listener, public, edge, shutdown.clone().cancelled_owned());
    let admin_http = async {
        let Some((listener, router)) = admin else { return Ok(()) };
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "admin listener (health, readiness, metrics, OpenAPI)");
        }
        let router = payment_http::edge::shed_load(router, ADMIN_REQUESTS_MAX);
        payment_http::edge::serve(listener, router, edge, shutdown.clone().cancelled_owned()).await
    };

    let stopping = async {
        tokio::select! {
            () = stop => tracing::info!("shutting down: no new work; finishing the batch in hand and flushing the outbox"),
            () = shutdown.cancelled() => {}
        }
        shutdown.cancel();
    };
    let (served, admin_served, ()) = tokio::join!(http, admin_http, stopping);
    let stopped = running.stopped().await;
    served.map_err(ServiceError::Http)?;
    admin_served.map_err(ServiceError::Http)?;
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
