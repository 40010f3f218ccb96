//! The store's one error type, and how callers should react to each variant.

use std::path::PathBuf;
use std::sync::Arc;

/// Why a store operation failed. Each variant says what the caller should do; loops decide
/// through [`StoreError::is_retryable`], never by matching the message.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (normally the running node) holds the file. Talk to that process
    /// (the admin HTTP API) or stop it first.
    #[error("the store {} is in use by another process (is the node running?)", path.display())]
    InUse {
        /// The database file.
        path: PathBuf,
    },

    /// The file could not be opened or repaired. The file is left untouched for inspection.
    #[error("cannot open the store {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: Arc<redb::DatabaseError>,
    },

    /// The file was written by a newer build whose changes this build cannot read safely
    /// (typically after a rollback). Install the newer build again or restore a backup.
    #[error(
        "the store {} has schema version {found} (readable by builds with version >= {compat}); \
         this build knows up to version {supported}",
        path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The version recorded in the file.
        found: u32,
        /// The oldest schema version of code that can still use the file.
        compat: u32,
        /// The newest version this build knows.
        supported: u32,
    },

    /// A migration step failed; its transaction was not committed, so the file is still at
    /// the previous version and the next start retries the step.
    #[error("migrating the store to schema version {to} failed: {reason}")]
    Migration {
        /// The version the failing step migrates to.
        to: u32,
        /// What went wrong.
        reason: String,
    },

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

    /// The disk is full: nothing was written. Free space; the write can be retried.
    #[error("the disk holding the store is full")]
    DiskFull,

    /// redb reported an I/O or consistency error. After a `PreviousIo` error the node must
    /// be restarted (redb refuses further writes).
    #[error("store error: {0}")]
    Database(#[source] Arc<redb::Error>),

    /// The outbox byte cap is reached and the policy refuses the write. Retry later.
    #[error("the outbox byte cap is reached ({used} of {cap} bytes in use)")]
    CapReached {
        /// Bytes accounted to queued ops.
        used: u64,
        /// The configured cap.
        cap: u64,
    },

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

impl StoreError {
    /// Whether doing the same thing again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::InUse { .. } | StoreError::DiskFull | StoreError::CapReached { .. } => true,
            StoreError::Database(e) => !matches!(
                **e,
                redb::Error::PreviousIo
                    | redb::Error::Corrupted(_)
                    | redb::Error::ValueTooLarge(_)
                    | redb::Error::TableTypeMismatch { .. }
                    | redb::Error::TypeDefinitionChanged { .. }
            ),
            StoreError::Open { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::Migration { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Encode { .. }
            | StoreError::Aborted(_)
            | StoreError::Panicked(_)
            | StoreError::Closed => false,
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

    pub(crate) fn open(path: &std::path::Path, e: redb::DatabaseError) -> StoreError {
        match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
                path: path.to_owned(),
            },
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) if is_disk_full(&io) => {
                StoreError::DiskFull
            }
            other => StoreError::Open {
                path: path.to_owned(),
                source: Arc::new(other),
            },
        }
    }
}

fn is_disk_full(io: &std::io::Error) -> bool {
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
    redb::CommitError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_recognised_and_retryable() {
        let io = std::io::Error::from_raw_os_error(28);
        let e = StoreError::from(redb::StorageError::Io(io));
        assert!(e.is_disk_full());
        assert!(e.is_retryable());
    }

    #[test]
    fn a_previous_io_error_is_not_retryable() {
        let e = StoreError::from(redb::StorageError::PreviousIo);
        assert!(!e.is_retryable());
        assert!(!StoreError::Closed.is_retryable());
        assert!(StoreError::CapReached { used: 10, cap: 5 }.is_retryable());
    }
}
