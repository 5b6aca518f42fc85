//! The retention task: every `every`, removes events older than the
//! retention period that need nothing more (delivered, skipped, dropped,
//! or unrouted), in bounded batches on the blocking pool, yielding between
//! batches so ingest and delivery keep their share of the disk. Failed and
//! pending events are never removed here (see `log::retention`).

use crate::runtime::Runtime;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use crate::runtime::Retention;

/// Sweeps at start and then every `every`, until `stop`.
pub async fn run(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let every = rt.retention().every;
    loop {
        sweep(&rt, &stop).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One sweep over everything older than the cutoff; returns how many
/// events it removed.
pub async fn sweep(rt: &Arc<Runtime>, stop: &watch::Receiver<bool>) -> usize {
    let policy = rt.retention();
    let Some(keep) = policy.keep else { return 0 };
    let cutoff = crate::event::now_ms() - keep.as_millis() as i64;
    let (mut after, mut removed) = (0, 0);
    while !*stop.borrow() {
        let for_blocking = rt.clone();
        match tokio::task::spawn_blocking(move || for_blocking.data.log.prune(after, cutoff, policy.batch)).await {
            Ok(Ok(pass)) => {
                removed += pass.removed;
                rt.stats.pruned.fetch_add(pass.removed as u64, Ordering::Relaxed);
                match pass.next {
                    Some(next) => after = next,
                    None => break,
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Retention pass failed; trying again next sweep.");
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, "Retention pass panicked.");
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if removed > 0 {
        tracing::info!(removed, keep = %humantime::format_duration(keep), "Removed settled events past retention.");
    }
    removed
}
