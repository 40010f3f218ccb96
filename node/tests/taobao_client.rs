//! The TOP client against the in-process sandbox over real HTTP: every typed call, every
//! error class, and the outbox sink.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod taobao_support;

use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use taobao_sandbox::{FaultKind, FaultSpec, RefundRequest};
use taobao_support::{Env, SESSION};
use wms_node::ops::alert::AlertCode;
use wms_node::outbox::{Attempt, Outcome, Sink};
use wms_node::secret::Secret;
use wms_node::taobao::api::{
    IncrementQuery, OfflineSend, OnsaleQuery, QuantityUpdate, RefundsQuery, SoldQuery, StockMode,
    WaybillAddress, WaybillItem, WaybillOrder, WaybillOrderInfo, WaybillPackage, WaybillParty,
    WaybillRecipient, WaybillRequest,
};
use wms_node::taobao::outbox::{TaobaoOp, TaobaoSink};
use wms_node::taobao::types::{RefundStatus, TradeStatus};
use wms_node::taobao::{
    BanScope, Disposition, Fen, Params, Session, SignMethod, StaticSession, TopError,
};

const NUM_IID: i64 = 600_123_456_789;
const SKU_RED: i64 = 4_567_890_123_456;
const SKU_BLUE: i64 = 4_567_890_123_457;

fn fault(kind: FaultKind) -> FaultSpec {
    FaultSpec {
        kind,
        seconds: Some(60),
        count: None,
        methods: None,
        delay_s: None,
        status: None,
        sub_code: None,
        announce_s: None,
    }
}

fn add_fault(env: &Env, spec: FaultSpec) {
    if let Err(e) = env.sandbox.sandbox().add_fault(spec) {
        panic!("fault: {e}");
    }
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, TopError>) -> TopError {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e,
    }
}

fn ok<T>(r: Result<T, TopError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("call failed: {e}"),
    }
}

/// A shop with one two-SKU item and one paid trade of it.
async fn shop() -> (Env, i64, Vec<i64>) {
    let env = Env::start().await;
    env.item(NUM_IID, &[(SKU_RED, 50), (SKU_BLUE, 20)]);
    let (tid, oids) = env.paid_trade(&[(NUM_IID, Some(SKU_RED), 2), (NUM_IID, Some(SKU_BLUE), 1)]);
    (env, tid, oids)
}

fn window() -> IncrementQuery {
    let now = Utc::now();
    IncrementQuery::window(
        now - chrono::Duration::minutes(30),
        now + chrono::Duration::minutes(1),
    )
}

#[tokio::test]
async fn the_incremental_pull_returns_new_trades_with_their_lines_for_every_sign_method() {
    let (env, tid, oids) = shop().await;
    for m in SignMethod::ALL {
        let page = ok(env.client(m).trades_sold_increment_get(&window()).await);
        let t = match page.trades.iter().find(|t| t.tid == tid) {
            Some(t) => t,
            None => panic!("{m}: trade {tid} missing from {page:?}"),
        };
        assert_eq!(t.status, Some(TradeStatus::WaitSellerSendGoods), "{m}");
        let got: Vec<i64> = t.orders.iter().map(|o| o.oid).collect();
        assert_eq!(got, oids, "{m}");
        assert_eq!(t.orders[0].sku_id, Some(SKU_RED));
        assert_eq!(page.has_next, Some(false));
        assert_eq!(page.total_results, None, "use_has_next omits total_results");
    }
}

#[tokio::test]
async fn the_incremental_pull_pages_newest_first_with_has_next() {
    let env = Env::start().await;
    env.item(NUM_IID, &[(SKU_RED, 100)]);
    let mut tids = Vec::new();
    for _ in 0..3 {
        tids.push(env.paid_trade(&[(NUM_IID, Some(SKU_RED), 1)]).0);
        env.advance(1);
    }
    let c = env.client(SignMethod::HmacSha256);
    let mut q = window();
    q.end_modified += chrono::Duration::seconds(10);
    q.page_size = 2;
    let first = ok(c.trades_sold_increment_get(&q).await);
    assert_eq!(first.trades.len(), 2);
    assert_eq!(first.has_next, Some(true));
    q.page_no = 2;
    let second = ok(c.trades_sold_increment_get(&q).await);
    assert_eq!(second.has_next, Some(false));
    let mut seen: Vec<i64> = first
        .trades
        .iter()
        .chain(&second.trades)
        .map(|t| t.tid)
        .collect();
    // Newest-modified first.
    assert_eq!(seen, tids.iter().rev().copied().collect::<Vec<_>>());
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn an_empty_window_is_an_empty_page() {
    let env = Env::start().await;
    let page = ok(env
        .client(SignMethod::Md5)
        .trades_sold_increment_get(&window())
        .await);
    assert!(page.trades.is_empty());
    assert_eq!(page.has_next, Some(false));
}

#[tokio::test]
async fn the_rescan_by_status_finds_open_trades_with_total_results() {
    let (env, tid, _) = shop().await;
    let mut q = SoldQuery::status("WAIT_SELLER_SEND_GOODS");
    q.use_has_next = false;
    let page = ok(env.client(SignMethod::Hmac).trades_sold_get(&q).await);
    assert!(page.trades.iter().any(|t| t.tid == tid));
    assert_eq!(page.total_results, Some(1));
}

#[tokio::test]
async fn fullinfo_brings_oaid_region_masked_receiver_and_money_in_fen() {
    let (env, tid, oids) = shop().await;
    let t = ok(env
        .client(SignMethod::HmacSha256)
        .trade_fullinfo_get(tid, &[])
        .await);
    assert_eq!(t.tid, tid);
    assert!(t.receiver.oaid.as_deref().is_some_and(|o| !o.is_empty()));
    assert_eq!(t.receiver.state.as_deref(), Some("浙江省"));
    assert_eq!(t.receiver.district.as_deref(), Some("余杭区"));
    assert!(
        t.receiver
            .masked_name
            .as_deref()
            .is_some_and(|n| n.contains('*'))
    );
    assert_eq!(t.orders.iter().map(|o| o.oid).collect::<Vec<_>>(), oids);
    // 2 × 19.90 + 1 × 19.90 (+ postage, if any) is an exact number of fen.
    let payment = t.payment.unwrap_or(Fen(0));
    assert!(payment.0 >= 5_970, "{payment}");
    assert_eq!(t.orders[0].price, Some(Fen(1_990)));
    assert_eq!(t.orders[0].refund_status, Some(RefundStatus::NoRefund));
}

#[tokio::test]
async fn ids_sent_as_strings_decode_to_the_same_trade() {
    let (env, tid, _) = shop().await;
    let c = env.client(SignMethod::Md5);
    let as_numbers = ok(c.trade_fullinfo_get(tid, &[]).await);
    let patch = taobao_sandbox::SettingsPatch {
        ids_as_strings: Some(true),
        ..Default::default()
    };
    if let Err(e) = env.sandbox.sandbox().update_settings(patch) {
        panic!("{e}");
    }
    let as_strings = ok(c.trade_fullinfo_get(tid, &[]).await);
    assert_eq!(as_numbers, as_strings);
}

#[tokio::test]
async fn the_classic_envelope_decodes_like_the_simplified_one() {
    let (env, tid, _) = shop().await;
    let simple = ok(env
        .client(SignMethod::Md5)
        .trade_fullinfo_get(tid, &[])
        .await);
    let mut o = env.options(SignMethod::Md5);
    o.simplify = false;
    let classic = env.client_with(o, Some(Arc::new(StaticSession(Secret::new(SESSION)))));
    assert_eq!(ok(classic.trade_fullinfo_get(tid, &[]).await), simple);
    let page = ok(classic.trades_sold_increment_get(&window()).await);
    assert!(
        page.trades
            .iter()
            .any(|t| t.tid == tid && t.orders.len() == 2)
    );
}

#[tokio::test]
async fn stock_updates_set_a_sku_and_several_skus() {
    let (env, _, _) = shop().await;
    let c = env.client(SignMethod::HmacSha256);
    let r = ok(c
        .item_quantity_update(&QuantityUpdate {
            num_iid: NUM_IID,
            sku_id: Some(SKU_RED),
            outer_id: None,
            quantity: 7,
            mode: StockMode::Full,
        })
        .await);
    assert_eq!(r.num_iid, NUM_IID);
    assert_eq!(
        r.skus
            .iter()
            .find(|s| s.sku_id == SKU_RED)
            .and_then(|s| s.quantity),
        Some(7)
    );
    let r = ok(c
        .skus_quantity_update(NUM_IID, &[(SKU_RED, 3), (SKU_BLUE, 4)], StockMode::Full)
        .await);
    assert_eq!(r.num, Some(7));
    let item = env.sandbox.sandbox().item(NUM_IID);
    let qty = |sku: i64| {
        item.as_ref()
            .and_then(|i| i.skus.iter().find(|s| s.sku_id == sku))
            .map(|s| s.quantity)
    };
    assert_eq!((qty(SKU_RED), qty(SKU_BLUE)), (Some(3), Some(4)));
    // Incremental: the platform floors at 0.
    let r = ok(c
        .item_quantity_update(&QuantityUpdate {
            num_iid: NUM_IID,
            sku_id: Some(SKU_BLUE),
            outer_id: None,
            quantity: -10,
            mode: StockMode::Incremental,
        })
        .await);
    assert_eq!(
        r.skus
            .iter()
            .find(|s| s.sku_id == SKU_BLUE)
            .and_then(|s| s.quantity),
        Some(0)
    );
}

#[tokio::test]
async fn item_lookups_list_items_and_show_skus_with_barcodes() {
    let (env, _, _) = shop().await;
    env.item(600_000_000_001, &[]);
    let c = env.client(SignMethod::Hmac);
    let page = ok(c.items_onsale_get(&OnsaleQuery::default()).await);
    let mut ids: Vec<i64> = page.items.iter().map(|i| i.num_iid).collect();
    ids.sort_unstable();
    assert_eq!(ids, [600_000_000_001, NUM_IID]);
    assert_eq!(page.total_results, Some(2));
    let item = ok(c.item_seller_get(NUM_IID, &[]).await);
    assert_eq!(item.skus.len(), 2);
    let red = item.skus.iter().find(|s| s.sku_id == SKU_RED);
    assert_eq!(
        red.and_then(|s| s.barcode.clone()),
        Some(format!("69{SKU_RED}"))
    );
    assert_eq!(
        red.and_then(|s| s.outer_id.clone()),
        Some(format!("SKU-{SKU_RED}"))
    );
}

#[tokio::test]
async fn a_shipment_goes_through_once_and_a_repeat_is_already_done() {
    let (env, tid, _) = shop().await;
    let c = env.client(SignMethod::HmacSha256);
    let send = OfflineSend {
        tid,
        sub_tids: vec![],
        out_sid: "YT1234567890123".into(),
        company_code: "YTO".into(),
        feature: None,
    };
    assert!(ok(c.logistics_offline_send(&send).await));
    let e = expect_err(c.logistics_offline_send(&send).await);
    assert_eq!(e.disposition(), Disposition::AlreadyDone, "{e}");
    assert_eq!(e.outcome(), Outcome::AlreadyDone);
    let shipments = env.sandbox.sandbox().shipments();
    assert_eq!(shipments.len(), 1);
    assert_eq!(shipments[0].out_sid, "YT1234567890123");
    let t = ok(c.trade_fullinfo_get(tid, &["tid", "status"]).await);
    assert_eq!(t.status, Some(TradeStatus::WaitBuyerConfirmGoods));
}

#[tokio::test]
async fn a_split_shipment_consigns_only_its_lines() {
    let (env, tid, oids) = shop().await;
    let c = env.client(SignMethod::Md5);
    let send = OfflineSend {
        tid,
        sub_tids: vec![oids[0]],
        out_sid: "YT1234567890124".into(),
        company_code: "YTO".into(),
        feature: None,
    };
    assert!(ok(c.logistics_offline_send(&send).await));
    assert_eq!(env.sandbox.sandbox().shipments()[0].sub_tids, vec![oids[0]]);
    let t = ok(c.trade_fullinfo_get(tid, &["tid", "status"]).await);
    assert_eq!(t.status, Some(TradeStatus::SellerConsignedPart));
}

#[tokio::test]
async fn a_waybill_number_that_fails_the_carrier_rule_is_permanent() {
    let (env, tid, _) = shop().await;
    let send = OfflineSend {
        tid,
        sub_tids: vec![],
        out_sid: "NOT-A-YTO-NUMBER".into(),
        company_code: "YTO".into(),
        feature: None,
    };
    let e = expect_err(
        env.client(SignMethod::Md5)
            .logistics_offline_send(&send)
            .await,
    );
    assert_eq!(e.disposition(), Disposition::Permanent);
    assert!(
        e.api()
            .and_then(|a| a.sub_code.as_deref())
            .is_some_and(|s| s.ends_with(":B60")),
        "{e}"
    );
}

#[tokio::test]
async fn carriers_come_with_their_waybill_rules_with_or_without_a_session() {
    let env = Env::start().await;
    let with = ok(env
        .client(SignMethod::Md5)
        .logistics_companies_get(None)
        .await);
    let yto = with.iter().find(|c| c.code.as_deref() == Some("YTO"));
    assert_eq!(
        yto.and_then(|c| c.reg_mail_no.clone()).as_deref(),
        Some(r"^YT\d{13}$")
    );
    let app_only = env.client_with(env.options(SignMethod::Hmac), None);
    let without = ok(app_only.logistics_companies_get(Some("offline")).await);
    assert!(!without.is_empty() && without.len() <= with.len());
}

#[tokio::test]
async fn refunds_are_listed_with_their_status_and_amount() {
    let (env, tid, oids) = shop().await;
    let req = RefundRequest {
        oid: Some(oids[1]),
        ..Default::default()
    };
    if let Err(e) = env.sandbox.sandbox().refund(tid, req) {
        panic!("{e}");
    }
    let page = ok(env
        .client(SignMethod::HmacSha256)
        .refunds_receive_get(&RefundsQuery::default())
        .await);
    assert_eq!(page.refunds.len(), 1);
    let r = &page.refunds[0];
    assert_eq!((r.tid, r.oid), (Some(tid), Some(oids[1])));
    assert_eq!(r.status, Some(RefundStatus::WaitSellerAgree));
    assert!(r.refund_fee.is_some_and(|f| f.0 > 0));
    let t = ok(env
        .client(SignMethod::Md5)
        .trade_fullinfo_get(tid, &[])
        .await);
    assert_eq!(
        t.orders[1].refund_status,
        Some(RefundStatus::WaitSellerAgree)
    );
    assert!(
        t.orders[1]
            .refund_status
            .as_ref()
            .is_some_and(|s| !s.allows_shipping())
    );
}

fn waybill_request(tid: i64, oaid: &str, package: &str) -> WaybillRequest {
    WaybillRequest {
        cp_code: "YTO".into(),
        sender: WaybillParty {
            name: "一号仓".into(),
            mobile: Some("13800000000".into()),
            phone: None,
            address: WaybillAddress {
                province: "浙江省".into(),
                city: Some("杭州市".into()),
                district: Some("余杭区".into()),
                town: None,
                detail: "仓储路1号".into(),
            },
        },
        trade_order_info_dtos: vec![WaybillOrder {
            object_id: package.into(),
            order_info: WaybillOrderInfo {
                order_channels_type: "TB".into(),
                trade_order_list: vec![tid.to_string()],
            },
            package_info: WaybillPackage {
                id: Some(package.into()),
                items: vec![WaybillItem {
                    name: "T恤".into(),
                    count: 3,
                }],
                weight: Some(500),
                volume: None,
            },
            recipient: WaybillRecipient {
                oaid: Some(oaid.into()),
                tid: Some(tid.to_string()),
                ..Default::default()
            },
            template_url: "http://cloudprint.cainiao.com/template/standard/101".into(),
            user_id: None,
        }],
        need_encrypt: Some(true),
        product_code: None,
    }
}

#[tokio::test]
async fn waybills_are_issued_once_per_package_ship_and_cancel() {
    let (env, tid, _) = shop().await;
    let c = env.client(SignMethod::HmacSha256);
    let oaid = ok(c.trade_fullinfo_get(tid, &[]).await)
        .receiver
        .oaid
        .unwrap_or_default();
    let req = waybill_request(tid, &oaid, "PKG-1");
    let first = ok(c.cainiao_waybill_ii_get(&req).await);
    assert_eq!(first.len(), 1);
    let w = &first[0];
    assert_eq!(w.object_id.as_deref(), Some("PKG-1"));
    let code = w.waybill_code.clone().unwrap_or_default();
    assert!(code.starts_with("YT"), "{code}");
    assert!(
        w.print_data
            .as_deref()
            .is_some_and(|p| p.contains("encryptedData"))
    );
    // Same package again: the same number (no second waybill).
    let again = ok(c.cainiao_waybill_ii_get(&req).await);
    assert_eq!(again[0].waybill_code.as_deref(), Some(code.as_str()));
    // A second package gets its own number, which can be cancelled.
    let spare = ok(c
        .cainiao_waybill_ii_get(&waybill_request(tid, &oaid, "PKG-2"))
        .await);
    let spare_code = spare[0].waybill_code.clone().unwrap_or_default();
    assert_ne!(spare_code, code);
    assert!(ok(c.cainiao_waybill_ii_cancel("YTO", &spare_code).await));
    let records = env.sandbox.sandbox().waybills();
    assert!(
        records
            .iter()
            .any(|r| r.waybill_code == spare_code && r.cancelled)
    );
    // The first number passes the carrier's rule when consigned.
    let send = OfflineSend {
        tid,
        sub_tids: vec![],
        out_sid: code,
        company_code: "YTO".into(),
        feature: None,
    };
    assert!(ok(c.logistics_offline_send(&send).await));
}

#[tokio::test]
async fn requests_beyond_documented_limits_are_refused_without_a_call() {
    let env = Env::start().await;
    let c = env.client(SignMethod::Md5);
    let skus: Vec<(i64, i64)> = (0..21).map(|i| (i, 1)).collect();
    let e = expect_err(
        c.skus_quantity_update(NUM_IID, &skus, StockMode::Full)
            .await,
    );
    assert!(matches!(e, TopError::InvalidRequest { .. }));
    assert_eq!(e.disposition(), Disposition::Permanent);
    let mut q = window();
    q.start_modified -= chrono::Duration::days(2);
    assert!(matches!(
        c.trades_sold_increment_get(&q).await,
        Err(TopError::InvalidRequest { .. })
    ));
    assert!(
        env.sandbox.sandbox().calls(None).is_empty(),
        "nothing was sent"
    );
}

// ---- error classes ----

#[tokio::test]
async fn an_outage_is_a_retryable_transport_error() {
    let env = Env::start().await;
    add_fault(&env, fault(FaultKind::Outage));
    let e = expect_err(
        env.client(SignMethod::Md5)
            .logistics_companies_get(None)
            .await,
    );
    assert!(matches!(e, TopError::Transport { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(matches!(e.outcome(), Outcome::Retry { after: None, .. }));
}

#[tokio::test]
async fn a_server_error_is_a_retryable_http_error() {
    let env = Env::start().await;
    let mut f = fault(FaultKind::Http500);
    f.status = Some(502);
    add_fault(&env, f);
    let e = expect_err(
        env.client(SignMethod::Md5)
            .logistics_companies_get(None)
            .await,
    );
    assert!(matches!(e, TopError::Http { status: 502, .. }), "{e:?}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn a_reply_slower_than_the_request_timeout_is_a_retryable_timeout() {
    let env = Env::start().await;
    let mut f = fault(FaultKind::Slow);
    f.delay_s = Some(5);
    add_fault(&env, f);
    let mut o = env.options(SignMethod::Md5);
    o.request_timeout = Duration::from_millis(300);
    let c = env.client_with(o, None);
    let started = std::time::Instant::now();
    let e = expect_err(c.logistics_companies_get(None).await);
    assert!(matches!(e, TopError::Timeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_reset_after_processing_is_retryable_and_the_retry_of_a_shipment_is_already_done() {
    let (env, tid, _) = shop().await;
    let mut f = fault(FaultKind::Reset);
    f.count = Some(1);
    add_fault(&env, f);
    let sink = TaobaoSink::new(env.client(SignMethod::HmacSha256), env.alerts.clone());
    let op = TaobaoOp::Ship {
        tid,
        oids: vec![],
        company_code: "YTO".into(),
        out_sid: "YT1234567890125".into(),
    };
    let attempt = |n| Attempt {
        seq: 1,
        idempotency_key: "k",
        attempt: n,
        op: &op,
    };
    assert!(matches!(
        sink.deliver(attempt(1)).await,
        Outcome::Retry { .. }
    ));
    // The shipment was applied before the connection dropped; the retry learns it.
    assert_eq!(sink.deliver(attempt(2)).await, Outcome::AlreadyDone);
    assert_eq!(env.sandbox.sandbox().shipments().len(), 1);
    assert!(!env.alerts.is_active(AlertCode::ShippedClosedTrade));
}

#[tokio::test]
async fn a_per_api_ban_is_honoured_locally_for_that_method_only() {
    let env = Env::start().await;
    let mut f = fault(FaultKind::Ban);
    f.count = Some(1);
    f.seconds = Some(30);
    f.methods = Some(vec!["taobao.items.onsale.get".into()]);
    add_fault(&env, f);
    let c = env.client(SignMethod::Hmac);
    let e = expect_err(c.items_onsale_get(&OnsaleQuery::default()).await);
    let Disposition::Retry { after: Some(after) } = e.disposition() else {
        panic!("expected a ban with seconds, got {e}");
    };
    assert!(
        after >= Duration::from_secs(1) && after <= Duration::from_secs(30),
        "{after:?}"
    );
    // The next call of that method is not sent at all.
    let before = env.calls("taobao.items.onsale.get").len();
    let e = expect_err(c.items_onsale_get(&OnsaleQuery::default()).await);
    assert!(
        matches!(
            e,
            TopError::Banned {
                scope: BanScope::Method(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(matches!(e.outcome(), Outcome::Retry { after: Some(_), .. }));
    assert_eq!(env.calls("taobao.items.onsale.get").len(), before);
    // Other methods still go through.
    assert!(c.logistics_companies_get(None).await.is_ok());
}

#[tokio::test]
async fn an_app_wide_ban_stops_every_method_and_alerts() {
    let env = Env::start().await;
    let mut f = fault(FaultKind::Ban);
    f.count = Some(1);
    f.seconds = Some(120);
    f.sub_code = Some("accesscontrol.limited-by-app-access-count".into());
    add_fault(&env, f);
    let c = env.client(SignMethod::Md5);
    let e = expect_err(c.logistics_companies_get(None).await);
    assert!(e.api().is_some_and(|a| a.code == 7), "{e}");
    assert!(env.alerts.is_active(AlertCode::TaobaoAppBan));
    let e = expect_err(c.items_onsale_get(&OnsaleQuery::default()).await);
    assert!(
        matches!(
            e,
            TopError::Banned {
                scope: BanScope::App,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(env.calls("taobao.items.onsale.get").is_empty());
}

#[tokio::test]
async fn a_ban_of_u64_max_seconds_is_honoured_for_a_day_at_most_and_panics_nowhere() {
    for sub_code in [
        "accesscontrol.limited-by-app-access-count",
        "accesscontrol.limited-by-api-access-count",
    ] {
        let env = Env::start().await;
        let mut f = fault(FaultKind::Ban);
        f.count = Some(1);
        f.announce_s = Some(u64::MAX);
        f.sub_code = Some(sub_code.into());
        add_fault(&env, f);
        let c = env.client(SignMethod::Md5);
        let e = expect_err(c.logistics_companies_get(None).await);
        let max_ban = wms_node::taobao::error::MAX_BAN;
        assert_eq!(
            e.disposition(),
            Disposition::Retry {
                after: Some(max_ban)
            },
            "{e}"
        );
        // The ban is recorded (a day) and the next call is refused locally.
        let e = expect_err(c.logistics_companies_get(None).await);
        let TopError::Banned { remaining, .. } = &e else {
            panic!("expected a local ban, got {e:?}");
        };
        assert!(
            *remaining <= max_ban && *remaining > max_ban - Duration::from_secs(60),
            "{remaining:?}"
        );
        // The outbox's view: retry in a day, not in 584 billion years.
        assert!(
            matches!(e.outcome(), Outcome::Retry { after: Some(a), .. } if a <= max_ban),
            "{:?}",
            e.outcome()
        );
        assert_eq!(env.calls("taobao.logistics.companies.get").len(), 1);
    }
}

#[tokio::test]
async fn a_platform_side_isp_error_is_retryable() {
    let env = Env::start().await;
    let mut f = fault(FaultKind::IspError);
    f.count = Some(1);
    add_fault(&env, f);
    let e = expect_err(
        env.client(SignMethod::Md5)
            .logistics_companies_get(None)
            .await,
    );
    assert!(
        e.api()
            .is_some_and(|a| a.sub_code.as_deref().is_some_and(|s| s.starts_with("isp.")))
    );
    assert_eq!(e.disposition(), Disposition::Retry { after: None });
}

#[tokio::test]
async fn a_wrong_secret_is_a_permanent_signature_error_with_an_alert() {
    let env = Env::start().await;
    let mut o = env.options(SignMethod::HmacSha256);
    o.app_secret = Secret::new("helloworlD");
    let c = env.client_with(o, None);
    let e = expect_err(c.logistics_companies_get(None).await);
    assert_eq!(e.api().map(|a| a.code), Some(25), "{e}");
    assert_eq!(e.disposition(), Disposition::Permanent);
    assert!(env.alerts.is_active(AlertCode::TaobaoSignature));
}

#[tokio::test]
async fn an_unknown_or_revoked_session_is_an_auth_error() {
    let env = Env::start().await;
    let c = env.client_with(
        env.options(SignMethod::Md5),
        Some(Arc::new(StaticSession(Secret::new("not-a-session")))),
    );
    let e = expect_err(c.trades_sold_increment_get(&window()).await);
    assert_eq!(e.api().map(|a| a.code), Some(27));
    assert_eq!(e.disposition(), Disposition::Auth);
    assert!(matches!(e.outcome(), Outcome::Auth { .. }));

    add_fault(&env, fault(FaultKind::ExpireTokens));
    let e = expect_err(
        env.client(SignMethod::Md5)
            .trades_sold_increment_get(&window())
            .await,
    );
    assert_eq!(
        e.api().and_then(|a| a.sub_code.clone()).as_deref(),
        Some("session-expired")
    );
    assert_eq!(e.disposition(), Disposition::Auth);
}

#[tokio::test]
async fn caller_errors_are_permanent() {
    let (env, tid, _) = shop().await;
    let c = env.client(SignMethod::Hmac);
    // A trade that does not exist.
    let e = expect_err(c.trade_fullinfo_get(tid + 1, &[]).await);
    assert_eq!(
        e.api().and_then(|a| a.sub_code.clone()).as_deref(),
        Some("isv.trade-not-exist")
    );
    assert_eq!(e.disposition(), Disposition::Permanent);
    // An item that does not exist.
    let e = expect_err(
        c.item_quantity_update(&QuantityUpdate {
            num_iid: 1,
            sku_id: None,
            outer_id: None,
            quantity: 1,
            mode: StockMode::Full,
        })
        .await,
    );
    assert_eq!(e.disposition(), Disposition::Permanent, "{e}");
    // Item-level stock on an item that has SKUs.
    let e = expect_err(
        c.item_quantity_update(&QuantityUpdate {
            num_iid: NUM_IID,
            sku_id: None,
            outer_id: None,
            quantity: 1,
            mode: StockMode::Full,
        })
        .await,
    );
    assert_eq!(e.disposition(), Disposition::Permanent, "{e}");
    // A missing required argument (40), through the untyped call.
    let e = expect_err(
        c.call(
            "taobao.trade.fullinfo.get",
            Params::new().set("fields", "tid"),
            Session::Required,
        )
        .await,
    );
    assert_eq!(e.api().map(|a| a.code), Some(40), "{e}");
    assert_eq!(e.disposition(), Disposition::Permanent);
    // An invalid argument (41).
    let e = expect_err(
        c.call(
            "taobao.trade.fullinfo.get",
            Params::new().set("fields", "tid").set("tid", "abc"),
            Session::Required,
        )
        .await,
    );
    assert_eq!(e.api().map(|a| a.code), Some(41), "{e}");
    assert_eq!(e.disposition(), Disposition::Permanent);
    // An unknown method (22).
    let e = expect_err(
        c.call("taobao.no.such.api", Params::new(), Session::None)
            .await,
    );
    assert_eq!(e.api().map(|a| a.code), Some(22), "{e}");
    assert_eq!(e.disposition(), Disposition::Permanent);
}

#[tokio::test]
async fn a_clock_ten_minutes_off_is_code_31_and_a_clock_alert() {
    let env = Env::start().await;
    env.offset.store(-700, std::sync::atomic::Ordering::Relaxed);
    let e = expect_err(
        env.client(SignMethod::Md5)
            .logistics_companies_get(None)
            .await,
    );
    assert_eq!(e.api().map(|a| a.code), Some(31), "{e}");
    assert!(e.is_retryable());
    assert!(env.alerts.is_active(AlertCode::Clock));
}

// ---- the outbox sink ----

#[tokio::test]
async fn the_sink_delivers_every_op_kind() {
    let (env, tid, _) = shop().await;
    let sink = TaobaoSink::new(env.client(SignMethod::HmacSha256), env.alerts.clone());
    let ops = [
        TaobaoOp::Ship {
            tid,
            oids: vec![],
            company_code: "YTO".into(),
            out_sid: "YT1234567890126".into(),
        },
        TaobaoOp::SetStock {
            num_iid: NUM_IID,
            sku_id: Some(SKU_RED),
            qty: 0,
            version: 1,
        },
    ];
    for (i, op) in ops.iter().enumerate() {
        let a = Attempt {
            seq: i as u64,
            idempotency_key: "k",
            attempt: 1,
            op,
        };
        assert_eq!(sink.deliver(a).await, Outcome::Done, "{op:?}");
    }
    let item = env.sandbox.sandbox().item(NUM_IID);
    assert_eq!(
        item.and_then(|i| i
            .skus
            .iter()
            .find(|s| s.sku_id == SKU_RED)
            .map(|s| s.quantity)),
        Some(0)
    );
    let c = env.client(SignMethod::Md5);
    let oaid = ok(c.trade_fullinfo_get(tid, &[]).await)
        .receiver
        .oaid
        .unwrap_or_default();
    let spare = ok(c
        .cainiao_waybill_ii_get(&waybill_request(tid, &oaid, "PKG-9"))
        .await);
    let cancel = TaobaoOp::CancelWaybill {
        cp_code: "YTO".into(),
        waybill_code: spare[0].waybill_code.clone().unwrap_or_default(),
    };
    let a = Attempt {
        seq: 9,
        idempotency_key: "k",
        attempt: 1,
        op: &cancel,
    };
    assert_eq!(sink.deliver(a).await, Outcome::Done);
}

#[tokio::test]
async fn shipping_a_closed_trade_is_already_done_with_an_alert() {
    let (env, tid, _) = shop().await;
    if let Err(e) = env.sandbox.sandbox().close(tid) {
        panic!("{e}");
    }
    let sink = TaobaoSink::new(env.client(SignMethod::Md5), env.alerts.clone());
    let op = TaobaoOp::Ship {
        tid,
        oids: vec![],
        company_code: "YTO".into(),
        out_sid: "YT1234567890127".into(),
    };
    let a = Attempt {
        seq: 1,
        idempotency_key: "k",
        attempt: 1,
        op: &op,
    };
    assert_eq!(sink.deliver(a).await, Outcome::AlreadyDone);
    assert!(env.alerts.is_active(AlertCode::ShippedClosedTrade));
}

#[tokio::test]
async fn the_sink_reports_auth_for_a_dead_session_and_permanent_for_a_bad_item() {
    let env = Env::start().await;
    env.item(NUM_IID, &[(SKU_RED, 1)]);
    let sink = TaobaoSink::new(env.client(SignMethod::Md5), env.alerts.clone());
    let bad = TaobaoOp::SetStock {
        num_iid: 42,
        sku_id: Some(1),
        qty: 3,
        version: 1,
    };
    let a = Attempt {
        seq: 1,
        idempotency_key: "k",
        attempt: 1,
        op: &bad,
    };
    assert!(matches!(sink.deliver(a).await, Outcome::Permanent { .. }));
    add_fault(&env, fault(FaultKind::ExpireTokens));
    let good = TaobaoOp::SetStock {
        num_iid: NUM_IID,
        sku_id: Some(SKU_RED),
        qty: 3,
        version: 2,
    };
    let a = Attempt {
        seq: 2,
        idempotency_key: "k",
        attempt: 1,
        op: &good,
    };
    assert!(matches!(sink.deliver(a).await, Outcome::Auth { .. }));
}

#[test]
fn calls_are_counted_in_the_metric_by_method_and_code() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("{e}"),
    };
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let env = Env::start().await;
            let c = env.client(SignMethod::Md5);
            ok(c.logistics_companies_get(None).await);
            let _ = c.trade_fullinfo_get(1, &[]).await;
        })
    });
    let text = handle.render();
    let has = |method: &str, code: &str| {
        text.lines().any(|l| {
            l.starts_with("wms_node_taobao_calls_total")
                && l.contains(&format!("method=\"{method}\""))
                && l.contains(&format!("code=\"{code}\""))
        })
    };
    assert!(has("taobao.logistics.companies.get", "0"), "{text}");
    assert!(has("taobao.trade.fullinfo.get", "15"), "{text}");
}
