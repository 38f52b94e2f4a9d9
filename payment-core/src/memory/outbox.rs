//! The outbox and retention ports on the in-memory store.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{watch, Mutex, OwnedMutexGuard};

use super::MemoryStore;
use crate::ports::{
    Leadership, Outbox, OutboxRecord, ParkedRecord, Pruned, Retention, RetentionPolicy, StoreError, Wakeups,
    MAX_OUTBOX_BATCH_ROWS,
};

/// The publisher lock of a memory store (one per store, shared by its clones).
pub type LeaderLock = Arc<Mutex<()>>;

/// Held by the active publisher of a memory store.
#[derive(Debug)]
pub struct MemoryLeader(#[allow(dead_code)] OwnedMutexGuard<()>);

#[async_trait]
impl Leadership for MemoryLeader {
    async fn still_leading(&mut self) -> bool {
        true
    }
}

/// Commit notifications of a memory store.
#[derive(Debug)]
pub struct MemoryWakeups(watch::Receiver<u64>);

#[async_trait]
impl Wakeups for MemoryWakeups {
    async fn next(&mut self) -> Result<(), StoreError> {
        self.0.changed().await.map_err(|_| StoreError::Unavailable("the memory store is gone".into()))
    }
}

fn cutoff(age: std::time::Duration) -> chrono::DateTime<Utc> {
    RetentionPolicy::cutoff(Utc::now(), age)
}

#[async_trait]
impl Outbox for MemoryStore {
    type Leader = MemoryLeader;
    type Wakeups = MemoryWakeups;

    async fn unpublished(&self, limit: u32) -> Result<Vec<OutboxRecord>, StoreError> {
        let state = self.state.lock().await;
        let limit = limit.min(MAX_OUTBOX_BATCH_ROWS) as usize;
        Ok(state
            .outbox
            .iter()
            .filter(|row| row.pending())
            .take(limit)
            .map(|row| OutboxRecord { id: row.id, event: row.event.clone(), created_at: row.created_at })
            .collect())
    }

    async fn mark_published(&self, ids: &[i64]) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let now = Utc::now();
        for row in state.outbox.iter_mut().filter(|row| row.parked.is_none() && ids.contains(&row.id)) {
            row.published_at.get_or_insert(now);
        }
        Ok(())
    }

    async fn park(&self, id: i64, error: &str) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        if let Some(row) = state.outbox.iter_mut().find(|row| row.id == id && row.published_at.is_none()) {
            row.parked = Some(error.to_string());
            row.parked_at = Some(Utc::now());
        }
        Ok(())
    }

    async fn parked(&self) -> Result<u64, StoreError> {
        let state = self.state.lock().await;
        Ok(state.outbox.iter().filter(|row| row.parked.is_some()).count() as u64)
    }

    async fn parked_rows(&self, limit: u32) -> Result<Vec<ParkedRecord>, StoreError> {
        let state = self.state.lock().await;
        let limit = limit.min(MAX_OUTBOX_BATCH_ROWS) as usize;
        Ok(state
            .outbox
            .iter()
            .filter_map(|row| {
                let (error, parked_at) = (row.parked.as_ref()?, row.parked_at?);
                Some(ParkedRecord {
                    id: row.id,
                    event: row.event.clone(),
                    created_at: row.created_at,
                    parked_at,
                    error: error.clone(),
                })
            })
            .take(limit)
            .collect())
    }

    async fn requeue(&self, parked_since: Option<DateTime<Utc>>) -> Result<u64, StoreError> {
        let mut state = self.state.lock().await;
        let mut requeued = 0;
        for row in state.outbox.iter_mut() {
            let since = parked_since.is_none_or(|since| row.parked_at.is_some_and(|at| at >= since));
            if row.parked.is_some() && since {
                row.parked = None;
                row.parked_at = None;
                requeued += 1;
            }
        }
        if requeued > 0 {
            // A publisher idling on notifications sees the rows without waiting for its poll.
            self.commits.send_modify(|commits| *commits += 1);
        }
        Ok(requeued)
    }

    async fn oldest_unpublished(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let state = self.state.lock().await;
        Ok(state.outbox.iter().find(|row| row.pending()).map(|row| row.created_at))
    }

    async fn try_lead(&self) -> Result<Option<MemoryLeader>, StoreError> {
        Ok(self.leader.clone().try_lock_owned().ok().map(MemoryLeader))
    }

    async fn wakeups(&self) -> Result<MemoryWakeups, StoreError> {
        Ok(MemoryWakeups(self.commits.subscribe()))
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        let state = self.state.lock().await;
        Ok(state.outbox.iter().filter(|row| row.pending()).count() as u64)
    }
}

#[async_trait]
impl Retention for MemoryStore {
    async fn prune(&self, policy: RetentionPolicy) -> Result<Pruned, StoreError> {
        let mut state = self.state.lock().await;
        let inbox_before = cutoff(policy.inbox_max_age);
        let outbox_before = cutoff(policy.published_outbox_max_age);
        let keys_before = cutoff(policy.idempotency_max_age);
        let sizes = (state.inbox.len(), state.outbox.len(), state.idempotency.len());
        state.inbox.retain(|_, row| row.claimed_at >= inbox_before);
        // Unpublished rows, parked ones included, have no `published_at` and are kept.
        state.outbox.retain(|row| row.published_at.is_none_or(|at| at >= outbox_before));
        state.idempotency.retain(|_, record| record.created_at >= keys_before);
        Ok(Pruned {
            inbox_rows: (sizes.0 - state.inbox.len()) as u64,
            outbox_rows: (sizes.1 - state.outbox.len()) as u64,
            idempotency_rows: (sizes.2 - state.idempotency.len()) as u64,
        })
    }
}
