//! `payment-service account show --user ID`: what a support engineer asks first about a user —
//! the balance, the latest ledger entries and the latest payments — from the durable store.

use payment_core::domain::{StatementPage, UserId, MAX_STATEMENT_PAGE};
use payment_core::ports::Store;

use super::{store, CommandError};
use crate::Settings;

/// How many ledger entries and payments `show` lists when not told.
const SHOW_DEFAULT: u16 = 20;

/// `payment-service account …`
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AccountCommand {
    /// A user's balance, latest ledger entries (newest first) and latest successful payments.
    /// Needs DATABASE_URL.
    Show {
        /// The user id (as in `X-User-Id`).
        #[arg(long)]
        user: UserId,
        /// Most ledger entries, and most payments, listed (1..=500).
        #[arg(long, default_value_t = SHOW_DEFAULT, value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_STATEMENT_PAGE)))]
        limit: u16,
    },
}

pub async fn run(command: AccountCommand, settings: &Settings) -> Result<(), CommandError> {
    match command {
        AccountCommand::Show { user, limit } => show(settings, &user, limit).await,
    }
}

async fn show(settings: &Settings, user: &UserId, limit: u16) -> Result<(), CommandError> {
    let store = store(settings, "account show").await?;
    let account =
        store.account(user).await?.ok_or_else(|| CommandError::Refused(format!("no account for user {user}")))?;
    let page = StatementPage::new(limit, None)
        .ok_or_else(|| CommandError::Refused(format!("--limit must be within 1..={MAX_STATEMENT_PAGE}")))?;
    let entries = store.statement(user, page).await?;
    let payments = store.payments_of(user, u32::from(limit)).await?;
    println!("user {}: balance {}, opened {}", account.user_id, account.balance, account.created_at.to_rfc3339());
    println!("ledger: {} latest entr(y/ies), newest first", entries.len());
    println!("position\tcreated_at\tkind\tamount\tbalance_after\torder_id\tentry_id");
    for entry in &entries {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            entry.position.0,
            entry.entry.created_at.to_rfc3339(),
            entry.entry.kind.as_str(),
            entry.entry.amount,
            entry.entry.balance_after,
            entry.entry.order_id.as_ref().map_or("-", |order| order.as_str()),
            entry.entry.entry_id,
        );
    }
    println!("payments: {} latest, newest first", payments.len());
    println!("order_id\tpaid_at\tamount\ttransaction_id\tevent_id");
    for payment in &payments {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            payment.order_id,
            payment.paid_at.to_rfc3339(),
            payment.amount,
            payment.transaction_id,
            payment.event_id
        );
    }
    Ok(())
}
