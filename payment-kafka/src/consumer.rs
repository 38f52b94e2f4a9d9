//! The `pay.order` consumer: bounded batches, one unit of work each, offsets stored only after it
//! commits (SPEC §4.6, §5).
//!
//! Offsets are stored with `enable.auto.offset.store=false` and committed by librdkafka's
//! auto-commit, which only ever commits what was stored — so a batch that has not committed in the
//! database is never acknowledged to Kafka, on revoke or shutdown included. A batch that fails is
//! retried with backoff until it commits; if the process dies in between, the batch is delivered
//! again and the inbox turns the replay into a no-op.
//!
//! After a broker outage a librdkafka client may stop handing over messages of a partition it
//! still owns (rust-rdkafka#597; seen here with the mock cluster: a new client reads them fine).
//! A watchdog therefore replaces the client whenever its statistics report messages past the
//! stored offsets but none arrived for `stall_timeout`; the partitions restart at the committed
//! offsets, so at worst a batch is delivered again and the inbox ignores it.

use std::collections::BTreeMap;
use std::time::Instant;

use payment_core::decide::Outcome;
use payment_core::domain::{Inbound, Origin};
use payment_core::ports::Store;
use payment_core::Payments;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Backoff, ConsumerConfig, KafkaConfig};
use crate::context::PayOrderContext;
use crate::{telemetry, KafkaError};

/// Consumes `pay.order` and applies it through [`Payments::pay_orders`].
pub struct PayOrderConsumer<S: Store> {
    kafka: KafkaConfig,
    consumer: Client,
    payments: Payments<S>,
    config: ConsumerConfig,
}

type Client = StreamConsumer<PayOrderContext>;

/// A batch read from the broker: the decoded messages and the last offset per partition.
struct Batch {
    messages: Vec<Inbound>,
    last_offsets: BTreeMap<(String, i32), i64>,
}

/// What waiting for messages gave.
enum Next {
    Batch(Batch),
    /// Messages wait on the broker but the client hands none over: replace the client.
    Stalled,
    Shutdown,
}

impl<S: Store> PayOrderConsumer<S> {
    pub fn new(kafka: &KafkaConfig, config: ConsumerConfig, payments: Payments<S>) -> Result<Self, KafkaError> {
        let consumer = connect(kafka, &config)?;
        Ok(Self { kafka: kafka.clone(), consumer, payments, config })
    }

    /// Runs until `shutdown`: the batch in hand is finished (or, if it cannot commit, left for
    /// redelivery), stored offsets are committed, and the consumer leaves its group.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(topic = %self.kafka.topics.pay_order, group = %self.config.group_id, "pay.order consumer started");
        loop {
            match self.next_batch(&shutdown).await {
                Next::Shutdown => break,
                Next::Stalled => match connect(&self.kafka, &self.config) {
                    // Dropping the old client commits what it stored and leaves the group.
                    Ok(fresh) => {
                        self.consumer = fresh;
                        tracing::warn!(
                            "replaced a stalled Kafka client; its partitions resume at the committed offsets"
                        );
                    }
                    Err(error) => tracing::error!(%error, "cannot replace the stalled Kafka client; keeping it"),
                },
                Next::Batch(batch) => {
                    if !self.apply(&batch, &shutdown).await {
                        break;
                    }
                    self.store_offsets(&batch);
                }
            }
        }
        // Commit what was stored before leaving, so the next owner starts right after it.
        if let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "nothing to commit at shutdown");
        }
        tracing::info!("pay.order consumer stopped");
    }

    /// Waits for one message, then gathers more until the batch is full or has lingered enough.
    async fn next_batch(&self, shutdown: &CancellationToken) -> Next {
        let mut batch = Batch { messages: Vec::new(), last_offsets: BTreeMap::new() };
        let mut deadline = None;
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        while batch.messages.len() < self.config.batch_max_messages.max(1) {
            let received = match deadline {
                None => tokio::select! {
                    _ = shutdown.cancelled() => return Next::Shutdown,
                    _ = tokio::time::sleep(self.config.stall_timeout) => {
                        if self.consumer.context().unconsumed_messages() > 0 {
                            tracing::warn!(timeout = ?self.config.stall_timeout, "messages wait on the broker but none arrive");
                            return Next::Stalled;
                        }
                        continue;
                    }
                    received = self.consumer.recv() => received,
                },
                Some(deadline) => tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(deadline) => break,
                    received = self.consumer.recv() => received,
                },
            };
            match received {
                Ok(message) => {
                    backoff.reset();
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.config.batch_linger);
                    batch.last_offsets.insert((message.topic().to_string(), message.partition()), message.offset());
                    batch.messages.push(decode(&message));
                }
                Err(error) => {
                    // Broker or network trouble: librdkafka reconnects by itself; nothing was read.
                    tracing::warn!(%error, "receiving from Kafka failed; retrying");
                    tokio::time::sleep(backoff.next_wait()).await;
                }
            }
        }
        if batch.messages.is_empty() {
            Next::Shutdown
        } else {
            Next::Batch(batch)
        }
    }

    /// Applies the batch until it commits. `false` when shutting down before it could.
    async fn apply(&self, batch: &Batch, shutdown: &CancellationToken) -> bool {
        let identities: Vec<&str> = batch.messages.iter().map(|m| m.identity.as_str()).collect();
        let span = tracing::info_span!("pay_order_batch", messages = batch.messages.len(), ?identities);
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        loop {
            let started = Instant::now();
            match self.payments.pay_orders(&batch.messages).instrument(span.clone()).await {
                Ok(outcomes) => {
                    record(&outcomes, started);
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

    fn store_offsets(&self, batch: &Batch) {
        for ((topic, partition), offset) in &batch.last_offsets {
            // Fails when the partition was revoked meanwhile: its new owner re-reads the batch,
            // which the inbox then ignores.
            if let Err(error) = self.consumer.store_offset(topic, *partition, *offset) {
                tracing::info!(%error, topic, partition, offset, "offset not stored; the partition moved");
            }
        }
    }
}

fn connect(kafka: &KafkaConfig, config: &ConsumerConfig) -> Result<Client, KafkaError> {
    let consumer: Client = kafka
        .client(&[
            ("group.id", config.group_id.clone()),
            ("enable.auto.offset.store", "false".into()),
            ("enable.auto.commit", "true".into()),
            ("auto.offset.reset", "earliest".into()),
            ("session.timeout.ms", config.session_timeout.as_millis().to_string()),
            ("statistics.interval.ms", config.statistics_interval.as_millis().to_string()),
        ])
        .create_with_context(PayOrderContext::default())
        .map_err(KafkaError::Client)?;
    let topic = &kafka.topics.pay_order;
    consumer.subscribe(&[topic]).map_err(|source| KafkaError::Subscribe { topic: topic.clone(), source })?;
    Ok(consumer)
}

fn decode(message: &BorrowedMessage<'_>) -> Inbound {
    let header = message.headers().and_then(|headers| {
        headers.iter().find(|h| h.key == "message-id").and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
    });
    let origin =
        Origin { topic: message.topic().to_string(), partition: message.partition(), offset: message.offset() };
    Inbound::decode(message.payload().unwrap_or_default(), header, origin)
}

fn record(outcomes: &[Outcome], started: Instant) {
    metrics::counter!(telemetry::BATCHES).increment(1);
    metrics::histogram!(telemetry::BATCH_MESSAGES).record(outcomes.len() as f64);
    metrics::histogram!(telemetry::BATCH_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
    for outcome in outcomes {
        metrics::counter!(telemetry::COMMANDS, "outcome" => outcome.name()).increment(1);
        if let Outcome::DeadLettered { reason } = outcome {
            metrics::counter!(telemetry::DEAD_LETTERS, "reason" => reason.as_str()).increment(1);
        }
    }
}
