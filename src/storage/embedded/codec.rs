//! What the frames of the segment log say, and their bytes.
//!
//! Each payload starts with a kind byte and a small binary header: what
//! opening the log needs (ids, times, dedup fingerprints, delivery states)
//! is read from headers alone, without parsing JSON. The rest is JSON of
//! the records (`record.rs`), then, for an event, its raw body.
//!
//! - `EVENT`: id, received_ms, dedup fingerprint, each delivery's state,
//!   `{event, deliveries}` as JSON, the body.
//! - `STATES`: new states of some deliveries of one event, and the
//!   position of that event's previous `STATES` frame (a chain back to
//!   the event).
//! - `REMOVED`: ids and dedup fingerprints of events removed (retention, delete).
//!
//! New kinds may be added; a kind is never changed.

use crate::storage::record::{DeliveryStatus, DeliveryV1, EventV1};
use crate::storage::LogError;
use serde::{Deserialize, Serialize};

pub const EVENT: u8 = 1;
pub const STATES: u8 = 2;
pub const REMOVED: u8 = 3;

/// A delivery's state as headers carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateHead {
    pub index: u32,
    pub status: DeliveryStatus,
    /// When it is due, while open.
    pub due_ms: Option<i64>,
}

/// The JSON part of an `EVENT` frame.
#[derive(Deserialize)]
pub struct EventJson {
    pub event: EventV1,
    pub deliveries: Vec<DeliveryV1>,
}

/// A decoded frame header (and where its JSON starts).
#[derive(Debug)]
pub enum Head {
    Event { id: u64, received_ms: i64, fingerprint: u64, states: Vec<StateHead>, json: std::ops::Range<usize> },
    States { event: u64, prev: u64, states: Vec<StateHead>, json: std::ops::Range<usize> },
    Removed { ids: Vec<(u64, u64)> },
}

fn status_byte(s: DeliveryStatus) -> u8 {
    match s {
        DeliveryStatus::Pending => 0,
        DeliveryStatus::Retrying => 1,
        DeliveryStatus::Delivered => 2,
        DeliveryStatus::Skipped => 3,
        DeliveryStatus::Dropped => 4,
        DeliveryStatus::Failed => 5,
    }
}

fn byte_status(b: u8) -> Option<DeliveryStatus> {
    Some(match b {
        0 => DeliveryStatus::Pending,
        1 => DeliveryStatus::Retrying,
        2 => DeliveryStatus::Delivered,
        3 => DeliveryStatus::Skipped,
        4 => DeliveryStatus::Dropped,
        5 => DeliveryStatus::Failed,
        _ => return None,
    })
}

fn put_states(out: &mut Vec<u8>, states: &[DeliveryV1]) {
    out.extend_from_slice(&(states.len() as u32).to_le_bytes());
    for d in states {
        out.extend_from_slice(&d.index.to_le_bytes());
        out.push(status_byte(d.status));
        out.extend_from_slice(&d.next_attempt_ms.unwrap_or(i64::MIN).to_le_bytes());
    }
}

/// `EventJson` as written (borrowed: the writer keeps the event).
#[derive(Serialize)]
struct EventJsonRef<'a> {
    event: &'a EventV1,
    deliveries: &'a [DeliveryV1],
}

/// An `EVENT` payload.
pub fn event(e: &EventV1, fingerprint: u64, deliveries: &[DeliveryV1], body: &[u8]) -> Vec<u8> {
    let json = event_json(e, deliveries);
    let mut out = Vec::with_capacity(64 + deliveries.len() * 13 + json.len() + body.len());
    put_event(&mut out, e.id, e.received_ms, fingerprint, deliveries, &json, body);
    out
}

/// The JSON part of an `EVENT` frame. Appends encode it on the request's
/// thread, before the writer decides the id and the time of receipt: those
/// are in the frame header, and `read_event` takes them from there (the
/// JSON of such a frame holds 0 and "" in their place).
pub fn event_json(e: &EventV1, deliveries: &[DeliveryV1]) -> Vec<u8> {
    // Sized for a typical record (its headers), so encoding rarely regrows it.
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(&mut out, &EventJsonRef { event: e, deliveries }).expect("records serialise");
    out
}

/// Appends an `EVENT` payload, from its header fields, its JSON and the body, to `out`.
pub fn put_event(
    out: &mut Vec<u8>,
    id: u64,
    received_ms: i64,
    fingerprint: u64,
    deliveries: &[DeliveryV1],
    json: &[u8],
    body: &[u8],
) {
    out.push(EVENT);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&received_ms.to_le_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    put_states(out, deliveries);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json);
    out.extend_from_slice(body);
}

/// A `STATES` payload. `prev`: the event's previous `STATES` frame, 0 if none.
pub fn states(event: u64, prev: u64, states: &[DeliveryV1]) -> Vec<u8> {
    let text = serde_json::to_vec(states).expect("records serialise");
    let mut out = Vec::with_capacity(32 + states.len() * 13 + text.len());
    out.push(STATES);
    out.extend_from_slice(&event.to_le_bytes());
    out.extend_from_slice(&prev.to_le_bytes());
    put_states(&mut out, states);
    out.extend_from_slice(&text);
    out
}

/// A `REMOVED` payload: (id, dedup fingerprint) of each removed event.
pub fn removed(ids: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + ids.len() * 16);
    out.push(REMOVED);
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for (id, fingerprint) in ids {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&fingerprint.to_le_bytes());
    }
    out
}

/// Reads little-endian fields off a payload.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let b = self.bytes.get(self.at..self.at + N)?.try_into().ok()?;
        self.at += N;
        Some(b)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
    fn states(&mut self) -> Option<Vec<StateHead>> {
        let n = self.u32()? as usize;
        // Each state takes 13 bytes: a count beyond the payload is damage.
        if n > self.bytes.len() / 13 {
            return None;
        }
        (0..n)
            .map(|_| {
                let index = self.u32()?;
                let status = byte_status(self.u8()?)?;
                let due = self.i64()?;
                Some(StateHead { index, status, due_ms: (due != i64::MIN).then_some(due) })
            })
            .collect()
    }
}

fn bad(detail: &str) -> LogError {
    LogError::Corrupt { key: "segment frame".into(), detail: detail.into() }
}

/// Decodes a payload's header.
pub fn head(payload: &[u8]) -> Result<Head, LogError> {
    let mut c = Cursor { bytes: payload, at: 1 };
    let head = match payload.first() {
        Some(&EVENT) => (|| {
            let (id, received_ms, fingerprint) = (c.u64()?, c.i64()?, c.u64()?);
            let states = c.states()?;
            let len = c.u32()? as usize;
            let json = c.at..c.at.checked_add(len).filter(|end| *end <= payload.len())?;
            Some(Head::Event { id, received_ms, fingerprint, states, json })
        })(),
        Some(&STATES) => (|| {
            let (event, prev) = (c.u64()?, c.u64()?);
            let states = c.states()?;
            Some(Head::States { event, prev, states, json: c.at..payload.len() })
        })(),
        Some(&REMOVED) => (|| {
            let n = c.u32()? as usize;
            (n <= payload.len() / 16).then_some(())?;
            Some(Head::Removed { ids: (0..n).map(|_| Some((c.u64()?, c.u64()?))).collect::<Option<_>>()? })
        })(),
        _ => None,
    };
    head.ok_or_else(|| bad("unknown kind or short header"))
}

/// The record and body of an `EVENT` payload.
pub fn read_event(payload: &[u8]) -> Result<(EventJson, &[u8]), LogError> {
    let Head::Event { id, received_ms, json, .. } = head(payload)? else { return Err(bad("not an event frame")) };
    let mut parsed: EventJson = serde_json::from_slice(&payload[json.clone()]).map_err(|e| bad(&e.to_string()))?;
    // The header is authoritative for what the writer decided (see `event_json`).
    parsed.event.id = id;
    parsed.event.received_ms = received_ms;
    if parsed.event.received_at.is_empty() {
        parsed.event.received_at = crate::event::format_ms(received_ms);
    }
    // As first written, each delivery is due when its event was received
    // (the writer set it so after the JSON was built): a restart must not
    // make a batch waiting for company look overdue.
    for d in &mut parsed.deliveries {
        (d.event, d.next_attempt_ms) = (id, Some(received_ms));
    }
    Ok((parsed, &payload[json.end..]))
}

/// The delivery records of a `STATES` payload, and the previous frame's position.
pub fn read_states(payload: &[u8]) -> Result<(u64, Vec<DeliveryV1>), LogError> {
    let Head::States { prev, json, .. } = head(payload)? else { return Err(bad("not a states frame")) };
    let parsed = serde_json::from_slice(&payload[json]).map_err(|e| bad(&e.to_string()))?;
    Ok((prev, parsed))
}

/// The dedup fingerprint of `(route, event_id)`: 8 bytes of SHA-256, so it
/// is the same in every build (it is stored).
pub fn fingerprint(route: &str, event_id: &str) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(event_id.as_bytes());
    let digest = h.finalize();
    // 0 means "no dedup key".
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default()).max(1)
}
