//! Typed postcard values in redb tables, and the per-transaction context that lets a failed
//! decode be quarantined and a committed write run its hooks.
//!
//! Every module reads and writes its records through [`put`] / [`get`] / [`decode`]. A value
//! that does not decode never panics: the caller gets [`StoreError::Corrupt`], and the record
//! is queued for the quarantine table. The queue belongs to the [`Store`](super::Store) whose
//! `read` or `write` is running on this thread (a thread-local set for the duration of the
//! closure), and the store's writer moves the record in its next transaction, re-checking
//! that it still does not decode.

use super::StoreError;
use redb::{Key, ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::{Serialize, de::DeserializeOwned};
use std::borrow::Borrow;
use std::cell::RefCell;
use std::sync::{Arc, Mutex};

/// The value type of every postcard table.
pub type Bytes = &'static [u8];

/// Moves one undecodable record out of its table: returns its raw bytes if it is still
/// there and still does not decode, `None` if it was fixed or removed in the meantime.
pub(crate) type Evict =
    Box<dyn FnMut(&WriteTransaction) -> Result<Option<Vec<u8>>, StoreError> + Send>;

/// A record waiting to be moved to the quarantine table.
pub(crate) struct PendingQuarantine {
    pub table: String,
    pub key: String,
    pub reason: String,
    pub evict: Evict,
}

/// Records found undecodable by readers, waiting for the writer.
#[derive(Default)]
pub(crate) struct QuarantineQueue {
    pending: Mutex<Vec<PendingQuarantine>>,
}

impl QuarantineQueue {
    pub fn push(&self, p: PendingQuarantine) {
        let mut v = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // One entry per record is enough, however often it is read.
        if !v.iter().any(|q| q.table == p.table && q.key == p.key) {
            v.push(p);
        }
    }
    pub fn take(&self) -> Vec<PendingQuarantine> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }
    pub fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// A hook run once after the transaction it was registered in is durable.
pub(crate) type Hook = Box<dyn FnOnce() + Send>;

struct Context {
    quarantine: Arc<QuarantineQueue>,
    /// `Some` only inside a write: hooks to run after the commit.
    hooks: Option<Vec<Hook>>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Context>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's context set to `quarantine` (and, for writes, a hook list),
/// restoring whatever was there before (reads may nest inside writes).
pub(crate) fn with_context<R>(
    quarantine: &Arc<QuarantineQueue>,
    write: bool,
    f: impl FnOnce() -> R,
) -> R {
    let previous = CONTEXT.with(|c| {
        c.borrow_mut().replace(Context {
            quarantine: quarantine.clone(),
            hooks: write.then(Vec::new),
        })
    });
    struct Restore(Option<Option<Context>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(prev) = self.0.take() {
                CONTEXT.with(|c| *c.borrow_mut() = prev);
            }
        }
    }
    let _restore = Restore(Some(previous));
    f()
}

/// The number of hooks registered so far in this write (to drop a failed closure's hooks).
pub(crate) fn hooks_len() -> usize {
    CONTEXT.with(|c| {
        c.borrow()
            .as_ref()
            .and_then(|c| c.hooks.as_ref())
            .map_or(0, Vec::len)
    })
}

/// Drops the hooks registered after the first `len`.
pub(crate) fn truncate_hooks(len: usize) {
    CONTEXT.with(|c| {
        if let Some(h) = c.borrow_mut().as_mut().and_then(|c| c.hooks.as_mut()) {
            h.truncate(len);
        }
    });
}

/// Takes every hook registered in this write.
pub(crate) fn take_hooks() -> Vec<Hook> {
    CONTEXT.with(|c| {
        c.borrow_mut()
            .as_mut()
            .and_then(|c| c.hooks.as_mut())
            .map(std::mem::take)
            .unwrap_or_default()
    })
}

/// Runs `hook` once the write transaction currently running on this thread is durable (it
/// is dropped if that transaction is aborted). Called from inside a [`Store::write`]
/// closure; outside one there is no transaction to wait for and the hook runs at once.
///
/// Hooks run on the writer thread: they must be quick and must not block (notify a task,
/// bump a metric, raise an alert).
///
/// [`Store::write`]: super::Store::write
pub fn after_commit(hook: impl FnOnce() + Send + 'static) {
    let hook: Hook = Box::new(hook);
    let leftover = CONTEXT.with(
        |c| match c.borrow_mut().as_mut().and_then(|c| c.hooks.as_mut()) {
            Some(hooks) => {
                hooks.push(hook);
                None
            }
            None => Some(hook),
        },
    );
    if let Some(hook) = leftover {
        hook();
    }
}

/// Encodes `value` with postcard and stores it under `key`.
pub fn put<'k, K: Key + 'static, T: Serialize + ?Sized>(
    txn: &WriteTransaction,
    table: TableDefinition<'static, K, Bytes>,
    key: impl Borrow<K::SelfType<'k>>,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = encode(table.name(), value)?;
    put_bytes::<K>(txn, table, key.borrow(), &bytes)
}

/// The table half of [`put`], one copy per key type rather than per key and value type.
fn put_bytes<K: Key + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<'static, K, Bytes>,
    key: &K::SelfType<'_>,
    bytes: &[u8],
) -> Result<(), StoreError> {
    let mut t = txn.open_table(table)?;
    t.insert(key, bytes)?;
    Ok(())
}

/// Encodes a value for `table` (named in the error).
pub fn encode<T: Serialize + ?Sized>(table: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|source| StoreError::Encode {
        table: table.to_owned(),
        source,
    })
}

/// Removes `key`; tells whether it was there.
pub fn delete<'k, K: Key + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<'static, K, Bytes>,
    key: impl Borrow<K::SelfType<'k>>,
) -> Result<bool, StoreError> {
    let mut t = txn.open_table(table)?;
    let was = t.remove(key)?.is_some();
    Ok(was)
}

/// A transaction that can read a table: both read and write transactions.
pub trait ReadTxn: sealed::Sealed {
    /// The raw bytes under `key`, or `None` (also when the table does not exist yet).
    fn get_raw<'k, K: Key + 'static>(
        &self,
        table: TableDefinition<'static, K, Bytes>,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<Vec<u8>>, StoreError>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for redb::ReadTransaction {}
    impl Sealed for redb::WriteTransaction {}
}

impl ReadTxn for redb::ReadTransaction {
    fn get_raw<'k, K: Key + 'static>(
        &self,
        table: TableDefinition<'static, K, Bytes>,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let t = match self.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }
}

impl ReadTxn for redb::WriteTransaction {
    fn get_raw<'k, K: Key + 'static>(
        &self,
        table: TableDefinition<'static, K, Bytes>,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.open_table(table)?;
        let v = t.get(key)?.map(|v| v.value().to_vec());
        Ok(v)
    }
}

/// Reads and decodes the value under `key`. An undecodable value yields
/// [`StoreError::Corrupt`] and is queued for quarantine.
pub fn get<'k, K: Key + 'static, T: DeserializeOwned>(
    txn: &impl ReadTxn,
    table: TableDefinition<'static, K, Bytes>,
    key: impl Borrow<K::SelfType<'k>>,
) -> Result<Option<T>, StoreError> {
    let key = key.borrow();
    match txn.get_raw(table, key)? {
        None => Ok(None),
        Some(bytes) => decode(table, key, &bytes).map(Some),
    }
}

/// Decodes a value read from `table` under `key` (for callers that iterate a range). An
/// undecodable value yields [`StoreError::Corrupt`] and is queued for quarantine.
pub fn decode<K: Key + 'static, T: DeserializeOwned>(
    table: TableDefinition<'static, K, Bytes>,
    key: &K::SelfType<'_>,
    bytes: &[u8],
) -> Result<T, StoreError> {
    match postcard::from_bytes::<T>(bytes) {
        Ok(v) => Ok(v),
        Err(e) => Err(undecodable::<K>(table, key, e, |b| {
            postcard::from_bytes::<T>(b).is_err()
        })),
    }
}

/// The failure half of [`decode`], one copy per key type rather than per key and value type:
/// queues the record for quarantine and names it in the error.
fn undecodable<K: Key + 'static>(
    table: TableDefinition<'static, K, Bytes>,
    key: &K::SelfType<'_>,
    error: postcard::Error,
    still_broken: fn(&[u8]) -> bool,
) -> StoreError {
    let key_bytes = K::as_bytes(key).as_ref().to_vec();
    let shown = show_key::<K>(&key_bytes);
    report_undecodable(
        table,
        key_bytes,
        shown.clone(),
        error.to_string(),
        still_broken,
    );
    StoreError::Corrupt {
        table: table.name().to_owned(),
        key: shown,
    }
}

/// Queues a record for quarantine without decoding it (for modules that found it broken
/// some other way, e.g. an index pointing at a broken row). `still_broken` tells the writer
/// whether the value it finds is still bad when it moves it.
pub fn report_undecodable<K: Key + 'static>(
    table: TableDefinition<'static, K, Bytes>,
    key_bytes: Vec<u8>,
    shown: String,
    reason: String,
    still_broken: fn(&[u8]) -> bool,
) {
    // Only `Send` data and a function pointer are captured, whatever `K` is.
    let name = table.name().to_owned();
    let evict_fn: EvictFn = evict_record::<K>;
    let evict: Evict = {
        let name = name.clone();
        Box::new(move |txn: &WriteTransaction| evict_fn(txn, &name, &key_bytes, still_broken))
    };
    let pending = PendingQuarantine {
        table: name,
        key: shown.clone(),
        reason,
        evict,
    };
    let queued = CONTEXT.with(|c| match c.borrow().as_ref() {
        Some(ctx) => {
            ctx.quarantine.push(pending);
            true
        }
        None => false,
    });
    if !queued {
        // Read through a raw transaction, not through a Store: nobody to hand it to.
        tracing::warn!(
            table = table.name(),
            key = %shown,
            "undecodable record found outside a store transaction; not quarantined"
        );
    }
}

type EvictResult = Result<Option<Vec<u8>>, StoreError>;
type EvictFn = fn(&WriteTransaction, &str, &[u8], fn(&[u8]) -> bool) -> EvictResult;

fn evict_record<K: Key + 'static>(
    txn: &WriteTransaction,
    name: &str,
    key_bytes: &[u8],
    still_broken: fn(&[u8]) -> bool,
) -> EvictResult {
    let mut t = txn.open_table(TableDefinition::<K, Bytes>::new(name))?;
    let key = K::from_bytes(key_bytes);
    let raw = match t.get(&key)? {
        Some(v) => v.value().to_vec(),
        None => return Ok(None),
    };
    if !still_broken(&raw) {
        return Ok(None);
    }
    t.remove(&key)?;
    Ok(Some(raw))
}

/// A key printed for logs and the quarantine table: strings and integers as themselves,
/// anything else as hex.
pub(crate) fn show_key<K: Key + 'static>(key_bytes: &[u8]) -> String {
    let name = K::type_name();
    if name == <&str as redb::Value>::type_name() {
        match std::str::from_utf8(key_bytes) {
            Ok(s) => s.to_owned(),
            Err(_) => hex::encode(key_bytes),
        }
    } else if name == <u64 as redb::Value>::type_name() && key_bytes.len() == 8 {
        let mut b = [0u8; 8];
        b.copy_from_slice(key_bytes);
        u64::from_le_bytes(b).to_string()
    } else {
        hex::encode(key_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_print_as_strings_integers_or_hex() {
        assert_eq!(show_key::<&str>(b"trade:42"), "trade:42");
        assert_eq!(show_key::<u64>(&7u64.to_le_bytes()), "7");
        assert_eq!(show_key::<(u8, u64)>(&[1, 2]), "0102");
    }

    #[test]
    fn a_hook_outside_a_write_runs_at_once() {
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ran.clone();
        after_commit(move || r.store(true, std::sync::atomic::Ordering::SeqCst));
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[test]
    fn hooks_of_a_failed_closure_can_be_dropped() {
        let q = Arc::new(QuarantineQueue::default());
        let n = with_context(&q, true, || {
            after_commit(|| {});
            let mark = hooks_len();
            after_commit(|| {});
            truncate_hooks(mark);
            take_hooks().len()
        });
        assert_eq!(n, 1);
    }
}
