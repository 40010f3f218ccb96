//! The alerts' tables: the active alerts, the bounded history, and what people were last told
//! about each `(code, subject)`.
//!
//! ```text
//! alerts          u64 episode id  -> postcard(StoredAlert)   the active alerts
//! alert_history   u64 episode id  -> postcard(StoredAlert)   resolved, the newest `history`
//! alert_notices   key string      -> postcard(Announced)     per key: announced? when?
//! alert_outbox…   the notice queue (outbox tables, see `outbox::QueueTables`)
//! ```
//!
//! The tables are created by the first write (the notifier's, at start), so a store of an
//! older build gains them without a migration and an older build ignores them. Codes are kept
//! by their stable number, never by the enum's position. A row that does not decode (or names
//! a code this build does not know: a newer build wrote it) is skipped and logged, never a
//! panic; it stays in the table for the build that knows it.

use crate::alert::{Alert, AlertCode, AlertKey, Severity, Subject};
use crate::store::{Bytes, StoreError};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// The active alerts, by episode id.
pub const ALERTS: TableDefinition<u64, Bytes> = TableDefinition::new("alerts");
/// Resolved alerts, by episode id (ids increase, so the first rows are the oldest).
pub const HISTORY: TableDefinition<u64, Bytes> = TableDefinition::new("alert_history");
/// What people were last told, by [`key_string`].
pub const NOTICES: TableDefinition<&str, Bytes> = TableDefinition::new("alert_notices");

/// An alert as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAlert {
    /// Episode id.
    pub id: u64,
    /// [`AlertCode::number`].
    pub code: u16,
    /// [`Severity`] (append-only enum, so its index is stable).
    pub severity: Severity,
    /// Subject kind and id.
    pub subject: Option<(String, String)>,
    /// Message.
    pub message: String,
    /// First seen (Unix ms).
    pub first_seen_ms: u64,
    /// Last seen (Unix ms).
    pub last_seen_ms: u64,
    /// Times raised.
    pub count: u64,
    /// Resolved (Unix ms).
    pub resolved_ms: Option<u64>,
}

impl From<&Alert> for StoredAlert {
    fn from(a: &Alert) -> Self {
        StoredAlert {
            id: a.id,
            code: a.code.number(),
            severity: a.severity,
            subject: a.subject.as_ref().map(|s| (s.kind.clone(), s.id.clone())),
            message: a.message.clone(),
            first_seen_ms: a.first_seen_ms,
            last_seen_ms: a.last_seen_ms,
            count: a.count,
            resolved_ms: a.resolved_ms,
        }
    }
}

impl StoredAlert {
    /// The alert, if this build knows its code.
    pub fn to_alert(&self) -> Option<Alert> {
        Some(Alert {
            id: self.id,
            code: AlertCode::from_number(self.code)?,
            severity: self.severity,
            subject: self.subject.as_ref().map(|(k, i)| Subject {
                kind: k.clone(),
                id: i.clone(),
            }),
            message: self.message.clone(),
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            count: self.count,
            resolved_ms: self.resolved_ms,
        })
    }
}

/// What people were last told about one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    /// [`AlertCode::number`].
    pub code: u16,
    /// Subject kind and id.
    pub subject: Option<(String, String)>,
    /// The severity it was announced as active with; `None`: not active as far as people
    /// know (never announced, or its resolution was sent).
    pub severity: Option<Severity>,
    /// When the last notice about it was queued (Unix ms); 0 if never.
    pub at_ms: u64,
}

impl Announced {
    /// Nothing told yet about `key`.
    pub fn none(key: &AlertKey) -> Announced {
        Announced {
            code: key.code.number(),
            subject: key.subject.as_ref().map(|s| (s.kind.clone(), s.id.clone())),
            severity: None,
            at_ms: 0,
        }
    }

    /// Its key, if this build knows the code.
    pub fn key(&self) -> Option<AlertKey> {
        Some(AlertKey {
            code: AlertCode::from_number(self.code)?,
            subject: self.subject.as_ref().map(|(k, i)| Subject {
                kind: k.clone(),
                id: i.clone(),
            }),
        })
    }
}

/// The notices table's key of `key`: the code's number, then kind and id. The parts cannot
/// run together: the number has a fixed width and kinds hold no space.
pub fn key_string(key: &AlertKey) -> String {
    match &key.subject {
        Some(s) => format!("{:05} {} {}", key.code.number(), s.kind, s.id),
        None => format!("{:05}", key.code.number()),
    }
}

/// What the store holds, as read at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The active alerts.
    pub active: Vec<Alert>,
    /// The newest `history` resolved alerts, oldest first.
    pub history: Vec<Alert>,
    /// What people were last told, per key.
    pub notices: Vec<(AlertKey, Announced)>,
    /// One past the largest episode id seen.
    pub next_id: u64,
}

/// Creates the tables (the first write does; see the module doc).
pub fn create(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(ALERTS)?;
    txn.open_table(HISTORY)?;
    txn.open_table(NOTICES)?;
    super::ALERT_QUEUE.tables.create(txn)
}

/// Reads what the store holds (tables that do not exist yet read as empty).
pub fn load(r: &redb::ReadTransaction, history: usize) -> Result<Loaded, StoreError> {
    let mut out = Loaded::default();
    let mut next_id = 0u64;
    let mut skipped = 0usize;
    let mut decode = |table: &str, raw: &[u8]| -> Option<Alert> {
        match postcard::from_bytes::<StoredAlert>(raw) {
            Ok(s) => {
                next_id = next_id.max(s.id.saturating_add(1));
                let a = s.to_alert();
                if a.is_none() {
                    skipped += 1;
                }
                a
            }
            Err(e) => {
                tracing::warn!(table, error = %e, "an alert record does not decode; skipped");
                skipped += 1;
                None
            }
        }
    };
    if let Some(t) = open(r, ALERTS)? {
        for row in t.iter()? {
            let (_, v) = row?;
            if let Some(a) = decode("alerts", v.value()) {
                out.active.push(a);
            }
        }
    }
    if let Some(t) = open(r, HISTORY)? {
        let len = usize::try_from(t.len()?).unwrap_or(usize::MAX);
        for row in t.iter()?.skip(len.saturating_sub(history)) {
            let (_, v) = row?;
            if let Some(a) = decode("alert_history", v.value()) {
                out.history.push(a);
            }
        }
        if let Some(Ok((k, _))) = t.last().transpose() {
            next_id = next_id.max(k.value().saturating_add(1));
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "alert records of codes this build does not know were left as they are"
        );
    }
    if let Some(t) = open_str(r, NOTICES)? {
        for row in t.iter()? {
            let (_, v) = row?;
            if let Ok(a) = postcard::from_bytes::<Announced>(v.value())
                && let Some(k) = a.key()
            {
                out.notices.push((k, a));
            }
        }
    }
    out.next_id = next_id;
    Ok(out)
}

fn open(
    r: &redb::ReadTransaction,
    t: TableDefinition<'static, u64, Bytes>,
) -> Result<Option<redb::ReadOnlyTable<u64, Bytes>>, StoreError> {
    match r.open_table(t) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn open_str(
    r: &redb::ReadTransaction,
    t: TableDefinition<'static, &'static str, Bytes>,
) -> Result<Option<redb::ReadOnlyTable<&'static str, Bytes>>, StoreError> {
    match r.open_table(t) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the latest snapshot of changed episodes: an active one is upserted, a resolved one
/// moves to the history, which keeps its newest `history` rows.
pub fn persist(
    txn: &WriteTransaction,
    changed: &[Alert],
    history: usize,
) -> Result<(), StoreError> {
    let mut active = txn.open_table(ALERTS)?;
    let mut hist = txn.open_table(HISTORY)?;
    for a in changed {
        let raw = crate::store::encode("alerts", &StoredAlert::from(a))?;
        if a.is_active() {
            active.insert(a.id, raw.as_slice())?;
        } else {
            active.remove(a.id)?;
            hist.insert(a.id, raw.as_slice())?;
        }
    }
    let len = usize::try_from(hist.len()?).unwrap_or(usize::MAX);
    for _ in history..len {
        if hist.pop_first()?.is_none() {
            break;
        }
    }
    Ok(())
}

/// What people were last told about `key`.
pub fn announced(txn: &WriteTransaction, key: &AlertKey) -> Result<Announced, StoreError> {
    let t = txn.open_table(NOTICES)?;
    let v = t.get(key_string(key).as_str())?;
    Ok(v.and_then(|v| postcard::from_bytes(v.value()).ok())
        .unwrap_or_else(|| Announced::none(key)))
}

/// Records what people were told about `key`.
pub fn set_announced(
    txn: &WriteTransaction,
    key: &AlertKey,
    a: &Announced,
) -> Result<(), StoreError> {
    let raw = crate::store::encode("alert_notices", a)?;
    txn.open_table(NOTICES)?
        .insert(key_string(key).as_str(), raw.as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_strings_are_distinct_and_keep_the_code_first() {
        let k = |code, s: Option<Subject>| AlertKey { code, subject: s };
        let a = key_string(&k(AlertCode::DeadLetter, None));
        let b = key_string(&k(AlertCode::DeadLetter, Some(Subject::op_kind("ship"))));
        let c = key_string(&k(
            AlertCode::DeadLetter,
            Some(Subject::new("op", "kind ship")),
        ));
        assert_eq!(a, "00201");
        assert_eq!(b, "00201 op_kind ship");
        assert_ne!(b, c);
    }

    #[test]
    fn a_stored_alert_keeps_the_code_by_number() {
        let a = Alert {
            id: 7,
            code: AlertCode::StoreDiskFull,
            severity: Severity::Critical,
            subject: Some(Subject::path(std::path::Path::new("/var/lib/wms-node"))),
            message: "full".into(),
            first_seen_ms: 1,
            last_seen_ms: 2,
            count: 3,
            resolved_ms: None,
        };
        let s = StoredAlert::from(&a);
        assert_eq!(s.code, 302);
        let raw = postcard::to_allocvec(&s).unwrap();
        let back: StoredAlert = postcard::from_bytes(&raw).unwrap();
        assert_eq!(back.to_alert(), Some(a));
        let unknown = StoredAlert { code: 999, ..back };
        assert_eq!(unknown.to_alert(), None);
    }
}
