//! The warehouse's redb tables, in one place (so a change of redb's table API touches this
//! file only). Values are postcard records; every key starts with the shop.
//!
//! | table          | key                     | value                                   |
//! |----------------|-------------------------|-----------------------------------------|
//! | `wms_orders`   | (shop, tid)             | [`OrderRecord`](super::OrderRecord)     |
//! | `wms_open`     | (shop, tid)             | `()`: orders not yet done (re-scans, `--held`, re-mapping) |
//! | `wms_counts`   | shop                    | [`Counts`](super::counts::Counts)       |
//! | `wms_skus`     | (shop, sku code)        | [`SkuRecord`](super::sku::SkuRecord)    |
//! | `wms_sku_map`  | (shop, "num_iid:sku_id")| the SKU or bundle code a listing sells  |
//! | `wms_bundles`  | (shop, bundle code)     | [`Bundle`](super::sku::Bundle)          |
//! | `wms_stock`    | (shop, sku code)        | [`StockRecord`](super::sku::StockRecord) (on hand; the ledger grows with "Goods out") |
//! | `wms_cursors`  | (shop, name)            | [`Cursor`](super::cursor::Cursor)       |
//! | `wms_events`   | seq                     | [`AuditRecord`](super::events::AuditRecord), a ring of the last [`AUDIT_CAP`](super::events::AUDIT_CAP) |

use crate::store::{self, Bytes, StoreError};
use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// `(shop, tid)`.
pub type OrderKey = (&'static str, u64);
/// `(shop, name)`.
pub type NameKey = (&'static str, &'static str);

/// Orders by tid.
pub const ORDERS: TableDefinition<'static, OrderKey, Bytes> = TableDefinition::new("wms_orders");
/// Orders not yet done.
pub const OPEN: TableDefinition<'static, OrderKey, ()> = TableDefinition::new("wms_open");
/// Per-shop counters.
pub const COUNTS: TableDefinition<'static, &'static str, Bytes> =
    TableDefinition::new("wms_counts");
/// The SKU master.
pub const SKUS: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_skus");
/// Listing → SKU or bundle code.
pub const SKU_MAP: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_sku_map");
/// Bundles.
pub const BUNDLES: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_bundles");
/// On hand per SKU.
pub const STOCK: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_stock");
/// Intake cursors.
pub const CURSORS: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_cursors");
/// The audit ring.
pub const EVENTS: TableDefinition<'static, u64, Bytes> = TableDefinition::new("wms_events");

/// A table for reading, or `None` when nothing was ever written to it. (Tables are created
/// by the first write that opens them, so the store's own migrations need not know them.)
pub fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<'static, K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The key of a listing in [`SKU_MAP`]: `num_iid:sku_id` (`sku_id` 0 for an item without SKUs).
pub fn listing_key(num_iid: u64, sku_id: Option<u64>) -> String {
    format!("{num_iid}:{}", sku_id.unwrap_or(0))
}

/// Decodes every row of a `(shop, &str)` table for `shop`, in key order; undecodable rows
/// are quarantined by the store and skipped.
pub fn scan_named<T, Tb>(
    table: &Tb,
    def: TableDefinition<'static, NameKey, Bytes>,
    shop: &str,
) -> Result<Vec<T>, StoreError>
where
    T: serde::de::DeserializeOwned,
    Tb: ReadableTable<NameKey, Bytes>,
{
    let mut out = Vec::new();
    // Every key of `shop` sorts between (shop, "") and (shop, "\u{10FFFF}"…).
    let hi = String::from(char::MAX).repeat(4);
    for row in table.range((shop, "")..=(shop, hi.as_str()))? {
        let (k, v) = row?;
        if let Ok(t) = store::decode::<NameKey, T>(def, &k.value(), v.value()) {
            out.push(t);
        }
    }
    Ok(out)
}

/// One row of a `(shop, &str)` table.
pub fn get_named<T: serde::de::DeserializeOwned>(
    txn: &impl store::ReadTxn,
    def: TableDefinition<'static, NameKey, Bytes>,
    shop: &str,
    name: &str,
) -> Result<Option<T>, StoreError> {
    store::get::<NameKey, T>(txn, def, (shop, name))
}

/// Writes one row of a `(shop, &str)` table.
pub fn put_named<T: serde::Serialize>(
    txn: &WriteTransaction,
    def: TableDefinition<'static, NameKey, Bytes>,
    shop: &str,
    name: &str,
    value: &T,
) -> Result<(), StoreError> {
    store::put::<NameKey, T>(txn, def, (shop, name), value)
}

/// Removes one row of a `(shop, &str)` table.
pub fn delete_named(
    txn: &WriteTransaction,
    def: TableDefinition<'static, NameKey, Bytes>,
    shop: &str,
    name: &str,
) -> Result<bool, StoreError> {
    store::delete::<NameKey>(txn, def, (shop, name))
}

/// The tids in [`OPEN`] for `shop`, ascending.
pub fn open_tids<Tb: ReadableTable<OrderKey, ()>>(
    table: &Tb,
    shop: &str,
) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    for row in table.range((shop, 0u64)..=(shop, u64::MAX))? {
        let (k, _) = row?;
        out.push(k.value().1);
    }
    Ok(out)
}
