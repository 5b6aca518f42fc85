//! Sinks: where a rule's document goes. A sink returns an `Outcome`; the
//! dispatcher records it in the log and, for `Retry`, schedules the next
//! attempt with `retry::next_delay`.

pub mod http;
pub mod postgres;
pub mod retry;
pub mod store;

pub use retry::RetryPolicy;
pub use store::{StoreMode, StoreSink};

use std::time::Duration;

/// A configured sink (`sinks:` entry).
#[derive(Debug)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub retry: RetryPolicy,
}

#[derive(Debug)]
pub enum SinkKind {
    Store(StoreSink),
    /// `http` and `make` (boxed: far larger than a store sink).
    Http(Box<http::HttpSink>),
}

/// The sink types `type:` accepts.
pub const SINK_TYPES: &[&str] = &["store", "http", "make"];

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Nothing to do, on purpose (e.g. an older event than the stored record).
    Skipped {
        reason: String,
    },
    /// A script dropped the event (`drop(reason)`).
    Dropped {
        reason: String,
    },
    /// Failed this time; may succeed later (`after`: what the sink asked for).
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Will not succeed by retrying alone (bad key, missing sink...).
    Failed {
        error: String,
    },
}

impl Sink {
    /// What the admin API shows of a sink: its type and destination, never
    /// a credential. An HTTP URL is cut to its origin (a Make.com hook's path
    /// is its secret), and extra headers are listed by name only.
    pub fn describe(&self) -> serde_json::Value {
        use serde_json::json;
        let retry = json!({
            "attempts": self.retry.attempts,
            "backoff": humantime::format_duration(self.retry.backoff).to_string(),
            "max_delay": humantime::format_duration(self.retry.max_delay).to_string(),
        });
        match &self.kind {
            SinkKind::Store(s) => json!({
                "name": self.name, "type": "store", "tree": s.tree,
                "mode": format!("{:?}", s.mode).to_lowercase(), "retry": retry,
            }),
            SinkKind::Http(h) => json!({
                "name": self.name,
                "type": if h.envelope { "make" } else { "http" },
                "url": origin(&h.url),
                "fallback_url": h.fallback_url.as_deref().map(origin),
                "method": h.method.as_str(),
                "headers": h.headers.iter().map(|(name, _)| name).collect::<Vec<_>>(),
                "signed": h.signer.is_some(),
                "batch": h.batch.map(|b| json!({"max_events": b.max_events,
                    "max_wait": humantime::format_duration(b.max_wait).to_string()})),
                "concurrency": h.concurrency,
                "retry": retry,
            }),
        }
    }
}

/// `https://hook.eu1.make.com/abc` → `https://hook.eu1.make.com/…`.
fn origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}/…", u.scheme(), u.host_str().unwrap_or(""))
        }
        Err(_) => "(redacted)".to_string(),
    }
}
