//! Device event dedupe: the answer the node gave to each `(device, msg_id)`, kept for at least
//! the retention (24 h or more), across restarts.
//!
//! Devices re-send: a bridge after a reconnect, a scanner whose operator scanned again because
//! the beep was slow, a microcontroller whose link restarted. Every event carries a `msg_id`
//! unique per device (DOMAIN.md §12.2), and the node applies an event at most once: the first
//! time, the flow's effect and the answer are written in the same transaction; every later
//! copy finds the answer here and gets exactly the same bytes back, without running the flow.
//!
//! ```text
//!  wms_device_msgs         "scanner/sc-01/<msg_id>"  ─▶ postcard Seen { at_ms, answer (JSON) }
//!  wms_device_msgs_by_age  (at_ms, "scanner/sc-01/<msg_id>") ─▶ ()      (expiry, oldest first)
//! ```
//!
//! The device part of the key is `{class}/{id}` because ids are unique per class only; neither
//! contains `/` (the topic rule), so the key is unambiguous whatever the `msg_id` holds.
//! [`expire`] removes entries older than the retention in bounded batches; a restart never
//! shortens what is kept.
//!
//! Must never: answer a duplicate with anything but the original bytes, or forget an answer
//! younger than the retention.

use crate::store::{self, Bytes, ReadTxn, StoreError};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// Answers by `{class}/{id}/{msg_id}`.
pub const DEVICE_MSGS: TableDefinition<&str, Bytes> = TableDefinition::new("wms_device_msgs");

/// The same entries by age, for expiry.
pub const DEVICE_MSGS_BY_AGE: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("wms_device_msgs_by_age");

/// The shortest retention the node accepts (DOMAIN.md §12.2: at least 24 h).
pub const MIN_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// What the node answered, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// When the event was first applied (ms since the Unix epoch).
    pub at_ms: u64,
    /// The exact payload of the answer (a `feedback`), empty when the event needed none.
    pub answer: Vec<u8>,
}

/// The table key of one event of one device (`device` is `{class}/{id}`).
pub fn key(device: &str, msg_id: &str) -> String {
    let mut k = String::with_capacity(device.len() + msg_id.len() + 1);
    k.push_str(device);
    k.push('/');
    k.push_str(msg_id);
    k
}

/// The answer given to `(device, msg_id)`, if the event was applied within the retention.
pub fn seen(txn: &impl ReadTxn, device: &str, msg_id: &str) -> Result<Option<Seen>, StoreError> {
    store::get(txn, DEVICE_MSGS, key(device, msg_id).as_str())
}

/// Records the answer to `(device, msg_id)`, applied at `now_ms`, in the transaction that
/// applies the event's effect.
pub fn remember(
    txn: &WriteTransaction,
    device: &str,
    msg_id: &str,
    answer: &[u8],
    now_ms: u64,
) -> Result<(), StoreError> {
    let k = key(device, msg_id);
    let seen = Seen {
        at_ms: now_ms,
        answer: answer.to_vec(),
    };
    store::put(txn, DEVICE_MSGS, k.as_str(), &seen)?;
    let mut by_age = txn.open_table(DEVICE_MSGS_BY_AGE)?;
    by_age.insert((now_ms, k.as_str()), ())?;
    Ok(())
}

/// Forgets up to `max` entries applied before `cutoff_ms` (oldest first); returns how many.
/// Call with `cutoff_ms = now − retention`, repeatedly while it returns `max`.
pub fn expire(txn: &WriteTransaction, cutoff_ms: u64, max: usize) -> Result<usize, StoreError> {
    let mut by_age = txn.open_table(DEVICE_MSGS_BY_AGE)?;
    let mut msgs = txn.open_table(DEVICE_MSGS)?;
    let mut old: Vec<(u64, String)> = Vec::new();
    for entry in by_age.range((0u64, "")..(cutoff_ms, ""))? {
        let (k, _) = entry?;
        let (at, key) = k.value();
        old.push((at, key.to_owned()));
        if old.len() >= max {
            break;
        }
    }
    for (at, key) in &old {
        by_age.remove((*at, key.as_str()))?;
        // A newer copy of the same key (an id reused after expiry) keeps its entry.
        let newer = match msgs.get(key.as_str())? {
            Some(v) => postcard::from_bytes::<Seen>(v.value()).is_ok_and(|s| s.at_ms > *at),
            None => true,
        };
        if !newer {
            msgs.remove(key.as_str())?;
        }
    }
    Ok(old.len())
}

/// How many answers are kept (for the status page and tests).
pub fn count(txn: &impl ReadTxnTables) -> Result<u64, StoreError> {
    txn.len_of(DEVICE_MSGS)
}

/// Counting rows of a table that may not exist yet, for read and write transactions.
pub trait ReadTxnTables {
    /// Rows in `table`; 0 when it does not exist.
    fn len_of(
        &self,
        table: TableDefinition<'static, &'static str, Bytes>,
    ) -> Result<u64, StoreError>;
}

impl ReadTxnTables for redb::ReadTransaction {
    fn len_of(
        &self,
        table: TableDefinition<'static, &'static str, Bytes>,
    ) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        match self.open_table(table) {
            Ok(t) => Ok(t.len()?),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

impl ReadTxnTables for WriteTransaction {
    fn len_of(
        &self,
        table: TableDefinition<'static, &'static str, Bytes>,
    ) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata;
        Ok(self.open_table(table)?.len()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Alerts;
    use crate::store::{Store, StoreOptions};

    fn store(dir: &std::path::Path) -> Store {
        Store::open(StoreOptions::new(dir.join("s.redb")), Alerts::new()).unwrap()
    }

    const HOUR: u64 = 60 * 60 * 1000;

    #[test]
    fn an_answer_is_found_again_with_the_same_bytes_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.write_blocking(|txn| remember(txn, "scanner/sc-1", "m-1", b"{\"ok\":true}", 1_000))
            .unwrap();
        drop(s);
        let s = store(dir.path());
        let found = s.read(|r| seen(r, "scanner/sc-1", "m-1")).unwrap().unwrap();
        assert_eq!(found.answer, b"{\"ok\":true}");
        assert_eq!(found.at_ms, 1_000);
        // Ids are unique per class only: the printer with the same id is another device.
        assert_eq!(s.read(|r| seen(r, "printer/sc-1", "m-1")).unwrap(), None);
    }

    #[test]
    fn a_fresh_store_has_seen_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        assert_eq!(s.read(|r| seen(r, "scanner/a", "m")).unwrap(), None);
        assert_eq!(s.read(count).unwrap(), 0);
    }

    #[test]
    fn expiry_forgets_only_what_is_older_than_the_cutoff_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.write_blocking(|txn| {
            for i in 0..5u64 {
                remember(txn, "scanner/a", &format!("old-{i}"), b"x", i * HOUR)?;
            }
            remember(txn, "scanner/a", "new", b"y", 30 * HOUR)
        })
        .unwrap();
        let cutoff = 30 * HOUR - MIN_RETENTION_MS; // 6 h: the five old ones are older
        assert_eq!(s.write_blocking(move |t| expire(t, cutoff, 3)).unwrap(), 3);
        assert_eq!(s.write_blocking(move |t| expire(t, cutoff, 3)).unwrap(), 2);
        assert_eq!(s.write_blocking(move |t| expire(t, cutoff, 3)).unwrap(), 0);
        assert_eq!(s.read(count).unwrap(), 1);
        assert!(s.read(|r| seen(r, "scanner/a", "new")).unwrap().is_some());
        assert!(s.read(|r| seen(r, "scanner/a", "old-4")).unwrap().is_none());
    }

    #[test]
    fn the_device_part_of_a_key_is_always_its_first_two_segments() {
        // Class and id hold no '/' (the topic rule), so whatever the msg_id holds, the key's
        // first two segments name the device and nothing else can produce the same key.
        assert!(firmware_bridge::proto::topic::check_segment("id", "a/b").is_err());
        let k = key("scanner/a", "b/c");
        let mut parts = k.splitn(3, '/');
        assert_eq!(
            (parts.next(), parts.next(), parts.next()),
            (Some("scanner"), Some("a"), Some("b/c"))
        );
    }
}
