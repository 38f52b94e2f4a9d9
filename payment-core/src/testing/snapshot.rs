//! [`Snapshot`]: everything a store holds, read back for assertions, and the invariants it must
//! satisfy after every commit.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use rust_decimal::Decimal;

use crate::domain::{
    Balance, DeadLetter, EntryKind, EventKind, IdempotencyKey, IdempotencyRecord, LedgerEntry, MessageId, OrderId,
    OutboxEvent, Payment, Refund, RefundId, TraceContext, UserId,
};

/// Read access to a whole store, for tests.
#[async_trait]
pub trait Inspect {
    /// Reads everything committed.
    async fn snapshot(&self) -> Snapshot;
}

/// A store's committed contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Each account's balance.
    pub accounts: BTreeMap<UserId, Balance>,
    /// Each account's entries, oldest first.
    pub ledger: BTreeMap<UserId, Vec<LedgerEntry>>,
    /// Successful payments by order id.
    pub payments: BTreeMap<OrderId, Payment>,
    /// Successful refunds by refund id.
    pub refunds: BTreeMap<RefundId, Refund>,
    /// Every message identity claimed.
    pub inbox: BTreeSet<MessageId>,
    /// The trace context stored with each claim that came with one.
    pub inbox_traces: BTreeMap<MessageId, TraceContext>,
    /// In outbox order.
    pub outbox: Vec<OutboxEvent>,
    /// Parked outbox rows: their index in `outbox` and the broker's error, in outbox order.
    pub parked: Vec<(usize, String)>,
    /// Dead letters, in the order they were written.
    pub dead_letters: Vec<DeadLetter>,
    /// Idempotency records by user and key.
    pub idempotency: BTreeMap<(UserId, IdempotencyKey), IdempotencyRecord>,
}

impl Snapshot {
    /// The invariants of SPEC §2 and §4 that hold after every commit, whatever happened before.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (user, balance) in &self.accounts {
            let entries = self.ledger.get(user).map(Vec::as_slice).unwrap_or_default();
            let mut running = Decimal::ZERO;
            for entry in entries {
                match entry.kind {
                    EntryKind::Deposit => running += entry.amount.value(),
                    EntryKind::Payment => running -= entry.amount.value(),
                    EntryKind::Refund => running += entry.amount.value(),
                }
                if running != entry.balance_after.value() || running < Decimal::ZERO {
                    return Err(format!(
                        "{user}: entry {} says balance {} but the entries sum to {running}",
                        entry.entry_id, entry.balance_after
                    ));
                }
            }
            if running != balance.value() {
                return Err(format!("{user}: balance {balance} != deposits - payments + refunds = {running}"));
            }
        }
        if let Some(user) = self.ledger.keys().find(|user| !self.accounts.contains_key(*user)) {
            return Err(format!("ledger entries for {user}, who has no account"));
        }
        let mut debits: HashMap<&OrderId, usize> = HashMap::new();
        for entry in self.ledger.values().flatten().filter(|e| e.kind == EntryKind::Payment) {
            let order = entry.order_id.as_ref().ok_or("a payment entry without an order id")?;
            *debits.entry(order).or_default() += 1;
            let payment = self.payments.get(order).ok_or(format!("a debit for {order} without a payment"))?;
            if (&payment.user_id, payment.amount) != (&entry.user_id, entry.amount) {
                return Err(format!("the debit for {order} does not match its payment"));
            }
        }
        if let Some((order, n)) = debits.iter().find(|(_, n)| **n > 1) {
            return Err(format!("order {order} debited {n} times"));
        }
        if let Some(order) = self.payments.keys().find(|order| !debits.contains_key(order)) {
            return Err(format!("payment for {order} without its debit"));
        }
        self.check_refunds()?;
        // Every claimed message has exactly one outcome in the outbox, and nothing else is there.
        let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
        for event in &self.outbox {
            let command = match event.kind {
                EventKind::DeadLetter => event.header("message-id"),
                _ => event.header("correlation-id"),
            };
            let command = command.ok_or(format!("outbox event without its command: {:?}", event.headers))?;
            *outcomes.entry(command).or_default() += 1;
        }
        for id in &self.inbox {
            match outcomes.remove(id.as_str()) {
                Some(1) => {}
                n => return Err(format!("message {id} has {} outcomes in the outbox", n.unwrap_or(0))),
            }
        }
        if let Some(stray) = outcomes.keys().next() {
            return Err(format!("outbox event for {stray}, a message not in the inbox"));
        }
        let paid_events: HashSet<&str> = self
            .outbox
            .iter()
            .filter(|e| e.kind == EventKind::OrderPaid)
            .filter_map(|e| e.header("event-id"))
            .collect();
        for payment in self.payments.values() {
            if !paid_events.contains(payment.event_id.to_string().as_str()) {
                return Err(format!("payment for {} has no order.paid in the outbox", payment.order_id));
            }
        }
        Ok(())
    }

    /// Every refund has its one credit and its `order.refunded`, is linked to a payment of the
    /// same user, and the refunds of an order add up to no more than its payment.
    fn check_refunds(&self) -> Result<(), String> {
        let mut credits: HashMap<&RefundId, usize> = HashMap::new();
        for entry in self.ledger.values().flatten().filter(|e| e.kind == EntryKind::Refund) {
            let id = entry.refund_id.as_ref().ok_or("a refund entry without a refund id")?;
            *credits.entry(id).or_default() += 1;
            let refund = self.refunds.get(id).ok_or(format!("a credit for refund {id} without a refund"))?;
            if (Some(&refund.order_id), &refund.user_id, refund.amount)
                != (entry.order_id.as_ref(), &entry.user_id, entry.amount)
            {
                return Err(format!("the credit for refund {id} does not match its refund"));
            }
        }
        let refunded_events: HashSet<&str> = self
            .outbox
            .iter()
            .filter(|e| e.kind == EventKind::OrderRefunded)
            .filter_map(|e| e.header("event-id"))
            .collect();
        let mut per_order: BTreeMap<&OrderId, Decimal> = BTreeMap::new();
        for (id, refund) in &self.refunds {
            if credits.get(id) != Some(&1) {
                return Err(format!("refund {id} credited {} times", credits.get(id).copied().unwrap_or(0)));
            }
            let payment = self.payments.get(&refund.order_id).ok_or(format!("refund {id} of an unpaid order"))?;
            if payment.user_id != refund.user_id {
                return Err(format!("refund {id} credits {}, not the payer {}", refund.user_id, payment.user_id));
            }
            *per_order.entry(&refund.order_id).or_default() += refund.amount.value();
            if !refunded_events.contains(refund.event_id.to_string().as_str()) {
                return Err(format!("refund {id} has no order.refunded in the outbox"));
            }
        }
        for (order, refunded) in per_order {
            let paid = self.payments.get(order).map(|p| p.amount.value()).unwrap_or_default();
            if refunded > paid {
                return Err(format!("order {order}: refunds of {refunded} exceed its payment of {paid}"));
            }
        }
        Ok(())
    }

    /// The balance of user `user`, as an exact decimal; `None` without an account.
    pub fn balance(&self, user: &str) -> Option<Decimal> {
        self.accounts.iter().find(|(id, _)| id.as_str() == user).map(|(_, b)| b.value())
    }
}

#[async_trait]
impl Inspect for crate::memory::MemoryStore {
    async fn snapshot(&self) -> Snapshot {
        let state = self.state.lock().await;
        Snapshot {
            accounts: state.accounts.iter().map(|(user, account)| (user.clone(), account.balance)).collect(),
            ledger: state
                .ledger
                .iter()
                .filter(|(_, entries)| !entries.is_empty())
                .map(|(user, entries)| (user.clone(), entries.iter().map(|e| e.entry.clone()).collect()))
                .collect(),
            payments: state.payments.iter().map(|(order, payment)| (order.clone(), payment.clone())).collect(),
            refunds: state.refunds.iter().map(|(id, refund)| (id.clone(), refund.clone())).collect(),
            inbox: state.inbox.keys().cloned().collect(),
            inbox_traces: state.inbox.iter().filter_map(|(id, row)| Some((id.clone(), row.trace.clone()?))).collect(),
            outbox: state.outbox.iter().map(|row| row.event.clone()).collect(),
            parked: state
                .outbox
                .iter()
                .enumerate()
                .filter_map(|(index, row)| Some((index, row.parked.clone()?)))
                .collect(),
            dead_letters: state.dead_letters.clone(),
            idempotency: state.idempotency.clone().into_iter().collect(),
        }
    }
}
