//! Any scanner line through AIM identifier and GS1 parsing: never a panic.
#![no_main]

use firmware_bridge::scanner::{Barcode, gs1};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for aim in [true, false] {
        let bc = Barcode::parse(data, aim);
        let _ = bc.text();
        let _ = bc.gs1();
    }
    let _ = gs1::elements(data).count();
});
