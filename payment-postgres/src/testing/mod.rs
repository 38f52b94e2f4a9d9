//! Test support (feature `testing`): a throwaway PostgreSQL server per test binary
//! ([`server`]), a fresh migrated database per test, and this store's [`Inspect`] snapshot, so
//! the core's contract and property suites run here unchanged.

pub mod server;

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use payment_core::domain::{
    DeadLetter, DeadLetterReason, IdempotencyRecord, LedgerEntry, MessageId, Origin, Payment, Refund, StatementEntry,
    TraceContext, UserId,
};
use payment_core::testing::{Inspect, Snapshot, StoreFactory};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::OnceCell;

use crate::{PgConfig, PgStore};
use server::TestServer;

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    panic!("{what}: {error}")
}

/// A database cloned from a migrated template: a fresh, empty store, in milliseconds.
pub async fn fresh_database() -> String {
    let server = TestServer::shared().unwrap_or_else(|e| fail("no PostgreSQL for the tests", e));
    let template = TEMPLATE
        .get_or_init(|| async {
            // Unique per process: test binaries may share one server (DATABASE_URL).
            let name = format!("payment_template_{}", uuid::Uuid::new_v4().simple());
            let mut admin = admin(server).await;
            admin
                .execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap_or_else(|e| fail("create template", e));
            let store =
                PgStore::connect(&server.database_url(&name), &PgConfig { max_connections: 1, ..PgConfig::default() })
                    .await
                    .unwrap_or_else(|e| fail("connect to template", e));
            store.migrate().await.unwrap_or_else(|e| fail("migrate template", e));
            store.pool().close().await;
            name
        })
        .await;
    let name = format!("payment_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = admin(server).await;
    admin
        .execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
        .await
        .unwrap_or_else(|e| fail("create test database", e));
    let _ = admin.close().await;
    server.database_url(&name)
}

async fn admin(server: &TestServer) -> PgConnection {
    PgConnection::connect(server.admin_url()).await.unwrap_or_else(|e| fail("connect to the test server", e))
}

/// A store on a fresh database.
pub async fn fresh_store(max_connections: u32) -> PgStore {
    let url = fresh_database().await;
    PgStore::connect(&url, &PgConfig { max_connections, ..PgConfig::default() })
        .await
        .unwrap_or_else(|e| fail("connect to the test database", e))
}

pub use payment_core::memory::MemoryStore;
pub use payment_core::testing::block_on;

/// Turns each `async fn name<S: Store + ...>(store: S)` into two tests, `memory::name` on the
/// in-memory store and `postgres::name` on a fresh PostgreSQL database, so adapter suites are
/// written once.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $name() {
                    $crate::testing::block_on(super::$name($crate::testing::MemoryStore::new()));
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    $crate::testing::block_on(async { super::$name($crate::testing::fresh_store(24).await).await });
                }
            )*
        }
    };
}

/// Fresh PostgreSQL stores for the core suites.
#[derive(Debug, Clone, Copy, Default)]
pub struct PgFactory;

#[async_trait]
impl StoreFactory for PgFactory {
    type Store = PgStore;

    async fn fresh(&self) -> PgStore {
        fresh_store(24).await
    }
}

#[derive(sqlx::FromRow)]
struct DeadLetterRow {
    #[allow(dead_code)]
    seq: i64,
    dead_letter_id: uuid::Uuid,
    message_id: String,
    source_topic: Option<String>,
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    reason: String,
    detail: String,
    payload: Vec<u8>,
    payload_original_bytes: Option<i64>,
    created_at: chrono::DateTime<chrono::Utc>,
}

fn reason(code: &str) -> DeadLetterReason {
    DeadLetterReason::from_code(code).unwrap_or_else(|| fail("unknown dead-letter reason", code))
}

#[async_trait]
impl Inspect for PgStore {
    async fn snapshot(&self) -> Snapshot {
        // One snapshot of the database: read table by table outside a transaction, a batch
        // committing in between would show its payments without its ledger entries.
        let mut tx = self.pool.begin().await.unwrap_or_else(|e| fail("begin the snapshot", e));
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .unwrap_or_else(|e| fail("isolate the snapshot", e));
        let accounts: Vec<crate::rows::AccountRow> =
            sqlx::query_as("SELECT user_id, balance, created_at FROM accounts")
                .fetch_all(&mut *tx)
                .await
                .unwrap_or_else(|e| fail("read accounts", e));
        let ledger: Vec<crate::rows::LedgerRow> = sqlx::query_as(
            "SELECT position, entry_id, user_id, kind, amount, balance_after, order_id, refund_id, created_at, cause
             FROM ledger_entries ORDER BY position",
        )
        .fetch_all(&mut *tx)
        .await
        .unwrap_or_else(|e| fail("read ledger", e));
        let payments: Vec<crate::rows::PaymentRow> =
            sqlx::query_as("SELECT order_id, user_id, amount, transaction_id, event_id, paid_at FROM payments")
                .fetch_all(&mut *tx)
                .await
                .unwrap_or_else(|e| fail("read payments", e));
        let refunds: Vec<crate::rows::RefundRow> =
            sqlx::query_as(&format!("SELECT {} FROM refunds", crate::rows::REFUND_COLUMNS))
                .fetch_all(&mut *tx)
                .await
                .unwrap_or_else(|e| fail("read refunds", e));
        let inbox: Vec<(String, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT message_id, traceparent, tracestate FROM inbox")
                .fetch_all(&mut *tx)
                .await
                .unwrap_or_else(|e| fail("read inbox", e));
        let mut inbox_ids = BTreeSet::new();
        let mut inbox_traces = BTreeMap::new();
        for (id, traceparent, tracestate) in inbox {
            let id = MessageId::new(id).unwrap_or_else(|e| fail("inbox row", e));
            if let Some(traceparent) = traceparent {
                let trace = TraceContext::parse(&traceparent, tracestate.as_deref())
                    .unwrap_or_else(|e| fail("inbox traceparent", e));
                inbox_traces.insert(id.clone(), trace);
            }
            inbox_ids.insert(id);
        }
        let outbox = crate::outbox::all_outbox_rows(&mut *tx).await.unwrap_or_else(|e| fail("read outbox", e));
        let parked =
            crate::outbox::parked_outbox_rows(&mut *tx).await.unwrap_or_else(|e| fail("read parked outbox rows", e));
        let letters: Vec<DeadLetterRow> = sqlx::query_as("SELECT * FROM dead_letters ORDER BY seq")
            .fetch_all(&mut *tx)
            .await
            .unwrap_or_else(|e| fail("read dead letters", e));
        let keys: Vec<crate::rows::IdempotencyRow> =
            sqlx::query_as("SELECT user_id, key, amount, balance, created_at FROM idempotency_keys")
                .fetch_all(&mut *tx)
                .await
                .unwrap_or_else(|e| fail("read idempotency keys", e));

        let mut by_user: BTreeMap<UserId, Vec<LedgerEntry>> = BTreeMap::new();
        for row in ledger {
            let entry = StatementEntry::try_from(row).unwrap_or_else(|e| fail("ledger row", e)).entry;
            by_user.entry(entry.user_id.clone()).or_default().push(entry);
        }
        Snapshot {
            accounts: accounts
                .into_iter()
                .map(|row| payment_core::domain::Account::try_from(row).unwrap_or_else(|e| fail("account row", e)))
                .map(|a| (a.user_id, a.balance))
                .collect(),
            ledger: by_user,
            payments: payments
                .into_iter()
                .map(|row| Payment::try_from(row).unwrap_or_else(|e| fail("payment row", e)))
                .map(|p| (p.order_id.clone(), p))
                .collect(),
            refunds: refunds
                .into_iter()
                .map(|row| Refund::try_from(row).unwrap_or_else(|e| fail("refund row", e)))
                .map(|r| (r.refund_id.clone(), r))
                .collect(),
            inbox: inbox_ids,
            inbox_traces,
            outbox,
            parked,
            dead_letters: letters
                .into_iter()
                .map(|row| DeadLetter {
                    dead_letter_id: row.dead_letter_id,
                    message_id: MessageId::new(row.message_id).unwrap_or_else(|e| fail("dead letter", e)),
                    origin: match (row.source_topic, row.source_partition, row.source_offset) {
                        (Some(topic), Some(partition), Some(offset)) => Some(Origin { topic, partition, offset }),
                        _ => None,
                    },
                    reason: reason(&row.reason),
                    detail: row.detail,
                    payload: row.payload,
                    payload_original_bytes: row.payload_original_bytes.and_then(|n| u64::try_from(n).ok()),
                    created_at: row.created_at,
                })
                .collect(),
            idempotency: keys
                .into_iter()
                .map(|row| IdempotencyRecord::try_from(row).unwrap_or_else(|e| fail("idempotency row", e)))
                .map(|r| ((r.user_id.clone(), r.key.clone()), r))
                .collect(),
        }
    }
}
