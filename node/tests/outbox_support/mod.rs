//! Shared by the outbox tests: a test op type, a scripted recording sink, and helpers.
#![allow(dead_code)] // each test file uses a different subset

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use wms_node::ops::alert::Alerts;
use wms_node::outbox::{Attempt, Operation, Outbox, OutboxOptions, Outcome, Priority, Sink};
use wms_node::store::{Store, StoreOptions};

/// Ops shaped like the real ones: shipments (critical, urgent, per trade), absolute stock
/// values (coalesced per SKU) and plain notes (padding for byte-cap tests). `n` is unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestOp {
    Ship { tid: u64, n: u64 },
    Stock { sku: u64, qty: i64, n: u64 },
    Note { key: u64, n: u64, pad: String },
}

impl TestOp {
    pub fn n(&self) -> u64 {
        match self {
            TestOp::Ship { n, .. } | TestOp::Stock { n, .. } | TestOp::Note { n, .. } => *n,
        }
    }
    pub fn note(key: u64, n: u64) -> Self {
        TestOp::Note {
            key,
            n,
            pad: String::new(),
        }
    }
}

impl Operation for TestOp {
    fn fifo_key(&self) -> String {
        match self {
            TestOp::Ship { tid, .. } => format!("trade:{tid}"),
            TestOp::Stock { sku, .. } => format!("stock:{sku}"),
            TestOp::Note { key, .. } => format!("note:{key}"),
        }
    }
    fn coalesce_key(&self) -> Option<String> {
        match self {
            TestOp::Stock { sku, .. } => Some(format!("stock:{sku}")),
            _ => None,
        }
    }
    fn is_critical(&self) -> bool {
        matches!(self, TestOp::Ship { .. })
    }
    fn priority(&self) -> Priority {
        match self {
            TestOp::Ship { .. } => Priority::Urgent,
            _ => Priority::Normal,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            TestOp::Ship { .. } => "ship",
            TestOp::Stock { .. } => "set_stock",
            TestOp::Note { .. } => "note",
        }
    }
    fn summary(&self) -> String {
        match self {
            TestOp::Ship { tid, n } => format!("tid {tid} (#{n})"),
            TestOp::Stock { sku, qty, n } => format!("sku {sku} qty {qty} (#{n})"),
            TestOp::Note { key, n, .. } => format!("note {key} (#{n})"),
        }
    }
}

/// One call the sink saw.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: u64,
    pub idempotency_key: String,
    pub attempt: u32,
    pub op: TestOp,
    pub outcome: Outcome,
    pub at: Instant,
}

type Script = dyn Fn(&TestOp, u32) -> Outcome + Send + Sync;

/// A sink that answers from a script and records every call. With a gate, each call waits
/// for a permit first (so tests can hold deliveries in flight).
#[derive(Clone)]
pub struct ScriptedSink {
    pub log: Arc<Mutex<Vec<Delivery>>>,
    script: Arc<Script>,
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    pub delay: Duration,
    pub in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
}

impl ScriptedSink {
    pub fn new(script: impl Fn(&TestOp, u32) -> Outcome + Send + Sync + 'static) -> Self {
        ScriptedSink {
            log: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(script),
            gate: None,
            delay: Duration::ZERO,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }
    pub fn always_done() -> Self {
        Self::new(|_, _| Outcome::Done)
    }
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
    pub fn gated(mut self) -> (Self, Arc<tokio::sync::Semaphore>) {
        let g = Arc::new(tokio::sync::Semaphore::new(0));
        self.gate = Some(g.clone());
        (self, g)
    }
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().unwrap().clone()
    }
    /// The `n`s of ops answered Done or AlreadyDone, in order.
    pub fn done(&self) -> Vec<u64> {
        self.deliveries()
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Done | Outcome::AlreadyDone))
            .map(|d| d.op.n())
            .collect()
    }
    pub fn calls(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Sink<TestOp> for ScriptedSink {
    async fn deliver(&self, attempt: Attempt<'_, TestOp>) -> Outcome {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if let Some(g) = &self.gate
            && let Ok(p) = g.acquire().await
        {
            p.forget();
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let outcome = (self.script)(attempt.op, attempt.attempt);
        self.log.lock().unwrap().push(Delivery {
            seq: attempt.seq,
            idempotency_key: attempt.idempotency_key.to_owned(),
            attempt: attempt.attempt,
            op: attempt.op.clone(),
            outcome: outcome.clone(),
            at: Instant::now(),
        });
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

/// The store in `dir` with the outbox's schema, as the node opens it.
pub fn store_options(dir: &tempfile::TempDir) -> StoreOptions {
    let mut o = StoreOptions::new(dir.path().join(wms_node::store::FILE));
    o.schemas.push(wms_node::outbox::SCHEMA);
    o
}

pub fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(store_options(dir), Alerts::new()).expect("open store")
}

/// Quick backoffs and no rate limit, so tests run in milliseconds.
pub fn fast_config() -> OutboxOptions {
    OutboxOptions {
        concurrency: 4,
        rate: None,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(40),
        attempt_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(2),
        ..OutboxOptions::default()
    }
}

pub fn outbox(store: &Store, config: OutboxOptions) -> (Outbox<TestOp>, Alerts) {
    let alerts = Alerts::new();
    (Outbox::new(store.clone(), config, alerts.clone()), alerts)
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the delivery loop in the background; returns its token and handle.
pub fn spawn_run(
    outbox: &Outbox<TestOp>,
    sink: ScriptedSink,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let token = tokio_util::sync::CancellationToken::new();
    let o = outbox.clone();
    let t = token.clone();
    let h = tokio::spawn(async move { o.run(sink, t).await });
    (token, h)
}

pub fn pending(outbox: &Outbox<TestOp>) -> Vec<(u64, TestOp)> {
    outbox
        .queued(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(seq, _, op)| (seq, op))
        .collect()
}
