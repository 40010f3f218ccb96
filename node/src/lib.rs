//! wms-node: the warehouse gateway daemon.
//!
//! # Layout
//!
//! Each folder is named after the world it talks to, or the job it does:
//!
//! | module     | owns                                                                      |
//! |------------|---------------------------------------------------------------------------|
//! | [`config`] | the TOML file, `WMS_NODE__…` overrides, validation, secrets               |
//! | [`store`]  | the one redb file: tables, schema version, group commit, quarantine       |
//! | [`outbox`] | the durable queue of effects on the outside world and their delivery      |
//! | [`taobao`] | the TOP client: signing, OAuth, typed calls, error classes                |
//! | [`floor`]  | MQTT: scanners, printers, the gateway's own topics, the embedded broker   |
//! | [`wms`]    | the warehouse's own state and rules: orders, holds, SKUs (no I/O)         |
//! | [`sync`]   | the jobs between Taobao and the store (intake, stock, shipments)          |
//! | [`ops`]    | what operators see: logs, alerts, metrics, `/healthz`, the status page    |
//! | [`daemon`] | `run(config, shutdown)`: the task tree and its orderly shutdown           |
//!
//! The one rule everything serves: the local store is the source of truth, and nothing the
//! floor did is ever lost. An acknowledgement (an OK beep, an `Ok` from an enqueue) is only
//! given after the effect is fsynced.

pub mod config;
pub mod daemon;
pub mod floor;
pub mod ops;
pub mod outbox;
pub mod secret;
pub mod store;
pub mod sync;
pub mod taobao;
pub mod wms;

/// The version printed by `wms-node --version` and sent as part of `partner_id`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
