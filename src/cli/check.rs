//! `router check [PATH...]`: the same loader as `serve`, binding nothing.
//! Exit 0 when clean, 1 when there are problems (warnings count only with
//! `--strict`), 2 when it could not run.

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
    /// `text` (path:line:col: message) or `json`.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
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
            (loaded.warnings, Some(summary))
        }
        Err(diags) => (diags, None),
    };
    let errors = diags.errors().count();
    let warnings = diags.0.len() - errors;
    let failed = errors > 0 || (args.strict && warnings > 0);
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": !failed, "errors": errors, "warnings": warnings, "diagnostics": diags.0,
            }))?
        ),
        Format::Text => print_text(&diags, summary, errors, warnings),
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_text(diags: &Diagnostics, summary: Option<String>, errors: usize, warnings: usize) {
    print!("{diags}");
    match (summary, errors) {
        (Some(s), _) if warnings == 0 => println!("ok: {s}"),
        (Some(s), _) => println!("ok with {warnings} warning(s): {s}"),
        (None, _) => println!("{errors} error(s), {warnings} warning(s)"),
    }
}
