//! Dead letters: messages that cannot be applied, kept with their original bytes (up to a cap)
//! and a reason.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::MessageId;

/// Where a message came from on the broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The topic the message was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
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
    /// The store refused the command every time it was applied, alone (a constraint the domain
    /// did not foresee, a corrupt row): it is set aside so the commands behind it go on.
    StoreRejected,
}

impl DeadLetterReason {
    /// Every reason, so that a stored code can be read back by one function ([`from_code`]).
    ///
    /// [`from_code`]: DeadLetterReason::from_code
    pub const ALL: [DeadLetterReason; 5] = [
        DeadLetterReason::MalformedJson,
        DeadLetterReason::MissingField,
        DeadLetterReason::InvalidField,
        DeadLetterReason::ConflictingDuplicate,
        DeadLetterReason::StoreRejected,
    ];

    /// The reason a stored code stands for; `None` for a code this build does not know.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == code)
    }

    /// The stable code stored with the row and sent as the `reason-code` header.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::MalformedJson => "malformed_json",
            DeadLetterReason::MissingField => "missing_field",
            DeadLetterReason::InvalidField => "invalid_field",
            DeadLetterReason::ConflictingDuplicate => "conflicting_duplicate",
            DeadLetterReason::StoreRejected => "store_rejected",
        }
    }
}

/// Most bytes of the original message a dead letter keeps. A larger message (the consumer
/// dead-letters anything over `MAX_PAY_ORDER_BYTES` unread) is cut here, when the dead letter is
/// built, so the stored row and the published record carry the same bytes, and neither the table
/// nor the dead-letter topic receives a record the size of whatever a producer sent.
pub const MAX_DEAD_LETTER_PAYLOAD_BYTES: usize = 64 * 1024;

/// A message that was not applied. Stored, and published to the dead-letter topic through the
/// outbox, in the same transaction that claimed the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Identifies the dead letter (the `dead-letter-id` header).
    pub dead_letter_id: Uuid,
    /// The inbox identity of the message, claimed with the dead letter.
    pub message_id: MessageId,
    /// Where the message was read; `None` for a command built in process.
    pub origin: Option<Origin>,
    /// Why it was not applied.
    pub reason: DeadLetterReason,
    /// A sentence for the operator.
    pub detail: String,
    /// The original bytes, at most [`MAX_DEAD_LETTER_PAYLOAD_BYTES`] of them.
    pub payload: Vec<u8>,
    /// The size of the original message when `payload` is only its first bytes; `None` when
    /// `payload` is the whole message.
    pub payload_original_bytes: Option<u64>,
    /// When it was dead-lettered.
    pub created_at: DateTime<Utc>,
}

impl DeadLetter {
    /// The payload a dead letter keeps of `original`, and the original size if it was cut.
    pub fn capped_payload(original: &[u8]) -> (Vec<u8>, Option<u64>) {
        if original.len() <= MAX_DEAD_LETTER_PAYLOAD_BYTES {
            (original.to_vec(), None)
        } else {
            (original[..MAX_DEAD_LETTER_PAYLOAD_BYTES].to_vec(), Some(original.len() as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_up_to_the_cap_are_kept_whole() {
        for size in [0, 1, MAX_DEAD_LETTER_PAYLOAD_BYTES] {
            let original = vec![b'x'; size];
            assert_eq!(DeadLetter::capped_payload(&original), (original.clone(), None), "{size} bytes");
        }
    }

    #[test]
    fn larger_payloads_keep_their_first_bytes_and_their_size() {
        let original: Vec<u8> = (0..MAX_DEAD_LETTER_PAYLOAD_BYTES + 1).map(|i| (i % 251) as u8).collect();
        let (payload, original_bytes) = DeadLetter::capped_payload(&original);
        assert_eq!(payload, original[..MAX_DEAD_LETTER_PAYLOAD_BYTES]);
        assert_eq!(original_bytes, Some(MAX_DEAD_LETTER_PAYLOAD_BYTES as u64 + 1));
    }
}

#[cfg(test)]
mod reason_tests {
    use super::DeadLetterReason;

    #[test]
    fn every_reason_reads_back_from_its_code() {
        for reason in DeadLetterReason::ALL {
            assert_eq!(DeadLetterReason::from_code(reason.as_str()), Some(reason));
        }
        assert_eq!(DeadLetterReason::from_code("store_rejected"), Some(DeadLetterReason::StoreRejected));
        assert_eq!(DeadLetterReason::from_code("nonsense"), None);
    }
}
