//! The outbox publisher: one active instance per store (the leader lock), woken by commits with a
//! slow poll as fallback, producing with an idempotent producer (`acks=all`) and marking rows
//! published only once the broker acknowledged them (SPEC §5).
//!
//! One job per file:
//!
//! - [`leadership`]: who publishes (the store's lock, stand-by, stepping down, giving up);
//! - [`round`]: one round of produce-then-walk in id order, and the lock check inside it;
//! - [`refusal`]: what a failed delivery says about its row (an outage is waited for, only a
//!   refused record is parked);
//! - [`parking`]: setting such a record aside, and how it comes back;
//! - [`gauges`]: backlog, parked rows and the age of the oldest waiting row.
//!
//! # Order
//!
//! Rows are produced in id order, which is commit order per order id (the events of one order
//! come from transactions that lock its account), keyed by order id, through an idempotent
//! producer that keeps the order of a partition across its own retries. A row left unsettled by
//! a round is sent again, and so is every later row of its key, so a later event of a key is
//! never marked while an earlier one is not. What a consumer may rely on (and what a delivery
//! timeout does to it) is in `docs/kafka-contract.md`.

mod gauges;
mod leadership;
mod parking;
mod refusal;
mod round;

use std::time::Duration;

use payment_core::ports::{Outbox, OutboxRecord};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaConfig, PublisherConfig, Topics};
use crate::{telemetry, trace_context, KafkaError};
use tracing::Instrument;

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
            // unknown (named so in the logs) rather than as timed out; both are retried.
            ("topic.metadata.propagation.max.ms", (config.delivery_timeout / 2).as_millis().to_string()),
        ])?;
        let producer = client.create().map_err(KafkaError::Client)?;
        Ok(Self { outbox, client, producer, topics: kafka.topics.clone(), config })
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
        let topic = self.topics.of(event.kind);
        // The span of sending this row: a child of the span that applied its command, so the
        // event continues the command's trace in the tracing backend as on the wire.
        let span = tracing::info_span!(
            "publish",
            otel.kind = "producer",
            messaging.destination.name = %topic,
            event_type = event.kind.as_str(),
            outbox_id = row.id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let trace_headers = event.trace.as_ref().map(trace_context::headers_of).unwrap_or_default();
        if let Some(trace) = &event.trace {
            trace_context::continue_in(&span, trace);
        }
        let headers = event
            .headers
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .chain(trace_headers.iter().map(|(key, value)| (*key, value.as_str())))
            .fold(OwnedHeaders::new(), |headers, (key, value)| headers.insert(Header { key, value: Some(value) }));
        let mut record = FutureRecord::<String, Vec<u8>>::to(topic).payload(&event.payload).headers(headers);
        if let Some(key) = &event.key {
            record = record.key(key);
        }
        self.producer
            .send(record, self.config.delivery_timeout)
            .instrument(span)
            .await
            .map(drop)
            .map_err(|(error, _)| error)
    }
}

async fn pause(shutdown: &CancellationToken, wait: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(wait) => {}
    }
}
