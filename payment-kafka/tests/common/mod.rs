//! A Kafka-protocol broker (librdkafka's mock cluster), the service's consumer and publisher on
//! a store, and helpers to produce commands and read what the service published.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::time::{Duration, Instant};

use payment_core::ports::{Outbox, Store};
use payment_core::testing::{Inspect, Snapshot};
use payment_core::Payments;
use payment_kafka::{ConsumerConfig, ConsumerHealth, KafkaConfig, OutboxPublisher, PayOrderConsumer, PublisherConfig};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const PARTITIONS: i32 = 4;
pub const WAIT: Duration = Duration::from_secs(60);

/// Reads a group's committed offsets (see [`Broker::offset_reader`]); it blocks its thread.
pub struct OffsetReader {
    client: BaseConsumer,
    partitions: TopicPartitionList,
}

impl OffsetReader {
    /// The committed offset of each `pay.order` partition, by partition number; 0 where none is.
    pub fn try_committed(&self, timeout: Duration) -> Result<Vec<i64>, KafkaError> {
        let committed = self.client.committed_offsets(self.partitions.clone(), timeout)?;
        Ok(committed.elements().iter().map(|e| if let Offset::Offset(n) = e.offset() { n } else { 0 }).collect())
    }

    pub fn committed(&self) -> Vec<i64> {
        self.try_committed(Duration::from_secs(10)).unwrap_or_else(|e| panic!("committed offsets: {e}"))
    }
}

pub struct Broker {
    pub cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub config: KafkaConfig,
}

impl Broker {
    pub fn start() -> Self {
        if std::env::var("KAFKA_DEBUG").is_ok() {
            let _ = tracing_subscriber::fmt().with_env_filter("debug").with_test_writer().try_init();
        }
        let cluster = MockCluster::new(3).unwrap_or_else(|e| panic!("mock cluster: {e}"));
        let config = KafkaConfig::new(cluster.bootstrap_servers());
        for topic in config.topics.all() {
            cluster.create_topic(topic, PARTITIONS, 3).unwrap_or_else(|e| panic!("create {topic}: {e}"));
        }
        Self { cluster, config }
    }

    pub fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .set("enable.idempotence", "true")
            .create()
            .unwrap_or_else(|e| panic!("producer: {e}"))
    }

    /// A client that reads `group`'s committed `pay.order` offsets and never joins the group.
    pub fn offset_reader(&self, group: &str) -> OffsetReader {
        let client = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("offset reader: {e}"));
        let mut partitions = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            partitions.add_partition(&self.config.topics.pay_order, partition);
        }
        OffsetReader { client, partitions }
    }

    /// Produces `pay.order` records keyed by user, as the contract asks producers to.
    pub async fn send(&self, producer: &FutureProducer, records: &[(String, String)], header_ids: bool) {
        for (n, (key, payload)) in records.iter().enumerate() {
            let mut record = FutureRecord::to(&self.config.topics.pay_order).key(key).payload(payload);
            if header_ids {
                let id = format!("header-{n}");
                record = record.headers(OwnedHeaders::new().insert(Header { key: "message-id", value: Some(&id) }));
            }
            producer.send(record, Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        }
        producer.flush(Duration::from_secs(10)).unwrap_or_else(|e| panic!("flush: {e}"));
    }

    /// Produces `refund.order` records keyed by user, in order.
    pub async fn send_refunds(&self, producer: &FutureProducer, records: &[(String, String)]) {
        for (key, payload) in records {
            let record = FutureRecord::to(&self.config.topics.refund_order).key(key).payload(payload);
            producer.send(record, Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        }
    }

    /// Produces many `pay.order` records as fast as the client takes them (no wait per record),
    /// then waits until the broker has them all.
    pub fn produce_many(&self, records: impl IntoIterator<Item = (String, String)>) -> usize {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .set("linger.ms", "5")
            .create()
            .unwrap_or_else(|e| panic!("producer: {e}"));
        let mut count = 0;
        for (key, payload) in records {
            let mut record = BaseRecord::to(&self.config.topics.pay_order).key(&key).payload(&payload);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((error, _)) => panic!("produce: {error}"),
                }
            }
            count += 1;
        }
        producer.flush(Duration::from_secs(60)).unwrap_or_else(|e| panic!("flush: {e}"));
        count
    }

    pub fn consumer_config(&self) -> ConsumerConfig {
        consumer_config()
    }

    pub fn publisher_config(&self) -> PublisherConfig {
        publisher_config()
    }

    /// Kafka settings with fast group membership, as the mock cluster needs for quick rebalances.
    pub fn kafka(&self) -> KafkaConfig {
        let mut config = self.config.clone();
        config.extra.push(("heartbeat.interval.ms".into(), "300".into()));
        config.extra.push(("topic.metadata.refresh.interval.ms".into(), "1000".into()));
        if let Ok(debug) = std::env::var("KAFKA_DEBUG") {
            config.extra.push(("debug".into(), debug));
        }
        config
    }

    pub fn spawn_consumer<S: Store>(&self, payments: Payments<S>, config: ConsumerConfig) -> Running {
        let consumer = PayOrderConsumer::new(&self.kafka(), config, payments).unwrap_or_else(|e| panic!("{e}"));
        let health = consumer.health();
        Running { health: Some(health), ..Running::spawn(|token| consumer.run(token)) }
    }

    pub fn spawn_publisher<O: Outbox>(&self, outbox: O, config: PublisherConfig) -> Running {
        let publisher = OutboxPublisher::new(&self.kafka(), config, outbox).unwrap_or_else(|e| panic!("{e}"));
        Running::spawn(|token| publisher.run(token))
    }

    /// Reads the output topics from the start until `done` holds or [`WAIT`] passes.
    pub async fn published(&self, done: impl Fn(&[OwnedMessage]) -> bool) -> Vec<OwnedMessage> {
        let reader: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", format!("observer-{}", uuid()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("observer: {e}"));
        let t = &self.config.topics;
        reader
            .subscribe(&[
                &t.order_paid,
                &t.order_payment_failed,
                &t.dead_letter,
                &t.order_refunded,
                &t.order_refund_failed,
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut seen = Vec::new();
        let deadline = Instant::now() + WAIT;
        while !done(&seen) {
            assert!(Instant::now() < deadline, "timed out waiting for events; got {}", seen.len());
            if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_millis(500), reader.recv()).await {
                seen.push(message.detach());
            }
        }
        seen
    }
}

/// Consumer settings for the mock cluster: small batches, fast retries, quick group membership.
pub fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        group_id: "payments".into(),
        batch_max_messages: 50,
        // As in production: lanes side by side, so every consumer test runs them.
        max_batches_in_flight: payment_kafka::DEFAULT_MAX_BATCHES_IN_FLIGHT,
        batch_linger: Duration::ZERO,
        session_timeout: Duration::from_secs(6),
        retry_first_backoff: Duration::from_millis(50),
        retry_max_backoff: Duration::from_millis(500),
        statistics_interval: Duration::from_secs(1),
        stall_timeout: Duration::from_secs(3),
        // Above the session timeout, as in production (see `close_timeout`).
        close_timeout: Duration::from_secs(8),
        // The mock cluster holds an empty fetch for the whole wait (see `fetch_wait_max`).
        fetch_wait_max: Duration::from_millis(10),
    }
}

/// Publisher settings for the mock cluster: fast polls and retries, short delivery timeout.
pub fn publisher_config() -> PublisherConfig {
    PublisherConfig {
        poll_interval: Duration::from_millis(200),
        leader_retry_interval: Duration::from_millis(100),
        delivery_timeout: Duration::from_secs(5),
        retry_first_backoff: Duration::from_millis(50),
        retry_max_backoff: Duration::from_millis(500),
        ..PublisherConfig::default()
    }
}

fn uuid() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    )
}

/// A spawned consumer or publisher, the token that stops it and, for a consumer, its counters.
pub struct Running {
    pub token: CancellationToken,
    pub handle: JoinHandle<()>,
    pub health: Option<ConsumerHealth>,
}

impl Running {
    fn spawn<F: Future<Output = ()> + Send + 'static>(run: impl FnOnce(CancellationToken) -> F) -> Self {
        let token = CancellationToken::new();
        let handle = tokio::spawn(run(token.clone()));
        Self { token, handle, health: None }
    }

    /// The consumer's counters (panics for a publisher).
    pub fn health(&self) -> &ConsumerHealth {
        self.health.as_ref().unwrap_or_else(|| panic!("not a consumer"))
    }

    /// Stops it and returns how long it took to return; panics past 30 s.
    pub async fn stop(self) -> Duration {
        let started = Instant::now();
        self.token.cancel();
        match tokio::time::timeout(Duration::from_secs(30), self.handle).await {
            Ok(Ok(())) => started.elapsed(),
            Ok(Err(error)) => panic!("the task failed: {error}"),
            Err(_) => panic!("did not stop within 30 s"),
        }
    }
}

/// Polls the store until `done` holds or [`WAIT`] passes.
pub async fn until<S: Inspect>(store: &S, what: &str, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + WAIT;
    loop {
        let snapshot = store.snapshot().await;
        if done(&snapshot) {
            return snapshot;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the store until `done` holds; `None` after `wait`.
pub async fn until_or<S: Inspect>(store: &S, wait: Duration, done: impl Fn(&Snapshot) -> bool) -> Option<Snapshot> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let snapshot = store.snapshot().await;
        if done(&snapshot) {
            return Some(snapshot);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

pub fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
}

pub fn json(message: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or(serde_json::Value::Null)
}

pub fn pay(message_id: &str, order: &str, user: &str, amount: &str) -> (String, String) {
    (
        user.to_string(),
        format!(r#"{{"message_id":"{message_id}","order_id":"{order}","user_id":"{user}","amount":{amount}}}"#),
    )
}

/// A `refund.order` record keyed by user; `amount` `None` asks for what is left.
pub fn refund(message_id: &str, refund_id: &str, order: &str, user: &str, amount: Option<&str>) -> (String, String) {
    let amount = amount.map(|a| format!(r#","amount":{a}"#)).unwrap_or_default();
    (
        user.to_string(),
        format!(
            r#"{{"message_id":"{message_id}","refund_id":"{refund_id}","order_id":"{order}","user_id":"{user}"{amount}}}"#
        ),
    )
}

pub async fn funded<S: Store>(payments: &Payments<S>, users: &[String], amount: &str) {
    for user in users {
        let id = payment_core::domain::UserId::new(user.as_str()).unwrap_or_else(|e| panic!("{e}"));
        payments.create_account(&id).await.unwrap_or_else(|e| panic!("{e}"));
        payments
            .deposit(&id, amount.parse().unwrap_or_else(|e| panic!("{e}")), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A consumer that waits long after a failed batch, so a test can "crash" it in between.
pub struct ConsumerSlowRetry;

impl ConsumerSlowRetry {
    pub fn config(broker: &Broker) -> ConsumerConfig {
        ConsumerConfig { retry_first_backoff: Duration::from_secs(60), ..broker.consumer_config() }
    }
}
