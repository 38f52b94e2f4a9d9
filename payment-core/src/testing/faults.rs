//! A store wrapper that fails one chosen step of a unit of work, for any store: the tests abort a
//! transaction at every step and check that nothing of it remains. It can also refuse, every
//! time, the effects of chosen orders, as a store refuses a command it cannot take (a constraint
//! the domain did not foresee): the tests see such a command set aside and the others applied.
//! And it can hold every unit of work at its start until released, so a test can keep a batch
//! "being applied" for as long as it needs (a rebalance in between, say).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::{Inspect, Snapshot};
use crate::decide::Effects;
use crate::domain::{
    Account, IdempotencyKey, IdempotencyRecord, InboxClaim, MessageId, OrderId, Payment, Refund, RefundId,
    StatementEntry, StatementPage, UserId,
};
use crate::ports::{Store, StoreError, UnitOfWork};

/// A step of a unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// [`Store::begin`].
    Begin,
    /// [`UnitOfWork::claim_messages`].
    ClaimMessages,
    /// [`UnitOfWork::lock_accounts`].
    LockAccounts,
    /// [`UnitOfWork::load_payments`].
    LoadPayments,
    /// [`UnitOfWork::load_refunds`].
    LoadRefunds,
    /// [`UnitOfWork::load_idempotency_many`].
    LoadIdempotency,
    /// [`UnitOfWork::insert_account`].
    InsertAccount,
    /// [`UnitOfWork::apply`].
    Apply,
    /// The commit fails; nothing is written.
    Commit,
    /// The commit succeeds but the caller hears of an error, as when a connection drops just
    /// after the server committed.
    AfterCommit,
}

impl FaultPoint {
    /// Every step, in the order a unit of work passes them.
    pub const ALL: [FaultPoint; 10] = [
        FaultPoint::Begin,
        FaultPoint::ClaimMessages,
        FaultPoint::LockAccounts,
        FaultPoint::LoadPayments,
        FaultPoint::LoadRefunds,
        FaultPoint::LoadIdempotency,
        FaultPoint::InsertAccount,
        FaultPoint::Apply,
        FaultPoint::Commit,
        FaultPoint::AfterCommit,
    ];
}

type Plan = Arc<Mutex<Option<(FaultPoint, StoreError)>>>;
/// Order ids whose effects [`UnitOfWork::apply`] refuses, every time.
type Refused = Arc<Mutex<HashSet<OrderId>>>;

fn refuse(refused: &Refused, effects: &Effects) -> Result<(), StoreError> {
    let refused = refused.lock().unwrap_or_else(PoisonError::into_inner);
    let named = effects
        .payments
        .iter()
        .map(|payment| payment.order_id.as_str())
        .chain(effects.outbox.iter().filter_map(|event| event.key.as_deref()))
        .find(|order| refused.iter().any(|refused| refused.as_str() == *order));
    match named {
        Some(order) => Err(StoreError::Invariant(format!("injected: the store refuses the effects of order {order}"))),
        None => Ok(()),
    }
}

fn trip(plan: &Plan, point: FaultPoint) -> Result<(), StoreError> {
    let mut armed = plan.lock().unwrap_or_else(PoisonError::into_inner);
    match armed.take() {
        Some((armed_point, error)) if armed_point == point => Err(error),
        other => {
            *armed = other;
            Ok(())
        }
    }
}

/// Wraps a store; [`arm`](FaultyStore::arm) makes the next pass through a step fail, once.
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    inner: S,
    plan: Plan,
    refused: Refused,
    begun: Arc<AtomicU64>,
    gate: Gate,
}

/// Whether units of work are held at [`Store::begin`], and how many wait there.
#[derive(Debug, Clone)]
struct Gate {
    held: Arc<tokio::sync::watch::Sender<bool>>,
    waiting: Arc<AtomicU64>,
}

impl Default for Gate {
    fn default() -> Self {
        Self { held: Arc::new(tokio::sync::watch::Sender::new(false)), waiting: Arc::default() }
    }
}

impl Gate {
    async fn pass(&self) {
        let mut held = self.held.subscribe();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // `wait_for` only fails when the sender is gone, and this gate holds it.
        let _ = held.wait_for(|held| !*held).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S> FaultyStore<S> {
    /// Wraps `inner`, with no fault armed.
    pub fn new(inner: S) -> Self {
        Self { inner, plan: Arc::default(), refused: Arc::default(), begun: Arc::default(), gate: Gate::default() }
    }

    /// Holds every unit of work begun through this wrapper (and its clones; another
    /// [`FaultyStore::new`] over the same inner store has its own gate) before it begins, until
    /// [`release`](Self::release).
    pub fn hold(&self) {
        self.gate.held.send_replace(true);
    }

    /// Lets held and later units of work begin.
    pub fn release(&self) {
        self.gate.held.send_replace(false);
    }

    /// How many units of work wait at the gate now.
    pub fn held(&self) -> u64 {
        self.gate.waiting.load(Ordering::SeqCst)
    }

    /// Makes every [`UnitOfWork::apply`] whose effects name `order` (a payment, or an event keyed
    /// by it) fail with [`StoreError::Invariant`], through any clone, until [`accept`](Self::accept).
    pub fn refuse(&self, order: OrderId) {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner).insert(order);
    }

    /// Stops refusing any order.
    pub fn accept(&self) {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Makes the next pass through `point`, by any clone, fail with [`StoreError::Unavailable`], once.
    pub fn arm(&self, point: FaultPoint) {
        self.arm_with(point, StoreError::Unavailable(format!("fault injected at {point:?}")));
    }

    /// Makes the next pass through `point`, by any clone, fail with `error`, once: e.g. a
    /// [`StoreError::Conflict`] to see a unit of work retried.
    pub fn arm_with(&self, point: FaultPoint, error: StoreError) {
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner) = Some((point, error));
    }

    /// Cancels an armed fault that has not fired.
    pub fn disarm(&self) {
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether the armed fault has not fired yet.
    pub fn armed(&self) -> Option<FaultPoint> {
        self.plan.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|(point, _)| *point)
    }

    /// How many units of work were begun through any clone, faulted or not: how tests see that
    /// concurrent requests shared one.
    pub fn units_begun(&self) -> u64 {
        self.begun.load(Ordering::Relaxed)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    type Tx = FaultyTx<S::Tx>;

    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.gate.pass().await;
        trip(&self.plan, FaultPoint::Begin)?;
        Ok(FaultyTx { inner: self.inner.begin().await?, plan: self.plan.clone(), refused: self.refused.clone() })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn accounts(&self, users: &[UserId]) -> Result<Vec<Option<Account>>, StoreError> {
        self.inner.accounts(users).await
    }

    async fn statement(&self, user: &UserId, page: StatementPage) -> Result<Vec<StatementEntry>, StoreError> {
        self.inner.statement(user, page).await
    }
}

#[async_trait]
impl<S: Inspect + Sync> Inspect for FaultyStore<S> {
    async fn snapshot(&self) -> Snapshot {
        self.inner.snapshot().await
    }
}

/// A unit of work of a [`FaultyStore`]. A failed step leaves the inner transaction to be dropped
/// (rolled back), as a crashed caller would.
pub struct FaultyTx<T> {
    inner: T,
    plan: Plan,
    refused: Refused,
}

#[async_trait]
impl<T: UnitOfWork> UnitOfWork for FaultyTx<T> {
    async fn claim_messages(&mut self, claims: &[InboxClaim]) -> Result<HashSet<MessageId>, StoreError> {
        trip(&self.plan, FaultPoint::ClaimMessages)?;
        self.inner.claim_messages(claims).await
    }

    async fn lock_accounts(&mut self, users: &[UserId]) -> Result<Vec<Account>, StoreError> {
        trip(&self.plan, FaultPoint::LockAccounts)?;
        self.inner.lock_accounts(users).await
    }

    async fn load_payments(&mut self, orders: &[OrderId]) -> Result<Vec<Payment>, StoreError> {
        trip(&self.plan, FaultPoint::LoadPayments)?;
        self.inner.load_payments(orders).await
    }

    async fn load_refunds(&mut self, orders: &[OrderId], refunds: &[RefundId]) -> Result<Vec<Refund>, StoreError> {
        trip(&self.plan, FaultPoint::LoadRefunds)?;
        self.inner.load_refunds(orders, refunds).await
    }

    async fn load_idempotency_many(
        &mut self,
        keys: &[(UserId, IdempotencyKey)],
    ) -> Result<Vec<IdempotencyRecord>, StoreError> {
        trip(&self.plan, FaultPoint::LoadIdempotency)?;
        self.inner.load_idempotency_many(keys).await
    }

    async fn insert_account(&mut self, account: &Account) -> Result<bool, StoreError> {
        trip(&self.plan, FaultPoint::InsertAccount)?;
        self.inner.insert_account(account).await
    }

    async fn apply(&mut self, effects: &Effects) -> Result<(), StoreError> {
        trip(&self.plan, FaultPoint::Apply)?;
        refuse(&self.refused, effects)?;
        self.inner.apply(effects).await
    }

    async fn commit(self) -> Result<(), StoreError> {
        trip(&self.plan, FaultPoint::Commit)?;
        self.inner.commit().await?;
        trip(&self.plan, FaultPoint::AfterCommit)
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.inner.rollback().await
    }
}
