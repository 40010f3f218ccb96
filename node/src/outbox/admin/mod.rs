//! What operators can see and do with the queue: list, show, retry, drop, stats.
//!
//! Library functions over a [`Store`] returning serde views, so the same code serves the
//! `wms-node queue …` CLI (store opened directly when the node is stopped) and the node's
//! HTTP API under `/api/queue/…` ([`router`], used by the CLI while the node runs, since
//! redb allows one process per file). Nothing here decodes the op itself: envelopes carry
//! `kind` and `summary` (ids only, never buyer data), so these tools work for any op type.
//!
//! Every change an operator makes is logged at `warn` with the seq and the reason.

mod client;
mod http;
mod render;

/// The header the admin API requires on every state-changing request: `X-WMS-Node: 1`. A
/// web page cannot send it to another origin without a CORS preflight, which this server
/// never grants, so a browser on the gateway cannot be made to retry, drop or authorise
/// anything. `wms-node`'s own admin clients send it on every request.
pub const ADMIN_HEADER: (&str, &str) = ("x-wms-node", "1");

pub use client::{AdminClient, ClientError};
pub use http::{ErrorBody, router};
pub use render::{render_action, render_list, render_op, render_stats};

use super::Operation;
use super::Priority;
use super::error::OutboxError;
use super::queue::{InFlight, Outbox, Shared};
use super::record::{self, DeadLetter, Envelope};
use crate::store::{self, Store, StoreError};
use redb::{ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where an op stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Waiting for its turn (never tried, or due again).
    Queued,
    /// Being delivered right now (only known while the node runs).
    InFlight,
    /// Failed; waiting for its next attempt.
    BackingOff,
    /// Given up; in the dead letters.
    Dead,
}

impl OpState {
    /// The name used in tables and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Queued => "queued",
            OpState::InFlight => "in_flight",
            OpState::BackingOff => "backing_off",
            OpState::Dead => "dead",
        }
    }
}

/// Which ops to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    /// Queued ops and dead letters.
    #[default]
    All,
    /// Everything still in the queue (queued, in flight, backing off).
    Pending,
    /// Only ops backing off.
    BackingOff,
    /// Only dead letters.
    Dead,
}

impl std::str::FromStr for StateFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.replace('-', "_").as_str() {
            "all" => Ok(StateFilter::All),
            "pending" | "queued" => Ok(StateFilter::Pending),
            "backing_off" | "retrying" => Ok(StateFilter::BackingOff),
            "dead" | "dead_letter" | "dead_letters" => Ok(StateFilter::Dead),
            other => Err(format!(
                "unknown state {other:?}; expected all, pending, backing-off or dead"
            )),
        }
    }
}

/// A list request; `after` pages by seq.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListFilter {
    /// Which states.
    #[serde(default)]
    pub state: StateFilter,
    /// Only this kind (`ship`, `set_stock`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Only FIFO keys starting with this (`trade:123`).
    #[serde(default)]
    pub key: Option<String>,
    /// Only seqs greater than this (the previous page's `next_after`).
    #[serde(default)]
    pub after: Option<u64>,
    /// Page size (default 50, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One op as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpView {
    /// Sequence number (unique; also the id for show/retry/drop).
    pub seq: u64,
    /// Kind.
    pub kind: String,
    /// One line, ids only.
    pub summary: String,
    /// Where it stands.
    pub state: OpState,
    /// FIFO key.
    pub fifo_key: String,
    /// Coalescing key.
    pub coalesce_key: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// Never dropped by the cap policy.
    pub critical: bool,
    /// Idempotency key sent with every attempt.
    pub idempotency_key: String,
    /// Enqueued at (Unix ms).
    pub enqueued_at_ms: u64,
    /// Seconds since enqueue.
    pub age_secs: u64,
    /// Failed attempts so far (+1 while in flight).
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Last attempt at (Unix ms).
    pub last_attempt_at_ms: Option<u64>,
    /// Next attempt not before (Unix ms), when backing off.
    pub next_attempt_at_ms: Option<u64>,
    /// The op it replaced by coalescing.
    pub replaced: Option<u64>,
    /// Why it was given up (dead letters).
    pub dead_reason: Option<String>,
    /// When it was given up (Unix ms).
    pub dead_at_ms: Option<u64>,
}

/// A page of ops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListPage {
    /// The ops, by seq.
    pub ops: Vec<OpView>,
    /// Pass as `after` for the next page; `None` at the end.
    pub next_after: Option<u64>,
}

/// Counts for one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindStats {
    /// In the queue.
    pub pending: u64,
    /// Of which backing off.
    pub backing_off: u64,
    /// Dead letters.
    pub dead: u64,
}

/// The queue at a glance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// Ops in the queue.
    pub pending: u64,
    /// Of which in flight (only while the node runs).
    pub in_flight: u64,
    /// Of which backing off.
    pub backing_off: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Per kind.
    pub by_kind: BTreeMap<String, KindStats>,
    /// The oldest queued op's enqueue time (Unix ms).
    pub oldest_enqueued_at_ms: Option<u64>,
    /// Its age in seconds.
    pub oldest_age_secs: Option<u64>,
    /// Bytes accounted to the queue.
    pub bytes: u64,
    /// The cap (0 = none).
    pub cap_bytes: u64,
    /// `bytes / cap` in percent.
    pub cap_used_pct: Option<f64>,
    /// The cap policy.
    pub cap_policy: String,
    /// Records in the quarantine table.
    pub quarantined: u64,
    /// The database file's size on disk.
    pub file_bytes: u64,
    /// The store's id.
    pub store_id: String,
    /// The schema version.
    pub schema_version: u32,
}

/// What a retry or drop did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionResult {
    /// The op.
    pub seq: u64,
    /// `"requeued"` (a dead letter back in the queue), `"retry_now"` (backoff cleared),
    /// `"dropped"`.
    pub action: String,
    /// The op after the action (`None` once dropped).
    pub op: Option<OpView>,
}

/// The admin functions over one store.
#[derive(Clone)]
pub struct Admin {
    store: Store,
    /// Which queue's tables.
    queue: super::Queue,
    /// The running outbox's shared part (to know what is in flight and to wake its loop);
    /// `None` offline.
    live: Option<Arc<Shared>>,
}

impl<Op: Operation> Outbox<Op> {
    /// The admin functions over this outbox (knowing what is in flight, waking the loop).
    pub fn admin(&self) -> Admin {
        Admin {
            store: self.shared.store.clone(),
            queue: self.shared.queue,
            live: Some(self.shared.clone()),
        }
    }
}

impl Admin {
    /// Over the first queue ([`Queue::DEFAULT`](super::Queue::DEFAULT), the Taobao ops) of a
    /// store opened by this process with no delivery loop (the offline CLI).
    pub fn offline(store: Store) -> Self {
        Self::offline_queue(store, super::Queue::DEFAULT)
    }

    /// Over the queue `queue` of a store opened by this process with no delivery loop.
    pub fn offline_queue(store: Store, queue: super::Queue) -> Self {
        Admin {
            store,
            queue,
            live: None,
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn in_flight(&self) -> BTreeMap<u64, InFlight> {
        self.live
            .as_ref()
            .map(|s| s.state().in_flight.clone())
            .unwrap_or_default()
    }

    fn wake(&self) {
        if let Some(s) = &self.live {
            super::dead::refresh(s);
            s.wake.notify_one();
        }
    }

    /// Lists ops (queued and dead letters merged by seq), one page.
    pub fn list(&self, filter: &ListFilter) -> Result<ListPage, OutboxError> {
        let tables = self.queue.tables;
        let limit = filter.limit.unwrap_or(50).clamp(1, 1000);
        let start = filter.after.unwrap_or(0).saturating_add(1);
        let in_flight = self.in_flight();
        let now = store::now_ms();
        let want_queue = !matches!(filter.state, StateFilter::Dead);
        let want_dead = matches!(filter.state, StateFilter::All | StateFilter::Dead);
        Ok(self.store.read(|r| {
            let q = record::read_table(r, tables.outbox())?;
            let d = record::read_table(r, tables.dead())?;
            let mut qi = q.as_ref().map(|t| t.range(start..)).transpose()?;
            let mut qi = qi.iter_mut().flatten().peekable();
            let mut di = d.as_ref().map(|t| t.range(start..)).transpose()?;
            let mut di = di.iter_mut().flatten().peekable();
            let mut ops = Vec::new();
            let mut last_seen = None;
            loop {
                if ops.len() >= limit {
                    break;
                }
                let qk = if want_queue {
                    qi.peek()
                        .and_then(|r| r.as_ref().ok())
                        .map(|(k, _)| k.value())
                } else {
                    None
                };
                let dk = if want_dead {
                    di.peek()
                        .and_then(|r| r.as_ref().ok())
                        .map(|(k, _)| k.value())
                } else {
                    None
                };
                let view = match (qk, dk) {
                    (None, None) => break,
                    (Some(a), b) if b.is_none_or(|b| a < b) => {
                        let (k, v) = qi.next().transpose()?.ok_or(StoreError::Closed)?;
                        last_seen = Some(k.value());
                        queued_view(k.value(), v.value(), &in_flight, now)
                    }
                    _ => {
                        let (k, v) = di.next().transpose()?.ok_or(StoreError::Closed)?;
                        last_seen = Some(k.value());
                        dead_view(k.value(), v.value(), now)
                    }
                };
                let Some(view) = view else { continue };
                if matches_filter(&view, filter) {
                    ops.push(view);
                }
            }
            let more = ops.len() >= limit
                && (want_queue && qi.peek().is_some() || want_dead && di.peek().is_some());
            Ok(ListPage {
                ops,
                next_after: if more { last_seen } else { None },
            })
        })?)
    }

    /// One op, queued or dead, with its attempts, last error and next attempt.
    pub fn show(&self, seq: u64) -> Result<OpView, OutboxError> {
        let tables = self.queue.tables;
        let in_flight = self.in_flight();
        let now = store::now_ms();
        let found = self.store.read(|r| {
            if let Some(raw) = store::ReadTxn::get_raw(r, tables.outbox(), seq)? {
                return Ok(queued_view(seq, &raw, &in_flight, now));
            }
            if let Some(raw) = store::ReadTxn::get_raw(r, tables.dead(), seq)? {
                return Ok(dead_view(seq, &raw, now));
            }
            Ok(None)
        })?;
        found.ok_or(OutboxError::NotFound(seq))
    }

    /// A dead letter goes back into the queue (same seq and idempotency key, attempts
    /// reset); a queued op that is backing off is tried as soon as its key allows.
    pub async fn retry(&self, seq: u64) -> Result<ActionResult, OutboxError> {
        let tables = self.queue.tables;
        let action = self
            .store
            .write(move |txn| -> Result<_, StoreError> {
                if let Some(env) = record::requeue_dead(&tables, txn, seq)? {
                    return Ok(Some(("requeued", env)));
                }
                Ok(record::retry_now(&tables, txn, seq)?.map(|env| ("retry_now", env)))
            })
            .await?;
        let Some((action, env)) = action else {
            return Err(OutboxError::NotFound(seq));
        };
        tracing::warn!(seq, kind = %env.kind, action, "operator retried an outbox op");
        self.wake();
        Ok(ActionResult {
            seq,
            action: action.to_owned(),
            op: self.show(seq).ok(),
        })
    }

    /// Removes an op for good, queued or dead, with a reason (logged). A critical op
    /// (a shipment) needs `force`.
    pub async fn drop_op(
        &self,
        seq: u64,
        reason: &str,
        force: bool,
    ) -> Result<ActionResult, OutboxError> {
        let tables = self.queue.tables;
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(OutboxError::Invalid(
                "dropping an op needs a reason (it is logged)".into(),
            ));
        }
        let current = self.show(seq)?;
        if current.critical && !force && current.state != OpState::Dead {
            return Err(OutboxError::Invalid(format!(
                "op {seq} ({}) is critical and still queued; pass --force to drop it anyway",
                current.kind
            )));
        }
        let dropped: Option<Envelope> = self
            .store
            .write(move |txn| -> Result<_, StoreError> {
                if let Some(DeadLetter { envelope, .. }) = record::drop_dead(&tables, txn, seq)? {
                    return Ok(Some(envelope));
                }
                let mut meta = record::load_meta(&tables, txn)?;
                let env = record::remove(&tables, txn, &mut meta, seq)?;
                if env.is_some() {
                    store::put(txn, store::META, tables.meta_key, &meta)?;
                }
                Ok(env)
            })
            .await?;
        let Some(env) = dropped else {
            return Err(OutboxError::NotFound(seq));
        };
        tracing::warn!(seq, kind = %env.kind, summary = %env.summary, fifo_key = %env.fifo_key,
            reason = %reason, "operator dropped an outbox op");
        metrics::counter!("wms_node_outbox_dropped_total", "queue" => self.queue.name,
            "kind" => env.kind.clone(), "reason" => "operator")
        .increment(1);
        self.wake();
        Ok(ActionResult {
            seq,
            action: "dropped".into(),
            op: None,
        })
    }

    /// Counts by kind and state, oldest age, bytes and cap, dead letters, quarantine.
    pub fn stats(&self) -> Result<Stats, OutboxError> {
        let tables = self.queue.tables;
        let in_flight = self.in_flight();
        let now = store::now_ms();
        let mut opts = self.store.options().clone();
        if !self.queue.capped {
            opts.max_bytes = 0;
        }
        let mut s = self.store.read(|r| {
            let meta = record::load_meta(&tables, r)?;
            let versions = store::schema::read_versions(r)?;
            let q = record::read_table(r, tables.outbox())?;
            let d = record::read_table(r, tables.dead())?;
            let mut by_kind: BTreeMap<String, KindStats> = BTreeMap::new();
            let mut backing_off = 0;
            let mut oldest: Option<u64> = None;
            let mut pending = 0;
            for row in q
                .as_ref()
                .map(|t| t.iter())
                .transpose()?
                .into_iter()
                .flatten()
            {
                let (_, v) = row?;
                pending += 1;
                let Ok(env) = record::decode_envelope(v.value()) else {
                    continue;
                };
                let k = by_kind.entry(env.kind.clone()).or_default();
                k.pending += 1;
                if env.not_before_ms > now {
                    k.backing_off += 1;
                    backing_off += 1;
                }
                oldest = Some(oldest.map_or(env.enqueued_at_ms, |o| o.min(env.enqueued_at_ms)));
            }
            for row in d
                .as_ref()
                .map(|t| t.iter())
                .transpose()?
                .into_iter()
                .flatten()
            {
                let (_, v) = row?;
                let kind = postcard::from_bytes::<DeadLetter>(v.value())
                    .map_or_else(|_| "?".to_owned(), |dl| dl.envelope.kind);
                by_kind.entry(kind).or_default().dead += 1;
            }
            Ok(Stats {
                pending,
                in_flight: 0,
                backing_off,
                dead_letters: d
                    .as_ref()
                    .map(ReadableTableMetadata::len)
                    .transpose()?
                    .unwrap_or(0),
                by_kind,
                oldest_enqueued_at_ms: oldest,
                oldest_age_secs: oldest.map(|o| now.saturating_sub(o) / 1000),
                bytes: meta.bytes,
                cap_bytes: opts.max_bytes,
                cap_used_pct: (opts.max_bytes > 0)
                    .then(|| 100.0 * meta.bytes as f64 / opts.max_bytes as f64),
                cap_policy: opts.cap_policy.to_string(),
                quarantined: store::quarantine::count(r)?,
                file_bytes: 0,
                store_id: self.store.store_id().to_owned(),
                schema_version: versions.version,
            })
        })?;
        s.in_flight = in_flight.len() as u64;
        s.file_bytes = self.store.file_bytes();
        Ok(s)
    }
}

fn matches_filter(v: &OpView, f: &ListFilter) -> bool {
    let state_ok = match f.state {
        StateFilter::All => true,
        StateFilter::Pending => v.state != OpState::Dead,
        StateFilter::BackingOff => v.state == OpState::BackingOff,
        StateFilter::Dead => v.state == OpState::Dead,
    };
    state_ok
        && f.kind.as_ref().is_none_or(|k| &v.kind == k)
        && f.key
            .as_ref()
            .is_none_or(|k| v.fifo_key.starts_with(k.as_str()))
}

fn base_view(seq: u64, env: Envelope, state: OpState, now: u64) -> OpView {
    OpView {
        seq,
        kind: env.kind,
        summary: env.summary,
        state,
        fifo_key: env.fifo_key,
        coalesce_key: env.coalesce_key,
        priority: env.priority,
        critical: env.critical,
        idempotency_key: env.idempotency_key,
        enqueued_at_ms: env.enqueued_at_ms,
        age_secs: now.saturating_sub(env.enqueued_at_ms) / 1000,
        attempts: env.attempts,
        last_error: env.last_error,
        last_attempt_at_ms: env.last_attempt_at_ms,
        next_attempt_at_ms: (env.not_before_ms > now).then_some(env.not_before_ms),
        replaced: env.replaced,
        dead_reason: None,
        dead_at_ms: None,
    }
}

fn queued_view(
    seq: u64,
    raw: &[u8],
    in_flight: &BTreeMap<u64, InFlight>,
    now: u64,
) -> Option<OpView> {
    let env = record::decode_envelope(raw).ok()?;
    let state = if in_flight.contains_key(&seq) {
        OpState::InFlight
    } else if env.not_before_ms > now {
        OpState::BackingOff
    } else {
        OpState::Queued
    };
    let mut v = base_view(seq, env, state, now);
    if let Some(f) = in_flight.get(&seq) {
        v.attempts = v.attempts.max(f.attempt);
    }
    Some(v)
}

fn dead_view(seq: u64, raw: &[u8], now: u64) -> Option<OpView> {
    let dl: DeadLetter = postcard::from_bytes(raw).ok()?;
    let mut v = base_view(seq, dl.envelope, OpState::Dead, now);
    v.next_attempt_at_ms = None;
    v.dead_reason = Some(dl.reason);
    v.dead_at_ms = Some(dl.at_ms);
    Some(v)
}
