//! `router serve`: load routes, open the data directory, bind, run until
//! SIGTERM or Ctrl-C.

use crate::config::{self, env::EnvSource, env::ProcessEnv};
use crate::recovery::{self, Verdict};
use crate::reload;
use crate::retention::Retention;
use crate::runtime::{DataDir, Runtime, Settings, Store};
use crate::server::{self, Limits};
use crate::telemetry::{self, LogFormat};
use crate::verify::{BearerToken, Secret};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory of route files.
    #[arg(long, default_value = "routes.d", env = "ROUTER_ROUTES")]
    routes: PathBuf,
    /// Data directory (event log and store).
    #[arg(long, default_value = "data", env = "ROUTER_DATA")]
    data: PathBuf,
    /// Where the event log lives: `embedded` (in the data directory, one
    /// router) or postgres://USER:PASSWORD@HOST:PORT/DB, shared by every
    /// router on that database [default: embedded].
    #[arg(long, env = "ROUTER_STORE", hide_env_values = true)]
    store: Option<String>,
    /// With a PostgreSQL store: how long a claimed delivery stays with this
    /// router before another may take it (this one died). Keep it above
    /// the longest sink timeout, or a slow attempt may run twice.
    #[arg(long, default_value = "60s", env = "ROUTER_CLAIM_LEASE")]
    claim_lease: humantime::Duration,
    /// Webhook listener address [default: 0.0.0.0:8080; 127.0.0.1:8080 while
    /// a route verifies with a trial secret, a default written in its file].
    #[arg(long, env = "ROUTER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Admin API address; `off` disables it. A non-loopback address needs `--admin-token`.
    #[arg(long, default_value = "127.0.0.1:9090", env = "ROUTER_ADMIN_LISTEN")]
    admin_listen: String,
    /// Bearer token every admin API call must present (required off loopback).
    #[arg(long, env = "ROUTER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Log lines as text for people, or one JSON object per line for a
    /// log shipper.
    #[arg(long, value_enum, default_value = "text", env = "ROUTER_LOG_FORMAT")]
    log_format: LogFormat,
    /// What to log, as tracing filter directives (`info`, `debug`,
    /// `info,webhook_router::dispatch=debug`) [default: RUST_LOG, else info].
    #[arg(long, env = "ROUTER_LOG")]
    log: Option<String>,
    /// Open connections at most.
    #[arg(long, default_value_t = Limits::default().max_connections, env = "ROUTER_MAX_CONNECTIONS")]
    max_connections: usize,
    /// Time a client has to send its headers.
    #[arg(long, default_value_t = Limits::default().header_timeout.into(), env = "ROUTER_HEADER_TIMEOUT")]
    header_timeout: humantime::Duration,
    /// Time a client has to send its body.
    #[arg(long, default_value_t = Limits::default().body_timeout.into(), env = "ROUTER_BODY_TIMEOUT")]
    body_timeout: humantime::Duration,
    /// On SIGTERM, how long requests in flight may take before their
    /// connections are cut (at least the body timeout, so a slow upload
    /// can finish).
    #[arg(long, default_value_t = Limits::default().shutdown_grace.into(), env = "ROUTER_SHUTDOWN_GRACE")]
    shutdown_grace: humantime::Duration,
    /// How long a request waits for its event to be durable before a 503.
    #[arg(long, default_value_t = Limits::default().store_timeout.into(), env = "ROUTER_STORE_TIMEOUT")]
    store_timeout: humantime::Duration,
    /// Do not watch the routes directory; reload only on SIGHUP.
    #[arg(long, env = "ROUTER_NO_WATCH", value_parser = clap::builder::BoolishValueParser::new())]
    no_watch: bool,
    /// RetentionArg settled events (delivered, skipped, unrouted) this long; `off`
    /// keeps everything. Failed events stay until retried or deleted.
    #[arg(long, default_value_t = RetentionArg(Retention::default().keep), value_parser = parse_retention, env = "ROUTER_RETENTION")]
    retention: RetentionArg,
    /// Time between retention sweeps.
    #[arg(long, default_value_t = Retention::default().every.into(), env = "ROUTER_RETENTION_EVERY")]
    retention_every: humantime::Duration,
    /// Export traces (OTLP over HTTP, protobuf) to this collector, e.g.
    /// http://localhost:4318 (spans go to <URL>/v1/traces): one per request
    /// and per delivery attempt [default: off, unless OTEL_EXPORTER_OTLP_ENDPOINT
    /// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; OTEL_SERVICE_NAME,
    /// OTEL_EXPORTER_OTLP_HEADERS and OTEL_TRACES_SAMPLER apply].
    #[arg(long, value_name = "URL", env = "ROUTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

/// Stops the watchdog pings when `serve` returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `--retention`'s value: a period, or none (`off`).
#[derive(Debug, Clone, Copy)]
struct RetentionArg(Option<Duration>);

/// As `--help` shows the default: `30days`, or `off`.
impl std::fmt::Display for RetentionArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{}", humantime::format_duration(d)),
            None => f.write_str("off"),
        }
    }
}

fn parse_retention(text: &str) -> Result<RetentionArg, String> {
    match text {
        "off" | "forever" => Ok(RetentionArg(None)),
        t => humantime::parse_duration(t)
            .map(|d| RetentionArg(Some(d)))
            .map_err(|e| format!("{e} (write e.g. 30d, 12h, or off)")),
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let traces = telemetry::trace::exporter(args.otlp_endpoint.as_deref())?;
    telemetry::init(args.log_format, args.log.as_deref(), traces.as_ref())?;
    if let Some(traces) = &traces {
        tracing::info!(to = traces.destination(), "Exporting traces over OTLP/HTTP.");
    }
    let loaded = match config::load(std::slice::from_ref(&args.routes), &ProcessEnv) {
        Ok(l) => l,
        Err(diags) => {
            eprint!("{diags}");
            tracing::error!(routes = %args.routes.display(), errors = diags.errors().count(), "Route files have errors; not starting.");
            return Ok(ExitCode::from(1));
        }
    };
    for w in &loaded.warnings.0 {
        tracing::warn!(file = %w.file.display(), line = w.line, column = w.column, "{}", w.message);
    }
    let admin_addr: Option<SocketAddr> = match args.admin_listen.as_str() {
        "off" | "none" => None,
        a => Some(a.parse().with_context(|| format!("--admin-listen `{a}` is not an address"))?),
    };
    let admin_token = args.admin_token.as_deref().filter(|t| !t.is_empty());
    if let (Some(a), None) = (admin_addr, admin_token) {
        if !a.ip().is_loopback() {
            bail!("--admin-listen {a} is not a loopback address: set --admin-token (or ROUTER_ADMIN_TOKEN) so the admin API is not open to the network");
        }
    }
    let listen = listen_address(args.listen, &loaded.config.trial_secrets)?;
    let store = Store::parse(args.store.as_deref(), args.claim_lease.into()).map_err(anyhow::Error::msg)?;
    let data = open_data(&args.data, &store).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let admin = match admin_addr {
        Some(a) => {
            Some(tokio::net::TcpListener::bind(a).await.with_context(|| format!("cannot listen on {a} (admin)"))?)
        }
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = ?admin.as_ref().and_then(|a| a.local_addr().ok()),
        routes = loaded.config.routes.len(),
        sinks = loaded.config.sinks.len(),
        data = %args.data.display(),
        store = %store,
        "Router started."
    );
    let settings = Settings {
        admin_token: admin_token.map(|token| BearerToken::new(None, vec![Secret::new(token.to_string())])),
        retention: Retention { keep: args.retention.0, every: args.retention_every.into(), ..Retention::default() },
    };
    let rt = Runtime::with_settings(loaded.config, data, settings);
    let env: Arc<dyn EnvSource + Send + Sync> = Arc::new(ProcessEnv);
    let public = !listen.ip().is_loopback();
    let _watch = reload::start(rt.clone(), vec![args.routes.clone()], env, !args.no_watch, true, public)
        .with_context(|| format!("cannot watch {}", args.routes.display()))?;
    let limits = Limits {
        max_connections: args.max_connections,
        header_timeout: args.header_timeout.into(),
        body_timeout: args.body_timeout.into(),
        shutdown_grace: args.shutdown_grace.into(),
        store_timeout: args.store_timeout.into(),
    };
    // The store supervisor may conclude that only a restart in place gets a
    // working store back (see `recovery`): then stop as on SIGTERM, and exec.
    let (stop_supervisor, supervisor_stop) = tokio::sync::watch::channel(false);
    let mut supervisor = tokio::spawn(recovery::supervise(rt.clone(), args.data.clone(), supervisor_stop));
    let reopen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shutdown = {
        let reopen = reopen.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal() => crate::systemd::stopping(),
                verdict = &mut supervisor => {
                    reopen.store(matches!(verdict, Ok(Some(Verdict::Reopen))), std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    };
    let admin = admin.map(|l| (l, crate::admin::router(rt.clone())));
    crate::systemd::ready(rt.config().routes.len());
    let _watchdog = crate::systemd::spawn_watchdog().map(AbortOnDrop);
    server::serve(listener, admin, rt, limits, shutdown).await?;
    let _ = stop_supervisor.send(true);
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    if reopen.load(std::sync::atomic::Ordering::Relaxed) {
        return restart_in_place();
    }
    Ok(ExitCode::SUCCESS)
}

/// Set on the process `restart_in_place` starts: its data directory may
/// still be unusable for a moment, so opening it is retried, not fatal.
const REOPEN_ENV: &str = "ROUTER_REOPEN";

/// Replaces this process with a fresh copy of itself (same arguments and
/// environment): every file handle, lock and stuck thread goes with the old
/// image. Only returns on failure.
fn restart_in_place() -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find this program to restart it")?;
    tracing::warn!(program = %exe.display(), "Restarting in place to reopen the store.");
    let err = std::process::Command::new(&exe).args(std::env::args_os().skip(1)).env(REOPEN_ENV, "1").exec();
    Err(anyhow::Error::new(err).context(format!("cannot restart {}", exe.display())))
}

/// Opens the data directory. After a restart in place it may still refuse
/// (the old image's lock lingers a moment): keep trying, not exit.
async fn open_data(path: &std::path::Path, store: &Store) -> anyhow::Result<DataDir> {
    if std::env::var_os(REOPEN_ENV).is_none() {
        return Ok(DataDir::open_with(path, store)?);
    }
    let fault = crate::telemetry::fault::Fault::default();
    loop {
        match DataDir::open_with(path, store) {
            Ok(d) => return Ok(d),
            Err(e) => {
                if let Some(times) = fault.failed() {
                    tracing::error!(error = %e, times, "Cannot reopen the data directory yet; retrying.");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Where to listen. A secret that is a default written in a route file
/// (the shipped one-command trial) is public knowledge: such a config runs
/// on loopback only, and an explicit network address is refused.
fn listen_address(asked: Option<SocketAddr>, trial_secrets: &[config::TrialSecret]) -> anyhow::Result<SocketAddr> {
    let Some(first) = trial_secrets.first().map(|t| &t.variable) else {
        return Ok(asked.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8080))));
    };
    match asked {
        Some(a) if !a.ip().is_loopback() => bail!(
            "--listen {a} is not a loopback address, and {first} is not set: the route verifies with the trial secret written in its file, which anyone can read. Set {first} to the provider's secret (or listen on 127.0.0.1)"
        ),
        Some(a) => Ok(a),
        None => {
            tracing::warn!(variable = %first, "A route verifies with the trial secret in its file; listening on 127.0.0.1:8080 only. Set the variable to serve the network.");
            Ok(SocketAddr::from(([127, 0, 0, 1], 8080)))
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
