//! The demo's script: the shop, the node, the floor's devices, the orders, the refund, the
//! outage and the delivery, then the end check against the shop.

use super::sim::{self, Counters, DockJob, Floor, Sim};
use super::view::{self, DeviceDot, Key, Screen, Snapshot};
use super::{DemoArgs, Log};
use anyhow::{Context, anyhow};
use firmware_bridge::proto::DeviceClass;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use taobao_sandbox::{NewOrder, NewTrade, PreIssued, RefundRequest, Sandbox, SandboxConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wms_node::config::Config;
use wms_node::daemon::{self, Started};
use wms_node::secret::Secret;
use wms_node::wms::{self, LocalState, ShopId};

const SESSION: &str = "demo-session";
const SHIP: &str = "taobao.logistics.offline.send";
const STOCK: &str = "taobao.item.quantity.update";
const READ: &str = "taobao.item.seller.get";
/// The carrier of the demo shop's waybill account (the sandbox issues YTO numbers).
const CARRIER: &str = "YTO";
/// How long the demo waits, after the last order, for the floor and the outbox to finish.
const FINISH_LIMIT: Duration = Duration::from_secs(120);

/// One sellable listing of the catalogue.
struct Listing {
    num_iid: i64,
    sku_id: Option<i64>,
    code: String,
    barcode: String,
}

/// The floor's devices: `(class, id)`.
const DEVICES: [(DeviceClass, &str); 5] = [
    (DeviceClass::Scanner, "picker-1"),
    (DeviceClass::Scanner, "picker-2"),
    (DeviceClass::Scanner, "pack-1"),
    (DeviceClass::Printer, "pack-1"),
    (DeviceClass::Scanner, "dock-1"),
];

/// What the view reads, and what the keys change.
struct Shared {
    node: Started,
    sb: Arc<Sandbox>,
    counters: Arc<Counters>,
    status_page: String,
    paid: std::sync::Mutex<(usize, usize)>,
    phase: std::sync::Mutex<String>,
    /// The `t` key cut the link (until pressed again).
    cut_by_key: std::sync::atomic::AtomicBool,
    /// `--outage` cut the link (its fault ends by itself).
    outage: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn set_phase(&self, p: &str) {
        if let Ok(mut g) = self.phase.lock() {
            p.clone_into(&mut g);
        }
    }

    /// Cuts the link for `seconds` (the shop's outage fault ends by itself).
    fn cut_link(&self, seconds: u64) -> anyhow::Result<()> {
        let fault =
            serde_json::from_value(serde_json::json!({"kind": "outage", "seconds": seconds}))
                .context("the outage fault")?;
        self.sb
            .add_fault(fault)
            .map_err(|e| anyhow!("cannot simulate the outage: {e}"))?;
        Ok(())
    }

    /// The `t` key: cuts the link until pressed again, or restores it (ending `--outage` too).
    fn toggle_link(&self) -> anyhow::Result<bool> {
        if self.is_cut() {
            self.sb.clear_faults();
            self.cut_by_key.store(false, Ordering::Relaxed);
            self.outage.store(false, Ordering::Relaxed);
            Ok(false)
        } else {
            self.cut_link(24 * 3600)?;
            self.cut_by_key.store(true, Ordering::Relaxed);
            Ok(true)
        }
    }

    fn is_cut(&self) -> bool {
        self.cut_by_key.load(Ordering::Relaxed) || self.outage.load(Ordering::Relaxed)
    }
}

pub async fn run(args: DemoArgs, live: bool) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let (log, lines) = Log::new(start);
    // The shop.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot open a port for the simulated shop")?;
    let shop = taobao_sandbox::spawn_on(
        listener,
        SandboxConfig {
            sessions: vec![PreIssued::new(SESSION)],
            seed_demo_catalogue: true,
            ..SandboxConfig::default()
        },
    )
    .context("cannot start the simulated shop")?;
    let sb = shop.sandbox().clone();

    // The node, on a throw-away data directory.
    let data_dir = std::env::temp_dir().join(format!("wms-node-demo-{}", std::process::id()));
    let config = config(&args, &shop, &data_dir, live);
    let token = CancellationToken::new();
    let node = daemon::start(config, token.clone())
        .await
        .map_err(|e| anyhow!("the node did not start: {e}"))?;
    let status_page = format!("http://{}/", node.http_addr);
    if !live {
        outln!("wms-node demo: the node, a simulated Taobao shop and a simulated floor.");
        outln!("  status page   {status_page}");
        outln!("  data          {}", data_dir.display());
        outln!();
    }
    let shared = Arc::new(Shared {
        node,
        sb,
        counters: Arc::new(Counters::default()),
        status_page: status_page.clone(),
        paid: std::sync::Mutex::new((0, args.orders as usize)),
        phase: std::sync::Mutex::new("starting".to_owned()),
        cut_by_key: std::sync::atomic::AtomicBool::new(false),
        outage: std::sync::atomic::AtomicBool::new(false),
    });

    let quit = CancellationToken::new();
    let summary: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let viewer = tokio::spawn(show(
        shared.clone(),
        log.clone(),
        lines,
        live,
        quit.clone(),
        summary.clone(),
    ));
    if !live {
        // Plain output: Ctrl-C or SIGTERM stops the demo the way `q` does (the node stops
        // cleanly and the temporary data directory goes).
        let quit = quit.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop_requested() => quit.cancel(),
                _ = quit.cancelled() => {}
            }
        });
    }
    let played = tokio::select! {
        r = play(&args, &shared, &log) => Some(r),
        _ = quit.cancelled() => None,
    };
    let outcome = match played {
        Some(Ok(table)) => {
            let ok = table.0;
            if let Ok(mut g) = summary.lock() {
                g.clone_from(&table.1);
            }
            shared.set_phase("done");
            if live {
                // The table stays on the view until `q`.
                quit.cancelled().await;
            }
            Some((ok, table.1))
        }
        Some(Err(e)) => {
            log.say("demo", format!("failed: {e:#}"));
            if live {
                shared.set_phase("FAILED (q to quit)");
                quit.cancelled().await;
            }
            eprintln!("demo failed: {e:#}");
            Some((false, Vec::new()))
        }
        None => None,
    };
    quit.cancel();
    // The view gives the terminal back before anything more is printed.
    let _ = viewer.await;
    let all_good = match outcome {
        Some((ok, table)) => {
            if !table.is_empty() {
                outln!();
            }
            for l in &table {
                outln!("{l}");
            }
            ok
        }
        None => {
            outln!("Stopped before the end: nothing was checked.");
            false
        }
    };
    if !live && !args.headless && !args.exit && all_good {
        outln!();
        outln!("The node keeps running: {status_page} (Ctrl-C to stop).");
        stop_requested().await;
    }
    token.cancel();
    let shared = Arc::into_inner(shared).ok_or_else(|| anyhow!("the view still holds the node"))?;
    let stopped = shared.node.serve().await;
    let _ = shop.shutdown().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    stopped.map_err(|e| anyhow!("the node stopped with an error: {e}"))?;
    Ok(if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Ctrl-C or SIGTERM: either way the temporary data directory is removed.
async fn stop_requested() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn config(
    args: &DemoArgs,
    shop: &taobao_sandbox::SandboxHandle,
    dir: &std::path::Path,
    live: bool,
) -> Config {
    let mut c = Config::default();
    c.node.id = "demo-gw".into();
    c.node.site = "demo".into();
    c.node.data_dir = dir.to_owned();
    c.node.language = args.language;
    c.taobao.endpoint = shop.rest_url();
    c.taobao.oauth_url = shop.oauth_url();
    c.taobao.app_key = taobao_sandbox::DEFAULT_APP_KEY.into();
    c.taobao.app_secret = Some(Secret::new(taobao_sandbox::DEFAULT_APP_SECRET));
    c.taobao.session = Some(Secret::new(SESSION));
    // Retry within seconds, so the catch-up after a short outage shows at once; pull
    // orders every second, so a paid order reaches the floor at once.
    c.outbox.backoff_initial = Duration::from_millis(500);
    c.outbox.backoff_max = Duration::from_secs(2);
    c.taobao.poll_interval = Duration::from_secs(1);
    c.intake.lookback = Duration::from_secs(3600);
    c.stock.max_intake_lag = Duration::from_secs(30);
    // The demo shop's waybill account.
    c.waybill.cp_code = CARRIER.into();
    c.waybill.branch_code = "DEMO-01".into();
    c.waybill.template_url = "http://cloudprint.cainiao.com/template/standard/101".into();
    c.waybill.sender_name = "演示仓".into();
    c.waybill.sender_mobile = "13800000000".into();
    c.waybill.sender_province = "浙江省".into();
    c.waybill.sender_city = "杭州市".into();
    c.waybill.sender_district = "余杭区".into();
    c.waybill.sender_detail = "仓前街道 1 号 演示仓".into();
    // The embedded broker on a free port of this machine only: the simulated devices are
    // in this process.
    // The pack station's scanner and printer are paired: its labels print on the floor (ZPL,
    // which the simulated printer reads the tracking barcode from).
    c.floor.stations = vec![wms_node::config::StationConfig {
        scanner: "pack-1".into(),
        printer: "pack-1".into(),
        format: wms_node::floor::labels::LabelFormat::Zpl,
    }];
    c.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.http.listen = if std::net::TcpListener::bind(args.listen).is_ok() {
        args.listen
    } else {
        if !live {
            outln!(
                "({} is taken: the status page gets a free port)",
                args.listen
            );
        }
        SocketAddr::from(([127, 0, 0, 1], 0))
    };
    c
}

/// The view: samples the node every quarter second; on a terminal redraws it and acts on
/// keys; plain, prints every event and a status line every five seconds.
async fn show(
    shared: Arc<Shared>,
    log: Log,
    mut lines: mpsc::UnboundedReceiver<view::Line>,
    live: bool,
    quit: CancellationToken,
    summary: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut screen = None;
    let mut keys = None;
    if live {
        match Screen::open() {
            Ok((s, k)) => {
                screen = Some(s);
                keys = Some(k);
            }
            Err(e) => eprintln!("(no live view: {e}; plain lines follow)"),
        }
    }
    let mut snap = Snapshot {
        status_page: shared.status_page.clone(),
        keys: screen.is_some(),
        ..Snapshot::default()
    };
    let mut rate: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let started = Instant::now();
    let mut last_status = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = quit.cancelled() => break,
            _ = tick.tick() => {}
            Some(line) = lines.recv() => {
                if screen.is_none() {
                    outln!("{}", line.plain());
                }
                snap.push(line);
                continue;
            }
            Some(key) = async { match keys.as_mut() { Some(k) => k.recv().await, None => None } } => {
                match key {
                    Key::Quit => { quit.cancel(); break; }
                    Key::Link => match shared.toggle_link() {
                        Ok(true) => log.say("you", "cut the Taobao link (t restores it)"),
                        Ok(false) => log.say("you", "restored the Taobao link"),
                        Err(e) => log.say("you", format!("{e:#}")),
                    },
                }
            }
        }
        sample(&shared, &mut snap, &mut rate).await;
        snap.elapsed = started.elapsed();
        if let Ok(g) = summary.lock() {
            snap.summary.clone_from(&g);
        }
        match &screen {
            Some(s) => {
                let _ = s.draw(&snap);
            }
            None if last_status.elapsed() >= Duration::from_secs(5) => {
                last_status = Instant::now();
                outln!("{}", view::status_line(&snap));
            }
            None => {}
        }
    }
    // Plain: whatever was said last is printed too.
    if screen.is_none() {
        while let Ok(line) = lines.try_recv() {
            outln!("{}", line.plain());
        }
    }
}

/// Reads the node's figures into `snap`.
async fn sample(
    shared: &Shared,
    snap: &mut Snapshot,
    rate: &mut std::collections::VecDeque<(Instant, u64)>,
) {
    let node = &shared.node;
    if let Ok(c) = node.store.read(|r| wms::view::counts(r, &ShopId::main())) {
        snap.states = LocalState::ALL
            .iter()
            .filter_map(|s| {
                let k = s.as_str();
                c.states.get(k).map(|n| (k.to_owned(), *n))
            })
            .collect();
        snap.held = c.held;
    }
    if let Ok(s) = stats(node).await {
        snap.queue = (s.pending, s.bytes);
    }
    snap.link = node.outbox.status().link.as_str().to_owned();
    snap.cut = shared.is_cut();
    if let Ok(list) = node.devices.list() {
        snap.devices = list
            .into_iter()
            .map(|d| DeviceDot {
                name: format!("{} {}", d.class, d.id),
                online: d.online == Some(true),
            })
            .collect();
    }
    if let Ok(p) = shared.paid.lock() {
        snap.paid = *p;
    }
    if let Ok(p) = shared.phase.lock() {
        snap.phase.clone_from(&p);
    }
    let scans = shared.counters.scans.load(Ordering::Relaxed);
    let now = Instant::now();
    rate.push_back((now, scans));
    while rate.len() > 2 && now.duration_since(rate[0].0) > Duration::from_secs(2) {
        rate.pop_front();
    }
    snap.scans = scans;
    snap.scans_per_s = match rate.front() {
        Some((t, n)) if now.duration_since(*t) > Duration::from_millis(200) => {
            (scans - n) as f64 / now.duration_since(*t).as_secs_f64()
        }
        _ => 0.0,
    };
}

/// The script; returns whether every check against the shop passed, and the table.
async fn play(
    args: &DemoArgs,
    shared: &Arc<Shared>,
    log: &Log,
) -> anyhow::Result<(bool, Vec<String>)> {
    let node = &shared.node;
    let sb = &shared.sb;
    let listings = catalogue(sb);
    if listings.is_empty() {
        return Err(anyhow!("the demo catalogue is empty"));
    }
    shared.set_phase("setting up");
    import_master(node, sb, &listings, log).await?;

    // The floor: each device registered (its password shown once, kept hashed) and logged in.
    let broker = node
        .mqtt_addr
        .ok_or_else(|| anyhow!("the node runs no embedded broker"))?;
    let floor = Floor {
        goods: node.goods.clone(),
        barcodes: Arc::new(
            listings
                .iter()
                .map(|l| (l.code.clone(), l.barcode.clone()))
                .collect(),
        ),
        stop: CancellationToken::new(),
        intercept: Arc::default(),
        picking_intercepted: mpsc::unbounded_channel().0,
        company: CARRIER.to_owned(),
    };
    let (picking_tx, mut picking_rx) = mpsc::unbounded_channel();
    let floor = Floor {
        picking_intercepted: picking_tx,
        ..floor
    };
    let mut sims = std::collections::HashMap::new();
    for (class, id) in DEVICES {
        let added = node
            .devices
            .add(class, id)
            .await
            .map_err(|e| anyhow!("devices add {id} --class {class}: {e}"))?;
        let sim = Sim::connect(
            broker,
            "demo",
            class,
            &added,
            shared.counters.clone(),
            log.clone(),
        )
        .await?;
        sims.insert((class, id), sim);
    }
    let online = wait_for(Duration::from_secs(10), || {
        node.devices
            .list()
            .map(|l| l.iter().filter(|d| d.online == Some(true)).count())
            .unwrap_or(0)
            == DEVICES.len()
    })
    .await;
    log.say(
        "floor",
        if online {
            format!("{} devices online, each with its own login", DEVICES.len())
        } else {
            "not every device came online in 10 s".to_owned()
        },
    );
    // Each listing's first figure is a correction: the shop's figure is read, and once
    // intake has passed that reading (about 12 s: pulls end 10 s before now) the difference
    // goes as a delta; all this before the first order.
    drained(node, Duration::from_secs(60)).await?;
    log.say(
        "node",
        format!(
            "each listing's figure checked against the shop once ({} reads, {} stock calls)",
            ok_calls(sb, READ),
            ok_calls(sb, STOCK)
        ),
    );
    let mut take = |class, id| {
        sims.remove(&(class, id))
            .ok_or_else(|| anyhow!("no device {class} {id}"))
    };
    let (totes_tx, totes_rx) = mpsc::unbounded_channel();
    let (dock_tx, dock_rx) = mpsc::unbounded_channel();
    let mut roles = tokio::task::JoinSet::new();
    roles.spawn(sim::picker(
        take(DeviceClass::Scanner, "picker-1")?,
        floor.clone(),
        totes_tx.clone(),
    ));
    roles.spawn(sim::picker(
        take(DeviceClass::Scanner, "picker-2")?,
        floor.clone(),
        totes_tx,
    ));
    roles.spawn(sim::pack_station(
        take(DeviceClass::Scanner, "pack-1")?,
        floor.clone(),
        totes_rx,
        dock_tx.clone(),
    ));
    roles.spawn(sim::printer(
        take(DeviceClass::Printer, "pack-1")?,
        floor.clone(),
        dock_tx.clone(),
    ));
    roles.spawn(sim::dock(
        take(DeviceClass::Scanner, "dock-1")?,
        floor.clone(),
        dock_rx,
    ));

    // Buyers pay the orders, spread over the first half of the run (the last one is refunded
    // while it is picked); the link drops once the first parcel has shipped, so the next ones
    // wait in the outbox; a delivery arrives at the dock once the node has pulled every order
    // (its receipt goes as a delta, safe at any time; the refund's freed units go as a
    // correction anchored to a reading of the shop's figure, docs/STOCK.md).
    shared.set_phase("orders arriving");
    let sellable: Vec<&Listing> = listings
        .iter()
        .filter(|l| l.sku_id.is_some())
        .take(3)
        .collect();
    let orders = args.orders as usize;
    let spacing = args.duration / 2 / args.orders;
    let intercept_index = orders - 1;
    let begun = Instant::now();
    let mut tids = Vec::new();
    let mut intercepted = None;
    let mut outage_started = None;
    let mut delivered = None;
    let mut finish = None;
    let mut i = 0;
    let settled = loop {
        if i < orders && begun.elapsed() >= spacing * i as u32 {
            // The refunded order has two lines, so its picker is mid-task when the hold comes.
            let lines = if i == intercept_index {
                vec![(0, 2), (1, 1)]
            } else {
                vec![(i % sellable.len(), 1 + (i % 2) as i64)]
            };
            if let Some(tid) = pay(i, sb, &sellable, &lines, log)? {
                if i == intercept_index {
                    intercepted = Some(tid);
                    if let Ok(mut g) = floor.intercept.lock() {
                        *g = Some(tid);
                    }
                } else {
                    tids.push(tid);
                }
            }
            i += 1;
            if let Ok(mut g) = shared.paid.lock() {
                g.0 = i;
            }
        }
        while let Ok(tid) = picking_rx.try_recv() {
            sb.refund(
                tid as i64,
                RefundRequest {
                    reason: Some("buyer changed their mind".into()),
                    ..RefundRequest::default()
                },
            )
            .map_err(|e| anyhow!("the shop refused the refund of {tid}: {e}"))?;
            log.say(
                "shop",
                format!("the buyer of order {tid} asks for a refund while it is picked"),
            );
        }
        let (pulled, consigned, put_back) = node.store.read(|r| {
            let (mut pulled, mut consigned) = (0, 0);
            for tid in tids.iter().chain(&intercepted) {
                let o = wms::orders::read_order(r, &ShopId::main(), *tid)?;
                pulled += usize::from(o.is_some());
                consigned += usize::from(o.is_some_and(|o| o.state == LocalState::Consigned));
            }
            let back = match intercepted {
                Some(t) => wms::orders::read_order(r, &ShopId::main(), t)?
                    .is_some_and(|o| o.state == LocalState::PutBack),
                None => true,
            };
            Ok((pulled, consigned, back))
        })?;
        if outage_started.is_none() && !args.outage.is_zero() && consigned > 0 {
            let secs = args.outage.as_secs().max(1);
            shared.cut_link(secs)?;
            shared.outage.store(true, Ordering::Relaxed);
            log.say(
                "demo",
                format!("the Taobao link is down for {secs} s: the floor goes on"),
            );
            outage_started = Some(Instant::now());
        }
        let outage_on = shared.outage.load(Ordering::Relaxed);
        if let Some(at) = outage_started
            && outage_on
            && at.elapsed() >= args.outage
        {
            shared.outage.store(false, Ordering::Relaxed);
            log.say(
                "demo",
                "the Taobao link is back: the node catches up by itself",
            );
        }
        let all_paid = i == orders;
        if delivered.is_none()
            && all_paid
            && pulled == tids.len() + usize::from(intercepted.is_some())
        {
            delivered = Some(ok_calls(sb, STOCK));
            let lines = sellable
                .iter()
                .map(|l| (l.code.clone(), l.barcode.clone(), 5))
                .collect::<Vec<_>>();
            for round in 1..=2 {
                let _ = dock_tx.send(DockJob::Delivery {
                    lines: lines.clone(),
                    note: format!("delivery note DN-{round}"),
                });
            }
            log.say(
                "demo",
                format!(
                    "a delivery at the dock: 5 units of each of {} SKUs, twice",
                    sellable.len()
                ),
            );
        }
        if finish.is_none() && all_paid && begun.elapsed() >= args.duration {
            // Every order through the floor and every effect through the outbox.
            shared.set_phase("finishing");
            finish = Some(Instant::now() + FINISH_LIMIT);
        }
        if let Some(limit) = finish {
            let s = stats(node).await?;
            if consigned == tids.len()
                && put_back
                && delivered.is_some()
                && !outage_on
                && s.pending == 0
                && s.in_flight == 0
            {
                break true;
            }
            if Instant::now() > limit {
                log.say(
                    "demo",
                    format!(
                        "gave up waiting after {} s: {consigned} of {} consigned, {} ops queued",
                        FINISH_LIMIT.as_secs(),
                        tids.len(),
                        s.pending
                    ),
                );
                break false;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if settled {
        drained(node, Duration::from_secs(30)).await?;
        // The last stock changes (a put-back, a receipt) reach the outbox through the stock
        // feed a moment after their commit: give them a few seconds to arrive and drain.
        let until = Instant::now() + Duration::from_secs(15);
        while !stock_mismatches(sb, node, &listings).is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            drained(node, Duration::from_secs(30)).await?;
        }
    }
    if let Some(before) = delivered {
        log.say(
            "node",
            format!(
                "the delivery's 6 receipts on {} listings took {} stock calls",
                sellable.len(),
                ok_calls(sb, STOCK) - before
            ),
        );
    }
    floor.stop.cancel();
    while let Some(done) = roles.join_next().await {
        if let Ok(sim) = done {
            sim.stop().await;
        }
    }
    let intercept = Intercept {
        tid: intercepted,
        state: match intercepted {
            Some(t) => node
                .store
                .read(|r| wms::orders::read_order(r, &ShopId::main(), t))?
                .map(|o| o.state),
            None => None,
        },
    };
    Ok(check(
        sb,
        node,
        &tids,
        &listings,
        &intercept,
        &shared.counters,
    ))
}

async fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Every listing of the catalogue (an item without SKUs is one listing), with a barcode.
fn catalogue(sb: &Sandbox) -> Vec<Listing> {
    let mut out = Vec::new();
    for item in taobao_sandbox::catalogue::demo_items() {
        let Some(view) = sb.item(item.num_iid) else {
            continue;
        };
        if view.skus.is_empty()
            && let Some(code) = view.outer_id.clone()
        {
            out.push(Listing {
                num_iid: view.num_iid,
                sku_id: None,
                code,
                barcode: String::new(),
            });
        }
        for s in view.skus {
            out.push(Listing {
                num_iid: view.num_iid,
                sku_id: Some(s.sku_id),
                code: s.outer_id.unwrap_or_else(|| s.sku_id.to_string()),
                barcode: String::new(),
            });
        }
    }
    for (i, l) in out.iter_mut().enumerate() {
        l.barcode = format!("69{:011}", 1000 + i);
    }
    out
}

/// The SKU master: every listing's SKU with its barcode, its bin (the pickers' walking order)
/// and the shop's figure as the first count, imported as `wms-node sku import` would.
async fn import_master(
    node: &Started,
    sb: &Sandbox,
    listings: &[Listing],
    log: &Log,
) -> anyhow::Result<()> {
    let mut csv = String::from("sku,barcode,name,on_hand,num_iid,sku_id,location\n");
    for (i, l) in listings.iter().enumerate() {
        let Some(view) = sb.item(l.num_iid) else {
            continue;
        };
        let on_hand = match l.sku_id {
            Some(s) => view
                .skus
                .iter()
                .find(|v| v.sku_id == s)
                .map_or(0, |v| v.quantity),
            None => view.num,
        };
        csv.push_str(&format!(
            "{},{},{} {},{on_hand},{},{},{}\n",
            l.code,
            l.barcode,
            view.title.replace(',', " "),
            l.code,
            l.num_iid,
            l.sku_id.map(|s| s.to_string()).unwrap_or_default(),
            // Bins along the aisles, in an order of their own (not the catalogue's).
            format_args!(
                "{}-{:02}-{:02}",
                ['A', 'B', 'C'][i % 3],
                1 + i / 3,
                1 + (i * 7) % 5
            )
        ));
    }
    let rows =
        wms::sku::parse_skus(csv.as_bytes()).map_err(|e| anyhow!("the demo's SKU file: {e:?}"))?;
    let admin = wms_node::ops::orders::OrdersAdmin::new(
        node.store.clone(),
        ShopId::main(),
        wms::Rules::default(),
        node.bus.clone(),
        wms_node::ops::alert::Alerts::new(),
    );
    let report = admin
        .import(wms_node::ops::orders::ImportRequest {
            skus: rows,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("SKU import: {e}"))?;
    log.say(
        "node",
        format!(
            "SKU master imported: {} SKUs with bins, {} listings mapped; the shop's figures are \
             the first counts",
            report.added.len(),
            report.listings
        ),
    );
    Ok(())
}

/// A buyer pays order `i` of `lines` (`(SKU index, units)`); `None` when sold out.
fn pay(
    i: usize,
    sb: &Sandbox,
    skus: &[&Listing],
    lines: &[(usize, i64)],
    log: &Log,
) -> anyhow::Result<Option<u64>> {
    let mut orders = Vec::new();
    for (k, num) in lines {
        let l = skus[*k % skus.len()];
        let left = sb
            .item(l.num_iid)
            .and_then(|v| v.skus.into_iter().find(|s| Some(s.sku_id) == l.sku_id))
            .map_or(0, |s| s.quantity);
        if left < *num {
            log.say(
                "shop",
                format!("order {}: {} is sold out, skipped", i + 1, l.code),
            );
            return Ok(None);
        }
        orders.push(NewOrder {
            num_iid: l.num_iid,
            sku_id: l.sku_id,
            num: *num,
        });
    }
    let what: Vec<String> = lines
        .iter()
        .map(|(k, n)| format!("{n} x {}", skus[*k % skus.len()].code))
        .collect();
    let created = sb
        .create_trade(NewTrade {
            orders,
            ..NewTrade::default()
        })
        .map_err(|e| anyhow!("the shop refused order {}: {e}", i + 1))?;
    log.say(
        "shop",
        format!(
            "order {} paid: tid {}, {}",
            i + 1,
            created.tid,
            what.join(", ")
        ),
    );
    u64::try_from(created.tid)
        .map(Some)
        .map_err(|_| anyhow!("the shop issued tid {}", created.tid))
}

async fn stats(node: &Started) -> anyhow::Result<wms_node::outbox::admin::Stats> {
    let admin = node.outbox.admin();
    tokio::task::spawn_blocking(move || admin.stats())
        .await
        .map_err(|e| anyhow!("{e}"))?
        .map_err(|e| anyhow!("outbox stats: {e}"))
}

/// Waits until nothing is queued, due or in flight.
async fn drained(node: &Started, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let s = stats(node).await?;
        let due = node.store.read(|r| {
            Ok(wms::tables::read_table(r, wms::tables::STOCK_DUE)?
                .map(|t| {
                    use redb::ReadableTableMetadata;
                    t.len().unwrap_or(0)
                })
                .unwrap_or(0))
        })?;
        if s.pending == 0 && s.in_flight == 0 && s.backing_off == 0 && due == 0 {
            if s.dead_letters > 0 {
                return Err(anyhow!("{} operations were dead-lettered", s.dead_letters));
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "the outbox did not drain within {} s ({} pending, {due} due)",
                limit.as_secs(),
                s.pending
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ok_calls(sb: &Sandbox, method: &str) -> usize {
    sb.calls(Some(method))
        .iter()
        .filter(|c| c.code == 0)
        .count()
}

/// Listings whose platform stock differs from what the ledger offers, as
/// `CODE: shop N, ledger M`.
fn stock_mismatches(sb: &Sandbox, node: &Started, listings: &[Listing]) -> Vec<String> {
    let ledger: BTreeMap<(i64, Option<i64>), i64> = node
        .store
        .read(|r| {
            let mut m = BTreeMap::new();
            for l in listings {
                let (Ok(n), s) = (
                    u64::try_from(l.num_iid),
                    l.sku_id.and_then(|s| u64::try_from(s).ok()),
                ) else {
                    continue;
                };
                if let Some((_, q)) = wms::stock::listing_qty_now(r, ShopId::MAIN, n, s)? {
                    m.insert((l.num_iid, l.sku_id), q);
                }
            }
            Ok(m)
        })
        .unwrap_or_default();
    let say = |n: Option<i64>| n.map_or("none".to_owned(), |n| n.to_string());
    listings
        .iter()
        .filter_map(|l| {
            let platform = sb.item(l.num_iid).and_then(|item| match l.sku_id {
                Some(s) => item.skus.iter().find(|v| v.sku_id == s).map(|v| v.quantity),
                None => Some(item.num),
            });
            let ours = ledger.get(&(l.num_iid, l.sku_id)).copied();
            (platform.is_none() || platform != ours)
                .then(|| format!("{}: shop {}, ledger {}", l.code, say(platform), say(ours)))
        })
        .collect()
}

/// The refunded order and where it ended in the node.
struct Intercept {
    tid: Option<u64>,
    state: Option<LocalState>,
}

/// Reads the outcome back from the shop: whether it all checks out, and the table.
fn check(
    sb: &Sandbox,
    node: &Started,
    tids: &[u64],
    listings: &[Listing],
    intercept: &Intercept,
    counters: &Counters,
) -> (bool, Vec<String>) {
    let shipments = sb.shipments();
    let shipped: BTreeMap<i64, String> = shipments
        .iter()
        .map(|s| (s.tid, s.out_sid.clone()))
        .collect();
    // Each trade's waybill numbers as Cainiao issued them (not cancelled).
    let cainiao: BTreeSet<(String, String)> = sb
        .waybills()
        .into_iter()
        .filter(|w| !w.cancelled)
        .flat_map(|w| {
            w.trade_order_list
                .into_iter()
                .map(move |t| (t, w.waybill_code.clone()))
        })
        .collect();
    let confirmed = tids
        .iter()
        .filter(|tid| {
            sb.trade(**tid as i64).is_some_and(|t| {
                t.get("status").and_then(|s| s.as_str()) == Some("WAIT_BUYER_CONFIRM_GOODS")
            })
        })
        .count();
    let consigned = node
        .store
        .read(|r| {
            let mut n = 0;
            for tid in tids {
                if wms::orders::read_order(r, &ShopId::main(), *tid)?
                    .is_some_and(|o| o.state == LocalState::Consigned)
                {
                    n += 1;
                }
            }
            Ok(n)
        })
        .unwrap_or(0);
    let mismatched = stock_mismatches(sb, node, listings);
    let stock_ok = listings.len() - mismatched.len();
    let once = shipments.len() == shipped.len();
    let numbers_ok = tids.iter().all(|t| {
        shipped
            .get(&(*t as i64))
            .is_some_and(|n| cainiao.contains(&(t.to_string(), n.clone())))
    });
    let mut out = vec!["Checked against the shop:".to_owned()];
    let row = |out: &mut Vec<String>, what: &str, got: String, ok: bool| {
        out.push(format!(
            "  {:<46} {:>9}  {}",
            what,
            got,
            if ok { "ok" } else { "WRONG" }
        ));
        ok
    };
    let mut ok = true;
    ok &= row(
        &mut out,
        "trades shipped (WAIT_BUYER_CONFIRM_GOODS)",
        format!("{confirmed} of {}", tids.len()),
        confirmed == tids.len(),
    );
    ok &= row(
        &mut out,
        "shipped once, with the Cainiao waybill",
        format!(
            "{} of {}",
            tids.iter()
                .filter(|t| shipped.contains_key(&(**t as i64)))
                .count(),
            tids.len()
        ),
        once && numbers_ok,
    );
    ok &= row(
        &mut out,
        "orders consigned in the node's own records",
        format!("{consigned} of {}", tids.len()),
        consigned == tids.len(),
    );
    if let Some(t) = intercept.tid {
        let not_shipped = !shipped.contains_key(&(t as i64));
        let back = intercept.state == Some(LocalState::PutBack);
        ok &= row(
            &mut out,
            "refunded while picked: put back, not shipped",
            intercept.state.map_or("unknown", |s| s.as_str()).to_owned(),
            not_shipped && back && counters.holds.load(Ordering::Relaxed) > 0,
        );
    }
    ok &= row(
        &mut out,
        "listings whose platform stock = ledger",
        format!("{stock_ok} of {}", listings.len()),
        stock_ok == listings.len(),
    );
    for m in &mismatched {
        out.push(format!("    {m}"));
    }
    row(
        &mut out,
        "scans answered by the node (refused)",
        format!(
            "{} ({})",
            counters.scans.load(Ordering::Relaxed),
            counters.refused.load(Ordering::Relaxed)
        ),
        true,
    );
    row(
        &mut out,
        "labels printed (print_result)",
        counters.labels.load(Ordering::Relaxed).to_string(),
        true,
    );
    row(
        &mut out,
        "station steps done directly (flow not on node)",
        counters.direct.load(Ordering::Relaxed).to_string(),
        true,
    );
    row(
        &mut out,
        "calls cut off by the outage (retried later)",
        sb.calls(None)
            .iter()
            .filter(|c| c.code < 0)
            .count()
            .to_string(),
        true,
    );
    ok &= row(
        &mut out,
        "shipment calls refused by Taobao",
        sb.calls(Some(SHIP))
            .iter()
            .filter(|c| c.code > 0)
            .count()
            .to_string(),
        sb.calls(Some(SHIP)).iter().all(|c| c.code <= 0),
    );
    out.push(
        if ok {
            "All shipments and stock reached Taobao; nothing was lost or sent twice."
        } else {
            "Something did not reach Taobao as it should: see WRONG above."
        }
        .to_owned(),
    );
    (ok, out)
}
