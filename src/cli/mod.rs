//! Command-line interface: `serve`, `check`, `events`, `store`, `send`,
//! `secret`, `schema`, `tap`, `completions`, `man`. Each
//! subcommand lives in its own file as `run(args) -> Result<ExitCode>`;
//! anyhow stops here, at the edge.

mod check;
mod events;
mod reader;
mod secret;
mod send;
mod serve;
mod store;
mod tap;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// Exit status for "could not run at all" (bad arguments, unreadable paths).
pub const EXIT_CANNOT_RUN: u8 = 2;

/// The end of `router --help`: the three things a newcomer does first.
const EXAMPLES: &str = "\
Examples:
  router serve --routes routes.d --data data    serve the route files (env: ROUTER_ROUTES, ROUTER_DATA)
  router check --strict routes.d                 validate route files in CI (warnings fail)
  router events list --route whop --limit 20     the newest events of a route, from the running router";

#[derive(Parser, Debug)]
#[command(
    name = "router",
    version,
    about = "A declarative webhook router: routes.d YAML in, durable ingest, delivery to sinks.",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve every route of the routes directory.
    Serve(serve::Args),
    /// Validate route files the way `serve` would load them, binding nothing.
    Check(check::Args),
    /// Read the event log.
    #[command(subcommand)]
    Events(events::Command),
    /// Read what store sinks wrote.
    #[command(subcommand)]
    Store(store::Command),
    /// Sign a sample event as the route's provider would and post it.
    Send(send::Args),
    /// Make secrets in a scheme's format.
    #[command(subcommand)]
    Secret(secret::Command),
    /// Print the JSON Schema of route files (for editors and CI validators).
    Schema,
    /// Create or update the router's tables in a PostgreSQL store, and
    /// exit (`serve` does the same at start, under the same lock).
    Migrate {
        /// The store: postgres://USER:PASSWORD@HOST:PORT/DB.
        #[arg(long, env = "ROUTER_STORE", hide_env_values = true)]
        store: String,
    },
    /// Follow a running router's requests and deliveries live (Ctrl-C stops).
    Tap(tap::Args),
    /// Print a shell completion script (what packagers install).
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page, roff (`router man | man -l -`).
    Man {
        /// Write one page per command instead (router.1, router-serve.1,
        /// router-events-list.1...) into this directory, as packages install them.
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Events(cmd) => {
            // What opening the data directory finds (a torn tail cut, a
            // migration) is said on stderr; the answer stays on stdout.
            crate::telemetry::init_quiet();
            events::run(cmd).await
        }
        Command::Store(cmd) => {
            crate::telemetry::init_quiet();
            store::run(cmd).await
        }
        Command::Send(args) => send::run(args).await,
        Command::Secret(cmd) => secret::run(cmd),
        Command::Tap(args) => tap::run(args).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "router", &mut script);
            print_bytes(&script)
        }
        Command::Man { dir: Some(dir) } => {
            std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &dir)
                .map_err(|e| anyhow::anyhow!("cannot write the man pages to {}: {e}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: None } => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut page)?;
            print_bytes(&page)
        }
        Command::Migrate { store } => migrate(&store),
        Command::Schema => {
            let schema = crate::config::raw::schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `router migrate`: the PostgreSQL log's migrations, alone.
fn migrate(store: &str) -> anyhow::Result<ExitCode> {
    use crate::runtime::Store;
    let Store::Postgres { url, .. } = Store::parse(Some(store), Duration::ZERO).map_err(anyhow::Error::msg)? else {
        anyhow::bail!("--store {store}: the embedded log needs no migration (it is migrated when opened)");
    };
    crate::telemetry::init_quiet();
    let applied = crate::storage::postgres::schema::migrate_url(&url)?;
    match applied.as_slice() {
        [] => println!("The router's tables are up to date."),
        versions => println!("Applied migrations {versions:?}."),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes generated text to stdout; a reader that stopped early
/// (`router man | head`) is not an error.
fn print_bytes(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `--data` and `--admin` with `--json`, shared by every command that reads data.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// The data directory (`router serve --data`) [default: data]. Read
    /// directly when no router holds it; never created.
    #[arg(long, env = "ROUTER_DATA")]
    pub data: Option<std::path::PathBuf>,
    /// The event log's store, as `router serve --store` was given
    /// (`embedded`, or a postgres:// URL) [default: embedded].
    #[arg(long, env = "ROUTER_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Admin address of a running router [default: 127.0.0.1:9090]. Given
    /// without `--data`, the answer comes from that router alone; otherwise
    /// it is asked when a router holds the data directory.
    #[arg(long, env = "ROUTER_ADMIN")]
    pub admin: Option<String>,
    /// The admin API's token, when the router was started with one.
    #[arg(long, env = "ROUTER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every command says what it is for.
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "router", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }

    /// Every `serve` option can come from the environment, as in a
    /// container or a systemd unit.
    #[test]
    fn every_serve_option_has_an_environment_variable() {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        let without: Vec<_> = serve
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version") && a.get_env().is_none())
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(without.is_empty(), "serve options without an env var: {without:?}");
    }
}
