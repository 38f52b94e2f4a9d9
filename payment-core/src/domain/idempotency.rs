//! Idempotent deposits: the first response to a key is stored with the deposit and replayed.

use chrono::{DateTime, Utc};

use super::{Amount, Balance, IdempotencyKey, UserId};

/// A deposit made under an `Idempotency-Key`: what was asked and what was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Keys are per user: another user's identical key is another record.
    pub user_id: UserId,
    /// The `Idempotency-Key` of the request.
    pub key: IdempotencyKey,
    /// The request, to tell a retry (same amount) from a reuse of the key (another amount).
    pub amount: Amount,
    /// The balance answered the first time.
    pub balance: Balance,
    /// When the deposit was made; retention removes the record after its age.
    pub created_at: DateTime<Utc>,
}
