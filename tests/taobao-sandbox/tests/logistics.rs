//! Shipping and waybills: `logistics.offline.send` (B04, B60, B56, CD codes, split shipments),
//! `logistics.companies.get`, `cainiao.waybill.ii.get` / `cancel`.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};

const SEND: &str = "taobao.logistics.offline.send";

async fn send(env: &Env, tid: i64, out_sid: &str, company: &str, extra: &[(&str, &str)]) -> Value {
    let mut c = env
        .call(SEND)
        .p("tid", tid)
        .p("out_sid", out_sid)
        .p("company_code", company);
    for (k, v) in extra {
        c = c.p(k, v);
    }
    c.send().await
}

async fn status(env: &Env, tid: i64) -> String {
    env.get(&format!("/sandbox/trades/{tid}")).await.1["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_shipment_moves_the_trade_to_shipped_and_a_repeat_answers_b04() {
    let env = start().await;
    env.seed_items().await;
    let (tid, oids) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let v = send(&env, tid, "YT1234567890123", "YTO", &[]).await;
    assert_eq!(
        v["logistics_offline_send_response"]["shipping"]["is_success"], true,
        "{v}"
    );
    assert_eq!(status(&env, tid).await, "WAIT_BUYER_CONFIRM_GOODS");
    let again = send(&env, tid, "YT1234567890123", "YTO", &[]).await;
    assert_eq!(code(&again), 15);
    assert_eq!(sub_code(&again), "isv.logistics-offline-service-error:B04");
    let (_, shipments) = env.get("/sandbox/shipments").await;
    assert_eq!(shipments.as_array().unwrap().len(), 1);
    assert_eq!(shipments[0]["tid"], tid);
    assert_eq!(shipments[0]["out_sid"], "YT1234567890123");
    assert_eq!(shipments[0]["company_code"], "YTO");
    assert_eq!(shipments[0]["sub_tids"], json!([]));
    let fi = env
        .call("taobao.trade.fullinfo.get")
        .simplify()
        .p("fields", "orders,consign_time")
        .p("tid", tid)
        .send()
        .await;
    assert_eq!(fi["trade"]["orders"][0]["invoice_no"], "YT1234567890123");
    assert_eq!(fi["trade"]["orders"][0]["oid"], oids[0]);
    assert!(fi["trade"]["consign_time"].is_string());
}

#[tokio::test]
async fn a_closed_trade_answers_b04_and_an_unpaid_one_b02() {
    let env = start().await;
    env.seed_items().await;
    let (closed, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    env.post(&format!("/sandbox/trades/{closed}/close"), json!({}))
        .await;
    assert_eq!(
        sub_code(&send(&env, closed, "YT1234567890123", "YTO", &[]).await),
        "isv.logistics-offline-service-error:B04"
    );
    let (unpaid, _) = env
        .trade(json!({"status": "WAIT_BUYER_PAY", "orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    assert_eq!(
        sub_code(&send(&env, unpaid, "YT1234567890123", "YTO", &[]).await),
        "isv.logistics-offline-service-error:B02"
    );
    assert_eq!(
        sub_code(&send(&env, 77, "YT1234567890123", "YTO", &[]).await),
        "isv.logistics-offline-service-error:B01"
    );
}

#[tokio::test]
async fn out_sid_must_match_the_company_reg_mail_no() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    assert_eq!(
        sub_code(&send(&env, tid, "YT123", "YTO", &[]).await),
        "isv.logistics-offline-service-error:B60"
    );
    assert_eq!(
        sub_code(&send(&env, tid, "YT1234567890123", "SF", &[]).await),
        "isv.logistics-offline-service-error:B60"
    );
    assert_eq!(
        sub_code(&send(&env, tid, "YT1234567890123", "NOPE", &[]).await),
        "isv.logistics-offline-service-error:B56"
    );
    let v = env
        .call(SEND)
        .p("tid", tid)
        .p("out_sid", "YT1234567890123")
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.missing-parameter:company_code");
    assert_eq!(
        status(&env, tid).await,
        "WAIT_SELLER_SEND_GOODS",
        "nothing shipped"
    );
    assert!(
        env.get("/sandbox/shipments")
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn split_shipments_need_is_split_and_sub_tid_together() {
    let env = start().await;
    env.seed_items().await;
    let (tid, oids) = env
        .trade(json!({"orders": [{"num_iid": T_SHIRT, "sku_id": SKU_RED, "num": 1}, {"num_iid": MUG, "num": 1}]}))
        .await;
    let first = oids[0].to_string();
    assert_eq!(
        sub_code(&send(&env, tid, "SF9900000000001", "SF", &[("is_split", "1")]).await),
        "isv.logistics-offline-service-error:CD22"
    );
    assert_eq!(
        sub_code(&send(&env, tid, "SF9900000000001", "SF", &[("sub_tid", &first)]).await),
        "isv.logistics-offline-service-error:CD23"
    );
    assert_eq!(
        sub_code(
            &send(
                &env,
                tid,
                "SF9900000000001",
                "SF",
                &[("is_split", "1"), ("sub_tid", "123")]
            )
            .await
        ),
        "isv.logistics-offline-service-error:CD24"
    );
    assert_eq!(
        sub_code(
            &send(
                &env,
                tid,
                "SF9900000000001",
                "SF",
                &[("is_split", "1"), ("sub_tid", "1,x")]
            )
            .await
        ),
        "isv.invalid-parameter:sub_tid"
    );
    let v = send(
        &env,
        tid,
        "SF9900000000001",
        "SF",
        &[("is_split", "1"), ("sub_tid", &first)],
    )
    .await;
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(status(&env, tid).await, "SELLER_CONSIGNED_PART");
    // Retrying the same parcel is "already shipped".
    let again = send(
        &env,
        tid,
        "SF9900000000001",
        "SF",
        &[("is_split", "1"), ("sub_tid", &first)],
    )
    .await;
    assert_eq!(sub_code(&again), "isv.logistics-offline-service-error:B04");
    let second = oids[1].to_string();
    let v = send(
        &env,
        tid,
        "SF9900000000002",
        "SF",
        &[("is_split", "1"), ("sub_tid", &second)],
    )
    .await;
    assert_eq!(code(&v), 0, "{v}");
    assert_eq!(status(&env, tid).await, "WAIT_BUYER_CONFIRM_GOODS");
    let (_, shipments) = env.get("/sandbox/shipments").await;
    assert_eq!(shipments[0]["sub_tids"], json!([oids[0]]));
    assert_eq!(shipments[1]["sub_tids"], json!([oids[1]]));
}

#[tokio::test]
async fn companies_carry_reg_mail_no_and_honour_fields() {
    let env = start().await;
    let v = env
        .call("taobao.logistics.companies.get")
        .simplify()
        .p("fields", "code,reg_mail_no")
        .send()
        .await;
    let list = v["logistics_companies"].as_array().unwrap();
    let yto = list.iter().find(|c| c["code"] == "YTO").expect("YTO");
    assert_eq!(yto["reg_mail_no"], r"^YT\d{13}$");
    assert!(yto.get("name").is_none());
    for code in ["SF", "EMS", "ZTO", "STO", "YUNDA", "HTKY", "JD", "OTHER"] {
        assert!(list.iter().any(|c| c["code"] == code), "{code}");
    }
    let rec = env
        .call("taobao.logistics.companies.get")
        .simplify()
        .p("fields", "code")
        .p("is_recommended", "true")
        .send()
        .await;
    assert!(rec["logistics_companies"].as_array().unwrap().len() < list.len());
    let classic = env
        .call("taobao.logistics.companies.get")
        .p("fields", "id,code,name")
        .send()
        .await;
    assert!(
        classic["logistics_companies_get_response"]["logistics_companies"]["logistics_company"]
            .is_array()
    );
}

fn waybill_request(cp: &str, tid: i64, oaid: &str, package_id: &str, object_id: &str) -> String {
    json!({
        "cp_code": cp,
        "sender": {"name": "仓库", "mobile": "*******0000", "address": {"province": "浙江省", "city": "杭州市", "detail": "仓库地址"}},
        "trade_order_info_dtos": [{
            "object_id": object_id,
            "order_info": {"order_channels_type": "TB", "trade_order_list": [tid.to_string()]},
            "package_info": {"id": package_id, "items": [{"name": "马克杯", "count": 1}]},
            "recipient": {"oaid": oaid, "tid": tid.to_string()},
            "template_url": "http://cloudprint.cainiao.com/template/standard/101",
            "user_id": 2200000000001i64
        }]
    })
    .to_string()
}

#[tokio::test]
async fn waybills_are_stable_per_package_match_the_carrier_rule_and_ship() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"oaid": "oaid-W", "orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let get = |pkg: &str, obj: &str| {
        env.call("cainiao.waybill.ii.get").p(
            "param_waybill_cloud_print_apply_new_request",
            waybill_request("ZTO", tid, "oaid-W", pkg, obj),
        )
    };
    let v = get("PKG-1", "obj-1").send().await;
    let m = &v["cainiao_waybill_ii_get_response"]["modules"]["waybill_cloud_print_response"][0];
    let code1 = m["waybill_code"].as_str().unwrap().to_string();
    assert_eq!(m["object_id"], "obj-1");
    assert_eq!(m["cp_code"], "ZTO");
    let print: Value = serde_json::from_str(m["print_data"].as_str().unwrap())
        .expect("print_data is a JSON string");
    assert!(print.get("data").is_some() || print.get("encryptedData").is_some());
    assert!(
        regex::Regex::new(r"^\d{12,14}$").unwrap().is_match(&code1),
        "{code1}"
    );
    // Same package (case-insensitive id) → same number; another package → another number.
    let again = get("pkg-1", "obj-2").simplify().send().await;
    assert_eq!(again["modules"][0]["waybill_code"], code1);
    let other = get("PKG-2", "obj-3").simplify().send().await;
    assert_ne!(other["modules"][0]["waybill_code"], code1);
    // The issued number passes the consignment check.
    let v = send(&env, tid, &code1, "ZTO", &[]).await;
    assert_eq!(code(&v), 0, "{v}");
    // A consigned waybill cannot be cancelled; an unused one can, and then is refused.
    let c = env
        .call("cainiao.waybill.ii.cancel")
        .p("cp_code", "ZTO")
        .p("waybill_code", &code1)
        .send()
        .await;
    assert_eq!(code(&c), 15);
    let unused = other["modules"][0]["waybill_code"].as_str().unwrap();
    let c = env
        .call("cainiao.waybill.ii.cancel")
        .simplify()
        .p("cp_code", "ZTO")
        .p("waybill_code", unused)
        .send()
        .await;
    assert_eq!(c["cancel_result"], true, "{c}");
    let (_, wbs) = env.get("/sandbox/waybills").await;
    assert!(
        wbs.as_array()
            .unwrap()
            .iter()
            .any(|w| w["waybill_code"] == unused && w["cancelled"] == true)
    );
}

#[tokio::test]
async fn waybill_requests_are_validated() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"oaid": "oaid-W", "orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let v = env.call("cainiao.waybill.ii.get").send().await;
    assert_eq!(
        sub_code(&v),
        "isv.missing-parameter:param_waybill_cloud_print_apply_new_request"
    );
    let v = env
        .call("cainiao.waybill.ii.get")
        .p("param_waybill_cloud_print_apply_new_request", "{not json")
        .send()
        .await;
    assert_eq!(code(&v), 41);
    let wrong_oaid = waybill_request("ZTO", tid, "oaid-X", "P", "o");
    let v = env
        .call("cainiao.waybill.ii.get")
        .p("param_waybill_cloud_print_apply_new_request", wrong_oaid)
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:recipient.oaid");
    let mut no_sender: Value =
        serde_json::from_str(&waybill_request("ZTO", tid, "oaid-W", "P", "o")).unwrap();
    no_sender.as_object_mut().unwrap().remove("sender");
    let v = env
        .call("cainiao.waybill.ii.get")
        .p(
            "param_waybill_cloud_print_apply_new_request",
            no_sender.to_string(),
        )
        .send()
        .await;
    assert_eq!(sub_code(&v), "isv.invalid-parameter:sender");
    assert!(
        env.get("/sandbox/waybills")
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_lost_answer_is_found_by_trade_code_and_a_cancelled_number_is_not() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"oaid": "oaid-Q", "orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    let query = |obj: &str, code: &str| {
        env.call("cainiao.waybill.ii.query.by.tradecode")
            .simplify()
            .p(
                "param_list",
                json!([{"object_id": obj, "biz_sub_code": code}]).to_string(),
            )
    };
    // Nothing issued yet: one module, not found.
    let v = query("q-1", &tid.to_string()).send().await;
    assert_eq!(v["modules"][0]["success"], false, "{v}");
    assert_eq!(v["modules"][0]["object_id"], "q-1");
    // Issued while the caller's connection died: the look-up finds it, with the id of the
    // request that issued it and the same print data.
    let issued = env
        .call("cainiao.waybill.ii.get")
        .simplify()
        .p(
            "param_waybill_cloud_print_apply_new_request",
            waybill_request("YTO", tid, "oaid-Q", "PKG-Q", "PKG-Q"),
        )
        .send()
        .await;
    let m = &issued["modules"][0];
    let v = query("q-2", &tid.to_string()).send().await;
    let found = &v["modules"][0];
    assert_eq!(found["success"], true, "{v}");
    assert_eq!(found["object_id"], "q-2");
    let w = &found["waybill_cloud_print_response"];
    assert_eq!(w["object_id"], "PKG-Q");
    assert_eq!(w["waybill_code"], m["waybill_code"]);
    assert_eq!(w["print_data"], m["print_data"]);
    // The classic envelope wraps the list in its element name.
    let classic = env
        .call("cainiao.waybill.ii.query.by.tradecode")
        .p(
            "param_list",
            json!([{"object_id": "q-3", "biz_sub_code": tid}]).to_string(),
        )
        .send()
        .await;
    assert!(
        classic["cainiao_waybill_ii_query_by_tradecode_response"]["modules"]
            ["waybill_cloud_print_with_result_desc_response"]
            .is_array(),
        "{classic}"
    );
    // Cancelled: no longer found.
    env.call("cainiao.waybill.ii.cancel")
        .p("cp_code", "YTO")
        .p("waybill_code", m["waybill_code"].as_str().unwrap())
        .send()
        .await;
    let v = query("q-4", &tid.to_string()).send().await;
    assert_eq!(v["modules"][0]["success"], false, "{v}");
    // Bad requests name the parameter.
    let v = env
        .call("cainiao.waybill.ii.query.by.tradecode")
        .send()
        .await;
    assert_eq!(
        v["error_response"]["sub_code"],
        "isv.missing-parameter:param_list"
    );
    let v = env
        .call("cainiao.waybill.ii.query.by.tradecode")
        .p("param_list", "[]")
        .send()
        .await;
    assert_eq!(v["error_response"]["code"], 41, "{v}");
}
