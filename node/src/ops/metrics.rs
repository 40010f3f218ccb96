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

/// The `# HELP` text of every metric the node records, in one place so that the list doubles
/// as the reference (docs/OPERATIONS.md shows it). A metric recorded elsewhere must be added
/// here; the test below checks the source for any that is not.
const HELP: &[(&str, &str)] = &[
    (
        "build_info",
        "Always 1; the `version` label is the node version.",
    ),
    ("uptime_seconds", "Seconds since the node started."),
    (
        "health_check_status",
        "Per health check (`check`): 0 ok, 1 degraded, 2 failing.",
    ),
    ("alerts_raised_total", "Alerts raised, by alert `code`."),
    ("alerts_active", "Alerts currently active."),
    (
        "store_commit_seconds",
        "Time to commit one group-commit transaction, fsync included.",
    ),
    (
        "store_group_commit_batch_size",
        "Writes that shared one durable commit.",
    ),
    (
        "store_commit_errors_total",
        "Group commits that failed (their writers got the error).",
    ),
    (
        "store_quarantined_records_total",
        "Undecodable records moved to quarantine, by `table`.",
    ),
    (
        "outbox_enqueued_total",
        "Operations accepted into the outbox, by `kind`.",
    ),
    (
        "outbox_coalesced_total",
        "Operations that replaced an undelivered one with the same coalescing key, by `kind`.",
    ),
    (
        "outbox_rejected_total",
        "Operations refused at the byte cap, by `kind`.",
    ),
    (
        "outbox_dropped_total",
        "Operations removed undelivered, by `kind` and `reason` (`cap`, `operator`).",
    ),
    (
        "outbox_attempts_total",
        "Delivery attempts, by `kind` and `outcome`.",
    ),
    (
        "outbox_attempt_seconds",
        "Duration of one delivery attempt, by `kind`.",
    ),
    (
        "outbox_delivered_total",
        "Operations the platform confirmed (done or already done), by `kind`.",
    ),
    (
        "outbox_dead_letters_total",
        "Operations given up as permanent failures, by `kind`.",
    ),
    ("outbox_ops", "Operations waiting in the outbox."),
    ("outbox_bytes", "Accounted bytes of the outbox backlog."),
    (
        "outbox_cap_bytes",
        "The byte cap on the outbox backlog (`store.max_bytes`), 0 for none.",
    ),
    (
        "outbox_oldest_item_age_seconds",
        "Age of the oldest undelivered operation.",
    ),
    (
        "taobao_calls_total",
        "TOP API calls, by `method` and `code` (0 success, `banned` not sent).",
    ),
    (
        "taobao_call_duration_seconds",
        "TOP API call duration, by `method`.",
    ),
    (
        "taobao_carriers",
        "Carriers known from `taobao.logistics.companies.get`.",
    ),
    (
        "wms_node_intake_lag_seconds",
        "Seconds between now and the intake watermark (everything Taobao changed before it is stored).",
    ),
    (
        "wms_node_intake_windows_total",
        "Windows of the incremental order pull stored.",
    ),
    (
        "wms_node_intake_window_seconds",
        "Time to pull and store one window of the incremental order pull.",
    ),
    (
        "wms_node_intake_trades_total",
        "Trades stored by intake, by `change` (`inserted`, `updated`).",
    ),
    (
        "wms_node_intake_unreadable_trades_total",
        "Trades whose full record could not be decoded and were skipped (read again at the re-scan).",
    ),
    (
        "wms_node_orders",
        "Orders by local `state` (new, released, picking, …, consigned, cancelled).",
    ),
    (
        "wms_node_order_holds",
        "Held orders by hold `reason` (refund, unmapped_sku, operator, …).",
    ),
    (
        "wms_node_taobao_calls_today",
        "TOP calls sent today (GMT+8 day), counted against `taobao.daily_call_budget`.",
    ),
    (
        "wms_node_taobao_call_budget",
        "The daily call budget (`taobao.daily_call_budget`); stock waits from 90 %, intake from 97 %.",
    ),
];

fn describe() {
    for (name, help) in HELP {
        // The recorder keeps one help text per name, whatever the metric's type.
        metrics::describe_counter!(*name, *help);
    }
}

#[cfg(test)]
mod tests {
    use super::HELP;

    /// Every `counter!`/`gauge!`/`histogram!("name"` in the node's source has a help text.
    #[test]
    fn every_recorded_metric_has_help() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut missing = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(src)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.ends_with("ops/metrics.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for mac in ["counter!(", "gauge!(", "histogram!("] {
                    for (at, _) in text.match_indices(mac) {
                        let rest = text[at + mac.len()..].trim_start();
                        let Some(rest) = rest.strip_prefix('"') else {
                            continue;
                        };
                        let name = &rest[..rest.find('"').unwrap()];
                        if name != "ops_http_test_total" && !HELP.iter().any(|(n, _)| *n == name) {
                            missing.push(format!("{name} ({})", path.display()));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "metrics without help: {missing:?}");
    }
}
