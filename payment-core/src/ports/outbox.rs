//! The outbox port: what a publisher needs to move committed events to the broker — read them
//! in order, mark them published, park the ones the broker refuses for good, be the only active
//! publisher, and wake up on new rows.
//!
//! # Parked rows
//!
//! A row the broker will never accept as it is (a payload over the size limit, a topic that does
//! not exist or may not be written, an invalid record) is *parked*: it keeps its place in the
//! table with the time and the broker's error, and is no longer read, counted in the backlog, or
//! pruned. Without parking such a row would be retried forever and hold back every row behind it.
//!
//! Only a row whose bytes the broker refuses is parked: an outage of the destination (a topic
//! missing for a while, an authorisation withdrawn during a credential rotation) holds the rows
//! back and is retried, so it parks nothing. A parked row comes back when an operator re-queues
//! it ([`Outbox::requeue`], the `payment-service outbox requeue [--since TIME]` command), once its
//! cause is fixed (a topic's `max.message.bytes` raised, say); the publisher then sends it like
//! any other unpublished row. `payment-service outbox parked` lists them ([`Outbox::parked_rows`]).
//!
//! A re-queued row is published after the rows committed since it was parked, so its events may
//! reach consumers out of their commit order; they dedupe by `event_id` and should expect it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::domain::OutboxEvent;

/// A committed outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    /// Increases with every row a store writes; rows are published in this order.
    pub id: i64,
    /// The record to publish.
    pub event: OutboxEvent,
    /// When the row was committed.
    pub created_at: DateTime<Utc>,
}

/// A parked row, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedRecord {
    /// The row's id (its place in the publishing order).
    pub id: i64,
    /// The record the broker refused.
    pub event: OutboxEvent,
    /// When the row was committed.
    pub created_at: DateTime<Utc>,
    /// When the publisher parked it.
    pub parked_at: DateTime<Utc>,
    /// The broker's error.
    pub error: String,
}

/// Largest number of rows one read of the outbox returns.
pub const MAX_OUTBOX_BATCH_ROWS: u32 = 10_000;

/// The outbox of a store, as the publisher sees it: committed rows only, in id order.
#[async_trait]
pub trait Outbox: Clone + Send + Sync + 'static {
    /// The proof of being the active publisher; see [`Outbox::try_lead`].
    type Leader: Leadership;
    /// The subscription [`Outbox::wakeups`] returns.
    type Wakeups: Wakeups;

    /// The oldest unpublished rows that are not parked, in id order, at most `limit` (capped at
    /// [`MAX_OUTBOX_BATCH_ROWS`]).
    async fn unpublished(&self, limit: u32) -> Result<Vec<OutboxRecord>, StoreError>;

    /// Marks rows published; call only once the broker acknowledged them. Parked rows are left
    /// as they are.
    async fn mark_published(&self, ids: &[i64]) -> Result<(), StoreError>;

    /// Parks an unpublished row the broker refused for good: records now and `error`, and leaves
    /// it out of [`Outbox::unpublished`], [`Outbox::backlog`] and retention from then on. A
    /// published or unknown row is left as it is.
    async fn park(&self, id: i64, error: &str) -> Result<(), StoreError>;

    /// Rows parked and not re-queued, for the operator's gauge.
    async fn parked(&self) -> Result<u64, StoreError>;

    /// The oldest parked rows in id order, at most `limit` (capped at [`MAX_OUTBOX_BATCH_ROWS`]).
    async fn parked_rows(&self, limit: u32) -> Result<Vec<ParkedRecord>, StoreError>;

    /// Re-queues the parked rows (those parked at or after `parked_since`, when given): they are
    /// unpublished again and the publisher sends them. Returns how many.
    async fn requeue(&self, parked_since: Option<DateTime<Utc>>) -> Result<u64, StoreError>;

    /// When the oldest row waiting for the publisher (unpublished, not parked) was committed;
    /// `None` when none waits. Its age is the publishing delay an operator alerts on.
    async fn oldest_unpublished(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Tries to become the one active publisher of this store; `None` while another holds it.
    async fn try_lead(&self) -> Result<Option<Self::Leader>, StoreError>;

    /// Subscribes to commits that wrote outbox rows.
    async fn wakeups(&self) -> Result<Self::Wakeups, StoreError>;

    /// Rows not yet published and not parked, for metrics.
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
