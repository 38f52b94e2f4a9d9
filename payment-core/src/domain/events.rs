//! Outcome events and the outbox rows that carry them to the broker.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{
    Amount, DeadLetter, Echoed, FailureReason, IdTypes, Inbound, MessageId, OrderId, OrderRefundFailed, OrderRefunded,
    Payment, TraceContext, UserId,
};

/// `order.paid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderPaid {
    /// Identifies the event; the same for every re-publication of one payment, so consumers can dedupe.
    pub event_id: Uuid,
    /// The order paid, in the JSON type the command used.
    pub order_id: Echoed<OrderId>,
    /// The user debited, in the JSON type the command used.
    pub user_id: Echoed<UserId>,
    /// The amount debited.
    pub amount: Amount,
    /// Always `"success"`.
    pub status: &'static str,
    /// Identifies the debit.
    pub transaction_id: Uuid,
    /// When the payment was committed; serialised as RFC 3339 UTC.
    #[serde(serialize_with = "rfc3339")]
    pub paid_at: DateTime<Utc>,
}

impl OrderPaid {
    /// The event of a payment, its ids spelled as `ids` says: the same payment always gives the
    /// same `event_id` and values; a re-sent command sees its ids in its own JSON types.
    pub fn of(payment: &Payment, ids: IdTypes) -> Self {
        Self {
            event_id: payment.event_id,
            order_id: Echoed { id: payment.order_id.clone(), json_type: ids.order_id },
            user_id: Echoed { id: payment.user_id.clone(), json_type: ids.user_id },
            amount: payment.amount,
            status: "success",
            transaction_id: payment.transaction_id,
            paid_at: payment.paid_at,
        }
    }
}

/// `order.payment_failed`. `user_id` and `amount` echo the command as received (they may be the
/// very values that made it fail), so they are kept as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderPaymentFailed {
    /// Identifies the event, for consumers to dedupe.
    pub event_id: Uuid,
    /// The order, in the JSON type the command used.
    pub order_id: Echoed<OrderId>,
    /// The `user_id` of the command as received (`null` when absent).
    pub user_id: serde_json::Value,
    /// The `amount` of the command as received (`null` when absent).
    pub amount: serde_json::Value,
    /// Always `"failed"`.
    pub status: &'static str,
    /// Why nothing was debited.
    pub reason: FailureReason,
    /// When the failure was committed; serialised as RFC 3339 UTC.
    #[serde(serialize_with = "rfc3339")]
    pub failed_at: DateTime<Utc>,
}

pub(super) fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// The logical destination of an outbox row; the publisher maps it to a configured topic name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `order.paid`.
    OrderPaid,
    /// `order.payment_failed`.
    OrderPaymentFailed,
    /// `pay.order.dlq`: a message that was not applied.
    DeadLetter,
    /// `order.refunded`.
    OrderRefunded,
    /// `order.refund_failed`.
    OrderRefundFailed,
}

impl EventKind {
    /// Every kind, e.g. to check that each has a topic.
    pub const ALL: [EventKind; 5] = [
        EventKind::OrderPaid,
        EventKind::OrderPaymentFailed,
        EventKind::DeadLetter,
        EventKind::OrderRefunded,
        EventKind::OrderRefundFailed,
    ];

    /// The stable name stored with the row and sent as the `event-type` header.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::OrderPaid => "order.paid",
            EventKind::OrderPaymentFailed => "order.payment_failed",
            EventKind::DeadLetter => "pay.order.dlq",
            EventKind::OrderRefunded => "order.refunded",
            EventKind::OrderRefundFailed => "order.refund_failed",
        }
    }

    /// The kind [`EventKind::as_str`] names; `None` for any other name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// A message waiting in the outbox, written in the transaction that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Which topic the row goes to.
    pub kind: EventKind,
    /// The record key: the order id for outcome events.
    pub key: Option<String>,
    /// The record value, exactly as it is published.
    pub payload: Vec<u8>,
    /// The record headers, in order.
    pub headers: Vec<(String, String)>,
    /// The trace the record continues: for an outcome event, the span of applying its command
    /// (see [`TraceContext::apply_span`]); the publisher sends it as `traceparent`/`tracestate`.
    pub trace: Option<TraceContext>,
}

impl OutboxEvent {
    /// `order.paid` with the SPEC §4 headers; `correlation` is the command that caused it.
    pub fn paid(event: &OrderPaid, correlation: &MessageId) -> Self {
        Self::outcome(EventKind::OrderPaid, event.event_id, &event.order_id.id, correlation, event)
    }

    /// `order.payment_failed` with the SPEC §4 headers; `correlation` is the command that caused it.
    pub fn failed(event: &OrderPaymentFailed, correlation: &MessageId) -> Self {
        Self::outcome(EventKind::OrderPaymentFailed, event.event_id, &event.order_id.id, correlation, event)
    }

    /// `order.refunded` with the SPEC §4 headers; `correlation` is the command that caused it.
    pub fn refunded(event: &OrderRefunded, correlation: &MessageId) -> Self {
        Self::outcome(EventKind::OrderRefunded, event.event_id, &event.order_id.id, correlation, event)
    }

    /// `order.refund_failed` with the SPEC §4 headers; `correlation` is the command that caused it.
    pub fn refund_failed(event: &OrderRefundFailed, correlation: &MessageId) -> Self {
        Self::outcome(EventKind::OrderRefundFailed, event.event_id, &event.order_id.id, correlation, event)
    }

    fn outcome(
        kind: EventKind,
        event_id: Uuid,
        order_id: &OrderId,
        correlation: &MessageId,
        body: &impl Serialize,
    ) -> Self {
        // Serialising these plain structs cannot fail; an empty body would be refused downstream.
        let payload = serde_json::to_vec(body).unwrap_or_default();
        Self {
            kind,
            key: Some(order_id.to_string()),
            payload,
            headers: vec![
                ("event-id".into(), event_id.to_string()),
                ("event-type".into(), kind.as_str().into()),
                ("correlation-id".into(), correlation.to_string()),
                ("content-type".into(), "application/json".into()),
            ],
            trace: None,
        }
    }

    /// The dead-letter topic's record: the original bytes, with source and reason as headers.
    /// When the dead letter kept only the first bytes of a larger message, the headers say so
    /// (`payload-truncated: true`, `payload-original-bytes`).
    pub fn dead_letter(letter: &DeadLetter) -> Self {
        let mut headers = vec![
            ("dead-letter-id".into(), letter.dead_letter_id.to_string()),
            ("message-id".into(), letter.message_id.to_string()),
            ("reason-code".into(), letter.reason.as_str().into()),
            ("reason-message".into(), letter.detail.clone()),
        ];
        if let Some(origin) = &letter.origin {
            headers.push(("source-topic".into(), origin.topic.clone()));
            headers.push(("source-partition".into(), origin.partition.to_string()));
            headers.push(("source-offset".into(), origin.offset.to_string()));
        }
        if let Some(original_bytes) = letter.payload_original_bytes {
            headers.push(("payload-truncated".into(), "true".into()));
            headers.push(("payload-original-bytes".into(), original_bytes.to_string()));
        }
        Self { kind: EventKind::DeadLetter, key: None, payload: letter.payload.clone(), headers, trace: None }
    }

    /// The same row continuing the trace of the command `message` (none when it came without
    /// one): the span of applying it, whose id the consumer records and the event's parent names.
    pub fn continuing(self, message: &Inbound) -> Self {
        let trace = message.trace.as_ref().map(|trace| trace.apply_span(&message.identity));
        Self { trace, ..self }
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}
