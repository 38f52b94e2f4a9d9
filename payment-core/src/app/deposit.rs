//! `Deposit`: credit an account, at most once per idempotency key.

use super::{Error, Payments};
use crate::decide::{decide_deposit, DepositDecision, KeyState};
use crate::domain::{Amount, Balance, IdempotencyKey, UserId};
use crate::ports::{Store, UnitOfWork};

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
    pub async fn deposit(
        &self,
        user: &UserId,
        amount: Amount,
        key: Option<&IdempotencyKey>,
    ) -> Result<DepositReceipt, Error> {
        self.retry.run("deposit", || self.deposit_once(user, amount, key)).await
    }

    async fn deposit_once(
        &self,
        user: &UserId,
        amount: Amount,
        key: Option<&IdempotencyKey>,
    ) -> Result<DepositReceipt, Error> {
        let mut tx = self.store.begin().await?;
        // The account lock comes first: a concurrent retry with the same key waits here and then
        // finds the first request's record.
        let account = tx.lock_accounts(std::slice::from_ref(user)).await?.pop();
        let earlier = match key {
            Some(key) => tx.load_idempotency(user, key).await?,
            None => None,
        };
        let key = key.map(|key| KeyState { key, earlier: earlier.as_ref() });
        let decision = decide_deposit(account.as_ref(), amount, key, self.clock.now(), uuid::Uuid::new_v4());
        let receipt = |balance, replayed| DepositReceipt { user_id: user.clone(), balance, replayed };
        match decision {
            Err(refusal) => {
                tx.rollback().await?;
                Err(refusal.into())
            }
            Ok(DepositDecision::Replay { balance }) => {
                tx.rollback().await?;
                tracing::info!(user_id = %user, %amount, "deposit replayed from its idempotency key");
                Ok(receipt(balance, true))
            }
            Ok(DepositDecision::Apply { effects, balance }) => {
                tx.apply(&effects).await?;
                tx.commit().await?;
                tracing::info!(user_id = %user, %amount, %balance, "deposit credited");
                Ok(receipt(balance, false))
            }
        }
    }
}
