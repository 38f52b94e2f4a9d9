//! [`MemoryTx`]: a unit of work on the in-memory store.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::{watch, OwnedMutexGuard};

use super::state::{InboxRow, State, Undo};
use crate::decide::Effects;
use crate::domain::{
    Account, IdempotencyKey, IdempotencyRecord, InboxClaim, MessageId, OrderId, Payment, Refund, RefundId, UserId,
};
use crate::ports::{StoreError, UnitOfWork};

/// Holds the store's lock until it commits, rolls back or is dropped (which rolls back).
#[derive(Debug)]
pub struct MemoryTx {
    state: OwnedMutexGuard<State>,
    undo: Vec<Undo>,
    wrote_outbox: bool,
    commits: Arc<watch::Sender<u64>>,
}

impl MemoryTx {
    pub(super) fn new(state: OwnedMutexGuard<State>, commits: Arc<watch::Sender<u64>>) -> Self {
        Self { state, undo: Vec::new(), wrote_outbox: false, commits }
    }

    fn undo_all(&mut self) {
        while let Some(undo) = self.undo.pop() {
            self.state.undo(undo);
        }
    }
}

impl Drop for MemoryTx {
    fn drop(&mut self) {
        self.undo_all();
    }
}

#[async_trait]
impl UnitOfWork for MemoryTx {
    async fn claim_messages(&mut self, claims: &[InboxClaim]) -> Result<HashSet<MessageId>, StoreError> {
        let now = Utc::now();
        let mut claimed = HashSet::new();
        for claim in claims {
            let id = &claim.identity;
            if !self.state.inbox.contains_key(id) {
                self.state.inbox.insert(id.clone(), InboxRow { claimed_at: now, trace: claim.trace.clone() });
                self.undo.push(Undo::Inbox(id.clone()));
                claimed.insert(id.clone());
            }
        }
        Ok(claimed)
    }

    async fn lock_accounts(&mut self, users: &[UserId]) -> Result<Vec<Account>, StoreError> {
        Ok(users.iter().filter_map(|user| self.state.accounts.get(user).cloned()).collect())
    }

    async fn load_payments(&mut self, orders: &[OrderId]) -> Result<Vec<Payment>, StoreError> {
        Ok(orders.iter().filter_map(|order| self.state.payments.get(order).cloned()).collect())
    }

    async fn load_refunds(&mut self, orders: &[OrderId], refunds: &[RefundId]) -> Result<Vec<Refund>, StoreError> {
        Ok(self.state.refunds_of(orders, refunds))
    }

    async fn load_idempotency_many(
        &mut self,
        keys: &[(UserId, IdempotencyKey)],
    ) -> Result<Vec<IdempotencyRecord>, StoreError> {
        Ok(keys.iter().filter_map(|key| self.state.idempotency.get(key).cloned()).collect())
    }

    async fn insert_account(&mut self, account: &Account) -> Result<bool, StoreError> {
        if self.state.accounts.contains_key(&account.user_id) {
            return Ok(false);
        }
        self.state.accounts.insert(account.user_id.clone(), account.clone());
        self.undo.push(Undo::Account(account.user_id.clone()));
        Ok(true)
    }

    async fn apply(&mut self, effects: &Effects) -> Result<(), StoreError> {
        self.state.check(effects)?;
        let state = &mut *self.state;
        state.write(effects, &mut self.undo, Utc::now());
        self.wrote_outbox |= !effects.outbox.is_empty();
        Ok(())
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        self.undo.clear();
        if self.wrote_outbox {
            self.commits.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    async fn rollback(mut self) -> Result<(), StoreError> {
        self.undo_all();
        Ok(())
    }
}
