//! The one error type of the Taobao client, and its classification (TAOBAO.md §5).
//!
//! Callers never match on codes or strings: they ask [`TopError::disposition`], which follows
//! the retry table, and the outbox gets [`TopError::outcome`], its direct image.
//!
//! | reply                                                        | disposition               |
//! |--------------------------------------------------------------|---------------------------|
//! | transport failure, timeout, non-200, unparsable body         | retry                     |
//! | 7 App Call Limited (`This ban will last for N more seconds`) | ban for N s, per scope    |
//! | 4 / 5 / 6 (user, session, partner limits)                    | retry after a long pause  |
//! | 8, 10, 44                                                    | retry                     |
//! | 26 / 27 / 53                                                 | auth                      |
//! | any `isp.*` sub_code; `…-service-error:B150` / `:S01`        | retry                     |
//! | `isv.logistics-offline-service-error:B04` on a shipment      | already done              |
//! | 15 without an `isv.` sub_code                                | retry                     |
//! | 31 Invalid Timestamp                                         | retry (and a clock alert) |
//! | 25, 40, 41, `isv.*`, every other code                        | permanent                 |
//!
//! Error messages carry the method, codes and the platform's own text; never the session,
//! the secret, signatures or buyer data.

use crate::outbox::Outcome;
use std::time::Duration;

/// The method whose `B04` means "already shipped".
pub const OFFLINE_SEND: &str = "taobao.logistics.offline.send";

/// An error reply from the TOP gateway (`error_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The API that answered.
    pub method: String,
    /// Platform code (7, 15, 27, …).
    pub code: i64,
    /// Short message.
    pub msg: String,
    /// Fine-grained code (`isv.*`, `isp.*`, `accesscontrol.*`), if any.
    pub sub_code: Option<String>,
    /// Fine-grained message, if any.
    pub sub_msg: Option<String>,
    /// The gateway's request id, if any.
    pub request_id: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered code {} ({})",
            self.method, self.code, self.msg
        )?;
        if let Some(sc) = &self.sub_code {
            write!(f, ", sub_code {sc}")?;
        }
        if let Some(sm) = &self.sub_msg {
            write!(f, ": {sm}")?;
        }
        Ok(())
    }
}

/// What a code-7 ban covers (TAOBAO.md §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BanScope {
    /// The whole app (`limited-by-app-access-count`): every call waits.
    App,
    /// One API (per-API and per-app-per-API flow control).
    Method(String),
}

impl std::fmt::Display for BanScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanScope::App => f.write_str("app"),
            BanScope::Method(m) => f.write_str(m),
        }
    }
}

/// What the caller should do about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Try again; `after` is the platform's own hint, else use backoff with jitter.
    Retry {
        /// Minimum wait before the next attempt, when known.
        after: Option<Duration>,
    },
    /// Credentials missing, expired or revoked: pause and re-authorise.
    Auth,
    /// Will never succeed as is: dead-letter and alert.
    Permanent,
    /// The platform says the effect already happened (B04 on a shipment).
    AlreadyDone,
}

/// Every way a TOP call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TopError {
    /// Connecting, sending or reading failed (no reply at all). Retry.
    #[error("{method}: transport failure: {detail}")]
    Transport {
        /// The API called.
        method: String,
        /// What failed, without the URL (it holds the session and the signature).
        detail: String,
        /// Whether the request may have reached the platform (anything but a refused or
        /// failed connect): then its effect is unknown, see [`TopError::may_have_applied`].
        sent: bool,
    },
    /// The connect or the whole-request timeout expired. Retry.
    #[error("{method}: timed out")]
    Timeout {
        /// The API called.
        method: String,
    },
    /// The gateway answered with an HTTP status other than 200. Retry.
    #[error("{method}: HTTP {status}")]
    Http {
        /// The API called.
        method: String,
        /// The status code.
        status: u16,
    },
    /// The body was not the JSON we expect. Retry (the gateway does this under load).
    #[error("{method}: unreadable reply: {detail}")]
    Decode {
        /// The API called.
        method: String,
        /// The decoder's complaint (field names, never values of receiver fields).
        detail: String,
    },
    /// The gateway answered with `error_response`; classified by code and sub_code.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// A code-7 ban is still running locally: the call was not sent. Retry after `remaining`.
    #[error("{method}: not sent, {scope} is banned for {}s more", remaining.as_secs())]
    Banned {
        /// The API not called.
        method: String,
        /// The ban's scope.
        scope: BanScope,
        /// Time left.
        remaining: Duration,
    },
    /// No usable session: never authorised, expired and not refreshable, or refresh refused.
    /// Re-authorise (`wms-node auth login`).
    #[error("no usable Taobao session: {reason}")]
    NoSession {
        /// Why (no token values).
        reason: String,
    },
    /// The request was refused locally before sending (e.g. more than 20 SKUs). Fix the caller.
    #[error("{method}: invalid request: {reason}")]
    InvalidRequest {
        /// The API not called.
        method: String,
        /// What is wrong.
        reason: String,
    },
    /// The local token store failed; the session could not be read or saved. What to do
    /// follows the store's own classification, kept in `retryable`: a busy store, a full
    /// disk or a passing I/O error is retried with backoff; a corrupt record or a closed or
    /// broken store cannot get better by retrying, so delivery pauses as for a lost
    /// authorisation (nothing is dropped) and re-authorising writes a fresh record.
    #[error("token store: {reason}")]
    TokenStore {
        /// What the store said (never a token).
        reason: String,
        /// Whether the store says trying again later may succeed.
        retryable: bool,
    },
    /// Not sent: the day's call budget is nearly used up and this kind of call waits for the
    /// next day, so that the calls left go to more urgent work (TAOBAO.md §7). Retry then.
    #[error("{method}: not sent, the daily call budget is kept for {kept_for} (resumes in {}s)", resume_in.as_secs())]
    OverBudget {
        /// The API not called.
        method: String,
        /// Which calls the rest of the budget is kept for.
        kept_for: &'static str,
        /// Until the budget's day ends (GMT+8 midnight).
        resume_in: Duration,
    },
}

/// The retryable `isv.*` sub-codes ERPs retry (TAOBAO.md §5.3).
const RETRYABLE_ISV: [&str; 4] = [
    "isv.logistics-offline-service-error:B150",
    "isv.logistics-offline-service-error:S01",
    "isv.logistics-online-service-error:B150",
    "isv.logistics-online-service-error:S01",
];

/// The longest ban the node honours. The platform's longest quota window is a day (the
/// longest ban seen is 8.6 h, TAOBAO.md §7); a longer announcement, or a number too large to
/// read, is taken as a day, so a garbled reply can neither panic the node nor stop it for
/// good. A ban that really lasts longer is announced again when the next call is refused.
pub const MAX_BAN: Duration = Duration::from_secs(24 * 3600);

/// Reads `This ban will last for N more seconds` (TAOBAO.md §5.2) without a regex. A number
/// too large for a `u64` saturates (it still says "a very long time").
pub fn ban_seconds(sub_msg: &str) -> Option<u64> {
    const NEEDLE: &str = "This ban will last for ";
    let start = sub_msg.find(NEEDLE)? + NEEDLE.len();
    let rest = &sub_msg[start..];
    let digits: &str = &rest[..rest.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() || !rest[digits.len()..].starts_with(" more second") {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

impl ApiError {
    /// Whether this is a rate-limit reply (code 7, or the `*access-limited*` sub-codes).
    pub fn is_rate_limit(&self) -> bool {
        self.code == 7
            || self.sub_code.as_deref().is_some_and(|s| {
                s.starts_with("accesscontrol.") || s.starts_with("isv.access-limited-by-")
            })
    }

    /// For a rate-limit reply: what it bans and for how long (if `sub_msg` says), at most
    /// [`MAX_BAN`].
    pub fn ban(&self) -> Option<(BanScope, Option<Duration>)> {
        if !self.is_rate_limit() {
            return None;
        }
        let sub = self.sub_code.as_deref().unwrap_or("");
        let scope = if sub.ends_with("limited-by-app-access-count") {
            BanScope::App
        } else {
            BanScope::Method(self.method.clone())
        };
        let secs = self.sub_msg.as_deref().and_then(ban_seconds);
        Some((scope, secs.map(|s| Duration::from_secs(s).min(MAX_BAN))))
    }

    /// The classification of TAOBAO.md §5 (see the module table).
    pub fn disposition(&self) -> Disposition {
        if let Some((_, after)) = self.ban() {
            // No parsable length: retry with backoff from 1 s (the loop's own backoff).
            return Disposition::Retry { after };
        }
        let sub = self.sub_code.as_deref().unwrap_or("");
        match self.code {
            26 | 27 | 53 => return Disposition::Auth,
            _ => {}
        }
        if sub.starts_with("isp.") || RETRYABLE_ISV.contains(&sub) {
            return Disposition::Retry { after: None };
        }
        if self.method == OFFLINE_SEND && sub.ends_with("-service-error:B04") {
            return Disposition::AlreadyDone;
        }
        match self.code {
            // User / session / partner call limits: long backoff.
            4..=6 => Disposition::Retry {
                after: Some(Duration::from_secs(60)),
            },
            8 | 10 | 44 => Disposition::Retry { after: None },
            // Checking the clock is the operator's job (the client raises an alert); one
            // more try after backoff costs nothing.
            31 => Disposition::Retry { after: None },
            15 if !sub.starts_with("isv.") => Disposition::Retry { after: None },
            _ => Disposition::Permanent,
        }
    }
}

impl TopError {
    /// The classification every loop decides by.
    pub fn disposition(&self) -> Disposition {
        match self {
            TopError::Transport { .. }
            | TopError::Timeout { .. }
            | TopError::Http { .. }
            | TopError::Decode { .. }
            | TopError::TokenStore {
                retryable: true, ..
            } => Disposition::Retry { after: None },
            TopError::TokenStore {
                retryable: false, ..
            } => Disposition::Auth,
            TopError::Banned { remaining, .. } => Disposition::Retry {
                after: Some(*remaining),
            },
            TopError::Api(e) => e.disposition(),
            TopError::NoSession { .. } => Disposition::Auth,
            TopError::InvalidRequest { .. } => Disposition::Permanent,
            TopError::OverBudget { resume_in, .. } => Disposition::Retry {
                after: Some(*resume_in),
            },
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.disposition(), Disposition::Retry { .. })
    }

    /// Whether the call may have taken effect although no answer arrived: a timeout, a
    /// connection lost after sending, a front-end 5xx, an unreadable body. For a call that is
    /// not idempotent (an incremental stock update) the caller must find out before sending
    /// it again. An error reply, a refused connection or a call not sent at all (ban, budget,
    /// no session, invalid request) took no effect.
    pub fn may_have_applied(&self) -> bool {
        match self {
            TopError::Transport { sent, .. } => *sent,
            TopError::Timeout { .. } | TopError::Http { .. } | TopError::Decode { .. } => true,
            TopError::Api(_)
            | TopError::Banned { .. }
            | TopError::NoSession { .. }
            | TopError::InvalidRequest { .. }
            | TopError::TokenStore { .. }
            | TopError::OverBudget { .. } => false,
        }
    }

    /// The platform's reply, if this is one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            TopError::Api(e) => Some(&**e),
            _ => None,
        }
    }

    /// The platform code for metrics and logs: the TOP code, or a word for local failures.
    pub fn code_label(&self) -> String {
        match self {
            TopError::Transport { .. } => "transport".into(),
            TopError::Timeout { .. } => "timeout".into(),
            TopError::Http { status, .. } => format!("http_{status}"),
            TopError::Decode { .. } => "decode".into(),
            TopError::Api(e) => e.code.to_string(),
            TopError::Banned { .. } => "banned".into(),
            TopError::NoSession { .. } => "no_session".into(),
            TopError::InvalidRequest { .. } => "invalid_request".into(),
            TopError::OverBudget { .. } => "over_budget".into(),
            TopError::TokenStore { .. } => "token_store".into(),
        }
    }

    /// The outbox's view of this failure.
    pub fn outcome(&self) -> Outcome {
        let reason = self.to_string();
        match self.disposition() {
            Disposition::Retry { after } => Outcome::Retry { after, reason },
            Disposition::Auth => Outcome::Auth { reason },
            Disposition::Permanent => Outcome::Permanent { reason },
            Disposition::AlreadyDone => Outcome::AlreadyDone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(method: &str, code: i64, sub_code: Option<&str>, sub_msg: Option<&str>) -> ApiError {
        ApiError {
            method: method.to_owned(),
            code,
            msg: "m".to_owned(),
            sub_code: sub_code.map(str::to_owned),
            sub_msg: sub_msg.map(str::to_owned),
            request_id: None,
        }
    }

    const INC: &str = "taobao.trades.sold.increment.get";

    #[test]
    fn ban_seconds_are_read_from_the_real_messages() {
        assert_eq!(
            ban_seconds("This ban will last for 31062 more seconds"),
            Some(31_062)
        );
        assert_eq!(ban_seconds("This ban will last for 1 more second"), Some(1));
        assert_eq!(ban_seconds("This ban will last for more seconds"), None);
        assert_eq!(ban_seconds("This ban will last for 12x more seconds"), None);
        assert_eq!(ban_seconds("nothing here"), None);
        assert_eq!(
            ban_seconds("This ban will last for 99999999999999999999999 more seconds"),
            Some(u64::MAX)
        );
    }

    #[test]
    fn a_ban_longer_than_a_day_or_beyond_any_integer_is_a_day() {
        for n in [
            "86401".to_owned(),
            u64::MAX.to_string(),
            "99999999999999999999999999999999".to_owned(),
        ] {
            let e = api(
                INC,
                7,
                Some("accesscontrol.limited-by-app-access-count"),
                Some(&format!("This ban will last for {n} more seconds")),
            );
            assert_eq!(e.ban(), Some((BanScope::App, Some(MAX_BAN))), "{n}");
            assert_eq!(
                e.disposition(),
                Disposition::Retry {
                    after: Some(MAX_BAN)
                }
            );
        }
    }

    #[test]
    fn an_app_wide_ban_covers_the_app_with_its_seconds() {
        let e = api(
            INC,
            7,
            Some("accesscontrol.limited-by-app-access-count"),
            Some("This ban will last for 31062 more seconds"),
        );
        assert_eq!(
            e.ban(),
            Some((BanScope::App, Some(Duration::from_secs(31_062))))
        );
        assert_eq!(
            e.disposition(),
            Disposition::Retry {
                after: Some(Duration::from_secs(31_062))
            }
        );
    }

    #[test]
    fn a_per_api_ban_covers_only_that_method() {
        let e = api(
            INC,
            7,
            Some("accesscontrol.limited-by-app-api-access-count"),
            Some("This ban will last for 2 more seconds"),
        );
        assert_eq!(
            e.ban(),
            Some((BanScope::Method(INC.into()), Some(Duration::from_secs(2))))
        );
        let legacy = api(INC, 7, Some("isv.access-limited-by-api-access-count"), None);
        assert_eq!(legacy.ban(), Some((BanScope::Method(INC.into()), None)));
        assert_eq!(legacy.disposition(), Disposition::Retry { after: None });
    }

    #[test]
    fn session_errors_are_auth() {
        for code in [26, 27, 53] {
            assert_eq!(
                api(INC, code, None, None).disposition(),
                Disposition::Auth,
                "{code}"
            );
        }
        let e = api(INC, 27, Some("sessionkey-not-generated-by-server"), None);
        assert_eq!(
            TopError::Api(Box::new(e)).outcome(),
            Outcome::Auth {
                reason: format!(
                    "{INC} answered code 27 (m), sub_code sessionkey-not-generated-by-server"
                )
            }
        );
    }

    #[test]
    fn isp_sub_codes_and_the_listed_isv_ones_are_retried() {
        for sub in [
            "isp.top-remote-connection-timeout",
            "isp.unknown-error",
            "isp.item-update-service-error:IC_SYSTEM_NOT_READY_TRY_AGAIN_LATER",
            "isv.logistics-offline-service-error:B150",
            "isv.logistics-offline-service-error:S01",
        ] {
            assert_eq!(
                api(OFFLINE_SEND, 15, Some(sub), None).disposition(),
                Disposition::Retry { after: None },
                "{sub}"
            );
        }
    }

    #[test]
    fn caller_errors_are_permanent() {
        for (code, sub) in [
            (25, None),
            (40, Some("isv.missing-parameter:tid")),
            (41, Some("isv.invalid-parameter:tid")),
            (15, Some("isv.item-not-exist:invalid-numIid-or-iid")),
            (15, Some("isv.logistics-offline-service-error:B60")),
            (11, Some("isv.permission-api-package-limit")),
            (22, None),
            (29, None),
            (33, None),
            (999, None),
        ] {
            assert_eq!(
                api(OFFLINE_SEND, code, sub, None).disposition(),
                Disposition::Permanent,
                "{code} {sub:?}"
            );
        }
    }

    #[test]
    fn b04_is_already_done_only_for_a_shipment() {
        let sub = Some("isv.logistics-offline-service-error:B04");
        assert_eq!(
            api(OFFLINE_SEND, 15, sub, None).disposition(),
            Disposition::AlreadyDone
        );
        assert_eq!(
            TopError::Api(Box::new(api(OFFLINE_SEND, 15, sub, None))).outcome(),
            Outcome::AlreadyDone
        );
        assert_eq!(
            api(INC, 15, sub, None).disposition(),
            Disposition::Permanent
        );
    }

    #[test]
    fn platform_side_and_transport_failures_are_retried() {
        assert_eq!(
            api(INC, 15, None, None).disposition(),
            Disposition::Retry { after: None }
        );
        assert_eq!(
            api(INC, 10, None, None).disposition(),
            Disposition::Retry { after: None }
        );
        assert_eq!(
            api(INC, 31, None, None).disposition(),
            Disposition::Retry { after: None }
        );
        assert_eq!(
            api(INC, 5, None, None).disposition(),
            Disposition::Retry {
                after: Some(Duration::from_secs(60))
            }
        );
        let m = || INC.to_owned();
        for e in [
            TopError::Transport {
                method: m(),
                detail: "reset".into(),
                sent: true,
            },
            TopError::Timeout { method: m() },
            TopError::Http {
                method: m(),
                status: 502,
            },
            TopError::Decode {
                method: m(),
                detail: "eof".into(),
            },
        ] {
            assert!(e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn local_failures_map_onto_outbox_outcomes() {
        let banned = TopError::Banned {
            method: INC.into(),
            scope: BanScope::App,
            remaining: Duration::from_secs(9),
        };
        assert!(matches!(
            banned.outcome(),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(9)
        ));
        assert!(matches!(
            TopError::NoSession {
                reason: "never authorised".into()
            }
            .outcome(),
            Outcome::Auth { .. }
        ));
        assert!(matches!(
            TopError::InvalidRequest {
                method: INC.into(),
                reason: "21 SKUs".into()
            }
            .outcome(),
            Outcome::Permanent { .. }
        ));
    }
}
