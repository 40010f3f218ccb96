//! Any request to the admin API of a whole node (started once, its store in a temp dir,
//! Taobao unreachable), over real HTTP: method, route, path segment, query, headers and body
//! all come from the input. Whatever arrives, the node answers; every error is JSON
//! `{"error": …}`; nothing panics (no 500); a POST that changes something never gets through
//! without the admin header.
//!
//! Input: byte 0 the method, byte 1 flags (bit 0 the admin header, bits 1-2 the content type,
//! bit 3 a foreign Origin), byte 2 the route; then the path segment, the query and the body,
//! separated by 0xFF bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
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
];
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
const TYPES: &[Option<&str>] = &[
    Some("application/json"),
    None,
    Some("text/plain"),
    Some("application/json; charset=utf-8"),
];

struct Node {
    rt: tokio::runtime::Runtime,
    addr: String,
    _token: tokio_util::sync::CancellationToken,
    _dir: std::path::PathBuf,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wms-fuzz-admin-{}", std::process::id()));
        let mut c = wms_node::config::Config::default();
        c.node.id = "gw-fuzz".into();
        c.node.data_dir = dir.join("data");
        c.taobao.app_key = "12345678".into();
        c.taobao.app_secret = Some(wms_node::secret::Secret::new("x"));
        c.taobao.endpoint = "http://127.0.0.1:9/router/rest".into();
        c.taobao.oauth_url = "http://127.0.0.1:9/oauth".into();
        c.taobao.redirect_uri = Some("http://127.0.0.1:9/cb".into());
        c.http.listen = "127.0.0.1:0".parse().expect("an address");
        c.mqtt.listen = "127.0.0.1:0".parse().expect("an address");
        c.http.max_connections = 256;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let token = tokio_util::sync::CancellationToken::new();
        let started = rt
            .block_on(wms_node::daemon::start(c, token.clone()))
            .expect("the node starts");
        let addr = started.http_addr.to_string();
        rt.spawn(async move {
            let _ = started.serve().await;
        });
        Node {
            rt,
            addr,
            _token: token,
            _dir: dir,
        }
    })
}

fn percent(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~=&".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let [m, flags, r, rest @ ..] = data else {
        return;
    };
    let method = METHODS[usize::from(*m) % METHODS.len()];
    let route = ROUTES[usize::from(*r) % ROUTES.len()];
    let admin = flags & 1 != 0;
    let content_type = TYPES[usize::from((flags >> 1) & 3)];
    let foreign = flags & 8 != 0;
    let mut parts = rest.splitn(3, |b| *b == 0xFF);
    let segment = percent(parts.next().unwrap_or_default());
    let query = percent(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let path = route.replace("{}", &segment);
    let target = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let n = node();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        n.addr,
        body.len()
    );
    if admin {
        head.push_str("X-WMS-Node: 1\r\n");
    }
    if foreign {
        head.push_str("Origin: http://attacker.example\r\n");
    }
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    let resp = n.rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(&n.addr)
            .await
            .expect("the node listens");
        s.write_all(head.as_bytes()).await.expect("sent");
        s.write_all(body).await.expect("sent");
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut resp))
            .await
            .expect("an answer within 60 s")
            .expect("read");
        resp
    });
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole HTTP answer");
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    assert_ne!(status, 500, "a panic: {method} {target}");
    if method == "POST" && POSTS.contains(&route) && (!admin || foreign) {
        assert_eq!(status, 403, "{method} {target} got through");
    }
    if status >= 400 && method != "HEAD" {
        let body = &resp[split + 4..];
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "{method} {target}: {status} is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            )
        });
        let health = status == 503 && target.starts_with("/healthz");
        assert!(
            v["error"].is_string() || (health && v["status"] == "failing"),
            "{status}: {v}"
        );
        assert!(head.contains("content-type: application/json"), "{head}");
    }
});
