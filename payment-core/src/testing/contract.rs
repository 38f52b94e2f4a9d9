//! The contract every store must honour: one test per rule of SPEC §2 and §4, written once
//! against the ports and run by each store through [`crate::store_contract_tests!`]. The refund
//! rules live in `contract_refunds.rs` and are re-exported here, so the macro finds them too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use rust_decimal::Decimal;
use uuid::Uuid;

use super::faults::{FaultPoint, FaultyStore};
use super::{Inspect, Snapshot, StoreFactory};
use crate::app::{DepositBatching, DepositReceipt, Error, Payments};
use crate::decide::{BalanceUpdate, Effects, Outcome};
use crate::domain::{
    Account, Amount, Balance, DeadLetterReason, EntryKind, EventKind, FailureReason, IdempotencyKey, Inbound, Origin,
    Payment, RequestId, StatementPage, TraceContext, UserId, MAX_DEAD_LETTER_PAYLOAD_BYTES,
};
use crate::ports::{Leadership, Outbox, Retention, RetentionPolicy, Store, StoreError, UnitOfWork, Wakeups};

/// A [`UserId`] from a literal; panics if it is not valid.
pub fn user(id: &str) -> UserId {
    UserId::new(id).unwrap_or_else(|e| panic!("test user id {id:?}: {e}"))
}

/// An [`Amount`] from its decimal text; panics if it is not valid.
pub fn amount(text: &str) -> Amount {
    text.parse().unwrap_or_else(|e| panic!("test amount {text:?}: {e}"))
}

/// The exact value of [`amount`]`(text)`, to compare balances with.
pub fn money(text: &str) -> Decimal {
    amount(text).value()
}

static OFFSET: AtomicI64 = AtomicI64::new(0);

/// A `pay.order` record as the consumer would decode it.
pub fn raw(message_id: &str, json: &str) -> Inbound {
    let origin = Origin { topic: "pay.order".into(), partition: 0, offset: OFFSET.fetch_add(1, Ordering::Relaxed) };
    let headers = Some(message_id);
    Inbound::decode(json.as_bytes(), headers, origin)
}

/// A valid `pay.order` command.
pub fn pay(message_id: &str, order: &str, user: &str, amount: &str) -> Inbound {
    raw(
        message_id,
        &format!(r#"{{"message_id":"{message_id}","order_id":"{order}","user_id":"{user}","amount":"{amount}"}}"#),
    )
}

/// A `refund.order` record as the consumer would decode it.
pub fn raw_refund(message_id: &str, json: &str) -> Inbound {
    let origin = Origin { topic: "refund.order".into(), partition: 0, offset: OFFSET.fetch_add(1, Ordering::Relaxed) };
    Inbound::decode_refund(json.as_bytes(), Some(message_id), origin, None)
}

/// A valid `refund.order` command; `amount` `None` asks for what is left.
pub fn refund(message_id: &str, refund_id: &str, order: &str, user: &str, amount: Option<&str>) -> Inbound {
    let amount = amount.map(|a| format!(r#","amount":"{a}""#)).unwrap_or_default();
    raw_refund(
        message_id,
        &format!(
            r#"{{"message_id":"{message_id}","refund_id":"{refund_id}","order_id":"{order}","user_id":"{user}"{amount}}}"#
        ),
    )
}

pub use super::contract_refunds::*;

pub(super) async fn funded<S: Store>(payments: &Payments<S>, who: &str, deposit: &str) {
    let id = user(who);
    payments.create_account(&id).await.unwrap_or_else(|e| panic!("create {who}: {e}"));
    if deposit != "0" {
        payments.deposit(&id, amount(deposit), None).await.unwrap_or_else(|e| panic!("deposit {who}: {e}"));
    }
}

pub(super) async fn fresh<F: StoreFactory>(factory: &F) -> (Payments<F::Store>, F::Store) {
    let store = factory.fresh().await;
    (Payments::new(store.clone()), store)
}

pub(super) async fn checked<S: Inspect>(store: &S) -> Snapshot {
    let snapshot = store.snapshot().await;
    if let Err(broken) = snapshot.check_invariants() {
        panic!("invariant broken: {broken}\n{snapshot:#?}");
    }
    snapshot
}

/// A policy under which every row retention may delete is old enough, one row per chunk.
fn everything_old() -> RetentionPolicy {
    RetentionPolicy {
        inbox_max_age: std::time::Duration::ZERO,
        published_outbox_max_age: std::time::Duration::ZERO,
        idempotency_max_age: std::time::Duration::ZERO,
        chunk_rows: 1,
    }
}

pub(super) fn json(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(payload).unwrap_or_else(|e| panic!("outbox payload is not JSON: {e}"))
}

/// A new account holds exactly zero and reads back as created.
pub async fn create_account_starts_at_zero<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    let account = payments.create_account(&user("u1")).await.unwrap();
    assert_eq!(account.balance, Balance::ZERO);
    assert_eq!(payments.balance(&user("u1")).await.unwrap(), account);
    assert_eq!(checked(&store).await.balance("u1"), Some(Decimal::ZERO));
}

/// A second account for a user is [`Error::AccountExists`] and changes nothing.
pub async fn create_account_twice_is_refused<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "5").await;
    assert_eq!(payments.create_account(&user("u1")).await, Err(Error::AccountExists));
    assert_eq!(checked(&store).await.balance("u1"), Some(money("5")));
}

/// Deposits add exactly (no rounding) and each writes a ledger entry with the balance after it.
pub async fn deposit_credits_exactly<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "0.1").await;
    let receipt = payments.deposit(&user("u1"), amount("0.2"), None).await.unwrap();
    assert_eq!(receipt.balance.value(), money("0.3"));
    let snapshot = checked(&store).await;
    let entries = &snapshot.ledger[&user("u1")];
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.kind == EntryKind::Deposit && e.order_id.is_none()));
    assert_eq!(entries[1].balance_after.value(), money("0.3"));
}

/// A deposit without an account is [`Error::AccountNotFound`] and writes nothing.
pub async fn deposit_to_missing_account_changes_nothing<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    assert_eq!(payments.deposit(&user("ghost"), amount("1"), None).await, Err(Error::AccountNotFound));
    assert_eq!(payments.balance(&user("ghost")).await, Err(Error::AccountNotFound));
    assert_eq!(checked(&store).await, Snapshot::default());
}

/// A deposit past the balance limit is [`Error::BalanceLimit`] and writes nothing.
pub async fn deposit_over_balance_limit_changes_nothing<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "0").await;
    for _ in 0..1000 {
        payments.deposit(&user("u1"), amount("1000000000000"), None).await.unwrap();
    }
    let before = checked(&store).await;
    assert_eq!(before.balance("u1"), Some(crate::domain::MAX_BALANCE));
    assert_eq!(payments.deposit(&user("u1"), amount("0.01"), None).await, Err(Error::BalanceLimit));
    assert_eq!(checked(&store).await, before);
}

/// A retry under the same key and amount replays the first answer and credits once.
pub async fn idempotent_deposit_replays_and_credits_once<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "1").await;
    let key = IdempotencyKey::new("k-1").unwrap();
    let first = payments.deposit(&user("u1"), amount("2.50"), Some(&key)).await.unwrap();
    payments.deposit(&user("u1"), amount("1"), None).await.unwrap();
    let retry = payments.deposit(&user("u1"), amount("2.5"), Some(&key)).await.unwrap();
    assert!(!first.replayed && retry.replayed);
    assert_eq!(retry.balance, first.balance, "a retry gets the first answer");
    assert_eq!(first.balance.value(), money("3.5"));
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.balance("u1"), Some(money("4.5")));
    assert_eq!(snapshot.idempotency.len(), 1);
}

/// A key reused for another amount is [`Error::IdempotencyKeyReused`] and writes nothing.
pub async fn idempotency_key_reused_for_other_amount_is_refused<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "1").await;
    let key = IdempotencyKey::new("k-1").unwrap();
    payments.deposit(&user("u1"), amount("2"), Some(&key)).await.unwrap();
    let before = checked(&store).await;
    assert_eq!(payments.deposit(&user("u1"), amount("3"), Some(&key)).await, Err(Error::IdempotencyKeyReused));
    assert_eq!(checked(&store).await, before);
}

/// The same key from two users is two deposits.
pub async fn idempotency_keys_belong_to_one_user<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "0").await;
    funded(&payments, "u2", "0").await;
    let key = IdempotencyKey::new("shared").unwrap();
    payments.deposit(&user("u1"), amount("2"), Some(&key)).await.unwrap();
    let other = payments.deposit(&user("u2"), amount("2"), Some(&key)).await.unwrap();
    assert!(!other.replayed);
    let snapshot = checked(&store).await;
    assert_eq!((snapshot.balance("u1"), snapshot.balance("u2")), (Some(money("2")), Some(money("2"))));
}

/// Statement pages are newest first, chain through their cursors, and miss nothing.
pub async fn statement_pages_newest_first_and_chains<F: StoreFactory>(factory: &F) {
    let (payments, _store) = fresh(factory).await;
    funded(&payments, "u1", "0").await;
    funded(&payments, "u2", "100").await;
    for i in 1..=7 {
        payments.deposit(&user("u1"), amount(&i.to_string()), None).await.unwrap();
        payments.pay_orders(&[pay(&format!("m{i}"), &format!("o{i}"), "u1", "0.5")]).await.unwrap();
    }
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = payments.statement(&user("u1"), StatementPage::new(3, before).unwrap()).await.unwrap();
        assert!(page.entries.len() <= 3);
        pages.extend(page.entries);
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(pages.len(), 14, "every entry once");
    assert!(pages.windows(2).all(|w| w[0].position > w[1].position), "newest first, no repeats");
    for pair in pages.windows(2) {
        let (newer, older) = (&pair[0].entry, &pair[1].entry);
        let delta = match newer.kind {
            EntryKind::Deposit | EntryKind::Refund => newer.amount.value(),
            EntryKind::Payment => -newer.amount.value(),
        };
        assert_eq!(older.balance_after.value() + delta, newer.balance_after.value(), "balance_after chains");
    }
    assert_eq!(pages[0].entry.balance_after.value(), money("24.5"));
    assert_eq!(pages[0].entry.order_id.as_ref().map(|o| o.as_str()), Some("o7"));
    assert!(payments.statement(&user("nobody"), StatementPage::new(3, None).unwrap()).await.is_err());
}

/// Every ledger entry says why it exists, and the store gives it back: a payment its command's
/// inbox identity, a refund its refund id, a keyed deposit its key, an unkeyed one the request
/// that asked for it; a deposit through the library with neither has none.
pub async fn every_ledger_entry_records_its_cause<F: StoreFactory>(factory: &F) {
    let (payments, _store) = fresh(factory).await;
    funded(&payments, "u1", "0").await;
    let key = IdempotencyKey::new("k 1").unwrap();
    payments.deposit(&user("u1"), amount("50"), Some(&key)).await.unwrap();
    let request = RequestId::new("req-7f3a").unwrap();
    payments.deposit_requested(&user("u1"), amount("5"), None, Some(&request)).await.unwrap();
    // A key wins over a request id: the key is what a retry repeats.
    let other = RequestId::new("req-ignored").unwrap();
    payments
        .deposit_requested(&user("u1"), amount("6"), Some(&IdempotencyKey::new("k2").unwrap()), Some(&other))
        .await
        .unwrap();
    payments.deposit(&user("u1"), amount("1"), None).await.unwrap();
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "10")]).await.unwrap();
    payments.pay_orders(&[refund("m-2", "r-1", "o-1", "u1", Some("4"))]).await.unwrap();

    let page = payments.statement(&user("u1"), StatementPage::new(10, None).unwrap()).await.unwrap();
    let mut causes: Vec<Option<String>> =
        page.entries.iter().map(|e| e.entry.cause.as_ref().map(|c| c.stored())).collect();
    causes.reverse();
    let expected = [
        Some("idempotency-key:k 1"),
        Some("request:req-7f3a"),
        Some("idempotency-key:k2"),
        None,
        Some("message:m-1"),
        Some("refund:r-1"),
    ];
    assert_eq!(causes, expected.map(|c| c.map(str::to_string)));
}

/// The balances of `answers`, with their users, to compare with what was asked.
fn owners(answers: &[Option<Account>]) -> Vec<Option<(UserId, Decimal)>> {
    answers.iter().map(|a| a.as_ref().map(|a| (a.user_id.clone(), a.balance.value()))).collect()
}

/// [`Store::accounts`] answers each user in the order asked, whatever order the store keeps
/// them in, and each answer is what [`Store::account`] reads.
pub async fn accounts_answer_in_the_order_asked<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    let names: Vec<String> = (10..60).map(|n| format!("u{n}")).collect();
    for (n, name) in names.iter().enumerate() {
        funded(&payments, name, &format!("{}.25", n + 1)).await;
    }
    // Newest first, then every other one: neither insertion nor key order.
    let asked: Vec<UserId> = names.iter().rev().chain(names.iter().step_by(2)).map(|name| user(name)).collect();
    let answers = store.accounts(&asked).await.unwrap();
    let expected: Vec<_> = asked
        .iter()
        .map(|who| {
            let n = names.iter().position(|name| name == who.as_str()).unwrap();
            Some((who.clone(), money(&format!("{}.25", n + 1))))
        })
        .collect();
    assert_eq!(owners(&answers), expected);
    for (who, answer) in asked.iter().zip(&answers) {
        assert_eq!(answer, &store.account(who).await.unwrap(), "{who}");
    }
}

/// A user asked for more than once is answered each time.
pub async fn accounts_answer_a_user_asked_twice_twice<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "1").await;
    funded(&payments, "u2", "2").await;
    let answers = store.accounts(&[user("u1"), user("u2"), user("u1"), user("u1")]).await.unwrap();
    let (one, two) = (Some((user("u1"), money("1"))), Some((user("u2"), money("2"))));
    assert_eq!(owners(&answers), [one.clone(), two, one.clone(), one]);
}

/// A user with no account is answered `None`, in its place among the others.
pub async fn accounts_answer_none_for_a_user_without_one<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    assert_eq!(store.accounts(&[user("ghost")]).await.unwrap(), [None]);
    funded(&payments, "u1", "1").await;
    let answers = store.accounts(&[user("ghost"), user("u1"), user("nobody"), user("ghost")]).await.unwrap();
    assert_eq!(owners(&answers), [None, Some((user("u1"), money("1"))), None, None]);
}

/// Asking for no users answers nothing.
pub async fn accounts_of_no_users_is_empty<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    assert_eq!(store.accounts(&[]).await.unwrap(), []);
    funded(&payments, "u1", "1").await;
    assert_eq!(store.accounts(&[]).await.unwrap(), []);
}

/// Concurrent balance reads, which share [`Store::accounts`] queries, each get their own
/// account — or [`Error::AccountNotFound`] — however they are grouped.
pub async fn concurrent_balance_reads_each_get_their_own_account<F: StoreFactory>(factory: &F) {
    let (payments, _store) = fresh(factory).await;
    for n in 0..20 {
        funded(&payments, &format!("u{n}"), &format!("{n}.5")).await;
    }
    let payments = payments.with_max_reads_per_query(7);
    let reads: Vec<_> = (0..100)
        .map(|i| {
            let (payments, who) =
                (payments.clone(), if i % 10 == 9 { format!("ghost{i}") } else { format!("u{}", i % 20) });
            tokio::spawn(async move { (who.clone(), payments.balance(&user(&who)).await) })
        })
        .collect();
    for read in reads {
        let (who, answer) = read.await.unwrap_or_else(|e| panic!("balance task panicked: {e}"));
        match who.strip_prefix('u') {
            Some(n) => {
                let account = answer.unwrap_or_else(|e| panic!("{who}: {e}"));
                assert_eq!(
                    (account.user_id.as_str(), account.balance.value()),
                    (who.as_str(), money(&format!("{n}.5")))
                );
            }
            None => assert_eq!(answer, Err(Error::AccountNotFound), "{who}"),
        }
    }
}

/// A payment debits, records the payment and a ledger entry, and writes `order.paid` with its headers.
pub async fn payment_debits_and_publishes_order_paid<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "42", "100").await;
    let command = raw("m-1", r#"{"message_id":"m-1","order_id":7,"user_id":42,"amount":30.25}"#);
    let outcomes = payments.pay_orders(&[command]).await.unwrap();
    let Outcome::Paid { transaction_id, event_id } = outcomes[0] else { panic!("{outcomes:?}") };
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.balance("42"), Some(money("69.75")));
    let [event] = snapshot.outbox.as_slice() else { panic!("{:?}", snapshot.outbox) };
    assert_eq!(event.kind, EventKind::OrderPaid);
    assert_eq!(event.key.as_deref(), Some("7"));
    assert_eq!(event.header("event-id"), Some(event_id.to_string().as_str()));
    assert_eq!(event.header("event-type"), Some("order.paid"));
    assert_eq!(event.header("correlation-id"), Some("m-1"));
    assert_eq!(event.header("content-type"), Some("application/json"));
    let body = json(&event.payload);
    assert_eq!(body["event_id"], event_id.to_string());
    assert_eq!(body["transaction_id"], transaction_id.to_string());
    // The command's integer ids come back as integers.
    assert_eq!((body["order_id"].to_string(), body["user_id"].to_string()), ("7".into(), "42".into()));
    assert_eq!(body["status"], "success");
    assert_eq!(body["amount"].to_string(), "30.25", "money is an exact JSON number");
    assert!(chrono::DateTime::parse_from_rfc3339(body["paid_at"].as_str().unwrap_or_default()).is_ok());
    let entry = &snapshot.ledger[&user("42")][1];
    assert_eq!(
        (entry.kind, entry.entry_id, entry.balance_after.value()),
        (EntryKind::Payment, transaction_id, money("69.75"))
    );
}

/// A message delivered again (same identity) changes nothing and emits nothing.
pub async fn redelivery_has_no_effect<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let command = pay("m-1", "o-1", "u1", "4");
    payments.pay_orders(std::slice::from_ref(&command)).await.unwrap();
    let before = checked(&store).await;
    for _ in 0..3 {
        assert_eq!(payments.pay_orders(std::slice::from_ref(&command)).await.unwrap(), vec![Outcome::Redelivered]);
    }
    // Same identity, other content: still the message already processed.
    let altered = pay("m-1", "o-2", "u1", "5");
    assert_eq!(payments.pay_orders(&[altered]).await.unwrap(), vec![Outcome::Redelivered]);
    assert_eq!(checked(&store).await, before);
    // Redelivered next to a new message, in one batch: only the new one has an effect.
    let outcomes = payments.pay_orders(&[command, pay("m-2", "o-3", "u1", "1")]).await.unwrap();
    assert!(matches!(outcomes.as_slice(), [Outcome::Redelivered, Outcome::Paid { .. }]), "{outcomes:?}");
    let after = checked(&store).await;
    assert_eq!((after.balance("u1"), after.outbox.len()), (Some(money("5")), 2));
}

/// One identity twice in a batch is applied once.
pub async fn duplicate_identity_in_one_batch_applies_once<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let command = pay("m-1", "o-1", "u1", "4");
    let outcomes = payments.pay_orders(&[command.clone(), command]).await.unwrap();
    assert!(matches!(outcomes.as_slice(), [Outcome::Paid { .. }, Outcome::Redelivered]), "{outcomes:?}");
    let snapshot = checked(&store).await;
    assert_eq!((snapshot.balance("u1"), snapshot.outbox.len()), (Some(money("6")), 1));
}

/// A new message for a paid order re-publishes the original `order.paid` and debits nothing.
pub async fn new_command_for_paid_order_republishes_original_event<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "4")]).await.unwrap();
    let outcomes = payments.pay_orders(&[pay("m-2", "o-1", "u1", "4.00")]).await.unwrap();
    let snapshot = checked(&store).await;
    let [first, again] = snapshot.outbox.as_slice() else { panic!("{:?}", snapshot.outbox) };
    assert_eq!(outcomes, vec![Outcome::AlreadyPaid { event_id: snapshot.payments.values().next().unwrap().event_id }]);
    assert_eq!(first.payload, again.payload, "the same event, byte for byte");
    assert_eq!(first.header("event-id"), again.header("event-id"));
    assert_eq!(again.header("correlation-id"), Some("m-2"));
    assert_eq!(snapshot.balance("u1"), Some(money("6")), "no second debit");
}

/// A paid order asked again by another user or for another amount is dead-lettered with its original bytes.
pub async fn conflicting_duplicate_is_dead_lettered<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    funded(&payments, "u2", "10").await;
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "4")]).await.unwrap();
    let other_amount = pay("m-2", "o-1", "u1", "5");
    let other_user = pay("m-3", "o-1", "u2", "4");
    let invalid = raw("m-4", r#"{"order_id":"o-1","user_id":"u1","amount":"-4"}"#);
    let outcomes = payments.pay_orders(&[other_amount, other_user, invalid]).await.unwrap();
    let conflict = Outcome::DeadLettered { reason: DeadLetterReason::ConflictingDuplicate };
    assert_eq!(outcomes, vec![conflict; 3]);
    let snapshot = checked(&store).await;
    assert_eq!((snapshot.balance("u1"), snapshot.balance("u2")), (Some(money("6")), Some(money("10"))));
    let kinds: Vec<_> = snapshot.outbox.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::OrderPaid, EventKind::DeadLetter, EventKind::DeadLetter, EventKind::DeadLetter]);
    let letter = &snapshot.outbox[1];
    assert_eq!(letter.header("reason-code"), Some("conflicting_duplicate"));
    assert_eq!(letter.header("source-topic"), Some("pay.order"));
    assert!(letter.header("source-offset").is_some() && letter.header("reason-message").is_some());
    // The reason names neither the user who paid nor the amount paid.
    for letter in &snapshot.outbox[1..3] {
        let message = letter.header("reason-message").unwrap_or_default();
        assert!(!message.contains("u1") && !message.contains('4'), "{message}");
    }
    assert_eq!(snapshot.dead_letters.len(), 3);
    assert_eq!(snapshot.dead_letters[0].payload, letter.payload, "the original bytes");
}

/// A failed order may be paid by a later command.
pub async fn failed_order_is_attempted_again<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "3").await;
    let first = payments.pay_orders(&[pay("m-1", "o-1", "u1", "4")]).await.unwrap();
    assert!(matches!(first[0], Outcome::Failed { reason: FailureReason::InsufficientFunds, .. }));
    payments.deposit(&user("u1"), amount("1"), None).await.unwrap();
    let second = payments.pay_orders(&[pay("m-2", "o-1", "u1", "4")]).await.unwrap();
    assert!(matches!(second[0], Outcome::Paid { .. }), "{second:?}");
    assert_eq!(checked(&store).await.balance("u1"), Some(Decimal::ZERO));
}

/// Insufficient funds emit `order.payment_failed` and debit nothing.
pub async fn insufficient_funds_fails_without_debit<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "3.99").await;
    let outcomes = payments.pay_orders(&[pay("m-1", "o-1", "u1", "4")]).await.unwrap();
    let Outcome::Failed { reason: FailureReason::InsufficientFunds, event_id } = outcomes[0] else {
        panic!("{outcomes:?}")
    };
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.balance("u1"), Some(money("3.99")));
    assert!(snapshot.payments.is_empty());
    let event = &snapshot.outbox[0];
    assert_eq!((event.kind, event.key.as_deref()), (EventKind::OrderPaymentFailed, Some("o-1")));
    let body = json(&event.payload);
    assert_eq!((&body["status"], &body["reason"]), (&"failed".into(), &"insufficient_funds".into()));
    assert_eq!(body["event_id"], event_id.to_string());
    assert_eq!(body["amount"].to_string(), "4");
    assert!(body["failed_at"].is_string());
}

/// A payment without an account fails and creates no account.
pub async fn unknown_account_fails<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    let outcomes = payments.pay_orders(&[pay("m-1", "o-1", "nobody", "4")]).await.unwrap();
    assert!(matches!(outcomes[0], Outcome::Failed { reason: FailureReason::AccountNotFound, .. }));
    let snapshot = checked(&store).await;
    assert!(snapshot.accounts.is_empty(), "no account is created by a payment");
    assert_eq!(json(&snapshot.outbox[0].payload)["reason"], "account_not_found");
}

/// Invalid users and amounts fail as `order.payment_failed`, echoing the input.
pub async fn invalid_commands_fail_as_business_outcomes<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let batch = [
        raw("m-1", r#"{"order_id":"o-1","user_id":"u1","amount":"0.001"}"#),
        raw("m-2", r#"{"order_id":"o-2","user_id":"u1","amount":-1}"#),
        raw("m-3", r#"{"order_id":"o-3","user_id":"u1"}"#),
        raw("m-4", r#"{"order_id":"o-4","user_id":"bad user","amount":1}"#),
        raw("m-5", r#"{"order_id":"o-5","amount":1}"#),
    ];
    let reasons: Vec<_> = payments
        .pay_orders(&batch)
        .await
        .unwrap()
        .into_iter()
        .map(|o| match o {
            Outcome::Failed { reason, .. } => reason,
            other => panic!("{other:?}"),
        })
        .collect();
    use FailureReason::*;
    assert_eq!(reasons, [InvalidAmount, InvalidAmount, InvalidAmount, AccountNotFound, AccountNotFound]);
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.balance("u1"), Some(money("10")));
    assert_eq!(json(&snapshot.outbox[0].payload)["amount"].to_string(), "\"0.001\"", "echoes the input");
}

/// A message without a usable order id is dead-lettered and claimed like any other.
pub async fn undecodable_message_is_dead_lettered<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let batch = [
        raw("m-1", "{not json"),
        pay("m-2", "o-2", "u1", "1"),
        raw("m-3", r#"{"user_id":"u1","amount":1}"#),
        raw("m-4", r#"{"order_id":{"x":1},"user_id":"u1","amount":1}"#),
        pay("m-5", "o-5", "u1", "1"),
    ];
    let outcomes = payments.pay_orders(&batch).await.unwrap();
    let dead = |reason| Outcome::DeadLettered { reason };
    assert_eq!(outcomes[0], dead(DeadLetterReason::MalformedJson));
    assert_eq!(outcomes[2], dead(DeadLetterReason::MissingField));
    assert_eq!(outcomes[3], dead(DeadLetterReason::InvalidField));
    assert!(
        matches!((outcomes[1], outcomes[4]), (Outcome::Paid { .. }, Outcome::Paid { .. })),
        "good messages around poison go through"
    );
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.dead_letters.len(), 3);
    assert_eq!(snapshot.dead_letters[0].payload, b"{not json");
    assert_eq!(snapshot.dead_letters[0].payload_original_bytes, None, "a small payload is whole");
    assert_eq!(snapshot.dead_letters[0].origin.as_ref().map(|o| o.topic.as_str()), Some("pay.order"));
    assert_eq!(snapshot.balance("u1"), Some(money("8")));
    // A dead-lettered message is claimed like any other: its redelivery does nothing.
    assert_eq!(payments.pay_orders(&batch[..1]).await.unwrap(), vec![Outcome::Redelivered]);
}

/// An oversized message is dead-lettered with its first bytes and its original size.
pub async fn oversized_message_is_dead_lettered_with_a_capped_payload<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    let huge = format!(r#"{{"order_id":"o-1","user_id":"u1","amount":1,"pad":"{}"}}"#, "x".repeat(100 * 1024));
    let outcomes = payments.pay_orders(&[raw("m-1", &huge)]).await.unwrap();
    assert_eq!(outcomes, vec![Outcome::DeadLettered { reason: DeadLetterReason::MalformedJson }]);
    let snapshot = checked(&store).await;
    let [letter] = snapshot.dead_letters.as_slice() else { panic!("{:?}", snapshot.dead_letters) };
    let [event] = snapshot.outbox.as_slice() else { panic!("{:?}", snapshot.outbox) };
    assert_eq!(letter.payload, huge.as_bytes()[..MAX_DEAD_LETTER_PAYLOAD_BYTES], "the first bytes, kept");
    assert_eq!(letter.payload_original_bytes, Some(huge.len() as u64), "the original size, kept");
    assert_eq!(event.payload, letter.payload, "the record carries what the store keeps");
    assert_eq!(event.header("payload-truncated"), Some("true"));
    assert_eq!(event.header("payload-original-bytes"), Some(huge.len().to_string().as_str()));
}

/// Later commands of a batch see the debits of earlier ones.
pub async fn orders_of_one_user_in_one_batch_see_each_other<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let batch = [pay("m-1", "o-1", "u1", "6"), pay("m-2", "o-2", "u1", "6"), pay("m-3", "o-3", "u1", "4")];
    let outcomes = payments.pay_orders(&batch).await.unwrap();
    assert!(matches!(
        outcomes.as_slice(),
        [Outcome::Paid { .. }, Outcome::Failed { reason: FailureReason::InsufficientFunds, .. }, Outcome::Paid { .. }]
    ));
    assert_eq!(checked(&store).await.balance("u1"), Some(Decimal::ZERO));
}

/// One order id twice in a batch is debited once.
pub async fn same_order_twice_in_one_batch_debits_once<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let batch = [pay("m-1", "o-1", "u1", "3"), pay("m-2", "o-1", "u1", "3"), pay("m-3", "o-1", "u1", "2")];
    let outcomes = payments.pay_orders(&batch).await.unwrap();
    assert!(matches!(
        outcomes.as_slice(),
        [
            Outcome::Paid { .. },
            Outcome::AlreadyPaid { .. },
            Outcome::DeadLettered { reason: DeadLetterReason::ConflictingDuplicate }
        ]
    ));
    assert_eq!(checked(&store).await.balance("u1"), Some(money("7")));
}

/// A failure at any step of a unit of work, up to the commit, leaves nothing behind.
pub async fn fault_at_any_step_leaves_nothing<F: StoreFactory>(factory: &F) {
    for point in FaultPoint::ALL.into_iter().filter(|p| *p != FaultPoint::AfterCommit) {
        let store = FaultyStore::new(factory.fresh().await);
        let payments = Payments::new(store.clone());
        funded(&payments, "u1", "10").await;
        let key = IdempotencyKey::new("k").unwrap();
        let before = checked(&store).await;
        // A payment and a refund of part of it, so every load of a batch is a step.
        let batch = [pay("m-1", "o-1", "u1", "4"), raw("m-2", "garbage"), refund("m-3", "r-1", "o-1", "u1", Some("1"))];

        store.arm(point);
        let paid = payments.pay_orders(&batch).await;
        let fired = store.armed().is_none();
        store.arm(point);
        let deposited = payments.deposit(&user("u1"), amount("1"), Some(&key)).await;
        let fired_deposit = store.armed().is_none();
        store.arm(point);
        let created = payments.create_account(&user("u2")).await;
        let fired_create = store.armed().is_none();
        store.arm(point);
        let created_again = payments.create_account(&user("u1")).await;
        let fired_create_again = store.armed().is_none();
        store.disarm();

        assert!(fired || fired_deposit || fired_create || fired_create_again, "{point:?} is a step of some use case");
        for (fired, ok) in [(fired, paid.is_ok()), (fired_deposit, deposited.is_ok()), (fired_create, created.is_ok())]
        {
            assert_eq!(ok, !fired, "{point:?}: a failed step fails the use case, and only then");
        }
        assert_eq!(
            created_again,
            Err(if fired_create_again {
                Error::Store(StoreError::Unavailable(format!("fault injected at {point:?}")))
            } else {
                Error::AccountExists
            })
        );
        let after = checked(&store).await;
        let expected_balance = money(match (fired, fired_deposit) {
            (true, true) => "10",
            (true, false) => "11",
            (false, true) => "7",
            (false, false) => "8",
        });
        assert_eq!(after.balance("u1"), Some(expected_balance), "{point:?}");
        if fired {
            assert_eq!(
                (after.inbox.len(), after.outbox.len(), after.payments.len(), after.refunds.len()),
                (0, 0, 0, 0),
                "{point:?}: nothing of the batch"
            );
        }
        if fired && fired_deposit && fired_create {
            assert_eq!(after, before, "{point:?}");
        }
        // The aborted batch goes through when delivered again.
        let retried = payments.pay_orders(&batch).await.unwrap();
        assert_eq!(retried[0] == Outcome::Redelivered, !fired, "{point:?}");
        checked(&store).await;
    }
}

/// A batch committed though the caller saw an error is a redelivery when retried.
pub async fn fault_after_commit_then_redelivery_has_no_effect<F: StoreFactory>(factory: &F) {
    let store = FaultyStore::new(factory.fresh().await);
    let payments = Payments::new(store.clone());
    funded(&payments, "u1", "10").await;
    let batch = [pay("m-1", "o-1", "u1", "4")];
    store.arm(FaultPoint::AfterCommit);
    assert!(payments.pay_orders(&batch).await.is_err(), "the caller hears of a failure");
    let committed = checked(&store).await;
    assert_eq!(committed.balance("u1"), Some(money("6")), "but the batch committed");
    assert_eq!(payments.pay_orders(&batch).await.unwrap(), vec![Outcome::Redelivered]);
    assert_eq!(checked(&store).await, committed);
}

/// A balance update from a value the account no longer holds is a [`StoreError::Conflict`].
pub async fn apply_refuses_a_stale_balance<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let before = checked(&store).await;
    let mut tx = store.begin().await.unwrap();
    tx.lock_accounts(&[user("u1")]).await.unwrap();
    let stale = Effects {
        balance_updates: vec![BalanceUpdate {
            user_id: user("u1"),
            from: Balance::new(money("20")).unwrap(),
            to: Balance::new(money("15")).unwrap(),
        }],
        ..Effects::default()
    };
    let refused = tx.apply(&stale).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_)) | Err(StoreError::Invariant(_))), "{refused:?}");
    drop(tx);
    assert_eq!(checked(&store).await, before);
}

/// A second payment for an order id is a [`StoreError::Conflict`].
pub async fn apply_refuses_a_second_payment_for_an_order<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "4")]).await.unwrap();
    let before = checked(&store).await;
    let first = before.payments.values().next().unwrap().clone();
    let mut tx = store.begin().await.unwrap();
    let second = Payment { transaction_id: Uuid::new_v4(), event_id: Uuid::new_v4(), ..first };
    let refused = tx.apply(&Effects { payments: vec![second], ..Effects::default() }).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    drop(tx);
    assert_eq!(checked(&store).await, before);
}

/// Concurrent deposits and payments on one account add up exactly, and no race surfaces as an error.
pub async fn concurrent_payments_on_one_account_are_exact<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "hot", "0").await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let payments = payments.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    payments.deposit(&user("hot"), amount("1.01"), None).await.map(|_| None)
                } else {
                    payments
                        .pay_orders(&[pay(&format!("m-{i}"), &format!("o-{i}"), "hot", "1")])
                        .await
                        .map(|o| Some(o[0]))
                }
            })
        })
        .collect();
    let mut paid = 0;
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("task panicked: {e}")) {
            Ok(Some(Outcome::Paid { .. })) => paid += 1,
            Ok(_) => {}
            Err(error) => panic!("no error may leak from a race: {error}"),
        }
    }
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.balance("hot"), Some(money("32.32") - Decimal::from(paid)));
    assert_eq!(snapshot.payments.len(), paid as usize);
}

/// Concurrent retries under one key credit once.
pub async fn concurrent_idempotent_retries_credit_once<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "0").await;
    let key = IdempotencyKey::new("retry-me").unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (payments, key) = (payments.clone(), key.clone());
            tokio::spawn(async move { payments.deposit(&user("u1"), amount("7"), Some(&key)).await })
        })
        .collect();
    let mut fresh_credits = 0;
    for task in tasks {
        let receipt = task.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(receipt.balance.value(), money("7"));
        fresh_credits += usize::from(!receipt.replayed);
    }
    assert_eq!(fresh_credits, 1);
    assert_eq!(checked(&store).await.balance("u1"), Some(money("7")));
}

/// Concurrent batches naming one order debit it once, without deadlock.
pub async fn concurrent_batches_with_one_order_debit_once<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "a", "10").await;
    funded(&payments, "b", "10").await;
    // Opposite user orders in the two batches, and the same order id under different message ids.
    let first = [pay("m-a1", "o-x", "a", "1"), pay("m-a2", "o-1", "b", "1")];
    let second = [pay("m-b1", "o-2", "b", "1"), pay("m-b2", "o-x", "a", "1")];
    let (p1, p2) = (payments.clone(), payments.clone());
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move { p1.pay_orders(&first).await }),
        tokio::spawn(async move { p2.pay_orders(&second).await })
    );
    let outcomes: Vec<Outcome> = [r1, r2]
        .into_iter()
        .flat_map(|r| r.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let paid_x = outcomes.iter().filter(|o| matches!(o, Outcome::Paid { .. })).count();
    assert_eq!(paid_x, 3, "o-1, o-2 and one of the two o-x: {outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Outcome::AlreadyPaid { .. })).count(), 1);
    let snapshot = checked(&store).await;
    let balances: BTreeMap<_, _> = snapshot.accounts.iter().map(|(u, b)| (u.as_str().to_string(), b.value())).collect();
    assert_eq!(balances, BTreeMap::from([("a".into(), money("9")), ("b".into(), money("8"))]));
}

/// The outbox is read in commit order and published rows are not read again.
pub async fn outbox_is_read_in_order_and_marked_published<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    for i in 0..5 {
        payments.pay_orders(&[pay(&format!("m-{i}"), &format!("o-{i}"), "u1", "1")]).await.unwrap();
    }
    let rows = store.unpublished(3).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id), "id order");
    let keys: Vec<_> = rows.iter().map(|r| r.event.key.clone().unwrap_or_default()).collect();
    assert_eq!(keys, ["o-0", "o-1", "o-2"], "commit order");
    assert_eq!(rows, store.unpublished(3).await.unwrap(), "reading claims nothing until marked");
    store.mark_published(&[rows[0].id, rows[1].id]).await.unwrap();
    let rest = store.unpublished(100).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.id).collect::<Vec<_>>()[0], rows[2].id);
    assert_eq!((rest.len(), store.backlog().await.unwrap()), (3, 3));
    assert_eq!(checked(&store).await.outbox.len(), 5, "published rows stay until pruned");
}

/// Parked rows are skipped by reads, counted apart from the backlog and kept by retention.
pub async fn parked_outbox_rows_are_skipped_counted_and_kept<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    for i in 0..6 {
        payments.pay_orders(&[pay(&format!("m-{i}"), &format!("o-{i}"), "u1", "1")]).await.unwrap();
    }
    let all: Vec<i64> = store.unpublished(100).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(all.len(), 6);
    let refusal = "Broker: Message size too large";
    store.park(all[1], refusal).await.unwrap();
    let window: Vec<i64> = store.unpublished(3).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(window, [all[0], all[2], all[3]], "the parked row is skipped; the window reaches past it");
    assert_eq!((store.backlog().await.unwrap(), store.parked().await.unwrap()), (5, 1));
    let snapshot = checked(&store).await;
    assert_eq!(snapshot.parked, [(1, refusal.to_string())]);

    store.mark_published(&window).await.unwrap();
    store.mark_published(&[all[1]]).await.unwrap();
    store.park(all[0], "too late: already published").await.unwrap();
    let rest: Vec<i64> = store.unpublished(100).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(rest, [all[4], all[5]]);
    assert_eq!(
        (store.backlog().await.unwrap(), store.parked().await.unwrap()),
        (2, 1),
        "marking leaves a parked row parked; parking leaves a published row published"
    );

    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(store.prune(everything_old()).await.unwrap().outbox_rows, 3, "only the published rows");
    let kept = store.snapshot().await;
    assert_eq!(kept.outbox.len(), 3, "the parked row and the two unpublished ones stay");
    assert_eq!(kept.parked, [(0, refusal.to_string())]);
    assert_eq!(kept.outbox[0].key.as_deref(), Some("o-1"), "the parked row is the one refused");
    assert_eq!(store.parked().await.unwrap(), 1);
}

/// Parked rows are listed for the operator and re-queued, all or those parked since a time;
/// the age of the oldest waiting row is reported.
pub async fn parked_outbox_rows_are_listed_and_requeued<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    assert_eq!(store.oldest_unpublished().await.unwrap(), None, "nothing waits");
    for i in 0..4 {
        payments.pay_orders(&[pay(&format!("m-{i}"), &format!("o-{i}"), "u1", "1")]).await.unwrap();
    }
    let rows = store.unpublished(100).await.unwrap();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(rows[0].created_at));
    store.park(ids[0], "first refusal").await.unwrap();
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(rows[1].created_at), "a parked row does not wait");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    store.park(ids[2], "second refusal").await.unwrap();

    let parked = store.parked_rows(100).await.unwrap();
    let listed: Vec<(i64, &str)> = parked.iter().map(|p| (p.id, p.error.as_str())).collect();
    assert_eq!(listed, [(ids[0], "first refusal"), (ids[2], "second refusal")]);
    assert!(parked[0].parked_at < between && parked[1].parked_at >= between, "{parked:?}");
    assert_eq!(parked[1].event, rows[2].event);
    assert_eq!(store.parked_rows(1).await.unwrap().len(), 1, "the limit holds");

    assert_eq!(store.requeue(Some(between)).await.unwrap(), 1, "only the row parked since");
    let waiting: Vec<i64> = store.unpublished(100).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(waiting, [ids[1], ids[2], ids[3]]);
    assert_eq!(store.requeue(None).await.unwrap(), 1, "then every other one");
    assert_eq!(store.parked().await.unwrap(), 0);
    assert_eq!(store.backlog().await.unwrap(), 4);
    assert_eq!(store.oldest_unpublished().await.unwrap(), Some(rows[0].created_at));
    assert_eq!(store.requeue(None).await.unwrap(), 0, "nothing is left to re-queue");
    store.mark_published(&ids).await.unwrap();
    assert_eq!(store.oldest_unpublished().await.unwrap(), None);
    checked(&store).await;
}

/// A command the store refuses every time, in the middle of a batch of 500, is dead-lettered
/// as `store_rejected` with the store's error; the 499 others are applied, their events in order.
pub async fn a_command_the_store_refuses_is_set_aside_and_the_rest_applied<F: StoreFactory>(factory: &F) {
    let (_, store) = fresh(factory).await;
    let faulty = FaultyStore::new(store.clone());
    let payments = Payments::new(faulty.clone());
    funded(&payments, "u1", "1000").await;
    let batch: Vec<Inbound> = (0..500).map(|i| pay(&format!("m-{i}"), &format!("o-{i}"), "u1", "1")).collect();
    faulty.refuse(crate::domain::OrderId::new("o-250").unwrap());
    let begun = faulty.units_begun();

    let outcomes = payments.pay_orders_isolating(&batch).await.unwrap();
    assert_eq!(outcomes[250], Outcome::DeadLettered { reason: DeadLetterReason::StoreRejected });
    let paid = outcomes.iter().filter(|o| matches!(o, Outcome::Paid { .. })).count();
    assert_eq!(paid, 499, "every other command is applied");
    let units = faulty.units_begun() - begun;
    assert!(units <= 2 + 2 * 9 + 1, "the poison is found by halving: {units} units of work");

    let snapshot = checked(&store).await;
    assert_eq!(snapshot.payments.len(), 499);
    assert_eq!(snapshot.balance("u1"), Some(Decimal::from(501)));
    let [letter] = snapshot.dead_letters.as_slice() else { panic!("one dead letter: {:?}", snapshot.dead_letters) };
    assert_eq!((letter.message_id.as_str(), letter.reason), ("m-250", DeadLetterReason::StoreRejected));
    assert!(letter.detail.contains("refuses the effects of order o-250"), "the store's error: {}", letter.detail);
    assert_eq!(letter.payload, batch[250].payload, "the original bytes");
    // The events keep the commands' order: o-0 .. o-249, the dead letter, o-251 .. o-499.
    let keys: Vec<Option<&str>> = snapshot.outbox.iter().map(|e| e.key.as_deref()).collect();
    let expected: Vec<Option<String>> =
        (0..500).map(|i| if i == 250 { None } else { Some(format!("o-{i}")) }).collect();
    assert_eq!(keys, expected.iter().map(Option::as_deref).collect::<Vec<_>>());
    assert_eq!(snapshot.outbox[250].kind, EventKind::DeadLetter);

    // Delivered again (the offsets were not stored yet): nothing changes.
    faulty.accept();
    let again = payments.pay_orders_isolating(&batch).await.unwrap();
    assert!(again.iter().all(|o| *o == Outcome::Redelivered), "{again:?}");
    assert_eq!(checked(&store).await, snapshot);
}

/// A transient error is returned for the batch to be retried whole: nothing is split or set
/// aside, and the retry applies every command.
pub async fn a_transient_error_sets_nothing_aside<F: StoreFactory>(factory: &F) {
    let (_, store) = fresh(factory).await;
    let faulty = FaultyStore::new(store.clone());
    let payments = Payments::new(faulty.clone());
    funded(&payments, "u1", "100").await;
    let batch: Vec<Inbound> = (0..8).map(|i| pay(&format!("m-{i}"), &format!("o-{i}"), "u1", "1")).collect();
    let before = checked(&store).await;
    for point in [FaultPoint::ClaimMessages, FaultPoint::Apply, FaultPoint::Commit] {
        faulty.arm(point);
        let error = payments.pay_orders_isolating(&batch).await.unwrap_err();
        assert!(matches!(error, Error::Store(StoreError::Unavailable(_))), "{point:?}: {error}");
        assert_eq!(checked(&store).await, before, "{point:?}: nothing is written, nothing set aside");
    }
    let outcomes = payments.pay_orders_isolating(&batch).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Paid { .. })), "{outcomes:?}");
    assert!(checked(&store).await.dead_letters.is_empty());
}

/// A store error that does not repeat is no reason to split: the batch is tried whole again.
pub async fn a_refusal_that_does_not_repeat_splits_nothing<F: StoreFactory>(factory: &F) {
    let (_, store) = fresh(factory).await;
    let faulty = FaultyStore::new(store.clone());
    let payments = Payments::new(faulty.clone());
    funded(&payments, "u1", "100").await;
    let batch: Vec<Inbound> = (0..8).map(|i| pay(&format!("m-{i}"), &format!("o-{i}"), "u1", "1")).collect();
    faulty.arm_with(FaultPoint::Apply, StoreError::Invariant("once".into()));
    let begun = faulty.units_begun();
    let outcomes = payments.pay_orders_isolating(&batch).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Paid { .. })), "{outcomes:?}");
    assert_eq!(faulty.units_begun() - begun, 2, "the batch whole, twice");
    assert!(checked(&store).await.dead_letters.is_empty());
}

/// Only one publisher leads at a time; dropping the lead frees it.
pub async fn one_publisher_leads_at_a_time<F: StoreFactory>(factory: &F) {
    let (_, store) = fresh(factory).await;
    let mut leader = store.try_lead().await.unwrap().expect("the first publisher leads");
    assert!(store.clone().try_lead().await.unwrap().is_none(), "a second one waits");
    assert!(leader.still_leading().await);
    drop(leader);
    let mut taken = None;
    for _ in 0..50 {
        taken = store.try_lead().await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(taken.is_some(), "leadership is free again once the leader is gone");
}

/// A commit that wrote outbox rows wakes a subscriber.
pub async fn wakeups_follow_commits_with_outbox_rows<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let mut wakeups = store.wakeups().await.unwrap();
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(200), wakeups.next()).await;
    assert!(quiet.is_err(), "no outbox row, no wake-up");
    payments.pay_orders(&[pay("m-1", "o-1", "u1", "1")]).await.unwrap();
    let woken = tokio::time::timeout(std::time::Duration::from_secs(5), wakeups.next()).await;
    assert!(matches!(woken, Ok(Ok(()))), "{woken:?}");
}

/// Retention deletes old inbox, published outbox and idempotency rows, and nothing else.
pub async fn retention_prunes_old_rows_only<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    payments.deposit(&user("u1"), amount("1"), Some(&IdempotencyKey::new("k").unwrap())).await.unwrap();
    for i in 0..4 {
        payments.pay_orders(&[pay(&format!("m-{i}"), &format!("o-{i}"), "u1", "1")]).await.unwrap();
    }
    let published: Vec<i64> = store.unpublished(2).await.unwrap().iter().map(|r| r.id).collect();
    store.mark_published(&published).await.unwrap();
    let keep = RetentionPolicy::default();
    assert_eq!(store.prune(keep).await.unwrap(), Default::default(), "nothing is old yet");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let pruned = store.prune(everything_old()).await.unwrap();
    assert_eq!((pruned.inbox_rows, pruned.outbox_rows, pruned.idempotency_rows), (4, 2, 1));
    let snapshot = store.snapshot().await;
    assert_eq!(snapshot.outbox.len(), 2, "unpublished rows are never pruned");
    assert_eq!(snapshot.balance("u1"), Some(money("7")), "money is never pruned");
    assert_eq!(snapshot.ledger[&user("u1")].len(), 6);
}

/// Batching that closes a batch when `max_requests` deposits joined it: the tests below spawn
/// exactly that many, so they share one unit of work; the long linger only bounds a hang.
fn batch_of(max_requests: usize) -> DepositBatching {
    DepositBatching { max_requests, linger: std::time::Duration::from_secs(5), group_commit: false }
}

/// Deposits `(user, amount, key)` all at once; their answers in the same order.
async fn deposit_all<S: Store>(
    payments: &Payments<S>,
    deposits: &[(&str, &str, Option<&str>)],
) -> Vec<Result<DepositReceipt, Error>> {
    let tasks: Vec<_> = deposits
        .iter()
        .map(|(who, how_much, key)| {
            let (payments, who, how_much) = (payments.clone(), user(who), amount(how_much));
            let key = key.map(|k| IdempotencyKey::new(k).unwrap_or_else(|e| panic!("test key {k:?}: {e}")));
            tokio::spawn(async move { payments.deposit(&who, how_much, key.as_ref()).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.unwrap_or_else(|e| panic!("deposit task panicked: {e}")));
    }
    answers
}

/// Concurrent deposits coalesced into shared units of work add up exactly, and concurrent
/// retries under one key credit once.
pub async fn coalesced_deposits_add_up_and_credit_each_key_once<F: StoreFactory>(factory: &F) {
    let store = FaultyStore::new(factory.fresh().await);
    let payments = Payments::new(store.clone()).with_deposit_batching(batch_of(60));
    for n in 0..5 {
        funded(&payments, &format!("u{n}"), "0").await;
    }
    let names: Vec<(String, String, Option<String>)> = (0..60)
        .map(|i| match i {
            0..40 => (format!("u{}", i % 5), format!("{i}.01"), None),
            40..50 => (format!("u{}", i % 5), "2".into(), Some(format!("own-{i}"))),
            _ => ("u0".into(), "7".into(), Some("shared".into())),
        })
        .collect();
    let deposits: Vec<(&str, &str, Option<&str>)> =
        names.iter().map(|(u, a, k)| (u.as_str(), a.as_str(), k.as_deref())).collect();
    let begun = store.units_begun();
    let answers = deposit_all(&payments, &deposits).await;
    assert_eq!(store.units_begun() - begun, 1, "60 concurrent deposits, one unit of work");

    let receipts: Vec<DepositReceipt> =
        answers.into_iter().map(|a| a.unwrap_or_else(|e| panic!("a deposit failed: {e}"))).collect();
    let shared = &receipts[50..];
    assert_eq!(shared.iter().filter(|r| !r.replayed).count(), 1, "one key, one credit");
    assert!(shared.iter().all(|r| r.balance == shared[0].balance), "every retry gets the first answer");
    assert!(receipts[..50].iter().all(|r| !r.replayed));

    let mut expected: BTreeMap<String, Decimal> = (0..5).map(|n| (format!("u{n}"), Decimal::ZERO)).collect();
    for (who, how_much, _) in &deposits[..51] {
        *expected.entry((*who).to_string()).or_default() += money(how_much);
    }
    let snapshot = checked(&store).await;
    let balances: BTreeMap<String, Decimal> =
        snapshot.accounts.iter().map(|(u, b)| (u.as_str().to_string(), b.value())).collect();
    assert_eq!(balances, expected, "money is conserved");
    assert_eq!(snapshot.ledger.values().map(Vec::len).sum::<usize>(), 51, "one entry per credit");
    assert_eq!(snapshot.idempotency.len(), 11);
}

/// A deposit refused inside a shared unit of work — no account, over the limit, key reused —
/// is refused alone; its neighbours are credited or replayed.
pub async fn a_refused_deposit_in_a_batch_leaves_its_neighbours_alone<F: StoreFactory>(factory: &F) {
    let store = FaultyStore::new(factory.fresh().await);
    let payments = Payments::new(store.clone());
    funded(&payments, "u1", "0").await;
    funded(&payments, "u2", "0").await;
    funded(&payments, "full", "0").await;
    let to_the_limit = vec![("full", "1000000000000", None); 1000];
    let filling = payments.clone().with_deposit_batching(batch_of(50));
    assert!(deposit_all(&filling, &to_the_limit).await.iter().all(Result::is_ok));
    let first = payments.deposit(&user("u1"), amount("2"), Some(&IdempotencyKey::new("k").unwrap())).await.unwrap();
    let before = checked(&store).await;
    assert_eq!(before.balance("full"), Some(crate::domain::MAX_BALANCE));

    let payments = payments.with_deposit_batching(batch_of(6));
    let begun = store.units_begun();
    let answers = deposit_all(
        &payments,
        &[
            ("u1", "1", None),
            ("ghost", "1", None),
            ("full", "0.01", None),
            ("u1", "3", Some("k")),
            ("u1", "2", Some("k")),
            ("u2", "1", Some("k")),
        ],
    )
    .await;
    assert_eq!(store.units_begun() - begun, 1, "six deposits, one unit of work");
    let answers: Vec<_> = answers.into_iter().map(|a| a.map(|r| (r.balance.value(), r.replayed))).collect();
    assert_eq!(
        answers,
        [
            Ok((money("3"), false)),
            Err(Error::AccountNotFound),
            Err(Error::BalanceLimit),
            Err(Error::IdempotencyKeyReused),
            Ok((first.balance.value(), true)),
            Ok((money("1"), false)),
        ]
    );
    let after = checked(&store).await;
    assert_eq!((after.balance("u1"), after.balance("u2")), (Some(money("3")), Some(money("1"))));
    assert_eq!(after.balance("full"), before.balance("full"));
    assert_eq!(after.idempotency.len(), 2, "the key of u2 is new; the key of u1 is not written again");
}

/// A store error in a shared unit of work fails each of its deposits and writes nothing; a
/// conflict re-runs the whole batch, which then credits each deposit once.
pub async fn a_store_error_fails_the_whole_batch_and_a_conflict_retries_it<F: StoreFactory>(factory: &F) {
    let store = FaultyStore::new(factory.fresh().await);
    let payments = Payments::new(store.clone()).with_deposit_batching(batch_of(4));
    for who in ["u1", "u2", "u3"] {
        funded(&payments, who, "0").await;
    }
    let deposits = [("u1", "1", None), ("u2", "2", Some("k")), ("u3", "3", None), ("ghost", "4", None)];
    let before = checked(&store).await;

    store.arm(FaultPoint::Apply);
    let failed = deposit_all(&payments, &deposits).await;
    let unavailable = Error::Store(StoreError::Unavailable(format!("fault injected at {:?}", FaultPoint::Apply)));
    assert_eq!(failed, vec![Err(unavailable); 4], "nothing committed, every deposit hears it");
    assert_eq!(checked(&store).await, before);

    store.arm_with(FaultPoint::Apply, StoreError::Conflict("injected".into()));
    let begun = store.units_begun();
    let retried = deposit_all(&payments, &deposits).await;
    assert_eq!(store.units_begun() - begun, 2, "the batch, then the batch again");
    let retried: Vec<_> = retried.into_iter().map(|a| a.map(|r| (r.balance.value(), r.replayed))).collect();
    assert_eq!(
        retried,
        [Ok((money("1"), false)), Ok((money("2"), false)), Ok((money("3"), false)), Err(Error::AccountNotFound)]
    );
    let after = checked(&store).await;
    let balances = [after.balance("u1"), after.balance("u2"), after.balance("u3")];
    assert_eq!(balances, [Some(money("1")), Some(money("2")), Some(money("3"))]);
    assert_eq!(after.ledger.values().map(Vec::len).sum::<usize>(), 3);
}

/// A caller that gives up while its batch gathers — the leader, whose future drives the batch —
/// strands no other deposit of the batch, and its own deposit is left out.
pub async fn a_caller_giving_up_strands_no_other_deposit_of_its_batch<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "0").await;
    let payments = payments.with_deposit_batching(DepositBatching {
        max_requests: 10,
        linger: std::time::Duration::from_millis(300),
        group_commit: false,
    });
    let deposit = |how_much: &'static str| {
        let payments = payments.clone();
        tokio::spawn(async move { payments.deposit(&user("u1"), amount(how_much), None).await })
    };
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(30));
    let leader = deposit("100");
    pause().await;
    let followers = [deposit("1"), deposit("2")];
    pause().await;
    leader.abort();
    let mut answered = Vec::new();
    for follower in followers {
        let receipt = follower.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
        answered.push(receipt.balance.value());
    }
    answered.sort();
    assert!(answered == [money("1"), money("3")] || answered == [money("2"), money("3")], "{answered:?}");
    assert_eq!(checked(&store).await.balance("u1"), Some(money("3")), "the leader's deposit was left out");
}

/// With group commit, a batch goes as soon as every deposit in progress is in it: however long
/// the linger, a lone deposit waits for nothing and concurrent ones finish without waiting it out.
pub async fn group_commit_waits_for_no_deposit_that_is_not_coming<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    for who in ["u1", "u2", "u3"] {
        funded(&payments, who, "0").await;
    }
    let linger = std::time::Duration::from_secs(120);
    let payments = payments.with_deposit_batching(DepositBatching { max_requests: 64, linger, group_commit: true });
    let soon = std::time::Duration::from_secs(20);
    let lone = tokio::time::timeout(soon, payments.deposit(&user("u1"), amount("1"), None)).await;
    assert!(matches!(lone, Ok(Ok(_))), "a lone deposit does not wait out the linger: {lone:?}");
    let deposits: Vec<(&str, &str, Option<&str>)> = (0..30).map(|i| (["u1", "u2", "u3"][i % 3], "0.5", None)).collect();
    let answers = tokio::time::timeout(soon, deposit_all(&payments, &deposits)).await;
    let answers = answers.unwrap_or_else(|_| panic!("concurrent deposits waited out the linger"));
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let snapshot = checked(&store).await;
    let balances = [snapshot.balance("u1"), snapshot.balance("u2"), snapshot.balance("u3")];
    assert_eq!(balances, [Some(money("6")), Some(money("5")), Some(money("5"))]);
}

/// `command` as if its record carried `traceparent` (and `tracestate`).
pub fn traced(command: Inbound, traceparent: &str, tracestate: Option<&str>) -> Inbound {
    let trace = TraceContext::parse(traceparent, tracestate).unwrap_or_else(|e| panic!("{traceparent}: {e}"));
    command.with_trace(Some(trace))
}

/// Each command's trace context is stored with its inbox claim, and its outbox row (paid, failed,
/// re-published, dead-lettered) carries the span of applying it: same trace, a span of its own;
/// the publisher reads it back with the row. A command without one writes a row without one.
pub async fn trace_context_is_stored_with_the_inbox_claim_and_the_outbox_row<F: StoreFactory>(factory: &F) {
    let (payments, store) = fresh(factory).await;
    funded(&payments, "u1", "10").await;
    let parent = |n: u8| format!("00-{:032x}-{:016x}-01", 0xabc0 + u32::from(n), 0xf00 + u32::from(n));
    let batch = [
        traced(pay("m-1", "o-1", "u1", "4"), &parent(1), Some("shop=1,vendor=x")),
        traced(pay("m-2", "o-2", "u1", "100"), &parent(2), None),
        pay("m-3", "o-3", "u1", "1"),
        traced(raw("m-4", "{"), &parent(4), None),
    ];
    payments.pay_orders(&batch).await.unwrap();
    // A re-send of a paid order: the re-published event continues the re-send's trace; a refund
    // of it continues its own.
    let resend = traced(pay("m-5", "o-1", "u1", "4"), &parent(5), None);
    let refunded = traced(refund("m-6", "r-1", "o-1", "u1", Some("1")), &parent(6), Some("shop=2"));
    payments.pay_orders(&[resend.clone(), refunded.clone()]).await.unwrap();
    let snapshot = checked(&store).await;
    let expected_inbox: BTreeMap<_, _> = batch
        .iter()
        .chain([&resend, &refunded])
        .filter_map(|message| Some((message.identity.clone(), message.trace.clone()?)))
        .collect();
    assert_eq!(snapshot.inbox_traces, expected_inbox);
    assert_eq!(snapshot.inbox_traces[&resend.identity].traceparent(), parent(5));
    assert_eq!(snapshot.inbox_traces[&batch[0].identity].tracestate(), Some("shop=1,vendor=x"));
    let expected_rows: Vec<_> = batch
        .iter()
        .chain([&resend, &refunded])
        .map(|message| message.trace.as_ref().map(|trace| trace.apply_span(&message.identity)))
        .collect();
    let kinds: Vec<_> = snapshot.outbox.iter().map(|event| event.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::OrderPaid,
            EventKind::OrderPaymentFailed,
            EventKind::OrderPaid,
            EventKind::DeadLetter,
            EventKind::OrderPaid,
            EventKind::OrderRefunded
        ]
    );
    let stored: Vec<_> = snapshot.outbox.iter().map(|event| event.trace.clone()).collect();
    assert_eq!(stored, expected_rows);
    let published: Vec<_> =
        store.unpublished(100).await.unwrap().into_iter().map(|record| record.event.trace).collect();
    assert_eq!(published, expected_rows, "the publisher reads each row's context back");
    let first = stored[0].as_ref().unwrap();
    assert_eq!(first.trace_id_hex(), format!("{:032x}", 0xabc1));
    assert_ne!(first.parent_id_hex(), format!("{:016x}", 0xf01), "a span of its own");
    assert_eq!(first.tracestate(), Some("shop=1,vendor=x"));
}
