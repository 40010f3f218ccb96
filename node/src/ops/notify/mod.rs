//! Alerts that reach people: the notifier keeps the alert book in the store and tells people
//! what changed, through a webhook (DingTalk or WeCom group robot, or plain JSON), durably,
//! de-duplicated and rate-limited.
//!
//! ```text
//!  Alerts (book) ──changed──▶ notifier ──one write──▶ alerts / alert_history   (record.rs)
//!                              │   decide() per key:    alert_notices (what people were told)
//!                              │   raised? resolved?    alert_outbox  (+ the notice, same txn)
//!                              │   too soon after the last notice? ─▶ look again then
//!                              ▼
//!                  Outbox<AlertNotice> (the outbox engine, its own queue) ──▶ WebhookSink
//!                  rate: [alerts] per_minute; link down: retried with backoff, in order
//! ```
//!
//! At start the notifier creates its tables, merges what the store kept into the book (the
//! active alerts and the history survive a restart), and looks at every key again: a notice
//! that was queued before a restart goes out after it, and an alert whose notice was never
//! queued (a crash between raising and the write, or a webhook configured since) is told now.
//!
//! What people are told, per `(code, subject)` ([`decide`]): `raised` when it becomes active
//! (at a severity in `[alerts] severities`), `escalated` when it becomes more urgent, and
//! `resolved` once when it clears, if it was told as active. Raising an active alert again
//! tells nothing (the count goes up on the status page). A key that flaps is told `raised` at
//! most once per `min_interval` after its last notice; in between, it is looked at again when
//! the interval is over and told only if still active. One-off codes
//! ([`AlertCode::expires_after`](crate::alert::AlertCode::expires_after)) expire without a
//! `resolved` notice.
//!
//! Durability: the alert's change and its notice are written in one transaction, and the
//! notice leaves the queue only when the webhook took it, so a notice raised while the link
//! is down goes out when it returns, and a restart loses nothing that was written. What was
//! raised in the last moment before a crash (not yet written: the write follows within
//! milliseconds for a new or resolved alert, within `FLUSH_EVERY` for a count) is told when
//! its owner raises it again. While the store cannot write (a full disk), alerts are still on
//! the status page, in `/metrics` and on MQTT; their notices wait for the store.

pub mod record;
pub mod webhook;

pub use webhook::{AlertNotice, NoticeEvent, Webhook, WebhookKind, WebhookSink};

use crate::alert::{Alert, AlertKey, Alerts, KeyState, Severity};
use crate::outbox::admin::{ListFilter, StateFilter};
use crate::outbox::{EnqueueError, Outbox, OutboxOptions, Queue, QueueTables};
use crate::status::health::{CheckName, Health};
use crate::store::{Store, StoreError};
use record::{Announced, StoredAlert};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The alert notices' queue: its own tables, never capped (one notice per key at most waits,
/// newer ones replace it), and a webhook that is down only degrades the node.
pub const ALERT_QUEUE: Queue = Queue {
    name: "alerts",
    title: crate::status::i18n::Msg::SecAlertDelivery,
    tables: QueueTables {
        outbox: "alert_outbox",
        fifo: "alert_outbox_fifo",
        sched: "alert_outbox_sched",
        keys: "alert_outbox_keys",
        dead_letter: "alert_dead_letter",
        meta_key: "alert_outbox",
    },
    check: CheckName::Alerts,
    dead_letter_alert: crate::alert::AlertCode::AlertDelivery,
    dead_letter_hint: "check [alerts] and the robot's settings; refused notices are dropped by \
                       themselves after 3 days",
    paused_alert: crate::alert::AlertCode::AlertDelivery,
    capped: false,
    essential: false,
};

/// Count-only changes (how often, last seen) are written at most this often.
const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// One-off alerts are expired and old refused notices dropped this often.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);
/// Refused notices are kept this long in the alert dead letters.
const DEAD_NOTICE_TTL: Duration = Duration::from_secs(3 * 24 * 3600);

/// How the notifier works; `[alerts]` in the config builds it.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// Where notices go; `None`: nowhere (alerts are still kept, shown and on MQTT).
    pub webhook: Option<Webhook>,
    /// Severities people are told about.
    pub severities: BTreeSet<Severity>,
    /// A key is told `raised` at most once per this, after its last notice.
    pub min_interval: Duration,
    /// Whether `resolved` notices are sent.
    pub send_resolved: bool,
    /// Resolved alerts kept.
    pub history: usize,
    /// `node.id`, in every notice.
    pub node_id: String,
    /// `node.site`, in every notice.
    pub site: String,
    /// The warehouse's offset from UTC, for the robots' texts.
    pub utc_offset: chrono::FixedOffset,
    /// The notice queue's delivery (rate, backoff, time-outs).
    pub delivery: OutboxOptions,
    /// A queue paused because the webhook refused our credentials is tried again this often.
    pub probe_every: Duration,
}

impl NotifyOptions {
    /// No webhook; warnings and criticals; 10 minutes between notices of one key; 20 notices
    /// a minute (the robots' limit); times in China Standard Time.
    pub fn new(node_id: &str, site: &str) -> NotifyOptions {
        NotifyOptions {
            webhook: None,
            severities: [Severity::Warning, Severity::Critical].into(),
            min_interval: Duration::from_secs(600),
            send_resolved: true,
            history: crate::alert::DEFAULT_HISTORY,
            node_id: node_id.to_owned(),
            site: site.to_owned(),
            utc_offset: chrono::FixedOffset::east_opt(8 * 3600)
                .unwrap_or_else(|| chrono::Utc.fix()),
            delivery: delivery_options(20, Duration::from_secs(10)),
            probe_every: Duration::from_secs(300),
        }
    }
}

use chrono::Offset as _;

/// The notice queue's delivery options: one at a time (in order), `per_minute` notices a
/// minute with a burst of up to 5, backoff from 2 s to 5 min.
pub fn delivery_options(per_minute: u32, timeout: Duration) -> OutboxOptions {
    let per_minute = per_minute.max(1);
    OutboxOptions {
        concurrency: 1,
        rate: firmware_bridge::pace::Rate::new(f64::from(per_minute) / 60.0, per_minute.min(5))
            .ok(),
        backoff_initial: Duration::from_secs(2),
        backoff_max: Duration::from_secs(300),
        attempt_timeout: timeout + Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(2),
        cap_alert_thresholds: Vec::new(),
        stall_after: Duration::from_secs(1800),
        ..OutboxOptions::default()
    }
}

/// What [`decide`] needs of the options.
#[derive(Debug, Clone)]
pub struct Policy {
    /// A webhook is configured.
    pub enabled: bool,
    /// Severities people are told about.
    pub severities: BTreeSet<Severity>,
    /// See [`NotifyOptions::min_interval`].
    pub min_interval_ms: u64,
    /// See [`NotifyOptions::send_resolved`].
    pub send_resolved: bool,
}

/// What to do about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to tell.
    Nothing,
    /// Something to tell, but not before this (Unix ms): look again then.
    Later(u64),
    /// Queue this notice, and remember that people now know the key as `announce`.
    Send {
        /// The notice's event.
        event: NoticeEvent,
        /// The alert it tells about.
        alert: Alert,
        /// The severity people then know it active with (`None`: resolved).
        announce: Option<Severity>,
    },
    /// Remember that the key is no longer active for people, without telling them.
    Forget,
}

/// What to tell people about a key in `state`, given what they were told (`told`).
pub fn decide(state: &KeyState, told: &Announced, now_ms: u64, p: &Policy) -> Decision {
    if !p.enabled {
        return Decision::Nothing;
    }
    match (state, told.severity) {
        (KeyState::Active(a), None) if p.severities.contains(&a.severity) => {
            let earliest = told.at_ms.saturating_add(p.min_interval_ms);
            if told.at_ms > 0 && now_ms < earliest {
                return Decision::Later(earliest);
            }
            Decision::Send {
                event: NoticeEvent::Raised,
                alert: a.clone(),
                announce: Some(a.severity),
            }
        }
        (KeyState::Active(a), Some(s)) if a.severity > s && p.severities.contains(&a.severity) => {
            Decision::Send {
                event: NoticeEvent::Escalated,
                alert: a.clone(),
                announce: Some(a.severity),
            }
        }
        (KeyState::Resolved(last), Some(s)) => {
            let one_off = told.key().is_some_and(|k| k.code.expires_after().is_some());
            if !p.send_resolved || one_off {
                return Decision::Forget;
            }
            let Some(key) = told.key() else {
                return Decision::Forget;
            };
            // The history may have let the episode go; tell what is known.
            let alert = last.clone().unwrap_or_else(|| Alert {
                id: 0,
                code: key.code,
                severity: s,
                subject: key.subject,
                message: "(no longer kept in the history)".into(),
                first_seen_ms: told.at_ms,
                last_seen_ms: told.at_ms,
                count: 1,
                resolved_ms: Some(now_ms),
            });
            Decision::Send {
                event: NoticeEvent::Resolved,
                alert,
                announce: None,
            }
        }
        _ => Decision::Nothing,
    }
}

/// The notifier: see the module doc.
pub struct Notifier {
    alerts: Alerts,
    store: Store,
    opts: NotifyOptions,
    outbox: Outbox<AlertNotice>,
    /// The keys to look at first, once restored.
    restored: Option<Vec<AlertKey>>,
}

impl Notifier {
    /// A notifier for `alerts` over `store`. Nothing runs until [`run`](Self::run).
    pub fn new(alerts: Alerts, store: Store, opts: NotifyOptions) -> Notifier {
        let outbox = Outbox::new(store.clone(), opts.delivery.clone(), alerts.clone());
        Notifier {
            alerts,
            store,
            opts,
            outbox,
            restored: None,
        }
    }

    /// Reports the `"alerts"` check to `health` while a webhook is configured.
    pub fn with_health(mut self, health: Health) -> Self {
        self.outbox = self.outbox.with_health(health);
        self
    }

    /// The notice queue (for the status page and tests).
    pub fn outbox(&self) -> &Outbox<AlertNotice> {
        &self.outbox
    }

    fn policy(&self) -> Policy {
        Policy {
            enabled: self.opts.webhook.is_some(),
            severities: self.opts.severities.clone(),
            min_interval_ms: u64::try_from(self.opts.min_interval.as_millis()).unwrap_or(u64::MAX),
            send_resolved: self.opts.send_resolved,
        }
    }

    /// Creates the alert tables and merges what the store kept into the book. The daemon
    /// calls it before the other parts start, so that they raise and clear alerts that are
    /// already there; if it fails (a full disk), [`run`](Self::run) tries again.
    pub async fn restore(&mut self) -> Result<(), StoreError> {
        if self.restored.is_none() {
            self.restored = Some(self.load().await?);
        }
        Ok(())
    }

    /// Restores the book from the store (unless [`restore`](Self::restore) did), then keeps
    /// the store and the webhook in step with it until `shutdown` (a last write of what
    /// changed meanwhile, then it returns).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), Infallible> {
        let mut wait = Duration::from_secs(1);
        let keys = loop {
            if let Some(keys) = self.restored.take() {
                break keys;
            }
            match self.load().await {
                Ok(keys) => break keys,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the alerts from the store; trying again");
                    tokio::select! {
                        // Shutdown before the store came back.
                        _ = shutdown.cancelled() => return Ok(()),
                        // The store may be writable again (space freed).
                        _ = tokio::time::sleep(wait) => wait = (wait * 2).min(Duration::from_secs(60)),
                    }
                }
            }
        };
        let sink = match &self.opts.webhook {
            Some(hook) => match WebhookSink::new(
                hook.clone(),
                &self.opts.node_id,
                &self.opts.site,
                self.opts.utc_offset,
            ) {
                Ok(s) => {
                    tracing::info!(
                        webhook = hook.kind.as_str(),
                        "alert notices go to the webhook"
                    );
                    Some(s)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the webhook client; notices stay queued");
                    None
                }
            },
            None => None,
        };
        let delivery = {
            let outbox = self.outbox.clone();
            let token = shutdown.clone();
            async move {
                match sink {
                    Some(sink) => outbox.run(sink, token).await,
                    None => token.cancelled().await,
                }
            }
        };
        tokio::join!(delivery, self.keep(keys, shutdown));
        Ok(())
    }

    /// Creates the tables, merges the store into the book; returns the keys to look at.
    async fn load(&self) -> Result<Vec<AlertKey>, StoreError> {
        self.store.write(record::create).await?;
        let history = self.opts.history;
        let loaded = self.store.read(|r| record::load(r, history))?;
        let told: Vec<AlertKey> = loaded
            .notices
            .iter()
            .filter(|(_, a)| a.severity.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let (active, restored) = (loaded.active.len(), loaded.history.len());
        let keys = self.alerts.with_book(|b| {
            b.restore(loaded.active, loaded.history, loaded.next_id, history);
            let mut keys: BTreeSet<AlertKey> = b.active().iter().map(Alert::key).collect();
            keys.extend(told);
            keys.into_iter().collect()
        });
        tracing::info!(
            active,
            resolved = restored,
            "alerts restored from the store"
        );
        Ok(keys)
    }

    async fn keep(&self, keys: Vec<AlertKey>, shutdown: CancellationToken) {
        // Keys to look at again, with when (Unix ms; 0 = now).
        let mut due: BTreeMap<AlertKey, u64> = keys.into_iter().map(|k| (k, 0)).collect();
        let mut last_flush = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut failures = 0u32;
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_EVERY);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = tokio::time::interval(self.opts.probe_every);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probe.tick().await;
        loop {
            let force = last_flush.elapsed() >= FLUSH_EVERY;
            if retry_at.is_none_or(|t| t <= Instant::now()) {
                match self.flush(&mut due, force).await {
                    Ok(wrote) => {
                        failures = 0;
                        retry_at = None;
                        if wrote {
                            last_flush = Instant::now();
                        }
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        let wait = Duration::from_secs(1u64 << failures.min(6));
                        tracing::error!(error = %e, retry_in = ?wait,
                            "cannot write the alerts to the store; they stay in memory");
                        retry_at = Some(Instant::now() + wait);
                    }
                }
            }
            let now = crate::alert::now_ms();
            let next_due = due
                .values()
                .min()
                .map(|&ms| Instant::now() + Duration::from_millis(ms.saturating_sub(now)));
            let pending = self.alerts.with_book(|b| b.has_pending());
            let next_flush = pending.then(|| last_flush + FLUSH_EVERY);
            // After a failed write only the retry wakes (keys already due would spin).
            let wake = match retry_at {
                Some(t) => Some(t),
                None => [next_due, next_flush].into_iter().flatten().min(),
            };
            tokio::select! {
                // Shutdown: write what changed since the last flush, then stop.
                _ = shutdown.cancelled() => {
                    if let Err(e) = self.flush(&mut due, true).await {
                        tracing::warn!(error = %e, "the last alert changes could not be written");
                    }
                    return;
                }
                // An alert changed.
                _ = self.alerts.wait_changed() => {}
                // A key is due again, count-only changes are due, or a failed write.
                _ = sleep_until(wake), if wake.is_some() => {}
                // One-off alerts expire; refused notices are let go.
                _ = housekeeping.tick() => {
                    self.alerts.expire();
                    self.drop_old_dead_notices().await;
                }
                // A webhook that refused our credentials may have been fixed on its side.
                _ = probe.tick() => {
                    if self.outbox.is_paused() {
                        tracing::info!("trying the alert webhook again");
                        self.outbox.resume();
                    }
                }
            }
        }
    }

    /// Writes the book's changes and queues the notices they call for (plus those of keys
    /// whose time came). Count-only changes wait for `force`. Returns whether it wrote.
    async fn flush(
        &self,
        due: &mut BTreeMap<AlertKey, u64>,
        force: bool,
    ) -> Result<bool, StoreError> {
        let now = crate::alert::now_ms();
        let (pending, mut keys) = self.alerts.with_book(|b| {
            let pending = if force || b.is_urgent() {
                b.take_pending().0
            } else {
                Vec::new()
            };
            let keys: BTreeSet<AlertKey> = pending.iter().map(Alert::key).collect();
            (pending, keys)
        });
        let ripe: Vec<AlertKey> = due
            .iter()
            .filter(|&(_, &at)| at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &ripe {
            due.remove(k);
        }
        keys.extend(ripe);
        if pending.is_empty() && keys.is_empty() {
            return Ok(false);
        }
        let states: Vec<(AlertKey, KeyState)> = self
            .alerts
            .with_book(|b| keys.iter().map(|k| (k.clone(), b.state_of(k))).collect());
        let policy = self.policy();
        let history = self.opts.history;
        let outbox = self.outbox.clone();
        let changed = pending.clone();
        let result = self
            .store
            .write(move |txn| {
                record::persist(txn, &changed, history)?;
                let mut later = Vec::new();
                for (key, state) in &states {
                    let told = record::announced(txn, key)?;
                    match decide(state, &told, now, &policy) {
                        Decision::Nothing => {}
                        Decision::Later(at) => later.push((key.clone(), at)),
                        Decision::Send {
                            event,
                            alert,
                            announce,
                        } => {
                            outbox
                                .enqueue(
                                    txn,
                                    AlertNotice {
                                        event,
                                        alert: StoredAlert::from(&alert),
                                    },
                                )
                                .map_err(|e| match e {
                                    EnqueueError::Store { source, .. } => source,
                                    // The notice queue is never capped; should it be, the
                                    // alert's change waits with its notice.
                                    full @ EnqueueError::Full { .. } => {
                                        StoreError::Aborted(full.to_string())
                                    }
                                })?;
                            let told = Announced {
                                severity: announce,
                                at_ms: now,
                                ..told
                            };
                            record::set_announced(txn, key, &told)?;
                        }
                        Decision::Forget => {
                            let told = Announced {
                                severity: None,
                                ..told
                            };
                            record::set_announced(txn, key, &told)?;
                        }
                    }
                }
                Ok(later)
            })
            .await;
        match result {
            Ok(later) => {
                for (k, at) in later {
                    due.insert(k, at);
                }
                Ok(true)
            }
            Err(e) => {
                self.alerts.with_book(|b| b.put_back(pending));
                for k in keys {
                    due.entry(k).or_insert(0);
                }
                Err(e)
            }
        }
    }

    /// Drops notices the webhook refused for good that are older than 3 days (they would
    /// only tell stale news).
    async fn drop_old_dead_notices(&self) {
        let admin = self.outbox.admin();
        let filter = ListFilter {
            state: StateFilter::Dead,
            limit: Some(1000),
            ..ListFilter::default()
        };
        let Ok(page) = admin.list(&filter) else {
            return;
        };
        let ttl = u64::try_from(DEAD_NOTICE_TTL.as_millis()).unwrap_or(u64::MAX);
        let now = crate::alert::now_ms();
        for op in page.ops {
            if op.dead_at_ms.is_some_and(|at| now.saturating_sub(at) > ttl) {
                let _ = admin
                    .drop_op(op.seq, "refused notice older than 3 days", true)
                    .await;
            }
        }
    }
}

/// The alerts as `wms-node alerts` and `GET /api/alerts` show them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertsView {
    /// Active, most severe first, then oldest first.
    pub active: Vec<Alert>,
    /// Resolved, newest first.
    pub resolved: Vec<Alert>,
}

impl AlertsView {
    /// The running node's book.
    pub fn of(alerts: &Alerts) -> AlertsView {
        AlertsView {
            active: alerts.active(),
            resolved: alerts.history(),
        }
    }

    /// What a stopped node's store holds (its last `history` resolved alerts).
    pub fn from_store(store: &Store, history: usize) -> Result<AlertsView, StoreError> {
        let loaded = store.read(|r| record::load(r, history))?;
        let mut book = crate::alert::Book::new(0);
        book.restore(loaded.active, loaded.history, loaded.next_id, history);
        Ok(AlertsView {
            active: book.active(),
            resolved: book.history(),
        })
    }
}

/// `GET /api/alerts`: the active and the recently resolved alerts (wrap it in
/// [`local_only`](crate::ops::http::local_only) with the rest of the admin API).
pub fn router(alerts: Alerts) -> axum::Router {
    async fn list(
        axum::extract::State(alerts): axum::extract::State<Alerts>,
    ) -> axum::Json<AlertsView> {
        axum::Json(AlertsView::of(&alerts))
    }
    axum::Router::new()
        .route("/api/alerts", axum::routing::get(list))
        .with_state(alerts)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertCode, Subject};

    fn policy() -> Policy {
        Policy {
            enabled: true,
            severities: [Severity::Warning, Severity::Critical].into(),
            min_interval_ms: 600_000,
            send_resolved: true,
        }
    }

    fn alert(sev: Severity) -> Alert {
        Alert {
            id: 1,
            code: AlertCode::DeadLetter,
            severity: sev,
            subject: Some(Subject::op_kind("ship")),
            message: "m".into(),
            first_seen_ms: 1,
            last_seen_ms: 1,
            count: 1,
            resolved_ms: None,
        }
    }

    fn told(sev: Option<Severity>, at_ms: u64) -> Announced {
        Announced {
            severity: sev,
            at_ms,
            ..Announced::none(&alert(Severity::Warning).key())
        }
    }

    #[test]
    fn a_new_alert_is_told_once_and_its_resolution_once() {
        let p = policy();
        let active = KeyState::Active(alert(Severity::Warning));
        let d = decide(&active, &told(None, 0), 5, &p);
        assert!(matches!(
            d,
            Decision::Send {
                event: NoticeEvent::Raised,
                announce: Some(Severity::Warning),
                ..
            }
        ));
        assert_eq!(
            decide(&active, &told(Some(Severity::Warning), 5), 6, &p),
            Decision::Nothing
        );
        let resolved = KeyState::Resolved(Some(Alert {
            resolved_ms: Some(9),
            ..alert(Severity::Warning)
        }));
        let d = decide(&resolved, &told(Some(Severity::Warning), 5), 10, &p);
        assert!(matches!(
            d,
            Decision::Send {
                event: NoticeEvent::Resolved,
                announce: None,
                ..
            }
        ));
        assert_eq!(
            decide(&resolved, &told(None, 10), 11, &p),
            Decision::Nothing
        );
    }

    #[test]
    fn only_a_rise_in_severity_is_told_again_and_filtered_severities_never() {
        let p = policy();
        let crit = KeyState::Active(alert(Severity::Critical));
        let d = decide(&crit, &told(Some(Severity::Warning), 5), 6, &p);
        assert!(matches!(
            d,
            Decision::Send {
                event: NoticeEvent::Escalated,
                ..
            }
        ));
        let warn = KeyState::Active(alert(Severity::Warning));
        assert_eq!(
            decide(&warn, &told(Some(Severity::Critical), 5), 6, &p),
            Decision::Nothing
        );
        let info = KeyState::Active(alert(Severity::Info));
        assert_eq!(decide(&info, &told(None, 0), 6, &p), Decision::Nothing);
        let off = Policy {
            enabled: false,
            ..policy()
        };
        assert_eq!(decide(&crit, &told(None, 0), 6, &off), Decision::Nothing);
    }

    #[test]
    fn a_flapping_alert_is_raised_again_only_after_the_interval() {
        let p = policy();
        let active = KeyState::Active(alert(Severity::Warning));
        // Resolved (and told) at 1000; raised again at 2000: wait until 601_000.
        assert_eq!(
            decide(&active, &told(None, 1000), 2000, &p),
            Decision::Later(601_000)
        );
        assert!(matches!(
            decide(&active, &told(None, 1000), 601_000, &p),
            Decision::Send { .. }
        ));
    }

    #[test]
    fn one_off_alerts_and_a_disabled_resolution_are_forgotten_silently() {
        let resolved = KeyState::Resolved(None);
        let no_resolved = Policy {
            send_resolved: false,
            ..policy()
        };
        assert_eq!(
            decide(
                &resolved,
                &told(Some(Severity::Warning), 5),
                10,
                &no_resolved
            ),
            Decision::Forget
        );
        let one_off = Announced {
            severity: Some(Severity::Critical),
            at_ms: 5,
            ..Announced::none(&AlertKey {
                code: AlertCode::ShippedClosedTrade,
                subject: Some(Subject::tid(1u64)),
            })
        };
        assert_eq!(decide(&resolved, &one_off, 10, &policy()), Decision::Forget);
        // A resolution whose episode the history let go is still told.
        let d = decide(&resolved, &told(Some(Severity::Warning), 5), 10, &policy());
        assert!(
            matches!(d, Decision::Send { event: NoticeEvent::Resolved, alert, .. } if alert.resolved_ms == Some(10))
        );
    }
}
