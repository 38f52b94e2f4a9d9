//! One round of publishing: produce the oldest unpublished rows, then walk their deliveries in id
//! order —
//!
//! - acknowledged: the row is marked published (only after the broker's acknowledgement);
//! - refused for good ([`Refusal::Permanent`]: too large, invalid record): the row is sent once
//!   more on its own, because a broker refuses a whole batch for one bad record and the others
//!   must not pay for it. Refused again, it is parked and the walk goes on. Accepted alone, it is
//!   marked and the walk stops there, as below;
//! - the first transient failure (broker down, timeout, not enough replicas, queue full, a topic
//!   missing, an authorisation withdrawn): the walk stops. That row and every row after it stay
//!   unpublished and are sent again next round, after a backoff (at least once).
//!
//! A fatal producer error is the producer's fault, not the rows': nothing of that round is
//! parked, and the producer is rebuilt.
//!
//! # Fencing
//!
//! A round can last a delivery timeout (30 s by default) and then re-send rows one by one. The
//! leader checks its lock before each of those later sends and parks: a leader that lost its lock
//! connection mid-round (a standby may hold the lock by now and be publishing the same rows) stops
//! there instead of re-sending rows behind the new leader's back, which could put an older event
//! of an order after a newer one (issue 18 (5)). Rows already acknowledged are still marked: the
//! mark is idempotent and only saves the new leader duplicates.

use chrono::Utc;
use futures::future::join_all;
use payment_core::ports::{Leadership, Outbox, OutboxRecord, StoreError};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use super::refusal::{refusal, Refusal};
use super::OutboxPublisher;
use crate::telemetry;

/// Why a round of publishing stopped short.
#[derive(Debug, thiserror::Error)]
pub(super) enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the broker did not acknowledge outbox row {id}: {error}")]
    Delivery { id: i64, error: RdKafkaError },
    #[error("the producer failed fatally ({code:?}: {reason}); it is rebuilt and the rows are sent again")]
    FatalProducer { code: RDKafkaErrorCode, reason: String },
    #[error("the publisher lost its lock during a round; it stops sending")]
    LostLeadership,
}

/// What one round did.
#[derive(Debug, Default)]
pub(super) struct Round {
    /// Rows read from the outbox.
    pub read: usize,
    pub published: usize,
    pub parked: usize,
    /// Why the round stopped short; the rows it did not settle are sent again.
    pub stopped: Option<PublishError>,
}

impl Round {
    pub fn progressed(&self) -> bool {
        self.published + self.parked > 0
    }

    pub fn lost_leadership(&self) -> bool {
        matches!(self.stopped, Some(PublishError::LostLeadership))
    }
}

impl<O: Outbox> OutboxPublisher<O> {
    /// Produces the oldest unpublished rows, then marks the acknowledged ones and parks the ones
    /// refused for good, in id order, up to the first transient failure (see the module docs).
    pub(super) async fn publish_round(&mut self, leader: &mut O::Leader) -> Round {
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
            // The deliveries may have taken a delivery timeout: still the leader?
            if !leader.still_leading().await {
                round.stopped = Some(PublishError::LostLeadership);
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
        match self.mark(&acked).await {
            Ok(()) => round.published = acked.len(),
            Err(error) => round.stopped = Some(error.into()),
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
}
