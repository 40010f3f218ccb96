//! A live node's `/metrics`, scraped as Prometheus would once the node has talked to the
//! Taobao sandbox: every family follows the naming rule (`wms_node_` prefix or the standard
//! `process_*`, base units, `_total` on counters and only there, a `# HELP` each), families
//! come in name order, and `promtool check metrics` finds nothing to say.
//!
//! promtool comes with Debian's `prometheus` package. Without it the promtool part is
//! skipped with a message, unless `WMS_REQUIRE_PROMTOOL=1` (set by `.ci/run`, which installs
//! it).

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;
use wms_e2e::{Node, Sandbox, eventually, node_config};

const SESSION: &str = "e2e-session-metrics";

/// Where promtool is, if installed.
fn promtool() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from("/usr/bin/promtool");
    if p.exists() {
        return Some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join("promtool"))
        .find(|p| p.exists())
}

/// The naming rule of `node/src/ops/metrics.rs`, over every family of `text`.
fn naming_problems(text: &str) -> Vec<String> {
    let helped: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let mut problems = Vec::new();
    for rest in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = rest.split_once(' ').unwrap();
        if !name.starts_with("wms_node_") && !name.starts_with("process_") {
            problems.push(format!("{name}: no wms_node_ prefix"));
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
        .any(|u| name.ends_with(u))
        {
            problems.push(format!("{name}: not in base units"));
        }
        if (kind == "counter") != name.ends_with("_total") {
            problems.push(format!("{name}: a {kind} (only counters end in _total)"));
        }
        if kind == "summary" {
            problems.push(format!("{name}: a summary, not a histogram"));
        }
        if !helped.contains(&name) {
            problems.push(format!("{name}: no # HELP"));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_of_a_live_node_follows_the_rule_and_promtool_is_content() {
    let sandbox = Sandbox::start(&["--session", SESSION]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(dir.path(), &sandbox, SESSION, "").unwrap();
    let node = Node::start(&config).await.unwrap();
    let url = format!("{}/metrics", node.http_url);

    // After the first successful TOP call the client's families exist too.
    let text = eventually(Duration::from_secs(20), "TOP call metrics", || async {
        let t = reqwest::get(&url).await?.text().await?;
        Ok(t.contains("wms_node_taobao_calls_total{").then_some(t))
    })
    .await
    .unwrap();

    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert!(families.len() >= 20, "{text}");
    for f in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "wms_node_build_info",
        "wms_node_taobao_call_duration_seconds",
    ] {
        assert!(families.contains(&f), "{f} missing:\n{text}");
    }
    let mut sorted = families.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(families, sorted, "families not in name order:\n{text}");
    let problems = naming_problems(&text);
    assert!(problems.is_empty(), "{problems:#?}\n{text}");

    // The node's resident memory is a plausible figure for it, not for the test process.
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid())).unwrap();
    let vm_rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    let ratio = rss / (vm_rss_kib * 1024.0);
    assert!(
        (0.5..2.0).contains(&ratio),
        "rss {rss} vs VmRSS {vm_rss_kib} KiB"
    );

    // A later scrape lists the same families (and any the node has begun to record since)
    // in the same order.
    let again = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let families_again: Vec<&str> = again
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let kept: Vec<&str> = families_again
        .iter()
        .copied()
        .filter(|f| families.contains(f))
        .collect();
    assert_eq!(families, kept, "{again}");
    let mut sorted_again = families_again.clone();
    sorted_again.sort_unstable();
    assert_eq!(families_again, sorted_again, "{again}");

    match promtool() {
        Some(bin) => {
            let mut child = Command::new(bin)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && said.trim().is_empty(),
                "promtool check metrics ({}): {said}\n{text}",
                out.status
            );
        }
        None if std::env::var("WMS_REQUIRE_PROMTOOL").as_deref() == Ok("1") => {
            panic!("WMS_REQUIRE_PROMTOOL=1 but promtool is not installed (Debian: prometheus)")
        }
        None => eprintln!(
            "skipping promtool check metrics: promtool not installed (Debian package prometheus)"
        ),
    }

    let (exit, _) = node.stop(Duration::from_secs(5)).unwrap();
    assert!(exit.success());
}
