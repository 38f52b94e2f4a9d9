//! `GetBalance` and the statement of account: committed reads. The account is read together
//! with the concurrent reads ([`account_reads`](super::account_reads)): one query for all.

use super::{Error, Payments};
use crate::domain::{Account, LedgerPosition, StatementEntry, StatementPage, UserId};
use crate::ports::Store;

/// One page of a statement, newest first; `next` is the cursor of the following page, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// At most the page's limit of entries, newest first.
    pub entries: Vec<StatementEntry>,
    /// The `before` cursor of the following page; `None` when this page was not full.
    pub next: Option<LedgerPosition>,
}

impl<S: Store> Payments<S> {
    /// The user's account and balance, as committed. Concurrent calls share one
    /// [`Store::accounts`] query; a store error fails every call of that query.
    pub async fn balance(&self, user: &UserId) -> Result<Account, Error> {
        self.reads.read(&self.store, user).await
    }

    /// A page of the user's statement.
    pub async fn statement(&self, user: &UserId, page: StatementPage) -> Result<Statement, Error> {
        // An unknown user is told so, rather than shown an empty statement.
        self.reads.read(&self.store, user).await?;
        let entries = self.store.statement(user, page).await?;
        let full = entries.len() == usize::from(page.limit());
        let next = entries.last().filter(|_| full).map(|entry| entry.position);
        Ok(Statement { entries, next })
    }
}
