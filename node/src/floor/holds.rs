//! Holds on the floor: when an order goes on hold (a refund, a close, an operator), the
//! device holding its task is told at once (`hold` on its `cmd` topic), and the message is
//! kept (table `floor_holds`, by device and `hold_id`) and re-sent each time the device comes
//! back online until it answers `hold_ack`. The ack stops the device's task; what was picked
//! becomes a put-back task for the same device ([`super::putback`]).
//!
//! | the order's open task | `hold` to | `action` | after the `hold_ack` |
//! |---|---|---|---|
//! | pick, units picked | the picker | `put_back` | a put-back task of the units picked |
//! | pick, nothing picked | the picker | `stop` | the order is `put_back` (nothing left its bin) |
//! | pack (also a merged parcel's other orders) | the packing station | `put_back` | a put-back task of every unit picked for the held order; the parcel's other orders stay picked (scanned again, they are packed in a parcel of their own) |
//! | put-back | nobody | | (the goods are on their way back already) |
//! | none: picked and waiting for packing, packed, labelled, at the dock (also as an order of a merged parcel) | nobody | | at once: the order is `put_back` (its parcel dissolved, a waybill voided and cancelled through goods out's outbox path) and what was picked for it is a put-back task waiting for a device: the first scanner asking for pick work gets it ([`putback::put_back_waiting`]); every scan of the order refers to it |
//! | none, nothing picked or gone (released, handed over, consigned) | nobody | | nothing to put back: a parcel gone is the carrier's (interception, DOMAIN.md §3) |
//!
//! `hold_id` is `hold-{tid}-{order version}`: a hold re-announced for the same version (the
//! event delivered twice) is the same hold, a later hold of the order is a new one. The
//! warehouse's events are not kept, so at start (and whenever the floor fell behind them)
//! every held order still open is looked at again ([`sweep`]): a node killed between the
//! hold's commit and the floor's still sends it, and still makes the put-back (once: an order
//! whose put-back was made has an open put-back task, or is `put_back` with it done).

use super::devices::DeviceId;
use super::flow::Effects;
use super::putback;
use super::say;
use crate::status::i18n::{Lang, Msg};
use crate::store::{self, Bytes, StoreError};
use crate::wms::tasks::{self, TaskKind};
use crate::wms::{self, ShopId};
use firmware_bridge::proto::{Downlink, Hold, VERSION, json};
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

/// Order `tid` went on hold: the `hold` for the device holding its task (a pick, or the pack
/// of its parcel), recorded until acknowledged; with no task of it open, the goods picked for
/// it become a put-back task waiting for a device ([`putback::put_back_waiting`]). Nothing when
/// it is no longer held, when that hold was sent already, or when its put-back was made.
pub fn order_held(
    txn: &WriteTransaction,
    shop: &ShopId,
    tid: u64,
    now_ms: u64,
    lang: Lang,
) -> Result<Effects<wms::Event>, StoreError> {
    let Some(order) = wms::orders::read_order(txn, shop, tid)? else {
        return Ok((Vec::new(), Vec::new()));
    };
    if !order.is_held() {
        return Ok((Vec::new(), Vec::new()));
    }
    let Some(task) = tasks::of_order(txn, shop.as_str(), tid)? else {
        return Ok((
            Vec::new(),
            putback::put_back_waiting(txn, shop, &order, now_ms)?,
        ));
    };
    Ok((
        device_hold(txn, shop, &order, task, now_ms, lang)?,
        Vec::new(),
    ))
}

/// The `hold` for the device holding `task` of the held `order`, recorded until
/// acknowledged; nothing when it was sent already, or the task is a put-back (or waits for a
/// device).
fn device_hold(
    txn: &WriteTransaction,
    shop: &ShopId,
    order: &wms::OrderRecord,
    task: tasks::TaskRecord,
    now_ms: u64,
    lang: Lang,
) -> Result<Commands, StoreError> {
    let tid = order.tid;
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
    let said = say::reasons(order, lang);
    let (action, text) = match task.kind {
        // A put-back is under way: the goods are going back already.
        TaskKind::PutBack => return Ok(Vec::new()),
        TaskKind::Pick if task.lines.iter().any(|l| l.done > 0) => {
            ("put_back", lang.f(Msg::FlHoldPutBack, &[&tid, &said]))
        }
        TaskKind::Pick => ("stop", lang.f(Msg::FlHoldStop, &[&tid, &said])),
        TaskKind::Pack => {
            let others = tasks::orders_of(txn, shop.as_str(), &task.task_id)?
                .into_iter()
                .filter(|t| *t != tid)
                .map(|t| t.to_string())
                .collect::<Vec<_>>();
            let rest = if others.is_empty() {
                String::new()
            } else {
                lang.f(Msg::FlHoldOthersStay, &[&others.join(lang.t(Msg::ListSep))])
            };
            ("put_back", lang.f(Msg::FlHoldPack, &[&tid, &said, &rest]))
        }
    };
    let pending = PendingHold {
        tid,
        task_id: task.task_id.clone(),
        reason: reasons,
        action: action.to_owned(),
        text: json::fit_text(text),
        since_ms: now_ms,
    };
    store::put(txn, HOLDS, (key, hold_id.as_str()), &pending)?;
    metrics::counter!("wms_node_floor_holds_sent_total").increment(1);
    Ok(vec![(device, pending.message(&hold_id))])
}

/// Every held order whose device was not told yet, or whose put-back was not made yet: the
/// holds to send and the put-backs made (at start, and after the floor missed warehouse
/// events).
pub fn sweep(
    txn: &WriteTransaction,
    shop: &ShopId,
    now_ms: u64,
    lang: Lang,
) -> Result<Effects<wms::Event>, StoreError> {
    let (mut commands, mut events) = (Vec::new(), Vec::new());
    for tid in tasks::open_orders(txn, shop.as_str())? {
        let (c, e) = order_held(txn, shop, tid, now_ms, lang)?;
        commands.extend(c);
        events.extend(e);
    }
    for order in tasks::held_without_task(txn, shop.as_str())? {
        events.extend(putback::put_back_waiting(txn, shop, &order, now_ms)?);
    }
    Ok((commands, events))
}

/// The holds `device` has not acknowledged, to send again (it came back online): as they
/// were first sent, their text in the language of then.
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

/// `device` acknowledged `hold_id`: forgotten, and the device's task of the order (a pick or
/// a pack) stops; a put-back task of what was picked follows. If the order came off hold
/// meanwhile, the device carries on with its task (sent again). Texts in `lang`.
pub fn acked(
    txn: &WriteTransaction,
    shop: &ShopId,
    device: &DeviceId,
    hold_id: &str,
    now_ms: u64,
    lang: Lang,
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
            .filter(|t| t.task_id == p.task_id)
            .map(|t| vec![(device.clone(), say::task_message(&t, lang))])
            .unwrap_or_default();
        return Ok((again, Vec::new()));
    }
    putback::stop_for_hold(txn, shop, device, p.tid, &p.task_id, now_ms, lang)
}

/// Holds not yet acknowledged, over all devices (the status view, tests).
pub fn count(txn: &WriteTransaction) -> Result<u64, StoreError> {
    Ok(txn.open_table(HOLDS)?.len()?)
}
