//! The one error type of the simulator: what stops a run before it can report.

use std::time::Duration;

/// Why [`prepare`](crate::prepare) or [`run`](crate::run) could not finish. Contract violations
/// are not errors: they are listed in the [`Report`](crate::Report).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
    #[error("{what}: the service stayed unreachable or not ready for {waited:?}; last: {last}")]
    NotReady { what: String, waited: Duration, last: String },
    #[error("building the HTTP client: {0}")]
    HttpClient(String),
    #[error("{what}: unexpected HTTP {status}: {body}")]
    Http { what: String, status: u16, body: String },
    #[error("{what}: unexpected response body: {detail}")]
    BadResponse { what: String, detail: String },
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("producing message {message_id}: {detail}")]
    Produce { message_id: String, detail: String },
    #[error("outcome consumer thread: {0}")]
    Consumer(String),
}
