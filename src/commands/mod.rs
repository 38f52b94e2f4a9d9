//! The operator's commands: `payment-service <command>` runs one and exits, instead of serving.
//! They are what the runbook (`docs/runbook.md`) tells an operator to type at 3 a.m., so each
//! reads the same settings as the service (`DATABASE_URL`, `KAFKA_BROKERS`, `KAFKA_PROPERTIES`,
//! topic names, group id) and refuses, in one sentence, to run without the one it needs.
//!
//! One file per command family; what they print goes to stdout, logs and errors to stderr.
//! They read the durable store through `payment-postgres`: the in-memory store of a running
//! service lives in that process and cannot be read from another one.

mod account;
mod consumer;
mod dead_letters;
pub mod outbox;
pub mod reconcile;

use std::process::ExitCode;
use std::time::Duration;

use payment_kafka::KafkaConfig;
use payment_postgres::{PgConfig, PgStore};
use rdkafka::ClientConfig;

pub use account::AccountCommand;
pub use consumer::ConsumerCommand;
pub use dead_letters::DeadLettersCommand;

use crate::Settings;

/// How long a command waits for the broker's answer to one request.
const KAFKA_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A command needs one connection, two to be safe; the service's pool size is not its concern.
const COMMAND_DATABASE_CONNECTIONS_MAX: u32 = 2;

/// `payment-service <command>`; without one the service runs.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Dead letters (`pay.order` messages that could not be applied): list them, re-send one.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
    /// A user's account, latest ledger entries and payments.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The consumer group's position on `pay.order` and `refund.order`.
    #[command(subcommand)]
    Consumer(ConsumerCommand),
    /// Outbox rows the broker refused for good: list them, or re-queue them for the publisher.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// Check that every balance equals its ledger and every payment has its ledger entry and
    /// outbox row (PostgreSQL, `DATABASE_URL`); exits 2 with a report when one does not.
    Reconcile,
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command reads the PostgreSQL store and none is configured.
    #[error("{command} reads the PostgreSQL store: set DATABASE_URL (or DATABASE_URL_FILE) to the service's database")]
    NoDatabase {
        /// The command, as typed.
        command: &'static str,
    },
    /// The command talks to Kafka and no cluster is configured.
    #[error("{command} talks to Kafka: set KAFKA_BROKERS to the service's cluster (for the embedded broker, the address `payment-service` printed at start)")]
    NoBrokers {
        /// The command, as typed.
        command: &'static str,
    },
    /// `DATABASE_URL_FILE` or the Kafka properties could not be read.
    #[error(transparent)]
    Secrets(#[from] crate::SecretsError),
    /// The store could not be reached.
    #[error(transparent)]
    Postgres(#[from] payment_postgres::PostgresError),
    /// A read of the store failed.
    #[error("the store answered with an error: {0}")]
    Store(#[from] payment_core::ports::StoreError),
    /// A protected librdkafka property was given.
    #[error(transparent)]
    KafkaSettings(#[from] payment_kafka::KafkaError),
    /// The broker refused or did not answer.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// What was asked for does not exist, or cannot be done; the message says which and why.
    #[error("{0}")]
    Refused(String),
    /// The answer could not be written to standard output.
    #[error("cannot write the answer: {0}")]
    Output(#[source] std::io::Error),
}

/// Runs `command` with the service's `settings`, printing its answer to stdout; the exit status
/// is 0, or what the command says (`reconcile`: 2 for an inconsistent ledger).
pub async fn run(command: Command, settings: &Settings) -> Result<ExitCode, CommandError> {
    let done = |_| ExitCode::SUCCESS;
    match command {
        Command::DeadLetters(command) => dead_letters::run(command, settings).await.map(done),
        Command::Account(command) => account::run(command, settings).await.map(done),
        Command::Consumer(command) => consumer::run(command, settings).await.map(done),
        Command::Outbox(command) => command.run(settings).await.map(done),
        Command::Reconcile => reconcile::run(settings).await,
    }
}

/// The service's PostgreSQL store, without migrating it: a command only reads what the service
/// wrote.
async fn store(settings: &Settings, command: &'static str) -> Result<PgStore, CommandError> {
    let url = settings.database_url()?.ok_or(CommandError::NoDatabase { command })?;
    let config = PgConfig { max_connections: COMMAND_DATABASE_CONNECTIONS_MAX, ..PgConfig::default() };
    Ok(PgStore::connect(url.expose(), &config).await?)
}

/// A librdkafka configuration for the service's cluster: its brokers and its extra properties
/// (TLS, SASL), the protected ones refused as the service refuses them.
fn kafka_client(settings: &Settings, command: &'static str) -> Result<ClientConfig, CommandError> {
    let brokers = settings.kafka_brokers.clone().ok_or(CommandError::NoBrokers { command })?;
    let kafka = KafkaConfig { brokers, topics: settings.topics(), extra: settings.kafka_properties()? };
    kafka.check()?;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in &kafka.extra {
        config.set(key.trim(), value);
    }
    Ok(config)
}
