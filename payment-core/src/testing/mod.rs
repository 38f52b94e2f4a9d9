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
    type Store: Store + Outbox + Retention + Inspect;

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

/// One `#[test]` per contract test, run against the stores `$factory` makes.
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:expr) => {
        $crate::store_contract_tests!(@each $factory;
            create_account_starts_at_zero,
            create_account_twice_is_refused,
            deposit_credits_exactly,
            deposit_to_missing_account_changes_nothing,
            deposit_over_balance_limit_changes_nothing,
            idempotent_deposit_replays_and_credits_once,
            idempotency_key_reused_for_other_amount_is_refused,
            idempotency_keys_belong_to_one_user,
            statement_pages_newest_first_and_chains,
            payment_debits_and_publishes_order_paid,
            redelivery_has_no_effect,
            duplicate_identity_in_one_batch_applies_once,
            new_command_for_paid_order_republishes_original_event,
            conflicting_duplicate_is_dead_lettered,
            failed_order_is_attempted_again,
            insufficient_funds_fails_without_debit,
            unknown_account_fails,
            invalid_commands_fail_as_business_outcomes,
            undecodable_message_is_dead_lettered,
            oversized_message_is_dead_lettered_with_a_capped_payload,
            orders_of_one_user_in_one_batch_see_each_other,
            same_order_twice_in_one_batch_debits_once,
            fault_at_any_step_leaves_nothing,
            fault_after_commit_then_redelivery_has_no_effect,
            apply_refuses_a_stale_balance,
            apply_refuses_a_second_payment_for_an_order,
            concurrent_payments_on_one_account_are_exact,
            concurrent_idempotent_retries_credit_once,
            concurrent_batches_with_one_order_debit_once,
            outbox_is_read_in_order_and_marked_published,
            parked_outbox_rows_are_skipped_counted_and_kept,
            one_publisher_leads_at_a_time,
            wakeups_follow_commits_with_outbox_rows,
            retention_prunes_old_rows_only,
        );
    };
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let factory = $factory;
                $crate::testing::block_on($crate::testing::contract::$name(&factory));
            }
        )*
    };
}
