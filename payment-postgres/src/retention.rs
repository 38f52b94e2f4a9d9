//! Retention on PostgreSQL: old inbox rows, published outbox rows and idempotency keys are
//! deleted in chunks of `chunk_rows`, each chunk its own short statement, along an index.
//! Unpublished outbox rows, parked ones included, have no `published_at` and are never deleted.

use async_trait::async_trait;
use chrono::Utc;
use payment_core::ports::{Pruned, Retention, RetentionPolicy, StoreError};

use crate::error::store_error;
use crate::PgStore;

const PRUNE_INBOX: &str = "DELETE FROM inbox WHERE message_id IN
    (SELECT message_id FROM inbox WHERE claimed_at < $1 ORDER BY claimed_at LIMIT $2)";
const PRUNE_OUTBOX: &str = "DELETE FROM outbox WHERE id IN
    (SELECT id FROM outbox WHERE published_at < $1 ORDER BY published_at LIMIT $2)";
const PRUNE_KEYS: &str = "DELETE FROM idempotency_keys WHERE (user_id, key) IN
    (SELECT user_id, key FROM idempotency_keys WHERE created_at < $1 ORDER BY created_at LIMIT $2)";

impl PgStore {
    async fn prune_table(&self, statement: &str, age: std::time::Duration, chunk_rows: u32) -> Result<u64, StoreError> {
        let before = RetentionPolicy::cutoff(Utc::now(), age);
        let chunk = i64::from(chunk_rows.max(1));
        let mut total = 0;
        loop {
            let deleted = sqlx::query(statement)
                .bind(before)
                .bind(chunk)
                .execute(&self.pool)
                .await
                .map_err(store_error)?
                .rows_affected();
            total += deleted;
            if deleted < chunk as u64 {
                return Ok(total);
            }
        }
    }
}

#[async_trait]
impl Retention for PgStore {
    async fn prune(&self, policy: RetentionPolicy) -> Result<Pruned, StoreError> {
        let pruned = Pruned {
            inbox_rows: self.prune_table(PRUNE_INBOX, policy.inbox_max_age, policy.chunk_rows).await?,
            outbox_rows: self.prune_table(PRUNE_OUTBOX, policy.published_outbox_max_age, policy.chunk_rows).await?,
            idempotency_rows: self.prune_table(PRUNE_KEYS, policy.idempotency_max_age, policy.chunk_rows).await?,
        };
        tracing::info!(?pruned, "retention pass done");
        Ok(pruned)
    }
}
