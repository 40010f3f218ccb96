//! `ota/state.json`: which slot holds what, the trial in progress, the last outcome.
//!
//! The launcher of one release reads what the installer of another wrote, so this file is
//! a contract between releases: format 1, fields only ever added (readers ignore unknown
//! ones and default missing ones). It is small and written whole, atomically and durably
//! ([`super::files::write_atomic`]), under the `lock` file's `flock`, so each write is one
//! step of the state diagram in `ota/mod.rs` and a power cut leaves the step before or after.
//!
//! Times are wall-clock milliseconds for display only: no decision depends on the clock.

use super::files::{self, Lock};
use super::{OtaError, Paths};
use serde::{Deserialize, Serialize};

/// The format this build writes.
pub const FORMAT: u32 = 1;

/// One of the two slots under `ota/slots/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// `slots/a`.
    A,
    /// `slots/b`.
    B,
}

impl Slot {
    /// `"a"` or `"b"`.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A build in a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotBuild {
    /// Where it is.
    pub slot: Slot,
    /// Its version (the manifest's, which its gate confirmed for a committed build).
    pub version: String,
    /// The artifact's SHA-256.
    pub sha256: String,
    /// The key that signed its manifest.
    #[serde(default)]
    pub key_id: String,
    /// When it was installed (display only).
    #[serde(default)]
    pub at_ms: u64,
}

/// An installed update on trial: the launcher runs its gate at the next start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// The build on trial.
    pub build: SlotBuild,
    /// Trial starts so far (counted, fsynced, before each gate run). A start that ends
    /// without a verdict (power cut, the launcher killed) is counted once and retried.
    #[serde(default)]
    pub attempts: u32,
    /// Set once the launcher decided to roll back, before it restores anything, so a power
    /// cut during the rollback finishes the rollback at the next start.
    #[serde(default)]
    pub verdict: Option<String>,
}

/// How the last update ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Installed and waiting for its trial boot.
    Installed {
        /// The version.
        version: String,
        /// When.
        at_ms: u64,
    },
    /// Passed its gate and committed: it stays.
    Committed {
        /// The version.
        version: String,
        /// When.
        at_ms: u64,
    },
    /// Failed its trial; the previous build runs again.
    RolledBack {
        /// The version that failed.
        version: String,
        /// Why (the gate's failed check, the exit status, the deadline…).
        reason: String,
        /// When.
        at_ms: u64,
    },
    /// Refused or failed before anything was installed (signature, hash, download…).
    Failed {
        /// The manifest's version, when it could be read.
        version: Option<String>,
        /// Why.
        reason: String,
        /// When.
        at_ms: u64,
        /// Refused (signature, key, size, hash, downgrade) rather than failed (the download
        /// gave up, a disk error). Absent in files of earlier releases: failed.
        #[serde(default)]
        refused: bool,
    },
}

impl Outcome {
    /// Whether this outcome is a failure an operator should hear about.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::RolledBack { .. } | Outcome::Failed { .. })
    }
}

/// A download in progress (its bytes are in `download/<sha256>.part`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Download {
    /// The manifest's version.
    pub version: String,
    /// The manifest's size.
    pub size: u64,
    /// The manifest's SHA-256 (names the partial file).
    pub sha256: String,
}

/// What the launcher started last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Launched {
    /// The launcher's own (the package's) binary.
    pub package_path: String,
    /// Its version.
    pub package_version: String,
    /// The slot it started, `None` for the package's binary.
    pub slot: Option<Slot>,
    /// The version it started.
    pub version: String,
    /// When (display only).
    pub at_ms: u64,
}

/// The whole state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// The format of this file ([`FORMAT`]).
    pub format: u32,
    /// The committed OTA build: runs when it is newer than the package's binary.
    pub committed: Option<SlotBuild>,
    /// The build that ran before the committed one, still in the other slot (informational:
    /// there is no rollback after commit).
    pub previous: Option<SlotBuild>,
    /// An installed update waiting for, or in, its trial.
    pub trial: Option<Trial>,
    /// A download in progress.
    pub download: Option<Download>,
    /// How the last update ended.
    pub last: Option<Outcome>,
    /// What the launcher started last.
    pub launched: Option<Launched>,
    /// The request (an MQTT `ota_update` id) the last installed update answers, so its
    /// trial's outcome can be reported to it after the restart.
    pub request_id: Option<String>,
    /// Whether the trial outcome was sent to that request (once, at the first start after
    /// the trial; a request sent again with the same id is answered from this state).
    pub request_answered: bool,
    /// The floor was told to wait (`pause`) before the restart into an update; the next
    /// `run` tells it to carry on, then clears this.
    pub floor_paused: bool,
}

impl State {
    /// Reads the state; a missing file is the empty state.
    pub fn load(paths: &Paths) -> Result<State, OtaError> {
        let path = paths.state();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OtaError::State {
                path,
                reason: format!("not readable as OTA state ({e})"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(OtaError::io("cannot read", path, e)),
        }
    }

    /// Writes the state whole, atomically and durably.
    pub fn save(&self, paths: &Paths) -> Result<(), OtaError> {
        let mut s = self.clone();
        s.format = FORMAT;
        let mut bytes = serde_json::to_vec_pretty(&s).map_err(|e| OtaError::State {
            path: paths.state(),
            reason: e.to_string(),
        })?;
        bytes.push(b'\n');
        files::write_atomic(&paths.state(), &bytes, 0o600)
    }

    /// Reads, changes and writes the state under the state lock; returns the new state.
    pub fn update(
        paths: &Paths,
        change: impl FnOnce(&mut State) -> Result<(), OtaError>,
    ) -> Result<State, OtaError> {
        let _lock = Lock::wait(&paths.state_lock())?;
        let mut s = State::load(paths)?;
        change(&mut s)?;
        s.format = FORMAT;
        s.save(paths)?;
        Ok(s)
    }

    /// The slot an update is installed into: the one the committed build is not in.
    pub fn inactive_slot(&self) -> Slot {
        self.committed.as_ref().map_or(Slot::A, |c| c.slot.other())
    }
}

/// Which build the launcher runs when no trial is due: the committed slot if its version is
/// newer than the package's, else the package's binary (also when a version does not
/// parse: the package's binary is the one that was installed and checked by the package
/// manager).
pub fn choose<'a>(state: &'a State, package_version: &str) -> Option<&'a SlotBuild> {
    let committed = state.committed.as_ref()?;
    let slot = semver::Version::parse(&committed.version).ok()?;
    let package = semver::Version::parse(package_version).ok()?;
    (slot > package).then_some(committed)
}

/// The version that runs when no trial is due (the one an update is compared against).
pub fn running_version(state: &State, package_version: &str) -> String {
    choose(state, package_version).map_or_else(|| package_version.to_owned(), |b| b.version.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(slot: Slot, version: &str) -> SlotBuild {
        SlotBuild {
            slot,
            version: version.into(),
            sha256: "0".repeat(64),
            key_id: String::new(),
            at_ms: 0,
        }
    }

    #[test]
    fn the_newer_of_package_and_committed_slot_runs() {
        let mut s = State::default();
        assert!(choose(&s, "0.1.0").is_none());
        s.committed = Some(build(Slot::A, "0.2.0"));
        assert_eq!(choose(&s, "0.1.0").map(|b| b.slot), Some(Slot::A));
        // A package upgrade to the same or a newer version takes over.
        assert!(choose(&s, "0.2.0").is_none());
        assert!(choose(&s, "0.3.0").is_none());
        assert_eq!(running_version(&s, "0.1.0"), "0.2.0");
        assert_eq!(running_version(&s, "0.3.0"), "0.3.0");
        // Pre-releases order as semver says.
        s.committed = Some(build(Slot::B, "0.2.0-rc.1"));
        assert!(choose(&s, "0.2.0").is_none());
        assert!(choose(&s, "0.1.9").is_some());
        // A version that does not parse never wins.
        s.committed = Some(build(Slot::B, "latest"));
        assert!(choose(&s, "0.1.0").is_none());
    }

    #[test]
    fn the_inactive_slot_is_the_one_not_committed() {
        let mut s = State::default();
        assert_eq!(s.inactive_slot(), Slot::A);
        s.committed = Some(build(Slot::A, "0.2.0"));
        assert_eq!(s.inactive_slot(), Slot::B);
    }

    #[test]
    fn state_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        assert_eq!(State::load(&paths).unwrap(), State::default());
        let s = State::update(&paths, |s| {
            s.trial = Some(Trial {
                build: build(Slot::B, "0.3.0"),
                attempts: 1,
                verdict: None,
            });
            s.last = Some(Outcome::Installed {
                version: "0.3.0".into(),
                at_ms: 5,
            });
            Ok(())
        })
        .unwrap();
        assert_eq!(State::load(&paths).unwrap(), s);
        assert_eq!(s.format, FORMAT);
    }

    #[test]
    fn unknown_fields_from_a_newer_release_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(paths.root()).unwrap();
        std::fs::write(
            paths.state(),
            br#"{"format":2,"committed":{"slot":"b","version":"0.4.0","sha256":"x","future":1},"wishes":[]}"#,
        )
        .unwrap();
        let s = State::load(&paths).unwrap();
        assert_eq!(s.committed.unwrap().slot, Slot::B);
    }

    #[test]
    fn a_damaged_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(paths.root()).unwrap();
        std::fs::write(paths.state(), b"{\"committed\":").unwrap();
        let e = State::load(&paths).unwrap_err().to_string();
        assert!(e.contains("state.json"), "{e}");
    }
}
