//! The storage interface: what ingest, dispatch, views, admin, retention
//! and the CLI may ask of the event log, whatever engine holds it.
//!
//! The log takes groups of accepted events durably, hands out due
//! deliveries as claims, stores the delivery states the dispatcher decided
//! (`crate::delivery` decides them; the log never interprets outcomes),
//! and answers the operators' queries. A claim belongs to whoever took it
//! until it is recorded or released, so a backend shared by several
//! routers can give each its own work; the embedded backend
//! (`embedded::SegmentLog`) has one owner, the process; the PostgreSQL
//! one (`postgres::PgLog`) is shared by every router on the database.

pub mod embedded;
pub mod postgres;
pub mod record;

pub use embedded::retention::{DeleteError, Pruned};
pub use record::{Attempt, DeliveryStatus, DeliveryV1, EventStatus, EventV1};

use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt log record at {key}: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("no such {0}")]
    NotFound(String),
}

/// An event as ingest hands it over (id and receipt time are assigned by the log).
pub struct NewEvent {
    pub route: String,
    pub event_type: String,
    pub event_id: Option<String>,
    /// Whether a repeat of `(route, event_id)` is a duplicate.
    pub dedup: bool,
    pub event_time: Option<String>,
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// The raw body, byte for byte (what is stored).
    pub body: bytes::Bytes,
    /// The body as ingest parsed it, handed to the dispatcher in memory so
    /// it is never parsed twice.
    pub payload: Parsed,
}

/// How much of the body ingest parsed.
#[derive(Debug)]
pub enum Parsed {
    /// The whole document: what deliveries that map or send it read.
    Whole(Value),
    /// Only the fields ingest reads (type, id, keys...): enough when every
    /// delivery stores the body as it came (`Target::stores_body_as_is`).
    Fields(Value),
}

/// One (rule, target) the event must reach.
pub struct NewDelivery {
    pub rule: u32,
    pub target: u32,
    pub rule_name: String,
    pub sink: String,
    pub order_key: Option<String>,
}

impl NewDelivery {
    /// Its first state: pending, due at `now`.
    pub fn pending(self, event: u64, index: u32, now: i64) -> DeliveryV1 {
        DeliveryV1 {
            event,
            index,
            rule: self.rule,
            target: self.target,
            rule_name: self.rule_name,
            sink: self.sink,
            order_key: self.order_key,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_ms: Some(now),
            last_error: None,
            attempts_log: Vec::new(),
        }
    }
}

/// The result of `append`, once durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    New(u64),
    /// Same `(route, event_id)` as an event already in the log.
    Duplicate(u64),
}

/// A failed delivery put back in the queue (`retry_failed`).
#[derive(Debug, Clone)]
pub struct Requeued {
    pub route: String,
    pub sink: String,
    /// When it failed for good, ms since the epoch.
    pub failed_ms: i64,
}

/// Identifies one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryKey {
    pub event: u64,
    pub index: u32,
}

impl DeliveryKey {
    pub fn of(d: &DeliveryV1) -> Self {
        Self { event: d.event, index: d.index }
    }
}

/// A logged event and its body: what a delivery works from.
#[derive(Debug)]
pub struct StoredEvent {
    pub event: EventV1,
    /// The raw body, byte for byte.
    pub body: bytes::Bytes,
    /// Ingest's fields, when it did not parse the whole body.
    fields: Option<Value>,
    /// The whole document, parsed at most once (at ingest, at load, or on
    /// the first delivery that needs it).
    whole: std::sync::OnceLock<Value>,
}

impl StoredEvent {
    pub fn new(event: EventV1, body: bytes::Bytes, parsed: Parsed) -> Self {
        let (fields, whole) = match parsed {
            Parsed::Whole(v) => (None, std::sync::OnceLock::from(v)),
            Parsed::Fields(v) => (Some(v), std::sync::OnceLock::new()),
        };
        Self { event, body, fields, whole }
    }

    /// The whole document. A body that no longer parses (it did at ingest,
    /// and frames are checksummed) reads as `null`.
    pub fn payload(&self) -> &Value {
        self.whole.get_or_init(|| crate::payload::parse_stored(&self.event.headers, &self.body).unwrap_or(Value::Null))
    }

    /// A document with at least the fields ingest read: what record keys of
    /// targets storing the body as is are read from, without a parse.
    pub fn fields(&self) -> &Value {
        self.whole.get().or(self.fields.as_ref()).unwrap_or_else(|| self.payload())
    }
}

/// A due delivery handed to the dispatcher. It stays claimed (no one else
/// gets it) until `record` stores its next state or `release` gives it back.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub delivery: DeliveryV1,
    pub event: Arc<StoredEvent>,
}

/// An event with its body and deliveries, for `events show`.
#[derive(Debug, Clone, Serialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: EventV1,
    pub status: EventStatus,
    /// The body as JSON (it was valid JSON when accepted).
    pub payload: Value,
    pub delivery_records: Vec<DeliveryV1>,
}

/// A line of `events list`.
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub id: u64,
    pub route: String,
    pub event_type: String,
    pub event_id: Option<String>,
    pub received_at: String,
    pub status: EventStatus,
    pub deliveries: u32,
}

impl EventSummary {
    /// The line of `event`, whose deliveries make `status`.
    pub fn of(e: EventV1, status: EventStatus, deliveries: u32) -> Self {
        Self {
            id: e.id,
            route: e.route,
            event_type: e.event_type,
            event_id: e.event_id,
            received_at: e.received_at,
            status,
            deliveries,
        }
    }
}

/// Filters for `list`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub route: Option<String>,
    /// A route's own event pattern: `customer.*`, `*.deleted`, exact.
    pub event_type: Option<crate::route::filter::Pattern>,
    pub status: Option<EventStatus>,
    /// Received at or after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Received before (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Only ids below this (paging backwards from the newest).
    pub before: Option<u64>,
    pub limit: usize,
}

/// How many more deliveries each sink can start now (its free slots);
/// a sink not listed has no such limit (the embedded store).
pub type Room = std::collections::HashMap<String, usize>;

/// A future the log resolves once the work is on disk.
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, LogError>> + Send>>;

/// Plans the deliveries of a stored event under the current rules (replay).
pub type Plan<'a> = &'a dyn Fn(&EventV1, &[u8]) -> Vec<NewDelivery>;

/// The event log, as every part of the router above storage sees it.
pub trait EventLog: Send + Sync {
    /// Logs the event with its pending deliveries atomically, unless
    /// `(route, event_id)` is already logged; resolves once that is durable
    /// (a duplicate too: the original may not be durable yet).
    fn append(&self, event: NewEvent, deliveries: Vec<NewDelivery>) -> Pending<Appended>;

    /// Claims deliveries due at `now_ms`, oldest first per sink: up to
    /// `limit` of each sink, and no more than its `room` (a sink listed
    /// with 0 is not claimed from); of an ordering key (`ordered_by`) only
    /// its oldest open delivery.
    fn claim(&self, now_ms: i64, limit: usize, room: &Room) -> Result<Vec<Claimed>, LogError>;
    /// Gives back claims that were not run (a busy sink); they stay due.
    fn release(&self, keys: &[DeliveryKey]);
    /// Stores deliveries' next states (as `delivery::next` decided them)
    /// and ends their claims. Resolves once written; the next sync makes
    /// them durable (an outcome lost in a crash means one more attempt).
    fn record(&self, states: Vec<DeliveryV1>) -> Pending<()>;
    /// When the earliest delivery due after `after_ms` is due, if any.
    fn next_due_after(&self, after_ms: i64) -> Option<i64>;
    /// Deliveries pending or waiting for a retry.
    fn queue_depth(&self) -> usize;

    fn event(&self, id: u64) -> Result<EventV1, LogError>;
    fn deliveries(&self, id: u64) -> Result<Vec<DeliveryV1>, LogError>;
    /// The event, its status, its body as JSON and its deliveries.
    fn detail(&self, id: u64) -> Result<EventDetail, LogError>;
    /// Newest first.
    fn list(&self, q: &ListQuery) -> Result<Vec<EventSummary>, LogError>;

    /// Puts failed deliveries back in the queue, due now, with a fresh
    /// retry budget (their attempt history is kept). `route`: only that
    /// route's.
    fn retry_failed(&self, event: Option<u64>, route: Option<&str>) -> Result<Vec<Requeued>, LogError>;
    /// Runs stored events of `route` received in `[since_ms, until_ms)`
    /// through `plan`: every (rule, target) gets a new pending delivery
    /// unless one for the same rule, target and sink is delivered or open
    /// (`force` sends those again too). Returns the deliveries added.
    fn replay(&self, route: &str, since_ms: i64, until_ms: i64, force: bool, plan: Plan) -> Result<usize, LogError>;
    /// One bounded pass of retention: of up to `max` events after id
    /// `after` received before `cutoff_ms`, removes those that need nothing
    /// more (no open or failed delivery).
    fn prune(&self, after: u64, cutoff_ms: i64, max: usize) -> Result<Pruned, LogError>;
    /// Removes one event whose deliveries are all closed (an operator
    /// giving up on a failed event).
    fn delete(&self, id: u64) -> Result<(), DeleteError>;

    /// Makes everything written so far durable (shutdown, CLI).
    fn flush_blocking(&self) -> Result<(), LogError>;
    /// Bytes the log takes on disk.
    fn size_on_disk(&self) -> u64;
    /// Whether the log takes durable writes now (the store supervisor's
    /// probe while writes fail).
    fn probe(&self) -> Result<(), LogError>;
    /// Resolves when another process sharing the log made work due (the
    /// embedded log has none: it never does). The dispatcher wakes on it.
    fn work_elsewhere(&self) -> Pending<()> {
        Box::pin(std::future::pending())
    }
    /// Test hook: while set, appends fail with `Unavailable`.
    #[doc(hidden)]
    fn set_fail_writes(&self, fail: bool);
}

/// Blocks this thread until `f` resolves. Unlike `Handle::block_on` it may
/// be called from inside an async runtime too (a test, a CLI command):
/// what it waits for runs on a thread of its own (the segment log's
/// writer, the PostgreSQL log's runtime), so waiting never holds it up.
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => return r,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}
