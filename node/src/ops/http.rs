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
//! drop, the node's authorisation) is wrapped in [`admin_api`]:
//!
//! - it answers only to clients on the box itself ([`local_only`]), even when `[http] listen`
//!   opens the status page and `/metrics` to a management network;
//! - it answers no browser: the `Host` must be an address (not a name an attacker's DNS could
//!   point at the box), every state-changing request (POST, PUT, PATCH, DELETE, with or without
//!   a body) must carry [`ADMIN_HEADER`] (a header no web page can send without a CORS
//!   preflight, which is never granted) and an `Origin`, if any, must be the server's own.
//!
//! A slow or hostile client cannot hold the server ([`serve`], [`HttpOptions`]): headers must
//! arrive within `header_read_timeout` (also how long a kept-alive connection may wait for its
//! next request), a request ends within `request_timeout` (408), a connection on which nothing
//! moves for `idle_timeout` is closed, and at most `max_connections` are served at once (the
//! rest wait in the listen backlog).
//!
//! Every error the server answers, its own (404, 405, 408, 413, 415, 422, 500) and every
//! route's, is JSON: `{"error": "what went wrong"}` ([`json_errors`]).

#[cfg(test)]
use super::alert::AlertCode;
use super::alert::{Alert, Alerts, Severity};
use crate::status::health::{CheckName, Health, Report, Status};
use crate::status::i18n::{Lang, Msg};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::FutureExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

pub use crate::status::{At, Observation, StatusSection, StatusSource, age, bytes};

/// Everything the operator views show, taken once per request: the status page, `/healthz`
/// and `/metrics` (and `wms-node status`, which reads `/healthz`) render one snapshot each,
/// so the header, the checks and the tables of one page are of one instant. The page's is
/// taken in the node's language, the others' in English (they are machine output).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Status, version, uptime and checks.
    #[serde(flatten)]
    pub report: Report,
    /// `node.id`.
    pub node_id: String,
    /// `node.site`.
    pub site: String,
    /// When it was taken (RFC 3339, UTC).
    pub as_of: String,
    /// When it was taken (Unix ms).
    #[serde(skip)]
    pub as_of_ms: u64,
    /// The active alerts.
    pub alerts: Vec<Alert>,
    /// The recently resolved alerts (the page shows them).
    #[serde(skip)]
    pub history: Vec<Alert>,
    /// Each part's figures, in page order.
    pub sections: Vec<StatusSection>,
}

impl Snapshot {
    /// Observes every part now; their checks are set on the node's [`Health`] first, so the
    /// report is of the same instant as the sections.
    pub fn take(s: &OpsState, lang: Lang) -> Snapshot {
        let now_ms = super::alert::now_ms();
        let at = At {
            now_ms,
            local: &s.local,
            lang,
        };
        let mut sections = Vec::with_capacity(s.sections.len());
        for src in &s.sections {
            let o = src.observe(&at);
            for (name, status, message) in o.checks {
                s.health.set(name, status, message);
            }
            sections.extend(o.section);
        }
        metrics::gauge!("wms_node_uptime_seconds").set(s.health.uptime().as_secs_f64());
        Snapshot {
            report: s.health.report(),
            node_id: s.node_id.clone(),
            site: s.site.clone(),
            as_of: super::alert::rfc3339(now_ms),
            as_of_ms: now_ms,
            alerts: s.alerts.active(),
            history: s.alerts.history(),
            sections,
        }
    }
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
    /// The warehouse's time zone: the page shows times in it.
    pub local: crate::status::time::LocalTime,
    /// The status page's language (`node.language`).
    pub lang: Lang,
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
        .route("/status.js", get(status_js))
        .with_state(Arc::new(state))
}

pub use crate::outbox::admin::ADMIN_HEADER;

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets requests in progress
/// finish (the daemon's shutdown deadline bounds how long). Every error is answered as JSON
/// ([`json_errors`]), a panicking handler as a 500, and `opts` bounds what each client may
/// hold (module docs).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: HttpOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = app
        .layer(axum::middleware::from_fn_with_state(
            opts.request_timeout,
            limit_time,
        ))
        .layer(axum::middleware::from_fn(catch_panics))
        .layer(axum::middleware::from_fn(json_errors));
    let slots = Arc::new(Semaphore::new(
        opts.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let connections = TaskTracker::new();
    loop {
        // A free slot first: beyond the cap, connections wait in the listen backlog, where a
        // slow client holds nothing of ours.
        let slot = tokio::select! {
            // Shutdown: stop accepting.
            _ = shutdown.cancelled() => break,
            // A connection ended (or none is open yet).
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            // Shutdown: stop accepting.
            _ = shutdown.cancelled() => break,
            // A client connects.
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // neither ends the server. A short pause lets descriptors free up.
                    tracing::warn!(error = %e, "ops HTTP: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let peer = Peer {
            remote,
            local: stream.local_addr().ok(),
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            opts.clone(),
            shutdown.clone(),
            slot,
        ));
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One connection: HTTP/1.1 with keep-alive, the header-read timeout, the idle timeout, and a
/// graceful end at shutdown (the request in progress finishes, no new one starts).
async fn serve_connection(
    stream: TcpStream,
    peer: Peer,
    app: Router,
    opts: HttpOptions,
    shutdown: CancellationToken,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let last_active = Arc::new(AtomicU64::new(0));
    let io = hyper_util::rt::TokioIo::new(Watched {
        inner: stream,
        started,
        last_active: last_active.clone(),
    });
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let idle_since = started + Duration::from_millis(last_active.load(Ordering::Relaxed));
        tokio::select! {
            // The connection ended: the client left, a timeout closed it, or it finished
            // after a graceful shutdown.
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %peer.remote, error = %e, "ops HTTP connection ended");
                }
                return;
            }
            // Shutdown: finish the request in progress, accept no other on this connection.
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            // Nothing read or written for `idle_timeout`: a client that stopped reading its
            // answer or stalled in a body. Dropping the connection closes the socket.
            _ = tokio::time::sleep_until(idle_since + opts.idle_timeout) => {
                let quiet = started.elapsed()
                    .saturating_sub(Duration::from_millis(last_active.load(Ordering::Relaxed)));
                if quiet >= opts.idle_timeout {
                    tracing::debug!(peer = %peer.remote, "ops HTTP connection idle; closed");
                    metrics::counter!("wms_node_http_connections_closed_total", "reason" => "idle")
                        .increment(1);
                    return;
                }
            }
        }
    }
}

/// A socket that notes when bytes last moved (milliseconds since the connection started).
struct Watched {
    inner: TcpStream,
    started: Instant,
    last_active: Arc<AtomicU64>,
}

impl Watched {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(ms, Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// An error answer: `{"error": "…"}`, the one shape of every error this server gives.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// A request that takes longer than `http.request_timeout` (body and handler) is answered
/// 408; the handler's work is dropped (the admin API's writes are each one transaction, so
/// nothing is left half done).
async fn limit_time(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            metrics::counter!("wms_node_http_connections_closed_total", "reason" => "request_timeout")
                .increment(1);
            error_response(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request took longer than {} (http.request_timeout)",
                    humantime::format_duration(limit)
                ),
            )
        }
    }
}

/// A panicking handler is a bug; its client gets a 500 instead of a reset connection, and
/// the server carries on.
async fn catch_panics(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!(%path, "an ops HTTP handler panicked (a bug)");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error (a bug; the node's log has the details)",
            )
        }
    }
}

/// The largest error body rewritten into JSON (axum's own rejections are one line).
const MAX_ERROR_TEXT: usize = 16 * 1024;

/// Makes every error answer JSON: the routes' own errors already are; axum's (404 for an
/// unknown path, 405, and the extractors' 400, 413, 415 and 422, which are plain text) are
/// rewritten to `{"error": "…"}` with the same status, keeping their headers (`Allow`).
pub async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match status {
        StatusCode::NOT_FOUND if text.is_empty() => format!("no such path: {path}"),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            format!("{method} is not allowed on {path} (allowed: {allow})")
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_lowercase(),
        _ => text,
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    let json = error_response(status, message);
    let (json_parts, json_body) = json.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        json_parts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    Response::from_parts(parts, json_body)
}

/// Both ends of a connection, as [`serve`] records them for each request.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client.
    pub remote: SocketAddr,
    /// The address it connected to (ours); `None` if the socket could not tell.
    pub local: Option<SocketAddr>,
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

/// What every response of the ops server carries: the page and its data are not to be
/// sniffed as another type, framed, or given a referrer; the page may only use its own inline
/// styles.
const SECURITY_HEADERS: [(header::HeaderName, &str); 4] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; \
         frame-ancestors 'none'",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// Wraps the whole ops server: refuses a request whose `Host` is not an IP address,
/// `localhost` or one of `hosts` (a page on another site cannot reach the server by
/// rebinding its own name to the box's address), and adds the security headers to every
/// response.
pub fn guard(app: Router, hosts: Vec<String>) -> Router {
    let hosts: Arc<[String]> = hosts
        .into_iter()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    app.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let hosts = hosts.clone();
        async move {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned);
            let mut resp = match host.as_deref() {
                Some(h) if host_allowed(h, &hosts) => next.run(req).await,
                _ => {
                    tracing::warn!(host = ?host.as_deref().map(|h| h.chars().take(80).collect::<String>()),
                        path = %req.uri().path(), "ops HTTP request refused: unknown Host");
                    error_response(
                        StatusCode::FORBIDDEN,
                        "unknown Host: use the box's address, or add the name to [http] hosts",
                    )
                }
            };
            for (name, value) in SECURITY_HEADERS {
                resp.headers_mut()
                    .insert(name, HeaderValue::from_static(value));
            }
            resp
        }
    }))
}

/// Whether a `Host` header names an IP address (v4, or v6 in brackets), `localhost`, or one
/// of `hosts` (lower case), with or without a port.
fn host_allowed(host: &str, hosts: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                host
            }
        })
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok() || name == "localhost" || hosts.contains(&name)
}

/// The admin API's guard: [`local_only`], then no browsers ([`refuse_browsers`]). Every
/// `/api/…` router goes through it.
pub fn admin_api(routes: Router) -> Router {
    local_only(routes.layer(axum::middleware::from_fn(refuse_browsers)))
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
    error_response(
        StatusCode::FORBIDDEN,
        "the admin API answers only on this machine: run wms-node on the box (e.g. over ssh)",
    )
}

/// Why a request looks like it came from a web page, if it does.
pub fn browser_request(method: &Method, headers: &axum::http::HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // A name could be an attacker's, pointed at this box (DNS rebinding); the node's own
    // clients use the listen address.
    if let Some(h) = host
        && !host_is_address(h)
    {
        return Some(format!(
            "Host `{h}` is not an address of this box: use the IP address (e.g. 127.0.0.1)"
        ));
    }
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !changes {
        return None;
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = host.map(|h| format!("http://{h}"));
        if origin.to_str().ok() != own.as_deref() {
            return Some(format!(
                "Origin {} is not this server's",
                origin.to_str().unwrap_or("(not text)")
            ));
        }
    }
    let (name, value) = ADMIN_HEADER;
    if headers.get(name).and_then(|v| v.to_str().ok()) != Some(value) {
        return Some(format!(
            "a state-changing request needs the header `{name}: {value}` (wms-node's own \
             clients send it; web pages cannot)"
        ));
    }
    None
}

/// `127.0.0.1:9870`, `[::1]:9870`, `localhost:9870`, `192.168.1.20`: an address, or the
/// loopback name.
fn host_is_address(host: &str) -> bool {
    // The same reading of a Host as the server's [`guard`], with no configured names: the
    // page may be opened by the box's name on the warehouse network, the admin API not.
    host_allowed(host, &[])
}

/// Refuses what [`browser_request`] finds (403, JSON).
async fn refuse_browsers(req: Request, next: Next) -> Response {
    match browser_request(req.method(), req.headers()) {
        None => next.run(req).await,
        Some(why) => {
            tracing::warn!(path = %req.uri().path(), method = %req.method(), %why,
                "admin API refused a request that looks like a web page's");
            error_response(StatusCode::FORBIDDEN, format!("refused: {why}"))
        }
    }
}

async fn healthz(State(s): State<Arc<OpsState>>) -> Response {
    let snap = Snapshot::take(&s, Lang::En);
    let code = if snap.report.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut resp = (code, axum::Json(snap)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn metrics(State(s): State<Arc<OpsState>>) -> Response {
    // The gauges the parts set while observed are of this instant too.
    let _ = Snapshot::take(&s, Lang::En);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        super::metrics::render(&s.metrics),
    )
        .into_response()
}

/// The page's script: polls the page every 10 s and, when the node stops answering, keeps
/// the last page with "lost contact since …" instead of the browser's error page.
const STATUS_JS: &str = include_str!("static/status.js");

async fn status_js() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            ),
        ],
        STATUS_JS,
    )
        .into_response()
}

async fn status_page(State(s): State<Arc<OpsState>>) -> Response {
    let snap = Snapshot::take(&s, s.lang);
    let mut resp = Html(render_page(&s, &snap)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn render_page(s: &OpsState, snap: &Snapshot) -> String {
    let (report, alerts, history, sections) =
        (&snap.report, &snap.alerts, &snap.history, &snap.sections);
    let lang = s.lang;
    let t = |m: Msg| lang.t(m);
    let mut h = String::with_capacity(4096);
    let overall = status_class(report.status);
    // `write!` into a String cannot fail.
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="{html_lang}" data-lost="{lost}"><head><meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="10"></noscript>
<script src="/status.js" defer></script>
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wms-node {id} · {overall_word}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5rem;max-width:60rem;color:#222}}
h1{{font-size:1.4rem;overflow-wrap:anywhere}} h2{{font-size:1.1rem;margin-top:1.5rem}}
table{{border-collapse:collapse;width:100%}} td,th{{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}} td{{overflow-wrap:break-word}}
p{{overflow-wrap:anywhere}}
@media (max-width:40rem){{body{{margin:.5rem}} table,tbody,tr,td,th{{display:block;width:auto}} tr{{border-bottom:1px solid #ddd;padding:.3rem 0}} td,th{{border:0;padding:.1rem .3rem}} tr.head,.wide{{display:none}} td{{overflow-wrap:anywhere}}}}
.ok{{color:#176f2c}} .degraded,.warning{{color:#9a6700}} .failing,.critical{{color:#b42318;font-weight:bold}} .info{{color:#555}}
.muted{{color:#666}}
</style></head><body>
<h1>wms-node <span class="muted">{id} @ {site}</span> — <span id="overall" class="{overall}">{overall_word}</span></h1>
<p class="muted">{as_of_word} <b id="as-of">{as_of}</b> ({tz}, {offset}) · {refreshes} · {version_word} {version} · {up_word} {uptime} · <a href="/healthz">/healthz</a> · <a href="/metrics">/metrics</a></p>
"#,
        html_lang = lang.html_lang(),
        id = esc(&s.node_id),
        site = esc(&s.site),
        overall = overall,
        overall_word = esc(t(status_msg(report.status))),
        lost = esc(t(Msg::LostContact)),
        as_of_word = esc(t(Msg::PageAsOf)),
        refreshes = esc(t(Msg::PageRefreshes)),
        version_word = esc(t(Msg::PageVersion)),
        version = esc(report.version),
        up_word = esc(t(Msg::PageUp)),
        uptime = esc(&lang.age(Duration::from_secs(report.uptime_seconds))),
        tz = esc(&s.local.name),
        offset = s.local.offset_str(),
        as_of = s.local.format(snap.as_of_ms),
    );

    let now = snap.as_of_ms;
    let at = At {
        now_ms: now,
        local: &s.local,
        lang,
    };
    let ago = |ms: u64| {
        esc(&lang.f(
            Msg::Ago,
            &[&lang.age(Duration::from_millis(now.saturating_sub(ms)))],
        ))
    };
    let _ = writeln!(h, "<h2 id=\"alerts\">{}</h2>", esc(t(Msg::Alerts)));
    if alerts.is_empty() {
        let _ = writeln!(h, "<p class=\"ok\">{}</p>", esc(t(Msg::NoActiveAlerts)));
    } else {
        let _ = writeln!(
            h,
            "<table id=\"alerts-table\"><tr class=\"head\"><th>{}</th><th>{}</th><th>{}</th>\
             <th>{}</th><th class=\"wide\">{}</th><th class=\"wide\">{}</th></tr>",
            esc(t(Msg::ColSeverity)),
            esc(t(Msg::ColAlert)),
            esc(t(Msg::ColWhatToDo)),
            esc(t(Msg::ColSince)),
            esc(t(Msg::ColLastSeen)),
            esc(t(Msg::ColCount)),
        );
        for a in alerts {
            let sev = severity_word(a.severity);
            let _ = writeln!(
                h,
                "<tr><td class=\"{sev}\">{}</td><td>{}</td><td>{}</td><td>{}<br>\
                 <span class=\"muted\">{}</span></td><td class=\"wide\">{}</td>\
                 <td class=\"wide\">{}</td></tr>",
                esc(t(severity_msg(a.severity))),
                esc(&alert_name(a)),
                esc(&a.message),
                esc(&lang.f(Msg::ForDuration, &[&lang.age(a.active_for(now))])),
                s.local.format(a.first_seen_ms),
                ago(a.last_seen_ms),
                a.count,
            );
        }
        h.push_str("</table>\n");
    }
    let resolved: Vec<&Alert> = history.iter().take(10).collect();
    if !resolved.is_empty() {
        let _ = writeln!(
            h,
            "<h2>{}</h2>\n<table><tr class=\"head\"><th>{}</th><th>{}</th><th>{}</th><th>{}</th>\
             <th>{}</th></tr>",
            esc(t(Msg::RecentlyResolved)),
            esc(t(Msg::ColAlert)),
            esc(t(Msg::ColWhatItSaid)),
            esc(t(Msg::ColResolved)),
            esc(t(Msg::ColWasActive)),
            esc(t(Msg::ColCount)),
        );
        for a in resolved {
            let resolved_ms = a.resolved_ms.unwrap_or(now);
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}<br><span class=\"muted\">{}</span></td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(&alert_name(a)),
                esc(&a.message),
                ago(resolved_ms),
                s.local.format(resolved_ms),
                esc(&lang.age(a.active_for(now))),
                a.count,
            );
        }
        h.push_str("</table>\n");
    }

    let _ = writeln!(h, "<h2 id=\"checks\">{}</h2>", esc(t(Msg::Checks)));
    if report.checks.is_empty() {
        let _ = writeln!(h, "<p class=\"muted\">{}</p>", esc(t(Msg::NoChecksYet)));
    } else {
        let _ = writeln!(
            h,
            "<table id=\"checks-table\"><tr class=\"head\"><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            esc(t(Msg::ColCheck)),
            esc(t(Msg::ColStatus)),
            esc(t(Msg::ColDetail)),
            esc(t(Msg::ColSince)),
        );
        for (name, c) in &report.checks {
            let st = status_class(c.status);
            let _ = writeln!(
                h,
                "<tr data-check=\"{}\"><td>{}</td><td class=\"{st}\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(name.as_str()),
                esc(t(check_msg(*name))),
                esc(t(status_msg(c.status))),
                esc(&c.message),
                esc(&at.when(
                    c.since
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
                )),
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

/// The catalogue's name of a check.
fn check_msg(c: CheckName) -> Msg {
    match c {
        CheckName::Store => Msg::CheckStore,
        CheckName::Outbox => Msg::CheckOutbox,
        CheckName::Taobao => Msg::CheckTaobao,
        CheckName::Carriers => Msg::CheckCarriers,
        CheckName::Intake => Msg::CheckIntake,
        CheckName::Alerts => Msg::CheckAlerts,
    }
}

/// The catalogue's word for a status.
pub fn status_msg(s: Status) -> Msg {
    match s {
        Status::Ok => Msg::Ok,
        Status::Degraded => Msg::Degraded,
        Status::Failing => Msg::Failing,
    }
}

/// The catalogue's word for a severity.
pub fn severity_msg(s: Severity) -> Msg {
    match s {
        Severity::Critical => Msg::Critical,
        Severity::Warning => Msg::Warning,
        Severity::Info => Msg::Info,
    }
}

/// `dead_letter (201) · op_kind ship`.
fn alert_name(a: &Alert) -> String {
    match &a.subject {
        Some(s) => format!("{} ({}) · {s}", a.code, a.code.number()),
        None => format!("{} ({})", a.code, a.code.number()),
    }
}

/// The CSS class (and English word) of a status.
fn status_class(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Degraded => "degraded",
        Status::Failing => "failing",
    }
}

fn severity_word(s: Severity) -> &'static str {
    s.as_str()
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
    use serde::Deserialize;

    /// A part whose figure changes under the page: its check and its row come from one
    /// reading of `pending`.
    #[derive(Default)]
    struct Queue {
        pending: std::sync::atomic::AtomicU64,
    }
    impl StatusSource for Queue {
        fn observe(&self, at: &At<'_>) -> Observation {
            let n = self.pending.load(std::sync::atomic::Ordering::SeqCst);
            Observation {
                checks: vec![(
                    CheckName::Outbox,
                    if n > 5 { Status::Degraded } else { Status::Ok },
                    format!("{n} ops queued"),
                )],
                section: Some(StatusSection {
                    title: "Queue".into(),
                    rows: vec![(at.t(Msg::RowPending), n.to_string())],
                }),
            }
        }
    }

    async fn start(state: OpsState) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
        start_with(state, HttpOptions::default()).await
    }

    #[derive(Debug, Deserialize)]
    struct Thing {
        #[allow(dead_code)]
        n: u32,
    }

    /// The ops routes plus admin routes of every kind the real ones have: a body-less POST,
    /// a JSON body, a path parameter, a slow one and a panicking one.
    async fn start_with(
        state: OpsState,
        opts: HttpOptions,
    ) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
        use axum::routing::post;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let admin =
            Router::new()
                .route("/api/ping", get(|| async { "pong" }))
                .route(
                    "/api/retry",
                    post(|| async { axum::Json(serde_json::json!({"ok": true})) }),
                )
                .route(
                    "/api/thing",
                    post(|axum::Json(_t): axum::Json<Thing>| async { "taken" }),
                )
                .route(
                    "/api/ops/{seq}",
                    get(
                        |axum::extract::Path(seq): axum::extract::Path<u64>| async move {
                            seq.to_string()
                        },
                    ),
                )
                .route(
                    "/api/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        "late"
                    }),
                )
                .route(
                    "/api/panic",
                    get(|| async {
                        if true {
                            panic!("a handler bug");
                        }
                        "unreachable"
                    }),
                );
        let app = router(state).merge(admin_api(admin));
        let t = token.clone();
        let server = tokio::spawn(async move {
            serve(listener, app, opts, t).await.unwrap();
        });
        (format!("http://{addr}"), token, server)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    async fn json_error(r: reqwest::Response) -> (u16, String) {
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        assert!(ct.starts_with("application/json"), "{status} {ct}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"));
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{status}: no error string: {text}"))
            .to_owned();
        (status, msg)
    }

    #[tokio::test]
    async fn every_error_of_the_server_is_json() {
        let (base, token, server) = start(state()).await;
        let c = client();
        let admin = |r: reqwest::RequestBuilder| r.header(ADMIN_HEADER.0, ADMIN_HEADER.1);
        let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
            (c.get(format!("{base}/nope")), 404, "no such path: /nope"),
            (c.get(format!("{base}/api/nope")), 404, "/api/nope"),
            (
                c.post(format!("{base}/healthz")),
                405,
                "POST is not allowed",
            ),
            (
                admin(c.post(format!("{base}/api/thing"))).body("{\"n\":1}"),
                415,
                "Content-Type",
            ),
            (
                admin(c.post(format!("{base}/api/thing")))
                    .header("content-type", "application/json")
                    .body("{\"n\":\"x\"}"),
                422,
                "n",
            ),
            (
                admin(c.post(format!("{base}/api/thing")))
                    .header("content-type", "application/json")
                    .body("{\"n\":"),
                400,
                "",
            ),
            (
                admin(c.post(format!("{base}/api/thing")))
                    .header("content-type", "application/json")
                    .body(vec![b' '; 3 * 1024 * 1024]),
                413,
                "",
            ),
            (c.get(format!("{base}/api/ops/abc")), 400, "abc"),
            (
                c.get(format!("{base}/api/ops/99999999999999999999")),
                400,
                "",
            ),
            (c.get(format!("{base}/api/panic")), 500, "a bug"),
        ];
        for (req, want, says) in cases {
            let (status, msg) = json_error(req.send().await.unwrap()).await;
            assert_eq!(status, want, "{msg}");
            assert!(msg.contains(says), "{status}: {msg:?} lacks {says:?}");
        }
        // The server carries on after a panicking handler.
        let r = c.get(format!("{base}/api/ping")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "pong");
        token.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn state_changing_requests_need_the_admin_header_and_no_foreign_origin() {
        let (base, token, server) = start(state()).await;
        let c = client();
        let host = base.trim_start_matches("http://").to_owned();
        let post = || c.post(format!("{base}/api/retry"));
        // A page's form or fetch: no header, or a foreign Origin, or a DNS-rebound Host.
        let (status, msg) = json_error(post().send().await.unwrap()).await;
        assert_eq!(status, 403);
        assert!(msg.contains("x-wms-node: 1"), "{msg}");
        let (status, msg) = json_error(
            post()
                .header(ADMIN_HEADER.0, ADMIN_HEADER.1)
                .header("origin", "http://evil.example")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403);
        assert!(msg.contains("evil.example"), "{msg}");
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let (status, msg) = json_error(
                c.request(method, format!("{base}/api/retry"))
                    .header(ADMIN_HEADER.0, ADMIN_HEADER.1)
                    .header("host", "evil.example:9870")
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 403);
            assert!(msg.contains("evil.example"), "{msg}");
        }
        // wms-node's own clients: the header, no Origin (or the server's own).
        for origin in [None, Some(format!("http://{host}"))] {
            let mut req = post().header(ADMIN_HEADER.0, ADMIN_HEADER.1);
            if let Some(o) = &origin {
                req = req.header("origin", o);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200, "{origin:?}");
        }
        // Reads need no header.
        let r = c.get(format!("{base}/api/ping")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        token.cancel();
        server.await.unwrap();
    }

    /// A slowloris client: connects, sends part of a request line and headers, then one more
    /// byte every `every`. Returns how long the server let it hang on, and whether it ever got
    /// an answer.
    async fn slowloris(addr: String, every: Duration) -> (Duration, bool) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let started = std::time::Instant::now();
        let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
            return (started.elapsed(), false);
        };
        let _ = s
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ")
            .await;
        let mut buf = [0u8; 256];
        loop {
            tokio::select! {
                n = s.read(&mut buf) => {
                    let answered = matches!(n, Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"));
                    return (started.elapsed(), answered);
                }
                _ = tokio::time::sleep(every) => {
                    if s.write_all(b"a").await.is_err() {
                        return (started.elapsed(), false);
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                return (started.elapsed(), false);
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slowloris_connections_are_dropped_and_a_normal_client_is_still_served() {
        let opts = HttpOptions {
            header_read_timeout: Duration::from_millis(500),
            max_connections: 8,
            ..HttpOptions::default()
        };
        let (base, token, server) = start_with(state(), opts).await;
        let addr = base.trim_start_matches("http://").to_owned();
        let attackers: Vec<_> = (0..60)
            .map(|_| tokio::spawn(slowloris(addr.clone(), Duration::from_millis(100))))
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Every slot is taken by a slow client now; a normal client is served once the
        // header timeout frees them, in seconds, not after the attackers give up.
        let t0 = std::time::Instant::now();
        let r = client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success() || r.status() == 503);
        assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
        for a in attackers {
            let (held, answered) = a.await.unwrap();
            assert!(!answered, "a slowloris client got an answer");
            // 60 clients through 8 slots at 0.5 s each is at most ~4 s of queueing.
            assert!(held < Duration::from_secs(20), "held {held:?}");
        }
        token.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_on_which_nothing_moves_is_closed_after_the_idle_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let opts = HttpOptions {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(300),
            ..HttpOptions::default()
        };
        let (base, token, server) = start_with(state(), opts).await;
        let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        s.write_all(b"GET /api/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // Kept alive, then silent: closed well before the header timeout.
        let t0 = std::time::Instant::now();
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the idle connection was not closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        token.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_trickled_body_or_a_slow_handler_ends_in_a_json_408() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let opts = HttpOptions {
            request_timeout: Duration::from_millis(500),
            ..HttpOptions::default()
        };
        let (base, token, server) = start_with(state(), opts).await;
        let (status, msg) = json_error(
            client()
                .get(format!("{base}/api/slow"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 408);
        assert!(msg.contains("http.request_timeout"), "{msg}");
        let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        s.write_all(
            b"POST /api/thing HTTP/1.1\r\nHost: 127.0.0.1\r\nx-wms-node: 1\r\n\
              content-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
        let t0 = std::time::Instant::now();
        let mut buf = vec![0u8; 4096];
        let n = loop {
            tokio::select! {
                n = s.read(&mut buf) => break n.unwrap(),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    let _ = s.write_all(b" ").await;
                }
            }
        };
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
        assert!(head.contains("application/json"), "{head}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        token.cancel();
        server.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_connection_cap_a_client_waits_for_a_free_slot() {
        let opts = HttpOptions {
            header_read_timeout: Duration::from_millis(800),
            max_connections: 2,
            ..HttpOptions::default()
        };
        let (base, token, server) = start_with(state(), opts).await;
        let addr = base.trim_start_matches("http://").to_owned();
        // Two clients that connect and say nothing hold both slots until the header timeout.
        let silent: Vec<_> = (0..2)
            .map(|_| {
                let addr = addr.clone();
                tokio::spawn(async move { tokio::net::TcpStream::connect(addr).await })
            })
            .collect();
        let mut held = Vec::new();
        for s in silent {
            held.push(s.await.unwrap().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t0 = std::time::Instant::now();
        let r = client()
            .get(format!("{base}/api/ping"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "pong");
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(500) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        token.cancel();
        server.await.unwrap();
    }

    fn state() -> OpsState {
        OpsState {
            node_id: "gw1".into(),
            site: "wh<1>".into(),
            health: Health::new(),
            alerts: Alerts::new(),
            metrics: crate::ops::metrics::handle(),
            sections: vec![Arc::new(Queue::default())],
            local: crate::status::time::LocalTime::default(),
            lang: Lang::En,
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

        health.failing(CheckName::Intake, "lags 3 h while Taobao answers");
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

    /// Issue 17: the header, the checks and the tables of one page (and `/healthz`) are of
    /// one instant: a part's check and its row come from one reading, taken per request.
    #[tokio::test]
    async fn every_view_is_one_snapshot_taken_at_request_time() {
        let queue = Arc::new(Queue::default());
        let mut st = state();
        st.sections = vec![queue.clone()];
        let (base, token, server) = start(st).await;
        for n in [0u64, 9, 2] {
            queue.pending.store(n, std::sync::atomic::Ordering::SeqCst);
            let html = reqwest::get(format!("{base}/"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let want = if n > 5 { "degraded" } else { "ok" };
            assert!(
                html.contains(&format!(
                    "<span id=\"overall\" class=\"{want}\">{want}</span></h1>"
                )),
                "{n}: {html}"
            );
            assert!(
                html.contains(&format!("<td>{n} ops queued</td>")),
                "{n}: {html}"
            );
            assert!(
                html.contains(&format!("<tr><th>pending</th><td>{n}</td></tr>")),
                "{n}: {html}"
            );
            assert!(html.contains("as of <b id=\"as-of\">"), "{html}");
            let text = reqwest::get(format!("{base}/healthz"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let h: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(h["status"], want, "{h}");
            assert_eq!(h["checks"]["outbox"]["message"], format!("{n} ops queued"));
            assert_eq!(h["sections"][0]["title"], "Queue", "{h}");
            assert_eq!(h["sections"][0]["rows"][0][1], n.to_string(), "{h}");
            assert!(h["as_of"].as_str().unwrap().ends_with('Z'), "{h}");
        }
        token.cancel();
        server.await.unwrap();
    }

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(
            [
                bytes(0),
                bytes(1023),
                bytes(1024),
                bytes(1536),
                bytes(12_900),
                bytes(268_435_456),
                bytes(1_610_612_736),
            ],
            [
                "0 B", "1023 B", "1 KiB", "1.50 KiB", "12.6 KiB", "256 MiB", "1.50 GiB"
            ]
        );
    }

    #[tokio::test]
    async fn unknown_hosts_are_refused_and_every_answer_carries_the_security_headers() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let app = guard(router(state()), vec!["WMS-GW1.local".into()]);
        let t = token.clone();
        let server = tokio::spawn(async move {
            serve(listener, app, HttpOptions::default(), t)
                .await
                .unwrap()
        });
        let client = reqwest::Client::new();
        let get = |host: &'static str| {
            client
                .get(format!("http://{addr}/healthz"))
                .header(header::HOST, host)
                .send()
        };
        for ok in [
            "127.0.0.1:9870",
            "localhost:9870",
            "wms-gw1.local",
            "wms-gw1.local.:80",
            "[::1]:9870",
            "192.168.1.20",
        ] {
            let r = get(ok).await.unwrap();
            assert_eq!(r.status(), 200, "{ok}");
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");
            assert_eq!(r.headers()["referrer-policy"], "no-referrer");
            let csp = r.headers()["content-security-policy"].to_str().unwrap();
            assert!(
                csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
                "{csp}"
            );
        }
        for bad in ["attacker.example:9870", "wms-gw1.local.evil", "[nonsense]"] {
            let r = get(bad).await.unwrap();
            assert_eq!(r.status(), 403, "{bad}");
            assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        }
        token.cancel();
        server.await.unwrap();
    }

    #[test]
    fn ages_read_as_people_say_them() {
        let a = |s| age(Duration::from_secs(s));
        assert_eq!(
            [a(0), a(59), a(180), a(3600), a(3900), a(90_000)],
            ["0 s", "59 s", "3 min", "1 h", "1 h 5 min", "1 d 1 h"]
        );
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
        st.alerts
            .raise(AlertCode::Clock, Severity::Warning, "clock off");
        st.alerts.clear(AlertCode::Clock);
        let (base, token, server) = start(st).await;
        let r = reqwest::get(format!("{base}/")).await.unwrap();
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        assert!(html.contains("wh&lt;1&gt;"), "{html}");
        assert!(html.contains("op 7 &lt;isv.invalid&gt;"));
        // Since when (with how long), last seen, how often; and the recently resolved.
        assert!(html.contains("dead_letter (201)"), "{html}");
        assert!(html.contains("<td>for 0 s<br>"), "{html}");
        assert!(html.contains("<h2>Recently resolved</h2>"), "{html}");
        assert!(html.contains("clock (104)"), "{html}");
        assert!(html.contains(crate::VERSION));
        assert!(html.contains("<h2>Queue</h2>"));
        assert!(html.contains("link down"));
        // Refreshes itself without JavaScript; with it, a served script polls instead.
        assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>"));
        assert!(html.contains("<script src=\"/status.js\" defer></script>"));
        let js = reqwest::get(format!("{base}/status.js")).await.unwrap();
        assert!(
            js.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        assert!(
            js.text()
                .await
                .unwrap()
                .contains("Lost contact with the node since")
        );
        token.cancel();
        server.await.unwrap();
    }

    /// With `node.language = "zh"` the page speaks Chinese: its frame, the checks' names and
    /// states, the alerts' columns and ages, and the parts' sections (through [`At`]);
    /// `/healthz` stays English for scripts.
    #[tokio::test]
    async fn the_page_renders_in_chinese_and_healthz_stays_english() {
        let mut st = state();
        st.lang = Lang::Zh;
        st.alerts
            .raise(AlertCode::DeadLetter, Severity::Critical, "op 7 failed");
        st.health.degraded(CheckName::Taobao, "link down");
        st.alerts
            .raise(AlertCode::Clock, Severity::Warning, "clock off");
        st.alerts.clear(AlertCode::Clock);
        let (base, token, server) = start(st).await;
        let html = reqwest::get(format!("{base}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for zh in [
            "<html lang=\"zh-CN\" data-lost=\"与节点失去联系，自\">",
            "<span id=\"overall\" class=\"degraded\">部分异常</span></h1>",
            "数据时间",
            "每 10 秒刷新",
            "<h2 id=\"alerts\">告警</h2>",
            "<th>级别</th><th>告警</th><th>说明与处理</th>",
            "<td class=\"critical\">严重</td>",
            "已持续 0 秒",
            "<h2>最近已解除</h2>",
            "<h2 id=\"checks\">检查</h2>",
            "<td>淘宝连接</td><td class=\"degraded\">部分异常</td>",
            "<td>待发队列</td><td class=\"ok\">正常</td>",
            "<tr><th>待发送</th><td>0</td></tr>",
        ] {
            assert!(html.contains(zh), "{zh} missing:\n{html}");
        }
        for en in [
            "as of",
            "refreshes",
            "Alerts",
            "Checks",
            "severity",
            "what to do",
            "Recently",
            ">for ",
            ">degraded<",
            ">ok<",
            "pending",
        ] {
            assert!(!html.contains(en), "English {en:?} left:\n{html}");
        }
        let h: serde_json::Value = serde_json::from_str(
            &reqwest::get(format!("{base}/healthz"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(h["sections"][0]["rows"][0][0], "pending", "{h}");
        assert_eq!(h["checks"]["taobao"]["status"], "degraded", "{h}");
        token.cancel();
        server.await.unwrap();
    }
}
