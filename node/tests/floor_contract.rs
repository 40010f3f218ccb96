//! The floor checked against its contract, not against the node's code: a fleet of scanners,
//! a packing station's printer and an intruder, written from DESIGN.md's "Floor (MQTT)" and
//! "Floor flows" and DOMAIN.md §12 only. The devices are plain rumqttc clients speaking
//! hand-written JSON read back as `serde_json::Value` (never the project's `proto` types), on
//! topics built from the contract's pattern `wms/{site}/{class}/{id}/{channel}`, each with its
//! own credentials from `wms-node devices add`. The node is the real binary with the Taobao
//! sandbox behind it, through the embedded broker and through Mosquitto.
//!
//! Every message a device receives is checked against the contract's message table (the
//! fields, their JSON types, ids as strings) before the flow looks at it. The flows: goods in
//! (receive, count), a pick in walking order with a wrong scan and a re-sent one, pack with
//! verification and the label (a failed print, then printed), ship at the dock, a short pick,
//! a hold arriving mid-task (re-sent until `hold_ack`) and its put-back, a device's `reject`,
//! heartbeats and states (birth, will; the gateway's own, retained), the gateway's alerts
//! (raised, resolved) and an OTA update from a fleet link (refused: no trusted key), each bad
//! input the contract names, unknown credentials, a device publishing under another's topics,
//! and dedupe across a SIGKILL of the node. Where the contract is silent, docs/PROTOCOL.md
//! (*Where DESIGN.md's contract leaves it open*) says what the node does, and the fleet checks
//! that.

// Tests report failures by unwrapping; the support code polls with short sleeps on threads
// of its own (the real binary, Mosquitto).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod floor_support;

use floor_support::{
    BrokerKind, Mosquitto, Node, NodeConfig, Received, SITE, TaobaoAt, WAIT, cli, free_port,
    wait_until, write_config_with,
};
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, NetworkOptions, Packet, QoS,
    SubscribeReasonCode,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taobao_sandbox::{NewItem, NewSku, PreIssued, SandboxConfig, SandboxHandle};
use tokio::sync::mpsc;

const SESSION: &str = "contract-session";
const ITEM: i64 = 600_000_000_915;
/// `(sku_id, code, barcode, location)`: the walking order is by location, so an order of
/// red, green and blue is picked blue (A-01), red (B-02), green (C-07).
const SKUS: [(i64, &str, &str, &str); 4] = [
    (4_600_000_015_001, "CT-RED", "6910000001011", "B-02-01"),
    (4_600_000_015_002, "CT-BLUE", "6910000001028", "A-01-04"),
    (4_600_000_015_003, "CT-GREEN", "6910000001035", "C-07-02"),
    (4_600_000_015_004, "CT-WHITE", "6910000001042", "D-09-09"),
];
/// An OTA manifest (base64 of its bytes) and a signature (64 zero bytes) no key verifies.
const OTA_MANIFEST: &str = "eyJ2ZXJzaW9uIjoiOTkuMC4wIiwidXJsIjoiaHR0cDovLzEyNy4wLjAuMTo5L3dtcy1ub2RlIiwic2l6ZSI6MTAyNCwic2hhMjU2IjoiMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMCIsImtleV9pZCI6IjAwMDAwMDAwMDAwMDAwMDAifQ==";
const OTA_SIGNATURE: &str =
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";
/// On sale in the shop but in no SKU map: an order of it raises an alert.
const GHOST: (i64, &str, &str, &str) = (4_600_000_015_009, "CT-GHOST", "6910000001097", "D-01-01");
const RED: usize = 0;
const BLUE: usize = 1;
const GREEN: usize = 2;
/// In the SKU master, in no order: the wrong item.
const WHITE: usize = 3;
const TS: &str = "2026-12-07T08:00:00Z";

// ---------------------------------------------------------------------------------------
// The contract's message table, as checks on what a device receives.

fn is_id(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

fn opt<'a>(m: &'a Value, k: &str) -> Option<&'a Value> {
    m.get(k).filter(|v| !v.is_null())
}

/// Panics unless `m`, received on `channel`, is a message of the contract's table with its
/// fields of the right JSON types.
fn check_contract(channel: &str, m: &Value) {
    // A state carries no `type` (DESIGN.md's will is `{"online":false}`; docs/PROTOCOL.md).
    let ty = match (channel, m.get("type")) {
        ("state", None) => "state",
        _ => m["type"].as_str().unwrap_or_else(|| panic!("no type: {m}")),
    };
    match m.get("v") {
        None => {}
        Some(v) => assert_eq!(v, 1, "v is the protocol version 1: {m}"),
    }
    let next_ok = |n: Option<&Value>| match n {
        None => true,
        Some(n) => {
            n.is_object()
                && opt(n, "location").is_none_or(Value::is_string)
                && opt(n, "code").is_none_or(Value::is_string)
                && opt(n, "qty").is_none_or(Value::is_u64)
                && opt(n, "tote").is_none_or(Value::is_string)
        }
    };
    match (channel, ty) {
        ("cmd", "feedback") => {
            assert!(m["re"].is_null() || is_id(&m["re"]), "re: {m}");
            let ok = m["ok"].as_bool().unwrap_or_else(|| panic!("ok: {m}"));
            let beep = m["beep"].as_str().unwrap_or_default();
            assert!(beep == "ok" || beep == "error", "beep: {m}");
            assert!(ok || beep == "error", "a refusal beeps error: {m}");
            assert!(m["text"].is_string(), "text: {m}");
            assert!(next_ok(opt(m, "next")), "next: {m}");
        }
        ("cmd", "task") => {
            assert!(is_id(&m["task_id"]), "task_id is a string: {m}");
            assert!(m["task_version"].is_u64(), "task_version: {m}");
            let mode = m["mode"].as_str().unwrap_or_default();
            assert!(
                ["pick", "pack", "ship", "receive", "count"].contains(&mode),
                "mode: {m}"
            );
            assert!(opt(m, "tid").is_none_or(is_id), "tid is a string: {m}");
            assert!(m["text"].is_string(), "text: {m}");
            assert!(next_ok(opt(m, "next")), "next: {m}");
            assert!(
                opt(m, "remaining").is_none_or(Value::is_u64),
                "remaining: {m}"
            );
        }
        ("cmd", "hold") => {
            assert!(is_id(&m["hold_id"]), "hold_id is a string: {m}");
            assert!(is_id(&m["tid"]), "tid is a string: {m}");
            assert!(opt(m, "task_id").is_none_or(is_id), "task_id: {m}");
            for k in ["reason", "action", "text"] {
                assert!(m[k].is_string(), "{k}: {m}");
            }
        }
        ("cmd", "print") => {
            assert!(is_id(&m["job_id"]), "job_id is a string: {m}");
            let f = m["format"].as_str().unwrap_or_default();
            assert!(["zpl", "tspl", "cainiao"].contains(&f), "format: {m}");
            assert!(opt(m, "data").is_some(), "data: {m}");
        }
        // Code, severity, subject, raised or resolved (the shape: docs/PROTOCOL.md).
        ("alert", "alert") => {
            assert!(m["code"].is_string(), "code: {m}");
            assert!(m["severity"].is_string(), "severity: {m}");
            assert!(
                opt(m, "subject").is_none_or(Value::is_object),
                "subject: {m}"
            );
            let event = m["event"].as_str().unwrap_or_default();
            assert!(
                ["raised", "updated", "resolved"].contains(&event),
                "event: {m}"
            );
            assert_eq!(opt(m, "resolved_at").is_some(), event == "resolved", "{m}");
        }
        ("reply", "ota_progress") => {
            assert!(is_id(&m["re"]), "re: {m}");
            let phase = m["phase"].as_str().unwrap_or_default();
            assert!(
                ["downloading", "retrying", "verifying", "restarting"].contains(&phase),
                "phase: {m}"
            );
        }
        ("reply", "ota_result") => {
            assert!(opt(m, "re").is_none_or(is_id), "re: {m}");
            let status = m["status"].as_str().unwrap_or_default();
            assert!(
                ["installed", "committed", "rolled_back", "refused", "failed"].contains(&status),
                "status: {m}"
            );
        }
        ("state", "state") => {
            assert!(m["online"].is_boolean(), "online: {m}");
            assert!(opt(m, "class").is_none_or(Value::is_string), "class: {m}");
            assert!(opt(m, "fw").is_none_or(Value::is_string), "fw: {m}");
        }
        _ => panic!("not a message of the contract on {channel}: {m}"),
    }
}

// ---------------------------------------------------------------------------------------
// A device of the fleet: its own client, credentials and will; what it receives is kept in
// order, and a wait for one message keeps the others for later waits.

/// A device's credentials, as `devices add --json` hands them out.
#[derive(Clone)]
struct Creds {
    username: String,
    password: String,
}

fn add_device(config: &Path, class: &str, id: &str) -> Creds {
    let (code, out, err) = cli(config, &["devices", "add", id, "--class", class, "--json"]);
    assert_eq!(code, 0, "devices add {class} {id}: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    Creds {
        username: v["device"]["username"].as_str().unwrap().to_owned(),
        password: v["password"].as_str().unwrap().to_owned(),
    }
}

fn topic(class: &str, id: &str, channel: &str) -> String {
    format!("wms/{SITE}/{class}/{id}/{channel}")
}

struct Dev {
    class: &'static str,
    id: &'static str,
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Received>,
    kept: Vec<Received>,
    suback: Arc<Mutex<Vec<SubscribeReasonCode>>>,
    pump: tokio::task::JoinHandle<()>,
}

impl Dev {
    async fn connect(port: u16, class: &'static str, id: &'static str, c: &Creds) -> Dev {
        let mut o = MqttOptions::new(format!("fleet-{class}-{id}"), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_clean_session(false);
        o.set_max_packet_size(256 * 1024, 256 * 1024);
        o.set_credentials(c.username.clone(), c.password.clone());
        // The will exactly as DESIGN.md shows it.
        o.set_last_will(LastWill::new(
            topic(class, id, "state"),
            r#"{"online":false}"#,
            QoS::AtLeastOnce,
            true,
        ));
        let (client, el) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let suback = Arc::new(Mutex::new(Vec::new()));
        let pump = tokio::spawn(pump(el, tx, suback.clone()));
        let d = Dev {
            class,
            id,
            client,
            rx,
            kept: Vec::new(),
            suback,
            pump,
        };
        d.client
            .subscribe(topic(class, id, "cmd"), QoS::AtLeastOnce)
            .await
            .unwrap();
        d.client
            .publish(
                topic(class, id, "state"),
                QoS::AtLeastOnce,
                true,
                format!(
                    r#"{{"type":"state","v":1,"online":true,"class":"{class}","fw":"fleet 1.0"}}"#
                ),
            )
            .await
            .unwrap();
        d
    }

    async fn send(&self, channel: &str, payload: impl Into<Vec<u8>>) {
        self.send_to(&topic(self.class, self.id, channel), payload)
            .await;
    }

    async fn send_to(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    fn take_kept(&mut self, pred: &mut impl FnMut(&Value) -> bool) -> Option<Received> {
        let i = self.kept.iter().position(|r| pred(&r.json()))?;
        Some(self.kept.remove(i))
    }

    fn receive(&self, r: &Received) {
        let channel = r.topic.rsplit('/').next().unwrap_or_default();
        let v = r.json();
        eprintln!("[{}/{}] {} {}", self.class, self.id, r.topic, v);
        check_contract(channel, &v);
    }

    /// The next message (old or new) for which `pred` holds.
    async fn wait(&mut self, what: &str, mut pred: impl FnMut(&Value) -> bool) -> Received {
        if let Some(r) = self.take_kept(&mut pred) {
            return r;
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => {
                    self.receive(&r);
                    if pred(&r.json()) {
                        return r;
                    }
                    self.kept.push(r);
                }
                _ => panic!("{}/{}: no {what} in time", self.class, self.id),
            }
        }
    }

    /// Within `d`, no message for which `pred` holds.
    async fn none(&mut self, d: Duration, what: &str, mut pred: impl FnMut(&Value) -> bool) {
        if let Some(r) = self.take_kept(&mut pred) {
            panic!(
                "{}/{}: unexpected {what}: {}",
                self.class,
                self.id,
                r.json()
            );
        }
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(Some(r)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            self.receive(&r);
            assert!(
                !pred(&r.json()),
                "{}/{}: unexpected {what}: {}",
                self.class,
                self.id,
                r.json()
            );
            self.kept.push(r);
        }
    }

    /// Sends `payload` on `evt` and returns the feedback naming `msg_id`.
    async fn ask(&mut self, payload: &str, msg_id: &str) -> Received {
        self.send("evt", payload).await;
        self.wait(&format!("feedback to {msg_id}"), |v| {
            v["type"] == "feedback" && v["re"] == msg_id
        })
        .await
    }

    /// Forgets what it kept (messages a step has finished with).
    fn clear(&mut self) {
        self.kept.clear();
    }

    /// Drops the connection without a DISCONNECT: the broker publishes the will.
    fn vanish(self) {
        self.pump.abort();
    }
}

async fn pump(
    mut el: EventLoop,
    tx: mpsc::UnboundedSender<Received>,
    suback: Arc<Mutex<Vec<SubscribeReasonCode>>>,
) {
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::SubAck(a))) => suback.lock().unwrap().extend(a.return_codes),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = tx.send(Received {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                });
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hand-written events, exactly as the contract's table names their fields.

fn request_task(msg_id: &str, mode: &str) -> String {
    format!(r#"{{"type":"request_task","v":1,"msg_id":"{msg_id}","ts":"{TS}","mode":"{mode}"}}"#)
}

fn scan(msg_id: &str, code: &str, mode: &str) -> String {
    format!(
        r#"{{"type":"scan","v":1,"msg_id":"{msg_id}","ts":"{TS}","code":"{code}","symbology":"code128","mode":"{mode}"}}"#
    )
}

fn scan_in(msg_id: &str, code: &str, task_id: &str) -> String {
    format!(
        r#"{{"type":"scan","v":1,"msg_id":"{msg_id}","ts":"{TS}","code":"{code}","symbology":"ean13","mode":"pick","task_id":"{task_id}"}}"#
    )
}

fn scan_qty(msg_id: &str, code: &str, mode: &str, qty: u32) -> String {
    format!(
        r#"{{"type":"scan","v":1,"msg_id":"{msg_id}","ts":"{TS}","code":"{code}","symbology":"ean13","mode":"{mode}","qty":{qty}}}"#
    )
}

fn barcode(k: usize) -> &'static str {
    SKUS[k].2
}

// ---------------------------------------------------------------------------------------
// The warehouse: sandbox shop, node, broker.

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
            title: "契约测试".into(),
            skus: SKUS
                .iter()
                .chain([&GHOST])
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

fn paid(sb: &SandboxHandle, lines: &[(usize, i64)]) -> u64 {
    let t = taobao_sandbox::NewTrade {
        orders: lines
            .iter()
            .map(|(k, num)| taobao_sandbox::NewOrder {
                num_iid: ITEM,
                sku_id: Some(SKUS.get(*k).unwrap_or(&GHOST).0),
                num: *num,
            })
            .collect(),
        ..taobao_sandbox::NewTrade::default()
    };
    u64::try_from(sb.sandbox().create_trade(t).unwrap().tid).unwrap()
}

fn order_state(cfg: &NodeConfig, tid: u64) -> Value {
    let (code, out, _) = cli(&cfg.path, &["orders", "show", &tid.to_string(), "--json"]);
    if code != 0 {
        return Value::Null;
    }
    serde_json::from_str::<Value>(&out).unwrap()["state"].clone()
}

async fn wait_state(cfg: &NodeConfig, tid: u64, state: &str) {
    wait_until(&format!("order {tid} {state}"), || {
        order_state(cfg, tid) == state
    })
    .await;
}

fn on_hand(cfg: &NodeConfig, k: usize) -> Value {
    let (code, out, err) = cli(&cfg.path, &["stock", "show", SKUS[k].1, "--json"]);
    assert_eq!(code, 0, "stock show: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    match v {
        Value::Array(a) => a[0]["on_hand"].clone(),
        v => v["on_hand"].clone(),
    }
}

/// The fleet's devices: `(class, id)`.
const DEVICES: [(&str, &str); 7] = [
    ("gateway", "fleet"),
    ("scanner", "picker"),
    ("scanner", "packer"),
    ("printer", "label"),
    ("scanner", "dock"),
    ("scanner", "goods-in"),
    ("scanner", "mallory"),
];

struct Warehouse {
    broker: BrokerKind,
    sb: SandboxHandle,
    cfg: NodeConfig,
    node: Option<Node>,
    mosquitto: Option<Mosquitto>,
    port: u16,
    creds: BTreeMap<String, Creds>,
    dir: tempfile::TempDir,
}

impl Warehouse {
    async fn open(kind: &'static str) -> Warehouse {
        let sb = sandbox().await;
        let dir = tempfile::tempdir().unwrap();
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
        let mut text = std::fs::read_to_string(&cfg.path).unwrap();
        text = text.replacen("[taobao]\n", "[taobao]\npoll_interval = \"1s\"\n", 1);
        text.push_str(
            "[shipping]\nmerge_orders = false\n\
             [waybill]\ncp_code = \"YTO\"\nbranch_code = \"SIM-01\"\n\
             template_url = \"http://cloudprint.cainiao.com/template/standard/101\"\n\
             sender_name = \"契约仓\"\nsender_mobile = \"13800000000\"\nsender_province = \"浙江省\"\n\
             sender_city = \"杭州市\"\nsender_detail = \"仓前街道 1 号\"\n\
             [floor]\nprint_timeout = \"5s\"\n\
             [[floor.stations]]\nscanner = \"packer\"\nprinter = \"label\"\nformat = \"cainiao\"\n",
        );
        std::fs::write(&cfg.path, text).unwrap();
        let mut creds = BTreeMap::new();
        for (class, id) in DEVICES {
            let c = add_device(&cfg.path, class, id);
            assert_eq!(c.username, format!("{class}/{id}"));
            creds.insert(id.to_owned(), c);
        }
        let mut csv = String::from("sku,barcode,name,on_hand,num_iid,sku_id,location\n");
        for (id, code, bc, loc) in SKUS {
            csv.push_str(&format!("{code},{bc},{code},50,{ITEM},{id},{loc}\n"));
        }
        let file = dir.path().join("skus.csv");
        std::fs::write(&file, csv).unwrap();
        let (code, _, err) = cli(&cfg.path, &["sku", "import", file.to_str().unwrap()]);
        assert_eq!(code, 0, "sku import: {err}");
        let mut w = Warehouse {
            broker,
            sb,
            cfg,
            node: None,
            mosquitto: None,
            port: 0,
            creds,
            dir,
        };
        w.start().await;
        w
    }

    async fn start(&mut self) {
        let node = Node::start(&self.cfg);
        self.port = match self.broker {
            BrokerKind::External { port } => {
                if self.mosquitto.is_none() {
                    // The node writes Mosquitto's password and ACL files at start.
                    let files = self.cfg.data.join("mosquitto");
                    wait_until("mosquitto files", || files.join("acl").is_file()).await;
                    self.mosquitto = Some(Mosquitto::start(port, &files));
                }
                port
            }
            BrokerKind::Embedded => node.broker_port(),
        };
        node.wait_connected(1);
        self.node = Some(node);
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    async fn device(&self, id: &'static str) -> Dev {
        let class = DEVICES.iter().find(|d| d.1 == id).unwrap().0;
        Dev::connect(self.port, class, id, &self.creds[id]).await
    }
}

/// Whether the broker refuses these credentials.
async fn refused(port: u16, username: &str, password: &str) -> bool {
    let mut o = MqttOptions::new(format!("fleet-guess-{}", free_port()), "127.0.0.1", port);
    o.set_credentials(username, password);
    let (_client, mut el) = AsyncClient::new(o, 8);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, el.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) => {
                return a.code != rumqttc::ConnectReturnCode::Success;
            }
            Ok(Ok(_)) => {}
            Ok(Err(rumqttc::ConnectionError::ConnectionRefused(_))) => return true,
            Ok(Err(e)) => panic!("connecting as {username}: {e}"),
            Err(_) => panic!("no CONNACK for {username}"),
        }
    }
}

fn fb(r: &Received) -> Value {
    r.json()
}

fn assert_ok(v: &Value) {
    assert_eq!(
        (v["ok"].as_bool(), v["beep"].as_str()),
        (Some(true), Some("ok")),
        "{v}"
    );
}

fn assert_refused(v: &Value) {
    assert_eq!(
        (v["ok"].as_bool(), v["beep"].as_str()),
        (Some(false), Some("error")),
        "{v}"
    );
}

async fn fleet(kind: &'static str) {
    let mut w = Warehouse::open(kind).await;
    // Paid orders, due in this order: A (picked, packed, shipped), B (refunded mid-pick),
    // C (short), and one of a SKU in no map.
    let tid_a = paid(&w.sb, &[(RED, 1), (GREEN, 1), (BLUE, 1)]);
    let tid_b = paid(&w.sb, &[(RED, 1), (BLUE, 1)]);
    let tid_c = paid(&w.sb, &[(RED, 3)]);
    let tid_ghost = paid(&w.sb, &[(usize::MAX, 1)]);
    let mut obs = match &w.mosquitto {
        Some(m) => Some(floor_support::observer(m.observer_port, "wms/#").await),
        None => None,
    };

    // The gateway's own state, retained: anyone may read it and the gateway's alerts.
    let mut mallory = w.device("mallory").await;
    for ch in ["state", "alert"] {
        mallory
            .client
            .subscribe(
                topic("gateway", floor_support::NODE_ID, ch),
                QoS::AtLeastOnce,
            )
            .await
            .unwrap();
    }
    let gw = mallory
        .wait("the gateway's state", |v| v["online"].is_boolean())
        .await;
    assert_eq!(gw.topic, topic("gateway", floor_support::NODE_ID, "state"));
    assert_eq!(gw.json()["online"], true, "{}", gw.json());
    wait_until("three SUBACKs", || {
        mallory.suback.lock().unwrap().len() >= 3
    })
    .await;
    assert!(
        mallory
            .suback
            .lock()
            .unwrap()
            .iter()
            .all(|c| matches!(c, SubscribeReasonCode::Success(_))),
        "a device may read its own cmd and the gateway's state and alerts"
    );

    // Goods in: receive +7, count to 40; a re-sent receive is not applied twice.
    let mut gi = w.device("goods-in").await;
    let received = gi
        .ask(&scan_qty("gi-1", barcode(GREEN), "receive", 7), "gi-1")
        .await;
    assert_ok(&fb(&received));
    assert_eq!(on_hand(&w.cfg, GREEN), 57);
    let v = fb(&gi
        .ask(&scan_qty("gi-2", barcode(GREEN), "count", 40), "gi-2")
        .await);
    assert_ok(&v);
    assert_eq!(on_hand(&w.cfg, GREEN), 40);
    let again = gi
        .ask(&scan_qty("gi-1", barcode(GREEN), "receive", 7), "gi-1")
        .await;
    assert_eq!(
        again.payload, received.payload,
        "a duplicate: the same bytes"
    );
    assert_eq!(on_hand(&w.cfg, GREEN), 40, "and not applied twice");
    let v = fb(&gi
        .ask(&scan_qty("gi-3", "6999999999999", "receive", 1), "gi-3")
        .await);
    assert_refused(&v);

    // Pick: the task, its lines in walking order through `next`; a wrong item beeps error
    // and keeps the step; a re-sent scan gets the same bytes.
    wait_state(&w.cfg, tid_a, "released").await;
    let mut picker = w.device("picker").await;
    let v = fb(&picker.ask(&request_task("p-r1", "pick"), "p-r1").await);
    assert_ok(&v);
    let task = picker.wait("a task", |v| v["type"] == "task").await.json();
    assert_eq!(task["tid"], tid_a.to_string(), "{task}");
    assert_eq!(task["mode"], "pick");
    assert_eq!(task["remaining"], 3, "{task}");
    let task_id = task["task_id"].as_str().unwrap().to_owned();
    let mut walk = vec![task["next"]["location"].clone()];
    let wrong = fb(&picker
        .ask(&scan_in("p-s0", barcode(WHITE), &task_id), "p-s0")
        .await);
    assert_refused(&wrong);
    if let Some(n) = opt(&wrong, "next") {
        assert_eq!(n["location"], walk[0], "an error keeps the step: {wrong}");
    }
    let first = picker
        .ask(&scan_in("p-s1", barcode(BLUE), &task_id), "p-s1")
        .await;
    assert_ok(&fb(&first));
    walk.push(fb(&first)["next"]["location"].clone());
    let again = picker
        .ask(&scan_in("p-s1", barcode(BLUE), &task_id), "p-s1")
        .await;
    assert_eq!(again.payload, first.payload, "a duplicate: the same bytes");
    let v = fb(&picker
        .ask(&scan_in("p-s2", barcode(RED), &task_id), "p-s2")
        .await);
    assert_ok(&v);
    walk.push(v["next"]["location"].clone());
    let v = fb(&picker
        .ask(&scan_in("p-s3", barcode(GREEN), &task_id), "p-s3")
        .await);
    assert_ok(&v);
    assert_eq!(
        walk,
        ["A-01-04", "B-02-01", "C-07-02"],
        "lines in walking order"
    );
    wait_state(&w.cfg, tid_a, "picked").await;
    picker.clear();

    // Pack at the station: the order, every item verified (a wrong one beeps error), the
    // label to the station's printer; a failed print, then the label printed.
    let mut label = w.device("label").await;
    let mut packer = w.device("packer").await;
    let v = fb(&packer
        .ask(&scan("k-0", &tid_a.to_string(), "pack"), "k-0")
        .await);
    assert_ok(&v);
    let v = fb(&packer
        .ask(&scan("k-w", barcode(WHITE), "pack"), "k-w")
        .await);
    assert_refused(&v);
    for (i, k) in [BLUE, RED, GREEN].into_iter().enumerate() {
        let id = format!("k-{}", i + 1);
        let v = fb(&packer.ask(&scan(&id, barcode(k), "pack"), &id).await);
        assert_ok(&v);
    }
    let print = label.wait("a print", |v| v["type"] == "print").await.json();
    label
        .send(
            "reply",
            format!(
                r#"{{"type":"print_result","v":1,"re":{},"status":"error","error":"paper out"}}"#,
                print["job_id"]
            ),
        )
        .await;
    // The station hears the printer's words; the order scanned again prints it again.
    let told = packer
        .wait("the printer's error", |v| {
            v["type"] == "feedback" && v["re"].is_null()
        })
        .await
        .json();
    assert_refused(&told);
    assert!(
        told["text"].as_str().unwrap().contains("paper out"),
        "{told}"
    );
    let v = fb(&packer
        .ask(&scan("k-4", &tid_a.to_string(), "pack"), "k-4")
        .await);
    assert_ok(&v);
    let p1 = print["job_id"].clone();
    let reprint = label
        .wait("a reprint", |v| v["type"] == "print" && v["job_id"] != p1)
        .await
        .json();
    assert_eq!(reprint["data"], print["data"], "the same label again");
    label
        .send(
            "reply",
            format!(
                r#"{{"type":"print_result","v":1,"re":{},"status":"printed"}}"#,
                reprint["job_id"]
            ),
        )
        .await;
    let done = packer
        .wait("the label printed", |v| {
            v["type"] == "feedback" && v["re"].is_null()
        })
        .await
        .json();
    assert_ok(&done);
    wait_state(&w.cfg, tid_a, "labelled").await;
    packer.clear();
    // A command the printer cannot use: it says so on `reply` (no answer; counted).
    label
        .send(
            "reply",
            format!(
                r#"{{"type":"reject","v":1,"re":{},"of":"print","error":"this printer has no Cainiao component"}}"#,
                reprint["job_id"]
            ),
        )
        .await;
    label
        .none(Duration::from_millis(500), "an answer to a reject", |_| {
            true
        })
        .await;
    wait_until("the reject counted", || {
        w.node()
            .counter(r#"wms_node_floor_device_rejects_total{of="print"}"#)
            >= 1.0
    })
    .await;

    // Ship at the dock: an unknown waybill refused; the label's waybill ships the order.
    let waybill =
        w.sb.sandbox()
            .waybills()
            .into_iter()
            .find(|x| x.trade_order_list.contains(&tid_a.to_string()))
            .unwrap()
            .waybill_code;
    let mut dock = w.device("dock").await;
    let v = fb(&dock
        .ask(&scan("d-0", "YT9999999999999", "ship"), "d-0")
        .await);
    assert_refused(&v);
    let v = fb(&dock.ask(&scan("d-1", &waybill, "ship"), "d-1").await);
    assert_ok(&v);
    wait_until("Taobao has the shipment", || {
        w.sb.sandbox()
            .shipments()
            .iter()
            .any(|s| s.tid == tid_a as i64 && s.out_sid == waybill)
    })
    .await;

    // A hold mid-task: the buyer refunds order B while it is being picked.
    wait_state(&w.cfg, tid_b, "released").await;
    let v = fb(&picker.ask(&request_task("p-r2", "pick"), "p-r2").await);
    assert_ok(&v);
    let task = picker.wait("a task", |v| v["type"] == "task").await.json();
    assert_eq!(task["tid"], tid_b.to_string(), "{task}");
    let task_b = task["task_id"].as_str().unwrap().to_owned();
    let v = fb(&picker
        .ask(&scan_in("p-b1", barcode(BLUE), &task_b), "p-b1")
        .await);
    assert_ok(&v);
    w.sb.sandbox()
        .refund(tid_b as i64, Default::default())
        .unwrap();
    let hold = picker.wait("a hold", |v| v["type"] == "hold").await.json();
    assert_eq!(hold["tid"], tid_b.to_string(), "{hold}");
    assert_eq!(hold["task_id"], task_b, "{hold}");
    let v = fb(&picker
        .ask(&scan_in("p-b2", barcode(RED), &task_b), "p-b2")
        .await);
    assert_refused(&v);
    // Not acknowledged: it comes again when the scanner reconnects.
    picker.vanish();
    let mut picker = w.device("picker").await;
    let again = picker
        .wait("the hold again", |v| v["type"] == "hold")
        .await
        .json();
    assert_eq!(again["hold_id"], hold["hold_id"]);
    picker
        .send(
            "reply",
            format!(r#"{{"type":"hold_ack","v":1,"re":{}}}"#, hold["hold_id"]),
        )
        .await;
    // What was picked goes back: a put-back task, its scans return the goods to stock.
    let put = picker
        .wait("the put-back task", |v| v["type"] == "task")
        .await
        .json();
    assert_eq!(put["tid"], tid_b.to_string(), "{put}");
    assert_eq!(put["remaining"], 1, "the one unit picked: {put}");
    assert_eq!(put["next"]["location"], "A-01-04", "{put}");
    let put_id = put["task_id"].as_str().unwrap().to_owned();
    let v = fb(&picker
        .ask(&scan_in("p-b3", barcode(BLUE), &put_id), "p-b3")
        .await);
    assert_ok(&v);
    wait_state(&w.cfg, tid_b, "put_back").await;
    assert_eq!(
        on_hand(&w.cfg, BLUE),
        49,
        "A's unit shipped, B's back in its bin"
    );
    picker.clear();
    picker.vanish();
    let mut picker = w.device("picker").await;
    picker
        .none(Duration::from_millis(1500), "hold after its ack", |v| {
            v["type"] == "hold"
        })
        .await;

    // A short pick: fewer found than asked.
    wait_state(&w.cfg, tid_c, "released").await;
    let v = fb(&picker.ask(&request_task("p-r3", "pick"), "p-r3").await);
    assert_ok(&v);
    let c_tid = tid_c.to_string();
    let c = picker
        .wait("order C's task", |v| {
            v["type"] == "task" && v["tid"] == c_tid
        })
        .await
        .json();
    assert_eq!(c["next"]["location"], "B-02-01", "{c}");
    assert_eq!(c["next"]["qty"], 3, "{c}");
    let short = format!(
        r#"{{"type":"short","v":1,"msg_id":"p-c1","ts":"{TS}","task_id":"{}","code":"{}","qty":1,"location":"B-02-01"}}"#,
        c["task_id"].as_str().unwrap(),
        barcode(RED)
    );
    let v = fb(&picker.ask(&short, "p-c1").await);
    assert_ok(&v);
    wait_state(&w.cfg, tid_c, "exception").await;
    picker.clear();

    // The alert raised for the unmapped SKU; resolved once the map has it.
    let raised = mallory
        .wait("an alert", |v| {
            v["event"] == "raised" && v["code"].as_str().is_some_and(|c| c.contains("unmapped"))
        })
        .await;
    assert_eq!(
        raised.topic,
        topic("gateway", floor_support::NODE_ID, "alert")
    );
    let file = w.dir.path().join("ghost.csv");
    std::fs::write(
        &file,
        format!(
            "sku,barcode,name,on_hand,num_iid,sku_id,location\n{},{},{},5,{ITEM},{},{}\n",
            GHOST.1, GHOST.2, GHOST.1, GHOST.0, GHOST.3
        ),
    )
    .unwrap();
    let (code, _, err) = cli(&w.cfg.path, &["sku", "import", file.to_str().unwrap()]);
    assert_eq!(code, 0, "sku import: {err}");
    let episode = raised.json()["id"].clone();
    let resolved = mallory
        .wait("the alert resolved", |v| {
            v["event"] == "resolved" && v["id"] == episode
        })
        .await;
    assert_eq!(resolved.json()["code"], "unmapped_sku");
    wait_state(&w.cfg, tid_ghost, "released").await;

    // Heartbeat.
    picker
        .send(
            "evt",
            format!(r#"{{"type":"heartbeat","v":1,"msg_id":"hb-1","ts":"{TS}","queued":0,"detail":"battery 80%"}}"#),
        )
        .await;
    picker
        .none(
            Duration::from_millis(700),
            "an answer to a heartbeat",
            |v| v["re"] == "hb-1",
        )
        .await;

    // Bad input: each answered ok:false with the reason, counted; the node keeps answering.
    // `re` is the msg_id when one could be read: from a JSON object whose `msg_id` is a
    // string, not from a cut-off payload nor one above the size limit (docs/PROTOCOL.md).
    let big = "9".repeat(70 * 1024);
    let bad: [(&str, &str, String, Option<&str>); 11] = [
        ("malformed", "evt", "this is not json".to_owned(), None),
        (
            "malformed",
            "evt",
            format!(r#"{{"type":"scan","v":1,"msg_id":"m-1","ts":"{TS}","#),
            None,
        ),
        (
            "unknown_type",
            "evt",
            format!(r#"{{"type":"teleport","v":1,"msg_id":"m-2","ts":"{TS}"}}"#),
            Some("m-2"),
        ),
        (
            "oversize",
            "evt",
            format!(
                r#"{{"type":"scan","v":1,"msg_id":"m-3","ts":"{TS}","code":"{big}","symbology":"code128","mode":"pick"}}"#
            ),
            None,
        ),
        (
            "malformed",
            "evt",
            format!(
                r#"{{"type":"scan","v":1,"msg_id":12345,"ts":"{TS}","code":"1","symbology":"code128","mode":"pick"}}"#
            ),
            None,
        ),
        (
            "malformed",
            "evt",
            format!(
                r#"{{"type":"short","v":1,"msg_id":"m-5","ts":"{TS}","task_id":777,"code":"1","qty":1}}"#
            ),
            Some("m-5"),
        ),
        (
            "version",
            "evt",
            format!(r#"{{"type":"request_task","v":2,"msg_id":"m-6","ts":"{TS}","mode":"pick"}}"#),
            Some("m-6"),
        ),
        (
            "malformed",
            "evt",
            format!(
                r#"{{"type":"scan","v":1,"msg_id":"m-7","ts":"{TS}","symbology":"code128","mode":"pick"}}"#
            ),
            Some("m-7"),
        ),
        (
            "malformed",
            "evt",
            format!(
                r#"{{"type":"scan","v":1,"msg_id":"m-8","ts":"{TS}","code":"1","symbology":"code128","mode":"dance"}}"#
            ),
            Some("m-8"),
        ),
        (
            "wrong_topic",
            "reply",
            scan("m-9", "1", "pick"),
            Some("m-9"),
        ),
        (
            "invalid",
            "evt",
            scan_qty("m-12", barcode(RED), "count", 0),
            Some("m-12"),
        ),
    ];
    for (reason, channel, payload, re) in &bad {
        mallory.send(channel, payload.clone()).await;
        let v = mallory
            .wait(&format!("the answer to {reason} {re:?}"), |v| {
                v["type"] == "feedback" && v["re"].as_str() == *re
            })
            .await
            .json();
        assert_refused(&v);
        let series = format!(r#"wms_node_floor_refused_total{{reason="{reason}"}}"#);
        assert!(w.node().counter(&series) >= 1.0, "{series}");
    }
    // A device the node does not know, and a known one with the wrong password.
    assert!(refused(w.port, "scanner/nobody", "guess").await);
    assert!(refused(w.port, "scanner/picker", "guess").await);
    // OTA on the gateway's own topics, from a fleet link: a manifest signed by no key the
    // node trusts is refused (nothing downloaded), and the refusal raises an alert.
    let mut fleet = w.device("fleet").await;
    for ch in ["reply", "alert"] {
        fleet
            .client
            .subscribe(
                topic("gateway", floor_support::NODE_ID, ch),
                QoS::AtLeastOnce,
            )
            .await
            .unwrap();
    }
    wait_until("the fleet link's SUBACKs", || {
        fleet.suback.lock().unwrap().len() >= 3
    })
    .await;
    fleet
        .send_to(
            &topic("gateway", floor_support::NODE_ID, "cmd"),
            format!(r#"{{"type":"ota_update","v":1,"id":"rollout-1","manifest":"{OTA_MANIFEST}","signature":"{OTA_SIGNATURE}"}}"#),
        )
        .await;
    let result = fleet
        .wait("the OTA result", |v| v["type"] == "ota_result")
        .await
        .json();
    assert_eq!(
        (result["re"].as_str(), result["status"].as_str()),
        (Some("rollout-1"), Some("refused")),
        "{result}"
    );
    assert!(
        result.get("version").is_none(),
        "an unverified version is never repeated: {result}"
    );
    let alert = fleet
        .wait("the OTA alert", |v| {
            v["type"] == "alert" && v["code"] == "ota_refused"
        })
        .await
        .json();
    assert_eq!(alert["event"], "raised", "{alert}");
    fleet.vanish();

    // Under another device's topics, and the gateway's: the broker refuses them, so the node
    // never sees them (an observer on Mosquitto's open listener sees nothing either).
    mallory
        .send_to(
            &topic("scanner", "picker", "evt"),
            request_task("m-10", "pick"),
        )
        .await;
    mallory
        .send_to(
            &topic("scanner", "picker", "state"),
            r#"{"type":"state","v":1,"online":false}"#,
        )
        .await;
    mallory
        .send_to(
            &topic("gateway", floor_support::NODE_ID, "cmd"),
            r#"{"type":"ota_update","v":1,"id":"m-13","manifest":"e30=","signature":"AA=="}"#,
        )
        .await;
    picker
        .none(
            Duration::from_millis(1000),
            "an answer to a spoofed event",
            |v| v["re"] == "m-10",
        )
        .await;
    mallory
        .none(
            Duration::from_millis(100),
            "an answer to a spoofed event",
            |v| v["re"] == "m-10",
        )
        .await;
    // The same device still talks under its own topics; an event without `v` is version 1.
    let v = fb(&mallory
        .ask(
            &format!(r#"{{"type":"request_task","msg_id":"m-11","ts":"{TS}","mode":"receive"}}"#),
            "m-11",
        )
        .await);
    assert_ok(&v);
    if let Some((_, rx)) = obs.as_mut() {
        let mut seen = Vec::new();
        while let Ok(r) = rx.try_recv() {
            seen.push(r);
        }
        let from = |t: &str| seen.iter().filter(|r| r.topic == t).count();
        assert!(
            !seen.iter().any(|r| {
                let p = String::from_utf8_lossy(&r.payload);
                p.contains("m-10") || p.contains("m-13")
            }),
            "a spoofed message got through"
        );
        assert_eq!(
            seen.iter()
                .filter(|r| r.topic == topic("scanner", "picker", "state"))
                .map(|r| r.json()["online"].clone())
                .next_back(),
            Some(Value::Bool(true)),
            "the picker's state is its own"
        );
        // Every device's birth was seen.
        for (class, id) in DEVICES {
            assert!(
                from(&topic(class, id, "state")) >= 1,
                "{class}/{id}'s birth"
            );
        }
    }

    // A device drops off: its will says so, and the node sees it offline.
    mallory.vanish();
    if let Some((_, rx)) = obs.as_mut() {
        let will = floor_support::expect(rx, "mallory's will", |r| {
            r.topic == topic("scanner", "mallory", "state")
        })
        .await;
        assert_eq!(will.json(), serde_json::json!({"online": false}));
    }
    wait_until("mallory offline", || {
        floor_support::list_devices(&w.cfg.path)
            .iter()
            .any(|d| d["id"] == "mallory" && d["online"] == false)
    })
    .await;
    let picker_seen = floor_support::list_devices(&w.cfg.path)
        .into_iter()
        .find(|d| d["id"] == "picker")
        .unwrap();
    assert_eq!(picker_seen["online"], true, "{picker_seen}");
    assert_eq!(
        picker_seen["firmware"], "fleet 1.0",
        "its birth was read: {picker_seen}"
    );

    let green = on_hand(&w.cfg, GREEN);
    // The node dies: its will (Mosquitto; the embedded broker goes with it). After the
    // restart every re-sent event gets its original bytes.
    w.node.take().unwrap().sigkill();
    if let Some((_, rx)) = obs.as_mut() {
        let will = floor_support::expect(rx, "the node's will", |r| {
            r.topic == topic("gateway", floor_support::NODE_ID, "state")
        })
        .await;
        assert_eq!(will.json()["online"], false, "{}", will.json());
    }
    w.start().await;
    for d in [gi, picker, label, packer, dock] {
        d.vanish();
    }
    let mut gi = w.device("goods-in").await;
    let again = gi
        .ask(&scan_qty("gi-1", barcode(GREEN), "receive", 7), "gi-1")
        .await;
    assert_eq!(
        again.payload, received.payload,
        "a duplicate after a restart"
    );
    assert_eq!(on_hand(&w.cfg, GREEN), green, "and not applied again");
    let mut picker = w.device("picker").await;
    let again = picker
        .ask(&scan_in("p-s1", barcode(BLUE), &task_id), "p-s1")
        .await;
    assert_eq!(again.payload, first.payload, "a duplicate after a restart");
    if let Some((_, rx)) = obs.as_mut() {
        let birth = floor_support::expect(rx, "the node's birth", |r| {
            r.topic == topic("gateway", floor_support::NODE_ID, "state")
        })
        .await;
        assert_eq!(birth.json()["online"], true, "{}", birth.json());
    }
    assert!(w.node.take().unwrap().sigterm().success());
    gi.vanish();
    picker.vanish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_keeps_its_contract_through_the_embedded_broker() {
    fleet("embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_keeps_its_contract_through_mosquitto() {
    if !Mosquitto::available() {
        return;
    }
    fleet("mosquitto").await;
}
