//! The outbox port: what a publisher needs to move committed events to the broker — read them
//! in order, mark them published, be the only active publisher, and wake up on new rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::OutboxEvent;

/// A committed outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Increases with every row a store writes; rows are published in this order.
    pub id: i64,
    pub event: OutboxEvent,
    pub created_at: DateTime<Utc>,
}

/// Largest number of rows one read of the outbox returns.
pub const MAX_OUTBOX_BATCH_ROWS: u32 = 10_000;

#[async_trait]
pub trait Outbox: Clone + Send + Sync + 'static {
    type Leader: Leadership;
    type Wakeups: Wakeups;

    /// The oldest unpublished rows, in id order, at most `limit` (capped at
    /// [`MAX_OUTBOX_BATCH_ROWS`]).
    async fn unpublished(&self, limit: u32) -> Result<Vec<OutboxRecord>, StoreError>;

    /// Marks rows published; call only once the broker acknowledged them.
    async fn mark_published(&self, ids: &[i64]) -> Result<(), StoreError>;

    /// Tries to become the one active publisher of this store; `None` while another holds it.
    async fn try_lead(&self) -> Result<Option<Self::Leader>, StoreError>;

    /// Subscribes to commits that wrote outbox rows.
    async fn wakeups(&self) -> Result<Self::Wakeups, StoreError>;

    /// Rows not yet published, for metrics.
    async fn backlog(&self) -> Result<u64, StoreError>;
}

/// Held by the active publisher; dropping it lets another take over.
#[async_trait]
pub trait Leadership: Send {
    /// Whether this publisher still leads (it stops when e.g. the lock's connection died).
    async fn still_leading(&mut self) -> bool;
}

/// Notifications of new outbox rows. They are hints: a publisher also polls, slowly.
#[async_trait]
pub trait Wakeups: Send {
    /// Waits until a commit wrote outbox rows after the previous call.
    async fn next(&mut self) -> Result<(), StoreError>;
}
