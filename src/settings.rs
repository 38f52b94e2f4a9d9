//! Every setting of the binary, as a CLI flag and an environment variable. Each is bounded, so
//! a value the service cannot honour is refused at start with the flag's name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use payment_core::ports::RetentionPolicy;
use payment_kafka::Topics;

use crate::commands::Command;
use crate::secrets::{self, RawKafkaProperty, Secret, SecretsError};

/// Longest retention accepted, in hours (ten years).
const MAX_RETENTION_HOURS: u64 = 10 * 365 * 24;

/// The payment service: HTTP accounts API, `pay.order` consumer, outbox publisher.
///
/// With no `DATABASE_URL` it runs on an in-memory store (not durable); with no `KAFKA_BROKERS`
/// it starts an in-process Kafka-protocol broker (librdkafka's mock cluster) and logs its address.
#[derive(Debug, Clone, Parser)]
#[command(name = "payment-service", version)]
pub struct Settings {
    /// Address the HTTP API listens on.
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// PostgreSQL URL; without it the store is in memory and lost at exit. TLS as libpq spells it:
    /// `?sslmode=verify-full&sslrootcert=/path/ca.pem` (`disable`, `prefer` — the default —,
    /// `require`, `verify-ca`, `verify-full`). Holds a password: never printed.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// A file whose one line is the PostgreSQL URL (container secrets); instead of DATABASE_URL.
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Size of the PostgreSQL connection pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub database_max_connections: u32,
    /// Kafka bootstrap servers; without them an in-process mock cluster is started.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Consumer group of `pay.order`; instances with the same group share the partitions.
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "payment-service")]
    pub kafka_group_id: String,
    /// Longest time the broker may hold an empty fetch of `pay.order`, in milliseconds. A Kafka
    /// broker answers as soon as a message arrives; the embedded broker does not, so it uses
    /// 10 ms whatever this says.
    #[arg(long, env = "KAFKA_FETCH_WAIT_MAX_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub kafka_fetch_wait_max_ms: u64,
    /// Extra librdkafka properties, `key=value`, repeatable or comma-separated (e.g.
    /// `security.protocol=SASL_SSL`). Values of properties named like password, secret, key,
    /// jaas or token are never printed; a value with a comma goes in KAFKA_PROPERTIES_FILE.
    #[arg(long = "kafka-property", env = "KAFKA_PROPERTIES", value_delimiter = ',', hide_env_values = true)]
    pub kafka_properties: Vec<RawKafkaProperty>,
    /// A file of librdkafka properties, one `key=value` a line (`#` comments), read before the
    /// flags (container secrets; a value may hold commas).
    #[arg(long, env = "KAFKA_PROPERTIES_FILE")]
    pub kafka_properties_file: Option<PathBuf>,
    /// Refuse to start without DATABASE_URL and KAFKA_BROKERS instead of falling back to the
    /// in-memory store and the embedded broker (the container image sets it).
    #[arg(long, env = "REQUIRE_EXTERNAL", default_value_t = false, action = clap::ArgAction::Set)]
    pub require_external: bool,
    /// Log lines as `text` (human) or `json` (one object a line, for a log shipper). Colours only
    /// when stderr is a terminal; the filter is RUST_LOG (default `info`).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// On a real cluster, create missing topics at start (`--create-topics false` to leave them
    /// to the operator).
    #[arg(long, env = "CREATE_TOPICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub create_topics: bool,
    /// Partitions of a topic the service creates.
    #[arg(long, env = "TOPIC_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub topic_partitions: i32,
    /// Replication factor of a topic the service creates.
    #[arg(long, env = "TOPIC_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=32))]
    pub topic_replication_factor: i32,
    /// Topic of the incoming payment commands.
    #[arg(long, env = "TOPIC_PAY_ORDER", default_value = "pay.order")]
    pub topic_pay_order: String,
    /// Topic of the `order.paid` events.
    #[arg(long, env = "TOPIC_ORDER_PAID", default_value = "order.paid")]
    pub topic_order_paid: String,
    /// Topic of the `order.payment_failed` events.
    #[arg(long, env = "TOPIC_ORDER_PAYMENT_FAILED", default_value = "order.payment_failed")]
    pub topic_order_payment_failed: String,
    /// Topic of the messages that carry no recoverable order id.
    #[arg(long, env = "TOPIC_DEAD_LETTER", default_value = "pay.order.dlq")]
    pub topic_dead_letter: String,
    /// Most `pay.order` messages per batch (one database transaction).
    #[arg(long, env = "BATCH_MAX_MESSAGES", default_value_t = 500, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub batch_max_messages: usize,
    /// Most `pay.order` batches applied at once, each on its own database connection; each
    /// partition is pinned to one of them, so its commands stay in order. 1: one at a time.
    #[arg(long, env = "CONSUMER_MAX_BATCHES_IN_FLIGHT", default_value_t = payment_kafka::DEFAULT_MAX_BATCHES_IN_FLIGHT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub consumer_max_batches_in_flight: usize,
    /// How long a batch waits for more messages after its first, in milliseconds, when nothing
    /// else is being applied. 0: it goes as soon as every fetched message is in it; batches still
    /// grow under load, gathering while the previous one commits.
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub batch_linger_ms: u64,
    /// Most deposits sharing one transaction.
    #[arg(long, env = "DEPOSIT_BATCH_MAX_REQUESTS", default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000))]
    pub deposit_batch_max_requests: usize,
    /// Longest a deposit waits for others to share its transaction, in microseconds; a batch
    /// closes sooner once every deposit in progress is in it. 0 turns coalescing off.
    #[arg(long, env = "DEPOSIT_BATCH_LINGER_US", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub deposit_batch_linger_us: u64,
    /// Fallback poll of the outbox when no notification arrives, in milliseconds.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub outbox_poll_ms: u64,
    /// Most outbox rows published per round.
    #[arg(long, env = "OUTBOX_BATCH_ROWS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub outbox_batch_rows: u32,
    /// How long the outbox's producer holds an event for others to share its request
    /// (`linger.ms`), in milliseconds; added to every event's latency.
    #[arg(long, env = "OUTBOX_LINGER_MS", default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pub outbox_linger_ms: u64,
    /// A leader that publishes nothing for this long while rows wait gives up its lock, so that
    /// another instance can try, in seconds.
    #[arg(long, env = "OUTBOX_LEADER_GIVE_UP_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub outbox_leader_give_up_secs: u64,
    /// Inbox rows older than this are pruned; keep it above `pay.order`'s Kafka retention.
    #[arg(long, env = "INBOX_RETENTION_HOURS", default_value_t = 14 * 24, value_parser = clap::value_parser!(u64).range(1..=MAX_RETENTION_HOURS))]
    pub inbox_retention_hours: u64,
    /// What to do at start when the broker reports that `pay.order` keeps messages longer than
    /// the inbox: `warn`, or `refuse` to start.
    #[arg(long, env = "INBOX_RETENTION_CHECK", value_enum, default_value_t = RetentionCheck::Warn)]
    pub inbox_retention_check: RetentionCheck,
    /// Published outbox rows older than this are pruned (unpublished ones never are).
    #[arg(long, env = "OUTBOX_RETENTION_HOURS", default_value_t = 7 * 24, value_parser = clap::value_parser!(u64).range(1..=MAX_RETENTION_HOURS))]
    pub outbox_retention_hours: u64,
    /// How long a deposit's `Idempotency-Key` is remembered; at least 24.
    #[arg(long, env = "IDEMPOTENCY_RETENTION_HOURS", default_value_t = 48, value_parser = clap::value_parser!(u64).range(24..=MAX_RETENTION_HOURS))]
    pub idempotency_retention_hours: u64,
    /// Time between two retention passes.
    #[arg(long, env = "RETENTION_INTERVAL_SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub retention_interval_seconds: u64,
    /// Topic of the incoming refund commands.
    #[arg(long, env = "TOPIC_REFUND_ORDER", default_value = "refund.order")]
    pub topic_refund_order: String,
    /// Topic of the `order.refunded` events.
    #[arg(long, env = "TOPIC_ORDER_REFUNDED", default_value = "order.refunded")]
    pub topic_order_refunded: String,
    /// Topic of the `order.refund_failed` events.
    #[arg(long, env = "TOPIC_ORDER_REFUND_FAILED", default_value = "order.refund_failed")]
    pub topic_order_refund_failed: String,

    // The trust boundary (issue 19): identity, the admin listener, the edge guards.
    /// How an account route knows its caller: `header` (`X-User-Id`, set by a trusted gateway)
    /// or `jwt` (a verified `Authorization: Bearer` token).
    #[arg(long, env = "AUTH_MODE", value_enum, default_value_t = AuthMode::Header)]
    pub auth_mode: AuthMode,
    /// `AUTH_MODE=jwt`: public keys (a JWKS document or PEM `PUBLIC KEY` blocks; RS256, ES256,
    /// EdDSA), re-read when the file changes.
    #[arg(long, env = "JWT_KEYS_FILE")]
    pub jwt_keys_file: Option<PathBuf>,
    /// `AUTH_MODE=jwt`: a file holding an HS256 shared secret (at least 32 bytes), re-read like
    /// the keys.
    #[arg(long, env = "JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// `AUTH_MODE=jwt`: the required `iss` claim.
    #[arg(long, env = "JWT_ISSUER", required_if_eq("auth_mode", "jwt"))]
    pub jwt_issuer: Option<String>,
    /// `AUTH_MODE=jwt`: the required `aud` claim.
    #[arg(long, env = "JWT_AUDIENCE", required_if_eq("auth_mode", "jwt"))]
    pub jwt_audience: Option<String>,
    /// `AUTH_MODE=jwt`: the claim holding the user id.
    #[arg(long, env = "JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,
    /// `AUTH_MODE=jwt`: clock skew accepted on `exp` and `nbf`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub jwt_leeway_secs: u64,
    /// `AUTH_MODE=jwt`: how often the key files are re-read, in milliseconds.
    #[arg(long, env = "JWT_KEYS_RELOAD_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub jwt_keys_reload_ms: u64,
    /// A second listener for `/healthz`, `/readyz`, `/metrics` and `/openapi.json`, which then
    /// leave the public one.
    #[arg(long, env = "ADMIN_ADDR")]
    pub admin_addr: Option<SocketAddr>,
    /// How often readiness (storage, Kafka) is probed in the background, in milliseconds;
    /// `/readyz` answers from the last probe.
    #[arg(long, env = "READINESS_PROBE_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub readiness_probe_ms: u64,
    /// Longest time for a request's head to arrive, in milliseconds; also closes a keep-alive
    /// connection that sends no next request.
    #[arg(long, env = "HTTP_HEADER_READ_TIMEOUT_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(100..=120_000))]
    pub http_header_read_timeout_ms: u64,
    /// A connection with no traffic for this long is closed, in milliseconds.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    pub http_idle_timeout_ms: u64,
    /// Most HTTP connections open at once (each listener); beyond it, connections wait in the
    /// kernel's backlog.
    #[arg(long, env = "HTTP_CONNECTIONS_MAX", default_value_t = 1_024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub http_connections_max: usize,
    /// Most requests in progress on the public listener; more are answered `503 overloaded`
    /// with `Retry-After` at once rather than queued.
    #[arg(long, env = "HTTP_REQUESTS_MAX", default_value_t = 256, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub http_requests_max: usize,
    /// `auto`: apply the migrations at start (the role needs DDL rights); `skip`: apply none and
    /// refuse to start unless the schema is current (a runtime role without DDL rights).
    #[arg(long, env = "MIGRATE", value_enum, default_value_t = Migrate::Auto)]
    pub migrate: Migrate,
    // Delivery at the edges (issue 18).
    /// Start even when PostgreSQL can lose commits it acknowledged (`fsync=off` or
    /// `synchronous_commit=off`), with a loud warning. Exactly-once then rests on the server
    /// never crashing: a lost commit whose events went out is paid again on a re-send.
    #[arg(long, env = "DATABASE_ALLOW_LOST_COMMITS", default_value_t = false, action = clap::ArgAction::Set)]
    pub database_allow_lost_commits: bool,
    /// An operator's command, run once instead of the service (`docs/runbook.md`); none: serve.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// See [`Settings::auth_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// `X-User-Id`, set by a gateway that authenticated the caller.
    Header,
    /// `Authorization: Bearer <JWT>`, verified by the service.
    Jwt,
}

/// See [`Settings::migrate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Migrate {
    /// Apply pending migrations at start.
    Auto,
    /// Apply none; refuse to start unless the schema is current.
    Skip,
}

/// See [`Settings::inbox_retention_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetentionCheck {
    /// Log a warning and start.
    Warn,
    /// Refuse to start.
    Refuse,
}

/// See [`Settings::log_format`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line: timestamp, level, target, message and fields.
    Json,
}

impl Settings {
    /// The topic names, as the service, its topic creation and its commands all use them.
    pub fn topics(&self) -> Topics {
        Topics {
            pay_order: self.topic_pay_order.clone(),
            order_paid: self.topic_order_paid.clone(),
            order_payment_failed: self.topic_order_payment_failed.clone(),
            dead_letter: self.topic_dead_letter.clone(),
            refund_order: self.topic_refund_order.clone(),
            order_refunded: self.topic_order_refunded.clone(),
            order_refund_failed: self.topic_order_refund_failed.clone(),
        }
    }

    /// The PostgreSQL URL, from DATABASE_URL or DATABASE_URL_FILE.
    pub fn database_url(&self) -> Result<Option<Secret>, SecretsError> {
        secrets::database_url(self.database_url.as_ref(), self.database_url_file.as_deref())
    }

    /// The librdkafka properties, from KAFKA_PROPERTIES_FILE then the flags.
    pub fn kafka_properties(&self) -> Result<Vec<(String, String)>, SecretsError> {
        secrets::kafka_properties(&self.kafka_properties, self.kafka_properties_file.as_deref())
    }

    /// The retention ages, in the core's terms. The hours are bounded by their parsers, so the
    /// products cannot overflow.
    pub fn retention_policy(&self) -> RetentionPolicy {
        let hours = |n: u64| Duration::from_secs(n.saturating_mul(3600));
        RetentionPolicy {
            inbox_max_age: hours(self.inbox_retention_hours),
            published_outbox_max_age: hours(self.outbox_retention_hours),
            idempotency_max_age: hours(self.idempotency_retention_hours),
            ..RetentionPolicy::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        let settings = Settings::try_parse_from(["payment-service"]).unwrap();
        assert_eq!(settings.http_addr.to_string(), "127.0.0.1:8080");
        assert!(settings.database_url.is_none() && settings.kafka_brokers.is_none());
        assert_eq!((settings.auth_mode, settings.migrate), (AuthMode::Header, Migrate::Auto));
        assert!(settings.command.is_none());
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Settings::try_parse_from(["payment-service", "--idempotency-retention-hours", "1"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--inbox-retention-check", "maybe"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--outbox-leader-give-up-secs", "0"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--inbox-retention-hours", "10000000000"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--batch-max-messages", "0"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--consumer-max-batches-in-flight", "0"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--topic-partitions", "0"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--auth-mode", "jwt", "--jwt-issuer", "i"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--jwt-leeway-secs", "301"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--http-requests-max", "0"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--migrate", "sometimes"]).is_err());
        let jwt = ["payment-service", "--auth-mode", "jwt", "--jwt-issuer", "i", "--jwt-audience", "a"];
        assert!(Settings::try_parse_from(jwt).is_ok_and(|s| s.auth_mode == AuthMode::Jwt));
        let ok = Settings::try_parse_from(["payment-service", "--kafka-property", "a=b,c=d"]).unwrap();
        assert_eq!(ok.kafka_properties().unwrap(), [("a".into(), "b".into()), ("c".into(), "d".into())]);
        let novalue = Settings::try_parse_from(["payment-service", "--kafka-property", "novalue"]).unwrap();
        assert!(novalue.kafka_properties().is_err(), "refused after clap, so that clap never echoes it");
    }
}
