//! Upgrading a data directory of earlier releases, which kept the event
//! log (0.1) and the store sink's records (until the records log) in a
//! sled database at its top. Each is copied into its segment log (the
//! events, bodies, delivery states and dedup keys into `log/`, the record
//! trees `store:*` into `records/`), written to a staging directory that is
//! renamed into place only once complete and synced; then sled's files are
//! removed. A crash at any point leaves either the old data (the next start
//! copies again) or the new, so nothing is lost or counted twice.

use super::codec;
use super::records::RecordLog;
use super::segment::{self, SEGMENT_BYTES};
use crate::storage::record::{DeliveryV1, Record};
use crate::storage::LogError;
use std::io::Write;
use std::path::Path;

/// The sled tree the old log lived in.
const OLD_TREE: &str = "log";
/// The prefix of the sled trees that held store records.
const RECORD_TREE_PREFIX: &str = "store:";
/// sled's files in a data directory; `db` last (its presence means "not
/// migrated yet").
const SLED_FILES: &[&str] = &["conf", "db"];

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

/// Whether `data` still holds a sled database to migrate.
pub fn pending(data: &Path) -> bool {
    data.join("db").is_file()
}

/// What a migration copied.
#[derive(Debug, Default, Clone, Copy)]
pub struct Migrated {
    pub events: u64,
    pub records: u64,
}

/// Migrates the sled database at `data` into `log_dir` and `records_dir`,
/// then removes it.
pub fn run(data: &Path, log_dir: &Path, records_dir: &Path) -> Result<Migrated, LogError> {
    let db = sled::Config::new().path(data).cache_capacity(16 << 20).open().map_err(|e| {
        if e.to_string().contains("could not acquire lock") {
            LogError::Unavailable("a router of an earlier release is running on it; stop it first".into())
        } else {
            unavailable(e)
        }
    })?;
    let has_log = db.tree_names().iter().any(|n| n.as_ref() == OLD_TREE.as_bytes());
    let events = if has_log && !log_dir.exists() { copy_log(&db, log_dir)? } else { 0 };
    let records = if records_dir.exists() { 0 } else { copy_records(&db, records_dir)? };
    drop(db);
    remove_sled(data)?;
    Ok(Migrated { events, records })
}

/// Copies every `store:*` tree into a new records log.
fn copy_records(db: &sled::Db, records_dir: &Path) -> Result<u64, LogError> {
    let staging = records_dir.with_extension("migrating");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(unavailable)?;
    }
    let (records, _) = RecordLog::open(&staging)?;
    let mut copied = 0;
    for name in db.tree_names() {
        let Some(tree) = std::str::from_utf8(&name).ok().and_then(|n| n.strip_prefix(RECORD_TREE_PREFIX)) else {
            continue;
        };
        for kv in db.open_tree(&name).map_err(unavailable)?.iter() {
            let (key, value) = kv.map_err(unavailable)?;
            let Ok(key) = std::str::from_utf8(&key) else {
                tracing::warn!(tree, "Skipping a record whose key is not UTF-8.");
                continue;
            };
            records.put(tree, key, None, &value)?;
            copied += 1;
        }
    }
    records.sync()?;
    drop(records);
    rename_into_place(&staging, records_dir)?;
    Ok(copied)
}

/// Renames a complete staging directory to `to`, durably.
fn rename_into_place(staging: &Path, to: &Path) -> Result<(), LogError> {
    std::fs::rename(staging, to).map_err(unavailable)?;
    if let Some(parent) = to.parent() {
        std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(unavailable)?;
    }
    Ok(())
}

/// Removes sled's files, `db` last.
fn remove_sled(data: &Path) -> Result<(), LogError> {
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(unavailable(e)),
        _ => Ok(()),
    };
    gone(std::fs::remove_dir_all(data.join("blobs")))?;
    for entry in std::fs::read_dir(data).map_err(unavailable)? {
        let path = entry.map_err(unavailable)?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("snap.")) {
            gone(std::fs::remove_file(&path))?;
        }
    }
    for name in SLED_FILES {
        gone(std::fs::remove_file(data.join(name)))?;
    }
    std::fs::File::open(data).and_then(|d| d.sync_all()).map_err(unavailable)
}

/// Copies the old log of `db` into a new segment log; returns the events copied.
fn copy_log(db: &sled::Db, log_dir: &Path) -> Result<u64, LogError> {
    let old = db.open_tree(OLD_TREE).map_err(unavailable)?;
    let staging = log_dir.with_extension("migrating");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(unavailable)?;
    }
    std::fs::create_dir_all(&staging).map_err(unavailable)?;
    let mut seg = 1;
    let mut file = segment::create(&staging, seg).map_err(unavailable)?;
    let mut len = 0u64;
    let mut copied = 0u64;
    for kv in old.scan_prefix(b"e") {
        let (key, value) = kv.map_err(unavailable)?;
        let Ok(Record::EventV1(event)) = serde_json::from_slice::<Record>(&value) else {
            tracing::warn!(key = %String::from_utf8_lossy(&key), "Skipping an unreadable record of the old log.");
            continue;
        };
        let id = event.id.to_be_bytes();
        let body = old.get([&b"b"[..], &id].concat()).map_err(unavailable)?.map(|b| b.to_vec()).unwrap_or_default();
        let mut deliveries: Vec<DeliveryV1> = Vec::new();
        for d in old.scan_prefix([&b"d"[..], &id].concat()) {
            let (_, v) = d.map_err(unavailable)?;
            if let Ok(Record::DeliveryV1(d)) = serde_json::from_slice::<Record>(&v) {
                deliveries.push(d);
            }
        }
        let fingerprint = match &event.event_id {
            Some(eid) => {
                let dedup_key = [&b"k"[..], event.route.as_bytes(), &[0], eid.as_bytes()].concat();
                match old.get(dedup_key).map_err(unavailable)? {
                    Some(v) if v.as_ref() == id => codec::fingerprint(&event.route, eid),
                    _ => 0,
                }
            }
            None => 0,
        };
        if len >= SEGMENT_BYTES {
            file.sync_data().map_err(unavailable)?;
            seg += 1;
            file = segment::create(&staging, seg).map_err(unavailable)?;
            len = 0;
        }
        let mut buf = Vec::new();
        segment::frame(&mut buf, &codec::event(&event, fingerprint, &deliveries, &body));
        file.write_all(&buf).map_err(unavailable)?;
        len += buf.len() as u64;
        copied += 1;
    }
    file.sync_data().map_err(unavailable)?;
    rename_into_place(&staging, log_dir)?;
    Ok(copied)
}
