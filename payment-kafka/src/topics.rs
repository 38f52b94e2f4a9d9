//! Creating the service's topics on a broker that lacks them. Kafka clusters often disable
//! automatic topic creation, and one created by a first producer gets the broker's defaults
//! rather than the partitions the consumer group is sized for; so at start the service asks for
//! its topics explicitly and says what it created.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, KafkaError};

/// How a missing topic is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicLayout {
    /// Partitions of each topic created; bounds how many consumers share `pay.order`.
    pub partitions: i32,
    /// Copies of each partition; 1 suits a single-broker cluster only.
    pub replication_factor: i32,
}

impl Default for TopicLayout {
    fn default() -> Self {
        Self { partitions: 3, replication_factor: 1 }
    }
}

/// Creates every configured topic (`pay.order`, the two outcome topics, the dead-letter topic)
/// that the cluster does not have; returns the names it created. A topic that exists is left as
/// it is, whatever its layout.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    layout: TopicLayout,
    timeout: Duration,
) -> Result<Vec<String>, KafkaError> {
    let missing = missing_topics(kafka, timeout).await?;
    if missing.is_empty() {
        return Ok(missing);
    }
    let admin: AdminClient<DefaultClientContext> = kafka.client(&[])?.create().map_err(KafkaError::Client)?;
    let wanted: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|name| NewTopic::new(name, layout.partitions, TopicReplication::Fixed(layout.replication_factor)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let answers = tokio::time::timeout(timeout + Duration::from_secs(1), admin.create_topics(&wanted, &options))
        .await
        .map_err(|_| KafkaError::Topics(format!("no answer within {timeout:?} to creating {missing:?}")))?
        .map_err(|error| KafkaError::Topics(format!("creating {missing:?}: {error}")))?;
    let mut created = Vec::new();
    for answer in answers {
        match answer {
            Ok(name) => {
                tracing::info!(topic = %name, partitions = layout.partitions, replication_factor = layout.replication_factor, "created a missing topic");
                created.push(name);
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(KafkaError::Topics(format!("{name}: {code}"))),
        }
    }
    Ok(created)
}

/// The configured topics the cluster's metadata does not list.
async fn missing_topics(kafka: &KafkaConfig, timeout: Duration) -> Result<Vec<String>, KafkaError> {
    let client: BaseConsumer = kafka.client(&[])?.create().map_err(KafkaError::Client)?;
    let wanted: Vec<String> = kafka.topics.all().iter().map(ToString::to_string).collect();
    // A metadata request blocks its thread; all topics are asked for, as naming one may create
    // it on a broker that auto-creates.
    tokio::task::spawn_blocking(move || {
        let metadata = client.fetch_metadata(None, timeout).map_err(|e| KafkaError::Topics(e.to_string()))?;
        let known: Vec<&str> = metadata.topics().iter().map(|topic| topic.name()).collect();
        Ok(wanted.into_iter().filter(|name| !known.contains(&name.as_str())).collect())
    })
    .await
    .map_err(|e| KafkaError::Topics(e.to_string()))?
}
