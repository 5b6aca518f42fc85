//! What the segment log keeps in memory: where each event's frames are,
//! each event's status, the dedup keys, the open deliveries with their due
//! queue and ordering keys, the failed deliveries, the claims, and recently
//! appended events ready for delivery (so dispatch never reads back what
//! ingest just wrote).
//!
//! The index is rebuilt from the frames' headers when the log opens and
//! changed only by the writer, after its frames are written.

use super::segment::Pos;
use crate::storage::record::{DeliveryStatus, DeliveryV1, EventStatus};
use crate::storage::{DeliveryKey, Room, StoredEvent};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Where an event's frames are, and its status, in 16 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The `EVENT` frame; 0 once removed.
    event: u64,
    /// Status in the top 4 bits, the latest `STATES` frame (0: none) below.
    state: u64,
}

/// Slots per chunk of `Slots` (1 MiB).
const CHUNK: usize = 1 << 16;

/// The slots of consecutive ids, in fixed-size chunks: the index grows by
/// one chunk at a time instead of doubling a vector (which for a million
/// events held 16 MiB and copied it into a new 32 MiB at once), and
/// dropping the oldest slots frees whole chunks without moving the rest.
#[derive(Default)]
struct Slots {
    chunks: VecDeque<Vec<Slot>>,
    /// Slots of the first chunk already dropped.
    skip: usize,
    len: usize,
}

impl Slots {
    fn len(&self) -> usize {
        self.len
    }
    fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn at(&self, i: usize) -> (usize, usize) {
        let i = i + self.skip;
        (i / CHUNK, i % CHUNK)
    }
    fn get(&self, i: usize) -> Option<&Slot> {
        let (c, at) = self.at(i);
        (i < self.len).then(|| self.chunks.get(c)?.get(at)).flatten()
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut Slot> {
        let (c, at) = self.at(i);
        if i >= self.len {
            return None;
        }
        self.chunks.get_mut(c)?.get_mut(at)
    }
    fn push(&mut self, slot: Slot) {
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push_back(Vec::with_capacity(CHUNK));
        }
        self.chunks.back_mut().expect("pushed above").push(slot);
        self.len += 1;
    }
    /// Drops the first `n` slots.
    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.skip += n;
        self.len -= n;
        while self.skip >= CHUNK {
            self.chunks.pop_front();
            self.skip -= CHUNK;
        }
    }
    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.chunks.iter().flatten().skip(self.skip)
    }
}

const STATUS_SHIFT: u32 = 60;
const POS_MASK: u64 = (1 << STATUS_SHIFT) - 1;

fn status_code(s: Option<EventStatus>) -> u64 {
    match s {
        None => 0,
        Some(EventStatus::Pending) => 1,
        Some(EventStatus::Failed) => 2,
        Some(EventStatus::Delivered) => 3,
        Some(EventStatus::Unrouted) => 4,
    }
}

fn code_status(c: u64) -> Option<EventStatus> {
    Some(match c {
        1 => EventStatus::Pending,
        2 => EventStatus::Failed,
        3 => EventStatus::Delivered,
        4 => EventStatus::Unrouted,
        _ => return None,
    })
}

/// The event-id range of a segment's `EVENT` frames, and how many of them are not removed.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentInfo {
    pub live: u64,
}

/// The dedup keys found by the open scan, sorted by fingerprint: 12
/// bytes a key (a million keys: 11 MiB, where a hash map takes ~40), and
/// a binary search to find one. Keys added later go to a hash map.
#[derive(Default)]
struct SortedKeys {
    keys: Vec<SortedKey>,
    /// The id an offset of 1 stands for (the first id the scan pushed).
    base: u64,
}

/// A fingerprint and its event's id as an offset from `SortedKeys::base`
/// plus one (0: removed). Packed: 12 bytes, not 16.
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct SortedKey {
    fingerprint: u64,
    offset: u32,
}

impl SortedKeys {
    /// Adds a key found by the scan (ids come in order); false when its id
    /// is too far from the first for an offset (the caller keeps it elsewhere).
    fn push(&mut self, fingerprint: u64, id: u64) -> bool {
        if self.keys.is_empty() {
            self.base = id;
        }
        let Some(offset) = id.checked_sub(self.base).and_then(|o| u32::try_from(o + 1).ok()) else {
            return false;
        };
        self.keys.push(SortedKey { fingerprint, offset });
        true
    }

    /// Sorts what the scan pushed: of the entries of one fingerprint (in
    /// log order, the sort is stable) the last one is what stands, the
    /// latest id or a removal. In place: no second array of every key.
    fn sort(&mut self) {
        self.keys.sort_by_key(|k| k.fingerprint);
        self.keys.dedup_by(|later, kept| {
            let same = { later.fingerprint } == { kept.fingerprint };
            if same {
                kept.offset = later.offset;
            }
            same
        });
        self.keys.retain(|k| k.offset != 0);
        self.keys.shrink_to_fit();
    }

    fn get(&self, fingerprint: u64) -> Option<u64> {
        let at = self.keys.binary_search_by_key(&fingerprint, |k| k.fingerprint).ok()?;
        let offset = self.keys[at].offset;
        (offset != 0).then(|| self.base + u64::from(offset) - 1)
    }

    /// Event `id` is removed. While the scan runs the removal is an entry
    /// of its own (sorted after the id's, so it wins).
    fn remove(&mut self, fingerprint: u64, id: u64, scanning: bool) {
        if scanning {
            if !self.keys.is_empty() {
                self.keys.push(SortedKey { fingerprint, offset: 0 });
            }
        } else if let Ok(at) = self.keys.binary_search_by_key(&fingerprint, |k| k.fingerprint) {
            if self.get(fingerprint) == Some(id) {
                self.keys[at].offset = 0;
            }
        }
    }
}

pub struct Index {
    /// Id of `slots[0]`.
    base: u64,
    slots: Slots,
    pub last_id: u64,
    /// Dedup keys found when the log opened, sorted by fingerprint.
    dedup_sorted: SortedKeys,
    /// Dedup keys added since.
    dedup: HashMap<u64, u64>,
    /// While the open scan runs, keys go to `dedup_sorted` (sorted at the end).
    scanning: bool,
    open: BTreeMap<DeliveryKey, DeliveryV1>,
    /// Open deliveries by when they are due, one queue per sink: a sink
    /// with no room (all its slots busy) is passed over without touching
    /// its queue, so it holds neither the others nor the claim's time.
    due: HashMap<String, BTreeSet<(i64, DeliveryKey)>>,
    order: HashMap<(String, String), BTreeSet<DeliveryKey>>,
    failed: BTreeSet<DeliveryKey>,
    claimed: HashSet<DeliveryKey>,
    hot: HashMap<u64, Arc<StoredEvent>>,
    hot_ids: VecDeque<u64>,
    hot_cap: usize,
    pub segments: BTreeMap<u32, SegmentInfo>,
}

impl Index {
    pub fn new(hot_cap: usize) -> Self {
        Self {
            base: 1,
            slots: Slots::default(),
            last_id: 0,
            dedup_sorted: SortedKeys::default(),
            dedup: HashMap::new(),
            scanning: false,
            open: BTreeMap::new(),
            due: HashMap::new(),
            order: HashMap::new(),
            failed: BTreeSet::new(),
            claimed: HashSet::new(),
            hot: HashMap::new(),
            hot_ids: VecDeque::new(),
            hot_cap,
            segments: BTreeMap::new(),
        }
    }

    fn slot(&self, id: u64) -> Option<&Slot> {
        self.slots.get(id.checked_sub(self.base)? as usize)
    }
    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        self.slots.get_mut(id.checked_sub(self.base)? as usize)
    }

    /// The `EVENT` frame of a logged (not removed) event.
    pub fn event_pos(&self, id: u64) -> Option<Pos> {
        self.slot(id).filter(|s| s.event != 0).map(|s| Pos(s.event))
    }
    /// The latest `STATES` frame of an event, if it has one.
    pub fn state_pos(&self, id: u64) -> u64 {
        self.slot(id).map_or(0, |s| s.state & POS_MASK)
    }
    pub fn status(&self, id: u64) -> Option<EventStatus> {
        self.slot(id).filter(|s| s.event != 0).and_then(|s| code_status(s.state >> STATUS_SHIFT))
    }
    fn set_status(&mut self, id: u64, status: Option<EventStatus>) {
        if let Some(s) = self.slot_mut(id) {
            s.state = (s.state & POS_MASK) | (status_code(status) << STATUS_SHIFT);
        }
    }

    /// The first id still in the index (ids below were removed for good).
    pub fn first_id(&self) -> u64 {
        self.base
    }

    pub fn duplicate_of(&self, fingerprint: u64) -> Option<u64> {
        if let Some(id) = self.dedup.get(&fingerprint) {
            return Some(*id);
        }
        self.dedup_sorted.get(fingerprint)
    }

    /// The open scan starts: dedup keys are collected for sorting.
    pub fn begin_scan(&mut self) {
        self.scanning = true;
    }

    /// The open scan is done: the collected dedup keys are sorted (the
    /// latest id of a fingerprint wins).
    pub fn end_scan(&mut self) {
        self.scanning = false;
        self.dedup_sorted.sort();
    }

    /// A new event at `pos` (ids come in order).
    #[allow(clippy::cast_possible_truncation)]
    pub fn add_event(&mut self, id: u64, pos: Pos, fingerprint: u64, deliveries: &[DeliveryV1]) {
        if self.slots.is_empty() && self.last_id == 0 {
            self.base = id;
        }
        // Ids only grow; a frame that says otherwise is damage, not an event.
        let Some(at) = id.checked_sub(self.base).map(|a| a as usize).filter(|a| *a >= self.slots.len()) else {
            tracing::error!(id, "Ignoring an event frame whose id is out of order.");
            return;
        };
        while self.slots.len() < at {
            self.slots.push(Slot::default());
        }
        self.slots.push(Slot { event: pos.0, state: 0 });
        self.last_id = self.last_id.max(id);
        // While the scan runs keys go to the sorted array, unless too far.
        if fingerprint != 0 && !(self.scanning && self.dedup_sorted.push(fingerprint, id)) {
            self.dedup.insert(fingerprint, id);
        }
        self.segments.entry(pos.segment()).or_default().live += 1;
        let status = if deliveries.is_empty() { EventStatus::Unrouted } else { EventStatus::Pending };
        self.set_status(id, Some(status));
        for d in deliveries {
            self.put(d.clone());
        }
        self.refresh(id);
    }

    /// An event found by the open scan: only its header is known here;
    /// `refresh_all` settles the statuses once every frame is read.
    pub fn add_event_head(&mut self, id: u64, pos: Pos, fingerprint: u64, has_deliveries: bool) {
        self.add_event(id, pos, fingerprint, &[]);
        if has_deliveries {
            self.set_status(id, Some(EventStatus::Pending));
        }
    }

    /// Derives every event's status (after the open scan).
    pub fn refresh_all(&mut self) {
        for id in self.base..self.base + self.slots.len() as u64 {
            if self.status(id) == Some(EventStatus::Pending) {
                self.refresh(id);
            }
        }
    }

    /// Keeps an event ready for delivery (bounded: the oldest go first).
    pub fn keep_hot(&mut self, event: Arc<StoredEvent>) {
        let id = event.event.id;
        self.hot.insert(id, event);
        self.hot_ids.push_back(id);
        while self.hot_ids.len() > self.hot_cap {
            if let Some(old) = self.hot_ids.pop_front() {
                self.hot.remove(&old);
            }
        }
    }

    pub fn hot(&self, id: u64) -> Option<Arc<StoredEvent>> {
        self.hot.get(&id).cloned()
    }

    /// Stores a delivery's new state (its frame is at `pos` when written).
    pub fn put(&mut self, d: DeliveryV1) {
        let key = DeliveryKey::of(&d);
        if let Some(old) = self.open.remove(&key) {
            if let Some(queue) = self.due.get_mut(&old.sink) {
                queue.remove(&(old.next_attempt_ms.unwrap_or(i64::MIN), key));
                if queue.is_empty() {
                    self.due.remove(&old.sink);
                }
            }
            if let Some(k) = &old.order_key {
                let entry = (old.sink.clone(), k.clone());
                if let Some(set) = self.order.get_mut(&entry) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.order.remove(&entry);
                    }
                }
            }
        }
        self.claimed.remove(&key);
        if d.status == DeliveryStatus::Failed {
            self.failed.insert(key);
        } else {
            self.failed.remove(&key);
        }
        if d.status.is_open() {
            self.due.entry(d.sink.clone()).or_default().insert((d.next_attempt_ms.unwrap_or(i64::MIN), key));
            if let Some(k) = &d.order_key {
                self.order.entry((d.sink.clone(), k.clone())).or_default().insert(key);
            }
            self.open.insert(key, d);
        }
    }

    /// The event's latest `STATES` frame is at `pos`.
    pub fn set_state_pos(&mut self, id: u64, pos: Pos) {
        if let Some(s) = self.slot_mut(id) {
            s.state = (s.state & !POS_MASK) | pos.0;
            if code_status(s.state >> STATUS_SHIFT) == Some(EventStatus::Unrouted) {
                // Replay gave it deliveries.
                s.state = (s.state & POS_MASK) | (status_code(Some(EventStatus::Delivered)) << STATUS_SHIFT);
            }
        }
    }

    fn range(id: u64) -> std::ops::RangeInclusive<DeliveryKey> {
        DeliveryKey { event: id, index: 0 }..=DeliveryKey { event: id, index: u32::MAX }
    }

    /// Derives the event's status from its open and failed deliveries.
    pub fn refresh(&mut self, id: u64) {
        let Some(current) = self.status(id) else { return };
        let status = if self.open.range(Self::range(id)).next().is_some() {
            EventStatus::Pending
        } else if self.failed.range(Self::range(id)).next().is_some() {
            EventStatus::Failed
        } else if current == EventStatus::Unrouted {
            EventStatus::Unrouted
        } else {
            EventStatus::Delivered
        };
        self.set_status(id, Some(status));
        if status != EventStatus::Pending {
            self.hot.remove(&id);
        }
    }

    /// Removes an event (its frames stay until their segment goes).
    pub fn remove(&mut self, id: u64, fingerprint: u64) {
        let Some(pos) = self.event_pos(id) else { return };
        if let Some(info) = self.segments.get_mut(&pos.segment()) {
            info.live = info.live.saturating_sub(1);
        }
        if let Some(s) = self.slot_mut(id) {
            *s = Slot::default();
        }
        if fingerprint != 0 {
            if self.dedup.get(&fingerprint) == Some(&id) {
                self.dedup.remove(&fingerprint);
            }
            self.dedup_sorted.remove(fingerprint, id, self.scanning);
        }
        let keys: Vec<DeliveryKey> = self.failed.range(Self::range(id)).copied().collect();
        for k in keys {
            self.failed.remove(&k);
        }
        self.hot.remove(&id);
    }

    /// Drops the slots of removed events below the first live one (their
    /// ids are never used again).
    pub fn compact(&mut self) {
        let gone = self.slots.iter().take_while(|s| s.event == 0).count();
        if gone > 0 && gone < self.slots.len() {
            self.slots.drop_front(gone);
            self.base += gone as u64;
        }
    }

    pub fn has_open(&self, id: u64) -> bool {
        self.open.range(Self::range(id)).next().is_some()
    }

    /// Claims due deliveries, up to `limit` per sink and no more than the
    /// sink's `room` (see `EventLog::claim`).
    pub fn claim(&mut self, now_ms: i64, limit: usize, room: &Room) -> Vec<DeliveryV1> {
        let mut out = Vec::new();
        for (sink, queue) in &self.due {
            let take = room.get(sink).map_or(limit, |&r| r.min(limit));
            let mut taken = 0;
            for &(due, key) in queue {
                if due > now_ms || taken >= take {
                    break;
                }
                if self.claimed.contains(&key) {
                    continue;
                }
                let Some(d) = self.open.get(&key) else { continue };
                if let Some(k) = &d.order_key {
                    let first = self.order.get(&(d.sink.clone(), k.clone())).and_then(|s| s.first());
                    if first != Some(&key) {
                        continue;
                    }
                }
                out.push(d.clone());
                taken += 1;
            }
        }
        for d in &out {
            self.claimed.insert(DeliveryKey::of(d));
        }
        out
    }

    pub fn release(&mut self, keys: &[DeliveryKey]) {
        for k in keys {
            self.claimed.remove(k);
        }
    }

    pub fn next_due_after(&self, after_ms: i64) -> Option<i64> {
        let from = (after_ms.saturating_add(1), DeliveryKey { event: 0, index: 0 });
        self.due.values().filter_map(|queue| queue.range(from..).next().map(|(due, _)| *due)).min()
    }

    pub fn queue_depth(&self) -> usize {
        self.open.len()
    }

    /// Failed deliveries, of one event or all, oldest first.
    pub fn failed(&self, event: Option<u64>) -> Vec<DeliveryKey> {
        match event {
            Some(id) => self.failed.range(Self::range(id)).copied().collect(),
            None => self.failed.iter().copied().collect(),
        }
    }

    /// Ids of events with a failed delivery below `before`, newest first.
    pub fn failed_events_before(&self, before: u64) -> Vec<u64> {
        let mut ids: Vec<u64> = self.failed.range(..DeliveryKey { event: before, index: 0 }).map(|k| k.event).collect();
        ids.dedup();
        ids.reverse();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_grow_by_chunks_and_drop_from_the_front() {
        let mut slots = Slots::default();
        let n = 2 * CHUNK + 10;
        for i in 0..n {
            slots.push(Slot { event: i as u64 + 1, state: 0 });
        }
        assert_eq!((slots.len(), slots.chunks.len()), (n, 3));
        assert_eq!(slots.get(CHUNK).map(|s| s.event), Some(CHUNK as u64 + 1));
        assert!(slots.get(n).is_none());
        slots.drop_front(CHUNK + 5);
        assert_eq!((slots.len(), slots.chunks.len()), (n - CHUNK - 5, 2), "a whole chunk freed");
        assert_eq!(slots.get(0).map(|s| s.event), Some(CHUNK as u64 + 6));
        assert_eq!(slots.iter().next().map(|s| s.event), Some(CHUNK as u64 + 6));
        assert_eq!(slots.iter().count(), slots.len());
        slots.get_mut(0).unwrap().state = 7;
        assert_eq!(slots.get(0).unwrap().state, 7);
    }

    #[test]
    fn the_latest_dedup_key_of_a_fingerprint_wins_at_open() {
        let mut index = Index::new(0);
        index.begin_scan();
        index.add_event(1, Pos::new(1, 0), 42, &[]);
        index.add_event(2, Pos::new(1, 10), 7, &[]);
        index.add_event(3, Pos::new(1, 20), 42, &[]);
        index.remove(2, 7);
        index.end_scan();
        assert_eq!((index.duplicate_of(42), index.duplicate_of(7)), (Some(3), None));
    }

    #[test]
    fn sorted_dedup_keys_take_twelve_bytes_and_refuse_far_ids() {
        assert_eq!(std::mem::size_of::<SortedKey>(), 12);
        let mut keys = SortedKeys::default();
        assert!(keys.push(9, 10));
        assert!(keys.push(5, 11));
        // Too far from the first id for a 32-bit offset: the index keeps it in its map.
        assert!(!keys.push(6, 10 + u64::from(u32::MAX) + 5));
        keys.remove(9, 10, true);
        keys.sort();
        assert_eq!((keys.get(5), keys.get(9), keys.get(6)), (Some(11), None, None));
        keys.remove(5, 12, false);
        assert_eq!(keys.get(5), Some(11), "another id's removal leaves it");
        keys.remove(5, 11, false);
        assert_eq!(keys.get(5), None);
    }
}
