//! The Prometheus recorder behind the `metrics` facade.
//!
//! Every module records through the `metrics` macros (`counter!`, `gauge!`, `histogram!`)
//! with stable names; this module installs the one process-wide recorder the first time
//! [`handle`] is called and `/metrics` renders it. Labels carry ids and classes only
//! (`code`, `method`, `kind`), never secrets, buyer data or unbounded values.
//!
//! Names follow Prometheus' conventions, checked by the tests below: every family starts with
//! `wms_node_`, counts in base units (`_seconds`, `_bytes`), counters end in `_total`, and
//! durations are histograms with the buckets of [`LATENCY_BUCKETS`] (exported as `_bucket`,
//! `_sum`, `_count`, so they add up across boxes, which summaries do not). The one exception
//! to the prefix is the standard `process_*` families ([`super::process`]), which keep the
//! names every dashboard knows.
//!
//! [`render`] serves the families in name order, and each family's samples in label order
//! (the recorder's own order changes from one scrape to the next), so two scrapes diff.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Every family's prefix.
pub const PREFIX: &str = "wms_node_";

/// Buckets of every `*_seconds` histogram: from a fast fsync (1 ms) to a TOP call at its
/// timeout (30 s) and beyond.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets of `wms_node_store_group_commit_batch_size` (writes per commit, up to the
/// default `store.group_commit_max_batch` of 1024).
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// The recorder with our histogram buckets.
fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("wms_node_store_group_commit_batch_size".into()),
                BATCH_BUCKETS,
            )
        })
        // Only an empty bucket list is refused, and ours are not; summaries would still
        // render if it ever were.
        .unwrap_or_else(|_| PrometheusBuilder::new())
}

/// The handle that renders the process's metrics, installing the recorder on first use.
///
/// Several nodes in one process (tests) share it. If some other recorder was installed
/// first, the node still serves `/metrics` from a recorder of its own, which then sees
/// nothing; that is logged, not fatal.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
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

/// `/metrics`: the recorder's families and the process's ([`super::process`]), sorted by
/// family name; a counter's or gauge's samples sorted by their labels (a histogram's keep the
/// recorder's order, which keeps each series' buckets together and in `le` order).
pub fn render(handle: &PrometheusHandle) -> String {
    let text = handle.render();
    let mut families: Vec<String> = text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| format!("{}\n", b.trim_end_matches('\n')))
        .collect();
    families.extend(super::process::read().map_or_else(Vec::new, |p| super::process::families(&p)));
    let mut keyed: Vec<(String, String)> = families
        .into_iter()
        .map(|b| (family_name(&b).to_owned(), sort_samples(&b)))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(text.len() + 1024);
    for (_, block) in keyed {
        out.push_str(&block);
        out.push('\n');
    }
    out
}

/// The family a rendered block is of: the name on its `# HELP`/`# TYPE` line, or of its
/// first sample.
fn family_name(block: &str) -> &str {
    let first = block.lines().next().unwrap_or("");
    match first
        .strip_prefix("# HELP ")
        .or_else(|| first.strip_prefix("# TYPE "))
    {
        Some(rest) => rest.split(' ').next().unwrap_or(""),
        None => first.split(['{', ' ']).next().unwrap_or(""),
    }
}

/// The block with a counter's or gauge's sample lines sorted (comment lines first, as they
/// were).
fn sort_samples(block: &str) -> String {
    if block
        .lines()
        .any(|l| l.starts_with("# TYPE ") && l.ends_with(" histogram"))
    {
        return block.to_owned();
    }
    let (mut comments, mut samples): (Vec<&str>, Vec<&str>) =
        block.lines().partition(|l| l.starts_with('#'));
    samples.sort_unstable();
    comments.append(&mut samples);
    let mut out = comments.join("\n");
    out.push('\n');
    out
}

/// The `# HELP` text of every metric the node records, in one place so that the list doubles
/// as the reference (docs/OPERATIONS.md shows it). A metric recorded elsewhere must be added
/// here; the test below checks the source for any that is not.
const HELP: &[(&str, &str)] = &[
    (
        "wms_node_build_info",
        "Always 1; the `version` label is the node version.",
    ),
    ("wms_node_uptime_seconds", "Seconds since the node started."),
    (
        "wms_node_health_check_status",
        "Per health check (`check`): 0 ok, 1 degraded, 2 failing.",
    ),
    (
        "wms_node_alerts_raised_total",
        "Alerts raised (new episodes), by alert `code`.",
    ),
    (
        "wms_node_alerts_resolved_total",
        "Alerts resolved, by alert `code`.",
    ),
    (
        "wms_node_alerts_active",
        "Alerts currently active, by `code` and `severity`.",
    ),
    (
        "wms_node_store_commit_duration_seconds",
        "Time to commit one group-commit transaction, fsync included.",
    ),
    (
        "wms_node_store_group_commit_batch_size",
        "Writes that shared one durable commit.",
    ),
    (
        "wms_node_store_commit_errors_total",
        "Group commits that failed (their writers got the error).",
    ),
    (
        "wms_node_store_writable",
        "1 while the store accepts writes; 0 after a full disk or an I/O error, until it has reopened itself.",
    ),
    (
        "wms_node_store_reopens_total",
        "Attempts to reopen the store after a failure, by `result` (`ok`, `failed`).",
    ),
    (
        "wms_node_store_quarantined_records_total",
        "Undecodable records moved to quarantine, by `table`.",
    ),
    (
        "wms_node_outbox_enqueued_total",
        "Operations accepted into an outbox queue, by `queue` and `kind`.",
    ),
    (
        "wms_node_outbox_coalesced_total",
        "Operations that replaced an undelivered one with the same coalescing key, by `queue` and `kind`.",
    ),
    (
        "wms_node_outbox_rejected_total",
        "Operations refused at the byte cap, by `queue` and `kind`.",
    ),
    (
        "wms_node_outbox_dropped_total",
        "Operations removed undelivered, by `queue`, `kind` and `reason` (`cap`, `operator`).",
    ),
    (
        "wms_node_outbox_attempts_total",
        "Delivery attempts, by `queue`, `kind` and `outcome`.",
    ),
    (
        "wms_node_outbox_attempt_duration_seconds",
        "Duration of one delivery attempt, by `queue` and `kind`.",
    ),
    (
        "wms_node_outbox_delivered_total",
        "Operations the other side confirmed (done or already done), by `queue` and `kind`.",
    ),
    (
        "wms_node_outbox_dead_letters_total",
        "Operations given up as permanent failures, by `queue` and `kind`.",
    ),
    ("wms_node_outbox_ops", "Operations waiting, by `queue`."),
    (
        "wms_node_outbox_dead_letter_ops",
        "Operations in the dead letters (kept in the store, counted at start), by `queue` and `kind`.",
    ),
    (
        "wms_node_outbox_bytes",
        "Accounted bytes of the backlog, by `queue`.",
    ),
    (
        "wms_node_outbox_cap_bytes",
        "The byte cap on the backlog (`store.max_bytes`), 0 for none, by `queue`.",
    ),
    (
        "wms_node_outbox_oldest_item_age_seconds",
        "Age of the oldest undelivered operation, by `queue`.",
    ),
    (
        "wms_node_taobao_calls_total",
        "TOP API calls, by `method` and `code` (0 success, `banned` not sent).",
    ),
    (
        "wms_node_taobao_call_duration_seconds",
        "TOP API call duration, by `method`.",
    ),
    (
        "wms_node_taobao_carriers",
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
        "wms_node_shipments_total",
        "Parcels through the ship scan (or `wms-node ship`); each queues one `Ship` op per trade.",
    ),
    (
        "wms_node_ship_deadline_alerts_total",
        "Ship-by deadline alerts raised, by `level` (`warning`, `critical`).",
    ),
    (
        "wms_node_orders_near_deadline",
        "Open orders not shipped within `shipping.deadline_warning` of their deadline.",
    ),
    (
        "wms_node_stock_pushes_total",
        "Stock calls made for listings, by `mode` (`full`: a zero, `delta`: a warehouse \
         event, `correction`: a difference to a platform reading, `read`) and `result` \
         (`applied`, `not_applied`, `unknown`).",
    ),
    (
        "wms_node_waybills_total",
        "E-waybill requests, by `result` (`issued`, `reprint`, `found`, `refused`, `unknown`).",
    ),
    (
        "wms_node_reconcile_runs_total",
        "Reconciliation runs (on demand and periodic).",
    ),
    (
        "wms_node_reconcile_findings",
        "Findings of the last reconciliation run, by `check`.",
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
        "wms_node_taobao_link_up",
        "1 while Taobao answers the node's calls; 0 while it does not (or before the first call).",
    ),
    (
        "wms_node_taobao_token_expiry_timestamp_seconds",
        "When the shop's access token expires (Unix seconds; 0 when unknown). Alert before it.",
    ),
    (
        "wms_node_taobao_token_refreshable",
        "1 when the node can refresh the shop's token by itself; 0 when someone must authorise again.",
    ),
    (
        "wms_node_store_file_bytes",
        "Size of the store file on disk.",
    ),
    (
        "wms_node_store_disk_free_bytes",
        "Space left for the store on its disk (available to the node's user).",
    ),
    (
        "wms_node_taobao_calls_today",
        "TOP calls sent today (GMT+8 day), counted against `taobao.daily_call_budget`.",
    ),
    (
        "wms_node_restarts_total",
        "Starts after a run that ended without a clean stop, ever, by `cause` (crash, failure, power_loss); kept in the data dir.",
    ),
    (
        "wms_node_restarts_in_a_row",
        "Restarts since the node last ran steadily for 10 minutes; the restart_loop alert is raised from 3.",
    ),
    (
        "wms_node_http_connections_closed_total",
        "Ops HTTP connections closed for being idle, and requests ended by the request timeout (`reason`).",
    ),
    (
        "wms_node_taobao_call_budget",
        "The daily call budget (`taobao.daily_call_budget`); stock waits from 90 %, intake from 97 %.",
    ),
    (
        "wms_node_floor_events_total",
        "Device events and replies taken into the dispatch pipeline, by `type`.",
    ),
    (
        "wms_node_floor_refused_total",
        "Device payloads answered `ok:false` or dropped, by `reason` (oversize, malformed, unknown_type, wrong_topic, version, invalid, unknown_device, store, bad_topic, gateway_busy).",
    ),
    (
        "wms_node_ota_requests_total",
        "OTA update requests received over MQTT, by `source` (mqtt) and `status` of the answer (installed, refused, failed).",
    ),
    (
        "wms_node_floor_duplicates_total",
        "Re-sent device events answered with their original answer (not applied again).",
    ),
    (
        "wms_node_floor_device_rejects_total",
        "Commands devices could not use and answered with a `reject`, by `of` (the command's type).",
    ),
    (
        "wms_node_floor_event_duration_seconds",
        "From a device event's arrival to its answer being queued (after the commit).",
    ),
    (
        "wms_node_floor_broker_connected",
        "1 while the node's MQTT session is connected to the broker, else 0.",
    ),
    (
        "wms_node_floor_broker_denied_total",
        "Refusals by the embedded broker, by `what` (connect, publish, subscribe).",
    ),
    (
        "wms_node_floor_devices_online",
        "Registered devices whose last `state` said online.",
    ),
    (
        "wms_node_floor_labels_total",
        "Shipping labels of packed parcels, by result: sent to the station's printer, reprint \
         (no print_result within floor.print_timeout), printed, failed (the station was told).",
    ),
    (
        "wms_node_floor_holds_sent_total",
        "Holds sent to the device working on an order that went on hold.",
    ),
    (
        "wms_node_floor_holds_resent_total",
        "Holds sent again to a device back online that had not acknowledged them.",
    ),
    (
        "wms_node_floor_put_backs_waiting_total",
        "Put-back tasks made for held orders no device was working on (picked, packed or \
         labelled), waiting for the next scanner asking for pick work.",
    ),
];

fn describe() {
    for (name, help) in HELP {
        // The recorder keeps one help text per name, whatever the metric's type.
        metrics::describe_counter!(*name, *help);
    }
}

/// Where the families of a `/metrics` text break the naming rule of the module doc: not
/// prefixed (`process_*` aside), a unit other than a base one, a counter without `_total` or
/// something else with it, no `# HELP`. Empty when all is well.
pub fn naming_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let helped: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
        if !name.starts_with(PREFIX) && !name.starts_with("process_") {
            problems.push(format!("{name}: neither {PREFIX}* nor process_*"));
        }
        if [
            "_ms",
            "_millis",
            "_milliseconds",
            "_kb",
            "_mib",
            "_minutes",
            "_hours",
        ]
        .iter()
        .any(|u| name.ends_with(u) || name.contains(&format!("{u}_")))
        {
            problems.push(format!("{name}: not in base units (seconds, bytes)"));
        }
        match (kind, name.ends_with("_total")) {
            ("counter", false) => problems.push(format!("{name}: a counter without _total")),
            ("gauge" | "histogram", true) => {
                problems.push(format!("{name}: a {kind} named like a counter (_total)"))
            }
            ("summary", _) => problems.push(format!("{name}: a summary (use a histogram)")),
            _ => {}
        }
        if !helped.contains(&name) {
            problems.push(format!("{name}: no # HELP"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::{HELP, PREFIX, naming_problems, render};

    /// Families come out in name order, samples in label order, the same at every scrape,
    /// with the process's own families among them (on Linux), and every family follows the
    /// naming rule.
    #[test]
    fn families_render_in_a_stable_order_and_follow_the_naming_rule() {
        let handle = super::handle();
        for q in ["zz", "aa", "mm", "bb"] {
            metrics::counter!("wms_node_outbox_enqueued_total", "queue" => q, "kind" => "x")
                .increment(1);
            metrics::gauge!("wms_node_outbox_ops", "queue" => q).set(1.0);
        }
        metrics::gauge!("wms_node_taobao_link_up").set(1.0);
        metrics::histogram!("wms_node_store_commit_duration_seconds").record(0.002);
        let first = render(&handle);
        let names: Vec<&str> = first
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "families out of order or repeated:\n{first}");
        for _ in 0..5 {
            // Other tests in this process record concurrently; compare what this test owns.
            let again = render(&handle);
            let ours = |t: &str| -> Vec<String> {
                t.lines()
                    .filter(|l| l.starts_with("wms_node_outbox_ops{"))
                    .map(str::to_owned)
                    .collect()
            };
            assert_eq!(ours(&first), ours(&again));
        }
        let queues: Vec<&str> = first
            .lines()
            .filter(|l| l.starts_with("wms_node_outbox_ops{"))
            .collect();
        let mut in_order = queues.clone();
        in_order.sort_unstable();
        assert_eq!(queues, in_order, "{first}");
        if cfg!(target_os = "linux") {
            for f in [
                "process_cpu_seconds_total",
                "process_resident_memory_bytes",
                "process_open_fds",
            ] {
                assert!(
                    first.contains(&format!("# TYPE {f} ")),
                    "{f} missing:\n{first}"
                );
            }
        }
        // The http tests' own counter (exempt above too) may be in the same process.
        let problems: Vec<String> = naming_problems(&first)
            .into_iter()
            .filter(|p| !p.starts_with("wms_node_ops_http_test_total:"))
            .collect();
        assert!(problems.is_empty(), "{problems:?}\n{first}");
    }

    /// The rule's checker catches each way of breaking it.
    #[test]
    fn the_naming_checker_names_each_breach() {
        let bad = "# TYPE wms_node_sent counter\n# HELP other_thing x\n# TYPE other_thing gauge\n\
                   # HELP wms_node_wait_ms x\n# TYPE wms_node_wait_ms gauge\n\
                   # HELP wms_node_ops_total x\n# TYPE wms_node_ops_total gauge\n";
        let p = naming_problems(bad);
        assert!(
            p.iter()
                .any(|p| p.starts_with("wms_node_sent: a counter without _total")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.starts_with("wms_node_sent: no # HELP")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.starts_with("other_thing: neither")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("wms_node_wait_ms: not in base units")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|p| p.starts_with("wms_node_ops_total: a gauge")),
            "{p:?}"
        );
        assert_eq!(p.len(), 5, "{p:?}");
    }

    /// Names follow the conventions of the module doc.
    #[test]
    fn every_family_is_prefixed_in_base_units_and_counters_end_in_total() {
        for (name, help) in HELP {
            assert!(name.starts_with(PREFIX), "{name} lacks {PREFIX}");
            assert!(
                !["_ms", "_millis", "_milliseconds", "_kb", "_mib"]
                    .iter()
                    .any(|u| name.ends_with(u)),
                "{name} is not in base units"
            );
            assert!(!help.is_empty(), "{name} has no help");
        }
        for counter in [
            "wms_node_alerts_raised_total",
            "wms_node_outbox_enqueued_total",
            "wms_node_taobao_calls_total",
        ] {
            assert!(HELP.iter().any(|(n, _)| *n == counter), "{counter}");
        }
    }

    /// Latencies render as true histograms (buckets), not summaries.
    #[test]
    fn latencies_are_histograms_with_buckets() {
        let handle = super::handle();
        metrics::histogram!("wms_node_store_commit_duration_seconds").record(0.003);
        metrics::histogram!("wms_node_store_group_commit_batch_size").record(3.0);
        let text = handle.render();
        assert!(
            text.contains("wms_node_store_commit_duration_seconds_bucket{le=\"0.005\"}"),
            "{text}"
        );
        assert!(
            text.contains("wms_node_store_group_commit_batch_size_bucket{le=\"4\"}"),
            "{text}"
        );
        assert!(!text.contains("quantile="), "{text}");
    }

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
                        if name != "wms_node_ops_http_test_total"
                            && !HELP.iter().any(|(n, _)| *n == name)
                        {
                            missing.push(format!("{name} ({})", path.display()));
                        }
                    }
                }
            }
        }
        assert!(missing.is_empty(), "metrics without help: {missing:?}");
    }
}
