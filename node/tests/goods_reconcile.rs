//! Reconciliation against the Taobao sandbox over real HTTP: one test per check of DOMAIN.md
//! §11, each seeding the discrepancy it looks for (in the sandbox where it lives there) and
//! checking the check is clean before, finds exactly what was seeded, names it in its alert,
//! and (where the node can settle it) is clean again after.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intake_support;

use intake_support::*;
use serde_json::json;
use std::time::Duration;
use wms_node::ops::alert::{Alert, AlertCode};
use wms_node::sync::intake::IntakeOptions;
use wms_node::sync::reconcile::{CheckResult, CheckStatus, ReconcileOptions, Which};
use wms_node::wms::{self, LocalState, ShopId};

const POLL: u64 = 60;
const SEND: &str = "taobao.logistics.offline.send";
const INCREMENT: &str = "taobao.trades.sold.increment.get";

fn goods(reconcile: ReconcileOptions) -> Goods {
    Goods {
        reconcile,
        ..Goods::default()
    }
}

/// Runs check `n` alone.
async fn check(sim: &Sim, n: u8) -> CheckResult {
    let mut r = sim.reconciler.run(Which::One(n), &mut |_| {}).await;
    assert_eq!(r.checks.len(), 1);
    r.checks.remove(0)
}

fn clean(r: &CheckResult) {
    assert_eq!(r.status, CheckStatus::Clean, "{r:?}");
    assert!(r.findings.is_empty());
}

/// The findings' `(kind, tid)`.
fn found(r: &CheckResult) -> Vec<(String, Option<String>)> {
    assert_eq!(r.status, CheckStatus::Findings, "{r:?}");
    r.findings
        .iter()
        .map(|f| (f.kind.clone(), f.tid.clone()))
        .collect()
}

fn alert(sim: &Sim, code: AlertCode) -> Alert {
    sim.alerts
        .active()
        .into_iter()
        .find(|a| a.code == code)
        .unwrap_or_else(|| panic!("no {code:?} alert: {:?}", sim.alerts.active()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_1_finds_a_shipment_taobao_never_got() {
    let sim = Sim::start(minute_polls(), true).await;
    let (stuck, _) = trade(&sim, "OAID-1", &[(0, 1)]);
    let (fine, _) = trade(&sim, "OAID-2", &[(1, 1)]);
    sim.settle().await;
    wait_state(&sim, &[stuck, fine], LocalState::Released).await;
    sim.goods
        .ship(ship(fine, "YT1000000000001", &[]))
        .await
        .unwrap();
    sim.drained(Duration::from_secs(30)).await;
    // Taobao refuses shipments from now on (for two hours).
    sim.fault(json!({"kind": "http_500", "seconds": 7200, "methods": [SEND]}));
    sim.goods
        .ship(ship(stuck, "YT1000000000002", &[]))
        .await
        .unwrap();
    clean(&check(&sim, 1).await);
    // Past `stuck_after` (30 min): Taobao still shows it unshipped.
    sim.advance(1900);
    let r = check(&sim, 1).await;
    assert_eq!(
        found(&r),
        [("not_consigned".into(), Some(stuck.to_string()))]
    );
    assert!(r.findings[0].detail.contains("op #"), "{:?}", r.findings);
    assert!(
        alert(&sim, AlertCode::ShippedNotOnTaobao)
            .message
            .starts_with(&format!("trade {stuck}"))
    );
    // Taobao takes it: clean, and the alert clears.
    sim.sb.sandbox().clear_faults();
    sim.drained(Duration::from_secs(30)).await;
    clean(&check(&sim, 1).await);
    assert!(!sim.alerts.is_active(AlertCode::ShippedNotOnTaobao));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_2_finds_orders_closed_or_refunding_on_taobao_but_active_here() {
    let sim = Sim::start(minute_polls(), true).await;
    let (closed, _) = trade(&sim, "OAID-1", &[(0, 1)]);
    let (refunding, _) = trade(&sim, "OAID-2", &[(1, 1)]);
    let (fine, _) = trade(&sim, "OAID-3", &[(2, 1)]);
    sim.settle().await;
    wait_state(&sim, &[closed, refunding, fine], LocalState::Released).await;
    clean(&check(&sim, 2).await);
    // On Taobao, before intake's next pull: one trade is refunded in full, one has a refund
    // open.
    sim.sb.sandbox().close(closed).unwrap();
    sim.sb
        .sandbox()
        .refund(refunding, Default::default())
        .unwrap();
    let r = check(&sim, 2).await;
    let mut f = found(&r);
    f.sort();
    assert_eq!(
        f,
        [
            ("closed_on_taobao".into(), Some(closed.to_string())),
            ("refund_open".into(), Some(refunding.to_string())),
        ]
    );
    assert!(
        alert(&sim, AlertCode::ClosedButActive)
            .message
            .contains("and 1 more")
    );
    // Intake's next pull stops both: nothing active is closed any more.
    sim.advance(POLL);
    sim.settle().await;
    let c = sim.order(closed).unwrap();
    assert!(c.is_held() || c.state == LocalState::Cancelled, "{c:?}");
    assert!(sim.order(refunding).unwrap().is_held());
    clean(&check(&sim, 2).await);
    assert!(!sim.alerts.is_active(AlertCode::ClosedButActive));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_3_finds_a_trade_intake_passed_without_storing() {
    // Intake is set up for one trade type only; Taobao's default set has more.
    let sim = Sim::start(
        IntakeOptions {
            trade_types: Some("guarantee_trade".into()),
            ..minute_polls()
        },
        true,
    )
    .await;
    let (stored, _) = trade(&sim, "OAID-1", &[(0, 1)]);
    let cod = sim
        .sb
        .sandbox()
        .create_trade(taobao_sandbox::NewTrade {
            trade_type: Some("cod".into()),
            orders: vec![taobao_sandbox::NewOrder {
                num_iid: ITEM,
                sku_id: Some(SKUS[1].0),
                num: 1,
            }],
            ..taobao_sandbox::NewTrade::default()
        })
        .unwrap()
        .tid;
    // Not yet passed by intake: not missing.
    clean(&check(&sim, 3).await);
    sim.settle().await;
    wait_state(&sim, &[stored], LocalState::Released).await;
    sim.advance(POLL);
    sim.settle().await;
    assert!(sim.order(cod).is_none());
    let r = check(&sim, 3).await;
    assert_eq!(found(&r), [("missing".into(), Some(cod.to_string()))]);
    assert!(r.findings[0].detail.contains("trade_types"));
    assert!(
        alert(&sim, AlertCode::MissingOrder)
            .message
            .starts_with(&format!("trade {cod}"))
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_4_finds_orders_near_or_past_their_deadline_and_not_packed() {
    let sim = Sim::start(minute_polls(), true).await;
    let (late, _) = trade(&sim, "OAID-1", &[(0, 1)]);
    let (packed, _) = trade(&sim, "OAID-2", &[(1, 1)]);
    sim.settle().await;
    wait_state(&sim, &[late, packed], LocalState::Released).await;
    for s in [
        LocalState::Picking,
        LocalState::Picked,
        LocalState::Verified,
        LocalState::Packed,
    ] {
        sim.move_to(packed, s).await.unwrap();
    }
    clean(&check(&sim, 4).await);
    let by = sim.order(late).unwrap().ship_by_ms.unwrap();
    // Three hours before the deadline (the window is four).
    let now = sim.clock.now().timestamp_millis();
    sim.advance(((by - 3 * 3600 * 1000 - now) / 1000) as u64);
    let r = check(&sim, 4).await;
    assert_eq!(found(&r), [("deadline".into(), Some(late.to_string()))]);
    assert!(
        alert(&sim, AlertCode::ShipDeadline)
            .message
            .starts_with(&format!("trade {late}"))
    );
    // Past it.
    sim.advance(4 * 3600);
    let r = check(&sim, 4).await;
    assert_eq!(found(&r), [("overdue".into(), Some(late.to_string()))]);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_5_finds_a_hand_edit_of_stock_and_does_not_run_while_intake_lags() {
    let sim = Sim::start(minute_polls(), false).await;
    let listings = catalogue(&sim, 2, 2, 20).await;
    sim.current().await;
    clean(&check(&sim, 5).await);
    // Someone edits one SKU's stock in 千牛.
    let (num_iid, sku_id, code) = &listings[3];
    sim.sb
        .sandbox()
        .set_quantity(*num_iid, Some(*sku_id), 7)
        .unwrap();
    // With no intake beside it (`wms-node reconcile` while the node is stopped) the
    // difference cannot get its second look: not run, with the reason, without waiting.
    let offline = sim.reconciler.clone().without_intake();
    let mut report = tokio::time::timeout(
        Duration::from_secs(20),
        offline.run(Which::One(5), &mut |_| {}),
    )
    .await
    .expect("no wait without intake");
    let r = report.checks.remove(0);
    assert_eq!(r.status, CheckStatus::NotRun, "{r:?}");
    assert!(
        r.reason
            .as_deref()
            .is_some_and(|t| t.contains("1 listing differs") && t.contains("node stopped")),
        "{r:?}"
    );
    // A difference is looked at again once intake has passed the reading: the next poll.
    let r = check_across_a_poll(&sim, 1).await;
    assert_eq!(r.status, CheckStatus::Findings, "{r:?}");
    assert_eq!(r.findings.len(), 1, "{r:?}");
    assert_eq!(
        (r.findings[0].kind.as_str(), r.findings[0].sku.as_deref()),
        ("drift", Some(code.as_str()))
    );
    assert!(
        r.findings[0].detail.contains("Taobao showed 7 at ")
            && r.findings[0].detail.contains("the warehouse offered 20"),
        "{}",
        r.findings[0].detail
    );
    assert!(
        alert(&sim, AlertCode::StockDrift)
            .message
            .starts_with(&format!("SKU {code}"))
    );
    // `stock push` puts it right: it reads the shop's figure, and once the next poll has
    // passed that reading the difference goes.
    sim.goods.push(code, false).await.unwrap();
    sim.drained(Duration::from_secs(30)).await;
    sim.advance(POLL);
    sim.settle().await;
    sim.drained(Duration::from_secs(30)).await;
    clean(&check(&sim, 5).await);
    assert!(!sim.alerts.is_active(AlertCode::StockDrift));
    // While intake lags the figures cannot be compared: not run, with the reason, exit 1.
    sim.fault(json!({"kind": "http_500", "seconds": 3 * 3600, "methods": [INCREMENT]}));
    sim.advance(600);
    sim.settle().await;
    let report = sim.reconciler.run(Which::One(5), &mut |_| {}).await;
    assert_eq!(report.checks[0].status, CheckStatus::NotRun);
    assert!(
        report.checks[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("order intake lags")),
        "{report:?}"
    );
    assert_eq!(report.exit_code(), 1);
    assert!(sim.alerts.is_active(AlertCode::ReconcileNotRun));
    sim.stop().await;
}

/// The readings check 5 has noted for its second look (it notes them once it has read the
/// shop, before it waits for intake to pass them).
fn readings_noted(sim: &Sim) -> usize {
    sim.store
        .read(|r| {
            let Some(t) = wms::tables::read_table(r, wms::tables::LISTING_CHECK)? else {
                return Ok(0);
            };
            let noted: Vec<wms::stock::Anchor> =
                wms::tables::scan_named(&t, wms::tables::LISTING_CHECK, ShopId::MAIN)?;
            Ok(noted.len())
        })
        .unwrap()
}

/// Waits until a check 5 running beside the test has read the shop and noted `n` readings:
/// only then may the test's clock (and intake) move past them.
async fn until_noted(sim: &Sim, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while readings_noted(sim) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "check 5 did not note {n} readings in time ({} noted)",
            readings_noted(sim)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs check 5 while intake polls once more (the check waits for intake to pass its
/// readings of listings that differ); `differ`: how many listings it finds different.
async fn check_across_a_poll(sim: &Sim, differ: usize) -> CheckResult {
    let rec = sim.reconciler.clone();
    let run = tokio::spawn(async move { rec.run(Which::One(5), &mut |_| {}).await });
    // Let it read the shop first.
    until_noted(sim, differ).await;
    sim.advance(POLL);
    sim.settle().await;
    let mut r = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("check 5 waits for intake no longer than a poll")
        .unwrap();
    r.checks.remove(0)
}

/// DOMAIN.md §11 check 5 against a busy shop: the platform's figure counts sales intake has
/// not pulled yet, so a first look differs from the ledger. Once intake has passed the
/// reading the sales are in the ledger (those before the reading) or counted as after it: no
/// drift is reported, and a real edit made at the same time still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_5_does_not_report_sales_intake_has_not_pulled_yet_as_drift() {
    let sim = Sim::start(minute_polls(), false).await;
    let listings = catalogue(&sim, 2, 1, 20).await;
    sim.current().await;
    clean(&check(&sim, 5).await);
    // Buyers pay between two polls: Taobao shows 17 and 19, the ledger still 20 and 20.
    let (a_iid, a_sku, _) = &listings[0];
    let (b_iid, b_sku, b_code) = &listings[1];
    buy(&sim, *a_iid, *a_sku, 3).await;
    buy(&sim, *b_iid, *b_sku, 1).await;
    // … and the second listing is also edited by hand in 千牛: 19 → 25.
    admin(
        &sim,
        &format!("items/{b_iid}/quantity"),
        json!({"sku_id": b_sku, "quantity": 25}),
    )
    .await;
    // Another buyer pays while the check waits for intake: after its readings.
    let rec = sim.reconciler.clone();
    let run = tokio::spawn(async move { rec.run(Which::One(5), &mut |_| {}).await });
    // Both listings differ at its first look.
    until_noted(&sim, 2).await;
    sim.advance(5);
    buy(&sim, *a_iid, *a_sku, 1).await;
    sim.advance(POLL);
    sim.settle().await;
    let mut report = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("check 5 waits for intake no longer than a poll")
        .unwrap();
    let r = report.checks.remove(0);
    // The sales are no drift; the hand edit (6 units more than the ledger offers) is.
    assert_eq!(found(&r), vec![("drift".to_owned(), None)], "{r:?}");
    assert_eq!(r.findings[0].sku.as_deref(), Some(b_code.as_str()));
    assert!(
        r.findings[0].detail.contains("Taobao showed 25 at ")
            && r.findings[0].detail.contains("the warehouse offered 19"),
        "{}",
        r.findings[0].detail
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_6_finds_a_waybill_issued_and_never_shipped() {
    let sim = Sim::start_goods(
        minute_polls(),
        true,
        goods(ReconcileOptions {
            unused_waybill_after: Duration::from_secs(3600),
            ..ReconcileOptions::default()
        }),
    )
    .await;
    let (unused, _) = trade(&sim, "OAID-1", &[(0, 1)]);
    let (used, _) = trade(&sim, "OAID-2", &[(1, 1)]);
    sim.settle().await;
    wait_state(&sim, &[unused, used], LocalState::Released).await;
    let w1 = sim
        .goods
        .waybill(unused as u64, None, vec![])
        .await
        .unwrap();
    let w2 = sim.goods.waybill(used as u64, None, vec![]).await.unwrap();
    sim.goods
        .ship(ship(used, &w2.waybill_code, &[]))
        .await
        .unwrap();
    sim.drained(Duration::from_secs(30)).await;
    clean(&check(&sim, 6).await);
    sim.advance(3700);
    sim.settle().await;
    let r = check(&sim, 6).await;
    assert_eq!(
        found(&r),
        [("unused_waybill".into(), Some(unused.to_string()))]
    );
    assert!(r.findings[0].detail.contains(&w1.waybill_code));
    assert!(
        alert(&sim, AlertCode::UnusedWaybill)
            .message
            .starts_with(&format!("trade {unused}"))
    );
    // Voided (and so cancelled with Cainiao): nothing left unused.
    sim.goods
        .void(unused as u64, None, "parcel not sent")
        .await
        .unwrap();
    sim.drained(Duration::from_secs(30)).await;
    clean(&check(&sim, 6).await);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_7_finds_an_op_stuck_in_retry() {
    let sim = Sim::start_goods(
        minute_polls(),
        true,
        goods(ReconcileOptions {
            stuck_after: Duration::from_secs(1),
            ..ReconcileOptions::default()
        }),
    )
    .await;
    let (tid, _) = trade(&sim, "OAID-1", &[(0, 1)]);
    sim.settle().await;
    wait_state(&sim, &[tid], LocalState::Released).await;
    clean(&check(&sim, 7).await);
    sim.fault(json!({"kind": "http_500", "seconds": 7200, "methods": [SEND]}));
    sim.goods
        .ship(ship(tid, "YT1000000000003", &[]))
        .await
        .unwrap();
    // Three failed attempts over more than `stuck_after`.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = check(&sim, 7).await;
        if r.status == CheckStatus::Findings || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(found(&r), [("stuck_op".into(), Some(tid.to_string()))]);
    assert!(r.findings[0].detail.contains("HTTP 500") || r.findings[0].detail.contains("500"));
    assert!(
        alert(&sim, AlertCode::StuckOps)
            .message
            .starts_with(&format!("trade {tid}"))
    );
    sim.sb.sandbox().clear_faults();
    sim.drained(Duration::from_secs(30)).await;
    clean(&check(&sim, 7).await);
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_8_finds_the_outbox_at_its_cap() {
    let sim = Sim::start_goods(
        minute_polls(),
        true,
        Goods {
            outbox_max_bytes: 2048,
            ..Goods::default()
        },
    )
    .await;
    let tids: Vec<i64> = (0..16)
        .map(|i| trade(&sim, &format!("OAID-{i}"), &[(i % 4, 1)]).0)
        .collect();
    sim.settle().await;
    wait_state(&sim, &tids, LocalState::Released).await;
    clean(&check(&sim, 8).await);
    // The link is down for hours; the floor ships on.
    sim.fault(json!({"kind": "outage", "seconds": 6 * 3600}));
    for (i, t) in tids.iter().enumerate() {
        sim.goods
            .ship(ship(*t, &format!("YT{:013}", 7_000_000 + i), &[]))
            .await
            .unwrap();
    }
    let r = check(&sim, 8).await;
    let f = found(&r);
    assert_eq!(f.len(), 1, "{r:?}");
    assert!(f[0].0 == "cap_reached" || f[0].0 == "cap_near", "{r:?}");
    assert!(sim.alerts.is_active(AlertCode::StoreProblem));
    // The link returns and the backlog drains: clean.
    sim.sb.sandbox().clear_faults();
    sim.drained(Duration::from_secs(60)).await;
    clean(&check(&sim, 8).await);
    assert!(!sim.alerts.is_active(AlertCode::StoreProblem));
    sim.stop().await;
}
