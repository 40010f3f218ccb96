//! The real `wms-node run` against hostile HTTP clients: 200 slowloris connections are dropped
//! while a normal client is still served, every error is JSON, and a state-changing admin
//! request without the admin header (what a web page would send) is refused.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_wms-node");

struct Node {
    child: Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Node {
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = \"gw-http\"\ndata_dir = \"{}\"\n\
             [taobao]\napp_key = \"12345678\"\napp_secret = \"test-secret\"\n\
             endpoint = \"http://127.0.0.1:9/router/rest\"\noauth_url = \"http://127.0.0.1:9/oauth\"\n\
             [mqtt]\nlisten = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"1s\"\nmax_connections = 16\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("WMS_NODE") || name == "RUST_LOG" || name.starts_with("NOTIFY_SOCKET") {
            cmd.env_remove(&k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "ops HTTP server listening" {
                let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_owned());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    Node { child, addr }
}

/// Connects, sends part of a request, then a byte now and then; returns how long the node
/// kept the connection and whether it ever answered.
async fn slowloris(addr: String) -> (Duration, bool) {
    let started = Instant::now();
    let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
        return (started.elapsed(), false);
    };
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-slow: ")
        .await;
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            n = s.read(&mut buf) => {
                return (started.elapsed(), matches!(n, Ok(n) if n > 0));
            }
            _ = tokio::time::sleep(Duration::from_millis(300)) => {
                if s.write_all(b"x").await.is_err() {
                    return (started.elapsed(), false);
                }
            }
        }
        if started.elapsed() > Duration::from_secs(90) {
            return (started.elapsed(), false);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_and_normal_ones_served() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let base = format!("http://{}", node.addr);
    let attackers: Vec<_> = (0..200)
        .map(|_| tokio::spawn(slowloris(node.addr.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    let served_in = t0.elapsed();
    assert!(r.status() == 200 || r.status() == 503, "{}", r.status());
    // 200 clients through 16 slots at 1 s each: about 13 s of queueing at worst.
    assert!(served_in < Duration::from_secs(30), "{served_in:?}");
    let mut longest = Duration::ZERO;
    for a in attackers {
        let (held, answered) = a.await.unwrap();
        // The node may answer a trickled request with an error (408) or just close it; it
        // never serves it.
        let _ = answered;
        longest = longest.max(held);
    }
    assert!(
        longest < Duration::from_secs(45),
        "a slow client was held {longest:?}"
    );
    // Still serving.
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_and_a_browser_cannot_change_anything() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let base = format!("http://{}", node.addr);
    let http = reqwest::Client::new();
    let json = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert!(v["error"].is_string(), "{status}: {v}");
        (status, v["error"].as_str().unwrap().to_owned())
    };
    // A page's form post to the body-less retry, and to the auth refresh.
    for path in [
        "/api/queue/ops/1/retry",
        "/api/auth/refresh",
        "/api/ota/restart",
    ] {
        let (status, msg) = json(http.post(format!("{base}{path}")).send().await.unwrap()).await;
        assert_eq!(status, 403, "{path}: {msg}");
        assert!(msg.contains("x-wms-node"), "{msg}");
    }
    let (status, _) = json(
        http.post(format!("{base}/api/queue/ops/1/retry"))
            .header("x-wms-node", "1")
            .header("origin", "http://attacker.example")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    // With the header: the node's own answer (no such op), JSON.
    let (status, _) = json(
        http.post(format!("{base}/api/queue/ops/1/retry"))
            .header("x-wms-node", "1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    // The server's own errors.
    let admin = |r: reqwest::RequestBuilder| r.header("x-wms-node", "1");
    for (req, want) in [
        (http.get(format!("{base}/no/such/page")), 404),
        (http.delete(format!("{base}/healthz")), 405),
        (
            admin(http.post(format!("{base}/api/queue/ops/1/drop"))).body("{}"),
            415,
        ),
        (
            admin(http.post(format!("{base}/api/queue/ops/1/drop")))
                .header("content-type", "application/json")
                .body("{\"force\": \"yes\"}"),
            422,
        ),
        (http.get(format!("{base}/api/queue/ops/not-a-seq")), 400),
    ] {
        let (status, msg) = json(req.send().await.unwrap()).await;
        assert_eq!(status, want, "{msg}");
    }
}
