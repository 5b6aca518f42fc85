//! The embedded backend: the event log as a segment log of our own, in
//! `<data>/log/`, for one router process.
//!
//! Appends are frames at the end of the newest segment, written and synced
//! in groups by one thread (`writer`); an event and its deliveries are one
//! frame, so they land together or not at all. What the router needs at
//! hand (positions, statuses, the due queue, dedup keys) is in memory
//! (`index`), rebuilt from frame headers at open; a torn tail (a crash in
//! the middle of a write) is cut off there and reported. Reads go to the
//! files by position. Retention removes events with a `REMOVED` frame and
//! deletes segments once nothing in them is live (`retention`).

mod codec;
mod index;
pub mod migrate;
pub mod records;
pub mod retention;
mod segment;
mod writer;

use crate::storage::record::{Attempt, DeliveryStatus, DeliveryV1, EventStatus, EventV1};
use crate::storage::{
    Appended, Claimed, DeliveryKey, EventDetail, EventLog, EventSummary, ListQuery, LogError, NewDelivery, NewEvent,
    Parsed, Pending, Plan, Requeued, Room, StoredEvent,
};
use index::Index;
use segment::Pos;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;
use writer::Job;

/// Recently appended events kept parsed for the dispatcher, by default.
pub const HOT_EVENTS: usize = 1024;
/// The longest chain of `STATES` frames followed for one event (damage guard).
const MAX_CHAIN: usize = 100_000;

/// The directory of the log inside a data directory.
pub fn log_dir(data: &Path) -> PathBuf {
    data.join("log")
}

pub struct SegmentLog {
    dir: PathBuf,
    index: Arc<Mutex<Index>>,
    writer: mpsc::Sender<Job>,
    /// Open segments for reading, by number.
    files: Mutex<HashMap<u32, Arc<File>>>,
    fail_writes: Arc<AtomicBool>,
    /// Held by the writers of closed events (retry, replay, retention,
    /// delete), so none removes what another is changing.
    maintenance: Mutex<()>,
}

/// How opening the log went: what it found, what it cut.
#[derive(Debug, Default, Clone, Copy)]
pub struct Opened {
    pub segments: usize,
    pub events: u64,
    /// Bytes cut off a torn tail.
    pub dropped: u64,
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`; `hot_events` bounds the parsed
    /// events kept for the dispatcher.
    pub fn open(dir: &Path, hot_events: usize) -> Result<(Self, Opened), LogError> {
        let io = |e: std::io::Error| LogError::Unavailable(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut segments = segment::list(dir).map_err(io)?;
        let mut index = Index::new(hot_events);
        index.begin_scan();
        // Deliveries not closed at the end of the scan: open or failed.
        let mut live: BTreeMap<DeliveryKey, codec::StateHead> = BTreeMap::new();
        let mut opened = Opened { segments: segments.len(), ..Opened::default() };
        for (i, &n) in segments.iter().enumerate() {
            index.segments.entry(n).or_default();
            let path = segment::path(dir, n);
            let scanned = segment::scan(&path, |offset, payload| {
                let pos = Pos::new(n, offset);
                match codec::head(payload) {
                    Ok(codec::Head::Event { id, fingerprint, states, .. }) => {
                        index.add_event_head(id, pos, fingerprint, !states.is_empty());
                        opened.events += 1;
                        track(&mut live, id, &states);
                    }
                    Ok(codec::Head::States { event, states, .. }) => {
                        index.set_state_pos(event, pos);
                        track(&mut live, event, &states);
                    }
                    Ok(codec::Head::Removed { ids }) => {
                        for (id, fingerprint) in ids {
                            index.remove(id, fingerprint);
                            live.retain(|k, _| k.event != id);
                        }
                    }
                    Err(e) => {
                        tracing::error!(segment = %path.display(), offset, error = %e, "Skipping an unreadable frame.")
                    }
                }
            })
            .map_err(io)?;
            if scanned.dropped > 0 {
                opened.dropped += scanned.dropped;
                if i + 1 == segments.len() {
                    tracing::warn!(
                        segment = %path.display(), offset = scanned.valid_len, dropped_bytes = scanned.dropped,
                        "Cut a torn tail off the event log (a write that a crash interrupted; it was never acknowledged)."
                    );
                    segment::truncate(&path, scanned.valid_len).map_err(io)?;
                } else {
                    tracing::error!(
                        segment = %path.display(), offset = scanned.valid_len, dropped_bytes = scanned.dropped,
                        "A sealed segment of the event log is damaged; frames after this offset are unreadable."
                    );
                }
            }
        }
        index.end_scan();
        index.compact();
        if segments.is_empty() {
            segment::create(dir, 1).map_err(io)?;
            segments.push(1);
            index.segments.entry(1).or_default();
        }
        let last = *segments.last().expect("at least one segment");
        let file = segment::open_append(dir, last).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let index = Arc::new(Mutex::new(index));
        let fail_writes = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let w = writer::Writer {
            dir: dir.to_path_buf(),
            index: index.clone(),
            segment: last,
            file,
            len,
            fail: fail_writes.clone(),
        };
        std::thread::Builder::new().name("log-writer".into()).spawn(move || w.run(rx)).map_err(io)?;
        let log = Self {
            dir: dir.to_path_buf(),
            index,
            writer: tx,
            files: Mutex::new(HashMap::new()),
            fail_writes,
            maintenance: Mutex::new(()),
        };
        log.load_live(live)?;
        Ok((log, opened))
    }

    /// Puts the open and failed deliveries found by the scan into the index.
    fn load_live(&self, live: BTreeMap<DeliveryKey, codec::StateHead>) -> Result<(), LogError> {
        let mut events: Vec<u64> = live.keys().map(|k| k.event).collect();
        events.dedup();
        for id in events {
            let deliveries = self.read_deliveries(id)?;
            let mut index = self.lock();
            for d in deliveries.into_iter().filter(|d| live.contains_key(&DeliveryKey::of(d))) {
                index.put(d);
            }
        }
        self.lock().refresh_all();
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, job: Job) -> Result<(), LogError> {
        self.writer.send(job).map_err(|_| stopped())
    }

    /// Sends a job and waits for its answer (blocking pool, CLI).
    fn call<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Job) -> Result<T, LogError> {
        let (tx, rx) = oneshot::channel();
        self.send(job(tx))?;
        crate::storage::block_on(rx).map_err(|_| stopped())?
    }

    fn file(&self, segment: u32) -> Result<Arc<File>, LogError> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = files.get(&segment) {
            return Ok(f.clone());
        }
        let f =
            Arc::new(File::open(segment::path(&self.dir, segment)).map_err(|e| LogError::Unavailable(e.to_string()))?);
        files.insert(segment, f.clone());
        Ok(f)
    }

    fn read(&self, pos: Pos) -> Result<Vec<u8>, LogError> {
        segment::read_at(&*self.file(pos.segment())?, pos.offset()).map_err(|e| LogError::Corrupt {
            key: format!("{}@{}", segment::file_name(pos.segment()), pos.offset()),
            detail: e.to_string(),
        })
    }

    fn event_frame(&self, id: u64) -> Result<Vec<u8>, LogError> {
        let pos = self.lock().event_pos(id).ok_or_else(|| LogError::NotFound(format!("event {id}")))?;
        self.read(pos)
    }

    /// The event record and its raw body.
    pub fn event_and_body(&self, id: u64) -> Result<(EventV1, Vec<u8>, Vec<DeliveryV1>), LogError> {
        let frame = self.event_frame(id)?;
        let (json, body) = codec::read_event(&frame)?;
        Ok((json.event, body.to_vec(), json.deliveries))
    }

    /// Every delivery of an event as last recorded: the event frame's, then
    /// each newer `STATES` frame's along the chain.
    fn read_deliveries(&self, id: u64) -> Result<Vec<DeliveryV1>, LogError> {
        let (pos, mut state) = {
            let index = self.lock();
            (index.event_pos(id).ok_or_else(|| LogError::NotFound(format!("event {id}")))?, index.state_pos(id))
        };
        let (json, _) = codec::read_event(&self.read(pos)?)?;
        let mut newest: BTreeMap<u32, DeliveryV1> = BTreeMap::new();
        let mut steps = 0;
        while state != 0 && steps < MAX_CHAIN {
            let (prev, states) = codec::read_states(&self.read(Pos(state))?)?;
            for d in states {
                newest.entry(d.index).or_insert(d);
            }
            // A chain only goes back; anything else is damage.
            state = if prev < state { prev } else { 0 };
            steps += 1;
        }
        let mut all: BTreeMap<u32, DeliveryV1> = json.deliveries.into_iter().map(|d| (d.index, d)).collect();
        all.extend(newest);
        Ok(all.into_values().collect())
    }

    fn load(&self, id: u64) -> Result<Arc<StoredEvent>, LogError> {
        let (event, body, _) = self.event_and_body(id)?;
        let payload = crate::payload::parse_stored(&event.headers, &body).map_err(|e| LogError::Corrupt {
            key: format!("event {id}"),
            detail: format!("the body no longer parses: {e}"),
        })?;
        Ok(Arc::new(StoredEvent::new(event, body.into(), Parsed::Whole(payload))))
    }

    /// Deletes whole segments at the start of the log that hold nothing live.
    fn drop_dead_segments(&self) {
        let dead: Vec<u32> = {
            let mut index = self.lock();
            let newest = index.segments.keys().next_back().copied();
            let dead: Vec<u32> = index
                .segments
                .iter()
                .take_while(|(n, info)| info.live == 0 && Some(**n) != newest)
                .map(|(n, _)| *n)
                .collect();
            for n in &dead {
                index.segments.remove(n);
            }
            dead
        };
        for n in dead {
            self.files.lock().unwrap_or_else(|p| p.into_inner()).remove(&n);
            match std::fs::remove_file(segment::path(&self.dir, n)) {
                Ok(()) => tracing::debug!(segment = n, "Deleted a segment with nothing live in it."),
                Err(e) => tracing::warn!(segment = n, error = %e, "Cannot delete an emptied segment."),
            }
        }
    }
}

/// Follows delivery states during the open scan: open and failed ones are kept.
fn track(live: &mut BTreeMap<DeliveryKey, codec::StateHead>, event: u64, states: &[codec::StateHead]) {
    for s in states {
        let key = DeliveryKey { event, index: s.index };
        if s.status.is_open() || s.status == DeliveryStatus::Failed {
            live.insert(key, *s);
        } else {
            live.remove(&key);
        }
    }
}

fn stopped() -> LogError {
    LogError::Unavailable("log writer stopped".into())
}

/// Awaits a writer's answer.
fn pending<T: Send + 'static>(rx: oneshot::Receiver<Result<T, LogError>>) -> Pending<T> {
    Box::pin(async move { rx.await.map_err(|_| stopped())? })
}

impl EventLog for SegmentLog {
    fn append(&self, event: NewEvent, deliveries: Vec<NewDelivery>) -> Pending<Appended> {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.send(Job::Append(writer::Prepared::new(event, deliveries), tx)) {
            return Box::pin(async move { Err(e) });
        }
        pending(rx)
    }

    fn claim(&self, now_ms: i64, limit: usize, room: &Room) -> Result<Vec<Claimed>, LogError> {
        let claimed: Vec<(DeliveryV1, Option<Arc<StoredEvent>>)> = {
            let mut index = self.lock();
            let ds = index.claim(now_ms, limit, room);
            ds.into_iter()
                .map(|d| {
                    let hot = index.hot(d.event);
                    (d, hot)
                })
                .collect()
        };
        let mut out = Vec::with_capacity(claimed.len());
        let mut loaded: HashMap<u64, Arc<StoredEvent>> = HashMap::new();
        for (delivery, hot) in claimed {
            let event = match hot.or_else(|| loaded.get(&delivery.event).cloned()) {
                Some(e) => e,
                None => match self.load(delivery.event) {
                    Ok(e) => {
                        loaded.insert(delivery.event, e.clone());
                        e
                    }
                    Err(e) => {
                        tracing::error!(event = delivery.event, error = %e, "Cannot read a due event; it stays due.");
                        self.release(&[DeliveryKey::of(&delivery)]);
                        continue;
                    }
                },
            };
            out.push(Claimed { delivery, event });
        }
        Ok(out)
    }

    fn release(&self, keys: &[DeliveryKey]) {
        self.lock().release(keys);
    }

    fn record(&self, states: Vec<DeliveryV1>) -> Pending<()> {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.send(Job::States(states, tx)) {
            return Box::pin(async move { Err(e) });
        }
        pending(rx)
    }

    fn next_due_after(&self, after_ms: i64) -> Option<i64> {
        self.lock().next_due_after(after_ms)
    }

    fn queue_depth(&self) -> usize {
        self.lock().queue_depth()
    }

    fn event(&self, id: u64) -> Result<EventV1, LogError> {
        Ok(codec::read_event(&self.event_frame(id)?)?.0.event)
    }

    fn deliveries(&self, id: u64) -> Result<Vec<DeliveryV1>, LogError> {
        self.read_deliveries(id)
    }

    fn detail(&self, id: u64) -> Result<EventDetail, LogError> {
        let (mut event, body, _) = self.event_and_body(id)?;
        let deliveries = self.read_deliveries(id)?;
        event.deliveries = deliveries.len() as u32;
        let payload = crate::payload::parse_stored(&event.headers, &body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok(EventDetail { status: EventStatus::of(&deliveries), event, payload, delivery_records: deliveries })
    }

    fn list(&self, q: &ListQuery) -> Result<Vec<EventSummary>, LogError> {
        let before = q.before.unwrap_or(u64::MAX);
        let ids: Box<dyn Iterator<Item = u64>> = {
            let index = self.lock();
            if q.status == Some(EventStatus::Failed) {
                // Old failures are what operators look for; the failed set
                // finds them without walking the log.
                Box::new(index.failed_events_before(before).into_iter())
            } else {
                let (first, last) = (index.first_id(), index.last_id.min(before.saturating_sub(1)));
                Box::new((first..=last).rev())
            }
        };
        let mut out = Vec::new();
        for id in ids {
            let Some(status) = self.lock().status(id) else { continue };
            if q.status.is_some_and(|s| s != status) {
                continue;
            }
            let e = match self.event(id) {
                Ok(e) => e,
                Err(LogError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            // Ids grow with receipt time: everything further back is older.
            if q.since_ms.is_some_and(|since| e.received_ms < since) {
                break;
            }
            if q.route.as_ref().is_some_and(|r| *r != e.route)
                || q.until_ms.is_some_and(|until| e.received_ms >= until)
                || q.event_type.as_ref().is_some_and(|p| !p.matches(&e.event_type))
            {
                continue;
            }
            let deliveries = e.deliveries;
            out.push(EventSummary::of(e, status, deliveries));
            if out.len() >= q.limit.max(1) {
                break;
            }
        }
        Ok(out)
    }

    fn retry_failed(&self, event: Option<u64>, route: Option<&str>) -> Result<Vec<Requeued>, LogError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::event::now_ms();
        let keys = self.lock().failed(event);
        let mut routes: HashMap<u64, String> = HashMap::new();
        let mut records: HashMap<u64, Vec<DeliveryV1>> = HashMap::new();
        let (mut requeued, mut states) = (Vec::new(), Vec::new());
        for key in keys {
            if let std::collections::hash_map::Entry::Vacant(slot) = records.entry(key.event) {
                slot.insert(self.read_deliveries(key.event)?);
                routes.insert(key.event, self.event(key.event)?.route);
            }
            let event_route = &routes[&key.event];
            if route.is_some_and(|r| r != event_route) {
                continue;
            }
            let Some(d) =
                records[&key.event].iter().find(|d| d.index == key.index && d.status == DeliveryStatus::Failed)
            else {
                continue;
            };
            let failed_ms = crate::delivery::failed_at(d);
            let d = crate::delivery::requeued(d.clone(), now);
            requeued.push(Requeued { route: event_route.clone(), sink: d.sink.clone(), failed_ms });
            states.push(d);
        }
        if !states.is_empty() {
            self.call(|tx| Job::States(states, tx))?;
        }
        Ok(requeued)
    }

    fn replay(&self, route: &str, since_ms: i64, until_ms: i64, force: bool, plan: Plan) -> Result<usize, LogError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::event::now_ms();
        let (first, last) = {
            let index = self.lock();
            (index.first_id(), index.last_id)
        };
        let mut added = 0;
        for id in first..=last {
            let (e, body, _) = match self.event_and_body(id) {
                Ok(found) => found,
                Err(LogError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if e.received_ms >= until_ms {
                break;
            }
            if e.route != route || e.received_ms < since_ms {
                continue;
            }
            let existing = self.read_deliveries(id)?;
            let mut next_index = existing.iter().map(|d| d.index + 1).max().unwrap_or(0);
            let mut new = Vec::new();
            for nd in plan(&e, &body) {
                let done = existing.iter().any(|d| {
                    d.rule == nd.rule
                        && d.target == nd.target
                        && d.sink == nd.sink
                        && d.status != DeliveryStatus::Failed
                });
                if done && !force {
                    continue;
                }
                let mut d = nd.pending(id, next_index, now);
                d.attempts_log.push(Attempt {
                    at: crate::event::format_ms(now),
                    outcome: "replayed".into(),
                    error: None,
                });
                next_index += 1;
                new.push(d);
            }
            if !new.is_empty() {
                added += new.len();
                self.call(|tx| Job::States(new, tx))?;
            }
        }
        Ok(added)
    }

    fn prune(&self, after: u64, cutoff_ms: i64, max: usize) -> Result<retention::Pruned, LogError> {
        retention::prune(self, after, cutoff_ms, max)
    }

    fn delete(&self, id: u64) -> Result<(), retention::DeleteError> {
        retention::delete(self, id)
    }

    fn flush_blocking(&self) -> Result<(), LogError> {
        self.call(Job::Sync)
    }

    fn size_on_disk(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        entries.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()
    }

    fn probe(&self) -> Result<(), LogError> {
        use std::io::Write;
        let file = self.dir.join(".probe");
        let written = File::create(&file).and_then(|mut f| {
            // As much as a small group of events: a disk with a few bytes free is still full.
            f.write_all(&[0u8; 64 << 10])?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&file);
        written.map_err(|e| LogError::Unavailable(e.to_string()))
    }

    fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }
}
