//! The outbox gauges an operator alerts on: rows waiting, rows parked, and the age of the oldest
//! waiting row — the one figure that grows during a broker outage, a missing topic or a withdrawn
//! authorisation, whatever the traffic, since those are retried rather than parked.
//!
//! They are read by a task of their own while leading, not inside publishing rounds: a count over
//! an outbox full of rows published since the last vacuum takes tens of milliseconds, which no
//! event should wait for.

use std::time::Duration;

use chrono::Utc;
use payment_core::ports::Outbox;
use tokio_util::sync::CancellationToken;

use crate::telemetry;

/// How often the leader reads the gauges.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// Reads the backlog, parked and oldest-row gauges every [`GAUGE_INTERVAL`] until `stop`.
pub(super) async fn report_gauges<O: Outbox>(outbox: O, stop: CancellationToken) {
    let mut every = tokio::time::interval(GAUGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Ok(backlog) = outbox.backlog().await {
            metrics::gauge!(telemetry::OUTBOX_BACKLOG).set(backlog as f64);
        }
        if let Ok(parked) = outbox.parked().await {
            metrics::gauge!(telemetry::OUTBOX_PARKED).set(parked as f64);
        }
        if let Ok(oldest) = outbox.oldest_unpublished().await {
            let age = oldest.map_or(Duration::ZERO, |at| (Utc::now() - at).to_std().unwrap_or_default());
            metrics::gauge!(telemetry::OUTBOX_OLDEST_UNPUBLISHED_SECONDS).set(age.as_secs_f64());
        }
    }
}
