//! `router`: parses the command line and maps results to exit codes
//! (0 ok, 1 problems found, 2 could not run).

use clap::Parser;
use std::process::ExitCode;
use webhook_router::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("router: {e:#}");
            ExitCode::from(cli::EXIT_CANNOT_RUN)
        }
    }
}
