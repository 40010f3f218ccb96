//! What the Taobao client logs: method, request id, code, sub_code and latency for every
//! call, and never the app secret, a session, a refresh token, an authorization code or a
//! receiver field — not at TRACE level, not in errors, not on any path (success, code 7,
//! code 25, code 27 with refresh, B04, a transport failure, OAuth).

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod taobao_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use taobao_sandbox::{FaultKind, FaultSpec};
use taobao_support::{APP_KEY, APP_SECRET, Env, SESSION};
use wms_node::outbox::{Attempt, Sink};
use wms_node::secret::Secret;
use wms_node::taobao::api::OfflineSend;
use wms_node::taobao::login::receive_redirect;
use wms_node::taobao::oauth::{OAuthClient, OAuthOptions};
use wms_node::taobao::outbox::{TaobaoOp, TaobaoSink};
use wms_node::taobao::tokens::{MemoryTokenStore, TokenManager, TokenStore};
use wms_node::taobao::{SessionProvider, SignMethod};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fault(kind: FaultKind, count: u32) -> FaultSpec {
    FaultSpec {
        kind,
        seconds: Some(60),
        count: Some(count),
        methods: None,
        delay_s: None,
        status: None,
        sub_code: None,
        announce_s: None,
    }
}

/// Everything sensitive one run produced, to look for in the log afterwards.
#[derive(Default)]
struct Sensitive(Vec<String>);

#[test]
fn no_secret_token_code_or_receiver_field_reaches_the_log() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("wms_node=trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("{e}"),
    };
    let mut sensitive = Sensitive::default();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(exercise(&mut sensitive));
    });
    let log =
        String::from_utf8_lossy(&buffer.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();

    // The log says what happened…
    for expected in [
        "taobao.trade.fullinfo.get",
        "request_id",
        "latency_ms",
        "code=\"27\"",
        "code=\"7\"",
        "code=\"25\"",
        "sub_code",
        "transport",
        "not sent",
        "session refreshed",
    ] {
        assert!(log.contains(expected), "log lacks {expected:?}:\n{log}");
    }
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{log}");
    }
    // …and nothing it must not say.
    for s in sensitive.0.iter().filter(|s| !s.is_empty()) {
        assert!(!log.contains(s.as_str()), "log contains {s:?}:\n{log}");
    }
}

async fn exercise(sensitive: &mut Sensitive) {
    let env = Env::start().await;
    sensitive.0.push(APP_SECRET.into());
    sensitive.0.push(SESSION.into());
    env.item(600_123_456_789, &[(1, 10)]);
    let (tid, _) = env.paid_trade(&[(600_123_456_789, Some(1), 1)]);

    // OAuth login, with the code and the tokens recorded as sensitive.
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let mut o = OAuthOptions::new(
        env.sandbox.oauth_url(),
        APP_KEY,
        Secret::new(APP_SECRET),
        format!("http://127.0.0.1:{port}/cb"),
    );
    o.clock = env.clock();
    let oauth = match OAuthClient::new(o) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let state = OAuthClient::new_state();
    let url = oauth.authorize_url(&state);
    let (code, _) = tokio::join!(
        receive_redirect(listener, &state, Duration::from_secs(10)),
        reqwest::get(&url)
    );
    let code = code.unwrap_or_default();
    sensitive.0.push(code.clone());
    let tokens = match oauth.exchange(&code).await {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    let store = Arc::new(MemoryTokenStore::new());
    let manager = Arc::new(TokenManager::new(
        store.clone(),
        Some(oauth),
        env.alerts.clone(),
    ));
    let _ = manager.install(tokens.clone()).await;
    let provider: Arc<dyn SessionProvider> = manager.clone();
    let client = env.client_with(env.options(SignMethod::HmacSha256), Some(provider));

    // Receiver fields as the platform returns them.
    let trade = match client.trade_fullinfo_get(tid, &[]).await {
        Ok(t) => t,
        Err(e) => panic!("{e}"),
    };
    for f in [
        &trade.receiver.oaid,
        &trade.receiver.masked_name,
        &trade.receiver.masked_mobile,
        &trade.receiver.masked_phone,
        &trade.receiver.masked_address,
    ] {
        sensitive.0.extend(f.clone());
    }

    // Code 27 → refresh → resend.
    let _ = env
        .sandbox
        .sandbox()
        .add_fault(fault(FaultKind::ExpireTokens, 1));
    let _ = client.trade_fullinfo_get(tid, &[]).await;
    // Code 7, an ISP error, a transport failure.
    let mut ban = fault(FaultKind::Ban, 1);
    ban.methods = Some(vec!["taobao.items.onsale.get".into()]);
    ban.sub_code = Some("accesscontrol.limited-by-app-api-access-count".into());
    let _ = env.sandbox.sandbox().add_fault(ban);
    let _ = client.items_onsale_get(&Default::default()).await;
    let _ = client.items_onsale_get(&Default::default()).await;
    let mut outage = fault(FaultKind::Outage, 1);
    outage.methods = Some(vec!["taobao.logistics.companies.get".into()]);
    let _ = env.sandbox.sandbox().add_fault(outage);
    let _ = client.logistics_companies_get(None).await;
    // Shipment, then its B04 through the sink.
    let send = OfflineSend {
        tid,
        sub_tids: vec![],
        out_sid: "YT1234567890123".into(),
        company_code: "YTO".into(),
        feature: None,
    };
    let _ = client.logistics_offline_send(&send).await;
    let sink = TaobaoSink::new(client.clone(), env.alerts.clone());
    let op = TaobaoOp::Ship {
        tid,
        oids: vec![],
        company_code: "YTO".into(),
        out_sid: "YT1234567890123".into(),
    };
    let _ = sink
        .deliver(Attempt {
            seq: 1,
            idempotency_key: "k",
            attempt: 1,
            op: &op,
        })
        .await;
    // Code 25 from a wrong secret.
    let mut wrong = env.options(SignMethod::Md5);
    wrong.app_secret = Secret::new("helloworlX");
    sensitive.0.push("helloworlX".into());
    let _ = env
        .client_with(wrong, None)
        .logistics_companies_get(None)
        .await;

    // Every token the manager held: the first, the one after the 27, one more refresh.
    let _ = manager.refresh_now().await;
    for t in [Some(tokens), store.load().ok().flatten()]
        .into_iter()
        .flatten()
    {
        sensitive.0.push(t.access_token.expose().to_owned());
        sensitive
            .0
            .extend(t.refresh_token.as_ref().map(|s| s.expose().to_owned()));
    }
}
