//! Domain types of the TOP replies, named as Taobao names them (TAOBAO.md §6).
//!
//! Only the fields a WMS needs are kept; everything else in a reply is ignored. Every field is
//! decoded leniently (see [`super::decode`]): ids from numbers or strings, money into [`Fen`],
//! dates from GMT+8 into UTC, lists in any wrapper.
//!
//! Buyer data (DOMAIN.md §10): a trade keeps only the `oaid`, the province / city / district,
//! and the masked receiver fields exactly as returned, in [`Receiver`], whose `Debug` prints
//! none of them. No type here carries a buyer nick.

use super::decode::{self, Fen};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a TOP string enum with an `Other(String)` fallback, so a value the platform adds
/// tomorrow does not make a whole trade undecodable.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A value this build does not know.
            Other(String),
        }

        impl $name {
            /// The wire value.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $wire,)*
                    $name::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($wire => $name::$variant,)*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok($name::from(s.as_str()))
            }
        }
    };
}

wire_enum! {
    /// Trade and order `status` (TAOBAO.md §6.3).
    TradeStatus {
        /// No Alipay trade created.
        TradeNoCreatePay = "TRADE_NO_CREATE_PAY",
        /// Awaiting payment.
        WaitBuyerPay = "WAIT_BUYER_PAY",
        /// Payment being confirmed.
        PayPending = "PAY_PENDING",
        /// Pre-authorisation pending.
        WaitPreAuthConfirm = "WAIT_PRE_AUTH_CONFIRM",
        /// Paid but shipping forbidden.
        PaidForbidConsign = "PAID_FORBID_CONSIGN",
        /// Paid: ship now.
        WaitSellerSendGoods = "WAIT_SELLER_SEND_GOODS",
        /// Some lines shipped.
        SellerConsignedPart = "SELLER_CONSIGNED_PART",
        /// Shipped.
        WaitBuyerConfirmGoods = "WAIT_BUYER_CONFIRM_GOODS",
        /// Signed for (COD).
        TradeBuyerSigned = "TRADE_BUYER_SIGNED",
        /// Complete.
        TradeFinished = "TRADE_FINISHED",
        /// Closed after payment (full refund).
        TradeClosed = "TRADE_CLOSED",
        /// Closed before payment: never ship.
        TradeClosedByTaobao = "TRADE_CLOSED_BY_TAOBAO",
    }
}

wire_enum! {
    /// An order line's `refund_status`, and a refund's `status` (TAOBAO.md §6.3, §6.9).
    RefundStatus {
        /// No refund.
        NoRefund = "NO_REFUND",
        /// Buyer asked, seller has not answered.
        WaitSellerAgree = "WAIT_SELLER_AGREE",
        /// Seller agreed, goods to come back.
        WaitBuyerReturnGoods = "WAIT_BUYER_RETURN_GOODS",
        /// Goods sent back, seller to confirm.
        WaitSellerConfirmGoods = "WAIT_SELLER_CONFIRM_GOODS",
        /// Seller refused.
        SellerRefuseBuyer = "SELLER_REFUSE_BUYER",
        /// Refund closed (withdrawn).
        Closed = "CLOSED",
        /// Refunded.
        Success = "SUCCESS",
    }
}

impl RefundStatus {
    /// Whether a line in this refund state may still ship (DOMAIN.md §3).
    pub fn allows_shipping(&self) -> bool {
        matches!(
            self,
            RefundStatus::NoRefund | RefundStatus::Closed | RefundStatus::SellerRefuseBuyer
        )
    }
}

/// The receiver of a trade, as far as the node may keep it (DOMAIN.md §10). The name,
/// address, mobile and phone arrive masked (`陈*平`, `13*******23`) and are kept only as
/// returned, for display on pack screens; they are never logged (`Debug` hides them).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receiver {
    /// Opaque receiver id: equal OAIDs mean "same person, same address".
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub oaid: Option<String>,
    /// Province.
    #[serde(
        default,
        rename = "receiver_state",
        deserialize_with = "decode::opt_string"
    )]
    pub state: Option<String>,
    /// City.
    #[serde(
        default,
        rename = "receiver_city",
        deserialize_with = "decode::opt_string"
    )]
    pub city: Option<String>,
    /// District.
    #[serde(
        default,
        rename = "receiver_district",
        deserialize_with = "decode::opt_string"
    )]
    pub district: Option<String>,
    /// Masked name.
    #[serde(
        default,
        rename = "receiver_name",
        deserialize_with = "decode::opt_string"
    )]
    pub masked_name: Option<String>,
    /// Masked detailed address.
    #[serde(
        default,
        rename = "receiver_address",
        deserialize_with = "decode::opt_string"
    )]
    pub masked_address: Option<String>,
    /// Masked mobile.
    #[serde(
        default,
        rename = "receiver_mobile",
        deserialize_with = "decode::opt_string"
    )]
    pub masked_mobile: Option<String>,
    /// Masked phone.
    #[serde(
        default,
        rename = "receiver_phone",
        deserialize_with = "decode::opt_string"
    )]
    pub masked_phone: Option<String>,
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Region and OAID are not personal on their own, but the rule is simplest as "no
        // receiver field in any log": print only which fields are present.
        f.debug_struct("Receiver")
            .field("oaid", &self.oaid.as_ref().map(|_| "<present>"))
            .field("masked_fields", &"<hidden>")
            .finish()
    }
}

/// Free text typed by a person (a buyer's message, a seller's memo): shown where it is meant
/// to be read (a pick list), never in a log, so `Debug` prints only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct FreeText(pub String);

impl FreeText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for FreeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} chars of free text>", self.0.chars().count())
    }
}

fn free_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<FreeText>, D::Error> {
    Ok(decode::opt_string(d)?.map(FreeText))
}

/// One trade (`Trade`), with the fields a WMS needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Trade {
    /// Trade id.
    #[serde(deserialize_with = "decode::id")]
    pub tid: i64,
    /// Trade status.
    #[serde(default)]
    pub status: Option<TradeStatus>,
    /// Trade type (`fixed`, `guarantee_trade`, `step`, …).
    #[serde(default, rename = "type", deserialize_with = "decode::opt_string")]
    pub trade_type: Option<String>,
    /// Pre-sale deposit state; ship only at `FRONT_PAID_FINAL_PAID`.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub step_trade_status: Option<String>,
    /// Created.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub created: Option<DateTime<Utc>>,
    /// Paid.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub pay_time: Option<DateTime<Utc>>,
    /// Last modified: the intake watermark's clock.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub modified: Option<DateTime<Utc>>,
    /// Shipped.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub consign_time: Option<DateTime<Utc>>,
    /// Ended.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub end_time: Option<DateTime<Utc>>,
    /// The seller's promised ship time.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub est_con_time: Option<DateTime<Utc>>,
    /// Latest ship time.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub delivery_time: Option<DateTime<Utc>>,
    /// Pre-sale: ship before.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub send_time: Option<DateTime<Utc>>,
    /// What the buyer paid.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub payment: Option<Fen>,
    /// Postage.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub post_fee: Option<Fen>,
    /// Goods total.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub total_fee: Option<Fen>,
    /// Discount.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub discount_fee: Option<Fen>,
    /// Buyer's message (order notes for the floor). Free text a buyer may fill with a
    /// phone number or an address, so its `Debug` hides it.
    #[serde(default, deserialize_with = "free_text")]
    pub buyer_message: Option<FreeText>,
    /// Seller's memo (free text too).
    #[serde(default, deserialize_with = "free_text")]
    pub seller_memo: Option<FreeText>,
    /// Seller's flag colour (0 none, 1–5).
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub seller_flag: Option<i64>,
    /// Whether several shipments are allowed.
    #[serde(default, deserialize_with = "decode::opt_bool")]
    pub is_part_consign: Option<bool>,
    /// Shipping type (`express`, `free`, …).
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub shipping_type: Option<String>,
    /// Receiver: OAID, region, masked fields.
    #[serde(flatten)]
    pub receiver: Receiver,
    /// The lines.
    #[serde(default, deserialize_with = "decode::list")]
    pub orders: Vec<Order>,
}

/// One line of a trade (`Order`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Order {
    /// Line id.
    #[serde(deserialize_with = "decode::id")]
    pub oid: i64,
    /// Item id.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub num_iid: Option<i64>,
    /// SKU id (declared a string by TOP; absent or empty for items without SKUs).
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub sku_id: Option<i64>,
    /// The item's merchant code.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub outer_iid: Option<String>,
    /// The SKU's merchant code.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub outer_sku_id: Option<String>,
    /// Title.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub title: Option<String>,
    /// SKU properties for display (`颜色分类:红色;尺码:XL`).
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub sku_properties_name: Option<String>,
    /// Quantity.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub num: Option<i64>,
    /// Unit price.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub price: Option<Fen>,
    /// Paid for this line.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub payment: Option<Fen>,
    /// Line total.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub total_fee: Option<Fen>,
    /// Apportioned payment.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub divide_order_fee: Option<Fen>,
    /// Line status.
    #[serde(default)]
    pub status: Option<TradeStatus>,
    /// Refund state of the line.
    #[serde(default)]
    pub refund_status: Option<RefundStatus>,
    /// Refund id (declared a string by TOP).
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub refund_id: Option<i64>,
    /// Sold beyond stock.
    #[serde(default, deserialize_with = "decode::opt_bool")]
    pub is_oversold: Option<bool>,
    /// Shipped.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub consign_time: Option<DateTime<Utc>>,
    /// Carrier name, once shipped.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub logistics_company: Option<String>,
    /// This line's waybill number, once shipped.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub invoice_no: Option<String>,
}

/// A page of trades (`trades.sold.increment.get`, `trades.sold.get`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct TradesPage {
    /// The trades, newest-modified (or newest-created) first.
    #[serde(default, deserialize_with = "decode::list")]
    pub trades: Vec<Trade>,
    /// Only without `use_has_next`.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub total_results: Option<i64>,
    /// Only with `use_has_next`.
    #[serde(default, deserialize_with = "decode::opt_bool")]
    pub has_next: Option<bool>,
}

/// A SKU (`Sku`) of an item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Sku {
    /// SKU id.
    #[serde(deserialize_with = "decode::id")]
    pub sku_id: i64,
    /// Merchant code.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub outer_id: Option<String>,
    /// Stock on the platform.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub quantity: Option<i64>,
    /// Property ids (`pid:vid;…`).
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub properties: Option<String>,
    /// Property names for display.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub properties_name: Option<String>,
    /// Price.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub price: Option<Fen>,
    /// Barcode, helps map scanner codes.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub barcode: Option<String>,
    /// Last modified.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub modified: Option<DateTime<Utc>>,
}

/// An item (`Item`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Item {
    /// Item id.
    #[serde(deserialize_with = "decode::id")]
    pub num_iid: i64,
    /// Title.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub title: Option<String>,
    /// Merchant code.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub outer_id: Option<String>,
    /// Item-level stock (the sum of the SKUs' when it has SKUs).
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub num: Option<i64>,
    /// `onsale` / `instock`.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub approve_status: Option<String>,
    /// Price.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub price: Option<Fen>,
    /// Last modified.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub modified: Option<DateTime<Utc>>,
    /// The SKUs (empty for an item without SKUs).
    #[serde(default, deserialize_with = "decode::list")]
    pub skus: Vec<Sku>,
}

/// A page of items (`items.onsale.get`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ItemsPage {
    /// The items.
    #[serde(default, deserialize_with = "decode::list")]
    pub items: Vec<Item>,
    /// Total matches.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub total_results: Option<i64>,
}

/// An SKU's stock after an update.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SkuQuantity {
    /// SKU id.
    #[serde(deserialize_with = "decode::id")]
    pub sku_id: i64,
    /// Stock now.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub quantity: Option<i64>,
    /// When.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub modified: Option<DateTime<Utc>>,
}

/// The item's stock after `item.quantity.update` / `skus.quantity.update`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ItemQuantity {
    /// Item id.
    #[serde(deserialize_with = "decode::id")]
    pub num_iid: i64,
    /// Item-level stock now.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub num: Option<i64>,
    /// When.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub modified: Option<DateTime<Utc>>,
    /// The SKUs touched, with their stock now.
    #[serde(default, deserialize_with = "decode::list")]
    pub skus: Vec<SkuQuantity>,
}

/// A carrier (`LogisticsCompany`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LogisticsCompany {
    /// Numeric id.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub id: Option<i64>,
    /// Code (`YTO`, `ZTO`, …): the `company_code` of a shipment.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub code: Option<String>,
    /// Display name.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub name: Option<String>,
    /// The regex a valid waybill number (`out_sid`) must match.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub reg_mail_no: Option<String>,
}

/// A refund (`Refund`) as `refunds.receive.get` returns it, without buyer data.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refund {
    /// Refund id (declared a string by TOP).
    #[serde(deserialize_with = "decode::id")]
    pub refund_id: i64,
    /// Trade id.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub tid: Option<i64>,
    /// Line id.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub oid: Option<i64>,
    /// Refund status.
    #[serde(default)]
    pub status: Option<RefundStatus>,
    /// The line's trade status.
    #[serde(default)]
    pub order_status: Option<TradeStatus>,
    /// `BUYER_NOT_RECEIVED` / `BUYER_RECEIVED` / `BUYER_RETURNED_GOODS`.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub good_status: Option<String>,
    /// Whether goods come back.
    #[serde(default, deserialize_with = "decode::opt_bool")]
    pub has_good_return: Option<bool>,
    /// Amount refunded.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub refund_fee: Option<Fen>,
    /// Trade total.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub total_fee: Option<Fen>,
    /// Paid.
    #[serde(default, deserialize_with = "decode::opt_fen")]
    pub payment: Option<Fen>,
    /// Quantity.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub num: Option<i64>,
    /// `onsale` (before receipt) / `aftersale`.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub refund_phase: Option<String>,
    /// Version stamp of the refund.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub refund_version: Option<i64>,
    /// `REFUND`, `REFUND_AND_RETURN`, …
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub dispute_type: Option<String>,
    /// Return carrier name.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub company_name: Option<String>,
    /// Return waybill number.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub sid: Option<String>,
    /// Created.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub created: Option<DateTime<Utc>>,
    /// Last modified.
    #[serde(default, deserialize_with = "decode::opt_date")]
    pub modified: Option<DateTime<Utc>>,
}

/// A page of refunds (`refunds.receive.get`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct RefundsPage {
    /// The refunds.
    #[serde(default, deserialize_with = "decode::list")]
    pub refunds: Vec<Refund>,
    /// Only without `use_has_next`.
    #[serde(default, deserialize_with = "decode::opt_id")]
    pub total_results: Option<i64>,
    /// Only with `use_has_next`.
    #[serde(default, deserialize_with = "decode::opt_bool")]
    pub has_next: Option<bool>,
}

/// One issued e-waybill (`cainiao.waybill.ii.get` module).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Waybill {
    /// Our request id (the package), echoed back.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub object_id: Option<String>,
    /// The tracking number: the shipment's `out_sid`.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub waybill_code: Option<String>,
    /// Opaque cloud-print payload (maybe encrypted): passed to the printer, never parsed or
    /// logged.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub print_data: Option<String>,
    /// Multi-piece master code.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub parent_waybill_code: Option<String>,
    /// Carrier code asked for.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub cp_code: Option<String>,
    /// The carrier that really carries it (may differ for virtual carriers).
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub real_cp_code: Option<String>,
}

impl fmt::Debug for Waybill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // print_data carries the (encrypted) receiver; show only its size.
        f.debug_struct("Waybill")
            .field("object_id", &self.object_id)
            .field("waybill_code", &self.waybill_code)
            .field("cp_code", &self.cp_code)
            .field("real_cp_code", &self.real_cp_code)
            .field("parent_waybill_code", &self.parent_waybill_code)
            .field(
                "print_data_bytes",
                &self.print_data.as_ref().map(String::len),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_classic_trade_with_wrapped_orders_decodes() {
        let v = json!({
            "tid": 267762403889391751_i64, "status": "WAIT_SELLER_SEND_GOODS",
            "payment": "579.00", "modified": "2026-11-29 12:00:00",
            "receiver_state": "浙江省", "receiver_name": "陈*平", "oaid": "abc",
            "buyer_nick": "someone", "unknown_field": [1, 2],
            "orders": {"order": [{"oid": "267762403889391752", "num_iid": 600123456789_i64,
                "sku_id": "4567890123456", "num": 2, "refund_status": "NO_REFUND",
                "status": "SOME_NEW_STATUS"}]}
        });
        let t: Trade = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.tid, 267_762_403_889_391_751);
        assert_eq!(t.status, Some(TradeStatus::WaitSellerSendGoods));
        assert_eq!(t.payment, Some(Fen(57_900)));
        assert_eq!(t.receiver.state.as_deref(), Some("浙江省"));
        assert_eq!(t.receiver.oaid.as_deref(), Some("abc"));
        assert_eq!(t.orders.len(), 1);
        let o = &t.orders[0];
        assert_eq!(o.oid, 267_762_403_889_391_752);
        assert_eq!(o.sku_id, Some(4_567_890_123_456));
        assert_eq!(o.status, Some(TradeStatus::Other("SOME_NEW_STATUS".into())));
        assert!(
            o.refund_status
                .as_ref()
                .is_some_and(RefundStatus::allows_shipping)
        );
    }

    #[test]
    fn debug_output_never_shows_receiver_fields_or_print_data() {
        let v = json!({"tid": 1, "receiver_name": "陈*平", "receiver_mobile": "13*******23",
            "receiver_address": "某某路**号", "receiver_city": "杭州市", "oaid": "OAID-XYZ",
            "buyer_message": "call me on 13912345678", "seller_memo": "leave at 5 Elm St"});
        let t: Trade = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.buyer_message.as_ref().map(FreeText::as_str),
            Some("call me on 13912345678")
        );
        let dbg = format!("{t:?}");
        for secret in [
            "陈*平",
            "13*******23",
            "某某路",
            "杭州市",
            "OAID-XYZ",
            "13912345678",
            "Elm St",
        ] {
            assert!(!dbg.contains(secret), "{secret} leaked: {dbg}");
        }
        let w: Waybill = serde_json::from_value(
            json!({"waybill_code": "YT1", "print_data": "{\"encryptedData\":\"S3CR3T\"}"}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{w:?}").contains("S3CR3T"));
    }

    #[test]
    fn wire_enums_round_trip_and_keep_unknown_values() {
        assert_eq!(TradeStatus::from("TRADE_CLOSED"), TradeStatus::TradeClosed);
        assert_eq!(TradeStatus::TradeClosed.as_str(), "TRADE_CLOSED");
        assert_eq!(TradeStatus::from("NEW_ONE").as_str(), "NEW_ONE");
    }

    mod shapes {
        //! Trade pages in both TOP shapes (TAOBAO.md §1.6), generated: the classic envelope
        //! with wrapped lists and the simplified one with plain arrays, ids as numbers or as
        //! strings, absent lists. Whatever the shape, the same page decodes.
        use super::super::*;
        use crate::taobao::decode::{Envelope, from_value, open_envelope};
        use proptest::prelude::*;
        use serde_json::{Value, json};

        #[derive(Debug, Clone)]
        struct Line {
            oid: i64,
            sku_id: Option<i64>,
            num: i64,
            refund: &'static str,
        }

        #[derive(Debug, Clone)]
        struct T {
            tid: i64,
            status: &'static str,
            fen: i64,
            second: u32,
            lines: Vec<Line>,
        }

        const STATUSES: [&str; 4] = [
            "WAIT_SELLER_SEND_GOODS",
            "TRADE_CLOSED",
            "PAID_FORBID_CONSIGN",
            "SOME_STATUS_OF_TOMORROW",
        ];
        const REFUNDS: [&str; 3] = ["NO_REFUND", "WAIT_SELLER_AGREE", "CLOSED"];

        fn line() -> impl Strategy<Value = Line> {
            (
                1i64..i64::MAX,
                proptest::option::of(1i64..i64::MAX),
                1i64..1000,
                0usize..3,
            )
                .prop_map(|(oid, sku_id, num, r)| Line {
                    oid,
                    sku_id,
                    num,
                    refund: REFUNDS[r],
                })
        }

        fn trade() -> impl Strategy<Value = T> {
            (
                1i64..i64::MAX,
                0usize..4,
                0i64..10_000_000_000,
                0u32..86_400,
                proptest::collection::vec(line(), 0..4),
            )
                .prop_map(|(tid, s, fen, second, lines)| T {
                    tid,
                    status: STATUSES[s],
                    fen,
                    second,
                    lines,
                })
        }

        fn id(n: i64, as_string: bool) -> Value {
            if as_string {
                Value::String(n.to_string())
            } else {
                json!(n)
            }
        }

        fn render(t: &T, classic: bool, strings: bool) -> Value {
            let orders: Vec<Value> = t
                .lines
                .iter()
                .map(|l| {
                    let mut o = json!({"oid": id(l.oid, strings), "num": id(l.num, strings),
                                       "refund_status": l.refund, "status": t.status});
                    if let Some(s) = l.sku_id {
                        // Declared a string by TOP, whatever the other ids do.
                        o["sku_id"] = Value::String(s.to_string());
                    }
                    o
                })
                .collect();
            let h = t.second / 3600;
            let m = (t.second / 60) % 60;
            let sec = t.second % 60;
            let mut v = json!({
                "tid": id(t.tid, strings),
                "status": t.status,
                "payment": format!("{}.{:02}", t.fen / 100, t.fen % 100),
                "modified": format!("2026-12-01 {h:02}:{m:02}:{sec:02}"),
            });
            // TOP leaves an empty list out entirely.
            if !orders.is_empty() {
                v["orders"] = if classic {
                    json!({"order": orders})
                } else {
                    Value::Array(orders)
                };
            }
            v
        }

        fn page(ts: &[T], classic: bool, strings: bool, has_next: bool) -> Value {
            let trades: Vec<Value> = ts.iter().map(|t| render(t, classic, strings)).collect();
            let mut inner = json!({"has_next": has_next, "request_id": "abc"});
            if !trades.is_empty() {
                inner["trades"] = if classic {
                    json!({"trade": trades})
                } else {
                    Value::Array(trades)
                };
            }
            if classic {
                json!({"trades_sold_increment_get_response": inner})
            } else {
                inner
            }
        }

        proptest! {
            #[test]
            fn a_trade_page_decodes_the_same_in_either_shape(
                ts in proptest::collection::vec(trade(), 0..5),
                classic in any::<bool>(),
                strings in any::<bool>(),
                has_next in any::<bool>(),
            ) {
                let body = page(&ts, classic, strings, has_next);
                let inner = match open_envelope("taobao.trades.sold.increment.get", body) {
                    Some(Envelope::Ok(v)) => v,
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                };
                let p: TradesPage = from_value(inner)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(p.has_next, Some(has_next));
                prop_assert_eq!(p.trades.len(), ts.len());
                for (got, want) in p.trades.iter().zip(&ts) {
                    prop_assert_eq!(got.tid, want.tid);
                    prop_assert_eq!(got.status.as_ref().map(TradeStatus::as_str), Some(want.status));
                    prop_assert_eq!(got.payment, Some(Fen(want.fen)));
                    prop_assert_eq!(
                        got.modified.map(crate::taobao::time::format),
                        Some(format!(
                            "2026-12-01 {:02}:{:02}:{:02}",
                            want.second / 3600,
                            (want.second / 60) % 60,
                            want.second % 60
                        ))
                    );
                    prop_assert_eq!(got.orders.len(), want.lines.len());
                    for (o, l) in got.orders.iter().zip(&want.lines) {
                        prop_assert_eq!(o.oid, l.oid);
                        prop_assert_eq!(o.sku_id, l.sku_id);
                        prop_assert_eq!(o.num, Some(l.num));
                        prop_assert_eq!(
                            o.refund_status.as_ref().map(RefundStatus::as_str),
                            Some(l.refund)
                        );
                    }
                }
            }

            #[test]
            fn a_damaged_trade_page_is_an_error_or_a_page_never_a_panic(
                ts in proptest::collection::vec(trade(), 1..3),
                classic in any::<bool>(),
                cut in 0usize..400,
            ) {
                // Truncated bodies and fields of the wrong type, in both shapes.
                let text = page(&ts, classic, false, false).to_string();
                let cut = text.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(text.len());
                if let Ok(v) = serde_json::from_str::<Value>(&text[..cut])
                    && let Some(Envelope::Ok(inner)) = open_envelope("taobao.trades.sold.increment.get", v) {
                        let _ = from_value::<TradesPage>(inner);
                    }
                let mut v = page(&ts, classic, false, false);
                let root = if classic { &mut v["trades_sold_increment_get_response"] } else { &mut v };
                root["has_next"] = json!([1, 2]);
                if let Some(Envelope::Ok(inner)) = open_envelope("taobao.trades.sold.increment.get", v) {
                    prop_assert!(from_value::<TradesPage>(inner).is_err());
                }
            }
        }
    }
}

/// One answer of `cainiao.waybill.ii.query.by.tradecode` (a
/// `waybill_cloud_print_with_result_desc_response`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WaybillQueryResult {
    /// The request's `object_id`, echoed.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub object_id: Option<String>,
    /// Whether the query found something.
    #[serde(default, deserialize_with = "decode::opt_bool")]
    pub success: Option<bool>,
    /// Why not.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub error_code: Option<String>,
    /// Why not, for people.
    #[serde(default, deserialize_with = "decode::opt_string")]
    pub error_message: Option<String>,
    /// The waybill found (its `object_id` is the one of the request that issued it).
    #[serde(default)]
    pub waybill_cloud_print_response: Option<Waybill>,
}
