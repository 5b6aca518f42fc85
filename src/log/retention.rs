//! Removing events from the log: retention (old events that need nothing
//! more) and an operator's delete. An event goes only when none of its
//! deliveries is open or failed, so nothing owed to a sink is ever lost:
//! failed events stay until retried or deleted.
//!
//! Both hold the log's maintenance lock, as do retry and replay, which
//! are the only other writers that touch closed events. The dispatcher
//! writes only open deliveries, which a removable event does not have.

use super::{
    body_key, decode, dedup_key, delivery_key, event_key, failed_key, DeliveryKey, DeliveryStatus, DeliveryV1,
    EventLog, EventV1, LogError, Record,
};

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

fn removable(deliveries: &[DeliveryV1]) -> bool {
    !deliveries.iter().any(|d| d.status.is_open() || d.status == DeliveryStatus::Failed)
}

fn remove(batch: &mut sled::Batch, e: &EventV1, deliveries: &[DeliveryV1]) {
    batch.remove(event_key(e.id));
    batch.remove(body_key(e.id));
    for d in deliveries {
        let key = DeliveryKey { event: d.event, index: d.index };
        batch.remove(delivery_key(key));
        batch.remove(failed_key(key));
    }
    if let Some(id) = &e.event_id {
        batch.remove(dedup_key(&e.route, id));
    }
}

impl EventLog {
    /// One pass of retention: looks at up to `max` events after id `after`
    /// received before `cutoff_ms`, and removes those that need nothing more
    /// (all deliveries delivered, skipped or dropped, or none at all), in one
    /// atomic batch. The newest event is always kept: ids continue from it
    /// after a restart.
    pub fn prune(&self, after: u64, cutoff_ms: i64, max: usize) -> Result<Pruned, LogError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let newest = match self.tree.scan_prefix(b"e").next_back() {
            Some(kv) => super::id_from(&kv?.0[1..9]),
            None => return Ok(Pruned::default()),
        };
        let mut batch = sled::Batch::default();
        let (mut removed, mut looked) = (0, 0);
        let mut next = None;
        for kv in self.tree.range(event_key(after.saturating_add(1))..event_key(newest)) {
            let (k, v) = kv?;
            let Record::EventV1(e) = decode(&k, &v)? else { continue };
            // Ids grow with receipt time: the rest is younger still.
            if e.received_ms >= cutoff_ms {
                break;
            }
            let deliveries = self.deliveries(e.id)?;
            if removable(&deliveries) {
                remove(&mut batch, &e, &deliveries);
                removed += 1;
            }
            looked += 1;
            if looked >= max {
                next = Some(e.id);
                break;
            }
        }
        self.tree.apply_batch(batch)?;
        Ok(Pruned { removed, next })
    }

    /// Deletes one event and everything it has in the log: how an operator
    /// gives up on a failed event. Refused while a delivery is still open.
    pub fn delete(&self, id: u64) -> Result<(), DeleteError> {
        let _maintenance = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let e = self.event(id)?;
        let deliveries = self.deliveries(id)?;
        if deliveries.iter().any(|d| d.status.is_open()) {
            return Err(DeleteError::Open(id));
        }
        let mut batch = sled::Batch::default();
        remove(&mut batch, &e, &deliveries);
        self.tree.apply_batch(batch).map_err(LogError::from)?;
        Ok(())
    }

    /// Deliveries pending or waiting for a retry.
    pub fn queue_depth(&self) -> usize {
        self.tree.scan_prefix(b"q").keys().count()
    }
}
