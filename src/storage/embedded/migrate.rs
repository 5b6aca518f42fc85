//! Upgrading a data directory whose event log is the sled tree of earlier
//! releases (0.1): every event, body, delivery state and dedup key is
//! copied into a new segment log, which replaces the tree only once it is
//! complete and synced. A crash at any point leaves either the old log (and
//! the next start migrates again) or the new one.
//!
//! The store sink's records stay where they are (sled trees `store:*`).

use super::codec;
use super::segment::{self, SEGMENT_BYTES};
use crate::storage::record::{DeliveryV1, Record};
use crate::storage::LogError;
use std::io::Write;
use std::path::Path;

/// The sled tree the old log lived in.
const OLD_TREE: &str = "log";

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

/// Whether `db` still holds an old log (possibly already copied: a crash
/// between the copy and the tree's removal).
pub fn pending(db: &sled::Db) -> bool {
    db.tree_names().iter().any(|n| n.as_ref() == OLD_TREE.as_bytes())
        && db.open_tree(OLD_TREE).is_ok_and(|t| !t.is_empty())
}

/// Migrates the old log of `db` into `log_dir`; returns the events copied.
pub fn run(db: &sled::Db, log_dir: &Path) -> Result<u64, LogError> {
    let old = db.open_tree(OLD_TREE).map_err(unavailable)?;
    if log_dir.exists() {
        // Copied before a crash: only the removal of the old tree is left.
        db.drop_tree(OLD_TREE).map_err(unavailable)?;
        db.flush().map_err(unavailable)?;
        return Ok(0);
    }
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
    std::fs::rename(&staging, log_dir).map_err(unavailable)?;
    if let Some(parent) = log_dir.parent() {
        std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(unavailable)?;
    }
    db.drop_tree(OLD_TREE).map_err(unavailable)?;
    db.flush().map_err(unavailable)?;
    Ok(copied)
}
