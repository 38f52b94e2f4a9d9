//! `payment-service reconcile`: checks, from the database alone, what the ledger promises.
//!
//! The triggers of `20261127000001_ledger_integrity.sql` stop edits of the ledger and of
//! payments, but not a superuser who disables them, nor an edit of a balance (balances change
//! with every entry, so no trigger can tell a right change from a wrong one). This check can:
//!
//! - every balance equals the sum of its ledger (credits less debits) and the `balance_after`
//!   of its newest entry;
//! - every payment has its `payment` ledger entry, and every `payment` entry its payment;
//! - every payment recent enough that retention cannot have pruned its published event has its
//!   `order.paid` outbox row.
//!
//! Each finding lists at most [`FINDINGS_MAX`] rows (the counts are exact), so a badly damaged
//! database gives a readable report. It reads with plain `SELECT`s, outside any transaction the
//! service uses; a payment being committed while it runs can show as a false finding, so run it
//! again before acting on one.

use std::fmt;
use std::time::Duration;

use chrono::Utc;
use rust_decimal::Decimal;
use sqlx::Row;

use crate::{PgStore, PostgresError};

/// Rows listed per finding.
pub const FINDINGS_MAX: i64 = 100;

/// The credits and debits of each kind, `NULL` for a kind this check does not know (counted
/// apart, so a new kind cannot silently pass as either).
const SIGNED_AMOUNT: &str =
    "CASE l.kind WHEN 'deposit' THEN l.amount WHEN 'refund' THEN l.amount WHEN 'payment' THEN -l.amount END";

/// One check and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was checked, in words.
    pub check: &'static str,
    /// How many rows fail it.
    pub count: i64,
    /// The first [`FINDINGS_MAX`] of them, one line each.
    pub examples: Vec<String>,
}

/// What [`PgStore::reconcile`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Accounts checked.
    pub accounts: i64,
    /// Payments checked.
    pub payments: i64,
    /// Every check, failing or not.
    pub findings: Vec<Finding>,
}

impl ReconcileReport {
    /// Whether every check passed.
    pub fn is_clean(&self) -> bool {
        self.findings.iter().all(|f| f.count == 0)
    }
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "checked {} accounts and {} payments", self.accounts, self.payments)?;
        for finding in &self.findings {
            let verdict = if finding.count == 0 { "ok" } else { "FAILED" };
            writeln!(f, "{verdict:>6}  {} ({} rows)", finding.check, finding.count)?;
            for example in &finding.examples {
                writeln!(f, "        {example}")?;
            }
            if finding.count > finding.examples.len() as i64 {
                writeln!(f, "        ... and {} more", finding.count - finding.examples.len() as i64)?;
            }
        }
        write!(f, "{}", if self.is_clean() { "ledger consistent" } else { "LEDGER INCONSISTENT" })
    }
}

impl PgStore {
    /// Runs every check. `outbox_retention` is the age after which published outbox rows are
    /// pruned: only payments younger than it must still have their outbox row.
    pub async fn reconcile(&self, outbox_retention: Duration) -> Result<ReconcileReport, PostgresError> {
        let count = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.pool).await.map_err(PostgresError::Reconcile)
        };
        let accounts = count("SELECT COUNT(*) FROM accounts").await?;
        let payments = count("SELECT COUNT(*) FROM payments").await?;
        let since = Utc::now() - chrono::Duration::from_std(outbox_retention).unwrap_or(chrono::Duration::MAX);

        let balances = format!(
            "WITH sums AS (
                SELECT a.user_id, a.balance,
                       COALESCE(SUM({SIGNED_AMOUNT}), 0) AS ledger_sum,
                       (SELECT l2.balance_after FROM ledger_entries l2 WHERE l2.user_id = a.user_id
                        ORDER BY l2.position DESC LIMIT 1) AS last_after
                FROM accounts a LEFT JOIN ledger_entries l ON l.user_id = a.user_id
                GROUP BY a.user_id, a.balance
            )
            SELECT user_id, balance, ledger_sum, last_after, COUNT(*) OVER () AS total FROM sums
            WHERE balance <> ledger_sum OR balance <> COALESCE(last_after, 0)
            ORDER BY user_id LIMIT $1"
        );
        let rows =
            sqlx::query(&balances).bind(FINDINGS_MAX).fetch_all(&self.pool).await.map_err(PostgresError::Reconcile)?;
        let mut findings = vec![finding(
            "every balance equals the sum of its ledger and its newest entry's balance_after",
            &rows,
            |row| {
                let user: String = row.try_get("user_id")?;
                let balance: Decimal = row.try_get("balance")?;
                let sum: Decimal = row.try_get("ledger_sum")?;
                let last: Option<Decimal> = row.try_get("last_after")?;
                Ok(format!(
                    "account {user}: balance {balance}, ledger sum {sum}, newest balance_after {}",
                    last.map_or("none".into(), |d| d.to_string())
                ))
            },
        )?];

        let unknown = "SELECT l.entry_id::TEXT AS id, l.kind, COUNT(*) OVER () AS total FROM ledger_entries l
            WHERE l.kind NOT IN ('deposit', 'refund', 'payment') ORDER BY l.position LIMIT $1";
        let rows =
            sqlx::query(unknown).bind(FINDINGS_MAX).fetch_all(&self.pool).await.map_err(PostgresError::Reconcile)?;
        findings.push(finding("every ledger entry is of a known kind", &rows, |row| {
            Ok(format!("entry {}: kind {}", row.try_get::<String, _>("id")?, row.try_get::<String, _>("kind")?))
        })?);

        let unledgered = "SELECT p.order_id, COUNT(*) OVER () AS total FROM payments p
            WHERE NOT EXISTS (SELECT 1 FROM ledger_entries l
                              WHERE l.kind = 'payment' AND l.order_id = p.order_id
                                AND l.user_id = p.user_id AND l.amount = p.amount)
            ORDER BY p.order_id LIMIT $1";
        let rows =
            sqlx::query(unledgered).bind(FINDINGS_MAX).fetch_all(&self.pool).await.map_err(PostgresError::Reconcile)?;
        findings.push(finding("every payment has its ledger entry (same user and amount)", &rows, |row| {
            Ok(format!("order {}", row.try_get::<String, _>("order_id")?))
        })?);

        let unpaid = "SELECT l.entry_id::TEXT AS id, l.order_id, COUNT(*) OVER () AS total FROM ledger_entries l
            WHERE l.kind = 'payment' AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = l.order_id)
            ORDER BY l.position LIMIT $1";
        let rows =
            sqlx::query(unpaid).bind(FINDINGS_MAX).fetch_all(&self.pool).await.map_err(PostgresError::Reconcile)?;
        findings.push(finding("every payment ledger entry has its payment", &rows, |row| {
            let order: Option<String> = row.try_get("order_id")?;
            Ok(format!("entry {}: order {}", row.try_get::<String, _>("id")?, order.unwrap_or_default()))
        })?);

        let unannounced = "SELECT p.order_id, COUNT(*) OVER () AS total FROM payments p
            WHERE p.paid_at >= $2
              AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.topic = 'order.paid' AND o.key = p.order_id)
            ORDER BY p.order_id LIMIT $1";
        let rows = sqlx::query(unannounced)
            .bind(FINDINGS_MAX)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(PostgresError::Reconcile)?;
        findings.push(finding(
            "every payment younger than the outbox retention has its order.paid outbox row",
            &rows,
            |row| Ok(format!("order {}", row.try_get::<String, _>("order_id")?)),
        )?);

        Ok(ReconcileReport { accounts, payments, findings })
    }
}

/// A finding from rows that each carry `total`, the count of all failing rows.
fn finding(
    check: &'static str,
    rows: &[sqlx::postgres::PgRow],
    line: impl Fn(&sqlx::postgres::PgRow) -> Result<String, sqlx::Error>,
) -> Result<Finding, PostgresError> {
    let count = match rows.first() {
        Some(row) => row.try_get::<i64, _>("total").map_err(PostgresError::Reconcile)?,
        None => 0,
    };
    let examples = rows.iter().map(line).collect::<Result<Vec<_>, _>>().map_err(PostgresError::Reconcile)?;
    Ok(Finding { check, count, examples })
}
