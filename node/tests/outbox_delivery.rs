//! The outbox's delivery behaviour against a scripted sink: order, coalescing, retries and
//! backoff, catch-up, auth pauses, dead letters, the byte cap, shutdown.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod outbox_support;

use firmware_bridge::pace::Rate;
use outbox_support::*;
use redb::ReadableTable;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use wms_node::ops::alert::AlertCode;
use wms_node::outbox::{EnqueueError, Outcome};
use wms_node::store::{self, CapPolicy, Store, StoreError};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn every_op_is_delivered_once_in_order_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    let mut n = 0;
    for round in 0..10 {
        for key in 0..5 {
            n += 1;
            outbox.enqueue_now(TestOp::note(key, n)).await.unwrap();
        }
        let _ = round;
    }
    let sink = ScriptedSink::always_done();
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.done().len() == 50).await);
    token.cancel();
    run.await.unwrap();
    let done = sink.done();
    let mut sorted = done.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, (1..=50).collect::<Vec<_>>(), "each op exactly once");
    for key in 0..5u64 {
        let of_key: Vec<u64> = sink
            .deliveries()
            .iter()
            .filter(|d| matches!(d.op, TestOp::Note { key: k, .. } if k == key))
            .map(|d| d.op.n())
            .collect();
        let mut expect = of_key.clone();
        expect.sort();
        assert_eq!(of_key, expect, "key {key} delivered in enqueue order");
    }
    assert!(pending(&outbox).is_empty());
    assert!(sink.max_in_flight.load(Ordering::SeqCst) <= 4);
}

#[tokio::test]
async fn urgent_ops_go_before_normal_ones_queued_earlier() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut cfg = fast_config();
    cfg.concurrency = 1;
    let (outbox, _) = outbox(&store, cfg);
    for n in 1..=5 {
        outbox.enqueue_now(TestOp::note(n, n)).await.unwrap();
    }
    outbox
        .enqueue_now(TestOp::Ship { tid: 9, n: 6 })
        .await
        .unwrap();
    let sink = ScriptedSink::always_done();
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.done().len() == 6).await);
    token.cancel();
    run.await.unwrap();
    assert_eq!(sink.done()[0], 6, "the shipment first: {:?}", sink.done());
}

#[tokio::test]
async fn a_newer_stock_value_replaces_the_queued_one_with_a_new_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    let first = outbox
        .enqueue_now(TestOp::Stock {
            sku: 1,
            qty: 10,
            n: 1,
        })
        .await
        .unwrap();
    let second = outbox
        .enqueue_now(TestOp::Stock {
            sku: 1,
            qty: 7,
            n: 2,
        })
        .await
        .unwrap();
    assert_eq!(second.replaced, Some(first.seq));
    assert_ne!(second.idempotency_key, first.idempotency_key);
    let q = pending(&outbox);
    assert_eq!(q.len(), 1);
    assert_eq!(
        q[0].1,
        TestOp::Stock {
            sku: 1,
            qty: 7,
            n: 2
        }
    );
    let sink = ScriptedSink::always_done();
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.done() == vec![2]).await);
    token.cancel();
    run.await.unwrap();
    assert_eq!(sink.deliveries()[0].idempotency_key, second.idempotency_key);
}

#[tokio::test]
async fn a_value_enqueued_while_the_older_one_is_in_flight_is_delivered_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    outbox
        .enqueue_now(TestOp::Stock {
            sku: 1,
            qty: 10,
            n: 1,
        })
        .await
        .unwrap();
    let (sink, gate) = ScriptedSink::always_done().gated();
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.in_flight.load(Ordering::SeqCst) == 1).await);
    // The old value is on the wire; a new one arrives and replaces its row.
    let newer = outbox
        .enqueue_now(TestOp::Stock {
            sku: 1,
            qty: 3,
            n: 2,
        })
        .await
        .unwrap();
    assert_eq!(newer.replaced, Some(1));
    // The newer op must not go out while the older is still in flight (same key).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sink.in_flight.load(Ordering::SeqCst), 1);
    gate.add_permits(10);
    assert!(eventually(T, || sink.done().len() == 2).await);
    token.cancel();
    run.await.unwrap();
    assert_eq!(sink.done(), vec![1, 2], "the latest value lands last");
    let d = sink.deliveries();
    assert_ne!(d[0].idempotency_key, d[1].idempotency_key);
    assert!(pending(&outbox).is_empty());
}

#[tokio::test]
async fn while_failing_one_probe_at_a_time_and_the_first_success_releases_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut cfg = fast_config();
    cfg.concurrency = 8;
    let (outbox, _) = outbox(&store, cfg);
    for n in 1..=30 {
        outbox.enqueue_now(TestOp::note(n, n)).await.unwrap();
    }
    // The link is down for the first 6 calls.
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let sink = ScriptedSink::new(move |_, _| {
        if c.fetch_add(1, Ordering::SeqCst) < 6 {
            Outcome::Retry {
                after: None,
                reason: "connection refused".into(),
            }
        } else {
            Outcome::Done
        }
    });
    // Each call takes a little while, so concurrent calls overlap.
    let sink = sink.with_delay(Duration::from_millis(10));
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.done().len() == 30).await);
    token.cancel();
    run.await.unwrap();
    let d = sink.deliveries();
    // While down, attempts were strictly one at a time: each of the first 7 calls started
    // after the previous one ended, and after a growing pause.
    let failures: Vec<_> = d.iter().take(6).collect();
    assert!(
        failures
            .iter()
            .all(|x| matches!(x.outcome, Outcome::Retry { .. }))
    );
    let gaps: Vec<Duration> = d.windows(2).take(6).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.iter().sum::<Duration>() > Duration::from_millis(5),
        "{gaps:?}"
    );
    // After the first success, the rest went out concurrently.
    assert!(sink.max_in_flight.load(Ordering::SeqCst) > 1);
    let mut done = sink.done();
    done.sort();
    assert_eq!(done, (1..=30).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_retry_after_hint_from_the_platform_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    outbox.enqueue_now(TestOp::note(1, 1)).await.unwrap();
    let sink = ScriptedSink::new(|_, attempt| {
        if attempt == 1 {
            Outcome::Retry {
                after: Some(Duration::from_millis(300)),
                reason: "code 7: ban will last 1 more seconds".into(),
            }
        } else {
            Outcome::Done
        }
    });
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.done().len() == 1).await);
    token.cancel();
    run.await.unwrap();
    let d = sink.deliveries();
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].attempt, 2);
    assert!(
        d[1].at - d[0].at >= Duration::from_millis(300),
        "{:?}",
        d[1].at - d[0].at
    );
    assert_eq!(d[0].idempotency_key, d[1].idempotency_key);
}

#[tokio::test]
async fn an_auth_failure_pauses_everything_until_resumed_without_loss_or_reordering() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, alerts) = outbox(&store, fast_config());
    for n in 1..=6 {
        outbox
            .enqueue_now(TestOp::Ship { tid: n % 2, n })
            .await
            .unwrap();
    }
    let authorized = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a = authorized.clone();
    let sink = ScriptedSink::new(move |_, _| {
        if a.load(Ordering::SeqCst) {
            Outcome::Done
        } else {
            Outcome::Auth {
                reason: "code 27: invalid session".into(),
            }
        }
    });
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || outbox.is_paused()).await);
    assert!(alerts.is_active(AlertCode::OutboxPaused));
    let calls_when_paused = sink.calls();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sink.calls(),
        calls_when_paused,
        "nothing is tried while paused"
    );
    // More ops keep queueing while paused.
    outbox
        .enqueue_now(TestOp::Ship { tid: 0, n: 7 })
        .await
        .unwrap();
    assert_eq!(pending(&outbox).len(), 7);
    authorized.store(true, Ordering::SeqCst);
    outbox.resume();
    assert!(eventually(T, || sink.done().len() == 7).await);
    token.cancel();
    run.await.unwrap();
    assert!(!alerts.is_active(AlertCode::OutboxPaused));
    for tid in 0..2u64 {
        let of_trade: Vec<u64> = sink
            .done()
            .into_iter()
            .filter(|n| if *n == 7 { tid == 0 } else { n % 2 == tid })
            .collect();
        let mut expect = of_trade.clone();
        expect.sort();
        assert_eq!(of_trade, expect, "trade {tid} in order");
    }
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_with_its_reason_and_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, alerts) = outbox(&store, fast_config());
    outbox
        .enqueue_now(TestOp::Ship { tid: 5, n: 1 })
        .await
        .unwrap();
    outbox
        .enqueue_now(TestOp::Ship { tid: 5, n: 2 })
        .await
        .unwrap();
    let sink = ScriptedSink::new(|op, _| match op.n() {
        1 => Outcome::Permanent {
            reason: "isv.logistics-offline-service-error: bad company code".into(),
        },
        _ => Outcome::Done,
    });
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.done() == vec![2]).await);
    token.cancel();
    run.await.unwrap();
    assert!(pending(&outbox).is_empty());
    let admin = outbox.admin();
    let dead = admin.show(1).unwrap();
    assert_eq!(dead.state, wms_node::outbox::admin::OpState::Dead);
    assert!(dead.dead_reason.unwrap().contains("bad company code"));
    let alert = alerts
        .active()
        .into_iter()
        .find(|a| a.code.as_str() == "dead_letter")
        .expect("dead_letter alert");
    assert_eq!(alert.severity, wms_node::ops::alert::Severity::Critical);
    assert!(alert.message.contains("queue retry 1"), "{}", alert.message);
    assert_eq!(
        alert.subject,
        Some(wms_node::ops::alert::Subject::op_kind("ship"))
    );
}

#[tokio::test]
async fn dead_letters_are_alerted_from_the_store_after_a_restart_until_dropped() {
    use wms_node::ops::alert::Subject;
    use wms_node::outbox::Operation;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    {
        let (outbox, _) = outbox(&store, fast_config());
        outbox.enqueue_now(TestOp::note(1, 1)).await.unwrap();
        let sink = ScriptedSink::new(|_, _| Outcome::Permanent {
            reason: "isv.invalid-parameter".into(),
        });
        let (token, run) = spawn_run(&outbox, sink);
        assert!(
            eventually(T, || outbox.admin().show(1).unwrap().state
                == wms_node::outbox::admin::OpState::Dead)
            .await
        );
        token.cancel();
        run.await.unwrap();
    }
    // A new process: its alerts start empty; the delivery loop finds the dead letter.
    let (outbox, alerts) = outbox(&store, fast_config());
    assert!(!alerts.is_active(AlertCode::DeadLetter));
    let sink = ScriptedSink::new(|_, _| Outcome::Done);
    let (token, run) = spawn_run(&outbox, sink);
    assert!(eventually(T, || alerts.is_active(AlertCode::DeadLetter)).await);
    let kind = Subject::op_kind(TestOp::note(1, 1).kind());
    let alert = alerts.get(AlertCode::DeadLetter, Some(&kind)).unwrap();
    assert!(alert.message.starts_with("1 "), "{}", alert.message);
    // Dropping it through the running node resolves the alert.
    outbox
        .admin()
        .drop_op(1, "wrong item", false)
        .await
        .unwrap();
    assert!(!alerts.is_active(AlertCode::DeadLetter));
    assert_eq!(alerts.history()[0].code, AlertCode::DeadLetter);
    token.cancel();
    run.await.unwrap();
}

#[tokio::test]
async fn a_retried_dead_letter_is_delivered_with_its_original_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    let e = outbox.enqueue_now(TestOp::note(1, 1)).await.unwrap();
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f = fixed.clone();
    let sink = ScriptedSink::new(move |_, _| {
        if f.load(Ordering::SeqCst) {
            Outcome::Done
        } else {
            Outcome::Permanent {
                reason: "isv.invalid-parameter".into(),
            }
        }
    });
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.calls() == 1).await);
    fixed.store(true, Ordering::SeqCst);
    let admin = outbox.admin();
    assert!(eventually(T, || admin.show(1).is_ok_and(|v| v.dead_reason.is_some())).await);
    let r = admin.retry(1).await.unwrap();
    assert_eq!(r.action, "requeued");
    assert!(eventually(T, || sink.done() == vec![1]).await);
    token.cancel();
    run.await.unwrap();
    let d = sink.deliveries();
    assert_eq!(d[1].idempotency_key, e.idempotency_key);
    assert_eq!(d[1].attempt, 1, "attempts start over after a retry");
}

fn capped(dir: &tempfile::TempDir, max_bytes: u64, policy: CapPolicy) -> Store {
    let mut o = store_options(dir);
    o.max_bytes = max_bytes;
    o.cap_policy = policy;
    Store::open(o, wms_node::ops::alert::Alerts::new()).unwrap()
}

fn padded(key: u64, n: u64) -> TestOp {
    TestOp::Note {
        key,
        n,
        pad: "x".repeat(400),
    }
}

#[tokio::test]
async fn at_the_cap_reject_new_hands_the_op_back_but_shipments_still_go_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = capped(&dir, 4_000, CapPolicy::RejectNew);
    let (outbox, alerts) = outbox(&store, fast_config());
    let mut accepted = 0;
    let mut refused = None;
    for n in 1..=20 {
        match outbox.enqueue_now(padded(n, n)).await {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert!(e.is_retryable());
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the cap refuses at some point");
    assert!(matches!(refused, EnqueueError::Full { .. }), "{refused}");
    assert_eq!(refused.into_op().n(), accepted + 1, "the op comes back");
    assert!(alerts.is_active(AlertCode::StoreCap));
    let stats = outbox.admin().stats().unwrap();
    assert!(stats.bytes <= 4_000, "{} bytes", stats.bytes);
    // Critical ops are accepted beyond the cap.
    for n in 100..110 {
        outbox
            .enqueue_now(TestOp::Ship { tid: n, n })
            .await
            .unwrap();
    }
    // Delivering frees room and clears the alert.
    let sink = ScriptedSink::always_done();
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || pending(&outbox).is_empty()).await);
    token.cancel();
    run.await.unwrap();
    assert!(!alerts.is_active(AlertCode::StoreCap));
    outbox.enqueue_now(padded(1, 999)).await.unwrap();
}

#[tokio::test]
async fn at_the_cap_drop_oldest_drops_old_notes_and_never_shipments() {
    let dir = tempfile::tempdir().unwrap();
    let store = capped(&dir, 4_000, CapPolicy::DropOldest);
    let (outbox, alerts) = outbox(&store, fast_config());
    outbox
        .enqueue_now(TestOp::Ship { tid: 1, n: 1 })
        .await
        .unwrap();
    let mut dropped = Vec::new();
    for n in 2..=40 {
        let e = outbox.enqueue_now(padded(n, n)).await.unwrap();
        dropped.extend(e.dropped);
    }
    assert!(!dropped.is_empty());
    assert!(alerts.is_active(AlertCode::OutboxDropped));
    let q = pending(&outbox);
    assert!(q.iter().any(|(_, op)| op.n() == 1), "the shipment stays");
    assert!(
        q.iter().any(|(_, op)| op.n() == 40),
        "the newest note is in"
    );
    let ns: Vec<u64> = q.iter().map(|(_, op)| op.n()).collect();
    let oldest_note_kept = ns.iter().copied().filter(|&n| n != 1).min().unwrap();
    assert!(
        dropped.iter().all(|&seq| seq < oldest_note_kept),
        "the oldest went first"
    );
    assert!(outbox.admin().stats().unwrap().bytes <= 4_000);
}

#[tokio::test]
async fn under_the_block_policy_a_producer_waits_for_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = capped(&dir, 3_000, CapPolicy::Block);
    let (outbox, _) = outbox(&store, fast_config());
    let mut n = 0;
    loop {
        n += 1;
        let o = outbox.clone();
        let op = padded(n, n);
        let r = tokio::time::timeout(Duration::from_millis(200), o.enqueue_now(op)).await;
        if r.is_err() {
            break; // blocked
        }
        assert!(n < 50, "the cap never blocked");
    }
    let o = outbox.clone();
    let blocked = tokio::spawn(async move { o.enqueue_now(padded(999, 999)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!blocked.is_finished());
    let sink = ScriptedSink::always_done();
    let (token, run) = spawn_run(&outbox, sink.clone());
    let r = tokio::time::timeout(T, blocked).await.unwrap().unwrap();
    assert!(r.is_ok());
    assert!(eventually(T, || sink.done().contains(&999)).await);
    token.cancel();
    run.await.unwrap();
}

/// What a producer's write (a scan that ships a trade) can fail with: its own error, with a
/// variant for each layer below it, as a producer would define it.
#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Outbox(#[from] EnqueueError<TestOp>),
    #[error("refused: {0}")]
    Refused(&'static str),
}

#[tokio::test]
async fn an_enqueue_commits_with_the_local_change_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    const ORDERS: redb::TableDefinition<&str, store::Bytes> = redb::TableDefinition::new("orders");
    let o = outbox.clone();
    store
        .write(move |txn| -> Result<(), ScanError> {
            store::put(txn, ORDERS, "tid:1", &"shipped".to_string())?;
            o.enqueue(txn, TestOp::Ship { tid: 1, n: 1 })?;
            Ok(())
        })
        .await
        .unwrap();
    let o = outbox.clone();
    let failed: Result<(), ScanError> = store
        .write(move |txn| {
            store::put(txn, ORDERS, "tid:2", &"shipped".to_string())?;
            o.enqueue(txn, TestOp::Ship { tid: 2, n: 2 })?;
            Err(ScanError::Refused("the scan was refused after all"))
        })
        .await;
    assert!(
        matches!(failed, Err(ScanError::Refused(_))),
        "the closure's own error comes back as it was: {failed:?}"
    );
    let q = pending(&outbox);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].1.n(), 1);
    let tid2: Option<String> = store.read(|r| store::get(r, ORDERS, "tid:2")).unwrap();
    assert_eq!(tid2, None);
}

#[tokio::test]
async fn a_cap_refusal_inside_a_callers_write_comes_back_typed_with_the_op() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = store_options(&dir);
    o.max_bytes = 400;
    let store = Store::open(o, wms_node::ops::alert::Alerts::new()).unwrap();
    let (outbox, _) = outbox(&store, fast_config());
    const ORDERS: redb::TableDefinition<&str, store::Bytes> = redb::TableDefinition::new("orders");
    let mut refused = None;
    for n in 1..=20u64 {
        let o = outbox.clone();
        let r = store
            .write(move |txn| -> Result<(), ScanError> {
                store::put(txn, ORDERS, format!("note:{n}").as_str(), &n)?;
                o.enqueue(txn, TestOp::note(n, n))?;
                Ok(())
            })
            .await;
        if let Err(e) = r {
            refused = Some((n, e));
            break;
        }
    }
    let Some((n, ScanError::Outbox(EnqueueError::Full { op, used, cap }))) = refused else {
        panic!("expected the cap to refuse an op as EnqueueError::Full, got {refused:?}");
    };
    assert_eq!(op, TestOp::note(n, n), "the refused op is handed back");
    assert_eq!(cap, 400);
    assert!(used <= cap);
    // The local change of the refused write was not committed either.
    let local: Option<u64> = store
        .read(|r| store::get(r, ORDERS, format!("note:{n}").as_str()))
        .unwrap();
    assert_eq!(local, None);
}

#[tokio::test]
async fn shutdown_lets_in_flight_attempts_finish_and_abandons_stragglers_past_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut cfg = fast_config();
    cfg.shutdown_grace = Duration::from_millis(300);
    let (outbox, _) = outbox(&store, cfg);
    outbox.enqueue_now(TestOp::note(1, 1)).await.unwrap();
    outbox.enqueue_now(TestOp::note(2, 2)).await.unwrap();
    let (sink, gate) = ScriptedSink::always_done().gated();
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.in_flight.load(Ordering::SeqCst) >= 1).await);
    // Give the probe a chance to complete so both are in flight.
    gate.add_permits(1);
    assert!(
        eventually(T, || sink.in_flight.load(Ordering::SeqCst) == 1
            && sink.done().len() == 1)
        .await
    );
    let started = Instant::now();
    token.cancel();
    run.await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "waited for the straggler: {took:?}"
    );
    assert!(
        took < Duration::from_secs(2),
        "but not past the grace: {took:?}"
    );
    // The abandoned op is still queued, to be delivered after the restart.
    let q = pending(&outbox);
    assert_eq!(q.len(), 1);
}

#[tokio::test]
async fn the_rate_limit_spaces_out_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut cfg = fast_config();
    cfg.rate = Some(Rate::new(50.0, 1).unwrap());
    cfg.concurrency = 8;
    let (outbox, _) = outbox(&store, cfg);
    for n in 1..=11 {
        outbox.enqueue_now(TestOp::note(n, n)).await.unwrap();
    }
    let sink = ScriptedSink::always_done();
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.done().len() == 11).await);
    token.cancel();
    run.await.unwrap();
    let d = sink.deliveries();
    let span = d[10].at - d[0].at;
    // 10 intervals at 50/s: at least 200 ms (minus timer slack).
    assert!(span >= Duration::from_millis(180), "{span:?}");
}

#[tokio::test]
async fn an_undecodable_op_is_quarantined_and_its_key_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, alerts) = outbox(&store, fast_config());
    let bad = outbox.enqueue_now(TestOp::note(1, 1)).await.unwrap();
    outbox.enqueue_now(TestOp::note(1, 2)).await.unwrap();
    // Damage the first op's payload in place (as a partial write of an old build might).
    let seq = bad.seq;
    store
        .write(move |txn| {
            let t = txn.open_table(wms_node::outbox::record::OUTBOX)?;
            let raw = t.get(seq)?.map(|v| v.value().to_vec()).unwrap();
            drop(t);
            let mut env = wms_node::outbox::record::decode_envelope(&raw).unwrap();
            // Same length, so the byte accounting is unaffected.
            env.op = vec![0xff; env.op.len()];
            let raw = postcard::to_allocvec(&env).unwrap();
            txn.open_table(wms_node::outbox::record::OUTBOX)?
                .insert(seq, raw.as_slice())?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let sink = ScriptedSink::always_done();
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || sink.done() == vec![2]).await);
    token.cancel();
    run.await.unwrap();
    let stats = outbox.admin().stats().unwrap();
    assert_eq!(stats.quarantined, 1);
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.bytes, 0, "bytes balance after a quarantine");
    assert!(alerts.is_active(AlertCode::StoreQuarantine));
}

#[tokio::test]
async fn a_long_blocked_key_does_not_hide_ready_ops_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut cfg = fast_config();
    cfg.scan_budget = 8;
    let (outbox, _) = outbox(&store, cfg);
    // Key 1: a head backing off for a minute, and 50 ops behind it; then one op of key 2,
    // far beyond what one scan may look at.
    for n in 1..=51 {
        outbox.enqueue_now(TestOp::note(1, n)).await.unwrap();
    }
    outbox.enqueue_now(TestOp::note(2, 52)).await.unwrap();
    let later = store::now_ms() + 60_000;
    store
        .write(move |txn| {
            wms_node::outbox::record::record_failure(
                &wms_node::outbox::record::QueueTables::OUTBOX,
                txn,
                1,
                1,
                "isp.overload",
                later,
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let sink = ScriptedSink::always_done();
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(
        eventually(T, || sink.done() == vec![52]).await,
        "{:?}",
        sink.done()
    );
    token.cancel();
    run.await.unwrap();
    let show = outbox.admin().show(1).unwrap();
    assert_eq!(show.state, wms_node::outbox::admin::OpState::BackingOff);
    assert_eq!(show.last_error.as_deref(), Some("isp.overload"));
}

#[tokio::test]
async fn the_health_check_fails_while_paused_and_degrades_while_the_link_is_down() {
    use wms_node::status::health::Status;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (outbox, _) = outbox(&store, fast_config());
    outbox.enqueue_now(TestOp::note(1, 1)).await.unwrap();
    assert_eq!(
        outbox.assess().0,
        Status::Failing,
        "queued, no loop running"
    );
    let sink = ScriptedSink::new(|_, _| Outcome::Retry {
        after: None,
        reason: "timeout".into(),
    });
    let (token, run) = spawn_run(&outbox, sink.clone());
    assert!(eventually(T, || outbox.assess().0 == Status::Degraded).await);
    outbox.pause("test");
    assert_eq!(outbox.assess().0, Status::Failing);
    token.cancel();
    run.await.unwrap();
}
