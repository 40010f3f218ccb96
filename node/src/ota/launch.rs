//! The launcher: what the systemd unit runs (`wms-node launch`). It decides which build
//! runs, runs a trial build's gate, commits or rolls back, then `exec`s the chosen build's
//! `run` (same PID, so `Type=notify` and the watchdog see the node itself).
//!
//! The launcher is the package's binary (`/usr/bin/wms-node`), which OTA never replaces: the
//! verdict on a new build is taken by code that is not the new build. A build that exits
//! with any status, panics, hangs past the deadline, or reports a failed check is rolled
//! back by the launcher, not by itself.
//!
//! ```text
//!  start ─▶ state.json ─▶ trial? ──no──▶ exec newest of (committed slot, package) `run`
//!                          │yes
//!            verdict already recorded? ──yes──▶ finish the rollback ─▶ exec previous
//!                          │no
//!            attempts ≥ trial_attempts? ──yes──▶ roll back ("interrupted N times")
//!                          │no
//!            attempts += 1 (fsynced) ─▶ NEW ota gate (deadline) ─┬─ pass ─▶ commit ─▶ exec NEW
//!                                                                 └─ fail ─▶ roll back ─▶ exec previous
//! ```
//!
//! A power cut or a kill of the launcher during the gate leaves `attempts` counted and no
//! verdict: the next start runs the gate again. So one cut costs one attempt, and a build
//! that takes the whole box down each time it starts is still rolled back after
//! `trial_attempts` starts. Each step is one atomic write of the state, so the launcher
//! resumes at any step. A damaged state file never stops the node: the package's binary runs.

use super::files;
use super::gate::Report;
use super::state::{self, Launched, Outcome, SlotBuild, State};
use super::{OtaError, Paths, Slot};
use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the launcher needs: built by `config/` from a lenient read of the config file (the
/// launcher is an older release than the builds it starts, and must not trip over keys it
/// does not know).
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// `node.data_dir`.
    pub data_dir: PathBuf,
    /// The store file, restored from the trial's copy on a rollback.
    pub store_path: PathBuf,
    /// `ota.gate_timeout`.
    pub gate_timeout: Duration,
    /// `ota.trial_attempts`.
    pub trial_attempts: u32,
}

/// The build the launcher starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Its binary.
    pub binary: PathBuf,
    /// Its slot; `None` for the package's binary.
    pub slot: Option<Slot>,
    /// Its version.
    pub version: String,
}

/// A gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed and the version is the manifest's.
    Pass,
    /// Why not.
    Fail(String),
}

/// Runs a trial build's gate (a real process in production; scripted in unit tests).
pub trait GateRunner {
    /// Runs `binary`'s gate, expecting `version`, with the store copy kept at `store_copy`,
    /// and returns its verdict within `deadline`.
    fn run(&self, binary: &Path, version: &str, store_copy: &Path, deadline: Duration) -> Verdict;
}

/// Decides and prepares what to run; see the module doc. `package` is the launcher's own
/// binary and `package_version` its version.
pub fn prepare(
    opts: &LaunchOptions,
    package: &Path,
    package_version: &str,
    gate: &dyn GateRunner,
) -> Choice {
    let paths = Paths::new(&opts.data_dir);
    let package_choice = Choice {
        binary: package.to_owned(),
        slot: None,
        version: package_version.to_owned(),
    };
    let state = match State::load(&paths) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}; starting the package's build {package_version}");
            return package_choice;
        }
    };
    if let Some(trial) = state.trial.clone()
        && let Err(e) = run_trial(opts, &paths, trial, gate)
    {
        // The state could not be written: the trial cannot be run safely (its attempts
        // would not be counted). Run what was committed.
        tracing::error!("OTA trial not run: {e}");
    }
    let state = State::load(&paths).unwrap_or_default();
    let choice = match state::choose(&state, package_version) {
        Some(b) if paths.slot_binary(b.slot).is_file() => Choice {
            binary: paths.slot_binary(b.slot),
            slot: Some(b.slot),
            version: b.version.clone(),
        },
        Some(b) => {
            tracing::error!(slot = %b.slot, "the committed slot's binary is missing; starting the package's build");
            package_choice
        }
        None => package_choice,
    };
    let record = Launched {
        package_path: package.display().to_string(),
        package_version: package_version.to_owned(),
        slot: choice.slot,
        version: choice.version.clone(),
        at_ms: super::now_ms(),
    };
    if state
        .launched
        .as_ref()
        .map(|l| (&l.package_path, &l.package_version, l.slot, &l.version))
        != Some((
            &record.package_path,
            &record.package_version,
            record.slot,
            &record.version,
        ))
    {
        // Written only when it changed: a box restarting in a loop does not wear its flash.
        if let Err(e) = State::update(&paths, |s| {
            s.launched = Some(record);
            Ok(())
        }) {
            tracing::warn!("cannot record the launched build: {e}");
        }
    }
    choice
}

fn run_trial(
    opts: &LaunchOptions,
    paths: &Paths,
    trial: state::Trial,
    gate: &dyn GateRunner,
) -> Result<(), OtaError> {
    let build = trial.build.clone();
    if let Some(reason) = trial.verdict {
        tracing::warn!(version = %build.version, "finishing the rollback of {}: {reason}", build.version);
        return roll_back(opts, paths, &build, reason);
    }
    if trial.attempts >= opts.trial_attempts {
        let reason = format!(
            "{} trial starts ended without a verdict (power cut, or the launcher was killed)",
            trial.attempts
        );
        return roll_back(opts, paths, &build, reason);
    }
    let binary = paths.slot_binary(build.slot);
    if !binary.is_file() {
        return roll_back(
            opts,
            paths,
            &build,
            format!("slot {} has no binary", build.slot),
        );
    }
    let attempt = trial.attempts + 1;
    State::update(paths, |s| {
        if let Some(t) = s.trial.as_mut() {
            t.attempts = attempt;
        }
        Ok(())
    })?;
    tracing::info!(version = %build.version, slot = %build.slot, attempt, of = opts.trial_attempts, "trial start: running the new build's gate");
    // systemd's start timeout must cover the gate and the start after it.
    let extend = opts.gate_timeout + Duration::from_secs(60);
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::ExtendTimeoutUsec(
            u32::try_from(extend.as_micros()).unwrap_or(u32::MAX),
        ),
        sd_notify::NotifyState::Status("OTA trial: running the new build's gate"),
    ]);
    files::create_dir(&paths.trial_dir())?;
    match gate.run(
        &binary,
        &build.version,
        &paths.trial_store_copy(),
        opts.gate_timeout,
    ) {
        Verdict::Pass => commit(paths, &build),
        Verdict::Fail(reason) => roll_back(opts, paths, &build, reason),
    }
}

fn commit(paths: &Paths, build: &SlotBuild) -> Result<(), OtaError> {
    State::update(paths, |s| {
        s.trial = None;
        let previous = s.committed.replace(build.clone());
        if previous.is_some() {
            s.previous = previous;
        }
        s.last = Some(Outcome::Committed {
            version: build.version.clone(),
            at_ms: super::now_ms(),
        });
        Ok(())
    })?;
    tracing::info!(version = %build.version, slot = %build.slot, "OTA update committed: it passed its gate");
    Ok(())
}

fn roll_back(
    opts: &LaunchOptions,
    paths: &Paths,
    build: &SlotBuild,
    reason: String,
) -> Result<(), OtaError> {
    tracing::error!(version = %build.version, "OTA update rolled back: {reason}");
    // 1. The verdict, before anything is restored: a power cut from here on finishes the
    //    rollback at the next start instead of running the gate again.
    State::update(paths, |s| {
        if let Some(t) = s.trial.as_mut() {
            t.verdict = Some(reason.clone());
        }
        Ok(())
    })?;
    // 2. The store as it was before the trial build migrated it (if it did).
    restore_store(paths, &opts.store_path)?;
    // 3. The trial ends; the previous build is what runs.
    State::update(paths, |s| {
        s.trial = None;
        s.last = Some(Outcome::RolledBack {
            version: build.version.clone(),
            reason: reason.clone(),
            at_ms: super::now_ms(),
        });
        Ok(())
    })?;
    Ok(())
}

/// Puts the trial's store copy back in place; the migrated file goes to `rolled-back/`.
/// Idempotent: after a power cut in between, the next call completes it.
fn restore_store(paths: &Paths, store: &Path) -> Result<(), OtaError> {
    let copy = paths.trial_store_copy();
    if !copy.is_file() {
        return Ok(());
    }
    if store.exists() {
        files::create_dir(&paths.rolled_back_dir())?;
        let aside = paths.rolled_back_dir().join(
            store
                .file_name()
                .map_or_else(|| OsString::from("store"), ToOwned::to_owned),
        );
        files::rename(store, &aside)?;
        tracing::warn!(kept = %aside.display(), "the store the rolled-back build migrated is kept aside");
    }
    files::rename(&copy, store)?;
    tracing::info!(store = %store.display(), "store restored from the copy taken before the trial's migration");
    Ok(())
}

/// The real gate: the trial build as a child process, `BIN [global args] ota gate …`.
#[derive(Debug, Clone)]
pub struct ProcessGate {
    /// Arguments placed before `ota gate` (`--config FILE`, `--log-format F`).
    pub global_args: Vec<OsString>,
}

impl GateRunner for ProcessGate {
    fn run(&self, binary: &Path, version: &str, store_copy: &Path, deadline: Duration) -> Verdict {
        let mut cmd = Command::new(binary);
        cmd.args(&self.global_args)
            .args(["ota", "gate", "--expect-version", version, "--store-copy"])
            .arg(store_copy)
            // The gate must not tell systemd anything: the launcher is the service.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Verdict::Fail(format!("the new build cannot start: {e}")),
        };
        // Read the report on a thread: a child that fills the pipe must not block itself.
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(s) = stdout {
                let _ = s.take(256 * 1024).read_to_end(&mut out);
            }
            out
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Verdict::Fail(format!(
                        "no verdict within {} (the new build hung): killed",
                        humantime::format_duration(deadline)
                    ));
                }
                // The launcher is a plain process with no async runtime: polling the child
                // with a short sleep is the simplest portable wait with a deadline.
                #[allow(clippy::disallowed_methods)]
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    let _ = child.kill();
                    return Verdict::Fail(format!("cannot wait for the new build: {e}"));
                }
            }
        };
        let out = reader.join().unwrap_or_default();
        judge(status, &out, version)
    }
}

/// The verdict on a finished gate process: exit 0, a passing report, and the version.
pub fn judge(status: std::process::ExitStatus, stdout: &[u8], version: &str) -> Verdict {
    use std::os::unix::process::ExitStatusExt as _;
    let report: Option<Report> = serde_json::from_slice(stdout).ok();
    match status.code() {
        Some(0) => {}
        // Rust's exit status after a panic on the main thread.
        Some(101) => return Verdict::Fail("the new build panicked (exit status 101)".into()),
        Some(code) => {
            let why = report
                .as_ref()
                .and_then(Report::failure)
                .map(|f| format!(": {f}"))
                .unwrap_or_default();
            return Verdict::Fail(format!(
                "the new build's gate exited with status {code}{why}"
            ));
        }
        None => {
            return Verdict::Fail(format!(
                "the new build was killed by signal {}",
                status.signal().unwrap_or(0)
            ));
        }
    }
    let Some(report) = report else {
        return Verdict::Fail("the new build's gate printed no report".into());
    };
    if let Some(f) = report.failure() {
        return Verdict::Fail(format!("gate check failed: {f}"));
    }
    if !report.passed {
        return Verdict::Fail("the gate reported a failure".into());
    }
    // The launcher checks the version itself: the build's word is not enough.
    if report.version != version {
        return Verdict::Fail(format!(
            "the new build is version {}, the manifest says {version}",
            report.version
        ));
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ota::state::Trial;
    use std::cell::RefCell;
    use std::os::unix::process::ExitStatusExt as _;

    struct Scripted {
        verdicts: RefCell<Vec<Verdict>>,
        runs: RefCell<u32>,
        /// Simulates a migration: the gate leaves a store copy and changes the store.
        migrate: Option<PathBuf>,
    }

    impl GateRunner for Scripted {
        fn run(&self, _: &Path, _: &str, copy: &Path, _: Duration) -> Verdict {
            *self.runs.borrow_mut() += 1;
            if let Some(store) = &self.migrate {
                std::fs::copy(store, copy).unwrap();
                std::fs::write(store, b"migrated").unwrap();
            }
            self.verdicts.borrow_mut().remove(0)
        }
    }

    fn scripted(v: Vec<Verdict>) -> Scripted {
        Scripted {
            verdicts: RefCell::new(v),
            runs: RefCell::new(0),
            migrate: None,
        }
    }

    fn setup(committed: Option<&str>) -> (tempfile::TempDir, LaunchOptions, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let opts = LaunchOptions {
            data_dir: dir.path().into(),
            store_path: dir.path().join("wms-node.v3.redb"),
            gate_timeout: Duration::from_secs(5),
            trial_attempts: 3,
        };
        let paths = Paths::new(dir.path());
        for slot in [Slot::A, Slot::B] {
            std::fs::create_dir_all(paths.slot_dir(slot)).unwrap();
            std::fs::write(paths.slot_binary(slot), b"bin").unwrap();
        }
        State::update(&paths, |s| {
            s.committed = committed.map(|v| build(Slot::A, v));
            s.trial = Some(Trial {
                build: build(Slot::B, "0.3.0"),
                attempts: 0,
                verdict: None,
            });
            Ok(())
        })
        .unwrap();
        (dir, opts, paths)
    }

    fn build(slot: Slot, v: &str) -> SlotBuild {
        SlotBuild {
            slot,
            version: v.into(),
            sha256: String::new(),
            key_id: String::new(),
            at_ms: 0,
        }
    }

    #[test]
    fn a_passing_trial_is_committed_and_runs() {
        let (_d, opts, paths) = setup(Some("0.2.0"));
        let gate = scripted(vec![Verdict::Pass]);
        let c = prepare(&opts, Path::new("/usr/bin/wms-node"), "0.1.0", &gate);
        assert_eq!(c.slot, Some(Slot::B));
        assert_eq!(c.version, "0.3.0");
        let s = State::load(&paths).unwrap();
        assert!(s.trial.is_none());
        assert_eq!(s.committed.unwrap().version, "0.3.0");
        assert_eq!(s.previous.unwrap().version, "0.2.0");
        // Started again: no second gate, the committed build runs.
        let again = prepare(
            &opts,
            Path::new("/usr/bin/wms-node"),
            "0.1.0",
            &scripted(vec![]),
        );
        assert_eq!(again.version, "0.3.0");
    }

    #[test]
    fn a_failing_trial_rolls_back_to_the_committed_build() {
        let (_d, opts, paths) = setup(Some("0.2.0"));
        let gate = scripted(vec![Verdict::Fail("store: cannot open".into())]);
        let c = prepare(&opts, Path::new("/usr/bin/wms-node"), "0.1.0", &gate);
        assert_eq!((c.slot, c.version.as_str()), (Some(Slot::A), "0.2.0"));
        let s = State::load(&paths).unwrap();
        assert!(s.trial.is_none());
        assert!(
            matches!(s.last, Some(Outcome::RolledBack { ref reason, .. }) if reason.contains("store"))
        );
    }

    #[test]
    fn a_rollback_without_a_committed_slot_runs_the_package() {
        let (_d, opts, _paths) = setup(None);
        let c = prepare(
            &opts,
            Path::new("/usr/bin/wms-node"),
            "0.1.0",
            &scripted(vec![Verdict::Fail("x".into())]),
        );
        assert_eq!(c.slot, None);
        assert_eq!(c.binary, Path::new("/usr/bin/wms-node"));
    }

    #[test]
    fn interrupted_trials_count_once_each_then_roll_back() {
        let (_d, opts, paths) = setup(Some("0.2.0"));
        // Two starts that died during the gate (power cut): attempts counted, no verdict.
        State::update(&paths, |s| {
            s.trial.as_mut().unwrap().attempts = 2;
            Ok(())
        })
        .unwrap();
        // The third start still runs the gate, and a pass commits.
        let gate = scripted(vec![Verdict::Pass]);
        let c = prepare(&opts, Path::new("/p"), "0.1.0", &gate);
        assert_eq!(c.version, "0.3.0");
        assert_eq!(*gate.runs.borrow(), 1);

        let (_d, opts, paths) = setup(Some("0.2.0"));
        State::update(&paths, |s| {
            s.trial.as_mut().unwrap().attempts = 3;
            Ok(())
        })
        .unwrap();
        let gate = scripted(vec![]);
        let c = prepare(&opts, Path::new("/p"), "0.1.0", &gate);
        assert_eq!(c.version, "0.2.0");
        assert_eq!(*gate.runs.borrow(), 0);
        assert!(
            matches!(State::load(&paths).unwrap().last, Some(Outcome::RolledBack { ref reason, .. }) if reason.contains("without a verdict"))
        );
    }

    #[test]
    fn a_rollback_restores_the_store_copy_and_keeps_the_migrated_file_aside() {
        let (_d, opts, paths) = setup(Some("0.2.0"));
        std::fs::write(&opts.store_path, b"old store").unwrap();
        let mut gate = scripted(vec![Verdict::Fail("panicked".into())]);
        gate.migrate = Some(opts.store_path.clone());
        prepare(&opts, Path::new("/p"), "0.1.0", &gate);
        assert_eq!(std::fs::read(&opts.store_path).unwrap(), b"old store");
        assert!(!paths.trial_store_copy().exists());
        assert_eq!(
            std::fs::read(paths.rolled_back_dir().join("wms-node.v3.redb")).unwrap(),
            b"migrated"
        );
    }

    #[test]
    fn a_recorded_verdict_finishes_the_rollback_after_a_power_cut() {
        let (_d, opts, paths) = setup(Some("0.2.0"));
        // The cut came after the verdict and after the migrated store was moved aside.
        std::fs::create_dir_all(paths.trial_dir()).unwrap();
        std::fs::write(paths.trial_store_copy(), b"old store").unwrap();
        State::update(&paths, |s| {
            let t = s.trial.as_mut().unwrap();
            t.attempts = 1;
            t.verdict = Some("exited with status 2".into());
            Ok(())
        })
        .unwrap();
        let gate = scripted(vec![]);
        let c = prepare(&opts, Path::new("/p"), "0.1.0", &gate);
        assert_eq!(c.version, "0.2.0");
        assert_eq!(*gate.runs.borrow(), 0, "no second gate after a verdict");
        assert_eq!(std::fs::read(&opts.store_path).unwrap(), b"old store");
    }

    #[test]
    fn a_damaged_state_file_runs_the_package() {
        let (_d, opts, paths) = setup(Some("0.2.0"));
        std::fs::write(paths.state(), b"{").unwrap();
        let c = prepare(&opts, Path::new("/p"), "0.1.0", &scripted(vec![]));
        assert_eq!(c.binary, Path::new("/p"));
    }

    #[test]
    fn the_launcher_judges_exit_status_report_and_version() {
        let ok = std::process::ExitStatus::from_raw(0);
        let report = |v: &str, passed: bool| {
            let mut r = Report::new();
            r.version = v.into();
            r.push(
                "store",
                if passed {
                    Ok("ok".into())
                } else {
                    Err("bad".into())
                },
            );
            serde_json::to_vec(&r).unwrap()
        };
        assert_eq!(judge(ok, &report("0.3.0", true), "0.3.0"), Verdict::Pass);
        assert!(
            matches!(judge(ok, &report("0.2.9", true), "0.3.0"), Verdict::Fail(f) if f.contains("0.2.9"))
        );
        assert!(
            matches!(judge(ok, &report("0.3.0", false), "0.3.0"), Verdict::Fail(f) if f.contains("store"))
        );
        assert!(matches!(judge(ok, b"", "0.3.0"), Verdict::Fail(f) if f.contains("no report")));
        // Exit statuses are encoded as the wait status: code << 8.
        let two = std::process::ExitStatus::from_raw(2 << 8);
        assert!(matches!(judge(two, b"", "0.3.0"), Verdict::Fail(f) if f.contains("status 2")));
        let panicked = std::process::ExitStatus::from_raw(101 << 8);
        assert!(
            matches!(judge(panicked, b"", "0.3.0"), Verdict::Fail(f) if f.contains("panicked"))
        );
        let killed = std::process::ExitStatus::from_raw(9);
        assert!(matches!(judge(killed, b"", "0.3.0"), Verdict::Fail(f) if f.contains("signal 9")));
    }
}
