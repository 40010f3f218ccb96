//! Where updates come from: the one interface every update source feeds.
//!
//! A source (`wms-node ota apply`, an `ota_update` on the gateway's MQTT `cmd` topic
//! ([`super::mqtt`]), later a hawkBit DDI or Mender poller) turns what it received into an
//! [`UpdateRequest`] — the manifest's exact bytes and the signature as they arrived, whether
//! it is forced, and its [`Origin`] — and answers through its [`Answer`]: progress while the
//! installer works, then the result. [`Installer::handle`] is the only way in; the installer
//! and the launcher never learn which source an update came from. A new source is a variant
//! of [`Origin`] and an implementation of [`Answer`], nothing else.
//!
//! A request with an id (MQTT's `id`; a hawkBit action id) keeps it in the OTA state with
//! the update it installed, so the trial's outcome, known only after the restart into the
//! new build, still answers it ([`trial_answer`]).

use super::install::{ApplyOptions, Installed, Installer, Reporter};
use super::state::{Outcome, State};
use super::{OtaError, SignedManifest};

/// Where an update request came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `wms-node ota apply MANIFEST|URL` (answers on the terminal).
    Cli,
    /// An `ota_update` on `wms/{site}/gateway/{node}/cmd`; answered on `…/reply` with `re`.
    Mqtt {
        /// The message's `id`.
        id: String,
    },
}

impl Origin {
    /// The id the request is answered under, if the source has one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Origin::Cli => None,
            Origin::Mqtt { id } => Some(id),
        }
    }
}

/// An update as its source hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRequest {
    /// The manifest's exact bytes and the signature, as they arrived (not yet verified).
    pub signed: SignedManifest,
    /// Install even an older version or the running one again.
    pub force: bool,
    /// Where it came from.
    pub origin: Origin,
}

/// The answering side of a source: progress while the installer works ([`Reporter`]), then
/// the result. Must be quick: progress is reported for every chunk downloaded.
pub trait Answer: Reporter {
    /// How the request ended: installed (it boots on trial at the next start), or why not.
    fn finished(&self, result: &Result<Installed, OtaError>);
}

impl Installer {
    /// The one entry for every source: verifies (the signature first, before anything is
    /// downloaded), downloads, checks and installs, reporting to `answer`; see
    /// [`Installer::apply`].
    pub async fn handle(
        &self,
        request: &UpdateRequest,
        answer: &dyn Answer,
    ) -> Result<Installed, OtaError> {
        let options = ApplyOptions {
            force: request.force,
            request_id: request.origin.request_id().map(str::to_owned),
        };
        let result = self.apply(&request.signed, options, answer).await;
        answer.finished(&result);
        result
    }
}

/// What the request that installed the last update is owed, once its trial ended: its id and
/// the outcome (`Committed` or `RolledBack`). `None` while the trial is pending, when the
/// update came without an id, or when another attempt has happened since.
pub fn trial_answer(state: &State) -> Option<(&str, &Outcome)> {
    let id = state.request_id.as_deref()?;
    match &state.last {
        Some(o @ (Outcome::Committed { .. } | Outcome::RolledBack { .. }))
            if state.trial.is_none() =>
        {
            Some((id, o))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ota::Slot;
    use crate::ota::state::{SlotBuild, Trial};

    #[test]
    fn only_a_finished_trial_of_a_request_is_owed_an_answer() {
        let mut s = State::default();
        assert!(trial_answer(&s).is_none());
        s.request_id = Some("rollout-1".into());
        s.last = Some(Outcome::Installed {
            version: "0.2.0".into(),
            at_ms: 1,
        });
        s.trial = Some(Trial {
            build: SlotBuild {
                slot: Slot::A,
                version: "0.2.0".into(),
                sha256: String::new(),
                key_id: String::new(),
                at_ms: 1,
            },
            attempts: 0,
            verdict: None,
        });
        assert!(trial_answer(&s).is_none(), "the trial is still pending");
        s.trial = None;
        s.last = Some(Outcome::Committed {
            version: "0.2.0".into(),
            at_ms: 2,
        });
        assert_eq!(trial_answer(&s).map(|(id, _)| id), Some("rollout-1"));
        s.last = Some(Outcome::Failed {
            version: None,
            reason: "x".into(),
            at_ms: 3,
            refused: false,
        });
        assert!(trial_answer(&s).is_none(), "a later attempt failed");
        assert_eq!(Origin::Cli.request_id(), None);
    }
}
