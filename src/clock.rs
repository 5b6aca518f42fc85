//! The delivery scheduler's time. It is the wall clock, which a test may
//! move forward (`skip`) to reach a retry due in an hour at once, so that
//! retry, backoff, Retry-After and batching tests assert the schedule the
//! router recorded rather than time a busy machine.
//!
//! It only ever runs ahead of the wall clock, never behind: work that the
//! log made due by the wall clock (a new event, a replay) is always due by
//! this one too, so the log needs no clock of its own.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The wall clock, plus whatever was skipped.
#[derive(Debug, Default)]
pub struct Clock {
    skipped_ms: AtomicI64,
}

impl Clock {
    /// Milliseconds since the Unix epoch, as the scheduler sees them.
    pub fn now_ms(&self) -> i64 {
        crate::event::now_ms() + self.skipped_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock `by` further ahead of the wall clock. Whoever sleeps
    /// on it must be woken to notice: `Runtime::skip_time` does both.
    pub fn skip(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.skipped_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_runs_with_the_wall_clock_and_skips_ahead_of_it() {
        let clock = Clock::default();
        let (wall, ours) = (crate::event::now_ms(), clock.now_ms());
        assert!((ours - wall).abs() < 1_000, "{ours} vs {wall}");
        clock.skip(Duration::from_secs(3600));
        let ahead = clock.now_ms() - crate::event::now_ms();
        assert!((3_599_000..=3_601_000).contains(&ahead), "{ahead}");
    }
}
