//! The token bucket: `per_second` tokens refill continuously up to `burst`.

use super::saturating_secs_f64;
use core::fmt;
use core::ops::Sub;
use core::time::Duration;

/// A bucket's rate: `per_second` tokens refill continuously, at most `burst` are held.
///
/// Always valid: `per_second` is positive and finite, `burst` at least 1. "No limit" is no
/// `Rate` at all (`Option<Rate>`), so a 0 can never quietly mean "unlimited" in one place and
/// "one per second" in another.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: u32,
}

/// Why a [`Rate`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateError {
    /// The rate is 0, negative, NaN or infinite.
    NotPositive,
    /// The burst is 0: the bucket could never hold a token.
    ZeroBurst,
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateError::NotPositive => f.write_str("must be a number above 0"),
            RateError::ZeroBurst => f.write_str("must be at least 1"),
        }
    }
}

impl Rate {
    /// `per_second` tokens a second, holding at most `burst`.
    pub fn new(per_second: f64, burst: u32) -> Result<Rate, RateError> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(RateError::NotPositive);
        }
        if burst == 0 {
            return Err(RateError::ZeroBurst);
        }
        Ok(Rate { per_second, burst })
    }

    /// `per_second` with a burst of one second's worth (at least 1).
    pub fn per_second(per_second: f64) -> Result<Rate, RateError> {
        // `f64::ceil` needs std; `as` saturates (and a non-positive rate fails in `new`).
        let whole = per_second as u32;
        let burst = if f64::from(whole) < per_second {
            whole.saturating_add(1)
        } else {
            whole
        };
        Rate::new(per_second, burst.max(1))
    }

    /// Tokens a second.
    pub fn tokens_per_second(&self) -> f64 {
        self.per_second
    }

    /// Tokens held at most.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How long it takes to refill `missing` tokens (saturating for a tiny rate).
    fn time_for(&self, missing: f64) -> Duration {
        saturating_secs_f64(missing / self.per_second)
    }
}

/// A token bucket over the caller's clock. `T` is any instant that subtracts to a
/// [`Duration`]; an instant earlier than the last one seen counts as no time passed.
#[derive(Debug, Clone)]
pub struct TokenBucket<T> {
    rate: Rate,
    tokens: f64,
    last: T,
}

impl<T> TokenBucket<T>
where
    T: Copy + PartialOrd + Sub<Output = Duration>,
{
    /// A full bucket.
    pub fn new(rate: Rate, now: T) -> Self {
        TokenBucket {
            rate,
            tokens: f64::from(rate.burst),
            last: now,
        }
    }

    /// The bucket's rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    fn refill(&mut self, now: T) {
        if now > self.last {
            let elapsed = (now - self.last).as_secs_f64();
            // `elapsed * rate` may be infinite for a huge rate; `min` caps it at the burst.
            self.tokens =
                (self.tokens + elapsed * self.rate.per_second).min(f64::from(self.rate.burst));
            self.last = now;
        }
    }

    /// Takes a token if one is there (`Ok`), else says how long until one will be.
    pub fn try_take(&mut self, now: T) -> Result<(), Duration> {
        let wait = self.wait(now);
        if wait.is_zero() {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// How long until a token is there (zero if one is), without taking it.
    pub fn wait(&mut self, now: T) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            // Never zero while no token is there: a caller that sleeps for it always makes
            // progress instead of spinning on a rounding error.
            self.rate
                .time_for(1.0 - self.tokens)
                .max(Duration::from_nanos(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_rate_of_zero_negative_nan_or_infinity_is_no_rate() {
        for r in [0.0, -0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(Rate::new(r, 1), Err(RateError::NotPositive), "{r}");
            assert_eq!(Rate::per_second(r), Err(RateError::NotPositive), "{r}");
        }
        assert_eq!(Rate::new(1.0, 0), Err(RateError::ZeroBurst));
    }

    #[test]
    fn per_second_bursts_one_seconds_worth() {
        assert_eq!(Rate::per_second(10.0).unwrap().burst(), 10);
        assert_eq!(Rate::per_second(2.5).unwrap().burst(), 3);
        assert_eq!(Rate::per_second(0.1).unwrap().burst(), 1);
        assert_eq!(Rate::per_second(1e30).unwrap().burst(), u32::MAX);
    }

    #[test]
    fn a_full_bucket_allows_a_burst_then_the_rate() {
        let mut b = TokenBucket::new(Rate::new(10.0, 3).unwrap(), Duration::ZERO);
        for _ in 0..3 {
            assert!(b.try_take(Duration::ZERO).is_ok());
        }
        assert_eq!(b.try_take(Duration::ZERO), Err(ms(100)));
        assert_eq!(b.try_take(ms(100)), Ok(()));
        assert!(b.try_take(ms(100)).is_err());
    }

    #[test]
    fn an_idle_bucket_refills_only_up_to_its_burst() {
        let mut b = TokenBucket::new(Rate::new(100.0, 5).unwrap(), Duration::ZERO);
        for _ in 0..5 {
            b.try_take(Duration::ZERO).unwrap();
        }
        let later = Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.try_take(later).is_ok()).count(), 5);
    }

    #[test]
    fn over_a_second_the_bucket_admits_burst_plus_rate() {
        let mut b = TokenBucket::new(Rate::new(20.0, 5).unwrap(), Duration::ZERO);
        let mut admitted = 0;
        for tick in 0..1000 {
            while b.try_take(ms(tick)).is_ok() {
                admitted += 1;
            }
        }
        assert!((24..=26).contains(&admitted), "admitted {admitted}");
    }

    #[test]
    fn wait_does_not_take() {
        let mut b = TokenBucket::new(Rate::new(1.0, 1).unwrap(), Duration::ZERO);
        assert_eq!(b.wait(Duration::ZERO), Duration::ZERO);
        assert_eq!(b.wait(Duration::ZERO), Duration::ZERO);
        assert!(b.try_take(Duration::ZERO).is_ok());
        assert_eq!(b.wait(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn a_huge_rate_never_waits_for_long_and_never_overflows() {
        let mut b = TokenBucket::new(Rate::new(f64::MAX, u32::MAX).unwrap(), Duration::ZERO);
        for _ in 0..1000 {
            assert!(b.try_take(Duration::ZERO).is_ok());
        }
        // A long quiet spell times a huge rate is infinite tokens, capped at the burst.
        assert!(b.try_take(Duration::MAX).is_ok());
        let mut one = TokenBucket::new(Rate::new(f64::MAX, 1).unwrap(), Duration::ZERO);
        one.try_take(Duration::ZERO).unwrap();
        let wait = one.try_take(Duration::ZERO).unwrap_err();
        assert!(wait <= Duration::from_nanos(1), "{wait:?}");
    }

    #[test]
    fn a_tiny_rate_saturates_its_wait_instead_of_panicking() {
        let mut b = TokenBucket::new(Rate::new(f64::MIN_POSITIVE, 1).unwrap(), Duration::ZERO);
        b.try_take(Duration::ZERO).unwrap();
        assert_eq!(b.try_take(Duration::ZERO), Err(Duration::MAX));
        let mut slow = TokenBucket::new(Rate::new(1e-3, 1).unwrap(), Duration::ZERO);
        slow.try_take(Duration::ZERO).unwrap();
        assert_eq!(slow.wait(Duration::ZERO), Duration::from_secs(1000));
    }

    #[test]
    fn a_clock_that_steps_back_counts_as_no_time_passed() {
        let mut b = TokenBucket::new(Rate::new(1.0, 1).unwrap(), Duration::from_secs(10));
        b.try_take(Duration::from_secs(10)).unwrap();
        assert_eq!(b.wait(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(b.try_take(Duration::from_secs(11)), Ok(()));
    }
}
