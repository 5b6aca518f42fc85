//! Hot reload: the routes directory is watched (recursively, so scripts and
//! route tests count) and SIGHUP asks for a reload. A reload compiles the
//! whole directory with the loader `router check` uses and swaps the config
//! only if it is valid; otherwise the running config stays and the problems
//! are logged once and kept for the admin API (`GET /reload`).
//!
//! The directory, not its files, is watched: editors write a temp file and
//! rename it over, `git pull` and `cp` replace files, and a Kubernetes
//! ConfigMap swaps a `..data` symlink without ever naming the user's file.
//! Any change in the tree therefore triggers a rescan, debounced.
//!
//! Only changes count: reading a file (`cat`, `router check`, an editor
//! opening it, the reload itself) raises open/access events, and reacting
//! to those reloaded forever. And a rescan whose files are byte for byte
//! what the last one read (a `touch`, a save without edits) does not reload.

use crate::config::{self, env::EnvSource};
use crate::runtime::Runtime;
use notify::{EventKind, RecommendedWatcher, Watcher};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Events closer than this are one change (an editor's save is several).
const DEBOUNCE: Duration = Duration::from_millis(150);

pub use crate::runtime::ReloadStatus;

/// Loads `paths` and swaps the config if it is valid; returns whether it did.
/// `public`: the listener serves the network, so a trial secret (a default
/// written in a route file) is refused.
pub fn reload(rt: &Runtime, paths: &[PathBuf], env: &dyn EnvSource, cause: &str, public: bool) -> bool {
    let result = config::load(paths, env).and_then(|loaded| match loaded.config.trial_secrets.first() {
        Some(trial) if public => {
            let name = &trial.variable;
            let mut diags = config::Diagnostics::default();
            diags.push(
                config::Diagnostic::error(&trial.file, trial.at, format!("`{name}` is not set and this router serves the network: a route would verify with the trial secret written in its file"))
                    .with_hint(format!("export {name}=<the provider's secret> and reload")),
            );
            Err(diags)
        }
        _ => Ok(loaded),
    });
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
            status.loaded_at_ms = crate::event::now_ms();
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

/// Whether a watch event may have changed what the loader reads.
fn is_change(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any)
        && !matches!(kind, EventKind::Modify(notify::event::ModifyKind::Metadata(_)))
}

/// A digest of every file under `paths` (names and contents, symlinks
/// followed): equal digests mean the loader would read the same bytes.
pub fn fingerprint(paths: &[PathBuf]) -> [u8; 32] {
    fn walk(dir: &Path, hash: &mut Sha256, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for path in entries {
            hash.update(path.as_os_str().as_encoded_bytes());
            hash.update([0]);
            if path.is_dir() {
                // A symlink loop ends here rather than never.
                if depth < 16 {
                    walk(&path, hash, depth + 1);
                }
            } else if let Ok(bytes) = std::fs::read(&path) {
                hash.update((bytes.len() as u64).to_le_bytes());
                hash.update(&bytes);
            }
        }
    }
    let mut hash = Sha256::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut hash, 0);
        } else if let Ok(bytes) = std::fs::read(p) {
            hash.update(&bytes);
        }
    }
    hash.finalize().into()
}

/// Reloads unless a watch event left every file as the last scan read it.
/// SIGHUP always reloads: the environment may have changed.
fn rescan(
    rt: &Runtime,
    paths: &[PathBuf],
    env: &dyn EnvSource,
    last_read: &Mutex<[u8; 32]>,
    cause: &str,
    public: bool,
) {
    let now = fingerprint(paths);
    let mut last = last_read.lock().unwrap_or_else(|p| p.into_inner());
    if cause == "watch" && *last == now {
        tracing::debug!("Route files unchanged; no reload.");
        return;
    }
    *last = now;
    crate::systemd::reloading();
    let applied = reload(rt, paths, env, cause, public);
    crate::systemd::reloaded(applied);
}

/// A reload that panicked (a loader defect): shown in `GET /reload` and
/// the log like any refused reload, and the running routes stay.
fn reload_panicked(rt: &Runtime, e: &tokio::task::JoinError) {
    let mut status = rt.reload_status.lock().unwrap_or_else(|p| p.into_inner());
    status.at = Some(crate::event::format_ms(crate::event::now_ms()));
    status.ok = false;
    status.failures += 1;
    status.problems = vec![format!("the route loader failed unexpectedly ({e}); the running routes stay")];
    tracing::error!(error = %e, "Reload panicked; the running routes stay.");
}

/// Keeps the watch alive; dropping it stops reloading.
pub struct Watch {
    _watcher: Option<RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts reloading `paths` into `rt`: on file changes when `watch_files`,
/// and on SIGHUP when `sighup` (process-wide, so only the binary sets it);
/// `public`: the listener serves the network (see `reload`).
pub fn start(
    rt: Arc<Runtime>,
    paths: Vec<PathBuf>,
    env: Arc<dyn EnvSource + Send + Sync>,
    watch_files: bool,
    sighup: bool,
    public: bool,
) -> notify::Result<Watch> {
    let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
    let watcher = if watch_files {
        let fs_tx = tx.clone();
        let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) if is_change(&event.kind) => {
                let _ = fs_tx.send("watch");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Route directory watch error."),
        })?;
        for p in &paths {
            w.watch(p, notify::RecursiveMode::Recursive)?;
        }
        tracing::info!(paths = ?paths, "Watching the route files: a change reloads them.");
        Some(w)
    } else {
        tracing::info!("Not watching the route files (--no-watch): SIGHUP reloads them.");
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
    // What the running config was loaded from (the caller loaded it just now).
    let last_read = Arc::new(Mutex::new(fingerprint(&paths)));
    let task = tokio::spawn(async move {
        while let Some(mut cause) = rx.recv().await {
            // An editor's save is several events: wait for the burst to end;
            // this rescan covers all of them.
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(more) = rx.try_recv() {
                if more == "SIGHUP" {
                    cause = more;
                }
            }
            let job = (rt.clone(), paths.clone(), env.clone(), last_read.clone());
            let done =
                tokio::task::spawn_blocking(move || rescan(&job.0, &job.1, job.2.as_ref(), &job.3, cause, public));
            if let Err(e) = done.await {
                reload_panicked(&rt, &e);
            }
        }
    });
    Ok(Watch { _watcher: watcher, task })
}
