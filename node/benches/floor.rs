//! `cargo bench -p wms-node --bench floor`: scans through the floor, for the embedded broker
//! and for Mosquitto, in one run. For each broker:
//!
//! 1. **broker only**: the devices' scans go to a trivial responder (one MQTT client, the
//!    node's user, that echoes every `evt` to the device's `cmd` topic): the round trip the
//!    broker itself costs, the baseline;
//! 2. **end to end**: the node's floor (session, pipeline, group commit on a disk-backed store
//!    with fsync and quick-repair, as the daemon opens it) between the devices and their
//!    answers: device → broker → node → durable commit → feedback → device.
//!
//! Each at a fixed offered load of 1,000 scans/s (open loop: latency counts from when a scan
//! was due, so a stall is not hidden) and flat out (closed loop: each device scans again as
//! soon as it has its answer, one scan in flight per device, as a scanner in a hand does).
//!
//! `BENCH_DEVICES` (default 60, DOMAIN.md §13's floor), `BENCH_SECS` (length of each timed
//! phase, default 5), `BENCH_RATE` (the fixed load, default 1000), `BENCH_DIR` (where the
//! store goes; default the system temp dir, so it measures that disk), `BENCH_BROKERS`
//! (`embedded`, `mosquitto`, or both, the default). Mosquitto is `/usr/sbin/mosquitto` (or
//! `MOSQUITTO`), run with `set_tcp_nodelay true` and the password and ACL files the node
//! generates; without it that half is skipped with a notice.
//!
//! Last, the store alone: one scan's record per durable commit, one at a time, on the same
//! disk: the part of a scan's round trip that only a faster disk can shorten.

// Benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wms_node::floor::acl::Scope;
use wms_node::floor::admin::{DeviceAdmin, MosquittoFiles};
use wms_node::floor::broker::{BrokerOptions, Embedded};
use wms_node::floor::devices::{self, Registry};
use wms_node::floor::flow::Basic;
use wms_node::floor::{BrokerChoice, Floor, FloorOptions, passwd};
use wms_node::ops::alert::Alerts;
use wms_node::secret::Secret;
use wms_node::store::{Store, StoreOptions};

const SITE: &str = "main";
const NODE_ID: &str = "gw-bench";
/// How long a device waits for an answer before it sends the same scan again.
const RESEND_AFTER: Duration = Duration::from_secs(2);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn scope() -> Scope {
    Scope {
        site: SITE.to_owned(),
        node_id: NODE_ID.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BrokerKind {
    Embedded,
    Mosquitto,
}

impl BrokerKind {
    fn name(self) -> &'static str {
        match self {
            BrokerKind::Embedded => "embedded (rmqtt)",
            BrokerKind::Mosquitto => "Mosquitto",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    BrokerOnly,
    EndToEnd,
}

impl Route {
    fn name(self) -> &'static str {
        match self {
            Route::BrokerOnly => "broker only",
            Route::EndToEnd => "end to end",
        }
    }
}

/// Mosquitto as the node's docs configure it: nodelay, the generated files.
struct Mosquitto {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn bin() -> PathBuf {
        std::env::var_os("MOSQUITTO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
    }

    fn start(port: u16, files: &Path) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "user root\nset_tcp_nodelay true\nlog_dest none\nmax_inflight_messages 1024\n\
                 listener {port} 127.0.0.1\nallow_anonymous false\n\
                 password_file {files}/passwd\nacl_file {files}/acl\n",
                files = files.display(),
            ),
        )
        .unwrap();
        let child = Command::new(Self::bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start");
            // The bench's main thread, outside any runtime.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child, _dir: dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node's side of one setup, running on its own runtime; dropped, everything stops.
struct NodeSide {
    port: u16,
    token: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _mosquitto: Option<Mosquitto>,
    _dir: tempfile::TempDir,
}

/// Registers `n` scanners in a fresh store; their (id, password).
fn register(rt: &Runtime, store: &Store, n: usize) -> Vec<(String, String)> {
    let admin = DeviceAdmin::new(store.clone(), scope(), None, None);
    rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..n {
            let id = format!("s{i:03}");
            let added = admin
                .add(firmware_bridge::proto::DeviceClass::Scanner, &id)
                .await
                .unwrap();
            out.push((id, added.password));
        }
        out
    })
}

fn base_dir() -> PathBuf {
    std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn start_node(
    rt: &Runtime,
    kind: BrokerKind,
    route: Route,
    n: usize,
) -> (NodeSide, Vec<(String, String)>) {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let store = Store::open(
        StoreOptions::new(dir.path().join("node.redb")),
        Alerts::new(),
    )
    .unwrap();
    let devices = register(rt, &store, n);
    let records = store.read(devices::list).unwrap();
    let token = CancellationToken::new();
    let node_user = "wms-node".to_owned();
    let node_pass = passwd::new_password();
    let mut tasks = Vec::new();
    let mut mosquitto = None;
    let files_dir = dir.path().join("mosquitto");
    let port = match kind {
        BrokerKind::Embedded => 0,
        BrokerKind::Mosquitto => {
            let files = MosquittoFiles {
                dir: files_dir.clone(),
                node: Some((node_user.clone(), Secret::new(node_pass.clone()))),
            };
            files.write(&scope(), &records).unwrap();
            let port = free_port();
            mosquitto = Some(Mosquitto::start(port, &files_dir));
            port
        }
    };
    let port = match route {
        Route::BrokerOnly => {
            let port = if kind == BrokerKind::Embedded {
                let registry = Registry::from_records(&records);
                registry.insert(&node_user, &passwd::hash(&node_pass));
                let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
                let broker = rt
                    .block_on(Embedded::start(
                        &BrokerOptions::new(listen),
                        scope(),
                        registry,
                        node_user.clone(),
                    ))
                    .unwrap();
                let port = broker.addr().port();
                let t = token.clone();
                tasks.push(rt.spawn(async move {
                    let _ = broker.serve(t).await;
                }));
                port
            } else {
                port
            };
            tasks.push(rt.spawn(responder(port, node_user, node_pass, token.clone())));
            port
        }
        Route::EndToEnd => {
            let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
            let mut opts = FloorOptions::new(SITE, NODE_ID, listen);
            if kind == BrokerKind::Mosquitto {
                opts.broker = BrokerChoice::External {
                    host: "127.0.0.1".to_owned(),
                    port,
                    tls: None,
                    files_dir: Some(files_dir),
                };
                opts.credentials = Some((node_user, Secret::new(node_pass)));
            }
            let floor = rt
                .block_on(Floor::start(opts, store.clone(), Basic, None))
                .unwrap();
            let port = floor.broker_addr.map(|a| a.port()).unwrap_or(port);
            let t = token.clone();
            tasks.push(rt.spawn(async move {
                let _ = floor.run(t).await;
            }));
            port
        }
    };
    (
        NodeSide {
            port,
            token,
            tasks,
            _mosquitto: mosquitto,
            _dir: dir,
        },
        devices,
    )
}

impl NodeSide {
    fn stop(self, rt: &Runtime) {
        self.token.cancel();
        rt.block_on(async {
            for t in self.tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        });
    }
}

/// The trivial responder: every scan straight back to its device's `cmd` topic.
async fn responder(port: u16, user: String, password: String, token: CancellationToken) {
    let mut o = MqttOptions::new(format!("wms-{SITE}-gateway-{NODE_ID}"), "127.0.0.1", port);
    o.set_credentials(user, password);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(1024);
    let (client, mut el) = AsyncClient::new(o, 4096);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    client
        .subscribe(format!("wms/{SITE}/scanner/+/evt"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let publisher = client.clone();
    tokio::spawn(async move {
        while let Some((topic, payload)) = rx.recv().await {
            if publisher
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .is_err()
            {
                return;
            }
        }
    });
    loop {
        tokio::select! {
            _ = token.cancelled() => {
                let _ = client.disconnect().await;
                return;
            }
            ev = el.poll() => match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(base) = p.topic.strip_suffix("/evt") {
                        let _ = tx.send((format!("{base}/cmd"), p.payload.to_vec()));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
        }
    }
}

/// A connected simulated scanner.
struct Device {
    id: String,
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Vec<u8>>,
    pump: tokio::task::JoinHandle<()>,
}

async fn connect(port: u16, id: &str, password: &str) -> Device {
    let mut o = MqttOptions::new(format!("wms-{SITE}-scanner-{id}"), "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_credentials(format!("scanner/{id}"), password);
    let (client, mut el) = AsyncClient::new(o, 64);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    el.set_network_options(net);
    let (tx, rx) = mpsc::unbounded_channel();
    let pump = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p.payload.to_vec());
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    panic!("scanner refused by the broker: {code:?}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    client
        .subscribe(format!("wms/{SITE}/scanner/{id}/cmd"), QoS::AtLeastOnce)
        .await
        .unwrap();
    Device {
        id: id.to_owned(),
        client,
        rx,
        pump,
    }
}

fn scan(msg_id: &str) -> Vec<u8> {
    format!(
        r#"{{"type":"scan","v":1,"msg_id":"{msg_id}","ts":"2026-12-07T08:00:00Z","code":"6901234567892","symbology":"ean13","mode":"pick"}}"#
    )
    .into_bytes()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// What one device measured in one phase.
#[derive(Default)]
struct Samples {
    micros: Vec<u32>,
    /// How late the timer woke a device that was on schedule (fixed load only).
    late_micros: Vec<u32>,
    resent: u64,
}

/// One device's scans from `start` until `end`: every `period` (open loop, latency from when
/// the scan was due) or back to back (`None`).
async fn run_device(
    mut d: Device,
    phase: &'static str,
    start: tokio::time::Instant,
    end: tokio::time::Instant,
    period: Option<Duration>,
) -> (Device, Samples) {
    let mut s = Samples::default();
    let topic = format!("wms/{SITE}/scanner/{}/evt", d.id);
    let mut due = start;
    let mut k = 0u64;
    loop {
        // Open loop: a scan due while the previous one was still unanswered counts from when
        // it was due (the wait is the system's). One sent on time counts from when the timer
        // woke the device: tokio's timer ticks in whole milliseconds, and all devices' due
        // times share one offset to that tick (they are 1 ms apart), so counting from `due`
        // would add a random 0-1 ms, the same for every scan of a phase, to both routes.
        let behind = tokio::time::Instant::now() >= due;
        if period.is_some() && !behind {
            tokio::time::sleep_until(due).await;
        }
        let woke = tokio::time::Instant::now();
        let sent = match period {
            Some(_) if behind => due,
            _ => woke,
        };
        if sent >= end {
            break;
        }
        if period.is_some() && !behind {
            s.late_micros
                .push(u32::try_from((woke - due).as_micros()).unwrap_or(u32::MAX));
        }
        k += 1;
        let msg_id = format!("{}-{phase}-{k}", d.id);
        let payload = scan(&msg_id);
        d.client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(RESEND_AFTER, d.rx.recv()).await {
                Ok(Some(answer)) if contains(&answer, msg_id.as_bytes()) => break,
                // A late answer to an earlier scan.
                Ok(Some(_)) => {}
                Ok(None) => panic!("device {} lost its connection", d.id),
                Err(_) => {
                    s.resent += 1;
                    d.client
                        .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                        .await
                        .unwrap();
                }
            }
        }
        let took = sent.elapsed();
        s.micros
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        if let Some(p) = period {
            due += p;
        }
    }
    (d, s)
}

struct Row {
    broker: BrokerKind,
    route: Route,
    load: String,
    scans_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    resent: u64,
}

/// Every device for `secs`, at `rate` scans/s in all (open loop) or flat out.
fn phase(
    rt: &Runtime,
    devices: Vec<Device>,
    name: &'static str,
    secs: f64,
    rate: Option<f64>,
) -> (Vec<Device>, Samples, f64) {
    let n = devices.len();
    rt.block_on(async move {
        let begin = tokio::time::Instant::now() + Duration::from_millis(50);
        let end = begin + Duration::from_secs_f64(secs);
        let period = rate.map(|r| Duration::from_secs_f64(n as f64 / r));
        let mut handles = Vec::new();
        for (i, d) in devices.into_iter().enumerate() {
            // Spread the devices over the period, as scanners in many hands are.
            let start = match period {
                Some(p) => begin + p.mul_f64(i as f64 / n as f64),
                None => begin,
            };
            handles.push(tokio::spawn(run_device(d, name, start, end, period)));
        }
        let mut all = Samples::default();
        let mut back = Vec::new();
        for h in handles {
            let (d, s) = h.await.unwrap();
            all.micros.extend(s.micros);
            all.late_micros.extend(s.late_micros);
            all.resent += s.resent;
            back.push(d);
        }
        let elapsed = begin.elapsed().as_secs_f64();
        (back, all, elapsed)
    })
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn measure(
    node_rt: &Runtime,
    dev_rt: &Runtime,
    kind: BrokerKind,
    route: Route,
    n: usize,
    secs: f64,
    rate: f64,
) -> Vec<Row> {
    let (node, creds) = start_node(node_rt, kind, route, n);
    let port = node.port;
    let devices: Vec<Device> = dev_rt.block_on(async {
        let mut v = Vec::new();
        for (id, pw) in &creds {
            v.push(connect(port, id, pw).await);
        }
        v
    });
    // Warm up: every device's first answer (the node's subscription is in place, the store's
    // file has grown), not counted.
    let (devices, _, _) = phase(dev_rt, devices, "warm", 1.0, None);
    let mut rows = Vec::new();
    let mut devices = devices;
    for (name, load) in [("fixed", Some(rate)), ("flat", None)] {
        let (back, mut s, elapsed) = phase(dev_rt, devices, name, secs, load);
        devices = back;
        if !s.late_micros.is_empty() {
            s.late_micros.sort_unstable();
            eprintln!(
                "    {} / {} / {name}: timer woke devices {:.2} ms late (p50), {} of {} scans behind schedule",
                kind.name(),
                route.name(),
                pct(&s.late_micros, 0.5),
                s.micros.len() - s.late_micros.len(),
                s.micros.len()
            );
        }
        s.micros.sort_unstable();
        rows.push(Row {
            broker: kind,
            route,
            load: match load {
                Some(r) => format!("{r:.0}/s"),
                None => "flat out".to_owned(),
            },
            scans_per_s: s.micros.len() as f64 / elapsed,
            p50_ms: pct(&s.micros, 0.50),
            p99_ms: pct(&s.micros, 0.99),
            max_ms: s.micros.last().map_or(f64::NAN, |m| f64::from(*m) / 1000.0),
            resent: s.resent,
        });
    }
    dev_rt.block_on(async {
        for d in devices {
            let _ = d.client.disconnect().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            d.pump.abort();
        }
    });
    node.stop(node_rt);
    rows
}

/// The store alone: one scan's durable record (its remembered answer, what the end-to-end
/// route commits per scan) in a commit of its own, one at a time with a pause between them as
/// at the fixed load, on the same disk and with the same options. No broker and no hand-off
/// can take this part of a scan's round trip away; it is the floor under "end to end" at
/// 1,000 scans/s, where most commits carry a single scan.
fn commit_only(count: usize) -> (f64, f64, f64) {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let store = Store::open(
        StoreOptions::new(dir.path().join("node.redb")),
        Alerts::new(),
    )
    .unwrap();
    let mut micros = Vec::with_capacity(count);
    for k in 0..count + 100 {
        let (tx, rx) = std::sync::mpsc::channel();
        let msg_id = format!("commit-{k}");
        let began = Instant::now();
        store.submit(
            move |txn| {
                wms_node::wms::dedupe::remember(
                    txn,
                    "scanner/s-000",
                    &msg_id,
                    br#"{"v":1,"re":"x","ok":true,"beep":"ok"}"#,
                    1,
                )
            },
            move |r: Result<(), wms_node::store::StoreError>| {
                let _ = tx.send(r.map(|()| began.elapsed()));
            },
        );
        let took = rx.recv().unwrap().unwrap();
        // The first 100 grow the file; not counted, as the phases' warm-up.
        if k >= 100 {
            micros.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
        // The bench's main thread, not a runtime worker.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(1));
    }
    micros.sort_unstable();
    (
        pct(&micros, 0.5),
        pct(&micros, 0.99),
        micros.last().map_or(f64::NAN, |m| f64::from(*m) / 1000.0),
    )
}

fn main() {
    let n: usize = env_or("BENCH_DEVICES", 60);
    let secs: f64 = env_or("BENCH_SECS", 5.0);
    let rate: f64 = env_or("BENCH_RATE", 1000.0);
    // The node and the devices on runtimes of their own, as they would be in two processes.
    let node_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("node")
        .enable_all()
        .build()
        .unwrap();
    let dev_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("devices")
        .enable_all()
        .build()
        .unwrap();
    // `BENCH_BROKERS`: "embedded", "mosquitto" or both (the default).
    let brokers = std::env::var("BENCH_BROKERS").unwrap_or_else(|_| "embedded,mosquitto".into());
    let mut kinds = Vec::new();
    if brokers.contains("embedded") {
        kinds.push(BrokerKind::Embedded);
    }
    if brokers.contains("mosquitto") {
        if Mosquitto::bin().exists() {
            kinds.push(BrokerKind::Mosquitto);
        } else {
            eprintln!(
                "NOTICE: {} not found; the Mosquitto half is skipped",
                Mosquitto::bin().display()
            );
        }
    }
    eprintln!(
        "floor bench: {n} scanners, {secs} s per phase, fixed load {rate} scans/s, store in {}",
        base_dir().display()
    );
    let mut rows = Vec::new();
    for kind in kinds {
        for route in [Route::BrokerOnly, Route::EndToEnd] {
            eprintln!("  {} / {} …", kind.name(), route.name());
            rows.extend(measure(&node_rt, &dev_rt, kind, route, n, secs, rate));
        }
    }
    eprintln!("  the store alone …");
    let (c50, c99, cmax) = commit_only(2000);
    println!();
    println!(
        "| broker | route | load | scans/s | p50 ms | p99 ms | max ms | re-sent | p50 / broker-only p50 |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let base = rows
            .iter()
            .find(|b| b.broker == r.broker && b.route == Route::BrokerOnly && b.load == r.load)
            .map(|b| b.p50_ms);
        let ratio = match (r.route, base) {
            (Route::EndToEnd, Some(b)) => format!("{:.2}", r.p50_ms / b),
            _ => "—".to_owned(),
        };
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |",
            r.broker.name(),
            r.route.name(),
            r.load,
            r.scans_per_s,
            r.p50_ms,
            r.p99_ms,
            r.max_ms,
            r.resent,
            ratio
        );
    }
    println!();
    println!(
        "The durable commit alone (one scan's record per commit, one at a time, same disk and \
         options): p50 {c50:.2} ms, p99 {c99:.2} ms, max {cmax:.2} ms."
    );
}
