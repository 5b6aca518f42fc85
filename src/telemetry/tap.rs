//! The live tail behind `router tap` (`GET /tap` on the admin API): each
//! request's verdict and each delivery's outcome as they happen, like
//! `vector tap` or `stripe listen`. Only names, ids, verdicts and reasons
//! travel: never a body, a header or a sink's URL, so nothing secret can.
//! Free when no one listens: nothing is built without a subscriber.

use serde::Serialize;
use tokio::sync::broadcast;

/// How many lines a slow `tap` may fall behind before it is told it
/// missed some (`lagged`), rather than slowing the router.
const BUFFER: usize = 1024;

/// One line of the tail.
#[derive(Debug, Clone, Serialize)]
pub struct Tapped {
    /// RFC 3339, milliseconds.
    pub at: String,
    /// `request` or `delivery`.
    pub kind: &'static str,
    pub route: String,
    /// The event type, when known (not for a rejected request).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// The event's log id, once logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Requests: accepted, duplicate, filtered, rejected. Deliveries:
    /// delivered, skipped, retry, failed.
    pub verdict: &'static str,
    /// Why: a rejection's reason, a skip's reason, a delivery's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl Tapped {
    /// A line for `verdict`, stamped now; the rest filled in by the caller.
    pub fn new(kind: &'static str, route: &str, verdict: &'static str) -> Self {
        Self {
            at: crate::event::format_ms(crate::event::now_ms()),
            kind,
            route: route.to_string(),
            event_type: None,
            id: None,
            verdict,
            reason: None,
            sink: None,
            attempts: None,
        }
    }
}

pub struct Tap {
    tx: broadcast::Sender<Tapped>,
}

impl Default for Tap {
    fn default() -> Self {
        Self { tx: broadcast::channel(BUFFER).0 }
    }
}

impl Tap {
    /// Sends the line `make` builds, if anyone is listening.
    pub fn publish(&self, make: impl FnOnce() -> Tapped) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(make());
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Tapped> {
        self.tx.subscribe()
    }
}
