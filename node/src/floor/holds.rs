//! Holds on the floor: when an order goes on hold (a refund, a close, an operator), every
//! device holding its task is told at once (`hold` on its `cmd` topic), and the message is
//! kept (table `floor_holds`, by device and `hold_id`) and re-sent each time the device comes
//! back online until it answers `hold_ack`. The ack stops the device's pick task; what was
//! picked becomes a put-back task for the same device ([`super::flows`]).
//!
//! `hold_id` is `hold-{tid}-{order version}`: a hold re-announced for the same version (the
//! event delivered twice) is the same hold, a later hold of the order is a new one.

use super::devices::DeviceId;
use super::flows;
use crate::store::{self, Bytes, StoreError};
use crate::wms::tasks::{self, TaskKind};
use crate::wms::{self, ShopId};
use firmware_bridge::proto::{Downlink, Hold, VERSION};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// `(device, hold_id)` → a hold not yet acknowledged.
pub const HOLDS: TableDefinition<'static, (&'static str, &'static str), Bytes> =
    TableDefinition::new("floor_holds");

type Commands = Vec<(DeviceId, Downlink<String>)>;

/// A hold sent and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingHold {
    /// The order.
    pub tid: u64,
    /// The task it stops.
    pub task_id: String,
    /// Why (the hold reasons' codes).
    pub reason: String,
    /// What to do with the goods: `put_back` or `stop`.
    pub action: String,
    /// For the operator.
    pub text: String,
    /// First sent (epoch ms).
    pub since_ms: u64,
}

impl PendingHold {
    fn message(&self, hold_id: &str) -> Downlink<String> {
        Downlink::Hold(Hold {
            v: VERSION,
            hold_id: hold_id.to_owned(),
            tid: self.tid.to_string(),
            task_id: Some(self.task_id.clone()),
            reason: self.reason.clone(),
            action: self.action.clone(),
            text: self.text.clone(),
        })
    }
}

/// Order `tid` went on hold: the `hold` for the device holding its pick task, recorded until
/// acknowledged. Nothing when no device holds a pick task of it (its later scans are refused
/// anyway), when it is no longer held, or when that hold was sent already.
pub fn order_held(
    txn: &WriteTransaction,
    shop: &ShopId,
    tid: u64,
    now_ms: u64,
) -> Result<Commands, StoreError> {
    let Some(order) = wms::orders::read_order(txn, shop, tid)? else {
        return Ok(Vec::new());
    };
    if !order.is_held() {
        return Ok(Vec::new());
    }
    let Some(task) = tasks::of_order(txn, shop.as_str(), tid)? else {
        return Ok(Vec::new());
    };
    if task.kind != TaskKind::Pick {
        // A put-back is under way: the goods are going back already.
        return Ok(Vec::new());
    }
    let Some(device) = DeviceId::from_username(&task.device) else {
        return Ok(Vec::new());
    };
    let hold_id = format!("hold-{tid}-{}", order.version);
    let key = task.device.as_str();
    if store::get::<(&str, &str), PendingHold>(txn, HOLDS, (key, hold_id.as_str()))?.is_some() {
        return Ok(Vec::new());
    }
    let reasons = order
        .hold_reasons()
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let picked = task.lines.iter().any(|l| l.done > 0);
    let (action, text) = if picked {
        (
            "put_back",
            format!(
                "STOP: order {tid} is on hold ({reasons}): do not pack it; put what you picked \
                 back (a put-back task follows)"
            ),
        )
    } else {
        (
            "stop",
            format!("STOP: order {tid} is on hold ({reasons}): leave it and ask for a new task"),
        )
    };
    let pending = PendingHold {
        tid,
        task_id: task.task_id.clone(),
        reason: reasons,
        action: action.to_owned(),
        text,
        since_ms: now_ms,
    };
    store::put(txn, HOLDS, (key, hold_id.as_str()), &pending)?;
    metrics::counter!("wms_node_floor_holds_sent_total").increment(1);
    Ok(vec![(device, pending.message(&hold_id))])
}

/// The holds `device` has not acknowledged, to send again (it came back online).
pub fn pending(txn: &WriteTransaction, device: &DeviceId) -> Result<Commands, StoreError> {
    let key = device.to_string();
    let table = txn.open_table(HOLDS)?;
    let hi = String::from(char::MAX).repeat(4);
    let mut out = Vec::new();
    for row in table.range((key.as_str(), "")..=(key.as_str(), hi.as_str()))? {
        let (k, v) = row?;
        let (_, hold_id) = k.value();
        if let Ok(p) = store::decode::<(&str, &str), PendingHold>(HOLDS, &k.value(), v.value()) {
            out.push((device.clone(), p.message(hold_id)));
        }
    }
    if !out.is_empty() {
        metrics::counter!("wms_node_floor_holds_resent_total").increment(out.len() as u64);
    }
    Ok(out)
}

/// `device` acknowledged `hold_id`: forgotten, and the device's pick task of the order stops
/// (a put-back task of what was picked follows). If the order came off hold meanwhile, the
/// device carries on with its task (sent again).
pub fn acked(
    txn: &WriteTransaction,
    shop: &ShopId,
    device: &DeviceId,
    hold_id: &str,
    now_ms: u64,
) -> Result<(Commands, Vec<wms::Event>), StoreError> {
    let key = device.to_string();
    let Some(p) = store::get::<(&str, &str), PendingHold>(txn, HOLDS, (key.as_str(), hold_id))?
    else {
        // Acknowledged before, or never ours.
        return Ok((Vec::new(), Vec::new()));
    };
    store::delete(txn, HOLDS, (key.as_str(), hold_id))?;
    let held = wms::orders::read_order(txn, shop, p.tid)?.is_some_and(|o| o.is_held());
    if !held {
        let again = tasks::of_device(txn, shop.as_str(), &key)?
            .filter(|t| t.tid == p.tid)
            .map(|t| vec![(device.clone(), flows::task_message(&t))])
            .unwrap_or_default();
        return Ok((again, Vec::new()));
    }
    flows::stop_for_hold(txn, shop, device, p.tid, now_ms)
}

/// Holds not yet acknowledged, over all devices (the status view, tests).
pub fn count(txn: &WriteTransaction) -> Result<u64, StoreError> {
    Ok(txn.open_table(HOLDS)?.len()?)
}
