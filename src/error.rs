//! Why the service could not start or did not stop cleanly.

/// This crate's error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Postgres(#[from] payment_postgres::PostgresError),
    #[error(transparent)]
    Kafka(#[from] payment_kafka::KafkaError),
    #[error("cannot start the embedded Kafka broker: {0}")]
    EmbeddedBroker(#[source] rdkafka::error::KafkaError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    #[error("the {task} task ended before shutdown")]
    TaskEnded { task: &'static str },
}
