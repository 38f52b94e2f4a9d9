//! Metric names, in one place so dashboards and code agree.

pub const BATCHES: &str = "payment_consumer_batches_total";
pub const BATCH_MESSAGES: &str = "payment_consumer_batch_messages";
pub const BATCH_COMMIT_SECONDS: &str = "payment_consumer_batch_commit_seconds";
pub const BATCH_FAILURES: &str = "payment_consumer_batch_failures_total";
pub const COMMANDS: &str = "payment_commands_total";
pub const DEAD_LETTERS: &str = "payment_dead_letters_total";
pub const CONSUMER_LAG: &str = "payment_consumer_lag_messages";
pub const OUTBOX_PUBLISHED: &str = "payment_outbox_published_total";
pub const OUTBOX_PUBLISH_FAILURES: &str = "payment_outbox_publish_failures_total";
pub const OUTBOX_BACKLOG: &str = "payment_outbox_backlog_rows";
/// Rows the broker refused for good, waiting for an operator to re-queue them.
pub const OUTBOX_PARKED: &str = "payment_outbox_parked_rows";
pub const OUTBOX_PUBLISH_LAG_SECONDS: &str = "payment_outbox_publish_lag_seconds";
pub const PUBLISHER_LEADING: &str = "payment_outbox_publisher_leading";
/// Producers rebuilt after a fatal error (e.g. the idempotent producer's state was lost).
pub const PUBLISHER_PRODUCER_REBUILDS: &str = "payment_outbox_producer_rebuilds_total";
/// Times a leader released the lock after publishing nothing for `leader_give_up_after`.
pub const PUBLISHER_GAVE_UP: &str = "payment_outbox_publisher_gave_up_total";
