//! [`Installer`]: the one path from a signed manifest to an update waiting for its trial.
//!
//! Every update source calls [`Installer::apply`] with the [`SignedManifest`] as it arrived
//! and a [`Reporter`] for progress (the CLI draws a bar; the MQTT path publishes
//! `ota_progress` on the gateway's `reply`; a hawkBit client would send DDI feedback).
//!
//! Order matters, and nothing is installed until every check passed:
//! 1. the signature over the manifest's exact bytes (fail closed) — before any byte is
//!    downloaded from the URL it names;
//! 2. not a downgrade or the running version (unless forced), no trial pending;
//! 3. the download (resumes; a partial file survives restarts);
//! 4. size and SHA-256 of the file on disk;
//! 5. the file becomes the inactive slot's binary (fsync, rename, fsync folder), and the
//!    state records the trial (one atomic write: the switch).
//!
//! A refusal or failure is recorded as the last outcome (for `ota status` and the alert),
//! and leaves the slots and the committed build untouched.

use super::download::{self, Policy, Progress};
use super::files::{self, Lock};
use super::state::{Download, Outcome, SlotBuild, State, Trial};
use super::{Manifest, OtaError, OtaOptions, Paths, SignedManifest, Slot};
use sha2::{Digest, Sha256};
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

/// What [`Installer::apply`] is asked to do beyond the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Install even if the version is older than, or the same as, the running one.
    pub force: bool,
    /// The id of the request this update answers (an MQTT `ota_update`'s `id`), kept in the
    /// state so that the trial's outcome, known only after the restart, can answer it too.
    pub request_id: Option<String>,
}

/// What happened so far, for whoever shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtaEvent {
    /// The signature verified and the version is acceptable.
    Accepted {
        /// The version.
        version: String,
        /// The artifact's size.
        size: u64,
    },
    /// Bytes on disk.
    Downloading {
        /// So far.
        done: u64,
        /// The artifact's size.
        total: u64,
    },
    /// A download attempt failed; the next one resumes.
    Retrying {
        /// Attempts in a row without progress.
        attempt: u32,
        /// The pause before the next.
        after: Duration,
        /// Why.
        error: String,
    },
    /// Checking size and SHA-256.
    Checking,
    /// In the slot, waiting for the trial boot.
    Installed {
        /// The version.
        version: String,
        /// The slot.
        slot: Slot,
    },
}

/// Receives [`OtaEvent`]s while an update is applied. Must be quick (it is called for
/// every chunk received).
pub trait Reporter: Send + Sync {
    /// One event.
    fn report(&self, event: &OtaEvent);
}

/// A reporter that drops everything.
impl Reporter for () {
    fn report(&self, _: &OtaEvent) {}
}

/// An installed update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Its version.
    pub version: String,
    /// The slot it is in.
    pub slot: Slot,
}

/// Applies signed manifests. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Installer {
    opts: OtaOptions,
    /// The version of the package's binary (the launcher), against which a committed
    /// slot's version is compared to know what runs.
    package_version: String,
    client: reqwest::Client,
    backoff: Duration,
}

impl Installer {
    /// An installer for this node. `package_version` is the version of the package's binary
    /// when known (the launcher records it), else this build's.
    pub fn new(opts: OtaOptions) -> Result<Installer, OtaError> {
        let paths = opts.paths();
        let package_version = State::load(&paths)
            .ok()
            .and_then(|s| s.launched.map(|l| l.package_version))
            .unwrap_or_else(|| crate::VERSION.to_owned());
        let client = reqwest::Client::builder()
            .connect_timeout(opts.connect_timeout)
            // Range requests on a compressed body would count compressed bytes.
            .no_gzip()
            .user_agent(concat!("wms-node-ota/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OtaError::Download {
                url: String::new(),
                reason: format!("cannot build the HTTP client: {e}"),
                retryable: false,
            })?;
        Ok(Installer {
            opts,
            package_version,
            client,
            backoff: Duration::from_secs(1),
        })
    }

    /// The first pause between download attempts (tests shorten it).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The options it was made with.
    pub fn options(&self) -> &OtaOptions {
        &self.opts
    }

    /// Verifies, downloads, checks and installs `signed` into the inactive slot; the
    /// launcher boots it on trial at the next start. Nothing is installed on any error.
    pub async fn apply(
        &self,
        signed: &SignedManifest,
        options: ApplyOptions,
        reporter: &dyn Reporter,
    ) -> Result<Installed, OtaError> {
        let paths = self.opts.paths();
        let result = self.apply_inner(&paths, signed, options, reporter).await;
        if let Err(e) = &result
            && !matches!(e, OtaError::Busy { .. })
        {
            let version = super::TrustedKeys::verify(&self.opts.public_keys, signed)
                .ok()
                .map(|m| m.version);
            let reason = e.to_string();
            tracing::warn!(version = ?version, "update not installed: {reason}");
            // Best effort: the error itself is what the caller reports.
            let _ = State::update(&paths, |s| {
                s.last = Some(Outcome::Failed {
                    version,
                    reason,
                    at_ms: super::now_ms(),
                });
                Ok(())
            });
        }
        result
    }

    async fn apply_inner(
        &self,
        paths: &Paths,
        signed: &SignedManifest,
        options: ApplyOptions,
        reporter: &dyn Reporter,
    ) -> Result<Installed, OtaError> {
        let manifest = self.opts.public_keys.verify(signed)?;
        let _lock = Lock::try_take(&paths.apply_lock())?.ok_or_else(|| OtaError::Busy {
            lock: paths.apply_lock(),
        })?;
        let state = State::load(paths)?;
        if let Some(t) = &state.trial {
            return Err(OtaError::TrialPending {
                version: t.build.version.clone(),
            });
        }
        self.check_version(&state, &manifest, &options)?;
        reporter.report(&OtaEvent::Accepted {
            version: manifest.version.clone(),
            size: manifest.size,
        });
        tracing::info!(version = %manifest.version, size = manifest.size, key_id = %manifest.key_id, "applying a signed update");

        files::create_dir(&paths.download_dir())?;
        let part = paths.partial(&manifest.sha256);
        remove_other_partials(paths, &part);
        State::update(paths, |s| {
            s.download = Some(Download {
                version: manifest.version.clone(),
                size: manifest.size,
                sha256: manifest.sha256.clone(),
            });
            Ok(())
        })?;

        let policy = Policy {
            stall_timeout: self.opts.stall_timeout,
            retries: self.opts.download_retries,
            backoff: self.backoff,
            max_backoff: Duration::from_secs(60),
        };
        let on_progress = |p: Progress| match p {
            Progress::Bytes { done, total } => {
                reporter.report(&OtaEvent::Downloading { done, total })
            }
            Progress::Retrying {
                attempt,
                after,
                error,
            } => reporter.report(&OtaEvent::Retrying {
                attempt,
                after,
                error,
            }),
        };
        download::fetch(
            &self.client,
            &manifest.url,
            manifest.size,
            &part,
            &policy,
            &on_progress,
        )
        .await?;

        reporter.report(&OtaEvent::Checking);
        let checked = {
            let file = part.clone();
            let m = manifest.clone();
            tokio::task::spawn_blocking(move || check_artifact(&file, &m))
                .await
                .map_err(|e| OtaError::io("cannot check", &part, std::io::Error::other(e)))?
        };
        if let Err(e) = checked {
            // A wrong file is never resumed into a right one: the next apply starts over.
            let _ = files::remove(&part);
            let _ = State::update(paths, |s| {
                s.download = None;
                Ok(())
            });
            return Err(e);
        }

        let slot = state.inactive_slot();
        files::install_executable(&part, &paths.slot_binary(slot))?;
        // A store copy left by an earlier trial belongs to that trial, not to this one.
        files::remove(&paths.trial_store_copy())?;
        let build = SlotBuild {
            slot,
            version: manifest.version.clone(),
            sha256: manifest.sha256.clone(),
            key_id: manifest.key_id.clone(),
            at_ms: super::now_ms(),
        };
        // The switch: from this write on, the launcher boots this slot on trial.
        State::update(paths, |s| {
            s.download = None;
            s.trial = Some(Trial {
                build: build.clone(),
                attempts: 0,
                verdict: None,
            });
            s.last = Some(Outcome::Installed {
                version: build.version.clone(),
                at_ms: build.at_ms,
            });
            s.request_id = options.request_id.clone();
            Ok(())
        })?;
        tracing::info!(version = %manifest.version, slot = %slot, "update installed; it boots on trial at the next start");
        reporter.report(&OtaEvent::Installed {
            version: manifest.version.clone(),
            slot,
        });
        Ok(Installed {
            version: manifest.version,
            slot,
        })
    }

    fn check_version(
        &self,
        state: &State,
        manifest: &Manifest,
        options: &ApplyOptions,
    ) -> Result<(), OtaError> {
        if options.force {
            return Ok(());
        }
        let running = super::state::running_version(state, &self.package_version);
        let (Some(new), Ok(old)) = (manifest.semver(), semver::Version::parse(&running)) else {
            // The manifest's version was checked; a running version that does not parse is
            // a development build: only a forced install replaces it.
            return Err(OtaError::Downgrade {
                from: running,
                to: manifest.version.clone(),
            });
        };
        match new.cmp(&old) {
            std::cmp::Ordering::Greater => Ok(()),
            std::cmp::Ordering::Equal => Err(OtaError::SameVersion { version: running }),
            std::cmp::Ordering::Less => Err(OtaError::Downgrade {
                from: running,
                to: manifest.version.clone(),
            }),
        }
    }
}

/// Size and SHA-256 of the downloaded file against the manifest.
fn check_artifact(part: &Path, m: &Manifest) -> Result<(), OtaError> {
    let mut f = std::fs::File::open(part).map_err(|e| OtaError::io("cannot open", part, e))?;
    let len = f
        .metadata()
        .map_err(|e| OtaError::io("cannot read", part, e))?
        .len();
    if len != m.size {
        return Err(OtaError::WrongSize {
            expected: m.size,
            got: len,
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| OtaError::io("cannot read", part, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let got = hex::encode(hasher.finalize());
    if got != m.sha256 {
        return Err(OtaError::WrongHash {
            expected: m.sha256.clone(),
            got,
        });
    }
    Ok(())
}

/// Partial downloads of other artifacts only take space: one download at a time is kept.
fn remove_other_partials(paths: &Paths, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(paths.download_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p != keep && p.extension().is_some_and(|x| x == "part") {
            let _ = files::remove(&p);
        }
    }
}

/// The SHA-256 of a file, hex (for `ota sign`).
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((len, hex::encode(hasher.finalize())))
}
