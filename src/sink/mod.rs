//! Sinks: where a rule's document goes. A sink returns an `Outcome`; the
//! dispatcher records it in the log and, for `Retry`, schedules the next
//! attempt with `retry::next_delay`.

pub mod http;
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
