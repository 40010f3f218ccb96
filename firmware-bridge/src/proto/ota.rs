//! Over-the-air updates of the gateway itself, on the gateway's own topics
//! (`wms/{site}/gateway/{id}/cmd` and `…/reply`): from a fleet tool to the node and back.
//!
//! ```text
//! cmd   {"type":"ota_update","v":1,"id":"rollout-42","manifest":"<base64 of the exact bytes>",
//!        "signature":"<base64 ed25519>","force":false?}
//! reply {"type":"ota_progress","v":1,"re":"rollout-42","phase":"downloading","done":1048576,"total":11534336}
//! reply {"type":"ota_result","v":1,"re":"rollout-42","version":"0.3.0","status":"installed"}
//! reply {"type":"ota_result","v":1,"re":"rollout-42","version":"0.3.0","status":"committed"}
//! reply {"type":"ota_result","v":1,"re":"rollout-42","version":"0.3.0","status":"rolled_back",
//!        "error":"gate check failed: store: cannot open: …"}
//! ```
//!
//! The manifest travels as the exact bytes that were signed (base64), never re-encoded JSON,
//! because the ed25519 signature covers those bytes (detached, as minisign and signify do).
//! The node verifies it against its configured keys before it downloads anything; a message
//! without a valid signature is answered `refused`. These messages are for the gateway
//! class only, never for scanners or printers; see docs/PROTOCOL.md and docs/OTA.md.

use alloc::string::String;
use core::fmt;

use serde::{Deserialize, Serialize};

use super::{Channel, Invalid, Message, Validate, check_id, version_default};

/// Longest base64 text accepted in `manifest` (a manifest is ~250 bytes; 16 KiB is its limit).
pub const MAX_MANIFEST_B64: usize = 22 * 1024;
/// Longest base64 text accepted in `signature` (64 bytes encode to 88 characters).
pub const MAX_SIGNATURE_B64: usize = 128;

wire_enum! {
    /// How far an update has come.
    pub enum OtaPhase {
        /// The signature verified; the artifact is being downloaded (`done`/`total` bytes).
        Downloading = "downloading",
        /// A download attempt broke; the next one resumes (HTTP Range).
        Retrying = "retrying",
        /// Checking size and SHA-256.
        Verifying = "verifying",
        /// The node stops to boot the update on trial.
        Restarting = "restarting",
    }
}

wire_enum! {
    /// How an update ended (or where it rests).
    pub enum OtaStatus {
        /// In the inactive slot; boots on trial at the next start.
        Installed = "installed",
        /// Passed its self-test on trial; it stays (no rollback from here on).
        Committed = "committed",
        /// Failed its trial; the previous build runs again. `error` says why.
        RolledBack = "rolled_back",
        /// Not accepted: signature, key, downgrade, hash or size. Nothing was installed.
        Refused = "refused",
        /// Could not be completed (the download gave up, the disk failed). Nothing was
        /// installed; sending it again resumes the download.
        Failed = "failed",
    }
}

/// `cmd` (gateway) · Apply this signed update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaUpdate {
    /// Protocol version.
    #[serde(default = "version_default")]
    pub v: u16,
    /// The request's id; progress and results answer with it as `re`.
    pub id: String,
    /// The manifest's exact bytes, base64 (standard alphabet, padded).
    pub manifest: String,
    /// The ed25519 signature over those bytes, base64.
    pub signature: String,
    /// Install even an older version or the running one again.
    pub force: Option<bool>,
}

/// `reply` (gateway) · How far an update has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaProgress {
    /// Protocol version.
    #[serde(default = "version_default")]
    pub v: u16,
    /// The [`OtaUpdate::id`] answered.
    pub re: String,
    /// The phase.
    pub phase: OtaPhase,
    /// Bytes on disk while downloading.
    pub done: Option<u64>,
    /// The artifact's size.
    pub total: Option<u64>,
}

/// `reply` (gateway) · How an update ended. After a restart the node sends the trial's
/// outcome (`committed` or `rolled_back`) with the `re` it was installed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaResult {
    /// Protocol version.
    #[serde(default = "version_default")]
    pub v: u16,
    /// The [`OtaUpdate::id`] answered; absent when the request could not be read.
    pub re: Option<String>,
    /// The manifest's version, when it could be read.
    pub version: Option<String>,
    /// The outcome.
    pub status: OtaStatus,
    /// Why, for `rolled_back`, `refused` and `failed` (no secrets: URLs without queries).
    pub error: Option<String>,
}

impl Message for OtaUpdate {
    const TYPE: Option<&'static str> = Some("ota_update");
    const CHANNEL: Channel = Channel::Cmd;
    fn version(&self) -> u16 {
        self.v
    }
}

impl Message for OtaProgress {
    const TYPE: Option<&'static str> = Some("ota_progress");
    const CHANNEL: Channel = Channel::Reply;
    fn version(&self) -> u16 {
        self.v
    }
}

impl Message for OtaResult {
    const TYPE: Option<&'static str> = Some("ota_result");
    const CHANNEL: Channel = Channel::Reply;
    fn version(&self) -> u16 {
        self.v
    }
}

fn check_b64(field: &'static str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.is_empty() {
        return Err(Invalid {
            field,
            problem: "is empty",
        });
    }
    if s.len() > max {
        return Err(Invalid {
            field,
            problem: "is too long",
        });
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(Invalid {
            field,
            problem: "is not base64",
        });
    }
    Ok(())
}

impl Validate for OtaUpdate {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("id", &self.id)?;
        check_b64("manifest", &self.manifest, MAX_MANIFEST_B64)?;
        check_b64("signature", &self.signature, MAX_SIGNATURE_B64)
    }
}

impl Validate for OtaProgress {
    fn validate(&self) -> Result<(), Invalid> {
        check_id("re", &self.re)
    }
}

impl Validate for OtaResult {
    fn validate(&self) -> Result<(), Invalid> {
        match &self.re {
            Some(re) => check_id("re", re),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::json;

    #[test]
    fn an_update_round_trips_and_its_fields_are_checked() {
        let m = OtaUpdate {
            v: 1,
            id: "rollout-42".into(),
            manifest: "eyJ2ZXJzaW9uIjoiMC4zLjAifQo=".into(),
            signature: "AAAA".into(),
            force: None,
        };
        let bytes = json::to_vec(&m).unwrap();
        let text = core::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""type":"ota_update""#), "{text}");
        assert!(
            !text.contains("force"),
            "absent optionals are left out: {text}"
        );
        assert_eq!(json::decode_ota_update(&bytes).unwrap(), m);

        for (field, bad) in [("manifest", "not base64!"), ("signature", "")] {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            v[field] = bad.into();
            let e = json::decode_ota_update(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
        let wrong = br#"{"type":"print","v":1,"job_id":"j","format":"zpl","data":"x"}"#;
        assert!(json::decode_ota_update(wrong).is_err());
        assert!(json::decode_ota_update(b"\xff").is_err());
    }

    #[test]
    fn results_and_progress_encode_with_their_type() {
        let r = OtaResult {
            v: 1,
            re: Some("rollout-42".into()),
            version: Some("0.3.0".into()),
            status: OtaStatus::RolledBack,
            error: Some("gate check failed: store".into()),
        };
        let text = String::from_utf8(json::to_vec(&r).unwrap()).unwrap();
        assert!(text.contains(r#""status":"rolled_back""#), "{text}");
        assert!(text.contains(r#""type":"ota_result""#), "{text}");
        let p = OtaProgress {
            v: 1,
            re: "rollout-42".into(),
            phase: OtaPhase::Downloading,
            done: Some(1),
            total: Some(2),
        };
        let text = String::from_utf8(json::to_vec(&p).unwrap()).unwrap();
        assert!(text.contains(r#""phase":"downloading""#), "{text}");
    }
}
