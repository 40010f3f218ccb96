//! The golden files pin the wire format: one committed, reviewed example of every message type
//! of the floor protocol under `tests/golden/`. They are read here and by the node's tests
//! (`node/tests/floor_golden.rs`) and never written by a test: a change to the format is a
//! change to these files, made by hand and seen in review.
//!
//! Each file must decode (by its channel, as a device or the node would receive it), pass the
//! contract's checks, and encode back to the same JSON value, so the encoder's output is
//! pinned too (field names, `re: null`, no other nulls).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::PathBuf;

use firmware_bridge::proto::ota::{OtaProgress, OtaResult, OtaUpdate};
use firmware_bridge::proto::{
    Channel, Downlink, Feedback, Heartbeat, Hold, HoldAck, Message, Print, PrintResult, Reject,
    RequestTask, Scan, Short, State, Task, Uplink, Validate, json,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(format!("{name}.json"))).unwrap_or_else(|e| panic!("{name}.json: {e}"))
}

fn value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// Decodes the file as `M`, checks it, and encodes it back to the same JSON value.
fn round_trip<M>(name: &str) -> M
where
    M: Message + Serialize + DeserializeOwned + Validate + PartialEq + Debug,
{
    let bytes = read(name);
    let msg: M = json::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    msg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    let again = json::to_vec(&msg).unwrap();
    assert_eq!(
        value(&again),
        value(&bytes),
        "{name}: encoding differs from the golden file"
    );
    msg
}

fn uplink(name: &str, channel: Channel) -> Uplink<String> {
    let msg = json::decode_uplink(channel, &read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        value(&json::uplink_to_vec(&msg).unwrap()),
        value(&read(name)),
        "{name}"
    );
    // The serial link carries the same message (postcard) unchanged.
    let bytes = postcard::to_allocvec(&msg).unwrap();
    assert_eq!(
        postcard::from_bytes::<Uplink<String>>(&bytes).unwrap(),
        msg,
        "{name}"
    );
    msg
}

fn downlink(name: &str) -> Downlink<String> {
    let msg = json::decode_downlink(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        value(&json::downlink_to_vec(&msg).unwrap()),
        value(&read(name)),
        "{name}"
    );
    let bytes = postcard::to_allocvec(&msg).unwrap();
    assert_eq!(
        postcard::from_bytes::<Downlink<String>>(&bytes).unwrap(),
        msg,
        "{name}"
    );
    msg
}

/// Every golden file, and what it is.
const FILES: &[&str] = &[
    "scan",
    "request_task",
    "short",
    "heartbeat",
    "feedback",
    "feedback_refusal",
    "task",
    "hold",
    "print",
    "print_cainiao",
    "print_result",
    "hold_ack",
    "reject",
    "state",
    "state_will",
    "ota_update",
    "ota_progress",
    "ota_result",
];

#[test]
fn every_golden_file_is_checked_and_every_checked_file_exists() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .collect();
    let listed: BTreeSet<String> = FILES.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(on_disk, listed);
}

#[test]
fn device_events_decode_on_evt_and_encode_back() {
    let scan: Scan<String> = round_trip("scan");
    assert_eq!(
        scan.gs1
            .as_ref()
            .and_then(|g| g.expiry)
            .map(|d| d.to_string())
            .as_deref(),
        Some("2027-05-31")
    );
    assert!(matches!(uplink("scan", Channel::Evt), Uplink::Scan(_)));
    round_trip::<RequestTask<String>>("request_task");
    assert!(matches!(
        uplink("request_task", Channel::Evt),
        Uplink::RequestTask(_)
    ));
    round_trip::<Short<String>>("short");
    assert!(matches!(uplink("short", Channel::Evt), Uplink::Short(_)));
    round_trip::<Heartbeat<String>>("heartbeat");
    assert!(matches!(
        uplink("heartbeat", Channel::Evt),
        Uplink::Heartbeat(_)
    ));
}

#[test]
fn node_commands_decode_on_cmd_and_encode_back() {
    let fb: Feedback<String> = round_trip("feedback");
    assert!(fb.ok && fb.next.is_some());
    let refusal: Feedback<String> = round_trip("feedback_refusal");
    assert_eq!(
        refusal.re, None,
        "a refusal that could read no msg_id says re: null"
    );
    assert!(
        value(&read("feedback_refusal"))
            .as_object()
            .unwrap()
            .contains_key("re")
    );
    let task: Task<String> = round_trip("task");
    assert_eq!(
        task.tid.as_deref(),
        Some("4567890123456789"),
        "tids are JSON strings"
    );
    round_trip::<Hold<String>>("hold");
    let print: Print<String> = round_trip("print");
    assert_eq!(print.format.as_str(), "zpl");
    let cainiao: Print<String> = round_trip("print_cainiao");
    assert_eq!(cainiao.format.as_str(), "cainiao");
    for name in [
        "feedback",
        "feedback_refusal",
        "task",
        "hold",
        "print",
        "print_cainiao",
    ] {
        downlink(name);
    }
}

#[test]
fn device_answers_decode_on_reply_and_encode_back() {
    round_trip::<PrintResult<String>>("print_result");
    round_trip::<HoldAck<String>>("hold_ack");
    let reject: Reject<String> = round_trip("reject");
    assert_eq!(reject.of.as_deref(), Some("hold"));
    for name in ["print_result", "hold_ack", "reject"] {
        uplink(name, Channel::Reply);
    }
}

#[test]
fn state_and_will_decode_on_state_and_encode_back() {
    let birth: State<String> = round_trip("state");
    assert!(birth.online);
    let will: State<String> = round_trip("state_will");
    assert_eq!(will, State::offline());
    uplink("state", Channel::State);
    uplink("state_will", Channel::State);
}

#[test]
fn gateway_ota_messages_decode_and_encode_back() {
    let update: OtaUpdate = round_trip("ota_update");
    assert_eq!(
        json::decode_ota_update(&read("ota_update")).unwrap(),
        update
    );
    round_trip::<OtaProgress>("ota_progress");
    round_trip::<OtaResult>("ota_result");
}

#[test]
fn a_golden_message_on_the_wrong_channel_is_refused() {
    assert!(json::decode_uplink(Channel::Reply, &read("scan")).is_err());
    assert!(json::decode_uplink(Channel::Evt, &read("print_result")).is_err());
    assert!(json::decode_downlink(&read("scan")).is_err());
}
