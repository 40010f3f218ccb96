//! The outbox's live state: one struct behind one lock, one owner.
//!
//! Everything about the outbox that changes while the node runs (paused or not, whether the
//! delivery loop runs, the link as it sees it, the attempts in flight, the cached queue
//! figures) is one [`State`], behind the one mutex of the outbox's shared part. The delivery
//! loop owns it: it alone starts and ends attempts and moves the link; an enqueue updates the
//! figures once its transaction is durable; `pause`/`resume` flip `paused`. Everyone else
//! (the status page, `/healthz`, the admin functions) reads a snapshot. The lock is never
//! held across an `.await` or a store call.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// An attempt in progress, for `queue show` and `/healthz`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InFlight {
    /// Which attempt (1-based).
    pub attempt: u32,
    /// When it started (Unix ms).
    pub started_at_ms: u64,
}

/// The link to the other side as the delivery loop sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    /// Nothing delivered or failed yet since the start (or since a resume).
    #[default]
    Unknown,
    /// The last attempt got an answer.
    Up,
    /// Attempts are failing; one probe at a time until one gets an answer.
    Down,
}

impl LinkStatus {
    /// `"unknown"`, `"up"` or `"down"`: the status page's and `/healthz`'s word.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Unknown => "unknown",
            LinkStatus::Up => "up",
            LinkStatus::Down => "down",
        }
    }
}

impl fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of the delivery loop, for `/healthz` and the status page.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryStatus {
    /// Whether the loop is running.
    pub running: bool,
    /// Paused after an auth failure (until [`Outbox::resume`](super::Outbox::resume)).
    pub paused: bool,
    /// The link to the other side, as delivery sees it.
    pub link: LinkStatus,
    /// Consecutive failed attempts (while down).
    pub consecutive_failures: u32,
    /// Since when the link is down (Unix ms).
    pub down_since_ms: Option<u64>,
    /// The last delivery (Unix ms).
    pub last_success_ms: Option<u64>,
    /// The last failure's reason.
    pub last_failure: Option<String>,
    /// When the last failure happened (Unix ms).
    pub last_failure_ms: Option<u64>,
    /// Attempts in flight.
    pub in_flight: usize,
}
/// Cached queue figures.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Usage {
    pub bytes: u64,
    pub count: u64,
    pub oldest_age_secs: u64,
}

/// The one state (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The delivery loop's figures; `in_flight` is filled in by [`State::snapshot`].
    pub delivery: DeliveryStatus,
    /// Attempts in progress, by seq.
    pub in_flight: BTreeMap<u64, InFlight>,
    /// Cached queue figures (the status page must not touch the store).
    pub usage: Usage,
    /// The dead letters by op kind, as last counted (`dead.rs`).
    pub dead: std::collections::BTreeMap<String, DeadKind>,
}

impl State {
    /// What the status page and `/healthz` show.
    pub fn snapshot(&self) -> DeliveryStatus {
        DeliveryStatus {
            in_flight: self.in_flight.len(),
            ..self.delivery.clone()
        }
    }

    /// An attempt got an answer (delivered, or refused for good): the link is up.
    pub fn link_up(&mut self, delivered_at_ms: Option<u64>) {
        let d = &mut self.delivery;
        d.link = LinkStatus::Up;
        d.consecutive_failures = 0;
        d.down_since_ms = None;
        if delivered_at_ms.is_some() {
            d.last_success_ms = delivered_at_ms;
        }
    }

    /// An attempt failed; `down` carries the consecutive failures when the link is down.
    pub fn failed(&mut self, reason: String, down: Option<u32>, now_ms: u64) {
        let d = &mut self.delivery;
        d.last_failure = Some(reason);
        d.last_failure_ms = Some(now_ms);
        if let Some(failures) = down {
            d.link = LinkStatus::Down;
            d.consecutive_failures = failures;
            d.down_since_ms.get_or_insert(now_ms);
        }
    }
}

/// The dead letters of one op kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadKind {
    pub count: u64,
    pub critical: bool,
    /// The newest one: seq, summary, reason.
    pub latest: (u64, String, String),
}
