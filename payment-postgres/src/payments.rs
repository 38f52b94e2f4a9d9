//! The operator's read of the `payments` table: a user's latest successful payments, for
//! `payment-service account show`. Batches read payments by order id (`tx.rs`); this one reads by
//! user, newest first, and is bounded.

use payment_core::domain::{Payment, UserId};
use payment_core::ports::StoreError;

use crate::error::store_error;
use crate::rows::PaymentRow;
use crate::PgStore;

/// Most payments one [`PgStore::payments_of`] call returns.
pub const PAYMENTS_OF_USER_MAX: u32 = 500;

impl PgStore {
    /// `user`'s successful payments, newest first, at most `limit` (capped at
    /// [`PAYMENTS_OF_USER_MAX`]). There is no index on `payments (user_id)`: this scans the
    /// table, which suits an operator's occasional look, not a hot path.
    pub async fn payments_of(&self, user: &UserId, limit: u32) -> Result<Vec<Payment>, StoreError> {
        let limit = i64::from(limit.clamp(1, PAYMENTS_OF_USER_MAX));
        let rows = sqlx::query_as::<_, PaymentRow>(
            "SELECT order_id, user_id, amount, transaction_id, event_id, paid_at
             FROM payments WHERE user_id = $1 ORDER BY paid_at DESC, order_id LIMIT $2",
        )
        .bind(user.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(Payment::try_from).collect()
    }
}
