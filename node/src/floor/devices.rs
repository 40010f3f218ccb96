//! The device registry: which scanners and printers may use the floor, with their credentials.
//!
//! A device is `{class}/{id}` (ids are unique per class only): its MQTT user name is exactly
//! that string (`scanner/sc-01`), its client id `wms-{site}-{class}-{id}`, and it may publish
//! only under `wms/{site}/{class}/{id}/…` ([`super::acl`]). `wms-node devices add` makes a
//! random password, prints it once and keeps only its Mosquitto `$7$` hash ([`super::passwd`]).
//!
//! ```text
//!  floor_devices   "{class}/{id}" ─▶ postcard Record { class, id, hash, created_ms, fw?, last_seen_ms? }
//! ```
//!
//! The running node keeps a [`Registry`]: the hashes in memory, for the embedded broker's
//! CONNECT and publish checks and for the dispatch pipeline's "known device" check. Adding or
//! removing through the admin API changes the store first, then the registry, so a removed
//! device's next publish is refused at once even on a connection it opened before; for an
//! external broker the generated password and ACL files are rewritten ([`super::mosquitto`]).

use crate::store::{self, Bytes, ReadTxn, StoreError};
use firmware_bridge::proto::DeviceClass;
use firmware_bridge::proto::topic::{TopicError, check_segment};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Registered devices by `{class}/{id}`.
pub const DEVICES: TableDefinition<&str, Bytes> = TableDefinition::new("floor_devices");

/// A device's identity: class and id. Displays as its MQTT user name, `{class}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceId {
    /// Scanner or printer.
    pub class: DeviceClass,
    /// Unique within its class on the site.
    pub id: String,
}

impl DeviceId {
    /// A checked device identity: a scanner or printer, with an id that is a valid topic level.
    pub fn new(class: DeviceClass, id: &str) -> Result<Self, DeviceError> {
        if class == DeviceClass::Gateway {
            return Err(DeviceError::Class);
        }
        check_segment("device id", id).map_err(DeviceError::Id)?;
        Ok(DeviceId {
            class,
            id: id.to_owned(),
        })
    }

    /// Parses a user name (`scanner/sc-01`); `None` for anything else.
    pub fn from_username(name: &str) -> Option<Self> {
        let (class, id) = name.split_once('/')?;
        DeviceId::new(DeviceClass::from_name(class)?, id).ok()
    }

    /// The MQTT client id devices use: `wms-{site}-{class}-{id}`.
    pub fn client_id(&self, site: &str) -> String {
        format!("wms-{site}-{}-{}", self.class, self.id)
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.class, self.id)
    }
}

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// Only scanners and printers are registered (the gateway is the node itself).
    #[error("the class must be scanner or printer")]
    Class,
    /// The id is not a valid topic level.
    #[error("{0}")]
    Id(TopicError),
    /// A device of that class and id exists. Remove it first to issue new credentials.
    #[error("{0} is already registered (remove it first to issue new credentials)")]
    Exists(DeviceId),
    /// No such device.
    #[error("no device {0}")]
    NotFound(DeviceId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DeviceError {
    /// Whether the caller's input is at fault (exit 2 / HTTP 400) rather than the node.
    pub fn is_usage(&self) -> bool {
        matches!(self, DeviceError::Class | DeviceError::Id(_))
    }
}

/// A registered device as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `scanner` or `printer`.
    pub class: String,
    /// The id.
    pub id: String,
    /// Mosquitto `$7$` hash of its password.
    pub hash: String,
    /// When it was added (ms since the Unix epoch).
    pub created_ms: u64,
    /// The firmware its last `state` or heartbeat named.
    pub fw: Option<String>,
    /// When the node last heard from it (ms since the Unix epoch).
    pub last_seen_ms: Option<u64>,
}

impl Record {
    /// Its identity (`None` for a record whose class this build does not know).
    pub fn device(&self) -> Option<DeviceId> {
        DeviceId::new(DeviceClass::from_name(&self.class)?, &self.id).ok()
    }
}

/// Registers a device with the hash of its password.
pub fn add(
    txn: &WriteTransaction,
    device: &DeviceId,
    hash: &str,
    now_ms: u64,
) -> Result<Record, DeviceError> {
    let key = device.to_string();
    if txn.get_raw(DEVICES, key.as_str())?.is_some() {
        return Err(DeviceError::Exists(device.clone()));
    }
    let record = Record {
        class: device.class.as_str().to_owned(),
        id: device.id.clone(),
        hash: hash.to_owned(),
        created_ms: now_ms,
        fw: None,
        last_seen_ms: None,
    };
    store::put(txn, DEVICES, key.as_str(), &record)?;
    Ok(record)
}

/// Removes a device; its credentials stop working.
pub fn remove(txn: &WriteTransaction, device: &DeviceId) -> Result<(), DeviceError> {
    if store::delete(txn, DEVICES, device.to_string().as_str())? {
        Ok(())
    } else {
        Err(DeviceError::NotFound(device.clone()))
    }
}

/// Records that the device was heard from at `now_ms` (and its firmware, when it said).
/// Unknown devices are ignored.
pub fn touch(
    txn: &WriteTransaction,
    device: &DeviceId,
    now_ms: u64,
    fw: Option<&str>,
) -> Result<(), StoreError> {
    let key = device.to_string();
    let Some(mut r): Option<Record> = store::get(txn, DEVICES, key.as_str())? else {
        return Ok(());
    };
    r.last_seen_ms = Some(r.last_seen_ms.map_or(now_ms, |t| t.max(now_ms)));
    if let Some(fw) = fw {
        r.fw = Some(fw.chars().take(64).collect());
    }
    store::put(txn, DEVICES, key.as_str(), &r)
}

/// Every registered device, by class then id. Undecodable records are skipped (and
/// quarantined by the store).
pub fn list(txn: &redb::ReadTransaction) -> Result<Vec<Record>, StoreError> {
    let table = match txn.open_table(DEVICES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        match store::decode::<&str, Record>(DEVICES, &k.value(), v.value()) {
            Ok(r) => out.push(r),
            Err(StoreError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The credentials the running node checks, in memory: device hashes (from the store) and the
/// node's own (for the embedded broker; made at start, never stored).
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<HashMap<String, String>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("users", &self.read().len())
            .finish()
    }
}

impl Registry {
    /// A registry holding `records`.
    pub fn from_records(records: &[Record]) -> Self {
        let r = Registry::default();
        for rec in records {
            if let Some(d) = rec.device() {
                r.insert(&d.to_string(), &rec.hash);
            }
        }
        r
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces the user `name` with a `$7$` hash.
    pub fn insert(&self, name: &str, hash: &str) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), hash.to_owned());
    }

    /// Removes the user `name`.
    pub fn remove(&self, name: &str) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Whether `name` is a registered user.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Whether `password` is `name`'s.
    pub fn check(&self, name: &str, password: &str) -> bool {
        // Clone the hash out: PBKDF2 runs without holding the lock.
        let hash = self.read().get(name).cloned();
        hash.is_some_and(|h| super::passwd::verify(password, &h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Alerts;
    use crate::store::{Store, StoreOptions};

    #[test]
    fn ids_are_checked_and_user_names_parse_back() {
        let d = DeviceId::new(DeviceClass::Scanner, "sc-01").unwrap();
        assert_eq!(d.to_string(), "scanner/sc-01");
        assert_eq!(DeviceId::from_username("scanner/sc-01"), Some(d.clone()));
        assert_eq!(d.client_id("main"), "wms-main-scanner-sc-01");
        assert!(DeviceId::new(DeviceClass::Gateway, "gw").is_err());
        assert!(DeviceId::new(DeviceClass::Printer, "a/b").is_err());
        assert!(DeviceId::new(DeviceClass::Printer, "+").is_err());
        assert_eq!(DeviceId::from_username("robot/r1"), None);
        assert_eq!(DeviceId::from_username("gateway/gw"), None);
    }

    #[test]
    fn add_list_touch_remove_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(StoreOptions::new(dir.path().join("s.redb")), Alerts::new()).unwrap();
        assert!(s.read(list).unwrap().is_empty());
        let sc = DeviceId::new(DeviceClass::Scanner, "x1").unwrap();
        let pr = DeviceId::new(DeviceClass::Printer, "x1").unwrap();
        let (a, b) = (sc.clone(), pr.clone());
        s.write_blocking(move |t| {
            add(t, &a, "$7$h1", 5).map_err(|e| StoreError::Aborted(e.to_string()))?;
            add(t, &b, "$7$h2", 6).map_err(|e| StoreError::Aborted(e.to_string()))?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
        let again = sc.clone();
        let dup = s.write_blocking(move |t| {
            Ok::<_, StoreError>(matches!(
                add(t, &again, "$7$h3", 7),
                Err(DeviceError::Exists(_))
            ))
        });
        assert!(dup.unwrap(), "same class and id twice is refused");
        let touched = sc.clone();
        s.write_blocking(move |t| touch(t, &touched, 99, Some("fw 1.2")))
            .unwrap();
        let all = s.read(list).unwrap();
        assert_eq!(all.len(), 2, "ids are unique per class only");
        let rec = all.iter().find(|r| r.class == "scanner").unwrap();
        assert_eq!(
            (rec.last_seen_ms, rec.fw.as_deref()),
            (Some(99), Some("fw 1.2"))
        );
        let reg = Registry::from_records(&all);
        assert!(reg.contains("printer/x1"));
        let gone = pr.clone();
        s.write_blocking(move |t| remove(t, &gone).map_err(|e| StoreError::Aborted(e.to_string())))
            .unwrap();
        let missing = pr.clone();
        let again = s.write_blocking(move |t| {
            Ok::<_, StoreError>(matches!(remove(t, &missing), Err(DeviceError::NotFound(_))))
        });
        assert!(again.unwrap());
        assert_eq!(s.read(list).unwrap().len(), 1);
    }

    #[test]
    fn the_registry_checks_passwords_against_hashes() {
        let reg = Registry::default();
        let pw = super::super::passwd::new_password();
        reg.insert("scanner/a", &super::super::passwd::hash(&pw));
        assert!(reg.check("scanner/a", &pw));
        assert!(!reg.check("scanner/a", "nope"));
        assert!(!reg.check("scanner/b", &pw));
        reg.remove("scanner/a");
        assert!(!reg.check("scanner/a", &pw));
    }
}
