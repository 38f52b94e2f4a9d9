//! # payment-service
//!
//! The composition root: [`Settings`] (CLI flags and environment) and [`run`], which wires a store
//! (PostgreSQL, or in memory), Kafka (a cluster, or an embedded mock), the HTTP API, the
//! `pay.order` consumer, the outbox publisher and retention, and stops them gracefully.
//! `examples/payment-service.rs` is the binary; `tests/` holds the end-to-end tests.

mod http;
mod service;
mod settings;

pub use service::{run, run_until, ServiceError};
pub use settings::Settings;
