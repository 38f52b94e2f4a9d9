//! Leadership: one active publisher per store (the store's leader lock, an advisory lock on
//! PostgreSQL), the others standing by and polling for the lock.
//!
//! The leader checks its lock before every round (and inside a round before any late re-send,
//! see `round`), and steps down when the check fails: its lock connection died, so a standby may
//! already lead. A leader that publishes and parks nothing for `leader_give_up_after` while rows
//! wait releases its lock and waits `leader_retry_interval` before trying to lead again, so a
//! standby, whose connection to the broker may be healthy, can take over.

use std::time::Instant;

use payment_core::ports::{Leadership, Outbox, Wakeups};
use payment_core::Backoff;
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;

use super::gauges::report_gauges;
use super::{pause, OutboxPublisher};
use crate::telemetry;

/// How a term as leader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    Shutdown,
    LostLock,
    GaveUp,
}

impl<O: Outbox> OutboxPublisher<O> {
    /// Runs until `shutdown`: waits for leadership, publishes while leading, and flushes at the end.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        while !shutdown.is_cancelled() {
            match self.outbox.try_lead().await {
                Ok(Some(leader)) => {
                    backoff.reset();
                    tracing::info!("outbox publisher is the leader");
                    metrics::gauge!(telemetry::PUBLISHER_LEADING).set(1.0);
                    let term = self.lead(leader, &shutdown).await;
                    metrics::gauge!(telemetry::PUBLISHER_LEADING).set(0.0);
                    if term != Term::Shutdown {
                        // The lock is free, or another holds it; a standby polling for it gets
                        // its chance first.
                        pause(&shutdown, self.config.leader_retry_interval).await;
                    }
                }
                Ok(None) => {
                    tracing::debug!("another publisher leads; standing by");
                    pause(&shutdown, self.config.leader_retry_interval).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reach the store to take the publisher lock");
                    pause(&shutdown, backoff.next_wait()).await;
                }
            }
        }
        if let Err(error) = self.producer.flush(self.config.delivery_timeout) {
            tracing::warn!(%error, "producer not flushed at shutdown; unacknowledged rows stay in the outbox");
        }
        tracing::info!("outbox publisher stopped");
    }

    /// Publishes while `leader` holds the lock. Returning drops `leader`, which releases the lock.
    async fn lead(&mut self, leader: O::Leader, shutdown: &CancellationToken) -> Term {
        let gauges = shutdown.child_token();
        tokio::spawn(report_gauges(self.outbox.clone(), gauges.clone()));
        // Stops the gauges however the term ends.
        let _gauges = gauges.drop_guard();
        self.publish_while_leading(leader, shutdown).await
    }

    /// Rounds of publishing, each after checking the lock, until the term ends.
    async fn publish_while_leading(&mut self, mut leader: O::Leader, shutdown: &CancellationToken) -> Term {
        let mut wakeups = match self.outbox.wakeups().await {
            Ok(wakeups) => Some(wakeups),
            Err(error) => {
                tracing::warn!(%error, "no commit notifications; polling only");
                None
            }
        };
        let mut backoff = Backoff::new(self.config.retry_first_backoff, self.config.retry_max_backoff);
        // The last time this leader moved a row, or found none waiting.
        let mut last_progress = Instant::now();
        while !shutdown.is_cancelled() {
            if !leader.still_leading().await {
                tracing::warn!("outbox publisher lost its leadership");
                return Term::LostLock;
            }
            let round = self.publish_round(&mut leader).await;
            if round.lost_leadership() {
                metrics::counter!(telemetry::OUTBOX_PUBLISH_FAILURES).increment(1);
                tracing::warn!("outbox publisher lost its leadership during a round; it stopped sending");
                return Term::LostLock;
            }
            if round.progressed() || (round.read == 0 && round.stopped.is_none()) {
                last_progress = Instant::now();
            }
            match round.stopped {
                None if round.read == 0 => {
                    backoff.reset();
                    self.idle(&mut wakeups, shutdown).await;
                }
                None => backoff.reset(),
                Some(error) => {
                    metrics::counter!(telemetry::OUTBOX_PUBLISH_FAILURES).increment(1);
                    let stuck_for = last_progress.elapsed();
                    if stuck_for >= self.config.leader_give_up_after {
                        metrics::counter!(telemetry::PUBLISHER_GAVE_UP).increment(1);
                        tracing::warn!(
                            %error,
                            ?stuck_for,
                            retry_in = ?self.config.leader_retry_interval,
                            "outbox publisher published nothing for too long; giving up the leadership so another \
                             instance can try"
                        );
                        return Term::GaveUp;
                    }
                    let wait = backoff.next_wait();
                    tracing::warn!(%error, ?wait, "publishing failed; the rows stay in the outbox and are retried");
                    pause(shutdown, wait).await;
                }
            }
        }
        Term::Shutdown
    }

    /// Waits for a commit notification, the poll interval, or shutdown.
    async fn idle(&self, wakeups: &mut Option<O::Wakeups>, shutdown: &CancellationToken) {
        let notified = async {
            match wakeups.as_mut() {
                Some(w) => {
                    if let Err(error) = w.next().await {
                        tracing::warn!(%error, "commit notifications lost; polling only");
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = notified => {}
            _ = tokio::time::sleep(self.config.poll_interval) => {}
        }
    }
}
