//! Crash test: a child process enqueues ops (and/or drains them into a recording "remote"),
//! printing each acknowledgement after its enqueue is durable; the parent SIGKILLs it at a
//! random moment, reopens the store and checks that nothing acknowledged was lost or
//! duplicated. `WMS_CRASH_CYCLES` cycles (default 60; the long runs in docs/BENCHMARKS.md
//! are 10,000); kills land during enqueues, during drains and both. The final drain may take
//! as long as the backlog needs (`WMS_CRASH_DRAIN_MS_PER_OP`, default 100 ms an op, plus a
//! minute), so a long run fails only on a real stall.
//!
//! The remote is a file of applied idempotency keys that the child's sink appends to (a
//! write(2) on an O_APPEND file survives SIGKILL). The sink honours idempotency keys: a key
//! it already applied is answered `AlreadyDone` without applying again, which is how a
//! re-delivery after a kill between "applied" and "recorded" must look. Only an op still
//! queued can be delivered again, so the parent hands each child the keys of the applied ops
//! that are still queued (`honour.keys`), not the whole log: a child starts in the same time
//! at cycle 10,000 as at cycle 1, and an op delivered after it was recorded done is applied
//! a second time, which the checks catch, instead of being answered `AlreadyDone`.
//!
//! The checks after each kill cost what changed, not the whole history: the applied log is
//! read from where the last check stopped, and an acknowledged op is checked against the
//! queue until it is seen applied (the log is append-only: applied stays applied). The last
//! check reads everything again.
//!
//! The child is this test binary again, run with `--ignored --exact crash_child` and an
//! environment variable; `crash_child` does nothing without it.

// Tests and benches report failures by unwrapping; the sleeps here poll from plain
// threads, never from the runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod outbox_support;

use outbox_support::*;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wms_node::ops::alert::Alerts;
use wms_node::outbox::{Attempt, Outbox, Outcome, Sink};
use wms_node::store::Store;

const CHILD: &str = "WMS_OUTBOX_CRASH_CHILD";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The remote side: applied keys, kept in a file that survives the child's death.
struct Remote {
    applied: Mutex<(BTreeSet<String>, std::fs::File, std::fs::File)>,
}

impl Remote {
    /// The remote as a child sees it: the keys in `honour.keys` (written by the parent) are
    /// the ones it already applied.
    fn open(dir: &Path) -> Remote {
        let set = std::fs::read_to_string(dir.join("honour.keys"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        let append = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
                .unwrap()
        };
        Remote {
            applied: Mutex::new((set, append("applied.log"), append("redelivered.log"))),
        }
    }
}

/// The applied log as the parent has read it so far.
#[derive(Default)]
struct AppliedLog {
    /// Bytes of `applied.log` read (whole lines only).
    offset: usize,
    by_n: BTreeMap<u64, Vec<String>>,
}

impl AppliedLog {
    /// Reads the lines appended since the last call; returns the `n`s they applied.
    fn update(&mut self, dir: &Path) -> Vec<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let mut new = Vec::new();
        let Ok(mut f) = std::fs::File::open(dir.join("applied.log")) else {
            return new;
        };
        f.seek(SeekFrom::Start(self.offset as u64)).unwrap();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        // Whole lines only: one write(2) per line, so a kill leaves none cut, but a line
        // may be written while this reads.
        let Some(end) = text.rfind('\n') else {
            return new;
        };
        for line in text[..end].lines() {
            let mut parts = line.split(' ');
            if let (Some(n), Some(key)) = (parts.next(), parts.next())
                && let Ok(n) = n.parse()
            {
                self.by_n.entry(n).or_default().push(key.to_owned());
                new.push(n);
            }
        }
        self.offset += end + 1;
        new
    }
}

/// `n -> idempotency keys applied for it` (must end up exactly one each).
fn read_applied(dir: &Path) -> BTreeMap<u64, Vec<String>> {
    let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(dir.join("applied.log")) else {
        return out;
    };
    for line in text.lines() {
        // A line cut by the kill has no newline after it and is not read as complete.
        let mut parts = line.split(' ');
        if let (Some(n), Some(key)) = (parts.next(), parts.next())
            && let Ok(n) = n.parse()
        {
            out.entry(n).or_default().push(key.to_owned());
        }
    }
    out
}

struct RemoteSink(Arc<Remote>);

impl Sink<TestOp> for RemoteSink {
    async fn deliver(&self, attempt: Attempt<'_, TestOp>) -> Outcome {
        let mut g = self.0.applied.lock().unwrap();
        if g.0.contains(attempt.idempotency_key) {
            // Delivered again after a kill between "applied" and "recorded": same key.
            let line = format!("{} {}\n", attempt.op.n(), attempt.idempotency_key);
            let _ = g.2.write_all(line.as_bytes());
            return Outcome::AlreadyDone;
        }
        let line = format!("{} {}\n", attempt.op.n(), attempt.idempotency_key);
        // One write(2): either the whole line is in the file or none of it.
        if g.1.write_all(line.as_bytes()).is_err() {
            return Outcome::Retry {
                after: None,
                reason: "remote write failed".into(),
            };
        }
        g.0.insert(attempt.idempotency_key.to_owned());
        Outcome::Done
    }
}

fn child_config() -> wms_node::outbox::OutboxOptions {
    let mut c = fast_config();
    c.concurrency = 8;
    c
}

#[test]
#[ignore = "the child process of crash_cycles_lose_nothing_acknowledged; does nothing alone"]
fn crash_child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let dir = PathBuf::from(std::env::var("CRASH_DIR").unwrap());
    let first_n: u64 = std::env::var("CRASH_FIRST_N").unwrap().parse().unwrap();
    // Never outlive the parent (if it dies before it can kill this process).
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(100));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(3);
            }
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut opts = wms_node::store::StoreOptions::new(dir.join(wms_node::store::FILE));
        opts.group_commit_max_batch = 64;
        let store = Store::open(opts, Alerts::new()).unwrap();
        let outbox = Outbox::<TestOp>::new(store, child_config(), Alerts::new());
        let out = Arc::new(Mutex::new(std::io::stdout()));
        {
            let mut o = out.lock().unwrap();
            writeln!(o, "ready").unwrap();
            o.flush().unwrap();
        }
        if mode.contains("drain") {
            let sink = RemoteSink(Arc::new(Remote::open(&dir)));
            let o = outbox.clone();
            tokio::spawn(async move {
                o.run(sink, tokio_util::sync::CancellationToken::new())
                    .await
            });
        }
        if mode.contains("enqueue") {
            let next = Arc::new(AtomicU64::new(first_n));
            let mut producers = Vec::new();
            for _ in 0..8 {
                let next = next.clone();
                let outbox = outbox.clone();
                let out = out.clone();
                producers.push(tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        let op = if n.is_multiple_of(3) {
                            TestOp::note(n % 5, n)
                        } else {
                            TestOp::Ship { tid: n % 7, n }
                        };
                        let e = outbox.enqueue_now(op).await.unwrap();
                        // Acknowledged only now that the enqueue is durable.
                        let mut o = out.lock().unwrap();
                        writeln!(o, "ack {n} {}", e.seq).unwrap();
                        o.flush().unwrap();
                    }
                }));
            }
            for p in producers {
                let _ = p.await;
            }
        }
        std::future::pending::<()>().await;
    });
}

/// Kills the child if the parent's checks fail first, so no child outlives the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the parent finds in the store after a kill: `n -> times queued`, the dead letters, and
/// `honour.keys` written for the next child (the keys of the applied ops still queued).
fn inspect(dir: &Path, applied: &AppliedLog) -> (BTreeMap<u64, usize>, usize) {
    let started = Instant::now();
    let store = Store::open(
        wms_node::store::StoreOptions::new(dir.join(wms_node::store::FILE)),
        Alerts::new(),
    )
    .expect("the store opens after a kill");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "opening after a kill took {:?}",
        started.elapsed()
    );
    let outbox = Outbox::<TestOp>::new(store.clone(), child_config(), Alerts::new());
    let mut queued: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, op) in pending(&outbox) {
        *queued.entry(op.n()).or_default() += 1;
    }
    let dead = outbox.admin().stats().unwrap().dead_letters as usize;
    let mut honour = String::new();
    for n in queued.keys() {
        for key in applied.by_n.get(n).into_iter().flatten() {
            honour.push_str(key);
            honour.push('\n');
        }
    }
    let tmp = dir.join("honour.keys.tmp");
    std::fs::write(&tmp, honour).unwrap();
    std::fs::rename(tmp, dir.join("honour.keys")).unwrap();
    (queued, dead)
}

#[test]
fn crash_cycles_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (set CRASH_SEED to replay)");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let cycles: usize = env_or("WMS_CRASH_CYCLES", 60);
    let started = Instant::now();
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    // Acknowledged and not yet seen applied: these must be queued after every kill.
    let mut outstanding: BTreeSet<u64> = BTreeSet::new();
    let mut applied = AppliedLog::default();
    let mut kills_in_drain = 0;
    // Ops queued at the last check.
    let mut backlog = 0;
    for cycle in 0..cycles {
        let mode = match rng.random_range(0..10) {
            // Enqueues outpace drains cut short by a kill: keep the backlog (read after every
            // kill, and drained at the end) from growing with the number of cycles.
            _ if backlog > 2_000 => "drain",
            0..=3 => "enqueue",
            4..=5 => "drain",
            _ => "enqueue+drain",
        };
        if mode.contains("drain") {
            kills_in_drain += 1;
        }
        let mut child = KillOnDrop(
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "crash_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, mode)
                .env("CRASH_DIR", dir.path())
                .env(
                    "CRASH_FIRST_N",
                    ((cycle as u64 + 1) * 1_000_000).to_string(),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let l = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.ends_with("ready") {
                    let _ = ready_tx.send(());
                }
                l.lock().unwrap().push(line);
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the child starts (and its store opens) in time");
        std::thread::sleep(Duration::from_millis(rng.random_range(5..250)));
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        reader.join().unwrap();
        for line in lines.lock().unwrap().iter() {
            if let Some(rest) = line.strip_prefix("ack ") {
                let n: u64 = rest.split(' ').next().unwrap().parse().unwrap();
                acked.insert(n);
                outstanding.insert(n);
            }
        }

        for n in applied.update(dir.path()) {
            let keys = &applied.by_n[&n];
            assert_eq!(keys.len(), 1, "cycle {cycle}: op {n} applied as {keys:?}");
            outstanding.remove(&n);
        }
        let (queued, dead) = inspect(dir.path(), &applied);
        backlog = queued.len();
        assert_eq!(dead, 0, "cycle {cycle}: nothing should be dead-lettered");
        for (n, count) in &queued {
            assert_eq!(*count, 1, "cycle {cycle}: op {n} queued {count} times");
        }
        for n in &outstanding {
            assert!(
                queued.contains_key(n),
                "cycle {cycle} ({mode}): acknowledged op {n} is neither queued nor applied"
            );
        }
        if cycles >= 1_000 && (cycle + 1) % 500 == 0 {
            eprintln!(
                "{} cycles in {:.0?}: {} acknowledged, {} applied, {} queued",
                cycle + 1,
                started.elapsed(),
                acked.len(),
                applied.by_n.len(),
                queued.len()
            );
        }
    }
    assert!(kills_in_drain >= cycles / 6, "too few kills during drains");
    assert!(
        acked.len() > cycles,
        "only {} acks in {cycles} cycles",
        acked.len()
    );

    // A final drain delivers every acknowledged op exactly once.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(
            wms_node::store::StoreOptions::new(dir.path().join(wms_node::store::FILE)),
            Alerts::new(),
        )
        .unwrap();
        let outbox = Outbox::<TestOp>::new(store, child_config(), Alerts::new());
        let token = tokio_util::sync::CancellationToken::new();
        let o = outbox.clone();
        let t = token.clone();
        let remote = Arc::new(Remote::open(dir.path()));
        let backlog = pending(&outbox).len() as u64;
        let limit = Duration::from_secs(60)
            + Duration::from_millis(env_or("WMS_CRASH_DRAIN_MS_PER_OP", 100u64) * backlog);
        let run = tokio::spawn(async move { o.run(RemoteSink(remote), t).await });
        let drain = Instant::now();
        if !eventually(limit, || pending(&outbox).is_empty()).await {
            // What is left, and why, for a long run that fails here.
            let now = wms_node::store::now_ms();
            let left: Vec<String> = outbox
                .queued(0, 10)
                .unwrap()
                .into_iter()
                .map(|(seq, env, _)| {
                    format!(
                        "#{seq} {} attempts {} due in {} ms last error {:?}",
                        env.fifo_key,
                        env.attempts,
                        env.not_before_ms as i64 - now as i64,
                        env.last_error
                    )
                })
                .collect();
            panic!(
                "{backlog} ops not drained within {limit:?}: {} left, loop {:?}, first: {left:#?}",
                pending(&outbox).len(),
                outbox.status()
            );
        }
        eprintln!("final drain of {backlog} ops took {:.1?}", drain.elapsed());
        token.cancel();
        run.await.unwrap();
    });
    let applied = read_applied(dir.path());
    let redelivered = std::fs::read_to_string(dir.path().join("redelivered.log"))
        .unwrap_or_default()
        .lines()
        .count();
    assert!(
        redelivered > 0,
        "no kill landed between applied and recorded; the redelivery path went untested"
    );
    for n in &acked {
        let keys = applied.get(n).map_or(0, Vec::len);
        assert_eq!(keys, 1, "acknowledged op {n} applied {keys} times");
    }
    eprintln!(
        "{cycles} kills in {:.0?} ({kills_in_drain} during drains), {} acknowledged ops, {} \
         applied, each once, {redelivered} delivered again after a kill (answered AlreadyDone \
         by the key), 0 failed opens",
        started.elapsed(),
        acked.len(),
        applied.len()
    );
}
