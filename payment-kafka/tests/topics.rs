//! Topics at start: existing ones are left alone, missing ones are asked for.
//!
//! librdkafka's mock cluster answers metadata but not CreateTopics, so creation itself is
//! exercised against a real broker only (the compose stack); here the mock proves that nothing
//! is requested when every topic exists, and that a cluster which cannot create a missing topic
//! stops the start with an error naming it.

use std::time::{Duration, Instant};

use payment_kafka::{ensure_topics, KafkaConfig, TopicLayout};
use rdkafka::mocking::MockCluster;

#[test]
fn existing_topics_are_left_alone_and_a_missing_one_is_named() {
    payment_core::testing::block_on(async {
        let cluster = MockCluster::new(1).unwrap_or_else(|e| panic!("mock cluster: {e}"));
        let kafka = KafkaConfig::new(cluster.bootstrap_servers());
        let timeout = Duration::from_secs(3);
        for topic in kafka.topics.all() {
            cluster.create_topic(topic, 2, 1).unwrap_or_else(|e| panic!("{topic}: {e}"));
        }
        let created = ensure_topics(&kafka, TopicLayout::default(), timeout).await;
        assert!(matches!(created.as_deref(), Ok([])), "{created:?}");

        let mut renamed = kafka.clone();
        renamed.topics.dead_letter = "payments.dlq".into();
        let started = Instant::now();
        let error = ensure_topics(&renamed, TopicLayout::default(), timeout).await.err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("payments.dlq") && !error.contains("order.paid"), "{error}");
        assert!(started.elapsed() < timeout * 3, "the start is not held up: {:?}", started.elapsed());
    });
}
