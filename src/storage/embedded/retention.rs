//! Removing events from the segment log: retention (old events that need
//! nothing more) and an operator's delete. An event goes only when none
//! of its deliveries is open or failed, so nothing owed to a sink is ever
//! lost: failed events stay until retried or deleted.
//!
//! A removal is a `REMOVED` frame; the bytes go when their whole segment
//! holds nothing live any more (segments are deleted oldest first).

use super::{codec, Job, SegmentLog};
use crate::storage::record::EventStatus;
use crate::storage::EventLog;
use crate::storage::LogError;

/// The outcome of one bounded retention pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub removed: usize,
    /// Where the next pass starts; `None` once every event older than the
    /// cutoff has been looked at.
    pub next: Option<u64>,
}

/// Why an operator's delete was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("event {0} still has deliveries pending; wait for them or retry later")]
    Open(u64),
    #[error(transparent)]
    Log(#[from] LogError),
}

fn fingerprint(route: &str, event_id: Option<&str>) -> u64 {
    event_id.map_or(0, |id| codec::fingerprint(route, id))
}

/// See `EventLog::prune`. The newest event is always kept: ids continue
/// from it after a restart.
pub fn prune(log: &SegmentLog, after: u64, cutoff_ms: i64, max: usize) -> Result<Pruned, LogError> {
    let _maintenance = log.maintenance.lock().unwrap_or_else(|p| p.into_inner());
    let (first, newest) = {
        let index = log.lock();
        (index.first_id(), index.last_id)
    };
    let (mut gone, mut looked, mut next) = (Vec::new(), 0, None);
    for id in after.saturating_add(1).max(first)..newest {
        let Some(status) = log.lock().status(id) else { continue };
        let e = match log.event(id) {
            Ok(e) => e,
            Err(LogError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        // Ids grow with receipt time: the rest is younger still.
        if e.received_ms >= cutoff_ms {
            break;
        }
        if matches!(status, EventStatus::Delivered | EventStatus::Unrouted) {
            gone.push((id, fingerprint(&e.route, e.event_id.as_deref())));
        }
        looked += 1;
        if looked >= max {
            next = Some(id);
            break;
        }
    }
    let removed = gone.len();
    if !gone.is_empty() {
        log.call(|tx| Job::Remove(gone, tx))?;
        log.drop_dead_segments();
    }
    Ok(Pruned { removed, next })
}

/// See `EventLog::delete`: refused while a delivery is still open.
pub fn delete(log: &SegmentLog, id: u64) -> Result<(), DeleteError> {
    let _maintenance = log.maintenance.lock().unwrap_or_else(|p| p.into_inner());
    let e = log.event(id)?;
    if log.lock().has_open(id) {
        return Err(DeleteError::Open(id));
    }
    let fp = fingerprint(&e.route, e.event_id.as_deref());
    log.call(|tx| Job::Remove(vec![(id, fp)], tx))?;
    log.drop_dead_segments();
    Ok(())
}
