//! Intake cursors (DOMAIN.md §1 rule 1): where the incremental pull stands, kept as UTC
//! instants in `wms_cursors`, and moved only in the transaction that stores what was read.

use super::tables;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};

/// The cursor of the incremental trade pull.
pub const TRADES: &str = "trades";

/// One cursor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Everything modified up to here (epoch ms, UTC) is stored.
    pub watermark_ms: i64,
    /// When the open orders were last re-scanned (epoch ms; 0 = never).
    pub rescanned_ms: i64,
    /// When the watermark last moved (epoch ms).
    pub moved_ms: i64,
}

/// Reads a cursor.
pub fn load(
    txn: &impl crate::store::ReadTxn,
    shop: &str,
    name: &str,
) -> Result<Option<Cursor>, StoreError> {
    tables::get_named(txn, tables::CURSORS, shop, name)
}

/// Writes a cursor.
pub fn save(
    txn: &redb::WriteTransaction,
    shop: &str,
    name: &str,
    c: &Cursor,
) -> Result<(), StoreError> {
    tables::put_named(txn, tables::CURSORS, shop, name, c)
}
