//! This crate's errors.

/// Why the consumer or the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("cannot create the Kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe { topic: String, source: rdkafka::error::KafkaError },
    #[error("the librdkafka property `{key}` may not be overridden: {reason}")]
    ProtectedProperty { key: String, reason: &'static str },
    #[error("cannot create the topics: {0}")]
    Topics(String),
    #[error("{topic}: {shortfall}; a replay of older messages would pay them again (raise the inbox retention)")]
    InboxRetention { topic: String, shortfall: String },
}
