//! The `postgres` sink's database side: what a table looks like (read
//! from the catalog, not from the route file), and one write of a
//! document into it, with PostgreSQL's verdict as a delivery `Outcome`
//! (a dropped connection or a serialization failure is retried; a
//! constraint or type error is final and names the column).

pub mod statement;

use crate::sink::Outcome;
use statement::{Column, Plan, Statement, Table};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

/// Reads the columns of `table` (`schema.table` or `table` in `public`).
/// A missing table is an error that names it.
pub async fn load_table(client: &impl GenericClient, table: &str) -> Result<Table, tokio_postgres::Error> {
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

/// Runs one statement; `Skipped` when it changed no row (an older version
/// than the stored row, or a delete of a row that is not there).
pub async fn write(client: &impl GenericClient, s: &Statement) -> Outcome {
    let params: Vec<&(dyn ToSql + Sync)> = s.params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    match client.execute(s.sql.as_str(), &params).await {
        Ok(0) => {
            Outcome::Skipped { reason: "no row changed (the stored row is newer, or there is none to delete)".into() }
        }
        Ok(_) => Outcome::Delivered,
        Err(e) => {
            let mut outcome = outcome_of(&e);
            // A value its column's type cannot parse (class 22): PostgreSQL
            // does not say which parameter, so each cast is tried alone.
            if let (Outcome::Failed { error }, Some(true)) =
                (&mut outcome, e.code().map(|c| c.code().starts_with("22")))
            {
                if let Some(column) = failing_cast(client, s).await {
                    error.push_str(&format!("; column `{}` ({})", column.name, column.ty));
                }
            }
            outcome
        }
    }
}

/// The first bound column whose value its type's input function refuses.
async fn failing_cast<'a>(client: &impl GenericClient, s: &'a Statement) -> Option<&'a Column> {
    for (value, column) in s.params.iter().zip(&s.bound) {
        let probe = format!("SELECT $1::text::{}", column.ty);
        if client.execute(probe.as_str(), &[value]).await.is_err() {
            return Some(column);
        }
    }
    None
}

/// Builds and runs the write of `doc`.
pub async fn write_document(
    client: &impl GenericClient,
    table: &Table,
    plan: &Plan,
    doc: &serde_json::Value,
) -> Outcome {
    match statement::build(table, plan, doc) {
        Ok(s) => write(client, &s).await,
        Err(e) => Outcome::Failed { error: e.to_string() },
    }
}

/// PostgreSQL's error as an outcome: what may pass on its own is retried,
/// what the data or the table must change for is final.
pub fn outcome_of(e: &tokio_postgres::Error) -> Outcome {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: the connection, not the data.
        return Outcome::Retry { error: format!("postgres: {e}"), after: None };
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
    ];
    // Class 08: connection exceptions; 53: insufficient resources (disk full...).
    if transient.contains(code) || code.code().starts_with("08") || code.code().starts_with("53") {
        Outcome::Retry { error, after: None }
    } else {
        Outcome::Failed { error }
    }
}
