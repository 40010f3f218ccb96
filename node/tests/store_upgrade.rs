//! The store of an earlier release (redb 2.6, file format 2) is converted for redb 5, never
//! misread or destroyed, and the earlier release can still run on its own file afterwards.
//!
//! The fixtures were written by the release at a1b9e4d (`fixtures/store-v2/README.md` says
//! how): `clean/` closed normally, `unclean/` by a process that exited without closing (as
//! after a kill or a power cut). Each comes with `expected.json`, what that release's
//! `queue list` and `queue stats` showed. They are committed and reviewed, never regenerated
//! by a test.
//!
//! The kill test runs the conversion in a child process (this test binary again, with
//! `--ignored --exact convert_child` and an environment variable) and SIGKILLs it at random
//! moments; `WMS_CONVERT_KILL_CYCLES` sets how many (default 12).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wms_node::ops::alert::Alerts;
use wms_node::outbox::admin::{Admin, ListFilter};
use wms_node::outbox::{Attempt, Outbox, OutboxOptions, Outcome, Sink};
use wms_node::store::{self, OpenError, Store, StoreOptions};
use wms_node::sync::carriers;
use wms_node::taobao::outbox::TaobaoOp;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-v2");
const CHILD: &str = "WMS_CONVERT_CHILD";

/// The store in `dir` as the node opens it: converted from an earlier release's file if need
/// be, with the outbox's schema (whose step 2 rebuilds the converted file's indexes).
fn node_options(dir: impl Into<PathBuf>) -> StoreOptions {
    let mut o = StoreOptions::in_dir(dir);
    o.schemas.push(wms_node::outbox::SCHEMA);
    o
}

fn fixture(which: &str) -> PathBuf {
    Path::new(FIXTURES).join(which)
}

/// The fixture's store file as the earlier release wrote it. It is committed gzipped: redb
/// preallocates, so the 6.8 MB file is 15 kB compressed.
fn fixture_store(which: &str) -> Vec<u8> {
    use std::io::Read;
    let gz =
        std::fs::File::open(fixture(which).join(format!("{}.gz", store::LEGACY_FILE))).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// A data directory holding a copy of the fixture as the earlier release left it.
fn data_dir(which: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(store::LEGACY_FILE), fixture_store(which)).unwrap();
    dir
}

fn expected(which: &str) -> Value {
    let text = std::fs::read_to_string(fixture(which).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// An op view without what depends on the clock: its age, and whether a backoff is over.
fn normalize(op: &Value) -> Value {
    let mut op = op.clone();
    let o = op.as_object_mut().unwrap();
    o.remove("age_secs");
    let dead = o["state"] == "dead";
    o.insert("state".into(), if dead { "dead" } else { "pending" }.into());
    op
}

/// Checks that `store` holds exactly what the earlier release wrote in `which`.
fn assert_holds_the_fixture(store: &Store, which: &str) {
    let want = expected(which);
    assert_eq!(
        store.store_id(),
        want["store_id"],
        "{which}: the store id is kept"
    );
    let admin = Admin::offline(store.clone());
    let page = admin
        .list(&ListFilter {
            limit: Some(1000),
            ..ListFilter::default()
        })
        .unwrap();
    let got: Vec<Value> = page
        .ops
        .iter()
        .map(|op| normalize(&serde_json::to_value(op).unwrap()))
        .collect();
    let want_ops: Vec<Value> = want["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(normalize)
        .collect();
    assert_eq!(got.len(), want_ops.len(), "{which}: as many ops");
    for (g, w) in got.iter().zip(&want_ops) {
        assert_eq!(g, w, "{which}: every op as it was");
    }
    let stats = admin.stats().unwrap();
    assert_eq!(stats.pending, want["pending"], "{which}: pending");
    assert_eq!(
        stats.dead_letters, want["dead_letters"],
        "{which}: dead letters"
    );
    assert_eq!(stats.bytes, want["bytes"], "{which}: accounted bytes");
    assert_eq!(stats.quarantined, 0, "{which}: nothing quarantined");
    assert_eq!(
        stats.schema_version,
        store::schema::current_version(),
        "{which}: migrated to this release's schema"
    );
    let carriers: Vec<Value> = carriers::load(store)
        .unwrap()
        .iter()
        .map(|c| serde_json::json!({"code": c.code, "name": c.name, "reg_mail_no": c.reg_mail_no}))
        .collect();
    assert_eq!(Value::from(carriers), want["carriers"], "{which}: carriers");
}

/// What the earlier release does first when it starts: redb 2.6 opens its file, and the
/// schema version and the queue are readable. Done on a copy (opening writes the header).
fn assert_earlier_release_opens(legacy: &Path) {
    const META: redb2::TableDefinition<&str, &[u8]> = redb2::TableDefinition::new("meta");
    const OUTBOX: redb2::TableDefinition<u64, &[u8]> = redb2::TableDefinition::new("outbox");
    const FIFO: redb2::TableDefinition<(&str, u64), ()> =
        redb2::TableDefinition::new("outbox_fifo");
    use redb2::ReadableTableMetadata;
    let copy = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(legacy, copy.path()).unwrap();
    let db = redb2::Database::create(copy.path()).expect("redb 2.6 opens the earlier file");
    let r = db.begin_read().unwrap();
    let meta = r.open_table(META).unwrap();
    let v = meta.get("schema_version").unwrap().unwrap();
    let version: u32 = postcard::from_bytes(v.value()).unwrap();
    assert_eq!(version, 1, "the earlier release's schema version");
    let queued = r.open_table(OUTBOX).unwrap().len().unwrap();
    assert_eq!(r.open_table(FIFO).unwrap().len().unwrap(), queued);
}

/// Records every attempt; answers Done.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(u64, String, String)>>>);

impl Sink<TaobaoOp> for Recorder {
    async fn deliver(&self, a: Attempt<'_, TaobaoOp>) -> Outcome {
        use wms_node::outbox::Operation;
        self.0
            .lock()
            .unwrap()
            .push((a.seq, a.idempotency_key.to_owned(), a.op.fifo_key()));
        Outcome::Done
    }
}

fn fast() -> OutboxOptions {
    OutboxOptions {
        rate: None,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..OutboxOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_releases_store_is_converted_with_everything_in_it() {
    for which in ["clean", "unclean"] {
        let dir = data_dir(which);
        let legacy = dir.path().join(store::LEGACY_FILE);
        let before = std::fs::read(&legacy).unwrap();
        let store = Store::open(node_options(dir.path()), Alerts::new())
            .unwrap_or_else(|e| panic!("{which}: {e}"));
        assert_holds_the_fixture(&store, which);
        assert_eq!(
            std::fs::read(&legacy).unwrap(),
            before,
            "{which}: the earlier release's file is left as it was"
        );
        assert_earlier_release_opens(&legacy);
        assert!(dir.path().join(store::FILE).exists());

        // The queue carries on: new ops after the old ones, under the same store id, and
        // every op that is due is delivered once, in order per key, with its old key.
        let outbox = Outbox::<TaobaoOp>::new(store.clone(), fast(), Alerts::new());
        let want = expected(which);
        let max_seq = want["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["seq"].as_u64().unwrap())
            .max()
            .unwrap();
        let new = outbox
            .enqueue_now(TaobaoOp::Ship {
                tid: 3_900_000_000_999,
                oids: vec![],
                company_code: "YTO".into(),
                out_sid: "YT0000007000999".into(),
            })
            .await
            .unwrap();
        assert!(new.seq > max_seq, "{which}: seqs are never reused");
        assert_eq!(
            new.idempotency_key,
            format!("{}-{}", want["store_id"].as_str().unwrap(), new.seq)
        );
        let due: Vec<(u64, String, String)> = want["ops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["state"] != "dead" && o["next_attempt_at_ms"].is_null())
            .map(|o| {
                (
                    o["seq"].as_u64().unwrap(),
                    o["idempotency_key"].as_str().unwrap().to_owned(),
                    o["fifo_key"].as_str().unwrap().to_owned(),
                )
            })
            .chain([(
                new.seq,
                new.idempotency_key.clone(),
                "trade:3900000000999".into(),
            )])
            .collect();
        let sink = Recorder::default();
        let token = tokio_util::sync::CancellationToken::new();
        let run = {
            let (o, s, t) = (outbox.clone(), sink.clone(), token.clone());
            tokio::spawn(async move { o.run(s, t).await })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while sink.0.lock().unwrap().len() < due.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
        run.await.unwrap();
        let mut got = sink.0.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got, due,
            "{which}: each due op delivered once, with its key"
        );
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_converted_store_opened_first_without_the_outbox_schema_still_gets_its_indexes_rebuilt() {
    // An opener that does not list the outbox (or a kill after the store's own steps) moves
    // the store's version past the point where the outbox's steps 1 and 2 were the store's,
    // and records nothing for the outbox: its indexes are still in redb 2.6's encoding.
    let dir = data_dir("unclean");
    let s = Store::open(StoreOptions::in_dir(dir.path()), Alerts::new()).unwrap();
    assert_eq!(
        s.read(store::schema::read_versions).unwrap().version,
        store::schema::current_version()
    );
    s.close().await.unwrap();
    // The node's open runs the outbox's whole path on it: step 1 leaves the old indexes
    // unopened, step 2 rebuilds them.
    let s = Store::open(node_options(dir.path()), Alerts::new()).unwrap();
    assert_holds_the_fixture(&s, "unclean");
    s.close().await.unwrap();
}

#[tokio::test]
async fn the_next_start_uses_the_converted_store_and_leaves_the_earlier_file_alone() {
    let dir = data_dir("clean");
    let legacy = dir.path().join(store::LEGACY_FILE);
    let before = std::fs::read(&legacy).unwrap();
    let store = Store::open(node_options(dir.path()), Alerts::new()).unwrap();
    let outbox = Outbox::<TaobaoOp>::new(store.clone(), fast(), Alerts::new());
    let seq = outbox
        .enqueue_now(TaobaoOp::CancelWaybill {
            cp_code: "ZTO".into(),
            waybill_code: "ZT000000000077".into(),
        })
        .await
        .unwrap()
        .seq;
    drop(outbox);
    store.close().await.unwrap();
    let alerts = Alerts::new();
    let store = Store::open(node_options(dir.path()), alerts.clone()).unwrap();
    let admin = Admin::offline(store.clone());
    assert!(
        admin.show(seq).is_ok(),
        "what was recorded after converting is kept"
    );
    assert!(!alerts.is_active(wms_node::ops::alert::AlertCode::StoreSuperseded));
    assert_eq!(std::fs::read(&legacy).unwrap(), before);
    store.close().await.unwrap();
}

#[tokio::test]
async fn when_the_earlier_release_ran_again_its_file_is_converted_again() {
    let dir = data_dir("clean");
    let legacy = dir.path().join(store::LEGACY_FILE);
    let store = Store::open(node_options(dir.path()), Alerts::new()).unwrap();
    let outbox = Outbox::<TaobaoOp>::new(store.clone(), fast(), Alerts::new());
    let after_conversion = outbox
        .enqueue_now(TaobaoOp::CancelWaybill {
            cp_code: "ZTO".into(),
            waybill_code: "ZT000000000078".into(),
        })
        .await
        .unwrap()
        .seq;
    drop(outbox);
    store.close().await.unwrap();

    // Going back: the earlier release (redb 2.6) runs on its file and records something.
    {
        const META: redb2::TableDefinition<&str, &[u8]> = redb2::TableDefinition::new("meta");
        let db = redb2::Database::create(&legacy).unwrap();
        let mut w = db.begin_write().unwrap();
        w.set_durability(redb2::Durability::Immediate);
        w.open_table(META)
            .unwrap()
            .insert(
                "ran_after_rollback",
                postcard::to_allocvec(&true).unwrap().as_slice(),
            )
            .unwrap();
        w.commit().unwrap();
    }

    let alerts = Alerts::new();
    let store = Store::open(node_options(dir.path()), alerts.clone()).unwrap();
    let marker: Option<bool> = store
        .read(|r| store::get(r, store::META, "ran_after_rollback"))
        .unwrap();
    assert_eq!(
        marker,
        Some(true),
        "the earlier release's later state is converted"
    );
    assert!(
        Admin::offline(store.clone())
            .show(after_conversion)
            .is_err(),
        "the stale file's own op is not in the new queue (it is in the file set aside)"
    );
    assert!(alerts.is_active(wms_node::ops::alert::AlertCode::StoreSuperseded));
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{}.superseded-", store::FILE)))
        .collect();
    assert_eq!(aside.len(), 1, "the stale file is kept aside");
    store.close().await.unwrap();
    // ... and holds what it held.
    let old = Store::open(StoreOptions::new(dir.path().join(&aside[0])), Alerts::new()).unwrap();
    assert!(Admin::offline(old.clone()).show(after_conversion).is_ok());
    old.close().await.unwrap();
}

#[tokio::test]
async fn a_conversion_left_half_way_is_done_again_from_the_untouched_original() {
    let dir = data_dir("unclean");
    let half = dir.path().join(format!("{}.converting", store::FILE));
    std::fs::write(&half, vec![0xAB; 100_000]).unwrap();
    let store = Store::open(node_options(dir.path()), Alerts::new()).unwrap();
    assert_holds_the_fixture(&store, "unclean");
    assert!(!half.exists(), "the half-made file is gone");
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_redb5_file_under_the_earlier_name_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join(store::LEGACY_FILE);
    let s = Store::open(StoreOptions::new(&legacy), Alerts::new()).unwrap();
    s.close().await.unwrap();
    let before = std::fs::read(&legacy).unwrap();
    match Store::open(node_options(dir.path()), Alerts::new()) {
        Err(e @ OpenError::Convert { .. }) => {
            assert!(e.to_string().contains("already in redb 5's format"), "{e}");
            assert!(!e.is_retryable());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(std::fs::read(&legacy).unwrap(), before, "left as it was");
    assert!(!dir.path().join(store::FILE).exists());
}

#[test]
#[ignore = "the child process of kills_during_the_conversion_leave_a_store_one_release_opens"]
fn convert_child() {
    let Ok(dir) = std::env::var(CHILD) else {
        return;
    };
    println!("start");
    let store = Store::open(node_options(&dir), Alerts::new()).unwrap();
    println!("opened {}", store.store_id());
}

/// Kills the child if the parent's checks fail first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kills_during_the_conversion_leave_a_store_one_release_opens() {
    let cycles: usize = std::env::var("WMS_CONVERT_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let exe = std::env::current_exe().unwrap();
    let original = fixture_store("unclean");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // How long a whole conversion takes here, to spread the kills over it.
    let span = {
        let dir = data_dir("unclean");
        let t = Instant::now();
        let s = Store::open(node_options(dir.path()), Alerts::new()).unwrap();
        let took = t.elapsed();
        rt.block_on(s.close()).unwrap();
        took
    };
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("conversion kill test seed {seed}; a conversion takes {span:?}");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let (mut before, mut during, mut after) = (0, 0, 0);
    for cycle in 0..cycles {
        let dir = data_dir("unclean");
        let legacy = dir.path().join(store::LEGACY_FILE);
        let converted = dir.path().join(store::FILE);
        let tmp = dir.path().join(format!("{}.converting", store::FILE));
        let mut child = KillOnDrop(
            Command::new(&exe)
                .args(["--ignored", "--exact", "convert_child", "--nocapture"])
                .env(CHILD, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        // Wait for the child to begin opening, then kill it somewhere in the conversion.
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("start") => break,
                Some(_) => {}
                None => panic!("cycle {cycle}: the child ended before starting"),
            }
        }
        let wait = span.mul_f64(rand::Rng::random_range(&mut rng, 0.0..1.3));
        std::thread::sleep(wait);
        child.0.kill().unwrap();
        child.0.wait().unwrap();

        // One of the two releases opens what is left.
        if converted.exists() {
            after += 1;
            let s = Store::open(node_options(dir.path()), Alerts::new())
                .unwrap_or_else(|e| panic!("cycle {cycle}: the converted store opens: {e}"));
            assert_holds_the_fixture(&s, "unclean");
            rt.block_on(s.close()).unwrap();
        } else {
            if tmp.exists() {
                during += 1;
            } else {
                before += 1;
            }
            assert_eq!(
                std::fs::read(&legacy).unwrap(),
                original,
                "cycle {cycle}: the earlier release's file is untouched"
            );
            assert_earlier_release_opens(&legacy);
            // And the next start converts it.
            let s = Store::open(node_options(dir.path()), Alerts::new())
                .unwrap_or_else(|e| panic!("cycle {cycle}: converting after a kill: {e}"));
            assert_holds_the_fixture(&s, "unclean");
            rt.block_on(s.close()).unwrap();
            assert!(!tmp.exists());
        }
    }
    eprintln!(
        "{cycles} kills: {before} before the copy began, {during} during the conversion, \
         {after} after it was complete"
    );
    assert!(
        cycles < 10 || during > 0,
        "no kill landed during a conversion ({before} before, {after} after)"
    );
}
