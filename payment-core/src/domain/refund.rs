//! Refunds: the record of money given back for a paid order, and why a refund fails.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Amount, Balance, OrderId, RefundId, RefundOrder, UserId};

/// A successful refund: a credit of `amount` to the user who paid `order_id`. At most one per
/// refund id, ever; the refunds of an order never add up to more than its payment. It keeps what
/// is needed to re-publish the original `order.refunded` unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// Identifies the refund; unique across all refunds.
    pub refund_id: RefundId,
    /// The paid order it gives money back for (the payment it is linked to).
    pub order_id: OrderId,
    /// The user credited: the one who paid the order.
    pub user_id: UserId,
    /// The amount credited.
    pub amount: Amount,
    /// The amount the command asked for; `None` when it asked for what was left. A re-sent
    /// command is the same refund only if it asks the same way.
    pub requested: Option<Amount>,
    /// What was still refundable of the order after this refund (in `order.refunded`).
    pub refundable_left: Balance,
    /// The shop's note, if it gave one.
    pub reason: Option<String>,
    /// Identifies the credit (sent in `order.refunded`, and the ledger entry's id).
    pub transaction_id: Uuid,
    /// The `event_id` of the `order.refunded` event, re-used when the event is re-published.
    pub event_id: Uuid,
    /// When the refund was committed.
    pub refunded_at: DateTime<Utc>,
}

impl Refund {
    /// Whether `command` asks for this very refund (a re-send): same refund id, order, user and
    /// amount as asked. The free-text reason is a note, not part of what is refunded, and the
    /// JSON types of the ids are only spelling.
    pub fn is_asked_by(&self, command: &RefundOrder) -> bool {
        (&self.refund_id, &self.order_id, &self.user_id, self.requested)
            == (&command.refund_id, &command.order_id, &command.user_id, command.amount)
    }
}

/// Why a refund command failed; carried by `order.refund_failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundFailureReason {
    /// No payment of the order has been seen (yet): the shop retries with the same refund id
    /// once the order is paid (a failed refund id is not spent).
    OrderNotPaid,
    /// The amount is more than what is left to refund of the order's payment (or nothing is left).
    ExceedsRefundable,
    /// The order was paid by another user, or the command's `user_id` is missing or invalid.
    UserMismatch,
    /// The amount is not a number, not positive, too precise or too large.
    InvalidAmount,
    /// The credit would take the balance over its limit (10^15); the shop may retry later.
    BalanceLimit,
}

impl RefundFailureReason {
    /// Every reason, e.g. to pre-register metrics.
    pub const ALL: [RefundFailureReason; 5] = [
        RefundFailureReason::OrderNotPaid,
        RefundFailureReason::ExceedsRefundable,
        RefundFailureReason::UserMismatch,
        RefundFailureReason::InvalidAmount,
        RefundFailureReason::BalanceLimit,
    ];

    /// The stable code sent as the event's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundFailureReason::OrderNotPaid => "order_not_paid",
            RefundFailureReason::ExceedsRefundable => "exceeds_refundable",
            RefundFailureReason::UserMismatch => "user_mismatch",
            RefundFailureReason::InvalidAmount => "invalid_amount",
            RefundFailureReason::BalanceLimit => "balance_limit",
        }
    }
}
