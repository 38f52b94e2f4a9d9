//! One round of publishing: produce the oldest unpublished rows, then walk their deliveries in id
//! order —
//!
//! - acknowledged: the row is marked published (only after the broker's acknowledgement), unless
//!   an earlier row of its key was left unsettled in this round: then it is sent again after that
//!   one next round, so the last copy of each event of an order comes after the last copy of
//!   every earlier event of that order;
//! - refused for good ([`Refusal::Permanent`]: too large, invalid record): the row is sent once
//!   more on its own, because a broker refuses a whole batch for one bad record and the others
//!   must not pay for it. Refused again, it is parked. Accepted alone, it is marked, and the rows
//!   after it that failed (refused with its batch) are left for the next round;
//! - a transient failure (broker down, timeout, not enough replicas, queue full, a topic
//!   missing, an authorisation withdrawn): the row stays unpublished and is sent again next
//!   round, after a backoff (at least once). Rows after it are no longer judged alone or parked
//!   in this round, but those acknowledged are marked: an outage of one topic does not re-send
//!   every row behind it round after round.
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

use std::collections::HashSet;

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

/// What judging a refused row decided.
enum Judged {
    Accepted,
    Parked,
    Unsettled(PublishError),
    /// Not sent: the lock is lost.
    NotLeading,
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
        // Keys of the rows this round leaves unsettled: a later row of such a key is sent again
        // after it, even when acknowledged now, so that the last copy of each event of a key
        // comes after the last copy of every earlier one.
        let mut held: HashSet<&str> = HashSet::new();
        // Rows are judged (sent alone, parked) only up to the first row left unsettled: after
        // an outage or a batch refused as a whole, the refusals say nothing about the rows.
        let mut judging = true;
        for (row, delivery) in rows.iter().zip(deliveries) {
            let key = row.event.key.as_deref();
            let error = match delivery {
                Ok(()) if key.is_some_and(|key| held.contains(key)) => continue,
                Ok(()) => {
                    acked.push(row);
                    continue;
                }
                Err(error) => error,
            };
            let refusal = self.refusal(&error);
            if judging && refusal == Refusal::Permanent {
                // The deliveries may have taken a delivery timeout: still the leader? If not,
                // nothing more is sent; what the broker acknowledged is still marked.
                let judged = if leader.still_leading().await {
                    self.judge_alone(row, &error).await
                } else {
                    round.stopped = Some(PublishError::LostLeadership);
                    Judged::NotLeading
                };
                match judged {
                    Judged::Accepted => {
                        acked.push(row);
                        // The rows after it were refused with its batch: sent again next round.
                        judging = false;
                        continue;
                    }
                    Judged::Parked => {
                        round.parked += 1;
                        continue;
                    }
                    Judged::Unsettled(stopped) => {
                        round.stopped.get_or_insert(stopped);
                    }
                    Judged::NotLeading => {}
                }
            } else if refusal != Refusal::Permanent {
                round.stopped.get_or_insert(PublishError::Delivery { id: row.id, error });
            }
            judging = false;
            if let Some(key) = key {
                held.insert(key);
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

    /// Sends a row refused for good with its batch once more on its own: nothing else is in
    /// flight now, so it is judged on its own bytes. Refused again, it is parked.
    async fn judge_alone(&self, row: &OutboxRecord, refused: &RdKafkaError) -> Judged {
        match self.produce(row).await {
            Ok(()) => {
                tracing::info!(
                    row = row.id,
                    error = %refused,
                    "outbox row refused with its batch but accepted alone; the rows after it are sent again"
                );
                Judged::Accepted
            }
            Err(error) if self.refusal(&error) == Refusal::Permanent => match self.park(row, &error).await {
                Ok(()) => Judged::Parked,
                Err(store) => Judged::Unsettled(store.into()),
            },
            Err(error) => Judged::Unsettled(PublishError::Delivery { id: row.id, error }),
        }
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
