//! Alerts that reach people, end to end: the real `wms-node run` against the
//! `taobao-sandbox` binary, with a DingTalk-shaped webhook receiver on loopback. An alert
//! raised while the receiver is unreachable is kept in the store across a restart and arrives
//! (once, signed) when the receiver is back; its resolution arrives once when the condition
//! clears in a later run. Nothing secret reaches the log or `check-config`.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wms_e2e::{Node, Sandbox, eventually, node_config};

const SESSION: &str = "e2e-alerts-session";
const TOKEN: &str = "e2e-robot-token";
const SIGNING: &str = "SECe2e-signing-secret";

/// What the receiver got: the request line's target and the JSON body.
type Got = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A minimal DingTalk robot: reads one HTTP/1.1 request per connection, records it, answers
/// `{"errcode":0}`.
async fn robot(listener: TcpListener, got: Got) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let got = got.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (i + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let target = head.split(' ').nth(1).unwrap_or("").to_owned();
            let body = serde_json::from_slice(&buf[head_end..head_end + len])
                .unwrap_or(serde_json::Value::Null);
            got.lock().unwrap().push((target, body));
            let reply = r#"{"errcode":0,"errmsg":"ok"}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{reply}",
                reply.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// DingTalk's check: `sign` = urlencode(base64(HMAC-SHA256(secret, "<timestamp>\n<secret>"))).
fn signed(target: &str) -> bool {
    use base64::Engine as _;
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            })
        })
    };
    let (Some(ts), Some(sign)) = (param("timestamp"), param("sign")) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING.as_bytes()).unwrap();
    mac.update(format!("{ts}\n{SIGNING}").as_bytes());
    param("access_token").as_deref() == Some(TOKEN)
        && sign == base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn alerts_section(port: u16) -> String {
    format!(
        "[alerts]\nwebhook = \"dingtalk\"\n\
         url = \"http://127.0.0.1:{port}/robot/send?access_token={TOKEN}\"\n\
         secret = \"{SIGNING}\"\ntimeout = \"2s\"\n"
    )
}

fn texts(got: &Got) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b["text"]["content"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_raised_while_the_robot_is_unreachable_arrives_after_a_restart_then_resolves() {
    let sandbox = Sandbox::start(&["--session", SESSION]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on yet: the robot is unreachable.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    // Run 1: not authorised, so `reauthorize` is raised; its notice cannot go out.
    let config = node_config(dir.path(), &sandbox, "", &alerts_section(port)).unwrap();
    let node = Node::start(&config).await.unwrap();
    eventually(Duration::from_secs(20), "the reauthorize alert", || async {
        let (_, h) = node.get("/healthz").await?;
        Ok(h["alerts"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["code"] == "reauthorize").cloned()))
    })
    .await
    .unwrap();
    let page = reqwest::get(format!("{}/", node.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("reauthorize (101)"), "{page}");
    assert!(page.contains("<h2>Alert delivery</h2>"), "{page}");
    eventually(
        Duration::from_secs(20),
        "a failed notice attempt",
        || async {
            let text = reqwest::get(format!("{}/metrics", node.http_url))
                .await?
                .text()
                .await?;
            Ok(text
                .lines()
                .any(|l| {
                    l.starts_with("wms_node_outbox_attempts_total")
                        && l.contains("queue=\"alerts\"")
                        && l.contains("outcome=\"retry\"")
                })
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let log1 = node.log();
    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success(), "{exit:?}");

    // Run 2: the robot is back; the notice queued in run 1 arrives, once, signed.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let got: Got = Arc::default();
    let server = tokio::spawn(robot(listener, got.clone()));
    let node = Node::start(&config).await.unwrap();
    eventually(Duration::from_secs(20), "the notice", || async {
        Ok((got.lock().unwrap().len() == 1).then_some(()))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = texts(&got);
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(
        t[0].starts_with("[wms-node] CRITICAL: reauthorize (101)\nnode gw-e2e @ e2e"),
        "{t:?}"
    );
    assert!(signed(&got.lock().unwrap()[0].0), "signature");
    let log2 = node.log();
    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success());

    // Run 3: authorised through the config; the condition is gone: one resolution.
    let config = node_config(dir.path(), &sandbox, SESSION, &alerts_section(port)).unwrap();
    let node = Node::start(&config).await.unwrap();
    eventually(Duration::from_secs(20), "the resolution", || async {
        Ok((got.lock().unwrap().len() == 2).then_some(()))
    })
    .await
    .unwrap();
    let t = texts(&got);
    assert!(
        t[1].starts_with("[wms-node] RESOLVED: reauthorize (101)"),
        "{t:?}"
    );
    assert!(signed(&got.lock().unwrap()[1].0), "signature");
    let (_, h) = node.get("/healthz").await.unwrap();
    assert!(
        !h["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["code"] == "reauthorize"),
        "{h}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(texts(&got).len(), 2, "{:?}", texts(&got));
    let log3 = node.log();
    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success());
    server.abort();

    // Nothing secret in the logs or in check-config's output.
    for log in [log1, log2, log3] {
        assert!(!log.contains(TOKEN), "robot token leaked into the log");
        assert!(!log.contains(SIGNING), "signing secret leaked into the log");
    }
    let out = std::process::Command::new(wms_e2e::binary("wms-node", "wms-node").unwrap())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("[alerts]") && shown.contains("webhook = \"dingtalk\""),
        "{shown}"
    );
    assert!(
        !shown.contains(TOKEN) && !shown.contains(SIGNING),
        "{shown}"
    );
}

/// `wms-node --config CONFIG alerts ARGS`; with `http`, the running node's ops address (the
/// config says port 0).
fn alerts_cli(
    config: &std::path::Path,
    http: Option<&str>,
    args: &[&str],
) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(wms_e2e::binary("wms-node", "wms-node").unwrap());
    cmd.arg("--config").arg(config).arg("alerts").args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WMS_NODE") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    if let Some(addr) = http {
        cmd.env("WMS_NODE__HTTP__LISTEN", addr);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// The alert of `code` in `list` (an `active` or `resolved` array).
fn find<'a>(list: &'a serde_json::Value, code: &str) -> Option<&'a serde_json::Value> {
    list.as_array()?.iter().find(|a| a["code"] == code)
}

/// The `wms_node_alerts_active` sample of `reauthorize`, if the node exports one.
async fn reauthorize_gauge(node: &Node) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", node.http_url))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("wms_node_alerts_active{")?;
        (rest.contains("code=\"reauthorize\"") && rest.contains("severity=\"critical\""))
            .then(|| l.rsplit(' ').next()?.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_command_shows_the_same_alert_from_a_running_node_and_from_its_store() {
    let sandbox = Sandbox::start(&["--session", SESSION]).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // Run 1, not authorised: `reauthorize` is active, in the admin API and in /metrics.
    let config = node_config(dir.path(), &sandbox, "", "").unwrap();
    let node = Node::start(&config).await.unwrap();
    let addr = node.http_url.trim_start_matches("http://").to_owned();
    eventually(Duration::from_secs(20), "the reauthorize gauge", || async {
        Ok((reauthorize_gauge(&node).await == Some(1.0)).then_some(()))
    })
    .await
    .unwrap();
    // The store is locked by the node: an answer can only come through its admin API.
    let (code, out, err) = alerts_cli(&config, Some(&addr), &["--json"]);
    assert_eq!(code, 0, "{err}");
    let live = json(&out);
    let a = find(&live["active"], "reauthorize")
        .unwrap_or_else(|| panic!("{live}"))
        .clone();
    assert_eq!(a["number"], 101);
    assert_eq!(a["severity"], "critical");
    assert!(a["id"].is_string(), "ids are strings: {a}");
    assert!(a["count"].as_u64().unwrap() >= 1, "{a}");
    assert!(a.get("resolved_at").is_none(), "{a}");
    let (code, out, err) = alerts_cli(&config, Some(&addr), &[]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap_or("");
    assert!(
        header.starts_with("SEVERITY") && header.contains("SINCE (+08:00)"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.contains("reauthorize (101)"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.starts_with("critical"), "{row}");
    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success(), "{exit:?}");

    // Stopped: the command opens the store and shows the same episode.
    let (code, out, err) = alerts_cli(&config, None, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let stored = json(&out);
    let s = find(&stored["active"], "reauthorize").unwrap_or_else(|| panic!("{stored}"));
    for field in ["id", "number", "severity", "first_seen", "message"] {
        assert_eq!(s[field], a[field], "{field}: {s} vs {a}");
    }
    let (code, out, _) = alerts_cli(&config, None, &[]);
    assert_eq!(code, 0);
    assert!(out.contains("reauthorize (101)"), "{out}");

    // Run 2, authorised: the condition clears, the gauge drops and the episode is resolved.
    let config = node_config(dir.path(), &sandbox, SESSION, "").unwrap();
    let node = Node::start(&config).await.unwrap();
    let addr = node.http_url.trim_start_matches("http://").to_owned();
    eventually(Duration::from_secs(20), "the resolution", || async {
        let (_, out, _) = alerts_cli(&config, Some(&addr), &["--history", "--json"]);
        Ok(serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .filter(|v| find(&v["active"], "reauthorize").is_none())
            .and_then(|v| find(&v["resolved"], "reauthorize").cloned()))
    })
    .await
    .unwrap();
    assert_eq!(reauthorize_gauge(&node).await, Some(0.0));
    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success(), "{exit:?}");

    let (code, out, err) = alerts_cli(&config, None, &["--history", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v = json(&out);
    assert!(find(&v["active"], "reauthorize").is_none(), "{v}");
    let r = find(&v["resolved"], "reauthorize").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(r["id"], a["id"], "one episode from raised to resolved");
    assert_eq!(r["first_seen"], a["first_seen"]);
    assert!(r["resolved_at"].is_string(), "{r}");
    let (code, out, _) = alerts_cli(&config, None, &["--history"]);
    assert_eq!(code, 0);
    assert!(out.contains("No active alerts."), "{out}");
    let resolved = out
        .lines()
        .skip_while(|l| !l.starts_with("RESOLVED ALERT"))
        .collect::<Vec<_>>();
    assert!(
        resolved.iter().any(|l| l.contains("reauthorize (101)")),
        "{out}"
    );
    // Without --history the resolved ones stay out of the table.
    let (_, out, _) = alerts_cli(&config, None, &[]);
    assert!(!out.contains("reauthorize"), "{out}");

    // With `node.language = "zh"` the same tables speak Chinese (the alert's code and
    // message stay as they are); --json does not change.
    let zh = |args: &[&str]| {
        let out = std::process::Command::new(wms_e2e::binary("wms-node", "wms-node").unwrap())
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("WMS_NODE__NODE__LANGUAGE", "zh")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = zh(&["alerts", "--history"]);
    assert!(out.starts_with("当前没有告警。\n"), "{out}");
    let header = out
        .lines()
        .find(|l| l.starts_with("已解除的告警"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        header.contains("解除（+08:00）") && header.contains("持续了"),
        "{out}"
    );
    assert!(out.contains("reauthorize (101)"), "{out}");
    assert_eq!(
        json(&zh(&["alerts", "--history", "--json"]))["resolved"],
        v["resolved"]
    );
    let out = zh(&["queue", "stats"]);
    assert!(out.contains("待发送") && out.contains("死信"), "{out}");
    assert!(!out.contains("pending"), "{out}");

    // Bad usage is 2; a data_dir without a database is 1 and says where it looked.
    let (code, _, err) = alerts_cli(&config, None, &["--since", "1h"]);
    assert_eq!(code, 2, "{err}");
    let empty = tempfile::tempdir().unwrap();
    let other = node_config(empty.path(), &sandbox, "", "").unwrap();
    let (code, _, err) = alerts_cli(&other, None, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no database at"), "{err}");
}
