//! Property tests: the real outbox (real store, real delivery loop) against a model, with a
//! scripted sink deciding each attempt's outcome.
//!
//! Invariants checked on every case:
//! - no loss: every op ends delivered once, dead-lettered, or replaced by a newer op with its
//!   coalescing key (only those may go undelivered);
//! - no duplicate completion: no op is answered Done/AlreadyDone twice;
//! - per-key order: successful deliveries of a FIFO key come in enqueue order;
//! - coalescing: the last op of every coalescing key is never replaced, so it is delivered
//!   (or dead-lettered);
//! - attempts of one op are numbered 1, 2, … and carry one idempotency key;
//! - dead letters hold exactly the ops whose script ends in Permanent, with its reason;
//! - the queue ends empty with its byte and op counters back at zero.
//!
//! When every op is enqueued before delivery starts, the outcome is fully determined, and
//! the exact set of delivered, replaced and dead ops is compared with the model's.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod outbox_support;

use outbox_support::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use wms_node::outbox::admin::{ListFilter, StateFilter};
use wms_node::outbox::{Enqueued, Operation, Outcome};

#[derive(Debug, Clone, Copy)]
enum Final {
    Done,
    AlreadyDone,
    Permanent,
}

#[derive(Debug, Clone)]
struct Step {
    op: TestOp,
    /// Outcomes of attempts before the final one (Retry or Auth).
    failures: Vec<bool>, // true = Auth, false = Retry
    last: Final,
}

fn op_strategy() -> impl Strategy<Value = (u8, u64, i64)> {
    (0u8..3, 0u64..3, 0i64..100)
}

fn steps() -> impl Strategy<Value = (Vec<Step>, usize)> {
    prop::collection::vec(
        (
            op_strategy(),
            prop::collection::vec(prop::bool::weighted(0.15), 0..3),
            prop_oneof![
                6 => Just(Final::Done),
                1 => Just(Final::AlreadyDone),
                1 => Just(Final::Permanent),
            ],
        ),
        1..18,
    )
    .prop_flat_map(|raw| {
        let len = raw.len();
        let steps: Vec<Step> = raw
            .into_iter()
            .enumerate()
            .map(|(i, ((k, key, qty), failures, last))| {
                let n = i as u64 + 1;
                let op = match k {
                    0 => TestOp::note(key, n),
                    1 => TestOp::Stock { sku: key, qty, n },
                    _ => TestOp::Ship { tid: key, n },
                };
                Step { op, failures, last }
            })
            .collect();
        (Just(steps), 0..=len)
    })
}

fn script_for(steps: &[Step]) -> BTreeMap<u64, Step> {
    steps.iter().map(|s| (s.op.n(), s.clone())).collect()
}

fn outcome(step: &Step, attempt: u32) -> Outcome {
    let i = attempt as usize - 1;
    match step.failures.get(i) {
        Some(true) => Outcome::Auth {
            reason: "code 27".into(),
        },
        Some(false) => Outcome::Retry {
            after: None,
            reason: "isp.timeout".into(),
        },
        None => match step.last {
            Final::Done => Outcome::Done,
            Final::AlreadyDone => Outcome::AlreadyDone,
            Final::Permanent => Outcome::Permanent {
                reason: format!("isv.refused #{}", step.op.n()),
            },
        },
    }
}

fn run_case(steps: Vec<Step>, split: usize) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let mut cfg = fast_config();
        cfg.backoff_initial = Duration::from_millis(2);
        cfg.backoff_max = Duration::from_millis(10);
        let (outbox, _alerts) = outbox(&store, cfg);
        let script = script_for(&steps);
        let s2 = script.clone();
        let sink = ScriptedSink::new(move |op, attempt| outcome(&s2[&op.n()], attempt));

        let mut enqueued: Vec<(TestOp, Enqueued)> = Vec::new();
        for s in &steps[..split] {
            enqueued.push((
                s.op.clone(),
                outbox.enqueue_now(s.op.clone()).await.unwrap(),
            ));
        }
        let (token, run) = spawn_run(&outbox, sink.clone());
        // Resume whenever an Auth outcome pauses delivery (as a token refresh would).
        let o = outbox.clone();
        let resumer = tokio::spawn(async move {
            loop {
                if o.is_paused() {
                    o.resume();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        for s in &steps[split..] {
            enqueued.push((
                s.op.clone(),
                outbox.enqueue_now(s.op.clone()).await.unwrap(),
            ));
            tokio::task::yield_now().await;
        }
        let settled = eventually(Duration::from_secs(20), || {
            pending(&outbox).is_empty()
                && sink.in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0
        })
        .await;
        token.cancel();
        run.await.unwrap();
        resumer.abort();
        prop_assert!(settled, "the queue did not drain: {:?}", pending(&outbox));

        let log = sink.deliveries();
        let replaced: BTreeSet<u64> = enqueued.iter().filter_map(|(_, e)| e.replaced).collect();
        let seq_of: BTreeMap<u64, u64> = enqueued.iter().map(|(op, e)| (op.n(), e.seq)).collect();
        let n_of: BTreeMap<u64, u64> = seq_of.iter().map(|(n, s)| (*s, *n)).collect();
        let admin = outbox.admin();
        let dead_page = admin
            .list(&ListFilter {
                state: StateFilter::Dead,
                limit: Some(1000),
                ..ListFilter::default()
            })
            .unwrap();
        let dead: BTreeMap<u64, String> = dead_page
            .ops
            .iter()
            .map(|v| (n_of[&v.seq], v.dead_reason.clone().unwrap_or_default()))
            .collect();

        // Attempts of one op: numbered 1, 2, … with one idempotency key.
        let mut by_seq: BTreeMap<u64, Vec<&Delivery>> = BTreeMap::new();
        for d in &log {
            by_seq.entry(d.seq).or_default().push(d);
        }
        let store_id = store.store_id().to_owned();
        for (seq, ds) in &by_seq {
            let numbers: Vec<u32> = ds.iter().map(|d| d.attempt).collect();
            prop_assert_eq!(&numbers, &(1..=ds.len() as u32).collect::<Vec<_>>());
            let expect_key = format!("{store_id}-{seq}");
            prop_assert!(ds.iter().all(|d| d.idempotency_key == expect_key));
        }

        // No loss, no duplicate completion, dead letters as scripted.
        for (op, e) in &enqueued {
            let n = op.n();
            let successes = by_seq.get(&e.seq).map_or(0, |ds| {
                ds.iter()
                    .filter(|d| matches!(d.outcome, Outcome::Done | Outcome::AlreadyDone))
                    .count()
            });
            prop_assert!(successes <= 1, "op {} completed {} times", n, successes);
            let is_dead = dead.contains_key(&n);
            let was_replaced = replaced.contains(&e.seq);
            if !was_replaced {
                prop_assert_eq!(
                    successes + usize::from(is_dead),
                    1,
                    "op {} lost or doubled",
                    n
                );
                let step = &script[&n];
                let attempts = by_seq.get(&e.seq).map_or(0, Vec::len);
                prop_assert_eq!(attempts, step.failures.len() + 1, "op {} attempts", n);
                match step.last {
                    Final::Permanent => {
                        prop_assert!(is_dead);
                        prop_assert_eq!(&dead[&n], &format!("isv.refused #{n}"));
                    }
                    _ => prop_assert_eq!(successes, 1),
                }
            } else {
                prop_assert!(!is_dead || successes == 0);
            }
        }

        // Coalescing: the last op of each coalescing key is never replaced.
        let mut last_of_ck: BTreeMap<String, u64> = BTreeMap::new();
        for (op, e) in &enqueued {
            if let Some(ck) = op.coalesce_key() {
                last_of_ck.insert(ck, e.seq);
            }
        }
        for seq in last_of_ck.values() {
            prop_assert!(!replaced.contains(seq));
        }

        // Per-key order of successful deliveries.
        let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for d in &log {
            if matches!(d.outcome, Outcome::Done | Outcome::AlreadyDone) {
                per_key.entry(d.op.fifo_key()).or_default().push(d.seq);
            }
        }
        for (key, seqs) in &per_key {
            let mut sorted = seqs.clone();
            sorted.sort();
            prop_assert_eq!(seqs, &sorted, "key {} out of order", key);
        }

        // Everything enqueued up front: the outcome is fully determined.
        if split == steps.len() {
            let mut expect_replaced = BTreeSet::new();
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            for s in &steps {
                if let Some(ck) = s.op.coalesce_key()
                    && let Some(prev) = last.insert(ck, s.op.n())
                {
                    expect_replaced.insert(prev);
                }
            }
            let got_replaced: BTreeSet<u64> = replaced.iter().map(|s| n_of[s]).collect();
            prop_assert_eq!(&got_replaced, &expect_replaced);
            let expect_dead: BTreeSet<u64> = steps
                .iter()
                .filter(|s| !expect_replaced.contains(&s.op.n()))
                .filter(|s| matches!(s.last, Final::Permanent))
                .map(|s| s.op.n())
                .collect();
            prop_assert_eq!(&dead.keys().copied().collect::<BTreeSet<_>>(), &expect_dead);
            // A replaced op was never even tried.
            for n in &expect_replaced {
                prop_assert!(
                    !by_seq.contains_key(&seq_of[n]),
                    "replaced op {} was tried",
                    n
                );
            }
        }

        // The queue is empty and its counters balance.
        let stats = admin.stats().unwrap();
        prop_assert_eq!(stats.pending, 0);
        prop_assert_eq!(stats.bytes, 0);
        prop_assert_eq!(stats.dead_letters as usize, dead.len());
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_outbox_keeps_its_invariants_against_a_scripted_sink((steps, split) in steps()) {
        run_case(steps, split)?;
    }
}
