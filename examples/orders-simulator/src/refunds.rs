//! Refunds of a share of the paid orders, sent on `refund.order` once the payments have their
//! outcomes (a refund before its payment would only fail `order_not_paid`): some whole (no
//! amount), some partial — a few of them re-sent under a new `message_id`, which must re-publish
//! the original `order.refunded` — and some in two parts followed by a third refund that finds
//! nothing left. Planned from the seed and the orders found paid; [`verify_refunds`] checks the
//! `order.refunded` / `order.refund_failed` events against the plan.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::plan::{decimal_of, id_text};
use crate::{Order, OutcomeEvent, OutcomeKind, Plan};

/// What one refund command must get back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundExpectation {
    /// `order.refunded` for this amount.
    Refunded(Decimal),
    /// The `order.refunded` of an earlier command with the same refund id, again.
    Republished,
    /// `order.refund_failed`, `exceeds_refundable`: the order is fully refunded already.
    NothingLeft,
}

/// One `refund.order` record to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundCommand {
    /// Index into the workload's orders.
    pub order: usize,
    pub refund_id: String,
    pub message_id: String,
    /// `None` asks for what is left.
    pub amount: Option<Decimal>,
    pub expect: RefundExpectation,
    pub payload: Vec<u8>,
}

/// Plans the refunds of `round(paid × refund_ratio)` of the `paid` orders (indices into
/// `orders`), in production order; refunds of one order follow each other.
pub fn plan_refunds(plan: &Plan, orders: &[Order], paid: &[usize]) -> Vec<RefundCommand> {
    let count = ((paid.len() as f64 * plan.refund_ratio).round() as usize).min(paid.len());
    if count == 0 {
        return Vec::new();
    }
    // Its own stream of the seed, so the payments' workload is the same with or without refunds.
    let mut rng = StdRng::seed_from_u64(plan.seed ^ 0x5245_464e);
    let mut chosen: Vec<usize> = sample(&mut rng, paid.len(), count).into_iter().map(|i| paid[i]).collect();
    chosen.sort_unstable();
    let user_ids = plan.user_ids();
    let cent = Decimal::new(1, 2);
    let mut commands = Vec::new();
    for order_index in chosen {
        let order = &orders[order_index];
        let command = |n: u32, attempt: u32, amount: Option<Decimal>, expect| {
            let refund_id = format!("rf-{}-{order_index}-{n}", plan.namespace);
            let message_id = format!("{refund_id}-{attempt}");
            let mut body = json!({
                "message_id": message_id,
                "refund_id": refund_id,
                "order_id": order.order_id,
                "user_id": user_ids.get(order.user).cloned().unwrap_or(Value::Null),
                "reason": "orders-simulator",
            });
            if let Some(amount) = amount {
                body["amount"] = json!(amount.to_string());
            }
            RefundCommand {
                order: order_index,
                refund_id,
                message_id,
                amount,
                expect,
                payload: body.to_string().into_bytes(),
            }
        };
        // Half, in whole cents, and at least one cent.
        let half = (order.amount / Decimal::TWO).round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero);
        let shape = if half < cent { 0 } else { rng.random_range(0..3) };
        match shape {
            0 => commands.push(command(0, 0, None, RefundExpectation::Refunded(order.amount))),
            1 => {
                commands.push(command(0, 0, Some(half), RefundExpectation::Refunded(half)));
                if rng.random_bool(0.5) {
                    commands.push(command(0, 1, Some(half), RefundExpectation::Republished));
                }
            }
            _ => {
                commands.push(command(0, 0, Some(half), RefundExpectation::Refunded(half)));
                commands.push(command(1, 0, None, RefundExpectation::Refunded(order.amount - half)));
                commands.push(command(2, 0, Some(cent), RefundExpectation::NothingLeft));
            }
        }
    }
    commands
}

/// What [`verify_refunds`] found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RefundVerdict {
    /// Refund ids credited.
    pub refunded: usize,
    /// Refund ids that failed, by reason.
    pub failed: BTreeMap<String, usize>,
    /// Money credited back per order index.
    pub refunded_per_order: HashMap<usize, Decimal>,
    pub violations: Vec<String>,
}

/// Checks every refund command against the refund events: each refund id credited at most once
/// (one `event_id` however often re-published), for the amount planned, echoing the command's
/// ids; the third refund of an order refunded in two parts fails `exceeds_refundable`; no order
/// is refunded more than it was paid.
pub fn verify_refunds(orders: &[Order], commands: &[RefundCommand], events: &[OutcomeEvent]) -> RefundVerdict {
    let mut verdict = RefundVerdict::default();
    let mut by_refund: HashMap<String, Vec<&OutcomeEvent>> = HashMap::new();
    for event in events.iter().filter(|e| matches!(e.kind, OutcomeKind::Refunded | OutcomeKind::RefundFailed)) {
        if let Some(id) = id_text(&event.body["refund_id"]) {
            by_refund.entry(id).or_default().push(event);
        }
    }
    let mut checked = BTreeSet::new();
    for command in commands {
        if !checked.insert(command.refund_id.clone()) {
            continue;
        }
        let order = &orders[command.order];
        let name = &command.refund_id;
        let mut wrong =
            |what: String| verdict.violations.push(format!("refund {name} of order {}: {what}", order.key()));
        let seen = by_refund.get(name).map(Vec::as_slice).unwrap_or_default();
        let credited: Vec<&&OutcomeEvent> = seen.iter().filter(|e| e.kind == OutcomeKind::Refunded).collect();
        let failed: Vec<&&OutcomeEvent> = seen.iter().filter(|e| e.kind == OutcomeKind::RefundFailed).collect();
        for event in seen {
            if event.body["order_id"] != order.order_id {
                wrong(format!("echoes order_id {}, the command sent {}", event.body["order_id"], order.order_id));
            }
            if event.key.as_deref() != Some(order.key().as_str()) {
                wrong(format!("has key {:?}, expected the order id", event.key));
            }
        }
        let event_ids: BTreeSet<&str> = credited.iter().filter_map(|e| e.body["event_id"].as_str()).collect();
        if event_ids.len() > 1 {
            wrong(format!("credited under {} event ids {event_ids:?}", event_ids.len()));
        }
        let sends = commands.iter().filter(|c| c.refund_id == *name).count();
        match command.expect {
            RefundExpectation::Refunded(amount) => {
                let Some(first) = credited.first() else {
                    wrong(format!(
                        "no order.refunded (failures: {:?})",
                        failed.iter().map(|e| &e.body["reason"]).collect::<Vec<_>>()
                    ));
                    continue;
                };
                if decimal_of(&first.body["amount"]) != Some(amount) {
                    wrong(format!("refunded {}, planned {amount}", first.body["amount"]));
                }
                if !failed.is_empty() {
                    wrong("both refunded and failed".into());
                }
                if credited.len() < sends {
                    wrong(format!(
                        "{} order.refunded for {sends} commands: a re-send was not re-published",
                        credited.len()
                    ));
                }
                verdict.refunded += 1;
                *verdict.refunded_per_order.entry(command.order).or_default() += amount;
            }
            RefundExpectation::NothingLeft => {
                if !credited.is_empty() {
                    wrong("credited past what was paid".into());
                }
                match failed.first().map(|e| e.body["reason"].as_str().unwrap_or("<none>")) {
                    Some(reason) => {
                        if reason != "exceeds_refundable" {
                            wrong(format!("failed with {reason}, expected exceeds_refundable"));
                        }
                        *verdict.failed.entry(reason.to_string()).or_default() += 1;
                    }
                    None => wrong("no order.refund_failed".into()),
                }
            }
            // Checked with the refund id's first command.
            RefundExpectation::Republished => {}
        }
    }
    for (order, refunded) in &verdict.refunded_per_order {
        if *refunded > orders[*order].amount {
            verdict.violations.push(format!(
                "order {}: refunded {refunded} of {}",
                orders[*order].key(),
                orders[*order].amount
            ));
        }
    }
    verdict
}

/// Whether every refund id of `commands` has as many outcome events as commands.
pub(crate) fn all_answered(commands: &[RefundCommand], events: &[OutcomeEvent]) -> bool {
    let mut wanted: HashMap<&str, usize> = HashMap::new();
    for command in commands {
        *wanted.entry(command.refund_id.as_str()).or_default() += 1;
    }
    for event in events.iter().filter(|e| matches!(e.kind, OutcomeKind::Refunded | OutcomeKind::RefundFailed)) {
        if let Some(id) = event.body["refund_id"].as_str() {
            if let Some(left) = wanted.get_mut(id) {
                *left = left.saturating_sub(1);
            }
        }
    }
    wanted.values().all(|left| *left == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan { orders: 300, refund_ratio: 0.5, seed: 3, ..Plan::default() }
    }

    #[test]
    fn a_share_of_paid_orders_is_refunded_in_every_shape() {
        let plan = plan();
        let workload = plan.workload().unwrap();
        let paid: Vec<usize> = (0..workload.orders.len()).step_by(2).collect();
        let commands = plan_refunds(&plan, &workload.orders, &paid);
        let orders: BTreeSet<usize> = commands.iter().map(|c| c.order).collect();
        assert_eq!(orders.len(), 75, "half of the 150 paid orders");
        assert!(orders.iter().all(|o| o % 2 == 0), "only paid orders");
        for expect in [RefundExpectation::Republished, RefundExpectation::NothingLeft] {
            assert!(commands.iter().any(|c| c.expect == expect), "{expect:?}");
        }
        assert!(commands.iter().any(|c| c.amount.is_none()), "some ask for what is left");
        for order in orders {
            let total: Decimal = commands
                .iter()
                .filter(|c| c.order == order)
                .filter_map(|c| match c.expect {
                    RefundExpectation::Refunded(amount) => Some(amount),
                    _ => None,
                })
                .sum();
            assert!(total > Decimal::ZERO && total <= workload.orders[order].amount);
        }
        assert_eq!(plan_refunds(&Plan { refund_ratio: 0.0, ..plan }, &workload.orders, &paid), Vec::new());
    }

    #[test]
    fn a_second_credit_and_an_over_refund_are_violations() {
        let plan = plan();
        let workload = plan.workload().unwrap();
        let commands = plan_refunds(&plan, &workload.orders, &[0, 1, 2, 3, 4, 5, 6, 7]);
        let event = |command: &RefundCommand, kind, amount: Decimal, event_id: &str, reason: &str| OutcomeEvent {
            kind,
            key: Some(workload.orders[command.order].key()),
            event_id_header: Some(event_id.into()),
            trace_id: None,
            body: json!({"refund_id": command.refund_id, "order_id": workload.orders[command.order].order_id,
                         "amount": amount.to_string(), "event_id": event_id, "reason": reason}),
            received_at: std::time::Instant::now(),
        };
        let good: Vec<OutcomeEvent> = commands
            .iter()
            .enumerate()
            .map(|(n, c)| match c.expect {
                RefundExpectation::Refunded(amount) => event(c, OutcomeKind::Refunded, amount, &format!("e{n}"), ""),
                RefundExpectation::Republished => {
                    let first = commands.iter().position(|o| o.refund_id == c.refund_id).unwrap_or(n);
                    let amount = c.amount.unwrap_or_default();
                    event(c, OutcomeKind::Refunded, amount, &format!("e{first}"), "")
                }
                RefundExpectation::NothingLeft => {
                    event(c, OutcomeKind::RefundFailed, Decimal::ZERO, "f", "exceeds_refundable")
                }
            })
            .collect();
        assert!(all_answered(&commands, &good));
        let verdict = verify_refunds(&workload.orders, &commands, &good);
        assert_eq!(verdict.violations, Vec::<String>::new());
        let mut twice = good.clone();
        twice.push(event(&commands[0], OutcomeKind::Refunded, Decimal::ONE, "other", ""));
        assert!(!verify_refunds(&workload.orders, &commands, &twice).violations.is_empty());
        assert!(!all_answered(&commands, &good[1..]));
    }
}
