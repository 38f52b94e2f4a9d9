//! One run: listen first, produce, collect outcomes until every order has one (bounded), read
//! the balances back, verify, report. Survives the service being killed and restarted meanwhile:
//! producing only needs the broker, the listener just waits, and HTTP reads retry.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::accounts::read_balances;
use crate::outcomes::Listener;
use crate::plan::id_text;
use crate::produce::{produce, produce_refunds};
use crate::refunds::all_answered;
use crate::{
    plan_refunds, verify_refunds, verify_with_refunds, Accounts, Latency, MessageKind, OutcomeEvent, OutcomeKind, Plan,
    Report, SimError, Target,
};

/// How often the collector looks at the clock when no event arrives.
const IDLE_CHECK: Duration = Duration::from_millis(100);
/// Longest to wait for the outcome consumer's partitions before producing anyway (it reads from
/// the earliest offset, so waiting only sharpens latencies).
const ASSIGNMENT_WAIT: Duration = Duration::from_secs(15);

/// Where a run stands, passed to the progress callback on every message produced and every
/// order's first outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub messages_produced: usize,
    pub messages_total: usize,
    pub orders_with_outcome: usize,
    pub orders: usize,
}

/// Runs the plan against accounts made by [`prepare`](crate::prepare) with the same plan.
/// Returns an error only when the run could not be carried out (Kafka client, delivery, HTTP
/// after [`Plan::ready_timeout`]); broken contract rules are [`Report::violations`].
pub async fn run<F>(target: &Target, plan: &Plan, accounts: &Accounts, progress: F) -> Result<Report, SimError>
where
    F: Fn(Progress) + Send + Sync,
{
    let workload = plan.workload()?;
    if accounts.accounts.len() != plan.users {
        return Err(SimError::InvalidPlan(format!(
            "{} accounts prepared for a plan of {} users",
            accounts.accounts.len(),
            plan.users
        )));
    }
    let order_count = workload.orders.len();
    let by_key: std::collections::HashMap<String, usize> =
        workload.orders.iter().enumerate().map(|(index, order)| (order.key(), index)).collect();
    let mut listener = Listener::start(target, &format!("orders-simulator-{}-{}", plan.namespace, Uuid::new_v4()))?;
    listener.assigned(ASSIGNMENT_WAIT).await;

    let produced = AtomicUsize::new(0);
    let answered = AtomicUsize::new(0);
    let production_over = OnceLock::<Instant>::new();
    let production_failed = AtomicBool::new(false);
    let tell = || {
        progress(Progress {
            messages_produced: produced.load(Ordering::Relaxed),
            messages_total: workload.messages.len(),
            orders_with_outcome: answered.load(Ordering::Relaxed),
            orders: order_count,
        })
    };
    let started = Instant::now();

    let producing = async {
        let result = produce(target, plan, &workload, &produced, &tell).await;
        production_failed.store(result.is_err(), Ordering::Relaxed);
        let _ = production_over.set(Instant::now());
        result
    };
    let collecting = async {
        let mut events: Vec<OutcomeEvent> = Vec::new();
        let mut first_outcome: Vec<Option<Instant>> = vec![None; order_count];
        let mut all_answered_at = None;
        loop {
            if let Some(&over) = production_over.get() {
                if production_failed.load(Ordering::Relaxed) {
                    break;
                }
                let now = Instant::now();
                if answered.load(Ordering::Relaxed) == order_count {
                    if now >= *all_answered_at.get_or_insert(now) + plan.settle {
                        break;
                    }
                } else if now >= over + plan.outcome_timeout {
                    tracing::warn!(
                        missing = order_count - answered.load(Ordering::Relaxed),
                        "outcome timeout: orders left without an outcome"
                    );
                    break;
                }
            }
            let event = match tokio::time::timeout(IDLE_CHECK, listener.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_idle) => continue,
            };
            let order = id_text(&event.body["order_id"]).or_else(|| event.key.clone()).and_then(|key| by_key.get(&key));
            if let Some(&order) = order {
                if first_outcome[order].is_none() {
                    first_outcome[order] = Some(event.received_at);
                    answered.fetch_add(1, Ordering::Relaxed);
                    tell();
                }
            }
            events.push(event);
        }
        (events, first_outcome)
    };
    let (first_sent, (mut events, first_outcome)) = tokio::join!(producing, collecting);
    let first_sent = first_sent?;

    // Refunds of a share of the paid orders, once every payment has its outcome.
    let mut paid: Vec<usize> = events
        .iter()
        .filter(|event| event.kind == OutcomeKind::Paid)
        .filter_map(|event| by_key.get(&id_text(&event.body["order_id"])?).copied())
        .collect();
    paid.sort_unstable();
    paid.dedup();
    let refunds = plan_refunds(plan, &workload.orders, &paid);
    if !refunds.is_empty() {
        produce_refunds(target, &workload.orders, &refunds).await?;
        let over = Instant::now();
        let mut answered_at = None;
        loop {
            let now = Instant::now();
            if all_answered(&refunds, &events) {
                if now >= *answered_at.get_or_insert(now) + plan.settle {
                    break;
                }
            } else if now >= over + plan.outcome_timeout {
                tracing::warn!("outcome timeout: refunds left without an outcome");
                break;
            }
            match tokio::time::timeout(IDLE_CHECK, listener.events.recv()).await {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(_idle) => {}
            }
        }
    }
    listener.stop();

    let finished = first_outcome.iter().flatten().max().copied().unwrap_or_else(Instant::now);
    let elapsed = finished.saturating_duration_since(started);
    let samples = first_sent
        .iter()
        .zip(&first_outcome)
        .filter_map(|(sent, outcome)| Some(outcome.as_ref()?.saturating_duration_since(*sent.as_ref()?)))
        .collect::<Vec<_>>();
    let answered = samples.len();

    let balances = read_balances(target, plan, accounts).await?;
    let refund_verdict = verify_refunds(&workload.orders, &refunds, &events);
    let mut verdict =
        verify_with_refunds(&workload.orders, accounts, &events, &balances, &refund_verdict.refunded_per_order);
    verdict.violations.extend(refund_verdict.violations);
    Ok(Report {
        orders: order_count,
        messages_produced: produced.load(Ordering::Relaxed),
        duplicates_produced: workload.count(MessageKind::Duplicate),
        resends_produced: workload.count(MessageKind::Resend),
        refunds_produced: refunds.len(),
        refunded: refund_verdict.refunded,
        refund_failed: refund_verdict.failed,
        paid: verdict.paid,
        failed: verdict.failed,
        without_outcome: verdict.without_outcome,
        events_seen: verdict.events_seen,
        duplicate_events_seen: verdict.duplicate_events_seen,
        foreign_events_ignored: verdict.foreign_events,
        elapsed,
        throughput_orders_per_sec: if elapsed.is_zero() { 0.0 } else { answered as f64 / elapsed.as_secs_f64() },
        latency: Latency::of(samples),
        violations: verdict.violations,
    })
}
