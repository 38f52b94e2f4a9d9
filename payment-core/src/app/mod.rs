//! Use cases: [`Payments`] runs each one as a unit of work on a [`Store`] — load, decide (pure,
//! in [`crate::decide`]), apply, commit — and retries it whole when the store reports a conflict.

mod account_reads;
mod coalesce;
mod create_account;
mod deposit;
mod get_balance;
mod pay_orders;
mod retry;

use std::sync::Arc;

pub use account_reads::DEFAULT_MAX_READS_PER_QUERY;
pub use deposit::{DepositBatching, DepositReceipt};
pub use get_balance::Statement;
pub use retry::RetryPolicy;

use account_reads::AccountReads;
use deposit::DepositCoalescer;

use crate::decide::DepositRefusal;
use crate::ports::{Clock, Store, StoreError, SystemClock};

/// Why a use case did not do what was asked. Business refusals change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// [`Payments::create_account`] for a user who has an account.
    #[error("the user already has an account")]
    AccountExists,
    /// The user has no account (deposit, balance, statement).
    #[error("the user has no account")]
    AccountNotFound,
    /// The deposit would exceed [`MAX_BALANCE`](crate::domain::MAX_BALANCE); nothing was credited.
    #[error("the deposit would take the balance over its limit")]
    BalanceLimit,
    /// The idempotency key was first used for another amount; nothing was credited.
    #[error("the idempotency key was used for a different deposit")]
    IdempotencyKeyReused,
    /// The store failed; a [`StoreError::Conflict`] is returned only once the retries are used up.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DepositRefusal> for Error {
    fn from(refusal: DepositRefusal) -> Self {
        match refusal {
            DepositRefusal::AccountNotFound => Error::AccountNotFound,
            DepositRefusal::BalanceLimit => Error::BalanceLimit,
            DepositRefusal::IdempotencyKeyReused => Error::IdempotencyKeyReused,
        }
    }
}

/// The payment use cases on one store: `CreateAccount`, `Deposit`, `GetBalance` (and the
/// statement), and `PayOrders`.
#[derive(Clone)]
pub struct Payments<S> {
    store: S,
    clock: Arc<dyn Clock>,
    retry: RetryPolicy,
    /// `None` when each deposit is its own unit of work.
    deposits: Option<Arc<DepositCoalescer>>,
    /// Concurrent balance reads (and statement account checks), sharing queries.
    reads: Arc<AccountReads>,
}

impl<S: Store> Payments<S> {
    /// Use cases on `store`, with the [`SystemClock`], the default [`RetryPolicy`], the default
    /// [`DepositBatching`] and at most [`DEFAULT_MAX_READS_PER_QUERY`] balance reads per query.
    pub fn new(store: S) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            retry: RetryPolicy::default(),
            deposits: None,
            reads: Arc::new(AccountReads::new(DEFAULT_MAX_READS_PER_QUERY)),
        }
        .with_deposit_batching(DepositBatching::default())
    }

    /// Replaces the clock that stamps accounts, entries, payments and events (tests fix it).
    pub fn with_clock(self, clock: impl Clock) -> Self {
        Self { clock: Arc::new(clock), ..self }
    }

    /// Replaces how often a conflicting unit of work is re-run.
    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        Self { retry, ..self }
    }

    /// Replaces how concurrent deposits share units of work. Clones made before this call keep
    /// batching with each other, not with this one.
    pub fn with_deposit_batching(self, batching: DepositBatching) -> Self {
        let deposits = batching.coalescer().map(Arc::new);
        Self { deposits, ..self }
    }

    /// Replaces how many concurrent balance reads (and statement account checks) one
    /// [`Store::accounts`] query may answer; more readers than that fill further queries. One
    /// (or zero) gives each read its own query. Clones made before this call share queries with
    /// each other, not with this one.
    pub fn with_max_reads_per_query(self, max_reads: usize) -> Self {
        Self { reads: Arc::new(AccountReads::new(max_reads)), ..self }
    }

    /// The store the use cases run on, e.g. to hand it to a publisher or the HTTP layer.
    pub fn store(&self) -> &S {
        &self.store
    }
}
