//! The consumer's librdkafka context: rebalances and commits in the logs, consumer lag from the
//! client statistics in the metrics.

use rdkafka::consumer::{ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use std::sync::atomic::{AtomicI64, Ordering};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::telemetry;

#[derive(Default)]
pub struct PayOrderContext {
    /// Messages on the broker past the stored offsets of this member's partitions, from the
    /// latest statistics.
    unconsumed: AtomicI64,
}

impl PayOrderContext {
    pub fn unconsumed_messages(&self) -> i64 {
        self.unconsumed.load(Ordering::Relaxed)
    }
}

impl ClientContext for PayOrderContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(facility, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(facility, "librdkafka: {message}"),
            RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut unconsumed = 0;
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                // librdkafka reports -1 for partitions this member does not consume.
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    metrics::gauge!(telemetry::CONSUMER_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(stats.consumer_lag as f64);
                }
                // Past what this member stored (or, before its first batch, the log start).
                if *partition >= 0 && stats.desired && stats.hi_offset >= 0 {
                    let from = if stats.stored_offset >= 0 { stats.stored_offset } else { stats.lo_offset.max(0) };
                    unconsumed += (stats.hi_offset - from).max(0);
                }
            }
        }
        self.unconsumed.store(unconsumed, Ordering::Relaxed);
    }
}

impl ConsumerContext for PayOrderContext {
    fn pre_rebalance(&self, rebalance: &Rebalance<'_>) {
        tracing::info!(?rebalance, "partitions rebalancing; offsets are only ever stored after a batch commits");
    }

    fn post_rebalance(&self, rebalance: &Rebalance<'_>) {
        tracing::info!(?rebalance, "partitions rebalanced");
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(?offsets, "offsets committed"),
            Err(error) => {
                tracing::warn!(%error, "offset commit failed; the batch will be redelivered and deduplicated")
            }
        }
    }
}
