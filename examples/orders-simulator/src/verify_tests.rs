//! The verifier fed synthetic events: a clean run passes, and each broken rule is named.

use std::time::Instant;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::*;
use crate::{Account, Accounts, Order, OutcomeEvent, OutcomeKind};

const E1: &str = "00000000-0000-4000-8000-000000000001";
const E2: &str = "00000000-0000-4000-8000-000000000002";
const E3: &str = "00000000-0000-4000-8000-000000000003";
const E4: &str = "00000000-0000-4000-8000-000000000004";
const T1: &str = "10000000-0000-4000-8000-000000000001";
const T2: &str = "10000000-0000-4000-8000-000000000002";

fn cents(value: i64) -> Decimal {
    Decimal::new(value, 2)
}

/// Two users: u0 holds 12.00 and asks 10.00 (o1) then 5.00 (o2); u1 holds 5.00 and asks 7.00 (o3).
fn world(integer_ids: bool) -> (Vec<Order>, Accounts) {
    let id = |text: &str, number: u64| if integer_ids { json!(number) } else { json!(text) };
    let orders = vec![
        Order { order_id: id("o1", 1), user: 0, amount: cents(1000) },
        Order { order_id: id("o2", 2), user: 0, amount: cents(500) },
        Order { order_id: id("o3", 3), user: 1, amount: cents(700) },
    ];
    let accounts = Accounts {
        accounts: vec![
            Account { user_id: id("u0", 100), deposited: cents(1200), opening_balance: cents(1200) },
            Account { user_id: id("u1", 101), deposited: cents(500), opening_balance: cents(500) },
        ],
    };
    (orders, accounts)
}

fn paid(orders: &[Order], accounts: &Accounts, order: usize, event_id: &str, transaction_id: &str) -> OutcomeEvent {
    let o = &orders[order];
    event(
        OutcomeKind::Paid,
        o,
        json!({
            "event_id": event_id, "order_id": o.order_id, "user_id": accounts.accounts[o.user].user_id,
            "amount": serde_json::from_str::<Value>(&o.amount.to_string()).unwrap(), "status": "success",
            "transaction_id": transaction_id, "paid_at": "2026-01-01T00:00:00Z",
        }),
    )
}

fn failed(orders: &[Order], accounts: &Accounts, order: usize, event_id: &str) -> OutcomeEvent {
    let o = &orders[order];
    event(
        OutcomeKind::Failed,
        o,
        json!({
            "event_id": event_id, "order_id": o.order_id, "user_id": accounts.accounts[o.user].user_id,
            "amount": serde_json::from_str::<Value>(&o.amount.to_string()).unwrap(), "status": "failed",
            "reason": "insufficient_funds", "failed_at": "2026-01-01T00:00:00Z",
        }),
    )
}

fn event(kind: OutcomeKind, order: &Order, body: Value) -> OutcomeEvent {
    let event_id_header = body["event_id"].as_str().map(str::to_string);
    let trace_id = Some(order.trace_id());
    OutcomeEvent { kind, key: Some(order.key()), event_id_header, trace_id, body, received_at: Instant::now() }
}

/// o1 paid (delivered twice, re-published once for a re-send), o2 and o3 failed.
fn clean(orders: &[Order], accounts: &Accounts) -> Vec<OutcomeEvent> {
    vec![
        paid(orders, accounts, 0, E1, T1),
        failed(orders, accounts, 1, E2),
        paid(orders, accounts, 0, E1, T1),
        failed(orders, accounts, 2, E3),
        paid(orders, accounts, 0, E1, T1),
    ]
}

const CLEAN_BALANCES: [Decimal; 2] =
    [Decimal::from_parts(200, 0, 0, false, 2), Decimal::from_parts(500, 0, 0, false, 2)];

fn assert_violation(verdict: &Verdict, needle: &str) {
    assert!(
        verdict.violations.iter().any(|violation| violation.contains(needle)),
        "expected a violation containing {needle:?}, got {:#?}",
        verdict.violations
    );
}

#[test]
fn a_clean_run_has_no_violation_with_either_id_type() {
    for integer_ids in [false, true] {
        let (orders, accounts) = world(integer_ids);
        let verdict = verify(&orders, &accounts, &clean(&orders, &accounts), &CLEAN_BALANCES);
        assert_eq!(verdict.violations, Vec::<String>::new(), "integer ids: {integer_ids}");
        assert_eq!((verdict.paid, verdict.without_outcome), (1, 0));
        assert_eq!(verdict.failed.get("insufficient_funds"), Some(&2));
        assert_eq!((verdict.events_seen, verdict.duplicate_events_seen, verdict.foreign_events), (5, 2, 0));
    }
}

#[test]
fn a_re_sent_failed_order_may_fail_again_under_a_new_event_id() {
    let (orders, accounts) = world(false);
    let mut events = clean(&orders, &accounts);
    events.push(failed(&orders, &accounts, 2, E4));
    let verdict = verify(&orders, &accounts, &events, &CLEAN_BALANCES);
    assert_eq!(verdict.violations, Vec::<String>::new());
}

#[test]
fn an_order_paid_twice_is_a_violation() {
    let (orders, accounts) = world(false);
    let mut events = clean(&orders, &accounts);
    events.push(paid(&orders, &accounts, 0, E4, T2));
    let verdict = verify(&orders, &accounts, &events, &CLEAN_BALANCES);
    assert_violation(&verdict, "order o1: paid under 2 event ids");
    assert_violation(&verdict, "order o1: paid in 2 transactions");
}

#[test]
fn an_event_outside_its_orders_trace_is_a_violation() {
    let (orders, accounts) = world(false);
    let mut events = clean(&orders, &accounts);
    events[0].trace_id = None;
    events[1].trace_id = Some(orders[0].trace_id());
    let verdict = verify(&orders, &accounts, &events, &CLEAN_BALANCES);
    assert_violation(&verdict, "order o1: order.paid carries trace None");
    assert_violation(
        &verdict,
        &format!("order o2: order.payment_failed carries trace Some(\"{}\")", orders[0].trace_id()),
    );
    assert_ne!(orders[0].trace_id(), orders[1].trace_id(), "each order a trace of its own");
}

#[test]
fn the_same_event_id_with_another_transaction_is_a_violation() {
    let (orders, accounts) = world(false);
    let mut events = clean(&orders, &accounts);
    events.push(paid(&orders, &accounts, 0, E1, T2));
    assert_violation(&verify(&orders, &accounts, &events, &CLEAN_BALANCES), "order o1: paid in 2 transactions");
}

#[test]
fn an_order_both_paid_and_failed_is_a_violation() {
    let (orders, accounts) = world(false);
    let mut events = clean(&orders, &accounts);
    events.push(failed(&orders, &accounts, 0, E4));
    assert_violation(&verify(&orders, &accounts, &events, &CLEAN_BALANCES), "order o1: both paid and failed");
}

#[test]
fn a_wrong_balance_is_a_violation() {
    let (orders, accounts) = world(false);
    // u0 debited for o2 as well, although o2 was reported failed.
    let balances = [cents(-300), cents(500)];
    let verdict = verify(&orders, &accounts, &clean(&orders, &accounts), &balances);
    assert_violation(&verdict, "user u0: balance -3.00, expected 2.00");
    assert_eq!(verdict.violations.len(), 1, "{:?}", verdict.violations);
}

#[test]
fn a_deposit_credited_twice_is_a_violation() {
    let (orders, mut accounts) = world(false);
    accounts.accounts[1].opening_balance = cents(1000);
    let balances = [CLEAN_BALANCES[0], cents(1000)];
    let verdict = verify(&orders, &accounts, &clean(&orders, &accounts), &balances);
    assert_violation(&verdict, "user u1: opening balance 10.00 after one deposit of 5.00");
    assert_eq!(verdict.violations.len(), 1, "{:?}", verdict.violations);
}

#[test]
fn a_missing_balance_is_a_violation() {
    let (orders, accounts) = world(false);
    let verdict = verify(&orders, &accounts, &clean(&orders, &accounts), &CLEAN_BALANCES[..1]);
    assert_violation(&verdict, "read 1 balances for 2 accounts");
}

#[test]
fn an_order_without_outcome_is_a_violation() {
    let (orders, accounts) = world(false);
    let events: Vec<_> = clean(&orders, &accounts).into_iter().filter(|e| e.body["order_id"] != "o3").collect();
    let verdict = verify(&orders, &accounts, &events, &CLEAN_BALANCES);
    assert_violation(&verdict, "order o3: no outcome");
    assert_eq!(verdict.without_outcome, 1);
}

#[test]
fn an_integer_id_echoed_as_a_string_is_a_violation() {
    let (orders, accounts) = world(true);
    let mut events = clean(&orders, &accounts);
    events[0].body["order_id"] = json!("1");
    events[1].body["user_id"] = json!("100");
    let verdict = verify(&orders, &accounts, &events, &CLEAN_BALANCES);
    assert_violation(&verdict, "order 1: order.paid echoes order_id as string \"1\", the command sent integer 1");
    assert_violation(
        &verdict,
        "order 2: order.payment_failed echoes user_id as string \"100\", the command sent integer 100",
    );
    assert_eq!(verdict.violations.len(), 2, "{:?}", verdict.violations);
}

#[test]
fn a_string_id_echoed_as_an_integer_is_a_violation() {
    let (orders, accounts) = world(false);
    let mut events = clean(&orders, &accounts);
    events[0].body["user_id"] = json!(0);
    assert_violation(&verify(&orders, &accounts, &events, &CLEAN_BALANCES), "echoes user_id as integer 0");
}

#[test]
fn an_event_id_shared_by_two_orders_is_a_violation() {
    let (orders, accounts) = world(false);
    let mut events = clean(&orders, &accounts);
    events[3] = failed(&orders, &accounts, 2, E2);
    assert_violation(
        &verify(&orders, &accounts, &events, &CLEAN_BALANCES),
        "order o3: order.payment_failed reuses event_id",
    );
}

#[test]
fn wrong_amount_key_header_status_and_reason_are_violations() {
    let (orders, accounts) = world(false);
    let mut events = clean(&orders, &accounts);
    events[0].body["amount"] = json!(10.01);
    events[1].key = Some("o9".into());
    events[2].event_id_header = None;
    events[3].body["status"] = json!("success");
    events[3].body["reason"] = json!("account_not_found");
    let verdict = verify(&orders, &accounts, &events, &CLEAN_BALANCES);
    assert_violation(&verdict, "order o1: order.paid has amount 10.01, the command asked 10.00");
    assert_violation(&verdict, "order o2: order.payment_failed has key Some(\"o9\")");
    assert_violation(&verdict, "order o1: order.paid event-id header None");
    assert_violation(&verdict, "order o3: order.payment_failed has status \"success\"");
    assert_violation(&verdict, "order o3: order.payment_failed has reason account_not_found");
}

#[test]
fn events_of_other_runs_are_ignored() {
    let (orders, accounts) = world(false);
    let mut events = clean(&orders, &accounts);
    let stranger = Order { order_id: json!("elsewhere-1"), user: 0, amount: cents(1) };
    events.push(event(OutcomeKind::Paid, &stranger, json!({"order_id": "elsewhere-1", "event_id": E1})));
    let verdict = verify(&orders, &accounts, &events, &CLEAN_BALANCES);
    assert_eq!((verdict.violations.len(), verdict.foreign_events), (0, 1), "{:?}", verdict.violations);
}
