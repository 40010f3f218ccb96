//! Where the database's bytes live: the file at `StoreOptions::path`, or a redb
//! [`StorageBackend`] made by a function (the fault-injection tests: power cuts, a full disk),
//! and opening the database on it.

use super::{OpenError, StoreOptions};
use redb::{BackendError, StorageBackend};
use std::ops::Bound;
use std::sync::Arc;

type MakeBackend = dyn Fn() -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync;

/// Makes the storage a database is opened on, each time the store opens it. For tests that
/// inject faults below redb; the node itself always uses the file.
#[derive(Clone)]
pub struct Backend(Arc<MakeBackend>);

impl Backend {
    /// A backend made by `make` on every open.
    pub fn new(
        make: impl Fn() -> std::io::Result<Box<dyn StorageBackend>> + Send + Sync + 'static,
    ) -> Self {
        Backend(Arc::new(make))
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backend(..)")
    }
}

/// A boxed backend is a backend (redb takes `impl StorageBackend`).
#[derive(Debug)]
struct Boxed(Box<dyn StorageBackend>);

impl StorageBackend for Boxed {
    fn len(&self) -> Result<u64, BackendError> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), BackendError> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Result<(), BackendError> {
        self.0.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}

/// Opens (or creates) the database with the store's settings, on the file or on
/// `opts.backend`, and compacts it when much of it is free (see
/// [`StoreOptions::compact_free_bytes`]).
pub(crate) fn open_database(opts: &StoreOptions) -> Result<redb::Database, OpenError> {
    let path = &opts.path;
    let backend: Box<dyn StorageBackend> = match &opts.backend {
        Some(make) => (make.0)().map_err(|e| OpenError::from_io(path, e))?,
        None => {
            let file = std::fs::File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| OpenError::from_io(path, e))?;
            Box::new(redb::backends::FileBackend::new(file))
        }
    };
    let file_len = backend.len().unwrap_or(0);
    let repair_path = path.clone();
    let mut db = redb::Builder::new()
        .set_cache_size(usize::try_from(opts.cache_size).unwrap_or(usize::MAX))
        .set_repair_callback(move |session| {
            // Called only after an unclean shutdown without quick-repair data.
            tracing::warn!(
                path = %repair_path.display(),
                progress = format!("{:.0}%", session.progress() * 100.0),
                "repairing the store after an unclean shutdown"
            );
        })
        .create_with_backend(Boxed(backend))
        .map_err(|e| OpenError::from_redb(path, e))?;
    compact_if_worth_it(&mut db, opts, file_len)?;
    Ok(db)
}

/// The file does not shrink by itself: after a long outage drained, most of it is free pages.
/// Compacting needs the database to itself, so it happens here, before anything else uses it.
fn compact_if_worth_it(
    db: &mut redb::Database,
    opts: &StoreOptions,
    file_len: u64,
) -> Result<(), OpenError> {
    if file_len < opts.compact_free_bytes.max(1) {
        return Ok(());
    }
    let used = {
        let txn = db
            .begin_write()
            .map_err(|e| OpenError::setup(&opts.path, e))?;
        let stats = txn.stats().map_err(|e| OpenError::setup(&opts.path, e))?;
        let _ = txn.abort();
        stats.allocated_pages() * stats.page_size() as u64
    };
    let free = file_len.saturating_sub(used);
    if free < opts.compact_free_bytes || free < file_len / 2 {
        return Ok(());
    }
    let started = std::time::Instant::now();
    tracing::info!(path = %opts.path.display(), file_bytes = file_len, free_bytes = free,
        "compacting the store (most of it is free)");
    // One call compacts as far as it can; a second finds little left. Bounded all the same.
    for _ in 0..4 {
        match db.compact(redb::CompactionMode::Balanced) {
            Ok(true) => continue,
            Ok(false) => break,
            Err(redb::CompactionError::Storage(redb::StorageError::Io(e))) => {
                return Err(OpenError::from_io(&opts.path, e));
            }
            Err(e) => {
                return Err(OpenError::setup(&opts.path, redb::Error::from(e)));
            }
        }
    }
    tracing::info!(path = %opts.path.display(), took_ms = started.elapsed().as_millis() as u64,
        "store compacted");
    Ok(())
}
