//! What operators can see and do with orders and SKUs: `orders list|show|hold|release` and
//! `sku list|import|sync`, as library functions over the store ([`OrdersAdmin`]) and as the
//! node's HTTP API, which the CLI uses while the node runs (redb lets one process open the
//! file; a stopped node's file is opened by the CLI itself, holding its lock for writes).
//!
//! | method | path                         | body / query                         | answer |
//! |--------|------------------------------|--------------------------------------|--------|
//! | GET    | `/api/orders`                | `state held before limit`            | `[OrderView]` |
//! | GET    | `/api/orders/{tid}`          |                                      | `OrderView` |
//! | POST   | `/api/orders/{tid}/hold`     | `{"reason": "…"}`                    | `OrderView` |
//! | POST   | `/api/orders/{tid}/release`  |                                      | [`Released`] |
//! | GET    | `/api/skus`                  |                                      | `MasterView` |
//! | POST   | `/api/skus/import`           | [`ImportRequest`]                    | `ImportReport`, or 422 with `problems` |
//! | POST   | `/api/skus/sync`             |                                      | 202 [`SyncJob`] (409 while one runs) |
//! | GET    | `/api/skus/sync`             |                                      | [`SyncJob`] |
//!
//! Errors are `{"error": "…"}` with 400, 404, 409, 422 or 503. Every change an operator makes
//! is logged at `warn` with the tid (never buyer data) and published as events.

use crate::alert::Alerts;
use crate::outbox::admin::{AdminClient, ClientError};
use crate::store::{Store, StoreError};
use crate::taobao::time::Clock;
use crate::wms::sku::{self, BundleRow, ImportReport, MasterView, RowError, SkuRow, SyncReport};
use crate::wms::view::{OrderFilter, OrderView};
use crate::wms::{self, Bus, HoldReason, Rules, ShopId, Wms, WmsError};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// What `orders release` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    /// The order now.
    pub order: OrderView,
    /// The hold codes lifted.
    pub released: Vec<String>,
}

/// An import, parsed and checked by the CLI (the node checks it again against the store).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportRequest {
    /// SKU rows.
    #[serde(default)]
    pub skus: Vec<SkuRow>,
    /// Bundle rows.
    #[serde(default)]
    pub bundles: Vec<BundleRow>,
    /// Only say what would change.
    #[serde(default)]
    pub dry_run: bool,
}

/// A hold request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldRequest {
    /// Why (shown in `holds`, logged).
    pub reason: String,
}

/// The node's `sku sync` job, as `GET /api/skus/sync` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncJob {
    /// Still running.
    pub running: bool,
    /// Items read so far.
    pub done: usize,
    /// Items to read.
    pub total: usize,
    /// The result, once finished.
    pub report: Option<SyncReport>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Why an admin action failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such order.
    #[error("{0}")]
    NotFound(String),
    /// The request is wrong (bad state name, empty reason).
    #[error("{0}")]
    Invalid(String),
    /// Refused in the current state.
    #[error("{0}")]
    Conflict(String),
    /// The import file has problems (nothing was imported).
    #[error("the file has {} problem(s); nothing was imported", .0.len())]
    Rows(Vec<RowError>),
    /// The store or Taobao failed.
    #[error("{0}")]
    Failed(String),
}

impl From<WmsError> for AdminError {
    fn from(e: WmsError) -> Self {
        match e {
            WmsError::NoOrder(_) => AdminError::NotFound(e.to_string()),
            WmsError::Refused(m) => AdminError::Conflict(m),
            WmsError::Store(s) => AdminError::Failed(s.to_string()),
            WmsError::BadRows(r) => AdminError::Rows(r),
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Failed(e.to_string())
    }
}

/// Reads the shop's listings and maps them (`sku sync`). Supplied by whoever can reach
/// Taobao: the daemon and the CLI hand in `sync::skus::SkuSync`, so this module never calls
/// another job itself.
pub trait SkuSyncer: Send + Sync + 'static {
    /// Runs one sync, reporting (items done, items in total) as it goes.
    fn sync<'a>(
        &'a self,
        progress: Box<dyn FnMut(usize, usize) + Send + 'a>,
    ) -> futures::future::BoxFuture<'a, Result<SyncReport, String>>;
}

/// The SKU sync job serves the operators' requests.
impl SkuSyncer for crate::sync::skus::SkuSync {
    fn sync<'a>(
        &'a self,
        progress: Box<dyn FnMut(usize, usize) + Send + 'a>,
    ) -> futures::future::BoxFuture<'a, Result<SyncReport, String>> {
        Box::pin(async move {
            crate::sync::skus::sync(
                &self.client,
                &self.store,
                &self.shop,
                &self.rules,
                &self.bus,
                &self.clock,
                progress,
            )
            .await
            .map_err(|e| e.to_string())
        })
    }
}

/// Orders and SKUs over a store, for the CLI (stopped node) and the HTTP API (running node).
#[derive(Clone)]
pub struct OrdersAdmin {
    store: Store,
    shop: ShopId,
    rules: Rules,
    bus: Bus,
    alerts: Alerts,
    clock: Clock,
    sync: Option<Arc<dyn SkuSyncer>>,
    job: Arc<Mutex<SyncJob>>,
}

impl OrdersAdmin {
    /// Over `store` for `shop`.
    pub fn new(store: Store, shop: ShopId, rules: Rules, bus: Bus, alerts: Alerts) -> Self {
        OrdersAdmin {
            store,
            shop,
            rules,
            bus,
            alerts,
            clock: Clock::system(),
            sync: None,
            job: Arc::default(),
        }
    }

    /// `sku sync` runs through `syncer`.
    pub fn with_sync(mut self, syncer: Arc<dyn SkuSyncer>) -> Self {
        self.sync = Some(syncer);
        self
    }

    /// Times (hold `since`) are read from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn refreshed(&self) {
        crate::sync::counts::publish_counts(&self.store, &self.shop, &self.alerts);
    }

    /// `orders list`.
    pub fn list(&self, f: &OrderFilter) -> Result<Vec<OrderView>, AdminError> {
        self.store
            .read(|r| wms::view::list(r, &self.shop, f))?
            .map_err(AdminError::Invalid)
    }

    /// `orders show`.
    pub fn show(&self, tid: u64) -> Result<OrderView, AdminError> {
        self.store
            .read(|r| wms::view::show(r, &self.shop, tid))?
            .ok_or_else(|| AdminError::NotFound(format!("no order with tid {tid}")))
    }

    /// `orders hold`.
    pub async fn hold(&self, tid: u64, reason: &str) -> Result<OrderView, AdminError> {
        let (shop, bus, now) = (self.shop.clone(), self.bus.clone(), self.clock.now());
        let reason = reason.to_owned();
        let o = wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &shop, now);
            let o = w.hold(tid, &reason)?;
            bus.publish_after_commit(shop.as_str(), w.finish()?);
            Ok(o)
        })
        .await?;
        tracing::warn!(tid, "order put on hold by an operator");
        self.refreshed();
        Ok(OrderView::of(&o))
    }

    /// `orders release`.
    pub async fn release(&self, tid: u64) -> Result<Released, AdminError> {
        let (shop, bus, now) = (self.shop.clone(), self.bus.clone(), self.clock.now());
        let (o, lifted) = wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &shop, now);
            let r = w.release(tid)?;
            bus.publish_after_commit(shop.as_str(), w.finish()?);
            Ok(r)
        })
        .await?;
        tracing::warn!(tid, released = ?lifted.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "order hold released by an operator");
        self.refreshed();
        Ok(Released {
            order: OrderView::of(&o),
            released: lifted
                .iter()
                .map(|r: &HoldReason| r.as_str().to_owned())
                .collect(),
        })
    }

    /// `sku list`.
    pub fn skus(&self) -> Result<MasterView, AdminError> {
        Ok(self.store.read(|r| sku::master(r, self.shop.as_str()))?)
    }

    /// `sku import` (all or nothing; `dry_run` writes nothing). The rows are checked again
    /// here as a file would be: the API may be called by other programs than the CLI.
    pub async fn import(&self, mut req: ImportRequest) -> Result<ImportReport, AdminError> {
        let (skus, bundles) = sku::recheck(&req.skus, &req.bundles).map_err(AdminError::Rows)?;
        req.skus = skus;
        req.bundles = bundles;
        let (shop, bus, rules, now) = (
            self.shop.clone(),
            self.bus.clone(),
            self.rules.clone(),
            self.clock.now(),
        );
        let dry_run = req.dry_run;
        let report = wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &shop, now);
            let r = w.import_skus(&req.skus, &req.bundles, req.dry_run, &rules)?;
            bus.publish_after_commit(shop.as_str(), w.finish()?);
            Ok(r)
        })
        .await
        .map_err(|e| match e {
            WmsError::BadRows(rows) => AdminError::Rows(rows),
            e => e.into(),
        })?;
        if !dry_run {
            tracing::warn!(
                added = report.added.len(),
                changed = report.changed.len(),
                released = report.orders_released.len(),
                "SKU master imported"
            );
            self.refreshed();
        }
        Ok(report)
    }

    /// Starts `sku sync` in the background (the running node); see [`sync_job`](Self::sync_job).
    pub fn start_sync(&self) -> Result<SyncJob, AdminError> {
        if self.sync.is_none() {
            return Err(AdminError::Conflict(
                "this process cannot reach Taobao".into(),
            ));
        }
        {
            let mut j = self.job.lock().unwrap_or_else(|p| p.into_inner());
            if j.running {
                return Err(AdminError::Conflict("a SKU sync is already running".into()));
            }
            *j = SyncJob {
                running: true,
                ..SyncJob::default()
            };
        }
        let me = self.clone();
        tokio::spawn(async move {
            let job = me.job.clone();
            let r = me
                .run_sync(move |done, total| {
                    let mut j = job.lock().unwrap_or_else(|p| p.into_inner());
                    j.done = done;
                    j.total = total;
                })
                .await;
            let mut j = me.job.lock().unwrap_or_else(|p| p.into_inner());
            j.running = false;
            match r {
                Ok(report) => j.report = Some(report),
                Err(e) => j.error = Some(e.to_string()),
            }
        });
        Ok(self.sync_job())
    }

    /// The background sync's progress.
    pub fn sync_job(&self) -> SyncJob {
        self.job.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs `sku sync` here, reporting progress.
    pub async fn run_sync(
        &self,
        progress: impl FnMut(usize, usize) + Send,
    ) -> Result<SyncReport, AdminError> {
        let Some(syncer) = &self.sync else {
            return Err(AdminError::Conflict(
                "this process cannot reach Taobao".into(),
            ));
        };
        let r = syncer
            .sync(Box::new(progress))
            .await
            .map_err(AdminError::Failed)?;
        self.refreshed();
        Ok(r)
    }
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// An import's problems, by line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<RowError>,
}

struct ApiError(AdminError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Invalid(_) => StatusCode::BAD_REQUEST,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Rows(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Failed(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let problems = match &self.0 {
            AdminError::Rows(r) => r.clone(),
            _ => Vec::new(),
        };
        (
            status,
            Json(ErrorBody {
                error: self.0.to_string(),
                problems,
            }),
        )
            .into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        ApiError(e)
    }
}

/// The routes of the module doc; merge into the ops server (behind `admin_api`).
pub fn router(admin: OrdersAdmin) -> Router {
    Router::new()
        .route("/api/orders", get(list))
        .route("/api/orders/{tid}", get(show))
        .route("/api/orders/{tid}/hold", post(hold))
        .route("/api/orders/{tid}/release", post(release))
        .route("/api/skus", get(skus))
        .route("/api/skus/import", post(import))
        .route("/api/skus/sync", get(sync_status).post(sync_start))
        .with_state(admin)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AdminError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError),
        Err(e) => Err(ApiError(AdminError::Failed(format!("internal error: {e}")))),
    }
}

async fn list(
    State(a): State<OrdersAdmin>,
    Query(f): Query<OrderFilter>,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    blocking(move || a.list(&f)).await.map(Json)
}

fn tid_of(s: &str) -> Result<u64, ApiError> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| ApiError(AdminError::Invalid(format!("`{s}` is not a tid"))))
}

async fn show(
    State(a): State<OrdersAdmin>,
    Path(tid): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    let tid = tid_of(&tid)?;
    blocking(move || a.show(tid)).await.map(Json)
}

async fn hold(
    State(a): State<OrdersAdmin>,
    Path(tid): Path<String>,
    Json(req): Json<HoldRequest>,
) -> Result<Json<OrderView>, ApiError> {
    let tid = tid_of(&tid)?;
    Ok(Json(a.hold(tid, &req.reason).await?))
}

async fn release(
    State(a): State<OrdersAdmin>,
    Path(tid): Path<String>,
) -> Result<Json<Released>, ApiError> {
    let tid = tid_of(&tid)?;
    Ok(Json(a.release(tid).await?))
}

async fn skus(State(a): State<OrdersAdmin>) -> Result<Json<MasterView>, ApiError> {
    blocking(move || a.skus()).await.map(Json)
}

async fn import(
    State(a): State<OrdersAdmin>,
    Json(req): Json<ImportRequest>,
) -> Result<Json<ImportReport>, ApiError> {
    Ok(Json(a.import(req).await?))
}

async fn sync_start(State(a): State<OrdersAdmin>) -> Result<(StatusCode, Json<SyncJob>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(a.start_sync()?)))
}

async fn sync_status(State(a): State<OrdersAdmin>) -> Json<SyncJob> {
    Json(a.sync_job())
}

/// The API above, from the CLI.
#[derive(Debug, Clone)]
pub struct OrdersClient(pub AdminClient);

impl OrdersClient {
    /// `GET /api/orders`.
    pub async fn list(&self, f: &OrderFilter) -> Result<Vec<OrderView>, ClientError> {
        let mut q = Vec::new();
        if let Some(s) = &f.state {
            q.push(format!("state={}", urlencode(s)));
        }
        if f.held {
            q.push("held=true".to_owned());
        }
        if let Some(b) = f.before {
            q.push(format!("before={b}"));
        }
        if let Some(l) = f.limit {
            q.push(format!("limit={l}"));
        }
        let path = if q.is_empty() {
            "/api/orders".to_owned()
        } else {
            format!("/api/orders?{}", q.join("&"))
        };
        self.0.get_json(&path).await
    }

    /// `GET /api/orders/{tid}`.
    pub async fn show(&self, tid: u64) -> Result<OrderView, ClientError> {
        self.0.get_json(&format!("/api/orders/{tid}")).await
    }

    /// `POST /api/orders/{tid}/hold`.
    pub async fn hold(&self, tid: u64, reason: &str) -> Result<OrderView, ClientError> {
        self.0
            .post_json(
                &format!("/api/orders/{tid}/hold"),
                &HoldRequest {
                    reason: reason.to_owned(),
                },
            )
            .await
    }

    /// `POST /api/orders/{tid}/release`.
    pub async fn release(&self, tid: u64) -> Result<Released, ClientError> {
        self.0
            .post_json(
                &format!("/api/orders/{tid}/release"),
                &serde_json::json!({}),
            )
            .await
    }

    /// `GET /api/skus`.
    pub async fn skus(&self) -> Result<MasterView, ClientError> {
        self.0.get_json("/api/skus").await
    }

    /// `POST /api/skus/import`.
    pub async fn import(&self, req: &ImportRequest) -> Result<ImportReport, ClientError> {
        self.0.post_json("/api/skus/import", req).await
    }

    /// `POST /api/skus/sync`.
    pub async fn start_sync(&self) -> Result<SyncJob, ClientError> {
        self.0
            .post_json("/api/skus/sync", &serde_json::json!({}))
            .await
    }

    /// `GET /api/skus/sync`.
    pub async fn sync_job(&self) -> Result<SyncJob, ClientError> {
        self.0.get_json("/api/skus/sync").await
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
