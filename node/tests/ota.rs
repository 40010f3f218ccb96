//! OTA end to end with real processes: the real `wms-node` as CLI and launcher, test builds
//! that pass, fail, exit 2, panic, hang or migrate the store, an update server on port 0
//! that can cut a download mid-body, and kills at each step.

// Tests report failures by unwrapping; the sleeps here poll from plain threads, never from
// the runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod ota_support;

use ota_support::{BIN, Gateway};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wms_node::ota::state::Outcome;

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_good_update_is_installed_booted_on_trial_committed_and_stays() {
    let gw = Gateway::new();
    let build = gw.build("good", "pass:0.2.0");
    let manifest = gw.publish(&build, "0.2.0", |_| {});
    let out = gw.apply(&manifest, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("installed 0.2.0 into slot a"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("not running"), "{}", text(&out));
    let s = gw.state();
    assert_eq!(
        s.trial.as_ref().map(|t| t.build.version.as_str()),
        Some("0.2.0")
    );

    let mut l = gw.launch("trial");
    let s = gw.wait_launched(&mut l, "0.2.0");
    assert_eq!(
        s.committed.as_ref().map(|c| c.version.as_str()),
        Some("0.2.0")
    );
    assert!(matches!(s.last, Some(Outcome::Committed { .. })));
    l.wait_log("fake build 0.2.0 running");
    l.kill_group();

    // The next start runs the committed build without another gate.
    let mut l = gw.launch("again");
    gw.wait_launched(&mut l, "0.2.0");
    l.wait_log("fake build 0.2.0 running");
    assert!(!l.log_text().contains("trial start"), "{}", l.log_text());
}

#[test]
fn the_real_build_passes_its_own_gate_and_serves() {
    let gw = Gateway::new();
    // `ota sign` reads the version from the real binary's marker.
    let keyfile = gw.dir.path().join("fleet.key");
    let out = gw.run(&["ota", "keygen", "--out", keyfile.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = gw.run(&["ota", "keygen", "--out", keyfile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a key is never overwritten");
    let artifact = gw.dir.path().join("wms-node");
    std::fs::copy(BIN, &artifact).unwrap();
    let url = gw.server.put("wms-node", std::fs::read(&artifact).unwrap());
    let out = gw.run(&[
        "ota",
        "sign",
        artifact.to_str().unwrap(),
        "--key",
        keyfile.to_str().unwrap(),
        "--url",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(wms_node::VERSION), "{}", text(&out));
    // Signed by the new key, which this box does not trust yet.
    let manifest = gw.dir.path().join("wms-node.manifest");
    let out = gw.apply(&manifest, &["--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("not in [ota] public_keys"),
        "{}",
        text(&out)
    );
    // Trusting it (a rotation: both keys listed).
    let pk = String::from_utf8(std::fs::read(&keyfile).unwrap()).unwrap();
    let pk = wms_node::ota::verify::SigningKey::from_text(&pk)
        .unwrap()
        .public_key();
    let cfg = std::fs::read_to_string(&gw.config)
        .unwrap()
        .replace("public_keys = [", &format!("public_keys = [\"{pk}\", "));
    std::fs::write(&gw.config, cfg).unwrap();
    // Same version as the package: refused unless forced.
    let out = gw.apply(&manifest, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("already running"), "{}", text(&out));
    let out = gw.apply(&manifest, &["--force"]);
    assert!(out.status.success(), "{}", text(&out));

    let mut l = gw.launch("real");
    let s = gw.wait_launched(&mut l, wms_node::VERSION);
    assert!(
        matches!(s.last, Some(Outcome::Committed { .. })),
        "{s:?}\n{}",
        l.log_text()
    );
    assert_eq!(
        s.committed.as_ref().map(|c| c.slot),
        Some(wms_node::ota::Slot::A)
    );
    // Same version as the package's build: a tie goes to the package (docs/OTA.md).
    assert_eq!(s.launched.as_ref().and_then(|x| x.slot), None);
    l.wait_log("ready");
    // The running node answers `ota status` through its admin API.
    let out = gw.run(&["ota", "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["from_running_node"], true);
    assert_eq!(v["state"]["committed"]["slot"], "a");
}

#[test]
fn an_interrupted_download_resumes_where_it_broke() {
    let gw = Gateway::new();
    // Big enough to be cut in the middle: the script plus padding in a comment.
    let build = gw.build("big", "pass:0.2.0");
    let mut bytes = std::fs::read(&build).unwrap();
    bytes.extend(std::iter::repeat_n(b'#', 300_000));
    bytes.push(b'\n');
    std::fs::write(&build, bytes).unwrap();
    let manifest = gw.publish(&build, "0.2.0", |_| {});
    gw.server.served.cut_next.store(120_000, Ordering::SeqCst);
    let out = gw.apply(&manifest, &["--no-restart"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    let ranges = gw.server.served.ranges.lock().unwrap().clone();
    assert_eq!(ranges.first(), Some(&None));
    assert_eq!(
        ranges.get(1),
        Some(&Some("bytes=120000-".to_owned())),
        "{ranges:?}"
    );
    assert_eq!(
        std::fs::read(&gw.slot_files()[0]).unwrap(),
        std::fs::read(&build).unwrap()
    );
}

#[test]
fn bad_signature_wrong_hash_wrong_size_and_downgrade_are_refused_with_nothing_installed() {
    let gw = Gateway::new();
    let build = gw.build("b", "pass:0.2.0");
    let size = std::fs::metadata(&build).unwrap().len();
    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "wrong hash",
            gw.publish(&build, "0.2.0", |m| m.sha256 = "ab".repeat(32)),
            "wrong SHA-256",
        ),
        (
            "too small",
            gw.publish(&build, "0.2.0", |m| m.size = size - 1),
            "wrong size",
        ),
        (
            "too large",
            gw.publish(&build, "0.2.0", |m| m.size = size + 1),
            "wrong size",
        ),
        (
            "downgrade",
            gw.publish(&build, "0.0.9", |_| {}),
            "older than the running",
        ),
    ];
    for (what, manifest, expect) in cases {
        let out = gw.apply(&manifest, &[]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(text(&out).contains(expect), "{what}: {}", text(&out));
        assert!(
            gw.slot_files().is_empty(),
            "{what}: something was installed"
        );
        let s = gw.state();
        assert!(s.trial.is_none(), "{what}");
        assert!(
            matches!(s.last, Some(Outcome::Failed { .. })),
            "{what}: {s:?}"
        );
    }

    // A signature over other bytes: one byte of the manifest changed after signing.
    let manifest = gw.publish(&build, "0.2.0", |_| {});
    let mut bytes = std::fs::read(&manifest).unwrap();
    let at = bytes.len() - 1;
    bytes.insert(at, b' ');
    std::fs::write(&manifest, &bytes).unwrap();
    let out = gw.apply(&manifest, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("bad signature"), "{}", text(&out));
    // No signature at all.
    let manifest = gw.publish(&build, "0.2.0", |_| {});
    std::fs::remove_file(manifest.with_extension("manifest.sig")).unwrap();
    let out = gw.apply(&manifest, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("no signature"), "{}", text(&out));
    assert!(gw.slot_files().is_empty());
    assert!(
        gw.server.served.ranges.lock().unwrap().len() <= 3,
        "refused manifests' artifacts were downloaded only for the size and hash cases"
    );

    // A forced downgrade is installed.
    let manifest = gw.publish(&build, "0.0.9", |_| {});
    let out = gw.apply(&manifest, &["--force", "--no-restart"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(gw.slot_files().len(), 1);
}

/// Applies `behaviour` as 0.2.0 and starts the launcher; returns the rollback's reason.
fn rolled_back(gw: &Gateway, behaviour: &str) -> String {
    rolled_back_build(gw, &gw.build(behaviour, behaviour), behaviour)
}

/// Applies `build` as 0.2.0 and starts the launcher; returns the rollback's reason.
fn rolled_back_build(gw: &Gateway, build: &std::path::Path, behaviour: &str) -> String {
    let manifest = gw.publish(build, "0.2.0", |_| {});
    let out = gw.apply(&manifest, &["--no-restart"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut l = gw.launch(behaviour);
    let s = gw.wait_launched(&mut l, wms_node::VERSION);
    assert_eq!(
        s.launched.as_ref().and_then(|x| x.slot),
        None,
        "the package's build runs"
    );
    assert!(s.committed.is_none());
    l.wait_log("ready");
    match s.last {
        Some(Outcome::RolledBack {
            version, reason, ..
        }) => {
            assert_eq!(version, "0.2.0");
            reason
        }
        other => panic!("{behaviour}: expected a rollback, got {other:?}"),
    }
}

#[test]
fn builds_that_fail_their_gate_exit_2_or_panic_are_rolled_back() {
    let gw = Gateway::new();
    let r = rolled_back(&gw, "fail");
    assert!(r.contains("store: fake store failure"), "{r}");
    let r = rolled_back(&gw, "exit2");
    assert!(r.contains("status 2"), "{r}");
    let r = rolled_back(&gw, "panic");
    assert!(r.contains("panicked"), "{r}");
    // The running node raises the alert.
    let out = gw.run(&["ota", "status"]);
    assert!(text(&out).contains("ROLLED BACK"), "{}", text(&out));
    // The same status for a Chinese-speaking operator: rows and outcome in Chinese, the
    // version and the reason as they are.
    let out = gw.run_zh(&["ota", "status"]);
    let zh = text(&out);
    assert!(out.status.success(), "{zh}");
    for word in [
        "正在运行",
        "上次更新",
        "回滚",
        "签名公钥",
        "槽位 a",
        "槽位 b",
    ] {
        assert!(zh.contains(word), "{word} missing in:\n{zh}");
    }
    assert!(
        !zh.contains("ROLLED BACK") && !zh.contains("running "),
        "{zh}"
    );
}

#[test]
fn a_build_that_hangs_is_killed_at_the_deadline_and_rolled_back() {
    let gw = Gateway::new();
    let started = Instant::now();
    let r = rolled_back(&gw, "hang");
    assert!(r.contains("hung"), "{r}");
    assert!(started.elapsed() >= Duration::from_secs(5));
}

#[test]
fn a_rollback_across_a_store_migration_restores_the_old_store() {
    use wms_node::store::{Bytes, Store, StoreOptions};
    const ACKED: redb::TableDefinition<&str, Bytes> = redb::TableDefinition::new("test_acked");
    let gw = Gateway::new();
    // The node has run, and the store holds something the floor was told OK about.
    let mut l = gw.launch("first");
    gw.wait_launched(&mut l, wms_node::VERSION);
    l.wait_log("ready");
    l.kill_group();
    let store = gw.data.join(wms_node::store::FILE);
    {
        let s = Store::open(StoreOptions::new(&store), Default::default()).unwrap();
        s.write_blocking(|txn| wms_node::store::put(txn, ACKED, "scan-1", &"ok beep".to_string()))
            .unwrap();
    }

    let r = rolled_back(&gw, "migrate-panic");
    assert!(r.contains("panicked"), "{r}");
    let paths = wms_node::ota::Paths::new(&gw.data);
    assert!(!paths.trial_store_copy().exists());
    assert_eq!(
        std::fs::read(paths.rolled_back_dir().join(wms_node::store::FILE)).unwrap(),
        b"a store format from the future"
    );
    // The package's build started on the restored store ("ready" in `rolled_back`), and
    // what was acknowledged before the update is there.
    let s = Store::open(StoreOptions::new(&store), Default::default()).unwrap();
    let acked: Option<String> = s
        .read(|r| wms_node::store::get(r, ACKED, "scan-1"))
        .unwrap();
    assert_eq!(acked.as_deref(), Some("ok beep"));
}

/// The real build as 0.2.0: its gate opens (and migrates) the store, then fails on the
/// version (it is `wms_node::VERSION`), so the launcher rolls back after a real migration.
fn rolled_back_after_a_real_migration(gw: &Gateway) {
    let build = gw.real_build("real-0.2.0");
    let r = rolled_back_build(gw, &build, "real-migrates");
    assert!(r.contains("the manifest says 0.2.0"), "{r}");
}

#[test]
fn a_rollback_after_a_real_schema_migration_gives_back_the_file_the_previous_build_left() {
    use wms_node::store::{Bytes, Store, StoreOptions, schema};
    const ACKED: redb::TableDefinition<&str, Bytes> = redb::TableDefinition::new("test_acked");
    let gw = Gateway::new();
    // The store as the previous build (store schema 2) left it, holding an acknowledged row.
    let store = gw.data.join(wms_node::store::FILE);
    let previous: Vec<_> = schema::MIGRATIONS
        .iter()
        .filter(|m| m.to < schema::PARTS_SINCE)
        .copied()
        .collect();
    {
        let s = Store::open_with(StoreOptions::new(&store), Default::default(), &previous).unwrap();
        s.write_blocking(|txn| wms_node::store::put(txn, ACKED, "scan-1", &"ok beep".to_string()))
            .unwrap();
    }
    let before = std::fs::read(&store).unwrap();

    rolled_back_after_a_real_migration(&gw);
    let paths = wms_node::ota::Paths::new(&gw.data);
    assert!(!paths.trial_store_copy().exists(), "the copy was put back");
    // What the trial build made of the store is kept aside: migrated, with its gate's row.
    let aside = paths.rolled_back_dir().join(wms_node::store::FILE);
    let copy = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(&aside, copy.path()).unwrap();
    {
        let s = Store::open_with(
            StoreOptions::new(copy.path()),
            Default::default(),
            &previous,
        )
        .unwrap();
        assert_eq!(
            s.read(schema::read_versions).unwrap().version,
            schema::current_version()
        );
        let gate: Option<String> = s
            .read(|r| wms_node::store::get(r, wms_node::ota::gate::GATE_TABLE, "round_trip"))
            .unwrap();
        assert!(
            gate.is_some(),
            "the trial's gate wrote to the migrated file"
        );
    }
    // The file in place is the one from before the trial (no gate row); the package's build
    // started on it ("ready" in `rolled_back_build`) and found what was acknowledged.
    assert_ne!(std::fs::read(&aside).unwrap(), before);
    let s = Store::open(StoreOptions::new(&store), Default::default()).unwrap();
    let gate: Option<String> = s
        .read(|r| wms_node::store::get(r, wms_node::ota::gate::GATE_TABLE, "round_trip"))
        .unwrap();
    assert_eq!(gate, None, "the trial's file is not the one in place");
    let acked: Option<String> = s
        .read(|r| wms_node::store::get(r, ACKED, "scan-1"))
        .unwrap();
    assert_eq!(acked.as_deref(), Some("ok beep"));
    drop(s);
    // The previous build's own path opens the file in place: store step 3 is additive.
    drop(Store::open_with(StoreOptions::new(&store), Default::default(), &previous).unwrap());
}

#[test]
fn a_rollback_after_a_real_conversion_from_redb_2_6_leaves_the_earlier_file_untouched() {
    // An earlier release's store (redb 2.6, `wms-node.redb`, store schema 1).
    let gw = Gateway::new();
    std::fs::create_dir_all(&gw.data).unwrap();
    let legacy = gw.data.join(wms_node::store::LEGACY_FILE);
    let gz = std::fs::File::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/store-v2/clean/wms-node.redb.gz"
    ))
    .unwrap();
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut bytes).unwrap();
    std::fs::write(&legacy, bytes).unwrap();
    let before = std::fs::read(&legacy).unwrap();

    rolled_back_after_a_real_migration(&gw);
    let paths = wms_node::ota::Paths::new(&gw.data);
    // The conversion writes a new file and never the earlier one, so it needs no copy, and
    // the rollback has nothing to put back: the earlier release finds its file as it was.
    assert!(!paths.trial_store_copy().exists());
    assert!(
        !paths
            .rolled_back_dir()
            .join(wms_node::store::LEGACY_FILE)
            .exists()
    );
    assert_eq!(std::fs::read(&legacy).unwrap(), before);
    assert!(gw.data.join(wms_node::store::FILE).is_file());
    // redb 2.6 (the earlier release's) opens it, at its schema, queue and indexes intact.
    const META: redb2::TableDefinition<&str, &[u8]> = redb2::TableDefinition::new("meta");
    const OUTBOX: redb2::TableDefinition<u64, &[u8]> = redb2::TableDefinition::new("outbox");
    const FIFO: redb2::TableDefinition<(&str, u64), ()> =
        redb2::TableDefinition::new("outbox_fifo");
    use redb2::ReadableTableMetadata;
    let db = redb2::Database::create(&legacy).expect("redb 2.6 opens the earlier file");
    let r = db.begin_read().unwrap();
    let v = r
        .open_table(META)
        .unwrap()
        .get("schema_version")
        .unwrap()
        .unwrap();
    assert_eq!(postcard::from_bytes::<u32>(v.value()).unwrap(), 1);
    let queued = r.open_table(OUTBOX).unwrap().len().unwrap();
    assert!(queued > 0);
    assert_eq!(r.open_table(FIFO).unwrap().len().unwrap(), queued);
}

#[test]
fn a_kill_during_the_trial_counts_once_and_the_next_start_commits() {
    let gw = Gateway::new();
    let build = gw.build("slow", "slow-pass:0.2.0:3");
    let manifest = gw.publish(&build, "0.2.0", |_| {});
    assert!(gw.apply(&manifest, &["--no-restart"]).status.success());
    let mut l = gw.launch("cut");
    l.wait_log("trial start");
    // Power cut while the gate runs.
    l.kill_group();
    let s = gw.state();
    let t = s.trial.expect("still on trial");
    assert_eq!((t.attempts, t.verdict), (1, None));

    let mut l = gw.launch("after-cut");
    let s = gw.wait_launched(&mut l, "0.2.0");
    assert!(matches!(s.last, Some(Outcome::Committed { .. })));
    l.wait_log("fake build 0.2.0 running");
}

#[test]
fn a_kill_during_the_download_leaves_a_node_that_starts_and_a_download_that_resumes() {
    let gw = Gateway::new();
    let build = gw.build("slowdl", "pass:0.2.0");
    let mut bytes = std::fs::read(&build).unwrap();
    bytes.extend(std::iter::repeat_n(b'#', 200_000));
    bytes.push(b'\n');
    std::fs::write(&build, bytes).unwrap();
    let manifest = gw.publish(&build, "0.2.0", |_| {});
    gw.server.served.slow.store(true, Ordering::SeqCst);
    let mut apply = gw
        .cmd(&["ota", "apply", manifest.to_str().unwrap(), "--no-restart"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sha = gw.state_download_sha(&manifest);
    let part = wms_node::ota::Paths::new(&gw.data).partial(&sha);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 20_000 {
        assert!(Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    apply.kill().unwrap();
    let _ = apply.wait();
    // The node starts (the package's build; nothing was installed).
    let mut l = gw.launch("mid-download");
    let s = gw.wait_launched(&mut l, wms_node::VERSION);
    assert!(s.download.is_some() && s.trial.is_none());
    l.wait_log("ready");
    let out = gw.run(&["ota", "status"]);
    assert!(
        text(&out).contains("apply again to resume"),
        "{}",
        text(&out)
    );
    l.kill_group();
    gw.server.served.slow.store(false, Ordering::SeqCst);
    let out = gw.apply(&manifest, &["--no-restart"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("resuming at"), "{}", text(&out));
    assert_eq!(
        std::fs::read(&gw.slot_files()[0]).unwrap(),
        std::fs::read(&build).unwrap()
    );
}

#[test]
fn apply_restarts_a_running_launched_node_into_the_update() {
    let gw = Gateway::new();
    let mut l = gw.launch("running");
    gw.wait_launched(&mut l, wms_node::VERSION);
    l.wait_log("ready");
    let build = gw.build("good", "pass:0.3.0");
    let manifest = gw.publish(&build, "0.3.0", |_| {});
    let out = gw.apply(&manifest, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("restarts into it now"),
        "{}",
        text(&out)
    );
    // The node drains and exits 75; systemd (here: the test) starts the unit again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = l.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(wms_node::ota::EXIT_RESTART_FOR_UPDATE as i32)
    );
    let mut l = gw.launch("restarted");
    gw.wait_launched(&mut l, "0.3.0");
    l.wait_log("fake build 0.3.0 running");
}
