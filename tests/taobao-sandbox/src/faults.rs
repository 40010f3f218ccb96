//! Injected faults (`POST /sandbox/faults`) and the per-(app, method) call limiter.
//!
//! | kind            | effect on matching calls                                                   |
//! |-----------------|----------------------------------------------------------------------------|
//! | `outage`        | connection closed without a response; nothing is processed                 |
//! | `http_500`      | HTTP 500 (or `status`) with an HTML body; nothing is processed             |
//! | `slow`          | processed, then the reply is held `delay_s` (default 30 s) before sending  |
//! | `reset`         | processed, then the connection is closed without a reply ("reply lost")    |
//! | `ban`           | code 7 with "This ban will last for N more seconds" (N: `announce_s`, else the time left) |
//! | `isp_error`     | code 15 with an `isp.*` sub-code (default `isp.top-remote-service-unavailable`) |
//! | `expire_tokens` | every access token expires at once (27 `session-expired`); refresh works   |
//!
//! A fault lasts `seconds` (sandbox clock) and/or `count` matching calls, and applies to every
//! gateway and OAuth call unless `methods` names some (`oauth.authorize` and `oauth.token` name
//! the OAuth endpoints). The admin API is never faulted, so a test can always clear faults.
//! Where several transport faults match a call, the one added first applies and only its
//! `count` is used up: a counted fault added during an outage is met once the outage ends,
//! whenever that is.

use firmware_bridge::pace::{Rate, TokenBucket};
use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Link down: connections closed without a response.
    Outage,
    /// HTTP 5xx from the front end.
    #[serde(rename = "http_500")]
    Http500,
    /// Reply held past a typical client timeout.
    Slow,
    /// Call applied, connection cut before the reply.
    Reset,
    /// Code 7 ban.
    Ban,
    /// Every access token expires now.
    ExpireTokens,
    /// Code 15 with an `isp.*` sub-code.
    IspError,
}

/// A fault request as the admin API receives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// What goes wrong.
    pub kind: FaultKind,
    /// For how long, in sandbox seconds.
    #[serde(default)]
    pub seconds: Option<u64>,
    /// For how many matching calls.
    #[serde(default)]
    pub count: Option<u32>,
    /// Only these methods (default: all).
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// `slow`: how long each reply is held (default 30 s).
    #[serde(default)]
    pub delay_s: Option<u64>,
    /// `http_500`: the status to answer (500–599).
    #[serde(default)]
    pub status: Option<u16>,
    /// `ban` / `isp_error`: the sub-code to answer.
    #[serde(default)]
    pub sub_code: Option<String>,
    /// `ban`: the seconds the ban announces, whatever the fault's own length (any `u64`, to
    /// test how clients take hostile numbers); default: the fault's time left.
    #[serde(default)]
    pub announce_s: Option<u64>,
}

impl FaultSpec {
    /// A fault of `kind` with nothing else set (give it `seconds` or `count`).
    pub fn new(kind: FaultKind) -> FaultSpec {
        FaultSpec {
            kind,
            seconds: None,
            count: None,
            methods: None,
            delay_s: None,
            status: None,
            sub_code: None,
            announce_s: None,
        }
    }
}

/// An active fault.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// Id for listing.
    pub id: u64,
    /// Kind.
    pub kind: FaultKind,
    /// End, epoch ms (sandbox clock).
    pub until_ms: Option<i64>,
    /// Calls left.
    pub remaining: Option<u32>,
    /// Method filter.
    pub methods: Option<Vec<String>>,
    /// `slow` delay, s.
    pub delay_s: u64,
    /// `http_500` status.
    pub status: u16,
    /// `ban` / `isp_error` sub-code.
    pub sub_code: Option<String>,
    /// `ban`: the seconds announced, if fixed.
    pub announce_s: Option<u64>,
}

/// What the transport layer must do with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Close without a response, do not process.
    Drop,
    /// Answer this HTTP status, do not process.
    Status(u16),
    /// Process, then hold the reply this many seconds.
    Delay(u64),
    /// Process, then close without a reply.
    ResetAfter,
}

/// A code-7 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// Seconds left, at least 1.
    pub seconds: u64,
    /// `accesscontrol.*` sub-code.
    pub sub_code: String,
}

/// The fault list.
#[derive(Debug, Default)]
pub struct Faults {
    list: Vec<Fault>,
    next_id: u64,
}

impl Fault {
    fn matches(&self, method: &str, now_ms: i64) -> bool {
        let alive =
            self.until_ms.is_none_or(|u| now_ms < u) && self.remaining.is_none_or(|r| r > 0);
        alive
            && self
                .methods
                .as_ref()
                .is_none_or(|m| m.iter().any(|x| x == method))
    }
}

impl Faults {
    /// Validates and adds a fault (`expire_tokens` is applied by the caller and not stored).
    pub fn add(&mut self, spec: FaultSpec, now_ms: i64) -> Result<Fault, String> {
        if spec.seconds.is_none() && spec.count.is_none() && spec.kind != FaultKind::ExpireTokens {
            return Err("give \"seconds\" (how long) and/or \"count\" (how many calls)".into());
        }
        if spec.seconds == Some(0) || spec.count == Some(0) {
            return Err("seconds and count must be positive".into());
        }
        let status = spec.status.unwrap_or(500);
        if !(500..=599).contains(&status) {
            return Err("status must be 500..=599".into());
        }
        let delay_s = spec.delay_s.unwrap_or(30);
        if delay_s == 0 || delay_s > 600 {
            return Err("delay_s must be 1..=600".into());
        }
        if let Some(sc) = &spec.sub_code
            && spec.kind == FaultKind::IspError
            && !sc.starts_with("isp.")
        {
            return Err("an isp_error sub_code starts with \"isp.\"".into());
        }
        self.next_id += 1;
        let seconds_ms = spec.seconds.map(crate::secs_ms);
        let fault = Fault {
            id: self.next_id,
            kind: spec.kind,
            until_ms: seconds_ms.map(|ms| now_ms.saturating_add(ms)),
            remaining: spec.count,
            methods: spec.methods.filter(|m| !m.is_empty()),
            delay_s,
            status,
            sub_code: spec.sub_code,
            announce_s: spec.announce_s,
        };
        if fault.kind != FaultKind::ExpireTokens {
            self.list.push(fault.clone());
        }
        Ok(fault)
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// The faults still active.
    pub fn active(&mut self, now_ms: i64) -> Vec<Fault> {
        self.prune(now_ms);
        self.list.clone()
    }

    fn prune(&mut self, now_ms: i64) {
        self.list
            .retain(|f| f.until_ms.is_none_or(|u| now_ms < u) && f.remaining.is_none_or(|r| r > 0));
    }

    fn take(&mut self, method: &str, now_ms: i64, kinds: &[FaultKind]) -> Option<Fault> {
        self.prune(now_ms);
        let f = self
            .list
            .iter_mut()
            .find(|f| kinds.contains(&f.kind) && f.matches(method, now_ms))?;
        if let Some(r) = f.remaining.as_mut() {
            *r -= 1;
        }
        Some(f.clone())
    }

    /// The transport fault for this call, if any (consumes one `count`).
    pub fn transport(&mut self, method: &str, now_ms: i64) -> Option<Transport> {
        use FaultKind::*;
        let f = self.take(method, now_ms, &[Outage, Http500, Slow, Reset])?;
        Some(match f.kind {
            Outage => Transport::Drop,
            Http500 => Transport::Status(f.status),
            Slow => Transport::Delay(f.delay_s),
            _ => Transport::ResetAfter,
        })
    }

    /// An injected ban for this call, if any.
    pub fn ban(&mut self, method: &str, now_ms: i64) -> Option<Ban> {
        let f = self.take(method, now_ms, &[FaultKind::Ban])?;
        let seconds = match (f.announce_s, f.until_ms) {
            (Some(s), _) => s,
            (None, Some(u)) => u64::try_from(u.saturating_sub(now_ms).saturating_add(999) / 1000)
                .unwrap_or(1)
                .max(1),
            // A count-only ban announces a short per-call ban.
            (None, None) => 1,
        };
        let default = if f.methods.is_some() {
            "accesscontrol.limited-by-api-access-count"
        } else {
            "accesscontrol.limited-by-app-access-count"
        };
        Some(Ban {
            seconds,
            sub_code: f.sub_code.unwrap_or_else(|| default.to_string()),
        })
    }

    /// An injected `isp.*` error for this call, if any.
    pub fn isp_error(&mut self, method: &str, now_ms: i64) -> Option<String> {
        let f = self.take(method, now_ms, &[FaultKind::IspError])?;
        Some(
            f.sub_code
                .unwrap_or_else(|| "isp.top-remote-service-unavailable".into()),
        )
    }
}

/// A token bucket per (app_key, method), the workspace's own (`firmware_bridge::pace`), over
/// the sandbox clock: `rate` calls per second, bursts of one second's worth (at least 1).
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<(String, String), TokenBucket<Duration>>,
}

impl RateLimiter {
    /// Takes one token, or returns how many whole seconds until one is available (≥ 1).
    pub fn check(
        &mut self,
        app_key: &str,
        method: &str,
        rate: Rate,
        now_ms: i64,
    ) -> Result<(), u64> {
        // The sandbox clock starts at the Unix epoch or later; a negative reading is the start.
        let now = Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
        let bucket = self
            .buckets
            .entry((app_key.to_string(), method.to_string()))
            .or_insert_with(|| TokenBucket::new(rate, now));
        bucket.try_take(now).map_err(|wait| {
            let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            whole.max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: FaultKind) -> FaultSpec {
        FaultSpec::new(kind)
    }

    #[test]
    fn any_length_or_count_is_taken_without_overflowing() {
        let mut f = Faults::default();
        for s in [
            u64::MAX,
            i64::MAX as u64,
            1 << 62,
            (i64::MAX / 1000) as u64 + 1,
        ] {
            let fault = f
                .add(
                    FaultSpec {
                        seconds: Some(s),
                        count: Some(u32::MAX),
                        ..spec(FaultKind::Ban)
                    },
                    1_795_924_800_000,
                )
                .unwrap();
            assert!(fault.until_ms.is_some_and(|u| u > 1_795_924_800_000), "{s}");
            let b = f.ban("m", 1_795_924_800_001).unwrap();
            assert!(b.seconds > 1_000_000_000, "{s}: {}", b.seconds);
            f.clear();
        }
        // A clock reading before the fault's start still gives a positive ban.
        f.add(
            FaultSpec {
                seconds: Some(u64::MAX),
                ..spec(FaultKind::Ban)
            },
            i64::MAX - 5,
        )
        .unwrap();
        assert!(f.ban("m", i64::MIN).is_some_and(|b| b.seconds >= 1));
    }

    #[test]
    fn a_ban_may_announce_any_number_of_seconds() {
        let mut f = Faults::default();
        f.add(
            FaultSpec {
                count: Some(1),
                announce_s: Some(u64::MAX),
                ..spec(FaultKind::Ban)
            },
            0,
        )
        .unwrap();
        assert_eq!(f.ban("m", 0).map(|b| b.seconds), Some(u64::MAX));
    }

    #[test]
    fn a_fault_needs_a_duration_or_a_count() {
        let mut f = Faults::default();
        assert!(f.add(spec(FaultKind::Outage), 0).is_err());
        assert!(f.add(spec(FaultKind::ExpireTokens), 0).is_ok());
        assert!(
            f.active(0).is_empty(),
            "expire_tokens is applied at once, not stored"
        );
    }

    #[test]
    fn timed_faults_end_on_the_sandbox_clock() {
        let mut f = Faults::default();
        f.add(
            FaultSpec {
                seconds: Some(5),
                ..spec(FaultKind::Outage)
            },
            0,
        )
        .unwrap();
        assert_eq!(f.transport("x", 4_999), Some(Transport::Drop));
        assert_eq!(f.transport("x", 5_000), None);
    }

    #[test]
    fn counted_faults_hit_only_the_named_methods_that_many_times() {
        let mut f = Faults::default();
        let s = FaultSpec {
            count: Some(1),
            methods: Some(vec!["taobao.logistics.offline.send".into()]),
            ..spec(FaultKind::Reset)
        };
        f.add(s, 0).unwrap();
        assert_eq!(f.transport("taobao.trade.fullinfo.get", 1), None);
        assert_eq!(
            f.transport("taobao.logistics.offline.send", 1),
            Some(Transport::ResetAfter)
        );
        assert_eq!(f.transport("taobao.logistics.offline.send", 2), None);
    }

    #[test]
    fn a_counted_fault_added_during_an_outage_is_met_once_the_outage_ends() {
        let mut f = Faults::default();
        f.add(
            FaultSpec {
                seconds: Some(5),
                ..spec(FaultKind::Outage)
            },
            0,
        )
        .unwrap();
        f.add(
            FaultSpec {
                count: Some(2),
                methods: Some(vec!["taobao.logistics.offline.send".into()]),
                ..spec(FaultKind::Reset)
            },
            0,
        )
        .unwrap();
        for t in 0..5 {
            assert_eq!(
                f.transport("taobao.logistics.offline.send", t * 1000),
                Some(Transport::Drop)
            );
        }
        for t in [5_000, 5_001] {
            assert_eq!(
                f.transport("taobao.logistics.offline.send", t),
                Some(Transport::ResetAfter)
            );
        }
        assert_eq!(f.transport("taobao.logistics.offline.send", 5_002), None);
    }

    #[test]
    fn bans_announce_the_seconds_left_and_their_scope() {
        let mut f = Faults::default();
        f.add(
            FaultSpec {
                seconds: Some(30),
                ..spec(FaultKind::Ban)
            },
            0,
        )
        .unwrap();
        let b = f.ban("m", 10_500).unwrap();
        assert_eq!(b.seconds, 20);
        assert_eq!(b.sub_code, "accesscontrol.limited-by-app-access-count");
        f.clear();
        let per_api = FaultSpec {
            seconds: Some(3),
            methods: Some(vec!["m".into()]),
            ..spec(FaultKind::Ban)
        };
        f.add(per_api, 0).unwrap();
        assert_eq!(
            f.ban("m", 0).unwrap().sub_code,
            "accesscontrol.limited-by-api-access-count"
        );
        assert_eq!(f.ban("other", 0), None);
    }

    #[test]
    fn the_token_bucket_allows_a_burst_then_announces_the_wait() {
        let mut r = RateLimiter::default();
        let two = Rate::per_second(2.0).unwrap();
        assert!(r.check("a", "m", two, 0).is_ok());
        assert!(r.check("a", "m", two, 0).is_ok());
        assert_eq!(r.check("a", "m", two, 0), Err(1));
        assert!(
            r.check("a", "other", two, 0).is_ok(),
            "buckets are per method"
        );
        assert!(r.check("a", "m", two, 500).is_ok(), "refills at the rate");
        let slow = Rate::per_second(0.1).unwrap();
        assert!(r.check("b", "m", slow, 0).is_ok());
        assert_eq!(
            r.check("b", "m", slow, 0),
            Err(10),
            "whole seconds, rounded up"
        );
    }
}
