//! Power cuts, beside the SIGKILL cycles of `outbox_crash.rs`. A SIGKILL is not a power cut:
//! the kernel still writes the page cache out. Here the store runs on a redb
//! `StorageBackend` wrapper ([`PowerCut`]) that keeps every write since the last
//! `sync_data` in memory only; at a random point it throws all of them away (and sometimes
//! lets a prefix of the last one reach the disk: a torn write), every later call fails, and
//! the store is opened again from what the disk holds.
//!
//! Each cycle cuts power at a random I/O call during one of: enqueueing (8 producers),
//! delivery (a backlog drained into a remote that honours idempotency keys), both at once,
//! opening (repair and migrations), and compaction (opening a store whose file is mostly
//! free). After every cut: the store opens (0 failed opens), every acknowledged op is queued
//! or applied, none is queued twice, none is applied twice. At the end everything drains and
//! every acknowledged op was applied exactly once.
//!
//! `WMS_POWERCUT_CYCLES` sets the number of cycles (default 1,000, about a minute);
//! `CRASH_SEED` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod outbox_support;

use outbox_support::TestOp;
use rand::{Rng, SeedableRng};
use redb::{BackendError, StorageBackend};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wms_node::ops::alert::Alerts;
use wms_node::outbox::{Attempt, Outbox, OutboxOptions, Outcome, Sink};
use wms_node::store::{Backend, Store, StoreOptions};

/// Cuts that tore the last unsynced write (a prefix of it reached the disk).
static TORN: AtomicU64 = AtomicU64::new(0);

/// The disk: the bytes that survive a power cut.
#[derive(Clone, Default)]
struct Disk(Arc<Mutex<Vec<u8>>>);

/// What the wrapper has not synced yet, and whether the power is still on.
struct State {
    /// What redb sees: the disk plus every write since the last sync.
    live: Vec<u8>,
    /// Byte ranges written since the last sync, in order.
    dirty: Vec<(usize, usize)>,
    /// I/O calls (writes, syncs, set_len) so far.
    calls: u64,
    /// Cut the power at this call.
    cut_at: Option<u64>,
    /// Whether the cut tears the last unsynced write.
    tear: bool,
    /// A prefix length chooser for the torn write (0..=1).
    tear_fraction: f64,
    dead: bool,
}

/// A `StorageBackend` over a [`Disk`] whose unsynced writes a power cut throws away.
#[derive(Clone)]
struct PowerCut {
    disk: Disk,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for PowerCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PowerCut")
    }
}

fn eio() -> BackendError {
    std::io::Error::other("power cut").into()
}

impl PowerCut {
    fn new(disk: &Disk) -> Self {
        let live = disk.0.lock().unwrap().clone();
        PowerCut {
            disk: disk.clone(),
            state: Arc::new(Mutex::new(State {
                live,
                dirty: Vec::new(),
                calls: 0,
                cut_at: None,
                tear: false,
                tear_fraction: 0.0,
                dead: false,
            })),
        }
    }

    /// Cuts the power `after` I/O calls from now.
    fn arm(&self, after: u64, tear: bool, tear_fraction: f64) {
        let mut s = self.state.lock().unwrap();
        s.cut_at = Some(s.calls + after.max(1));
        s.tear = tear;
        s.tear_fraction = tear_fraction;
    }

    fn is_dead(&self) -> bool {
        self.state.lock().unwrap().dead
    }

    /// Cuts the power at the next I/O call, or now if there is none.
    fn cut_now(&self) {
        let mut s = self.state.lock().unwrap();
        if !s.dead {
            s.cut_at = Some(s.calls);
            let _ = self.tick(&mut s);
        }
    }

    /// Counts an I/O call; cuts the power if it is the one.
    fn tick(&self, s: &mut State) -> Result<(), BackendError> {
        if s.dead {
            return Err(eio());
        }
        s.calls += 1;
        if s.cut_at.is_some_and(|c| s.calls >= c) {
            // Everything since the last sync is lost, except perhaps a prefix of the last
            // write, in whole 512-byte sectors, where the disk already has those bytes.
            if s.tear
                && let Some(&(off, len)) = s.dirty.last()
            {
                let mut disk = self.disk.0.lock().unwrap();
                let sectors = len.div_ceil(512);
                let keep = ((sectors as f64 * s.tear_fraction) as usize * 512).min(len);
                let end = (off + keep).min(disk.len());
                if off < end {
                    disk[off..end].copy_from_slice(&s.live[off..end]);
                    TORN.fetch_add(1, Ordering::Relaxed);
                }
            }
            s.dead = true;
            s.dirty.clear();
            s.live = Vec::new();
            return Err(eio());
        }
        Ok(())
    }
}

impl StorageBackend for PowerCut {
    fn len(&self) -> Result<u64, BackendError> {
        let s = self.state.lock().unwrap();
        if s.dead {
            return Err(eio());
        }
        Ok(s.live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        let s = self.state.lock().unwrap();
        if s.dead {
            return Err(eio());
        }
        let off = offset as usize;
        if off + out.len() > s.live.len() {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        out.copy_from_slice(&s.live[off..off + out.len()]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        let mut s = self.state.lock().unwrap();
        self.tick(&mut s)?;
        s.live.resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendError> {
        let mut s = self.state.lock().unwrap();
        self.tick(&mut s)?;
        let mut disk = self.disk.0.lock().unwrap();
        disk.resize(s.live.len(), 0);
        let dirty = std::mem::take(&mut s.dirty);
        for (off, len) in dirty {
            let end = (off + len).min(s.live.len());
            if off < end {
                disk[off..end].copy_from_slice(&s.live[off..end]);
            }
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        let mut s = self.state.lock().unwrap();
        self.tick(&mut s)?;
        let off = offset as usize;
        if off + data.len() > s.live.len() {
            s.live.resize(off + data.len(), 0);
        }
        s.live[off..off + data.len()].copy_from_slice(data);
        s.dirty.push((off, data.len()));
        Ok(())
    }
}

/// The other side: applies each idempotency key once, and remembers which ops it applied
/// under which keys (it outlives every power cut: it is not on the box).
#[derive(Default)]
struct Remote {
    keys: HashSet<String>,
    applied: BTreeMap<u64, Vec<String>>,
    redelivered: u64,
}

#[derive(Clone, Default)]
struct RemoteSink(Arc<Mutex<Remote>>);

impl Sink<TestOp> for RemoteSink {
    async fn deliver(&self, a: Attempt<'_, TestOp>) -> Outcome {
        let mut r = self.0.lock().unwrap();
        if !r.keys.insert(a.idempotency_key.to_owned()) {
            r.redelivered += 1;
            return Outcome::AlreadyDone;
        }
        r.applied
            .entry(a.op.n())
            .or_default()
            .push(a.idempotency_key.to_owned());
        Outcome::Done
    }
}

fn config() -> OutboxOptions {
    OutboxOptions {
        concurrency: 8,
        rate: None,
        backoff_initial: Duration::from_millis(2),
        backoff_max: Duration::from_millis(10),
        shutdown_grace: Duration::from_millis(50),
        ..OutboxOptions::default()
    }
}

fn options(power: &PowerCut, compact: bool) -> StoreOptions {
    let mut o = StoreOptions::new("powercut.redb");
    // Its migration steps run in the `Open` cycles' first opens, cut like the rest.
    o.schemas.push(wms_node::outbox::SCHEMA);
    let p = power.clone();
    o.backend = Some(Backend::new(move || Ok(Box::new(p.clone()))));
    o.group_commit_max_batch = 64;
    o.cache_size = 4 << 20;
    o.compact_free_bytes = if compact { 1 } else { u64::MAX };
    o
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Enqueue,
    Deliver,
    Both,
    Open,
    Compact,
}

/// The ops queued in `store`, by `n`.
fn queued(store: &Store) -> BTreeMap<u64, usize> {
    let outbox = Outbox::<TestOp>::new(store.clone(), config(), Alerts::new());
    let mut out: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, _, op) in outbox.queued(0, usize::MAX).unwrap() {
        *out.entry(op.n()).or_default() += 1;
    }
    out
}

struct Run {
    /// Compaction cycles, and those whose compaction finished before the cut.
    compactions: usize,
    compacted: usize,
    /// Ops queued at the last check.
    backlog: usize,
    disk: Disk,
    remote: RemoteSink,
    acked: Arc<Mutex<BTreeSet<u64>>>,
    next_n: Arc<AtomicU64>,
    rng: rand::rngs::StdRng,
}

impl Run {
    /// Opens the store on the disk as it is, and checks it against what was acknowledged.
    fn open_and_check(&mut self, cycle: usize, phase: Phase) -> (PowerCut, Store) {
        let power = PowerCut::new(&self.disk);
        let store = Store::open(options(&power, false), Alerts::new()).unwrap_or_else(|e| {
            panic!("cycle {cycle} (after a cut in {phase:?}): the store does not open: {e}")
        });
        let queued = queued(&store);
        self.backlog = queued.len();
        let remote = self.remote.0.lock().unwrap();
        for (n, count) in &queued {
            assert_eq!(
                *count, 1,
                "cycle {cycle} ({phase:?}): op {n} queued {count} times"
            );
        }
        for (n, keys) in &remote.applied {
            assert_eq!(
                keys.len(),
                1,
                "cycle {cycle} ({phase:?}): op {n} applied as {keys:?}"
            );
        }
        for n in self.acked.lock().unwrap().iter() {
            assert!(
                queued.contains_key(n) || remote.applied.contains_key(n),
                "cycle {cycle} (after a cut in {phase:?}): acknowledged op {n} is lost"
            );
        }
        (power, store)
    }

    /// One cycle: run `phase` until the power is cut.
    async fn cycle(&mut self, cycle: usize, phase: Phase) {
        let tear = self.rng.random_bool(0.4);
        let fraction = self.rng.random_range(0.0..1.0);
        match phase {
            Phase::Open | Phase::Compact => {
                if phase == Phase::Compact {
                    // Make most of the file free (as a drained backlog does): write 2 MB
                    // beside the queue, then delete it.
                    let (_, store) = self.open_and_check(cycle, phase);
                    const SCRATCH: redb::TableDefinition<u64, &[u8]> =
                        redb::TableDefinition::new("scratch");
                    store
                        .write(|txn| {
                            let mut t = txn.open_table(SCRATCH)?;
                            for i in 0..500u64 {
                                t.insert(i, [9u8; 4000].as_slice())?;
                            }
                            Ok::<_, wms_node::store::StoreError>(())
                        })
                        .await
                        .unwrap();
                    store
                        .write(|txn| {
                            txn.delete_table(SCRATCH)?;
                            Ok::<_, wms_node::store::StoreError>(())
                        })
                        .await
                        .unwrap();
                    store.close().await.unwrap();
                    self.compactions += 1;
                }
                let power = PowerCut::new(&self.disk);
                let calls = if phase == Phase::Compact {
                    1..600
                } else {
                    1..120
                };
                power.arm(self.rng.random_range(calls), tear, fraction);
                // Opening (repair, migrations, compaction) is cut somewhere, or finishes.
                let before = self.disk.0.lock().unwrap().len();
                if let Ok(store) =
                    Store::open(options(&power, phase == Phase::Compact), Alerts::new())
                {
                    drop(store);
                    if phase == Phase::Compact && self.disk.0.lock().unwrap().len() < before / 2 {
                        self.compacted += 1;
                    }
                }
            }
            Phase::Enqueue | Phase::Deliver | Phase::Both => {
                let (power, store) = self.open_and_check(cycle, phase);
                if phase == Phase::Deliver && queued(&store).len() < 50 {
                    self.fill(&store, 200).await;
                }
                power.arm(self.rng.random_range(1..300), tear, fraction);
                let outbox = Outbox::<TestOp>::new(store.clone(), config(), Alerts::new());
                let token = tokio_util::sync::CancellationToken::new();
                let mut tasks = Vec::new();
                if phase != Phase::Enqueue {
                    let (o, s, t) = (outbox.clone(), self.remote.clone(), token.clone());
                    tasks.push(tokio::spawn(async move { o.run(s, t).await }));
                }
                if phase != Phase::Deliver {
                    for _ in 0..8 {
                        let (o, acked, next, t) = (
                            outbox.clone(),
                            self.acked.clone(),
                            self.next_n.clone(),
                            token.clone(),
                        );
                        tasks.push(tokio::spawn(async move {
                            while !t.is_cancelled() {
                                let n = next.fetch_add(1, Ordering::SeqCst);
                                let op = if n % 3 == 0 {
                                    TestOp::note(n % 5, n)
                                } else {
                                    TestOp::Ship { tid: n % 7, n }
                                };
                                match o.enqueue_now(op).await {
                                    // Acknowledged: durable.
                                    Ok(_) => {
                                        acked.lock().unwrap().insert(n);
                                    }
                                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                                }
                            }
                        }));
                    }
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                while !power.is_dead() {
                    // A drained queue makes no more I/O: the cut falls between operations.
                    let idle = phase == Phase::Deliver
                        && outbox.queued(0, 1).is_ok_and(|q| q.is_empty())
                        && outbox.status().in_flight == 0;
                    if idle || Instant::now() > deadline {
                        power.cut_now();
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                token.cancel();
                for t in tasks {
                    t.await.unwrap();
                }
                drop(outbox);
                drop(store);
            }
        }
    }

    /// Enqueues `count` ops in one transaction (acknowledged once it is durable).
    async fn fill(&mut self, store: &Store, count: u64) {
        let outbox = Outbox::<TestOp>::new(store.clone(), config(), Alerts::new());
        let first = self.next_n.fetch_add(count, Ordering::SeqCst);
        store
            .write(
                move |txn| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                    for n in first..first + count {
                        outbox.enqueue(txn, TestOp::note(n % 11, n))?;
                    }
                    Ok(())
                },
            )
            .await
            .unwrap();
        self.acked.lock().unwrap().extend(first..first + count);
    }

    /// Delivers everything queued.
    async fn drain(&mut self, store: &Store) {
        let cfg = OutboxOptions {
            concurrency: 64,
            ..config()
        };
        let outbox = Outbox::<TestOp>::new(store.clone(), cfg, Alerts::new());
        let token = tokio_util::sync::CancellationToken::new();
        let run = {
            let (o, s, t) = (outbox.clone(), self.remote.clone(), token.clone());
            tokio::spawn(async move { o.run(s, t).await })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !outbox.queued(0, 1).unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the drain did not finish");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        token.cancel();
        run.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_lose_nothing_acknowledged_and_deliver_nothing_twice() {
    let cycles: usize = std::env::var("WMS_POWERCUT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("power-cut test seed {seed} (set CRASH_SEED to replay)");
    let mut run = Run {
        compactions: 0,
        compacted: 0,
        backlog: 0,
        disk: Disk::default(),
        remote: RemoteSink::default(),
        acked: Arc::default(),
        next_n: Arc::new(AtomicU64::new(1)),
        rng: rand::rngs::StdRng::seed_from_u64(seed),
    };
    let started = Instant::now();
    let mut phases: BTreeMap<Phase, usize> = BTreeMap::new();
    for cycle in 0..cycles {
        let phase = match run.rng.random_range(0..20) {
            // Keep the backlog (checked after every cut) small enough to check quickly.
            _ if run.backlog > 1_000 => Phase::Deliver,
            0..=5 => Phase::Enqueue,
            6..=10 => Phase::Deliver,
            11..=15 => Phase::Both,
            16..=17 => Phase::Open,
            _ => Phase::Compact,
        };
        *phases.entry(phase).or_default() += 1;
        run.cycle(cycle, phase).await;
        if cycles >= 2_000 && (cycle + 1) % 500 == 0 {
            eprintln!(
                "{} power cuts in {:.0?}: {} acknowledged, {} queued at the last check",
                cycle + 1,
                started.elapsed(),
                run.acked.lock().unwrap().len(),
                run.backlog
            );
        }
    }
    // After the last cut: open, check, and drain everything.
    let (_, store) = run.open_and_check(cycles, Phase::Open);
    run.drain(&store).await;
    store.close().await.unwrap();
    let remote = run.remote.0.lock().unwrap();
    let acked = run.acked.lock().unwrap();
    for n in acked.iter() {
        let times = remote.applied.get(n).map_or(0, Vec::len);
        assert_eq!(times, 1, "acknowledged op {n} applied {times} times");
    }
    let torn = TORN.load(Ordering::Relaxed);
    eprintln!(
        "{cycles} power cuts in {:.0?} ({phases:?}; {torn} tore a write; {} opens compacted \
         the file before their cut, of {} that had it to do): {} acknowledged ops, {} applied, \
         each once; {} delivered again after a cut (answered by the key); 0 failed opens",
        started.elapsed(),
        run.compacted,
        run.compactions,
        acked.len(),
        remote.applied.len(),
        remote.redelivered
    );
    if cycles >= 200 {
        assert!(
            acked.len() > cycles,
            "only {} acks in {cycles} cycles",
            acked.len()
        );
        assert!(torn > 0, "no cut tore a write");
        assert!(
            remote.redelivered > 0,
            "no cut fell between applied and recorded"
        );
        assert!(
            run.compacted > 0 && run.compacted < run.compactions,
            "cuts should land both during and after compactions ({} of {})",
            run.compacted,
            run.compactions
        );
    }
}
