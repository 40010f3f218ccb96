//! Downloads an artifact into a partial file that survives restarts, resuming with HTTP
//! `Range` after every interruption.
//!
//! ```text
//!  part file has N bytes ─▶ GET (Range: bytes=N-) ─▶ 206 from N: append ─┐
//!        ▲                     │ 200: the server ignored Range, start over│
//!        │                     │ 416 with N = size: complete              │
//!        └── stall (no byte for stall_timeout), reset, 5xx: backoff ◀─────┘
//!  gives up after `retries` attempts in a row that brought no new byte: OtaError::GaveUp
//! ```
//!
//! Never more than the manifest's size is written (a longer body is a wrong size), and
//! every read has a deadline, so a download either finishes, or fails and says so: it never
//! hangs silently (Mender's did, mender PR #1988). The size and hash are checked by the
//! caller on the finished file.

use super::OtaError;
use super::error::display_url;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

/// How the download behaves.
#[derive(Debug, Clone)]
pub struct Policy {
    /// No byte for this long ends the attempt (and the next one resumes).
    pub stall_timeout: Duration,
    /// Attempts in a row without a new byte before giving up.
    pub retries: u32,
    /// The first pause between attempts; doubles up to `max_backoff`.
    pub backoff: Duration,
    /// The longest pause between attempts.
    pub max_backoff: Duration,
}

/// What the download reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Bytes on disk so far (`resumed` the first time when a partial file was there).
    Bytes {
        /// Bytes on disk.
        done: u64,
        /// The expected size.
        total: u64,
    },
    /// An attempt failed; the next one starts after `after`.
    Retrying {
        /// Attempts in a row without progress so far.
        attempt: u32,
        /// The pause before the next one.
        after: Duration,
        /// Why the last one ended.
        error: String,
    },
}

/// Why one attempt ended early.
struct AttemptError {
    reason: String,
    retryable: bool,
}

impl AttemptError {
    fn retry(reason: impl Into<String>) -> Self {
        AttemptError {
            reason: reason.into(),
            retryable: true,
        }
    }
}

/// Downloads `url` into `part` until it has `size` bytes. Resumes whatever `part` holds.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    size: u64,
    part: &Path,
    policy: &Policy,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), OtaError> {
    let shown = display_url(url);
    let mut fruitless = 0u32;
    // The most bytes ever on disk: only going beyond it is progress (an attempt that starts
    // over and gets as far as before has not helped).
    let mut best = 0u64;
    loop {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(part)
            .await
            .map_err(|e| OtaError::io("cannot open", part, e))?;
        let mut have = file
            .metadata()
            .await
            .map_err(|e| OtaError::io("cannot read", part, e))?
            .len();
        if have > size {
            // Not from this manifest's artifact (or damaged): start over.
            file.set_len(0)
                .await
                .map_err(|e| OtaError::io("cannot truncate", part, e))?;
            have = 0;
        }
        progress(Progress::Bytes {
            done: have,
            total: size,
        });
        if have == size {
            return Ok(());
        }
        let result = attempt(
            client, url, size, part, &mut file, &mut have, policy, progress,
        )
        .await;
        // What arrived is kept for the next attempt (or the next apply, after a restart).
        file.sync_data()
            .await
            .map_err(|e| OtaError::io("cannot fsync", part, e))?;
        let e = match result {
            Ok(()) if have == size => return Ok(()),
            Ok(()) => {
                AttemptError::retry(format!("the connection closed at {have} of {size} bytes"))
            }
            Err(Err(fatal)) => return Err(fatal),
            Err(Ok(e)) => e,
        };
        if !e.retryable {
            return Err(OtaError::Download {
                url: shown,
                reason: e.reason,
                retryable: false,
            });
        }
        if have > best {
            best = have;
            fruitless = 0;
        }
        fruitless += 1;
        if fruitless > policy.retries {
            return Err(OtaError::GaveUp {
                attempts: fruitless,
                done: have,
                total: size,
                last: e.reason,
            });
        }
        let after = backoff(policy, fruitless);
        tracing::warn!(url = %shown, done = have, total = size, error = %e.reason, "download interrupted; resuming in {after:?}");
        progress(Progress::Retrying {
            attempt: fruitless,
            after,
            error: e.reason,
        });
        tokio::time::sleep(after).await;
    }
}

fn backoff(policy: &Policy, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    policy
        .backoff
        .saturating_mul(factor)
        .min(policy.max_backoff)
}

/// One GET. `Err(Ok(_))`: the attempt ended and another may follow; `Err(Err(_))`: the
/// download must stop (local I/O, or more bytes than the manifest's size).
#[allow(clippy::too_many_arguments)]
async fn attempt(
    client: &reqwest::Client,
    url: &str,
    size: u64,
    part: &Path,
    file: &mut tokio::fs::File,
    have: &mut u64,
    policy: &Policy,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), Result<AttemptError, OtaError>> {
    let mut req = client.get(url);
    if *have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = match tokio::time::timeout(policy.stall_timeout, req.send()).await {
        Err(_) => {
            return Err(Ok(AttemptError::retry(format!(
                "no answer within {:?}",
                policy.stall_timeout
            ))));
        }
        Ok(Err(e)) => return Err(Ok(AttemptError::retry(describe(&e)))),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    let range = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The server's own word on the whole file's size, where it gives one.
    let server_total = match status.as_u16() {
        200 => resp.content_length(),
        206 | 416 => range.as_deref().and_then(content_range_total),
        _ => None,
    };
    if let Some(total) = server_total.filter(|t| *t != size) {
        return Err(Err(OtaError::WrongSize {
            expected: size,
            got: total,
        }));
    }
    match status.as_u16() {
        206 => {
            let start = range.as_deref().and_then(content_range_start);
            if start != Some(*have) {
                // A range we did not ask for: start over rather than splice wrong bytes.
                truncate(file, part, have).await.map_err(Err)?;
                return Err(Ok(AttemptError::retry(
                    "the server answered another range than asked; starting over",
                )));
            }
        }
        200 => {
            if *have > 0 {
                tracing::info!(
                    "the server does not resume (200 to a Range request); starting over"
                );
                truncate(file, part, have).await.map_err(Err)?;
            }
        }
        416 if *have == size => return Ok(()),
        416 => {
            truncate(file, part, have).await.map_err(Err)?;
            return Err(Ok(AttemptError::retry(
                "416 Range Not Satisfiable; starting over",
            )));
        }
        408 | 425 | 429 | 500..=599 => {
            return Err(Ok(AttemptError::retry(format!("HTTP {status}"))));
        }
        _ => {
            return Err(Ok(AttemptError {
                reason: format!("HTTP {status}"),
                retryable: false,
            }));
        }
    }
    if let Some(len) = resp.content_length()
        && have.saturating_add(len) > size
    {
        return Err(Err(OtaError::WrongSize {
            expected: size,
            got: have.saturating_add(len),
        }));
    }
    let mut resp = resp;
    let mut unsynced = 0u64;
    loop {
        let chunk = match tokio::time::timeout(policy.stall_timeout, resp.chunk()).await {
            Err(_) => {
                return Err(Ok(AttemptError::retry(format!(
                    "no data for {:?}",
                    policy.stall_timeout
                ))));
            }
            Ok(Err(e)) => return Err(Ok(AttemptError::retry(describe(&e)))),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(c))) => c,
        };
        let len = chunk.len() as u64;
        if have.saturating_add(len) > size {
            return Err(Err(OtaError::WrongSize {
                expected: size,
                got: have.saturating_add(len),
            }));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Err(OtaError::io("cannot write", part, e)))?;
        *have += len;
        unsynced += len;
        if unsynced >= 4 * 1024 * 1024 {
            // Bounds what a power cut can take back from a long download.
            file.sync_data()
                .await
                .map_err(|e| Err(OtaError::io("cannot fsync", part, e)))?;
            unsynced = 0;
        }
        progress(Progress::Bytes {
            done: *have,
            total: size,
        });
    }
}

async fn truncate(file: &mut tokio::fs::File, part: &Path, have: &mut u64) -> Result<(), OtaError> {
    file.set_len(0)
        .await
        .map_err(|e| OtaError::io("cannot truncate", part, e))?;
    *have = 0;
    Ok(())
}

/// `bytes 100-199/200` → 100.
fn content_range_start(v: &str) -> Option<u64> {
    let range = v.strip_prefix("bytes ")?;
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

/// `bytes 100-199/200` or `bytes */200` → 200.
fn content_range_total(v: &str) -> Option<u64> {
    v.rsplit_once('/')?.1.trim().parse().ok()
}

/// A reqwest error without its URL (which may carry a token in its query).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "the connection broke"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(content_range_total("bytes 100-199/200"), Some(200));
        assert_eq!(content_range_total("bytes */200"), Some(200));
        assert_eq!(content_range_total("bytes 0-1/*"), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = Policy {
            stall_timeout: Duration::from_secs(1),
            retries: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        assert_eq!(backoff(&p, 1), Duration::from_millis(100));
        assert_eq!(backoff(&p, 2), Duration::from_millis(200));
        assert_eq!(backoff(&p, 3), Duration::from_millis(350));
        assert_eq!(backoff(&p, 40), Duration::from_millis(350));
    }
}
