//! Goods out over a real store file: the stock ledger and what each listing owes the shop,
//! packages, merging, e-waybill bookkeeping and shipments.

use super::carriers::Carrier;
use super::ship::{ShipRequest, WaybillPlan, WaybillRecord};
use super::sku::parse_skus;
use super::stock::{self, Gate, Plan, PushMode, Seen};
use super::*;
use crate::alert::Alerts;
use crate::outbox::{Outbox, OutboxOptions};
use crate::store::StoreOptions;
use crate::taobao::outbox::TaobaoOp;
use crate::taobao::types::Trade;
use chrono::{DateTime, Utc};
use serde_json::json;

struct T {
    store: Store,
    outbox: Outbox<TaobaoOp>,
    _dir: tempfile::TempDir,
}

fn now() -> DateTime<Utc> {
    crate::taobao::time::parse("2026-12-01 10:00:00").unwrap_or_default()
}

const ITEM: u64 = 600_000_000_001;
const RED: u64 = 11;
const BLUE: u64 = 12;
const RED2_ITEM: u64 = 600_000_000_002;

async fn setup() -> T {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(StoreOptions::new(dir.path().join("s.redb")), Alerts::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let outbox = Outbox::new(store.clone(), OutboxOptions::default(), Alerts::new());
    let t = T {
        store,
        outbox,
        _dir: dir,
    };
    let rows = parse_skus(
        format!(
            "sku,barcode,name,on_hand,num_iid,sku_id\n\
             RED,690001,红,10,{ITEM},{RED}\n\
             RED,690001,红,10,{RED2_ITEM},{RED}1\n\
             BLUE,690002,蓝,3,{ITEM},{BLUE}\n"
        )
        .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    op(&t, move |w| {
        w.import_skus(&rows, &[], false, &Rules::default())?;
        Ok(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let carriers = vec![
        Carrier {
            code: "YTO".into(),
            name: "圆通".into(),
            reg_mail_no: Some("^YT\\d{13}$".into()),
        },
        Carrier {
            code: "YUNDA".into(),
            name: "韵达".into(),
            reg_mail_no: Some("^\\d{13,15}$".into()),
        },
    ];
    t.store
        .write(move |txn| super::carriers::replace(txn, &carriers))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    t
}

async fn op<R: Send + 'static>(
    t: &T,
    f: impl FnMut(&mut Wms<'_>) -> Result<R, WmsError> + Send + 'static,
) -> Result<R, WmsError> {
    let mut f = f;
    write(&t.store, move |txn| {
        let mut w = Wms::new(txn, &ShopId::main(), now());
        let r = f(&mut w)?;
        w.finish()?;
        Ok(r)
    })
    .await
}

fn trade(tid: u64, status: &str, oaid: &str, lines: &[(u64, u64, u32)]) -> Trade {
    let orders: Vec<serde_json::Value> = lines
        .iter()
        .enumerate()
        .map(|(i, (num_iid, sku_id, num))| {
            json!({"oid": tid + 1 + i as u64, "num_iid": num_iid, "sku_id": sku_id.to_string(),
                   "num": num, "status": status, "refund_status": "NO_REFUND"})
        })
        .collect();
    serde_json::from_value(json!({
        "tid": tid, "status": status, "type": "fixed",
        "created": "2026-12-01 08:59:00", "pay_time": "2026-12-01 09:00:00",
        "modified": format!("2026-12-01 09:{:02}:00", tid % 60),
        "oaid": oaid, "orders": orders,
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn apply(t: &T, tr: Trade) {
    op(t, move |w| {
        w.apply_trade(&tr, &Rules::default()).map(|_| ())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

fn avail(t: &T, sku: &str) -> stock::Avail {
    t.store
        .read(|r| stock::avail(r, ShopId::MAIN, sku))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn push_state(t: &T, num_iid: u64, sku_id: u64) -> stock::ListingPush {
    t.store
        .read(|r| stock::listing_push(r, ShopId::MAIN, &tables::listing_key(num_iid, Some(sku_id))))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no push state for {num_iid}:{sku_id}"))
}

/// Intake current, its watermark past every reading.
const CURRENT: Gate = Gate {
    lag_ok: true,
    watermark_ms: Some(i64::MAX / 2),
};

/// Intake lags more than the bound.
const LAGS: Gate = Gate {
    lag_ok: false,
    watermark_ms: None,
};

/// Delivers every due push of the listing as if Taobao applied it, a read finding what the
/// ledger offers (and settles the state).
async fn settle(t: &T, num_iid: u64, sku_id: u64) {
    loop {
        let (plan, _) = op(t, move |w| {
            Ok(w.plan_push(num_iid, Some(sku_id), CURRENT)?)
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        match plan {
            Plan::Send(_) => {
                op(t, move |w| {
                    Ok(w.push_done(num_iid, Some(sku_id), stock::Sent::Applied(None), true)?)
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            }
            Plan::Read => {
                op(t, move |w| {
                    let shown = stock::listing_qty_now(w.txn, &w.shop, num_iid, Some(sku_id))?
                        .map_or(0, |(_, q)| q);
                    let seen = Seen {
                        qty: shown,
                        modified_ms: None,
                        at_ms: 0,
                    };
                    Ok(w.push_read(num_iid, Some(sku_id), seen, 0)?)
                })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            }
            _ => return,
        }
    }
}

const TID: u64 = 2_701_234_567_890_000_001;

#[tokio::test]
async fn paid_lines_reserve_until_they_ship_and_a_close_frees_them() {
    let t = setup().await;
    apply(
        &t,
        trade(
            TID,
            "WAIT_SELLER_SEND_GOODS",
            "O1",
            &[(ITEM, RED, 2), (ITEM, BLUE, 1)],
        ),
    )
    .await;
    assert_eq!(
        avail(&t, "RED"),
        stock::Avail {
            on_hand: 10,
            reserved: 2,
            safety: 0
        }
    );
    assert_eq!(avail(&t, "BLUE").reserved, 1);
    // Shipping takes the goods off the shelf and the reservation with them.
    let outbox = t.outbox.clone();
    let s = op(&t, move |w| {
        w.ship(
            &ShipRequest {
                tid: TID,
                company_code: "YTO".into(),
                out_sid: "YT1234567890123".into(),
                oids: vec![],
            },
            &outbox,
            false,
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.ops.len(), 1);
    assert!(s.ops[0].oids.is_empty(), "the whole trade");
    let a = avail(&t, "RED");
    assert_eq!((a.on_hand, a.reserved, a.available()), (8, 0, 8));
    // A second trade, then closed before it ships: its units are free again.
    apply(
        &t,
        trade(TID + 100, "WAIT_SELLER_SEND_GOODS", "O2", &[(ITEM, RED, 3)]),
    )
    .await;
    assert_eq!(avail(&t, "RED").reserved, 3);
    let mut closed = trade(TID + 100, "TRADE_CLOSED", "O2", &[(ITEM, RED, 3)]);
    closed.modified = Some(now());
    apply(&t, closed).await;
    assert_eq!(avail(&t, "RED").reserved, 0);
    // The audit trail has the import and the shipment.
    let moves = t
        .store
        .read(|r| moves::read(r, Some("RED"), 10))
        .unwrap_or_default();
    let kinds: Vec<_> = moves.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(kinds, ["ship", "import"]);
    assert_eq!(moves[0].tid, Some(TID));
}

#[tokio::test]
async fn warehouse_events_owe_deltas_sales_owe_nothing_and_zero_goes_first() {
    let t = setup().await;
    // The first figure of each listing is a correction.
    let lp = push_state(&t, ITEM, RED);
    assert!(lp.full_due && lp.owed == 0, "{lp:?}");
    settle(&t, ITEM, RED).await;
    settle(&t, RED2_ITEM, RED * 10 + 1).await;
    settle(&t, ITEM, BLUE).await;
    assert!(!push_state(&t, ITEM, RED).owes());
    // A receipt: a delta on both listings of the SKU.
    op(&t, |w| w.receive("RED", 5, "PO 17"))
        .await
        .unwrap_or_default();
    let lp = push_state(&t, ITEM, RED);
    assert_eq!((lp.owed, lp.full_due), (5, false), "{lp:?}");
    assert_eq!(push_state(&t, RED2_ITEM, RED * 10 + 1).owed, 5);
    settle(&t, ITEM, RED).await;
    settle(&t, RED2_ITEM, RED * 10 + 1).await;
    // A sale through listing ITEM:RED: the platform took it there; the other listing of
    // the SKU owes a correction.
    apply(
        &t,
        trade(TID, "WAIT_SELLER_SEND_GOODS", "O1", &[(ITEM, RED, 2)]),
    )
    .await;
    assert!(!push_state(&t, ITEM, RED).owes());
    let other = push_state(&t, RED2_ITEM, RED * 10 + 1);
    assert!(other.full_due && other.owed == 0, "{other:?}");
    // A count that empties BLUE: a zero, urgent, ahead of lag.
    op(&t, |w| w.count("BLUE", 0, "empty bin"))
        .await
        .unwrap_or_default();
    let blue = push_state(&t, ITEM, BLUE);
    assert!(blue.zero, "{blue:?}");
    let (plan, _) = op(&t, |w| Ok(w.plan_push(ITEM, Some(BLUE), LAGS)?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(plan, Plan::Send(s) if s.mode == PushMode::Full && s.value == 0),
        "{plan:?}"
    );
    // Due rows: urgent first.
    let due = write(&t.store, |txn| {
        Ok(stock::take_due(txn, ShopId::MAIN, LAGS, 10)?)
    })
    .await
    .unwrap_or_default();
    assert!(
        due.iter()
            .all(|d| d.num_iid != ITEM || d.sku_id != Some(BLUE) || d.urgent)
    );
    // Stop: nothing goes; resume: a correction.
    op(&t, |w| w.set_sync("RED", false))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (plan, _) = op(&t, |w| {
        Ok(w.plan_push(RED2_ITEM, Some(RED * 10 + 1), CURRENT)?)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan, Plan::Nothing);
    assert!(
        op(&t, |w| w.push_now("RED", false)).await.is_err(),
        "stopped"
    );
    op(&t, |w| w.set_sync("RED", true))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(push_state(&t, RED2_ITEM, RED * 10 + 1).full_due);
    // Bad input is refused with the reason.
    let e = op(&t, |w| w.adjust("RED", -100, "oops")).await.unwrap_err();
    assert!(e.to_string().contains("between 0 and"), "{e}");
    let e = op(&t, |w| w.receive("NOPE", 1, "x")).await.unwrap_err();
    assert!(e.to_string().contains("no SKU NOPE"), "{e}");
    let e = op(&t, |w| w.adjust("RED", 1, "  ")).await.unwrap_err();
    assert!(e.to_string().contains("reason"), "{e}");
}

/// A correction waiting for intake learns from each order intake stores which sales the
/// platform made after its reading, and settles to the ledger minus none of them twice.
#[tokio::test]
async fn a_pending_correction_counts_the_sales_placed_after_its_reading() {
    let t = setup().await;
    settle(&t, ITEM, RED).await;
    settle(&t, RED2_ITEM, RED * 10 + 1).await;
    op(&t, |w| w.push_now("RED", false))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read_at = crate::taobao::time::parse("2026-12-01 08:58:00")
        .unwrap_or_default()
        .timestamp_millis();
    let early = Gate {
        lag_ok: true,
        watermark_ms: Some(read_at - 60_000),
    };
    let (plan, _) = op(&t, move |w| Ok(w.plan_push(ITEM, Some(RED), early)?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan, Plan::Read);
    // Taobao shows 20 (a hand edit) at 08:58.
    let seen = Seen {
        qty: 20,
        modified_ms: None,
        at_ms: read_at,
    };
    op(&t, move |w| {
        Ok(w.push_read(ITEM, Some(RED), seen, read_at - 500)?)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Intake has not passed the reading: the correction waits, and is not taken off the due
    // table before it has.
    let (plan, _) = op(&t, move |w| Ok(w.plan_push(ITEM, Some(RED), early)?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan, Plan::Wait);
    let is_red = |d: &stock::Due| d.num_iid == ITEM && d.sku_id == Some(RED);
    let taken = write(&t.store, move |txn| {
        Ok(stock::take_due(txn, ShopId::MAIN, early, 100)?)
    })
    .await
    .unwrap_or_default();
    assert!(!taken.iter().any(is_red), "{taken:?}");
    // Intake stores a sale placed before the reading (in the 20 already) and one after it
    // (the platform took it from the 20 itself).
    let mut before = trade(TID, "WAIT_SELLER_SEND_GOODS", "O1", &[(ITEM, RED, 1)]);
    before.created = crate::taobao::time::parse("2026-12-01 08:57:00").ok();
    apply(&t, before).await;
    apply(
        &t,
        trade(TID + 100, "WAIT_SELLER_SEND_GOODS", "O2", &[(ITEM, RED, 2)]),
    )
    .await;
    let a = t
        .store
        .read(|r| stock::anchor(r, ShopId::MAIN, &tables::listing_key(ITEM, Some(RED))))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no anchor"));
    assert_eq!((a.qty, a.sold_after, a.restored_after), (20, 2, 0));
    // Intake passed the reading: the ledger offers 10 − 3 = 7, Taobao shows 20 − 2 (and
    // minus any sale not pulled yet): the difference goes as a delta.
    let passed = Gate {
        lag_ok: true,
        watermark_ms: Some(read_at + stock::CLOCK_MARGIN_MS),
    };
    let waiting = t
        .store
        .read(move |r| stock::due_now(r, ShopId::MAIN, early))
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = t
        .store
        .read(move |r| stock::due_now(r, ShopId::MAIN, passed))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(ready > waiting, "{ready} due once passed, {waiting} before");
    let taken = write(&t.store, move |txn| {
        Ok(stock::take_due(txn, ShopId::MAIN, passed, 100)?)
    })
    .await
    .unwrap_or_default();
    assert!(taken.iter().any(is_red), "{taken:?}");
    let (plan, _) = op(&t, move |w| Ok(w.plan_push(ITEM, Some(RED), passed)?))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(plan, Plan::Send(s) if s.mode == PushMode::Correction && s.value == 7 - 18),
        "{plan:?}"
    );
}

#[tokio::test]
async fn a_held_order_is_refused_with_its_reason_and_a_bad_carrier_names_the_nearest() {
    let t = setup().await;
    apply(
        &t,
        trade(TID, "WAIT_SELLER_SEND_GOODS", "O1", &[(ITEM, RED, 1)]),
    )
    .await;
    let ship = |company: &str, no: &str| ShipRequest {
        tid: TID,
        company_code: company.into(),
        out_sid: no.into(),
        oids: vec![],
    };
    let outbox = t.outbox.clone();
    let r = ship("YT0", "YT1234567890123");
    let e = op(&t, move |w| w.ship(&r, &outbox, false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("did you mean YTO"), "{e}");
    let outbox = t.outbox.clone();
    let r = ship("YTO", "12345");
    let e = op(&t, move |w| w.ship(&r, &outbox, false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not match the rule"), "{e}");
    op(&t, |w| w.hold(TID, "buyer called: wait"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let outbox = t.outbox.clone();
    let r = ship("YTO", "YT1234567890123");
    let e = op(&t, move |w| w.ship(&r, &outbox, false))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("held (operator: buyer called: wait)"),
        "{e}"
    );
    assert!(
        t.outbox.queued(0, 10).unwrap_or_default().is_empty(),
        "nothing queued"
    );
}

#[tokio::test]
async fn split_parcels_ship_their_own_lines_and_the_last_hands_the_order_over() {
    let t = setup().await;
    apply(
        &t,
        trade(
            TID,
            "WAIT_SELLER_SEND_GOODS",
            "O1",
            &[(ITEM, RED, 1), (ITEM, BLUE, 1)],
        ),
    )
    .await;
    let outbox = t.outbox.clone();
    let first = op(&t, move |w| {
        w.ship(
            &ShipRequest {
                tid: TID,
                company_code: "YTO".into(),
                out_sid: "YT1000000000001".into(),
                oids: vec![TID + 2],
            },
            &outbox,
            false,
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.ops[0].oids, [TID + 2]);
    let o = t
        .store
        .read(|r| orders::read_order(r, &ShopId::main(), TID))
        .unwrap_or_default()
        .unwrap_or_else(|| panic!("stored"));
    assert_eq!(o.state, LocalState::Released, "one line still to go");
    // The same number for another parcel is refused.
    let outbox = t.outbox.clone();
    let e = op(&t, move |w| {
        w.ship(
            &ShipRequest {
                tid: TID,
                company_code: "YTO".into(),
                out_sid: "YT1000000000001".into(),
                oids: vec![],
            },
            &outbox,
            false,
        )
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    let outbox = t.outbox.clone();
    let second = op(&t, move |w| {
        w.ship(
            &ShipRequest {
                tid: TID,
                company_code: "YTO".into(),
                out_sid: "YT1000000000002".into(),
                oids: vec![],
            },
            &outbox,
            false,
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second.ops[0].oids, [TID + 1], "a split of the rest");
    let o = t
        .store
        .read(|r| orders::read_order(r, &ShopId::main(), TID))
        .unwrap_or_default()
        .unwrap_or_else(|| panic!("stored"));
    assert_eq!(o.state, LocalState::HandedOver);
    // A hold after the first parcel: its op is sent anyway (the parcel left).
    let (check, _) = op(&t, |w| Ok(w.consign_check(TID, &[TID + 2])?))
        .await
        .map(|c| (c, ()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(check, ConsignCheck::Clear);
    op(&t, |w| Ok(w.consigned(TID, &[TID + 2])?))
        .await
        .unwrap_or_default();
    let o = t
        .store
        .read(|r| orders::read_order(r, &ShopId::main(), TID))
        .unwrap_or_default()
        .unwrap_or_else(|| panic!("stored"));
    assert_eq!(
        o.state,
        LocalState::HandedOver,
        "one parcel of two confirmed"
    );
    op(&t, |w| Ok(w.consigned(TID, &[TID + 1])?))
        .await
        .unwrap_or_default();
    let o = t
        .store
        .read(|r| orders::read_order(r, &ShopId::main(), TID))
        .unwrap_or_default()
        .unwrap_or_else(|| panic!("stored"));
    assert_eq!(o.state, LocalState::Consigned);
}

#[tokio::test]
async fn orders_of_one_receiver_share_a_package_until_one_is_held() {
    let t = setup().await;
    for (i, tid) in [TID, TID + 100, TID + 200].into_iter().enumerate() {
        let oaid = if i < 2 { "SAME" } else { "OTHER" };
        apply(
            &t,
            trade(tid, "WAIT_SELLER_SEND_GOODS", oaid, &[(ITEM, RED, 1)]),
        )
        .await;
    }
    let plan = op(&t, |w| w.waybill_request(TID, None, &[], true))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let WaybillPlan::Ask {
        package,
        oaid,
        lookup_first,
        ..
    } = plan
    else {
        panic!("{plan:?}")
    };
    assert_eq!(
        package.tids(),
        [TID, TID + 100],
        "the other receiver is not merged"
    );
    assert_eq!(oaid, "SAME");
    assert!(!lookup_first);
    // The answer was lost: asking again looks it up first.
    let again = op(&t, |w| w.waybill_request(TID, None, &[], true))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        again,
        WaybillPlan::Ask {
            lookup_first: true,
            ..
        }
    ));
    let id = package.id.clone();
    let rec = WaybillRecord {
        cp_code: "YTO".into(),
        real_cp_code: "YTO".into(),
        waybill_code: "YT9000000000001".into(),
        parent_waybill_code: None,
        print_data: "{\"encryptedData\":\"…\"}".into(),
        template_url: "http://cloudprint.cainiao.com/template/standard/101".into(),
        issued_ms: 1,
        voided_ms: None,
    };
    op(&t, move |w| w.store_waybill(&id, rec.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A reprint reuses it, with a new job id each time.
    let id = package.id.clone();
    let j1 = op(&t, move |w| w.print_job(&id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = package.id.clone();
    let j2 = op(&t, move |w| w.print_job(&id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((j1.format.as_str(), j1.data == j2.data), ("cainiao", true));
    assert_ne!(j1.job_id, j2.job_id);
    assert!(matches!(
        op(&t, |w| w.waybill_request(TID + 100, None, &[], true)).await,
        Ok(WaybillPlan::Have(_))
    ));
    // A refund on one member: it leaves; the labelled package is voided and re-made.
    op(&t, |w| w.hold(TID + 100, "refund call"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let voided = write(&t.store, |txn| {
        Ok(ship::take_voided(txn, ShopId::MAIN, 10)?)
    })
    .await
    .unwrap_or_default();
    assert_eq!(voided, [("YTO".to_owned(), "YT9000000000001".to_owned())]);
    let plan = op(&t, |w| w.waybill_request(TID, None, &[], true))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let WaybillPlan::Ask { package: next, .. } = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(next.tids(), [TID]);
    assert_ne!(next.id, package.id, "a new id gets a new number");
    assert!(
        next.log.iter().any(|l| l.what.contains("left")),
        "{:?}",
        next.log
    );
}

#[tokio::test]
async fn a_merged_package_ships_one_op_per_trade_with_one_number() {
    let t = setup().await;
    apply(
        &t,
        trade(TID, "WAIT_SELLER_SEND_GOODS", "SAME", &[(ITEM, RED, 1)]),
    )
    .await;
    apply(
        &t,
        trade(
            TID + 100,
            "WAIT_SELLER_SEND_GOODS",
            "SAME",
            &[(ITEM, BLUE, 2)],
        ),
    )
    .await;
    let outbox = t.outbox.clone();
    let s = op(&t, move |w| {
        w.ship(
            &ShipRequest {
                tid: TID + 100,
                company_code: "YTO".into(),
                out_sid: "YT1234567890123".into(),
                oids: vec![],
            },
            &outbox,
            true,
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let tids: Vec<u64> = s.ops.iter().map(|o| o.tid).collect();
    assert_eq!(tids, [TID, TID + 100]);
    assert!(
        s.ops
            .iter()
            .all(|o| o.out_sid == "YT1234567890123" && o.oids.is_empty())
    );
    let queued = t.outbox.queued(0, 10).unwrap_or_default();
    assert_eq!(queued.len(), 2);
    assert_eq!(
        (avail(&t, "BLUE").on_hand, avail(&t, "BLUE").reserved),
        (1, 0)
    );
}
