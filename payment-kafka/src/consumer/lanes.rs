//! Lanes: how the fetch thread spreads partitions over the batches applied side by side (issue 20).
//!
//! The consumer applies up to `max_batches_in_flight` batches at once, one per lane. Every
//! (topic, partition) is pinned to one lane, and a lane hands its next batch over only once the
//! applier of that lane is ready for it, so:
//!
//! - a partition's commands are applied in the order received, and its batches are acknowledged
//!   in order — the forward-only offset tracking of `offsets.rs` needs nothing more;
//! - two batches applied at once never hold the same partition, hence never the same message.
//!   They may hold the same account or order (keyed by order id, one user's orders are spread
//!   over partitions): the store locks accounts in user-id order, so they wait for each other
//!   without a deadlock cycle, and a race on the same inserted row (the inbox, a payment) ends in
//!   a unique violation or a serialization failure, which the store classes as a conflict and
//!   `Payments::pay_orders` retries — never a refusal, so never a `store_rejected` dead letter.
//!
//! A new partition is pinned to the lane with the fewest partitions, so the lanes share the
//! partitions this member owns. Pins never move while anything is gathered or in flight (that
//! would let two lanes hold one partition); once every lane is idle after a rebalance they are
//! dropped, and the partitions of the new assignment are spread afresh.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::fetch::Batch;

/// The lanes of one client: what each gathers, when it may go, and how many of its batches the
/// applier holds.
#[derive(Debug)]
pub struct Lanes {
    gathering: Vec<Batch>,
    /// When the lane's gathered batch may go to its free applier (first message + linger).
    deadline: Vec<Option<Instant>>,
    /// Batches handed over and not yet acknowledged, per lane.
    in_flight: Vec<usize>,
    pinned: BTreeMap<(String, i32), usize>,
    /// The consumer's rebalance count when the pins were made.
    pinned_at: u64,
}

impl Lanes {
    /// `count` lanes (at least one).
    pub fn new(count: usize) -> Self {
        let count = count.max(1);
        Self {
            gathering: (0..count).map(|_| Batch::default()).collect(),
            deadline: vec![None; count],
            in_flight: vec![0; count],
            pinned: BTreeMap::new(),
            pinned_at: 0,
        }
    }

    pub fn count(&self) -> usize {
        self.gathering.len()
    }

    /// The lane of a partition, pinning it when new. `rebalances` is the consumer's rebalance
    /// count now: after a rebalance, once all lanes are idle, the old pins are dropped.
    pub fn lane_of(&mut self, topic: &str, partition: i32, rebalances: u64) -> usize {
        if rebalances != self.pinned_at && self.idle() {
            self.pinned.clear();
            self.pinned_at = rebalances;
        }
        if let Some(lane) = self.pinned.get(&(topic.to_string(), partition)) {
            return *lane;
        }
        let mut load = vec![0usize; self.count()];
        for lane in self.pinned.values() {
            load[*lane] += 1;
        }
        let lane = (0..self.count()).min_by_key(|lane| (load[*lane], *lane)).unwrap_or(0);
        self.pinned.insert((topic.to_string(), partition), lane);
        lane
    }

    /// The batch `lane` gathers; `linger` starts its deadline when it was empty.
    pub fn gather(&mut self, lane: usize, linger: Duration) -> &mut Batch {
        self.deadline[lane].get_or_insert_with(|| Instant::now() + linger);
        &mut self.gathering[lane]
    }

    /// Whether `lane` should hand its batch over now: it is full, or its applier is free, its
    /// linger has passed and `may_go_early` (every fetched message is in, or fetching is held up
    /// by a full lane, so waiting for more is pointless).
    pub fn ready(&self, lane: usize, batch_max: usize, may_go_early: bool, now: Instant) -> bool {
        let batch = &self.gathering[lane];
        let lingered = self.deadline[lane].is_some_and(|deadline| now >= deadline);
        batch.messages.len() >= batch_max || (self.in_flight[lane] == 0 && lingered && may_go_early)
    }

    /// Takes `lane`'s batch to hand over; [`handed_over`](Self::handed_over) or
    /// [`put_back`](Self::put_back) follows.
    pub fn take(&mut self, lane: usize) -> Batch {
        let mut batch = std::mem::take(&mut self.gathering[lane]);
        batch.lane = lane;
        batch
    }

    /// A batch taken from `lane` could not be handed over (its channel is taken): back it goes.
    pub fn put_back(&mut self, lane: usize, batch: Batch) {
        self.gathering[lane] = batch;
    }

    pub fn handed_over(&mut self, lane: usize) {
        self.deadline[lane] = None;
        self.in_flight[lane] += 1;
    }

    pub fn acknowledged(&mut self, lane: usize) {
        if let Some(in_flight) = self.in_flight.get_mut(lane) {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Whether a lane's gathered batch is full: fetching more could overflow it.
    pub fn any_full(&self, batch_max: usize) -> bool {
        self.gathering.iter().any(|batch| batch.messages.len() >= batch_max)
    }

    /// Batches handed over and not yet acknowledged, all lanes.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().sum()
    }

    /// Nothing gathered in any lane.
    pub fn nothing_gathered(&self) -> bool {
        self.gathering.iter().all(|batch| batch.messages.is_empty())
    }

    fn idle(&self) -> bool {
        self.in_flight() == 0 && self.nothing_gathered()
    }

    /// How long the next poll may wait: a lane gathering behind a busy applier polls in short
    /// slices, so its commit is seen at once; a free lane waits out its linger; with nothing
    /// gathered, `idle`.
    pub fn poll_timeout(&self, now: Instant, slice: Duration, idle: Duration) -> Duration {
        let mut timeout = idle;
        for lane in 0..self.count() {
            let Some(deadline) = self.deadline[lane] else { continue };
            let wait = if self.in_flight[lane] > 0 { slice } else { deadline.saturating_duration_since(now) };
            timeout = timeout.min(wait);
        }
        timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_spread_over_the_lanes_and_stay_pinned() {
        let mut lanes = Lanes::new(2);
        let first: Vec<usize> = (0..4).map(|p| lanes.lane_of("pay.order", p, 1)).collect();
        assert_eq!(first, [0, 1, 0, 1], "the fewest-loaded lane takes each new partition");
        assert_eq!(lanes.lane_of("refund.order", 0, 1), 0);
        let again: Vec<usize> = (0..4).map(|p| lanes.lane_of("pay.order", p, 1)).collect();
        assert_eq!(again, first, "a partition keeps its lane");
    }

    #[test]
    fn pins_move_after_a_rebalance_only_once_every_lane_is_idle() {
        let mut lanes = Lanes::new(2);
        assert_eq!(lanes.lane_of("pay.order", 0, 1), 0);
        assert_eq!(lanes.lane_of("pay.order", 1, 1), 1);
        lanes.gather(1, Duration::ZERO).messages.push(payment_core::testing::contract::pay("m", "o", "u", "1"));
        // Rebalanced while lane 1 gathers partition 1: nothing moves, a new partition goes to the
        // fewest-loaded lane.
        assert_eq!(lanes.lane_of("pay.order", 1, 2), 1);
        assert_eq!(lanes.lane_of("pay.order", 2, 2), 0);
        let batch = lanes.take(1);
        assert_eq!(batch.lane, 1);
        lanes.handed_over(1);
        assert_eq!(lanes.lane_of("pay.order", 3, 2), 1);
        lanes.acknowledged(1);
        // Idle now: the new assignment's partitions are spread afresh.
        assert_eq!(lanes.lane_of("pay.order", 3, 2), 0);
        assert_eq!(lanes.lane_of("pay.order", 1, 2), 1);
    }

    #[test]
    fn a_lane_goes_when_full_or_free_and_lingered() {
        let mut lanes = Lanes::new(2);
        lanes.gather(0, Duration::ZERO).messages.push(payment_core::testing::contract::pay("m0", "o", "u", "1"));
        let now = Instant::now();
        assert!(!lanes.ready(0, 2, false, now), "more may be fetched");
        assert!(lanes.ready(0, 2, true, now), "every fetched message is in");
        assert!(!lanes.ready(1, 2, true, now), "nothing gathered");
        lanes.handed_over(0);
        assert!(!lanes.ready(0, 2, true, now), "its applier is busy");
        lanes.gather(0, Duration::ZERO).messages.push(payment_core::testing::contract::pay("m1", "o", "u", "1"));
        assert!(lanes.ready(0, 2, false, now), "full");
        assert!(lanes.any_full(2));
        assert_eq!(
            lanes.poll_timeout(now, Duration::from_millis(1), Duration::from_millis(100)),
            Duration::from_millis(1)
        );
    }
}
