//! Coalescing of concurrent deposits into one unit of work, with no background task.
//!
//! The first caller to find no open window opens one and becomes its leader: the window's work
//! (wait for company, open the transaction, close the window, run the batch, answer everyone) is
//! created with it. Later callers join the open window until it is full; a caller that finds it
//! full or closed opens the next one. Every participant then *drives* the work: whoever holds the
//! work's lock polls it, and the others wait for the lock. So a leader whose caller gives up (an
//! HTTP timeout drops its future) does not strand its followers: the next one in line resumes the
//! work where it stopped. The open window is held weakly, so when every participant has given up
//! the work is dropped — and its transaction rolled back — as a lone request's would be.
//!
//! How long a window waits is group commit: while other deposits of the same `Payments` are in
//! flight, their callers are the likely next arrivals, so the window gathers (up to the linger);
//! once every deposit in progress is in the window, nobody is worth waiting for and it goes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use super::{DepositReceipt, Error};
use crate::decide::DepositRequest;
use crate::ports::StoreError;

/// How concurrent [`Payments::deposit`](super::Payments::deposit) calls share a unit of work.
///
/// A batch closes when it holds `max_requests` deposits; or, with `group_commit`, as soon as no
/// other deposit of the same [`Payments`](super::Payments) is in flight; or once `linger` has
/// passed since its first deposit. It keeps gathering while its transaction waits for a pooled
/// connection. [`DepositBatching::OFF`] — or any `max_requests <= 1` or zero `linger` — gives
/// each deposit its own unit of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepositBatching {
    /// Most deposits in one unit of work; later callers start the next batch.
    pub max_requests: usize,
    /// The longest the first deposit of a batch waits for others.
    pub linger: Duration,
    /// Close a batch without waiting when every deposit in progress is in it: a lone deposit
    /// waits for nothing, and under load a batch gathers while the earlier ones run. `false`
    /// waits out `linger` unless the batch fills (tests use it to make batches predictable).
    pub group_commit: bool,
}

impl DepositBatching {
    /// One unit of work per deposit.
    pub const OFF: DepositBatching = DepositBatching { max_requests: 1, linger: Duration::ZERO, group_commit: true };

    /// Whether deposits are coalesced at all.
    pub fn is_on(&self) -> bool {
        self.max_requests > 1 && !self.linger.is_zero()
    }
}

impl Default for DepositBatching {
    /// 64 deposits, waiting at most 2 ms, with group commit.
    fn default() -> Self {
        Self { max_requests: 64, linger: Duration::from_millis(2), group_commit: true }
    }
}

/// The answer a participant waits for.
pub(super) type Answer = Result<DepositReceipt, Error>;

/// The work of one window: runs the requests it is given, one answer each, in order.
pub(super) type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A deposit waiting in a window, and where to send its answer.
pub(super) struct Pending {
    pub request: DepositRequest,
    pub reply: oneshot::Sender<Answer>,
}

/// What the participants of a window gather, shared with the window's work.
#[derive(Default)]
pub(super) struct Gather {
    state: Mutex<GatherState>,
    full: Notify,
}

#[derive(Default)]
struct GatherState {
    pending: Vec<Pending>,
    closed: bool,
}

impl Gather {
    /// Waits until the window is full or `linger` has passed.
    pub async fn linger(&self, linger: Duration) {
        // Elapsed or notified: either way the window's time is up.
        let _ = tokio::time::timeout(linger, self.full.notified()).await;
    }

    /// Closes the window and takes its deposits, leaving out those whose callers gave up.
    pub fn close(&self) -> Vec<Pending> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.closed = true;
        let mut pending = std::mem::take(&mut state.pending);
        pending.retain(|p| !p.reply.is_closed());
        pending
    }
}

/// A window: its gathered deposits and its work, driven by whichever participant holds the lock.
struct Window {
    gather: Arc<Gather>,
    work: tokio::sync::Mutex<Option<Work>>,
}

/// The windows of one [`Payments`](super::Payments): at most one open at a time.
pub(super) struct Coalescer {
    batching: DepositBatching,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    window: Option<Weak<Window>>,
    /// Deposit calls in progress, in any window: the open window's company to wait for.
    in_progress: usize,
}

impl Open {
    /// With group commit, tells the open window to stop waiting once it holds every deposit in
    /// progress.
    fn wake_if_alone(&self, batching: &DepositBatching) {
        let Some(window) = self.window.as_ref().and_then(Weak::upgrade).filter(|_| batching.group_commit) else {
            return;
        };
        let state = window.gather.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.closed && state.pending.len() >= self.in_progress {
            window.gather.full.notify_one();
        }
    }
}

/// Counts a deposit call out of [`Open::in_progress`] however it ends, cancellation included.
struct InProgress<'a>(&'a Coalescer);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.in_progress = open.in_progress.saturating_sub(1);
        open.wake_if_alone(&self.0.batching);
    }
}

impl Coalescer {
    pub fn new(batching: DepositBatching) -> Self {
        Self { batching, open: Mutex::default() }
    }

    pub fn batching(&self) -> DepositBatching {
        self.batching
    }

    /// Adds `request` to the open window, or opens one whose work `lead` makes, and waits for
    /// the request's answer, driving the window's work meanwhile.
    pub async fn deposit(&self, request: DepositRequest, lead: impl FnOnce(Arc<Gather>) -> Work) -> Answer {
        let (reply, answer) = oneshot::channel();
        let (window, _in_progress) = self.join(Pending { request, reply }, lead);
        {
            let mut work = window.work.lock().await;
            if let Some(future) = work.as_mut() {
                future.as_mut().await;
                *work = None;
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::Store(StoreError::Unavailable(
                "the deposit's batch was abandoned; whether it committed is unknown".into(),
            )))
        })
    }

    fn join(&self, pending: Pending, lead: impl FnOnce(Arc<Gather>) -> Work) -> (Arc<Window>, InProgress<'_>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.in_progress += 1;
        let in_progress = InProgress(self);
        let mut pending = Some(pending);
        let joined = open.window.as_ref().and_then(Weak::upgrade).filter(|window| {
            let mut state = window.gather.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.closed || state.pending.len() >= self.batching.max_requests {
                return false;
            }
            state.pending.extend(pending.take());
            if state.pending.len() >= self.batching.max_requests {
                state.closed = true;
                window.gather.full.notify_one();
            }
            true
        });
        let window = joined.unwrap_or_else(|| {
            let gather = Arc::new(Gather::default());
            gather.state.lock().unwrap_or_else(PoisonError::into_inner).pending.extend(pending);
            let window = Arc::new(Window { work: tokio::sync::Mutex::new(Some(lead(gather.clone()))), gather });
            open.window = Some(Arc::downgrade(&window));
            window
        });
        open.wake_if_alone(&self.batching);
        (window, in_progress)
    }
}
