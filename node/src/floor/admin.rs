//! `wms-node devices add|list|remove`: the same functions on a running node (its admin API,
//! `/api/devices`, which also updates the broker's live credentials) and on a stopped one (the
//! store opened by the CLI). With an external broker, both rewrite the generated Mosquitto
//! password and ACL files, so the broker's credentials follow (Mosquitto reloads them on
//! SIGHUP: `systemctl reload mosquitto`).

use super::acl::{self, Scope};
use super::devices::{self, DeviceError, DeviceId, Record, Registry};
use super::passwd;
use super::presence::Presence;
use crate::secret::Secret;
use crate::store::{Store, StoreError, now_ms};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use firmware_bridge::proto::DeviceClass;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the generated Mosquitto files go, and the node's own user in them.
#[derive(Debug, Clone)]
pub struct MosquittoFiles {
    /// The folder (`floor.mosquitto_dir`): `passwd` and `acl` are written there.
    pub dir: PathBuf,
    /// The node's user name and password at the broker (`[mqtt] username`/`password`).
    pub node: Option<(String, Secret)>,
}

impl MosquittoFiles {
    /// The password file's path.
    pub fn passwd_path(&self) -> PathBuf {
        self.dir.join("passwd")
    }

    /// The ACL file's path.
    pub fn acl_path(&self) -> PathBuf {
        self.dir.join("acl")
    }

    /// Writes both files for `devices` (each: temp file, fsync, rename, fsync the folder).
    pub fn write(&self, scope: &Scope, devices: &[Record]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let node_hash = self
            .node
            .as_ref()
            .map(|(u, p)| (u.clone(), passwd::hash(p.expose())));
        let pw = acl::mosquitto_passwords(
            node_hash.as_ref().map(|(u, h)| (u.as_str(), h.as_str())),
            devices,
        );
        let acl_text =
            acl::mosquitto_acl(scope, self.node.as_ref().map(|(u, _)| u.as_str()), devices);
        write_atomic(&self.passwd_path(), pw.as_bytes(), true)?;
        write_atomic(&self.acl_path(), acl_text.as_bytes(), false)?;
        Ok(())
    }
}

fn write_atomic(path: &std::path::Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        // Hashes only, but still nobody else's business.
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A device as `devices list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// `scanner` or `printer`.
    pub class: String,
    /// The id.
    pub id: String,
    /// Its MQTT user name.
    pub username: String,
    /// The MQTT client id it should use.
    pub client_id: String,
    /// Whether its last `state` said online; `null` when the node is not running (unknown).
    pub online: Option<bool>,
    /// The firmware it last named.
    pub firmware: Option<String>,
    /// When the node last heard from it (RFC 3339), or never.
    pub last_seen: Option<String>,
    /// Its state's note (`port closed`, `paper out`).
    pub detail: Option<String>,
}

/// What `devices add` prints once: the only time the password is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Added {
    /// The device.
    pub device: DeviceView,
    /// Its password (not stored; only its hash is).
    pub password: String,
}

/// `devices add` / `remove` request and answer bodies.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddRequest {
    /// `scanner` or `printer`.
    pub class: String,
    /// The id.
    pub id: String,
}

/// The running node's parts that follow a change at once.
#[derive(Debug, Clone)]
pub struct Live {
    /// The broker's and pipeline's credentials.
    pub registry: Registry,
    /// Who is online.
    pub presence: Presence,
}

/// Device administration over a store, with or without a running node around it.
#[derive(Debug, Clone)]
pub struct DeviceAdmin {
    store: Store,
    site: String,
    scope: Scope,
    live: Option<Live>,
    files: Option<MosquittoFiles>,
}

/// Errors of device administration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// A device problem (bad class or id, exists, not found, store).
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The id exists in both classes: say which.
    #[error("both a scanner and a printer have the id {0}: give --class")]
    Ambiguous(String),
    /// The Mosquitto files could not be written (the change itself is stored).
    #[error("the device change is stored, but {path} could not be written: {reason}")]
    Files {
        /// Which file or folder.
        path: String,
        /// Why.
        reason: String,
    },
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Device(DeviceError::Store(e))
    }
}

impl DeviceAdmin {
    /// Administration of `store`'s devices for `scope`; `live` when the node runs in this
    /// process, `files` when the broker is external.
    pub fn new(
        store: Store,
        scope: Scope,
        live: Option<Live>,
        files: Option<MosquittoFiles>,
    ) -> Self {
        DeviceAdmin {
            store,
            site: scope.site.clone(),
            scope,
            live,
            files,
        }
    }

    /// Every device, by class then id.
    pub fn list(&self) -> Result<Vec<DeviceView>, AdminError> {
        let records = self.store.read(devices::list)?;
        Ok(records.iter().filter_map(|r| self.view(r)).collect())
    }

    fn view(&self, r: &Record) -> Option<DeviceView> {
        let d = r.device()?;
        let seen = self.live.as_ref().and_then(|l| l.presence.get(&d));
        let last = r.last_seen_ms.max(seen.as_ref().map(|s| s.since_ms));
        Some(DeviceView {
            class: r.class.clone(),
            id: r.id.clone(),
            username: d.to_string(),
            client_id: d.client_id(&self.site),
            online: self
                .live
                .as_ref()
                .map(|_| seen.as_ref().is_some_and(|s| s.online)),
            firmware: seen.as_ref().and_then(|s| s.fw.clone()).or(r.fw.clone()),
            last_seen: last.map(rfc3339),
            detail: seen.and_then(|s| s.detail),
        })
    }

    /// Registers a device and returns its password (shown once).
    pub async fn add(&self, class: DeviceClass, id: &str) -> Result<Added, AdminError> {
        let device = DeviceId::new(class, id)?;
        let password = passwd::new_password();
        let hash = passwd::hash(&password);
        let (d, h) = (device.clone(), hash.clone());
        let record = self
            .store
            .write(move |txn| match devices::add(txn, &d, &h, now_ms()) {
                Ok(r) => Ok(Ok(r)),
                Err(DeviceError::Store(e)) => Err(e),
                Err(e) => Ok(Err(e)),
            })
            .await??;
        if let Some(live) = &self.live {
            live.registry.insert(&device.to_string(), &hash);
        }
        tracing::warn!(device = %device, "device added");
        self.rewrite_files()?;
        let view = self
            .view(&record)
            .ok_or(AdminError::Device(DeviceError::Class))?;
        Ok(Added {
            device: view,
            password,
        })
    }

    /// Finds the device `id` (of `class`, or of whichever class has it).
    pub fn resolve(&self, class: Option<DeviceClass>, id: &str) -> Result<DeviceId, AdminError> {
        if let Some(class) = class {
            return Ok(DeviceId::new(class, id)?);
        }
        let records = self.store.read(devices::list)?;
        let mut found = records
            .iter()
            .filter(|r| r.id == id)
            .filter_map(Record::device);
        match (found.next(), found.next()) {
            (Some(d), None) => Ok(d),
            (Some(_), Some(_)) => Err(AdminError::Ambiguous(id.to_owned())),
            (None, _) => {
                Err(DeviceError::NotFound(DeviceId::new(DeviceClass::Scanner, id)?).into())
            }
        }
    }

    /// Revokes a device: its credentials stop working at once on the embedded broker (and on an
    /// external one when it reloads the files).
    pub async fn remove(&self, device: &DeviceId) -> Result<(), AdminError> {
        let d = device.clone();
        self.store
            .write(move |txn| match devices::remove(txn, &d) {
                Ok(()) => Ok(Ok(())),
                Err(DeviceError::Store(e)) => Err(e),
                Err(e) => Ok(Err(e)),
            })
            .await??;
        if let Some(live) = &self.live {
            live.registry.remove(&device.to_string());
            live.presence.forget(device);
        }
        tracing::warn!(device = %device, "device removed; its credentials are revoked");
        self.rewrite_files()
    }

    /// Writes the Mosquitto files (when the broker is external) from the store.
    pub fn rewrite_files(&self) -> Result<(), AdminError> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        let records = self.store.read(devices::list)?;
        files
            .write(&self.scope, &records)
            .map_err(|e| AdminError::Files {
                path: files.dir.display().to_string(),
                reason: e.to_string(),
            })?;
        tracing::info!(dir = %files.dir.display(), devices = records.len(), "Mosquitto password and ACL files written; reload the broker (SIGHUP) to apply");
        Ok(())
    }
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The admin routes under `/api/devices` (wrap them in `local_only`).
pub fn router(admin: DeviceAdmin) -> Router {
    Router::new()
        .route("/api/devices", get(list_devices).post(add_device))
        .route("/api/devices/{class}/{id}/remove", post(remove_device))
        .with_state(admin)
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(e: AdminError) -> Response {
    let status = match &e {
        AdminError::Device(DeviceError::NotFound(_)) => StatusCode::NOT_FOUND,
        AdminError::Device(DeviceError::Exists(_)) => StatusCode::CONFLICT,
        AdminError::Device(d) if d.is_usage() => StatusCode::BAD_REQUEST,
        AdminError::Ambiguous(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        Json(ErrorBody {
            error: e.to_string(),
        }),
    )
        .into_response()
}

fn class_of(s: &str) -> Result<DeviceClass, AdminError> {
    DeviceClass::from_name(s)
        .filter(|c| *c != DeviceClass::Gateway)
        .ok_or(AdminError::Device(DeviceError::Class))
}

async fn list_devices(State(admin): State<DeviceAdmin>) -> Response {
    match admin.list() {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(e),
    }
}

async fn add_device(State(admin): State<DeviceAdmin>, Json(req): Json<AddRequest>) -> Response {
    let class = match class_of(&req.class) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    match admin.add(class, &req.id).await {
        Ok(added) => (StatusCode::CREATED, Json(added)).into_response(),
        Err(e) => error(e),
    }
}

async fn remove_device(
    State(admin): State<DeviceAdmin>,
    Path((class, id)): Path<(String, String)>,
) -> Response {
    let device = match class_of(&class).and_then(|c| Ok(DeviceId::new(c, &id)?)) {
        Ok(d) => d,
        Err(e) => return error(e),
    };
    match admin.remove(&device).await {
        Ok(()) => Json(serde_json::json!({"removed": device.to_string()})).into_response(),
        Err(e) => error(e),
    }
}
