//! The result of a run: counts, throughput, latency percentiles and violations, rendered as a
//! plain text table.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// How many violations [`Report`]'s table lists before summarising the rest (`{:#}` lists all).
const VIOLATIONS_SHOWN: usize = 20;

/// Produce → first outcome of each order (orders without an outcome are not sampled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    /// Nearest-rank percentiles of the samples.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let rank = |percent: usize| {
            let index = (samples.len() * percent).div_ceil(100).saturating_sub(1);
            samples.get(index).copied().unwrap_or_default()
        };
        Self {
            samples: samples.len(),
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// What a run did and found. A run passed when `violations` is empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub orders: usize,
    /// Every `pay.order` record produced, extras included.
    pub messages_produced: usize,
    /// Redeliveries: an original's exact message again.
    pub duplicates_produced: usize,
    /// Re-sends: an order again under a new `message_id`.
    pub resends_produced: usize,
    /// `refund.order` records produced (re-sends included).
    pub refunds_produced: usize,
    /// Refund ids credited.
    pub refunded: usize,
    /// Refund ids that failed, by reason (the planned over-refunds: `exceeds_refundable`).
    pub refund_failed: BTreeMap<String, usize>,
    /// Orders paid.
    pub paid: usize,
    /// Orders failed, by reason.
    pub failed: BTreeMap<String, usize>,
    pub without_outcome: usize,
    pub events_seen: usize,
    pub duplicate_events_seen: usize,
    pub foreign_events_ignored: usize,
    /// From the first message produced to the last order's first outcome (or the end of waiting).
    pub elapsed: Duration,
    /// Orders with an outcome per second of `elapsed`.
    pub throughput_orders_per_sec: f64,
    pub latency: Latency,
    pub violations: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |duration: Duration| format!("{:.1} ms", duration.as_secs_f64() * 1000.0);
        let failed_total: usize = self.failed.values().sum();
        let mut rows: Vec<(String, String)> = vec![
            ("orders".into(), self.orders.to_string()),
            ("messages produced".into(), self.messages_produced.to_string()),
            ("  redeliveries (same message_id)".into(), self.duplicates_produced.to_string()),
            ("  re-sends (new message_id)".into(), self.resends_produced.to_string()),
            ("orders paid".into(), self.paid.to_string()),
            ("orders failed".into(), failed_total.to_string()),
        ];
        for (reason, count) in &self.failed {
            rows.push((format!("  {reason}"), count.to_string()));
        }
        rows.extend([
            ("orders without outcome".into(), self.without_outcome.to_string()),
            ("refunds produced".into(), self.refunds_produced.to_string()),
            ("refunds credited".into(), self.refunded.to_string()),
            ("refunds failed".into(), self.refund_failed.values().sum::<usize>().to_string()),
            ("outcome events seen".into(), self.events_seen.to_string()),
            ("  duplicate events (same event_id)".into(), self.duplicate_events_seen.to_string()),
            ("foreign events ignored".into(), self.foreign_events_ignored.to_string()),
            ("elapsed".into(), format!("{:.2} s", self.elapsed.as_secs_f64())),
            ("throughput".into(), format!("{:.1} orders/s", self.throughput_orders_per_sec)),
            ("latency p50".into(), ms(self.latency.p50)),
            ("latency p90".into(), ms(self.latency.p90)),
            ("latency p99".into(), ms(self.latency.p99)),
            ("latency max".into(), ms(self.latency.max)),
            ("violations".into(), self.violations.len().to_string()),
        ]);
        let width = rows.iter().map(|(name, _)| name.chars().count()).max().unwrap_or(0);
        let line = "-".repeat(width + 16);
        writeln!(f, "{line}")?;
        for (name, value) in &rows {
            writeln!(f, "{name:<width$}  {value:>14}")?;
        }
        writeln!(f, "{line}")?;
        // The alternate form (`{:#}`) lists every violation.
        let shown = if f.alternate() { self.violations.len() } else { VIOLATIONS_SHOWN };
        for violation in self.violations.iter().take(shown) {
            writeln!(f, "VIOLATION {violation}")?;
        }
        if self.violations.len() > shown {
            writeln!(f, "... and {} more violations", self.violations.len() - VIOLATIONS_SHOWN)?;
        }
        writeln!(f, "{}", if self.passed() { "PASS" } else { "FAIL" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let latency = Latency::of((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(
            (latency.p50, latency.p90, latency.p99),
            (Duration::from_millis(50), Duration::from_millis(90), Duration::from_millis(99))
        );
        assert_eq!((latency.max, latency.samples), (Duration::from_millis(100), 100));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }

    #[test]
    fn the_table_names_every_violation_and_the_verdict() {
        let report = Report { orders: 3, violations: vec!["order 1: no outcome".into()], ..Report::default() };
        let table = report.to_string();
        assert!(table.contains("VIOLATION order 1: no outcome"), "{table}");
        assert!(table.trim_end().ends_with("FAIL"), "{table}");
        assert!(Report::default().to_string().trim_end().ends_with("PASS"));
        let many = Report { violations: (0..25).map(|n| format!("v{n}")).collect(), ..Report::default() };
        assert!(many.to_string().contains("... and 5 more violations"));
        assert_eq!(format!("{many:#}").matches("VIOLATION").count(), 25);
    }
}
