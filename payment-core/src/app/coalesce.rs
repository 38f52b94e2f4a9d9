//! Coalescing of concurrent requests into one piece of shared work, with no background task:
//! deposits into one unit of work ([`super::deposit`]), account reads into one query
//! ([`super::account_reads`]).
//!
//! The first caller to find no open window opens one and becomes its leader: the window's work
//! (wait for company, close the window, do the work for everyone in it, answer each) is created
//! with it. Later callers join the open window until it is full; a caller that finds it full or
//! closed opens the next one. Every participant then *drives* the work: whoever holds the work's
//! lock polls it, and the others wait for the lock. So a leader whose caller gives up (an HTTP
//! timeout drops its future) does not strand its followers: the next one in line resumes the
//! work where it stopped. The open window is held weakly, so when every participant has given up
//! the work is dropped — and, for a deposit, its transaction rolled back — as a lone request's
//! would be.
//!
//! How long a window waits is group commit: while other requests of the same coalescer are in
//! flight, their callers are the likely next arrivals, so the window gathers (up to its linger,
//! if it has one); once every request in progress is in the window, nobody is worth waiting for
//! and it goes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, Notify};

use super::Error;
use crate::ports::StoreError;

/// When a window stops gathering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Closing {
    /// Most requests in one window; it goes as soon as it holds that many, and later callers
    /// open the next one. At least one.
    pub max_requests: usize,
    /// The longest a window waits for company; `None` waits with no timer, which only group
    /// commit or a full window ends.
    pub linger: Option<Duration>,
    /// Go as soon as every request in progress is in the window.
    pub group_commit: bool,
}

/// The answer a participant waits for.
pub(super) type Answer<A> = Result<A, Error>;

/// The work of one window: takes the requests gathered, does them, sends one answer each.
pub(super) type Work = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A request waiting in a window, and where to send its answer.
pub(super) struct Pending<R, A> {
    pub request: R,
    pub reply: oneshot::Sender<Answer<A>>,
}

/// What the participants of a window gather, shared with the window's work.
pub(super) struct Gather<R, A> {
    state: Mutex<GatherState<R, A>>,
    /// Told when the window is full or, with group commit, holds every request in progress.
    full: Notify,
    linger: Option<Duration>,
}

struct GatherState<R, A> {
    pending: Vec<Pending<R, A>>,
    closed: bool,
}

impl<R, A> GatherState<R, A> {
    /// Adds `pending`; the request that fills the window closes it. Whether it did.
    fn push(&mut self, pending: Pending<R, A>, max_requests: usize) -> bool {
        self.pending.push(pending);
        self.closed |= self.pending.len() >= max_requests;
        self.closed
    }
}

impl<R, A> Gather<R, A> {
    /// A window holding its first request.
    fn new(first: Pending<R, A>, closing: &Closing) -> Self {
        let mut state = GatherState { pending: Vec::new(), closed: false };
        let full = Notify::new();
        if state.push(first, closing.max_requests) {
            full.notify_one();
        }
        Self { state: Mutex::new(state), full, linger: closing.linger }
    }

    /// Adds `pending` unless the window is closed or full, then hands it back; the request that
    /// fills the window tells its work to go.
    fn add(&self, pending: Pending<R, A>, max_requests: usize) -> Result<(), Pending<R, A>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed || state.pending.len() >= max_requests {
            return Err(pending);
        }
        if state.push(pending, max_requests) {
            self.full.notify_one();
        }
        Ok(())
    }

    /// Waits until the window is full, holds every request in progress (group commit), or its
    /// linger has passed.
    pub async fn ready(&self) {
        match self.linger {
            // Elapsed or notified: either way the window's time is up.
            Some(linger) => drop(tokio::time::timeout(linger, self.full.notified()).await),
            None => self.full.notified().await,
        }
    }

    /// Closes the window and takes its requests, leaving out those whose callers gave up.
    pub fn close(&self) -> Vec<Pending<R, A>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.closed = true;
        let mut pending = std::mem::take(&mut state.pending);
        pending.retain(|p| !p.reply.is_closed());
        pending
    }
}

/// A window: its gathered requests and its work, driven by whichever participant holds the lock.
struct Window<R, A> {
    gather: Arc<Gather<R, A>>,
    work: tokio::sync::Mutex<Option<Work>>,
}

/// The windows of one kind of request of one [`Payments`](super::Payments): at most one open
/// at a time.
pub(super) struct Coalescer<R, A> {
    closing: Closing,
    /// What a caller hears if its window's work ends without answering it (it panicked).
    abandoned: &'static str,
    open: Mutex<Open<R, A>>,
}

struct Open<R, A> {
    window: Option<Weak<Window<R, A>>>,
    /// Calls in progress, in any window: the open window's company to wait for.
    in_progress: usize,
}

impl<R, A> Open<R, A> {
    /// With group commit, tells the open window to stop waiting once it holds every request in
    /// progress.
    fn wake_if_alone(&self, closing: &Closing) {
        let Some(window) = self.window.as_ref().and_then(Weak::upgrade).filter(|_| closing.group_commit) else {
            return;
        };
        let state = window.gather.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.closed && state.pending.len() >= self.in_progress {
            window.gather.full.notify_one();
        }
    }
}

/// Counts a call out of [`Open::in_progress`] however it ends, cancellation included.
struct InProgress<'a, R, A>(&'a Coalescer<R, A>);

impl<R, A> Drop for InProgress<'_, R, A> {
    fn drop(&mut self) {
        let mut open = self.0.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.in_progress = open.in_progress.saturating_sub(1);
        open.wake_if_alone(&self.0.closing);
    }
}

impl<R, A> Coalescer<R, A> {
    /// Windows that close by `closing` (a `max_requests` of zero counts as one); `abandoned`
    /// says, in a [`StoreError::Unavailable`], what became of a request nobody answered.
    pub fn new(closing: Closing, abandoned: &'static str) -> Self {
        let closing = Closing { max_requests: closing.max_requests.max(1), ..closing };
        Self { closing, abandoned, open: Mutex::new(Open { window: None, in_progress: 0 }) }
    }

    /// Adds `request` to the open window, or opens one whose work `lead` makes, and waits for
    /// the request's answer, driving the window's work meanwhile.
    pub async fn submit(&self, request: R, lead: impl FnOnce(Arc<Gather<R, A>>) -> Work) -> Answer<A> {
        let (reply, answer) = oneshot::channel();
        let (window, _in_progress) = self.join(Pending { request, reply }, lead);
        {
            let mut work = window.work.lock().await;
            if let Some(future) = work.as_mut() {
                future.as_mut().await;
                *work = None;
            }
        }
        answer.await.unwrap_or_else(|_| Err(Error::Store(StoreError::Unavailable(self.abandoned.into()))))
    }

    fn join(
        &self,
        pending: Pending<R, A>,
        lead: impl FnOnce(Arc<Gather<R, A>>) -> Work,
    ) -> (Arc<Window<R, A>>, InProgress<'_, R, A>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.in_progress += 1;
        let in_progress = InProgress(self);
        let window = match open.window.as_ref().and_then(Weak::upgrade) {
            Some(window) => match window.gather.add(pending, self.closing.max_requests) {
                Ok(()) => window,
                Err(pending) => self.open_window(&mut open, pending, lead),
            },
            None => self.open_window(&mut open, pending, lead),
        };
        open.wake_if_alone(&self.closing);
        (window, in_progress)
    }

    /// Opens the next window with `first` in it, and makes its work.
    fn open_window(
        &self,
        open: &mut Open<R, A>,
        first: Pending<R, A>,
        lead: impl FnOnce(Arc<Gather<R, A>>) -> Work,
    ) -> Arc<Window<R, A>> {
        let gather = Arc::new(Gather::new(first, &self.closing));
        let window = Arc::new(Window { work: tokio::sync::Mutex::new(Some(lead(gather.clone()))), gather });
        open.window = Some(Arc::downgrade(&window));
        window
    }
}
