//! The group-commit writer: one thread owns the write side of the database.
//!
//! ```text
//!  task ─┐ job(FnMut, oneshot)                         ┌─> answer (after fsync)
//!  task ─┼──────────────> [channel] ──> writer thread ─┼─> answer
//!  task ─┘                 batch ≤ max_batch jobs,     └─> answer
//!                          ≤ max_wait after the first
//! ```
//!
//! The writer waits up to `max_wait` for company only when a job arrives at an idle writer;
//! under load, jobs that arrive during a commit form the next batch by themselves.
//!
//! A batch runs every job in one write transaction, commits it with
//! `Durability::Immediate` (fsync; with quick-repair, unless `store.quick_repair` is off, a
//! power cut needs no slow repair), runs the batch's after-commit hooks and only then answers
//! each job (so a caller told `Ok` sees what its write caused). A job answers through a
//! callback on this thread ([`Callback`]): `Store::write` sends the result to the waiting
//! caller, `Store::submit` lets the outbox answer every op of a grouped enqueue. A job whose
//! closure fails (or panics) must not commit its
//! partial writes nor fail the others, and redb has no cheap per-job rollback, so the writer
//! aborts the transaction and runs the batch again without the failed jobs (this is why jobs
//! are `FnMut`). Failures are collected per pass, so a batch with failures costs two passes
//! in the usual case.
//!
//! Records that readers found undecodable are moved to quarantine at the start of the next
//! batch, in the same transaction.
//!
//! A commit that fails in the storage (a full disk, an I/O error) puts the writer in its
//! failing state: it answers every job at once with the failure, and from time to time
//! closes and reopens the database and makes a probe commit; when that works it writes again
//! (see "When the disk fails" in `store/mod.rs`). The thread is the only one that ever swaps
//! the database handle, so a batch never runs on a handle being closed.

use super::codec::{self, Hook, PendingQuarantine, QuarantineQueue};
use super::{DbSlot, OpenError, StoreError, StoreHealth, StoreOptions, quarantine};
use crate::alert::{AlertCode, Alerts, Severity, Subject};
use redb::{Database, WriteTransaction};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

/// A unit of work for the writer.
pub(crate) trait Job: Send {
    /// Runs inside the batch's transaction; may be called more than once. `Err(JobFailed)`:
    /// the job's closure failed (the job keeps its own error to answer with).
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), JobFailed>;
    /// Tells the caller the final result (after the commit, or the failure).
    fn answer(self: Box<Self>, end: JobEnd);
}

/// A job's closure returned its error (kept by the job).
pub(crate) struct JobFailed;

/// How a job ended, as far as the writer knows.
pub(crate) enum JobEnd {
    /// Its writes are durable.
    Committed,
    /// Its closure failed: nothing of it was committed; it answers with its own error.
    Failed,
    /// The store failed it (the commit failed, its closure panicked, the store closed).
    Store(StoreError),
}

/// A caller's closure and what to do with its result, on the writer thread: send it to the
/// waiting caller ([`Store::write`](super::Store::write)) or anything else
/// ([`Store::submit`](super::Store::submit)). The closure's error type is the caller's own
/// (anything a [`StoreError`] converts into), so a refusal by a module above the store, such
/// as the outbox's byte cap, reaches the caller typed.
pub(crate) struct Callback<R, E, F, A> {
    pub f: F,
    pub outcome: Option<Result<R, E>>,
    pub answer: A,
}

impl<R, E, F, A> Callback<R, E, F, A> {
    pub fn new(f: F, answer: A) -> Self {
        Callback {
            f,
            outcome: None,
            answer,
        }
    }
}

impl<R, E, F, A> Job for Callback<R, E, F, A>
where
    F: FnMut(&WriteTransaction) -> Result<R, E> + Send,
    A: FnOnce(Result<R, E>) + Send,
    E: From<StoreError> + Send,
    R: Send,
{
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), JobFailed> {
        self.outcome = None;
        let r = (self.f)(txn);
        let failed = r.is_err();
        self.outcome = Some(r);
        if failed { Err(JobFailed) } else { Ok(()) }
    }
    fn answer(self: Box<Self>, end: JobEnd) {
        let this = *self;
        let internal = || StoreError::Aborted("internal: a job ended without its result".into());
        let msg = match (end, this.outcome) {
            (JobEnd::Committed, Some(Ok(v))) => Ok(v),
            (JobEnd::Failed, Some(Err(e))) => Err(e),
            (JobEnd::Store(e), _) => Err(E::from(e)),
            (_, _) => Err(E::from(internal())),
        };
        if catch_unwind(AssertUnwindSafe(move || (this.answer)(msg))).is_err() {
            tracing::error!("a store answer callback panicked");
        }
    }
}

pub(crate) enum Msg {
    Job(Box<dyn Job>),
    /// Run a batch even if empty (to move pending quarantine records).
    Nudge,
    /// Finish what is queued, then stop and drop the database handle.
    Close(tokio::sync::oneshot::Sender<()>),
}

pub(crate) struct Writer {
    pub db: Arc<DbSlot>,
    /// To reopen the database after a failure.
    pub opts: StoreOptions,
    pub rx: Receiver<Msg>,
    pub max_wait: Duration,
    pub max_batch: usize,
    pub quick_repair: bool,
    pub quarantine: Arc<QuarantineQueue>,
    pub alerts: Alerts,
    pub health: Arc<tokio::sync::watch::Sender<StoreHealth>>,
}

/// The first wait before reopening a database that failed, and the longest.
const REOPEN_FIRST: Duration = Duration::from_millis(250);
const REOPEN_MAX: Duration = Duration::from_secs(10);

/// The writer's state after a storage failure: writes are refused at once until a reopen and
/// a probe commit succeed.
struct Failing {
    /// What callers are told meanwhile.
    error: StoreError,
    since: Instant,
    next_try: Instant,
    wait: Duration,
}

impl Writer {
    pub fn run(self) {
        let max_batch = self.max_batch.max(1);
        let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
        let mut closing: Option<tokio::sync::oneshot::Sender<()>> = None;
        let mut disconnected = false;
        let mut failing: Option<Failing> = None;
        loop {
            // Wait for the first message of a batch; while failing, also wake up to reopen.
            let first = match &failing {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(f) => self
                    .rx
                    .recv_timeout(f.next_try.saturating_duration_since(Instant::now())),
            };
            match first {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Nudge) | Err(RecvTimeoutError::Timeout) => {}
                Ok(Msg::Close(ack)) => closing = Some(ack),
                Err(RecvTimeoutError::Disconnected) => disconnected = true,
            }
            // Gather more: whatever is queued. Linger for `max_wait` only if nothing was: under
            // load the next batch forms while the previous one commits, and waiting would
            // only add latency; after an idle spell it lets a burst share one fsync.
            let deadline = Instant::now() + self.max_wait;
            let mut linger = None;
            while closing.is_none() && !disconnected && batch.len() < max_batch {
                let msg = match self.rx.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => {
                        let now = Instant::now();
                        let lone = *linger.get_or_insert(batch.len() == 1);
                        if !lone || now >= deadline || failing.is_some() {
                            break;
                        }
                        match self.rx.recv_timeout(deadline - now) {
                            Ok(m) => m,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => {
                                disconnected = true;
                                break;
                            }
                        }
                    }
                };
                match msg {
                    Msg::Job(j) => batch.push(j),
                    Msg::Nudge => {}
                    Msg::Close(ack) => closing = Some(ack),
                }
            }
            if let Some(f) = &mut failing
                && Instant::now() >= f.next_try
                && closing.is_none()
                && !disconnected
            {
                match self.recover(&f.error) {
                    Ok(()) => {
                        self.recovered(f);
                        failing = None;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = f.wait.as_millis() as u64,
                            "the store is still failing");
                        f.wait = (f.wait * 2).min(REOPEN_MAX);
                        f.next_try = Instant::now() + f.wait;
                        f.error = caller_error(&e);
                    }
                }
            }
            if let Some(f) = &failing {
                // Nothing can be recorded: every write is refused at once (an enqueue gets its
                // op back, a delivery keeps its outcome in memory), never queued up.
                for job in batch.drain(..) {
                    job.answer(JobEnd::Store(f.error.clone()));
                }
            } else {
                let pending = self.quarantine.take();
                if !batch.is_empty() || !pending.is_empty() {
                    let db = self.db.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let failed = match db {
                        Some(db) => commit_batch(
                            &db,
                            self.quick_repair,
                            &self.quarantine,
                            &self.alerts,
                            std::mem::take(&mut batch),
                            pending,
                        ),
                        None => {
                            let e = StoreError::Unavailable("the store is being reopened".into());
                            for job in batch.drain(..) {
                                job.answer(JobEnd::Store(e.clone()));
                            }
                            Some(e)
                        }
                    };
                    if let Some(e) = failed.filter(StoreError::is_storage_failure) {
                        failing = Some(self.failed(e));
                    }
                }
            }
            if closing.is_some() || disconnected {
                // Answer anything that raced in behind the close.
                while let Ok(msg) = self.rx.try_recv() {
                    if let Msg::Job(j) = msg {
                        j.answer(JobEnd::Store(StoreError::Closed));
                    }
                }
                break;
            }
        }
        let db = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(db);
        if let Some(ack) = closing {
            let _ = ack.send(());
        }
    }

    /// A commit failed in the storage: redb refuses further writes until the database is
    /// reopened. Says so (health, metric, alert naming the disk) and plans the reopen.
    fn failed(&self, e: StoreError) -> Failing {
        let disk = super::disk::describe(&self.opts.path);
        let disk_full = e.is_disk_full();
        let problem = if disk_full {
            format!(
                "the disk holding the store is full ({disk}): nothing new can be recorded and \
                 deliveries to Taobao are paused; free space there, the node carries on by itself"
            )
        } else {
            format!(
                "the store cannot write ({disk}): {e}; nothing new can be recorded and \
                 deliveries to Taobao are paused; it reopens the store by itself"
            )
        };
        tracing::error!(error = %e, disk = %disk, "the store cannot write; reopening it until it can");
        self.alerts.raise(
            if disk_full {
                AlertCode::StoreDiskFull
            } else {
                AlertCode::StoreIo
            },
            Severity::Critical,
            problem.clone(),
        );
        metrics::gauge!("wms_node_store_writable").set(0.0);
        self.health.send_replace(StoreHealth {
            writable: false,
            problem: Some(problem),
            disk_full,
            since_ms: super::now_ms(),
        });
        Failing {
            error: caller_error(&e),
            since: Instant::now(),
            next_try: Instant::now() + REOPEN_FIRST,
            wait: REOPEN_FIRST,
        }
    }

    fn recovered(&self, f: &Failing) {
        tracing::info!(
            after_ms = f.since.elapsed().as_millis() as u64,
            "the store writes again"
        );
        self.alerts.clear(AlertCode::StoreDiskFull);
        self.alerts.clear(AlertCode::StoreIo);
        metrics::gauge!("wms_node_store_writable").set(1.0);
        self.health.send_replace(StoreHealth::ok());
    }

    /// Closes the failed database, opens it again (redb repairs what the failed commit left)
    /// and proves that a durable commit works.
    // Runs on the writer's own thread, never on the runtime: waiting for readers here
    // blocks nothing but writes, which are refused meanwhile anyway.
    #[allow(clippy::disallowed_methods)]
    fn recover(&self, error: &StoreError) -> Result<(), StoreError> {
        // On a full disk, reopening can only work once there is room again; until then the
        // failed handle stays, so reads (the status page, `queue list`) go on working.
        if error.is_disk_full()
            && self.opts.backend.is_none()
            && !super::disk::has_room(&self.opts.path)
        {
            return Err(StoreError::DiskFull);
        }
        let old = self.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(old) = old {
            // Readers hold the handle for the length of a read; the file is released only
            // when the last one is gone.
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        let _ = db.close();
                        break;
                    }
                    Err(arc) if Instant::now() < deadline => {
                        old = arc;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(arc) => {
                        drop(arc);
                        break;
                    }
                }
            }
        }
        let db = super::backend::open_database(&self.opts).map_err(|e| {
            metrics::counter!("wms_node_store_reopens_total", "result" => "failed").increment(1);
            match e {
                OpenError::DiskFull { .. } => StoreError::DiskFull,
                e => StoreError::Unavailable(e.to_string()),
            }
        })?;
        let db = Arc::new(db);
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
        // Reads work again from here; writes only if a durable commit does.
        let probe = super::durable_txn(&db, self.quick_repair).and_then(|txn| {
            codec::put(&txn, super::META, "store_reopened_at_ms", &super::now_ms())?;
            txn.commit()?;
            Ok(())
        });
        let result = if probe.is_ok() { "ok" } else { "failed" };
        metrics::counter!("wms_node_store_reopens_total", "result" => result).increment(1);
        probe
    }
}

/// What a caller is told while the store is failing.
fn caller_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::DiskFull => StoreError::DiskFull,
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        e => StoreError::Unavailable(e.to_string()),
    }
}

/// Moves one pending record to quarantine; the answer logs and counts.
struct QuarantineJob {
    pending: PendingQuarantine,
    moved: bool,
}

impl QuarantineJob {
    fn run(&mut self, txn: &WriteTransaction) -> Result<(), StoreError> {
        self.moved = false;
        if let Some(raw) = (self.pending.evict)(txn)? {
            quarantine::insert(
                txn,
                &self.pending.table,
                &self.pending.key,
                &self.pending.reason,
                raw,
            )?;
            self.moved = true;
        }
        Ok(())
    }
}

fn commit_batch(
    db: &Database,
    quick_repair: bool,
    queue: &Arc<QuarantineQueue>,
    alerts: &Alerts,
    jobs: Vec<Box<dyn Job>>,
    pending: Vec<PendingQuarantine>,
) -> Option<StoreError> {
    let started = Instant::now();
    // A job with `Some(end)` has failed and is left out of the next pass.
    let mut slots: Vec<(Box<dyn Job>, Option<JobEnd>)> =
        jobs.into_iter().map(|j| (j, None)).collect();
    let mut moves: Vec<QuarantineJob> = pending
        .into_iter()
        .map(|pending| QuarantineJob {
            pending,
            moved: false,
        })
        .collect();
    // Each pass either commits or excludes at least one job or move, so this ends.
    let outcome: Result<Vec<Hook>, StoreError> = loop {
        let txn = match super::durable_txn(db, quick_repair) {
            Ok(t) => t,
            Err(e) => break Err(e),
        };
        let (failed_any, hooks) = codec::with_context(queue, true, || {
            let mut failed_any = false;
            let mut i = 0;
            while i < moves.len() {
                match catch_unwind(AssertUnwindSafe(|| moves[i].run(&txn))) {
                    Ok(Ok(())) => i += 1,
                    other => {
                        let m = moves.remove(i);
                        let error = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => "panicked".to_owned(),
                        };
                        tracing::error!(table = %m.pending.table, key = %m.pending.key, %error,
                            "could not move an undecodable record to quarantine");
                        failed_any = true;
                    }
                }
            }
            for (job, failure) in slots.iter_mut().filter(|(_, f)| f.is_none()) {
                let mark = codec::hooks_len();
                let err = match catch_unwind(AssertUnwindSafe(|| job.run(&txn))) {
                    Ok(Ok(())) => continue,
                    Ok(Err(JobFailed)) => JobEnd::Failed,
                    Err(panic) => {
                        JobEnd::Store(StoreError::Panicked(panic_message(panic.as_ref())))
                    }
                };
                codec::truncate_hooks(mark);
                *failure = Some(err);
                failed_any = true;
            }
            (failed_any, codec::take_hooks())
        });
        if !failed_any {
            match txn.commit() {
                Ok(()) => break Ok(hooks),
                Err(e) => break Err(e.into()),
            }
        }
        // Drop every write of this pass and run again without the failures.
        drop(hooks);
        let _ = txn.abort();
        if slots.iter().all(|(_, f)| f.is_some()) && moves.is_empty() {
            break Ok(Vec::new());
        }
    };
    let (hooks, commit_error) = match outcome {
        Ok(hooks) => (hooks, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    match &commit_error {
        None => {
            let live = slots.iter().filter(|(_, f)| f.is_none()).count();
            if live > 0 {
                metrics::histogram!("wms_node_store_group_commit_batch_size").record(live as f64);
                metrics::histogram!("wms_node_store_commit_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
            }
        }
        Some(e) => {
            metrics::counter!("wms_node_store_commit_errors_total").increment(1);
            tracing::error!(error = %e, jobs = slots.len(), "store commit failed");
        }
    }
    if commit_error.is_none() {
        report_moves(alerts, &moves);
    }
    // The hooks before the answers: a caller told `Ok` then sees what its write caused
    // (cached counters, gauges, a woken delivery loop).
    for hook in hooks {
        if catch_unwind(AssertUnwindSafe(hook)).is_err() {
            tracing::error!("a store after-commit hook panicked");
        }
    }
    for (job, failure) in slots {
        job.answer(match (failure, &commit_error) {
            (Some(end), _) => end,
            (None, Some(e)) => JobEnd::Store(e.clone()),
            (None, None) => JobEnd::Committed,
        });
    }
    commit_error
}

fn report_moves(alerts: &Alerts, moves: &[QuarantineJob]) {
    // One alert per table, naming its latest record.
    let mut latest: std::collections::BTreeMap<&str, &QuarantineJob> = Default::default();
    for m in moves.iter().filter(|m| m.moved) {
        // Table and key only: the value may hold buyer data.
        tracing::warn!(
            table = %m.pending.table,
            key = %m.pending.key,
            reason = %m.pending.reason,
            "undecodable record moved to quarantine"
        );
        metrics::counter!("wms_node_store_quarantined_records_total", "table" => m.pending.table.clone())
            .increment(1);
        latest.insert(m.pending.table.as_str(), m);
    }
    for (table, m) in latest {
        alerts.raise_about(
            AlertCode::StoreQuarantine,
            Subject::new("table", table),
            Severity::Warning,
            format!(
                "undecodable records of table {table} were moved to quarantine (latest: key \
                 {}); the node carries on without them; see `wms-node queue stats`",
                m.pending.key
            ),
        );
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}
