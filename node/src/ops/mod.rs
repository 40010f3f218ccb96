//! What operators see: alerts, metrics, `/healthz`, the status page, and logging setup.
//!
//! Must never expose secrets or buyer data: everything here carries ids and counts only.

pub mod alert;
