//! The "goods out" sections: `[shipping]`, `[waybill]`, `[stock]`, `[reconcile]`, their
//! checks, and the options types of the parts they configure.

use super::bounds::{self, Num};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[shipping]`: parcels and ship-by deadlines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShippingConfig {
    /// Released orders of one receiver (the same OAID: same buyer, same address) share one
    /// parcel and one waybill; each trade is still reported shipped on its own. An order that
    /// is held or gets a new address before it ships leaves the parcel by itself.
    pub merge_orders: bool,
    /// A warning alert this long before an order's ship-by deadline while it has not shipped;
    /// longer than `deadline_critical`. From 2m to 7d.
    #[serde(with = "humantime_serde")]
    pub deadline_warning: Duration,
    /// A critical alert this long before the deadline. From 1m to 1d.
    #[serde(with = "humantime_serde")]
    pub deadline_critical: Duration,
}

impl Default for ShippingConfig {
    fn default() -> Self {
        ShippingConfig {
            merge_orders: false,
            deadline_warning: Duration::from_secs(4 * 3600),
            deadline_critical: Duration::from_secs(3600),
        }
    }
}

impl ShippingConfig {
    pub(super) fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        bounds::check(
            bad,
            "shipping.deadline_warning",
            Num::Time(self.deadline_warning),
        );
        bounds::check(
            bad,
            "shipping.deadline_critical",
            Num::Time(self.deadline_critical),
        );
        if self.deadline_warning <= self.deadline_critical {
            bad(
                "shipping.deadline_warning",
                "must be longer than shipping.deadline_critical".into(),
            );
        }
    }
}

/// `[waybill]`: Cainiao e-waybills (`cainiao.waybill.ii.get`) for the shop. Leave `cp_code`
/// empty to run without e-waybills (shipments then need waybill numbers from elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WaybillConfig {
    /// The carrier's Cainiao code for this shop's parcels (`YTO`, `ZTO`, `SF`, …), as the
    /// waybill account is subscribed to it. The node serves one shop.
    pub cp_code: String,
    /// The waybill account's branch (网点) that issues the numbers. The sender address below
    /// must be the one registered with it.
    pub branch_code: String,
    /// The cloud-print template, e.g. `http://cloudprint.cainiao.com/template/standard/101`.
    pub template_url: String,
    /// The order channel of the trades (`TB` Taobao, `TM` Tmall).
    pub order_channels_type: String,
    /// Ask for encrypted print data (only the Cainiao print component can read it).
    pub need_encrypt: bool,
    /// Sender (the warehouse, as registered with the branch): name.
    pub sender_name: String,
    /// Sender mobile (this or `sender_phone`).
    pub sender_mobile: String,
    /// Sender phone (this or `sender_mobile`).
    pub sender_phone: String,
    /// Sender province.
    pub sender_province: String,
    /// Sender city.
    pub sender_city: String,
    /// Sender district.
    pub sender_district: String,
    /// Sender street and number.
    pub sender_detail: String,
    /// A waybill issued and not shipped after this long is a reconciliation finding. From 1h
    /// to 30d.
    #[serde(with = "humantime_serde")]
    pub unused_after: Duration,
}

impl Default for WaybillConfig {
    fn default() -> Self {
        WaybillConfig {
            cp_code: String::new(),
            branch_code: String::new(),
            template_url: String::new(),
            order_channels_type: "TB".into(),
            need_encrypt: true,
            sender_name: String::new(),
            sender_mobile: String::new(),
            sender_phone: String::new(),
            sender_province: String::new(),
            sender_city: String::new(),
            sender_district: String::new(),
            sender_detail: String::new(),
            unused_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl WaybillConfig {
    pub(super) fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        let w = self;
        bounds::check(bad, "waybill.unused_after", Num::Time(w.unused_after));
        if w.cp_code.is_empty() {
            return;
        }
        if w.cp_code.len() > 20
            || !w
                .cp_code
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            bad(
                "waybill.cp_code",
                format!(
                    "`{}` is not a Cainiao carrier code (capitals and digits, e.g. \"YTO\")",
                    w.cp_code
                ),
            );
        }
        let required = [
            ("waybill.branch_code", &w.branch_code),
            ("waybill.template_url", &w.template_url),
            ("waybill.sender_name", &w.sender_name),
            ("waybill.sender_province", &w.sender_province),
            ("waybill.sender_detail", &w.sender_detail),
        ];
        for (key, v) in required {
            if v.trim().is_empty() {
                bad(
                    key,
                    "is required when waybill.cp_code is set (e-waybills on)".into(),
                );
            }
        }
        if w.sender_mobile.trim().is_empty() && w.sender_phone.trim().is_empty() {
            bad(
                "waybill.sender_mobile",
                "waybill.sender_mobile or waybill.sender_phone is required when waybill.cp_code \
                 is set"
                    .into(),
            );
        }
        if w.sender_name.chars().count() > 40 {
            bad(
                "waybill.sender_name",
                "must be at most 40 characters".into(),
            );
        }
        if w.sender_detail.chars().count() > 256 {
            bad(
                "waybill.sender_detail",
                "must be at most 256 characters".into(),
            );
        }
        if !w.template_url.is_empty()
            && let Err(e) = super::http_url(&w.template_url)
        {
            bad("waybill.template_url", e);
        }
        if !matches!(w.order_channels_type.as_str(), "TB" | "TM") {
            bad(
                "waybill.order_channels_type",
                format!("`{}` must be \"TB\" or \"TM\"", w.order_channels_type),
            );
        }
    }
}

/// `[stock]`: what the shop is told about stock (DOMAIN.md §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StockConfig {
    /// A correction (a refund's freed units, the first figure, `stock push`, resume) reads
    /// the shop's figure only while order intake lags less than this, then waits until intake
    /// has passed that reading and sends the difference to the ledger as a delta (`type=2`),
    /// so sales made meanwhile stay subtracted (docs/STOCK.md). Warehouse changes (receipts,
    /// counts, put-backs) go as deltas, and a zero goes at once, whatever the lag. Longer than
    /// `taobao.poll_interval` + 10s. From 11s to 1h.
    #[serde(with = "humantime_serde")]
    pub max_intake_lag: Duration,
}

impl Default for StockConfig {
    fn default() -> Self {
        StockConfig {
            max_intake_lag: Duration::from_secs(300),
        }
    }
}

impl StockConfig {
    pub(super) fn check(&self, poll_interval: Duration, bad: &mut dyn FnMut(&str, String)) {
        bounds::check(bad, "stock.max_intake_lag", Num::Time(self.max_intake_lag));
        if self.max_intake_lag < poll_interval.saturating_add(Duration::from_secs(10)) {
            bad(
                "stock.max_intake_lag",
                "must be longer than taobao.poll_interval + 10s (a lag below it never happens)"
                    .into(),
            );
        }
    }
}

/// `[reconcile]`: the comparison with Taobao (DOMAIN.md §11), on top of `wms-node reconcile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReconcileConfig {
    /// How often every check but the stock check runs (and after every outage). From 5m to 1d.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// How often the stock check runs (it reads every listed item's stock); not shorter than
    /// `every`. From 5m to 7d.
    #[serde(with = "humantime_serde")]
    pub stock_every: Duration,
    /// A shipment not confirmed by Taobao this long after the ship scan is a finding. From 1m
    /// to 1d.
    #[serde(with = "humantime_serde")]
    pub stuck_after: Duration,
    /// How many days back (by creation) trades are compared. From 1 to 90.
    pub days: u32,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        ReconcileConfig {
            every: Duration::from_secs(3600),
            stock_every: Duration::from_secs(24 * 3600),
            stuck_after: Duration::from_secs(1800),
            days: 3,
        }
    }
}

impl ReconcileConfig {
    pub(super) fn check(&self, bad: &mut dyn FnMut(&str, String)) {
        bounds::check(bad, "reconcile.every", Num::Time(self.every));
        bounds::check(bad, "reconcile.stock_every", Num::Time(self.stock_every));
        bounds::check(bad, "reconcile.stuck_after", Num::Time(self.stuck_after));
        bounds::check(bad, "reconcile.days", Num::Int(u64::from(self.days)));
        if self.stock_every < self.every {
            bad(
                "reconcile.stock_every",
                "must not be shorter than reconcile.every".into(),
            );
        }
    }
}
