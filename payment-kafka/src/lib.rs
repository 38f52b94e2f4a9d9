//! # payment-kafka
//!
//! The Kafka transport of `payment-core` (rdkafka), generic over the core's ports so the embedded
//! default (in-memory store, mock cluster) and production (PostgreSQL, Kafka) run the same code:
//!
//! - [`PayOrderConsumer`] reads `pay.order` in bounded batches, applies each batch in one unit of
//!   work (poison included: it becomes a dead letter in the same transaction) and stores offsets
//!   only after the commit;
//! - [`OutboxPublisher`] publishes committed outbox rows (`order.paid`, `order.payment_failed`,
//!   `pay.order.dlq`) with an idempotent producer, one active publisher per store.

mod config;
mod consumer;
mod error;
mod probe;
mod publisher;
pub mod telemetry;

pub use config::{ConsumerConfig, KafkaConfig, PublisherConfig, Topics, PROTECTED_PROPERTIES};
pub use consumer::{ConsumerHealth, PayOrderConsumer};
pub use error::KafkaError;
pub use probe::KafkaProbe;
pub use publisher::OutboxPublisher;
