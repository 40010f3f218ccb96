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
use crate::alert::{Alerts, Severity};
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

/// The alert raised while the last update failed or was rolled back.
pub const ALERT: crate::alert::AlertCode = crate::alert::AlertCode::OtaFailed;

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

/// Asks the daemon to stop so that the launcher boots an update.
#[derive(Debug, Clone)]
pub struct RestartHandle {
    token: CancellationToken,
    requested: Arc<AtomicBool>,
}

impl RestartHandle {
    /// A handle that cancels `token` when a restart is requested.
    pub fn new(token: CancellationToken) -> Self {
        RestartHandle {
            token,
            requested: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether a restart for an update was requested.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    fn request(&self) {
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

    /// Raises [`ALERT`] if the last update failed or was rolled back (the launcher, which
    /// decided it, runs before any alert channel exists).
    pub fn raise_alerts(&self, alerts: &Alerts) {
        match State::load(&self.opts.paths()) {
            Ok(State {
                last: Some(outcome),
                ..
            }) if outcome.is_failure() => {
                let message = match outcome {
                    Outcome::RolledBack {
                        version, reason, ..
                    } => format!(
                        "OTA update {version} was rolled back: {reason}; the previous build runs (wms-node ota status)"
                    ),
                    Outcome::Failed {
                        version, reason, ..
                    } => format!(
                        "OTA update {} was not installed: {reason}",
                        version.as_deref().unwrap_or("(unknown version)")
                    ),
                    _ => return,
                };
                alerts.raise(ALERT, Severity::Warning, message);
            }
            Ok(_) => alerts.clear(ALERT),
            Err(e) => alerts.raise(ALERT, Severity::Warning, format!("{e}")),
        }
    }

    /// Keeps [`ALERT`] in step with the state file until `token` is cancelled: an update
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
    admin.restart.request();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "restarting": version })),
    )
        .into_response()
}
