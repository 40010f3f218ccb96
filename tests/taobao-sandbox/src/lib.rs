//! A stand-alone emulator of the Taobao Open Platform (TOP) for tests and the demo: the
//! `/router/rest` gateway with real signature, timestamp and session checks and TOP's error
//! shapes, the OAuth 2.0 code flow, a seller's shop with Taobao's semantics, and an admin API
//! under `/sandbox/` to drive it and inject faults. Strict where Taobao is strict; the reference
//! is `shared/TAOBAO.md`, the user documentation `docs/SANDBOX.md`.
//!
//! # Layout
//!
//! | module        | owns                                                                    |
//! |---------------|-------------------------------------------------------------------------|
//! | [`sign`]      | the signature rule (md5 / hmac / hmac-sha256), independent of the node's |
//! | [`params`]    | form decoding and the query + body merge                                 |
//! | [`clock`]     | the sandbox clock (movable by tests) and GMT+8 wire dates               |
//! | [`envelope`]  | response envelopes (classic, `simplify=true`, XML) and `TopError`        |
//! | [`gateway`]   | `/router/rest`: the check order, the call log                           |
//! | [`api`]       | the business APIs and their parameter checks                            |
//! | [`shop`]      | items, SKUs, trades, refunds, shipments, waybills (pure state)          |
//! | [`render`]    | shop objects as TOP structures, restricted to `fields`                  |
//! | [`auth`], [`oauth`] | tokens and codes; `/oauth/authorize`, `/oauth/token`              |
//! | [`faults`]    | injected faults and the per-(app, method) token bucket                  |
//! | [`admin`]     | the JSON admin API under `/sandbox/`                                    |
//! | [`server`]    | the accept loop (able to drop connections), [`spawn`], [`SandboxHandle`] |
//!
//! # Use in-process
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sandbox = taobao_sandbox::spawn(taobao_sandbox::SandboxConfig::default()).await?;
//! println!("TOP endpoint {}", sandbox.rest_url());
//! sandbox.shutdown().await
//! # }
//! ```
//!
//! The sandbox never logs secrets, sessions, signatures or receiver data.

#![deny(missing_docs)]

pub mod admin;
pub mod api;
pub mod auth;
pub mod catalogue;
pub mod clock;
pub mod companies;
pub mod envelope;
pub mod faults;
pub mod fields;
pub mod gateway;
pub mod oauth;
pub mod params;
pub mod render;
pub mod server;
pub mod shop;
pub mod sign;
pub mod state;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::routing::{any, get, post};
use serde::{Deserialize, Serialize};

pub use auth::TokenLifetimes;
pub use faults::{Fault, FaultKind, FaultSpec};
pub use server::{SandboxHandle, serve, spawn, spawn_on};
pub use shop::{NewItem, NewOrder, NewSku, NewTrade, RefundRequest, ShopError, TradePatch};
pub use state::{CallRecord, Settings};

use crate::clock::{Clock, format_gmt8, format_rfc3339_ms};
use crate::fields::FieldSel;
use crate::state::World;

/// `s` seconds in milliseconds, saturating: every length the admin API or a config gives
/// (any `u64`) becomes a deadline on the sandbox clock without overflowing.
pub(crate) fn secs_ms(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// Default app key (the one of TAOBAO.md's signing vectors).
pub const DEFAULT_APP_KEY: &str = "12345678";
/// Default app secret (the one of TAOBAO.md's signing vectors).
pub const DEFAULT_APP_SECRET: &str = "helloworld";
/// Default seller nick (non-ASCII on purpose: `taobao_user_nick` arrives URL-encoded).
pub const DEFAULT_SELLER_NICK: &str = "沙箱测试店";
/// Default seller id.
pub const DEFAULT_SELLER_ID: i64 = 2_200_000_000_001;
/// Lifetime of a pre-issued session without an explicit one: one year.
pub const PRE_ISSUED_LIFETIME_S: u64 = 365 * 86_400;

/// Another app the gateway knows (to test sessions issued to a different app).
#[derive(Clone)]
pub struct AppCredentials {
    /// App key.
    pub app_key: String,
    /// App secret.
    pub app_secret: String,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .finish()
    }
}

/// A session issued without OAuth (`--session TOKEN`), for tests that skip the flow.
#[derive(Clone)]
pub struct PreIssued {
    /// The access token to accept as `session`.
    pub token: String,
    /// The app it belongs to (default: the main app).
    pub app_key: Option<String>,
    /// Lifetime from start-up (default [`PRE_ISSUED_LIFETIME_S`]).
    pub expires_in_s: Option<u64>,
    /// A refresh token to accept as well.
    pub refresh_token: Option<String>,
}

impl PreIssued {
    /// A long-lived session for the main app.
    pub fn new(token: impl Into<String>) -> PreIssued {
        PreIssued {
            token: token.into(),
            app_key: None,
            expires_in_s: None,
            refresh_token: None,
        }
    }
}

impl std::fmt::Debug for PreIssued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreIssued")
            .field("token", &"<redacted>")
            .field("app_key", &self.app_key)
            .field("expires_in_s", &self.expires_in_s)
            .finish()
    }
}

/// Everything a sandbox starts with.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The app key the gateway accepts (default `12345678`).
    pub app_key: String,
    /// Its secret (default `helloworld`).
    pub app_secret: String,
    /// Further apps, e.g. to check that a session of one app fails for another.
    pub other_apps: Vec<AppCredentials>,
    /// The shop's seller nick.
    pub seller_nick: String,
    /// The shop's seller id.
    pub seller_id: i64,
    /// Sessions accepted without OAuth.
    pub sessions: Vec<PreIssued>,
    /// Calls per second per (app_key, method); `None` = unlimited (default).
    pub rate_per_second: Option<f64>,
    /// Load the demo catalogue ([`catalogue::demo_items`]).
    pub seed_demo_catalogue: bool,
    /// Emit ids (`tid`, `oid`, `num_iid`, …) as JSON strings.
    pub ids_as_strings: bool,
    /// OAuth lifetimes.
    pub token_lifetimes: TokenLifetimes,
    /// `/oauth/authorize` refuses (`error=access_denied`).
    pub oauth_deny: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            app_key: DEFAULT_APP_KEY.into(),
            app_secret: DEFAULT_APP_SECRET.into(),
            other_apps: Vec::new(),
            seller_nick: DEFAULT_SELLER_NICK.into(),
            seller_id: DEFAULT_SELLER_ID,
            sessions: Vec::new(),
            rate_per_second: None,
            seed_demo_catalogue: false,
            ids_as_strings: false,
            token_lifetimes: TokenLifetimes::default(),
            oauth_deny: false,
        }
    }
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("app_key", &self.app_key)
            .field("app_secret", &"<redacted>")
            .field("other_apps", &self.other_apps)
            .field("seller_nick", &self.seller_nick)
            .field("seller_id", &self.seller_id)
            .field("sessions", &self.sessions)
            .field("rate_per_second", &self.rate_per_second)
            .field("seed_demo_catalogue", &self.seed_demo_catalogue)
            .field("ids_as_strings", &self.ids_as_strings)
            .field("token_lifetimes", &self.token_lifetimes)
            .field("oauth_deny", &self.oauth_deny)
            .finish()
    }
}

/// An item as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemView {
    /// Item id.
    pub num_iid: i64,
    /// Title.
    pub title: String,
    /// Merchant code.
    pub outer_id: Option<String>,
    /// Platform stock (SKU sum when the item has SKUs).
    pub num: i64,
    /// Pre-sale (incremental updates only).
    pub presale: bool,
    /// Deleted.
    pub deleted: bool,
    /// Successful quantity updates received through the gateway.
    pub quantity_updates: u64,
    /// Last change, GMT+8.
    pub modified: String,
    /// SKUs.
    pub skus: Vec<SkuView>,
}

/// A SKU as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkuView {
    /// SKU id.
    pub sku_id: i64,
    /// Merchant code.
    pub outer_id: Option<String>,
    /// Platform stock.
    pub quantity: i64,
    /// Successful quantity updates that touched this SKU.
    pub quantity_updates: u64,
}

/// The answer to `POST /sandbox/trades`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTrade {
    /// Trade id.
    pub tid: i64,
    /// Line ids, in request order.
    pub oids: Vec<i64>,
}

/// One accepted consignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentRecord {
    /// Trade.
    pub tid: i64,
    /// Tracking number.
    pub out_sid: String,
    /// Carrier code.
    pub company_code: String,
    /// Lines of a split shipment (empty = whole trade).
    pub sub_tids: Vec<i64>,
    /// When, RFC 3339 UTC.
    pub at: String,
}

/// One issued Cainiao waybill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaybillRecord {
    /// Carrier.
    pub cp_code: String,
    /// Tracking number.
    pub waybill_code: String,
    /// `object_id` of the first request.
    pub object_id: String,
    /// `pkg:<package id>` or `orders:<trade_order_list>`.
    pub package_key: String,
    /// Trade ids of the request.
    pub trade_order_list: Vec<String>,
    /// Cancelled.
    pub cancelled: bool,
    /// Used in a consignment.
    pub consigned: bool,
    /// When issued, RFC 3339 UTC.
    pub at: String,
}

/// One AliGenius report the shop received (`GET /sandbox/feedback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackRecord {
    /// Trade.
    pub tid: i64,
    /// Line.
    pub oid: i64,
    /// Refund id.
    pub refund_id: String,
    /// Amount, fen.
    pub refund_fee: i64,
    /// `SUCCESS` (stopped) or `FAIL` (already gone).
    pub status: String,
    /// As sent.
    pub operate_time: String,
    /// When received, RFC 3339 UTC.
    pub at: String,
}

/// Runtime settings a test may change (`POST /sandbox/config`); absent fields stay.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Emit ids as strings.
    #[serde(default)]
    pub ids_as_strings: Option<bool>,
    /// Calls per second per (app, method); 0 = unlimited.
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// `/oauth/authorize` refuses.
    #[serde(default)]
    pub oauth_deny: Option<bool>,
    /// Access token lifetime for new tokens, s.
    #[serde(default)]
    pub access_token_s: Option<u64>,
    /// Refresh token lifetime for new tokens, s (0 = cannot refresh).
    #[serde(default)]
    pub refresh_token_s: Option<u64>,
    /// Authorization code lifetime, s.
    #[serde(default)]
    pub code_s: Option<u64>,
}

/// The emulator: configuration, clock and world. Shared by every request.
pub struct Sandbox {
    app_key: String,
    app_secret: String,
    other_apps: Vec<AppCredentials>,
    /// The shop's seller nick.
    pub seller_nick: String,
    /// The shop's seller id.
    pub seller_id: i64,
    /// The sandbox clock.
    pub clock: Clock,
    world: Mutex<World>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("app_key", &self.app_key)
            .field("seller_id", &self.seller_id)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Builds a sandbox from its configuration (no I/O).
    pub fn new(cfg: SandboxConfig) -> Arc<Sandbox> {
        let clock = Clock::new();
        let now_ms = clock.now_ms();
        let settings = Settings {
            ids_as_strings: cfg.ids_as_strings,
            rate_per_second: cfg.rate_per_second.filter(|r| r.is_finite() && *r > 0.0),
            oauth_deny: cfg.oauth_deny,
            access_token_s: cfg.token_lifetimes.access_s,
            refresh_token_s: cfg.token_lifetimes.refresh_s,
            code_s: cfg.token_lifetimes.code_s,
        };
        let mut world = World {
            shop: shop::Shop::default(),
            auth: auth::Auth::default(),
            faults: faults::Faults::default(),
            limiter: faults::RateLimiter::default(),
            calls: VecDeque::new(),
            settings,
        };
        for s in &cfg.sessions {
            let app = s.app_key.clone().unwrap_or_else(|| cfg.app_key.clone());
            let life = s.expires_in_s.unwrap_or(PRE_ISSUED_LIFETIME_S);
            let until = now_ms.saturating_add(secs_ms(life));
            world.auth.pre_issue(&s.token, &app, until);
            if let Some(r) = &s.refresh_token {
                world.auth.pre_issue_refresh(r, &app, until);
            }
        }
        if cfg.seed_demo_catalogue {
            for item in catalogue::demo_items() {
                if let Err(e) = world.shop.create_item(item, now_ms / 1000) {
                    tracing::warn!(error = %e, "demo catalogue item skipped");
                }
            }
        }
        Arc::new(Sandbox {
            app_key: cfg.app_key,
            app_secret: cfg.app_secret,
            other_apps: cfg.other_apps,
            seller_nick: cfg.seller_nick,
            seller_id: cfg.seller_id,
            clock,
            world: Mutex::new(world),
        })
    }

    /// The world, locked. A poisoned lock (a panic elsewhere) is recovered: the state of a test
    /// sandbox is still the best answer available.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The secret of a known app key.
    pub fn secret_for(&self, app_key: &str) -> Option<&str> {
        if app_key == self.app_key {
            return Some(&self.app_secret);
        }
        self.other_apps
            .iter()
            .find(|a| a.app_key == app_key)
            .map(|a| a.app_secret.as_str())
    }

    /// The main app key.
    pub fn app_key(&self) -> &str {
        &self.app_key
    }

    pub(crate) fn record(
        &self,
        method: String,
        outcome: Result<(), &envelope::TopError>,
        fault: Option<String>,
        now_ms: i64,
        params: std::collections::BTreeMap<String, String>,
    ) {
        let (code, sub_code) = match outcome {
            Ok(()) => (0, None),
            Err(e) => (e.code, e.sub_code.clone()),
        };
        self.world().record(CallRecord {
            method,
            code,
            sub_code,
            fault,
            at: format_rfc3339_ms(now_ms),
            params,
        });
    }

    fn now_s(&self) -> i64 {
        self.clock.now_s()
    }

    // ---- the in-process admin API (the HTTP admin API calls these) ----

    /// Adds an item.
    pub fn create_item(&self, item: NewItem) -> Result<ItemView, ShopError> {
        let now = self.now_s();
        let mut w = self.world();
        let created = w.shop.create_item(item, now)?;
        Ok(item_view(created))
    }

    /// An item with its current quantities and update counters.
    pub fn item(&self, num_iid: i64) -> Option<ItemView> {
        self.world().shop.items.get(&num_iid).map(item_view)
    }

    /// The seller sets a listing's stock by hand (千牛): no gateway call, no update counted.
    pub fn set_quantity(
        &self,
        num_iid: i64,
        sku_id: Option<i64>,
        quantity: i64,
    ) -> Result<(), ShopError> {
        let now = self.now_s();
        self.world()
            .shop
            .set_quantity(num_iid, sku_id, quantity, now)
    }

    /// Deletes an item (later calls answer `isv.item-is-delete`).
    pub fn delete_item(&self, num_iid: i64) -> Result<(), ShopError> {
        let now = self.now_s();
        self.world().shop.delete_item(num_iid, now)
    }

    /// Creates a trade.
    pub fn create_trade(&self, trade: NewTrade) -> Result<CreatedTrade, ShopError> {
        let now = self.now_s();
        let mut w = self.world();
        let t = w.shop.create_trade(trade, now)?;
        Ok(CreatedTrade {
            tid: t.tid,
            oids: t.orders.iter().map(|o| o.oid).collect(),
        })
    }

    /// The buyer pays.
    pub fn pay(&self, tid: i64) -> Result<(), ShopError> {
        let now = self.now_s();
        self.world().shop.pay(tid, now)
    }

    /// Opens or moves refunds; returns the refund ids.
    pub fn refund(&self, tid: i64, req: RefundRequest) -> Result<Vec<String>, ShopError> {
        let now = self.now_s();
        self.world().shop.refund(tid, req, now)
    }

    /// Closes a trade.
    pub fn close(&self, tid: i64) -> Result<(), ShopError> {
        let now = self.now_s();
        self.world().shop.close(tid, now)
    }

    /// Changes memo, flag, oaid or status.
    pub fn patch_trade(&self, tid: i64, patch: TradePatch) -> Result<(), ShopError> {
        let now = self.now_s();
        self.world().shop.patch(tid, patch, now)
    }

    /// A trade with every field (simplified JSON form, ids as numbers) plus its refunds.
    pub fn trade(&self, tid: i64) -> Option<serde_json::Value> {
        let w = self.world();
        let t = w.shop.trades.get(&tid)?;
        let style = envelope::Style {
            format: envelope::Format::Json,
            simplify: true,
            ids_as_strings: false,
        };
        let out = render::trade(
            t,
            &FieldSel::All,
            render::TradeView::Full,
            &self.seller_nick,
        );
        let refunds: Vec<envelope::Out> = w
            .shop
            .refunds
            .values()
            .filter(|r| r.tid == tid)
            .map(|r| render::refund(r, &w.shop, &FieldSel::All, &self.seller_nick))
            .collect();
        let fields = vec![
            ("trade".to_string(), out),
            (
                "refunds".to_string(),
                envelope::Out::List("refund", refunds),
            ),
        ];
        let (_, body) = envelope::render_success("sandbox", &fields, "", &style);
        let mut v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let refunds = v.get_mut("refunds").map(serde_json::Value::take);
        let mut trade = v.get_mut("trade").map(serde_json::Value::take)?;
        if let (Some(obj), Some(r)) = (trade.as_object_mut(), refunds) {
            obj.insert("refunds".into(), r);
        }
        Some(trade)
    }

    /// Every accepted consignment, oldest first.
    pub fn shipments(&self) -> Vec<ShipmentRecord> {
        self.world()
            .shop
            .shipments
            .iter()
            .map(|s| ShipmentRecord {
                tid: s.tid,
                out_sid: s.out_sid.clone(),
                company_code: s.company_code.clone(),
                sub_tids: s.sub_tids.clone(),
                at: format_rfc3339_ms(s.at_ms),
            })
            .collect()
    }

    /// Every issued waybill, oldest first.
    pub fn waybills(&self) -> Vec<WaybillRecord> {
        self.world()
            .shop
            .waybills
            .iter()
            .map(|w| WaybillRecord {
                cp_code: w.cp_code.clone(),
                waybill_code: w.waybill_code.clone(),
                object_id: w.object_id.clone(),
                package_key: w.package_key.clone(),
                trade_order_list: w.trade_order_list.clone(),
                cancelled: w.cancelled,
                consigned: w.consigned,
                at: format_rfc3339_ms(w.at_ms),
            })
            .collect()
    }

    /// Every AliGenius report received, oldest first.
    pub fn feedback(&self) -> Vec<FeedbackRecord> {
        self.world()
            .shop
            .feedback
            .iter()
            .map(|f| FeedbackRecord {
                tid: f.tid,
                oid: f.oid,
                refund_id: f.refund_id.clone(),
                refund_fee: f.refund_fee,
                status: f.status.clone(),
                operate_time: f.operate_time.clone(),
                at: format_rfc3339_ms(f.at_ms),
            })
            .collect()
    }

    /// The call log, oldest first, optionally for one method.
    pub fn calls(&self, method: Option<&str>) -> Vec<CallRecord> {
        self.world()
            .calls
            .iter()
            .filter(|c| method.is_none_or(|m| c.method == m))
            .cloned()
            .collect()
    }

    /// Empties the call log.
    pub fn clear_calls(&self) {
        self.world().calls.clear();
    }

    /// Injects a fault (`expire_tokens` is applied at once).
    pub fn add_fault(&self, spec: FaultSpec) -> Result<Fault, String> {
        let now = self.clock.now_ms();
        let mut w = self.world();
        let fault = w.faults.add(spec, now)?;
        if fault.kind == FaultKind::ExpireTokens {
            let n = w.auth.revoke_all_sessions();
            tracing::info!(sessions = n, "all access tokens expired by fault");
        } else {
            tracing::info!(kind = ?fault.kind, until_ms = ?fault.until_ms, count = ?fault.remaining, "fault injected");
        }
        Ok(fault)
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.world().faults.clear();
    }

    /// Active faults.
    pub fn faults(&self) -> Vec<Fault> {
        let now = self.clock.now_ms();
        self.world().faults.active(now)
    }

    /// Moves the sandbox clock forward.
    pub fn advance_clock(&self, seconds: u64) {
        self.clock.advance(seconds);
    }

    /// The sandbox time as `yyyy-MM-dd HH:mm:ss` GMT+8.
    pub fn now_gmt8(&self) -> String {
        format_gmt8(self.now_s())
    }

    /// Registers a session for the main app, valid for `expires_in_s`.
    pub fn issue_session(&self, token: &str, expires_in_s: u64) {
        let until = self.clock.now_ms().saturating_add(secs_ms(expires_in_s));
        self.world().auth.pre_issue(token, &self.app_key, until);
    }

    /// Current runtime settings.
    pub fn settings(&self) -> Settings {
        self.world().settings.clone()
    }

    /// Changes runtime settings; returns the new ones.
    pub fn update_settings(&self, p: SettingsPatch) -> Result<Settings, String> {
        if let Some(r) = p.rate_per_second
            && (!r.is_finite() || r < 0.0)
        {
            return Err("rate_per_second must be >= 0 (0 = unlimited)".into());
        }
        let mut w = self.world();
        let s = &mut w.settings;
        if let Some(v) = p.ids_as_strings {
            s.ids_as_strings = v;
        }
        if let Some(r) = p.rate_per_second {
            s.rate_per_second = (r > 0.0).then_some(r);
        }
        if let Some(v) = p.oauth_deny {
            s.oauth_deny = v;
        }
        if let Some(v) = p.access_token_s {
            s.access_token_s = v;
        }
        if let Some(v) = p.refresh_token_s {
            s.refresh_token_s = v;
        }
        if let Some(v) = p.code_s {
            s.code_s = v;
        }
        Ok(s.clone())
    }
}

fn item_view(i: &shop::Item) -> ItemView {
    ItemView {
        num_iid: i.num_iid,
        title: i.title.clone(),
        outer_id: i.outer_id.clone(),
        num: i.total_num(),
        presale: i.presale,
        deleted: i.deleted,
        quantity_updates: i.quantity_updates,
        modified: format_gmt8(i.modified),
        skus: i
            .skus
            .iter()
            .map(|s| SkuView {
                sku_id: s.sku_id,
                outer_id: s.outer_id.clone(),
                quantity: s.quantity,
                quantity_updates: s.quantity_updates,
            })
            .collect(),
    }
}

/// The whole HTTP surface: `/router/rest`, `/oauth/*`, `/sandbox/*`.
///
/// Served by anything other than [`serve`] / [`spawn`], the `outage` and `reset` faults turn
/// into an empty HTTP 503 instead of a closed connection.
pub fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/router/rest", any(gateway::rest))
        .route("/oauth/authorize", get(oauth::authorize))
        .route("/oauth/token", post(oauth::token))
        .merge(admin::routes())
        .with_state(sandbox)
}
