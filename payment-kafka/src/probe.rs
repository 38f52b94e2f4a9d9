//! A readiness probe: can this process reach the Kafka cluster right now?

use std::time::Duration;

use rdkafka::producer::{BaseProducer, Producer};

use crate::{KafkaConfig, KafkaError};

/// Asks the cluster for its metadata; cheap enough for a readiness endpoint.
pub struct KafkaProbe {
    client: BaseProducer,
    timeout: Duration,
}

impl KafkaProbe {
    /// A probe with its own client; `timeout` bounds each [`check`](Self::check).
    pub fn new(kafka: &KafkaConfig, timeout: Duration) -> Result<Self, KafkaError> {
        let client = kafka.client(&[])?.create().map_err(KafkaError::Client)?;
        Ok(Self { client, timeout })
    }

    /// `Err` with the reason when no broker answers within the timeout. Blocks: call it from a
    /// blocking task.
    pub fn check(&self) -> Result<(), String> {
        let metadata = self.client.client().fetch_metadata(None, self.timeout).map_err(|e| e.to_string())?;
        if metadata.brokers().is_empty() {
            return Err("the cluster reports no brokers".into());
        }
        Ok(())
    }
}
