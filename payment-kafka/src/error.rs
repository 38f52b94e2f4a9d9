//! This crate's errors.

/// Why the consumer or the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused the settings or could not create the client.
    #[error("cannot create the Kafka client: {0}")]
    Client(#[source] rdkafka::error::KafkaError),
    /// The consumer could not subscribe to `topic`.
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// [`KafkaConfig::extra`](crate::KafkaConfig::extra) names one of the
    /// [`PROTECTED_PROPERTIES`](crate::PROTECTED_PROPERTIES).
    #[error("the librdkafka property `{key}` may not be overridden: {reason}")]
    ProtectedProperty {
        /// The property.
        key: String,
        /// Which guarantee rests on it.
        reason: &'static str,
    },
    /// The cluster refused to create a missing topic, or did not answer; the text says which.
    #[error("cannot create the topics: {0}")]
    Topics(String),
    /// The inbox forgets message identities sooner than the broker keeps `topic`'s messages, and
    /// the check is set to refuse.
    #[error("{topic}: {shortfall}; a replay of older messages would pay them again (raise the inbox retention)")]
    InboxRetention {
        /// The topic whose messages outlive their inbox rows.
        topic: String,
        /// The two retentions, in words.
        shortfall: String,
    },
}
