//! Background delivery: claims due deliveries from the log, builds each
//! rule's document, hands it to the sink and records the outcome.
//!
//! Store deliveries are taken in batches and run on one blocking thread:
//! their writes take microseconds, so one thread hop, one parse per event and
//! one log batch per round beat a task per delivery. HTTP deliveries run as
//! async tasks, at most `concurrency` per sink: a slow or dead sink only
//! holds its own deliveries (they stay due in the log), never ingest or
//! other sinks. The due queue lives in the log, so nothing here is lost on a
//! crash: a delivery run but not recorded is due again after a restart
//! (store writes are idempotent per event; HTTP receivers get a stable
//! `x-router-event-id` to dedup on).

use crate::log::{DeliveryKey, DeliveryStatus, DeliveryV1, EventV1};
use crate::mapping::Context;
use crate::route::{Route, Rule, Target};
use crate::runtime::Runtime;
use crate::script;
use crate::sink::http::Envelope;
use crate::sink::store::SyncMetadata;
use crate::sink::{Outcome, RetryPolicy, Sink, SinkKind};
use crate::telemetry::Delivered;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Due deliveries looked at per round.
const SCAN: usize = 1024;
/// Longest sleep between queue scans when nothing is due (new work wakes us sooner).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long shutdown waits for HTTP deliveries in flight (unfinished ones stay due).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Runs until `stop` turns true; work in progress finishes first.
pub async fn run(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let client = crate::sink::http::client();
    let in_flight: Arc<Mutex<HashSet<DeliveryKey>>> = Arc::default();
    let mut per_sink: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut tasks = JoinSet::new();
    while !*stop.borrow() {
        while tasks.try_join_next().is_some() {}
        // While the store refuses outcomes, running deliveries again would
        // only redo them: wait, longer each time.
        let wait = rt.outcome_writes.backoff();
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => continue,
            }
        }
        let now = crate::event::now_ms();
        let due = match rt.data.log.due(now, SCAN) {
            Ok(d) => d,
            Err(e) => {
                if let Some(times) = rt.outcome_writes.failed() {
                    tracing::error!(error = %e, times, "Cannot read the due queue; backing off.");
                }
                Vec::new()
            }
        };
        let config = rt.config();
        let mut stored = Vec::new();
        let mut batched: HashMap<String, Vec<DeliveryV1>> = HashMap::new();
        let mut started = 0;
        // When a batch that is not full yet must go anyway (its oldest waited max_wait).
        let mut batch_due: Option<i64> = None;
        for key in due {
            if in_flight.lock().unwrap_or_else(|p| p.into_inner()).contains(&key) {
                continue;
            }
            let d = match rt.data.log.delivery(key) {
                Ok(d) if d.status.is_open() => d,
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(event = key.event, delivery = key.index, error = %e, "Cannot read a due delivery.");
                    continue;
                }
            };
            // `ordered_by`: a later delivery of the same key waits for the earlier one.
            if !rt.data.log.is_next_in_order(&d).unwrap_or(false) {
                continue;
            }
            match config.sinks.get(&d.sink).map(|s| &s.kind) {
                Some(SinkKind::Http(h)) if h.batch.is_some() => batched.entry(d.sink.clone()).or_default().push(d),
                Some(SinkKind::Http(h)) => {
                    let limit =
                        per_sink.entry(d.sink.clone()).or_insert_with(|| Arc::new(Semaphore::new(h.concurrency)));
                    // A saturated sink's deliveries wait in the log; the others go on.
                    let Ok(permit) = limit.clone().try_acquire_owned() else { continue };
                    in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
                    started += 1;
                    let (rt, client, in_flight) = (rt.clone(), client.clone(), in_flight.clone());
                    tasks.spawn(async move {
                        deliver_http(&rt, &client, d).await;
                        in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                        drop(permit);
                        rt.work.notify_one();
                    });
                }
                // Store sinks, and sinks gone from the config (they fail with a clear error).
                _ => stored.push(d),
            }
        }
        for (sink, mut ds) in batched {
            let Some(SinkKind::Http(h)) = config.sinks.get(&sink).map(|s| &s.kind) else { continue };
            let batch = h.batch.expect("only batching sinks are collected");
            let oldest = ds.iter().filter_map(|d| d.next_attempt_ms).min().unwrap_or(now);
            let send_by = oldest + batch.max_wait.as_millis() as i64;
            if ds.len() < batch.max_events && send_by > now {
                batch_due = Some(batch_due.map_or(send_by, |b| b.min(send_by)));
                continue;
            }
            let limit = per_sink.entry(sink.clone()).or_insert_with(|| Arc::new(Semaphore::new(h.concurrency)));
            while !ds.is_empty() {
                let Ok(permit) = limit.clone().try_acquire_owned() else { break };
                let chunk: Vec<DeliveryV1> = ds.drain(..ds.len().min(batch.max_events)).collect();
                let keys: Vec<DeliveryKey> =
                    chunk.iter().map(|d| DeliveryKey { event: d.event, index: d.index }).collect();
                in_flight.lock().unwrap_or_else(|p| p.into_inner()).extend(keys.iter().copied());
                started += chunk.len();
                let (rt, client, in_flight) = (rt.clone(), client.clone(), in_flight.clone());
                tasks.spawn(async move {
                    deliver_http_batch(&rt, &client, chunk).await;
                    let mut busy = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                    keys.iter().for_each(|k| {
                        busy.remove(k);
                    });
                    drop(busy);
                    drop(permit);
                    rt.work.notify_one();
                });
            }
        }
        if !stored.is_empty() {
            started += stored.len();
            let rt2 = rt.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || deliver_batch(&rt2, stored)).await {
                tracing::error!(error = %e, "Delivery round panicked; its deliveries stay due.");
            }
        }
        if started == 0 {
            // Nothing could start: what is due now waits for a delivery in
            // flight (ordering, sink limits), which notifies when it ends.
            let next = rt.data.log.next_due_after(now).ok().flatten();
            let wait = match next.into_iter().chain(batch_due).min() {
                Some(at) => Duration::from_millis((at - now).clamp(1, IDLE_POLL.as_millis() as i64) as u64),
                None => IDLE_POLL,
            };
            tokio::select! {
                _ = rt.work.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("HTTP deliveries still running at shutdown; they stay due and run after restart.");
    }
}

/// One attempt of one HTTP delivery, recorded. A rule with `when:` or
/// `script:` builds its document on the blocking pool, so a slow script
/// holds a blocking thread, never an async worker.
async fn deliver_http(rt: &Arc<Runtime>, client: &reqwest::Client, d: DeliveryV1) {
    let loaded = load_event(rt, d.event);
    let (outcome, policy) = match &loaded {
        None => (Outcome::Retry { error: "cannot read the event".into(), after: None }, RetryPolicy::default()),
        Some((event, payload)) => match prepare(rt, event, payload, &d) {
            Err(failed) => failed,
            Ok(p) => {
                let policy = p.sink.retry;
                let built = if p.rule().has_scripts() {
                    let (rt, event, payload, p) = (rt.clone(), event.clone(), payload.clone(), p.clone());
                    tokio::task::spawn_blocking(move || http_document(&rt, &p, &event, &payload))
                        .await
                        .unwrap_or_else(|e| Err(Outcome::Failed { error: format!("the script panicked: {e}") }))
                } else {
                    Ok(p.doc.clone())
                };
                match (built, &p.sink.kind) {
                    (Err(outcome), _) => (outcome, policy),
                    (Ok(doc), SinkKind::Http(h)) => {
                        let event_id = delivery_event_id(event);
                        let envelope = Envelope { event_type: &event.event_type, event_id: &event_id };
                        let last_try = d.attempts + 1 >= p.sink.retry.attempts;
                        (h.deliver(client, &h.item(doc, &envelope), &envelope, last_try).await, policy)
                    }
                    (Ok(_), SinkKind::Store(_)) => {
                        (Outcome::Retry { error: "sink changed type".into(), after: None }, policy)
                    }
                }
            }
        },
    };
    let event = d.event;
    record_all(rt, &HashMap::from([(event, loaded)]), vec![(d, outcome, policy)]);
}

/// One attempt of each store delivery, then every outcome recorded at once.
fn deliver_batch(rt: &Runtime, deliveries: Vec<DeliveryV1>) {
    let mut events: HashMap<u64, Option<(EventV1, Value)>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let loaded = events.entry(delivery.event).or_insert_with(|| load_event(rt, delivery.event));
        let (outcome, policy) = match loaded {
            Some((event, payload)) => attempt(rt, event, payload, &delivery),
            None => (Outcome::Retry { error: "cannot read the event".into(), after: None }, RetryPolicy::default()),
        };
        outcomes.push((delivery, outcome, policy));
    }
    record_all(rt, &events, outcomes);
}

fn load_event(rt: &Runtime, id: u64) -> Option<(EventV1, Value)> {
    let event =
        rt.data.log.event(id).map_err(|e| tracing::error!(event = id, error = %e, "Cannot read an event.")).ok()?;
    let body = rt.data.log.body(id).ok()?;
    // The same parser as ingest, so a delivery sees the document ingest saw
    // (a form body's fields too). It parsed then; failing now means damage.
    match crate::payload::parse_stored(&event.headers, &body) {
        Ok(payload) => Some((event, payload)),
        Err(e) => {
            tracing::error!(event = id, error = %e, "A logged body no longer parses.");
            None
        }
    }
}

/// Counts and logs one recorded outcome. `received_ms`: when the event came in.
fn report(rt: &Runtime, route: &str, received_ms: i64, d: &DeliveryV1, outcome: &Outcome) {
    let counted = match (outcome, d.status) {
        (Outcome::Delivered, _) => {
            tracing::debug!(route, event = d.event, sink = %d.sink, "Delivered.");
            let waited = (crate::event::now_ms() - received_ms).max(0) as u64;
            Delivered::Ok { latency: std::time::Duration::from_millis(waited) }
        }
        (Outcome::Skipped { reason }, _) => {
            tracing::info!(route, event = d.event, sink = %d.sink, reason = %reason, "Delivery skipped.");
            Delivered::Skipped
        }
        (Outcome::Dropped { reason }, _) => {
            tracing::info!(route, event = d.event, sink = %d.sink, reason = %reason, "Dropped by the script.");
            Delivered::Skipped
        }
        (_, DeliveryStatus::Failed) => {
            tracing::error!(
                route, event = d.event, sink = %d.sink, attempts = d.attempts,
                error = d.last_error.as_deref().unwrap_or(""), "Delivery failed for good; retry it once the cause is fixed."
            );
            Delivered::Failed
        }
        _ => {
            tracing::warn!(
                route, event = d.event, sink = %d.sink, attempts = d.attempts,
                error = d.last_error.as_deref().unwrap_or(""), "Delivery failed; will retry."
            );
            Delivered::Retry
        }
    };
    rt.stats.delivery(route, &d.sink, counted);
}

/// The event id receivers see: the provider's, else `<route>-<log id>`;
/// the same on every retry, so they can dedup on it.
fn delivery_event_id(event: &EventV1) -> String {
    event.event_id.clone().unwrap_or_else(|| format!("{}-{}", event.route, event.id))
}

/// One attempt of a batch: one request with a JSON array, the outcome
/// recorded for each of its deliveries (retried as a unit). The documents
/// are built on the blocking pool (their rules may run scripts).
async fn deliver_http_batch(rt: &Arc<Runtime>, client: &reqwest::Client, ds: Vec<DeliveryV1>) {
    let rt2 = rt.clone();
    let Ok(built) = tokio::task::spawn_blocking(move || batch_items(&rt2, ds)).await else {
        tracing::error!("Building a batch panicked; its deliveries stay due.");
        return;
    };
    let BatchItems { events, items, members, mut settled, sink } = built;
    if let (Some(sink), false) = (sink, members.is_empty()) {
        if let SinkKind::Http(h) = &sink.kind {
            let first = &members[0];
            let id = format!("batch-{}-{}", first.event, first.index);
            let envelope = Envelope { event_type: "batch", event_id: &id };
            let last_try = members.iter().any(|d| d.attempts + 1 >= sink.retry.attempts);
            let outcome = h.deliver(client, &Value::Array(items), &envelope, last_try).await;
            settled.extend(members.into_iter().map(|d| (d, outcome.clone(), sink.retry)));
        }
    }
    record_all(rt, &events, settled);
}

/// A batch ready to send: the items, the deliveries they stand for, and
/// those already settled (gone from the config, dropped by a script...).
struct BatchItems {
    events: HashMap<u64, Option<(EventV1, Value)>>,
    items: Vec<Value>,
    members: Vec<DeliveryV1>,
    settled: Vec<(DeliveryV1, Outcome, RetryPolicy)>,
    sink: Option<Arc<Sink>>,
}

fn batch_items(rt: &Runtime, ds: Vec<DeliveryV1>) -> BatchItems {
    let mut b =
        BatchItems { events: HashMap::new(), items: Vec::new(), members: Vec::new(), settled: Vec::new(), sink: None };
    for d in ds {
        let loaded = b.events.entry(d.event).or_insert_with(|| load_event(rt, d.event));
        let Some((event, payload)) = loaded.as_ref() else {
            let unreadable = Outcome::Retry { error: "cannot read the event".into(), after: None };
            b.settled.push((d, unreadable, RetryPolicy::default()));
            continue;
        };
        let p = match prepare(rt, event, payload, &d) {
            Ok(p) => p,
            Err((outcome, policy)) => {
                b.settled.push((d, outcome, policy));
                continue;
            }
        };
        match (http_document(rt, &p, event, payload), &p.sink.kind) {
            (Err(outcome), _) => b.settled.push((d, outcome, p.sink.retry)),
            (Ok(doc), SinkKind::Http(h)) => {
                let id = delivery_event_id(event);
                b.items.push(h.item(doc, &Envelope { event_type: &event.event_type, event_id: &id }));
                b.sink = Some(p.sink.clone());
                b.members.push(d);
            }
            (Ok(_), SinkKind::Store(_)) => {
                b.settled.push((d, Outcome::Retry { error: "sink changed type".into(), after: None }, p.sink.retry))
            }
        }
    }
    b
}

/// Records attempts' outcomes in one log batch, then logs and counts each.
fn record_all(
    rt: &Runtime,
    events: &HashMap<u64, Option<(EventV1, Value)>>,
    settled: Vec<(DeliveryV1, Outcome, RetryPolicy)>,
) {
    let outcomes: Vec<Outcome> = settled.iter().map(|(_, o, _)| o.clone()).collect();
    match rt.data.log.record(settled) {
        Ok(updated) => {
            if rt.outcome_writes.ok() {
                tracing::info!("Delivery outcomes are recorded again.");
            }
            for (d, outcome) in updated.iter().zip(outcomes) {
                let event = events.get(&d.event).and_then(|e| e.as_ref()).map(|(e, _)| e);
                let (route, received_ms) = event.map_or(("", 0), |e| (e.route.as_str(), e.received_ms));
                report(rt, route, received_ms, d, &outcome);
            }
        }
        Err(e) => {
            if let Some(times) = rt.outcome_writes.failed() {
                tracing::error!(error = %e, times, "Cannot record delivery outcomes; they will run again. Backing off.");
            }
        }
    }
}

/// What a delivery resolves to in the current config.
#[derive(Clone)]
struct Prepared {
    sink: Arc<Sink>,
    route: Arc<Route>,
    rule: usize,
    /// The mapped document, before `when:`/`script:`.
    doc: Value,
    /// Store sinks: the record key.
    key: Option<String>,
    /// The record a script sees as `current`: (tree, key) of this target
    /// when it is a store, else of the rule's first store target.
    current_at: Option<(String, String)>,
}

impl Prepared {
    fn rule(&self) -> &Rule {
        &self.route.rules[self.rule]
    }
}

/// Resolves route → rule → target → sink in the current config and maps
/// the document; a delivery whose route, rule or sink is gone fails with a
/// clear error (retry it once the config has it again).
fn prepare(rt: &Runtime, event: &EventV1, payload: &Value, d: &DeliveryV1) -> Result<Prepared, (Outcome, RetryPolicy)> {
    let failed = |error: String| (Outcome::Failed { error }, RetryPolicy::default());
    let config = rt.config();
    let route = config
        .route(&event.route)
        .ok_or_else(|| failed(format!("route `{}` is no longer in the config", event.route)))?;
    let rule = route
        .rules
        .get(d.rule as usize)
        .ok_or_else(|| failed(format!("rule {} of route `{}` is no longer in the config", d.rule_name, event.route)))?;
    let target = rule
        .targets
        .get(d.target as usize)
        .filter(|t| t.sink == d.sink)
        .ok_or_else(|| failed(format!("rule {} no longer sends to sink `{}`", d.rule_name, d.sink)))?;
    let sink =
        config.sinks.get(&d.sink).ok_or_else(|| failed(format!("sink `{}` is no longer in the config", d.sink)))?;
    let ctx = Context { body: payload, params: &event.params, query: &event.query, headers: &event.headers };
    let store_key = |t: &Target| match config.sinks.get(&t.sink).map(|s| &s.kind) {
        Some(SinkKind::Store(store)) => {
            t.key.as_ref().or(store.key.as_ref()).and_then(|k| k.eval_string(&ctx)).map(|k| (store.tree.clone(), k))
        }
        _ => None,
    };
    let own = store_key(target);
    let current_at = match rule.has_scripts() {
        true => own.clone().or_else(|| rule.targets.iter().find_map(store_key)),
        false => None,
    };
    Ok(Prepared {
        sink: sink.clone(),
        route: route.clone(),
        rule: d.rule as usize,
        doc: rule.document(&ctx),
        key: own.map(|(_, k)| k),
        current_at,
    })
}

/// The scripts' verdict as a delivery outcome. A script error is final
/// (running the same script on the same event fails the same way): fix the
/// script, then `router events retry`.
fn script_outcome(o: script::Outcome) -> Outcome {
    match o {
        script::Outcome::NotApplicable(reason) => Outcome::Skipped { reason },
        script::Outcome::Dropped(reason) => Outcome::Dropped { reason },
        script::Outcome::Error(e) => Outcome::Failed { error: e.to_string() },
    }
}

/// The document an HTTP delivery sends: mapped, then through `when:` and
/// `script:` with the rule's store record as `current`.
fn http_document(rt: &Runtime, p: &Prepared, event: &EventV1, payload: &Value) -> Result<Value, Outcome> {
    let rule = p.rule();
    if !rule.has_scripts() {
        return Ok(p.doc.clone());
    }
    let current = match &p.current_at {
        Some((tree, key)) => {
            rt.data.records.get(tree, key).map_err(|e| Outcome::Retry { error: format!("store: {e}"), after: None })?
        }
        None => None,
    };
    rule.finish(p.doc.clone(), payload, event, current.as_ref()).map_err(script_outcome)
}

/// Who a store write comes from (`_sync_metadata` on the record).
fn sync_metadata(event: &EventV1) -> SyncMetadata {
    SyncMetadata {
        log_id: event.id,
        event_id: event.event_id.clone(),
        event_type: event.event_type.clone(),
        route: event.route.clone(),
        received_at: event.received_at.clone(),
        event_time: event.event_time.clone(),
    }
}

/// One store delivery: the scripts run inside the store's swap loop, on
/// the record as it is at that moment.
fn attempt(rt: &Runtime, event: &EventV1, payload: &Value, d: &DeliveryV1) -> (Outcome, RetryPolicy) {
    match prepare(rt, event, payload, d) {
        Ok(p) => (apply_store(rt, &p, event, payload, |_| {}), p.sink.retry),
        Err(failed) => failed,
    }
}

/// Writes a prepared store delivery; `written` sees the document handed
/// to the store (after scripts, before merging).
fn apply_store(
    rt: &Runtime,
    p: &Prepared,
    event: &EventV1,
    payload: &Value,
    mut written: impl FnMut(&Value),
) -> Outcome {
    match (&p.sink.kind, &p.key) {
        (SinkKind::Store(store), Some(key)) => {
            let rule = p.rule();
            let outcome = rt.data.records.apply(&store.tree, key, store.mode, &sync_metadata(event), |current| {
                let doc = rule.finish(p.doc.clone(), payload, event, current).map_err(script_outcome)?;
                written(&doc);
                Ok(doc)
            });
            if outcome == Outcome::Delivered {
                rt.record_changed(&store.tree, key);
            }
            outcome
        }
        (SinkKind::Store(_), None) => Outcome::Failed { error: "the record key is missing from the event".into() },
        (SinkKind::Http(_), _) => Outcome::Retry { error: "sink changed type".into(), after: None },
    }
}

/// What one delivery came to in a rehearsal (`router check`'s route tests).
#[derive(Debug, Clone)]
pub struct Rehearsed {
    pub sink: String,
    pub rule: String,
    /// `delivered`, `skipped`, `dropped` or `failed`.
    pub status: &'static str,
    /// What the sink received: the store document before merging, or the
    /// HTTP body (envelope included) that would have been posted.
    pub document: Option<Value>,
    pub error: Option<String>,
}

/// Runs every delivery of event `id` once, through the same steps as the
/// dispatcher, except that HTTP sinks are not called: their body is built
/// and returned. Store sinks write to `rt`'s (throwaway) store.
pub fn rehearse(rt: &Runtime, id: u64) -> Vec<Rehearsed> {
    let Some((event, payload)) = load_event(rt, id) else { return Vec::new() };
    let deliveries = rt.data.log.deliveries(id).unwrap_or_default();
    deliveries
        .into_iter()
        .map(|d| {
            let mut document = None;
            let outcome = match prepare(rt, &event, &payload, &d) {
                Err((outcome, _)) => outcome,
                Ok(p) => match &p.sink.kind {
                    SinkKind::Http(h) => match http_document(rt, &p, &event, &payload) {
                        Ok(doc) => {
                            let event_id = delivery_event_id(&event);
                            let envelope = Envelope { event_type: &event.event_type, event_id: &event_id };
                            document = Some(h.item(doc, &envelope));
                            Outcome::Delivered
                        }
                        Err(outcome) => outcome,
                    },
                    SinkKind::Store(_) => apply_store(rt, &p, &event, &payload, |doc| document = Some(doc.clone())),
                },
            };
            let (status, error) = match outcome {
                Outcome::Delivered => ("delivered", None),
                Outcome::Skipped { reason } => ("skipped", Some(reason)),
                Outcome::Dropped { reason } => ("dropped", Some(reason)),
                Outcome::Retry { error, .. } | Outcome::Failed { error } => ("failed", Some(error)),
            };
            Rehearsed { sink: d.sink, rule: d.rule_name, status, document, error }
        })
        .collect()
}
