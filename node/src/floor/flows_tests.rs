//! The flows as state machines over a real store file, without a broker: each test feeds
//! decoded device messages to [`Flows`] inside store writes, as the pipeline does.

use super::devices::DeviceId;
use super::flow::{Event, FlowHandler, Outcome};
use super::flows::{Flows, Goods};
use super::holds;
use super::labels::{self, Label, LabelError, LabelFormat, LabelSource, LabelState, Station};
use crate::alert::Alerts;
use crate::outbox::{Outbox, OutboxOptions};
use crate::status::i18n::Lang;
use crate::store::{Store, StoreOptions};
use crate::taobao::outbox::TaobaoOp;
use crate::taobao::types::Trade;
use crate::wms::carriers::Carrier;
use crate::wms::ship::{WaybillPlan, WaybillRecord};
use crate::wms::sku::parse_skus;
use crate::wms::tasks;
use crate::wms::{self, LocalState, Rules, ShopId, Wms};
use firmware_bridge::proto::json;
use firmware_bridge::proto::{Channel, DeviceClass, Downlink, Feedback, Hold, Task, Uplink};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const NOW: u64 = 1_796_000_000_000;
const TID_A: u64 = 3_100_000_000_000_001;
const TID_B: u64 = 3_100_000_000_000_002;

struct T {
    store: Store,
    flows: Flows,
    outbox: Outbox<TaobaoOp>,
    lang: Lang,
    _dir: tempfile::TempDir,
}

const SKUS: &str = "sku,barcode,name,on_hand,num_iid,sku_id,location\n\
                    RED-M,6900000000011,T恤 红 M,40,,,B-02-01\n\
                    BLK-M,6900000000013,T恤 黑 M,30,,,A-01-04\n";

fn trade(tid: u64, paid: &str, lines: Value) -> Trade {
    serde_json::from_value(json!({
        "tid": tid, "status": "WAIT_SELLER_SEND_GOODS", "type": "fixed",
        "created": "2026-12-01 07:59:00", "pay_time": format!("2026-12-01 {paid}"),
        "modified": "2026-12-01 09:30:00",
        "receiver_state": "浙江省", "receiver_city": "杭州市", "receiver_district": "余杭区",
        "oaid": "OAID-1",
        "orders": lines,
    }))
    .unwrap()
}

fn line(oid: u64, code: &str, num: u32) -> Value {
    json!({"oid": oid, "num_iid": 600000000001_u64, "sku_id": format!("{}", oid % 100),
           "outer_sku_id": code, "num": num, "status": "WAIT_SELLER_SEND_GOODS",
           "refund_status": "NO_REFUND"})
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(NOW as i64).unwrap()
}

/// A store with the SKU master and two released orders: A (paid 09:00: 1 red, 2 black) and B
/// (paid 08:00, so due first: 1 red), both of one receiver; parcels are not merged.
async fn setup() -> T {
    setup_with(false).await
}

/// [`setup`], merging parcels of one receiver when `merge`; the carrier list has YTO, and
/// scanner `pk1` packs at the station of printer `lp1` (Cainiao).
async fn setup_with(merge: bool) -> T {
    setup_in(merge, Lang::En).await
}

/// [`setup_with`], the floor speaking `lang`.
async fn setup_in(merge: bool, lang: Lang) -> T {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path().join("s.redb")), Alerts::new()).unwrap();
    let rows = parse_skus(SKUS.as_bytes()).unwrap();
    let trades = vec![
        trade(
            TID_A,
            "09:00:00",
            json!([
                line(TID_A * 10 + 1, "RED-M", 1),
                line(TID_A * 10 + 2, "BLK-M", 2)
            ]),
        ),
        trade(TID_B, "08:00:00", json!([line(TID_B * 10 + 1, "RED-M", 1)])),
    ];
    wms::write(&store, move |txn| {
        let mut w = Wms::new(txn, &ShopId::main(), now());
        w.import_skus(&rows, &[], false, &Rules::default())?;
        for t in &trades {
            w.apply_trade(t, &Rules::default())?;
        }
        w.finish()?;
        Ok(())
    })
    .await
    .unwrap();
    let carriers = vec![Carrier {
        code: "YTO".into(),
        name: "圆通".into(),
        reg_mail_no: Some("^YT\\d{13}$".into()),
    }];
    store
        .write(move |txn| crate::wms::carriers::replace(txn, &carriers))
        .await
        .unwrap();
    let outbox = Outbox::new(store.clone(), OutboxOptions::default(), Alerts::new());
    let flows = Flows::new(ShopId::main())
        .with_goods(Goods {
            outbox: outbox.clone(),
            merge,
        })
        .with_stations(vec![Station {
            scanner: "pk1".into(),
            printer: "lp1".into(),
            format: LabelFormat::Cainiao,
        }])
        .with_lang(lang);
    T {
        store,
        flows,
        outbox,
        lang,
        _dir: dir,
    }
}

fn scanner(id: &str) -> DeviceId {
    DeviceId::new(DeviceClass::Scanner, id).unwrap()
}

impl T {
    /// Feeds one message (JSON, decoded as the pipeline does) from `device`.
    async fn send(&self, device: &DeviceId, channel: Channel, msg: Value) -> Outcome<wms::Event> {
        let bytes = serde_json::to_vec(&msg).unwrap();
        let decoded: Uplink<String> = json::decode_uplink(channel, &bytes).unwrap();
        let (flows, device) = (self.flows.clone(), device.clone());
        self.store
            .write(move |txn| {
                flows.handle(
                    txn,
                    &Event {
                        device: &device,
                        now_ms: NOW,
                        msg: &decoded,
                    },
                )
            })
            .await
            .unwrap()
    }

    async fn request(&self, device: &DeviceId, n: u32) -> Outcome<wms::Event> {
        self.send(
            device,
            Channel::Evt,
            json!({"type":"request_task","v":1,"msg_id":format!("r{n}"),"ts":"2026-12-01T10:00:00Z","mode":"pick"}),
        )
        .await
    }

    async fn scan(
        &self,
        device: &DeviceId,
        n: u32,
        code: &str,
        task: Option<&str>,
    ) -> Outcome<wms::Event> {
        let mut m = json!({"type":"scan","v":1,"msg_id":format!("s{n}"),"ts":"2026-12-01T10:00:00Z",
                           "code":code,"symbology":"ean13","mode":"pick"});
        if let Some(t) = task {
            m["task_id"] = json!(t);
        }
        self.send(device, Channel::Evt, m).await
    }

    fn order(&self, tid: u64) -> wms::OrderRecord {
        self.store
            .read(|r| wms::orders::read_order(r, &ShopId::main(), tid))
            .unwrap()
            .unwrap()
    }

    /// Runs a `wms/` operation (an operator's hold or release) as its own write.
    async fn op(&self, f: impl Fn(&mut Wms<'_>) -> Result<(), wms::WmsError> + Send + 'static) {
        wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &ShopId::main(), now());
            f(&mut w)?;
            w.finish()?;
            Ok(())
        })
        .await
        .unwrap();
    }

    async fn held(&self, tid: u64) -> Vec<(DeviceId, Downlink<String>)> {
        self.held_effects(tid).await.0
    }

    /// What the floor does when `tid` goes on hold: commands, and the events of its changes.
    async fn held_effects(&self, tid: u64) -> super::flow::Effects<wms::Event> {
        let flows = self.flows.clone();
        self.store
            .write(move |txn| flows.held(txn, tid, NOW))
            .await
            .unwrap()
    }

    /// The sweep of holds owed at start.
    async fn sweep(&self) -> super::flow::Effects<wms::Event> {
        let flows = self.flows.clone();
        self.store
            .write(move |txn| flows.sweep(txn, NOW))
            .await
            .unwrap()
    }

    async fn online(&self, device: &DeviceId) -> Vec<(DeviceId, Downlink<String>)> {
        let (flows, device) = (self.flows.clone(), device.clone());
        self.store
            .write(move |txn| flows.online(txn, &device))
            .await
            .unwrap()
    }
}

fn fb(o: &Outcome<wms::Event>) -> (bool, String) {
    let f = o.feedback.as_ref().expect("a feedback");
    (f.ok, f.text.clone())
}

fn task_of(o: &Outcome<wms::Event>) -> firmware_bridge::proto::Task<String> {
    o.commands
        .iter()
        .find_map(|(_, c)| match c {
            Downlink::Task(t) => Some(t.clone()),
            _ => None,
        })
        .expect("a task command")
}

#[tokio::test]
async fn pick_hands_out_the_earliest_deadline_in_walking_order_and_ends_picked() {
    let t = setup().await;
    let d = scanner("s1");
    let o = t.request(&d, 1).await;
    let task = task_of(&o);
    // B was paid earlier: its deadline is first.
    assert_eq!(task.tid.as_deref(), Some(TID_B.to_string().as_str()));
    assert_eq!(t.order(TID_B).state, LocalState::Picking);
    assert!(o.events.iter().any(|e| matches!(e, wms::Event::StateChanged { tid, to: LocalState::Picking, .. } if *tid == TID_B)));
    // A second scanner gets the other order, its lines in walking order (A-01 before B-02).
    let d2 = scanner("s2");
    let o = t.request(&d2, 1).await;
    let task2 = task_of(&o);
    assert_eq!(task2.tid.as_deref(), Some(TID_A.to_string().as_str()));
    let next = task2.next.as_ref().unwrap();
    assert_eq!(next.location.as_deref(), Some("A-01-04"));
    assert_eq!(next.code.as_deref(), Some("BLK-M"));
    assert_eq!(next.qty, Some(2));
    assert_eq!(task2.remaining, Some(3));

    // Wrong item: error beep, the step stays.
    let o = t.scan(&d2, 1, "6900000000099", Some(&task2.task_id)).await;
    let (ok, text) = fb(&o);
    assert!(!ok && text.starts_with("wrong item"), "{text}");
    assert_eq!(
        o.feedback.unwrap().next.unwrap().code.as_deref(),
        Some("BLK-M")
    );
    // Too many at once.
    let o = t
        .send(
            &d2,
            Channel::Evt,
            json!({"type":"scan","v":1,"msg_id":"q","ts":"2026-12-01T10:00:00Z",
            "code":"6900000000013","symbology":"ean13","mode":"pick","qty":3}),
        )
        .await;
    assert!(fb(&o).1.starts_with("too many"), "{}", fb(&o).1);
    // Two black by barcode, one red by code (out of walking order is fine).
    let o = t.scan(&d2, 2, "6900000000013", None).await;
    assert!(fb(&o).0);
    let o = t.scan(&d2, 3, "RED-M", None).await;
    assert!(fb(&o).0);
    assert_eq!(
        o.feedback
            .as_ref()
            .unwrap()
            .next
            .as_ref()
            .unwrap()
            .code
            .as_deref(),
        Some("BLK-M")
    );
    assert_eq!(t.order(TID_A).state, LocalState::Picking);
    let o = t.scan(&d2, 4, "6900000000013", None).await;
    let (ok, text) = fb(&o);
    assert!(ok && text.contains("picked"), "{text}");
    assert_eq!(t.order(TID_A).state, LocalState::Picked);
    // The scanner holds nothing now, and there is no more work.
    let o = t.scan(&d2, 5, "RED-M", None).await;
    assert!(!fb(&o).0);
    let o = t.request(&d2, 2).await;
    assert!(fb(&o).0 && fb(&o).1.starts_with("no work"), "{}", fb(&o).1);
    assert!(o.commands.is_empty());
}

#[tokio::test]
async fn asking_again_gives_the_same_task_and_an_old_task_id_gets_the_current_one() {
    let t = setup().await;
    let d = scanner("s1");
    let first = task_of(&t.request(&d, 1).await);
    let again = t.request(&d, 2).await;
    assert_eq!(
        task_of(&again),
        first,
        "after a reconnect: the task it holds"
    );
    let o = t.scan(&d, 1, "RED-M", Some("pick-1")).await;
    let (ok, text) = fb(&o);
    assert!(!ok && text.starts_with("old task"), "{text}");
    assert_eq!(task_of(&o).task_id, first.task_id);
}

#[tokio::test]
async fn a_hold_reaches_the_device_until_acked_and_picked_goods_become_a_put_back_task() {
    let t = setup().await;
    let d = scanner("s1");
    let task = task_of(&t.request(&d, 1).await);
    assert_eq!(task.tid.as_deref(), Some(TID_B.to_string().as_str()));
    // B has one unit: this scan finishes it. Then A, one of its three units picked.
    let (ok, text) = fb(&t.scan(&d, 1, "RED-M", None).await);
    assert!(ok && text.contains("picked"), "{text}");
    let task = task_of(&t.request(&d, 2).await);
    assert_eq!(task.tid.as_deref(), Some(TID_A.to_string().as_str()));
    assert!(fb(&t.scan(&d, 2, "BLK-M", None).await).0);

    // The operator holds A: the device holding its task gets a hold, once.
    t.op(|w| w.hold(TID_A, "buyer called").map(|_| ())).await;
    let cmds = t.held(TID_A).await;
    assert_eq!(cmds.len(), 1);
    let (to, Downlink::Hold(h)) = &cmds[0] else {
        panic!("not a hold: {cmds:?}")
    };
    assert_eq!(to, &d);
    assert_eq!(h.tid, TID_A.to_string());
    assert_eq!(h.action, "put_back");
    assert_eq!(h.reason, "operator");
    assert!(
        t.held(TID_A).await.is_empty(),
        "the same hold is not sent twice"
    );
    // Scans of the held order are refused with the reason.
    let o = t.scan(&d, 3, "BLK-M", None).await;
    let (ok, text) = fb(&o);
    assert!(
        !ok && text.starts_with("STOP") && text.contains("operator"),
        "{text}"
    );
    // Reconnect: sent again, until acknowledged.
    let again = t.online(&d).await;
    assert_eq!(again.len(), 1);
    assert!(matches!(&again[0].1, Downlink::Hold(x) if x.hold_id == h.hold_id));
    let o = t.ack(&d, &h.hold_id).await;
    assert!(o.feedback.is_none());
    let put = task_of(&o);
    assert_eq!(put.task_id, format!("putback-{TID_A}"));
    assert_eq!(put.remaining, Some(1), "one unit was picked");
    assert_eq!(
        put.next.as_ref().unwrap().location.as_deref(),
        Some("A-01-04")
    );
    assert!(
        t.online(&d).await.is_empty(),
        "acknowledged: not sent again"
    );
    let n = t.store.write(holds::count).await.unwrap();
    assert_eq!(n, 0);
    // The put-back: the unit back in its bin, the order put back.
    let o = t.scan(&d, 4, "RED-M", None).await;
    assert!(fb(&o).1.starts_with("wrong item"), "{}", fb(&o).1);
    let o = t.scan(&d, 5, "6900000000013", None).await;
    let (ok, text) = fb(&o);
    assert!(ok && text.contains("back in its bin"), "{text}");
    assert_eq!(t.order(TID_A).state, LocalState::PutBack);
    // A second ack changes nothing.
    let o = t.ack(&d, &h.hold_id).await;
    assert!(o.commands.is_empty());

    // Released again, the order is picked afresh.
    t.op(|w| w.release(TID_A).map(|_| ())).await;
    let task = task_of(&t.request(&d, 3).await);
    assert_eq!(task.tid.as_deref(), Some(TID_A.to_string().as_str()));
    assert_eq!(task.remaining, Some(3));
    assert_eq!(t.order(TID_A).state, LocalState::Picking);
}

#[tokio::test]
async fn a_hold_with_nothing_picked_ends_the_task_without_a_put_back() {
    let t = setup().await;
    let d = scanner("s1");
    let task = task_of(&t.request(&d, 1).await);
    let tid: u64 = task.tid.unwrap().parse().unwrap();
    t.op(move |w| w.hold(tid, "check stock").map(|_| ())).await;
    let cmds = t.held(tid).await;
    let Downlink::Hold(h) = &cmds[0].1 else {
        panic!("{cmds:?}")
    };
    assert_eq!(h.action, "stop");
    let o = t.ack(&d, &h.hold_id).await;
    assert!(o.commands.is_empty());
    assert_eq!(t.order(tid).state, LocalState::PutBack);
    // The device is free: it gets the other order.
    let next = task_of(&t.request(&d, 2).await);
    assert_ne!(next.tid.as_deref(), Some(tid.to_string().as_str()));
}

#[tokio::test]
async fn a_hold_lifted_before_the_ack_lets_the_device_carry_on() {
    let t = setup().await;
    let d = scanner("s1");
    let task = task_of(&t.request(&d, 1).await);
    let tid: u64 = task.tid.clone().unwrap().parse().unwrap();
    t.op(move |w| w.hold(tid, "wait").map(|_| ())).await;
    let cmds = t.held(tid).await;
    let Downlink::Hold(h) = &cmds[0].1 else {
        panic!("{cmds:?}")
    };
    t.op(move |w| w.release(tid).map(|_| ())).await;
    let o = t.ack(&d, &h.hold_id).await;
    assert_eq!(task_of(&o).task_id, task.task_id);
    assert_eq!(t.order(tid).state, LocalState::Picking);
}

#[tokio::test]
async fn a_short_sends_the_order_to_the_exception_desk() {
    let t = setup().await;
    let d = scanner("s1");
    let task = task_of(&t.request(&d, 1).await);
    let tid: u64 = task.tid.clone().unwrap().parse().unwrap();
    let o = t
        .send(
            &d,
            Channel::Evt,
            json!({"type":"short","v":1,"msg_id":"x","ts":"2026-12-01T10:00:00Z",
            "task_id": task.task_id, "code":"RED-M","qty":1,"location":"B-02-01"}),
        )
        .await;
    let (ok, text) = fb(&o);
    assert!(ok && text.contains("exception desk"), "{text}");
    assert_eq!(t.order(tid).state, LocalState::Exception);
    let none = t
        .store
        .write(move |txn| tasks::of_order(txn, "main", tid))
        .await
        .unwrap();
    assert!(none.is_none());
}

#[tokio::test]
async fn without_goods_out_pack_and_ship_say_so_and_record_nothing() {
    let mut t = setup().await;
    t.flows = Flows::new(ShopId::main());
    let d = scanner("s1");
    for mode in ["pack", "ship"] {
        let o = t
            .scan_in(&d, &format!("m-{mode}"), &TID_A.to_string(), mode)
            .await;
        let (ok, text) = fb(&o);
        assert!(
            !ok && text.contains(mode) && text.contains("not set up"),
            "{text}"
        );
    }
    assert_eq!(t.order(TID_A).state, LocalState::Released);
}

fn scan_msg(msg_id: &str, code: &str, mode: &str, qty: Option<u32>) -> Value {
    let mut m = json!({"type":"scan","v":1,"msg_id":msg_id,"ts":"2026-12-01T10:00:00Z",
                       "code":code,"symbology":"code128","mode":mode});
    if let Some(q) = qty {
        m["qty"] = json!(q);
    }
    m
}

impl T {
    fn on_hand(&self, sku: &str) -> i64 {
        self.store
            .read(|r| crate::wms::stock::avail(r, ShopId::MAIN, sku))
            .unwrap()
            .on_hand
    }

    fn moves(&self, sku: &str) -> Vec<crate::wms::moves::Move> {
        self.store
            .read(|r| crate::wms::moves::read(r, Some(sku), 100))
            .unwrap()
    }

    /// Picks order `tid` to the end with scanner `d` (it must be the next order out).
    async fn pick(&self, d: &DeviceId, tid: u64, n: u32) {
        let task = task_of(&self.request(d, n).await);
        assert_eq!(task.tid.as_deref(), Some(tid.to_string().as_str()));
        let mut i = 0;
        while let Some(code) = {
            let t = self
                .store
                .write({
                    let dev = d.to_string();
                    move |txn| tasks::of_device(txn, "main", &dev)
                })
                .await
                .unwrap();
            t.and_then(|t| t.next_line().map(|l| l.barcode.clone()))
        } {
            i += 1;
            let o = self.scan(d, 1000 * n + i, &code, None).await;
            assert!(fb(&o).0, "{}", fb(&o).1);
        }
        assert_eq!(self.order(tid).state, LocalState::Picked);
    }

    /// Packs order `tid` at station scanner `pk1`: the order, then every item.
    async fn pack(&self, tid: u64) -> Outcome<wms::Event> {
        let d = scanner("pk1");
        let o = self
            .scan_in(&d, &format!("pk-{tid}"), &tid.to_string(), "pack")
            .await;
        assert!(fb(&o).0, "{}", fb(&o).1);
        let task = task_of(&o);
        assert_eq!(task.mode, firmware_bridge::proto::Mode::Pack);
        let mut last = o;
        let mut i = 0;
        while let Some(code) = {
            let t = self
                .store
                .write(move |txn| tasks::of_device(txn, "main", "scanner/pk1"))
                .await
                .unwrap();
            t.and_then(|t| t.next_line().map(|l| l.code.clone()))
        } {
            i += 1;
            last = self
                .scan_in(&d, &format!("pk-{tid}-{i}"), &code, "pack")
                .await;
            assert!(fb(&last).0, "{}", fb(&last).1);
        }
        last
    }
}

#[tokio::test]
async fn receive_and_count_move_the_ledger_with_an_audit_trail() {
    let t = setup().await;
    let d = scanner("rcv");
    // By barcode, 5 units.
    let o = t
        .send(
            &d,
            Channel::Evt,
            scan_msg("rc-1", "6900000000011", "receive", Some(5)),
        )
        .await;
    let (ok, text) = fb(&o);
    assert!(
        ok && text.contains("RED-M") && text.contains("on hand 45"),
        "{text}"
    );
    assert_eq!(
        o.feedback
            .as_ref()
            .unwrap()
            .next
            .as_ref()
            .unwrap()
            .location
            .as_deref(),
        Some("B-02-01")
    );
    assert!(
        o.events
            .iter()
            .any(|e| matches!(e, wms::Event::StockMoved { sku, delta: 5, .. } if sku == "RED-M"))
    );
    assert_eq!(t.on_hand("RED-M"), 45);
    // By code, one unit when no qty.
    assert!(fb(&t.scan_in(&d, "rc-2", "RED-M", "receive").await).0);
    assert_eq!(t.on_hand("RED-M"), 46);
    let m = &t.moves("RED-M")[0];
    assert_eq!(
        (m.kind, m.delta, m.on_hand),
        (crate::wms::moves::MoveKind::Receive, 1, 46)
    );
    assert_eq!(m.reason, "received by scanner/rcv");
    // A count sets the figure.
    let o = t
        .send(
            &d,
            Channel::Evt,
            scan_msg("ct-1", "6900000000013", "count", Some(28)),
        )
        .await;
    let (ok, text) = fb(&o);
    assert!(ok && text.contains("-2 against the record"), "{text}");
    assert_eq!(t.on_hand("BLK-M"), 28);
    let m = &t.moves("BLK-M")[0];
    assert_eq!(
        (m.kind, m.delta, m.on_hand),
        (crate::wms::moves::MoveKind::Count, -2, 28)
    );
    // The same figure again: audited, nothing moves.
    let (ok, text) = fb(&t
        .send(
            &d,
            Channel::Evt,
            scan_msg("ct-2", "BLK-M", "count", Some(28)),
        )
        .await);
    assert!(ok && text.contains("as on record"), "{text}");
    assert_eq!(t.moves("BLK-M").len(), 3, "import, count, count");
    // Refusals name the problem and record nothing.
    let (ok, text) = fb(&t.scan_in(&d, "ct-3", "BLK-M", "count").await);
    assert!(!ok && text.contains("needs qty"), "{text}");
    let (ok, text) = fb(&t
        .send(
            &d,
            Channel::Evt,
            scan_msg("rc-3", "999", "receive", Some(2)),
        )
        .await);
    assert!(!ok && text.contains("no SKU"), "{text}");
    assert_eq!(t.on_hand("BLK-M"), 28);
}

#[tokio::test]
async fn a_put_back_takes_picked_units_off_the_shelf_until_they_are_scanned_back() {
    let t = setup().await;
    let d = scanner("s1");
    t.pick(&d, TID_B, 1).await;
    let task = task_of(&t.request(&d, 2).await);
    assert_eq!(task.tid.as_deref(), Some(TID_A.to_string().as_str()));
    assert!(fb(&t.scan(&d, 2, "BLK-M", None).await).0);
    assert!(fb(&t.scan(&d, 3, "BLK-M", None).await).0);
    t.op(|w| w.hold(TID_A, "buyer called").map(|_| ())).await;
    let cmds = t.held(TID_A).await;
    let Downlink::Hold(h) = &cmds[0].1 else {
        panic!("{cmds:?}")
    };
    assert_eq!(t.on_hand("BLK-M"), 30);
    let o = t.ack(&d, &h.hold_id).await;
    assert_eq!(task_of(&o).remaining, Some(2));
    // In the tote: off the shelf's figure.
    assert_eq!(t.on_hand("BLK-M"), 28);
    assert!(
        o.events
            .iter()
            .any(|e| matches!(e, wms::Event::StockMoved { sku, delta: -2, .. } if sku == "BLK-M"))
    );
    assert!(fb(&t.scan(&d, 4, "BLK-M", None).await).0);
    assert_eq!(t.on_hand("BLK-M"), 28, "back only when the task is done");
    let o = t.scan(&d, 5, "BLK-M", None).await;
    assert!(fb(&o).1.contains("back in its bin"), "{}", fb(&o).1);
    assert_eq!(t.on_hand("BLK-M"), 30);
    let m = &t.moves("BLK-M")[0];
    assert_eq!(
        (m.kind, m.delta, m.tid),
        (crate::wms::moves::MoveKind::PutBack, 2, Some(TID_A))
    );
}

/// What the labeller's source does with goods out's functions, without Cainiao: the first
/// label of a package issues a waybill (counted), a later one reuses it.
struct FakeCainiao {
    store: Store,
    issued: Arc<AtomicUsize>,
    refuse: bool,
}

impl LabelSource for FakeCainiao {
    fn label(&self, tid: u64) -> futures::future::BoxFuture<'_, Result<Label, LabelError>> {
        Box::pin(async move {
            if self.refuse {
                return Err(LabelError::Refused("e-waybills are off".into()));
            }
            let issued = self.issued.clone();
            wms::write(&self.store, move |txn| {
                let mut w = Wms::new(txn, &ShopId::main(), now());
                let id = match w.waybill_request(tid, None, &[], false)? {
                    WaybillPlan::Have(p) => p.id,
                    WaybillPlan::Ask { package, .. } => {
                        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                        w.store_waybill(
                            &package.id,
                            WaybillRecord {
                                cp_code: "YTO".into(),
                                real_cp_code: "YTO".into(),
                                waybill_code: format!("YT{:013}", n),
                                parent_waybill_code: None,
                                print_data: "{\"encryptedData\":\"x\"}".into(),
                                template_url: "http://cloudprint.cainiao.com/template/standard/101"
                                    .into(),
                                issued_ms: 1,
                                voided_ms: None,
                            },
                        )?;
                        package.id
                    }
                };
                let job = w.print_job(&id)?;
                let code = crate::wms::ship::package(txn, "main", &id)?
                    .and_then(|p| p.live_waybill().map(|w| w.waybill_code.clone()))
                    .unwrap_or_default();
                w.finish()?;
                Ok(Label {
                    job,
                    waybill_code: code,
                    carrier: "YTO".into(),
                })
            })
            .await
            .map_err(|e: wms::WmsError| LabelError::Later(e.to_string()))
        })
    }
}

type Sent = Arc<std::sync::Mutex<Vec<(DeviceId, Downlink<String>)>>>;

async fn label_step(
    t: &T,
    source: &FakeCainiao,
    timeout: std::time::Duration,
) -> Vec<(DeviceId, Downlink<String>)> {
    let sent: Sent = Arc::default();
    let s2 = sent.clone();
    labels::step(
        &t.store,
        &ShopId::main(),
        source,
        timeout,
        t.lang,
        &move |c| s2.lock().unwrap().extend(c),
    )
    .await
    .unwrap();
    sent.lock().unwrap().clone()
}

fn label_job(t: &T, package: &str) -> labels::LabelJob {
    let p = package.to_owned();
    t.store
        .read(move |r| {
            crate::store::get::<(&str, &str), labels::LabelJob>(
                r,
                labels::LABELS,
                ("main", p.as_str()),
            )
        })
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn pack_verifies_every_item_then_the_label_prints_once_per_waybill_and_the_dock_ships_it() {
    let t = setup().await;
    let picker = scanner("s1");
    t.pick(&picker, TID_B, 1).await;
    t.pick(&picker, TID_A, 2).await;
    let pk = scanner("pk1");
    // Not an order; an order not picked; then A: three units to verify.
    let (ok, text) = fb(&t.scan_in(&pk, "x1", "hello", "pack").await);
    assert!(!ok && text.contains("scan the order first"), "{text}");
    let o = t.scan_in(&pk, "x2", &format!("pick-{TID_A}"), "pack").await;
    let (ok, text) = fb(&o);
    assert!(ok && text.contains("3 units"), "{text}");
    let task = task_of(&o);
    assert_eq!(task.task_id, format!("pack-{TID_A}"));
    // A wrong item: error beep, the step stays; a pick scan is refused while packing.
    let (ok, text) = fb(&t.scan_in(&pk, "x3", "6900000000099", "pack").await);
    assert!(!ok && text.starts_with("wrong item"), "{text}");
    // The order again, or a reconnect's request_task: the task it holds.
    let o = t.scan_in(&pk, "x3b", &TID_A.to_string(), "pack").await;
    assert!(
        fb(&o).0 && fb(&o).1.contains("you are packing"),
        "{}",
        fb(&o).1
    );
    let o = t
        .send(
            &pk,
            Channel::Evt,
            json!({"type":"request_task","v":1,"msg_id":"x3c","ts":"2026-12-01T10:00:00Z","mode":"pack"}),
        )
        .await;
    assert_eq!(task_of(&o).task_id, task.task_id);
    let (ok, text) = fb(&t.scan_in(&pk, "x4", "RED-M", "pick").await);
    assert!(!ok && text.contains("finish it first"), "{text}");
    for (i, code) in ["BLK-M", "6900000000013"].iter().enumerate() {
        let o = t.scan_in(&pk, &format!("v{i}"), code, "pack").await;
        assert!(fb(&o).0, "{}", fb(&o).1);
    }
    assert_eq!(t.order(TID_A).state, LocalState::Picked);
    let o = t.scan_in(&pk, "v9", "RED-M", "pack").await;
    let (ok, text) = fb(&o);
    assert!(
        ok && text.contains("packed") && text.contains("lp1"),
        "{text}"
    );
    assert_eq!(t.order(TID_A).state, LocalState::Packed);
    let package = format!("P{TID_A}-1");
    assert_eq!(label_job(&t, &package).state, LabelState::Waiting);

    // The labeller: one waybill, a cainiao print to the station's printer.
    let src = FakeCainiao {
        store: t.store.clone(),
        issued: Arc::default(),
        refuse: false,
    };
    let timeout = std::time::Duration::from_secs(30);
    let cmds = label_step(&t, &src, timeout).await;
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    let (to, Downlink::Print(p)) = &cmds[0] else {
        panic!("{cmds:?}")
    };
    assert_eq!(to.to_string(), "printer/lp1");
    assert_eq!(p.format, firmware_bridge::proto::PrintFormat::Cainiao);
    assert!(p.template_url.is_some() && p.data.contains("encryptedData"));
    assert_eq!(label_job(&t, &package).state, LabelState::Sent);
    assert!(
        label_step(&t, &src, timeout).await.is_empty(),
        "not due again before the timeout"
    );
    // No answer within the timeout: printed again, the same waybill.
    let cmds = label_step(&t, &src, std::time::Duration::ZERO).await;
    let Downlink::Print(p2) = &cmds[0].1 else {
        panic!("{cmds:?}")
    };
    assert_ne!(p2.job_id, p.job_id);
    assert_eq!(p2.data, p.data);
    assert!(
        matches!(&cmds[1], (d, Downlink::Feedback(f)) if *d == pk && f.text.contains("sent again"))
    );
    assert_eq!(
        src.issued.load(Ordering::SeqCst),
        1,
        "a reprint never asks for a new waybill"
    );
    // The printer: an error first (the station is told), then printed.
    let lp = DeviceId::new(DeviceClass::Printer, "lp1").unwrap();
    let o = t.send(&lp, Channel::Reply, json!({"type":"print_result","v":1,"re":p2.job_id,"status":"error","error":"paper out"})).await;
    assert!(o.feedback.is_none());
    assert!(
        matches!(&o.commands[0], (d, Downlink::Feedback(f)) if *d == pk && !f.ok && f.text.contains("paper out")),
        "{:?}",
        o.commands
    );
    assert_eq!(label_job(&t, &package).state, LabelState::Failed);
    // The packer scans the order again: the label again, the same waybill.
    let (ok, text) = fb(&t.scan_in(&pk, "x5", &TID_A.to_string(), "pack").await);
    assert!(ok && text.contains("the same waybill"), "{text}");
    let cmds = label_step(&t, &src, timeout).await;
    let Downlink::Print(p3) = &cmds[0].1 else {
        panic!("{cmds:?}")
    };
    assert_eq!(src.issued.load(Ordering::SeqCst), 1);
    let o = t
        .send(
            &lp,
            Channel::Reply,
            json!({"type":"print_result","v":1,"re":p3.job_id,"status":"printed"}),
        )
        .await;
    assert!(
        matches!(&o.commands[0], (d, Downlink::Feedback(f)) if *d == pk && f.ok && f.text.contains("dock"))
    );
    assert_eq!(t.order(TID_A).state, LocalState::Labelled);
    assert_eq!(label_job(&t, &package).state, LabelState::Printed);

    // The dock: an unknown number is refused; the label's number ships the order.
    let dock = scanner("dock");
    let (ok, text) = fb(&t.scan_in(&dock, "d1", "YT9999999999999", "ship").await);
    assert!(!ok && text.contains("not one this node issued"), "{text}");
    let o = t.scan_in(&dock, "d2", "YT0000000000001", "ship").await;
    let (ok, text) = fb(&o);
    assert!(ok && text.contains(&TID_A.to_string()), "{text}");
    assert_eq!(t.order(TID_A).state, LocalState::HandedOver);
    assert!(
        o.events
            .iter()
            .any(|e| matches!(e, wms::Event::Shipped { tid, .. } if *tid == TID_A))
    );
    let queued = t.outbox.queued(0, 10).unwrap();
    assert_eq!(queued.len(), 1, "one Ship op");
    // The goods left the ledger.
    assert_eq!(t.on_hand("BLK-M"), 28);
    // Scanned again: said so, nothing more.
    let (ok, text) = fb(&t.scan_in(&dock, "d3", "YT0000000000001", "ship").await);
    assert!(ok && text.contains("shipped already"), "{text}");
    assert_eq!(t.outbox.queued(0, 10).unwrap().len(), 1);
}

#[tokio::test]
async fn a_held_order_is_refused_at_pack_and_at_the_dock_with_the_reason() {
    let t = setup().await;
    let picker = scanner("s1");
    t.pick(&picker, TID_B, 1).await;
    t.pack(TID_B).await;
    let src = FakeCainiao {
        store: t.store.clone(),
        issued: Arc::default(),
        refuse: false,
    };
    label_step(&t, &src, std::time::Duration::from_secs(30)).await;
    t.op(|w| w.hold(TID_B, "address change").map(|_| ())).await;
    let dock = scanner("dock");
    let (ok, text) = fb(&t.scan_in(&dock, "d1", "YT0000000000001", "ship").await);
    assert!(
        !ok && text.contains("held") && text.contains("STOP") && text.contains("address change"),
        "{text}"
    );
    assert!(
        t.outbox
            .queued(0, 10)
            .unwrap()
            .iter()
            .all(|q| !format!("{q:?}").contains("Ship {"))
    );
    let (ok, text) = fb(&t
        .scan_in(&scanner("pk1"), "p9", &TID_B.to_string(), "pack")
        .await);
    assert!(
        !ok && text.starts_with("STOP") && text.contains("operator"),
        "{text}"
    );
    assert_ne!(t.order(TID_B).state, LocalState::HandedOver);
}

#[tokio::test]
async fn a_refused_label_tells_the_station_why() {
    let t = setup().await;
    t.pick(&scanner("s1"), TID_B, 1).await;
    t.pack(TID_B).await;
    let src = FakeCainiao {
        store: t.store.clone(),
        issued: Arc::default(),
        refuse: true,
    };
    let cmds = label_step(&t, &src, std::time::Duration::from_secs(30)).await;
    assert!(
        matches!(&cmds[0], (d, Downlink::Feedback(f)) if d.to_string() == "scanner/pk1" && !f.ok && f.text.contains("e-waybills are off")),
        "{cmds:?}"
    );
    assert_eq!(
        label_job(&t, &format!("P{TID_B}-1")).state,
        LabelState::Failed
    );
}

#[tokio::test]
async fn a_merged_parcel_is_packed_whole_and_ships_every_trade_with_one_scan() {
    let t = setup_with(true).await;
    let picker = scanner("s1");
    t.pick(&picker, TID_B, 1).await;
    // A (same receiver) is not picked yet: the parcel waits for it.
    let (ok, text) = fb(&t
        .scan_in(&scanner("pk1"), "m1", &TID_B.to_string(), "pack")
        .await);
    assert!(!ok && text.contains("pick it first"), "{text}");
    t.pick(&picker, TID_A, 2).await;
    let o = t.pack(TID_B).await;
    assert!(fb(&o).1.contains("packed"), "{}", fb(&o).1);
    assert_eq!(t.order(TID_A).state, LocalState::Packed);
    let src = FakeCainiao {
        store: t.store.clone(),
        issued: Arc::default(),
        refuse: false,
    };
    label_step(&t, &src, std::time::Duration::from_secs(30)).await;
    let o = t
        .scan_in(&scanner("dock"), "d1", "YT0000000000001", "ship")
        .await;
    let (ok, text) = fb(&o);
    assert!(
        ok && text.contains(&TID_A.to_string()) && text.contains(&TID_B.to_string()),
        "{text}"
    );
    assert_eq!(t.order(TID_A).state, LocalState::HandedOver);
    assert_eq!(t.order(TID_B).state, LocalState::HandedOver);
    assert_eq!(
        t.outbox.queued(0, 10).unwrap().len(),
        2,
        "one Ship op per trade"
    );
}

impl T {
    /// Scans `code` in `mode` at `d` (no `qty`).
    async fn scan_in(
        &self,
        d: &DeviceId,
        msg_id: &str,
        code: &str,
        mode: &str,
    ) -> Outcome<wms::Event> {
        self.send(d, Channel::Evt, scan_msg(msg_id, code, mode, None))
            .await
    }

    /// Scans `code` in pack mode at `d`.
    async fn pack_scan(&self, d: &DeviceId, msg_id: &str, code: &str) -> Outcome<wms::Event> {
        self.scan_in(d, msg_id, code, "pack").await
    }

    /// Acknowledges `hold_id` from `d`.
    async fn ack(&self, d: &DeviceId, hold_id: &str) -> Outcome<wms::Event> {
        self.send(
            d,
            Channel::Reply,
            json!({"type":"hold_ack","v":1,"re":hold_id}),
        )
        .await
    }

    /// Cainiao's number for `tid`'s parcel, kept with it (as `wms-node waybill get` does).
    async fn take_waybill(&self, tid: u64, code: &'static str) {
        self.op(move |w| {
            if let WaybillPlan::Ask { package, .. } = w.waybill_request(tid, None, &[], false)? {
                w.store_waybill(
                    &package.id,
                    WaybillRecord {
                        cp_code: "YTO".into(),
                        real_cp_code: "YTO".into(),
                        waybill_code: code.into(),
                        parent_waybill_code: None,
                        print_data: "{}".into(),
                        template_url: String::new(),
                        issued_ms: 1,
                        voided_ms: None,
                    },
                )?;
            }
            Ok(())
        })
        .await;
    }

    /// The waybills voided and not yet queued for cancelling (taken off the list).
    async fn voided(&self) -> Vec<(String, String)> {
        self.store
            .write(|txn| crate::wms::ship::take_voided(txn, "main", 100))
            .await
            .unwrap()
    }
}

fn hold_of(
    cmds: &[(DeviceId, Downlink<String>)],
) -> (DeviceId, firmware_bridge::proto::Hold<String>) {
    match cmds {
        [(to, Downlink::Hold(h))] => (to.clone(), h.clone()),
        other => panic!("not one hold: {other:?}"),
    }
}

#[tokio::test]
async fn a_hold_reaches_a_station_mid_pack_and_every_picked_unit_goes_back() {
    let t = setup().await;
    let picker = scanner("s1");
    t.pick(&picker, TID_B, 1).await;
    t.pick(&picker, TID_A, 2).await;
    let pk = scanner("pk1");
    let o = t.pack_scan(&pk, "k0", &TID_A.to_string()).await;
    assert_eq!(task_of(&o).task_id, format!("pack-{TID_A}"));
    assert!(fb(&t.pack_scan(&pk, "k1", "BLK-M").await).0);
    // A waybill was taken for the parcel before the hold (`wms-node waybill get`).
    t.take_waybill(TID_A, "YT0000000000042").await;

    // The refund: the station holding the pack task is told at once, once.
    t.op(|w| w.hold(TID_A, "refund asked").map(|_| ())).await;
    let (to, h) = hold_of(&t.held(TID_A).await);
    assert_eq!(to, pk);
    assert_eq!(
        (h.tid.as_str(), h.action.as_str(), h.task_id.as_deref()),
        (
            TID_A.to_string().as_str(),
            "put_back",
            Some(format!("pack-{TID_A}").as_str())
        )
    );
    assert!(
        h.text.starts_with("STOP") && h.text.contains("put its goods back"),
        "{}",
        h.text
    );
    assert!(t.held(TID_A).await.is_empty(), "not sent twice");
    // Its next scan is refused with the reason; the parcel is not finished.
    let (ok, text) = fb(&t.pack_scan(&pk, "k2", "BLK-M").await);
    assert!(
        !ok && text.starts_with("STOP") && text.contains("operator"),
        "{text}"
    );
    assert_eq!(t.order(TID_A).state, LocalState::Picked);
    // Back online without having acknowledged: the same hold again.
    let (_, again) = hold_of(&t.online(&pk).await);
    assert_eq!(again.hold_id, h.hold_id);
    assert_eq!((t.on_hand("RED-M"), t.on_hand("BLK-M")), (40, 30));

    // The ack: the pack task stops; everything picked for A (not only what was verified) is
    // a put-back task for the station, and off the shelf's figure until scanned back.
    let o = t.ack(&pk, &h.hold_id).await;
    let put = task_of(&o);
    assert_eq!(put.task_id, format!("putback-{TID_A}"));
    assert_eq!(put.remaining, Some(3), "1 red and 2 black were picked");
    assert_eq!((t.on_hand("RED-M"), t.on_hand("BLK-M")), (39, 28));
    assert!(t.online(&pk).await.is_empty(), "acknowledged");
    for (i, code) in ["BLK-M", "BLK-M", "RED-M"].iter().enumerate() {
        let o = t.pack_scan(&pk, &format!("b{i}"), code).await;
        assert!(fb(&o).0, "{}", fb(&o).1);
    }
    assert_eq!(t.order(TID_A).state, LocalState::PutBack);
    assert_eq!((t.on_hand("RED-M"), t.on_hand("BLK-M")), (40, 30));
    // Goods out's path for a parcel that will not ship: its waybill is voided, and the stock
    // job queues its `cainiao.waybill.ii.cancel`.
    assert_eq!(
        t.voided().await,
        vec![("YTO".to_owned(), "YT0000000000042".to_owned())]
    );
    // The station is free again.
    let (ok, text) = fb(&t.pack_scan(&pk, "k3", &TID_B.to_string()).await);
    assert!(ok, "{text}");
}

#[tokio::test]
async fn a_hold_of_another_order_of_a_merged_parcel_stops_its_packing() {
    let t = setup_with(true).await;
    let picker = scanner("s1");
    t.pick(&picker, TID_B, 1).await;
    t.pick(&picker, TID_A, 2).await;
    let pk = scanner("pk1");
    // B's parcel holds A too (same receiver): 4 units.
    let o = t.pack_scan(&pk, "m0", &TID_B.to_string()).await;
    assert_eq!(task_of(&o).remaining, Some(4));
    assert!(fb(&t.pack_scan(&pk, "m1", "RED-M").await).0);
    // Another station cannot start A's parcel meanwhile.
    let (ok, text) = fb(&t.pack_scan(&scanner("pk2"), "n0", &TID_A.to_string()).await);
    assert!(
        !ok && text.contains("being worked by scanner/pk1"),
        "{text}"
    );

    t.op(|w| w.hold(TID_A, "buyer called").map(|_| ())).await;
    let (to, h) = hold_of(&t.held(TID_A).await);
    assert_eq!(to, pk);
    assert_eq!(h.tid, TID_A.to_string());
    assert!(
        h.text.contains(&format!("order {TID_B} stays picked")),
        "{}",
        h.text
    );
    let (ok, text) = fb(&t.pack_scan(&pk, "m2", "BLK-M").await);
    assert!(
        !ok && text.starts_with(&format!("STOP: order {TID_A}")),
        "{text}"
    );
    let put = task_of(&t.ack(&pk, &h.hold_id).await);
    assert_eq!(put.task_id, format!("putback-{TID_A}"));
    assert_eq!(put.remaining, Some(3), "A's units only");
    for (i, code) in ["BLK-M", "BLK-M", "RED-M"].iter().enumerate() {
        assert!(fb(&t.pack_scan(&pk, &format!("p{i}"), code).await).0);
    }
    assert_eq!(t.order(TID_A).state, LocalState::PutBack);
    assert_eq!(t.order(TID_B).state, LocalState::Picked);
    // B alone now: a parcel of its own, one unit.
    let o = t.pack_scan(&pk, "m3", &TID_B.to_string()).await;
    assert_eq!(task_of(&o).remaining, Some(1), "{}", fb(&o).1);
    let o = t.pack_scan(&pk, "m4", "RED-M").await;
    assert!(fb(&o).1.contains("packed"), "{}", fb(&o).1);
    assert_eq!(t.order(TID_B).state, LocalState::Packed);
}

#[tokio::test]
async fn a_hold_lifted_before_the_ack_lets_the_station_finish_the_parcel() {
    let t = setup().await;
    t.pick(&scanner("s1"), TID_B, 1).await;
    let pk = scanner("pk1");
    t.pack_scan(&pk, "k0", &TID_B.to_string()).await;
    t.op(|w| w.hold(TID_B, "wait").map(|_| ())).await;
    let (_, h) = hold_of(&t.held(TID_B).await);
    t.op(|w| w.release(TID_B).map(|_| ())).await;
    assert_eq!(
        task_of(&t.ack(&pk, &h.hold_id).await).task_id,
        format!("pack-{TID_B}")
    );
    let o = t.pack_scan(&pk, "k1", "RED-M").await;
    assert!(fb(&o).1.contains("packed"), "{}", fb(&o).1);
}

#[tokio::test]
async fn holds_committed_while_the_floor_was_not_listening_are_found_at_start() {
    let t = setup().await;
    let d = scanner("s1");
    t.pick(&d, TID_B, 0).await;
    t.pick(&scanner("s2"), TID_A, 1).await;
    let pk = scanner("pk1");
    t.pack_scan(&pk, "k0", &TID_A.to_string()).await;
    // Held, and the node dies before the floor hears of it.
    t.op(|w| w.hold(TID_A, "refund asked").map(|_| ())).await;
    let (cmds, _) = t.sweep().await;
    let (to, h) = hold_of(&cmds);
    assert_eq!((to, h.tid), (pk, TID_A.to_string()));
    let (again, events) = t.sweep().await;
    assert!(again.is_empty(), "told once; re-sent only on reconnect");
    assert!(events.is_empty(), "{events:?}");
}

impl T {
    /// Labels the packed parcel of the station's last pack: the labeller's waybill (from the
    /// fake Cainiao, numbered from `YT0000000000001`), printed on `lp1`. Returns the number.
    async fn label(&self, src: &FakeCainiao) -> String {
        let cmds = label_step(self, src, std::time::Duration::from_secs(30)).await;
        let Some(Downlink::Print(p)) = cmds
            .iter()
            .map(|(_, c)| c)
            .find(|c| matches!(c, Downlink::Print(_)))
        else {
            panic!("no print: {cmds:?}")
        };
        let lp = DeviceId::new(DeviceClass::Printer, "lp1").unwrap();
        self.send(
            &lp,
            Channel::Reply,
            json!({"type":"print_result","v":1,"re":p.job_id,"status":"printed"}),
        )
        .await;
        format!("YT{:013}", src.issued.load(Ordering::SeqCst))
    }

    /// The task record `task_id`.
    async fn task(&self, task_id: &str) -> Option<tasks::TaskRecord> {
        let id = task_id.to_owned();
        self.store
            .write(move |txn| tasks::get(txn, "main", &id))
            .await
            .unwrap()
    }

    /// Scans every unit of the put-back task `d` holds, by barcode; the last answer.
    async fn put_back_all(&self, d: &DeviceId, n: u32) -> Outcome<wms::Event> {
        let mut last = None;
        let mut i = 0;
        while let Some(code) = {
            let dev = d.to_string();
            self.store
                .write(move |txn| tasks::of_device(txn, "main", &dev))
                .await
                .unwrap()
                .filter(|t| t.kind == tasks::TaskKind::PutBack)
                .and_then(|t| t.next_line().map(|l| l.barcode.clone()))
        } {
            i += 1;
            let o = self.scan(d, 2000 * n + i, &code, None).await;
            assert!(fb(&o).0, "{}", fb(&o).1);
            last = Some(o);
        }
        last.expect("a put-back scanned")
    }
}

fn fake_cainiao(t: &T) -> FakeCainiao {
    FakeCainiao {
        store: t.store.clone(),
        issued: Arc::default(),
        refuse: false,
    }
}

/// (a) Picked and waiting for packing, no device on it: the hold makes a put-back task that
/// waits for a device; the next scanner asking for pick work gets it before any pick.
#[tokio::test]
async fn a_held_order_waiting_for_packing_gets_a_put_back_task_the_next_picker_takes() {
    let t = setup().await;
    t.pick(&scanner("s1"), TID_B, 1).await;
    assert_eq!(t.on_hand("RED-M"), 40);
    t.op(|w| w.hold(TID_B, "refund asked").map(|_| ())).await;
    let (cmds, events) = t.held_effects(TID_B).await;
    assert!(cmds.is_empty(), "no device to tell: {cmds:?}");
    assert!(events.iter().any(|e| matches!(e, wms::Event::StateChanged { tid, to: LocalState::PutBack, .. } if *tid == TID_B)), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, wms::Event::StockMoved { sku, delta: -1, .. } if sku == "RED-M")),
        "{events:?}"
    );
    assert_eq!(t.order(TID_B).state, LocalState::PutBack);
    assert_eq!(t.on_hand("RED-M"), 39, "in a tote, off the shelf's figure");
    let put = t.task(&format!("putback-{TID_B}")).await.unwrap();
    assert!(put.is_waiting() && put.left() == 1, "{put:?}");
    // Told again (an event delivered twice, the sweep): nothing more.
    assert_eq!(t.held_effects(TID_B).await, (Vec::new(), Vec::new()));
    assert_eq!(t.sweep().await, (Vec::new(), Vec::new()));
    assert_eq!(t.on_hand("RED-M"), 39);

    // The packing station is told what to do with it.
    let (ok, text) = fb(&t
        .scan_in(&scanner("pk1"), "k1", &TID_B.to_string(), "pack")
        .await);
    assert!(
        !ok && text.starts_with(&format!(
            "STOP: order {TID_B} is on hold (operator: refund asked)"
        )) && text.contains(&format!("put its goods back with task putback-{TID_B}")),
        "{text}"
    );
    // A picker asking for work gets the put-back before A's pick.
    let d = scanner("s2");
    let o = t.request(&d, 1).await;
    let task = task_of(&o);
    assert_eq!(task.task_id, format!("putback-{TID_B}"));
    assert_eq!(task.remaining, Some(1));
    assert_eq!(
        task.next.as_ref().unwrap().location.as_deref(),
        Some("B-02-01")
    );
    assert!(fb(&o).1.contains("put back"), "{}", fb(&o).1);
    assert_eq!(t.task(&task.task_id).await.unwrap().device, "scanner/s2");
    // Another scanner is not given the same task.
    let other = task_of(&t.request(&scanner("s3"), 1).await);
    assert_eq!(other.task_id, format!("pick-{TID_A}"));
    let (ok, text) = fb(&t.scan(&d, 1, "BLK-M", None).await);
    assert!(!ok && text.starts_with("wrong item"), "{text}");
    let o = t.put_back_all(&d, 1).await;
    assert!(fb(&o).1.contains("back in its bin"), "{}", fb(&o).1);
    assert_eq!(t.on_hand("RED-M"), 40, "back, once");
    let m = &t.moves("RED-M")[0];
    assert_eq!(
        (m.kind, m.delta, m.tid),
        (crate::wms::moves::MoveKind::PutBack, 1, Some(TID_B))
    );
    assert_eq!(t.order(TID_B).state, LocalState::PutBack);
    // The put-back is done: nothing owed any more, the scanner is free.
    assert_eq!(t.sweep().await, (Vec::new(), Vec::new()));
    let (ok, text) = fb(&t.request(&d, 2).await);
    assert!(ok && text.starts_with("no work"), "{text}");
    // Released again, it is picked afresh.
    t.op(|w| w.release(TID_B).map(|_| ())).await;
    assert_eq!(
        task_of(&t.request(&d, 3).await).task_id,
        format!("pick-{TID_B}")
    );
}

/// (b) Packed and labelled, waiting at the dock: found by the sweep at start (the node died
/// between the hold and the floor's part), swept twice, its waybill voided once, the dock
/// and the station refused with what to do; the put-back returns every unit.
#[tokio::test]
async fn a_held_parcel_at_the_dock_is_swept_once_its_waybill_voided_once_and_its_goods_go_back() {
    let t = setup().await;
    t.pick(&scanner("s1"), TID_B, 1).await;
    t.pick(&scanner("s1"), TID_A, 2).await;
    t.pack(TID_A).await;
    let src = fake_cainiao(&t);
    let waybill = t.label(&src).await;
    assert_eq!(t.order(TID_A).state, LocalState::Labelled);
    assert_eq!((t.on_hand("RED-M"), t.on_hand("BLK-M")), (40, 30));

    t.op(|w| w.hold(TID_A, "refund asked").map(|_| ())).await;
    let (cmds, events) = t.sweep().await;
    assert!(cmds.is_empty(), "{cmds:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, wms::Event::WaybillVoided { .. })),
        "{events:?}"
    );
    assert_eq!(
        t.sweep().await,
        (Vec::new(), Vec::new()),
        "swept twice: once"
    );
    assert_eq!(t.held_effects(TID_A).await, (Vec::new(), Vec::new()));
    assert_eq!(
        t.voided().await,
        vec![("YTO".to_owned(), waybill.clone())],
        "one cancel"
    );
    assert!(t.voided().await.is_empty());
    assert_eq!(t.order(TID_A).state, LocalState::PutBack);
    assert_eq!((t.on_hand("RED-M"), t.on_hand("BLK-M")), (39, 28));

    // The dock scans its label: refused, with what to do.
    let dock = scanner("dock");
    let (ok, text) = fb(&t.scan_in(&dock, "d1", &waybill, "ship").await);
    assert!(
        !ok && text.contains(&format!("waybill {waybill} was voided"))
            && text.contains(&format!("put its goods back with task putback-{TID_A}")),
        "{text}"
    );
    let (ok, text) = fb(&t
        .scan_in(&scanner("pk1"), "k1", &TID_A.to_string(), "pack")
        .await);
    assert!(!ok && text.contains(&format!("putback-{TID_A}")), "{text}");
    assert!(
        t.outbox
            .queued(0, 10)
            .unwrap()
            .iter()
            .all(|q| !format!("{q:?}").contains("Ship {")),
        "nothing shipped"
    );
    let d = scanner("s2");
    let task = task_of(&t.request(&d, 1).await);
    assert_eq!(
        (task.task_id, task.remaining),
        (format!("putback-{TID_A}"), Some(3))
    );
    t.put_back_all(&d, 1).await;
    assert_eq!((t.on_hand("RED-M"), t.on_hand("BLK-M")), (40, 30));
    assert_eq!(t.order(TID_A).state, LocalState::PutBack);
    assert!(t.voided().await.is_empty(), "no second cancel at the end");
    assert_eq!(t.sweep().await, (Vec::new(), Vec::new()));
}

/// (c) A merged parcel, packed and labelled: one of its orders held. Its units go back; the
/// other order stays packed, its label voided (the parcel changed), once; the dock is told
/// both.
#[tokio::test]
async fn a_held_order_of_a_merged_parcel_goes_back_and_the_other_gets_a_new_label() {
    let t = setup_with(true).await;
    let picker = scanner("s1");
    t.pick(&picker, TID_B, 1).await;
    t.pick(&picker, TID_A, 2).await;
    t.pack(TID_B).await;
    let src = fake_cainiao(&t);
    let waybill = t.label(&src).await;
    assert_eq!(t.order(TID_A).state, LocalState::Labelled);
    assert_eq!(t.order(TID_B).state, LocalState::Labelled);

    t.op(|w| w.hold(TID_A, "refund asked").map(|_| ())).await;
    let (cmds, _) = t.held_effects(TID_A).await;
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(t.sweep().await, (Vec::new(), Vec::new()));
    assert_eq!(t.order(TID_A).state, LocalState::PutBack);
    assert_eq!(t.order(TID_B).state, LocalState::Labelled, "B stays");
    assert_eq!(
        t.voided().await,
        vec![("YTO".to_owned(), waybill.clone())],
        "one cancel"
    );
    // A's units only (1 red, 2 black), off the shelf; B's red stays in the parcel.
    let put = t.task(&format!("putback-{TID_A}")).await.unwrap();
    assert_eq!(put.left(), 3);
    assert_eq!((t.on_hand("RED-M"), t.on_hand("BLK-M")), (39, 28));
    let (ok, text) = fb(&t.scan_in(&scanner("dock"), "d1", &waybill, "ship").await);
    assert!(
        !ok && text.contains(&format!("putback-{TID_A}"))
            && text.contains(&format!(
                "order {TID_B}: scan it at a packing station for a new label"
            )),
        "{text}"
    );
    // B at the station: a label of its own parcel, a new waybill.
    let (ok, text) = fb(&t
        .scan_in(&scanner("pk1"), "k1", &TID_B.to_string(), "pack")
        .await);
    assert!(ok && text.contains("label again"), "{text}");
    let second = t.label(&src).await;
    assert_ne!(second, waybill);
    let d = scanner("s2");
    assert_eq!(
        task_of(&t.request(&d, 1).await).task_id,
        format!("putback-{TID_A}")
    );
    t.put_back_all(&d, 1).await;
    assert_eq!((t.on_hand("RED-M"), t.on_hand("BLK-M")), (40, 30));
    // B ships alone with its new number.
    let (ok, text) = fb(&t.scan_in(&scanner("dock"), "d2", &second, "ship").await);
    assert!(
        ok && text.contains(&TID_B.to_string()) && !text.contains(&TID_A.to_string()),
        "{text}"
    );
    assert_eq!(t.on_hand("RED-M"), 39, "B's unit left");
}

/// A trade closed while its order waits for packing: intake moves it to `put_back` at once;
/// the floor still owes the put-back of what was picked, made once.
#[tokio::test]
async fn a_trade_closed_after_picking_gets_its_put_back_task_once() {
    let t = setup().await;
    t.pick(&scanner("s1"), TID_B, 1).await;
    let mut l = line(TID_B * 10 + 1, "RED-M", 1);
    l["status"] = json!("TRADE_CLOSED");
    l["refund_status"] = json!("SUCCESS");
    let closed: Trade = serde_json::from_value(json!({
        "tid": TID_B, "status": "TRADE_CLOSED", "type": "fixed",
        "created": "2026-12-01 07:59:00", "pay_time": "2026-12-01 08:00:00",
        "modified": "2026-12-01 10:30:00",
        "receiver_state": "浙江省", "receiver_city": "杭州市", "receiver_district": "余杭区",
        "oaid": "OAID-1",
        "orders": [l],
    }))
    .unwrap();
    t.op(move |w| w.apply_trade(&closed, &Rules::default()).map(|_| ()))
        .await;
    assert_eq!(t.order(TID_B).state, LocalState::PutBack);
    let (_, events) = t.held_effects(TID_B).await;
    assert!(!events.is_empty());
    assert_eq!(t.on_hand("RED-M"), 39);
    assert_eq!(t.sweep().await, (Vec::new(), Vec::new()));
    let d = scanner("s2");
    assert_eq!(
        task_of(&t.request(&d, 1).await).task_id,
        format!("putback-{TID_B}")
    );
    t.put_back_all(&d, 1).await;
    assert_eq!(t.on_hand("RED-M"), 40);
    assert_eq!(
        t.sweep().await,
        (Vec::new(), Vec::new()),
        "done: not owed again"
    );
}

/// A hold on an order already through the ship scan: its goods left with the carrier, so
/// there is nothing to put back (courier interception is goods out's, DOMAIN.md §3): no
/// task, no stock move, no cancel.
#[tokio::test]
async fn a_hold_on_a_shipped_order_puts_nothing_back() {
    let t = setup().await;
    t.pick(&scanner("s1"), TID_B, 1).await;
    t.pack(TID_B).await;
    let src = fake_cainiao(&t);
    let waybill = t.label(&src).await;
    let (ok, text) = fb(&t.scan_in(&scanner("dock"), "d1", &waybill, "ship").await);
    assert!(ok, "{text}");
    assert_eq!(t.order(TID_B).state, LocalState::HandedOver);
    let moves = t.moves("RED-M").len();
    t.op(|w| w.hold(TID_B, "refund asked").map(|_| ())).await;
    assert_eq!(t.held_effects(TID_B).await, (Vec::new(), Vec::new()));
    assert_eq!(t.sweep().await, (Vec::new(), Vec::new()));
    assert!(t.task(&format!("putback-{TID_B}")).await.is_none());
    assert_eq!(t.moves("RED-M").len(), moves, "no stock move");
    assert!(
        t.voided().await.is_empty(),
        "its waybill stays: the parcel is gone"
    );
    assert_eq!(t.order(TID_B).state, LocalState::HandedOver);
    // A picker gets the next pick, not a put-back.
    assert_eq!(
        task_of(&t.request(&scanner("s2"), 1).await).task_id,
        format!("pick-{TID_A}")
    );
}

// The floor in Chinese (`[floor] language = "zh"`): the same flows, the same machine fields
// (`ok`, `beep`, `next`, ids, `remaining`, a hold's `reason` and `action`); only what people
// read is Chinese. Each event goes to an English and a Chinese floor alike.

/// `o` without its texts: what a device's program reads.
fn machine(o: &Outcome<wms::Event>) -> (Option<Feedback<String>>, Commands, Vec<wms::Event>) {
    let fb = o.feedback.clone().map(|f| Feedback {
        text: String::new(),
        ..f
    });
    let commands = o
        .commands
        .iter()
        .map(|(d, c)| {
            let c = match c.clone() {
                Downlink::Feedback(f) => Downlink::Feedback(Feedback {
                    text: String::new(),
                    ..f
                }),
                Downlink::Task(t) => Downlink::Task(Task {
                    text: String::new(),
                    ..t
                }),
                Downlink::Hold(h) => Downlink::Hold(Hold {
                    text: String::new(),
                    ..h
                }),
                other => other,
            };
            (d.clone(), c)
        })
        .collect();
    (fb, commands, o.events.clone())
}

type Commands = Vec<(DeviceId, Downlink<String>)>;

/// Sends `msg` from `d` to both floors; their answers differ in their texts only. The
/// Chinese floor's answer.
async fn both(en: &T, zh: &T, d: &DeviceId, channel: Channel, msg: Value) -> Outcome<wms::Event> {
    let a = en.send(d, channel, msg.clone()).await;
    let b = zh.send(d, channel, msg.clone()).await;
    assert_eq!(machine(&a), machine(&b), "{msg}");
    if let (Some(x), Some(y)) = (&a.feedback, &b.feedback) {
        assert_ne!(x.text, y.text, "not said in Chinese: {}", y.text);
    }
    b
}

fn request_msg(msg_id: &str) -> Value {
    json!({"type":"request_task","v":1,"msg_id":msg_id,"ts":"2026-12-01T10:00:00Z","mode":"pick"})
}

#[tokio::test]
async fn in_chinese_a_pick_says_each_step_wrong_item_too_many_and_short() {
    let (en, zh) = (setup().await, setup_in(false, Lang::Zh).await);
    let d = scanner("s1");
    let o = both(&en, &zh, &d, Channel::Evt, request_msg("r1")).await;
    assert_eq!(
        fb(&o).1,
        format!("拣货订单 {TID_B}：B-02-01：RED-M × 1（还剩 1 件）")
    );
    assert_eq!(
        task_of(&o).text,
        format!("拣货订单 {TID_B}：B-02-01：RED-M × 1")
    );
    // Wrong item: the next step first, then what was scanned.
    let o = both(
        &en,
        &zh,
        &d,
        Channel::Evt,
        scan_msg("s1", "6900000000099", "pick", None),
    )
    .await;
    let f = o.feedback.as_ref().unwrap();
    assert_eq!(
        f.text,
        format!("错货！下一件：B-02-01：RED-M × 1（6900000000099 不在订单 {TID_B} 中）")
    );
    assert!(!f.ok && f.beep == firmware_bridge::proto::Beep::Error);
    let o = both(
        &en,
        &zh,
        &d,
        Channel::Evt,
        scan_msg("s2", "6900000000011", "pick", Some(3)),
    )
    .await;
    assert_eq!(fb(&o).1, "数量过多：RED-M 只剩 1 件");
    let o = both(
        &en,
        &zh,
        &d,
        Channel::Evt,
        scan_msg("s3", "RED-M", "pick", None),
    )
    .await;
    assert_eq!(fb(&o).1, format!("订单 {TID_B} 拣货完成：请送去打包"));
    assert_eq!(zh.order(TID_B).state, LocalState::Picked);
    // The next order, then a short: to the exception desk.
    let o = both(&en, &zh, &d, Channel::Evt, request_msg("r2")).await;
    assert_eq!(
        fb(&o).1,
        format!("拣货订单 {TID_A}：A-01-04：BLK-M × 2（还剩 3 件）")
    );
    let short = json!({"type":"short","v":1,"msg_id":"x","ts":"2026-12-01T10:00:00Z",
                       "task_id": format!("pick-{TID_A}"), "code":"BLK-M","qty":1});
    let o = both(&en, &zh, &d, Channel::Evt, short).await;
    assert_eq!(
        fb(&o).1,
        format!("BLK-M 短拣已记录：请把订单 {TID_A} 送到异常台")
    );
    assert_eq!(zh.order(TID_A).state, LocalState::Exception);
    let o = both(&en, &zh, &d, Channel::Evt, request_msg("r3")).await;
    assert_eq!(fb(&o).1, "暂无任务：没有待拣货的订单");
}

#[tokio::test]
async fn in_chinese_a_held_order_is_refused_and_its_goods_put_back() {
    let (en, zh) = (setup().await, setup_in(false, Lang::Zh).await);
    let d = scanner("s1");
    both(&en, &zh, &d, Channel::Evt, request_msg("r1")).await;
    both(
        &en,
        &zh,
        &d,
        Channel::Evt,
        scan_msg("s1", "RED-M", "pick", None),
    )
    .await;
    both(&en, &zh, &d, Channel::Evt, request_msg("r2")).await;
    both(
        &en,
        &zh,
        &d,
        Channel::Evt,
        scan_msg("s2", "BLK-M", "pick", None),
    )
    .await;
    for t in [&en, &zh] {
        t.op(|w| w.hold(TID_A, "buyer called").map(|_| ())).await;
    }
    let (a, b) = (en.held(TID_A).await, zh.held(TID_A).await);
    let (_, he) = hold_of(&a);
    let (to, h) = hold_of(&b);
    assert_eq!(to, d);
    assert_eq!(
        Hold {
            text: String::new(),
            ..he
        },
        Hold {
            text: String::new(),
            ..h.clone()
        }
    );
    assert_eq!(
        (h.reason.as_str(), h.action.as_str()),
        ("operator", "put_back")
    );
    assert_eq!(
        h.text,
        format!(
            "停！订单 {TID_A} 已挂起（人工挂起）：不要打包；把已拣的货放回（随后下发放回任务）"
        )
    );
    // Re-sent on reconnect as it was first sent.
    assert_eq!(zh.online(&d).await, b);
    let o = both(
        &en,
        &zh,
        &d,
        Channel::Evt,
        scan_msg("s3", "BLK-M", "pick", None),
    )
    .await;
    assert_eq!(
        fb(&o).1,
        format!("停！订单 {TID_A} 已挂起（人工挂起）：不要打包")
    );
    let ack = json!({"type":"hold_ack","v":1,"re":h.hold_id});
    let o = both(&en, &zh, &d, Channel::Reply, ack).await;
    assert_eq!(
        task_of(&o).text,
        format!("把订单 {TID_A} 已拣的货放回：A-01-04：BLK-M × 1")
    );
    let o = both(
        &en,
        &zh,
        &d,
        Channel::Evt,
        scan_msg("s4", "BLK-M", "pick", None),
    )
    .await;
    assert_eq!(fb(&o).1, format!("订单 {TID_A}：已全部放回库位"));
    assert_eq!(zh.order(TID_A).state, LocalState::PutBack);
}

#[tokio::test]
async fn in_chinese_receive_pack_label_ship_and_a_held_order_at_the_dock() {
    let (en, zh) = (setup().await, setup_in(false, Lang::Zh).await);
    let rcv = scanner("rcv");
    let o = both(
        &en,
        &zh,
        &rcv,
        Channel::Evt,
        scan_msg("rc", "6900000000011", "receive", Some(5)),
    )
    .await;
    assert_eq!(fb(&o).1, "已收货 RED-M × 5：在库 45；库位 B-02-01");
    for t in [&en, &zh] {
        t.pick(&scanner("s1"), TID_B, 1).await;
    }
    let pk = scanner("pk1");
    let o = both(
        &en,
        &zh,
        &pk,
        Channel::Evt,
        scan_msg("p1", &TID_B.to_string(), "pack", None),
    )
    .await;
    assert_eq!(fb(&o).1, format!("打包订单 {TID_B}：逐件扫描（共 1 件）"));
    assert_eq!(
        task_of(&o).text,
        format!("打包订单 {TID_B}：逐件扫描：B-02-01：RED-M × 1")
    );
    let o = both(
        &en,
        &zh,
        &pk,
        Channel::Evt,
        scan_msg("p2", "RED-M", "pack", None),
    )
    .await;
    assert_eq!(fb(&o).1, format!("订单 {TID_B} 打包完成：面单在 lp1 打印"));
    assert_eq!(zh.order(TID_B).state, LocalState::Packed);
    // The label: printed, the station told in Chinese.
    let src = fake_cainiao(&zh);
    let cmds = label_step(&zh, &src, std::time::Duration::from_secs(30)).await;
    let Downlink::Print(p) = &cmds[0].1 else {
        panic!("{cmds:?}")
    };
    let lp = DeviceId::new(DeviceClass::Printer, "lp1").unwrap();
    let printed = json!({"type":"print_result","v":1,"re":p.job_id,"status":"printed"});
    let o = zh.send(&lp, Channel::Reply, printed).await;
    let [(to, Downlink::Feedback(f))] = o.commands.as_slice() else {
        panic!("{:?}", o.commands)
    };
    assert_eq!(to, &pk);
    assert!(f.ok && f.re.is_none() && f.beep == firmware_bridge::proto::Beep::Ok);
    assert_eq!(
        f.text,
        format!("订单 {TID_B} 面单已打印（YT0000000000001）：请把包裹送到发货区")
    );
    let dock = scanner("dock");
    let (ok, text) = fb(&zh.scan_in(&dock, "d1", "YT0000000000001", "ship").await);
    assert!(ok, "{text}");
    assert_eq!(text, format!("已发货：订单 {TID_B}，YTO YT0000000000001"));
    // A held order at the dock: STOP, with the reason in words and its detail as recorded.
    zh.pick(&scanner("s1"), TID_A, 2).await;
    zh.pack(TID_A).await;
    let cmds = label_step(&zh, &src, std::time::Duration::from_secs(30)).await;
    let Downlink::Print(p) = &cmds[0].1 else {
        panic!("{cmds:?}")
    };
    let printed = json!({"type":"print_result","v":1,"re":p.job_id,"status":"printed"});
    zh.send(&lp, Channel::Reply, printed).await;
    zh.op(|w| w.hold(TID_A, "address change").map(|_| ())).await;
    let o = zh.scan_in(&dock, "d2", "YT0000000000002", "ship").await;
    let f = o.feedback.as_ref().unwrap();
    assert!(!f.ok && f.beep == firmware_bridge::proto::Beep::Error);
    assert_eq!(
        f.text,
        format!("停！订单 {TID_A} 已挂起（人工挂起：address change）：请送到异常台")
    );
    assert_eq!(zh.order(TID_A).state, LocalState::Labelled);
}
