//! The reusable suite every store runs (feature `testing`): [`contract`] tests, one per rule of
//! SPEC §2 and §4, and the [`property`] state-machine test against a reference [`model`].
//!
//! A store joins by implementing [`Inspect`] and a [`StoreFactory`], then:
//!
//! ```text
//! payment_core::store_contract_tests!(MyFactory::new());
//! #[test]
//! fn exactly_once_property() { payment_core::testing::property::check(&MyFactory::new(), 256) }
//! ```

pub mod contract;
mod contract_refunds;
pub mod faults;
pub mod model;
pub mod property;
mod snapshot;
mod wall_clock;

use std::future::Future;

use async_trait::async_trait;

pub use snapshot::{Inspect, Snapshot};
pub use wall_clock::{WallClockLimit, TEST_WALL_CLOCK_LIMIT};

use crate::ports::{Outbox, Retention, Store};

/// Gives each test a fresh, empty store.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// The store under test; it must offer every port and [`Inspect`].
    type Store: Store + Outbox + Retention + Inspect;

    /// A new store sharing nothing with any other the factory made.
    async fn fresh(&self) -> Self::Store;
}

/// Runs a test's future on a multi-threaded runtime, so concurrent tasks really run in parallel,
/// under [`TEST_WALL_CLOCK_LIMIT`] (runtime shutdown included).
pub fn block_on<F: Future>(future: F) -> F::Output {
    block_on_within(TEST_WALL_CLOCK_LIMIT, future)
}

/// [`block_on`] with a limit of the caller's choosing.
pub fn block_on_within<F: Future>(limit: std::time::Duration, future: F) -> F::Output {
    let _limit = WallClockLimit::arm(limit);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot start a tokio runtime for the test: {error}"),
    };
    let output = runtime.block_on(future);
    drop(runtime);
    output
}

include!(concat!(env!("OUT_DIR"), "/store_contract_tests.rs"));
