//! Any byte stream through the frame decoder and the link state machine: no panic, no frame
//! longer than the buffer, and every accepted frame re-encodes to a frame that decodes the same.
#![no_main]

use firmware_bridge::frame::{self, Decoder, Link, LinkConfig, link::Received};
use firmware_bridge::proto::{Downlink, Uplink};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = Decoder::<256>::new();
    let mut link = Link::<300>::new(LinkConfig::default(), 0);
    let mut now = 0u32;
    for &b in data {
        now = now.wrapping_add(u32::from(b));
        let Some(Ok(f)) = dec.push(b) else {
            continue;
        };
        assert!(f.payload.len() <= 256 - frame::FRAME_OVERHEAD);
        // Round trip: the accepted frame encodes back to bytes that decode to the same frame.
        let mut wire = [0u8; 300];
        let n = frame::encode(f.header, f.payload, &mut wire).expect("fits");
        let mut again = Decoder::<256>::new();
        let back = wire[..n].iter().find_map(|&b| {
            again
                .push(b)
                .map(|r| r.map(|g| (g.header, g.payload.to_vec())))
        });
        assert_eq!(back, Some(Ok((f.header, f.payload.to_vec()))));
        let _ = f.message::<Uplink<&str>>();
        let _ = f.message::<Downlink<&str>>();
        if let Received::Data(p) = link.receive(f) {
            let _ = p.len();
        }
        let _ = link.poll_transmit(now);
    }
});
