//! The warehouse flows on the floor (DOMAIN.md §12, DESIGN.md *Floor flows*): [`Flows`] is
//! the [`FlowHandler`] the daemon runs. Each flow is a pure state machine over `wms/`
//! functions inside the batch's transaction: no I/O, no clock (time is in the event), every
//! answer decided from what is stored, so it is tested without a broker (`flows_tests.rs`).
//!
//! | flow | device sends | node does | answers |
//! |---|---|---|---|
//! | pick | `request_task` mode `pick` | the next released order by ship-by deadline, not held, not taken: order → `picking`, a task of its SKUs in walking order (bins from the SKU master) | `feedback` ok with `next` (location, code, qty), then the `task` |
//! | | `scan` mode `pick` | the SKU against the device's task (barcode or code), `qty` or 1 | ok + the next step; the last unit: order → `picked` |
//! | | | a SKU not on the order / too many / an older task / a held order | `ok:false`, error beep, a distinct text; the step stays |
//! | | `short` | the task ends, the order goes to the exception desk | ok |
//! | hold | — (an order went on hold: refund, close, operator) | every device holding the order's task gets `hold`, re-sent on reconnect until `hold_ack` ([`super::holds`]) | |
//! | put-back | `hold_ack` | the pick task stops; what was picked becomes a put-back task for the same device | the `task` |
//! | | `scan` (any mode) of a put-back task | the SKU back to its bin; the last unit: order → `put_back` | ok + next bin |
//!
//! A device asking again (`request_task` after a reconnect) gets the task it holds, at its
//! current version. Pack, ship, receive and count answer that the flow is not on this node yet
//! (they need "Goods out"'s shipment function and stock ledger).

use super::devices::{self, DeviceId};
use super::flow::{Event, FlowHandler, Outcome, feedback};
use super::holds;
use crate::store::StoreError;
use crate::wms::tasks::{self, TaskKind, TaskLine, TaskRecord, TaskState};
use crate::wms::{self, LocalState, ShopId, Wms, WmsError};
use chrono::{DateTime, Utc};
use firmware_bridge::proto::{
    Downlink, Feedback, Mode, RequestTask, Scan, Short, Step, Task, Uplink, VERSION,
};
use redb::WriteTransaction;

/// The floor's flows for one shop.
#[derive(Debug, Clone)]
pub struct Flows {
    shop: ShopId,
}

impl Flows {
    /// Flows of `shop`.
    pub fn new(shop: ShopId) -> Self {
        Flows { shop }
    }

    fn shop(&self) -> &str {
        self.shop.as_str()
    }
}

type Commands = Vec<(DeviceId, Downlink<String>)>;

fn when(now_ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

fn step(line: &TaskLine) -> Step<String> {
    Step {
        location: line.location.clone(),
        code: Some(line.code.clone()),
        qty: Some(line.left()),
        tote: None,
    }
}

/// Where to go next, for people: `A-01-03: 2 x SKU-RED`.
fn say_step(line: &TaskLine) -> String {
    match &line.location {
        Some(loc) => format!("{loc}: {} x {}", line.left(), line.code),
        None => format!("{} x {} (no bin on record)", line.left(), line.code),
    }
}

/// The `task` command for `task`.
pub fn task_message(task: &TaskRecord) -> Downlink<String> {
    let what = match task.kind {
        TaskKind::Pick => format!("pick order {}", task.tid),
        TaskKind::PutBack => format!("put back what was picked for order {}", task.tid),
    };
    let text = match task.next_line() {
        Some(l) => format!("{what}: {}", say_step(l)),
        None => format!("{what}: nothing left"),
    };
    Downlink::Task(Task {
        v: VERSION,
        task_id: task.task_id.clone(),
        task_version: task.version,
        mode: Mode::Pick,
        tid: Some(task.tid.to_string()),
        text: clip(text),
        next: task.next_line().map(step),
        remaining: Some(task.left()),
    })
}

/// Texts stay within the protocol's limit.
fn clip(mut s: String) -> String {
    const MAX: usize = firmware_bridge::proto::MAX_TEXT_LEN;
    if s.len() > MAX {
        let mut cut = MAX - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn ok(re: &str, text: String, next: Option<Step<String>>) -> Feedback<String> {
    Feedback {
        next,
        ..feedback(re, true, clip(text))
    }
}

fn error(re: &str, text: String, next: Option<Step<String>>) -> Feedback<String> {
    Feedback {
        next,
        ..feedback(re, false, clip(text))
    }
}

/// The text of a refused scan of a held order.
fn held_text(order: &wms::OrderRecord) -> String {
    format!(
        "STOP: order {} is on hold ({}): do not pack it",
        order.tid,
        order
            .hold_reasons()
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl FlowHandler for Flows {
    type Event = wms::Event;

    fn handle(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        match ev.msg {
            Uplink::Heartbeat(_) => {
                devices::touch(txn, ev.device, ev.now_ms, None)?;
                Ok(Outcome::silent())
            }
            Uplink::RequestTask(r) => {
                devices::touch(txn, ev.device, ev.now_ms, None)?;
                match r.mode {
                    Mode::Pick => self.request_pick(txn, ev, r),
                    other => Ok(Outcome::answer(not_here(&r.msg_id, other))),
                }
            }
            Uplink::Scan(s) => self.scan(txn, ev, s),
            Uplink::Short(s) => self.short(txn, ev, s),
            Uplink::HoldAck(a) => {
                let (commands, events) =
                    holds::acked(txn, &self.shop, ev.device, &a.re, ev.now_ms)?;
                Ok(Outcome {
                    feedback: None,
                    commands,
                    events,
                })
            }
            Uplink::PrintResult(_) | Uplink::Reject(_) | Uplink::State(_) => Ok(Outcome::silent()),
        }
    }

    fn online(
        &self,
        txn: &WriteTransaction,
        device: &DeviceId,
    ) -> Result<Vec<(DeviceId, Downlink<String>)>, StoreError> {
        holds::pending(txn, device)
    }

    fn held(
        &self,
        txn: &WriteTransaction,
        tid: u64,
        now_ms: u64,
    ) -> Result<Vec<(DeviceId, Downlink<String>)>, StoreError> {
        holds::order_held(txn, &self.shop, tid, now_ms)
    }
}

fn not_here(re: &str, mode: Mode) -> Feedback<String> {
    feedback(
        re,
        false,
        format!("the {mode} flow is not on this node yet: nothing was recorded"),
    )
}

impl Flows {
    fn request_pick(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        r: &RequestTask<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let shop = self.shop();
        let device = ev.device.to_string();
        if let Some(task) = tasks::of_device(txn, shop, &device)? {
            // Asked again (a reconnect, a lost answer): the task it holds, as it is now.
            let text = format!("you still hold {}", say_task(&task));
            return Ok(Outcome {
                feedback: Some(ok(&r.msg_id, text, task.next_line().map(step))),
                commands: vec![(ev.device.clone(), task_message(&task))],
                events: Vec::new(),
            });
        }
        let mut skipped = Vec::new();
        loop {
            let Some(order) = tasks::next_order(txn, shop, &skipped)? else {
                return Ok(Outcome::answer(ok(
                    &r.msg_id,
                    "no work: no order is waiting to be picked".to_owned(),
                    None,
                )));
            };
            let lines = match tasks::plan(txn, shop, &order)? {
                Ok(lines) if !lines.is_empty() => lines,
                // An order whose lines cannot be planned (a SKU left the master) waits for
                // a person; the next one is handed out.
                _ => {
                    tracing::warn!(tid = order.tid, "order cannot be planned into a pick task");
                    skipped.push(order.tid);
                    continue;
                }
            };
            let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
            let from = order.state;
            if from != LocalState::Released
                && let Err(e) = w.move_to(order.tid, LocalState::Released)
            {
                return refused_or_store(&r.msg_id, e);
            }
            if let Err(e) = w.move_to(order.tid, LocalState::Picking) {
                return refused_or_store(&r.msg_id, e);
            }
            let task = TaskRecord {
                task_id: TaskRecord::pick_id(order.tid),
                kind: TaskKind::Pick,
                tid: order.tid,
                device: device.clone(),
                version: 1,
                order_version: order.version,
                lines,
                state: TaskState::Open,
                created_ms: i64::try_from(ev.now_ms).unwrap_or(i64::MAX),
            };
            tasks::save(txn, shop, &task)?;
            let events = w.finish()?;
            let first = task.next_line().map(step);
            return Ok(Outcome {
                feedback: Some(ok(&r.msg_id, say_task(&task), first)),
                commands: vec![(ev.device.clone(), task_message(&task))],
                events,
            });
        }
    }

    fn scan(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        s: &Scan<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let shop = self.shop();
        let device = ev.device.to_string();
        let Some(mut task) = tasks::of_device(txn, shop, &device)? else {
            if s.mode == Mode::Pick {
                return Ok(Outcome::answer(error(
                    &s.msg_id,
                    "no task: request one first".to_owned(),
                    None,
                )));
            }
            return Ok(Outcome::answer(not_here(&s.msg_id, s.mode)));
        };
        if task.kind == TaskKind::Pick && s.mode != Mode::Pick {
            return Ok(Outcome::answer(not_here(&s.msg_id, s.mode)));
        }
        if let Some(id) = &s.task_id
            && *id != task.task_id
        {
            // A scan for a task the device no longer holds: the current one again.
            return Ok(Outcome {
                feedback: Some(error(
                    &s.msg_id,
                    format!("old task {id}: you hold {}", say_task(&task)),
                    task.next_line().map(step),
                )),
                commands: vec![(ev.device.clone(), task_message(&task))],
                events: Vec::new(),
            });
        }
        let Some(order) = wms::orders::read_order(txn, &self.shop, task.tid)? else {
            return Ok(Outcome::answer(error(
                &s.msg_id,
                format!("order {} is gone from this node", task.tid),
                None,
            )));
        };
        if task.kind == TaskKind::Pick && order.is_held() {
            return Ok(Outcome::answer(error(&s.msg_id, held_text(&order), None)));
        }
        if task.kind == TaskKind::Pick && order.version != task.order_version {
            // The order changed under the task (a line refunded and closed): plan again,
            // keeping what was scanned, and hand the new version out.
            if let Ok(lines) = tasks::plan(txn, shop, &order)? {
                replan(&mut task, lines, order.version);
                tasks::save(txn, shop, &task)?;
                return Ok(Outcome {
                    feedback: Some(error(
                        &s.msg_id,
                        format!("order {} changed: task updated, scan again", task.tid),
                        task.next_line().map(step),
                    )),
                    commands: vec![(ev.device.clone(), task_message(&task))],
                    events: Vec::new(),
                });
            }
        }
        let qty = s.qty.unwrap_or(1).max(1);
        let Some(i) = task
            .lines
            .iter()
            .position(|l| l.left() > 0 && l.matches(&s.code))
        else {
            let next = task.next_line().map(step);
            let text = if task.lines.iter().any(|l| l.matches(&s.code)) {
                format!("{} is done already on this task", s.code)
            } else {
                let want = task.next_line().map(say_step).unwrap_or_default();
                format!(
                    "wrong item: {} is not on order {}; next: {want}",
                    s.code, task.tid
                )
            };
            return Ok(Outcome::answer(error(&s.msg_id, text, next)));
        };
        let left = task.lines[i].left();
        if qty > left {
            return Ok(Outcome::answer(error(
                &s.msg_id,
                format!("too many: {left} x {} left", task.lines[i].code),
                Some(step(&task.lines[i])),
            )));
        }
        task.lines[i].done += qty;
        let code = task.lines[i].code.clone();
        if task.left() > 0 {
            tasks::save(txn, shop, &task)?;
            let next = task.next_line();
            let text = format!("{code} ok; next {}", next.map(say_step).unwrap_or_default());
            return Ok(Outcome::answer(ok(&s.msg_id, text, next.map(step))));
        }
        task.state = TaskState::Done;
        tasks::save(txn, shop, &task)?;
        let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
        let (to, text) = match task.kind {
            TaskKind::Pick => (
                LocalState::Picked,
                format!("order {} picked: take it to packing", task.tid),
            ),
            TaskKind::PutBack => (
                LocalState::PutBack,
                format!("order {}: everything is back in its bin", task.tid),
            ),
        };
        if order.state != to
            && let Err(e) = w.move_to(task.tid, to)
        {
            return refused_or_store(&s.msg_id, e);
        }
        let events = w.finish()?;
        Ok(Outcome {
            feedback: Some(ok(&s.msg_id, text, None)),
            commands: Vec::new(),
            events,
        })
    }

    fn short(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        s: &Short<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let shop = self.shop();
        let device = ev.device.to_string();
        let Some(mut task) = tasks::of_device(txn, shop, &device)?
            .filter(|t| t.task_id == s.task_id && t.kind == TaskKind::Pick)
        else {
            return Ok(Outcome::answer(error(
                &s.msg_id,
                format!("short for {}: you hold no such pick task", s.task_id),
                None,
            )));
        };
        let Some(line) = task.lines.iter().find(|l| l.matches(&s.code)) else {
            return Ok(Outcome::answer(error(
                &s.msg_id,
                format!("short of {}: it is not on order {}", s.code, task.tid),
                None,
            )));
        };
        let code = line.code.clone();
        let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
        if let Err(e) = w.move_to(task.tid, LocalState::Exception) {
            return refused_or_store(&s.msg_id, e);
        }
        task.state = TaskState::Short;
        tasks::save(txn, shop, &task)?;
        let events = w.finish()?;
        tracing::warn!(tid = task.tid, sku = %code, missing = s.qty, location = s.location.as_deref().unwrap_or(""), "short pick");
        Ok(Outcome {
            feedback: Some(ok(
                &s.msg_id,
                format!(
                    "short of {code} recorded: take order {} to the exception desk",
                    task.tid
                ),
                None,
            )),
            commands: Vec::new(),
            events,
        })
    }
}

/// `pick order 123: A-01: 2 x RED (5 units)`.
fn say_task(task: &TaskRecord) -> String {
    let what = match task.kind {
        TaskKind::Pick => "pick order",
        TaskKind::PutBack => "put back order",
    };
    match task.next_line() {
        Some(l) => format!(
            "{what} {}: {} ({} units left)",
            task.tid,
            say_step(l),
            task.left()
        ),
        None => format!("{what} {}: nothing left", task.tid),
    }
}

/// New lines for `task`, keeping what was scanned of each SKU (up to what is still asked).
fn replan(task: &mut TaskRecord, mut lines: Vec<TaskLine>, order_version: u32) {
    for l in &mut lines {
        if let Some(old) = task.lines.iter().find(|o| o.code == l.code) {
            l.done = old.done.min(l.qty);
        }
    }
    task.lines = lines;
    task.version = task.version.saturating_add(1);
    task.order_version = order_version;
}

/// A refusal of `wms/` becomes the device's error; a store failure fails the event (it is
/// answered "not recorded, scan again" and applied afresh when re-sent).
fn refused_or_store(re: &str, e: WmsError) -> Result<Outcome<wms::Event>, StoreError> {
    match e {
        WmsError::Store(e) => Err(e),
        other => Ok(Outcome::answer(error(re, other.to_string(), None))),
    }
}

/// Used by [`super::holds`]: stops `device`'s pick task of `tid` and, when goods were picked,
/// hands the device a put-back task of them; with nothing picked the order goes straight to
/// `put_back` (its goods never left their bins). Returns the `task` to send, if any.
pub(crate) fn stop_for_hold(
    txn: &WriteTransaction,
    shop: &ShopId,
    device: &DeviceId,
    tid: u64,
    now_ms: u64,
) -> Result<(Commands, Vec<wms::Event>), StoreError> {
    let Some(mut task) = tasks::of_order(txn, shop.as_str(), tid)?
        .filter(|t| t.kind == TaskKind::Pick && t.device == device.to_string())
    else {
        return Ok((Vec::new(), Vec::new()));
    };
    task.state = TaskState::Stopped;
    tasks::save(txn, shop.as_str(), &task)?;
    let picked: Vec<TaskLine> = task
        .lines
        .iter()
        .filter(|l| l.done > 0)
        .map(|l| TaskLine {
            qty: l.done,
            done: 0,
            ..l.clone()
        })
        .collect();
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
    let put_back = TaskRecord {
        task_id: TaskRecord::put_back_id(tid),
        kind: TaskKind::PutBack,
        tid,
        device: device.to_string(),
        version: 1,
        order_version: task.order_version,
        lines: picked,
        state: TaskState::Open,
        created_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
    };
    tasks::save(txn, shop.as_str(), &put_back)?;
    Ok((vec![(device.clone(), task_message(&put_back))], w.finish()?))
}
