//! Outbox errors. A failed enqueue hands the op back, so the producer decides what to do
//! with it (nothing is dropped silently).

use crate::store::StoreError;

/// Why an enqueue failed; carries the op.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError<Op> {
    /// The byte cap is reached and the policy refuses this op (it is not critical). Retry
    /// later, or tell the producer's own caller (e.g. a scanner gets an error beep).
    #[error("the outbox is full ({used} of {cap} bytes); the op was not queued")]
    Full {
        /// The op, handed back.
        op: Op,
        /// Bytes in use.
        used: u64,
        /// The cap.
        cap: u64,
    },
    /// The store failed (disk full, I/O): the op was not queued.
    #[error("the op was not queued: {source}")]
    Store {
        /// The op, handed back.
        op: Op,
        /// Why.
        #[source]
        source: StoreError,
    },
}

impl<Op> EnqueueError<Op> {
    /// The op that was not queued.
    pub fn into_op(self) -> Op {
        match self {
            EnqueueError::Full { op, .. } | EnqueueError::Store { op, .. } => op,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            EnqueueError::Full { .. } => true,
            EnqueueError::Store { source, .. } => source.is_retryable(),
        }
    }

    pub(crate) fn new(why: Refusal, op: Op) -> Self {
        match why {
            Refusal::Full { used, cap } => EnqueueError::Full { op, used, cap },
            Refusal::Store(source) => EnqueueError::Store { op, source },
        }
    }
}

/// Why an op was not queued, before the op is handed back in an [`EnqueueError`] (what the
/// enqueue paths pass around inside the outbox).
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// The byte cap refuses it (it is not critical).
    Full {
        /// Bytes in use.
        used: u64,
        /// The cap.
        cap: u64,
    },
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

/// Why the delivery loop or an admin action failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No op or dead letter with this seq.
    #[error("no op {0} in the outbox or the dead letters")]
    NotFound(u64),
    /// The request makes no sense for this op (e.g. dropping without a reason).
    #[error("{0}")]
    Invalid(String),
}

impl OutboxError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            OutboxError::Store(e) => e.is_retryable(),
            OutboxError::NotFound(_) | OutboxError::Invalid(_) => false,
        }
    }
}
