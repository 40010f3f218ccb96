//! Orders as operators see them (`wms-node orders list|show --json`, the admin API): ids as
//! strings, times as RFC 3339 with the China offset, the local state, and the holds as a list
//! (`state` is never "held").

use super::order::{HoldReason, LocalState, Mapping, OrderRecord};
use super::tables::{self, OPEN, ORDERS, OrderKey};
use super::time::rfc3339;
use super::{ShopId, counts};
use crate::store::{self, StoreError};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

/// One hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    /// The reason code (`refund`, `unmapped_sku`, …), or the operator's words for an
    /// operator's hold.
    pub reason: String,
    /// `taobao`, `sku_map`, `rules` or `operator`.
    pub source: String,
    /// Since when.
    pub since: String,
    /// The reason code, also for an operator's hold (`operator`).
    pub code: String,
    /// Which lines and statuses, for people.
    pub detail: String,
}

/// A component of a bundle line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentView {
    /// SKU.
    pub sku: String,
    /// Units to pick for the line (per-bundle quantity × line quantity).
    pub qty: u64,
}

/// One line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineView {
    /// Line id.
    pub oid: String,
    /// The SKU (or bundle) it maps to; null when it does not map.
    pub sku: Option<String>,
    /// Quantity.
    pub qty: u32,
    /// `sku`, `bundle`, `unmapped` or `ambiguous`.
    pub mapping: String,
    /// A bundle's components.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentView>,
    /// Item.
    pub num_iid: Option<String>,
    /// SKU id of the item.
    pub sku_id: Option<String>,
    /// The listing's merchant code.
    pub outer_sku_id: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// The line's platform status.
    pub status: Option<String>,
    /// The line's refund state.
    pub refund_status: Option<String>,
}

/// One order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Trade id.
    pub tid: String,
    /// Local state (DOMAIN.md §2).
    pub state: String,
    /// Platform status.
    pub taobao_status: String,
    /// Holds; empty when it is free to go.
    pub holds: Vec<HoldView>,
    /// The platform's last change.
    pub modified: String,
    /// Ship-by deadline (DOMAIN.md §9).
    pub ship_by: Option<String>,
    /// Created on Taobao.
    pub created: Option<String>,
    /// Paid.
    pub pay_time: Option<String>,
    /// When the node first stored it.
    pub arrived: String,
    /// Lines.
    pub lines: Vec<LineView>,
    /// Province, city, district.
    pub region: Vec<String>,
    /// The receiver's name as the node masks it (first character, then `*`).
    pub receiver: Option<String>,
    /// Trade type.
    pub trade_type: Option<String>,
    /// Bumped on every change of lines or holds.
    pub version: u32,
}

impl OrderView {
    /// The view of a record.
    pub fn of(o: &OrderRecord) -> OrderView {
        OrderView {
            tid: o.tid.to_string(),
            state: o.state.as_str().to_owned(),
            taobao_status: o.taobao_status.as_str().to_owned(),
            holds: o
                .holds
                .iter()
                .map(|h| HoldView {
                    reason: if h.reason == HoldReason::Operator {
                        h.detail.clone()
                    } else {
                        h.reason.as_str().to_owned()
                    },
                    source: h.reason.source().as_str().to_owned(),
                    since: rfc3339(h.since_ms),
                    code: h.reason.as_str().to_owned(),
                    detail: h.detail.clone(),
                })
                .collect(),
            modified: rfc3339(o.modified_ms),
            ship_by: o.ship_by_ms.map(rfc3339),
            created: o.created_ms.map(rfc3339),
            pay_time: o.pay_time_ms.map(rfc3339),
            arrived: rfc3339(o.arrived_ms),
            lines: o
                .lines
                .iter()
                .map(|l| LineView {
                    oid: l.oid.to_string(),
                    sku: l.mapping.code().map(str::to_owned),
                    qty: l.qty,
                    mapping: match &l.mapping {
                        Mapping::Sku(_) => "sku",
                        Mapping::Bundle { .. } => "bundle",
                        Mapping::Unmapped => "unmapped",
                        Mapping::Ambiguous(_) => "ambiguous",
                    }
                    .to_owned(),
                    components: match &l.mapping {
                        Mapping::Bundle { parts, .. } => parts
                            .iter()
                            .map(|(sku, q)| ComponentView {
                                sku: sku.clone(),
                                qty: u64::from(*q) * u64::from(l.qty),
                            })
                            .collect(),
                        _ => Vec::new(),
                    },
                    num_iid: l.num_iid.map(|n| n.to_string()),
                    sku_id: l.sku_id.map(|n| n.to_string()),
                    outer_sku_id: l.outer_sku_id.clone(),
                    title: l.title.clone(),
                    status: l.status.as_ref().map(|s| s.as_str().to_owned()),
                    refund_status: l.refund_status.as_ref().map(|s| s.as_str().to_owned()),
                })
                .collect(),
            region: [&o.province, &o.city, &o.district]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
            receiver: o.receiver.clone(),
            trade_type: o.trade_type.clone(),
            version: o.version,
        }
    }
}

/// Which orders `orders list` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFilter {
    /// Only this local state.
    #[serde(default)]
    pub state: Option<String>,
    /// Only held orders.
    #[serde(default)]
    pub held: bool,
    /// Only tids below this one (the next page of a newest-first list).
    #[serde(default)]
    pub before: Option<u64>,
    /// At most this many (default 100, at most 10,000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Lists orders, newest (highest tid) first.
pub fn list(
    txn: &redb::ReadTransaction,
    shop: &ShopId,
    f: &OrderFilter,
) -> Result<Result<Vec<OrderView>, String>, StoreError> {
    let state = match f.state.as_deref() {
        None | Some("") => None,
        Some("held") => {
            return Ok(Err(
                "`held` is not a state: holds are listed with --held".to_owned()
            ));
        }
        Some(s) => match LocalState::parse(s) {
            Some(st) => Some(st),
            None => {
                return Ok(Err(format!(
                    "unknown state `{s}`; the states are {}",
                    LocalState::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        },
    };
    let limit = f.limit.unwrap_or(100).clamp(1, 10_000);
    let upper = f.before.map_or(u64::MAX, |b| b.saturating_sub(1));
    let shop = shop.as_str();
    let keep = |o: &OrderRecord| state.is_none_or(|s| o.state == s) && (!f.held || o.is_held());
    let mut out = Vec::new();
    // Held orders and orders in a non-final state are all in the open index.
    let open_only = f.held || state.is_some_and(|s| !s.is_final());
    let Some(orders) = tables::read_table(txn, ORDERS)? else {
        return Ok(Ok(out));
    };
    if open_only {
        let Some(open) = tables::read_table(txn, OPEN)? else {
            return Ok(Ok(out));
        };
        for row in open.range((shop, 0u64)..=(shop, upper))?.rev() {
            let (k, _) = row?;
            let tid = k.value().1;
            if let Some(o) = get(&orders, shop, tid)?
                && keep(&o)
            {
                out.push(OrderView::of(&o));
                if out.len() >= limit {
                    break;
                }
            }
        }
    } else {
        for row in orders.range((shop, 0u64)..=(shop, upper))?.rev() {
            let (k, v) = row?;
            let Ok(o) = store::decode::<OrderKey, OrderRecord>(ORDERS, &k.value(), v.value())
            else {
                continue;
            };
            if keep(&o) {
                out.push(OrderView::of(&o));
                if out.len() >= limit {
                    break;
                }
            }
        }
    }
    Ok(Ok(out))
}

fn get<T: ReadableTable<OrderKey, store::Bytes>>(
    t: &T,
    shop: &str,
    tid: u64,
) -> Result<Option<OrderRecord>, StoreError> {
    match t.get((shop, tid))? {
        None => Ok(None),
        Some(v) => Ok(store::decode::<OrderKey, OrderRecord>(ORDERS, &(shop, tid), v.value()).ok()),
    }
}

/// One order.
pub fn show(
    txn: &impl store::ReadTxn,
    shop: &ShopId,
    tid: u64,
) -> Result<Option<OrderView>, StoreError> {
    Ok(super::orders::read_order(txn, shop, tid)?.map(|o| OrderView::of(&o)))
}

/// The shop's counters, for `/metrics` and the status page.
pub fn counts(txn: &impl store::ReadTxn, shop: &ShopId) -> Result<counts::Counts, StoreError> {
    counts::load(txn, shop.as_str())
}

/// The open orders' tids (for re-scans).
pub fn open(txn: &redb::ReadTransaction, shop: &ShopId) -> Result<Vec<u64>, StoreError> {
    match tables::read_table(txn, OPEN)? {
        Some(t) => tables::open_tids(&t, shop.as_str()),
        None => Ok(Vec::new()),
    }
}
