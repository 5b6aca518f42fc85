//! The PostgreSQL backend: the event log in two tables shared by every
//! router on the database (`--store postgres://...`), for more traffic or
//! uptime than one box gives.
//!
//! Ingest's appends and the dispatcher's outcomes are group-committed
//! (`commit`); a 2xx follows the `COMMIT`. Any router claims due
//! deliveries with `FOR UPDATE SKIP LOCKED`, stamping its id and a lease
//! (`claimed_until`): a router that dies holding work loses it to the
//! others once the lease runs out. Of an ordering key only the oldest open
//! delivery is claimable, whoever holds it, so per-key order holds across
//! routers. Routers wake each other with `NOTIFY` after a commit that made
//! work due (`listen`); the dispatcher's timer covers retries due later.
//!
//! The driver's futures run on a runtime of the log's own, so the log's
//! blocking calls (made from the blocking pool, the CLI) never wait on a
//! worker they hold.

mod commit;
mod listen;
mod rows;
pub mod schema;

use crate::pg::Target;
use crate::storage::record::{Attempt, DeliveryStatus, DeliveryV1, EventStatus, EventV1};
use crate::storage::{
    Appended, Claimed, DeleteError, DeliveryKey, EventDetail, EventLog, EventSummary, ListQuery, LogError, NewDelivery,
    NewEvent, Parsed, Pending, Plan, Pruned, Requeued, Room, StoredEvent,
};
use deadpool_postgres::Pool;
use rows::{States, DELIVERY_COLUMNS, EVENT_COLUMNS};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// Connections to the database: the committers', and the rest for claims,
/// reads and maintenance (plus one for `LISTEN`, outside the pool).
const POOL_SIZE: usize = 8;
/// Transactions committing at once (each takes what queued meanwhile).
const COMMITTERS: usize = 4;
/// How long a caller waits for a connection before the store counts as down.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// Recently appended events kept parsed for this router's dispatcher.
const HOT_EVENTS: usize = 1024;
/// Events read per query by `list` and `replay`.
const PAGE: i64 = 500;

/// How a claim is held: by whom, and for how long.
#[derive(Debug, Clone)]
pub struct Lease {
    /// This router's id in `claimed_by` (host, pid and a random part).
    pub holder: String,
    /// How long a claim holds before any router may take it again: longer
    /// than the longest delivery attempt, or a slow one may run twice.
    pub length: Duration,
}

impl Lease {
    pub fn new(length: Duration) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let holder = format!("{}:{}:{}", host.trim(), std::process::id(), crate::random::hex(4));
        Self { holder, length }
    }
}

/// Why the log could not be opened. Never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Url(#[from] crate::pg::BadUrl),
    #[error("cannot connect to {target}: {detail}")]
    Connect { target: Target, detail: String },
    #[error("cannot migrate the router's tables in {target}: {detail}")]
    Migrate { target: Target, detail: String },
}

pub struct PgLog {
    pub target: Target,
    lease: Lease,
    pool: Pool,
    /// Runs the driver; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    jobs: mpsc::UnboundedSender<commit::Job>,
    hot: Arc<Hot>,
    /// Releases not yet applied: a claim waits for them, so what was given
    /// back is claimable again in the very next round.
    releases: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Notified when another router made work due.
    work: Arc<Notify>,
    fail_writes: AtomicBool,
}

impl Drop for PgLog {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async context forbids.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// What `PgLog::open` found.
#[derive(Debug, Default)]
pub struct Opened {
    /// Migrations applied now.
    pub migrated: Vec<i32>,
}

impl PgLog {
    /// Connects to `url`, brings the tables up to date, and starts the
    /// committers and the listener.
    pub fn open(url: &str, lease: Lease) -> Result<(Self, Opened), OpenError> {
        let (config, target) = crate::pg::parse(url)?;
        let pool = crate::pg::pool(config.clone(), POOL_SIZE, POOL_WAIT)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("router-postgres")
            .enable_all()
            .build()
            .map_err(|e| OpenError::Connect { target: target.clone(), detail: e.to_string() })?;
        let handle = runtime.handle().clone();
        let migrated = {
            let (pool, to) = (pool.clone(), target.clone());
            crate::storage::block_on(handle.spawn(async move {
                let target = to;
                let mut client = pool
                    .get()
                    .await
                    .map_err(|e| OpenError::Connect { target: target.clone(), detail: crate::pg::describe_pool(&e) })?;
                schema::migrate(&mut client)
                    .await
                    .map_err(|e| OpenError::Migrate { target: target.clone(), detail: e.to_string() })
            }))
            .map_err(|e| OpenError::Connect { target: target.clone(), detail: e.to_string() })??
        };
        let (jobs, rx) = mpsc::unbounded_channel();
        let hot = Arc::new(Hot::default());
        let work = Arc::new(Notify::new());
        {
            let _entered = handle.enter();
            commit::start(pool.clone(), rx, hot.clone(), COMMITTERS);
            tokio::spawn(listen::run(config, work.clone()));
        }
        let log = PgLog {
            target,
            lease,
            pool,
            runtime: Some(runtime),
            handle,
            jobs,
            hot,
            releases: Mutex::new(Vec::new()),
            work,
            fail_writes: AtomicBool::new(false),
        };
        Ok((log, Opened { migrated }))
    }

    /// Runs `f` on the log's runtime and blocks until it is done.
    fn call<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, LogError>> + Send + 'static,
    ) -> Result<T, LogError> {
        crate::storage::block_on(self.handle.spawn(f))
            .map_err(|e| LogError::Unavailable(format!("postgres task failed: {e}")))?
    }

    /// Runs `f` with a connection from the pool, blocking until it is done.
    fn with_client<T: Send + 'static, F>(
        &self,
        f: impl FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
    ) -> Result<T, LogError>
    where
        F: Future<Output = Result<T, tokio_postgres::Error>> + Send,
    {
        let pool = self.pool.clone();
        self.call(async move {
            let client = pool.get().await.map_err(pool_error)?;
            f(client).await.map_err(db_error)
        })
    }

    fn send(&self, job: commit::Job) -> Result<(), LogError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(LogError::Unavailable("writes disabled (test hook)".into()));
        }
        self.jobs.send(job).map_err(|_| LogError::Unavailable("the postgres log is closed".into()))
    }

    /// Runs deliveries' new or next states (retry, replay) as one record.
    fn write_states(&self, states: Vec<DeliveryV1>) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        self.send(commit::Job::Record(states, tx))?;
        crate::storage::block_on(rx).map_err(|_| LogError::Unavailable("the postgres log is closed".into()))?
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> LogError {
    LogError::Unavailable(format!("postgres: {}", crate::pg::describe_pool(&e)))
}

fn db_error(e: tokio_postgres::Error) -> LogError {
    LogError::Unavailable(format!("postgres: {}", crate::pg::describe(&e)))
}

/// Events this router appended lately, parsed: what its dispatcher claims
/// first is what it just took in, and it need not read it back.
#[derive(Default)]
pub struct Hot(Mutex<BTreeMap<u64, Arc<StoredEvent>>>);

impl Hot {
    fn insert(&self, e: Arc<StoredEvent>) {
        let mut hot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        hot.insert(e.event.id, e);
        while hot.len() > HOT_EVENTS {
            hot.pop_first();
        }
    }

    fn get(&self, id: u64) -> Option<Arc<StoredEvent>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }
}

/// The sinks with open deliveries: a skip scan of the due index (one
/// probe per sink, however long the queue).
const SINKS: &str = "
WITH RECURSIVE s(sink) AS (
    (SELECT sink FROM router_deliveries WHERE due_ms IS NOT NULL ORDER BY sink LIMIT 1)
    UNION ALL
    SELECT (SELECT d.sink FROM router_deliveries d WHERE d.due_ms IS NOT NULL AND d.sink > s.sink ORDER BY d.sink LIMIT 1)
    FROM s WHERE s.sink IS NOT NULL)
SELECT sink FROM s WHERE sink IS NOT NULL";

/// Claims up to $3 due deliveries of sink $1 at $2 for holder $4 until $5:
/// oldest first, not held by a live lease, and of an ordering key only the
/// oldest open one.
fn claim_sql() -> String {
    format!(
        "WITH c AS (
            SELECT event, idx FROM router_deliveries d
            WHERE d.sink = $1 AND d.due_ms <= $2 AND (d.claimed_until IS NULL OR d.claimed_until < $2)
              AND (d.order_key IS NULL OR NOT EXISTS (
                  SELECT 1 FROM router_deliveries o
                  WHERE o.sink = d.sink AND o.order_key = d.order_key AND o.due_ms IS NOT NULL
                    AND (o.event, o.idx) < (d.event, d.idx)))
            ORDER BY d.due_ms, d.event, d.idx
            LIMIT $3
            FOR UPDATE SKIP LOCKED)
        UPDATE router_deliveries d SET claimed_by = $4, claimed_until = $5
        FROM c WHERE d.event = c.event AND d.idx = c.idx
        RETURNING {}",
        DELIVERY_COLUMNS.split(", ").map(|c| format!("d.{c}")).collect::<Vec<_>>().join(", ")
    )
}

fn events_sql(filter: &str) -> String {
    format!("SELECT {EVENT_COLUMNS}, body FROM router_events WHERE {filter}")
}

fn deliveries_sql(filter: &str) -> String {
    format!("SELECT {DELIVERY_COLUMNS} FROM router_deliveries WHERE {filter} ORDER BY event, idx")
}

/// An event's stored body, parsed for delivery (`null` if it no longer
/// parses; it did when accepted).
fn stored(row: &tokio_postgres::Row) -> Result<Arc<StoredEvent>, LogError> {
    let event = rows::event_of(row)?;
    let body: Vec<u8> = row.get(8);
    let payload = crate::payload::parse_stored(&event.headers, &body).unwrap_or(serde_json::Value::Null);
    Ok(Arc::new(StoredEvent::new(event, body.into(), Parsed::Whole(payload))))
}

impl EventLog for PgLog {
    fn append(&self, event: NewEvent, deliveries: Vec<NewDelivery>) -> Pending<Appended> {
        let (tx, rx) = oneshot::channel();
        let prepared = commit::Prepared::new(event, deliveries, crate::event::now_ms());
        if let Err(e) = self.send(commit::Job::Append(Box::new(prepared), tx)) {
            return Box::pin(async move { Err(e) });
        }
        Box::pin(async move { rx.await.map_err(|_| LogError::Unavailable("the postgres log is closed".into()))? })
    }

    fn claim(&self, now_ms: i64, limit: usize, room: &Room) -> Result<Vec<Claimed>, LogError> {
        let releases: Vec<_> = std::mem::take(&mut *self.releases.lock().unwrap_or_else(|p| p.into_inner()));
        let (pool, room, hot) = (self.pool.clone(), room.clone(), self.hot.clone());
        let (holder, until) = (self.lease.holder.clone(), now_ms + self.lease.length.as_millis() as i64);
        self.call(async move {
            for r in releases {
                let _ = r.await;
            }
            let client = pool.get().await.map_err(pool_error)?;
            let sinks = client.query(SINKS, &[]).await.map_err(db_error)?;
            let claim = client.prepare_cached(&claim_sql()).await.map_err(db_error)?;
            let wanted: Vec<(String, i64)> = sinks
                .iter()
                .map(|r| r.get::<_, String>(0))
                .map(|s| {
                    let take = room.get(&s).map_or(limit, |&r| r.min(limit));
                    (s, take as i64)
                })
                .filter(|(_, take)| *take > 0)
                .collect();
            let claimed = futures_util::future::try_join_all(wanted.iter().map(|(sink, take)| {
                let (client, claim, holder) = (&client, &claim, &holder);
                async move { client.query(claim, &[sink, &now_ms, take, holder, &until]).await }
            }))
            .await
            .map_err(db_error)?;
            let mut deliveries = Vec::new();
            for row in claimed.iter().flatten() {
                deliveries.push(rows::delivery_of(row)?);
            }
            let mut events: HashMap<u64, Arc<StoredEvent>> = HashMap::new();
            let missing: Vec<i64> = {
                let mut ids: Vec<i64> = Vec::new();
                for d in &deliveries {
                    match hot.get(d.event) {
                        Some(e) => _ = events.insert(d.event, e),
                        None => ids.push(d.event as i64),
                    }
                }
                ids.sort_unstable();
                ids.dedup();
                ids
            };
            if !missing.is_empty() {
                for row in client.query(&events_sql("id = ANY($1)"), &[&missing]).await.map_err(db_error)? {
                    let e = stored(&row)?;
                    events.insert(e.event.id, e);
                }
            }
            // Same order as the embedded log: by sink, then oldest first.
            deliveries.sort_by(|a, b| {
                (&a.sink, a.next_attempt_ms, a.event, a.index).cmp(&(&b.sink, b.next_attempt_ms, b.event, b.index))
            });
            Ok(deliveries
                .into_iter()
                .filter_map(|d| {
                    let event = events.get(&d.event)?.clone();
                    Some(Claimed { delivery: d, event })
                })
                .collect())
        })
    }

    fn release(&self, keys: &[DeliveryKey]) {
        if keys.is_empty() {
            return;
        }
        let events: Vec<i64> = keys.iter().map(|k| k.event as i64).collect();
        let idx: Vec<i32> = keys.iter().map(|k| k.index as i32).collect();
        let (pool, holder) = (self.pool.clone(), self.lease.holder.clone());
        let task = self.handle.spawn(async move {
            let released = async {
                let client = pool.get().await.map_err(pool_error)?;
                client
                    .execute(
                        "UPDATE router_deliveries d SET claimed_by = NULL, claimed_until = NULL
                         FROM unnest($1::bigint[], $2::integer[]) AS k(event, idx)
                         WHERE d.event = k.event AND d.idx = k.idx AND d.claimed_by = $3",
                        &[&events, &idx, &holder],
                    )
                    .await
                    .map_err(db_error)
            };
            if let Err(e) = released.await {
                // The lease runs out instead: the deliveries are only late.
                tracing::warn!(error = %e, "Cannot give back claimed deliveries; they are claimable again when their lease ends.");
            }
        });
        self.releases.lock().unwrap_or_else(|p| p.into_inner()).push(task);
    }

    fn record(&self, states: Vec<DeliveryV1>) -> Pending<()> {
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.send(commit::Job::Record(states, tx)) {
            return Box::pin(async move { Err(e) });
        }
        Box::pin(async move { rx.await.map_err(|_| LogError::Unavailable("the postgres log is closed".into()))? })
    }

    fn next_due_after(&self, after_ms: i64) -> Option<i64> {
        self.with_client(move |c| async move {
            let row = c.query_one("SELECT min(due_ms) FROM router_deliveries WHERE due_ms > $1", &[&after_ms]).await?;
            Ok(row.get::<_, Option<i64>>(0))
        })
        .ok()
        .flatten()
    }

    fn queue_depth(&self) -> usize {
        self.with_client(|c| async move {
            let row = c.query_one("SELECT count(*) FROM router_deliveries WHERE due_ms IS NOT NULL", &[]).await?;
            Ok(row.get::<_, i64>(0) as usize)
        })
        .unwrap_or(0)
    }

    fn event(&self, id: u64) -> Result<EventV1, LogError> {
        let row = self.with_client(move |c| async move {
            c.query_opt(&format!("SELECT {EVENT_COLUMNS} FROM router_events WHERE id = $1"), &[&(id as i64)]).await
        })?;
        rows::event_of(&row.ok_or_else(|| LogError::NotFound(format!("event {id}")))?)
    }

    fn deliveries(&self, id: u64) -> Result<Vec<DeliveryV1>, LogError> {
        let (found, exists) = self.with_client(move |c| async move {
            let found = c.query(&deliveries_sql("event = $1"), &[&(id as i64)]).await?;
            let exists = !found.is_empty()
                || c.query_opt("SELECT 1 FROM router_events WHERE id = $1", &[&(id as i64)]).await?.is_some();
            Ok((found, exists))
        })?;
        if !exists {
            return Err(LogError::NotFound(format!("event {id}")));
        }
        found.iter().map(rows::delivery_of).collect()
    }

    fn detail(&self, id: u64) -> Result<EventDetail, LogError> {
        let (row, ds) = self.with_client(move |c| async move {
            let id = id as i64;
            let event = c.query_opt(&events_sql("id = $1"), &[&id]).await?;
            let ds = c.query(&deliveries_sql("event = $1"), &[&id]).await?;
            Ok((event, ds))
        })?;
        let row = row.ok_or_else(|| LogError::NotFound(format!("event {id}")))?;
        let mut event = rows::event_of(&row)?;
        let body: Vec<u8> = row.get(8);
        let deliveries: Vec<DeliveryV1> = ds.iter().map(rows::delivery_of).collect::<Result<_, _>>()?;
        event.deliveries = deliveries.len() as u32;
        let payload = crate::payload::parse_stored(&event.headers, &body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok(EventDetail { status: EventStatus::of(&deliveries), event, payload, delivery_records: deliveries })
    }

    fn list(&self, q: &ListQuery) -> Result<Vec<EventSummary>, LogError> {
        let mut out = Vec::new();
        let mut before = q.before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
        loop {
            let (route, since, until, failed_only) = (
                q.route.clone(),
                q.since_ms.unwrap_or(i64::MIN),
                q.until_ms.unwrap_or(i64::MAX),
                q.status == Some(EventStatus::Failed),
            );
            let page = self.with_client(move |c| async move {
                let events = c
                    .query(
                        &format!(
                            "SELECT {EVENT_COLUMNS} FROM router_events e
                             WHERE id < $1 AND ($2::text IS NULL OR route = $2) AND received_ms >= $3 AND received_ms < $4
                               AND (NOT $5 OR EXISTS (SELECT 1 FROM router_deliveries f WHERE f.event = e.id AND f.status = 'failed'))
                             ORDER BY id DESC LIMIT $6"
                        ),
                        &[&before, &route, &since, &until, &failed_only, &PAGE],
                    )
                    .await?;
                let ids: Vec<i64> = events.iter().map(|r| r.get(0)).collect();
                let ds = c.query(&deliveries_sql("event = ANY($1)"), &[&ids]).await?;
                Ok((events, ds))
            })?;
            let (events, ds) = page;
            let mut by_event: HashMap<u64, Vec<DeliveryV1>> = HashMap::new();
            for row in &ds {
                let d = rows::delivery_of(row)?;
                by_event.entry(d.event).or_default().push(d);
            }
            let full = events.len() as i64 == PAGE;
            for row in &events {
                let e = rows::event_of(row)?;
                before = e.id as i64;
                let ds = by_event.remove(&e.id).unwrap_or_default();
                let status = EventStatus::of(&ds);
                if q.status.is_some_and(|s| s != status)
                    || q.event_type.as_ref().is_some_and(|p| !p.matches(&e.event_type))
                {
                    continue;
                }
                out.push(EventSummary::of(e, status, ds.len() as u32));
                if out.len() >= q.limit.max(1) {
                    return Ok(out);
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    fn retry_failed(&self, event: Option<u64>, route: Option<&str>) -> Result<Vec<Requeued>, LogError> {
        let route = route.map(str::to_string);
        let event = event.map(|e| e as i64);
        let failed = self.with_client(move |c| async move {
            c.query(
                &format!(
                    "SELECT {}, e.route FROM router_deliveries d JOIN router_events e ON e.id = d.event
                     WHERE d.status = 'failed' AND ($1::bigint IS NULL OR d.event = $1) AND ($2::text IS NULL OR e.route = $2)
                     ORDER BY d.event, d.idx",
                    DELIVERY_COLUMNS.split(", ").map(|c| format!("d.{c}")).collect::<Vec<_>>().join(", ")
                ),
                &[&event, &route],
            )
            .await
        })?;
        let now = crate::event::now_ms();
        let (mut requeued, mut states) = (Vec::new(), Vec::new());
        for row in &failed {
            let d = rows::delivery_of(row)?;
            let failed_ms = crate::delivery::failed_at(&d);
            let d = crate::delivery::requeued(d, now);
            requeued.push(Requeued { route: row.get(12), sink: d.sink.clone(), failed_ms });
            states.push(d);
        }
        if !states.is_empty() {
            self.write_states(states)?;
        }
        Ok(requeued)
    }

    fn replay(&self, route: &str, since_ms: i64, until_ms: i64, force: bool, plan: Plan) -> Result<usize, LogError> {
        let now = crate::event::now_ms();
        let (mut after, mut added) = (0i64, 0usize);
        loop {
            let r = route.to_string();
            let (events, ds) = self.with_client(move |c| async move {
                let events = c
                    .query(
                        &format!(
                            "{} ORDER BY id LIMIT $5",
                            events_sql("id > $1 AND route = $2 AND received_ms >= $3 AND received_ms < $4")
                        ),
                        &[&after, &r, &since_ms, &until_ms, &PAGE],
                    )
                    .await?;
                let ids: Vec<i64> = events.iter().map(|r| r.get(0)).collect();
                let ds = c.query(&deliveries_sql("event = ANY($1)"), &[&ids]).await?;
                Ok((events, ds))
            })?;
            let mut by_event: HashMap<u64, Vec<DeliveryV1>> = HashMap::new();
            for row in &ds {
                let d = rows::delivery_of(row)?;
                by_event.entry(d.event).or_default().push(d);
            }
            let mut new = States::default();
            let mut counts: Vec<(i64, i32)> = Vec::new();
            for row in &events {
                let e = rows::event_of(row)?;
                after = e.id as i64;
                let body: Vec<u8> = row.get(8);
                let existing = by_event.remove(&e.id).unwrap_or_default();
                let mut next_index = existing.iter().map(|d| d.index + 1).max().unwrap_or(0);
                let first = next_index;
                for nd in plan(&e, &body) {
                    let done = existing.iter().any(|d| {
                        d.rule == nd.rule
                            && d.target == nd.target
                            && d.sink == nd.sink
                            && d.status != DeliveryStatus::Failed
                    });
                    if done && !force {
                        continue;
                    }
                    let mut d = nd.pending(e.id, next_index, now);
                    d.attempts_log.push(Attempt {
                        at: crate::event::format_ms(now),
                        outcome: "replayed".into(),
                        error: None,
                    });
                    next_index += 1;
                    new.push(&d);
                }
                if next_index > first {
                    counts.push((e.id as i64, next_index as i32));
                }
            }
            if !new.is_empty() {
                added += new.event.len();
                let (ids, totals): (Vec<i64>, Vec<i32>) = counts.into_iter().unzip();
                self.with_client(move |mut c| async move {
                    let tx = c.transaction().await?;
                    tx.execute(
                        "INSERT INTO router_deliveries (event, idx, rule, target, rule_name, sink, order_key, status, attempts, due_ms, last_error, attempts_log)
                         SELECT * FROM unnest($1::bigint[], $2::integer[], $3::integer[], $4::integer[], $5::text[], $6::text[], $7::text[],
                                              $8::text[], $9::integer[], $10::bigint[], $11::text[], $12::jsonb[])",
                        &[&new.event, &new.idx, &new.rule, &new.target, &new.rule_name, &new.sink, &new.order_key, &new.status,
                          &new.attempts, &new.due_ms, &new.last_error, &new.attempts_log],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE router_events e SET deliveries = t.n FROM unnest($1::bigint[], $2::integer[]) AS t(id, n) WHERE e.id = t.id",
                        &[&ids, &totals],
                    )
                    .await?;
                    tx.execute("SELECT pg_notify($1, '')", &[&commit::CHANNEL]).await?;
                    tx.commit().await
                })?;
            }
            if (events.len() as i64) < PAGE {
                return Ok(added);
            }
        }
    }

    fn prune(&self, after: u64, cutoff_ms: i64, max: usize) -> Result<Pruned, LogError> {
        let (after, max) = (after as i64, max.max(1) as i64);
        let (looked, last, removed) = self.with_client(move |c| async move {
            let ids: Vec<i64> = c
                .query("SELECT id FROM router_events WHERE id > $1 AND received_ms < $2
                      AND id < (SELECT max(id) FROM router_events) ORDER BY id LIMIT $3", &[&after, &cutoff_ms, &max])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            // Only events that need nothing more: no open or failed delivery
            // (and never the newest, as in the embedded log).
            let removed = c
                .execute(
                    "DELETE FROM router_events e WHERE e.id = ANY($1) AND NOT EXISTS (
                         SELECT 1 FROM router_deliveries d WHERE d.event = e.id AND (d.due_ms IS NOT NULL OR d.status = 'failed'))",
                    &[&ids],
                )
                .await?;
            Ok((ids.len() as i64, ids.last().copied(), removed as usize))
        })?;
        Ok(Pruned { removed, next: last.filter(|_| looked == max).map(|l| l as u64) })
    }

    fn delete(&self, id: u64) -> Result<(), DeleteError> {
        let deleted = self.with_client(move |c| async move {
            let id = id as i64;
            let open: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM router_deliveries WHERE event = $1 AND due_ms IS NOT NULL)",
                    &[&id],
                )
                .await?
                .get(0);
            if open {
                return Ok(None);
            }
            Ok(Some(c.execute("DELETE FROM router_events WHERE id = $1", &[&id]).await?))
        })?;
        match deleted {
            None => Err(DeleteError::Open(id)),
            Some(0) => Err(LogError::NotFound(format!("event {id}")).into()),
            Some(_) => Ok(()),
        }
    }

    fn flush_blocking(&self) -> Result<(), LogError> {
        // Every answered write was committed.
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.with_client(|c| async move {
            let row = c
                .query_one(
                    "SELECT (pg_total_relation_size('router_events') + pg_total_relation_size('router_deliveries'))::bigint",
                    &[],
                )
                .await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
        .unwrap_or(0)
    }

    fn probe(&self) -> Result<(), LogError> {
        self.with_client(|c| async move { c.execute("SELECT 1", &[]).await.map(|_| ()) })
    }

    fn work_elsewhere(&self) -> Pending<()> {
        let work = self.work.clone();
        Box::pin(async move {
            work.notified().await;
            Ok(())
        })
    }

    fn set_fail_writes(&self, fail: bool) {
        self.fail_writes.store(fail, Ordering::SeqCst);
    }
}
