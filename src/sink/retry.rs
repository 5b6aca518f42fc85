//! When to try a failed delivery again. One pure function of the policy, the
//! attempt number and what the receiver asked for, so it is tested without a
//! clock and the schedule can be stored in the log (never held in memory).

use std::time::Duration;

/// A sink's `retry:` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Delay after the first failure; doubles each time.
    pub backoff: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 5, backoff: Duration::from_secs(1), max_delay: Duration::from_secs(300) }
    }
}

/// The delay before attempt `attempt + 1`, after `attempt` failures (1-based),
/// or `None` when the policy is spent. `retry_after` (a receiver's request) is
/// honoured but clamped to `max_delay`.
pub fn next_delay(policy: &RetryPolicy, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
    if attempt >= policy.attempts {
        return None;
    }
    let exp = policy.backoff.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
    Some(retry_after.unwrap_or(exp).min(policy.max_delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_clamped_and_spent() {
        let p = RetryPolicy { attempts: 4, backoff: Duration::from_secs(1), max_delay: Duration::from_secs(3) };
        assert_eq!(next_delay(&p, 1, None), Some(Duration::from_secs(1)));
        assert_eq!(next_delay(&p, 2, None), Some(Duration::from_secs(2)));
        assert_eq!(next_delay(&p, 3, None), Some(Duration::from_secs(3)));
        assert_eq!(next_delay(&p, 4, None), None);
        assert_eq!(next_delay(&p, 1, Some(Duration::from_secs(60))), Some(Duration::from_secs(3)));
        let long = RetryPolicy { attempts: 100, ..p };
        assert_eq!(next_delay(&long, 90, None), Some(Duration::from_secs(3)));
    }
}
