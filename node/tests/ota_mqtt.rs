//! OTA over MQTT end to end: a fleet link (registered with `devices add … --class gateway`)
//! publishes a signed `ota_update` on the running node's gateway `cmd` topic through the
//! node's own embedded broker; the artifact is served over HTTP; the node answers on `reply`,
//! restarts through the real launcher into the update, and answers the trial's outcome.

// Tests report failures by unwrapping; the sleeps here poll from plain threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod ota_support;

use base64::Engine as _;
use ota_support::{Gateway, Launched};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wms_node::ota::Slot;
use wms_node::ota::state::Outcome;

const NODE: &str = "gw-ota";
const WAIT: Duration = Duration::from_secs(30);

/// A fleet tool on the node's broker: subscribed to the node's `reply` (again after every
/// reconnect: the embedded broker restarts with the node), publishing on its `cmd`.
struct Fleet {
    client: Client,
    rx: mpsc::Receiver<Value>,
    subscribed: mpsc::Receiver<()>,
}

impl Fleet {
    fn connect(port: u16, password: &str) -> Fleet {
        Fleet::connect_as(
            port,
            "gateway/fleet",
            password,
            &format!("wms/main/gateway/{NODE}/reply"),
        )
    }

    /// Any client: `user` subscribed to `filter` (again after every reconnect).
    fn connect_as(port: u16, user: &str, password: &str, filter: &str) -> Fleet {
        let mut o = MqttOptions::new(user.replace('/', "-"), "127.0.0.1", port);
        o.set_credentials(user, password);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut conn) = Client::new(o, 64);
        let (tx, rx) = mpsc::channel();
        let (stx, subscribed) = mpsc::channel();
        let c = client.clone();
        let filter = filter.to_owned();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(a))) => {
                        assert!(
                            a.return_codes
                                .iter()
                                .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure)),
                            "the broker refused the fleet link's subscription"
                        );
                        let _ = stx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // The node is restarting: try again shortly.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        let f = Fleet {
            client,
            rx,
            subscribed,
        };
        f.wait_subscribed();
        f
    }

    fn wait_subscribed(&self) {
        self.subscribed
            .recv_timeout(WAIT)
            .expect("the fleet link did not subscribe to the node's reply topic");
    }

    fn send(&self, payload: &Value) {
        self.client
            .publish(
                format!("wms/main/gateway/{NODE}/cmd"),
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(payload).unwrap(),
            )
            .unwrap();
    }

    /// The replies up to and including the first `ota_result`.
    fn until_result(&self) -> (Vec<Value>, Value) {
        let mut progress = Vec::new();
        loop {
            let v = self
                .rx
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no ota_result; progress so far: {progress:?}"));
            match v["type"].as_str() {
                Some("ota_result") => return (progress, v),
                Some("ota_progress") => progress.push(v),
                _ => panic!("unexpected reply {v}"),
            }
        }
    }

    fn next(&self) -> Value {
        self.rx.recv_timeout(WAIT).expect("no reply")
    }
}

/// The `ota_update` message for a manifest file written by `Gateway::publish`.
fn update(id: &str, manifest: &Path, force: bool) -> Value {
    let bytes = std::fs::read(manifest).unwrap();
    let sig = std::fs::read_to_string(manifest.with_extension("manifest.sig")).unwrap();
    let mut v = serde_json::json!({
        "type": "ota_update",
        "v": 1,
        "id": id,
        "manifest": base64::engine::general_purpose::STANDARD.encode(&bytes),
        "signature": sig.trim(),
    });
    if force {
        v["force"] = true.into();
    }
    v
}

/// A running node started by the launcher, with a fleet link connected to its broker.
fn running_node(gw: &Gateway) -> (Launched, Fleet) {
    let (l, fleet, _) = running_node_with_scanner(gw);
    (l, fleet)
}

/// The same with a registered scanner `sc-1` connected, watching its `cmd` topic.
fn running_node_with_scanner(gw: &Gateway) -> (Launched, Fleet, Fleet) {
    let port = gw.fix_mqtt_port();
    let password = gw.add_fleet_link("fleet");
    let out = gw.run(&["devices", "add", "sc-1", "--class", "scanner", "--json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let scanner_password = v["password"].as_str().unwrap().to_owned();
    let mut l = gw.launch("running");
    gw.wait_launched(&mut l, wms_node::VERSION);
    l.wait_log("ready");
    let fleet = Fleet::connect(port, &password);
    let scanner = Fleet::connect_as(
        port,
        "scanner/sc-1",
        &scanner_password,
        "wms/main/scanner/sc-1/cmd",
    );
    (l, fleet, scanner)
}

/// The next `pause` a device receives (the retained one first, on every subscription).
fn next_pause(device: &Fleet) -> Value {
    loop {
        let v = device.next();
        if v["type"] == "pause" {
            return v;
        }
    }
}

/// Waits for the launched node to stop for the update (exit 75).
fn stops_for_the_update(l: &mut Launched) {
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = l.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not stop:\n{}",
            l.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(i32::from(wms_node::ota::EXIT_RESTART_FOR_UPDATE)),
        "{}",
        l.log_text()
    );
}

/// `wms-node alerts --json` of the running node.
fn active_alerts(gw: &Gateway) -> String {
    let out = gw.run(&["alerts", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_update_over_mqtt_is_installed_restarts_commits_and_answers_its_request() {
    let gw = Gateway::new();
    let (mut l, fleet, scanner) = running_node_with_scanner(&gw);
    // The real binary as the update (forced: it is the running version), so the build that
    // runs after the trial is a real node that answers on MQTT.
    let artifact = gw.real_build("wms-node-update");
    let manifest = gw.publish(&artifact, wms_node::VERSION, |_| {});
    fleet.send(&update("rollout-1", &manifest, true));

    let (progress, result) = fleet.until_result();
    assert_eq!(result["re"], "rollout-1", "{result}");
    assert_eq!(result["status"], "installed", "{result}");
    assert_eq!(result["version"], wms_node::VERSION);
    let size = std::fs::metadata(&artifact).unwrap().len();
    assert!(
        progress
            .iter()
            .any(|p| p["phase"] == "downloading" && p["done"] == size && p["total"] == size),
        "{progress:?}"
    );
    assert!(
        progress.iter().any(|p| p["phase"] == "verifying"),
        "{progress:?}"
    );
    assert!(
        progress.iter().all(|p| p["re"] == "rollout-1"),
        "{progress:?}"
    );
    let restarting = fleet.next();
    assert_eq!(restarting["phase"], "restarting", "{restarting}");
    assert_eq!(restarting["re"], "rollout-1");
    // The slot holds exactly the served artifact, and it waits for its trial.
    let s = gw.state();
    assert_eq!(s.trial.as_ref().map(|t| t.build.slot), Some(Slot::A));
    assert_eq!(s.request_id.as_deref(), Some("rollout-1"));
    assert_eq!(
        std::fs::read(&gw.slot_files()[0]).unwrap(),
        std::fs::read(&artifact).unwrap()
    );

    // The node stops; systemd (here: the test) starts the unit, i.e. the launcher, which runs
    // the new build's gate and commits it.
    // Before it stops, the floor is told to wait: nothing is acknowledged until the new
    // build runs (its trial may migrate the store, and a rollback would restore the old one).
    let pause = next_pause(&scanner);
    assert_eq!(pause["active"], true, "{pause}");
    assert_eq!(pause["reason"], "update");
    stops_for_the_update(&mut l);
    let mut l = gw.launch("restarted");
    let s = gw.wait_launched(&mut l, wms_node::VERSION);
    assert!(matches!(s.last, Some(Outcome::Committed { .. })), "{s:?}");
    // Only the committed build, running, lets the floor work again (retained: the scanner
    // gets it whenever it is back).
    scanner.wait_subscribed();
    assert_eq!(next_pause(&scanner)["active"], false);
    let deadline = Instant::now() + WAIT;
    while gw.state().floor_paused {
        assert!(Instant::now() < deadline, "the floor stays paused");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.committed.as_ref().map(|c| c.slot), Some(Slot::A));
    l.wait_log("answering the OTA request that installed this trial");
    fleet.wait_subscribed();
    let deadline = Instant::now() + WAIT;
    while !gw.state().request_answered {
        assert!(
            Instant::now() < deadline,
            "the trial's outcome was not sent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The fleet link was away while the node restarted: it asks again, with the same id, and
    // gets the outcome without anything being installed again.
    let ranges = gw.server.served.ranges.lock().unwrap().len();
    fleet.send(&update("rollout-1", &manifest, true));
    // (The answer sent at start may come first, when the link was back in time: the same.)
    let (_, result) = fleet.until_result();
    assert_eq!(result["status"], "committed", "{result}");
    assert_eq!(result["re"], "rollout-1");
    assert_eq!(result["version"], wms_node::VERSION);
    assert_eq!(gw.server.served.ranges.lock().unwrap().len(), ranges);
    assert!(gw.state().trial.is_none());
}

#[test]
fn an_update_over_mqtt_that_fails_its_trial_is_rolled_back_and_says_why() {
    let gw = Gateway::new();
    let (mut l, fleet) = running_node(&gw);
    let build = gw.build("exit2", "exit2");
    let manifest = gw.publish(&build, "0.99.0", |_| {});
    fleet.send(&update("rollout-2", &manifest, false));
    let (_, result) = fleet.until_result();
    assert_eq!(result["status"], "installed", "{result}");
    assert_eq!(result["version"], "0.99.0");
    stops_for_the_update(&mut l);
    let mut l = gw.launch("rolled-back");
    let s = gw.wait_launched(&mut l, wms_node::VERSION);
    assert!(matches!(s.last, Some(Outcome::RolledBack { .. })), "{s:?}");
    l.wait_log("ready");
    fleet.wait_subscribed();
    fleet.send(&update("rollout-2", &manifest, false));
    let (_, result) = fleet.until_result();
    assert_eq!(result["re"], "rollout-2");
    assert_eq!(result["status"], "rolled_back", "{result}");
    assert_eq!(result["version"], "0.99.0");
    assert!(
        result["error"].as_str().unwrap().contains("status 2"),
        "{result}"
    );
    // The failure is an alert on the node, of its own kind.
    let alerts = active_alerts(&gw);
    assert!(alerts.contains("ota_rolled_back"), "{alerts}");
    assert!(alerts.contains("0.99.0 was rolled back"), "{alerts}");
}

#[test]
fn a_bad_signature_or_a_bad_message_over_mqtt_is_refused_with_nothing_downloaded() {
    let gw = Gateway::new();
    let (_l, fleet) = running_node(&gw);
    let build = gw.build("good", "pass:0.5.0");
    let manifest = gw.publish(&build, "0.5.0", |_| {});
    // Signed by a key the node does not trust, claiming the trusted key's id.
    let (other, _) = wms_node::ota::verify::SigningKey::generate().unwrap();
    let mut msg = update("rollout-bad", &manifest, false);
    let sig = other.sign(&std::fs::read(&manifest).unwrap());
    msg["signature"] = wms_node::ota::manifest::encode_signature(&sig).into();
    fleet.send(&msg);
    let (progress, result) = fleet.until_result();
    assert!(progress.is_empty(), "{progress:?}");
    assert_eq!(result["re"], "rollout-bad");
    assert_eq!(result["status"], "refused", "{result}");
    assert!(
        result["error"].as_str().unwrap().contains("bad signature"),
        "{result}"
    );
    assert!(
        result.get("version").is_none(),
        "an unverified version is not repeated: {result}"
    );

    // A manifest changed after it was signed.
    let mut msg = update("rollout-changed", &manifest, false);
    let mut bytes = std::fs::read(&manifest).unwrap();
    let text = String::from_utf8(bytes.clone())
        .unwrap()
        .replace("0.5.0", "0.6.0");
    bytes = text.into_bytes();
    msg["manifest"] = base64::engine::general_purpose::STANDARD
        .encode(&bytes)
        .into();
    fleet.send(&msg);
    let (_, result) = fleet.until_result();
    assert_eq!(result["status"], "refused", "{result}");
    assert!(
        result["error"].as_str().unwrap().contains("bad signature"),
        "{result}"
    );

    // Not an ota_update at all: refused with the decoder's words, `re` when an id was read.
    fleet.send(&serde_json::json!({"type":"ota_update","v":1,"id":"rollout-x","manifest":"!!","signature":"AAAA"}));
    let (_, result) = fleet.until_result();
    assert_eq!(result["re"], "rollout-x");
    assert_eq!(result["status"], "refused");
    assert!(
        result["error"].as_str().unwrap().contains("manifest"),
        "{result}"
    );
    fleet.send(&serde_json::json!({"hello": 1}));
    let (_, result) = fleet.until_result();
    assert_eq!(result["status"], "refused");
    assert!(result["re"].is_null(), "{result}");

    // The running node raised the refusal at once.
    let alerts = active_alerts(&gw);
    assert!(alerts.contains("ota_refused"), "{alerts}");
    assert!(!alerts.contains("ota_rolled_back"), "{alerts}");

    // Nothing was downloaded or installed.
    assert!(gw.server.served.ranges.lock().unwrap().is_empty());
    assert!(gw.slot_files().is_empty());
    let s = gw.state();
    assert!(s.trial.is_none() && s.download.is_none(), "{s:?}");
    assert!(
        matches!(&s.last, Some(Outcome::Failed { reason, .. }) if reason.contains("bad signature")),
        "{s:?}"
    );
}
