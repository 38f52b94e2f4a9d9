//! [`Effects`]: everything one unit of work writes, handed to the store in one call.

use crate::domain::{Balance, DeadLetter, IdempotencyRecord, LedgerEntry, OutboxEvent, Payment, UserId};

/// A balance change guarded by the value it was decided from: the store applies it only if the
/// account still holds `from` (it does, as the account is locked) and reports a conflict otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceUpdate {
    pub user_id: UserId,
    pub from: Balance,
    pub to: Balance,
}

/// The writes of one decision. Balance updates are one per account, in user-id order; every other
/// list is in decision order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    pub balance_updates: Vec<BalanceUpdate>,
    pub ledger: Vec<LedgerEntry>,
    pub payments: Vec<Payment>,
    pub outbox: Vec<OutboxEvent>,
    pub dead_letters: Vec<DeadLetter>,
    pub idempotency: Vec<IdempotencyRecord>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self == &Effects::default()
    }
}
