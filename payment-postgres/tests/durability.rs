//! The store reads whether the server keeps the commits it acknowledges (issue 18 (7)): a
//! durable server does; a database whose sessions commit with `synchronous_commit=off` does not.

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
