//! Coalesced balance reads (`payment_core::app`'s account reads) on a store that records each
//! `accounts` query and can hold queries at a gate or fail one: callers share queries and each
//! gets its own answer, bounded by `max_reads`; a caller that gives up strands nobody; a store
//! error reaches every caller of its query.
//!
//! Callers are started by polling their future once (it joins its window, or sends its query)
//! and only then spawned, so which window each one is in is decided by the test, not by timing.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use payment_core::domain::{Account, StatementEntry, StatementPage, UserId};
use payment_core::memory::{MemoryStore, MemoryTx};
use payment_core::ports::{Store, StoreError};
use payment_core::testing::contract::{amount, money, user};
use payment_core::{Error, Payments};
use rust_decimal::Decimal;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Far more permits than any test's queries take: an open gate.
const OPEN: u32 = 1 << 20;

/// Longest any test waits for an answer; a stranded caller fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(5);

/// A [`MemoryStore`] whose `accounts` queries are recorded, wait at a gate, and may be failed.
#[derive(Clone)]
struct Watched {
    inner: MemoryStore,
    queries: Arc<Mutex<Vec<Vec<UserId>>>>,
    gate: Arc<Semaphore>,
    fail_next: Arc<Mutex<Option<StoreError>>>,
}

impl Watched {
    fn new() -> Self {
        Self {
            inner: MemoryStore::new(),
            queries: Arc::default(),
            gate: Arc::new(Semaphore::new(OPEN as usize)),
            fail_next: Arc::default(),
        }
    }

    /// Holds every `accounts` query from now on, once it has been recorded.
    async fn close_gate(&self) {
        let held = self.gate.acquire_many(OPEN).await.unwrap_or_else(|e| panic!("{e}"));
        held.forget();
    }

    fn open_gate(&self) {
        self.gate.add_permits(OPEN as usize);
    }

    /// Makes the next `accounts` query fail with `error`.
    fn fail_next(&self, error: StoreError) {
        *self.fail_next.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    /// The users of each `accounts` query so far, in the order the queries were sent.
    fn queries(&self) -> Vec<Vec<UserId>> {
        self.queries.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl Store for Watched {
    type Tx = MemoryTx;

    async fn begin(&self) -> Result<MemoryTx, StoreError> {
        self.inner.begin().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn account(&self, _user: &UserId) -> Result<Option<Account>, StoreError> {
        panic!("account reads are coalesced: they go through Store::accounts");
    }

    async fn accounts(&self, users: &[UserId]) -> Result<Vec<Option<Account>>, StoreError> {
        self.queries.lock().unwrap_or_else(PoisonError::into_inner).push(users.to_vec());
        let fail = self.fail_next.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(self.gate.acquire().await.unwrap_or_else(|e| panic!("{e}")));
        match fail {
            Some(error) => Err(error),
            None => self.inner.accounts(users).await,
        }
    }

    async fn statement(&self, user: &UserId, page: StatementPage) -> Result<Vec<StatementEntry>, StoreError> {
        self.inner.statement(user, page).await
    }
}

/// Payments on a fresh [`Watched`] store where each of `users` holds the deposit given.
async fn funded(users: &[(&str, &str)]) -> (Payments<Watched>, Watched) {
    let store = Watched::new();
    let payments = Payments::new(store.clone());
    for (who, deposit) in users {
        payments.create_account(&user(who)).await.unwrap_or_else(|e| panic!("create {who}: {e}"));
        payments.deposit(&user(who), amount(deposit), None).await.unwrap_or_else(|e| panic!("deposit {who}: {e}"));
    }
    (payments, store)
}

type Read = Pin<Box<dyn Future<Output = Result<Account, Error>> + Send>>;

/// `who`'s balance read, not yet polled.
fn read(payments: &Payments<Watched>, who: &str) -> Read {
    let (payments, who) = (payments.clone(), user(who));
    Box::pin(async move { payments.balance(&who).await })
}

/// Polls `read` once — it joins its window, or sends its query — then hands it to the runtime.
async fn started(mut read: Read) -> JoinHandle<Result<Account, Error>> {
    match poll_once(&mut read).await {
        Some(answer) => tokio::spawn(async move { answer }),
        None => tokio::spawn(read),
    }
}

/// Polls `read` once: its answer if it has one already.
async fn poll_once(read: &mut Read) -> Option<Result<Account, Error>> {
    match std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
        Poll::Ready(answer) => Some(answer),
        Poll::Pending => None,
    }
}

/// The answers of `reads`, each within [`PATIENCE`].
async fn answers(reads: Vec<JoinHandle<Result<Account, Error>>>) -> Vec<Result<(String, Decimal), Error>> {
    let mut answers = Vec::new();
    for read in reads {
        let answer = tokio::time::timeout(PATIENCE, read).await.unwrap_or_else(|_| panic!("a reader was stranded"));
        let answer = answer.unwrap_or_else(|e| panic!("a reader panicked: {e}"));
        answers.push(answer.map(|a| (a.user_id.to_string(), a.balance.value())));
    }
    answers
}

fn users(names: &[&str]) -> Vec<UserId> {
    names.iter().map(|name| user(name)).collect()
}

fn balance(who: &str, how_much: &str) -> Result<(String, Decimal), Error> {
    Ok((who.to_string(), money(how_much)))
}

/// A read with no other in progress goes at once, alone; the reads that arrive while its query
/// is in flight wait for it and then share one query, each answered with its own account.
#[tokio::test]
async fn concurrent_reads_share_one_query_and_each_gets_its_account() {
    let names = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"];
    let deposits: Vec<(&str, String)> = names.iter().enumerate().map(|(n, who)| (*who, format!("{n}.5"))).collect();
    let (payments, store) = funded(&deposits.iter().map(|(w, d)| (*w, d.as_str())).collect::<Vec<_>>()).await;
    store.close_gate().await;
    let first = started(read(&payments, "u0")).await;
    assert_eq!(store.queries(), [users(&["u0"])], "a lone read goes at once");
    let mut reads = vec![first];
    for who in &names[1..] {
        reads.push(started(read(&payments, who)).await);
    }
    assert_eq!(store.queries().len(), 1, "the others wait for the query in flight");
    store.open_gate();
    let expected: Vec<_> = deposits.iter().map(|(who, deposit)| balance(who, deposit)).collect();
    assert_eq!(answers(reads).await, expected);
    assert_eq!(store.queries(), [users(&names[..1]), users(&names[1..])], "ten reads, two queries");
}

/// However many readers wait, no query asks for more than `max_reads` users; the full ones go
/// at once, the rest waits for them; every reader is asked for exactly once.
#[tokio::test]
async fn no_query_asks_for_more_than_max_reads_users() {
    let names: Vec<String> = (0..11).map(|n| format!("u{n}")).collect();
    let (payments, store) = funded(&names.iter().map(|n| (n.as_str(), "1")).collect::<Vec<_>>()).await;
    let payments = payments.with_max_reads_per_query(4);
    store.close_gate().await;
    let mut reads = Vec::new();
    for who in &names {
        reads.push(started(read(&payments, who)).await);
    }
    store.open_gate();
    assert!(answers(reads).await.iter().zip(&names).all(|(answer, who)| answer == &balance(who, "1")));
    let queries = store.queries();
    let mut sizes: Vec<usize> = queries.iter().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(sizes, [1, 2, 4, 4], "the lone first, two full ones, the rest: {queries:?}");
    let mut asked: Vec<UserId> = queries.concat();
    asked.sort();
    let mut expected = users(&names.iter().map(String::as_str).collect::<Vec<_>>());
    expected.sort();
    assert_eq!(asked, expected, "each reader asked for once");
}

/// The caller whose future drives a gathering query gives up (its future is dropped): the next
/// reader of that query drives it, every other reader is answered, and the one that gave up is
/// left out of the query.
#[tokio::test]
async fn a_reader_giving_up_while_its_query_gathers_strands_no_other() {
    let (payments, store) = funded(&[("a", "1"), ("leader", "2"), ("f1", "3"), ("f2", "4")]).await;
    store.close_gate().await;
    let first = started(read(&payments, "a")).await;
    let mut leader = read(&payments, "leader");
    assert!(poll_once(&mut leader).await.is_none(), "the leader waits for the query in flight");
    let followers = vec![started(read(&payments, "f1")).await, started(read(&payments, "f2")).await];
    drop(leader);
    store.open_gate();
    assert_eq!(answers(followers).await, [balance("f1", "3"), balance("f2", "4")]);
    assert_eq!(answers(vec![first]).await, [balance("a", "1")]);
    assert_eq!(store.queries(), [users(&["a"]), users(&["f1", "f2"])]);
}

/// The caller whose future drives a query gives up while the query is in flight: the next reader
/// of that query resumes it, and every other reader is answered.
#[tokio::test]
async fn a_reader_giving_up_while_its_query_is_in_flight_strands_no_other() {
    let (payments, store) = funded(&[("a", "1"), ("leader", "2"), ("f1", "3"), ("f2", "4")]).await;
    let payments = payments.with_max_reads_per_query(3);
    store.close_gate().await;
    let first = started(read(&payments, "a")).await;
    let mut leader = read(&payments, "leader");
    assert!(poll_once(&mut leader).await.is_none());
    let followers = vec![started(read(&payments, "f1")).await, started(read(&payments, "f2")).await];
    // The query is full: polled again, the leader sends it, and it waits at the gate.
    assert!(poll_once(&mut leader).await.is_none());
    assert_eq!(store.queries(), [users(&["a"]), users(&["leader", "f1", "f2"])]);
    drop(leader);
    store.open_gate();
    assert_eq!(answers(followers).await, [balance("f1", "3"), balance("f2", "4")]);
    assert_eq!(answers(vec![first]).await, [balance("a", "1")]);
    assert_eq!(store.queries().len(), 2, "the query was resumed, not sent again");
}

/// A store error answers every reader of the failed query with it, and only them.
#[tokio::test]
async fn a_store_error_reaches_every_reader_of_its_query() {
    let (payments, store) = funded(&[("a", "1"), ("u1", "2"), ("u2", "3"), ("u3", "4")]).await;
    store.close_gate().await;
    let first = started(read(&payments, "a")).await;
    let failing = StoreError::Unavailable("injected".into());
    store.fail_next(failing.clone());
    let mut reads = Vec::new();
    for who in ["u1", "u2", "u3", "ghost"] {
        reads.push(started(read(&payments, who)).await);
    }
    store.open_gate();
    assert_eq!(answers(vec![first]).await, [balance("a", "1")]);
    assert_eq!(answers(reads).await, vec![Err(Error::Store(failing)); 4]);
    assert_eq!(store.queries(), [users(&["a"]), users(&["u1", "u2", "u3", "ghost"])]);
    let again = tokio::time::timeout(PATIENCE, payments.balance(&user("u1"))).await;
    assert_eq!(again.map(|a| a.map(|a| a.balance.value())), Ok(Ok(money("2"))), "the error was the query's only");
}

/// A user with no account is `AccountNotFound`, alone or among readers who have one; the
/// statement's account check answers the same way.
#[tokio::test]
async fn an_unknown_user_is_account_not_found() {
    let (payments, store) = funded(&[("a", "1"), ("u1", "2"), ("u2", "3")]).await;
    let alone = tokio::time::timeout(PATIENCE, payments.balance(&user("ghost"))).await;
    assert_eq!(alone, Ok(Err(Error::AccountNotFound)));
    let page = StatementPage::new(10, None).unwrap_or_else(|| panic!("a page of 10 is valid"));
    let statement = tokio::time::timeout(PATIENCE, payments.statement(&user("ghost"), page)).await;
    assert_eq!(statement.map(|s| s.map(|s| s.entries.len())), Ok(Err(Error::AccountNotFound)));
    let statement = tokio::time::timeout(PATIENCE, payments.statement(&user("u1"), page)).await;
    assert_eq!(statement.map(|s| s.map(|s| s.entries.len())), Ok(Ok(1)));

    store.close_gate().await;
    let first = started(read(&payments, "a")).await;
    let mut reads = Vec::new();
    for who in ["u1", "ghost", "u2", "nobody"] {
        reads.push(started(read(&payments, who)).await);
    }
    store.open_gate();
    assert_eq!(answers(vec![first]).await, [balance("a", "1")]);
    let expected = [balance("u1", "2"), Err(Error::AccountNotFound), balance("u2", "3"), Err(Error::AccountNotFound)];
    assert_eq!(answers(reads).await, expected);
    let queries = store.queries();
    assert_eq!(queries[queries.len() - 1], users(&["u1", "ghost", "u2", "nobody"]), "one shared query");
}
