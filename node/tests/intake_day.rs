//! Order intake against the Taobao sandbox over real HTTP, on a clock that moves with the
//! sandbox's: a whole simulated day with outages, 5xx storms, connection resets, a code-7 ban
//! and a token expiry; a trade modified while its window is paged; unmapped SKUs.
//!
//! `WMS_SIM_ORDERS` scales the day (default 2,000 paid orders, which runs in seconds).

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intake_support;

use intake_support::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use wms_node::ops::alert::AlertCode;
use wms_node::status::health::CheckName;
use wms_node::sync::intake::IntakeOptions;
use wms_node::wms::{Event, HoldReason, LocalState};

const POLL: u64 = 120;
const DAY_MIN: u64 = 24 * 60;
const INCREMENT: &str = "taobao.trades.sold.increment.get";

fn opts() -> IntakeOptions {
    IntakeOptions {
        poll_interval: Duration::from_secs(POLL),
        lookback: Duration::from_secs(3600),
        ..IntakeOptions::default()
    }
}

/// What happens in one minute of the day.
#[derive(Default)]
struct Minute {
    /// Paid orders created (SKU index, quantity).
    create: Vec<(usize, i64)>,
    /// Orders changed (memo) later: index into `tids`.
    change: Vec<usize>,
    /// Refund requests: index into `tids`; `true` = the floor has started picking first.
    refund: Vec<(usize, bool)>,
    /// Refunds settled: index into `tids`, the refund status.
    settle: Vec<(usize, &'static str)>,
    /// A fault starts.
    fault: Option<(&'static str, serde_json::Value)>,
}

fn ms_of(at: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(at)
        .map(|d| d.timestamp_millis())
        .unwrap_or(0)
}

fn secs_of_gmt8(s: &str) -> i64 {
    wms_node::taobao::time::parse(s)
        .map(|d| d.timestamp())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_day_ingests_every_paid_order_once_through_every_fault() {
    let n: usize = std::env::var("WMS_SIM_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let sim = Sim::start(opts(), true).await;
    let mut rng = StdRng::seed_from_u64(13);

    // The script: orders spread over the day, 5 % changed later, 3 % refunded (half of them
    // after picking started), and the faults, each in its own quiet hour.
    let faults: [(u64, &str, serde_json::Value); 5] = [
        (
            180,
            "an hour-long outage",
            json!({"kind": "outage", "seconds": 3600}),
        ),
        (
            360,
            "a 5xx storm",
            json!({"kind": "http_500", "seconds": 900}),
        ),
        (
            540,
            "connection resets",
            json!({"kind": "reset", "seconds": 600}),
        ),
        (
            720,
            "a 10-minute code-7 ban",
            json!({"kind": "ban", "seconds": 600}),
        ),
        (900, "a token expiry", json!({"kind": "expire_tokens"})),
    ];
    let fault_len = |m: u64| -> u64 {
        faults
            .iter()
            .find(|(at, _, _)| *at == m)
            .map_or(0, |(_, _, f)| f["seconds"].as_u64().unwrap_or(0) / 60)
    };
    // Refunds need the link up to be held within a poll: keep them out of fault hours.
    let quiet = |m: u64| {
        faults
            .iter()
            .all(|(at, _, _)| m + 2 < *at || m > at + fault_len(*at) + 15)
    };
    let mut script: BTreeMap<u64, Minute> = BTreeMap::new();
    for (at, what, f) in &faults {
        script.entry(*at).or_default().fault = Some((what, f.clone()));
    }
    for i in 0..n {
        let m = (i as u64 * (DAY_MIN - 120)) / n as u64 + 1;
        script
            .entry(m)
            .or_default()
            .create
            .push((rng.random_range(0..4), rng.random_range(1..4)));
        if rng.random_bool(0.05) {
            let later = m + rng.random_range(5..100);
            script.entry(later).or_default().change.push(i);
        }
        if rng.random_bool(0.03) {
            let at = m + rng.random_range(3..40);
            if quiet(at) && quiet(at + 20) {
                let picking = rng.random_bool(0.5);
                script.entry(at).or_default().refund.push((i, picking));
                let how = if rng.random_bool(0.5) {
                    "CLOSED"
                } else {
                    "SUCCESS"
                };
                script.entry(at + 20).or_default().settle.push((i, how));
            }
        }
    }

    let started = std::time::Instant::now();
    let mut tids: Vec<(i64, Vec<i64>)> = Vec::new();
    let mut refund_due: Vec<(i64, u64)> = Vec::new();
    let mut fault_ends: Vec<(&str, i64)> = Vec::new();
    let mut ban_from: Option<i64> = None;
    let mut lag_checked = BTreeSet::new();
    sim.settle().await;
    for minute in (0..DAY_MIN).step_by((POLL / 60) as usize) {
        let due: Vec<u64> = script.range(..=minute).map(|(k, _)| *k).collect();
        for m in due.into_iter().filter_map(|k| script.remove(&k)) {
            for (k, num) in m.create {
                tids.push(paid(&sim.sb, k, num));
            }
            for i in m.change {
                sim.sb
                    .sandbox()
                    .patch_trade(
                        tids[i].0,
                        serde_json::from_value(json!({"seller_memo": format!("changed {i}")}))
                            .unwrap(),
                    )
                    .unwrap();
            }
            for (i, picking) in m.refund {
                let tid = tids[i].0;
                if picking {
                    // The floor started picking: the order must be released by now.
                    sim.move_to(tid, LocalState::Picking)
                        .await
                        .unwrap_or_else(|e| panic!("order {tid} not pickable: {e}"));
                }
                sim.sb.sandbox().refund(tid, Default::default()).unwrap();
                refund_due.push((tid, minute));
            }
            for (i, how) in m.settle {
                let req = serde_json::from_value(json!({"status": how})).unwrap();
                sim.sb.sandbox().refund(tids[i].0, req).unwrap();
            }
            if let Some((what, f)) = m.fault {
                let now = sim.sandbox_ms();
                if f["kind"] == "ban" {
                    ban_from = Some(now);
                }
                let secs = f["seconds"].as_i64().unwrap_or(0);
                fault_ends.push((what, now + secs * 1000));
                sim.fault(f);
            }
        }
        sim.advance(POLL);
        sim.settle().await;
        // A refund is held within one poll.
        refund_due.retain(|(tid, due)| {
            if *due > minute {
                return true;
            }
            let o = sim
                .order(*tid)
                .unwrap_or_else(|| panic!("refunded {tid} not stored"));
            assert!(
                o.holds.iter().any(|h| h.reason == HoldReason::Refund),
                "order {tid} not held one poll after its refund: {o:?}"
            );
            false
        });
        // Two polls after each fault ends, the lag is under two poll intervals again.
        let now = sim.sandbox_ms();
        for (what, end) in &fault_ends {
            if now >= end + 2 * POLL as i64 * 1000 && lag_checked.insert(*what) {
                let st = sim.intake.status();
                assert!(
                    st.lag_seconds < (2 * POLL) as f64,
                    "after {what}, intake lags {} s: {st:?}",
                    st.lag_seconds
                );
            }
        }
    }
    assert_eq!(lag_checked.len(), faults.len(), "every fault was checked");

    // Every paid order is stored, exactly once.
    let events = sim.events();
    let mut arrived: BTreeMap<u64, usize> = BTreeMap::new();
    for e in &events {
        if let Event::Arrived { tid, .. } = e {
            *arrived.entry(*tid).or_default() += 1;
        }
    }
    for (tid, _) in &tids {
        assert_eq!(
            arrived.get(&(*tid as u64)),
            Some(&1),
            "trade {tid} did not arrive exactly once"
        );
        let o = sim.order(*tid).unwrap();
        let t = sim.sb.sandbox().trade(*tid).unwrap();
        assert_eq!(
            o.modified_ms / 1000,
            secs_of_gmt8(t["modified"].as_str().unwrap()),
            "trade {tid}: the stored version is not the latest"
        );
        assert_eq!(o.taobao_status.as_str(), t["status"].as_str().unwrap());
    }
    assert_eq!(arrived.len(), tids.len(), "no other trade arrived");

    // No call at all while the ban ran (after the one that was told about it).
    let calls = sim.sb.sandbox().calls(None);
    let ban_from = ban_from.unwrap();
    let first_7 = calls
        .iter()
        .find(|c| c.code == 7 && ms_of(&c.at) >= ban_from)
        .map(|c| ms_of(&c.at))
        .expect("the ban was met");
    let during: Vec<_> = calls
        .iter()
        .filter(|c| {
            let at = ms_of(&c.at);
            at > first_7 && at < ban_from + 600_000
        })
        .collect();
    assert!(during.is_empty(), "calls during the ban: {during:?}");

    // No window over 30 minutes.
    for c in calls.iter().filter(|c| c.method == INCREMENT) {
        let s = secs_of_gmt8(&c.params["start_modified"]);
        let e = secs_of_gmt8(&c.params["end_modified"]);
        assert!(e - s <= 1800, "window of {} s: {c:?}", e - s);
    }
    // The faults really happened.
    for fault in ["outage", "http_500", "reset"] {
        assert!(
            calls.iter().any(|c| c.fault.as_deref() == Some(fault)),
            "no call met the {fault} fault"
        );
    }
    assert!(
        calls
            .iter()
            .any(|c| c.sub_code.as_deref() == Some("session-expired")),
        "the token expiry was met"
    );

    // Refunds ended where they should: withdrawn → free to go; refunded → cancelled, or put
    // back when picking had started.
    for (tid, _) in &tids {
        let o = sim.order(*tid).unwrap();
        match o.taobao_status.as_str() {
            "TRADE_CLOSED" => assert!(
                matches!(o.state, LocalState::Cancelled | LocalState::PutBack),
                "closed trade {tid} is {}",
                o.state
            ),
            "WAIT_SELLER_SEND_GOODS" => assert!(
                o.holds.is_empty(),
                "open trade {tid} still held: {:?}",
                o.holds
            ),
            other => panic!("trade {tid} is {other}"),
        }
    }
    let calls_per_trade = calls.iter().filter(|c| c.code == 0).count() as f64 / tids.len() as f64;
    eprintln!(
        "simulated day: {} paid orders, {} events, {} gateway calls ({calls_per_trade:.2} \
         successful per trade) in {:.1} s",
        tids.len(),
        events.len(),
        calls.len(),
        started.elapsed().as_secs_f64()
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_modified_while_its_window_is_paged_is_not_missed() {
    let sim = Sim::start(
        IntakeOptions {
            page_size: 10,
            ..opts()
        },
        true,
    )
    .await;
    sim.settle().await;
    // 45 trades in one second: a window no halving can split, read in 5 pages of 10.
    let tids: Vec<i64> = (0..45).map(|i| paid(&sim.sb, i, 1).0).collect();
    // Every page read is held a second, long enough to change a trade in between.
    sim.fault(json!({"kind": "slow", "delay_s": 1, "count": 50, "methods": [INCREMENT]}));
    let watcher = {
        let sb = sim.sb.sandbox().clone();
        let victim = tids[20];
        tokio::spawn(async move {
            loop {
                let last_page = sb
                    .calls(Some(INCREMENT))
                    .iter()
                    .any(|c| c.params.get("page_no").map(String::as_str) == Some("5"));
                if last_page {
                    // Page 5 (the oldest) is being read: move a trade of page 3.
                    sb.patch_trade(
                        victim,
                        serde_json::from_value(json!({"seller_memo": "moved"})).unwrap(),
                    )
                    .unwrap();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    sim.advance(POLL);
    tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("the last page was read")
        .unwrap();
    sim.settle().await;
    sim.sb.sandbox().clear_faults();
    sim.advance(POLL);
    sim.settle().await;
    for tid in &tids {
        assert!(sim.order(*tid).is_some(), "trade {tid} was missed");
    }
    // The pages of the dense second were read last to first.
    let pages: Vec<String> = sim
        .sb
        .sandbox()
        .calls(Some(INCREMENT))
        .iter()
        .filter(|c| !c.params.contains_key("use_has_next"))
        .filter_map(|c| c.params.get("page_no").cloned())
        .collect();
    assert!(
        pages.windows(5).any(|w| w == ["5", "4", "3", "2", "1"]),
        "pages read in order {pages:?}"
    );
    // The dense window is in the audit ring with its counts (DOMAIN.md §1 rule 5).
    let rows = sim
        .store
        .read(|r| wms_node::wms::events::read(r, None, None, 10_000))
        .unwrap();
    assert!(
        rows.iter().any(|(_, r)| matches!(
            r.event,
            Event::Window { inserted, unchanged, calls, .. }
                if inserted + unchanged >= 45 && calls > 45
        )),
        "no window row among {} audit rows",
        rows.len()
    );
    // And the moved trade's new version arrived with the next poll.
    let moved = sim.order(tids[20]).unwrap();
    let t = sim.sb.sandbox().trade(tids[20]).unwrap();
    assert_eq!(
        moved.modified_ms / 1000,
        secs_of_gmt8(t["modified"].as_str().unwrap())
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_sku_holds_its_order_and_importing_the_map_releases_it() {
    let sim = Sim::start(opts(), false).await;
    sim.settle().await;
    let (tid, _) = paid(&sim.sb, 1, 2);
    sim.advance(POLL);
    sim.settle().await;
    let o = sim.order(tid).expect("stored");
    assert_eq!(o.state, LocalState::New);
    assert_eq!(o.hold_reasons(), vec![HoldReason::UnmappedSku]);
    assert!(sim.alerts.is_active(AlertCode::UnmappedSku));
    // Fixing the map (here: `sku sync` from the shop's listings) releases it by itself.
    let csv = format!(
        "sku,barcode,name,on_hand,num_iid,sku_id\n{},6901,blue,,,\n",
        SKUS[1].1
    );
    let rows = wms_node::wms::sku::parse_skus(csv.as_bytes()).unwrap();
    let admin = wms_node::ops::orders::OrdersAdmin::new(
        sim.store.clone(),
        wms_node::wms::ShopId::main(),
        wms_node::wms::Rules::default(),
        sim.bus.clone(),
        sim.alerts.clone(),
    );
    let report = admin
        .import(wms_node::ops::orders::ImportRequest {
            skus: rows,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(report.orders_released, vec![tid as u64]);
    let o = sim.order(tid).unwrap();
    assert_eq!(o.state, LocalState::Released);
    assert!(!sim.alerts.is_active(AlertCode::UnmappedSku));
    // The release reaches subscribers (after the commit).
    let mut published = false;
    for _ in 0..500 {
        if sim.events().contains(&Event::Released { tid: tid as u64 }) {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(published, "the release was not published");
    sim.stop().await;
}

/// Waits (up to 20 s) for `check` to hold.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ship(sim: &Sim, tid: i64) {
    let out_sid = format!("YT{:013}", tid.rem_euclid(10_000_000_000_000));
    sim.outbox
        .enqueue_now(wms_node::taobao::outbox::TaobaoOp::Ship {
            tid,
            oids: Vec::new(),
            company_code: "YTO".into(),
            out_sid,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_order_s_shipment_is_cancelled_before_the_ship_scan_and_sent_with_a_fail_after() {
    let sim = Sim::start(opts(), true).await;
    sim.settle().await;
    let (early, _) = paid(&sim.sb, 0, 1);
    let (late, _) = paid(&sim.sb, 1, 1);
    sim.advance(POLL);
    sim.settle().await;
    // "Consign at label print": one parcel is labelled, the other went through the ship scan.
    sim.move_to(early, LocalState::Labelled).await.unwrap();
    sim.move_to(late, LocalState::HandedOver).await.unwrap();
    for tid in [early, late] {
        sim.sb.sandbox().refund(tid, Default::default()).unwrap();
    }
    sim.advance(POLL);
    sim.settle().await;
    for tid in [early, late] {
        assert_eq!(
            sim.order(tid).unwrap().hold_reasons(),
            vec![HoldReason::Refund]
        );
    }
    ship(&sim, early).await;
    ship(&sim, late).await;
    let settled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let s = sim.outbox.admin().stats().unwrap();
            if s.pending == 0 && s.in_flight == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if settled.is_err() {
        let page = sim.outbox.admin().list(&Default::default()).unwrap();
        let ops: Vec<_> = page
            .ops
            .iter()
            .map(|o| (o.summary.clone(), o.state, o.last_error.clone()))
            .collect();
        let calls: Vec<_> = sim
            .sb
            .sandbox()
            .calls(None)
            .into_iter()
            .filter(|c| !c.method.contains("increment"))
            .map(|c| (c.method, c.code, c.sub_code))
            .collect();
        panic!(
            "the outbox did not settle: {ops:?}\ncalls: {calls:?}\nstatus: {:?}",
            sim.outbox.status()
        );
    }
    let shipped: Vec<i64> = sim.sb.sandbox().shipments().iter().map(|s| s.tid).collect();
    assert_eq!(
        shipped,
        vec![late],
        "only the parcel that had left was consigned"
    );
    assert!(sim.alerts.is_active(AlertCode::PullParcel));
    assert!(sim.alerts.is_active(AlertCode::CourierInterception));
    assert_eq!(sim.order(early).unwrap().state, LocalState::Labelled);
    assert_eq!(sim.order(late).unwrap().state, LocalState::Consigned);
    // AliGenius: the labelled one was stopped (SUCCESS, queued with the hold); the handed
    // over one had gone (FAIL, queued when its refund arrived).
    until("two AliGenius reports", || {
        sim.sb.sandbox().feedback().len() == 2
    })
    .await;
    let fb = sim.sb.sandbox().feedback();
    let status_of = |tid: i64| fb.iter().find(|f| f.tid == tid).map(|f| f.status.clone());
    assert_eq!(status_of(early).as_deref(), Some("SUCCESS"));
    assert_eq!(status_of(late).as_deref(), Some("FAIL"));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sku_sync_maps_listings_by_their_outer_ids_and_releases_held_orders() {
    let sim = Sim::start(opts(), false).await;
    sim.settle().await;
    let (tid, _) = paid(&sim.sb, 2, 1);
    sim.advance(POLL);
    sim.settle().await;
    assert_eq!(
        sim.order(tid).unwrap().hold_reasons(),
        vec![HoldReason::UnmappedSku]
    );
    // The master knows the codes, not the listings; the sync maps them.
    let csv = format!(
        "sku,barcode,name,on_hand,num_iid,sku_id\n{},1,a,,,\n{},2,b,,,\n",
        SKUS[2].1, SKUS[3].1
    );
    let admin = wms_node::ops::orders::OrdersAdmin::new(
        sim.store.clone(),
        wms_node::wms::ShopId::main(),
        wms_node::wms::Rules::default(),
        sim.bus.clone(),
        sim.alerts.clone(),
    );
    admin
        .import(wms_node::ops::orders::ImportRequest {
            skus: wms_node::wms::sku::parse_skus(csv.as_bytes()).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    let admin = admin.with_sync(std::sync::Arc::new(wms_node::sync::skus::SkuSync {
        client: sim.client.clone(),
        store: sim.store.clone(),
        shop: wms_node::wms::ShopId::main(),
        rules: wms_node::wms::Rules::default(),
        bus: sim.bus.clone(),
        clock: sim.clock.clone(),
    }));
    let report = admin
        .run_sync(|done, total| seen.push((done, total)))
        .await
        .unwrap();
    assert_eq!((report.items, report.listings, report.mapped), (1, 4, 2));
    assert_eq!(report.unknown_code.len(), 2, "{report:?}");
    assert_eq!(seen.last(), Some(&(1, 1)), "progress reported");
    assert_eq!(sim.order(tid).unwrap().state, LocalState::Released);
    let listings: usize = admin
        .skus()
        .unwrap()
        .skus
        .iter()
        .map(|s| s.listings.len())
        .sum();
    assert_eq!(listings, 2);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_stops_intake_with_the_reauthorize_alert_and_nothing_else() {
    let sim = Sim::start_with(opts(), true, "a-refresh-token-taobao-never-issued").await;
    sim.settle().await;
    sim.fault(json!({"kind": "expire_tokens"}));
    sim.advance(POLL);
    sim.settle().await;
    let st = sim.intake.status();
    assert!(st.stopped.is_some(), "{st:?}");
    assert!(sim.alerts.is_active(AlertCode::Reauthorize));
    let report = sim.health.report();
    assert!(!report.is_healthy(), "{report:?}");
    assert!(
        report.checks[&CheckName::Intake]
            .message
            .contains("not authorised")
    );
    // The node keeps running: intake goes on trying each poll, without a call to the
    // gateway while no session is usable.
    let before = sim.sb.sandbox().calls(Some(INCREMENT)).len();
    sim.advance(POLL);
    sim.settle().await;
    sim.advance(POLL);
    sim.settle().await;
    assert_eq!(sim.sb.sandbox().calls(Some(INCREMENT)).len(), before);
    assert!(sim.intake.status().asleep_until.is_some());
    sim.stop().await;
}
