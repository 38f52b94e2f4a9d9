//! Settings of the consumer and the publisher, with the defaults of SPEC §4 and §5.

use std::time::Duration;

use payment_core::domain::EventKind;
use rdkafka::ClientConfig;

use crate::KafkaError;

/// Topic names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// The commands the consumer reads (`pay.order`).
    pub pay_order: String,
    /// Where `order.paid` events go.
    pub order_paid: String,
    /// Where `order.payment_failed` events go.
    pub order_payment_failed: String,
    /// Where dead letters go (`pay.order.dlq`), those of `refund.order` included.
    pub dead_letter: String,
    /// The refund commands the consumer also reads (`refund.order`).
    pub refund_order: String,
    /// Where `order.refunded` events go.
    pub order_refunded: String,
    /// Where `order.refund_failed` events go.
    pub order_refund_failed: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            pay_order: "pay.order".into(),
            order_paid: "order.paid".into(),
            order_payment_failed: "order.payment_failed".into(),
            dead_letter: "pay.order.dlq".into(),
            refund_order: "refund.order".into(),
            order_refunded: "order.refunded".into(),
            order_refund_failed: "order.refund_failed".into(),
        }
    }
}

impl Topics {
    /// Every topic the service reads or writes.
    pub fn all(&self) -> [&str; 7] {
        [
            &self.pay_order,
            &self.order_paid,
            &self.order_payment_failed,
            &self.dead_letter,
            &self.refund_order,
            &self.order_refunded,
            &self.order_refund_failed,
        ]
    }

    /// The command topics the consumer subscribes to.
    pub fn commands(&self) -> [&str; 2] {
        [&self.pay_order, &self.refund_order]
    }

    /// Where an outbox event goes.
    pub fn of(&self, kind: EventKind) -> &str {
        match kind {
            EventKind::OrderPaid => &self.order_paid,
            EventKind::OrderPaymentFailed => &self.order_payment_failed,
            EventKind::DeadLetter => &self.dead_letter,
            EventKind::OrderRefunded => &self.order_refunded,
            EventKind::OrderRefundFailed => &self.order_refund_failed,
        }
    }
}

/// librdkafka properties the exactly-once guarantees rest on, which `extra` may not override,
/// each with the reason.
pub const PROTECTED_PROPERTIES: [(&str, &str); 9] = [
    ("enable.auto.offset.store", "offsets are stored only after a batch commits in the database"),
    ("enable.auto.commit", "stored offsets are committed by librdkafka's auto-commit"),
    ("group.id", "the consumer group is set with the group-id setting"),
    ("group.instance.id", "static membership would keep a dead member's partitions for a session"),
    ("auto.offset.reset", "a new group must start at the earliest message, or commands are skipped"),
    ("isolation.level", "only committed records may be paid"),
    ("enable.idempotence", "the outbox publisher needs an idempotent producer for per-order order"),
    ("acks", "an outbox row is marked published only once every in-sync replica has it"),
    ("request.required.acks", "an outbox row is marked published only once every in-sync replica has it"),
];

/// Whether a librdkafka property's value may be a secret, by its name: `sasl.password`,
/// `ssl.key.password`, `ssl.key.pem`, `sasl.oauthbearer.client.secret`, `sasl.jaas.config`,
/// `sasl.oauthbearer.config`, a token... Such a value is redacted in every error and `Debug`.
/// Erring on the side of redaction is harmless (`ssl.key.location` is only a path).
pub fn is_sensitive_property(key: &str) -> bool {
    const MARKERS: [&str; 7] = ["password", "secret", "key", "jaas", "token", "oauthbearer.config", "credential"];
    let key = key.trim().to_ascii_lowercase();
    MARKERS.iter().any(|marker| key.contains(marker))
}

/// Connection settings shared by consumer and producer. `Debug` redacts the values of
/// [sensitive](is_sensitive_property) `extra` properties.
#[derive(Clone)]
pub struct KafkaConfig {
    /// The bootstrap servers, `host:port` separated by commas (`bootstrap.servers`).
    pub brokers: String,
    /// The topic names, the same for consumer, publisher and topic creation.
    pub topics: Topics,
    /// librdkafka properties passed through as they are (they override ours, except the
    /// [`PROTECTED_PROPERTIES`], which are refused).
    pub extra: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let extra: Vec<String> = self
            .extra
            .iter()
            .map(|(key, value)| match is_sensitive_property(key) {
                true => format!("{key}=[redacted]"),
                false => format!("{key}={value}"),
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("extra", &extra)
            .finish()
    }
}

impl KafkaConfig {
    /// The brokers with the default topic names and no extra properties.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self { brokers: brokers.into(), topics: Topics::default(), extra: Vec::new() }
    }

    /// Refuses an `extra` property that would override one of the [`PROTECTED_PROPERTIES`].
    pub fn check(&self) -> Result<(), KafkaError> {
        for (key, _) in &self.extra {
            let key = key.trim();
            if let Some((_, reason)) = PROTECTED_PROPERTIES.iter().find(|(protected, _)| *protected == key) {
                return Err(KafkaError::ProtectedProperty { key: key.to_string(), reason });
            }
        }
        Ok(())
    }

    pub(crate) fn client(&self, ours: &[(&str, String)]) -> Result<ClientConfig, KafkaError> {
        self.check()?;
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in ours {
            config.set(*key, value);
        }
        for (key, value) in &self.extra {
            config.set(key.trim(), value);
        }
        Ok(config)
    }
}

/// Default of [`ConsumerConfig::max_batches_in_flight`] (see `docs/scaling.md` for the
/// measurements it rests on).
pub const DEFAULT_MAX_BATCHES_IN_FLIGHT: usize = 2;

/// How the `pay.order` consumer batches and retries.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The consumer group (`group.id`); every instance of one service shares it.
    pub group_id: String,
    /// Most messages in one batch (one database transaction).
    pub batch_max_messages: usize,
    /// Most batches applied at once, each on its own database connection. Every (topic,
    /// partition) is pinned to one of this many lanes, which applies its batches one after the
    /// other, so a partition's commands stay in order and its offsets are stored in order; the
    /// lanes run side by side. 1 is the one-batch-at-a-time consumer. Keep the database pool
    /// above it (the publisher, deposits and reads need connections too). Zero counts as 1.
    pub max_batches_in_flight: usize,
    /// How long a batch waits for more messages after its first one while no other batch is
    /// being applied. Zero is group commit: a batch goes once every fetched message is in it, and
    /// batches grow with the load because the next one gathers while the previous one commits.
    /// A few milliseconds here buy fewer, larger transactions at moderate load for that much
    /// latency.
    pub batch_linger: Duration,
    /// First wait after a failed batch; doubled up to `retry_max_backoff`. A failed batch is
    /// retried until it commits or the consumer shuts down: no message is ever skipped.
    pub retry_first_backoff: Duration,
    /// Ceiling of the wait between retries of a failed batch or of creating the client.
    pub retry_max_backoff: Duration,
    /// `session.timeout.ms`: how long the group waits for a silent member before it rebalances its
    /// partitions to the others.
    pub session_timeout: Duration,
    /// How often librdkafka reports statistics (consumer lag, and the stall watchdog's input).
    pub statistics_interval: Duration,
    /// How long messages may wait on the broker past this member's position, with none arriving
    /// while it asks for them, before its client is replaced (see the consumer's docs).
    pub stall_timeout: Duration,
    /// Longest wait for a client to close (finish the batch in hand, commit, leave the group); past
    /// it the client is left behind and the caller goes on. Keep it above `session_timeout`: a
    /// member that leaves while the group is joining waits for that join round, which the
    /// coordinator bounds by the session timeout.
    pub close_timeout: Duration,
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch that finds no new message. A
    /// Kafka broker answers as soon as a message arrives, so this costs no latency there;
    /// librdkafka's mock cluster holds the fetch for the whole wait, so with it every message
    /// waits up to this long: keep it to a few milliseconds on the mock.
    pub fetch_wait_max: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            group_id: "payment-service".into(),
            batch_max_messages: 500,
            max_batches_in_flight: DEFAULT_MAX_BATCHES_IN_FLIGHT,
            batch_linger: Duration::ZERO,
            retry_first_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(10),
            session_timeout: Duration::from_secs(10),
            statistics_interval: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(12),
            fetch_wait_max: Duration::from_millis(500),
        }
    }
}

/// How the outbox publisher reads, produces and waits.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Most outbox rows produced per round.
    pub batch_rows: u32,
    /// Fallback poll when no `NOTIFY` arrives.
    pub poll_interval: Duration,
    /// How often a standby publisher tries to take the leader lock; also how long a leader that
    /// gave up waits before it tries again.
    pub leader_retry_interval: Duration,
    /// How long a leader may go without publishing or parking a single row, while rows wait,
    /// before it releases the leader lock so a standby (whose broker connection may be fine) can
    /// try.
    pub leader_give_up_after: Duration,
    /// How long a record may wait for the broker before its delivery counts as failed
    /// (`message.timeout.ms`; half of it is `topic.metadata.propagation.max.ms`, so a topic that
    /// does not exist is reported as unknown before its rows time out; both are retried).
    pub delivery_timeout: Duration,
    /// First wait after a failed round or an unreachable store; doubled up to `retry_max_backoff`.
    /// Unsettled rows are sent again, never skipped.
    pub retry_first_backoff: Duration,
    /// Ceiling of that wait.
    pub retry_max_backoff: Duration,
    /// How long the producer holds a record for others to share its request (`linger.ms`). A
    /// round enqueues all its rows at once, so they share requests anyway; every millisecond here
    /// is added to each event's latency.
    pub linger: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            batch_rows: 1_000,
            poll_interval: Duration::from_secs(1),
            leader_retry_interval: Duration::from_secs(2),
            leader_give_up_after: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(30),
            retry_first_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(10),
            linger: Duration::from_millis(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protected_property_is_refused_and_others_pass_through() {
        for (key, _) in PROTECTED_PROPERTIES {
            let mut config = KafkaConfig::new("localhost:9092");
            config.extra.push((format!(" {key}"), "x".into()));
            match config.client(&[]) {
                Err(KafkaError::ProtectedProperty { key: refused, .. }) => assert_eq!(refused, key),
                other => panic!("{key} was not refused: {:?}", other.map(|_| ())),
            }
        }
        let mut config = KafkaConfig::new("localhost:9092");
        config.extra.push(("security.protocol".into(), "SSL".into()));
        let client = config.client(&[("acks", "all".into())]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(client.get("security.protocol"), Some("SSL"));
        assert_eq!(client.get("acks"), Some("all"));
    }

    #[test]
    fn secret_properties_are_redacted_in_debug() {
        for key in ["sasl.password", "ssl.key.password", "sasl.jaas.config", "sasl.oauthbearer.client.secret"] {
            assert!(is_sensitive_property(key), "{key}");
            let mut config = KafkaConfig::new("localhost:9092");
            config.extra.push((key.into(), "hunter2".into()));
            config.extra.push(("sasl.username".into(), "shop".into()));
            let shown = format!("{config:?}");
            assert!(!shown.contains("hunter2") && shown.contains("sasl.username=shop"), "{shown}");
        }
        assert!(!is_sensitive_property("security.protocol"));
    }
}
