//! Command-line interface: `serve`, `check`, `events`, `store`, `send`,
//! `secret`, `schema`. Each
//! subcommand lives in its own file as `run(args) -> Result<ExitCode>`;
//! anyhow stops here, at the edge.

mod check;
mod events;
mod reader;
mod secret;
mod send;
mod serve;
mod store;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit status for "could not run at all" (bad arguments, unreadable paths).
pub const EXIT_CANNOT_RUN: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "router",
    version,
    about = "A declarative webhook router: routes.d YAML in, durable ingest, delivery to sinks."
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
        Command::Schema => {
            let schema = crate::config::raw::schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--data` and `--admin` with `--json`, shared by every command that reads data.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// The data directory (`router serve --data`) [default: data]. Read
    /// directly when no router holds it; never created.
    #[arg(long, env = "ROUTER_DATA")]
    pub data: Option<std::path::PathBuf>,
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
