//! Background delivery: claims due deliveries from the log, builds each
//! rule's document, hands it to the sink and records the outcome.
//!
//! The due queue lives in the log, so nothing here is lost on a crash: a
//! delivery claimed but not recorded is simply due again after a restart
//! (store writes are idempotent per event, see `sink::store`).

use crate::log::{DeliveryKey, DeliveryV1, EventV1};
use crate::mapping::Context;
use crate::runtime::Runtime;
use crate::sink::store::SyncMetadata;
use crate::sink::{Outcome, RetryPolicy, SinkKind};
use crate::telemetry::Stats;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// Deliveries worked on at once.
const MAX_IN_FLIGHT: usize = 64;
/// Longest sleep between queue scans when nothing is due (new work wakes us sooner).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs until `stop` turns true, then waits for deliveries in progress.
pub async fn run(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let in_flight: Arc<Mutex<HashSet<DeliveryKey>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while !*stop.borrow() {
        let now = crate::event::now_ms();
        let due = {
            let busy = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            rt.data.log.due(now, MAX_IN_FLIGHT, &|k| busy.contains(k))
        };
        let due = match due {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "Cannot read the due queue.");
                Vec::new()
            }
        };
        if due.is_empty() {
            let wait = match rt.data.log.next_due_ms() {
                Ok(Some(at)) => Duration::from_millis((at - now).clamp(1, IDLE_POLL.as_millis() as i64) as u64),
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = rt.work.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for key in due {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                _ = stop.changed() => break,
            };
            in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
            let (rt, in_flight) = (rt.clone(), in_flight.clone());
            tokio::task::spawn_blocking(move || {
                deliver(&rt, key);
                in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                drop(permit);
                // Another delivery of the same key may now be due.
                rt.work.notify_one();
            });
        }
    }
    // Let deliveries in progress record their outcome before the log closes.
    let _ = permits.acquire_many(MAX_IN_FLIGHT as u32).await;
}

/// One attempt of one delivery, start to recorded outcome.
fn deliver(rt: &Runtime, key: DeliveryKey) {
    let (delivery, event, body) =
        match (rt.data.log.delivery(key), rt.data.log.event(key.event), rt.data.log.body(key.event)) {
            (Ok(d), Ok(e), Ok(b)) => (d, e, b),
            (d, e, b) => {
                let err = d
                    .err()
                    .map(|e| e.to_string())
                    .or(e.err().map(|e| e.to_string()))
                    .or(b.err().map(|e| e.to_string()));
                tracing::error!(event = key.event, delivery = key.index, error = ?err, "Cannot read a due delivery.");
                return;
            }
        };
    if !delivery.status.is_open() {
        return;
    }
    let (outcome, policy) = attempt(rt, &event, &delivery, &body);
    match &outcome {
        Outcome::Delivered | Outcome::Skipped { .. } => Stats::bump(&rt.stats.delivered),
        Outcome::Failed { .. } => Stats::bump(&rt.stats.failed),
        Outcome::Retry { .. } => {}
    }
    match rt.data.log.record(key, &outcome, &policy) {
        Ok(d) => match (&outcome, d.status) {
            (Outcome::Delivered, _) => {
                tracing::debug!(route = %event.route, event = event.id, sink = %d.sink, "Delivered.")
            }
            (Outcome::Skipped { reason }, _) => {
                tracing::info!(route = %event.route, event = event.id, sink = %d.sink, reason = %reason, "Delivery skipped.")
            }
            (_, crate::log::DeliveryStatus::Failed) => tracing::error!(
                route = %event.route, event = event.id, sink = %d.sink, attempts = d.attempts,
                error = d.last_error.as_deref().unwrap_or(""), "Delivery failed for good; retry it once the cause is fixed."
            ),
            _ => tracing::warn!(
                route = %event.route, event = event.id, sink = %d.sink, attempts = d.attempts,
                error = d.last_error.as_deref().unwrap_or(""), "Delivery failed; will retry."
            ),
        },
        Err(e) => {
            tracing::error!(event = key.event, error = %e, "Cannot record a delivery outcome; it will run again.")
        }
    }
}

/// Resolves the delivery against the current config and runs its sink.
fn attempt(rt: &Runtime, event: &EventV1, d: &DeliveryV1, body: &[u8]) -> (Outcome, RetryPolicy) {
    let failed = |error: String| (Outcome::Failed { error }, RetryPolicy::default());
    let config = rt.config();
    let Some(route) = config.route(&event.route) else {
        return failed(format!("route `{}` is no longer in the config", event.route));
    };
    let Some(rule) = route.rules.get(d.rule as usize) else {
        return failed(format!("rule {} of route `{}` is no longer in the config", d.rule_name, event.route));
    };
    let Some(target) = rule.targets.get(d.target as usize).filter(|t| t.sink == d.sink) else {
        return failed(format!("rule {} no longer sends to sink `{}`", d.rule_name, d.sink));
    };
    let Some(sink) = config.sinks.get(&d.sink) else {
        return failed(format!("sink `{}` is no longer in the config", d.sink));
    };
    let payload: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return failed(format!("stored body is not JSON: {e}")),
    };
    let ctx = Context { body: &payload, params: &event.params, query: &event.query, headers: &event.headers };
    let doc = rule.document(&ctx);
    let outcome = match &sink.kind {
        SinkKind::Store(store) => match target.key.as_ref().or(store.key.as_ref()).and_then(|k| k.eval_string(&ctx)) {
            None => Outcome::Failed { error: "the record key is missing from the event".into() },
            Some(key) => {
                let meta = SyncMetadata {
                    log_id: event.id,
                    event_id: event.event_id.clone(),
                    event_type: event.event_type.clone(),
                    route: event.route.clone(),
                    received_at: event.received_at.clone(),
                    event_time: event.event_time.clone(),
                };
                rt.data.records.apply(&store.tree, &key, store.mode, doc, &meta)
            }
        },
    };
    (outcome, sink.retry)
}
