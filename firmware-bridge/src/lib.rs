//! # firmware-bridge: the device side of wms-node
//!
//! The one place where the floor's device wire contract is defined, the drivers for the serial
//! devices found on a warehouse floor, and (with the `std` feature) the `wms-bridge` daemon that
//! joins those devices to the node's MQTT protocol.
//!
//! ## Layout
//!
//! | module | what it owns | features |
//! |---|---|---|
//! | [`proto`] | the device messages of the MQTT table (scan, request_task, short, heartbeat, feedback, task, hold, print, print_result, hold_ack, state), generic over their string type; topic names; the JSON codec (`proto::json`) | core; JSON needs `alloc` |
//! | [`frame`] | postcard + COBS framing with CRC-32C and a sequence number, and the stop-and-wait ARQ ([`frame::Link`]) for a microcontroller ↔ gateway serial link; pure, no I/O | core |
//! | [`scanner`] | UART barcode scanner driver over `embedded-io` + `embedded-hal`: line assembly, AIM symbology identifiers, GS1 application identifiers, trigger commands, beeper/LED feedback | core |
//! | [`pace`] | the workspace's one token bucket, one exponential backoff with full jitter and one saturating deadline (the node paces and retries with them too); pure: time and the random draw are passed in | core |
//! | [`printer`] | label printer driver: ZPL and TSPL rendering of a shipping label, raw jobs, `~HS` / `ESC !?` status with a timeout | core |
//! | `bridge` | the Linux daemon: configuration, serial ports (termios), the durable spool, one MQTT session per device, device threads | `std` |
//!
//! ```text
//!  UART scanner ──bytes──▶ scanner::Scanner ──Barcode──▶ bridge device thread ──▶ spool (fsync)
//!                                                                                      │
//!  node ◀── wms/{site}/scanner/{id}/evt ◀── MQTT session (QoS 1, entry leaves spool on PUBACK)
//!  node ──▶ wms/{site}/printer/{id}/cmd ──▶ printer::Printer ──ZPL/TSPL──▶ UART printer
//! ```
//!
//! ## Features
//!
//! * no features: `#![no_std]`, no allocator. Messages borrow (`Scan<&str>`) or use
//!   `heapless::String`; drivers use fixed buffers. Builds for `thumbv7em-none-eabihf`
//!   (`ci-no-std.sh`).
//! * `alloc`: owned message types (`Scan<String>`) and the JSON codec.
//! * `std` (default): the `bridge` module and the `wms-bridge` binary.
//!
//! ## Rules this crate keeps
//!
//! * Nothing here panics on input from a device, the network or a file: every decoder returns a
//!   typed error naming the problem (property tests and a fuzz target guard the frame decoder).
//! * Drivers are generic over the `embedded-hal` / `embedded-io` traits, never a concrete HAL, and
//!   hand their parts back with `release()`.
//! * Buyer data is never logged; the printer module masks receiver names and phone numbers again
//!   before they reach a label, whatever the caller passed.
// The core is `no_std` (checked by `ci-no-std.sh` on a microcontroller target); the `std`
// feature adds the Linux bridge, which uses the standard prelude.
#![cfg_attr(not(feature = "std"), no_std)]
// The workspace lints apply (Cargo.toml); the device crate is stricter still: every public
// item is documented, and nothing is `pub` that no one outside can reach.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(all(test, not(feature = "std")))]
extern crate std;

pub mod frame;
pub mod pace;
pub mod printer;
pub mod proto;
pub mod scanner;

#[cfg(feature = "std")]
pub mod bridge;

#[cfg(test)]
mod testing;
