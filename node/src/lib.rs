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
//! | [`floor`]  | MQTT scanners and printers: the broker, sessions, devices, the flows      |
//! | [`wms`]    | the warehouse's own state and rules: orders, holds, SKUs, stock (no I/O)  |
//! | [`sync`]   | the jobs between Taobao and the store: intake, stock, waybills, reconcile |
//! | [`ops`]    | what operators see: logs, metrics, `/healthz`, the status page, webhooks  |
//! | [`alert`]  | the one alert type and the handle every layer raises it through (a leaf)  |
//! | [`status`] | health checks, status sections, the two languages' words (a leaf)         |
//! | [`ota`]    | signed A/B self-update: installer, launcher, health gate, rollback        |
//! | [`secret`] | [`secret::Secret`]: a string that never prints                            |
//! | [`daemon`] | `run(config, shutdown)`: the task tree and its orderly shutdown           |
//!
//! `alert` sits beside `secret` at the bottom: the store's writer, the outbox and the Taobao
//! client raise alerts, so the alert type cannot live in `ops/`, which sits above them; `ops`
//! re-exports it as `ops::alert` and owns only how alerts are shown and told (`ops::notify`).
//! `status` sits there for the same reason: every part reports its own checks and section.
//! README.md says what works today.
//!
//! The one rule everything serves: the local store is the source of truth, and nothing the
//! floor did is ever lost. An acknowledgement (an OK beep, an `Ok` from an enqueue) is only
//! given after the effect is fsynced.

pub mod alert;
pub mod config;
pub mod daemon;
pub mod floor;
pub mod ops;
pub mod ota;
pub mod outbox;
pub mod secret;
pub mod status;
pub mod store;
pub mod sync;
pub mod taobao;
pub mod wms;

/// The version printed by `wms-node --version`, reported by the OTA gate and sent as part of
/// `partner_id`: the package version, unless the build set `WMS_NODE_VERSION_OVERRIDE` at
/// compile time (the cross smoke test builds a second, newer node that way, to update to).
pub const VERSION: &str = match option_env!("WMS_NODE_VERSION_OVERRIDE") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

/// `wms-node-version=VERSION` with a NUL on each side, kept in the binary so that `wms-node ota
/// sign` can read the version of an ARM build on any machine without running it.
#[used]
pub static VERSION_MARKER: [u8; VERSION_MARKER_LEN] = version_marker();

const VERSION_MARKER_PREFIX: &[u8] = b"\0wms-node-version=";
const VERSION_MARKER_LEN: usize = VERSION_MARKER_PREFIX.len() + VERSION.len() + 1;

const fn version_marker() -> [u8; VERSION_MARKER_LEN] {
    let mut out = [0u8; VERSION_MARKER_LEN];
    let v = VERSION.as_bytes();
    let mut i = 0;
    while i < VERSION_MARKER_PREFIX.len() {
        out[i] = VERSION_MARKER_PREFIX[i];
        i += 1;
    }
    let mut j = 0;
    while j < v.len() {
        out[i + j] = v[j];
        j += 1;
    }
    out
}
