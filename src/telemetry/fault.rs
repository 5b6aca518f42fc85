//! A fault that repeats (the store refusing writes while the disk is full):
//! logged once per interval with how many times it happened, and a backoff
//! for the loop that keeps meeting it, so a dead disk costs neither a core
//! nor thousands of log lines a second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a repeating fault is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// The backoff's first and longest waits.
const FIRST_WAIT: Duration = Duration::from_millis(100);
const LONGEST_WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Fault {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Failures since the last log line.
    unlogged: u64,
    logged_at: Option<Instant>,
    /// Consecutive failures (0: healthy).
    streak: u32,
}

impl Fault {
    /// Records one failure; returns how many to report if a log line is
    /// due now (the first failure, then at most once per interval).
    pub fn failed(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.unlogged += 1;
        s.streak = s.streak.saturating_add(1);
        let due = s.logged_at.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        due.then(|| {
            s.logged_at = Some(Instant::now());
            std::mem::take(&mut s.unlogged)
        })
    }

    /// Records a success; returns whether this ended a fault.
    pub fn ok(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ended = s.streak > 0;
        *s = State::default();
        ended
    }

    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).streak > 0
    }

    /// How long the loop meeting this fault should wait before trying again
    /// (zero while healthy): doubling from 100 ms to 5 s.
    pub fn backoff(&self) -> Duration {
        let streak = self.state.lock().unwrap_or_else(|p| p.into_inner()).streak;
        match streak {
            0 => Duration::ZERO,
            n => FIRST_WAIT.saturating_mul(1 << (n - 1).min(6)).min(LONGEST_WAIT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_and_backs_off() {
        let f = Fault::default();
        assert_eq!(f.backoff(), Duration::ZERO);
        assert_eq!(f.failed(), Some(1));
        assert_eq!(f.backoff(), FIRST_WAIT);
        for _ in 0..999 {
            assert_eq!(f.failed(), None);
        }
        assert_eq!(f.backoff(), LONGEST_WAIT);
        assert!(f.ok());
        assert!(!f.ok());
        assert_eq!(f.backoff(), Duration::ZERO);
        // A new fault is logged at once, with the count since the last line.
        assert_eq!(f.failed(), Some(1));
    }
}
