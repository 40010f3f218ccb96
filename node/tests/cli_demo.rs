//! `wms-node demo --headless` as a script runs it: the node, its embedded broker, the
//! in-process shop and the simulated floor (scanners and a printer logged in over MQTT with
//! their own credentials), with a refund on the floor and an outage in the middle. The demo
//! checks its outcome against the shop itself; this test checks that it says so, reads the
//! figures it printed, and that its exit status follows the check.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wms-node");

fn figure(stdout: &str, row: &str) -> String {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(row))
        .map(|l| l.trim_start()[row.len()..].trim().to_owned())
        .unwrap_or_else(|| panic!("no row {row:?} in:\n{stdout}"))
}

#[test]
fn headless_demo_runs_the_floor_through_a_refund_and_an_outage_and_checks_the_shop() {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--headless",
            "--duration",
            "12s",
            "--orders",
            "8",
            "--outage",
            "3s",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(150));

    // The figures come from the shop's own records (trade status, shipments, stock): seven
    // orders shipped, the eighth refunded while it was picked.
    for (row, want) in [
        ("trades shipped (WAIT_BUYER_CONFIRM_GOODS)", "7 of 7  ok"),
        ("shipped once, with the Cainiao waybill", "7 of 7  ok"),
        ("orders consigned in the node's own records", "7 of 7  ok"),
        (
            "refunded while picked: put back, not shipped",
            "put_back  ok",
        ),
        ("listings whose platform stock = ledger", "8 of 8  ok"),
    ] {
        assert_eq!(figure(&stdout, row), want, "{stdout}");
    }
    assert!(
        stdout.contains("All shipments and stock reached Taobao; nothing was lost or sent twice."),
        "{stdout}"
    );
    // The floor really ran over MQTT: every device logged in, pickers were given tasks and
    // scanned units, the hold reached a scanner and the picked units went back.
    assert!(
        stdout.contains("5 devices online, each with its own login"),
        "{stdout}"
    );
    assert!(stdout.contains("picks order"), "{stdout}");
    assert!(stdout.contains("HOLD order"), "{stdout}");
    assert!(stdout.contains("puts back "), "{stdout}");
    let scans: u64 = figure(&stdout, "scans answered by the node (refused)")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(scans >= 7 + 7 + 2, "{scans} scans:\n{stdout}");
    // Status lines while it ran, with the view's figures.
    let status = stdout
        .lines()
        .find(|l| l.contains(" status ") && l.contains("devices 5/5 online"))
        .unwrap_or_else(|| panic!("no status line with every device online:\n{stdout}"));
    assert!(
        status.contains("scans/s") && status.contains("queue"),
        "{status}"
    );
    // The outage really happened: calls were cut off.
    let cut: usize = figure(&stdout, "calls cut off by the outage (retried later)")
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(cut > 0, "no call failed during the outage:\n{stdout}");
    assert!(
        stdout.contains("the Taobao link is down for 3 s"),
        "{stdout}"
    );
    assert!(stdout.contains("the Taobao link is back"), "{stdout}");
    // Nothing secret or personal in what the user sees.
    assert!(!stdout.contains("helloworld") && !stderr.contains("helloworld"));
}

#[test]
fn bad_demo_arguments_are_usage_errors() {
    for args in [
        &["demo", "--duration", "1s"][..],
        &["demo", "--orders", "2"][..],
        &["demo", "--duration", "soon"][..],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--duration") || stderr.contains("--orders"),
            "{stderr}"
        );
    }
}
