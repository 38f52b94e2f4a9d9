//! The exactly-once property with the consumer's lanes (issue 20): two to four batches applied at
//! once against one PostgreSQL store with `pay_orders_isolating`, as the lanes apply them. The
//! batches hold disjoint messages, as lanes of disjoint partitions do, except for the odd exact
//! redelivery (a partition that moved to another instance while its old owner still applied it);
//! they share users and order ids freely, as batches keyed by order id do.
//!
//! Whatever the interleaving, some serial order of the batches must explain every outcome, every
//! balance and every payment; money is conserved, no order is debited twice, no command is lost,
//! and a lock conflict, deadlock or unique violation between the batches is retried, never turned
//! into a `store_rejected` dead letter.

use std::collections::BTreeMap;

use payment_core::domain::{DeadLetterReason, Inbound, UserId};
use payment_core::testing::contract::{pay, user};
use payment_core::testing::model::{Expected, Model};
use payment_core::testing::{Inspect, Snapshot};
use payment_core::Payments;
use payment_postgres::testing::fresh_store;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;

const USERS: u8 = 4;
const ORDERS: u8 = 12;

/// A message of a generated batch.
#[derive(Debug, Clone)]
enum Msg {
    /// A new message paying order `o<order>` by user `u<user>`, in cents.
    Fresh { order: u8, user: u8, cents: u32 },
    /// The `n`-th message of the batch before this one again, same identity (wraps around).
    Redeliver(usize),
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        9 => (0..ORDERS, 0..USERS, 1u32..4000).prop_map(|(order, user, cents)| Msg::Fresh { order, user, cents }),
        1 => (0usize..8).prop_map(Msg::Redeliver),
    ]
}

fn case() -> impl Strategy<Value = (Vec<u32>, Vec<Vec<Msg>>)> {
    (
        prop::collection::vec(0u32..20_000, USERS as usize),
        prop::collection::vec(prop::collection::vec(msg(), 1..8), 2..5),
    )
}

fn cents(cents: u32) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Turns the generated batches into commands; identities are unique but for redeliveries.
fn resolve(batches: &[Vec<Msg>]) -> Vec<Vec<Inbound>> {
    let mut resolved: Vec<Vec<Inbound>> = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let mut commands = Vec::new();
        for (m, msg) in batch.iter().enumerate() {
            let command = match msg {
                Msg::Fresh { order, user, cents: c } => {
                    pay(&format!("m{b}-{m}"), &format!("o{order}"), &format!("u{user}"), &cents(*c))
                }
                Msg::Redeliver(n) => match b.checked_sub(1).map(|previous| &resolved[previous]) {
                    Some(previous) => previous[n % previous.len()].clone(),
                    None => pay(&format!("m{b}-{m}"), "o0", "u0", "1"),
                },
            };
            commands.push(command);
        }
        resolved.push(commands);
    }
    resolved
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(at, n - 1);
            all.push(p);
        }
    }
    all
}

/// Whether the store holds what `model` says: balances and payments.
fn agrees(snapshot: &Snapshot, model: &Model) -> bool {
    let balances: BTreeMap<UserId, Decimal> = snapshot.accounts.iter().map(|(u, b)| (u.clone(), b.value())).collect();
    let paid: BTreeMap<_, _> =
        snapshot.payments.iter().map(|(o, p)| (o.clone(), (p.user_id.clone(), p.amount.value()))).collect();
    balances == model.balances && paid == model.paid && snapshot.inbox == model.inbox
}

async fn run_case(funds: Vec<u32>, batches: Vec<Vec<Msg>>) -> Result<(), TestCaseError> {
    let store = fresh_store(8).await;
    let payments = Payments::new(store.clone());
    let mut model = Model::default();
    for (n, c) in funds.iter().enumerate() {
        let id = user(&format!("u{n}"));
        payments.create_account(&id).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
        let _ = model.create(&id);
        if *c > 0 {
            let amount = cents(*c).parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            payments.deposit(&id, amount, None).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            let _ = model.deposit(&id, amount.value(), None);
        }
    }
    let batches = resolve(&batches);
    let tasks: Vec<_> = batches
        .iter()
        .map(|batch| {
            let (payments, batch) = (payments.clone(), batch.clone());
            tokio::spawn(async move { payments.pay_orders_isolating(&batch).await })
        })
        .collect();
    let mut got = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let outcomes = task
            .map_err(|e| TestCaseError::fail(format!("task failed: {e}")))?
            .map_err(|e| TestCaseError::fail(format!("a batch did not commit: {e}")))?;
        got.push(outcomes.into_iter().map(Expected::from).collect::<Vec<_>>());
    }
    let snapshot = store.snapshot().await;
    snapshot.check_invariants().map_err(TestCaseError::fail)?;
    if let Some(rejected) = snapshot.dead_letters.iter().find(|d| d.reason == DeadLetterReason::StoreRejected) {
        return Err(TestCaseError::fail(format!("a conflict between batches was dead-lettered: {rejected:?}")));
    }
    let deposited: Decimal = funds.iter().map(|c| Decimal::new(i64::from(*c), 2)).sum();
    let held: Decimal = snapshot.accounts.values().map(|b| b.value()).sum();
    let debited: Decimal = snapshot.payments.values().map(|p| p.amount.value()).sum();
    prop_assert_eq!(held + debited, deposited, "money is conserved");
    let serial = permutations(batches.len()).into_iter().find(|order| {
        let mut serial = model.clone();
        let mut outcomes = vec![Vec::new(); batches.len()];
        for b in order {
            outcomes[*b] = serial.pay(&batches[*b]);
        }
        outcomes == got && agrees(&snapshot, &serial)
    });
    prop_assert!(serial.is_some(), "no serial order of the batches explains the store: outcomes {:?}", got);
    store.pool().close().await;
    Ok(())
}

#[test]
fn concurrent_batches_are_serializable_and_lose_nothing() {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64u32);
    // A case takes tens of milliseconds; a second each is already a hang.
    let _limit = payment_core::testing::WallClockLimit::arm(
        payment_core::testing::TEST_WALL_CLOCK_LIMIT + std::time::Duration::from_secs(u64::from(cases)),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot start a tokio runtime: {error}"),
    };
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    if let Err(failure) = runner.run(&case(), |(funds, batches)| runtime.block_on(run_case(funds, batches))) {
        panic!("concurrent batches property failed: {failure}");
    }
}
