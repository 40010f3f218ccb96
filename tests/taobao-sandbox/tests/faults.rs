//! Injected faults over real HTTP: outage, 5xx, slow replies, resets, bans, isp errors, and the
//! sandbox clock that ends them.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const COMPANIES: &str = "taobao.logistics.companies.get";

async fn companies(env: &Env) -> Result<reqwest::Response, reqwest::Error> {
    let call = env.call(COMPANIES).p("fields", "code");
    let p = call.signed_params();
    env.http
        .post(env.handle.rest_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(
            p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            true,
        ))
        .send()
        .await
}

#[tokio::test]
async fn an_outage_closes_connections_without_a_reply_while_the_admin_api_stays_up() {
    let env = start().await;
    let (s, f) = env
        .post("/sandbox/faults", json!({"kind": "outage", "seconds": 30}))
        .await;
    assert_eq!(s, 201, "{f}");
    let r = companies(&env).await;
    assert!(
        r.is_err(),
        "no HTTP reply during an outage: {:?}",
        r.map(|r| r.status())
    );
    let (s, active) = env.get("/sandbox/faults").await;
    assert_eq!(s, 200);
    assert_eq!(active[0]["kind"], "outage");
    // The outage runs on the sandbox clock: moving it past the end restores service.
    env.post("/sandbox/clock", json!({"advance_s": 31})).await;
    assert_eq!(companies(&env).await.unwrap().status().as_u16(), 200);
    let calls = env.sb().calls(Some(COMPANIES));
    assert_eq!(calls[0].code, -1);
    assert_eq!(calls[0].fault.as_deref(), Some("outage"));
    assert_eq!(calls[1].code, 0);
}

#[tokio::test]
async fn deleting_faults_ends_them_at_once() {
    let env = start().await;
    let (s, f) = env
        .post(
            "/sandbox/faults",
            json!({"kind": "http_500", "seconds": 600}),
        )
        .await;
    assert_eq!((s, f["kind"].clone()), (201, json!("http_500")));
    assert_eq!(companies(&env).await.unwrap().status().as_u16(), 500);
    let (s, _) = env
        .admin(reqwest::Method::DELETE, "/sandbox/faults", None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(companies(&env).await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn http_5xx_faults_answer_the_given_status_without_processing() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    env.post("/sandbox/faults", json!({"kind": "http_500", "status": 502, "count": 1, "methods": ["taobao.logistics.offline.send"]})).await;
    let ship = || {
        env.call("taobao.logistics.offline.send")
            .p("tid", tid)
            .p("out_sid", "YT1234567890123")
            .p("company_code", "YTO")
    };
    let r = ship().raw().await;
    assert_eq!(r.status().as_u16(), 502);
    assert!(r.text().await.unwrap().contains("<html>"));
    assert!(env.sb().shipments().is_empty(), "a 5xx is not processed");
    // Other methods were never affected, and the count is used up.
    assert_eq!(companies(&env).await.unwrap().status().as_u16(), 200);
    let v = ship().send().await;
    assert_eq!(code(&v), 0, "{v}");
}

#[tokio::test]
async fn a_reset_applies_the_call_then_cuts_the_connection_so_a_retry_sees_b04() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    env.post(
        "/sandbox/faults",
        json!({"kind": "reset", "count": 1, "methods": ["taobao.logistics.offline.send"]}),
    )
    .await;
    let ship = || {
        env.call("taobao.logistics.offline.send")
            .p("tid", tid)
            .p("out_sid", "YT1234567890123")
            .p("company_code", "YTO")
    };
    let call = ship();
    let p = call.signed_params();
    let r = env
        .http
        .post(env.handle.rest_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(
            p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            true,
        ))
        .send()
        .await;
    assert!(r.is_err(), "the reply is lost");
    assert_eq!(env.sb().shipments().len(), 1, "but the shipment happened");
    let v = ship().send().await;
    assert_eq!(sub_code(&v), "isv.logistics-offline-service-error:B04");
    let calls = env.sb().calls(Some("taobao.logistics.offline.send"));
    assert_eq!(calls[0].fault.as_deref(), Some("reset"));
    assert_eq!(calls[0].code, 0);
}

#[tokio::test]
async fn a_slow_reply_outlasts_a_client_timeout() {
    let env = start().await;
    env.post(
        "/sandbox/faults",
        json!({"kind": "slow", "count": 1, "delay_s": 3}),
    )
    .await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let call = env.call(COMPANIES).p("fields", "code");
    let p = call.signed_params();
    let started = Instant::now();
    let r = client
        .post(env.handle.rest_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(
            p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            true,
        ))
        .send()
        .await;
    assert!(r.as_ref().is_err_and(|e| e.is_timeout()), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The next call is unaffected.
    assert_eq!(companies(&env).await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn an_app_ban_answers_7_with_the_remaining_seconds_on_every_api() {
    let env = start().await;
    let (s, _) = env
        .post("/sandbox/faults", json!({"kind": "ban", "seconds": 120}))
        .await;
    assert_eq!(s, 201);
    let v = env.call(COMPANIES).p("fields", "code").send().await;
    assert_eq!(code(&v), 7);
    assert_eq!(sub_code(&v), "accesscontrol.limited-by-app-access-count");
    let msg = v["error_response"]["sub_msg"].as_str().unwrap();
    let re = regex::Regex::new(r"^This ban will last for (\d+) more seconds$").unwrap();
    let n: u64 = re.captures(msg).expect(msg)[1].parse().unwrap();
    assert!((119..=120).contains(&n), "{n}");
    env.post("/sandbox/clock", json!({"advance_s": 100})).await;
    let v = env
        .call("taobao.trades.sold.get")
        .p("fields", "tid")
        .send()
        .await;
    let n: u64 = re
        .captures(v["error_response"]["sub_msg"].as_str().unwrap())
        .unwrap()[1]
        .parse()
        .unwrap();
    assert!((19..=20).contains(&n), "{n}");
    env.post("/sandbox/clock", json!({"advance_s": 21})).await;
    assert_eq!(
        code(&env.call(COMPANIES).p("fields", "code").send().await),
        0
    );
}

#[tokio::test]
async fn hostile_lengths_are_taken_and_a_ban_can_announce_u64_max_seconds() {
    let env = start().await;
    // Lengths beyond the clock's range mean "forever", never an overflow.
    for seconds in [u64::MAX, i64::MAX as u64, 1 << 62] {
        let (s, f) = env
            .post(
                "/sandbox/faults",
                json!({"kind": "http_500", "seconds": seconds, "count": u32::MAX}),
            )
            .await;
        assert_eq!(s, 201, "{f}");
    }
    assert_eq!(companies(&env).await.unwrap().status().as_u16(), 500);
    env.admin(reqwest::Method::DELETE, "/sandbox/faults", None)
        .await;
    let (s, f) = env
        .post(
            "/sandbox/faults",
            json!({"kind": "ban", "count": 1, "announce_s": u64::MAX}),
        )
        .await;
    assert_eq!(s, 201, "{f}");
    let v = env.call(COMPANIES).p("fields", "code").send().await;
    assert_eq!(code(&v), 7);
    assert_eq!(
        v["error_response"]["sub_msg"],
        format!("This ban will last for {} more seconds", u64::MAX)
    );
}

#[tokio::test]
async fn a_per_api_ban_and_an_isp_error_touch_only_their_methods() {
    let env = start().await;
    env.post(
        "/sandbox/faults",
        json!({"kind": "ban", "seconds": 5, "methods": ["taobao.trades.sold.get"]}),
    )
    .await;
    env.post(
        "/sandbox/faults",
        json!({"kind": "isp_error", "count": 1, "methods": [COMPANIES]}),
    )
    .await;
    let v = env
        .call("taobao.trades.sold.get")
        .p("fields", "tid")
        .send()
        .await;
    assert_eq!(
        (code(&v), sub_code(&v)),
        (7, "accesscontrol.limited-by-api-access-count".into())
    );
    let v = env.call(COMPANIES).p("fields", "code").send().await;
    assert_eq!(
        (code(&v), sub_code(&v)),
        (15, "isp.top-remote-service-unavailable".into())
    );
    assert_eq!(
        code(&env.call(COMPANIES).p("fields", "code").send().await),
        0,
        "count used up"
    );
    // Bans come after the signature check: a badly signed call is still 25.
    let v = env
        .call("taobao.trades.sold.get")
        .p("fields", "tid")
        .secret("x")
        .send()
        .await;
    assert_eq!(code(&v), 25);
}

#[tokio::test]
async fn bad_fault_requests_are_400_with_a_json_message() {
    let env = start().await;
    for body in [
        json!({"kind": "outage"}),
        json!({"kind": "meteor", "seconds": 1}),
        json!({"kind": "http_500", "seconds": 1, "status": 404}),
        json!({"kind": "isp_error", "count": 1, "sub_code": "isv.nope"}),
    ] {
        let (s, e) = env.post("/sandbox/faults", body.clone()).await;
        assert_eq!(s, 400, "{body}");
        assert!(e["error"].is_string());
    }
}

#[tokio::test]
async fn request_timestamps_are_checked_against_the_sandbox_clock() {
    let env = start().await;
    let host_now = env.call(COMPANIES).p("fields", "code").params["timestamp"].clone();
    env.post("/sandbox/clock", json!({"advance_s": 3600})).await;
    let v = env
        .call(COMPANIES)
        .p("fields", "code")
        .p("timestamp", host_now)
        .send()
        .await;
    assert_eq!(code(&v), 31, "an hour behind the sandbox clock");
    let v = env.call(COMPANIES).p("fields", "code").send().await;
    assert_eq!(code(&v), 0);
    let (s, c) = env.get("/sandbox/clock").await;
    assert_eq!(s, 200);
    assert!(c["now"].is_string() && c["now_ms"].is_i64());
    let (s, _) = env.post("/sandbox/clock", json!({"advance_s": -5})).await;
    assert_eq!(s, 400, "the clock never goes back");
}

#[tokio::test]
async fn admin_errors_are_json_400_404_409() {
    let env = start().await;
    let (s, e) = env.get("/sandbox/items/123").await;
    assert_eq!(s, 404);
    assert!(e["error"].is_string());
    let (s, _) = env.get("/sandbox/items/abc").await;
    assert_eq!(s, 400);
    let (s, _) = env.get("/sandbox/nothing-here").await;
    assert_eq!(s, 404);
    let (s, _) = env.post("/sandbox/items", json!({"title": "no id"})).await;
    assert_eq!(s, 400);
    let (s, _) = env
        .post(
            "/sandbox/trades",
            json!({"orders": [{"num_iid": 1, "num": 1}]}),
        )
        .await;
    assert_eq!(s, 400);
    env.seed_items().await;
    let (s, _) = env
        .post("/sandbox/items", json!({"num_iid": MUG, "title": "dup"}))
        .await;
    assert_eq!(s, 409);
    let (s, _) = env
        .post(
            "/sandbox/trades",
            json!({"orders": [{"num_iid": T_SHIRT, "num": 1}]}),
        )
        .await;
    assert_eq!(s, 400, "an item with SKUs needs sku_id");
    let (s, _) = env.post("/sandbox/trades/5/pay", json!({})).await;
    assert_eq!(s, 404);
}
