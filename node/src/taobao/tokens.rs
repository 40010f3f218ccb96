//! The seller's tokens: where they are kept, and the [`TokenManager`] that hands the session
//! to the client, refreshes it, and raises the "reauthorize" alert when it cannot.
//!
//! ```text
//!  TopClient ── session() ──► TokenManager ── load/save ──► TokenStore (redb `tokens` table)
//!      │                         │  refresh ahead of expiry (≤ 10 % of the lifetime left,
//!      │                         │  or < 1 day for tokens that live longer than 2 days)
//!      └── code 27 ─ rejected() ─┘  refresh once; impossible → alert `reauthorize`, and
//!                                   every later call fails as Auth without being sent
//! ```
//!
//! The outbox pauses on `Outcome::Auth` and keeps queueing; nothing is lost while the seller
//! re-authorises. Tokens are stored as postcard in the `tokens` table under the key `seller`,
//! with a record version; they never appear in logs, errors, metrics or status output.

use super::client::SessionProvider;
use super::error::TopError;
use super::oauth::{OAuthClient, OAuthError, TokenOrigin, TokenSet};
use super::time::Clock;
use crate::alert::{AlertCode, Alerts, Severity};
use crate::secret::Secret;
use crate::store::{Bytes, Store};
use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The `tokens` table (owned by this module).
pub const TOKENS: TableDefinition<'static, &'static str, Bytes> = TableDefinition::new("tokens");
/// The one key in it: the node serves one shop.
const SELLER: &str = "seller";

/// Where tokens are kept. Small on purpose, so tests can use [`MemoryTokenStore`].
pub trait TokenStore: Send + Sync + 'static {
    /// The stored tokens, if any.
    fn load(&self) -> Result<Option<TokenSet>, TopError>;
    /// Replaces the stored tokens; resolves once they are durable.
    fn save(&self, tokens: TokenSet) -> BoxFuture<'_, Result<(), TopError>>;
}

/// Tokens in memory (tests; `auth url` which stores nothing).
#[derive(Debug, Default)]
pub struct MemoryTokenStore(Mutex<Option<TokenSet>>);

impl MemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryTokenStore::default()
    }
}

impl TokenStore for MemoryTokenStore {
    fn load(&self) -> Result<Option<TokenSet>, TopError> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn save(&self, tokens: TokenSet) -> BoxFuture<'_, Result<(), TopError>> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokens);
        Box::pin(async { Ok(()) })
    }
}

/// The persisted form. `Secret` serializes as `<redacted>` on purpose, so the record holds
/// plain strings and is converted at the edge.
#[derive(Serialize, Deserialize)]
struct TokenRecord {
    version: u8,
    access_token: String,
    refresh_token: Option<String>,
    issued_at_ms: i64,
    expires_at_ms: Option<i64>,
    refresh_expires_at_ms: Option<i64>,
    user_id: Option<String>,
    user_nick: Option<String>,
    origin: TokenOrigin,
}

const RECORD_VERSION: u8 = 1;

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

impl From<&TokenSet> for TokenRecord {
    fn from(t: &TokenSet) -> Self {
        TokenRecord {
            version: RECORD_VERSION,
            access_token: t.access_token.expose().to_owned(),
            refresh_token: t.refresh_token.as_ref().map(|s| s.expose().to_owned()),
            issued_at_ms: t.issued_at.timestamp_millis(),
            expires_at_ms: t.expires_at.map(|d| d.timestamp_millis()),
            refresh_expires_at_ms: t.refresh_expires_at.map(|d| d.timestamp_millis()),
            user_id: t.user_id.clone(),
            user_nick: t.user_nick.clone(),
            origin: t.origin,
        }
    }
}

impl TokenRecord {
    fn into_token_set(self) -> TokenSet {
        TokenSet {
            access_token: Secret::new(self.access_token),
            refresh_token: self.refresh_token.map(Secret::new),
            issued_at: from_ms(self.issued_at_ms).unwrap_or_default(),
            expires_at: self.expires_at_ms.and_then(from_ms),
            refresh_expires_at: self.refresh_expires_at_ms.and_then(from_ms),
            user_id: self.user_id,
            user_nick: self.user_nick,
            origin: self.origin,
        }
    }
}

/// Tokens in the node's redb store.
#[derive(Debug, Clone)]
pub struct RedbTokenStore {
    store: Store,
}

impl RedbTokenStore {
    /// Tokens in `store`'s `tokens` table.
    pub fn new(store: Store) -> Self {
        RedbTokenStore { store }
    }
}

fn store_error(e: crate::store::StoreError) -> TopError {
    TopError::TokenStore {
        // A full disk or an I/O error passes once the store has reopened itself (and the
        // outbox sends nothing meanwhile): retried with backoff, not treated as a lost
        // authorisation. A permanent failure pauses.
        retryable: e.disposition() != crate::store::Disposition::Permanent,
        reason: e.to_string(),
    }
}

impl TokenStore for RedbTokenStore {
    fn load(&self) -> Result<Option<TokenSet>, TopError> {
        let rec: Option<TokenRecord> = self
            .store
            .read(|txn| crate::store::get(txn, TOKENS, SELLER))
            .map_err(store_error)?;
        Ok(rec.map(TokenRecord::into_token_set))
    }

    fn save(&self, tokens: TokenSet) -> BoxFuture<'_, Result<(), TopError>> {
        let rec = TokenRecord::from(&tokens);
        Box::pin(async move {
            self.store
                .write(move |txn| crate::store::put(txn, TOKENS, SELLER, &rec))
                .await
                .map_err(store_error)
        })
    }
}

/// What `wms-node auth status` shows: never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStatus {
    /// The shop's nick, if known.
    pub shop_nick: Option<String>,
    /// The seller's id, if known.
    pub user_id: Option<String>,
    /// `oauth` or `config`.
    pub origin: String,
    /// Access-token expiry (`None`: unknown, a pre-issued session).
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the access token has expired by the local clock.
    pub expired: bool,
    /// Whether the node can refresh it by itself.
    pub refreshable: bool,
    /// Refresh-token expiry.
    #[serde(serialize_with = "rfc3339")]
    pub refresh_expires_at: Option<DateTime<Utc>>,
}

fn rfc3339<S: serde::Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => s.serialize_none(),
    }
}

impl TokenSet {
    /// The status view.
    pub fn status(&self, now: DateTime<Utc>) -> TokenStatus {
        TokenStatus {
            shop_nick: self.user_nick.clone(),
            user_id: self.user_id.clone(),
            origin: match self.origin {
                TokenOrigin::OAuth => "oauth",
                TokenOrigin::Config => "config",
            }
            .to_owned(),
            expires_at: self.expires_at,
            expired: self.is_expired(now),
            refreshable: self.can_refresh(now),
            refresh_expires_at: self.refresh_expires_at,
        }
    }
}

#[derive(Default)]
struct State {
    /// The tokens in use (loaded lazily from the store).
    current: Option<TokenSet>,
    /// The platform refused `current` and it could not be refreshed: fail fast until new
    /// tokens are installed.
    dead: bool,
}

/// Hands out the session, refreshes it, persists every change and alerts when the seller must
/// authorise again. One per node; share it as `Arc<TokenManager>`.
pub struct TokenManager {
    store: Arc<dyn TokenStore>,
    oauth: Option<OAuthClient>,
    alerts: Alerts,
    clock: Clock,
    // An async mutex: a refresh holds it across the token request, so concurrent callers
    // wait for that one refresh instead of each spending the single-use refresh token.
    state: tokio::sync::Mutex<State>,
    // Bumped whenever usable tokens are stored (seed, install, refresh), so the daemon can
    // resume an outbox paused for authorisation without polling.
    renewed: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("can_refresh", &self.oauth.is_some())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// A manager over `store`. Without `oauth` it can hand out sessions but never refresh.
    /// Expiry is judged by the OAuth client's clock (the system clock without one).
    pub fn new(store: Arc<dyn TokenStore>, oauth: Option<OAuthClient>, alerts: Alerts) -> Self {
        let clock = oauth
            .as_ref()
            .map(|o| o.options().clock.clone())
            .unwrap_or_default();
        TokenManager {
            store,
            oauth,
            alerts,
            clock,
            state: tokio::sync::Mutex::new(State::default()),
            renewed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes each time usable tokens are stored (seeded, installed or refreshed).
    pub fn renewals(&self) -> tokio::sync::watch::Receiver<u64> {
        self.renewed.subscribe()
    }

    fn mark_renewed(&self) {
        self.renewed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Seeds the store with a pre-issued session from the config (`taobao.session`) when the
    /// store holds none, or holds an older config session. Tokens from OAuth are kept: they
    /// can be refreshed and are newer than the config file. Returns whether it was stored.
    pub async fn seed_from_config(&self, session: Secret) -> Result<bool, TopError> {
        if session.is_empty() {
            return Ok(false);
        }
        let mut st = self.state.lock().await;
        let stored = self.store.load()?;
        let replace = match &stored {
            None => true,
            Some(t) => t.origin == TokenOrigin::Config && t.access_token != session,
        };
        if !replace {
            if st.current.is_none() {
                st.current = stored;
            }
            return Ok(false);
        }
        let t = TokenSet::pre_issued(session, self.clock.now());
        self.store.save(t.clone()).await?;
        tracing::info!("taobao session seeded from the config (pre-issued, no refresh)");
        st.current = Some(t);
        st.dead = false;
        self.alerts.clear(AlertCode::Reauthorize);
        self.mark_renewed();
        Ok(true)
    }

    /// Stores freshly obtained tokens (after `auth exchange` / `login`) and clears the alert.
    pub async fn install(&self, tokens: TokenSet) -> Result<(), TopError> {
        let mut st = self.state.lock().await;
        self.store.save(tokens.clone()).await?;
        st.current = Some(tokens);
        st.dead = false;
        self.alerts.clear(AlertCode::Reauthorize);
        self.alerts.clear(AlertCode::TokenExpiry);
        self.mark_renewed();
        Ok(())
    }

    /// The current status, or `None` when never authorised.
    pub async fn status(&self) -> Result<Option<TokenStatus>, TopError> {
        let mut st = self.state.lock().await;
        self.ensure_loaded(&mut st)?;
        Ok(st.current.as_ref().map(|t| t.status(self.clock.now())))
    }

    /// The current status without waiting: `None` while a refresh holds the tokens (ask
    /// again), `Some(None)` when never authorised. The flag says whether the platform refused
    /// the tokens and they could not be refreshed (authorise again).
    pub fn try_status(&self) -> Option<(Option<TokenStatus>, bool)> {
        let mut st = self.state.try_lock().ok()?;
        self.ensure_loaded(&mut st).ok()?;
        Some((
            st.current.as_ref().map(|t| t.status(self.clock.now())),
            st.dead,
        ))
    }

    /// Refreshes now, whatever the expiry (for `auth refresh` and tests).
    pub async fn refresh_now(&self) -> Result<TokenStatus, TopError> {
        let mut st = self.state.lock().await;
        self.ensure_loaded(&mut st)?;
        self.refresh_locked(&mut st).await?;
        let now = self.clock.now();
        st.current
            .as_ref()
            .map(|t| t.status(now))
            .ok_or_else(|| no_session("never authorised"))
    }

    fn ensure_loaded(&self, st: &mut State) -> Result<(), TopError> {
        if st.current.is_none() {
            st.current = self.store.load()?;
        }
        Ok(())
    }

    fn reauthorize(&self, why: &str) {
        self.alerts.raise(
            AlertCode::Reauthorize,
            Severity::Critical,
            format!(
                "Taobao authorisation is needed: {why}. Run `wms-node auth login` (shipments \
                 and stock updates are queued meanwhile)"
            ),
        );
    }

    /// Refreshes `st.current` and persists the result. Alerts when that is impossible.
    async fn refresh_locked(&self, st: &mut State) -> Result<(), TopError> {
        let Some(current) = st.current.clone() else {
            self.reauthorize("the node has never been authorised");
            return Err(no_session("never authorised"));
        };
        let Some(oauth) = &self.oauth else {
            return Err(no_session(
                "refresh is not configured (no taobao.oauth_url)",
            ));
        };
        match oauth.refresh(&current).await {
            Ok(fresh) => {
                self.store.save(fresh.clone()).await?;
                st.current = Some(fresh);
                st.dead = false;
                self.alerts.clear(AlertCode::Reauthorize);
                self.mark_renewed();
                Ok(())
            }
            Err(e) if e.is_retryable() => Err(TopError::Transport {
                method: "oauth.token".into(),
                detail: e.to_string(),
                sent: true,
            }),
            Err(e) => {
                if let OAuthError::Refused { .. } = e {
                    tracing::warn!(error = %e, "taobao refresh refused");
                }
                Err(no_session(&e.to_string()))
            }
        }
    }

    fn warn_if_expiring(&self, t: &TokenSet, now: DateTime<Utc>) {
        // Cleared whenever the token in use is not (or no longer) about to expire unrenewed,
        // e.g. after a restart that restored the alert of a token replaced meanwhile.
        let Some(exp) = t.expires_at else {
            self.alerts.clear(AlertCode::TokenExpiry);
            return;
        };
        if self.oauth.is_some() && t.can_refresh(now) {
            self.alerts.clear(AlertCode::TokenExpiry);
            return;
        }
        let left = exp - now;
        if left <= chrono::Duration::zero() || left > chrono::Duration::days(7) {
            self.alerts.clear(AlertCode::TokenExpiry);
        }
        if left > chrono::Duration::zero() && left <= chrono::Duration::days(7) {
            self.alerts.raise(
                AlertCode::TokenExpiry,
                Severity::Warning,
                format!(
                    "the Taobao authorisation expires in {} h and cannot be refreshed; run \
                     `wms-node auth login` before then",
                    left.num_hours()
                ),
            );
        }
    }

    async fn session_now(&self) -> Result<Secret, TopError> {
        let mut st = self.state.lock().await;
        self.ensure_loaded(&mut st)?;
        let now = self.clock.now();
        let Some(current) = st.current.clone() else {
            self.reauthorize("the node has never been authorised");
            return Err(no_session("never authorised: run `wms-node auth login`"));
        };
        if st.dead {
            return Err(no_session(
                "the platform refused the session and it could not be refreshed",
            ));
        }
        if self.oauth.is_some() && current.refresh_due(now) {
            match self.refresh_locked(&mut st).await {
                Ok(()) => {}
                // The old token still works: use it and try again on the next call.
                Err(e) if !current.is_expired(now) => {
                    tracing::warn!(error = %e, "taobao refresh ahead of expiry failed; using the current session");
                }
                Err(e) => {
                    if !e.is_retryable() {
                        self.reauthorize("the session expired and could not be refreshed");
                    }
                    return Err(e);
                }
            }
        } else if current.is_expired(now) {
            self.reauthorize("the session expired and cannot be refreshed");
            return Err(no_session("the session expired and cannot be refreshed"));
        }
        let t = st.current.clone().unwrap_or(current);
        self.warn_if_expiring(&t, now);
        Ok(t.access_token)
    }

    async fn rejected_now(&self, rejected: Secret) -> Result<bool, TopError> {
        let mut st = self.state.lock().await;
        self.ensure_loaded(&mut st)?;
        // Another caller refreshed while this one was in flight: just resend.
        if st
            .current
            .as_ref()
            .is_some_and(|t| t.access_token != rejected)
        {
            return Ok(!st.dead);
        }
        let now = self.clock.now();
        let refreshable =
            self.oauth.is_some() && st.current.as_ref().is_some_and(|t| t.can_refresh(now));
        if refreshable {
            match self.refresh_locked(&mut st).await {
                Ok(()) => return Ok(true),
                Err(e) if e.is_retryable() => {
                    // The token endpoint is unreachable: not dead yet, the next call retries.
                    tracing::warn!(error = %e, "refresh after code 27 failed; will retry");
                    return Err(e);
                }
                Err(e) => tracing::warn!(error = %e, "refresh after code 27 refused"),
            }
        }
        st.dead = true;
        self.reauthorize("the platform refused the session (code 27) and it cannot be refreshed");
        Ok(false)
    }
}

fn no_session(reason: &str) -> TopError {
    TopError::NoSession {
        reason: reason.to_owned(),
    }
}

impl SessionProvider for TokenManager {
    fn session(&self) -> BoxFuture<'_, Result<Secret, TopError>> {
        Box::pin(self.session_now())
    }

    fn rejected(&self, rejected: Secret) -> BoxFuture<'_, Result<bool, TopError>> {
        Box::pin(self.rejected_now(rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_in: chrono::Duration, refresh: bool) -> TokenSet {
        let now = Utc::now();
        TokenSet {
            access_token: Secret::new("access-1"),
            refresh_token: refresh.then(|| Secret::new("refresh-1")),
            issued_at: now,
            expires_at: Some(now + expires_in),
            refresh_expires_at: refresh.then(|| now + chrono::Duration::days(30)),
            user_id: Some("2200000000001".into()),
            user_nick: Some("沙箱测试店".into()),
            origin: TokenOrigin::OAuth,
        }
    }

    #[test]
    fn a_token_store_failure_is_retried_only_when_the_store_says_it_may_pass() {
        use crate::outbox::Outcome;
        use crate::store::StoreError;
        // A full disk may clear: the outbox retries with backoff.
        let full = store_error(StoreError::DiskFull);
        assert!(full.is_retryable());
        assert!(matches!(full.outcome(), Outcome::Retry { after: None, .. }));
        // A closed store never reopens by itself: pause like a lost authorisation, drop
        // nothing, and let `wms-node auth` write a fresh record.
        let closed = store_error(StoreError::Closed);
        assert!(!closed.is_retryable());
        assert!(matches!(closed.outcome(), Outcome::Auth { .. }));
        assert_eq!(closed.code_label(), "token_store");
    }

    #[test]
    fn the_record_round_trips_through_postcard_with_the_real_token() {
        let t = token(chrono::Duration::days(1), true);
        let bytes = postcard::to_allocvec(&TokenRecord::from(&t)).unwrap_or_default();
        let back: TokenRecord = match postcard::from_bytes(&bytes) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let back = back.into_token_set();
        assert_eq!(back.access_token.expose(), "access-1");
        assert_eq!(
            back.refresh_token.as_ref().map(Secret::expose),
            Some("refresh-1")
        );
        assert_eq!(
            back.expires_at.map(|d| d.timestamp_millis()),
            t.expires_at.map(|d| d.timestamp_millis())
        );
        assert_eq!(back.user_nick, t.user_nick);
    }

    #[tokio::test]
    async fn a_never_authorised_node_raises_the_alert_and_fails_as_auth() {
        let alerts = Alerts::new();
        let m = TokenManager::new(Arc::new(MemoryTokenStore::new()), None, alerts.clone());
        let r = m.session().await;
        assert!(matches!(r, Err(TopError::NoSession { .. })));
        assert!(alerts.is_active(AlertCode::Reauthorize));
    }

    #[tokio::test]
    async fn a_config_session_seeds_an_empty_store_but_not_over_oauth_tokens() {
        let store = Arc::new(MemoryTokenStore::new());
        let m = TokenManager::new(store.clone(), None, Alerts::new());
        assert!(
            m.seed_from_config(Secret::new("cfg-1"))
                .await
                .unwrap_or(false)
        );
        assert_eq!(
            m.session()
                .await
                .map(|s| s.expose().to_owned())
                .ok()
                .as_deref(),
            Some("cfg-1")
        );
        // A changed config session replaces the old config session.
        assert!(
            m.seed_from_config(Secret::new("cfg-2"))
                .await
                .unwrap_or(false)
        );
        m.install(token(chrono::Duration::days(1), true))
            .await
            .unwrap_or(());
        assert!(
            !m.seed_from_config(Secret::new("cfg-3"))
                .await
                .unwrap_or(true)
        );
        assert_eq!(
            m.session()
                .await
                .map(|s| s.expose().to_owned())
                .ok()
                .as_deref(),
            Some("access-1")
        );
    }

    #[tokio::test]
    async fn an_expired_token_without_refresh_is_refused_locally_with_an_alert() {
        let alerts = Alerts::new();
        let store = Arc::new(MemoryTokenStore::new());
        let _ = store
            .save(token(chrono::Duration::seconds(-1), false))
            .await;
        let m = TokenManager::new(store, None, alerts.clone());
        assert!(matches!(m.session().await, Err(TopError::NoSession { .. })));
        assert!(alerts.is_active(AlertCode::Reauthorize));
    }

    #[tokio::test]
    async fn a_token_that_cannot_be_refreshed_warns_a_week_ahead() {
        let alerts = Alerts::new();
        let store = Arc::new(MemoryTokenStore::new());
        let _ = store.save(token(chrono::Duration::days(3), false)).await;
        let m = TokenManager::new(store, None, alerts.clone());
        assert!(m.session().await.is_ok());
        assert!(alerts.is_active(AlertCode::TokenExpiry));
        assert!(!alerts.is_active(AlertCode::Reauthorize));
    }

    #[tokio::test]
    async fn a_rejected_session_that_cannot_refresh_is_dead_until_new_tokens_arrive() {
        let alerts = Alerts::new();
        let store = Arc::new(MemoryTokenStore::new());
        let _ = store.save(token(chrono::Duration::days(1), false)).await;
        let m = TokenManager::new(store, None, alerts.clone());
        let s = m.session().await.unwrap_or_default();
        assert!(matches!(m.rejected(s).await, Ok(false)));
        assert!(alerts.is_active(AlertCode::Reauthorize));
        assert!(matches!(m.session().await, Err(TopError::NoSession { .. })));
        let mut fresh = token(chrono::Duration::days(1), false);
        fresh.access_token = Secret::new("access-2");
        m.install(fresh).await.unwrap_or(());
        assert!(!alerts.is_active(AlertCode::Reauthorize));
        assert_eq!(
            m.session()
                .await
                .map(|s| s.expose().to_owned())
                .ok()
                .as_deref(),
            Some("access-2")
        );
    }

    #[tokio::test]
    async fn status_never_carries_a_token() {
        let store = Arc::new(MemoryTokenStore::new());
        let _ = store.save(token(chrono::Duration::days(1), true)).await;
        let m = TokenManager::new(store, None, Alerts::new());
        let st = m.status().await.ok().flatten();
        let text = serde_json::to_string(&st).unwrap_or_default();
        assert!(text.contains("沙箱测试店"));
        assert!(
            !text.contains("access-1") && !text.contains("refresh-1"),
            "{text}"
        );
        assert!(st.is_some_and(|s| s.refreshable && !s.expired));
    }
}
