//! `router`: parses the command line and maps results to exit codes
//! (0 ok, 1 problems found, 2 could not run).

use clap::Parser;
use std::process::ExitCode;
use webhook_router::cli::{self, Cli};

/// The hot path allocates many small JSON nodes per event; under load
/// glibc's malloc spent ~30% of the router's CPU on that churn (measured
/// with sled, 2026-12-01), mimalloc a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    webhook_router::sink::http::install_tls_provider();
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("router: {e:#}");
            ExitCode::from(cli::EXIT_CANNOT_RUN)
        }
    }
}
