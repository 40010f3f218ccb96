//! The `quarantine` table: records that could not be decoded, moved aside with where they
//! came from, so start-up never crash-loops on them and an operator can look at them.
//!
//! Layout: `quarantine: u64 (increasing id) -> postcard(QuarantinedRecord)`. The raw value is
//! kept (it may hold buyer data, so it is never logged or shown, only counted).

use super::StoreError;
use super::codec::{self, Bytes};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// Undecodable records, moved aside.
pub const QUARANTINE: TableDefinition<u64, Bytes> = TableDefinition::new("quarantine");

/// One quarantined record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantinedRecord {
    /// The table it was found in.
    pub table: String,
    /// Its key, printed.
    pub key: String,
    /// Why it did not decode.
    pub reason: String,
    /// When it was moved (Unix milliseconds).
    pub at_ms: u64,
    /// The raw value, kept for forensics; never logged.
    pub raw: Vec<u8>,
}

/// Moves a record's raw bytes into the quarantine table; returns its quarantine id.
pub fn insert(
    txn: &WriteTransaction,
    table: &str,
    key: &str,
    reason: &str,
    raw: Vec<u8>,
) -> Result<u64, StoreError> {
    let id = {
        let t = txn.open_table(QUARANTINE)?;
        let last = t.last()?.map(|(k, _)| k.value());
        last.map_or(1, |k| k + 1)
    };
    let record = QuarantinedRecord {
        table: table.to_owned(),
        key: key.to_owned(),
        reason: reason.to_owned(),
        at_ms: super::now_ms(),
        raw,
    };
    codec::put(txn, QUARANTINE, id, &record)?;
    Ok(id)
}

/// How many records are quarantined.
pub fn count(txn: &redb::ReadTransaction) -> Result<u64, StoreError> {
    match txn.open_table(QUARANTINE) {
        Ok(t) => Ok(t.len()?),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The quarantined records with ids after `after`, at most `limit`, without their raw bytes.
pub fn list(
    txn: &redb::ReadTransaction,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, QuarantinedRecord)>, StoreError> {
    let t = match txn.open_table(QUARANTINE) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in t.range(after.saturating_add(1)..)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = row?;
        // A quarantine record that does not decode is shown as such, not re-quarantined.
        let mut rec = postcard::from_bytes::<QuarantinedRecord>(v.value()).unwrap_or_else(|e| {
            QuarantinedRecord {
                table: "?".into(),
                key: "?".into(),
                reason: format!("quarantine record unreadable: {e}"),
                at_ms: 0,
                raw: Vec::new(),
            }
        });
        rec.raw.clear();
        out.push((k.value(), rec));
    }
    Ok(out)
}
