//! The refund rules of the contract (SPEC §4 `refund.order`, issue 22), one test each, run on
//! every store with the rest of [`super::contract`] (which re-exports them).

use rust_decimal::Decimal;
use uuid::Uuid;

use super::contract::{amount, checked, fresh, funded, json, money, pay, raw_refund, refund, user};
use super::StoreFactory;
use crate::decide::{BalanceUpdate, Effects, Outcome};
use crate::domain::{
    Balance, DeadLetterReason, EntryKind, EventKind, LedgerEntry, RefundFailureReason, StatementPage, MAX_AMOUNT,
    MAX_BALANCE,
};
use crate::ports::{Store, StoreError, UnitOfWork};

fn failed(reason: RefundFailureReason) -> impl Fn(&Outcome) -> bool {
    move |outcome| matches!(outcome, Outcome::RefundFailed { reason: r, .. } if *r == reason)
}

/// A refund credits the payer, writes a `refund` entry linked to the order, and publishes
/// `order.refunded` with every field of SPEC §4, ids echoed in the command's JSON types.
pub async fn refund_credits_and_publishes_order_refunded<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "42", "100").await;
    payments.pay_orders(&[pay("m-1", "7", "42", "30.25")]).await.unwrap();
    let command = raw_refund("m-2", r#"{"message_id":"m-2","refund_id":9,"order_id":7,"user_id":42,"amount":10}"#);
    let outcomes = payments.pay_orders(&[command]).await.unwrap();
    let Outcome::Refunded { transaction_id, event_id } = outcomes[0] else { panic!("{outcomes:?}") };
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.balance("42"), Some(money("79.75")));
    let event = &snapshot.outbox[1];
    assert_eq!(event.kind, EventKind::OrderRefunded);
    assert_eq!(event.key.as_deref(), Some("7"));
    assert_eq!(event.header("event-type"), Some("order.refunded"));
    assert_eq!(event.header("event-id"), Some(event_id.to_string().as_str()));
    assert_eq!(event.header("correlation-id"), Some("m-2"));
    let body = json(&event.payload);
    assert_eq!(body["event_id"], event_id.to_string());
    assert_eq!(body["transaction_id"], transaction_id.to_string());
    let ids = (body["refund_id"].to_string(), body["order_id"].to_string(), body["user_id"].to_string());
    assert_eq!(ids, ("9".into(), "7".into(), "42".into()), "integer ids come back as integers");
    assert_eq!((body["amount"].to_string(), body["refundable_left"].to_string()), ("10".into(), "20.25".into()));
    assert!(chrono::DateTime::parse_from_rfc3339(body["refunded_at"].as_str().unwrap_or_default()).is_ok());
    let entry = &snapshot.ledger[&user("42")][2];
    assert_eq!(
        (entry.kind, entry.entry_id, entry.amount.value(), entry.balance_after.value()),
        (EntryKind::Refund, transaction_id, money("10"), money("79.75"))
    );
    assert_eq!(
        (entry.order_id.as_ref().map(|o| o.as_str()), entry.refund_id.as_ref().map(|r| r.as_str())),
        (Some("7"), Some("9"))
    );
    let page = store.statement(&user("42"), StatementPage::new(1, None).unwrap()).await.unwrap();
    assert_eq!(page[0].entry, *entry, "the statement shows the refund entry, newest first");
}

/// Partial refunds add up to the payment and never past it; no amount means what is left.
pub async fn partial_refunds_never_exceed_the_payment<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "10")]).await.unwrap();
    let outcomes = payments
        .pay_orders(&[
            refund("m-2", "r-1", "o-1", "u1", Some("4")),
            refund("m-3", "r-2", "o-1", "u1", Some("6.01")),
            refund("m-4", "r-3", "o-1", "u1", None),
            refund("m-5", "r-4", "o-1", "u1", Some("0.01")),
            refund("m-6", "r-5", "o-1", "u1", None),
        ])
        .await
        .unwrap();
    assert!(matches!(outcomes[0], Outcome::Refunded { .. }), "{outcomes:?}");
    assert!(failed(RefundFailureReason::ExceedsRefundable)(&outcomes[1]), "{outcomes:?}");
    assert!(matches!(outcomes[2], Outcome::Refunded { .. }), "what is left: {outcomes:?}");
    assert!(failed(RefundFailureReason::ExceedsRefundable)(&outcomes[3]), "nothing is left: {outcomes:?}");
    assert!(failed(RefundFailureReason::ExceedsRefundable)(&outcomes[4]), "nothing is left: {outcomes:?}");
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.balance("u1"), Some(money("10")));
    let amounts: Vec<_> = snapshot.refunds.values().map(|r| (r.amount.value(), r.refundable_left.value())).collect();
    assert_eq!(amounts, [(money("4"), money("6")), (money("6"), Decimal::ZERO)]);
    let failure = json(&snapshot.outbox[2].payload);
    assert_eq!(
        (failure["reason"].as_str(), failure["amount"].to_string().as_str()),
        (Some("exceeds_refundable"), "6.01")
    );
    assert!(json(&snapshot.outbox[5].payload).get("amount").is_none(), "no amount asked, none echoed");
}

/// A refund delivered again changes nothing; re-sent under a new message id it re-publishes the
/// original `order.refunded` (same `event_id`, same bytes) and credits nothing.
pub async fn refund_is_applied_once_per_refund_id<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "8")]).await.unwrap();
    let command = refund("m-2", "r-1", "o-1", "u1", Some("3"));
    let first = payments.pay_orders(std::slice::from_ref(&command)).await.unwrap();
    let Outcome::Refunded { event_id, .. } = first[0] else { panic!("{first:?}") };
    let before = checked(&store).await;
    assert_eq!(payments.pay_orders(std::slice::from_ref(&command)).await.unwrap(), vec![Outcome::Redelivered]);
    assert_eq!(checked(&store).await, before, "a redelivery changes nothing");
    let again = payments.pay_orders(&[refund("m-3", "r-1", "o-1", "u1", Some("3.00"))]).await.unwrap();
    assert_eq!(again, vec![Outcome::AlreadyRefunded { event_id }]);
    let snapshot = checked(&store).await;
    let [_, original, republished] = snapshot.outbox.as_slice() else { panic!("{:?}", snapshot.outbox) };
    assert_eq!(original.payload, republished.payload, "the same event, byte for byte");
    assert_eq!(republished.header("correlation-id"), Some("m-3"));
    assert_eq!(snapshot.balance("u1"), Some(money("5")), "credited once");
}

/// A refund id re-used for another amount, order or user, or with no amount where one was
/// given, is dead-lettered as a conflicting duplicate: nothing credited, nothing contradicting
/// emitted.
pub async fn refund_id_reused_for_another_refund_is_dead_lettered<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "20").await;
    funded(&payments, "u2", "20").await;
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "8"), pay("m-2", "o-2", "u1", "8")]).await.unwrap();
    payments.pay_orders(&[refund("m-3", "r-1", "o-1", "u1", Some("3"))]).await.unwrap();
    let outcomes = payments
        .pay_orders(&[
            refund("m-4", "r-1", "o-1", "u1", Some("2")),
            refund("m-5", "r-1", "o-2", "u1", Some("3")),
            refund("m-6", "r-1", "o-1", "u2", Some("3")),
            refund("m-7", "r-1", "o-1", "u1", None),
            raw_refund("m-8", r#"{"refund_id":"r-1","order_id":"o-1","user_id":"u1","amount":"-3"}"#),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::DeadLettered { reason: DeadLetterReason::ConflictingDuplicate }; 5]);
    let snapshot = checked(&store).await;
    assert_eq!((snapshot.balance("u1"), snapshot.balance("u2")), (Some(money("7")), Some(money("20"))));
    assert_eq!(snapshot.refunds.len(), 1);
    let letter = &snapshot.outbox[3];
    assert_eq!((letter.kind, letter.header("reason-code")), (EventKind::DeadLetter, Some("conflicting_duplicate")));
    assert_eq!(letter.header("source-topic"), Some("refund.order"));
}

/// A refund that arrives before its payment fails `order_not_paid` and does not spend its
/// refund id: the shop's retry (same refund id, new message) succeeds once the order is paid.
/// The other arrival order, payment first (in the same batch too), refunds at once.
pub async fn refund_before_its_payment_fails_and_its_retry_succeeds<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let early = payments.pay_orders(&[refund("m-1", "r-1", "o-1", "u1", Some("2"))]).await.unwrap();
    assert!(failed(RefundFailureReason::OrderNotPaid)(&early[0]), "{early:?}");
    payments.pay_orders(&[pay("m-2", "o-1", "u1", "5")]).await.unwrap();
    let retried = payments.pay_orders(&[refund("m-3", "r-1", "o-1", "u1", Some("2"))]).await.unwrap();
    assert!(matches!(retried[0], Outcome::Refunded { .. }), "{retried:?}");
    // In one batch: refund then payment fails the refund; payment then refund applies it.
    let mixed = payments
        .pay_orders(&[
            refund("m-4", "r-2", "o-2", "u1", None),
            pay("m-5", "o-2", "u1", "1"),
            refund("m-6", "r-3", "o-2", "u1", None),
        ])
        .await
        .unwrap();
    assert!(failed(RefundFailureReason::OrderNotPaid)(&mixed[0]), "{mixed:?}");
    assert!(matches!((mixed[1], mixed[2]), (Outcome::Paid { .. }, Outcome::Refunded { .. })), "{mixed:?}");
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.balance("u1"), Some(money("7")));
    let kinds: Vec<_> = snapshot.outbox.iter().map(|e| e.kind).collect();
    assert_eq!(kinds[0], EventKind::OrderRefundFailed);
    assert_eq!(json(&snapshot.outbox[0].payload)["reason"], "order_not_paid");
}

/// A refund to someone other than the payer, or with an invalid amount or user, fails as a
/// business outcome; one without a refund id is dead-lettered.
pub async fn invalid_refunds_fail_as_business_outcomes<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    funded(&payments, "u2", "10").await;
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "5")]).await.unwrap();
    let outcomes = payments
        .pay_orders(&[
            refund("m-2", "r-1", "o-1", "u2", Some("1")),
            raw_refund("m-3", r#"{"refund_id":"r-2","order_id":"o-1","user_id":"u1","amount":"0.001"}"#),
            raw_refund("m-4", r#"{"refund_id":"r-3","order_id":"o-1","amount":"1"}"#),
            raw_refund("m-5", r#"{"order_id":"o-1","user_id":"u1","amount":"1"}"#),
        ])
        .await
        .unwrap();
    assert!(failed(RefundFailureReason::UserMismatch)(&outcomes[0]), "{outcomes:?}");
    assert!(failed(RefundFailureReason::InvalidAmount)(&outcomes[1]), "{outcomes:?}");
    assert!(failed(RefundFailureReason::UserMismatch)(&outcomes[2]), "{outcomes:?}");
    assert_eq!(outcomes[3], Outcome::DeadLettered { reason: DeadLetterReason::MissingField });
    let snapshot = checked(&store).await;
    assert_eq!((snapshot.balance("u1"), snapshot.balance("u2")), (Some(money("5")), Some(money("10"))));
    let invalid = json(&snapshot.outbox[2].payload);
    assert_eq!((invalid["reason"].as_str(), invalid["amount"].as_str()), (Some("invalid_amount"), Some("0.001")));
    // The retry of the refused refund by the payer is a new attempt: a failed refund id is not spent.
    let retried = payments.pay_orders(&[refund("m-6", "r-1", "o-1", "u1", Some("1"))]).await.unwrap();
    assert!(matches!(retried[0], Outcome::Refunded { .. }), "{retried:?}");
}

/// A refund that would take the balance over 10^15 is refused (`balance_limit`), nothing credited.
pub async fn refund_over_the_balance_limit_fails<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "10")]).await.unwrap();
    // Fill the account to 5 below the limit with deposits of the largest amount, written as a
    // store would (entries and one guarded update), so the ledger still explains the balance.
    let target = MAX_BALANCE - money("5");
    let mut tx = store.begin().await.unwrap();
    tx.lock_accounts(&[user("u1")]).await.unwrap();
    let mut effects = Effects::default();
    let mut balance = Decimal::ZERO;
    while balance < target {
        let step = (target - balance).min(MAX_AMOUNT);
        balance += step;
        effects.ledger.push(LedgerEntry {
            entry_id: Uuid::new_v4(),
            user_id: user("u1"),
            kind: EntryKind::Deposit,
            amount: amount(&step.to_string()),
            balance_after: Balance::new(balance).unwrap(),
            order_id: None,
            refund_id: None,
            created_at: chrono::Utc::now(),
            cause: None,
        });
    }
    effects.balance_updates.push(BalanceUpdate {
        user_id: user("u1"),
        from: Balance::ZERO,
        to: Balance::new(balance).unwrap(),
    });
    tx.apply(&effects).await.unwrap();
    tx.commit().await.unwrap();
    let outcomes = payments.pay_orders(&[refund("m-2", "r-1", "o-1", "u1", Some("6"))]).await.unwrap();
    assert!(failed(RefundFailureReason::BalanceLimit)(&outcomes[0]), "{outcomes:?}");
    let exact = payments.pay_orders(&[refund("m-3", "r-2", "o-1", "u1", Some("5"))]).await.unwrap();
    assert!(matches!(exact[0], Outcome::Refunded { .. }), "up to the limit itself: {exact:?}");
    assert_eq!(checked(&store).await.balance("u1"), Some(MAX_BALANCE));
}

/// Concurrent batches refunding one order under different refund ids never refund more than
/// was paid; the same refund id in both is applied once.
pub async fn concurrent_refunds_of_one_order_stay_within_its_payment<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    funded(&payments, "u2", "10").await;
    payments.pay_orders(&[pay("m-0", "o-1", "u1", "10")]).await.unwrap();
    // Opposite user orders, so the account locks are taken in both directions.
    let first = [
        pay("m-a1", "o-2", "u2", "1"),
        refund("m-a2", "r-1", "o-1", "u1", Some("6")),
        refund("m-a3", "r-3", "o-1", "u1", Some("1")),
    ];
    let second = [
        refund("m-b1", "r-2", "o-1", "u1", Some("6")),
        pay("m-b2", "o-3", "u2", "1"),
        refund("m-b3", "r-3", "o-1", "u1", Some("1")),
    ];
    let (p1, p2) = (payments.clone(), payments.clone());
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move { p1.pay_orders(&first).await }),
        tokio::spawn(async move { p2.pay_orders(&second).await })
    );
    let outcomes: Vec<Outcome> = [r1, r2]
        .into_iter()
        .flat_map(|r| r.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("no error may leak: {e}")))
        .collect();
    let refunded = outcomes.iter().filter(|o| matches!(o, Outcome::Refunded { .. })).count();
    assert_eq!(refunded, 2, "one 6 of r-1/r-2 and r-3 once: {outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Outcome::AlreadyRefunded { .. })).count(), 1);
    let snapshot = checked(&store).await;
    assert_eq!((snapshot.balance("u1"), snapshot.balance("u2")), (Some(money("7")), Some(money("8"))));
}

/// A second refund for a refund id is a [`StoreError::Conflict`], whatever the decision said.
pub async fn apply_refuses_a_second_refund_for_a_refund_id<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "4"), refund("m-2", "r-1", "o-1", "u1", Some("1"))]).await.unwrap();
    let before = checked(&store).await;
    let first = before.refunds.values().next().unwrap().clone();
    let mut tx = store.begin().await.unwrap();
    let second = crate::domain::Refund { transaction_id: Uuid::new_v4(), event_id: Uuid::new_v4(), ..first };
    let refused = tx.apply(&Effects { refunds: vec![second], ..Effects::default() }).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    drop(tx);
    assert_eq!(checked(&store).await, before);
}
