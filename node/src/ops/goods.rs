//! What operators can see and do with goods going out: `stock`, `ship`, `waybill` and
//! `reconcile`, as library functions over the store ([`GoodsAdmin`]) and as the node's HTTP
//! API, which the CLI uses while the node runs (a stopped node's file is opened by the CLI).
//!
//! | method | path                              | body / query                 | answer |
//! |--------|-----------------------------------|------------------------------|--------|
//! | GET    | `/api/stock`                      | `sku`                        | `[StockRow]` |
//! | POST   | `/api/stock/{sku}/set`            | `{"qty", "reason"}`          | `StockRow` |
//! | POST   | `/api/stock/{sku}/adjust`         | `{"delta", "reason"}`        | `StockRow` |
//! | POST   | `/api/stock/{sku}/push`           | `{"ignore_lag"}`             | `StockRow` (409 while intake lags) |
//! | POST   | `/api/stock/{sku}/stop`, `/resume`|                              | `StockRow` |
//! | POST   | `/api/stock/{sku}/safety`         | `{"safety"}`                 | `StockRow` |
//! | POST   | `/api/ship`                       | `ShipRequest`                | `Shipment` (409 when refused) |
//! | POST   | `/api/waybills/{tid}`             | `{"package", "oids"}`        | `WaybillView` |
//! | POST   | `/api/waybills/{tid}/void`        | `{"package", "reason"}`      | `{"package"}` (the new one) |
//! | POST   | `/api/reconcile`                  | `{"check"}`                  | 202 `ReconcileState` (409 while one runs) |
//! | GET    | `/api/reconcile`                  |                              | `ReconcileState` |
//!
//! Errors are `{"error": "…"}` with 400, 404, 409 or 503. Every change is logged at `warn`
//! with the SKU or tid (never buyer data).

use crate::alert::Alerts;
use crate::outbox::Outbox;
use crate::outbox::admin::{AdminClient, ClientError};
use crate::store::{Store, StoreError};
use crate::sync::reconcile::{ReconcileState, Which};
use crate::sync::waybill::{WaybillGetError, WaybillView};
use crate::taobao::outbox::TaobaoOp;
use crate::taobao::time::Clock;
use crate::wms::ship::{ShipRequest, Shipment};
use crate::wms::stock::{Owed, StockView};
use crate::wms::{self, Bus, ShopId, Wms, WmsError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A SKU in `stock show` with what each listing still owes the shop (the table shows it;
/// `--json` prints the view alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRow {
    /// The SKU's figures and listings.
    #[serde(flatten)]
    pub view: StockView,
    /// Per listing, what is still to be pushed.
    #[serde(default)]
    pub owed: Vec<Owed>,
}

/// Asks Cainiao for a package's waybill (supplied by whoever can reach Taobao: the daemon,
/// or the CLI on a stopped node; `sync::waybill` does the work).
pub trait WaybillIssuer: Send + Sync + 'static {
    /// `waybill get`.
    fn get(
        &self,
        tid: u64,
        package: Option<u32>,
        oids: Vec<u64>,
    ) -> futures::future::BoxFuture<'_, Result<WaybillView, WaybillGetError>>;
}

/// Runs reconciliation (supplied by the daemon or the CLI; `sync::reconcile` does the work).
pub trait ReconcileRunner: Send + Sync + 'static {
    /// Starts a run in the background; refused while one runs.
    fn start(&self, which: Which) -> Result<ReconcileState, String>;
    /// Where it stands.
    fn state(&self) -> ReconcileState;
}

/// Why a goods action failed.
#[derive(Debug, thiserror::Error)]
pub enum GoodsError {
    /// No such order or SKU.
    #[error("{0}")]
    NotFound(String),
    /// The request is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Refused in the current state (held, intake lags, unknown carrier …).
    #[error("{0}")]
    Refused(String),
    /// The store or Taobao failed.
    #[error("{0}")]
    Failed(String),
}

impl From<WmsError> for GoodsError {
    fn from(e: WmsError) -> Self {
        match e {
            WmsError::NoOrder(_) => GoodsError::NotFound(e.to_string()),
            WmsError::Refused(m) => GoodsError::Refused(m),
            WmsError::Store(s) => GoodsError::Failed(s.to_string()),
            WmsError::BadRows(r) => GoodsError::Invalid(format!("{} problem(s)", r.len())),
        }
    }
}

impl From<StoreError> for GoodsError {
    fn from(e: StoreError) -> Self {
        GoodsError::Failed(e.to_string())
    }
}

/// The waybill job serves the operators' requests.
impl WaybillIssuer for crate::sync::waybill::Issuer {
    fn get(
        &self,
        tid: u64,
        package: Option<u32>,
        oids: Vec<u64>,
    ) -> futures::future::BoxFuture<'_, Result<WaybillView, WaybillGetError>> {
        Box::pin(async move {
            crate::sync::waybill::get(
                &self.client,
                &self.store,
                &self.bus,
                &self.alerts,
                &self.clock,
                &self.opts,
                tid,
                package,
                oids,
            )
            .await
            .map(|(_, _, view)| view)
        })
    }
}

/// The reconciliation job runs the operators' requests in the background.
impl ReconcileRunner for crate::sync::reconcile::Runner {
    fn start(&self, which: Which) -> Result<ReconcileState, String> {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if s.running {
                return Err("a reconciliation is already running".into());
            }
            s.running = true;
        }
        let (rec, state) = (self.rec.clone(), self.state.clone());
        tokio::spawn(async move {
            crate::sync::reconcile::run_tracked(&rec, which, &state).await;
        });
        Ok(self.state())
    }

    fn state(&self) -> ReconcileState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl From<WaybillGetError> for GoodsError {
    fn from(e: WaybillGetError) -> Self {
        match e {
            WaybillGetError::NoOrder(_) => GoodsError::NotFound(e.to_string()),
            WaybillGetError::Refused(_) | WaybillGetError::Cainiao { .. } => {
                GoodsError::Refused(e.to_string())
            }
            WaybillGetError::Unknown { .. } | WaybillGetError::Store(_) => {
                GoodsError::Failed(e.to_string())
            }
        }
    }
}

/// Goods out over a store, for the CLI (stopped node) and the HTTP API (running node).
#[derive(Clone)]
pub struct GoodsAdmin {
    store: Store,
    outbox: Outbox<TaobaoOp>,
    shop: ShopId,
    merge_orders: bool,
    max_intake_lag: Duration,
    bus: Bus,
    alerts: Alerts,
    clock: Clock,
    waybills: Option<Arc<dyn WaybillIssuer>>,
    reconcile: Option<Arc<dyn ReconcileRunner>>,
}

impl GoodsAdmin {
    /// Over `store` (ops queued in `outbox`) for `shop`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        outbox: Outbox<TaobaoOp>,
        shop: ShopId,
        merge_orders: bool,
        max_intake_lag: Duration,
        bus: Bus,
        alerts: Alerts,
        clock: Clock,
    ) -> Self {
        GoodsAdmin {
            store,
            outbox,
            shop,
            merge_orders,
            max_intake_lag,
            bus,
            alerts,
            clock,
            waybills: None,
            reconcile: None,
        }
    }

    /// `waybill get` goes through `w`.
    pub fn with_waybills(mut self, w: Arc<dyn WaybillIssuer>) -> Self {
        self.waybills = Some(w);
        self
    }

    /// `reconcile` goes through `r`.
    pub fn with_reconcile(mut self, r: Arc<dyn ReconcileRunner>) -> Self {
        self.reconcile = Some(r);
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    async fn write<R: Send + 'static>(
        &self,
        f: impl FnMut(&mut Wms<'_>) -> Result<R, WmsError> + Send + 'static,
    ) -> Result<R, WmsError> {
        let (shop, bus, now) = (self.shop.clone(), self.bus.clone(), self.clock.now());
        let mut f = f;
        wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &shop, now);
            let r = f(&mut w)?;
            bus.publish_after_commit(shop.as_str(), w.finish()?);
            Ok(r)
        })
        .await
    }

    /// `stock show [SKU]`.
    pub fn stock(&self, sku: Option<&str>) -> Result<Vec<StockRow>, GoodsError> {
        let shop = self.shop.clone();
        let rows = self
            .store
            .read(|r| wms::stock::show(r, shop.as_str(), sku))?
            .map_err(GoodsError::NotFound)?;
        Ok(rows
            .into_iter()
            .map(|(view, owed)| StockRow { view, owed })
            .collect())
    }

    fn one(&self, sku: &str) -> Result<StockRow, GoodsError> {
        self.stock(Some(sku))?
            .into_iter()
            .next()
            .ok_or_else(|| GoodsError::NotFound(format!("no SKU {sku}")))
    }

    /// `stock set SKU QTY --reason R` (a count).
    pub async fn set(&self, sku: &str, qty: i64, reason: &str) -> Result<StockRow, GoodsError> {
        let (s, r) = (sku.to_owned(), reason.to_owned());
        let n = self.write(move |w| w.count(&s, qty, &r)).await?;
        tracing::warn!(sku, on_hand = n, "stock counted by an operator");
        self.one(sku)
    }

    /// `stock adjust SKU ±N --reason R`.
    pub async fn adjust(
        &self,
        sku: &str,
        delta: i64,
        reason: &str,
    ) -> Result<StockRow, GoodsError> {
        let (s, r) = (sku.to_owned(), reason.to_owned());
        let n = self.write(move |w| w.adjust(&s, delta, &r)).await?;
        tracing::warn!(sku, delta, on_hand = n, "stock adjusted by an operator");
        self.one(sku)
    }

    /// The floor's receive (and `stock receive`): + `qty`.
    pub async fn receive(&self, sku: &str, qty: i64, reason: &str) -> Result<StockRow, GoodsError> {
        let (s, r) = (sku.to_owned(), reason.to_owned());
        self.write(move |w| w.receive(&s, qty, &r)).await?;
        self.one(sku)
    }

    /// `stock push SKU [--ignore-lag]`: refused while intake lags unless `ignore_lag`.
    pub async fn push(&self, sku: &str, ignore_lag: bool) -> Result<StockRow, GoodsError> {
        if !ignore_lag {
            let lag = crate::sync::stock::intake_lag(&self.store, &self.shop, self.clock.now())?;
            let ok = lag.is_some_and(|l| l < self.max_intake_lag);
            if !ok {
                return Err(GoodsError::Refused(format!(
                    "order intake lags {} (stock.max_intake_lag is {}): a correction settled \
                     before intake has caught up could re-add units sold but not pulled yet; \
                     wait, or pass --ignore-lag",
                    lag.map_or("forever (no pull yet)".to_owned(), |l| {
                        humantime::format_duration(Duration::from_secs(l.as_secs())).to_string()
                    }),
                    humantime::format_duration(self.max_intake_lag)
                )));
            }
        }
        let s = sku.to_owned();
        let keys = self.write(move |w| w.push_now(&s, ignore_lag)).await?;
        tracing::warn!(
            sku,
            listings = keys.len(),
            ignore_lag,
            "stock push requested by an operator"
        );
        self.one(sku)
    }

    /// `stock stop|resume SKU`.
    pub async fn sync(&self, sku: &str, on: bool) -> Result<StockRow, GoodsError> {
        let s = sku.to_owned();
        self.write(move |w| w.set_sync(&s, on)).await?;
        tracing::warn!(sku, on, "stock sync switched by an operator");
        self.one(sku)
    }

    /// `stock safety SKU N`.
    pub async fn safety(&self, sku: &str, safety: i64) -> Result<StockRow, GoodsError> {
        let s = sku.to_owned();
        self.write(move |w| w.set_safety(&s, safety)).await?;
        tracing::warn!(sku, safety, "safety stock set by an operator");
        self.one(sku)
    }

    /// `wms-node ship` (the floor's ship scan calls [`Wms::ship`] the same way).
    pub async fn ship(&self, req: ShipRequest) -> Result<Shipment, GoodsError> {
        let outbox = self.outbox.clone();
        let merge = self.merge_orders;
        let r = req.clone();
        let s = self.write(move |w| w.ship(&r, &outbox, merge)).await?;
        metrics::counter!("wms_node_shipments_total").increment(1);
        tracing::warn!(
            tid = req.tid,
            package = %s.package,
            company = %req.company_code,
            ops = s.ops.len(),
            "parcel shipped"
        );
        Ok(s)
    }

    /// `waybill get`.
    pub async fn waybill(
        &self,
        tid: u64,
        package: Option<u32>,
        oids: Vec<u64>,
    ) -> Result<WaybillView, GoodsError> {
        let Some(w) = &self.waybills else {
            return Err(GoodsError::Refused(
                "this process cannot reach Taobao".into(),
            ));
        };
        Ok(w.get(tid, package, oids).await?)
    }

    /// `waybill void`: returns the package that takes the lines (and gets a new number).
    pub async fn void(
        &self,
        tid: u64,
        package: Option<u32>,
        reason: &str,
    ) -> Result<String, GoodsError> {
        let r = reason.trim().to_owned();
        if r.is_empty() {
            return Err(GoodsError::Invalid("a void needs a reason".into()));
        }
        let p = self
            .write(move |w| w.void_waybill(tid, package, &r))
            .await?;
        tracing::warn!(tid, package = %p.id, "waybill voided by an operator");
        Ok(p.id)
    }

    /// Starts a reconciliation run (running node).
    pub fn reconcile_start(&self, check: Option<u8>) -> Result<ReconcileState, GoodsError> {
        let Some(r) = &self.reconcile else {
            return Err(GoodsError::Refused(
                "this process cannot reach Taobao".into(),
            ));
        };
        let which = match check {
            None => Which::All,
            Some(n) if (1..=8).contains(&n) => Which::One(n),
            Some(n) => return Err(GoodsError::Invalid(format!("there is no check {n} (1–8)"))),
        };
        r.start(which).map_err(GoodsError::Refused)
    }

    /// The reconciliation in progress and the last one.
    pub fn reconcile_state(&self) -> ReconcileState {
        self.reconcile
            .as_ref()
            .map(|r| r.state())
            .unwrap_or_default()
    }

    /// The alerts.
    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ErrorBody {
    error: String,
}

struct ApiError(GoodsError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            GoodsError::NotFound(_) => StatusCode::NOT_FOUND,
            GoodsError::Invalid(_) => StatusCode::BAD_REQUEST,
            GoodsError::Refused(_) => StatusCode::CONFLICT,
            GoodsError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (
            status,
            Json(ErrorBody {
                error: self.0.to_string(),
            }),
        )
            .into_response()
    }
}

impl From<GoodsError> for ApiError {
    fn from(e: GoodsError) -> Self {
        ApiError(e)
    }
}

/// `?sku=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SkuQuery {
    /// One SKU.
    #[serde(default)]
    pub sku: Option<String>,
}

/// `stock set`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetRequest {
    /// On hand now.
    pub qty: i64,
    /// Why.
    pub reason: String,
}

/// `stock adjust`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdjustRequest {
    /// Units to add (negative: remove).
    pub delta: i64,
    /// Why.
    pub reason: String,
}

/// `stock push`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PushRequest {
    /// Push even while intake lags.
    #[serde(default)]
    pub ignore_lag: bool,
}

/// `stock safety`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SafetyRequest {
    /// Units never offered.
    pub safety: i64,
}

/// `waybill get`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WaybillRequest {
    /// The trade's N-th package.
    #[serde(default)]
    pub package: Option<u32>,
    /// A new package of these lines (ids as strings).
    #[serde(default)]
    pub oids: Vec<String>,
}

/// `waybill void`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VoidRequest {
    /// The trade's N-th package (default: its labelled one).
    #[serde(default)]
    pub package: Option<u32>,
    /// Why.
    pub reason: String,
}

/// `waybill void`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Voided {
    /// The package that now holds the lines.
    pub package: String,
}

/// `reconcile`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReconcileRequest {
    /// One check (1–8).
    #[serde(default)]
    pub check: Option<u8>,
}

/// The routes of the module doc; merge into the ops server (behind `local_only`).
pub fn router(admin: GoodsAdmin) -> Router {
    Router::new()
        .route("/api/stock", get(stock_list))
        .route("/api/stock/{sku}/set", post(stock_set))
        .route("/api/stock/{sku}/adjust", post(stock_adjust))
        .route("/api/stock/{sku}/push", post(stock_push))
        .route("/api/stock/{sku}/stop", post(stock_stop))
        .route("/api/stock/{sku}/resume", post(stock_resume))
        .route("/api/stock/{sku}/safety", post(stock_safety))
        .route("/api/ship", post(ship))
        .route("/api/waybills/{tid}", post(waybill))
        .route("/api/waybills/{tid}/void", post(void))
        .route("/api/reconcile", get(reconcile_state).post(reconcile_start))
        .with_state(admin)
}

fn tid_of(s: &str) -> Result<u64, ApiError> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| ApiError(GoodsError::Invalid(format!("`{s}` is not a tid"))))
}

async fn stock_list(
    State(a): State<GoodsAdmin>,
    Query(q): Query<SkuQuery>,
) -> Result<Json<Vec<StockRow>>, ApiError> {
    let r = tokio::task::spawn_blocking(move || a.stock(q.sku.as_deref()))
        .await
        .map_err(|e| ApiError(GoodsError::Failed(format!("internal error: {e}"))))??;
    Ok(Json(r))
}

async fn stock_set(
    State(a): State<GoodsAdmin>,
    Path(sku): Path<String>,
    Json(r): Json<SetRequest>,
) -> Result<Json<StockRow>, ApiError> {
    Ok(Json(a.set(&sku, r.qty, &r.reason).await?))
}

async fn stock_adjust(
    State(a): State<GoodsAdmin>,
    Path(sku): Path<String>,
    Json(r): Json<AdjustRequest>,
) -> Result<Json<StockRow>, ApiError> {
    Ok(Json(a.adjust(&sku, r.delta, &r.reason).await?))
}

async fn stock_push(
    State(a): State<GoodsAdmin>,
    Path(sku): Path<String>,
    Json(r): Json<PushRequest>,
) -> Result<Json<StockRow>, ApiError> {
    Ok(Json(a.push(&sku, r.ignore_lag).await?))
}

async fn stock_stop(
    State(a): State<GoodsAdmin>,
    Path(sku): Path<String>,
) -> Result<Json<StockRow>, ApiError> {
    Ok(Json(a.sync(&sku, false).await?))
}

async fn stock_resume(
    State(a): State<GoodsAdmin>,
    Path(sku): Path<String>,
) -> Result<Json<StockRow>, ApiError> {
    Ok(Json(a.sync(&sku, true).await?))
}

async fn stock_safety(
    State(a): State<GoodsAdmin>,
    Path(sku): Path<String>,
    Json(r): Json<SafetyRequest>,
) -> Result<Json<StockRow>, ApiError> {
    Ok(Json(a.safety(&sku, r.safety).await?))
}

async fn ship(
    State(a): State<GoodsAdmin>,
    Json(r): Json<ShipRequest>,
) -> Result<Json<Shipment>, ApiError> {
    Ok(Json(a.ship(r).await?))
}

fn oids_of(v: &[String]) -> Result<Vec<u64>, ApiError> {
    v.iter()
        .map(|o| {
            o.trim()
                .parse::<u64>()
                .map_err(|_| ApiError(GoodsError::Invalid(format!("`{o}` is not an oid"))))
        })
        .collect()
}

async fn waybill(
    State(a): State<GoodsAdmin>,
    Path(tid): Path<String>,
    Json(r): Json<WaybillRequest>,
) -> Result<Json<WaybillView>, ApiError> {
    let tid = tid_of(&tid)?;
    let oids = oids_of(&r.oids)?;
    Ok(Json(a.waybill(tid, r.package, oids).await?))
}

async fn void(
    State(a): State<GoodsAdmin>,
    Path(tid): Path<String>,
    Json(r): Json<VoidRequest>,
) -> Result<Json<Voided>, ApiError> {
    let tid = tid_of(&tid)?;
    Ok(Json(Voided {
        package: a.void(tid, r.package, &r.reason).await?,
    }))
}

async fn reconcile_start(
    State(a): State<GoodsAdmin>,
    Json(r): Json<ReconcileRequest>,
) -> Result<(StatusCode, Json<ReconcileState>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(a.reconcile_start(r.check)?)))
}

async fn reconcile_state(State(a): State<GoodsAdmin>) -> Json<ReconcileState> {
    Json(a.reconcile_state())
}

/// The API above, from the CLI.
#[derive(Debug, Clone)]
pub struct GoodsClient(pub AdminClient);

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl GoodsClient {
    /// `GET /api/stock`.
    pub async fn stock(&self, sku: Option<&str>) -> Result<Vec<StockRow>, ClientError> {
        match sku {
            Some(s) => self.0.get_json(&format!("/api/stock?sku={}", enc(s))).await,
            None => self.0.get_json("/api/stock").await,
        }
    }

    /// `POST /api/stock/{sku}/{action}`.
    pub async fn stock_action<B: Serialize>(
        &self,
        sku: &str,
        action: &str,
        body: &B,
    ) -> Result<StockRow, ClientError> {
        self.0
            .post_json(&format!("/api/stock/{}/{action}", enc(sku)), body)
            .await
    }

    /// `POST /api/ship`.
    pub async fn ship(&self, req: &ShipRequest) -> Result<Shipment, ClientError> {
        self.0.post_json("/api/ship", req).await
    }

    /// `POST /api/waybills/{tid}`.
    pub async fn waybill(
        &self,
        tid: u64,
        req: &WaybillRequest,
    ) -> Result<WaybillView, ClientError> {
        self.0.post_json(&format!("/api/waybills/{tid}"), req).await
    }

    /// `POST /api/waybills/{tid}/void`.
    pub async fn void(&self, tid: u64, req: &VoidRequest) -> Result<Voided, ClientError> {
        self.0
            .post_json(&format!("/api/waybills/{tid}/void"), req)
            .await
    }

    /// `POST /api/reconcile`.
    pub async fn reconcile_start(&self, check: Option<u8>) -> Result<ReconcileState, ClientError> {
        self.0
            .post_json("/api/reconcile", &ReconcileRequest { check })
            .await
    }

    /// `GET /api/reconcile`.
    pub async fn reconcile_state(&self) -> Result<ReconcileState, ClientError> {
        self.0.get_json("/api/reconcile").await
    }
}
