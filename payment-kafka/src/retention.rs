//! Is the inbox remembered longer than Kafka keeps `pay.order`? A message is recognised as a
//! redelivery only while its inbox row exists; a replay (a consumer group reset, a new group) of a
//! message older than the inbox retention would be applied again. So at start the service asks the
//! broker for the topic's `retention.ms` and warns, or refuses to start, when the inbox forgets
//! sooner.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::{KafkaConfig, KafkaError};

/// How long the broker keeps a topic's messages, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRetention {
    /// `retention.ms = -1`.
    Unlimited,
    /// `retention.ms`, as a duration.
    Limited(Duration),
    /// The broker did not say (an old broker, no permission, the embedded mock cluster): why.
    NotReported(String),
}

/// Whether an inbox kept for `inbox_max_age` covers a topic kept for `topic`. `Err` says why not.
pub fn inbox_covers(inbox_max_age: Duration, topic: &TopicRetention) -> Result<(), String> {
    match topic {
        TopicRetention::Unlimited => {
            Err(format!("the topic keeps messages for ever but the inbox forgets them after {inbox_max_age:?}"))
        }
        TopicRetention::Limited(kept) if *kept > inbox_max_age => {
            Err(format!("the topic keeps messages for {kept:?} but the inbox forgets them after {inbox_max_age:?}"))
        }
        TopicRetention::Limited(_) | TopicRetention::NotReported(_) => Ok(()),
    }
}

/// Asks the cluster for the `retention.ms` of `pay.order`.
pub async fn pay_order_retention(kafka: &KafkaConfig, timeout: Duration) -> Result<TopicRetention, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client(&[])?.create().map_err(KafkaError::Client)?;
    let topic = ResourceSpecifier::Topic(&kafka.topics.pay_order);
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let described = match tokio::time::timeout(timeout, admin.describe_configs([&topic], &options)).await {
        Ok(described) => described,
        Err(_) => return Ok(TopicRetention::NotReported(format!("no answer within {timeout:?}"))),
    };
    let resource = match described.map(|mut results| results.pop()) {
        Ok(Some(Ok(resource))) => resource,
        Ok(Some(Err(code))) => return Ok(TopicRetention::NotReported(code.to_string())),
        Ok(None) => return Ok(TopicRetention::NotReported("an empty answer".into())),
        Err(error) => return Ok(TopicRetention::NotReported(error.to_string())),
    };
    let value = resource.get("retention.ms").and_then(|entry| entry.value.clone());
    Ok(match value.as_deref().map(str::parse::<i64>) {
        Some(Ok(ms)) if ms < 0 => TopicRetention::Unlimited,
        Some(Ok(ms)) => TopicRetention::Limited(Duration::from_millis(ms.unsigned_abs())),
        Some(Err(_)) | None => TopicRetention::NotReported(format!("retention.ms is {value:?}")),
    })
}

/// Checks the inbox retention against `pay.order`'s: logs what it found, and with `refuse`
/// turns a shortfall into an error.
pub async fn check_inbox_retention(
    kafka: &KafkaConfig,
    inbox_max_age: Duration,
    refuse: bool,
    timeout: Duration,
) -> Result<TopicRetention, KafkaError> {
    let topic = pay_order_retention(kafka, timeout).await?;
    match (inbox_covers(inbox_max_age, &topic), &topic) {
        (Ok(()), TopicRetention::NotReported(why)) => {
            tracing::info!(topic = %kafka.topics.pay_order, why, "the broker did not report the topic's retention; the inbox retention is not checked")
        }
        (Ok(()), _) => {
            tracing::info!(topic = %kafka.topics.pay_order, ?topic, ?inbox_max_age, "the inbox outlives the topic's retention")
        }
        (Err(shortfall), _) if refuse => {
            return Err(KafkaError::InboxRetention { topic: kafka.topics.pay_order.clone(), shortfall })
        }
        (Err(shortfall), _) => tracing::warn!(
            topic = %kafka.topics.pay_order,
            "{shortfall}: a replay of older messages would pay them again; raise the inbox retention"
        ),
    }
    Ok(topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn an_inbox_that_forgets_first_is_reported() {
        assert!(inbox_covers(14 * DAY, &TopicRetention::Limited(7 * DAY)).is_ok());
        assert!(inbox_covers(7 * DAY, &TopicRetention::Limited(7 * DAY)).is_ok());
        let short = inbox_covers(DAY, &TopicRetention::Limited(7 * DAY)).unwrap_err();
        assert!(short.contains("forgets them after"), "{short}");
        assert!(inbox_covers(14 * DAY, &TopicRetention::Unlimited).is_err());
        assert!(inbox_covers(DAY, &TopicRetention::NotReported("mock".into())).is_ok());
    }
}
