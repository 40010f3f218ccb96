//! Health: each part of the node reports whether it is doing its job, and `/healthz` adds
//! them up.
//!
//! A check is named after the part ([`CheckName`]: `"store"`, `"outbox"`, `"taobao"`) and is
//! [`Status::Ok`], [`Status::Degraded`] (working, but an operator should look: e.g. the
//! Taobao link is down and the outbox is queueing, which is what it is built for) or
//! [`Status::Failing`] (not doing its job: the store is read-only, the outbox stalls while
//! the link is up). The node is unhealthy, and `/healthz` answers 503, while any check is
//! failing. "Running but forwarding nothing" must show up here: a part that can stall
//! reports it, rather than the node reporting only that its process is alive.
//!
//! Messages carry ids and counts only, never secrets or buyer data.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// Which part a check is about; its string form is the key under `checks` on `/healthz` and
/// the `check` label of `wms_node_health_check_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CheckName {
    /// The store is open and writable.
    Store,
    /// The outbox delivers (or queues while the link is down), and does not stall.
    Outbox,
    /// The link to Taobao: answers, unreachable since when, or banned for a while.
    Taobao,
    /// The carrier list (`taobao.logistics.companies.get`, refreshed daily) is known.
    Carriers,
    /// Order intake keeps up: failing while the shop is not authorised, or while it lags
    /// with the link up; degraded while Taobao cannot be reached.
    Intake,
    /// Alert notices reach the webhook: degraded (never failing) while it is unreachable or
    /// refuses them; the notices keep queueing.
    Alerts,
}

impl CheckName {
    /// `"store"`, `"outbox"`, `"taobao"`, `"carriers"`, `"intake"` or `"alerts"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckName::Store => "store",
            CheckName::Outbox => "outbox",
            CheckName::Taobao => "taobao",
            CheckName::Carriers => "carriers",
            CheckName::Intake => "intake",
            CheckName::Alerts => "alerts",
        }
    }
}

impl std::fmt::Display for CheckName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of one check, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Doing its job.
    Ok,
    /// Working, but needs an operator's eye.
    Degraded,
    /// Not doing its job.
    Failing,
}

/// One check as last reported.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its state.
    pub status: Status,
    /// Why, for people.
    pub message: String,
    /// When it entered this state.
    #[serde(with = "humantime_serde")]
    pub since: SystemTime,
}

/// The whole node's health, as served on `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The worst check's status (`ok` when there are none).
    pub status: Status,
    /// The node's version.
    pub version: &'static str,
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// Every check by name.
    pub checks: BTreeMap<CheckName, Check>,
}

impl Report {
    /// Whether `/healthz` answers 200.
    pub fn is_healthy(&self) -> bool {
        self.status != Status::Failing
    }
}

/// A cheap, cloneable handle to the node's health checks.
#[derive(Clone)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<CheckName, Check>>>,
    started: Instant,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// No checks yet; uptime counts from now.
    pub fn new() -> Self {
        Health {
            checks: Arc::new(Mutex::new(BTreeMap::new())),
            started: Instant::now(),
        }
    }

    /// Sets the check `name`. `since` moves only when the status changes, and a change is
    /// logged once, so a loop may report the same state on every turn.
    pub fn set(&self, name: CheckName, status: Status, message: impl Into<String>) {
        let message = message.into();
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        let changed = checks.get(&name).is_none_or(|c| c.status != status);
        let name_str = name.as_str();
        if changed {
            match status {
                Status::Ok => tracing::info!(check = name_str, "healthy: {message}"),
                Status::Degraded => tracing::warn!(check = name_str, "degraded: {message}"),
                Status::Failing => tracing::error!(check = name_str, "failing: {message}"),
            }
            metrics::gauge!("wms_node_health_check_status", "check" => name_str)
                .set(status as u8 as f64);
        }
        let since = match checks.get(&name) {
            Some(c) if !changed => c.since,
            _ => SystemTime::now(),
        };
        checks.insert(
            name,
            Check {
                status,
                message,
                since,
            },
        );
    }

    /// Shorthand for [`Status::Ok`].
    pub fn ok(&self, name: CheckName, message: impl Into<String>) {
        self.set(name, Status::Ok, message)
    }

    /// Shorthand for [`Status::Degraded`].
    pub fn degraded(&self, name: CheckName, message: impl Into<String>) {
        self.set(name, Status::Degraded, message)
    }

    /// Shorthand for [`Status::Failing`].
    pub fn failing(&self, name: CheckName, message: impl Into<String>) {
        self.set(name, Status::Failing, message)
    }

    /// Removes the check `name` (the part was stopped on purpose).
    pub fn remove(&self, name: CheckName) {
        self.checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
    }

    /// How long the node has been up.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The current report.
    pub fn report(&self) -> Report {
        let checks = self
            .checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let status = checks
            .values()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok);
        Report {
            status,
            version: crate::VERSION,
            uptime_seconds: self.uptime().as_secs(),
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_check_decides_and_only_failing_is_unhealthy() {
        let h = Health::new();
        assert!(h.report().is_healthy());
        h.ok(CheckName::Store, "open");
        h.degraded(CheckName::Taobao, "link down, queueing");
        let r = h.report();
        assert_eq!(r.status, Status::Degraded);
        assert!(r.is_healthy());
        h.failing(CheckName::Outbox, "stalled for 10m while the link is up");
        assert!(!h.report().is_healthy());
        h.remove(CheckName::Outbox);
        assert!(h.report().is_healthy());
    }

    #[test]
    fn since_moves_only_when_the_status_changes() {
        let h = Health::new();
        h.ok(CheckName::Store, "open");
        let first = h.report().checks[&CheckName::Store].since;
        h.ok(CheckName::Store, "still open");
        let r = h.report();
        assert_eq!(r.checks[&CheckName::Store].since, first);
        assert_eq!(r.checks[&CheckName::Store].message, "still open");
        // On `/healthz` the checks are keyed by their string form.
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert_eq!(json["checks"]["store"]["message"], "still open");
    }
}
