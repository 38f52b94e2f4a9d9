//! The in-memory store: a real implementation of the ports, the embedded default, and the
//! reference the contract and property suites are first run against. Not durable.
//!
//! A unit of work holds the store's lock from `begin` to commit or rollback, so units of work are
//! serial — trivially atomic and isolated, and safe under any number of concurrent tasks. Writes
//! go straight to the data with an undo record each; rollback (or drop) plays them back.
//! To abort a transaction at a chosen step in tests, wrap the store in
//! `testing::faults::FaultyStore` (feature `testing`).

mod outbox;
mod state;
mod tx;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{watch, Mutex};

pub use outbox::{MemoryLeader, MemoryWakeups};
pub use tx::MemoryTx;

use crate::domain::{Account, StatementEntry, StatementPage, UserId};
use crate::ports::{Store, StoreError};
pub(crate) use state::State;

/// The in-memory store. Clones share the same data.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    pub(crate) state: Arc<Mutex<State>>,
    /// Counts commits that wrote outbox rows; publishers watch it.
    pub(crate) commits: Arc<watch::Sender<u64>>,
    leader: outbox::LeaderLock,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self { state: Arc::default(), commits: Arc::new(watch::Sender::new(0)), leader: Arc::default() }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Store for MemoryStore {
    type Tx = MemoryTx;

    async fn begin(&self) -> Result<MemoryTx, StoreError> {
        Ok(MemoryTx::new(self.state.clone().lock_owned().await, self.commits.clone()))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn accounts(&self, users: &[UserId]) -> Result<Vec<Option<Account>>, StoreError> {
        let state = self.state.lock().await;
        Ok(users.iter().map(|user| state.accounts.get(user).cloned()).collect())
    }

    async fn statement(&self, user: &UserId, page: StatementPage) -> Result<Vec<StatementEntry>, StoreError> {
        let state = self.state.lock().await;
        let Some(entries) = state.ledger.get(user) else { return Ok(Vec::new()) };
        let end = match page.before {
            Some(before) => entries.partition_point(|e| e.position < before),
            None => entries.len(),
        };
        Ok(entries[..end].iter().rev().take(usize::from(page.limit())).cloned().collect())
    }
}
