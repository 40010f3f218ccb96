//! What a committed change tells the rest of the node ([`Event`]), the broadcast that carries
//! it ([`Bus`]), and the audit ring (`wms_events`) that keeps the last ones on disk.
//!
//! Events are returned by [`Wms::finish`](super::Wms::finish) and published by whoever ran
//! the transaction, *after* it committed (`store::after_commit`): a subscriber never hears of
//! a change that was rolled back. The floor will subscribe to `Held` (send `hold` to the
//! devices holding the order's tasks) and `Released` (tasks); the status page counts them.
//! Events carry ids, states and reason codes only: no buyer data, no free text.

use super::moves::MoveKind;
use super::order::{HoldReason, LocalState};
use super::tables;
use crate::store::{self, StoreError};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Audit rows kept (older ones are dropped as new ones come).
pub const AUDIT_CAP: u64 = 100_000;

/// A change the warehouse's state went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A trade was stored for the first time.
    Arrived {
        /// Trade.
        tid: u64,
        /// Its local state.
        state: LocalState,
    },
    /// The platform's status of a stored trade changed.
    StatusChanged {
        /// Trade.
        tid: u64,
        /// The new platform status.
        taobao_status: String,
    },
    /// A hold was put on.
    Held {
        /// Trade.
        tid: u64,
        /// Why.
        reason: HoldReason,
        /// The order's local state (where its goods are).
        state: LocalState,
    },
    /// A hold came off.
    Unheld {
        /// Trade.
        tid: u64,
        /// Which.
        reason: HoldReason,
    },
    /// The order was released to the floor.
    Released {
        /// Trade.
        tid: u64,
    },
    /// The local state moved.
    StateChanged {
        /// Trade.
        tid: u64,
        /// From.
        from: LocalState,
        /// To.
        to: LocalState,
    },
    /// The trade closed after its parcel went through the ship scan: only the carrier can
    /// stop it now (courier interception).
    InterceptionNeeded {
        /// Trade.
        tid: u64,
    },
    /// Taobao shows the trade shipped, but the floor never handed it over (shipped by hand
    /// in 千牛, or by another system): a reconciliation finding.
    ShippedElsewhere {
        /// Trade.
        tid: u64,
    },
    /// A shipment waiting in the outbox was cancelled because its order is held and the
    /// parcel is still in the building: pull it.
    ShipmentCancelled {
        /// Trade.
        tid: u64,
    },
    /// The SKU master, map or bundles changed.
    SkuMapChanged {
        /// SKUs added or changed.
        skus: u32,
        /// Listings mapped.
        listings: u32,
    },
    /// A window of the incremental pull was stored (DOMAIN.md §1 rule 5).
    Window {
        /// Start (epoch ms).
        start_ms: i64,
        /// End: the new watermark (epoch ms).
        end_ms: i64,
        /// Trades first stored.
        inserted: u32,
        /// Trades updated.
        updated: u32,
        /// Trades seen again unchanged.
        unchanged: u32,
        /// TOP calls the window took.
        calls: u32,
        /// How long it took (ms).
        took_ms: u64,
    },
    /// On hand of a SKU changed (the ledger's audit trail has the reason).
    StockMoved {
        /// The SKU.
        sku: String,
        /// Why.
        kind: MoveKind,
        /// Units added (negative: removed).
        delta: i64,
        /// On hand after.
        on_hand: i64,
    },
    /// Pushes to the shop became due (the stock feeder takes them).
    StockDue {
        /// How many listings.
        listings: u32,
    },
    /// Stock sync of a SKU was stopped or resumed.
    StockSync {
        /// The SKU (or bundle).
        sku: String,
        /// Resumed (`true`) or stopped.
        on: bool,
    },
    /// A trade joined a merged package.
    Merged {
        /// Trade.
        tid: u64,
        /// The package.
        package: String,
    },
    /// A trade left a merged package (held, or a new address).
    Unmerged {
        /// Trade.
        tid: u64,
        /// The package.
        package: String,
    },
    /// The receiver (OAID) of a trade changed.
    AddressChanged {
        /// Trade.
        tid: u64,
    },
    /// An e-waybill was issued for a package.
    WaybillIssued {
        /// The package.
        package: String,
    },
    /// A package's e-waybill was voided (it is cancelled through the outbox).
    WaybillVoided {
        /// The package.
        package: String,
    },
    /// A trade's lines went through the ship scan; its `Ship` op is queued.
    Shipped {
        /// Trade.
        tid: u64,
        /// The package.
        package: String,
    },
}

impl Event {
    /// The trade it is about, if any.
    pub fn tid(&self) -> Option<u64> {
        match self {
            Event::Arrived { tid, .. }
            | Event::StatusChanged { tid, .. }
            | Event::Held { tid, .. }
            | Event::Unheld { tid, .. }
            | Event::Released { tid }
            | Event::StateChanged { tid, .. }
            | Event::InterceptionNeeded { tid }
            | Event::ShippedElsewhere { tid }
            | Event::ShipmentCancelled { tid }
            | Event::Merged { tid, .. }
            | Event::Unmerged { tid, .. }
            | Event::AddressChanged { tid }
            | Event::Shipped { tid, .. } => Some(*tid),
            Event::SkuMapChanged { .. }
            | Event::Window { .. }
            | Event::StockMoved { .. }
            | Event::StockDue { .. }
            | Event::StockSync { .. }
            | Event::WaybillIssued { .. }
            | Event::WaybillVoided { .. } => None,
        }
    }
}

/// The broadcast of committed events. Cheap to clone. A subscriber that lags loses the
/// oldest events (and is told so by the channel): events are notifications, the store is the
/// truth.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<(String, Event)>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

impl Bus {
    /// A bus with room for 4,096 events per lagging subscriber.
    pub fn new() -> Bus {
        let (tx, _) = broadcast::channel(4096);
        Bus { tx }
    }

    /// Every event published from now on, with its shop.
    pub fn subscribe(&self) -> broadcast::Receiver<(String, Event)> {
        self.tx.subscribe()
    }

    /// Publishes `events` of `shop` now. Call it after the commit (see
    /// [`publish_after_commit`](Self::publish_after_commit)).
    pub fn publish(&self, shop: &str, events: Vec<Event>) {
        for e in events {
            // No subscriber is fine: nobody listens yet.
            let _ = self.tx.send((shop.to_owned(), e));
        }
    }

    /// Publishes `events` once the write transaction running on this thread is durable
    /// (dropped if it is rolled back). Call from inside a `Store::write` closure.
    pub fn publish_after_commit(&self, shop: &str, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let bus = self.clone();
        let shop = shop.to_owned();
        store::after_commit(move || bus.publish(&shop, events));
    }
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When (epoch ms).
    pub at_ms: i64,
    /// Shop.
    pub shop: String,
    /// What.
    pub event: Event,
}

/// Appends `events` to the audit ring, dropping rows beyond [`AUDIT_CAP`].
pub fn append(
    txn: &redb::WriteTransaction,
    shop: &str,
    at_ms: i64,
    events: &[Event],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = events.iter().map(|e| AuditRecord {
        at_ms,
        shop: shop.to_owned(),
        event: e.clone(),
    });
    tables::ring_append(txn, tables::EVENTS, AUDIT_CAP, rows)
}

/// The audit rows after `after` (exclusive), oldest first, at most `limit`, optionally only
/// those about `tid`.
pub fn read(
    txn: &redb::ReadTransaction,
    after: Option<u64>,
    tid: Option<u64>,
    limit: usize,
) -> Result<Vec<(u64, AuditRecord)>, StoreError> {
    let Some(t) = tables::read_table(txn, tables::EVENTS)? else {
        return Ok(Vec::new());
    };
    let start = after.map_or(0, |a| a.saturating_add(1));
    let mut out = Vec::new();
    for row in t.range(start..)? {
        let (k, v) = row?;
        let Ok(rec) = store::decode::<u64, AuditRecord>(tables::EVENTS, &k.value(), v.value())
        else {
            continue;
        };
        if tid.is_some_and(|t| rec.event.tid() != Some(t)) {
            continue;
        }
        out.push((k.value(), rec));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}
