//! The real `wms-node queue …` executable, against a stopped node (it opens the database
//! itself) and against a running one (it must go through the admin HTTP API, since the
//! database is locked by the node's process).

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod outbox_support;

use outbox_support::*;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use wms_node::outbox::Outcome;

const BIN: &str = env!("CARGO_BIN_EXE_wms-node");

fn write_config(dir: &Path, http_port: u16) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    let text = format!(
        "[node]\nid = \"test-gw\"\ndata_dir = \"{}\"\n\n[taobao]\napp_key = \"12345678\"\n\
         app_secret = \"not-a-real-secret\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[mqtt]\nlisten = \"127.0.0.1:0\"\n",
        dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A port nothing listens on (bound and released at once).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn queue(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).arg("queue").args(args);
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

/// Three shipments and a stock value queued, one note dead-lettered; returns its seq.
async fn populate(dir: &tempfile::TempDir) -> u64 {
    let store = open(dir);
    let (outbox, _) = outbox(&store, fast_config());
    let dead = outbox.enqueue_now(TestOp::note(1, 1)).await.unwrap().seq;
    let sink = ScriptedSink::new(|_, _| Outcome::Permanent {
        reason: "isv.invalid-parameter: num_iid".into(),
    });
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(Duration::from_secs(10), || sink.calls() == 1).await);
    token.cancel();
    run.await.unwrap();
    for n in 2..=4 {
        outbox
            .enqueue_now(TestOp::Ship { tid: n, n })
            .await
            .unwrap();
    }
    outbox
        .enqueue_now(TestOp::Stock {
            sku: 9,
            qty: 12,
            n: 5,
        })
        .await
        .unwrap();
    drop(outbox);
    store.close().await.unwrap();
    dead
}

#[tokio::test]
async fn with_the_node_stopped_the_commands_open_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let dead = populate(&dir).await;
    let config = write_config(dir.path(), closed_port());

    let (code, out, err) = queue(&config, &["stats", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s = json(&out);
    assert_eq!(s["pending"], 4);
    assert_eq!(s["dead_letters"], 1);
    assert_eq!(s["by_kind"]["ship"]["pending"], 3);
    assert_eq!(s["by_kind"]["note"]["dead"], 1);
    assert_eq!(s["quarantined"], 0);

    let (code, out, _) = queue(&config, &["stats"]);
    assert_eq!(code, 0);
    assert!(out.contains("dead letters    1"), "{out}");
    assert!(out.contains("KIND"), "{out}");

    let (code, out, _) = queue(&config, &["list"]);
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("SEQ"), "{out}");
    assert!(out.contains("tid 2"), "{out}");
    assert!(out.contains("dead"), "{out}");
    assert!(out.contains("isv.invalid-parameter"), "{out}");

    let (code, out, _) = queue(&config, &["list", "--state", "dead", "--json"]);
    assert_eq!(code, 0);
    let page = json(&out);
    assert_eq!(page["ops"].as_array().unwrap().len(), 1);
    assert_eq!(page["ops"][0]["seq"], dead);

    let (code, out, _) = queue(
        &config,
        &["list", "--kind", "ship", "--limit", "2", "--json"],
    );
    assert_eq!(code, 0);
    let page = json(&out);
    assert_eq!(page["ops"].as_array().unwrap().len(), 2);
    let after = page["next_after"].as_u64().expect("a next page");
    let (_, out, _) = queue(
        &config,
        &[
            "list",
            "--kind",
            "ship",
            "--after",
            &after.to_string(),
            "--json",
        ],
    );
    assert_eq!(json(&out)["ops"].as_array().unwrap().len(), 1);

    let (code, out, _) = queue(&config, &["show", &dead.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("dead because"), "{out}");
    assert!(out.contains("idempotency key"), "{out}");

    let (code, out, _) = queue(&config, &["retry", &dead.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("back in the queue"), "{out}");
    let (_, out, _) = queue(&config, &["stats", "--json"]);
    assert_eq!(json(&out)["dead_letters"], 0);
    assert_eq!(json(&out)["pending"], 5);

    // Dropping: a reason is required, and a queued shipment needs --force.
    let (code, _, err) = queue(&config, &["drop", &dead.to_string()]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = queue(&config, &["drop", "2", "--reason", ""]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = queue(&config, &["drop", "2", "--reason", "cancelled by phone"]);
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");
    let (code, out, err) = queue(
        &config,
        &[
            "drop",
            "2",
            "--reason",
            "cancelled by phone",
            "--force",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["action"], "dropped");

    let (code, _, err) = queue(&config, &["show", "2"]);
    assert_eq!(code, 1);
    assert!(err.contains("no op 2"), "{err}");
    let (code, _, err) = queue(&config, &["list", "--state", "sideways"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn with_the_node_running_the_commands_go_through_its_http_api() {
    let dir = tempfile::tempdir().unwrap();
    let dead = populate(&dir).await;
    // "The node": holds the database open and serves the queue API.
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = wms_node::outbox::admin::router(outbox.admin());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let config = write_config(dir.path(), port);

    let c = config.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || queue(&c, &["stats", "--json"]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["pending"], 4);

    let c = config.clone();
    let d = dead.to_string();
    let (code, out, err) = tokio::task::spawn_blocking(move || queue(&c, &["retry", &d]))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("back in the queue"), "{out}");
    // The node's own view changed: the retry went through it.
    assert_eq!(outbox.admin().stats().unwrap().dead_letters, 0);

    let c = config.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || queue(&c, &["show", "999"]))
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("no op 999"), "{err}");
    server.abort();
}

#[tokio::test]
async fn without_a_database_the_commands_say_where_they_looked() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), closed_port());
    let c = config.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || queue(&c, &["stats"]))
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("no database at"), "{err}");
    assert!(
        !dir.path().join(wms_node::store::FILE).exists(),
        "nothing was created"
    );
}
