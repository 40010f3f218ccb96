//! The state of the link to the other side, as the delivery loop sees it.
//!
//! ```text
//!            answer (Done, AlreadyDone, Permanent)
//!   Unknown ─────────────────────────────────────> Up  (full concurrency, rate limit)
//!      │  Retry                                    │ Retry
//!      v                                           v
//!   Down{failures, next_probe} <───────────────────┘
//!      │ one probe at a time, each after backoff(failures); Retry: failures += 1
//!      └── answer ──> Up   (catch-up starts on the first success, at the rate limit)
//! ```
//!
//! At start-up and after a resume the state is `Unknown`: one attempt at a time until the
//! other side answers, so a box that boots without a link does not fire its whole backlog.
//! Auth pauses are kept by the outbox, not here.

use firmware_bridge::pace::{Backoff, deadline};
use std::time::Duration;
use tokio::time::Instant;

/// What the loop knows about the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Nothing answered yet (start-up, resume): probe with one op.
    Unknown,
    /// The other side answers: deliver at full concurrency.
    Up,
    /// Attempts fail: probe with one op at a time, no sooner than `next_probe`.
    Down {
        /// Consecutive failed attempts.
        failures: u32,
        /// When the next probe may start.
        next_probe: Instant,
    },
}

/// The link state and its transitions.
#[derive(Debug, Clone)]
pub struct Link {
    state: LinkState,
    backoff: Backoff,
}

impl Link {
    /// Starts `Unknown`.
    pub fn new(backoff: Backoff) -> Self {
        Link {
            state: LinkState::Unknown,
            backoff,
        }
    }

    /// The current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// How many attempts may be in flight at once.
    pub fn max_in_flight(&self, concurrency: usize) -> usize {
        match self.state {
            LinkState::Up => concurrency.max(1),
            LinkState::Unknown | LinkState::Down { .. } => 1,
        }
    }

    /// When the next attempt may start, if not now.
    pub fn not_before(&self, now: Instant) -> Option<Instant> {
        match self.state {
            LinkState::Down { next_probe, .. } if next_probe > now => Some(next_probe),
            _ => None,
        }
    }

    /// The other side answered (whatever it said about the op). Returns whether this ends
    /// an outage (catch-up starts now).
    pub fn on_answer(&mut self) -> bool {
        let was_down = !matches!(self.state, LinkState::Up);
        self.state = LinkState::Up;
        was_down
    }

    /// An attempt failed in a way worth retrying. `unit` is the jitter draw in `[0, 1)`.
    pub fn on_retry(&mut self, now: Instant, after: Option<Duration>, unit: f64) {
        let failures = match self.state {
            LinkState::Down { failures, .. } => failures.saturating_add(1),
            _ => 1,
        };
        let wait = self
            .backoff
            .delay(failures, unit)
            .max(after.unwrap_or(Duration::ZERO));
        // `after` is the platform's word (a ban's seconds): any length, saturating.
        self.state = LinkState::Down {
            failures,
            next_probe: deadline(now, wait),
        };
    }

    /// Back to `Unknown` (after a resume).
    pub fn reset(&mut self) {
        self.state = LinkState::Unknown;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> Link {
        Link::new(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(30),
        ))
    }

    #[test]
    fn start_up_probes_with_one_attempt_until_something_answers() {
        let mut l = link();
        assert_eq!(l.max_in_flight(8), 1);
        assert!(l.on_answer(), "the first answer releases the queue");
        assert_eq!(l.max_in_flight(8), 8);
        assert!(!l.on_answer());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_one_probe_at_a_time_and_a_success_releases_everything() {
        let mut l = link();
        l.on_answer();
        let now = Instant::now();
        l.on_retry(now, None, 0.999);
        assert_eq!(l.max_in_flight(8), 1);
        let first = l.not_before(now).unwrap() - now;
        l.on_retry(now, None, 0.999);
        l.on_retry(now, None, 0.999);
        let third = l.not_before(now).unwrap() - now;
        assert!(third > first, "{third:?} > {first:?}");
        assert!(third <= Duration::from_secs(4));
        for _ in 0..50 {
            l.on_retry(now, None, 0.999);
        }
        assert!(l.not_before(now).unwrap() - now <= Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(l.not_before(Instant::now()), None, "the probe is due");
        assert!(l.on_answer());
        assert_eq!(l.max_in_flight(8), 8);
        assert_eq!(l.not_before(Instant::now()), None);
    }

    #[test]
    fn a_retry_after_hint_is_honoured_even_when_the_backoff_is_shorter() {
        let mut l = link();
        let now = Instant::now();
        l.on_retry(now, Some(Duration::from_secs(120)), 0.0);
        assert_eq!(l.not_before(now), Some(now + Duration::from_secs(120)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_of_any_length_saturates_instead_of_panicking() {
        let mut l = link();
        let now = Instant::now();
        l.on_retry(now, Some(Duration::from_secs(u64::MAX)), 0.5);
        let wait = l.not_before(now).unwrap() - now;
        assert_eq!(wait, firmware_bridge::pace::FAR);
        l.on_retry(now, Some(Duration::MAX), 0.5);
        assert_eq!(l.max_in_flight(8), 1);
    }
}
