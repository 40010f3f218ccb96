//! Shipments against the Taobao sandbox over real HTTP, on a clock that moves with the
//! sandbox's: six simulated hours offline then exactly one shipment per parcel (split and
//! merged parcels with the right lines on the right waybills, answers lost on the way back);
//! a refund after the ship scan; B04 with another waybill; ship-by deadline alerts.
//!
//! `WMS_SIM_PARCELS` scales the offline test (default 60 plain orders besides the split and
//! merged ones).

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod intake_support;

use intake_support::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use wms_node::ops::alert::{AlertCode, Severity};
use wms_node::sync::deadlines::{DeadlineOptions, Deadlines};
use wms_node::wms::{HoldReason, LocalState};

const POLL: u64 = 60;
const SEND: &str = "taobao.logistics.offline.send";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hours_offline_then_exactly_one_shipment_per_parcel_with_the_right_lines() {
    let n: usize = std::env::var("WMS_SIM_PARCELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let sim = Sim::start_goods(
        minute_polls(),
        true,
        Goods {
            merge_orders: true,
            ..Goods::default()
        },
    )
    .await;
    let mut plain = Vec::new();
    for i in 0..n {
        plain.push(trade(&sim, &format!("OAID-{i}"), &[(i % 4, 1)]).0);
    }
    let (split, split_oids) = trade(&sim, "OAID-SPLIT", &[(0, 1), (1, 2), (2, 1)]);
    let (m1, m1_oids) = trade(&sim, "OAID-SAME", &[(3, 1)]);
    let (m2, m2_oids) = trade(&sim, "OAID-SAME", &[(0, 2), (1, 1)]);
    let mut all = plain.clone();
    all.extend([split, m1, m2]);
    sim.settle().await;
    wait_state(&sim, &all, LocalState::Released).await;

    // Labels are printed while the link is up: the merged package gets one waybill for both
    // trades; the split order gets one per parcel.
    let merged = sim.goods.waybill(m1 as u64, None, vec![]).await.unwrap();
    assert_eq!(merged.tids, [m1.to_string(), m2.to_string()]);
    let part1 = sim
        .goods
        .waybill(split as u64, None, vec![split_oids[0] as u64])
        .await
        .unwrap();
    let part2 = sim
        .goods
        .waybill(
            split as u64,
            None,
            vec![split_oids[1] as u64, split_oids[2] as u64],
        )
        .await
        .unwrap();
    assert_ne!(part1.waybill_code, part2.waybill_code);
    let ii_get_calls = sim.calls("cainiao.waybill.ii.get").len();
    assert_eq!(ii_get_calls, 3, "one request per package");

    // Six hours without a link: every parcel is shipped on the floor and queued.
    sim.fault(json!({"kind": "outage", "seconds": 6 * 3600}));
    // On the way back some answers are lost after Taobao applied the shipment. Armed now: the
    // outage, added first, takes every call until it ends, and the sandbox clock also runs in
    // real time, so the outage ends during the last hour below, while the node is already
    // retrying; armed after it, the node could send every shipment before this is in place.
    sim.fault(json!({"kind": "reset", "count": 3, "methods": [SEND]}));
    let mut numbers: BTreeMap<i64, String> = BTreeMap::new();
    for (i, tid) in plain.iter().enumerate() {
        let no = format!("YT{:013}", 5_000_000 + i);
        sim.goods.ship(ship(*tid, &no, &[])).await.unwrap();
        numbers.insert(*tid, no);
    }
    let s1 = sim
        .goods
        .ship(ship(split, &part1.waybill_code, &[split_oids[0]]))
        .await
        .unwrap();
    assert_eq!(s1.ops[0].oids, [split_oids[0] as u64]);
    let s2 = sim
        .goods
        .ship(ship(split, &part2.waybill_code, &split_oids[1..]))
        .await
        .unwrap();
    assert_eq!(s2.ops[0].oids, [split_oids[1] as u64, split_oids[2] as u64]);
    // Scanning either trade of the merged parcel ships both, with one number.
    let sm = sim
        .goods
        .ship(ship(m2, &merged.waybill_code, &[]))
        .await
        .unwrap();
    assert_eq!(
        sm.ops.iter().map(|o| o.tid).collect::<Vec<_>>(),
        [m1 as u64, m2 as u64]
    );
    let queued = sim.outbox.queued(0, 10_000).unwrap();
    let ships = queued.iter().filter(|(_, e, _)| e.kind == "ship").count();
    assert_eq!(ships, n + 4, "one op per trade and parcel, all queued");
    for t in &all {
        assert_eq!(sim.order(*t).unwrap().state, LocalState::HandedOver);
    }

    // The clock runs through the outage, an hour at a time; the node keeps trying.
    for _ in 0..6 {
        sim.advance(3600);
        sim.settle().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The answers lost on the way back: the node sends again and takes B04 with the same
    // number as done.
    sim.advance(60);
    sim.drained(Duration::from_secs(120)).await;
    sim.advance(POLL);
    sim.settle().await;

    let shipments = sim.sb.sandbox().shipments();
    let mut per_tid: BTreeMap<i64, Vec<&taobao_sandbox::ShipmentRecord>> = BTreeMap::new();
    for s in &shipments {
        per_tid.entry(s.tid).or_default().push(s);
    }
    for tid in &plain {
        let s = &per_tid[tid];
        assert_eq!(s.len(), 1, "trade {tid}: {s:?}");
        assert_eq!(s[0].out_sid, numbers[tid]);
        assert!(s[0].sub_tids.is_empty());
    }
    let sp = &per_tid[&split];
    assert_eq!(sp.len(), 2, "{sp:?}");
    assert_eq!(sp[0].out_sid, part1.waybill_code);
    assert_eq!(sp[0].sub_tids, [split_oids[0]]);
    assert_eq!(sp[1].out_sid, part2.waybill_code);
    assert_eq!(sp[1].sub_tids, split_oids[1..].to_vec());
    for (tid, oids) in [(m1, &m1_oids), (m2, &m2_oids)] {
        let s = &per_tid[&tid];
        assert_eq!(s.len(), 1, "trade {tid}: {s:?}");
        assert_eq!(s[0].out_sid, merged.waybill_code);
        let t = sim.sb.sandbox().trade(tid).unwrap();
        for (i, o) in t["orders"].as_array().unwrap().iter().enumerate() {
            assert_eq!(o["oid"].as_i64(), Some(oids[i]));
            assert_eq!(o["invoice_no"], merged.waybill_code.as_str());
        }
    }
    assert_eq!(
        shipments.len(),
        n + 4,
        "exactly one shipment per parcel and trade"
    );
    let resets = sim
        .sb
        .sandbox()
        .calls(Some(SEND))
        .iter()
        .filter(|c| c.fault.as_deref() == Some("reset"))
        .count();
    assert_eq!(resets, 3, "answers were lost");
    let cut = sim
        .sb
        .sandbox()
        .calls(Some(SEND))
        .iter()
        .filter(|c| c.fault.as_deref() == Some("outage"))
        .count();
    assert!(cut > 0, "the node tried during the outage");
    let b04 = sim
        .calls(SEND)
        .iter()
        .filter(|c| c.sub_code.as_deref().is_some_and(|s| s.ends_with(":B04")))
        .count();
    assert_eq!(b04, 3, "each lost answer was followed by a B04");
    assert!(!sim.alerts.is_active(AlertCode::ShippedOtherWaybill));
    assert!(!sim.alerts.is_active(AlertCode::ShippedClosedTrade));
    for t in &all {
        let st = sim.sb.sandbox().trade(*t).unwrap();
        assert_eq!(st["status"], "WAIT_BUYER_CONFIRM_GOODS", "trade {t}");
        assert_eq!(sim.order(*t).unwrap().state, LocalState::Consigned);
    }
    // The waybills Cainiao issued are all consigned (none left to cancel).
    assert!(
        sim.sb
            .sandbox()
            .waybills()
            .iter()
            .all(|w| w.consigned && !w.cancelled)
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_after_the_ship_scan_sends_the_shipment_reports_fail_and_alerts() {
    let sim = Sim::start(minute_polls(), true).await;
    let (tid, oids) = trade(&sim, "OAID-R", &[(0, 1)]);
    sim.settle().await;
    wait_state(&sim, &[tid], LocalState::Released).await;
    // Taobao cannot be told for now (shipments only: intake still runs).
    sim.fault(json!({"kind": "http_500", "seconds": 600, "methods": [SEND]}));
    sim.goods
        .ship(ship(tid, "YT1000000000077", &[]))
        .await
        .unwrap();
    // The buyer asks for a refund before the shipment reaches Taobao.
    sim.sb.sandbox().refund(tid, Default::default()).unwrap();
    sim.advance(POLL);
    sim.settle().await;
    let o = sim.order(tid).unwrap();
    assert!(
        o.holds.iter().any(|h| h.reason == HoldReason::Refund),
        "{o:?}"
    );
    assert_eq!(o.state, LocalState::HandedOver, "the parcel is gone");
    // The link returns: the shipment is sent anyway (the parcel left), Taobao hears FAIL, and
    // people are told to intercept it.
    sim.advance(600);
    sim.drained(Duration::from_secs(60)).await;
    let shipments = sim.sb.sandbox().shipments();
    assert_eq!(shipments.len(), 1);
    assert_eq!(shipments[0].out_sid, "YT1000000000077");
    let fb = sim.sb.sandbox().feedback();
    assert_eq!(fb.len(), 1, "{fb:?}");
    assert_eq!((fb[0].status.as_str(), fb[0].oid), ("FAIL", oids[0]));
    let alert = sim
        .alerts
        .active()
        .into_iter()
        .find(|a| a.code == AlertCode::CourierInterception)
        .expect("courier interception alert");
    assert_eq!(alert.severity, Severity::Critical);
    assert!(
        alert.message.starts_with(&format!("trade {tid}")),
        "{}",
        alert.message
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b04_with_another_waybill_on_the_trade_is_an_alert() {
    let sim = Sim::start(minute_polls(), true).await;
    let (tid, _) = trade(&sim, "OAID-B", &[(1, 1)]);
    sim.settle().await;
    wait_state(&sim, &[tid], LocalState::Released).await;
    // Someone ships it by hand in 千牛 with another number before the node's op goes.
    sim.client
        .logistics_offline_send(&wms_node::taobao::api::OfflineSend {
            tid,
            sub_tids: vec![],
            out_sid: "YT9999999999999".into(),
            company_code: "YTO".into(),
            feature: None,
        })
        .await
        .unwrap();
    sim.goods
        .ship(ship(tid, "YT1111111111111", &[]))
        .await
        .unwrap();
    sim.drained(Duration::from_secs(30)).await;
    let alert = sim
        .alerts
        .active()
        .into_iter()
        .find(|a| a.code == AlertCode::ShippedOtherWaybill)
        .expect("an alert for the other waybill");
    assert!(alert.message.starts_with(&format!("trade {tid}")));
    assert!(alert.message.contains("YT9999999999999") && alert.message.contains("YT1111111111111"));
    assert_eq!(sim.sb.sandbox().shipments().len(), 1, "no second shipment");
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_alert_at_four_hours_and_one_hour_and_when_the_link_is_down() {
    let sim = Sim::start(minute_polls(), true).await;
    let (tid, _) = trade(&sim, "OAID-D", &[(2, 1)]);
    let (other, _) = trade(&sim, "OAID-E", &[(3, 1)]);
    sim.settle().await;
    wait_state(&sim, &[tid, other], LocalState::Released).await;
    let by = sim.order(tid).unwrap().ship_by_ms.unwrap();
    let mut d = Deadlines::new(
        sim.store.clone(),
        sim.outbox.clone(),
        sim.alerts.clone(),
        sim.clock.clone(),
        DeadlineOptions::default(),
    );
    assert_eq!(d.check(), 0, "48 h to go");
    // 3 h 50 min before the deadline: a warning per order, once.
    let to = |sim: &Sim, left_s: i64| {
        let now = sim.clock.now().timestamp_millis();
        let step = (by - left_s * 1000 - now) / 1000;
        sim.advance(step.max(0) as u64);
    };
    to(&sim, 3 * 3600 + 50 * 60);
    assert_eq!(d.check(), 2);
    assert_eq!(d.check(), 0, "told once");
    // One alert per order.
    let per_order: Vec<_> = sim
        .alerts
        .active()
        .into_iter()
        .filter(|a| a.code == AlertCode::ShipDeadline)
        .collect();
    assert_eq!(per_order.len(), 2, "{per_order:?}");
    let a = sim
        .alerts
        .active()
        .into_iter()
        .find(|a| a.code == AlertCode::ShipDeadline)
        .unwrap();
    assert_eq!(a.severity, Severity::Warning);
    // One order ships (through the scan, but Taobao cannot be told); the other does not.
    sim.fault(json!({"kind": "http_500", "seconds": 7200, "methods": [SEND]}));
    sim.goods
        .ship(ship(other, "YT2000000000001", &[]))
        .await
        .unwrap();
    // The outbox finds the link down on its first attempt (however long that takes to come).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sim.outbox.status().link != wms_node::outbox::LinkStatus::Down {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never found the link down: {:?}",
            sim.outbox.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 50 min before: critical for the one not shipped; the shipped one waits for the link.
    to(&sim, 50 * 60);
    assert_eq!(d.check(), 2);
    let active = sim.alerts.active();
    // The shipped order's deadline alert is resolved; the other's is critical.
    let deadline: Vec<_> = active
        .iter()
        .filter(|a| a.code == AlertCode::ShipDeadline)
        .collect();
    assert_eq!(deadline.len(), 1, "{deadline:?}");
    let dl = deadline[0];
    assert_eq!(dl.severity, Severity::Critical);
    assert!(
        dl.message.starts_with(&format!("trade {tid}")),
        "{}",
        dl.message
    );
    let out = active
        .iter()
        .find(|a| a.code == AlertCode::DeadlineOutage)
        .expect("an alert for shipments waiting on the link");
    assert!(
        out.message.starts_with(&format!("trade {other}")),
        "{}",
        out.message
    );
    // Shipments go first when the link returns.
    sim.sb.sandbox().clear_faults();
    sim.drained(Duration::from_secs(30)).await;
    assert_eq!(sim.order(other).unwrap().state, LocalState::Consigned);
    d.check();
    assert!(!sim.alerts.is_active(AlertCode::DeadlineOutage));
    sim.stop().await;
}
