//! Store recovery: when the store stops taking writes (a full disk, a file
//! made immutable) the router notices, reports it on `/healthz`, and once
//! the cause is gone gets a working store back by itself.
//!
//! The event log and the records cut a failed write or sync back off their
//! files, so re-probing the store is enough once the disk takes writes
//! again. If a store stays broken (the records could not be cut back after
//! a failed sync) while plain files can be written again, the process
//! restarts in place (`exec`), which drops every handle and thread at once
//! and opens the directory afresh. Nothing acknowledged is lost: a 2xx was
//! only sent after its sync, and a request cut off by the restart was never
//! acknowledged.

use crate::runtime::Runtime;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Time between checks.
const EVERY: Duration = Duration::from_secs(1);
/// A probe that takes longer counts as failed (a flush stuck for good).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the supervisor concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The store is broken but the disk takes writes again: restart in place.
    Reopen,
}

/// Watches the store until `stop`; returns `Reopen` when only a restart can
/// bring it back. `rt.store_down` mirrors what it sees (for `/healthz`).
pub async fn supervise(rt: Arc<Runtime>, dir: PathBuf, mut stop: watch::Receiver<bool>) -> Option<Verdict> {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => return None,
        }
        let suspect = rt.store_down.load(Ordering::Relaxed) || rt.event_writes.failing() || rt.outcome_writes.failing();
        if !suspect {
            continue;
        }
        if probe(&rt).await {
            if rt.store_down.swap(false, Ordering::Relaxed) {
                tracing::info!("The store takes writes again.");
            }
            continue;
        }
        if !rt.store_down.swap(true, Ordering::Relaxed) {
            tracing::error!(data = %dir.display(), "The store does not take writes; /healthz fails until it does.");
        }
        if disk_writable(&dir).await {
            tracing::warn!(data = %dir.display(), "The disk takes writes again but the store stays broken: restarting in place to reopen it.");
            return Some(Verdict::Reopen);
        }
    }
}

/// A synced write through the store, within `PROBE_TIMEOUT`.
async fn probe(rt: &Arc<Runtime>) -> bool {
    let probing = rt.clone();
    let done = tokio::task::spawn_blocking(move || probing.data.probe_write().is_ok());
    matches!(tokio::time::timeout(PROBE_TIMEOUT, done).await, Ok(Ok(true)))
}

/// Whether a plain file can be written and synced in `dir` (the cause of a
/// store fault is gone), within `PROBE_TIMEOUT`.
async fn disk_writable(dir: &Path) -> bool {
    let file = dir.join(".write-probe");
    let check = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let written = std::fs::File::create(&file).and_then(|mut f| {
            // As much as a small group of events: a disk with a few bytes free is still full.
            f.write_all(&[0u8; 64 << 10])?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&file);
        written.is_ok()
    });
    matches!(tokio::time::timeout(PROBE_TIMEOUT, check).await, Ok(Ok(true)))
}
