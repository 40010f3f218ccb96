//! Reconciliation (DOMAIN.md §11): the node's view compared with Taobao's, highest priority
//! first. `wms-node reconcile` runs it on demand; [`ReconcileJob`] runs every check but the
//! stock check hourly, the stock check daily, and everything after an outage.
//!
//! | # | check (`name`)           | how                                                             | alert |
//! |---|--------------------------|-----------------------------------------------------------------|-------|
//! | 1 | `shipped_not_on_taobao`  | lines through the ship scan longer than `stuck_after`, not confirmed: `trade.fullinfo.get` | `shipped_not_on_taobao` |
//! | 2 | `closed_but_active`      | active, unheld orders here vs `trades.sold.get TRADE_CLOSED` and open refunds (`refunds.receive.get`) | `closed_but_active` |
//! | 3 | `missing_here`           | `trades.sold.get WAIT_SELLER_SEND_GOODS / SELLER_CONSIGNED_PART` older than the intake watermark, not stored here | `missing_order` |
//! | 4 | `deadline_risk`          | orders not packed within the warning window of their deadline | `ship_deadline` |
//! | 5 | `stock_drift`            | `item.seller.get` per listed item vs the quantity the ledger offers (only while intake is current); a difference is compared again once intake has passed the reading, net of the sales pulled since | `stock_drift` |
//! | 6 | `unused_waybills`        | e-waybills issued and not shipped after `waybill.unused_after` | `unused_waybill` |
//! | 7 | `ops`                    | dead letters, ops stuck in retry, an app ban, a token that expires, intake lag | `stuck_ops` |
//! | 8 | `store`                  | quarantined records, the outbox cap reached or near, ops dropped | `store_problem` |
//!
//! A check that cannot run (Taobao unreachable, no session) is `not_run` with the reason;
//! the others still run. Every finding raises its check's alert (subject first: the tid or
//! the SKU); a clean check clears it.
//!
//! Must never: change what it compares (it reads and alerts; fixes are the operator's or the
//! other jobs'), or hold a store transaction across a call.

use crate::alert::{AlertCode, Alerts, Severity};
use crate::outbox::admin::{Admin, ListFilter, StateFilter};
use crate::store::Store;
use crate::sync::intake::IntakeStatus;
use crate::taobao::api::{RefundsQuery, SoldQuery};
use crate::taobao::time::Clock;
use crate::taobao::tokens::{RedbTokenStore, TokenStore};
use crate::taobao::types::{TradeStatus, TradesPage};
use crate::taobao::{TopClient, TopError};
use crate::wms::{self, LocalState, ShopId};
use chrono::{DateTime, Duration as CDuration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How reconciliation runs (built by `config/` from `[reconcile]` and neighbours).
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// The shop.
    pub shop: ShopId,
    /// Every check but the stock check, this often.
    pub every: Duration,
    /// The stock check, this often.
    pub stock_every: Duration,
    /// A shipment unconfirmed this long after the ship scan is a finding.
    pub stuck_after: Duration,
    /// Days back (by creation) that trades are compared.
    pub days: u32,
    /// A waybill unused this long is a finding.
    pub unused_waybill_after: Duration,
    /// Orders due within this long and not packed are findings.
    pub deadline_within: Duration,
    /// The stock check runs only while intake lags less than this.
    pub max_intake_lag: Duration,
    /// Intake lagging more than this is a finding.
    pub lag_alert: Duration,
    /// Trade types to ask for (`None`: the platform's default set).
    pub trade_types: Option<String>,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            shop: ShopId::main(),
            every: Duration::from_secs(3600),
            stock_every: Duration::from_secs(24 * 3600),
            stuck_after: Duration::from_secs(1800),
            days: 3,
            unused_waybill_after: Duration::from_secs(24 * 3600),
            deadline_within: Duration::from_secs(4 * 3600),
            max_intake_lag: Duration::from_secs(300),
            lag_alert: Duration::from_secs(1800),
            trade_types: None,
        }
    }
}

/// A listing whose platform figure differed from the ledger's at the first look (check 5).
struct Differs {
    num_iid: u64,
    sku_id: Option<u64>,
    code: String,
    last: Option<i64>,
    reading: wms::stock::Anchor,
}

fn listings_differ(n: usize) -> String {
    if n == 1 {
        "1 listing differs".to_owned()
    } else {
        format!("{n} listings differ")
    }
}

/// The checks, in order: (number, name, what it looks for).
pub const CHECKS: [(u8, &str, &str); 8] = [
    (
        1,
        "shipped_not_on_taobao",
        "shipped here, still unshipped on Taobao",
    ),
    (
        2,
        "closed_but_active",
        "closed or refunded on Taobao, still active here",
    ),
    (3, "missing_here", "waiting to ship on Taobao, missing here"),
    (4, "deadline_risk", "near the ship-by deadline, not packed"),
    (5, "stock_drift", "platform stock differs from the ledger's"),
    (6, "unused_waybills", "e-waybills issued and not shipped"),
    (7, "ops", "dead or stuck ops, bans, tokens, intake lag"),
    (8, "store", "quarantined records, the outbox cap"),
];

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Ran, found nothing.
    Clean,
    /// Ran, found something.
    Findings,
    /// Could not run (see `reason`).
    NotRun,
}

/// One discrepancy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind (`not_consigned`, `closed_on_taobao`, `missing`, `drift`, …).
    pub kind: String,
    /// The trade, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// The SKU, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    /// For people (ids only, never buyer data).
    pub detail: String,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// How it ended.
    pub status: CheckStatus,
    /// Why it did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What it found.
    pub findings: Vec<Finding>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Started (RFC 3339, GMT+8).
    pub started: String,
    /// Finished.
    pub finished: String,
    /// The checks run, in order.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// 0 every check ran clean, 3 findings, 1 a check could not run (the CLI's exit code).
    pub fn exit_code(&self) -> u8 {
        if self.checks.iter().any(|c| c.status == CheckStatus::NotRun) {
            1
        } else if self
            .checks
            .iter()
            .any(|c| c.status == CheckStatus::Findings)
        {
            3
        } else {
            0
        }
    }
}

/// Which checks a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Every check.
    All,
    /// Every check but the stock check (the hourly run).
    Hourly,
    /// One check (1–8).
    One(u8),
}

impl Which {
    fn includes(self, n: u8) -> bool {
        match self {
            Which::All => true,
            Which::Hourly => n != 5,
            Which::One(k) => k == n,
        }
    }
}

/// Where a run stands, for progress bars: checks done, checks in all, the check running.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Checks done.
    pub done: usize,
    /// Checks in this run.
    pub total: usize,
    /// The check running now.
    pub current: Option<String>,
}

/// Runs the checks.
#[derive(Clone)]
pub struct Reconciler {
    client: TopClient,
    store: Store,
    outbox: Admin,
    alerts: Alerts,
    clock: Clock,
    opts: ReconcileOptions,
    /// Whether order intake runs beside it (not in `wms-node reconcile` with the node
    /// stopped): the stock check's second look waits for it.
    intake_runs: bool,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("shop", &self.opts.shop)
            .finish_non_exhaustive()
    }
}

type Checked = Result<Vec<Finding>, String>;

fn finding(kind: &str, tid: Option<u64>, sku: Option<&str>, detail: String) -> Finding {
    Finding {
        kind: kind.to_owned(),
        tid: tid.map(|t| t.to_string()),
        sku: sku.map(str::to_owned),
        detail,
    }
}

fn top(e: TopError) -> String {
    format!("Taobao could not be asked: {e}")
}

fn store_err(e: impl std::fmt::Display) -> String {
    format!("the store could not be read: {e}")
}

fn whole(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

impl Reconciler {
    /// A reconciler over the node's parts.
    pub fn new(
        client: TopClient,
        store: Store,
        outbox: Admin,
        alerts: Alerts,
        clock: Clock,
        opts: ReconcileOptions,
    ) -> Self {
        Reconciler {
            client,
            store,
            outbox,
            alerts,
            clock,
            opts,
            intake_runs: true,
        }
    }

    /// A reconciler with no order intake beside it (`wms-node reconcile` while the node is
    /// stopped): a stock difference cannot get its second look, so the stock check says so
    /// instead of waiting for a watermark that does not move.
    pub fn without_intake(mut self) -> Self {
        self.intake_runs = false;
        self
    }

    /// Runs `which` checks, reporting progress; raises (or clears) each check's alert.
    pub async fn run(&self, which: Which, progress: &mut (dyn FnMut(Progress) + Send)) -> Report {
        let started = self.clock.now();
        let list: Vec<(u8, &str)> = CHECKS
            .iter()
            .filter(|(n, _, _)| which.includes(*n))
            .map(|(n, name, _)| (*n, *name))
            .collect();
        let total = list.len();
        let mut checks = Vec::with_capacity(total);
        for (i, (n, name)) in list.into_iter().enumerate() {
            progress(Progress {
                done: i,
                total,
                current: Some(name.to_owned()),
            });
            let r = match n {
                1 => self.shipped_not_on_taobao().await,
                2 => self.closed_but_active().await,
                3 => self.missing_here().await,
                4 => self.deadline_risk(),
                5 => self.stock_drift().await,
                6 => self.unused_waybills(),
                7 => self.ops(),
                _ => self.store_check(),
            };
            let result = match r {
                Ok(f) if f.is_empty() => CheckResult {
                    name: name.to_owned(),
                    status: CheckStatus::Clean,
                    reason: None,
                    findings: f,
                },
                Ok(f) => CheckResult {
                    name: name.to_owned(),
                    status: CheckStatus::Findings,
                    reason: None,
                    findings: f,
                },
                Err(reason) => CheckResult {
                    name: name.to_owned(),
                    status: CheckStatus::NotRun,
                    reason: Some(reason),
                    findings: Vec::new(),
                },
            };
            self.alert(n, &result);
            metrics::gauge!("wms_node_reconcile_findings", "check" => name)
                .set(result.findings.len() as f64);
            checks.push(result);
        }
        progress(Progress {
            done: total,
            total,
            current: None,
        });
        let not_run: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == CheckStatus::NotRun)
            .map(|c| c.name.as_str())
            .collect();
        if not_run.is_empty() {
            self.alerts.clear(AlertCode::ReconcileNotRun);
        } else {
            self.alerts.raise(
                AlertCode::ReconcileNotRun,
                Severity::Warning,
                format!(
                    "reconciliation check {} could not run ({}); it runs again at the next cycle",
                    not_run.join(", "),
                    checks
                        .iter()
                        .find_map(|c| c.reason.clone())
                        .unwrap_or_default()
                ),
            );
        }
        metrics::counter!("wms_node_reconcile_runs_total").increment(1);
        let fmt = |t: DateTime<Utc>| wms::time::rfc3339(t.timestamp_millis());
        Report {
            started: fmt(started),
            finished: fmt(self.clock.now()),
            checks,
        }
    }

    /// Raises (or clears) the alert of check `n`.
    fn alert(&self, n: u8, r: &CheckResult) {
        let (code, severity) = match n {
            1 => (AlertCode::ShippedNotOnTaobao, Severity::Critical),
            2 => (AlertCode::ClosedButActive, Severity::Critical),
            3 => (AlertCode::MissingOrder, Severity::Warning),
            4 => (AlertCode::ShipDeadline, Severity::Warning),
            5 => (AlertCode::StockDrift, Severity::Warning),
            6 => (AlertCode::UnusedWaybill, Severity::Warning),
            7 => (AlertCode::StuckOps, Severity::Warning),
            _ => (AlertCode::StoreProblem, Severity::Warning),
        };
        match r.status {
            CheckStatus::Findings => {
                let first = &r.findings[0];
                let subject = match (&first.tid, &first.sku) {
                    (Some(t), _) => format!("trade {t}"),
                    (None, Some(s)) => format!("SKU {s}"),
                    (None, None) => r.name.clone(),
                };
                let more = if r.findings.len() > 1 {
                    format!(" (and {} more)", r.findings.len() - 1)
                } else {
                    String::new()
                };
                self.alerts.raise(
                    code,
                    severity,
                    format!(
                        "{subject}{more}: {}; see `wms-node reconcile`",
                        first.detail
                    ),
                );
            }
            // The deadline watcher owns its alert while orders are near their deadline.
            CheckStatus::Clean if n != 4 => self.alerts.clear(code),
            _ => {}
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Check 1.
    async fn shipped_not_on_taobao(&self) -> Checked {
        let shop = self.opts.shop.clone();
        let waiting = self
            .store
            .read(|r| wms::ship::awaiting_consign(r, shop.as_str()))
            .map_err(store_err)?;
        let before = self.now_ms() - i64::try_from(self.opts.stuck_after.as_millis()).unwrap_or(0);
        let mut out = Vec::new();
        for wms::ship::Awaiting {
            tid,
            shipped_ms: at,
            ..
        } in waiting
        {
            if at.is_none_or(|a| a > before) {
                continue;
            }
            let Ok(t) = i64::try_from(tid) else { continue };
            let trade = self
                .client
                .trade_fullinfo_get(t, &["tid", "status", "orders"])
                .await
                .map_err(top)?;
            let os = self
                .store
                .read(|r| wms::order_ship::load(r, shop.as_str(), tid))
                .map_err(store_err)?;
            let unshipped: Vec<i64> = trade
                .orders
                .iter()
                .filter(|o| {
                    wms::id(o.oid).is_some_and(|oid| {
                        os.shipped.contains(&oid) && !os.consigned.contains(&oid)
                    })
                })
                .filter(|o| {
                    !matches!(
                        o.status,
                        Some(
                            TradeStatus::WaitBuyerConfirmGoods
                                | TradeStatus::TradeBuyerSigned
                                | TradeStatus::TradeFinished
                        )
                    )
                })
                .map(|o| o.oid)
                .collect();
            if unshipped.is_empty() {
                continue;
            }
            let ops = self
                .outbox
                .list(&ListFilter {
                    key: Some(format!("trade:{tid}")),
                    limit: Some(10),
                    ..ListFilter::default()
                })
                .map(|p| {
                    p.ops
                        .iter()
                        .filter(|o| o.kind == "ship")
                        .map(|o| match &o.dead_reason {
                            Some(r) => format!("op #{} dead: {r}", o.seq),
                            None => format!(
                                "op #{} {} after {} attempts{}",
                                o.seq,
                                o.state.as_str(),
                                o.attempts,
                                o.last_error
                                    .as_deref()
                                    .map(|e| format!(" ({e})"))
                                    .unwrap_or_default()
                            ),
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            out.push(finding(
                "not_consigned",
                Some(tid),
                None,
                format!(
                    "went through the ship scan {} ago, Taobao still shows {} unshipped ({}); {}",
                    humantime::format_duration(Duration::from_secs(
                        u64::try_from((self.now_ms() - at.unwrap_or(0)) / 1000).unwrap_or(0)
                    )),
                    if unshipped.len() == 1 {
                        "a line".to_owned()
                    } else {
                        format!("{} lines", unshipped.len())
                    },
                    trade.status.as_ref().map(|s| s.as_str()).unwrap_or("?"),
                    if ops.is_empty() {
                        "no Ship op is queued: ship it again".to_owned()
                    } else {
                        ops
                    }
                ),
            ));
        }
        Ok(out)
    }

    async fn sold(&self, status: &str) -> Result<TradesPage, String> {
        let now = self.clock.now();
        let mut q = SoldQuery::status(status);
        q.fields = vec![
            "tid".into(),
            "status".into(),
            "modified".into(),
            "created".into(),
        ];
        q.start_created = Some(whole(
            now - CDuration::days(i64::from(self.opts.days.max(1))),
        ));
        q.end_created = Some(whole(now));
        q.page_size = 100;
        q.use_has_next = true;
        q.trade_type = self.opts.trade_types.clone();
        let mut all = TradesPage::default();
        loop {
            let page = self.client.trades_sold_get(&q).await.map_err(top)?;
            let more = page.has_next.unwrap_or(false) && !page.trades.is_empty();
            all.trades.extend(page.trades);
            if !more || q.page_no >= 1000 {
                return Ok(all);
            }
            q.page_no += 1;
        }
    }

    /// Check 2.
    async fn closed_but_active(&self) -> Checked {
        let shop = self.opts.shop.clone();
        let active: Vec<(u64, LocalState)> = self
            .store
            .read(|r| {
                let mut out = Vec::new();
                for tid in wms::view::open(r, &shop)? {
                    if let Ok(Some(o)) = wms::orders::read_order(r, &shop, tid) {
                        let on_floor = matches!(
                            o.state,
                            LocalState::Released
                                | LocalState::Picking
                                | LocalState::Picked
                                | LocalState::Verified
                                | LocalState::Packed
                                | LocalState::Weighed
                                | LocalState::Labelled
                        );
                        if on_floor && !o.is_held() {
                            out.push((tid, o.state));
                        }
                    }
                }
                Ok(out)
            })
            .map_err(store_err)?;
        if active.is_empty() {
            return Ok(Vec::new());
        }
        let closed: BTreeSet<i64> = self
            .sold("TRADE_CLOSED")
            .await?
            .trades
            .iter()
            .map(|t| t.tid)
            .collect();
        let now = self.clock.now();
        let mut refunds: BTreeMap<i64, String> = BTreeMap::new();
        let mut q = RefundsQuery {
            start_modified: Some(whole(
                now - CDuration::days(i64::from(self.opts.days.max(1))),
            )),
            end_modified: Some(whole(now)),
            page_size: 100,
            ..RefundsQuery::default()
        };
        loop {
            let page = self.client.refunds_receive_get(&q).await.map_err(top)?;
            for r in &page.refunds {
                if let (Some(tid), Some(st)) = (r.tid, &r.status)
                    && !st.allows_shipping()
                    && *st != crate::taobao::types::RefundStatus::Success
                {
                    refunds.insert(tid, st.as_str().to_owned());
                }
            }
            if !page.has_next.unwrap_or(false) || page.refunds.is_empty() || q.page_no >= 1000 {
                break;
            }
            q.page_no += 1;
        }
        let mut out = Vec::new();
        for (tid, state) in active {
            let Ok(t) = i64::try_from(tid) else { continue };
            if closed.contains(&t) {
                out.push(finding(
                    "closed_on_taobao",
                    Some(tid),
                    None,
                    format!(
                        "closed on Taobao (refunded) but {state} here and not held: stop it \
                         (the next pull holds it; `wms-node orders hold` now)"
                    ),
                ));
            } else if let Some(st) = refunds.get(&t) {
                out.push(finding(
                    "refund_open",
                    Some(tid),
                    None,
                    format!(
                        "a refund is open on Taobao ({st}) but the order is {state} here and \
                         not held: stop it"
                    ),
                ));
            }
        }
        Ok(out)
    }

    /// Check 3.
    async fn missing_here(&self) -> Checked {
        let shop = self.opts.shop.clone();
        let watermark = self
            .store
            .read(|r| wms::cursor::load(r, shop.as_str(), wms::cursor::TRADES))
            .map_err(store_err)?
            .map(|c| c.watermark_ms)
            .unwrap_or(0);
        let mut out = Vec::new();
        for status in ["WAIT_SELLER_SEND_GOODS", "SELLER_CONSIGNED_PART"] {
            for t in self.sold(status).await?.trades {
                let Some(tid) = wms::id(t.tid) else { continue };
                // Intake has not reached it yet: not missing, just not pulled.
                if t.modified.is_none_or(|m| m.timestamp_millis() > watermark) {
                    continue;
                }
                let stored = self
                    .store
                    .read(|r| wms::orders::read_order(r, &shop, tid))
                    .map_err(store_err)?;
                if stored.is_none() {
                    out.push(finding(
                        "missing",
                        Some(tid),
                        None,
                        format!(
                            "{status} on Taobao (modified {}), not stored here although intake \
                             passed it: check [intake] trade_types; the next re-scan pulls it",
                            t.modified
                                .map(crate::taobao::time::format)
                                .unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Check 4.
    fn deadline_risk(&self) -> Checked {
        let shop = self.opts.shop.clone();
        let now = self.now_ms();
        let within = i64::try_from(self.opts.deadline_within.as_millis()).unwrap_or(i64::MAX);
        let risks = self
            .store
            .read(|r| wms::ship::deadline_risks(r, shop.as_str(), now, within))
            .map_err(store_err)?;
        Ok(risks
            .into_iter()
            .filter(|r| {
                !matches!(
                    r.state,
                    LocalState::Packed | LocalState::Weighed | LocalState::Labelled
                )
            })
            .map(|r| {
                let left = r.ship_by_ms - now;
                finding(
                    if left < 0 { "overdue" } else { "deadline" },
                    Some(r.tid),
                    None,
                    format!(
                        "must ship by {}, it is {}{} and not packed",
                        crate::taobao::time::format(wms::time::at(r.ship_by_ms)),
                        r.state,
                        if r.held { " (held)" } else { "" }
                    ),
                )
            })
            .collect())
    }

    /// Check 5.
    async fn stock_drift(&self) -> Checked {
        let shop = self.opts.shop.clone();
        let now = self.clock.now();
        match super::stock::intake_lag(&self.store, &shop, now).map_err(store_err)? {
            Some(l) if l < self.opts.max_intake_lag => {}
            lag => {
                return Err(format!(
                    "order intake lags {} (the bound is {}): the shop's figures cannot be \
                     compared until it catches up",
                    lag.map_or("forever (no pull yet)".to_owned(), |l| {
                        humantime::format_duration(Duration::from_secs(l.as_secs())).to_string()
                    }),
                    humantime::format_duration(self.opts.max_intake_lag)
                ));
            }
        }
        // Settled listings (nothing owed or in flight), by item.
        type Row = (u64, Option<u64>, String, i64, Option<i64>);
        let rows: Vec<Row> = self
            .store
            .read(|r| {
                let mut out = Vec::new();
                let Some(t) = wms::tables::read_table(r, wms::tables::LISTING_PUSH)? else {
                    return Ok(out);
                };
                let all: Vec<wms::stock::ListingPush> =
                    wms::tables::scan_named(&t, wms::tables::LISTING_PUSH, shop.as_str())?;
                for lp in all {
                    if lp.owes() || lp.sending.is_some() {
                        continue;
                    }
                    let Some((code, qty)) =
                        wms::stock::listing_qty_now(r, shop.as_str(), lp.num_iid, lp.sku_id)?
                    else {
                        continue;
                    };
                    if wms::stock::rules(r, shop.as_str(), &code)?.stopped {
                        continue;
                    }
                    out.push((lp.num_iid, lp.sku_id, code, qty, lp.last.map(|l| l.qty)));
                }
                Ok(out)
            })
            .map_err(store_err)?;
        let mut by_item: BTreeMap<u64, Vec<Row>> = BTreeMap::new();
        for r in rows {
            by_item.entry(r.0).or_default().push(r);
        }
        let mut out = Vec::new();
        // Listings whose platform figure differs from the ledger's, with the reading.
        let mut differs: Vec<Differs> = Vec::new();
        for (num_iid, rows) in by_item {
            let Ok(n) = i64::try_from(num_iid) else {
                continue;
            };
            let from_ms = self.now_ms();
            let item = match self
                .client
                .item_seller_get(n, &["num_iid", "num", "skus"])
                .await
            {
                Ok(i) => i,
                Err(TopError::Api(e))
                    if e.sub_code.as_deref().is_some_and(|s| {
                        s.starts_with("isv.item-not-exist") || s.starts_with("isv.item-is-delete")
                    }) =>
                {
                    for (_, sku_id, code, _, _) in rows {
                        out.push(finding(
                            "listing_gone",
                            None,
                            Some(&code),
                            format!(
                                "listing {num_iid}:{} is gone from Taobao; `wms-node sku sync` \
                                 removes it from the map",
                                sku_id.unwrap_or(0)
                            ),
                        ));
                    }
                    continue;
                }
                Err(e) => return Err(top(e)),
            };
            let at_ms = self.now_ms();
            for (_, sku_id, code, expected, last) in rows {
                let platform = match sku_id {
                    Some(s) => item
                        .skus
                        .iter()
                        .find(|k| wms::id(k.sku_id) == Some(s))
                        .and_then(|k| k.quantity),
                    None => item.num,
                };
                let Some(platform) = platform else { continue };
                if platform != expected {
                    differs.push(Differs {
                        num_iid,
                        sku_id,
                        code,
                        last,
                        reading: wms::stock::Anchor::new(platform, from_ms, at_ms),
                    });
                }
            }
        }
        out.extend(self.confirm_drift(differs).await?);
        Ok(out)
    }

    /// Check 5's second look. A listing's figure read at T counts the sales up to T, while
    /// the ledger lacks those intake has not pulled yet (it lags by up to a poll): a busy shop
    /// would always look drifted. So each difference is noted as a reading, intake notes the
    /// sales and closes after it (as for a stock correction, docs/STOCK.md), and once intake
    /// has passed the reading the ledger is compared with what the platform showed, net of
    /// those: only a difference that is still there is a finding.
    async fn confirm_drift(&self, differs: Vec<Differs>) -> Checked {
        let Some(last_at) = differs.iter().map(|d| d.reading.at_ms).max() else {
            return Ok(Vec::new());
        };
        if !self.intake_runs {
            return Err(format!(
                "{} from the ledger at a first look, and with the node stopped order intake \
                 cannot pull the sales since its last poll to tell a drift from them: run \
                 `wms-node reconcile` while the node runs",
                listings_differ(differs.len())
            ));
        }
        let shop = self.opts.shop.clone();
        let readings: Vec<(String, wms::stock::Anchor)> = differs
            .iter()
            .map(|d| (wms::tables::listing_key(d.num_iid, d.sku_id), d.reading))
            .collect();
        let s = shop.clone();
        self.store
            .write(move |txn| {
                for (key, a) in &readings {
                    wms::stock::check_begin(txn, s.as_str(), key, a)?;
                }
                Ok::<_, crate::store::StoreError>(())
            })
            .await
            .map_err(store_err)?;
        // Intake pulls every poll; it lagged less than `max_intake_lag` when the check began.
        let wait = self.opts.max_intake_lag;
        let began = tokio::time::Instant::now();
        let probe = wms::stock::Anchor::new(0, last_at, last_at);
        loop {
            let gate = super::stock::gate(
                &self.store,
                &shop,
                self.clock.now(),
                self.opts.max_intake_lag,
            );
            if probe.settled(gate.watermark_ms) {
                break;
            }
            if began.elapsed() >= wait {
                return Err(format!(
                    "{} from the ledger, but order intake did not pass the readings within \
                     {}: a drift cannot be told from sales not pulled yet",
                    listings_differ(differs.len()),
                    humantime::format_duration(wait)
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let stale_before = self.now_ms() - 24 * 3600 * 1000;
        let s = shop.clone();
        let keys: Vec<(String, u64, Option<u64>)> = differs
            .iter()
            .map(|d| {
                (
                    wms::tables::listing_key(d.num_iid, d.sku_id),
                    d.num_iid,
                    d.sku_id,
                )
            })
            .collect();
        let compared: Vec<Option<(wms::stock::Anchor, i64)>> = self
            .store
            .write(move |txn| {
                let mut out = Vec::with_capacity(keys.len());
                for (key, num_iid, sku_id) in &keys {
                    let a = wms::stock::check_take(txn, s.as_str(), key, stale_before)?;
                    let now = wms::stock::listing_qty_now(txn, s.as_str(), *num_iid, *sku_id)?;
                    out.push(a.zip(now.map(|(_, q)| q)));
                }
                Ok::<_, crate::store::StoreError>(out)
            })
            .await
            .map_err(store_err)?;
        let mut out = Vec::new();
        for (d, c) in differs.into_iter().zip(compared) {
            // Unmapped since, or taken by a concurrent run: nothing to say.
            let Some((a, ledger_now)) = c else { continue };
            let off = -a.correction(ledger_now);
            // What the platform may have put back for a close, or a sale placed around the
            // reading, can explain that many units either way.
            if off == 0 || (a.doubtful() && off.abs() <= a.ambiguous + a.restored_after) {
                continue;
            }
            // What the ledger offered at the reading, in the platform's terms.
            let offered = ledger_now + a.sold_after - a.restored_after;
            out.push(finding(
                "drift",
                None,
                Some(&d.code),
                format!(
                    "listing {}:{}: Taobao showed {} at {}, the warehouse offered {offered} \
                     (sales pulled since counted; last pushed {}); edited in 千牛, or a push \
                     failed: `wms-node stock push {}`",
                    d.num_iid,
                    d.sku_id.unwrap_or(0),
                    a.qty,
                    wms::time::rfc3339(a.at_ms),
                    d.last.map_or("never".to_owned(), |q| q.to_string()),
                    d.code
                ),
            ));
        }
        Ok(out)
    }

    /// Check 6.
    fn unused_waybills(&self) -> Checked {
        let shop = self.opts.shop.clone();
        let before =
            self.now_ms() - i64::try_from(self.opts.unused_waybill_after.as_millis()).unwrap_or(0);
        let unused = self
            .store
            .read(|r| wms::ship::unused_waybills(r, shop.as_str(), before))
            .map_err(store_err)?;
        Ok(unused
            .into_iter()
            .filter_map(|p| {
                let w = p.live_waybill()?.clone();
                Some(finding(
                    "unused_waybill",
                    p.tids().first().copied(),
                    None,
                    format!(
                        "package {}: waybill {} ({}) issued {} and not shipped: ship it, or \
                         `wms-node waybill void` it",
                        p.id,
                        w.waybill_code,
                        w.real_cp_code,
                        crate::taobao::time::format(wms::time::at(w.issued_ms))
                    ),
                ))
            })
            .collect())
    }

    /// Check 7.
    fn ops(&self) -> Checked {
        let mut out = Vec::new();
        let dead = self
            .outbox
            .list(&ListFilter {
                state: StateFilter::Dead,
                limit: Some(200),
                ..ListFilter::default()
            })
            .map_err(store_err)?;
        let tid_of = |key: &str| {
            key.strip_prefix("trade:")
                .and_then(|t| t.parse::<u64>().ok())
        };
        for op in dead.ops {
            out.push(finding(
                "dead_letter",
                tid_of(&op.fifo_key),
                None,
                format!(
                    "op #{} ({}) was given up: {}; fix it, then `wms-node queue retry {}`",
                    op.seq,
                    op.summary,
                    op.dead_reason.unwrap_or_default(),
                    op.seq
                ),
            ));
        }
        let stuck_ms = u64::try_from(self.opts.stuck_after.as_millis()).unwrap_or(u64::MAX);
        let pending = self
            .outbox
            .list(&ListFilter {
                state: StateFilter::BackingOff,
                limit: Some(1000),
                ..ListFilter::default()
            })
            .map_err(store_err)?;
        for op in pending.ops {
            if op.attempts >= 3 && op.age_secs.saturating_mul(1000) >= stuck_ms {
                out.push(finding(
                    "stuck_op",
                    tid_of(&op.fifo_key),
                    None,
                    format!(
                        "op #{} ({}) has failed {} times over {}: {}",
                        op.seq,
                        op.summary,
                        op.attempts,
                        humantime::format_duration(Duration::from_secs(op.age_secs)),
                        op.last_error.unwrap_or_default()
                    ),
                ));
            }
        }
        for (code, kind, what) in [
            (
                AlertCode::TaobaoAppBan,
                "ban",
                "Taobao banned the app's calls (code 7)",
            ),
            (
                AlertCode::OutboxPaused,
                "paused",
                "delivery is paused: re-authorize the shop",
            ),
        ] {
            if self.alerts.is_active(code) {
                out.push(finding(kind, None, None, what.to_owned()));
            }
        }
        let now = self.clock.now();
        match RedbTokenStore::new(self.store.clone()).load() {
            Ok(Some(t)) => {
                let st = t.status(now);
                let soon = t.expires_at.is_some_and(|e| e - now < CDuration::days(3));
                if st.expired && !st.refreshable {
                    out.push(finding(
                        "token_expired",
                        None,
                        None,
                        "the shop's authorization expired and cannot be refreshed: `wms-node \
                         auth login`"
                            .into(),
                    ));
                } else if soon && !st.refreshable {
                    out.push(finding(
                        "token_expiring",
                        None,
                        None,
                        format!(
                            "the shop's authorization expires {} and cannot be refreshed by the \
                             node: `wms-node auth login` before then",
                            st.expires_at
                                .map(crate::taobao::time::format)
                                .unwrap_or_default()
                        ),
                    ));
                }
            }
            Ok(None) => out.push(finding(
                "no_token",
                None,
                None,
                "the shop was never authorized: `wms-node auth login`".into(),
            )),
            Err(e) => return Err(store_err(e)),
        }
        if let Some(lag) =
            super::stock::intake_lag(&self.store, &self.opts.shop, now).map_err(store_err)?
            && lag > self.opts.lag_alert
        {
            out.push(finding(
                "intake_lag",
                None,
                None,
                format!(
                    "order intake lags {} (the alert is at {})",
                    humantime::format_duration(Duration::from_secs(lag.as_secs())),
                    humantime::format_duration(self.opts.lag_alert)
                ),
            ));
        }
        Ok(out)
    }

    /// Check 8.
    fn store_check(&self) -> Checked {
        let s = self.outbox.stats().map_err(store_err)?;
        let mut out = Vec::new();
        if s.quarantined > 0 {
            out.push(finding(
                "quarantined",
                None,
                None,
                format!(
                    "{} undecodable record(s) were moved to quarantine: `wms-node queue stats`",
                    s.quarantined
                ),
            ));
        }
        if s.cap_bytes > 0 && s.bytes >= s.cap_bytes {
            out.push(finding(
                "cap_reached",
                None,
                None,
                format!(
                    "the outbox holds {} of its {} bytes: the {} policy is in force",
                    s.bytes, s.cap_bytes, s.cap_policy
                ),
            ));
        } else if s.cap_used_pct.is_some_and(|p| p >= 80.0) {
            out.push(finding(
                "cap_near",
                None,
                None,
                format!(
                    "the outbox uses {:.0} % of its cap: is the link down?",
                    s.cap_used_pct.unwrap_or_default()
                ),
            ));
        }
        if self.alerts.is_active(AlertCode::OutboxDropped) {
            out.push(finding(
                "dropped",
                None,
                None,
                "queued ops were dropped to stay under the cap (drop_oldest)".into(),
            ));
        }
        Ok(out)
    }
}

/// The last run and the one in progress, for the admin API and the status page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReconcileState {
    /// A run is in progress.
    pub running: bool,
    /// Its progress.
    pub progress: Progress,
    /// The last finished run.
    pub last: Option<Report>,
}

/// A shared [`ReconcileState`].
pub type SharedState = Arc<Mutex<ReconcileState>>;

/// Runs `which` with progress kept in `state`; returns the report (kept as `last`).
pub async fn run_tracked(rec: &Reconciler, which: Which, state: &SharedState) -> Report {
    {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.running = true;
        s.progress = Progress::default();
    }
    let st = state.clone();
    let report = rec
        .run(which, &mut move |p| {
            st.lock().unwrap_or_else(|p| p.into_inner()).progress = p;
        })
        .await;
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.running = false;
    s.last = Some(report.clone());
    report
}

/// Runs started from the operators' API in the background (`ops::goods` implements its `ReconcileRunner` with it).
#[derive(Clone)]
pub struct Runner {
    /// The reconciler.
    pub rec: Reconciler,
    /// Shared with the periodic job, so one run at a time is shown.
    pub state: SharedState,
}

/// The periodic runs: hourly (no stock), the stock check daily, everything after an outage.
pub struct ReconcileJob {
    rec: Reconciler,
    state: SharedState,
    intake: Option<watch::Receiver<IntakeStatus>>,
}

impl ReconcileJob {
    /// The job; `intake` tells it when an outage ends.
    pub fn new(
        rec: Reconciler,
        state: SharedState,
        intake: Option<watch::Receiver<IntakeStatus>>,
    ) -> Self {
        ReconcileJob { rec, state, intake }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Infallible> {
        let every = self.rec.opts.every;
        let stock_every = self.rec.opts.stock_every;
        let mut hourly = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        hourly.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut daily =
            tokio::time::interval_at(tokio::time::Instant::now() + stock_every, stock_every);
        daily.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_down = false;
        loop {
            let which = tokio::select! {
                // Shutdown: a run in progress is dropped between calls (it only reads).
                _ = shutdown.cancelled() => return Ok(()),
                // The hourly run.
                _ = hourly.tick() => Which::Hourly,
                // The daily stock check (with the rest).
                _ = daily.tick() => Which::All,
                // An outage ended: everything, once intake answers again.
                back = outage_ended(self.intake.as_mut(), &mut was_down) => {
                    if !back {
                        continue;
                    }
                    Which::All
                }
            };
            let r = tokio::select! {
                // Shutdown.
                _ = shutdown.cancelled() => return Ok(()),
                r = run_tracked(&self.rec, which, &self.state) => r,
            };
            let findings: usize = r.checks.iter().map(|c| c.findings.len()).sum();
            tracing::info!(
                checks = r.checks.len(),
                findings,
                not_run = r
                    .checks
                    .iter()
                    .filter(|c| c.status == CheckStatus::NotRun)
                    .count(),
                "reconciliation run"
            );
        }
    }
}

/// Resolves when intake's status changes; `true` when that change ended an outage (the last
/// poll failed without reaching Taobao, this one succeeded).
async fn outage_ended(rx: Option<&mut watch::Receiver<IntakeStatus>>, was_down: &mut bool) -> bool {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    if rx.changed().await.is_err() {
        return std::future::pending().await;
    }
    let st = rx.borrow_and_update().clone();
    let down = !st.link_up && st.last_error.is_some();
    let ended = *was_down && !down && st.last_error.is_none() && st.link_up;
    if down {
        *was_down = true;
    } else if ended {
        *was_down = false;
    }
    ended
}
