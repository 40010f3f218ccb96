//! The floor's work in hand: tasks (an order's pick list handed to one device, or the
//! put-back of what was picked for an order that went on hold), which device holds which,
//! and how far each got. Plain functions over a store transaction, like the rest of `wms/`.
//!
//! | table | key | value |
//! |---|---|---|
//! | `wms_tasks` | (shop, task_id) | [`TaskRecord`] |
//! | `wms_device_tasks` | (shop, device) | the task_id the device holds |
//! | `wms_order_tasks` | (shop, tid) | the task_id of the order's open task (a merged parcel's pack task is each of its orders') |
//!
//! A device holds at most one open task, an order has at most one open task (one pack task
//! may be several orders': a merged parcel's). A put-back task may wait for a device (its
//! `device` empty: the goods of a held order that no device was working on); it is its
//! order's open task meanwhile, and the first scanner asking for pick work takes it
//! ([`waiting`]). Task ids are
//! `pick-{tid}`, `pack-{tid}` and `putback-{tid}`; the task's `version` is bumped whenever its lines change
//! (the order's lines or holds changed under it), so a scan for an older version is refused
//! with the current task (DOMAIN.md §12.2).

use super::order::{LocalState, Mapping, OrderRecord};
use super::sku::{self, Code};
use super::tables::{self, NameKey, OPEN, OrderKey};
use crate::store::{self, Bytes, StoreError};
use crate::taobao::types::TradeStatus;
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// Tasks by id.
pub const TASKS: TableDefinition<'static, NameKey, Bytes> = TableDefinition::new("wms_tasks");
/// Device → its open task.
pub const DEVICE_TASKS: TableDefinition<'static, NameKey, &'static str> =
    TableDefinition::new("wms_device_tasks");
/// Order → its open task.
pub const ORDER_TASKS: TableDefinition<'static, OrderKey, &'static str> =
    TableDefinition::new("wms_order_tasks");

/// How a put-back task's id starts.
const PUT_BACK_PREFIX: &str = "putback-";

/// What a task asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Pick an order's lines from their bins.
    Pick,
    /// Put what was picked for a held order back into its bins.
    PutBack,
    /// Verify a picked order's items at a packing station, one scan each.
    Pack,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Being worked.
    Open,
    /// Every line done.
    Done,
    /// Ended by a short pick: the order went to the exception desk.
    Short,
    /// Stopped by a hold (a put-back task follows when goods were picked).
    Stopped,
}

/// One SKU of a task, in walking order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLine {
    /// The SKU's code.
    pub code: String,
    /// What the scanner reads.
    pub barcode: String,
    /// Its bin, if known.
    pub location: Option<String>,
    /// Units asked for.
    pub qty: u32,
    /// Units scanned.
    pub done: u32,
}

impl TaskLine {
    /// Units still to scan.
    pub fn left(&self) -> u32 {
        self.qty.saturating_sub(self.done)
    }

    /// Whether `scanned` is this SKU (its barcode or its code).
    pub fn matches(&self, scanned: &str) -> bool {
        let s = scanned.trim();
        s == self.barcode || s == self.code
    }
}

/// A task handed to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// `pick-{tid}` or `putback-{tid}`.
    pub task_id: String,
    /// Pick or put-back.
    pub kind: TaskKind,
    /// The order.
    pub tid: u64,
    /// Who holds it (`scanner/ID`); empty while a put-back task waits for a device.
    pub device: String,
    /// Bumped when its lines change.
    pub version: u32,
    /// The order's version the lines were planned from.
    pub order_version: u32,
    /// SKUs in walking order.
    pub lines: Vec<TaskLine>,
    /// Where it is.
    pub state: TaskState,
    /// Handed out (epoch ms).
    pub created_ms: i64,
}

impl TaskRecord {
    /// The id of an order's pick task.
    pub fn pick_id(tid: u64) -> String {
        format!("pick-{tid}")
    }

    /// The id of an order's pack task.
    pub fn pack_id(tid: u64) -> String {
        format!("pack-{tid}")
    }

    /// The id of an order's put-back task.
    pub fn put_back_id(tid: u64) -> String {
        format!("{PUT_BACK_PREFIX}{tid}")
    }

    /// The first line with units left (the next step), if any.
    pub fn next_line(&self) -> Option<&TaskLine> {
        self.lines.iter().find(|l| l.left() > 0)
    }

    /// Units left over all lines.
    pub fn left(&self) -> u32 {
        self.lines.iter().map(TaskLine::left).sum()
    }

    /// Open and held by no device yet (a put-back waiting for a scanner).
    pub fn is_waiting(&self) -> bool {
        self.state == TaskState::Open && self.device.is_empty()
    }
}

/// Why an order's lines cannot be planned into a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// A line maps to no SKU of the master (it would be held for that already).
    Unmapped(u64),
    /// A SKU of a line is not in the master.
    UnknownSku(String),
}

/// The SKUs an order needs, bundles exploded and equal SKUs merged, in walking order: by
/// location (SKUs without one last), then code. Closed (refunded) lines are left out.
pub fn plan(
    txn: &impl store::ReadTxn,
    shop: &str,
    order: &OrderRecord,
) -> Result<Result<Vec<TaskLine>, PlanError>, StoreError> {
    let mut need: Vec<(String, u32)> = Vec::new();
    let mut add = |code: &str, qty: u32| match need.iter_mut().find(|(c, _)| c == code) {
        Some((_, q)) => *q = q.saturating_add(qty),
        None => need.push((code.to_owned(), qty)),
    };
    for l in order.lines.iter().filter(|l| !l.is_closed()) {
        match &l.mapping {
            Mapping::Sku(code) => add(code, l.qty),
            Mapping::Bundle { parts, .. } => {
                for (code, per) in parts {
                    add(code, per.saturating_mul(l.qty));
                }
            }
            Mapping::Unmapped | Mapping::Ambiguous(_) => {
                return Ok(Err(PlanError::Unmapped(l.oid)));
            }
        }
    }
    let mut lines = Vec::with_capacity(need.len());
    for (code, qty) in need {
        let Some(Code::Sku(s)) = sku::lookup(txn, shop, &code)? else {
            return Ok(Err(PlanError::UnknownSku(code)));
        };
        lines.push(TaskLine {
            code: s.code,
            barcode: s.barcode,
            location: s.location,
            qty,
            done: 0,
        });
    }
    lines.sort_by(|a, b| match (&a.location, &b.location) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.code.cmp(&b.code)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.code.cmp(&b.code),
    });
    Ok(Ok(lines))
}

/// The next order to pick: released (or put back and free again: its hold came off and the
/// trade is still to ship), not held, no open task, not in `skip`; the earliest ship-by
/// deadline first (orders without one after those with one), then the oldest.
pub fn next_order(
    txn: &WriteTransaction,
    shop: &str,
    skip: &[u64],
) -> Result<Option<OrderRecord>, StoreError> {
    let tids = {
        let t = txn.open_table(OPEN)?;
        tables::open_tids(&t, shop)?
    };
    let taken = txn.open_table(ORDER_TASKS)?;
    let mut best: Option<OrderRecord> = None;
    for tid in tids {
        if skip.contains(&tid) || taken.get((shop, tid))?.is_some() {
            continue;
        }
        let Some(o) = store::get::<OrderKey, OrderRecord>(txn, tables::ORDERS, (shop, tid))? else {
            continue;
        };
        let free_again = o.state == LocalState::PutBack
            && matches!(
                o.taobao_status,
                TradeStatus::WaitSellerSendGoods | TradeStatus::SellerConsignedPart
            );
        if !(o.state == LocalState::Released || free_again) || o.is_held() {
            continue;
        }
        let rank = |o: &OrderRecord| (o.ship_by_ms.unwrap_or(i64::MAX), o.arrived_ms, o.tid);
        if best.as_ref().is_none_or(|b| rank(&o) < rank(b)) {
            best = Some(o);
        }
    }
    Ok(best)
}

/// A task by id.
pub fn get(
    txn: &impl store::ReadTxn,
    shop: &str,
    task_id: &str,
) -> Result<Option<TaskRecord>, StoreError> {
    tables::get_named(txn, TASKS, shop, task_id)
}

/// The open task `device` holds.
pub fn of_device(
    txn: &WriteTransaction,
    shop: &str,
    device: &str,
) -> Result<Option<TaskRecord>, StoreError> {
    let id = {
        let t = txn.open_table(DEVICE_TASKS)?;
        t.get((shop, device))?.map(|v| v.value().to_owned())
    };
    match id {
        Some(id) => get(txn, shop, &id),
        None => Ok(None),
    }
}

/// The open task of order `tid`.
pub fn of_order(
    txn: &WriteTransaction,
    shop: &str,
    tid: u64,
) -> Result<Option<TaskRecord>, StoreError> {
    let id = {
        let t = txn.open_table(ORDER_TASKS)?;
        t.get((shop, tid))?.map(|v| v.value().to_owned())
    };
    match id {
        Some(id) => get(txn, shop, &id),
        None => Ok(None),
    }
}

/// Writes `task` and keeps the indexes: an open task is its device's and its order's; a
/// task that ended is neither's, nor that of any order that [`join`]ed it.
pub fn save(txn: &WriteTransaction, shop: &str, task: &TaskRecord) -> Result<(), StoreError> {
    tables::put_named(txn, TASKS, shop, &task.task_id, task)?;
    let mut by_device = txn.open_table(DEVICE_TASKS)?;
    let mut by_order = txn.open_table(ORDER_TASKS)?;
    if task.state == TaskState::Open {
        if !task.device.is_empty() {
            by_device.insert((shop, task.device.as_str()), task.task_id.as_str())?;
        }
        by_order.insert((shop, task.tid), task.task_id.as_str())?;
    } else {
        let mine = by_device
            .get((shop, task.device.as_str()))?
            .is_some_and(|v| v.value() == task.task_id);
        if mine {
            by_device.remove((shop, task.device.as_str()))?;
        }
        for tid in orders_in(&by_order, shop, &task.task_id)? {
            by_order.remove((shop, tid))?;
        }
    }
    Ok(())
}

/// Order `tid` is worked under the open task `task_id` too (the other orders of a merged
/// parcel, packed as one): it is that task's order for [`of_order`] until the task ends. A
/// hold of any of them reaches the device holding the task.
pub fn join(txn: &WriteTransaction, shop: &str, tid: u64, task_id: &str) -> Result<(), StoreError> {
    txn.open_table(ORDER_TASKS)?.insert((shop, tid), task_id)?;
    Ok(())
}

/// The orders worked under the open task `task_id`: its own and those that [`join`]ed it.
pub fn orders_of(
    txn: &WriteTransaction,
    shop: &str,
    task_id: &str,
) -> Result<Vec<u64>, StoreError> {
    orders_in(&txn.open_table(ORDER_TASKS)?, shop, task_id)
}

/// Every order with an open task (a few per device at most).
pub fn open_orders(txn: &WriteTransaction, shop: &str) -> Result<Vec<u64>, StoreError> {
    let t = txn.open_table(ORDER_TASKS)?;
    let mut out = Vec::new();
    for row in t.range((shop, 0u64)..=(shop, u64::MAX))? {
        out.push(row?.0.value().1);
    }
    Ok(out)
}

/// The put-back tasks waiting for a device, oldest first (a few at most: the goods of held
/// orders no device was working on).
pub fn waiting(txn: &WriteTransaction, shop: &str) -> Result<Vec<TaskRecord>, StoreError> {
    let ids = {
        let t = txn.open_table(ORDER_TASKS)?;
        let mut ids = Vec::new();
        for row in t.range((shop, 0u64)..=(shop, u64::MAX))? {
            let (_, v) = row?;
            if v.value().starts_with(PUT_BACK_PREFIX) {
                ids.push(v.value().to_owned());
            }
        }
        ids
    };
    let mut out = Vec::new();
    for id in ids {
        if let Some(t) = get(txn, shop, &id)?.filter(TaskRecord::is_waiting) {
            out.push(t);
        }
    }
    out.sort_by_key(|t| (t.created_ms, t.tid));
    Ok(out)
}

/// Held orders that are still open (not consigned or cancelled, or held anyway) and have
/// no open task: where a hold may owe a put-back that no device was told of.
pub fn held_without_task(
    txn: &WriteTransaction,
    shop: &str,
) -> Result<Vec<OrderRecord>, StoreError> {
    let tids = {
        let t = txn.open_table(OPEN)?;
        tables::open_tids(&t, shop)?
    };
    let taken = txn.open_table(ORDER_TASKS)?;
    let mut out = Vec::new();
    for tid in tids {
        if taken.get((shop, tid))?.is_some() {
            continue;
        }
        if let Some(o) = store::get::<OrderKey, OrderRecord>(txn, tables::ORDERS, (shop, tid))?
            && o.is_held()
        {
            out.push(o);
        }
    }
    Ok(out)
}

fn orders_in(
    t: &impl ReadableTable<OrderKey, &'static str>,
    shop: &str,
    task_id: &str,
) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    for row in t.range((shop, 0u64)..=(shop, u64::MAX))? {
        let (k, v) = row?;
        if v.value() == task_id {
            out.push(k.value().1);
        }
    }
    Ok(out)
}
