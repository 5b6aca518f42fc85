//! The store sink's records on disk: a log of whole-record writes in
//! `<data>/records/`, with the latest position of every key in memory
//! (the Bitcask design: one `pread` per read, one append per write).
//!
//! Frames are the segment log's (`segment`): length, CRC32C, payload; a
//! payload is `[tree len u16][tree][key len u32][key][value]`, and the
//! last frame of a key wins. Writes go to the file as they are made (so
//! reads see them) and become durable at `sync`, which the dispatcher calls
//! once per delivery round before it records the outcomes. When a sync
//! fails, what was written since the last good sync is cut off again and
//! the keys are re-read from disk: the store never answers with a record
//! that a crash could take back, and it takes writes again once the disk
//! does. Segments that are mostly overwritten records are compacted: their
//! live records are copied forward, then the file is deleted.

use super::segment::{self, Pos};
use crate::storage::LogError;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A records segment is closed once it is this long. Small, so that
/// compacting one (under the lock) is a short pause.
const SEGMENT_BYTES: u64 = 8 << 20;
/// A closed segment whose live records take less than this share of it is
/// compacted.
const COMPACT_BELOW: f64 = 0.5;
/// Keys read per lock when listing.
const LIST_BATCH: usize = 512;
/// Pending frames past this are handed to the file before the sync (a
/// bound on the memory a long round holds).
const PENDING_BYTES: usize = 1 << 20;

/// The directory of the records inside a data directory.
pub fn records_dir(data: &Path) -> PathBuf {
    data.join("records")
}

/// Which write a read saw: pass it back to `put` to write only if no other
/// write came in between (compare and swap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(Pos);

/// How many times writes were undone (after a failed write or sync). A
/// caller that wrote at one epoch and syncs at another lost some of its
/// writes: `sync_since` tells it, so it redoes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

#[derive(Debug, Clone, Copy)]
struct Entry {
    pos: Pos,
    /// Frame length, header included.
    len: u32,
}

pub struct RecordLog {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Segment {
    /// For reads (`pread`).
    file: Arc<File>,
    size: u64,
    /// Bytes that are the latest write of their key.
    live: u64,
}

struct Inner {
    trees: HashMap<String, BTreeMap<String, Entry>>,
    segments: BTreeMap<u32, Segment>,
    active: u32,
    writer: File,
    /// Length of the active segment, `pending` included.
    len: u64,
    /// Frames of the active segment not yet handed to the file: a round's
    /// writes go to disk in one `write` at its sync, not one per record.
    /// They start at offset `len - pending.len()`.
    pending: Vec<u8>,
    /// Segments written since the last sync, with their length at it.
    unsynced: Vec<(u32, u64)>,
    /// A failed sync could not be undone: nothing is answered until reopen.
    broken: Option<String>,
    /// Roll-backs so far (`Epoch`).
    undone: u64,
    fail_syncs: bool,
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("records: {e}"))
}

impl RecordLog {
    /// Opens (or creates) the records in `dir`; a torn tail is cut off and
    /// reported (returns the bytes dropped).
    pub fn open(dir: &Path) -> Result<(Self, u64), LogError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let (inner, dropped) = Inner::load(dir)?;
        if dropped > 0 {
            tracing::warn!(dir = %dir.display(), bytes = dropped, "Cut a torn tail off the records (a write the crash interrupted, never acknowledged).");
        }
        Ok((Self { dir: dir.to_path_buf(), inner: Mutex::new(inner) }, dropped))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record under `key` and the version read.
    pub fn get(&self, tree: &str, key: &str) -> Result<Option<(Version, Vec<u8>)>, LogError> {
        let (entry, at) = {
            let inner = self.lock();
            inner.usable()?;
            let Some(entry) = inner.trees.get(tree).and_then(|t| t.get(key)).copied() else { return Ok(None) };
            (entry, inner.locate(entry)?)
        };
        Ok(Some((Version(entry.pos), at.value(entry)?)))
    }

    /// Writes `value` under `key` if the key is still at `seen` (`None`:
    /// still absent); returns whether it wrote. Durable at the next `sync`.
    pub fn put(&self, tree: &str, key: &str, seen: Option<Version>, value: &[u8]) -> Result<bool, LogError> {
        let mut inner = self.lock();
        inner.usable()?;
        let now = inner.trees.get(tree).and_then(|t| t.get(key)).map(|e| Version(e.pos));
        if now != seen {
            return Ok(false);
        }
        inner.write(&self.dir, tree, key, value)?;
        Ok(true)
    }

    /// Up to `limit` records of `tree` in key order after `after`, keeping
    /// those `keep` accepts (it sees the key and the stored bytes).
    pub fn list<T>(
        &self,
        tree: &str,
        after: Option<&str>,
        limit: usize,
        mut keep: impl FnMut(&str, Vec<u8>) -> Option<T>,
    ) -> Result<Vec<T>, LogError> {
        let mut out = Vec::new();
        let mut from: Bound<String> = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        loop {
            let batch: Vec<(String, Entry, At)> = {
                let inner = self.lock();
                inner.usable()?;
                let Some(t) = inner.trees.get(tree) else { break };
                let mut batch = Vec::new();
                for (k, e) in t.range((from.clone(), Bound::Unbounded)).take(LIST_BATCH) {
                    batch.push((k.clone(), *e, inner.locate(*e)?));
                }
                batch
            };
            let Some((last, _, _)) = batch.last() else { break };
            from = Bound::Excluded(last.clone());
            for (k, e, at) in batch {
                let value = at.value(e)?;
                if let Some(item) = keep(&k, value) {
                    out.push(item);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The current epoch: take it before writing, pass it to `sync_since`.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.lock().undone)
    }

    /// Makes every write so far durable. On failure the writes since the
    /// last sync are undone (the callers redo them), and the store takes
    /// writes again once the disk does. Then compacts one segment if one
    /// is mostly dead.
    pub fn sync(&self) -> Result<(), LogError> {
        self.sync_checked(None)
    }

    /// As `sync`, and fails if any write made since `epoch` was undone in
    /// between (by another caller's failed sync): the caller redoes them.
    pub fn sync_since(&self, epoch: Epoch) -> Result<(), LogError> {
        self.sync_checked(Some(epoch))
    }

    fn sync_checked(&self, since: Option<Epoch>) -> Result<(), LogError> {
        let mut inner = self.lock();
        inner.usable()?;
        if let Err(e) = inner.sync_unsynced() {
            inner.roll_back(&self.dir);
            return Err(unavailable(e));
        }
        if since.is_some_and(|Epoch(n)| n != inner.undone) {
            return Err(unavailable("writes made since were undone after a failed write; they run again"));
        }
        if let Err(e) = inner.compact_one(&self.dir) {
            // Nothing is lost (the old segment stays); the copies are undone.
            tracing::warn!(error = %e, "Compacting the records failed; will try again.");
            inner.roll_back(&self.dir);
        }
        Ok(())
    }

    /// Bytes the records take on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.lock().segments.values().map(|s| s.size).sum()
    }

    /// Test hook: every sync fails as on a full disk.
    pub fn set_fail_syncs(&self, fail: bool) {
        self.lock().fail_syncs = fail;
    }
}

impl Inner {
    /// Reads every segment of `dir`: the latest position of each key, and
    /// the live bytes per segment. Cuts a torn tail off the last segment.
    fn load(dir: &Path) -> Result<(Self, u64), LogError> {
        let mut numbers = segment::list(dir).map_err(unavailable)?;
        if numbers.is_empty() {
            segment::create(dir, 1).map_err(unavailable)?;
            numbers.push(1);
        }
        let mut trees: HashMap<String, BTreeMap<String, Entry>> = HashMap::new();
        let mut live: HashMap<u32, u64> = HashMap::new();
        let mut segments = BTreeMap::new();
        let mut dropped = 0;
        let mut len = 0;
        for (i, &n) in numbers.iter().enumerate() {
            let path = segment::path(dir, n);
            let scanned = segment::scan(&path, |offset, payload| {
                let Some((tree, key, _)) = split(payload) else { return };
                let entry = Entry { pos: Pos::new(n, offset), len: (segment::HEADER + payload.len()) as u32 };
                *live.entry(n).or_default() += u64::from(entry.len);
                if let Some(old) = trees.entry(tree.to_string()).or_default().insert(key.to_string(), entry) {
                    *live.entry(old.pos.segment()).or_default() -= u64::from(old.len);
                }
            })
            .map_err(unavailable)?;
            if scanned.dropped > 0 {
                if i + 1 < numbers.len() {
                    return Err(LogError::Unavailable(format!(
                        "records: {} is damaged at byte {} (not the newest segment); restore it from a backup",
                        path.display(),
                        scanned.valid_len
                    )));
                }
                segment::truncate(&path, scanned.valid_len).map_err(unavailable)?;
                dropped = scanned.dropped;
            }
            len = scanned.valid_len;
            let file = Arc::new(File::open(&path).map_err(unavailable)?);
            segments.insert(n, Segment { file, size: scanned.valid_len, live: 0 });
        }
        for (n, bytes) in live {
            if let Some(s) = segments.get_mut(&n) {
                s.live = bytes;
            }
        }
        let active = *numbers.last().expect("one segment at least");
        let writer = segment::open_append(dir, active).map_err(unavailable)?;
        let inner = Self {
            trees,
            segments,
            active,
            writer,
            len,
            pending: Vec::new(),
            unsynced: Vec::new(),
            broken: None,
            undone: 0,
            fail_syncs: false,
        };
        Ok((inner, dropped))
    }

    fn usable(&self) -> Result<(), LogError> {
        match &self.broken {
            Some(why) => Err(LogError::Unavailable(format!("records: {why} (restart the router)"))),
            None => Ok(()),
        }
    }

    /// Where the frame at `entry` can be read: still in `pending` (its
    /// value copied out under the lock), or in its segment's file (read
    /// after the lock is let go).
    fn locate(&self, entry: Entry) -> Result<At, LogError> {
        let flushed = self.flushed();
        if entry.pos.segment() == self.active && u64::from(entry.pos.offset()) >= flushed {
            let from = (u64::from(entry.pos.offset()) - flushed) as usize;
            let payload = self.pending.get(from + segment::HEADER..from + entry.len as usize);
            let value = payload.and_then(split).map(|(_, _, value)| At::Value(value.to_vec()));
            return value.ok_or_else(|| unavailable("a pending record does not parse"));
        }
        let segment = entry.pos.segment();
        let file = self.segments.get(&segment).map(|s| s.file.clone());
        file.map(At::File).ok_or_else(|| unavailable(format!("segment {segment} is gone")))
    }

    /// Where `pending` starts: the active segment's length on file.
    fn flushed(&self) -> u64 {
        self.len - self.pending.len() as u64
    }

    /// Hands the pending frames to the file (one `write`).
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let at = self.flushed();
            segment::append(&mut self.writer, at, &self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    /// Appends one record to the active segment (starting a new one when
    /// it is full) and points its key at it.
    fn write(&mut self, dir: &Path, tree: &str, key: &str, value: &[u8]) -> Result<(), LogError> {
        if self.len >= SEGMENT_BYTES {
            self.start_segment(dir)?;
        }
        if !self.unsynced.iter().any(|(n, _)| *n == self.active) {
            self.unsynced.push((self.active, self.flushed()));
        }
        let start = self.pending.len();
        segment::frame_with(&mut self.pending, |out| {
            out.extend_from_slice(&(tree.len() as u16).to_le_bytes());
            out.extend_from_slice(tree.as_bytes());
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(value);
        });
        let frame_len = self.pending.len() - start;
        let entry = Entry { pos: Pos::new(self.active, self.len as u32), len: frame_len as u32 };
        self.len += frame_len as u64;
        if let Some(s) = self.segments.get_mut(&self.active) {
            s.size = self.len;
            s.live += u64::from(entry.len);
        }
        // A key written before (the usual case) is updated without copying its name.
        let keys = match self.trees.get_mut(tree) {
            Some(keys) => keys,
            None => self.trees.entry(tree.to_string()).or_default(),
        };
        let old = match keys.get_mut(key) {
            Some(at) => Some(std::mem::replace(at, entry)),
            None => keys.insert(key.to_string(), entry),
        };
        if let Some(s) = old.and_then(|old| Some((self.segments.get_mut(&old.pos.segment())?, old.len))) {
            s.0.live -= u64::from(s.1);
        }
        if self.pending.len() >= PENDING_BYTES {
            if let Err(e) = self.flush() {
                // As after a failed sync: back to what is known to be on disk.
                self.roll_back(dir);
                return Err(unavailable(e));
            }
        }
        Ok(())
    }

    /// Closes the active segment (synced first, so that only the newest
    /// segment can ever end in a torn frame) and starts the next.
    fn start_segment(&mut self, dir: &Path) -> Result<(), LogError> {
        if let Err(e) = self.sync_unsynced() {
            // As after any failed sync: back to what is known to be on disk.
            self.roll_back(dir);
            return Err(unavailable(e));
        }
        let next = self.active + 1;
        let writer = segment::create(dir, next).map_err(unavailable)?;
        let reader = File::open(segment::path(dir, next)).map_err(unavailable)?;
        self.segments.insert(next, Segment { file: Arc::new(reader), size: 0, live: 0 });
        self.unsynced.push((next, 0));
        self.writer = writer;
        self.active = next;
        self.len = 0;
        Ok(())
    }

    fn sync_unsynced(&mut self) -> std::io::Result<()> {
        if self.fail_syncs && !self.unsynced.is_empty() {
            return Err(std::io::Error::other("No space left on device (test hook)"));
        }
        self.flush()?;
        for (n, _) in &self.unsynced {
            if let Some(s) = self.segments.get(n) {
                s.file.sync_data()?;
            }
        }
        self.unsynced.clear();
        Ok(())
    }

    /// Cuts every unsynced segment back to its length at the last sync and
    /// re-reads the keys from disk. If even that fails, the store refuses
    /// to answer until it is reopened (the recovery supervisor restarts
    /// the router in place once the disk takes writes).
    fn roll_back(&mut self, dir: &Path) {
        let undone =
            self.unsynced.drain(..).try_for_each(|(n, synced)| segment::truncate(&segment::path(dir, n), synced));
        let reloaded = undone.map_err(unavailable).and_then(|()| Self::load(dir));
        match reloaded {
            Ok((fresh, _)) => {
                let (fail_syncs, undone) = (self.fail_syncs, self.undone + 1);
                *self = fresh;
                (self.fail_syncs, self.undone) = (fail_syncs, undone);
            }
            Err(e) => self.broken = Some(format!("a failed sync could not be undone: {e}")),
        }
    }

    /// Copies the live records of the emptiest closed segment (if it is
    /// below `COMPACT_BELOW`) to the active one, syncs them, and deletes it.
    fn compact_one(&mut self, dir: &Path) -> std::io::Result<()> {
        let sparse = self
            .segments
            .iter()
            .filter(|(&n, _)| n != self.active)
            .map(|(&n, s)| (n, s.live as f64 / s.size.max(1) as f64))
            .filter(|(_, share)| *share < COMPACT_BELOW)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((n, _)) = sparse else { return Ok(()) };
        let path = segment::path(dir, n);
        let mut keep: Vec<(String, String, Vec<u8>)> = Vec::new();
        segment::scan(&path, |offset, payload| {
            let Some((tree, key, value)) = split(payload) else { return };
            let current = self.trees.get(tree).and_then(|t| t.get(key)).map(|e| e.pos);
            if current == Some(Pos::new(n, offset)) {
                keep.push((tree.to_string(), key.to_string(), value.to_vec()));
            }
        })?;
        for (tree, key, value) in &keep {
            self.write(dir, tree, key, value).map_err(std::io::Error::other)?;
        }
        self.sync_unsynced()?;
        std::fs::remove_file(&path)?;
        File::open(dir)?.sync_all()?;
        self.segments.remove(&n);
        tracing::debug!(segment = n, kept = keep.len(), "Compacted a records segment.");
        Ok(())
    }
}

/// A payload's tree, key and value.
fn split(payload: &[u8]) -> Option<(&str, &str, &[u8])> {
    let tree_len = usize::from(u16::from_le_bytes(payload.get(0..2)?.try_into().ok()?));
    let tree = std::str::from_utf8(payload.get(2..2 + tree_len)?).ok()?;
    let at = 2 + tree_len;
    let key_len = u32::from_le_bytes(payload.get(at..at + 4)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(payload.get(at + 4..at + 4 + key_len)?).ok()?;
    Some((tree, key, payload.get(at + 4 + key_len..)?))
}

/// Where a record's value is (`Inner::locate`).
enum At {
    /// Copied from `pending`.
    Value(Vec<u8>),
    /// In this segment's file.
    File(Arc<File>),
}

impl At {
    /// The value of the frame at `entry` (a file's frame checked against its CRC).
    fn value(self, entry: Entry) -> Result<Vec<u8>, LogError> {
        match self {
            At::Value(value) => Ok(value),
            At::File(file) => {
                let payload = segment::read_at(&file, entry.pos.offset()).map_err(unavailable)?;
                let (_, _, value) = split(&payload).ok_or_else(|| unavailable("a record frame does not parse"))?;
                Ok(value.to_vec())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(log: &RecordLog, key: &str, value: &str) {
        let seen = log.get("t", key).unwrap().map(|(v, _)| v);
        assert!(log.put("t", key, seen, value.as_bytes()).unwrap());
    }

    fn value(log: &RecordLog, key: &str) -> Option<String> {
        log.get("t", key).unwrap().map(|(_, b)| String::from_utf8(b).unwrap())
    }

    #[test]
    fn the_last_write_wins_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        put(&log, "a", "1");
        put(&log, "b", "2");
        put(&log, "a", "3");
        log.sync().unwrap();
        drop(log);
        let (log, dropped) = RecordLog::open(dir.path()).unwrap();
        assert_eq!((dropped, value(&log, "a"), value(&log, "b")), (0, Some("3".into()), Some("2".into())));
        let keys = log.list("t", None, 10, |k, _| Some(k.to_string())).unwrap();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(log.list("t", Some("a"), 10, |k, _| Some(k.to_string())).unwrap(), ["b"]);
        assert!(log.list("other", None, 10, |k, _| Some(k.to_string())).unwrap().is_empty());
    }

    #[test]
    fn a_write_after_another_is_refused_until_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        assert!(log.put("t", "k", None, b"first").unwrap());
        assert!(!log.put("t", "k", None, b"lost race").unwrap());
        let seen = log.get("t", "k").unwrap().map(|(v, _)| v);
        assert!(log.put("t", "k", seen, b"second").unwrap());
        assert!(!log.put("t", "k", seen, b"stale").unwrap());
        assert_eq!(value(&log, "k").as_deref(), Some("second"));
    }

    #[test]
    fn writes_not_yet_on_file_are_read_back_and_land_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        put(&log, "a", "on disk");
        log.sync().unwrap();
        let on_file = std::fs::metadata(segment::path(dir.path(), 1)).unwrap().len();
        put(&log, "a", "pending");
        put(&log, "b", "pending too");
        // Still in memory: read from there, by key and in lists.
        assert_eq!(std::fs::metadata(segment::path(dir.path(), 1)).unwrap().len(), on_file);
        assert_eq!((value(&log, "a").as_deref(), value(&log, "b").as_deref()), (Some("pending"), Some("pending too")));
        let listed = log.list("t", None, 10, |k, v| Some((k.to_string(), String::from_utf8(v).unwrap()))).unwrap();
        assert_eq!(listed, [("a".to_string(), "pending".to_string()), ("b".to_string(), "pending too".to_string())]);
        log.sync().unwrap();
        assert!(std::fs::metadata(segment::path(dir.path(), 1)).unwrap().len() > on_file);
        // A long round goes to the file before its sync, past a bound.
        let big = "y".repeat(PENDING_BYTES / 4 + 1);
        for key in ["c", "d", "e", "f"] {
            put(&log, key, &big);
        }
        assert!(std::fs::metadata(segment::path(dir.path(), 1)).unwrap().len() > on_file + 3 * big.len() as u64);
        log.sync().unwrap();
        drop(log);
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        assert_eq!((value(&log, "a").as_deref(), value(&log, "f").as_deref()), (Some("pending"), Some(big.as_str())));
    }

    #[test]
    fn a_failed_sync_undoes_the_writes_since_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        put(&log, "kept", "1");
        log.sync().unwrap();
        log.set_fail_syncs(true);
        put(&log, "kept", "2");
        put(&log, "undone", "x");
        assert!(log.sync().is_err());
        assert_eq!((value(&log, "kept").as_deref(), value(&log, "undone")), (Some("1"), None));
        log.set_fail_syncs(false);
        put(&log, "undone", "y");
        log.sync().unwrap();
        drop(log);
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        assert_eq!((value(&log, "kept").as_deref(), value(&log, "undone").as_deref()), (Some("1"), Some("y")));
    }

    #[test]
    fn a_writer_whose_writes_another_sync_undid_is_told_so() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        // The dispatcher takes the epoch, writes, and syncs later.
        let epoch = log.epoch();
        put(&log, "held", "1");
        // Meanwhile another caller's sync fails, undoing the held write too.
        log.set_fail_syncs(true);
        assert!(log.sync().is_err());
        log.set_fail_syncs(false);
        // Nothing is left to sync, but the held write is gone: it must run again.
        assert_eq!(value(&log, "held"), None);
        assert!(log.sync_since(epoch).is_err());
        // Redone from a fresh epoch, it lands.
        let epoch = log.epoch();
        put(&log, "held", "1");
        log.sync_since(epoch).unwrap();
        assert_eq!(value(&log, "held").as_deref(), Some("1"));
    }

    #[test]
    fn overwritten_segments_are_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        let big = "x".repeat(64 << 10);
        // Three segments' worth of overwrites of two keys, and one key written once.
        put(&log, "once", "early");
        for i in 0..(3 * SEGMENT_BYTES as usize / big.len()) {
            put(&log, if i % 2 == 0 { "even" } else { "odd" }, &format!("{i}{big}"));
            log.sync().unwrap();
        }
        let segments = segment::list(dir.path()).unwrap();
        assert!(segments.len() <= 2, "{segments:?}");
        assert!(log.size_on_disk() < 2 * SEGMENT_BYTES + (1 << 20));
        drop(log);
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        assert_eq!(value(&log, "once").as_deref(), Some("early"));
        let writes = 3 * SEGMENT_BYTES as usize / big.len();
        let last_odd = if writes.is_multiple_of(2) { writes - 1 } else { writes - 2 };
        assert!(value(&log, "odd").unwrap().starts_with(&format!("{last_odd}x")));
    }

    #[test]
    fn a_torn_tail_is_cut_and_what_was_synced_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = RecordLog::open(dir.path()).unwrap();
        put(&log, "a", "synced");
        log.sync().unwrap();
        put(&log, "b", "torn");
        // On the file but not synced, as when a crash cuts a round's sync short.
        log.lock().flush().unwrap();
        drop(log);
        let path = segment::path(dir.path(), 1);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 2).unwrap();
        let (log, dropped) = RecordLog::open(dir.path()).unwrap();
        assert!(dropped > 0);
        assert_eq!((value(&log, "a").as_deref(), value(&log, "b")), (Some("synced"), None));
    }
}
