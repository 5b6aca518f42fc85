//! Group commit: the one place that makes sled's writes durable.
//!
//! Writers apply their batch, then `wait()`. A single flusher thread takes
//! every waiter queued so far, runs one sync, and wakes them all, so
//! concurrent requests share one sync and an idle router adds no delay.
//!
//! sled 0.34's `flush()` is not enough on its own (see docs/durability.md):
//! on Linux it only calls `sync_file_range`, and blob files (values over
//! segment_size/4) are never synced. After each `flush()` we `fdatasync` the
//! `db` file and `fsync` every new blob file and the blob directory.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), String>>;

/// Handle to the flusher thread; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Waiter>,
}

impl GroupCommit {
    /// Starts the flusher thread for an open sled database at `dir`.
    pub fn start(db: sled::Db, dir: &Path) -> std::io::Result<Self> {
        let mut syncer = Syncer::new(db, dir)?;
        let (queue, rx) = mpsc::channel::<Waiter>();
        std::thread::Builder::new().name("log-flusher".into()).spawn(move || {
            // Ends when every GroupCommit handle is dropped.
            while let Ok(first) = rx.recv() {
                let mut waiters = vec![first];
                waiters.extend(rx.try_iter());
                let result = syncer.sync().map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, "Event log sync failed; requests get 503.");
                }
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        })?;
        Ok(Self { queue })
    }

    /// Resolves once every write made before this call is on disk.
    pub async fn wait(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(tx).map_err(|_| "log flusher stopped".to_string())?;
        rx.await.map_err(|_| "log flusher stopped".to_string())?
    }

    /// Blocking variant, for the CLI and shutdown.
    pub fn wait_blocking(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(tx).map_err(|_| "log flusher stopped".to_string())?;
        rx.blocking_recv().map_err(|_| "log flusher stopped".to_string())?
    }
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
