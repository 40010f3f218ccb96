//! The delivery loop: picks ready ops, hands them to the sink, records each result durably.
//!
//! ```text
//!            ┌──────────── wake: enqueue / operator retry / resume / timer ───────────┐
//!            v                                                                         │
//!   scan outbox_sched (bounded)  ──>  token bucket  ──>  spawn attempt ──> sink.deliver │
//!   heads of idle FIFO keys, due          rate limit        (≤ concurrency;   │          │
//!                                                            1 while down)    v          │
//!                                        record the outcome in one durable write ───────┘
//!                                        (Done: the op leaves; Retry: backoff;
//!                                         Permanent: dead letter; Auth: pause)
//! ```
//!
//! A FIFO key is released only after its attempt's outcome is durable, so the next op of
//! that key can never overtake a previous one, even across a crash. An op that was in flight
//! when the process died is simply still queued; it is delivered again with the same
//! idempotency key.
//!
//! Nothing is sent that cannot be recorded as sent: while the store cannot write (a full
//! disk, an I/O error; `Store::is_writable`) no attempt starts. An attempt that was already
//! on its way when the store failed keeps its outcome in memory, its key busy, and is
//! recorded once the store writes again, instead of being picked up and sent again. That is
//! the store's problem, not the platform's: the link state is left alone.

use super::cap::report_usage;
use super::link::{Link, LinkState};
use super::queue::{InFlight, Outbox};
use super::record::{self, Envelope};
use super::{Attempt, Operation, Outcome, Sink};
use crate::alert::{AlertCode, Severity, Subject};
use crate::store::{self, StoreError};
use firmware_bridge::pace::{Backoff, TokenBucket, deadline};
use futures::FutureExt;
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a loop paused by a store that cannot write looks again.
const STORE_POLL: Duration = Duration::from_millis(250);

/// A `not_before` further ahead than this can only come from a clock that jumped back.
const CLOCK_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// What an attempt task reports back.
struct Finished {
    seq: u64,
    fifo_key: String,
    kind: String,
    summary: String,
    outcome: Outcome,
    /// The durable record of the outcome: `Ok(true)` if the op was still there.
    recorded: Result<bool, StoreError>,
    took: Duration,
    /// A second try at recording an outcome the store could not record the first time.
    again: bool,
}

struct Loop<S> {
    sink: Arc<S>,
    link: Link,
    /// `None`: no rate limit.
    bucket: Option<TokenBucket<Instant>>,
    tasks: JoinSet<Finished>,
    /// Task id -> (seq, fifo key), to release a key even if its task died.
    running: HashMap<Id, (u64, String)>,
    busy: HashSet<String>,
    backoff: Backoff,
    was_paused: bool,
    /// Where the next scan goes on after one that ran out of budget.
    cursor: Option<(u8, u64)>,
    /// Delivered ops whose success the store could not record yet (their keys stay busy).
    unrecorded: Vec<Finished>,
}

impl<Op: Operation> Outbox<Op> {
    /// Runs the delivery loop until `shutdown` is cancelled, then lets in-flight attempts
    /// finish within `shutdown_grace` (the rest are abandoned: they stay queued and are
    /// delivered again, with the same idempotency key, after the restart).
    pub async fn run<S: Sink<Op>>(&self, sink: S, shutdown: CancellationToken) {
        let cfg = self.shared.config.clone();
        let backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);
        let mut lp = Loop {
            sink: Arc::new(sink),
            link: Link::new(backoff),
            bucket: cfg.rate.map(|rate| TokenBucket::new(rate, Instant::now())),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            busy: HashSet::new(),
            backoff,
            was_paused: false,
            cursor: None,
            unrecorded: Vec::new(),
        };
        self.shared.state().delivery.running = true;
        // What the store says, not what the last process remembered: the dead letters (and
        // their alerts), the queue's figures (and the cap's alert); and no pause survives a
        // restart.
        super::dead::refresh(&self.shared);
        self.refresh_usage();
        if !self.is_paused() {
            self.shared.alerts.clear(self.shared.queue.paused_alert);
        }
        let mut health_tick = tokio::time::interval(Duration::from_secs(5));
        health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(
            concurrency = cfg.concurrency,
            rate = cfg.rate.map_or(0.0, |r| r.tokens_per_second()),
            "outbox delivery started"
        );
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let wake_at = self.fill(&mut lp);
            tokio::select! {
                // Shutdown: stop starting attempts; in-flight ones get the deadline below.
                _ = shutdown.cancelled() => break,
                // An attempt finished; its outcome is already durable.
                Some(joined) = lp.tasks.join_next_with_id() => self.finished(&mut lp, joined),
                // New op, operator retry or resume.
                _ = self.shared.wake.notified() => {}
                // A backoff, a probe or a token is due.
                _ = sleep_until(wake_at), if wake_at.is_some() => {}
                // Refresh the health check and the oldest-age figure even when idle.
                _ = health_tick.tick() => self.report_health(),
            }
        }
        let deadline = Instant::now() + cfg.shutdown_grace;
        while !lp.tasks.is_empty() {
            match tokio::time::timeout_at(deadline, lp.tasks.join_next_with_id()).await {
                Ok(Some(joined)) => self.finished(&mut lp, joined),
                Ok(None) => break,
                Err(_) => {
                    for (seq, key) in lp.running.values() {
                        tracing::warn!(seq, fifo_key = %key,
                            "attempt still running at the shutdown deadline; abandoned (it stays queued)");
                    }
                    lp.tasks.abort_all();
                    while lp.tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        {
            let mut s = self.shared.state();
            s.in_flight.clear();
            s.delivery.running = false;
        }
        self.report_health();
        tracing::info!("outbox delivery stopped");
    }

    /// Starts what may start now; returns when to look again (besides wake-ups).
    fn fill<S: Sink<Op>>(&self, lp: &mut Loop<S>) -> Option<Instant> {
        let cfg = &self.shared.config;
        let paused = self.shared.state().delivery.paused;
        if paused {
            lp.was_paused = true;
            return None;
        }
        if lp.was_paused {
            lp.was_paused = false;
            lp.link.reset();
        }
        let now = Instant::now();
        if !self.shared.store.is_writable() {
            // Nothing is sent that cannot be recorded as sent.
            return Some(now + STORE_POLL);
        }
        if !lp.unrecorded.is_empty() {
            self.record_again(lp);
        }
        let slots = lp
            .link
            .max_in_flight(cfg.concurrency)
            .saturating_sub(lp.tasks.len());
        if slots == 0 {
            return None;
        }
        if let Some(t) = lp.link.not_before(now) {
            return Some(t);
        }
        let token_wait = lp.bucket.as_mut().map_or(Duration::ZERO, |b| b.wait(now));
        if !token_wait.is_zero() {
            return Some(deadline(now, token_wait));
        }
        let now_ms = store::now_ms();
        let horizon = u64::try_from(CLOCK_HORIZON.as_millis()).unwrap_or(u64::MAX);
        let busy = &lp.busy;
        let from = lp.cursor.take();
        let scan = self.shared.store.read(|r| {
            let s = record::scan(
                &self.shared.queue.tables,
                r,
                slots,
                busy,
                now_ms,
                horizon,
                cfg.scan_budget,
                from,
            );
            let age = oldest_age(&self.shared.queue.tables, r, now_ms);
            metrics::gauge!("wms_node_outbox_oldest_item_age_seconds",
                "queue" => self.shared.queue.name)
            .set(age);
            self.shared.state().usage.oldest_age_secs = age as u64;
            s
        });
        let scan = match scan {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "outbox scan failed; retrying in a second");
                return Some(deadline(now, Duration::from_secs(1)));
            }
        };
        lp.cursor = scan.resume_at;
        for b in scan.broken {
            self.quarantine(b);
        }
        let mut wake_at = scan
            .next_due_ms
            .map(|ms| deadline(now, Duration::from_millis(ms.saturating_sub(now_ms))));
        if scan.truncated && scan.ready.len() < slots {
            // More of the index to look at: go on at once (after other branches had a turn).
            wake_at = Some(now);
        }
        for ready in scan.ready {
            let taken = lp
                .bucket
                .as_mut()
                .map_or(Ok(()), |b| b.try_take(Instant::now()));
            if let Err(wait) = taken {
                let t = deadline(Instant::now(), wait);
                wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
                break;
            }
            self.start(lp, ready.seq, ready.envelope);
        }
        wake_at
    }

    fn quarantine(&self, b: record::Broken) {
        tracing::warn!(seq = b.seq, fifo_key = %b.fifo_key, reason = %b.reason,
            "outbox row is broken; moving it to quarantine");
        let store = self.shared.store.clone();
        let alerts = self.shared.alerts.clone();
        let wake = self.shared.wake.clone();
        let q = self.shared.queue.tables;
        tokio::spawn(async move {
            let r = store
                .write(move |txn| {
                    record::quarantine_row(&q, txn, b.seq, b.priority, &b.fifo_key, &b.reason)
                })
                .await;
            match r {
                Ok(true) => {
                    metrics::counter!("wms_node_store_quarantined_records_total", "table" => q.outbox)
                        .increment(1);
                    alerts.raise_about(
                        AlertCode::StoreQuarantine,
                        Subject::new("table", q.outbox),
                        Severity::Warning,
                        "an undecodable outbox op was moved to quarantine; the queue carries on \
                         without it; see `wms-node queue stats`",
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, "could not quarantine a broken outbox row"),
            }
            wake.notify_one();
        });
    }

    fn start<S: Sink<Op>>(&self, lp: &mut Loop<S>, seq: u64, env: Envelope) {
        let op: Op = match postcard::from_bytes(&env.op) {
            Ok(op) => op,
            Err(e) => {
                self.quarantine(record::Broken {
                    seq,
                    priority: env.priority as u8,
                    fifo_key: env.fifo_key,
                    reason: format!("op does not decode: {e}"),
                });
                return;
            }
        };
        let attempt = env.attempts.saturating_add(1);
        self.shared.state().in_flight.insert(
            seq,
            InFlight {
                attempt,
                started_at_ms: store::now_ms(),
            },
        );
        lp.busy.insert(env.fifo_key.clone());
        let sink = lp.sink.clone();
        let store = self.shared.store.clone();
        let tables = self.shared.queue.tables;
        let timeout = self.shared.config.attempt_timeout;
        let backoff = lp.backoff;
        let fifo_key = env.fifo_key.clone();
        let handle = lp.tasks.spawn(async move {
            let started = Instant::now();
            let delivery = sink.deliver(Attempt {
                seq,
                idempotency_key: &env.idempotency_key,
                attempt,
                op: &op,
            });
            let outcome = match tokio::time::timeout(
                timeout,
                AssertUnwindSafe(delivery).catch_unwind(),
            )
            .await
            {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(_)) => Outcome::Retry {
                    after: None,
                    reason: "the sink panicked (a bug)".into(),
                },
                Err(_) => Outcome::Retry {
                    after: None,
                    reason: format!("no answer within {}", humantime::format_duration(timeout)),
                },
            };
            let took = started.elapsed();
            let recorded = record_outcome(&tables, &store, seq, attempt, &outcome, backoff).await;
            Finished {
                seq,
                fifo_key: env.fifo_key,
                kind: env.kind,
                summary: env.summary,
                outcome,
                recorded,
                took,
                again: false,
            }
        });
        lp.running.insert(handle.id(), (seq, fifo_key));
    }

    /// Records again the outcomes the store could not record (it writes again now).
    fn record_again<S: Sink<Op>>(&self, lp: &mut Loop<S>) {
        for f in std::mem::take(&mut lp.unrecorded) {
            let store = self.shared.store.clone();
            let tables = self.shared.queue.tables;
            let backoff = lp.backoff;
            let key = (f.seq, f.fifo_key.clone());
            let handle = lp.tasks.spawn(async move {
                let recorded = record_outcome(&tables, &store, f.seq, 0, &f.outcome, backoff).await;
                Finished {
                    recorded,
                    again: true,
                    ..f
                }
            });
            lp.running.insert(handle.id(), key);
        }
    }

    /// An attempt task ended: release its key, count it, act on its outcome, refresh the
    /// figures. Its outcome is already durable (or its recording failed, which counts as a
    /// retry).
    fn finished<S: Sink<Op>>(
        &self,
        lp: &mut Loop<S>,
        joined: Result<(Id, Finished), tokio::task::JoinError>,
    ) {
        let f = match joined {
            Ok((id, f)) => {
                lp.running.remove(&id);
                f
            }
            Err(e) => return self.attempt_task_died(lp, e),
        };
        lp.busy.remove(&f.fifo_key);
        self.shared.state().in_flight.remove(&f.seq);
        if !f.again {
            count_attempt(self.shared.queue.name, &f);
        }
        if let Err(e) = &f.recorded {
            // The store failed, not the platform: the link is left alone, and the loop starts
            // nothing until the store writes again. A delivered op must not be sent again
            // because its success was not recorded: it keeps its key and waits to be recorded.
            tracing::error!(seq = f.seq, error = %e,
                "could not record an outbox attempt's outcome; waiting for the store");
            if matches!(f.outcome, Outcome::Done | Outcome::AlreadyDone) {
                lp.busy.insert(f.fifo_key.clone());
                lp.unrecorded.push(f);
            }
            return;
        }
        match &f.outcome {
            Outcome::Done | Outcome::AlreadyDone => self.delivered(lp, &f),
            Outcome::Permanent { reason } => self.refused_for_good(lp, &f, reason),
            Outcome::Cancelled { reason } => {
                if matches!(f.recorded, Ok(true)) {
                    tracing::warn!(seq = f.seq, kind = %f.kind, summary = %f.summary, %reason,
                        "outbox op cancelled before delivery");
                    self.shared.room.notify_waiters();
                }
            }
            Outcome::Retry { after, reason } => {
                tracing::debug!(seq = f.seq, %reason, "outbox attempt failed; will retry");
                lp.link.on_retry(Instant::now(), *after, rand::random());
                self.note_failure(&lp.link, reason.clone());
            }
            Outcome::Auth { reason } => {
                tracing::warn!(seq = f.seq, %reason, "credentials rejected; pausing outbox delivery");
                self.pause(&format!(
                    "credentials rejected ({reason}); re-authorize the shop"
                ));
                self.note_failure(&lp.link, format!("auth: {reason}"));
            }
        }
        self.refresh_usage();
    }

    /// Only an abort at shutdown or a panic outside the sink call gets here: release the key;
    /// a panic slows the link like a failed attempt.
    fn attempt_task_died<S: Sink<Op>>(&self, lp: &mut Loop<S>, e: tokio::task::JoinError) {
        if let Some((seq, key)) = lp.running.remove(&e.id()) {
            lp.busy.remove(&key);
            self.shared.state().in_flight.remove(&seq);
            if !e.is_cancelled() {
                tracing::error!(seq, fifo_key = %key, "outbox attempt task failed: {e}");
                lp.link.on_retry(Instant::now(), None, rand::random());
            }
        }
    }

    /// Done or already done: the op left the outbox; the link is up (the first answer after
    /// an outage starts the catch-up), and producers blocked on the cap may go on.
    fn delivered<S: Sink<Op>>(&self, lp: &mut Loop<S>, f: &Finished) {
        metrics::counter!("wms_node_outbox_delivered_total",
            "queue" => self.shared.queue.name, "kind" => f.kind.clone())
        .increment(1);
        if lp.link.on_answer() {
            tracing::info!("outbox link is up; catching up at the rate limit");
        }
        self.shared.state().link_up(Some(store::now_ms()));
        self.shared.room.notify_waiters();
    }

    /// Refused for good: the other side answered (the link is up), the op went to the dead
    /// letters (unless it was gone by then) with an alert naming it.
    fn refused_for_good<S: Sink<Op>>(&self, lp: &mut Loop<S>, f: &Finished, reason: &str) {
        lp.link.on_answer();
        self.shared.state().link_up(None);
        if !matches!(f.recorded, Ok(true)) {
            return;
        }
        metrics::counter!("wms_node_outbox_dead_letters_total",
            "queue" => self.shared.queue.name, "kind" => f.kind.clone())
        .increment(1);
        tracing::error!(seq = f.seq, kind = %f.kind, summary = %f.summary, %reason,
            "outbox op failed permanently; moved to the dead letters");
        super::dead::refresh(&self.shared);
        self.shared.room.notify_waiters();
    }

    /// The byte and count figures after an outcome changed them.
    fn refresh_usage(&self) {
        if let Ok((bytes, count)) = self
            .shared
            .store
            .read(|r| record::load_meta(&self.shared.queue.tables, r).map(|m| (m.bytes, m.count)))
        {
            report_usage(&self.shared, bytes, count);
        }
    }

    fn note_failure(&self, link: &Link, reason: String) {
        let down = match link.state() {
            LinkState::Down { failures, .. } => Some(failures),
            _ => None,
        };
        self.shared.state().failed(reason, down, store::now_ms());
    }
}

/// Every attempt is counted by kind and outcome, with its duration.
fn count_attempt(queue: &'static str, f: &Finished) {
    let outcome = match &f.outcome {
        Outcome::Done => "done",
        Outcome::AlreadyDone => "already_done",
        Outcome::Retry { .. } => "retry",
        Outcome::Auth { .. } => "auth",
        Outcome::Permanent { .. } => "permanent",
        Outcome::Cancelled { .. } => "cancelled",
    };
    metrics::counter!("wms_node_outbox_attempts_total",
        "queue" => queue, "kind" => f.kind.clone(), "outcome" => outcome)
    .increment(1);
    metrics::histogram!("wms_node_outbox_attempt_duration_seconds",
        "queue" => queue, "kind" => f.kind.clone())
    .record(f.took.as_secs_f64());
}

/// Records an attempt's outcome in one durable write. `Ok(false)` when the op was gone by
/// then (replaced by a newer op with its coalescing key, or dropped by an operator).
async fn record_outcome(
    q: &record::QueueTables,
    store: &crate::store::Store,
    seq: u64,
    attempt: u32,
    outcome: &Outcome,
    backoff: Backoff,
) -> Result<bool, StoreError> {
    let q = *q;
    match outcome.clone() {
        Outcome::Done | Outcome::AlreadyDone | Outcome::Cancelled { .. } => {
            store
                .write(move |txn| Ok(record::complete(&q, txn, seq)?.is_some()))
                .await
        }
        Outcome::Retry { after, reason } => {
            let wait = backoff
                .delay(attempt, rand::random())
                .max(after.unwrap_or(Duration::ZERO));
            let not_before =
                store::now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
            store
                .write(move |txn| {
                    Ok(
                        record::record_failure(&q, txn, seq, attempt, &reason, not_before)?
                            .is_some(),
                    )
                })
                .await
        }
        Outcome::Auth { reason } => {
            let reason = format!("auth: {reason}");
            store
                .write(move |txn| {
                    Ok(record::record_failure(&q, txn, seq, attempt, &reason, 0)?.is_some())
                })
                .await
        }
        Outcome::Permanent { reason } => {
            store
                .write(
                    move |txn| Ok(record::dead_letter(&q, txn, seq, attempt, &reason)?.is_some()),
                )
                .await
        }
    }
}

/// Seconds since the oldest queued op was enqueued (0 when empty).
fn oldest_age(q: &record::QueueTables, r: &redb::ReadTransaction, now_ms: u64) -> f64 {
    let first = r.open_table(q.outbox()).ok().and_then(|t| {
        redb::ReadableTable::first(&t)
            .ok()
            .flatten()
            .and_then(|(_, v)| record::decode_envelope(v.value()).ok())
    });
    first.map_or(0.0, |env| {
        now_ms.saturating_sub(env.enqueued_at_ms) as f64 / 1000.0
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
