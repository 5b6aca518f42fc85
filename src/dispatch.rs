//! Background delivery: claims due deliveries from the log, builds each
//! rule's document, hands it to the sink and records the outcome.
//!
//! Deliveries are taken in batches and run on one blocking thread: store
//! writes take microseconds, so one thread hop, one parse per event and one
//! log batch per round beat a task per delivery. The due queue lives in the
//! log, so nothing here is lost on a crash: a delivery run but not recorded
//! is due again after a restart (store writes are idempotent per event).

use crate::log::{DeliveryKey, DeliveryStatus, DeliveryV1, EventV1};
use crate::mapping::Context;
use crate::runtime::Runtime;
use crate::sink::store::SyncMetadata;
use crate::sink::{Outcome, RetryPolicy, SinkKind};
use crate::telemetry::Stats;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Deliveries taken per round.
const BATCH: usize = 256;
/// Longest sleep between queue scans when nothing is due (new work wakes us sooner).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Runs until `stop` turns true; a round in progress finishes first.
pub async fn run(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let now = crate::event::now_ms();
        let due = match rt.data.log.due(now, BATCH) {
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
        let rt2 = rt.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || deliver_batch(&rt2, due)).await {
            tracing::error!(error = %e, "Delivery round panicked; its deliveries stay due.");
        }
    }
}

/// One attempt of each delivery, then every outcome recorded at once.
fn deliver_batch(rt: &Runtime, keys: Vec<DeliveryKey>) {
    let mut events: HashMap<u64, Option<(EventV1, Value)>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(keys.len());
    for key in keys {
        let delivery = match rt.data.log.delivery(key) {
            Ok(d) if d.status.is_open() => d,
            Ok(_) => continue,
            Err(e) => {
                tracing::error!(event = key.event, delivery = key.index, error = %e, "Cannot read a due delivery.");
                continue;
            }
        };
        let loaded = events.entry(key.event).or_insert_with(|| load_event(rt, key.event));
        let (outcome, policy) = match loaded {
            Some((event, payload)) => attempt(rt, event, payload, &delivery),
            None => (Outcome::Retry { error: "cannot read the event".into(), after: None }, RetryPolicy::default()),
        };
        outcomes.push((delivery, outcome, policy));
    }
    let labels: Vec<Outcome> = outcomes.iter().map(|(_, o, _)| o.clone()).collect();
    match rt.data.log.record(outcomes) {
        Ok(updated) => {
            for (d, outcome) in updated.iter().zip(labels) {
                let route = events.get(&d.event).and_then(|e| e.as_ref()).map_or("", |(e, _)| e.route.as_str());
                report(rt, route, d, &outcome);
            }
        }
        Err(e) => tracing::error!(error = %e, "Cannot record delivery outcomes; they will run again."),
    }
}

fn load_event(rt: &Runtime, id: u64) -> Option<(EventV1, Value)> {
    let event =
        rt.data.log.event(id).map_err(|e| tracing::error!(event = id, error = %e, "Cannot read an event.")).ok()?;
    let body = rt.data.log.body(id).ok()?;
    // It parsed at ingest; a failure here means the log is damaged.
    let payload = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some((event, payload))
}

fn report(rt: &Runtime, route: &str, d: &DeliveryV1, outcome: &Outcome) {
    match (outcome, d.status) {
        (Outcome::Delivered, _) => {
            Stats::bump(&rt.stats.delivered);
            tracing::debug!(route, event = d.event, sink = %d.sink, "Delivered.");
        }
        (Outcome::Skipped { reason }, _) => {
            Stats::bump(&rt.stats.delivered);
            tracing::info!(route, event = d.event, sink = %d.sink, reason = %reason, "Delivery skipped.");
        }
        (_, DeliveryStatus::Failed) => {
            Stats::bump(&rt.stats.failed);
            tracing::error!(
                route, event = d.event, sink = %d.sink, attempts = d.attempts,
                error = d.last_error.as_deref().unwrap_or(""), "Delivery failed for good; retry it once the cause is fixed."
            );
        }
        _ => tracing::warn!(
            route, event = d.event, sink = %d.sink, attempts = d.attempts,
            error = d.last_error.as_deref().unwrap_or(""), "Delivery failed; will retry."
        ),
    }
}

/// Resolves the delivery against the current config and runs its sink.
fn attempt(rt: &Runtime, event: &EventV1, payload: &Value, d: &DeliveryV1) -> (Outcome, RetryPolicy) {
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
    let ctx = Context { body: payload, params: &event.params, query: &event.query, headers: &event.headers };
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
