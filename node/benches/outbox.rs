//! `cargo bench -p wms-node --bench outbox`: what durability costs on this machine, and how
//! much group commit buys back. One run prints:
//!
//! 1. the raw durable commit rate, one op per redb transaction, with the store's own commit
//!    settings (`Durability::Immediate` + quick-repair) and, for reference, without
//!    quick-repair: the fsync limit of the machine;
//! 2. enqueue throughput through the group-commit writer at batch caps 1, 16 and 256, with
//!    many concurrent producers, and the ratio to (1);
//! 3. enqueue latency (p50, p99, max) at a fixed offered load of 1,000 ops/s (open loop:
//!    latency is measured from when each op was due, so a stall is not hidden);
//! 4. drain throughput from a backlog into a no-op sink;
//!
//! and, to weigh quick-repair: the CPU cost of one enqueue, and how long the first open takes
//! after a process died without closing a full database. The raw rows include redb 2.6 (the
//! release before; linked for the conversion) against redb 5 at 1, 16 and 256 records per
//! commit, alternating, as the baseline of the move.
//!
//! `BENCH_INGEST_OPS=N` instead enqueues exactly N ops by group commit and exits, for
//! `valgrind --tool=callgrind`: the difference of two runs with different N, divided by the
//! difference of N, is the instructions per enqueued op without the set-up.
//!
//! Each figure is the median of `BENCH_RUNS` runs (default 3). `BENCH_SECS` sets the length
//! of the timed phases (default 3 s); `BENCH_DIR` where the database goes (default: the
//! system temp dir, so it measures that disk).

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wms_node::ops::alert::Alerts;
use wms_node::outbox::{Attempt, Operation, Outbox, OutboxOptions, Outcome, Priority, Sink};
use wms_node::store::{Store, StoreOptions};

/// What a producer's write closure fails with in this bench (an enqueue refusal or the store).
type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// An op the size of a real shipment (tid, oids, company code, waybill number).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ship {
    tid: u64,
    oids: Vec<u64>,
    company_code: String,
    out_sid: String,
}

impl Operation for Ship {
    fn fifo_key(&self) -> String {
        format!("trade:{}", self.tid)
    }
    fn is_critical(&self) -> bool {
        true
    }
    fn priority(&self) -> Priority {
        Priority::Urgent
    }
    fn kind(&self) -> &'static str {
        "ship"
    }
    fn summary(&self) -> String {
        format!("tid {} waybill {}", self.tid, self.out_sid)
    }
}

fn ship(n: u64) -> Ship {
    Ship {
        tid: 3_000_000_000_000 + n,
        oids: vec![4_000_000_000_000 + n],
        company_code: "YTO".into(),
        out_sid: format!("YT{:013}", n),
    }
}

struct NoopSink;
impl Sink<Ship> for NoopSink {
    async fn deliver(&self, _attempt: Attempt<'_, Ship>) -> Outcome {
        Outcome::Done
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn base_dir() -> std::path::PathBuf {
    std::env::var_os("BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir)
}

/// 1. `per_commit` ops (200-byte records) per durable transaction, straight into redb 5,
///    with the store's commit settings; records per second.
fn raw_commit_rate(secs: f64, quick_repair: bool, per_commit: u64) -> f64 {
    const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("outbox");
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let db = redb::Builder::new()
        .set_cache_size(32 << 20)
        .create(dir.path().join("raw.redb"))
        .unwrap();
    let value = [7u8; 200];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut w = db.begin_write().unwrap();
        w.set_durability(redb::Durability::Immediate).unwrap();
        w.set_quick_repair(quick_repair);
        {
            let mut t = w.open_table(T).unwrap();
            for _ in 0..per_commit {
                t.insert(n, value.as_slice()).unwrap();
                n += 1;
            }
        }
        w.commit().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The same with redb 2.6 (the release before, linked as `redb2` for the conversion): the
/// baseline of the move to redb 5, measured in the same run.
fn raw_commit_rate_redb2(secs: f64, quick_repair: bool, per_commit: u64) -> f64 {
    const T: redb2::TableDefinition<u64, &[u8]> = redb2::TableDefinition::new("outbox");
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let db = redb2::Builder::new()
        .set_cache_size(32 << 20)
        .create(dir.path().join("raw.redb"))
        .unwrap();
    let value = [7u8; 200];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut w = db.begin_write().unwrap();
        w.set_durability(redb2::Durability::Immediate);
        w.set_quick_repair(quick_repair);
        {
            let mut t = w.open_table(T).unwrap();
            for _ in 0..per_commit {
                t.insert(n, value.as_slice()).unwrap();
                n += 1;
            }
        }
        w.commit().unwrap();
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// How the store under test is set up.
#[derive(Clone, Copy)]
struct Setup {
    max_batch: usize,
    max_wait: Duration,
    quick_repair: bool,
}

impl Setup {
    /// The shipped defaults (`StoreOptions::new`), with another batch cap.
    fn defaults(max_batch: usize) -> Self {
        Setup {
            max_batch,
            max_wait: Duration::from_millis(2),
            quick_repair: true,
        }
    }
}

fn store(dir: &tempfile::TempDir, setup: Setup) -> Store {
    let mut o = StoreOptions::new(dir.path().join(wms_node::store::FILE));
    o.group_commit_max_batch = setup.max_batch;
    o.group_commit_max_wait = setup.max_wait;
    o.quick_repair = setup.quick_repair;
    o.max_bytes = 0;
    Store::open(o, Alerts::new()).unwrap()
}

/// 2. Enqueue throughput with `producers` concurrent producers.
async fn group_commit_rate(secs: f64, setup: Setup, producers: usize) -> f64 {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let store = store(&dir, setup);
    let outbox = Outbox::<Ship>::new(store.clone(), OutboxOptions::default(), Alerts::new());
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (outbox, stop, count, next) =
            (outbox.clone(), stop.clone(), count.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                outbox.enqueue_now(ship(n)).await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Warm up, then count over the timed window only.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c0 = count.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let c1 = count.load(Ordering::Relaxed);
    let rate = (c1 - c0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    store.close().await.unwrap();
    rate
}

/// Enqueues exactly `n` ops through `enqueue_now` from `producers` tasks (group commit, the
/// store's defaults); returns the seconds it took.
async fn ingest(n: u64, producers: u64) -> f64 {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let store = store(&dir, Setup::defaults(1024));
    let outbox = Outbox::<Ship>::new(store.clone(), OutboxOptions::default(), Alerts::new());
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|_| {
            let (outbox, next) = (outbox.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    outbox.enqueue_now(ship(i)).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    drop(outbox);
    store.close().await.unwrap();
    took
}

/// The CPU cost of one enqueue: batches of 1,000 enqueues in one transaction each (the
/// commit is outside the timed part). Returns microseconds per op.
async fn enqueue_cpu_cost(n: u64) -> f64 {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let store = store(&dir, Setup::defaults(256));
    let outbox = Outbox::<Ship>::new(store.clone(), OutboxOptions::default(), Alerts::new());
    let mut busy = Duration::ZERO;
    for chunk in 0..n.div_ceil(1000) {
        let o = outbox.clone();
        busy += store
            .write(move |txn| -> Result<_, AnyError> {
                let start = Instant::now();
                for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
                    o.enqueue(txn, ship(i))?;
                }
                Ok(start.elapsed())
            })
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    busy.as_secs_f64() * 1e6 / n as f64
}

/// Fills a database with `n` queued ops in a child process that then dies without closing
/// it (as in a power cut), and times the next open. Returns (file MiB, open seconds,
/// accounted outbox MB).
fn reopen_after_crash(n: u64, quick_repair: bool) -> (f64, f64, f64) {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let path = dir.path().join(wms_node::store::FILE);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_CHILD_FILL", &path)
        .env("BENCH_CHILD_N", n.to_string())
        .env("BENCH_CHILD_QR", if quick_repair { "1" } else { "0" })
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7), "the filler child dies as planned");
    let mib = std::fs::metadata(&path).unwrap().len() as f64 / (1024.0 * 1024.0);
    let mut o = StoreOptions::new(&path);
    o.quick_repair = quick_repair;
    let start = Instant::now();
    let store = Store::open(o, Alerts::new()).unwrap();
    let took = start.elapsed().as_secs_f64();
    let accounted = wms_node::outbox::admin::Admin::offline(store.clone())
        .stats()
        .unwrap()
        .bytes as f64
        / 1e6;
    drop(store);
    (mib, took, accounted)
}

/// The filler child of [`reopen_after_crash`]: enqueues, then exits without closing.
fn fill_and_die(path: &str) {
    let n = env_u64("BENCH_CHILD_N", 100_000);
    let qr = std::env::var("BENCH_CHILD_QR").as_deref() == Ok("1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut o = StoreOptions::new(path);
        o.quick_repair = qr;
        o.max_bytes = 0;
        let store = Store::open(o, Alerts::new()).unwrap();
        let outbox = Outbox::<Ship>::new(store.clone(), OutboxOptions::default(), Alerts::new());
        for chunk in 0..n.div_ceil(1000) {
            let o = outbox.clone();
            store
                .write(move |txn| -> Result<_, AnyError> {
                    for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
                        o.enqueue(txn, ship(i))?;
                    }
                    Ok(())
                })
                .await
                .unwrap();
        }
        // Durable, but never closed: the next open finds an unclean shutdown.
        std::process::exit(7);
    });
}

/// 3. Latency at a fixed offered load: (p50, p99, max) in ms from when each op was due
///    (open loop: a stall is not hidden; includes the runtime's timer lag of up to a
///    millisecond), and the p99 from the `enqueue_now` call to its durable answer.
async fn latency_at(rate: u64, secs: f64, setup: Setup) -> (f64, f64, f64, f64) {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let store = store(&dir, setup);
    let outbox = Outbox::<Ship>::new(store.clone(), OutboxOptions::default(), Alerts::new());
    let total = (rate as f64 * secs) as u64;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + period * n as u32;
        tokio::time::sleep_until(due).await;
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            let called = Instant::now();
            outbox.enqueue_now(ship(n)).await.unwrap();
            // From when it was due, not from when it happened to be sent.
            (
                due.elapsed().as_secs_f64() * 1000.0,
                called.elapsed().as_secs_f64() * 1000.0,
            )
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let mut call = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (l, c) = t.await.unwrap();
        lat.push(l);
        call.push(c);
    }
    store.close().await.unwrap();
    lat.sort_by(|a, b| a.total_cmp(b));
    call.sort_by(|a, b| a.total_cmp(b));
    let pct = |v: &[f64], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    (
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        lat[lat.len() - 1],
        pct(&call, 0.99),
    )
}

/// The floor under any durable commit: `n` 4 KiB writes, each followed by `fdatasync`, in a
/// file of the database's directory. Returns (p50, p99) in ms.
fn fsync_floor(n: usize) -> (f64, f64) {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let mut f = std::fs::File::create(dir.path().join("fsync")).unwrap();
    let page = [7u8; 4096];
    let mut t = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        f.seek(SeekFrom::Start((i % 64) as u64 * 4096)).unwrap();
        f.write_all(&page).unwrap();
        f.sync_data().unwrap();
        t.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    (t[n / 2], t[n * 99 / 100])
}

/// 4. Drain a backlog of `n` ops over `keys` trades into a no-op sink; ops/s.
async fn drain_rate(n: u64, keys: u64) -> f64 {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let store = store(&dir, Setup::defaults(256));
    let cfg = OutboxOptions {
        concurrency: 64,
        rate: None,
        ..OutboxOptions::default()
    };
    let outbox = Outbox::<Ship>::new(store.clone(), cfg, Alerts::new());
    // Fill quickly: 1,000 ops per transaction.
    for chunk in 0..n.div_ceil(1000) {
        let o = outbox.clone();
        store
            .write(move |txn| -> Result<_, AnyError> {
                for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
                    let mut op = ship(i);
                    op.tid = i % keys;
                    o.enqueue(txn, op)?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }
    let token = tokio_util::sync::CancellationToken::new();
    let start = Instant::now();
    let run = {
        let (o, t) = (outbox.clone(), token.clone());
        tokio::spawn(async move { o.run(NoopSink, t).await })
    };
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if outbox.queued(0, 1).unwrap().is_empty() {
            break;
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    token.cancel();
    run.await.unwrap();
    store.close().await.unwrap();
    rate
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} cores, {cpu}, kernel {kernel}, database in {}",
        base_dir().display()
    )
}

fn row(label: &str, value: String) {
    println!("{label:<62}{value}");
}

fn main() {
    if let Ok(path) = std::env::var("BENCH_CHILD_FILL") {
        return fill_and_die(&path);
    }
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let runs = env_u64("BENCH_RUNS", 3).max(1) as usize;
    let secs = env_u64("BENCH_SECS", 3) as f64;
    // BENCH_ONLY=raw,group,cpu,latency,drain,reopen runs a subset (for profiling).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let want = |section: &str| only.is_empty() || only.split(',').any(|s| s == section);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let med = |f: &mut dyn FnMut() -> f64| median((0..runs).map(|_| f()).collect());
    if let Ok(n) = std::env::var("BENCH_INGEST_OPS") {
        // For callgrind: exactly N enqueues through group commit, nothing else timed. Two
        // runs with different N give the instructions per op (the set-up cancels out).
        let n: u64 = n.parse().unwrap_or(1000);
        let took = rt.block_on(ingest(n, 64));
        row(
            &format!("ingest {n} ops by group commit, 64 producers"),
            format!("{:>9.0} op/s", n as f64 / took),
        );
        return;
    }

    println!("outbox benchmark: {}", machine());
    println!("median of {runs} runs, {secs} s timed phases; the store's defaults unless said\n");

    let (raw_qr, raw) = if want("raw") || want("group") {
        (
            med(&mut || raw_commit_rate(secs.min(2.0), true, 1)),
            med(&mut || raw_commit_rate(secs.min(2.0), false, 1)),
        )
    } else {
        (0.0, 0.0)
    };
    if want("raw") || want("latency") {
        let (p50, p99) = fsync_floor(500);
        row(
            "fdatasync of one 4 KiB write (the floor of a commit): p50 / p99",
            format!("{p50:>6.2} / {p99:.2} ms"),
        );
    }
    if want("raw") {
        row(
            "raw: 1 op per durable commit (quick-repair, as the store)",
            format!("{raw_qr:>9.0} op/s"),
        );
        row(
            "raw: 1 op per durable commit, quick-repair off",
            format!("{raw:>9.0} op/s"),
        );
        // redb 2.6 against redb 5, 200-byte records, quick-repair on, alternating.
        for per_commit in [1u64, 16, 256] {
            let mut old = Vec::new();
            let mut new = Vec::new();
            for _ in 0..runs {
                old.push(raw_commit_rate_redb2(secs.min(2.0), true, per_commit));
                new.push(raw_commit_rate(secs.min(2.0), true, per_commit));
            }
            let (old, new) = (median(old), median(new));
            row(
                &format!("raw: {per_commit} records per commit, redb 2.6 / redb 5"),
                format!("{old:>9.0} / {new:.0} rec/s  ({:.1}x)", new / old),
            );
        }
    }

    if want("group") {
        let producers = 512;
        // BENCH_GROUP=1,16,256,256q runs a subset of the set-ups ("q": quick-repair off).
        let pick = std::env::var("BENCH_GROUP").unwrap_or_default();
        for (batch, qr) in [
            (1usize, true),
            (16, true),
            (256, true),
            (1024, true),
            (256, false),
        ] {
            let name = format!("{batch}{}", if qr { "" } else { "q" });
            if !pick.is_empty() && !pick.split(',').any(|p| p == name) {
                continue;
            }
            let setup = Setup {
                quick_repair: qr,
                ..Setup::defaults(batch)
            };
            let r = med(&mut || rt.block_on(group_commit_rate(secs, setup, producers)));
            let base = if qr { raw_qr } else { raw };
            row(
                &format!(
                    "group commit, batch cap {batch}, {producers} producers{}",
                    if qr { "" } else { ", quick-repair off" }
                ),
                format!("{r:>9.0} op/s  ({:.0}x raw)", r / base),
            );
        }
    }

    if want("cpu") {
        let cpu = med(&mut || rt.block_on(enqueue_cpu_cost(10_000)));
        row(
            "enqueue CPU cost per op (1,000 per transaction)",
            format!("{cpu:>9.1} us"),
        );
    }

    if want("reopen") {
        let n = env_u64("BENCH_REOPEN_OPS", 200_000);
        for qr in [true, false] {
            let r: Vec<(f64, f64, f64)> = (0..runs).map(|_| reopen_after_crash(n, qr)).collect();
            let mib = median(r.iter().map(|x| x.0).collect());
            let secs = median(r.iter().map(|x| x.1).collect());
            let mb = median(r.iter().map(|x| x.2).collect());
            row(
                &format!(
                    "open after a crash, {n} ops ({mb:.0} MB accounted, {mib:.0} MiB file){}",
                    if qr { "" } else { ", quick-repair off" }
                ),
                format!("{:>9.0} ms", secs * 1000.0),
            );
        }
    }

    if want("latency") {
        // 0 ms is the default since redb 5 (a lone op does not wait for company); 2 ms was.
        for (wait_ms, qr) in [(0u64, true), (2, true), (0, false)] {
            let setup = Setup {
                max_batch: 1024,
                max_wait: Duration::from_millis(wait_ms),
                quick_repair: qr,
            };
            let lat: Vec<(f64, f64, f64, f64)> = (0..runs)
                .map(|_| rt.block_on(latency_at(1000, secs, setup)))
                .collect();
            let p = |i: usize| median(lat.iter().map(|l| [l.0, l.1, l.2, l.3][i]).collect());
            row(
                &format!(
                    "latency at 1,000 op/s, max_wait {wait_ms} ms{}: p50 / p99 / max",
                    if qr { "" } else { ", quick-repair off" }
                ),
                format!(
                    "{:>6.1} / {:.1} / {:.1} ms  (p99 from the call {:.1} ms)",
                    p(0),
                    p(1),
                    p(2),
                    p(3)
                ),
            );
        }
    }

    if want("drain") {
        let backlog = env_u64("BENCH_BACKLOG", 20_000);
        let d = med(&mut || rt.block_on(drain_rate(backlog, 1_000)));
        row(
            &format!("drain {backlog} ops over 1,000 keys, no-op sink, 64 in flight"),
            format!("{d:>9.0} op/s"),
        );
    }
}
