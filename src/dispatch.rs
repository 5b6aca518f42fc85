//! Background delivery: claims due deliveries from the log, builds each
//! rule's document, hands it to the sink and records the next state
//! (`delivery::next` decides it).
//!
//! A claim comes with its event already parsed (the log keeps what ingest
//! just appended), so nothing is read back or parsed twice. Store
//! deliveries run in the blocking hop that claims them: their writes take
//! microseconds, so one hop per round beats a task per delivery; their
//! records are synced for many rounds at once (`Unsynced`) before their
//! outcomes are recorded. HTTP deliveries run as async tasks, at most
//! `concurrency` per sink: a slow or dead sink only holds its own
//! deliveries (released claims stay due in the log), never ingest or other
//! sinks. Nothing here is lost on a crash: a delivery run but not recorded
//! is due again after a restart (store writes are idempotent per event;
//! HTTP receivers get a stable `x-router-event-id` to dedup on).

use crate::mapping::Context;
use crate::route::{Route, Rule, Target};
use crate::runtime::Runtime;
use crate::script;
use crate::sink::http::Envelope;
use crate::sink::store::SyncMetadata;
use crate::sink::{Outcome, RetryPolicy, Sink, SinkKind};
use crate::storage::embedded::records::Epoch;
use crate::storage::{Claimed, DeliveryKey, DeliveryStatus, DeliveryV1, EventV1, StoredEvent};
use crate::telemetry::tap::Tapped;
use crate::telemetry::trace;
use crate::telemetry::DeliveryVerdict;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

/// Due deliveries claimed per round, of each sink (a limit over all sinks
/// would let the first sink of the claim's walk starve the others). A
/// round's documents are all in memory at once, so the bound is this times
/// the sinks with work due: 1,024 put the router's peak at ~100 MiB under a
/// c64 load with one store sink, 256 at ~75 MiB with the same throughput
/// (docs/benchmarks.md).
const SCAN: usize = 256;
/// Longest sleep between rounds when nothing is due (new work wakes us sooner).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How long shutdown waits for HTTP deliveries in flight (unfinished ones stay due).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One attempt's result, ready to record.
type Settled = (Claimed, Outcome, RetryPolicy);

/// Runs until `stop` turns true; work in progress finishes first.
pub async fn run(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let client = crate::sink::http::client();
    let mut slots = Slots::default();
    let mut tasks = JoinSet::new();
    let mut unsynced = Unsynced::default();
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
        let now = rt.clock.now_ms();
        // Only what can start is claimed: a busy sink's queue stays untouched.
        let room = room(&rt.config(), &mut slots, true);
        // One blocking hop claims the due deliveries and runs the store ones.
        let for_blocking = rt.clone();
        let due = match tokio::task::spawn_blocking(move || claim_and_store(&for_blocking, now, &room)).await {
            Ok(Ok((due, applied))) => {
                unsynced.add(applied, now);
                due
            }
            Ok(Err(e)) => {
                if let Some(times) = rt.outcome_writes.failed() {
                    tracing::error!(error = %e, times, "Cannot read the due queue; backing off.");
                }
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "Claiming deliveries panicked.");
                Vec::new()
            }
        };
        let config = rt.config();
        let mut batched: HashMap<String, Vec<Claimed>> = HashMap::new();
        let mut unstarted = Vec::new();
        let mut started = 0;
        // When a batch that is not full yet must go anyway (its oldest waited max_wait).
        let mut batch_due: Option<i64> = None;
        for c in due {
            let Some(sink) = config.sinks.get(&c.delivery.sink) else {
                unreachable!("claim_and_store runs the deliveries of unknown sinks")
            };
            let Some(concurrency) = sink.concurrency() else {
                unreachable!("claim_and_store runs the local deliveries")
            };
            if sink.batch().is_some() {
                batched.entry(c.delivery.sink.clone()).or_default().push(c);
                continue;
            }
            let limit = slots.of(&c.delivery.sink, concurrency);
            // A saturated sink's deliveries wait in the log; the others go on.
            let Ok(permit) = limit.try_acquire_owned() else {
                unstarted.push(DeliveryKey::of(&c.delivery));
                continue;
            };
            started += 1;
            let (rt, client, postgres) = (rt.clone(), client.clone(), matches!(sink.kind, SinkKind::Postgres(_)));
            let span = attempt_span(std::slice::from_ref(&c));
            tasks.spawn(
                async move {
                    match postgres {
                        true => deliver_postgres(&rt, vec![c]).await,
                        false => deliver_http(&rt, &client, c).await,
                    }
                    drop(permit);
                    rt.work.notify_one();
                }
                .instrument(span),
            );
        }
        for (name, mut cs) in batched {
            let Some(sink) = config.sinks.get(&name) else { continue };
            let (Some(batch), Some(concurrency)) = (sink.batch(), sink.concurrency()) else { continue };
            let limit = slots.of(&name, concurrency);
            let postgres = matches!(sink.kind, SinkKind::Postgres(_));
            while !cs.is_empty() {
                // Full batches go; what is left short of max_events (a lone
                // one, or the rest after full ones) waits for company until
                // its oldest has waited max_wait.
                let oldest = cs.iter().filter_map(|c| c.delivery.next_attempt_ms).min().unwrap_or(now);
                let send_by = oldest + batch.max_wait.as_millis() as i64;
                if cs.len() < batch.max_events && send_by > now {
                    batch_due = Some(batch_due.map_or(send_by, |b| b.min(send_by)));
                    break;
                }
                let Ok(permit) = limit.clone().try_acquire_owned() else { break };
                let chunk: Vec<Claimed> = cs.drain(..cs.len().min(batch.max_events)).collect();
                started += chunk.len();
                let (rt, client) = (rt.clone(), client.clone());
                let span = attempt_span(&chunk);
                tasks.spawn(
                    async move {
                        match postgres {
                            true => deliver_postgres(&rt, chunk).await,
                            false => deliver_http_batch(&rt, &client, chunk).await,
                        }
                        drop(permit);
                        rt.work.notify_one();
                    }
                    .instrument(span),
                );
            }
            unstarted.extend(cs.iter().map(|c| DeliveryKey::of(&c.delivery)));
        }
        rt.data.log.release(&unstarted);
        if unsynced.due(now) {
            unsynced.commit(&rt).await;
        }
        if started == 0 {
            // Nothing could start: what is due now waits for a delivery in
            // flight (ordering, sink limits), which notifies when it ends.
            let next = rt.data.log.next_due_after(now);
            let wait = match next.into_iter().chain(batch_due).chain(unsynced.deadline()).min() {
                Some(at) => Duration::from_millis((at - now).clamp(1, IDLE_POLL.as_millis() as i64) as u64),
                None => IDLE_POLL,
            };
            tokio::select! {
                _ = rt.work.notified() => {}
                // Work another router sharing the log made due (or gave up).
                _ = rt.data.log.work_elsewhere() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("HTTP deliveries still running at shutdown; they stay due and run after restart.");
    }
    unsynced.commit(&rt).await;
    last_store_round(&rt).await;
}

/// At shutdown, the store deliveries due now run once more: they are local
/// and quick, and a deploy's SIGTERM right after an acknowledged event
/// should not leave its record behind until the restart. HTTP deliveries
/// stay due (they run after the restart).
async fn last_store_round(rt: &Arc<Runtime>) {
    let (for_blocking, now) = (rt.clone(), rt.clock.now_ms());
    let room = room(&rt.config(), &mut Slots::default(), false);
    let Ok(Ok((http, applied))) = tokio::task::spawn_blocking(move || claim_and_store(&for_blocking, now, &room)).await
    else {
        return;
    };
    rt.data.log.release(&http.iter().map(|c| DeliveryKey::of(&c.delivery)).collect::<Vec<_>>());
    let mut unsynced = Unsynced::default();
    unsynced.add(applied, now);
    unsynced.commit(rt).await;
}

/// One attempt of one HTTP delivery, recorded. A rule with `when:` or
/// `script:` builds its document on the blocking pool, so a slow script
/// holds a blocking thread, never an async worker.
async fn deliver_http(rt: &Arc<Runtime>, client: &reqwest::Client, c: Claimed) {
    let (event, d) = (&c.event.event, &c.delivery);
    let (outcome, policy) = match prepare(rt, &c.event, d) {
        Err(failed) => failed,
        Ok(p) => {
            let policy = p.sink.retry;
            let built = if p.rule().has_scripts() {
                let (rt, stored, p) = (rt.clone(), c.event.clone(), p.clone());
                tokio::task::spawn_blocking(move || remote_document(&rt, &p, &stored))
                    .await
                    .unwrap_or_else(|e| Err(Outcome::Failed { error: format!("the script panicked: {e}") }))
            } else {
                Ok(p.doc.clone().unwrap_or_default())
            };
            match (built, &p.sink.kind) {
                (Err(outcome), _) => (outcome, policy),
                (Ok(doc), SinkKind::Http(h)) => {
                    let event_id = delivery_event_id(event);
                    let envelope = Envelope { event_type: &event.event_type, event_id: &event_id };
                    let last_try = d.attempts + 1 >= p.sink.retry.attempts;
                    (h.deliver(client, &h.item(doc, &envelope), &envelope, last_try).await, policy)
                }
                (Ok(_), _) => (sink_changed_type(), policy),
            }
        }
    };
    record_all(rt, vec![(c, outcome, policy)]).await;
}

/// A delivery claimed for one kind of sink whose sink, after a reload,
/// is another kind: it runs again, as the new kind.
fn sink_changed_type() -> Outcome {
    Outcome::Retry { error: "sink changed type".into(), after: None }
}

/// One attempt of postgres deliveries (one, or a batch; all to one sink):
/// their documents written in one transaction, each outcome recorded. A
/// rule's scripts run inside it, with the row under the document's key as
/// `current`.
async fn deliver_postgres(rt: &Arc<Runtime>, claims: Vec<Claimed>) {
    let mut settled = Vec::new();
    let (mut members, mut items) = (Vec::new(), Vec::new());
    let mut sink = None;
    for c in claims {
        let p = match prepare(rt, &c.event, &c.delivery) {
            Ok(p) if matches!(p.sink.kind, SinkKind::Postgres(_)) => p,
            Ok(p) => {
                settled.push((c, sink_changed_type(), p.sink.retry));
                continue;
            }
            Err((outcome, policy)) => {
                settled.push((c, outcome, policy));
                continue;
            }
        };
        let doc = p.doc.clone().unwrap_or_else(|| p.rule().document(&context(&c.event, c.event.payload())));
        let finish = p.rule().has_scripts().then(|| {
            let (route, rule, stored) = (p.route.clone(), p.rule, c.event.clone());
            Arc::new(move |doc: Value, current: Option<&Value>| {
                route.rules[rule].run_scripts(doc, stored.payload(), &stored.event, current).map_err(script_outcome)
            }) as crate::sink::postgres::Finish
        });
        items.push(crate::sink::postgres::Item { doc, finish });
        members.push(c);
        sink = Some(p.sink);
    }
    if let Some(sink) = sink {
        if let SinkKind::Postgres(pg) = &sink.kind {
            let outcomes = pg.write(&items).await;
            settled.extend(members.into_iter().zip(outcomes).map(|(c, o)| (c, o, sink.retry)));
        }
    }
    record_all(rt, settled).await;
}

/// Claims what is due and runs one attempt of each local delivery (store
/// sinks, and sinks gone from the config, which fail with a clear error)
/// right away: their writes take microseconds. Returns the HTTP claims and
/// the local ones run, whose records are not synced yet (`Unsynced`).
fn claim_and_store(
    rt: &Runtime,
    now: i64,
    room: &crate::storage::Room,
) -> Result<(Vec<Claimed>, Applied), crate::storage::LogError> {
    let due = rt.data.log.claim(now, SCAN, room)?;
    let config = rt.config();
    let (http, local): (Vec<Claimed>, Vec<Claimed>) =
        due.into_iter().partition(|c| config.sinks.get(&c.delivery.sink).is_some_and(|s| s.concurrency().is_some()));
    // Taken before the writes: `sync_since` then tells whether one was undone.
    let epoch = rt.data.records.epoch();
    let settled = local
        .into_iter()
        .map(|c| {
            let span = attempt_span(std::slice::from_ref(&c));
            let (outcome, policy) = span.in_scope(|| attempt(rt, &c.event, &c.delivery));
            traced(&span, [&outcome]);
            (c, outcome, policy)
        })
        .collect();
    Ok((http, Applied { epoch, settled }))
}

/// How many deliveries each remote sink can start now: its free slots
/// (`concurrency` minus those in flight), times `batch.max_events` for a
/// batched one (a batch waiting to fill must see what is due). `open:
/// false` gives every remote sink no room (shutdown's last store round).
fn room(config: &crate::config::Config, slots: &mut Slots, open: bool) -> crate::storage::Room {
    config
        .sinks
        .iter()
        .filter_map(|(name, sink)| {
            let concurrency = sink.concurrency()?;
            let free = if open { slots.of(name, concurrency).available_permits() } else { 0 };
            Some((name.clone(), free * sink.batch().map_or(1, |b| b.max_events)))
        })
        .collect()
}

/// Each remote sink's delivery slots (its `concurrency:`), sized again
/// when a reload changes it.
#[derive(Default)]
struct Slots(HashMap<String, SinkSlots>);

struct SinkSlots {
    size: usize,
    free: Arc<Semaphore>,
    /// Slots to take away once deliveries in flight give them back (a
    /// smaller `concurrency:` never lets more run than it says).
    owed: usize,
}

impl Slots {
    /// The slots of `sink`, `concurrency` of them (called every round, which
    /// also takes back the slots a smaller size still owes).
    fn of(&mut self, sink: &str, concurrency: usize) -> Arc<Semaphore> {
        let slots = match self.0.get_mut(sink) {
            Some(slots) => slots,
            None => self.0.entry(sink.to_string()).or_insert_with(|| SinkSlots {
                size: concurrency,
                free: Arc::new(Semaphore::new(concurrency)),
                owed: 0,
            }),
        };
        if concurrency > slots.size {
            let more = concurrency - slots.size;
            let repaid = more.min(slots.owed);
            slots.owed -= repaid;
            slots.free.add_permits(more - repaid);
        } else {
            slots.owed += slots.size - concurrency;
        }
        slots.size = concurrency;
        slots.owed -= slots.free.forget_permits(slots.owed);
        slots.free.clone()
    }
}

/// Local deliveries run in one `claim_and_store`, and the records epoch
/// from before their writes.
struct Applied {
    epoch: Epoch,
    settled: Vec<Settled>,
}

/// Store deliveries run whose records are not synced yet. They are synced
/// together (one `fdatasync` for many rounds) and only then recorded: an
/// outcome on disk without its record would be a lost update after a
/// crash. Their claims stay held meanwhile, and reads already see the
/// records. Waiting for company is what keeps the records' syncs from
/// competing with the event log's on the disk (two sync streams cost each
/// a quarter of its rate here), so it is bounded: `COMMIT_EVERY`, `SCAN`
/// deliveries, or at once when one is ordered (the next of its key waits
/// for it).
#[derive(Default)]
struct Unsynced {
    settled: Vec<Settled>,
    /// The epoch before the oldest write held.
    epoch: Option<Epoch>,
    /// When the oldest was run.
    since_ms: i64,
}

/// The longest a run store delivery waits for its records' sync.
const COMMIT_EVERY_MS: i64 = 10;

impl Unsynced {
    /// Holds `applied`, run at `now` (the dispatcher's clock).
    fn add(&mut self, applied: Applied, now: i64) {
        if applied.settled.is_empty() {
            return;
        }
        if self.settled.is_empty() {
            (self.epoch, self.since_ms) = (Some(applied.epoch), now);
        }
        self.settled.extend(applied.settled);
    }

    /// When the held deliveries must be committed (`None`: none held).
    fn deadline(&self) -> Option<i64> {
        (!self.settled.is_empty()).then_some(self.since_ms + COMMIT_EVERY_MS)
    }

    fn due(&self, now: i64) -> bool {
        self.deadline().is_some_and(|at| {
            at <= now
                || self.settled.len() >= SCAN
                || self.settled.iter().any(|(c, _, _)| c.delivery.order_key.is_some())
        })
    }

    /// Syncs the records of the held deliveries, then records their
    /// outcomes. When the sync fails (or a write was undone meanwhile) the
    /// claims are given back: the deliveries run again.
    async fn commit(&mut self, rt: &Arc<Runtime>) {
        let (Some(epoch), settled) = (self.epoch.take(), std::mem::take(&mut self.settled)) else { return };
        let for_blocking = rt.clone();
        let synced = tokio::task::spawn_blocking(move || for_blocking.data.records.sync_since(epoch))
            .await
            .unwrap_or_else(|e| Err(crate::storage::LogError::Unavailable(format!("the records sync panicked: {e}"))));
        match synced {
            Ok(()) => record_all(rt, settled).await,
            Err(e) => {
                let keys: Vec<DeliveryKey> = settled.iter().map(|(c, _, _)| DeliveryKey::of(&c.delivery)).collect();
                rt.data.log.release(&keys);
                if let Some(times) = rt.outcome_writes.failed() {
                    tracing::error!(error = %e, times, "Cannot sync the store's records; the deliveries run again. Backing off.");
                }
            }
        }
    }
}

/// The trace span of one attempt of `claims`: one delivery, or a batch's
/// (all to one sink).
fn attempt_span(claims: &[Claimed]) -> tracing::Span {
    let first = &claims[0];
    let (event, d) = (&first.event.event, &first.delivery);
    trace::delivery(&d.sink, &event.route, d.event, claims.len(), d.attempts + 1)
}

/// Puts an attempt's outcome on its span: a batch's worst.
fn traced<'a>(span: &tracing::Span, outcomes: impl IntoIterator<Item = &'a Outcome>) {
    if let Some(worst) = Outcome::worst(outcomes).filter(|_| !span.is_disabled()) {
        trace::settled(span, worst.name(), worst.error());
    }
}

/// Counts, logs and taps one recorded outcome of `event`'s delivery `d`.
fn report(rt: &Runtime, event: &EventV1, d: &DeliveryV1, outcome: &Outcome) {
    let (route, received_ms) = (event.route.as_str(), event.received_ms);
    let counted = match (outcome, d.status) {
        (Outcome::Delivered, _) => {
            tracing::debug!(route, event = d.event, sink = %d.sink, "Delivered.");
            // What the event waited in wall time: the stats are the operator's.
            let waited = (crate::event::now_ms() - received_ms).max(0) as u64;
            DeliveryVerdict::Ok { latency: std::time::Duration::from_millis(waited) }
        }
        (Outcome::Skipped { reason }, _) => {
            tracing::info!(route, event = d.event, sink = %d.sink, reason = %reason, "Delivery skipped.");
            DeliveryVerdict::Skipped
        }
        (Outcome::Dropped { reason }, _) => {
            tracing::info!(route, event = d.event, sink = %d.sink, reason = %reason, "Dropped by the script.");
            DeliveryVerdict::Skipped
        }
        (_, DeliveryStatus::Failed) => {
            tracing::error!(
                route, event = d.event, sink = %d.sink, attempts = d.attempts,
                error = d.last_error.as_deref().unwrap_or(""), "Delivery failed for good; retry it once the cause is fixed."
            );
            DeliveryVerdict::Failed
        }
        _ => {
            tracing::warn!(
                route, event = d.event, sink = %d.sink, attempts = d.attempts,
                error = d.last_error.as_deref().unwrap_or(""), "Delivery failed; will retry."
            );
            DeliveryVerdict::Retry
        }
    };
    rt.stats.delivery(route, &d.sink, counted);
    rt.tap.publish(|| {
        let mut line = Tapped::new("delivery", route, counted.name());
        line.event_type = Some(event.event_type.clone());
        line.id = Some(d.event);
        line.sink = Some(d.sink.clone());
        line.attempts = Some(d.attempts);
        line.reason = match outcome {
            Outcome::Skipped { reason } | Outcome::Dropped { reason } => Some(reason.to_string()),
            Outcome::Delivered => None,
            _ => d.last_error.clone(),
        };
        line
    });
}

/// The event id receivers see: the provider's, else `<route>-<log id>`;
/// the same on every retry, so they can dedup on it.
fn delivery_event_id(event: &EventV1) -> String {
    event.event_id.clone().unwrap_or_else(|| format!("{}-{}", event.route, event.id))
}

/// One attempt of a batch: one request with a JSON array, the outcome
/// recorded for each of its deliveries (retried as a unit). The documents
/// are built on the blocking pool (their rules may run scripts).
async fn deliver_http_batch(rt: &Arc<Runtime>, client: &reqwest::Client, claims: Vec<Claimed>) {
    let for_blocking = rt.clone();
    let Ok(built) = tokio::task::spawn_blocking(move || batch_items(&for_blocking, claims)).await else {
        tracing::error!("Building a batch panicked; its deliveries stay due.");
        return;
    };
    let BatchItems { items, members, mut settled, sink } = built;
    if let (Some(sink), false) = (sink, members.is_empty()) {
        if let SinkKind::Http(h) = &sink.kind {
            let first = &members[0].delivery;
            let id = format!("batch-{}-{}", first.event, first.index);
            let envelope = Envelope { event_type: "batch", event_id: &id };
            let last_try = members.iter().any(|c| c.delivery.attempts + 1 >= sink.retry.attempts);
            let outcome = h.deliver(client, &Value::Array(items), &envelope, last_try).await;
            settled.extend(members.into_iter().map(|c| (c, outcome.clone(), sink.retry)));
        }
    }
    record_all(rt, settled).await;
}

/// A batch ready to send: the items, the deliveries they stand for, and
/// those already settled (gone from the config, dropped by a script...).
struct BatchItems {
    items: Vec<Value>,
    members: Vec<Claimed>,
    settled: Vec<Settled>,
    sink: Option<Arc<Sink>>,
}

fn batch_items(rt: &Runtime, claims: Vec<Claimed>) -> BatchItems {
    let mut b = BatchItems { items: Vec::new(), members: Vec::new(), settled: Vec::new(), sink: None };
    for c in claims {
        let event = &c.event.event;
        let p = match prepare(rt, &c.event, &c.delivery) {
            Ok(p) => p,
            Err((outcome, policy)) => {
                b.settled.push((c, outcome, policy));
                continue;
            }
        };
        match (remote_document(rt, &p, &c.event), &p.sink.kind) {
            (Err(outcome), _) => b.settled.push((c, outcome, p.sink.retry)),
            (Ok(doc), SinkKind::Http(h)) => {
                let id = delivery_event_id(event);
                b.items.push(h.item(doc, &Envelope { event_type: &event.event_type, event_id: &id }));
                b.sink = Some(p.sink.clone());
                b.members.push(c);
            }
            (Ok(_), _) => b.settled.push((c, sink_changed_type(), p.sink.retry)),
        }
    }
    b
}

/// Decides each delivery's next state (`delivery::next`), records them in
/// one log write, then logs and counts each.
async fn record_all(rt: &Runtime, settled: Vec<Settled>) {
    if settled.is_empty() {
        return;
    }
    // A remote attempt runs in its span (see `run`): its outcome goes on it.
    traced(&tracing::Span::current(), settled.iter().map(|(_, outcome, _)| outcome));
    let now = rt.clock.now_ms();
    let mut events: Vec<Arc<StoredEvent>> = Vec::with_capacity(settled.len());
    let mut outcomes = Vec::with_capacity(settled.len());
    let mut states = Vec::with_capacity(settled.len());
    for (c, outcome, policy) in settled {
        // Only a retry reads the draw (its jitter): no random bytes for the rest.
        let draw = if matches!(outcome, Outcome::Retry { .. }) { crate::delivery::jitter_draw() } else { 0.5 };
        states.push(crate::delivery::next(&c.delivery, &outcome, &policy, now, draw));
        outcomes.push(outcome);
        events.push(c.event);
    }
    let reported = states.clone();
    match rt.data.log.record(states).await {
        Ok(()) => {
            if rt.outcome_writes.ok() {
                tracing::info!("Delivery outcomes are recorded again.");
            }
            for ((d, outcome), event) in reported.iter().zip(outcomes).zip(events) {
                report(rt, &event.event, d, &outcome);
            }
        }
        Err(e) => {
            let keys: Vec<DeliveryKey> = reported.iter().map(DeliveryKey::of).collect();
            rt.data.log.release(&keys);
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
    /// The mapped document, before `when:`/`script:`; `None` when the
    /// target stores the body as is (`Target::stores_body_as_is`).
    doc: Option<Value>,
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
fn prepare(rt: &Runtime, stored: &StoredEvent, d: &DeliveryV1) -> Result<Prepared, (Outcome, RetryPolicy)> {
    let event = &stored.event;
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
    let store_key = |t: &Target, body: &Value| match config.sinks.get(&t.sink).map(|s| &s.kind) {
        Some(SinkKind::Store(store)) => t
            .key
            .as_ref()
            .or(store.key.as_ref())
            .and_then(|k| k.eval_string(&context(stored, body)))
            .map(|k| (store.tree.clone(), k)),
        _ => None,
    };
    if target.stores_body_as_is {
        // Ingest's fields hold the key, unless a reload moved it since.
        let own = store_key(target, stored.fields()).or_else(|| store_key(target, stored.payload()));
        return Ok(Prepared {
            sink: sink.clone(),
            route: route.clone(),
            rule: d.rule as usize,
            doc: None,
            key: own.map(|(_, k)| k),
            current_at: None,
        });
    }
    let payload = stored.payload();
    let own = store_key(target, payload);
    let current_at = match rule.has_scripts() {
        true => own.clone().or_else(|| rule.targets.iter().find_map(|t| store_key(t, payload))),
        false => None,
    };
    Ok(Prepared {
        sink: sink.clone(),
        route: route.clone(),
        rule: d.rule as usize,
        doc: Some(rule.document(&context(stored, payload))),
        key: own.map(|(_, k)| k),
        current_at,
    })
}

/// The scripts' verdict as a delivery outcome. A script error is final
/// (running the same script on the same event fails the same way): fix the
/// script, then `router events retry`.
fn script_outcome(o: script::Refusal) -> Outcome {
    match o {
        script::Refusal::NotApplicable(reason) => Outcome::Skipped { reason },
        script::Refusal::Dropped(reason) => Outcome::Dropped { reason },
        script::Refusal::Error(e) => Outcome::Failed { error: e.to_string() },
    }
}

/// The document an HTTP delivery sends: mapped, then through `when:` and
/// `script:` with the rule's store record as `current`.
fn remote_document(rt: &Runtime, p: &Prepared, stored: &StoredEvent) -> Result<Value, Outcome> {
    let rule = p.rule();
    let doc = p.doc.clone().unwrap_or_else(|| rule.document(&context(stored, stored.payload())));
    if !rule.has_scripts() {
        return Ok(doc);
    }
    let current = match &p.current_at {
        Some((tree, key)) => {
            rt.data.records.get(tree, key).map_err(|e| Outcome::Retry { error: format!("store: {e}"), after: None })?
        }
        None => None,
    };
    rule.run_scripts(doc, stored.payload(), &stored.event, current.as_ref()).map_err(script_outcome)
}

/// What expressions read: `body` (`payload` or `fields`) with the event's
/// params, query and headers.
fn context<'a>(stored: &'a StoredEvent, body: &'a Value) -> Context<'a> {
    let e = &stored.event;
    Context { body, params: &e.params, query: &e.query, headers: &e.headers }
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
fn attempt(rt: &Runtime, stored: &StoredEvent, d: &DeliveryV1) -> (Outcome, RetryPolicy) {
    match prepare(rt, stored, d) {
        Ok(p) => {
            let retry = p.sink.retry;
            (apply_store(rt, p, stored, |_| {}), retry)
        }
        Err(failed) => failed,
    }
}

/// Writes a prepared store delivery; `written` sees the document handed
/// to the store (after scripts, before merging).
fn apply_store(rt: &Runtime, p: Prepared, stored: &StoredEvent, mut written: impl FnMut(&Value)) -> Outcome {
    let rule = &p.route.rules[p.rule];
    let event = &stored.event;
    match (&p.sink.kind, &p.key) {
        (SinkKind::Store(store), Some(key)) => {
            let meta = sync_metadata(event);
            let as_is = match (&p.doc, crate::payload::json_text(&event.headers, &stored.body)) {
                (None, Some(json)) => rt.data.records.upsert_as_is(&store.tree, key, &meta, json),
                _ => None,
            };
            // Otherwise the mapped document is moved in, not copied; should
            // the swap be retried (another write won the race) it is mapped
            // again.
            let mut mapped = p.doc;
            let outcome = as_is.unwrap_or_else(|| {
                rt.data.records.apply(&store.tree, key, store.mode, &meta, rule.has_scripts(), |current| {
                    let doc = mapped.take().unwrap_or_else(|| rule.document(&context(stored, stored.payload())));
                    let doc = rule.run_scripts(doc, stored.payload(), event, current).map_err(script_outcome)?;
                    written(&doc);
                    Ok(doc)
                })
            });
            if outcome == Outcome::Delivered {
                rt.record_changed(&store.tree, key);
            }
            outcome
        }
        (SinkKind::Store(_), None) => Outcome::Failed { error: "the record key is missing from the event".into() },
        (SinkKind::Http(_) | SinkKind::Postgres(_), _) => sink_changed_type(),
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
    let Ok(detail) = rt.data.log.detail(id) else { return Vec::new() };
    let body = serde_json::to_vec(&detail.payload).unwrap_or_default();
    let stored = StoredEvent::new(detail.event, body.into(), crate::storage::Parsed::Whole(detail.payload));
    let event = &stored.event;
    detail
        .delivery_records
        .into_iter()
        .map(|d| {
            let mut document = None;
            let outcome = match prepare(rt, &stored, &d) {
                Err((outcome, _)) => outcome,
                Ok(mut p) => match &p.sink.kind {
                    SinkKind::Http(h) => match remote_document(rt, &p, &stored) {
                        Ok(doc) => {
                            let event_id = delivery_event_id(event);
                            let envelope = Envelope { event_type: &event.event_type, event_id: &event_id };
                            document = Some(h.item(doc, &envelope));
                            Outcome::Delivered
                        }
                        Err(outcome) => outcome,
                    },
                    // The row it would write (its script sees no `current`:
                    // a rehearsal opens no database).
                    SinkKind::Postgres(_) => match remote_document(rt, &p, &stored) {
                        Ok(doc) => {
                            document = Some(doc);
                            Outcome::Delivered
                        }
                        Err(outcome) => outcome,
                    },
                    SinkKind::Store(_) => {
                        // A rehearsal shows the document, so it builds one.
                        if p.doc.is_none() {
                            p.doc = Some(p.rule().document(&context(&stored, stored.payload())));
                        }
                        apply_store(rt, p, &stored, |doc| document = Some(doc.clone()))
                    }
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

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn slots_follow_a_reloaded_concurrency_without_exceeding_it() {
        let mut slots = Slots::default();
        let busy: Vec<_> = (0..2).map(|_| slots.of("hook", 2).try_acquire_owned().unwrap()).collect();
        // Down to 1 while both run: none free until both have ended.
        assert_eq!(slots.of("hook", 1).available_permits(), 0);
        let mut busy = busy.into_iter();
        drop(busy.next());
        assert_eq!(slots.of("hook", 1).available_permits(), 0);
        drop(busy.next());
        assert_eq!(slots.of("hook", 1).available_permits(), 1);
        // Up to 3: two more at once.
        assert_eq!(slots.of("hook", 3).available_permits(), 3);
        // Down and up again before the busy ones end: the debt is cancelled, not doubled.
        let held: Vec<_> = (0..3).map(|_| slots.of("hook", 3).try_acquire_owned().unwrap()).collect();
        assert_eq!(slots.of("hook", 1).available_permits(), 0);
        assert_eq!(slots.of("hook", 3).available_permits(), 0);
        drop(held);
        assert_eq!(slots.of("hook", 3).available_permits(), 3);
    }
}
