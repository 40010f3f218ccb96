//! When a wait ends: `now + wait`, saturating.
//!
//! Waits come from outside more often than it seems: a Taobao ban announces its seconds, a
//! token bucket with a tiny rate answers [`Duration::MAX`], a backoff ceiling is configured.
//! `Instant + Duration` panics when the sum leaves the instant's range, so the workspace never
//! adds a wait to an instant directly: [`deadline`] does, and a wait too long to represent ends
//! at [`FAR`] instead (as tokio's own `sleep` does with its "far future").

use core::ops::Add;
use core::time::Duration;

/// The furthest a deadline is ever put: about 30 years, tokio's "far future". Any wait at or
/// beyond it means "not in this process's lifetime", and any instant type's range (a
/// monotonic clock counts from boot) holds `now + FAR`.
pub const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `now + wait`, with `wait` cut at [`FAR`], for any instant type (`std::time::Instant`,
/// `tokio::time::Instant`, a [`Duration`] since boot on a microcontroller). A wait too long
/// to represent ends at the horizon instead of panicking.
pub fn deadline<T: Add<Duration, Output = T>>(now: T, wait: Duration) -> T {
    now + wait.min(FAR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_added_as_is_up_to_the_far_horizon() {
        let now = Duration::from_secs(100);
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            Duration::from_secs(105)
        );
        assert_eq!(deadline(now, Duration::ZERO), now);
        assert_eq!(deadline(now, FAR), now + FAR);
        assert_eq!(deadline(now, FAR + Duration::from_secs(1)), now + FAR);
    }

    #[test]
    fn an_unrepresentable_wait_ends_at_the_horizon_instead_of_panicking() {
        let now = Duration::from_secs(100);
        assert_eq!(deadline(now, Duration::MAX), now + FAR);
        assert_eq!(deadline(now, Duration::from_secs(u64::MAX)), now + FAR);
    }

    #[cfg(feature = "std")]
    #[test]
    fn a_monotonic_clock_takes_the_horizon() {
        let now = std::time::Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(u64::MAX)) - now,
            FAR,
            "a ban of u64::MAX seconds"
        );
    }
}
