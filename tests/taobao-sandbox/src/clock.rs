//! The sandbox clock and the GMT+8 wire format of TOP dates.
//!
//! Every time the sandbox reasons about (request timestamps, token and code expiry, `modified`,
//! fault durations, increment windows) comes from [`Clock::now_ms`]: the host's wall clock at
//! start-up, advanced by a monotonic timer, plus an offset that `POST /sandbox/clock` moves
//! forward. Tests can therefore "run a day" in a second without touching the host clock. The
//! clock never goes backwards.
//!
//! Wire form (TAOBAO.md §1.4): `yyyy-MM-dd HH:mm:ss` in GMT+8 (China Standard Time, no DST),
//! whatever the host's zone; the request `timestamp` may also be epoch milliseconds.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};

/// The `yyyy-MM-dd HH:mm:ss` pattern used on the wire.
pub const WIRE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The sandbox's notion of "now": monotonic, and movable forward by tests.
#[derive(Debug)]
pub struct Clock {
    start_wall_ms: i64,
    start: Instant,
    offset_ms: AtomicI64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock that starts at the host's current time.
    pub fn new() -> Clock {
        Clock {
            start_wall_ms: Utc::now().timestamp_millis(),
            start: Instant::now(),
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Current sandbox time, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX / 2);
        self.start_wall_ms
            .saturating_add(elapsed)
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Current sandbox time, whole epoch seconds.
    pub fn now_s(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the clock forward by `seconds` (never backwards).
    pub fn advance(&self, seconds: u64) {
        let ms = i64::try_from(seconds)
            .unwrap_or(i64::MAX / 4)
            .saturating_mul(1000);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

fn gmt8() -> FixedOffset {
    // 8 h east is always in range; `east_opt` only fails beyond ±24 h.
    FixedOffset::east_opt(8 * 3600).unwrap_or(Utc.fix())
}

/// Formats epoch seconds as `yyyy-MM-dd HH:mm:ss` in GMT+8.
pub fn format_gmt8(epoch_s: i64) -> String {
    match DateTime::from_timestamp(epoch_s, 0) {
        Some(t) => t.with_timezone(&gmt8()).format(WIRE_FORMAT).to_string(),
        None => String::new(),
    }
}

/// Formats epoch milliseconds as RFC 3339 in UTC (the admin API's form).
pub fn format_rfc3339_ms(epoch_ms: i64) -> String {
    match DateTime::from_timestamp_millis(epoch_ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => String::new(),
    }
}

/// Parses `yyyy-MM-dd HH:mm:ss` as GMT+8 into epoch seconds.
pub fn parse_gmt8(text: &str) -> Option<i64> {
    let naive = NaiveDateTime::parse_from_str(text, WIRE_FORMAT).ok()?;
    let local = gmt8().from_local_datetime(&naive).single()?;
    Some(local.timestamp())
}

/// Parses a request `timestamp`: 12–13 digits are epoch milliseconds (the Python SDK's form),
/// anything else must be `yyyy-MM-dd HH:mm:ss` GMT+8. Returns epoch milliseconds.
pub fn parse_request_timestamp(text: &str) -> Option<i64> {
    if (12..=13).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok();
    }
    parse_gmt8(text).map(|s| s.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_dates_are_gmt8_whatever_the_host_zone() {
        // 2026-11-29 12:00:00 +08:00 is 1795924800 (TAOBAO.md §3.5).
        assert_eq!(parse_gmt8("2026-11-29 12:00:00"), Some(1_795_924_800));
        assert_eq!(format_gmt8(1_795_924_800), "2026-11-29 12:00:00");
    }

    #[test]
    fn request_timestamps_accept_epoch_ms_and_the_wire_form() {
        assert_eq!(
            parse_request_timestamp("1795924800000"),
            Some(1_795_924_800_000)
        );
        assert_eq!(
            parse_request_timestamp("2026-11-29 12:00:00"),
            Some(1_795_924_800_000)
        );
        assert_eq!(parse_request_timestamp("2026-11-29T12:00:00"), None);
        assert_eq!(
            parse_request_timestamp("1795924800"),
            None,
            "10 digits are not ms"
        );
        assert_eq!(parse_request_timestamp(""), None);
    }

    #[test]
    fn the_clock_only_moves_forward_and_advances_on_request() {
        let c = Clock::new();
        let a = c.now_ms();
        c.advance(86_400);
        let b = c.now_ms();
        assert!(b - a >= 86_400_000);
        assert!(c.now_ms() >= b);
    }

    #[test]
    fn admin_times_are_rfc3339_utc() {
        assert_eq!(
            format_rfc3339_ms(1_795_924_800_123),
            "2026-11-29T04:00:00.123Z"
        );
    }
}
