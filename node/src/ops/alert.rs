//! Alerts: conditions an operator must act on (re-authorize, dead letters, disk cap, …).
//!
//! Any module raises an alert through a cloned [`Alerts`] handle. An alert is logged once
//! when raised, counted in the `alerts_raised_total{code}` metric, kept in the active set
//! until cleared, and broadcast to subscribers (the status page, the gateway MQTT topic).
//! Raising an already active alert updates its message without logging again, so a loop
//! that hits the same condition does not flood the log.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::broadcast;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention today.
    Warning,
    /// Needs attention now: shipments or stock are at risk.
    Critical,
}

/// One alert. `code` is stable (`"reauthorize"`, `"dead_letter"`, `"store_cap"`); `message`
/// is for people and carries ids only, never secrets or buyer data.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Stable identifier, also the metric label.
    pub code: String,
    /// How urgent.
    pub severity: Severity,
    /// What happened and what to do.
    pub message: String,
    /// When it was (last) raised.
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
}

/// A cheap, cloneable handle to the node's alert set.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Mutex<BTreeMap<String, Alert>>>,
    tx: broadcast::Sender<Alert>,
}

impl Default for Alerts {
    fn default() -> Self {
        Self::new()
    }
}

impl Alerts {
    /// An empty alert set.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(64);
        Alerts {
            inner: Arc::new(Mutex::new(BTreeMap::new())),
            tx,
        }
    }

    /// Raises (or refreshes) the alert `code`.
    pub fn raise(&self, code: &str, severity: Severity, message: impl Into<String>) {
        let alert = Alert {
            code: code.to_owned(),
            severity,
            message: message.into(),
            at: SystemTime::now(),
        };
        let fresh = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            map.insert(code.to_owned(), alert.clone()).is_none()
        };
        if fresh {
            match severity {
                Severity::Info => tracing::info!(alert = code, "{}", alert.message),
                Severity::Warning => tracing::warn!(alert = code, "{}", alert.message),
                Severity::Critical => tracing::error!(alert = code, "{}", alert.message),
            }
            metrics::counter!("alerts_raised_total", "code" => code.to_owned()).increment(1);
        }
        let _ = self.tx.send(alert);
    }

    /// Clears the alert `code` if it is active.
    pub fn clear(&self, code: &str) {
        let was = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code);
        if was.is_some() {
            tracing::info!(alert = code, "alert cleared");
        }
    }

    /// The active alerts, most severe first.
    pub fn active(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.code.cmp(&b.code))
        });
        v
    }

    /// Whether `code` is active.
    pub fn is_active(&self, code: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(code)
    }

    /// Every alert raised from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Alert> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_twice_keeps_one_active_alert_and_clear_removes_it() {
        let alerts = Alerts::new();
        alerts.raise("reauthorize", Severity::Critical, "token expired");
        alerts.raise("reauthorize", Severity::Critical, "token still expired");
        alerts.raise("store_cap", Severity::Warning, "80% of the byte cap");
        let active = alerts.active();
        assert_eq!(active.len(), 2);
        assert_eq!(active[0].code, "reauthorize");
        assert_eq!(active[0].message, "token still expired");
        alerts.clear("reauthorize");
        assert!(!alerts.is_active("reauthorize"));
        assert!(alerts.is_active("store_cap"));
    }
}
