//! Group commit: the one thread that writes the segment log.
//!
//! Requests, the dispatcher and maintenance hand their writes to the
//! `log-writer` thread. It takes everything queued so far, encodes it as
//! frames into one buffer (assigning ids and checking dedup keys under the
//! index lock), writes the buffer with one `write`, runs one `fdatasync`
//! if any of it must be durable before its answer, and only then updates
//! the index and answers: concurrent requests share one sync, an idle
//! router adds no delay, and nothing is visible before it is on disk.
//!
//! A failed write or sync is cut back off the file, so the log stays a
//! clean sequence of frames and takes writes again once the disk does.

use super::codec;
use super::index::Index;
use super::segment::{self, Pos, SEGMENT_BYTES};
use crate::event::{format_ms, now_ms};
use crate::storage::record::{DeliveryV1, EventV1};
use crate::storage::{Appended, LogError, NewDelivery, NewEvent, Parsed, StoredEvent};
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::oneshot;

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

// Appends are the hot path: boxing them would cost an allocation per
// request to save bytes on a queue that is almost always short.
#[allow(clippy::large_enum_variant)]
pub enum Job {
    Append(Prepared, Reply<Appended>),
    /// New states of deliveries; durable with the next sync.
    States(Vec<DeliveryV1>, Reply<()>),
    /// Events removed: (id, dedup fingerprint).
    Remove(Vec<(u64, u64)>, Reply<()>),
    /// Only a sync: covers everything written before it.
    Sync(Reply<()>),
}

/// An event made ready for the writer on the appending thread: its record
/// and pending deliveries, their JSON already encoded. The writer only
/// decides the id and the time of receipt (frame header fields).
pub struct Prepared {
    record: EventV1,
    deliveries: Vec<DeliveryV1>,
    json: Vec<u8>,
    fingerprint: u64,
    body: bytes::Bytes,
    payload: Parsed,
}

impl Prepared {
    pub fn new(event: NewEvent, planned: Vec<NewDelivery>) -> Self {
        let fingerprint = match (&event.event_id, event.dedup) {
            (Some(id), true) => codec::fingerprint(&event.route, id),
            _ => 0,
        };
        let record = EventV1 {
            id: 0,
            route: event.route,
            event_type: event.event_type,
            event_id: event.event_id,
            event_time: event.event_time,
            received_at: String::new(),
            received_ms: 0,
            params: event.params,
            query: event.query,
            headers: event.headers,
            deliveries: planned.len() as u32,
        };
        let deliveries: Vec<DeliveryV1> =
            planned.into_iter().enumerate().map(|(i, nd)| nd.pending(0, i as u32, 0)).collect();
        let json = codec::event_json(&record, &deliveries);
        Self { record, deliveries, json, fingerprint, body: event.body, payload: event.payload }
    }
}

/// What the index learns once a group is written.
enum Apply {
    Event { id: u64, pos: Pos, fingerprint: u64, deliveries: Vec<DeliveryV1>, hot: Option<Arc<StoredEvent>> },
    States { event: u64, pos: Pos, states: Vec<DeliveryV1> },
    Removed { ids: Vec<(u64, u64)> },
}

/// An answer owed once the group is written.
enum Owed {
    Appended(Reply<Appended>, Appended),
    Done(Reply<()>),
}

pub struct Writer {
    pub dir: PathBuf,
    pub index: Arc<Mutex<Index>>,
    pub segment: u32,
    pub file: File,
    pub len: u64,
    /// Test hook: fail every write.
    pub fail: Arc<AtomicBool>,
}

impl Writer {
    pub fn run(mut self, rx: mpsc::Receiver<Job>) {
        // A dead disk fails every group: say so once per interval, not per group.
        let faults = crate::telemetry::fault::Fault::default();
        while let Ok(first) = rx.recv() {
            let jobs: Vec<Job> = std::iter::once(first).chain(rx.try_iter()).collect();
            match self.group(jobs) {
                Ok(()) => _ = faults.ok(),
                Err(e) => {
                    if let Some(times) = faults.failed() {
                        tracing::error!(error = %e, times, "Event log write failed; requests get 503.");
                    }
                }
            }
        }
    }

    fn group(&mut self, jobs: Vec<Job>) -> Result<(), LogError> {
        let mut owed = Vec::with_capacity(jobs.len());
        let mut applies = Vec::with_capacity(jobs.len());
        let (buf, sync) = match self.roll() {
            Ok(()) => self.encode(jobs, &mut owed, &mut applies),
            Err(e) => {
                fail_all(owed_of(jobs), &e);
                return Err(e);
            }
        };
        if let Err(e) = self.write(&buf, sync) {
            fail_all(owed, &e);
            return Err(e);
        }
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        for apply in applies {
            match apply {
                Apply::Event { id, pos, fingerprint, deliveries, hot } => {
                    index.add_event(id, pos, fingerprint, &deliveries);
                    if let Some(hot) = hot {
                        index.keep_hot(hot);
                    }
                }
                Apply::States { event, pos, states } => {
                    index.set_state_pos(event, pos);
                    for d in states {
                        index.put(d);
                    }
                    index.refresh(event);
                }
                Apply::Removed { ids } => {
                    for (id, fingerprint) in ids {
                        index.remove(id, fingerprint);
                    }
                    index.compact();
                }
            }
        }
        drop(index);
        for o in owed {
            match o {
                Owed::Appended(reply, answer) => _ = reply.send(Ok(answer)),
                Owed::Done(reply) => _ = reply.send(Ok(())),
            }
        }
        Ok(())
    }

    /// Starts the next segment once this one is full (the full one is synced first).
    fn roll(&mut self) -> Result<(), LogError> {
        if self.len < SEGMENT_BYTES {
            return Ok(());
        }
        self.file.sync_data().map_err(unavailable)?;
        let next = self.segment + 1;
        self.file = segment::create(&self.dir, next).map_err(unavailable)?;
        self.segment = next;
        self.len = 0;
        Ok(())
    }

    /// Encodes a group's frames (ids and dedup decided under the index
    /// lock); returns the bytes and whether they must be synced.
    fn encode(&self, jobs: Vec<Job>, owed: &mut Vec<Owed>, applies: &mut Vec<Apply>) -> (Vec<u8>, bool) {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        // About a frame of a typical event per job: one allocation per group.
        let mut buf = Vec::with_capacity(jobs.len() * 2048);
        let mut sync = false;
        let mut next_id = index.last_id;
        let mut in_group: HashMap<u64, u64> = HashMap::new();
        let mut last_state: HashMap<u64, u64> = HashMap::new();
        let now = now_ms();
        let received_at = format_ms(now);
        let pos = |buf: &Vec<u8>| Pos::new(self.segment, (self.len + buf.len() as u64) as u32);
        for job in jobs {
            match job {
                Job::Append(event, reply) => {
                    sync = true;
                    let Prepared { mut record, mut deliveries, json, fingerprint, body, payload } = event;
                    if fingerprint != 0 {
                        if let Some(id) =
                            in_group.get(&fingerprint).copied().or_else(|| index.duplicate_of(fingerprint))
                        {
                            owed.push(Owed::Appended(reply, Appended::Duplicate(id)));
                            continue;
                        }
                    }
                    next_id += 1;
                    let id = next_id;
                    (record.id, record.received_ms, record.received_at) = (id, now, received_at.clone());
                    for d in &mut deliveries {
                        (d.event, d.next_attempt_ms) = (id, Some(now));
                    }
                    let at = pos(&buf);
                    segment::frame_with(&mut buf, |out| {
                        codec::put_event(out, id, now, fingerprint, &deliveries, &json, &body)
                    });
                    if fingerprint != 0 {
                        in_group.insert(fingerprint, id);
                    }
                    let hot = (!deliveries.is_empty()).then(|| Arc::new(StoredEvent::new(record, body, payload)));
                    applies.push(Apply::Event { id, pos: at, fingerprint, deliveries, hot });
                    owed.push(Owed::Appended(reply, Appended::New(id)));
                }
                Job::States(states, reply) => {
                    // One frame per event, events in the order they came.
                    let mut by_event: Vec<(u64, Vec<DeliveryV1>)> = Vec::new();
                    let mut slot_of: HashMap<u64, usize> = HashMap::new();
                    for d in states {
                        match slot_of.get(&d.event) {
                            Some(&i) => by_event[i].1.push(d),
                            None => {
                                slot_of.insert(d.event, by_event.len());
                                by_event.push((d.event, vec![d]));
                            }
                        }
                    }
                    for (event, states) in by_event {
                        let prev = last_state.get(&event).copied().unwrap_or_else(|| index.state_pos(event));
                        let at = pos(&buf);
                        segment::frame(&mut buf, &codec::states(event, prev, &states));
                        last_state.insert(event, at.0);
                        applies.push(Apply::States { event, pos: at, states });
                    }
                    owed.push(Owed::Done(reply));
                }
                Job::Remove(ids, reply) => {
                    segment::frame(&mut buf, &codec::removed(&ids));
                    applies.push(Apply::Removed { ids });
                    owed.push(Owed::Done(reply));
                }
                Job::Sync(reply) => {
                    sync = true;
                    owed.push(Owed::Done(reply));
                }
            }
        }
        (buf, sync)
    }

    fn write(&mut self, buf: &[u8], sync: bool) -> Result<(), LogError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(LogError::Unavailable("writes disabled (test hook)".into()));
        }
        if !buf.is_empty() {
            segment::append(&mut self.file, self.len, buf).map_err(unavailable)?;
        }
        if sync {
            if let Err(e) = self.file.sync_data() {
                // What the failed sync covered may not be on disk: cut it
                // off, so the answers (errors) match the file.
                let _ = self.file.set_len(self.len);
                return Err(unavailable(e));
            }
        }
        self.len += buf.len() as u64;
        Ok(())
    }
}

fn unavailable(e: std::io::Error) -> LogError {
    LogError::Unavailable(e.to_string())
}

fn owed_of(jobs: Vec<Job>) -> Vec<Owed> {
    jobs.into_iter()
        .map(|j| match j {
            // The answer is never sent: `fail_all` answers with the error.
            Job::Append(_, reply) => Owed::Appended(reply, Appended::New(0)),
            Job::States(_, reply) | Job::Remove(_, reply) | Job::Sync(reply) => Owed::Done(reply),
        })
        .collect()
}

fn fail_all(owed: Vec<Owed>, e: &LogError) {
    for o in owed {
        match o {
            Owed::Appended(reply, _) => _ = reply.send(Err(e.clone())),
            Owed::Done(reply) => _ = reply.send(Err(e.clone())),
        }
    }
}
