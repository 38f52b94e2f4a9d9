//! A record the client cannot read: it stops its own partition, visibly, and nothing else.
//!
//! The record is a zstd-compressed record batch whose compressed bytes are garbage, written with a
//! hand-encoded Produce request: no Kafka client produces a corrupt batch, and every codec
//! librdkafka knows is now built in, so corruption is what remains of "cannot be read".

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{funded, pay, until, until_or, Broker};
use payment_core::memory::MemoryStore;
use payment_core::Payments;
use payment_kafka::StuckPartition;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The partition the corrupt record goes to, and one that stays healthy.
const BAD_PARTITION: i32 = 1;
const GOOD_PARTITION: i32 = 2;

#[test]
fn a_record_that_cannot_be_read_stops_only_its_partition_visibly_and_is_never_skipped() {
    payment_core::testing::block_on(async {
        let broker = Broker::start();
        let store = MemoryStore::new();
        let payments = Payments::new(store.clone());
        funded(&payments, &["u1".to_string()], "100").await;
        let topic = broker.config.topics.pay_order.clone();

        let bad_offset = produce_corrupt_zstd_batch(&broker.config.brokers, &topic, BAD_PARTITION);
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", &broker.config.brokers)
            .create()
            .unwrap_or_else(|e| panic!("producer: {e}"));
        for (partition, (key, payload)) in [
            (BAD_PARTITION, pay("m-behind", "o-behind", "u1", "1")),
            (GOOD_PARTITION, pay("m-elsewhere", "o-elsewhere", "u1", "2")),
        ] {
            let record = BaseRecord::to(&topic).partition(partition).key(&key).payload(&payload);
            producer.send(record).unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        }
        producer.flush(Duration::from_secs(10)).unwrap_or_else(|e| panic!("flush: {e}"));

        let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
        let health = consumer.health().clone();
        until(&store, "the command on the healthy partition", |s| s.payments.len() == 1).await;
        let stuck = eventually_stuck(&health).await;
        assert_eq!(
            stuck,
            [StuckPartition {
                topic: topic.clone(),
                partition: BAD_PARTITION,
                offset: bad_offset,
                error: stuck[0].error.clone(),
            }],
            "the health names the partition and the offset of the unreadable record"
        );
        assert!(stuck[0].error.contains("Compress"), "librdkafka's reason is kept: {}", stuck[0].error);
        // The command behind the bad record waits: the service skips nothing by itself.
        let skipped = until_or(&store, Duration::from_secs(3), |s| s.payments.len() > 1).await;
        assert!(skipped.is_none(), "the command behind an unreadable record was applied: it was skipped over");
        assert!(health.unreadable_record_errors() > 0);
        assert_eq!(health.client_replacements(), 0, "a stuck partition is not a stalled client to replace");
        consumer.stop().await;

        // The operator's way out (docs/running.md): with the service stopped, move the group's
        // offset past the record; the partition resumes and the command behind it is paid.
        commit_offset(&broker, &topic, BAD_PARTITION, bad_offset + 1);
        let consumer = broker.spawn_consumer(payments, broker.consumer_config());
        let snapshot = until(&store, "the command behind the skipped record", |s| s.payments.len() == 2).await;
        snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));
        assert!(consumer.health().stuck_partitions().is_empty());
        consumer.stop().await;
    });
}

async fn eventually_stuck(health: &payment_kafka::ConsumerHealth) -> Vec<StuckPartition> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stuck = health.stuck_partitions();
        if !stuck.is_empty() {
            return stuck;
        }
        assert!(Instant::now() < deadline, "no stuck partition reported within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What `kafka-consumer-groups.sh --reset-offsets --to-offset` does for one partition. A Kafka
/// broker takes that commit from outside an empty group; the mock cluster only from a member, so
/// the "operator" joins the group first.
fn commit_offset(broker: &Broker, topic: &str, partition: i32, offset: i64) {
    let group = broker.consumer_config().group_id;
    let operator: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.config.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .unwrap_or_else(|e| panic!("operator client: {e}"));
    operator.subscribe(&[topic]).unwrap_or_else(|e| panic!("subscribe: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while operator.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the operator client got no assignment");
        let _ = operator.poll(Duration::from_millis(100));
    }
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap_or_else(|e| panic!("offset list: {e}"));
    operator.commit(&offsets, CommitMode::Sync).unwrap_or_else(|e| panic!("commit offset {offset}: {e}"));
    // Leave the group properly, so the service's consumer does not wait for this member's
    // session to expire before it gets the partitions.
    operator.unsubscribe();
    while operator.assignment().map(|a| a.count()).unwrap_or(0) > 0 {
        assert!(Instant::now() < deadline, "the operator client did not leave the group");
        let _ = operator.poll(Duration::from_millis(100));
    }
}

/// Writes one record batch flagged zstd whose compressed bytes are not zstd, with a Produce
/// request (v3) encoded here, and returns the offset the broker gave it.
fn produce_corrupt_zstd_batch(brokers: &str, topic: &str, partition: i32) -> i64 {
    const ZSTD: i16 = 4;
    let garbage = b"these bytes are not a zstd frame".to_vec();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    // RecordBatch v2, from `attributes` on: what the CRC-32C covers.
    let mut covered = Vec::new();
    covered.extend(ZSTD.to_be_bytes()); // attributes
    covered.extend(0i32.to_be_bytes()); // lastOffsetDelta
    covered.extend(now.to_be_bytes()); // baseTimestamp
    covered.extend(now.to_be_bytes()); // maxTimestamp
    covered.extend((-1i64).to_be_bytes()); // producerId
    covered.extend((-1i16).to_be_bytes()); // producerEpoch
    covered.extend((-1i32).to_be_bytes()); // baseSequence
    covered.extend(1i32.to_be_bytes()); // records
    covered.extend(&garbage);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI).checksum(&covered);
    let mut after_length = Vec::new();
    after_length.extend((-1i32).to_be_bytes()); // partitionLeaderEpoch
    after_length.push(2); // magic
    after_length.extend(crc.to_be_bytes());
    after_length.extend(&covered);
    let mut batch = Vec::new();
    batch.extend(0i64.to_be_bytes()); // baseOffset: the broker assigns it
    batch.extend((after_length.len() as i32).to_be_bytes());
    batch.extend(after_length);

    let mut body = Vec::new();
    body.extend(0i16.to_be_bytes()); // api key: Produce
    body.extend(3i16.to_be_bytes()); // api version
    body.extend(7i32.to_be_bytes()); // correlation id
    put_string(&mut body, "corrupt-producer");
    body.extend((-1i16).to_be_bytes()); // transactional id: null
    body.extend(1i16.to_be_bytes()); // acks
    body.extend(10_000i32.to_be_bytes()); // timeout
    body.extend(1i32.to_be_bytes()); // one topic
    put_string(&mut body, topic);
    body.extend(1i32.to_be_bytes()); // one partition
    body.extend(partition.to_be_bytes());
    body.extend((batch.len() as i32).to_be_bytes());
    body.extend(batch);

    let address = leader_of(brokers, topic, partition);
    let mut socket = TcpStream::connect(&address).unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap_or_else(|e| panic!("{e}"));
    socket.write_all(&(body.len() as i32).to_be_bytes()).unwrap_or_else(|e| panic!("send: {e}"));
    socket.write_all(&body).unwrap_or_else(|e| panic!("send: {e}"));
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).unwrap_or_else(|e| panic!("response size: {e}"));
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    socket.read_exact(&mut response).unwrap_or_else(|e| panic!("response: {e}"));
    // correlation id, topics (1), name, partitions (1), index, error code, base offset, ...
    let mut at = 4 + 4;
    let name_len = i16::from_be_bytes([response[at], response[at + 1]]) as usize;
    at += 2 + name_len + 4 + 4;
    let error = i16::from_be_bytes([response[at], response[at + 1]]);
    assert_eq!(error, 0, "the broker refused the hand-made batch");
    at += 2;
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&response[at..at + 8]);
    i64::from_be_bytes(offset)
}

/// `host:port` of the broker that leads `partition`: only the leader takes a Produce.
fn leader_of(brokers: &str, topic: &str, partition: i32) -> String {
    let client: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap_or_else(|e| panic!("client: {e}"));
    let metadata =
        client.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap_or_else(|e| panic!("metadata: {e}"));
    let leader = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .find(|p| p.id() == partition)
        .map(|p| p.leader())
        .unwrap_or_else(|| panic!("no partition {partition} in {topic}"));
    let broker = metadata.brokers().iter().find(|b| b.id() == leader).unwrap_or_else(|| panic!("no broker {leader}"));
    format!("{}:{}", broker.host(), broker.port())
}

fn put_string(buffer: &mut Vec<u8>, text: &str) {
    buffer.extend((text.len() as i16).to_be_bytes());
    buffer.extend(text.as_bytes());
}
