//! Logging setup, and the in-process statistics behind the admin API, the
//! dashboard and Prometheus `/metrics`.

pub mod fault;
pub mod prometheus;
pub mod stats;
pub mod tap;
pub mod trace;

pub use stats::{DeliveryVerdict, Reject, RequestVerdict, Stats};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global tracing subscriber. What is logged: `directives`
/// (`--log`, `ROUTER_LOG`), else `RUST_LOG`, else info. With `traces`, the
/// router's spans are exported too (their filter is the export layer's own).
pub fn init(format: LogFormat, directives: Option<&str>, traces: Option<&trace::Exporter>) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = match directives {
        Some(d) => tracing_subscriber::EnvFilter::try_new(d).map_err(|e| {
            anyhow::anyhow!(
                "--log `{d}` is not a log filter ({e}): write e.g. info, debug or info,webhook_router::dispatch=debug"
            )
        })?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn")),
    };
    let logs = match format {
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
        }
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
    };
    let _ = tracing_subscriber::registry().with(logs.with_filter(filter)).with(traces.map(|t| t.layer())).try_init();
    Ok(())
}

/// For the CLI's reading commands: warnings and errors only, as text on stderr.
pub fn init_quiet() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
