//! Which exits systemd restarts is one decision (`daemon::Exit`, the unit's
//! `RestartPreventExitStatus=2`): permanent causes (a bad config, a damaged store, a store
//! written by a newer release) exit 2 with one line saying what to do; transient ones exit 1.
//! And the node learns that it was restarted: kills, failures and power cuts are counted in
//! `wms_node_restarts_total`, the third in a row raises `restart_loop`, and the launcher waits
//! longer before each restart in a row. Real `wms-node` processes throughout.

// Tests and benches report failures by unwrapping; the sleeps here poll from plain threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wms_node::ops::restarts::{Cause, Ended, Record};

const BIN: &str = env!("CARGO_BIN_EXE_wms-node");

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = \"gw-exit\"\ndata_dir = \"{}\"\n\
             [taobao]\napp_key = \"12345678\"\napp_secret = \"test-secret\"\n\
             endpoint = \"http://127.0.0.1:9/router/rest\"\noauth_url = \"http://127.0.0.1:9/oauth\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nlisten = \"127.0.0.1:0\"\n{extra}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    config
}

fn command(config: &Path, sub: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--log-format", "json", "--config"])
        .arg(config)
        .arg(sub)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("WMS_NODE") || name == "RUST_LOG" || name.starts_with("NOTIFY_SOCKET") {
            cmd.env_remove(&k);
        }
    }
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn record(dir: &Path) -> Record {
    Record::load(&dir.join("data")).unwrap().unwrap()
}

/// A running node; killed on drop.
struct Node {
    child: Child,
    addr: String,
}

impl Node {
    fn start(config: &Path) -> Node {
        let mut child = command(config, "run").spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut addr = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if v["message"] == "ops HTTP server listening" {
                    addr = v["addr"].as_str().map(str::to_owned);
                }
                if v["message"] == "ready" {
                    let _ = tx.send(addr.clone().unwrap_or_default());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Node { child, addr }
    }

    fn get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn term(mut self) -> i32 {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        self.child.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn permanent_causes_exit_2_with_one_line_saying_what_to_do() {
    // A bad config.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[outbox]\nrate_per_second = 1e-300\n");
    let out = command(&config, "run").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let what: Vec<String> = text(&out)
        .lines()
        .filter(|l| l.contains("what to do:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(what.len(), 1, "{}", text(&out));
    assert!(what[0].contains("check-config"), "{}", what[0]);

    // A damaged store file.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let junk: Vec<u8> = (0..65_536u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.path().join("data").join(wms_node::store::FILE), &junk).unwrap();
    let out = command(&config, "run").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let log = text(&out);
    let what = log.lines().find(|l| l.contains("what to do:")).unwrap();
    assert!(
        what.contains("damaged") && what.contains("backup"),
        "{what}"
    );
    // A person must act: the next start is no restart to count.
    assert!(matches!(
        record(dir.path()).ended,
        Some(Ended::Permanent { .. })
    ));

    // A store written by a newer release (an OTA rollback, a downgraded package).
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            std::fs::create_dir_all(dir.path().join("data")).unwrap();
            let opts = wms_node::store::StoreOptions::in_dir(dir.path().join("data"));
            let store =
                wms_node::store::Store::open(opts, wms_node::ops::alert::Alerts::new()).unwrap();
            let newer = wms_node::store::schema::current_version() + 5;
            store
                .write(move |txn| {
                    wms_node::store::put(txn, wms_node::store::META, "schema_version", &newer)?;
                    wms_node::store::put(txn, wms_node::store::META, "schema_compat", &newer)
                })
                .await
                .unwrap();
            store.close().await.unwrap();
        });
    }
    let out = command(&config, "run").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let log = text(&out);
    let what = log.lines().find(|l| l.contains("what to do:")).unwrap();
    assert!(what.contains("newer wms-node"), "{what}");

    // A second node on a running node's data directory (started by hand): restarting it
    // would only collide again. The running node, and its record of runs, are untouched.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let running = Node::start(&config);
    let before = record(dir.path());
    let out = command(&config, "run").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let log = text(&out);
    let what = log.lines().find(|l| l.contains("what to do:")).unwrap();
    assert!(what.contains("another process holds the store"), "{what}");
    assert_eq!(record(dir.path()), before);
    assert!(running.get("/metrics").starts_with("HTTP/1.1 200"));
    assert_eq!(running.term(), 0);
    let after = record(dir.path());
    assert_eq!(
        (after.ended.clone(), after.in_a_row),
        (Some(Ended::Clean), 0),
        "{after:?}"
    );
}

#[test]
fn a_transient_cause_exits_1_and_the_next_start_counts_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = write_config(dir.path(), "");
    let out = command(&config, "run")
        .env(
            "WMS_NODE__HTTP__LISTEN",
            taken.local_addr().unwrap().to_string(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("systemd starts it again"),
        "{}",
        text(&out)
    );
    assert!(matches!(
        record(dir.path()).ended,
        Some(Ended::Failed { .. })
    ));
    drop(taken);
    let node = Node::start(&config);
    let r = record(dir.path());
    assert_eq!((r.in_a_row, r.last_cause), (1, Some(Cause::Failure)));
    let metrics = node.get("/metrics");
    assert!(
        metrics.contains("wms_node_restarts_total{cause=\"failure\"} 1"),
        "{metrics}"
    );
    assert_eq!(node.term(), 0);
    assert_eq!(record(dir.path()).ended, Some(Ended::Clean));
}

#[test]
fn kills_are_counted_the_third_in_a_row_alerts_and_a_clean_stop_ends_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    Node::start(&config).kill9();
    for n in 1..=3 {
        let node = Node::start(&config);
        let metrics = node.get("/metrics");
        assert!(
            metrics.contains(&format!("wms_node_restarts_total{{cause=\"crash\"}} {n}")),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!("wms_node_restarts_in_a_row {n}")),
            "{metrics}"
        );
        let health = node.get("/healthz");
        assert_eq!(health.contains("restart_loop"), n >= 3, "{n}: {health}");
        if n < 3 {
            node.kill9();
        } else {
            assert_eq!(node.term(), 0);
        }
    }
    // Stopped on request: the next start is no restart and the alert is gone.
    let node = Node::start(&config);
    assert!(!node.get("/healthz").contains("restart_loop"));
    assert_eq!(record(dir.path()).in_a_row, 0);
    assert_eq!(record(dir.path()).totals[&Cause::Crash], 3);
    assert_eq!(node.term(), 0);
}

#[test]
fn the_launcher_waits_longer_before_a_restart_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    // The build it starts cannot run (a bad key): exit 2 right after the wait.
    let config = write_config(dir.path(), "[outbox]\nburst = 0\n");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let boot = wms_node::ops::restarts::boot_id();
    // The previous run was the second in a row and died without a word on this boot.
    Record {
        in_a_row: 1,
        boot_id: boot.clone(),
        ..Record::default()
    }
    .save(&dir.path().join("data"))
    .unwrap();
    let started = Instant::now();
    let out = command(&config, "launch").output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("restart 2 in a row (after a crash): waiting 5s more"),
        "{}",
        text(&out)
    );
    assert!(took >= Duration::from_secs(5), "{took:?}");
    // After a clean stop it starts at once.
    Record {
        ended: Some(Ended::Clean),
        boot_id: boot,
        ..Record::default()
    }
    .save(&dir.path().join("data"))
    .unwrap();
    let started = Instant::now();
    let out = command(&config, "launch").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(5));
}
