//! Metric names, in one place so dashboards and code agree.

/// Counter: `pay.order` batches committed.
pub const BATCHES: &str = "payment_consumer_batches_total";
/// Histogram: messages per committed batch.
pub const BATCH_MESSAGES: &str = "payment_consumer_batch_messages";
/// Histogram: seconds to apply and commit a batch (the attempt that committed).
pub const BATCH_COMMIT_SECONDS: &str = "payment_consumer_batch_commit_seconds";
/// Counter: batch attempts that did not commit and will be retried.
pub const BATCH_FAILURES: &str = "payment_consumer_batch_failures_total";
/// Counter: commands applied, labelled `outcome` (`paid`, `failed`, `already_paid`, `dead_lettered`, `redelivered`,
/// `refunded`, `refund_failed`, `already_refunded`).
pub const COMMANDS: &str = "payment_commands_total";
/// Counter: refunds credited (`order.refunded` first published for a refund id).
pub const REFUNDS: &str = "payment_refunds_total";
/// Counter: refund commands that failed, labelled `reason` (`order_not_paid`, `exceeds_refundable`, …).
pub const REFUND_FAILURES: &str = "payment_refund_failures_total";
/// Counter: messages dead-lettered, labelled `reason`.
pub const DEAD_LETTERS: &str = "payment_dead_letters_total";
/// Counter: consumer errors saying a record cannot be read (decompression, unknown codec, CRC);
/// librdkafka repeats one every fetch until the partition moves past the record.
pub const UNREADABLE_RECORD_ERRORS: &str = "payment_consumer_unreadable_record_errors_total";
/// Counter: times a partition was found stuck on a record it cannot read, labelled `topic` and
/// `partition` (once per stuck offset).
pub const UNREADABLE_RECORDS: &str = "payment_consumer_unreadable_records_total";
/// Gauge: 1 while a partition is stuck on a record it cannot read, else 0; labelled `topic` and
/// `partition`.
pub const PARTITION_STUCK: &str = "payment_consumer_partition_stuck";
/// Gauge: the offset a stuck partition cannot read past; labelled `topic` and `partition`.
pub const PARTITION_STUCK_OFFSET: &str = "payment_consumer_partition_stuck_offset";
/// Gauge: messages behind the end of each partition, labelled `topic` and `partition`, from librdkafka's statistics.
pub const CONSUMER_LAG: &str = "payment_consumer_lag_messages";
/// Counter: outbox rows acknowledged by the broker and marked published.
pub const OUTBOX_PUBLISHED: &str = "payment_outbox_published_total";
/// Counter: publishing rounds stopped by an error (the unsettled rows are sent again).
pub const OUTBOX_PUBLISH_FAILURES: &str = "payment_outbox_publish_failures_total";
/// Gauge: outbox rows waiting to be published, parked rows excluded.
pub const OUTBOX_BACKLOG: &str = "payment_outbox_backlog_rows";
/// Rows the broker refused for good, waiting for an operator to re-queue them.
pub const OUTBOX_PARKED: &str = "payment_outbox_parked_rows";
/// Histogram: seconds from an outbox row's commit to its acknowledgement by the broker.
pub const OUTBOX_PUBLISH_LAG_SECONDS: &str = "payment_outbox_publish_lag_seconds";
/// Gauge: 1 while this instance is the active publisher, else 0.
pub const PUBLISHER_LEADING: &str = "payment_outbox_publisher_leading";
/// Producers rebuilt after a fatal error (e.g. the idempotent producer's state was lost).
pub const PUBLISHER_PRODUCER_REBUILDS: &str = "payment_outbox_producer_rebuilds_total";
/// Times a leader released the lock after publishing nothing for `leader_give_up_after`.
pub const PUBLISHER_GAVE_UP: &str = "payment_outbox_publisher_gave_up_total";
/// Gauge: seconds since the oldest row still waiting for the publisher (not parked) was
/// committed; 0 when none waits. It grows through any outage of the broker or a destination.
pub const OUTBOX_OLDEST_UNPUBLISHED_SECONDS: &str = "payment_outbox_oldest_unpublished_seconds";
