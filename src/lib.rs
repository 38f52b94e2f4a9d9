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
//!   variable) to a listening service;
//! - [`commands`]: the operator's commands (`payment-service dead-letters list`, ...), run
//!   instead of the service when one is named.
//!
//! An HTTP-only host on the in-memory store (add `.kafka(..)` to consume `pay.order` and publish
//! the outcomes; `examples/embed-in-axum.rs` is a whole host):
//!
//! ```
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use payment_core::memory::MemoryStore;
//! use payment_service::PaymentService;
//! use tokio_util::sync::CancellationToken;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shutdown = CancellationToken::new();
//! let running = PaymentService::new(MemoryStore::new()).start(&shutdown)?;
//! let app = axum::Router::new().nest("/payments", running.accounts.clone());
//!
//! let open = Request::post("/payments/accounts").header("x-user-id", "42").body(Body::empty())?;
//! assert_eq!(app.oneshot(open).await?.status(), StatusCode::CREATED);
//!
//! shutdown.cancel();
//! running.stopped().await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod commands;
mod compose;
mod error;
mod http;
pub mod process;
mod retention;
mod secrets;
mod settings;
pub mod telemetry;

pub use compose::{PaymentService, Running};
pub use error::ServiceError;
pub use secrets::{Secret, SecretsError, REDACTED, SECRETS_FILE_MAX_BYTES};
pub use settings::{AuthMode, LogFormat, Migrate, RetentionCheck, Settings};
