//! The store of the releases before redb 5, and its one-way conversion.
//!
//! Releases up to a1b9e4d kept the store in `<data_dir>/wms-node.redb`, written by redb 2.6 in
//! its file format 2. redb 3 and later cannot read that format (`UpgradeRequired(2)`), and the
//! one converter is redb 2.6's own `Database::upgrade()`, so redb 2.6 is linked beside redb 5
//! (as `redb2`) for this step only. The converted store is a **new file**,
//! `<data_dir>/wms-node.v3.redb`; the earlier release's file is never written:
//!
//! ```text
//!  wms-node.redb (v2, earlier release) ──copy──▶ wms-node.v3.redb.converting
//!     │ flock held: no earlier release         │ fsync; redb 2.6: open (repairs after a
//!     │ writes it meanwhile                    │   crash), upgrade() to format 3, same tables
//!     │                                        │   with the same row counts
//!     ▼                                        │ redb 5: opens it, records where it came from
//!  left as it was, for going back              ▼ fsync, rename ─▶ wms-node.v3.redb, fsync dir
//! ```
//!
//! Why a new file and not the same name: an earlier release brought back (an OTA rollback, a
//! package downgrade) opens `wms-node.redb` with redb 2.6, and redb 2.6 **panics** on a file
//! written by redb 5 (`unreachable` in its transaction code; tried), so it would crash-loop.
//! With a new name it finds its own file exactly as it left it and runs. A crash at any point
//! of the conversion leaves either no `wms-node.v3.redb` (the next start converts again from
//! the untouched original; a stale `.converting` file is removed) or a complete one.
//!
//! After going back, the earlier release runs on its file (what the new release recorded in
//! the meantime is not in it). When the new release starts again, it sees that
//! `wms-node.redb` changed since it was converted (its size, modification time or inode differ
//! from what the conversion recorded), sets its own now-stale file aside as
//! `wms-node.v3.redb.superseded-<ms>`, converts again and raises the `store_superseded`
//! alert: the earlier release's file holds what happened last. docs/OPERATIONS.md says how to
//! go back and what each file is.
//!
//! Data: the tables are carried over as they are. redb 3 changed the encoding of
//! variable-width tuples, and redb 5 that of `Option<&str>`; the node stores no `Option`
//! values, and its two tuple-typed tables are the outbox's indexes, which schema step 2
//! rebuilds from the ops (see `schema.rs`).

use super::error::{OpenError, is_not_a_store};
use super::{StoreOptions, codec, schema};
use crate::alert::{AlertCode, Alerts, Severity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the converted file came from (`meta["legacy_source"]`), to notice that the earlier
/// release has run on its file since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    len: u64,
    modified_ns: u128,
    inode: u64,
}

const SOURCE_KEY: &str = "legacy_source";

impl Fingerprint {
    fn of(file: &std::fs::File) -> std::io::Result<Fingerprint> {
        let m = file.metadata()?;
        let modified_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Ok(Fingerprint {
            len: m.len(),
            modified_ns,
            inode,
        })
    }
}

/// Opens the store at `opts.path`, converting `legacy` first when `opts.path` does not exist
/// yet or was converted from an earlier state of `legacy`.
pub(crate) fn open(
    opts: &StoreOptions,
    legacy: &Path,
    alerts: &Alerts,
) -> Result<redb::Database, OpenError> {
    let path = &opts.path;
    if !legacy.exists() {
        return super::backend::open_database(opts);
    }
    if !path.exists() {
        convert(opts, legacy, None)?;
        return super::backend::open_database(opts);
    }
    let db = super::backend::open_database(opts)?;
    let recorded: Option<Fingerprint> = {
        use redb::ReadableDatabase;
        let read = db.begin_read().map_err(|e| OpenError::setup(path, e))?;
        match read.open_table(schema::META) {
            Ok(_) => codec::get(&read, schema::META, SOURCE_KEY)
                .map_err(|e| OpenError::setup(path, e))?,
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(OpenError::setup(path, e)),
        }
    };
    let Some(recorded) = recorded else {
        // Made by this release from scratch; the older file is not its source.
        return Ok(db);
    };
    let now = std::fs::File::open(legacy)
        .and_then(|f| Fingerprint::of(&f))
        .map_err(|e| OpenError::from_io(legacy, e))?;
    if now == recorded {
        return Ok(db);
    }
    // The earlier release has run on its file since the conversion (a rollback): its file
    // holds what happened last.
    drop(db);
    let aside = path.with_file_name(format!(
        "{}.superseded-{}",
        file_name(path),
        super::now_ms()
    ));
    std::fs::rename(path, &aside).map_err(|e| OpenError::from_io(path, e))?;
    sync_dir(path)?;
    tracing::warn!(
        legacy = %legacy.display(),
        set_aside = %aside.display(),
        "the earlier release has run on its store since it was converted; converting it again"
    );
    convert(opts, legacy, Some(&aside))?;
    alerts.raise(
        AlertCode::StoreSuperseded,
        Severity::Warning,
        format!(
            "an earlier release ran on {} after this one had converted it, so it was converted \
             again; this release's previous file is kept as {} (anything recorded only there, \
             e.g. ops queued before going back, is not in the queue)",
            legacy.display(),
            aside.display()
        ),
    );
    super::backend::open_database(opts)
}

/// Converts `legacy` into `opts.path` (which must not exist), crash-safely; see the module doc.
fn convert(
    opts: &StoreOptions,
    legacy: &Path,
    superseding: Option<&Path>,
) -> Result<(), OpenError> {
    let path = &opts.path;
    let tmp = path.with_file_name(format!("{}.converting", file_name(path)));
    let started = std::time::Instant::now();
    tracing::info!(
        from = %legacy.display(),
        to = %path.display(),
        "converting the store of an earlier release (redb 2.6, file format 2) for redb 5"
    );
    // The earlier release's own lock (redb 2.6 takes an exclusive flock): while it is held,
    // no earlier release writes the file, and ours fails at once if one is running.
    let source = std::fs::File::open(legacy).map_err(|e| OpenError::from_io(legacy, e))?;
    match source.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(OpenError::InUse {
                path: legacy.to_owned(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(OpenError::from_io(legacy, e)),
    }
    let fingerprint = Fingerprint::of(&source).map_err(|e| OpenError::from_io(legacy, e))?;
    let result = convert_locked(opts, legacy, &tmp, &fingerprint);
    if result.is_err() {
        // Frees the room a half-made copy takes (it is made again from the original).
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    drop(source);
    tracing::info!(
        to = %path.display(),
        took_ms = started.elapsed().as_millis() as u64,
        superseding = superseding.map(|p| p.display().to_string()),
        "store converted; the earlier release's file is left as it was"
    );
    Ok(())
}

fn convert_locked(
    opts: &StoreOptions,
    legacy: &Path,
    tmp: &Path,
    fingerprint: &Fingerprint,
) -> Result<(), OpenError> {
    let path = &opts.path;
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e: std::io::Error| OpenError::from_io(&p, e)
    };
    let failed = |reason: String| OpenError::Convert {
        legacy: legacy.to_owned(),
        reason,
    };
    // Only a file in format 2 is an earlier release's store. redb 2.6 panics on a redb 5
    // file (which is what would be here if this release's file were renamed), so ask redb 5
    // first; it opens read-only without changing anything.
    match redb::Builder::new().open_read_only(legacy) {
        Err(redb::DatabaseError::UpgradeRequired(_)) => {}
        Ok(_) | Err(redb::DatabaseError::RepairAborted) => {
            return Err(failed(format!(
                "it is already in redb 5's format, so it is not an earlier release's store; if \
                 it is this release's, it belongs at {}",
                path.display()
            )));
        }
        Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))) if !is_not_a_store(&e) => {
            return Err(OpenError::from_io(legacy, e));
        }
        Err(e) => {
            return Err(failed(format!(
                "it is damaged or not a store (redb 5: {e})"
            )));
        }
    }
    match std::fs::remove_file(tmp) {
        Ok(()) => tracing::info!(file = %tmp.display(), "removed a conversion left half-way"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(tmp)(e)),
    }
    std::fs::copy(legacy, tmp).map_err(io(tmp))?;
    std::fs::File::options()
        .write(true)
        .open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(tmp))?;

    // redb 2.6 on the copy: repair after an unclean shutdown, then the format upgrade. A
    // panic in it (a file it misreads) is a failed conversion, not a crashed node.
    let upgraded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        upgrade_v2(opts, legacy, tmp)
    }))
    .unwrap_or_else(|_| Err(failed("redb 2.6 panicked on it".into())));
    let rows_before = upgraded?;

    // redb 5 on the upgraded copy: the same tables with the same row counts, and where it came
    // from.
    {
        let db = redb::Builder::new()
            .set_cache_size(usize::try_from(opts.cache_size).unwrap_or(usize::MAX))
            .create(tmp)
            .map_err(|e| match e {
                redb::DatabaseError::Storage(redb::StorageError::Io(e)) => io(tmp)(e),
                e => failed(format!("redb 5 cannot open the upgraded copy: {e}")),
            })?;
        let rows_after =
            rows_redb5(&db).map_err(|e| failed(format!("reading the upgraded copy: {e}")))?;
        if rows_after != rows_before {
            return Err(failed(format!(
                "the upgraded copy differs: tables and rows {rows_after:?}, expected {rows_before:?}"
            )));
        }
        let txn = super::durable_txn(&db, true).map_err(|e| OpenError::setup(tmp, e))?;
        codec::put(&txn, schema::META, SOURCE_KEY, fingerprint)
            .map_err(|e| OpenError::setup(tmp, e))?;
        txn.commit().map_err(|e| OpenError::setup(tmp, e))?;
        db.close().map_err(|e| OpenError::from_redb(tmp, e))?;
    }
    std::fs::File::options()
        .write(true)
        .open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(tmp))?;
    std::fs::rename(tmp, path).map_err(io(path))?;
    sync_dir(path)?;
    Ok(())
}

/// Opens the copy with redb 2.6 (repairing it after an unclean shutdown), counts its rows and
/// upgrades it to file format 3. Returns table name → rows.
fn upgrade_v2(
    opts: &StoreOptions,
    legacy: &Path,
    tmp: &Path,
) -> Result<BTreeMap<String, u64>, OpenError> {
    let failed = |reason: String| OpenError::Convert {
        legacy: legacy.to_owned(),
        reason,
    };
    let io = |e: std::io::Error| OpenError::from_io(tmp, e);
    let mut db = redb2::Builder::new()
        .set_cache_size(usize::try_from(opts.cache_size).unwrap_or(usize::MAX))
        .create(tmp)
        .map_err(|e| match e {
            redb2::DatabaseError::Storage(redb2::StorageError::Io(e)) if !is_not_a_store(&e) => {
                io(e)
            }
            redb2::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse {
                path: legacy.to_owned(),
            },
            e => failed(format!("it is damaged or not a store (redb 2.6: {e})")),
        })?;
    let rows = rows_redb2(&db).map_err(|e| failed(format!("reading the copy: {e}")))?;
    db.upgrade().map_err(|e| match e {
        redb2::UpgradeError::Storage(redb2::StorageError::Io(e)) => io(e),
        e => failed(format!("redb 2.6's upgrade() failed: {e}")),
    })?;
    Ok(rows)
}

/// Table name → rows, through redb 2.6.
fn rows_redb2(db: &redb2::Database) -> Result<BTreeMap<String, u64>, String> {
    use redb2::{ReadableTableMetadata, TableHandle};
    let r = db.begin_read().map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for h in r.list_tables().map_err(|e| e.to_string())? {
        let name = h.name().to_owned();
        let rows = r
            .open_untyped_table(h)
            .and_then(|t| Ok(t.len()?))
            .map_err(|e| format!("table {name}: {e}"))?;
        out.insert(name, rows);
    }
    Ok(out)
}

/// Table name → rows, through redb 5.
fn rows_redb5(db: &redb::Database) -> Result<BTreeMap<String, u64>, String> {
    use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};
    let r = db.begin_read().map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for h in r.list_tables().map_err(|e| e.to_string())? {
        let name = h.name().to_owned();
        let rows = r
            .open_untyped_table(h)
            .map_err(redb::Error::from)
            .and_then(|t| Ok(t.len()?))
            .map_err(|e| format!("table {name}: {e}"))?;
        out.insert(name, rows);
    }
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned())
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> Result<(), OpenError> {
    let dir: PathBuf = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| OpenError::from_io(&dir, e))
}
