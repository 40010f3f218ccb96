//! The outbox's tables and every change to them, each a function over a write transaction.
//!
//! ```text
//! outbox        u64 seq            -> postcard(Envelope)       the ops, in enqueue order
//! outbox_fifo   (fifo_key, seq)    -> ()                       per-key order; head = first
//! outbox_sched  (priority, seq)    -> (not_before_ms, fifo_key) what to try next
//! outbox_keys   coalesce_key       -> seq                      the op a newer one replaces
//! dead_letter   u64 seq            -> postcard(DeadLetter)     given up, with the reason
//! meta["outbox"]                   -> postcard(OutboxMeta)     next seq, bytes, count
//! ```
//!
//! Every function keeps the five tables and the byte count consistent within the caller's
//! transaction; none of them commits. Envelopes carry `kind` and `summary` so operators'
//! tools can show ops without knowing the op type.

use super::Priority;
use crate::store::{self, Bytes, META, StoreError};
use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The first queue's ops, by sequence number (the other tables of a queue are named by its
/// [`QueueTables`]).
pub const OUTBOX: TableDefinition<u64, Bytes> = TableDefinition::new(OUTBOX_NAME);
const OUTBOX_NAME: &str = "outbox";
/// Per-FIFO-key order: the first entry of a key is its head.
pub const OUTBOX_FIFO: TableDefinition<(&str, u64), ()> = TableDefinition::new("outbox_fifo");
/// Scheduling index: priority first, then enqueue order; value = (not before, fifo key).
pub const OUTBOX_SCHED: TableDefinition<(u8, u64), (u64, &str)> =
    TableDefinition::new("outbox_sched");
/// Coalescing key -> the seq of the newest undelivered op with that key.
pub const OUTBOX_KEYS: TableDefinition<&str, u64> = TableDefinition::new("outbox_keys");
/// Ops given up on, by their original sequence number.
pub const DEAD_LETTER: TableDefinition<u64, Bytes> = TableDefinition::new(DEAD_LETTER_NAME);
const DEAD_LETTER_NAME: &str = "dead_letter";

/// The names of one queue's tables and counters. A store holds one queue per op type
/// ([`Operation::QUEUE`](super::Operation::QUEUE)): the Taobao ops in the tables above
/// ([`QueueTables::OUTBOX`]), the alert notices in `alert_outbox…`; each has its own
/// sequence numbers, counters and dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTables {
    /// seq → envelope.
    pub outbox: &'static str,
    /// (fifo key, seq) → ().
    pub fifo: &'static str,
    /// (priority, seq) → (not before, fifo key).
    pub sched: &'static str,
    /// coalesce key → seq.
    pub keys: &'static str,
    /// seq → dead letter.
    pub dead_letter: &'static str,
    /// The key of its counters in `meta`.
    pub meta_key: &'static str,
}

impl QueueTables {
    /// The first queue's tables (schema version 1): the Taobao ops.
    pub const OUTBOX: QueueTables = QueueTables {
        outbox: OUTBOX_NAME,
        fifo: "outbox_fifo",
        sched: "outbox_sched",
        keys: "outbox_keys",
        dead_letter: DEAD_LETTER_NAME,
        meta_key: "outbox",
    };

    fn rows(&self) -> TableDefinition<'static, u64, Bytes> {
        TableDefinition::new(self.outbox)
    }
    fn fifo(&self) -> TableDefinition<'static, (&'static str, u64), ()> {
        TableDefinition::new(self.fifo)
    }
    fn sched(&self) -> TableDefinition<'static, (u8, u64), (u64, &'static str)> {
        TableDefinition::new(self.sched)
    }
    fn keys(&self) -> TableDefinition<'static, &'static str, u64> {
        TableDefinition::new(self.keys)
    }
    /// The dead-letter table.
    pub fn dead(&self) -> TableDefinition<'static, u64, Bytes> {
        TableDefinition::new(self.dead_letter)
    }
    /// The queue's rows (seq → envelope), for readers.
    pub fn outbox(&self) -> TableDefinition<'static, u64, Bytes> {
        self.rows()
    }

    /// Creates the queue's tables (a migration step does, so readers can open them).
    pub fn create(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        txn.open_table(self.rows())?;
        txn.open_table(self.fifo())?;
        txn.open_table(self.sched())?;
        txn.open_table(self.keys())?;
        txn.open_table(self.dead())?;
        Ok(())
    }
}

/// The outbox's tables in the store and their migration path: whoever opens the store for
/// the outbox lists it in `StoreOptions::schemas` (the daemon and the CLI do, through
/// `config`). Without it a fresh store still works (the tables are made by the first write
/// and read as empty before), but a store converted from redb 2.6 keeps its old indexes.
pub const SCHEMA: store::Schema = store::Schema {
    name: "outbox",
    steps: &[
        store::Migration {
            to: 1,
            what: "the outbox's tables",
            breaks_older_readers: false,
            run: create_tables,
        },
        store::Migration {
            to: 2,
            what: "the outbox's tuple-keyed indexes rebuilt in redb 3's tuple encoding",
            breaks_older_readers: true,
            run: rebuild_indexes,
        },
    ],
    // Store schema 1 created these tables and store schema 2 rebuilt the indexes.
    adopted: 2,
};

/// Opens one of the outbox's tables for reading: `None` when no write has made it yet (a
/// store opened without [`SCHEMA`] holds no outbox tables before its first enqueue).
pub fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Creates the tables that do not exist yet (the outbox's schema step 1). Tables that exist
/// are left unopened: on a store converted from redb 2.6 the two tuple-keyed indexes cannot
/// be opened until step 2 has rebuilt them, and a kill between the store's own steps and the
/// outbox's can leave such a file with no outbox version recorded, so this step runs on it.
pub fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    use redb::TableHandle as _;
    let existing: HashSet<String> = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
    let missing = |name: &str| !existing.contains(name);
    if missing(OUTBOX_NAME) {
        txn.open_table(OUTBOX)?;
    }
    if missing(OUTBOX_FIFO.name()) {
        txn.open_table(OUTBOX_FIFO)?;
    }
    if missing(OUTBOX_SCHED.name()) {
        txn.open_table(OUTBOX_SCHED)?;
    }
    if missing(OUTBOX_KEYS.name()) {
        txn.open_table(OUTBOX_KEYS)?;
    }
    if missing(DEAD_LETTER_NAME) {
        txn.open_table(DEAD_LETTER)?;
    }
    Ok(())
}

/// Rebuilds the two tuple-keyed indexes (`outbox_fifo`, `outbox_sched`) and the counters
/// from the ops (the outbox's schema step 2). redb 3 changed how a tuple holding a string is encoded, so
/// these two tables of a store converted from redb 2.6 cannot be opened by redb 5
/// (`TableTypeMismatch`); everything in them is also in the ops. A row that does not decode
/// is moved to quarantine (it could not be indexed). Idempotent.
pub fn rebuild_indexes(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.delete_table(OUTBOX_FIFO)?;
    txn.delete_table(OUTBOX_SCHED)?;
    let q = QueueTables::OUTBOX;
    let mut meta = load_meta(&q, txn)?;
    let (mut bytes, mut count) = (0, 0);
    let mut broken = Vec::new();
    {
        let outbox = txn.open_table(OUTBOX)?;
        let mut fifo = txn.open_table(OUTBOX_FIFO)?;
        let mut sched = txn.open_table(OUTBOX_SCHED)?;
        for row in outbox.iter()? {
            let (k, v) = row?;
            let seq = k.value();
            match decode_envelope(v.value()) {
                Ok(env) => {
                    fifo.insert((env.fifo_key.as_str(), seq), ())?;
                    sched.insert(
                        (env.priority as u8, seq),
                        (env.not_before_ms, env.fifo_key.as_str()),
                    )?;
                    bytes += footprint(v.value().len(), &env.fifo_key, env.coalesce_key.as_deref());
                    count += 1;
                    meta.next_seq = meta.next_seq.max(seq + 1);
                }
                Err(e) => broken.push((seq, v.value().to_vec(), e.to_string())),
            }
        }
    }
    if !broken.is_empty() {
        let mut outbox = txn.open_table(OUTBOX)?;
        for (seq, raw, reason) in broken {
            outbox.remove(seq)?;
            let reason = format!("envelope does not decode: {reason}");
            store::quarantine::insert(txn, OUTBOX_NAME, &seq.to_string(), &reason, raw)?;
        }
    }
    meta.bytes = bytes;
    meta.count = count;
    save_meta(&q, txn, &meta)
}

/// One queued op with what the outbox knows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// [`Operation::kind`](super::Operation::kind).
    pub kind: String,
    /// [`Operation::summary`](super::Operation::summary): ids only.
    pub summary: String,
    /// [`Operation::fifo_key`](super::Operation::fifo_key).
    pub fifo_key: String,
    /// [`Operation::coalesce_key`](super::Operation::coalesce_key).
    pub coalesce_key: Option<String>,
    /// [`Operation::priority`](super::Operation::priority).
    pub priority: Priority,
    /// [`Operation::is_critical`](super::Operation::is_critical).
    pub critical: bool,
    /// `<store_id>-<seq>`: stable across re-deliveries, new for a replacing op.
    pub idempotency_key: String,
    /// When it was enqueued (Unix ms).
    pub enqueued_at_ms: u64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// When it was last tried (Unix ms).
    pub last_attempt_at_ms: Option<u64>,
    /// Not to be tried before (Unix ms; 0 = now).
    pub not_before_ms: u64,
    /// The seq of the older op this one replaced by coalescing.
    pub replaced: Option<u64>,
    /// The op, postcard-encoded.
    pub op: Vec<u8>,
}

/// An [`Envelope`] borrowing its strings, for encoding one without copying them: the
/// same fields in the same order, so postcard encodes both alike (tested).
#[derive(Debug, Serialize)]
pub(crate) struct EnvelopeRef<'a> {
    pub kind: &'a str,
    pub summary: &'a str,
    pub fifo_key: &'a str,
    pub coalesce_key: Option<&'a str>,
    pub priority: Priority,
    pub critical: bool,
    pub idempotency_key: &'a str,
    pub enqueued_at_ms: u64,
    pub attempts: u32,
    pub last_error: Option<&'a str>,
    pub last_attempt_at_ms: Option<u64>,
    pub not_before_ms: u64,
    pub replaced: Option<u64>,
    pub op: &'a [u8],
}

impl<'a> EnvelopeRef<'a> {
    /// What the index tables hold of it.
    pub(crate) fn index(&self) -> Index<'a> {
        Index {
            fifo_key: self.fifo_key,
            coalesce_key: self.coalesce_key,
            priority: self.priority,
            not_before_ms: self.not_before_ms,
        }
    }
}

/// What the index tables hold of an op.
pub(crate) struct Index<'a> {
    pub fifo_key: &'a str,
    pub coalesce_key: Option<&'a str>,
    pub priority: Priority,
    pub not_before_ms: u64,
}

/// A dead letter: the envelope and why it was given up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The op as it was when given up.
    pub envelope: Envelope,
    /// The other side's message.
    pub reason: String,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// Outbox counters, kept in `meta` and changed in the same transaction as the rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMeta {
    /// The next sequence number (never reused, even after the outbox drains).
    pub next_seq: u64,
    /// Bytes accounted to queued ops (see [`footprint`]).
    pub bytes: u64,
    /// Queued ops.
    pub count: u64,
}

/// The bytes an op accounts for: its row plus its index entries. Deterministic from the
/// stored row, so adding and removing always balance.
pub fn footprint(raw_len: usize, fifo_key: &str, coalesce_key: Option<&str>) -> u64 {
    let ck = coalesce_key.map_or(0, |k| k.len() + 8);
    (raw_len + 8 + (fifo_key.len() + 8) + (9 + 8 + fifo_key.len()) + ck) as u64
}

/// The counters.
pub fn load_meta(q: &QueueTables, txn: &impl store::ReadTxn) -> Result<OutboxMeta, StoreError> {
    Ok(store::get(txn, META, q.meta_key)?.unwrap_or_default())
}

fn save_meta(q: &QueueTables, txn: &WriteTransaction, meta: &OutboxMeta) -> Result<(), StoreError> {
    store::put(txn, META, q.meta_key, meta)
}

/// The counters, read and written through an already open `meta` table (the enqueue path,
/// which would otherwise open it twice per op).
pub fn load_meta_in(
    q: &QueueTables,
    t: &redb::Table<'_, &'static str, Bytes>,
) -> Result<OutboxMeta, StoreError> {
    match t.get(q.meta_key)? {
        None => Ok(OutboxMeta::default()),
        // Not quarantined: losing the counters could reuse sequence numbers.
        Some(v) => postcard::from_bytes(v.value()).map_err(|_| StoreError::Corrupt {
            table: "meta".into(),
            key: q.meta_key.into(),
        }),
    }
}

/// See [`load_meta_in`].
pub fn save_meta_in(
    q: &QueueTables,
    t: &mut redb::Table<'_, &'static str, Bytes>,
    meta: &OutboxMeta,
) -> Result<(), StoreError> {
    let raw = store::encode("meta", meta)?;
    t.insert(q.meta_key, raw.as_slice())?;
    Ok(())
}

/// Decodes an envelope without quarantining it (callers decide what to do with a bad row).
pub fn decode_envelope(raw: &[u8]) -> Result<Envelope, postcard::Error> {
    postcard::from_bytes(raw)
}

/// The outbox's tables, opened once for a series of changes in one write transaction
/// (opening a redb table is a lookup in its table tree, a large part of an enqueue's cost).
/// While it lives, nothing else may open these tables in the same transaction.
pub struct Tables<'t> {
    q: QueueTables,
    txn: &'t WriteTransaction,
    outbox: redb::Table<'t, u64, Bytes>,
    fifo: redb::Table<'t, (&'static str, u64), ()>,
    sched: redb::Table<'t, (u8, u64), (u64, &'static str)>,
    /// Opened on first use: most ops have no coalescing key.
    keys: Option<redb::Table<'t, &'static str, u64>>,
}

impl<'t> Tables<'t> {
    /// Opens `outbox`, `outbox_fifo` and `outbox_sched`.
    pub fn open(q: &QueueTables, txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            q: *q,
            txn,
            outbox: txn.open_table(q.rows())?,
            fifo: txn.open_table(q.fifo())?,
            sched: txn.open_table(q.sched())?,
            keys: None,
        })
    }

    fn keys(&mut self) -> Result<&mut redb::Table<'t, &'static str, u64>, StoreError> {
        if self.keys.is_none() {
            self.keys = Some(self.txn.open_table(self.q.keys())?);
        }
        // Just opened above if it was not.
        self.keys.as_mut().ok_or(StoreError::Closed)
    }

    /// The seq a coalescing key points at.
    pub fn coalesce_target(&mut self, ck: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.keys()?.get(ck)?.map(|v| v.value()))
    }

    /// The envelope at `seq` and its raw length, if present and decodable.
    pub fn peek(&self, seq: u64) -> Result<Option<(Envelope, usize)>, StoreError> {
        let raw = match self.outbox.get(seq)? {
            Some(v) => v.value().to_vec(),
            None => return Ok(None),
        };
        Ok(decode_envelope(&raw).ok().map(|e| (e, raw.len())))
    }

    /// Inserts `env`, already encoded as `raw`, at `seq` (all indexes); accounts its bytes.
    pub fn insert_encoded(
        &mut self,
        meta: &mut OutboxMeta,
        seq: u64,
        env: &Envelope,
        raw: &[u8],
    ) -> Result<u64, StoreError> {
        let index = Index {
            fifo_key: &env.fifo_key,
            coalesce_key: env.coalesce_key.as_deref(),
            priority: env.priority,
            not_before_ms: env.not_before_ms,
        };
        self.insert_raw(meta, seq, raw, &index)
    }

    /// Inserts an encoded envelope at `seq` with its index entries; accounts its bytes.
    pub(crate) fn insert_raw(
        &mut self,
        meta: &mut OutboxMeta,
        seq: u64,
        raw: &[u8],
        index: &Index<'_>,
    ) -> Result<u64, StoreError> {
        let fp = footprint(raw.len(), index.fifo_key, index.coalesce_key);
        self.outbox.insert(seq, raw)?;
        self.fifo.insert((index.fifo_key, seq), ())?;
        self.sched.insert(
            (index.priority as u8, seq),
            (index.not_before_ms, index.fifo_key),
        )?;
        if let Some(ck) = index.coalesce_key {
            let keys = self.keys()?;
            // Keep the newest seq for a key (a re-queued dead letter may be older).
            let newer = keys.get(ck)?.map(|v| v.value()).filter(|&s| s > seq);
            if newer.is_none() {
                keys.insert(ck, seq)?;
            }
        }
        meta.bytes += fp;
        meta.count += 1;
        meta.next_seq = meta.next_seq.max(seq + 1);
        Ok(fp)
    }

    /// Removes the op at `seq` from every table and un-accounts it. Returns the envelope
    /// if it was there and decodable (an undecodable row is left for [`quarantine_row`]).
    pub fn remove(
        &mut self,
        meta: &mut OutboxMeta,
        seq: u64,
    ) -> Result<Option<Envelope>, StoreError> {
        let Some((env, len)) = self.peek(seq)? else {
            return Ok(None);
        };
        self.outbox.remove(seq)?;
        self.unindex(
            seq,
            env.priority as u8,
            &env.fifo_key,
            env.coalesce_key.as_deref(),
        )?;
        let fp = footprint(len, &env.fifo_key, env.coalesce_key.as_deref());
        meta.bytes = meta.bytes.saturating_sub(fp);
        meta.count = meta.count.saturating_sub(1);
        Ok(Some(env))
    }

    fn unindex(
        &mut self,
        seq: u64,
        priority: u8,
        fifo_key: &str,
        coalesce_key: Option<&str>,
    ) -> Result<(), StoreError> {
        self.fifo.remove((fifo_key, seq))?;
        self.sched.remove((priority, seq))?;
        if let Some(ck) = coalesce_key {
            let keys = self.keys()?;
            let points_here = keys.get(ck)?.map(|v| v.value()) == Some(seq);
            if points_here {
                keys.remove(ck)?;
            }
        }
        Ok(())
    }

    /// Rewrites the envelope at `seq` with `f`, keeping the indexes right. Returns the new
    /// envelope and the change in its encoded length, or `None` if it is gone.
    fn update(
        &mut self,
        seq: u64,
        f: impl FnOnce(&mut Envelope),
    ) -> Result<Option<(Envelope, i64)>, StoreError> {
        let Some((mut env, old_len)) = self.peek(seq)? else {
            return Ok(None);
        };
        let before = env.not_before_ms;
        f(&mut env);
        let raw = store::encode(self.q.outbox, &env)?;
        self.outbox.insert(seq, raw.as_slice())?;
        if env.not_before_ms != before {
            self.sched.insert(
                (env.priority as u8, seq),
                (env.not_before_ms, env.fifo_key.as_str()),
            )?;
        }
        Ok(Some((env, raw.len() as i64 - old_len as i64)))
    }

    /// Picks the oldest non-critical ops whose removal frees at least `need` bytes, never
    /// `keep`. Returns nothing if they cannot free enough (then nothing should be dropped).
    pub fn oldest_droppable(
        &self,
        need: u64,
        keep: Option<u64>,
    ) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut picked = Vec::new();
        let mut freed = 0u64;
        for row in self.outbox.iter()? {
            let (k, v) = row?;
            let seq = k.value();
            if Some(seq) == keep {
                continue;
            }
            let Ok(env) = decode_envelope(v.value()) else {
                continue;
            };
            if env.critical {
                continue;
            }
            let fp = footprint(v.value().len(), &env.fifo_key, env.coalesce_key.as_deref());
            picked.push((seq, fp));
            freed += fp;
            if freed >= need {
                return Ok(picked);
            }
        }
        Ok(Vec::new())
    }
}

/// Inserts a new envelope at `seq` (all indexes) and accounts its bytes in `meta`.
pub fn insert(
    q: &QueueTables,
    txn: &WriteTransaction,
    meta: &mut OutboxMeta,
    seq: u64,
    env: &Envelope,
) -> Result<u64, StoreError> {
    let raw = store::encode(q.outbox, env)?;
    Tables::open(q, txn)?.insert_encoded(meta, seq, env, &raw)
}

/// Removes the op at `seq` from every table and un-accounts it in `meta`.
pub fn remove(
    q: &QueueTables,
    txn: &WriteTransaction,
    meta: &mut OutboxMeta,
    seq: u64,
) -> Result<Option<Envelope>, StoreError> {
    Tables::open(q, txn)?.remove(meta, seq)
}

/// The envelope at `seq` and its raw length, if present and decodable.
pub fn peek(
    q: &QueueTables,
    txn: &WriteTransaction,
    seq: u64,
) -> Result<Option<(Envelope, usize)>, StoreError> {
    Tables::open(q, txn)?.peek(seq)
}

/// Records the delivery of `seq`: the op leaves the outbox in this transaction. `None` if
/// it was no longer there (replaced by a newer op, or dropped by an operator meanwhile).
pub fn complete(
    q: &QueueTables,
    txn: &WriteTransaction,
    seq: u64,
) -> Result<Option<Envelope>, StoreError> {
    let mut meta = load_meta(q, txn)?;
    let env = Tables::open(q, txn)?.remove(&mut meta, seq)?;
    if env.is_some() {
        save_meta(q, txn, &meta)?;
    }
    Ok(env)
}

/// Rewrites the envelope at `seq` with `f`, keeping the indexes and the byte count right.
/// `None` if it is gone.
pub fn update(
    q: &QueueTables,
    txn: &WriteTransaction,
    seq: u64,
    f: impl FnOnce(&mut Envelope),
) -> Result<Option<Envelope>, StoreError> {
    let Some((env, delta)) = Tables::open(q, txn)?.update(seq, f)? else {
        return Ok(None);
    };
    if delta != 0 {
        let mut meta = load_meta(q, txn)?;
        meta.bytes = meta.bytes.saturating_add_signed(delta);
        save_meta(q, txn, &meta)?;
    }
    Ok(Some(env))
}

/// Records a failed attempt (retry later, or an auth pause).
pub fn record_failure(
    q: &QueueTables,
    txn: &WriteTransaction,
    seq: u64,
    attempt: u32,
    reason: &str,
    not_before_ms: u64,
) -> Result<Option<Envelope>, StoreError> {
    let now = store::now_ms();
    update(q, txn, seq, |e| {
        e.attempts = e.attempts.max(attempt);
        e.last_error = Some(reason.to_owned());
        e.last_attempt_at_ms = Some(now);
        e.not_before_ms = not_before_ms;
    })
}

/// Moves `seq` to the dead-letter table with `reason`.
pub fn dead_letter(
    q: &QueueTables,
    txn: &WriteTransaction,
    seq: u64,
    attempt: u32,
    reason: &str,
) -> Result<Option<Envelope>, StoreError> {
    let mut meta = load_meta(q, txn)?;
    let Some(mut envelope) = Tables::open(q, txn)?.remove(&mut meta, seq)? else {
        return Ok(None);
    };
    save_meta(q, txn, &meta)?;
    let now = store::now_ms();
    envelope.attempts = envelope.attempts.max(attempt);
    envelope.last_error = Some(reason.to_owned());
    envelope.last_attempt_at_ms = Some(now);
    let dl = DeadLetter {
        envelope: envelope.clone(),
        reason: reason.to_owned(),
        at_ms: now,
    };
    store::put(txn, q.dead(), seq, &dl)?;
    Ok(Some(envelope))
}

/// Puts a dead letter back into the queue under its original seq (same idempotency key),
/// with its attempts reset. `None` if there is no such dead letter.
pub fn requeue_dead(
    q: &QueueTables,
    txn: &WriteTransaction,
    seq: u64,
) -> Result<Option<Envelope>, StoreError> {
    let raw = match txn.open_table(q.dead())?.remove(seq)? {
        Some(v) => v.value().to_vec(),
        None => return Ok(None),
    };
    let dl: DeadLetter = match postcard::from_bytes(&raw) {
        Ok(d) => d,
        Err(e) => {
            // Keep it aside instead of losing it.
            store::quarantine::insert(txn, q.dead_letter, &seq.to_string(), &e.to_string(), raw)?;
            return Err(StoreError::Corrupt {
                table: q.dead_letter.to_owned(),
                key: seq.to_string(),
            });
        }
    };
    let mut env = dl.envelope;
    env.attempts = 0;
    env.not_before_ms = 0;
    env.last_error = Some(format!("re-queued from dead letters (was: {})", dl.reason));
    let mut meta = load_meta(q, txn)?;
    insert(q, txn, &mut meta, seq, &env)?;
    save_meta(q, txn, &meta)?;
    Ok(Some(env))
}

/// Clears the backoff of a queued op so it is tried as soon as its key allows.
pub fn retry_now(
    q: &QueueTables,
    txn: &WriteTransaction,
    seq: u64,
) -> Result<Option<Envelope>, StoreError> {
    update(q, txn, seq, |e| e.not_before_ms = 0)
}

/// Deletes a dead letter for good.
pub fn drop_dead(
    q: &QueueTables,
    txn: &WriteTransaction,
    seq: u64,
) -> Result<Option<DeadLetter>, StoreError> {
    let raw = match txn.open_table(q.dead())?.remove(seq)? {
        Some(v) => v.value().to_vec(),
        None => return Ok(None),
    };
    Ok(Some(postcard::from_bytes(&raw).unwrap_or_else(|e| {
        DeadLetter {
            envelope: Envelope {
                kind: "?".into(),
                summary: "(undecodable)".into(),
                fifo_key: String::new(),
                coalesce_key: None,
                priority: Priority::Normal,
                critical: false,
                idempotency_key: String::new(),
                enqueued_at_ms: 0,
                attempts: 0,
                last_error: None,
                last_attempt_at_ms: None,
                not_before_ms: 0,
                replaced: None,
                op: Vec::new(),
            },
            reason: e.to_string(),
            at_ms: 0,
        }
    })))
}

/// Moves an outbox row whose envelope or op does not decode to the quarantine table,
/// clearing its index entries and bytes. `fifo_key`/`priority` come from the sched index.
pub fn quarantine_row(
    q: &QueueTables,
    txn: &WriteTransaction,
    seq: u64,
    priority: u8,
    fifo_key: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    let raw = {
        let mut t = Tables::open(q, txn)?;
        let raw = t.outbox.remove(seq)?.map(|v| v.value().to_vec());
        let ck = raw
            .as_deref()
            .and_then(|r| decode_envelope(r).ok())
            .and_then(|e| e.coalesce_key);
        t.unindex(seq, priority, fifo_key, ck.as_deref())?;
        raw.map(|r| (r, ck))
    };
    let Some((raw, ck)) = raw else {
        return Ok(false);
    };
    let mut meta = load_meta(q, txn)?;
    meta.bytes = meta
        .bytes
        .saturating_sub(footprint(raw.len(), fifo_key, ck.as_deref()));
    meta.count = meta.count.saturating_sub(1);
    save_meta(q, txn, &meta)?;
    store::quarantine::insert(txn, q.outbox, &seq.to_string(), reason, raw)?;
    Ok(true)
}

/// An op the dispatcher may start now.
#[derive(Debug)]
pub struct Ready {
    /// Its seq.
    pub seq: u64,
    /// Its envelope.
    pub envelope: Envelope,
}

/// A row the scan found broken (missing or undecodable behind its index entries).
#[derive(Debug)]
pub struct Broken {
    /// Its seq.
    pub seq: u64,
    /// Its priority from the index.
    pub priority: u8,
    /// Its FIFO key from the index.
    pub fifo_key: String,
    /// What is wrong.
    pub reason: String,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Ops to start, best first.
    pub ready: Vec<Ready>,
    /// Rows to quarantine.
    pub broken: Vec<Broken>,
    /// The earliest `not_before` among heads still backing off (Unix ms).
    pub next_due_ms: Option<u64>,
    /// Whether the budget ran out before the index did.
    pub truncated: bool,
    /// Where the next scan should start when the budget ran out.
    pub resume_at: Option<(u8, u64)>,
}

/// Whether an op with `not_before_ms` may be tried at `now_ms`. A `not_before` further
/// ahead than `horizon_ms` can only come from a clock that jumped back (a gateway that
/// booted with a wrong RTC), so it counts as due rather than stalling the key for years.
pub fn is_due(not_before_ms: u64, now_ms: u64, horizon_ms: u64) -> bool {
    not_before_ms <= now_ms || not_before_ms > now_ms.saturating_add(horizon_ms)
}

/// Finds up to `want` ops that may start now: heads of their FIFO key, not in `busy`, due.
/// Walks the scheduling index in (priority, seq) order from `from` (wrapping round to the
/// start), looking at most `budget` entries, so memory and time stay bounded whatever the
/// backlog. When the budget runs out, [`Scan::resume_at`] says where the next scan should
/// go on, so a long run of blocked ops cannot hide the ops behind it.
#[allow(clippy::too_many_arguments)] // one scan's inputs, all needed; bundling adds nothing
pub fn scan(
    q: &QueueTables,
    txn: &ReadTransaction,
    want: usize,
    busy: &HashSet<String>,
    now_ms: u64,
    horizon_ms: u64,
    budget: usize,
    from: Option<(u8, u64)>,
) -> Result<Scan, StoreError> {
    let mut out = Scan::default();
    if want == 0 {
        return Ok(out);
    }
    let (Some(sched), Some(fifo), Some(rows)) = (
        read_table(txn, q.sched())?,
        read_table(txn, q.fifo())?,
        read_table(txn, q.rows())?,
    ) else {
        // Nothing was ever enqueued.
        return Ok(out);
    };
    let mut blocked: HashSet<String> = HashSet::new();
    // The head of each FIFO key looked up so far. A key's ops may have different priorities
    // (a Normal refund report queued before an Urgent shipment of the same trade), so an op
    // that is not its key's head must not block the key: the head comes up in its own turn.
    let mut heads: std::collections::HashMap<String, Option<u64>> =
        std::collections::HashMap::new();
    let (first, second) = match from {
        Some(f) => (sched.range(f..)?, Some(sched.range(..f)?)),
        None => (sched.range(..)?, None),
    };
    for (looked, entry) in first.chain(second.into_iter().flatten()).enumerate() {
        let (k, v) = entry?;
        let (priority, seq) = k.value();
        if looked >= budget {
            out.truncated = true;
            out.resume_at = Some((priority, seq));
            break;
        }
        let (not_before, key) = v.value();
        if busy.contains(key) || blocked.contains(key) {
            continue;
        }
        let head = match heads.get(key) {
            Some(h) => *h,
            None => {
                let h = fifo
                    .range((key, 0u64)..=(key, u64::MAX))?
                    .next()
                    .transpose()?
                    .map(|(k, _)| k.value().1);
                heads.insert(key.to_owned(), h);
                h
            }
        };
        if head != Some(seq) {
            // An older op of the same key is still queued: this one waits its turn.
            continue;
        }
        if !is_due(not_before, now_ms, horizon_ms) {
            out.next_due_ms = Some(out.next_due_ms.map_or(not_before, |d| d.min(not_before)));
            blocked.insert(key.to_owned());
            continue;
        }
        blocked.insert(key.to_owned());
        let raw = rows.get(seq)?.map(|v| v.value().to_vec());
        match raw.as_deref().map(decode_envelope) {
            Some(Ok(envelope)) => out.ready.push(Ready { seq, envelope }),
            Some(Err(e)) => out.broken.push(Broken {
                seq,
                priority,
                fifo_key: key.to_owned(),
                reason: format!("envelope does not decode: {e}"),
            }),
            None => out.broken.push(Broken {
                seq,
                priority,
                fifo_key: key.to_owned(),
                reason: "index entry without a row".into(),
            }),
        }
        if out.ready.len() + out.broken.len() >= want {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_envelope_encodes_as_the_envelope() {
        let env = Envelope {
            kind: "ship".into(),
            summary: "tid 1 waybill YT1".into(),
            fifo_key: "trade:1".into(),
            coalesce_key: Some("stock:1:2".into()),
            priority: Priority::Urgent,
            critical: true,
            idempotency_key: "0011223344556677-9".into(),
            enqueued_at_ms: 1_700_000_000_123,
            attempts: 3,
            last_error: Some("isp.overload".into()),
            last_attempt_at_ms: Some(1_700_000_000_456),
            not_before_ms: 1_700_000_001_000,
            replaced: Some(7),
            op: vec![1, 2, 3, 250, 0],
        };
        let borrowed = EnvelopeRef {
            kind: &env.kind,
            summary: &env.summary,
            fifo_key: &env.fifo_key,
            coalesce_key: env.coalesce_key.as_deref(),
            priority: env.priority,
            critical: env.critical,
            idempotency_key: &env.idempotency_key,
            enqueued_at_ms: env.enqueued_at_ms,
            attempts: env.attempts,
            last_error: env.last_error.as_deref(),
            last_attempt_at_ms: env.last_attempt_at_ms,
            not_before_ms: env.not_before_ms,
            replaced: env.replaced,
            op: &env.op,
        };
        let a = postcard::to_allocvec(&env).unwrap();
        let b = postcard::to_allocvec(&borrowed).unwrap();
        assert_eq!(a, b);
        assert_eq!(decode_envelope(&b).unwrap(), env);
        let none = EnvelopeRef {
            coalesce_key: None,
            last_error: None,
            last_attempt_at_ms: None,
            replaced: None,
            ..borrowed
        };
        let env_none = Envelope {
            coalesce_key: None,
            last_error: None,
            last_attempt_at_ms: None,
            replaced: None,
            ..env.clone()
        };
        assert_eq!(
            postcard::to_allocvec(&none).unwrap(),
            postcard::to_allocvec(&env_none).unwrap()
        );
    }
}
