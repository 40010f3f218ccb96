//! The one backoff helper: exponential, capped, with full jitter.
//!
//! Attempt `n` (1-based) waits a uniformly random time in `[0, min(max, base × 2^(n-1))]`
//! ("full jitter"): many boxes that lost the same link at the same moment come back spread
//! out instead of in step.

use std::time::Duration;

/// Exponential backoff with a cap and full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    /// The ceiling for attempt `attempt` (1-based): `min(max, base × 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let base_ms = u64::try_from(self.base.as_millis()).unwrap_or(u64::MAX);
        let max_ms = u64::try_from(self.max.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(base_ms.saturating_mul(factor).min(max_ms))
    }

    /// The wait for attempt `attempt`, given `unit` drawn uniformly from `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.ceiling(attempt).mul_f64(unit)
    }

    /// The wait for attempt `attempt`, with a random draw.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(500),
        max: Duration::from_secs(60),
    };

    #[test]
    fn the_ceiling_doubles_from_the_base_up_to_the_cap() {
        assert_eq!(B.ceiling(0), Duration::from_millis(500));
        assert_eq!(B.ceiling(1), Duration::from_millis(500));
        assert_eq!(B.ceiling(2), Duration::from_secs(1));
        assert_eq!(B.ceiling(5), Duration::from_secs(8));
        assert_eq!(B.ceiling(8), Duration::from_secs(60));
        assert_eq!(B.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        assert_eq!(B.delay_with(3, 0.0), Duration::ZERO);
        assert_eq!(B.delay_with(3, 0.5), Duration::from_secs(1));
        assert_eq!(B.delay_with(3, 1.0), Duration::from_secs(2));
        assert_eq!(B.delay_with(3, f64::NAN), Duration::ZERO);
        for attempt in 1..100 {
            let d = B.delay(attempt);
            assert!(d <= B.ceiling(attempt), "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn random_delays_are_spread_out() {
        let draws: std::collections::HashSet<_> = (0..50).map(|_| B.delay(10)).collect();
        assert!(
            draws.len() > 10,
            "full jitter should not repeat itself: {draws:?}"
        );
    }
}
