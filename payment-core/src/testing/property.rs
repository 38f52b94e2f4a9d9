//! The exactly-once property: random sequences of account creations, deposits (alone, and
//! concurrent ones coalesced into one unit of work) and batches mixing `pay.order` and
//! `refund.order` — with exact redeliveries, new-message re-sends of paid, refunded and failed
//! commands, partial and whole refunds, refunds of unpaid orders and by the wrong user,
//! conflicting duplicates of orders and refund ids, poison messages, aborts at random steps and
//! concurrent batches — run
//! against a store and against the [`Model`]. After every step the store must agree with the
//! model and satisfy [`Snapshot::check_invariants`].

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;

use super::contract::{raw, raw_refund, user};
use super::faults::{FaultPoint, FaultyStore};
use super::model::{Expected, Model};
use super::{Inspect, Snapshot, StoreFactory};
use crate::app::{DepositBatching, Error, Payments};
use crate::domain::{Amount, EventKind, IdempotencyKey, Inbound, MessageId};
use crate::ports::Store;

/// A message of a generated batch; indices pick among the messages sent so far.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A new message with a valid command.
    Fresh {
        /// Order `o<order>`.
        order: u8,
        /// User `u<user>`; the generator also picks a user that has no account.
        user: u8,
        /// The amount, in cents.
        cents: u32,
    },
    /// The same message again (same identity).
    Redeliver(usize),
    /// An earlier message's command under a new identity.
    Resend(usize),
    /// An earlier message's order id for another user or amount.
    Conflicting {
        /// The earlier message whose order id is reused.
        of: usize,
        /// User `u<user>`.
        user: u8,
        /// The amount, in cents.
        cents: u32,
    },
    /// A valid order id with an invalid amount.
    InvalidAmount {
        /// Order `o<order>`.
        order: u8,
        /// User `u<user>`.
        user: u8,
    },
    /// Bytes that are not JSON.
    Malformed,
    /// Refund `r<refund>` of an earlier message's order, to its user: `cents`, or (`None`) what
    /// is left. Few refund ids, so some are re-used for other orders or amounts (conflicts).
    Refund {
        /// The earlier message whose order and user are refunded.
        of: usize,
        /// Refund `r<refund>`.
        refund: u8,
        /// The amount, in cents; `None` for what is left.
        cents: Option<u32>,
    },
    /// Refund `r<refund>` of order `o<order>` to user `u<user>`: often unpaid, or paid by another.
    RefundAny {
        /// Order `o<order>`.
        order: u8,
        /// User `u<user>`.
        user: u8,
        /// Refund `r<refund>`.
        refund: u8,
        /// The amount, in cents; `None` for what is left.
        cents: Option<u32>,
    },
    /// A refund with an invalid amount.
    InvalidRefund {
        /// Order `o<order>`.
        order: u8,
        /// User `u<user>`.
        user: u8,
        /// Refund `r<refund>`.
        refund: u8,
    },
}

/// One step of a generated case, run on the store and on the model.
#[derive(Debug, Clone)]
pub enum Step {
    /// Opens the account of user `u<n>`.
    Create(u8),
    /// A deposit, with or without an idempotency key.
    Deposit {
        /// User `u<user>`.
        user: u8,
        /// The amount, in cents.
        cents: u32,
        /// Key `k<key>`, if any.
        key: Option<u8>,
    },
    /// Deposits `(user, cents, key)` made at once, which share one unit of work; the store must
    /// match the model applying them in some order.
    Deposits(Vec<(u8, u32, Option<u8>)>),
    /// A batch, applied.
    Pay(Vec<Msg>),
    /// A batch whose unit of work fails at the given step.
    Abort(Vec<Msg>, FaultPoint),
    /// Two batches at once; the store must match one of the two serial orders.
    Concurrent(Vec<Msg>, Vec<Msg>),
}

const USERS: u8 = 4;
const ORDERS: u8 = 10;
const REFUNDS: u8 = 12;

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        6 => (0..ORDERS, 0..USERS + 1, 1u32..3000).prop_map(|(order, user, cents)| Msg::Fresh { order, user, cents }),
        2 => any::<prop::sample::Index>().prop_map(|i| Msg::Redeliver(i.index(usize::MAX))),
        2 => any::<prop::sample::Index>().prop_map(|i| Msg::Resend(i.index(usize::MAX))),
        1 => (any::<prop::sample::Index>(), 0..USERS, 1u32..3000)
            .prop_map(|(i, user, cents)| Msg::Conflicting { of: i.index(usize::MAX), user, cents }),
        1 => (0..ORDERS, 0..USERS).prop_map(|(order, user)| Msg::InvalidAmount { order, user }),
        1 => Just(Msg::Malformed),
        4 => (any::<prop::sample::Index>(), 0..REFUNDS, prop::option::weighted(0.7, 1u32..2000))
            .prop_map(|(i, refund, cents)| Msg::Refund { of: i.index(usize::MAX), refund, cents }),
        1 => (0..ORDERS, 0..USERS + 1, 0..REFUNDS, prop::option::weighted(0.5, 1u32..3000))
            .prop_map(|(order, user, refund, cents)| Msg::RefundAny { order, user, refund, cents }),
        1 => (0..ORDERS, 0..USERS, 0..REFUNDS).prop_map(|(order, user, refund)| Msg::InvalidRefund { order, user, refund }),
    ]
}

fn batch() -> impl Strategy<Value = Vec<Msg>> {
    prop::collection::vec(msg(), 1..8)
}

fn step() -> impl Strategy<Value = Step> {
    let aborts = prop::sample::select(vec![
        FaultPoint::Begin,
        FaultPoint::ClaimMessages,
        FaultPoint::LockAccounts,
        FaultPoint::LoadPayments,
        FaultPoint::LoadRefunds,
        FaultPoint::Apply,
        FaultPoint::Commit,
        FaultPoint::AfterCommit,
    ]);
    prop_oneof![
        2 => (0..USERS).prop_map(Step::Create),
        3 => (0..USERS + 1, 1u32..5000, prop::option::weighted(0.3, 0u8..3))
            .prop_map(|(user, cents, key)| Step::Deposit { user, cents, key }),
        2 => prop::collection::vec((0..USERS + 1, 1u32..5000, prop::option::weighted(0.6, 0u8..2)), 2..5)
            .prop_map(Step::Deposits),
        6 => batch().prop_map(Step::Pay),
        2 => (batch(), aborts).prop_map(|(batch, point)| Step::Abort(batch, point)),
        2 => (batch(), batch()).prop_map(|(a, b)| Step::Concurrent(a, b)),
    ]
}

/// Runs the property on stores from `factory`: `default_cases` cases unless `PROPTEST_CASES` says.
pub fn check<F: StoreFactory>(factory: &F, default_cases: u32) {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default_cases);
    // A case takes milliseconds; a second each is already a hang.
    let _limit =
        super::WallClockLimit::arm(super::TEST_WALL_CLOCK_LIMIT + std::time::Duration::from_secs(u64::from(cases)));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => panic!("cannot start a tokio runtime for the property test: {error}"),
    };
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let steps = prop::collection::vec(step(), 1..30);
    if let Err(failure) = runner.run(&steps, |steps| runtime.block_on(run_case(factory, steps))) {
        panic!("exactly-once property failed: {failure}");
    }
}

struct Case<S: Store> {
    store: FaultyStore<S>,
    payments: Payments<FaultyStore<S>>,
    model: Model,
    sent: Vec<Inbound>,
}

async fn run_case<F: StoreFactory>(factory: &F, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let store = FaultyStore::new(factory.fresh().await);
    // Default batching: lone deposit steps pass through the coalescer too (group commit sends
    // them at once); the concurrent deposit steps force a shared batch with batching of their own.
    let payments = Payments::new(store.clone());
    let mut case = Case { payments, store, model: Model::default(), sent: Vec::new() };
    for (n, step) in steps.iter().enumerate() {
        case.step(step).await.map_err(|e| TestCaseError::fail(format!("step {n} {step:?}: {e}")))?;
    }
    Ok(())
}

impl<S: Store + Inspect> Case<S> {
    async fn step(&mut self, step: &Step) -> Result<(), String> {
        let before = self.store.snapshot().await;
        match step {
            Step::Create(n) => {
                let id = user(&format!("u{n}"));
                let got = self.payments.create_account(&id).await.map(|_| ());
                same(got, self.model.create(&id))?;
            }
            Step::Deposit { user: n, cents, key } => {
                let id = user(&format!("u{n}"));
                let amount = cents_amount(*cents);
                let key = key.map(|k| IdempotencyKey::new(format!("k{k}")).unwrap_or_else(|e| panic!("{e}")));
                let got =
                    self.payments.deposit(&id, amount, key.as_ref()).await.map(|r| (r.balance.value(), r.replayed));
                same(got, self.model.deposit(&id, amount.value(), key.as_ref()))?;
            }
            Step::Deposits(deposits) => self.deposits(deposits).await?,
            Step::Pay(msgs) => {
                let batch = self.resolve(msgs);
                let got = self.payments.pay_orders(&batch).await.map_err(|e| format!("pay_orders failed: {e}"))?;
                same_outcomes(&got.into_iter().map(Expected::from).collect::<Vec<_>>(), &self.model.pay(&batch))?;
                if batch.iter().all(|m| before.inbox.contains(&m.identity)) && self.store.snapshot().await != before {
                    return Err("a batch of redeliveries changed the store".into());
                }
            }
            Step::Abort(msgs, point) => {
                let batch = self.resolve(msgs);
                self.store.arm(*point);
                let got = self.payments.pay_orders(&batch).await;
                let fired = self.store.armed().is_none();
                self.store.disarm();
                match (fired, got) {
                    (true, Ok(_)) => return Err(format!("fault at {point:?} fired but the batch succeeded")),
                    (true, Err(_)) if *point == FaultPoint::AfterCommit => drop(self.model.pay(&batch)),
                    (true, Err(_)) => {
                        let after = self.store.snapshot().await;
                        if after != before {
                            return Err(format!("aborted at {point:?} but the store changed"));
                        }
                    }
                    (false, Ok(got)) => same_outcomes(
                        &got.into_iter().map(Expected::from).collect::<Vec<_>>(),
                        &self.model.pay(&batch),
                    )?,
                    (false, Err(e)) => return Err(format!("failed without a fault: {e}")),
                }
            }
            Step::Concurrent(a, b) => {
                let (a, b) = (self.resolve(a), self.resolve(b));
                let (pa, pb) = (self.payments.clone(), self.payments.clone());
                let (ba, bb) = (a.clone(), b.clone());
                let (ga, gb) = tokio::join!(
                    tokio::spawn(async move { pa.pay_orders(&ba).await }),
                    tokio::spawn(async move { pb.pay_orders(&bb).await })
                );
                let got = |r: Result<Result<Vec<_>, Error>, tokio::task::JoinError>| -> Result<Vec<Expected>, String> {
                    let outcomes =
                        r.map_err(|e| format!("task failed: {e}"))?.map_err(|e| format!("pay_orders failed: {e}"))?;
                    Ok(outcomes.into_iter().map(Expected::from).collect())
                };
                let (ga, gb) = (got(ga)?, got(gb)?);
                // Either serial order is a correct result; the store must match one of them.
                let mut a_first = self.model.clone();
                let a_first_outcomes = (a_first.pay(&a), a_first.pay(&b));
                let mut b_first = self.model.clone();
                let (bo, ao) = (b_first.pay(&b), b_first.pay(&a));
                let snapshot = self.store.snapshot().await;
                let got = (ga, gb);
                // Concurrent transactions draw outbox ids interleaved; only their multiset is fixed.
                let as_a_first =
                    same_outcomes_pair(&got, &a_first_outcomes).and_then(|()| agree(&snapshot, &a_first, Order::Any));
                let as_b_first =
                    same_outcomes_pair(&got, &(ao, bo)).and_then(|()| agree(&snapshot, &b_first, Order::Any));
                match (as_a_first, as_b_first) {
                    (Ok(()), _) => self.model = a_first,
                    (_, Ok(())) => self.model = b_first,
                    (Err(a), Err(b)) => {
                        return Err(format!("concurrent batches match no serial order.\nA then B: {a}\nB then A: {b}"))
                    }
                }
            }
        }
        let snapshot = self.store.snapshot().await;
        snapshot.check_invariants()?;
        if matches!(step, Step::Concurrent(..)) {
            // Adopt the store's interleaving, checked above to be a permutation of the model's.
            self.model.outbox = outbox_of(&snapshot)
                .into_iter()
                .map(|(kind, id)| (kind, MessageId::new(id).unwrap_or_else(|e| panic!("{e}"))))
                .collect();
        }
        agree(&snapshot, &self.model, Order::Exact)
    }

    /// Runs concurrent deposits, checks they shared one unit of work and that some serial order
    /// of them explains every answer and the store, and adopts that order in the model.
    async fn deposits(&mut self, deposits: &[(u8, u32, Option<u8>)]) -> Result<(), String> {
        let requests: Vec<(crate::domain::UserId, Amount, Option<IdempotencyKey>)> = deposits
            .iter()
            .map(|(n, cents, key)| {
                let key = key.map(|k| IdempotencyKey::new(format!("k{k}")).unwrap_or_else(|e| panic!("{e}")));
                (user(&format!("u{n}")), cents_amount(*cents), key)
            })
            .collect();
        // Full when every deposit has joined, so they share one batch; the linger bounds a hang.
        let batching = DepositBatching {
            max_requests: requests.len(),
            linger: std::time::Duration::from_secs(5),
            group_commit: false,
        };
        let payments = self.payments.clone().with_deposit_batching(batching);
        let begun = self.store.units_begun();
        let tasks: Vec<_> = requests
            .iter()
            .cloned()
            .map(|(id, amount, key)| {
                let payments = payments.clone();
                tokio::spawn(async move { payments.deposit(&id, amount, key.as_ref()).await })
            })
            .collect();
        let mut got = Vec::with_capacity(tasks.len());
        for task in tasks {
            let answer = task.await.map_err(|e| format!("deposit task failed: {e}"))?;
            got.push(answer.map(|r| (r.balance.value(), r.replayed)));
        }
        if self.store.units_begun() - begun != 1 {
            return Err(format!("{} concurrent deposits did not share one unit of work", requests.len()));
        }
        let snapshot = self.store.snapshot().await;
        // The batch decided them in the order they joined it, which only the store saw.
        let mut tried = Vec::new();
        for order in permutations(requests.len()) {
            let mut model = self.model.clone();
            let mut expected = vec![Err(Error::AccountNotFound); requests.len()];
            for i in order {
                let (id, amount, key) = &requests[i];
                expected[i] = model.deposit(id, amount.value(), key.as_ref());
            }
            if expected == got && agree(&snapshot, &model, Order::Exact).is_ok() {
                self.model = model;
                return Ok(());
            }
            tried.push(expected);
        }
        Err(format!("concurrent deposits answered {got:?}; no serial order explains it: {tried:?}"))
    }

    /// Turns generated messages into records, remembering them for later redeliveries.
    fn resolve(&mut self, msgs: &[Msg]) -> Vec<Inbound> {
        let mut batch = Vec::with_capacity(msgs.len());
        for msg in msgs {
            let id = format!("p{}", self.sent.len());
            let earlier = |i: &usize| (!self.sent.is_empty()).then(|| &self.sent[i % self.sent.len()]);
            let message = match msg {
                Msg::Fresh { order, user, cents } => pay_json(&id, &format!("o{order}"), &format!("u{user}"), *cents),
                Msg::Redeliver(i) => match earlier(i) {
                    Some(message) => message.clone(),
                    None => raw(&id, "{}"),
                },
                Msg::Resend(i) => match earlier(i) {
                    Some(message) => Inbound {
                        identity: MessageId::new(id.clone()).unwrap_or_else(|e| panic!("{e}")),
                        ..message.clone()
                    },
                    None => raw(&id, "{}"),
                },
                Msg::Conflicting { of, user, cents } => {
                    let order = earlier(of).and_then(order_of).unwrap_or_else(|| "o0".into());
                    pay_json(&id, &order, &format!("u{user}"), *cents)
                }
                Msg::InvalidAmount { order, user } => raw(
                    &id,
                    &format!(r#"{{"message_id":"{id}","order_id":"o{order}","user_id":"u{user}","amount":"0.001"}}"#),
                ),
                Msg::Malformed => raw(&id, "\u{1}not json"),
                Msg::Refund { of, refund, cents } => {
                    let (order, user) =
                        earlier(of).and_then(order_and_user_of).unwrap_or_else(|| ("o0".into(), "u0".into()));
                    refund_json(&id, &format!("r{refund}"), &order, &user, *cents)
                }
                Msg::RefundAny { order, user, refund, cents } => {
                    refund_json(&id, &format!("r{refund}"), &format!("o{order}"), &format!("u{user}"), *cents)
                }
                Msg::InvalidRefund { order, user, refund } => raw_refund(
                    &id,
                    &format!(
                        r#"{{"message_id":"{id}","refund_id":"r{refund}","order_id":"o{order}","user_id":"u{user}","amount":"0.001"}}"#
                    ),
                ),
            };
            self.sent.push(message.clone());
            batch.push(message);
        }
        batch
    }
}

/// Every order of `0..n`.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for shorter in permutations(n - 1) {
        for at in 0..=shorter.len() {
            let mut order = shorter.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

fn order_of(message: &Inbound) -> Option<String> {
    match &message.command {
        crate::domain::Command::Pay(order) => Some(order.order_id.to_string()),
        crate::domain::Command::Invalid { order_id, .. } => Some(order_id.to_string()),
        crate::domain::Command::Refund(refund) => Some(refund.order_id.to_string()),
        crate::domain::Command::InvalidRefund { order_id, .. } => Some(order_id.id.to_string()),
        crate::domain::Command::Undecodable { .. } => None,
    }
}

fn order_and_user_of(message: &Inbound) -> Option<(String, String)> {
    match &message.command {
        crate::domain::Command::Pay(order) => Some((order.order_id.to_string(), order.user_id.to_string())),
        crate::domain::Command::Refund(refund) => Some((refund.order_id.to_string(), refund.user_id.to_string())),
        _ => None,
    }
}

fn refund_json(id: &str, refund: &str, order: &str, user: &str, cents: Option<u32>) -> Inbound {
    let amount = cents.map(|c| format!(r#","amount":{}"#, cents_amount(c))).unwrap_or_default();
    raw_refund(
        id,
        &format!(r#"{{"message_id":"{id}","refund_id":"{refund}","order_id":"{order}","user_id":"{user}"{amount}}}"#),
    )
}

fn cents_amount(cents: u32) -> Amount {
    Amount::new(Decimal::new(i64::from(cents), 2)).unwrap_or_else(|e| panic!("generated amount: {e}"))
}

fn pay_json(id: &str, order: &str, user: &str, cents: u32) -> Inbound {
    let amount = cents_amount(cents);
    raw(id, &format!(r#"{{"message_id":"{id}","order_id":"{order}","user_id":"{user}","amount":{amount}}}"#))
}

fn same<T: PartialEq + std::fmt::Debug>(got: Result<T, Error>, expected: Result<T, Error>) -> Result<(), String> {
    (got == expected).then_some(()).ok_or_else(|| format!("store answered {got:?}, the model {expected:?}"))
}

type OutcomePair = (Vec<Expected>, Vec<Expected>);

fn same_outcomes_pair(got: &OutcomePair, expected: &OutcomePair) -> Result<(), String> {
    (got == expected).then_some(()).ok_or_else(|| format!("outcomes {got:?}, the model expects {expected:?}"))
}

fn same_outcomes(got: &[Expected], expected: &[Expected]) -> Result<(), String> {
    (got == expected).then_some(()).ok_or_else(|| format!("outcomes {got:?}, the model expects {expected:?}"))
}

/// How strictly the outbox order is compared. Serial transactions write their rows in commit
/// order; concurrent ones (touching disjoint accounts and orders) may interleave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Exact,
    Any,
}

fn outbox_of(snapshot: &Snapshot) -> Vec<(EventKind, String)> {
    snapshot
        .outbox
        .iter()
        .map(|e| {
            let command = e.header("correlation-id").or(e.header("message-id")).unwrap_or_default();
            (e.kind, command.to_string())
        })
        .collect()
}

/// The store holds what the model says: balances, paid orders, inbox, idempotency keys, outbox.
fn agree(snapshot: &Snapshot, model: &Model, order: Order) -> Result<(), String> {
    let balances: BTreeMap<_, _> = snapshot.accounts.iter().map(|(u, b)| (u.clone(), b.value())).collect();
    if balances != model.balances {
        return Err(format!("balances {balances:?}, the model {:?}", model.balances));
    }
    // Conservation, in the model: balance = deposits − payments + refunds, never negative, and
    // the refunds of an order never above its payment. The store's own side is checked by
    // `Snapshot::check_invariants` from its ledger, and by comparing balances and refunds here.
    for (user, balance) in &model.balances {
        let deposited = model.deposits.get(user).copied().unwrap_or_default();
        let paid: Decimal = model.paid.values().filter(|(u, _)| u == user).map(|(_, a)| *a).sum();
        if *balance != deposited - paid + model.refunded_to(user) || *balance < Decimal::ZERO {
            return Err(format!("model broken: {user} balance != deposits - payments + refunds"));
        }
    }
    for (order, (_, paid)) in &model.paid {
        if model.refunded_of(order) > *paid {
            return Err(format!("model broken: {order} refunded over its payment"));
        }
    }
    let refunds: BTreeMap<_, _> = snapshot
        .refunds
        .iter()
        .map(|(id, r)| (id.clone(), (r.order_id.clone(), r.user_id.clone(), r.amount.value())))
        .collect();
    let expected: BTreeMap<_, _> =
        model.refunds.iter().map(|(id, r)| (id.clone(), (r.order.clone(), r.user.clone(), r.amount))).collect();
    if refunds != expected {
        return Err(format!("refunds {refunds:?}, the model {expected:?}"));
    }
    let paid: BTreeMap<_, _> =
        snapshot.payments.iter().map(|(o, p)| (o.clone(), (p.user_id.clone(), p.amount.value()))).collect();
    if paid != model.paid {
        return Err(format!("payments {paid:?}, the model {:?}", model.paid));
    }
    if snapshot.inbox != model.inbox {
        return Err(format!("inbox {:?}, the model {:?}", snapshot.inbox, model.inbox));
    }
    let keys: BTreeSet<_> = snapshot.idempotency.keys().cloned().collect();
    if keys != model.keys.keys().cloned().collect() {
        return Err(format!("idempotency keys {keys:?}, the model {:?}", model.keys.keys()));
    }
    let mut outbox = outbox_of(snapshot);
    let mut expected: Vec<(EventKind, String)> = model.outbox.iter().map(|(k, m)| (*k, m.to_string())).collect();
    if order == Order::Any {
        outbox.sort_by(|a, b| a.1.cmp(&b.1));
        expected.sort_by(|a, b| a.1.cmp(&b.1));
    }
    if outbox != expected {
        return Err(format!("outbox {outbox:?}, the model {expected:?}"));
    }
    Ok(())
}
