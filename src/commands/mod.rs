//! The binary's one-off commands, one file each; with none, the binary serves.

pub mod reconcile;

/// A one-off command instead of serving.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Check that every balance equals its ledger and every payment has its ledger entry and
    /// outbox row (PostgreSQL, `DATABASE_URL`); exits 2 with a report when one does not.
    Reconcile,
}
