//! The `pay.order` and `refund.order` consumer: bounded batches (which may mix both topics, decided
//! together in the order received), one unit of work each, offsets stored only after it commits
//! (SPEC §4.6, §5).
//!
//! # Two halves: a fetch thread and an async applier
//!
//! A dedicated OS thread owns the Kafka client (a `BaseConsumer`) and does nothing but poll it
//! ([`fetch`]): it decodes messages into bounded batches and hands them over to the async side,
//! which applies each batch in one unit of work ([`Payments::pay_orders`]) and reports the
//! committed offsets back; only then does the thread store them. Offsets are stored
//! with `enable.auto.offset.store=false` and committed by librdkafka's auto-commit, which only
//! commits what was stored — so a batch that has not committed in the database is never
//! acknowledged to Kafka, on revoke or shutdown included. A batch that fails for a transient
//! reason is retried with backoff until it commits; if the process dies in between, the batch is
//! delivered again and the inbox turns the replay into a no-op. A batch the store refuses twice
//! is split until the refused command is alone, which is dead-lettered as `store_rejected`
//! ([`Payments::pay_orders_isolating`]); its offsets are stored once every part committed.
//!
//! # Lanes: batches of disjoint partitions side by side
//!
//! One batch at a time on one connection can never pass what one connection does. So the async
//! side runs `max_batches_in_flight` lanes, each with its own hand-over channel of one and its
//! own unit of work at a time (so its own database connection); every partition is pinned to one
//! lane ([`lanes`]), which keeps each partition's commands in order and its acknowledgements in
//! order, while lanes holding other partitions apply at the same time. Two lanes touching the
//! same account or order wait for each other's locks (taken in one sorted order, so without a
//! cycle); a race that still ends in a conflict error (unique violation, serialization failure,
//! deadlock detected) is transient, so it is retried, never dead-lettered. Shutdown and a client
//! replacement wait for every lane's batches before the client is closed; a revocation does not
//! wait (it is served inside `poll`): a batch fetched before a rebalance stores no offset when it
//! commits (`offsets.rs`), and its messages, read again by the partitions' owner, are
//! redeliveries.
//!
//! # Why not rust-rdkafka's `StreamConsumer`
//!
//! Its `recv` future registers a waker that librdkafka's queue callback wakes only when the
//! consumer queue goes from empty to non-empty. Before sleeping, the future polls the queue with
//! a zero timeout, and such a poll returns "nothing" after serving one non-message event (an
//! offset-commit result every auto-commit interval, a rebalance). With two events at the head of
//! the queue and messages behind them, the future goes to sleep on a queue that never becomes
//! empty again, so the callback never fires: the consumer stalls with a backlog in hand until some
//! timer drops the future (the 30 s stalls seen under a 100,000-message backlog). Dropping `recv`
//! inside `select!` (the linger deadline, shutdown) re-arms it only at the next call. A thread
//! blocked in `poll(timeout)` has no wake-up protocol to lose: librdkafka signals its condition
//! variable on every enqueue, and a poll that served an event is simply followed by the next one.
//! The same thread is the only place a client is ever closed or destroyed, so no librdkafka call
//! that can block (a close waiting on a rebalance) runs on an async worker.
//!
//! # Watchdog and close
//!
//! As a last line of defence against a librdkafka client that holds back messages (rust-rdkafka
//! #597), the thread replaces its client when, for `stall_timeout`, it asked for messages, none
//! arrived, and the statistics show messages on a reachable broker past this member's position in
//! partitions it owns. An idle, caught-up partition never counts. [`ConsumerHealth`] exposes the
//! stalls, replacements and rebalances, so the absence of stalls is observable.
//!
//! Closing (at shutdown or replacement) stops fetching, lets the applier finish or abandon the
//! batch in hand, stores what committed, commits, unsubscribes and serves the revocation, then
//! destroys the client — on a thread, within `close_timeout` (12 s by default: above the session
//! timeout, which bounds a close that meets a join round); a close that overruns is logged and
//! left behind instead of hanging the service.

mod context;
mod fetch;
mod health;
mod lanes;
mod offsets;
mod unreadable;

use std::time::{Duration, Instant};

use payment_core::decide::Outcome;
use payment_core::ports::Store;
use payment_core::Backoff;
use payment_core::Payments;
use rdkafka::ClientConfig;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use health::ConsumerHealth;
pub use unreadable::StuckPartition;

use self::fetch::{Batch, Fetcher};
use self::offsets::Ack;
use crate::config::{ConsumerConfig, KafkaConfig};
use crate::{telemetry, KafkaError};

/// Beyond `close_timeout`: how long [`PayOrderConsumer::run`] waits for the fetch thread to report
/// that it closed (or left behind) its client.
const CLOSE_MARGIN: Duration = Duration::from_secs(1);

/// Consumes `pay.order` and applies it through [`Payments::pay_orders`].
pub struct PayOrderConsumer<S: Store> {
    kafka: KafkaConfig,
    payments: Payments<S>,
    config: ConsumerConfig,
    health: ConsumerHealth,
}

impl<S: Store> PayOrderConsumer<S> {
    /// Checks the settings (a protected librdkafka property, or one librdkafka refuses, is an
    /// error here); the client itself is created by [`run`](Self::run).
    pub fn new(kafka: &KafkaConfig, config: ConsumerConfig, payments: Payments<S>) -> Result<Self, KafkaError> {
        client_config(kafka, &config)?.create_native_config().map_err(KafkaError::Client)?;
        Ok(Self { kafka: kafka.clone(), payments, config, health: ConsumerHealth::default() })
    }

    /// The consumer's counters; valid before, during and after [`run`](Self::run).
    pub fn health(&self) -> ConsumerHealth {
        self.health.clone()
    }

    /// Runs until `shutdown`: every lane's batch in hand is finished (or, if it cannot commit,
    /// left for redelivery), committed offsets are stored and committed, and the consumer leaves
    /// its group. Returns within about `close_timeout` of `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let lanes = self.config.max_batches_in_flight.max(1);
        tracing::info!(topic = %self.kafka.topics.pay_order, refund_topic = %self.kafka.topics.refund_order, group = %self.config.group_id, max_batches_in_flight = lanes, "pay.order consumer started");
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes).map(|_| mpsc::channel::<Batch>(1)).unzip();
        let (acks, ack_receiver) = std::sync::mpsc::channel();
        let (exited, exit) = oneshot::channel::<()>();
        let fetcher = Fetcher {
            kafka: self.kafka.clone(),
            config: self.config.clone(),
            health: self.health.clone(),
            stop: shutdown.clone(),
            batches: senders,
            acks: ack_receiver,
        };
        let spawned = std::thread::Builder::new().name("pay-order-fetch".into()).spawn(move || {
            fetcher.run();
            let _ = exited.send(());
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the pay.order fetch thread; the consumer does not run");
            return;
        }
        // The lanes run as futures of this one task: the work is waiting on the database, and
        // borrowing `self` keeps every lane inside `run`, so none outlives the consumer.
        let lanes: Vec<_> = receivers.into_iter().map(|batches| self.lane(batches, acks.clone(), &shutdown)).collect();
        drop(acks);
        futures::future::join_all(lanes).await;
        match tokio::time::timeout(self.config.close_timeout + CLOSE_MARGIN, exit).await {
            Ok(_) => tracing::info!("pay.order consumer stopped"),
            Err(_) => tracing::error!(
                bound = ?self.config.close_timeout,
                "the pay.order fetch thread did not stop in time; leaving it behind"
            ),
        }
    }

    /// One lane: applies the batches handed to it one after the other, reporting each commit.
    /// Ends at shutdown (once the batch in hand committed or was abandoned) or when the fetch
    /// thread is gone; dropping `acks` then tells the fetch thread that no more commits will come
    /// from this lane.
    async fn lane(
        &self,
        mut batches: mpsc::Receiver<Batch>,
        acks: std::sync::mpsc::Sender<Ack>,
        shutdown: &CancellationToken,
    ) {
        loop {
            let batch = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                batch = batches.recv() => batch,
            };
            // `None`: the fetch thread ended (it only does so on shutdown).
            let Some(batch) = batch else { break };
            let applying = self.health.applying();
            let committed = self.apply(&batch, shutdown).await;
            drop(applying);
            if !committed {
                break;
            }
            self.health.batch_committed(batch.messages.len());
            if acks.send(batch.ack()).is_err() {
                break;
            }
        }
    }

    /// Applies the batch until it commits. `false` when shutting down before it could.
    async fn apply(&self, batch: &Batch, shutdown: &CancellationToken) -> bool {
        let identities: Vec<&str> = batch.messages.iter().map(|m| m.identity.as_str()).collect();
        let span = tracing::info_span!(
            "pay_order_batch",
            messages = batch.messages.len(),
            ?identities,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty
        );
        crate::trace_context::link_commands(&span, &batch.messages);
        let started_at = std::time::SystemTime::now();
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        loop {
            let started = Instant::now();
            // A command the store refuses every time is set aside (dead-lettered as
            // `store_rejected`) instead of blocking the partition; a transient error comes back
            // here and the batch is retried whole, its committed parts then being redeliveries.
            match self.payments.pay_orders_isolating(&batch.messages).instrument(span.clone()).await {
                Ok(outcomes) => {
                    record(&outcomes, started);
                    crate::trace_context::record_apply_spans(&span, &batch.messages, &outcomes, started_at);
                    return true;
                }
                Err(error) => {
                    metrics::counter!(telemetry::BATCH_FAILURES).increment(1);
                    let wait = backoff.next_wait();
                    span.in_scope(
                        || tracing::warn!(%error, ?wait, "batch not committed; retrying it, no offset stored"),
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => {
                            tracing::warn!("shutting down with an uncommitted batch; it will be delivered again");
                            return false;
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// The librdkafka settings of the consumer; the properties the guarantees rest on are ours.
fn client_config(kafka: &KafkaConfig, config: &ConsumerConfig) -> Result<ClientConfig, KafkaError> {
    kafka.client(&[
        ("group.id", config.group_id.clone()),
        ("enable.auto.offset.store", "false".into()),
        ("enable.auto.commit", "true".into()),
        ("auto.offset.reset", "earliest".into()),
        ("session.timeout.ms", config.session_timeout.as_millis().to_string()),
        ("statistics.interval.ms", config.statistics_interval.as_millis().to_string()),
        ("fetch.wait.max.ms", config.fetch_wait_max.as_millis().to_string()),
    ])
}

fn record(outcomes: &[Outcome], started: Instant) {
    metrics::counter!(telemetry::BATCHES).increment(1);
    metrics::histogram!(telemetry::BATCH_MESSAGES).record(outcomes.len() as f64);
    metrics::histogram!(telemetry::BATCH_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
    for outcome in outcomes {
        metrics::counter!(telemetry::COMMANDS, "outcome" => outcome.name()).increment(1);
        match outcome {
            Outcome::DeadLettered { reason } => {
                metrics::counter!(telemetry::DEAD_LETTERS, "reason" => reason.as_str()).increment(1)
            }
            Outcome::Refunded { .. } => metrics::counter!(telemetry::REFUNDS).increment(1),
            Outcome::RefundFailed { reason, .. } => {
                metrics::counter!(telemetry::REFUND_FAILURES, "reason" => reason.as_str()).increment(1)
            }
            _ => {}
        }
    }
}
