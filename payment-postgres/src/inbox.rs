//! The operator's read of the inbox: whether a message identity is claimed. The consumer claims
//! identities inside a batch (`tx.rs`); `payment-service dead-letters resend` asks here first, so
//! that it does not re-send a command the inbox would drop as a redelivery.

use payment_core::domain::MessageId;
use payment_core::ports::StoreError;

use crate::error::store_error;
use crate::PgStore;

impl PgStore {
    /// Whether `identity` is claimed in the inbox (and not yet pruned by retention).
    pub async fn inbox_contains(&self, identity: &MessageId) -> Result<bool, StoreError> {
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM inbox WHERE message_id = $1)")
            .bind(identity.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)
    }
}
