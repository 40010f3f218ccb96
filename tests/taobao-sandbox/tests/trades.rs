//! Trade APIs and envelopes: increment windows and paging, sold.get, fullinfo, `fields`, both
//! JSON envelopes, ids as strings, refunds.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use taobao_sandbox::SandboxConfig;

const INCREMENT: &str = "taobao.trades.sold.increment.get";

fn gmt8(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The last-hour window, in GMT+8.
fn window(env: &Env) -> (String, String) {
    let now = env.sb().clock.now_ms();
    (gmt8(now - 3_600_000), gmt8(now + 60_000))
}

async fn increment(env: &Env, extra: &[(&str, &str)]) -> Value {
    let (start, end) = window(env);
    let mut call = env
        .call(INCREMENT)
        .p("fields", "tid,status,modified,orders")
        .p("start_modified", start)
        .p("end_modified", end);
    for (k, v) in extra {
        call = call.p(k, v);
    }
    call.send().await
}

fn tids(list: &Value) -> Vec<i64> {
    list.as_array()
        .map(|a| a.iter().map(|t| t["tid"].as_i64().unwrap()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_classic_envelope_wraps_the_root_and_every_list() {
    let env = start().await;
    env.seed_items().await;
    let (tid, oids) = env
        .trade(json!({"orders": [{"num_iid": T_SHIRT, "sku_id": SKU_RED, "num": 1}, {"num_iid": MUG, "num": 2}]}))
        .await;
    let v = increment(&env, &[]).await;
    let r = &v["trades_sold_increment_get_response"];
    assert_eq!(r["trades"]["trade"][0]["tid"], tid, "{v}");
    let orders = &r["trades"]["trade"][0]["orders"]["order"];
    assert_eq!(orders.as_array().unwrap().len(), 2);
    assert_eq!(orders[0]["oid"], oids[0]);
    assert_eq!(
        orders[0]["sku_id"],
        SKU_RED.to_string(),
        "the order's sku_id is a string"
    );
    assert_eq!(r["total_results"], 1);
    assert!(r["request_id"].is_string());
}

#[tokio::test]
async fn the_simplified_envelope_has_plain_arrays_at_the_root_and_errors_stay_wrapped() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let v = increment(&env, &[("simplify", "true")]).await;
    assert_eq!(v["trades"][0]["tid"], tid, "{v}");
    assert_eq!(v["trades"][0]["orders"][0]["num_iid"], MUG);
    assert!(v["request_id"].is_string());
    let e = env.call(INCREMENT).simplify().send().await;
    assert_eq!(e["error_response"]["code"], 40);
}

#[tokio::test]
async fn fields_are_honoured_down_to_order_sub_fields() {
    let env = start().await;
    env.seed_items().await;
    env.trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let (start, end) = window(&env);
    let v = env
        .call(INCREMENT)
        .simplify()
        .p("fields", "tid,orders.oid,orders.status")
        .p("start_modified", start)
        .p("end_modified", end)
        .send()
        .await;
    let t = v["trades"][0].as_object().unwrap();
    let keys: Vec<&str> = t.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["orders", "tid"]);
    let o = v["trades"][0]["orders"][0].as_object().unwrap();
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["oid", "status"]);
}

#[tokio::test]
async fn ids_as_strings_can_be_switched_on_at_start_and_at_run_time() {
    let env = start_with(SandboxConfig {
        ids_as_strings: true,
        ..config()
    })
    .await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let v = increment(&env, &[("simplify", "true")]).await;
    assert_eq!(v["trades"][0]["tid"], tid.to_string());
    assert_eq!(v["trades"][0]["orders"][0]["oid"], (tid + 1).to_string());
    let (s, _) = env
        .post("/sandbox/config", json!({"ids_as_strings": false}))
        .await;
    assert_eq!(s, 200);
    let v = increment(&env, &[("simplify", "true")]).await;
    assert_eq!(v["trades"][0]["tid"], tid);
    assert!(
        tid > 9_007_199_254_740_993,
        "tids exceed a JS double's exact range"
    );
}

#[tokio::test]
async fn increment_windows_longer_than_a_day_are_41_end_modified() {
    let env = start().await;
    let now = env.sb().clock.now_ms();
    let v = env
        .call(INCREMENT)
        .p("fields", "tid")
        .p("start_modified", gmt8(now - 86_401_000))
        .p("end_modified", gmt8(now))
        .send()
        .await;
    assert_eq!(
        (code(&v), sub_code(&v)),
        (41, "isv.invalid-parameter:end_modified".into())
    );
    let v = env
        .call(INCREMENT)
        .p("fields", "tid")
        .p("start_modified", gmt8(now - 86_400_000))
        .p("end_modified", gmt8(now))
        .send()
        .await;
    assert_eq!(code(&v), 0, "exactly one day is allowed: {v}");
    let v = env
        .call(INCREMENT)
        .p("fields", "tid")
        .p("start_modified", gmt8(now))
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.missing-parameter:end_modified");
    let v = increment(&env, &[("page_size", "101")]).await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:page_size");
    let v = increment(&env, &[("page_no", "0")]).await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:page_no");
}

#[tokio::test]
async fn increment_pages_newest_modified_first_with_has_next_and_total_results_only_without_use_has_next()
 {
    let env = start().await;
    env.seed_items().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            env.trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
                .await
                .0,
        );
    }
    // Touch the first trade a little later: it becomes the newest-modified.
    env.post("/sandbox/clock", json!({"advance_s": 2})).await;
    let (s, _) = env
        .admin(
            reqwest::Method::PATCH,
            &format!("/sandbox/trades/{}", created[0]),
            Some(json!({"seller_memo": "改地址"})),
        )
        .await;
    assert_eq!(s, 200);
    let page1 = increment(
        &env,
        &[
            ("simplify", "true"),
            ("page_size", "2"),
            ("use_has_next", "true"),
        ],
    )
    .await;
    assert_eq!(
        tids(&page1["trades"])[0],
        created[0],
        "newest modified first: {page1}"
    );
    assert_eq!(page1["has_next"], true);
    assert!(
        page1.get("total_results").is_none(),
        "use_has_next omits total_results"
    );
    let page3 = increment(
        &env,
        &[
            ("simplify", "true"),
            ("page_size", "2"),
            ("page_no", "3"),
            ("use_has_next", "true"),
        ],
    )
    .await;
    assert_eq!(tids(&page3["trades"]).len(), 1);
    assert_eq!(page3["has_next"], false);
    let counted = increment(&env, &[("simplify", "true"), ("page_size", "2")]).await;
    assert_eq!(counted["total_results"], 5);
    assert!(
        counted.get("has_next").is_none(),
        "without use_has_next a client pages by total_results: {counted}"
    );
    let mut all = Vec::new();
    for no in 1..=3 {
        let p = increment(
            &env,
            &[
                ("simplify", "true"),
                ("page_size", "2"),
                ("page_no", &no.to_string()),
            ],
        )
        .await;
        all.extend(tids(&p["trades"]));
    }
    let mut sorted = created.clone();
    sorted.sort();
    let mut got = all.clone();
    got.sort();
    assert_eq!(got, sorted, "pages cover every trade once");
    // modified is strictly descending across the pages.
    let full = increment(&env, &[("simplify", "true"), ("page_size", "100")]).await;
    let mods: Vec<String> = full["trades"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["modified"].as_str().unwrap().to_string())
        .collect();
    assert!(mods.windows(2).all(|w| w[0] >= w[1]), "{mods:?}");
    // An empty page leaves the list out entirely.
    let empty = increment(&env, &[("simplify", "true"), ("page_no", "9")]).await;
    assert!(empty.get("trades").is_none(), "{empty}");
}

#[tokio::test]
async fn the_increment_window_selects_by_modified_on_the_sandbox_clock() {
    let env = start().await;
    env.seed_items().await;
    let (old, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    env.post("/sandbox/clock", json!({"advance_s": 7200})).await;
    let (new, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let v = increment(&env, &[("simplify", "true")]).await;
    assert_eq!(tids(&v["trades"]), vec![new]);
    // Paying is a change: the old trade is back in the last hour's window once it moves.
    let (s, _) = env
        .admin(
            reqwest::Method::PATCH,
            &format!("/sandbox/trades/{old}"),
            Some(json!({"seller_flag": 1})),
        )
        .await;
    assert_eq!(s, 200);
    let v = increment(&env, &[("simplify", "true")]).await;
    let mut got = tids(&v["trades"]);
    got.sort();
    assert_eq!(got, vec![old, new]);
}

#[tokio::test]
async fn trade_types_outside_the_default_list_need_an_explicit_type() {
    let env = start().await;
    env.seed_items().await;
    let (plain, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let (fenxiao, _) = env
        .trade(json!({"type": "fenxiao", "orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let v = increment(&env, &[("simplify", "true")]).await;
    assert_eq!(tids(&v["trades"]), vec![plain]);
    let v = increment(
        &env,
        &[("simplify", "true"), ("type", "guarantee_trade,fenxiao")],
    )
    .await;
    assert_eq!(tids(&v["trades"]), vec![fenxiao, plain]);
}

#[tokio::test]
async fn sold_get_filters_by_status_and_sorts_by_created() {
    let env = start().await;
    env.seed_items().await;
    let (paid, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let (unpaid, _) = env
        .trade(json!({"status": "WAIT_BUYER_PAY", "orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let v = env
        .call("taobao.trades.sold.get")
        .simplify()
        .p("fields", "tid,status")
        .p("status", "WAIT_SELLER_SEND_GOODS")
        .send()
        .await;
    assert_eq!(tids(&v["trades"]), vec![paid]);
    let v = env
        .call("taobao.trades.sold.get")
        .simplify()
        .p("fields", "tid")
        .p("status", "ALL_WAIT_PAY")
        .send()
        .await;
    assert_eq!(tids(&v["trades"]), vec![unpaid]);
    let v = env
        .call("taobao.trades.sold.get")
        .simplify()
        .p("fields", "tid")
        .send()
        .await;
    assert_eq!(tids(&v["trades"]), vec![unpaid, paid]);
    let v = env
        .call("taobao.trades.sold.get")
        .p("fields", "tid")
        .p("status", "NOPE")
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:status");
}

#[tokio::test]
async fn fullinfo_returns_money_as_strings_masked_receivers_and_oaid_only_with_the_five_fields() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"post_fee": "8.00", "oaid": "oaid-A", "orders": [{"num_iid": T_SHIRT, "sku_id": SKU_RED, "num": 2}]}))
        .await;
    let five = "receiver_name,receiver_address,created,receiver_mobile,receiver_phone";
    let v = env
        .call("taobao.trade.fullinfo.get")
        .simplify()
        .p(
            "fields",
            format!("tid,status,payment,post_fee,oaid,orders,{five}"),
        )
        .p("tid", tid)
        .send()
        .await;
    let t = &v["trade"];
    assert_eq!(t["payment"], "126.00", "{v}");
    assert_eq!(t["post_fee"], "8.00");
    assert_eq!(t["oaid"], "oaid-A");
    assert!(
        t["receiver_mobile"].as_str().unwrap().contains('*'),
        "masked"
    );
    assert_eq!(
        t["orders"][0]["payment"], "126.00",
        "single line payment includes postage"
    );
    assert_eq!(t["orders"][0]["refund_status"], "NO_REFUND");
    let v = env
        .call("taobao.trade.fullinfo.get")
        .simplify()
        .p("fields", "tid,oaid,receiver_name")
        .p("tid", tid)
        .send()
        .await;
    assert!(
        v["trade"].get("oaid").is_none(),
        "no oaid without the five receiver fields: {v}"
    );
    let v = env
        .call("taobao.trade.fullinfo.get")
        .p("fields", "tid")
        .p("tid", 42)
        .send()
        .await;
    assert_eq!((code(&v), sub_code(&v)), (15, "isv.trade-not-exist".into()));
}

#[tokio::test]
async fn payment_takes_platform_stock_and_moves_modified() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"status": "WAIT_BUYER_PAY", "orders": [{"num_iid": MUG, "num": 3}]}))
        .await;
    assert_eq!(env.get(&format!("/sandbox/items/{MUG}")).await.1["num"], 20);
    let before = env.get(&format!("/sandbox/trades/{tid}")).await.1["modified"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, t) = env
        .post(&format!("/sandbox/trades/{tid}/pay"), json!({}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(t["status"], "WAIT_SELLER_SEND_GOODS");
    assert!(t["modified"].as_str().unwrap() > before.as_str());
    assert_eq!(env.get(&format!("/sandbox/items/{MUG}")).await.1["num"], 17);
    let (s, e) = env
        .post(&format!("/sandbox/trades/{tid}/pay"), json!({}))
        .await;
    assert_eq!(s, 409, "{e}");
}

#[tokio::test]
async fn refunds_show_per_line_and_a_full_refund_closes_the_trade() {
    let env = start().await;
    env.seed_items().await;
    let (tid, oids) = env
        .trade(json!({"orders": [{"num_iid": T_SHIRT, "sku_id": SKU_RED, "num": 1}, {"num_iid": MUG, "num": 1}]}))
        .await;
    let (s, r) = env
        .post(
            &format!("/sandbox/trades/{tid}/refund"),
            json!({"oid": oids[0]}),
        )
        .await;
    assert_eq!(s, 200);
    let refund_id = r["refund_ids"][0].as_str().unwrap().to_string();
    let v = env
        .call("taobao.refunds.receive.get")
        .simplify()
        .p("fields", "refund_id,tid,oid,status,refund_fee,refund_phase")
        .send()
        .await;
    assert_eq!(v["refunds"][0]["refund_id"], refund_id, "{v}");
    assert_eq!(v["refunds"][0]["oid"], oids[0]);
    assert_eq!(v["refunds"][0]["status"], "WAIT_SELLER_AGREE");
    assert_eq!(v["refunds"][0]["refund_phase"], "onsale");
    assert_eq!(v["total_results"], 1);
    let v = env
        .call("taobao.refund.get")
        .simplify()
        .p("fields", "refund_id,status")
        .p("refund_id", &refund_id)
        .send()
        .await;
    assert_eq!(v["refund"]["status"], "WAIT_SELLER_AGREE");
    let fi = env
        .call("taobao.trade.fullinfo.get")
        .simplify()
        .p("fields", "status,orders")
        .p("tid", tid)
        .send()
        .await;
    assert_eq!(
        fi["trade"]["orders"][0]["refund_status"],
        "WAIT_SELLER_AGREE"
    );
    assert_eq!(fi["trade"]["orders"][0]["refund_id"], refund_id);
    assert_eq!(fi["trade"]["orders"][1]["refund_status"], "NO_REFUND");
    // Seller agrees on every line: the trade closes.
    let (s, _) = env
        .post(
            &format!("/sandbox/trades/{tid}/refund"),
            json!({"status": "SUCCESS"}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, t) = env.get(&format!("/sandbox/trades/{tid}")).await;
    assert_eq!(t["status"], "TRADE_CLOSED");
    assert_eq!(t["refunds"].as_array().unwrap().len(), 2);
    let v = env
        .call("taobao.refunds.receive.get")
        .simplify()
        .p("fields", "refund_id")
        .p("status", "SUCCESS")
        .send()
        .await;
    assert_eq!(v["refunds"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn closing_before_payment_is_closed_by_taobao() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"status": "WAIT_BUYER_PAY", "orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let (s, t) = env
        .post(&format!("/sandbox/trades/{tid}/close"), json!({}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(t["status"], "TRADE_CLOSED_BY_TAOBAO");
    let (s, _) = env
        .post(&format!("/sandbox/trades/{tid}/close"), json!({}))
        .await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn aligenius_feedback_is_checked_against_the_refund_and_recorded() {
    let env = start().await;
    env.seed_items().await;
    let (tid, oids) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 2}]}))
        .await;
    let (_, r) = env
        .post(&format!("/sandbox/trades/{tid}/refund"), json!({}))
        .await;
    let refund_id = r["refund_ids"][0].as_str().unwrap().to_string();
    let fee = env
        .call("taobao.refund.get")
        .simplify()
        .p("fields", "refund_fee")
        .p("refund_id", &refund_id)
        .send()
        .await["refund"]["refund_fee"]
        .as_str()
        .unwrap()
        .replace('.', "")
        .parse::<i64>()
        .unwrap();
    let param = |status: &str, fee: i64| {
        json!({"tid": tid, "oid": oids[0], "refund_id": refund_id, "refund_fee": fee,
               "status": status, "operate_time": "2026-12-01 10:00:00", "msg": "stopped"})
        .to_string()
    };
    let v = env
        .call("taobao.rdc.aligenius.sendgoods.cancel")
        .p("param", param("SUCCESS", fee))
        .send()
        .await;
    assert_eq!(
        v["rdc_aligenius_sendgoods_cancel_response"]["result"]["success"], true,
        "{v}"
    );
    let wrong = env
        .call("taobao.rdc.aligenius.sendgoods.cancel")
        .p("param", param("SUCCESS", fee + 1))
        .send()
        .await;
    assert_eq!(wrong["error_response"]["code"], 41, "{wrong}");
    let bad = env
        .call("taobao.rdc.aligenius.sendgoods.cancel")
        .p("param", param("MAYBE", fee))
        .send()
        .await;
    assert_eq!(
        bad["error_response"]["sub_code"], "isv.invalid-parameter:param.status",
        "{bad}"
    );
    let (_, fb) = env.get("/sandbox/feedback").await;
    assert_eq!(fb.as_array().map(Vec::len), Some(1), "{fb}");
    assert_eq!(fb[0]["status"], "SUCCESS");
    assert_eq!(fb[0]["refund_fee"], fee);
}

#[tokio::test]
async fn a_trade_can_carry_plain_receiver_fields_for_privacy_tests() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(
            json!({"orders": [{"num_iid": MUG, "num": 1}], "receiver_name": "张三丰",
                      "receiver_address": "文一西路969号", "receiver_mobile": "13912345678",
                      "receiver_phone": "0571-88888888"}),
        )
        .await;
    let fi = env
        .call("taobao.trade.fullinfo.get")
        .simplify()
        .p(
            "fields",
            "receiver_name,receiver_address,receiver_mobile,receiver_phone,created,oaid",
        )
        .p("tid", tid)
        .send()
        .await;
    assert_eq!(fi["trade"]["receiver_name"], "张三丰");
    assert_eq!(fi["trade"]["receiver_mobile"], "13912345678");
    assert!(fi["trade"]["oaid"].is_string());
    // The call log keeps what was asked, never a session.
    let calls = env.sb().calls(Some("taobao.trade.fullinfo.get"));
    assert_eq!(calls[0].params.get("tid"), Some(&tid.to_string()));
    assert!(
        calls[0]
            .params
            .keys()
            .all(|k| k != "session" && k != "sign")
    );
}
