//! Group commit: the writes that must be durable before an answer (ingest's
//! appends, the dispatcher's outcomes) queue here, and a few committers
//! each take what has queued and commit it in one transaction. Under load
//! many requests share one `COMMIT` (one WAL flush); alone, a request
//! waits for nothing but its own. An event, its deliveries and its dedup
//! key are one statement, so they land together or not at all; a
//! duplicate of an event another router is committing waits for that
//! commit (`ON CONFLICT` does) and is then answered with the first id.

use super::rows::{self, States};
use super::Hot;
use crate::storage::record::{DeliveryV1, EventV1};
use crate::storage::{Appended, LogError, NewDelivery, NewEvent, Parsed, StoredEvent};
use deadpool_postgres::Pool;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// The most jobs one transaction takes.
const MAX_GROUP: usize = 256;

/// The channel routers notify on when work became due.
pub const CHANNEL: &str = "router_work";

pub enum Job {
    Append(Box<Prepared>, oneshot::Sender<Result<Appended, LogError>>),
    Record(Vec<DeliveryV1>, oneshot::Sender<Result<(), LogError>>),
}

/// An event made ready on the appending thread: its record (id 0 until
/// committed), its planned deliveries as arrays, and its body.
pub struct Prepared {
    event: EventV1,
    dedup_id: Option<String>,
    meta: String,
    planned: Planned,
    body: bytes::Bytes,
    payload: Parsed,
}

#[derive(Default)]
struct Planned {
    rule: Vec<i32>,
    target: Vec<i32>,
    rule_name: Vec<String>,
    sink: Vec<String>,
    order_key: Vec<Option<String>>,
}

impl Prepared {
    pub fn new(e: NewEvent, deliveries: Vec<NewDelivery>, received_ms: i64) -> Self {
        let mut planned = Planned::default();
        for d in &deliveries {
            planned.rule.push(d.rule as i32);
            planned.target.push(d.target as i32);
            planned.rule_name.push(d.rule_name.clone());
            planned.sink.push(d.sink.clone());
            planned.order_key.push(d.order_key.clone());
        }
        let dedup_id = e.event_id.clone().filter(|_| e.dedup);
        let event = EventV1 {
            id: 0,
            route: e.route,
            event_type: e.event_type,
            event_id: e.event_id,
            event_time: e.event_time,
            received_at: crate::event::format_ms(received_ms),
            received_ms,
            params: e.params,
            query: e.query,
            headers: e.headers,
            deliveries: deliveries.len() as u32,
        };
        let meta = rows::meta_text(&event);
        Self { event, dedup_id, meta, planned, body: e.body, payload: e.payload }
    }
}

/// An event with its deliveries, unless its dedup key is taken; the
/// event's id either way (`inserted` tells which).
const APPEND: &str = "
WITH e AS (
    INSERT INTO router_events (route, event_type, event_id, dedup_id, event_time, received_ms, meta, body, deliveries)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (route, dedup_id) DO NOTHING
    RETURNING id),
d AS (
    INSERT INTO router_deliveries (event, idx, rule, target, rule_name, sink, order_key, status, attempts, due_ms, attempts_log)
    SELECT e.id, p.n - 1, p.rule, p.target, p.rule_name, p.sink, p.order_key, 'pending', 0, $6, '[]'
    FROM e, unnest($10::integer[], $11::integer[], $12::text[], $13::text[], $14::text[])
        WITH ORDINALITY AS p(rule, target, rule_name, sink, order_key, n))
SELECT id FROM e";

/// The id a dedup key belongs to (read after the `APPEND` that lost).
const FIRST: &str = "SELECT id FROM router_events WHERE route = $1 AND dedup_id = $2";

/// Deliveries' next states; their claims end.
pub const RECORD: &str = "
UPDATE router_deliveries d
SET status = u.status, attempts = u.attempts, due_ms = u.due_ms, last_error = u.last_error,
    attempts_log = u.attempts_log, claimed_by = NULL, claimed_until = NULL
FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::integer[], $5::bigint[], $6::text[], $7::jsonb[])
    AS u(event, idx, status, attempts, due_ms, last_error, attempts_log)
WHERE d.event = u.event AND d.idx = u.idx";

/// Runs `committers` committers over `jobs` until the sender is dropped.
pub fn start(pool: Pool, jobs: mpsc::UnboundedReceiver<Job>, hot: Arc<Hot>, committers: usize) {
    let jobs = Arc::new(Mutex::new(jobs));
    for _ in 0..committers {
        let (pool, jobs, hot) = (pool.clone(), jobs.clone(), hot.clone());
        tokio::spawn(async move {
            // A database that is down fails every group: say so once per interval.
            let faults = crate::telemetry::fault::Fault::default();
            loop {
                let group = {
                    let mut rx = jobs.lock().await;
                    let Some(first) = rx.recv().await else { return };
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    group
                };
                match commit_group(&pool, group, &hot).await {
                    Ok(()) => _ = faults.ok(),
                    Err(e) => {
                        if let Some(times) = faults.failed() {
                            tracing::error!(error = %e, times, "PostgreSQL refused a group of writes; they were answered with the error.");
                        }
                    }
                }
            }
        });
    }
}

/// Commits a group and answers its jobs. When the transaction fails on
/// something one job carried (not the connection), each job is committed
/// alone, so one bad event does not fail the requests it shared with.
async fn commit_group(pool: &Pool, group: Vec<Job>, hot: &Hot) -> Result<(), LogError> {
    let (appends, records) = split(group);
    let preps: Vec<&Prepared> = appends.iter().map(|(p, _)| &**p).collect();
    let states: Vec<&DeliveryV1> = records.iter().flat_map(|(s, _)| s.iter()).collect();
    match transaction(pool, &preps, &states).await {
        Ok(ids) => {
            answer(appends, records, ids, hot);
            Ok(())
        }
        Err(Failure::Data(_)) if appends.len() + records.len() > 1 => {
            for (p, tx) in appends {
                match transaction(pool, &[&*p], &[]).await {
                    Ok(ids) => answer(vec![(p, tx)], vec![], ids, hot),
                    Err(e) => _ = tx.send(Err(e.into())),
                }
            }
            for (s, tx) in records {
                let states: Vec<&DeliveryV1> = s.iter().collect();
                let _ = tx.send(transaction(pool, &[], &states).await.map(|_| ()).map_err(LogError::from));
            }
            Ok(())
        }
        Err(e) => {
            let e: LogError = e.into();
            for (_, tx) in appends {
                let _ = tx.send(Err(e.clone()));
            }
            for (_, tx) in records {
                let _ = tx.send(Err(e.clone()));
            }
            Err(e)
        }
    }
}

type AppendJob = (Box<Prepared>, oneshot::Sender<Result<Appended, LogError>>);
type RecordJob = (Vec<DeliveryV1>, oneshot::Sender<Result<(), LogError>>);

fn split(group: Vec<Job>) -> (Vec<AppendJob>, Vec<RecordJob>) {
    let (mut appends, mut records) = (Vec::new(), Vec::new());
    for job in group {
        match job {
            Job::Append(p, tx) => appends.push((p, tx)),
            Job::Record(s, tx) => records.push((s, tx)),
        }
    }
    (appends, records)
}

/// Why a transaction failed: the connection (every job fails), or
/// something in the data (the jobs are tried one by one).
enum Failure {
    Connection(String),
    Data(String),
}

impl From<Failure> for LogError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Connection(e) | Failure::Data(e) => LogError::Unavailable(format!("postgres: {e}")),
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        let text = crate::pg::describe(&e);
        match e.as_db_error().map(|db| db.code().code().to_string()) {
            // Classes 22 (data exception) and 23 (integrity): what a job carried.
            Some(code) if code.starts_with("22") || code.starts_with("23") => Failure::Data(text),
            _ => Failure::Connection(text),
        }
    }
}

/// One transaction: every append, every record, then `COMMIT`. Returns
/// each append's outcome, in order.
async fn transaction(pool: &Pool, appends: &[&Prepared], states: &[&DeliveryV1]) -> Result<Vec<Appended>, Failure> {
    let mut client = pool.get().await.map_err(|e| Failure::Connection(crate::pg::describe_pool(&e)))?;
    let tx = client.transaction().await?;
    let (append, first) = (tx.prepare_cached(APPEND).await?, tx.prepare_cached(FIRST).await?);
    // Sent together: the statements are pipelined on the connection.
    let (txr, append) = (&tx, &append);
    let inserted = futures_util::future::try_join_all(appends.iter().map(|p| {
        let e = &p.event;
        let deliveries = e.deliveries as i32;
        let (pl, body) = (&p.planned, &p.body[..]);
        async move {
            txr.query_opt(
                append,
                &[
                    &e.route,
                    &e.event_type,
                    &e.event_id,
                    &p.dedup_id,
                    &e.event_time,
                    &e.received_ms,
                    &p.meta,
                    &body,
                    &deliveries,
                    &pl.rule,
                    &pl.target,
                    &pl.rule_name,
                    &pl.sink,
                    &pl.order_key,
                ],
            )
            .await
        }
    }))
    .await?;
    let mut outcomes = Vec::with_capacity(appends.len());
    let mut due = false;
    for (p, row) in appends.iter().zip(inserted) {
        outcomes.push(match row {
            Some(row) => {
                due |= p.event.deliveries > 0;
                Appended::New(row.get::<_, i64>(0) as u64)
            }
            None => {
                let row = tx.query_one(&first, &[&p.event.route, &p.dedup_id]).await?;
                Appended::Duplicate(row.get::<_, i64>(0) as u64)
            }
        });
    }
    if !states.is_empty() {
        let mut s = States::default();
        states.iter().for_each(|d| s.push(d));
        let record = tx.prepare_cached(RECORD).await?;
        tx.execute(&record, &[&s.event, &s.idx, &s.status, &s.attempts, &s.due_ms, &s.last_error, &s.attempts_log])
            .await?;
        // A retry due now (Retry-After: 0) or a successor of an ordering
        // key may be for another router to run.
        due = true;
    }
    if due {
        // Delivered at commit, to every router listening (this one too).
        tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Answers a committed group; new events go to the hot set, parsed, for
/// this router's dispatcher.
fn answer(appends: Vec<AppendJob>, records: Vec<RecordJob>, ids: Vec<Appended>, hot: &Hot) {
    for ((p, tx), outcome) in appends.into_iter().zip(ids) {
        if let Appended::New(id) = outcome {
            let p = *p;
            let mut event = p.event;
            event.id = id;
            hot.insert(Arc::new(StoredEvent::new(event, p.body, p.payload)));
        }
        let _ = tx.send(Ok(outcome));
    }
    for (_, tx) in records {
        let _ = tx.send(Ok(()));
    }
}
