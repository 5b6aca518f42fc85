//! The `postgres` sink: rule documents written into the app's own table.
//!
//! The table's columns are read from the catalog (not from the route
//! file) on first use, and again after a write fails for good (an `ALTER
//! TABLE` that fixed it is then seen). A delivery round is one
//! transaction: documents without a script go in multi-row statements
//! (`statement::statements`); a document whose rule has a script is
//! written alone, after its row was read `FOR UPDATE` as the script's
//! `current`, so two events of one key never both read the old row.
//! PostgreSQL's verdict becomes the delivery `Outcome`: a dropped
//! connection or a serialization failure is retried; a constraint or type
//! error is final and names the column. When a batch fails for good, its
//! documents are written one by one, so one bad row does not hold the rest.

pub mod fit;
pub mod statement;

use crate::sink::{Batch, Outcome};
use serde_json::Value;
use statement::{Column, Mode, Plan, Row, Statement, Table};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

/// Deliveries in flight at once to one postgres sink (its pool's size).
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Time for one delivery round (connect, write, commit).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A `type: postgres` sink.
pub struct PostgresSink {
    /// `table:` as written (`schema.table` or `table`).
    pub table: String,
    pub plan: Plan,
    pub concurrency: usize,
    pub timeout: Duration,
    pub batch: Option<Batch>,
    /// Where it connects, for the admin API: never the password.
    pub target: Target,
    pool: deadpool_postgres::Pool,
    /// The table as the catalog last described it.
    described: Mutex<Option<Arc<Table>>>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink").field("target", &self.target).field("table", &self.table).finish()
    }
}

pub use crate::pg::{BadUrl, Target};

/// One document to write, and the script that finishes it with the row
/// stored under its key (`None`: the rule has none).
pub struct Item {
    pub doc: Value,
    pub finish: Option<Finish>,
}

/// A rule's scripts: the mapped document and the current row in, the
/// document to write (or the script's verdict) out.
pub type Finish = Arc<dyn Fn(Value, Option<&Value>) -> Result<Value, Outcome> + Send + Sync>;

impl PostgresSink {
    /// A sink over `url` (a `postgres://` URL or `key=value` string). No
    /// connection is opened until the first delivery.
    pub fn new(url: &str, table: String, plan: Plan, concurrency: usize, timeout: Duration) -> Result<Self, BadUrl> {
        let (config, target) = crate::pg::parse(url)?;
        let pool = crate::pg::pool(config, concurrency, timeout)?;
        Ok(PostgresSink { table, plan, concurrency, timeout, batch: None, target, pool, described: Mutex::new(None) })
    }

    /// A connection from the pool (opened, or reopened, as needed).
    pub async fn connect(&self) -> Result<deadpool_postgres::Object, Outcome> {
        self.pool.get().await.map_err(|e| {
            let error = match e {
                deadpool_postgres::PoolError::Backend(e) => return outcome_of(&e),
                deadpool_postgres::PoolError::Timeout(_) => "postgres: no connection within the timeout".to_string(),
                other => format!("postgres: {other}"),
            };
            Outcome::Retry { error, after: None }
        })
    }

    /// The table, as the catalog describes it (cached).
    pub async fn describe_table(&self, client: &tokio_postgres::Client) -> Result<Arc<Table>, Outcome> {
        if let Some(t) = self.described.lock().expect("not poisoned").clone() {
            return Ok(t);
        }
        let table = Arc::new(load_table(client, &self.table).await.map_err(|e| outcome_of(&e))?);
        if table.columns.is_empty() {
            return Err(Outcome::Failed { error: format!("postgres: table {} has no columns", table.name) });
        }
        *self.described.lock().expect("not poisoned") = Some(table.clone());
        Ok(table)
    }

    /// One attempt at writing `items`, in one transaction: an outcome per
    /// item, in order. Bounded by the sink's `timeout`.
    pub async fn write(&self, items: &[Item]) -> Vec<Outcome> {
        let outcomes = match tokio::time::timeout(self.timeout, self.write_within(items)).await {
            Ok(outcomes) => outcomes,
            Err(_) => {
                let error = format!("postgres: no answer within {}", humantime::format_duration(self.timeout));
                vec![Outcome::Retry { error, after: None }; items.len()]
            }
        };
        // A final failure may come from a table changed since it was read:
        // read it again next time (an `ALTER TABLE` may have fixed it).
        if outcomes.iter().any(|o| matches!(o, Outcome::Failed { .. })) {
            *self.described.lock().expect("not poisoned") = None;
        }
        outcomes
    }

    async fn write_within(&self, items: &[Item]) -> Vec<Outcome> {
        let all = |o: Outcome| vec![o; items.len()];
        let mut client = match self.connect().await {
            Ok(c) => c,
            Err(o) => return all(o),
        };
        let table = match self.describe_table(&client).await {
            Ok(t) => t,
            Err(o) => return all(o),
        };
        match transaction(&mut client, &table, &self.plan, items).await {
            Ok(outcomes) => outcomes,
            // One bad row fails a whole batch: write them one by one, so
            // the others land and the bad one carries its own error.
            Err(Aborted { outcome: Outcome::Failed { .. }, .. }) if items.len() > 1 => {
                let mut outcomes = Vec::with_capacity(items.len());
                for item in items {
                    let one = std::slice::from_ref(item);
                    outcomes.push(match transaction(&mut client, &table, &self.plan, one).await {
                        Ok(mut o) => o.pop().expect("one outcome per item"),
                        Err(aborted) => aborted.explained(&client).await,
                    });
                }
                outcomes
            }
            Err(aborted) => all(aborted.explained(&client).await),
        }
    }
}

/// Why a transaction was rolled back: PostgreSQL's verdict, and the
/// statement it refused (to name the column a value did not fit).
struct Aborted {
    outcome: Outcome,
    refused: Option<(Statement, SqlState)>,
}

impl Aborted {
    /// A value its column's type cannot parse (class 22): PostgreSQL does
    /// not say which parameter, so each cast is tried alone.
    async fn explained(self, client: &tokio_postgres::Client) -> Outcome {
        let (Outcome::Failed { mut error }, Some((s, code))) = (self.outcome.clone(), self.refused) else {
            return self.outcome;
        };
        if code.code().starts_with("22") {
            if let Some(column) = failing_cast(client, &s).await {
                error.push_str(&format!("; column `{}` ({})", column.name, column.ty));
            }
        }
        Outcome::Failed { error }
    }
}

impl From<tokio_postgres::Error> for Aborted {
    fn from(e: tokio_postgres::Error) -> Self {
        Aborted { outcome: outcome_of(&e), refused: None }
    }
}

/// Writes `items` in one transaction. `Err`: it was rolled back.
async fn transaction(
    client: &mut tokio_postgres::Client,
    table: &Table,
    plan: &Plan,
    items: &[Item],
) -> Result<Vec<Outcome>, Aborted> {
    let tx = client.transaction().await?;
    let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
    // Rows waiting to go in one multi-row write, with their items' places.
    let mut pending: Vec<(usize, Row)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let doc = match &item.finish {
            None => item.doc.clone(),
            Some(finish) => {
                // The script reads the row as the writes before it left it.
                flush(&tx, table, plan, &mut pending, &mut outcomes).await?;
                let current = current_row(&tx, table, plan, &item.doc).await?;
                let (finish, doc) = (finish.clone(), item.doc.clone());
                let finished = tokio::task::spawn_blocking(move || finish(doc, current.as_ref()))
                    .await
                    .unwrap_or_else(|e| Err(Outcome::Failed { error: format!("the script panicked: {e}") }));
                match finished {
                    Ok(doc) => doc,
                    Err(verdict) => {
                        outcomes[i] = Some(verdict);
                        continue;
                    }
                }
            }
        };
        match statement::row(table, plan, &doc) {
            Ok(row) => pending.push((i, row)),
            Err(e) => outcomes[i] = Some(Outcome::Failed { error: e.to_string() }),
        }
        if item.finish.is_some() {
            flush(&tx, table, plan, &mut pending, &mut outcomes).await?;
        }
    }
    flush(&tx, table, plan, &mut pending, &mut outcomes).await?;
    tx.commit().await?;
    Ok(outcomes.into_iter().map(|o| o.expect("every item has an outcome")).collect())
}

/// Runs the statements that write the `pending` rows and settles their items.
async fn flush(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    plan: &Plan,
    pending: &mut Vec<(usize, Row)>,
    outcomes: &mut [Option<Outcome>],
) -> Result<(), Aborted> {
    if pending.is_empty() {
        return Ok(());
    }
    let (places, rows): (Vec<usize>, Vec<Row>) = std::mem::take(pending).into_iter().unzip();
    for (s, members) in statement::statements(table, plan, &rows) {
        let changed = query(tx, &s).await.map_err(|e| Aborted {
            outcome: outcome_of(&e),
            refused: e.code().cloned().map(|code| (s.clone(), code)),
        })?;
        for (n, &member) in members.iter().enumerate() {
            let ordinal = (n + 1) as i32;
            outcomes[places[member]] = Some(if changed.contains(&ordinal) {
                Outcome::Delivered
            } else if plan.mode == Mode::Delete {
                Outcome::Skipped { reason: "no row has this key".into() }
            } else {
                Outcome::Skipped {
                    reason: "the stored row is as new or newer (version), or only the key was sent".into(),
                }
            });
        }
    }
    Ok(())
}

/// Runs `s` with its text parameters typed as text (no prepare round
/// trip, and fine behind a transaction-mode pooler); the first column of
/// each row returned, as `int4`.
async fn query(tx: &tokio_postgres::Transaction<'_>, s: &Statement) -> Result<Vec<i32>, tokio_postgres::Error> {
    let rows = tx.query_typed(s.sql.as_str(), &text_params(s)).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `s`'s parameters, each typed as text (what `$n::text::<type>` casts).
fn text_params(s: &Statement) -> Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> {
    s.params.iter().map(|p| (p as &(dyn tokio_postgres::types::ToSql + Sync), Type::TEXT)).collect()
}

/// The row stored under `doc`'s key, as JSON, locked until the
/// transaction ends; `None` when there is none (or `doc` has no key yet).
async fn current_row(
    tx: &tokio_postgres::Transaction<'_>,
    table: &Table,
    plan: &Plan,
    doc: &Value,
) -> Result<Option<Value>, Aborted> {
    let Some(s) = statement::select_current(table, plan, doc) else { return Ok(None) };
    let row = tx.query_typed_opt(s.sql.as_str(), &text_params(&s)).await?;
    Ok(row.map(|r| r.get::<_, String>(0)).and_then(|text| serde_json::from_str(&text).ok()))
}

/// Reads the columns of `table` (`schema.table` or `table` in `public`).
/// A missing table is an error that names it.
pub async fn load_table(client: &tokio_postgres::Client, table: &str) -> Result<Table, tokio_postgres::Error> {
    let name = Table::quoted_name(table);
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&name],
        )
        .await?;
    let columns = rows.iter().map(|r| Column { name: r.get(0), ty: r.get(1) }).collect();
    Ok(Table { name, columns })
}

/// The first bound column whose value its type's input function refuses.
async fn failing_cast<'a>(client: &tokio_postgres::Client, s: &'a Statement) -> Option<&'a Column> {
    refused_value(client, s.params.iter().zip(&s.bound)).await.map(|(column, _)| column)
}

/// The first (value, column) pair whose value the column's type refuses,
/// with PostgreSQL's reason: each value is cast alone, as the write would.
pub async fn refused_value<'a>(
    client: &tokio_postgres::Client,
    pairs: impl IntoIterator<Item = (&'a Option<String>, &'a Column)>,
) -> Option<(&'a Column, String)> {
    for (value, column) in pairs {
        let probe = format!("SELECT $1::text::{}", column.ty);
        if let Err(e) = client.query_typed(probe.as_str(), &[(value, Type::TEXT)]).await {
            let reason = e.as_db_error().map_or_else(|| e.to_string(), |db| db.message().to_string());
            return Some((column, reason));
        }
    }
    None
}

/// The unique indexes of `table` (quoted name) that an `ON CONFLICT` can
/// use: plain columns, no predicate. Each as its column names.
pub async fn unique_keys(
    client: &tokio_postgres::Client,
    table: &str,
) -> Result<Vec<Vec<String>>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey) AS k(n)                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n)              FROM pg_index i              WHERE i.indrelid = $1::text::regclass AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL",
            &[&table],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// PostgreSQL's error as an outcome: what may pass on its own is retried,
/// what the data or the table must change for is final.
pub fn outcome_of(e: &tokio_postgres::Error) -> Outcome {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: the connection, not the data.
        // Its text is the step ("error connecting to server"); the cause
        // ("Connection refused") is its source.
        let cause = std::error::Error::source(e).map(|c| format!(": {c}")).unwrap_or_default();
        return Outcome::Retry { error: format!("postgres: {e}{cause}"), after: None };
    };
    let code = db.code();
    let mut error = format!("postgres: {} ({})", db.message(), code.code());
    if let Some(column) = db.column() {
        error.push_str(&format!("; column `{column}`"));
    }
    if let Some(detail) = db.detail() {
        error.push_str(&format!("; {detail}"));
    }
    let transient = [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::QUERY_CANCELED,
        SqlState::READ_ONLY_SQL_TRANSACTION,
    ];
    // Class 08: connection exceptions; 53: insufficient resources (disk full...).
    if transient.contains(code) || code.code().starts_with("08") || code.code().starts_with("53") {
        Outcome::Retry { error, after: None }
    } else {
        Outcome::Failed { error }
    }
}
