//! The outbox publisher: one active instance per store (the leader lock), woken by commits with a
//! slow poll as fallback, producing with an idempotent producer (`acks=all`) and marking rows
//! published only once the broker acknowledged them (SPEC §5).

use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use payment_core::ports::{Leadership, Outbox, OutboxRecord, StoreError, Wakeups};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::config::{Backoff, KafkaConfig, PublisherConfig, Topics};
use crate::{telemetry, KafkaError};

/// Why a round of publishing stopped short.
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the broker did not acknowledge outbox row {id}: {error}")]
    Delivery { id: i64, error: rdkafka::error::KafkaError },
}

/// Moves committed outbox rows to their topics.
pub struct OutboxPublisher<O: Outbox> {
    outbox: O,
    producer: FutureProducer,
    topics: Topics,
    config: PublisherConfig,
}

impl<O: Outbox> OutboxPublisher<O> {
    pub fn new(kafka: &KafkaConfig, config: PublisherConfig, outbox: O) -> Result<Self, KafkaError> {
        let producer: FutureProducer = kafka
            .client(&[
                ("enable.idempotence", "true".into()),
                ("acks", "all".into()),
                ("message.timeout.ms", config.delivery_timeout.as_millis().to_string()),
            ])?
            .create()
            .map_err(KafkaError::Client)?;
        Ok(Self { outbox, producer, topics: kafka.topics.clone(), config })
    }

    /// Runs until `shutdown`: waits for leadership, publishes while leading, and flushes at the end.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        while !shutdown.is_cancelled() {
            match self.outbox.try_lead().await {
                Ok(Some(leader)) => {
                    backoff.reset();
                    tracing::info!("outbox publisher is the leader");
                    metrics::gauge!(telemetry::PUBLISHER_LEADING).set(1.0);
                    self.lead(leader, &shutdown).await;
                    metrics::gauge!(telemetry::PUBLISHER_LEADING).set(0.0);
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

    async fn lead(&self, mut leader: O::Leader, shutdown: &CancellationToken) {
        let mut wakeups = match self.outbox.wakeups().await {
            Ok(wakeups) => Some(wakeups),
            Err(error) => {
                tracing::warn!(%error, "no commit notifications; polling only");
                None
            }
        };
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        while !shutdown.is_cancelled() {
            if !leader.still_leading().await {
                tracing::warn!("outbox publisher lost its leadership");
                return;
            }
            match self.publish_round().await {
                Ok(0) => {
                    backoff.reset();
                    self.idle(&mut wakeups, shutdown).await;
                }
                Ok(_) => backoff.reset(),
                Err(error) => {
                    metrics::counter!(telemetry::OUTBOX_PUBLISH_FAILURES).increment(1);
                    let wait = backoff.next_wait();
                    tracing::warn!(%error, ?wait, "publishing failed; the rows stay in the outbox and are retried");
                    pause(shutdown, wait).await;
                }
            }
        }
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

    /// Produces the oldest unpublished rows and marks the acknowledged ones. Returns how many rows
    /// were published.
    async fn publish_round(&self) -> Result<usize, PublishError> {
        let rows = self.outbox.unpublished(self.config.batch_rows).await?;
        if let Ok(backlog) = self.outbox.backlog().await {
            metrics::gauge!(telemetry::OUTBOX_BACKLOG).set(backlog as f64);
        }
        if rows.is_empty() {
            return Ok(0);
        }
        // The futures enqueue in order when first polled; the idempotent producer keeps that
        // order per partition, hence per order id (the key).
        let deliveries = join_all(rows.iter().map(|row| self.produce(row))).await;
        // Only the prefix before the first failure is marked: later rows are sent again next
        // round (at least once), so no event of an order overtakes an earlier one for good.
        let acked = deliveries.iter().take_while(|d| d.is_ok()).count();
        let ids: Vec<i64> = rows[..acked].iter().map(|r| r.id).collect();
        if !ids.is_empty() {
            self.outbox.mark_published(&ids).await?;
            let now = Utc::now();
            for row in &rows[..acked] {
                let lag = (now - row.created_at).to_std().unwrap_or_default();
                metrics::histogram!(telemetry::OUTBOX_PUBLISH_LAG_SECONDS).record(lag.as_secs_f64());
            }
            metrics::counter!(telemetry::OUTBOX_PUBLISHED).increment(ids.len() as u64);
            tracing::debug!(rows = ids.len(), first = ids[0], "outbox rows published");
        }
        match deliveries.into_iter().zip(&rows).find_map(|(d, row)| d.err().map(|e| (row.id, e))) {
            Some((id, error)) => Err(PublishError::Delivery { id, error }),
            None => Ok(acked),
        }
    }

    async fn produce(&self, row: &OutboxRecord) -> Result<(), rdkafka::error::KafkaError> {
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
