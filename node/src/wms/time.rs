//! How the warehouse's records keep time: epoch milliseconds (UTC) in every stored record,
//! converted from and to UTC instants at the edge of `wms/`, and shown to operators as
//! RFC 3339 in GMT+8 (the views of orders and stock). No clock is read here: time is passed in.

use crate::taobao::time::cst;

/// Milliseconds since the epoch of a UTC instant.
pub(crate) fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// The UTC instant of epoch milliseconds (the epoch itself if out of range).
pub(crate) fn at(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// An instant as RFC 3339 in GMT+8 (`2026-11-29T12:00:00+08:00`).
pub fn rfc3339(ms: i64) -> String {
    at(ms)
        .with_timezone(&cst())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}
