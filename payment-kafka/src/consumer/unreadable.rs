//! Records the client cannot read: which partition they stop, and at which offset.
//!
//! # Why this is needed
//!
//! When librdkafka cannot decompress a record batch (a codec it was built without, or corrupt
//! bytes), it reports a consumer error and fetches the same offset again, for ever: the partition
//! stops at that record while every other partition goes on. A CRC failure (`check.crcs`) is
//! reported the same way. rust-rdkafka hands the error over as a bare code
//! (`KafkaError::MessageConsumption`), without the partition and offset librdkafka attached to it,
//! and that error repeats twice a second.
//!
//! # How the partition is found
//!
//! The statistics librdkafka emits every `statistics_interval` do name them: a partition that
//! cannot get past a record keeps its fetch position (`next_offset`) on that record while the
//! broker holds more (`hi_offset` above it) and nothing of it is buffered (`fetchq_cnt` 0, which
//! tells it from a partition that is only held back because the applier is busy). A partition in
//! that state, in an interval in which the client reported unreadable records, is stuck at its
//! fetch position. It is counted and logged once per offset, shown in [`ConsumerHealth`], and left
//! out of the stall watchdog, which would otherwise replace the client every `stall_timeout` for
//! nothing.
//!
//! # Why nothing is skipped
//!
//! The service does not step over such a record by itself. It cannot say what the record held:
//! a `pay.order` command that could not be decoded here is still a customer's order, and stepping
//! past it would drop it without an outcome. An operator who has looked at the record moves the
//! group's offset past it (`docs/running.md`, "A partition stuck on an unreadable record"); the
//! partition then resumes, and the stuck state clears by itself.
//!
//! [`ConsumerHealth`]: super::ConsumerHealth

use std::collections::BTreeMap;

use rdkafka::types::RDKafkaErrorCode;

/// A partition the client cannot read past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the first record that cannot be read (the client's fetch position).
    pub offset: i64,
    /// librdkafka's words for the last unreadable-record error seen, e.g. `Local: Bad compression`.
    pub error: String,
}

/// Whether a consumer error means "this record cannot be read" rather than trouble reaching the
/// broker, which librdkafka retries by itself and which moves on when the broker is back.
pub fn is_unreadable_record(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BadCompression
            | RDKafkaErrorCode::NotImplemented
            | RDKafkaErrorCode::BadMessage
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::UnsupportedCompressionType
    )
}

/// One partition as one statistics report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionView {
    /// `next_offset`: where the client fetches from.
    pub fetch_position: i64,
    /// `hi_offset`: the broker's end of the partition.
    pub high_watermark: i64,
    /// `fetchq_cnt`: messages fetched and not yet handed to the application.
    pub buffered: i64,
}

/// The detector's state, fed by the fetch thread (errors) and the statistics callback (views).
#[derive(Debug, Default)]
pub struct UnreadableRecords {
    /// The last unreadable-record error since the previous report, if any.
    error_since_report: Option<String>,
    previous: BTreeMap<(String, i32), PartitionView>,
    stuck: BTreeMap<(String, i32), StuckPartition>,
}

/// What changed at one statistics report, for logs and metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Partitions newly found stuck (or stuck at a new offset).
    pub stuck: Vec<StuckPartition>,
    /// Partitions that moved past the offset they were stuck at.
    pub resumed: Vec<StuckPartition>,
}

impl UnreadableRecords {
    /// The fetch thread saw an unreadable-record error.
    pub fn error_seen(&mut self, error: String) {
        self.error_since_report = Some(error);
    }

    /// One statistics report: the partitions this member is assigned, as the report shows them.
    pub fn report(&mut self, partitions: BTreeMap<(String, i32), PartitionView>) -> Changes {
        let error = self.error_since_report.take();
        let mut changes = Changes::default();
        for (key, view) in &partitions {
            let stalled_here = self.previous.get(key).is_some_and(|before| {
                before.fetch_position == view.fetch_position
                    && view.fetch_position >= 0
                    && view.high_watermark > view.fetch_position
                    && view.buffered == 0
            });
            // Only moving past the record clears it: an interval without an error report (a
            // longer fetch backoff) says nothing.
            if self.stuck.get(key).is_some_and(|stuck| view.fetch_position > stuck.offset) {
                if let Some(resumed) = self.stuck.remove(key) {
                    changes.resumed.push(resumed);
                }
            }
            if let (true, Some(error)) = (stalled_here, &error) {
                let already = self.stuck.get(key).is_some_and(|s| s.offset == view.fetch_position);
                if !already {
                    let stuck = StuckPartition {
                        topic: key.0.clone(),
                        partition: key.1,
                        offset: view.fetch_position,
                        error: error.clone(),
                    };
                    self.stuck.insert(key.clone(), stuck.clone());
                    changes.stuck.push(stuck);
                }
            }
        }
        // A partition no longer assigned is no longer ours to report.
        let gone: Vec<(String, i32)> =
            self.stuck.keys().filter(|key| !partitions.contains_key(*key)).cloned().collect();
        for key in gone {
            if let Some(left) = self.stuck.remove(&key) {
                changes.resumed.push(left);
            }
        }
        self.previous = partitions;
        changes
    }

    /// Whether `(topic, partition)` is stuck.
    pub fn is_stuck(&self, topic: &str, partition: i32) -> bool {
        self.stuck.contains_key(&(topic.to_string(), partition))
    }

    /// Every stuck partition.
    pub fn stuck(&self) -> Vec<StuckPartition> {
        self.stuck.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(fetch_position: i64, high_watermark: i64, buffered: i64) -> PartitionView {
        PartitionView { fetch_position, high_watermark, buffered }
    }

    fn one(partition: i32, view: PartitionView) -> BTreeMap<(String, i32), PartitionView> {
        BTreeMap::from([(("pay.order".to_string(), partition), view)])
    }

    #[test]
    fn a_partition_held_at_one_offset_while_records_fail_is_stuck_there() {
        let mut records = UnreadableRecords::default();
        assert_eq!(records.report(one(2, view(17, 19, 0))), Changes::default(), "one report says nothing yet");
        records.error_seen("Local: Bad compression".into());
        let changes = records.report(one(2, view(17, 19, 0)));
        assert_eq!(changes.stuck.len(), 1);
        assert_eq!((changes.stuck[0].partition, changes.stuck[0].offset), (2, 17));
        assert!(records.is_stuck("pay.order", 2));
        // Still failing: reported once, not at every report.
        records.error_seen("Local: Bad compression".into());
        assert_eq!(records.report(one(2, view(17, 20, 0))), Changes::default());
        // An operator moved the offset past it: resumed.
        let changes = records.report(one(2, view(18, 20, 0)));
        assert_eq!(changes.resumed.len(), 1);
        assert!(!records.is_stuck("pay.order", 2));
    }

    #[test]
    fn busy_idle_or_moving_partitions_are_not_stuck() {
        let mut records = UnreadableRecords::default();
        records.report(one(1, view(5, 9, 4)));
        records.error_seen("x".into());
        // Held back with messages buffered: the applier is busy, not a bad record.
        assert!(records.report(one(1, view(5, 9, 4))).stuck.is_empty());
        records.error_seen("x".into());
        // Caught up.
        assert!(records.report(one(1, view(9, 9, 0))).stuck.is_empty());
        records.error_seen("x".into());
        // Moving.
        assert!(records.report(one(1, view(12, 20, 0))).stuck.is_empty());
        // Held, but no unreadable record reported in the interval: the stall watchdog's case.
        assert!(records.report(one(1, view(12, 20, 0))).stuck.is_empty());
        assert!(records.stuck().is_empty());
    }

    #[test]
    fn a_revoked_partition_is_no_longer_reported() {
        let mut records = UnreadableRecords::default();
        records.report(one(0, view(3, 4, 0)));
        records.error_seen("x".into());
        assert_eq!(records.report(one(0, view(3, 4, 0))).stuck.len(), 1);
        assert_eq!(records.report(BTreeMap::new()).resumed.len(), 1);
        assert!(records.stuck().is_empty());
    }

    #[test]
    fn only_record_level_errors_count() {
        assert!(is_unreadable_record(RDKafkaErrorCode::BadCompression));
        assert!(is_unreadable_record(RDKafkaErrorCode::NotImplemented));
        assert!(!is_unreadable_record(RDKafkaErrorCode::BrokerTransportFailure));
        assert!(!is_unreadable_record(RDKafkaErrorCode::AllBrokersDown));
    }
}
