//! Why the service could not start or did not stop cleanly.

/// This crate's error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A setting that can hold a secret (DATABASE_URL, KAFKA_PROPERTIES, their files) could not
    /// be read; the message names the setting, never its value.
    #[error(transparent)]
    Secrets(#[from] crate::SecretsError),
    /// `REQUIRE_EXTERNAL` is set and a durable store or a real cluster is not configured.
    #[error(
        "REQUIRE_EXTERNAL is set but {missing} is not: refusing to start on the in-memory store or the embedded broker"
    )]
    NotExternal {
        /// The settings missing, in words.
        missing: String,
    },
    /// The PostgreSQL store could not connect or migrate.
    #[error(transparent)]
    Postgres(#[from] payment_postgres::PostgresError),
    /// A Kafka client could not be built, a setting was refused, or the topics could not be
    /// created or checked.
    #[error(transparent)]
    Kafka(#[from] payment_kafka::KafkaError),
    /// The store failed (an operator command, or a check at start).
    #[error(transparent)]
    Store(#[from] payment_core::ports::StoreError),
    /// PostgreSQL can lose commits it acknowledged, and `DATABASE_ALLOW_LOST_COMMITS` is not set.
    #[error(
        "PostgreSQL can lose commits it acknowledged ({0}): a crash would lose payments whose events are          published, and a re-send would pay them again. Turn fsync and synchronous_commit on, or set          DATABASE_ALLOW_LOST_COMMITS=true to accept the risk"
    )]
    LostCommits(payment_postgres::Durability),
    /// An operator command was run without `DATABASE_URL`.
    #[error("this command works on the PostgreSQL store: set DATABASE_URL")]
    CommandNeedsDatabase,
    /// A command's result could not be written to standard output.
    #[error("cannot write the command's output: {0}")]
    Output(#[source] std::io::Error),
    /// librdkafka's mock cluster (the embedded broker) could not start.
    #[error("cannot start the embedded Kafka broker: {0}")]
    EmbeddedBroker(#[source] rdkafka::error::KafkaError),
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    /// The JWT verification keys could not be loaded.
    #[error(transparent)]
    Identity(#[from] payment_http::identity::KeyError),
    /// Settings that cannot work together.
    #[error("invalid settings: {0}")]
    Settings(&'static str),
    /// A background task panicked or returned before shutdown; the service was stopped.
    #[error("the {task} task ended before shutdown")]
    TaskEnded {
        /// `pay.order consumer`, `outbox publisher` or `retention`.
        task: &'static str,
    },
}
