//! When to try a failed delivery again. One pure function of the policy, the
//! attempt number, what the receiver asked for and a jitter draw, so it is
//! tested without a clock and the schedule can be stored in the log (never
//! held in memory).

use std::time::{Duration, SystemTime};

/// A sink's `retry:` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub attempts: u32,
    /// Delay after the first failure; doubles each time.
    pub backoff: Duration,
    pub max_delay: Duration,
    /// Give up once this long has passed since the first attempt.
    pub deadline: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 5, backoff: Duration::from_secs(1), max_delay: Duration::from_secs(300), deadline: None }
    }
}

/// How far a computed delay may be spread (±20%), so receivers that fail
/// together are not retried together.
const JITTER: f64 = 0.2;

/// The delay before attempt `attempt + 1`, after `attempt` failures (1-based),
/// or `None` when the policy is spent. `retry_after` (a receiver's request) is
/// honoured as is, clamped to `max_delay`; otherwise the exponential delay is
/// spread by `jitter` (a draw in [0, 1): 0.5 means no spread). `elapsed`:
/// time since the first attempt; no retry would start past the deadline.
pub fn next_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
    elapsed: Duration,
) -> Option<Duration> {
    if attempt >= policy.attempts {
        return None;
    }
    let delay = match retry_after {
        Some(asked) => asked,
        None => {
            let exp = policy.backoff.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
            exp.min(policy.max_delay).mul_f64(1.0 + JITTER * (2.0 * jitter.clamp(0.0, 1.0) - 1.0))
        }
    };
    let delay = delay.min(policy.max_delay);
    match policy.deadline {
        Some(deadline) if elapsed + delay > deadline => None,
        _ => Some(delay),
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_clamped_and_spent() {
        let p = RetryPolicy {
            attempts: 4,
            backoff: Duration::from_secs(1),
            max_delay: Duration::from_secs(3),
            deadline: None,
        };
        let z = Duration::ZERO;
        assert_eq!(next_delay(&p, 1, None, 0.5, z), Some(Duration::from_secs(1)));
        assert_eq!(next_delay(&p, 2, None, 0.5, z), Some(Duration::from_secs(2)));
        assert_eq!(next_delay(&p, 3, None, 0.5, z), Some(Duration::from_secs(3)));
        assert_eq!(next_delay(&p, 4, None, 0.5, z), None);
        let long = RetryPolicy { attempts: 100, ..p };
        assert_eq!(next_delay(&long, 90, None, 0.5, z), Some(Duration::from_secs(3)));
        let bounded = RetryPolicy { attempts: 100, deadline: Some(Duration::from_secs(10)), ..p };
        assert_eq!(next_delay(&bounded, 5, None, 0.5, Duration::from_secs(7)), Some(Duration::from_secs(3)));
        assert_eq!(next_delay(&bounded, 5, None, 0.5, Duration::from_secs(8)), None);
    }

    #[test]
    fn jitter_spreads_by_at_most_a_fifth() {
        let p = RetryPolicy {
            attempts: 9,
            backoff: Duration::from_secs(10),
            max_delay: Duration::from_secs(600),
            deadline: None,
        };
        let z = Duration::ZERO;
        assert_eq!(next_delay(&p, 1, None, 0.0, z), Some(Duration::from_secs(8)));
        assert_eq!(next_delay(&p, 1, None, 1.0, z), Some(Duration::from_secs(12)));
        // Never past max_delay, even spread upwards.
        let capped = RetryPolicy { max_delay: Duration::from_secs(10), ..p };
        assert_eq!(next_delay(&capped, 3, None, 1.0, z), Some(Duration::from_secs(10)));
    }

    #[test]
    fn retry_after_is_honoured_and_clamped() {
        let p = RetryPolicy {
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            deadline: None,
        };
        let z = Duration::ZERO;
        assert_eq!(next_delay(&p, 1, Some(Duration::from_secs(30)), 0.0, z), Some(Duration::from_secs(30)));
        assert_eq!(next_delay(&p, 1, Some(Duration::from_secs(3600)), 0.0, z), Some(Duration::from_secs(60)));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
