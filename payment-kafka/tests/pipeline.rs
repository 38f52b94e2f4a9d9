//! The consumer and the publisher over the real Kafka protocol (librdkafka's mock cluster, with
//! its error injection), on the in-memory store and on PostgreSQL.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{funded, header, json, pay, until, until_or, Broker};
use payment_core::ports::{Outbox, Store};
use payment_core::testing::faults::{FaultPoint, FaultyStore};
use payment_core::testing::{block_on, Inspect};
use payment_core::Payments;
use rdkafka::message::OwnedMessage;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::Message;
use rust_decimal::Decimal;

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

fn paid_orders(messages: &[OwnedMessage]) -> BTreeSet<String> {
    messages
        .iter()
        .filter(|m| m.topic() == "order.paid")
        .filter_map(|m| json(m)["order_id"].as_str().map(str::to_string))
        .collect()
}

fn balance(snapshot: &payment_core::testing::Snapshot, user: &str) -> Decimal {
    snapshot.balance(user).unwrap_or_else(|| panic!("no account {user}"))
}

async fn happy_path<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    let users = users(5);
    funded(&payments, &users, "100").await;
    let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
    let publisher = broker.spawn_publisher(store.clone(), broker.publisher_config());

    let commands: Vec<_> = (0..40).map(|i| pay(&format!("m{i}"), &format!("o{i}"), &users[i % 5], "1.25")).collect();
    broker.send(&broker.producer(), &commands, false).await;
    let snapshot = until(&store, "40 payments", |s| s.payments.len() == 40).await;
    let events = broker.published(|seen| seen.len() >= 40).await;

    for user in &users {
        assert_eq!(balance(&snapshot, user), Decimal::new(90, 0));
    }
    assert_eq!(events.len(), 40);
    for event in &events {
        let body = json(event);
        let order = body["order_id"].as_str().unwrap_or_default();
        assert_eq!(event.topic(), "order.paid");
        assert_eq!(event.key(), Some(order.as_bytes()), "keyed by order id");
        assert_eq!(header(event, "event-id"), body["event_id"].as_str());
        assert_eq!(header(event, "event-type"), Some("order.paid"));
        assert_eq!(header(event, "correlation-id").map(|m| &m[1..]), Some(&order[1..]), "m<i> caused o<i>");
        assert_eq!(header(event, "content-type"), Some("application/json"));
        assert_eq!((body["status"].as_str(), body["amount"].to_string().as_str()), (Some("success"), "1.25"));
    }
    assert_eq!(paid_orders(&events).len(), 40);
    until(&store, "all rows published", |_| true).await;
    assert_eq!(store.backlog().await.unwrap_or(u64::MAX), 0);
    consumer.stop().await;
    publisher.stop().await;
}

/// Offsets of the consumer group as committed on the broker.
fn committed(broker: &Broker, group: &str) -> i64 {
    broker.offset_reader(group).committed().iter().sum()
}

async fn redelivery_after_the_database_commit_changes_nothing<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let faulty = FaultyStore::new(store.clone());
    let payments = Payments::new(faulty.clone());
    let users = users(2);
    funded(&payments, &users, "100").await;
    let commands: Vec<_> = (0..10).map(|i| pay(&format!("m{i}"), &format!("o{i}"), &users[i % 2], "3")).collect();
    broker.send(&broker.producer(), &commands, false).await;

    // The first batch commits in the database, then the consumer "dies" before storing offsets.
    faulty.arm(FaultPoint::AfterCommit);
    let slow_retry = common::ConsumerSlowRetry::config(&broker);
    let first = broker.spawn_consumer(payments.clone(), slow_retry);
    let committed_batch = until(&store, "the first batch to commit", |s| !s.payments.is_empty()).await;
    assert!(faulty.armed().is_none(), "the fault fired after the commit");
    first.handle.abort();
    let _ = first.handle.await;
    assert!(
        committed(&broker, "payments") < committed_batch.payments.len() as i64,
        "the batch's offsets were not committed"
    );

    let second = broker.spawn_consumer(payments.clone(), broker.consumer_config());
    let snapshot = until(&store, "all 10 payments", |s| s.payments.len() == 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = store.snapshot().await;
    assert_eq!(settled, snapshot, "nothing more happens");
    assert_eq!(settled.outbox.len(), 10, "one event per order: the redelivered batch emitted nothing");
    assert_eq!(balance(&settled, "u0") + balance(&settled, "u1"), Decimal::new(170, 0));
    settled.check_invariants().unwrap_or_else(|e| panic!("{e}"));
    second.stop().await;
}

async fn publisher_retries_through_produce_errors<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    funded(&payments, &users(1), "100").await;
    let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
    let commands: Vec<_> = (0..20).map(|i| pay(&format!("m{i}"), &format!("o{i}"), "u0", "1")).collect();
    broker.send(&broker.producer(), &commands, false).await;
    until(&store, "20 payments", |s| s.payments.len() == 20).await;

    // Every produce request fails for a while; deliveries time out and the publisher retries.
    broker.cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 60]);
    let mut config = broker.publisher_config();
    config.delivery_timeout = Duration::from_millis(800);
    let publisher = broker.spawn_publisher(store.clone(), config);
    let events = broker.published(|seen| paid_orders(seen).len() == 20).await;
    let ids: BTreeSet<_> = events.iter().filter_map(|e| header(e, "event-id")).collect();
    assert_eq!(ids.len(), 20, "every event arrived (duplicates allowed, losses not)");
    let drained = until(&store, "the outbox to drain", |_| true).await;
    assert_eq!(drained.outbox.len(), 20);
    let mut backlog = u64::MAX;
    for _ in 0..100 {
        backlog = store.backlog().await.unwrap_or(u64::MAX);
        if backlog == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backlog, 0, "every row is marked published once acknowledged");
    consumer.stop().await;
    publisher.stop().await;
}

async fn a_broker_outage_loses_nothing<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    funded(&payments, &users(2), "100").await;
    let producer = broker.producer();
    let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
    let publisher = broker.spawn_publisher(store.clone(), broker.publisher_config());
    let first: Vec<_> = (0..10).map(|i| pay(&format!("a{i}"), &format!("a{i}"), "u0", "1")).collect();
    broker.send(&producer, &first, false).await;
    until(&store, "the first 10", |s| s.payments.len() == 10).await;

    // The next ten are on the broker when it goes away, before the consumer could read them all.
    let second: Vec<_> = (0..10).map(|i| pay(&format!("b{i}"), &format!("b{i}"), "u1", "1")).collect();
    broker.send(&producer, &second, false).await;
    for id in 1..=3 {
        broker.cluster.broker_down(id).unwrap_or_else(|e| panic!("{e}"));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in 1..=3 {
        broker.cluster.broker_up(id).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut consumer = Some(consumer);
    if until_or(&store, Duration::from_secs(30), |s| s.payments.len() == 20).await.is_none() {
        // librdkafka's group membership sometimes does not come back from a full mock-cluster
        // outage (see the consumer's docs). Nothing may be lost meanwhile: no offset past an
        // unapplied message is committed, and a restarted consumer finishes the work.
        let applied = store.snapshot().await.payments.len() as i64;
        assert!(committed(&broker, "payments") <= applied, "an offset was committed past an unapplied message");
        if let Some(stuck) = consumer.take() {
            let h = stuck.health();
            eprintln!(
                "consumer did not resume by itself after the outage; restarting it (received {}, applied {}, rebalances {}, stalls {}, replacements {})",
                h.messages(), h.applied_messages(), h.rebalances(), h.stalls(), h.client_replacements()
            );
            stuck.stop().await;
        }
        consumer = Some(broker.spawn_consumer(payments.clone(), broker.consumer_config()));
    }
    let snapshot = until(&store, "all 20", |s| s.payments.len() == 20).await;
    let events = broker.published(|seen| paid_orders(seen).len() == 20).await;
    assert_eq!(paid_orders(&events).len(), 20);
    assert_eq!(snapshot.outbox.len(), 20, "each command applied once");
    assert_eq!((balance(&snapshot, "u0"), balance(&snapshot, "u1")), (Decimal::new(90, 0), Decimal::new(90, 0)));
    if let Some(consumer) = consumer {
        consumer.stop().await;
    }
    publisher.stop().await;
}

async fn poison_becomes_dead_letters_and_the_partition_moves_on<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    funded(&payments, &users(1), "100").await;
    let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
    let publisher = broker.spawn_publisher(store.clone(), broker.publisher_config());
    // All on one key, so on one partition, in this order.
    let key = "u0".to_string();
    let records = vec![
        pay("g1", "o1", "u0", "10"),
        (key.clone(), "{not json".to_string()),
        (key.clone(), r#"{"user_id":"u0","amount":1}"#.to_string()),
        pay("g2", "o2", "u0", "10"),
        pay("dup", "o1", "u0", "11"),
        (key.clone(), r#"{"order_id":"o9","user_id":"u0","amount":"0.001"}"#.to_string()),
        pay("g3", "o3", "u0", "10"),
    ];
    broker.send(&broker.producer(), &records, true).await;
    let events = broker.published(|seen| seen.len() >= 7).await;
    let dead: BTreeMap<&str, &OwnedMessage> = events
        .iter()
        .filter(|e| e.topic() == "pay.order.dlq")
        .filter_map(|e| Some((header(e, "reason-code")?, e)))
        .collect();
    assert_eq!(dead.keys().copied().collect::<Vec<_>>(), ["conflicting_duplicate", "malformed_json", "missing_field"]);
    let malformed = dead["malformed_json"];
    assert_eq!(malformed.payload(), Some(&b"{not json"[..]), "the original bytes");
    assert_eq!(header(malformed, "source-topic"), Some("pay.order"));
    assert!(header(malformed, "source-partition").is_some() && header(malformed, "source-offset").is_some());
    assert!(header(malformed, "reason-message").is_some_and(|m| !m.is_empty()));
    assert_eq!(paid_orders(&events), BTreeSet::from(["o1".into(), "o2".into(), "o3".into()]));
    let failed: Vec<_> = events.iter().filter(|e| e.topic() == "order.payment_failed").map(json).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["reason"], "invalid_amount");
    let snapshot = store.snapshot().await;
    assert_eq!(balance(&snapshot, "u0"), Decimal::new(70, 0));
    consumer.stop().await;
    publisher.stop().await;
}

async fn two_consumers_share_the_stream_through_a_rebalance<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    let users = users(20);
    funded(&payments, &users, "1000").await;
    let commands: Vec<_> = (0..400).map(|i| pay(&format!("m{i}"), &format!("o{i}"), &users[i % 20], "1")).collect();
    let mut config = broker.consumer_config();
    config.batch_max_messages = 10;
    let first = broker.spawn_consumer(payments.clone(), config.clone());
    broker.send(&broker.producer(), &commands[..200], false).await;
    until(&store, "the first consumer to start", |s| s.payments.len() >= 20).await;
    let second = broker.spawn_consumer(payments.clone(), config);
    broker.send(&broker.producer(), &commands[200..], false).await;
    let snapshot = until(&store, "all 400", |s| s.payments.len() == 400).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = store.snapshot().await;
    assert_eq!(settled.payments.len(), 400);
    assert_eq!(settled.outbox.len(), 400, "one event per order, none for redeliveries");
    assert!(users.iter().all(|u| balance(&settled, u) == Decimal::new(980, 0)));
    assert_eq!(settled, snapshot);
    first.stop().await;
    second.stop().await;
}

async fn a_second_publisher_takes_over_when_the_leader_dies<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    funded(&payments, &users(1), "100").await;
    let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
    let leader = broker.spawn_publisher(store.clone(), broker.publisher_config());
    let first: Vec<_> = (0..10).map(|i| pay(&format!("a{i}"), &format!("a{i}"), "u0", "1")).collect();
    broker.send(&broker.producer(), &first, false).await;
    broker.published(|seen| paid_orders(seen).len() == 10).await;
    let standby = broker.spawn_publisher(store.clone(), broker.publisher_config());
    leader.handle.abort();
    let _ = leader.handle.await;
    let second: Vec<_> = (0..10).map(|i| pay(&format!("b{i}"), &format!("b{i}"), "u0", "1")).collect();
    broker.send(&broker.producer(), &second, false).await;
    let events = broker.published(|seen| paid_orders(seen).len() == 20).await;
    assert_eq!(paid_orders(&events).len(), 20);
    consumer.stop().await;
    standby.stop().await;
}

/// PostgreSQL only: the leader's lock connection is killed on the server; the standby takes over.
#[test]
fn postgres_publisher_fails_over_when_the_leaders_connection_is_killed() {
    block_on(async {
        let store = payment_postgres::testing::fresh_store(16).await;
        let broker = Broker::start();
        let payments = Payments::new(store.clone());
        funded(&payments, &users(1), "100").await;
        let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
        // The first leader would only try to lead again after a minute: the standby must take over.
        let mut slow = broker.publisher_config();
        slow.leader_retry_interval = Duration::from_secs(60);
        let leader = broker.spawn_publisher(store.clone(), slow);
        let first: Vec<_> = (0..10).map(|i| pay(&format!("a{i}"), &format!("a{i}"), "u0", "1")).collect();
        broker.send(&broker.producer(), &first, false).await;
        broker.published(|seen| paid_orders(seen).len() == 10).await;
        let standby = broker.spawn_publisher(store.clone(), broker.publisher_config());

        let lock_holder = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                           AND ((classid::BIGINT << 32) | objid::BIGINT) = $1";
        let killed: i32 = sqlx::query_scalar(lock_holder)
            .bind(payment_postgres::PUBLISHER_LOCK_KEY)
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("the leader holds the lock: {e}"));
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(killed)
            .fetch_one(store.pool())
            .await
            .unwrap_or(false);
        assert!(terminated);

        let second: Vec<_> = (0..10).map(|i| pay(&format!("b{i}"), &format!("b{i}"), "u0", "1")).collect();
        broker.send(&broker.producer(), &second, false).await;
        let events = broker.published(|seen| paid_orders(seen).len() == 20).await;
        assert_eq!(paid_orders(&events).len(), 20);
        let now_holding: i32 = sqlx::query_scalar(lock_holder)
            .bind(payment_postgres::PUBLISHER_LOCK_KEY)
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("someone leads: {e}"));
        assert_ne!(now_holding, killed, "the standby leads on a connection of its own");
        consumer.stop().await;
        leader.stop().await;
        standby.stop().await;
    });
}

payment_postgres::on_both_stores!(
    happy_path,
    redelivery_after_the_database_commit_changes_nothing,
    publisher_retries_through_produce_errors,
    a_broker_outage_loses_nothing,
    poison_becomes_dead_letters_and_the_partition_moves_on,
    two_consumers_share_the_stream_through_a_rebalance,
    a_second_publisher_takes_over_when_the_leader_dies,
);
