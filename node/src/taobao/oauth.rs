//! OAuth 2.0 against `oauth.taobao.com` (TAOBAO.md §4): the authorize URL, the code
//! exchange and the refresh grant. The session sent with every TOP call is the access token.
//!
//! ```text
//! authorize_url(state) ──► seller approves in a browser ──► redirect_uri?code=…&state=…
//! exchange(code)       ──► POST <oauth_url>/token grant_type=authorization_code ──► TokenSet
//! refresh(rt)          ──► POST <oauth_url>/token grant_type=refresh_token      ──► TokenSet
//! ```
//!
//! The token endpoint answers a bare JSON object (HTTP 200), or HTTP 400 with
//! `{"error":…,"error_description":…}` for any refused grant. Numbers may arrive as strings
//! and `taobao_user_nick` is URL-encoded UTF-8; both are decoded leniently.
//!
//! Only apps sold on the service market can refresh: `re_expires_in = 0` means the token
//! cannot be refreshed and the seller must authorise again when it expires.
//!
//! Must never log or put in an error: the app secret, codes, access or refresh tokens.

use super::client::{BuildError, error_chain, http_client, read_capped};
use super::decode;
use crate::secret::Secret;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::time::Duration;

/// Production OAuth base URL (`/authorize` and `/token` below it).
pub const PRODUCTION_OAUTH_URL: &str = "https://oauth.taobao.com";

/// What the OAuth client needs; the lead maps `[taobao] oauth_url app_key app_secret
/// redirect_uri connect_timeout request_timeout` onto it.
#[derive(Debug, Clone)]
pub struct OAuthOptions {
    /// Base URL, e.g. `https://oauth.taobao.com` or the sandbox's `…/oauth`.
    pub oauth_url: String,
    /// The app key (`client_id`).
    pub app_key: String,
    /// The app secret (`client_secret`).
    pub app_secret: Secret,
    /// The callback registered for the app.
    pub redirect_uri: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Where "now" comes from (token issue times).
    pub clock: super::time::Clock,
}

impl OAuthOptions {
    /// Options with 10 s connect and 30 s request timeouts and the system clock.
    pub fn new(
        oauth_url: impl Into<String>,
        app_key: impl Into<String>,
        app_secret: Secret,
        redirect_uri: impl Into<String>,
    ) -> Self {
        OAuthOptions {
            oauth_url: oauth_url.into(),
            app_key: app_key.into(),
            app_secret,
            redirect_uri: redirect_uri.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            clock: super::time::Clock::system(),
        }
    }
}

/// A refused or failed grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// HTTP 400: the platform refused the grant (bad, used or expired code; bad secret; bad
    /// or expired refresh token). Do not retry: authorise again.
    #[error("Taobao refused the grant ({error}): {description}")]
    Refused {
        /// The `error` value (`invalid_client` in every capture).
        error: String,
        /// The platform's explanation.
        description: String,
    },
    /// No refresh token, or it has expired (`re_expires_in` was 0 or has run out).
    #[error("the token cannot be refreshed: {0}")]
    NotRefreshable(String),
    /// Connecting or reading failed. Retry.
    #[error("OAuth request failed: {0}")]
    Transport(String),
    /// A status other than 200 or 400. Retry.
    #[error("OAuth endpoint answered HTTP {0}")]
    Http(u16),
    /// The reply was not a token. Retry (and report if it persists).
    #[error("OAuth reply unreadable: {0}")]
    Decode(String),
}

impl OAuthError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            OAuthError::Transport(_) | OAuthError::Http(_) | OAuthError::Decode(_)
        )
    }
}

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TokenOrigin {
    /// The OAuth code flow (or a refresh of it).
    OAuth,
    /// `taobao.session` in the config (a self-use app's pre-issued session).
    Config,
}

/// The seller's authorisation: what is persisted in the `tokens` table.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSet {
    /// The session.
    pub access_token: Secret,
    /// The refresh token; `None` when the app cannot refresh.
    pub refresh_token: Option<Secret>,
    /// When it was issued (our clock).
    pub issued_at: DateTime<Utc>,
    /// When the access token expires; `None` if unknown (a pre-issued session).
    pub expires_at: Option<DateTime<Utc>>,
    /// When the refresh token expires; `None` when there is none.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The seller's id (`taobao_user_id`).
    pub user_id: Option<String>,
    /// The seller's nick (decoded).
    pub user_nick: Option<String>,
    /// Where it came from.
    pub origin: TokenOrigin,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("user_id", &self.user_id)
            .field("user_nick", &self.user_nick)
            .field("origin", &self.origin)
            .finish()
    }
}

const DAY: i64 = 86_400;

impl TokenSet {
    /// A pre-issued session from the config: no known expiry, no refresh.
    pub fn pre_issued(session: Secret, now: DateTime<Utc>) -> TokenSet {
        TokenSet {
            access_token: session,
            refresh_token: None,
            issued_at: now,
            expires_at: None,
            refresh_expires_at: None,
            user_id: None,
            user_nick: None,
            origin: TokenOrigin::Config,
        }
    }

    /// Whether the access token has expired by our clock.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }

    /// Whether a refresh grant can still succeed by our clock.
    pub fn can_refresh(&self, now: DateTime<Utc>) -> bool {
        self.refresh_token.is_some() && self.refresh_expires_at.is_some_and(|e| now < e)
    }

    /// Whether it is time to refresh ahead of expiry: when at most 10 % of the token's
    /// lifetime is left, or — for tokens that live more than two days — less than a day.
    /// (For a one-day token "less than a day" would mean "always"; TAOBAO.md §4.4.)
    pub fn refresh_due(&self, now: DateTime<Utc>) -> bool {
        let Some(expires_at) = self.expires_at else {
            return false;
        };
        if !self.can_refresh(now) {
            return false;
        }
        let lifetime = (expires_at - self.issued_at).num_seconds().max(0);
        let mut threshold = lifetime / 10;
        if lifetime > 2 * DAY {
            threshold = threshold.max(DAY);
        }
        (expires_at - now).num_seconds() <= threshold
    }
}

/// The token endpoint's reply (TAOBAO.md §4.2), read leniently.
#[derive(Deserialize)]
struct TokenReply {
    #[serde(default, deserialize_with = "decode::opt_string")]
    access_token: Option<String>,
    #[serde(default, deserialize_with = "decode::opt_id")]
    expires_in: Option<i64>,
    #[serde(default, deserialize_with = "decode::opt_string")]
    refresh_token: Option<String>,
    #[serde(default, deserialize_with = "decode::opt_id")]
    re_expires_in: Option<i64>,
    #[serde(default, deserialize_with = "decode::opt_string")]
    taobao_user_id: Option<String>,
    #[serde(default, deserialize_with = "decode::opt_string")]
    taobao_user_nick: Option<String>,
    #[serde(default, deserialize_with = "decode::opt_string")]
    sub_taobao_user_id: Option<String>,
    #[serde(default, deserialize_with = "decode::opt_string")]
    sub_taobao_user_nick: Option<String>,
}

/// `%E6%B2%99…` → `沙…`; a nick that is not valid percent-encoded UTF-8 is kept as it came.
fn decode_nick(raw: &str) -> String {
    if !raw.contains('%') {
        return raw.to_owned();
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .unwrap_or_else(|_| raw.to_owned())
}

impl TokenReply {
    fn into_token_set(self, now: DateTime<Utc>) -> Result<TokenSet, OAuthError> {
        let access = self
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| OAuthError::Decode("no access_token in the reply".into()))?;
        // A lifetime from the reply, saturating: a number too large for a date is "never"
        // (the latest date there is), not a panic.
        let secs = |s: i64| {
            let d = chrono::Duration::try_seconds(s).unwrap_or(chrono::Duration::MAX);
            Some(
                now.checked_add_signed(d)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            )
        };
        let expires_at = self.expires_in.filter(|s| *s > 0).and_then(secs);
        let re = self.re_expires_in.unwrap_or(0);
        let (refresh_token, refresh_expires_at) = match self.refresh_token.filter(|t| !t.is_empty())
        {
            Some(rt) if re > 0 => (Some(Secret::new(rt)), secs(re)),
            // re_expires_in = 0: the platform still sends a refresh_token, but it is useless.
            _ => (None, None),
        };
        // A sub-account login acts for the main shop; show who logged in.
        let user_id = self.sub_taobao_user_id.or(self.taobao_user_id);
        let user_nick = self
            .sub_taobao_user_nick
            .or(self.taobao_user_nick)
            .map(|n| decode_nick(&n));
        Ok(TokenSet {
            access_token: Secret::new(access),
            refresh_token,
            issued_at: now,
            expires_at,
            refresh_expires_at,
            user_id,
            user_nick,
            origin: TokenOrigin::OAuth,
        })
    }
}

#[derive(Deserialize, Default)]
struct ErrorReply {
    #[serde(default, deserialize_with = "decode::opt_string")]
    error: Option<String>,
    #[serde(default, deserialize_with = "decode::opt_string")]
    error_description: Option<String>,
}

/// The OAuth client. Cheap to clone.
#[derive(Clone)]
pub struct OAuthClient {
    opts: OAuthOptions,
    http: reqwest::Client,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("oauth_url", &self.opts.oauth_url)
            .field("app_key", &self.opts.app_key)
            .field("redirect_uri", &self.opts.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl OAuthClient {
    /// Builds the client.
    pub fn new(opts: OAuthOptions) -> Result<OAuthClient, BuildError> {
        match reqwest::Url::parse(&opts.oauth_url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => return Err(BuildError::Endpoint(opts.oauth_url.clone())),
        }
        if opts.app_key.is_empty() || opts.app_secret.is_empty() {
            return Err(BuildError::Credentials);
        }
        let http = http_client(opts.connect_timeout, opts.request_timeout)?;
        Ok(OAuthClient { opts, http })
    }

    /// The options.
    pub fn options(&self) -> &OAuthOptions {
        &self.opts
    }

    fn endpoint(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.opts.oauth_url.trim_end_matches('/'))
    }

    /// A fresh random `state` (128 bits, hex) against cross-site request forgery.
    pub fn new_state() -> String {
        let bytes: [u8; 16] = rand::random();
        hex::encode(bytes)
    }

    /// The URL the seller opens to authorise the app (server flow, `view=web`).
    pub fn authorize_url(&self, state: &str) -> String {
        let mut url = match reqwest::Url::parse(&self.endpoint("authorize")) {
            Ok(u) => u,
            // `new` checked the base URL; a failure here can only be a bizarre base.
            Err(_) => return self.endpoint("authorize"),
        };
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.opts.app_key)
            .append_pair("redirect_uri", &self.opts.redirect_uri)
            .append_pair("state", state)
            .append_pair("view", "web");
        url.into()
    }

    /// Trades an authorization code for tokens.
    pub async fn exchange(&self, code: &str) -> Result<TokenSet, OAuthError> {
        let code = code.trim();
        if code.is_empty() {
            return Err(OAuthError::Refused {
                error: "invalid_request".into(),
                description: "the authorization code is empty".into(),
            });
        }
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", self.opts.app_key.as_str()),
            ("client_secret", self.opts.app_secret.expose()),
            ("redirect_uri", self.opts.redirect_uri.as_str()),
            ("view", "web"),
        ];
        let t = self.token_request(&form).await?;
        tracing::info!(nick = ?t.user_nick, expires_at = ?t.expires_at, refreshable = t.refresh_token.is_some(), "taobao authorisation obtained");
        Ok(t)
    }

    /// Refreshes with `current`'s refresh token. Keeps the old refresh token when the reply
    /// has none.
    pub async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, OAuthError> {
        let now = self.opts.clock.now();
        let Some(rt) = current
            .refresh_token
            .as_ref()
            .filter(|_| current.can_refresh(now))
        else {
            return Err(OAuthError::NotRefreshable(
                if current.refresh_token.is_none() {
                    "the app was not granted refresh (re_expires_in = 0) or the token was pre-issued"
                } else {
                    "the refresh token has expired"
                }
                .into(),
            ));
        };
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.expose()),
            ("client_id", self.opts.app_key.as_str()),
            ("client_secret", self.opts.app_secret.expose()),
            ("view", "web"),
        ];
        let mut t = self.token_request(&form).await?;
        if t.refresh_token.is_none() {
            t.refresh_token = current.refresh_token.clone();
            t.refresh_expires_at = current.refresh_expires_at;
        }
        t.user_id = t.user_id.or_else(|| current.user_id.clone());
        t.user_nick = t.user_nick.or_else(|| current.user_nick.clone());
        tracing::info!(nick = ?t.user_nick, expires_at = ?t.expires_at, "taobao session refreshed");
        Ok(t)
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenSet, OAuthError> {
        let resp = self
            .http
            .post(self.endpoint("token"))
            .form(form)
            .send()
            .await
            .map_err(|e| OAuthError::Transport(error_chain(e)))?;
        let status = resp.status().as_u16();
        let body = read_capped(resp)
            .await
            .map_err(|e| OAuthError::Transport(error_chain(e)))?
            .ok_or_else(|| OAuthError::Decode("reply too large".into()))?;
        match status {
            200 => {
                let reply: TokenReply = serde_json::from_slice(&body)
                    .map_err(|e| OAuthError::Decode(format!("not a token object: {e}")))?;
                reply.into_token_set(self.opts.clock.now())
            }
            400 => {
                // "OAuth bad request always returns 400" (Java SDK): any 400 is a refused grant.
                let e: ErrorReply = serde_json::from_slice(&body).unwrap_or_default();
                Err(OAuthError::Refused {
                    error: e.error.unwrap_or_else(|| "invalid_request".into()),
                    description: e.error_description.unwrap_or_default(),
                })
            }
            other => Err(OAuthError::Http(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        super::super::time::parse("2026-11-29 12:00:00").unwrap_or_default()
    }

    fn reply(v: serde_json::Value) -> Result<TokenSet, OAuthError> {
        let r: TokenReply =
            serde_json::from_value(v).map_err(|e| OAuthError::Decode(e.to_string()))?;
        r.into_token_set(now())
    }

    #[test]
    fn huge_lifetimes_saturate_instead_of_panicking() {
        for n in [i64::MAX, i64::MAX / 1000, 1 << 50] {
            let t = reply(json!({
                "access_token": "a", "expires_in": n, "refresh_token": "r", "re_expires_in": n
            }))
            .unwrap_or_else(|e| panic!("{e}"));
            let far = now() + chrono::Duration::days(365 * 1000);
            assert!(t.expires_at.is_some_and(|e| e > far), "{n}");
            assert!(t.refresh_expires_at.is_some_and(|e| e > far), "{n}");
            assert!(!t.is_expired(now()));
            assert!(!t.refresh_due(now()));
        }
    }

    #[test]
    fn a_token_reply_decodes_with_string_numbers_and_an_encoded_nick() {
        let t = reply(json!({
            "access_token": "6200abc", "token_type": "Bearer", "expires_in": "86400",
            "refresh_token": "6201def", "re_expires_in": 2592000,
            "taobao_user_id": "2200000000001", "taobao_user_nick": "%E6%B2%99%E7%AE%B1%E6%B5%8B%E8%AF%95%E5%BA%97",
            "w2_expires_in": 0
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.access_token.expose(), "6200abc");
        assert_eq!(t.expires_at, Some(now() + chrono::Duration::days(1)));
        assert_eq!(
            t.refresh_expires_at,
            Some(now() + chrono::Duration::days(30))
        );
        assert_eq!(t.user_nick.as_deref(), Some("沙箱测试店"));
        assert_eq!(t.user_id.as_deref(), Some("2200000000001"));
        assert!(t.can_refresh(now()));
    }

    #[test]
    fn re_expires_in_zero_means_no_refresh_token() {
        let t = reply(json!({"access_token": "a", "expires_in": 86400, "refresh_token": "r", "re_expires_in": 0}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(t.refresh_token.is_none());
        assert!(!t.can_refresh(now()));
        assert!(!t.refresh_due(now() + chrono::Duration::hours(23)));
    }

    #[test]
    fn a_reply_without_access_token_is_unreadable() {
        assert!(matches!(
            reply(json!({"expires_in": 1})),
            Err(OAuthError::Decode(_))
        ));
    }

    fn token(lifetime: chrono::Duration) -> TokenSet {
        TokenSet {
            access_token: Secret::new("a"),
            refresh_token: Some(Secret::new("r")),
            issued_at: now(),
            expires_at: Some(now() + lifetime),
            refresh_expires_at: Some(now() + chrono::Duration::days(120)),
            user_id: None,
            user_nick: None,
            origin: TokenOrigin::OAuth,
        }
    }

    #[test]
    fn a_one_day_token_is_refreshed_in_its_last_tenth() {
        let t = token(chrono::Duration::days(1));
        assert!(!t.refresh_due(now()));
        assert!(!t.refresh_due(now() + chrono::Duration::hours(21)));
        assert!(t.refresh_due(now() + chrono::Duration::hours(22)));
    }

    #[test]
    fn a_long_token_is_refreshed_a_day_ahead_at_the_latest() {
        let t = token(chrono::Duration::days(5));
        // 10 % of 5 days is 12 h, but a day ahead comes first.
        assert!(!t.refresh_due(now() + chrono::Duration::hours(95)));
        assert!(t.refresh_due(now() + chrono::Duration::hours(97)));
        let t = token(chrono::Duration::days(90));
        assert!(!t.refresh_due(now() + chrono::Duration::days(80)));
        assert!(t.refresh_due(now() + chrono::Duration::days(82)));
    }

    #[test]
    fn a_pre_issued_session_is_never_due_or_expired() {
        let t = TokenSet::pre_issued(Secret::new("s"), now());
        assert!(!t.refresh_due(now() + chrono::Duration::days(400)));
        assert!(!t.is_expired(now() + chrono::Duration::days(400)));
        assert!(!format!("{t:?}").contains("\"s\""));
    }

    #[test]
    fn the_authorize_url_carries_the_server_flow_parameters() {
        let c = OAuthClient::new(OAuthOptions::new(
            "https://oauth.taobao.com/",
            "12345678",
            Secret::new("x"),
            "http://127.0.0.1:8080/cb?a=1",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let state = OAuthClient::new_state();
        assert_eq!(state.len(), 32);
        assert_ne!(state, OAuthClient::new_state());
        let url = c.authorize_url(&state);
        assert!(url.starts_with("https://oauth.taobao.com/authorize?response_type=code&client_id=12345678&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcb%3Fa%3D1&state="), "{url}");
        assert!(url.ends_with("&view=web"));
        assert!(!url.contains("client_secret"));
    }
}
