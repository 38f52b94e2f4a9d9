//! Ports: the traits adapters implement. The core names no database, broker or web framework.

mod clock;
mod outbox;
mod retention;
mod store;

pub use clock::{Clock, SystemClock};
pub use outbox::{Leadership, Outbox, OutboxRecord, ParkedRecord, Wakeups, MAX_OUTBOX_BATCH_ROWS};
pub use retention::{Pruned, Retention, RetentionPolicy};
pub use store::{Store, StoreError, UnitOfWork};
