//! Shared parts of the floor's tests: the real `wms-node` binary, Mosquitto with a generated
//! config, and simulated devices (rumqttc clients, TCP_NODELAY on, as a real bridge would be).
//! Every wait polls a condition with a deadline; every port is picked free at run time.

#![allow(dead_code)]

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, NetworkOptions, Packet, QoS};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_wms-node");
pub const WAIT: Duration = Duration::from_secs(15);
pub const SITE: &str = "main";
pub const NODE_ID: &str = "gw-floor";

/// Where Debian installs Mosquitto.
pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Which broker a node uses in a test.
#[derive(Debug, Clone)]
pub enum BrokerKind {
    /// The node's own, on port 0.
    Embedded,
    /// Mosquitto on this port, with the node's files in `data/mosquitto`.
    External { port: u16 },
}

/// A node's config: a temp data dir, a fixed free HTTP port (the CLI finds the node there).
pub struct NodeConfig {
    pub path: PathBuf,
    pub data: PathBuf,
    pub http_port: u16,
}

pub fn write_config(dir: &Path, broker: &BrokerKind) -> NodeConfig {
    write_config_with(dir, broker, None)
}

/// The Taobao side of a node's config: the sandbox's gateway and OAuth URLs, a session it
/// knows.
pub struct TaobaoAt {
    pub rest_url: String,
    pub oauth_url: String,
    pub app_key: String,
    pub app_secret: String,
    pub session: String,
}

/// [`write_config`] with the Taobao side pointing at a sandbox.
pub fn write_config_with(dir: &Path, broker: &BrokerKind, taobao: Option<&TaobaoAt>) -> NodeConfig {
    let http_port = free_port();
    let data = dir.join("data");
    let mqtt = match broker {
        BrokerKind::Embedded => "listen = \"127.0.0.1:0\"\n".to_owned(),
        BrokerKind::External { port } => format!(
            "broker = \"mqtt://127.0.0.1:{port}\"\nusername = \"wms-node\"\npassword = \"node-pass-31337\"\n\
             reconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\nkeep_alive = \"5s\"\n"
        ),
    };
    let taobao = match taobao {
        None => "[taobao]\napp_key = \"12345678\"\napp_secret = \"test-secret-31337\"\n\
                 endpoint = \"http://127.0.0.1:9/router/rest\"\noauth_url = \"http://127.0.0.1:9/oauth\"\n"
            .to_owned(),
        Some(t) => format!(
            "[taobao]\napp_key = \"{}\"\napp_secret = \"{}\"\nsession = \"{}\"\n\
             endpoint = \"{}\"\noauth_url = \"{}\"\n",
            t.app_key, t.app_secret, t.session, t.rest_url, t.oauth_url
        ),
    };
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "[node]\nid = \"{NODE_ID}\"\nsite = \"{SITE}\"\ndata_dir = \"{}\"\n\
             {taobao}\
             [http]\nlisten = \"127.0.0.1:{http_port}\"\n[mqtt]\n{mqtt}",
            data.display()
        ),
    )
    .unwrap();
    NodeConfig {
        path,
        data,
        http_port,
    }
}

fn clean_env(cmd: &mut Command) {
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
}

/// `wms-node --config … ARGS`: exit code, stdout, stderr.
pub fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(args);
    clean_env(&mut cmd);
    let out = cmd.output().expect("run wms-node");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `devices add ID --class CLASS --json`: the device's password.
pub fn add_device(config: &Path, class: &str, id: &str) -> String {
    let (code, out, err) = cli(config, &["devices", "add", id, "--class", class, "--json"]);
    assert_eq!(code, 0, "devices add {class} {id}: {err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["device"]["username"], format!("{class}/{id}"));
    v["password"].as_str().unwrap().to_owned()
}

/// `devices list --json`.
pub fn list_devices(config: &Path) -> Vec<Value> {
    let (code, out, err) = cli(config, &["devices", "list", "--json"]);
    assert_eq!(code, 0, "devices list: {err}");
    serde_json::from_str::<Vec<Value>>(&out).unwrap()
}

/// A running `wms-node run` and its JSON log lines.
pub struct Node {
    pub child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    pub config: PathBuf,
    pub http_port: u16,
}

impl Node {
    pub fn start(cfg: &NodeConfig) -> Node {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--log-format", "json", "--config"])
            .arg(&cfg.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        clean_env(&mut cmd);
        let mut child = cmd.spawn().expect("start wms-node");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(v);
            }
        });
        Node {
            child,
            lines,
            config: cfg.path.clone(),
            http_port: cfg.http_port,
        }
    }

    /// The first log line whose message is `message`, waiting for it.
    pub fn wait_log(&self, message: &str) -> Value {
        self.wait_log_n(message, 1)
    }

    /// The `n`-th log line whose message is `message`, waiting for it.
    pub fn wait_log_n(&self, message: &str, n: usize) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let found: Vec<Value> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter(|v| v["message"] == message)
                .cloned()
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {n}x log {message:?} in time; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The embedded broker's port (from the log).
    pub fn broker_port(&self) -> u16 {
        let v = self.wait_log("embedded MQTT broker listening");
        let addr: std::net::SocketAddr = v["addr"].as_str().unwrap().parse().unwrap();
        addr.port()
    }

    /// Waits until the node's session is connected (the `n`-th time).
    pub fn wait_connected(&self, n: usize) {
        self.wait_log_n("connected to the MQTT broker", n);
    }

    /// `/metrics`.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// A counter's value (0 when absent): `name{labels}` exactly as exported.
    pub fn counter(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "node did not stop");
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

/// Mosquitto with a generated config: the node's password and ACL files, TCP_NODELAY,
/// persistence (sessions and queued QoS 1 messages survive a restart).
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    /// A second listener without authentication, for a test's observer (sees everything).
    pub observer_port: u16,
    dir: tempfile::TempDir,
    files: PathBuf,
}

impl Mosquitto {
    /// Whether Mosquitto is installed; where it must be (`WMS_REQUIRE_MOSQUITTO`, set by
    /// `.ci/run`), a missing one fails instead of skipping.
    pub fn available() -> bool {
        if Path::new(MOSQUITTO).exists() {
            return true;
        }
        assert!(
            std::env::var_os("WMS_REQUIRE_MOSQUITTO").is_none(),
            "mosquitto is required (WMS_REQUIRE_MOSQUITTO) but {MOSQUITTO} is missing"
        );
        eprintln!("NOTICE: mosquitto not installed; Mosquitto variant skipped");
        false
    }

    /// Starts it on `port` with the password and ACL files in `files` (the node's
    /// `mosquitto_dir`), which must exist.
    pub fn start(port: u16, files: &Path) -> Mosquitto {
        let mut m = Mosquitto {
            child: None,
            port,
            observer_port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            files: files.to_owned(),
        };
        m.spawn();
        m
    }

    pub fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nper_listener_settings true\nset_tcp_nodelay true\n\
                 persistence true\npersistence_location {dir}/\nlog_dest file {dir}/mosquitto.log\n\
                 listener {port} 127.0.0.1\nallow_anonymous false\n\
                 password_file {files}/passwd\nacl_file {files}/acl\n\
                 listener {observer} 127.0.0.1\nallow_anonymous true\n",
                port = self.port,
                observer = self.observer_port,
                files = self.files.display(),
                dir = self.dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reloads the password and ACL files (what `systemctl reload mosquitto` does).
    pub fn reload(&self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-HUP", &c.id().to_string()])
                .status();
        }
        // Mosquitto reloads on its next loop pass.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Stops it the way systemd does (SIGTERM: it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "mosquitto did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What a simulated device received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// A simulated device: an MQTT client with the device's credentials and will, subscribed to
/// its `cmd` topic.
pub struct Device {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<Received>,
    pub class: String,
    pub id: String,
    task: tokio::task::JoinHandle<()>,
    pub connack: Arc<Mutex<Option<rumqttc::ConnectReturnCode>>>,
    pub suback: Arc<Mutex<Vec<rumqttc::SubscribeReasonCode>>>,
}

impl Device {
    pub fn options(port: u16, class: &str, id: &str, password: &str) -> MqttOptions {
        let mut o = MqttOptions::new(format!("wms-{SITE}-{class}-{id}"), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        // Persistent, as wms-bridge's sessions are: commands wait for a short disconnect.
        o.set_clean_session(false);
        o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        o.set_credentials(format!("{class}/{id}"), password);
        o.set_last_will(LastWill::new(
            format!("wms/{SITE}/{class}/{id}/state"),
            r#"{"v":1,"online":false}"#,
            QoS::AtLeastOnce,
            true,
        ));
        o
    }

    /// Connects and subscribes to its own `cmd` topic; publishes its birth.
    pub async fn connect(port: u16, class: &str, id: &str, password: &str) -> Device {
        Device::connect_with(Device::options(port, class, id, password), class, id, true).await
    }

    pub async fn connect_with(o: MqttOptions, class: &str, id: &str, birth: bool) -> Device {
        let (client, eventloop) = AsyncClient::new(o, 256);
        let (tx, rx) = mpsc::unbounded_channel();
        let connack = Arc::new(Mutex::new(None));
        let suback = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(pump(eventloop, tx, connack.clone(), suback.clone()));
        let d = Device {
            client,
            rx,
            class: class.to_owned(),
            id: id.to_owned(),
            task,
            connack,
            suback,
        };
        // A refused connection ends the event loop: then these fail, and the test looks at
        // the CONNACK instead.
        let _ = d.client.subscribe(d.topic("cmd"), QoS::AtLeastOnce).await;
        if birth {
            let _ = d
                .client
                .publish(
                    d.topic("state"),
                    QoS::AtLeastOnce,
                    true,
                    format!(r#"{{"v":1,"online":true,"class":"{class}","fw":"sim 1.0"}}"#),
                )
                .await;
        }
        d
    }

    pub fn topic(&self, channel: &str) -> String {
        format!("wms/{SITE}/{}/{}/{channel}", self.class, self.id)
    }

    /// Waits for the broker's CONNACK code.
    pub async fn connack(&self) -> rumqttc::ConnectReturnCode {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(c) = *self.connack.lock().unwrap() {
                return c;
            }
            assert!(Instant::now() < deadline, "no CONNACK");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn publish(&self, channel: &str, payload: impl Into<Vec<u8>>) {
        self.client
            .publish(self.topic(channel), QoS::AtLeastOnce, false, payload.into())
            .await
            .unwrap();
    }

    /// Waits for the next message on its `cmd` topic.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("no command in time")
            .expect("device connection ended")
    }

    /// Nothing arrives within `d`.
    pub async fn nothing_for(&mut self, d: Duration) {
        if let Ok(Some(r)) = tokio::time::timeout(d, self.rx.recv()).await {
            panic!(
                "unexpected message on {}: {}",
                r.topic,
                String::from_utf8_lossy(&r.payload)
            );
        }
    }

    /// Sends `payload` on `evt` and returns the answer.
    pub async fn ask(&mut self, payload: &str) -> Received {
        self.publish("evt", payload).await;
        self.next().await
    }

    /// Drops the connection without a DISCONNECT (the broker fires the will).
    pub fn vanish(self) {
        self.task.abort();
    }
}

async fn pump(
    mut el: EventLoop,
    tx: mpsc::UnboundedSender<Received>,
    connack: Arc<Mutex<Option<rumqttc::ConnectReturnCode>>>,
    suback: Arc<Mutex<Vec<rumqttc::SubscribeReasonCode>>>,
) {
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(a))) => *connack.lock().unwrap() = Some(a.code),
            Ok(Event::Incoming(Packet::SubAck(a))) => suback.lock().unwrap().extend(a.return_codes),
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let _ = tx.send(Received {
                    topic: p.topic.clone(),
                    payload: p.payload.to_vec(),
                });
            }
            Ok(_) => {}
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                *connack.lock().unwrap() = Some(code);
                return;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A `request_task` event.
pub fn request_task(msg_id: &str) -> String {
    format!(
        r#"{{"type":"request_task","v":1,"msg_id":"{msg_id}","ts":"2026-12-07T08:00:00Z","mode":"pick"}}"#
    )
}

/// A `scan` event.
pub fn scan(msg_id: &str) -> String {
    format!(
        r#"{{"type":"scan","v":1,"msg_id":"{msg_id}","ts":"2026-12-07T08:00:00Z","code":"6901234567892","symbology":"ean13","mode":"pick"}}"#
    )
}

/// An anonymous client on Mosquitto's observer listener, subscribed to `filter`.
pub async fn observer(port: u16, filter: &str) -> (AsyncClient, mpsc::UnboundedReceiver<Received>) {
    let mut o = MqttOptions::new(format!("observer-{}", free_port()), "127.0.0.1", port);
    // A reload (SIGHUP) drops Mosquitto's clients; the subscription must survive it.
    o.set_clean_session(false);
    o.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
    let (client, eventloop) = AsyncClient::new(o, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(pump(
        eventloop,
        tx,
        Arc::new(Mutex::new(None)),
        Arc::new(Mutex::new(Vec::new())),
    ));
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    (client, rx)
}

/// The next message on `rx` matching `pred`.
pub async fn expect(
    rx: &mut mpsc::UnboundedReceiver<Received>,
    what: &str,
    mut pred: impl FnMut(&Received) -> bool,
) -> Received {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(r)) if pred(&r) => return r,
            Ok(Some(_)) => {}
            _ => panic!("timed out waiting for {what}"),
        }
    }
}

/// Polls `f` until it holds.
pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
