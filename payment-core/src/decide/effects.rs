//! [`Effects`]: everything one unit of work writes, handed to the store in one call.

use crate::domain::{Balance, DeadLetter, IdempotencyRecord, LedgerEntry, OutboxEvent, Payment, Refund, UserId};

/// A balance change guarded by the value it was decided from: the store applies it only if the
/// account still holds `from` (it does, as the account is locked) and reports a conflict otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceUpdate {
    /// The account updated.
    pub user_id: UserId,
    /// The balance the decision saw; the update applies only if the account still holds it.
    pub from: Balance,
    /// The new balance.
    pub to: Balance,
}

/// The writes of one decision. Balance updates are one per account, in user-id order; every other
/// list is in decision order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// At most one per account, in user-id order, from the first balance seen to the last.
    pub balance_updates: Vec<BalanceUpdate>,
    /// One entry per debit or credit (refunds included).
    pub ledger: Vec<LedgerEntry>,
    /// New successful payments, at most one per order id.
    pub payments: Vec<Payment>,
    /// New successful refunds, at most one per refund id.
    pub refunds: Vec<Refund>,
    /// Events to publish after the commit (`order.paid`, `order.payment_failed`, `order.refunded`,
    /// `order.refund_failed`, dead letters).
    pub outbox: Vec<OutboxEvent>,
    /// Messages not applied, stored with their reason.
    pub dead_letters: Vec<DeadLetter>,
    /// Idempotency records of keyed deposits.
    pub idempotency: Vec<IdempotencyRecord>,
}

impl Effects {
    /// Whether there is nothing to write (e.g. a batch of redeliveries).
    pub fn is_empty(&self) -> bool {
        self == &Effects::default()
    }
}
