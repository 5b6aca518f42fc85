//! `router check [PATH...]`: the same loader as `serve`, binding nothing,
//! then the route tests of each directory (`tests/*.yaml`, see
//! `route_test_runner`); with `--connect`, also what the postgres sinks'
//! databases say (`connect`). Exit 0 when clean, 1 when there are problems or failed
//! tests (warnings count only with `--strict`), 2 when it could not run.

mod connect;
pub mod route_test_runner;

use crate::config::{self, env::ProcessEnv, Diagnostics};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Route directories or files (default: routes.d).
    paths: Vec<PathBuf>,
    /// Fail on warnings too.
    #[arg(long)]
    strict: bool,
    /// Skip the route tests under `<dir>/tests/`.
    #[arg(long)]
    no_tests: bool,
    /// Also open each postgres sink's database: report a missing table or
    /// column, a `conflict:` with no unique index, and example values a
    /// column's type refuses.
    #[arg(long)]
    connect: bool,
    /// `text` (path:line:col: message) or `json`.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() { vec![PathBuf::from("routes.d")] } else { args.paths };
    if let Some(missing) = paths.iter().find(|p| !p.exists()) {
        eprintln!("router check: {} does not exist", missing.display());
        return Ok(ExitCode::from(super::EXIT_CANNOT_RUN));
    }
    let (diags, summary) = match config::load(&paths, &ProcessEnv) {
        Ok(loaded) => {
            let c = &loaded.config;
            let summary = format!(
                "{} file(s): {} route(s), {} sink(s), {} view(s)",
                c.files.len(),
                c.routes.len(),
                c.sinks.len(),
                c.views.len()
            );
            let mut diags = loaded.warnings;
            if args.connect {
                diags.0.extend(connect::check(&paths, loaded.config).await.0);
            }
            (diags, Some(summary))
        }
        Err(diags) => (diags, None),
    };
    let errors = diags.errors().count();
    let warnings = diags.0.len() - errors;
    // Route tests only mean something once the routes load.
    let mut tests = route_test_runner::Report::default();
    if summary.is_some() && !args.no_tests {
        for dir in paths.iter().filter(|p| p.is_dir()) {
            let r = route_test_runner::run(dir, &ProcessEnv).await;
            tests.passed += r.passed;
            tests.failures.extend(r.failures);
        }
    }
    let failed = errors > 0 || (args.strict && warnings > 0) || !tests.failures.is_empty();
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": !failed, "errors": errors, "warnings": warnings, "diagnostics": diags.0,
                "tests": { "passed": tests.passed, "failed": tests.failures.len(), "failures": tests.failures },
            }))?
        ),
        Format::Text => {
            print_text(&diags, summary, errors, warnings);
            for f in &tests.failures {
                println!("{f}");
            }
            if tests.passed + tests.failures.len() > 0 {
                println!("route tests: {} passed, {} failed", tests.passed, tests.failures.len());
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_text(diags: &Diagnostics, summary: Option<String>, errors: usize, warnings: usize) {
    print!("{diags}");
    match summary {
        Some(s) if errors == 0 && warnings == 0 => println!("ok: {s}"),
        Some(s) if errors == 0 => println!("ok with {warnings} warning(s): {s}"),
        _ => println!("{errors} error(s), {warnings} warning(s)"),
    }
}
