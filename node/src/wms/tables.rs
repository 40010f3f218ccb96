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
//! | `wms_stock`    | (shop, sku code)        | [`StockRecord`](super::sku::StockRecord): on hand |
//! | `wms_reserved` | (shop, sku code)        | `i64`: units of paid lines not shipped  |
//! | `wms_stock_rules` | (shop, sku or bundle code) | [`StockRules`](super::stock::StockRules): safety, sync stopped |
//! | `wms_order_res` | (shop, tid)            | [`OrderReservation`](super::stock::OrderReservation): what the order reserves |
//! | `wms_sku_listings` | (shop, code)        | `Vec<String>`: listings whose quantity depends on the code |
//! | `wms_listing_push` | (shop, "num_iid:sku_id") | [`ListingPush`](super::stock::ListingPush): the push state of a listing |
//! | `wms_listing_anchor` | (shop, "num_iid:sku_id") | [`Anchor`](super::stock::Anchor): the platform reading a pending correction is anchored to |
//! | `wms_listing_check` | (shop, "num_iid:sku_id") | [`Anchor`](super::stock::Anchor): reconciliation's reading of a listing that differed from the ledger, until intake has passed it |
//! | `wms_stock_due` | (shop, "num_iid:sku_id") | `u8`: a push is due (0 urgent, 1 normal, 2 a correction waits to read the platform, 3 a correction waits for intake to pass its reading) |
//! | `wms_stock_moves` | seq                  | [`Move`](super::moves::Move), a ring of the last [`MOVES_CAP`](super::moves::MOVES_CAP) |
//! | `wms_meta`     | (shop, name)            | markers of one-time rebuilds            |
//! | `wms_packages` | (shop, package id)      | [`Package`](super::ship::Package): lines, waybill, shipment |
//! | `wms_order_ship` | (shop, tid)           | [`OrderShip`](super::order_ship::OrderShip): its packages, lines shipped |
//! | `wms_waybills` | (shop, "cp:waybill")    | the package that used a waybill number  |
//! | `wms_waybill_void` | (shop, package id)  | `()`: an issued waybill to cancel       |
//! | `wms_cursors`  | (shop, name)            | [`Cursor`](super::cursor::Cursor)       |
//! | `wms_events`   | seq                     | [`AuditRecord`](super::events::AuditRecord), a ring of the last [`AUDIT_CAP`](super::events::AUDIT_CAP) |
//! | `carriers`     | code                    | [`Carrier`](super::carriers::Carrier) (fetched by `sync/carriers.rs`) |

use crate::store::{self, Bytes, StoreError};
use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};

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
/// Reserved units per SKU.
pub const RESERVED: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_reserved");
/// Safety stock and the sync switch per SKU (or bundle).
pub const STOCK_RULES: TableDefinition<'static, NameKey, Bytes> =
    TableDefinition::new("wms_stock_rules");
/// What each order reserves.
pub const ORDER_RES: TableDefinition<'static, OrderKey, Bytes> =
    TableDefinition::new("wms_order_res");
/// Code → the listings whose quantity depends on it.
pub const SKU_LISTINGS: TableDefinition<'static, NameKey, Bytes> =
    TableDefinition::new("wms_sku_listings");
/// Push state per listing.
pub const LISTING_PUSH: TableDefinition<'static, NameKey, Bytes> =
    TableDefinition::new("wms_listing_push");
/// The platform reading each pending correction is anchored to (its own table, so the
/// records of `wms_listing_push` written by earlier releases still decode).
pub const LISTING_ANCHOR: TableDefinition<'static, NameKey, Bytes> =
    TableDefinition::new("wms_listing_anchor");
/// Reconciliation's readings of listings that differed from the ledger, noted by intake as a
/// correction's anchor is, until the stock check compares them again.
pub const LISTING_CHECK: TableDefinition<'static, NameKey, Bytes> =
    TableDefinition::new("wms_listing_check");
/// Listings with a push due, and how urgent.
pub const STOCK_DUE: TableDefinition<'static, NameKey, u8> = TableDefinition::new("wms_stock_due");
/// The stock audit trail.
pub const STOCK_MOVES: TableDefinition<'static, u64, Bytes> =
    TableDefinition::new("wms_stock_moves");
/// One-time markers.
pub const META: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_meta");
/// Packages.
pub const PACKAGES: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_packages");
/// Per order: its packages and the lines shipped.
pub const ORDER_SHIP: TableDefinition<'static, OrderKey, Bytes> =
    TableDefinition::new("wms_order_ship");
/// Waybill numbers in use: `cp:waybill` → package id.
pub const WAYBILLS: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_waybills");
/// Issued waybills to cancel (package ids).
pub const WAYBILL_VOID: TableDefinition<'static, NameKey, ()> =
    TableDefinition::new("wms_waybill_void");
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

/// Appends `rows` to an audit ring (a table keyed by sequence number), dropping each row that
/// falls `cap` behind the newest, so the ring keeps its last `cap` rows.
pub fn ring_append<T: serde::Serialize>(
    txn: &WriteTransaction,
    def: TableDefinition<'static, u64, Bytes>,
    cap: u64,
    rows: impl IntoIterator<Item = T>,
) -> Result<(), StoreError> {
    let mut t = txn.open_table(def)?;
    let mut next = t.last()?.map_or(0, |(k, _)| k.value().saturating_add(1));
    for row in rows {
        let bytes = store::encode(def.name(), &row)?;
        t.insert(next, bytes.as_slice())?;
        if next >= cap {
            t.remove(next - cap)?;
        }
        next = next.saturating_add(1);
    }
    Ok(())
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
