//! What a running router shares between its parts: the current config
//! snapshot, the data directory (log + records), and counters.

use crate::config::Config;
use crate::sink::store::Records;
use crate::storage::embedded::records::{self, RecordLog};
use crate::storage::embedded::{self, SegmentLog};
use crate::storage::postgres::{Lease, PgLog};
use crate::storage::EventLog;
use crate::telemetry::Stats;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// The file a running router locks in its data directory.
const LOCK_FILE: &str = "LOCK";

/// The open data directory: the event log (`log/`) and the store sink's
/// records (`records/`), both in `storage::embedded`. Held locked for as
/// long as it is open: one process per directory.
pub struct DataDir {
    pub path: PathBuf,
    pub log: Arc<dyn EventLog>,
    pub records: Records,
    /// Holds the directory's lock (released when the file closes).
    _lock: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (usually a running `router serve`) holds the directory.
    #[error("{0} is in use by another router process")]
    Locked(PathBuf),
    #[error("cannot open data directory {path}: {detail}")]
    Other { path: PathBuf, detail: String },
    /// The PostgreSQL log (`--store`): names the server, never the password.
    #[error(transparent)]
    Postgres(#[from] crate::storage::postgres::OpenError),
}

/// Where the event log lives (`--store`).
#[derive(Debug, Clone, Default)]
pub enum Store {
    /// The segment log in the data directory: one router per directory.
    #[default]
    Embedded,
    /// Tables in a PostgreSQL database shared by every router on it.
    Postgres { url: String, lease: Duration },
}

impl Store {
    /// `--store`: absent or `embedded`, or a `postgres://` URL.
    pub fn parse(value: Option<&str>, lease: Duration) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") | Some("embedded") => Ok(Store::Embedded),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Store::Postgres { url: url.to_string(), lease })
            }
            // Never echo it: it may be a URL with a password, mistyped.
            Some(_) => Err("--store takes `embedded` or a postgres://USER:PASSWORD@HOST:PORT/DATABASE URL".into()),
        }
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Embedded => f.write_str("embedded"),
            Store::Postgres { url, .. } => match crate::pg::parse(url) {
                Ok((_, target)) => write!(f, "{target}"),
                Err(_) => f.write_str("postgres"),
            },
        }
    }
}

impl DataDir {
    /// Opens `path` with the embedded event log.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        Self::open_with(path, &Store::Embedded)
    }

    /// Opens `path` (the store sink's records, and the embedded log unless
    /// `store` names another).
    pub fn open_with(path: &Path, store: &Store) -> Result<Self, OpenError> {
        let other = |detail: String| OpenError::Other { path: path.to_path_buf(), detail };
        std::fs::create_dir_all(path).map_err(|e| other(e.to_string()))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK_FILE))
            .map_err(|e| other(e.to_string()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(OpenError::Locked(path.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(other(format!("locking it: {e}"))),
        }
        let log_dir = embedded::log_dir(path);
        let records_dir = records::records_dir(path);
        if let Store::Postgres { url, lease } = store {
            let (log, opened) = PgLog::open(url, Lease::new(*lease))?;
            tracing::debug!(store = %log.target, migrated = ?opened.migrated, "Event log open.");
            let (records, _) = RecordLog::open(&records_dir).map_err(|e| other(e.to_string()))?;
            return Ok(Self {
                path: path.to_path_buf(),
                log: Arc::new(log),
                records: Records::new(records),
                _lock: lock,
            });
        }
        if embedded::migrate::pending(path) {
            tracing::info!(dir = %path.display(), "Migrating a data directory of an earlier release (sled) to the segment logs.");
            let copied = embedded::migrate::run(path, &log_dir, &records_dir)
                .map_err(|e| other(format!("migrating the data directory: {e}")))?;
            tracing::info!(events = copied.events, records = copied.records, "Data directory migrated.");
        }
        let (log, opened) = SegmentLog::open(&log_dir, embedded::HOT_EVENTS).map_err(|e| other(e.to_string()))?;
        tracing::debug!(segments = opened.segments, events = opened.events, "Event log open.");
        let (records, _) = RecordLog::open(&records_dir).map_err(|e| other(e.to_string()))?;
        Ok(Self { path: path.to_path_buf(), log: Arc::new(log), records: Records::new(records), _lock: lock })
    }

    /// Bytes the log and the records take on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.records.size_on_disk() + self.log.size_on_disk()
    }

    /// Whether the store takes writes now: the log's probe (a synced 64
    /// KiB write beside the embedded log, a round trip to PostgreSQL) and
    /// the records' sync.
    pub fn probe_write(&self) -> Result<(), String> {
        self.log.probe().map_err(|e| format!("event log: {e}"))?;
        self.records.sync().map_err(|e| e.to_string())
    }
}

/// Shared by ingest, dispatch and admin.
pub struct Runtime {
    /// Swapped whole on reload; a request keeps the snapshot it started with.
    current: ArcSwap<Config>,
    pub data: DataDir,
    pub stats: Stats,
    /// The store does not take writes (`recovery` sets it; `/healthz` fails).
    pub store_down: std::sync::atomic::AtomicBool,
    /// Events the store could not take (answered 503): logged once per interval.
    pub event_writes: crate::telemetry::fault::Fault,
    /// Writes of delivery outcomes the store refused (disk full...): the
    /// dispatcher backs off and logs them once per interval.
    pub outcome_writes: crate::telemetry::fault::Fault,
    /// Wakes the dispatcher when new deliveries are logged.
    pub work: tokio::sync::Notify,
    /// The dispatcher's time: when deliveries are due, and when a retry is.
    pub clock: crate::clock::Clock,
    /// The last reload's outcome (admin `GET /reload`).
    pub reload_status: Mutex<ReloadStatus>,
    /// Store writes, for live views (SSE); receivers that fall behind re-read.
    pub changes: broadcast::Sender<Change>,
    /// Requests' verdicts and deliveries' outcomes for `router tap`.
    pub tap: crate::telemetry::tap::Tap,
    change_seq: AtomicU64,
    /// Turns true when the server stops: live streams end so shutdown need not wait for them.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// What `serve`'s flags set (admin token, retention).
    pub settings: Settings,
}

/// Settings fixed for the life of a runtime.
#[derive(Default)]
pub struct Settings {
    /// `--admin-token`: when set, every admin API call must present it.
    pub admin_token: Option<crate::verify::BearerToken>,
    /// `--retention`, `--retention-every`.
    pub retention: Retention,
}

/// `--retention`, `--retention-every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long a settled event is kept; `None` keeps everything.
    pub keep: Option<Duration>,
    /// Time between sweeps.
    pub every: Duration,
    /// Events looked at per batch (one atomic write each).
    pub batch: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self { keep: Some(Duration::from_secs(30 * 86_400)), every: Duration::from_secs(600), batch: 500 }
    }
}

/// The outcome of the last reload, for operators.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// RFC 3339 time of the last attempt; `None` before the first.
    pub at: Option<String>,
    /// What asked for it: `watch` or `SIGHUP`.
    pub cause: Option<String>,
    pub ok: bool,
    /// Every problem of a failed reload, `file:line:col: error: message`.
    pub problems: Vec<String>,
    pub reloads: u64,
    pub failures: u64,
    /// When the running config was loaded (start or the last applied
    /// reload), ms since the epoch.
    pub loaded_at_ms: i64,
}

/// A record a sink wrote. `seq` increases across writes and restarts (it
/// starts from the clock), so it serves as the SSE event id.
#[derive(Debug, Clone)]
pub struct Change {
    pub tree: String,
    pub key: String,
    pub seq: u64,
}

/// Changes buffered per live-view subscriber before it must re-read.
const CHANGE_BUFFER: usize = 1024;

impl Runtime {
    pub fn new(config: Config, data: DataDir) -> Arc<Self> {
        Self::with_settings(config, data, Settings::default())
    }

    pub fn with_settings(config: Config, data: DataDir, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(config),
            data,
            stats: Stats::default(),
            store_down: Default::default(),
            event_writes: Default::default(),
            outcome_writes: Default::default(),
            work: tokio::sync::Notify::new(),
            clock: Default::default(),
            reload_status: Mutex::new(ReloadStatus {
                ok: true,
                loaded_at_ms: crate::event::now_ms(),
                ..ReloadStatus::default()
            }),
            changes: broadcast::channel(CHANGE_BUFFER).0,
            tap: Default::default(),
            change_seq: AtomicU64::new(crate::event::now_ms().max(0) as u64 * 1000),
            stopping: tokio::sync::watch::channel(false).0,
            settings,
        })
    }

    pub fn retention(&self) -> Retention {
        self.settings.retention
    }

    /// The config to use for one request or delivery, start to end.
    pub fn config(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// Moves the dispatcher's clock ahead by `by` and wakes it, so what is
    /// due by then runs now (tests reach an hour's backoff this way).
    pub fn skip_time(&self, by: Duration) {
        self.clock.skip(by);
        self.work.notify_one();
    }

    /// Tells live views that a sink wrote `tree`/`key`.
    pub fn record_changed(&self, tree: &str, key: &str) {
        let seq = self.change_seq.fetch_add(1, Ordering::Relaxed) + 1;
        // No subscriber is not an error.
        let _ = self.changes.send(Change { tree: tree.to_string(), key: key.to_string(), seq });
    }

    /// The id of the latest change (what a view shows is at least this new).
    pub fn change_seq(&self) -> u64 {
        self.change_seq.load(Ordering::Relaxed)
    }

    /// Replaces the config; in-flight work keeps its old snapshot.
    pub fn swap(&self, config: Config) {
        self.current.store(Arc::new(config));
    }
}
