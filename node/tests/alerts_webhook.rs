//! Alerts that reach people, against a webhook receiver on loopback over real HTTP: each
//! alert arrives once and its resolution once, DingTalk's signature verifies on the receiver,
//! the WeCom and plain JSON shapes, de-duplication and the rate limit, an alert raised while
//! the receiver is unreachable arrives when it is back, also after a restart, and a robot that
//! refuses our credentials pauses the queue and raises `alert_delivery` without losing notices.

// Tests report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Uri};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wms_node::ops::alert::{AlertCode, Alerts, Severity, Subject};
use wms_node::ops::notify::{Notifier, NotifyOptions, Webhook, WebhookKind, delivery_options};
use wms_node::secret::Secret;
use wms_node::store::{Store, StoreOptions};

const SECRET: &str = "SECtest-signing-secret";
const T: Duration = Duration::from_secs(15);

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    uri: Uri,
    headers: HeaderMap,
    body: serde_json::Value,
    at: Instant,
}

/// A webhook receiver: records every request and answers with `reply`.
#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    reply: Arc<Mutex<(u16, String)>>,
}

impl Receiver {
    fn new() -> Receiver {
        Receiver {
            got: Arc::default(),
            reply: Arc::new(Mutex::new((200, r#"{"errcode":0,"errmsg":"ok"}"#.into()))),
        }
    }

    /// Serves on `listener` until `token` is cancelled.
    fn serve(&self, listener: TcpListener, token: CancellationToken) {
        async fn record(
            State(r): State<Receiver>,
            req: Request,
        ) -> (axum::http::StatusCode, String) {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            r.got.lock().unwrap().push(Got {
                uri: parts.uri,
                headers: parts.headers,
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
                at: Instant::now(),
            });
            let (status, text) = r.reply.lock().unwrap().clone();
            (axum::http::StatusCode::from_u16(status).unwrap(), text)
        }
        let app = axum::Router::new()
            .fallback(record)
            .with_state(self.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
                .unwrap();
        });
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The text content of each DingTalk/WeCom message so far.
    fn texts(&self) -> Vec<String> {
        self.got()
            .iter()
            .map(|g| g.body["text"]["content"].as_str().unwrap_or("").to_owned())
            .collect()
    }
}

/// DingTalk's check of a signed request: `timestamp` and `sign` in the query, `sign` being
/// base64(HMAC-SHA256(secret, "<timestamp>\n<secret>")), URL-encoded.
fn dingtalk_signature_verifies(uri: &Uri, secret: &str) -> bool {
    use base64::Engine as _;
    let query = uri.query().unwrap_or("");
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            })
        })
    };
    let (Some(ts), Some(sign), Some(token)) =
        (param("timestamp"), param("sign"), param("access_token"))
    else {
        return false;
    };
    let Ok(ts_ms) = ts.parse::<u64>() else {
        return false;
    };
    // DingTalk refuses a timestamp more than an hour away.
    let now = wms_node::store::now_ms();
    if now.abs_diff(ts_ms) > 3_600_000 || token != "robot-token" {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}\n{secret}").as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    sign == want
}

struct Setup {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wms-node.redb");
        Setup { _dir: dir, path }
    }
}

/// A node's alert side: the store, the alerts, the notifier running.
struct Node {
    store: Store,
    alerts: Alerts,
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    notices: wms_node::outbox::Outbox<wms_node::ops::notify::AlertNotice>,
}

fn options(kind: WebhookKind, addr: std::net::SocketAddr, secret: Option<&str>) -> NotifyOptions {
    let mut o = NotifyOptions::new("gw1", "wh1");
    let path = match kind {
        WebhookKind::DingTalk => "/robot/send?access_token=robot-token",
        WebhookKind::WeCom => "/cgi-bin/webhook/send?key=robot-key",
        WebhookKind::Json => "/hook",
    };
    o.webhook = Some(Webhook {
        kind,
        url: Secret::new(format!("http://{addr}{path}")),
        secret: secret.map(Secret::new),
        timeout: Duration::from_secs(2),
    });
    o.delivery = delivery_options(60, Duration::from_secs(2));
    o.delivery.backoff_initial = Duration::from_millis(50);
    o.delivery.backoff_max = Duration::from_millis(300);
    o.probe_every = Duration::from_millis(500);
    o
}

async fn start(setup: &Setup, opts: NotifyOptions) -> Node {
    let alerts = Alerts::new();
    let store = Store::open(StoreOptions::new(&setup.path), alerts.clone()).unwrap();
    let mut notifier = Notifier::new(alerts.clone(), store.clone(), opts);
    notifier.restore().await.unwrap();
    let notices = notifier.outbox().clone();
    let token = CancellationToken::new();
    let t = token.clone();
    let task = tokio::spawn(async move {
        let _ = notifier.run(t).await;
    });
    Node {
        store,
        alerts,
        token,
        task,
        notices,
    }
}

impl Node {
    async fn stop(self) {
        self.token.cancel();
        self.task.await.unwrap();
        self.store.close().await.unwrap();
    }
}

async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

async fn receiver() -> (Receiver, std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = Receiver::new();
    let token = CancellationToken::new();
    r.serve(listener, token.clone());
    (r, addr, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_gets_each_alert_once_signed_and_its_resolution_once() {
    let (rx, addr, stop_rx) = receiver().await;
    let setup = Setup::new();
    let node = start(&setup, options(WebhookKind::DingTalk, addr, Some(SECRET))).await;
    for _ in 0..50 {
        node.alerts.raise(
            AlertCode::Clock,
            Severity::Warning,
            "Taobao rejected the request timestamp (code 31): check NTP",
        );
    }
    assert!(eventually(T, || rx.got().len() == 1).await);
    // Raised again and again while active: nothing more is sent.
    for _ in 0..20 {
        node.alerts
            .raise(AlertCode::Clock, Severity::Warning, "still off");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 1);
    node.alerts.clear(AlertCode::Clock);
    assert!(eventually(T, || rx.got().len() == 2).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let got = rx.got();
    assert_eq!(got.len(), 2, "{:?}", rx.texts());
    for g in &got {
        assert!(dingtalk_signature_verifies(&g.uri, SECRET), "{}", g.uri);
        assert_eq!(g.body["msgtype"], "text");
        assert!(g.headers.contains_key("idempotency-key"));
    }
    let texts = rx.texts();
    assert!(
        texts[0].starts_with("[wms-node] WARNING: clock (104)\nnode gw1 @ wh1\n"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("check NTP"), "{}", texts[0]);
    assert!(
        texts[1].starts_with("[wms-node] RESOLVED: clock (104)"),
        "{}",
        texts[1]
    );
    assert!(texts[1].contains("raised 70 times"), "{}", texts[1]);
    // A wrong secret would not verify.
    assert!(!dingtalk_signature_verifies(&got[0].uri, "SECother"));
    node.stop().await;
    stop_rx.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_gets_text_and_json_gets_the_alert_message_signed() {
    let (rx, addr, stop_rx) = receiver().await;
    let setup = Setup::new();
    let node = start(&setup, options(WebhookKind::WeCom, addr, None)).await;
    node.alerts.raise_about(
        AlertCode::ShippedClosedTrade,
        Subject::tid(3141u64),
        Severity::Critical,
        "trade 3141 was shipped but is closed on Taobao: stop the parcel",
    );
    assert!(eventually(T, || rx.got().len() == 1).await);
    let g = &rx.got()[0];
    assert_eq!(g.uri.path(), "/cgi-bin/webhook/send");
    assert_eq!(
        g.uri.query(),
        Some("key=robot-key"),
        "no signature for WeCom"
    );
    assert_eq!(g.body["msgtype"], "text");
    let text = g.body["text"]["content"].as_str().unwrap();
    assert!(
        text.starts_with("[wms-node] CRITICAL: shipped_closed_trade (107)"),
        "{text}"
    );
    assert!(text.contains("tid 3141"), "{text}");
    node.stop().await;
    stop_rx.cancel();

    let (rx, addr, stop_rx) = receiver().await;
    let setup = Setup::new();
    let node = start(&setup, options(WebhookKind::Json, addr, Some("json-key"))).await;
    node.alerts.raise_about(
        AlertCode::DeadLetter,
        Subject::op_kind("ship"),
        Severity::Critical,
        "1 ship op refused for good",
    );
    assert!(eventually(T, || rx.got().len() == 1).await);
    node.alerts.clear(AlertCode::DeadLetter);
    assert!(eventually(T, || rx.got().len() == 2).await);
    let got = rx.got();
    for (g, event) in got.iter().zip(["raised", "resolved"]) {
        let raw = serde_json::to_vec(&g.body).unwrap();
        let m = firmware_bridge::proto::json::decode_alert(&raw).unwrap();
        assert_eq!(m.event.as_str(), event);
        assert_eq!((m.code.as_str(), m.number), ("dead_letter", 201));
        assert_eq!(m.subject.as_ref().unwrap().id, "ship");
        assert_eq!((m.node.as_str(), m.site.as_str()), ("gw1", "wh1"));
        assert!(
            g.headers["x-wms-signature"]
                .to_str()
                .unwrap()
                .starts_with("sha256=")
        );
        assert!(g.headers.contains_key("x-wms-timestamp"));
    }
    assert_eq!(got[0].body["id"], got[1].body["id"], "one episode");
    assert!(got[1].body["resolved_at"].is_string());
    node.stop().await;
    stop_rx.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_are_rate_limited_and_a_flapping_alert_is_told_twice_per_interval() {
    let (rx, addr, stop_rx) = receiver().await;
    let setup = Setup::new();
    let mut opts = options(WebhookKind::Json, addr, None);
    opts.min_interval = Duration::from_secs(2);
    // 60 a minute with a burst of 5.
    let node = start(&setup, opts).await;
    for sku in 0..8 {
        node.alerts.raise_about(
            AlertCode::UnmappedSku,
            Subject::sku(&format!("SKU-{sku}")),
            Severity::Warning,
            "orders held",
        );
    }
    assert!(eventually(T, || rx.got().len() == 8).await);
    let got = rx.got();
    let spread = got[7].at - got[0].at;
    assert!(
        spread >= Duration::from_millis(2_500),
        "8 notices in {spread:?}"
    );

    // A flapping alert: raised, resolved, raised again within the interval.
    let before = rx.got().len();
    node.alerts
        .raise(AlertCode::TaobaoAppBan, Severity::Warning, "banned");
    assert!(eventually(T, || rx.got().len() == before + 1).await);
    node.alerts.clear(AlertCode::TaobaoAppBan);
    assert!(eventually(T, || rx.got().len() == before + 2).await);
    let resolved_at = Instant::now();
    node.alerts
        .raise(AlertCode::TaobaoAppBan, Severity::Warning, "banned again");
    // Not told at once: only when the interval is over, and since it is still active.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.got().len(), before + 2);
    assert!(eventually(T, || rx.got().len() == before + 3).await);
    assert!(resolved_at.elapsed() >= Duration::from_millis(1_000));
    let last = rx.got().pop().unwrap();
    assert_eq!(last.body["event"], "raised");
    assert_eq!(last.body["message"], "banned again");
    node.stop().await;
    stop_rx.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_raised_while_the_webhook_is_down_arrives_when_it_returns() {
    // A port with nobody listening: connections are refused.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = port.local_addr().unwrap();
    drop(port);
    let setup = Setup::new();
    let node = start(&setup, options(WebhookKind::DingTalk, addr, Some(SECRET))).await;
    node.alerts.raise(
        AlertCode::Reauthorize,
        Severity::Critical,
        "authorise the shop",
    );
    assert!(
        eventually(T, || node.notices.status().consecutive_failures >= 2).await,
        "{:?}",
        node.notices.status()
    );
    let listener = TcpListener::bind(addr).await.unwrap();
    let rx = Receiver::new();
    let stop_rx = CancellationToken::new();
    rx.serve(listener, stop_rx.clone());
    assert!(eventually(T, || rx.got().len() == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 1, "once");
    assert!(dingtalk_signature_verifies(&rx.got()[0].uri, SECRET));
    assert!(rx.texts()[0].contains("CRITICAL: reauthorize (101)"));
    node.stop().await;
    stop_rx.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_loses_nothing_and_the_alert_is_still_active_after_it() {
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = port.local_addr().unwrap();
    drop(port);
    let setup = Setup::new();
    let node = start(&setup, options(WebhookKind::Json, addr, None)).await;
    node.alerts
        .raise(AlertCode::StoreCap, Severity::Warning, "80% of the cap");
    let id = node.alerts.get(AlertCode::StoreCap, None).unwrap().id;
    assert!(eventually(T, || node.notices.status().consecutive_failures >= 1).await);
    node.stop().await;

    // The receiver is back; the node starts again with a fresh memory.
    let listener = TcpListener::bind(addr).await.unwrap();
    let rx = Receiver::new();
    let stop_rx = CancellationToken::new();
    rx.serve(listener, stop_rx.clone());
    let node = start(&setup, options(WebhookKind::Json, addr, None)).await;
    let restored = node
        .alerts
        .get(AlertCode::StoreCap, None)
        .expect("restored");
    assert_eq!(restored.id, id);
    assert!(eventually(T, || rx.got().len() == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 1, "told once, not again after the restart");
    assert_eq!(rx.got()[0].body["id"], id.to_string());
    // Its owner clears it in the new process: one resolution.
    node.alerts.clear(AlertCode::StoreCap);
    assert!(eventually(T, || rx.got().len() == 2).await);
    assert_eq!(rx.got()[1].body["event"], "resolved");
    node.stop().await;

    // And after another restart, the history is there and nothing is told again.
    let node = start(&setup, options(WebhookKind::Json, addr, None)).await;
    assert!(!node.alerts.is_active(AlertCode::StoreCap));
    assert_eq!(node.alerts.history()[0].id, id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 2);
    node.stop().await;
    stop_rx.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_that_refuses_our_signature_pauses_delivery_and_says_so_until_fixed() {
    let (rx, addr, stop_rx) = receiver().await;
    *rx.reply.lock().unwrap() = (
        200,
        r#"{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc]"}"#.into(),
    );
    let setup = Setup::new();
    let node = start(&setup, options(WebhookKind::DingTalk, addr, Some(SECRET))).await;
    node.alerts.raise(
        AlertCode::OtaFailed,
        Severity::Warning,
        "update rolled back",
    );
    assert!(eventually(T, || node.alerts.is_active(AlertCode::AlertDelivery)).await);
    assert!(node.notices.is_paused());
    let a = node.alerts.get(AlertCode::AlertDelivery, None).unwrap();
    assert!(a.message.contains("sign not match"), "{}", a.message);
    assert!(!a.message.contains(SECRET) && !a.message.contains("robot-token"));
    // The robot's settings are fixed; the next probe delivers what waited, and the
    // delivery alert itself.
    *rx.reply.lock().unwrap() = (200, r#"{"errcode":0,"errmsg":"ok"}"#.into());
    assert!(
        eventually(T, || rx
            .texts()
            .iter()
            .any(|t| t.contains("[wms-node] WARNING: ota_failed")))
        .await,
        "{:?}",
        rx.texts()
    );
    assert!(eventually(T, || !node.notices.is_paused()).await);
    node.stop().await;
    stop_rx.cancel();
}
