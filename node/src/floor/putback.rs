//! Put-backs: what was picked for an order that went on hold goes back to its bins. A hold
//! acknowledged stops the device's task and hands it a put-back task of the units picked
//! ([`stop_for_hold`]); a held order no device works on gets a put-back task that waits for
//! the next scanner asking for pick work ([`put_back_waiting`]). Used by [`super::holds`];
//! the scans that work a put-back task are [`super::flows`]'.

use super::devices::DeviceId;
use super::say::task_message;
use crate::status::i18n::Lang;
use crate::store::StoreError;
use crate::wms::tasks::{self, TaskKind, TaskLine, TaskRecord, TaskState};
use crate::wms::{self, LocalState, ShopId, Wms, WmsError};
use chrono::{DateTime, Utc};
use firmware_bridge::proto::Downlink;
use redb::WriteTransaction;

type Commands = Vec<(DeviceId, Downlink<String>)>;

fn when(now_ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

/// A hold acknowledged: stops `device`'s task `task_id` (a pick of `tid`, or the pack of its
/// parcel) and, when goods were picked for `tid`, hands the device a put-back task of them;
/// with nothing picked the order goes straight to `put_back` (its goods never left their
/// bins). Returns the `task` to send (its text in `lang`), if any.
pub(crate) fn stop_for_hold(
    txn: &WriteTransaction,
    shop: &ShopId,
    device: &DeviceId,
    tid: u64,
    task_id: &str,
    now_ms: u64,
    lang: Lang,
) -> Result<(Commands, Vec<wms::Event>), StoreError> {
    let Some(mut task) = tasks::of_order(txn, shop.as_str(), tid)?.filter(|t| {
        t.task_id == task_id && t.kind != TaskKind::PutBack && t.device == device.to_string()
    }) else {
        return Ok((Vec::new(), Vec::new()));
    };
    task.state = TaskState::Stopped;
    tasks::save(txn, shop.as_str(), &task)?;
    let (picked, order_version) = match task.kind {
        TaskKind::Pack => picked_for(txn, shop, tid)?,
        _ => (picked_lines(&task), task.order_version),
    };
    let mut w = Wms::new(txn, shop, when(now_ms));
    if picked.is_empty() {
        let state = wms::orders::read_order(txn, shop, tid)?.map(|o| o.state);
        if state.is_some_and(|s| s.may_move_to(LocalState::PutBack))
            && let Err(WmsError::Store(e)) = w.move_to(tid, LocalState::PutBack)
        {
            return Err(e);
        }
        return Ok((Vec::new(), w.finish()?));
    }
    for l in &picked {
        match w.into_tote(&l.code, i64::from(l.qty), tid) {
            Ok(_) => {}
            Err(WmsError::Store(e)) => return Err(e),
            Err(other) => {
                tracing::warn!(sku = %l.code, error = %other, "picked units not taken off the shelf's figure")
            }
        }
    }
    let put_back = TaskRecord {
        task_id: TaskRecord::put_back_id(tid),
        kind: TaskKind::PutBack,
        tid,
        device: device.to_string(),
        version: 1,
        order_version,
        lines: picked,
        state: TaskState::Open,
        created_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
    };
    tasks::save(txn, shop.as_str(), &put_back)?;
    Ok((
        vec![(device.clone(), task_message(&put_back, lang))],
        w.finish()?,
    ))
}

/// The units a task scanned, as lines of a put-back task.
fn picked_lines(task: &TaskRecord) -> Vec<TaskLine> {
    task.lines
        .iter()
        .filter(|l| l.done > 0)
        .map(|l| TaskLine {
            qty: l.done,
            done: 0,
            ..l.clone()
        })
        .collect()
}

/// What was picked for `tid`, which sits at a packing station: the units its pick task
/// scanned (its record stays after it is done), else (marked picked without a pick task on
/// this node) every line the order asks for; and the order's version.
fn picked_for(
    txn: &WriteTransaction,
    shop: &ShopId,
    tid: u64,
) -> Result<(Vec<TaskLine>, u32), StoreError> {
    let Some(order) = wms::orders::read_order(txn, shop, tid)? else {
        return Ok((Vec::new(), 0));
    };
    let picked = tasks::get(txn, shop.as_str(), &TaskRecord::pick_id(tid))?
        .map(|t| picked_lines(&t))
        .filter(|l| !l.is_empty());
    let lines = match picked {
        Some(l) => l,
        None => tasks::plan(txn, shop.as_str(), &order)?.unwrap_or_default(),
    };
    Ok((lines, order.version))
}

/// The held `order` has no open task (no device to tell). When goods were picked for it and
/// are still in the building (picked and waiting for packing, packed, labelled, or put back
/// by a close without a put-back yet), they become a put-back task waiting for a device, of
/// exactly the units picked, and leave on hand until scanned back; the order goes `put_back`
/// at once, which dissolves its parcel in goods out (a waybill voided and cancelled through
/// the outbox, as for every parcel that will not ship). Nothing when the put-back was made
/// already (the sweep may come twice), when nothing was picked, or when the goods are gone
/// (through the ship scan: the carrier's, not ours).
pub(crate) fn put_back_waiting(
    txn: &WriteTransaction,
    shop: &ShopId,
    order: &wms::OrderRecord,
    now_ms: u64,
) -> Result<Vec<wms::Event>, StoreError> {
    let tid = order.tid;
    if !order.is_held() || tasks::of_order(txn, shop.as_str(), tid)?.is_some() {
        return Ok(Vec::new());
    }
    let Some(lines) = owed_put_back(txn, shop, order)? else {
        return Ok(Vec::new());
    };
    let mut w = Wms::new(txn, shop, when(now_ms));
    for l in &lines {
        match w.into_tote(&l.code, i64::from(l.qty), tid) {
            Ok(_) => {}
            Err(WmsError::Store(e)) => return Err(e),
            Err(other) => {
                tracing::warn!(sku = %l.code, error = %other, "picked units not taken off the shelf's figure")
            }
        }
    }
    if order.state != LocalState::PutBack {
        match w.move_to(tid, LocalState::PutBack) {
            Ok(_) => {}
            Err(WmsError::Store(e)) => return Err(e),
            Err(other) => tracing::warn!(tid, error = %other, "held order not moved to put_back"),
        }
    }
    let task = TaskRecord {
        task_id: TaskRecord::put_back_id(tid),
        kind: TaskKind::PutBack,
        tid,
        device: String::new(),
        version: 1,
        order_version: order.version,
        lines,
        state: TaskState::Open,
        created_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
    };
    tasks::save(txn, shop.as_str(), &task)?;
    metrics::counter!("wms_node_floor_put_backs_waiting_total").increment(1);
    tracing::info!(
        tid,
        units = task.left(),
        from = %order.state,
        "held order's picked goods wait for a put-back"
    );
    w.finish()
}

/// What was picked for the held `order` (no task of it open) and is still to go back to
/// its bins, if anything:
///
/// - picked, verified, packed, weighed or labelled: the units its pick task scanned (or
///   every line, marked picked without a pick task on this node);
/// - `put_back` (a close moved it there with the goods in hand): the units its pick task
///   scanned, unless a put-back task was made after that pick (it is done: the order's goods
///   are back; a pick after it would be newer);
/// - anything else: nothing (not picked, at the exception desk, or gone with the carrier).
fn owed_put_back(
    txn: &WriteTransaction,
    shop: &ShopId,
    order: &wms::OrderRecord,
) -> Result<Option<Vec<TaskLine>>, StoreError> {
    let tid = order.tid;
    let pick = tasks::get(txn, shop.as_str(), &TaskRecord::pick_id(tid))?;
    let picked = pick.as_ref().map(picked_lines).filter(|l| !l.is_empty());
    let lines = match order.state {
        LocalState::Picked
        | LocalState::Verified
        | LocalState::Packed
        | LocalState::Weighed
        | LocalState::Labelled => match picked {
            Some(l) => Some(l),
            None => tasks::plan(txn, shop.as_str(), order)?.ok(),
        },
        LocalState::PutBack => {
            let put = tasks::get(txn, shop.as_str(), &TaskRecord::put_back_id(tid))?;
            let done_after_pick = match (&put, &pick) {
                (Some(put), Some(pick)) => put.created_ms >= pick.created_ms,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if done_after_pick { None } else { picked }
        }
        _ => None,
    };
    Ok(lines.filter(|l| !l.is_empty()))
}
