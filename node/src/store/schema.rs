//! The schema versions in `meta`, and the migration paths that bring an older file up to date:
//! the store's own ([`MIGRATIONS`]: `meta` and quarantine), and one per part of the node that
//! keeps tables here ([`Schema`], registered in [`StoreOptions::schemas`](super::StoreOptions)
//! by whoever opens the store, e.g. the outbox's). The store runs the steps it is given and
//! knows nothing of the parts' tables or types.
//!
//! `meta` holds (postcard values):
//!
//! | key                     | value                                                       |
//! |-------------------------|-------------------------------------------------------------|
//! | `schema_version`        | `u32`: the store's last migration step applied              |
//! | `schema_compat`         | `u32`: the oldest store schema whose code may use the file  |
//! | `schema_version.<part>` | `u32`: a part's last step applied (from store schema 3)     |
//! | `schema_compat.<part>`  | `u32`: the oldest schema of that part whose code may use it |
//! | `store_id`              | `String`: random, made at creation; prefixes idempotency keys |
//! | `created_at_ms`         | `u64`                                                       |
//!
//! A migration step runs in its own durable transaction together with the version bump, so a
//! power cut mid-migration leaves the file at the previous version and the next start
//! re-runs the step. A step that changes the layout in a way older code cannot read raises
//! the compat version; an older build (after an OTA rollback) refuses such a file with a clear
//! error instead of misreading it, but keeps opening files whose changes were additive. A
//! part that an opener does not register is neither migrated nor checked.
//!
//! Before store schema 3 there was one path: its steps 1 and 2 also created the outbox's
//! tables and rebuilt its indexes. A part says how many of its first steps ran that way
//! ([`Schema::adopted`]), so a file from then starts the part's path where it stands.

use super::codec::{self, Bytes};
use super::{OpenError, StoreError, quarantine};
use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};

/// The store's own key/value table (other modules may add keys under their own prefix).
pub const META: TableDefinition<&str, Bytes> = TableDefinition::new("meta");

const VERSION_KEY: &str = "schema_version";
const COMPAT_KEY: &str = "schema_compat";
const STORE_ID_KEY: &str = "store_id";
const CREATED_KEY: &str = "created_at_ms";

/// One step of a migration path.
#[derive(Debug, Clone, Copy)]
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

/// The tables of one part of the node (the outbox, say) and the steps that bring them up to
/// date, numbered from 1 on the part's own version (`schema_version.<name>` in `meta`).
///
/// A part's steps must be safe to run on its tables in any state a release left them in,
/// including the state its adopted steps produced: a file from before [`PARTS_SINCE`] whose
/// open stopped between the store's step to it and the part's version being recorded (a
/// kill, or an opener that does not list the part) has no record of the part, and runs all
/// of its steps.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The part's name, in the meta keys and in errors (`[a-z_]+`).
    pub name: &'static str,
    /// Its migration path, in order, from 1.
    pub steps: &'static [Migration],
    /// How many of its first steps a file written before store schema [`PARTS_SINCE`] has
    /// already had, as the store's own steps of the same numbers (0 for a part newer than
    /// that).
    pub adopted: u32,
}

/// The store schema from which parts keep their own versions.
pub const PARTS_SINCE: u32 = 3;

/// The store's own migration path. A fresh file is version 0.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        what: "initial layout: meta and quarantine (then also the outbox's tables)",
        breaks_older_readers: true,
        run: init_v1,
    },
    Migration {
        to: 2,
        what: "redb 5 (then also the outbox's indexes rebuilt in redb 3's tuple encoding)",
        // The file is redb 5's: no earlier release opens it (see `legacy.rs`).
        breaks_older_readers: true,
        run: nothing,
    },
    Migration {
        to: PARTS_SINCE,
        what: "each part's tables keep their own schema version",
        // The previous build runs its own path (its steps 1 and 2 are done) and reads the
        // parts' tables as they are.
        breaks_older_readers: false,
        run: nothing,
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
    Ok(())
}

/// A step that only moves the version (its work was done by a part's own step, or by the
/// file conversion).
fn nothing(_: &WriteTransaction) -> Result<(), StoreError> {
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

/// Reads the store's own versions (0/0 for a fresh file).
pub fn read_versions(txn: &impl codec::ReadTxn) -> Result<Versions, StoreError> {
    let version: u32 = codec::get(txn, META, VERSION_KEY)?.unwrap_or(0);
    let compat: u32 = codec::get(txn, META, COMPAT_KEY)?.unwrap_or(version);
    Ok(Versions { version, compat })
}

/// The meta keys of a part's versions.
fn part_keys(part: &Schema) -> (String, String) {
    (
        format!("{VERSION_KEY}.{}", part.name),
        format!("{COMPAT_KEY}.{}", part.name),
    )
}

/// Reads a part's versions. `store` is the store's own version as found before this open
/// migrated it: a file from before [`PARTS_SINCE`] without the part's keys has had the
/// part's adopted steps.
pub fn read_part_versions(
    txn: &impl codec::ReadTxn,
    part: &Schema,
    store: u32,
) -> Result<Versions, StoreError> {
    let (vkey, ckey) = part_keys(part);
    let version: u32 = match codec::get(txn, META, vkey.as_str())? {
        Some(v) => v,
        None if store < PARTS_SINCE => store.min(part.adopted),
        None => 0,
    };
    let compat: u32 = codec::get(txn, META, ckey.as_str())?.unwrap_or(version);
    Ok(Versions { version, compat })
}

/// Whether opening with `migrations` and `parts` would change the file, and the store's own
/// version found (0: a fresh file).
pub fn pending(
    txn: &impl codec::ReadTxn,
    migrations: &[Migration],
    parts: &[Schema],
) -> Result<(bool, u32), StoreError> {
    let found = read_versions(txn)?.version;
    let mut pending = latest(migrations) > found;
    for part in parts {
        pending |= latest(part.steps) > read_part_versions(txn, part, found)?.version;
    }
    Ok((pending, found))
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

/// Brings the file up to the last step of `migrations` (the store's own), then each of
/// `parts` up to its last step, one durable transaction per step.
pub fn migrate(
    db: &Database,
    path: &std::path::Path,
    migrations: &[Migration],
    parts: &[Schema],
    quick_repair: bool,
) -> Result<Migrated, OpenError> {
    let setup = |e| OpenError::setup(path, e);
    let found = db
        .begin_read()
        .map_err(StoreError::from)
        .and_then(|r| read_versions(&r))
        .map_err(setup)?;
    let to = run_path(
        db,
        path,
        ("store", VERSION_KEY, COMPAT_KEY),
        found,
        migrations,
        quick_repair,
    )?;
    for part in parts {
        let part_found = db
            .begin_read()
            .map_err(StoreError::from)
            .and_then(|r| read_part_versions(&r, part, found.version))
            .map_err(setup)?;
        let (vkey, ckey) = part_keys(part);
        let reached = run_path(
            db,
            path,
            (part.name, &vkey, &ckey),
            part_found,
            part.steps,
            quick_repair,
        )?;
        if reached == part_found.version && reached > 0 {
            // Adopted from a file before parts had versions: record where the part stands,
            // so a later open does not depend on the store's version any more.
            record_adopted(db, (&vkey, &ckey), part_found, quick_repair).map_err(setup)?;
        }
    }
    let store_id = ensure_store_id(db, quick_repair).map_err(setup)?;
    Ok(Migrated {
        from: found.version,
        to,
        store_id,
    })
}

/// Runs the steps of one path (`part`, and its version and compat keys) above `found`;
/// returns the version reached.
fn run_path(
    db: &Database,
    path: &std::path::Path,
    (part, version_key, compat_key): (&'static str, &str, &str),
    found: Versions,
    steps: &[Migration],
    quick_repair: bool,
) -> Result<u32, OpenError> {
    let supported = latest(steps);
    if found.version > supported {
        if found.compat > supported {
            return Err(OpenError::SchemaTooNew {
                path: path.to_owned(),
                part,
                found: found.version,
                compat: found.compat,
                supported,
            });
        }
        tracing::warn!(
            part,
            found = found.version,
            supported,
            "the store was written by a newer build; its changes are readable by this one"
        );
    }
    let mut version = found.version;
    let mut compat = found.compat;
    let failed = |to, source| OpenError::Migration { part, to, source };
    for m in steps.iter().filter(|m| m.to > found.version) {
        let txn = super::durable_txn(db, quick_repair).map_err(|e| failed(m.to, e))?;
        let new_compat = if m.breaks_older_readers { m.to } else { compat };
        let step = (m.run)(&txn)
            .and_then(|()| codec::put(&txn, META, version_key, &m.to))
            .and_then(|()| codec::put(&txn, META, compat_key, &new_compat));
        if let Err(source) = step {
            let _ = txn.abort();
            return Err(failed(m.to, source));
        }
        txn.commit().map_err(|e| failed(m.to, e.into()))?;
        tracing::info!(part, to = m.to, what = m.what, "store migrated");
        version = m.to;
        compat = new_compat;
    }
    Ok(version)
}

/// Writes a part's versions if the file does not hold them yet.
fn record_adopted(
    db: &Database,
    (version_key, compat_key): (&str, &str),
    found: Versions,
    quick_repair: bool,
) -> Result<(), StoreError> {
    {
        let r = db.begin_read()?;
        if codec::get::<&str, u32>(&r, META, version_key)?.is_some() {
            return Ok(());
        }
    }
    let txn = super::durable_txn(db, quick_repair)?;
    codec::put(&txn, META, version_key, &found.version)?;
    codec::put(&txn, META, compat_key, &found.compat)?;
    txn.commit()?;
    Ok(())
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
