//! `wms-node demo`: the node against a simulated Taobao shop, in one process, with a
//! temporary data directory. No config file, no internet.
//!
//! ```text
//!  simulated shop (in-process taobao-sandbox, demo catalogue, pre-issued session,
//!                  Cainiao e-waybills)
//!        ▲  signed TOP calls over real HTTP on 127.0.0.1
//!  wms-node (store, order intake, stock ledger and pushes, outbox, status page on --listen)
//!        ▲  waybill get + ship: the same functions as `wms-node waybill get` and `ship`
//!  simulated pack station (what the floor's pack and ship scans will do)
//! ```
//!
//! The script: the SKU master is imported (the catalogue, with its listings) and becomes the
//! stock ledger; the node pushes each listing's figure once. Orders are paid in the shop, the
//! node's order intake pulls them (their lines are reserved) and releases them to the floor;
//! the pack station gets each order's e-waybill (`cainiao.waybill.ii.get`) and ships it through
//! the node's ship function (hold, carrier and number checked, one `Ship` op queued, goods off
//! the ledger). Half-way the internet link drops (`--outage`): labels were printed before,
//! packing goes on, shipments wait in the outbox, and a delivery arrives at the dock (a receipt
//! per SKU) whose stock changes wait too, one per listing however many receipts; the link
//! returns and the node catches up by itself. Every figure at the end is read back from the
//! shop, not from the node: trades shipped, the waybill numbers Cainiao issued, platform stock
//! equal to what the ledger offers. The floor (pick tasks to MQTT scanners, label printers)
//! is not built yet; the pack station stands in for it.

use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// `wms-node demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Orders the simulated shop takes (1–200).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub orders: u32,
    /// How long the simulated internet outage lasts (0s for none).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub outage: Duration,
    /// Where the node's status page listens (a free port is used if this one is taken).
    #[arg(long, default_value = "127.0.0.1:9870")]
    pub listen: SocketAddr,
    /// Stop after the summary instead of serving the status page until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// The status page's language (`[node] language`): en or zh.
    #[arg(long, default_value = "en", value_parser = parse_language)]
    pub language: wms_node::ops::i18n::Lang,
}

/// `en` or `zh`.
fn parse_language(s: &str) -> Result<wms_node::ops::i18n::Lang, String> {
    match s {
        "en" => Ok(wms_node::ops::i18n::Lang::En),
        "zh" => Ok(wms_node::ops::i18n::Lang::Zh),
        other => Err(format!("`{other}` is not a language of the node: en or zh")),
    }
}

/// Runs the demo.
#[cfg(not(feature = "demo"))]
pub fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    eprintln!(
        "wms-node demo: this binary was built without the `demo` feature (it links the \
         simulated shop); build with default features: cargo run --release -p wms-node -- demo"
    );
    Ok(ExitCode::FAILURE)
}

/// Runs the demo.
#[cfg(feature = "demo")]
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    // The node's own log only for errors: the demo narrates. RUST_LOG=info shows everything.
    wms_node::ops::log::init("error", wms_node::config::LogFormat::Text)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wms-demo")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(script::run(args))
}

#[cfg(feature = "demo")]
mod script {
    use super::DemoArgs;
    use anyhow::{Context, anyhow};
    use std::collections::{BTreeMap, BTreeSet};
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use taobao_sandbox::{NewOrder, NewTrade, PreIssued, Sandbox, SandboxConfig};
    use tokio_util::sync::CancellationToken;
    use wms_node::config::Config;
    use wms_node::daemon::{self, Started};
    use wms_node::secret::Secret;
    use wms_node::wms::ship::ShipRequest;
    use wms_node::wms::{self, LocalState, ShopId};

    const SESSION: &str = "demo-session";
    const SHIP: &str = "taobao.logistics.offline.send";
    const STOCK: &str = "taobao.item.quantity.update";

    /// One sellable listing of the catalogue.
    struct Listing {
        num_iid: i64,
        sku_id: Option<i64>,
        code: String,
    }

    pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
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
        let config = config(&args, &shop, &data_dir);
        let token = CancellationToken::new();
        let node = daemon::start(config, token.clone())
            .await
            .map_err(|e| anyhow!("the node did not start: {e}"))?;
        let status_page = format!("http://{}/", node.http_addr);
        println!("wms-node demo: the node, a simulated Taobao shop and a pack station.");
        println!("  status page   {status_page}");
        println!("  data          {}", data_dir.display());
        println!();

        let result = play(&args, &sb, &node).await;
        let outcome = match result {
            Ok(all_good) => {
                if !args.exit {
                    println!();
                    println!("The node keeps running: {status_page} (Ctrl-C to stop).");
                    stop_requested().await;
                }
                all_good
            }
            Err(e) => {
                eprintln!("demo failed: {e:#}");
                false
            }
        };
        token.cancel();
        let stopped = node.serve().await;
        let _ = shop.shutdown().await;
        let _ = std::fs::remove_dir_all(&data_dir);
        stopped.map_err(|e| anyhow!("the node stopped with an error: {e}"))?;
        Ok(if outcome {
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
        // orders every second, so a paid order reaches the pack station at once.
        c.outbox.backoff_initial = Duration::from_millis(500);
        c.outbox.backoff_max = Duration::from_secs(2);
        c.taobao.poll_interval = Duration::from_secs(1);
        c.intake.lookback = Duration::from_secs(3600);
        c.stock.max_intake_lag = Duration::from_secs(30);
        // The demo shop's waybill account (the sandbox issues YTO numbers).
        c.waybill.cp_code = "YTO".into();
        c.waybill.branch_code = "DEMO-01".into();
        c.waybill.template_url = "http://cloudprint.cainiao.com/template/standard/101".into();
        c.waybill.sender_name = "演示仓".into();
        c.waybill.sender_mobile = "13800000000".into();
        c.waybill.sender_province = "浙江省".into();
        c.waybill.sender_city = "杭州市".into();
        c.waybill.sender_district = "余杭区".into();
        c.waybill.sender_detail = "仓前街道 1 号 演示仓".into();
        // The demo's simulated devices are in-process; any free port will do.
        c.mqtt.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.http.listen = if std::net::TcpListener::bind(args.listen).is_ok() {
            args.listen
        } else {
            println!(
                "({} is taken: the status page gets a free port)",
                args.listen
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        c
    }

    /// The script; returns whether every check against the shop passed.
    async fn play(args: &DemoArgs, sb: &Arc<Sandbox>, node: &Started) -> anyhow::Result<bool> {
        let listings = catalogue(sb);
        if listings.is_empty() {
            return Err(anyhow!("the demo catalogue is empty"));
        }
        import_master(node, sb).await?;
        drained(node, Duration::from_secs(60)).await?;
        println!(
            "   each listing's figure pushed once ({} stock calls; a pre-sale item takes deltas)",
            ok_calls(sb, STOCK)
        );
        let sellable: Vec<&Listing> = listings
            .iter()
            .filter(|l| l.sku_id.is_some())
            .take(3)
            .collect();
        let orders = args.orders as usize;
        let online = orders.div_ceil(2);
        let mut tids = Vec::new();
        let mut issued = BTreeMap::new();

        println!();
        println!(
            "1. Link up: {online} orders paid; the node pulls them, the pack station labels and \
             ships them."
        );
        let started = Instant::now();
        let paid = pay(0..online, sb, &sellable)?;
        released(node, &paid).await?;
        for (i, tid, k) in &paid {
            let waybill = label(node, *tid, &mut issued).await?;
            pack_one(*i, *tid, &sellable[*k].code, &waybill, node).await?;
            tids.push(*tid);
        }
        drained(node, Duration::from_secs(60)).await?;
        println!(
            "   every shipment confirmed by Taobao in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        // The second half is paid, pulled and labelled before the link drops, so the pack
        // station has work while it is down.
        let paid = pay(online..orders, sb, &sellable)?;
        released(node, &paid).await?;
        let mut labels = Vec::new();
        for (_, tid, _) in &paid {
            labels.push(label(node, *tid, &mut issued).await?);
        }
        if !args.outage.is_zero() {
            let secs = args.outage.as_secs().max(1);
            let fault =
                serde_json::from_value(serde_json::json!({"kind": "outage", "seconds": secs}))
                    .context("the outage fault")?;
            sb.add_fault(fault)
                .map_err(|e| anyhow!("cannot simulate the outage: {e}"))?;
            println!();
            println!(
                "2. Link down for {secs} s: {} more orders shipped and a delivery received; \
                 Taobao hears of both later.",
                orders - online
            );
        } else {
            println!();
            println!(
                "2. No outage (--outage 0s): {} more orders and a delivery.",
                orders - online
            );
        }
        let calls_before = ok_calls(sb, STOCK);
        let down_at = Instant::now();
        for ((i, tid, k), waybill) in paid.iter().zip(&labels) {
            pack_one(*i, *tid, &sellable[*k].code, waybill, node).await?;
            tids.push(*tid);
        }
        // A delivery at the dock: two receipts of each of the three SKUs.
        let mut receipts = 0;
        for round in 0..2 {
            for l in &sellable {
                node.goods
                    .receive(&l.code, 5, &format!("delivery note DN-{}", round + 1))
                    .await
                    .map_err(|e| anyhow!("receipt of {}: {e}", l.code))?;
                receipts += 1;
            }
        }
        println!(
            "   received 5 units of each of {} SKUs, twice",
            sellable.len()
        );
        let stats = stats(node).await?;
        println!(
            "   queued now: {} operations ({} bytes), kept on disk until Taobao confirms each",
            stats.pending, stats.bytes
        );
        if !args.outage.is_zero() {
            // The first attempt after the drop finds the link down; say what the node says.
            let deadline = Instant::now() + Duration::from_secs(3);
            while node.outbox.status().link != wms_node::outbox::LinkStatus::Down
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (status, message) = node.outbox.assess();
            let status = format!("{status:?}").to_lowercase();
            println!("   node health: outbox {status}: {message}");
        }

        if !args.outage.is_zero() {
            let left = args.outage.saturating_sub(down_at.elapsed());
            tokio::time::sleep(left).await;
            println!();
            println!("3. Link back: the node catches up by itself.");
        }
        let back = Instant::now();
        drained(node, Duration::from_secs(60)).await?;
        let stock_calls = ok_calls(sb, STOCK) - calls_before;
        println!(
            "   caught up in {:.1} s; {receipts} receipts on {} listings took {stock_calls} stock \
             calls (deltas summed per listing)",
            back.elapsed().as_secs_f64(),
            sellable.len()
        );

        let consigned = node.store.read(|r| {
            let mut n = 0;
            for tid in &tids {
                if wms::orders::read_order(r, &ShopId::main(), *tid as u64)?
                    .is_some_and(|o| o.state == LocalState::Consigned)
                {
                    n += 1;
                }
            }
            Ok(n)
        })?;
        Ok(check(sb, node, &tids, &issued, &listings, consigned))
    }

    /// Every listing of the catalogue (an item without SKUs is one listing).
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
                });
            }
            for s in view.skus {
                out.push(Listing {
                    num_iid: view.num_iid,
                    sku_id: Some(s.sku_id),
                    code: s.outer_id.unwrap_or_else(|| s.sku_id.to_string()),
                });
            }
        }
        out
    }

    /// The SKU master: every SKU of the catalogue (and the two items without SKUs), with the
    /// listing that sells it and the shop's figure as the first count, imported as `wms-node
    /// sku import` would.
    async fn import_master(node: &Started, sb: &Sandbox) -> anyhow::Result<()> {
        let mut csv = String::from("sku,barcode,name,on_hand,num_iid,sku_id\n");
        for item in taobao_sandbox::catalogue::demo_items() {
            let Some(view) = sb.item(item.num_iid) else {
                continue;
            };
            if view.skus.is_empty()
                && let Some(code) = &view.outer_id
            {
                csv.push_str(&format!(
                    "{code},690000{:07},{},{},{},\n",
                    view.num_iid % 10_000_000,
                    view.title.replace(',', " "),
                    view.num,
                    view.num_iid
                ));
            }
            for s in &view.skus {
                let code = s.outer_id.clone().unwrap_or_else(|| s.sku_id.to_string());
                csv.push_str(&format!(
                    "{code},69000000000{:02},{} {code},{},{},{}\n",
                    s.sku_id % 100,
                    view.title.replace(',', " "),
                    s.quantity,
                    view.num_iid,
                    s.sku_id
                ));
            }
        }
        let rows = wms::sku::parse_skus(csv.as_bytes())
            .map_err(|e| anyhow!("the demo's SKU file: {e:?}"))?;
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
        println!(
            "SKU master imported: {} SKUs, {} listings mapped; the shop's figures are the \
             first counts.",
            report.added.len(),
            report.listings
        );
        Ok(())
    }

    /// Buyers pay orders `range` (cycling over three SKUs). Returns (order number, tid, SKU
    /// index) of each.
    fn pay(
        range: std::ops::Range<usize>,
        sb: &Sandbox,
        skus: &[&Listing],
    ) -> anyhow::Result<Vec<(usize, i64, usize)>> {
        let mut out = Vec::new();
        for i in range {
            let k = i % skus.len();
            let l = skus[k];
            let num = 1 + (i % 2) as i64;
            let left = sb
                .item(l.num_iid)
                .and_then(|v| v.skus.into_iter().find(|s| Some(s.sku_id) == l.sku_id))
                .map_or(0, |s| s.quantity);
            if left < num {
                println!("   order {:>2}: {} is sold out, skipped", i + 1, l.code);
                continue;
            }
            let created = sb
                .create_trade(NewTrade {
                    orders: vec![NewOrder {
                        num_iid: l.num_iid,
                        sku_id: l.sku_id,
                        num,
                    }],
                    ..NewTrade::default()
                })
                .map_err(|e| anyhow!("the shop refused order {}: {e}", i + 1))?;
            out.push((i, created.tid, k));
        }
        Ok(out)
    }

    /// Waits until the node's order intake has pulled and released every one of `paid`.
    async fn released(node: &Started, paid: &[(usize, i64, usize)]) -> anyhow::Result<()> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        loop {
            let ready = node.store.read(|r| {
                let mut n = 0;
                for (_, tid, _) in paid {
                    if let Some(o) = wms::orders::read_order(r, &ShopId::main(), *tid as u64)?
                        && o.state == LocalState::Released
                    {
                        n += 1;
                    }
                }
                Ok(n)
            })?;
            if ready == paid.len() {
                println!(
                    "   the node pulled and released {ready} orders in {:.1} s (each pull \
                     leaves Taobao's last 10 s to settle)",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "only {ready} of {} orders were released within 60 s",
                    paid.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pack station's label: the order's e-waybill (as `wms-node waybill get`).
    async fn label(
        node: &Started,
        tid: i64,
        issued: &mut BTreeMap<i64, String>,
    ) -> anyhow::Result<String> {
        let v = node
            .goods
            .waybill(tid as u64, None, Vec::new())
            .await
            .map_err(|e| anyhow!("waybill for {tid}: {e}"))?;
        issued.insert(tid, v.waybill_code.clone());
        Ok(v.waybill_code)
    }

    /// The pack station ships a labelled order through the node's ship function (as
    /// `wms-node ship`): its Ship op is queued and its goods leave the ledger.
    async fn pack_one(
        i: usize,
        tid: i64,
        code: &str,
        waybill: &str,
        node: &Started,
    ) -> anyhow::Result<()> {
        let s = node
            .goods
            .ship(ShipRequest {
                tid: tid as u64,
                company_code: "YTO".into(),
                out_sid: waybill.to_owned(),
                oids: Vec::new(),
            })
            .await
            .map_err(|e| anyhow!("shipping {tid}: {e}"))?;
        let left = node
            .goods
            .stock(Some(code))
            .ok()
            .and_then(|r| r.into_iter().next())
            .map_or(0, |r| r.view.available);
        println!(
            "   order {:>2}: tid {tid}, {code} shipped with waybill {waybill} (op #{}); {left} \
             available",
            i + 1,
            s.ops.first().map_or(0, |o| o.seq),
        );
        Ok(())
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

    /// Reads the outcome back from the shop and prints the summary table.
    fn check(
        sb: &Sandbox,
        node: &Started,
        tids: &[i64],
        issued: &BTreeMap<i64, String>,
        listings: &[Listing],
        consigned: usize,
    ) -> bool {
        let shipments = sb.shipments();
        let shipped: BTreeMap<i64, String> = shipments
            .iter()
            .map(|s| (s.tid, s.out_sid.clone()))
            .collect();
        let cainiao: BTreeSet<String> = sb.waybills().into_iter().map(|w| w.waybill_code).collect();
        let confirmed = tids
            .iter()
            .filter(|tid| {
                sb.trade(**tid).is_some_and(|t| {
                    t.get("status").and_then(|s| s.as_str()) == Some("WAIT_BUYER_CONFIRM_GOODS")
                })
            })
            .count();
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
        let stock_ok = listings
            .iter()
            .filter(|l| {
                sb.item(l.num_iid).is_some_and(|item| {
                    let platform = match l.sku_id {
                        Some(s) => item.skus.iter().find(|v| v.sku_id == s).map(|v| v.quantity),
                        None => Some(item.num),
                    };
                    platform.is_some() && platform == ledger.get(&(l.num_iid, l.sku_id)).copied()
                })
            })
            .count();
        let once = shipments.len() == shipped.len();
        let numbers_ok = tids.iter().all(|t| {
            shipped
                .get(t)
                .is_some_and(|n| issued.get(t) == Some(n) && cainiao.contains(n))
        });
        println!();
        println!("Checked against the shop:");
        let row = |what: &str, got: String, ok: bool| {
            println!(
                "  {:<44} {:>9}  {}",
                what,
                got,
                if ok { "ok" } else { "WRONG" }
            );
            ok
        };
        let mut ok = true;
        ok &= row(
            "trades shipped (WAIT_BUYER_CONFIRM_GOODS)",
            format!("{confirmed} of {}", tids.len()),
            confirmed == tids.len(),
        );
        ok &= row(
            "shipped once, with the Cainiao waybill",
            format!("{} of {}", shipped.len(), tids.len()),
            once && numbers_ok,
        );
        ok &= row(
            "orders consigned in the node's own records",
            format!("{consigned} of {}", tids.len()),
            consigned == tids.len(),
        );
        ok &= row(
            "listings whose platform stock = ledger",
            format!("{stock_ok} of {}", listings.len()),
            stock_ok == listings.len(),
        );
        row(
            "calls cut off by the outage (retried later)",
            sb.calls(None)
                .iter()
                .filter(|c| c.code < 0)
                .count()
                .to_string(),
            true,
        );
        ok &= row(
            "shipment calls refused by Taobao",
            sb.calls(Some(SHIP))
                .iter()
                .filter(|c| c.code > 0)
                .count()
                .to_string(),
            sb.calls(Some(SHIP)).iter().all(|c| c.code <= 0),
        );
        println!(
            "{}",
            if ok {
                "All shipments and stock reached Taobao; nothing was lost or sent twice."
            } else {
                "Something did not reach Taobao as it should: see WRONG above."
            }
        );
        ok
    }
}
