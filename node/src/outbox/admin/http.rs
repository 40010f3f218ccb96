//! The queue's HTTP API, merged into the node's ops server:
//!
//! | method | path                          | body / query                          | answer        |
//! |--------|-------------------------------|---------------------------------------|---------------|
//! | GET    | `/api/queue/ops`              | `state kind key after limit`          | [`ListPage`]  |
//! | GET    | `/api/queue/ops/{seq}`        |                                       | [`OpView`]    |
//! | POST   | `/api/queue/ops/{seq}/retry`  |                                       | [`ActionResult`] |
//! | POST   | `/api/queue/ops/{seq}/drop`   | `{"reason": "…", "force": false}`     | [`ActionResult`] |
//! | GET    | `/api/queue/stats`            |                                       | [`Stats`]     |
//!
//! Errors are `{"error": "…"}` with 400 (bad request), 404 (no such op) or 503 (store); the
//! ops server answers its own errors (403, 405, 408, 413, 415, 422) in the same shape
//! (`ops::http`, which also requires the `X-WMS-Node: 1` header on the POSTs).
//! Reads that walk the whole queue run on the blocking pool, not on the runtime's workers.

use super::{ActionResult, Admin, ListFilter, ListPage, OpView, Stats};
use crate::outbox::OutboxError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// The routes above, with their state; merge into the ops server's router.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/api/queue/ops", get(list))
        .route("/api/queue/ops/{seq}", get(show))
        .route("/api/queue/ops/{seq}/retry", post(retry))
        .route("/api/queue/ops/{seq}/drop", post(drop_op))
        .route("/api/queue/stats", get(stats))
        .with_state(admin)
}

/// The body of a drop request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DropRequest {
    /// Why (logged).
    pub reason: String,
    /// Needed to drop a critical op that is still queued.
    #[serde(default)]
    pub force: bool,
}

/// An error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

struct ApiError(OutboxError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            OutboxError::NotFound(_) => StatusCode::NOT_FOUND,
            OutboxError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::SERVICE_UNAVAILABLE,
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError),
        Err(e) => Err(ApiError(OutboxError::Invalid(format!(
            "internal error: {e}"
        )))),
    }
}

async fn list(
    State(admin): State<Admin>,
    Query(filter): Query<ListFilter>,
) -> Result<Json<ListPage>, ApiError> {
    blocking(move || admin.list(&filter)).await.map(Json)
}

async fn show(State(admin): State<Admin>, Path(seq): Path<u64>) -> Result<Json<OpView>, ApiError> {
    blocking(move || admin.show(seq)).await.map(Json)
}

async fn retry(
    State(admin): State<Admin>,
    Path(seq): Path<u64>,
) -> Result<Json<ActionResult>, ApiError> {
    admin.retry(seq).await.map(Json).map_err(ApiError)
}

async fn drop_op(
    State(admin): State<Admin>,
    Path(seq): Path<u64>,
    Json(req): Json<DropRequest>,
) -> Result<Json<ActionResult>, ApiError> {
    admin
        .drop_op(seq, &req.reason, req.force)
        .await
        .map(Json)
        .map_err(ApiError)
}

async fn stats(State(admin): State<Admin>) -> Result<Json<Stats>, ApiError> {
    blocking(move || admin.stats()).await.map(Json)
}
