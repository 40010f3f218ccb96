#![no_std]
//! firmware-bridge (skeleton).
