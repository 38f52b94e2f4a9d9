//! Payments: the record of a successful debit and the reasons a payment fails.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Amount, OrderId, UserId};

/// A successful debit for an order. There is at most one per order id, ever (SPEC §4.1); it keeps
/// what is needed to re-publish the original `order.paid` event unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The order paid; unique across all payments.
    pub order_id: OrderId,
    /// The user debited.
    pub user_id: UserId,
    /// The amount debited.
    pub amount: Amount,
    /// Identifies the debit (sent in `order.paid`).
    pub transaction_id: Uuid,
    /// The `event_id` of the `order.paid` event, re-used when the event is re-published.
    pub event_id: Uuid,
    /// When the payment was committed.
    pub paid_at: DateTime<Utc>,
}

/// Why a payment command failed; carried by `order.payment_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The balance is below the amount.
    InsufficientFunds,
    /// The user has no account, or the command's `user_id` is missing or not a valid id.
    AccountNotFound,
    /// The amount is missing, not a number, not positive, too precise or too large.
    InvalidAmount,
}

impl FailureReason {
    /// The stable code sent as the event's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::InsufficientFunds => "insufficient_funds",
            FailureReason::AccountNotFound => "account_not_found",
            FailureReason::InvalidAmount => "invalid_amount",
        }
    }
}
