//! The verdict on a run: every rule of the contract checked against the outcome events and the
//! balances read back. Pure, so that its tests can feed it synthetic events.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::plan::{decimal_of, id_text};
use crate::{Accounts, Order, OutcomeEvent, OutcomeKind};

/// The only failure reason a prepared run can legitimately get: every account exists and every
/// amount is valid.
const EXPECTED_REASON: &str = "insufficient_funds";

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// Orders with an `order.paid` event.
    pub paid: usize,
    /// Orders with only `order.payment_failed` events, by the reason of the first one.
    pub failed: BTreeMap<String, usize>,
    /// Orders with no outcome at all.
    pub without_outcome: usize,
    /// Events of this run's orders (duplicates included).
    pub events_seen: usize,
    /// Events whose `event_id` was already seen (allowed: delivery is at least once).
    pub duplicate_events_seen: usize,
    /// Events for orders this run did not send (another run's, on a shared topic).
    pub foreign_events: usize,
    /// Every broken rule, one line each.
    pub violations: Vec<String>,
}

#[derive(Default)]
struct Outcomes {
    paid_event_ids: BTreeSet<String>,
    transaction_ids: BTreeSet<String>,
    failed_reasons: Vec<String>,
}

/// Checks the contract: every order has exactly one kind of outcome; a paid order is paid once
/// (one `event_id`, one `transaction_id` however often it is re-published); an `event_id`
/// belongs to one order; events echo the command's ids in the same JSON type, its user and
/// amount, under the order id as key and the `event-id` header, in the trace its commands were
/// sent in (`traceparent`); every deposit was credited once
/// (opening balance = deposit: the accounts are new); and every balance equals the opening
/// balance less the paid orders' amounts.
///
/// `balances` is indexed like `accounts.accounts`; `orders[i].user` indexes both.
pub fn verify(orders: &[Order], accounts: &Accounts, events: &[OutcomeEvent], balances: &[Decimal]) -> Verdict {
    verify_with_refunds(orders, accounts, events, balances, &HashMap::new())
}

/// [`verify`] after refunds: the refund events are left to
/// [`verify_refunds`](crate::verify_refunds), and each balance must equal the opening balance
/// less the paid orders plus `refunded` (money credited back, by order index).
pub fn verify_with_refunds(
    orders: &[Order],
    accounts: &Accounts,
    events: &[OutcomeEvent],
    balances: &[Decimal],
    refunded: &HashMap<usize, Decimal>,
) -> Verdict {
    let mut verdict = Verdict::default();
    let by_key: HashMap<String, usize> = orders.iter().enumerate().map(|(index, order)| (order.key(), index)).collect();
    let mut outcomes: Vec<Outcomes> = orders.iter().map(|_| Outcomes::default()).collect();
    let mut owner_of_event: HashMap<String, usize> = HashMap::new();
    let violations = &mut verdict.violations;

    for event in events.iter().filter(|e| matches!(e.kind, OutcomeKind::Paid | OutcomeKind::Failed)) {
        let key_in_body = id_text(&event.body["order_id"]);
        let Some(&index) = key_in_body.as_ref().or(event.key.as_ref()).and_then(|key| by_key.get(key)) else {
            verdict.foreign_events += 1;
            continue;
        };
        verdict.events_seen += 1;
        let order = &orders[index];
        let name = order.key();
        let topic = match event.kind {
            OutcomeKind::Paid => "order.paid",
            _ => "order.payment_failed",
        };
        let mut wrong = |what: String| violations.push(format!("order {name}: {topic} {what}"));
        if !event.body.is_object() {
            wrong("is not a JSON object".into());
            continue;
        }
        let body = &event.body;
        if event.key.as_deref() != Some(name.as_str()) {
            wrong(format!("has key {:?}, expected the order id", event.key));
        }
        echo(&mut wrong, "order_id", &body["order_id"], &order.order_id);
        if let Some(account) = accounts.accounts.get(order.user) {
            echo(&mut wrong, "user_id", &body["user_id"], &account.user_id);
        }
        if decimal_of(&body["amount"]) != Some(order.amount) {
            wrong(format!("has amount {}, the command asked {}", body["amount"], order.amount));
        }
        let Some(event_id) = body["event_id"].as_str().filter(|id| Uuid::parse_str(id).is_ok()) else {
            wrong(format!("has no UUID event_id: {}", body["event_id"]));
            continue;
        };
        if event.event_id_header.as_deref() != Some(event_id) {
            wrong(format!("event-id header {:?} differs from event_id {event_id}", event.event_id_header));
        }
        if event.trace_id.as_deref() != Some(order.trace_id().as_str()) {
            wrong(format!("carries trace {:?}, not its commands' trace {}", event.trace_id, order.trace_id()));
        }
        match owner_of_event.get(event_id) {
            Some(&owner) if owner != index => {
                wrong(format!("reuses event_id {event_id} of order {}", orders[owner].key()));
            }
            Some(_) => verdict.duplicate_events_seen += 1,
            None => {
                owner_of_event.insert(event_id.to_string(), index);
            }
        }
        let outcome = &mut outcomes[index];
        match event.kind {
            OutcomeKind::Paid => {
                if body["status"] != "success" {
                    wrong(format!("has status {}, expected \"success\"", body["status"]));
                }
                if !body["paid_at"].is_string() {
                    wrong("has no paid_at".into());
                }
                match body["transaction_id"].as_str().filter(|id| Uuid::parse_str(id).is_ok()) {
                    Some(transaction_id) => {
                        outcome.transaction_ids.insert(transaction_id.to_string());
                    }
                    None => wrong(format!("has no UUID transaction_id: {}", body["transaction_id"])),
                }
                outcome.paid_event_ids.insert(event_id.to_string());
            }
            OutcomeKind::Failed | OutcomeKind::Refunded | OutcomeKind::RefundFailed => {
                if body["status"] != "failed" {
                    wrong(format!("has status {}, expected \"failed\"", body["status"]));
                }
                if !body["failed_at"].is_string() {
                    wrong("has no failed_at".into());
                }
                let reason = body["reason"].as_str().unwrap_or("<none>").to_string();
                if reason != EXPECTED_REASON {
                    wrong(format!("has reason {reason}, but the account exists and the amount is valid"));
                }
                outcome.failed_reasons.push(reason);
            }
        }
    }

    let mut paid_by_user = vec![Decimal::ZERO; accounts.accounts.len()];
    for (order, amount) in refunded {
        if let Some(total) = orders.get(*order).and_then(|o| paid_by_user.get_mut(o.user)) {
            *total -= *amount;
        }
    }
    for (order, outcome) in orders.iter().zip(&outcomes) {
        let name = order.key();
        let paid = !outcome.paid_event_ids.is_empty();
        if paid {
            verdict.paid += 1;
            if let Some(total) = paid_by_user.get_mut(order.user) {
                *total += order.amount;
            }
        } else if let Some(reason) = outcome.failed_reasons.first() {
            *verdict.failed.entry(reason.clone()).or_default() += 1;
        } else {
            verdict.without_outcome += 1;
            violations.push(format!("order {name}: no outcome"));
        }
        // Balances only fall during a run, so a failed order cannot become payable later: a
        // paid order that was also failed is a contradiction, not a successful retry.
        if paid && !outcome.failed_reasons.is_empty() {
            violations.push(format!("order {name}: both paid and failed ({:?})", outcome.failed_reasons));
        }
        if outcome.paid_event_ids.len() > 1 {
            violations.push(format!(
                "order {name}: paid under {} event ids {:?}",
                outcome.paid_event_ids.len(),
                outcome.paid_event_ids
            ));
        }
        if outcome.transaction_ids.len() > 1 {
            violations.push(format!(
                "order {name}: paid in {} transactions {:?}",
                outcome.transaction_ids.len(),
                outcome.transaction_ids
            ));
        }
    }

    if balances.len() != accounts.accounts.len() {
        violations.push(format!("read {} balances for {} accounts", balances.len(), accounts.accounts.len()));
    }
    for account in &accounts.accounts {
        if account.opening_balance != account.deposited {
            violations.push(format!(
                "user {}: opening balance {} after one deposit of {} into a new account",
                account.header(),
                account.opening_balance,
                account.deposited
            ));
        }
    }
    for ((account, balance), paid) in accounts.accounts.iter().zip(balances).zip(&paid_by_user) {
        let expected = account.opening_balance - paid;
        if *balance != expected {
            violations.push(format!(
                "user {}: balance {balance}, expected {expected} (opening {} − paid net of refunds {paid})",
                account.header(),
                account.opening_balance
            ));
        }
    }
    verdict
}

/// An id must come back with the command's value and JSON type.
fn echo(wrong: &mut impl FnMut(String), field: &str, got: &Value, sent: &Value) {
    if got != sent {
        wrong(format!("echoes {field} as {} {got}, the command sent {} {sent}", json_type(got), json_type(sent)));
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
