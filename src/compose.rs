//! The one composition of the crates: a store, optionally Kafka, the HTTP routers and the
//! background tasks (consumer, outbox publisher, retention), on the host's runtime.
//!
//! It installs nothing global: no metrics recorder, log subscriber or signal handler. The host
//! passes what it owns (a Prometheus handle, a [`CancellationToken`]) and mounts the routers
//! where it likes; the binary is one such host.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use payment_core::app::DepositBatching;
use payment_core::ports::{Outbox, Retention, RetentionPolicy, Store};
use payment_core::Payments;
use payment_http::identity::{GatewayHeader, Identity};
use payment_http::readiness::{probe_readiness, LastReadiness, ProbeSettings};
use payment_http::{ApiState, Limits};
use payment_kafka::{
    ConsumerConfig, ConsumerHealth, KafkaConfig, KafkaProbe, OutboxPublisher, PayOrderConsumer, PublisherConfig,
};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ServiceError;

/// How long `/readyz` waits for the Kafka cluster's answer.
const KAFKA_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A payment service over any store, configured piece by piece, then [`started`](Self::start).
///
/// Without [`kafka`](Self::kafka) it serves the HTTP API only (deposits, balances, statements);
/// payments then come in through [`Payments::pay_orders`].
pub struct PaymentService<S> {
    store: S,
    kafka: Option<KafkaParts>,
    retention: Option<(RetentionPolicy, Duration)>,
    limits: Limits,
    metrics: Option<PrometheusHandle>,
    deposit_batching: DepositBatching,
    identity: Identity,
    readiness_probe: ProbeSettings,
}

struct KafkaParts {
    config: KafkaConfig,
    consumer: ConsumerConfig,
    publisher: PublisherConfig,
}

impl<S: Store + Outbox + Retention> PaymentService<S> {
    /// A service over `store`, with no Kafka, no retention and the default HTTP limits.
    pub fn new(store: S) -> Self {
        Self {
            store,
            kafka: None,
            retention: None,
            limits: Limits::default(),
            metrics: None,
            deposit_batching: DepositBatching::default(),
            identity: Arc::new(GatewayHeader),
            readiness_probe: ProbeSettings::default(),
        }
    }

    /// Consume `pay.order` and publish the outbox on this cluster.
    pub fn kafka(mut self, config: KafkaConfig, consumer: ConsumerConfig, publisher: PublisherConfig) -> Self {
        self.kafka = Some(KafkaParts { config, consumer, publisher });
        self
    }

    /// Prune old inbox, outbox and idempotency rows every `every`.
    pub fn retention(mut self, policy: RetentionPolicy, every: Duration) -> Self {
        self.retention = Some((policy, every));
        self
    }

    /// Timeouts of the HTTP routers.
    pub fn http_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How concurrent deposits share a transaction (default: up to 64, lingering at most 2 ms).
    pub fn deposit_batching(mut self, batching: DepositBatching) -> Self {
        self.deposit_batching = batching;
        self
    }

    /// Who the caller of an account route is (default: the gateway's `X-User-Id`).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// How often `/readyz`'s background probe checks the store and Kafka (default: every 2 s).
    pub fn readiness_probe(mut self, probe: ProbeSettings) -> Self {
        self.readiness_probe = probe;
        self
    }

    /// Render this registry at `/metrics` (the host installs the recorder, once per process).
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Spawns the background tasks on the current runtime and returns the routers to mount. The
    /// tasks stop when `shutdown` is cancelled; [`Running::stopped`] waits for them.
    pub fn start(self, shutdown: &CancellationToken) -> Result<Running<S>, ServiceError> {
        let payments = Payments::new(self.store.clone()).with_deposit_batching(self.deposit_batching);
        let mut tasks = Tasks::new(shutdown.clone());
        let mut consumer_health = None;
        let mut probe = None;
        if let Some(kafka) = self.kafka {
            let consumer = PayOrderConsumer::new(&kafka.config, kafka.consumer, payments.clone())?;
            consumer_health = Some(consumer.health());
            let publisher = OutboxPublisher::new(&kafka.config, kafka.publisher, self.store.clone())?;
            probe = Some(KafkaProbe::new(&kafka.config, KAFKA_PROBE_TIMEOUT)?);
            tasks.spawn("pay.order consumer", consumer.run(shutdown.clone()));
            tasks.spawn("outbox publisher", publisher.run(shutdown.clone()));
        }
        if let Some((policy, every)) = self.retention {
            tasks.spawn("retention", crate::retention::run(self.store.clone(), policy, every, shutdown.clone()));
        }
        let readiness = probe.map(crate::http::kafka_readiness);
        let last = LastReadiness::default();
        let probing = probe_readiness(
            payments.clone(),
            readiness.clone(),
            self.readiness_probe,
            last.clone(),
            shutdown.clone().cancelled_owned(),
        );
        tasks.spawn("readiness probe", probing);
        let state = ApiState {
            payments: payments.clone(),
            metrics: self.metrics,
            readiness,
            identity: self.identity,
            probed: Some(last),
        };
        let (accounts, operations) = crate::http::routers(state, self.limits);
        Ok(Running { payments, accounts, operations, consumer_health, tasks })
    }
}

/// A started service: its routers, its use cases and its background tasks.
pub struct Running<S> {
    /// The use cases, for a host that also pays orders in process.
    pub payments: Payments<S>,
    /// `POST /accounts`, `POST /accounts/deposit`, `GET /accounts/balance`, `GET /accounts/ledger`;
    /// no fallback, so it merges or nests into any router.
    pub accounts: Router,
    /// `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.
    pub operations: Router,
    consumer_health: Option<ConsumerHealth>,
    tasks: Tasks,
}

impl<S> Running<S> {
    /// The consumer's counters, when Kafka is configured.
    pub fn consumer_health(&self) -> Option<&ConsumerHealth> {
        self.consumer_health.as_ref()
    }

    /// Waits until every background task has stopped. Cancel the shutdown token first; a task
    /// that ends on its own (it panicked) cancels it too, so the host stops instead of running
    /// half a service, and the error names the task.
    pub async fn stopped(self) -> Result<(), ServiceError> {
        self.tasks.join().await
    }
}

/// The background tasks, each named, so that one ending early is reported and not silent.
struct Tasks {
    set: JoinSet<(&'static str, bool)>,
    shutdown: CancellationToken,
}

impl Tasks {
    fn new(shutdown: CancellationToken) -> Self {
        Self { set: JoinSet::new(), shutdown }
    }

    fn spawn(&mut self, name: &'static str, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let shutdown = self.shutdown.clone();
        self.set.spawn(async move {
            let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(task)).await;
            let early = !shutdown.is_cancelled();
            match outcome {
                Err(_) => tracing::error!(task = name, "a background task panicked; stopping the service"),
                Ok(()) if early => {
                    tracing::error!(task = name, "a background task ended on its own; stopping the service")
                }
                Ok(()) => return (name, false),
            }
            shutdown.cancel();
            (name, true)
        });
    }

    async fn join(mut self) -> Result<(), ServiceError> {
        let mut failed = None;
        while let Some(joined) = self.set.join_next().await {
            match joined {
                Ok((name, true)) => failed = failed.or(Some(name)),
                Ok((_, false)) => {}
                Err(error) => {
                    tracing::error!(%error, "a background task could not be joined");
                    failed = failed.or(Some("unknown"));
                }
            }
        }
        failed.map_or(Ok(()), |task| Err(ServiceError::TaskEnded { task }))
    }
}
