//! # payment-core
//!
//! The storage-agnostic heart of the payment service: money and ids ([`domain`]), the pure batch
//! decision ([`decide`]), the ports adapters implement ([`ports`]), the use cases ([`app`]), an
//! in-memory store ([`memory`]) and, behind the `testing` feature, the contract and property suites
//! every store runs (`testing`).
//!
//! A batch of `pay.order` commands is **load → decide → apply**: a unit of work claims the
//! messages in the inbox and loads (locks) the accounts and earlier payments they touch;
//! [`decide::decide_payments`] decides every outcome without I/O; the unit of work writes all
//! effects at once and commits. The invariants that hold at every commit:
//!
//! - `balance == deposits − successful payments` for every account, and no balance is negative;
//! - an order id is debited at most once, ever;
//! - a message identity is applied at most once; a redelivery changes nothing and emits nothing;
//! - every applied command has exactly one outcome in the outbox (an event or a dead letter),
//!   written in the same transaction as the money movement.

pub mod app;
mod backoff;
pub mod decide;
pub mod domain;
pub mod memory;
pub mod ports;

pub use app::{Error, Payments};
pub use backoff::Backoff;
#[cfg(feature = "testing")]
pub mod testing;
