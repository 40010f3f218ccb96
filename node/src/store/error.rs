//! The store's errors: [`OpenError`] for opening (and migrating) the file, [`StoreError`] for
//! everything done with an open store, as redb has `DatabaseError` apart from its transaction
//! errors. Each variant says what the caller should do.

use std::path::PathBuf;
use std::sync::Arc;

/// Why [`Store::open`](super::Store::open) failed. Nothing is open afterwards, and the file is
/// left as it was for inspection.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (normally the running node) holds the file. Talk to that process
    /// (the admin HTTP API) or stop it first.
    #[error("the store {} is in use by another process (is the node running?)", path.display())]
    InUse {
        /// The database file.
        path: PathBuf,
    },

    /// The file could not be opened or repaired: it is damaged or not a store. Keep it for
    /// support (it holds the queue), restore a backup or start empty (docs/OPERATIONS.md).
    #[error("cannot open the store {}: {source}", path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: Arc<redb::DatabaseError>,
    },

    /// The file system refused (permissions, a missing mount, an I/O error). Fix that and
    /// start again; nothing was changed.
    #[error("cannot open the store {}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The disk is full: opening (repairing, migrating) needs room. Free space; starting
    /// again then succeeds.
    #[error("the disk holding the store {} is full", path.display())]
    DiskFull {
        /// The database file.
        path: PathBuf,
    },

    /// The file was written by a newer build whose changes this build cannot read safely
    /// (typically after a rollback). Install the newer build again or restore a backup.
    #[error(
        "the store {} has {part} schema version {found} (readable by builds with version >= \
         {compat}); this build knows up to version {supported}",
        path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Whose schema: `store` (the store's own) or a part's name (`outbox`).
        part: &'static str,
        /// The version recorded in the file.
        found: u32,
        /// The oldest schema version of code that can still use the file.
        compat: u32,
        /// The newest version this build knows.
        supported: u32,
    },

    /// A migration step failed; its transaction was not committed, so the file is still at
    /// the previous version and the next start retries the step.
    #[error("migrating the store's {part} schema to version {to} failed: {source}")]
    Migration {
        /// Whose schema: `store` or a part's name.
        part: &'static str,
        /// The version the failing step migrates to.
        to: u32,
        /// What went wrong.
        #[source]
        source: StoreError,
    },

    /// The file opened, but reading or writing its metadata (schema version, store id)
    /// failed.
    #[error("cannot set up the store {}: {source}", path.display())]
    Setup {
        /// The database file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: StoreError,
    },

    /// The store of an earlier release (redb file format 2) could not be converted: it is
    /// damaged, or redb refused it. It was not changed; keep it for support, or move it aside
    /// to start empty (docs/OPERATIONS.md).
    #[error("cannot convert the store of the earlier release {}: {reason}", legacy.display())]
    Convert {
        /// The earlier release's file.
        legacy: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl OpenError {
    /// Whether starting again later, without changing anything, may succeed (a full disk,
    /// a lock that the other process gives up). A damaged file, a newer schema or a failing
    /// migration step need a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            OpenError::InUse { .. } | OpenError::DiskFull { .. } | OpenError::Io { .. } => true,
            OpenError::Migration { source, .. } | OpenError::Setup { source, .. } => {
                source.is_retryable()
            }
            OpenError::Damaged { .. }
            | OpenError::SchemaTooNew { .. }
            | OpenError::Convert { .. } => false,
        }
    }

    pub(crate) fn from_redb(path: &std::path::Path, e: redb::DatabaseError) -> OpenError {
        let path = path.to_owned();
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen
            | redb::DatabaseError::LockProtocolMismatch => OpenError::InUse { path },
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
                OpenError::from_io(&path, io)
            }
            other => OpenError::Damaged {
                path,
                source: Arc::new(other),
            },
        }
    }

    pub(crate) fn setup(path: &std::path::Path, source: impl Into<StoreError>) -> OpenError {
        match source.into() {
            StoreError::DiskFull => OpenError::DiskFull {
                path: path.to_owned(),
            },
            source => OpenError::Setup {
                path: path.to_owned(),
                source,
            },
        }
    }

    pub(crate) fn from_io(path: &std::path::Path, io: std::io::Error) -> OpenError {
        if is_disk_full(&io) {
            OpenError::DiskFull {
                path: path.to_owned(),
            }
        } else if is_not_a_store(&io) {
            OpenError::Damaged {
                path: path.to_owned(),
                source: Arc::new(redb::StorageError::Io(io).into()),
            }
        } else {
            OpenError::Io {
                path: path.to_owned(),
                source: Arc::new(io),
            }
        }
    }
}

/// Why an operation on an open store failed. Loops decide through
/// [`StoreError::is_retryable`], never by matching the message.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A stored value does not decode. It is moved to the `quarantine` table by the next
    /// write, counted and alerted; skip the record and carry on.
    #[error("record {key} in table {table} does not decode (moved to quarantine)")]
    Corrupt {
        /// The table it was found in.
        table: String,
        /// Its key, printed (keys are ids, never buyer data).
        key: String,
    },

    /// A value could not be encoded (a bug in a `Serialize` impl, never input data).
    #[error("cannot encode a value for table {table}: {source}")]
    Encode {
        /// The table it was meant for.
        table: String,
        /// What postcard said.
        #[source]
        source: postcard::Error,
    },

    /// The disk is full: nothing was written. The store refuses writes until it has
    /// reopened itself after space was freed ([`Store::health`](super::Store::health)); do
    /// not retry blindly.
    #[error("the disk holding the store is full")]
    DiskFull,

    /// The store cannot write since an I/O error (redb refuses further writes until the
    /// database is reopened, which the store does by itself). Nothing was written; wait for
    /// [`Store::health`](super::Store::health) to be ok.
    #[error("the store cannot write until it has reopened: {0}")]
    Unavailable(String),

    /// redb reported an I/O or consistency error.
    #[error("store error: {0}")]
    Database(#[source] Arc<redb::Error>),

    /// The caller's closure chose to abort; nothing it wrote was committed.
    #[error("{0}")]
    Aborted(String),

    /// The caller's closure panicked; nothing it wrote was committed, other writers in the
    /// same batch were unaffected. A bug.
    #[error("a store write panicked: {0}")]
    Panicked(String),

    /// The store was closed (shutdown in progress).
    #[error("the store is closed")]
    Closed,
}

/// What a caller should do about a failed store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Doing it again soon may succeed.
    Retry,
    /// The store cannot write now (a full disk, an I/O error). It reopens by itself once it
    /// can; wait for [`Store::health`](super::Store::health) to be ok instead of retrying.
    WaitForStore,
    /// Doing the same again fails the same way (a bug, a damaged record, a closed store).
    Permanent,
}

impl StoreError {
    /// What to do about it; loops decide through this.
    pub fn disposition(&self) -> Disposition {
        match self {
            StoreError::DiskFull | StoreError::Unavailable(_) => Disposition::WaitForStore,
            StoreError::Database(e) if is_storage_failure(e) => Disposition::WaitForStore,
            StoreError::Database(e) => match **e {
                redb::Error::ValueTooLarge(_)
                | redb::Error::TableTypeMismatch(_)
                | redb::Error::TypeDefinitionChanged(_) => Disposition::Permanent,
                _ => Disposition::Retry,
            },
            StoreError::Corrupt { .. }
            | StoreError::Encode { .. }
            | StoreError::Aborted(_)
            | StoreError::Panicked(_)
            | StoreError::Closed => Disposition::Permanent,
        }
    }

    /// Whether doing the same thing again soon may succeed. A full disk or a store that cannot
    /// write is not: it needs space or a reopen first (see [`Disposition::WaitForStore`]).
    pub fn is_retryable(&self) -> bool {
        self.disposition() == Disposition::Retry
    }

    /// Whether the storage itself failed (a full disk, an I/O error, damage found while
    /// writing): redb refuses further writes until the database is reopened.
    pub(crate) fn is_storage_failure(&self) -> bool {
        match self {
            StoreError::DiskFull | StoreError::Unavailable(_) => true,
            StoreError::Database(e) => is_storage_failure(e),
            _ => false,
        }
    }

    /// Whether the disk is full (so even critical writes cannot proceed).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull)
    }

    /// Converts any redb error, recognising a full disk.
    pub(crate) fn from_redb(e: redb::Error) -> StoreError {
        if let redb::Error::Io(io) = &e
            && is_disk_full(io)
        {
            return StoreError::DiskFull;
        }
        StoreError::Database(Arc::new(e))
    }
}

/// Errors after which redb refuses to write until the database is reopened.
fn is_storage_failure(e: &redb::Error) -> bool {
    matches!(
        e,
        redb::Error::Io(_)
            | redb::Error::PreviousIo
            | redb::Error::Corrupted(_)
            | redb::Error::DatabaseClosed
            | redb::Error::TransactionPoisoned
            | redb::Error::Backend(_)
    )
}

/// What redb answers for a file that is not a database (or a truncated one).
pub(crate) fn is_not_a_store(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    )
}

pub(crate) fn is_disk_full(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::StorageFull || io.raw_os_error() == Some(28 /* ENOSPC */)
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from_redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_recognised_and_waited_out_not_retried() {
        let io = std::io::Error::from_raw_os_error(28);
        let e = StoreError::from(redb::StorageError::Io(io));
        assert!(e.is_disk_full());
        assert!(!e.is_retryable());
        assert_eq!(e.disposition(), Disposition::WaitForStore);
    }

    #[test]
    fn io_errors_wait_for_the_store_and_bugs_are_permanent() {
        let e = StoreError::from(redb::StorageError::PreviousIo);
        assert_eq!(e.disposition(), Disposition::WaitForStore);
        assert!(!e.is_retryable());
        let io = std::io::Error::other("EIO");
        let e = StoreError::from(redb::StorageError::Io(io));
        assert_eq!(e.disposition(), Disposition::WaitForStore);
        assert_eq!(StoreError::Closed.disposition(), Disposition::Permanent);
        assert_eq!(
            StoreError::Aborted("no".into()).disposition(),
            Disposition::Permanent
        );
    }

    #[test]
    fn opening_tells_a_lock_a_full_disk_and_damage_apart() {
        let p = std::path::Path::new("/data/x.redb");
        let e = OpenError::from_redb(p, redb::DatabaseError::DatabaseAlreadyOpen);
        assert!(matches!(e, OpenError::InUse { .. }) && e.is_retryable());
        let io = std::io::Error::from_raw_os_error(28);
        let e = OpenError::from_redb(p, redb::StorageError::Io(io).into());
        assert!(matches!(e, OpenError::DiskFull { .. }) && e.is_retryable());
        let e = OpenError::from_redb(p, redb::StorageError::Corrupted("x".into()).into());
        assert!(matches!(e, OpenError::Damaged { .. }) && !e.is_retryable());
    }
}
