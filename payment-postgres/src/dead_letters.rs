//! The operator's reads of the `dead_letters` table: the newest first, and one by its id. The
//! consumer writes dead letters inside a batch's unit of work (`apply.rs`); nothing in the
//! service reads them back, so these queries exist for `payment-service dead-letters`.

use chrono::{DateTime, Utc};
use payment_core::domain::{DeadLetter, DeadLetterReason, MessageId, Origin};
use payment_core::ports::StoreError;
use uuid::Uuid;

use crate::error::{corrupt, store_error};
use crate::PgStore;

/// Most dead letters one [`PgStore::dead_letters`] call returns.
pub const DEAD_LETTERS_LIST_MAX: u32 = 1_000;

const COLUMNS: &str = "dead_letter_id, message_id, source_topic, source_partition, source_offset, reason, detail,
     payload, payload_original_bytes, created_at";

#[derive(sqlx::FromRow)]
struct DeadLetterRow {
    dead_letter_id: Uuid,
    message_id: String,
    source_topic: Option<String>,
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    reason: String,
    detail: String,
    payload: Vec<u8>,
    payload_original_bytes: Option<i64>,
    created_at: DateTime<Utc>,
}

fn reason(code: &str) -> Result<DeadLetterReason, StoreError> {
    DeadLetterReason::from_code(code).ok_or_else(|| corrupt("dead letter reason", code))
}

impl TryFrom<DeadLetterRow> for DeadLetter {
    type Error = StoreError;
    fn try_from(row: DeadLetterRow) -> Result<Self, StoreError> {
        let origin = match (row.source_topic, row.source_partition, row.source_offset) {
            (Some(topic), Some(partition), Some(offset)) => Some(Origin { topic, partition, offset }),
            _ => None,
        };
        Ok(DeadLetter {
            dead_letter_id: row.dead_letter_id,
            message_id: MessageId::new(row.message_id).map_err(|e| corrupt("message id", e))?,
            origin,
            reason: reason(&row.reason)?,
            detail: row.detail,
            payload: row.payload,
            payload_original_bytes: row
                .payload_original_bytes
                .map(u64::try_from)
                .transpose()
                .map_err(|e| corrupt("original payload size", e))?,
            created_at: row.created_at,
        })
    }
}

impl PgStore {
    /// The newest dead letters first, at most `limit` (capped at [`DEAD_LETTERS_LIST_MAX`]).
    pub async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        let limit = i64::from(limit.clamp(1, DEAD_LETTERS_LIST_MAX));
        let rows = sqlx::query_as::<_, DeadLetterRow>(&format!(
            "SELECT {COLUMNS} FROM dead_letters ORDER BY seq DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(DeadLetter::try_from).collect()
    }

    /// One dead letter by its `dead_letter_id`, if it exists.
    pub async fn dead_letter(&self, dead_letter_id: Uuid) -> Result<Option<DeadLetter>, StoreError> {
        let row = sqlx::query_as::<_, DeadLetterRow>(&format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE dead_letter_id = $1"
        ))
        .bind(dead_letter_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        row.map(DeadLetter::try_from).transpose()
    }
}
