//! Counters the consumer exposes about its own life, so operators and tests can see stalls,
//! client replacements, rebalances and closes that overran their bound — the failures that only
//! show under real conditions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::unreadable::StuckPartition;

/// A cheap, cloneable view of one consumer's counters. All counts start at zero and only grow.
#[derive(Debug, Clone, Default)]
pub struct ConsumerHealth(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    applied_messages: AtomicU64,
    messages: AtomicU64,
    rebalances: AtomicU64,
    stalls: AtomicU64,
    client_replacements: AtomicU64,
    closes_over_bound: AtomicU64,
    unreadable_record_errors: AtomicU64,
    applying: AtomicU64,
    most_applying: AtomicU64,
    stuck: Mutex<Vec<StuckPartition>>,
}

impl ConsumerHealth {
    /// Batches committed in the store.
    pub fn batches(&self) -> u64 {
        self.0.batches.load(Ordering::Relaxed)
    }

    /// Messages in committed batches (redeliveries included: applying one is a no-op).
    pub fn applied_messages(&self) -> u64 {
        self.0.applied_messages.load(Ordering::Relaxed)
    }

    /// Messages received from the broker (redeliveries included).
    pub fn messages(&self) -> u64 {
        self.0.messages.load(Ordering::Relaxed)
    }

    /// Partition assignments and revocations this member went through.
    pub fn rebalances(&self) -> u64 {
        self.0.rebalances.load(Ordering::Relaxed)
    }

    /// Times messages waited on the broker past this member's position while none arrived for
    /// the stall timeout.
    pub fn stalls(&self) -> u64 {
        self.0.stalls.load(Ordering::Relaxed)
    }

    /// Kafka clients replaced after a stall.
    pub fn client_replacements(&self) -> u64 {
        self.0.client_replacements.load(Ordering::Relaxed)
    }

    /// Client closes that did not finish within the close bound and were left behind.
    pub fn closes_over_bound(&self) -> u64 {
        self.0.closes_over_bound.load(Ordering::Relaxed)
    }

    /// Batches being applied right now (at most `max_batches_in_flight`).
    pub fn batches_applying(&self) -> u64 {
        self.0.applying.load(Ordering::Relaxed)
    }

    /// The most batches ever applied at the same time: shows whether lanes ran side by side.
    pub fn most_batches_applying(&self) -> u64 {
        self.0.most_applying.load(Ordering::Relaxed)
    }

    /// Consumer errors that said a record cannot be read (each repeat counts).
    pub fn unreadable_record_errors(&self) -> u64 {
        self.0.unreadable_record_errors.load(Ordering::Relaxed)
    }

    /// Partitions stuck on a record the client cannot read, with the offset of that record; empty
    /// when every partition moves (see the consumer's docs on unreadable records).
    pub fn stuck_partitions(&self) -> Vec<StuckPartition> {
        match self.0.stuck.lock() {
            Ok(stuck) => stuck.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(crate) fn unreadable_record_error(&self) {
        self.0.unreadable_record_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_stuck(&self, stuck: Vec<StuckPartition>) {
        match self.0.stuck.lock() {
            Ok(mut slot) => *slot = stuck,
            Err(poisoned) => *poisoned.into_inner() = stuck,
        }
    }

    /// A lane starts applying a batch; the returned guard says when it stops (committed,
    /// abandoned at shutdown or dropped alike).
    pub(crate) fn applying(&self) -> Applying {
        let now = self.0.applying.fetch_add(1, Ordering::Relaxed) + 1;
        self.0.most_applying.fetch_max(now, Ordering::Relaxed);
        Applying(self.clone())
    }

    pub(crate) fn batch_committed(&self, messages: usize) {
        self.0.batches.fetch_add(1, Ordering::Relaxed);
        self.0.applied_messages.fetch_add(messages as u64, Ordering::Relaxed);
    }

    pub(crate) fn message_received(&self) {
        self.0.messages.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rebalanced(&self) {
        self.0.rebalances.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stalled(&self) {
        self.0.stalls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn client_replaced(&self) {
        self.0.client_replacements.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn close_overran(&self) {
        self.0.closes_over_bound.fetch_add(1, Ordering::Relaxed);
    }
}

/// One batch being applied, counted in [`ConsumerHealth::batches_applying`] while it lives.
pub(crate) struct Applying(ConsumerHealth);

impl Drop for Applying {
    fn drop(&mut self) {
        self.0 .0.applying.fetch_sub(1, Ordering::Relaxed);
    }
}
