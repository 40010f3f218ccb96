//! A token bucket: the outbox's rate limit towards the other side.
//!
//! Pure state over an explicit clock (`tokio::time::Instant`), so it is tested with paused
//! time and no sleeping.

use std::time::Duration;
use tokio::time::Instant;

/// `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A rate that is not a positive finite number means "no limit".
    pub fn new(rate_per_sec: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate_per_sec,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn unlimited(&self) -> bool {
        !(self.rate.is_finite() && self.rate > 0.0)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// `Ok` if a token was available (and taken), else how long until one is.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.unlimited() {
            return Ok(());
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// How long until a token is available (zero if one is), without taking it.
    pub fn wait(&mut self, now: Instant) -> Duration {
        if self.unlimited() {
            return Duration::ZERO;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, start);
        for _ in 0..3 {
            assert!(b.try_take(start).is_ok());
        }
        let wait = b.try_take(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        tokio::time::advance(wait).await;
        assert!(b.try_take(Instant::now()).is_ok());
        assert!(b.try_take(Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_bucket_refills_only_up_to_its_burst() {
        let start = Instant::now();
        let mut b = TokenBucket::new(100.0, 5, start);
        for _ in 0..5 {
            b.try_take(start).unwrap();
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        let now = Instant::now();
        let taken = (0..20).filter(|_| b.try_take(now).is_ok()).count();
        assert_eq!(taken, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn over_a_second_the_bucket_admits_burst_plus_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(20.0, 5, start);
        let mut admitted = 0;
        // Step through one second in 1 ms ticks, taking whenever allowed.
        for _ in 0..1000 {
            while b.try_take(Instant::now()).is_ok() {
                admitted += 1;
            }
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert!((24..=26).contains(&admitted), "admitted {admitted}");
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        let now = Instant::now();
        let mut b = TokenBucket::new(0.0, 1, now);
        for _ in 0..1000 {
            assert!(b.try_take(now).is_ok());
        }
        assert_eq!(b.wait(now), Duration::ZERO);
    }
}
