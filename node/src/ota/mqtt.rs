//! OTA over MQTT: `ota_update` on the gateway's `cmd` topic in, `ota_progress` and
//! `ota_result` on its `reply` topic out (docs/PROTOCOL.md, *Gateway: OTA updates*).
//!
//! ```text
//!  wms/{site}/gateway/{node}/cmd ─▶ decode ─▶ UpdateRequest ─▶ Installer::handle ─▶ installed
//!   (a fleet link; the floor hands     │ bad: ota_result refused     │ signature first: a bad one
//!    the payload over, acked)          ▼                             │ is refused before any byte
//!                                   reply                            ▼ is downloaded
//!                                        ota_progress downloading… ─▶ ota_result installed
//!                                        ─▶ ota_progress restarting ─▶ the node stops (exit 75)
//!  next start (the launcher ran the trial) ─▶ ota_result committed | rolled_back, same `re`
//! ```
//!
//! Answers go out QoS 1, not retained. A fleet link that was away when the node came back
//! (the embedded broker restarts with the node) sends the same `ota_update` again, same
//! `id`: it is answered from the OTA state (`installed`, `committed`, `rolled_back`), and
//! nothing is downloaded or installed twice. Progress is sent at most twice a second.
//!
//! Must never: download before the signature verified (the installer's order), answer
//! without `re` when an id could be read, or restart a node the launcher did not start
//! (nothing would bring it back; the result says `installed` and the operator restarts it).

use super::admin::OtaAdmin;
use super::error::Disposition;
use super::install::{Installed, Installer, OtaEvent, Reporter};
use super::source::{Answer, Origin, UpdateRequest, trial_answer};
use super::state::{Outcome, State};
use super::{OtaError, SignedManifest, manifest};
use crate::alert::Alerts;
use base64::Engine as _;
use firmware_bridge::proto::VERSION;
use firmware_bridge::proto::json;
use firmware_bridge::proto::ota::{OtaPhase, OtaProgress, OtaResult, OtaStatus};
use rumqttc::{AsyncClient, QoS};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The least time between two `ota_progress` messages while downloading.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// The MQTT update source of the running node.
#[derive(Clone)]
pub struct MqttUpdates {
    installer: Installer,
    client: AsyncClient,
    reply_topic: String,
    admin: OtaAdmin,
    alerts: Alerts,
}

impl MqttUpdates {
    /// Answers on `wms/{site}/gateway/{node_id}/reply` through `client`; restarts through
    /// `admin` (only a node the launcher started) and keeps the OTA alerts in `alerts` in
    /// step with each request's outcome.
    pub fn new(
        installer: Installer,
        client: AsyncClient,
        site: &str,
        node_id: &str,
        admin: OtaAdmin,
        alerts: Alerts,
    ) -> Self {
        MqttUpdates {
            installer,
            client,
            reply_topic: format!("wms/{site}/gateway/{node_id}/reply"),
            admin,
            alerts,
        }
    }

    /// Answers the trial outcome owed from before the restart, then handles the payloads
    /// published on the node's `cmd` topic until `token` is cancelled (an update in progress
    /// stops there; its partial download is resumed by the next request).
    pub async fn run(
        self,
        mut commands: mpsc::Receiver<Vec<u8>>,
        token: CancellationToken,
    ) -> Result<(), std::convert::Infallible> {
        self.answer_trial_once().await;
        let mut running = tokio::task::JoinSet::new();
        loop {
            let payload = tokio::select! {
                // Shutdown: a download in progress stops; its partial file stays.
                _ = token.cancelled() => break,
                // The next command.
                p = commands.recv() => match p {
                    Some(p) => p,
                    None => break,
                },
                // Reap finished requests.
                Some(_) = running.join_next(), if !running.is_empty() => continue,
            };
            let this = self.clone();
            running.spawn(async move { this.handle(payload).await });
        }
        running.abort_all();
        Ok(())
    }

    /// Publishes the outcome of the trial that the last MQTT request installed, once.
    async fn answer_trial_once(&self) {
        let paths = self.installer.options().paths();
        let Ok(state) = State::load(&paths) else {
            return;
        };
        if state.request_answered {
            return;
        }
        let Some((id, outcome)) = trial_answer(&state) else {
            return;
        };
        let result = outcome_result(id, outcome);
        tracing::info!(re = id, status = %result.status, "answering the OTA request that installed this trial");
        self.send_result(result).await;
        if let Err(e) = State::update(&paths, |s| {
            s.request_answered = true;
            Ok(())
        }) {
            tracing::warn!("cannot record that the OTA request was answered: {e}");
        }
    }

    /// One `cmd` payload.
    async fn handle(&self, payload: Vec<u8>) {
        let msg = match json::decode_ota_update(&payload) {
            Ok(m) => m,
            Err(e) => {
                let re = peek_request_id(&payload);
                tracing::warn!(re = ?re, error = %e, "OTA command refused");
                counted("refused");
                self.send_result(OtaResult {
                    v: VERSION,
                    re,
                    version: None,
                    status: OtaStatus::Refused,
                    error: Some(e.to_string()),
                })
                .await;
                return;
            }
        };
        if let Some(answer) = self.answer_again(&msg.id) {
            tracing::info!(re = %msg.id, status = %answer.status, "OTA request seen before: answered from the state");
            self.send_result(answer).await;
            return;
        }
        let Ok(manifest) = base64::engine::general_purpose::STANDARD.decode(&msg.manifest) else {
            counted("refused");
            self.send_result(OtaResult {
                v: VERSION,
                re: Some(msg.id),
                version: None,
                status: OtaStatus::Refused,
                error: Some("field `manifest` is not base64".into()),
            })
            .await;
            return;
        };
        let request = UpdateRequest {
            signed: SignedManifest {
                manifest,
                signature: manifest::decode_signature(&msg.signature).unwrap_or_default(),
            },
            force: msg.force.unwrap_or(false),
            origin: Origin::Mqtt { id: msg.id.clone() },
        };
        // Only a verified manifest's version is ever repeated back.
        let version = self
            .installer
            .options()
            .public_keys
            .verify(&request.signed)
            .ok()
            .map(|m| m.version);
        tracing::info!(re = %msg.id, version = ?version, "OTA update requested over MQTT");
        let answer = MqttAnswer {
            updates: self,
            re: msg.id.clone(),
            version,
            last_progress: Mutex::new(None),
        };
        let result = self.installer.handle(&request, &answer).await;
        // A refusal or failure is an alert now, not at the next periodic look.
        self.admin.raise_alerts(&self.alerts);
        let Ok(installed) = result else {
            return;
        };
        if !self.admin.launched() {
            tracing::warn!(version = %installed.version, "update installed over MQTT, but this node was not started by `wms-node launch`: restart it through the launcher to boot it");
            return;
        }
        answer.progress(OtaPhase::Restarting, None, None);
        tracing::info!(version = %installed.version, "restarting to boot the update on trial");
        self.admin.restart_for_update().await;
    }

    /// The answer to a request already seen (same `id` as the last installed update).
    fn answer_again(&self, id: &str) -> Option<OtaResult> {
        let state = State::load(&self.installer.options().paths()).ok()?;
        if state.request_id.as_deref() != Some(id) {
            return None;
        }
        if let Some(t) = &state.trial {
            return Some(OtaResult {
                v: VERSION,
                re: Some(id.to_owned()),
                version: Some(t.build.version.clone()),
                status: OtaStatus::Installed,
                error: None,
            });
        }
        trial_answer(&state).map(|(id, o)| outcome_result(id, o))
    }

    async fn send_result(&self, r: OtaResult) {
        match json::to_vec(&r) {
            Ok(bytes) => self.send(bytes).await,
            Err(e) => tracing::error!(error = %e, "cannot encode an ota_result"),
        }
    }

    async fn send(&self, payload: Vec<u8>) {
        if let Err(e) = self
            .client
            .publish(self.reply_topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
        {
            tracing::warn!(error = %e, "cannot publish an OTA answer");
        }
    }

    /// For the reporter, which may not wait: the session's request queue is large.
    fn try_send(&self, payload: Vec<u8>) {
        if let Err(e) =
            self.client
                .try_publish(self.reply_topic.clone(), QoS::AtLeastOnce, false, payload)
        {
            tracing::warn!(error = %e, "cannot publish an OTA answer");
        }
    }
}

/// `ota_result` for a finished trial.
fn outcome_result(id: &str, outcome: &Outcome) -> OtaResult {
    let (status, version, error) = match outcome {
        Outcome::Committed { version, .. } => (OtaStatus::Committed, Some(version.clone()), None),
        Outcome::RolledBack {
            version, reason, ..
        } => (
            OtaStatus::RolledBack,
            Some(version.clone()),
            Some(reason.clone()),
        ),
        Outcome::Installed { version, .. } => (OtaStatus::Installed, Some(version.clone()), None),
        Outcome::Failed {
            version, reason, ..
        } => (OtaStatus::Failed, version.clone(), Some(reason.clone())),
    };
    OtaResult {
        v: VERSION,
        re: Some(id.to_owned()),
        version,
        status,
        error: error.map(json::fit_text),
    }
}

/// The `id` of a payload that is not a valid `ota_update`, when one can be read.
fn peek_request_id(payload: &[u8]) -> Option<String> {
    json::peek_string(payload, &["id"])
}

fn counted(status: &'static str) {
    metrics::counter!("wms_node_ota_requests_total", "source" => "mqtt", "status" => status)
        .increment(1);
}

/// Answers one request on `reply`.
struct MqttAnswer<'a> {
    updates: &'a MqttUpdates,
    re: String,
    version: Option<String>,
    last_progress: Mutex<Option<Instant>>,
}

impl MqttAnswer<'_> {
    fn progress(&self, phase: OtaPhase, done: Option<u64>, total: Option<u64>) {
        let p = OtaProgress {
            v: VERSION,
            re: self.re.clone(),
            phase,
            done,
            total,
        };
        if let Ok(bytes) = json::to_vec(&p) {
            self.updates.try_send(bytes);
        }
    }
}

impl Reporter for MqttAnswer<'_> {
    fn report(&self, event: &OtaEvent) {
        match event {
            OtaEvent::Accepted { size, .. } => {
                self.progress(OtaPhase::Downloading, Some(0), Some(*size));
            }
            OtaEvent::Downloading { done, total } => {
                let mut last = self.last_progress.lock().unwrap_or_else(|p| p.into_inner());
                if done == total || last.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
                    *last = Some(Instant::now());
                    self.progress(OtaPhase::Downloading, Some(*done), Some(*total));
                }
            }
            OtaEvent::Retrying { .. } => self.progress(OtaPhase::Retrying, None, None),
            OtaEvent::Checking => self.progress(OtaPhase::Verifying, None, None),
            OtaEvent::Installed { .. } => {}
        }
    }
}

impl Answer for MqttAnswer<'_> {
    fn finished(&self, result: &Result<Installed, OtaError>) {
        let r = match result {
            Ok(i) => OtaResult {
                v: VERSION,
                re: Some(self.re.clone()),
                version: Some(i.version.clone()),
                status: OtaStatus::Installed,
                error: None,
            },
            Err(e) => OtaResult {
                v: VERSION,
                re: Some(self.re.clone()),
                version: self.version.clone(),
                status: match e.disposition() {
                    Disposition::Refused => OtaStatus::Refused,
                    Disposition::Retry | Disposition::Local => OtaStatus::Failed,
                },
                error: Some(json::fit_text(e.to_string())),
            },
        };
        counted(r.status.as_str());
        match json::to_vec(&r) {
            Ok(bytes) => self.updates.try_send(bytes),
            Err(e) => tracing::error!(error = %e, "cannot encode an ota_result"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_read_from_a_bad_payload_when_it_is_one() {
        assert_eq!(
            peek_request_id(br#"{"type":"ota_update","id":"r-1","manifest":5}"#),
            Some("r-1".into())
        );
        assert_eq!(peek_request_id(br#"{"id":7}"#), None);
        assert_eq!(peek_request_id(br#"{"id":"a\nb"}"#), None);
        assert_eq!(peek_request_id(b"\xff{"), None);
        assert_eq!(peek_request_id(&[b'x'; 70_000]), None);
    }

    #[test]
    fn a_finished_trial_is_answered_with_its_reason() {
        let r = outcome_result(
            "r-1",
            &Outcome::RolledBack {
                version: "0.3.0".into(),
                reason: "x".repeat(2000),
                at_ms: 1,
            },
        );
        assert_eq!(r.status, OtaStatus::RolledBack);
        assert_eq!(r.re.as_deref(), Some("r-1"));
        assert!(r.error.unwrap().len() <= firmware_bridge::proto::MAX_TEXT_LEN);
    }
}
