//! All effects of a unit of work in **one** statement: each kind of row is written by a
//! data-modifying CTE over `UNNEST`ed arrays, so a batch of 1,000 costs what a batch of 1 does.

use payment_core::decide::Effects;
use payment_core::ports::StoreError;
use sqlx::{PgConnection, Row};

use crate::error::store_error;

const APPLY: &str = "
WITH
balances AS (
    UPDATE accounts AS a SET balance = u.to_balance
    FROM UNNEST($1::TEXT[], $2::NUMERIC[], $3::NUMERIC[]) AS u(user_id, from_balance, to_balance)
    WHERE a.user_id = u.user_id AND a.balance = u.from_balance
    RETURNING 1
),
ledger AS (
    INSERT INTO ledger_entries (entry_id, user_id, kind, amount, balance_after, order_id, refund_id, created_at,
                                cause)
    SELECT entry_id, user_id, kind, amount, balance_after, order_id, refund_id, created_at, cause
    FROM UNNEST($4::UUID[], $5::TEXT[], $6::TEXT[], $7::NUMERIC[], $8::NUMERIC[], $9::TEXT[], $46::TEXT[],
                $10::TIMESTAMPTZ[], $47::TEXT[])
        WITH ORDINALITY AS e(entry_id, user_id, kind, amount, balance_after, order_id, refund_id, created_at, cause, n)
    ORDER BY n
    RETURNING 1
),
payments AS (
    INSERT INTO payments (order_id, user_id, amount, transaction_id, event_id, paid_at)
    SELECT * FROM UNNEST($11::TEXT[], $12::TEXT[], $13::NUMERIC[], $14::UUID[], $15::UUID[], $16::TIMESTAMPTZ[])
    RETURNING 1
),
outbox AS (
    INSERT INTO outbox (topic, key, payload, headers, traceparent, tracestate)
    SELECT topic, key, payload, headers::JSONB, traceparent, tracestate
    FROM UNNEST($17::TEXT[], $18::TEXT[], $19::BYTEA[], $20::TEXT[], $48::TEXT[], $49::TEXT[])
        WITH ORDINALITY AS o(topic, key, payload, headers, traceparent, tracestate, n)
    ORDER BY n
    RETURNING 1
),
dead_letters AS (
    INSERT INTO dead_letters
        (dead_letter_id, message_id, source_topic, source_partition, source_offset, reason, detail, payload,
         payload_original_bytes, created_at)
    SELECT id, message_id, topic, part, offs, reason, detail, payload, original_bytes, created_at
    FROM UNNEST($21::UUID[], $22::TEXT[], $23::TEXT[], $24::INT[], $25::BIGINT[], $26::TEXT[], $27::TEXT[],
                $28::BYTEA[], $35::BIGINT[], $29::TIMESTAMPTZ[])
        WITH ORDINALITY AS d(id, message_id, topic, part, offs, reason, detail, payload, original_bytes, created_at, n)
    ORDER BY n
    RETURNING 1
),
refunds AS (
    INSERT INTO refunds
        (refund_id, order_id, user_id, amount, requested, refundable_left, reason, transaction_id, event_id,
         refunded_at)
    SELECT * FROM UNNEST($36::TEXT[], $37::TEXT[], $38::TEXT[], $39::NUMERIC[], $40::NUMERIC[], $41::NUMERIC[],
                         $42::TEXT[], $43::UUID[], $44::UUID[], $45::TIMESTAMPTZ[])
    RETURNING 1
),
keys AS (
    INSERT INTO idempotency_keys (user_id, key, amount, balance, created_at)
    SELECT * FROM UNNEST($30::TEXT[], $31::TEXT[], $32::NUMERIC[], $33::NUMERIC[], $34::TIMESTAMPTZ[])
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM balances) AS balances_updated";

macro_rules! column {
    ($rows:expr, |$row:ident| $value:expr) => {
        $rows.iter().map(|$row| $value).collect::<Vec<_>>()
    };
}

/// Each ledger entry's cause, in its stored form (the decision sets it; see [`EntryCause`]).
///
/// [`EntryCause`]: payment_core::domain::EntryCause
fn causes(effects: &Effects) -> Vec<Option<String>> {
    effects.ledger.iter().map(|entry| entry.cause.as_ref().map(|cause| cause.stored())).collect()
}

pub(crate) async fn apply(conn: &mut PgConnection, effects: &Effects) -> Result<(), StoreError> {
    let (b, l, p, o, d, k, r) = (
        &effects.balance_updates,
        &effects.ledger,
        &effects.payments,
        &effects.outbox,
        &effects.dead_letters,
        &effects.idempotency,
        &effects.refunds,
    );
    let headers = column!(o, |e| serde_json::to_string(&e.headers).unwrap_or_else(|_| "[]".into()));
    let row = sqlx::query(APPLY)
        .bind(column!(b, |u| u.user_id.to_string()))
        .bind(column!(b, |u| u.from.value()))
        .bind(column!(b, |u| u.to.value()))
        .bind(column!(l, |e| e.entry_id))
        .bind(column!(l, |e| e.user_id.to_string()))
        .bind(column!(l, |e| e.kind.as_str().to_string()))
        .bind(column!(l, |e| e.amount.value()))
        .bind(column!(l, |e| e.balance_after.value()))
        .bind(column!(l, |e| e.order_id.as_ref().map(ToString::to_string)))
        .bind(column!(l, |e| e.created_at))
        .bind(column!(p, |x| x.order_id.to_string()))
        .bind(column!(p, |x| x.user_id.to_string()))
        .bind(column!(p, |x| x.amount.value()))
        .bind(column!(p, |x| x.transaction_id))
        .bind(column!(p, |x| x.event_id))
        .bind(column!(p, |x| x.paid_at))
        .bind(column!(o, |e| e.kind.as_str().to_string()))
        .bind(column!(o, |e| e.key.clone()))
        .bind(column!(o, |e| e.payload.clone()))
        .bind(headers)
        .bind(column!(d, |x| x.dead_letter_id))
        .bind(column!(d, |x| x.message_id.to_string()))
        .bind(column!(d, |x| x.origin.as_ref().map(|o| o.topic.clone())))
        .bind(column!(d, |x| x.origin.as_ref().map(|o| o.partition)))
        .bind(column!(d, |x| x.origin.as_ref().map(|o| o.offset)))
        .bind(column!(d, |x| x.reason.as_str().to_string()))
        .bind(column!(d, |x| x.detail.clone()))
        .bind(column!(d, |x| x.payload.clone()))
        .bind(column!(d, |x| x.created_at))
        .bind(column!(k, |x| x.user_id.to_string()))
        .bind(column!(k, |x| x.key.to_string()))
        .bind(column!(k, |x| x.amount.value()))
        .bind(column!(k, |x| x.balance.value()))
        .bind(column!(k, |x| x.created_at))
        .bind(column!(d, |x| x.payload_original_bytes.and_then(|n| i64::try_from(n).ok())))
        .bind(column!(r, |x| x.refund_id.to_string()))
        .bind(column!(r, |x| x.order_id.to_string()))
        .bind(column!(r, |x| x.user_id.to_string()))
        .bind(column!(r, |x| x.amount.value()))
        .bind(column!(r, |x| x.requested.map(|a| a.value())))
        .bind(column!(r, |x| x.refundable_left.value()))
        .bind(column!(r, |x| x.reason.clone()))
        .bind(column!(r, |x| x.transaction_id))
        .bind(column!(r, |x| x.event_id))
        .bind(column!(r, |x| x.refunded_at))
        .bind(column!(l, |e| e.refund_id.as_ref().map(ToString::to_string)))
        .bind(causes(effects))
        .bind(column!(o, |e| e.trace.as_ref().map(|t| t.traceparent())))
        .bind(column!(o, |e| e.trace.as_ref().and_then(|t| t.tracestate().map(str::to_owned))))
        .fetch_one(conn)
        .await
        .map_err(store_error)?;
    let updated: i64 = row.try_get("balances_updated").map_err(store_error)?;
    if updated != b.len() as i64 {
        return Err(StoreError::Conflict(format!(
            "{} of {} balance updates found the balance they were decided on",
            updated,
            b.len()
        )));
    }
    Ok(())
}
