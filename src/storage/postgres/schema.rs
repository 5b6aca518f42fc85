//! The PostgreSQL log's tables: versioned migrations embedded in the
//! binary, run at start (or by `router migrate`) under an advisory lock,
//! so routers starting together never race to create or alter a table.

use tokio_postgres::Client;

/// Every migration, in order: (version, what it does, SQL). Versions are
/// never edited once released: a change is a new migration.
const MIGRATIONS: &[(i32, &str, &str)] = &[(1, "event log", include_str!("migrations/0001_event_log.sql"))];

/// The advisory lock key migrations hold ("router" in ASCII).
const LOCK_KEY: i64 = 0x726f_7574_6572;

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the database's router schema is version {found}, newer than this router's {known}: run a newer router")]
    Newer { found: i32, known: i32 },
    #[error("{0}")]
    Postgres(String),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Postgres(crate::pg::describe(&e))
    }
}

/// Applies what is missing; returns the versions applied (none when up to date).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    // A session lock: released by the unlock below, or by the server when
    // this connection dies mid-way (each migration is its own transaction).
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await?;
    let applied = apply(client).await;
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await;
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

/// Connects to `url` and migrates (`router migrate`).
pub fn migrate_url(url: &str) -> Result<Vec<i32>, super::OpenError> {
    let (config, target) = crate::pg::parse(url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| super::OpenError::Connect { target: target.clone(), detail: e.to_string() })?;
    // Its own thread: the caller may be inside a runtime already.
    std::thread::scope(|s| {
        s.spawn(|| {
            runtime.block_on(async {
                let (mut client, connection) = config.connect(crate::pg::tls()).await.map_err(|e| {
                    super::OpenError::Connect { target: target.clone(), detail: crate::pg::describe(&e) }
                })?;
                tokio::spawn(connection);
                migrate(&mut client)
                    .await
                    .map_err(|e| super::OpenError::Migrate { target: target.clone(), detail: e.to_string() })
            })
        })
        .join()
        .unwrap_or_else(|_| {
            Err(super::OpenError::Migrate { target: target.clone(), detail: "the migration panicked".into() })
        })
    })
}

async fn apply(client: &mut Client) -> Result<Vec<i32>, MigrateError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS router_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let found: i32 = client.query_one("SELECT coalesce(max(version), 0) FROM router_migrations", &[]).await?.get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if found > known {
        return Err(MigrateError::Newer { found, known });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO router_migrations (version, name) VALUES ($1, $2)", &[&version, &name]).await?;
        tx.commit().await?;
        tracing::info!(version, name, "Applied a migration of the router's tables.");
        applied.push(version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_increase_by_one() {
        for (i, m) in super::MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0, i as i32 + 1, "{}", m.1);
        }
    }
}
