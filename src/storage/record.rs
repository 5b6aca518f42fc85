//! What the log persists. Every record is tagged with its type and version
//! (`"type": "event.v1"`), so a log written today stays readable after the
//! format grows: new versions are new variants, never edits of old ones.

use serde::{Deserialize, Serialize};

/// A persisted record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Record {
    #[serde(rename = "event.v1")]
    EventV1(EventV1),
    #[serde(rename = "delivery.v1")]
    DeliveryV1(DeliveryV1),
}

/// An accepted event. The raw body is stored beside it, byte for byte.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventV1 {
    /// The router's id: a sequence number, increasing.
    pub id: u64,
    pub route: String,
    pub event_type: String,
    /// The provider's id (the dedup key), if the route reads one.
    pub event_id: Option<String>,
    /// The provider's event time (RFC 3339), if the route reads one.
    pub event_time: Option<String>,
    pub received_at: String,
    pub received_ms: i64,
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    /// Lower-case names; credential-bearing values are already redacted.
    pub headers: Vec<(String, String)>,
    pub deliveries: u32,
}

/// Where a delivery stands. `Pending` and `Retrying` are in the due queue.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Retrying,
    Delivered,
    /// Deliberately not applied (e.g. older than the stored record).
    Skipped,
    /// A script called `drop(reason)`: deliberately not sent.
    Dropped,
    /// Gave up; kept with its error until retried.
    Failed,
}

impl DeliveryStatus {
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Retrying)
    }
}

/// One (rule, target) of an event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryV1 {
    pub event: u64,
    pub index: u32,
    /// Index of the rule in its route, and of the target in the rule.
    pub rule: u32,
    pub target: u32,
    pub rule_name: String,
    pub sink: String,
    /// `ordered_by` value: deliveries with the same sink and key go in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_key: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// When the next attempt is due (ms since epoch); set while open.
    pub next_attempt_ms: Option<i64>,
    pub last_error: Option<String>,
    pub attempts_log: Vec<Attempt>,
}

/// One attempt's result, kept for operators.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    pub at: String,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An event's overall state, derived from its deliveries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Some delivery is still pending or retrying.
    Pending,
    /// Some delivery failed for good, none is open.
    Failed,
    /// Every delivery delivered or skipped.
    Delivered,
    /// No rule matched: stored, nothing to deliver.
    Unrouted,
}

impl EventStatus {
    pub const NAMES: &'static [&'static str] = &["pending", "failed", "delivered", "unrouted"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "failed" => Self::Failed,
            "delivered" => Self::Delivered,
            "unrouted" => Self::Unrouted,
            _ => return None,
        })
    }

    pub fn of(deliveries: &[DeliveryV1]) -> Self {
        if deliveries.is_empty() {
            Self::Unrouted
        } else if deliveries.iter().any(|d| d.status.is_open()) {
            Self::Pending
        } else if deliveries.iter().any(|d| d.status == DeliveryStatus::Failed) {
            Self::Failed
        } else {
            Self::Delivered
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_tagged_with_version() {
        let d = DeliveryV1 {
            event: 1,
            index: 0,
            rule: 0,
            target: 0,
            rule_name: "r#0".into(),
            sink: "members".into(),
            order_key: None,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_ms: Some(5),
            last_error: None,
            attempts_log: vec![],
        };
        let text = serde_json::to_string(&Record::DeliveryV1(d.clone())).unwrap();
        assert!(text.starts_with(r#"{"type":"delivery.v1""#), "{text}");
        match serde_json::from_str::<Record>(&text).unwrap() {
            Record::DeliveryV1(back) => assert_eq!(back, d),
            other => panic!("{other:?}"),
        }
    }
}
