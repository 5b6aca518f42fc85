//! The durable event log on sled: accepted events, their pending deliveries,
//! and the due queue that dispatch works from.
//!
//! The API is deliberately narrow (append, claim due deliveries, record an
//! outcome, get, list) so a PostgreSQL backend can sit behind it later.
//!
//! Layout, all in one sled tree so that one `apply_batch` is atomic:
//!
//! | key                               | value                    |
//! |-----------------------------------|--------------------------|
//! | `e` id                            | `Record::EventV1` (JSON) |
//! | `b` id                            | the raw body             |
//! | `d` id index                      | `Record::DeliveryV1`     |
//! | `k` route `\0` event_id           | id (dedup index)         |
//! | `q` due_ms id index               | empty (due queue)        |
//! | `o` sink `\0` order_key `\0` id index | empty: open ordered deliveries; only the first of a key may run |
//! | `f` id index                      | empty: failed deliveries (what operators list and retry) |
//! | `m/` name                         | markers (one-time upgrades done) |
//!
//! Integers are big-endian so keys sort by value.

mod durable;
pub mod record;
mod retention;

use durable::GroupCommit;
pub use record::{Attempt, DeliveryStatus, DeliveryV1, EventStatus, EventV1, Record};
pub use retention::{DeleteError, Pruned};

use crate::event::{format_ms, now_ms};
use crate::sink::{retry, Outcome, RetryPolicy};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Name of the sled tree holding the log.
const LOG_TREE: &str = "log";

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt log record at {key}: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("no such {0}")]
    NotFound(String),
}

impl From<sled::Error> for LogError {
    // sled errors are not Clone; the log keeps their text.
    fn from(e: sled::Error) -> Self {
        LogError::Unavailable(e.to_string())
    }
}

/// An event as ingest hands it over (id and delivery count are assigned here).
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
    pub body: Vec<u8>,
}

/// One (rule, target) the event must reach.
pub struct NewDelivery {
    pub rule: u32,
    pub target: u32,
    pub rule_name: String,
    pub sink: String,
    pub order_key: Option<String>,
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

/// An event with its body and deliveries, for `events show`.
#[derive(Debug, Clone, Serialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub event: EventV1,
    pub status: EventStatus,
    /// The body as JSON (it was valid JSON when accepted).
    pub payload: serde_json::Value,
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

/// Filters for `list`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub route: Option<String>,
    /// Exact type, or a prefix pattern ending in `*` (`customer.*`).
    pub event_type: Option<String>,
    pub status: Option<EventStatus>,
    /// Received at or after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Received before (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Only ids below this (paging backwards from the newest).
    pub before: Option<u64>,
    pub limit: usize,
}

pub struct EventLog {
    tree: sled::Tree,
    /// The single writer of new events (see `durable`).
    commit: GroupCommit,
    /// Test hook: makes appends fail as if the disk had gone away.
    fail_writes: Arc<AtomicBool>,
    /// Held by the writers of closed events (retry, replay, retention,
    /// delete), so none removes what another is changing.
    maintenance: std::sync::Mutex<()>,
}

fn be(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn event_key(id: u64) -> Vec<u8> {
    [&b"e"[..], &be(id)].concat()
}
fn body_key(id: u64) -> Vec<u8> {
    [&b"b"[..], &be(id)].concat()
}
fn delivery_key(k: DeliveryKey) -> Vec<u8> {
    [&b"d"[..], &be(k.event), &k.index.to_be_bytes()].concat()
}
/// The failed-index entry of a delivery.
fn failed_key(k: DeliveryKey) -> Vec<u8> {
    [&b"f"[..], &be(k.event), &k.index.to_be_bytes()].concat()
}
fn dedup_key(route: &str, event_id: &str) -> Vec<u8> {
    [&b"k"[..], route.as_bytes(), &[0], event_id.as_bytes()].concat()
}
fn order_prefix(sink: &str, key: &str) -> Vec<u8> {
    [&b"o"[..], sink.as_bytes(), &[0], key.as_bytes(), &[0]].concat()
}
/// The ordering index entry of an open delivery that has an order key.
fn order_key(d: &DeliveryV1) -> Option<Vec<u8>> {
    let key = d.order_key.as_deref()?;
    Some([order_prefix(&d.sink, key), be(d.event).to_vec(), d.index.to_be_bytes().to_vec()].concat())
}

/// Due times sort correctly as unsigned after flipping the sign bit.
fn queue_key(due_ms: i64, k: DeliveryKey) -> Vec<u8> {
    let due = (due_ms as u64) ^ (1 << 63);
    [&b"q"[..], &be(due), &be(k.event), &k.index.to_be_bytes()].concat()
}
fn parse_failed_key(key: &[u8]) -> Option<DeliveryKey> {
    if key.len() != 1 + 8 + 4 {
        return None;
    }
    let event = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let index = u32::from_be_bytes(key[9..13].try_into().ok()?);
    Some(DeliveryKey { event, index })
}
fn parse_queue_key(key: &[u8]) -> Option<(i64, DeliveryKey)> {
    if key.len() != 1 + 8 + 8 + 4 {
        return None;
    }
    let due = (u64::from_be_bytes(key[1..9].try_into().ok()?) ^ (1 << 63)) as i64;
    let event = u64::from_be_bytes(key[9..17].try_into().ok()?);
    let index = u32::from_be_bytes(key[17..21].try_into().ok()?);
    Some((due, DeliveryKey { event, index }))
}

fn encode(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).expect("records always serialise")
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Record, LogError> {
    serde_json::from_slice(bytes)
        .map_err(|e| LogError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), detail: e.to_string() })
}

fn id_from(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]))
}

impl EventLog {
    /// Opens the log in an already-open sled database at `dir`.
    pub fn open(db: &sled::Db, dir: &Path) -> Result<Self, LogError> {
        let tree = db.open_tree(LOG_TREE)?;
        Self::index_failed(&tree)?;
        let mut last = match tree.scan_prefix(b"e").next_back() {
            Some(kv) => id_from(&kv?.0[1..9]),
            None => 0,
        };
        let fail_writes = Arc::new(AtomicBool::new(false));
        let (writer_tree, fail) = (tree.clone(), fail_writes.clone());
        let apply = Box::new(move |group: Vec<(NewEvent, Vec<NewDelivery>)>| {
            if fail.load(Ordering::SeqCst) {
                return Err(LogError::Unavailable("writes disabled (test hook)".into()));
            }
            apply_group(&writer_tree, &mut last, group)
        });
        let commit = GroupCommit::start(db.clone(), dir, apply).map_err(|e| LogError::Unavailable(e.to_string()))?;
        Ok(Self { tree, commit, fail_writes, maintenance: std::sync::Mutex::new(()) })
    }

    /// Test hook: while set, appends fail with `Unavailable`.
    #[doc(hidden)]
    pub fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Writes the event, its body and its pending deliveries atomically,
    /// unless `(route, event_id)` is already logged, and returns once that
    /// is on disk (fsync'd). A duplicate also waits: the original may not be
    /// durable yet.
    pub async fn append(&self, event: NewEvent, deliveries: Vec<NewDelivery>) -> Result<Appended, LogError> {
        self.commit.append((event, deliveries)).await
    }

    /// Deliveries due at `now_ms`, oldest first.
    pub fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<DeliveryKey>, LogError> {
        let start = queue_key(i64::MIN, DeliveryKey { event: 0, index: 0 });
        let end = queue_key(now_ms, DeliveryKey { event: u64::MAX, index: u32::MAX });
        let mut out = Vec::new();
        for kv in self.tree.range(start..end).take(limit) {
            if let Some((_, key)) = parse_queue_key(&kv?.0) {
                out.push(key);
            }
        }
        Ok(out)
    }

    /// Whether `d` may run now: it has no order key, or it is the oldest open
    /// delivery of its (sink, key).
    pub fn is_next_in_order(&self, d: &DeliveryV1) -> Result<bool, LogError> {
        let Some(mine) = order_key(d) else { return Ok(true) };
        let prefix = order_prefix(&d.sink, d.order_key.as_deref().unwrap_or(""));
        Ok(match self.tree.scan_prefix(prefix).next() {
            Some(kv) => kv?.0.as_ref() == mine.as_slice(),
            None => true,
        })
    }

    /// When the earliest delivery due after `after_ms` is due, if any.
    pub fn next_due_after(&self, after_ms: i64) -> Result<Option<i64>, LogError> {
        let start = queue_key(after_ms.saturating_add(1), DeliveryKey { event: 0, index: 0 });
        let end = queue_key(i64::MAX, DeliveryKey { event: u64::MAX, index: u32::MAX });
        match self.tree.range(start..end).next() {
            Some(kv) => Ok(parse_queue_key(&kv?.0).map(|(due, _)| due)),
            None => Ok(None),
        }
    }

    pub fn event(&self, id: u64) -> Result<EventV1, LogError> {
        let key = event_key(id);
        match self.tree.get(&key)? {
            Some(bytes) => match decode(&key, &bytes)? {
                Record::EventV1(e) => Ok(e),
                _ => Err(LogError::Corrupt { key: format!("e{id}"), detail: "not an event record".into() }),
            },
            None => Err(LogError::NotFound(format!("event {id}"))),
        }
    }

    pub fn body(&self, id: u64) -> Result<Vec<u8>, LogError> {
        Ok(self.tree.get(body_key(id))?.map(|b| b.to_vec()).unwrap_or_default())
    }

    pub fn delivery(&self, key: DeliveryKey) -> Result<DeliveryV1, LogError> {
        let k = delivery_key(key);
        match self.tree.get(&k)? {
            Some(bytes) => match decode(&k, &bytes)? {
                Record::DeliveryV1(d) => Ok(d),
                _ => Err(LogError::Corrupt {
                    key: format!("d{}/{}", key.event, key.index),
                    detail: "not a delivery".into(),
                }),
            },
            None => Err(LogError::NotFound(format!("delivery {}/{}", key.event, key.index))),
        }
    }

    pub fn deliveries(&self, event: u64) -> Result<Vec<DeliveryV1>, LogError> {
        let prefix = [&b"d"[..], &be(event)].concat();
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(prefix) {
            let (k, v) = kv?;
            if let Record::DeliveryV1(d) = decode(&k, &v)? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Records attempts' outcomes in one atomic batch: delivered, skipped,
    /// failed, or rescheduled by the sink's policy (the next due time is
    /// stored, so a restart resumes the schedule). Returns the updated records.
    pub fn record(&self, outcomes: Vec<(DeliveryV1, Outcome, RetryPolicy)>) -> Result<Vec<DeliveryV1>, LogError> {
        let now = now_ms();
        let mut batch = sled::Batch::default();
        let mut updated = Vec::with_capacity(outcomes.len());
        for (mut d, outcome, policy) in outcomes {
            let key = DeliveryKey { event: d.event, index: d.index };
            if let Some(due) = d.next_attempt_ms {
                batch.remove(queue_key(due, key));
            }
            apply_outcome(&mut d, outcome, &policy, now);
            if let (true, Some(due)) = (d.status.is_open(), d.next_attempt_ms) {
                batch.insert(queue_key(due, key), &[][..]);
            }
            if let (false, Some(o)) = (d.status.is_open(), order_key(&d)) {
                batch.remove(o);
            }
            if d.status == DeliveryStatus::Failed {
                batch.insert(failed_key(key), &[][..]);
            }
            batch.insert(delivery_key(key), encode(&Record::DeliveryV1(d.clone())));
            updated.push(d);
        }
        self.tree.apply_batch(batch)?;
        Ok(updated)
    }

    /// Puts failed deliveries back in the due queue, now, with a fresh retry
    /// budget (their attempt history is kept). `route`: only that route's.
    /// Returns what was requeued.
    pub fn retry_failed(&self, event: Option<u64>, route: Option<&str>) -> Result<Vec<Requeued>, LogError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let mut batch = sled::Batch::default();
        let mut requeued = Vec::new();
        let mut routes: HashMap<u64, String> = HashMap::new();
        let prefix = match event {
            Some(id) => [&b"f"[..], &be(id)].concat(),
            None => b"f".to_vec(),
        };
        for kv in self.tree.scan_prefix(prefix) {
            let (k, _) = kv?;
            let Some(key) = parse_failed_key(&k) else { continue };
            let mut d = self.delivery(key)?;
            if d.status != DeliveryStatus::Failed {
                continue;
            }
            let event_route = match routes.get(&d.event) {
                Some(r) => r.clone(),
                None => {
                    let r = self.event(d.event)?.route;
                    routes.insert(d.event, r.clone());
                    r
                }
            };
            if route.is_some_and(|r| r != event_route) {
                continue;
            }
            let failed_ms = d
                .attempts_log
                .iter()
                .rev()
                .find(|a| a.outcome == "failed")
                .and_then(|a| crate::event::parse_time(&serde_json::Value::from(a.at.as_str())))
                .map_or(0, |nanos| (nanos / 1_000_000) as i64);
            batch.remove(failed_key(key));
            d.status = DeliveryStatus::Pending;
            d.attempts = 0;
            d.next_attempt_ms = Some(now);
            d.attempts_log.push(Attempt { at: format_ms(now), outcome: "requeued".into(), error: None });
            batch.insert(queue_key(now, key), &[][..]);
            if let Some(o) = order_key(&d) {
                batch.insert(o, &[][..]);
            }
            requeued.push(Requeued { route: event_route, sink: d.sink.clone(), failed_ms });
            batch.insert(delivery_key(key), encode(&Record::DeliveryV1(d)));
        }
        self.tree.apply_batch(batch)?;
        Ok(requeued)
    }

    /// Runs stored events of `route` received in `[since_ms, until_ms)` through
    /// the current rules: every (rule, target) the event now matches gets a new
    /// pending delivery, unless one for the same rule, target and sink is
    /// already delivered or open (`force` sends those again too). `plan` gives
    /// the (rule, target, rule name, sink) list for an event type. Returns the
    /// number of deliveries added.
    pub fn replay(
        &self,
        route: &str,
        since_ms: i64,
        until_ms: i64,
        force: bool,
        plan: &dyn Fn(&EventV1, &[u8]) -> Vec<NewDelivery>,
    ) -> Result<usize, LogError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let mut added = 0;
        for kv in self.tree.scan_prefix(b"e") {
            let (k, v) = kv?;
            let Record::EventV1(mut e) = decode(&k, &v)? else { continue };
            if e.route != route || e.received_ms < since_ms || e.received_ms >= until_ms {
                continue;
            }
            let existing = self.deliveries(e.id)?;
            let mut batch = sled::Batch::default();
            let mut next_index = existing.iter().map(|d| d.index + 1).max().unwrap_or(0);
            for nd in plan(&e, &self.body(e.id)?) {
                let done = existing.iter().any(|d| {
                    d.rule == nd.rule
                        && d.target == nd.target
                        && d.sink == nd.sink
                        && d.status != DeliveryStatus::Failed
                });
                if done && !force {
                    continue;
                }
                let key = DeliveryKey { event: e.id, index: next_index };
                next_index += 1;
                let replayed = Attempt { at: format_ms(now), outcome: "replayed".into(), error: None };
                insert_pending(&mut batch, nd, key, now, vec![replayed]);
                added += 1;
            }
            if next_index as usize > existing.len() {
                e.deliveries = next_index;
                batch.insert(event_key(e.id), encode(&Record::EventV1(e)));
                self.tree.apply_batch(batch)?;
            }
        }
        Ok(added)
    }

    pub fn detail(&self, id: u64) -> Result<EventDetail, LogError> {
        let event = self.event(id)?;
        let deliveries = self.deliveries(id)?;
        let body = self.body(id)?;
        let payload = crate::payload::parse_stored(&event.headers, &body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok(EventDetail { status: EventStatus::of(&deliveries), event, payload, delivery_records: deliveries })
    }

    /// Newest first.
    pub fn list(&self, q: &ListQuery) -> Result<Vec<EventSummary>, LogError> {
        let before = q.before.unwrap_or(u64::MAX);
        // Failed events come from their index: old failures are what
        // operators look for, and the log around them may be huge.
        let events: Box<dyn Iterator<Item = Result<EventV1, LogError>> + '_> = if q.status == Some(EventStatus::Failed)
        {
            let end = [&b"f"[..], &be(before)].concat();
            let keys = self.tree.range(b"f".to_vec()..end).keys().rev();
            let mut last = None;
            let ids = keys.filter_map(move |k| match k {
                Err(e) => Some(Err(LogError::from(e))),
                Ok(k) => {
                    let id = parse_failed_key(&k)?.event;
                    (last.replace(id) != Some(id)).then_some(Ok(id))
                }
            });
            Box::new(ids.map(|id| self.event(id?)))
        } else {
            let records = self.tree.range(event_key(0)..event_key(before)).rev();
            Box::new(records.filter_map(|kv| match kv.map_err(LogError::from).and_then(|(k, v)| decode(&k, &v)) {
                Ok(Record::EventV1(e)) => Some(Ok(e)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }))
        };
        let mut out = Vec::new();
        for e in events {
            let e = e?;
            // Ids grow with receipt time: everything further back is older.
            if q.since_ms.is_some_and(|since| e.received_ms < since) {
                break;
            }
            if q.route.as_ref().is_some_and(|r| *r != e.route)
                || q.until_ms.is_some_and(|until| e.received_ms >= until)
                || q.event_type.as_deref().is_some_and(|t| !type_matches(t, &e.event_type))
            {
                continue;
            }
            let status = EventStatus::of(&self.deliveries(e.id)?);
            if q.status.is_some_and(|s| s != status) {
                continue;
            }
            out.push(EventSummary {
                id: e.id,
                route: e.route,
                event_type: e.event_type,
                event_id: e.event_id,
                received_at: e.received_at,
                status,
                deliveries: e.deliveries,
            });
            if out.len() >= q.limit.max(1) {
                break;
            }
        }
        Ok(out)
    }

    /// Builds the failed-delivery index of a log written before it existed
    /// (once: a marker records that it is done).
    fn index_failed(tree: &sled::Tree) -> Result<(), LogError> {
        const MARKER: &[u8] = b"m/failed-index";
        if tree.contains_key(MARKER)? {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for kv in tree.scan_prefix(b"d") {
            let (k, v) = kv?;
            if let Record::DeliveryV1(d) = decode(&k, &v)? {
                if d.status == DeliveryStatus::Failed {
                    batch.insert(failed_key(DeliveryKey { event: d.event, index: d.index }), &[][..]);
                }
            }
        }
        batch.insert(MARKER, &[][..]);
        tree.apply_batch(batch)?;
        Ok(())
    }

    /// Makes everything written so far durable (shutdown, CLI).
    pub fn flush_blocking(&self) -> Result<(), LogError> {
        self.commit.sync_blocking()
    }
}

/// `customer.*` matches `customer.created`; anything else must be equal.
fn type_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

/// Time since the first attempt of the delivery's current run (after its
/// last manual requeue or replay), zero before it has one.
fn since_first(d: &DeliveryV1, now: i64) -> std::time::Duration {
    let run_start =
        d.attempts_log.iter().rposition(|a| a.outcome == "requeued" || a.outcome == "replayed").map_or(0, |i| i + 1);
    let first = d.attempts_log[run_start..].first();
    let first_ms = first
        .and_then(|a| crate::event::parse_time(&serde_json::Value::String(a.at.clone())))
        .map_or(now, |nanos| (nanos / 1_000_000) as i64);
    std::time::Duration::from_millis(now.saturating_sub(first_ms).max(0) as u64)
}

/// A uniform draw in [0, 1) for retry jitter.
fn jitter_draw() -> f64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_or(0.5, |()| (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64)
}

/// The state machine of one delivery: pending/retrying → delivered |
/// skipped | retrying (with its next due time) | failed.
fn apply_outcome(d: &mut DeliveryV1, outcome: Outcome, policy: &RetryPolicy, now: i64) {
    d.attempts += 1;
    let (status, label, error) = match outcome {
        Outcome::Delivered => (DeliveryStatus::Delivered, "delivered", None),
        Outcome::Skipped { reason } => (DeliveryStatus::Skipped, "skipped", Some(reason)),
        Outcome::Dropped { reason } => (DeliveryStatus::Dropped, "dropped", Some(reason)),
        Outcome::Failed { error } => (DeliveryStatus::Failed, "failed", Some(error)),
        Outcome::Retry { error, after } => {
            match retry::next_delay(policy, d.attempts, after, jitter_draw(), since_first(d, now)) {
                Some(delay) => {
                    d.next_attempt_ms = Some(now + delay.as_millis() as i64);
                    (DeliveryStatus::Retrying, "retry", Some(error))
                }
                None => (DeliveryStatus::Failed, "failed", Some(format!("{error} (after {} attempts)", d.attempts))),
            }
        }
    };
    d.status = status;
    if !status.is_open() {
        d.next_attempt_ms = None;
    }
    if error.is_some() {
        d.last_error = error.clone();
    }
    d.attempts_log.push(Attempt { at: format_ms(now), outcome: label.into(), error });
}

/// Adds a new pending delivery to `batch`: its record, its due-queue entry
/// and, when it is ordered, its ordering-index entry.
fn insert_pending(batch: &mut sled::Batch, nd: NewDelivery, key: DeliveryKey, now: i64, history: Vec<Attempt>) {
    let d = DeliveryV1 {
        event: key.event,
        index: key.index,
        rule: nd.rule,
        target: nd.target,
        rule_name: nd.rule_name,
        sink: nd.sink,
        order_key: nd.order_key,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_ms: Some(now),
        last_error: None,
        attempts_log: history,
    };
    if let Some(o) = order_key(&d) {
        batch.insert(o, &[][..]);
    }
    batch.insert(queue_key(now, key), &[][..]);
    batch.insert(delivery_key(key), encode(&Record::DeliveryV1(d)));
}

/// Builds one batch for a group of appends (the writer thread's only
/// write): dedup against the log and within the group, ids in order, every
/// record of every event. `last` advances only if the batch is applied.
fn apply_group(
    tree: &sled::Tree,
    last: &mut u64,
    group: Vec<(NewEvent, Vec<NewDelivery>)>,
) -> Result<Vec<Appended>, LogError> {
    let mut batch = sled::Batch::default();
    let mut answers = Vec::with_capacity(group.len());
    let mut in_group: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut next = *last;
    let now = now_ms();
    for (event, deliveries) in group {
        let dedup = event.event_id.as_deref().filter(|_| event.dedup).map(|id| dedup_key(&event.route, id));
        if let Some(k) = &dedup {
            if let Some(id) = in_group.get(k) {
                answers.push(Appended::Duplicate(*id));
                continue;
            }
            if let Some(existing) = tree.get(k)? {
                answers.push(Appended::Duplicate(id_from(&existing)));
                continue;
            }
        }
        next += 1;
        let id = next;
        let record = EventV1 {
            id,
            route: event.route,
            event_type: event.event_type,
            event_id: event.event_id,
            event_time: event.event_time,
            received_at: format_ms(now),
            received_ms: now,
            params: event.params,
            query: event.query,
            headers: event.headers,
            deliveries: deliveries.len() as u32,
        };
        batch.insert(event_key(id), encode(&Record::EventV1(record)));
        batch.insert(body_key(id), event.body);
        for (i, d) in deliveries.into_iter().enumerate() {
            insert_pending(&mut batch, d, DeliveryKey { event: id, index: i as u32 }, now, vec![]);
        }
        if let Some(k) = dedup {
            batch.insert(k.clone(), &be(id)[..]);
            in_group.insert(k, id);
        }
        answers.push(Appended::New(id));
    }
    tree.apply_batch(batch)?;
    *last = next;
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_by_due_time() {
        let k = DeliveryKey { event: 7, index: 2 };
        let a = queue_key(-5, k);
        let b = queue_key(10, k);
        let c = queue_key(1_700_000_000_000, k);
        assert!(a < b && b < c);
        assert_eq!(parse_queue_key(&c), Some((1_700_000_000_000, k)));
    }
}
