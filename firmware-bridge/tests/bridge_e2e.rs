//! End-to-end tests of the real `wms-bridge` binary: pseudo-terminals stand in for a barcode
//! scanner and a label printer, and a real MQTT broker carries the floor protocol — rumqttd
//! in-process, and Mosquitto when `/usr/sbin/mosquitto` is installed (CI installs it).
//!
//! Every wait polls a condition with a deadline; ports are picked free at run time.

// Tests and benches report failures by unwrapping; the sleeps here poll from plain
// threads, never from the runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firmware_bridge::bridge::serial::Pty;
use firmware_bridge::proto::{Channel, Mode, PrintStatus, Symbology, Uplink, json};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);
const ZPL_READY: &[u8] = b"\x02030,0,0,1245,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,1,2,4,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n";

// ---------------------------------------------------------------------------------------------
// Brokers

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "broker on port {port} did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// rumqttd in this process, on a free port. (rumqttd cannot be stopped; the thread ends with
/// the test process.)
fn start_rumqttd() -> u16 {
    use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};
    let port = free_port();
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut v4 = HashMap::new();
    v4.insert(
        "v4".to_owned(),
        ServerSettings {
            name: "v4".to_owned(),
            listen,
            tls: None,
            next_connection_delay_ms: 1,
            connections: ConnectionSettings {
                connection_timeout_ms: 5000,
                max_payload_size: 1024 * 1024,
                max_inflight_count: 100,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        },
    );
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(v4),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::spawn(move || {
        let mut broker = rumqttd::Broker::new(config);
        let _ = broker.start();
    });
    wait_for_port(port);
    port
}

/// Where Debian installs Mosquitto (not on a non-login shell's PATH).
const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// The Mosquitto binary: Debian's, else the first on the PATH.
fn mosquitto_path() -> Option<std::path::PathBuf> {
    if Path::new(MOSQUITTO).exists() {
        return Some(MOSQUITTO.into());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("mosquitto"))
            .find(|p| p.is_file())
    })
}

/// A Mosquitto process with a generated config; persistence on, so sessions and queued QoS 1
/// messages survive a restart as they do on a real installation.
struct Mosquitto {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Whether Mosquitto is installed. Where it must be (`WMS_REQUIRE_MOSQUITTO`, which
    /// `.ci/run` sets), a missing one fails the test instead of skipping it.
    fn available() -> bool {
        if mosquitto_path().is_some() {
            return true;
        }
        assert!(
            std::env::var_os("WMS_REQUIRE_MOSQUITTO").is_none(),
            "mosquitto is required (WMS_REQUIRE_MOSQUITTO) but is neither at {MOSQUITTO} nor \
             on the PATH: apt-get install mosquitto"
        );
        eprintln!(
            "NOTICE: mosquitto not installed; Mosquitto variant skipped (apt-get install \
             mosquitto; CI installs it and requires it)"
        );
        false
    }

    fn start() -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mosquitto {
            child: None,
            port: free_port(),
            dir,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                // `user root`: as root, mosquitto would otherwise drop to a `mosquitto` user
                // that cannot write the persistence file into this root-owned temp dir.
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {dir}/\nlog_dest file {dir}/mosquitto.log\n",
                port = self.port,
                dir = self.dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new(mosquitto_path().unwrap_or_else(|| MOSQUITTO.into()))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// Stops the broker the way systemd does (SIGTERM: it saves its persistence file).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "mosquitto did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
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

fn terminate(child: &mut Child) -> Option<ExitStatus> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).ok()?)?;
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP proxy in front of a broker that can be cut (all connections dropped, new ones closed
/// at once) and restored: a broker outage as the bridge sees it.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let (cut, cut_rx) = tokio::sync::watch::channel(0u64);
        let flag = down.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                // Only cuts after this connection was made count.
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Proxy { port, down, cut }
    }

    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// The node's side: an MQTT client that records everything under wms/{site}/#

struct Observer {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    seen: Vec<(String, Vec<u8>)>,
}

impl Observer {
    /// Connects with a persistent session (`id` fixed), subscribing at every CONNACK.
    async fn connect(port: u16, site: &str, id: &str) -> Observer {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_clean_session(false);
        opts.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let filter = format!("wms/{site}/#");
        let sub = client.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = sub.subscribe(filter.clone(), QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, subscribed.recv())
            .await
            .expect("observer did not subscribe");
        Observer {
            client,
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a message on `topic` whose JSON satisfies `pred`; returns it.
    async fn expect(
        &mut self,
        topic: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> (Vec<u8>, Value) {
        let check = |t: &str, p: &[u8]| -> Option<Value> {
            if t != topic {
                return None;
            }
            let v: Value = serde_json::from_slice(p).ok()?;
            pred(&v).then_some(v)
        };
        for (t, p) in &self.seen {
            if let Some(v) = check(t, p) {
                return (p.clone(), v);
            }
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            let Ok(Some((t, p))) = next else {
                let seen: Vec<_> = self
                    .seen
                    .iter()
                    .map(|(t, p)| format!("{t} {}", String::from_utf8_lossy(p)))
                    .collect();
                panic!(
                    "timed out waiting for {what} on {topic}; seen:\n{}",
                    seen.join("\n")
                );
            };
            self.seen.push((t.clone(), p.clone()));
            if let Some(v) = check(&t, &p) {
                return (p, v);
            }
        }
    }

    /// Waits for `n` messages on `topic` satisfying `pred`; returns them in arrival order.
    async fn collect(
        &mut self,
        topic: &str,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got: Vec<Value> = self
                .seen
                .iter()
                .filter(|(t, _)| t == topic)
                .filter_map(|(_, p)| serde_json::from_slice::<Value>(p).ok())
                .filter(|v| pred(v))
                .collect();
            if got.len() >= n {
                return got;
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) => self.seen.push(m),
                _ => panic!("timed out waiting for {n} messages on {topic}; got {got:?}"),
            }
        }
    }

    /// Forgets what was seen (so the next expect only matches new messages).
    fn clear(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            drop(m);
        }
        self.seen.clear();
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Devices

/// The far side of a pty: records what the bridge writes, answers as a device would. Dropping
/// it closes the device side, as unplugging a USB adapter does.
struct FakeDevice {
    writer: Option<File>,
    seen: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
}

impl FakeDevice {
    /// `printer = true` answers `~HS` with a ready status.
    fn start(printer: bool) -> FakeDevice {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let pty = Pty::open().unwrap();
        let writer = pty.master.try_clone().unwrap();
        let mut reader = pty.master;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut answered = 0;
            let tick = Timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            while !stop2.load(Ordering::SeqCst) {
                let mut fds = [PollFd::new(&reader, PollFlags::IN)];
                if poll(&mut fds, Some(&tick)).is_err() || !fds[0].revents().contains(PollFlags::IN)
                {
                    // Nothing, or HUP while the bridge has the port closed: look again soon.
                    if fds[0].revents().contains(PollFlags::HUP) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    continue;
                }
                match reader.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        let mut s = seen2.lock().unwrap();
                        s.extend_from_slice(&buf[..n]);
                        if printer {
                            let asked = s.windows(3).filter(|w| *w == b"~HS").count();
                            while answered < asked {
                                let _ = (&reader).write_all(ZPL_READY);
                                answered += 1;
                            }
                        }
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FakeDevice {
            writer: Some(writer),
            seen,
            stop,
            thread: Some(thread),
            path: pty.path,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer
            .as_mut()
            .expect("device plugged in")
            .write_all(bytes)
            .unwrap();
    }

    /// What the bridge wrote, minus status queries.
    fn received(&self) -> Vec<u8> {
        let s = self.seen.lock().unwrap();
        let text = s.clone();
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            if text[i..].starts_with(b"~HS") {
                i += 3;
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        out
    }

    async fn wait_received(&self, want: &[u8]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.received();
            if got.windows(want.len()).any(|w| w == want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "device never received {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&got)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.writer = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The bridge

struct Bridge {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

struct Setup<'a> {
    site: &'a str,
    port: u16,
    scanner: Option<&'a Path>,
    printer: Option<&'a Path>,
    spool_dir: &'a Path,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            site: "",
            port: 0,
            scanner: None,
            printer: None,
            spool_dir: Path::new(""),
        }
    }
}

fn config_text(s: &Setup<'_>, extra: &str) -> String {
    let mut text = format!(
        r#"
[bridge]
site = "{site}"
spool_dir = "{spool}"
heartbeat = "0s"

[mqtt]
broker = "mqtt://127.0.0.1:{port}"
keep_alive = "5s"
reconnect_min = "100ms"
reconnect_max = "500ms"
"#,
        site = s.site,
        spool = s.spool_dir.display(),
        port = s.port,
    );
    if let Some(p) = s.scanner {
        text += &format!(
            r#"
[[device]]
id = "sc-1"
class = "scanner"
port = "{}"
baud = 115200
reopen_min = "50ms"
reopen_max = "200ms"
mode = "pick"
good_command = "\u0007OK\r"
bad_command = "\u0007NG\r"
"#,
            p.display()
        );
    }
    if let Some(p) = s.printer {
        text += &format!(
            r#"
[[device]]
id = "pr-1"
class = "printer"
port = "{}"
baud = 115200
reopen_min = "50ms"
reopen_max = "200ms"
language = "zpl"
status_timeout = "1s"
"#,
            p.display()
        );
    }
    text + extra
}

impl Bridge {
    fn start(setup: &Setup<'_>) -> Bridge {
        Bridge::start_with(setup, "")
    }

    /// Starts the bridge with extra `[[device]]` tables appended to the generated config.
    fn start_with(setup: &Setup<'_>, extra: &str) -> Bridge {
        let dir = setup.spool_dir.parent().unwrap().to_owned();
        let config = dir.join("bridge.toml");
        std::fs::write(&config, config_text(setup, extra)).unwrap();
        let log = dir.join(format!("bridge-{}.log", std::process::id()));
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wms-bridge"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "firmware_bridge=debug,wms_bridge=debug,info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start wms-bridge");
        Bridge {
            child: Some(child),
            dir,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("bridge running");
        terminate(&mut child).expect("bridge exit status")
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Records in a spool file, read without touching it (the bridge owns it).
    fn spool_records(&self, file: &str) -> usize {
        let bytes = std::fs::read(self.dir.join("spool").join(file)).unwrap_or_default();
        let mut dec = Box::new(firmware_bridge::frame::Decoder::<20_000>::new());
        bytes
            .iter()
            .filter(|&&b| matches!(dec.push(b), Some(Ok(_))))
            .count()
    }

    fn spool_len(&self, file: &str) -> u64 {
        std::fs::metadata(self.dir.join("spool").join(file))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- wms-bridge log ----\n{}", self.log());
        }
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn online(v: &Value) -> bool {
    v["online"] == Value::Bool(true)
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// A scan and a print job through the broker on `port`, then a clean SIGTERM.
async fn scan_and_print_round_trip(port: u16, site: &str) {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let mut scanner = FakeDevice::start(false);
    let printer = FakeDevice::start(true);
    let mut node = Observer::connect(port, site, &format!("node-{site}")).await;
    let mut bridge = Bridge::start(&Setup {
        site,
        port,
        scanner: Some(&scanner.path),
        printer: Some(&printer.path),
        spool_dir: &spool_dir,
    });

    let scanner_state = format!("wms/{site}/scanner/sc-1/state");
    let printer_state = format!("wms/{site}/printer/pr-1/state");
    node.expect(&scanner_state, "scanner online", online).await;
    node.expect(&printer_state, "printer online", |v| {
        online(v) && v.get("detail").is_none()
    })
    .await;

    // A barcode read by the scanner arrives as a scan event.
    scanner.send(b"]E06901234567892\r");
    let evt = format!("wms/{site}/scanner/sc-1/evt");
    let (raw, v) = node
        .expect(&evt, "scan event", |v| v["type"] == "scan")
        .await;
    assert_eq!(v["code"], "6901234567892");
    assert_eq!(v["symbology"], "ean13");
    assert_eq!(v["mode"], "pick");
    let Uplink::Scan(scan) = json::decode_uplink(Channel::Evt, &raw).unwrap() else {
        panic!("not a scan")
    };
    assert_eq!((scan.symbology, scan.mode), (Symbology::Ean13, Mode::Pick));

    // The node's feedback becomes the scanner's beep command.
    node.publish(
        &format!("wms/{site}/scanner/sc-1/cmd"),
        &format!(
            r#"{{"type":"feedback","re":"{}","ok":true,"beep":"ok","text":"next A-01-03"}}"#,
            scan.msg_id
        ),
    )
    .await;
    scanner.wait_received(b"\x07OK\r").await;

    // A print command puts exactly its ZPL on the printer port, and a result comes back.
    let zpl = "^XA^FO50,50^A0N,40,40^FDwms e2e^FS^XZ";
    node.publish(
        &format!("wms/{site}/printer/pr-1/cmd"),
        &format!(r#"{{"type":"print","job_id":"job-1","format":"zpl","data":"{zpl}"}}"#),
    )
    .await;
    let reply = format!("wms/{site}/printer/pr-1/reply");
    let (raw, _) = node
        .expect(&reply, "print result", |v| v["re"] == "job-1")
        .await;
    let Uplink::PrintResult(result) = json::decode_uplink(Channel::Reply, &raw).unwrap() else {
        panic!("not a print result")
    };
    assert_eq!(result.status, PrintStatus::Printed, "{:?}", result.error);
    printer.wait_received(zpl.as_bytes()).await;
    assert_eq!(
        printer.received(),
        zpl.as_bytes(),
        "nothing but the job reached the printer"
    );

    // A job in the wrong language is refused with a reason, and nothing is printed.
    node.publish(
        &format!("wms/{site}/printer/pr-1/cmd"),
        r#"{"type":"print","job_id":"job-2","format":"tspl","data":"PRINT 1"}"#,
    )
    .await;
    let (_, v) = node.expect(&reply, "refusal", |v| v["re"] == "job-2").await;
    assert_eq!(v["status"], "error");
    assert!(v["error"].as_str().unwrap().contains("speaks zpl"));
    assert_eq!(printer.received(), zpl.as_bytes());

    // Commands the bridge cannot use are answered with a reject naming why (and the command's
    // id when it has a readable one), never ignored; the bridge goes on serving.
    let scanner_cmd = format!("wms/{site}/scanner/sc-1/cmd");
    let scanner_reply = format!("wms/{site}/scanner/sc-1/reply");
    node.publish(
        &scanner_cmd,
        r#"{"type":"hold","hold_id":"h-1","tid":4567890123456,"reason":"refund","action":"put back","text":"STOP"}"#,
    )
    .await;
    let (raw, v) = node
        .expect(&scanner_reply, "reject of a numeric tid", |v| {
            v["type"] == "reject"
        })
        .await;
    assert_eq!(v["re"], "h-1");
    assert_eq!(v["of"], "hold");
    assert!(
        v["error"].as_str().unwrap().contains("expected a string"),
        "{v}"
    );
    assert!(matches!(
        json::decode_uplink(Channel::Reply, &raw),
        Ok(Uplink::Reject(_))
    ));
    node.clear();
    node.publish(&scanner_cmd, "{not json").await;
    let (_, v) = node
        .expect(&scanner_reply, "reject of garbage", |v| {
            v["type"] == "reject"
        })
        .await;
    assert_eq!(
        v["re"],
        Value::Null,
        "no id could be read: re is null, not absent"
    );
    node.clear();
    node.publish(
        &scanner_cmd,
        r#"{"type":"print","job_id":"job-9","format":"zpl","data":"^XA^XZ"}"#,
    )
    .await;
    let (_, v) = node
        .expect(&scanner_reply, "reject of a print job", |v| {
            v["type"] == "reject"
        })
        .await;
    assert_eq!(v["re"], "job-9");
    // Still serving: a feedback still beeps.
    node.publish(
        &scanner_cmd,
        &format!(
            r#"{{"type":"feedback","re":"{}","ok":false,"beep":"error","text":"again"}}"#,
            scan.msg_id
        ),
    )
    .await;
    scanner.wait_received(b"\x07NG\r").await;

    // SIGTERM: clean exit, and the devices say they are offline.
    node.clear();
    let status = bridge.sigterm();
    assert!(status.success(), "exit status {status:?}\n{}", bridge.log());
    node.expect(&scanner_state, "scanner offline", |v| v["online"] == false)
        .await;
    node.expect(&printer_state, "printer offline", |v| v["online"] == false)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_print_through_rumqttd() {
    let port = start_rumqttd();
    scan_and_print_round_trip(port, "e2e-rumqttd").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_and_print_through_mosquitto() {
    if !Mosquitto::available() {
        return;
    }
    let broker = Mosquitto::start();
    scan_and_print_round_trip(broker.port, "e2e-mosquitto").await;
}

/// A scan made while the broker is restarting reaches the node after it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_during_a_mosquitto_restart_arrives_after_it() {
    if !Mosquitto::available() {
        return;
    }
    let site = "e2e-restart";
    let mut broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let mut scanner = FakeDevice::start(false);
    let mut node = Observer::connect(broker.port, site, "node-restart").await;
    let bridge = Bridge::start(&Setup {
        site,
        port: broker.port,
        scanner: Some(&scanner.path),
        printer: None,
        spool_dir: &spool_dir,
    });
    let state = format!("wms/{site}/scanner/sc-1/state");
    node.expect(&state, "scanner online", online).await;

    broker.stop();
    scanner.send(b"]C0SF1234567890\r");
    wait_until("the scan is in the spool", || {
        bridge.spool_len("scanner-sc-1.spool") > 0
    })
    .await;
    broker.spawn();

    let evt = format!("wms/{site}/scanner/sc-1/evt");
    let (_, v) = node
        .expect(&evt, "scan after restart", |v| v["type"] == "scan")
        .await;
    assert_eq!(v["code"], "SF1234567890");
    assert_eq!(v["symbology"], "code128");
    wait_until("the acknowledged scan left the spool", || {
        bridge.spool_len("scanner-sc-1.spool") == 0
    })
    .await;
}

/// The broker becomes unreachable (connections cut and refused); scans made meanwhile are
/// published, in order, once it is reachable again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_during_a_broker_outage_arrive_in_order_when_it_returns() {
    let site = "e2e-outage";
    let upstream = start_rumqttd();
    let proxy = Proxy::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let mut scanner = FakeDevice::start(false);
    let mut node = Observer::connect(upstream, site, "node-outage").await;
    let bridge = Bridge::start(&Setup {
        site,
        port: proxy.port,
        scanner: Some(&scanner.path),
        printer: None,
        spool_dir: &spool_dir,
    });
    let state = format!("wms/{site}/scanner/sc-1/state");
    node.expect(&state, "scanner online", online).await;

    proxy.cut();
    let codes = ["6901234567892", "4006381333931", "96385074"];
    for code in codes {
        scanner.send(format!("{code}\r").as_bytes());
    }
    wait_until("three scans are in the spool", || {
        bridge.spool_records("scanner-sc-1.spool") >= 3
    })
    .await;
    proxy.restore();

    let evt = format!("wms/{site}/scanner/sc-1/evt");
    let scans = node.collect(&evt, 3, |v| v["type"] == "scan").await;
    let got: Vec<_> = scans.iter().map(|v| v["code"].as_str().unwrap()).collect();
    assert_eq!(got, codes, "scans arrive in the order they were read");
    let ids: Vec<_> = scans
        .iter()
        .map(|v| v["msg_id"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        ids, sorted,
        "msg_ids are unique and increase (UUIDv7 with a counter)"
    );
}

/// The bridge is killed while the broker is unreachable; the scan it had read is on disk and
/// is published by the next bridge process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spooled_scan_survives_the_bridge_being_killed() {
    let site = "e2e-kill";
    let upstream = start_rumqttd();
    let proxy = Proxy::start(upstream).await;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let mut scanner = FakeDevice::start(false);
    let mut node = Observer::connect(upstream, site, "node-kill").await;
    let scanner_path = scanner.path.clone();
    let setup = Setup {
        site,
        port: proxy.port,
        scanner: Some(&scanner_path),
        printer: None,
        spool_dir: &spool_dir,
    };
    let mut bridge = Bridge::start(&setup);
    let state = format!("wms/{site}/scanner/sc-1/state");
    node.expect(&state, "scanner online", online).await;

    proxy.cut();
    scanner.send(b"]E04006381333931\r");
    wait_until("the scan is in the spool", || {
        bridge.spool_len("scanner-sc-1.spool") > 0
    })
    .await;
    bridge.kill();
    proxy.restore();

    let _bridge = Bridge::start(&setup);
    let evt = format!("wms/{site}/scanner/sc-1/evt");
    let (_, v) = node
        .expect(&evt, "the killed bridge's scan", |v| v["type"] == "scan")
        .await;
    assert_eq!(v["code"], "4006381333931");
}

/// The scanner is unplugged (its port vanishes) and plugged back in under the same path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_scanner_is_reopened_when_it_comes_back() {
    let site = "e2e-replug";
    let port = start_rumqttd();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let link = dir.path().join("ttyUSB-scanner");
    let first = FakeDevice::start(false);
    std::os::unix::fs::symlink(&first.path, &link).unwrap();
    let mut node = Observer::connect(port, site, "node-replug").await;
    let _bridge = Bridge::start(&Setup {
        site,
        port,
        scanner: Some(&link),
        printer: None,
        spool_dir: &spool_dir,
    });
    let state = format!("wms/{site}/scanner/sc-1/state");
    node.expect(&state, "scanner online", online).await;

    // Unplug: the device side closes and the path disappears.
    node.clear();
    drop(first);
    std::fs::remove_file(&link).unwrap();
    node.expect(&state, "scanner offline", |v| v["online"] == false)
        .await;

    // Plug back in: a new device appears under the same path.
    let mut second = FakeDevice::start(false);
    std::os::unix::fs::symlink(&second.path, &link).unwrap();
    node.expect(&state, "scanner online again", online).await;
    second.send(b"]E06901234567892\r");
    let evt = format!("wms/{site}/scanner/sc-1/evt");
    let (_, v) = node
        .expect(&evt, "scan after replug", |v| v["type"] == "scan")
        .await;
    assert_eq!(v["code"], "6901234567892");
}

#[test]
fn check_config_accepts_the_example_and_rejects_a_broken_file_with_exit_2() {
    let bin = env!("CARGO_BIN_EXE_wms-bridge");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bridge.example.toml");
    let out = Command::new(bin)
        .args(["check-config", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("scanner sc-01"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[bridge]\nsite = \"a/b\"\nspool_dir = \"/x\"\n[mqtt]\nbroker = \"mqtt://h\"\npassword = \"hunter2\"\n").unwrap();
    let out = Command::new(bin)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bridge.site") && err.contains("no [[device]]"),
        "{err}"
    );
    assert!(!err.contains("hunter2"));

    let out = Command::new(bin).arg("print-config").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("[[device]]"));
    let out = Command::new(bin).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A microcontroller on the far side of a pty, speaking the floor protocol in frames.
struct FakeMcu {
    path: PathBuf,
    send: std::sync::mpsc::Sender<Uplink<String>>,
    got: Arc<Mutex<Vec<firmware_bridge::proto::Downlink<String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeMcu {
    fn start() -> FakeMcu {
        use firmware_bridge::frame::{Decoder, Link, LinkConfig, link::Received};
        use firmware_bridge::proto::Downlink;
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let pty = Pty::open().unwrap();
        let mut master = pty.master;
        let (send, rx) = std::sync::mpsc::channel::<Uplink<String>>();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (got2, stop2) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let cfg = LinkConfig {
                retransmit_ms: 50,
                max_tries: 200,
            };
            let mut link = Box::new(Link::<4096>::new(cfg, 7));
            let mut dec = Box::new(Decoder::<4096>::new());
            let mut scratch = vec![0u8; 4000];
            let mut pending: std::collections::VecDeque<Uplink<String>> = Default::default();
            let epoch = Instant::now();
            let tick = Timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            while !stop2.load(Ordering::SeqCst) {
                let now = epoch.elapsed().as_millis() as u32;
                pending.extend(rx.try_iter());
                if link.can_send()
                    && let Some(msg) = pending.pop_front()
                {
                    link.send_message(&msg, &mut scratch).unwrap();
                }
                while let Ok(Some(bytes)) = link.poll_transmit(now) {
                    let _ = master.write_all(bytes);
                }
                let mut fds = [PollFd::new(&master, PollFlags::IN)];
                let _ = poll(&mut fds, Some(&tick));
                if !fds[0].revents().contains(PollFlags::IN) {
                    continue;
                }
                let mut buf = [0u8; 1024];
                let Ok(n) = master.read(&mut buf) else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                for &b in &buf[..n] {
                    if let Some(Ok(frame)) = dec.push(b)
                        && let Received::Data(p) = link.receive(frame)
                    {
                        let cmd: Downlink<String> = postcard::from_bytes(p).unwrap();
                        got2.lock().unwrap().push(cmd);
                    }
                }
            }
        });
        FakeMcu {
            path: pty.path,
            send,
            got,
            stop,
            thread: Some(thread),
        }
    }

    async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&firmware_bridge::proto::Downlink<String>) -> bool,
    ) {
        wait_until(what, || self.got.lock().unwrap().iter().any(&pred)).await;
    }
}

impl Drop for FakeMcu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A microcontroller scanner on a framed link: its scan (without id or clock) is published
/// with a bridge-made msg_id, the node's feedback reaches it as a frame, and its own state
/// becomes the device state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framed_microcontroller_scanner_speaks_the_protocol_through_the_bridge() {
    use firmware_bridge::proto::{Downlink, Scan, State, VERSION};
    let site = "e2e-mcu";
    let port = start_rumqttd();
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let mcu = FakeMcu::start();
    let mut node = Observer::connect(port, site, "node-mcu").await;
    let _bridge = Bridge::start_with(
        &Setup {
            site,
            port,
            spool_dir: &spool_dir,
            ..Setup::default()
        },
        &format!(
            "\n[[device]]\nid = \"mcu-1\"\nclass = \"scanner\"\nlink = \"frame\"\nport = \"{}\"\nbaud = 115200\nreopen_min = \"50ms\"\nreopen_max = \"200ms\"\n",
            mcu.path.display()
        ),
    );
    let state = format!("wms/{site}/scanner/mcu-1/state");
    node.expect(&state, "device link up", online).await;

    mcu.send
        .send(Uplink::Scan(Scan {
            v: VERSION,
            msg_id: String::new(),
            ts: String::new(),
            code: "6901234567892".to_owned(),
            symbology: Symbology::Ean13,
            mode: Mode::Pack,
            task_id: Some("T-9".to_owned()),
            qty: Some(2),
            gs1: None,
        }))
        .unwrap();
    let evt = format!("wms/{site}/scanner/mcu-1/evt");
    let (_, v) = node
        .expect(&evt, "the device's scan", |v| v["type"] == "scan")
        .await;
    assert_eq!(
        (v["code"].as_str(), v["mode"].as_str(), v["qty"].as_u64()),
        (Some("6901234567892"), Some("pack"), Some(2))
    );
    let msg_id = v["msg_id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&msg_id).unwrap().get_version_num(), 7);
    assert!(v["ts"].as_str().unwrap().ends_with('Z'));

    node.publish(
        &format!("wms/{site}/scanner/mcu-1/cmd"),
        &format!(
            r#"{{"type":"feedback","re":"{msg_id}","ok":false,"beep":"error","text":"wrong item"}}"#
        ),
    )
    .await;
    mcu.wait_for(
        "feedback frame",
        |d| matches!(d, Downlink::Feedback(f) if f.re.as_deref() == Some(msg_id.as_str()) && !f.ok),
    )
    .await;

    mcu.send
        .send(Uplink::State(State {
            v: VERSION,
            online: true,
            class: None,
            fw: None,
            detail: Some("battery low".to_owned()),
        }))
        .unwrap();
    node.expect(&state, "device detail", |v| v["detail"] == "battery low")
        .await;
}
