//! The refund half of the decision on its own: no store, no I/O.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::domain::{
    Account, Amount, Balance, Inbound, MessageId, OrderId, PayOrder, Payment, RefundFailureReason, RefundId,
    RefundOrder, UserId,
};

fn counter() -> impl FnMut() -> Uuid {
    let mut n = 0u128;
    move || {
        n += 1;
        Uuid::from_u128(n)
    }
}

fn cents(n: i64) -> Amount {
    Amount::new(Decimal::new(n, 2)).unwrap()
}

fn refund(id: &str, refund_id: &str, order: &str, user: &str, amount: Option<i64>) -> Inbound {
    let command = RefundOrder::new(
        RefundId::new(refund_id).unwrap(),
        OrderId::new(order).unwrap(),
        UserId::new(user).unwrap(),
        amount.map(cents),
    );
    Inbound::refund(MessageId::new(id).unwrap(), command)
}

fn pay(id: &str, order: &str, user: &str, amount: i64) -> Inbound {
    let command = PayOrder::new(OrderId::new(order).unwrap(), UserId::new(user).unwrap(), cents(amount));
    Inbound::pay(MessageId::new(id).unwrap(), command)
}

fn payment(order: &str, user: &str, amount: i64) -> Payment {
    Payment {
        order_id: OrderId::new(order).unwrap(),
        user_id: UserId::new(user).unwrap(),
        amount: cents(amount),
        transaction_id: Uuid::new_v4(),
        event_id: Uuid::new_v4(),
        paid_at: Utc.timestamp_opt(0, 0).unwrap(),
    }
}

fn state(batch: &[Inbound], balances: &[(&str, i64)], paid: &[Payment]) -> BatchState {
    BatchState {
        claimed: batch.iter().map(|m| m.identity.clone()).collect(),
        accounts: balances
            .iter()
            .map(|(user, amount)| {
                let mut account = Account::open(UserId::new(*user).unwrap(), Utc.timestamp_opt(0, 0).unwrap());
                account.balance = Balance::new(Decimal::new(*amount, 2)).unwrap();
                (account.user_id.clone(), account)
            })
            .collect(),
        payments: paid.iter().map(|p| (p.order_id.clone(), p.clone())).collect(),
        refunds: HashMap::new(),
    }
}

#[test]
fn the_batch_keys_name_refund_ids_only_for_batches_with_refunds() {
    let payments_only = [pay("m1", "o1", "u1", 1)];
    assert!(BatchKeys::of(&payments_only).refunds.is_empty());
    let mixed = [pay("m1", "o1", "u1", 1), refund("m2", "r2", "o2", "u2", None), refund("m3", "r1", "o1", "u1", None)];
    let keys = BatchKeys::of(&mixed);
    let names = |ids: Vec<String>| ids.join(",");
    assert_eq!(names(keys.refunds.iter().map(ToString::to_string).collect()), "r1,r2");
    assert_eq!(names(keys.orders.iter().map(ToString::to_string).collect()), "o1,o2");
    assert_eq!(names(keys.users.iter().map(ToString::to_string).collect()), "u1,u2");
}

#[test]
fn a_refund_credits_the_payer_from_the_loaded_balance() {
    let batch = [refund("m1", "r1", "o1", "u1", Some(150)), refund("m2", "r2", "o1", "u1", None)];
    let decision =
        decide_payments(state(&batch, &[("u1", 100)], &[payment("o1", "u1", 500)]), &batch, Utc::now(), &mut counter());
    assert!(matches!(decision.outcomes[..], [Outcome::Refunded { .. }, Outcome::Refunded { .. }]));
    let update = &decision.effects.balance_updates[0];
    assert_eq!((update.from.value(), update.to.value()), (Decimal::new(100, 2), Decimal::new(600, 2)));
    let amounts: Vec<_> =
        decision.effects.refunds.iter().map(|r| (r.amount, r.requested, r.refundable_left.value())).collect();
    assert_eq!(amounts, [(cents(150), Some(cents(150)), Decimal::new(350, 2)), (cents(350), None, Decimal::ZERO)]);
}

#[test]
fn refunds_of_unknown_orders_and_other_users_fail() {
    let batch = [refund("m1", "r1", "o9", "u1", None), refund("m2", "r2", "o1", "u2", Some(1))];
    let decision = decide_payments(
        state(&batch, &[("u1", 0), ("u2", 0)], &[payment("o1", "u1", 500)]),
        &batch,
        Utc::now(),
        &mut counter(),
    );
    let reasons: Vec<_> = decision
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::RefundFailed { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [Some(RefundFailureReason::OrderNotPaid), Some(RefundFailureReason::UserMismatch)]);
    assert!(decision.effects.refunds.is_empty() && decision.effects.balance_updates.is_empty());
}

/// Messages: `(id, kind, order, user, cents)` with kind 0 = pay, 1 = refund of `cents`,
/// 2 = refund of what is left, and the refund id `r<id % 5>`; balances in cents.
type Generated = (Vec<(u8, u8, u8, u8, i64)>, Vec<i64>);

fn arbitrary_mix() -> impl Strategy<Value = Generated> {
    (prop::collection::vec((0u8..16, 0u8..3, 0u8..4, 0u8..3, 1i64..600), 0..24), prop::collection::vec(0i64..1500, 3))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// In any mix of payments and refunds: every balance moves by refunds − payments, refunds of
    /// an order never pass its payment, each refund id is applied at most once, and every
    /// claimed message gets exactly one outcome event.
    #[test]
    fn refunds_conserve_money_and_stay_within_payments((messages, balances) in arbitrary_mix()) {
        let batch: Vec<Inbound> = messages
            .iter()
            .map(|(n, kind, order, user, amount)| {
                let (id, order, user, refund_id) = (format!("m{n}"), format!("o{order}"), format!("u{user}"), format!("r{}", n % 5));
                match kind {
                    0 => pay(&id, &order, &user, *amount),
                    1 => refund(&id, &refund_id, &order, &user, Some(*amount)),
                    _ => refund(&id, &refund_id, &order, &user, None),
                }
            })
            .collect();
        let accounts: Vec<(String, i64)> = balances.iter().enumerate().map(|(i, c)| (format!("u{i}"), *c)).collect();
        let accounts: Vec<(&str, i64)> = accounts.iter().map(|(u, c)| (u.as_str(), *c)).collect();
        let loaded = state(&batch, &accounts, &[payment("o3", "u0", 300)]);
        let decision = decide_payments(loaded.clone(), &batch, Utc::now(), &mut counter());
        let effects = &decision.effects;
        let debited: Decimal = effects.payments.iter().map(|p| p.amount.value()).sum();
        let credited: Decimal = effects.refunds.iter().map(|r| r.amount.value()).sum();
        let moved: Decimal = effects.balance_updates.iter().map(|u| u.to.value() - u.from.value()).sum();
        prop_assert_eq!(credited - debited, moved);
        let mut paid: HashMap<&OrderId, Decimal> =
            loaded.payments.values().map(|p| (&p.order_id, p.amount.value())).collect();
        paid.extend(effects.payments.iter().map(|p| (&p.order_id, p.amount.value())));
        let mut refunded: HashMap<&OrderId, Decimal> = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for r in &effects.refunds {
            prop_assert!(ids.insert(&r.refund_id), "refund {} applied twice", r.refund_id);
            *refunded.entry(&r.order_id).or_default() += r.amount.value();
        }
        for (order, total) in refunded {
            prop_assert!(total <= paid.get(order).copied().unwrap_or_default(), "{} over-refunded", order);
        }
        let distinct: std::collections::HashSet<&MessageId> = batch.iter().map(|m| &m.identity).collect();
        prop_assert_eq!(effects.outbox.len(), distinct.len());
    }
}
