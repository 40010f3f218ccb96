//! Exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS Architecture
//! Blog): the n-th wait is uniform in `[floor, min(max, base · 2ⁿ)]`.
//!
//! Used for broker reconnects (rumqttc retries as fast as it is polled) and serial port
//! reopening. Jitter matters on a floor: when the broker restarts, every bridge and device
//! would otherwise reconnect in the same millisecond. The floor (a tenth of `base`, at least
//! 10 ms) keeps a zero draw from turning into a busy loop.

use std::time::Duration;

use rand::Rng;

/// Backoff state for one connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff from `base` doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The next wait (and counts the attempt).
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(&mut rand::rng())
    }

    /// The next wait drawn from `rng` (tests pass a seeded one).
    pub fn next_with<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let cap = self.cap();
        self.attempt = self.attempt.saturating_add(1);
        let floor = (self.base / 10).max(Duration::from_millis(10)).min(cap);
        let span = cap.saturating_sub(floor).as_millis() as u64;
        floor + Duration::from_millis(rng.random_range(0..=span))
    }

    /// The current upper bound.
    pub fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Back to the first step (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn waits_stay_within_a_doubling_cap_and_never_below_the_floor() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut rng = StdRng::seed_from_u64(7);
        let caps: Vec<_> = (0..10)
            .map(|_| {
                let cap = b.cap();
                let d = b.next_with(&mut rng);
                assert!(
                    d >= Duration::from_millis(50) && d <= cap,
                    "{d:?} outside (50ms, {cap:?})"
                );
                cap
            })
            .collect();
        assert_eq!(caps[0], Duration::from_millis(500));
        assert_eq!(caps[1], Duration::from_secs(1));
        assert_eq!(caps[5], Duration::from_secs(16));
        assert_eq!(caps[6], Duration::from_secs(30));
        assert_eq!(caps[9], Duration::from_secs(30));
    }

    #[test]
    fn draws_are_spread_not_identical() {
        let mut rng = StdRng::seed_from_u64(1);
        let draws: std::collections::HashSet<_> = (0..20)
            .map(|_| {
                Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_with(&mut rng)
            })
            .collect();
        assert!(draws.len() > 10);
    }

    #[test]
    fn reset_starts_over_and_huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.cap(), Duration::from_secs(5));
        b.reset();
        assert_eq!(b.cap(), Duration::from_millis(100));
        assert_eq!(b.attempts(), 0);
    }
}
