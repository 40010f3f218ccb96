//! Alerts: conditions an operator must act on (re-authorize, dead letters, disk cap, …).
//!
//! Any module raises an alert through a cloned [`Alerts`] handle. An alert is logged once
//! when raised, counted in the `wms_node_alerts_raised_total{code}` metric, kept in the active set
//! until cleared, and broadcast to subscribers (the status page, the gateway MQTT topic).
//! Raising an already active alert updates its message without logging again, so a loop
//! that hits the same condition does not flood the log.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::broadcast;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention today.
    Warning,
    /// Needs attention now: shipments or stock are at risk.
    Critical,
}

/// What an alert is about: one variant per condition an operator acts on. Its string form
/// ([`AlertCode::as_str`]) is stable: the `code` label of `wms_node_alerts_raised_total`, the
/// `code` of the status JSON, and (with the `"Goods out"` alert type) of webhooks and MQTT. Its
/// number ([`AlertCode::number`]) is stable too and never reused, for screens too small for a
/// word. Each variant's doc says what happened and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertCode {
    /// The shop's authorisation is gone (expired and not refreshable, or refused): delivery
    /// to Taobao is paused, ops keep queueing. Run `wms-node auth login`.
    Reauthorize,
    /// The access token expires soon and cannot be refreshed by the node. Re-authorise
    /// before it does.
    TokenExpiry,
    /// The app used 80 % (warning) or all (critical) of its daily TOP call budget.
    /// Raise `taobao.daily_call_budget` with the platform, or wait for the next GMT+8 day.
    TaobaoCallBudget,
    /// Taobao refused a request's timestamp (code 31): the box's clock is off. Check NTP.
    Clock,
    /// Taobao refused a request's signature (code 25): check `taobao.app_secret` and
    /// `taobao.sign_method`.
    TaobaoSignature,
    /// Taobao banned every call of the app for a while (code 7); calls resume by themselves.
    TaobaoAppBan,
    /// A shipment was refused because the trade was closed on Taobao (a refund won the race):
    /// the parcel must be stopped.
    ShippedClosedTrade,
    /// An outbox op was refused for good and moved to the dead letters. Fix the cause, then
    /// `wms-node queue retry SEQ` (or `queue drop`).
    DeadLetter,
    /// Outbox delivery is paused (credentials rejected); ops keep queueing. Re-authorise.
    OutboxPaused,
    /// Queued ops were dropped to stay under the byte cap (`drop_oldest` policy). Raise
    /// `store.max_bytes` or restore the link.
    OutboxDropped,
    /// The outbox nears (warning) or reached (critical) its byte cap. Is the link down?
    StoreCap,
    /// The disk holding the store is full: nothing new can be recorded. Free space.
    StoreDiskFull,
    /// Undecodable records were moved to quarantine; the node carries on without them. See
    /// `wms-node queue stats`.
    StoreQuarantine,
    /// An earlier release ran on its store (`wms-node.redb`) after this one had converted it,
    /// so it was converted again; this release's previous file was set aside. Check what was
    /// queued only there (docs/OPERATIONS.md, *Upgrading from a release before redb 5*).
    StoreSuperseded,
    /// The store cannot write because of an I/O error (a failing card or disk); it reopens
    /// itself until it can. Check the device (`dmesg`); if it keeps failing, replace the card
    /// and restore a backup.
    StoreIo,
    /// The last OTA update failed (download, verification or install) or its trial boot was
    /// rolled back; the node runs the previous build. `wms-node ota status` says why.
    OtaFailed,
    /// Orders are held because a line maps to no SKU (or to several). Fix the map with
    /// `wms-node sku import` or `sku sync`; the orders are released by themselves.
    UnmappedSku,
    /// A held order's shipment was cancelled before its parcel left: pull the parcel.
    PullParcel,
    /// An order was refunded or closed after its parcel left: ask the carrier to intercept.
    CourierInterception,
    /// Taobao shows an order shipped that the floor never handed over (shipped by hand?).
    ShippedElsewhere,
    /// A trade's full record could not be decoded and was skipped (read again at the
    /// re-scan).
    UnreadableTrade,
    /// Taobao has a trade shipped with another waybill number than the one the floor shipped
    /// it with (B04 on the `Ship` op): one of the parcels is not what the buyer tracks. Check
    /// both numbers; `logistics.consign.resend` changes the number (within 50 days).
    ShippedOtherWaybill,
    /// An order is within 4 h (warning) or 1 h (critical) of its ship-by deadline and has not
    /// shipped: pick and pack it first (the penalty is 5 % of the item, ¥5–¥30).
    ShipDeadline,
    /// Shipments are queued while the link to Taobao is down and a ship-by deadline is near:
    /// restore the link (a phone hotspot will do) before the deadline passes.
    DeadlineOutage,
    /// Taobao refused a stock push for good (item deleted, pre-sale item, units withheld by
    /// the platform): check the listing; the SKU map may be stale.
    StockPushRefused,
    /// Cainiao refused an e-waybill request (account, branch, sender address or template):
    /// check `[waybill]` and the waybill account's balance.
    WaybillRefused,
    /// A reconciliation check could not run (Taobao unreachable, no session): it runs again
    /// at the next cycle.
    ReconcileNotRun,
    /// Reconciliation: shipped here (through the ship scan) but still unshipped on Taobao: the
    /// `Ship` op failed or is stuck. See `wms-node queue list`.
    ShippedNotOnTaobao,
    /// Reconciliation: closed or refunded on Taobao but still active on the floor (a missed
    /// interception): stop the order.
    ClosedButActive,
    /// Reconciliation: paid and waiting to ship on Taobao, missing here (a missed pull).
    MissingOrder,
    /// Reconciliation: the platform's stock differs from what the node pushed (edited in 千牛,
    /// or a push failed): `wms-node stock push SKU` puts it right.
    StockDrift,
    /// Reconciliation: e-waybills issued and not shipped for hours: ship or void them.
    UnusedWaybill,
    /// Reconciliation: outbox ops dead or stuck in retry, a ban, an expiring token or intake
    /// lag.
    StuckOps,
    /// Reconciliation: the store holds quarantined records, or the outbox reached its cap.
    StoreProblem,
}

impl AlertCode {
    /// Every code, in number order.
    pub const ALL: [AlertCode; 34] = [
        AlertCode::Reauthorize,
        AlertCode::TokenExpiry,
        AlertCode::TaobaoCallBudget,
        AlertCode::Clock,
        AlertCode::TaobaoSignature,
        AlertCode::TaobaoAppBan,
        AlertCode::ShippedClosedTrade,
        AlertCode::DeadLetter,
        AlertCode::OutboxPaused,
        AlertCode::OutboxDropped,
        AlertCode::StoreCap,
        AlertCode::StoreDiskFull,
        AlertCode::StoreQuarantine,
        AlertCode::StoreSuperseded,
        AlertCode::StoreIo,
        AlertCode::OtaFailed,
        AlertCode::UnmappedSku,
        AlertCode::PullParcel,
        AlertCode::CourierInterception,
        AlertCode::ShippedElsewhere,
        AlertCode::UnreadableTrade,
        AlertCode::ShippedOtherWaybill,
        AlertCode::ShipDeadline,
        AlertCode::DeadlineOutage,
        AlertCode::StockPushRefused,
        AlertCode::WaybillRefused,
        AlertCode::ReconcileNotRun,
        AlertCode::ShippedNotOnTaobao,
        AlertCode::ClosedButActive,
        AlertCode::MissingOrder,
        AlertCode::StockDrift,
        AlertCode::UnusedWaybill,
        AlertCode::StuckOps,
        AlertCode::StoreProblem,
    ];

    /// The stable string form (metrics, JSON): `"reauthorize"`, `"dead_letter"`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            AlertCode::Reauthorize => "reauthorize",
            AlertCode::TokenExpiry => "token_expiry",
            AlertCode::TaobaoCallBudget => "taobao_call_budget",
            AlertCode::Clock => "clock",
            AlertCode::TaobaoSignature => "taobao_signature",
            AlertCode::TaobaoAppBan => "taobao_app_ban",
            AlertCode::ShippedClosedTrade => "shipped_closed_trade",
            AlertCode::DeadLetter => "dead_letter",
            AlertCode::OutboxPaused => "outbox_paused",
            AlertCode::OutboxDropped => "outbox_dropped",
            AlertCode::StoreCap => "store_cap",
            AlertCode::StoreDiskFull => "store_disk_full",
            AlertCode::StoreQuarantine => "store_quarantine",
            AlertCode::StoreSuperseded => "store_superseded",
            AlertCode::StoreIo => "store_io",
            AlertCode::OtaFailed => "ota_failed",
            AlertCode::UnmappedSku => "unmapped_sku",
            AlertCode::PullParcel => "pull_parcel",
            AlertCode::CourierInterception => "courier_interception",
            AlertCode::ShippedElsewhere => "shipped_elsewhere",
            AlertCode::UnreadableTrade => "unreadable_trade",
            AlertCode::ShippedOtherWaybill => "shipped_other_waybill",
            AlertCode::ShipDeadline => "ship_deadline",
            AlertCode::DeadlineOutage => "deadline_outage",
            AlertCode::StockPushRefused => "stock_push_refused",
            AlertCode::WaybillRefused => "waybill_refused",
            AlertCode::ReconcileNotRun => "reconcile_not_run",
            AlertCode::ShippedNotOnTaobao => "shipped_not_on_taobao",
            AlertCode::ClosedButActive => "closed_but_active",
            AlertCode::MissingOrder => "missing_order",
            AlertCode::StockDrift => "stock_drift",
            AlertCode::UnusedWaybill => "unused_waybill",
            AlertCode::StuckOps => "stuck_ops",
            AlertCode::StoreProblem => "store_problem",
        }
    }

    /// The stable number: 1xx Taobao, 2xx outbox, 3xx store, 4xx OTA, 5xx intake and
    /// orders, 6xx shipments, stock and reconciliation. Never reused.
    pub fn number(self) -> u16 {
        match self {
            AlertCode::Reauthorize => 101,
            AlertCode::TokenExpiry => 102,
            AlertCode::TaobaoCallBudget => 103,
            AlertCode::Clock => 104,
            AlertCode::TaobaoSignature => 105,
            AlertCode::TaobaoAppBan => 106,
            AlertCode::ShippedClosedTrade => 107,
            AlertCode::DeadLetter => 201,
            AlertCode::OutboxPaused => 202,
            AlertCode::OutboxDropped => 203,
            AlertCode::StoreCap => 301,
            AlertCode::StoreDiskFull => 302,
            AlertCode::StoreQuarantine => 303,
            AlertCode::StoreSuperseded => 304,
            AlertCode::StoreIo => 305,
            AlertCode::OtaFailed => 401,
            AlertCode::UnmappedSku => 501,
            AlertCode::PullParcel => 502,
            AlertCode::CourierInterception => 503,
            AlertCode::ShippedElsewhere => 504,
            AlertCode::UnreadableTrade => 505,
            AlertCode::ShippedOtherWaybill => 601,
            AlertCode::ShipDeadline => 602,
            AlertCode::DeadlineOutage => 603,
            AlertCode::StockPushRefused => 604,
            AlertCode::WaybillRefused => 605,
            AlertCode::ReconcileNotRun => 610,
            AlertCode::ShippedNotOnTaobao => 611,
            AlertCode::ClosedButActive => 612,
            AlertCode::MissingOrder => 613,
            AlertCode::StockDrift => 614,
            AlertCode::UnusedWaybill => 615,
            AlertCode::StuckOps => 616,
            AlertCode::StoreProblem => 617,
        }
    }

    /// How urgent it is unless the raiser knows better (a dead letter of a shipment is
    /// critical, of a stock update a warning; the byte cap warns first).
    pub fn default_severity(self) -> Severity {
        match self {
            AlertCode::Reauthorize
            | AlertCode::TaobaoSignature
            | AlertCode::ShippedClosedTrade
            | AlertCode::OutboxPaused
            | AlertCode::StoreDiskFull
            | AlertCode::StoreIo
            | AlertCode::PullParcel
            | AlertCode::CourierInterception
            | AlertCode::DeadlineOutage
            | AlertCode::ShippedNotOnTaobao
            | AlertCode::ClosedButActive => Severity::Critical,
            AlertCode::TokenExpiry
            | AlertCode::TaobaoCallBudget
            | AlertCode::Clock
            | AlertCode::TaobaoAppBan
            | AlertCode::DeadLetter
            | AlertCode::OutboxDropped
            | AlertCode::StoreCap
            | AlertCode::StoreQuarantine
            | AlertCode::StoreSuperseded
            | AlertCode::OtaFailed
            | AlertCode::UnmappedSku
            | AlertCode::ShippedElsewhere
            | AlertCode::UnreadableTrade
            | AlertCode::ShippedOtherWaybill
            | AlertCode::ShipDeadline
            | AlertCode::StockPushRefused
            | AlertCode::WaybillRefused
            | AlertCode::ReconcileNotRun
            | AlertCode::MissingOrder
            | AlertCode::StockDrift
            | AlertCode::UnusedWaybill
            | AlertCode::StuckOps
            | AlertCode::StoreProblem => Severity::Warning,
        }
    }
}

impl std::fmt::Display for AlertCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert. `message` is for people and carries ids only, never secrets or buyer data.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// What it is about (serialized as its stable string form).
    pub code: AlertCode,
    /// How urgent.
    pub severity: Severity,
    /// What happened and what to do.
    pub message: String,
    /// When it was (last) raised.
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
}

/// A cheap, cloneable handle to the node's alert set.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Mutex<BTreeMap<AlertCode, Alert>>>,
    tx: broadcast::Sender<Alert>,
}

impl Default for Alerts {
    fn default() -> Self {
        Self::new()
    }
}

impl Alerts {
    /// An empty alert set.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(64);
        Alerts {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
            tx,
        }
    }

    /// Raises (or refreshes) the alert `code` at its default severity.
    pub fn raise_default(&self, code: AlertCode, message: impl Into<String>) {
        self.raise(code, code.default_severity(), message);
    }

    /// Raises (or refreshes) the alert `code`.
    pub fn raise(&self, code: AlertCode, severity: Severity, message: impl Into<String>) {
        let code_str = code.as_str();
        let alert = Alert {
            code,
            severity,
            message: message.into(),
            at: SystemTime::now(),
        };
        let fresh = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            map.insert(code, alert.clone()).is_none()
        };
        if fresh {
            match severity {
                Severity::Info => tracing::info!(alert = code_str, "{}", alert.message),
                Severity::Warning => tracing::warn!(alert = code_str, "{}", alert.message),
                Severity::Critical => tracing::error!(alert = code_str, "{}", alert.message),
            }
            metrics::counter!("wms_node_alerts_raised_total", "code" => code_str).increment(1);
        }
        let _ = self.tx.send(alert);
    }

    /// Clears the alert `code` if it is active.
    pub fn clear(&self, code: AlertCode) {
        let was = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&code);
        if was.is_some() {
            tracing::info!(alert = code.as_str(), "alert cleared");
        }
    }

    /// The active alerts, most severe first.
    pub fn active(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.code.cmp(&b.code))
        });
        v
    }

    /// Whether `code` is active.
    pub fn is_active(&self, code: AlertCode) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&code)
    }

    /// Every alert raised from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Alert> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_twice_keeps_one_active_alert_and_clear_removes_it() {
        let alerts = Alerts::new();
        alerts.raise(AlertCode::Reauthorize, Severity::Critical, "token expired");
        alerts.raise_default(AlertCode::Reauthorize, "token still expired");
        alerts.raise(
            AlertCode::StoreCap,
            Severity::Warning,
            "80% of the byte cap",
        );
        let active = alerts.active();
        assert_eq!(active.len(), 2);
        assert_eq!(active[0].code, AlertCode::Reauthorize);
        assert_eq!(active[0].severity, Severity::Critical);
        assert_eq!(active[0].message, "token still expired");
        alerts.clear(AlertCode::Reauthorize);
        assert!(!alerts.is_active(AlertCode::Reauthorize));
        assert!(alerts.is_active(AlertCode::StoreCap));
    }

    #[test]
    fn codes_have_one_stable_string_and_number_each() {
        let mut strings = std::collections::HashSet::new();
        let mut numbers = std::collections::HashSet::new();
        for code in AlertCode::ALL {
            assert!(strings.insert(code.as_str()), "{code} twice");
            assert!(numbers.insert(code.number()), "{} twice", code.number());
            // The JSON form is the string form, both ways.
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, code.as_str());
            assert_eq!(serde_json::from_value::<AlertCode>(json).ok(), Some(code));
        }
        assert!(
            AlertCode::ALL
                .windows(2)
                .all(|w| w[0].number() < w[1].number())
        );
        assert_eq!(AlertCode::DeadLetter.as_str(), "dead_letter");
        assert_eq!(
            AlertCode::Reauthorize.default_severity(),
            Severity::Critical
        );
    }
}
