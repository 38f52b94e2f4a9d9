//! Bounded retries of a whole unit of work after a conflict with a concurrent one.

use std::future::Future;
use std::time::Duration;

use super::Error;
use crate::ports::StoreError;
use crate::Backoff;

/// How often a unit of work is re-run after [`StoreError::Conflict`], and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included; at least one.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each later one, with jitter.
    pub first_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 8, first_backoff: Duration::from_millis(2) }
    }
}

impl RetryPolicy {
    pub(crate) async fn run<T, F, Fut>(&self, what: &'static str, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut backoff = Backoff::new(self.first_backoff, Duration::MAX);
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(Error::Store(error @ StoreError::Conflict(_))) if tries < self.max_attempts.max(1) => {
                    tracing::debug!(%error, attempt = tries, what, "unit of work conflicted; retrying");
                    tokio::time::sleep(backoff.next_wait_with_jitter()).await;
                    tries += 1;
                }
                Err(Error::Store(error @ StoreError::Conflict(_))) => {
                    tracing::warn!(%error, attempts = tries, what, "unit of work still conflicting; giving up");
                    return Err(Error::Store(error));
                }
                other => return other,
            }
        }
    }
}
