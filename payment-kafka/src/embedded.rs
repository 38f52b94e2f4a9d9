//! The embedded broker of `cargo run`: librdkafka's mock cluster, a Kafka-protocol broker inside
//! the process, so the service runs with no configuration and any Kafka client can talk to it.
//!
//! rdkafka's `MockCluster::new` creates its holder client without `bootstrap.servers` and with
//! rdkafka's default context, so librdkafka's first words at every `cargo run` were a `CONFWARN
//! … No bootstrap.servers configured` line, outside our log format. Here the holder is a client
//! of ours with `test.mock.num.brokers`, which gives it the mock's address from the start, and
//! a context that logs through `tracing`.
//!
//! `tests/secrets.rs` (end to end) checks that the start prints no librdkafka line of its own.

use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::ClientConfig;

use crate::librdkafka_log::TracingContext;

/// A mock cluster that lives as long as this value.
pub struct EmbeddedCluster {
    holder: BaseProducer<TracingContext>,
}

impl EmbeddedCluster {
    /// Starts a cluster of `brokers` brokers on loopback ports.
    pub fn start(brokers: u16) -> Result<Self, RdKafkaError> {
        // librdkafka writes what it logs inside `rd_kafka_new` straight to stderr, before any
        // callback is in place: here its notice that the mock cluster replaced the bootstrap
        // servers. Warnings and errors still show; the service logs the address itself.
        let holder: BaseProducer<TracingContext> = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            // syslog's 4, warning; `set_log_level` would only apply after `rd_kafka_new`.
            .set("log_level", "4")
            .create_with_context(TracingContext)?;
        let cluster = Self { holder };
        cluster.cluster()?;
        Ok(cluster)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: i32, replication_factor: i32) -> Result<(), RdKafkaError> {
        self.cluster()?.create_topic(topic, partitions, replication_factor)
    }

    /// The cluster's `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> Result<String, RdKafkaError> {
        Ok(self.cluster()?.bootstrap_servers())
    }

    fn cluster(&self) -> Result<rdkafka::mocking::MockCluster<'_, TracingContext>, RdKafkaError> {
        self.holder.client().mock_cluster().ok_or(RdKafkaError::MockCluster(RDKafkaErrorCode::Fail))
    }
}
