//! A command the store refuses every time, read from `pay.order` among others: the consumer
//! isolates it by halving its batch, dead-letters it as `store_rejected`, applies every other
//! command and moves on (issue 18 (3)) — instead of retrying the batch for ever.

mod common;

use common::{funded, header, pay, until, Broker};
use payment_core::domain::{DeadLetterReason, OrderId};
use payment_core::ports::{Outbox, Store};
use payment_core::testing::faults::FaultyStore;
use payment_core::testing::Inspect;
use payment_core::Payments;
use rdkafka::Message;

async fn a_command_the_store_refuses_is_dead_lettered_and_the_partition_moves_on<S: Store + Outbox + Inspect>(
    store: S,
) {
    let broker = Broker::start();
    let faulty = FaultyStore::new(store.clone());
    let payments = Payments::new(faulty.clone());
    funded(&payments, &["u0".to_string()], "100").await;
    faulty.refuse(OrderId::new("o7").unwrap_or_else(|e| panic!("{e}")));
    let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
    let publisher = broker.spawn_publisher(store.clone(), broker.publisher_config());

    // One user, one key: the twenty commands share a partition, and the refused one sits among them.
    let commands: Vec<_> = (0..20).map(|i| pay(&format!("m{i}"), &format!("o{i}"), "u0", "1")).collect();
    broker.send(&broker.producer(), &commands, false).await;
    let snapshot =
        until(&store, "19 payments and a dead letter", |s| s.payments.len() == 19 && s.dead_letters.len() == 1).await;
    let letter = &snapshot.dead_letters[0];
    assert_eq!((letter.message_id.as_str(), letter.reason), ("m7", DeadLetterReason::StoreRejected));
    assert!(!snapshot.payments.keys().any(|order| order.as_str() == "o7"));
    snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));

    let published = broker
        .published(|seen| seen.iter().filter(|m| m.topic() == "order.paid").count() >= 19 && seen.len() >= 20)
        .await;
    let dead: Vec<_> = published.iter().filter(|m| m.topic() == "pay.order.dlq").collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(header(dead[0], "reason-code"), Some("store_rejected"));
    assert_eq!(header(dead[0], "message-id"), Some("m7"));
    consumer.stop().await;
    publisher.stop().await;
}

payment_postgres::on_both_stores!(a_command_the_store_refuses_is_dead_lettered_and_the_partition_moves_on);
