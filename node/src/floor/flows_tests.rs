//! The flows as state machines over a real store file, without a broker: each test feeds
//! decoded device messages to [`Flows`] inside store writes, as the pipeline does.

use super::devices::DeviceId;
use super::flow::{Event, FlowHandler, Outcome};
use super::flows::Flows;
use super::holds;
use crate::alert::Alerts;
use crate::store::{Store, StoreOptions};
use crate::taobao::types::Trade;
use crate::wms::sku::parse_skus;
use crate::wms::tasks;
use crate::wms::{self, LocalState, Rules, ShopId, Wms};
use firmware_bridge::proto::json;
use firmware_bridge::proto::{Channel, DeviceClass, Downlink, Uplink};
use serde_json::{Value, json};

const NOW: u64 = 1_796_000_000_000;
const TID_A: u64 = 3_100_000_000_000_001;
const TID_B: u64 = 3_100_000_000_000_002;

struct T {
    store: Store,
    flows: Flows,
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
/// (paid 08:00, so due first: 1 red).
async fn setup() -> T {
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
    T {
        store,
        flows: Flows::new(ShopId::main()),
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
        let flows = self.flows.clone();
        self.store
            .write(move |txn| flows.held(txn, tid, NOW))
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
    let o = t
        .send(
            &d,
            Channel::Reply,
            json!({"type":"hold_ack","v":1,"re":h.hold_id}),
        )
        .await;
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
    let o = t
        .send(
            &d,
            Channel::Reply,
            json!({"type":"hold_ack","v":1,"re":h.hold_id}),
        )
        .await;
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
    let o = t
        .send(
            &d,
            Channel::Reply,
            json!({"type":"hold_ack","v":1,"re":h.hold_id}),
        )
        .await;
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
    let o = t
        .send(
            &d,
            Channel::Reply,
            json!({"type":"hold_ack","v":1,"re":h.hold_id}),
        )
        .await;
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
async fn flows_not_on_this_node_say_so_and_record_nothing() {
    let t = setup().await;
    let d = scanner("s1");
    for mode in ["pack", "ship", "receive", "count"] {
        let o = t
            .send(
                &d,
                Channel::Evt,
                json!({"type":"scan","v":1,"msg_id":format!("m-{mode}"),
                "ts":"2026-12-01T10:00:00Z","code":"RED-M","symbology":"code128","mode":mode}),
            )
            .await;
        let (ok, text) = fb(&o);
        assert!(
            !ok && text.contains(mode) && text.contains("not on this node"),
            "{text}"
        );
    }
    assert_eq!(t.order(TID_A).state, LocalState::Released);
}
