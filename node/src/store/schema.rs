//! The schema version in `meta`, and the migration path that brings an older file up to date.
//!
//! `meta` holds (postcard values):
//!
//! | key              | value                                                              |
//! |------------------|--------------------------------------------------------------------|
//! | `schema_version` | `u32`: the last migration step applied                             |
//! | `schema_compat`  | `u32`: the oldest schema version whose code may still use the file |
//! | `store_id`       | `String`: random, made at creation; prefixes idempotency keys      |
//! | `created_at_ms`  | `u64`                                                              |
//!
//! A migration step runs in its own durable transaction together with the version bump, so a
//! power cut mid-migration leaves the file at the previous version and the next start
//! re-runs the step. A step that changes the layout in a way older code cannot read raises
//! `schema_compat`; an older build (after an OTA rollback) refuses such a file with a clear
//! error instead of misreading it, but keeps opening files whose changes were additive.

use super::codec::{self, Bytes};
use super::{OpenError, StoreError, quarantine};
use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};

/// The store's own key/value table (other modules may add keys under their own prefix).
pub const META: TableDefinition<&str, Bytes> = TableDefinition::new("meta");

const VERSION_KEY: &str = "schema_version";
const COMPAT_KEY: &str = "schema_compat";
const STORE_ID_KEY: &str = "store_id";
const CREATED_KEY: &str = "created_at_ms";

/// One step of the migration path.
#[derive(Clone, Copy)]
pub struct Migration {
    /// The version the file has after this step (steps are listed in order, from 1).
    pub to: u32,
    /// What the step does, for the log.
    pub what: &'static str,
    /// Whether code of the previous version can no longer read the file after this step.
    pub breaks_older_readers: bool,
    /// The step itself; it must be idempotent within its transaction.
    pub run: fn(&WriteTransaction) -> Result<(), StoreError>,
}

/// The migration path of this build. A fresh file is version 0.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        what: "initial layout: meta, quarantine and the outbox tables",
        breaks_older_readers: true,
        run: init_v1,
    },
    Migration {
        to: 2,
        what: "redb 5: the outbox's tuple-keyed indexes rebuilt in redb 3's tuple encoding",
        // The file is redb 5's: no earlier release opens it (see `legacy.rs`).
        breaks_older_readers: true,
        run: crate::outbox::record::rebuild_indexes,
    },
];

/// The schema version this build writes.
pub fn current_version() -> u32 {
    latest(MIGRATIONS)
}

fn latest(migrations: &[Migration]) -> u32 {
    migrations.last().map_or(0, |m| m.to)
}

fn init_v1(txn: &WriteTransaction) -> Result<(), StoreError> {
    // Opening a table in a write transaction creates it, so read-only transactions can open
    // every table from then on.
    txn.open_table(META)?;
    txn.open_table(quarantine::QUARANTINE)?;
    crate::outbox::create_tables(txn)?;
    Ok(())
}

/// The versions found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    /// `schema_version` (0 for a fresh file).
    pub version: u32,
    /// `schema_compat`.
    pub compat: u32,
}

/// Reads the versions (0/0 for a fresh file).
pub fn read_versions(txn: &impl codec::ReadTxn) -> Result<Versions, StoreError> {
    let version: u32 = codec::get(txn, META, VERSION_KEY)?.unwrap_or(0);
    let compat: u32 = codec::get(txn, META, COMPAT_KEY)?.unwrap_or(version);
    Ok(Versions { version, compat })
}

/// What [`migrate`] did.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The version found.
    pub from: u32,
    /// The version now.
    pub to: u32,
    /// The store's id.
    pub store_id: String,
}

/// Brings the file up to the last step of `migrations`, one durable transaction per step.
pub fn migrate(
    db: &Database,
    path: &std::path::Path,
    migrations: &[Migration],
    quick_repair: bool,
) -> Result<Migrated, OpenError> {
    let setup = |e| OpenError::setup(path, e);
    let found = db
        .begin_read()
        .map_err(StoreError::from)
        .and_then(|r| read_versions(&r))
        .map_err(setup)?;
    let supported = latest(migrations);
    if found.version > supported {
        if found.compat > supported {
            return Err(OpenError::SchemaTooNew {
                path: path.to_owned(),
                found: found.version,
                compat: found.compat,
                supported,
            });
        }
        tracing::warn!(
            found = found.version,
            supported,
            "the store was written by a newer build; its changes are readable by this one"
        );
    }
    let mut version = found.version;
    let mut compat = found.compat;
    for m in migrations.iter().filter(|m| m.to > found.version) {
        let txn = super::durable_txn(db, quick_repair)
            .map_err(|source| OpenError::Migration { to: m.to, source })?;
        let new_compat = if m.breaks_older_readers { m.to } else { compat };
        let step = (m.run)(&txn)
            .and_then(|()| codec::put(&txn, META, VERSION_KEY, &m.to))
            .and_then(|()| codec::put(&txn, META, COMPAT_KEY, &new_compat));
        if let Err(source) = step {
            let _ = txn.abort();
            return Err(OpenError::Migration { to: m.to, source });
        }
        txn.commit().map_err(|e| OpenError::Migration {
            to: m.to,
            source: e.into(),
        })?;
        tracing::info!(to = m.to, what = m.what, "store migrated");
        version = m.to;
        compat = new_compat;
    }
    let _ = compat;
    let store_id = ensure_store_id(db, quick_repair).map_err(setup)?;
    Ok(Migrated {
        from: found.version,
        to: version,
        store_id,
    })
}

fn ensure_store_id(db: &Database, quick_repair: bool) -> Result<String, StoreError> {
    {
        let r = db.begin_read()?;
        if let Some(id) = codec::get::<&str, String>(&r, META, STORE_ID_KEY)? {
            return Ok(id);
        }
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    let txn = super::durable_txn(db, quick_repair)?;
    codec::put(&txn, META, STORE_ID_KEY, &id)?;
    codec::put(&txn, META, CREATED_KEY, &super::now_ms())?;
    txn.commit()?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_path_is_numbered_from_one_without_gaps() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.to as usize, i + 1, "step {i} ({})", m.what);
        }
        assert_eq!(current_version(), MIGRATIONS.len() as u32);
    }
}
