//! Catches the OAuth redirect on a local port, for `wms-node auth login`.
//!
//! ```text
//! browser ── GET /callback?code=…&state=… ──► receive_redirect(listener, state, timeout)
//!         ◄── 200 "authorised, you can close this tab" ── Ok(code)
//! ```
//!
//! A minimal HTTP/1.1 responder: one request per connection, the request line and headers
//! only (bounded at 16 KiB), then `Connection: close`. Requests without `code` (a favicon, a
//! stale tab) and requests whose `state` does not match are answered and ignored, so only the
//! redirect of *this* login can complete it. `error=access_denied` ends the wait with
//! [`LoginError::Denied`]. The code is never logged.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;
/// How long one browser connection may take to send its request.
const PER_CONNECTION: Duration = Duration::from_secs(10);

/// Why no code arrived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Nothing usable arrived in time.
    #[error(
        "no authorisation arrived within {} s: open the URL in a browser that can reach this \
         machine's redirect address, or use `auth url` and `auth exchange CODE` instead",
        .0.as_secs()
    )]
    Timeout(Duration),
    /// The seller refused (or the platform answered an error).
    #[error("authorisation refused: {error} ({description})")]
    Denied {
        /// `error` (`access_denied`).
        error: String,
        /// `error_description`.
        description: String,
    },
    /// The listener failed.
    #[error("local redirect listener failed: {0}")]
    Io(String),
}

enum Verdict {
    Code(String),
    Denied(String, String),
    Ignore,
}

/// Waits on `listener` until the redirect carrying `state` arrives; returns its `code`.
pub async fn receive_redirect(
    listener: TcpListener,
    state: &str,
    timeout: Duration,
) -> Result<String, LoginError> {
    match tokio::time::timeout(timeout, accept_loop(&listener, state)).await {
        Ok(r) => r,
        Err(_) => Err(LoginError::Timeout(timeout)),
    }
}

async fn accept_loop(listener: &TcpListener, state: &str) -> Result<String, LoginError> {
    loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|e| LoginError::Io(e.to_string()))?;
        // A slow or silent connection must not block the real redirect.
        match tokio::time::timeout(PER_CONNECTION, handle(stream, state)).await {
            Ok(Some(Verdict::Code(code))) => return Ok(code),
            Ok(Some(Verdict::Denied(error, description))) => {
                return Err(LoginError::Denied { error, description });
            }
            Ok(Some(Verdict::Ignore)) | Ok(None) | Err(_) => {}
        }
    }
}

async fn handle(mut stream: TcpStream, state: &str) -> Option<Verdict> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_HEAD {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let target = head.lines().next()?.split_whitespace().nth(1)?.to_owned();
    let (verdict, status, page) = judge(&target, state);
    let body =
        format!("<!doctype html><meta charset=\"utf-8\"><title>wms-node</title><p>{page}</p>");
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
    Some(verdict)
}

/// Decides what a request target means, and what to answer.
fn judge(target: &str, state: &str) -> (Verdict, &'static str, &'static str) {
    let url = match reqwest::Url::parse(&format!("http://localhost{target}")) {
        Ok(u) => u,
        Err(_) => {
            return (
                Verdict::Ignore,
                "400 Bad Request",
                "Not an authorisation redirect.",
            );
        }
    };
    let get = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if get("state").as_deref() != Some(state) {
        if get("code").is_some() || get("error").is_some() {
            return (
                Verdict::Ignore,
                "400 Bad Request",
                "This authorisation belongs to another login attempt (state mismatch). Start \
                 again from the URL wms-node printed.",
            );
        }
        return (
            Verdict::Ignore,
            "404 Not Found",
            "Waiting for the Taobao authorisation redirect.",
        );
    }
    if let Some(error) = get("error") {
        let description = get("error_description").unwrap_or_default();
        return (
            Verdict::Denied(error, description),
            "200 OK",
            "Authorisation was refused. You can close this tab.",
        );
    }
    match get("code").filter(|c| !c.is_empty()) {
        Some(code) => (
            Verdict::Code(code),
            "200 OK",
            "wms-node is authorised for the shop. You can close this tab.",
        ),
        None => (
            Verdict::Ignore,
            "400 Bad Request",
            "The redirect carries no code.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_matching_state_yields_the_code() {
        assert!(matches!(judge("/cb?code=abc&state=s1", "s1").0, Verdict::Code(c) if c == "abc"));
        assert!(matches!(
            judge("/cb?code=abc&state=other", "s1").0,
            Verdict::Ignore
        ));
        assert!(matches!(judge("/cb?code=abc", "s1").0, Verdict::Ignore));
        assert!(matches!(judge("/favicon.ico", "s1").0, Verdict::Ignore));
        assert!(matches!(judge("/cb?state=s1", "s1").0, Verdict::Ignore));
    }

    #[test]
    fn a_refusal_with_the_matching_state_ends_the_wait() {
        match judge(
            "/cb?error=access_denied&error_description=authorize%20reject&state=s1",
            "s1",
        )
        .0
        {
            Verdict::Denied(e, d) => {
                assert_eq!(e, "access_denied");
                assert_eq!(d, "authorize reject");
            }
            _ => panic!("expected a refusal"),
        }
    }

    #[tokio::test]
    async fn nothing_arriving_is_a_clear_timeout() {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let r = receive_redirect(listener, "s", Duration::from_millis(50)).await;
        assert!(matches!(r, Err(LoginError::Timeout(_))));
        assert!(
            r.err()
                .is_some_and(|e| e.to_string().contains("auth exchange"))
        );
    }
}
