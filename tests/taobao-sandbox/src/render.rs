//! Shop objects as TOP structures (Trade, Order, Item, Sku, Refund), restricted to `fields`.
//!
//! Field names and types follow TAOBAO.md §6: ids are numbers (`sku_id` and `refund_id` are
//! strings), money is a two-decimal string, dates are `yyyy-MM-dd HH:mm:ss` GMT+8, absent values
//! are left out. Receiver fields are masked test data; `oaid` is only produced when `fields`
//! asks for `receiver_name`, `receiver_address`, `created`, `receiver_mobile` and
//! `receiver_phone` (TAOBAO.md §6.3).

use crate::clock::format_gmt8;
use crate::envelope::{ObjBuilder, Out};
use crate::fields::FieldSel;
use crate::shop::{Item, Order, Refund, Shop, Sku, Trade, money};

/// Which trade fields a list call may return: the list calls return "part of each trade"
/// (TAOBAO.md §6.1); the sandbox leaves out the receiver fields and `oaid` there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeView {
    /// `trade.fullinfo.get` and admin views.
    Full,
    /// `trades.sold.get`, `trades.sold.increment.get`.
    List,
}

const OAID_NEEDS: [&str; 5] = [
    "receiver_name",
    "receiver_address",
    "created",
    "receiver_mobile",
    "receiver_phone",
];

/// Renders a trade.
pub fn trade(t: &Trade, sel: &FieldSel, view: TradeView, seller_nick: &str) -> Out {
    let mut b = ObjBuilder::new();
    let mut put = |name: &str, v: Option<Out>| {
        if let Some(v) = v
            && sel.has(name)
        {
            b.put(name, v);
        }
    };
    let t8 = |s: i64| Out::str(format_gmt8(s));
    put("tid", Some(Out::int(t.tid)));
    put("tid_str", Some(Out::str(t.tid.to_string())));
    put("status", Some(Out::str(t.status.clone())));
    put("type", Some(Out::str(t.trade_type.clone())));
    put("trade_from", Some(Out::str("WAP,TAOBAO")));
    put("shipping_type", Some(Out::str("express")));
    put(
        "step_trade_status",
        t.step_trade_status.clone().map(Out::str),
    );
    put("created", Some(t8(t.created)));
    put("pay_time", t.pay_time.map(t8));
    put("modified", Some(t8(t.modified)));
    put("consign_time", t.consign_time.map(t8));
    put("end_time", t.end_time.map(t8));
    put("payment", Some(Out::str(money(t.payment()))));
    put("post_fee", Some(Out::str(money(t.post_fee_fen))));
    put("total_fee", Some(Out::str(money(t.total_fee()))));
    put("discount_fee", Some(Out::str("0.00")));
    put("adjust_fee", Some(Out::str("0.00")));
    let received = if t.pay_time.is_some() { t.payment() } else { 0 };
    put("received_payment", Some(Out::str(money(received))));
    put("buyer_message", t.buyer_message.clone().map(Out::str));
    put("seller_memo", t.seller_memo.clone().map(Out::str));
    put("seller_flag", Some(Out::int(t.seller_flag)));
    put(
        "has_buyer_message",
        Some(Out::bool(t.buyer_message.is_some())),
    );
    put("buyer_nick", Some(Out::str(t.buyer_nick.clone())));
    put("seller_nick", Some(Out::str(seller_nick)));
    put("is_part_consign", Some(Out::bool(t.is_part_consign)));
    put("num", Some(Out::int(t.orders.iter().map(|o| o.num).sum())));
    if t.orders.len() == 1 {
        // With a single line the product fields also appear on the trade.
        let o = &t.orders[0];
        put("num_iid", Some(Out::int(o.num_iid)));
        put("title", Some(Out::str(o.title.clone())));
        put("price", Some(Out::str(money(o.price_fen))));
    }
    if view == TradeView::Full {
        let r = &t.receiver;
        put(
            "receiver_name",
            Some(Out::str(r.name.clone().unwrap_or_else(|| "测**".into()))),
        );
        put("receiver_state", Some(Out::str(t.receiver.state.clone())));
        put("receiver_city", Some(Out::str(t.receiver.city.clone())));
        put(
            "receiver_district",
            Some(Out::str(t.receiver.district.clone())),
        );
        put("receiver_town", Some(Out::str("****")));
        put(
            "receiver_address",
            Some(Out::str(
                r.address.clone().unwrap_or_else(|| "**********".into()),
            )),
        );
        put("receiver_zip", Some(Out::str("000000")));
        put(
            "receiver_mobile",
            Some(Out::str(
                r.mobile.clone().unwrap_or_else(|| "*******0000".into()),
            )),
        );
        put(
            "receiver_phone",
            Some(Out::str(
                r.phone.clone().unwrap_or_else(|| "****-****000".into()),
            )),
        );
        let oaid_allowed = match sel {
            FieldSel::All => true,
            FieldSel::Some(_) => OAID_NEEDS.iter().all(|f| sel.has(f)),
        };
        if oaid_allowed {
            b.put("oaid", Out::str(t.oaid.clone()));
        }
    }
    if let Some(sub) = sel.sub(&["orders", "order"]) {
        let single = t.orders.len() == 1;
        let orders = t
            .orders
            .iter()
            .map(|o| order(o, &sub, single.then_some(t.post_fee_fen)))
            .collect();
        b.put("orders", Out::List("order", orders));
    }
    b.build()
}

/// Renders a line; `single_post_fee` is the trade's postage when this is the only line (its
/// `payment` then includes postage).
pub fn order(o: &Order, sel: &FieldSel, single_post_fee: Option<i64>) -> Out {
    let mut b = ObjBuilder::new();
    let mut put = |name: &str, v: Option<Out>| {
        if let Some(v) = v
            && sel.has(name)
        {
            b.put(name, v);
        }
    };
    let t8 = |s: i64| Out::str(format_gmt8(s));
    let goods = o.price_fen * o.num;
    put("oid", Some(Out::int(o.oid)));
    put("oid_str", Some(Out::str(o.oid.to_string())));
    put("num_iid", Some(Out::int(o.num_iid)));
    put("sku_id", o.sku_id.map(|s| Out::str(s.to_string())));
    put("outer_iid", o.outer_iid.clone().map(Out::str));
    put("outer_sku_id", o.outer_sku_id.clone().map(Out::str));
    put("title", Some(Out::str(o.title.clone())));
    put(
        "sku_properties_name",
        o.sku_properties_name.clone().map(Out::str),
    );
    put("num", Some(Out::int(o.num)));
    put("price", Some(Out::str(money(o.price_fen))));
    put("total_fee", Some(Out::str(money(goods))));
    put(
        "payment",
        Some(Out::str(money(goods + single_post_fee.unwrap_or(0)))),
    );
    put("discount_fee", Some(Out::str("0.00")));
    put("adjust_fee", Some(Out::str("0.00")));
    put("divide_order_fee", Some(Out::str(money(goods))));
    put("status", Some(Out::str(o.status.clone())));
    put("refund_status", Some(Out::str(o.refund_status.clone())));
    put("refund_id", o.refund_id.clone().map(Out::str));
    put("is_oversold", Some(Out::bool(o.is_oversold)));
    put("consign_time", o.consign_time.map(t8));
    put("end_time", o.end_time.map(t8));
    put("shipping_type", Some(Out::str("express")));
    put(
        "logistics_company",
        o.logistics_company.clone().map(Out::str),
    );
    put("invoice_no", o.invoice_no.clone().map(Out::str));
    b.build()
}

/// Renders an item; `with_skus` allows the `skus` sub-object (`item.seller.get`).
pub fn item(i: &Item, sel: &FieldSel, seller_nick: &str, with_skus: bool) -> Out {
    let mut b = ObjBuilder::new();
    let mut put = |name: &str, v: Option<Out>| {
        if let Some(v) = v
            && sel.has(name)
        {
            b.put(name, v);
        }
    };
    let t8 = |s: i64| Out::str(format_gmt8(s));
    put("num_iid", Some(Out::int(i.num_iid)));
    put("iid", Some(Out::str(i.num_iid.to_string())));
    put("title", Some(Out::str(i.title.clone())));
    put("nick", Some(Out::str(seller_nick)));
    put("type", Some(Out::str("fixed")));
    put("cid", Some(Out::int(i.cid)));
    put("num", Some(Out::int(i.total_num())));
    put("price", Some(Out::str(money(i.price_fen))));
    put("outer_id", i.outer_id.clone().map(Out::str));
    put(
        "approve_status",
        Some(Out::str(if i.deleted { "instock" } else { "onsale" })),
    );
    put("list_time", Some(t8(i.list_time)));
    put("delist_time", Some(t8(i.list_time + 7 * 86_400)));
    put("modified", Some(t8(i.modified)));
    put("sold_quantity", Some(Out::int(i.sold_quantity)));
    put("has_discount", Some(Out::bool(false)));
    put("has_invoice", Some(Out::bool(false)));
    put("has_warranty", Some(Out::bool(false)));
    put("has_showcase", Some(Out::bool(false)));
    put("valid_thru", Some(Out::int(7)));
    put(
        "pic_url",
        Some(Out::str("https://img.example.invalid/sandbox.jpg")),
    );
    if with_skus
        && !i.skus.is_empty()
        && let Some(sub) = sel.sub(&["skus", "sku"])
    {
        b.put(
            "skus",
            Out::List("sku", i.skus.iter().map(|s| sku(s, &sub)).collect()),
        );
    }
    b.build()
}

/// Renders a SKU.
pub fn sku(s: &Sku, sel: &FieldSel) -> Out {
    let mut b = ObjBuilder::new();
    let mut put = |name: &str, v: Option<Out>| {
        if let Some(v) = v
            && sel.has(name)
        {
            b.put(name, v);
        }
    };
    put("sku_id", Some(Out::int(s.sku_id)));
    put("outer_id", s.outer_id.clone().map(Out::str));
    put("quantity", Some(Out::int(s.quantity)));
    put("properties", Some(Out::str(s.properties.clone())));
    put("properties_name", Some(Out::str(s.properties_name.clone())));
    put("price", Some(Out::str(money(s.price_fen))));
    put("barcode", s.barcode.clone().map(Out::str));
    put("modified", Some(Out::str(format_gmt8(s.modified))));
    put("status", Some(Out::str("normal")));
    b.build()
}

/// Renders a refund.
pub fn refund(r: &Refund, shop: &Shop, sel: &FieldSel, seller_nick: &str) -> Out {
    let trade = shop.trades.get(&r.tid);
    let line = trade.and_then(|t| t.orders.iter().find(|o| o.oid == r.oid));
    let mut b = ObjBuilder::new();
    let mut put = |name: &str, v: Option<Out>| {
        if let Some(v) = v
            && sel.has(name)
        {
            b.put(name, v);
        }
    };
    let t8 = |s: i64| Out::str(format_gmt8(s));
    put("refund_id", Some(Out::str(r.refund_id.clone())));
    put("tid", Some(Out::int(r.tid)));
    put("oid", Some(Out::int(r.oid)));
    put("status", Some(Out::str(r.status.clone())));
    put("good_status", Some(Out::str(r.good_status.clone())));
    put("has_good_return", Some(Out::bool(r.has_good_return)));
    put("refund_fee", Some(Out::str(money(r.refund_fee_fen))));
    put("reason", Some(Out::str(r.reason.clone())));
    put("desc", Some(Out::str("沙箱退款")));
    put("refund_phase", Some(Out::str(r.refund_phase.clone())));
    put("refund_version", Some(Out::int(r.created * 1000)));
    put("dispute_type", Some(Out::str("REFUND")));
    put("created", Some(t8(r.created)));
    put("modified", Some(t8(r.modified)));
    put("seller_nick", Some(Out::str(seller_nick)));
    put("buyer_nick", trade.map(|t| Out::str(t.buyer_nick.clone())));
    put("order_status", line.map(|o| Out::str(o.status.clone())));
    put("title", line.map(|o| Out::str(o.title.clone())));
    put("num", line.map(|o| Out::int(o.num)));
    put("num_iid", line.map(|o| Out::int(o.num_iid)));
    put("price", line.map(|o| Out::str(money(o.price_fen))));
    put(
        "total_fee",
        line.map(|o| Out::str(money(o.price_fen * o.num))),
    );
    put(
        "payment",
        line.map(|o| Out::str(money(o.price_fen * o.num))),
    );
    put(
        "outer_id",
        line.and_then(|o| o.outer_sku_id.clone().or(o.outer_iid.clone()))
            .map(Out::str),
    );
    put(
        "sku",
        line.and_then(|o| o.sku_properties_name.clone())
            .map(Out::str),
    );
    b.build()
}
