//! The retention port: removing what exactly-once no longer needs, in bounded chunks.

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;

/// How long rows are kept. Inbox rows must outlive any redelivery (Kafka retention of `pay.order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub inbox_max_age: Duration,
    pub published_outbox_max_age: Duration,
    /// Idempotency keys are kept at least 24 h (SPEC §3).
    pub idempotency_max_age: Duration,
    /// Rows deleted per statement, so pruning never holds long locks.
    pub chunk_rows: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        const DAY: Duration = Duration::from_secs(24 * 60 * 60);
        Self {
            inbox_max_age: 14 * DAY,
            published_outbox_max_age: 7 * DAY,
            idempotency_max_age: 2 * DAY,
            chunk_rows: 5_000,
        }
    }
}

/// Rows removed by one pruning run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub inbox_rows: u64,
    pub outbox_rows: u64,
    pub idempotency_rows: u64,
}

#[async_trait]
pub trait Retention: Send + Sync {
    /// Deletes rows older than the policy's ages, chunk by chunk, until none is left.
    async fn prune(&self, policy: RetentionPolicy) -> Result<Pruned, StoreError>;
}
