//! The retention port: removing what exactly-once no longer needs, in bounded chunks.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// How long rows are kept. Inbox rows must outlive any redelivery (Kafka retention of `pay.order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Age after which a claimed message identity is forgotten; keep it above `pay.order`'s
    /// retention, or an old redelivery would be applied again.
    pub inbox_max_age: Duration,
    /// Age after which a published outbox row is deleted; unpublished and parked rows are kept.
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

impl RetentionPolicy {
    /// The instant before which rows of `max_age` are old, as seen at `now`. An age reaching
    /// past the calendar's start prunes nothing instead of overflowing.
    pub fn cutoff(now: DateTime<Utc>, max_age: Duration) -> DateTime<Utc> {
        chrono::Duration::from_std(max_age)
            .ok()
            .and_then(|age| now.checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// Rows removed by one pruning run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Claimed message identities removed.
    pub inbox_rows: u64,
    /// Published outbox rows removed.
    pub outbox_rows: u64,
    /// Idempotency records removed.
    pub idempotency_rows: u64,
}

/// Pruning of the rows exactly-once no longer needs.
#[async_trait]
pub trait Retention: Send + Sync {
    /// Deletes rows older than the policy's ages, chunk by chunk, until none is left.
    async fn prune(&self, policy: RetentionPolicy) -> Result<Pruned, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_past_the_calendar_prune_nothing_instead_of_panicking() {
        let now = Utc::now();
        assert_eq!(RetentionPolicy::cutoff(now, Duration::from_secs(60)), now - chrono::Duration::seconds(60));
        for age in [Duration::from_secs(10_000_000_000 * 3600), Duration::MAX] {
            assert_eq!(RetentionPolicy::cutoff(now, age), DateTime::<Utc>::MIN_UTC);
        }
    }
}
