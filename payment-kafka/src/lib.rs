//! # payment-kafka
//!
//! The Kafka transport of `payment-core` (rdkafka), generic over the core's ports so the embedded
//! default (in-memory store, mock cluster) and production (PostgreSQL, Kafka) run the same code:
//!
//! - [`PayOrderConsumer`] reads `pay.order` on a fetch thread of its own, in bounded batches,
//!   applies each batch in one unit of work (poison included: it becomes a dead letter in the same
//!   transaction; a command the store itself refuses is isolated by halving the batch and
//!   dead-lettered as `store_rejected`) and stores offsets only after the commit;
//!   [`ConsumerHealth`] counts its stalls, client replacements, rebalances and closes;
//! - [`OutboxPublisher`] publishes committed outbox rows (`order.paid`, `order.payment_failed`,
//!   `pay.order.dlq`) with an idempotent producer, one active publisher per store; it waits out
//!   an outage of the broker or of a destination (missing topic, authorisation) and parks only a
//!   record the broker refuses for good, instead of letting it block the rows behind it;
//! - [`ensure_topics`] creates missing topics on a real cluster;
//! - [`check_inbox_retention`] compares the inbox retention with `pay.order`'s at start.
//!
//! The librdkafka properties the guarantees rest on ([`PROTECTED_PROPERTIES`]) cannot be
//! overridden through [`KafkaConfig::extra`]: constructors refuse them.
//!
//! # Example
//!
//! Consume `pay.order` into a store and publish its outbox, until Ctrl-C (this needs a broker, so
//! it is only compiled here):
//!
//! ```no_run
//! use payment_core::memory::MemoryStore;
//! use payment_core::Payments;
//! use payment_kafka::{ConsumerConfig, KafkaConfig, OutboxPublisher, PayOrderConsumer, PublisherConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Any store with the core's ports, e.g. `payment_postgres::PgStore` for a durable one.
//! let store = MemoryStore::new();
//! let payments = Payments::new(store.clone());
//!
//! let kafka = KafkaConfig::new("localhost:9092");
//! let consumer = PayOrderConsumer::new(&kafka, ConsumerConfig::default(), payments)?;
//! let health = consumer.health(); // stalls, client replacements, rebalances
//! let publisher = OutboxPublisher::new(&kafka, PublisherConfig::default(), store)?;
//!
//! let shutdown = CancellationToken::new();
//! let consuming = tokio::spawn(consumer.run(shutdown.clone()));
//! let publishing = tokio::spawn(publisher.run(shutdown.clone()));
//!
//! tokio::signal::ctrl_c().await?;
//! shutdown.cancel(); // the batch in hand commits or is left for redelivery; offsets follow commits
//! consuming.await?;
//! publishing.await?;
//! println!("stalls: {}", health.stalls());
//! # Ok(())
//! # }
//! ```
//!
//! Run [`ensure_topics`] first on a cluster that does not create topics itself, and
//! [`check_inbox_retention`] to compare the store's inbox retention with the topic's.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod consumer;
mod embedded;
mod error;
mod librdkafka_log;
mod probe;
mod publisher;
mod retention;
pub mod telemetry;
mod topics;
pub mod trace_context;

pub use config::{
    is_sensitive_property, ConsumerConfig, KafkaConfig, PublisherConfig, Topics, DEFAULT_MAX_BATCHES_IN_FLIGHT,
    PROTECTED_PROPERTIES,
};
pub use consumer::{ConsumerHealth, PayOrderConsumer, StuckPartition};
pub use embedded::EmbeddedCluster;
pub use error::KafkaError;
pub use librdkafka_log::TracingContext;
pub use probe::KafkaProbe;
pub use publisher::OutboxPublisher;
pub use retention::{check_inbox_retention, inbox_covers, pay_order_retention, TopicRetention};
pub use topics::{ensure_topics, TopicLayout};
