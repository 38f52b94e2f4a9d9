//! `payment-service reconcile`: runs [`payment_postgres::reconcile`]'s checks on `DATABASE_URL`
//! and prints the report. Exit status: 0 consistent, 2 inconsistent (the report says where), 1
//! the check could not run. It needs only `SELECT` rights, so an auditor's read-only role can
//! run it against a replica.

use std::process::ExitCode;
use std::time::Duration;

use super::{store, CommandError};
use crate::Settings;

/// The exit status of an inconsistent ledger, apart from 1 (could not check).
pub const INCONSISTENT: u8 = 2;

/// Connects, checks, prints; see the module documentation for the exit status.
pub async fn run(settings: &Settings) -> Result<ExitCode, CommandError> {
    let store = store(settings, "reconcile").await?;
    let retention = Duration::from_secs(settings.outbox_retention_hours.saturating_mul(3600));
    let report = store.reconcile(retention).await?;
    println!("{report}");
    if report.is_clean() {
        tracing::info!("reconcile: ledger consistent");
        Ok(ExitCode::SUCCESS)
    } else {
        tracing::error!("reconcile: ledger inconsistent; see the report");
        Ok(ExitCode::from(INCONSISTENT))
    }
}
