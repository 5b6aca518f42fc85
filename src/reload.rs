//! Hot reload: the routes directory is watched (recursively, so scripts and
//! route tests count) and SIGHUP asks for a reload. A reload compiles the
//! whole directory with the loader `router check` uses and swaps the config
//! only if it is valid; otherwise the running config stays and the problems
//! are logged once and kept for the admin API (`GET /reload`).
//!
//! The directory, not its files, is watched: editors write a temp file and
//! rename it over, `git pull` and `cp` replace files, and a Kubernetes
//! ConfigMap swaps a `..data` symlink without ever naming the user's file.
//! Any event in the tree therefore triggers a rescan, debounced.

use crate::config::{self, env::EnvSource};
use crate::runtime::Runtime;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events closer than this are one change (an editor's save is several).
const DEBOUNCE: Duration = Duration::from_millis(150);

/// The outcome of the last reload, for operators.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// RFC 3339 time of the last attempt; `None` before the first.
    pub at: Option<String>,
    /// What asked for it: `watch` or `SIGHUP`.
    pub cause: Option<String>,
    pub ok: bool,
    /// Every problem of a failed reload, `file:line:col: error: message`.
    pub problems: Vec<String>,
    pub reloads: u64,
    pub failures: u64,
}

/// Loads `paths` and swaps the config if it is valid; returns whether it did.
pub fn reload(rt: &Runtime, paths: &[PathBuf], env: &dyn EnvSource, cause: &str) -> bool {
    let result = config::load(paths, env);
    let mut status = rt.reload_status.lock().unwrap_or_else(|p| p.into_inner());
    status.at = Some(crate::event::format_ms(crate::event::now_ms()));
    status.cause = Some(cause.to_string());
    match result {
        Ok(loaded) => {
            for w in &loaded.warnings.0 {
                tracing::warn!(file = %w.file.display(), line = w.line, column = w.column, "{}", w.message);
            }
            let (routes, sinks, views) =
                (loaded.config.routes.len(), loaded.config.sinks.len(), loaded.config.views.len());
            rt.swap(loaded.config);
            status.ok = true;
            status.problems.clear();
            status.reloads += 1;
            tracing::info!(cause, routes, sinks, views, "Routes reloaded.");
            // Deliveries waiting for a sink that is back can go now.
            rt.work.notify_one();
            true
        }
        Err(diags) => {
            status.ok = false;
            status.failures += 1;
            status.problems = diags.errors().map(ToString::to_string).collect();
            for d in diags.errors() {
                tracing::error!(file = %d.file.display(), line = d.line, column = d.column, "{}", d.message);
            }
            tracing::error!(cause, errors = status.problems.len(), "Reload refused; the running routes stay.");
            false
        }
    }
}

/// Keeps the watch alive; dropping it stops reloading.
pub struct Watch {
    _debouncer: Option<Debouncer<notify::RecommendedWatcher>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts reloading `paths` into `rt`: on file changes when `watch_files`,
/// and on SIGHUP when `sighup` (process-wide, so only the binary sets it).
pub fn start(
    rt: Arc<Runtime>,
    paths: Vec<PathBuf>,
    env: Arc<dyn EnvSource + Send + Sync>,
    watch_files: bool,
    sighup: bool,
) -> notify::Result<Watch> {
    let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
    let debouncer = if watch_files {
        let fs_tx = tx.clone();
        let mut d = new_debouncer(DEBOUNCE, move |res: DebounceEventResult| match res {
            Ok(_) => {
                let _ = fs_tx.send("watch");
            }
            Err(e) => tracing::warn!(error = %e, "Route directory watch error."),
        })?;
        for p in &paths {
            d.watcher().watch(p, notify::RecursiveMode::Recursive)?;
        }
        Some(d)
    } else {
        None
    };
    #[cfg(unix)]
    if sighup {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| notify::Error::generic(&format!("cannot handle SIGHUP: {e}")))?;
        let hup_tx = tx.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if hup_tx.send("SIGHUP").is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let task = tokio::spawn(async move {
        while let Some(cause) = rx.recv().await {
            // Changes that came in meanwhile are covered by this rescan.
            while rx.try_recv().is_ok() {}
            let (rt, paths, env) = (rt.clone(), paths.clone(), env.clone());
            let _ = tokio::task::spawn_blocking(move || reload(&rt, &paths, env.as_ref(), cause)).await;
        }
    });
    Ok(Watch { _debouncer: debouncer, task })
}
