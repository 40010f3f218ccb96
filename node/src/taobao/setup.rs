//! From `[taobao]` config to a working client: options, the token manager over the store, and
//! the config session seeded in. Used by the daemon and by `wms-node auth`.
//!
//! ```text
//! TaobaoConfig ──► ClientOptions ─┐
//!              └─► OAuthOptions ──┴─► TokenManager(RedbTokenStore) ──► TopClient
//! ```

use super::client::{BuildError, ClientOptions, TopClient};
use super::oauth::{OAuthClient, OAuthOptions};
use super::sign::SignMethod;
use super::tokens::{RedbTokenStore, TokenManager, TokenStore};
use super::{SessionProvider, TopError};
use crate::config::TaobaoConfig;
use crate::ops::alert::Alerts;
use crate::store::Store;
use std::sync::Arc;

/// The config's sign method as the client's.
pub fn sign_method(m: crate::config::SignMethod) -> SignMethod {
    match m {
        crate::config::SignMethod::Md5 => SignMethod::Md5,
        crate::config::SignMethod::Hmac => SignMethod::Hmac,
        crate::config::SignMethod::HmacSha256 => SignMethod::HmacSha256,
    }
}

/// Client options from `[taobao]` (secrets must already be resolved from their files).
pub fn client_options(t: &TaobaoConfig) -> ClientOptions {
    let mut o = ClientOptions::new(
        t.endpoint.clone(),
        t.app_key.clone(),
        t.app_secret.clone().unwrap_or_default(),
    );
    o.sign_method = sign_method(t.sign_method);
    o.connect_timeout = t.connect_timeout;
    o.request_timeout = t.request_timeout;
    o.daily_call_budget = (t.daily_call_budget > 0).then_some(t.daily_call_budget);
    o
}

/// OAuth options from `[taobao]`; `redirect_uri` overrides the configured one (`auth login`
/// uses a local address). Refresh needs no redirect URI, so an absent one is left empty.
pub fn oauth_options(t: &TaobaoConfig, redirect_uri: Option<String>) -> OAuthOptions {
    let mut o = OAuthOptions::new(
        t.oauth_url.clone(),
        t.app_key.clone(),
        t.app_secret.clone().unwrap_or_default(),
        redirect_uri
            .or_else(|| t.redirect_uri.clone())
            .unwrap_or_default(),
    );
    o.connect_timeout = t.connect_timeout;
    o.request_timeout = t.request_timeout;
    o
}

/// What the daemon needs from the Taobao side.
#[derive(Debug, Clone)]
pub struct Taobao {
    /// The client; its session comes from `tokens`.
    pub client: TopClient,
    /// The seller's tokens.
    pub tokens: Arc<TokenManager>,
}

/// Why the Taobao side could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Bad endpoint or credentials.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The token store failed while seeding the config session.
    #[error(transparent)]
    Tokens(#[from] TopError),
}

/// The token manager over the node's store (refresh through `oauth_url`).
pub fn token_manager(
    t: &TaobaoConfig,
    store: Store,
    alerts: Alerts,
) -> Result<TokenManager, BuildError> {
    let oauth = OAuthClient::new(oauth_options(t, None))?;
    let tokens: Arc<dyn TokenStore> = Arc::new(RedbTokenStore::new(store));
    Ok(TokenManager::new(tokens, Some(oauth), alerts))
}

/// Builds the client and its token manager, and seeds `taobao.session` into the store.
pub async fn connect(t: &TaobaoConfig, store: Store, alerts: Alerts) -> Result<Taobao, SetupError> {
    let tokens = Arc::new(token_manager(t, store, alerts.clone())?);
    if let Some(session) = t.session.clone() {
        tokens.seed_from_config(session).await?;
    }
    let provider: Arc<dyn SessionProvider> = tokens.clone();
    let client = TopClient::new(client_options(t), Some(provider), alerts)?;
    Ok(Taobao { client, tokens })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::time::Duration;

    #[test]
    fn config_maps_onto_client_and_oauth_options() {
        let t = TaobaoConfig {
            app_key: "12345678".into(),
            app_secret: Some(Secret::new("s")),
            sign_method: crate::config::SignMethod::Md5,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(9),
            daily_call_budget: 0,
            redirect_uri: Some("https://relay.example/cb".into()),
            ..TaobaoConfig::default()
        };
        let c = client_options(&t);
        assert_eq!(c.sign_method, SignMethod::Md5);
        assert_eq!(c.endpoint, t.endpoint);
        assert_eq!(c.app_secret.expose(), "s");
        assert_eq!(
            (c.connect_timeout, c.request_timeout),
            (t.connect_timeout, t.request_timeout)
        );
        assert_eq!(c.daily_call_budget, None);
        let o = oauth_options(&t, None);
        assert_eq!(o.redirect_uri, "https://relay.example/cb");
        assert_eq!(
            oauth_options(&t, Some("http://127.0.0.1:1/cb".into())).redirect_uri,
            "http://127.0.0.1:1/cb"
        );
        for m in [
            crate::config::SignMethod::Md5,
            crate::config::SignMethod::Hmac,
            crate::config::SignMethod::HmacSha256,
        ] {
            // The wire names agree.
            let wire = serde_json::to_value(m).unwrap_or_default();
            assert_eq!(wire.as_str(), Some(sign_method(m).as_str()));
        }
    }
}
