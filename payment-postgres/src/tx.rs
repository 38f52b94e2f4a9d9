//! [`PgTx`]: a unit of work in one PostgreSQL transaction, a constant number of statements per
//! batch whatever its size and mix: `BEGIN`, claim, lock, load (payments; refunds when the batch
//! has refund commands), apply, `COMMIT`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use payment_core::decide::Effects;
use payment_core::domain::{
    Account, IdempotencyKey, IdempotencyRecord, InboxClaim, MessageId, OrderId, Payment, Refund, RefundId, UserId,
};
use payment_core::ports::{StoreError, UnitOfWork};
use sqlx::{Postgres, Transaction};

use crate::error::{corrupt, store_error};
use crate::{apply, rows};

/// An open transaction. Dropping it rolls it back (sqlx does so when the connection returns to
/// the pool).
pub struct PgTx {
    tx: Transaction<'static, Postgres>,
    statements: Arc<AtomicU64>,
}

impl PgTx {
    pub(crate) fn new(tx: Transaction<'static, Postgres>, statements: Arc<AtomicU64>) -> Self {
        Self { tx, statements }
    }

    fn count(&self) {
        self.statements.fetch_add(1, Ordering::Relaxed);
    }
}

/// The first key of the order-id advisory locks (the second is the order id's hash). The
/// two-key form never meets the publisher's one-key leader lock.
const ORDER_LOCK_CLASS: i32 = 0x5041_5930;

fn texts<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

#[async_trait]
impl UnitOfWork for PgTx {
    async fn claim_messages(&mut self, claims: &[InboxClaim]) -> Result<HashSet<MessageId>, StoreError> {
        // Sorted, so two batches sharing identities wait for each other instead of deadlocking.
        let mut claims: Vec<&InboxClaim> = claims.iter().collect();
        claims.sort_by(|a, b| a.identity.cmp(&b.identity));
        let ids: Vec<String> = claims.iter().map(|c| c.identity.to_string()).collect();
        let traceparents: Vec<Option<String>> =
            claims.iter().map(|c| c.trace.as_ref().map(|t| t.traceparent())).collect();
        let tracestates: Vec<Option<String>> =
            claims.iter().map(|c| c.trace.as_ref().and_then(|t| t.tracestate().map(str::to_owned))).collect();
        self.count();
        let claimed: Vec<String> = sqlx::query_scalar(
            "INSERT INTO inbox (message_id, traceparent, tracestate)
             SELECT id, traceparent, tracestate
             FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS t(id, traceparent, tracestate) ORDER BY id
             ON CONFLICT (message_id) DO NOTHING
             RETURNING message_id",
        )
        .bind(&ids)
        .bind(&traceparents)
        .bind(&tracestates)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error)?;
        claimed.into_iter().map(|id| MessageId::new(id).map_err(|e| corrupt("message id", e))).collect()
    }

    async fn lock_accounts(&mut self, users: &[UserId]) -> Result<Vec<Account>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        self.count();
        // LockRows sits above the sort: rows are locked in user-id order.
        let rows = sqlx::query_as::<_, rows::AccountRow>(
            "SELECT user_id, balance, created_at FROM accounts
             WHERE user_id = ANY($1::TEXT[])
             ORDER BY user_id
             FOR UPDATE",
        )
        .bind(texts(users))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(Account::try_from).collect()
    }

    async fn load_payments(&mut self, orders: &[OrderId]) -> Result<Vec<Payment>, StoreError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        // Two concurrent batches naming one order id on different accounts lock nothing in
        // common: each would decide the order from a snapshot without the other's payment (one
        // pays it, the other answers `payment_failed` for a paid order). So the order ids are
        // locked first, in one sorted pass (deadlock-free: every batch takes its accounts, then
        // its orders), and the payments read by a second statement, whose snapshot is taken
        // after the locks are granted. A hash collision only serialises two batches.
        self.count();
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1, k)
             FROM (SELECT DISTINCT hashtext(o) AS k FROM unnest($2::TEXT[]) AS u(o) ORDER BY k) AS sorted",
        )
        .bind(ORDER_LOCK_CLASS)
        .bind(texts(orders))
        .execute(&mut *self.tx)
        .await
        .map_err(store_error)?;
        self.count();
        let rows = sqlx::query_as::<_, rows::PaymentRow>(
            "SELECT order_id, user_id, amount, transaction_id, event_id, paid_at
             FROM payments WHERE order_id = ANY($1::TEXT[])",
        )
        .bind(texts(orders))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(Payment::try_from).collect()
    }

    async fn load_refunds(&mut self, orders: &[OrderId], refunds: &[RefundId]) -> Result<Vec<Refund>, StoreError> {
        // Runs under the order locks `load_payments` took, so no concurrent batch refunds these
        // orders until this one ends; a refund id re-used for an order outside the batch is
        // found by its key, and a concurrent insert of it hits the primary key (a conflict).
        self.count();
        let rows = sqlx::query_as::<_, rows::RefundRow>(&format!(
            "SELECT {} FROM refunds WHERE order_id = ANY($1::TEXT[]) OR refund_id = ANY($2::TEXT[])",
            rows::REFUND_COLUMNS
        ))
        .bind(texts(orders))
        .bind(texts(refunds))
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(Refund::try_from).collect()
    }

    async fn load_idempotency_many(
        &mut self,
        keys: &[(UserId, IdempotencyKey)],
    ) -> Result<Vec<IdempotencyRecord>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.count();
        let users: Vec<&str> = keys.iter().map(|(user, _)| user.as_str()).collect();
        let names: Vec<&str> = keys.iter().map(|(_, key)| key.as_str()).collect();
        // Pairs, not two independent lists: `user_id = ANY(..) AND key = ANY(..)` would also match
        // one user's record under another user's key.
        let rows = sqlx::query_as::<_, rows::IdempotencyRow>(
            "SELECT i.user_id, i.key, i.amount, i.balance, i.created_at
             FROM idempotency_keys AS i
             JOIN UNNEST($1::TEXT[], $2::TEXT[]) AS k(user_id, key) ON i.user_id = k.user_id AND i.key = k.key",
        )
        .bind(users)
        .bind(names)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(IdempotencyRecord::try_from).collect()
    }

    async fn insert_account(&mut self, account: &Account) -> Result<bool, StoreError> {
        self.count();
        let inserted = sqlx::query(
            "INSERT INTO accounts (user_id, balance, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(account.user_id.as_str())
        .bind(account.balance.value())
        .bind(account.created_at)
        .execute(&mut *self.tx)
        .await
        .map_err(store_error)?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn apply(&mut self, effects: &Effects) -> Result<(), StoreError> {
        if effects.is_empty() {
            return Ok(());
        }
        self.count();
        apply::apply(&mut self.tx, effects).await
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.count();
        self.tx.commit().await.map_err(store_error)
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.count();
        self.tx.rollback().await.map_err(store_error)
    }
}
