//! A hard wall-clock limit for tests, enforced from outside their async runtime: a watchdog
//! thread that, when the limit passes, prints the test's name and aborts the test binary. A hung
//! test — a deadlock, a future that is never woken, a runtime whose shutdown waits on a blocked
//! thread — then fails in minutes, with its name, instead of stalling CI until its own limit.

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

/// The limit of one async test unless `TEST_TIMEOUT_SECS` says otherwise.
pub const TEST_WALL_CLOCK_LIMIT: Duration = Duration::from_secs(300);

/// Armed while alive; dropping it (at the end of the test, or while a panic unwinds) disarms it.
#[must_use = "the limit is disarmed when this guard is dropped"]
pub struct WallClockLimit {
    _disarm: Sender<()>,
}

impl WallClockLimit {
    /// Arms a watchdog for the current test (named after the current thread, which is what the
    /// test harness calls its tests). `TEST_TIMEOUT_SECS` replaces `limit` when set.
    pub fn arm(limit: Duration) -> Self {
        let limit = std::env::var("TEST_TIMEOUT_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(limit);
        let test = std::thread::current().name().unwrap_or("<unnamed test>").to_string();
        let (disarm, disarmed) = mpsc::channel::<()>();
        let name = test.clone();
        let watchdog = std::thread::Builder::new().name("wall-clock".into()).spawn(move || {
            let test = name;
            if let Err(RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                // Straight to the process's stderr: the harness captures `eprintln!` of test threads
                // and would lose the line with the abort.
                let _ = writeln!(
                    std::io::stderr(),
                    "\ntest {test} exceeded its wall-clock limit of {limit:?}: aborting the test binary\n"
                );
                std::process::abort();
            }
        });
        if let Err(error) = watchdog {
            panic!("cannot start the wall-clock watchdog of {test}: {error}");
        }
        Self { _disarm: disarm }
    }
}
