//! The outbox publisher: one active instance per store (the leader lock), woken by commits with a
//! slow poll as fallback, producing with an idempotent producer (`acks=all`) and marking rows
//! published only once the broker acknowledged them (SPEC §5).
//!
//! # When the broker says no
//!
//! A round produces the oldest unpublished rows and then walks the deliveries in id order:
//!
//! - acknowledged: the row is marked published;
//! - refused for good ([`Refusal::Permanent`]: too large, unknown or invalid topic, not
//!   authorised, invalid record): the row is sent once more on its own, because a broker refuses a
//!   whole batch for one bad record and the others must not pay for it. Refused again, it is
//!   *parked* ([`Outbox::park`]) with the broker's error, and the walk goes on: one bad row no
//!   longer holds back, or multiplies, every row behind it. Accepted alone, it is marked and the
//!   walk stops there, as below;
//! - the first transient failure (broker down, timeout, not enough replicas, queue full): the
//!   walk stops. That row and every row after it stay unpublished and are sent again next round,
//!   after a backoff (at least once), so no event of an order overtakes an earlier one for good.
//!
//! A fatal producer error (the idempotent producer lost its state, [`RDKafkaErrorCode::Fatal`])
//! is the producer's fault, not the rows': nothing of that round is parked, and the producer is
//! rebuilt from the configuration it was made from.
//!
//! A leader that publishes and parks nothing for `leader_give_up_after` while rows wait releases
//! its lock and waits `leader_retry_interval` before trying to lead again, so a standby, whose
//! connection to the broker may be healthy, can take over.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use payment_core::ports::{Leadership, Outbox, OutboxRecord, StoreError, Wakeups};
use payment_core::Backoff;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaConfig, PublisherConfig, Topics};
use crate::{telemetry, KafkaError};

/// How often the leader reads the backlog and parked gauges, on a task of their own: a count over
/// an outbox full of rows published since the last vacuum takes tens of milliseconds, which no
/// event should wait for.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a round of publishing stopped short.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the broker did not acknowledge outbox row {id}: {error}")]
    Delivery { id: i64, error: RdKafkaError },
    #[error("the producer failed fatally ({code:?}: {reason}); it is rebuilt and the rows are sent again")]
    FatalProducer { code: RDKafkaErrorCode, reason: String },
}

/// What a failed delivery says about its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The broker may take the row later: it stays in the outbox and is retried.
    Transient,
    /// The broker will never take the row as it is: it is parked.
    Permanent,
    /// The producer itself is unusable: it is rebuilt and the row retried.
    FatalProducer,
}

/// Classifies the error of one delivery: the errors `send` returns when enqueueing (librdkafka's
/// local checks, e.g. its own `MSG_SIZE_TOO_LARGE` against `message.max.bytes`) and those of the
/// delivery report (the broker's answer) share one `MessageProduction` code.
fn refusal(error: &RdKafkaError) -> Refusal {
    use RDKafkaErrorCode as Code;
    let RdKafkaError::MessageProduction(code) = error else {
        // e.g. `Canceled`: the producer went away under the delivery; nothing is known about the row.
        return Refusal::Transient;
    };
    match code {
        Code::Fatal => Refusal::FatalProducer,
        // The record: larger than the producer's or the broker's limit (same code for both),
        // corrupt, or refused by the broker's validation.
        Code::MessageSizeTooLarge
        | Code::InvalidMessageSize
        | Code::MessageBatchTooLarge
        | Code::InvalidMessage
        | Code::InvalidRecord
        // The destination: librdkafka reports an unknown topic only after
        // `topic.metadata.propagation.max.ms`, so a topic being created is waited for.
        | Code::InvalidTopic
        | Code::UnknownTopic
        | Code::UnknownTopicOrPartition
        | Code::UnknownPartition
        | Code::TopicAuthorizationFailed
        | Code::ClusterAuthorizationFailed => Refusal::Permanent,
        // Everything else, including `InvalidDifferentRecord` (another record of the batch was
        // the invalid one), may go through on a later attempt.
        _ => Refusal::Transient,
    }
}

/// What one round did.
#[derive(Debug, Default)]
struct Round {
    /// Rows read from the outbox.
    read: usize,
    published: usize,
    parked: usize,
    /// Why the round stopped short; the rows it did not settle are sent again.
    stopped: Option<PublishError>,
}

impl Round {
    fn progressed(&self) -> bool {
        self.published + self.parked > 0
    }
}

/// How a term as leader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Shutdown,
    LostLock,
    GaveUp,
}

/// Reads the backlog and parked gauges every [`GAUGE_INTERVAL`] until `stop`.
async fn report_gauges<O: Outbox>(outbox: O, stop: CancellationToken) {
    let mut every = tokio::time::interval(GAUGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Ok(backlog) = outbox.backlog().await {
            metrics::gauge!(telemetry::OUTBOX_BACKLOG).set(backlog as f64);
        }
        if let Ok(parked) = outbox.parked().await {
            metrics::gauge!(telemetry::OUTBOX_PARKED).set(parked as f64);
        }
    }
}

/// Moves committed outbox rows to their topics.
pub struct OutboxPublisher<O: Outbox> {
    outbox: O,
    /// What `producer` was made from, to make another after a fatal error.
    client: ClientConfig,
    producer: FutureProducer,
    topics: Topics,
    config: PublisherConfig,
}

impl<O: Outbox> OutboxPublisher<O> {
    /// Creates the idempotent producer (`acks=all`); publishing starts with [`run`](Self::run). A
    /// protected property in [`KafkaConfig::extra`] is an error.
    pub fn new(kafka: &KafkaConfig, config: PublisherConfig, outbox: O) -> Result<Self, KafkaError> {
        let client = kafka.client(&[
            ("enable.idempotence", "true".into()),
            ("acks", "all".into()),
            ("message.timeout.ms", config.delivery_timeout.as_millis().to_string()),
            ("linger.ms", config.linger.as_millis().to_string()),
            // Below the delivery timeout, so a topic that does not exist fails its rows as
            // unknown (parked) rather than as timed out (retried forever).
            ("topic.metadata.propagation.max.ms", (config.delivery_timeout / 2).as_millis().to_string()),
        ])?;
        let producer = client.create().map_err(KafkaError::Client)?;
        Ok(Self { outbox, client, producer, topics: kafka.topics.clone(), config })
    }

    /// Runs until `shutdown`: waits for leadership, publishes while leading, and flushes at the end.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        while !shutdown.is_cancelled() {
            match self.outbox.try_lead().await {
                Ok(Some(leader)) => {
                    backoff.reset();
                    tracing::info!("outbox publisher is the leader");
                    metrics::gauge!(telemetry::PUBLISHER_LEADING).set(1.0);
                    let term = self.lead(leader, &shutdown).await;
                    metrics::gauge!(telemetry::PUBLISHER_LEADING).set(0.0);
                    if term == Term::GaveUp {
                        // The lock is free now; a standby polling for it gets its chance first.
                        pause(&shutdown, self.config.leader_retry_interval).await;
                    }
                }
                Ok(None) => {
                    tracing::debug!("another publisher leads; standing by");
                    pause(&shutdown, self.config.leader_retry_interval).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reach the store to take the publisher lock");
                    pause(&shutdown, backoff.next_wait()).await;
                }
            }
        }
        if let Err(error) = self.producer.flush(self.config.delivery_timeout) {
            tracing::warn!(%error, "producer not flushed at shutdown; unacknowledged rows stay in the outbox");
        }
        tracing::info!("outbox publisher stopped");
    }

    /// Publishes while `leader` holds the lock. Returning drops `leader`, which releases the lock.
    async fn lead(&mut self, leader: O::Leader, shutdown: &CancellationToken) -> Term {
        let gauges = shutdown.child_token();
        tokio::spawn(report_gauges(self.outbox.clone(), gauges.clone()));
        // Stops the gauges however the term ends.
        let _gauges = gauges.drop_guard();
        self.publish_while_leading(leader, shutdown).await
    }

    /// Rounds of publishing, each after checking the lock, until the term ends.
    async fn publish_while_leading(&mut self, mut leader: O::Leader, shutdown: &CancellationToken) -> Term {
        let mut wakeups = match self.outbox.wakeups().await {
            Ok(wakeups) => Some(wakeups),
            Err(error) => {
                tracing::warn!(%error, "no commit notifications; polling only");
                None
            }
        };
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        // The last time this leader moved a row, or found none waiting.
        let mut last_progress = Instant::now();
        while !shutdown.is_cancelled() {
            if !leader.still_leading().await {
                tracing::warn!("outbox publisher lost its leadership");
                return Term::LostLock;
            }
            let round = self.publish_round().await;
            if round.progressed() || (round.read == 0 && round.stopped.is_none()) {
                last_progress = Instant::now();
            }
            match round.stopped {
                None if round.read == 0 => {
                    backoff.reset();
                    self.idle(&mut wakeups, shutdown).await;
                }
                None => backoff.reset(),
                Some(error) => {
                    metrics::counter!(telemetry::OUTBOX_PUBLISH_FAILURES).increment(1);
                    let stuck_for = last_progress.elapsed();
                    if stuck_for >= self.config.leader_give_up_after {
                        metrics::counter!(telemetry::PUBLISHER_GAVE_UP).increment(1);
                        tracing::warn!(
                            %error,
                            ?stuck_for,
                            retry_in = ?self.config.leader_retry_interval,
                            "outbox publisher published nothing for too long; giving up the leadership so another \
                             instance can try"
                        );
                        return Term::GaveUp;
                    }
                    let wait = backoff.next_wait();
                    tracing::warn!(%error, ?wait, "publishing failed; the rows stay in the outbox and are retried");
                    pause(shutdown, wait).await;
                }
            }
        }
        Term::Shutdown
    }

    /// Waits for a commit notification, the poll interval, or shutdown.
    async fn idle(&self, wakeups: &mut Option<O::Wakeups>, shutdown: &CancellationToken) {
        let notified = async {
            match wakeups.as_mut() {
                Some(w) => {
                    if let Err(error) = w.next().await {
                        tracing::warn!(%error, "commit notifications lost; polling only");
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = notified => {}
            _ = tokio::time::sleep(self.config.poll_interval) => {}
        }
    }

    /// Produces the oldest unpublished rows, then marks the acknowledged ones and parks the ones
    /// refused for good, in id order, up to the first transient failure (see the module docs).
    async fn publish_round(&mut self) -> Round {
        let mut round = Round::default();
        let rows = match self.outbox.unpublished(self.config.batch_rows).await {
            Ok(rows) => rows,
            Err(error) => {
                round.stopped = Some(error.into());
                return round;
            }
        };
        round.read = rows.len();
        if rows.is_empty() {
            return round;
        }
        // The futures enqueue in order when first polled; the idempotent producer keeps that
        // order per partition, hence per order id (the key).
        let deliveries = join_all(rows.iter().map(|row| self.produce(row))).await;
        let mut acked: Vec<&OutboxRecord> = Vec::new();
        for (row, delivery) in rows.iter().zip(deliveries) {
            let Err(error) = delivery else {
                acked.push(row);
                continue;
            };
            if self.refusal(&error) != Refusal::Permanent {
                round.stopped = Some(PublishError::Delivery { id: row.id, error });
                break;
            }
            // Nothing else is in flight now: alone, the row is judged on its own bytes.
            match self.produce(row).await {
                Ok(()) => {
                    tracing::info!(
                        row = row.id,
                        %error,
                        "outbox row refused with its batch but accepted alone; the rows after it are sent again"
                    );
                    acked.push(row);
                    break;
                }
                Err(error) if self.refusal(&error) == Refusal::Permanent => match self.park(row, &error).await {
                    Ok(()) => round.parked += 1,
                    Err(store) => {
                        round.stopped = Some(store.into());
                        break;
                    }
                },
                Err(error) => {
                    round.stopped = Some(PublishError::Delivery { id: row.id, error });
                    break;
                }
            }
        }
        if let Err(error) = self.mark(&acked).await {
            round.stopped = Some(error.into());
        } else {
            round.published = acked.len();
        }
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            self.rebuild_producer();
            round.stopped = Some(PublishError::FatalProducer { code, reason });
        }
        round
    }

    fn refusal(&self, error: &RdKafkaError) -> Refusal {
        // After a fatal error every delivery fails, whatever code it carries.
        if self.producer.client().fatal_error().is_some() {
            return Refusal::FatalProducer;
        }
        refusal(error)
    }

    async fn mark(&self, acked: &[&OutboxRecord]) -> Result<(), StoreError> {
        let Some(first) = acked.first() else { return Ok(()) };
        let ids: Vec<i64> = acked.iter().map(|row| row.id).collect();
        self.outbox.mark_published(&ids).await?;
        let now = Utc::now();
        for row in acked {
            let lag = (now - row.created_at).to_std().unwrap_or_default();
            metrics::histogram!(telemetry::OUTBOX_PUBLISH_LAG_SECONDS).record(lag.as_secs_f64());
        }
        metrics::counter!(telemetry::OUTBOX_PUBLISHED).increment(ids.len() as u64);
        tracing::debug!(rows = ids.len(), first = first.id, "outbox rows published");
        Ok(())
    }

    async fn park(&self, row: &OutboxRecord, error: &RdKafkaError) -> Result<(), StoreError> {
        let topic = self.topics.of(row.event.kind);
        self.outbox.park(row.id, &error.to_string()).await?;
        tracing::error!(
            row = row.id,
            topic,
            %error,
            "the broker refused an outbox row for good; it is parked until an operator re-queues it"
        );
        Ok(())
    }

    /// Replaces a producer that failed fatally. Every delivery of the round has completed, so the
    /// old one holds no record; a row it may have written is sent again (at least once).
    fn rebuild_producer(&mut self) {
        match self.client.create() {
            Ok(producer) => {
                self.producer = producer;
                metrics::counter!(telemetry::PUBLISHER_PRODUCER_REBUILDS).increment(1);
                tracing::warn!("the producer failed fatally and was rebuilt");
            }
            Err(error) => tracing::error!(%error, "cannot rebuild the failed producer; trying again next round"),
        }
    }

    async fn produce(&self, row: &OutboxRecord) -> Result<(), RdKafkaError> {
        let event = &row.event;
        let headers = event
            .headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(value) }));
        let mut record =
            FutureRecord::<String, Vec<u8>>::to(self.topics.of(event.kind)).payload(&event.payload).headers(headers);
        if let Some(key) = &event.key {
            record = record.key(key);
        }
        self.producer.send(record, self.config.delivery_timeout).await.map(drop).map_err(|(error, _)| error)
    }
}

async fn pause(shutdown: &CancellationToken, wait: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(wait) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produce_error(code: RDKafkaErrorCode) -> Refusal {
        refusal(&RdKafkaError::MessageProduction(code))
    }

    #[test]
    fn a_row_the_broker_cannot_take_is_refused_for_good() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidMessageSize,
            RDKafkaErrorCode::MessageBatchTooLarge,
            RDKafkaErrorCode::InvalidMessage,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::InvalidTopic,
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::UnknownPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::ClusterAuthorizationFailed,
        ] {
            assert_eq!(produce_error(code), Refusal::Permanent, "{code:?}");
        }
    }

    #[test]
    fn a_broker_in_trouble_is_waited_for() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::RequestTimedOut,
            RDKafkaErrorCode::NotEnoughReplicas,
            RDKafkaErrorCode::NotEnoughReplicasAfterAppend,
            RDKafkaErrorCode::LeaderNotAvailable,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::NetworkException,
            RDKafkaErrorCode::InvalidDifferentRecord,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
        ] {
            assert_eq!(produce_error(code), Refusal::Transient, "{code:?}");
        }
        assert_eq!(refusal(&RdKafkaError::Canceled), Refusal::Transient);
    }

    #[test]
    fn a_fatal_error_blames_the_producer() {
        assert_eq!(produce_error(RDKafkaErrorCode::Fatal), Refusal::FatalProducer);
    }
}
