//! Pacing: the one token bucket, the one backoff and the one way to turn a wait into a
//! deadline of the whole workspace.
//!
//! The node paces its Taobao calls and its outbox delivery with [`TokenBucket`], and retries
//! the outbox, the carrier sync and the link probe with [`Backoff`]; the bridge reconnects to
//! the broker and reopens serial ports with the same [`Backoff`]. Both are pure: no clock and no
//! random source of their own. The caller passes "now" (any instant type that subtracts to a
//! [`Duration`]: `std::time::Instant`, `tokio::time::Instant`, or a `Duration` since boot on a
//! microcontroller) and the random draw, so they build without `std` and are tested without
//! sleeping.
//!
//! What a rate of 0 means is decided once, here: nothing. A [`Rate`] is a positive, finite
//! number of tokens per second and cannot be built from anything else; "no limit" is the
//! absence of a rate (`Option<Rate>::None`), never a magic value.
//!
//! What a wait too long to represent means is decided here too: it saturates. A bucket's
//! wait and a backoff's delay saturate at [`Duration::MAX`], and [`deadline`] turns any wait
//! into an instant without overflowing (a ban of `u64::MAX` seconds ends in 30 years, not in
//! a panic).

mod backoff;
mod bucket;
mod deadline;

pub use backoff::{Backoff, Retries};
pub use bucket::{Rate, RateError, TokenBucket};
pub use deadline::{FAR, deadline};

use core::time::Duration;

/// `secs` as a `Duration`, saturating at [`Duration::MAX`] instead of panicking on a figure too
/// large to represent (a tiny rate's wait, a huge backoff ceiling); zero for NaN or a negative.
fn saturating_secs_f64(secs: f64) -> Duration {
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}
