//! Logging setup and the in-process counters behind the admin stats.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global tracing subscriber; `RUST_LOG` overrides the level.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Per-route ingest counters.
#[derive(Debug, Default, Serialize, Clone)]
pub struct RouteCounts {
    pub received: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub filtered: u64,
    pub rejected: u64,
}

/// Outcome of one request, for counting.
#[derive(Debug, Clone, Copy)]
pub enum Counted {
    Accepted,
    Duplicate,
    Filtered,
    Rejected,
}

#[derive(Debug, Default)]
pub struct Stats {
    routes: Mutex<BTreeMap<String, RouteCounts>>,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

impl Stats {
    pub fn count(&self, route: &str, what: Counted) {
        let mut map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let c = match map.get_mut(route) {
            Some(c) => c,
            None => map.entry(route.to_string()).or_default(),
        };
        c.received += 1;
        match what {
            Counted::Accepted => c.accepted += 1,
            Counted::Duplicate => c.duplicates += 1,
            Counted::Filtered => c.filtered += 1,
            Counted::Rejected => c.rejected += 1,
        }
    }

    pub fn routes(&self) -> BTreeMap<String, RouteCounts> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
