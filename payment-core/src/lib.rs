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
//! effects at once and commits. Deposits are batched the same way: concurrent [`Payments::deposit`]
//! calls share a unit of work ([`app::DepositBatching`]), decided by [`decide::decide_deposits`];
//! concurrent [`Payments::balance`] calls share one [`ports::Store::accounts`] query.
//! The invariants that hold at every commit:
//!
//! - `balance == deposits − successful payments` for every account, and no balance is negative;
//! - an order id is debited at most once, ever;
//! - a message identity is applied at most once; a redelivery changes nothing and emits nothing;
//! - every applied command has exactly one outcome in the outbox (an event or a dead letter),
//!   written in the same transaction as the money movement.
//!
//! # Example
//!
//! Open an account, deposit, and pay one order on the in-memory store:
//!
//! ```
//! use payment_core::decide::Outcome;
//! use payment_core::domain::{Amount, Inbound, MessageId, OrderId, PayOrder, UserId};
//! use payment_core::memory::MemoryStore;
//! use payment_core::Payments;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let payments = Payments::new(MemoryStore::new());
//! let user = UserId::new("42")?;
//! payments.create_account(&user).await?;
//! payments.deposit(&user, "10.50".parse::<Amount>()?, None).await?;
//!
//! let order = PayOrder::new(OrderId::new("order-1")?, user.clone(), "4.25".parse()?);
//! let outcomes = payments.pay_orders(&[Inbound::pay(MessageId::new("msg-1")?, order.clone())]).await?;
//! assert!(matches!(outcomes[..], [Outcome::Paid { .. }]));
//!
//! // The same message again is a redelivery: nothing is debited twice.
//! let again = payments.pay_orders(&[Inbound::pay(MessageId::new("msg-1")?, order)]).await?;
//! assert_eq!(again, [Outcome::Redelivered]);
//!
//! assert_eq!(payments.balance(&user).await?.balance.to_string(), "6.25");
//! # Ok(())
//! # }
//! ```
//!
//! `order.paid` now waits in the store's outbox ([`ports::Outbox`]) for a publisher such as
//! `payment-kafka`'s. A durable store (`payment-postgres`) plugs in the same way:
//! `Payments::new(store)`.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

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
