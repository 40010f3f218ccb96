//! A full disk heals, and nothing is sent twice because of it (in-process, on a redb
//! `StorageBackend` that answers ENOSPC past a quota; `full_disk_node.rs` does the same with
//! the real node on a filled tmpfs).
//!
//! While shipments are enqueued and delivered, the quota is lowered to what the file holds:
//! the store's next commit fails with ENOSPC. Then: the store says so (health, the
//! `store_disk_full` alert naming the disk), enqueues are refused with the op handed back,
//! nothing is sent that could not be recorded as sent, and the platform's link state is left
//! alone. The quota is raised again (space freed): the store reopens itself, delivery
//! resumes, and every acknowledged op reaches the remote exactly once (calls counted).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod outbox_support;

use outbox_support::TestOp;
use redb::{BackendError, StorageBackend};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wms_node::ops::alert::Alerts;
use wms_node::outbox::{Attempt, EnqueueError, Outbox, OutboxOptions, Outcome, Sink};
use wms_node::store::{Backend, Store, StoreError, StoreOptions};

/// A file on a disk that can be made full: then every write and every growth is ENOSPC
/// (as on a copy-on-write file system; overwriting in place may succeed elsewhere, which only
/// delays the failure).
#[derive(Debug)]
struct Quota {
    file: redb::backends::FileBackend,
    full: Arc<AtomicBool>,
}

fn enospc() -> BackendError {
    std::io::Error::from_raw_os_error(28).into()
}

impl StorageBackend for Quota {
    fn len(&self) -> Result<u64, BackendError> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendError> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), BackendError> {
        if self.full.load(Ordering::SeqCst) && len > self.file.len()? {
            return Err(enospc());
        }
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), BackendError> {
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(enospc());
        }
        self.file.write(offset, data)
    }
    fn close(&self) -> Result<(), BackendError> {
        self.file.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(s, e)
    }
}

/// Calls per op, and the idempotency keys applied.
type Calls = (BTreeMap<u64, usize>, BTreeSet<String>);

/// The remote: counts every call per op, applies each idempotency key once.
#[derive(Clone, Default)]
struct Remote(Arc<Mutex<Calls>>);

impl Sink<TestOp> for Remote {
    async fn deliver(&self, a: Attempt<'_, TestOp>) -> Outcome {
        let mut r = self.0.lock().unwrap();
        *r.0.entry(a.op.n()).or_default() += 1;
        if !r.1.insert(a.idempotency_key.to_owned()) {
            return Outcome::AlreadyDone;
        }
        Outcome::Done
    }
}

impl Remote {
    fn calls(&self) -> usize {
        self.0.lock().unwrap().0.values().sum()
    }
}

async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_delivery_raises_an_alert_and_heals_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(wms_node::store::FILE);
    let full = Arc::new(AtomicBool::new(false));
    let mut opts = StoreOptions::new(&path);
    let (p, q) = (path.clone(), full.clone());
    opts.backend = Some(Backend::new(move || {
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)?;
        Ok(Box::new(Quota {
            file: redb::backends::FileBackend::new(file),
            full: q.clone(),
        }))
    }));
    let alerts = Alerts::new();
    let store = Store::open(opts, alerts.clone()).unwrap();
    let config = OutboxOptions {
        rate: None,
        concurrency: 8,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..OutboxOptions::default()
    };
    let outbox = Outbox::<TestOp>::new(store.clone(), config, alerts.clone());
    let remote = Remote::default();
    // The remote answers slowly, so attempts are on their way when the disk fills.
    let slow = SlowRemote(remote.clone());
    let token = tokio_util::sync::CancellationToken::new();
    let run = {
        let (o, t) = (outbox.clone(), token.clone());
        tokio::spawn(async move { o.run(slow, t).await })
    };

    // Producers: shipments and notes, acknowledged once durable.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(1));
    let producers: Vec<_> = (0..4)
        .map(|_| {
            let (o, acked, refused, next, t) = (
                outbox.clone(),
                acked.clone(),
                refused.clone(),
                next.clone(),
                token.clone(),
            );
            tokio::spawn(async move {
                while !t.is_cancelled() {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    let op = TestOp::Ship { tid: n % 13, n };
                    match o.enqueue_now(op.clone()).await {
                        Ok(_) => {
                            acked.lock().unwrap().insert(n);
                        }
                        Err(EnqueueError::Store { op: back, source }) => {
                            assert_eq!(back, op, "the refused op is handed back");
                            assert!(
                                matches!(source, StoreError::DiskFull),
                                "refused for a full disk, not {source:?}"
                            );
                            assert!(!source.is_retryable(), "a full disk is not retried blindly");
                            refused.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("unexpected enqueue error: {e:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();
    assert!(until(Duration::from_secs(10), || remote.calls() > 50).await);

    // The disk fills up.
    full.store(true, Ordering::SeqCst);
    assert!(
        until(Duration::from_secs(10), || !store.is_writable()).await,
        "the store notices the full disk"
    );
    let health = store.health();
    assert!(health.disk_full);
    let problem = health.problem.unwrap();
    assert!(problem.contains("full"), "{problem}");
    assert!(
        problem.contains(
            &std::fs::canonicalize(dir.path())
                .unwrap()
                .display()
                .to_string()
        ),
        "the problem names the disk: {problem}"
    );
    assert!(alerts.is_active(wms_node::ops::alert::AlertCode::StoreDiskFull));
    assert!(
        until(Duration::from_secs(5), || refused.load(Ordering::SeqCst)
            > 0)
        .await
    );
    // In-flight attempts finish; then nothing more is sent while the store cannot record it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls_while_full = remote.calls();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        remote.calls(),
        calls_while_full,
        "nothing is sent while its success cannot be recorded"
    );
    let status = outbox.status();
    assert_ne!(
        status.link,
        wms_node::outbox::LinkStatus::Down,
        "a full disk is not a platform problem"
    );
    assert!(
        status.last_failure.is_none_or(|f| !f.contains("store")),
        "the store's failure is not reported as a delivery failure"
    );

    // Space returns: the node carries on by itself.
    let acked_while_full = acked.lock().unwrap().len();
    full.store(false, Ordering::SeqCst);
    assert!(
        until(Duration::from_secs(20), || store.is_writable()).await,
        "the store reopens itself once space returns"
    );
    assert!(!alerts.is_active(wms_node::ops::alert::AlertCode::StoreDiskFull));
    assert!(
        until(Duration::from_secs(10), || acked.lock().unwrap().len()
            > acked_while_full + 50)
        .await,
        "producers are acknowledged again"
    );
    token.cancel();
    for p in producers {
        p.await.unwrap();
    }
    run.await.unwrap();

    // Drain what is left, then count at the remote.
    let token = tokio_util::sync::CancellationToken::new();
    let run = {
        let (o, r, t) = (outbox.clone(), remote.clone(), token.clone());
        tokio::spawn(async move { o.run(r, t).await })
    };
    assert!(
        until(Duration::from_secs(30), || outbox
            .queued(0, 1)
            .unwrap()
            .is_empty())
        .await
    );
    token.cancel();
    run.await.unwrap();
    let r = remote.0.lock().unwrap();
    let acked = acked.lock().unwrap();
    for n in acked.iter() {
        assert_eq!(
            r.0.get(n).copied().unwrap_or(0),
            1,
            "acknowledged op {n} was sent {:?} times",
            r.0.get(n)
        );
    }
    eprintln!(
        "{} ops acknowledged, {} refused while the disk was full, each acknowledged op sent once",
        acked.len(),
        refused.load(Ordering::SeqCst)
    );
}

/// The remote behind 50 ms of network.
struct SlowRemote(Remote);

impl Sink<TestOp> for SlowRemote {
    async fn deliver(&self, a: Attempt<'_, TestOp>) -> Outcome {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.0.deliver(a).await
    }
}
