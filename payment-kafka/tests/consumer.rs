//! The `pay.order` consumer under real conditions, over the Kafka protocol (librdkafka's mock
//! cluster): a large backlog drains without a stall, an idle group does not churn, and a client
//! closed during a rebalance always returns within its bound.

mod common;

use std::time::{Duration, Instant};

use common::{funded, pay, until, Broker};
use payment_core::ports::{Outbox, Store};
use payment_core::testing::Inspect;
use payment_core::Payments;
use rust_decimal::Decimal;

fn users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

/// Waits until `done` holds, checking every 50 ms; panics with `what` after `wait`.
async fn eventually(what: &str, wait: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + wait;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {wait:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const BACKLOG_ORDERS: usize = 100_000;
const BACKLOG_USERS: usize = 1_000;

/// 100,000 commands: half on the broker before the consumer starts, half produced while it runs.
async fn a_backlog_of_100_000_drains_without_a_stall<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    let users = users(BACKLOG_USERS);
    funded(&payments, &users, "1000").await;
    let order = |i: usize| pay(&format!("m{i}"), &format!("o{i}"), &users[i % BACKLOG_USERS], "1");
    let before: Vec<_> = (0..BACKLOG_ORDERS / 2).map(order).collect();
    let after: Vec<_> = (BACKLOG_ORDERS / 2..BACKLOG_ORDERS).map(order).collect();
    tokio::task::block_in_place(|| broker.produce_many(before));

    let config = payment_kafka::ConsumerConfig { batch_max_messages: 500, ..broker.consumer_config() };
    let started = Instant::now();
    let consumer = broker.spawn_consumer(payments.clone(), config.clone());
    tokio::task::block_in_place(|| broker.produce_many(after));
    let health = consumer.health().clone();
    eventually("the backlog to drain", Duration::from_secs(240), || health.applied_messages() >= BACKLOG_ORDERS as u64)
        .await;
    let elapsed = started.elapsed();
    eprintln!(
        "backlog: {BACKLOG_ORDERS} commands in {:.1} s = {:.0} commands/s; {} batches, {} stalls, {} client replacements (stall timeout {:?})",
        elapsed.as_secs_f64(),
        BACKLOG_ORDERS as f64 / elapsed.as_secs_f64(),
        health.batches(),
        health.stalls(),
        health.client_replacements(),
        config.stall_timeout,
    );
    assert_eq!(health.stalls(), 0, "the consumer stalled with messages waiting");
    assert_eq!(health.client_replacements(), 0, "the consumer replaced its client");
    consumer.stop().await;
    let snapshot = store.snapshot().await;
    assert_eq!(snapshot.payments.len(), BACKLOG_ORDERS, "every command paid once");
    let each = Decimal::from(1000 - BACKLOG_ORDERS / BACKLOG_USERS);
    assert!(users.iter().all(|u| snapshot.balance(u) == Some(each)), "every user paid for exactly its orders");
    snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));
}

/// The scenario: the first member consumed every partition, a second joins and gets
/// partitions it never consumed from, then nothing is produced for three stall timeouts.
async fn an_idle_group_does_not_churn<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    let users = users(10);
    funded(&payments, &users, "1000").await;
    let config = payment_kafka::ConsumerConfig { stall_timeout: Duration::from_secs(2), ..broker.consumer_config() };
    let first = broker.spawn_consumer(payments.clone(), config.clone());
    let commands: Vec<_> = (0..200).map(|i| pay(&format!("m{i}"), &format!("o{i}"), &users[i % 10], "1")).collect();
    broker.send(&broker.producer(), &commands, false).await;
    until(&store, "200 payments", |s| s.payments.len() == 200).await;
    let second = broker.spawn_consumer(payments.clone(), config.clone());
    let (a, b) = (first.health().clone(), second.health().clone());

    // Settled: both members went through a rebalance, then none for two seconds.
    let settle_by = Instant::now() + Duration::from_secs(60);
    let mut counts = (a.rebalances(), b.rebalances());
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = (a.rebalances(), b.rebalances());
        if now == counts && now.1 > 0 {
            break;
        }
        assert!(Instant::now() < settle_by, "the group did not settle: rebalances {now:?}");
        counts = now;
    }
    let silence = config.stall_timeout * 3;
    tokio::time::sleep(silence).await;
    eprintln!(
        "idle group, {silence:?} of silence: rebalances {:?} -> {:?}, stalls {}+{}, replacements {}+{}",
        counts,
        (a.rebalances(), b.rebalances()),
        a.stalls(),
        b.stalls(),
        a.client_replacements(),
        b.client_replacements()
    );
    assert_eq!((a.rebalances(), b.rebalances()), counts, "no rebalance while idle");
    assert_eq!((a.stalls(), b.stalls()), (0, 0), "an idle, caught-up partition is not a stall");
    assert_eq!((a.client_replacements(), b.client_replacements()), (0, 0));
    assert_eq!(store.snapshot().await.payments.len(), 200);
    first.stop().await;
    second.stop().await;
}

payment_postgres::on_both_stores!(a_backlog_of_100_000_drains_without_a_stall, an_idle_group_does_not_churn);

/// Group commit, with no linger: a lone command goes to the store at once, and the commands that
/// arrive while it commits wait for it and then share one batch, instead of queueing one by one.
#[test]
fn commands_arriving_during_a_commit_share_the_next_batch() {
    payment_core::testing::block_on(async {
        let store = payment_core::memory::MemoryStore::new();
        let broker = Broker::start();
        let payments = Payments::new(store.clone());
        let users = users(1);
        funded(&payments, &users, "1000").await;
        let config = payment_kafka::ConsumerConfig { batch_linger: Duration::ZERO, ..broker.consumer_config() };
        assert!(config.batch_max_messages > 30, "the 30 must fit in one batch");
        // The in-memory store runs one unit of work at a time: holding one keeps the consumer's
        // first batch waiting in the store, as a slow commit would.
        let held = store.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let consumer = broker.spawn_consumer(payments.clone(), config);
        let health = consumer.health().clone();
        let producer = broker.producer();
        broker.send(&producer, &[pay("first", "o-first", &users[0], "1")], false).await;
        eventually("the first command to be fetched", Duration::from_secs(30), || health.messages() == 1).await;
        let rest: Vec<_> = (0..30).map(|i| pay(&format!("m{i}"), &format!("o{i}"), &users[0], "1")).collect();
        broker.send(&producer, &rest, false).await;
        eventually("the 30 to be fetched", Duration::from_secs(30), || health.messages() == 31).await;
        assert_eq!(health.batches(), 0, "nothing committed while the store is held");
        drop(held);
        eventually("all 31 to commit", Duration::from_secs(30), || health.applied_messages() == 31).await;
        assert!(
            health.batches() <= 2,
            "31 commands in {} batches: the lone first, then everything that arrived while it waited",
            health.batches()
        );
        assert_eq!(store.snapshot().await.payments.len(), 31);
        consumer.stop().await;
    });
}

/// 20 rounds of a second member joining and one leaving at once, with traffic: every close
/// returns within its bound, none is left behind, and every command is applied exactly once.
#[test]
fn closing_during_a_rebalance_returns_within_its_bound() {
    payment_core::testing::block_on(async {
        let store = payment_core::memory::MemoryStore::new();
        let broker = Broker::start();
        let payments = Payments::new(store.clone());
        let users = users(4);
        funded(&payments, &users, "1000").await;
        let config = broker.consumer_config();
        let bound = config.close_timeout + Duration::from_secs(1);
        let producer = broker.producer();
        let mut sent = 0;
        let mut current = broker.spawn_consumer(payments.clone(), config.clone());
        let mut slowest = Duration::ZERO;
        for round in 0..20u64 {
            let next = broker.spawn_consumer(payments.clone(), config.clone());
            let batch: Vec<_> =
                (sent..sent + 5).map(|i| pay(&format!("m{i}"), &format!("o{i}"), &users[i % 4], "1")).collect();
            broker.send(&producer, &batch, false).await;
            sent += 5;
            // From "at once" to well into the join, so the close meets the rebalance at every stage.
            tokio::time::sleep(Duration::from_millis(round * 37 % 400)).await;
            let health = current.health().clone();
            let took = current.stop().await;
            slowest = slowest.max(took);
            assert!(took <= bound, "round {round}: the close took {took:?}, over its bound {bound:?}");
            assert_eq!(health.closes_over_bound(), 0, "round {round}: a client was left behind");
            current = next;
        }
        let snapshot = until(&store, "every command", |s| s.payments.len() == sent).await;
        eprintln!("20 closes during rebalances: slowest {slowest:?} (bound {bound:?}); {sent} commands applied once");
        assert_eq!(snapshot.outbox.len(), sent, "one event per order: redeliveries changed nothing");
        snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));
        current.stop().await;
    });
}
