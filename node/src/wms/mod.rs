//! The warehouse's own state and rules: orders, lines, holds, the SKU master and map, the
//! stock ledger's first column, intake cursors and the audit log, as plain functions over a
//! store transaction.
//!
//! ```text
//!   sync/ (intake, SKU sync)  ops/ (orders hold|release, sku import)  floor/ (later)
//!            │                          │                                │
//!            └──────── Wms::new(txn, shop, now) … .finish() ─────────────┘
//!                                 │                 └─▶ Vec<Event>  (published after commit)
//!                                 ▼
//!      wms_orders  wms_open  wms_counts  wms_skus  wms_sku_map  wms_bundles  wms_stock
//!      wms_cursors  wms_events                      (tables: [`tables`])
//! ```
//!
//! Every table is keyed by shop first (one shop per node today, [`ShopId::MAIN`]), so several
//! shops can share a store later without a migration.
//!
//! # Orders
//!
//! An order keeps its platform status (`taobao_status`) and a local state ([`LocalState`],
//! DOMAIN.md §2: `new → released → picking → … → handed_over → consigned`, side states
//! `put_back`, `cancelled`, `exception`). Holds are a separate list ([`Hold`]): an order can
//! carry several (the platform's refund, an unmapped SKU, the operator's), each released by
//! its own cause, and a held order keeps its place in the flow. "Held" is never a state.
//!
//! # What this module must never do
//!
//! I/O of any kind, async, reading a clock (time is passed in), or storing buyer data beyond
//! the OAID, the region and a receiver name it masks itself (DOMAIN.md §10): street address,
//! mobile and phone are dropped on the way in, and so are the buyer's message and the seller's
//! memo (free text that buyers fill with phone numbers).

pub mod carriers;
pub mod counts;
pub mod cursor;
pub mod dedupe;
pub mod events;
pub mod moves;
pub mod order;
pub mod order_ship;
pub mod orders;
pub mod ship;
pub mod sku;
pub mod stock;
pub mod tables;
pub mod tasks;
pub mod time;
pub mod view;

pub use events::{Bus, Event};
pub use order::{Hold, HoldReason, HoldSource, Line, LocalState, Mapping, OrderRecord, Rules};
pub use orders::{Applied, Change, ConsignCheck, Feedback, Wms};

use crate::store::{Store, StoreError};

/// Which shop a record belongs to. One shop per node today.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShopId(pub String);

impl ShopId {
    /// The node's one shop.
    pub const MAIN: &'static str = "main";

    /// The node's one shop.
    pub fn main() -> ShopId {
        ShopId(Self::MAIN.to_owned())
    }

    /// As a key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ShopId {
    fn default() -> Self {
        ShopId::main()
    }
}

/// Why a warehouse operation was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WmsError {
    /// The store failed; see [`StoreError::is_retryable`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such order in this shop.
    #[error("no order with tid {0}")]
    NoOrder(u64),
    /// The request makes no sense for the current state (says why). Nothing was written.
    #[error("{0}")]
    Refused(String),
    /// An import file (or request) has problems; nothing was imported.
    #[error("{} problem(s) in the import; nothing was imported", .0.len())]
    BadRows(Vec<sku::RowError>),
}

impl WmsError {
    /// Whether trying the same thing later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            WmsError::Store(e) => e.is_retryable(),
            WmsError::NoOrder(_) | WmsError::Refused(_) | WmsError::BadRows(_) => false,
        }
    }
}

/// Runs `f` in one durable write; a refusal aborts the transaction (nothing written) and
/// comes back as it was (the store hands a closure's own error back).
pub async fn write<R, F>(store: &Store, f: F) -> Result<R, WmsError>
where
    F: FnMut(&redb::WriteTransaction) -> Result<R, WmsError> + Send + 'static,
    R: Send + 'static,
{
    store.write(f).await
}

/// An op the outbox did not take inside a `wms` write: a store failure stays one, a full
/// outbox is a refusal (nothing of the write is committed either way).
impl<Op> From<crate::outbox::EnqueueError<Op>> for WmsError {
    fn from(e: crate::outbox::EnqueueError<Op>) -> Self {
        match e {
            crate::outbox::EnqueueError::Store { source, .. } => WmsError::Store(source),
            full @ crate::outbox::EnqueueError::Full { .. } => WmsError::Refused(full.to_string()),
        }
    }
}

/// An id Taobao issued, as we keep it: `u64`. The client decodes ids as `i64`; a negative
/// one is not an id.
pub(crate) fn id(v: i64) -> Option<u64> {
    u64::try_from(v).ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod goods_tests;
#[cfg(test)]
mod tests;
