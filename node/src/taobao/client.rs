//! `TopClient`: one signed call to the TOP gateway, end to end (TAOBAO.md §2).
//!
//! ```text
//! call(method, params, Session::Required)
//!   ├─ local ban for the method or the app?  → Err(Banned), nothing sent
//!   ├─ token buckets (app, method)           → wait
//!   ├─ session from the SessionProvider      → Err(NoSession) if none
//!   ├─ system params + sign                  → query: method app_key timestamp v format
//!   │                                          sign_method session partner_id simplify sign
//!   │                                          body (form): the business params
//!   ├─ POST, gzip, connect + whole-request timeouts
//!   ├─ non-200 / transport / unparsable      → Err (retry)
//!   ├─ error_response                        → Err(Api) (code 7 records a ban; 27 asks the
//!   │                                          provider to refresh once and resends)
//!   └─ the result object, either envelope    → Ok(Value) for the typed calls to decode
//! ```
//!
//! Every call is logged once (method, request_id, code, sub_code, latency) and counted in
//! `wms_node_taobao_calls_total{method,code}` (code `0` = success). Never logged or put in an error:
//! the session, the secret, the signature or its inputs, parameter values, receiver fields.
//! Parameter values stay out of logs because business parameters can carry buyer data.

use super::decode;
use super::error::{ApiError, BanScope, TopError};
use super::limit::{Limiter, RateLimits};
use super::sign::{self, SignMethod};
use crate::alert::{AlertCode, Alerts, Severity};
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Production REST endpoint (HTTPS; the config's default `taobao.endpoint`).
pub const PRODUCTION_ENDPOINT: &str = "https://gw.api.taobao.com/router/rest";

/// Largest reply body read into memory; anything bigger is treated as unreadable.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// What the client needs to know; the lead maps `[taobao]` config onto it.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// REST endpoint, e.g. `https://eco.taobao.com/router/rest`, the sandbox, or a relay.
    pub endpoint: String,
    /// The app's key.
    pub app_key: String,
    /// The app's secret (signing key).
    pub app_secret: Secret,
    /// How requests are signed.
    pub sign_method: SignMethod,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (connect, send, reply).
    pub request_timeout: Duration,
    /// Client-side pacing.
    pub limits: RateLimits,
    /// Calls per GMT+8 day before the budget alert (80 % warning, 100 % critical).
    pub daily_call_budget: Option<u64>,
    /// The `partner_id` system parameter.
    pub partner_id: String,
    /// Ask for `simplify=true` replies (the decoder takes both).
    pub simplify: bool,
    /// Where "now" comes from (timestamps, the daily budget).
    pub clock: super::time::Clock,
}

impl ClientOptions {
    /// Options with the defaults: `hmac-sha256`, 10 s connect, 30 s request, default pacing.
    pub fn new(
        endpoint: impl Into<String>,
        app_key: impl Into<String>,
        app_secret: Secret,
    ) -> Self {
        ClientOptions {
            endpoint: endpoint.into(),
            app_key: app_key.into(),
            app_secret,
            sign_method: SignMethod::HmacSha256,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            limits: RateLimits::default(),
            daily_call_budget: None,
            partner_id: format!("wms-node-{}", crate::VERSION),
            simplify: true,
            clock: super::time::Clock::system(),
        }
    }
}

/// Business parameters of one call, in insertion order. Empty values are dropped as they are
/// set: TOP SDKs disagree on whether empties are signed, so the client never sends one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// No parameters.
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// Sets `name` (replacing an earlier value); an empty value removes it.
    pub fn set(mut self, name: &str, value: impl ToString) -> Self {
        let value = value.to_string();
        self.0.retain(|(k, _)| k != name);
        if !name.is_empty() && !value.is_empty() {
            self.0.push((name.to_owned(), value));
        }
        self
    }

    /// Sets `name` when `value` is `Some`.
    pub fn set_opt<V: ToString>(self, name: &str, value: Option<V>) -> Self {
        match value {
            Some(v) => self.set(name, v),
            None => self,
        }
    }

    /// Sets a date in the GMT+8 wire form.
    pub fn set_date(self, name: &str, at: DateTime<Utc>) -> Self {
        self.set(name, super::time::format(at))
    }

    /// Sets a list, comma-joined without spaces (`tid,status,modified`).
    pub fn set_list<I, V>(self, name: &str, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: ToString,
    {
        let joined = values
            .into_iter()
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
            .join(",");
        self.set(name, joined)
    }

    /// The parameters.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// Whether a call carries the seller's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// The API acts for the seller: send `session`.
    Required,
    /// App-level API that accepts a session: send one when there is one.
    Optional,
    /// App-level API: no session.
    None,
}

/// Where the client gets the seller's session (the OAuth access token).
pub trait SessionProvider: Send + Sync + 'static {
    /// The session to send now (a provider may refresh first when it is about to expire).
    fn session(&self) -> BoxFuture<'_, Result<Secret, TopError>>;

    /// The gateway rejected `rejected` with code 27: get a fresh one if possible.
    /// `Ok(true)`: [`SessionProvider::session`] now returns a different, fresh session.
    /// `Ok(false)`: it cannot be refreshed (the 27 stands: auth). `Err`: refreshing failed
    /// for a reason that may pass (the token endpoint is unreachable): retry later.
    fn rejected(&self, rejected: Secret) -> BoxFuture<'_, Result<bool, TopError>>;
}

/// A fixed session (a pre-issued token for a self-use app, or tests). It cannot refresh.
#[derive(Clone)]
pub struct StaticSession(pub Secret);

impl SessionProvider for StaticSession {
    fn session(&self) -> BoxFuture<'_, Result<Secret, TopError>> {
        let s = self.0.clone();
        Box::pin(async move { Ok(s) })
    }

    fn rejected(&self, _rejected: Secret) -> BoxFuture<'_, Result<bool, TopError>> {
        Box::pin(async { Ok(false) })
    }
}

/// A request ready to send: what goes in the URL query and what goes in the form body.
/// Exposed so tests can check, or tamper with, exactly what is signed.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// System parameters including `sign`.
    pub query: Vec<(String, String)>,
    /// Business parameters.
    pub body: Vec<(String, String)>,
}

impl std::fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values carry the session, the signature and business data.
        let names =
            |v: &Vec<(String, String)>| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("SignedRequest")
            .field("query", &names(&self.query))
            .field("body", &names(&self.body))
            .finish()
    }
}

/// Counts calls per GMT+8 day for the budget alert.
#[derive(Debug, Default)]
struct DayCounter {
    day: Option<chrono::NaiveDate>,
    calls: u64,
}

/// What a call is for, which decides who gets the last calls of a day's budget: shipments
/// first, then order intake, then stock (TAOBAO.md §7). A class stops being sent once the
/// day's count reaches its share of the budget; the alert fires at 80 % for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallClass {
    /// Consignments and the refund feedback that goes with them: never held back locally
    /// (missing a ship-by deadline costs a penalty; the platform's own quota still applies).
    Shipments,
    /// Pulling orders and refunds, item lookups for the SKU map: until 97 %.
    Intake,
    /// Stock pushes: until 90 %.
    Stock,
}

impl CallClass {
    /// The class of `method`.
    pub fn of(method: &str) -> CallClass {
        match method {
            "taobao.logistics.offline.send"
            | "taobao.logistics.online.send"
            | "taobao.logistics.consign.resend"
            | "taobao.rdc.aligenius.sendgoods.cancel"
            | "cainiao.waybill.ii.get"
            | "cainiao.waybill.ii.query.by.tradecode"
            | "cainiao.waybill.ii.cancel" => CallClass::Shipments,
            "taobao.item.quantity.update" | "taobao.skus.quantity.update" => CallClass::Stock,
            _ => CallClass::Intake,
        }
    }

    /// The share of the daily budget this class may use, in percent.
    pub fn share_percent(self) -> u64 {
        match self {
            CallClass::Shipments => 100,
            CallClass::Intake => 97,
            CallClass::Stock => 90,
        }
    }

    /// The name shown on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            CallClass::Shipments => "shipments",
            CallClass::Intake => "intake",
            CallClass::Stock => "stock",
        }
    }
}

/// The day's call count against the budget, for the status page and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BudgetStatus {
    /// Calls sent today (GMT+8 day), answered or not.
    pub calls_today: u64,
    /// `taobao.daily_call_budget`; `None` when not tracked.
    pub budget: Option<u64>,
    /// The classes held back until tomorrow (stock first, then intake).
    pub held_back: Vec<CallClass>,
    /// Calls sent since the client was built.
    pub calls_total: u64,
}

struct Inner {
    opts: ClientOptions,
    http: reqwest::Client,
    limiter: Limiter,
    sessions: Option<Arc<dyn SessionProvider>>,
    alerts: Alerts,
    day: Mutex<DayCounter>,
    total: std::sync::atomic::AtomicU64,
    link: Mutex<LinkSeen>,
}

/// The link to Taobao as the calls see it: whether the last call got a reply, since when,
/// the last successful call and the last failure (for the status page; no secrets: errors
/// name the method and what failed, never the URL).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkSeen {
    /// `None` before the first call; `Some(true)` while calls get replies.
    pub up: Option<bool>,
    /// Since when it is up or down (Unix ms).
    pub since_ms: Option<u64>,
    /// The last call the platform accepted (Unix ms).
    pub last_success_ms: Option<u64>,
    /// The last call that failed, and why.
    pub last_failure: Option<(u64, String)>,
    /// Calls in a row that got no reply.
    pub failures_in_a_row: u32,
}

/// The TOP client. Cheap to clone; clones share the connection pool, buckets and bans.
#[derive(Clone)]
pub struct TopClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TopClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopClient")
            .field("endpoint", &self.inner.opts.endpoint)
            .field("app_key", &self.inner.opts.app_key)
            .field("sign_method", &self.inner.opts.sign_method)
            .finish_non_exhaustive()
    }
}

/// A client that cannot be built from its options.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The endpoint is not an http(s) URL.
    #[error("taobao endpoint {0:?} is not an http:// or https:// URL")]
    Endpoint(String),
    /// The app key or secret is empty.
    #[error("taobao app_key and app_secret must be set")]
    Credentials,
    /// reqwest refused the settings (TLS backend).
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

impl TopClient {
    /// Builds a client; `sessions` supplies the seller's session for calls that need one.
    pub fn new(
        opts: ClientOptions,
        sessions: Option<Arc<dyn SessionProvider>>,
        alerts: Alerts,
    ) -> Result<TopClient, BuildError> {
        match reqwest::Url::parse(&opts.endpoint) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => return Err(BuildError::Endpoint(opts.endpoint.clone())),
        }
        if opts.app_key.is_empty() || opts.app_secret.is_empty() {
            return Err(BuildError::Credentials);
        }
        let http = http_client(opts.connect_timeout, opts.request_timeout)?;
        Ok(TopClient {
            inner: Arc::new(Inner {
                limiter: Limiter::new(opts.limits.clone()),
                link: Mutex::new(LinkSeen::default()),
                opts,
                http,
                sessions,
                alerts,
                day: Mutex::new(DayCounter::default()),
                total: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// Whether a session provider is attached.
    pub fn has_sessions(&self) -> bool {
        self.inner.sessions.is_some()
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// Signs a request for `method` at `now`, without sending it.
    pub fn sign_request(
        &self,
        method: &str,
        params: &Params,
        session: Option<&Secret>,
        now: DateTime<Utc>,
    ) -> SignedRequest {
        let o = &self.inner.opts;
        let mut query: Vec<(String, String)> = vec![
            ("method".into(), method.into()),
            ("app_key".into(), o.app_key.clone()),
            ("timestamp".into(), super::time::format(now)),
            ("v".into(), "2.0".into()),
            ("format".into(), "json".into()),
            ("sign_method".into(), o.sign_method.as_str().into()),
        ];
        if let Some(s) = session {
            query.push(("session".into(), s.expose().to_owned()));
        }
        if !o.partner_id.is_empty() {
            query.push(("partner_id".into(), o.partner_id.clone()));
        }
        if o.simplify {
            query.push(("simplify".into(), "true".into()));
        }
        // A business parameter never shadows a system one: the gateway would merge them
        // and the signature would cover the wrong value.
        let body: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !query.iter().any(|(q, _)| q == k) && *k != "sign")
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let all = query
            .iter()
            .chain(body.iter())
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let signature = sign::sign(all, o.app_secret.expose(), o.sign_method);
        query.push(("sign".into(), signature));
        SignedRequest { query, body }
    }

    /// Calls `method` and returns the result object (either envelope, unwrapped).
    pub async fn call(
        &self,
        method: &str,
        params: Params,
        session: Session,
    ) -> Result<Value, TopError> {
        if let Some((scope, remaining)) = self
            .inner
            .limiter
            .check_ban(method, self.inner.opts.clock.now())
        {
            tracing::debug!(
                method,
                scope = %scope,
                remaining_s = remaining.as_secs(),
                "taobao call not sent: banned"
            );
            metrics::counter!("wms_node_taobao_calls_total", "method" => method.to_owned(), "code" => "banned")
                .increment(1);
            return Err(TopError::Banned {
                method: method.to_owned(),
                scope,
                remaining,
            });
        }
        self.budget_gate(method)?;
        let mut refreshed = false;
        loop {
            let current = match session {
                Session::Required => Some(self.session(method).await?),
                Session::Optional => match &self.inner.sessions {
                    Some(_) => self.session(method).await.ok(),
                    None => None,
                },
                Session::None => None,
            };
            self.inner.limiter.acquire(method).await;
            let result = self.send_once(method, &params, current.as_ref()).await;
            match (result, current) {
                (Err(TopError::Api(e)), Some(sent)) if e.code == 27 && !refreshed => {
                    let provider = self.inner.sessions.clone();
                    let fresh = match provider {
                        Some(p) => p.rejected(sent).await?,
                        None => false,
                    };
                    if !fresh {
                        return Err(TopError::Api(e));
                    }
                    // The gateway checks sessions before any business logic (TAOBAO.md
                    // §1.7), so resending after a 27 cannot apply anything twice.
                    refreshed = true;
                    tracing::info!(method, "session refreshed after code 27; resending once");
                }
                (result, sent) => {
                    if result.is_ok() && sent.is_some() {
                        // The platform took our session: the shop is authorised (also after a
                        // restart restored an old alert, or `auth login` ran while stopped).
                        self.inner.alerts.clear(AlertCode::Reauthorize);
                    }
                    return result;
                }
            }
        }
    }

    /// Calls `method` and decodes the result object into `T`.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Params,
        session: Session,
    ) -> Result<T, TopError> {
        let v = self.call(method, params, session).await?;
        decode::from_value(v).map_err(|e| TopError::Decode {
            method: method.to_owned(),
            detail: e.to_string(),
        })
    }

    async fn session(&self, method: &str) -> Result<Secret, TopError> {
        match &self.inner.sessions {
            Some(p) => p.session().await,
            None => Err(TopError::NoSession {
                reason: format!("{method} needs a seller session and none is configured"),
            }),
        }
    }

    async fn send_once(
        &self,
        method: &str,
        params: &Params,
        session: Option<&Secret>,
    ) -> Result<Value, TopError> {
        let req = self.sign_request(method, params, session, self.inner.opts.clock.now());
        self.count_call();
        let started = Instant::now();
        let outcome = self.exchange(method, req).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (code, sub_code, request_id) = match &outcome {
            Ok((_, rid)) => ("0".to_owned(), None, rid.clone()),
            Err(e) => {
                let api = e.api();
                (
                    e.code_label(),
                    api.and_then(|a| a.sub_code.clone()),
                    api.and_then(|a| a.request_id.clone()),
                )
            }
        };
        metrics::counter!("wms_node_taobao_calls_total", "method" => method.to_owned(), "code" => code.clone())
            .increment(1);
        metrics::histogram!("wms_node_taobao_call_duration_seconds", "method" => method.to_owned())
            .record(started.elapsed().as_secs_f64());
        match &outcome {
            Ok(_) => tracing::debug!(method, request_id, code, latency_ms, "taobao call"),
            // "Already shipped" is the expected answer to a re-delivered shipment.
            Err(e) if e.disposition() == super::Disposition::AlreadyDone => tracing::info!(
                method,
                request_id,
                code,
                sub_code,
                latency_ms,
                "taobao call: already done on the platform"
            ),
            Err(e) => tracing::warn!(
                method,
                request_id,
                code,
                sub_code,
                latency_ms,
                error = %e,
                "taobao call failed"
            ),
        }
        self.saw_link(&outcome);
        match &outcome {
            Err(TopError::Api(e)) => self.after_api_error(e),
            // A reply that got through means the clock, the secret and the app's quota are
            // fine again.
            Ok(_) => {
                for code in [
                    AlertCode::Clock,
                    AlertCode::TaobaoSignature,
                    AlertCode::TaobaoAppBan,
                ] {
                    self.inner.alerts.clear(code);
                }
            }
            Err(_) => {}
        }
        outcome.map(|(v, _)| v)
    }

    /// What one call says about the link: a reply (success or an error answer) means it is
    /// up; no reply, a timeout or a gateway error status means it is down.
    fn saw_link<T>(&self, outcome: &Result<T, TopError>) {
        let now = u64::try_from(self.inner.opts.clock.now().timestamp_millis()).unwrap_or(0);
        let replied = match outcome {
            Ok(_) | Err(TopError::Api(_)) => true,
            Err(TopError::Transport { .. } | TopError::Timeout { .. } | TopError::Http { .. }) => {
                false
            }
            // A garbled body still came from the gateway.
            Err(_) => true,
        };
        let mut l = self.inner.link.lock().unwrap_or_else(|p| p.into_inner());
        if l.up != Some(replied) {
            l.up = Some(replied);
            l.since_ms = Some(now);
        }
        if replied {
            l.failures_in_a_row = 0;
        } else {
            l.failures_in_a_row = l.failures_in_a_row.saturating_add(1);
        }
        match outcome {
            Ok(_) => l.last_success_ms = Some(now),
            Err(e) => l.last_failure = Some((now, e.to_string())),
        }
    }

    /// The link as the calls saw it.
    pub fn link(&self) -> LinkSeen {
        self.inner
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Side effects of some error replies: bans and operator alerts.
    fn after_api_error(&self, e: &ApiError) {
        if let Some((scope, after)) = e.ban() {
            // No announced length: hold the scope for 1 s, the start of the backoff.
            let after = after.unwrap_or(Duration::from_secs(1));
            if scope == BanScope::App {
                self.inner.alerts.raise(
                    AlertCode::TaobaoAppBan,
                    Severity::Warning,
                    format!(
                        "Taobao banned all calls of this app for {} s (code 7, {}); calls resume by themselves",
                        after.as_secs(),
                        e.sub_code.as_deref().unwrap_or("no sub_code")
                    ),
                );
            }
            self.inner
                .limiter
                .ban(scope, after, self.inner.opts.clock.now());
        }
        match e.code {
            31 => self.inner.alerts.raise(
                AlertCode::Clock,
                Severity::Warning,
                "Taobao rejected the request timestamp (code 31): check the box's clock (NTP)",
            ),
            25 => self.inner.alerts.raise(
                AlertCode::TaobaoSignature,
                Severity::Critical,
                "Taobao rejected the request signature (code 25): check taobao.app_secret and sign_method",
            ),
            _ => {}
        }
    }

    /// Sends one signed request and opens the reply.
    async fn exchange(
        &self,
        method: &str,
        req: SignedRequest,
    ) -> Result<(Value, Option<String>), TopError> {
        let transport = |e: reqwest::Error| transport_error(method, e);
        let resp = self
            .inner
            .http
            .post(&self.inner.opts.endpoint)
            .query(&req.query)
            .form(&req.body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(TopError::Http {
                method: method.to_owned(),
                status: status.as_u16(),
            });
        }
        let bytes =
            read_capped(resp)
                .await
                .map_err(transport)?
                .ok_or_else(|| TopError::Decode {
                    method: method.to_owned(),
                    detail: format!("reply larger than {MAX_BODY_BYTES} bytes"),
                })?;
        decode::reply(method, &bytes)
    }

    /// Today's count (GMT+8 day) as of now, reset at midnight.
    fn today(&self) -> (chrono::NaiveDate, std::sync::MutexGuard<'_, DayCounter>) {
        let today = self
            .inner
            .opts
            .clock
            .now()
            .with_timezone(&super::time::cst())
            .date_naive();
        let mut d = self.inner.day.lock().unwrap_or_else(|p| p.into_inner());
        if d.day != Some(today) {
            d.day = Some(today);
            d.calls = 0;
            self.inner.alerts.clear(AlertCode::TaobaoCallBudget);
        }
        (today, d)
    }

    /// Refuses `method` locally when its class's share of today's budget is used up.
    fn budget_gate(&self, method: &str) -> Result<(), TopError> {
        let Some(budget) = self.inner.opts.daily_call_budget.filter(|b| *b > 0) else {
            return Ok(());
        };
        let class = CallClass::of(method);
        let (_, day) = self.today();
        let limit = budget.saturating_mul(class.share_percent()) / 100;
        if class == CallClass::Shipments || day.calls < limit {
            return Ok(());
        }
        drop(day);
        let now = self
            .inner
            .opts
            .clock
            .now()
            .with_timezone(&super::time::cst());
        let midnight = now
            .date_naive()
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|d| d.and_local_timezone(super::time::cst()).single());
        let resume_in = midnight
            .and_then(|m| (m - now).to_std().ok())
            .unwrap_or(Duration::from_secs(3600));
        metrics::counter!("wms_node_taobao_calls_total", "method" => method.to_owned(), "code" => "over_budget")
            .increment(1);
        Err(TopError::OverBudget {
            method: method.to_owned(),
            kept_for: if class == CallClass::Stock {
                "shipments and order intake"
            } else {
                "shipments"
            },
            resume_in,
        })
    }

    /// The platform's bans in force now (scope and time left), longest first.
    pub fn bans(&self) -> Vec<(BanScope, std::time::Duration)> {
        self.inner.limiter.bans(self.inner.opts.clock.now())
    }

    /// The day's calls against the budget.
    pub fn budget(&self) -> BudgetStatus {
        let budget = self.inner.opts.daily_call_budget.filter(|b| *b > 0);
        let (_, day) = self.today();
        let calls_today = day.calls;
        drop(day);
        let held_back = match budget {
            Some(b) => [CallClass::Stock, CallClass::Intake]
                .into_iter()
                .filter(|c| calls_today >= b.saturating_mul(c.share_percent()) / 100)
                .collect(),
            None => Vec::new(),
        };
        BudgetStatus {
            calls_today,
            budget,
            held_back,
            calls_total: self.inner.total.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Today's count (GMT+8 day) and its day, for [`super::budget`] to keep across restarts.
    pub fn calls_today(&self) -> (chrono::NaiveDate, u64) {
        let (today, day) = self.today();
        (today, day.calls)
    }

    /// Starts today's count from what an earlier run recorded, so that a restart does not
    /// hand out the day's budget again. A count of another day is ignored; a lower one too
    /// (calls made since this start are already counted).
    pub fn resume_calls_today(&self, day: chrono::NaiveDate, calls: u64) {
        let (today, mut d) = self.today();
        if day == today && calls > d.calls {
            d.calls = calls;
            drop(d);
            metrics::gauge!("wms_node_taobao_calls_today").set(calls as f64);
        }
    }

    /// Counts a call against the daily budget and raises the budget alert at 80 % / 100 %.
    fn count_call(&self) {
        self.inner
            .total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (_, mut d) = self.today();
        d.calls += 1;
        let calls = d.calls;
        drop(d);
        metrics::gauge!("wms_node_taobao_calls_today").set(calls as f64);
        let Some(budget) = self.inner.opts.daily_call_budget.filter(|b| *b > 0) else {
            return;
        };
        metrics::gauge!("wms_node_taobao_call_budget").set(budget as f64);
        if calls == budget {
            self.inner.alerts.raise(
                AlertCode::TaobaoCallBudget,
                Severity::Critical,
                format!(
                    "{calls} Taobao calls today: the daily budget of {budget} is used up; \
                     only shipments are sent until midnight (GMT+8)"
                ),
            );
        } else if calls == budget.saturating_mul(4).div_ceil(5) {
            self.inner.alerts.raise(
                AlertCode::TaobaoCallBudget,
                Severity::Warning,
                format!(
                    "{calls} Taobao calls today: 80 % of the daily budget of {budget}; from 90 % \
                     stock pushes wait for tomorrow, from 97 % order intake too, shipments go on"
                ),
            );
        }
    }
}

/// The shared reqwest client: rustls, gzip, both timeouts, our user agent.
pub(crate) fn http_client(
    connect: Duration,
    request: Duration,
) -> Result<reqwest::Client, BuildError> {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(request)
        .gzip(true)
        .user_agent(format!("wms-node/{}", crate::VERSION))
        .build()
        .map_err(|e| BuildError::Http(e.without_url().to_string()))
}

/// A transport error without its URL (the query holds the session and the signature), with
/// its causes for the operator.
pub(crate) fn transport_error(method: &str, e: reqwest::Error) -> TopError {
    if e.is_timeout() {
        return TopError::Timeout {
            method: method.to_owned(),
        };
    }
    // A refused or failed connect sent nothing; anything later may have reached the gateway.
    let sent = !e.is_connect();
    TopError::Transport {
        method: method.to_owned(),
        detail: error_chain(e),
        sent,
    }
}

/// `error: cause: cause`, without the URL.
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// Reads a body up to [`MAX_BODY_BYTES`]; `None` when it is bigger.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(method: SignMethod) -> TopClient {
        let mut o = ClientOptions::new(
            "http://127.0.0.1:9/router/rest",
            "12345678",
            Secret::new("helloworld"),
        );
        o.sign_method = method;
        o.partner_id = String::new();
        o.simplify = false;
        match TopClient::new(o, None, Alerts::new()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn at_noon() -> DateTime<Utc> {
        super::super::time::parse("2026-11-29 12:00:00").unwrap_or_default()
    }

    #[test]
    fn a_signed_request_reproduces_vector_b_with_the_official_split() {
        for (m, want) in [
            (SignMethod::Md5, "23EF7EA81B15DFD0D2CE273D637E1C49"),
            (SignMethod::Hmac, "EFC19405716C68DC1F83D346ABE4D5CC"),
            (
                SignMethod::HmacSha256,
                "9ABD24F6C0078555F96B4DFFE3F1503306BA62A5A60D94B90C7944FE27DF4838",
            ),
        ] {
            let params = Params::new()
                .set("tid", 3_456_789_012_345_678_901_i64)
                .set("out_sid", "YT1234567890123")
                .set("company_code", "YTO");
            let session = Secret::new("test-session-key");
            let req = client(m).sign_request(
                "taobao.logistics.offline.send",
                &params,
                Some(&session),
                at_noon(),
            );
            let sign = req
                .query
                .iter()
                .find(|(k, _)| k == "sign")
                .map(|(_, v)| v.as_str());
            assert_eq!(sign, Some(want), "{m}");
            let body_names: Vec<&str> = req.body.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(body_names, ["tid", "out_sid", "company_code"]);
            let query_names: Vec<&str> = req.query.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                query_names,
                [
                    "method",
                    "app_key",
                    "timestamp",
                    "v",
                    "format",
                    "sign_method",
                    "session",
                    "sign"
                ]
            );
        }
    }

    #[test]
    fn the_default_request_carries_partner_id_and_simplify() {
        let c = match TopClient::new(
            ClientOptions::new("http://127.0.0.1:9/router/rest", "k", Secret::new("s")),
            None,
            Alerts::new(),
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let req = c.sign_request(
            "taobao.logistics.companies.get",
            &Params::new(),
            None,
            Utc::now(),
        );
        let get = |n: &str| {
            req.query
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("partner_id"),
            Some(format!("wms-node-{}", crate::VERSION))
        );
        assert_eq!(get("simplify").as_deref(), Some("true"));
        assert_eq!(get("format").as_deref(), Some("json"));
        assert_eq!(get("v").as_deref(), Some("2.0"));
        assert_eq!(get("sign_method").as_deref(), Some("hmac-sha256"));
        assert_eq!(get("session"), None);
        assert_eq!(get("sign").map(|s| s.len()), Some(64));
    }

    #[test]
    fn params_never_hold_an_empty_value_and_cannot_shadow_system_ones() {
        let p = Params::new()
            .set("a", "")
            .set("b", "1")
            .set("b", "2")
            .set_opt::<i64>("c", None)
            .set_list("fields", ["tid", "", "status"])
            .set_list::<_, &str>("empty", [])
            .set("method", "evil")
            .set("sign", "X");
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("2"));
        assert_eq!(p.get("fields"), Some("tid,status"));
        assert_eq!(p.get("empty"), None);
        let req = client(SignMethod::Md5).sign_request("m.real", &p, None, at_noon());
        assert!(
            req.body
                .iter()
                .all(|(k, v)| k != "method" && k != "sign" && !v.is_empty())
        );
        assert_eq!(req.query.iter().filter(|(k, _)| k == "method").count(), 1);
        assert!(
            req.query
                .iter()
                .any(|(k, v)| k == "method" && v == "m.real")
        );
    }

    #[test]
    fn a_signed_request_debug_shows_names_only() {
        let session = Secret::new("SESSION-VALUE");
        let req = client(SignMethod::Md5).sign_request(
            "m",
            &Params::new().set("x", "BUSINESS-VALUE"),
            Some(&session),
            at_noon(),
        );
        let dbg = format!("{req:?}");
        assert!(
            !dbg.contains("SESSION-VALUE") && !dbg.contains("BUSINESS-VALUE"),
            "{dbg}"
        );
    }

    #[test]
    fn bad_endpoints_and_missing_credentials_are_refused() {
        let bad = ClientOptions::new("ftp://x", "k", Secret::new("s"));
        assert!(matches!(
            TopClient::new(bad, None, Alerts::new()),
            Err(BuildError::Endpoint(_))
        ));
        let empty = ClientOptions::new("http://x/router/rest", "k", Secret::new(""));
        assert!(matches!(
            TopClient::new(empty, None, Alerts::new()),
            Err(BuildError::Credentials)
        ));
    }

    /// A loopback port nobody listens on: bound, read, released.
    fn closed_port() -> u16 {
        match std::net::TcpListener::bind("127.0.0.1:0") {
            Ok(l) => l.local_addr().map(|a| a.port()).unwrap_or(9),
            Err(_) => 9,
        }
    }

    #[tokio::test]
    async fn the_daily_budget_warns_at_80_percent_and_alerts_when_used_up() {
        let mut o = ClientOptions::new(
            format!("http://127.0.0.1:{}/router/rest", closed_port()),
            "k",
            Secret::new("s"),
        );
        o.limits = RateLimits::unlimited();
        o.daily_call_budget = Some(7);
        let alerts = Alerts::new();
        let c = match TopClient::new(o, None, alerts.clone()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let severity = || {
            alerts
                .active()
                .into_iter()
                .find(|a| a.code == AlertCode::TaobaoCallBudget)
                .map(|a| a.severity)
        };
        // Every attempt counts, answered or not: 80 % of 7 is the 6th call. (Shipments are
        // never held back by the budget, so all seven go.)
        let m = "taobao.logistics.offline.send";
        for _ in 0..5 {
            let _ = c.call(m, Params::new(), Session::None).await;
        }
        assert_eq!(severity(), None);
        let _ = c.call(m, Params::new(), Session::None).await;
        assert_eq!(severity(), Some(Severity::Warning));
        let _ = c.call(m, Params::new(), Session::None).await;
        assert_eq!(severity(), Some(Severity::Critical));
    }

    #[tokio::test]
    async fn near_the_budget_stock_waits_first_then_intake_and_shipments_go_on() {
        let mut o = ClientOptions::new(
            format!("http://127.0.0.1:{}/router/rest", closed_port()),
            "k",
            Secret::new("s"),
        );
        o.limits = RateLimits::unlimited();
        o.daily_call_budget = Some(100);
        let c = match TopClient::new(o, None, Alerts::new()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let stock = "taobao.item.quantity.update";
        let intake = "taobao.trades.sold.increment.get";
        let ship = "taobao.logistics.offline.send";
        for _ in 0..90 {
            let _ = c.call(intake, Params::new(), Session::None).await;
        }
        let r = c.call(stock, Params::new(), Session::None).await;
        assert!(matches!(r, Err(TopError::OverBudget { .. })), "{r:?}");
        assert!(r.is_err_and(|e| e.is_retryable()));
        assert_eq!(c.budget().held_back, [CallClass::Stock]);
        for _ in 90..97 {
            let _ = c.call(intake, Params::new(), Session::None).await;
        }
        assert!(matches!(
            c.call(intake, Params::new(), Session::None).await,
            Err(TopError::OverBudget { .. })
        ));
        // Shipments still go out (here: refused by the closed port, not by the budget).
        assert!(matches!(
            c.call(ship, Params::new(), Session::None).await,
            Err(TopError::Transport { .. })
        ));
        let b = c.budget();
        assert_eq!((b.calls_today, b.budget), (98, Some(100)));
        assert_eq!(b.held_back, [CallClass::Stock, CallClass::Intake]);
    }

    #[tokio::test]
    async fn a_call_needing_a_session_without_a_provider_is_no_session() {
        let r = client(SignMethod::Md5)
            .call(
                "taobao.trade.fullinfo.get",
                Params::new(),
                Session::Required,
            )
            .await;
        assert!(matches!(r, Err(TopError::NoSession { .. })), "{r:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_retryable_transport_error_without_the_url() {
        let port = closed_port();
        let mut o = ClientOptions::new(
            format!("http://127.0.0.1:{port}/router/rest"),
            "k",
            Secret::new("s"),
        );
        o.limits = RateLimits::unlimited();
        let c = match TopClient::new(
            o,
            Some(Arc::new(StaticSession(Secret::new("SESSION")))),
            Alerts::new(),
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        // The listener above is dropped by now, so the port refuses.
        let r = c
            .call(
                "taobao.trade.fullinfo.get",
                Params::new(),
                Session::Required,
            )
            .await;
        match r {
            Err(e @ TopError::Transport { .. }) => {
                assert!(e.is_retryable());
                let text = e.to_string();
                assert!(
                    !text.contains("SESSION") && !text.contains("sign="),
                    "{text}"
                );
            }
            other => panic!("expected a transport error, got {other:?}"),
        }
    }
}
