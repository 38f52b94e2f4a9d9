//! Payments: the record of a successful debit and the reasons a payment fails.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Amount, OrderId, UserId};

/// A successful debit for an order. There is at most one per order id, ever (SPEC §4.1); it keeps
/// what is needed to re-publish the original `order.paid` event unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount: Amount,
    pub transaction_id: Uuid,
    /// The `event_id` of the `order.paid` event, re-used when the event is re-published.
    pub event_id: Uuid,
    pub paid_at: DateTime<Utc>,
}

/// Why a payment command failed; carried by `order.payment_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    InsufficientFunds,
    AccountNotFound,
    InvalidAmount,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::InsufficientFunds => "insufficient_funds",
            FailureReason::AccountNotFound => "account_not_found",
            FailureReason::InvalidAmount => "invalid_amount",
        }
    }
}
