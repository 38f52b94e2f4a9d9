//! Coalesced account reads: concurrent [`Payments::balance`](super::Payments::balance) calls, and
//! the account check of [`Payments::statement`](super::Payments::statement), share one
//! [`Store::accounts`] query.
//!
//! Group commit with no timer and no background task, on the windows of [`super::coalesce`]: a
//! read that finds no other read in progress goes at once, alone. Reads that arrive while a query
//! is in flight gather in the next window, which goes — one query for all of them — as soon as
//! every read in progress is in it, that is once the queries in flight have answered; or at once
//! when it holds `max_reads` users. A read's cost was its PostgreSQL round trip (socket I/O and
//! task switches, by `perf`); the callers that waited for one now share the next.
//!
//! Each caller gets its own answer: its account, or [`Error::AccountNotFound`]; a store error
//! answers every caller of that query with the error. A caller that gives up (an HTTP timeout
//! drops its future) is left out of a query that has not gone yet and never strands the others:
//! whoever is next drives the query, as for deposits.

use std::sync::Arc;

use super::coalesce::{Closing, Coalescer, Gather, Work};
use super::Error;
use crate::domain::{Account, UserId};
use crate::ports::{Store, StoreError};

/// Most users one coalesced query asks for, unless
/// [`Payments::with_max_reads_per_query`](super::Payments::with_max_reads_per_query) says
/// otherwise. Beyond it, waiting readers fill further queries that go at once.
pub const DEFAULT_MAX_READS_PER_QUERY: usize = 256;

/// The account reads of one [`Payments`](super::Payments) and its clones.
pub(super) struct AccountReads(Coalescer<UserId, Account>);

impl AccountReads {
    /// At most `max_reads` users per query (zero counts as one: every read its own query).
    pub fn new(max_reads: usize) -> Self {
        // No linger: a window waits only for the reads in progress, each of which ends —
        // answered, failed (a PostgreSQL query by its statement timeout at the latest) or given
        // up — so group commit needs no timer.
        let closing = Closing { max_requests: max_reads, linger: None, group_commit: true };
        Self(Coalescer::new(closing, "the account read's query was abandoned"))
    }

    /// The user's committed account, read together with the concurrent reads.
    pub async fn read<S: Store>(&self, store: &S, user: &UserId) -> Result<Account, Error> {
        self.0.submit(user.clone(), |gather| query(store.clone(), gather)).await
    }
}

/// A window's work: wait for the queries in flight, then read every waiting user at once.
fn query<S: Store>(store: S, gather: Arc<Gather<UserId, Account>>) -> Work {
    Box::pin(async move {
        gather.ready().await;
        let (users, replies): (Vec<UserId>, Vec<_>) =
            gather.close().into_iter().map(|pending| (pending.request, pending.reply)).unzip();
        if users.is_empty() {
            return;
        }
        let answers: Vec<Result<Account, Error>> = match store.accounts(&users).await {
            Ok(accounts) if accounts.len() == users.len() => {
                accounts.into_iter().map(|account| account.ok_or(Error::AccountNotFound)).collect()
            }
            Ok(accounts) => {
                let broken = format!("asked for {} accounts, the store answered {}", users.len(), accounts.len());
                vec![Err(Error::Store(StoreError::Invariant(broken))); users.len()]
            }
            Err(error) => vec![Err(Error::Store(error)); users.len()],
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            // A caller that gave up has dropped its receiver; its answer has nowhere to go.
            let _ = reply.send(answer);
        }
    })
}
