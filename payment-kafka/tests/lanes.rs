//! Batches of disjoint partitions applied side by side (`max_batches_in_flight` lanes, issue 20),
//! over the Kafka protocol (librdkafka's mock cluster) on a real store: each partition's commands
//! stay in order, a lane that cannot commit holds back its own partitions' offsets and nothing
//! else, and a member joining while batches are applied loses and repeats nothing.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{funded, pay, until, Broker, PARTITIONS, WAIT};
use payment_core::ports::{Outbox, Store};
use payment_core::testing::{Inspect, Snapshot};
use payment_core::Payments;
use payment_postgres::PgStore;
use rdkafka::producer::{FutureProducer, FutureRecord};

use rust_decimal::Decimal;

/// Produces `records` to one partition of `pay.order`, in order (the producer is idempotent).
async fn send_to(broker: &Broker, producer: &FutureProducer, partition: i32, records: &[(String, String)]) {
    let sends = records.iter().map(|(key, payload)| {
        let record = FutureRecord::to(&broker.config.topics.pay_order).partition(partition).key(key).payload(payload);
        producer.send(record, Duration::from_secs(10))
    });
    for sent in futures::future::join_all(sends).await {
        sent.unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}

/// The group's committed offset of each `pay.order` partition (0 when none).
fn committed(broker: &Broker, group: &str) -> Vec<i64> {
    tokio::task::block_in_place(|| broker.offset_reader(group).committed())
}

/// Waits until the committed offsets satisfy `done`; panics after [`WAIT`].
async fn until_committed(broker: &Broker, what: &str, done: impl Fn(&[i64]) -> bool) -> Vec<i64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let offsets = committed(broker, "payments");
        if done(&offsets) {
            return offsets;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; committed {offsets:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn order_ids(snapshot: &Snapshot, prefix: &str) -> BTreeSet<String> {
    snapshot.payments.keys().map(|o| o.as_str().to_string()).filter(|o| o.starts_with(prefix)).collect()
}

/// Per partition two users, each funded for 20 of its 30 commands of 1: if a lane reordered a
/// partition, some later command would be paid in place of an earlier one. Small batches, four
/// lanes, the whole stream waiting before the consumer starts, so lanes run side by side (on
/// PostgreSQL; the in-memory store finishes a unit of work without ever yielding, so its lanes
/// take turns).
async fn a_partitions_commands_stay_in_order_with_lanes_side_by_side<S: Store + Outbox + Inspect>(
    store: S,
    side_by_side: bool,
) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    let users: Vec<Vec<String>> = (0..PARTITIONS).map(|p| vec![format!("p{p}a"), format!("p{p}b")]).collect();
    funded(&payments, &users.concat(), "20").await;
    let producer = broker.producer();
    for (partition, pair) in users.iter().enumerate() {
        let commands: Vec<_> = (0..60)
            .map(|i| {
                let user = &pair[i % 2];
                pay(&format!("m-{user}-{}", i / 2), &format!("{user}-{:02}", i / 2), user, "1")
            })
            .collect();
        send_to(&broker, &producer, partition as i32, &commands).await;
    }
    let config =
        payment_kafka::ConsumerConfig { batch_max_messages: 7, max_batches_in_flight: 4, ..broker.consumer_config() };
    let consumer = broker.spawn_consumer(payments.clone(), config);
    let health = consumer.health().clone();
    until(&store, "240 commands decided", |s| s.inbox.len() == 240).await;
    let snapshot = store.snapshot().await;
    for user in users.concat() {
        let paid = order_ids(&snapshot, &format!("{user}-"));
        let first_20: BTreeSet<String> = (0..20).map(|i| format!("{user}-{i:02}")).collect();
        assert_eq!(paid, first_20, "{user}: the first 20 by offset are paid, the last 10 fail");
        assert_eq!(snapshot.balance(&user), Some(Decimal::ZERO));
    }
    eprintln!("{} batches, at most {} applied at once", health.batches(), health.most_batches_applying());
    if side_by_side {
        assert!(health.most_batches_applying() >= 2, "lanes applied batches side by side");
    }
    assert!(snapshot.dead_letters.is_empty(), "no command was set aside: {:?}", snapshot.dead_letters);
    snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));
    consumer.stop().await;
}

#[test]
fn a_partitions_commands_stay_in_order_with_lanes_side_by_side_in_memory() {
    let store = payment_core::memory::MemoryStore::new();
    payment_core::testing::block_on(a_partitions_commands_stay_in_order_with_lanes_side_by_side(store, false));
}

#[test]
fn a_partitions_commands_stay_in_order_with_lanes_side_by_side_on_postgres() {
    postgres(async |store| a_partitions_commands_stay_in_order_with_lanes_side_by_side(store, true).await);
}

fn postgres(test: impl AsyncFnOnce(PgStore)) {
    payment_core::testing::block_on(async { test(payment_postgres::testing::fresh_store(24).await).await });
}

/// How many of a partition's commands, from its first, are decided (their identity is in the
/// inbox): its committed offset may never pass that.
fn decided_prefix(snapshot: &Snapshot, partition: i32, sent: usize) -> i64 {
    (0..sent).take_while(|i| snapshot.inbox.iter().any(|m| m.as_str() == format!("m{partition}-{i}"))).count() as i64
}

/// Four lanes, one per partition. Partition 0's lane cannot commit: its account is locked by
/// another transaction, and its connection is killed twice while it waits (a failing unit of
/// work, retried). The other lanes
/// commit and their partitions' offsets are committed meanwhile; partition 0's offset does not
/// move until its batch committed, and no command is set aside as refused.
#[test]
fn offsets_never_pass_an_unapplied_command_while_other_lanes_commit() {
    postgres(async |store| {
        let broker = Broker::start();
        let payments = Payments::new(store.clone());
        let users: Vec<String> = (0..PARTITIONS).map(|p| format!("u{p}")).collect();
        funded(&payments, &users, "100").await;
        let mut lock = store.pool().begin().await.unwrap_or_else(|e| panic!("{e}"));
        sqlx::query("SELECT 1 FROM accounts WHERE user_id = 'u0' FOR UPDATE")
            .execute(&mut *lock)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let producer = broker.producer();
        for (partition, user) in users.iter().enumerate() {
            let commands: Vec<_> =
                (0..10).map(|i| pay(&format!("m{partition}-{i}"), &format!("o{partition}-{i}"), user, "1")).collect();
            send_to(&broker, &producer, partition as i32, &commands).await;
        }
        // One partition per lane: partition 0's lane holds back no other partition.
        let config = payment_kafka::ConsumerConfig { max_batches_in_flight: 4, ..broker.consumer_config() };
        let consumer = broker.spawn_consumer(payments.clone(), config);
        let health = consumer.health().clone();
        until(&store, "the other partitions' 30 payments", |s| s.payments.len() == 30).await;
        let others =
            until_committed(&broker, "the other partitions' offsets", |c| c[1..].iter().all(|o| *o == 10)).await;
        for kill in 0..2 {
            // The lane of partition 0 waits on the lock: kill its connection; it retries and waits again.
            let deadline = Instant::now() + WAIT;
            loop {
                let killed: Vec<bool> = sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE wait_event_type = 'Lock' AND datname = current_database()",
                )
                .fetch_all(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
                if killed.contains(&true) {
                    break;
                }
                assert!(Instant::now() < deadline, "kill {kill}: partition 0's lane never waited on the lock");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(health.batches_applying() >= 1, "partition 0's batch is still being applied");
        // Past an auto-commit interval (5 s) with partition 0 blocked: still nothing committed there.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let blocked = committed(&broker, "payments");
        let snapshot = store.snapshot().await;
        assert_eq!(order_ids(&snapshot, "o0-").len(), 0, "partition 0 applied nothing");
        assert_eq!(blocked[0], 0, "partition 0's offset moved past unapplied commands: {blocked:?}");
        assert_eq!(&blocked[1..], &others[1..]);

        lock.rollback().await.unwrap_or_else(|e| panic!("{e}"));
        let snapshot = until(&store, "all 40 payments", |s| s.payments.len() == 40).await;
        until_committed(&broker, "every offset", |c| c.iter().all(|o| *o == 10)).await;
        assert!(snapshot.dead_letters.is_empty(), "a conflict or lost connection is no refusal");
        assert!(users.iter().all(|u| snapshot.balance(u) == Some(Decimal::from(90))));
        snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));
        consumer.stop().await;
    });
}

/// A second member joins the group while the first applies batches in four lanes: the
/// partitions it takes are revoked from lanes with batches in flight. Sampled throughout, no
/// partition's committed offset passes what is decided; in the end every command is paid once
/// and emitted once.
#[test]
fn a_member_joining_while_batches_are_applied_loses_and_repeats_nothing() {
    postgres(async |store| {
        const PER_PARTITION: usize = 250;
        let broker = Broker::start();
        let payments = Payments::new(store.clone());
        let users: Vec<Vec<String>> = (0..PARTITIONS).map(|p| vec![format!("p{p}a"), format!("p{p}b")]).collect();
        funded(&payments, &users.concat(), "1000").await;
        let commands = |partition: usize, range: std::ops::Range<usize>| -> Vec<(String, String)> {
            let pair = &users[partition];
            range.map(|i| pay(&format!("m{partition}-{i}"), &format!("o{partition}-{i}"), &pair[i % 2], "1")).collect()
        };
        let producer = broker.producer();
        for partition in 0..PARTITIONS as usize {
            send_to(&broker, &producer, partition as i32, &commands(partition, 0..PER_PARTITION / 2)).await;
        }
        let config = payment_kafka::ConsumerConfig {
            batch_max_messages: 10,
            max_batches_in_flight: 4,
            ..broker.consumer_config()
        };
        let first = broker.spawn_consumer(payments.clone(), config.clone());
        until(&store, "the first member to apply", |s| s.payments.len() >= 100).await;
        let second = broker.spawn_consumer(payments.clone(), config);
        for partition in 0..PARTITIONS as usize {
            send_to(&broker, &producer, partition as i32, &commands(partition, PER_PARTITION / 2..PER_PARTITION)).await;
        }
        let total = PER_PARTITION * PARTITIONS as usize;
        let deadline = Instant::now() + WAIT;
        let mut samples = 0;
        loop {
            // Committed first, then the store: what is decided only grows, so an offset read before
            // must be covered by the decisions read after.
            let offsets = committed(&broker, "payments");
            let snapshot = store.snapshot().await;
            samples += 1;
            for (partition, offset) in offsets.iter().enumerate() {
                let decided = decided_prefix(&snapshot, partition as i32, PER_PARTITION);
                assert!(*offset <= decided, "partition {partition}: committed {offset} past decided {decided}");
            }
            if snapshot.payments.len() == total && offsets.iter().all(|o| *o == PER_PARTITION as i64) {
                break;
            }
            assert!(Instant::now() < deadline, "timed out: {} paid, committed {offsets:?}", snapshot.payments.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (a, b) = (first.health().clone(), second.health().clone());
        eprintln!(
            "{samples} samples; first: {} batches, {} rebalances, at most {} at once; second: {} batches",
            a.batches(),
            a.rebalances(),
            a.most_batches_applying(),
            b.batches()
        );
        assert!(b.applied_messages() > 0, "the second member took partitions");
        let snapshot = store.snapshot().await;
        assert_eq!(snapshot.outbox.len(), total, "one event per order: redeliveries emitted nothing");
        assert!(snapshot.dead_letters.is_empty(), "{:?}", snapshot.dead_letters);
        let each = Decimal::from(1000 - PER_PARTITION / 2);
        assert!(users.concat().iter().all(|u| snapshot.balance(u) == Some(each)), "every user paid each order once");
        snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));
        first.stop().await;
        second.stop().await;
    });
}
