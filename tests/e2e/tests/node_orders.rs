//! Orders in, with the real `wms-node` and `taobao-sandbox` binaries over real HTTP: an order
//! whose SKU is not mapped is held, `wms-node sku import` releases it, an operator holds and
//! releases it, a refund holds it, the JSON of `orders list|show`; and buyer data: plain-text
//! receiver fields sent by the platform reach none of the store file, the log, the metrics,
//! the status page, `/healthz` or the CLI's output. Also: `/healthz` fails while the shop is
//! not authorised.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use wms_e2e::{Node, Sandbox, binary, eventually, node_config};

const SESSION: &str = "e2e-orders-session";
/// The demo catalogue's T-shirt, red M.
const TSHIRT: i64 = 600_000_000_001;
const RED_M: i64 = 4_600_000_000_011;
const MUG: i64 = 600_000_000_002;

/// Plain-text receiver fields the sandbox hands out for this test (Taobao sends them masked).
const PLAIN: [&str; 5] = [
    "张三丰",
    "文一西路969号阿里巴巴西溪园区",
    "13912345678",
    "0571-88886666",
    "三丰",
];

const INTAKE: &str = "[intake]\nlookback = \"1h\"\nlag_alert = \"2m\"\n";

fn cli(config: &Path, http: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(binary("wms-node", "wms-node").unwrap());
    cmd.arg("--config").arg(config).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WMS_NODE") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    if let Some(addr) = http {
        // The config says port 0; tell the CLI the node's real one.
        cmd.env("WMS_NODE__HTTP__LISTEN", addr);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn assert_private(what: &str, text: &str) {
    for p in PLAIN {
        assert!(
            !text.contains(p),
            "{what} contains buyer data `{p}`:\n{text}"
        );
    }
}

fn rfc3339_with_offset(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(
        s.len() == 25 && s.ends_with("+08:00") && s.as_bytes()[10] == b'T',
        "not RFC 3339 with offset: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_held_until_its_sku_is_mapped_and_no_buyer_data_is_kept_anywhere() {
    let sandbox = Sandbox::start(&["--session", SESSION, "--seed"]).unwrap();
    let (tid, oids) = {
        let v = sandbox
            .post(
                "/sandbox/trades",
                json!({"orders": [{"num_iid": TSHIRT, "sku_id": RED_M, "num": 2},
                                  {"num_iid": MUG, "num": 1}],
                       "receiver_name": PLAIN[0], "receiver_address": PLAIN[1],
                       "receiver_mobile": PLAIN[2], "receiver_phone": PLAIN[3],
                       "buyer_message": format!("call {} at {}", PLAIN[2], PLAIN[1])}),
            )
            .await
            .unwrap();
        (
            v["tid"].as_i64().unwrap(),
            v["oids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_i64().unwrap())
                .collect::<Vec<_>>(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(dir.path(), &sandbox, SESSION, &format!("{INTAKE}\n")).unwrap();
    // poll every second (in the [taobao] section written by node_config).
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[taobao]\n", "[taobao]\npoll_interval = \"1s\"\n");
    std::fs::write(&config, text).unwrap();
    let node = Node::start(&config).await.unwrap();
    let addr = node.http_url.trim_start_matches("http://").to_owned();
    let mut outputs = String::new();

    // The order arrives, held: no SKU of the (empty) master matches its lines.
    let tid_s = tid.to_string();
    let held = eventually(Duration::from_secs(30), "the order held", || async {
        let tid_s = tid_s.clone();
        let (code, out, err) = cli(
            &config,
            Some(&addr),
            &["orders", "list", "--held", "--json"],
        );
        anyhow::ensure!(code == 0, "{err}");
        let list = json(&out);
        Ok(list.as_array().and_then(|a| {
            a.iter()
                .find(|o| o["tid"].as_str() == Some(tid_s.as_str()))
                .cloned()
        }))
    })
    .await
    .unwrap();
    outputs.push_str(&held.to_string());
    assert_eq!(held["state"], "new", "{held}");
    assert_eq!(held["taobao_status"], "WAIT_SELLER_SEND_GOODS");
    assert_eq!(held["holds"][0]["reason"], "unmapped_sku", "{held}");
    assert_eq!(held["holds"][0]["source"], "sku_map");
    rfc3339_with_offset(&held["holds"][0]["since"]);
    rfc3339_with_offset(&held["modified"]);
    rfc3339_with_offset(&held["ship_by"]);
    let lines = held["lines"].as_array().unwrap();
    assert_eq!(lines[0]["oid"], oids[0].to_string());
    assert_eq!(lines[0]["sku"], Value::Null);
    assert_eq!(lines[0]["qty"], 2);
    assert_eq!(held["receiver"], "张*", "the node masks the name itself");
    let (_, health) = node.get("/healthz").await.unwrap();
    assert!(
        health["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["code"] == "unmapped_sku"),
        "{health}"
    );

    // A bad SKU file is refused whole, with line and column.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "sku,barcode,name,on_hand,num_iid,sku_id\nTSHIRT-RED-M,6900000000011,红 M,x,,\n",
    )
    .unwrap();
    let (code, _, err) = cli(
        &config,
        Some(&addr),
        &["sku", "import", bad.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("line 2, column on_hand: `x` is not a whole number"),
        "{err}"
    );

    // Importing the map releases it by itself.
    let good = dir.path().join("skus.csv");
    std::fs::write(
        &good,
        "sku,barcode,name,on_hand,num_iid,sku_id,location\n\
         TSHIRT-RED-M,6900000000011,T恤 红 M,40,600000000001,4600000000011,A-01\n\
         MUG-350,6900000000020,马克杯,120,,,B-02\n",
    )
    .unwrap();
    let (code, out, err) = cli(
        &config,
        Some(&addr),
        &[
            "sku",
            "import",
            good.to_str().unwrap(),
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let dry = json(&out);
    assert_eq!(dry["applied"], false);
    assert_eq!(dry["added"].as_array().unwrap().len(), 2);
    let (code, out, err) = cli(
        &config,
        Some(&addr),
        &["sku", "import", good.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("released"), "{out}");
    let (code, out, _) = cli(
        &config,
        Some(&addr),
        &["orders", "show", &tid.to_string(), "--json"],
    );
    assert_eq!(code, 0);
    let shown = json(&out);
    outputs.push_str(&out);
    assert_eq!(shown["state"], "released", "{shown}");
    assert_eq!(shown["holds"], json!([]));
    assert_eq!(shown["lines"][0]["sku"], "TSHIRT-RED-M");
    assert_eq!(shown["lines"][1]["sku"], "MUG-350");

    // An operator's hold and its release.
    let (code, out, err) = cli(
        &config,
        Some(&addr),
        &[
            "orders",
            "hold",
            &tid.to_string(),
            "--reason",
            "buyer asked to wait",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let o = json(&out);
    assert_eq!(o["holds"][0]["reason"], "buyer asked to wait");
    assert_eq!(o["holds"][0]["source"], "operator");
    assert_eq!(o["state"], "released", "held is never a state");
    let (code, out, _) = cli(
        &config,
        Some(&addr),
        &["orders", "release", &tid.to_string(), "--json"],
    );
    assert_eq!(code, 0);
    assert_eq!(json(&out)["holds"], json!([]));
    let (code, _, err) = cli(
        &config,
        Some(&addr),
        &["orders", "release", &tid.to_string()],
    );
    assert_eq!(code, 1, "nothing to release");
    assert!(err.contains("not held"), "{err}");
    let (code, _, err) = cli(&config, Some(&addr), &["orders", "show", "12345"]);
    assert_eq!(code, 1);
    assert!(err.contains("no order with tid 12345"), "{err}");
    let (code, _, _) = cli(&config, Some(&addr), &["orders", "show", "not-a-tid"]);
    assert_eq!(code, 2, "bad usage");

    // A refund request holds the whole order at once; the platform hears it was stopped.
    sandbox
        .post(
            &format!("/sandbox/trades/{tid}/refund"),
            json!({"oid": oids[1]}),
        )
        .await
        .unwrap();
    let refunded = eventually(Duration::from_secs(30), "the refund hold", || async {
        let (_, out, _) = cli(
            &config,
            Some(&addr),
            &["orders", "show", &tid.to_string(), "--json"],
        );
        let o = json(&out);
        Ok((o["holds"][0]["reason"] == "refund").then_some(o))
    })
    .await
    .unwrap();
    outputs.push_str(&refunded.to_string());
    eventually(
        Duration::from_secs(30),
        "the AliGenius feedback",
        || async {
            let fb = sandbox.get("/sandbox/feedback").await?;
            Ok(fb
                .as_array()
                .and_then(|a| a.iter().find(|f| f["tid"] == tid).cloned()))
        },
    )
    .await
    .map(|f| assert_eq!(f["status"], "SUCCESS", "{f}"))
    .unwrap();

    // What an operator sees carries no buyer data.
    let (status, metrics) = {
        let r = reqwest::get(format!("{}/metrics", node.http_url))
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(metrics.contains("wms_node_intake_lag_seconds"), "{metrics}");
    assert!(
        metrics.contains("wms_node_orders{state=\"released\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wms_node_order_holds{reason=\"refund\"} 1"),
        "{metrics}"
    );
    assert_private("/metrics", &metrics);
    let page = reqwest::get(format!("{}/", node.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("intake lag"), "{page}");
    assert!(page.contains("orders today"), "{page}");
    // Goods out: the paid order is days from its ship-by deadline; nothing shipped yet.
    assert!(page.contains("Goods out"), "{page}");
    assert!(page.contains("ship-by risk"), "{page}");
    assert!(page.contains("none due within 4 h"), "{page}");
    assert!(page.contains("last reconciliation"), "{page}");
    // The floor: the embedded broker, the node's own session, no devices yet.
    assert!(page.contains("embedded, listening on 127.0.0.1:"), "{page}");
    assert!(page.contains("none registered"), "{page}");
    assert_private("the status page", &page);
    let (status, health) = node.get("/healthz").await.unwrap();
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["checks"]["intake"]["status"], "ok", "{health}");
    assert_private("/healthz", &health.to_string());
    let (_, out, _) = cli(&config, Some(&addr), &["orders", "list"]);
    outputs.push_str(&out);
    let (_, out, _) = cli(&config, Some(&addr), &["orders", "show", &tid.to_string()]);
    outputs.push_str(&out);
    assert_private("the CLI's output", &outputs);

    let log = node.log();
    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success());
    assert_private("the log", &log);
    assert!(!log.contains(SESSION), "session in the log");

    // The stopped node: the CLI opens the store itself.
    let (code, out, err) = cli(&config, None, &["orders", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)[0]["tid"], tid.to_string());
    assert_private("the offline CLI's output", &out);
    let (code, out, _) = cli(&config, None, &["sku", "list", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["skus"].as_array().unwrap().len(), 2);
    let (code, _, err) = cli(
        &config,
        None,
        &[
            "orders",
            "hold",
            &tid.to_string(),
            "--reason",
            "offline hold",
        ],
    );
    assert_eq!(code, 0, "{err}");

    // And the store file itself.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    for p in PLAIN {
        let needle = p.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "the store file contains `{p}`"
        );
    }
    sandbox.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_fails_while_the_shop_is_not_authorised() {
    let sandbox = Sandbox::start(&[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(dir.path(), &sandbox, "", INTAKE).unwrap();
    let node = Node::start(&config).await.unwrap();
    let health = eventually(Duration::from_secs(20), "intake failing", || async {
        let (status, h) = node.get("/healthz").await?;
        Ok((status == 503).then_some(h))
    })
    .await
    .unwrap();
    assert_eq!(health["checks"]["intake"]["status"], "failing", "{health}");
    assert!(
        health["checks"]["intake"]["message"]
            .as_str()
            .unwrap()
            .contains("not authorised"),
        "{health}"
    );
    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success());
    sandbox.stop();
}
