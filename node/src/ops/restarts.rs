//! The node's own restarts: how the previous run ended, so that a restart after a crash or a
//! failure is known, counted and alerted. systemd restarts the node (the unit's `Restart=`)
//! but does not tell it so; this record in `<data_dir>/run.json` does.
//!
//! ```text
//!  start ─▶ read run.json: the previous run ...
//!             absent ................................. first start
//!             stopped on request, or could not run ... not a restart (a person acts on exit 2)
//!             failed (exit 1: full disk, I/O, a task) . restart after a `failure`
//!             still "running", same boot ............. restart after a `crash` (killed, panicked,
//!                                                       watchdog, out of memory)
//!             still "running", another boot .......... restart after a `power_loss` (or reboot)
//!       ─▶ write run.json {running, boot id}  (counts, the `restart_loop` alert after the third
//!                                               in a row)
//!       ─▶ ... after STABLE_AFTER running: in a row = 0 (one write), the alert clears
//!  stop ─▶ write run.json {ended: how}
//! ```
//!
//! The launcher (`wms-node launch`, the unit's command) reads the same record before it starts
//! the node and waits [`launch_delay`] first: systemd 252 (Debian bookworm) restarts after a
//! fixed `RestartSec=`, and its growing delay (`RestartSteps=`, `RestartMaxDelaySec=`) came in
//! 254, so the delay grows here instead.
//!
//! The file is written whole (temporary file, fsync, rename, fsync of the directory), at most
//! three times a run. A record that cannot be read or written never stops the node: it is
//! logged and the node runs without counting. The run that owns the record holds an `flock` on
//! `run.lock` beside it: a second node started on the same data directory (by hand, while the
//! service runs) leaves the record alone, so it neither counts the running node as crashed
//! nor overwrites its record before it stops on the store that the first one holds.

use super::alert::{AlertCode, Alerts, Severity};
use firmware_bridge::pace::Backoff;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The record's file name inside `node.data_dir`.
pub const FILE: &str = "run.json";

/// The file whose `flock` the run owning the record holds, inside `node.data_dir`.
pub const LOCK_FILE: &str = "run.lock";

/// How long a run must last for the restarts before it to stop counting as "in a row".
pub const STABLE_AFTER: Duration = Duration::from_secs(10 * 60);

/// From this many restarts in a row on, the `restart_loop` alert is raised.
pub const ALERT_AFTER: u32 = 3;

/// The unit's `RestartSec=`: systemd's own wait before each restart.
pub const RESTART_SEC: Duration = Duration::from_secs(5);

/// The longest wait between two restarts, systemd's and the launcher's together.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(5 * 60);

/// Why the node was started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The previous run was killed or crashed without a word (SIGKILL, a panic that aborted,
    /// the watchdog, the kernel's OOM killer).
    Crash,
    /// The previous run stopped with an error a restart may cure (exit 1: a full disk, an I/O
    /// error, a failed task).
    Failure,
    /// The box lost power or rebooted while the node ran.
    PowerLoss,
}

impl Cause {
    /// The `cause` label of `wms_node_restarts_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Crash => "crash",
            Cause::Failure => "failure",
            Cause::PowerLoss => "power_loss",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Ended {
    /// Stopped on request (SIGTERM, or to boot an update).
    Clean,
    /// Could not run, and starting again would not help (exit 2); a person acts on it.
    Permanent {
        /// The error.
        reason: String,
    },
    /// Stopped with an error a restart may cure (exit 1).
    Failed {
        /// The error.
        reason: String,
    },
}

/// The record in `run.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When the current (or last) run started, ms since the epoch.
    pub started_at_ms: u64,
    /// The kernel's boot id when it started (`None` where the kernel does not tell).
    pub boot_id: Option<String>,
    /// How it ended; `None` while it runs, or if it died without a word.
    pub ended: Option<Ended>,
    /// Restarts after a crash, a failure or a power loss since a run last lasted
    /// [`STABLE_AFTER`].
    pub in_a_row: u32,
    /// Every restart counted, by cause.
    pub totals: BTreeMap<Cause, u64>,
    /// The cause of the latest restart counted.
    pub last_cause: Option<Cause>,
}

impl Record {
    /// Reads `<data_dir>/run.json`: `Ok(None)` when there is none.
    pub fn load(data_dir: &Path) -> std::io::Result<Option<Record>> {
        match std::fs::read(data_dir.join(FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes it whole: a temporary file, fsync, rename, fsync of the directory.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = data_dir.join(FILE);
        let tmp = data_dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    }

    /// What the previous run's end makes of this start: `None` if it is no restart to count.
    pub fn restart_cause(&self, boot_id: Option<&str>) -> Option<Cause> {
        match &self.ended {
            Some(Ended::Clean | Ended::Permanent { .. }) => None,
            Some(Ended::Failed { .. }) => Some(Cause::Failure),
            None => match (self.boot_id.as_deref(), boot_id) {
                (Some(then), Some(now)) if then != now => Some(Cause::PowerLoss),
                _ => Some(Cause::Crash),
            },
        }
    }
}

/// How long the launcher waits before it starts the node again, on top of systemd's
/// [`RESTART_SEC`], and why: the n-th restart in a row waits `5 s × 2^(n-1)` in all, at most
/// [`MAX_RESTART_DELAY`]. `None` for a start that is no restart, or the first one.
pub fn launch_delay(record: Option<&Record>, boot_id: Option<&str>) -> Option<(Duration, String)> {
    let record = record?;
    let cause = record.restart_cause(boot_id)?;
    // A power cut is no loop of ours: the box starting again is all there is to it.
    if cause == Cause::PowerLoss {
        return None;
    }
    let n = record.in_a_row.saturating_add(1);
    let total = Backoff::new(RESTART_SEC, MAX_RESTART_DELAY).ceiling(n);
    let extra = total.saturating_sub(RESTART_SEC);
    (!extra.is_zero()).then(|| {
        (
            extra,
            format!(
                "restart {n} in a row (after a {}): waiting {} more before starting",
                cause.as_str(),
                humantime::format_duration(extra)
            ),
        )
    })
}

/// An exclusive `flock` on `<data_dir>/run.lock`, released when the file is closed or the
/// process dies; `Ok(None)` when another process holds it.
fn take_lock(data_dir: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(LOCK_FILE))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The kernel's id of this boot, to tell a crash from a power cut.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// This run's record, kept up to date: begun at start, made stable after [`STABLE_AFTER`],
/// ended at stop.
#[derive(Clone)]
pub struct Restarts {
    data_dir: PathBuf,
    record: std::sync::Arc<std::sync::Mutex<Record>>,
    alerts: Alerts,
    /// Whether this run owns the record: not when another process holds `run.lock` (this run
    /// then writes nothing).
    owner: bool,
    /// The `run.lock` held for as long as this run lasts.
    _lock: Option<std::sync::Arc<std::fs::File>>,
}

impl Restarts {
    /// Reads how the previous run ended, counts this start if it is a restart (metrics, and
    /// the `restart_loop` alert from the third in a row), and records this run as running.
    pub fn begin(data_dir: &Path, alerts: Alerts, now_ms: u64, boot_id: Option<String>) -> Self {
        let lock = match take_lock(data_dir) {
            Ok(Some(file)) => Some(std::sync::Arc::new(file)),
            Ok(None) => {
                tracing::warn!(dir = %data_dir.display(),
                    "another process runs a node on this data directory; this run leaves the \
                     record of runs alone");
                return Restarts {
                    data_dir: data_dir.to_owned(),
                    record: Default::default(),
                    alerts,
                    owner: false,
                    _lock: None,
                };
            }
            // The record is still worth keeping without the lock.
            Err(e) => {
                tracing::warn!(file = %data_dir.join(LOCK_FILE).display(), error = %e,
                    "cannot lock the run record; counting restarts without the lock");
                None
            }
        };
        let previous = match Record::load(data_dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(file = %data_dir.join(FILE).display(), error = %e,
                    "the record of the previous run cannot be read; restarts are counted afresh");
                None
            }
        };
        let mut record = previous.clone().unwrap_or_default();
        let cause = previous
            .as_ref()
            .and_then(|p| p.restart_cause(boot_id.as_deref()));
        match cause {
            Some(c) => {
                record.in_a_row = record.in_a_row.saturating_add(1);
                let total = record.totals.entry(c).or_insert(0);
                *total = total.saturating_add(1);
                record.last_cause = Some(c);
                let reason = match &previous.as_ref().and_then(|p| p.ended.clone()) {
                    Some(Ended::Failed { reason }) => reason.clone(),
                    _ => String::new(),
                };
                tracing::warn!(cause = c.as_str(), in_a_row = record.in_a_row, %reason,
                    "started again after the previous run ended without a clean stop");
            }
            None => record.in_a_row = 0,
        }
        record.started_at_ms = now_ms;
        record.boot_id = boot_id;
        record.ended = None;
        let me = Restarts {
            data_dir: data_dir.to_owned(),
            record: std::sync::Arc::new(std::sync::Mutex::new(record.clone())),
            alerts,
            owner: true,
            _lock: lock,
        };
        me.save(&record);
        me.report(&record);
        me
    }

    /// The record as it stands.
    pub fn record(&self) -> Record {
        self.lock().clone()
    }

    /// The run has lasted [`STABLE_AFTER`]: the restarts before it no longer count as a loop.
    pub fn stable(&self) {
        let record = {
            let mut r = self.lock();
            if r.in_a_row == 0 {
                return;
            }
            r.in_a_row = 0;
            r.clone()
        };
        tracing::info!("running steadily again; restarts in a row reset");
        self.save(&record);
        self.report(&record);
    }

    /// Records how this run ends.
    pub fn end(&self, how: Ended) {
        let record = {
            let mut r = self.lock();
            r.ended = Some(how);
            r.clone()
        };
        self.save(&record);
    }

    /// Waits [`STABLE_AFTER`] (or for shutdown), then [`Restarts::stable`].
    pub async fn watch(
        self,
        token: tokio_util::sync::CancellationToken,
    ) -> Result<(), std::convert::Infallible> {
        tokio::select! {
            // Shutdown before the run was stable: the count stays.
            _ = token.cancelled() => {}
            // A run this long is no crash loop.
            _ = tokio::time::sleep(STABLE_AFTER) => {
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || me.stable()).await;
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, record: &Record) {
        if !self.owner {
            return;
        }
        if let Err(e) = record.save(&self.data_dir) {
            tracing::warn!(file = %self.data_dir.join(FILE).display(), error = %e,
                "cannot write the run record; restarts may be miscounted");
        }
    }

    /// Metrics from the record, and the alert while restarts loop.
    fn report(&self, record: &Record) {
        for cause in [Cause::Crash, Cause::Failure, Cause::PowerLoss] {
            let n = record.totals.get(&cause).copied().unwrap_or(0);
            metrics::counter!("wms_node_restarts_total", "cause" => cause.as_str()).absolute(n);
        }
        metrics::gauge!("wms_node_restarts_in_a_row").set(f64::from(record.in_a_row));
        if record.in_a_row >= ALERT_AFTER {
            let last = record.last_cause.map_or("unknown", Cause::as_str);
            self.alerts.raise(
                AlertCode::RestartLoop,
                Severity::Critical,
                format!(
                    "the node was restarted {} times in a row (last after a {last}); systemd \
                     keeps restarting it, each time later: `journalctl -u wms-node` says why \
                     it stopped",
                    record.in_a_row
                ),
            );
        } else {
            self.alerts.clear(AlertCode::RestartLoop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of its own process: its lock is let go at once, as the process holding it is
    /// gone by the time these tests start the next run.
    fn begin(dir: &Path, boot: &str) -> Restarts {
        let mut r = Restarts::begin(dir, Alerts::new(), 1_000, Some(boot.into()));
        r._lock = None;
        r
    }

    #[test]
    fn a_second_node_on_the_same_data_dir_leaves_the_running_nodes_record_alone() {
        let dir = tempfile::tempdir().unwrap();
        let running = Restarts::begin(dir.path(), Alerts::new(), 1_000, Some("b1".into()));
        let before = Record::load(dir.path()).unwrap().unwrap();
        // Started by hand while the service runs: it must not count the running node as
        // crashed, nor record its own end (it stops on the store the first one holds).
        let second = Restarts::begin(dir.path(), Alerts::new(), 2_000, Some("b1".into()));
        assert_eq!(second.record().in_a_row, 0);
        second.end(Ended::Permanent {
            reason: "the store is in use by another process".into(),
        });
        drop(second);
        assert_eq!(Record::load(dir.path()).unwrap().unwrap(), before);
        running.end(Ended::Clean);
        drop(running);
        // The lock goes with the run: the next start owns the record and counts nothing.
        let next = Restarts::begin(dir.path(), Alerts::new(), 3_000, Some("b1".into()));
        let rec = Record::load(dir.path()).unwrap().unwrap();
        assert_eq!((rec.started_at_ms, rec.in_a_row), (3_000, 0));
        drop(next);
    }

    #[test]
    fn a_first_start_and_a_start_after_a_clean_stop_are_no_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let r = begin(dir.path(), "b1");
        assert_eq!(r.record().in_a_row, 0);
        assert!(r.record().totals.is_empty());
        r.end(Ended::Clean);
        let r = begin(dir.path(), "b1");
        assert_eq!(r.record().in_a_row, 0);
        assert_eq!(
            launch_delay(Record::load(dir.path()).unwrap().as_ref(), Some("b1")),
            None
        );
    }

    #[test]
    fn a_kill_a_failure_and_a_power_cut_are_each_counted_by_cause() {
        let dir = tempfile::tempdir().unwrap();
        let _killed = begin(dir.path(), "b1");
        // Killed: no end recorded, same boot.
        let r = begin(dir.path(), "b1");
        assert_eq!(r.record().last_cause, Some(Cause::Crash));
        r.end(Ended::Failed {
            reason: "the disk holding the store is full".into(),
        });
        let r = begin(dir.path(), "b1");
        assert_eq!(r.record().last_cause, Some(Cause::Failure));
        // The box lost power: the next start is on another boot.
        let r = begin(dir.path(), "b2");
        let rec = r.record();
        assert_eq!(rec.last_cause, Some(Cause::PowerLoss));
        assert_eq!(rec.in_a_row, 3);
        assert_eq!(
            rec.totals,
            BTreeMap::from([
                (Cause::Crash, 1),
                (Cause::Failure, 1),
                (Cause::PowerLoss, 1)
            ])
        );
        // A permanent failure is a person's to fix: the start after it is no restart.
        r.end(Ended::Permanent {
            reason: "bad config".into(),
        });
        assert_eq!(begin(dir.path(), "b2").record().in_a_row, 0);
    }

    #[test]
    fn the_third_restart_in_a_row_alerts_and_a_stable_run_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let alerts = Alerts::new();
        let run = || {
            let mut r = Restarts::begin(dir.path(), alerts.clone(), 0, Some("b".into()));
            r._lock = None;
            r
        };
        let mut r = run();
        for n in 1..=4 {
            r = run();
            assert_eq!(r.record().in_a_row, n);
            assert_eq!(
                alerts.is_active(AlertCode::RestartLoop),
                n >= ALERT_AFTER,
                "{n}"
            );
        }
        r.stable();
        assert_eq!(r.record().in_a_row, 0);
        assert!(!alerts.is_active(AlertCode::RestartLoop));
        assert_eq!(Record::load(dir.path()).unwrap().unwrap().in_a_row, 0);
        // Totals are kept for good.
        assert_eq!(r.record().totals[&Cause::Crash], 4);
    }

    #[test]
    fn the_launcher_waits_longer_with_each_restart_in_a_row_up_to_five_minutes() {
        let rec = |in_a_row: u32, ended: Option<Ended>| Record {
            in_a_row,
            ended,
            boot_id: Some("b".into()),
            ..Record::default()
        };
        let wait = |in_a_row| launch_delay(Some(&rec(in_a_row, None)), Some("b")).map(|d| d.0);
        // systemd waits 5 s itself; the launcher adds the rest of 5 s × 2^(n-1).
        assert_eq!(wait(0), None);
        assert_eq!(wait(1), Some(Duration::from_secs(5)));
        assert_eq!(wait(2), Some(Duration::from_secs(15)));
        assert_eq!(wait(3), Some(Duration::from_secs(35)));
        assert_eq!(wait(6), Some(Duration::from_secs(295)));
        assert_eq!(wait(u32::MAX), Some(Duration::from_secs(295)));
        // Not after a clean stop, a permanent failure, or a power cut.
        assert_eq!(
            launch_delay(Some(&rec(5, Some(Ended::Clean))), Some("b")),
            None
        );
        assert_eq!(launch_delay(Some(&rec(5, None)), Some("other")), None);
        assert_eq!(launch_delay(None, Some("b")), None);
        let failed = Ended::Failed { reason: "x".into() };
        let (d, why) = launch_delay(Some(&rec(2, Some(failed))), Some("b")).unwrap();
        assert_eq!(d, Duration::from_secs(15));
        assert!(
            why.contains("restart 3 in a row") && why.contains("failure"),
            "{why}"
        );
    }

    #[test]
    fn an_unreadable_record_is_counted_afresh_and_never_stops_the_node() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{").unwrap();
        let r = begin(dir.path(), "b");
        assert_eq!(r.record().in_a_row, 0);
        assert!(Record::load(dir.path()).unwrap().is_some());
        let gone = tempfile::tempdir().unwrap();
        let path = gone.path().join("missing");
        let r = begin(&path, "b");
        r.end(Ended::Clean);
    }
}
