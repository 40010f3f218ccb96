//! Order intake at scale: 100,000 paid trades pulled from the Taobao sandbox over real HTTP.
//!
//! ```text
//! cargo bench -p wms-node --bench intake            # 100,000 trades
//! BENCH_TRADES=20000 cargo bench -p wms-node --bench intake
//! BENCH_CACHE_MIB=16 cargo bench -p wms-node --bench intake   # store.cache_size (default 32)
//! ```
//!
//! The sandbox runs as its own process (`taobao-sandbox` of the same profile, built if
//! missing), so this process's peak RSS is the node's: store, client, intake. Trades are
//! created through the admin API, 60 a minute on the sandbox clock (a 100,000-order day,
//! DOMAIN.md §13's peak design point, compressed to 28 hours); the node's clock is moved to
//! the sandbox's, and one catch-up pull reads them all. Printed: the baseline (the client's
//! raw `trade.fullinfo.get` rate at the same concurrency, nothing stored), trades/s, calls
//! per trade (goal ≤ 1.05), peak RSS (goal ≤ 64 MB), the store's size and the time to open
//! it again.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};
use wms_node::ops::alert::Alerts;
use wms_node::outbox::{Outbox, OutboxOptions};
use wms_node::secret::Secret;
use wms_node::status::health::Health;
use wms_node::store::{Store, StoreOptions};
use wms_node::sync::intake::{Intake, IntakeOptions};
use wms_node::taobao::client::ClientOptions;
use wms_node::taobao::limit::RateLimits;
use wms_node::taobao::outbox::TaobaoOp;
use wms_node::taobao::time::Clock;
use wms_node::taobao::{SessionProvider, StaticSession, TopClient};
use wms_node::wms::{self, Bus, ShopId, Wms};

const SESSION: &str = "bench-session";
const ITEM: i64 = 600_000_000_500;
const SKUS: i64 = 20;

struct Sandbox {
    child: Child,
    base: String,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sandbox() -> Sandbox {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("taobao-sandbox");
    if !bin.exists() {
        let profile = if dir.ends_with("debug") {
            "dev"
        } else {
            "release"
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args([
                "build",
                "--profile",
                profile,
                "-p",
                "taobao-sandbox",
                "--bin",
                "taobao-sandbox",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok && bin.exists(), "cannot build taobao-sandbox");
    }
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--session", SESSION])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start taobao-sandbox");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let base = line
        .trim()
        .strip_prefix("taobao-sandbox listening on ")
        .expect("listening line")
        .to_owned();
    Sandbox { child, base }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn post(http: &reqwest::Client, url: String, body: serde_json::Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

async fn seed(http: &reqwest::Client, base: &str, trades: usize) -> i64 {
    let skus: Vec<serde_json::Value> = (0..SKUS)
        .map(|i| {
            serde_json::json!({"sku_id": 4_600_000_005_000 + i, "outer_id": format!("BENCH-{i}"),
                               "quantity": 999_999})
        })
        .collect();
    let r = post(
        http,
        format!("{base}/sandbox/items"),
        serde_json::json!({"num_iid": ITEM, "title": "压测商品", "skus": skus}),
    )
    .send()
    .await
    .expect("item");
    assert!(r.status().is_success(), "item: {}", r.status());
    let mut advanced = 0i64;
    let mut made = 0usize;
    while made < trades {
        let batch = 60.min(trades - made);
        let reqs = (0..batch).map(|i| {
            let k = (made + i) as i64 % SKUS;
            post(
                http,
                format!("{base}/sandbox/trades"),
                serde_json::json!({"orders": [{"num_iid": ITEM,
                    "sku_id": 4_600_000_005_000 + k, "num": 1 + k % 3}]}),
            )
            .send()
        });
        for r in futures::future::join_all(reqs).await {
            let r = r.expect("trade");
            assert!(r.status().is_success(), "trade: {}", r.status());
        }
        made += batch;
        post(
            http,
            format!("{base}/sandbox/clock"),
            serde_json::json!({"advance_s": 60}),
        )
        .send()
        .await
        .expect("clock");
        advanced += 60;
        if made.is_multiple_of(10_000) {
            eprintln!("  seeded {made} trades");
        }
    }
    advanced
}

fn client(base: &str, clock: &Clock) -> TopClient {
    let mut o = ClientOptions::new(
        format!("{base}/router/rest"),
        taobao_sandbox::DEFAULT_APP_KEY,
        Secret::new(taobao_sandbox::DEFAULT_APP_SECRET),
    );
    o.limits = RateLimits::unlimited();
    o.clock = clock.clone();
    o.daily_call_budget = None;
    let s: Arc<dyn SessionProvider> = Arc::new(StaticSession(Secret::new(SESSION)));
    TopClient::new(o, Some(s), Alerts::new()).expect("client")
}

fn main() {
    let trades: usize = std::env::var("BENCH_TRADES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cache_mib: u64 = std::env::var("BENCH_CACHE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let sb = sandbox();
        let http = reqwest::Client::new();
        eprintln!("seeding {trades} trades into the sandbox (60 a minute on its clock)…");
        let t0 = Instant::now();
        let advanced = seed(&http, &sb.base, trades).await;
        eprintln!("  seeded in {:.1} s", t0.elapsed().as_secs_f64());
        let clock = Clock::offset(Arc::new(AtomicI64::new(advanced)));
        let client = client(&sb.base, &clock);

        // Baseline: the client alone, fullinfo for the first 5,000 trades at the same
        // concurrency, nothing stored.
        let first = {
            let now = clock.now();
            let mut q = wms_node::taobao::api::SoldQuery::status("WAIT_SELLER_SEND_GOODS");
            q.fields = vec!["tid".into()];
            q.page_size = 100;
            q.start_created = Some(now - chrono::Duration::days(3));
            q.end_created = Some(now);
            let mut tids = Vec::new();
            for p in 1..=50u32 {
                q.page_no = p;
                let page = client.trades_sold_get(&q).await.expect("list");
                if page.trades.is_empty() {
                    break;
                }
                tids.extend(page.trades.iter().map(|t| t.tid));
            }
            tids
        };
        let base_t = Instant::now();
        use futures::StreamExt;
        let n_base = futures::stream::iter(first.iter().copied())
            .map(|tid| {
                let c = client.clone();
                async move { c.trade_fullinfo_get(tid, &[]).await.is_ok() }
            })
            .buffer_unordered(concurrency)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        let base_rate = n_base as f64 / base_t.elapsed().as_secs_f64();

        let rss_before = status_kib("VmRSS:");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wms-node.redb");
        let alerts = Alerts::new();
        let mut opts = StoreOptions::new(&path);
        opts.cache_size = cache_mib * 1024 * 1024;
        let store = Store::open(opts, alerts.clone()).expect("store");
        // The SKU map, so every order is released as it would be in a shop.
        let mut csv = String::from("sku,barcode,name,on_hand,num_iid,sku_id\n");
        for i in 0..SKUS {
            csv.push_str(&format!("BENCH-{i},69{i:011},bench {i},1000,,\n"));
        }
        let rows = wms::sku::parse_skus(csv.as_bytes()).expect("csv");
        let now = clock.now();
        wms::write(&store, move |txn| {
            let mut w = Wms::new(txn, &ShopId::main(), now);
            w.import_skus(&rows, &[], false, &wms::Rules::default())?;
            w.finish()?;
            Ok(())
        })
        .await
        .expect("map");
        let outbox: Outbox<TaobaoOp> =
            Outbox::new(store.clone(), OutboxOptions::default(), alerts.clone());
        let calls_before = client.budget().calls_total;
        let (intake, handle) = Intake::new(
            client.clone(),
            store.clone(),
            outbox,
            Bus::new(),
            alerts.clone(),
            Health::new(),
            clock.clone(),
            IntakeOptions {
                lookback: Duration::from_secs(advanced as u64 + 3600),
                fullinfo_concurrency: concurrency,
                ..IntakeOptions::default()
            },
        );
        let token = tokio_util::sync::CancellationToken::new();
        let started = Instant::now();
        let task = tokio::spawn(intake.run(token.clone()));
        let mut watch = handle.watch();
        let mut rescan_calls = None;
        loop {
            let st = watch.borrow_and_update().clone();
            if st.polls >= 1 {
                break;
            }
            if rescan_calls.is_none() && st.inserted as usize >= trades {
                rescan_calls = Some((client.budget().calls_total, started.elapsed()));
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), watch.changed()).await;
        }
        let took = started.elapsed();
        token.cancel();
        let _ = task.await;
        let st = handle.status();
        let calls_all = client.budget().calls_total - calls_before;
        let (calls_pull, pull_took) = rescan_calls
            .map(|(c, t)| (c - calls_before, t))
            .unwrap_or((calls_all, took));
        let hwm = status_kib("VmHWM:");
        let rss_after = status_kib("VmRSS:");
        store.close().await.expect("close");
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut opens = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let s = Store::open(StoreOptions::new(&path), Alerts::new()).expect("reopen");
            let counts = s
                .read(|r| wms::view::counts(r, &ShopId::main()))
                .expect("counts");
            opens.push(t.elapsed());
            assert_eq!(counts.total() as usize, trades, "every trade stored");
            s.close().await.expect("close");
        }
        opens.sort();
        let stored = st.inserted as usize;

        println!();
        println!(
            "Order intake: {trades} paid trades from the sandbox (separate process), fullinfo \
             concurrency {concurrency}, store cache {cache_mib} MiB"
        );
        println!("| figure | value |");
        println!("|---|---:|");
        println!(
            "| baseline: client alone, trade.fullinfo.get/s (nothing stored) | {base_rate:.0} |"
        );
        println!("| trades stored | {stored} |");
        println!(
            "| catch-up pull: trades/s (until every trade was stored) | {:.0} |",
            stored as f64 / pull_took.as_secs_f64()
        );
        println!(
            "| ratio to the baseline | {:.2} |",
            (stored as f64 / pull_took.as_secs_f64()) / base_rate
        );
        println!(
            "| calls per trade, pull (increment + fullinfo; goal ≤ 1.05) | {:.3} |",
            calls_pull as f64 / stored.max(1) as f64
        );
        println!(
            "| calls per trade, with the first-start re-scan | {:.3} |",
            calls_all as f64 / stored.max(1) as f64
        );
        println!(
            "| whole first poll (pull + re-scan), s | {:.1} |",
            took.as_secs_f64()
        );
        println!("| windows stored | {} |", st.windows);
        println!(
            "| peak RSS of this process (VmHWM; goal ≤ 64 MB) | {:.1} MiB |",
            hwm as f64 / 1024.0
        );
        println!(
            "| RSS before intake / after | {:.1} / {:.1} MiB |",
            rss_before as f64 / 1024.0,
            rss_after as f64 / 1024.0
        );
        println!(
            "| store file | {:.1} MiB ({:.0} B per trade) |",
            bytes as f64 / 1_048_576.0,
            bytes as f64 / stored.max(1) as f64
        );
        println!(
            "| time to open the store and read the counters (median of 5) | {:.1} ms |",
            opens[2].as_secs_f64() * 1000.0
        );
        drop(sb);
    });
}
