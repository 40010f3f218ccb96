//! What operators see: alerts, health checks, metrics, `/healthz`, the status page, and
//! logging setup.
//!
//! ```text
//!   any module ──raise/clear──▶ Alerts ──┐
//!   any module ──set check────▶ Health ──┼──▶ http: /  /healthz  /metrics  (+ merged routers)
//!   any module ──metrics::*!──▶ metrics ─┘
//! ```
//!
//! Must never expose secrets or buyer data: everything here carries ids and counts only.

/// The alert type lives at the bottom of the crate (`crate::alert`): every layer raises alerts.
pub use crate::alert;
/// The status types live at the bottom too (`crate::status`); their old paths stay.
pub use crate::status::{health, i18n, time};
pub mod goods;
pub mod http;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod orders;
pub mod process;
pub mod restarts;
