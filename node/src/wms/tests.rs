//! The warehouse's rules, over a real store file, without any I/O of their own.

use super::counts::Counts;
use super::sku::{parse_bundles, parse_skus};
use super::*;
use crate::alert::Alerts;
use crate::store::StoreOptions;
use crate::taobao::types::Trade;
use chrono::{DateTime, Utc};
use serde_json::json;

struct T {
    store: Store,
    _dir: tempfile::TempDir,
}

fn store() -> T {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(StoreOptions::new(dir.path().join("s.redb")), Alerts::new())
        .unwrap_or_else(|e| panic!("{e}"));
    T { store, _dir: dir }
}

fn now() -> DateTime<Utc> {
    crate::taobao::time::parse("2026-12-01 10:00:00").unwrap_or_default()
}

const TID: u64 = 2_701_234_567_890_000_001;

/// A trade as `trade.fullinfo.get` returns it, `modified` minutes after 09:00.
fn trade(status: &str, minute: u32, lines: serde_json::Value) -> Trade {
    let v = json!({
        "tid": TID, "status": status, "type": "fixed",
        "created": "2026-12-01 08:59:00", "pay_time": "2026-12-01 09:00:00",
        "modified": format!("2026-12-01 09:{minute:02}:00"),
        "receiver_name": "张三丰", "receiver_state": "浙江省", "receiver_city": "杭州市",
        "receiver_district": "余杭区", "receiver_address": "文一西路969号",
        "receiver_mobile": "13912345678", "receiver_phone": "0571-88888888",
        "oaid": "OAID-1",
        "orders": lines,
    });
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

fn line(oid: u64, outer: &str, status: &str, refund: &str) -> serde_json::Value {
    json!({"oid": oid, "num_iid": 600000000001_u64, "sku_id": format!("{}", oid % 100),
           "outer_sku_id": outer, "num": 2, "status": status, "refund_status": refund,
           "refund_id": format!("{}", 9000 + oid % 100)})
}

fn one_line(status: &str, refund: &str) -> serde_json::Value {
    json!([line(TID + 1, "RED-M", status, refund)])
}

const SKUS: &str = "sku,barcode,name,on_hand,num_iid,sku_id\n\
                    RED-M,6900000000011,T恤 红 M,40,,\n\
                    BLK-M,6900000000013,T恤 黑 M,30,,\n";

async fn import(t: &T, text: &str, bundles: &str) -> sku::ImportReport {
    let rows = parse_skus(text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    let b = if bundles.is_empty() {
        Vec::new()
    } else {
        parse_bundles(bundles.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"))
    };
    write(&t.store, move |txn| {
        let mut w = Wms::new(txn, &ShopId::main(), now());
        let r = w.import_skus(&rows, &b, false, &Rules::default())?;
        w.finish()?;
        Ok(r)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn apply(t: &T, tr: Trade, rules: Rules) -> (Applied, Vec<Event>) {
    write(&t.store, move |txn| {
        let mut w = Wms::new(txn, &ShopId::main(), now());
        let a = w.apply_trade(&tr, &rules)?;
        Ok((a, w.finish()?))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn op<R: Send + 'static>(
    t: &T,
    f: impl FnMut(&mut Wms<'_>) -> Result<R, WmsError> + Send + 'static,
) -> Result<(R, Vec<Event>), WmsError> {
    let mut f = f;
    write(&t.store, move |txn| {
        let mut w = Wms::new(txn, &ShopId::main(), now());
        let r = f(&mut w)?;
        Ok((r, w.finish()?))
    })
    .await
}

fn order(t: &T) -> OrderRecord {
    t.store
        .read(|r| orders::read_order(r, &ShopId::main(), TID))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("order {TID} not stored"))
}

fn reasons(o: &OrderRecord) -> Vec<&'static str> {
    o.hold_reasons().iter().map(|r| r.as_str()).collect()
}

#[tokio::test]
async fn a_paid_mapped_order_is_released_at_once() {
    let t = store();
    import(&t, SKUS, "").await;
    let (a, events) = apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            1,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    assert_eq!(a.change, Change::Inserted);
    let o = order(&t);
    assert_eq!(o.state, LocalState::Released);
    assert!(o.holds.is_empty());
    assert_eq!(o.lines[0].mapping, Mapping::Sku("RED-M".into()));
    assert!(events.contains(&Event::Released { tid: TID }));
    assert!(events.contains(&Event::Arrived {
        tid: TID,
        state: LocalState::Released
    }));
    // ship-by: pay time + 48 h by default.
    assert_eq!(
        view::OrderView::of(&o).ship_by.as_deref(),
        Some("2026-12-03T09:00:00+08:00")
    );
}

#[tokio::test]
async fn an_unmapped_line_holds_the_order_and_importing_the_map_releases_it() {
    let t = store();
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            1,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    let o = order(&t);
    assert_eq!(
        (o.state, reasons(&o)),
        (LocalState::New, vec!["unmapped_sku"])
    );
    let r = import(&t, SKUS, "").await;
    assert_eq!(r.orders_released, vec![TID]);
    let o = order(&t);
    assert_eq!(o.state, LocalState::Released);
    assert!(o.holds.is_empty());
}

#[tokio::test]
async fn an_item_code_on_a_multi_sku_item_is_ambiguous_until_the_listing_is_mapped() {
    let t = store();
    import(
        &t,
        "sku,barcode,name,on_hand,num_iid,sku_id\nTSHIRT,690,T恤,,,\nRED-M,691,红 M,,,\n",
        "",
    )
    .await;
    let tr = trade(
        "WAIT_SELLER_SEND_GOODS",
        1,
        json!([{"oid": TID + 1, "num_iid": 600000000001_u64, "sku_id": "11", "outer_iid": "TSHIRT", "num": 1}]),
    );
    apply(&t, tr, Rules::default()).await;
    assert_eq!(reasons(&order(&t)), vec!["ambiguous_sku"]);
    let r = import(
        &t,
        "sku,barcode,name,on_hand,num_iid,sku_id\nRED-M,691,红 M,,600000000001,11\n",
        "",
    )
    .await;
    assert_eq!(r.orders_released, vec![TID]);
    assert_eq!(order(&t).lines[0].mapping, Mapping::Sku("RED-M".into()));
}

#[tokio::test]
async fn a_bundle_line_explodes_into_its_components() {
    let t = store();
    import(
        &t,
        SKUS,
        "bundle,component,qty\nGIFT-SET,RED-M,1\nGIFT-SET,BLK-M,2\n",
    )
    .await;
    let tr = trade(
        "WAIT_SELLER_SEND_GOODS",
        1,
        json!([line(
            TID + 1,
            "GIFT-SET",
            "WAIT_SELLER_SEND_GOODS",
            "NO_REFUND"
        )]),
    );
    apply(&t, tr, Rules::default()).await;
    let o = order(&t);
    assert_eq!(o.state, LocalState::Released);
    let v = view::OrderView::of(&o);
    assert_eq!(v.lines[0].sku.as_deref(), Some("GIFT-SET"));
    assert_eq!(
        v.lines[0]
            .components
            .iter()
            .map(|c| (c.sku.as_str(), c.qty))
            .collect::<Vec<_>>(),
        [("RED-M", 2), ("BLK-M", 4)]
    );
}

#[tokio::test]
async fn a_refund_holds_with_feedback_and_its_closing_releases_but_not_the_operators_hold() {
    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            1,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    op(&t, |w| w.hold(TID, "buyer called: wait"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, events) = apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            2,
            one_line("WAIT_SELLER_SEND_GOODS", "WAIT_SELLER_AGREE"),
        ),
        Rules::default(),
    )
    .await;
    assert_eq!(a.change, Change::Updated);
    assert_eq!(
        a.feedback,
        vec![Feedback {
            tid: TID,
            oid: TID + 1,
            refund_id: 9002,
            stopped: true
        }]
    );
    assert!(events.contains(&Event::Held {
        tid: TID,
        reason: HoldReason::Refund,
        state: LocalState::Released
    }));
    assert_eq!(reasons(&order(&t)), vec!["refund", "operator"]);
    // The same refund seen again does not report twice.
    let (a, _) = apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            3,
            one_line("WAIT_SELLER_SEND_GOODS", "WAIT_SELLER_AGREE"),
        ),
        Rules::default(),
    )
    .await;
    assert!(a.feedback.is_empty());
    // The buyer withdraws: the refund hold goes, the operator's stays.
    let (_, events) = apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            4,
            one_line("WAIT_SELLER_SEND_GOODS", "CLOSED"),
        ),
        Rules::default(),
    )
    .await;
    assert!(events.contains(&Event::Unheld {
        tid: TID,
        reason: HoldReason::Refund
    }));
    let o = order(&t);
    assert_eq!(reasons(&o), vec!["operator"]);
    let v = view::OrderView::of(&o);
    assert_eq!(v.holds[0].reason, "buyer called: wait");
    assert_eq!(v.holds[0].source, "operator");
    // A refund hold cannot be released by hand; the operator's can.
    let (released, _) = op(&t, |w| w.release(TID))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(released.1, vec![HoldReason::Operator]);
    assert!(order(&t).holds.is_empty());
    assert!(matches!(
        op(&t, |w| w.release(TID)).await,
        Err(WmsError::Refused(_))
    ));
}

#[tokio::test]
async fn an_older_version_never_overwrites_a_newer_one() {
    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            5,
            one_line("WAIT_SELLER_SEND_GOODS", "WAIT_SELLER_AGREE"),
        ),
        Rules::default(),
    )
    .await;
    let (a, events) = apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            4,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    assert_eq!(a.change, Change::Unchanged);
    assert!(events.is_empty());
    assert_eq!(reasons(&order(&t)), vec!["refund"]);
}

#[tokio::test]
async fn a_close_cancels_before_picking_and_puts_back_after() {
    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            1,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    op(&t, |w| w.move_to(TID, LocalState::Picking))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    apply(
        &t,
        trade("TRADE_CLOSED", 2, one_line("TRADE_CLOSED", "SUCCESS")),
        Rules::default(),
    )
    .await;
    let o = order(&t);
    assert_eq!(
        (o.state, reasons(&o)),
        (LocalState::PutBack, vec!["trade_closed"])
    );
    // The floor may not move it on, only finish the put-back.
    assert!(
        op(&t, |w| w.move_to(TID, LocalState::Picked))
            .await
            .is_err()
    );

    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            1,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    apply(
        &t,
        trade("TRADE_CLOSED", 2, one_line("TRADE_CLOSED", "SUCCESS")),
        Rules::default(),
    )
    .await;
    let o = order(&t);
    assert_eq!((o.state, o.holds.len()), (LocalState::Cancelled, 0));
}

#[tokio::test]
async fn a_close_after_handover_asks_for_interception_and_the_shipment_goes_with_a_fail_report() {
    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            1,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    op(&t, |w| w.move_to(TID, LocalState::HandedOver))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (a, _) = apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            2,
            one_line("WAIT_SELLER_SEND_GOODS", "WAIT_SELLER_AGREE"),
        ),
        Rules::default(),
    )
    .await;
    // Already gone: the report says FAIL at once.
    assert_eq!(a.feedback.len(), 1);
    assert!(!a.feedback[0].stopped);
    let (check, events) = op(&t, |w| Ok(w.consign_check(TID, &[])?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(check, ConsignCheck::Intercept { ref feedback, .. } if feedback.is_empty()),
        "{check:?}"
    );
    assert!(events.contains(&Event::InterceptionNeeded { tid: TID }));
    op(&t, |w| Ok(w.consigned(TID, &[])?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(order(&t).state, LocalState::Consigned);
}

#[tokio::test]
async fn a_held_parcel_not_yet_through_the_ship_scan_is_pulled() {
    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            1,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    op(&t, |w| w.move_to(TID, LocalState::Labelled))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (check, _) = op(&t, |w| Ok(w.consign_check(TID, &[])?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check, ConsignCheck::Clear);
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            2,
            one_line("WAIT_SELLER_SEND_GOODS", "WAIT_SELLER_AGREE"),
        ),
        Rules::default(),
    )
    .await;
    let (check, events) = op(&t, |w| Ok(w.consign_check(TID, &[])?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        check,
        ConsignCheck::Pull {
            reasons: vec![HoldReason::Refund]
        }
    );
    assert!(events.contains(&Event::ShipmentCancelled { tid: TID }));
    let (check, _) = op(&t, |w| Ok(w.consign_check(TID + 99, &[])?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check, ConsignCheck::Untracked);
}

#[tokio::test]
async fn closed_by_taobao_is_never_released_and_forbidden_or_presale_waits() {
    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade(
            "TRADE_CLOSED_BY_TAOBAO",
            1,
            one_line("TRADE_CLOSED_BY_TAOBAO", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    assert_eq!(order(&t).state, LocalState::Cancelled);
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            2,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    assert_eq!(
        order(&t).state,
        LocalState::Cancelled,
        "a cancelled order is never revived"
    );

    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade(
            "PAID_FORBID_CONSIGN",
            1,
            one_line("PAID_FORBID_CONSIGN", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    let o = order(&t);
    assert_eq!(
        (o.state, reasons(&o)),
        (LocalState::New, vec!["paid_forbid_consign"])
    );
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            2,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    assert_eq!(order(&t).state, LocalState::Released);

    let t = store();
    import(&t, SKUS, "").await;
    let mut tr = trade(
        "WAIT_SELLER_SEND_GOODS",
        1,
        one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
    );
    tr.step_trade_status = Some("FRONT_PAID_FINAL_NOPAID".into());
    apply(&t, tr, Rules::default()).await;
    assert_eq!(reasons(&order(&t)), vec!["presale_unpaid"]);
    let mut tr = trade(
        "WAIT_SELLER_SEND_GOODS",
        2,
        one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
    );
    tr.step_trade_status = Some("FRONT_PAID_FINAL_PAID".into());
    apply(&t, tr, Rules::default()).await;
    assert_eq!(order(&t).state, LocalState::Released);

    // Unpaid: stored, never released, no holds.
    let t = store();
    apply(
        &t,
        trade("WAIT_BUYER_PAY", 1, one_line("WAIT_BUYER_PAY", "NO_REFUND")),
        Rules::default(),
    )
    .await;
    let o = order(&t);
    assert_eq!((o.state, o.holds.len()), (LocalState::New, 0));
}

#[tokio::test]
async fn a_partial_refund_waits_for_a_decision_unless_partial_shipment_is_on() {
    let lines = json!([
        line(TID + 1, "RED-M", "TRADE_CLOSED", "SUCCESS"),
        line(TID + 2, "BLK-M", "WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
    ]);
    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade("WAIT_SELLER_SEND_GOODS", 1, lines.clone()),
        Rules::default(),
    )
    .await;
    assert_eq!(reasons(&order(&t)), vec!["partial_refund"]);
    op(&t, |w| w.release(TID))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(order(&t).state, LocalState::Released);
    // A later change does not bring the decision back.
    apply(
        &t,
        trade("WAIT_SELLER_SEND_GOODS", 2, lines.clone()),
        Rules::default(),
    )
    .await;
    assert!(order(&t).holds.is_empty());

    let t = store();
    import(&t, SKUS, "").await;
    let rules = Rules {
        partial_shipment: true,
        ..Rules::default()
    };
    apply(&t, trade("WAIT_SELLER_SEND_GOODS", 1, lines), rules).await;
    assert_eq!(order(&t).state, LocalState::Released);
}

#[tokio::test]
async fn a_flagged_order_waits_for_review_until_released_or_unflagged() {
    let t = store();
    import(&t, SKUS, "").await;
    let rules = Rules {
        review_flags: vec![1],
        review_memo_words: vec!["hold".into()],
        ..Rules::default()
    };
    let mut tr = trade(
        "WAIT_SELLER_SEND_GOODS",
        1,
        one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
    );
    tr.seller_memo = Some(crate::taobao::types::FreeText(
        "please HOLD: call 13900001111".into(),
    ));
    apply(&t, tr, rules.clone()).await;
    let o = order(&t);
    assert_eq!(reasons(&o), vec!["review"]);
    assert_eq!(o.holds[0].detail, "memo:hold");
    op(&t, |w| w.release(TID))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(order(&t).state, LocalState::Released);
    let mut tr = trade(
        "WAIT_SELLER_SEND_GOODS",
        2,
        one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
    );
    tr.seller_memo = Some(crate::taobao::types::FreeText(
        "please HOLD: call 13900001111".into(),
    ));
    apply(&t, tr, rules.clone()).await;
    assert!(
        order(&t).holds.is_empty(),
        "the same review released stays released"
    );
    let mut tr = trade(
        "WAIT_SELLER_SEND_GOODS",
        3,
        one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
    );
    tr.seller_flag = Some(1);
    apply(&t, tr, rules).await;
    assert_eq!(
        reasons(&order(&t)),
        vec!["review"],
        "a new flag holds again"
    );
}

#[tokio::test]
async fn counters_follow_every_change() {
    let t = store();
    import(&t, SKUS, "").await;
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            1,
            one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
        ),
        Rules::default(),
    )
    .await;
    apply(
        &t,
        trade(
            "WAIT_SELLER_SEND_GOODS",
            2,
            one_line("WAIT_SELLER_SEND_GOODS", "WAIT_SELLER_AGREE"),
        ),
        Rules::default(),
    )
    .await;
    let c: Counts = t
        .store
        .read(|r| view::counts(r, &ShopId::main()))
        .unwrap_or_default();
    assert_eq!(c.states.get("released"), Some(&1));
    assert_eq!(c.holds.get("refund"), Some(&1));
    assert_eq!(c.held, 1);
    assert_eq!(
        c.days.get("2026-12-01").and_then(|d| d.get("released")),
        Some(&1)
    );
    apply(
        &t,
        trade("TRADE_CLOSED", 3, one_line("TRADE_CLOSED", "SUCCESS")),
        Rules::default(),
    )
    .await;
    let c: Counts = t
        .store
        .read(|r| view::counts(r, &ShopId::main()))
        .unwrap_or_default();
    assert_eq!(c.states.get("cancelled"), Some(&1));
    assert_eq!(c.states.get("released"), None);
    assert_eq!((c.held, c.holds.len()), (0, 0));
    let open = t
        .store
        .read(|r| view::open(r, &ShopId::main()))
        .unwrap_or_default();
    assert!(open.is_empty(), "a cancelled order leaves the open index");
}

#[tokio::test]
async fn plaintext_receiver_fields_never_reach_the_store_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("s.redb");
    let store =
        Store::open(StoreOptions::new(&path), Alerts::new()).unwrap_or_else(|e| panic!("{e}"));
    let t = T {
        store,
        _dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
    };
    let mut tr = trade(
        "WAIT_SELLER_SEND_GOODS",
        1,
        one_line("WAIT_SELLER_SEND_GOODS", "NO_REFUND"),
    );
    tr.buyer_message = Some(crate::taobao::types::FreeText("到了打13700001111".into()));
    apply(&t, tr, Rules::default()).await;
    assert_eq!(order(&t).receiver.as_deref(), Some("张*"));
    t.store
        .clone()
        .close()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(t);
    let bytes = std::fs::read(&path).unwrap_or_default();
    for secret in [
        "张三丰",
        "三丰",
        "文一西路",
        "13912345678",
        "0571-88888888",
        "13700001111",
    ] {
        let needle = secret.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{secret} reached the store file"
        );
    }
    assert!(bytes.windows(5).any(|w| w == b"OAID-"), "the OAID is kept");
}

#[tokio::test]
async fn a_store_that_never_held_an_order_reads_as_empty() {
    let t = store();
    let shop = ShopId::main();
    let list = t
        .store
        .read(|r| view::list(r, &shop, &view::OrderFilter::default()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(list, Ok(Vec::new()));
    let held = t
        .store
        .read(|r| {
            view::list(
                r,
                &shop,
                &view::OrderFilter {
                    held: true,
                    ..Default::default()
                },
            )
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(held, Ok(Vec::new()));
    let master = t
        .store
        .read(|r| sku::master(r, shop.as_str()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(master.skus.is_empty() && master.bundles.is_empty());
    assert!(
        t.store
            .read(|r| view::open(r, &shop))
            .unwrap_or_default()
            .is_empty()
    );
    assert!(
        t.store
            .read(|r| events::read(r, None, None, 10))
            .unwrap_or_default()
            .is_empty()
    );
}
