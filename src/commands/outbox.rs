//! `payment-service outbox parked` and `payment-service outbox requeue [--since TIME]`: how a
//! parked outbox row comes back (issue 18 (2)).
//!
//! The publisher parks only a record the broker refuses for good (too large, invalid); an outage
//! parks nothing. Once the cause is fixed (a topic's `max.message.bytes` raised, say), an operator
//! lists the parked rows and re-queues them; the running leader is notified and publishes them
//! after the rows waiting before them. A re-queued row that is refused again is parked again. A
//! command rather than an automatic retry: nothing tells the service that the cause is gone, and a
//! record retried for ever would be the parked row's problem back in another form.

use super::{store, CommandError};
use crate::Settings;
use chrono::{DateTime, Utc};
use payment_core::ports::{Outbox, ParkedRecord, MAX_OUTBOX_BATCH_ROWS};

/// What to do with the parked rows.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum OutboxCommand {
    /// Lists the parked rows, oldest first: id, topic, key, when committed and parked, the
    /// broker's error.
    Parked {
        /// Most rows listed.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_OUTBOX_BATCH_ROWS)))]
        limit: u32,
    },
    /// Re-queues the parked rows (only those parked at or after `--since`, when given) for the
    /// publisher to send again.
    Requeue {
        /// An RFC 3339 time, e.g. `2026-11-27T15:00:00Z`: re-queue only rows parked since then.
        #[arg(long, value_parser = rfc3339)]
        since: Option<DateTime<Utc>>,
    },
}

fn rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text).map(|time| time.with_timezone(&Utc)).map_err(|error| error.to_string())
}

impl OutboxCommand {
    /// Runs against `DATABASE_URL`'s store (the in-memory store lives in its process only).
    pub async fn run(self, settings: &Settings) -> Result<(), CommandError> {
        let store = store(settings, "outbox").await?;
        let mut out = std::io::stdout().lock();
        self.run_on(&store, &mut out).await
    }

    /// Runs on any outbox, writing the result to `out`.
    pub async fn run_on<O: Outbox>(self, outbox: &O, out: &mut impl std::io::Write) -> Result<(), CommandError> {
        match self {
            OutboxCommand::Parked { limit } => {
                let rows = outbox.parked_rows(limit).await?;
                for row in &rows {
                    writeln!(out, "{}", line(row)).map_err(CommandError::Output)?;
                }
                let total = outbox.parked().await?;
                writeln!(out, "{} of {total} parked rows listed", rows.len()).map_err(CommandError::Output)?;
            }
            OutboxCommand::Requeue { since } => {
                let requeued = outbox.requeue(since).await?;
                tracing::info!(requeued, ?since, "parked outbox rows re-queued");
                writeln!(out, "{requeued} parked rows re-queued").map_err(CommandError::Output)?;
            }
        }
        Ok(())
    }
}

/// One parked row on one line; the error last, as it may hold spaces.
fn line(row: &ParkedRecord) -> String {
    format!(
        "id={} topic={} key={} created_at={} parked_at={} error={}",
        row.id,
        row.event.kind.as_str(),
        row.event.key.as_deref().unwrap_or("-"),
        row.created_at.to_rfc3339(),
        row.parked_at.to_rfc3339(),
        row.error.replace('\n', " "),
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::commands::Command;

    #[test]
    fn the_commands_parse_and_serving_is_the_default() {
        let parse = |args: &[&str]| Settings::try_parse_from(args).map(|settings| settings.command);
        assert!(matches!(parse(&["payment-service"]), Ok(None)), "no command: serve");
        assert!(matches!(
            parse(&["payment-service", "outbox", "requeue"]),
            Ok(Some(Command::Outbox(OutboxCommand::Requeue { since: None })))
        ));
        let since = parse(&["payment-service", "outbox", "requeue", "--since", "2026-11-27T15:00:00+01:00"]);
        let Ok(Some(Command::Outbox(OutboxCommand::Requeue { since: Some(since) }))) = since else {
            panic!("{since:?}")
        };
        assert_eq!(since.to_rfc3339(), "2026-11-27T14:00:00+00:00");
        assert!(parse(&["payment-service", "outbox", "requeue", "--since", "yesterday"]).is_err());
        assert!(matches!(
            parse(&["payment-service", "outbox", "parked", "--limit", "5"]),
            Ok(Some(Command::Outbox(OutboxCommand::Parked { limit: 5 })))
        ));
        assert!(parse(&["payment-service", "outbox", "parked", "--limit", "0"]).is_err());
    }
}
