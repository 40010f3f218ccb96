//! The one redb file: tables, schema version, group commit, quarantine.
//!
//! Everything the node must not forget lives in one redb 5 database under `data_dir`
//! (`wms-node.v3.redb`, [`FILE`]). Values are postcard-encoded; each module declares its own
//! tables (`TableDefinition<&str | u64, &[u8]>`) and reads and writes them through [`put`],
//! [`get`] and [`decode`].
//!
//! # What "acknowledged" means
//!
//! [`Store::write`] resolves only after the transaction holding the caller's writes is
//! committed with `Durability::Immediate`, i.e. fsynced. Anything acknowledged to the outside
//! (an OK beep, an `Ok` from an enqueue) must come after that. Writes from many tasks share
//! one transaction and one fsync (group commit, see `store/writer.rs`), which keeps the per-write
//! cost low on eMMC and SD cards. There is no other durability level in the node.
//!
//! # Power cuts
//!
//! By default every commit has redb's quick-repair on (`store.quick_repair`): the allocator
//! state is saved with each commit and two-phase commit guarantees a valid primary slot, so
//! opening after a power cut is quick instead of a walk over the whole file. The power-cut
//! test (`tests/store_powercut.rs`) throws away every write not yet synced at random points
//! of enqueue, delivery and compaction, and reopens.
//!
//! # Opening
//!
//! [`Store::open`] fails with an [`OpenError`] (operations on an open store fail with a
//! [`StoreError`], as redb keeps `DatabaseError` apart from its transaction errors). It never
//! blocks on another process: a second process gets [`OpenError::InUse`] at once (redb 5 takes
//! a byte-range lock). The store of the releases before redb 5 (`wms-node.redb`, redb 2.6's file
//! format 2, which redb 5 cannot read) is converted into a new file and left as it was, so an
//! earlier release brought back still runs on it (see `legacy.rs` and docs/OPERATIONS.md).
//!
//! # When the disk fails
//!
//! A commit that fails in the storage (the disk is full, an I/O error) leaves redb refusing
//! every later write until the database is reopened. The store then:
//! - refuses every write at once ([`StoreError::DiskFull`] or [`StoreError::Unavailable`]):
//!   nothing is acknowledged, an enqueue hands its op back, nothing waits in a queue;
//! - says so: [`Store::health`] (the daemon's `store` check fails with it), the
//!   `wms_node_store_writable` gauge, and the `store_disk_full` (or `store_io`) alert naming the disk:
//!   directory, device and mount point;
//! - keeps serving reads from the failed handle, so the status page and `queue list` work;
//! - reopens the database by itself (redb repairs what the failed commit left), after a full
//!   disk only once a 1 MiB probe file fits beside it, proves that a durable commit works, and
//!   writes again. Attempts are 250 ms apart at first, then twice as far, at most 10 s.
//!
//! The delivery loop starts no attempt while the store cannot write (nothing is sent that
//! cannot be recorded as sent; see `outbox/deliver.rs`).
//!
//! Why reopen in the process rather than exit for systemd to restart the node: a full disk
//! lasts until someone frees space, minutes or hours, and a restart frees nothing. The unit
//! restarts the node forever on purpose, so it would crash-loop every few seconds: each time
//! re-reading the store, reconnecting and re-authorizing, and each time without `/healthz`,
//! the status page and the admin API, just when an operator needs them to see what is wrong.
//! Reopening is what a restart does for the store (redb's repair on open), without throwing
//! away what the rest of the node holds: a delivery whose success is waiting to be recorded
//! would be sent again after a restart. The store is writable again within 10 s of space
//! returning.
//!
//! # Damaged records
//!
//! A value that does not decode is never a panic and never stops start-up: the reader gets
//! [`StoreError::Corrupt`], the record is moved to the `quarantine` table by the next write
//! (re-checked there), logged with table and key (never the value), counted in
//! `wms_node_store_quarantined_records_total{table}`, raised as the `store_quarantine` alert and shown
//! by `wms-node queue stats`.
//!
//! # Tables owned here
//!
//! `meta` (schema version, store id, where a converted file came from; see [`schema`]) and
//! `quarantine` (see [`quarantine`]). Must never: hold a write transaction outside the
//! writer thread, or keep a long-lived savepoint (it would make the file append-only).

mod backend;
mod codec;
mod disk;
mod error;
mod legacy;
pub mod quarantine;
pub mod schema;
mod status;
mod writer;

pub use backend::Backend;
pub use codec::{
    Bytes, ReadTxn, after_commit, decode, delete, encode, get, put, report_undecodable,
};
pub use error::{Disposition, OpenError, StoreError};
pub use schema::{META, Migration, Schema};

use crate::alert::Alerts;
use codec::QuarantineQueue;
use redb::{ReadTransaction, ReadableDatabase, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// What the outbox does when its byte cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapPolicy {
    /// Refuse the new op; the producer gets the op back with the error and decides.
    #[default]
    RejectNew,
    /// Make room by dropping the oldest non-critical ops (counted, logged, alerted).
    DropOldest,
    /// `enqueue_now` waits until there is room (the producer is paused); an enqueue inside
    /// a caller's transaction is refused as with `reject_new`.
    Block,
}

impl std::fmt::Display for CapPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CapPolicy::RejectNew => "reject_new",
            CapPolicy::DropOldest => "drop_oldest",
            CapPolicy::Block => "block",
        })
    }
}

/// The store's file name inside the data directory (redb 5, file format 3).
pub const FILE: &str = "wms-node.v3.redb";

/// The file of the releases before redb 5 (redb 2.6, file format 2), in the same directory.
/// It is converted into [`FILE`] and then left alone, so an earlier release brought back runs
/// on it (see `legacy.rs`).
pub const LEGACY_FILE: &str = "wms-node.redb";

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The database file, normally `<data_dir>/wms-node.v3.redb` ([`FILE`]).
    pub path: PathBuf,
    /// The earlier releases' file (normally `<data_dir>/wms-node.redb`, [`LEGACY_FILE`]): if
    /// it exists, it is converted into `path` when `path` does not exist yet, or when the
    /// earlier release has run on it since it was converted. `None`: no such file is looked
    /// for.
    pub legacy_path: Option<PathBuf>,
    /// redb's page cache in bytes (its default is 1 GiB, too much for a gateway).
    pub cache_size: u64,
    /// Byte cap on the outbox backlog (accounted record bytes), 0 = none. Critical ops are
    /// accepted beyond it; see `docs/OUTBOX.md` for sizing.
    pub max_bytes: u64,
    /// What happens at the cap.
    pub cap_policy: CapPolicy,
    /// How long a write that finds the writer idle waits for others to share its commit
    /// (under load, writes arriving during a commit share the next one without waiting).
    /// 0 by default: with redb 5 a commit is short, and at 1,000 ops/s waiting for company
    /// only added its length to every op (docs/BENCHMARKS.md).
    pub group_commit_max_wait: Duration,
    /// The most writes in one transaction.
    pub group_commit_max_batch: usize,
    /// redb quick-repair on every commit: the allocator state is saved with each commit and
    /// two-phase commit is used, so opening after a power cut needs no walk over the whole
    /// file, at the price of a second fsync per commit (see `docs/BENCHMARKS.md`). Off, a
    /// commit is one fsync and the first open after a power cut verifies every page.
    pub quick_repair: bool,
    /// Opening compacts the file when at least this many bytes of it are free and they are
    /// at least half of it (a drained backlog leaves the file as large as it grew).
    pub compact_free_bytes: u64,
    /// Where the bytes live instead of the file at `path` (fault-injection tests; `path` then
    /// only names the store in logs and errors, and no earlier release's file is looked for).
    pub backend: Option<Backend>,
    /// The parts of the node whose tables live in this store, with their migration paths
    /// (e.g. `wms_node::outbox::SCHEMA`): opening runs the steps the file has not had. The
    /// store knows nothing else of them; a part not listed is neither migrated nor checked.
    pub schemas: Vec<schema::Schema>,
    /// Where to keep a copy of the file before a migration changes it (an OTA trial boot
    /// sets this to `<data_dir>/ota/trial/wms-node.redb`, so a rollback can put the old file
    /// back). The copy is complete and fsynced, and renamed into place, before the first
    /// change; a file that needs no migration is not copied. Converting an earlier release's
    /// file needs no copy: that file is never changed (see `legacy.rs`).
    pub migration_copy: Option<PathBuf>,
}

impl StoreOptions {
    /// The store in `data_dir` ([`FILE`], converted from [`LEGACY_FILE`] if need be), with
    /// the defaults of [`new`](Self::new).
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Self {
        let dir = data_dir.into();
        StoreOptions {
            legacy_path: Some(dir.join(LEGACY_FILE)),
            ..StoreOptions::new(dir.join(FILE))
        }
    }

    /// Whether there is a store to open: the file, or an earlier release's file to convert.
    pub fn exists(&self) -> bool {
        self.path.exists() || self.legacy_path.as_ref().is_some_and(|p| p.exists())
    }

    /// The store at `path` (no earlier release's file is looked for), with defaults sized
    /// for a gateway with 512 MiB of RAM.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreOptions {
            path: path.into(),
            legacy_path: None,
            cache_size: 16 * 1024 * 1024,
            max_bytes: 256 * 1024 * 1024,
            cap_policy: CapPolicy::RejectNew,
            group_commit_max_wait: Duration::ZERO,
            group_commit_max_batch: 1024,
            quick_repair: true,
            compact_free_bytes: 64 * 1024 * 1024,
            backend: None,
            schemas: Vec::new(),
            migration_copy: None,
        }
    }
}

/// The store: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// The open database, shared by the writer and the readers; `None` while the writer reopens
/// it after a failure.
pub(crate) type DbSlot = RwLock<Option<Arc<redb::Database>>>;

struct Inner {
    db: Arc<DbSlot>,
    opts: StoreOptions,
    store_id: String,
    tx: Mutex<Option<mpsc::Sender<writer::Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    quarantine: Arc<QuarantineQueue>,
    health: Arc<tokio::sync::watch::Sender<StoreHealth>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Last handle gone without `close`: stop the writer and wait for it, so the file is
        // released when this returns (tests reopen it at once).
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if t.thread().id() == std::thread::current().id() {
                // The last handle went on the writer's own thread (a job or a hook owned it).
                // Never join yourself: the writer sees its channel closed when this job is
                // done, stops, and releases the file by itself.
                return;
            }
            let _ = t.join();
        }
    }
}

/// Whether the store can record anything: for `/healthz`, `/metrics` and the delivery loop
/// (which sends nothing it could not record as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// Whether writes are accepted.
    pub writable: bool,
    /// Why not, naming the disk (`None` while writable).
    pub problem: Option<String>,
    /// Whether the cause is a full disk.
    pub disk_full: bool,
    /// Since when this state holds (Unix ms).
    pub since_ms: u64,
}

impl StoreHealth {
    fn ok() -> Self {
        StoreHealth {
            writable: true,
            problem: None,
            disk_full: false,
            since_ms: now_ms(),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.opts.path)
            .field("store_id", &self.inner.store_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed), converts an earlier release's file, repairs after a power
    /// cut, runs migrations, starts the group-commit writer thread. Never hangs, never panics
    /// on a damaged record.
    pub fn open(opts: StoreOptions, alerts: Alerts) -> Result<Store, OpenError> {
        Self::open_with(opts, alerts, schema::MIGRATIONS)
    }

    /// [`open`](Self::open) with a given migration path (tests of the migration machinery).
    #[doc(hidden)]
    pub fn open_with(
        opts: StoreOptions,
        alerts: Alerts,
        migrations: &[schema::Migration],
    ) -> Result<Store, OpenError> {
        if let Some(dir) = opts.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OpenError::from_io(dir, e))?;
        }
        let path = opts.path.clone();
        let db = match (&opts.legacy_path, &opts.backend) {
            (Some(legacy), None) => legacy::open(&opts, legacy, &alerts)?,
            _ => backend::open_database(&opts)?,
        };
        let db = match (&opts.migration_copy, &opts.backend) {
            (Some(copy), None) => keep_copy_if_migrating(db, copy, migrations, &opts)?,
            _ => db,
        };
        let migrated = schema::migrate(&db, &path, migrations, &opts.schemas, opts.quick_repair)?;
        if migrated.from != migrated.to {
            tracing::info!(from = migrated.from, to = migrated.to, path = %path.display(), "store schema updated");
        }
        let db = Arc::new(RwLock::new(Some(Arc::new(db))));
        let quarantine = Arc::new(QuarantineQueue::default());
        let (tx, rx) = mpsc::channel();
        let health = Arc::new(tokio::sync::watch::Sender::new(StoreHealth::ok()));
        metrics::gauge!("wms_node_store_writable").set(1.0);
        let w = writer::Writer {
            db: db.clone(),
            opts: opts.clone(),
            rx,
            max_wait: opts.group_commit_max_wait,
            max_batch: opts.group_commit_max_batch,
            quick_repair: opts.quick_repair,
            quarantine: quarantine.clone(),
            alerts,
            health: health.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || w.run())
            .map_err(|e| OpenError::from_io(&path, e))?;
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                opts,
                store_id: migrated.store_id,
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                quarantine,
                health,
            }),
        })
    }

    /// Whether the store can record anything now, and if not why (naming the disk).
    pub fn health(&self) -> StoreHealth {
        self.inner.health.borrow().clone()
    }

    /// Whether writes are accepted now (see [`health`](Self::health)).
    pub fn is_writable(&self) -> bool {
        self.inner.health.borrow().writable
    }

    /// Changes of [`health`](Self::health), for `/healthz` and the delivery loop.
    pub fn watch_health(&self) -> tokio::sync::watch::Receiver<StoreHealth> {
        self.inner.health.subscribe()
    }

    /// The options it was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    /// A random id made when the file was created (prefixes idempotency keys, so a rebuilt
    /// store never reuses one).
    pub fn store_id(&self) -> &str {
        &self.inner.store_id
    }

    /// Bytes free for the node's user on the disk holding the store (`None` where the
    /// file system cannot tell).
    pub fn disk_free_bytes(&self) -> Option<u64> {
        status::free_bytes(&self.inner.opts.path)
    }

    /// The size of the file on disk in bytes (it does not shrink until compacted).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.inner.opts.path).map_or(0, |m| m.len())
    }

    fn nudge(&self) {
        let guard = self.inner.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = guard.as_ref() {
            let _ = tx.send(writer::Msg::Nudge);
        }
    }

    /// Runs `f` inside a write transaction shared with other concurrent writers (group
    /// commit); resolves only after that transaction is durable (fsynced). If `f` returns Err
    /// its writes are not committed and its error is returned; other writers are unaffected.
    /// `f` may be called more than once (a batch may be retried), so it must be FnMut and
    /// side-effect free outside the transaction (use [`after_commit`] for effects).
    ///
    /// The error type is the caller's: anything a [`StoreError`] converts into, so a module
    /// above the store can refuse inside the transaction with its own error (the outbox's
    /// `EnqueueError`) and get it back as it was.
    ///
    /// If the returned future is dropped before it resolves, the write still happens.
    pub async fn write<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnMut(&WriteTransaction) -> Result<R, E> + Send + 'static,
        E: From<StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The caller may have gone away (its future was dropped): the write stands anyway.
        self.submit(f, move |r| {
            let _ = tx.send(r);
        });
        rx.await.unwrap_or_else(|_| Err(StoreError::Closed.into()))
    }

    /// [`write`](Self::write) for threads outside the async runtime (blocks this thread).
    pub fn write_blocking<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: FnMut(&WriteTransaction) -> Result<R, E> + Send + 'static,
        E: From<StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(f, move |r| {
            let _ = tx.send(r);
        });
        rx.blocking_recv()
            .unwrap_or_else(|_| Err(StoreError::Closed.into()))
    }

    /// Like [`write`](Self::write), but instead of a future, `answer` is called with the
    /// result on the writer thread, after the commit (or the failure), whatever happens to
    /// the caller. For modules that group many callers' writes into one job and hand each
    /// its own result. `answer` must be quick and must not block (send on a channel, notify);
    /// it may submit more writes. If the store is closed, `answer` gets
    /// [`StoreError::Closed`] at once, on the calling thread.
    pub fn submit<R, E, F, A>(&self, f: F, answer: A)
    where
        F: FnMut(&WriteTransaction) -> Result<R, E> + Send + 'static,
        E: From<StoreError> + Send + 'static,
        A: FnOnce(Result<R, E>) + Send + 'static,
        R: Send + 'static,
    {
        let job = Box::new(writer::Callback::new(f, answer));
        let guard = self.inner.tx.lock().unwrap_or_else(|e| e.into_inner());
        let rejected = match guard.as_ref() {
            Some(tx) => match tx.send(writer::Msg::Job(job)) {
                Ok(()) => None,
                Err(mpsc::SendError(msg)) => Some(msg),
            },
            None => Some(writer::Msg::Job(job)),
        };
        drop(guard);
        if let Some(writer::Msg::Job(job)) = rejected {
            job.answer(writer::JobEnd::Store(StoreError::Closed));
        }
    }

    /// A consistent snapshot read. Runs on the calling thread; keep it short in async code.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let db = self
            .inner
            .db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is being reopened".into()))?;
        let txn = db.begin_read()?;
        let result = codec::with_context(&self.inner.quarantine, false, || f(&txn));
        if !self.inner.quarantine.is_empty() {
            // Let the writer move what this read found, without waiting for other traffic.
            self.nudge();
        }
        result
    }

    /// Flushes and closes; called last at shutdown. Waits for queued writes to commit. The
    /// file is released when the last clone of this handle is dropped.
    pub async fn close(self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sender = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match sender {
            Some(s) => {
                if s.send(writer::Msg::Close(tx)).is_ok() {
                    let _ = rx.await;
                }
            }
            None => return Ok(()),
        }
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            // The writer has acknowledged the close, so this join is immediate.
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        Ok(())
    }
}

/// A write transaction as the store commits every one: fsynced (`Durability::Immediate`), with
/// quick-repair as configured.
pub(crate) fn durable_txn(
    db: &redb::Database,
    quick_repair: bool,
) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)?;
    txn.set_quick_repair(quick_repair);
    Ok(txn)
}

/// Copies the file to `copy` (tmp → fsync → rename → fsync folder) if `migrations` would
/// change it, and returns the database reopened. The copy is taken with the database closed,
/// so it is the file exactly as the last commit left it.
fn keep_copy_if_migrating(
    db: redb::Database,
    copy: &std::path::Path,
    migrations: &[schema::Migration],
    opts: &StoreOptions,
) -> Result<redb::Database, OpenError> {
    let path = &opts.path;
    let (pending, found) = db
        .begin_read()
        .map_err(StoreError::from)
        .and_then(|r| schema::pending(&r, migrations, &opts.schemas))
        .map_err(|e| OpenError::setup(path, e))?;
    // A fresh file (version 0) holds nothing an older build could want back.
    if !pending || found == 0 {
        return Ok(db);
    }
    db.close().map_err(|e| OpenError::from_redb(path, e))?;
    let io = |e: std::io::Error| OpenError::from_io(copy, e);
    let dir = copy.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut tmp = copy.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::copy(path, &tmp).map_err(io)?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, copy).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    tracing::info!(from = found, copy = %copy.display(), "store copied before its migration");
    backend::open_database(opts)
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
