//! OAuth 2.0 end to end: authorize → code → token → gateway; refusal, reuse, expiry, bad
//! secret, refresh (and apps that cannot refresh), expired tokens at the gateway.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{Value, json};
use taobao_sandbox::{SandboxConfig, TokenLifetimes};

const CB: &str = "http://127.0.0.1:1/callback";

/// Follows `/oauth/authorize` and returns the redirect's query pairs.
async fn authorize(env: &Env, state: &str) -> Vec<(String, String)> {
    let url = format!(
        "{}/authorize?response_type=code&client_id={APP_KEY}&redirect_uri={}&state={state}&view=web",
        env.handle.oauth_url(),
        form_encode([("x", CB)], false).trim_start_matches("x=")
    );
    let resp = env.http.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let (base, query) = location.split_once('?').expect("query");
    assert_eq!(base, CB);
    taobao_sandbox::params::decode_form(query.as_bytes())
        .unwrap()
        .into_iter()
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

async fn token(env: &Env, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = env
        .http
        .post(format!("{}/token", env.handle.oauth_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(form.iter().copied(), true))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

async fn exchange(env: &Env, code: &str) -> (u16, Value) {
    token(
        env,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", APP_KEY),
            ("client_secret", SECRET),
            ("redirect_uri", CB),
        ],
    )
    .await
}

async fn fullinfo_code(env: &Env, session: &str) -> (i64, String) {
    let v = env
        .call("taobao.trade.fullinfo.get")
        .p("fields", "tid")
        .p("tid", 1)
        .p("session", session)
        .send()
        .await;
    (code(&v), sub_code(&v))
}

#[tokio::test]
async fn the_code_flow_issues_a_token_the_gateway_accepts() {
    let env = start().await;
    let q = authorize(&env, "csrf-1").await;
    assert_eq!(get(&q, "state"), Some("csrf-1"));
    let code = get(&q, "code").expect("code").to_string();
    let (s, t) = exchange(&env, &code).await;
    assert_eq!(s, 200, "{t}");
    for k in [
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "re_expires_in",
        "r1_expires_in",
        "w2_expires_in",
        "taobao_user_id",
        "taobao_user_nick",
        "expire_time",
    ] {
        assert!(t.get(k).is_some(), "token has {k}: {t}");
    }
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 86_400);
    assert_eq!(
        t["taobao_user_nick"], "%E6%B2%99%E7%AE%B1%E6%B5%8B%E8%AF%95%E5%BA%97",
        "URL-encoded nick"
    );
    let access = t["access_token"].as_str().unwrap();
    // 15 trade-not-exist means the session passed checks 9 and 10.
    assert_eq!(
        fullinfo_code(&env, access).await,
        (15, "isv.trade-not-exist".into())
    );
}

#[tokio::test]
async fn codes_are_single_use_and_expire() {
    let env = start().await;
    let code = get(&authorize(&env, "s").await, "code")
        .unwrap()
        .to_string();
    assert_eq!(exchange(&env, &code).await.0, 200);
    let (s, e) = exchange(&env, &code).await;
    assert_eq!(s, 400);
    assert_eq!(e["error"], "invalid_client");
    assert!(e["error_description"].is_string());
    let late = get(&authorize(&env, "s").await, "code")
        .unwrap()
        .to_string();
    env.post("/sandbox/clock", json!({"advance_s": 1801})).await;
    let (s, e) = exchange(&env, &late).await;
    assert_eq!((s, e["error"].clone()), (400, json!("invalid_client")));
    let (s, _) = exchange(&env, "no-such-code").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn a_wrong_client_secret_or_client_id_is_invalid_client() {
    let env = start().await;
    let code = get(&authorize(&env, "s").await, "code")
        .unwrap()
        .to_string();
    let (s, e) = token(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", APP_KEY),
            ("client_secret", "helloworle"),
        ],
    )
    .await;
    assert_eq!((s, e["error"].clone()), (400, json!("invalid_client")));
    let (s, _) = token(
        &env,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", "999"),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(s, 400);
    // The code was not burnt by the failed attempts.
    assert_eq!(exchange(&env, &code).await.0, 200);
}

#[tokio::test]
async fn refusal_redirects_with_access_denied() {
    let env = start().await;
    let (s, _) = env
        .post("/sandbox/config", json!({"oauth_deny": true}))
        .await;
    assert_eq!(s, 200);
    let q = authorize(&env, "st").await;
    assert_eq!(get(&q, "error"), Some("access_denied"));
    assert_eq!(get(&q, "error_description"), Some("authorize reject"));
    assert_eq!(get(&q, "state"), Some("st"));
    assert_eq!(get(&q, "code"), None);
}

#[tokio::test]
async fn refresh_rotates_tokens_and_expired_tokens_fail_at_the_gateway_with_27() {
    let cfg = SandboxConfig {
        token_lifetimes: TokenLifetimes {
            access_s: 600,
            ..TokenLifetimes::default()
        },
        ..config()
    };
    let env = start_with(cfg).await;
    let code = get(&authorize(&env, "s").await, "code")
        .unwrap()
        .to_string();
    let (_, t) = exchange(&env, &code).await;
    let access = t["access_token"].as_str().unwrap().to_string();
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(t["re_expires_in"], 30 * 86_400);
    env.post("/sandbox/clock", json!({"advance_s": 601})).await;
    assert_eq!(
        fullinfo_code(&env, &access).await,
        (27, "session-expired".into())
    );
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("client_id", APP_KEY),
        ("client_secret", SECRET),
    ];
    let (s, t2) = token(&env, &form).await;
    assert_eq!(s, 200, "{t2}");
    let fresh = t2["access_token"].as_str().unwrap();
    assert_ne!(fresh, access);
    assert_eq!(fullinfo_code(&env, fresh).await.0, 15);
    let (s, e) = token(&env, &form).await;
    assert_eq!(
        (s, e["error"].clone()),
        (400, json!("invalid_client")),
        "refresh tokens are single use"
    );
}

#[tokio::test]
async fn apps_that_cannot_refresh_get_re_expires_in_zero_and_a_refusal() {
    let cfg = SandboxConfig {
        token_lifetimes: TokenLifetimes {
            refresh_s: 0,
            ..TokenLifetimes::default()
        },
        ..config()
    };
    let env = start_with(cfg).await;
    let code = get(&authorize(&env, "s").await, "code")
        .unwrap()
        .to_string();
    let (_, t) = exchange(&env, &code).await;
    assert_eq!(t["re_expires_in"], 0);
    let rt = t["refresh_token"].as_str().unwrap();
    let (s, _) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", APP_KEY),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn the_expire_tokens_fault_expires_every_session_but_refresh_still_works() {
    let env = start().await;
    let code = get(&authorize(&env, "s").await, "code")
        .unwrap()
        .to_string();
    let (_, t) = exchange(&env, &code).await;
    let (s, _) = env
        .post("/sandbox/faults", json!({"kind": "expire_tokens"}))
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        fullinfo_code(&env, t["access_token"].as_str().unwrap()).await,
        (27, "session-expired".into())
    );
    assert_eq!(
        fullinfo_code(&env, SESSION).await,
        (27, "session-expired".into()),
        "pre-issued sessions too"
    );
    let rt = t["refresh_token"].as_str().unwrap();
    let (s, t2) = token(
        &env,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", APP_KEY),
            ("client_secret", SECRET),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        fullinfo_code(&env, t2["access_token"].as_str().unwrap())
            .await
            .0,
        15
    );
}

#[tokio::test]
async fn the_gateway_token_create_returns_token_result_as_a_json_string() {
    let env = start().await;
    let code = get(&authorize(&env, "s").await, "code")
        .unwrap()
        .to_string();
    let v = env
        .call("taobao.top.auth.token.create")
        .without("session")
        .p("code", &code)
        .send()
        .await;
    let tr = v["top_auth_token_create_response"]["token_result"]
        .as_str()
        .expect("a string");
    let t: Value = serde_json::from_str(tr).unwrap();
    assert!(t["access_token"].is_string());
}

#[tokio::test]
async fn authorize_rejects_unknown_clients_and_other_response_types() {
    let env = start().await;
    let base = env.handle.oauth_url();
    let r = env
        .http
        .get(format!(
            "{base}/authorize?response_type=code&client_id=1&redirect_uri=http://x/"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = env
        .http
        .get(format!(
            "{base}/authorize?response_type=token&client_id={APP_KEY}&redirect_uri=http://x/"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}
