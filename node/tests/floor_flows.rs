//! The floor's flows end to end: the real `wms-node` binary pulling paid orders from the
//! Taobao sandbox (real signed HTTP on port 0), its SKU master imported by the CLI, a
//! simulated scanner over MQTT, through the embedded broker and through Mosquitto.
//!
//! Pick an order to the end with a SIGKILL in the middle (the re-sent scan gets its original
//! answer and counts once; the scanner carries on after the restart), then a hold from the
//! operator reaching the scanner that holds the order's task, re-sent on reconnect until
//! acknowledged, and the put-back task of what was picked.

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
    let cfg = write_config_with(
        dir.path(),
        &broker,
        Some(&TaobaoAt {
            rest_url: sb.rest_url(),
            oauth_url: sb.oauth_url(),
            app_key: taobao_sandbox::DEFAULT_APP_KEY.into(),
            app_secret: taobao_sandbox::DEFAULT_APP_SECRET.into(),
            session: SESSION.into(),
        }),
    );
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
    for (i, code) in ["FL-BLUE", "FL-RED"].iter().enumerate() {
        let v = d
            .ask(&scan_code(&format!("p-{i}"), barcode(code)))
            .await
            .json();
        assert_eq!(v["ok"], true, "{v}");
    }
    wait_state(&cfg, tid_a, "put_back").await;
    assert!(node.counter("wms_node_floor_holds_resent_total") >= 1.0);
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
