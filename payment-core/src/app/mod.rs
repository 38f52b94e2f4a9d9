//! Use cases: [`Payments`] runs each one as a unit of work on a [`Store`] — load, decide (pure,
//! in [`crate::decide`]), apply, commit — and retries it whole when the store reports a conflict.

mod create_account;
mod deposit;
mod get_balance;
mod pay_orders;
mod retry;

use std::sync::Arc;

pub use deposit::DepositReceipt;
pub use get_balance::Statement;
pub use retry::RetryPolicy;

use crate::decide::DepositRefusal;
use crate::ports::{Clock, Store, StoreError, SystemClock};

/// Why a use case did not do what was asked. Business refusals change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the user already has an account")]
    AccountExists,
    #[error("the user has no account")]
    AccountNotFound,
    #[error("the deposit would take the balance over its limit")]
    BalanceLimit,
    #[error("the idempotency key was used for a different deposit")]
    IdempotencyKeyReused,
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
}

impl<S: Store> Payments<S> {
    pub fn new(store: S) -> Self {
        Self { store, clock: Arc::new(SystemClock), retry: RetryPolicy::default() }
    }

    pub fn with_clock(self, clock: impl Clock) -> Self {
        Self { clock: Arc::new(clock), ..self }
    }

    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        Self { retry, ..self }
    }

    pub fn store(&self) -> &S {
        &self.store
    }
}
