//! Property tests of the admin API's JSON over real HTTP against a whole node: arbitrary
//! methods, paths, query strings and bodies (JSON of every shape, and not JSON), with and
//! without the admin header. Whatever arrives, the node answers; every error is
//! `{"error": "…"}`; nothing panics (no 500); a state-changing request without the header
//! never gets through. The fuzz target `node/fuzz` (`admin_api`) runs the same for millions
//! of inputs by hand.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use wms_node::config::Config;
use wms_node::secret::Secret;

const ROUTES: &[&str] = &[
    "/api/queue/ops",
    "/api/queue/ops/{}",
    "/api/queue/ops/{}/retry",
    "/api/queue/ops/{}/drop",
    "/api/queue/stats",
    "/api/auth",
    "/api/auth/code",
    "/api/auth/refresh",
    "/api/ota/status",
    "/api/ota/restart",
    "/api/orders",
    "/api/orders/{}",
    "/api/orders/{}/hold",
    "/api/orders/{}/release",
    "/api/skus",
    "/api/skus/import",
    "/healthz",
    "/metrics",
    "/",
    "/api/{}",
    "/{}",
];

/// The routes that take a POST.
const POSTS: &[&str] = &[
    "/api/queue/ops/{}/retry",
    "/api/queue/ops/{}/drop",
    "/api/auth/code",
    "/api/auth/refresh",
    "/api/ota/restart",
    "/api/orders/{}/hold",
    "/api/orders/{}/release",
    "/api/skus/import",
];

const KEYS: &[&str] = &[
    "reason",
    "force",
    "code",
    "redirect_uri",
    "skus",
    "bundles",
    "dry_run",
    "sku",
    "barcode",
    "name",
    "on_hand",
    "num_iid",
    "sku_id",
    "state",
    "limit",
    "after",
    "kind",
    "key",
    "held",
    "before",
];

/// A request as sent: method, path with query, whether it carries the admin header, the
/// content type, the body.
#[derive(Debug, Clone)]
struct Req {
    route: &'static str,
    method: &'static str,
    target: String,
    admin: bool,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[0-9]{19,40}",
        // Anything, percent-encoded so that it is a valid URI.
        ".{0,12}".prop_map(|s| percent(&s)),
    ]
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

fn request() -> impl Strategy<Value = Req> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]);
    let path =
        (prop::sample::select(ROUTES), segment()).prop_map(|(r, s)| (r, r.replace("{}", &s)));
    let query = prop::option::of(prop::collection::vec(
        (prop::sample::select(KEYS), segment()),
        0..4,
    ))
    .prop_map(|q| match q {
        Some(kv) if !kv.is_empty() => format!(
            "?{}",
            kv.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        ),
        _ => String::new(),
    });
    let body = prop_oneof![
        3 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => Just(Vec::new()),
    ];
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        None,
        Some("text/plain"),
        Some("application/json; charset=utf-8"),
    ]);
    (method, path, query, any::<bool>(), content_type, body).prop_map(
        |(method, (route, path), query, admin, content_type, body)| Req {
            route,
            method,
            target: format!("{path}{query}"),
            admin,
            content_type,
            body,
        },
    )
}

/// Sends `req` over a fresh connection; returns the status and the body.
async fn send(addr: &str, req: &Req) -> (u16, Vec<u8>, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        req.method,
        req.target,
        req.body.len()
    );
    if req.admin {
        head.push_str("X-WMS-Node: 1\r\n");
    }
    if let Some(ct) = req.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&req.body).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut resp))
        .await
        .expect("the node answers within 30 s")
        .unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole HTTP answer");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, resp[split + 4..].to_vec(), head)
}

/// A whole node (its store in a temp dir, Taobao unreachable) for all cases of a test.
struct Running {
    rt: tokio::runtime::Runtime,
    addr: String,
    token: CancellationToken,
    _dir: tempfile::TempDir,
}

fn node() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.node.id = "gw-props".into();
    c.node.data_dir = dir.path().join("data");
    c.taobao.app_key = "12345678".into();
    c.taobao.app_secret = Some(Secret::new("x"));
    c.taobao.endpoint = "http://127.0.0.1:9/router/rest".into();
    c.taobao.oauth_url = "http://127.0.0.1:9/oauth".into();
    c.taobao.redirect_uri = Some("http://127.0.0.1:9/cb".into());
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.mqtt.listen = "127.0.0.1:0".parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let token = CancellationToken::new();
    let started = rt
        .block_on(wms_node::daemon::start(c, token.clone()))
        .unwrap();
    let addr = started.http_addr.to_string();
    rt.spawn(async move {
        let _ = started.serve().await;
    });
    Running {
        rt,
        addr,
        token,
        _dir: dir,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_an_answer_every_error_is_json_and_no_page_changes_anything(
        reqs in prop::collection::vec(request(), 1..4),
    ) {
        thread_local! {
            static NODE: Running = node();
        }
        NODE.with(|n| -> Result<(), TestCaseError> {
            for req in &reqs {
                let (status, body, head) = n.rt.block_on(send(&n.addr, req));
                prop_assert!(status != 0, "{req:?}: no status: {head}");
                prop_assert!(status != 500, "{req:?}: a panic: {}", String::from_utf8_lossy(&body));
                // A POST to a route that takes one, without the header: refused, always.
                if req.method == "POST" && !req.admin && POSTS.contains(&req.route) {
                    prop_assert_eq!(status, 403, "{:?}", req);
                }
                let changes = !matches!(req.method, "GET" | "HEAD");
                if changes && !req.admin && req.target.starts_with("/api/") {
                    // Either no such route (404/405) or refused; never served.
                    prop_assert!(
                        matches!(status, 403..=405),
                        "{req:?} got through without the admin header: {status}"
                    );
                }
                if status >= 400 && req.method != "HEAD" {
                    let v: Value = serde_json::from_slice(&body).map_err(|e| {
                        TestCaseError::fail(format!(
                            "{req:?}: {status} is not JSON ({e}): {}",
                            String::from_utf8_lossy(&body)
                        ))
                    })?;
                    // /healthz answers 503 with its own documented report while a check fails.
                    let health = status == 503 && req.target.starts_with("/healthz");
                    prop_assert!(
                        v["error"].is_string() || (health && v["status"] == "failing"),
                        "{req:?}: {status}: {v}"
                    );
                    prop_assert!(
                        head.to_ascii_lowercase().contains("content-type: application/json"),
                        "{head}"
                    );
                }
            }
            Ok(())
        })?;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
