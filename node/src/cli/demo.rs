//! `wms-node demo`: the node against a simulated Taobao shop, in one process, with a
//! temporary data directory. No config file, no internet.
//!
//! ```text
//!  simulated shop (in-process taobao-sandbox, demo catalogue, pre-issued session)
//!        ▲  signed TOP calls over real HTTP on 127.0.0.1
//!  wms-node (store, order intake, outbox, Taobao client, status page on --listen)
//!        ▲  handed over + Ship + SetStock, in one durable write each
//!  simulated pack station (what the floor will do once it is built)
//! ```
//!
//! The script: the SKU master is imported (the catalogue, with its listings); orders are paid
//! in the shop, and the node's order intake pulls them and releases them to the floor; the
//! pack station packs each released order and, in one write, marks it handed over and queues
//! its shipment (carrier YTO and a waybill number) and the new stock of what it picked.
//! Half-way the internet link drops (`--outage`): packing goes on, shipments and stock wait in
//! the outbox, stock updates of the same SKU replace each other; the link returns and the node
//! catches up by itself. Every figure at the end is read back from the shop, not from the
//! node: trades shipped, waybill numbers accepted, platform stock equal to the warehouse's.
//! The floor (pick tasks to MQTT scanners, label printers) is not built yet; the pack station
//! stands in for it.

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
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use taobao_sandbox::{NewOrder, NewTrade, PreIssued, Sandbox, SandboxConfig};
    use tokio_util::sync::CancellationToken;
    use wms_node::config::Config;
    use wms_node::daemon::{self, Started};
    use wms_node::secret::Secret;
    use wms_node::taobao::outbox::TaobaoOp;
    use wms_node::wms::{self, LocalState, ShopId, Wms};

    const SESSION: &str = "demo-session";
    const SHIP: &str = "taobao.logistics.offline.send";
    const STOCK: &str = "taobao.item.quantity.update";

    /// One sellable SKU and the warehouse's count of it.
    struct Sku {
        num_iid: i64,
        sku_id: i64,
        code: String,
        on_hand: i64,
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
        let mut skus = catalogue(sb);
        if skus.is_empty() {
            return Err(anyhow!("the demo catalogue is empty"));
        }
        println!(
            "Shop: {} SKUs on sale; warehouse stock = platform stock.",
            skus.len()
        );
        import_master(node, sb).await?;
        let orders = args.orders as usize;
        let online = orders.div_ceil(2);
        let mut tids = Vec::new();

        println!();
        println!(
            "1. Link up: {online} orders paid; the node pulls them, the pack station packs \
             and ships them."
        );
        let started = Instant::now();
        let paid = pay(0..online, sb, &mut skus)?;
        released(node, &paid).await?;
        for (i, tid, sku) in paid {
            tids.push(pack_one(i, tid, sku, node, &skus).await?);
        }
        drained(node, Duration::from_secs(60)).await?;
        println!(
            "   every shipment and stock update confirmed by Taobao in {:.1} s",
            started.elapsed().as_secs_f64()
        );

        // The second half is paid and pulled before the link drops, so the pack station has
        // work while it is down.
        let paid = pay(online..orders, sb, &mut skus)?;
        released(node, &paid).await?;
        if !args.outage.is_zero() {
            let secs = args.outage.as_secs().max(1);
            let fault =
                serde_json::from_value(serde_json::json!({"kind": "outage", "seconds": secs}))
                    .context("the outage fault")?;
            sb.add_fault(fault)
                .map_err(|e| anyhow!("cannot simulate the outage: {e}"))?;
            println!();
            println!(
                "2. Link down for {secs} s: {} more orders packed; their shipments wait in the outbox.",
                orders - online
            );
        } else {
            println!();
            println!(
                "2. No outage (--outage 0s): {} more orders.",
                orders - online
            );
        }
        let calls_before = ok_calls(sb, STOCK);
        let down_at = Instant::now();
        let mut packed_offline = 0;
        for (i, tid, sku) in paid {
            tids.push(pack_one(i, tid, sku, node, &skus).await?);
            packed_offline += 1;
        }
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
            "   caught up in {:.1} s; {} stock updates during the outage took {} calls (latest value wins)",
            back.elapsed().as_secs_f64(),
            packed_offline,
            stock_calls
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
        Ok(check(sb, &tids, &skus, consigned))
    }

    /// The catalogue's SKUs with their platform stock as the warehouse's starting count.
    fn catalogue(sb: &Sandbox) -> Vec<Sku> {
        let mut out = Vec::new();
        for item in taobao_sandbox::catalogue::demo_items() {
            let Some(view) = sb.item(item.num_iid) else {
                continue;
            };
            for s in view.skus {
                out.push(Sku {
                    num_iid: view.num_iid,
                    sku_id: s.sku_id,
                    code: s.outer_id.unwrap_or_else(|| s.sku_id.to_string()),
                    on_hand: s.quantity,
                });
            }
        }
        out
    }

    /// The SKU master: every SKU of the catalogue (and the two items without SKUs), with the
    /// listing that sells it, imported as `wms-node sku import` would.
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
            "SKU master imported: {} SKUs, {} listings mapped (as `wms-node sku import`).",
            report.added.len(),
            report.listings
        );
        Ok(())
    }

    /// Buyers pay orders `range` (cycling over three SKUs, so stock updates of one SKU pile
    /// up during the outage). Returns (order number, tid, SKU index) of each.
    fn pay(
        range: std::ops::Range<usize>,
        sb: &Sandbox,
        skus: &mut [Sku],
    ) -> anyhow::Result<Vec<(usize, i64, usize)>> {
        let mut out = Vec::new();
        for i in range {
            let k = i % skus.len().min(3);
            let sku = &mut skus[k];
            let num = 1 + (i % 2) as i64;
            if sku.on_hand < num {
                println!("   order {:>2}: {} is sold out, skipped", i + 1, sku.code);
                continue;
            }
            let created = sb
                .create_trade(NewTrade {
                    orders: vec![NewOrder {
                        num_iid: sku.num_iid,
                        sku_id: Some(sku.sku_id),
                        num,
                    }],
                    ..NewTrade::default()
                })
                .map_err(|e| anyhow!("the shop refused order {}: {e}", i + 1))?;
            sku.on_hand -= num;
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

    /// The pack station packs a released order: in one durable write it is handed over (the
    /// pick, pack and ship scans the floor will make), its shipment is queued and so is the
    /// new stock of its SKU.
    async fn pack_one(
        i: usize,
        tid: i64,
        k: usize,
        node: &Started,
        skus: &[Sku],
    ) -> anyhow::Result<i64> {
        let sku = &skus[k];
        let out_sid = format!("YT{:013}", tid.rem_euclid(10_000_000_000_000));
        let ship = TaobaoOp::Ship {
            tid,
            oids: Vec::new(),
            company_code: "YTO".into(),
            out_sid: out_sid.clone(),
        };
        let stock = TaobaoOp::SetStock {
            num_iid: sku.num_iid,
            sku_id: Some(sku.sku_id),
            qty: sku.on_hand,
            version: i as u64 + 1,
        };
        let outbox = node.outbox.clone();
        let bus = node.bus.clone();
        let now = chrono::Utc::now();
        let seq = wms::write(&node.store, move |txn| {
            let mut w = Wms::new(txn, &ShopId::main(), now);
            w.move_to(tid as u64, LocalState::HandedOver)?;
            let seq = outbox.enqueue(txn, ship.clone())?.seq;
            outbox.enqueue(txn, stock.clone())?;
            bus.publish_after_commit(ShopId::MAIN, w.finish()?);
            Ok(seq)
        })
        .await
        .map_err(|e| anyhow!("packing {tid}: {e}"))?;
        println!(
            "   order {:>2}: tid {tid}, {} packed, waybill {out_sid} (op #{seq}); {} left",
            i + 1,
            sku.code,
            sku.on_hand
        );
        Ok(tid)
    }

    async fn stats(node: &Started) -> anyhow::Result<wms_node::outbox::admin::Stats> {
        let admin = node.outbox.admin();
        tokio::task::spawn_blocking(move || admin.stats())
            .await
            .map_err(|e| anyhow!("{e}"))?
            .map_err(|e| anyhow!("outbox stats: {e}"))
    }

    /// Waits until nothing is queued or in flight.
    async fn drained(node: &Started, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let s = stats(node).await?;
            if s.pending == 0 && s.in_flight == 0 && s.backing_off == 0 {
                if s.dead_letters > 0 {
                    return Err(anyhow!("{} operations were dead-lettered", s.dead_letters));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(anyhow!(
                    "the outbox did not drain within {} s ({} pending)",
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
    fn check(sb: &Sandbox, tids: &[i64], skus: &[Sku], consigned: usize) -> bool {
        let shipments = sb.shipments();
        let shipped: BTreeMap<i64, String> = shipments
            .iter()
            .map(|s| (s.tid, s.out_sid.clone()))
            .collect();
        let confirmed = tids
            .iter()
            .filter(|tid| {
                sb.trade(**tid).is_some_and(|t| {
                    t.get("status").and_then(|s| s.as_str()) == Some("WAIT_BUYER_CONFIRM_GOODS")
                })
            })
            .count();
        let stock_ok = skus
            .iter()
            .filter(|s| {
                sb.item(s.num_iid).is_some_and(|item| {
                    item.skus
                        .iter()
                        .any(|v| v.sku_id == s.sku_id && v.quantity == s.on_hand)
                })
            })
            .count();
        let once = shipments.len() == shipped.len();
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
            "waybill numbers accepted, each trade once",
            format!("{} of {}", shipped.len(), tids.len()),
            once && tids.iter().all(|t| shipped.contains_key(t)),
        );
        ok &= row(
            "orders consigned in the node's own records",
            format!("{consigned} of {}", tids.len()),
            consigned == tids.len(),
        );
        ok &= row(
            "SKUs whose platform stock = warehouse stock",
            format!("{stock_ok} of {}", skus.len()),
            stock_ok == skus.len(),
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
