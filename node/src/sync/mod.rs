//! The jobs between Taobao and the store.
//!
//! Built so far: [`carriers`] (carrier codes and waybill-number rules, fetched at start-up and
//! daily). Order intake, stock push and reconciliation arrive with later issues; shipments and
//! stock already reach Taobao through the outbox ([`crate::taobao::outbox`]).
//!
//! Must never: write to Taobao directly (every effect goes through the outbox), or hold a
//! store transaction across a network call.

pub mod carriers;
pub mod consign;
pub mod intake;
pub mod skus;
