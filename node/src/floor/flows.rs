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
//! | hold | — (an order went on hold: refund, close, operator) | the device holding the order's task (a pick, or the pack of its parcel) gets `hold`, re-sent on reconnect until `hold_ack` ([`super::holds`]) | later scans of the order: `STOP` and the reason |
//! | put-back | `hold_ack` | the pick or pack task stops; what was picked for the order leaves the ledger's on hand (it is in a tote) and becomes a put-back task for the same device | the `task` |
//! | | — (an order held that no device works on: picked and waiting for packing, packed, labelled, in a merged parcel) | at once (and in the sweep at start): what was picked leaves on hand, the order goes `put_back` (goods out dissolves its parcel: a waybill is voided and cancelled), a put-back task waits for a device | its scans at the station and the dock: `STOP: order … is on hold (…): put its goods back with task putback-…` |
//! | | `request_task` mode `pick` | a waiting put-back task first (oldest first), then picks | ok with `next`, then the `task` |
//! | | `scan` (any mode) of a put-back task | the SKU back to its bin; the last unit: every unit back on hand (`put_back` moves, a delta to the shop), order → `put_back` | ok + next bin |
//! | pack | `scan` mode `pack`, no task: the order (`tid` or `pick-{tid}`) | a picked order's parcel (goods out's package; merged with the same receiver's orders when `[shipping] merge_orders`, all of them picked): a `pack-{tid}` task of every item | ok + the first item, then the `task` (mode `pack`) |
//! | | `scan` mode `pack` of an item | verified against the task; wrong item or too many: error beep | ok + the next item; the last: orders → `verified` → `packed`, the label queued for the station's printer ([`super::labels`]) |
//! | | `scan` mode `pack` of an order packed already | its label again (the same waybill) | ok |
//! | label | — (the labeller, after the commit) | goods out's e-waybill (kept with its print data before anything prints), `print` to the station's printer (`cainiao` or `zpl`) | |
//! | | `print_result` (printer's `reply`) | `printed`: orders → `labelled`; `error`: the station is told; none within `floor.print_timeout`: printed again | the station's scanner: a `feedback` (`re` null) |
//! | ship | `scan` mode `ship`: the waybill number | goods out's ship function (as `wms-node ship`): holds, carrier and number checked; every trade of the parcel shipped, goods off the ledger, one `Ship` op per trade | ok naming the orders; a held order: `STOP` with the reason |
//! | receive | `scan` mode `receive`: a SKU's barcode or code, `qty` (1 when absent) | on hand + qty, audited (`receive`), a delta to the shop | ok + on hand and the SKU's bin |
//! | count | `scan` mode `count`: the SKU, `qty` = units counted (required) | on hand = qty, audited (`count`), the difference to the shop | ok + the difference |
//!
//! A device asking again (`request_task` after a reconnect) gets the task it holds, at its
//! current version. Receive, count and ship need no task; a device holding a pick or pack task
//! is refused scans of the other of those two modes until it finishes.
//!
//! Every text a device shows is said in the floor's language ([`Flows::with_lang`],
//! `[floor] language`) through the catalogue (`status::i18n`, [`super::say`]); the machine
//! fields (`ok`, `beep`, `next`, ids, `remaining`) are the same in every language.

use super::devices::{self, DeviceId};
use super::flow::{Effects, Event, FlowHandler, Outcome, feedback};
use super::holds;
use super::labels::{self, Station};
use super::say::{self, echo, mode_word, say_step, say_task, step, task_message};
use crate::outbox::Outbox;
use crate::status::i18n::{Lang, Msg};
use crate::store::StoreError;
use crate::taobao::outbox::TaobaoOp;
use crate::wms::tasks::{self, TaskKind, TaskLine, TaskRecord, TaskState};
use crate::wms::{self, LocalState, ShopId, Wms, WmsError};
use chrono::{DateTime, Utc};
use firmware_bridge::proto::{
    Downlink, Feedback, Mode, RequestTask, Scan, Short, Step, Uplink, json,
};
use redb::WriteTransaction;
use std::sync::Arc;

/// The floor's flows for one shop.
#[derive(Clone)]
pub struct Flows {
    shop: ShopId,
    goods: Option<Goods>,
    stations: Arc<Vec<Station>>,
    lang: Lang,
}

/// What the ship flow needs of goods out.
#[derive(Clone)]
pub struct Goods {
    /// The node's one outbox of Taobao effects (a shipment's `Ship` ops go in it).
    pub outbox: Outbox<TaobaoOp>,
    /// Orders of one receiver share a parcel (`[shipping] merge_orders`).
    pub merge: bool,
}

impl std::fmt::Debug for Flows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flows")
            .field("shop", &self.shop)
            .field("goods", &self.goods.is_some())
            .field("stations", &self.stations)
            .field("lang", &self.lang)
            .finish()
    }
}

impl Flows {
    /// Flows of `shop`: pick, holds and put-back, receive and count. Pack and ship need
    /// [`Flows::with_goods`].
    pub fn new(shop: ShopId) -> Self {
        Flows {
            shop,
            goods: None,
            stations: Arc::new(Vec::new()),
            lang: Lang::En,
        }
    }

    /// With goods out: pack (packages, merged by receiver when `goods.merge`) and ship (the
    /// same `wms/` function as `wms-node ship`, its ops into `goods.outbox`).
    pub fn with_goods(mut self, goods: Goods) -> Self {
        self.goods = Some(goods);
        self
    }

    /// With packing stations: a scanner's labels go to its station's printer.
    pub fn with_stations(mut self, stations: Vec<Station>) -> Self {
        self.stations = Arc::new(stations);
        self
    }

    /// Speaking `lang` to people (`[floor] language`; English by default): every text a
    /// device shows. The protocol's machine fields are the same in every language.
    pub fn with_lang(mut self, lang: Lang) -> Self {
        self.lang = lang;
        self
    }

    fn shop(&self) -> &str {
        self.shop.as_str()
    }
}

fn when(now_ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(now_ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

fn ok(re: &str, text: String, next: Option<Step<String>>) -> Feedback<String> {
    Feedback {
        next,
        ..feedback(re, true, json::fit_text(text))
    }
}

fn error(re: &str, text: String, next: Option<Step<String>>) -> Feedback<String> {
    Feedback {
        next,
        ..feedback(re, false, json::fit_text(text))
    }
}

/// A refusal: `ok:false`, error beep, nothing changed.
fn refuse(re: &str, text: String) -> Result<Outcome<wms::Event>, StoreError> {
    Ok(Outcome::answer(error(re, text, None)))
}

/// An OK, and what changed.
fn done(
    re: &str,
    text: String,
    events: Vec<wms::Event>,
) -> Result<Outcome<wms::Event>, StoreError> {
    Ok(Outcome {
        feedback: Some(ok(re, text, None)),
        commands: Vec::new(),
        events,
    })
}

/// A feedback, then the `task` the device holds, as it is now.
fn with_task(
    device: &DeviceId,
    fb: Feedback<String>,
    task: &TaskRecord,
    lang: Lang,
) -> Result<Outcome<wms::Event>, StoreError> {
    Ok(Outcome {
        feedback: Some(fb),
        commands: vec![(device.clone(), task_message(task, lang))],
        events: Vec::new(),
    })
}

/// A refusal after `w` changed something that stays (a parcel made, its merge logged): its
/// writes are finished and their events kept.
fn refuse_after(w: Wms<'_>, re: &str, text: String) -> Result<Outcome<wms::Event>, StoreError> {
    let events = w.finish()?;
    Ok(Outcome {
        feedback: Some(error(re, text, None)),
        commands: Vec::new(),
        events,
    })
}

/// The text of a refused scan of a held order.
fn held_text(order: &wms::OrderRecord, lang: Lang) -> String {
    lang.f(Msg::FlHeld, &[&order.tid, &say::reasons(order, lang)])
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
                    Mode::Pack => self.request_pack(txn, ev, r),
                    Mode::Ship => Ok(Outcome::answer(ok(
                        &r.msg_id,
                        self.lang.t(Msg::FlNoTaskShip).to_owned(),
                        None,
                    ))),
                    other => Ok(Outcome::answer(ok(
                        &r.msg_id,
                        self.lang
                            .f(Msg::FlNoTaskSku, &[&mode_word(other, self.lang)]),
                        None,
                    ))),
                }
            }
            Uplink::Scan(s) => self.scan(txn, ev, s),
            Uplink::Short(s) => self.short(txn, ev, s),
            Uplink::HoldAck(a) => {
                let (commands, events) =
                    holds::acked(txn, &self.shop, ev.device, &a.re, ev.now_ms, self.lang)?;
                Ok(Outcome {
                    feedback: None,
                    commands,
                    events,
                })
            }
            Uplink::PrintResult(r) => {
                let (commands, events) = labels::result(
                    txn,
                    &self.shop,
                    ev.device,
                    &r.re,
                    r.status,
                    r.error.as_deref(),
                    ev.now_ms,
                    self.lang,
                )?;
                Ok(Outcome {
                    feedback: None,
                    commands,
                    events,
                })
            }
            Uplink::Reject(_) | Uplink::State(_) => Ok(Outcome::silent()),
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
    ) -> Result<Effects<wms::Event>, StoreError> {
        holds::order_held(txn, &self.shop, tid, now_ms, self.lang)
    }

    fn sweep(
        &self,
        txn: &WriteTransaction,
        now_ms: u64,
    ) -> Result<Effects<wms::Event>, StoreError> {
        holds::sweep(txn, &self.shop, now_ms, self.lang)
    }
}

impl Flows {
    /// `request_task` mode `pack`: the pack task the device holds (after a reconnect), else
    /// what to do.
    fn request_pack(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        r: &RequestTask<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let device = ev.device.to_string();
        let lang = self.lang;
        match tasks::of_device(txn, self.shop(), &device)? {
            Some(task) => with_task(
                ev.device,
                ok(
                    &r.msg_id,
                    lang.f(Msg::FlStillHold, &[&say_task(&task, lang)]),
                    task.next_line().map(step),
                ),
                &task,
                lang,
            ),
            None => Ok(Outcome::answer(ok(
                &r.msg_id,
                lang.t(Msg::FlScanToPack).to_owned(),
                None,
            ))),
        }
    }

    fn request_pick(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        r: &RequestTask<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let shop = self.shop();
        let device = ev.device.to_string();
        let lang = self.lang;
        if let Some(task) = tasks::of_device(txn, shop, &device)? {
            // Asked again (a reconnect, a lost answer): the task it holds, as it is now.
            let text = lang.f(Msg::FlStillHold, &[&say_task(&task, lang)]);
            return with_task(
                ev.device,
                ok(&r.msg_id, text, task.next_line().map(step)),
                &task,
                lang,
            );
        }
        // Goods of held orders in a tote come first: they are off the ledger's on hand until
        // they are back (the shop sells fewer, a pick may find a bin short) and take bench
        // space; a put-back is a short walk.
        if let Some(mut task) = tasks::waiting(txn, shop)?.into_iter().next() {
            task.device = device.clone();
            tasks::save(txn, shop, &task)?;
            let next = task
                .next_line()
                .map(|l| say_step(l, lang))
                .unwrap_or_default();
            let text = lang.f(Msg::FlPutBackFirst, &[&task.tid, &next]);
            return with_task(
                ev.device,
                ok(&r.msg_id, text, task.next_line().map(step)),
                &task,
                lang,
            );
        }
        let mut skipped = Vec::new();
        loop {
            let Some(order) = tasks::next_order(txn, shop, &skipped)? else {
                return Ok(Outcome::answer(ok(
                    &r.msg_id,
                    lang.t(Msg::FlNoWork).to_owned(),
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
                return refused_or_store(&r.msg_id, e, lang);
            }
            if let Err(e) = w.move_to(order.tid, LocalState::Picking) {
                return refused_or_store(&r.msg_id, e, lang);
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
                feedback: Some(ok(&r.msg_id, say_task(&task, lang), first)),
                commands: vec![(ev.device.clone(), task_message(&task, lang))],
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
        let lang = self.lang;
        // Receiving, counting and the dock need no task.
        match s.mode {
            Mode::Receive => return self.receive(txn, ev, s),
            Mode::Count => return self.count(txn, ev, s),
            Mode::Ship => return self.ship(txn, ev, s),
            Mode::Pick | Mode::Pack => {}
        }
        let Some(mut task) = tasks::of_device(txn, shop, &device)? else {
            if s.mode == Mode::Pack {
                return self.pack_start(txn, ev, s);
            }
            return refuse(&s.msg_id, lang.t(Msg::FlNoTask).to_owned());
        };
        let wanted = match task.kind {
            TaskKind::Pick => Some(Mode::Pick),
            TaskKind::Pack => Some(Mode::Pack),
            TaskKind::PutBack => None,
        };
        if let Some(m) = wanted
            && m != s.mode
        {
            return Ok(Outcome::answer(error(
                &s.msg_id,
                lang.f(
                    Msg::FlOtherMode,
                    &[&mode_word(s.mode, lang), &say_task(&task, lang)],
                ),
                task.next_line().map(step),
            )));
        }
        if let Some(id) = &s.task_id
            && *id != task.task_id
        {
            // A scan for a task the device no longer holds: the current one again.
            return with_task(
                ev.device,
                error(
                    &s.msg_id,
                    lang.f(Msg::FlOldTask, &[id, &say_task(&task, lang)]),
                    task.next_line().map(step),
                ),
                &task,
                lang,
            );
        }
        let Some(order) = wms::orders::read_order(txn, &self.shop, task.tid)? else {
            return refuse(&s.msg_id, lang.f(Msg::FlOrderGone, &[&task.tid]));
        };
        if task.kind != TaskKind::PutBack && order.is_held() {
            return refuse(&s.msg_id, held_text(&order, lang));
        }
        if task.kind == TaskKind::Pack {
            // A merged parcel: a hold of any of its orders stops the packing.
            for t in tasks::orders_of(txn, shop, &task.task_id)? {
                if t != task.tid
                    && let Some(o) = wms::orders::read_order(txn, &self.shop, t)?
                    && o.is_held()
                {
                    return refuse(&s.msg_id, held_text(&o, lang));
                }
            }
        }
        if task.kind == TaskKind::Pick && order.version != task.order_version {
            // The order changed under the task (a line refunded and closed): plan again,
            // keeping what was scanned, and hand the new version out.
            if let Ok(lines) = tasks::plan(txn, shop, &order)? {
                replan(&mut task, lines, order.version);
                tasks::save(txn, shop, &task)?;
                return with_task(
                    ev.device,
                    error(
                        &s.msg_id,
                        lang.f(Msg::FlOrderChanged, &[&task.tid]),
                        task.next_line().map(step),
                    ),
                    &task,
                    lang,
                );
            }
        }
        if task.kind == TaskKind::Pack
            && s.code.trim().strip_prefix("pick-").unwrap_or(s.code.trim()) == task.tid.to_string()
        {
            return with_task(
                ev.device,
                ok(
                    &s.msg_id,
                    lang.f(Msg::FlPackingOrder, &[&task.tid, &say_task(&task, lang)]),
                    task.next_line().map(step),
                ),
                &task,
                lang,
            );
        }
        let qty = s.qty.unwrap_or(1).max(1);
        let Some(i) = task
            .lines
            .iter()
            .position(|l| l.left() > 0 && l.matches(&s.code))
        else {
            let next = task.next_line().map(step);
            let text = if task.lines.iter().any(|l| l.matches(&s.code)) {
                lang.f(Msg::FlDoneAlready, &[&echo(&s.code)])
            } else {
                let want = task
                    .next_line()
                    .map(|l| say_step(l, lang))
                    .unwrap_or_default();
                lang.f(Msg::FlWrongItem, &[&echo(&s.code), &task.tid, &want])
            };
            return Ok(Outcome::answer(error(&s.msg_id, text, next)));
        };
        let left = task.lines[i].left();
        if qty > left {
            return Ok(Outcome::answer(error(
                &s.msg_id,
                lang.f(Msg::FlTooMany, &[&left, &task.lines[i].code]),
                Some(step(&task.lines[i])),
            )));
        }
        task.lines[i].done += qty;
        let code = task.lines[i].code.clone();
        if task.left() > 0 {
            tasks::save(txn, shop, &task)?;
            let next = task.next_line();
            let want = next.map(|l| say_step(l, lang)).unwrap_or_default();
            let text = lang.f(Msg::FlScanOk, &[&code, &want]);
            return Ok(Outcome::answer(ok(&s.msg_id, text, next.map(step))));
        }
        task.state = TaskState::Done;
        tasks::save(txn, shop, &task)?;
        if task.kind == TaskKind::Pack {
            return self.pack_done(txn, ev, s, &task);
        }
        let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
        if task.kind == TaskKind::PutBack {
            // The goods are back in their bins: the ledger (and the shop) get them back.
            for l in &task.lines {
                match w.put_back(
                    &l.code,
                    i64::from(l.qty),
                    Some(task.tid),
                    &format!("put back from held order {}", task.tid),
                ) {
                    Ok(_) => {}
                    Err(WmsError::Store(e)) => return Err(e),
                    Err(other) => {
                        tracing::warn!(sku = %l.code, error = %other, "put-back not in the ledger")
                    }
                }
            }
        }
        let (to, text) = if task.kind == TaskKind::Pick {
            (LocalState::Picked, lang.f(Msg::FlPicked, &[&task.tid]))
        } else {
            (LocalState::PutBack, lang.f(Msg::FlAllBack, &[&task.tid]))
        };
        if order.state != to
            && let Err(e) = w.move_to(task.tid, to)
        {
            return refused_or_store(&s.msg_id, e, lang);
        }
        let events = w.finish()?;
        done(&s.msg_id, text, events)
    }

    fn short(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        s: &Short<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let shop = self.shop();
        let device = ev.device.to_string();
        let lang = self.lang;
        let Some(mut task) = tasks::of_device(txn, shop, &device)?
            .filter(|t| t.task_id == s.task_id && t.kind == TaskKind::Pick)
        else {
            return refuse(&s.msg_id, lang.f(Msg::FlShortNoTask, &[&s.task_id]));
        };
        let Some(line) = task.lines.iter().find(|l| l.matches(&s.code)) else {
            return refuse(
                &s.msg_id,
                lang.f(Msg::FlShortNotOnOrder, &[&echo(&s.code), &task.tid]),
            );
        };
        let code = line.code.clone();
        let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
        if let Err(e) = w.move_to(task.tid, LocalState::Exception) {
            return refused_or_store(&s.msg_id, e, lang);
        }
        task.state = TaskState::Short;
        tasks::save(txn, shop, &task)?;
        let events = w.finish()?;
        tracing::warn!(tid = task.tid, sku = %code, missing = s.qty, location = s.location.as_deref().unwrap_or(""), "short pick");
        done(
            &s.msg_id,
            lang.f(Msg::FlShortRecorded, &[&code, &task.tid]),
            events,
        )
    }
}

/// The ship flow needs goods out.
fn no_goods(re: &str, mode: Mode, lang: Lang) -> Outcome<wms::Event> {
    Outcome::answer(feedback(
        re,
        false,
        lang.f(Msg::FlNoGoods, &[&mode_word(mode, lang)]),
    ))
}

impl Flows {
    /// `receive`: the SKU scanned (barcode or code), `qty` units (1 when absent) onto on hand,
    /// audited in the ledger; the shop gets the units as a delta.
    fn receive(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        s: &Scan<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let lang = self.lang;
        let Some(sku) = wms::sku::by_scan(txn, self.shop(), &s.code)? else {
            return refuse(&s.msg_id, lang.f(Msg::FlNotSkuReceive, &[&echo(&s.code)]));
        };
        let qty = s.qty.unwrap_or(1);
        let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
        let on_hand = match w.receive(
            &sku.code,
            i64::from(qty),
            &format!("received by {}", ev.device),
        ) {
            Ok(n) => n,
            Err(e) => return refused_or_store(&s.msg_id, e, lang),
        };
        let events = w.finish()?;
        let text = match &sku.location {
            Some(loc) => lang.f(Msg::FlReceivedBin, &[&qty, &sku.code, &on_hand, loc]),
            None => lang.f(Msg::FlReceived, &[&qty, &sku.code, &on_hand]),
        };
        Ok(Outcome {
            feedback: Some(ok(
                &s.msg_id,
                text,
                Some(Step {
                    location: sku.location.clone(),
                    code: Some(sku.code.clone()),
                    qty: None,
                    tote: None,
                }),
            )),
            commands: Vec::new(),
            events,
        })
    }

    /// `count`: on hand of the SKU scanned is now `qty` (required: what was counted),
    /// audited; the shop gets the difference as a delta.
    fn count(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        s: &Scan<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let lang = self.lang;
        let Some(qty) = s.qty else {
            return refuse(&s.msg_id, lang.t(Msg::FlCountNeedsQty).to_owned());
        };
        let Some(sku) = wms::sku::by_scan(txn, self.shop(), &s.code)? else {
            return refuse(&s.msg_id, lang.f(Msg::FlNotSkuCount, &[&echo(&s.code)]));
        };
        let before = wms::sku::stock(txn, self.shop(), &sku.code)?.map_or(0, |r| r.on_hand);
        let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
        let on_hand = match w.count(
            &sku.code,
            i64::from(qty),
            &format!("counted by {}", ev.device),
        ) {
            Ok(n) => n,
            Err(e) => return refused_or_store(&s.msg_id, e, lang),
        };
        let events = w.finish()?;
        let diff = on_hand.saturating_sub(before);
        let text = if diff == 0 {
            lang.f(Msg::FlCountSame, &[&sku.code, &on_hand])
        } else {
            lang.f(
                Msg::FlCountDiff,
                &[&sku.code, &on_hand, &format!("{diff:+}")],
            )
        };
        done(&s.msg_id, text, events)
    }

    /// `ship` at the dock: the waybill number scanned finds its package; goods out's ship
    /// function (the one `wms-node ship` calls) checks every trade's holds, the carrier and
    /// the number, and ships every trade of the parcel in this transaction.
    fn ship(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        s: &Scan<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let lang = self.lang;
        let Some(goods) = &self.goods else {
            return Ok(no_goods(&s.msg_id, s.mode, lang));
        };
        let out_sid = s.code.trim();
        let Some(p) = wms::ship::package_of_waybill(txn, self.shop(), out_sid)? else {
            if let Some(old) = wms::ship::package_of_any_waybill(txn, self.shop(), out_sid)? {
                return refuse(&s.msg_id, self.voided_text(txn, out_sid, &old)?);
            }
            return refuse(&s.msg_id, lang.f(Msg::FlWaybillForeign, &[&echo(out_sid)]));
        };
        if p.shipped.is_some() {
            return Ok(Outcome::answer(ok(
                &s.msg_id,
                lang.f(Msg::FlShippedAlready, &[&out_sid, &p.id]),
                None,
            )));
        }
        let Some(wb) = p.live_waybill().cloned() else {
            return refuse(&s.msg_id, lang.f(Msg::FlNoLiveWaybill, &[&p.id]));
        };
        let tids = p.tids();
        let Some(&tid) = tids.first() else {
            return refuse(&s.msg_id, lang.f(Msg::FlPackageEmpty, &[&p.id]));
        };
        // Goods out's ship refuses a held order in its own words; the dock is told in its
        // language (the same check: the parcel's first trade).
        if let Some(o) = wms::orders::read_order(txn, &self.shop, tid)?
            && o.is_held()
        {
            let why = say::reasons_in_full(&o, lang);
            return refuse(&s.msg_id, lang.f(Msg::FlDockHeld, &[&tid, &why]));
        }
        let req = wms::ship::ShipRequest {
            tid,
            company_code: wb.real_cp_code.clone(),
            out_sid: out_sid.to_owned(),
            oids: if p.merged { Vec::new() } else { p.oids_of(tid) },
        };
        let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
        let shipment = match w.ship(&req, &goods.outbox, goods.merge) {
            Ok(x) => x,
            Err(e) => return refused_or_store(&s.msg_id, e, lang),
        };
        let events = w.finish()?;
        let orders = shipment
            .ops
            .iter()
            .map(|o| o.tid.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        done(
            &s.msg_id,
            lang.f(Msg::FlShipped, &[&orders, &wb.real_cp_code, &out_sid]),
            events,
        )
    }

    /// `pack`, no task yet: the scan names the order (its tid, or its pick task id from the
    /// pick list). A picked order gets a pack task of every item of its parcel (a parcel
    /// merged by receiver holds the other trades' items too); an order packed already gets
    /// its label printed again (the same waybill).
    fn pack_start(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        s: &Scan<String>,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let lang = self.lang;
        let Some(goods) = &self.goods else {
            return Ok(no_goods(&s.msg_id, s.mode, lang));
        };
        let code = s.code.trim();
        let Some(tid) = code
            .strip_prefix("pick-")
            .unwrap_or(code)
            .parse::<u64>()
            .ok()
        else {
            return refuse(&s.msg_id, lang.f(Msg::FlNotOrder, &[&echo(code)]));
        };
        let Some(order) = wms::orders::read_order(txn, &self.shop, tid)? else {
            return refuse(&s.msg_id, lang.f(Msg::FlNoOrder, &[&tid]));
        };
        if let Some(text) = stop_text(txn, &self.shop, &order, lang)? {
            return refuse(&s.msg_id, text);
        }
        if matches!(order.state, LocalState::Packed | LocalState::Labelled) {
            return self.reprint(txn, ev, s, tid);
        }
        if !matches!(order.state, LocalState::Picked | LocalState::Verified) {
            let state = lang.order_word(order.state.as_str());
            return refuse(&s.msg_id, lang.f(Msg::FlNotPicked, &[&tid, &state]));
        }
        if let Some(t) = tasks::of_order(txn, self.shop(), tid)? {
            return refuse(
                &s.msg_id,
                lang.f(Msg::FlBeingWorked, &[&tid, &t.device, &t.task_id]),
            );
        }
        let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
        let package = match w.package(tid, None, &[], goods.merge) {
            Ok(p) => p,
            Err(e) => return refused_or_store(&s.msg_id, e, lang),
        };
        let mut lines: Vec<TaskLine> = Vec::new();
        for t in package.tids() {
            let Some(o) = wms::orders::read_order(txn, &self.shop, t)? else {
                continue;
            };
            // Refused with the parcel kept (and its merge logged): the next scan finds it.
            if t != tid && !matches!(o.state, LocalState::Picked | LocalState::Verified) {
                let state = lang.order_word(o.state.as_str());
                return refuse_after(
                    w,
                    &s.msg_id,
                    lang.f(Msg::FlSharesParcelState, &[&t, &tid, &state]),
                );
            }
            if t != tid
                && let Some(x) = tasks::of_order(txn, self.shop(), t)?
            {
                return refuse_after(
                    w,
                    &s.msg_id,
                    lang.f(
                        Msg::FlSharesParcelWorked,
                        &[&t, &tid, &x.device, &x.task_id],
                    ),
                );
            }
            let Ok(planned) = tasks::plan(txn, self.shop(), &o)? else {
                return refuse_after(w, &s.msg_id, lang.f(Msg::FlNotInMaster, &[&t]));
            };
            for l in planned {
                match lines.iter_mut().find(|x| x.code == l.code) {
                    Some(x) => x.qty = x.qty.saturating_add(l.qty),
                    None => lines.push(l),
                }
            }
        }
        let events = w.finish()?;
        let task = TaskRecord {
            task_id: TaskRecord::pack_id(tid),
            kind: TaskKind::Pack,
            tid,
            device: ev.device.to_string(),
            version: 1,
            order_version: order.version,
            lines,
            state: TaskState::Open,
            created_ms: i64::try_from(ev.now_ms).unwrap_or(i64::MAX),
        };
        tasks::save(txn, self.shop(), &task)?;
        // A hold of any order of the parcel reaches this station.
        for t in package.tids() {
            if t != tid {
                tasks::join(txn, self.shop(), t, &task.task_id)?;
            }
        }
        let text = if package.tids().len() > 1 {
            let others = package.tids().len() - 1;
            lang.f(Msg::FlPackMerged, &[&tid, &others, &task.left()])
        } else {
            lang.f(Msg::FlPackUnits, &[&tid, &task.left()])
        };
        Ok(Outcome {
            feedback: Some(ok(&s.msg_id, text, task.next_line().map(step))),
            commands: vec![(ev.device.clone(), task_message(&task, lang))],
            events,
        })
    }

    /// Every item verified: the parcel's orders are packed and its label queued for the
    /// station's printer (the labeller asks for the waybill outside this transaction).
    fn pack_done(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        s: &Scan<String>,
        task: &TaskRecord,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let tid = task.tid;
        let lang = self.lang;
        let package = wms::ship::packages_of(txn, self.shop(), tid)?
            .into_iter()
            .find(|p| p.is_live());
        let tids = package
            .as_ref()
            .map(|p| p.tids())
            .unwrap_or_else(|| vec![tid]);
        let mut w = Wms::new(txn, &self.shop, when(ev.now_ms));
        for t in &tids {
            let Some(o) = wms::orders::read_order(txn, &self.shop, *t)? else {
                continue;
            };
            for to in [LocalState::Verified, LocalState::Packed] {
                let now = wms::orders::read_order(txn, &self.shop, *t)?.map(|o| o.state);
                if now.is_some_and(|s| s != to && s.may_move_to(to))
                    && let Err(e) = w.move_to(o.tid, to)
                {
                    return refused_or_store(&s.msg_id, e, lang);
                }
            }
        }
        let station = labels::station_of(&self.stations, ev.device).cloned();
        let text = match (&station, &package) {
            (Some(st), Some(p)) => {
                labels::queue(txn, self.shop(), &p.id, tids.clone(), st, ev.now_ms)?;
                lang.f(Msg::FlPackedPrints, &[&tid, &st.printer])
            }
            _ => lang.f(Msg::FlPackedNoPrinter, &[&tid]),
        };
        let events = w.finish()?;
        done(&s.msg_id, text, events)
    }

    /// The order was packed before: its label again, on this station's printer.
    fn reprint(
        &self,
        txn: &WriteTransaction,
        ev: &Event<'_>,
        s: &Scan<String>,
        tid: u64,
    ) -> Result<Outcome<wms::Event>, StoreError> {
        let lang = self.lang;
        let Some(st) = labels::station_of(&self.stations, ev.device).cloned() else {
            return Ok(Outcome::answer(error(
                &s.msg_id,
                lang.f(Msg::FlPackedBeforeNoPrinter, &[&tid]),
                None,
            )));
        };
        let Some(p) = wms::ship::packages_of(txn, self.shop(), tid)?
            .into_iter()
            .find(|p| p.is_live())
        else {
            return refuse(&s.msg_id, lang.f(Msg::FlNoParcel, &[&tid]));
        };
        labels::queue(txn, self.shop(), &p.id, p.tids(), &st, ev.now_ms)?;
        // The labeller is woken by a pack; a reprint is due at once and found within a second.
        Ok(Outcome::answer(ok(
            &s.msg_id,
            lang.f(Msg::FlLabelAgain, &[&tid, &st.printer]),
            None,
        )))
    }
}

impl Flows {
    /// The dock scanned a waybill that was voided: why, and what to do with each order the
    /// parcel held (its goods back to their bins, or a new label at a packing station).
    fn voided_text(
        &self,
        txn: &WriteTransaction,
        out_sid: &str,
        p: &wms::ship::Package,
    ) -> Result<String, StoreError> {
        let lang = self.lang;
        let members = p.tids();
        let mut tids = p.left_trades();
        tids.extend(&members);
        tids.sort_unstable();
        tids.dedup();
        let mut what = Vec::new();
        for t in tids {
            let Some(o) = wms::orders::read_order(txn, &self.shop, t)? else {
                continue;
            };
            if let Some(text) = stop_text(txn, &self.shop, &o, lang)? {
                what.push(text);
            } else if members.contains(&t)
                && !o.state.gone()
                && !o.state.is_final()
                && o.state != LocalState::PutBack
            {
                what.push(lang.f(Msg::FlNewLabel, &[&t]));
            }
        }
        let sep = lang.t(Msg::PartsSep);
        let what = if what.is_empty() {
            String::new()
        } else {
            format!("{sep}{}", what.join(sep))
        };
        Ok(lang.f(Msg::FlVoided, &[&out_sid, &what]))
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

/// A refusal of `wms/` becomes the device's error (its words, which `wms/` writes in
/// English, framed in `lang`); a store failure fails the event (it is answered "not
/// recorded, scan again" and applied afresh when re-sent).
fn refused_or_store(re: &str, e: WmsError, lang: Lang) -> Result<Outcome<wms::Event>, StoreError> {
    match e {
        WmsError::Store(e) => Err(e),
        other => Ok(Outcome::answer(error(
            re,
            lang.f(Msg::FlRefused, &[&other]),
            None,
        ))),
    }
}

/// `STOP: order 123 is on hold (refund: …): put its goods back with task putback-123
/// (scanner/s1 has it)`: what to do with the goods of an order whose put-back task is open.
fn put_back_text(order: &wms::OrderRecord, task: &TaskRecord, lang: Lang) -> String {
    let who = if task.device.is_empty() {
        lang.t(Msg::FlPutBackAnyScanner).to_owned()
    } else {
        lang.f(Msg::FlPutBackHasIt, &[&task.device])
    };
    let reasons = say::reasons_in_full(order, lang);
    if reasons.is_empty() {
        lang.f(Msg::FlPutBackWasHeld, &[&order.tid, &task.task_id, &who])
    } else {
        lang.f(
            Msg::FlPutBackHeld,
            &[&order.tid, &reasons, &task.task_id, &who],
        )
    }
}

/// The refusal of a scan of `order` when it is held, or its goods are going back.
fn stop_text(
    txn: &WriteTransaction,
    shop: &ShopId,
    order: &wms::OrderRecord,
    lang: Lang,
) -> Result<Option<String>, StoreError> {
    if let Some(task) = tasks::of_order(txn, shop.as_str(), order.tid)?
        .filter(|t| t.kind == TaskKind::PutBack && t.tid == order.tid)
    {
        return Ok(Some(put_back_text(order, &task, lang)));
    }
    Ok(order.is_held().then(|| held_text(order, lang)))
}
