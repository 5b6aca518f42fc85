//! Sinks: where a rule's document goes. A sink returns an `Outcome`; the
//! dispatcher records it in the log and, for `Retry`, schedules the next
//! attempt with `retry::next_delay`.

pub mod http;
pub mod postgres;
pub mod retry;
pub mod store;

pub use postgres::PostgresSink;
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
    /// The app's own table.
    Postgres(Box<PostgresSink>),
}

/// The sink types `type:` accepts.
pub const SINK_TYPES: &[&str] = &["store", "http", "make", "postgres"];

/// A sink's `batch:` block: deliveries go together, as one request or one
/// statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    pub max_events: usize,
    /// How long the oldest due event may wait for others to join it.
    pub max_wait: Duration,
}

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

impl Outcome {
    /// What the attempt came to, as its trace span says (an attempt's view:
    /// a retry on the last try is still `retry` here, the delivery `failed`).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Dropped { .. } => "dropped",
            Outcome::Retry { .. } => "retry",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// The error of a retry or a failure.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Retry { error, .. } | Outcome::Failed { error } => Some(error),
            _ => None,
        }
    }

    /// How bad it is, for the worst outcome of a batch.
    fn severity(&self) -> u8 {
        match self {
            Outcome::Delivered => 0,
            Outcome::Skipped { .. } | Outcome::Dropped { .. } => 1,
            Outcome::Retry { .. } => 2,
            Outcome::Failed { .. } => 3,
        }
    }

    /// The worst of a batch's outcomes.
    pub fn worst<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Option<&'a Outcome> {
        outcomes.into_iter().max_by_key(|o| o.severity())
    }
}

impl Sink {
    /// Remote sinks (HTTP, PostgreSQL): how many deliveries may be in
    /// flight at once. `None`: a local sink, run in the dispatcher's hop.
    pub fn concurrency(&self) -> Option<usize> {
        match &self.kind {
            SinkKind::Store(_) => None,
            SinkKind::Http(h) => Some(h.concurrency),
            SinkKind::Postgres(p) => Some(p.concurrency),
        }
    }

    /// Its `type:` as a route file writes it.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            SinkKind::Store(_) => "store",
            SinkKind::Http(h) if h.envelope => "make",
            SinkKind::Http(_) => "http",
            SinkKind::Postgres(_) => "postgres",
        }
    }

    /// The sink's `batch:`, if it has one.
    pub fn batch(&self) -> Option<Batch> {
        match &self.kind {
            SinkKind::Store(_) => None,
            SinkKind::Http(h) => h.batch,
            SinkKind::Postgres(p) => p.batch,
        }
    }

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
                "type": self.kind_name(),
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
            SinkKind::Postgres(p) => json!({
                "name": self.name, "type": "postgres",
                "host": p.target.host, "port": p.target.port,
                "database": p.target.database, "user": p.target.user,
                "table": p.table,
                "mode": format!("{:?}", p.plan.mode).to_lowercase(),
                "conflict": p.plan.conflict, "version": p.plan.version, "extra": p.plan.extra, "columns": p.plan.columns,
                "batch": p.batch.map(|b| json!({"max_events": b.max_events,
                    "max_wait": humantime::format_duration(b.max_wait).to_string()})),
                "concurrency": p.concurrency,
                "timeout": humantime::format_duration(p.timeout).to_string(),
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
