//! Is the inbox remembered longer than Kafka keeps `pay.order`? A message is recognised as a
//! redelivery only while its inbox row exists; a replay (a consumer group reset, a new group) of a
//! message older than the inbox retention would be decided again: one that failed for insufficient
//! funds may now be paid. So the service asks the broker how long the topic can keep a record and
//! warns, or refuses to start, when the inbox may forget sooner.
//!
//! How long a record can be kept (issue 18 (8)): `retention.ms` counts from the newest record of a
//! closed segment, so a record outlives it by up to `segment.ms`; the bound is their sum, and the
//! inbox must outlive it strictly. `retention.ms = -1` (for ever), and a compacted topic
//! (`cleanup.policy` with `compact`: the last record of each key is kept for ever), have no bound.
//! `retention.bytes` only deletes sooner, so it never makes the inbox short, and is ignored. A
//! broker that does not answer is reported loudly as unknown, not as a pass. The check runs at
//! start and again every hour (a topic's retention can be raised while the service runs).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use crate::{KafkaConfig, KafkaError};

/// How long the broker may keep a topic's records, from what it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRetention {
    /// `retention.ms = -1`.
    Unlimited,
    /// Compacted (`cleanup.policy` includes `compact`): the last record of each key stays.
    Compacted,
    /// At most this long: `retention.ms` plus `segment.ms`.
    Limited(Duration),
    /// The broker did not say (an old broker, no permission, the embedded mock cluster): why.
    NotReported(String),
}

impl TopicRetention {
    /// From the topic's configuration entries, as `config` answers them.
    pub fn of_config(config: impl Fn(&str) -> Option<String>) -> Self {
        if config("cleanup.policy").is_some_and(|policy| policy.split(',').any(|p| p.trim() == "compact")) {
            return TopicRetention::Compacted;
        }
        let millis = |name: &str| config(name).map(|value| value.trim().parse::<i64>().map_err(|_| value));
        match (millis("retention.ms"), millis("segment.ms")) {
            (Some(Ok(retention)), _) if retention < 0 => TopicRetention::Unlimited,
            (Some(Ok(retention)), Some(Ok(segment))) if segment >= 0 => TopicRetention::Limited(
                Duration::from_millis(retention.unsigned_abs()) + Duration::from_millis(segment.unsigned_abs()),
            ),
            (retention, segment) => {
                TopicRetention::NotReported(format!("retention.ms is {retention:?}, segment.ms is {segment:?}"))
            }
        }
    }
}

/// Whether an inbox kept for `inbox_max_age` covers a topic kept for `topic`. `Err` says why not.
pub fn inbox_covers(inbox_max_age: Duration, topic: &TopicRetention) -> Result<(), String> {
    match topic {
        TopicRetention::Unlimited => {
            Err(format!("the topic keeps messages for ever but the inbox forgets them after {inbox_max_age:?}"))
        }
        TopicRetention::Compacted => Err(format!(
            "the topic is compacted (the last message of each key is kept for ever) but the inbox forgets them after \
             {inbox_max_age:?}"
        )),
        TopicRetention::Limited(kept) if *kept >= inbox_max_age => Err(format!(
            "the topic may keep messages for {kept:?} (retention.ms + segment.ms) but the inbox forgets them after \
             {inbox_max_age:?}"
        )),
        TopicRetention::Limited(_) | TopicRetention::NotReported(_) => Ok(()),
    }
}

/// Asks the cluster how long `pay.order` may keep a record (`retention.ms`, `segment.ms`,
/// `cleanup.policy`).
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
    Ok(TopicRetention::of_config(|name| resource.get(name).and_then(|entry| entry.value.clone())))
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
        (Ok(()), TopicRetention::NotReported(why)) => tracing::warn!(
            topic = %kafka.topics.pay_order,
            why,
            "the topic's retention is UNKNOWN (the broker did not report it): the inbox retention is not checked, \
             and a replay of messages older than the inbox would be decided again"
        ),
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

    fn config(entries: &[(&str, &str)]) -> TopicRetention {
        TopicRetention::of_config(|name| {
            entries.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn a_record_may_outlive_its_retention_by_a_segment_and_compaction_keeps_it() {
        let week = (7 * DAY).as_millis().to_string();
        let day = DAY.as_millis().to_string();
        let topic = config(&[("retention.ms", &week), ("segment.ms", &day), ("cleanup.policy", "delete")]);
        assert_eq!(topic, TopicRetention::Limited(8 * DAY));
        let short = inbox_covers(7 * DAY + DAY / 2, &topic).unwrap_err();
        assert!(short.contains("retention.ms + segment.ms"), "{short}");
        assert!(inbox_covers(9 * DAY, &topic).is_ok());
        let compacted = config(&[("retention.ms", &week), ("segment.ms", &day), ("cleanup.policy", "compact,delete")]);
        assert_eq!(compacted, TopicRetention::Compacted);
        assert!(inbox_covers(365 * DAY, &compacted).is_err());
        // `retention.bytes` only deletes sooner: it changes nothing.
        let sized = config(&[("retention.ms", &week), ("segment.ms", &day), ("retention.bytes", "1048576")]);
        assert_eq!(sized, TopicRetention::Limited(8 * DAY));
        assert_eq!(config(&[("retention.ms", "-1"), ("segment.ms", &day)]), TopicRetention::Unlimited);
        assert!(matches!(config(&[("retention.ms", &week)]), TopicRetention::NotReported(_)));
        assert!(matches!(config(&[]), TopicRetention::NotReported(_)));
    }

    #[test]
    fn an_inbox_that_forgets_first_is_reported() {
        assert!(inbox_covers(14 * DAY, &TopicRetention::Limited(7 * DAY)).is_ok());
        assert!(inbox_covers(7 * DAY, &TopicRetention::Limited(7 * DAY)).is_err(), "equal is not enough");
        let short = inbox_covers(DAY, &TopicRetention::Limited(7 * DAY)).unwrap_err();
        assert!(short.contains("forgets them after"), "{short}");
        assert!(inbox_covers(14 * DAY, &TopicRetention::Unlimited).is_err());
        assert!(inbox_covers(DAY, &TopicRetention::NotReported("mock".into())).is_ok());
    }
}
