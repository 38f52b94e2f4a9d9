//! The outbox port on PostgreSQL: ordered reads of unpublished rows, marking, parking (the
//! `publish_failed_at`/`publish_error` columns), a leader lock held by a dedicated connection,
//! and `LISTEN/NOTIFY` wake-ups raised by the outbox trigger.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payment_core::domain::{EventKind, OutboxEvent, TraceContext};
use payment_core::ports::{Leadership, Outbox, OutboxRecord, ParkedRecord, StoreError, Wakeups, MAX_OUTBOX_BATCH_ROWS};
use sqlx::postgres::PgListener;
use sqlx::{ConnectOptions, Connection, PgConnection, PgExecutor};

use crate::error::{corrupt, store_error};
use crate::PgStore;

/// The channel the outbox trigger notifies.
pub const OUTBOX_CHANNEL: &str = "payment_outbox";
/// The advisory lock key of the publisher: one active publisher per database.
pub const PUBLISHER_LOCK_KEY: i64 = 0x7061_796d_656e_7473; // "payments"

/// Server-side TCP keepalives of the lock connection: idle seconds before the first probe, seconds
/// between probes, probes lost before the server drops the connection. A leader whose host
/// vanished without closing its socket thus loses the lock after about 30 s, not after the
/// kernel's default of two hours, and a standby takes over.
pub const LEADER_KEEPALIVE_IDLE_SECS: u32 = 15;
/// Seconds between keepalive probes of the lock connection (see [`LEADER_KEEPALIVE_IDLE_SECS`]).
pub const LEADER_KEEPALIVE_INTERVAL_SECS: u32 = 5;
/// Unanswered probes after which the server drops the lock connection and frees the lock.
pub const LEADER_KEEPALIVE_COUNT: u32 = 3;
/// Longest wait for the lock connection to answer whether it still holds the lock; past it the
/// leader steps down (the server, or the way to it, is gone).
const LEADER_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: i64,
    topic: String,
    key: Option<String>,
    payload: Vec<u8>,
    headers: sqlx::types::Json<Vec<(String, String)>>,
    created_at: DateTime<Utc>,
    traceparent: Option<String>,
    tracestate: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ParkedRow {
    #[sqlx(flatten)]
    row: OutboxRow,
    publish_failed_at: DateTime<Utc>,
    publish_error: String,
}

impl TryFrom<ParkedRow> for ParkedRecord {
    type Error = StoreError;
    fn try_from(parked: ParkedRow) -> Result<Self, StoreError> {
        let record = OutboxRecord::try_from(parked.row)?;
        Ok(ParkedRecord {
            id: record.id,
            event: record.event,
            created_at: record.created_at,
            parked_at: parked.publish_failed_at,
            error: parked.publish_error,
        })
    }
}

impl TryFrom<OutboxRow> for OutboxRecord {
    type Error = StoreError;
    fn try_from(row: OutboxRow) -> Result<Self, StoreError> {
        let kind = EventKind::parse(&row.topic).ok_or_else(|| corrupt("outbox topic", &row.topic))?;
        // A stored context that no longer parses (written by hand, say) costs the event its
        // trace, not its publication.
        let trace = TraceContext::from_headers(row.traceparent.as_deref(), row.tracestate.as_deref());
        let event = OutboxEvent { kind, key: row.key, payload: row.payload, headers: row.headers.0, trace };
        Ok(OutboxRecord { id: row.id, event, created_at: row.created_at })
    }
}

/// Leadership of the publisher: the advisory lock lives as long as this connection.
pub struct PgLeader {
    connection: PgConnection,
}

#[async_trait]
impl Leadership for PgLeader {
    async fn still_leading(&mut self) -> bool {
        let held = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
             WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
               AND ((classid::BIGINT << 32) | objid::BIGINT) = $1)",
        )
        .bind(PUBLISHER_LOCK_KEY)
        .fetch_one(&mut self.connection);
        matches!(tokio::time::timeout(LEADER_CHECK_TIMEOUT, held).await, Ok(Ok(true)))
    }
}

/// `LISTEN` on the outbox channel.
pub struct PgWakeups {
    listener: PgListener,
}

#[async_trait]
impl Wakeups for PgWakeups {
    async fn next(&mut self) -> Result<(), StoreError> {
        self.listener.recv().await.map(drop).map_err(store_error)
    }
}

impl PgStore {
    /// The options of the publisher's lock connection: the pool's, with server-side TCP
    /// keepalives ([`LEADER_KEEPALIVE_IDLE_SECS`] and the two after it).
    pub fn leader_connect_options(&self) -> sqlx::postgres::PgConnectOptions {
        let idle = LEADER_KEEPALIVE_IDLE_SECS.to_string();
        let interval = LEADER_KEEPALIVE_INTERVAL_SECS.to_string();
        let count = LEADER_KEEPALIVE_COUNT.to_string();
        (*self.pool.connect_options()).clone().options([
            ("tcp_keepalives_idle", idle.as_str()),
            ("tcp_keepalives_interval", interval.as_str()),
            ("tcp_keepalives_count", count.as_str()),
        ])
    }

    /// Every outbox row, published or not, in id order (for tests and audits).
    pub async fn all_outbox_rows(&self) -> Result<Vec<OutboxEvent>, StoreError> {
        all_outbox_rows(&self.pool).await
    }

    /// Parked rows as `(index in id order among all rows, the broker's error)` (for tests and
    /// audits; the index matches [`PgStore::all_outbox_rows`]).
    pub async fn parked_outbox_rows(&self) -> Result<Vec<(usize, String)>, StoreError> {
        parked_outbox_rows(&self.pool).await
    }
}

/// [`PgStore::all_outbox_rows`] on any connection (a snapshot reads it in its own transaction).
pub(crate) async fn all_outbox_rows<'e>(on: impl PgExecutor<'e>) -> Result<Vec<OutboxEvent>, StoreError> {
    let rows = sqlx::query_as::<_, OutboxRow>(
        "SELECT id, topic, key, payload, headers, created_at, traceparent, tracestate FROM outbox ORDER BY id",
    )
    .fetch_all(on)
    .await
    .map_err(store_error)?;
    rows.into_iter().map(|row| OutboxRecord::try_from(row).map(|r| r.event)).collect()
}

/// [`PgStore::parked_outbox_rows`] on any connection.
pub(crate) async fn parked_outbox_rows<'e>(on: impl PgExecutor<'e>) -> Result<Vec<(usize, String)>, StoreError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT index, publish_error FROM
            (SELECT ROW_NUMBER() OVER (ORDER BY id) - 1 AS index, publish_error FROM outbox) AS numbered
         WHERE publish_error IS NOT NULL ORDER BY index",
    )
    .fetch_all(on)
    .await
    .map_err(store_error)?;
    Ok(rows.into_iter().map(|(index, error)| (usize::try_from(index).unwrap_or(usize::MAX), error)).collect())
}

#[async_trait]
impl Outbox for PgStore {
    type Leader = PgLeader;
    type Wakeups = PgWakeups;

    async fn unpublished(&self, limit: u32) -> Result<Vec<OutboxRecord>, StoreError> {
        let rows = sqlx::query_as::<_, OutboxRow>(
            "SELECT id, topic, key, payload, headers, created_at, traceparent, tracestate FROM outbox
             WHERE published_at IS NULL AND publish_failed_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit.min(MAX_OUTBOX_BATCH_ROWS)))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(OutboxRecord::try_from).collect()
    }

    async fn mark_published(&self, ids: &[i64]) -> Result<(), StoreError> {
        // A mark lost in a crash only makes its rows be sent again, which at-least-once delivery
        // (consumers deduplicate by event_id) already allows, so it need not wait for the disk.
        // The rows themselves were flushed with the batch that wrote them. `set_config(..., true)`
        // turns the flush off for this statement's own transaction only, in the same round trip
        // (a BEGIN, a SET LOCAL and a COMMIT were three more per round).
        sqlx::query(
            "UPDATE outbox SET published_at = now()
             FROM (SELECT set_config('synchronous_commit', 'off', true)) AS without_flush
             WHERE id = ANY($1) AND published_at IS NULL AND publish_failed_at IS NULL",
        )
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn park(&self, id: i64, error: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET publish_failed_at = now(), publish_error = $2
             WHERE id = $1 AND published_at IS NULL",
        )
        .bind(id)
        .bind(error)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(store_error)
    }

    async fn parked(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE publish_failed_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(store_error)?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    async fn parked_rows(&self, limit: u32) -> Result<Vec<ParkedRecord>, StoreError> {
        let rows = sqlx::query_as::<_, ParkedRow>(
            "SELECT id, topic, key, payload, headers, created_at, traceparent, tracestate, publish_failed_at, publish_error FROM outbox
             WHERE publish_failed_at IS NOT NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::from(limit.min(MAX_OUTBOX_BATCH_ROWS)))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.into_iter().map(ParkedRecord::try_from).collect()
    }

    async fn requeue(&self, parked_since: Option<DateTime<Utc>>) -> Result<u64, StoreError> {
        // The notification wakes an idle leader at the commit, as a batch's rows do.
        let mut tx = self.pool.begin().await.map_err(store_error)?;
        let requeued = sqlx::query(
            "UPDATE outbox SET publish_failed_at = NULL, publish_error = NULL
             WHERE publish_failed_at IS NOT NULL AND ($1::TIMESTAMPTZ IS NULL OR publish_failed_at >= $1)",
        )
        .bind(parked_since)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?
        .rows_affected();
        if requeued > 0 {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(OUTBOX_CHANNEL)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(requeued)
    }

    async fn oldest_unpublished(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        // The first row of the publisher's own index: no scan of the published rows.
        sqlx::query_scalar(
            "SELECT created_at FROM outbox WHERE published_at IS NULL AND publish_failed_at IS NULL
             ORDER BY id LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn try_lead(&self) -> Result<Option<PgLeader>, StoreError> {
        // A connection of its own, outside the pool: when it dies, the server releases the lock.
        let mut connection = self.leader_connect_options().connect().await.map_err(store_error)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PUBLISHER_LOCK_KEY)
            .fetch_one(&mut connection)
            .await
            .map_err(store_error)?;
        if locked {
            Ok(Some(PgLeader { connection }))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }

    async fn wakeups(&self) -> Result<PgWakeups, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(store_error)?;
        listener.listen(OUTBOX_CHANNEL).await.map_err(store_error)?;
        Ok(PgWakeups { listener })
    }

    async fn backlog(&self) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND publish_failed_at IS NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(store_error)?;
        Ok(u64::try_from(count).unwrap_or_default())
    }
}
