//! The bounds of every numeric key, in one table: what `check-config` accepts is what `run`
//! can take.
//!
//! Each bound says why it is there (a figure the node cannot represent, memory a gateway does
//! not have, a limit of the platform or of systemd), and a refused value is reported with its
//! key, the value and the range: `store.group_commit_max_batch: 1000000000000 is out of range:
//! it must be from 1 to 65536`. The doc comment of each key (in `mod.rs`) and its comment in
//! `config/node.example.toml` state the same range in the same words ([`Bound::range`]); a test
//! reads both files and walks every numeric key of the default configuration, so a key added
//! without bounds, or documented with other ones, fails the build's tests.

use super::ByteSize;
use std::fmt;
use std::time::Duration;

/// A numeric value as the config file writes it.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub enum Num {
    /// A count.
    Int(u64),
    /// A rate or a fraction.
    Float(f64),
    /// A duration (`"500ms"`).
    Time(Duration),
    /// A byte size (`"64MiB"`).
    Bytes(u64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Num::Int(n) => write!(f, "{n}"),
            // `1e-300` rather than three hundred zeros; plain figures stay plain.
            Num::Float(x) if x != 0.0 && !(1e-4..1e15).contains(&x.abs()) => write!(f, "{x:e}"),
            Num::Float(x) => write!(f, "{x}"),
            Num::Time(d) => write!(f, "{}", Exact(d)),
            Num::Bytes(b) => write!(f, "{}", ByteSize(b)),
        }
    }
}

/// A duration in the largest unit that holds it exactly (`89d`, `100ms`), which is also how
/// the config file may write it; `humantime` would write 89 days as months and hours.
struct Exact(Duration);

impl fmt::Display for Exact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        const UNITS: [(&str, u128); 7] = [
            ("d", 86_400_000_000_000),
            ("h", 3_600_000_000_000),
            ("m", 60_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ];
        let (unit, size) = UNITS
            .iter()
            .find(|(_, size)| ns.is_multiple_of(*size))
            .copied()
            .unwrap_or(("ns", 1));
        write!(f, "{}{unit}", ns / size)
    }
}

/// The accepted range of one key.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// The dotted key (`"store.group_commit_max_batch"`).
    pub key: &'static str,
    /// The smallest value accepted.
    pub min: Num,
    /// The largest value accepted.
    pub max: Num,
    /// Whether 0 is accepted as well (it means "off" or "no cap" for this key).
    pub zero_means_off: bool,
}

impl Bound {
    /// The range in the words the docs use: `from 1 to 65536`, or `0 (off) or from 1MiB to
    /// 1TiB`.
    pub fn range(&self) -> String {
        let r = format!("from {} to {}", self.min, self.max);
        if self.zero_means_off {
            format!("0 (off) or {r}")
        } else {
            r
        }
    }

    /// Whether `v` is accepted.
    pub fn accepts(&self, v: Num) -> bool {
        let zero = matches!(v, Num::Int(0) | Num::Bytes(0) | Num::Time(Duration::ZERO))
            || matches!(v, Num::Float(x) if x == 0.0);
        (self.zero_means_off && zero) || (v >= self.min && v <= self.max)
    }
}

const fn ms(n: u64) -> Num {
    Num::Time(Duration::from_millis(n))
}

const fn secs(n: u64) -> Num {
    Num::Time(Duration::from_secs(n))
}

const fn mins(n: u64) -> Num {
    secs(n * 60)
}

const fn days(n: u64) -> Num {
    secs(n * 86_400)
}

const MIB: u64 = 1024 * 1024;

/// Every numeric key's bounds, in the order of the sections.
pub const BOUNDS: &[Bound] = &[
    // The page cache: at least what redb needs to work, at most what a gateway has.
    Bound {
        key: "store.cache_size",
        min: Num::Bytes(MIB),
        max: Num::Bytes(1024 * MIB),
        zero_means_off: false,
    },
    // The byte cap: a cap below 1 MiB refuses work at once; beyond 1 TiB no SD card has it.
    Bound {
        key: "store.max_bytes",
        min: Num::Bytes(MIB),
        max: Num::Bytes(1024 * 1024 * MIB),
        zero_means_off: true,
    },
    Bound {
        key: "store.cap_alert_thresholds",
        min: Num::Float(0.01),
        max: Num::Float(1.0),
        zero_means_off: false,
    },
    // Scanners wait for the commit before they beep.
    Bound {
        key: "store.group_commit_max_wait",
        min: ms(0),
        max: ms(100),
        zero_means_off: false,
    },
    // The writer holds a batch in memory; beyond 65,536 writes a commit gains nothing
    // (docs/BENCHMARKS.md) and a huge figure would be allocated up front.
    Bound {
        key: "store.group_commit_max_batch",
        min: Num::Int(1),
        max: Num::Int(65_536),
        zero_means_off: false,
    },
    Bound {
        key: "outbox.concurrency",
        min: Num::Int(1),
        max: Num::Int(64),
        zero_means_off: false,
    },
    // At least one op every 100 s; TOP allows nothing near 1,000 calls a second.
    Bound {
        key: "outbox.rate_per_second",
        min: Num::Float(0.01),
        max: Num::Float(1000.0),
        zero_means_off: false,
    },
    Bound {
        key: "outbox.burst",
        min: Num::Int(1),
        max: Num::Int(10_000),
        zero_means_off: false,
    },
    Bound {
        key: "outbox.backoff_initial",
        min: ms(100),
        max: secs(3600),
        zero_means_off: false,
    },
    // A retry at least every hour; the queue takes a due time more than a day ahead for a
    // clock that jumped back.
    Bound {
        key: "outbox.backoff_max",
        min: secs(1),
        max: secs(3600),
        zero_means_off: false,
    },
    // The node must stop within 5 s of SIGTERM.
    Bound {
        key: "outbox.shutdown_grace",
        min: ms(0),
        max: secs(4),
        zero_means_off: false,
    },
    Bound {
        key: "taobao.poll_interval",
        min: secs(1),
        max: secs(3600),
        zero_means_off: false,
    },
    Bound {
        key: "taobao.connect_timeout",
        min: ms(100),
        max: secs(60),
        zero_means_off: false,
    },
    Bound {
        key: "taobao.request_timeout",
        min: secs(1),
        max: secs(600),
        zero_means_off: false,
    },
    Bound {
        key: "taobao.daily_call_budget",
        min: Num::Int(1),
        max: Num::Int(1_000_000_000),
        zero_means_off: true,
    },
    // Taobao keeps three months of changes.
    Bound {
        key: "intake.lookback",
        min: mins(1),
        max: days(89),
        zero_means_off: false,
    },
    // Taobao records some changes a little late.
    Bound {
        key: "intake.overlap",
        min: mins(2),
        max: secs(3600),
        zero_means_off: false,
    },
    Bound {
        key: "intake.error_overlap",
        min: mins(2),
        max: days(1),
        zero_means_off: false,
    },
    // Taobao advises windows of at most 30 minutes.
    Bound {
        key: "intake.max_window",
        min: mins(1),
        max: mins(30),
        zero_means_off: false,
    },
    Bound {
        key: "intake.page_size",
        min: Num::Int(1),
        max: Num::Int(100),
        zero_means_off: false,
    },
    // Each re-scan costs calls of the daily budget.
    Bound {
        key: "intake.rescan_every",
        min: secs(3600),
        max: days(7),
        zero_means_off: false,
    },
    Bound {
        key: "intake.rescan_days",
        min: Num::Int(1),
        max: Num::Int(90),
        zero_means_off: false,
    },
    Bound {
        key: "intake.refresh_after",
        min: mins(1),
        max: days(30),
        zero_means_off: false,
    },
    Bound {
        key: "intake.lag_alert",
        min: secs(2),
        max: days(1),
        zero_means_off: false,
    },
    Bound {
        key: "intake.fullinfo_concurrency",
        min: Num::Int(1),
        max: Num::Int(16),
        zero_means_off: false,
    },
    // The seller flag colours.
    Bound {
        key: "intake.review_flags",
        min: Num::Int(1),
        max: Num::Int(5),
        zero_means_off: false,
    },
    Bound {
        key: "intake.default_promise",
        min: secs(3600),
        max: days(30),
        zero_means_off: false,
    },
    // Slow clients must not hold the ops server (`[http]`, docs/OPERATIONS.md).
    Bound {
        key: "http.header_read_timeout",
        min: ms(100),
        max: secs(60),
        zero_means_off: false,
    },
    Bound {
        key: "http.request_timeout",
        min: secs(1),
        max: secs(300),
        zero_means_off: false,
    },
    Bound {
        key: "http.idle_timeout",
        min: secs(1),
        max: secs(3600),
        zero_means_off: false,
    },
    Bound {
        key: "http.max_connections",
        min: Num::Int(1),
        max: Num::Int(4096),
        zero_means_off: false,
    },
    // How soon a dead broker connection is noticed: a few seconds at least (a busy Wi-Fi),
    // minutes at most (devices wait for the node's will meanwhile).
    Bound {
        key: "mqtt.keep_alive",
        min: secs(5),
        max: mins(10),
        zero_means_off: false,
    },
    Bound {
        key: "mqtt.reconnect_min",
        min: ms(10),
        max: mins(1),
        zero_means_off: false,
    },
    // One below reconnect_min is taken as reconnect_min.
    Bound {
        key: "mqtt.reconnect_max",
        min: ms(10),
        max: mins(60),
        zero_means_off: false,
    },
    // Devices and bridges re-send after long outages: a day at least.
    Bound {
        key: "floor.dedupe_retention",
        min: days(1),
        max: days(30),
        zero_means_off: false,
    },
    // A scan is about 300 bytes.
    Bound {
        key: "floor.max_event_bytes",
        min: Num::Bytes(1024),
        max: Num::Bytes(MIB),
        zero_means_off: false,
    },
    // A label printer answers in seconds; ten minutes covers a roll change.
    Bound {
        key: "floor.print_timeout",
        min: secs(5),
        max: mins(10),
        zero_means_off: false,
    },
    // A flapping alert is told again at most this often; a day is the longest that still
    // tells people it came back.
    Bound {
        key: "alerts.min_interval",
        min: ms(0),
        max: days(1),
        zero_means_off: false,
    },
    // DingTalk and WeCom robots take 20 a minute (checked besides, per webhook kind).
    Bound {
        key: "alerts.per_minute",
        min: Num::Int(1),
        max: Num::Int(60),
        zero_means_off: false,
    },
    // Resolved alerts kept for the status page and `alerts --history`; 0 keeps none.
    Bound {
        key: "alerts.history",
        min: Num::Int(0),
        max: Num::Int(10_000),
        zero_means_off: false,
    },
    Bound {
        key: "alerts.timeout",
        min: secs(1),
        max: secs(60),
        zero_means_off: false,
    },
    // Goods out. A warning more than a week ahead is noise; the critical one at least a minute
    // ahead so that someone can still act.
    Bound {
        key: "shipping.deadline_warning",
        min: mins(2),
        max: days(7),
        zero_means_off: false,
    },
    Bound {
        key: "shipping.deadline_critical",
        min: mins(1),
        max: days(1),
        zero_means_off: false,
    },
    // A waybill is kept for a reprint at least an hour; Cainiao voids unused numbers in weeks.
    Bound {
        key: "waybill.unused_after",
        min: secs(3600),
        max: days(30),
        zero_means_off: false,
    },
    // Below the shortest poll interval plus 10 s the lag never falls under it; an hour of
    // unseen sales is a real oversell risk.
    Bound {
        key: "stock.max_intake_lag",
        min: secs(11),
        max: secs(3600),
        zero_means_off: false,
    },
    // Each run costs calls of the daily budget.
    Bound {
        key: "reconcile.every",
        min: mins(5),
        max: days(1),
        zero_means_off: false,
    },
    Bound {
        key: "reconcile.stock_every",
        min: mins(5),
        max: days(7),
        zero_means_off: false,
    },
    Bound {
        key: "reconcile.stuck_after",
        min: mins(1),
        max: days(1),
        zero_means_off: false,
    },
    // TOP's trade search looks back 90 days at most.
    Bound {
        key: "reconcile.days",
        min: Num::Int(1),
        max: Num::Int(90),
        zero_means_off: false,
    },
    // A store migration on a slow card takes time; systemd's start timeout is extended by it.
    Bound {
        key: "ota.gate_timeout",
        min: secs(5),
        max: secs(1800),
        zero_means_off: false,
    },
    Bound {
        key: "ota.trial_attempts",
        min: Num::Int(1),
        max: Num::Int(10),
        zero_means_off: false,
    },
    Bound {
        key: "ota.stall_timeout",
        min: secs(1),
        max: secs(600),
        zero_means_off: false,
    },
    Bound {
        key: "ota.download_retries",
        min: Num::Int(0),
        max: Num::Int(100),
        zero_means_off: false,
    },
];

/// The bound of `key`, if it is a numeric key.
pub fn of(key: &str) -> Option<&'static Bound> {
    BOUNDS.iter().find(|b| b.key == key)
}

/// Reports `value` of `key` if it is out of the key's bounds. A key without bounds is a bug
/// caught by the tests; it is reported too, rather than let through.
pub(crate) fn check(bad: &mut dyn FnMut(&str, String), key: &str, value: Num) {
    match of(key) {
        Some(b) if b.accepts(value) => {}
        Some(b) => bad(
            key,
            format!("{value} is out of range: it must be {}", b.range()),
        ),
        None => bad(
            key,
            format!("{value}: no bounds are known for this key (a bug)"),
        ),
    }
}

/// A `usize` as a [`Num::Int`] (saturating on a platform where `usize` is wider).
pub(crate) fn count(n: usize) -> Num {
    Num::Int(u64::try_from(n).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_figures_print_readably() {
        assert_eq!(Num::Float(1e-300).to_string(), "1e-300");
        assert_eq!(Num::Float(f64::MAX).to_string(), "1.7976931348623157e308");
        assert_eq!(Num::Float(0.01).to_string(), "0.01");
        assert_eq!(Num::Float(5.0).to_string(), "5");
        assert_eq!(Num::Int(1_000_000_000_000).to_string(), "1000000000000");
        assert_eq!(Num::Bytes(MIB).to_string(), "1MiB");
        assert_eq!(ms(100).to_string(), "100ms");
        assert_eq!(secs(3600).to_string(), "1h");
        assert_eq!(days(89).to_string(), "89d");
        assert_eq!(ms(0).to_string(), "0s");
        assert_eq!(Num::Time(Duration::from_millis(1500)).to_string(), "1500ms");
        // What the docs write parses back to the same duration.
        for b in BOUNDS {
            for end in [b.min, b.max] {
                if let Num::Time(d) = end {
                    assert_eq!(
                        humantime::parse_duration(&end.to_string()),
                        Ok(d),
                        "{}",
                        b.key
                    );
                }
            }
        }
    }

    #[test]
    fn a_bound_takes_its_ends_and_zero_only_where_it_means_off() {
        let b = of("store.max_bytes").unwrap();
        assert!(b.accepts(Num::Bytes(0)));
        assert!(b.accepts(Num::Bytes(MIB)));
        assert!(!b.accepts(Num::Bytes(MIB - 1)));
        assert_eq!(b.range(), "0 (off) or from 1MiB to 1TiB");
        let c = of("outbox.rate_per_second").unwrap();
        for bad in [
            0.0,
            1e-300,
            f64::MIN_POSITIVE,
            1e300,
            f64::NAN,
            f64::INFINITY,
            -1.0,
        ] {
            assert!(!c.accepts(Num::Float(bad)), "{bad}");
        }
        assert!(c.accepts(Num::Float(0.01)) && c.accepts(Num::Float(1000.0)));
    }

    #[test]
    fn every_bound_is_ordered_and_of_one_kind() {
        for b in BOUNDS {
            assert!(b.min <= b.max, "{}", b.key);
            assert_eq!(
                std::mem::discriminant(&b.min),
                std::mem::discriminant(&b.max),
                "{}",
                b.key
            );
            assert_eq!(
                BOUNDS.iter().filter(|o| o.key == b.key).count(),
                1,
                "{}",
                b.key
            );
        }
    }
}
