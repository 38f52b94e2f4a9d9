//! `Deposit`: credit an account, at most once per idempotency key. Concurrent deposits share a
//! unit of work ([`DepositBatching`](super::DepositBatching)); each is answered on its own.

use std::sync::Arc;
use std::time::Duration;

use super::coalesce::{Closing, Coalescer, Gather, Work};
use super::{Error, Payments, RetryPolicy};
use crate::decide::{decide_deposits, DepositKeys, DepositRequest, DepositState, Deposited};
use crate::domain::{Amount, Balance, IdempotencyKey, RequestId, UserId};
use crate::ports::{Clock, Store, StoreError, UnitOfWork};

/// How concurrent [`Payments::deposit`] calls share a unit of work.
///
/// A batch closes when it holds `max_requests` deposits; or, with `group_commit`, as soon as no
/// other deposit of the same [`Payments`] is in flight; or once `linger` has passed since its
/// first deposit. It keeps gathering while its transaction waits for a pooled connection.
/// [`DepositBatching::OFF`] — or any `max_requests <= 1` or zero `linger` — gives each deposit
/// its own unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepositBatching {
    /// Most deposits in one unit of work; later callers start the next batch.
    pub max_requests: usize,
    /// The longest the first deposit of a batch waits for others.
    pub linger: Duration,
    /// Close a batch without waiting when every deposit in progress is in it: a lone deposit
    /// waits for nothing, and under load a batch gathers while the earlier ones run. `false`
    /// waits out `linger` unless the batch fills (tests use it to make batches predictable).
    pub group_commit: bool,
}

impl DepositBatching {
    /// One unit of work per deposit.
    pub const OFF: DepositBatching = DepositBatching { max_requests: 1, linger: Duration::ZERO, group_commit: true };

    /// Whether deposits are coalesced at all.
    pub fn is_on(&self) -> bool {
        self.max_requests > 1 && !self.linger.is_zero()
    }

    /// The coalescer of batched deposits; `None` when they are not batched.
    pub(super) fn coalescer(&self) -> Option<DepositCoalescer> {
        let closing =
            Closing { max_requests: self.max_requests, linger: Some(self.linger), group_commit: self.group_commit };
        self.is_on().then(|| {
            DepositCoalescer::new(closing, "the deposit's batch was abandoned; whether it committed is unknown")
        })
    }
}

impl Default for DepositBatching {
    /// 64 deposits, waiting at most 2 ms, with group commit.
    fn default() -> Self {
        Self { max_requests: 64, linger: Duration::from_millis(2), group_commit: true }
    }
}

/// Concurrent deposits, coalesced into shared units of work.
pub(super) type DepositCoalescer = Coalescer<DepositRequest, DepositReceipt>;

/// The answer to a deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositReceipt {
    /// The account credited.
    pub user_id: UserId,
    /// The balance after the deposit (after the first one, for a replay).
    pub balance: Balance,
    /// `true` when this is the stored answer to an earlier request with the same key.
    pub replayed: bool,
}

impl<S: Store> Payments<S> {
    /// Credits `amount`. With a key, a retry with the same amount gets the first answer and
    /// credits nothing; another amount is [`Error::IdempotencyKeyReused`].
    ///
    /// The deposit may share its unit of work with concurrent ones; a refusal of one never fails
    /// another, and a store error fails every deposit of the unit of work (none was committed,
    /// unless the error is an unknown commit outcome). A caller that stops waiting before its
    /// batch closes is left out of it; after that, its deposit may still be applied, as any
    /// request whose answer is lost.
    pub async fn deposit(
        &self,
        user: &UserId,
        amount: Amount,
        key: Option<&IdempotencyKey>,
    ) -> Result<DepositReceipt, Error> {
        self.deposit_requested(user, amount, key, None).await
    }

    /// [`deposit`](Self::deposit) on behalf of the request `request_id` (an HTTP
    /// `X-Request-Id`): without a key, the ledger entry records the request as its cause, so an
    /// auditor can follow the entry to the request's log lines.
    pub async fn deposit_requested(
        &self,
        user: &UserId,
        amount: Amount,
        key: Option<&IdempotencyKey>,
        request_id: Option<&RequestId>,
    ) -> Result<DepositReceipt, Error> {
        let request =
            DepositRequest { user_id: user.clone(), amount, key: key.cloned(), request_id: request_id.cloned() };
        let runner = DepositRunner { store: self.store.clone(), clock: self.clock.clone(), retry: self.retry };
        match &self.deposits {
            Some(coalescer) => coalescer.submit(request, move |gather| runner.lead(gather)).await,
            None => {
                let mut answers = runner.run(None, std::slice::from_ref(&request)).await;
                answers.pop().unwrap_or_else(|| Err(Error::Store(StoreError::Invariant("no answer".into()))))
            }
        }
    }
}

/// What a batch of deposits needs of [`Payments`], owned, so a window's work outlives any one
/// caller.
struct DepositRunner<S> {
    store: S,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
}

impl<S: Store> DepositRunner<S> {
    /// A window's work: gather, open the transaction, close the window, run, answer each caller.
    fn lead(self, gather: Arc<Gather<DepositRequest, DepositReceipt>>) -> Work {
        Box::pin(async move {
            gather.ready().await;
            // The window stays open while the transaction waits for a connection: deposits that
            // arrive meanwhile ride along instead of queueing for one of their own.
            let opened = self.store.begin().await;
            let pending = gather.close();
            if pending.is_empty() {
                return;
            }
            let requests: Vec<DepositRequest> = pending.iter().map(|p| p.request.clone()).collect();
            let answers = self.run(Some(opened), &requests).await;
            for (pending, answer) in pending.into_iter().zip(answers) {
                // A caller that gave up has dropped its receiver; its answer has nowhere to go.
                let _ = pending.reply.send(answer);
            }
        })
    }

    /// Runs `requests` as one unit of work, whole again after a conflict; one answer each.
    async fn run(
        &self,
        opened: Option<Result<S::Tx, StoreError>>,
        requests: &[DepositRequest],
    ) -> Vec<Result<DepositReceipt, Error>> {
        let mut opened = opened;
        match self.retry.run("deposit", || self.run_once(opened.take(), requests)).await {
            Ok(answers) => answers,
            Err(error) => vec![Err(error); requests.len()],
        }
    }

    async fn run_once(
        &self,
        opened: Option<Result<S::Tx, StoreError>>,
        requests: &[DepositRequest],
    ) -> Result<Vec<Result<DepositReceipt, Error>>, Error> {
        let mut tx = match opened {
            Some(opened) => opened?,
            None => self.store.begin().await?,
        };
        let keys = DepositKeys::of(requests);
        // The account locks come first: a concurrent retry with the same key waits here and then
        // finds the first request's record.
        let accounts = tx.lock_accounts(&keys.users).await?;
        let records = match keys.keys.is_empty() {
            true => Vec::new(),
            false => tx.load_idempotency_many(&keys.keys).await?,
        };
        let state = DepositState::of(accounts, records);
        let decision = decide_deposits(state, requests, self.clock.now(), &mut uuid::Uuid::new_v4);
        if decision.effects.is_empty() {
            tx.rollback().await?;
        } else {
            tx.apply(&decision.effects).await?;
            tx.commit().await?;
        }
        let (mut credited, mut replayed) = (0, 0);
        let answers: Vec<_> = requests
            .iter()
            .zip(decision.outcomes)
            .map(|(request, outcome)| {
                let (user_id, amount) = (&request.user_id, request.amount);
                let (balance, was_replayed) = match outcome? {
                    Deposited::Credited { balance } => {
                        credited += 1;
                        // Who and how much are personal data: debug only.
                        tracing::debug!(%user_id, %amount, %balance, "deposit credited");
                        (balance, false)
                    }
                    Deposited::Replayed { balance } => {
                        replayed += 1;
                        tracing::debug!(%user_id, %amount, "deposit replayed from its idempotency key");
                        (balance, true)
                    }
                };
                Ok(DepositReceipt { user_id: user_id.clone(), balance, replayed: was_replayed })
            })
            .collect();
        let refused = requests.len() - credited - replayed;
        tracing::debug!(requests = requests.len(), credited, replayed, refused, "deposit batch done");
        Ok(answers)
    }
}
