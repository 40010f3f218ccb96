//! Alerts: conditions an operator must act on (re-authorize, dead letters, a full disk, …),
//! the node's one alert type and the handle every part raises it through.
//!
//! ```text
//!   any part ──raise / raise_about / clear / clear_about──▶ Alerts (the book, in memory)
//!                                                             │ events: raised · updated · resolved
//!            ┌──────────────────────────┬─────────────────────┼──────────────────────┐
//!            ▼                          ▼                     ▼                      ▼
//!   log (once per change),   status page, /healthz,   subscribe(): the floor    ops::notify: the
//!   metrics                  /metrics (gauges)        publishes on MQTT         store + webhooks
//! ```
//!
//! An [`Alert`] is one episode of one condition: its [`AlertCode`], an optional [`Subject`]
//! (a tid, a SKU, a disk path, an op kind: several alerts of one code may be active for
//! different subjects), its severity and message, when it was first and last seen, how often it
//! was raised, and when it was resolved. Alerts are de-duplicated by `(code, subject)`: raising
//! an active one updates it (message, severity, last seen, count) and logs nothing new, so a
//! loop that hits the same condition on every turn neither floods the log nor the webhook.
//! [`Alerts::clear`] resolves it: it moves to the bounded history and a `resolved` event goes
//! out. Codes that name one-off events rather than conditions ([`AlertCode::expires_after`])
//! resolve by themselves when they were not seen again for a day.
//!
//! The handle never blocks on I/O and never fails: it is called from the store's writer
//! thread and from hot paths (`clear` runs after every commit and every Taobao call, and
//! costs a lock and a map lookup). Persistence and delivery happen elsewhere: `ops::notify`
//! restores the book from the store at start, writes every change to the store, and queues
//! the webhook notices in the same transaction.
//!
//! Messages carry ids and counts only, never secrets or buyer data; they are cut at
//! [`MAX_MESSAGE`] bytes.

mod book;

pub use book::{Book, DEFAULT_HISTORY, KeyState, MAX_ACTIVE};

use firmware_bridge::proto::alert::{AlertEventKind as WireEvent, AlertMessage, AlertSubject};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};

/// Longest message kept, in bytes (longer ones are cut at a character boundary, with `…`).
pub const MAX_MESSAGE: usize = 1000;

/// How urgent an alert is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention today.
    Warning,
    /// Needs attention now: shipments or stock are at risk.
    Critical,
}

impl Severity {
    /// Every severity, least urgent first.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// `"info"`, `"warning"` or `"critical"`: the word on the status page, in JSON and in the
    /// `severity` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    fn wire(self) -> firmware_bridge::proto::alert::AlertSeverity {
        use firmware_bridge::proto::alert::AlertSeverity as W;
        match self {
            Severity::Info => W::Info,
            Severity::Warning => W::Warning,
            Severity::Critical => W::Critical,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an alert is about: one variant per condition an operator acts on. Its string form
/// ([`AlertCode::as_str`]) is stable: the `code` label of the alert metrics, the `code` of the
/// status JSON, of webhooks and of MQTT. Its number ([`AlertCode::number`]) is stable too and
/// never reused, for screens too small for a word, and it is what the store keeps (never the
/// variant's position, so variants may be added anywhere). Each variant's doc says what
/// happened and what to do.
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
    /// the parcel must be stopped. One alert per trade (subject `tid`).
    ShippedClosedTrade,
    /// Outbox ops were refused for good and are in the dead letters (one alert per op kind,
    /// subject `op_kind`, active while any is there). Fix the cause, then
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
    /// The last OTA update could not be completed (the download gave up, a disk error);
    /// nothing was installed and the running build is unchanged. Applying it again resumes
    /// the download. `wms-node ota status` says why.
    OtaFailed,
    /// The last OTA update was refused: a bad or missing signature, a key not in
    /// `[ota] public_keys`, a wrong size or hash, or a downgrade. Nothing was installed. A bad
    /// signature that the fleet did not send is worth a look at who can publish updates.
    OtaRefused,
    /// The last OTA update failed its trial boot (its self-test, an exit, a panic, the
    /// deadline) and was rolled back; the previous build runs. `wms-node ota status` says why.
    OtaRolledBack,
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
    /// The node was restarted three or more times in a row without running steadily in
    /// between (it crashed, was killed, or stopped with an error a restart may cure); systemd
    /// keeps restarting it, each time later. `journalctl -u wms-node` says why it stopped.
    RestartLoop,
    /// Alert notices cannot reach the configured webhook: it refuses them (a wrong URL token,
    /// signing secret, keyword or IP allow-list in the robot's settings) or answers with an
    /// error. Notices keep queueing; check `[alerts]` and the robot's security settings.
    AlertDelivery,
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
    pub const ALL: &'static [AlertCode] = &[
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
        AlertCode::OtaRefused,
        AlertCode::OtaRolledBack,
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
        AlertCode::RestartLoop,
        AlertCode::AlertDelivery,
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
            AlertCode::OtaRefused => "ota_refused",
            AlertCode::OtaRolledBack => "ota_rolled_back",
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
            AlertCode::RestartLoop => "restart_loop",
            AlertCode::AlertDelivery => "alert_delivery",
        }
    }

    /// The stable number: 1xx Taobao, 2xx outbox, 3xx store, 4xx OTA, 5xx intake and orders,
    /// 6xx stock and shipping, 7xx floor, 8xx the node's own process and HTTP server, 9xx alert
    /// delivery. Never reused.
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
            AlertCode::OtaRefused => 402,
            AlertCode::OtaRolledBack => 403,
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
            AlertCode::RestartLoop => 801,
            AlertCode::AlertDelivery => 901,
        }
    }

    /// The code with this number (`None` for one this build does not know: a store written
    /// by a newer build after a rollback).
    pub fn from_number(number: u16) -> Option<AlertCode> {
        AlertCode::ALL
            .iter()
            .copied()
            .find(|c| c.number() == number)
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
            | AlertCode::ClosedButActive
            | AlertCode::RestartLoop => Severity::Critical,
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
            | AlertCode::OtaRefused
            | AlertCode::OtaRolledBack
            | AlertCode::UnmappedSku
            | AlertCode::ShippedElsewhere
            | AlertCode::UnreadableTrade
            | AlertCode::AlertDelivery
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

    /// For codes that name a one-off event rather than a condition that something clears
    /// (a parcel shipped for a closed trade, ops dropped at the cap, records quarantined): how
    /// long after it was last raised the alert resolves by itself. `None` for conditions,
    /// which stay active until their owner clears them (also across restarts).
    pub fn expires_after(self) -> Option<Duration> {
        match self {
            AlertCode::ShippedClosedTrade
            | AlertCode::OutboxDropped
            | AlertCode::StoreQuarantine
            | AlertCode::PullParcel
            | AlertCode::CourierInterception
            | AlertCode::ShippedElsewhere
            | AlertCode::UnreadableTrade
            | AlertCode::ShippedOtherWaybill
            | AlertCode::StockPushRefused => Some(Duration::from_secs(24 * 3600)),
            _ => None,
        }
    }
}

impl std::fmt::Display for AlertCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an alert is about, when it is about one thing of several: a trade, a SKU, a disk
/// path, a kind of op. Two alerts of one code with different subjects are two alerts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// What sort of thing: `tid`, `sku`, `path`, `op_kind`, `table`, … (`[a-z0-9_]`).
    pub kind: String,
    /// Which one (an id, never buyer data).
    pub id: String,
}

impl Subject {
    /// A subject of kind `kind` (lower-case letters, digits and `_`; anything else becomes
    /// `_`); both parts are cut to the wire's limits.
    pub fn new(kind: &str, id: impl Into<String>) -> Subject {
        use firmware_bridge::proto::alert::{MAX_ALERT_NAME, MAX_SUBJECT_ID};
        let kind: String = kind
            .chars()
            .take(MAX_ALERT_NAME)
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_lowercase() || c.is_ascii_digit() {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut id = id.into();
        cut(&mut id, MAX_SUBJECT_ID);
        if id.is_empty() {
            id.push('-');
        }
        Subject {
            kind: if kind.is_empty() { "_".into() } else { kind },
            id,
        }
    }

    /// A trade (`tid`; `u64` inside, but some Taobao types still carry `i64`).
    pub fn tid(tid: impl Into<i128>) -> Subject {
        Subject::new("tid", tid.into().to_string())
    }

    /// A WMS SKU.
    pub fn sku(sku: &str) -> Subject {
        Subject::new("sku", sku)
    }

    /// A file or directory (a disk, the store).
    pub fn path(path: &std::path::Path) -> Subject {
        Subject::new("path", path.display().to_string())
    }

    /// A kind of outbox op (`ship`, `set_stock`).
    pub fn op_kind(kind: &str) -> Subject {
        Subject::new("op_kind", kind)
    }

    /// A floor device (scanner, printer).
    pub fn device(id: &str) -> Subject {
        Subject::new("device", id)
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

/// What de-duplicates alerts: at most one is active per key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertKey {
    /// The condition.
    pub code: AlertCode,
    /// What it is about, if one thing.
    pub subject: Option<Subject>,
}

impl std::fmt::Display for AlertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.subject {
            Some(s) => write!(f, "{} ({s})", self.code),
            None => write!(f, "{}", self.code),
        }
    }
}

/// One episode of one alert: from raised to resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// The episode's id: unique in this node, increasing, the same from raised to resolved.
    pub id: u64,
    /// The condition.
    pub code: AlertCode,
    /// How urgent, as last raised.
    pub severity: Severity,
    /// What it is about, if one thing.
    pub subject: Option<Subject>,
    /// What happened and what to do, as last raised (ids only).
    pub message: String,
    /// When it was first raised (Unix ms).
    pub first_seen_ms: u64,
    /// When it was last raised (Unix ms).
    pub last_seen_ms: u64,
    /// How often it was raised in this episode.
    pub count: u64,
    /// When it was resolved (Unix ms); `None` while active.
    pub resolved_ms: Option<u64>,
}

impl Alert {
    /// Its de-duplication key.
    pub fn key(&self) -> AlertKey {
        AlertKey {
            code: self.code,
            subject: self.subject.clone(),
        }
    }

    /// Whether it is still active.
    pub fn is_active(&self) -> bool {
        self.resolved_ms.is_none()
    }

    /// How long it has been (or was) active, at `now_ms`.
    pub fn active_for(&self, now_ms: u64) -> Duration {
        let end = self.resolved_ms.unwrap_or(now_ms);
        Duration::from_millis(end.saturating_sub(self.first_seen_ms))
    }

    /// The wire message of `event` for this alert (the MQTT `alert` topic, the plain JSON
    /// webhook), sent by node `node` of site `site`.
    pub fn to_message(&self, event: AlertEventKind, node: &str, site: &str) -> AlertMessage {
        AlertMessage {
            v: firmware_bridge::proto::VERSION,
            event: match event {
                AlertEventKind::Raised => WireEvent::Raised,
                AlertEventKind::Updated => WireEvent::Updated,
                AlertEventKind::Resolved => WireEvent::Resolved,
            },
            id: self.id.to_string(),
            code: self.code.as_str().to_owned(),
            number: self.code.number(),
            severity: self.severity.wire(),
            subject: self.subject.as_ref().map(|s| AlertSubject {
                kind: s.kind.clone(),
                id: s.id.clone(),
            }),
            message: self.message.clone(),
            first_seen: rfc3339(self.first_seen_ms),
            last_seen: rfc3339(self.last_seen_ms),
            count: self.count,
            resolved_at: self
                .resolved_ms
                .filter(|_| event == AlertEventKind::Resolved)
                .map(rfc3339),
            node: node.to_owned(),
            site: site.to_owned(),
        }
    }
}

/// `/healthz` and the admin API show an alert with the wire's field names (without `event`,
/// `node` and `site`): ids as strings, times as RFC 3339 (UTC).
impl Serialize for Alert {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            id: String,
            code: &'static str,
            number: u16,
            severity: Severity,
            #[serde(skip_serializing_if = "Option::is_none")]
            subject: Option<&'a Subject>,
            message: &'a str,
            first_seen: String,
            last_seen: String,
            count: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            resolved_at: Option<String>,
        }
        View {
            id: self.id.to_string(),
            code: self.code.as_str(),
            number: self.code.number(),
            severity: self.severity,
            subject: self.subject.as_ref(),
            message: &self.message,
            first_seen: rfc3339(self.first_seen_ms),
            last_seen: rfc3339(self.last_seen_ms),
            count: self.count,
            resolved_at: self.resolved_ms.map(rfc3339),
        }
        .serialize(s)
    }
}

/// What happened to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertEventKind {
    /// It became active.
    Raised,
    /// It is still active; its severity or message changed, or (at most once a minute) its
    /// count and last-seen time.
    Updated,
    /// It was resolved.
    Resolved,
}

/// A change of one alert, as [`Alerts::subscribe`] hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    /// What happened.
    pub kind: AlertEventKind,
    /// The alert after the change.
    pub alert: Alert,
}

/// A cheap, cloneable handle to the node's alerts. See the module doc.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    book: Mutex<Book>,
    events: broadcast::Sender<AlertEvent>,
    /// Wakes `ops::notify` when the book has changes to persist.
    changed: Notify,
    /// The `(code, severity)` pairs of the active-alert gauge set so far (to zero them).
    gauges: Mutex<BTreeSet<(AlertCode, Severity)>>,
}

impl Default for Alerts {
    fn default() -> Self {
        Self::new()
    }
}

/// Events a subscriber may fall behind by before it misses some (it is told how many).
const EVENT_BACKLOG: usize = 256;

impl Alerts {
    /// No alerts yet. The episode ids start at the current time in microseconds, so they
    /// keep increasing across restarts even before the store's are known.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        Alerts {
            inner: Arc::new(Inner {
                book: Mutex::new(Book::new(now_ms().saturating_mul(1000))),
                events,
                changed: Notify::new(),
                gauges: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while the lock was held leaves plain data behind, never a broken invariant.
        self.inner
            .book
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Raises (or refreshes) the alert `code`, about nothing in particular.
    pub fn raise(&self, code: AlertCode, severity: Severity, message: impl Into<String>) {
        self.raise_key(code, None, severity, message.into());
    }

    /// Raises (or refreshes) the alert `code` at its default severity.
    pub fn raise_default(&self, code: AlertCode, message: impl Into<String>) {
        self.raise_key(code, None, code.default_severity(), message.into());
    }

    /// Raises (or refreshes) the alert `code` about `subject` (one alert per subject).
    pub fn raise_about(
        &self,
        code: AlertCode,
        subject: Subject,
        severity: Severity,
        message: impl Into<String>,
    ) {
        self.raise_key(code, Some(subject), severity, message.into());
    }

    fn raise_key(
        &self,
        code: AlertCode,
        subject: Option<Subject>,
        severity: Severity,
        mut message: String,
    ) {
        cut(&mut message, MAX_MESSAGE);
        let key = AlertKey { code, subject };
        let raised = self.book().raise(key, severity, message, now_ms());
        let Some(event) = raised.event else {
            return;
        };
        let a = &event.alert;
        let (code_str, key) = (a.code.as_str(), a.key());
        if raised.fresh {
            match a.severity {
                Severity::Info => tracing::info!(alert = code_str, key = %key, "{}", a.message),
                Severity::Warning => tracing::warn!(alert = code_str, key = %key, "{}", a.message),
                Severity::Critical => {
                    tracing::error!(alert = code_str, key = %key, "{}", a.message)
                }
            }
            metrics::counter!("wms_node_alerts_raised_total", "code" => code_str).increment(1);
        } else if let Some(was) = raised.regraded {
            tracing::warn!(alert = code_str, key = %key, from = %was, to = %a.severity,
                "alert severity changed: {}", a.message);
        }
        if raised.fresh || raised.regraded.is_some() {
            self.update_gauges();
        }
        self.changed();
        let _ = self.inner.events.send(event);
    }

    /// Resolves every active alert of `code`, whatever its subject.
    pub fn clear(&self, code: AlertCode) {
        let resolved = self.book().clear(code, None, now_ms());
        self.resolved(resolved);
    }

    /// Resolves the alert `code` about `subject`, if active.
    pub fn clear_about(&self, code: AlertCode, subject: &Subject) {
        let resolved = self.book().clear(code, Some(subject), now_ms());
        self.resolved(resolved);
    }

    /// Resolves the one-off alerts ([`AlertCode::expires_after`]) not raised again within
    /// their time. `ops::notify` calls it every minute.
    pub fn expire(&self) {
        let resolved = self.book().expire(now_ms());
        self.resolved(resolved);
    }

    fn resolved(&self, events: Vec<AlertEvent>) {
        if events.is_empty() {
            return;
        }
        for e in &events {
            let a = &e.alert;
            tracing::info!(alert = a.code.as_str(), key = %a.key(), count = a.count,
                active_for = %humantime::format_duration(round_secs(a.active_for(now_ms()))),
                "alert resolved");
            metrics::counter!("wms_node_alerts_resolved_total", "code" => a.code.as_str())
                .increment(1);
        }
        self.update_gauges();
        self.changed();
        for e in events {
            let _ = self.inner.events.send(e);
        }
    }

    /// Whether any alert of `code` is active.
    pub fn is_active(&self, code: AlertCode) -> bool {
        self.book().is_active(code)
    }

    /// The active alert `code` about `subject` (`None`: about nothing in particular).
    pub fn get(&self, code: AlertCode, subject: Option<&Subject>) -> Option<Alert> {
        self.book().get(code, subject)
    }

    /// The subjects of the active alerts of `code`.
    pub fn subjects(&self, code: AlertCode) -> Vec<Option<Subject>> {
        self.book().subjects(code)
    }

    /// The active alerts, most severe first, then oldest first.
    pub fn active(&self) -> Vec<Alert> {
        self.book().active()
    }

    /// The resolved alerts kept (newest first; `[alerts] history` of them).
    pub fn history(&self) -> Vec<Alert> {
        self.book().history()
    }

    /// Every change from now on: raised, updated (at most once a minute while only the count
    /// moves) and resolved. A subscriber that falls more than 256 events behind is told how
    /// many it missed ([`broadcast::error::RecvError::Lagged`]) and should start again from
    /// [`Alerts::active`].
    pub fn subscribe(&self) -> broadcast::Receiver<AlertEvent> {
        self.inner.events.subscribe()
    }

    fn changed(&self) {
        self.inner.changed.notify_one();
    }

    /// Resolves once the book has changed since the last call (one waiter: `ops::notify`).
    pub async fn wait_changed(&self) {
        self.inner.changed.notified().await
    }

    /// The book, for `ops::notify` (restore, take the changes to persist, put them back).
    pub fn with_book<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        let r = f(&mut self.book());
        self.update_gauges();
        r
    }

    /// Sets `wms_node_alerts_active{code,severity}` from the book, zeroing pairs that are no
    /// longer active.
    fn update_gauges(&self) {
        let counts = self.book().counts();
        let mut exported = self
            .inner
            .gauges
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for pair in exported.iter() {
            if !counts.contains_key(pair) {
                metrics::gauge!("wms_node_alerts_active", "code" => pair.0.as_str(),
                    "severity" => pair.1.as_str())
                .set(0.0);
            }
        }
        for (&(code, sev), &n) in &counts {
            metrics::gauge!("wms_node_alerts_active", "code" => code.as_str(),
                "severity" => sev.as_str())
            .set(n as f64);
            exported.insert((code, sev));
        }
    }
}

/// The wall clock in Unix ms (alerts are shown to people and outlive the process).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// RFC 3339 in UTC to the second: `2026-12-07T06:43:10Z`.
pub fn rfc3339(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A duration rounded to whole seconds (minutes from an hour on), for people.
pub fn round_secs(d: Duration) -> Duration {
    let s = d.as_secs();
    Duration::from_secs(if s >= 3600 { s - s % 60 } else { s })
}

/// Cuts `s` to at most `max` bytes at a character boundary, ending it with `…` when cut.
pub(crate) fn cut(s: &mut String, max: usize) {
    *s = firmware_bridge::proto::json::cut_text(std::mem::take(s), max);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_twice_keeps_one_active_alert_and_clear_resolves_it() {
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
        assert_eq!(active[0].count, 2);
        alerts.clear(AlertCode::Reauthorize);
        assert!(!alerts.is_active(AlertCode::Reauthorize));
        assert!(alerts.is_active(AlertCode::StoreCap));
        let history = alerts.history();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].code, AlertCode::Reauthorize);
        assert!(history[0].resolved_ms.is_some());
    }

    #[test]
    fn subjects_make_separate_alerts_and_clear_resolves_them_all() {
        let alerts = Alerts::new();
        let mut events = alerts.subscribe();
        alerts.raise_about(
            AlertCode::ShippedClosedTrade,
            Subject::tid(1),
            Severity::Critical,
            "trade 1",
        );
        alerts.raise_about(
            AlertCode::ShippedClosedTrade,
            Subject::tid(2),
            Severity::Critical,
            "trade 2",
        );
        assert_eq!(alerts.active().len(), 2);
        alerts.clear_about(AlertCode::ShippedClosedTrade, &Subject::tid(1));
        assert_eq!(
            alerts.subjects(AlertCode::ShippedClosedTrade),
            vec![Some(Subject::tid(2))]
        );
        alerts.clear(AlertCode::ShippedClosedTrade);
        assert!(alerts.active().is_empty());
        let kinds: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| (e.kind, e.alert.subject.map(|s| s.id)))
            .collect();
        assert_eq!(
            kinds,
            [
                (AlertEventKind::Raised, Some("1".into())),
                (AlertEventKind::Raised, Some("2".into())),
                (AlertEventKind::Resolved, Some("1".into())),
                (AlertEventKind::Resolved, Some("2".into())),
            ]
        );
    }

    #[test]
    fn codes_have_one_stable_string_and_number_each() {
        let mut strings = std::collections::HashSet::new();
        let mut numbers = std::collections::HashSet::new();
        for &code in AlertCode::ALL {
            assert!(strings.insert(code.as_str()), "{code} twice");
            assert!(numbers.insert(code.number()), "{} twice", code.number());
            assert_eq!(AlertCode::from_number(code.number()), Some(code));
            // The JSON form is the string form, both ways, and fits the wire's rule.
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, code.as_str());
            assert_eq!(serde_json::from_value::<AlertCode>(json).ok(), Some(code));
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
        assert!(
            AlertCode::ALL
                .windows(2)
                .all(|w| w[0].number() < w[1].number())
        );
        assert_eq!(AlertCode::from_number(999), None);
        assert_eq!(AlertCode::DeadLetter.as_str(), "dead_letter");
        assert_eq!(
            AlertCode::Reauthorize.default_severity(),
            Severity::Critical
        );
    }

    #[test]
    fn messages_and_subjects_are_cut_to_the_wire_limits() {
        let alerts = Alerts::new();
        alerts.raise(AlertCode::Clock, Severity::Warning, "时".repeat(2000));
        let a = alerts.get(AlertCode::Clock, None).unwrap();
        assert!(a.message.len() <= MAX_MESSAGE, "{}", a.message.len());
        assert!(a.message.ends_with('…'));
        let s = Subject::new("Op Kind!", "x".repeat(1000));
        assert_eq!(s.kind, "op_kind_");
        assert_eq!(s.id.len(), firmware_bridge::proto::alert::MAX_SUBJECT_ID);
        assert_eq!(Subject::new("", "").to_string(), "_ -");
    }

    #[test]
    fn the_wire_message_carries_the_episode_and_validates() {
        use firmware_bridge::proto::Validate;
        let alerts = Alerts::new();
        alerts.raise_about(
            AlertCode::DeadLetter,
            Subject::op_kind("ship"),
            Severity::Critical,
            "1 ship op refused",
        );
        alerts.clear(AlertCode::DeadLetter);
        let a = alerts.history().remove(0);
        let m = a.to_message(AlertEventKind::Resolved, "gw1", "wh1");
        assert_eq!(m.validate(), Ok(()));
        assert_eq!(m.id, a.id.to_string());
        assert_eq!(m.number, 201);
        assert!(m.resolved_at.is_some());
        let raised = a.to_message(AlertEventKind::Raised, "gw1", "wh1");
        assert_eq!(raised.resolved_at, None);
        assert_eq!(raised.validate(), Ok(()));
        // /healthz's view uses the same names.
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["code"], "dead_letter");
        assert_eq!(v["subject"]["id"], "ship");
        assert_eq!(v["id"], a.id.to_string());
        assert!(v["first_seen"].as_str().unwrap().ends_with('Z'));
    }
}
