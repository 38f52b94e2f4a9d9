//! `refund.order` commands as they arrive: decoded once, here, like `pay.order` (same envelope,
//! same identity rules), into a [`RefundOrder`] or a business failure.
//!
//! Decoding never fails: a message without a recoverable refund and order id still gets an
//! identity and goes to the dead-letter topic, so it is claimed once instead of blocking its
//! partition.

use serde_json::Value;

use super::money::decimal_from_json;
use super::{
    Amount, Command, DeadLetterReason, Echoed, Inbound, JsonIdType, MessageId, OrderId, Origin, RefundFailureReason,
    RefundId, UserId,
};

/// Most characters of a refund's free-text `reason` kept; the rest is cut (it is a note for
/// people, not part of the refund's identity).
pub const MAX_REFUND_REASON_CHARS: usize = 256;

/// A valid refund command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundOrder {
    /// Identifies the refund; applied at most once, ever.
    pub refund_id: RefundId,
    /// The paid order to refund (part of).
    pub order_id: OrderId,
    /// The user the order was paid by, credited.
    pub user_id: UserId,
    /// How much to give back; `None` for whatever of the payment is not refunded yet.
    pub amount: Option<Amount>,
    /// The shop's note (a cancellation, a return), at most [`MAX_REFUND_REASON_CHARS`].
    pub reason: Option<String>,
    /// How the command spelled its ids, for the events to echo.
    pub id_types: RefundIdTypes,
}

impl RefundOrder {
    /// A command built in process: its ids are echoed as JSON strings.
    pub fn new(refund_id: RefundId, order_id: OrderId, user_id: UserId, amount: Option<Amount>) -> Self {
        Self { refund_id, order_id, user_id, amount, reason: None, id_types: RefundIdTypes::default() }
    }
}

/// The JSON types of a refund command's ids (strings for a command built in process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefundIdTypes {
    /// The JSON type of `refund_id`.
    pub refund_id: JsonIdType,
    /// The JSON type of `order_id`.
    pub order_id: JsonIdType,
    /// The JSON type of `user_id`.
    pub user_id: JsonIdType,
}

impl Inbound {
    /// A refund built in process (not read from a broker), e.g. by an embedding service.
    pub fn refund(identity: MessageId, refund: RefundOrder) -> Self {
        let mut body = serde_json::json!({
            "message_id": identity,
            "refund_id": Echoed { id: &refund.refund_id, json_type: refund.id_types.refund_id },
            "order_id": Echoed { id: &refund.order_id, json_type: refund.id_types.order_id },
            "user_id": Echoed { id: &refund.user_id, json_type: refund.id_types.user_id },
        });
        if let Some(amount) = refund.amount {
            body["amount"] = serde_json::json!(amount);
        }
        if let Some(reason) = &refund.reason {
            body["reason"] = serde_json::json!(reason);
        }
        let payload = serde_json::to_vec(&body).unwrap_or_default();
        Self { identity, origin: None, payload, command: Command::Refund(refund), trace: None }
    }

    /// Decodes a `refund.order` record, with the identity rules of [`Inbound::decode_record`].
    pub fn decode_refund(
        payload: &[u8],
        message_id_header: Option<&str>,
        origin: Origin,
        created_at_ms: Option<i64>,
    ) -> Self {
        Self::decode_with(payload, message_id_header, origin, created_at_ms, refund_of)
    }
}

/// A required id, or why the message is dead-lettered when it cannot be recovered.
fn required<T>(
    fields: &serde_json::Map<String, Value>,
    name: &str,
    parse: fn(&Value) -> Result<T, super::IdError>,
) -> Result<(T, JsonIdType), (DeadLetterReason, String)> {
    match fields.get(name).unwrap_or(&Value::Null) {
        Value::Null => Err((DeadLetterReason::MissingField, format!("{name} is missing"))),
        value => match parse(value) {
            Ok(id) => Ok((id, JsonIdType::of(value))),
            Err(error) => Err((DeadLetterReason::InvalidField, error.to_string())),
        },
    }
}

fn refund_of(fields: &serde_json::Map<String, Value>) -> Command {
    let ids = required(fields, "refund_id", RefundId::from_json)
        .and_then(|refund| Ok((refund, required(fields, "order_id", OrderId::from_json)?)));
    let ((refund_id, refund_type), (order_id, order_type)) = match ids {
        Ok(ids) => ids,
        Err((reason, detail)) => return Command::Undecodable { reason, detail },
    };
    let user_value = fields.get("user_id").cloned().unwrap_or(Value::Null);
    let amount_value = fields.get("amount").filter(|v| !v.is_null()).cloned();
    let id_types = RefundIdTypes { refund_id: refund_type, order_id: order_type, user_id: JsonIdType::of(&user_value) };
    let invalid = |reason| Command::InvalidRefund {
        refund_id: Echoed { id: refund_id.clone(), json_type: refund_type },
        order_id: Echoed { id: order_id.clone(), json_type: order_type },
        user_id: user_value.clone(),
        amount: amount_value.clone(),
        reason,
    };
    let Ok(user_id) = UserId::from_json(&user_value) else {
        // No valid user can be the one who paid.
        return invalid(RefundFailureReason::UserMismatch);
    };
    let amount = match &amount_value {
        None => None,
        Some(value) => match decimal_from_json(value).and_then(Amount::new) {
            Ok(amount) => Some(amount),
            Err(_) => return invalid(RefundFailureReason::InvalidAmount),
        },
    };
    let reason = fields
        .get("reason")
        .and_then(Value::as_str)
        .map(|text| text.chars().filter(|c| !c.is_control()).take(MAX_REFUND_REASON_CHARS).collect());
    Command::Refund(RefundOrder { refund_id, order_id, user_id, amount, reason, id_types })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(payload: &str) -> Inbound {
        Inbound::decode_refund(
            payload.as_bytes(),
            None,
            Origin { topic: "refund.order".into(), partition: 1, offset: 5 },
            None,
        )
    }

    fn verdict(payload: &str) -> String {
        match decode(payload).command {
            Command::Refund(refund) => format!("refund {:?}", refund.amount.map(|a| a.to_string())),
            Command::InvalidRefund { reason, .. } => reason.as_str().to_string(),
            Command::Undecodable { reason, .. } => format!("dlq:{}", reason.as_str()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn identity_follows_the_pay_order_rules() {
        assert_eq!(decode(r#"{"message_id":"m1","refund_id":1,"order_id":2,"user_id":3}"#).identity.as_str(), "m1");
        // No message id: the position, the create time (unknown here: `-`) and a hash of the bytes.
        let positional = decode(r#"{"refund_id":1,"order_id":2,"user_id":3}"#).identity;
        assert!(positional.as_str().starts_with("refund.order/1/5@-#"), "{}", positional.as_str());
        let other = decode(r#"{"refund_id":2,"order_id":2,"user_id":3}"#).identity;
        assert_ne!(positional, other, "another command at the same position is another identity");
    }

    #[test]
    fn ids_may_be_integers_and_amount_may_be_omitted() {
        let Command::Refund(refund) =
            decode(r#"{"refund_id":7,"order_id":"o","user_id":42,"reason":"return"}"#).command
        else {
            panic!("a refund")
        };
        assert_eq!((refund.refund_id.as_str(), refund.order_id.as_str(), refund.user_id.as_str()), ("7", "o", "42"));
        assert_eq!(
            refund.id_types,
            RefundIdTypes {
                refund_id: JsonIdType::Integer,
                order_id: JsonIdType::String,
                user_id: JsonIdType::Integer
            }
        );
        assert_eq!((refund.amount, refund.reason.as_deref()), (None, Some("return")));
    }

    #[test]
    fn verdicts_follow_the_contract() {
        assert_eq!(verdict("{"), "dlq:malformed_json");
        assert_eq!(verdict(r#"{"order_id":1,"user_id":1}"#), "dlq:missing_field");
        assert_eq!(verdict(r#"{"refund_id":1,"user_id":1}"#), "dlq:missing_field");
        assert_eq!(verdict(r#"{"refund_id":"a b","order_id":1,"user_id":1}"#), "dlq:invalid_field");
        assert_eq!(verdict(r#"{"refund_id":1,"order_id":1}"#), "user_mismatch");
        assert_eq!(verdict(r#"{"refund_id":1,"order_id":1,"user_id":"a b"}"#), "user_mismatch");
        assert_eq!(verdict(r#"{"refund_id":1,"order_id":1,"user_id":1,"amount":null}"#), "refund None");
        assert_eq!(verdict(r#"{"refund_id":1,"order_id":1,"user_id":1,"amount":"2.50"}"#), "refund Some(\"2.5\")");
        for amount in ["-1", "0", "0.001", "1e400", "\"abc\"", "[1]"] {
            assert_eq!(
                verdict(&format!(r#"{{"refund_id":1,"order_id":1,"user_id":1,"amount":{amount}}}"#)),
                "invalid_amount"
            );
        }
    }

    #[test]
    fn a_long_reason_is_cut() {
        let payload = format!(r#"{{"refund_id":1,"order_id":1,"user_id":1,"reason":"{}"}}"#, "x".repeat(1000));
        let Command::Refund(refund) = decode(&payload).command else { panic!("a refund") };
        assert_eq!(refund.reason.map(|r| r.chars().count()), Some(MAX_REFUND_REASON_CHARS));
    }
}
