//! An [`Account`]: one per user, holding one [`Balance`].

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Balance, UserId};

/// A user's account. Its balance only changes through a ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// The owner; one account per user.
    pub user_id: UserId,
    /// The current balance, never negative.
    pub balance: Balance,
    /// When the account was opened.
    pub created_at: DateTime<Utc>,
}

impl Account {
    /// A new, empty account.
    pub fn open(user_id: UserId, now: DateTime<Utc>) -> Self {
        Self { user_id, balance: Balance::ZERO, created_at: now }
    }
}
