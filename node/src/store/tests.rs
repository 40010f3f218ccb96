use super::*;
use crate::alert::AlertCode;
use redb::TableDefinition;
use std::sync::atomic::{AtomicUsize, Ordering};

const THINGS: TableDefinition<&str, Bytes> = TableDefinition::new("test_things");

fn opts(dir: &tempfile::TempDir) -> StoreOptions {
    StoreOptions::new(dir.path().join(crate::store::FILE))
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(opts(dir), Alerts::new()).expect("open")
}

#[tokio::test]
async fn a_write_is_readable_once_it_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .write(|txn| put(txn, THINGS, "a", &"alpha".to_string()))
        .await
        .unwrap();
    let got: Option<String> = store.read(|r| get(r, THINGS, "a")).unwrap();
    assert_eq!(got.as_deref(), Some("alpha"));
}

#[tokio::test]
async fn a_failing_closure_commits_nothing_and_its_batch_mates_still_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&dir);
    // A long linger so the writes below land in one batch.
    o.group_commit_max_wait = Duration::from_millis(50);
    let store = Store::open(o, Alerts::new()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.write(move |txn| {
                put(txn, THINGS, format!("k{i}").as_str(), &i)?;
                if i % 3 == 0 {
                    return Err(StoreError::Aborted(format!("no {i}")));
                }
                if i == 7 {
                    panic!("closure {i} panics");
                }
                Ok(i)
            })
            .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        let i = i as u32;
        match (i.is_multiple_of(3), i == 7) {
            (true, _) => assert!(matches!(r, Err(StoreError::Aborted(_))), "{i}: {r:?}"),
            (_, true) => assert!(matches!(r, Err(StoreError::Panicked(_))), "{i}: {r:?}"),
            _ => assert_eq!(r.unwrap(), i),
        }
    }
    for i in 0..20u32 {
        let got: Option<u32> = store
            .read(|r| get(r, THINGS, format!("k{i}").as_str()))
            .unwrap();
        let committed = i % 3 != 0 && i != 7;
        assert_eq!(got, committed.then_some(i), "key k{i}");
    }
}

#[tokio::test]
async fn concurrent_writes_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let s = store.clone();
        let runs = runs.clone();
        tasks.push(tokio::spawn(async move {
            s.write(move |txn| {
                runs.fetch_add(1, Ordering::SeqCst);
                put(txn, THINGS, format!("k{i}").as_str(), &i)
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let n = store
        .read(|r| {
            use redb::ReadableTableMetadata;
            Ok(r.open_table(THINGS)?.len()?)
        })
        .unwrap();
    assert_eq!(n, 200);
    // No failures, so every closure ran exactly once.
    assert_eq!(runs.load(Ordering::SeqCst), 200);
}

#[tokio::test]
async fn hooks_run_after_a_commit_and_not_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let fired = Arc::new(AtomicUsize::new(0));
    let f = fired.clone();
    store
        .write(move |txn| {
            let f = f.clone();
            after_commit(move || {
                f.fetch_add(1, Ordering::SeqCst);
            });
            put(txn, THINGS, "x", &1u8)
        })
        .await
        .unwrap();
    let f = fired.clone();
    let r: Result<(), _> = store
        .write(move |_txn| {
            let f = f.clone();
            after_commit(move || {
                f.fetch_add(100, Ordering::SeqCst);
            });
            Err(StoreError::Aborted("no".into()))
        })
        .await;
    assert!(r.is_err());
    assert_eq!(fired.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_undecodable_record_is_reported_then_moved_to_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = Alerts::new();
    let store = Store::open(opts(&dir), alerts.clone()).unwrap();
    store
        .write(|txn| {
            let mut t = txn.open_table(THINGS)?;
            // A string claiming 5 bytes and carrying none.
            t.insert("bad", [5u8].as_slice())?;
            t.insert("good", postcard::to_allocvec("fine").unwrap().as_slice())?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let r = store.read(|r| get::<&str, String>(r, THINGS, "bad"));
    match r {
        Err(StoreError::Corrupt { table, key }) => {
            assert_eq!(table, "test_things");
            assert_eq!(key, "bad");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // The read nudged the writer; poll until the move is committed.
    let mut moved = 0;
    for _ in 0..200 {
        moved = store.read(quarantine::count).unwrap();
        if moved == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(moved, 1);
    assert!(alerts.is_active(AlertCode::StoreQuarantine));
    let bad: Option<String> = store.read(|r| get(r, THINGS, "bad")).unwrap();
    assert_eq!(bad, None);
    let good: Option<String> = store.read(|r| get(r, THINGS, "good")).unwrap();
    assert_eq!(good.as_deref(), Some("fine"));
    let listed = store.read(|r| quarantine::list(r, 0, 10)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].1.table, "test_things");
    assert_eq!(listed[0].1.key, "bad");
    assert!(
        listed[0].1.raw.is_empty(),
        "listing never carries the value"
    );
}

#[tokio::test]
async fn a_record_fixed_before_the_move_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .write(|txn| {
            txn.open_table(THINGS)?.insert("k", [5u8].as_slice())?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    // Read it inside a write that also repairs it: the move must see the repaired value.
    store
        .write(|txn| {
            let _ = get::<&str, String>(txn, THINGS, "k");
            put(txn, THINGS, "k", &"repaired".to_string())
        })
        .await
        .unwrap();
    store.write(|_| Ok::<_, StoreError>(())).await.unwrap();
    assert_eq!(store.read(quarantine::count).unwrap(), 0);
    let v: Option<String> = store.read(|r| get(r, THINGS, "k")).unwrap();
    assert_eq!(v.as_deref(), Some("repaired"));
}

#[tokio::test]
async fn a_second_open_of_the_same_file_says_in_use_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let second = Store::open(opts(&dir), Alerts::new());
    assert!(matches!(second, Err(OpenError::InUse { .. })), "{second:?}");
    drop(store);
    // Dropping the last handle releases the file.
    let again = Store::open(opts(&dir), Alerts::new());
    assert!(again.is_ok(), "{again:?}");
}

#[tokio::test]
async fn close_commits_queued_writes_and_later_writes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let s = store.clone();
    let pending = tokio::spawn(async move { s.write(|txn| put(txn, THINGS, "late", &1u8)).await });
    // Let the write reach the writer's channel before closing.
    tokio::task::yield_now().await;
    let other = store.clone();
    store.close().await.unwrap();
    let r = pending.await.unwrap();
    assert!(r.is_ok() || matches!(r, Err(StoreError::Closed)), "{r:?}");
    let after = other.write(|txn| put(txn, THINGS, "after", &1u8)).await;
    assert!(matches!(after, Err(StoreError::Closed)));
}

#[tokio::test]
async fn the_store_id_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let id = open(&dir).store_id().to_owned();
    assert_eq!(id.len(), 16);
    assert_eq!(open(&dir).store_id(), id);
}

fn mark_v2(txn: &WriteTransaction) -> Result<(), StoreError> {
    put(txn, THINGS, "migrated_to_2", &true)
}

fn mark_v3(txn: &WriteTransaction) -> Result<(), StoreError> {
    // Rewrite every v2 record into the v3 shape: here, a counter of runs.
    let runs: u32 = get(txn, THINGS, "v3_runs")?.unwrap_or(0);
    put(txn, THINGS, "v3_runs", &(runs + 1))
}

fn failing_step(_txn: &WriteTransaction) -> Result<(), StoreError> {
    Err(StoreError::Aborted("disk says no".into()))
}

fn path_to(n: u32) -> Vec<schema::Migration> {
    let mut v = schema::MIGRATIONS.to_vec();
    let base = schema::current_version();
    if n > base {
        v.push(schema::Migration {
            to: base + 1,
            what: "test step to N",
            breaks_older_readers: false,
            run: mark_v2,
        });
    }
    if n > base + 1 {
        v.push(schema::Migration {
            to: base + 2,
            what: "test step to N+1",
            breaks_older_readers: true,
            run: mark_v3,
        });
    }
    v
}

#[tokio::test]
async fn a_file_at_the_previous_version_is_upgraded_once() {
    let dir = tempfile::tempdir().unwrap();
    let base = schema::current_version();
    {
        let s = Store::open_with(opts(&dir), Alerts::new(), &path_to(base + 1)).unwrap();
        s.write(|txn| put(txn, THINGS, "old", &"kept".to_string()))
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let s = Store::open_with(opts(&dir), Alerts::new(), &path_to(base + 2)).unwrap();
        let v = s.read(schema::read_versions).unwrap();
        assert_eq!(v.version, base + 2);
        assert_eq!(v.compat, base + 2);
        let runs: Option<u32> = s.read(|r| get(r, THINGS, "v3_runs")).unwrap();
        assert_eq!(runs, Some(1), "the step runs once, not on every open");
        let old: Option<String> = s.read(|r| get(r, THINGS, "old")).unwrap();
        assert_eq!(old.as_deref(), Some("kept"));
    }
}

#[tokio::test]
async fn an_older_build_opens_a_compatible_newer_file_and_refuses_an_incompatible_one() {
    let dir = tempfile::tempdir().unwrap();
    let base = schema::current_version();
    drop(Store::open_with(opts(&dir), Alerts::new(), &path_to(base + 1)).unwrap());
    // The step to base+1 kept older readers working: the current build still opens it.
    drop(Store::open(opts(&dir), Alerts::new()).unwrap());
    drop(Store::open_with(opts(&dir), Alerts::new(), &path_to(base + 2)).unwrap());
    match Store::open(opts(&dir), Alerts::new()) {
        Err(OpenError::SchemaTooNew {
            found, supported, ..
        }) => {
            assert_eq!(found, base + 2);
            assert_eq!(supported, base);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_migration_step_leaves_the_previous_version_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let base = schema::current_version();
    drop(Store::open(opts(&dir), Alerts::new()).unwrap());
    let mut broken = schema::MIGRATIONS.to_vec();
    broken.push(schema::Migration {
        to: base + 1,
        what: "fails",
        breaks_older_readers: false,
        run: failing_step,
    });
    let r = Store::open_with(opts(&dir), Alerts::new(), &broken);
    assert!(matches!(r, Err(OpenError::Migration { to, .. }) if to == base + 1));
    let s = Store::open_with(opts(&dir), Alerts::new(), &path_to(base + 1)).unwrap();
    assert_eq!(s.read(schema::read_versions).unwrap().version, base + 1);
}

/// A part of the node with tables of its own (as the outbox is), for the tests below.
const PART_STEPS: &[schema::Migration] = &[
    schema::Migration {
        to: 1,
        what: "the part's table",
        breaks_older_readers: false,
        run: mark_v2,
    },
    schema::Migration {
        to: 2,
        what: "the part's table rewritten",
        breaks_older_readers: true,
        run: mark_v3,
    },
];

fn part(steps: usize, adopted: u32) -> schema::Schema {
    schema::Schema {
        name: "part",
        steps: &PART_STEPS[..steps],
        adopted,
    }
}

fn part_versions(s: &Store, p: &schema::Schema) -> schema::Versions {
    s.read(|r| schema::read_part_versions(r, p, schema::PARTS_SINCE))
        .unwrap()
}

#[tokio::test]
async fn a_registered_part_is_migrated_on_its_own_version_once_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let with = |p: Option<schema::Schema>| {
        let mut o = opts(&dir);
        o.schemas.extend(p);
        o
    };
    // A store opened without the part: nothing of it is made or recorded.
    drop(Store::open(with(None), Alerts::new()).unwrap());
    // The part's first step, then (a newer build) its second: each runs once.
    for steps in [1, 2, 2] {
        let s = Store::open(with(Some(part(steps, 0))), Alerts::new()).unwrap();
        let v = part_versions(&s, &part(steps, 0));
        assert_eq!(v.version, steps as u32);
        assert_eq!(
            s.read(schema::read_versions).unwrap().version,
            schema::current_version()
        );
        let runs: Option<u32> = s.read(|r| get(r, THINGS, "v3_runs")).unwrap();
        assert_eq!(runs, (steps == 2).then_some(1), "each step runs once");
    }
    // Its step 2 broke older readers: a build that knows only step 1 of the part refuses
    // the file, naming the part; a build that does not register the part opens it.
    match Store::open(with(Some(part(1, 0))), Alerts::new()) {
        Err(OpenError::SchemaTooNew {
            part,
            found,
            supported,
            ..
        }) => assert_eq!((part, found, supported), ("part", 2, 1)),
        other => panic!("expected SchemaTooNew for the part, got {other:?}"),
    }
    drop(Store::open(with(None), Alerts::new()).unwrap());
}

#[tokio::test]
async fn a_file_from_before_parts_had_versions_starts_a_part_where_the_store_stood() {
    let dir = tempfile::tempdir().unwrap();
    // A file as the build before store schema 3 left it: its path was at 2, and its two
    // steps did what the part's steps 1 and 2 do now.
    let before: Vec<_> = schema::MIGRATIONS
        .iter()
        .filter(|m| m.to < schema::PARTS_SINCE)
        .copied()
        .collect();
    drop(Store::open_with(opts(&dir), Alerts::new(), &before).unwrap());
    let mut o = opts(&dir);
    o.schemas.push(part(2, 2));
    let s = Store::open(o, Alerts::new()).unwrap();
    let runs: Option<u32> = s.read(|r| get(r, THINGS, "v3_runs")).unwrap();
    assert_eq!(runs, None, "the adopted steps do not run again");
    assert_eq!(part_versions(&s, &part(2, 2)).version, 2);
    let stored: Option<u32> = s.read(|r| get(r, META, "schema_version.part")).unwrap();
    assert_eq!(
        stored,
        Some(2),
        "the part's version is recorded from now on"
    );
}

#[tokio::test]
async fn a_file_at_store_schema_1_runs_the_rest_of_an_adopted_path() {
    // A store converted from redb 2.6 is at store schema 1: the part had its step 1 then.
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open_with(opts(&dir), Alerts::new(), &schema::MIGRATIONS[..1]).unwrap());
    let mut o = opts(&dir);
    o.schemas.push(part(2, 2));
    let s = Store::open(o, Alerts::new()).unwrap();
    let migrated: Option<bool> = s.read(|r| get(r, THINGS, "migrated_to_2")).unwrap();
    assert_eq!(migrated, None, "step 1 is not run again");
    let runs: Option<u32> = s.read(|r| get(r, THINGS, "v3_runs")).unwrap();
    assert_eq!(runs, Some(1), "step 2 runs");
}

#[tokio::test]
async fn opening_compacts_a_file_that_is_mostly_free() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&dir);
    // Nothing is compacted below the threshold (the default, 64 MiB, is far above this file).
    o.compact_free_bytes = 1 << 20;
    let store = Store::open(o.clone(), Alerts::new()).unwrap();
    let value = vec![7u8; 4000];
    for chunk in 0..10u32 {
        let v = value.clone();
        store
            .write(move |txn| {
                let mut t = txn.open_table(THINGS)?;
                for i in 0..500u32 {
                    t.insert(format!("{chunk}-{i}").as_str(), v.as_slice())?;
                }
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
    }
    store
        .write(|txn| {
            txn.open_table(THINGS)?.retain(|k, _| k == "0-0")?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let grown = store.file_bytes();
    store.close().await.unwrap();
    assert!(grown > 16 << 20, "the file grew to {grown} bytes");

    let store = Store::open(o, Alerts::new()).unwrap();
    let compacted = store.file_bytes();
    assert!(
        compacted < grown / 4,
        "compacted from {grown} to {compacted} bytes"
    );
    let n = store
        .read(|r| {
            use redb::ReadableTableMetadata;
            Ok(r.open_table(THINGS)?.len()?)
        })
        .unwrap();
    assert_eq!(n, 1, "what was left is still there");
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_migration_keeps_a_copy_the_previous_build_opens_and_no_migration_keeps_none() {
    let dir = tempfile::tempdir().unwrap();
    let base = schema::current_version();
    let copy = dir.path().join("ota/trial/wms-node.redb");
    {
        // Today's build writes something a scanner was told OK about.
        let s = open(&dir);
        s.write(|txn| put(txn, THINGS, "acked", &"scan 1".to_string()))
            .await
            .unwrap();
    }
    let with_copy = || {
        let mut o = opts(&dir);
        o.migration_copy = Some(copy.clone());
        o
    };
    // Same schema: nothing to migrate, nothing copied.
    drop(Store::open(with_copy(), Alerts::new()).unwrap());
    assert!(!copy.exists());
    // A newer build whose migration older readers cannot follow.
    drop(Store::open_with(with_copy(), Alerts::new(), &path_to(base + 2)).unwrap());
    assert!(copy.is_file());
    assert!(matches!(
        Store::open(opts(&dir), Alerts::new()),
        Err(OpenError::SchemaTooNew { .. })
    ));
    // The copy is the file as today's build left it: today's build opens it, data intact.
    let old = Store::open(StoreOptions::new(&copy), Alerts::new()).unwrap();
    assert_eq!(old.read(schema::read_versions).unwrap().version, base);
    let acked: Option<String> = old.read(|r| get(r, THINGS, "acked")).unwrap();
    assert_eq!(acked.as_deref(), Some("scan 1"));
}

#[tokio::test]
async fn a_fresh_file_is_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&dir);
    o.migration_copy = Some(dir.path().join("copy.redb"));
    drop(Store::open(o, Alerts::new()).unwrap());
    assert!(!dir.path().join("copy.redb").exists());
}
