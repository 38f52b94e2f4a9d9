//! Operator commands of the binary, beside serving: `payment-service <command>` runs one against
//! the configured store and exits; with no command the binary serves. One file per command.

pub mod outbox;

use crate::{ServiceError, Settings};

/// A command of the binary; none means serve.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Outbox rows the broker refused for good: list them, or re-queue them for the publisher.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
}

impl Command {
    /// Runs the command with `settings` (the store's URL and pool among them), printing its result
    /// on standard output.
    pub async fn run(self, settings: &Settings) -> Result<(), ServiceError> {
        match self {
            Command::Outbox(command) => command.run(settings).await,
        }
    }
}
