//! Any payload through the MQTT JSON decoders: a typed error or a valid message, never a panic;
//! a decoded message encodes and decodes back to itself.
#![no_main]

use firmware_bridge::proto::{Channel, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for channel in [Channel::Evt, Channel::Reply, Channel::State] {
        if let Ok(msg) = json::decode_uplink(channel, data) {
            let bytes = json::uplink_to_vec(&msg).expect("encodes");
            assert_eq!(
                json::decode_uplink(channel, &bytes).expect("decodes back"),
                msg
            );
        }
    }
    if let Ok(cmd) = json::decode_downlink(data) {
        let bytes = json::downlink_to_vec(&cmd).expect("encodes");
        assert_eq!(json::decode_downlink(&bytes).expect("decodes back"), cmd);
    }
    let _ = json::peek_id(data);
});
