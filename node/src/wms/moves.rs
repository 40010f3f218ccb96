//! The stock ledger's audit trail (`wms_stock_moves`): why on hand changed ([`MoveKind`]) and
//! one row per change ([`Move`]), in a ring of the last [`MOVES_CAP`]. The ledger
//! ([`stock`](super::stock)) appends a row in the same transaction as every change of on hand;
//! the `StockMoved` event carries the same kind.

use super::tables;
use crate::store::{self, StoreError};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

/// Audit rows of stock moves kept.
pub const MOVES_CAP: u64 = 100_000;

/// Why on hand changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveKind {
    /// Goods received.
    Receive,
    /// A correction by a number of units (`stock adjust`).
    Adjust,
    /// A count set the figure (`stock set`, the floor's count).
    Count,
    /// Goods back on the shelf (a returned or intercepted parcel).
    PutBack,
    /// Goods left with a parcel.
    Ship,
    /// The first figure, from `sku import`.
    Import,
}

impl MoveKind {
    /// The name in JSON and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveKind::Receive => "receive",
            MoveKind::Adjust => "adjust",
            MoveKind::Count => "count",
            MoveKind::PutBack => "put_back",
            MoveKind::Ship => "ship",
            MoveKind::Import => "import",
        }
    }

    /// A warehouse event: the shop learns of it as a delta. Shipping is not one (the sale
    /// already took the unit on the platform; on hand and reserved fall together), nor is the
    /// first figure of an import (the shop's figure was never the node's: it gets a full
    /// value).
    pub(super) fn is_warehouse_event(self) -> bool {
        !matches!(self, MoveKind::Ship | MoveKind::Import)
    }
}

/// One change of on hand, in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// When (epoch ms).
    pub at_ms: i64,
    /// Shop.
    pub shop: String,
    /// SKU.
    pub sku: String,
    /// Why.
    pub kind: MoveKind,
    /// Units added (negative: removed).
    pub delta: i64,
    /// On hand after.
    pub on_hand: i64,
    /// The operator's words, or what caused it. Never buyer data.
    pub reason: String,
    /// The trade, for shipments and put-backs.
    pub tid: Option<u64>,
}

/// Appends a move to the audit ring, dropping rows beyond [`MOVES_CAP`].
pub fn append(txn: &WriteTransaction, m: &Move) -> Result<(), StoreError> {
    tables::ring_append(txn, tables::STOCK_MOVES, MOVES_CAP, [m])
}

/// The audit trail of `sku` (all SKUs when `None`), newest first, at most `limit`.
pub fn read(
    txn: &redb::ReadTransaction,
    sku: Option<&str>,
    limit: usize,
) -> Result<Vec<Move>, StoreError> {
    let Some(t) = tables::read_table(txn, tables::STOCK_MOVES)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in t.iter()?.rev() {
        let (k, v) = row?;
        let Ok(m) = store::decode::<u64, Move>(tables::STOCK_MOVES, &k.value(), v.value()) else {
            continue;
        };
        if sku.is_some_and(|s| s != m.sku) {
            continue;
        }
        out.push(m);
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
