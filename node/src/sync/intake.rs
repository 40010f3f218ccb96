//! Order intake: the incremental pull of `taobao.trades.sold.increment.get`, `fullinfo` for
//! new or changed trades, and the periodic re-scan of open orders (DOMAIN.md §1).
//!
//! ```text
//!  every poll_interval (on the clock it is given):
//!    start = watermark − overlap (10 min after an error), target = now − 10 s
//!    walk windows of ≤ 30 min from start to target:
//!      sub-window [a, b] (span learnt from the last ones):
//!        page 1, page_size 100, use_has_next ──has_next──▶ halve the span, again
//!          │ (at 1 minute still more: total_results, then pages last → first)
//!          ▼
//!        trades newer than stored ─▶ trade.fullinfo.get (a few at once)
//!          ▼
//!        one transaction: upserts + holds + feedback ops + watermark = b + window event
//!    re-scan when due (first start, daily, after an outage):
//!      trades.sold.get WAIT_SELLER_SEND_GOODS / SELLER_CONSIGNED_PART, last 3 days
//!      + fullinfo of open orders not read for 24 h
//! ```
//!
//! Paging backwards is what keeps a trade modified during paging from being missed: it
//! leaves the window and the rest shift one place towards page 1, so reading from the last
//! page at worst reads one trade twice (the upsert makes that harmless), where reading
//! forwards would skip one. The watermark moves only in the transaction that stores the
//! last page of a sub-window, so any failure redoes the sub-window.
//!
//! Failures: a refused connection, a 5xx or a reset backs off (full jitter, never longer
//! than a poll interval, so the lag is back under two intervals one poll after a fault
//! clears); a code-7 ban waits out the announced seconds without a call (the client refuses
//! locally); an expired session is refreshed by the client and the call resent; a refused
//! refresh stops intake with the `reauthorize` alert and `/healthz` failing while everything
//! else keeps running. A trade whose full record cannot be decoded is skipped with an alert,
//! so one bad record never blocks the others (the re-scan reads it again).
//!
//! Must never: hold a store transaction across a call, read the host clock (only the
//! [`Clock`] it is given), or log buyer data (tids and counts only).

use crate::alert::{AlertCode, Alerts, Severity, Subject};
use crate::outbox::Outbox;
use crate::status::health::{CheckName, Health, Status};
use crate::store::{Store, StoreError};
use crate::taobao::api::{IncrementQuery, SoldQuery};
use crate::taobao::outbox::TaobaoOp;
use crate::taobao::time::Clock;
use crate::taobao::types::{Trade, TradesPage};
use crate::taobao::{Disposition, TopClient, TopError};
use crate::wms::{self, Bus, Change, Event, Feedback, Rules, ShopId, Wms, cursor};
use chrono::{DateTime, Duration as CDuration, Utc};
use firmware_bridge::pace::Backoff;
use futures::StreamExt;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The health check this job reports.
pub const CHECK: CheckName = CheckName::Intake;

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// A TOP call failed.
    #[error(transparent)]
    Top(#[from] TopError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl IntakeError {
    /// What the loop does about it.
    pub fn disposition(&self) -> Disposition {
        match self {
            IntakeError::Top(e) => e.disposition(),
            IntakeError::Store(e) if e.is_retryable() => Disposition::Retry { after: None },
            IntakeError::Store(_) => Disposition::Permanent,
        }
    }

    /// Whether Taobao answered (the link is up even if the answer was an error).
    fn reached_taobao(&self) -> bool {
        matches!(self, IntakeError::Top(TopError::Api(_)))
    }
}

impl From<wms::WmsError> for IntakeError {
    fn from(e: wms::WmsError) -> Self {
        match e {
            wms::WmsError::Store(s) => IntakeError::Store(s),
            other => IntakeError::Store(StoreError::Aborted(other.to_string())),
        }
    }
}

/// The list fields of the incremental pull: just enough to tell what changed.
const LIST_FIELDS: &[&str] = &["tid", "status", "modified"];

/// What the intake needs to know (built by `config/` from `[taobao]` and `[intake]`).
#[derive(Debug, Clone)]
pub struct IntakeOptions {
    /// The shop.
    pub shop: ShopId,
    /// How often to pull (`taobao.poll_interval`).
    pub poll_interval: Duration,
    /// Overlap of each poll's first window with the last one (≥ 2 min).
    pub overlap: Duration,
    /// Overlap after an error or an outage.
    pub error_overlap: Duration,
    /// Longest window (≤ 30 min, TAOBAO.md §6.1).
    pub max_window: Duration,
    /// Trades per page (1–100).
    pub page_size: u32,
    /// How far back the very first poll starts.
    pub lookback: Duration,
    /// How often the open orders are re-scanned.
    pub rescan_every: Duration,
    /// How far back (by creation) the re-scan looks.
    pub rescan_days: u32,
    /// Open orders not read in full for this long are read again at the re-scan.
    pub refresh_after: Duration,
    /// `/healthz` fails when the lag exceeds this while Taobao answers.
    pub lag_alert: Duration,
    /// `trade.fullinfo.get` calls in flight at once.
    pub fullinfo_concurrency: usize,
    /// Trade types to ask for (comma list); `None` = the platform's default set.
    pub trade_types: Option<String>,
    /// Hold rules.
    pub rules: Rules,
}

impl Default for IntakeOptions {
    fn default() -> Self {
        IntakeOptions {
            shop: ShopId::main(),
            poll_interval: Duration::from_secs(60),
            overlap: Duration::from_secs(120),
            error_overlap: Duration::from_secs(600),
            max_window: Duration::from_secs(1800),
            page_size: 100,
            lookback: Duration::from_secs(24 * 3600),
            rescan_every: Duration::from_secs(24 * 3600),
            rescan_days: 3,
            refresh_after: Duration::from_secs(24 * 3600),
            lag_alert: Duration::from_secs(1800),
            fullinfo_concurrency: 4,
            trade_types: None,
            rules: Rules::default(),
        }
    }
}

/// Where intake stands, for the status page, `/healthz`, metrics and tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IntakeStatus {
    /// Everything modified up to here is stored.
    pub watermark: Option<DateTime<Utc>>,
    /// `now − watermark`, seconds.
    pub lag_seconds: f64,
    /// Polls completed.
    pub polls: u64,
    /// Sub-windows stored.
    pub windows: u64,
    /// Trades first stored.
    pub inserted: u64,
    /// Trades updated.
    pub updated: u64,
    /// Whether the last call reached Taobao (an answer, even an error).
    pub link_up: bool,
    /// The last failure, if the last poll failed.
    pub last_error: Option<String>,
    /// Why intake is stopped, if it is (authorisation).
    pub stopped: Option<String>,
    /// When the open orders were last re-scanned.
    pub rescanned: Option<DateTime<Utc>>,
    /// While waiting for the next poll: until when (tests step the clock on it).
    pub asleep_until: Option<DateTime<Utc>>,
}

/// `now − watermark` in seconds (infinite before the first pull).
fn lag_seconds(st: &IntakeStatus, now: DateTime<Utc>) -> f64 {
    st.watermark
        .map_or(f64::INFINITY, |w| {
            (now - w).num_milliseconds() as f64 / 1000.0
        })
        .max(0.0)
}

/// The intake check as of `now`: the job sets it after each poll, and the status page works
/// it out again at each request, so the lag it names is the lag the page shows (it grows
/// between polls and during an outage).
pub fn check(st: &IntakeStatus, now: DateTime<Utc>, lag_alert: Duration) -> (Status, String) {
    let lag = lag_seconds(st, now);
    let lag_text = if lag.is_finite() {
        humantime::format_duration(Duration::from_secs(lag as u64)).to_string()
    } else {
        "no order pulled yet".to_owned()
    };
    if let Some(why) = &st.stopped {
        (Status::Failing, why.clone())
    } else if st.polls == 0 && st.last_error.is_none() {
        // Starting: the first pull (the lookback) is under way and has not failed.
        (
            Status::Ok,
            "the first pull from Taobao is under way".to_owned(),
        )
    } else if !st.link_up && st.last_error.is_some() {
        (
            Status::Degraded,
            format!("Taobao not reachable; intake lag {lag_text} and growing"),
        )
    } else if lag > lag_alert.as_secs_f64() {
        (
            Status::Failing,
            format!(
                "intake lags {lag_text} while Taobao answers ({})",
                st.last_error.as_deref().unwrap_or("no error")
            ),
        )
    } else if let Some(e) = &st.last_error {
        (
            Status::Degraded,
            format!("intake lag {lag_text}; last poll failed: {e}"),
        )
    } else {
        (Status::Ok, format!("intake lag {lag_text}"))
    }
}

/// The order intake job.
pub struct Intake {
    client: TopClient,
    store: Store,
    outbox: Outbox<TaobaoOp>,
    bus: Bus,
    alerts: Alerts,
    health: Health,
    clock: Clock,
    opts: IntakeOptions,
    status: watch::Sender<IntakeStatus>,
    /// Current sub-window span, learnt from how full the last pages were.
    span: Duration,
    /// TOP calls made in the current sub-window.
    calls: u32,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("shop", &self.opts.shop)
            .finish_non_exhaustive()
    }
}

/// Watches an [`Intake`] from outside.
#[derive(Debug, Clone)]
pub struct IntakeHandle {
    status: watch::Receiver<IntakeStatus>,
}

impl IntakeHandle {
    /// The status now.
    pub fn status(&self) -> IntakeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that changes with every update.
    pub fn watch(&self) -> watch::Receiver<IntakeStatus> {
        self.status.clone()
    }
}

/// The end of a sub-window, stored with its last page: the watermark moves to `end`, and the
/// window's audit row (DOMAIN.md §1 rule 5) goes in the same transaction.
#[derive(Debug, Clone, Copy)]
struct WindowEnd {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// (inserted, updated, unchanged) of the window's earlier pages.
    prior: (usize, usize, usize),
    started: tokio::time::Instant,
}

fn cd(d: Duration) -> CDuration {
    CDuration::from_std(d).unwrap_or(CDuration::MAX)
}

/// Floors an instant to whole seconds (TOP dates have no fractions).
fn whole(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

impl Intake {
    /// An intake job; nothing runs until [`run`](Self::run).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: TopClient,
        store: Store,
        outbox: Outbox<TaobaoOp>,
        bus: Bus,
        alerts: Alerts,
        health: Health,
        clock: Clock,
        opts: IntakeOptions,
    ) -> (Intake, IntakeHandle) {
        let (tx, rx) = watch::channel(IntakeStatus::default());
        let span = opts.max_window.min(Duration::from_secs(1800));
        (
            Intake {
                client,
                store,
                outbox,
                bus,
                alerts,
                health,
                clock,
                opts,
                status: tx,
                span,
                calls: 0,
            },
            IntakeHandle { status: rx },
        )
    }

    fn set(&self, f: impl FnOnce(&mut IntakeStatus)) {
        self.status.send_modify(f);
    }

    /// Pulls until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Infallible> {
        let backoff = Backoff::new(
            Duration::from_secs(5),
            self.opts.poll_interval.max(Duration::from_secs(5)),
        );
        let mut failures = 0u32;
        let mut after_error = true; // the first poll after a start uses the long overlap
        let mut rescan_due = false;
        self.publish_counts();
        loop {
            let outcome = tokio::select! {
                // Shutdown: no call is in flight between polls.
                _ = shutdown.cancelled() => return Ok(()),
                r = self.poll(after_error, rescan_due) => r,
            };
            let now = self.clock.now();
            let wait = match outcome {
                Ok(rescanned) => {
                    if failures > 0 {
                        tracing::info!(failed_polls = failures, "order intake caught up");
                    }
                    failures = 0;
                    after_error = false;
                    if rescanned {
                        rescan_due = false;
                    }
                    self.set(|s| {
                        s.polls += 1;
                        s.last_error = None;
                        s.stopped = None;
                        s.link_up = true;
                    });
                    self.opts.poll_interval
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    after_error = true;
                    // Every outage ends with a re-scan of the open orders.
                    rescan_due = true;
                    let reached = e.reached_taobao();
                    let text = e.to_string();
                    match e.disposition() {
                        Disposition::Retry { after } => {
                            tracing::warn!(error = %text, tries = failures, "order intake failed; will retry");
                            self.set(|s| {
                                s.last_error = Some(text);
                                s.stopped = None;
                                s.link_up = reached;
                            });
                            backoff.delay(failures, rand::random::<f64>()).max(
                                after
                                    .unwrap_or_default()
                                    .min(Duration::from_secs(24 * 3600)),
                            )
                        }
                        Disposition::Auth => {
                            tracing::warn!(error = %text, "order intake stopped: the shop is not authorised");
                            self.set(|s| {
                                s.last_error = Some(text.clone());
                                s.stopped = Some(format!(
                                    "the shop is not authorised ({text}); run `wms-node auth login`"
                                ));
                                s.link_up = reached;
                            });
                            self.opts.poll_interval
                        }
                        Disposition::Permanent | Disposition::AlreadyDone => {
                            tracing::error!(error = %text, "order intake refused by Taobao; will retry");
                            self.set(|s| {
                                s.last_error = Some(text);
                                s.stopped = None;
                                s.link_up = true;
                            });
                            self.opts.poll_interval
                        }
                    }
                }
            };
            // A wait from the platform (a ban) is bounded, and the sum saturates regardless.
            let next = now
                .checked_add_signed(cd(wait))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            self.report(now);
            self.set(|s| s.asleep_until = Some(next));
            tokio::select! {
                // Shutdown.
                _ = shutdown.cancelled() => return Ok(()),
                // The next poll (or the end of a backoff or a ban) is due on the clock.
                _ = self.clock.sleep_until(next) => {}
            }
            self.set(|s| s.asleep_until = None);
        }
    }

    /// Lag, metric and health check, from the status.
    fn report(&self, now: DateTime<Utc>) {
        let mut st = self.status.borrow().clone();
        let lag = lag_seconds(&st, now);
        self.set(|s| s.lag_seconds = lag);
        if lag.is_finite() {
            metrics::gauge!("wms_node_intake_lag_seconds").set(lag);
        }
        st.lag_seconds = lag;
        let (status, message) = check(&st, now, self.opts.lag_alert);
        self.health.set(CHECK, status, message);
    }

    /// One poll: the windows up to now, then the re-scan when due. `Ok(true)` when it
    /// re-scanned.
    async fn poll(&mut self, after_error: bool, rescan_due: bool) -> Result<bool, IntakeError> {
        let now = self.clock.now();
        let shop = self.opts.shop.clone();
        let stored = self
            .store
            .read(|r| cursor::load(r, shop.as_str(), cursor::TRADES))?;
        let first = stored.is_none();
        let c = stored.unwrap_or_default();
        let watermark = if first {
            whole(now - cd(self.opts.lookback))
        } else {
            wms::time::at(c.watermark_ms)
        };
        self.set(|s| {
            s.watermark = Some(watermark);
            s.rescanned = (c.rescanned_ms > 0).then(|| wms::time::at(c.rescanned_ms));
        });
        let target = whole(now - CDuration::seconds(10));
        let overlap = if after_error || first {
            self.opts.error_overlap
        } else {
            self.opts.overlap
        };
        // Taobao keeps three months of changes; a box off for longer starts from there (the
        // re-scan covers the orders still open).
        let floor = whole(now - CDuration::days(89));
        let mut start = whole(watermark - cd(overlap)).max(floor);
        let max_window = cd(self.opts.max_window.min(Duration::from_secs(1800)));
        while start < target {
            let end = (start + max_window).min(target);
            self.window(start, end).await?;
            start = end;
        }
        let due = first
            || rescan_due
            || c.rescanned_ms == 0
            || wms::time::at(c.rescanned_ms) + cd(self.opts.rescan_every) <= now;
        if due {
            self.rescan().await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads `[start, end]` in sub-windows, storing each with its part of the watermark.
    async fn window(
        &mut self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<(), IntakeError> {
        let mut a = start;
        while a < end {
            let span = cd(self.span).max(CDuration::minutes(1));
            let b = (a + span).min(end);
            self.calls = 0;
            let started = tokio::time::Instant::now();
            let mut q = IncrementQuery::window(a, b);
            q.fields = LIST_FIELDS.iter().map(|s| (*s).to_owned()).collect();
            q.page_size = self.opts.page_size;
            q.trade_type = self.opts.trade_types.clone();
            let page = self.list(&q).await?;
            let full = page
                .has_next
                .unwrap_or(page.trades.len() >= q.page_size as usize);
            if full && b - a > CDuration::minutes(1) {
                // Too many for one page: halve and read the first half first.
                self.span = ((b - a) / 2)
                    .to_std()
                    .unwrap_or(Duration::from_secs(60))
                    .max(Duration::from_secs(60));
                continue;
            }
            let counts = if full {
                self.read_backwards(a, b, started).await?
            } else {
                let end = WindowEnd {
                    start: a,
                    end: b,
                    prior: (0, 0, 0),
                    started,
                };
                self.ingest(page.trades, Some(end), false).await?
            };
            self.note_window(a, b, counts, started.elapsed());
            // Learn: a page well under half full lets the next span grow (to the window's
            // maximum), so a quiet shop costs one call per window.
            let seen = counts.0 + counts.1 + counts.2;
            if !full && seen < (self.opts.page_size as usize) / 3 {
                self.span = (self.span * 2).min(self.opts.max_window);
            } else if !full && seen > (self.opts.page_size as usize) * 4 / 5 {
                self.span = (self.span * 3 / 4).max(Duration::from_secs(60));
            }
            a = b;
        }
        Ok(())
    }

    /// A dense minute: `total_results`, then the pages last → first (DOMAIN.md §1 rule 3).
    async fn read_backwards(
        &mut self,
        a: DateTime<Utc>,
        b: DateTime<Utc>,
        started: tokio::time::Instant,
    ) -> Result<(usize, usize, usize), IntakeError> {
        let mut q = IncrementQuery::window(a, b);
        q.fields = LIST_FIELDS.iter().map(|s| (*s).to_owned()).collect();
        q.page_size = self.opts.page_size;
        q.trade_type = self.opts.trade_types.clone();
        q.use_has_next = false;
        let first = self.list(&q).await?;
        let total = first.total_results.unwrap_or(0).max(0) as u64;
        let pages = total.div_ceil(u64::from(q.page_size)).max(1);
        tracing::info!(
            start = %crate::taobao::time::format(a),
            trades = total,
            pages,
            "a dense minute: reading its pages last to first"
        );
        let mut sum = (0, 0, 0);
        for p in (2..=pages).rev() {
            q.page_no = u32::try_from(p).unwrap_or(u32::MAX);
            let page = self.list(&q).await?;
            let c = self.ingest(page.trades, None, false).await?;
            sum = (sum.0 + c.0, sum.1 + c.1, sum.2 + c.2);
        }
        // Page 1 again, last: whatever shifted onto it while the others were read.
        let page1 = if pages > 1 {
            q.page_no = 1;
            self.list(&q).await?
        } else {
            first
        };
        let end = WindowEnd {
            start: a,
            end: b,
            prior: sum,
            started,
        };
        let c = self.ingest(page1.trades, Some(end), false).await?;
        Ok((sum.0 + c.0, sum.1 + c.1, sum.2 + c.2))
    }

    async fn list(&mut self, q: &IncrementQuery) -> Result<TradesPage, TopError> {
        self.calls += 1;
        self.client.trades_sold_increment_get(q).await
    }

    /// Reads in full the trades that are new or changed (or all of them with `force`),
    /// stores them, and moves the watermark to `to.1` in the same transaction. Returns
    /// (inserted, updated, unchanged).
    async fn ingest(
        &mut self,
        listed: Vec<Trade>,
        to: Option<WindowEnd>,
        force: bool,
    ) -> Result<(usize, usize, usize), IntakeError> {
        let shop = self.opts.shop.clone();
        let seen: Vec<(i64, Option<DateTime<Utc>>)> =
            listed.iter().map(|t| (t.tid, t.modified)).collect();
        drop(listed);
        // Which trades need reading in full: one read transaction for the page.
        let wanted: Vec<i64> = self.store.read(|r| {
            let mut out: Vec<i64> = Vec::new();
            for (tid, modified) in &seen {
                let Some(id) = wms::id(*tid) else { continue };
                let stored = match wms::orders::read_order(r, &shop, id) {
                    Ok(o) => o,
                    Err(StoreError::Corrupt { .. }) => None,
                    Err(e) => return Err(e),
                };
                let newer = match (stored, modified) {
                    (None, _) => true,
                    (Some(o), Some(m)) => force || o.modified_ms < m.timestamp_millis(),
                    (Some(_), None) => force,
                };
                if newer && !out.contains(tid) {
                    out.push(*tid);
                }
            }
            Ok(out)
        })?;
        let unchanged = seen.len().saturating_sub(wanted.len());
        let trades = self.fetch(wanted).await?;
        let (inserted, updated) = self.store_trades(trades, to, unchanged).await?;
        Ok((inserted, updated, unchanged))
    }

    /// `trade.fullinfo.get` for each tid, a few at once. A trade that cannot be decoded or
    /// no longer exists is skipped with an alert; any other failure fails the lot.
    async fn fetch(&mut self, tids: Vec<i64>) -> Result<Vec<Trade>, TopError> {
        if tids.is_empty() {
            return Ok(Vec::new());
        }
        self.calls = self
            .calls
            .saturating_add(u32::try_from(tids.len()).unwrap_or(u32::MAX));
        let client = self.client.clone();
        let mut results = futures::stream::iter(tids)
            .map(|tid| {
                let client = client.clone();
                async move { (tid, client.trade_fullinfo_get(tid, &[]).await) }
            })
            .buffer_unordered(self.opts.fullinfo_concurrency.max(1));
        let mut out = Vec::new();
        let mut failure = None;
        while let Some((tid, r)) = results.next().await {
            match r {
                Ok(t) if t.tid == tid => out.push(t),
                Ok(t) => {
                    tracing::warn!(
                        tid,
                        got = t.tid,
                        "trade.fullinfo.get answered another tid; skipped"
                    );
                }
                Err(TopError::Decode { detail, .. }) => {
                    metrics::counter!("wms_node_intake_unreadable_trades_total").increment(1);
                    self.alerts.raise_about(
                        AlertCode::UnreadableTrade,
                        Subject::tid(tid),
                        Severity::Warning,
                        format!(
                            "trade {tid} could not be read ({detail}); it is skipped and read \
                             again at the next re-scan"
                        ),
                    );
                }
                Err(TopError::Api(e)) if e.sub_code.as_deref() == Some("isv.trade-not-exist") => {
                    tracing::warn!(
                        tid,
                        "trade listed but not found by trade.fullinfo.get; skipped"
                    );
                }
                Err(e) => {
                    if failure.is_none() {
                        failure = Some(e);
                    }
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// One durable write: the trades, their feedback ops, and (for the last page of a
    /// sub-window) the watermark. Returns (inserted, updated).
    async fn store_trades(
        &mut self,
        trades: Vec<Trade>,
        to: Option<WindowEnd>,
        unchanged: usize,
    ) -> Result<(usize, usize), IntakeError> {
        if trades.is_empty() && to.is_none() {
            return Ok((0, 0));
        }
        let trades = Arc::new(trades);
        let shop = self.opts.shop.clone();
        let rules = self.opts.rules.clone();
        let outbox = self.outbox.clone();
        let bus = self.bus.clone();
        let now = self.clock.now();
        let feedback_time = crate::taobao::time::format(now);
        let calls = self.calls;
        let (inserted, updated, events) = wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &shop, now);
            let (mut ins, mut upd) = (0usize, 0usize);
            for t in trades.iter() {
                let applied = w.apply_trade(t, &rules)?;
                match applied.change {
                    Change::Inserted => ins += 1,
                    Change::Updated => upd += 1,
                    Change::Unchanged => {}
                }
                for f in applied.feedback {
                    queue_feedback(&outbox, txn, &f, &feedback_time);
                }
            }
            if let Some(e) = to {
                let mut c = w.cursor(cursor::TRADES)?.unwrap_or_default();
                c.watermark_ms = c.watermark_ms.max(e.end.timestamp_millis());
                c.moved_ms = now.timestamp_millis();
                w.set_cursor(cursor::TRADES, &c)?;
                let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
                let (wi, wu) = (e.prior.0 + ins, e.prior.1 + upd);
                // Quiet windows (nothing new or changed) are not worth an audit row each.
                if wi + wu > 0 {
                    w.record(Event::Window {
                        start_ms: e.start.timestamp_millis(),
                        end_ms: e.end.timestamp_millis(),
                        inserted: n(wi),
                        updated: n(wu),
                        unchanged: n(e.prior.2 + unchanged),
                        calls,
                        took_ms: u64::try_from(e.started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    });
                }
            }
            let events = w.finish()?;
            bus.publish_after_commit(shop.as_str(), events.clone());
            Ok((ins, upd, events))
        })
        .await?;
        if let Some(e) = to {
            self.set(|s| {
                s.watermark = Some(s.watermark.map_or(e.end, |w| w.max(e.end)));
            });
        }
        self.set(|s| {
            s.inserted += inserted as u64;
            s.updated += updated as u64;
        });
        metrics::counter!("wms_node_intake_trades_total", "change" => "inserted")
            .increment(inserted as u64);
        metrics::counter!("wms_node_intake_trades_total", "change" => "updated")
            .increment(updated as u64);
        self.after_commit(&events);
        Ok((inserted, updated))
    }

    /// Counts a stored sub-window (its audit row went with its last page).
    fn note_window(
        &mut self,
        a: DateTime<Utc>,
        b: DateTime<Utc>,
        counts: (usize, usize, usize),
        took: Duration,
    ) {
        metrics::counter!("wms_node_intake_windows_total").increment(1);
        metrics::histogram!("wms_node_intake_window_seconds").record(took.as_secs_f64());
        self.set(|s| s.windows += 1);
        tracing::debug!(
            start = %crate::taobao::time::format(a),
            end = %crate::taobao::time::format(b),
            inserted = counts.0,
            updated = counts.1,
            unchanged = counts.2,
            calls = self.calls,
            "intake window stored"
        );
    }

    /// The re-scan of open orders (DOMAIN.md §1 rule 7).
    async fn rescan(&mut self) -> Result<(), IntakeError> {
        let now = self.clock.now();
        let since = now - CDuration::days(i64::from(self.opts.rescan_days.max(1)));
        let mut listed = 0usize;
        for status in ["WAIT_SELLER_SEND_GOODS", "SELLER_CONSIGNED_PART"] {
            let mut q = SoldQuery::status(status);
            q.fields = LIST_FIELDS.iter().map(|s| (*s).to_owned()).collect();
            q.start_created = Some(whole(since));
            q.end_created = Some(whole(now));
            q.page_size = self.opts.page_size;
            q.trade_type = self.opts.trade_types.clone();
            q.use_has_next = false;
            let first = self.client.trades_sold_get(&q).await?;
            let total = first.total_results.unwrap_or(0).max(0) as u64;
            let pages = total.div_ceil(u64::from(q.page_size)).max(1);
            listed += first.trades.len();
            self.ingest(first.trades, None, false).await?;
            for p in (2..=pages).rev() {
                q.page_no = u32::try_from(p).unwrap_or(u32::MAX);
                let page = self.client.trades_sold_get(&q).await?;
                listed += page.trades.len();
                self.ingest(page.trades, None, false).await?;
            }
        }
        // Open orders not read in full for a day: read them again (their changes may have
        // been missed by a pull that failed half-way, or they left the re-scan's statuses).
        let shop = self.opts.shop.clone();
        let stale_before = (now - cd(self.opts.refresh_after)).timestamp_millis();
        let stale: Vec<i64> = self.store.read(|r| {
            let mut out = Vec::new();
            for tid in wms::view::open(r, &shop)? {
                if let Ok(Some(o)) = wms::orders::read_order(r, &shop, tid)
                    && o.refreshed_ms < stale_before
                {
                    out.push(i64::try_from(tid).unwrap_or(i64::MAX));
                }
            }
            Ok(out)
        })?;
        let refreshed = stale.len();
        for chunk in stale.chunks(100) {
            let trades = self.fetch(chunk.to_vec()).await?;
            self.store_trades(trades, None, 0).await?;
        }
        let shop = self.opts.shop.clone();
        wms::write(&self.store, move |txn| {
            let mut w = Wms::new(txn, &shop, now);
            let mut c = w.cursor(cursor::TRADES)?.unwrap_or_default();
            c.rescanned_ms = now.timestamp_millis();
            w.set_cursor(cursor::TRADES, &c)?;
            w.finish()?;
            Ok(())
        })
        .await?;
        self.set(|s| s.rescanned = Some(now));
        tracing::info!(listed, refreshed, "open orders re-scanned");
        Ok(())
    }

    /// Alerts and gauges after a commit.
    fn after_commit(&self, events: &[Event]) {
        for e in events {
            match e {
                Event::InterceptionNeeded { tid } => self.alerts.raise_about(
                    AlertCode::CourierInterception,
                    Subject::tid(*tid),
                    Severity::Critical,
                    format!(
                        "trade {tid} was refunded or closed after its parcel left: ask the \
                         carrier to intercept it"
                    ),
                ),
                Event::ShippedElsewhere { tid } => self.alerts.raise_about(
                    AlertCode::ShippedElsewhere,
                    Subject::tid(*tid),
                    Severity::Warning,
                    format!(
                        "Taobao shows trade {tid} shipped, but the floor never handed it over: \
                         check whether it was shipped by hand"
                    ),
                ),
                _ => {}
            }
        }
        if !events.is_empty() {
            self.publish_counts();
        }
    }

    /// Reads the counters and sets the gauges and the SKU alert.
    fn publish_counts(&self) {
        super::counts::publish_counts(&self.store, &self.opts.shop, &self.alerts);
    }
}

/// The "Orders" block of the status page: intake lag, today's orders by state, holds, and
/// the day's calls against the budget. Reads cached figures only.
pub struct IntakeSection {
    handle: IntakeHandle,
    client: TopClient,
    shop: ShopId,
    clock: Clock,
    lag_alert: Duration,
}

impl IntakeSection {
    /// The section of an intake job; `lag_alert` is the job's own (`intake.lag_alert`).
    pub fn new(
        handle: IntakeHandle,
        client: TopClient,
        shop: ShopId,
        clock: Clock,
        lag_alert: Duration,
    ) -> Self {
        IntakeSection {
            handle,
            client,
            shop,
            clock,
            lag_alert,
        }
    }
}

impl crate::status::StatusSource for IntakeSection {
    fn observe(&self, at: &crate::status::At<'_>) -> crate::status::Observation {
        // The check and the section of one reading of the status, as of now (the lag grows
        // between polls).
        let (status, message) = check(&self.handle.status(), self.clock.now(), self.lag_alert);
        crate::status::Observation {
            checks: vec![(CHECK, status, message)],
            section: Some(self.section(at)),
        }
    }
}

impl IntakeSection {
    /// The "Orders" section. Goods out (orders by state, holds, deadline risk, the last
    /// reconciliation) adds its rows here.
    fn section(&self, at: &crate::status::At<'_>) -> crate::status::StatusSection {
        use crate::status::i18n::Msg;
        let st = self.handle.status();
        let now = self.clock.now();
        let mut rows = Vec::new();
        let lag = match st.watermark {
            Some(w) => {
                let secs = (now - w).num_seconds().max(0) as u64;
                at.f(
                    Msg::IntakeLag,
                    &[
                        &at.age(Duration::from_secs(secs)),
                        &crate::taobao::time::format(w),
                    ],
                )
            }
            None => at.t(Msg::NoPullYet),
        };
        rows.push((at.t(Msg::RowIntakeLag), lag));
        rows.push((
            at.t(Msg::RowLastPull),
            match (&st.stopped, &st.last_error) {
                (Some(why), _) => at.f(Msg::PullStopped, &[why]),
                (None, Some(e)) => at.f(Msg::PullFailed, &[e]),
                (None, None) if st.polls == 0 => at.t(Msg::NoneYet),
                (None, None) => at.f(Msg::PullOk, &[&st.polls, &st.windows]),
            },
        ));
        let counts = super::counts::cached_counts(&self.shop).unwrap_or_default();
        let today = wms::counts::day_of(now.timestamp_millis());
        let join = |m: Option<&std::collections::BTreeMap<String, u64>>| {
            let parts: Vec<String> = m
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let word = at.lang.order_word(k);
                    at.f(Msg::CountOf, &[v, &word])
                })
                .collect();
            if parts.is_empty() {
                at.t(Msg::None_)
            } else {
                parts.join(&at.t(Msg::ListSep))
            }
        };
        rows.push((
            at.f(Msg::RowOrdersToday, &[&today]),
            join(counts.days.get(&today)),
        ));
        rows.push((at.t(Msg::RowOrdersByState), join(Some(&counts.states))));
        rows.push((
            at.t(Msg::RowHeld),
            if counts.held == 0 {
                at.t(Msg::None_)
            } else {
                at.f(Msg::HeldOrders, &[&counts.held, &join(Some(&counts.holds))])
            },
        ));
        let b = self.client.budget();
        rows.push((
            at.t(Msg::RowCallsToday),
            match b.budget {
                Some(budget) => {
                    let pct = b.calls_today.saturating_mul(100) / budget.max(1);
                    let held: Vec<&str> = b.held_back.iter().map(|c| c.as_str()).collect();
                    let waiting = if held.is_empty() {
                        String::new()
                    } else {
                        at.f(Msg::WaitingForTomorrow, &[&held.join(&at.t(Msg::ListSep))])
                    };
                    at.f(
                        Msg::CallsOfBudget,
                        &[&b.calls_today, &budget, &pct, &waiting],
                    )
                }
                None => at.f(Msg::NoBudgetSet, &[&b.calls_today]),
            },
        ));
        crate::status::StatusSection {
            title: at.t(Msg::SecOrders),
            rows,
        }
    }
}

/// Queues one AliGenius report in the caller's transaction. A full outbox drops it with a
/// warning rather than stopping intake (the report is a courtesy to the platform; the hold
/// itself is what stops the parcel).
pub fn queue_feedback(
    outbox: &Outbox<TaobaoOp>,
    txn: &redb::WriteTransaction,
    f: &Feedback,
    operate_time: &str,
) {
    let (Ok(tid), Ok(oid), Ok(refund_id)) = (
        i64::try_from(f.tid),
        i64::try_from(f.oid),
        i64::try_from(f.refund_id),
    ) else {
        return;
    };
    let op = TaobaoOp::CancelFeedback {
        tid,
        oid,
        refund_id,
        refund_fee: None,
        stopped: f.stopped,
        operate_time: operate_time.to_owned(),
    };
    if let Err(e) = outbox.enqueue(txn, op) {
        tracing::warn!(tid = f.tid, refund_id = f.refund_id, error = %e,
            "refund feedback not queued");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_check_is_worked_out_as_of_the_request_not_the_last_poll() {
        let st = IntakeStatus {
            watermark: Some(at(0)),
            link_up: true,
            polls: 1,
            ..IntakeStatus::default()
        };
        let alert = Duration::from_secs(1800);
        // Right after the poll: ok, with the lag of that instant.
        assert_eq!(
            check(&st, at(60), alert),
            (Status::Ok, "intake lag 1m".to_owned())
        );
        // No poll since (the job is stuck): the same status read 40 minutes later fails.
        let (status, message) = check(&st, at(40 * 60), alert);
        assert_eq!(status, Status::Failing);
        assert!(message.starts_with("intake lags 40m"), "{message}");
        // The link is down: degraded, and the lag named is the growing one.
        let down = IntakeStatus {
            link_up: false,
            last_error: Some("connect timeout".to_owned()),
            ..st.clone()
        };
        let (status, message) = check(&down, at(3 * 3600), alert);
        assert_eq!(status, Status::Degraded);
        assert!(message.contains("intake lag 3h and growing"), "{message}");
        // Not authorised: failing with the reason, whatever the lag.
        let stopped = IntakeStatus {
            stopped: Some("the shop is not authorised".to_owned()),
            ..st
        };
        assert_eq!(check(&stopped, at(1), alert).0, Status::Failing);
        // During the first pull, whose window starts at the lookback: not a lag yet.
        let first = IntakeStatus {
            watermark: Some(at(0)),
            ..IntakeStatus::default()
        };
        assert_eq!(check(&first, at(7200), alert).0, Status::Ok);
        // The first pull failed: the link is named, and there is no lag to name.
        let failed = IntakeStatus {
            last_error: Some("connect timeout".to_owned()),
            ..IntakeStatus::default()
        };
        let (status, message) = check(&failed, at(0), alert);
        assert_eq!(status, Status::Degraded);
        assert!(message.contains("no order pulled yet"), "{message}");
    }
}
