//! `wms-node demo` as a new user runs it (shortened): the node, the in-process shop and the
//! pack station (e-waybills from the shop's Cainiao, shipments through the node's ship
//! function, stock from the ledger), with an outage in the middle. The demo checks its
//! outcome against the shop itself; this test checks that it says so, and reads the figures
//! it printed.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wms-node");

#[test]
fn demo_ships_every_order_through_an_outage_and_checks_the_shop() {
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--orders",
            "12",
            "--outage",
            "2s",
            "--exit",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));

    // The figures come from the shop's own records (trade status, shipments, stock).
    for line in [
        "trades shipped (WAIT_BUYER_CONFIRM_GOODS)     12 of 12  ok",
        "shipped once, with the Cainiao waybill        12 of 12  ok",
        "orders consigned in the node's own records    12 of 12  ok",
        "listings whose platform stock = ledger          8 of 8  ok",
        "All shipments and stock reached Taobao; nothing was lost or sent twice.",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The outage really happened: the node saw the link down and calls were cut off.
    assert!(stdout.contains("node health: outbox degraded"), "{stdout}");
    let cut: usize = stdout
        .lines()
        .find(|l| l.contains("calls cut off by the outage"))
        .and_then(|l| l.split_whitespace().rev().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    assert!(cut > 0, "no call failed during the outage:\n{stdout}");
    // Six receipts during the outage on three SKUs: their deltas are summed per listing
    // while they wait, so fewer calls than receipts (three, unless one was in flight).
    let line = stdout
        .lines()
        .find(|l| l.contains("receipts on 3 listings took"))
        .unwrap_or_default();
    let receipts = line
        .split("; ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    let calls = line
        .split("took ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    assert_eq!(receipts, Some(6), "{line}");
    assert!(calls.is_some_and(|c| (3..6).contains(&c)), "{line}");
    // Nothing secret or personal in what the user sees.
    assert!(!stdout.contains("helloworld") && !stderr.contains("helloworld"));
}
