//! The outbox publisher over the real Kafka protocol (librdkafka's mock cluster), on the
//! in-memory store and on PostgreSQL: a row the broker refuses for good is parked while every
//! other row, before and after it and beyond the first read window, is published about once; a
//! row refused only with its batch is not parked; a missing topic or a passing authorisation
//! failure parks nothing and holds the rows behind back; a re-queued row is published; a leader
//! that cannot publish gives the lock up to a standby; a producer that fails fatally is rebuilt.
//!
//! The helpers live here, not in `common`, so this file depends on nothing but the crates' APIs.
//! `PUBLISHER_TEST_LOG=debug` prints the publisher's logs.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use payment_core::domain::UserId;
use payment_core::ports::{Outbox, Store};
use payment_core::testing::contract::{pay, raw};
use payment_core::testing::Inspect;
use payment_core::Payments;
use payment_kafka::{KafkaConfig, OutboxPublisher, PublisherConfig, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PARTITIONS: i32 = 3;
/// The longest any scenario waits for anything; each stays well under 30 s.
const WAIT: Duration = Duration::from_secs(20);
/// Rows per read: small, so the rows after a refused one lie beyond the first read windows.
const BATCH_ROWS: u32 = 4;

/// A mock cluster with the default topics created, and nothing else.
struct Cluster {
    mock: MockCluster<'static, DefaultProducerContext>,
}

impl Cluster {
    fn start() -> Self {
        if let Ok(filter) = std::env::var("PUBLISHER_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let mock = MockCluster::new(3).unwrap_or_else(|e| panic!("mock cluster: {e}"));
        let topics = Topics::default();
        for topic in [&topics.order_paid, &topics.order_payment_failed, &topics.dead_letter] {
            mock.create_topic(topic, PARTITIONS, 3).unwrap_or_else(|e| panic!("create {topic}: {e}"));
        }
        Self { mock }
    }

    /// The publisher's Kafka settings: `extra` on top, and no topic is ever created by producing
    /// to it (the mock cluster, like a broker with `auto.create.topics.enable`, would).
    fn kafka(&self, extra: &[(&str, &str)]) -> KafkaConfig {
        let mut config = KafkaConfig::new(self.mock.bootstrap_servers());
        config.extra.push(("allow.auto.create.topics".into(), "false".into()));
        config.extra.extend(extra.iter().map(|(key, value)| (key.to_string(), value.to_string())));
        config
    }

    /// Reads `topics` from their beginning, without a consumer group (no rebalance to wait for).
    fn observe(&self, topics: &[&str]) -> Observer {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.mock.bootstrap_servers())
            .set("group.id", "observer")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap_or_else(|e| panic!("observer: {e}"));
        let mut partitions = TopicPartitionList::new();
        for topic in topics {
            for partition in 0..PARTITIONS {
                partitions
                    .add_partition_offset(topic, partition, Offset::Beginning)
                    .unwrap_or_else(|e| panic!("{topic}/{partition}: {e}"));
            }
        }
        consumer.assign(&partitions).unwrap_or_else(|e| panic!("assign: {e}"));
        Observer { consumer, seen: Vec::new() }
    }
}

fn publisher_config() -> PublisherConfig {
    PublisherConfig {
        batch_rows: BATCH_ROWS,
        poll_interval: Duration::from_millis(100),
        leader_retry_interval: Duration::from_millis(100),
        delivery_timeout: Duration::from_secs(4),
        retry_first_backoff: Duration::from_millis(50),
        retry_max_backoff: Duration::from_millis(500),
        ..PublisherConfig::default()
    }
}

/// A running publisher and the token that stops it.
struct Running {
    token: CancellationToken,
    handle: JoinHandle<()>,
}

impl Running {
    fn spawn<O: Outbox>(kafka: &KafkaConfig, config: PublisherConfig, outbox: O) -> Self {
        let publisher = OutboxPublisher::new(kafka, config, outbox).unwrap_or_else(|e| panic!("publisher: {e}"));
        let token = CancellationToken::new();
        let handle = tokio::spawn(publisher.run(token.clone()));
        Self { token, handle }
    }

    async fn stop(self) {
        self.token.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
        assert!(stopped.is_ok(), "the publisher stops when told to");
    }
}

/// What the cluster holds on the observed topics.
struct Observer {
    consumer: StreamConsumer,
    seen: Vec<OwnedMessage>,
}

impl Observer {
    /// Reads until `done` holds or `deadline` passes; whether `done` held.
    async fn until(&mut self, deadline: Instant, done: impl Fn(&[OwnedMessage]) -> bool) -> bool {
        while !done(&self.seen) {
            if Instant::now() >= deadline {
                return false;
            }
            if let Ok(Ok(message)) = tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()).await {
                self.seen.push(message.detach());
            }
        }
        true
    }

    /// Reads whatever else arrives, until nothing has for `quiet`: late duplicates included.
    async fn settle(&mut self, quiet: Duration) {
        while let Ok(Ok(message)) = tokio::time::timeout(quiet, self.consumer.recv()).await {
            self.seen.push(message.detach());
        }
    }

    /// Deliveries per event.
    fn deliveries(&self) -> BTreeMap<String, usize> {
        deliveries(&self.seen)
    }

    /// For failure messages: distinct events and duplicate deliveries seen so far.
    fn summary(&self) -> String {
        let deliveries = self.deliveries();
        let duplicates: usize = deliveries.values().map(|n| n - 1).sum();
        format!("got {} distinct events in {} deliveries ({duplicates} duplicates)", deliveries.len(), self.seen.len())
    }

    fn on(&self, topic: &str) -> usize {
        self.seen.iter().filter(|m| m.topic() == topic).count()
    }
}

/// Deliveries per event (`event-id`, or `dead-letter-id` on the dead-letter topic).
fn deliveries(seen: &[OwnedMessage]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in seen {
        let id = header(message, "event-id").or_else(|| header(message, "dead-letter-id"));
        *counts.entry(id.unwrap_or("<no id>").to_string()).or_default() += 1;
    }
    counts
}

fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
}

/// Polls until `done` holds; panics with `what` after `deadline`.
async fn eventually<F: Future<Output = bool>>(what: &str, deadline: Instant, done: impl Fn() -> F) {
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn funded<S: Store>(payments: &Payments<S>, user: &str) {
    let user = UserId::new(user).unwrap_or_else(|e| panic!("{e}"));
    payments.create_account(&user).await.unwrap_or_else(|e| panic!("create {user}: {e}"));
    payments
        .deposit(&user, "1000".parse().unwrap_or_else(|e| panic!("{e}")), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Commits one outbox row per order: `order.paid` for `prefix-0..n`.
async fn paid_orders<S: Store>(payments: &Payments<S>, prefix: &str, n: usize) {
    for i in 0..n {
        let (message, order) = (format!("m-{prefix}-{i}"), format!("{prefix}-{i}"));
        payments.pay_orders(&[pay(&message, &order, "u1", "1")]).await.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Whether the outbox settled: nothing left to publish, `parked` rows parked.
async fn settled<S: Outbox>(store: &S, parked: u64) -> bool {
    matches!((store.backlog().await, store.parked().await), (Ok(0), Ok(p)) if p == parked)
}

/// Scenario (a): a dead letter larger than the producer's `message.max.bytes`, between two runs
/// of ordinary rows, more of them than one read window holds.
async fn a_row_too_large_for_the_broker_is_parked_and_the_rest_published<S: Store + Outbox + Inspect>(store: S) {
    let deadline = Instant::now() + WAIT;
    let cluster = Cluster::start();
    let payments = Payments::new(store.clone());
    funded(&payments, "u1").await;
    paid_orders(&payments, "before", 10).await;
    // Malformed JSON of 30 kB: dead-lettered whole (under the 64 KiB cap), over the 10 kB limit.
    let poison = format!(r#"{{"pad":"{}"}}"#, "x".repeat(30_000));
    payments.pay_orders(&[raw("m-poison", &poison)]).await.unwrap_or_else(|e| panic!("{e}"));
    paid_orders(&payments, "after", 10).await;

    let topics = Topics::default();
    let mut observer = cluster.observe(&[&topics.order_paid, &topics.dead_letter]);
    let kafka = cluster.kafka(&[("message.max.bytes", "10000")]);
    let publisher = Running::spawn(&kafka, publisher_config(), store.clone());

    let all_paid = observer.until(deadline, |seen| deliveries(seen).len() >= 20).await;
    assert!(all_paid, "every order.paid arrives; {}", observer.summary());
    eventually("the outbox to settle with one parked row", deadline, || settled(&store, 1)).await;
    observer.settle(Duration::from_secs(1)).await;
    publisher.stop().await;

    let deliveries = observer.deliveries();
    assert_eq!(observer.on(&topics.order_paid), observer.seen.len(), "the refused dead letter never arrives");
    assert_eq!(deliveries.len(), 20, "the 10 rows before the refused one and the 10 after it");
    let duplicates: usize = deliveries.values().map(|n| n - 1).sum();
    assert!(duplicates <= BATCH_ROWS as usize, "at most one read window is sent twice; {duplicates} duplicates");
    let snapshot = store.snapshot().await;
    let [(index, error)] = snapshot.parked.as_slice() else { panic!("one parked row: {:?}", snapshot.parked) };
    assert_eq!(*index, 10, "the dead letter is the one parked");
    assert!(error.contains("MessageSizeTooLarge"), "the broker's refusal is kept: {error}");
    assert_eq!(store.unpublished(100).await.ok().map(|rows| rows.len()), Some(0));
}

/// Scenario (b): one event kind is routed to a topic the cluster does not have yet. Its rows are
/// not parked: they wait, retried, while the rows of other orders go on, and once the topic
/// exists they are published.
async fn a_missing_topic_holds_its_rows_back_and_parks_nothing<S: Store + Outbox + Inspect>(store: S) {
    let deadline = Instant::now() + WAIT;
    let cluster = Cluster::start();
    let payments = Payments::new(store.clone());
    funded(&payments, "u1").await;
    paid_orders(&payments, "before", 5).await;
    // No account: order.payment_failed, for a topic that is created only later.
    for i in 0..2 {
        let (message, order) = (format!("m-ghost-{i}"), format!("ghost-{i}"));
        payments.pay_orders(&[pay(&message, &order, "ghost", "1")]).await.unwrap_or_else(|e| panic!("{e}"));
    }
    paid_orders(&payments, "after", 5).await;

    let late_topic = "order.payment_failed.created-late";
    let mut kafka = cluster.kafka(&[("topic.metadata.refresh.interval.ms", "500")]);
    kafka.topics.order_payment_failed = late_topic.into();
    let mut observer = cluster.observe(&[&kafka.topics.order_paid]);
    // The publisher reports an unknown topic after half the delivery timeout (its
    // `topic.metadata.propagation.max.ms`); it retries, with backoff.
    let publisher = Running::spawn(&kafka, publisher_config(), store.clone());

    let all_paid = observer.until(deadline, |seen| deliveries(seen).len() >= 10).await;
    assert!(all_paid, "the other orders' rows are published meanwhile; {}", observer.summary());
    // A delivery timeout more: the missing topic has been reported, and retried, by now.
    observer.settle(Duration::from_secs(3)).await;
    assert_eq!(store.parked().await.ok(), Some(0), "an outage parks nothing");
    assert_eq!(store.backlog().await.ok(), Some(2), "the two rows for the missing topic wait");
    let duplicates: usize = observer.deliveries().values().map(|n| n - 1).sum();
    assert!(duplicates <= BATCH_ROWS as usize, "the rows behind are not re-sent round after round: {duplicates}");

    cluster.mock.create_topic(late_topic, PARTITIONS, 3).unwrap_or_else(|e| panic!("create {late_topic}: {e}"));
    let mut failed = cluster.observe(&[late_topic]);
    let deadline = Instant::now() + WAIT;
    eventually("the outbox to drain once the topic exists", deadline, || settled(&store, 0)).await;
    assert!(failed.until(deadline, |seen| deliveries(seen).len() >= 2).await, "both failures arrive");
    publisher.stop().await;
    assert!(store.snapshot().await.parked.is_empty());
}

/// Produce requests refused as not authorised for a while (an ACL reload, a credential
/// rotation): nothing is parked, every row is published once the authorisation is back.
async fn a_passing_authorisation_failure_parks_nothing<S: Store + Outbox + Inspect>(store: S) {
    let deadline = Instant::now() + WAIT;
    let cluster = Cluster::start();
    let payments = Payments::new(store.clone());
    funded(&payments, "u1").await;
    paid_orders(&payments, "o", 6).await;
    cluster
        .mock
        .request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4]);

    let mut observer = cluster.observe(&[&Topics::default().order_paid]);
    let publisher = Running::spawn(&cluster.kafka(&[]), publisher_config(), store.clone());
    let all_paid = observer.until(deadline, |seen| deliveries(seen).len() >= 6).await;
    assert!(all_paid, "every row is published; {}", observer.summary());
    eventually("the outbox to drain", deadline, || settled(&store, 0)).await;
    publisher.stop().await;
    assert!(store.snapshot().await.parked.is_empty(), "an authorisation failure parks nothing");
}

/// A parked row comes back: once re-queued (the cause fixed: a larger `message.max.bytes`),
/// it is published.
async fn a_requeued_row_is_published<S: Store + Outbox + Inspect>(store: S) {
    let deadline = Instant::now() + WAIT;
    let cluster = Cluster::start();
    let payments = Payments::new(store.clone());
    funded(&payments, "u1").await;
    let poison = format!(r#"{{"pad":"{}"}}"#, "x".repeat(30_000));
    payments.pay_orders(&[raw("m-poison", &poison)]).await.unwrap_or_else(|e| panic!("{e}"));
    paid_orders(&payments, "o", 2).await;
    let topics = Topics::default();
    let mut observer = cluster.observe(&[&topics.order_paid, &topics.dead_letter]);

    let small = Running::spawn(&cluster.kafka(&[("message.max.bytes", "10000")]), publisher_config(), store.clone());
    eventually("the oversized row to be parked", deadline, || settled(&store, 1)).await;
    small.stop().await;
    let parked = store.parked_rows(10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parked.len(), 1);
    assert!(parked[0].error.contains("MessageSizeTooLarge"), "{:?}", parked[0]);

    assert_eq!(store.requeue(None).await.ok(), Some(1));
    let publisher = Running::spawn(&cluster.kafka(&[]), publisher_config(), store.clone());
    eventually("the re-queued row to be published", deadline, || settled(&store, 0)).await;
    let all = observer.until(deadline, |seen| deliveries(seen).len() >= 3).await;
    assert!(all, "the dead letter arrives after its re-queue; {}", observer.summary());
    publisher.stop().await;
    assert_eq!(observer.on(&topics.dead_letter), 1);
}

/// Scenario (c): the leader cannot reach any broker; after `leader_give_up_after` it releases the
/// lock, and a standby that can reach the cluster publishes everything.
async fn a_leader_that_cannot_publish_gives_up_to_a_standby<S: Store + Outbox + Inspect>(store: S) {
    let deadline = Instant::now() + WAIT;
    let cluster = Cluster::start();
    let payments = Payments::new(store.clone());
    funded(&payments, "u1").await;
    paid_orders(&payments, "o", 6).await;

    // Nothing listens on port 1: every delivery of the first leader times out (transient).
    let unreachable = KafkaConfig::new("127.0.0.1:1");
    let stuck = PublisherConfig {
        delivery_timeout: Duration::from_millis(500),
        leader_give_up_after: Duration::from_secs(1),
        // Long, so that the standby, polling every 100 ms, is the next to lead.
        leader_retry_interval: Duration::from_secs(5),
        ..publisher_config()
    };
    let first = Running::spawn(&unreachable, stuck, store.clone());
    // Lead is taken when the lock is no longer free (a probe that finds it free lets go at once).
    eventually("the first publisher to lead", deadline, || async {
        match store.try_lead().await {
            Ok(None) => true,
            Ok(Some(probe)) => {
                drop(probe);
                false
            }
            Err(error) => panic!("{error}"),
        }
    })
    .await;
    let standby_since = Instant::now();
    let mut observer = cluster.observe(&[&Topics::default().order_paid]);
    let standby = Running::spawn(&cluster.kafka(&[]), publisher_config(), store.clone());

    let all_paid = observer.until(deadline, |seen| deliveries(seen).len() >= 6).await;
    let took = standby_since.elapsed();
    assert!(all_paid, "the standby publishes every row; {}", observer.summary());
    eventually("the outbox to drain", deadline, || settled(&store, 0)).await;
    first.stop().await;
    standby.stop().await;

    assert_eq!(observer.deliveries().len(), 6);
    assert!(took >= Duration::from_millis(900), "not before the leader gave up ({took:?})");
    assert!(store.snapshot().await.parked.is_empty(), "timeouts never park a row");
}

/// A fatal error of the idempotent producer (a sequence desynchronisation the broker reports on
/// the first produce request) is the producer's, not the rows': they are published by a new
/// producer, and none is parked.
async fn a_producer_that_fails_fatally_is_rebuilt<S: Store + Outbox + Inspect>(store: S) {
    let deadline = Instant::now() + WAIT;
    let cluster = Cluster::start();
    let payments = Payments::new(store.clone());
    funded(&payments, "u1").await;
    paid_orders(&payments, "o", 6).await;
    cluster
        .mock
        .request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER]);

    let mut observer = cluster.observe(&[&Topics::default().order_paid]);
    let publisher = Running::spawn(&cluster.kafka(&[]), publisher_config(), store.clone());
    let all_paid = observer.until(deadline, |seen| deliveries(seen).len() >= 6).await;
    assert!(all_paid, "every row is published; {}", observer.summary());
    eventually("the outbox to drain", deadline, || settled(&store, 0)).await;
    observer.settle(Duration::from_millis(500)).await;
    publisher.stop().await;

    assert_eq!(observer.deliveries().len(), 6);
    assert!(store.snapshot().await.parked.is_empty(), "a producer failure parks nothing");
}

/// The broker refuses one whole produce request as too large (as it does when one record of a
/// batch is over its limit): the rows that travelled in it are each sent again alone, go
/// through, and none is parked.
async fn a_batch_refused_as_a_whole_parks_none_of_its_rows<S: Store + Outbox + Inspect>(store: S) {
    let deadline = Instant::now() + WAIT;
    let cluster = Cluster::start();
    let payments = Payments::new(store.clone());
    funded(&payments, "u1").await;
    paid_orders(&payments, "o", 8).await;
    cluster.mock.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE]);

    let mut observer = cluster.observe(&[&Topics::default().order_paid]);
    let config = PublisherConfig { batch_rows: 8, ..publisher_config() };
    let publisher = Running::spawn(&cluster.kafka(&[]), config, store.clone());
    let all_paid = observer.until(deadline, |seen| deliveries(seen).len() >= 8).await;
    assert!(all_paid, "every row is published; {}", observer.summary());
    eventually("the outbox to drain", deadline, || settled(&store, 0)).await;
    observer.settle(Duration::from_millis(500)).await;
    publisher.stop().await;

    assert_eq!(observer.deliveries().len(), 8);
    assert!(store.snapshot().await.parked.is_empty(), "no row is parked for its batch");
}

/// PostgreSQL only: the leader's lock connection is killed while a round's deliveries are slow
/// (a 1.5 s round trip to every broker). The round then finds a row the broker refused for good;
/// a leader that no longer holds the lock must not go on (send it alone, park it) behind the back
/// of the instance that may lead by now. The next leader does it.
#[test]
fn a_leader_whose_lock_dies_mid_round_stops_there() {
    payment_core::testing::block_on(async {
        // Every request takes a 1.5 s round trip until the second leader starts.
        let deadline = Instant::now() + 2 * WAIT;
        let store = payment_postgres::testing::fresh_store(8).await;
        let cluster = Cluster::start();
        let payments = Payments::new(store.clone());
        funded(&payments, "u1").await;
        let poison = format!(r#"{{"pad":"{}"}}"#, "x".repeat(30_000));
        payments.pay_orders(&[raw("m-poison", &poison)]).await.unwrap_or_else(|e| panic!("{e}"));
        paid_orders(&payments, "o", 3).await;
        for broker in 1..=3 {
            cluster.mock.broker_round_trip_time(broker, Duration::from_millis(1_500)).unwrap_or_else(|e| panic!("{e}"));
        }
        let kafka = cluster.kafka(&[("message.max.bytes", "10000")]);
        // Once it lost the lock, the first leader would only try again after a minute.
        let slow = PublisherConfig {
            delivery_timeout: Duration::from_secs(15),
            leader_retry_interval: Duration::from_secs(60),
            ..publisher_config()
        };
        let first = Running::spawn(&kafka, slow, store.clone());

        let lock_holder = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                           AND ((classid::BIGINT << 32) | objid::BIGINT) = $1";
        let mut holder: Option<i32> = None;
        while holder.is_none() {
            assert!(Instant::now() < deadline, "the first publisher never led");
            holder = sqlx::query_scalar(lock_holder)
                .bind(payment_postgres::PUBLISHER_LOCK_KEY)
                .fetch_optional(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(holder)
            .fetch_one(store.pool())
            .await
            .unwrap_or(false);
        assert!(terminated, "the lock connection is killed while the round's deliveries travel");

        // The round's deliveries complete within a few round trips; the refused row is then
        // judged only by a leader that still holds the lock.
        eventually("the round's acknowledged rows to be marked", deadline, || async {
            matches!((store.backlog().await, store.parked().await), (Ok(b), Ok(p)) if b + p == 1)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(store.parked().await.ok(), Some(0), "a leader without its lock parks nothing");

        for broker in 1..=3 {
            cluster.mock.broker_round_trip_time(broker, Duration::ZERO).unwrap_or_else(|e| panic!("{e}"));
        }
        let second = Running::spawn(&kafka, publisher_config(), store.clone());
        let deadline = Instant::now() + WAIT;
        eventually("the next leader to park the refused row", deadline, || settled(&store, 1)).await;
        first.stop().await;
        second.stop().await;
    });
}

payment_postgres::on_both_stores!(
    a_row_too_large_for_the_broker_is_parked_and_the_rest_published,
    a_missing_topic_holds_its_rows_back_and_parks_nothing,
    a_passing_authorisation_failure_parks_nothing,
    a_requeued_row_is_published,
    a_leader_that_cannot_publish_gives_up_to_a_standby,
    a_producer_that_fails_fatally_is_rebuilt,
    a_batch_refused_as_a_whole_parks_none_of_its_rows,
);
