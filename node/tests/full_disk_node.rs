//! The real node on a small file system that fills up while shipments flow (a tmpfs mounted
//! with `size=`; needs root, as CI has; skipped elsewhere unless `WMS_REQUIRE_TMPFS` is set),
//! against the Taobao sandbox over real HTTP.
//!
//! A ballast file fills the disk: the node says so on `/healthz` (the store check failing,
//! naming the mount) and `/metrics` (`wms_node_store_writable 0`), raises `store_disk_full`, refuses
//! new shipments (not acknowledged) and sends nothing it could not record as sent. The
//! ballast is deleted: the node carries on by itself, without a restart. Counted at the
//! sandbox: every acknowledged shipment shipped exactly once, and no shipment call more than
//! one per shipment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use taobao_sandbox::{NewItem, NewOrder, NewTrade, PreIssued, SandboxConfig};
use tokio_util::sync::CancellationToken;
use wms_node::config::Config;
use wms_node::outbox::EnqueueError;
use wms_node::secret::Secret;
use wms_node::store::StoreError;
use wms_node::taobao::outbox::TaobaoOp;

const SESSION: &str = "full-disk-session";
const SHIP: &str = "taobao.logistics.offline.send";

/// A tmpfs of `size` mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a ballast file until the file system is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    while f.write_all(&chunk).and_then(|()| f.sync_data()).is_ok() {}
    // The last, partial chunk too.
    for _ in 0..64 {
        let _ = f.write_all(&chunk[..1024]);
    }
    path
}

fn config(shop: &taobao_sandbox::SandboxHandle, data_dir: &Path) -> Config {
    let mut c = Config::default();
    c.node.id = "full-disk-gw".into();
    c.node.site = "test".into();
    c.node.data_dir = data_dir.to_owned();
    c.taobao.endpoint = shop.rest_url();
    c.taobao.oauth_url = shop.oauth_url();
    c.taobao.app_key = taobao_sandbox::DEFAULT_APP_KEY.into();
    c.taobao.app_secret = Some(Secret::new(taobao_sandbox::DEFAULT_APP_SECRET));
    c.taobao.session = Some(Secret::new(SESSION));
    c.outbox.backoff_initial = Duration::from_millis(100);
    c.outbox.backoff_max = Duration::from_millis(500);
    c.outbox.rate_per_second = 0.0;
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    // The embedded broker on a free port, not the default 1883 (tests run side by side).
    c.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    c
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

async fn until<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut cond: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_heals_by_itself_and_nothing_is_shipped_twice() {
    let Some(disk) = Tmpfs::mount("24m") else {
        assert!(
            std::env::var_os("WMS_REQUIRE_TMPFS").is_none(),
            "WMS_REQUIRE_TMPFS is set but a tmpfs cannot be mounted (not root?)"
        );
        eprintln!("skipped: mounting a tmpfs needs root (set WMS_REQUIRE_TMPFS to require it)");
        return;
    };
    let data = disk.path().join("data");
    std::fs::create_dir_all(&data).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop = taobao_sandbox::spawn_on(
        listener,
        SandboxConfig {
            sessions: vec![PreIssued::new(SESSION)],
            ..SandboxConfig::default()
        },
    )
    .unwrap();
    let sb = shop.sandbox().clone();
    // An item the producer cannot sell out.
    let item = sb
        .create_item(NewItem {
            num_iid: 700_000_000_001,
            title: "full disk test".into(),
            quantity: Some(999_999),
            ..NewItem::default()
        })
        .unwrap();
    let sku: Option<i64> = None;

    let token = CancellationToken::new();
    let node = wms_node::daemon::start(config(&shop, &data), token.clone())
        .await
        .expect("the node starts");
    let base = format!("http://{}", node.http_addr);

    // Shipments flow: a trade is paid, the pack station enqueues its shipment.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let producer = {
        let (outbox, sb, acked, refused, stop) = (
            node.outbox.clone(),
            sb.clone(),
            acked.clone(),
            refused.clone(),
            stop.clone(),
        );
        let num_iid = item.num_iid;
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let tid = sb
                    .create_trade(NewTrade {
                        orders: vec![NewOrder {
                            num_iid,
                            sku_id: sku,
                            num: 1,
                        }],
                        ..NewTrade::default()
                    })
                    .unwrap()
                    .tid;
                let op = TaobaoOp::Ship {
                    tid,
                    oids: Vec::new(),
                    company_code: "YTO".into(),
                    out_sid: format!("YT{:013}", tid.rem_euclid(10_000_000_000_000)),
                };
                match outbox.enqueue_now(op).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(tid);
                    }
                    Err(EnqueueError::Store {
                        source: StoreError::DiskFull,
                        ..
                    }) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => panic!("unexpected enqueue error: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    assert!(
        until(Duration::from_secs(20), || {
            let n = sb.shipments().len();
            async move { n >= 20 }
        })
        .await,
        "shipments reach the shop"
    );

    // The disk fills up.
    let ballast = fill(disk.path());
    let mount = std::fs::canonicalize(disk.path()).unwrap();
    assert!(
        until(Duration::from_secs(20), || {
            let url = format!("{base}/healthz");
            async move {
                let (code, body) = get(&url).await;
                code == 503 && body.contains("\"store\":{\"status\":\"failing\"")
            }
        })
        .await,
        "/healthz reports the store failing"
    );
    let (_, health) = get(&format!("{base}/healthz")).await;
    assert!(health.contains("is full"), "{health}");
    assert!(
        health.contains(&mount.display().to_string()),
        "the disk is named: {health}"
    );
    assert!(health.contains("store_disk_full"), "the alert: {health}");
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert!(
        metrics.lines().any(|l| l == "wms_node_store_writable 0"),
        "/metrics shows it"
    );
    assert!(
        until(Duration::from_secs(10), || {
            let n = refused.load(Ordering::SeqCst);
            async move { n > 0 }
        })
        .await
    );
    // What was on its way finishes; then no shipment call while the store cannot record one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = sb.calls(Some(SHIP)).len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sb.calls(Some(SHIP)).len(),
        calls,
        "nothing is sent that cannot be recorded as sent"
    );
    assert_ne!(
        node.outbox.status().link,
        wms_node::outbox::LinkStatus::Down,
        "a full disk is not a Taobao problem"
    );

    // Space returns: no restart, the node carries on.
    std::fs::remove_file(&ballast).unwrap();
    let healed = Instant::now();
    assert!(
        until(Duration::from_secs(30), || {
            let url = format!("{base}/healthz");
            async move {
                let (_, body) = get(&url).await;
                body.contains("\"store\":{\"status\":\"ok\"")
            }
        })
        .await,
        "the store heals by itself"
    );
    let healed_in = healed.elapsed();
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert!(metrics.lines().any(|l| l == "wms_node_store_writable 1"));
    let before = acked.lock().unwrap().len();
    assert!(
        until(Duration::from_secs(20), || {
            let n = acked.lock().unwrap().len();
            async move { n > before + 10 }
        })
        .await,
        "shipments are acknowledged again"
    );
    stop.cancel();
    producer.await.unwrap();
    let acked: BTreeSet<i64> = acked.lock().unwrap().clone();
    assert!(
        until(Duration::from_secs(60), || {
            let shipped: BTreeSet<i64> = sb.shipments().iter().map(|s| s.tid).collect();
            let done = acked.is_subset(&shipped);
            async move { done }
        })
        .await,
        "every acknowledged shipment reaches the shop"
    );
    token.cancel();
    node.serve().await.unwrap();

    // Counted at the shop.
    let shipments = sb.shipments();
    let mut per_tid = std::collections::BTreeMap::<i64, usize>::new();
    for s in &shipments {
        *per_tid.entry(s.tid).or_default() += 1;
    }
    for tid in &acked {
        assert_eq!(per_tid.get(tid), Some(&1), "trade {tid} shipped once");
    }
    let ship_calls = sb.calls(Some(SHIP));
    assert_eq!(
        ship_calls.len(),
        shipments.len(),
        "one shipment call per shipment, none repeated: {:?}",
        ship_calls
            .iter()
            .filter(|c| c.code != 0)
            .collect::<Vec<_>>()
    );
    eprintln!(
        "{} shipments acknowledged and shipped once each, {} refused while the disk was full, \
         healed {:.1?} after space returned, no restart",
        acked.len(),
        refused.load(Ordering::SeqCst),
        healed_in
    );
    let _ = shop.shutdown().await;
}
