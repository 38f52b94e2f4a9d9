//! Which acknowledged offsets the fetch thread may store: only forward, only for the client and
//! the assignment that fetched them (issue 18 (4)).
//!
//! An acknowledgement arrives a batch's apply time after its messages were fetched. Meanwhile:
//!
//! - the partitions may have been revoked and assigned again (to this member or another): the
//!   partition restarted from its committed offset, and storing the late batch's offset could
//!   move it backwards, below what the new assignment already stored. So a batch fetched before
//!   the last rebalance stores nothing; its partitions re-read it, and the inbox makes that a
//!   redelivery;
//! - the client may have been replaced (a stall): the old client's batches still come back from
//!   the applier, but they are not the new client's. They are neither stored on it nor counted
//!   against its batches in flight, which would make it think the applier free, or a later
//!   settle finish before its own batches committed.
//!
//! Within one assignment a partition is pinned to one lane, which acknowledges its batches in
//! order, so a partition's offsets only grow (lanes running side by side hold other partitions);
//! the tracker still refuses an offset at or below one already stored, so no interleaving it did
//! not foresee can lower a partition's position.

use std::collections::BTreeMap;

/// The last offset received per (topic, partition) in a batch.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// When a batch's first message was fetched: by which client, after how many rebalances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Epoch {
    /// Counts the clients the fetch thread created.
    pub client: u64,
    /// The consumer's rebalance count then.
    pub rebalances: u64,
}

/// A batch the applier committed: its epoch, offsets and lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub epoch: Epoch,
    pub offsets: Offsets,
    pub lane: usize,
}

/// What to do with one acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// It is one of this client's batches in flight.
    pub counted: bool,
    /// The offsets to store (each the next offset to read minus one, as received).
    pub store: Vec<((String, i32), i64)>,
}

/// The offsets one client stored in its current assignment.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    client: u64,
    rebalances: u64,
    stored: Offsets,
}

impl OffsetTracker {
    /// For client number `client`.
    pub fn new(client: u64) -> Self {
        Self { client, rebalances: 0, stored: Offsets::new() }
    }

    /// Judges `ack`, received when the consumer had seen `rebalances` rebalances.
    pub fn accept(&mut self, ack: &Ack, rebalances: u64) -> Verdict {
        if ack.epoch.client != self.client {
            return Verdict { counted: false, store: Vec::new() };
        }
        if rebalances != self.rebalances {
            // A new assignment: what the last one stored says nothing about this one.
            self.rebalances = rebalances;
            self.stored.clear();
        }
        if ack.epoch.rebalances != rebalances {
            return Verdict { counted: true, store: Vec::new() };
        }
        let mut store = Vec::new();
        for (partition, offset) in &ack.offsets {
            match self.stored.get(partition) {
                Some(stored) if stored >= offset => {}
                _ => {
                    self.stored.insert(partition.clone(), *offset);
                    store.push((partition.clone(), *offset));
                }
            }
        }
        Verdict { counted: true, store }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(client: u64, rebalances: u64, offsets: &[(i32, i64)]) -> Ack {
        Ack {
            epoch: Epoch { client, rebalances },
            lane: 0,
            offsets: offsets.iter().map(|(p, o)| (("pay.order".to_string(), *p), *o)).collect(),
        }
    }

    fn stored(verdict: &Verdict) -> Vec<(i32, i64)> {
        verdict.store.iter().map(|((_, p), o)| (*p, *o)).collect()
    }

    #[test]
    fn a_batch_of_the_current_assignment_stores_its_offsets_forward_only() {
        let mut tracker = OffsetTracker::new(1);
        let first = tracker.accept(&ack(1, 2, &[(0, 10), (1, 5)]), 2);
        assert_eq!((first.counted, stored(&first)), (true, vec![(0, 10), (1, 5)]));
        let behind = tracker.accept(&ack(1, 2, &[(0, 7), (1, 9)]), 2);
        assert_eq!((behind.counted, stored(&behind)), (true, vec![(1, 9)]), "partition 0 does not go back");
    }

    #[test]
    fn a_batch_fetched_before_the_partition_left_and_came_back_stores_nothing() {
        let mut tracker = OffsetTracker::new(1);
        assert_eq!(stored(&tracker.accept(&ack(1, 2, &[(0, 10)]), 2)), [(0, 10)]);
        // Partition 0 revoked and assigned again (two rebalances) while a batch read up to 30
        // under the old assignment was applied; the new assignment stored 40 meanwhile ...
        assert_eq!(stored(&tracker.accept(&ack(1, 4, &[(0, 40)]), 4)), [(0, 40)]);
        // ... and the old batch's late acknowledgement must not take it back to 30.
        let late = tracker.accept(&ack(1, 2, &[(0, 30)]), 4);
        assert_eq!((late.counted, stored(&late)), (true, vec![]));
        // Even as the first acknowledgement after the rebalance.
        let mut fresh = OffsetTracker::new(1);
        let late = fresh.accept(&ack(1, 2, &[(0, 30)]), 4);
        assert_eq!((late.counted, stored(&late)), (true, vec![]));
    }

    #[test]
    fn a_replaced_clients_batch_is_neither_counted_nor_stored() {
        let mut tracker = OffsetTracker::new(2);
        let old = tracker.accept(&ack(1, 3, &[(0, 10)]), 3);
        assert_eq!((old.counted, stored(&old)), (false, vec![]));
        let own = tracker.accept(&ack(2, 3, &[(0, 12)]), 3);
        assert_eq!((own.counted, stored(&own)), (true, vec![(0, 12)]));
    }
}
