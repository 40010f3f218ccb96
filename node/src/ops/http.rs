//! The operations HTTP server.
//!
//! | path       | what                                                                   |
//! |------------|------------------------------------------------------------------------|
//! | `/`        | a status page for people: version, uptime, checks, alerts, queue figures |
//! | `/healthz` | JSON [`Report`] plus active alerts; 200 while healthy, 503 while a check fails |
//! | `/metrics` | Prometheus text format                                                 |
//!
//! Other parts add their own routes by merging a [`Router`] (the outbox serves
//! `/api/queue/…`) and their own figures on the status page through [`StatusSource`].
//! There is no authentication: the server listens on loopback by default, and nothing it
//! serves contains secrets or buyer data. The admin API (`/api/…`: the queue's retry and
//! drop, the node's authorisation) is wrapped in [`local_only`], so it answers only to
//! clients on the box itself even when `[http] listen` opens the status page and
//! `/metrics` to a management network.

#[cfg(test)]
use super::alert::AlertCode;
use super::alert::{Alert, Alerts, Severity};
#[cfg(test)]
use super::health::CheckName;
use super::health::{Health, Report, Status};
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A block of figures on the status page (e.g. "Queue": pending, dead letters, oldest age).
#[derive(Debug, Clone, Default)]
pub struct StatusSection {
    /// The heading.
    pub title: String,
    /// Label and value pairs, shown in order.
    pub rows: Vec<(String, String)>,
}

/// Something that contributes a [`StatusSection`] to the status page. Called on every page
/// load, so it must be cheap and must not block (read cached figures).
pub trait StatusSource: Send + Sync + 'static {
    /// The section as of now.
    fn section(&self) -> StatusSection;
}

/// What the ops handlers read.
#[derive(Clone)]
pub struct OpsState {
    /// `node.id`.
    pub node_id: String,
    /// `node.site`.
    pub site: String,
    /// The node's health checks.
    pub health: Health,
    /// The node's alerts.
    pub alerts: Alerts,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Extra sections for the status page, in order.
    pub sections: Vec<Arc<dyn StatusSource>>,
}

/// The limits of the ops server: what a slow or hostile client can hold. Built by `config/`
/// from `[http]` (docs there); the defaults are the config's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// The time a client has to send a request's headers (from connecting, or from the end
    /// of its previous request): a trickling client is disconnected.
    pub header_read_timeout: Duration,
    /// The longest a request may take, body and answer included: 408 after it.
    pub request_timeout: Duration,
    /// A kept-alive connection without a request for this long is closed.
    pub idle_timeout: Duration,
    /// The most connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
        }
    }
}

/// The ops routes. Merge other routers into the result with [`Router::merge`].
pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets requests in progress
/// finish (the daemon's shutdown deadline bounds how long).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Both ends of a connection, as [`serve`] records them for each request.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client.
    pub remote: SocketAddr,
    /// The address it connected to (ours); `None` if the socket could not tell.
    pub local: Option<SocketAddr>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Peer {
            remote: *stream.remote_addr(),
            local: stream.io().local_addr().ok(),
        }
    }
}

impl Peer {
    /// Whether the client runs on this machine: it came over loopback (IPv4-mapped
    /// loopback included), or from the very address it connected to, which is how a
    /// program on the box reaches a server bound to one of the box's LAN addresses.
    pub fn is_local(&self) -> bool {
        let remote = unmapped(self.remote.ip());
        remote.is_loopback() || self.local.is_some_and(|l| unmapped(l.ip()) == remote)
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Limits `routes` to clients on this machine (403 for anyone else). For the admin API:
/// it changes the queue and the node's authorisation and has no authentication of its own.
/// Needs [`serve`], which tells each request its [`Peer`]; without one it refuses too.
pub fn local_only(routes: Router) -> Router {
    routes.layer(axum::middleware::from_fn(refuse_remote))
}

async fn refuse_remote(req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<Peer>>().map(|c| c.0);
    if peer.is_some_and(|p| p.is_local()) {
        return next.run(req).await;
    }
    tracing::warn!(
        peer = ?peer.map(|p| p.remote.ip()),
        path = %req.uri().path(),
        "admin API refused: only clients on this machine may use it"
    );
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": "the admin API answers only on this machine: run wms-node on the box \
                      (e.g. over ssh)"
        })),
    )
        .into_response()
}

#[derive(Serialize)]
struct HealthBody {
    #[serde(flatten)]
    report: Report,
    node_id: String,
    site: String,
    alerts: Vec<Alert>,
}

async fn healthz(State(s): State<Arc<OpsState>>) -> Response {
    let report = s.health.report();
    let code = if report.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthBody {
        report,
        node_id: s.node_id.clone(),
        site: s.site.clone(),
        alerts: s.alerts.active(),
    };
    let mut resp = (code, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn metrics(State(s): State<Arc<OpsState>>) -> Response {
    metrics::gauge!("wms_node_uptime_seconds").set(s.health.uptime().as_secs_f64());
    metrics::gauge!("wms_node_alerts_active").set(s.alerts.active().len() as f64);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn status_page(State(s): State<Arc<OpsState>>) -> Response {
    let report = s.health.report();
    let alerts = s.alerts.active();
    let sections: Vec<StatusSection> = s.sections.iter().map(|src| src.section()).collect();
    let mut resp = Html(render_page(&s, &report, &alerts, &sections)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn render_page(
    s: &OpsState,
    report: &Report,
    alerts: &[Alert],
    sections: &[StatusSection],
) -> String {
    let mut h = String::with_capacity(4096);
    let overall = status_word(report.status);
    // `write!` into a String cannot fail.
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="10">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wms-node {id} · {overall}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5rem;max-width:60rem;color:#222}}
h1{{font-size:1.4rem}} h2{{font-size:1.1rem;margin-top:1.5rem}}
table{{border-collapse:collapse;width:100%}} td,th{{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}}
.ok{{color:#176f2c}} .degraded,.warning{{color:#9a6700}} .failing,.critical{{color:#b42318;font-weight:bold}} .info{{color:#555}}
.muted{{color:#666}}
</style></head><body>
<h1>wms-node <span class="muted">{id} @ {site}</span> — <span class="{overall}">{overall}</span></h1>
<p class="muted">version {version} · up {uptime} · <a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a> · refreshes every 10 s</p>
"#,
        id = esc(&s.node_id),
        site = esc(&s.site),
        overall = overall,
        version = esc(report.version),
        uptime = humantime::format_duration(Duration::from_secs(report.uptime_seconds)),
    );

    h.push_str("<h2>Alerts</h2>\n");
    if alerts.is_empty() {
        h.push_str("<p class=\"ok\">No active alerts.</p>\n");
    } else {
        h.push_str(
            "<table><tr><th>severity</th><th>alert</th><th>what to do</th><th>since</th></tr>\n",
        );
        for a in alerts {
            let sev = severity_word(a.severity);
            let _ = writeln!(
                h,
                "<tr><td class=\"{sev}\">{sev}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(a.code.as_str()),
                esc(&a.message),
                humantime::format_rfc3339_seconds(a.at),
            );
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Checks</h2>\n");
    if report.checks.is_empty() {
        h.push_str("<p class=\"muted\">No checks reported yet.</p>\n");
    } else {
        h.push_str("<table><tr><th>check</th><th>status</th><th>detail</th><th>since</th></tr>\n");
        for (name, c) in &report.checks {
            let st = status_word(c.status);
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"{st}\">{st}</td><td>{}</td><td>{}</td></tr>",
                esc(name.as_str()),
                esc(&c.message),
                humantime::format_rfc3339_seconds(c.since),
            );
        }
        h.push_str("</table>\n");
    }

    for sec in sections {
        let _ = writeln!(h, "<h2>{}</h2>\n<table>", esc(&sec.title));
        for (k, v) in &sec.rows {
            let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Degraded => "degraded",
        Status::Failing => "failing",
    }
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Queue;
    impl StatusSource for Queue {
        fn section(&self) -> StatusSection {
            StatusSection {
                title: "Queue".into(),
                rows: vec![("pending".into(), "3".into())],
            }
        }
    }

    async fn start(state: OpsState) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let app = router(state).merge(local_only(
            Router::new().route("/api/ping", get(|| async { "pong" })),
        ));
        let t = token.clone();
        let server = tokio::spawn(async move {
            serve(listener, app, t).await.unwrap();
        });
        (format!("http://{addr}"), token, server)
    }

    fn state() -> OpsState {
        OpsState {
            node_id: "gw1".into(),
            site: "wh<1>".into(),
            health: Health::new(),
            alerts: Alerts::new(),
            metrics: crate::ops::metrics::handle(),
            sections: vec![Arc::new(Queue)],
        }
    }

    #[tokio::test]
    async fn healthz_is_200_until_a_check_fails_then_503() {
        let st = state();
        let (health, alerts) = (st.health.clone(), st.alerts.clone());
        let (base, token, server) = start(st).await;
        health.ok(CheckName::Store, "open");
        alerts.raise(
            AlertCode::Reauthorize,
            Severity::Critical,
            "shop 42 must re-authorize",
        );

        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["node_id"], "gw1");
        assert_eq!(body["checks"]["store"]["status"], "ok");
        assert_eq!(body["alerts"][0]["code"], "reauthorize");

        health.failing(CheckName::Outbox, "stalled");
        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(body["status"], "failing");

        token.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text_and_merged_routes_are_served() {
        let (base, token, server) = start(state()).await;
        metrics::counter!("wms_node_ops_http_test_total").increment(1);
        let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = r.text().await.unwrap();
        assert!(text.contains("wms_node_ops_http_test_total"), "{text}");
        assert!(text.contains("wms_node_uptime_seconds"), "{text}");
        assert!(
            text.contains("# HELP wms_node_uptime_seconds Seconds since the node started."),
            "{text}"
        );

        let r = reqwest::get(format!("{base}/api/ping")).await.unwrap();
        assert_eq!(r.text().await.unwrap(), "pong");
        token.cancel();
        server.await.unwrap();
    }

    #[test]
    fn only_clients_on_this_machine_are_local() {
        let peer = |remote: &str, local: Option<&str>| Peer {
            remote: remote.parse().unwrap(),
            local: local.map(|l| l.parse().unwrap()),
        };
        for (remote, local) in [
            ("127.0.0.1:5000", Some("127.0.0.1:9870")),
            ("127.8.0.1:5000", None),
            ("[::1]:5000", Some("[::1]:9870")),
            ("[::ffff:127.0.0.1]:5000", Some("[::]:9870")),
            // The box reaching its own LAN address.
            ("192.168.1.20:5000", Some("192.168.1.20:9870")),
            ("[::ffff:192.168.1.20]:5000", Some("192.168.1.20:9870")),
        ] {
            assert!(peer(remote, local).is_local(), "{remote} -> {local:?}");
        }
        for (remote, local) in [
            ("192.168.1.21:5000", Some("192.168.1.20:9870")),
            ("10.0.0.1:5000", None),
            ("[::ffff:10.0.0.1]:5000", Some("[::ffff:10.0.0.2]:9870")),
            ("[fe80::1]:5000", Some("[fe80::2]:9870")),
        ] {
            assert!(!peer(remote, local).is_local(), "{remote} -> {local:?}");
        }
    }

    #[tokio::test]
    async fn local_only_routes_refuse_a_request_whose_peer_is_unknown() {
        // Served without `serve` (no peer address): refused, never served by mistake.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = local_only(Router::new().route("/api/ping", get(|| async { "pong" })));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let r = reqwest::get(format!("http://{addr}/api/ping"))
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let body: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("only on this machine"),
            "{body}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn status_page_shows_alerts_checks_and_sections_escaped() {
        let st = state();
        st.alerts.raise(
            AlertCode::DeadLetter,
            Severity::Warning,
            "op 7 <isv.invalid>",
        );
        st.health.degraded(CheckName::Taobao, "link down");
        let (base, token, server) = start(st).await;
        let r = reqwest::get(format!("{base}/")).await.unwrap();
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        assert!(html.contains("wh&lt;1&gt;"), "{html}");
        assert!(html.contains("op 7 &lt;isv.invalid&gt;"));
        assert!(html.contains(crate::VERSION));
        assert!(html.contains("<h2>Queue</h2>"));
        assert!(html.contains("link down"));
        token.cancel();
        server.await.unwrap();
    }
}
