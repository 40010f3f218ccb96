//! The gateway checks of TAOBAO.md §1.7, one by one and in order, over real HTTP.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;
use taobao_sandbox::sign::SignMethod;
use taobao_sandbox::{AppCredentials, SandboxConfig};

const COMPANIES: &str = "taobao.logistics.companies.get";
const FULLINFO: &str = "taobao.trade.fullinfo.get";

fn err(v: &Value) -> (i64, String, String) {
    let e = &v["error_response"];
    (
        e["code"].as_i64().unwrap_or(0),
        e["msg"].as_str().unwrap_or("").to_string(),
        e["sub_code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn a_correct_signed_call_succeeds_and_every_reply_has_a_fresh_request_id() {
    let env = start().await;
    let a = env
        .call(COMPANIES)
        .p("fields", "code,reg_mail_no")
        .send()
        .await;
    let b = env.call(COMPANIES).p("fields", "code").send().await;
    let ra = a["logistics_companies_get_response"]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rb = b["logistics_companies_get_response"]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(ra, rb);
    let e = env.call("taobao.nope").send().await;
    assert!(
        e["error_response"]["request_id"]
            .as_str()
            .is_some_and(|s| s.len() >= 12)
    );
}

#[tokio::test]
async fn verbs_other_than_get_and_post_answer_9() {
    let env = start().await;
    let v = env
        .call(COMPANIES)
        .p("fields", "code")
        .verb(reqwest::Method::PUT)
        .send()
        .await;
    assert_eq!(err(&v).0, 9);
    assert_eq!(err(&v).1, "Http Action Not Allowed");
    let ok = env
        .call(COMPANIES)
        .p("fields", "code")
        .verb(reqwest::Method::GET)
        .send()
        .await;
    assert_eq!(code(&ok), 0, "GET with everything in the query works: {ok}");
}

#[tokio::test]
async fn method_is_checked_first_21_then_22() {
    let env = start().await;
    // Nothing else is valid either, yet the method check answers first.
    let v = env
        .call(COMPANIES)
        .without("method")
        .without("app_key")
        .unsigned()
        .send()
        .await;
    assert_eq!(err(&v), (21, "Missing method".into(), String::new()));
    let v = env
        .call("taobao.no.such.api")
        .without("app_key")
        .send()
        .await;
    assert_eq!(err(&v), (22, "Invalid method".into(), String::new()));
}

#[tokio::test]
async fn app_key_is_checked_next_28_then_29() {
    let env = start().await;
    let v = env
        .call(COMPANIES)
        .p("fields", "code")
        .without("app_key")
        .without("timestamp")
        .send()
        .await;
    assert_eq!(err(&v).0, 28);
    let v = env
        .call(COMPANIES)
        .p("fields", "code")
        .p("app_key", "99999999")
        .without("timestamp")
        .send()
        .await;
    assert_eq!(
        err(&v),
        (29, "Invalid app Key".into(), "isv.appkey-not-exists".into())
    );
}

#[tokio::test]
async fn timestamps_are_checked_in_both_forms_with_ten_minutes_of_skew() {
    let env = start().await;
    let v = env
        .call(COMPANIES)
        .p("fields", "code")
        .without("timestamp")
        .without("v")
        .send()
        .await;
    assert_eq!(err(&v).0, 30);
    let v = env
        .call(COMPANIES)
        .p("fields", "code")
        .p("timestamp", "2026/11/29 12:00")
        .without("v")
        .send()
        .await;
    assert_eq!(err(&v).0, 31);
    assert_eq!(err(&v).1, "Invalid timestamp");
    let now_ms = env.sb().clock.now_ms();
    for (offset_s, ok) in [(-590i64, true), (590, true), (-660, false), (660, false)] {
        let ts = (now_ms + offset_s * 1000).to_string();
        let v = env
            .call(COMPANIES)
            .p("fields", "code")
            .p("timestamp", ts)
            .send()
            .await;
        assert_eq!(
            code(&v) == 0,
            ok,
            "epoch-ms timestamp {offset_s} s away: {v}"
        );
        let gmt8 = chrono::DateTime::from_timestamp_millis(now_ms + offset_s * 1000)
            .unwrap()
            .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let v = env
            .call(COMPANIES)
            .p("fields", "code")
            .p("timestamp", gmt8)
            .send()
            .await;
        assert_eq!(code(&v) == 0, ok, "GMT+8 timestamp {offset_s} s away: {v}");
    }
}

#[tokio::test]
async fn version_then_format_are_checked_32_33_34_23() {
    let env = start().await;
    let v = env
        .call(COMPANIES)
        .without("v")
        .p("format", "yaml")
        .send()
        .await;
    assert_eq!(err(&v).0, 32);
    let v = env
        .call(COMPANIES)
        .p("v", "two")
        .p("format", "yaml")
        .send()
        .await;
    assert_eq!(err(&v).0, 33);
    let v = env.call(COMPANIES).p("v", "1.0").send().await;
    assert_eq!(err(&v).0, 34);
    let v = env
        .call(COMPANIES)
        .p("format", "yaml")
        .unsigned()
        .send()
        .await;
    assert_eq!(err(&v), (23, "Invalid format".into(), String::new()));
}

#[tokio::test]
async fn a_missing_sign_is_24_and_a_wrong_one_25_for_every_method() {
    let env = start().await;
    let v = env
        .call(FULLINFO)
        .p("tid", 1)
        .without("session")
        .unsigned()
        .send()
        .await;
    assert_eq!(err(&v), (24, "Missing signature".into(), String::new()));
    for m in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
        let ok = env
            .call(COMPANIES)
            .p("fields", "code")
            .sign_method(m)
            .send()
            .await;
        assert_eq!(code(&ok), 0, "{m:?} verifies: {ok}");
        // Signature is checked before the session: a bad signature without session is 25.
        let v = env
            .call(FULLINFO)
            .p("tid", 1)
            .without("session")
            .sign_method(m)
            .secret("helloworle")
            .send()
            .await;
        assert_eq!(
            err(&v),
            (25, "Invalid signature".into(), String::new()),
            "{m:?}"
        );
    }
    let v = env
        .call(COMPANIES)
        .p("fields", "code")
        .sign_method(SignMethod::HmacSha256)
        .p("sign_method", "sha1")
        .send()
        .await;
    assert_eq!(err(&v).0, 25);
    let ok = env
        .call(COMPANIES)
        .p("fields", "code")
        .no_sign_method()
        .send()
        .await;
    assert_eq!(code(&ok), 0, "an absent sign_method means md5: {ok}");
}

#[tokio::test]
async fn the_signature_is_compared_without_regard_to_hex_case() {
    let env = start().await;
    let call = env.call(COMPANIES).p("fields", "code");
    let lower = call.signed_params()["sign"].to_ascii_lowercase();
    let v = env
        .call(COMPANIES)
        .p("fields", "code")
        .sign_with(&lower)
        .send()
        .await;
    assert_eq!(code(&v), 0, "{v}");
}

#[tokio::test]
async fn sessions_are_checked_26_then_27_with_the_real_sub_codes() {
    let cfg = SandboxConfig {
        other_apps: vec![AppCredentials {
            app_key: "87654321".into(),
            app_secret: "otherapp".into(),
        }],
        ..config()
    };
    let env = start_with(cfg).await;
    let v = env
        .call(FULLINFO)
        .p("fields", "tid")
        .p("tid", 1)
        .without("session")
        .send()
        .await;
    assert_eq!(err(&v), (26, "Missing session".into(), String::new()));
    let v = env
        .call(FULLINFO)
        .p("fields", "tid")
        .p("tid", 1)
        .p("session", "made-up")
        .send()
        .await;
    assert_eq!(
        err(&v),
        (27, "Invalid session".into(), "invalid-sessionkey".into())
    );
    let v = env
        .call(FULLINFO)
        .p("fields", "tid")
        .p("tid", 1)
        .p("app_key", "87654321")
        .secret("otherapp")
        .send()
        .await;
    assert_eq!(err(&v).2, "sessionkey-not-generated-by-server", "{v}");
    assert!(
        v["error_response"]["sub_msg"]
            .as_str()
            .unwrap()
            .contains("87654321")
    );
    // A session that expires: issue one for 60 s and move the clock.
    env.sb().issue_session("short-lived", 60);
    let ok = env
        .call(FULLINFO)
        .p("fields", "tid")
        .p("tid", 1)
        .p("session", "short-lived")
        .send()
        .await;
    assert_ne!(err(&ok).0, 27);
    env.post("/sandbox/clock", serde_json::json!({"advance_s": 61}))
        .await;
    let v = env
        .call(FULLINFO)
        .p("fields", "tid")
        .p("tid", 1)
        .p("session", "short-lived")
        .send()
        .await;
    assert_eq!(err(&v).2, "session-expired");
}

#[tokio::test]
async fn apis_without_a_session_requirement_ignore_its_absence() {
    let env = start().await;
    let v = env
        .call(COMPANIES)
        .p("fields", "code")
        .without("session")
        .send()
        .await;
    assert_eq!(code(&v), 0, "{v}");
}

#[tokio::test]
async fn business_parameters_are_checked_last_40_then_41() {
    let env = start().await;
    let v = env.call(FULLINFO).p("tid", 1).send().await;
    assert_eq!(
        err(&v),
        (
            40,
            "Missing required arguments:fields".into(),
            "isv.missing-parameter:fields".into()
        )
    );
    let v = env
        .call(FULLINFO)
        .p("fields", "tid")
        .p("tid", "12x")
        .send()
        .await;
    assert_eq!(
        err(&v),
        (
            41,
            "Invalid arguments:tid".into(),
            "isv.invalid-parameter:tid".into()
        )
    );
    let v = env
        .call(FULLINFO)
        .p("fields", "tid")
        .p("tid", "1")
        .send()
        .await;
    assert_eq!((err(&v).0, err(&v).2), (15, "isv.trade-not-exist".into()));
}

#[tokio::test]
async fn the_call_limiter_answers_7_with_the_ban_seconds() {
    let cfg = SandboxConfig {
        rate_per_second: Some(2.0),
        ..config()
    };
    let env = start_with(cfg).await;
    let mut limited = None;
    for _ in 0..5 {
        let v = env.call(COMPANIES).p("fields", "code").send().await;
        if code(&v) == 7 {
            limited = Some(v);
            break;
        }
    }
    let v = limited.expect("a burst beyond the rate is limited");
    assert_eq!(
        err(&v),
        (
            7,
            "App Call Limited".into(),
            "accesscontrol.limited-by-app-api-access-count".into()
        )
    );
    let sub_msg = v["error_response"]["sub_msg"].as_str().unwrap();
    let re = regex::Regex::new(r"This ban will last for (\d+) more seconds").unwrap();
    let secs: u64 = re.captures(sub_msg).expect("ban seconds")[1]
        .parse()
        .unwrap();
    assert!(secs >= 1);
    // Per (app, method): another API still has its own bucket.
    let other = env
        .call("taobao.trades.sold.get")
        .p("fields", "tid")
        .send()
        .await;
    assert_eq!(code(&other), 0, "{other}");
    // Limited calls are in the log with their code.
    let calls = env.sb().calls(Some(COMPANIES));
    assert!(calls.iter().any(|c| c.code == 7));
}

#[tokio::test]
async fn query_and_body_merge_with_the_body_winning() {
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(serde_json::json!({"orders": [{"num_iid": MUG, "num": 1}]}))
        .await;
    // Sign the value the body carries; put a different one in the query.
    let call = env.call(FULLINFO).p("fields", "tid,status").p("tid", tid);
    let p = call.signed_params();
    let mut query: Vec<(&str, &str)> = p
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .filter(|(k, _)| *k != "tid")
        .collect();
    query.push(("tid", "1"));
    let url = format!("{}?{}", env.handle.rest_url(), form_encode(query, true));
    let body = form_encode([("tid", p["tid"].as_str())], true);
    let v: Value = env
        .http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["trade_fullinfo_get_response"]["trade"]["tid"], tid, "{v}");
}

#[tokio::test]
async fn plus_and_percent_20_both_decode_to_the_space_of_the_timestamp() {
    let env = start().await;
    for plus in [true, false] {
        let call = env.call(COMPANIES).p("fields", "code,name");
        let p = call.signed_params();
        let body = form_encode(p.iter().map(|(k, v)| (k.as_str(), v.as_str())), plus);
        assert_eq!(body.contains('+'), plus);
        let v: Value = env
            .http
            .post(env.handle.rest_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(code(&v), 0, "plus={plus}: {v}");
    }
}

#[tokio::test]
async fn bytes_that_are_not_utf8_answer_47() {
    let env = start().await;
    let v: Value = env
        .http
        .post(format!("{}?method=%C4%E3", env.handle.rest_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(err(&v).0, 47);
}

#[tokio::test]
async fn without_format_the_reply_is_xml() {
    let env = start().await;
    let resp = env
        .call(COMPANIES)
        .p("fields", "code")
        .without("format")
        .raw()
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("<logistics_companies_get_response><logistics_companies list=\"true\"><logistics_company><code>"), "{text}");
    let resp = env.call("taobao.nope").without("format").raw().await;
    let text = resp.text().await.unwrap();
    assert!(text.contains("<error_response><code>22</code>"), "{text}");
}

/// A request laid out exactly as the official Python SDK (`top/api/base.py`) does it: system
/// parameters (epoch-ms timestamp, md5, partner_id) urlencoded into the query, business
/// parameters urlencoded into the body, signed by the SDK's own rule (reimplemented here, not
/// the sandbox's signer).
#[tokio::test]
async fn a_request_built_like_the_python_sdk_is_accepted_and_one_wrong_secret_byte_is_25() {
    use md5::{Digest, Md5};
    let env = start().await;
    env.seed_items().await;
    let (tid, _) = env
        .trade(serde_json::json!({"orders": [{"num_iid": MUG, "num": 2}]}))
        .await;
    let python_sign = |secret: &str, params: &BTreeMap<&str, String>| {
        let joined: String = params.iter().map(|(k, v)| format!("{k}{v}")).collect();
        hex::encode_upper(Md5::digest(format!("{secret}{joined}{secret}").as_bytes()))
    };
    for (secret, want) in [(SECRET, 0), ("helloworlD", 25)] {
        let mut sys: BTreeMap<&str, String> = BTreeMap::new();
        sys.insert("format", "json".into());
        sys.insert("app_key", APP_KEY.into());
        sys.insert("sign_method", "md5".into());
        sys.insert("v", "2.0".into());
        sys.insert("timestamp", env.sb().clock.now_ms().to_string());
        sys.insert("partner_id", "top-sdk-python-20180413".into());
        sys.insert("method", FULLINFO.into());
        sys.insert("session", SESSION.into());
        let app: Vec<(&str, String)> = vec![
            ("fields", "tid,status,orders.num".into()),
            ("tid", tid.to_string()),
        ];
        let mut all = sys.clone();
        for (k, v) in &app {
            all.insert(k, v.clone());
        }
        sys.insert("sign", python_sign(secret, &all));
        let url = format!(
            "{}?{}",
            env.handle.rest_url(),
            form_encode(sys.iter().map(|(k, v)| (*k, v.as_str())), true)
        );
        let body = form_encode(app.iter().map(|(k, v)| (*k, v.as_str())), true);
        let v: Value = env
            .http
            .post(url)
            .header(
                "Content-type",
                "application/x-www-form-urlencoded;charset=UTF-8",
            )
            .header("Cache-Control", "no-cache")
            .header("Connection", "Keep-Alive")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(code(&v), want, "secret {secret}: {v}");
        if want == 0 {
            assert_eq!(
                v["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0]["num"],
                2
            );
        }
    }
}

#[tokio::test]
async fn every_call_lands_in_the_call_log_with_its_code() {
    let env = start().await;
    env.call(COMPANIES).p("fields", "code").send().await;
    env.call(COMPANIES)
        .p("fields", "code")
        .secret("x")
        .send()
        .await;
    let (s, calls) = env
        .get("/sandbox/calls?method=taobao.logistics.companies.get")
        .await;
    assert_eq!(s, 200);
    let codes: Vec<i64> = calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, vec![0, 25]);
    assert!(calls[0]["at"].as_str().unwrap().ends_with('Z'));
}
