//! The typed calls a WMS makes (TAOBAO.md §6), one method each on [`TopClient`].
//!
//! Each call builds its business parameters (dates in GMT+8, lists comma-joined, struct
//! parameters as one JSON string), checks the platform's documented batch limits locally
//! (a request that would surely fail is an [`TopError::InvalidRequest`], never sent), and
//! decodes the reply into the domain types of [`super::types`].
//!
//! `fields` lists always include the key the decoder needs (`tid`, `oid`, `num_iid`, …), so a
//! caller's shorter list cannot turn into an undecodable reply.

use super::client::{Params, Session, TopClient};
use super::decode;
use super::error::TopError;
use super::types::{
    Item, ItemQuantity, ItemsPage, LogisticsCompany, RefundsPage, Trade, TradesPage, Waybill,
    WaybillQueryResult,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Trade fields for the incremental pull and the periodic re-scan (list view).
pub const TRADE_LIST_FIELDS: &[&str] = &[
    "tid",
    "status",
    "type",
    "modified",
    "created",
    "pay_time",
    "step_trade_status",
    "orders",
];

/// Trade fields for `trade.fullinfo.get`. The four receiver fields and `created` are asked
/// for because the platform generates `oaid` only when they are all requested (TAOBAO.md
/// §6.3); they come back masked and are kept masked.
pub const TRADE_FULL_FIELDS: &[&str] = &[
    "tid",
    "status",
    "type",
    "step_trade_status",
    "created",
    "pay_time",
    "modified",
    "consign_time",
    "end_time",
    "est_con_time",
    "delivery_time",
    "send_time",
    "payment",
    "post_fee",
    "total_fee",
    "discount_fee",
    "buyer_message",
    "seller_memo",
    "seller_flag",
    "is_part_consign",
    "shipping_type",
    "receiver_name",
    "receiver_state",
    "receiver_city",
    "receiver_district",
    "receiver_address",
    "receiver_mobile",
    "receiver_phone",
    "oaid",
    "orders",
];

/// Item fields for `items.onsale.get`.
pub const ITEM_LIST_FIELDS: &[&str] = &[
    "num_iid",
    "title",
    "outer_id",
    "num",
    "approve_status",
    "price",
    "modified",
];

/// Item fields for `item.seller.get`, SKUs included.
pub const ITEM_FULL_FIELDS: &[&str] = &[
    "num_iid",
    "title",
    "outer_id",
    "num",
    "approve_status",
    "price",
    "modified",
    "skus",
];

/// Refund fields for `refunds.receive.get` (no buyer nick).
pub const REFUND_FIELDS: &[&str] = &[
    "refund_id",
    "tid",
    "oid",
    "status",
    "order_status",
    "good_status",
    "has_good_return",
    "refund_fee",
    "total_fee",
    "payment",
    "num",
    "refund_phase",
    "refund_version",
    "dispute_type",
    "company_name",
    "sid",
    "created",
    "modified",
];

/// Carrier fields for `logistics.companies.get`.
pub const COMPANY_FIELDS: &[&str] = &["id", "code", "name", "reg_mail_no"];

/// Most SKUs one `skus.quantity.update` may carry.
pub const MAX_SKUS_PER_UPDATE: usize = 20;
/// Most lines one split `logistics.offline.send` may carry.
pub const MAX_SUB_TIDS: usize = 50;
/// Most packages per `cainiao.waybill.ii.get`.
pub const MAX_WAYBILL_PACKAGES: usize = 10;

/// `trades.sold.increment.get`: trades modified in a window (≤ 1 day, ≤ 30 min advised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrementQuery {
    /// Window start (inclusive).
    pub start_modified: DateTime<Utc>,
    /// Window end.
    pub end_modified: DateTime<Utc>,
    /// Fields (the key `tid` is always added).
    pub fields: Vec<String>,
    /// One status, or all.
    pub status: Option<String>,
    /// Trade types (comma list); `None` = the platform's default set.
    pub trade_type: Option<String>,
    /// Page, from 1.
    pub page_no: u32,
    /// 1–100.
    pub page_size: u32,
    /// Ask for `has_next` instead of `total_results` (much cheaper for the platform).
    pub use_has_next: bool,
}

impl IncrementQuery {
    /// Page 1 of a window with [`TRADE_LIST_FIELDS`], 50 per page, `use_has_next`.
    pub fn window(start_modified: DateTime<Utc>, end_modified: DateTime<Utc>) -> Self {
        IncrementQuery {
            start_modified,
            end_modified,
            fields: owned(TRADE_LIST_FIELDS),
            status: None,
            trade_type: None,
            page_no: 1,
            page_size: 50,
            use_has_next: true,
        }
    }
}

/// `trades.sold.get`: trades by creation time (the periodic re-scan of open orders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoldQuery {
    /// Created from.
    pub start_created: Option<DateTime<Utc>>,
    /// Created until.
    pub end_created: Option<DateTime<Utc>>,
    /// Fields (the key `tid` is always added).
    pub fields: Vec<String>,
    /// One status (or `ALL_WAIT_PAY` / `ALL_CLOSED`).
    pub status: Option<String>,
    /// Trade types (comma list).
    pub trade_type: Option<String>,
    /// Page, from 1.
    pub page_no: u32,
    /// 1–100.
    pub page_size: u32,
    /// Ask for `has_next` instead of `total_results`.
    pub use_has_next: bool,
}

impl SoldQuery {
    /// Page 1 of trades in `status`, [`TRADE_LIST_FIELDS`], 50 per page, `use_has_next`.
    pub fn status(status: impl Into<String>) -> Self {
        SoldQuery {
            start_created: None,
            end_created: None,
            fields: owned(TRADE_LIST_FIELDS),
            status: Some(status.into()),
            trade_type: None,
            page_no: 1,
            page_size: 50,
            use_has_next: true,
        }
    }
}

/// `items.onsale.get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnsaleQuery {
    /// Fields (the key `num_iid` is always added).
    pub fields: Vec<String>,
    /// Title search.
    pub q: Option<String>,
    /// Modified from.
    pub start_modified: Option<DateTime<Utc>>,
    /// Modified until.
    pub end_modified: Option<DateTime<Utc>>,
    /// `list_time|delist_time|num|modified|sold_quantity` + `:asc|desc`.
    pub order_by: Option<String>,
    /// Page, from 1.
    pub page_no: u32,
    /// 1–200.
    pub page_size: u32,
}

impl Default for OnsaleQuery {
    fn default() -> Self {
        OnsaleQuery {
            fields: owned(ITEM_LIST_FIELDS),
            q: None,
            start_modified: None,
            end_modified: None,
            order_by: None,
            page_no: 1,
            page_size: 100,
        }
    }
}

/// `refunds.receive.get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundsQuery {
    /// Fields (the key `refund_id` is always added).
    pub fields: Vec<String>,
    /// One refund status.
    pub status: Option<String>,
    /// Modified from.
    pub start_modified: Option<DateTime<Utc>>,
    /// Modified until.
    pub end_modified: Option<DateTime<Utc>>,
    /// Page, from 1.
    pub page_no: u32,
    /// 1–100.
    pub page_size: u32,
    /// Ask for `has_next` instead of `total_results`.
    pub use_has_next: bool,
}

impl Default for RefundsQuery {
    fn default() -> Self {
        RefundsQuery {
            fields: owned(REFUND_FIELDS),
            status: None,
            start_modified: None,
            end_modified: None,
            page_no: 1,
            page_size: 50,
            use_has_next: true,
        }
    }
}

/// Full or incremental stock update (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockMode {
    /// `type=1`: set the quantity.
    Full,
    /// `type=2`: add (or subtract) a delta; the platform floors at 0.
    Incremental,
}

impl StockMode {
    fn wire(self) -> &'static str {
        match self {
            StockMode::Full => "1",
            StockMode::Incremental => "2",
        }
    }
}

/// `item.quantity.update`: one item's or one SKU's stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityUpdate {
    /// Item.
    pub num_iid: i64,
    /// SKU (wins over `outer_id`); `None` with no `outer_id` = item-level stock.
    pub sku_id: Option<i64>,
    /// SKU merchant code, used only without `sku_id` (avoid: it may match several SKUs).
    pub outer_id: Option<String>,
    /// Quantity (≥ 0 in full mode) or delta.
    pub quantity: i64,
    /// Full or incremental.
    pub mode: StockMode,
}

/// `logistics.offline.send`: consign a trade (or some of its lines) with a waybill number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineSend {
    /// Trade.
    pub tid: i64,
    /// Lines of a split shipment (`is_split=1`, `sub_tid`); empty = the whole trade.
    pub sub_tids: Vec<i64>,
    /// Waybill number.
    pub out_sid: String,
    /// Carrier code from `logistics.companies.get`.
    pub company_code: String,
    /// Serials etc. (`identCode=oid:code1,code2|…`).
    pub feature: Option<String>,
}

/// `taobao.rdc.aligenius.sendgoods.cancel`'s one struct parameter `param` (TAOBAO.md §6.10):
/// whether the seller stopped an unshipped order after a refund-only request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelGoods {
    /// Trade.
    pub tid: i64,
    /// Line.
    pub oid: i64,
    /// The refund.
    pub refund_id: i64,
    /// Amount refunded, integer fen.
    pub refund_fee: i64,
    /// `SUCCESS` (stopped) or `FAIL` (already gone).
    pub status: String,
    /// When, `yyyy-MM-dd HH:mm:ss` GMT+8.
    pub operate_time: String,
    /// A short note for the platform.
    pub msg: String,
}

/// `cainiao.waybill.ii.get`'s one struct parameter
/// (`param_waybill_cloud_print_apply_new_request`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaybillRequest {
    /// Carrier code.
    pub cp_code: String,
    /// The warehouse (one of the seller's registered addresses).
    pub sender: WaybillParty,
    /// 1–10 packages.
    pub trade_order_info_dtos: Vec<WaybillOrder>,
    /// Ask for encrypted print data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub need_encrypt: Option<bool>,
    /// SF product code etc.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
}

/// The sender (the warehouse: not buyer data).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct WaybillParty {
    /// Name.
    pub name: String,
    /// Mobile (this or `phone`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// Phone (this or `mobile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Address.
    pub address: WaybillAddress,
}

/// A postal address.
#[derive(Clone, PartialEq, Eq, Default, Serialize)]
pub struct WaybillAddress {
    /// Province.
    pub province: String,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// District.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    /// Town.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub town: Option<String>,
    /// Street and number (masked for buyers).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl fmt::Debug for WaybillAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WaybillAddress(<hidden>)")
    }
}

/// One package of a waybill request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaybillOrder {
    /// Our request id (the package id), echoed back.
    pub object_id: String,
    /// Which trades the package carries.
    pub order_info: WaybillOrderInfo,
    /// The package.
    pub package_info: WaybillPackage,
    /// The receiver, by OAID + tid for masked Taobao orders.
    pub recipient: WaybillRecipient,
    /// Cloud-print template URL.
    pub template_url: String,
    /// Seller id, when one waybill account serves several shops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
}

/// `order_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaybillOrderInfo {
    /// `TB`, `TM`, …
    pub order_channels_type: String,
    /// Trade ids (1–100), as strings.
    pub trade_order_list: Vec<String>,
}

/// `package_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaybillPackage {
    /// Unique per package (needed for split / merge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// 1–100 entries.
    pub items: Vec<WaybillItem>,
    /// Grams.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Millilitres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<i64>,
}

/// One goods line on a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaybillItem {
    /// Name.
    pub name: String,
    /// Count.
    pub count: i64,
}

/// The receiver: OAID + tid (the platform fills in the real address); the masked
/// fields only when a carrier insists.
#[derive(Clone, PartialEq, Eq, Default, Serialize)]
pub struct WaybillRecipient {
    /// The trade's OAID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oaid: Option<String>,
    /// The trade id, as a string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// Masked name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Masked mobile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    /// Region and masked detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<WaybillAddress>,
}

impl fmt::Debug for WaybillRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaybillRecipient")
            .field("tid", &self.tid)
            .field("fields", &"<hidden>")
            .finish()
    }
}

fn owned(fields: &[&str]) -> Vec<String> {
    fields.iter().map(|s| (*s).to_owned()).collect()
}

/// `fields` as sent: the caller's list with `key` added when missing.
fn fields_with<S: AsRef<str>>(fields: &[S], key: &str) -> String {
    let mut out: Vec<&str> = fields
        .iter()
        .map(AsRef::as_ref)
        .filter(|f| !f.is_empty())
        .collect();
    if !out.contains(&key) {
        out.insert(0, key);
    }
    out.join(",")
}

fn invalid(method: &str, reason: impl Into<String>) -> TopError {
    TopError::InvalidRequest {
        method: method.to_owned(),
        reason: reason.into(),
    }
}

fn page_check(method: &str, page_no: u32, page_size: u32, max: u32) -> Result<(), TopError> {
    if page_no == 0 {
        return Err(invalid(method, "page_no starts at 1"));
    }
    if page_size == 0 || page_size > max {
        return Err(invalid(method, format!("page_size must be 1..={max}")));
    }
    Ok(())
}

/// The result of `taobao.logistics.companies.get`.
#[derive(Deserialize)]
struct CompaniesReply {
    #[serde(default, deserialize_with = "decode::list")]
    logistics_companies: Vec<LogisticsCompany>,
}

/// The result of `cainiao.waybill.ii.get`.
#[derive(Deserialize)]
struct WaybillReply {
    #[serde(default, deserialize_with = "decode::list")]
    modules: Vec<Waybill>,
}

/// Every method this module calls, for [`decode_result`].
pub const METHODS: &[&str] = &[
    "taobao.trades.sold.increment.get",
    "taobao.trades.sold.get",
    "taobao.trade.fullinfo.get",
    "taobao.item.quantity.update",
    "taobao.skus.quantity.update",
    "taobao.items.onsale.get",
    "taobao.item.seller.get",
    super::error::OFFLINE_SEND,
    "taobao.logistics.companies.get",
    "taobao.refunds.receive.get",
    "taobao.refund.get",
    "taobao.rdc.aligenius.sendgoods.cancel",
    "cainiao.waybill.ii.get",
    "cainiao.waybill.ii.cancel",
    "cainiao.waybill.ii.query.by.tradecode",
];

/// `cainiao.waybill.ii.query.by.tradecode`'s result.
#[derive(Deserialize)]
struct WaybillQueryReply {
    #[serde(default, deserialize_with = "decode::list")]
    modules: Vec<WaybillQueryResult>,
}

/// Decodes a result object (from [`decode::reply`]) as the call of `method` above does,
/// with the same helpers, and drops the value. The property tests and the fuzz target run
/// arbitrary replies of every method through it; a test checks that it knows every method of
/// this module.
pub fn decode_result(method: &str, v: serde_json::Value) -> Result<(), TopError> {
    fn typed<T: serde::de::DeserializeOwned>(
        method: &str,
        v: serde_json::Value,
    ) -> Result<(), TopError> {
        decode::from_value::<T>(v)
            .map(drop)
            .map_err(|e| TopError::Decode {
                method: method.to_owned(),
                detail: e.to_string(),
            })
    }
    match method {
        "taobao.trades.sold.increment.get" | "taobao.trades.sold.get" => {
            typed::<TradesPage>(method, v)
        }
        "taobao.trade.fullinfo.get" => field::<Trade>(method, v, "trade").map(drop),
        "taobao.item.quantity.update" | "taobao.skus.quantity.update" => {
            field::<ItemQuantity>(method, v, "item").map(drop)
        }
        "taobao.items.onsale.get" => typed::<ItemsPage>(method, v),
        "taobao.item.seller.get" => field::<Item>(method, v, "item").map(drop),
        super::error::OFFLINE_SEND => {
            let shipping = v
                .get("shipping")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            flag(method, &shipping, "is_success").map(drop)
        }
        "taobao.logistics.companies.get" => typed::<CompaniesReply>(method, v),
        "taobao.refunds.receive.get" => typed::<RefundsPage>(method, v),
        "taobao.refund.get" => field::<super::types::Refund>(method, v, "refund").map(drop),
        "taobao.rdc.aligenius.sendgoods.cancel" => {
            let result = v.get("result").cloned().unwrap_or(serde_json::Value::Null);
            flag(method, &result, "success").map(drop)
        }
        "cainiao.waybill.ii.get" => typed::<WaybillReply>(method, v),
        "cainiao.waybill.ii.cancel" => flag(method, &v, "cancel_result").map(drop),
        "cainiao.waybill.ii.query.by.tradecode" => typed::<WaybillQueryReply>(method, v),
        other => Err(invalid(other, "not a method of this client")),
    }
}

/// One object under `key` in a reply (`{"trade":{…}}`), decoded.
fn field<T: serde::de::DeserializeOwned>(
    method: &str,
    mut v: serde_json::Value,
    key: &str,
) -> Result<T, TopError> {
    let inner = v
        .get_mut(key)
        .map(serde_json::Value::take)
        .filter(|x| !x.is_null())
        .ok_or_else(|| TopError::Decode {
            method: method.to_owned(),
            detail: format!("reply has no {key:?}"),
        })?;
    decode::from_value(inner).map_err(|e| TopError::Decode {
        method: method.to_owned(),
        detail: format!("{key}: {e}"),
    })
}

/// A boolean under `key`, leniently (`true`, `"true"`).
fn flag(method: &str, v: &serde_json::Value, key: &str) -> Result<bool, TopError> {
    #[derive(Deserialize)]
    struct Flag(#[serde(deserialize_with = "decode::opt_bool")] Option<bool>);
    let raw = v.get(key).cloned().unwrap_or(serde_json::Value::Null);
    match serde_json::from_value::<Flag>(raw) {
        Ok(Flag(Some(b))) => Ok(b),
        _ => Err(TopError::Decode {
            method: method.to_owned(),
            detail: format!("reply has no boolean {key:?}"),
        }),
    }
}

impl TopClient {
    /// `taobao.trades.sold.increment.get`: one page of trades modified in a window.
    pub async fn trades_sold_increment_get(
        &self,
        q: &IncrementQuery,
    ) -> Result<TradesPage, TopError> {
        const M: &str = "taobao.trades.sold.increment.get";
        page_check(M, q.page_no, q.page_size, 100)?;
        if q.end_modified < q.start_modified {
            return Err(invalid(M, "end_modified is before start_modified"));
        }
        if q.end_modified - q.start_modified > chrono::Duration::days(1) {
            return Err(invalid(M, "the window may span at most one day"));
        }
        let p = Params::new()
            .set("fields", fields_with(&q.fields, "tid"))
            .set_date("start_modified", q.start_modified)
            .set_date("end_modified", q.end_modified)
            .set_opt("status", q.status.as_deref())
            .set_opt("type", q.trade_type.as_deref())
            .set("page_no", q.page_no)
            .set("page_size", q.page_size)
            .set_opt("use_has_next", q.use_has_next.then_some("true"));
        self.call_as(M, p, Session::Required).await
    }

    /// `taobao.trades.sold.get`: one page of trades by creation time.
    pub async fn trades_sold_get(&self, q: &SoldQuery) -> Result<TradesPage, TopError> {
        const M: &str = "taobao.trades.sold.get";
        page_check(M, q.page_no, q.page_size, 100)?;
        let mut p = Params::new()
            .set("fields", fields_with(&q.fields, "tid"))
            .set_opt("status", q.status.as_deref())
            .set_opt("type", q.trade_type.as_deref())
            .set("page_no", q.page_no)
            .set("page_size", q.page_size)
            .set_opt("use_has_next", q.use_has_next.then_some("true"));
        if let Some(s) = q.start_created {
            p = p.set_date("start_created", s);
        }
        if let Some(e) = q.end_created {
            p = p.set_date("end_created", e);
        }
        self.call_as(M, p, Session::Required).await
    }

    /// `taobao.trade.fullinfo.get`: one trade in full ([`TRADE_FULL_FIELDS`] when `fields`
    /// is empty).
    pub async fn trade_fullinfo_get(&self, tid: i64, fields: &[&str]) -> Result<Trade, TopError> {
        const M: &str = "taobao.trade.fullinfo.get";
        let fields = if fields.is_empty() {
            TRADE_FULL_FIELDS
        } else {
            fields
        };
        let p = Params::new()
            .set("fields", fields_with(fields, "tid"))
            .set("tid", tid);
        let v = self.call(M, p, Session::Required).await?;
        field(M, v, "trade")
    }

    /// `taobao.item.quantity.update`: sets (or moves) one item's or SKU's stock.
    pub async fn item_quantity_update(&self, u: &QuantityUpdate) -> Result<ItemQuantity, TopError> {
        const M: &str = "taobao.item.quantity.update";
        if u.mode == StockMode::Full && u.quantity < 0 {
            return Err(invalid(M, "a full stock update cannot be negative"));
        }
        let p = Params::new()
            .set("num_iid", u.num_iid)
            .set_opt("sku_id", u.sku_id)
            .set_opt(
                "outer_id",
                u.sku_id
                    .is_none()
                    .then_some(u.outer_id.as_deref())
                    .flatten(),
            )
            .set("quantity", u.quantity)
            .set("type", u.mode.wire());
        let v = self.call(M, p, Session::Required).await?;
        field(M, v, "item")
    }

    /// `taobao.skus.quantity.update`: up to 20 SKUs of one item, by `sku_id`.
    pub async fn skus_quantity_update(
        &self,
        num_iid: i64,
        skus: &[(i64, i64)],
        mode: StockMode,
    ) -> Result<ItemQuantity, TopError> {
        const M: &str = "taobao.skus.quantity.update";
        if skus.is_empty() || skus.len() > MAX_SKUS_PER_UPDATE {
            return Err(invalid(
                M,
                format!(
                    "1 to {MAX_SKUS_PER_UPDATE} SKUs per call, got {}",
                    skus.len()
                ),
            ));
        }
        if mode == StockMode::Full && skus.iter().any(|(_, q)| *q < 0) {
            return Err(invalid(M, "a full stock update cannot be negative"));
        }
        let pairs = skus
            .iter()
            .map(|(sku, q)| format!("{sku}:{q}"))
            .collect::<Vec<_>>()
            .join(";");
        let p = Params::new()
            .set("num_iid", num_iid)
            .set("skuid_quantities", pairs)
            .set("type", mode.wire());
        let v = self.call(M, p, Session::Required).await?;
        field(M, v, "item")
    }

    /// `taobao.items.onsale.get`: one page of listed items.
    pub async fn items_onsale_get(&self, q: &OnsaleQuery) -> Result<ItemsPage, TopError> {
        const M: &str = "taobao.items.onsale.get";
        page_check(M, q.page_no, q.page_size, 200)?;
        let mut p = Params::new()
            .set("fields", fields_with(&q.fields, "num_iid"))
            .set_opt("q", q.q.as_deref())
            .set_opt("order_by", q.order_by.as_deref())
            .set("page_no", q.page_no)
            .set("page_size", q.page_size);
        if let Some(s) = q.start_modified {
            p = p.set_date("start_modified", s);
        }
        if let Some(e) = q.end_modified {
            p = p.set_date("end_modified", e);
        }
        self.call_as(M, p, Session::Required).await
    }

    /// `taobao.item.seller.get`: one item with its SKUs ([`ITEM_FULL_FIELDS`] when `fields`
    /// is empty).
    pub async fn item_seller_get(&self, num_iid: i64, fields: &[&str]) -> Result<Item, TopError> {
        const M: &str = "taobao.item.seller.get";
        let fields = if fields.is_empty() {
            ITEM_FULL_FIELDS
        } else {
            fields
        };
        let p = Params::new()
            .set("fields", fields_with(fields, "num_iid"))
            .set("num_iid", num_iid);
        let v = self.call(M, p, Session::Required).await?;
        field(M, v, "item")
    }

    /// `taobao.logistics.offline.send`: consigns a trade (or some lines) with a waybill number.
    /// `Ok(true)` is the platform's `is_success`. A repeat answers B04, which
    /// [`TopError::disposition`] calls "already done".
    pub async fn logistics_offline_send(&self, s: &OfflineSend) -> Result<bool, TopError> {
        const M: &str = super::error::OFFLINE_SEND;
        if s.out_sid.trim().is_empty() || s.company_code.trim().is_empty() {
            return Err(invalid(M, "out_sid and company_code are required"));
        }
        if s.sub_tids.len() > MAX_SUB_TIDS {
            return Err(invalid(
                M,
                format!("at most {MAX_SUB_TIDS} lines per split shipment"),
            ));
        }
        let split = !s.sub_tids.is_empty();
        let p = Params::new()
            .set("tid", s.tid)
            .set("out_sid", s.out_sid.trim())
            .set("company_code", s.company_code.trim())
            .set_opt("is_split", split.then_some("1"))
            .set_list("sub_tid", &s.sub_tids)
            .set_opt("feature", s.feature.as_deref());
        let v = self.call(M, p, Session::Required).await?;
        let shipping = v
            .get("shipping")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        flag(M, &shipping, "is_success")
    }

    /// `taobao.logistics.companies.get`: every carrier with its waybill-number rule.
    /// `order_mode`: `offline` / `online` / `all` (with `is_recommended=true` only).
    pub async fn logistics_companies_get(
        &self,
        order_mode: Option<&str>,
    ) -> Result<Vec<LogisticsCompany>, TopError> {
        const M: &str = "taobao.logistics.companies.get";
        let p = Params::new()
            .set("fields", COMPANY_FIELDS.join(","))
            .set_opt("is_recommended", order_mode.map(|_| "true"))
            .set_opt("order_mode", order_mode);
        // The API does not need a session; sending one when there is one is harmless and
        // matches what the official SDKs do (TAOBAO.md §6.8). Without one, call app-level.
        let r: CompaniesReply = self.call_as(M, p, Session::Optional).await?;
        Ok(r.logistics_companies)
    }

    /// `taobao.refunds.receive.get`: one page of refunds the seller received.
    pub async fn refunds_receive_get(&self, q: &RefundsQuery) -> Result<RefundsPage, TopError> {
        const M: &str = "taobao.refunds.receive.get";
        page_check(M, q.page_no, q.page_size, 100)?;
        let mut p = Params::new()
            .set("fields", fields_with(&q.fields, "refund_id"))
            .set_opt("status", q.status.as_deref())
            .set("page_no", q.page_no)
            .set("page_size", q.page_size)
            .set_opt("use_has_next", q.use_has_next.then_some("true"));
        if let Some(s) = q.start_modified {
            p = p.set_date("start_modified", s);
        }
        if let Some(e) = q.end_modified {
            p = p.set_date("end_modified", e);
        }
        self.call_as(M, p, Session::Required).await
    }

    /// `taobao.refund.get`: one refund (`refund_id`, `status`, `refund_fee`, …).
    pub async fn refund_get(&self, refund_id: i64) -> Result<super::types::Refund, TopError> {
        const M: &str = "taobao.refund.get";
        let p = Params::new()
            .set("fields", REFUND_FIELDS.join(","))
            .set("refund_id", refund_id);
        let v = self.call(M, p, Session::Required).await?;
        field(M, v, "refund")
    }

    /// `taobao.rdc.aligenius.sendgoods.cancel`: tells AliGenius whether an unshipped order was
    /// stopped after a refund-only request (`Ok(true)` = the platform's `result.success`).
    pub async fn rdc_aligenius_sendgoods_cancel(&self, c: &CancelGoods) -> Result<bool, TopError> {
        const M: &str = "taobao.rdc.aligenius.sendgoods.cancel";
        if c.status != "SUCCESS" && c.status != "FAIL" {
            return Err(invalid(M, "status must be SUCCESS or FAIL"));
        }
        let json = serde_json::to_string(c).map_err(|e| invalid(M, e.to_string()))?;
        let p = Params::new().set("param", json);
        let v = self.call(M, p, Session::Required).await?;
        let result = v.get("result").cloned().unwrap_or(serde_json::Value::Null);
        flag(M, &result, "success")
    }

    /// `cainiao.waybill.ii.get`: issues waybill numbers and cloud-print data. Never call it
    /// in a blind retry loop (DOMAIN.md §7): a retry after a timeout may issue a second number.
    pub async fn cainiao_waybill_ii_get(
        &self,
        r: &WaybillRequest,
    ) -> Result<Vec<Waybill>, TopError> {
        const M: &str = "cainiao.waybill.ii.get";
        let n = r.trade_order_info_dtos.len();
        if n == 0 || n > MAX_WAYBILL_PACKAGES {
            return Err(invalid(
                M,
                format!("1 to {MAX_WAYBILL_PACKAGES} packages per call, got {n}"),
            ));
        }
        for d in &r.trade_order_info_dtos {
            let orders = d.order_info.trade_order_list.len();
            if orders == 0 || orders > 100 {
                return Err(invalid(
                    M,
                    format!("package {}: 1 to 100 order ids", d.object_id),
                ));
            }
            let items = d.package_info.items.len();
            if items == 0 || items > 100 {
                return Err(invalid(
                    M,
                    format!("package {}: 1 to 100 items", d.object_id),
                ));
            }
        }
        let json = serde_json::to_string(r).map_err(|e| invalid(M, e.to_string()))?;
        let p = Params::new().set("param_waybill_cloud_print_apply_new_request", json);
        let reply: WaybillReply = self.call_as(M, p, Session::Required).await?;
        Ok(reply.modules)
    }

    /// `cainiao.waybill.ii.query.by.tradecode`: the waybills issued for trade codes (up to
    /// 20 `(object_id, trade code)` pairs), to find out whether a request whose answer was
    /// lost issued a number (DOMAIN.md §7) before asking again.
    pub async fn cainiao_waybill_ii_query_by_tradecode(
        &self,
        queries: &[(String, String)],
    ) -> Result<Vec<WaybillQueryResult>, TopError> {
        const M: &str = "cainiao.waybill.ii.query.by.tradecode";
        #[derive(Serialize)]
        struct Query<'a> {
            object_id: &'a str,
            biz_sub_code: &'a str,
        }
        if queries.is_empty() || queries.len() > 20 {
            return Err(invalid(
                M,
                format!("1 to 20 trade codes per call, got {}", queries.len()),
            ));
        }
        let list: Vec<Query<'_>> = queries
            .iter()
            .map(|(o, c)| Query {
                object_id: o,
                biz_sub_code: c,
            })
            .collect();
        let json = serde_json::to_string(&list).map_err(|e| invalid(M, e.to_string()))?;
        let p = Params::new().set("param_list", json);
        let reply: WaybillQueryReply = self.call_as(M, p, Session::Required).await?;
        Ok(reply.modules)
    }

    /// `cainiao.waybill.ii.cancel`: voids an unused waybill number.
    pub async fn cainiao_waybill_ii_cancel(
        &self,
        cp_code: &str,
        waybill_code: &str,
    ) -> Result<bool, TopError> {
        const M: &str = "cainiao.waybill.ii.cancel";
        let p = Params::new()
            .set("cp_code", cp_code)
            .set("waybill_code", waybill_code);
        let v = self.call(M, p, Session::Required).await?;
        flag(M, &v, "cancel_result")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_result_knows_every_method_this_module_calls() {
        let src = include_str!("api.rs");
        let mut calls: Vec<&str> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix("const M: &str = "))
            .map(|rest| rest.trim_end_matches(';'))
            .map(|m| match m {
                "super::error::OFFLINE_SEND" => super::super::error::OFFLINE_SEND,
                quoted => quoted.trim_matches('"'),
            })
            .collect();
        calls.sort_unstable();
        let mut known = METHODS.to_vec();
        known.sort_unstable();
        assert_eq!(calls, known);
        for m in METHODS {
            // An empty result object is an error or a default, never "unknown method".
            let r = decode_result(m, serde_json::json!({}));
            assert!(
                !matches!(r, Err(TopError::InvalidRequest { .. })),
                "{m}: {r:?}"
            );
        }
    }

    #[test]
    fn the_key_field_is_added_once_and_first() {
        assert_eq!(
            fields_with(&["status", "modified"], "tid"),
            "tid,status,modified"
        );
        assert_eq!(fields_with(&["status", "tid"], "tid"), "status,tid");
        assert_eq!(fields_with::<&str>(&[], "tid"), "tid");
    }

    #[test]
    fn the_full_trade_fields_ask_for_everything_oaid_needs() {
        for f in [
            "receiver_name",
            "receiver_address",
            "created",
            "receiver_mobile",
            "receiver_phone",
        ] {
            assert!(TRADE_FULL_FIELDS.contains(&f), "{f}");
        }
    }

    #[test]
    fn waybill_requests_serialize_without_absent_fields_and_hide_the_recipient_in_debug() {
        let r = WaybillRequest {
            cp_code: "YTO".into(),
            sender: WaybillParty {
                name: "仓库".into(),
                mobile: Some("13800000000".into()),
                phone: None,
                address: WaybillAddress {
                    province: "浙江省".into(),
                    detail: "仓库路1号".into(),
                    ..Default::default()
                },
            },
            trade_order_info_dtos: vec![WaybillOrder {
                object_id: "pkg-1".into(),
                order_info: WaybillOrderInfo {
                    order_channels_type: "TB".into(),
                    trade_order_list: vec!["123".into()],
                },
                package_info: WaybillPackage {
                    id: Some("pkg-1".into()),
                    items: vec![WaybillItem {
                        name: "T恤".into(),
                        count: 1,
                    }],
                    weight: None,
                    volume: None,
                },
                recipient: WaybillRecipient {
                    oaid: Some("OAID-SECRET".into()),
                    tid: Some("123".into()),
                    ..Default::default()
                },
                template_url: "http://cloudprint.cainiao.com/template/standard/101".into(),
                user_id: None,
            }],
            need_encrypt: None,
            product_code: None,
        };
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["sender"].get("phone"), None);
        assert_eq!(
            json["trade_order_info_dtos"][0]["recipient"]["oaid"],
            "OAID-SECRET"
        );
        assert_eq!(
            json["trade_order_info_dtos"][0]["recipient"].get("name"),
            None
        );
        assert!(!format!("{r:?}").contains("OAID-SECRET"));
        assert!(!format!("{r:?}").contains("仓库路"));
    }
}
