//! The real `wms-node stock …`, `ship` and `reconcile` executables: against a stopped node
//! (they open the store file, and `reconcile` calls the Taobao sandbox over real HTTP
//! itself) and against a running one (they must go through its admin API: the store is locked
//! by the node's process).

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use taobao_sandbox::{NewItem, NewSku, PreIssued, SandboxConfig};
use wms_node::ops::alert::Alerts;
use wms_node::store::{Store, StoreOptions};
use wms_node::wms::{self, ShopId, Wms};

const BIN: &str = env!("CARGO_BIN_EXE_wms-node");
const SESSION: &str = "cli-session";

fn write_config(dir: &Path, http_port: u16, endpoint: &str) -> PathBuf {
    let path = dir.join("node.toml");
    let text = format!(
        "[node]\nid = \"test-gw\"\ndata_dir = \"{}\"\n\n[taobao]\napp_key = \"{}\"\n\
         app_secret = \"{}\"\nsession = \"{SESSION}\"\nendpoint = \"{endpoint}\"\n\
         request_timeout = \"5s\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n",
        dir.display(),
        taobao_sandbox::DEFAULT_APP_KEY,
        taobao_sandbox::DEFAULT_APP_SECRET,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A port nothing listens on (bound and released at once).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn run(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WMS_NODE") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run wms-node");
    (
        status.code().expect("exited normally"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn open(dir: &Path) -> Store {
    Store::open(
        StoreOptions::new(dir.join(wms_node::store::FILE)),
        Alerts::new(),
    )
    .unwrap()
}

/// Two SKUs of one listed item, 20 units each.
async fn populate(store: &Store) {
    let csv = "sku,barcode,name,on_hand,num_iid,sku_id\n\
               CLI-RED,6901,red,20,620000000001,4620000000011\n\
               CLI-BLUE,6902,blue,20,620000000001,4620000000012\n";
    let rows = wms::sku::parse_skus(csv.as_bytes()).unwrap();
    wms::write(store, move |txn| {
        let mut w = Wms::new(txn, &ShopId::main(), chrono::Utc::now());
        w.import_skus(&rows, &[], false, &wms::Rules::default())?;
        w.finish()?;
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_node_stopped_stock_ship_and_reconcile_open_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    populate(&store).await;
    store.close().await.unwrap();
    let sb = taobao_sandbox::spawn(SandboxConfig {
        sessions: vec![PreIssued::new(SESSION)],
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    sb.sandbox()
        .create_item(NewItem {
            num_iid: 620_000_000_001,
            title: "命令行".into(),
            skus: vec![
                NewSku {
                    sku_id: 4_620_000_000_011,
                    outer_id: Some("CLI-RED".into()),
                    quantity: 20,
                    ..NewSku::default()
                },
                NewSku {
                    sku_id: 4_620_000_000_012,
                    outer_id: Some("CLI-BLUE".into()),
                    quantity: 20,
                    ..NewSku::default()
                },
            ],
            ..NewItem::default()
        })
        .unwrap();
    let config = write_config(dir.path(), closed_port(), &sb.rest_url());
    let cli = move |args: Vec<&'static str>| {
        let c = config.clone();
        tokio::task::spawn_blocking(move || run(&c, &args))
    };

    // `stock show --json`: the fields of the issue, ids as strings.
    let (code, out, err) = cli(vec!["stock", "show", "--json"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    let red = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sku"] == "CLI-RED")
        .unwrap()
        .clone();
    assert_eq!(
        (
            &red["on_hand"],
            &red["reserved"],
            &red["safety"],
            &red["available"],
            &red["sync"]
        ),
        (
            &serde_json::json!(20),
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(20),
            &serde_json::json!("on")
        )
    );
    assert_eq!(red["listings"][0]["num_iid"], "620000000001");
    assert_eq!(red["listings"][0]["sku_id"], "4620000000011");

    // A count and an adjustment, with their reasons; the table for people.
    let (code, _, err) = cli(vec!["stock", "set", "CLI-RED", "12", "--reason", "count"])
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(vec![
        "stock", "adjust", "CLI-RED", "-2", "--reason", "damaged",
    ])
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(vec!["stock", "show", "CLI-RED"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("CLI-RED") && out.contains("10"), "{out}");
    assert!(!out.contains("CLI-BLUE"), "{out}");
    // The persistent switch.
    let (code, _, err) = cli(vec!["stock", "stop", "CLI-BLUE"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = cli(vec!["stock", "show", "CLI-BLUE", "--json"])
        .await
        .unwrap();
    assert_eq!(json(&out)[0]["sync"], "stopped");
    // Bad usage is 2; a SKU that does not exist, or a push while intake lags (it never
    // pulled), is 1 with the reason.
    let (code, _, err) = cli(vec!["stock", "adjust", "CLI-RED", "-2"]).await.unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--reason"), "{err}");
    let (code, _, err) = cli(vec!["stock", "show", "CLI-NOPE"]).await.unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("CLI-NOPE"), "{err}");
    let (code, _, err) = cli(vec!["stock", "push", "CLI-RED"]).await.unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("order intake lags"), "{err}");
    // Shipping a trade the node does not have.
    let (code, _, err) = cli(vec![
        "ship",
        "4000000000001",
        "--company",
        "YTO",
        "--waybill",
        "YT1000000000001",
    ])
    .await
    .unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("4000000000001"), "{err}");

    // `reconcile` calls Taobao from this process: the checks that can run are clean, the stock
    // check cannot (intake never pulled): exit 1, naming it.
    let (code, out, err) = cli(vec!["reconcile", "--json"]).await.unwrap();
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    assert!(r["started"].is_string() && r["finished"].is_string(), "{r}");
    let checks = r["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 8, "{r}");
    let stock = checks.iter().find(|c| c["name"] == "stock_drift").unwrap();
    assert_eq!(stock["status"], "not_run", "{r}");
    assert!(
        stock["reason"]
            .as_str()
            .unwrap()
            .contains("order intake lags")
    );
    for c in checks {
        if c["name"] != "stock_drift" && c["name"] != "ops" {
            assert_eq!(c["status"], "clean", "{r}");
        }
    }
    assert!(err.contains("stock_drift"), "{err}");
    // One check alone: clean, exit 0; a check that does not exist is bad usage.
    let (code, out, err) = cli(vec!["reconcile", "--check", "4"]).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = cli(vec!["reconcile", "--check", "9"]).await.unwrap();
    assert_eq!(code, 2, "{err}");
    // The sandbox was really asked.
    assert!(
        !sb.sandbox()
            .calls(Some("taobao.trades.sold.get"))
            .is_empty()
    );
    // Nothing secret in what the user sees.
    assert!(!out.contains(SESSION) && !err.contains(SESSION));

    // With `node.language = "zh"` the same tables speak Chinese, columns still in line (a
    // Chinese character is two columns wide).
    let zh = dir.path().join("node-zh.toml");
    let text = std::fs::read_to_string(dir.path().join("node.toml")).unwrap();
    std::fs::write(
        &zh,
        text.replacen("[node]\n", "[node]\nlanguage = \"zh\"\n", 1),
    )
    .unwrap();
    let zh_run = |args: Vec<&'static str>| {
        let c = zh.clone();
        tokio::task::spawn_blocking(move || run(&c, &args))
    };
    let (code, out, err) = zh_run(vec!["stock", "show"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("货品编码"), "{out}");
    assert!(
        lines[0].contains("在库") && lines[0].contains("可售"),
        "{out}"
    );
    let col = |l: &str, w: &str| wms_node::status::i18n::width(&l[..l.find(w).unwrap()]);
    // CLI-BLUE's sync was stopped above.
    let blue = lines.iter().find(|l| l.starts_with("CLI-BLUE")).unwrap();
    assert_eq!(col(lines[0], "同步"), col(blue, "stopped"), "{out}");
    let (code, out, err) = zh_run(vec!["reconcile", "--check", "4"]).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("核对项") && out.contains("全部一致。"),
        "{out}"
    );
    // `sku list`: Chinese headings, the columns after them where the headings put them.
    let (code, out, err) = zh_run(vec!["sku", "list"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("货品编码"), "{out}");
    for w in ["条码", "在库", "库位", "商品链接", "名称"] {
        assert!(lines[0].contains(w), "{w}: {out}");
    }
    let blue = lines.iter().find(|l| l.starts_with("CLI-BLUE")).unwrap();
    assert_eq!(col(lines[0], "条码"), col(blue, "6902"), "{out}");
    assert_eq!(col(lines[0], "名称"), col(blue, "blue"), "{out}");
    // On hand is right-aligned: its heading and figure end in the same column.
    let end = |l: &str, w: &str| col(l, w) + wms_node::status::i18n::width(w);
    let on_hand = blue.split_whitespace().nth(2).unwrap();
    assert!(on_hand.parse::<i64>().is_ok(), "{blue}");
    assert_eq!(
        end(lines[0], "在库"),
        end(blue, &format!(" {on_hand} ")) - 1,
        "{out}"
    );

    // `devices add` and `devices list` (the node is stopped: online state unknown).
    let (code, out, err) = zh_run(vec!["devices", "add", "sc-01", "--class", "scanner"])
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("已添加扫描枪 sc-01"), "{out}");
    assert!(
        out.contains("MQTT 密码") && out.contains("（订阅）"),
        "{out}"
    );
    let (code, out, err) = zh_run(vec!["devices", "list"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("类型"), "{out}");
    for w in ["编号", "在线", "固件", "最后在线"] {
        assert!(lines[0].contains(w), "{w}: {out}");
    }
    let sc = lines.iter().find(|l| l.starts_with("扫描枪")).unwrap();
    assert_eq!(col(lines[0], "编号"), col(sc, "sc-01"), "{out}");
    assert_eq!(col(lines[0], "最后在线"), col(sc, "从未"), "{out}");
    assert!(out.contains("（节点未运行：在线状态未知）"), "{out}");
    // Scripts still get English: --json is the same in every language.
    let (code, out, err) = zh_run(vec!["devices", "list", "--json"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)[0]["class"], "scanner", "{out}");
    let (code, out, err) = zh_run(vec!["devices", "remove", "sc-01"]).await.unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("已移除 scanner/sc-01"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_node_running_stock_goes_through_its_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    // "The node": holds the store open and serves the orders and goods APIs.
    let store = open(dir.path());
    populate(&store).await;
    let alerts = Alerts::new();
    let outbox: wms_node::outbox::Outbox<wms_node::taobao::outbox::TaobaoOp> =
        wms_node::outbox::Outbox::new(store.clone(), Default::default(), alerts.clone());
    let goods = wms_node::ops::goods::GoodsAdmin::new(
        store.clone(),
        outbox,
        ShopId::main(),
        false,
        std::time::Duration::from_secs(300),
        wms::Bus::new(),
        alerts.clone(),
        wms_node::taobao::time::Clock::system(),
    );
    let orders = wms_node::ops::orders::OrdersAdmin::new(
        store.clone(),
        ShopId::main(),
        wms::Rules::default(),
        wms::Bus::new(),
        alerts,
    );
    let app =
        wms_node::ops::orders::router(orders).merge(wms_node::ops::goods::router(goods.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let config = write_config(dir.path(), port, "http://127.0.0.1:9/router/rest");
    let cli = move |args: Vec<&'static str>| {
        let c = config.clone();
        tokio::task::spawn_blocking(move || run(&c, &args))
    };

    let (code, _, err) = cli(vec![
        "stock", "adjust", "CLI-BLUE", "+5", "--reason", "found",
    ])
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    // The node's own view changed: the adjustment went through it.
    let row = &goods.stock(Some("CLI-BLUE")).unwrap()[0];
    assert_eq!(row.view.on_hand, 25);
    let (code, out, err) = cli(vec!["stock", "show", "CLI-BLUE", "--json"])
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)[0]["on_hand"], 25);
    let (code, _, err) = cli(vec!["stock", "show", "CLI-NOPE"]).await.unwrap();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("CLI-NOPE"), "{err}");
    server.abort();
    store.close().await.unwrap();
}
