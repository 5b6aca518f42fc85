//! The state machine of one delivery, in one place:
//!
//! ```text
//! pending ─┬─> delivered | skipped | dropped | failed
//! retrying ┘└─> retrying (next due time from the sink's retry policy) ─> ... ─> failed
//! failed ──(operator: retry)──> pending
//! ```
//!
//! `next` is a pure function of the delivery, the attempt's outcome, the
//! sink's policy, the time and a jitter draw: the dispatcher calls it and
//! the log stores what it returns, so the schedule survives a restart and
//! the transitions are tested without a clock.

use crate::event::{format_ms, parse_time};
use crate::sink::{retry, Outcome, RetryPolicy};
use crate::storage::{Attempt, DeliveryStatus, DeliveryV1};
use std::time::Duration;

/// The delivery after one attempt that came to `outcome` at `now` (ms).
/// `draw`: a uniform number in [0, 1) that spreads retry delays.
pub fn next(d: &DeliveryV1, outcome: &Outcome, policy: &RetryPolicy, now: i64, draw: f64) -> DeliveryV1 {
    let mut d = d.clone();
    d.attempts += 1;
    let (status, label, error) = match outcome {
        Outcome::Delivered => (DeliveryStatus::Delivered, "delivered", None),
        Outcome::Skipped { reason } => (DeliveryStatus::Skipped, "skipped", Some(reason.clone())),
        Outcome::Dropped { reason } => (DeliveryStatus::Dropped, "dropped", Some(reason.clone())),
        Outcome::Failed { error } => (DeliveryStatus::Failed, "failed", Some(error.clone())),
        Outcome::Retry { error, after } => {
            match retry::next_delay(policy, d.attempts, *after, draw, since_first(&d, now)) {
                Some(delay) => {
                    d.next_attempt_ms = Some(now + delay.as_millis() as i64);
                    (DeliveryStatus::Retrying, "retry", Some(error.clone()))
                }
                None => (DeliveryStatus::Failed, "failed", Some(format!("{error} (after {} attempts)", d.attempts))),
            }
        }
    };
    d.status = status;
    if !status.is_open() {
        d.next_attempt_ms = None;
    }
    if error.is_some() {
        d.last_error = error.clone();
    }
    d.attempts_log.push(Attempt { at: format_ms(now), outcome: label.into(), error });
    d
}

/// A failed delivery put back in the queue by an operator: due `now`, with
/// a fresh retry budget; its history is kept.
pub fn requeued(mut d: DeliveryV1, now: i64) -> DeliveryV1 {
    d.status = DeliveryStatus::Pending;
    d.attempts = 0;
    d.next_attempt_ms = Some(now);
    d.attempts_log.push(Attempt { at: format_ms(now), outcome: "requeued".into(), error: None });
    d
}

/// When the delivery last failed for good (ms since the epoch), 0 if never.
pub fn failed_at(d: &DeliveryV1) -> i64 {
    d.attempts_log.iter().rev().find(|a| a.outcome == "failed").and_then(attempt_ms).unwrap_or(0)
}

fn attempt_ms(a: &Attempt) -> Option<i64> {
    parse_time(&serde_json::Value::String(a.at.clone())).map(|nanos| (nanos / 1_000_000) as i64)
}

/// Time since the first attempt of the delivery's current run (after its
/// last manual requeue or replay), zero before it has one.
fn since_first(d: &DeliveryV1, now: i64) -> Duration {
    let run_start =
        d.attempts_log.iter().rposition(|a| a.outcome == "requeued" || a.outcome == "replayed").map_or(0, |i| i + 1);
    let first_ms = d.attempts_log[run_start..].first().and_then(attempt_ms).unwrap_or(now);
    Duration::from_millis(now.saturating_sub(first_ms).max(0) as u64)
}

/// A uniform draw in [0, 1) for retry jitter.
pub fn jitter_draw() -> f64 {
    crate::random::unit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    fn fresh() -> DeliveryV1 {
        DeliveryV1 {
            event: 1,
            index: 0,
            rule: 0,
            target: 0,
            rule_name: "r#0".into(),
            sink: "s".into(),
            order_key: None,
            status: Pending,
            attempts: 0,
            next_attempt_ms: Some(0),
            last_error: None,
            attempts_log: vec![],
        }
    }

    const T0: i64 = 1_700_000_000_000;

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy { attempts, backoff: Duration::from_secs(1), max_delay: Duration::from_secs(60), deadline: None }
    }

    fn retry(after: Option<u64>) -> Outcome {
        Outcome::Retry { error: "503".into(), after: after.map(Duration::from_secs) }
    }

    #[test]
    fn transitions() {
        // (state before, attempts before, outcome, policy attempts) →
        // (status, next due relative to now, last error, log label)
        let failed = Outcome::Failed { error: "bad key".into() };
        let skipped = Outcome::Skipped { reason: "stale".into() };
        let dropped = Outcome::Dropped { reason: "test".into() };
        #[rustfmt::skip]
        type Row<'a> = (DeliveryStatus, u32, Outcome, u32, DeliveryStatus, Option<i64>, Option<&'a str>, &'a str);
        let table: Vec<Row> = vec![
            (Pending, 0, Outcome::Delivered, 5, Delivered, None, None, "delivered"),
            (Pending, 0, skipped.clone(), 5, Skipped, None, Some("stale"), "skipped"),
            (Pending, 0, dropped.clone(), 5, Dropped, None, Some("test"), "dropped"),
            (Pending, 0, failed.clone(), 5, Failed, None, Some("bad key"), "failed"),
            // First failure: backoff 1 s (draw 0.5 = no jitter).
            (Pending, 0, retry(None), 5, Retrying, Some(1_000), Some("503"), "retry"),
            // Third failure: 1 s · 2² = 4 s.
            (Retrying, 2, retry(None), 5, Retrying, Some(4_000), Some("503"), "retry"),
            // Retry-After is honoured.
            (Retrying, 1, retry(Some(30)), 5, Retrying, Some(30_000), Some("503"), "retry"),
            // ...but clamped to max_delay.
            (Retrying, 1, retry(Some(999)), 5, Retrying, Some(60_000), Some("503"), "retry"),
            // The last attempt failing ends it.
            (Retrying, 4, retry(None), 5, Failed, None, Some("503 (after 5 attempts)"), "failed"),
            (Retrying, 2, Outcome::Delivered, 5, Delivered, None, None, "delivered"),
        ];
        for (i, (before, attempts, outcome, max, status, due, error, label)) in table.into_iter().enumerate() {
            let d = DeliveryV1 { status: before, attempts, ..fresh() };
            let after = next(&d, &outcome, &policy(max), T0, 0.5);
            assert_eq!(after.status, status, "row {i}");
            assert_eq!(after.next_attempt_ms, due.map(|ms| T0 + ms), "row {i}");
            assert_eq!(after.last_error.as_deref(), error, "row {i}");
            assert_eq!(after.attempts, attempts + 1, "row {i}");
            assert_eq!(after.attempts_log.last().map(|a| a.outcome.as_str()), Some(label), "row {i}");
            assert_eq!(after.attempts_log.last().unwrap().at, format_ms(T0), "row {i}");
        }
    }

    #[test]
    fn jitter_spreads_delays_within_a_fifth() {
        let d = fresh();
        let low = next(&d, &retry(None), &policy(5), T0, 0.0).next_attempt_ms.unwrap() - T0;
        let high = next(&d, &retry(None), &policy(5), T0, 0.999_999).next_attempt_ms.unwrap() - T0;
        assert_eq!(low, 800);
        assert!((1_199..=1_200).contains(&high), "{high}");
    }

    #[test]
    fn a_deadline_ends_retries_counted_from_the_first_attempt_of_the_run() {
        let p = RetryPolicy { deadline: Some(Duration::from_secs(10)), ..policy(100) };
        let first = next(&fresh(), &retry(None), &p, T0, 0.5);
        // 9.5 s later a 2 s delay would pass the deadline.
        let late = next(&first, &retry(None), &p, T0 + 9_500, 0.5);
        assert_eq!(late.status, Failed);
        // An operator's requeue starts a new run: the deadline counts from it.
        let again = requeued(late.clone(), T0 + 60_000);
        assert_eq!((again.status, again.attempts, again.next_attempt_ms), (Pending, 0, Some(T0 + 60_000)));
        assert_eq!(failed_at(&again), T0 + 9_500);
        let retried = next(&again, &retry(None), &p, T0 + 61_000, 0.5);
        assert_eq!(retried.status, Retrying);
    }
}
