//! The storage port: a [`Store`] opens [`UnitOfWork`]s, in which the use cases load state, apply
//! the effects decided on it, and commit — all or nothing.

use std::collections::HashSet;

use async_trait::async_trait;

use crate::decide::Effects;
use crate::domain::{
    Account, IdempotencyKey, IdempotencyRecord, InboxClaim, MessageId, OrderId, Payment, Refund, RefundId,
    StatementEntry, StatementPage, UserId,
};

/// A storage failure, already translated from the adapter's own error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A race with a concurrent transaction (serialization failure, deadlock, unique violation,
    /// a guarded update that found another value). Nothing was written; the whole unit of work
    /// may be retried from the start.
    #[error("conflict with a concurrent transaction: {0}")]
    Conflict(String),
    /// The store cannot be reached or gave up mid-way; whether a commit happened may be unknown.
    /// Retry later: the inbox and idempotency keys make a replay safe.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store holds or was asked to write something that breaks an invariant (e.g. a negative
    /// balance). Never retried: it is a bug, and the transaction is rolled back.
    #[error("storage invariant violated: {0}")]
    Invariant(String),
}

impl StoreError {
    /// Whether retrying the whole unit of work may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }

    /// Whether the same unit of work may succeed later unchanged (a conflict, a connection lost,
    /// a timeout, a server restarting): it is retried as is. Otherwise the store refuses what it
    /// was given, and would again; the consumer then looks for the command it refuses.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Conflict(_) | StoreError::Unavailable(_))
    }
}

/// A store of accounts, ledger, payments, inbox, outbox, dead letters and idempotency keys.
///
/// Reads outside a unit of work see committed data only.
#[async_trait]
pub trait Store: Clone + Send + Sync + 'static {
    /// The unit of work [`Store::begin`] opens.
    type Tx: UnitOfWork;

    /// Opens a unit of work. Dropping it without [`UnitOfWork::commit`] rolls it back.
    async fn begin(&self) -> Result<Self::Tx, StoreError>;

    /// Whether the store answers; for readiness probes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The committed account of a user: [`Store::accounts`] for one user, which every store
    /// already answers in one statement.
    async fn account(&self, user: &UserId) -> Result<Option<Account>, StoreError> {
        let mut answers = self.accounts(std::slice::from_ref(user)).await?;
        Ok(answers.pop().flatten())
    }

    /// The committed accounts of many users, read in one statement: one answer per user asked,
    /// in the order asked — `None` for a user with no account, and a user asked twice answered
    /// twice. No users, no answers (and no statement). Coalesced balance reads ask for every
    /// waiting caller at once with it.
    async fn accounts(&self, users: &[UserId]) -> Result<Vec<Option<Account>>, StoreError>;

    /// One page of a user's statement, newest first, by keyset on the entry position.
    async fn statement(&self, user: &UserId, page: StatementPage) -> Result<Vec<StatementEntry>, StoreError>;
}

/// One transaction. Every load takes the whole batch so a store can answer it in one statement;
/// [`apply`](UnitOfWork::apply) takes all effects at once.
#[async_trait]
pub trait UnitOfWork: Send {
    /// Inserts message identities into the inbox, each with its trace context, and returns those
    /// that were not there before. A message claimed by a concurrent transaction counts as not new
    /// once that one commits; a claim already there keeps the context it was first stored with.
    async fn claim_messages(&mut self, claims: &[InboxClaim]) -> Result<HashSet<MessageId>, StoreError>;

    /// Locks and returns the existing accounts among `users` (given sorted). Locks are taken in
    /// user-id order, so two units of work cannot deadlock on accounts, and held until the end.
    async fn lock_accounts(&mut self, users: &[UserId]) -> Result<Vec<Account>, StoreError>;

    /// Locks these order ids until the unit of work ends (a concurrent one naming any of them
    /// waits), then returns their earlier successful payments. Called after the accounts are
    /// locked, so it sees every payment committed before its locks were granted — also one made
    /// by a concurrent batch on other accounts.
    async fn load_payments(&mut self, orders: &[OrderId]) -> Result<Vec<Payment>, StoreError>;

    /// The earlier successful refunds of these orders (every one, so what is left to refund is
    /// known) and of these refund ids (a refund id re-used for another order), in no particular
    /// order. Called after [`load_payments`](UnitOfWork::load_payments), under its order locks, and
    /// only for a batch with refund commands; a refund id is unique, so a concurrent unit of work
    /// applying the same one for another order fails [`apply`](UnitOfWork::apply) with a conflict.
    async fn load_refunds(&mut self, orders: &[OrderId], refunds: &[RefundId]) -> Result<Vec<Refund>, StoreError>;

    /// The deposits made earlier under these `(user, idempotency key)` pairs (given sorted), in no
    /// particular order; a pair with none is left out. Called after the accounts are locked, so it
    /// sees every record committed before the locks were granted.
    async fn load_idempotency_many(
        &mut self,
        keys: &[(UserId, IdempotencyKey)],
    ) -> Result<Vec<IdempotencyRecord>, StoreError>;

    /// Creates an account; `false` when the user already has one.
    async fn insert_account(&mut self, account: &Account) -> Result<bool, StoreError>;

    /// Writes all effects. A balance update whose `from` no longer matches, a second payment for
    /// an order id, a second refund for a refund id or a second record for an idempotency key is a
    /// [`StoreError::Conflict`].
    async fn apply(&mut self, effects: &Effects) -> Result<(), StoreError>;

    /// Makes everything durable at once and emits the new outbox rows.
    async fn commit(self) -> Result<(), StoreError>;

    /// Discards everything.
    async fn rollback(self) -> Result<(), StoreError>;
}
