//! `pay.order` commands as they arrive (and the [`Inbound`] envelope `refund.order` shares): decoded once, here, into what the batch decision needs.
//!
//! Decoding never fails: a message that cannot be a payment still gets an identity and a verdict,
//! so that it is claimed in the inbox and dead-lettered exactly once instead of blocking its
//! partition.

use serde_json::Value;

use super::money::decimal_from_json;
use super::{
    Amount, DeadLetterReason, Echoed, FailureReason, JsonIdType, MessageId, OrderId, Origin, RefundFailureReason,
    RefundId, RefundOrder, TraceContext, UserId,
};

/// Largest `pay.order` payload decoded; larger ones are dead-lettered as malformed.
pub const MAX_PAY_ORDER_BYTES: usize = 64 * 1024;

/// A valid payment command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayOrder {
    /// The order to pay; debited at most once, ever.
    pub order_id: OrderId,
    /// The account to debit.
    pub user_id: UserId,
    /// How much to debit.
    pub amount: Amount,
    /// How the command spelled its ids, for the events to echo.
    pub id_types: IdTypes,
}

impl PayOrder {
    /// A command built in process: its ids are echoed as JSON strings.
    pub fn new(order_id: OrderId, user_id: UserId, amount: Amount) -> Self {
        Self { order_id, user_id, amount, id_types: IdTypes::default() }
    }
}

/// The JSON types of a command's ids (strings for a command built in process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IdTypes {
    /// The JSON type of `order_id`.
    pub order_id: JsonIdType,
    /// The JSON type of `user_id`.
    pub user_id: JsonIdType,
}

/// What a message asks for, as far as it can be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A payment to attempt.
    Pay(PayOrder),
    /// A payment that fails as a business outcome (`order.payment_failed`): the order id is
    /// known, but the user or the amount is not valid.
    Invalid {
        /// The order id, valid.
        order_id: OrderId,
        /// Its JSON type, for the event to echo.
        order_id_type: JsonIdType,
        /// `user_id` exactly as received (`null` when absent).
        user_id: Value,
        /// `amount` exactly as received (`null` when absent).
        amount: Value,
        /// The reason `order.payment_failed` carries.
        reason: FailureReason,
    },
    /// A refund to attempt (`refund.order`).
    Refund(RefundOrder),
    /// A refund that fails as a business outcome (`order.refund_failed`): the refund and order
    /// ids are known, but the user or the amount is not valid.
    InvalidRefund {
        /// The refund id and its JSON type.
        refund_id: Echoed<RefundId>,
        /// The order id and its JSON type.
        order_id: Echoed<OrderId>,
        /// `user_id` exactly as received (`null` when absent).
        user_id: Value,
        /// `amount` exactly as received; `None` when absent (a refund of what is left).
        amount: Option<Value>,
        /// The reason `order.refund_failed` carries.
        reason: RefundFailureReason,
    },
    /// No order id (or, for a refund, no refund id) can be recovered: the message goes to the
    /// dead-letter topic.
    Undecodable {
        /// The dead letter's machine-readable reason.
        reason: DeadLetterReason,
        /// A sentence for the operator.
        detail: String,
    },
}

/// One inbound message: its inbox identity, where it came from, its bytes and its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The inbox identity: a message with an identity already claimed is a redelivery.
    pub identity: MessageId,
    /// Where the message was read; `None` for a command built in process.
    pub origin: Option<Origin>,
    /// The bytes as received, kept by a dead letter.
    pub payload: Vec<u8>,
    /// What the message asks for.
    pub command: Command,
    /// The W3C trace context the message came with (its `traceparent`/`tracestate` headers),
    /// stored with its inbox claim; its outcome event continues that trace.
    pub trace: Option<TraceContext>,
}

/// A message identity to claim in the inbox, with the trace context stored beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxClaim {
    /// The inbox identity.
    pub identity: MessageId,
    /// The context the message came with, if any.
    pub trace: Option<TraceContext>,
}

impl Inbound {
    /// The same message with the trace context its headers carried.
    pub fn with_trace(self, trace: Option<TraceContext>) -> Self {
        Self { trace, ..self }
    }

    /// A command built in process (not read from a broker), e.g. by an embedding service.
    pub fn pay(identity: MessageId, order: PayOrder) -> Self {
        let payload = serde_json::to_vec(&serde_json::json!({
            "message_id": identity,
            "order_id": Echoed { id: &order.order_id, json_type: order.id_types.order_id },
            "user_id": Echoed { id: &order.user_id, json_type: order.id_types.user_id },
            "amount": order.amount,
        }))
        .unwrap_or_default();
        Self { identity, origin: None, payload, command: Command::Pay(order), trace: None }
    }

    /// [`Inbound::decode_record`] for a record whose create time is not known.
    pub fn decode(payload: &[u8], message_id_header: Option<&str>, origin: Origin) -> Self {
        Self::decode_record(payload, message_id_header, origin, None)
    }

    /// Decodes a `pay.order` record. Identity: the `message_id` field, else the `message-id`
    /// header, else the record's position, create time (`created_at_ms`, milliseconds since the
    /// epoch) and a hash of its bytes, `"<topic>/<partition>/<offset>@<ms>#<hash>"` (SPEC §4): the
    /// position alone repeats when a topic is recreated or a mirrored cluster takes over. An
    /// invalid `message_id` field or header is ignored in favour of the next rule, which is still
    /// unique per record.
    pub fn decode_record(
        payload: &[u8],
        message_id_header: Option<&str>,
        origin: Origin,
        created_at_ms: Option<i64>,
    ) -> Self {
        Self::decode_with(payload, message_id_header, origin, created_at_ms, command_of)
    }

    /// A record of any command topic: the identity and JSON of [`envelope`], the command its
    /// topic's `command_of` reads from the JSON, or a dead letter when it is not JSON.
    pub(super) fn decode_with(
        payload: &[u8],
        message_id_header: Option<&str>,
        origin: Origin,
        created_at_ms: Option<i64>,
        command_of: fn(&serde_json::Map<String, Value>) -> Command,
    ) -> Self {
        let (identity, json) = envelope(payload, message_id_header, &origin, created_at_ms);
        let command = match json {
            Ok(fields) => command_of(&fields),
            Err(detail) => Command::Undecodable { reason: DeadLetterReason::MalformedJson, detail },
        };
        Self { identity, origin: Some(origin), payload: payload.to_vec(), command, trace: None }
    }
}

/// The inbox identity of a record and its JSON object (or why it is not one), shared by every
/// command topic: `message_id` field, else `message-id` header, else the record's position, create
/// time and a hash of its bytes (see [`Inbound::decode_record`]).
pub(super) fn envelope(
    payload: &[u8],
    message_id_header: Option<&str>,
    origin: &Origin,
    created_at_ms: Option<i64>,
) -> (MessageId, Result<serde_json::Map<String, Value>, String>) {
    let json = if payload.len() > MAX_PAY_ORDER_BYTES {
        Err(format!("payload of {} bytes exceeds {MAX_PAY_ORDER_BYTES}", payload.len()))
    } else {
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(fields)) => Ok(fields),
            Ok(_) => Err("payload is JSON but not an object".to_string()),
            Err(error) => Err(format!("payload is not JSON: {error}")),
        }
    };
    let from_field = json
        .as_ref()
        .ok()
        .and_then(|fields| fields.get("message_id"))
        .and_then(Value::as_str)
        .and_then(|id| MessageId::new(id).ok());
    let identity =
        from_field.or_else(|| message_id_header.and_then(|id| MessageId::new(id).ok())).unwrap_or_else(|| {
            MessageId::of_record(&origin.topic, origin.partition, origin.offset, created_at_ms, payload)
        });
    (identity, json)
}

fn command_of(fields: &serde_json::Map<String, Value>) -> Command {
    let order_value = fields.get("order_id").unwrap_or(&Value::Null);
    let order_id = match order_value {
        Value::Null => {
            return Command::Undecodable {
                reason: DeadLetterReason::MissingField,
                detail: "order_id is missing".into(),
            }
        }
        value => match OrderId::from_json(value) {
            Ok(order_id) => order_id,
            Err(error) => {
                return Command::Undecodable { reason: DeadLetterReason::InvalidField, detail: error.to_string() }
            }
        },
    };
    let user_value = fields.get("user_id").cloned().unwrap_or(Value::Null);
    let amount_value = fields.get("amount").cloned().unwrap_or(Value::Null);
    let id_types = IdTypes { order_id: JsonIdType::of(order_value), user_id: JsonIdType::of(&user_value) };
    let invalid = |reason| Command::Invalid {
        order_id: order_id.clone(),
        order_id_type: id_types.order_id,
        user_id: user_value.clone(),
        amount: amount_value.clone(),
        reason,
    };
    let Ok(user_id) = UserId::from_json(&user_value) else {
        return invalid(FailureReason::AccountNotFound);
    };
    let Ok(amount) = decimal_from_json(&amount_value).and_then(Amount::new) else {
        return invalid(FailureReason::InvalidAmount);
    };
    Command::Pay(PayOrder { order_id, user_id, amount, id_types })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin { topic: "pay.order".into(), partition: 3, offset: 17 }
    }

    fn decode(payload: &str, header: Option<&str>) -> Inbound {
        Inbound::decode(payload.as_bytes(), header, origin())
    }

    #[test]
    fn identity_is_field_then_header_then_position() {
        let body = r#"{"order_id":1,"user_id":2,"amount":3}"#;
        assert_eq!(
            decode(r#"{"message_id":"m1","order_id":1,"user_id":2,"amount":3}"#, Some("h")).identity.as_str(),
            "m1"
        );
        assert_eq!(decode(body, Some("h1")).identity.as_str(), "h1");
        let by_position = decode(body, None).identity;
        assert!(by_position.as_str().starts_with("pay.order/3/17@-#"), "{by_position}");
        assert_eq!(decode("not json", Some("h2")).identity.as_str(), "h2");
        let invalid_field = r#"{"message_id":7,"order_id":1,"user_id":2,"amount":3}"#;
        assert!(decode(invalid_field, None).identity.as_str().starts_with("pay.order/3/17@-#"));
    }

    #[test]
    fn a_position_identity_tells_apart_commands_at_the_same_position() {
        let at = |payload: &str, created_at_ms| {
            Inbound::decode_record(payload.as_bytes(), None, origin(), created_at_ms).identity
        };
        let first = r#"{"order_id":1,"user_id":2,"amount":3}"#;
        let other = r#"{"order_id":2,"user_id":2,"amount":3}"#;
        // A redelivery of the same record is recognised.
        assert_eq!(at(first, Some(1_000)), at(first, Some(1_000)));
        assert_eq!(at(first, Some(1_000)).as_str(), format!("pay.order/3/17@1000#{}", &sha_hex(first)[..16]));
        // A recreated topic (or a mirrored cluster) puts another command at the same position.
        assert_ne!(at(first, Some(1_000)), at(other, Some(1_000)));
        assert_ne!(at(first, Some(1_000)), at(other, None));
        // The same bytes produced again later are another command.
        assert_ne!(at(first, Some(1_000)), at(first, Some(2_000)));
        // The identity fits a message id whatever the topic's name.
        let long = Origin { topic: "t".repeat(249), partition: i32::MAX, offset: i64::MAX };
        let identity = Inbound::decode_record(first.as_bytes(), None, long, Some(i64::MAX)).identity;
        assert!(MessageId::new(identity.as_str()).is_ok(), "{identity}");
    }

    fn sha_hex(payload: &str) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(payload.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn ids_may_be_integers_and_amounts_strings() {
        let inbound = decode(r#"{"order_id":12,"user_id":42,"amount":"10.50","extra":true}"#, None);
        let Command::Pay(order) = inbound.command else { panic!("{:?}", inbound.command) };
        assert_eq!(
            (order.order_id.as_str(), order.user_id.as_str(), order.amount.to_string().as_str()),
            ("12", "42", "10.5")
        );
        assert_eq!(order.id_types, IdTypes { order_id: JsonIdType::Integer, user_id: JsonIdType::Integer });
        let Command::Pay(order) = decode(r#"{"order_id":"12","user_id":42,"amount":1}"#, None).command else {
            panic!("a payment")
        };
        assert_eq!(order.id_types, IdTypes { order_id: JsonIdType::String, user_id: JsonIdType::Integer });
    }

    #[test]
    fn verdicts_follow_the_contract() {
        let reason = |payload: &str| match decode(payload, None).command {
            Command::Pay(_) => "pay".to_string(),
            Command::Invalid { reason, .. } => reason.as_str().to_string(),
            Command::Undecodable { reason, .. } => format!("dlq:{}", reason.as_str()),
            other => panic!("a pay.order record decoded as {other:?}"),
        };
        assert_eq!(reason("{"), "dlq:malformed_json");
        assert_eq!(reason("[1]"), "dlq:malformed_json");
        assert_eq!(reason(r#"{"user_id":1,"amount":1}"#), "dlq:missing_field");
        assert_eq!(reason(r#"{"order_id":"a b","user_id":1,"amount":1}"#), "dlq:invalid_field");
        assert_eq!(reason(r#"{"order_id":1.5,"user_id":1,"amount":1}"#), "dlq:invalid_field");
        assert_eq!(reason(r#"{"order_id":1,"amount":1}"#), "account_not_found");
        assert_eq!(reason(r#"{"order_id":1,"user_id":"a b","amount":1}"#), "account_not_found");
        assert_eq!(reason(r#"{"order_id":1,"user_id":1}"#), "invalid_amount");
        for amount in ["-1", "0", "0.001", "1e400", "\"abc\"", "\"NaN\"", "null", "[1]"] {
            assert_eq!(
                reason(&format!(r#"{{"order_id":1,"user_id":1,"amount":{amount}}}"#)),
                "invalid_amount",
                "{amount}"
            );
        }
    }

    #[test]
    fn oversized_payloads_are_dead_lettered() {
        let big = format!(r#"{{"order_id":1,"user_id":1,"amount":1,"pad":"{}"}}"#, "x".repeat(MAX_PAY_ORDER_BYTES));
        assert!(matches!(
            decode(&big, None).command,
            Command::Undecodable { reason: DeadLetterReason::MalformedJson, .. }
        ));
    }
}
