//! Ops waiting for a group job: what an `enqueue_now` caller hands over (the op, worked out
//! before the transaction, and where its result goes), kept in the queue's shared state until
//! the writer takes them ([`super::enqueue`]).

use super::Operation;
use super::error::Refusal;
use crate::store::{self, StoreError};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;

/// An `enqueue_now` caller's op and where its result goes.
pub(super) struct Waiting {
    pub(super) op: Arc<Prepared>,
    pub(super) reply: tokio::sync::oneshot::Sender<Result<Enqueued, Refusal>>,
}

pub(super) struct WaitingOps {
    pub(super) ops: VecDeque<Waiting>,
    /// A group job is on its way to the writer (it will take the ops waiting by then).
    pub(super) scheduled: bool,
}

/// What an enqueue needs of an op, worked out before the transaction.
pub(super) struct Prepared {
    pub(super) kind: &'static str,
    pub(super) summary: String,
    pub(super) fifo_key: String,
    pub(super) coalesce_key: Option<String>,
    pub(super) priority: super::Priority,
    pub(super) critical: bool,
    /// The op, postcard-encoded.
    pub(super) op: Vec<u8>,
}

impl Prepared {
    pub(super) fn of<Op: Operation>(op: &Op) -> Result<Prepared, StoreError> {
        Ok(Prepared {
            kind: op.kind(),
            summary: op.summary(),
            fifo_key: op.fifo_key(),
            coalesce_key: op.coalesce_key(),
            priority: op.priority(),
            critical: op.is_critical(),
            op: store::encode("outbox", op)?,
        })
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    /// The op's sequence number.
    pub seq: u64,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// The older op it replaced (coalescing), if any.
    pub replaced: Option<u64>,
    /// Ops dropped to make room (`drop_oldest` policy).
    pub dropped: Vec<u64>,
}
