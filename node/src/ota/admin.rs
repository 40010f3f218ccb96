//! OTA in the running node: its admin routes, the restart that boots an installed update,
//! and the alert for a failed one.
//!
//! | method | path               | answer |
//! |--------|--------------------|--------|
//! | GET    | `/api/ota/status`  | [`StatusView`] |
//! | POST   | `/api/ota/restart` | 202 `{"restarting":"0.3.0"}`; 409 when no update waits or the node was not started by the launcher |
//!
//! The restart is an orderly shutdown (everything drains as on SIGTERM) with exit status
//! [`super::EXIT_RESTART_FOR_UPDATE`], which systemd answers by starting the unit again,
//! i.e. the launcher, which boots the update on trial. A node not started by the launcher
//! refuses: nothing would bring it back.

use super::state::{Outcome, State};
use super::{OtaOptions, Paths};
use crate::alert::{AlertCode, Alerts, Severity};
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

/// The alerts raised while the last update failed, was refused or was rolled back (one at a
/// time: the last outcome's).
pub const ALERTS: [AlertCode; 3] = [
    AlertCode::OtaFailed,
    AlertCode::OtaRefused,
    AlertCode::OtaRolledBack,
];

/// What `ota status` shows: the state file plus what this process knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    /// The version of the process answering (the running node, or the CLI reading the file).
    pub running_version: String,
    /// Whether the answer comes from the running node.
    pub from_running_node: bool,
    /// The trusted key ids (`[ota] public_keys`).
    pub key_ids: Vec<String>,
    /// Bytes of the download in progress on disk, if any.
    pub download_bytes: Option<u64>,
    /// Whether a store copy from the last migrating update is kept (`ota/trial/`).
    pub store_copy_kept: bool,
    /// The state file.
    pub state: State,
}

impl StatusView {
    /// Reads the state file (works with the node stopped).
    pub fn read(opts: &OtaOptions, from_running_node: bool) -> Result<StatusView, super::OtaError> {
        let paths = opts.paths();
        let state = State::load(&paths)?;
        let download_bytes = state.download.as_ref().and_then(|d| {
            std::fs::metadata(paths.partial(&d.sha256))
                .ok()
                .map(|m| m.len())
        });
        Ok(StatusView {
            running_version: crate::VERSION.to_owned(),
            from_running_node,
            key_ids: opts.public_keys.ids(),
            download_bytes,
            store_copy_kept: paths.trial_store_copy().is_file(),
            state,
        })
    }
}

/// What runs before the node stops for an update: the floor tells its devices to wait.
pub type BeforeRestart =
    Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How long the node lets its last messages (the OTA answer, the devices' `pause`) leave
/// before it stops: the embedded broker stops with it.
const FLUSH_BEFORE_RESTART: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks the daemon to stop so that the launcher boots an update.
#[derive(Clone)]
pub struct RestartHandle {
    token: CancellationToken,
    requested: Arc<AtomicBool>,
    before: Arc<std::sync::OnceLock<BeforeRestart>>,
}

impl std::fmt::Debug for RestartHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestartHandle")
            .field("requested", &self.requested())
            .finish_non_exhaustive()
    }
}

impl RestartHandle {
    /// A handle that cancels `token` when a restart is requested.
    pub fn new(token: CancellationToken) -> Self {
        RestartHandle {
            token,
            requested: Arc::new(AtomicBool::new(false)),
            before: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// Runs `f` before every restart for an update (set once; later calls change nothing).
    pub fn before_restart(&self, f: BeforeRestart) {
        let _ = self.before.set(f);
    }

    /// Whether a restart for an update was requested.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    async fn request(&self) {
        if let Some(f) = self.before.get() {
            f().await;
        }
        tokio::time::sleep(FLUSH_BEFORE_RESTART).await;
        self.requested.store(true, Ordering::SeqCst);
        self.token.cancel();
    }
}

/// The OTA part of the running node.
#[derive(Debug, Clone)]
pub struct OtaAdmin {
    opts: OtaOptions,
    restart: RestartHandle,
    launched: bool,
}

impl OtaAdmin {
    /// `launched`: whether the launcher started this process (it set
    /// [`super::LAUNCHED_ENV`]).
    pub fn new(opts: OtaOptions, restart: RestartHandle, launched: bool) -> Self {
        OtaAdmin {
            opts,
            restart,
            launched,
        }
    }

    /// Raises the alert of the last update's failure, if it failed (the launcher, which
    /// decides a rollback, runs before any alert channel exists), and clears the others.
    pub fn raise_alerts(&self, alerts: &Alerts) {
        let raised = match State::load(&self.opts.paths()) {
            Ok(State {
                last: Some(outcome),
                ..
            }) => match outcome {
                Outcome::RolledBack {
                    version, reason, ..
                } => Some((
                    AlertCode::OtaRolledBack,
                    format!(
                        "OTA update {version} was rolled back: {reason}; the previous build runs (wms-node ota status)"
                    ),
                )),
                Outcome::Failed {
                    version,
                    reason,
                    refused,
                    ..
                } => {
                    let version = version.as_deref().unwrap_or("(unknown version)");
                    Some(if refused {
                        (
                            AlertCode::OtaRefused,
                            format!("OTA update {version} was refused: {reason}"),
                        )
                    } else {
                        (
                            AlertCode::OtaFailed,
                            format!("OTA update {version} was not installed: {reason}"),
                        )
                    })
                }
                Outcome::Installed { .. } | Outcome::Committed { .. } => None,
            },
            Ok(_) => None,
            Err(e) => Some((AlertCode::OtaFailed, e.to_string())),
        };
        for code in ALERTS {
            match &raised {
                Some((c, message)) if *c == code => {
                    alerts.raise(code, Severity::Warning, message.clone());
                }
                _ => alerts.clear(code),
            }
        }
    }

    /// Keeps [`ALERTS`] in step with the state file until `token` is cancelled: an update
    /// applied by the CLI while the node runs may fail without the node being involved.
    pub async fn watch_alerts(
        self,
        alerts: Alerts,
        every: std::time::Duration,
        token: CancellationToken,
    ) -> Result<(), std::convert::Infallible> {
        loop {
            tokio::select! {
                // Shutdown.
                _ = token.cancelled() => return Ok(()),
                // A small file read; its outcome changes only when an update is applied.
                _ = tokio::time::sleep(every) => self.raise_alerts(&alerts),
            }
        }
    }

    /// Whether the launcher started this node.
    pub(crate) fn launched(&self) -> bool {
        self.launched
    }

    /// Stops the node for the launcher to boot an installed update; `false` (and nothing
    /// happens) when the launcher did not start this node: nothing would start it again.
    pub(crate) async fn restart_for_update(&self) -> bool {
        if self.launched {
            self.restart.request().await;
        }
        self.launched
    }

    /// Whether the floor was told to wait before the restart that started this run.
    pub fn floor_paused(&self) -> bool {
        State::load(&self.opts.paths()).is_ok_and(|s| s.floor_paused)
    }

    /// Records whether the floor waits (told before a restart, cleared once told to carry on).
    pub fn set_floor_paused(&self, paused: bool) {
        if let Err(e) = State::update(&self.opts.paths(), |s| {
            s.floor_paused = paused;
            Ok(())
        }) {
            tracing::warn!("cannot record whether the floor waits: {e}");
        }
    }

    /// The paths it works on.
    pub fn paths(&self) -> Paths {
        self.opts.paths()
    }
}

/// The routes above; merge into the ops server behind `admin_api`.
pub fn router(admin: OtaAdmin) -> Router {
    Router::new()
        .route("/api/ota/status", get(status))
        .route("/api/ota/restart", post(restart))
        .with_state(admin)
}

async fn status(AxumState(admin): AxumState<OtaAdmin>) -> Response {
    match StatusView::read(&admin.opts, true) {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

async fn restart(AxumState(admin): AxumState<OtaAdmin>) -> Response {
    let conflict = |msg: String| {
        (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "error": msg })),
        )
            .into_response()
    };
    let pending = match State::load(&admin.opts.paths()) {
        Ok(s) => s.trial.map(|t| t.build.version),
        Err(e) => return conflict(e.to_string()),
    };
    let Some(version) = pending else {
        return conflict("no installed update waits for its trial boot".into());
    };
    if !admin.launched {
        return conflict(format!(
            "{version} is installed, but this node was not started by `wms-node launch`: \
             nothing would start it again; restart it through the launcher yourself"
        ));
    }
    tracing::info!(version = %version, "restarting to boot the update on trial");
    admin.restart.request().await;
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "restarting": version })),
    )
        .into_response()
}
