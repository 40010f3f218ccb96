//! The floor end to end: the real `wms-node` binary, a real broker (the embedded one and
//! Mosquitto with the files the node generates), and simulated devices with their own
//! credentials. Credentials and the topic ACL, birth and will, devices online, every kind of
//! bad payload answered and counted while the node keeps answering, dedupe across a SIGKILL,
//! and reconnecting after a broker restart.

// Tests report failures by unwrapping; the sleeps here poll from plain threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod floor_support;

use floor_support::*;
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};
use serde_json::Value;
use std::time::Duration;

fn device<'a>(list: &'a [Value], class: &str, id: &str) -> Option<&'a Value> {
    list.iter().find(|d| d["class"] == class && d["id"] == id)
}

/// Each kind of payload the node cannot use: what to send, where, and what the answer says.
struct Bad {
    channel: &'static str,
    payload: Vec<u8>,
    reason: &'static str,
    re: Value,
    text: &'static str,
}

fn bad_payloads() -> Vec<Bad> {
    let mut oversize = br#"{"type":"scan","msg_id":"m-big","code":""#.to_vec();
    oversize.extend(std::iter::repeat_n(b'7', 70 * 1024));
    oversize.extend_from_slice(br#""}"#);
    vec![
        Bad {
            channel: "evt",
            payload: b"{not json".to_vec(),
            reason: "malformed",
            re: Value::Null,
            text: "not valid JSON",
        },
        Bad {
            channel: "evt",
            payload: br#"{"type":"scan","msg_id":42,"ts":"t","code":"1","symbology":"ean13","mode":"pick"}"#.to_vec(),
            reason: "malformed",
            re: Value::Null,
            text: "expected a string",
        },
        Bad {
            channel: "evt",
            payload: br#"{"type":"teleport","msg_id":"m-t"}"#.to_vec(),
            reason: "unknown_type",
            re: "m-t".into(),
            text: "unknown message type",
        },
        Bad {
            channel: "evt",
            payload: oversize,
            reason: "oversize",
            re: Value::Null,
            text: "limit",
        },
        Bad {
            channel: "reply",
            payload: scan("m-w").into_bytes(),
            reason: "wrong_topic",
            re: "m-w".into(),
            text: "does not belong on the reply channel",
        },
        Bad {
            channel: "evt",
            payload: br#"{"type":"scan","msg_id":"m-q","ts":"t","code":"1","symbology":"ean13","mode":"pick","qty":0}"#.to_vec(),
            reason: "invalid",
            re: "m-q".into(),
            text: "field `qty` is zero",
        },
        Bad {
            channel: "evt",
            payload: br#"{"type":"scan","v":7,"msg_id":"m-v","ts":"t","code":"1","symbology":"ean13","mode":"pick"}"#.to_vec(),
            reason: "version",
            re: "m-v".into(),
            text: "version 7",
        },
    ]
}

/// Sends every bad payload and checks its answer and counter; then the node still answers.
async fn bad_payloads_are_answered_and_counted(node: &Node, d: &mut Device) {
    for bad in bad_payloads() {
        let before = node.counter(&format!(
            "wms_node_floor_refused_total{{reason=\"{}\"}}",
            bad.reason
        ));
        d.publish(bad.channel, bad.payload.clone()).await;
        let answer = tokio::time::timeout(WAIT, d.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no answer to a {} payload", bad.reason))
            .unwrap();
        let v = answer.json();
        assert_eq!(v["type"], "feedback", "{v}");
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["beep"], "error", "{v}");
        assert_eq!(v["re"], bad.re, "{} ({v})", bad.reason);
        assert!(
            v.as_object().unwrap().contains_key("re"),
            "re is null, never absent: {v}"
        );
        assert!(
            v["text"].as_str().unwrap().contains(bad.text),
            "{}: {v}",
            bad.reason
        );
        let after = node.counter(&format!(
            "wms_node_floor_refused_total{{reason=\"{}\"}}",
            bad.reason
        ));
        assert_eq!(after, before + 1.0, "counter of {}", bad.reason);
    }
    let ok = d.ask(&request_task("after-bad")).await.json();
    assert_eq!(
        (ok["re"].as_str(), ok["ok"].as_bool()),
        (Some("after-bad"), Some(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_holds_each_device_to_its_own_topics_and_bad_payloads_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &BrokerKind::Embedded);
    // Added while the node is stopped (through the store), and a printer with the same id:
    // ids are unique per class only.
    let pw1 = add_device(&cfg.path, "scanner", "sc-1");
    let pwp = add_device(&cfg.path, "printer", "sc-1");
    let node = Node::start(&cfg);
    let port = node.broker_port();
    node.wait_connected(1);
    // Added while it runs (through its admin API): usable at once.
    let pw2 = add_device(&cfg.path, "scanner", "sc-2");

    let mut d1 = Device::connect(port, "scanner", "sc-1", &pw1).await;
    let mut d2 = Device::connect(port, "scanner", "sc-2", &pw2).await;
    let mut p1 = Device::connect(port, "printer", "sc-1", &pwp).await;
    assert_eq!(d1.connack().await, ConnectReturnCode::Success);
    assert_eq!(d2.connack().await, ConnectReturnCode::Success);

    // Devices online, from their retained state.
    wait_until("sc-1 and sc-2 online", || {
        let list = list_devices(&cfg.path);
        ["sc-1", "sc-2"].iter().all(|id| {
            device(&list, "scanner", id)
                .is_some_and(|d| d["online"] == true && d["firmware"] == "sim 1.0")
        })
    })
    .await;

    // An event is answered after its commit; its re-sent copy gets the very same bytes.
    let first = d1.ask(&request_task("m-1")).await;
    let v = first.json();
    assert_eq!(
        (v["re"].as_str(), v["ok"].as_bool(), v["text"].as_str()),
        (
            Some("m-1"),
            Some(true),
            Some("no work: no order is waiting to be picked")
        )
    );
    let again = d1.ask(&request_task("m-1")).await;
    assert_eq!(again.payload, first.payload);
    assert_eq!(node.counter("wms_node_floor_duplicates_total"), 1.0);

    // A device cannot publish under another device's topics, whatever its class: the node
    // never sees it (it would answer on the victim's cmd topic).
    let denied = node.counter("wms_node_floor_broker_denied_total{what=\"publish\"}");
    for victim in [
        "wms/main/scanner/sc-2/evt",
        "wms/main/printer/sc-1/evt",
        "wms/main/scanner/sc-2/state",
    ] {
        d1.client
            .publish(victim, QoS::AtLeastOnce, false, request_task("spoof"))
            .await
            .unwrap();
    }
    d2.nothing_for(Duration::from_millis(600)).await;
    p1.nothing_for(Duration::from_millis(100)).await;
    wait_until("three publishes denied", || {
        node.counter("wms_node_floor_broker_denied_total{what=\"publish\"}") >= denied + 3.0
    })
    .await;
    assert!(
        device(&list_devices(&cfg.path), "scanner", "sc-2").unwrap()["online"] == true,
        "a forged offline state was refused"
    );
    // Nor read another's commands.
    d1.client
        .subscribe("wms/main/scanner/sc-2/cmd", QoS::AtLeastOnce)
        .await
        .unwrap();
    wait_until("subscription refused", || {
        d1.suback
            .lock()
            .unwrap()
            .contains(&SubscribeReasonCode::Failure)
    })
    .await;

    // A wrong password, an unknown device, and a will on another's topic are refused.
    let wrong = Device::connect_with(
        Device::options(port, "scanner", "sc-1", "wrong"),
        "scanner",
        "sc-1",
        false,
    )
    .await;
    assert_ne!(wrong.connack().await, ConnectReturnCode::Success);
    let ghost = Device::connect_with(
        Device::options(port, "scanner", "ghost", &pw1),
        "scanner",
        "ghost",
        false,
    )
    .await;
    assert_ne!(ghost.connack().await, ConnectReturnCode::Success);
    let mut o = Device::options(port, "scanner", "sc-1", &pw1);
    o.set_client_id("sc-1-forged-will".into());
    o.set_last_will(rumqttc::LastWill::new(
        "wms/main/scanner/sc-2/state",
        r#"{"online":false}"#,
        QoS::AtLeastOnce,
        true,
    ));
    let forged = Device::connect_with(o, "scanner", "sc-1", false).await;
    assert_ne!(forged.connack().await, ConnectReturnCode::Success);

    bad_payloads_are_answered_and_counted(&node, &mut d1).await;

    // The will: a device that vanishes is offline.
    d2.vanish();
    wait_until("sc-2 offline by its will", || {
        device(&list_devices(&cfg.path), "scanner", "sc-2").is_some_and(|d| d["online"] == false)
    })
    .await;

    // Revoked while running: the same password no longer connects.
    let (code, out, err) = cli(&cfg.path, &["devices", "remove", "sc-2"]);
    assert_eq!(code, 0, "{out}{err}");
    let back = Device::connect_with(
        Device::options(port, "scanner", "sc-2", &pw2),
        "scanner",
        "sc-2",
        false,
    )
    .await;
    assert_ne!(back.connack().await, ConnectReturnCode::Success);
    assert!(device(&list_devices(&cfg.path), "scanner", "sc-2").is_none());
    // An id in both classes needs --class.
    let (code, _, err) = cli(&cfg.path, &["devices", "remove", "sc-1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--class"), "{err}");

    assert!(node.sigterm().success());
    // Stopped: the list still works from the store, online unknown, last seen kept.
    let list = list_devices(&cfg.path);
    let sc1 = device(&list, "scanner", "sc-1").unwrap();
    assert_eq!(sc1["online"], Value::Null);
    assert_eq!(sc1["firmware"], "sim 1.0");
    assert!(sc1["last_seen"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_resent_after_a_sigkill_gets_its_original_answer_and_is_not_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &BrokerKind::Embedded);
    let pw = add_device(&cfg.path, "scanner", "sc-k");
    let node = Node::start(&cfg);
    let port = node.broker_port();
    node.wait_connected(1);
    let mut d = Device::connect(port, "scanner", "sc-k", &pw).await;
    let task = d.ask(&request_task("r-1")).await;
    let scanned = d.ask(&scan("s-1")).await;
    assert_eq!(scanned.json()["re"], "s-1");
    node.sigkill();
    drop(d);

    // The store kept the answers: after the restart the re-sent events get them back.
    let node = Node::start(&cfg);
    let port = node.broker_port();
    node.wait_connected(1);
    let mut d = Device::connect(port, "scanner", "sc-k", &pw).await;
    assert_eq!(d.ask(&request_task("r-1")).await.payload, task.payload);
    assert_eq!(d.ask(&scan("s-1")).await.payload, scanned.payload);
    assert_eq!(node.counter("wms_node_floor_duplicates_total"), 2.0);
    // A new event is applied as usual.
    let fresh = d.ask(&request_task("r-2")).await.json();
    assert_eq!(fresh["re"], "r-2");
    assert_eq!(node.counter("wms_node_floor_duplicates_total"), 2.0);
    assert!(node.sigterm().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_with_the_generated_files_enforces_credentials_and_acl_and_carries_birth_and_will()
 {
    if !Mosquitto::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let cfg = write_config(dir.path(), &BrokerKind::External { port: mport });
    let pw1 = add_device(&cfg.path, "scanner", "sc-1");
    let pw2 = add_device(&cfg.path, "scanner", "sc-2");
    let files = cfg.data.join("mosquitto");
    let passwd = std::fs::read_to_string(files.join("passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("scanner/sc-1:$7$101$")),
        "{passwd}"
    );
    let acl = std::fs::read_to_string(files.join("acl")).unwrap();
    assert!(
        acl.contains("user scanner/sc-2\ntopic write wms/main/scanner/sc-2/evt"),
        "{acl}"
    );

    let mut mq = Mosquitto::start(mport, &files);
    let (_obs, mut seen) = observer(mq.observer_port, "wms/main/#").await;
    let node = Node::start(&cfg);
    node.wait_connected(1);
    // The node's birth, retained on its gateway state topic.
    let birth = expect(&mut seen, "node birth", |r| {
        r.topic == format!("wms/main/gateway/{NODE_ID}/state") && r.json()["online"] == true
    })
    .await;
    assert_eq!(birth.json()["class"], "gateway");

    let mut d1 = Device::connect(mport, "scanner", "sc-1", &pw1).await;
    let mut d2 = Device::connect(mport, "scanner", "sc-2", &pw2).await;
    assert_eq!(d1.connack().await, ConnectReturnCode::Success);
    let v = d1.ask(&request_task("q-1")).await.json();
    assert_eq!(
        (v["re"].as_str(), v["ok"].as_bool()),
        (Some("q-1"), Some(true))
    );
    wait_until("sc-1 online", || {
        device(&list_devices(&cfg.path), "scanner", "sc-1").is_some_and(|d| d["online"] == true)
    })
    .await;

    // The ACL: sc-1 cannot publish as sc-2 (Mosquitto drops it; the observer never sees it).
    d1.client
        .publish(
            "wms/main/scanner/sc-2/evt",
            QoS::AtLeastOnce,
            false,
            request_task("spoof"),
        )
        .await
        .unwrap();
    d1.publish("evt", request_task("q-2")).await;
    let _ = expect(&mut seen, "sc-1's own event", |r| {
        r.topic == "wms/main/scanner/sc-1/evt" && r.json()["msg_id"] == "q-2"
    })
    .await;
    d2.nothing_for(Duration::from_millis(300)).await;
    let _ = d1.next().await;
    assert!(!mq.log().is_empty());
    // A wrong password is refused by Mosquitto.
    let wrong = Device::connect_with(
        Device::options(mport, "scanner", "sc-1", "nope"),
        "scanner",
        "sc-1",
        false,
    )
    .await;
    assert_ne!(wrong.connack().await, ConnectReturnCode::Success);

    bad_payloads_are_answered_and_counted(&node, &mut d1).await;

    // Removed on the node but not yet reloaded by Mosquitto: the node itself refuses it.
    let (code, _, err) = cli(
        &cfg.path,
        &["devices", "remove", "sc-2", "--class", "scanner"],
    );
    assert_eq!(code, 0, "{err}");
    let v = d2.ask(&request_task("late")).await.json();
    assert_eq!(
        (v["ok"].as_bool(), v["re"].as_str()),
        (Some(false), Some("late"))
    );
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("unknown device scanner/sc-2"),
        "{v}"
    );
    assert_eq!(
        node.counter("wms_node_floor_refused_total{reason=\"unknown_device\"}"),
        1.0
    );
    // After the reload, its credentials are gone.
    assert!(
        !std::fs::read_to_string(files.join("passwd"))
            .unwrap()
            .contains("scanner/sc-2:")
    );
    mq.reload();
    let back = Device::connect_with(
        Device::options(mport, "scanner", "sc-2", &pw2),
        "scanner",
        "sc-2",
        false,
    )
    .await;
    assert_ne!(back.connack().await, ConnectReturnCode::Success);

    // SIGKILL: Mosquitto publishes the node's will.
    node.sigkill();
    let will = expect(&mut seen, "node will", |r| {
        r.topic == format!("wms/main/gateway/{NODE_ID}/state") && r.json()["online"] == false
    })
    .await;
    assert_eq!(will.json(), serde_json::json!({"v":1,"online":false}));
    mq.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_reconnects_after_a_mosquitto_restart_and_answers_again() {
    if !Mosquitto::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mport = free_port();
    let cfg = write_config(dir.path(), &BrokerKind::External { port: mport });
    let pw = add_device(&cfg.path, "scanner", "sc-r");
    let mut mq = Mosquitto::start(mport, &cfg.data.join("mosquitto"));
    let node = Node::start(&cfg);
    node.wait_connected(1);
    let mut d = Device::connect(mport, "scanner", "sc-r", &pw).await;
    assert_eq!(d.ask(&request_task("b-1")).await.json()["re"], "b-1");

    mq.stop();
    node.wait_log("MQTT broker connection lost; reconnecting");
    mq.spawn();
    node.wait_connected(2);
    // The device's persistent session comes back too; its next event is answered.
    let v = tokio::time::timeout(WAIT, async {
        loop {
            d.publish("evt", request_task("b-2")).await;
            if let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(1), d.rx.recv()).await {
                break r;
            }
        }
    })
    .await
    .expect("answered after the restart")
    .json();
    assert_eq!(
        (v["re"].as_str(), v["ok"].as_bool()),
        (Some("b-2"), Some(true))
    );
    assert!(node.sigterm().success());
    mq.stop();
}

#[test]
fn mosquitto_passwd_hashes_verify_and_ours_have_its_layout() {
    if !std::path::Path::new("/usr/bin/mosquitto_passwd").exists() {
        assert!(
            std::env::var_os("WMS_REQUIRE_MOSQUITTO").is_none(),
            "mosquitto_passwd is required (WMS_REQUIRE_MOSQUITTO)"
        );
        eprintln!("NOTICE: mosquitto_passwd not installed; skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    let st = std::process::Command::new("/usr/bin/mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&file)
        .args(["scanner/sc-9", "s3cret-Pässword"])
        .status()
        .unwrap();
    assert!(st.success());
    let line = std::fs::read_to_string(&file).unwrap();
    let (user, hash) = line.trim().split_once(':').unwrap();
    assert_eq!(user, "scanner/sc-9");
    assert!(hash.starts_with("$7$"), "{hash}");
    assert!(wms_node::floor::passwd::verify("s3cret-Pässword", hash));
    assert!(!wms_node::floor::passwd::verify("s3cret-Password", hash));
    // Ours: the same layout (iterations, salt and hash lengths) as mosquitto_passwd's.
    let ours = wms_node::floor::passwd::hash("x");
    let shape = |h: &str| h.split('$').map(str::len).collect::<Vec<_>>();
    assert_eq!(shape(&ours), shape(hash));
}
