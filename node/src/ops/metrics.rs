//! The Prometheus recorder behind the `metrics` facade.
//!
//! Every module records through the `metrics` macros (`counter!`, `gauge!`, `histogram!`)
//! with stable names; this module installs the one process-wide recorder the first time
//! [`handle`] is called and `/metrics` renders it. Labels carry ids and classes only
//! (`code`, `method`, `kind`), never secrets, buyer data or unbounded values.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The handle that renders the process's metrics, installing the recorder on first use.
///
/// Several nodes in one process (tests) share it. If some other recorder was installed
/// first, the node still serves `/metrics` from a recorder of its own, which then sees
/// nothing; that is logged, not fatal.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!("metrics recorder not installed, /metrics will be empty: {e}");
            } else {
                describe();
            }
            handle
        })
        .clone()
}

/// Help texts for the metrics this module and the daemon own; other modules describe
/// theirs where they record them.
fn describe() {
    metrics::describe_gauge!(
        "build_info",
        "Always 1; the `version` label is the node version."
    );
    metrics::describe_gauge!("uptime_seconds", "Seconds since the node started.");
    metrics::describe_gauge!(
        "health_check_status",
        "Per health check: 0 ok, 1 degraded, 2 failing."
    );
    metrics::describe_counter!("alerts_raised_total", "Alerts raised, by alert code.");
    metrics::describe_gauge!("alerts_active", "Alerts currently active.");
}
