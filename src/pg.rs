//! PostgreSQL connections, shared by the `postgres` sink (the app's own
//! tables) and the PostgreSQL event log (`--store postgres://`): parsing a
//! connection string without ever echoing it (it holds a password), TLS
//! where the server asks for it, pools, and errors that name the server.

use std::time::Duration;

/// Time to open a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a connection string names, minus its credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "postgres://{}@{}:{}/{}", self.user, self.host, self.port, self.database)
    }
}

/// Why a connection string cannot be used (never echoes it).
#[derive(Debug, thiserror::Error)]
#[error("not a PostgreSQL connection string: {0}")]
pub struct BadUrl(String);

/// Parses `url` (a `postgres://` URL or `key=value` string).
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, Target), BadUrl> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        // Its text quotes nothing of the URL.
        BadUrl(e.to_string())
    })?;
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("webhook-router");
    let target = target_of(&config);
    Ok((config, target))
}

/// A pool of up to `size` connections; none is opened until first asked
/// for. `wait`: how long a caller waits for one.
pub fn pool(config: tokio_postgres::Config, size: usize, wait: Duration) -> Result<deadpool_postgres::Pool, BadUrl> {
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tls(),
        deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(CONNECT_TIMEOUT * 2))
        .build()
        .map_err(|e| BadUrl(e.to_string()))
}

/// TLS for connections that ask for it (`sslmode=require`), with the
/// system's roots; `sslmode=prefer` (the default) falls back to plain
/// TCP where the server offers no TLS.
pub fn tls() -> tokio_postgres_rustls::MakeRustlsConnect {
    tokio_postgres_rustls::MakeRustlsConnect::new(crate::tls::client_config())
}

/// A driver error in one line: the server's message and code, or the
/// step that failed and its cause ("error connecting to server:
/// Connection refused"). Neither carries the password.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let cause = std::error::Error::source(e).map(|c| format!(": {c}")).unwrap_or_default();
            format!("{e}{cause}")
        }
    }
}

/// A pool's error in one line, as `describe` does for the driver's.
pub fn describe_pool(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        deadpool_postgres::PoolError::Timeout(_) => "no connection within the timeout".to_string(),
        other => other.to_string(),
    }
}

fn target_of(config: &tokio_postgres::Config) -> Target {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let user = config.get_user().unwrap_or("").to_string();
    Target {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        database: config.get_dbname().map_or_else(|| user.clone(), str::to_string),
        user,
    }
}
