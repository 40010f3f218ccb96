//! The business APIs the sandbox serves behind `/router/rest` (TAOBAO.md §6), gateway check 12
//! (required / valid business parameters → 40 / 41) and step 13 (the outcome).
//!
//! Each handler reads the merged parameters, validates them in a fixed order, calls the shop and
//! returns the response fields as an [`Out`] list; the gateway wraps them in the requested
//! envelope. Only [`METHODS`] exist; anything else is 22 Invalid method.

use crate::clock::{format_gmt8, parse_gmt8};
use crate::companies::COMPANIES;
use crate::envelope::{ObjBuilder, Out, TopError};
use crate::fields::FieldSel;
use crate::params::Params;
use crate::render::{self, TradeView};
use crate::shop::{DEFAULT_TYPES, REFUND_STATUSES, SkuTarget, StockMode, TRADE_STATUSES, Trade};
use crate::state::World;

/// Response fields of a successful call.
pub type Fields = Vec<(String, Out)>;

/// Who is calling, and when.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    /// Sandbox time, epoch ms.
    pub now_ms: i64,
    /// The calling app.
    pub app_key: &'a str,
    /// The shop's seller nick.
    pub seller_nick: &'a str,
    /// The shop's seller id.
    pub seller_id: i64,
}

impl Ctx<'_> {
    fn now_s(&self) -> i64 {
        self.now_ms.div_euclid(1000)
    }
}

type Handler = fn(&mut World, &Params, &Ctx) -> Result<Fields, TopError>;

/// One API the gateway knows.
pub struct MethodSpec {
    /// Full method name.
    pub name: &'static str,
    /// Whether check 9/10 (session) applies.
    pub needs_session: bool,
    handler: Handler,
}

impl std::fmt::Debug for MethodSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodSpec")
            .field("name", &self.name)
            .field("needs_session", &self.needs_session)
            .finish()
    }
}

impl MethodSpec {
    /// Runs the call.
    pub fn call(&self, w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
        (self.handler)(w, p, ctx)
    }
}

const fn m(name: &'static str, needs_session: bool, handler: Handler) -> MethodSpec {
    MethodSpec {
        name,
        needs_session,
        handler,
    }
}

/// Every API the sandbox serves.
pub const METHODS: &[MethodSpec] = &[
    m(
        "taobao.trades.sold.increment.get",
        true,
        trades_sold_increment_get,
    ),
    m("taobao.trades.sold.get", true, trades_sold_get),
    m("taobao.trade.fullinfo.get", true, trade_fullinfo_get),
    m("taobao.item.quantity.update", true, item_quantity_update),
    m("taobao.skus.quantity.update", true, skus_quantity_update),
    m("taobao.items.onsale.get", true, items_onsale_get),
    m("taobao.item.seller.get", true, item_seller_get),
    m(
        "taobao.logistics.offline.send",
        true,
        logistics_offline_send,
    ),
    m(
        "taobao.logistics.companies.get",
        false,
        logistics_companies_get,
    ),
    m("taobao.refunds.receive.get", true, refunds_receive_get),
    m("taobao.refund.get", true, refund_get),
    m(
        "taobao.rdc.aligenius.sendgoods.cancel",
        true,
        aligenius_sendgoods_cancel,
    ),
    m("cainiao.waybill.ii.get", true, waybill_get),
    m("cainiao.waybill.ii.cancel", true, waybill_cancel),
    m(
        "cainiao.waybill.ii.query.by.tradecode",
        true,
        waybill_query_by_tradecode,
    ),
    m("taobao.top.auth.token.create", false, auth_token_create),
    m("taobao.top.auth.token.refresh", false, auth_token_refresh),
];

/// Looks an API up by name.
pub fn find(name: &str) -> Option<&'static MethodSpec> {
    METHODS.iter().find(|m| m.name == name)
}

// ---- parameter helpers (check 12) ----

fn req<'a>(p: &'a Params, name: &str) -> Result<&'a str, TopError> {
    p.get(name).ok_or_else(|| TopError::missing(name))
}

fn opt_int(p: &Params, name: &str) -> Result<Option<i64>, TopError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| TopError::invalid(name, format!("{name} must be a number"))),
    }
}

fn req_int(p: &Params, name: &str) -> Result<i64, TopError> {
    opt_int(p, name)?.ok_or_else(|| TopError::missing(name))
}

fn opt_date(p: &Params, name: &str) -> Result<Option<i64>, TopError> {
    match p.get(name) {
        None => Ok(None),
        Some(v) => parse_gmt8(v)
            .map(Some)
            .ok_or_else(|| TopError::invalid(name, format!("{name} must be yyyy-MM-dd HH:mm:ss"))),
    }
}

fn req_date(p: &Params, name: &str) -> Result<i64, TopError> {
    opt_date(p, name)?.ok_or_else(|| TopError::missing(name))
}

fn opt_bool(p: &Params, name: &str) -> Result<Option<bool>, TopError> {
    match p.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(TopError::invalid(
            name,
            format!("{name} must be true or false"),
        )),
    }
}

fn fields(p: &Params) -> Result<FieldSel, TopError> {
    Ok(FieldSel::parse(req(p, "fields")?))
}

/// `page_no ≥ 1` (default 1), `1 ≤ page_size ≤ max` (default 40).
fn page(p: &Params, max: i64) -> Result<(usize, usize), TopError> {
    let no = opt_int(p, "page_no")?.unwrap_or(1);
    if no < 1 {
        return Err(TopError::invalid("page_no", "page_no must be >= 1"));
    }
    let size = opt_int(p, "page_size")?.unwrap_or(40);
    if !(1..=max).contains(&size) {
        return Err(TopError::invalid(
            "page_size",
            format!("page_size must be 1..={max}"),
        ));
    }
    Ok((no as usize, size as usize))
}

fn stock_mode(p: &Params) -> Result<StockMode, TopError> {
    match p.get("type") {
        None | Some("1") => Ok(StockMode::Full),
        Some("2") => Ok(StockMode::Incremental),
        Some(_) => Err(TopError::invalid(
            "type",
            "type must be 1 (full) or 2 (incremental)",
        )),
    }
}

/// A page of results plus the paging fields TOP returns. Only the page's rows are rendered,
/// so a shop of 100,000 trades pages as fast as a small one.
fn paged<T>(
    list_key: &str,
    elem: &'static str,
    hits: Vec<T>,
    render: impl Fn(T) -> Out,
    no: usize,
    size: usize,
    use_has_next: bool,
) -> Fields {
    let total = hits.len();
    let start = (no - 1).saturating_mul(size);
    let page: Vec<Out> = hits
        .into_iter()
        .skip(start)
        .take(size)
        .map(render)
        .collect();
    let has_next = start.saturating_add(size) < total;
    let mut b = ObjBuilder::new();
    // TOP leaves an empty list out entirely; clients must read "absent" as "empty".
    if !page.is_empty() {
        b.put(list_key, Out::List(elem, page));
    }
    // TAOBAO.md §6.1: with `use_has_next=true` the count is left out and `has_next` given;
    // without it, `total_results` and no `has_next` (a client must page by the count).
    if use_has_next {
        b.put("has_next", Out::bool(has_next));
    } else {
        b.put("total_results", Out::int(total as i64));
    }
    b.into_fields()
}

fn status_matches(filter: &str, status: &str) -> bool {
    match filter {
        "ALL_WAIT_PAY" => ["WAIT_BUYER_PAY", "TRADE_NO_CREATE_PAY"].contains(&status),
        "ALL_CLOSED" => ["TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"].contains(&status),
        f => f == status,
    }
}

fn trade_filters(p: &Params) -> Result<impl Fn(&Trade) -> bool, TopError> {
    let status = p.get("status").map(str::to_string);
    if let Some(s) = &status
        && !TRADE_STATUSES.contains(&s.as_str())
        && s != "ALL_WAIT_PAY"
        && s != "ALL_CLOSED"
    {
        return Err(TopError::invalid("status", format!("unknown status {s}")));
    }
    let types: Vec<String> = match p.get("type") {
        Some(t) => t
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => DEFAULT_TYPES.iter().map(|s| s.to_string()).collect(),
    };
    let buyer = p.get("buyer_nick").map(str::to_string);
    Ok(move |t: &Trade| {
        status
            .as_deref()
            .is_none_or(|s| status_matches(s, &t.status))
            && types.contains(&t.trade_type)
            && buyer.as_deref().is_none_or(|b| b == t.buyer_nick)
    })
}

const NINETY_DAYS: i64 = 90 * 86_400;

// ---- trades ----

fn trades_sold_increment_get(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let sel = fields(p)?;
    let start = req_date(p, "start_modified")?;
    let end = req_date(p, "end_modified")?;
    if end < start {
        return Err(TopError::invalid(
            "end_modified",
            "end_modified must not be before start_modified",
        ));
    }
    if end - start > 86_400 {
        return Err(TopError::invalid(
            "end_modified",
            "时间跨度不能超过一天 (window longer than one day)",
        ));
    }
    if start < ctx.now_s() - NINETY_DAYS {
        return Err(TopError::invalid(
            "start_modified",
            "只能查询三个月内的订单 (older than 3 months)",
        ));
    }
    let (no, size) = page(p, 100)?;
    let use_has_next = opt_bool(p, "use_has_next")?.unwrap_or(false);
    let keep = trade_filters(p)?;
    let mut hits: Vec<&Trade> = w
        .shop
        .trades
        .values()
        .filter(|t| t.modified >= start && t.modified <= end && keep(t))
        .collect();
    // Newest-modified first (TAOBAO.md §6.1); ties by tid so paging is deterministic.
    hits.sort_by(|a, b| b.modified.cmp(&a.modified).then(b.tid.cmp(&a.tid)));
    let render = |t: &Trade| render::trade(t, &sel, TradeView::List, ctx.seller_nick);
    Ok(paged(
        "trades",
        "trade",
        hits,
        render,
        no,
        size,
        use_has_next,
    ))
}

fn trades_sold_get(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let sel = fields(p)?;
    let now = ctx.now_s();
    let start = opt_date(p, "start_created")?.unwrap_or(now - NINETY_DAYS);
    let end = opt_date(p, "end_created")?.unwrap_or(now + 86_400);
    if end < start {
        return Err(TopError::invalid(
            "end_created",
            "end_created must not be before start_created",
        ));
    }
    if start < now - NINETY_DAYS - 86_400 {
        return Err(TopError::invalid(
            "start_created",
            "只能查询三个月内的订单 (older than 3 months)",
        ));
    }
    let (no, size) = page(p, 100)?;
    let use_has_next = opt_bool(p, "use_has_next")?.unwrap_or(false);
    let keep = trade_filters(p)?;
    let mut hits: Vec<&Trade> = w
        .shop
        .trades
        .values()
        .filter(|t| t.created >= start && t.created <= end && keep(t))
        .collect();
    hits.sort_by(|a, b| b.created.cmp(&a.created).then(b.tid.cmp(&a.tid)));
    let render = |t: &Trade| render::trade(t, &sel, TradeView::List, ctx.seller_nick);
    Ok(paged(
        "trades",
        "trade",
        hits,
        render,
        no,
        size,
        use_has_next,
    ))
}

fn trade_fullinfo_get(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let sel = fields(p)?;
    let tid = req_int(p, "tid")?;
    let t = w
        .shop
        .trades
        .get(&tid)
        .ok_or_else(|| TopError::remote("isv.trade-not-exist", "交易订单不存在"))?;
    Ok(vec![(
        "trade".into(),
        render::trade(t, &sel, TradeView::Full, ctx.seller_nick),
    )])
}

// ---- stock ----

fn quantity_fields(r: crate::shop::QuantityResult) -> Fields {
    let mut b = ObjBuilder::new();
    b.put("iid", Out::str(r.num_iid.to_string()))
        .put("num_iid", Out::int(r.num_iid))
        .put("num", Out::int(r.num))
        .put("modified", Out::str(format_gmt8(r.modified)));
    if !r.skus.is_empty() {
        let skus = r
            .skus
            .iter()
            .map(|(id, q, m)| {
                let mut s = ObjBuilder::new();
                s.put("sku_id", Out::int(*id))
                    .put("quantity", Out::int(*q))
                    .put("modified", Out::str(format_gmt8(*m)));
                s.build()
            })
            .collect();
        b.put("skus", Out::List("sku", skus));
    }
    vec![("item".into(), b.build())]
}

fn item_quantity_update(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let num_iid = req_int(p, "num_iid")?;
    let quantity = req_int(p, "quantity")?;
    let sku_id = opt_int(p, "sku_id")?;
    let mode = stock_mode(p)?;
    // `sku_id` wins over `outer_id` (TAOBAO.md §6.4).
    let target = match (sku_id, p.get("outer_id")) {
        (Some(s), _) => SkuTarget::SkuId(s),
        (None, Some(o)) => SkuTarget::OuterId(o.to_string()),
        (None, None) => SkuTarget::Item,
    };
    let r = w
        .shop
        .update_quantity(num_iid, target, quantity, mode, ctx.now_s())?;
    Ok(quantity_fields(r))
}

fn parse_pairs(name: &str, text: &str) -> Result<Vec<(String, i64)>, TopError> {
    let mut out = Vec::new();
    for part in text.split(';').filter(|s| !s.trim().is_empty()) {
        let (k, v) = part.split_once(':').ok_or_else(|| {
            TopError::invalid(name, format!("{name} must look like id:qty;id:qty"))
        })?;
        let q = v
            .trim()
            .parse::<i64>()
            .map_err(|_| TopError::invalid(name, format!("quantity {v:?} is not a number")))?;
        if k.trim().is_empty() {
            return Err(TopError::invalid(name, "empty SKU key"));
        }
        out.push((k.trim().to_string(), q));
    }
    if out.is_empty() {
        return Err(TopError::invalid(name, format!("{name} names no SKU")));
    }
    if out.len() > 20 {
        return Err(TopError::invalid(name, "at most 20 SKUs per call"));
    }
    Ok(out)
}

fn skus_quantity_update(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let num_iid = req_int(p, "num_iid")?;
    let (by_id, entries) = match (p.get("skuid_quantities"), p.get("outerid_quantities")) {
        (Some(s), _) => (true, parse_pairs("skuid_quantities", s)?),
        (None, Some(o)) => (false, parse_pairs("outerid_quantities", o)?),
        (None, None) => return Err(TopError::missing("skuid_quantities")),
    };
    if by_id {
        for (k, _) in &entries {
            if k.parse::<i64>().is_err() {
                return Err(TopError::invalid(
                    "skuid_quantities",
                    format!("sku id {k:?} is not a number"),
                ));
            }
        }
    }
    let mode = stock_mode(p)?;
    let r = w
        .shop
        .update_skus(num_iid, by_id, &entries, mode, ctx.now_s())?;
    Ok(quantity_fields(r))
}

// ---- items ----

fn items_onsale_get(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let sel = fields(p)?;
    let (no, size) = page(p, 200)?;
    let q = p.get("q").map(str::to_string);
    let start = opt_date(p, "start_modified")?;
    let end = opt_date(p, "end_modified")?;
    let (key, asc) = match p.get("order_by") {
        None => ("list_time", false),
        Some(o) => {
            let (k, d) = o.split_once(':').unwrap_or((o, "desc"));
            let keys = [
                "list_time",
                "delist_time",
                "num",
                "modified",
                "sold_quantity",
            ];
            if !keys.contains(&k) || !(d == "asc" || d == "desc") {
                return Err(TopError::invalid(
                    "order_by",
                    format!("unsupported order_by {o}"),
                ));
            }
            (k, d == "asc")
        }
    };
    let mut hits: Vec<&crate::shop::Item> = w
        .shop
        .items
        .values()
        .filter(|i| !i.deleted)
        .filter(|i| q.as_deref().is_none_or(|q| i.title.contains(q)))
        .filter(|i| start.is_none_or(|s| i.modified >= s) && end.is_none_or(|e| i.modified <= e))
        .collect();
    let sort_key = |i: &crate::shop::Item| match key {
        "num" => i.total_num(),
        "modified" => i.modified,
        "sold_quantity" => i.sold_quantity,
        _ => i.list_time,
    };
    hits.sort_by(|a, b| {
        let o = sort_key(a)
            .cmp(&sort_key(b))
            .then(a.num_iid.cmp(&b.num_iid));
        if asc { o } else { o.reverse() }
    });
    let render = |i: &crate::shop::Item| render::item(i, &sel, ctx.seller_nick, false);
    // items.onsale.get has no use_has_next: it reports total_results and no has_next.
    Ok(paged("items", "item", hits, render, no, size, false))
}

fn item_seller_get(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let sel = fields(p)?;
    let num_iid = req_int(p, "num_iid")?;
    let item = w.shop.items.get(&num_iid).ok_or_else(|| {
        TopError::remote("isv.item-not-exist:invalid-numIid-or-iid", "商品不存在")
    })?;
    if item.deleted {
        return Err(TopError::remote(
            "isv.item-is-delete:invalid-numIid-or-iid",
            "商品已删除",
        ));
    }
    Ok(vec![(
        "item".into(),
        render::item(item, &sel, ctx.seller_nick, true),
    )])
}

// ---- logistics ----

fn logistics_offline_send(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let tid = req_int(p, "tid")?;
    let out_sid = req(p, "out_sid")?;
    let company_code = req(p, "company_code")?;
    let is_split = match p.get("is_split") {
        None | Some("0") => false,
        Some("1") => true,
        Some(_) => return Err(TopError::invalid("is_split", "is_split must be 0 or 1")),
    };
    let sub_tids: Option<Vec<i64>> = match p.get("sub_tid") {
        None => None,
        Some(s) => {
            let mut v = Vec::new();
            for part in s.split(',') {
                let oid = part.trim().parse::<i64>().map_err(|_| {
                    TopError::invalid("sub_tid", "sub_tid must be a comma list of oids")
                })?;
                if !v.contains(&oid) {
                    v.push(oid);
                }
            }
            Some(v)
        }
    };
    let cd = |code: &str, msg: &str| {
        TopError::remote(format!("isv.logistics-offline-service-error:{code}"), msg)
    };
    let split = match (is_split, &sub_tids) {
        (true, None) => return Err(cd("CD22", "拆单发货时子订单号(sub_tid)不能为空")),
        (false, Some(_)) => return Err(cd("CD23", "传入子订单号(sub_tid)时必须设置is_split=1")),
        (true, Some(v)) if v.len() > 50 => return Err(cd("CD25", "子订单数量不能超过50个")),
        (true, Some(v)) => Some(v.as_slice()),
        (false, None) => None,
    };
    w.shop
        .offline_send(tid, out_sid, company_code, split, ctx.now_ms)?;
    let mut b = ObjBuilder::new();
    b.put("is_success", Out::bool(true));
    Ok(vec![("shipping".into(), b.build())])
}

fn logistics_companies_get(_w: &mut World, p: &Params, _ctx: &Ctx) -> Result<Fields, TopError> {
    let sel = fields(p)?;
    let recommended = opt_bool(p, "is_recommended")?.unwrap_or(false);
    match p.get("order_mode") {
        None | Some("offline") | Some("online") | Some("all") => {}
        Some(_) => {
            return Err(TopError::invalid(
                "order_mode",
                "order_mode must be offline, online or all",
            ));
        }
    }
    let rows: Vec<Out> = COMPANIES
        .iter()
        .filter(|c| !recommended || c.recommended)
        .map(|c| {
            let mut b = ObjBuilder::new();
            if sel.has("id") {
                b.put("id", Out::int(c.id));
            }
            if sel.has("code") {
                b.put("code", Out::str(c.code));
            }
            if sel.has("name") {
                b.put("name", Out::str(c.name));
            }
            if sel.has("reg_mail_no") {
                b.put("reg_mail_no", Out::str(c.reg_mail_no));
            }
            b.build()
        })
        .collect();
    Ok(vec![(
        "logistics_companies".into(),
        Out::List("logistics_company", rows),
    )])
}

// ---- refunds ----

fn refunds_receive_get(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let sel = fields(p)?;
    let status = p.get("status");
    if let Some(s) = status
        && !REFUND_STATUSES.contains(&s)
    {
        return Err(TopError::invalid(
            "status",
            format!("unknown refund status {s}"),
        ));
    }
    let start = opt_date(p, "start_modified")?;
    let end = opt_date(p, "end_modified")?;
    let (no, size) = page(p, 100)?;
    let use_has_next = opt_bool(p, "use_has_next")?.unwrap_or(false);
    let buyer = p.get("buyer_nick");
    let shop = &w.shop;
    let mut hits: Vec<&crate::shop::Refund> = shop
        .refunds
        .values()
        .filter(|r| status.is_none_or(|s| r.status == s))
        .filter(|r| start.is_none_or(|s| r.modified >= s) && end.is_none_or(|e| r.modified <= e))
        .filter(|r| {
            buyer.is_none_or(|b| shop.trades.get(&r.tid).is_some_and(|t| t.buyer_nick == b))
        })
        .collect();
    hits.sort_by(|a, b| {
        b.modified
            .cmp(&a.modified)
            .then(b.refund_id.cmp(&a.refund_id))
    });
    let render = |r: &crate::shop::Refund| render::refund(r, shop, &sel, ctx.seller_nick);
    Ok(paged(
        "refunds",
        "refund",
        hits,
        render,
        no,
        size,
        use_has_next,
    ))
}

fn refund_get(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let sel = fields(p)?;
    let id = req(p, "refund_id")?;
    if id.parse::<i64>().is_err() {
        return Err(TopError::invalid("refund_id", "refund_id must be a number"));
    }
    let r = w
        .shop
        .refunds
        .get(id)
        .ok_or_else(|| TopError::remote("isv.refund-not-exist", "退款单不存在"))?;
    Ok(vec![(
        "refund".into(),
        render::refund(r, &w.shop, &sel, ctx.seller_nick),
    )])
}

// ---- AliGenius ----

/// `taobao.rdc.aligenius.sendgoods.cancel` (TAOBAO.md §6.10): one struct parameter `param`
/// (JSON) naming a refund of a line of one of the shop's trades, `refund_fee` in integer fen,
/// `status` `SUCCESS` or `FAIL`, `operate_time` as a TOP date.
fn aligenius_sendgoods_cancel(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    const P: &str = "param";
    let raw = req(p, P)?;
    let v: serde_json::Value =
        serde_json::from_str(raw).map_err(|_| bad(P, "not a JSON object"))?;
    if !v.is_object() {
        return Err(bad(P, "not a JSON object"));
    }
    // Ids may be JSON numbers or strings.
    let int = |key: &str| -> Result<i64, TopError> {
        match v.get(key) {
            None | Some(serde_json::Value::Null) => Err(TopError::missing(&format!("{P}.{key}"))),
            Some(serde_json::Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| bad(&format!("{P}.{key}"), "not an integer")),
            Some(serde_json::Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| bad(&format!("{P}.{key}"), "not an integer")),
            Some(_) => Err(bad(&format!("{P}.{key}"), "not an integer")),
        }
    };
    let tid = int("tid")?;
    let oid = int("oid")?;
    let refund_id = int("refund_id")?.to_string();
    let refund_fee = int("refund_fee")?;
    if refund_fee < 0 {
        return Err(bad(
            &format!("{P}.refund_fee"),
            "must not be negative (fen)",
        ));
    }
    let status = jstr(&v, "status").ok_or_else(|| TopError::missing(&format!("{P}.status")))?;
    if status != "SUCCESS" && status != "FAIL" {
        return Err(bad(&format!("{P}.status"), "must be SUCCESS or FAIL"));
    }
    let operate_time =
        jstr(&v, "operate_time").ok_or_else(|| TopError::missing(&format!("{P}.operate_time")))?;
    if parse_gmt8(operate_time).is_none() {
        return Err(bad(
            &format!("{P}.operate_time"),
            "must be yyyy-MM-dd HH:mm:ss",
        ));
    }
    let trade = w
        .shop
        .trades
        .get(&tid)
        .ok_or_else(|| TopError::remote("isv.trade-not-exist", "交易订单不存在"))?;
    if !trade.orders.iter().any(|o| o.oid == oid) {
        return Err(bad(&format!("{P}.oid"), "not a line of this trade"));
    }
    let refund = w
        .shop
        .refunds
        .get(&refund_id)
        .filter(|r| r.tid == tid && r.oid == oid)
        .ok_or_else(|| TopError::remote("isv.refund-not-exist", "退款单不存在"))?;
    if refund.refund_fee_fen != refund_fee {
        return Err(bad(
            &format!("{P}.refund_fee"),
            "does not match the refund's amount",
        ));
    }
    w.shop.feedback.push(crate::shop::AgFeedback {
        tid,
        oid,
        refund_id,
        refund_fee,
        status: status.to_owned(),
        operate_time: operate_time.to_owned(),
        at_ms: ctx.now_ms,
    });
    let mut r = ObjBuilder::new();
    r.put("success", Out::bool(true));
    Ok(vec![("result".into(), r.build())])
}

// ---- Cainiao waybills ----

const WAYBILL_PARAM: &str = "param_waybill_cloud_print_apply_new_request";

fn jstr<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(|x| x.as_str())
        .filter(|s| !s.trim().is_empty())
}

fn bad(path: &str, why: &str) -> TopError {
    TopError::invalid(path, why.to_string())
}

fn waybill_get(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let raw = req(p, WAYBILL_PARAM)?;
    let req_json: serde_json::Value =
        serde_json::from_str(raw).map_err(|_| bad(WAYBILL_PARAM, "not a JSON object"))?;
    if !req_json.is_object() {
        return Err(bad(WAYBILL_PARAM, "not a JSON object"));
    }
    let cp_code =
        jstr(&req_json, "cp_code").ok_or_else(|| bad("cp_code", "cp_code is required"))?;
    if crate::companies::by_code(cp_code).is_none() {
        return Err(TopError::remote(
            "isv.cp-code-not-support",
            format!("不支持的物流公司 {cp_code}"),
        ));
    }
    let sender = req_json
        .get("sender")
        .ok_or_else(|| bad("sender", "sender is required"))?;
    jstr(sender, "name").ok_or_else(|| bad("sender.name", "sender.name is required"))?;
    if jstr(sender, "mobile").is_none() && jstr(sender, "phone").is_none() {
        return Err(bad(
            "sender.mobile",
            "sender.mobile or sender.phone is required",
        ));
    }
    let addr = sender
        .get("address")
        .ok_or_else(|| bad("sender.address", "sender.address is required"))?;
    jstr(addr, "province").ok_or_else(|| bad("sender.address.province", "required"))?;
    jstr(addr, "detail").ok_or_else(|| bad("sender.address.detail", "required"))?;
    let dtos = req_json
        .get("trade_order_info_dtos")
        .and_then(|d| d.as_array())
        .ok_or_else(|| bad("trade_order_info_dtos", "trade_order_info_dtos is required"))?;
    if dtos.is_empty() || dtos.len() > 10 {
        return Err(bad("trade_order_info_dtos", "1 to 10 entries per call"));
    }
    // Validate everything before issuing anything.
    struct Req {
        object_id: String,
        key: String,
        orders: Vec<String>,
        template_url: String,
        oaid: Option<String>,
    }
    let mut reqs = Vec::new();
    let mut seen_packages = Vec::new();
    for d in dtos {
        let object_id =
            jstr(d, "object_id").ok_or_else(|| bad("object_id", "object_id is required"))?;
        let template_url = jstr(d, "template_url")
            .ok_or_else(|| bad("template_url", "template_url is required"))?;
        let oi = d
            .get("order_info")
            .ok_or_else(|| bad("order_info", "order_info is required"))?;
        jstr(oi, "order_channels_type")
            .ok_or_else(|| bad("order_info.order_channels_type", "required"))?;
        let list: Vec<String> = oi
            .get("trade_order_list")
            .and_then(|l| l.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| match x {
                        serde_json::Value::String(s) => Some(s.clone()),
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        if list.is_empty() || list.len() > 100 {
            return Err(bad("order_info.trade_order_list", "1 to 100 order ids"));
        }
        let pkg = d
            .get("package_info")
            .ok_or_else(|| bad("package_info", "package_info is required"))?;
        let items = pkg
            .get("items")
            .and_then(|i| i.as_array())
            .map(Vec::len)
            .unwrap_or(0);
        if items == 0 || items > 100 {
            return Err(bad("package_info.items", "1 to 100 items"));
        }
        let key = match jstr(pkg, "id") {
            // Package ids are case-insensitive (Cainiao doc).
            Some(id) => format!("pkg:{}", id.to_ascii_lowercase()),
            None => format!("orders:{}", list.join(",")),
        };
        if seen_packages.contains(&key) {
            return Err(bad(
                "package_info.id",
                "package ids must differ within one call",
            ));
        }
        seen_packages.push(key.clone());
        let r = d
            .get("recipient")
            .ok_or_else(|| bad("recipient", "recipient is required"))?;
        let oaid = jstr(r, "oaid").map(str::to_string);
        match (&oaid, jstr(r, "tid")) {
            (Some(oaid), Some(tid)) => {
                let t = tid
                    .parse::<i64>()
                    .ok()
                    .and_then(|t| w.shop.trades.get(&t))
                    .ok_or_else(|| {
                        TopError::remote("isv.trade-not-exist", "recipient.tid 交易订单不存在")
                    })?;
                if t.oaid != *oaid {
                    return Err(bad(
                        "recipient.oaid",
                        "oaid does not belong to recipient.tid",
                    ));
                }
            }
            (Some(_), None) => {
                return Err(bad("recipient.tid", "recipient.tid is required with oaid"));
            }
            (None, _) => {
                jstr(r, "name").ok_or_else(|| bad("recipient.name", "required"))?;
                let ra = r
                    .get("address")
                    .ok_or_else(|| bad("recipient.address", "required"))?;
                jstr(ra, "province")
                    .ok_or_else(|| bad("recipient.address.province", "required"))?;
                jstr(ra, "detail").ok_or_else(|| bad("recipient.address.detail", "required"))?;
            }
        }
        reqs.push(Req {
            object_id: object_id.to_string(),
            key,
            orders: list,
            template_url: template_url.to_string(),
            oaid,
        });
    }
    let encrypt = req_json
        .get("need_encrypt")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let mut modules = Vec::new();
    for r in reqs {
        let (code, print_data) = w.shop.issue_waybill(
            cp_code,
            &r.key,
            &r.object_id,
            &r.orders,
            ctx.now_ms,
            |code| print_data(cp_code, code, &r.template_url, r.oaid.as_deref(), encrypt),
        );
        let mut b = ObjBuilder::new();
        b.put("object_id", Out::str(r.object_id))
            .put("waybill_code", Out::str(code))
            .put("print_data", Out::str(print_data))
            .put("parent_waybill_code", Out::str(""))
            .put("cp_code", Out::str(cp_code))
            .put("real_cp_code", Out::str(cp_code));
        modules.push(b.build());
    }
    Ok(vec![(
        "modules".into(),
        Out::List("waybill_cloud_print_response", modules),
    )])
}

/// The opaque cloud-print document: a JSON string for the Cainiao print component. The
/// sandbox's holds no personal data at all.
fn print_data(
    cp_code: &str,
    waybill_code: &str,
    template_url: &str,
    oaid: Option<&str>,
    encrypt: bool,
) -> String {
    use md5::{Digest, Md5};
    let signature = hex::encode(Md5::digest(
        format!("{cp_code}|{waybill_code}|sandbox").as_bytes(),
    ));
    let doc = if encrypt {
        let blob = hex::encode(Md5::digest(format!("enc|{waybill_code}").as_bytes())).repeat(4);
        serde_json::json!({
            "encryptedData": blob,
            "signature": signature,
            "templateURL": template_url,
            "ver": "waybill_print_secret_version_1",
        })
    } else {
        serde_json::json!({
            "data": {
                "cpCode": cp_code,
                "waybillCode": waybill_code,
                "recipient": {"oaid": oaid.unwrap_or(""), "name": "测**", "mobile": "*******0000"},
                "routingInfo": {"sortation": {"name": "沙箱"}},
                "sandbox": true,
            },
            "signature": signature,
            "templateURL": template_url,
        })
    };
    doc.to_string()
}

/// `cainiao.waybill.ii.query.by.tradecode`: `param_list` = `[{object_id, biz_sub_code}]`
/// (1–20, `biz_sub_code` a trade id). One module per live waybill whose trade list names
/// the code (`waybill_cloud_print_response.object_id` is the id of the request that issued
/// it); a code with none answers one module with `success=false`.
fn waybill_query_by_tradecode(w: &mut World, p: &Params, _ctx: &Ctx) -> Result<Fields, TopError> {
    let raw = req(p, "param_list")?;
    let list: serde_json::Value =
        serde_json::from_str(raw).map_err(|_| bad("param_list", "not a JSON list"))?;
    let list = list
        .as_array()
        .ok_or_else(|| bad("param_list", "not a JSON list"))?;
    if list.is_empty() || list.len() > 20 {
        return Err(bad("param_list", "1 to 20 entries per call"));
    }
    let mut modules = Vec::new();
    for q in list {
        let object_id = jstr(q, "object_id")
            .ok_or_else(|| bad("param_list.object_id", "object_id is required"))?;
        let code = match q.get("biz_sub_code") {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(bad("param_list.biz_sub_code", "biz_sub_code is required")),
        };
        let found = w.shop.waybills_for_trade(&code);
        if found.is_empty() {
            let mut b = ObjBuilder::new();
            b.put("object_id", Out::str(object_id))
                .put("success", Out::bool(false))
                .put("error_code", Out::str("WAYBILL_NOT_EXIST"))
                .put("error_message", Out::str(format!("订单 {code} 没有面单")));
            modules.push(b.build());
        }
        for wb in found {
            let mut inner = ObjBuilder::new();
            inner
                .put("object_id", Out::str(wb.object_id.clone()))
                .put("waybill_code", Out::str(wb.waybill_code.clone()))
                .put("print_data", Out::str(wb.print_data.clone()))
                .put("parent_waybill_code", Out::str(""))
                .put("cp_code", Out::str(wb.cp_code.clone()))
                .put("real_cp_code", Out::str(wb.cp_code.clone()));
            let mut b = ObjBuilder::new();
            b.put("object_id", Out::str(object_id))
                .put("success", Out::bool(true))
                .put("waybill_cloud_print_response", inner.build());
            modules.push(b.build());
        }
    }
    Ok(vec![(
        "modules".into(),
        Out::List("waybill_cloud_print_with_result_desc_response", modules),
    )])
}

fn waybill_cancel(w: &mut World, p: &Params, _ctx: &Ctx) -> Result<Fields, TopError> {
    let cp_code = req(p, "cp_code")?;
    let waybill_code = req(p, "waybill_code")?;
    w.shop.cancel_waybill(cp_code, waybill_code)?;
    Ok(vec![("cancel_result".into(), Out::bool(true))])
}

// ---- OAuth through the gateway (TAOBAO.md §4.3) ----

fn token_result(issued: &crate::auth::Issued, ctx: &Ctx) -> Fields {
    let json = crate::oauth::token_json(issued, ctx.seller_id, ctx.seller_nick);
    vec![("token_result".into(), Out::str(json.to_string()))]
}

fn auth_token_create(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let code = req(p, "code")?;
    let life = w.settings.lifetimes();
    let issued = w
        .auth
        .exchange_code(code, ctx.app_key, None, ctx.now_ms, life)
        .map_err(|e| TopError::remote("isv.invalid-code", e.0))?;
    Ok(token_result(&issued, ctx))
}

fn auth_token_refresh(w: &mut World, p: &Params, ctx: &Ctx) -> Result<Fields, TopError> {
    let token = req(p, "refresh_token")?;
    let life = w.settings.lifetimes();
    let issued = w
        .auth
        .refresh(token, ctx.app_key, ctx.now_ms, life)
        .map_err(|e| TopError::remote("isv.invalid-refresh-token", e.0))?;
    Ok(token_result(&issued, ctx))
}
