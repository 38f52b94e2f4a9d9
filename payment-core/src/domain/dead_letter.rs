//! Dead letters: messages that cannot be applied, kept with their original bytes and a reason.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::MessageId;

/// Where a message came from on the broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The machine-readable reason a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The bytes are not a JSON object.
    MalformedJson,
    /// `order_id` is absent.
    MissingField,
    /// `order_id` is present but not a valid order id.
    InvalidField,
    /// The order was already paid by another user or for another amount.
    ConflictingDuplicate,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MalformedJson => "malformed_json",
            DeadLetterReason::MissingField => "missing_field",
            DeadLetterReason::InvalidField => "invalid_field",
            DeadLetterReason::ConflictingDuplicate => "conflicting_duplicate",
        }
    }
}

/// A message that was not applied. Stored, and published to the dead-letter topic through the
/// outbox, in the same transaction that claimed the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub dead_letter_id: Uuid,
    pub message_id: MessageId,
    pub origin: Option<Origin>,
    pub reason: DeadLetterReason,
    /// A sentence for the operator.
    pub detail: String,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
}
