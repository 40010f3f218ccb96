//! The JSON admin API under `/sandbox/`: the contract end-to-end tests and the demo use to set
//! the shop up, read what the client did and inject faults. Never faulted itself.
//!
//! | route | body → answer |
//! |---|---|
//! | `POST /sandbox/items` | `{"num_iid","title","outer_id"?,"quantity"?,"price"?,"presale"?,"skus":[{"sku_id","outer_id"?,"quantity","price"?,"properties_name"?,"barcode"?}]}` → 201 item |
//! | `GET /sandbox/items/{num_iid}` | → item: `num`, per-SKU `quantity`, `quantity_updates` |
//! | `DELETE /sandbox/items/{num_iid}` | → 204; the item answers `isv.item-is-delete` |
//! | `POST /sandbox/trades` | `{"buyer_nick"?,"status"?,"type"?,"oaid"?,…,"orders":[{"num_iid","sku_id"?,"num"}]}` → 201 `{"tid","oids"}` |
//! | `GET /sandbox/trades/{tid}` | → the trade, every field, with `refunds` |
//! | `PATCH /sandbox/trades/{tid}` | `{"seller_memo"?,"seller_flag"?,"buyer_message"?,"oaid"?,"status"?,"step_trade_status"?}` → trade |
//! | `POST /sandbox/trades/{tid}/pay` / `/close` | → trade |
//! | `POST /sandbox/trades/{tid}/refund` | `{"oid"?,"status"?,"reason"?,"good_status"?,"has_good_return"?}` → `{"refund_ids"}` |
//! | `GET /sandbox/shipments` | → `[{"tid","out_sid","company_code","sub_tids","at"}]` |
//! | `GET /sandbox/waybills` | → `[{"cp_code","waybill_code","object_id","package_key",…}]` |
//! | `GET /sandbox/feedback` | → `[{"tid","oid","refund_id","refund_fee","status","operate_time","at"}]` (AliGenius reports) |
//! | `GET /sandbox/calls?method=` / `DELETE /sandbox/calls` | → `[{"method","code","sub_code","fault"?,"at"}]` |
//! | `POST /sandbox/faults` / `GET` / `DELETE` | `{"kind","seconds"?,"count"?,"methods"?,…}` → 201 fault |
//! | `POST /sandbox/clock` / `GET` | `{"advance_s":N}` → `{"now","now_ms"}` |
//! | `POST /sandbox/config` / `GET` | settings patch → settings |
//! | `POST /sandbox/sessions` | `{"token"?,"expires_in"?}` → 201 `{"token","expires_in"}` |
//!
//! Errors: 400 (bad JSON or values), 404 (no such item / trade / route), 409 (conflicts with the
//! state, e.g. paying a paid trade), always `{"error":"…"}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::params::Params;
use crate::{
    FaultSpec, NewItem, NewTrade, RefundRequest, Sandbox, SettingsPatch, ShopError, TradePatch,
};

/// An admin failure: status and message.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
}

impl From<ShopError> for AdminError {
    fn from(e: ShopError) -> Self {
        match e {
            ShopError::Invalid(m) => AdminError::BadRequest(m),
            ShopError::NotFound(m) => AdminError::NotFound(m),
            ShopError::Conflict(m) => AdminError::Conflict(m),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

type Answer = Result<Response, AdminError>;

fn body<T: DeserializeOwned + Default>(bytes: &Bytes, allow_empty: bool) -> Result<T, AdminError> {
    if allow_empty && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

fn id(text: &str, what: &str) -> Result<i64, AdminError> {
    text.parse::<i64>()
        .map_err(|_| AdminError::BadRequest(format!("{what} {text:?} is not a number")))
}

fn ok<T: serde::Serialize>(status: StatusCode, v: T) -> Answer {
    Ok((status, Json(v)).into_response())
}

/// The `/sandbox/*` routes.
pub fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/sandbox/items", post(create_item))
        .route(
            "/sandbox/items/{num_iid}",
            get(get_item).delete(delete_item),
        )
        .route("/sandbox/items/{num_iid}/quantity", post(set_quantity))
        .route("/sandbox/trades", post(create_trade))
        .route("/sandbox/trades/{tid}", get(get_trade).patch(patch_trade))
        .route("/sandbox/trades/{tid}/pay", post(pay))
        .route("/sandbox/trades/{tid}/refund", post(refund))
        .route("/sandbox/trades/{tid}/close", post(close))
        .route("/sandbox/shipments", get(shipments))
        .route("/sandbox/waybills", get(waybills))
        .route("/sandbox/feedback", get(feedback))
        .route("/sandbox/calls", get(calls).delete(clear_calls))
        .route(
            "/sandbox/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/sandbox/clock", post(advance_clock).get(get_clock))
        .route("/sandbox/config", post(update_config).get(get_config))
        .route("/sandbox/sessions", post(issue_session))
        .route("/sandbox", get(not_found))
        .route("/sandbox/{*rest}", axum::routing::any(not_found))
}

async fn not_found() -> AdminError {
    AdminError::NotFound("no such admin route; see docs/SANDBOX.md".into())
}

async fn create_item(State(sb): State<Arc<Sandbox>>, b: Bytes) -> Answer {
    let item: NewItem = serde_json::from_slice(&b)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))?;
    ok(StatusCode::CREATED, sb.create_item(item)?)
}

async fn get_item(State(sb): State<Arc<Sandbox>>, Path(num_iid): Path<String>) -> Answer {
    let n = id(&num_iid, "num_iid")?;
    let item = sb
        .item(n)
        .ok_or_else(|| AdminError::NotFound(format!("no item {n}")))?;
    ok(StatusCode::OK, item)
}

/// `POST /sandbox/items/{num_iid}/quantity {"sku_id"?, "quantity"}`: a hand edit in 千牛.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QuantityEdit {
    #[serde(default)]
    sku_id: Option<i64>,
    quantity: i64,
}

async fn set_quantity(
    State(sb): State<Arc<Sandbox>>,
    Path(num_iid): Path<String>,
    b: Bytes,
) -> Answer {
    let n = id(&num_iid, "num_iid")?;
    let e: QuantityEdit = serde_json::from_slice(&b)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))?;
    sb.set_quantity(n, e.sku_id, e.quantity)?;
    let item = sb
        .item(n)
        .ok_or_else(|| AdminError::NotFound(format!("no item {n}")))?;
    ok(StatusCode::OK, item)
}

async fn delete_item(State(sb): State<Arc<Sandbox>>, Path(num_iid): Path<String>) -> Answer {
    sb.delete_item(id(&num_iid, "num_iid")?)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_trade(State(sb): State<Arc<Sandbox>>, b: Bytes) -> Answer {
    let t: NewTrade = serde_json::from_slice(&b)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))?;
    ok(StatusCode::CREATED, sb.create_trade(t)?)
}

fn trade_answer(sb: &Sandbox, tid: i64) -> Answer {
    let t = sb
        .trade(tid)
        .ok_or_else(|| AdminError::NotFound(format!("no trade {tid}")))?;
    ok(StatusCode::OK, t)
}

async fn get_trade(State(sb): State<Arc<Sandbox>>, Path(tid): Path<String>) -> Answer {
    trade_answer(&sb, id(&tid, "tid")?)
}

async fn patch_trade(State(sb): State<Arc<Sandbox>>, Path(tid): Path<String>, b: Bytes) -> Answer {
    let tid = id(&tid, "tid")?;
    let p: TradePatch = body(&b, false)?;
    sb.patch_trade(tid, p)?;
    trade_answer(&sb, tid)
}

async fn pay(State(sb): State<Arc<Sandbox>>, Path(tid): Path<String>) -> Answer {
    let tid = id(&tid, "tid")?;
    sb.pay(tid)?;
    trade_answer(&sb, tid)
}

async fn close(State(sb): State<Arc<Sandbox>>, Path(tid): Path<String>) -> Answer {
    let tid = id(&tid, "tid")?;
    sb.close(tid)?;
    trade_answer(&sb, tid)
}

async fn refund(State(sb): State<Arc<Sandbox>>, Path(tid): Path<String>, b: Bytes) -> Answer {
    let tid = id(&tid, "tid")?;
    let req: RefundRequest = body(&b, true)?;
    let ids = sb.refund(tid, req)?;
    ok(StatusCode::OK, json!({"tid": tid, "refund_ids": ids}))
}

async fn shipments(State(sb): State<Arc<Sandbox>>) -> Answer {
    ok(StatusCode::OK, sb.shipments())
}

async fn waybills(State(sb): State<Arc<Sandbox>>) -> Answer {
    ok(StatusCode::OK, sb.waybills())
}

async fn feedback(State(sb): State<Arc<Sandbox>>) -> Answer {
    ok(StatusCode::OK, sb.feedback())
}

async fn calls(State(sb): State<Arc<Sandbox>>, uri: Uri) -> Answer {
    let q = Params::merge(uri.query().unwrap_or("").as_bytes(), b"")
        .map_err(|_| AdminError::BadRequest("query is not UTF-8".into()))?;
    ok(StatusCode::OK, sb.calls(q.get("method")))
}

async fn clear_calls(State(sb): State<Arc<Sandbox>>) -> Answer {
    sb.clear_calls();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_fault(State(sb): State<Arc<Sandbox>>, b: Bytes) -> Answer {
    let spec: FaultSpec = serde_json::from_slice(&b)
        .map_err(|e| AdminError::BadRequest(format!("invalid fault: {e}")))?;
    let f = sb.add_fault(spec).map_err(AdminError::BadRequest)?;
    ok(StatusCode::CREATED, f)
}

async fn list_faults(State(sb): State<Arc<Sandbox>>) -> Answer {
    ok(StatusCode::OK, sb.faults())
}

async fn clear_faults(State(sb): State<Arc<Sandbox>>) -> Answer {
    sb.clear_faults();
    Ok(StatusCode::NO_CONTENT.into_response())
}

const MAX_ADVANCE_S: u64 = 10 * 365 * 86_400;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockReq {
    advance_s: i64,
}

fn clock_answer(sb: &Sandbox) -> Answer {
    ok(
        StatusCode::OK,
        json!({"now": sb.now_gmt8(), "now_ms": sb.clock.now_ms()}),
    )
}

async fn advance_clock(State(sb): State<Arc<Sandbox>>, b: Bytes) -> Answer {
    let req: ClockReq = body(&b, false)?;
    let secs = u64::try_from(req.advance_s).map_err(|_| {
        AdminError::BadRequest("advance_s must be >= 0: the clock never goes back".into())
    })?;
    // Ten years per step is far beyond any test, and keeps the clock's arithmetic finite.
    if secs > MAX_ADVANCE_S {
        return Err(AdminError::BadRequest(format!(
            "advance_s must be at most {MAX_ADVANCE_S} (ten years) per request"
        )));
    }
    sb.advance_clock(secs);
    tracing::info!(advance_s = secs, "sandbox clock advanced");
    clock_answer(&sb)
}

async fn get_clock(State(sb): State<Arc<Sandbox>>) -> Answer {
    clock_answer(&sb)
}

async fn update_config(State(sb): State<Arc<Sandbox>>, b: Bytes) -> Answer {
    let p: SettingsPatch = body(&b, false)?;
    let s = sb.update_settings(p).map_err(AdminError::BadRequest)?;
    ok(StatusCode::OK, s)
}

async fn get_config(State(sb): State<Arc<Sandbox>>) -> Answer {
    ok(StatusCode::OK, sb.settings())
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionReq {
    token: Option<String>,
    expires_in: Option<u64>,
}

async fn issue_session(State(sb): State<Arc<Sandbox>>, b: Bytes) -> Answer {
    let req: SessionReq = body(&b, true)?;
    let token = match req.token.filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            use rand::Rng;
            let mut rng = rand::rng();
            format!("6200{:032x}", rng.random::<u128>())
        }
    };
    let expires_in = req.expires_in.unwrap_or(86_400);
    sb.issue_session(&token, expires_in);
    ok(
        StatusCode::CREATED,
        json!({"token": token, "expires_in": expires_in}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shop_errors_map_to_http_statuses() {
        let r = AdminError::from(ShopError::Conflict("x".into())).into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let r = AdminError::from(ShopError::NotFound("x".into())).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = AdminError::from(ShopError::Invalid("x".into())).into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn an_empty_body_is_the_default_only_where_allowed() {
        let empty = Bytes::from_static(b" ");
        assert!(body::<ClockReq>(&empty, true).is_ok());
        assert!(matches!(
            body::<ClockReq>(&empty, false),
            Err(AdminError::BadRequest(_))
        ));
    }
}
