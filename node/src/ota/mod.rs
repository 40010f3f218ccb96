//! Signed A/B self-update: manifests, download, install into the inactive slot, the
//! launcher's trial boot with a health gate, commit or rollback.
//!
//! Owns everything under `<data_dir>/ota/`. Must never: install anything whose size, SHA-256
//! or ed25519 signature did not check out (a missing signature is a refusal, never a
//! warning); roll back an update that was committed; let the new build decide its own fate
//! (the rollback decision is the launcher's, which is the package's binary, not the trial's);
//! make the gate depend on the internet link; write outside `<data_dir>`.
//!
//! # The pieces
//!
//! | module       | what it does                                                             | runs in |
//! |--------------|--------------------------------------------------------------------------|---------|
//! | [`manifest`] | the manifest `{version, url, size, sha256, key_id}` and its wire form     | all |
//! | [`verify`]   | ed25519 keys, key ids, signing and fail-closed verification (ring)       | all |
//! | [`download`] | HTTP download with `Range` resume, stall timeout, bounded retries        | installer |
//! | [`install`]  | [`Installer`]: verify → download → check → slot → trial pending          | CLI, daemon |
//! | [`launch`]   | the launcher (`wms-node launch`, the unit's `ExecStart`): trial, verdict | launcher |
//! | [`gate`]     | the self-test a trial build runs (`wms-node ota gate`)                   | trial build |
//! | [`state`]    | `ota/state.json`: slots, the trial, the last outcome                     | all |
//! | [`source`]   | [`UpdateRequest`], [`source::Origin`], [`source::Answer`]: the one way in | CLI, daemon |
//! | [`mqtt`]     | `ota_update` on the gateway's `cmd` topic; answers on its `reply`        | daemon |
//!
//! Every way an update can arrive (the CLI and the gateway's MQTT `cmd` topic today, a
//! hawkBit DDI or a Mender client later) hands an [`UpdateRequest`] (the [`SignedManifest`]
//! as it arrived) to [`Installer::handle`] and answers through its [`source::Answer`]: the
//! installer does not know where a manifest came from.
//!
//! # State diagram
//!
//! ```text
//!                 Installer::apply (CLI, MQTT, …)                          launcher (next start)
//!  idle ─▶ signature ─▶ not a downgrade ─▶ download ─▶ size+sha256 ─▶ slot ─▶ trial pending
//!            │ bad/missing     │ refused      │ resumes     │ wrong         (fsync+rename)  │
//!            ▼                 ▼              ▼ gives up    ▼                               ▼
//!          refused          refused         failed       failed            attempts += 1 (fsynced)
//!          (nothing installed, state untouched but for `last`)             gate: NEW ota gate
//!                                                                   ┌──────────┼───────────────┐
//!                                                          passes, own version   fails / exit≠0 /
//!                                                          = manifest's          panic / deadline
//!                                                                   ▼                         ▼
//!                                                          committed (no rollback  verdict recorded
//!                                                          from here on) ─▶ exec   ─▶ store copy back
//!                                                          NEW run                 ─▶ exec OLD run
//!  no verdict (power cut, kill of the launcher): the attempt counted once; the next start
//!  runs the gate again; after `trial_attempts` such attempts the launcher rolls back.
//! ```
//!
//! # On-disk layout (`<data_dir>/ota/`)
//!
//! ```text
//!   state.json            the state (write → fsync → rename → fsync dir); format 1, additive
//!   lock                  flock: one state writer at a time; `apply.lock`: one installer
//!   slots/a/wms-node      slot A's binary (written as .tmp, fsynced, renamed)
//!   slots/b/wms-node      slot B's binary
//!   download/<sha256>.part  the download in progress (kept across restarts for Range resume)
//!   trial/wms-node.redb   the store as it was before the trial build migrated it (if it did)
//!   rolled-back/          the store a rolled-back trial left behind (the latest one only)
//! ```
//!
//! The package's binary (`/usr/bin/wms-node`) is the launcher and a third, read-only choice:
//! the launcher runs the committed slot when its version is newer than the package's, else
//! the package's own binary (so a package upgrade past the OTA version takes over, and an
//! OTA update past the package's version survives package reinstalls).
//!
//! # The store across a trial
//!
//! The trial build's gate opens the store first, so a migration happens there. The launcher
//! passes `--store-copy <data_dir>/ota/trial/wms-node.redb`; the store writes a complete,
//! fsynced copy of the old file there (atomically renamed into place) before its first
//! change ([`crate::store::StoreOptions::migration_copy`]). A rollback moves the migrated file
//! to `rolled-back/` and the copy back in place, so the previous build opens the store it
//! knows. The gate takes no floor work and sends no operations, so nothing acknowledged
//! lives only in the migrated file.

pub mod admin;
pub mod download;
pub mod error;
pub mod files;
pub mod gate;
pub mod install;
pub mod launch;
pub mod manifest;
pub mod mqtt;
pub mod source;
pub mod state;
pub mod verify;

pub use error::OtaError;
pub use install::{ApplyOptions, Installed, Installer, OtaEvent, Reporter};
pub use manifest::{Manifest, SignedManifest};
pub use source::UpdateRequest;
pub use state::{Slot, State};
pub use verify::{PublicKey, TrustedKeys};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name of the node binary inside a slot.
pub const SLOT_BINARY: &str = "wms-node";

/// Exit status of `wms-node run` when it stopped so that the launcher can boot an installed
/// update (`EX_TEMPFAIL`). The unit restarts on it (`RestartForceExitStatus=75`).
pub const EXIT_RESTART_FOR_UPDATE: u8 = 75;

/// Set by the launcher in the environment of the `run` it starts, so the node knows a
/// restart will bring it back through the launcher (its value is the launcher's version).
pub const LAUNCHED_ENV: &str = "WMS_NODE_LAUNCHED_BY";

/// How OTA works on this node: built by `config/` from `[ota]` and `[node] data_dir`.
#[derive(Debug, Clone)]
pub struct OtaOptions {
    /// `<data_dir>`: the state lives in `<data_dir>/ota/`.
    pub data_dir: PathBuf,
    /// The store file, restored from the trial copy on a rollback.
    pub store_path: PathBuf,
    /// The ed25519 keys whose signatures are accepted (several, so a key can be rotated).
    pub public_keys: TrustedKeys,
    /// How long a trial build has to pass its gate.
    pub gate_timeout: Duration,
    /// How many trial starts without a verdict (power cut, the launcher killed) before the
    /// launcher gives up and rolls back. A verdict (the gate failed, the build exited, hung
    /// or panicked) rolls back at once.
    pub trial_attempts: u32,
    /// A download that receives nothing for this long is cut and resumed.
    pub stall_timeout: Duration,
    /// Resumed attempts in a row without one new byte before the download gives up.
    pub download_retries: u32,
    /// The longest wait for a TCP/TLS connection to the update server.
    pub connect_timeout: Duration,
}

impl OtaOptions {
    /// Defaults for a node whose data lives in `data_dir` and store in `store_path`.
    pub fn new(data_dir: impl Into<PathBuf>, store_path: impl Into<PathBuf>) -> Self {
        OtaOptions {
            data_dir: data_dir.into(),
            store_path: store_path.into(),
            public_keys: TrustedKeys::default(),
            gate_timeout: Duration::from_secs(60),
            trial_attempts: 3,
            stall_timeout: Duration::from_secs(30),
            download_retries: 8,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The paths under `<data_dir>/ota/`.
    pub fn paths(&self) -> Paths {
        Paths::new(&self.data_dir)
    }
}

/// The files and folders under `<data_dir>/ota/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// The layout under `<data_dir>/ota/`.
    pub fn new(data_dir: &Path) -> Self {
        Paths {
            root: data_dir.join("ota"),
        }
    }

    /// `<data_dir>/ota`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The lock around read-modify-write of the state.
    pub fn state_lock(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The lock one installer holds from download to install.
    pub fn apply_lock(&self) -> PathBuf {
        self.root.join("apply.lock")
    }

    /// A slot's folder.
    pub fn slot_dir(&self, slot: Slot) -> PathBuf {
        self.root.join("slots").join(slot.name())
    }

    /// A slot's binary.
    pub fn slot_binary(&self, slot: Slot) -> PathBuf {
        self.slot_dir(slot).join(SLOT_BINARY)
    }

    /// Where downloads in progress are kept.
    pub fn download_dir(&self) -> PathBuf {
        self.root.join("download")
    }

    /// The partial download of the artifact with this SHA-256 (hex).
    pub fn partial(&self, sha256: &str) -> PathBuf {
        self.download_dir().join(format!("{sha256}.part"))
    }

    /// The trial's folder: the store copy a migrating trial build leaves.
    pub fn trial_dir(&self) -> PathBuf {
        self.root.join("trial")
    }

    /// The store as it was before the trial build migrated it.
    pub fn trial_store_copy(&self) -> PathBuf {
        self.trial_dir().join("wms-node.redb")
    }

    /// Where the store a rolled-back trial left behind is kept (the latest one).
    pub fn rolled_back_dir(&self) -> PathBuf {
        self.root.join("rolled-back")
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 before 1970): for display only; no
/// decision here depends on the clock (gateways without a real-time clock boot in 1970).
pub(crate) fn now_ms() -> u64 {
    crate::store::now_ms()
}
