//! The service refuses to start on a PostgreSQL that can lose commits it acknowledged, unless
//! `DATABASE_ALLOW_LOST_COMMITS` accepts the risk (issue 18 (7)).

use std::time::Duration;

use clap::Parser;
use payment_service::{process, ServiceError, Settings};

/// A fresh database whose sessions commit with `synchronous_commit=off`, on any server.
async fn asynchronous_database() -> String {
    let url = payment_postgres::testing::fresh_database().await;
    let mut connection =
        <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database()); END $$",
    )
    .execute(&mut connection)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    url
}

fn settings(url: &str, allow: bool) -> Settings {
    let allow = allow.to_string();
    let args = ["payment-service", "--http-addr", "127.0.0.1:0", "--database-url", url];
    Settings::try_parse_from(args.into_iter().chain(["--database-allow-lost-commits", allow.as_str()]))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_database_that_can_lose_commits_is_refused_unless_allowed() {
    payment_core::testing::block_on(async {
        let url = asynchronous_database().await;
        // Stopped after a while if it starts after all, so a missing check fails here, quickly.
        let refused = process::run(settings(&url, false), None, tokio::time::sleep(Duration::from_secs(5))).await;
        match refused {
            Err(ServiceError::LostCommits(durability)) => {
                assert_eq!(durability.synchronous_commit, "off");
                let message = ServiceError::LostCommits(durability).to_string();
                assert!(message.contains("DATABASE_ALLOW_LOST_COMMITS"), "{message}");
            }
            other => panic!("the start is refused: {other:?}"),
        }

        let allowed = process::run(settings(&url, true), None, tokio::time::sleep(Duration::from_secs(2))).await;
        assert!(allowed.is_ok(), "allowed, it starts and stops: {allowed:?}");
    });
}
