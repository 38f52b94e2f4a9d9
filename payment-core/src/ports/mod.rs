//! Ports: the traits adapters implement. The core names no database, broker or web framework.

mod clock;
mod store;

pub use clock::{Clock, SystemClock};
pub use store::{Store, StoreError, UnitOfWork};
