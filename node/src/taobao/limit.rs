//! Client-side call pacing: a token bucket for the app, one per method, and code-7 bans.
//!
//! TOP publishes no per-second limits (TAOBAO.md §7), so the node paces itself with
//! configurable buckets and, when the gateway still answers code 7, honours the announced ban
//! for its scope: one method, or the whole app. A banned scope is refused locally
//! ([`Limiter::check_ban`]) instead of being called again, so a long app ban costs no calls.
//! Bans are kept on the client's clock (the platform counts them on its own), so a test that
//! moves the clock with the sandbox's sees a ten-minute ban end when the sandbox's does.
//!
//! Waiting for a token is a plain `sleep_until`, cancel-safe in a `select!`; a bucket never
//! makes a caller wait for longer than one refill interval per token it lacks.

use super::error::BanScope;
use firmware_bridge::pace::{Rate, TokenBucket};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The pacing configuration. A bucket's [`Rate`] is the workspace's one (`firmware_bridge::pace`):
/// always positive; `None` is no limit.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// All calls of the app together; `None` = unlimited.
    pub app: Option<Rate>,
    /// Each method on its own, unless overridden; `None` = unlimited.
    pub per_method: Option<Rate>,
    /// Per-method overrides (`"taobao.trade.fullinfo.get" = …`).
    pub methods: HashMap<String, Rate>,
}

impl Default for RateLimits {
    /// 20 calls/s for the app, 10/s per method: well under what a busy shop needs, and
    /// gentle enough not to trip unpublished platform flow control.
    fn default() -> Self {
        RateLimits {
            app: Rate::per_second(20.0).ok(),
            per_method: Rate::per_second(10.0).ok(),
            methods: HashMap::new(),
        }
    }
}

impl RateLimits {
    /// No pacing at all (tests that count on the gateway's own limits).
    pub fn unlimited() -> Self {
        RateLimits {
            app: None,
            per_method: None,
            methods: HashMap::new(),
        }
    }
}

type Bucket = TokenBucket<Instant>;

#[derive(Debug, Default)]
struct State {
    app: Option<Bucket>,
    methods: HashMap<String, Bucket>,
    bans: HashMap<BanScope, chrono::DateTime<chrono::Utc>>,
}

/// The app's pacing state, shared by every call of one client.
#[derive(Debug)]
pub struct Limiter {
    limits: RateLimits,
    state: Mutex<State>,
}

impl Limiter {
    /// A limiter with full buckets and no bans.
    pub fn new(limits: RateLimits) -> Self {
        Limiter {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    fn method_rate(&self, method: &str) -> Option<Rate> {
        self.limits
            .methods
            .get(method)
            .copied()
            .or(self.limits.per_method)
    }

    /// The longest running ban that covers `method` at `now` (the client's clock), if any.
    pub fn check_ban(
        &self,
        method: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<(BanScope, Duration)> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.bans.retain(|_, until| *until > now);
        let scopes = [BanScope::App, BanScope::Method(method.to_owned())];
        scopes
            .into_iter()
            .filter_map(|s| {
                st.bans
                    .get(&s)
                    .map(|until| (s, (*until - now).to_std().unwrap_or_default()))
            })
            .max_by_key(|(_, left)| *left)
    }

    /// Every ban in force at `now`, with how long it has left (longest first).
    pub fn bans(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<(BanScope, Duration)> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.bans.retain(|_, until| *until > now);
        let mut v: Vec<(BanScope, Duration)> = st
            .bans
            .iter()
            .map(|(s, until)| (s.clone(), (*until - now).to_std().unwrap_or_default()))
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.1));
        v
    }

    /// Records a ban announced by the gateway at `now` (a longer running ban is kept).
    pub fn ban(&self, scope: BanScope, for_: Duration, now: chrono::DateTime<chrono::Utc>) {
        let until = chrono::Duration::from_std(for_)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let entry = st.bans.entry(scope).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    /// Waits until both the app bucket and the method's bucket have a token, and takes them.
    pub async fn acquire(&self, method: &str) {
        loop {
            let wait = {
                let now = Instant::now();
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let mut wait = Duration::ZERO;
                // Look at both before taking either, so a caller never holds one token while
                // sleeping for the other.
                if let Some(rate) = self.limits.app {
                    let b = st.app.get_or_insert_with(|| Bucket::new(rate, now));
                    wait = wait.max(b.wait(now));
                }
                if let Some(rate) = self.method_rate(method) {
                    let b = st
                        .methods
                        .entry(method.to_owned())
                        .or_insert_with(|| Bucket::new(rate, now));
                    wait = wait.max(b.wait(now));
                }
                if wait.is_zero() {
                    if let Some(b) = st.app.as_mut() {
                        let _ = b.try_take(now);
                    }
                    if let Some(b) = st.methods.get_mut(method) {
                        let _ = b.try_take(now);
                    }
                    return;
                }
                wait
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(app: f64, method: f64) -> RateLimits {
        RateLimits {
            app: Rate::new(app, 1).ok(),
            per_method: Rate::new(method, 1).ok(),
            methods: HashMap::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_method_bucket_spaces_calls_of_that_method_only() {
        let l = Limiter::new(limits(1000.0, 2.0));
        let t0 = Instant::now();
        l.acquire("a").await;
        l.acquire("b").await;
        assert!(Instant::now() - t0 < Duration::from_millis(10));
        l.acquire("a").await;
        let waited = Instant::now() - t0;
        assert!(waited >= Duration::from_millis(499), "{waited:?}");
        assert!(waited <= Duration::from_millis(510), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_app_bucket_spaces_calls_across_methods() {
        let l = Limiter::new(limits(4.0, 1000.0));
        let t0 = Instant::now();
        for m in ["a", "b", "c"] {
            l.acquire(m).await;
        }
        let waited = Instant::now() - t0;
        assert!(waited >= Duration::from_millis(499), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_allowed_after_a_quiet_spell() {
        let l = Limiter::new(RateLimits {
            app: Rate::new(1.0, 5).ok(),
            per_method: None,
            methods: HashMap::new(),
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            l.acquire("a").await;
        }
        assert!(Instant::now() - t0 < Duration::from_millis(10));
    }

    fn at(s: i64) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap_or_default()
    }

    #[test]
    fn bans_cover_their_scope_and_expire_on_the_clock() {
        let l = Limiter::new(RateLimits::unlimited());
        l.ban(BanScope::Method("a".into()), Duration::from_secs(2), at(0));
        assert!(
            matches!(l.check_ban("a", at(0)), Some((BanScope::Method(_), d)) if d == Duration::from_secs(2))
        );
        assert_eq!(l.check_ban("b", at(0)), None);
        l.ban(BanScope::App, Duration::from_secs(60), at(0));
        assert!(matches!(l.check_ban("b", at(1)), Some((BanScope::App, _))));
        // The longer of two bans is reported.
        assert!(matches!(l.check_ban("a", at(1)), Some((BanScope::App, _))));
        assert_eq!(l.check_ban("a", at(61)), None);
    }

    #[test]
    fn a_ban_of_any_length_is_recorded_without_panicking() {
        let l = Limiter::new(RateLimits::unlimited());
        for secs in [u64::MAX, u64::MAX / 2, i64::MAX as u64, 1 << 40] {
            l.ban(
                BanScope::Method("a".into()),
                Duration::from_secs(secs),
                at(0),
            );
        }
        l.ban(BanScope::App, Duration::MAX, at(0));
        let (_, left) = l.check_ban("b", at(0)).unwrap();
        assert!(left > Duration::from_secs(365 * 86_400), "{left:?}");
        assert!(l.check_ban("a", at(1_000_000)).is_some());
    }

    #[test]
    fn a_shorter_ban_does_not_cut_a_longer_one() {
        let l = Limiter::new(RateLimits::unlimited());
        l.ban(BanScope::App, Duration::from_secs(60), at(0));
        l.ban(BanScope::App, Duration::from_secs(1), at(0));
        assert!(l.check_ban("x", at(2)).is_some());
    }
}
