//! Event metadata read at ingest, and the time helpers the log and store
//! share (RFC 3339 out, RFC 3339 or Unix time in).

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What ingest extracted from a request, before it is logged.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub kind: String,
    /// The provider's id (dedup key), when the route reads one.
    pub id: Option<String>,
    /// The provider's event time, normalised to RFC 3339 UTC.
    pub time: Option<String>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 in UTC with exactly three fraction digits
/// (`2025-10-21T10:00:00.000Z`): every time the router writes has the same
/// width, so times sort correctly as text too.
const FIXED_MS: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Milliseconds since the epoch as RFC 3339 (see `FIXED_MS`).
pub fn format_ms(ms: i64) -> String {
    format_nanos(ms as i128 * 1_000_000).unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

/// Parses a provider timestamp: RFC 3339, or Unix seconds / milliseconds
/// (number or numeric string; values above 10^11 are taken as milliseconds).
/// Returns nanoseconds since the epoch, for ordering.
pub fn parse_time(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => from_unix(n.as_f64()?),
        Value::String(s) => parse_time_text(s),
        _ => None,
    }
}

/// `parse_time` of a string: RFC 3339, or Unix seconds / milliseconds.
pub fn parse_time_text(s: &str) -> Option<i128> {
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => Some(t.unix_timestamp_nanos()),
        Err(_) => from_unix(s.trim().parse::<f64>().ok()?),
    }
}

/// A time an operator typed (an admin query's `since`, a CLI flag), in
/// milliseconds since the epoch: the forms `parse_time` takes.
pub fn parse_ms(text: &str) -> Option<i64> {
    parse_time_text(text).map(|nanos| (nanos / 1_000_000) as i64)
}

/// Unix seconds, or milliseconds above 10^11, as nanoseconds.
fn from_unix(n: f64) -> Option<i128> {
    if !n.is_finite() {
        return None;
    }
    let secs = if n.abs() >= 1e11 { n / 1000.0 } else { n };
    Some((secs * 1e9) as i128)
}

/// A parsed time back to RFC 3339 (UTC, milliseconds; see `FIXED_MS`),
/// for storing in a normal form. Finer digits are cut, not rounded, so a
/// time never moves past the next millisecond.
pub fn format_nanos(nanos: i128) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?.format(FIXED_MS).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times() {
        let a = parse_time(&json!("2025-10-21T10:00:00Z")).unwrap();
        assert_eq!(parse_time(&json!(1761040800)).unwrap(), a);
        assert_eq!(parse_time(&json!(1761040800000u64)).unwrap(), a);
        assert_eq!(parse_time(&json!("1761040800")).unwrap(), a);
        assert_eq!(format_nanos(a).unwrap(), "2025-10-21T10:00:00.000Z");
        // One width whatever the fraction, so text order is time order.
        assert_eq!(format_ms(1761040800290), "2025-10-21T10:00:00.290Z");
        assert_eq!(format_ms(1761040800000), "2025-10-21T10:00:00.000Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
        let t = parse_time(&json!("2025-10-21T10:00:00.123456789+02:00")).unwrap();
        assert_eq!(format_nanos(t).unwrap(), "2025-10-21T08:00:00.123Z");
        assert!(parse_time(&json!("yesterday")).is_none());
        assert_eq!(format_ms(1761040800123), "2025-10-21T10:00:00.123Z");
    }
}
