//! What has left of each trade ([`OrderShip`] in `wms_order_ship`, per shop and tid): its
//! packages, its lines through the ship scan, the lines Taobao accepted as shipped. The
//! shipping operations ([`ship`](super::ship)) keep it; the stock ledger reads it (a line
//! through the ship scan reserves nothing), and so does reconciliation.

use super::tables::{self, OrderKey};
use crate::store::{self, StoreError};
use serde::{Deserialize, Serialize};

/// Per trade: its packages and its lines that left.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderShip {
    /// Package ids, in creation order (`--package N` is the N-th).
    pub packages: Vec<String>,
    /// Lines through the ship scan.
    pub shipped: Vec<u64>,
    /// Lines Taobao accepted as shipped.
    pub consigned: Vec<u64>,
}

/// A trade's shipping record (empty when none).
pub fn load(txn: &impl store::ReadTxn, shop: &str, tid: u64) -> Result<OrderShip, StoreError> {
    Ok(
        store::get::<OrderKey, OrderShip>(txn, tables::ORDER_SHIP, (shop, tid))
            .ok()
            .flatten()
            .unwrap_or_default(),
    )
}

/// The lines of `tid` through the ship scan.
pub fn shipped_oids(
    txn: &impl store::ReadTxn,
    shop: &str,
    tid: u64,
) -> Result<Vec<u64>, StoreError> {
    Ok(load(txn, shop, tid)?.shipped)
}

/// Writes a trade's shipping record.
pub fn save(
    txn: &redb::WriteTransaction,
    shop: &str,
    tid: u64,
    os: &OrderShip,
) -> Result<(), StoreError> {
    store::put::<OrderKey, OrderShip>(txn, tables::ORDER_SHIP, (shop, tid), os)
}
