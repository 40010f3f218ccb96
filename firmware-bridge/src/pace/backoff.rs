//! Exponential backoff with full jitter and a cap ("Exponential Backoff And Jitter", AWS
//! Architecture Blog).
//!
//! Attempt `n` (1-based) waits a uniformly random time in `[floor, min(max, base × 2^(n-1))]`.
//! Full jitter matters on a floor and across a fleet: when the broker restarts or a shop's link
//! comes back, every device and box would otherwise retry in the same millisecond. The floor
//! (zero unless set) keeps a zero draw from turning a reconnect loop into a busy loop.

use super::saturating_secs_f64;
use core::time::Duration;

/// Exponential backoff with a cap and full jitter. The random draw is the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    floor: Duration,
}

impl Backoff {
    /// Ceilings from `base` doubling up to `max` (at least `base`), no floor.
    pub const fn new(base: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < base.as_nanos() {
            base
        } else {
            max
        };
        Backoff {
            base,
            max,
            floor: Duration::ZERO,
        }
    }

    /// No wait shorter than `floor` (itself at most the first ceiling).
    pub fn with_floor(self, floor: Duration) -> Self {
        Backoff {
            floor: floor.min(self.base),
            ..self
        }
    }

    /// The ceiling of the first wait.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest ceiling.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The ceiling for attempt `attempt` (1-based; 0 counts as 1):
    /// `min(max, base × 2^(attempt-1))`, saturating.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let raw = match 1u32.checked_shl(doublings) {
            Some(factor) => self.base.saturating_mul(factor),
            None if self.base.is_zero() => Duration::ZERO,
            None => Duration::MAX,
        };
        raw.min(self.max)
    }

    /// The wait for attempt `attempt`, given `unit` drawn uniformly from `[0, 1]`: uniform in
    /// `[floor, ceiling]`. A draw outside `[0, 1]` is clamped into it; NaN counts as 0.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let ceiling = self.ceiling(attempt).max(self.floor);
        let span = ceiling - self.floor;
        let jitter = saturating_secs_f64(span.as_secs_f64() * unit).min(span);
        self.floor + jitter
    }
}

/// A [`Backoff`] with its attempt count, for one connection that retries until it succeeds.
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    attempts: u32,
}

impl Retries {
    /// No attempts yet.
    pub fn new(backoff: Backoff) -> Self {
        Retries {
            backoff,
            attempts: 0,
        }
    }

    /// Counts a failed attempt and gives the wait before the next one (`unit` as in
    /// [`Backoff::delay`]).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        self.backoff.delay(self.attempts, unit)
    }

    /// The ceiling of the next wait.
    pub fn ceiling(&self) -> Duration {
        self.backoff.ceiling(self.attempts.saturating_add(1))
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// Failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));

    #[test]
    fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
        assert_eq!(B.ceiling(0), Duration::from_millis(500));
        assert_eq!(B.ceiling(1), Duration::from_millis(500));
        assert_eq!(B.ceiling(2), Duration::from_secs(1));
        assert_eq!(B.ceiling(5), Duration::from_secs(8));
        assert_eq!(B.ceiling(8), Duration::from_secs(60));
        assert_eq!(B.ceiling(32), Duration::from_secs(60));
        assert_eq!(B.ceiling(33), Duration::from_secs(60));
        assert_eq!(B.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn ceilings_saturate_instead_of_overflowing() {
        let huge = Backoff::new(Duration::MAX / 2, Duration::MAX);
        assert_eq!(huge.ceiling(1), Duration::MAX / 2);
        assert_eq!(huge.ceiling(3), Duration::MAX);
        assert_eq!(huge.ceiling(u32::MAX), Duration::MAX);
        assert_eq!(huge.delay(u32::MAX, 1.0), Duration::MAX);
        assert!(huge.delay(u32::MAX, 0.5) <= Duration::MAX);
        let zero = Backoff::new(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(zero.ceiling(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn a_max_below_the_base_is_the_base() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.max(), Duration::from_secs(5));
        assert_eq!(b.ceiling(10), Duration::from_secs(5));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        assert_eq!(B.delay(3, 0.0), Duration::ZERO);
        assert_eq!(B.delay(3, 0.5), Duration::from_secs(1));
        assert_eq!(B.delay(3, 1.0), Duration::from_secs(2));
        assert_eq!(B.delay(3, f64::NAN), Duration::ZERO);
        assert_eq!(B.delay(3, -4.0), Duration::ZERO);
        assert_eq!(B.delay(3, 7.0), Duration::from_secs(2));
        assert_eq!(B.delay(3, f64::INFINITY), Duration::from_secs(2));
        for attempt in 0..100 {
            for unit in [0.0, 0.25, 0.999_999, 1.0] {
                let d = B.delay(attempt, unit);
                assert!(d <= B.ceiling(attempt), "attempt {attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn a_floor_lifts_the_lowest_wait_but_not_the_ceiling() {
        let b = B.with_floor(Duration::from_millis(50));
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(500));
        assert_eq!(b.delay(20, 1.0), Duration::from_secs(60));
        // A floor above the base is cut to the base.
        let high = B.with_floor(Duration::from_secs(10));
        assert_eq!(high.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(high.delay(1, 1.0), Duration::from_millis(500));
    }

    #[test]
    fn retries_count_attempts_and_reset_starts_over() {
        let mut r = Retries::new(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(5),
        ));
        assert_eq!(r.ceiling(), Duration::from_millis(100));
        assert_eq!(r.next_delay(1.0), Duration::from_millis(100));
        assert_eq!(r.next_delay(1.0), Duration::from_millis(200));
        for _ in 0..100 {
            r.next_delay(0.5);
        }
        assert_eq!(r.ceiling(), Duration::from_secs(5));
        assert_eq!(r.attempts(), 102);
        r.reset();
        assert_eq!(r.attempts(), 0);
        assert_eq!(r.ceiling(), Duration::from_millis(100));
    }
}
