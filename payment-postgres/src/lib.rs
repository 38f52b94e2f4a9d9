//! # payment-postgres
//!
//! The PostgreSQL store of `payment-core` (sqlx): every core port — units of work, statement reads,
//! outbox, retention — with the schema as embedded migrations. A batch of payments is one
//! transaction of a constant number of statements; the schema itself refuses a negative balance
//! and a second payment for an order.
//!
//! # Example
//!
//! Connect, bring the schema up to date, and run the core's use cases on the database (this needs
//! a server, so it is only compiled here):
//!
//! ```no_run
//! use payment_core::domain::UserId;
//! use payment_core::Payments;
//! use payment_postgres::{PgConfig, PgStore};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::connect("postgres://payments@localhost/payments", &PgConfig::default()).await?;
//! store.migrate().await?; // idempotent: safe at every start
//! let payments = Payments::new(store.clone());
//! payments.create_account(&UserId::new("42")?).await?;
//! # Ok(())
//! # }
//! ```
//!
//! The same `store` is the [`Outbox`](payment_core::ports::Outbox) an outbox publisher reads and
//! the [`Retention`](payment_core::ports::Retention) a pruning task runs; every clone shares the
//! pool.
//!
//! # Testing
//!
//! The `testing` feature (for dev-dependencies) starts a throwaway PostgreSQL server from the
//! local binaries once per test binary (or uses `DATABASE_URL`), and hands each test a fresh
//! database cloned from a migrated template: `testing::fresh_store`, `testing::PgFactory` for the
//! core's contract and property suites (`payment_core::store_contract_tests!(PgFactory)`), and
//! `testing::server::TestServer` for outage tests.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod apply;
mod dead_letters;
mod durability;
mod error;
mod inbox;
mod outbox;
mod payments;
pub mod reconcile;
mod retention;
mod rows;
mod schema;
mod store;
mod tx;

#[cfg(feature = "testing")]
pub mod testing;

pub use dead_letters::DEAD_LETTERS_LIST_MAX;
pub use durability::Durability;
pub use error::PostgresError;
pub use outbox::{
    PgLeader, PgWakeups, LEADER_KEEPALIVE_COUNT, LEADER_KEEPALIVE_IDLE_SECS, LEADER_KEEPALIVE_INTERVAL_SECS,
    OUTBOX_CHANNEL, PUBLISHER_LOCK_KEY,
};
pub use payments::PAYMENTS_OF_USER_MAX;
pub use store::{PgConfig, PgStore};
pub use tx::PgTx;
