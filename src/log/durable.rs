//! Group commit: the single writer that makes the log durable.
//!
//! Requests hand their append to the `log-writer` thread and await the
//! answer. The writer takes every append queued so far, applies them as one
//! sled batch (so one database lock and no contention between requests),
//! runs one sync, and answers them all: concurrent requests share one sync,
//! and an idle router adds no delay (the writer blocks on its queue).
//!
//! sled 0.34's `flush()` is not enough on its own (see docs/durability.md):
//! on Linux it only calls `sync_file_range`, and blob files (values over
//! segment_size/4) are never synced. After each `flush()` we `fdatasync` the
//! `db` file and `fsync` every new blob file and the blob directory.

use super::{Appended, LogError, NewDelivery, NewEvent};
use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// One event to append, as ingest hands it over.
pub(super) type Append = (NewEvent, Vec<NewDelivery>);

/// Applies a group of appends as one atomic batch, in order (the log's
/// layout lives in `log::mod`); returns one answer per append.
pub(super) type ApplyGroup = Box<dyn FnMut(Vec<Append>) -> Result<Vec<Appended>, LogError> + Send>;

// Appends are the hot path and syncs rare: boxing the append would cost an
// allocation per request to save bytes on a queue that is almost always short.
#[allow(clippy::large_enum_variant)]
enum Job {
    Append(Append, oneshot::Sender<Result<Appended, LogError>>),
    /// Only a sync (shutdown, CLI): covers every append made before it.
    Sync(oneshot::Sender<Result<(), LogError>>),
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writer thread for an open sled database at `dir`.
    pub fn start(db: sled::Db, dir: &Path, mut apply: ApplyGroup) -> std::io::Result<Self> {
        let mut syncer = Syncer::new(db, dir)?;
        let (queue, rx) = mpsc::channel::<Job>();
        // A dead disk fails every group: say so once per interval, not per group.
        let sync_faults = crate::telemetry::fault::Fault::default();
        std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            // Ends when every GroupCommit handle is dropped.
            while let Ok(first) = rx.recv() {
                let mut appends = Vec::new();
                let mut replies = Vec::new();
                let mut syncs = Vec::new();
                for job in std::iter::once(first).chain(rx.try_iter()) {
                    match job {
                        Job::Append(a, reply) => {
                            appends.push(a);
                            replies.push(reply);
                        }
                        Job::Sync(reply) => syncs.push(reply),
                    }
                }
                let applied = if appends.is_empty() { Ok(Vec::new()) } else { apply(appends) };
                let synced = syncer.sync().map_err(|e| LogError::Unavailable(e.to_string()));
                match &synced {
                    Err(e) => {
                        if let Some(times) = sync_faults.failed() {
                            tracing::error!(error = %e, times, "Event log sync failed; requests get 503.");
                        }
                    }
                    Ok(()) => _ = sync_faults.ok(),
                }
                for reply in syncs {
                    let _ = reply.send(synced.clone());
                }
                match (applied, synced) {
                    (Ok(answers), Ok(())) => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(Ok(answer));
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        for reply in replies {
                            let _ = reply.send(Err(LogError::Unavailable(e.to_string())));
                        }
                    }
                }
            }
        })?;
        Ok(Self { queue })
    }

    /// Appends and resolves once the append is on disk.
    pub async fn append(&self, append: Append) -> Result<Appended, LogError> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(Job::Append(append, tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Blocks until everything appended before the call is on disk.
    pub fn sync_blocking(&self) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(Job::Sync(tx)).map_err(|_| stopped())?;
        rx.blocking_recv().map_err(|_| stopped())?
    }
}

fn stopped() -> LogError {
    LogError::Unavailable("log writer stopped".into())
}

/// The files a sync must reach beyond sled's own flush.
struct Syncer {
    db: sled::Db,
    data_file: File,
    blob_dir: PathBuf,
    synced_blobs: HashSet<std::ffi::OsString>,
}

impl Syncer {
    fn new(db: sled::Db, dir: &Path) -> std::io::Result<Self> {
        let data_file = File::open(dir.join("db"))?;
        // The directory entries of sled's files must be durable too.
        File::open(dir)?.sync_all()?;
        Ok(Self { db, data_file, blob_dir: dir.join("blobs"), synced_blobs: HashSet::new() })
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.db.flush().map_err(std::io::Error::other)?;
        self.data_file.sync_data()?;
        self.sync_new_blobs()
    }

    fn sync_new_blobs(&mut self) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(&self.blob_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut any = false;
        let mut present = HashSet::new();
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_all()?,
                    // sled removed it meanwhile (value overwritten): nothing to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                any = true;
            }
            present.insert(name);
        }
        if any {
            File::open(&self.blob_dir)?.sync_all()?;
        }
        self.synced_blobs = present;
        Ok(())
    }
}
