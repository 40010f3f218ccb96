//! The outbox: the durable queue of effects on the outside world, and their delivery.
//!
//! This file is the *contract* that op producers (order intake, the floor, stock) and sinks
//! (the Taobao client, later others) code against. The storage and the delivery engine live
//! in the submodules, one job each; `admin` uses the queue, never the other way round:
//!
//! | file | job |
//! |---|---|
//! | `queue.rs` | the [`Outbox`] handle, its [`OutboxOptions`], pause/resume, status, reading the queue |
//! | `enqueue.rs` | enqueueing inside a caller's transaction, or grouped on its own; the byte cap's policy |
//! | `state.rs` | the one live state (link, attempts in flight, figures), behind one lock |
//! | `deliver.rs` | the delivery loop; `link.rs` its link state machine |
//! | `cap.rs` | the byte gauges and the `store_cap` alert |
//! | `dead.rs` | the dead-letter gauges and alerts, from the table |
//! | `report.rs` | the `"outbox"` health check and the status page's section |
//! | `record.rs` | the tables, the on-disk envelope and the index |
//! | `admin/` | `queue list/show/retry/drop/stats`, offline or through the running node |
//!
//! Invariants (see `docs/OUTBOX.md` for the full design):
//! - An op is enqueued in the same redb transaction as the local change that caused it, and
//!   the enqueue is acknowledged only after that transaction is fsynced.
//! - Ops with the same [`Operation::fifo_key`] are delivered one at a time, in enqueue order.
//! - A newer op with the same [`Operation::coalesce_key`] replaces an older undelivered one.
//! - An op leaves the outbox only in the transaction that records its success; a crash
//!   re-delivers at most the ops that were in flight, with the same idempotency key.
//! - A [`Outcome::Permanent`] op moves to the dead-letter table with its reason and raises an
//!   alert; [`Outcome::Auth`] pauses all delivery until [`resume`](self) is signalled, without
//!   losing or reordering anything.

pub mod admin;
mod cap;
mod dead;
mod deliver;
mod enqueue;
mod error;
mod link;
mod queue;
pub mod record;
mod report;
mod state;
mod waiting;

pub use error::{EnqueueError, OutboxError};
pub use link::LinkState;
pub use queue::{DeliveryStatus, InFlight, LinkStatus, Outbox, OutboxOptions};
pub use record::{Envelope, QueueTables, SCHEMA, create_tables};
pub use waiting::Enqueued;

use crate::alert::AlertCode;
use crate::status::health::CheckName;
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

/// Delivery priority: lower values are delivered first when several keys are ready.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Priority {
    /// Shipments (deadlines and penalties) and the zero-stock fast path.
    Urgent = 0,
    /// Everything else.
    Normal = 1,
    /// Housekeeping that can wait (e.g. cancelling unused waybills).
    Low = 2,
}

/// Where one op type's queue lives in the store and how it shows itself: its tables, its
/// `queue` label in the metrics, its health check and status-page section, the alerts its
/// dead letters and pauses raise, and whether the store's byte cap applies to it.
///
/// One store holds one queue per op type, each delivered by its own loop to its own sink
/// with its own link state: the Taobao ops ([`Queue::DEFAULT`]) and the alert notices
/// (`ops::notify`), so a webhook that is down never holds up a shipment, nor the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// The `queue` label of the `wms_node_outbox_*` metrics (`"taobao"`, `"alerts"`).
    pub name: &'static str,
    /// The status page's heading.
    pub title: crate::status::i18n::Msg,
    /// Its tables.
    pub tables: QueueTables,
    /// The health check it reports.
    pub check: CheckName,
    /// Raised (one alert per op kind) while it has dead letters.
    pub dead_letter_alert: AlertCode,
    /// What to do about a dead letter, for the alert (`"fix the cause, then …"`).
    pub dead_letter_hint: &'static str,
    /// Raised while its delivery is paused (the other side refused our credentials).
    pub paused_alert: AlertCode,
    /// Whether `store.max_bytes` and its policy and alerts apply to it.
    pub capped: bool,
    /// Whether its failing check makes the node unhealthy (`/healthz` 503); otherwise it
    /// reports degraded at worst.
    pub essential: bool,
}

impl Queue {
    /// The first queue: the tables of schema version 1, the `"outbox"` check, capped.
    pub const DEFAULT: Queue = Queue {
        name: "outbox",
        title: crate::status::i18n::Msg::SecOutbox,
        tables: QueueTables::OUTBOX,
        check: CheckName::Outbox,
        dead_letter_alert: AlertCode::DeadLetter,
        dead_letter_hint: "fix the cause, then `wms-node queue retry SEQ` (or `queue drop SEQ`); \
                           `wms-node queue list --state dead` lists them",
        paused_alert: AlertCode::OutboxPaused,
        capped: true,
        essential: true,
    };
}

/// An effect to deliver. Implemented by each sink's op enum (e.g. the Taobao ops).
pub trait Operation: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static {
    /// The queue ops of this type live in (one op type per queue).
    const QUEUE: Queue = Queue::DEFAULT;

    /// Ops with the same FIFO key are delivered one at a time, in enqueue order
    /// (e.g. `"trade:<tid>"`, `"stock:<num_iid>:<sku_id>"`).
    fn fifo_key(&self) -> String;

    /// A newer op with the same coalescing key replaces an older one that has not been
    /// delivered yet (e.g. latest absolute stock value wins). `None`: never coalesced.
    fn coalesce_key(&self) -> Option<String> {
        None
    }

    /// Critical ops (shipments) are never dropped by the byte-cap policy.
    fn is_critical(&self) -> bool {
        false
    }

    /// Delivery priority.
    fn priority(&self) -> Priority {
        Priority::Normal
    }

    /// A short, stable name for tables and metrics: `"ship"`, `"set_stock"`.
    fn kind(&self) -> &'static str;

    /// One line for `queue list`, without buyer data (ids only).
    fn summary(&self) -> String;
}

/// One delivery attempt handed to a [`Sink`].
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a, Op> {
    /// The op's position in the outbox (unique, increasing).
    pub seq: u64,
    /// Stable across re-deliveries of the same op (and changes when a coalescing op replaces
    /// it), so a sink that honours it applies the op at most once.
    pub idempotency_key: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The op itself.
    pub op: &'a Op,
}

/// What a sink says about one attempt. Loops decide only through this, never by matching
/// error strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now.
    Done,
    /// The other side says it was already applied (e.g. Taobao B04 "already shipped").
    AlreadyDone,
    /// Try again later; `after` is the other side's own hint (a code-7 ban), else backoff.
    Retry {
        /// Minimum wait before the next attempt, when the other side said so.
        after: Option<Duration>,
        /// Why, for `queue show` and logs (no secrets, no buyer data).
        reason: String,
    },
    /// Credentials are missing, expired or revoked: pause all delivery until resumed.
    Auth {
        /// Why, for the alert.
        reason: String,
    },
    /// Will never succeed as is: dead-letter it with the reason and raise an alert.
    Permanent {
        /// The other side's message, for the dead-letter table.
        reason: String,
    },
    /// The op must not be delivered any more (the sink checked the local state before
    /// sending: e.g. a shipment whose order was put on hold, DOMAIN.md §3.3). It leaves the
    /// outbox like a delivered op but is counted apart; whoever cancels it alerts.
    Cancelled {
        /// Why, for the log.
        reason: String,
    },
}

/// Where ops go. One per external system; it maps its own errors onto [`Outcome`].
pub trait Sink<Op: Operation>: Send + Sync + 'static {
    /// Delivers one op. Must not panic; every failure is an [`Outcome`].
    fn deliver(&self, attempt: Attempt<'_, Op>) -> impl Future<Output = Outcome> + Send;
}
