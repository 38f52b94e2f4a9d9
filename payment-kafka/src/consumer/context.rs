//! The consumer's librdkafka context: rebalances and commits in the logs and the health counters,
//! consumer lag from the client statistics in the metrics, and the stall watchdog's input.
//!
//! Every callback here runs on the fetch thread, inside `poll`: librdkafka serves them from the
//! consumer queue, which only that thread polls.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use super::health::ConsumerHealth;
use super::unreadable::{PartitionView, UnreadableRecords};
use crate::telemetry;

pub struct PayOrderContext {
    health: ConsumerHealth,
    /// Per partition led by a reachable broker, from the latest statistics: messages on the broker
    /// past what this member has received or the group has committed, whichever is later.
    waiting: Mutex<BTreeMap<(String, i32), i64>>,
    /// Which partitions are stuck on a record the client cannot read.
    unreadable: Mutex<UnreadableRecords>,
}

impl PayOrderContext {
    pub fn new(health: ConsumerHealth) -> Self {
        Self { health, waiting: Mutex::new(BTreeMap::new()), unreadable: Mutex::new(UnreadableRecords::default()) }
    }

    /// The fetch thread received an error saying a record cannot be read; the next statistics
    /// report tells which partition it stops.
    pub fn unreadable_record(&self, error: String) {
        self.health.unreadable_record_error();
        lock(&self.unreadable).error_seen(error);
    }

    /// Feeds one statistics report to the unreadable-record detector: logs, counts and shows in
    /// the health each partition newly stuck or moving again.
    fn detect_stuck(&self, views: BTreeMap<(String, i32), PartitionView>) {
        let mut unreadable = lock(&self.unreadable);
        let changes = unreadable.report(views);
        for stuck in &changes.stuck {
            let labels = [("topic", stuck.topic.clone()), ("partition", stuck.partition.to_string())];
            metrics::counter!(telemetry::UNREADABLE_RECORDS, &labels).increment(1);
            metrics::gauge!(telemetry::PARTITION_STUCK, &labels).set(1.0);
            metrics::gauge!(telemetry::PARTITION_STUCK_OFFSET, &labels).set(stuck.offset as f64);
            tracing::error!(
                topic = %stuck.topic,
                partition = stuck.partition,
                offset = stuck.offset,
                error = %stuck.error,
                "a record cannot be read: the partition is stuck at this offset, the service skips nothing by \
                 itself (docs/running.md, \"A partition stuck on an unreadable record\")"
            );
        }
        for resumed in &changes.resumed {
            let labels = [("topic", resumed.topic.clone()), ("partition", resumed.partition.to_string())];
            metrics::gauge!(telemetry::PARTITION_STUCK, &labels).set(0.0);
            tracing::info!(
                topic = %resumed.topic,
                partition = resumed.partition,
                offset = resumed.offset,
                "the partition is no longer stuck at this offset"
            );
        }
        if !changes.stuck.is_empty() || !changes.resumed.is_empty() {
            self.health.set_stuck(unreadable.stuck());
        }
    }

    /// Messages that wait on the broker for the given partitions and that this member has not
    /// received. Zero for an idle, caught-up partition, whether or not it consumed anything since
    /// it was assigned — so only a client that really holds back messages ever looks stalled.
    pub fn waiting_messages(&self, assigned: &TopicPartitionList) -> i64 {
        let waiting = match self.waiting.lock() {
            Ok(waiting) => waiting,
            Err(poisoned) => poisoned.into_inner(),
        };
        assigned.elements().iter().filter_map(|e| waiting.get(&(e.topic().to_string(), e.partition()))).sum()
    }
}

/// Past which offset a partition's messages count as not yet received by this member: the later
/// of its position and the group's committed offset. `None` while neither is known — just after
/// an assignment, before the committed offset is fetched — since nothing can be said of it yet
/// (counting from the log start then made an idle member look stalled). A position left over
/// from an earlier assignment of the partition is behind the committed offset, hence the later.
fn received_up_to(stats: &rdkafka::statistics::Partition) -> Option<i64> {
    [stats.app_offset, stats.committed_offset].into_iter().filter(|offset| *offset >= 0).max()
}

impl ClientContext for PayOrderContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        crate::librdkafka_log::forward(level, facility, message);
    }

    fn stats(&self, statistics: Statistics) {
        let mut waiting = BTreeMap::new();
        let mut views = BTreeMap::new();
        // A partition whose broker is down is not stalled: nothing can arrive until it is back.
        let up: Vec<i32> =
            statistics.brokers.values().filter(|b| b.state == "UP" && b.nodeid >= 0).map(|b| b.nodeid).collect();
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                // Partition -1 is librdkafka's internal UA partition; lag -1 means "not ours".
                if *partition < 0 {
                    continue;
                }
                if stats.consumer_lag >= 0 {
                    metrics::gauge!(telemetry::CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(stats.consumer_lag as f64);
                }
                if stats.desired {
                    let view = PartitionView {
                        fetch_position: stats.next_offset,
                        high_watermark: stats.hi_offset,
                        buffered: stats.fetchq_cnt,
                    };
                    views.insert((topic.clone(), *partition), view);
                }
                // A partition stuck on an unreadable record is not a stalled client: replacing the
                // client would stop at the same record again.
                if lock(&self.unreadable).is_stuck(topic, *partition) {
                    continue;
                }
                if let Some(received) = received_up_to(stats).filter(|_| up.contains(&stats.broker)) {
                    waiting.insert((topic.clone(), *partition), (stats.hi_offset - received).max(0));
                }
            }
        }
        self.detect_stuck(views);
        match self.waiting.lock() {
            Ok(mut slot) => *slot = waiting,
            Err(poisoned) => *poisoned.into_inner() = waiting,
        }
    }
}

impl ConsumerContext for PayOrderContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (change, partitions) = describe(rebalance);
        tracing::info!(change, %partitions, "partitions rebalancing; offsets are only ever stored after a batch commits");
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.health.rebalanced();
        let (change, partitions) = describe(rebalance);
        tracing::info!(change, %partitions, "partitions rebalanced");
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(?offsets, "offsets committed"),
            // Nothing stored since the last commit: not an error.
            Err(rdkafka::error::KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                tracing::warn!(%error, "offset commit failed; the batch will be redelivered and deduplicated")
            }
        }
    }
}

/// A rebalance for a log line: `assign`, `revoke` or `error`, and its partitions per topic
/// (`pay.order[0,1,2,3] refund.order[0,1]`) rather than the list's `Debug` (a line per partition
/// of offsets and metadata nobody set).
fn describe(rebalance: &Rebalance<'_>) -> (&'static str, String) {
    let (change, list) = match rebalance {
        Rebalance::Assign(list) => ("assign", *list),
        Rebalance::Revoke(list) => ("revoke", *list),
        Rebalance::Error(error) => return ("error", error.to_string()),
    };
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for element in list.elements() {
        topics.entry(element.topic().to_string()).or_default().push(element.partition());
    }
    let partitions = topics
        .into_iter()
        .map(|(topic, partitions)| {
            let numbers: Vec<String> = partitions.iter().map(i32::to_string).collect();
            format!("{topic}[{}]", numbers.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ");
    (change, partitions)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebalance_is_logged_as_its_partitions_per_topic() {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in [("refund.order", 1), ("pay.order", 2), ("pay.order", 0), ("refund.order", 0)] {
            list.add_partition(topic, partition);
        }
        assert_eq!(describe(&Rebalance::Assign(&list)), ("assign", "pay.order[2,0] refund.order[1,0]".to_string()));
        assert_eq!(describe(&Rebalance::Revoke(&TopicPartitionList::new())), ("revoke", String::new()));
    }
}
