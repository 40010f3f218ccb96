//! The floor's flows end to end: the real `wms-node` binary pulling paid orders from the
//! Taobao sandbox (real signed HTTP on port 0), its SKU master imported by the CLI, a
//! simulated scanner over MQTT, through the embedded broker and through Mosquitto.
//!
//! Pick an order to the end with a SIGKILL in the middle (the re-sent scan gets its original
//! answer and counts once; the scanner carries on after the restart), then a hold from the
//! operator reaching the scanner that holds the order's task, re-sent on reconnect until
//! acknowledged, and the put-back task of what was picked, back on the ledger.
//!
//! Goods in and out: receive and count at a scanner (the shop's stock follows), pick, pack at
//! a station (its printer gets the Cainiao label, printed again when it does not answer, the
//! same waybill), the dock's waybill scan ships through goods out (Taobao gets the shipment);
//! a SIGKILL in the middle of each flow, the scan re-sent after the restart applied once; a
//! held order refused at the dock with the reason.
//!
//! Held orders no device works on (picked and waiting for packing; labelled at the dock): a
//! refund through the sandbox's admin API makes a put-back task that the next scanner asking
//! for work gets; the dock's scan of the voided label says what to do; one put-back and one
//! waybill cancel across a SIGKILL right after the hold.

// Tests report failures by unwrapping; the support code polls with short sleeps on threads
// of its own (the real binary, Mosquitto).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod floor_support;

use floor_support::*;
use serde_json::Value;
use std::path::Path;
use taobao_sandbox::{NewItem, NewSku, PreIssued, SandboxConfig, SandboxHandle};

const SESSION: &str = "floor-session";
const ITEM: i64 = 600_000_000_777;
/// `(sku_id, code, barcode, location)`.
const SKUS: [(i64, &str, &str, &str); 3] = [
    (4_600_000_007_001, "FL-RED", "6910000000011", "B-02-01"),
    (4_600_000_007_002, "FL-BLUE", "6910000000028", "A-01-04"),
    (4_600_000_007_003, "FL-GREEN", "6910000000035", "C-07-02"),
];

/// The node's `[taobao]` settings for the sandbox `sb`, with the session it pre-issued.
fn shop(sb: &SandboxHandle) -> TaobaoAt {
    TaobaoAt {
        rest_url: sb.rest_url(),
        oauth_url: sb.oauth_url(),
        app_key: taobao_sandbox::DEFAULT_APP_KEY.into(),
        app_secret: taobao_sandbox::DEFAULT_APP_SECRET.into(),
        session: SESSION.into(),
    }
}

async fn sandbox() -> SandboxHandle {
    let sb = taobao_sandbox::spawn(SandboxConfig {
        sessions: vec![PreIssued::new(SESSION)],
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    sb.sandbox()
        .create_item(NewItem {
            num_iid: ITEM,
            title: "地面测试".into(),
            skus: SKUS
                .iter()
                .map(|(id, code, _, _)| NewSku {
                    sku_id: *id,
                    outer_id: Some((*code).into()),
                    quantity: 1000,
                    ..NewSku::default()
                })
                .collect(),
            ..NewItem::default()
        })
        .unwrap();
    sb
}

/// A paid trade of `(sku index, units)` lines.
fn paid(sb: &SandboxHandle, lines: &[(usize, i64)]) -> u64 {
    let t = taobao_sandbox::NewTrade {
        orders: lines
            .iter()
            .map(|(k, num)| taobao_sandbox::NewOrder {
                num_iid: ITEM,
                sku_id: Some(SKUS[*k].0),
                num: *num,
            })
            .collect(),
        ..taobao_sandbox::NewTrade::default()
    };
    let c = sb.sandbox().create_trade(t).unwrap();
    u64::try_from(c.tid).unwrap()
}

fn import_skus(cfg: &NodeConfig, dir: &Path) {
    let mut csv = String::from("sku,barcode,name,on_hand,num_iid,sku_id,location\n");
    for (id, code, barcode, loc) in SKUS {
        csv.push_str(&format!("{code},{barcode},{code},50,{ITEM},{id},{loc}\n"));
    }
    let file = dir.join("skus.csv");
    std::fs::write(&file, csv).unwrap();
    let (code, _, err) = cli(&cfg.path, &["sku", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "sku import: {err}");
}

/// `orders show TID --json`, or the error while the node has not pulled it yet.
fn order(cfg: &NodeConfig, tid: u64) -> Value {
    let (code, out, err) = cli(&cfg.path, &["orders", "show", &tid.to_string(), "--json"]);
    if code != 0 {
        return Value::String(err);
    }
    serde_json::from_str(&out).unwrap()
}

async fn wait_state(cfg: &NodeConfig, tid: u64, state: &str) {
    let mut last = Value::Null;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        last = order(cfg, tid);
        if last["state"] == state {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("order {tid} never {state}: {last}");
}

fn scan_code(msg_id: &str, code: &str) -> String {
    format!(
        r#"{{"type":"scan","v":1,"msg_id":"{msg_id}","ts":"2026-12-07T08:00:00Z","code":"{code}","symbology":"ean13","mode":"pick"}}"#
    )
}

fn barcode(code: &str) -> &'static str {
    SKUS.iter()
        .find(|s| s.1 == code)
        .map(|s| s.2)
        .unwrap_or_else(|| panic!("no SKU {code}"))
}

/// Sends `payload` and returns the feedback to `msg_id`. Other answers are skipped: after a
/// SIGKILL the broker re-delivers an event the node had answered but not yet acknowledged,
/// and the node answers it again (with the original bytes).
async fn ask(d: &mut Device, payload: &str, msg_id: &str) -> Received {
    d.publish("evt", payload).await;
    expect(&mut d.rx, msg_id, |r| r.json()["re"] == msg_id).await
}

/// Asks for a task: the feedback, then the task itself.
async fn request(d: &mut Device, msg_id: &str) -> (Value, Value) {
    let fb = ask(d, &request_task(msg_id), msg_id).await.json();
    assert_eq!(fb["ok"], true, "{fb}");
    let task = expect(&mut d.rx, "a task", |r| r.json()["type"] == "task")
        .await
        .json();
    (fb, task)
}

async fn scan(d: &mut Device, msg_id: &str, code: &str) -> Received {
    ask(d, &scan_code(msg_id, barcode(code)), msg_id).await
}

async fn pick_hold_put_back(kind: &str) {
    let sb = sandbox().await;
    // Two paid orders: A (2 red, 1 blue) and B (1 green); which is due first depends on the
    // sandbox clock, so both cases are walked.
    let tid_a = paid(&sb, &[(0, 2), (1, 1)]);
    let tid_b = paid(&sb, &[(2, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("data").join("mosquitto");
    let mut mosquitto = None;
    let broker = match kind {
        "mosquitto" => BrokerKind::External { port: free_port() },
        _ => BrokerKind::Embedded,
    };
    let cfg = write_config_with(dir.path(), &broker, Some(&shop(&sb)));
    // `devices add` creates the store file; the SKU master goes in before any order arrives.
    let pw = add_device(&cfg.path, "scanner", "fl-1");
    import_skus(&cfg, dir.path());
    let node = Node::start(&cfg);
    let port = match &broker {
        BrokerKind::External { port } => {
            // The node wrote the password and ACL files at start.
            wait_until("mosquitto files", || files.join("acl").is_file()).await;
            mosquitto = Some(Mosquitto::start(*port, &files));
            *port
        }
        BrokerKind::Embedded => node.broker_port(),
    };
    node.wait_connected(1);
    wait_state(&cfg, tid_a, "released").await;
    wait_state(&cfg, tid_b, "released").await;

    // Pick: the first order out, its lines in walking order (A-01 before B-02).
    let mut d = Device::connect(port, "scanner", "fl-1", &pw).await;
    let (_, task) = request(&mut d, "r-1").await;
    let tid: u64 = task["tid"].as_str().unwrap().parse().unwrap();
    assert!(tid == tid_a || tid == tid_b, "{task}");
    if tid == tid_b {
        let v = scan(&mut d, "b-1", "FL-GREEN").await.json();
        assert_eq!(
            (v["ok"].as_bool(), v["re"].as_str()),
            (Some(true), Some("b-1")),
            "{v}"
        );
        wait_state(&cfg, tid_b, "picked").await;
        let (_, t) = request(&mut d, "r-2").await;
        assert_eq!(t["tid"], tid_a.to_string(), "{t}");
    }
    // Order A: 1 blue at A-01-04 first, then 2 red at B-02-01.
    let (_, task) = request(&mut d, "r-3").await;
    assert_eq!(task["tid"], tid_a.to_string(), "{task}");
    assert_eq!(task["next"]["location"], "A-01-04", "{task}");
    assert_eq!(task["remaining"], 3);
    let wrong = scan(&mut d, "a-0", "FL-GREEN").await.json();
    assert_eq!(
        (wrong["ok"].as_bool(), wrong["beep"].as_str()),
        (Some(false), Some("error"))
    );
    assert!(
        wrong["text"].as_str().unwrap().starts_with("wrong item"),
        "{wrong}"
    );
    let first = scan(&mut d, "a-1", "FL-BLUE").await;
    assert_eq!(first.json()["ok"], true, "{}", first.json());
    assert_eq!(first.json()["next"]["location"], "B-02-01");

    // SIGKILL after the scan's OK: it was committed. The scanner sends it again (it never
    // saw a PUBACK, say) and gets the very same answer; it is not counted twice.
    node.sigkill();
    let node = Node::start(&cfg);
    let port = match &broker {
        BrokerKind::External { port } => *port,
        BrokerKind::Embedded => node.broker_port(),
    };
    node.wait_connected(1);
    // Its connection goes (dropping the handle would leave its event loop reconnecting with
    // the same client id, and two clients would take the session from each other).
    d.vanish();
    let mut d = Device::connect(port, "scanner", "fl-1", &pw).await;
    assert_eq!(scan(&mut d, "a-1", "FL-BLUE").await.payload, first.payload);
    let (_, again) = request(&mut d, "r-4").await;
    assert_eq!(
        again["remaining"], 2,
        "the re-sent scan counted once: {again}"
    );
    assert_eq!(scan(&mut d, "a-2", "FL-RED").await.json()["ok"], true);

    // The operator holds A while one red unit is still to pick: the scanner holding the task
    // is told at once.
    let (code, _, err) = cli(
        &cfg.path,
        &[
            "orders",
            "hold",
            &tid_a.to_string(),
            "--reason",
            "buyer called",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let hold = expect(&mut d.rx, "a hold", |r| r.json()["type"] == "hold")
        .await
        .json();
    assert_eq!(hold["type"], "hold", "{hold}");
    assert_eq!(hold["tid"], tid_a.to_string());
    assert_eq!(hold["action"], "put_back");
    // Its scans are refused with the reason.
    let refused = scan(&mut d, "a-3", "FL-RED").await.json();
    assert_eq!(refused["ok"], false);
    assert!(
        refused["text"].as_str().unwrap().starts_with("STOP"),
        "{refused}"
    );
    // The scanner drops off without acknowledging: on its return the hold comes again.
    d.vanish();
    let mut d = Device::connect(port, "scanner", "fl-1", &pw).await;
    let again = expect(&mut d.rx, "the hold again", |r| r.json()["type"] == "hold").await;
    assert_eq!(again.json()["hold_id"], hold["hold_id"]);
    d.publish(
        "reply",
        format!(r#"{{"type":"hold_ack","v":1,"re":{}}}"#, hold["hold_id"]),
    )
    .await;
    // The put-back task: what was picked (1 blue, 1 red) back to the bins.
    let put = expect(&mut d.rx, "a task", |r| r.json()["type"] == "task")
        .await
        .json();
    assert_eq!(put["type"], "task", "{put}");
    assert_eq!(put["task_id"], format!("putback-{tid_a}"));
    assert_eq!(put["remaining"], 2, "{put}");
    // The picked units wait in the tote: off the shelf's figure until scanned back.
    assert_eq!(stock(&cfg, "FL-BLUE")["on_hand"], 49);
    assert_eq!(stock(&cfg, "FL-RED")["on_hand"], 49);
    let first = ask(&mut d, &scan_code("p-0", barcode("FL-BLUE")), "p-0").await;
    assert_eq!(first.json()["ok"], true, "{}", first.json());
    assert!(node.counter("wms_node_floor_holds_resent_total") >= 1.0);
    // SIGKILL in the middle of the put-back: the re-sent scan counts once.
    node.sigkill();
    let node = Node::start(&cfg);
    let port = match &broker {
        BrokerKind::External { port } => *port,
        BrokerKind::Embedded => node.broker_port(),
    };
    node.wait_connected(1);
    d.vanish();
    let mut d = Device::connect(port, "scanner", "fl-1", &pw).await;
    let again = ask(&mut d, &scan_code("p-0", barcode("FL-BLUE")), "p-0").await;
    assert_eq!(again.payload, first.payload);
    let v = ask(&mut d, &scan_code("p-1", barcode("FL-RED")), "p-1")
        .await
        .json();
    assert_eq!(v["ok"], true, "{v}");
    wait_state(&cfg, tid_a, "put_back").await;
    assert_eq!(
        stock(&cfg, "FL-BLUE")["on_hand"],
        50,
        "back on the ledger, once"
    );
    assert_eq!(stock(&cfg, "FL-RED")["on_hand"], 50);
    assert!(node.sigterm().success());
    drop(mosquitto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_with_a_sigkill_then_a_hold_and_its_put_back_through_the_embedded_broker() {
    pick_hold_put_back("embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pick_with_a_sigkill_then_a_hold_and_its_put_back_through_mosquitto() {
    if !Mosquitto::available() {
        return;
    }
    pick_hold_put_back("mosquitto").await;
}

/// `stock show SKU --json`: on hand and the rest.
fn stock(cfg: &NodeConfig, sku: &str) -> Value {
    let (code, out, err) = cli(&cfg.path, &["stock", "show", sku, "--json"]);
    assert_eq!(code, 0, "stock show: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    match v {
        Value::Array(mut a) => a.remove(0),
        v => v,
    }
}

fn scan_mode(msg_id: &str, code: &str, mode: &str, qty: Option<u32>) -> String {
    let qty = qty.map(|q| format!(r#","qty":{q}"#)).unwrap_or_default();
    format!(
        r#"{{"type":"scan","v":1,"msg_id":"{msg_id}","ts":"2026-12-07T08:00:00Z","code":"{code}","symbology":"code128","mode":"{mode}"{qty}}}"#
    )
}

/// A fleet of simulated devices on one node: they reconnect after the node's restarts.
struct Floor {
    cfg: NodeConfig,
    broker: BrokerKind,
    node: Option<Node>,
    port: u16,
    passwords: std::collections::BTreeMap<String, String>,
    /// The external broker, when the floor runs on Mosquitto: stopped when the floor is dropped.
    _mosquitto: Option<Mosquitto>,
}

impl Floor {
    /// A node with goods out ([`with_goods_out`]) on the shop in `sb`, the SKU master imported
    /// and `devices` (class, id) registered, started on the embedded broker or, for `kind`
    /// "mosquitto", on a Mosquitto run from the files the node writes into `dir`.
    async fn goods_out(
        dir: &Path,
        sb: &SandboxHandle,
        kind: &str,
        devices: &[(&str, &str)],
    ) -> Floor {
        let files = dir.join("data").join("mosquitto");
        let broker = match kind {
            "mosquitto" => BrokerKind::External { port: free_port() },
            _ => BrokerKind::Embedded,
        };
        let cfg = write_config_with(dir, &broker, Some(&shop(sb)));
        with_goods_out(&cfg);
        let mut passwords = std::collections::BTreeMap::new();
        for &(class, id) in devices {
            passwords.insert(format!("{class}/{id}"), add_device(&cfg.path, class, id));
        }
        import_skus(&cfg, dir);
        let node = Node::start(&cfg);
        let mut mosquitto = None;
        let port = match &broker {
            BrokerKind::External { port } => {
                wait_until("mosquitto files", || files.join("acl").is_file()).await;
                mosquitto = Some(Mosquitto::start(*port, &files));
                *port
            }
            BrokerKind::Embedded => node.broker_port(),
        };
        node.wait_connected(1);
        Floor {
            cfg,
            broker,
            node: Some(node),
            port,
            passwords,
            _mosquitto: mosquitto,
        }
    }

    /// SIGKILLs the node and starts it again; returns the broker port.
    fn restart(&mut self) {
        if let Some(n) = self.node.take() {
            n.sigkill();
        }
        let node = Node::start(&self.cfg);
        self.port = match &self.broker {
            BrokerKind::External { port } => *port,
            BrokerKind::Embedded => node.broker_port(),
        };
        node.wait_connected(1);
        self.node = Some(node);
    }

    async fn device(&self, class: &str, id: &str) -> Device {
        let pw = &self.passwords[&format!("{class}/{id}")];
        Device::connect(self.port, class, id, pw).await
    }
}

/// Sends `payload` (with `msg_id`), SIGKILLs the node once the OK is out, restarts it, and
/// sends the same event again from a fresh connection: the very same answer. Returns the
/// device, reconnected.
async fn once_across_a_sigkill(
    f: &mut Floor,
    d: Device,
    payload: &str,
    msg_id: &str,
) -> (Device, Value) {
    let mut d = d;
    let first = ask(&mut d, payload, msg_id).await;
    assert_eq!(first.json()["ok"], true, "{}", first.json());
    let (class, id) = (d.class.clone(), d.id.clone());
    f.restart();
    d.vanish();
    let mut d = f.device(&class, &id).await;
    let again = ask(&mut d, payload, msg_id).await;
    assert_eq!(
        again.payload, first.payload,
        "a re-sent {msg_id} gets its original answer"
    );
    (d, first.json())
}

/// Goods out in `cfg`: parcels not merged, Cainiao e-waybills from the sandbox, station
/// `pk-1` printing on `lp-1`.
fn with_goods_out(cfg: &NodeConfig) {
    // Pull every second: a listing's first figure is a correction that settles once intake
    // has passed its reading of the shop (docs/STOCK.md), about 12 s after start.
    let mut text = std::fs::read_to_string(&cfg.path).unwrap();
    if !text.contains("poll_interval") {
        text = text.replacen("[taobao]\n", "[taobao]\npoll_interval = \"1s\"\n", 1);
    }
    text.push_str(
        "[shipping]\nmerge_orders = false\n\
         [waybill]\ncp_code = \"YTO\"\nbranch_code = \"SIM-01\"\n\
         template_url = \"http://cloudprint.cainiao.com/template/standard/101\"\n\
         sender_name = \"模拟仓\"\nsender_mobile = \"13800000000\"\nsender_province = \"浙江省\"\n\
         sender_city = \"杭州市\"\nsender_detail = \"仓前街道 1 号\"\n\
         [floor]\nprint_timeout = \"5s\"\n\
         [[floor.stations]]\nscanner = \"pk-1\"\nprinter = \"lp-1\"\nformat = \"cainiao\"\n",
    );
    std::fs::write(&cfg.path, text).unwrap();
}

async fn goods_in_and_out(kind: &str) {
    let sb = sandbox().await;
    // A: 1 red + 1 blue, packed, labelled and shipped; B: 1 red, held at the dock. Same
    // buyer in the sandbox, so parcels are not merged here (the unit tests merge).
    let tid_a = paid(&sb, &[(0, 1), (1, 1)]);
    let tid_b = paid(&sb, &[(0, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let mut f = Floor::goods_out(
        dir.path(),
        &sb,
        kind,
        &[
            ("scanner", "fl-1"),
            ("scanner", "pk-1"),
            ("printer", "lp-1"),
            ("scanner", "dk-1"),
            ("scanner", "rc-1"),
        ],
    )
    .await;
    wait_state(&f.cfg, tid_a, "released").await;
    wait_state(&f.cfg, tid_b, "released").await;
    let green = SKUS[2];
    let shop_qty = |sb: &SandboxHandle| -> i64 {
        sb.sandbox()
            .item(ITEM)
            .unwrap()
            .skus
            .iter()
            .find(|s| s.sku_id == green.0)
            .unwrap()
            .quantity
    };

    // The shop's figure (1000) is corrected to the ledger's (50) first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while shop_qty(&sb) != 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first figure never settled: the shop shows {}",
            shop_qty(&sb)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Receive 7 green: on hand 57, once, across a SIGKILL.
    let rc = f.device("scanner", "rc-1").await;
    let (rc, v) = once_across_a_sigkill(
        &mut f,
        rc,
        &scan_mode("rc-1", green.2, "receive", Some(7)),
        "rc-1",
    )
    .await;
    assert!(v["text"].as_str().unwrap().contains("on hand 57"), "{v}");
    assert_eq!(stock(&f.cfg, green.1)["on_hand"], 57);
    // Count 40: on hand set, once, across a SIGKILL; the shop's figure follows.
    let (_rc, v) = once_across_a_sigkill(
        &mut f,
        rc,
        &scan_mode("ct-1", green.1, "count", Some(40)),
        "ct-1",
    )
    .await;
    assert!(v["text"].as_str().unwrap().contains("-17"), "{v}");
    assert_eq!(stock(&f.cfg, green.1)["on_hand"], 40);
    wait_until("the shop's stock follows the count", || shop_qty(&sb) == 40).await;

    // Pick A (blue, then red), a SIGKILL after the first scan; B (1 red) when it comes first
    // (which is due first depends on the sandbox clock).
    let mut picker = f.device("scanner", "fl-1").await;
    let (_, mut task) = request(&mut picker, "r-1").await;
    let mut b_picked = false;
    if task["tid"].as_str() == Some(tid_b.to_string().as_str()) {
        assert_eq!(scan(&mut picker, "pb-1", "FL-RED").await.json()["ok"], true);
        b_picked = true;
        task = request(&mut picker, "r-1b").await.1;
    }
    assert_eq!(task["tid"], tid_a.to_string(), "{task}");
    let (mut picker, _) = once_across_a_sigkill(
        &mut f,
        picker,
        &scan_code("pa-1", barcode("FL-BLUE")),
        "pa-1",
    )
    .await;
    let v = scan(&mut picker, "pa-2", "FL-RED").await.json();
    assert!(v["text"].as_str().unwrap().contains("picked"), "{v}");

    // Pack A at station pk-1: the order, then blue (a SIGKILL), then red: packed.
    let printer = f.device("printer", "lp-1").await;
    let mut pk = f.device("scanner", "pk-1").await;
    let v = ask(
        &mut pk,
        &scan_mode("pk-0", &tid_a.to_string(), "pack", None),
        "pk-0",
    )
    .await
    .json();
    assert_eq!(v["ok"], true, "{v}");
    let (mut pk, _) = once_across_a_sigkill(
        &mut f,
        pk,
        &scan_mode("pk-1", barcode("FL-BLUE"), "pack", None),
        "pk-1",
    )
    .await;
    printer.vanish();
    let mut printer = f.device("printer", "lp-1").await;
    let v = ask(&mut pk, &scan_mode("pk-2", "FL-RED", "pack", None), "pk-2")
        .await
        .json();
    assert!(v["text"].as_str().unwrap().contains("packed"), "{v}");
    // The label: Cainiao print data and template, to the station's printer.
    let print = expect(&mut printer.rx, "a print", |r| r.json()["type"] == "print")
        .await
        .json();
    assert_eq!(print["format"], "cainiao", "{print}");
    assert_eq!(
        print["template_url"],
        "http://cloudprint.cainiao.com/template/standard/101"
    );
    // No print_result: after print_timeout the same waybill again, a new job.
    let again = expect(&mut printer.rx, "the print again", |r| {
        r.json()["type"] == "print"
    })
    .await
    .json();
    assert_ne!(again["job_id"], print["job_id"]);
    assert_eq!(again["data"], print["data"]);
    let told = expect(&mut pk.rx, "the station told", |r| {
        r.json()["text"]
            .as_str()
            .is_some_and(|t| t.contains("sent again"))
    })
    .await;
    assert_eq!(told.json()["re"], Value::Null);
    assert_eq!(
        sb.sandbox().calls(Some("cainiao.waybill.ii.get")).len(),
        1,
        "one waybill"
    );
    printer
        .publish(
            "reply",
            format!(
                r#"{{"type":"print_result","v":1,"re":{},"status":"printed"}}"#,
                again["job_id"]
            ),
        )
        .await;
    let done = expect(&mut pk.rx, "label printed", |r| {
        r.json()["text"]
            .as_str()
            .is_some_and(|t| t.contains("dock"))
    })
    .await
    .json();
    assert_eq!(done["ok"], true, "{done}");
    wait_state(&f.cfg, tid_a, "labelled").await;

    // Ship A at the dock: the waybill's number, once across a SIGKILL; Taobao gets it.
    let waybill = sb
        .sandbox()
        .waybills()
        .into_iter()
        .find(|w| w.trade_order_list.contains(&tid_a.to_string()))
        .unwrap()
        .waybill_code;
    let dk = f.device("scanner", "dk-1").await;
    let (mut dk, v) = once_across_a_sigkill(
        &mut f,
        dk,
        &scan_mode("dk-1", &waybill, "ship", None),
        "dk-1",
    )
    .await;
    assert!(
        v["text"].as_str().unwrap().contains(&tid_a.to_string()),
        "{v}"
    );
    wait_until("Taobao has the shipment", || {
        sb.sandbox()
            .shipments()
            .iter()
            .any(|s| s.tid == tid_a as i64 && s.out_sid == waybill)
    })
    .await;
    assert_eq!(
        sb.sandbox()
            .shipments()
            .iter()
            .filter(|s| s.tid == tid_a as i64)
            .count(),
        1,
        "shipped once"
    );
    let v = ask(&mut dk, &scan_mode("dk-2", &waybill, "ship", None), "dk-2")
        .await
        .json();
    assert!(
        v["text"].as_str().unwrap().contains("shipped already"),
        "{v}"
    );

    // B: picked, packed and labelled, then held: the dock refuses it with the reason. The
    // other devices come back after the restart (the embedded broker went with the node).
    picker.vanish();
    let mut picker = f.device("scanner", "fl-1").await;
    pk.vanish();
    let mut pk = f.device("scanner", "pk-1").await;
    printer.vanish();
    let mut printer = f.device("printer", "lp-1").await;
    if !b_picked {
        let (_, task) = request(&mut picker, "r-2").await;
        assert_eq!(task["tid"], tid_b.to_string(), "{task}");
        assert_eq!(scan(&mut picker, "pb-1", "FL-RED").await.json()["ok"], true);
    }
    assert_eq!(
        ask(
            &mut pk,
            &scan_mode("pkb-0", &tid_b.to_string(), "pack", None),
            "pkb-0"
        )
        .await
        .json()["ok"],
        true
    );
    assert_eq!(
        ask(
            &mut pk,
            &scan_mode("pkb-1", "FL-RED", "pack", None),
            "pkb-1"
        )
        .await
        .json()["ok"],
        true
    );
    let print = expect(&mut printer.rx, "B's print", |r| {
        r.json()["type"] == "print"
    })
    .await
    .json();
    printer
        .publish(
            "reply",
            format!(
                r#"{{"type":"print_result","v":1,"re":{},"status":"printed"}}"#,
                print["job_id"]
            ),
        )
        .await;
    wait_state(&f.cfg, tid_b, "labelled").await;
    let (code, _, err) = cli(
        &f.cfg.path,
        &[
            "orders",
            "hold",
            &tid_b.to_string(),
            "--reason",
            "buyer called",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let waybill_b = sb
        .sandbox()
        .waybills()
        .into_iter()
        .find(|w| w.trade_order_list.contains(&tid_b.to_string()))
        .unwrap()
        .waybill_code;
    let v = ask(
        &mut dk,
        &scan_mode("dk-3", &waybill_b, "ship", None),
        "dk-3",
    )
    .await
    .json();
    assert_eq!(v["ok"], false, "{v}");
    let t = v["text"].as_str().unwrap();
    assert!(t.contains("STOP") && t.contains("buyer called"), "{v}");
    assert!(
        !sb.sandbox()
            .shipments()
            .iter()
            .any(|s| s.tid == tid_b as i64)
    );
    assert!(f.node.take().unwrap().sigterm().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_count_pick_pack_label_ship_with_a_sigkill_in_each_through_the_embedded_broker() {
    goods_in_and_out("embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_count_pick_pack_label_ship_with_a_sigkill_in_each_through_mosquitto() {
    if !Mosquitto::available() {
        return;
    }
    goods_in_and_out("mosquitto").await;
}

/// A refund arrives on the sandbox while a packing station is in the middle of the order's
/// parcel (its waybill already taken): the station gets `hold` at once, its next scan is
/// refused with the reason; the node is SIGKILLed before the station acknowledges, and the
/// hold comes again after the restart; acknowledged, every unit picked for the order is a
/// put-back task for the station, off the shelf's figure until scanned back; the order ends
/// `put_back`, and its waybill is cancelled at Cainiao through the outbox.
async fn hold_mid_pack(kind: &str) {
    let sb = sandbox().await;
    let tid = paid(&sb, &[(0, 1), (1, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let mut f = Floor::goods_out(
        dir.path(),
        &sb,
        kind,
        &[("scanner", "fl-1"), ("scanner", "pk-1")],
    )
    .await;
    wait_state(&f.cfg, tid, "released").await;

    // Picked whole; the waybill taken at the desk (`waybill get`); at the station the order,
    // then one of its two units.
    let mut picker = f.device("scanner", "fl-1").await;
    let (_, task) = request(&mut picker, "r-1").await;
    assert_eq!(task["tid"], tid.to_string(), "{task}");
    assert_eq!(scan(&mut picker, "p-1", "FL-BLUE").await.json()["ok"], true);
    assert_eq!(scan(&mut picker, "p-2", "FL-RED").await.json()["ok"], true);
    wait_state(&f.cfg, tid, "picked").await;
    let (code, _, err) = cli(&f.cfg.path, &["waybill", "get", &tid.to_string()]);
    assert_eq!(code, 0, "waybill get: {err}");
    let waybill = sb
        .sandbox()
        .waybills()
        .into_iter()
        .find(|w| w.trade_order_list.contains(&tid.to_string()))
        .unwrap()
        .waybill_code;
    let mut pk = f.device("scanner", "pk-1").await;
    let v = ask(
        &mut pk,
        &scan_mode("k-0", &tid.to_string(), "pack", None),
        "k-0",
    )
    .await
    .json();
    assert_eq!(v["ok"], true, "{v}");
    let v = ask(&mut pk, &scan_mode("k-1", "FL-BLUE", "pack", None), "k-1")
        .await
        .json();
    assert_eq!(v["ok"], true, "{v}");

    // The buyer asks for a refund: the station is told at once.
    sb.sandbox().refund(tid as i64, Default::default()).unwrap();
    let hold = expect(&mut pk.rx, "a hold", |r| r.json()["type"] == "hold")
        .await
        .json();
    assert_eq!(hold["tid"], tid.to_string(), "{hold}");
    assert_eq!(hold["action"], "put_back", "{hold}");
    assert_eq!(hold["task_id"], format!("pack-{tid}"), "{hold}");
    assert!(
        hold["reason"].as_str().unwrap().contains("refund"),
        "{hold}"
    );
    // Its next scan is refused with the reason.
    let v = ask(&mut pk, &scan_mode("k-2", "FL-RED", "pack", None), "k-2")
        .await
        .json();
    assert_eq!(v["ok"], false, "{v}");
    let t = v["text"].as_str().unwrap();
    assert!(t.starts_with("STOP") && t.contains("refund"), "{v}");

    // SIGKILL before the station acknowledges: after the restart it gets the same hold.
    f.restart();
    pk.vanish();
    picker.vanish();
    let mut pk = f.device("scanner", "pk-1").await;
    let again = expect(&mut pk.rx, "the hold again", |r| r.json()["type"] == "hold")
        .await
        .json();
    assert_eq!(again["hold_id"], hold["hold_id"]);
    pk.publish(
        "reply",
        format!(r#"{{"type":"hold_ack","v":1,"re":{}}}"#, hold["hold_id"]),
    )
    .await;
    // Every unit picked for it (both, not only the one verified) goes back.
    let put = expect(&mut pk.rx, "the put-back task", |r| {
        r.json()["type"] == "task"
    })
    .await
    .json();
    assert_eq!(put["task_id"], format!("putback-{tid}"), "{put}");
    assert_eq!(put["remaining"], 2, "{put}");
    assert_eq!(stock(&f.cfg, "FL-BLUE")["on_hand"], 49);
    assert_eq!(stock(&f.cfg, "FL-RED")["on_hand"], 49);
    for (i, code) in ["FL-BLUE", "FL-RED"].iter().enumerate() {
        let id = format!("b-{i}");
        let v = ask(&mut pk, &scan_mode(&id, barcode(code), "pack", None), &id)
            .await
            .json();
        assert_eq!(v["ok"], true, "{v}");
    }
    wait_state(&f.cfg, tid, "put_back").await;
    assert_eq!(stock(&f.cfg, "FL-BLUE")["on_hand"], 50, "back, once");
    assert_eq!(stock(&f.cfg, "FL-RED")["on_hand"], 50);
    // The parcel will not ship: goods out voids its waybill and cancels it at Cainiao.
    wait_until("the waybill is cancelled at Cainiao", || {
        sb.sandbox()
            .waybills()
            .iter()
            .any(|w| w.waybill_code == waybill && w.cancelled)
    })
    .await;
    assert_eq!(
        sb.sandbox().calls(Some("cainiao.waybill.ii.cancel")).len(),
        1,
        "cancelled once"
    );
    assert!(f.node.take().unwrap().sigterm().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_mid_pack_holds_the_station_across_a_sigkill_and_its_goods_go_back_embedded() {
    hold_mid_pack("embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_mid_pack_holds_the_station_across_a_sigkill_and_its_goods_go_back_mosquitto() {
    if !Mosquitto::available() {
        return;
    }
    hold_mid_pack("mosquitto").await;
}

/// Alerts reach `wms/{site}/gateway/{id}/alert`: a node SIGKILLed three times in a row
/// raises `restart_loop` at its next start, before its floor is up; a tool subscribed to the
/// node's alert topic on the site's broker gets it as `raised` once the node is connected.
/// Through Mosquitto: its observer listener subscribes before the node starts (a device on
/// the embedded broker can only connect once the node is up, after the announcement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_raised_at_start_reaches_the_gateway_alert_topic() {
    if !Mosquitto::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("data").join("mosquitto");
    let port = free_port();
    let broker = BrokerKind::External { port };
    let cfg = write_config(dir.path(), &broker);
    add_device(&cfg.path, "scanner", "sup-1");
    let mut node = Node::start(&cfg);
    wait_until("mosquitto files", || files.join("acl").is_file()).await;
    let _mosquitto = Mosquitto::start(port, &files);
    let topic = format!("wms/{SITE}/gateway/{NODE_ID}/alert");
    let (_observer, mut rx) = observer(_mosquitto.observer_port, &topic).await;
    for _ in 0..3 {
        node.wait_connected(1);
        node.sigkill();
        node = Node::start(&cfg);
    }
    node.wait_connected(1);
    let got = expect(&mut rx, "the restart_loop alert", |r| {
        r.topic == topic && r.json()["code"] == "restart_loop"
    })
    .await
    .json();
    assert_eq!(got["event"], "raised", "{got}");
    assert_eq!(got["node"], NODE_ID, "{got}");
    assert!(node.sigterm().success());
}

/// A refund of every line of `tid`, asked for through the sandbox's admin API over HTTP (as a
/// buyer's refund reaches the shop).
async fn refund_over_http(sb: &SandboxHandle, tid: u64) {
    let r = reqwest::Client::new()
        .post(format!("{}/trades/{tid}/refund", sb.admin_url()))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "refund {tid}: {}", r.status());
}

/// Asks for a task with `d` and scans it to the end, each step's SKU by barcode (a pick or a
/// put-back, any order); returns the task as it was handed out and the last feedback.
async fn work_task(d: &mut Device, n: &str) -> (Value, Value) {
    let (fb, task) = request(d, &format!("{n}-r")).await;
    let mut next = fb["next"].clone();
    let mut last = fb;
    let mut i = 0;
    while let Some(code) = next["code"].as_str() {
        i += 1;
        let id = format!("{n}-{i}");
        last = scan(d, &id, code).await.json();
        assert_eq!(last["ok"], true, "{last}");
        next = last["next"].clone();
    }
    (task, last)
}

/// Held orders that no device is working on (issue 15's last gap): A (1 red, 1 blue) picked
/// and waiting for packing, B (1 green) packed and labelled at the dock. A refund of A on the
/// sandbox: a put-back task waits; the next scanner asking for work gets it and scans the
/// units back, on hand returns. A refund of B, and the node SIGKILLed right after the hold
/// is seen: after the restart (its sweep), the dock's scan of B's label is refused with what
/// to do, one put-back task and one `cainiao.waybill.ii.cancel` (sent again only if the kill
/// cut it after Cainiao had it and before the node recorded the answer). C
/// (2 red), picked too, is held by an operator on the stopped node's store file: the floor
/// never heard of that hold, and the next start's sweep makes its put-back.
async fn idle_hold(kind: &str) {
    let sb = sandbox().await;
    let tid_a = paid(&sb, &[(0, 1), (1, 1)]);
    let tid_b = paid(&sb, &[(2, 1)]);
    let tid_c = paid(&sb, &[(0, 2)]);
    let dir = tempfile::tempdir().unwrap();
    let mut f = Floor::goods_out(
        dir.path(),
        &sb,
        kind,
        &[
            ("scanner", "fl-1"),
            ("scanner", "fl-2"),
            ("scanner", "pk-1"),
            ("printer", "lp-1"),
            ("scanner", "dk-1"),
        ],
    )
    .await;
    for tid in [tid_a, tid_b, tid_c] {
        wait_state(&f.cfg, tid, "released").await;
    }

    // All three picked by fl-1 (which comes first depends on the sandbox clock); C waits for
    // packing to the end.
    let mut picker = f.device("scanner", "fl-1").await;
    let mut picked = Vec::new();
    for n in ["a", "b", "c"] {
        let (task, last) = work_task(&mut picker, n).await;
        assert!(last["text"].as_str().unwrap().contains("picked"), "{last}");
        picked.push(task["tid"].as_str().unwrap().to_owned());
    }
    picked.sort();
    let mut want = vec![tid_a.to_string(), tid_b.to_string(), tid_c.to_string()];
    want.sort();
    assert_eq!(picked, want);
    // B packed at pk-1, its label printed on lp-1.
    let mut printer = f.device("printer", "lp-1").await;
    let mut pk = f.device("scanner", "pk-1").await;
    let v = ask(
        &mut pk,
        &scan_mode("k-0", &tid_b.to_string(), "pack", None),
        "k-0",
    )
    .await
    .json();
    assert_eq!(v["ok"], true, "{v}");
    let v = ask(
        &mut pk,
        &scan_mode("k-1", barcode("FL-GREEN"), "pack", None),
        "k-1",
    )
    .await
    .json();
    assert!(v["text"].as_str().unwrap().contains("packed"), "{v}");
    let print = expect(&mut printer.rx, "a print", |r| r.json()["type"] == "print")
        .await
        .json();
    printer
        .publish(
            "reply",
            format!(
                r#"{{"type":"print_result","v":1,"re":{},"status":"printed"}}"#,
                print["job_id"]
            ),
        )
        .await;
    wait_state(&f.cfg, tid_b, "labelled").await;
    let waybill = sb
        .sandbox()
        .waybills()
        .into_iter()
        .find(|w| w.trade_order_list.contains(&tid_b.to_string()))
        .unwrap()
        .waybill_code;
    for sku in ["FL-RED", "FL-BLUE", "FL-GREEN"] {
        assert_eq!(stock(&f.cfg, sku)["on_hand"], 50, "{sku}");
    }

    // (a) A refund of A: its goods wait in a tote for a put-back; the order is put back.
    refund_over_http(&sb, tid_a).await;
    wait_state(&f.cfg, tid_a, "put_back").await;
    assert_eq!(stock(&f.cfg, "FL-RED")["on_hand"], 49, "in a tote");
    assert_eq!(stock(&f.cfg, "FL-BLUE")["on_hand"], 49);
    // The station scanning A is told what to do.
    let v = ask(
        &mut pk,
        &scan_mode("k-2", &tid_a.to_string(), "pack", None),
        "k-2",
    )
    .await
    .json();
    assert_eq!(v["ok"], false, "{v}");
    let t = v["text"].as_str().unwrap();
    assert!(
        t.contains("refund") && t.contains(&format!("putback-{tid_a}")),
        "{v}"
    );
    // Another scanner asking for work gets the put-back and scans both units back.
    let mut back = f.device("scanner", "fl-2").await;
    let (task, last) = work_task(&mut back, "pa").await;
    assert_eq!(task["task_id"], format!("putback-{tid_a}"), "{task}");
    assert_eq!(task["remaining"], 2, "{task}");
    assert!(
        last["text"].as_str().unwrap().contains("back in its bin"),
        "{last}"
    );
    assert_eq!(stock(&f.cfg, "FL-RED")["on_hand"], 50, "back, once");
    assert_eq!(stock(&f.cfg, "FL-BLUE")["on_hand"], 50);

    // (b) A refund of B at the dock; the node is SIGKILLed as soon as the hold is seen.
    refund_over_http(&sb, tid_b).await;
    wait_until("B is held", || {
        order(&f.cfg, tid_b)["holds"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
    })
    .await;
    f.node.take().unwrap().sigkill();
    // The hold voided B's waybill; its cancel may have reached Cainiao before the kill. If the
    // node had not recorded that answer, the op is still queued and goes again after the
    // restart (the same op, delivered at least once); if it had, it never goes again.
    let cancelled_at_kill = sb.sandbox().calls(Some("cainiao.waybill.ii.cancel")).len();
    let (code, queued, err) = cli(&f.cfg.path, &["queue", "list", "--json"]);
    assert_eq!(code, 0, "queue list on the store file: {err}");
    let resent = cancelled_at_kill == 1 && queued.contains(&waybill);
    f.restart();
    for d in [picker, back, pk, printer] {
        d.vanish();
    }
    wait_state(&f.cfg, tid_b, "put_back").await;
    assert_eq!(stock(&f.cfg, "FL-GREEN")["on_hand"], 49, "in a tote");
    // The outbox delivers the cancel once the restarted node is back online (a minute at
    // most on a loaded CI machine).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !sb
        .sandbox()
        .waybills()
        .iter()
        .any(|w| w.waybill_code == waybill && w.cancelled)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "B's waybill never cancelled at Cainiao"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The dock scans B's label: refused, with what to do.
    let mut dock = f.device("scanner", "dk-1").await;
    let v = ask(&mut dock, &scan_mode("d-1", &waybill, "ship", None), "d-1")
        .await
        .json();
    assert_eq!(v["ok"], false, "{v}");
    let t = v["text"].as_str().unwrap();
    assert!(
        t.contains("voided")
            && t.contains("refund")
            && t.contains(&format!("put its goods back with task putback-{tid_b}")),
        "{v}"
    );
    // One put-back task: the first scanner gets it, the next one finds no work.
    let mut back = f.device("scanner", "fl-2").await;
    let (task, _) = work_task(&mut back, "pb").await;
    assert_eq!(task["task_id"], format!("putback-{tid_b}"), "{task}");
    assert_eq!(task["remaining"], 1, "{task}");
    assert_eq!(stock(&f.cfg, "FL-GREEN")["on_hand"], 50, "back, once");
    let mut picker = f.device("scanner", "fl-1").await;
    let fb = ask(&mut picker, &request_task("r-end"), "r-end")
        .await
        .json();
    assert!(fb["text"].as_str().unwrap().starts_with("no work"), "{fb}");
    // A hold the floor never heard of: C held by an operator on the stopped node's store
    // file. The next start's sweep makes its put-back (and A's and B's are not made again).
    f.node.take().unwrap().sigkill();
    picker.vanish();
    back.vanish();
    dock.vanish();
    let (code, _, err) = cli(
        &f.cfg.path,
        &[
            "orders",
            "hold",
            &tid_c.to_string(),
            "--reason",
            "buyer called",
        ],
    );
    assert_eq!(code, 0, "orders hold on the store file: {err}");
    assert_eq!(order(&f.cfg, tid_c)["state"], "picked");
    f.restart();
    wait_state(&f.cfg, tid_c, "put_back").await;
    assert_eq!(
        stock(&f.cfg, "FL-RED")["on_hand"],
        48,
        "C's two red in a tote"
    );
    let mut picker = f.device("scanner", "fl-1").await;
    let (task, _) = work_task(&mut picker, "pc").await;
    assert_eq!(task["task_id"], format!("putback-{tid_c}"), "{task}");
    assert_eq!(task["remaining"], 2, "{task}");
    let fb = ask(&mut picker, &request_task("r-end2"), "r-end2")
        .await
        .json();
    assert!(fb["text"].as_str().unwrap().starts_with("no work"), "{fb}");
    for sku in ["FL-RED", "FL-BLUE", "FL-GREEN"] {
        assert_eq!(stock(&f.cfg, sku)["on_hand"], 50, "{sku}");
    }
    assert!(
        cancelled_at_kill <= 1,
        "{cancelled_at_kill} cancels before the kill"
    );
    let cancels = sb.sandbox().calls(Some("cainiao.waybill.ii.cancel"));
    assert_eq!(
        cancels.len(),
        1 + usize::from(resent),
        "cancelled once, again only if unrecorded at the kill ({cancelled_at_kill} before it)"
    );
    for tid in [tid_a, tid_b, tid_c] {
        assert_eq!(order(&f.cfg, tid)["state"], "put_back");
    }
    let (code, out, err) = cli(&f.cfg.path, &["queue", "list", "--state", "dead", "--json"]);
    assert_eq!(code, 0, "queue list: {err}");
    assert!(!out.contains("waybill"), "no cancel left dead: {out}");
    assert!(
        sb.sandbox()
            .calls(Some("taobao.logistics.offline.send"))
            .is_empty(),
        "nothing shipped"
    );
    assert!(f.node.take().unwrap().sigterm().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_orders_no_device_holds_get_a_put_back_task_once_across_a_sigkill_embedded() {
    idle_hold("embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_orders_no_device_holds_get_a_put_back_task_once_across_a_sigkill_mosquitto() {
    if !Mosquitto::available() {
        return;
    }
    idle_hold("mosquitto").await;
}

/// `[floor] language = "zh"` (the CLI stays English, `[node] language` unset): a scanner
/// through the embedded broker gets Chinese texts with the machine fields as in English
/// (`ok`, `beep`, `next`, ids, `remaining`, the hold's `reason` and `action`). Then the floor
/// is switched to English and the node restarted: what was sent before is sent again as it
/// was (a re-sent scan's remembered answer, the unacknowledged hold), new answers are English.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_speaks_chinese_and_what_it_said_is_resent_as_said() {
    let sb = sandbox().await;
    let tid = paid(&sb, &[(0, 1)]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config_with(dir.path(), &BrokerKind::Embedded, Some(&shop(&sb)));
    let toml = std::fs::read_to_string(&cfg.path).unwrap();
    std::fs::write(&cfg.path, format!("{toml}\n[floor]\nlanguage = \"zh\"\n")).unwrap();
    let pw = add_device(&cfg.path, "scanner", "zh-1");
    import_skus(&cfg, dir.path());
    let node = Node::start(&cfg);
    node.wait_connected(1);
    wait_state(&cfg, tid, "released").await;

    let mut d = Device::connect(node.broker_port(), "scanner", "zh-1", &pw).await;
    let (fb, task) = request(&mut d, "r-1").await;
    assert_eq!(
        fb["text"],
        format!("拣货订单 {tid}：B-02-01：FL-RED × 1（还剩 1 件）"),
        "{fb}"
    );
    assert_eq!(
        (fb["ok"].as_bool(), fb["beep"].as_str()),
        (Some(true), Some("ok"))
    );
    let step = serde_json::json!({"location":"B-02-01","code":"FL-RED","qty":1});
    assert_eq!(fb["next"], step, "{fb}");
    assert_eq!(task["text"], format!("拣货订单 {tid}：B-02-01：FL-RED × 1"));
    assert_eq!(task["task_id"], format!("pick-{tid}"));
    assert_eq!(task["tid"], tid.to_string());
    assert_eq!(
        (task["mode"].as_str(), task["remaining"].as_u64()),
        (Some("pick"), Some(1))
    );
    assert_eq!(task["next"], step);
    // A wrong item: the next step first; the machine fields as in English.
    let wrong = scan(&mut d, "w-1", "FL-BLUE").await;
    let v = wrong.json();
    assert_eq!(
        v["text"],
        format!("错货！下一件：B-02-01：FL-RED × 1（6910000000028 不在订单 {tid} 中）"),
        "{v}"
    );
    assert_eq!(
        (v["ok"].as_bool(), v["beep"].as_str()),
        (Some(false), Some("error"))
    );
    assert_eq!(v["next"], step);
    // The operator holds the order (nothing picked yet): the scanner is told to stop.
    let (code, _, err) = cli(
        &cfg.path,
        &[
            "orders",
            "hold",
            &tid.to_string(),
            "--reason",
            "buyer called",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let hold = expect(&mut d.rx, "a hold", |r| r.json()["type"] == "hold").await;
    let h = hold.json();
    assert_eq!(
        h["text"],
        format!("停！订单 {tid} 已挂起（人工挂起）：不用拣了，请领新任务"),
        "{h}"
    );
    assert_eq!(
        (h["reason"].as_str(), h["action"].as_str()),
        (Some("operator"), Some("stop"))
    );
    assert_eq!(h["task_id"], format!("pick-{tid}"));

    // The floor switched to English, the node restarted.
    assert!(node.sigterm().success());
    std::fs::write(&cfg.path, format!("{toml}\n[floor]\nlanguage = \"en\"\n")).unwrap();
    let node = Node::start(&cfg);
    node.wait_connected(1);
    d.vanish();
    let mut d = Device::connect(node.broker_port(), "scanner", "zh-1", &pw).await;
    // The hold not yet acknowledged comes again as it was sent.
    let again = expect(&mut d.rx, "the hold again", |r| r.json()["type"] == "hold").await;
    assert_eq!(again.payload, hold.payload);
    // The re-sent scan: its remembered answer, byte for byte, not said anew.
    assert_eq!(scan(&mut d, "w-1", "FL-BLUE").await.payload, wrong.payload);
    // A new scan: English now.
    let v = scan(&mut d, "w-2", "FL-RED").await.json();
    assert_eq!(
        v["text"],
        format!("STOP: order {tid} is on hold (operator): do not pack it"),
        "{v}"
    );
    assert_eq!(
        (v["ok"].as_bool(), v["beep"].as_str()),
        (Some(false), Some("error"))
    );
    assert!(node.sigterm().success());
}
