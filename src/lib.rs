//! # payment-service
//!
//! The composition of the payment crates, for a host service to embed and for the
//! `payment-service` binary:
//!
//! - [`PaymentService`]: a builder over any store (`payment_core::memory::MemoryStore`,
//!   `payment_postgres::PgStore`, ...) that takes the host's pieces — Kafka settings (or none),
//!   HTTP limits, a retention policy, a Prometheus handle — and, [started](PaymentService::start)
//!   with a `CancellationToken`, returns the routers to mount and the tasks to wait for. It
//!   installs nothing global (recorder, subscriber, signal handler): the host does.
//! - [`process::run`]: what the binary runs, from [`Settings`] (every flag and environment
//!   variable) to a listening service.

#![warn(missing_docs)]

mod compose;
mod error;
mod http;
pub mod process;
mod retention;
mod settings;

pub use compose::{PaymentService, Running};
pub use error::ServiceError;
pub use settings::{RetentionCheck, Settings};
