//! Commands without `message_id`: their identity must not repeat when the topic is recreated or
//! another cluster takes over with the same database (issue 18 (1)). A second mock cluster is the
//! recreated topic: its first record sits at the same partition and offset as the first one's.

mod common;

use common::{funded, until, Broker};
use payment_core::ports::{Outbox, Store};
use payment_core::testing::Inspect;
use payment_core::Payments;
use rdkafka::producer::FutureRecord;

/// A command with neither a `message_id` field nor a `message-id` header, keyed by its user.
async fn send_anonymous(broker: &Broker, order: &str) {
    let producer = broker.producer();
    let payload = format!(r#"{{"order_id":"{order}","user_id":"u0","amount":1}}"#);
    let record = FutureRecord::to(&broker.config.topics.pay_order).key("u0").payload(&payload).partition(0);
    producer.send(record, std::time::Duration::from_secs(10)).await.unwrap_or_else(|(e, _)| panic!("produce: {e}"));
}

async fn a_command_at_a_reused_position_is_not_taken_for_a_redelivery<S: Store + Outbox + Inspect>(store: S) {
    let payments = Payments::new(store.clone());
    funded(&payments, &["u0".to_string()], "100").await;

    let first_incarnation = Broker::start();
    let consumer = first_incarnation.spawn_consumer(payments.clone(), first_incarnation.consumer_config());
    send_anonymous(&first_incarnation, "o1").await;
    until(&store, "the first command to be paid", |s| s.payments.len() == 1).await;
    consumer.stop().await;
    drop(first_incarnation);

    // Same database, a topic that starts again at offset 0 of partition 0.
    let second_incarnation = Broker::start();
    let consumer = second_incarnation.spawn_consumer(payments.clone(), second_incarnation.consumer_config());
    send_anonymous(&second_incarnation, "o2").await;
    let snapshot = until(&store, "the second command to be paid", |s| s.payments.len() == 2).await;
    assert_eq!(snapshot.inbox.len(), 2, "two identities: {:?}", snapshot.inbox);
    assert!(snapshot.inbox.iter().all(|id| id.as_str().starts_with("pay.order/0/0@")), "{:?}", snapshot.inbox);
    snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));
    consumer.stop().await;
}

payment_postgres::on_both_stores!(a_command_at_a_reused_position_is_not_taken_for_a_redelivery);
