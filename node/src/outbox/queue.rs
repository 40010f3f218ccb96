//! [`Outbox`]: enqueueing (inside a caller's transaction or on its own), the byte cap, and
//! the state shared with the delivery loop and the admin functions.

use super::error::EnqueueError;
use super::record::{self, Envelope};
use super::{Operation, admin};
use crate::ops::alert::{Alerts, Severity};
use crate::ops::health::{Health, Status};
use crate::ops::http::{StatusSection, StatusSource};
use crate::store::{self, CapPolicy, Store, StoreError};
use redb::WriteTransaction;
use serde::Serialize;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How the outbox delivers. The byte cap and its policy come from
/// [`StoreOptions`](crate::store::StoreOptions).
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Attempts in flight at once, across FIFO keys (one per key at most).
    pub concurrency: usize,
    /// Attempts per second (token bucket); 0 = no limit.
    pub rate_per_second: f64,
    /// Token bucket size: attempts that may start at once after an idle spell.
    pub burst: u32,
    /// Ceiling of the first backoff (full jitter: the wait is random below it).
    pub backoff_initial: Duration,
    /// Largest backoff ceiling.
    pub backoff_max: Duration,
    /// An attempt that takes longer counts as a retryable failure.
    pub attempt_timeout: Duration,
    /// At shutdown, in-flight attempts get this long to finish.
    pub shutdown_grace: Duration,
    /// Fractions of the byte cap at which the `store_cap` alert is raised, ascending: the
    /// last one raises it as critical, the others as a warning.
    pub cap_alert_thresholds: Vec<f64>,
    /// Index entries one scan may look at (bounds the work per wake-up).
    pub scan_budget: usize,
    /// `/healthz` reports the outbox failing when ops wait this long while the link is not
    /// known to be down (a stall), or while delivery is paused for re-authorization.
    pub stall_after: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            concurrency: 4,
            rate_per_second: 5.0,
            burst: 10,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            attempt_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(3),
            cap_alert_thresholds: vec![0.80, 0.95],
            scan_budget: 4096,
            stall_after: Duration::from_secs(600),
        }
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The op's sequence number.
    pub seq: u64,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// The older op it replaced (coalescing), if any.
    pub replaced: Option<u64>,
    /// Ops dropped to make room (`drop_oldest` policy).
    pub dropped: Vec<u64>,
}

/// An attempt in progress, for `queue show` and `/healthz`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InFlight {
    /// Which attempt (1-based).
    pub attempt: u32,
    /// When it started (Unix ms).
    pub started_at_ms: u64,
}

/// A snapshot of the delivery loop, for `/healthz` and the status page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryStatus {
    /// Whether the loop is running.
    pub running: bool,
    /// Paused after an auth failure (until [`Outbox::resume`]).
    pub paused: bool,
    /// `"unknown"`, `"up"` or `"down"`.
    pub link: &'static str,
    /// Consecutive failed attempts (while down).
    pub consecutive_failures: u32,
    /// Since when the link is down (Unix ms).
    pub down_since_ms: Option<u64>,
    /// The last delivery (Unix ms).
    pub last_success_ms: Option<u64>,
    /// The last failure's reason.
    pub last_failure: Option<String>,
    /// Attempts in flight.
    pub in_flight: usize,
}

pub(crate) struct Shared {
    pub store: Store,
    pub config: OutboxConfig,
    pub alerts: Alerts,
    /// Wakes the delivery loop (new op, operator retry, resume).
    pub wake: Arc<Notify>,
    /// Wakes producers waiting for room under the `block` policy.
    pub room: Notify,
    pub paused: AtomicBool,
    pub in_flight: Arc<Mutex<BTreeMap<u64, InFlight>>>,
    pub status: Mutex<DeliveryStatus>,
    /// Cached figures for the status page (which must not touch the store).
    pub usage: Mutex<Usage>,
    pub health: Mutex<Option<Health>>,
}

/// Cached queue figures.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    pub bytes: u64,
    pub count: u64,
    pub oldest_age_secs: u64,
}

/// The durable outbox for ops of type `Op`. Cheap to clone.
///
/// One op type per store: the tables are shared, so a second sink's ops belong in the same
/// enum (the Taobao op enum), not in a second `Outbox` over the same store.
pub struct Outbox<Op> {
    pub(crate) shared: Arc<Shared>,
    _op: PhantomData<fn() -> Op>,
}

impl<Op> Clone for Outbox<Op> {
    fn clone(&self) -> Self {
        Outbox {
            shared: self.shared.clone(),
            _op: PhantomData,
        }
    }
}

impl<Op: Operation> Outbox<Op> {
    /// An outbox over `store`. Nothing runs until [`run`](Self::run) is called.
    pub fn new(store: Store, config: OutboxConfig, alerts: Alerts) -> Self {
        let usage = store
            .read(record::load_meta)
            .map(|m| Usage {
                bytes: m.bytes,
                count: m.count,
                oldest_age_secs: 0,
            })
            .unwrap_or_default();
        Outbox {
            shared: Arc::new(Shared {
                store,
                config,
                alerts,
                wake: Arc::new(Notify::new()),
                room: Notify::new(),
                paused: AtomicBool::new(false),
                in_flight: Arc::new(Mutex::new(BTreeMap::new())),
                status: Mutex::new(DeliveryStatus {
                    link: "unknown",
                    ..DeliveryStatus::default()
                }),
                usage: Mutex::new(usage),
                health: Mutex::new(None),
            }),
            _op: PhantomData,
        }
    }

    /// Reports the `"outbox"` check to `health` while [`run`](Self::run) runs.
    pub fn with_health(self, health: Health) -> Self {
        if let Ok(mut h) = self.shared.health.lock() {
            *h = Some(health);
        }
        self
    }

    /// The store it writes to.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Enqueues `op` inside the caller's write transaction (the one that records the local
    /// change causing it), so both commit together or not at all. Call it from inside a
    /// [`Store::write`] closure; the op is acknowledged when that write resolves.
    ///
    /// On error nothing of the op was written and the op is handed back; the closure should
    /// return the error (`?` converts it), so its own writes are not committed either.
    pub fn enqueue(&self, txn: &WriteTransaction, op: Op) -> Result<Enqueued, EnqueueError<Op>> {
        match self.enqueue_in(txn, &op) {
            Ok(e) => Ok(e),
            Err(e) => Err(EnqueueError::from_store(e, op)),
        }
    }

    /// Enqueues `op` in a transaction of its own; resolves once it is durable. Under the
    /// `block` cap policy, waits for room instead of failing with `Full`.
    pub async fn enqueue_now(&self, op: Op) -> Result<Enqueued, EnqueueError<Op>> {
        loop {
            let this = self.clone();
            let mine = op.clone();
            let result = self
                .shared
                .store
                .write(move |txn| this.enqueue_in(txn, &mine))
                .await;
            match result {
                Ok(e) => return Ok(e),
                Err(StoreError::CapReached { .. })
                    if self.shared.store.options().cap_policy == CapPolicy::Block =>
                {
                    // Paused producer: wait for a delivery to free room (or re-check now
                    // and then, in case room was made by an operator from outside).
                    let room = self.shared.room.notified();
                    let _ = tokio::time::timeout(Duration::from_secs(1), room).await;
                }
                Err(e) => return Err(EnqueueError::from_store(e, op)),
            }
        }
    }

    fn enqueue_in(&self, txn: &WriteTransaction, op: &Op) -> Result<Enqueued, StoreError> {
        let shared = &self.shared;
        let opts = shared.store.options();
        let op_bytes = store::encode("outbox", op)?;
        let fifo_key = op.fifo_key();
        let coalesce_key = op.coalesce_key();
        let critical = op.is_critical();
        let kind = op.kind();
        // Each table is opened once per enqueue: opening is a large part of its cost.
        let mut meta_table = txn.open_table(store::META)?;
        let mut meta = record::load_meta_in(&meta_table)?;
        let mut tables = record::Tables::open(txn)?;

        // Everything is checked before anything is written, so a refused op leaves the
        // transaction untouched even if the caller swallows the error.
        let replaced = match &coalesce_key {
            Some(ck) => match tables.coalesce_target(ck)? {
                Some(seq) => match tables.peek(seq)? {
                    // Only within one FIFO key: otherwise the replacement could overtake an
                    // op the older one was ordered behind.
                    Some((env, len)) if env.fifo_key == fifo_key => Some((
                        seq,
                        record::footprint(len, &env.fifo_key, env.coalesce_key.as_deref()),
                    )),
                    _ => None,
                },
                None => None,
            },
            None => None,
        };
        let seq = meta.next_seq.max(1);
        let envelope = Envelope {
            kind: kind.to_owned(),
            summary: op.summary(),
            fifo_key,
            coalesce_key,
            priority: op.priority(),
            critical,
            idempotency_key: format!("{}-{}", shared.store.store_id(), seq),
            enqueued_at_ms: store::now_ms(),
            attempts: 0,
            last_error: None,
            last_attempt_at_ms: None,
            not_before_ms: 0,
            replaced: replaced.map(|(s, _)| s),
            op: op_bytes,
        };
        let raw = store::encode("outbox", &envelope)?;
        let size = record::footprint(
            raw.len(),
            &envelope.fifo_key,
            envelope.coalesce_key.as_deref(),
        );
        let cap = opts.max_bytes;
        let used_after = meta.bytes - replaced.map_or(0, |(_, fp)| fp).min(meta.bytes) + size;
        let mut to_drop = Vec::new();
        if cap > 0 && used_after > cap && !critical {
            let refuse = StoreError::CapReached {
                used: meta.bytes,
                cap,
            };
            match opts.cap_policy {
                CapPolicy::RejectNew | CapPolicy::Block => {
                    rejected(kind);
                    return Err(refuse);
                }
                CapPolicy::DropOldest => {
                    to_drop = tables.oldest_droppable(used_after - cap, replaced.map(|r| r.0))?;
                    if to_drop.is_empty() {
                        rejected(kind);
                        return Err(refuse);
                    }
                }
            }
        }

        // Now write.
        if let Some((old, _)) = replaced {
            tables.remove(&mut meta, old)?;
        }
        let mut dropped = Vec::new();
        for (seq, _) in &to_drop {
            if let Some(env) = tables.remove(&mut meta, *seq)? {
                dropped.push((*seq, env));
            }
        }
        tables.insert_encoded(&mut meta, seq, &envelope, &raw)?;
        record::save_meta_in(&mut meta_table, &meta)?;

        let after = AfterEnqueue {
            shared: self.shared.clone(),
            kind,
            replaced: replaced.is_some(),
            dropped: dropped
                .iter()
                .map(|(s, e)| (*s, e.kind.clone(), e.fifo_key.clone()))
                .collect(),
            bytes: meta.bytes,
            count: meta.count,
        };
        store::after_commit(move || after.report());
        Ok(Enqueued {
            seq,
            idempotency_key: envelope.idempotency_key,
            replaced: replaced.map(|(s, _)| s),
            dropped: dropped.into_iter().map(|(s, _)| s).collect(),
        })
    }

    /// Pauses delivery (as an auth failure does): in-flight attempts finish, nothing new
    /// starts until [`resume`](Self::resume).
    pub fn pause(&self, reason: &str) {
        if !self.shared.paused.swap(true, Ordering::SeqCst) {
            self.shared.alerts.raise(
                "outbox_paused",
                Severity::Critical,
                format!("delivery to the platform is paused: {reason}; ops keep queueing"),
            );
        }
        if let Ok(mut s) = self.shared.status.lock() {
            s.paused = true;
        }
    }

    /// Resumes delivery after credentials were renewed. Nothing was lost or reordered while
    /// paused; the loop probes with one op first.
    pub fn resume(&self) {
        if self.shared.paused.swap(false, Ordering::SeqCst) {
            tracing::info!("outbox delivery resumed");
        }
        self.shared.alerts.clear("outbox_paused");
        if let Ok(mut s) = self.shared.status.lock() {
            s.paused = false;
        }
        self.shared.wake.notify_one();
    }

    /// Whether delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// The delivery loop's state, for `/healthz` and the status page.
    pub fn status(&self) -> DeliveryStatus {
        let mut s = self
            .shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        s.in_flight = self.shared.in_flight.lock().map_or(0, |m| m.len());
        s.paused = self.is_paused();
        s
    }

    /// The admin functions over this outbox (knowing what is in flight, waking the loop).
    pub fn admin(&self) -> admin::Admin {
        admin::Admin::live(
            self.shared.store.clone(),
            self.shared.wake.clone(),
            self.shared.in_flight.clone(),
        )
    }

    /// Queued ops with seq greater than `after`, at most `limit`, decoded (for producers'
    /// own checks and for tests).
    pub fn queued(&self, after: u64, limit: usize) -> Result<Vec<(u64, Envelope, Op)>, StoreError> {
        self.shared.store.read(|r| {
            let t = r.open_table(record::OUTBOX)?;
            let mut out = Vec::new();
            for row in t.range(after.saturating_add(1)..)? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = row?;
                let Ok(env) = record::decode_envelope(v.value()) else {
                    continue;
                };
                if let Ok(op) = postcard::from_bytes::<Op>(&env.op) {
                    out.push((k.value(), env, op));
                }
            }
            Ok(out)
        })
    }
}

impl<Op: Operation> StatusSource for Outbox<Op> {
    fn section(&self) -> StatusSection {
        let u = self.shared.usage.lock().map(|u| *u).unwrap_or_default();
        let s = self.status();
        let cap = self.shared.store.options().max_bytes;
        let mut rows = vec![
            ("pending".to_owned(), u.count.to_string()),
            ("oldest".to_owned(), format!("{} s", u.oldest_age_secs)),
            ("in flight".to_owned(), s.in_flight.to_string()),
            (
                "link".to_owned(),
                if s.paused {
                    "paused (re-authorize)".to_owned()
                } else {
                    s.link.to_owned()
                },
            ),
            (
                "bytes".to_owned(),
                if cap > 0 {
                    format!(
                        "{} of {} ({:.0}%)",
                        u.bytes,
                        cap,
                        100.0 * u.bytes as f64 / cap as f64
                    )
                } else {
                    u.bytes.to_string()
                },
            ),
        ];
        if let Some(f) = s.last_failure {
            rows.push(("last failure".to_owned(), f));
        }
        StatusSection {
            title: "Outbox".to_owned(),
            rows,
        }
    }
}

impl<Op: Operation> Outbox<Op> {
    /// Sets the `"outbox"` health check from the cached figures (see
    /// [`OutboxConfig::stall_after`]).
    pub(crate) fn report_health(&self) {
        let Some(health) = self.shared.health.lock().ok().and_then(|h| h.clone()) else {
            return;
        };
        let (status, message) = self.assess();
        health.set("outbox", status, message);
    }

    /// The outbox's health: failing when it stalls (ops wait longer than `stall_after`
    /// while the link is not known to be down) or is paused for re-authorization; degraded
    /// while the link is down (queueing is what it is for).
    pub fn assess(&self) -> (Status, String) {
        let u = self.shared.usage.lock().map(|u| *u).unwrap_or_default();
        let s = self.status();
        let stall = self.shared.config.stall_after.as_secs();
        let now = store::now_ms();
        let quiet_secs = s.last_success_ms.map(|t| now.saturating_sub(t) / 1000);
        if u.count > 0 && !s.running {
            return (
                Status::Failing,
                format!(
                    "{} ops queued and the delivery loop is not running",
                    u.count
                ),
            );
        }
        if s.paused {
            return (
                Status::Failing,
                format!(
                    "delivery paused: re-authorize the shop ({} ops queued)",
                    u.count
                ),
            );
        }
        if s.link == "down" {
            return (
                Status::Degraded,
                format!(
                    "the platform is unreachable; {} ops queued, oldest {} s",
                    u.count, u.oldest_age_secs
                ),
            );
        }
        if u.count > 0 && u.oldest_age_secs > stall && quiet_secs.is_none_or(|q| q > stall) {
            return (
                Status::Failing,
                format!(
                    "stalled: {} ops queued, oldest {} s, nothing delivered for {}",
                    u.count,
                    u.oldest_age_secs,
                    quiet_secs.map_or("ever".to_owned(), |q| format!("{q} s"))
                ),
            );
        }
        (
            Status::Ok,
            format!("{} ops queued, oldest {} s", u.count, u.oldest_age_secs),
        )
    }
}

fn rejected(kind: &'static str) {
    metrics::counter!("outbox_rejected_total", "kind" => kind).increment(1);
}

/// What an enqueue reports once it is durable.
struct AfterEnqueue {
    shared: Arc<Shared>,
    kind: &'static str,
    replaced: bool,
    dropped: Vec<(u64, String, String)>,
    bytes: u64,
    count: u64,
}

impl AfterEnqueue {
    fn report(self) {
        metrics::counter!("outbox_enqueued_total", "kind" => self.kind).increment(1);
        if self.replaced {
            metrics::counter!("outbox_coalesced_total", "kind" => self.kind).increment(1);
        }
        for (seq, kind, fifo_key) in &self.dropped {
            tracing::warn!(seq, kind = %kind, fifo_key = %fifo_key,
                "outbox op dropped to stay under the byte cap (drop_oldest policy)");
            metrics::counter!("outbox_dropped_total", "kind" => kind.clone(), "reason" => "cap")
                .increment(1);
        }
        if !self.dropped.is_empty() {
            self.shared.alerts.raise(
                "outbox_dropped",
                Severity::Warning,
                format!(
                    "{} queued op(s) were dropped to stay under the outbox byte cap; raise \
                     store.max_bytes or restore the link",
                    self.dropped.len()
                ),
            );
        }
        report_usage(&self.shared, self.bytes, self.count);
        self.shared.wake.notify_one();
    }
}

/// Publishes the byte gauges and raises or clears the cap alerts.
pub(crate) fn report_usage(shared: &Shared, bytes: u64, count: u64) {
    if let Ok(mut u) = shared.usage.lock() {
        u.bytes = bytes;
        u.count = count;
    }
    metrics::gauge!("outbox_bytes").set(bytes as f64);
    metrics::gauge!("outbox_ops").set(count as f64);
    let cap = shared.store.options().max_bytes;
    if cap == 0 {
        return;
    }
    metrics::gauge!("outbox_cap_bytes").set(cap as f64);
    let thresholds = &shared.config.cap_alert_thresholds;
    let pct = 100.0 * bytes as f64 / cap as f64;
    let policy = shared.store.options().cap_policy;
    match cap_level(bytes, cap, thresholds) {
        CapLevel::Critical => shared.alerts.raise(
            "store_cap",
            Severity::Critical,
            format!(
                "the outbox uses {bytes} of {cap} bytes ({pct:.0}%): new non-critical ops are \
                 about to be refused or to drop older ones ({policy} policy); shipments are \
                 still accepted"
            ),
        ),
        CapLevel::Warning => shared.alerts.raise(
            "store_cap",
            Severity::Warning,
            format!("the outbox uses {bytes} of {cap} bytes ({pct:.0}%): is the link down?"),
        ),
        CapLevel::Normal => shared.alerts.clear("store_cap"),
        CapLevel::Hold => {}
    }
}

/// Where usage stands against the cap's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapLevel {
    /// Below the warning level by a margin: clear the alert.
    Normal,
    /// Just below the warning level: leave the alert as it is (no flapping).
    Hold,
    Warning,
    Critical,
}

/// `thresholds` ascending: reaching the last is critical, any other a warning; the alert is
/// cleared only 5 points below the first, so usage hovering at a threshold does not flap.
pub(crate) fn cap_level(bytes: u64, cap: u64, thresholds: &[f64]) -> CapLevel {
    let (Some(&first), Some(&last)) = (thresholds.first(), thresholds.last()) else {
        return CapLevel::Normal;
    };
    if cap == 0 {
        return CapLevel::Normal;
    }
    let used = bytes as f64 / cap as f64;
    if used >= last {
        CapLevel::Critical
    } else if used >= first {
        CapLevel::Warning
    } else if used >= first - 0.05 {
        CapLevel::Hold
    } else {
        CapLevel::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_levels_have_a_margin_below_the_warning() {
        let l = |b| cap_level(b, 1000, &[0.8, 0.95]);
        assert_eq!(l(100), CapLevel::Normal);
        assert_eq!(l(760), CapLevel::Hold);
        assert_eq!(l(800), CapLevel::Warning);
        assert_eq!(l(950), CapLevel::Critical);
        assert_eq!(l(5000), CapLevel::Critical);
        assert_eq!(cap_level(5000, 0, &[0.8, 0.95]), CapLevel::Normal);
        assert_eq!(cap_level(5000, 1000, &[]), CapLevel::Normal);
        assert_eq!(cap_level(990, 1000, &[0.99]), CapLevel::Critical);
    }
}
