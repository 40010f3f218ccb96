//! `wms-node run` as a process: it serves the ops endpoints, talks to systemd's notify
//! socket, and stops cleanly within 5 s of SIGTERM or SIGINT.

// Tests and benches report failures by unwrapping; the sleeps here poll from plain
// threads, never from the runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wms_node::ops::restarts;

const BIN: &str = env!("CARGO_BIN_EXE_wms-node");

/// A config with a temp data dir, a free ops port and dummy Taobao credentials.
fn write_config(dir: &Path) -> PathBuf {
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = \"gw-test\"\ndata_dir = \"{}\"\n\
             [taobao]\napp_key = \"12345678\"\napp_secret = \"test-secret-31337\"\n\
             endpoint = \"http://127.0.0.1:9/router/rest\"\noauth_url = \"http://127.0.0.1:9/oauth\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[mqtt]\nlisten = \"127.0.0.1:0\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    config
}

fn command(config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--log-format", "json", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        let k_str = k.to_string_lossy();
        if k_str.starts_with("WMS_NODE")
            || k_str == "RUST_LOG"
            || k_str.starts_with("NOTIFY_SOCKET")
            || k_str.starts_with("WATCHDOG_")
        {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// A running node and its log lines (JSON objects), read on a thread.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Node {
    fn start(mut cmd: Command) -> Node {
        let mut child = cmd.spawn().expect("start wms-node");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Node {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line whose message is `message` and returns it parsed.
    fn wait_for(&mut self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            self.seen.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == message
            {
                return v;
            }
        }
        panic!("no log line {message:?}; saw:\n{}", self.seen.join("\n"));
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the exit, at most `limit`; returns the exit code and the time it took.
    fn wait_exit(&mut self, limit: Duration) -> (i32, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Drain the rest of the log for the secret check.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(line);
                }
                return (status.code().unwrap_or(-1), started.elapsed());
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "wms-node did not exit within {limit:?}; log:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn sigterm_stops_a_serving_node_within_5_seconds_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut node = Node::start(command(&config));

    let listening = node.wait_for("ops HTTP server listening");
    let addr = listening["addr"].as_str().unwrap().to_owned();
    node.wait_for("ready");
    assert!(dir.path().join("data").is_dir());

    // The config authorises no shop: /healthz answers 503 once order intake has found that
    // out (and 200 before), never anything else.
    let (status, body) = http_get(&addr, "/healthz");
    assert!(status == 200 || status == 503, "{status} {body}");
    if status == 503 {
        assert!(body.contains("not authorised"), "{body}");
    }
    assert!(body.contains("\"node_id\":\"gw-test\""), "{body}");
    let (status, body) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("wms_node_build_info"), "{body}");
    let (status, body) = http_get(&addr, "/");
    assert_eq!(status, 200);
    assert!(body.contains("gw-test"), "{body}");

    node.signal("TERM");
    let (code, took) = node.wait_exit(Duration::from_secs(5));
    assert_eq!(code, 0, "log:\n{}", node.seen.join("\n"));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let log = node.seen.join("\n");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("\"stopped\""), "{log}");
    assert!(!log.contains("test-secret-31337"), "{log}");
}

#[test]
fn sigint_stops_the_node_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut node = Node::start(command(&config));
    node.wait_for("ready");
    node.signal("INT");
    let (code, _) = node.wait_exit(Duration::from_secs(5));
    assert_eq!(code, 0);
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut cmd = command(&config);
    cmd.env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000");
    let mut node = Node::start(cmd);

    let mut heard = String::new();
    let mut buf = [0u8; 512];
    let mut recv_until = |want: &str, heard: &mut String| {
        while !heard.contains(want) {
            let n = socket.recv(&mut buf).expect("a notification in time");
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    recv_until("READY=1", &mut heard);
    recv_until("WATCHDOG=1", &mut heard);
    node.signal("TERM");
    recv_until("STOPPING=1", &mut heard);
    let (code, _) = node.wait_exit(Duration::from_secs(5));
    assert_eq!(code, 0);
}

#[test]
fn run_refuses_to_start_without_taobao_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[node]\nid = \"gw1\"\n").unwrap();
    let out = command(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("taobao.app_key: is required"), "{err}");
    assert!(err.contains("taobao.app_secret: is required"), "{err}");
}

#[test]
fn run_reports_a_taken_port_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = write_config(dir.path());
    let out = command(&config)
        .env(
            "WMS_NODE__HTTP__LISTEN",
            taken.local_addr().unwrap().to_string(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.listen"), "{err}");
}

#[test]
fn a_damaged_store_stops_the_node_with_the_status_systemd_does_not_restart() {
    // A power cut mid-write that left the file unreadable (here: random bytes). Restarting
    // cannot fix it, so the node must not crash-loop: exit 2 (RestartPreventExitStatus=2)
    // with a message that names the file, and the file left as it was for recovery. Both
    // the store and an earlier release's store waiting to be converted.
    for name in [wms_node::store::FILE, wms_node::store::LEGACY_FILE] {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path());
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let db = data.join(name);
        let junk: Vec<u8> = (0..65_536u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        std::fs::write(&db, &junk).unwrap();
        let started = Instant::now();
        let out = command(&config).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {out:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&db.display().to_string()), "{name}: {err}");
        assert!(
            err.contains("what to do:") && err.contains("damaged"),
            "{name}: {err}"
        );
        assert!(err.contains("systemd does not restart it"), "{name}: {err}");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            junk,
            "{name}: the damaged file is kept"
        );
        let left: Vec<_> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            // The record of runs (ops::restarts) is no part of the store.
            .filter(|f| ![restarts::FILE, restarts::LOCK_FILE].contains(&f.as_str()))
            .collect();
        assert_eq!(left, vec![name.to_owned()], "nothing else is left behind");
    }
}
