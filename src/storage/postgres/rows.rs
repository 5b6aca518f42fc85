//! Rows of the PostgreSQL log and the records the rest of the router
//! reads: how an `EventV1` and a `DeliveryV1` map to columns. Ids and
//! counts are unsigned in the router and `bigint`/`integer` in the tables.

use crate::storage::record::{DeliveryStatus, DeliveryV1, EventV1};
use crate::storage::LogError;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

/// The event columns `event_of` reads, in its order.
pub const EVENT_COLUMNS: &str = "id, route, event_type, event_id, event_time, received_ms, meta, deliveries";
/// The delivery columns `delivery_of` reads, in its order.
pub const DELIVERY_COLUMNS: &str =
    "event, idx, rule, target, rule_name, sink, order_key, status, attempts, due_ms, last_error, attempts_log";

/// What `meta` holds: the request's parts beside its body.
#[derive(Serialize, Deserialize)]
pub struct Meta {
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

/// `meta` as JSON text. Text, not jsonb: jsonb refuses a `\u0000` that a
/// provider's header or query may carry; JSON text escapes it.
pub fn meta_text(e: &EventV1) -> String {
    let meta = Meta { params: e.params.clone(), query: e.query.clone(), headers: e.headers.clone() };
    serde_json::to_string(&meta).expect("strings serialize")
}

pub fn event_of(row: &Row) -> Result<EventV1, LogError> {
    let id: i64 = row.get(0);
    let meta: Meta = serde_json::from_str(row.get(6))
        .map_err(|e| LogError::Corrupt { key: format!("event {id}"), detail: format!("meta: {e}") })?;
    let received_ms: i64 = row.get(5);
    let deliveries: i32 = row.get(7);
    Ok(EventV1 {
        id: id as u64,
        route: row.get(1),
        event_type: row.get(2),
        event_id: row.get(3),
        event_time: row.get(4),
        received_at: crate::event::format_ms(received_ms),
        received_ms,
        params: meta.params,
        query: meta.query,
        headers: meta.headers,
        deliveries: deliveries as u32,
    })
}

pub fn delivery_of(row: &Row) -> Result<DeliveryV1, LogError> {
    let (event, index): (i64, i32) = (row.get(0), row.get(1));
    let corrupt = |detail: String| LogError::Corrupt { key: format!("delivery {event}/{index}"), detail };
    let status: &str = row.get(7);
    let status = status_of(status).ok_or_else(|| corrupt(format!("status `{status}`")))?;
    let log: serde_json::Value = row.get(11);
    let attempts_log = serde_json::from_value(log).map_err(|e| corrupt(format!("attempts_log: {e}")))?;
    let (rule, target, attempts): (i32, i32, i32) = (row.get(2), row.get(3), row.get(8));
    Ok(DeliveryV1 {
        event: event as u64,
        index: index as u32,
        rule: rule as u32,
        target: target as u32,
        rule_name: row.get(4),
        sink: row.get(5),
        order_key: row.get(6),
        status,
        attempts: attempts as u32,
        next_attempt_ms: row.get(9),
        last_error: row.get(10),
        attempts_log,
    })
}

pub fn status_name(s: DeliveryStatus) -> &'static str {
    match s {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Retrying => "retrying",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Skipped => "skipped",
        DeliveryStatus::Dropped => "dropped",
        DeliveryStatus::Failed => "failed",
    }
}

/// Every status, for reading a name back.
const ALL: [DeliveryStatus; 6] = [
    DeliveryStatus::Pending,
    DeliveryStatus::Retrying,
    DeliveryStatus::Delivered,
    DeliveryStatus::Skipped,
    DeliveryStatus::Dropped,
    DeliveryStatus::Failed,
];

fn status_of(s: &str) -> Option<DeliveryStatus> {
    ALL.into_iter().find(|&d| status_name(d) == s)
}

/// Deliveries' states as column arrays, for one `unnest` statement (the
/// states a round recorded, a replay's new deliveries).
#[derive(Default)]
pub struct States {
    pub event: Vec<i64>,
    pub idx: Vec<i32>,
    pub rule: Vec<i32>,
    pub target: Vec<i32>,
    pub rule_name: Vec<String>,
    pub sink: Vec<String>,
    pub order_key: Vec<Option<String>>,
    pub status: Vec<&'static str>,
    pub attempts: Vec<i32>,
    pub due_ms: Vec<Option<i64>>,
    pub last_error: Vec<Option<String>>,
    pub attempts_log: Vec<serde_json::Value>,
}

impl States {
    pub fn push(&mut self, d: &DeliveryV1) {
        self.event.push(d.event as i64);
        self.idx.push(d.index as i32);
        self.rule.push(d.rule as i32);
        self.target.push(d.target as i32);
        self.rule_name.push(d.rule_name.clone());
        self.sink.push(d.sink.clone());
        self.order_key.push(d.order_key.clone());
        self.status.push(status_name(d.status));
        self.attempts.push(d.attempts as i32);
        // Only an open delivery is due.
        self.due_ms.push(d.next_attempt_ms.filter(|_| d.status.is_open()));
        self.last_error.push(d.last_error.clone());
        self.attempts_log.push(serde_json::to_value(&d.attempts_log).expect("attempts serialize"));
    }

    pub fn is_empty(&self) -> bool {
        self.event.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_name_that_reads_back() {
        for s in ALL {
            assert_eq!(status_of(status_name(s)), Some(s));
            // The names are the records' own (what the admin API shows).
            assert_eq!(serde_json::to_value(s).unwrap(), status_name(s));
        }
    }
}
