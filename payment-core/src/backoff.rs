//! Exponential backoff with a ceiling: the one schedule every retry loop of the workspace uses
//! (conflicting units of work, a consumer whose store is down, a publisher whose broker is).

use std::time::Duration;

/// Waits that double from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// A schedule starting at `first` and never above `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { next: first.min(max), first, max }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        wait
    }

    /// [`next_wait`](Self::next_wait) spread over its upper half at random, so that two parties
    /// retrying after the same conflict do not retry in lockstep.
    pub fn next_wait_with_jitter(&mut self) -> Duration {
        let wait = self.next_wait();
        let spread = f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0;
        wait / 2 + wait.mul_f64(spread) / 2
    }

    /// Back to `first`, after a success.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_reset() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(350));
        let waits: Vec<Duration> = (0..4).map(|_| backoff.next_wait()).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(350), ms(350)]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), ms(100));
        let jittered = backoff.next_wait_with_jitter();
        assert!((ms(100)..=ms(200)).contains(&jittered), "{jittered:?}");
    }
}
