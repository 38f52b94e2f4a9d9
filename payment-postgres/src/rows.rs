//! Rows as sqlx reads them, and their checked conversion into domain types.

use chrono::{DateTime, Utc};
use payment_core::domain::{
    Account, Amount, Balance, EntryCause, EntryKind, IdempotencyKey, IdempotencyRecord, LedgerEntry, LedgerPosition,
    OrderId, Payment, Refund, RefundId, StatementEntry, UserId,
};
use payment_core::ports::StoreError;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::error::corrupt;

fn user(text: String) -> Result<UserId, StoreError> {
    UserId::new(text).map_err(|e| corrupt("user id", e))
}

fn order(text: String) -> Result<OrderId, StoreError> {
    OrderId::new(text).map_err(|e| corrupt("order id", e))
}

fn refund_id(text: String) -> Result<RefundId, StoreError> {
    RefundId::new(text).map_err(|e| corrupt("refund id", e))
}

fn amount(value: Decimal) -> Result<Amount, StoreError> {
    Amount::new(value).map_err(|e| corrupt("amount", e))
}

fn balance(value: Decimal) -> Result<Balance, StoreError> {
    Balance::new(value).map_err(|e| corrupt("balance", e))
}

#[derive(sqlx::FromRow)]
pub(crate) struct AccountRow {
    user_id: String,
    balance: Decimal,
    created_at: DateTime<Utc>,
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;
    fn try_from(row: AccountRow) -> Result<Self, StoreError> {
        Ok(Account { user_id: user(row.user_id)?, balance: balance(row.balance)?, created_at: row.created_at })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct LedgerRow {
    position: i64,
    entry_id: Uuid,
    user_id: String,
    kind: String,
    amount: Decimal,
    balance_after: Decimal,
    order_id: Option<String>,
    refund_id: Option<String>,
    created_at: DateTime<Utc>,
    cause: Option<String>,
}

impl TryFrom<LedgerRow> for StatementEntry {
    type Error = StoreError;
    fn try_from(row: LedgerRow) -> Result<Self, StoreError> {
        let kind = match row.kind.as_str() {
            "deposit" => EntryKind::Deposit,
            "payment" => EntryKind::Payment,
            "refund" => EntryKind::Refund,
            other => return Err(corrupt("entry kind", other)),
        };
        Ok(StatementEntry {
            position: LedgerPosition(row.position),
            entry: LedgerEntry {
                entry_id: row.entry_id,
                user_id: user(row.user_id)?,
                kind,
                amount: amount(row.amount)?,
                balance_after: balance(row.balance_after)?,
                order_id: row.order_id.map(order).transpose()?,
                refund_id: row.refund_id.map(refund_id).transpose()?,
                created_at: row.created_at,
                cause: row
                    .cause
                    .map(|text| EntryCause::from_stored(&text).ok_or_else(|| corrupt("cause", &text)))
                    .transpose()?,
            },
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PaymentRow {
    order_id: String,
    user_id: String,
    amount: Decimal,
    transaction_id: Uuid,
    event_id: Uuid,
    paid_at: DateTime<Utc>,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = StoreError;
    fn try_from(row: PaymentRow) -> Result<Self, StoreError> {
        Ok(Payment {
            order_id: order(row.order_id)?,
            user_id: user(row.user_id)?,
            amount: amount(row.amount)?,
            transaction_id: row.transaction_id,
            event_id: row.event_id,
            paid_at: row.paid_at,
        })
    }
}

/// The columns [`RefundRow`] reads, for every query that loads refunds.
pub(crate) const REFUND_COLUMNS: &str =
    "refund_id, order_id, user_id, amount, requested, refundable_left, reason, transaction_id, event_id, refunded_at";

#[derive(sqlx::FromRow)]
pub(crate) struct RefundRow {
    refund_id: String,
    order_id: String,
    user_id: String,
    amount: Decimal,
    requested: Option<Decimal>,
    refundable_left: Decimal,
    reason: Option<String>,
    transaction_id: Uuid,
    event_id: Uuid,
    refunded_at: DateTime<Utc>,
}

impl TryFrom<RefundRow> for Refund {
    type Error = StoreError;
    fn try_from(row: RefundRow) -> Result<Self, StoreError> {
        Ok(Refund {
            refund_id: refund_id(row.refund_id)?,
            order_id: order(row.order_id)?,
            user_id: user(row.user_id)?,
            amount: amount(row.amount)?,
            requested: row.requested.map(amount).transpose()?,
            refundable_left: balance(row.refundable_left)?,
            reason: row.reason,
            transaction_id: row.transaction_id,
            event_id: row.event_id,
            refunded_at: row.refunded_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct IdempotencyRow {
    user_id: String,
    key: String,
    amount: Decimal,
    balance: Decimal,
    created_at: DateTime<Utc>,
}

impl TryFrom<IdempotencyRow> for IdempotencyRecord {
    type Error = StoreError;
    fn try_from(row: IdempotencyRow) -> Result<Self, StoreError> {
        Ok(IdempotencyRecord {
            user_id: user(row.user_id)?,
            key: IdempotencyKey::new(row.key).map_err(|e| corrupt("idempotency key", e))?,
            amount: amount(row.amount)?,
            balance: balance(row.balance)?,
            created_at: row.created_at,
        })
    }
}
