//! Refunds through the real Kafka protocol (librdkafka's mock cluster), on the in-memory store
//! and on PostgreSQL: an order is paid on `pay.order`, then refunded on `refund.order` — in part,
//! twice, past what is left, in whole, re-sent, for an unpaid order, and with a conflicting
//! refund id — and the outcomes come back on `order.refunded`, `order.refund_failed` and the
//! dead-letter topic.

mod common;

use std::collections::BTreeMap;

use common::{funded, header, json, pay, refund, until, Broker};
use payment_core::ports::{Outbox, Store};
use payment_core::testing::Inspect;
use payment_core::Payments;
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use rust_decimal::Decimal;

fn on(events: &[OwnedMessage], topic: &str) -> Vec<serde_json::Value> {
    events.iter().filter(|e| e.topic() == topic).map(json).collect()
}

async fn pay_then_refund_in_parts_twice_and_past_the_payment<S: Store + Outbox + Inspect>(store: S) {
    let broker = Broker::start();
    let payments = Payments::new(store.clone());
    funded(&payments, &["u0".to_string()], "100").await;
    let consumer = broker.spawn_consumer(payments.clone(), broker.consumer_config());
    let publisher = broker.spawn_publisher(store.clone(), broker.publisher_config());
    let producer = broker.producer();

    broker.send(&producer, &[pay("p1", "o1", "u0", "30"), pay("p2", "o2", "u0", "20")], false).await;
    until(&store, "both payments", |s| s.payments.len() == 2).await;
    // One key, so one partition of refund.order: applied in this order.
    let refunds = [
        refund("f1", "r1", "o1", "u0", Some("10")),
        refund("f2", "r2", "o1", "u0", Some("15")),
        refund("f3", "r3", "o1", "u0", Some("5.01")),
        refund("f4", "r4", "o2", "u0", None),
        refund("f5", "r1", "o1", "u0", Some("10.00")),
        refund("f6", "r5", "o9", "u0", None),
        refund("f7", "r2", "o1", "u0", Some("1")),
    ];
    broker.send_refunds(&producer, &refunds).await;
    let events = broker.published(|seen| seen.len() >= 9).await;

    // Events are keyed by order id: in order within an order, in any order across orders.
    let refunded = |order: &str| -> Vec<serde_json::Value> {
        on(&events, "order.refunded").into_iter().filter(|e| e["order_id"] == order).collect()
    };
    let summary = |events: &[serde_json::Value]| -> Vec<String> {
        events.iter().map(|e| format!("{} {} {}", e["refund_id"], e["amount"], e["refundable_left"])).collect()
    };
    let (o1, o2) = (refunded("o1"), refunded("o2"));
    assert_eq!(summary(&o1), [r#""r1" 10 20"#, r#""r2" 15 5"#, r#""r1" 10 20"#], "partial, partial, r1 re-published");
    assert_eq!(summary(&o2), [r#""r4" 20 0"#], "whole, no amount asked");
    assert_eq!(o1[0]["event_id"], o1[2]["event_id"], "a re-send re-publishes the original event");
    let failed: BTreeMap<String, String> = on(&events, "order.refund_failed")
        .iter()
        .map(|e| {
            (
                e["refund_id"].as_str().unwrap_or_default().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        BTreeMap::from([("r3".into(), "exceeds_refundable".into()), ("r5".into(), "order_not_paid".into())])
    );
    let dead: Vec<_> = events.iter().filter(|e| e.topic() == "pay.order.dlq").collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(header(dead[0], "reason-code"), Some("conflicting_duplicate"));
    assert_eq!(header(dead[0], "source-topic"), Some("refund.order"));
    let first = events
        .iter()
        .find(|e| e.topic() == "order.refunded" && e.key() == Some(&b"o1"[..]))
        .unwrap_or_else(|| panic!("no refund of o1"));
    assert_eq!(first.key(), Some(&b"o1"[..]), "keyed by order id");
    assert_eq!(header(first, "event-type"), Some("order.refunded"));
    assert_eq!(header(first, "correlation-id"), Some("f1"));

    let snapshot = store.snapshot().await;
    assert_eq!(snapshot.balance("u0"), Some(Decimal::new(95, 0)), "100 - 50 paid + 45 refunded");
    assert_eq!(snapshot.refunds.len(), 3);
    snapshot.check_invariants().unwrap_or_else(|e| panic!("{e}"));
    consumer.stop().await;
    publisher.stop().await;
}

payment_postgres::on_both_stores!(pay_then_refund_in_parts_twice_and_past_the_payment);
