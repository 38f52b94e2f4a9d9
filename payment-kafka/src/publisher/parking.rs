//! Parking: a row whose bytes the broker refuses for good ([`Refusal::Permanent`]: too large,
//! invalid record) is set aside with the broker's error ([`Outbox::park`]) so that it no longer
//! holds back, or multiplies, every row behind it.
//!
//! A parked row is not lost: it keeps its place in the outbox, is counted by
//! `payment_outbox_parked_rows`, listed by `payment-service outbox parked` and sent again once an
//! operator re-queues it (`payment-service outbox requeue [--since TIME]`, [`Outbox::requeue`])
//! after fixing the cause (a topic's `max.message.bytes`, say).
//!
//! [`Refusal::Permanent`]: super::refusal::Refusal::Permanent

use payment_core::ports::{Outbox, OutboxRecord, StoreError};
use rdkafka::error::KafkaError as RdKafkaError;

use super::OutboxPublisher;

impl<O: Outbox> OutboxPublisher<O> {
    /// Parks `row`, refused for good with `error`, and says so loudly.
    pub(super) async fn park(&self, row: &OutboxRecord, error: &RdKafkaError) -> Result<(), StoreError> {
        let topic = self.topics.of(row.event.kind);
        self.outbox.park(row.id, &error.to_string()).await?;
        tracing::error!(
            row = row.id,
            topic,
            %error,
            "the broker refused an outbox row for good; it is parked until an operator re-queues it \
             (payment-service outbox requeue)"
        );
        Ok(())
    }
}
