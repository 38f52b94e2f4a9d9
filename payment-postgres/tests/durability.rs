//! The store reads whether the server keeps the commits it acknowledges (issue 18 (7)): a
//! durable server does; a database whose sessions commit with `synchronous_commit=off` does not.
//! And the one write that may skip the flush, the outbox's published mark, does.

use payment_core::ports::Outbox;
use payment_core::testing::block_on;
use payment_postgres::testing::server::TestServer;
use payment_postgres::{PgConfig, PgStore};

async fn store_at(url: &str) -> PgStore {
    PgStore::connect(url, &PgConfig { max_connections: 2, ..PgConfig::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_durable_server_keeps_the_commits_it_acknowledges() {
    block_on(async {
        let server = TestServer::dedicated().unwrap_or_else(|e| panic!("{e}"));
        let durability = store_at(&server.database_url("postgres")).await.durability().await;
        let durability = durability.unwrap_or_else(|e| panic!("{e}"));
        assert!(durability.fsync, "{durability}");
        assert_eq!(durability.synchronous_commit, "on");
        assert!(!durability.loses_acknowledged_commits(), "{durability}");
    });
}

#[test]
fn a_database_committing_asynchronously_can_lose_commits() {
    block_on(async {
        let url = payment_postgres::testing::fresh_database().await;
        let store = store_at(&url).await;
        sqlx::query(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database()); END $$",
        )
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        // New sessions see the database's setting.
        let durability = store_at(&url).await.durability().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(durability.synchronous_commit, "off");
        assert!(durability.loses_acknowledged_commits(), "{durability}");
    });
}

/// WAL flushes so far (`pg_stat_wal.wal_sync`: counted only where fsync is on). A backend
/// reports its statistics when it goes idle, at most once a second unless asked to.
async fn wal_syncs(store: &PgStore) -> i64 {
    let pool = store.pool();
    sqlx::query("SELECT pg_stat_force_next_flush()").execute(pool).await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query_scalar("SELECT wal_sync FROM pg_stat_wal").fetch_one(pool).await.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_published_mark_commits_without_waiting_for_the_disk() {
    const ROWS: i64 = 100;
    block_on(async {
        let server = TestServer::dedicated().unwrap_or_else(|e| panic!("{e}"));
        // One connection, so every statement's statistics are the ones `wal_syncs` flushes.
        let config = PgConfig { max_connections: 1, ..PgConfig::default() };
        let store = PgStore::connect(&server.database_url("postgres"), &config).await.unwrap_or_else(|e| panic!("{e}"));
        store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO outbox (topic, key, payload, headers)
             SELECT 'order.paid', 'o' || n, '{}'::BYTEA, '{}'::JSONB FROM generate_series(1, $1) AS n RETURNING id",
        )
        .bind(ROWS * 2)
        .fetch_all(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let (marked, control) = ids.split_at(ids.len() / 2);

        // The measure sees flushes: a plain single-row update commits with one each.
        let before = wal_syncs(&store).await;
        for id in control {
            sqlx::query("UPDATE outbox SET published_at = now() WHERE id = $1")
                .bind(id)
                .execute(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let flushed = wal_syncs(&store).await - before;
        assert!(flushed >= ROWS, "{ROWS} plain commits flushed the WAL {flushed} times");

        let before = wal_syncs(&store).await;
        for id in marked {
            store.mark_published(&[*id]).await.unwrap_or_else(|e| panic!("{e}"));
        }
        let flushed = wal_syncs(&store).await - before;
        // The WAL writer still flushes on its own, every 200 ms at most.
        assert!(flushed < ROWS / 4, "{ROWS} marks flushed the WAL {flushed} times");
        let published: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NOT NULL")
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(published, ROWS * 2);
        // The setting was the mark's own: the session commits durably again.
        let setting: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(setting, "on");
    });
}
