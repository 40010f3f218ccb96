//! [`Outbox`]: the handle that producers, the delivery loop and the admin functions share,
//! its options, and the part of it they all see (`Shared`, with the one [`State`]).

use super::record::{self, Envelope};
use super::state::{State, Usage};
use super::waiting::WaitingOps;
use super::{Operation, Queue};
use crate::alert::{Alerts, Severity};
use crate::status::health::Health;
use crate::store::{Store, StoreError};
use firmware_bridge::pace::Rate;
use redb::ReadableTable;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

pub use super::state::{DeliveryStatus, InFlight, LinkStatus};

/// How the outbox delivers. The byte cap and its policy come from
/// [`StoreOptions`](crate::store::StoreOptions).
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    /// Attempts in flight at once, across FIFO keys (one per key at most).
    pub concurrency: usize,
    /// Attempts per second and how many may start at once after an idle spell (token
    /// bucket); `None`: no limit.
    pub rate: Option<Rate>,
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

impl Default for OutboxOptions {
    fn default() -> Self {
        OutboxOptions {
            concurrency: 4,
            rate: Rate::new(5.0, 10).ok(),
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
/// What the handle's clones, the delivery loop and the admin functions share.
pub(crate) struct Shared {
    /// Which queue (tables, labels, check, alerts).
    pub queue: Queue,
    pub store: Store,
    pub config: OutboxOptions,
    pub alerts: Alerts,
    /// Wakes the delivery loop (new op, operator retry, resume).
    pub wake: Arc<Notify>,
    /// Wakes producers waiting for room under the `block` policy.
    pub room: Notify,
    /// The one live state (see `state.rs`).
    state: Mutex<State>,
    /// Where the `"outbox"` health check goes, once given.
    pub health: OnceLock<Health>,
}

impl Shared {
    /// The byte cap and its policy, when they apply to this queue (0: no cap).
    pub fn cap(&self) -> (u64, crate::store::CapPolicy) {
        let o = self.store.options();
        if self.queue.capped {
            (o.max_bytes, o.cap_policy)
        } else {
            (0, crate::store::CapPolicy::RejectNew)
        }
    }

    /// The state, locked. A panic elsewhere while it was held leaves plain figures behind,
    /// never a broken invariant, so a poisoned lock is taken as it is.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The durable outbox for ops of type `Op`, in the tables of [`Operation::QUEUE`]. Cheap to
/// clone.
///
/// One `Outbox` per op type and store: two handles made by `new` for the same op type would
/// each keep their own counters and both run a delivery loop over the same tables.
pub struct Outbox<Op> {
    pub(crate) shared: Arc<Shared>,
    /// Ops of [`enqueue_now`](Outbox::enqueue_now) callers waiting for a group job.
    pub(super) waiting: Arc<Mutex<WaitingOps>>,
    pub(super) _op: PhantomData<fn() -> Op>,
}

impl<Op> Clone for Outbox<Op> {
    fn clone(&self) -> Self {
        Outbox {
            shared: self.shared.clone(),
            waiting: self.waiting.clone(),
            _op: PhantomData,
        }
    }
}

impl<Op: Operation> Outbox<Op> {
    /// An outbox over `store`. Nothing runs until [`run`](Self::run) is called.
    pub fn new(store: Store, config: OutboxOptions, alerts: Alerts) -> Self {
        let q = Op::QUEUE;
        let usage = store
            .read(|r| record::load_meta(&q.tables, r))
            .map(|m| Usage {
                bytes: m.bytes,
                count: m.count,
                oldest_age_secs: 0,
            })
            .unwrap_or_default();
        Outbox {
            shared: Arc::new(Shared {
                queue: q,
                store,
                config,
                alerts,
                wake: Arc::new(Notify::new()),
                room: Notify::new(),
                state: Mutex::new(State {
                    usage,
                    ..State::default()
                }),
                health: OnceLock::new(),
            }),
            waiting: Arc::new(Mutex::new(WaitingOps {
                ops: VecDeque::new(),
                scheduled: false,
            })),
            _op: PhantomData,
        }
    }

    /// Reports the `"outbox"` check to `health` while [`run`](Self::run) runs (the first
    /// registry given is kept).
    pub fn with_health(self, health: Health) -> Self {
        let _ = self.shared.health.set(health);
        self
    }

    /// The store it writes to.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }
}

impl<Op: Operation> Outbox<Op> {
    /// Pauses delivery (as an auth failure does): in-flight attempts finish, nothing new
    /// starts until [`resume`](Self::resume).
    pub fn pause(&self, reason: &str) {
        let newly = !std::mem::replace(&mut self.shared.state().delivery.paused, true);
        if newly {
            self.shared.alerts.raise(
                self.shared.queue.paused_alert,
                Severity::Critical,
                format!(
                    "{} delivery is paused: {reason}; ops keep queueing",
                    self.shared.queue.name
                ),
            );
        }
    }

    /// Resumes delivery after credentials were renewed. Nothing was lost or reordered while
    /// paused; the loop probes with one op first.
    pub fn resume(&self) {
        let was = std::mem::replace(&mut self.shared.state().delivery.paused, false);
        if was {
            tracing::info!("outbox delivery resumed");
        }
        self.shared.alerts.clear(self.shared.queue.paused_alert);
        self.shared.wake.notify_one();
    }

    /// Whether delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.shared.state().delivery.paused
    }

    /// The delivery loop's state, for `/healthz` and the status page.
    pub fn status(&self) -> DeliveryStatus {
        self.shared.state().snapshot()
    }

    /// Queued ops with seq greater than `after`, at most `limit`, decoded (for producers'
    /// own checks and for tests).
    pub fn queued(&self, after: u64, limit: usize) -> Result<Vec<(u64, Envelope, Op)>, StoreError> {
        self.shared.store.read(|r| {
            let mut out = Vec::new();
            let Some(t) = record::read_table(r, Op::QUEUE.tables.outbox())? else {
                return Ok(out);
            };
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
