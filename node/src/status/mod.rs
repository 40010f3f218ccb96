//! What each part of the node shows the operators, as types every layer can use: health
//! checks ([`health`]), status page sections ([`StatusSource`], [`Observation`],
//! [`StatusSection`]), the words in English and Chinese ([`i18n`]) and the warehouse's local
//! time ([`time`]).
//!
//! It sits at the bottom of the crate beside `alert`: the store, the outbox and the Taobao
//! client each report their own section and checks, so these types cannot live in `ops/`,
//! which sits above them. `ops` gathers the sections into one snapshot per request and
//! renders it (`ops::http`); it re-exports these modules under their old paths.

pub mod health;
pub mod i18n;
pub mod time;

use health::{CheckName, Status};
use i18n::{Lang, Msg};
use serde::Serialize;
use std::time::Duration;

/// A block of figures on the status page (e.g. "Queue": pending, dead letters, oldest age).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusSection {
    /// The heading.
    pub title: String,
    /// Label and value pairs, shown in order.
    pub rows: Vec<(String, String)>,
}

/// What one part of the node shows at one instant: its health checks and its section of the
/// status page, worked out from one reading of its state (so the two cannot disagree).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Checks to set now (the [`health::Health`] keeps since when, and logs changes).
    pub checks: Vec<(CheckName, Status, String)>,
    /// Its section, if it has one.
    pub section: Option<StatusSection>,
}

/// The instant a snapshot (`ops::http::Snapshot`) is taken, and how to show times in it.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    /// Unix ms.
    pub now_ms: u64,
    /// The warehouse's time zone.
    pub local: &'a time::LocalTime,
    /// The language of the sections' words (checks' messages stay English: module
    /// [`i18n`]).
    pub lang: Lang,
}

impl At<'_> {
    /// `2026-12-07 14:43:10 (3 min ago)`, in the warehouse's time.
    pub fn when(&self, ms: u64) -> String {
        self.lang.f(
            Msg::WhenAgo,
            &[
                &self.local.format(ms),
                &self.age(Duration::from_millis(self.now_ms.saturating_sub(ms))),
            ],
        )
    }

    /// The catalogue's text of `m`.
    pub fn t(&self, m: Msg) -> String {
        self.lang.t(m).to_owned()
    }

    /// The catalogue's text of `m` with its arguments.
    pub fn f(&self, m: Msg, args: &[&dyn std::fmt::Display]) -> String {
        self.lang.f(m, args)
    }

    /// A duration in the page's language.
    pub fn age(&self, d: Duration) -> String {
        self.lang.age(d)
    }
}

/// Something that contributes checks and a [`StatusSection`] to the node's snapshot. Called
/// on every request of `/`, `/healthz` and `/metrics` (and by its owner's own tick), so it
/// must be cheap and must not block (read cached figures, never wait for a lock held across
/// I/O).
pub trait StatusSource: Send + Sync + 'static {
    /// The part as of `at`.
    fn observe(&self, at: &At<'_>) -> Observation;
}

/// A byte count as people read it: `512 B`, `12.3 KiB`, `256 MiB`, `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {unit}")
    } else if v < 10.0 {
        format!("{v:.2} {unit}")
    } else if v < 100.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{v:.0} {unit}")
    }
}

/// A duration as people say it, in English: "45 s", "3 min", "2 h 5 min", "3 d 4 h"
/// ([`Lang::age`] in other languages).
pub fn age(d: std::time::Duration) -> String {
    Lang::En.age(d)
}
