//! The outcome events of `refund.order`: `order.refunded` and `order.refund_failed` (SPEC §4).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::events::rfc3339;
use super::{Amount, Balance, Echoed, OrderId, Refund, RefundFailureReason, RefundId, RefundIdTypes, UserId};

/// `order.refunded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRefunded {
    /// Identifies the event; the same for every re-publication of one refund.
    pub event_id: Uuid,
    /// The refund, in the JSON type the command used.
    pub refund_id: Echoed<RefundId>,
    /// The order refunded, in the JSON type the command used.
    pub order_id: Echoed<OrderId>,
    /// The user credited, in the JSON type the command used.
    pub user_id: Echoed<UserId>,
    /// The amount credited.
    pub amount: Amount,
    /// What of the order's payment was still refundable once this refund was applied.
    pub refundable_left: Balance,
    /// Identifies the credit.
    pub transaction_id: Uuid,
    /// When the refund was committed; serialised as RFC 3339 UTC.
    #[serde(serialize_with = "rfc3339")]
    pub refunded_at: DateTime<Utc>,
}

impl OrderRefunded {
    /// The event of a refund, its ids spelled as `ids` says: the same refund always gives the
    /// same `event_id` and values; a re-sent command sees its ids in its own JSON types.
    pub fn of(refund: &Refund, ids: RefundIdTypes) -> Self {
        Self {
            event_id: refund.event_id,
            refund_id: Echoed { id: refund.refund_id.clone(), json_type: ids.refund_id },
            order_id: Echoed { id: refund.order_id.clone(), json_type: ids.order_id },
            user_id: Echoed { id: refund.user_id.clone(), json_type: ids.user_id },
            amount: refund.amount,
            refundable_left: refund.refundable_left,
            transaction_id: refund.transaction_id,
            refunded_at: refund.refunded_at,
        }
    }
}

/// `order.refund_failed`. `user_id` and `amount` echo the command as received (they may be what
/// made it fail); `amount` is left out when the command asked for what was left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRefundFailed {
    /// Identifies the event, for consumers to dedupe.
    pub event_id: Uuid,
    /// The refund, in the JSON type the command used.
    pub refund_id: Echoed<RefundId>,
    /// The order, in the JSON type the command used.
    pub order_id: Echoed<OrderId>,
    /// The `user_id` of the command as received (`null` when absent).
    pub user_id: serde_json::Value,
    /// The `amount` of the command as received; absent when the command had none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<serde_json::Value>,
    /// Why nothing was credited.
    pub reason: RefundFailureReason,
    /// When the failure was committed; serialised as RFC 3339 UTC.
    #[serde(serialize_with = "rfc3339")]
    pub failed_at: DateTime<Utc>,
}
