//! The decision function on its own: no store, no I/O.

use std::collections::{HashMap, HashSet};

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::domain::{Account, Amount, Balance, Inbound, MessageId, OrderId, Origin, PayOrder, Payment, UserId};

fn counter() -> impl FnMut() -> Uuid {
    let mut n = 0u128;
    move || {
        n += 1;
        Uuid::from_u128(n)
    }
}

fn order(id: &str, order: &str, user: &str, cents: i64) -> Inbound {
    let pay = PayOrder::new(
        OrderId::new(order).unwrap(),
        UserId::new(user).unwrap(),
        Amount::new(Decimal::new(cents, 2)).unwrap(),
    );
    Inbound::pay(MessageId::new(id).unwrap(), pay)
}

fn state(batch: &[Inbound], balances: &[(&str, i64)], paid: &[Payment]) -> BatchState {
    BatchState {
        claimed: batch.iter().map(|m| m.identity.clone()).collect(),
        accounts: balances
            .iter()
            .map(|(user, cents)| {
                let mut account = Account::open(UserId::new(*user).unwrap(), Utc.timestamp_opt(0, 0).unwrap());
                account.balance = Balance::new(Decimal::new(*cents, 2)).unwrap();
                (account.user_id.clone(), account)
            })
            .collect(),
        payments: paid.iter().map(|p| (p.order_id.clone(), p.clone())).collect(),
        refunds: HashMap::new(),
    }
}

#[test]
fn unclaimed_messages_are_redeliveries_and_write_nothing() {
    let batch = [order("m1", "o1", "u1", 100)];
    let mut loaded = state(&batch, &[("u1", 500)], &[]);
    loaded.claimed.clear();
    let decision = decide_payments(loaded, &batch, Utc::now(), &mut counter());
    assert_eq!(decision.outcomes, vec![Outcome::Redelivered]);
    assert!(decision.effects.is_empty());
}

#[test]
fn one_guarded_update_per_account_from_the_loaded_balance() {
    let batch = [order("m1", "o1", "u1", 100), order("m2", "o2", "u1", 150), order("m3", "o3", "u2", 1)];
    let decision = decide_payments(state(&batch, &[("u1", 500), ("u2", 0)], &[]), &batch, Utc::now(), &mut counter());
    let updates: Vec<_> =
        decision.effects.balance_updates.iter().map(|u| (u.user_id.as_str(), u.from.value(), u.to.value())).collect();
    assert_eq!(updates, [("u1", Decimal::new(500, 2), Decimal::new(250, 2))]);
    assert_eq!(decision.effects.ledger[1].balance_after.value(), Decimal::new(250, 2));
}

#[test]
fn the_decision_depends_only_on_its_inputs() {
    let batch = [order("m1", "o1", "u1", 100), order("m2", "o1", "u1", 100)];
    let now = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let a = decide_payments(state(&batch, &[("u1", 500)], &[]), &batch, now, &mut counter());
    let b = decide_payments(state(&batch, &[("u1", 500)], &[]), &batch, now, &mut counter());
    assert_eq!(a, b);
}

/// Messages `(id, order, user, cents)`, account balances in cents, earlier payments `(order, user, cents)`.
type Generated = (Vec<(u8, u8, u8, i64)>, Vec<i64>, Vec<(u8, u8, i64)>);

fn arbitrary_batch() -> impl Strategy<Value = Generated> {
    (
        prop::collection::vec((0u8..12, 0u8..6, 0u8..4, 1i64..600), 0..24),
        prop::collection::vec(0i64..1500, 3),
        prop::collection::vec((0u8..6, 0u8..4, 1i64..600), 0..3),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Money is conserved, no balance goes negative, an order is paid at most once, and every
    /// claimed message gets exactly one outcome event — for any state and any batch.
    #[test]
    fn decisions_conserve_money_and_pay_each_order_once((messages, balances, earlier) in arbitrary_batch()) {
        let batch: Vec<Inbound> = messages
            .iter()
            .map(|(id, order_n, user, cents)| order(&format!("m{id}"), &format!("o{order_n}"), &format!("u{user}"), *cents))
            .collect();
        let accounts: Vec<(String, i64)> = balances.iter().enumerate().map(|(i, c)| (format!("u{i}"), *c)).collect();
        let accounts: Vec<(&str, i64)> = accounts.iter().map(|(u, c)| (u.as_str(), *c)).collect();
        let paid: Vec<Payment> = earlier
            .iter()
            .map(|(order_n, user, cents)| Payment {
                order_id: OrderId::new(format!("o{order_n}")).unwrap(),
                user_id: UserId::new(format!("u{user}")).unwrap(),
                amount: Amount::new(Decimal::new(*cents, 2)).unwrap(),
                transaction_id: Uuid::new_v4(),
                event_id: Uuid::new_v4(),
                paid_at: Utc::now(),
            })
            .collect();
        let loaded = state(&batch, &accounts, &paid);
        let decision = decide_payments(loaded.clone(), &batch, Utc::now(), &mut counter());
        let effects = &decision.effects;

        prop_assert_eq!(decision.outcomes.len(), batch.len());
        let debited: Decimal = effects.payments.iter().map(|p| p.amount.value()).sum();
        let moved: Decimal = effects.balance_updates.iter().map(|u| u.from.value() - u.to.value()).sum();
        prop_assert_eq!(debited, moved);
        for update in &effects.balance_updates {
            prop_assert_eq!(loaded.accounts[&update.user_id].balance, update.from);
        }
        let mut orders = HashSet::new();
        for payment in &effects.payments {
            prop_assert!(!loaded.payments.contains_key(&payment.order_id));
            prop_assert!(orders.insert(&payment.order_id));
        }
        let distinct: HashSet<&MessageId> = batch.iter().map(|m| &m.identity).collect();
        let mut per_command: HashMap<String, usize> = HashMap::new();
        for event in &effects.outbox {
            let command = event.header("correlation-id").or(event.header("message-id")).unwrap_or_default();
            *per_command.entry(command.to_string()).or_default() += 1;
        }
        prop_assert_eq!(per_command.len(), distinct.len());
        prop_assert!(per_command.values().all(|n| *n == 1));
    }
}

#[test]
fn dead_letters_keep_the_origin() {
    let origin = Origin { topic: "pay.order".into(), partition: 1, offset: 9 };
    let batch = [Inbound::decode(b"nope", None, origin.clone())];
    let decision = decide_payments(state(&batch, &[], &[]), &batch, Utc::now(), &mut counter());
    assert_eq!(decision.effects.dead_letters[0].origin, Some(origin));
    assert_eq!(decision.effects.outbox[0].header("source-offset"), Some("9"));
}

#[test]
fn a_dead_letter_keeps_at_most_the_cap_and_its_event_says_so() {
    let origin = Origin { topic: "pay.order".into(), partition: 0, offset: 1 };
    let huge = vec![b'{'; crate::domain::MAX_DEAD_LETTER_PAYLOAD_BYTES * 2 + 7];
    let batch = [Inbound::decode(&huge, Some("big"), origin.clone()), Inbound::decode(b"nope", Some("small"), origin)];
    let decision = decide_payments(state(&batch, &[], &[]), &batch, Utc::now(), &mut counter());
    let [big, small] = decision.effects.dead_letters.as_slice() else { panic!("{:?}", decision.effects) };
    let [big_event, small_event] = decision.effects.outbox.as_slice() else { panic!("{:?}", decision.effects) };

    assert_eq!(big.payload, huge[..crate::domain::MAX_DEAD_LETTER_PAYLOAD_BYTES]);
    assert_eq!(big.payload_original_bytes, Some(huge.len() as u64));
    assert_eq!(big_event.payload, big.payload, "the stored dead letter and the record agree");
    assert_eq!(big_event.header("payload-truncated"), Some("true"));
    assert_eq!(big_event.header("payload-original-bytes"), Some(huge.len().to_string().as_str()));

    assert_eq!((small.payload.as_slice(), small.payload_original_bytes), (&b"nope"[..], None));
    assert_eq!(small_event.payload, b"nope");
    assert_eq!((small_event.header("payload-truncated"), small_event.header("payload-original-bytes")), (None, None));
}

#[test]
fn events_echo_the_json_type_of_each_commands_ids() {
    let decode = |offset: i64, json: &str| {
        let origin = Origin { topic: "pay.order".into(), partition: 0, offset };
        Inbound::decode(json.as_bytes(), None, origin)
    };
    let batch = [
        decode(0, r#"{"order_id":42,"user_id":7,"amount":1}"#),
        decode(1, r#"{"order_id":"42","user_id":"7","amount":"1.00"}"#),
        decode(2, r#"{"order_id":43,"user_id":7,"amount":1000}"#),
        decode(3, r#"{"order_id":44,"user_id":8,"amount":1}"#),
        decode(4, r#"{"order_id":45,"user_id":7,"amount":"x"}"#),
    ];
    let decision = decide_payments(state(&batch, &[("7", 500)], &[]), &batch, Utc::now(), &mut counter());
    let bodies: Vec<serde_json::Value> =
        decision.effects.outbox.iter().map(|e| serde_json::from_slice(&e.payload).unwrap()).collect();
    let ids: Vec<String> = bodies.iter().map(|b| format!("{} {}", b["order_id"], b["user_id"])).collect();
    // Paid; the re-sent command in strings gets the same event in its own spelling; failed for
    // funds, for a missing account and for an invalid amount.
    assert_eq!(ids, [r#"42 7"#, r#""42" "7""#, "43 7", "44 8", "45 7"]);
    assert_eq!(bodies[0]["event_id"], bodies[1]["event_id"]);
    assert_eq!(decision.effects.outbox[1].key.as_deref(), Some("42"));
}
