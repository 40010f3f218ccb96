//! Dates on the TOP wire: `yyyy-MM-dd HH:mm:ss` in GMT+8 (China Standard Time, no DST).
//!
//! Everything inside the node is a UTC instant (`DateTime<Utc>`); this module converts at the
//! edge, for the `timestamp` system parameter, business date parameters (`start_modified`, …)
//! and every date in responses (TAOBAO.md §1.4–1.5). It never looks at the host's time zone:
//! a box set to UTC or to anything else still talks GMT+8.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where the client reads "now": request timestamps, token expiry, the daily call budget,
/// code-7 bans, and the order intake's schedule. The system clock in production; tests move
/// it together with the sandbox's clock (the gateway rejects a timestamp more than 10 minutes
/// off its own clock), which lets a simulated day run in seconds.
#[derive(Clone, Default)]
pub struct Clock {
    offset_s: Option<Arc<AtomicI64>>,
    moved: Arc<tokio::sync::Notify>,
}

impl Clock {
    /// The host's clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// The host's clock plus an offset the caller can move (tests). Prefer
    /// [`advance`](Self::advance), which also wakes [`sleep_until`](Self::sleep_until).
    pub fn offset(offset_s: Arc<AtomicI64>) -> Clock {
        Clock {
            offset_s: Some(offset_s),
            moved: Arc::default(),
        }
    }

    /// Now.
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        match &self.offset_s {
            None => now,
            Some(o) => chrono::Duration::try_seconds(o.load(Ordering::Relaxed))
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(now),
        }
    }

    /// Moves an offset clock forward by `secs` and wakes every sleeper (no effect on the
    /// system clock).
    pub fn advance(&self, secs: i64) {
        if let Some(o) = &self.offset_s {
            o.fetch_add(secs, Ordering::Relaxed);
            self.moved.notify_waiters();
        }
    }

    /// Waits until [`now`](Self::now) reaches `deadline`: by real time passing, or by the
    /// clock being advanced. Cancel-safe.
    pub async fn sleep_until(&self, deadline: DateTime<Utc>) {
        loop {
            let moved = self.moved.notified();
            let left = deadline - self.now();
            let Ok(left) = left.to_std() else { return };
            if left.is_zero() {
                return;
            }
            // An offset moved behind our back (a test storing into it) is noticed within
            // a quarter of a second.
            let nap = match self.offset_s {
                Some(_) => left.min(std::time::Duration::from_millis(250)),
                None => left,
            };
            tokio::select! {
                // Real time passed.
                _ = tokio::time::sleep(nap) => {}
                // The clock was advanced.
                _ = moved => {}
            }
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.offset_s {
            None => f.write_str("Clock(system)"),
            Some(o) => write!(f, "Clock(system + {} s)", o.load(Ordering::Relaxed)),
        }
    }
}

/// The wire format.
pub const FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// GMT+8.
pub fn cst() -> FixedOffset {
    // 8 h is within ±24 h, so `east_opt` cannot fail; the fallback only keeps this panic-free.
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| Utc.fix())
}

/// Formats an instant as TOP expects: `2026-11-29 12:00:00` (GMT+8).
pub fn format(at: DateTime<Utc>) -> String {
    at.with_timezone(&cst()).format(FORMAT).to_string()
}

/// A date that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a TOP date (yyyy-MM-dd HH:mm:ss, GMT+8): {0:?}")]
pub struct BadDate(pub String);

/// Parses a TOP date (`yyyy-MM-dd HH:mm:ss`, GMT+8) into a UTC instant. A bare date
/// (`yyyy-MM-dd`, seen in a few fields) means its midnight in GMT+8.
pub fn parse(s: &str) -> Result<DateTime<Utc>, BadDate> {
    let t = s.trim();
    let naive = NaiveDateTime::parse_from_str(t, FORMAT)
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
        })
        .map_err(|_| BadDate(s.to_owned()))?;
    cst()
        .from_local_datetime(&naive)
        .single()
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| BadDate(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant() -> DateTime<Utc> {
        // 2026-11-29 04:00:00 UTC is 12:00:00 in Beijing.
        Utc.with_ymd_and_hms(2026, 11, 29, 4, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn an_offset_clock_moves_with_its_offset() {
        let offset = Arc::new(AtomicI64::new(0));
        let c = Clock::offset(offset.clone());
        let before = c.now();
        offset.store(86_400, Ordering::Relaxed);
        let after = c.now();
        assert!(after - before >= chrono::Duration::days(1));
        assert!(Clock::system().now() < after);
    }

    #[tokio::test]
    async fn advancing_an_offset_clock_wakes_a_sleeper_at_once() {
        let c = Clock::offset(Arc::new(AtomicI64::new(0)));
        let deadline = c.now() + chrono::Duration::hours(1);
        let sleeper = tokio::spawn({
            let c = c.clone();
            async move { c.sleep_until(deadline).await }
        });
        tokio::task::yield_now().await;
        c.advance(3600);
        let woke = tokio::time::timeout(std::time::Duration::from_secs(2), sleeper).await;
        assert!(woke.is_ok(), "the sleeper did not wake");
        // The system clock cannot be advanced, and a past deadline returns at once.
        Clock::system().advance(10);
        Clock::system().sleep_until(Utc::now()).await;
    }

    #[test]
    fn formats_a_utc_instant_in_gmt_plus_8() {
        assert_eq!(format(instant()), "2026-11-29 12:00:00");
    }

    #[test]
    fn parses_back_to_the_same_instant() {
        assert_eq!(parse("2026-11-29 12:00:00"), Ok(instant()));
        assert_eq!(parse(" 2026-11-29 12:00:00 "), Ok(instant()));
    }

    #[test]
    fn a_bare_date_is_midnight_in_beijing() {
        let d = parse("2026-11-29").unwrap_or_default();
        assert_eq!(format(d), "2026-11-29 00:00:00");
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "",
            "2026/11/29 12:00:00",
            "1795924800000",
            "2026-13-01 00:00:00",
            "x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_epoch_millisecond_vector_matches_the_tmc_example() {
        // TAOBAO.md §3.5: 1795924800000 ms is 2026-11-29 12:00:00 +08:00.
        let at = parse("2026-11-29 12:00:00").unwrap_or_default();
        assert_eq!(at.timestamp_millis(), 1_795_924_800_000);
    }

    /// Runs the zone-sensitive checks in a child process whose `TZ` is far from GMT+8
    /// (setting `TZ` in-process would race with other tests).
    #[test]
    fn formatting_ignores_the_host_time_zone() {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => panic!("cannot find the test binary: {e}"),
        };
        for tz in ["EST5EDT", "UTC", "NZST-12"] {
            let out = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "taobao::time::tests::zone_probe_under_a_foreign_tz",
                    "--include-ignored",
                    "--nocapture",
                ])
                .env("TZ", tz)
                .env("WMS_TZ_PROBE_EXPECT", tz)
                .output();
            let out = match out {
                Ok(out) => out,
                Err(e) => panic!("cannot run the test binary: {e}"),
            };
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "TZ={tz}: {stdout}");
            assert!(
                stdout.contains("1 passed"),
                "TZ={tz}: probe did not run: {stdout}"
            );
        }
    }

    #[test]
    #[ignore = "run by formatting_ignores_the_host_time_zone with a foreign TZ"]
    fn zone_probe_under_a_foreign_tz() {
        let tz = std::env::var("WMS_TZ_PROBE_EXPECT").unwrap_or_default();
        assert_eq!(std::env::var("TZ").unwrap_or_default(), tz);
        // The host zone really is not GMT+8 here (otherwise the probe proves nothing).
        let local = chrono::Local::now().offset().local_minus_utc();
        assert_ne!(local, 8 * 3600, "TZ={tz} unexpectedly resolves to GMT+8");
        assert_eq!(format(instant()), "2026-11-29 12:00:00");
        assert_eq!(parse("2026-11-29 12:00:00"), Ok(instant()));
    }
}
