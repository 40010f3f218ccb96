//! The seller's shop as Taobao holds it: items with SKUs and platform stock, trades with
//! sub-orders, refunds, shipments and Cainiao waybills.
//!
//! Pure state, no I/O: every operation takes the sandbox time (`now`, epoch seconds) and returns
//! either a result or an error value. Two error worlds meet here:
//!
//! * [`ShopError`] for the admin API (a test asked for something impossible: 400/404/409);
//! * [`TopError`] for the gateway (what Taobao would answer the client: B04, B60, CD…, stock
//!   sub-codes).
//!
//! Invariants:
//! * `modified` of a trade, item or refund strictly increases on every change
//!   (`max(now, previous + 1 s)`), so incremental pulls always see a change.
//! * Platform stock is taken when a trade is paid (or created already paid); never below 0.
//! * Money is integer fen internally and `"12.34"` strings on the wire.
//! * Receiver data is masked test data; only `oaid` identifies a receiver.

use std::collections::{BTreeMap, HashMap};

use crate::companies;
use crate::envelope::TopError;

/// Admin-side failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopError {
    /// The request is malformed or names impossible values (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The named item or trade does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
}

/// Every trade / order status of TAOBAO.md §6.3.
pub const TRADE_STATUSES: &[&str] = &[
    "TRADE_NO_CREATE_PAY",
    "WAIT_BUYER_PAY",
    "PAY_PENDING",
    "WAIT_PRE_AUTH_CONFIRM",
    "PAID_FORBID_CONSIGN",
    "WAIT_SELLER_SEND_GOODS",
    "SELLER_CONSIGNED_PART",
    "WAIT_BUYER_CONFIRM_GOODS",
    "TRADE_BUYER_SIGNED",
    "TRADE_FINISHED",
    "TRADE_CLOSED",
    "TRADE_CLOSED_BY_TAOBAO",
];

/// Statuses before payment.
pub const UNPAID: &[&str] = &[
    "TRADE_NO_CREATE_PAY",
    "WAIT_BUYER_PAY",
    "PAY_PENDING",
    "WAIT_PRE_AUTH_CONFIRM",
];

/// Statuses after the goods left (whole trade).
pub const SHIPPED: &[&str] = &[
    "WAIT_BUYER_CONFIRM_GOODS",
    "TRADE_BUYER_SIGNED",
    "TRADE_FINISHED",
];

/// Refund statuses (TAOBAO.md §6.9).
pub const REFUND_STATUSES: &[&str] = &[
    "WAIT_SELLER_AGREE",
    "WAIT_BUYER_RETURN_GOODS",
    "WAIT_SELLER_CONFIRM_GOODS",
    "SELLER_REFUSE_BUYER",
    "CLOSED",
    "SUCCESS",
];

/// Trade types returned when a query names no `type` (TAOBAO.md §6.1).
pub const DEFAULT_TYPES: &[&str] = &["guarantee_trade", "auto_delivery", "ec", "cod", "step"];

/// Formats fen as a two-decimal string.
pub fn money(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// Parses `"12.34"`, `"12.3"` or `"12"` into fen.
pub fn parse_money(text: &str) -> Option<i64> {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, f),
        None => (text, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = int.parse().ok()?;
    let cents: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    whole
        .checked_mul(100)?
        .checked_add(cents)
        .filter(|fen| *fen <= MAX_MONEY_FEN)
}

/// The largest amount the sandbox accepts (100,000,000.00 yuan): far above any real price,
/// and small enough that price × [`MAX_QUANTITY`], summed over a trade, cannot overflow.
pub const MAX_MONEY_FEN: i64 = 10_000_000_000;

/// The largest stock or line quantity Taobao accepts (`item.quantity.update`: 0–999999).
pub const MAX_QUANTITY: i64 = 999_999;

fn bump(modified: &mut i64, now: i64) {
    *modified = now.max(*modified + 1);
}

/// One SKU of an item.
#[derive(Debug, Clone)]
pub struct Sku {
    /// Platform SKU id.
    pub sku_id: i64,
    /// Merchant code (`outer_sku_id` on orders).
    pub outer_id: Option<String>,
    /// Platform stock.
    pub quantity: i64,
    /// Price in fen.
    pub price_fen: i64,
    /// `pid:vid;…`.
    pub properties: String,
    /// `pid:vid:颜色:红色;…`, also the order's `sku_properties_name` source.
    pub properties_name: String,
    /// Barcode, if any.
    pub barcode: Option<String>,
    /// Last change, epoch s.
    pub modified: i64,
    /// Successful quantity updates received through the gateway.
    pub quantity_updates: u64,
}

/// One listed item.
#[derive(Debug, Clone)]
pub struct Item {
    /// Platform item id.
    pub num_iid: i64,
    /// Title.
    pub title: String,
    /// Merchant code (`outer_iid` on orders).
    pub outer_id: Option<String>,
    /// Item-level stock; used only when the item has no SKUs.
    pub num: i64,
    /// Price in fen.
    pub price_fen: i64,
    /// Category id.
    pub cid: i64,
    /// SKUs (empty for a single-variant item).
    pub skus: Vec<Sku>,
    /// Pre-sale items accept only incremental stock updates.
    pub presale: bool,
    /// Deleted items answer `isv.item-is-delete`.
    pub deleted: bool,
    /// Listing time, epoch s.
    pub list_time: i64,
    /// Last change, epoch s.
    pub modified: i64,
    /// Units sold through sandbox trades.
    pub sold_quantity: i64,
    /// Successful quantity updates received through the gateway (item or SKU level).
    pub quantity_updates: u64,
}

impl Item {
    /// Platform stock of the item: the SKU sum when it has SKUs.
    pub fn total_num(&self) -> i64 {
        if self.skus.is_empty() {
            self.num
        } else {
            self.skus
                .iter()
                .fold(0i64, |sum, s| sum.saturating_add(s.quantity))
        }
    }
}

/// One sub-order (line) of a trade.
#[derive(Debug, Clone)]
pub struct Order {
    /// Sub-order id.
    pub oid: i64,
    /// Item id.
    pub num_iid: i64,
    /// SKU id, if the item has SKUs.
    pub sku_id: Option<i64>,
    /// Title at order time.
    pub title: String,
    /// Item merchant code.
    pub outer_iid: Option<String>,
    /// SKU merchant code.
    pub outer_sku_id: Option<String>,
    /// SKU description.
    pub sku_properties_name: Option<String>,
    /// Quantity.
    pub num: i64,
    /// Unit price, fen.
    pub price_fen: i64,
    /// Line status (trade status vocabulary).
    pub status: String,
    /// Line refund status (`NO_REFUND` or a refund status).
    pub refund_status: String,
    /// Current refund of the line.
    pub refund_id: Option<String>,
    /// Sold beyond platform stock.
    pub is_oversold: bool,
    /// When the line shipped.
    pub consign_time: Option<i64>,
    /// When the line ended (closed or finished).
    pub end_time: Option<i64>,
    /// Carrier name of the line's shipment.
    pub logistics_company: Option<String>,
    /// Tracking number of the line's shipment.
    pub invoice_no: Option<String>,
}

impl Order {
    fn shipped(&self) -> bool {
        SHIPPED.contains(&self.status.as_str())
    }
    fn closed(&self) -> bool {
        self.status == "TRADE_CLOSED" || self.status == "TRADE_CLOSED_BY_TAOBAO"
    }
}

/// The receiver: a region, and (only when a test sets them, to check that a client keeps
/// none of it) plain-text name, street address, mobile and phone. Left unset, the gateway
/// returns masked test data for those.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    /// Province.
    pub state: String,
    /// City.
    pub city: String,
    /// District.
    pub district: String,
    /// Plain-text name (tests of a client's privacy only).
    pub name: Option<String>,
    /// Plain-text street address (tests of a client's privacy only).
    pub address: Option<String>,
    /// Plain-text mobile (tests of a client's privacy only).
    pub mobile: Option<String>,
    /// Plain-text phone (tests of a client's privacy only).
    pub phone: Option<String>,
}

/// A trade (parent order).
#[derive(Debug, Clone)]
pub struct Trade {
    /// Trade id.
    pub tid: i64,
    /// Trade status.
    pub status: String,
    /// Trade type (`guarantee_trade`, `fenxiao`, …).
    pub trade_type: String,
    /// Buyer nick.
    pub buyer_nick: String,
    /// Created, epoch s.
    pub created: i64,
    /// Paid, epoch s.
    pub pay_time: Option<i64>,
    /// Last change, epoch s.
    pub modified: i64,
    /// First consignment, epoch s.
    pub consign_time: Option<i64>,
    /// Closed or finished, epoch s.
    pub end_time: Option<i64>,
    /// Postage, fen.
    pub post_fee_fen: i64,
    /// Buyer's message.
    pub buyer_message: Option<String>,
    /// Seller's memo.
    pub seller_memo: Option<String>,
    /// Seller flag 0–5.
    pub seller_flag: i64,
    /// Receiver id (same receiver + address ⇒ same oaid).
    pub oaid: String,
    /// Receiver region.
    pub receiver: Receiver,
    /// Pre-sale step status.
    pub step_trade_status: Option<String>,
    /// Shipped in several parcels.
    pub is_part_consign: bool,
    /// Lines.
    pub orders: Vec<Order>,
}

impl Trade {
    /// Goods total (price × num), fen.
    pub fn total_fee(&self) -> i64 {
        self.orders.iter().map(|o| o.price_fen * o.num).sum()
    }
    /// Amount paid including postage, fen.
    pub fn payment(&self) -> i64 {
        self.total_fee() + self.post_fee_fen
    }
    fn is_paid(&self) -> bool {
        self.pay_time.is_some()
    }
}

/// A refund on one line.
#[derive(Debug, Clone)]
pub struct Refund {
    /// Refund id (a string on the wire).
    pub refund_id: String,
    /// Trade.
    pub tid: i64,
    /// Line.
    pub oid: i64,
    /// Refund status.
    pub status: String,
    /// `BUYER_NOT_RECEIVED` / `BUYER_RECEIVED` / `BUYER_RETURNED_GOODS`.
    pub good_status: String,
    /// The buyer returns goods.
    pub has_good_return: bool,
    /// Amount refunded, fen.
    pub refund_fee_fen: i64,
    /// Reason text.
    pub reason: String,
    /// `onsale` (before shipping) or `aftersale`.
    pub refund_phase: String,
    /// Created, epoch s.
    pub created: i64,
    /// Last change, epoch s.
    pub modified: i64,
}

/// A consignment accepted by `logistics.offline.send`.
#[derive(Debug, Clone)]
pub struct Shipment {
    /// Trade.
    pub tid: i64,
    /// Tracking number.
    pub out_sid: String,
    /// Carrier code.
    pub company_code: String,
    /// Lines named in a split shipment (empty for a whole-trade send).
    pub sub_tids: Vec<i64>,
    /// When, epoch ms.
    pub at_ms: i64,
}

/// An AliGenius report (`taobao.rdc.aligenius.sendgoods.cancel`) the shop received.
#[derive(Debug, Clone)]
pub struct AgFeedback {
    /// Trade.
    pub tid: i64,
    /// Line.
    pub oid: i64,
    /// Refund.
    pub refund_id: String,
    /// Amount, fen.
    pub refund_fee: i64,
    /// `SUCCESS` or `FAIL`.
    pub status: String,
    /// As sent.
    pub operate_time: String,
    /// When received, epoch ms.
    pub at_ms: i64,
}

/// A Cainiao waybill issued by `cainiao.waybill.ii.get`.
#[derive(Debug, Clone)]
pub struct Waybill {
    /// Carrier.
    pub cp_code: String,
    /// Stable key inside the carrier: the package id (case-insensitive) or the order list.
    pub package_key: String,
    /// Tracking number.
    pub waybill_code: String,
    /// The caller's `object_id` of the first request.
    pub object_id: String,
    /// Trade ids named in `trade_order_list`.
    pub trade_order_list: Vec<String>,
    /// Cancelled with `cainiao.waybill.ii.cancel`.
    pub cancelled: bool,
    /// Used in a successful `logistics.offline.send`.
    pub consigned: bool,
    /// When issued, epoch ms.
    pub at_ms: i64,
    /// The cloud-print document returned with it (served again by the look-ups).
    pub print_data: String,
}

/// New item as the admin API describes it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// Item id.
    pub num_iid: i64,
    /// Title.
    pub title: String,
    /// Merchant code.
    #[serde(default)]
    pub outer_id: Option<String>,
    /// Item-level stock (only without SKUs).
    #[serde(default)]
    pub quantity: Option<i64>,
    /// Price, `"12.34"`.
    #[serde(default)]
    pub price: Option<String>,
    /// SKUs.
    #[serde(default)]
    pub skus: Vec<NewSku>,
    /// Pre-sale item (incremental stock updates only).
    #[serde(default)]
    pub presale: bool,
}

/// New SKU as the admin API describes it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSku {
    /// SKU id.
    pub sku_id: i64,
    /// Merchant code.
    #[serde(default)]
    pub outer_id: Option<String>,
    /// Stock.
    #[serde(default)]
    pub quantity: i64,
    /// Price, `"12.34"` (defaults to the item's).
    #[serde(default)]
    pub price: Option<String>,
    /// e.g. `颜色:红色;尺码:XL`.
    #[serde(default)]
    pub properties_name: Option<String>,
    /// Barcode.
    #[serde(default)]
    pub barcode: Option<String>,
}

/// New trade as the admin API describes it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTrade {
    /// Explicit tid (default: the next generated one).
    #[serde(default)]
    pub tid: Option<i64>,
    /// Buyer nick (default: a generated masked nick).
    #[serde(default)]
    pub buyer_nick: Option<String>,
    /// Initial status (default `WAIT_SELLER_SEND_GOODS`).
    #[serde(default)]
    pub status: Option<String>,
    /// Trade type (default `guarantee_trade`).
    #[serde(default, rename = "type")]
    pub trade_type: Option<String>,
    /// Receiver id (default: derived from the tid, i.e. unique).
    #[serde(default)]
    pub oaid: Option<String>,
    /// Postage, `"8.00"`.
    #[serde(default)]
    pub post_fee: Option<String>,
    /// Buyer's message.
    #[serde(default)]
    pub buyer_message: Option<String>,
    /// Seller memo.
    #[serde(default)]
    pub seller_memo: Option<String>,
    /// Seller flag 0–5.
    #[serde(default)]
    pub seller_flag: Option<i64>,
    /// Pre-sale step status.
    #[serde(default)]
    pub step_trade_status: Option<String>,
    /// Province / city / district of the (masked) receiver.
    #[serde(default)]
    pub receiver_state: Option<String>,
    /// City.
    #[serde(default)]
    pub receiver_city: Option<String>,
    /// District.
    #[serde(default)]
    pub receiver_district: Option<String>,
    /// Plain-text receiver name, returned as is (to test that a client does not keep it;
    /// Taobao sends it masked or encrypted).
    #[serde(default)]
    pub receiver_name: Option<String>,
    /// Plain-text street address, returned as is (privacy tests).
    #[serde(default)]
    pub receiver_address: Option<String>,
    /// Plain-text mobile, returned as is (privacy tests).
    #[serde(default)]
    pub receiver_mobile: Option<String>,
    /// Plain-text phone, returned as is (privacy tests).
    #[serde(default)]
    pub receiver_phone: Option<String>,
    /// Sell even when platform stock is short (lines get `is_oversold`).
    #[serde(default)]
    pub allow_oversell: bool,
    /// Lines.
    pub orders: Vec<NewOrder>,
}

/// New line as the admin API describes it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Item.
    pub num_iid: i64,
    /// SKU (required when the item has SKUs).
    #[serde(default)]
    pub sku_id: Option<i64>,
    /// Quantity ≥ 1.
    pub num: i64,
}

/// Admin changes to a trade (`PATCH /sandbox/trades/{tid}`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradePatch {
    /// New seller memo.
    #[serde(default)]
    pub seller_memo: Option<String>,
    /// New seller flag.
    #[serde(default)]
    pub seller_flag: Option<i64>,
    /// New buyer message.
    #[serde(default)]
    pub buyer_message: Option<String>,
    /// New receiver id (an address change).
    #[serde(default)]
    pub oaid: Option<String>,
    /// New status (applied to the trade and every open line; stock untouched).
    #[serde(default)]
    pub status: Option<String>,
    /// New step status.
    #[serde(default)]
    pub step_trade_status: Option<String>,
}

/// A refund request from the admin API.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// The line; all open lines when absent.
    #[serde(default)]
    pub oid: Option<i64>,
    /// Refund status to set (default `WAIT_SELLER_AGREE`).
    #[serde(default)]
    pub status: Option<String>,
    /// Reason text.
    #[serde(default)]
    pub reason: Option<String>,
    /// Goods status.
    #[serde(default)]
    pub good_status: Option<String>,
    /// Buyer returns the goods.
    #[serde(default)]
    pub has_good_return: Option<bool>,
}

/// Result of a quantity update: the item and the SKUs touched.
#[derive(Debug, Clone)]
pub struct QuantityResult {
    /// Item id.
    pub num_iid: i64,
    /// Item stock after the update.
    pub num: i64,
    /// Item `modified`.
    pub modified: i64,
    /// `(sku_id, quantity, modified)` of each SKU touched.
    pub skus: Vec<(i64, i64, i64)>,
}

/// Stock update mode (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockMode {
    /// `type=1`: set the quantity.
    Full,
    /// `type=2`: add a (possibly negative) delta, floored at 0.
    Incremental,
}

/// How a quantity update names its SKUs.
#[derive(Debug, Clone)]
pub enum SkuTarget {
    /// Item-level stock.
    Item,
    /// By SKU id.
    SkuId(i64),
    /// By merchant code (every SKU sharing it).
    OuterId(String),
}

const TID_BASE: i64 = 2_701_234_567_890_000_000;

/// The shop.
#[derive(Debug, Default)]
pub struct Shop {
    /// Items by id.
    pub items: BTreeMap<i64, Item>,
    /// Trades by id.
    pub trades: BTreeMap<i64, Trade>,
    /// Refunds by id.
    pub refunds: BTreeMap<String, Refund>,
    /// Accepted consignments, in order.
    pub shipments: Vec<Shipment>,
    /// Issued waybills, in order.
    pub waybills: Vec<Waybill>,
    /// AliGenius reports received, in order.
    pub feedback: Vec<AgFeedback>,
    next_trade: i64,
    next_refund: i64,
    waybill_seq: HashMap<String, u64>,
}

fn err_stock(msg: String) -> ShopError {
    ShopError::Conflict(msg)
}

fn b_err(code: &str, msg: &str) -> TopError {
    TopError::remote(format!("isv.logistics-offline-service-error:{code}"), msg)
}

fn item_not_exist() -> TopError {
    TopError::remote("isv.item-not-exist:invalid-numIid-or-iid", "商品不存在")
}

fn sku_not_found() -> TopError {
    TopError::remote("isv.invalid-parameter:sku-properties", "没有找到对应的SKU")
}

impl Shop {
    /// Adds an item.
    pub fn create_item(&mut self, new: NewItem, now: i64) -> Result<&Item, ShopError> {
        if self.items.contains_key(&new.num_iid) {
            return Err(ShopError::Conflict(format!(
                "item {} already exists",
                new.num_iid
            )));
        }
        if new.num_iid <= 0 {
            return Err(ShopError::Invalid(
                "num_iid must be a positive number".into(),
            ));
        }
        if new.title.trim().is_empty() {
            return Err(ShopError::Invalid("title must not be empty".into()));
        }
        let price_fen = match &new.price {
            Some(p) => parse_money(p).ok_or_else(|| {
                ShopError::Invalid(format!("price {p:?} is not a decimal like \"12.34\""))
            })?,
            None => 9_900,
        };
        if !new.skus.is_empty() && new.quantity.is_some() {
            return Err(ShopError::Invalid(
                "quantity is item-level stock; an item with skus takes quantities per SKU".into(),
            ));
        }
        let num = new.quantity.unwrap_or(0);
        if !(0..=MAX_QUANTITY).contains(&num) {
            return Err(ShopError::Invalid(format!(
                "quantity must be 0..={MAX_QUANTITY}"
            )));
        }
        let mut skus = Vec::new();
        for (i, s) in new.skus.into_iter().enumerate() {
            if s.sku_id <= 0 {
                return Err(ShopError::Invalid(
                    "sku_id must be a positive number".into(),
                ));
            }
            if !(0..=MAX_QUANTITY).contains(&s.quantity) {
                return Err(ShopError::Invalid(format!(
                    "sku {} quantity must be 0..={MAX_QUANTITY}",
                    s.sku_id
                )));
            }
            let taken = skus.iter().any(|x: &Sku| x.sku_id == s.sku_id)
                || self
                    .items
                    .values()
                    .any(|it| it.skus.iter().any(|x| x.sku_id == s.sku_id));
            if taken {
                return Err(ShopError::Conflict(format!(
                    "sku_id {} already exists",
                    s.sku_id
                )));
            }
            let sku_price = match &s.price {
                Some(p) => parse_money(p).ok_or_else(|| {
                    ShopError::Invalid(format!("sku price {p:?} is not a decimal"))
                })?,
                None => price_fen,
            };
            let name = s
                .properties_name
                .clone()
                .unwrap_or_else(|| format!("规格:{}", i + 1));
            skus.push(Sku {
                sku_id: s.sku_id,
                outer_id: s.outer_id.filter(|o| !o.is_empty()),
                quantity: s.quantity,
                price_fen: sku_price,
                properties: format!("1627207:{}", 1000 + i),
                properties_name: name,
                barcode: s.barcode,
                modified: now,
                quantity_updates: 0,
            });
        }
        let item = Item {
            num_iid: new.num_iid,
            title: new.title,
            outer_id: new.outer_id.filter(|o| !o.is_empty()),
            num,
            price_fen,
            cid: 50_000_671,
            skus,
            presale: new.presale,
            deleted: false,
            list_time: now,
            modified: now,
            sold_quantity: 0,
            quantity_updates: 0,
        };
        let id = item.num_iid;
        self.items.insert(id, item);
        self.items
            .get(&id)
            .ok_or_else(|| ShopError::NotFound("item vanished".into()))
    }

    /// Marks an item deleted.
    pub fn delete_item(&mut self, num_iid: i64, now: i64) -> Result<(), ShopError> {
        let item = self
            .items
            .get_mut(&num_iid)
            .ok_or_else(|| ShopError::NotFound(format!("no item {num_iid}")))?;
        item.deleted = true;
        bump(&mut item.modified, now);
        Ok(())
    }

    fn next_tid(&mut self) -> i64 {
        loop {
            self.next_trade += 1;
            let tid = TID_BASE + self.next_trade * 1000;
            if !self.trades.contains_key(&tid) {
                return tid;
            }
        }
    }

    fn next_refund_id(&mut self) -> String {
        self.next_refund += 1;
        format!("{}", 180_000_000_000_000_000i64 + self.next_refund)
    }

    /// Creates a trade; takes platform stock when it is created paid.
    pub fn create_trade(&mut self, new: NewTrade, now: i64) -> Result<&Trade, ShopError> {
        let status = new
            .status
            .clone()
            .unwrap_or_else(|| "WAIT_SELLER_SEND_GOODS".into());
        if !TRADE_STATUSES.contains(&status.as_str()) {
            return Err(ShopError::Invalid(format!(
                "unknown trade status {status:?}"
            )));
        }
        if new.orders.is_empty() || new.orders.len() > 50 {
            return Err(ShopError::Invalid("a trade needs 1 to 50 orders".into()));
        }
        if let Some(f) = new.seller_flag
            && !(0..=5).contains(&f)
        {
            return Err(ShopError::Invalid("seller_flag must be 0..=5".into()));
        }
        let post_fee_fen = match &new.post_fee {
            Some(p) => parse_money(p)
                .ok_or_else(|| ShopError::Invalid(format!("post_fee {p:?} is not a decimal")))?,
            None => 0,
        };
        let tid = match new.tid {
            Some(t) if t <= 0 => return Err(ShopError::Invalid("tid must be positive".into())),
            Some(t) if self.trades.contains_key(&t) => {
                return Err(ShopError::Conflict(format!("trade {t} already exists")));
            }
            Some(t) => t,
            None => self.next_tid(),
        };
        let mut orders = Vec::new();
        for (i, o) in new.orders.iter().enumerate() {
            if !(1..=MAX_QUANTITY).contains(&o.num) {
                return Err(ShopError::Invalid(format!(
                    "num must be 1..={MAX_QUANTITY}"
                )));
            }
            let item = self
                .items
                .get(&o.num_iid)
                .filter(|it| !it.deleted)
                .ok_or_else(|| ShopError::Invalid(format!("no item {}", o.num_iid)))?;
            let (sku_id, outer_sku_id, props, price_fen) = match (item.skus.is_empty(), o.sku_id) {
                (true, None) => (None, None, None, item.price_fen),
                (true, Some(s)) => {
                    return Err(ShopError::Invalid(format!(
                        "item {} has no SKU {s}",
                        o.num_iid
                    )));
                }
                (false, None) => {
                    return Err(ShopError::Invalid(format!(
                        "item {} has SKUs; sku_id is required",
                        o.num_iid
                    )));
                }
                (false, Some(s)) => {
                    let sku = item.skus.iter().find(|x| x.sku_id == s).ok_or_else(|| {
                        ShopError::Invalid(format!("item {} has no SKU {s}", o.num_iid))
                    })?;
                    (
                        Some(s),
                        sku.outer_id.clone(),
                        Some(sku.properties_name.clone()),
                        sku.price_fen,
                    )
                }
            };
            orders.push(Order {
                oid: tid + 1 + i as i64,
                num_iid: o.num_iid,
                sku_id,
                title: item.title.clone(),
                outer_iid: item.outer_id.clone(),
                outer_sku_id,
                sku_properties_name: props,
                num: o.num,
                price_fen,
                status: status.clone(),
                refund_status: "NO_REFUND".into(),
                refund_id: None,
                is_oversold: false,
                consign_time: None,
                end_time: None,
                logistics_company: None,
                invoice_no: None,
            });
        }
        let paid = !UNPAID.contains(&status.as_str()) && status != "TRADE_CLOSED_BY_TAOBAO";
        let seq = self.next_trade;
        let mut trade = Trade {
            tid,
            status: status.clone(),
            trade_type: new.trade_type.unwrap_or_else(|| "guarantee_trade".into()),
            buyer_nick: new
                .buyer_nick
                .unwrap_or_else(|| format!("t**{}", seq % 1000)),
            created: now,
            pay_time: None,
            modified: now,
            consign_time: None,
            end_time: None,
            post_fee_fen,
            buyer_message: new.buyer_message,
            seller_memo: new.seller_memo,
            seller_flag: new.seller_flag.unwrap_or(0),
            oaid: new.oaid.unwrap_or_else(|| derive_oaid(tid)),
            receiver: Receiver {
                state: new.receiver_state.unwrap_or_else(|| "浙江省".into()),
                city: new.receiver_city.unwrap_or_else(|| "杭州市".into()),
                district: new.receiver_district.unwrap_or_else(|| "余杭区".into()),
                name: new.receiver_name,
                address: new.receiver_address,
                mobile: new.receiver_mobile,
                phone: new.receiver_phone,
            },
            step_trade_status: new.step_trade_status,
            is_part_consign: false,
            orders,
        };
        if paid {
            self.take_stock(&mut trade, new.allow_oversell, now)?;
            trade.pay_time = Some(now);
        }
        if SHIPPED.contains(&status.as_str()) {
            trade.consign_time = Some(now);
            for o in &mut trade.orders {
                o.consign_time = Some(now);
            }
        }
        if status == "TRADE_CLOSED"
            || status == "TRADE_CLOSED_BY_TAOBAO"
            || status == "TRADE_FINISHED"
        {
            trade.end_time = Some(now);
        }
        self.trades.insert(tid, trade);
        self.trades
            .get(&tid)
            .ok_or_else(|| ShopError::NotFound("trade vanished".into()))
    }

    /// Takes platform stock for every line, atomically; refuses when short unless `oversell`.
    fn take_stock(&mut self, trade: &mut Trade, oversell: bool, now: i64) -> Result<(), ShopError> {
        // Demand per (item, sku) first, so that two lines of one SKU are checked together.
        let mut demand: BTreeMap<(i64, Option<i64>), i64> = BTreeMap::new();
        for o in &trade.orders {
            *demand.entry((o.num_iid, o.sku_id)).or_default() += o.num;
        }
        let mut short = Vec::new();
        for ((num_iid, sku_id), want) in &demand {
            let have = self.stock_of(*num_iid, *sku_id).unwrap_or(0);
            if have < *want {
                short.push((*num_iid, *sku_id, have, *want));
            }
        }
        if !short.is_empty() && !oversell {
            let (i, s, have, want) = short[0];
            return Err(err_stock(format!(
                "insufficient platform stock for item {i}{}: {have} available, {want} ordered",
                s.map(|s| format!(" sku {s}")).unwrap_or_default()
            )));
        }
        for o in &mut trade.orders {
            if short
                .iter()
                .any(|(i, s, _, _)| *i == o.num_iid && *s == o.sku_id)
            {
                o.is_oversold = true;
            }
        }
        for ((num_iid, sku_id), want) in demand {
            if let Some(item) = self.items.get_mut(&num_iid) {
                match sku_id {
                    Some(sid) => {
                        if let Some(sku) = item.skus.iter_mut().find(|s| s.sku_id == sid) {
                            sku.quantity = (sku.quantity - want).max(0);
                            bump(&mut sku.modified, now);
                        }
                    }
                    None => item.num = (item.num - want).max(0),
                }
                item.sold_quantity += want;
                bump(&mut item.modified, now);
            }
        }
        Ok(())
    }

    fn stock_of(&self, num_iid: i64, sku_id: Option<i64>) -> Option<i64> {
        let item = self.items.get(&num_iid)?;
        match sku_id {
            Some(s) => item.skus.iter().find(|x| x.sku_id == s).map(|x| x.quantity),
            None => Some(item.num),
        }
    }

    fn trade_mut(&mut self, tid: i64) -> Result<&mut Trade, ShopError> {
        self.trades
            .get_mut(&tid)
            .ok_or_else(|| ShopError::NotFound(format!("no trade {tid}")))
    }

    /// Buyer pays: `WAIT_BUYER_PAY` (or another unpaid status) → `WAIT_SELLER_SEND_GOODS`.
    pub fn pay(&mut self, tid: i64, now: i64) -> Result<(), ShopError> {
        let mut trade = self.trade_mut(tid)?.clone();
        if !UNPAID.contains(&trade.status.as_str()) {
            return Err(ShopError::Conflict(format!(
                "trade {tid} is {}, not awaiting payment",
                trade.status
            )));
        }
        self.take_stock(&mut trade, false, now)?;
        trade.status = "WAIT_SELLER_SEND_GOODS".into();
        trade.pay_time = Some(now);
        for o in &mut trade.orders {
            o.status = "WAIT_SELLER_SEND_GOODS".into();
        }
        bump(&mut trade.modified, now);
        self.trades.insert(tid, trade);
        Ok(())
    }

    /// Opens or moves refunds on one line or on every open line.
    pub fn refund(
        &mut self,
        tid: i64,
        req: RefundRequest,
        now: i64,
    ) -> Result<Vec<String>, ShopError> {
        let status = req
            .status
            .clone()
            .unwrap_or_else(|| "WAIT_SELLER_AGREE".into());
        if !REFUND_STATUSES.contains(&status.as_str()) {
            return Err(ShopError::Invalid(format!(
                "unknown refund status {status:?}"
            )));
        }
        if let Some(g) = &req.good_status
            && ![
                "BUYER_NOT_RECEIVED",
                "BUYER_RECEIVED",
                "BUYER_RETURNED_GOODS",
            ]
            .contains(&g.as_str())
        {
            return Err(ShopError::Invalid(format!("unknown good_status {g:?}")));
        }
        let trade = self.trade_mut(tid)?.clone();
        if !trade.is_paid() {
            return Err(ShopError::Conflict(format!(
                "trade {tid} is not paid; nothing to refund"
            )));
        }
        let targets: Vec<i64> = match req.oid {
            Some(oid) => {
                let o = trade.orders.iter().find(|o| o.oid == oid).ok_or_else(|| {
                    ShopError::NotFound(format!("trade {tid} has no order {oid}"))
                })?;
                if o.refund_status == "SUCCESS" {
                    return Err(ShopError::Conflict(format!(
                        "order {oid} is already refunded"
                    )));
                }
                vec![oid]
            }
            None => trade
                .orders
                .iter()
                .filter(|o| o.refund_status != "SUCCESS" && !o.closed())
                .map(|o| o.oid)
                .collect(),
        };
        if targets.is_empty() {
            return Err(ShopError::Conflict(format!(
                "trade {tid} has no line left to refund"
            )));
        }
        let mut ids = Vec::new();
        for oid in targets {
            ids.push(self.set_refund(tid, oid, &status, &req, now)?);
        }
        self.settle_trade(tid, now);
        Ok(ids)
    }

    fn set_refund(
        &mut self,
        tid: i64,
        oid: i64,
        status: &str,
        req: &RefundRequest,
        now: i64,
    ) -> Result<String, ShopError> {
        let existing = self
            .trades
            .get(&tid)
            .and_then(|t| t.orders.iter().find(|o| o.oid == oid))
            .and_then(|o| o.refund_id.clone());
        let id = match existing {
            Some(id) if self.refunds.get(&id).is_some_and(|r| r.status != "SUCCESS") => id,
            _ => self.next_refund_id(),
        };
        let trade = self.trade_mut(tid)?;
        let order = trade
            .orders
            .iter_mut()
            .find(|o| o.oid == oid)
            .ok_or_else(|| ShopError::NotFound(format!("no order {oid}")))?;
        let phase = if order.shipped() {
            "aftersale"
        } else {
            "onsale"
        };
        let fee = order.price_fen * order.num;
        order.refund_status = status.to_string();
        order.refund_id = Some(id.clone());
        if status == "SUCCESS" {
            order.status = "TRADE_CLOSED".into();
            order.end_time = Some(now);
        }
        bump(&mut trade.modified, now);
        let good_default = if phase == "onsale" {
            "BUYER_NOT_RECEIVED"
        } else {
            "BUYER_RECEIVED"
        };
        let refund = self.refunds.entry(id.clone()).or_insert_with(|| Refund {
            refund_id: id.clone(),
            tid,
            oid,
            status: status.to_string(),
            good_status: good_default.to_string(),
            has_good_return: false,
            refund_fee_fen: fee,
            reason: "不想要了".into(),
            refund_phase: phase.into(),
            created: now,
            modified: now - 1,
        });
        refund.status = status.to_string();
        if let Some(g) = &req.good_status {
            refund.good_status = g.clone();
        }
        if let Some(h) = req.has_good_return {
            refund.has_good_return = h;
        }
        if let Some(r) = &req.reason {
            refund.reason = r.clone();
        }
        bump(&mut refund.modified, now);
        Ok(id)
    }

    /// Recomputes the trade status from its lines after a refund or a shipment.
    fn settle_trade(&mut self, tid: i64, now: i64) {
        let Some(trade) = self.trades.get_mut(&tid) else {
            return;
        };
        let open: Vec<&Order> = trade.orders.iter().filter(|o| !o.closed()).collect();
        let before = trade.status.clone();
        if open.is_empty() {
            trade.status = "TRADE_CLOSED".into();
            trade.end_time = Some(now);
        } else if open.iter().all(|o| o.shipped()) {
            if !SHIPPED.contains(&trade.status.as_str()) {
                trade.status = "WAIT_BUYER_CONFIRM_GOODS".into();
            }
        } else if open.iter().any(|o| o.shipped()) {
            trade.status = "SELLER_CONSIGNED_PART".into();
        }
        if trade.status != before {
            bump(&mut trade.modified, now);
        }
    }

    /// Closes a trade: before payment `TRADE_CLOSED_BY_TAOBAO`; after payment `TRADE_CLOSED`
    /// with every line refunded.
    pub fn close(&mut self, tid: i64, now: i64) -> Result<(), ShopError> {
        let trade = self.trade_mut(tid)?;
        let st = trade.status.clone();
        if st == "TRADE_CLOSED" || st == "TRADE_CLOSED_BY_TAOBAO" {
            return Err(ShopError::Conflict(format!(
                "trade {tid} is already closed"
            )));
        }
        if SHIPPED.contains(&st.as_str()) || st == "SELLER_CONSIGNED_PART" {
            return Err(ShopError::Conflict(format!(
                "trade {tid} is {st}: goods left already; refund lines instead"
            )));
        }
        if UNPAID.contains(&st.as_str()) {
            trade.status = "TRADE_CLOSED_BY_TAOBAO".into();
            trade.end_time = Some(now);
            for o in &mut trade.orders {
                o.status = "TRADE_CLOSED_BY_TAOBAO".into();
                o.end_time = Some(now);
            }
            bump(&mut trade.modified, now);
            return Ok(());
        }
        let oids: Vec<i64> = trade
            .orders
            .iter()
            .filter(|o| o.refund_status != "SUCCESS")
            .map(|o| o.oid)
            .collect();
        let req = RefundRequest::default();
        for oid in oids {
            self.set_refund(tid, oid, "SUCCESS", &req, now)?;
        }
        self.settle_trade(tid, now);
        Ok(())
    }

    /// Applies an admin patch.
    pub fn patch(&mut self, tid: i64, p: TradePatch, now: i64) -> Result<(), ShopError> {
        if let Some(s) = &p.status
            && !TRADE_STATUSES.contains(&s.as_str())
        {
            return Err(ShopError::Invalid(format!("unknown trade status {s:?}")));
        }
        if let Some(f) = p.seller_flag
            && !(0..=5).contains(&f)
        {
            return Err(ShopError::Invalid("seller_flag must be 0..=5".into()));
        }
        let trade = self.trade_mut(tid)?;
        if let Some(m) = p.seller_memo {
            trade.seller_memo = Some(m);
        }
        if let Some(f) = p.seller_flag {
            trade.seller_flag = f;
        }
        if let Some(m) = p.buyer_message {
            trade.buyer_message = Some(m);
        }
        if let Some(o) = p.oaid {
            trade.oaid = o;
        }
        if let Some(s) = p.step_trade_status {
            trade.step_trade_status = Some(s);
        }
        if let Some(s) = p.status {
            for o in trade.orders.iter_mut().filter(|o| !o.closed()) {
                o.status = s.clone();
            }
            if !UNPAID.contains(&s.as_str())
                && s != "TRADE_CLOSED_BY_TAOBAO"
                && trade.pay_time.is_none()
            {
                trade.pay_time = Some(now);
            }
            trade.status = s;
        }
        bump(&mut trade.modified, now);
        Ok(())
    }

    /// `taobao.logistics.offline.send`. `split` is `Some(sub_tids)` for `is_split=1`.
    pub fn offline_send(
        &mut self,
        tid: i64,
        out_sid: &str,
        company_code: &str,
        split: Option<&[i64]>,
        now_ms: i64,
    ) -> Result<(), TopError> {
        let now = now_ms.div_euclid(1000);
        let trade = self
            .trades
            .get(&tid)
            .ok_or_else(|| b_err("B01", "订单不存在"))?;
        let st = trade.status.as_str();
        if SHIPPED.contains(&st) || st == "TRADE_CLOSED" || st == "TRADE_CLOSED_BY_TAOBAO" {
            return Err(b_err(
                "B04",
                "订单状态不对该物流订单已经发货或者已关闭，不能重复发货",
            ));
        }
        if st != "WAIT_SELLER_SEND_GOODS" && st != "SELLER_CONSIGNED_PART" {
            return Err(b_err("B02", "订单状态不允许发货"));
        }
        let company =
            companies::by_code(company_code).ok_or_else(|| b_err("B56", "物流公司不存在"))?;
        let cancelled = self
            .waybills
            .iter()
            .any(|w| w.cancelled && w.waybill_code == out_sid && w.cp_code == company_code);
        if !companies::out_sid_valid(company_code, out_sid) || cancelled {
            return Err(b_err("B60", "运单号不符合规则或已经被使用"));
        }
        let lines: Vec<i64> = match split {
            Some(sub) => {
                for oid in sub {
                    if !trade.orders.iter().any(|o| o.oid == *oid) {
                        return Err(b_err("CD24", "拆单发货的子订单不属于该订单"));
                    }
                }
                let named: Vec<&Order> = trade
                    .orders
                    .iter()
                    .filter(|o| sub.contains(&o.oid))
                    .collect();
                if named.iter().any(|o| o.closed()) {
                    return Err(b_err("CD27", "子订单已关闭，不能发货"));
                }
                let shipped = named.iter().filter(|o| o.shipped()).count();
                if shipped == named.len() {
                    return Err(b_err(
                        "B04",
                        "订单状态不对该物流订单已经发货或者已关闭，不能重复发货",
                    ));
                }
                if shipped > 0 {
                    return Err(b_err("CD26", "部分子订单已发货"));
                }
                sub.to_vec()
            }
            None => trade
                .orders
                .iter()
                .filter(|o| !o.closed() && !o.shipped())
                .map(|o| o.oid)
                .collect(),
        };
        let company_name = company.name.to_string();
        let trade = self
            .trades
            .get_mut(&tid)
            .ok_or_else(|| b_err("B01", "订单不存在"))?;
        for o in trade.orders.iter_mut().filter(|o| lines.contains(&o.oid)) {
            o.status = "WAIT_BUYER_CONFIRM_GOODS".into();
            o.consign_time = Some(now);
            o.invoice_no = Some(out_sid.to_string());
            o.logistics_company = Some(company_name.clone());
        }
        if trade.consign_time.is_none() {
            trade.consign_time = Some(now);
        }
        if split.is_some() {
            trade.is_part_consign = true;
        }
        bump(&mut trade.modified, now);
        self.settle_trade(tid, now);
        for w in self
            .waybills
            .iter_mut()
            .filter(|w| w.waybill_code == out_sid && w.cp_code == company_code)
        {
            w.consigned = true;
        }
        self.shipments.push(Shipment {
            tid,
            out_sid: out_sid.to_string(),
            company_code: company_code.to_string(),
            sub_tids: split.map(<[i64]>::to_vec).unwrap_or_default(),
            at_ms: now_ms,
        });
        Ok(())
    }

    fn item_for_update(&mut self, num_iid: i64) -> Result<&mut Item, TopError> {
        let item = self.items.get_mut(&num_iid).ok_or_else(item_not_exist)?;
        if item.deleted {
            return Err(TopError::remote(
                "isv.item-is-delete:invalid-numIid-or-iid",
                "商品已删除",
            ));
        }
        Ok(item)
    }

    /// `taobao.item.quantity.update`.
    pub fn update_quantity(
        &mut self,
        num_iid: i64,
        target: SkuTarget,
        quantity: i64,
        mode: StockMode,
        now: i64,
    ) -> Result<QuantityResult, TopError> {
        let item = self.item_for_update(num_iid)?;
        check_mode(item, mode)?;
        if mode == StockMode::Full && quantity < 0 {
            return Err(TopError::invalid("quantity", "全量更新时库存不能为负数"));
        }
        if !(-MAX_QUANTITY..=MAX_QUANTITY).contains(&quantity) {
            return Err(TopError::invalid("quantity", "库存数量超出范围"));
        }
        let idx: Vec<usize> = match &target {
            SkuTarget::Item => {
                if !item.skus.is_empty() {
                    return Err(TopError::remote(
                        "isv.item-quantity-item-update-service-error",
                        "该商品有SKU，请指定SKU更新库存",
                    ));
                }
                Vec::new()
            }
            SkuTarget::SkuId(s) => {
                let i = item
                    .skus
                    .iter()
                    .position(|x| x.sku_id == *s)
                    .ok_or_else(sku_not_found)?;
                vec![i]
            }
            SkuTarget::OuterId(o) => {
                let v: Vec<usize> = item
                    .skus
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| x.outer_id.as_deref() == Some(o.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                if v.is_empty() {
                    return Err(sku_not_found());
                }
                v
            }
        };
        let apply = |cur: i64| match mode {
            StockMode::Full => quantity,
            StockMode::Incremental => (cur.saturating_add(quantity)).max(0),
        };
        let mut touched = Vec::new();
        if idx.is_empty() {
            item.num = apply(item.num);
        } else {
            for i in idx {
                let sku = &mut item.skus[i];
                sku.quantity = apply(sku.quantity);
                bump(&mut sku.modified, now);
                sku.quantity_updates += 1;
                touched.push((sku.sku_id, sku.quantity, sku.modified));
            }
        }
        item.quantity_updates += 1;
        bump(&mut item.modified, now);
        Ok(QuantityResult {
            num_iid,
            num: item.total_num(),
            modified: item.modified,
            skus: touched,
        })
    }

    /// `taobao.skus.quantity.update`: every named SKU or none.
    pub fn update_skus(
        &mut self,
        num_iid: i64,
        by_sku_id: bool,
        entries: &[(String, i64)],
        mode: StockMode,
        now: i64,
    ) -> Result<QuantityResult, TopError> {
        let item = self.item_for_update(num_iid)?;
        check_mode(item, mode)?;
        if mode == StockMode::Full && entries.iter().any(|(_, q)| *q < 0) {
            return Err(TopError::invalid("quantity", "全量更新时库存不能为负数"));
        }
        if entries
            .iter()
            .any(|(_, q)| !(-MAX_QUANTITY..=MAX_QUANTITY).contains(q))
        {
            return Err(TopError::invalid("quantity", "库存数量超出范围"));
        }
        // Resolve every entry before changing anything.
        let mut plan: Vec<(usize, i64)> = Vec::new();
        for (key, q) in entries {
            let matches: Vec<usize> = item
                .skus
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    if by_sku_id {
                        s.sku_id.to_string() == *key
                    } else {
                        s.outer_id.as_deref() == Some(key.as_str())
                    }
                })
                .map(|(i, _)| i)
                .collect();
            if matches.is_empty() {
                return Err(sku_not_found());
            }
            plan.extend(matches.into_iter().map(|i| (i, *q)));
        }
        let mut touched = Vec::new();
        for (i, q) in plan {
            let sku = &mut item.skus[i];
            sku.quantity = match mode {
                StockMode::Full => q,
                StockMode::Incremental => sku.quantity.saturating_add(q).max(0),
            };
            bump(&mut sku.modified, now);
            sku.quantity_updates += 1;
            touched.push((sku.sku_id, sku.quantity, sku.modified));
        }
        item.quantity_updates += 1;
        bump(&mut item.modified, now);
        Ok(QuantityResult {
            num_iid,
            num: item.total_num(),
            modified: item.modified,
            skus: touched,
        })
    }

    /// Issues (or re-issues the same) waybill number for `(cp_code, package_key)`.
    /// Issues (or re-issues the same) waybill number for `(cp_code, package_key)`; the print
    /// document is made by `print_data` from the number when it is new. Returns the number
    /// and its document.
    pub fn issue_waybill(
        &mut self,
        cp_code: &str,
        package_key: &str,
        object_id: &str,
        trade_order_list: &[String],
        now_ms: i64,
        print_data: impl FnOnce(&str) -> String,
    ) -> (String, String) {
        if let Some(w) = self
            .waybills
            .iter()
            .find(|w| w.cp_code == cp_code && w.package_key == package_key && !w.cancelled)
        {
            return (w.waybill_code.clone(), w.print_data.clone());
        }
        let seq = self.waybill_seq.entry(cp_code.to_string()).or_insert(0);
        *seq += 1;
        let code = companies::waybill_number(cp_code, *seq);
        let doc = print_data(&code);
        self.waybills.push(Waybill {
            cp_code: cp_code.to_string(),
            package_key: package_key.to_string(),
            waybill_code: code.clone(),
            object_id: object_id.to_string(),
            trade_order_list: trade_order_list.to_vec(),
            cancelled: false,
            consigned: false,
            at_ms: now_ms,
            print_data: doc.clone(),
        });
        (code, doc)
    }

    /// The live (not cancelled) waybills whose trade list names `trade_code`
    /// (`cainiao.waybill.ii.query.by.tradecode`).
    pub fn waybills_for_trade(&self, trade_code: &str) -> Vec<&Waybill> {
        self.waybills
            .iter()
            .filter(|w| !w.cancelled && w.trade_order_list.iter().any(|t| t == trade_code))
            .collect()
    }

    /// The seller edits a listing's stock by hand (千牛): it changes without a gateway call.
    pub fn set_quantity(
        &mut self,
        num_iid: i64,
        sku_id: Option<i64>,
        quantity: i64,
        now: i64,
    ) -> Result<(), ShopError> {
        if !(0..=MAX_QUANTITY).contains(&quantity) {
            return Err(ShopError::Invalid(format!(
                "quantity must be 0..={MAX_QUANTITY}"
            )));
        }
        let item = self
            .items
            .get_mut(&num_iid)
            .ok_or_else(|| ShopError::NotFound(format!("no item {num_iid}")))?;
        match sku_id {
            Some(s) => {
                let sku = item
                    .skus
                    .iter_mut()
                    .find(|x| x.sku_id == s)
                    .ok_or_else(|| ShopError::NotFound(format!("item {num_iid} has no SKU {s}")))?;
                sku.quantity = quantity;
                bump(&mut sku.modified, now);
            }
            None if item.skus.is_empty() => item.num = quantity,
            None => {
                return Err(ShopError::Invalid(format!(
                    "item {num_iid} has SKUs: name the sku_id"
                )));
            }
        }
        bump(&mut item.modified, now);
        Ok(())
    }

    /// `cainiao.waybill.ii.cancel`.
    pub fn cancel_waybill(&mut self, cp_code: &str, waybill_code: &str) -> Result<(), TopError> {
        let w = self
            .waybills
            .iter_mut()
            .find(|w| w.cp_code == cp_code && w.waybill_code == waybill_code)
            .ok_or_else(|| TopError::remote("isv.waybill-not-exist", "面单号不存在"))?;
        if w.consigned {
            return Err(TopError::remote(
                "isv.waybill-already-consigned",
                "面单已发货，不能取消",
            ));
        }
        w.cancelled = true;
        Ok(())
    }
}

fn check_mode(item: &Item, mode: StockMode) -> Result<(), TopError> {
    if item.presale && mode == StockMode::Full {
        return Err(TopError::remote(
            "isv.item-is-presale:invalid-presale-tags-id",
            "预售商品只支持增量更新库存",
        ));
    }
    Ok(())
}

/// A stable, opaque receiver id for a generated trade.
pub fn derive_oaid(tid: i64) -> String {
    use md5::{Digest, Md5};
    let d = Md5::digest(format!("sandbox-oaid-{tid}").as_bytes());
    format!("1{}", hex::encode(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_924_800;
    const SHIRT: i64 = 6_001;
    const MUG: i64 = 6_002;

    fn shop() -> Shop {
        let mut s = Shop::default();
        s.create_item(
            NewItem {
                num_iid: SHIRT,
                title: "T恤".into(),
                outer_id: Some("TS".into()),
                skus: vec![
                    NewSku {
                        sku_id: 11,
                        outer_id: Some("TS-R".into()),
                        quantity: 5,
                        ..Default::default()
                    },
                    NewSku {
                        sku_id: 12,
                        outer_id: Some("TS-B".into()),
                        quantity: 1,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
        s.create_item(
            NewItem {
                num_iid: MUG,
                title: "杯子".into(),
                quantity: Some(3),
                price: Some("19.90".into()),
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
        s
    }

    fn order(num_iid: i64, sku_id: Option<i64>, num: i64) -> NewOrder {
        NewOrder {
            num_iid,
            sku_id,
            num,
        }
    }

    #[test]
    fn out_of_range_numbers_are_refused_not_overflowed() {
        let mut s = shop();
        let huge = NewItem {
            num_iid: 6_003,
            title: "x".into(),
            quantity: Some(i64::MAX),
            ..Default::default()
        };
        assert!(matches!(
            s.create_item(huge, NOW),
            Err(ShopError::Invalid(_))
        ));
        let pricey = NewItem {
            num_iid: 6_004,
            title: "x".into(),
            price: Some("92233720368547758.07".into()),
            ..Default::default()
        };
        assert!(matches!(
            s.create_item(pricey, NOW),
            Err(ShopError::Invalid(_))
        ));
        for num in [i64::MAX, i64::MIN, 0, MAX_QUANTITY + 1] {
            let t = NewTrade {
                orders: vec![order(MUG, None, num)],
                ..Default::default()
            };
            assert!(
                matches!(s.create_trade(t, NOW), Err(ShopError::Invalid(_))),
                "{num}"
            );
        }
        for q in [i64::MIN, i64::MAX, MAX_QUANTITY + 1, -MAX_QUANTITY - 1] {
            assert!(
                s.update_quantity(MUG, SkuTarget::Item, q, StockMode::Incremental, NOW)
                    .is_err(),
                "{q}"
            );
        }
        // The largest accepted line still totals without overflow (unpaid: no stock taken).
        let tid = trade(
            &mut s,
            vec![order(MUG, None, MAX_QUANTITY)],
            Some("WAIT_BUYER_PAY"),
        );
        assert_eq!(s.trades[&tid].total_fee(), 1_990 * MAX_QUANTITY);
    }

    fn trade(s: &mut Shop, orders: Vec<NewOrder>, status: Option<&str>) -> i64 {
        let t = NewTrade {
            orders,
            status: status.map(str::to_string),
            ..Default::default()
        };
        s.create_trade(t, NOW).unwrap().tid
    }

    #[test]
    fn money_round_trips_as_two_decimal_strings() {
        assert_eq!(money(57_900), "579.00");
        assert_eq!(money(5), "0.05");
        assert_eq!(parse_money("19.9"), Some(1_990));
        assert_eq!(parse_money("19"), Some(1_900));
        assert_eq!(parse_money("1.234"), None);
        assert_eq!(parse_money("-1"), None);
        assert_eq!(parse_money(""), None);
    }

    #[test]
    fn a_paid_trade_takes_platform_stock_and_an_unpaid_one_waits_for_payment() {
        let mut s = shop();
        trade(&mut s, vec![order(SHIRT, Some(11), 2)], None);
        assert_eq!(s.items[&SHIRT].skus[0].quantity, 3);
        let tid = trade(&mut s, vec![order(MUG, None, 1)], Some("WAIT_BUYER_PAY"));
        assert_eq!(s.items[&MUG].num, 3);
        s.pay(tid, NOW + 5).unwrap();
        assert_eq!(s.items[&MUG].num, 2);
        assert_eq!(s.trades[&tid].status, "WAIT_SELLER_SEND_GOODS");
        assert!(matches!(s.pay(tid, NOW + 6), Err(ShopError::Conflict(_))));
    }

    #[test]
    fn short_stock_refuses_a_purchase_unless_oversell_is_forced() {
        let mut s = shop();
        let t = NewTrade {
            orders: vec![order(SHIRT, Some(12), 2)],
            ..Default::default()
        };
        assert!(matches!(
            s.create_trade(t.clone(), NOW),
            Err(ShopError::Conflict(_))
        ));
        assert_eq!(
            s.items[&SHIRT].skus[1].quantity, 1,
            "nothing taken on refusal"
        );
        let forced = NewTrade {
            allow_oversell: true,
            ..t
        };
        let tr = s.create_trade(forced, NOW).unwrap();
        assert!(tr.orders[0].is_oversold);
        assert_eq!(s.items[&SHIRT].skus[1].quantity, 0);
    }

    #[test]
    fn modified_moves_on_every_change_even_within_one_second() {
        let mut s = shop();
        let tid = trade(&mut s, vec![order(MUG, None, 1)], Some("WAIT_BUYER_PAY"));
        let m0 = s.trades[&tid].modified;
        s.patch(
            tid,
            TradePatch {
                seller_memo: Some("hold".into()),
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
        let m1 = s.trades[&tid].modified;
        s.pay(tid, NOW).unwrap();
        assert!(m1 > m0 && s.trades[&tid].modified > m1);
    }

    #[test]
    fn a_whole_send_ships_and_a_repeat_answers_b04() {
        let mut s = shop();
        let tid = trade(&mut s, vec![order(MUG, None, 1)], None);
        s.offline_send(tid, "YT1234567890123", "YTO", None, NOW * 1000)
            .unwrap();
        assert_eq!(s.trades[&tid].status, "WAIT_BUYER_CONFIRM_GOODS");
        assert_eq!(
            s.trades[&tid].orders[0].invoice_no.as_deref(),
            Some("YT1234567890123")
        );
        let e = s
            .offline_send(tid, "YT1234567890123", "YTO", None, NOW * 1000)
            .unwrap_err();
        assert_eq!(
            e.sub_code.as_deref(),
            Some("isv.logistics-offline-service-error:B04")
        );
        assert_eq!(s.shipments.len(), 1);
    }

    #[test]
    fn a_split_send_moves_to_consigned_part_then_to_shipped() {
        let mut s = shop();
        let tid = trade(
            &mut s,
            vec![order(SHIRT, Some(11), 1), order(MUG, None, 1)],
            None,
        );
        let oids: Vec<i64> = s.trades[&tid].orders.iter().map(|o| o.oid).collect();
        s.offline_send(tid, "SF9900000000001", "SF", Some(&oids[..1]), NOW * 1000)
            .unwrap();
        assert_eq!(s.trades[&tid].status, "SELLER_CONSIGNED_PART");
        assert!(s.trades[&tid].is_part_consign);
        // The same split again is "already shipped".
        let again = s.offline_send(tid, "SF9900000000001", "SF", Some(&oids[..1]), NOW * 1000);
        assert_eq!(
            again.unwrap_err().sub_code.as_deref(),
            Some("isv.logistics-offline-service-error:B04")
        );
        s.offline_send(tid, "SF9900000000002", "SF", Some(&oids[1..]), NOW * 1000)
            .unwrap();
        assert_eq!(s.trades[&tid].status, "WAIT_BUYER_CONFIRM_GOODS");
    }

    #[test]
    fn a_bad_out_sid_unknown_company_or_closed_trade_is_refused() {
        let mut s = shop();
        let tid = trade(&mut s, vec![order(MUG, None, 1)], None);
        let sub = |e: TopError| e.sub_code.unwrap_or_default();
        assert!(sub(s.offline_send(tid, "123", "YTO", None, 0).unwrap_err()).ends_with(":B60"));
        assert!(
            sub(s
                .offline_send(tid, "YT1234567890123", "NOPE", None, 0)
                .unwrap_err())
            .ends_with(":B56")
        );
        assert!(
            sub(s
                .offline_send(tid, "YT1234567890123", "YTO", Some(&[1]), 0)
                .unwrap_err())
            .ends_with(":CD24")
        );
        assert!(
            sub(s
                .offline_send(999, "YT1234567890123", "YTO", None, 0)
                .unwrap_err())
            .ends_with(":B01")
        );
        s.close(tid, NOW).unwrap();
        assert_eq!(s.trades[&tid].status, "TRADE_CLOSED");
        assert!(
            sub(s
                .offline_send(tid, "YT1234567890123", "YTO", None, 0)
                .unwrap_err())
            .ends_with(":B04")
        );
    }

    #[test]
    fn an_unpaid_trade_cannot_ship_and_closes_by_taobao() {
        let mut s = shop();
        let tid = trade(&mut s, vec![order(MUG, None, 1)], Some("WAIT_BUYER_PAY"));
        let e = s
            .offline_send(tid, "YT1234567890123", "YTO", None, 0)
            .unwrap_err();
        assert!(e.sub_code.unwrap_or_default().ends_with(":B02"));
        s.close(tid, NOW).unwrap();
        assert_eq!(s.trades[&tid].status, "TRADE_CLOSED_BY_TAOBAO");
    }

    #[test]
    fn refunding_every_line_closes_the_trade() {
        let mut s = shop();
        let tid = trade(
            &mut s,
            vec![order(SHIRT, Some(11), 1), order(MUG, None, 1)],
            None,
        );
        let oid = s.trades[&tid].orders[0].oid;
        let ids = s
            .refund(
                tid,
                RefundRequest {
                    oid: Some(oid),
                    ..Default::default()
                },
                NOW,
            )
            .unwrap();
        assert_eq!(s.trades[&tid].orders[0].refund_status, "WAIT_SELLER_AGREE");
        assert_eq!(s.refunds[&ids[0]].refund_phase, "onsale");
        let again = RefundRequest {
            oid: Some(oid),
            status: Some("SUCCESS".into()),
            ..Default::default()
        };
        assert_eq!(
            s.refund(tid, again, NOW).unwrap(),
            ids,
            "the same refund moves on"
        );
        assert_eq!(
            s.trades[&tid].status, "WAIT_SELLER_SEND_GOODS",
            "one line still open"
        );
        s.refund(
            tid,
            RefundRequest {
                status: Some("SUCCESS".into()),
                ..Default::default()
            },
            NOW,
        )
        .unwrap();
        assert_eq!(s.trades[&tid].status, "TRADE_CLOSED");
    }

    #[test]
    fn item_level_stock_updates_are_refused_for_items_with_skus() {
        let mut s = shop();
        let e = s
            .update_quantity(SHIRT, SkuTarget::Item, 3, StockMode::Full, NOW)
            .unwrap_err();
        assert_eq!(
            e.sub_code.as_deref(),
            Some("isv.item-quantity-item-update-service-error")
        );
        let r = s
            .update_quantity(MUG, SkuTarget::Item, 7, StockMode::Full, NOW)
            .unwrap();
        assert_eq!(r.num, 7);
    }

    #[test]
    fn incremental_updates_floor_at_zero_and_full_updates_refuse_negatives() {
        let mut s = shop();
        let r = s
            .update_quantity(SHIRT, SkuTarget::SkuId(12), -5, StockMode::Incremental, NOW)
            .unwrap();
        assert_eq!(r.skus, vec![(12, 0, r.skus[0].2)]);
        let e = s
            .update_quantity(SHIRT, SkuTarget::SkuId(12), -1, StockMode::Full, NOW)
            .unwrap_err();
        assert_eq!(e.code, 41);
        let r = s
            .update_quantity(
                SHIRT,
                SkuTarget::OuterId("TS-R".into()),
                2,
                StockMode::Incremental,
                NOW,
            )
            .unwrap();
        assert_eq!(r.skus[0].1, 7);
        assert_eq!(s.items[&SHIRT].skus[0].quantity_updates, 1);
        assert_eq!(s.items[&SHIRT].quantity_updates, 2);
    }

    #[test]
    fn sku_batch_updates_are_all_or_nothing() {
        let mut s = shop();
        let bad = vec![("11".to_string(), 9), ("99".to_string(), 9)];
        assert!(
            s.update_skus(SHIRT, true, &bad, StockMode::Full, NOW)
                .is_err()
        );
        assert_eq!(s.items[&SHIRT].skus[0].quantity, 5);
        let ok = vec![("TS-R".to_string(), 9), ("TS-B".to_string(), 8)];
        let r = s
            .update_skus(SHIRT, false, &ok, StockMode::Full, NOW)
            .unwrap();
        assert_eq!(r.num, 17);
    }

    #[test]
    fn waybill_numbers_are_stable_per_package_until_cancelled() {
        let mut s = shop();
        let doc = |c: &str| format!("doc {c}");
        let (a, d) = s.issue_waybill("YTO", "pkg1", "o1", &["7".into()], 0, doc);
        assert_eq!(d, format!("doc {a}"));
        assert_eq!(s.issue_waybill("YTO", "pkg1", "o2", &[], 0, doc).0, a);
        assert_ne!(s.issue_waybill("YTO", "pkg2", "o3", &[], 0, doc).0, a);
        assert_ne!(s.issue_waybill("SF", "pkg1", "o4", &[], 0, doc).0, a);
        assert_eq!(s.waybills_for_trade("7").len(), 1);
        s.cancel_waybill("YTO", &a).unwrap();
        assert!(
            s.waybills_for_trade("7").is_empty(),
            "a cancelled number is not found"
        );
        assert_ne!(s.issue_waybill("YTO", "pkg1", "o5", &[], 0, doc).0, a);
        let tid = trade(&mut s, vec![order(MUG, None, 1)], None);
        let e = s.offline_send(tid, &a, "YTO", None, 0).unwrap_err();
        assert!(
            e.sub_code.unwrap_or_default().ends_with(":B60"),
            "a cancelled number is refused"
        );
    }
}
