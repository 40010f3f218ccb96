//! Enqueueing: inside a caller's write transaction, or on its own with concurrent callers
//! grouped into one writer job; the byte cap's policy (refuse, drop the oldest, block) is
//! applied here, before anything is written.

use super::Operation;
use super::cap::report_usage;
use super::error::{EnqueueError, Refusal};
use super::queue::{Outbox, Shared};
use super::record;
use super::waiting::{Enqueued, Prepared, Waiting};
use crate::alert::{AlertCode, Severity};
use crate::store::{self, CapPolicy, StoreError};
use redb::WriteTransaction;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One group job's ops (taken on its first run) and which op was being written.
struct GroupState {
    ops: Option<Vec<Waiting>>,
    running: Option<usize>,
}

/// Why one op of a group was not enqueued.
enum Failure {
    /// Refused before anything was written: only this op fails.
    Refused(Refusal),
    /// Failed while writing: the transaction holds part of it.
    Failed(StoreError),
}

impl<Op: Operation> Outbox<Op> {
    /// Enqueues `op` inside the caller's write transaction (the one that records the local
    /// change causing it), so both commit together or not at all. Call it from inside a
    /// [`Store::write`](crate::store::Store::write) closure; the op is acknowledged when that write resolves.
    ///
    /// On error nothing of the op was written and the op is handed back; the closure should
    /// return the error, so its own writes are not committed either. The closure's error type
    /// is the caller's own (see [`Store::write`](crate::store::Store::write)): one with a
    /// variant for an [`EnqueueError`] (`?` converts it) gets the refusal back as it was.
    pub fn enqueue(&self, txn: &WriteTransaction, op: Op) -> Result<Enqueued, EnqueueError<Op>> {
        let enqueued = Prepared::of(&op)
            .map_err(Refusal::from)
            .and_then(|p| self.enqueue_in(txn, &p));
        enqueued.map_err(|e| EnqueueError::new(e, op))
    }

    /// Enqueues `op` in a transaction of its own; resolves once it is durable. Under the
    /// `block` cap policy, waits for room instead of failing with `Full`.
    ///
    /// Concurrent calls are grouped: the ops waiting when the writer gets to them are
    /// enqueued by one job (the tables and counters opened once for all of them, at most
    /// `group_commit_max_batch` ops), and each caller gets its own result. A refused op
    /// (cap, an op that does not encode) writes nothing and does not affect the others; if
    /// writing one fails half-way, that op gets the error and the others are enqueued again
    /// in a job of their own.
    pub async fn enqueue_now(&self, op: Op) -> Result<Enqueued, EnqueueError<Op>> {
        // The op's own work (its keys, summary and encoding) is done here, on the caller's
        // task, not on the writer thread that every enqueue queues for.
        let prepared =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Prepared::of(&op))) {
                Ok(Ok(p)) => Arc::new(p),
                Ok(Err(e)) => return Err(EnqueueError::new(e.into(), op)),
                // As inside a write: a panicking op method is that op's error, not the caller's.
                Err(_) => {
                    let e = StoreError::Panicked("an Operation method panicked".into());
                    return Err(EnqueueError::new(e.into(), op));
                }
            };
        loop {
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.push_waiting(vec![Waiting {
                op: prepared.clone(),
                reply,
            }]);
            let result = rx.await.unwrap_or(Err(StoreError::Closed.into()));
            match result {
                Ok(e) => return Ok(e),
                Err(Refusal::Full { .. }) if self.shared.cap().1 == CapPolicy::Block => {
                    // Paused producer: wait for a delivery to free room (or re-check now
                    // and then, in case room was made by an operator from outside).
                    let room = self.shared.room.notified();
                    let _ = tokio::time::timeout(Duration::from_secs(1), room).await;
                }
                Err(e) => return Err(EnqueueError::new(e, op)),
            }
        }
    }

    /// Adds ops for [`enqueue_now`](Self::enqueue_now) (at the front: `back == false`, for
    /// ops put back after a failed group) and makes sure a group job will take them.
    fn push_waiting_at(&self, ops: Vec<Waiting>, back: bool) {
        let schedule = {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if back {
                w.ops.extend(ops);
            } else {
                for op in ops.into_iter().rev() {
                    w.ops.push_front(op);
                }
            }
            !std::mem::replace(&mut w.scheduled, true)
        };
        if schedule {
            self.submit_group();
        }
    }

    fn push_waiting(&self, ops: Vec<Waiting>) {
        self.push_waiting_at(ops, true);
    }

    /// Takes the next group (at most the batch cap); schedules another job if more wait.
    fn take_group(&self) -> Vec<Waiting> {
        let max = self.shared.store.options().group_commit_max_batch.max(1);
        let (group, more) = {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let n = w.ops.len().min(max);
            let group: Vec<Waiting> = w.ops.drain(..n).collect();
            let more = !w.ops.is_empty();
            w.scheduled = more;
            (group, more)
        };
        if more {
            self.submit_group();
        }
        group
    }

    /// Submits one group job. It takes its ops when the writer first runs it (so every op
    /// that arrived meanwhile shares it), and keeps them if the batch is run again.
    fn submit_group(&self) {
        let state: Arc<Mutex<GroupState>> = Arc::new(Mutex::new(GroupState {
            ops: None,
            running: None,
        }));
        let (this, st) = (self.clone(), state.clone());
        let run = move |txn: &WriteTransaction| {
            let mut g = st.lock().unwrap_or_else(|e| e.into_inner());
            let GroupState { ops, running } = &mut *g;
            let ops = ops.get_or_insert_with(|| this.take_group());
            this.enqueue_group(txn, ops, running)
        };
        let this = self.clone();
        let answer = move |result: Result<Vec<Result<Enqueued, Refusal>>, StoreError>| {
            let mut g = state.lock().unwrap_or_else(|e| e.into_inner());
            let running = g.running.take();
            let Some(ops) = g.ops.take() else {
                // Never run (the store is closed or cannot start a transaction): whatever
                // waits would wait for a job that will not come; tell them all.
                drop(g);
                let e = result.err().unwrap_or(StoreError::Closed);
                let all = {
                    let mut w = this.waiting.lock().unwrap_or_else(|e| e.into_inner());
                    w.scheduled = false;
                    std::mem::take(&mut w.ops)
                };
                for op in all {
                    let _ = op.reply.send(Err(e.clone().into()));
                }
                return;
            };
            drop(g);
            match result {
                Ok(results) => {
                    for (op, r) in ops.into_iter().zip(results) {
                        // The caller may have gone away: the op stands anyway.
                        let _ = op.reply.send(r);
                    }
                }
                Err(e) => match running {
                    // One op failed after writing part of itself: only it fails; the
                    // others were rolled back with it and go again in a job of their own.
                    Some(i) if i < ops.len() => {
                        let mut rest = ops;
                        let failed = rest.remove(i);
                        let _ = failed.reply.send(Err(e.into()));
                        if !rest.is_empty() {
                            this.push_waiting_at(rest, false);
                        }
                    }
                    // The commit failed: every op of it did.
                    _ => {
                        for op in ops {
                            let _ = op.reply.send(Err(e.clone().into()));
                        }
                    }
                },
            }
        };
        self.shared.store.submit(run, answer);
    }

    /// Enqueues a group in one pass over the tables. Refused ops get their error in the
    /// result and write nothing; an error after an op began writing fails the whole job
    /// (`running` then names that op).
    fn enqueue_group(
        &self,
        txn: &WriteTransaction,
        ops: &[Waiting],
        running: &mut Option<usize>,
    ) -> Result<Vec<Result<Enqueued, Refusal>>, StoreError> {
        *running = None;
        let mut meta_table = txn.open_table(store::META)?;
        let q = self.shared.queue.tables;
        let mut meta = record::load_meta_in(&q, &meta_table)?;
        let before = meta;
        let mut out = Vec::with_capacity(ops.len());
        let mut report = self.report();
        {
            let mut tables = record::Tables::open(&q, txn)?;
            for (i, w) in ops.iter().enumerate() {
                *running = Some(i);
                match self.enqueue_one(&mut tables, &mut meta, &w.op, &mut report) {
                    Ok(e) => out.push(Ok(e)),
                    Err(Failure::Refused(e)) => out.push(Err(e)),
                    Err(Failure::Failed(e)) => return Err(e),
                }
            }
            *running = None;
        }
        if meta != before {
            record::save_meta_in(&q, &mut meta_table, &meta)?;
        }
        if !report.enqueued.is_empty() {
            report.bytes = meta.bytes;
            report.count = meta.count;
            store::after_commit(move || report.report());
        }
        Ok(out)
    }

    fn report(&self) -> AfterEnqueue {
        AfterEnqueue {
            shared: self.shared.clone(),
            enqueued: Vec::new(),
            dropped: Vec::new(),
            bytes: 0,
            count: 0,
        }
    }

    fn enqueue_in(&self, txn: &WriteTransaction, op: &Prepared) -> Result<Enqueued, Refusal> {
        // Each table is opened once per enqueue: opening is a large part of its cost.
        let mut meta_table = txn.open_table(store::META).map_err(StoreError::from)?;
        let q = self.shared.queue.tables;
        let mut meta = record::load_meta_in(&q, &meta_table)?;
        let mut report = self.report();
        let enqueued = {
            let mut tables = record::Tables::open(&q, txn)?;
            match self.enqueue_one(&mut tables, &mut meta, op, &mut report) {
                Ok(e) => e,
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Failed(e)) => return Err(e.into()),
            }
        };
        record::save_meta_in(&q, &mut meta_table, &meta)?;
        report.bytes = meta.bytes;
        report.count = meta.count;
        store::after_commit(move || report.report());
        Ok(enqueued)
    }

    /// Enqueues one op through open tables, updating `meta` (the caller saves it) and
    /// noting what to report after the commit.
    fn enqueue_one(
        &self,
        tables: &mut record::Tables<'_>,
        meta: &mut record::OutboxMeta,
        op: &Prepared,
        report: &mut AfterEnqueue,
    ) -> Result<Enqueued, Failure> {
        use Failure::{Failed, Refused};
        let shared = &self.shared;
        let (cap, cap_policy) = shared.cap();
        let (kind, critical) = (op.kind, op.critical);

        // Everything is checked before anything is written, so a refused op leaves the
        // transaction untouched even if the caller swallows the error.
        let replaced = match &op.coalesce_key {
            Some(ck) => match tables.coalesce_target(ck).map_err(|e| Refused(e.into()))? {
                Some(seq) => match tables.peek(seq).map_err(|e| Refused(e.into()))? {
                    // Only within one FIFO key: otherwise the replacement could overtake an
                    // op the older one was ordered behind.
                    Some((env, len)) if env.fifo_key == op.fifo_key => Some((
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
        let idempotency_key = format!("{}-{}", shared.store.store_id(), seq);
        let envelope = record::EnvelopeRef {
            kind,
            summary: &op.summary,
            fifo_key: &op.fifo_key,
            coalesce_key: op.coalesce_key.as_deref(),
            priority: op.priority,
            critical,
            idempotency_key: &idempotency_key,
            enqueued_at_ms: store::now_ms(),
            attempts: 0,
            last_error: None,
            last_attempt_at_ms: None,
            not_before_ms: 0,
            replaced: replaced.map(|(s, _)| s),
            op: &op.op,
        };
        let raw = store::encode("outbox", &envelope).map_err(|e| Refused(e.into()))?;
        let size = record::footprint(raw.len(), &op.fifo_key, op.coalesce_key.as_deref());
        let used_after = meta.bytes - replaced.map_or(0, |(_, fp)| fp).min(meta.bytes) + size;
        let mut to_drop = Vec::new();
        if cap > 0 && used_after > cap && !critical {
            let refuse = Refusal::Full {
                used: meta.bytes,
                cap,
            };
            match cap_policy {
                CapPolicy::RejectNew | CapPolicy::Block => {
                    rejected(shared.queue.name, kind);
                    return Err(Refused(refuse));
                }
                CapPolicy::DropOldest => {
                    to_drop = tables
                        .oldest_droppable(used_after - cap, replaced.map(|r| r.0))
                        .map_err(|e| Refused(e.into()))?;
                    if to_drop.is_empty() {
                        rejected(shared.queue.name, kind);
                        return Err(Refused(refuse));
                    }
                }
            }
        }

        // Now write.
        if let Some((old, _)) = replaced {
            tables.remove(meta, old).map_err(Failed)?;
        }
        let mut dropped = Vec::new();
        for (seq, _) in &to_drop {
            if let Some(env) = tables.remove(meta, *seq).map_err(Failed)? {
                dropped.push((*seq, env));
            }
        }
        tables
            .insert_raw(meta, seq, &raw, &envelope.index())
            .map_err(Failed)?;
        #[cfg(test)]
        tests::fail_after_write(&op.fifo_key).map_err(Failed)?;

        report.enqueued.push((kind, replaced.is_some()));
        report.dropped.extend(
            dropped
                .iter()
                .map(|(s, e)| (*s, e.kind.clone(), e.fifo_key.clone())),
        );
        Ok(Enqueued {
            seq,
            idempotency_key,
            replaced: replaced.map(|(s, _)| s),
            dropped: dropped.into_iter().map(|(s, _)| s).collect(),
        })
    }
}

fn rejected(queue: &'static str, kind: &'static str) {
    metrics::counter!("wms_node_outbox_rejected_total", "queue" => queue, "kind" => kind)
        .increment(1);
}
/// What a transaction's enqueues report once it is durable.
struct AfterEnqueue {
    shared: Arc<Shared>,
    /// Kind, and whether it replaced an older op, of each op enqueued.
    enqueued: Vec<(&'static str, bool)>,
    dropped: Vec<(u64, String, String)>,
    bytes: u64,
    count: u64,
}

impl AfterEnqueue {
    fn report(self) {
        let queue = self.shared.queue.name;
        for &(kind, replaced) in &self.enqueued {
            metrics::counter!("wms_node_outbox_enqueued_total", "queue" => queue, "kind" => kind)
                .increment(1);
            if replaced {
                metrics::counter!("wms_node_outbox_coalesced_total",
                    "queue" => queue, "kind" => kind)
                .increment(1);
            }
        }
        for (seq, kind, fifo_key) in &self.dropped {
            tracing::warn!(seq, kind = %kind, fifo_key = %fifo_key,
                "outbox op dropped to stay under the byte cap (drop_oldest policy)");
            metrics::counter!("wms_node_outbox_dropped_total",
                "queue" => queue, "kind" => kind.clone(), "reason" => "cap")
            .increment(1);
        }
        if !self.dropped.is_empty() {
            self.shared.alerts.raise(
                AlertCode::OutboxDropped,
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Alerts;
    use crate::outbox::{Operation, OutboxOptions, Priority};
    use crate::store::{Store, StoreOptions};
    use serde::Deserialize;

    /// The FIFO key whose enqueue fails after writing its rows (fault injection).
    static FAIL_KEY: Mutex<Option<String>> = Mutex::new(None);

    pub(super) fn fail_after_write(fifo_key: &str) -> Result<(), StoreError> {
        match FAIL_KEY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
        {
            Some(k) if k == fifo_key => Err(StoreError::Aborted("injected".into())),
            _ => Ok(()),
        }
    }

    #[derive(Debug, Clone, serde::Serialize, Deserialize)]
    struct Op {
        key: u64,
        critical: bool,
    }

    impl Operation for Op {
        fn fifo_key(&self) -> String {
            format!("g:{}", self.key)
        }
        fn is_critical(&self) -> bool {
            self.critical
        }
        fn priority(&self) -> Priority {
            Priority::Normal
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn summary(&self) -> String {
            format!("key {}", self.key)
        }
    }

    fn outbox(dir: &tempfile::TempDir, max_bytes: u64) -> Outbox<Op> {
        let mut o = StoreOptions::new(dir.path().join(crate::store::FILE));
        o.max_bytes = max_bytes;
        o.group_commit_max_batch = 64;
        let store = Store::open(o, Alerts::new()).unwrap();
        Outbox::new(store, OutboxOptions::default(), Alerts::new())
    }

    /// Enqueues `ops` from concurrent tasks; the results in the same order.
    async fn concurrently(
        outbox: &Outbox<Op>,
        ops: Vec<Op>,
    ) -> Vec<Result<Enqueued, EnqueueError<Op>>> {
        let tasks: Vec<_> = ops
            .into_iter()
            .map(|op| {
                let o = outbox.clone();
                tokio::spawn(async move { o.enqueue_now(op).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    /// The queued ops' keys, and whether the counters match the rows.
    fn queued_keys(outbox: &Outbox<Op>) -> Vec<String> {
        let rows = outbox.queued(0, usize::MAX).unwrap();
        let meta = outbox
            .store()
            .read(|r| record::load_meta(&record::QueueTables::OUTBOX, r))
            .unwrap();
        let bytes: u64 = rows
            .iter()
            .map(|(_, env, _)| {
                let raw = postcard::to_allocvec(env).unwrap();
                record::footprint(raw.len(), &env.fifo_key, env.coalesce_key.as_deref())
            })
            .sum();
        assert_eq!(meta.count, rows.len() as u64, "count matches the rows");
        assert_eq!(meta.bytes, bytes, "bytes match the rows");
        rows.into_iter().map(|(_, env, _)| env.fifo_key).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_enqueues_share_jobs_and_each_gets_its_own_result() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(&dir, 0);
        let ops = (0..300)
            .map(|key| Op {
                key,
                critical: false,
            })
            .collect();
        let results = concurrently(&outbox, ops).await;
        let mut seqs: Vec<u64> = results.iter().map(|r| r.as_ref().unwrap().seq).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 300, "every op has its own seq");
        for r in &results {
            let e = r.as_ref().unwrap();
            assert_eq!(
                e.idempotency_key,
                format!("{}-{}", outbox.store().store_id(), e.seq)
            );
        }
        assert_eq!(queued_keys(&outbox).len(), 300);
        outbox.store().clone().close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_op_failing_half_way_fails_alone_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(&dir, 0);
        *FAIL_KEY.lock().unwrap() = Some("g:1013".into());
        let ops = (1000..1100)
            .map(|key| Op {
                key,
                critical: false,
            })
            .collect();
        let results = concurrently(&outbox, ops).await;
        *FAIL_KEY.lock().unwrap() = None;
        for (i, r) in results.iter().enumerate() {
            if i == 13 {
                assert!(
                    matches!(
                        r,
                        Err(EnqueueError::Store {
                            source: StoreError::Aborted(_),
                            ..
                        })
                    ),
                    "{r:?}"
                );
            } else {
                assert!(r.is_ok(), "op {i}: {r:?}");
            }
        }
        let keys = queued_keys(&outbox);
        assert_eq!(keys.len(), 99);
        assert!(
            !keys.iter().any(|k| k == "g:1013"),
            "no partial write stays"
        );
        outbox.store().clone().close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ops_refused_at_the_cap_do_not_affect_the_rest_of_their_group() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = outbox(&dir, 3_000);
        let ops = (0..200)
            .map(|key| Op {
                key,
                critical: key % 2 == 0,
            })
            .collect();
        let results = concurrently(&outbox, ops).await;
        let mut refused = 0;
        for (key, r) in results.iter().enumerate() {
            match r {
                Ok(_) => {}
                Err(EnqueueError::Full { op, .. }) => {
                    assert!(
                        !op.critical && op.key == key as u64,
                        "the op is handed back"
                    );
                    refused += 1;
                }
                Err(e) => panic!("op {key}: {e:?}"),
            }
            if key % 2 == 0 {
                assert!(r.is_ok(), "critical ops are accepted beyond the cap");
            }
        }
        assert!(refused > 50, "the cap refused non-critical ops ({refused})");
        assert_eq!(queued_keys(&outbox).len(), 200 - refused);
        outbox.store().clone().close().await.unwrap();
    }
}
