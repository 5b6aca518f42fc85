//! Logging setup and the in-process counters behind the admin stats.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

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

/// Per-route ingest counters, as reported.
#[derive(Debug, Default, Serialize, Clone, PartialEq, Eq)]
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

/// The live counters of one route: atomics, so requests never wait on each other.
#[derive(Debug, Default)]
struct RouteCounters([AtomicU64; 4]);

#[derive(Debug, Default)]
pub struct Stats {
    /// Written once per route name; read (shared lock) on every request.
    routes: RwLock<HashMap<String, Arc<RouteCounters>>>,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
}

impl Stats {
    pub fn count(&self, route: &str, what: Counted) {
        let existing = self.routes.read().unwrap_or_else(|p| p.into_inner()).get(route).cloned();
        let counters = match existing {
            Some(c) => c,
            None => {
                self.routes.write().unwrap_or_else(|p| p.into_inner()).entry(route.to_string()).or_default().clone()
            }
        };
        counters.0[what as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn routes(&self) -> BTreeMap<String, RouteCounts> {
        let map = self.routes.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(name, c)| {
                let [accepted, duplicates, filtered, rejected] = [0, 1, 2, 3].map(|i| c.0[i].load(Ordering::Relaxed));
                let received = accepted + duplicates + filtered + rejected;
                (name.clone(), RouteCounts { received, accepted, duplicates, filtered, rejected })
            })
            .collect()
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
