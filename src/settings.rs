//! Every setting of the service, as a CLI flag and an environment variable (SPEC §6).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

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
    /// PostgreSQL URL; without it the store is in memory and lost at exit.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
    /// Kafka bootstrap servers; without them an in-process mock cluster is started.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "payment-service")]
    pub kafka_group_id: String,
    /// Extra librdkafka properties, `key=value`, repeatable (e.g. `security.protocol=SSL`).
    #[arg(long = "kafka-property", env = "KAFKA_PROPERTIES", value_delimiter = ',', value_parser = key_value)]
    pub kafka_properties: Vec<(String, String)>,
    #[arg(long, env = "TOPIC_PAY_ORDER", default_value = "pay.order")]
    pub topic_pay_order: String,
    #[arg(long, env = "TOPIC_ORDER_PAID", default_value = "order.paid")]
    pub topic_order_paid: String,
    #[arg(long, env = "TOPIC_ORDER_PAYMENT_FAILED", default_value = "order.payment_failed")]
    pub topic_order_payment_failed: String,
    #[arg(long, env = "TOPIC_DEAD_LETTER", default_value = "pay.order.dlq")]
    pub topic_dead_letter: String,
    /// Most `pay.order` messages per batch (one database transaction).
    #[arg(long, env = "BATCH_MAX_MESSAGES", default_value_t = 500)]
    pub batch_max_messages: usize,
    /// How long a batch waits for more messages after its first, in milliseconds.
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = 20)]
    pub batch_linger_ms: u64,
    /// Fallback poll of the outbox when no notification arrives, in milliseconds.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 1000)]
    pub outbox_poll_ms: u64,
    #[arg(long, env = "OUTBOX_BATCH_ROWS", default_value_t = 1000)]
    pub outbox_batch_rows: u32,
    /// A leader that publishes nothing for this long while rows wait gives up its lock, so that
    /// another instance can try, in seconds.
    #[arg(long, env = "OUTBOX_LEADER_GIVE_UP_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub outbox_leader_give_up_secs: u64,
    /// Inbox rows older than this are pruned; keep it above `pay.order`'s Kafka retention.
    #[arg(long, env = "INBOX_RETENTION_HOURS", default_value_t = 14 * 24)]
    pub inbox_retention_hours: u64,
    /// What to do at start when the broker reports that `pay.order` keeps messages longer than
    /// the inbox: `warn`, or `refuse` to start.
    #[arg(long, env = "INBOX_RETENTION_CHECK", value_enum, default_value_t = RetentionCheck::Warn)]
    pub inbox_retention_check: RetentionCheck,
    #[arg(long, env = "OUTBOX_RETENTION_HOURS", default_value_t = 7 * 24)]
    pub outbox_retention_hours: u64,
    /// At least 24 (SPEC §3).
    #[arg(long, env = "IDEMPOTENCY_RETENTION_HOURS", default_value_t = 48, value_parser = clap::value_parser!(u64).range(24..))]
    pub idempotency_retention_hours: u64,
    #[arg(long, env = "RETENTION_INTERVAL_SECONDS", default_value_t = 3600)]
    pub retention_interval_seconds: u64,
}

/// See [`Settings::inbox_retention_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetentionCheck {
    Warn,
    Refuse,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}

impl Settings {
    pub fn batch_linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
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
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Settings::try_parse_from(["payment-service", "--idempotency-retention-hours", "1"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--kafka-property", "novalue"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--inbox-retention-check", "maybe"]).is_err());
        assert!(Settings::try_parse_from(["payment-service", "--outbox-leader-give-up-secs", "0"]).is_err());
        let ok = Settings::try_parse_from(["payment-service", "--kafka-property", "a=b,c=d"]).unwrap();
        assert_eq!(ok.kafka_properties, [("a".into(), "b".into()), ("c".into(), "d".into())]);
    }
}
