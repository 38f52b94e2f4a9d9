//! The retention task: prunes what exactly-once no longer needs, every interval, for as long as
//! the service runs. A failed pass is logged and retried; it never ends the task.

use std::time::Duration;

use payment_core::ports::{Retention, RetentionPolicy};
use tokio_util::sync::CancellationToken;

/// A failed pass is retried after this, or after the interval when that is shorter.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

pub async fn run<S: Retention>(store: S, policy: RetentionPolicy, every: Duration, shutdown: CancellationToken) {
    let mut wait = every;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match store.prune(policy).await {
            Ok(pruned) => {
                tracing::debug!(?pruned, "retention pass done");
                every
            }
            Err(error) => {
                let retry = every.min(RETRY_AFTER_FAILURE);
                tracing::error!(%error, ?retry, "retention pass failed; retrying");
                retry
            }
        };
    }
}
