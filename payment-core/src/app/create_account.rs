//! `CreateAccount`: one account per user, starting at zero.

use super::{Error, Payments};
use crate::domain::{Account, UserId};
use crate::ports::{Store, UnitOfWork};

impl<S: Store> Payments<S> {
    /// Opens the user's account; [`Error::AccountExists`] if there is one.
    pub async fn create_account(&self, user: &UserId) -> Result<Account, Error> {
        self.retry.run("create_account", || self.create_account_once(user)).await
    }

    async fn create_account_once(&self, user: &UserId) -> Result<Account, Error> {
        let mut tx = self.store.begin().await?;
        let account = Account::open(user.clone(), self.clock.now());
        if !tx.insert_account(&account).await? {
            tx.rollback().await?;
            return Err(Error::AccountExists);
        }
        tx.commit().await?;
        tracing::debug!(user_id = %user, "account created");
        Ok(account)
    }
}
