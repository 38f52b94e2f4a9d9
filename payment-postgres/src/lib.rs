//! # payment-postgres
//!
//! The PostgreSQL store of `payment-core` (sqlx): every core port — units of work, statement reads,
//! outbox, retention — with the schema as embedded migrations. A batch of payments is one
//! transaction of a constant number of statements; the schema itself refuses a negative balance
//! and a second payment for an order.

mod apply;
mod error;
mod outbox;
mod retention;
mod rows;
mod store;
mod tx;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::PostgresError;
pub use outbox::{
    PgLeader, PgWakeups, LEADER_KEEPALIVE_COUNT, LEADER_KEEPALIVE_IDLE_SECS, LEADER_KEEPALIVE_INTERVAL_SECS,
    OUTBOX_CHANNEL, PUBLISHER_LOCK_KEY,
};
pub use store::{PgConfig, PgStore};
pub use tx::PgTx;
