//! The Orders Service side of the payment contract, as a library for end-to-end tests and load
//! runs: [`prepare`] creates and funds the accounts over HTTP, [`run`] sends `pay.order` commands
//! (with redeliveries and re-sends mixed in), collects `order.paid` / `order.payment_failed`,
//! then refunds a share of the paid orders on `refund.order` ([`Plan::refund_ratio`]) and
//! collects `order.refunded` / `order.refund_failed`, reads the balances back and [`verify`]s
//! that money moved exactly once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), orders_simulator::SimError> {
//! use orders_simulator::{prepare, run, Plan, Target};
//! let target = Target::new("http://127.0.0.1:8080", "127.0.0.1:9092");
//! let plan = Plan { orders: 500, duplicate_ratio: 0.2, resend_ratio: 0.1, ..Plan::default() };
//! let accounts = prepare(&target, &plan).await?;
//! let report = run(&target, &plan, &accounts, |_progress| {}).await?;
//! assert!(report.violations.is_empty(), "{report}");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod accounts;
mod error;
mod outcomes;
mod plan;
mod produce;
mod refunds;
mod report;
mod run;
mod verify;

pub use accounts::{prepare, Account, Accounts};
pub use error::SimError;
pub use outcomes::{OutcomeEvent, OutcomeKind};
pub use plan::{Message, MessageKind, Order, Plan, Workload, MAX_INTEGER_NAMESPACE};
pub use produce::enqueue;
pub use refunds::{plan_refunds, verify_refunds, RefundCommand, RefundExpectation, RefundVerdict};
pub use report::{Latency, Report};
pub use run::{run, Progress};
pub use verify::{verify, verify_with_refunds, Verdict};

/// Where the payment service and its broker are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:8080` (no trailing slash needed).
    pub http_base: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    pub topics: Topics,
}

impl Target {
    /// A target with the default topic names.
    pub fn new(http_base: impl Into<String>, brokers: impl Into<String>) -> Self {
        Self { http_base: http_base.into(), brokers: brokers.into(), topics: Topics::default() }
    }
}

/// Topic names, defaulting to the contract's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub pay_order: String,
    pub order_paid: String,
    pub order_payment_failed: String,
    pub refund_order: String,
    pub order_refunded: String,
    pub order_refund_failed: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            pay_order: "pay.order".into(),
            order_paid: "order.paid".into(),
            order_payment_failed: "order.payment_failed".into(),
            refund_order: "refund.order".into(),
            order_refunded: "order.refunded".into(),
            order_refund_failed: "order.refund_failed".into(),
        }
    }
}
