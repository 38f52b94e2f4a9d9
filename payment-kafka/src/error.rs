//! This crate's errors.

use rdkafka::error::KafkaError as RdKafkaError;

use crate::config::is_sensitive_property;

/// Why the consumer or the publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused the settings or could not create the client. The message leaves out
    /// the value of a [sensitive](crate::is_sensitive_property) property, and the librdkafka
    /// error is deliberately not a `source`, so that no error chain prints it either.
    #[error("cannot create the Kafka client: {}", redacted(.0))]
    Client(rdkafka::error::KafkaError),
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

/// librdkafka's text for `error`, without the value of a sensitive property: a refused
/// `ssl.key.password` must not end up in a log line. librdkafka repeats the value inside its own
/// description, so it is cut from there too.
fn redacted(error: &RdKafkaError) -> String {
    match error {
        RdKafkaError::ClientConfig(_, description, key, value) if is_sensitive_property(key) => {
            let description =
                if value.is_empty() { description.clone() } else { description.replace(value.as_str(), "[redacted]") };
            format!("{description} (property `{key}`, value redacted)")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::config::RDKafkaLogLevel;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::ClientConfig;

    use super::*;

    #[test]
    fn a_refused_secret_property_is_not_echoed() {
        let planted = "hunter2-planted";
        let mut config = ClientConfig::new();
        config.set_log_level(RDKafkaLogLevel::Emerg);
        // An unknown property whose name marks it secret: librdkafka refuses it with its value.
        config.set("ssl.key.passwordz", planted);
        let error = match config.create::<BaseConsumer>() {
            Err(error) => KafkaError::Client(error),
            Ok(_) => panic!("librdkafka accepted an unknown property"),
        };
        let text = error.to_string();
        assert!(!text.contains(planted), "{text}");
        assert!(text.contains("ssl.key.passwordz"), "the property is named: {text}");
        assert!(!format!("{error:?}").is_empty());
    }
}
