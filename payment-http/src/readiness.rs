//! Readiness probed in the background, so that `/readyz` costs nothing to call.
//!
//! Asked on every request, `/readyz` pinged PostgreSQL and asked Kafka for the metadata of every
//! topic: anyone who could reach it had an amplifier into both. [`probe_readiness`] runs the same
//! checks every few seconds, one at a time, each bounded by a timeout, and keeps only the verdict;
//! `/readyz` answers from [`LastReadiness`]. The cause of a failure goes to the log (on each change
//! of verdict, not on every probe), never into the response.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use payment_core::ports::Store;
use payment_core::Payments;

use crate::ReadinessCheck;

/// The verdict of the last probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No probe has finished yet.
    Unknown,
    /// Storage and the extra check answered.
    Ready,
    /// One of them did not.
    NotReady,
}

/// The verdict `/readyz` answers from; cheap to clone, shared with the probe.
#[derive(Debug, Clone)]
pub struct LastReadiness(Arc<RwLock<Verdict>>);

impl Default for LastReadiness {
    fn default() -> Self {
        Self(Arc::new(RwLock::new(Verdict::Unknown)))
    }
}

impl LastReadiness {
    /// The last verdict.
    pub fn get(&self) -> Verdict {
        match self.0.read() {
            Ok(verdict) => *verdict,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Records a verdict; returns the previous one.
    pub fn set(&self, verdict: Verdict) -> Verdict {
        match self.0.write() {
            Ok(mut slot) => std::mem::replace(&mut *slot, verdict),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), verdict),
        }
    }
}

/// How often and how long the probe checks.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSettings {
    /// Time between two probes.
    pub interval: Duration,
    /// Longest a probe may take before it counts as not ready.
    pub timeout: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self { interval: Duration::from_secs(2), timeout: Duration::from_secs(2) }
    }
}

/// Checks the store (and `extra`) every [`ProbeSettings::interval`] into `last`, until `stop`.
pub async fn probe_readiness<S: Store>(
    payments: Payments<S>,
    extra: Option<ReadinessCheck>,
    settings: ProbeSettings,
    last: LastReadiness,
    stop: impl Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        let outcome = match tokio::time::timeout(settings.timeout, check(&payments, extra.as_ref())).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {} ms", settings.timeout.as_millis())),
        };
        let verdict = if outcome.is_ok() { Verdict::Ready } else { Verdict::NotReady };
        let previous = last.set(verdict);
        match outcome {
            Err(cause) if previous != Verdict::NotReady => tracing::warn!(%cause, "not ready"),
            Ok(()) if previous != Verdict::Ready => tracing::info!("ready"),
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(settings.interval) => {}
            () = &mut stop => return,
        }
    }
}

/// The store's ping, then the extra check.
pub(crate) async fn check<S: Store>(payments: &Payments<S>, extra: Option<&ReadinessCheck>) -> Result<(), String> {
    payments.store().ping().await.map_err(|e| format!("storage: {e}"))?;
    if let Some(check) = extra {
        check().await?;
    }
    Ok(())
}
