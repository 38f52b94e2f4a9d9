//! The data of the in-memory store, and its writes with their undo records.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::decide::Effects;
use crate::domain::{
    Account, DeadLetter, IdempotencyKey, IdempotencyRecord, LedgerPosition, MessageId, OrderId, OutboxEvent, Payment,
    Refund, RefundId, StatementEntry, TraceContext, UserId,
};
use crate::ports::StoreError;

/// An outbox row.
#[derive(Debug, Clone)]
pub(crate) struct OutboxRow {
    pub id: i64,
    pub event: OutboxEvent,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    /// The broker's error, once it refused the row for good (see `ports::outbox`).
    pub parked: Option<String>,
    /// When it was parked; `None` when it is not.
    pub parked_at: Option<DateTime<Utc>>,
}

impl OutboxRow {
    /// Waiting for the publisher: neither published nor parked.
    pub fn pending(&self) -> bool {
        self.published_at.is_none() && self.parked.is_none()
    }
}

/// An inbox claim.
#[derive(Debug, Clone)]
pub(crate) struct InboxRow {
    pub claimed_at: DateTime<Utc>,
    /// The trace context the message came with, kept as every store keeps it; only the test
    /// snapshot reads it back so far.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub trace: Option<TraceContext>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub accounts: BTreeMap<UserId, Account>,
    /// Each user's statement in position order, so a page is a binary search away.
    pub ledger: HashMap<UserId, Vec<StatementEntry>>,
    pub last_position: i64,
    pub payments: HashMap<OrderId, Payment>,
    pub refunds: HashMap<RefundId, Refund>,
    /// The refund ids of each order, in the order applied, so an order's refunds are found
    /// without a scan of all refunds.
    pub refunds_by_order: HashMap<OrderId, Vec<RefundId>>,
    pub inbox: HashMap<MessageId, InboxRow>,
    pub outbox: Vec<OutboxRow>,
    pub dead_letters: Vec<DeadLetter>,
    pub idempotency: HashMap<(UserId, IdempotencyKey), IdempotencyRecord>,
}

/// How to take back one write of an uncommitted transaction.
#[derive(Debug)]
pub(crate) enum Undo {
    Inbox(MessageId),
    Account(UserId),
    Balance(Account),
    Ledger(UserId),
    Payment(OrderId),
    Refund(RefundId),
    Outbox,
    DeadLetter,
    Idempotency((UserId, IdempotencyKey)),
}

impl State {
    pub fn undo(&mut self, undo: Undo) {
        match undo {
            Undo::Inbox(id) => drop(self.inbox.remove(&id)),
            Undo::Account(user) => drop(self.accounts.remove(&user)),
            Undo::Balance(account) => drop(self.accounts.insert(account.user_id.clone(), account)),
            Undo::Ledger(user) => drop(self.ledger.get_mut(&user).and_then(Vec::pop)),
            Undo::Payment(order) => drop(self.payments.remove(&order)),
            Undo::Refund(id) => {
                if let Some(refund) = self.refunds.remove(&id) {
                    if let Some(ids) = self.refunds_by_order.get_mut(&refund.order_id) {
                        ids.retain(|other| *other != id);
                    }
                }
            }
            Undo::Outbox => drop(self.outbox.pop()),
            Undo::DeadLetter => drop(self.dead_letters.pop()),
            Undo::Idempotency(key) => drop(self.idempotency.remove(&key)),
        }
    }

    /// Every refund of `orders`, and those of `ids` (which may belong to other orders), once each.
    pub fn refunds_of(&self, orders: &[OrderId], ids: &[RefundId]) -> Vec<Refund> {
        let of_orders = orders.iter().filter_map(|order| self.refunds_by_order.get(order)).flatten();
        let mut wanted: Vec<&RefundId> = of_orders.chain(ids).collect();
        wanted.sort();
        wanted.dedup();
        wanted.into_iter().filter_map(|id| self.refunds.get(id).cloned()).collect()
    }

    /// Checks every guard of `effects` before writing anything, so a refused apply writes nothing.
    pub fn check(&self, effects: &Effects) -> Result<(), StoreError> {
        for update in &effects.balance_updates {
            match self.accounts.get(&update.user_id) {
                Some(account) if account.balance == update.from => {}
                Some(account) => {
                    return Err(StoreError::Conflict(format!(
                        "balance of {} is {}, not the {} the update was decided on",
                        update.user_id, account.balance, update.from
                    )))
                }
                None => return Err(StoreError::Invariant(format!("no account {} to update", update.user_id))),
            }
        }
        let mut orders = HashSet::new();
        for payment in &effects.payments {
            if self.payments.contains_key(&payment.order_id) || !orders.insert(&payment.order_id) {
                return Err(StoreError::Conflict(format!("order {} already has a payment", payment.order_id)));
            }
        }
        let mut refunds = HashSet::new();
        for refund in &effects.refunds {
            if self.refunds.contains_key(&refund.refund_id) || !refunds.insert(&refund.refund_id) {
                return Err(StoreError::Conflict(format!("refund {} is already applied", refund.refund_id)));
            }
        }
        let mut keys = HashSet::new();
        for record in &effects.idempotency {
            let key = (record.user_id.clone(), record.key.clone());
            if self.idempotency.contains_key(&key) || !keys.insert(key) {
                return Err(StoreError::Conflict(format!(
                    "idempotency key {} of {} already used",
                    record.key, record.user_id
                )));
            }
        }
        Ok(())
    }

    /// Writes checked effects, recording how to undo each write.
    pub fn write(&mut self, effects: &Effects, undo: &mut Vec<Undo>, now: DateTime<Utc>) {
        for update in &effects.balance_updates {
            if let Some(account) = self.accounts.get_mut(&update.user_id) {
                undo.push(Undo::Balance(account.clone()));
                account.balance = update.to;
            }
        }
        for entry in &effects.ledger {
            self.last_position += 1;
            let position = LedgerPosition(self.last_position);
            self.ledger
                .entry(entry.user_id.clone())
                .or_default()
                .push(StatementEntry { position, entry: entry.clone() });
            undo.push(Undo::Ledger(entry.user_id.clone()));
        }
        for payment in &effects.payments {
            self.payments.insert(payment.order_id.clone(), payment.clone());
            undo.push(Undo::Payment(payment.order_id.clone()));
        }
        for refund in &effects.refunds {
            self.refunds.insert(refund.refund_id.clone(), refund.clone());
            self.refunds_by_order.entry(refund.order_id.clone()).or_default().push(refund.refund_id.clone());
            undo.push(Undo::Refund(refund.refund_id.clone()));
        }
        for event in &effects.outbox {
            let id = self.outbox.last().map_or(1, |row| row.id + 1);
            self.outbox.push(OutboxRow {
                id,
                event: event.clone(),
                created_at: now,
                published_at: None,
                parked: None,
                parked_at: None,
            });
            undo.push(Undo::Outbox);
        }
        for letter in &effects.dead_letters {
            self.dead_letters.push(letter.clone());
            undo.push(Undo::DeadLetter);
        }
        for record in &effects.idempotency {
            let key = (record.user_id.clone(), record.key.clone());
            self.idempotency.insert(key.clone(), record.clone());
            undo.push(Undo::Idempotency(key));
        }
    }
}
