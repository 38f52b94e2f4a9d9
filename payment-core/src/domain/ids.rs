//! Identifiers, each validated once at the edge: [`UserId`], [`OrderId`], [`RefundId`],
//! [`MessageId`], [`IdempotencyKey`], [`RequestId`].
//!
//! User and order ids arrive from Kafka as JSON strings or integers; `42` and `"42"` are the same
//! id, so integers are kept as their decimal text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a piece of text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Too short or too long.
    #[error("{kind} must be {min}..={max} characters long, got {len}")]
    Length {
        /// Which id, as the API names it (`user_id`, `Idempotency-Key`, …).
        kind: &'static str,
        /// Fewest characters allowed.
        min: usize,
        /// Most characters allowed.
        max: usize,
        /// Characters given.
        len: usize,
    },
    /// A character outside the id's alphabet.
    #[error("{kind} contains a character outside {allowed}")]
    Alphabet {
        /// Which id, as the API names it.
        kind: &'static str,
        /// The alphabet, in words.
        allowed: &'static str,
    },
    /// The JSON value is neither a string nor an integer.
    #[error("{kind} must be a JSON string or integer")]
    NotStringOrInteger {
        /// Which id, as the API names it.
        kind: &'static str,
    },
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal, max = $max:literal, allowed = $allowed:literal, $valid:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Most characters (not bytes) the id may have.
            pub const MAX_LEN: usize = $max;

            /// Validates `text`: 1 to `MAX_LEN` characters of the id's alphabet.
            pub fn new(text: impl Into<String>) -> Result<Self, IdError> {
                let text = text.into();
                let len = text.chars().count();
                if !(1..=$max).contains(&len) {
                    return Err(IdError::Length { kind: $kind, min: 1, max: $max, len });
                }
                let valid: fn(char) -> bool = $valid;
                if !text.chars().all(valid) {
                    return Err(IdError::Alphabet { kind: $kind, allowed: $allowed });
                }
                Ok(Self(text))
            }

            /// The id's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::new(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The owner of an account: 1..=64 characters of `[A-Za-z0-9._:-]`.
    UserId, "user_id", max = 64, allowed = "[A-Za-z0-9._:-]",
    |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
);
identifier!(
    /// A shop order: 1..=128 printable ASCII characters, no whitespace.
    OrderId, "order_id", max = 128, allowed = "printable ASCII without whitespace",
    |c| c.is_ascii_graphic()
);
identifier!(
    /// A shop's refund of (part of) an order: 1..=128 printable ASCII characters, no whitespace.
    /// Applied at most once, ever.
    RefundId, "refund_id", max = 128, allowed = "printable ASCII without whitespace",
    |c| c.is_ascii_graphic()
);
identifier!(
    /// The inbox identity of a `pay.order` message: 1..=256 characters, no control characters.
    MessageId, "message_id", max = 256, allowed = "non-control characters",
    |c| !c.is_control()
);
identifier!(
    /// The `Idempotency-Key` of a deposit: 1..=255 printable ASCII characters (spaces allowed).
    IdempotencyKey, "Idempotency-Key", max = 255, allowed = "printable ASCII",
    |c| c.is_ascii_graphic() || c == ' '
);

impl MessageId {
    /// The fallback identity of a record without `message_id`:
    /// `"<topic>/<partition>/<offset>@<create time ms>#<sha-256 of the payload, 16 hex digits>"`.
    /// The position alone repeats when a topic is recreated or a mirrored cluster takes over
    /// (issue 18 (1)); a redelivery of the same record keeps all three parts, while another
    /// command landing at the same position differs in its bytes or its create time. Kafka topic
    /// names are short and plain; anything else is cut and cleaned so this cannot fail.
    pub(crate) fn of_record(
        topic: &str,
        partition: i32,
        offset: i64,
        created_at_ms: Option<i64>,
        payload: &[u8],
    ) -> Self {
        use sha2::{Digest, Sha256};
        let topic: String = topic.chars().filter(|c| !c.is_control()).take(180).collect();
        let digest = Sha256::digest(payload);
        let hash: String = digest.iter().take(8).map(|byte| format!("{byte:02x}")).collect();
        // No create time (a broker or client that does not report one): the hash still tells
        // two commands apart, the `-` says which case this is.
        let created = created_at_ms.map_or_else(|| "-".to_string(), |ms| ms.to_string());
        Self(format!("{topic}/{partition}/{offset}@{created}#{hash}"))
    }
}

/// The JSON type a user or order id arrived in. Events echo it, so that a typed consumer (a Go
/// struct with `int64` ids, say) decodes its own ids; `42` and `"42"` are still the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum JsonIdType {
    /// A JSON string, and every id not read from JSON.
    #[default]
    String,
    /// A JSON integer.
    Integer,
}

impl JsonIdType {
    /// The type of `value` as an id: an integer, or (for anything else) a string.
    pub fn of(value: &serde_json::Value) -> Self {
        if value.is_number() {
            JsonIdType::Integer
        } else {
            JsonIdType::String
        }
    }
}

/// An id as an event echoes it: its text, serialised in the JSON type of the command that named
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echoed<T> {
    /// The id.
    pub id: T,
    /// How it is serialised: a JSON string or integer.
    pub json_type: JsonIdType,
}

impl<T: fmt::Display> Serialize for Echoed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.id.to_string();
        // An integer id was read from a JSON integer, whose decimal text is kept exactly
        // (`arbitrary_precision`), so it parses back; were it not to, the text is still the id.
        match (self.json_type, text.parse::<serde_json::Number>()) {
            (JsonIdType::Integer, Ok(number)) => number.serialize(serializer),
            _ => serializer.serialize_str(&text),
        }
    }
}

/// Reads a string-or-integer id from JSON; integers keep their decimal text.
pub(crate) fn id_text_from_json(kind: &'static str, value: &serde_json::Value) -> Result<String, IdError> {
    match value {
        serde_json::Value::String(text) => Ok(text.clone()),
        serde_json::Value::Number(number) => {
            let text = number.to_string();
            let digits = text.strip_prefix('-').unwrap_or(&text);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                Ok(text)
            } else {
                Err(IdError::NotStringOrInteger { kind })
            }
        }
        _ => Err(IdError::NotStringOrInteger { kind }),
    }
}

macro_rules! string_or_integer {
    ($name:ident, $kind:literal) => {
        impl $name {
            /// Reads the id from a JSON string or integer.
            pub fn from_json(value: &serde_json::Value) -> Result<Self, IdError> {
                Self::new(id_text_from_json($kind, value)?)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = serde_json::Value::deserialize(deserializer)?;
                Self::from_json(&value).map_err(serde::de::Error::custom)
            }
        }
    };
}

identifier!(
    /// The `X-Request-Id` of an HTTP request: 1..=128 printable ASCII characters, no whitespace.
    /// Made up by the service when the request has none; recorded as the cause of a deposit
    /// without an `Idempotency-Key`.
    RequestId, "X-Request-Id", max = 128, allowed = "printable ASCII without whitespace",
    |c| c.is_ascii_graphic()
);

string_or_integer!(UserId, "user_id");
string_or_integer!(OrderId, "order_id");
string_or_integer!(RefundId, "refund_id");

macro_rules! string_only {
    ($name:ident) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Self::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_only!(MessageId);
string_only!(IdempotencyKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_alphabet_and_length() {
        for ok in ["u1", "a.b_c:d-e", "42", &"x".repeat(64)] {
            assert!(UserId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "é", "a/b", &"x".repeat(65)] {
            assert!(UserId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn integer_and_string_ids_are_the_same_id() {
        let a: UserId = serde_json::from_str("42").unwrap();
        let b: UserId = serde_json::from_str("\"42\"").unwrap();
        assert_eq!(a, b);
        let order: OrderId = serde_json::from_str("12345678901234567890123").unwrap();
        assert_eq!(order.as_str(), "12345678901234567890123");
        assert!(serde_json::from_str::<UserId>("4.2").is_err());
        assert!(serde_json::from_str::<UserId>("1e3").is_err());
        assert!(serde_json::from_str::<OrderId>("null").is_err());
        assert!(serde_json::from_str::<OrderId>("[1]").is_err());
    }

    #[test]
    fn order_ids_are_printable_ascii_without_whitespace() {
        assert!(OrderId::new("A-1/2#x").is_ok());
        assert!(OrderId::new("a b").is_err());
        assert!(OrderId::new("a\tb").is_err());
        assert!(OrderId::new("ü").is_err());
        assert!(OrderId::new("x".repeat(129)).is_err());
    }

    #[test]
    fn message_ids_and_keys_refuse_control_characters() {
        assert!(MessageId::new("pay.order/0/17").is_ok());
        assert!(MessageId::new("a\nb").is_err());
        assert!(IdempotencyKey::new("retry key 1").is_ok());
        assert!(IdempotencyKey::new("k".repeat(256)).is_err());
    }
}
