//! `wms-node run` against the `taobao-sandbox` binary, both as real processes over real HTTP:
//! the node's first signed call, how it rides out a Taobao outage, its queue API while it
//! runs, and a clean stop.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use wms_e2e::{Node, Sandbox, eventually, node_config};

const SESSION: &str = "e2e-session-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_makes_a_signed_call_serves_its_queue_api_and_stops_cleanly() {
    let sandbox = Sandbox::start(&["--session", SESSION]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(dir.path(), &sandbox, SESSION, "").unwrap();
    let node = Node::start(&config).await.unwrap();

    // The start-up carrier fetch is signed with the app secret and the pre-issued session;
    // the sandbox verifies both and logs it as a success (code 0).
    let calls = eventually(
        Duration::from_secs(15),
        "a successful carrier call",
        || async {
            let calls = sandbox.calls("taobao.logistics.companies.get").await?;
            Ok(calls.iter().any(|c| c["code"] == 0).then_some(calls))
        },
    )
    .await
    .unwrap();
    assert!(calls.iter().all(|c| c["code"] == 0), "{calls:?}");

    let (status, health) = eventually(Duration::from_secs(10), "taobao ok in /healthz", || async {
        let (status, h) = node.get("/healthz").await?;
        Ok((h["checks"]["taobao"]["status"] == "ok").then_some((status, h)))
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["checks"]["store"]["status"], "ok", "{health}");

    // `wms-node queue stats` while the node runs goes through its HTTP API (the store file
    // is locked by the node). The config says port 0, so tell the CLI the real one.
    let addr = node.http_url.trim_start_matches("http://");
    let out = std::process::Command::new(wms_e2e::binary("wms-node", "wms-node").unwrap())
        .args(["queue", "stats", "--json", "--config"])
        .arg(&node.config)
        .env("WMS_NODE__HTTP__LISTEN", addr)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(stats.is_object(), "{stats}");

    // Nothing secret in the log.
    let log = node.log();
    assert!(!log.contains(SESSION), "session leaked into the log");
    assert!(
        !log.contains(wms_e2e::APP_SECRET),
        "app secret leaked into the log"
    );

    let (exit, took) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success(), "exit {exit:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taobao_outage_at_start_up_degrades_health_and_the_node_recovers_by_itself() {
    let sandbox = Sandbox::start(&["--session", SESSION]).unwrap();
    sandbox
        .post(
            "/sandbox/faults",
            serde_json::json!({"kind": "outage", "seconds": 600}),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(dir.path(), &sandbox, SESSION, "").unwrap();
    let node = Node::start(&config).await.unwrap();

    let health = eventually(Duration::from_secs(15), "taobao degraded", || async {
        let (_, h) = node.get("/healthz").await?;
        Ok((h["checks"]["taobao"]["status"] == "degraded").then_some(h))
    })
    .await
    .unwrap();
    // Degraded, not failing: the node keeps serving the floor while Taobao is away.
    let (status, _) = node.get("/healthz").await.unwrap();
    assert_eq!(status, 200, "{health}");
    // The link itself is shown, and the page agrees with itself: the header is not "ok"
    // while the Taobao check and section say the link is down.
    let message = health["checks"]["taobao"]["message"].as_str().unwrap();
    assert!(message.starts_with("Taobao unreachable since"), "{health}");
    let page = reqwest::get(format!("{}/", node.http_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h2>Taobao</h2>"), "{page}");
    assert!(page.contains("<tr><th>link</th><td>down since "), "{page}");
    assert!(
        !page.contains("<span id=\"overall\" class=\"ok\">ok</span></h1>"),
        "{page}"
    );
    assert!(
        page.contains("<tr><th>last success</th><td>none since start</td>"),
        "{page}"
    );

    sandbox.delete("/sandbox/faults").await.unwrap();
    // The retry backoff starts at 1 s with full jitter, so recovery comes within seconds.
    // The link is up at the first call that gets through (intake's, say); the carrier
    // list follows at its own retry.
    eventually(
        Duration::from_secs(20),
        "taobao and carriers ok again",
        || async {
            let (_, h) = node.get("/healthz").await?;
            Ok((h["checks"]["taobao"]["status"] == "ok"
                && h["checks"]["carriers"]["status"] == "ok")
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let (_, h) = node.get("/healthz").await.unwrap();
    let taobao = h["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"] == "Taobao")
        .unwrap_or_else(|| panic!("{h}"))
        .clone();
    let row = |label: &str| {
        taobao["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[0] == label)
            .map(|r| r[1].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert!(row("link").starts_with("up since "), "{taobao}");
    assert!(
        row("last failure").ends_with("(recovered since)"),
        "{taobao}"
    );
    assert!(row("last success").ends_with(" s ago)"), "{taobao}");
    let ok_calls = sandbox
        .calls("taobao.logistics.companies.get")
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c["code"] == 0)
        .count();
    assert_eq!(
        ok_calls, 1,
        "one successful fetch after the outage, no storm"
    );

    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success());
}

/// `wms_node_taobao_calls_today` from the node's `/metrics`.
async fn calls_today(node: &Node) -> anyhow::Result<Option<u64>> {
    let text = reqwest::get(format!("{}/metrics", node.http_url))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("wms_node_taobao_calls_today "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_hand_out_the_days_call_budget_again() {
    let sandbox = Sandbox::start(&["--session", SESSION]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(dir.path(), &sandbox, SESSION, "").unwrap();
    // The written config has its [taobao] section already: the budget goes into it.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("[taobao]\n", "[taobao]\ndaily_call_budget = 5000\n", 1),
    )
    .unwrap();

    // Every attempt counts and the sandbox logs every call it gets, so the node's count of
    // today equals the sandbox's log of the day, across the restart.
    let logged = || async {
        Ok::<_, anyhow::Error>(
            sandbox
                .get("/sandbox/calls")
                .await?
                .as_array()
                .map_or(0, |a| a.len() as u64),
        )
    };
    let node = Node::start(&config).await.unwrap();
    let first = eventually(Duration::from_secs(15), "calls counted", || async {
        let n = calls_today(&node).await?;
        let all = logged().await?;
        Ok(n.filter(|n| *n >= 1 && *n == all))
    })
    .await
    .unwrap();
    let first_log = node.log();
    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success(), "exit {exit:?}");

    // Without the kept count the second run starts at 0 and counts only its own calls.
    let node = Node::start(&config).await.unwrap();
    let both = eventually(
        Duration::from_secs(15),
        "the day's calls of both runs",
        || async {
            let n = calls_today(&node).await?;
            let all = logged().await?;
            Ok(n.filter(|n| *n == all && all > first))
        },
    )
    .await;
    assert!(
        both.is_ok(),
        "the second run counted {:?} calls today; the sandbox got {} ({} from the first run)\n\
         first run's log:\n{first_log}\nsecond run's log:\n{}",
        calls_today(&node).await.ok().flatten(),
        logged().await.unwrap_or(0),
        first,
        node.log()
    );
    node.stop(Duration::from_secs(5)).unwrap();
}
