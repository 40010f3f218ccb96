//! OAuth end to end against the sandbox: login through a local redirect listener, tokens in
//! the redb store, refresh ahead of expiry and after code 27, refusal, and the reauthorize
//! alert.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod taobao_support;

use std::sync::Arc;
use std::time::Duration;
use taobao_sandbox::{FaultKind, FaultSpec, SandboxConfig, SettingsPatch};
use taobao_support::{APP_KEY, APP_SECRET, Env};
use wms_node::ops::alert::{AlertCode, Alerts};
use wms_node::outbox::{Attempt, Outcome, Sink};
use wms_node::secret::Secret;
use wms_node::store::{Store, StoreOptions};
use wms_node::taobao::login::{LoginError, receive_redirect};
use wms_node::taobao::oauth::{OAuthClient, OAuthError, OAuthOptions, TokenSet};
use wms_node::taobao::outbox::{TaobaoOp, TaobaoSink};
use wms_node::taobao::tokens::{MemoryTokenStore, RedbTokenStore, TokenManager, TokenStore};
use wms_node::taobao::{SessionProvider, SignMethod, TopClient, TopError};

fn oauth(env: &Env, redirect_uri: &str) -> OAuthClient {
    let mut o = OAuthOptions::new(
        env.sandbox.oauth_url(),
        APP_KEY,
        Secret::new(APP_SECRET),
        redirect_uri,
    );
    o.clock = env.clock();
    o.request_timeout = Duration::from_secs(5);
    match OAuthClient::new(o) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

fn settings(env: &Env, patch: SettingsPatch) {
    if let Err(e) = env.sandbox.sandbox().update_settings(patch) {
        panic!("{e}");
    }
}

fn lifetimes(access_s: u64, refresh_s: u64) -> SettingsPatch {
    SettingsPatch {
        access_token_s: Some(access_s),
        refresh_token_s: Some(refresh_s),
        ..Default::default()
    }
}

/// The browser's part: open the authorize URL and follow the redirect to wherever it points.
async fn open_in_browser(url: &str) -> reqwest::Response {
    match reqwest::get(url).await {
        Ok(r) => r,
        Err(e) => panic!("browser: {e}"),
    }
}

/// `auth login`'s flow: listen locally, open the URL, take the code, exchange it.
async fn login(env: &Env) -> (OAuthClient, TokenSet) {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let client = oauth(env, &format!("http://127.0.0.1:{port}/callback"));
    let state = OAuthClient::new_state();
    let url = client.authorize_url(&state);
    let waiting = tokio::spawn({
        let state = state.clone();
        async move { receive_redirect(listener, &state, Duration::from_secs(10)).await }
    });
    let page = open_in_browser(&url).await;
    assert_eq!(page.status(), 200);
    let code = match waiting.await {
        Ok(Ok(code)) => code,
        other => panic!("no code: {other:?}"),
    };
    let tokens = match client.exchange(&code).await {
        Ok(t) => t,
        Err(e) => panic!("exchange: {e}"),
    };
    (client, tokens)
}

fn manager(env: &Env, oauth: OAuthClient, store: Arc<dyn TokenStore>) -> Arc<TokenManager> {
    Arc::new(TokenManager::new(store, Some(oauth), env.alerts.clone()))
}

fn client(env: &Env, tokens: &Arc<TokenManager>) -> TopClient {
    let provider: Arc<dyn SessionProvider> = tokens.clone();
    env.client_with(env.options(SignMethod::HmacSha256), Some(provider))
}

async fn a_call(c: &TopClient) -> Result<(), TopError> {
    c.trades_sold_get(&wms_node::taobao::api::SoldQuery::status(
        "WAIT_SELLER_SEND_GOODS",
    ))
    .await
    .map(|_| ())
}

fn codes(env: &Env) -> Vec<i64> {
    env.calls("taobao.trades.sold.get")
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

#[tokio::test]
async fn login_end_to_end_persists_tokens_that_work_and_survive_a_restart() {
    let env = Env::start().await;
    let (oauth_client, tokens) = login(&env).await;
    assert_eq!(
        tokens.user_nick.as_deref(),
        Some(taobao_sandbox::DEFAULT_SELLER_NICK)
    );
    assert_eq!(
        tokens.user_id,
        Some(taobao_sandbox::DEFAULT_SELLER_ID.to_string())
    );
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let path = dir.path().join(wms_node::store::FILE);
    let store = match Store::open(StoreOptions::new(&path), Alerts::new()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let m = manager(
        &env,
        oauth_client.clone(),
        Arc::new(RedbTokenStore::new(store.clone())),
    );
    if let Err(e) = m.install(tokens.clone()).await {
        panic!("{e}");
    }
    let c = client(&env, &m);
    if let Err(e) = a_call(&c).await {
        panic!("{e}");
    }
    assert_eq!(codes(&env), [0]);
    let _ = store.close().await;
    drop(m);
    drop(c);

    // A restart: a new store handle on the same file finds the same tokens.
    let store = match Store::open(StoreOptions::new(&path), Alerts::new()) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let reloaded = RedbTokenStore::new(store).load();
    let reloaded = match reloaded {
        Ok(Some(t)) => t,
        other => panic!("tokens lost: {other:?}"),
    };
    assert_eq!(reloaded.access_token, tokens.access_token);
    assert_eq!(reloaded.refresh_token, tokens.refresh_token);
    assert_eq!(
        reloaded.expires_at.map(|d| d.timestamp()),
        tokens.expires_at.map(|d| d.timestamp())
    );
    let status = reloaded.status(env.clock().now());
    assert!(status.refreshable && !status.expired);
    assert_eq!(
        status.shop_nick.as_deref(),
        Some(taobao_sandbox::DEFAULT_SELLER_NICK)
    );
}

#[tokio::test]
async fn a_used_or_unknown_code_and_a_wrong_secret_are_refused() {
    let env = Env::start().await;
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let redirect = format!("http://127.0.0.1:{port}/cb");
    let c = oauth(&env, &redirect);
    let state = OAuthClient::new_state();
    let waiting = tokio::spawn({
        let state = state.clone();
        async move { receive_redirect(listener, &state, Duration::from_secs(10)).await }
    });
    open_in_browser(&c.authorize_url(&state)).await;
    let code = match waiting.await {
        Ok(Ok(code)) => code,
        other => panic!("{other:?}"),
    };
    // A wrong secret first (the code stays unused).
    let mut wrong = OAuthOptions::new(
        env.sandbox.oauth_url(),
        APP_KEY,
        Secret::new("nope"),
        redirect.clone(),
    );
    wrong.clock = env.clock();
    let wrong = OAuthClient::new(wrong).unwrap_or_else(|e| panic!("{e}"));
    let e = wrong.exchange(&code).await.err();
    assert!(
        matches!(&e, Some(OAuthError::Refused { error, .. }) if error == "invalid_client"),
        "{e:?}"
    );
    assert!(!e.as_ref().is_some_and(OAuthError::is_retryable));
    // The right secret works once.
    assert!(c.exchange(&code).await.is_ok());
    assert!(matches!(
        c.exchange(&code).await,
        Err(OAuthError::Refused { .. })
    ));
    assert!(matches!(
        c.exchange("not-a-code").await,
        Err(OAuthError::Refused { .. })
    ));
}

#[tokio::test]
async fn a_seller_who_refuses_ends_the_login_with_a_clear_error() {
    let env = Env::with(SandboxConfig {
        oauth_deny: true,
        ..SandboxConfig::default()
    })
    .await;
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let c = oauth(&env, &format!("http://127.0.0.1:{port}/cb"));
    let state = OAuthClient::new_state();
    let waiting = tokio::spawn({
        let state = state.clone();
        async move { receive_redirect(listener, &state, Duration::from_secs(10)).await }
    });
    open_in_browser(&c.authorize_url(&state)).await;
    match waiting.await {
        Ok(Err(LoginError::Denied { error, .. })) => assert_eq!(error, "access_denied"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_near_its_expiry_is_refreshed_before_the_call() {
    let env = Env::start().await;
    settings(&env, lifetimes(1_000, 30 * 86_400));
    let (oauth_client, tokens) = login(&env).await;
    let m = manager(&env, oauth_client, Arc::new(MemoryTokenStore::new()));
    if let Err(e) = m.install(tokens.clone()).await {
        panic!("{e}");
    }
    let c = client(&env, &m);
    assert!(a_call(&c).await.is_ok());
    // 95 % of the lifetime gone: the next call refreshes first and never sees a 27.
    env.advance(950);
    assert!(a_call(&c).await.is_ok());
    assert_eq!(codes(&env), [0, 0]);
    let status = match m.status().await {
        Ok(Some(s)) => s,
        other => panic!("{other:?}"),
    };
    let new_expiry = status.expires_at.map(|d| d.timestamp()).unwrap_or_default();
    let old_expiry = tokens.expires_at.map(|d| d.timestamp()).unwrap_or_default();
    assert!(
        new_expiry >= old_expiry + 900,
        "expiry moved from {old_expiry} to {new_expiry}"
    );
    // Well past the old token's expiry, calls still work.
    env.advance(500);
    assert!(a_call(&c).await.is_ok());
}

#[tokio::test]
async fn a_session_revoked_by_the_platform_is_refreshed_once_after_code_27() {
    let env = Env::start().await;
    let (oauth_client, tokens) = login(&env).await;
    let m = manager(&env, oauth_client, Arc::new(MemoryTokenStore::new()));
    if let Err(e) = m.install(tokens).await {
        panic!("{e}");
    }
    let c = client(&env, &m);
    let spec = FaultSpec {
        kind: FaultKind::ExpireTokens,
        seconds: Some(1),
        count: None,
        methods: None,
        delay_s: None,
        status: None,
        sub_code: None,
        announce_s: None,
    };
    if let Err(e) = env.sandbox.sandbox().add_fault(spec) {
        panic!("{e}");
    }
    assert!(a_call(&c).await.is_ok());
    assert_eq!(codes(&env), [27, 0]);
    assert!(!env.alerts.is_active(AlertCode::Reauthorize));
}

#[tokio::test]
async fn when_refresh_is_impossible_the_node_alerts_pauses_and_stops_calling() {
    let env = Env::start().await;
    settings(&env, lifetimes(86_400, 0));
    let (oauth_client, tokens) = login(&env).await;
    assert!(
        tokens.refresh_token.is_none(),
        "re_expires_in = 0 means no refresh"
    );
    let m = manager(&env, oauth_client, Arc::new(MemoryTokenStore::new()));
    if let Err(e) = m.install(tokens).await {
        panic!("{e}");
    }
    let c = client(&env, &m);
    let spec = FaultSpec {
        kind: FaultKind::ExpireTokens,
        seconds: Some(1),
        count: None,
        methods: None,
        delay_s: None,
        status: None,
        sub_code: None,
        announce_s: None,
    };
    if let Err(e) = env.sandbox.sandbox().add_fault(spec) {
        panic!("{e}");
    }
    let sink = TaobaoSink::new(c.clone(), env.alerts.clone());
    let op = TaobaoOp::SetStock {
        num_iid: 1,
        sku_id: None,
        qty: 1,
        version: 1,
    };
    let attempt = Attempt {
        seq: 1,
        idempotency_key: "k",
        attempt: 1,
        op: &op,
    };
    assert!(matches!(sink.deliver(attempt).await, Outcome::Auth { .. }));
    assert!(env.alerts.is_active(AlertCode::Reauthorize));
    // Later calls fail as Auth at once, without reaching the gateway.
    let before = env.sandbox.sandbox().calls(None).len();
    let e = a_call(&c).await.err();
    assert!(matches!(e, Some(TopError::NoSession { .. })), "{e:?}");
    assert_eq!(env.sandbox.sandbox().calls(None).len(), before);
    // A new login clears the alert and calls flow again.
    let (_, fresh) = login(&env).await;
    if let Err(e) = m.install(fresh).await {
        panic!("{e}");
    }
    assert!(!env.alerts.is_active(AlertCode::Reauthorize));
    assert!(a_call(&c).await.is_ok());
}

#[tokio::test]
async fn an_expired_refresh_token_means_reauthorize_without_a_call() {
    let env = Env::start().await;
    settings(&env, lifetimes(300, 400));
    let (oauth_client, tokens) = login(&env).await;
    let m = manager(&env, oauth_client, Arc::new(MemoryTokenStore::new()));
    if let Err(e) = m.install(tokens).await {
        panic!("{e}");
    }
    let c = client(&env, &m);
    env.advance(500);
    let e = a_call(&c).await.err();
    assert!(matches!(e, Some(TopError::NoSession { .. })), "{e:?}");
    assert!(env.alerts.is_active(AlertCode::Reauthorize));
    assert!(
        codes(&env).is_empty(),
        "no call with a token known to be dead"
    );
}

#[tokio::test]
async fn a_config_session_seeds_the_store_and_is_used() {
    let env = Env::start().await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryTokenStore::new());
    let m = Arc::new(TokenManager::new(store.clone(), None, env.alerts.clone()));
    let seeded = m
        .seed_from_config(Secret::new(taobao_support::SESSION))
        .await;
    assert!(matches!(seeded, Ok(true)));
    assert!(a_call(&client(&env, &m)).await.is_ok());
    let status = match m.status().await {
        Ok(Some(s)) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(status.origin, "config");
    assert!(!status.refreshable && !status.expired);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_after_code_27_is_a_retry_not_a_pause() {
    let env = Env::start().await;
    let (oauth_client, tokens) = login(&env).await;
    let m = manager(&env, oauth_client, Arc::new(MemoryTokenStore::new()));
    if let Err(e) = m.install(tokens).await {
        panic!("{e}");
    }
    let c = client(&env, &m);
    let fault = |kind, methods: Option<Vec<String>>| FaultSpec {
        kind,
        seconds: Some(60),
        count: None,
        methods,
        delay_s: None,
        status: None,
        sub_code: None,
        announce_s: None,
    };
    let sb = env.sandbox.sandbox();
    for f in [
        fault(FaultKind::ExpireTokens, None),
        fault(FaultKind::Outage, Some(vec!["oauth.token".into()])),
    ] {
        if let Err(e) = sb.add_fault(f) {
            panic!("{e}");
        }
    }
    let e = a_call(&c).await.err();
    assert!(e.as_ref().is_some_and(TopError::is_retryable), "{e:?}");
    assert!(!env.alerts.is_active(AlertCode::Reauthorize));
    // The endpoint is back: the next attempt refreshes and succeeds.
    sb.clear_faults();
    assert!(a_call(&c).await.is_ok());
    assert_eq!(codes(&env), [27, 27, 0]);
}
