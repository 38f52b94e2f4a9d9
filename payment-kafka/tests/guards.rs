//! The settings the guarantees rest on are checked at construction, before any message moves.

mod common;

use std::time::{Duration, Instant};

use common::Broker;
use payment_core::memory::MemoryStore;
use payment_core::Payments;
use payment_kafka::{
    check_inbox_retention, KafkaError, OutboxPublisher, PayOrderConsumer, PublisherConfig, TopicRetention,
};

#[test]
fn overriding_a_protected_property_is_refused_at_start() {
    payment_core::testing::block_on(async {
        let broker = Broker::start();
        let mut kafka = broker.kafka();
        kafka.extra.push(("enable.auto.offset.store".into(), "true".into()));
        let consumer = PayOrderConsumer::new(&kafka, broker.consumer_config(), Payments::new(MemoryStore::new()));
        let error = consumer.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("enable.auto.offset.store") && error.contains("may not be overridden"), "{error}");

        let mut kafka = broker.kafka();
        kafka.extra.push(("acks".into(), "1".into()));
        let publisher = OutboxPublisher::new(&kafka, PublisherConfig::default(), MemoryStore::new());
        assert!(matches!(publisher.err(), Some(KafkaError::ProtectedProperty { ref key, .. }) if key == "acks"));
    });
}

/// The mock cluster does not answer DescribeConfigs: the check says so promptly and, even when
/// told to refuse, lets the service start — only a reported shortfall is refused.
#[test]
fn an_unreported_topic_retention_is_not_a_shortfall() {
    payment_core::testing::block_on(async {
        let broker = Broker::start();
        let started = Instant::now();
        let timeout = Duration::from_secs(5);
        let found = check_inbox_retention(&broker.kafka(), Duration::from_secs(3600), true, timeout)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(found, TopicRetention::NotReported(_)), "{found:?}");
        assert!(started.elapsed() <= timeout + Duration::from_secs(1));
    });
}
