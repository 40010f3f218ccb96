//! From the Taobao options to a working client: the token manager over the store and the
//! pre-issued session seeded in. Used by the daemon and by `wms-node auth`.
//!
//! ```text
//! TaobaoOptions ─┬─ client: ClientOptions ──────────────────────────────┐
//!   (config      ├─ oauth:  OAuthOptions ──► TokenManager(RedbTokenStore) ┴─► TopClient
//!    builds it)  └─ session (seeded into the store)
//! ```
//!
//! The options are this module's own; `config` builds them from `[taobao]`
//! (`Config::taobao_options`), and nothing here reads the config file.

use super::client::{BuildError, ClientOptions, TopClient};
use super::oauth::{OAuthClient, OAuthOptions};
use super::tokens::{RedbTokenStore, TokenManager, TokenStore};
use super::{SessionProvider, TopError};
use crate::alert::Alerts;
use crate::secret::Secret;
use crate::store::Store;
use std::sync::Arc;

/// Everything the Taobao side needs to start.
#[derive(Debug, Clone)]
pub struct TaobaoOptions {
    /// The REST client: endpoint, app, signing, timeouts, pacing, budget.
    pub client: ClientOptions,
    /// The OAuth client that refreshes (and, through the admin API, exchanges) tokens.
    pub oauth: OAuthOptions,
    /// A pre-issued session key to seed into the token store at start-up.
    pub session: Option<Secret>,
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

/// The token manager over the node's store (refresh through `oauth`).
pub fn token_manager(
    oauth: &OAuthOptions,
    store: Store,
    alerts: Alerts,
) -> Result<TokenManager, BuildError> {
    let oauth = OAuthClient::new(oauth.clone())?;
    let tokens: Arc<dyn TokenStore> = Arc::new(RedbTokenStore::new(store));
    Ok(TokenManager::new(tokens, Some(oauth), alerts))
}

/// Builds the client and its token manager, and seeds the pre-issued session into the store.
pub async fn connect(
    options: &TaobaoOptions,
    store: Store,
    alerts: Alerts,
) -> Result<Taobao, SetupError> {
    let tokens = Arc::new(token_manager(
        &options.oauth,
        store.clone(),
        alerts.clone(),
    )?);
    if let Some(session) = options.session.clone() {
        tokens.seed_from_config(session).await?;
    }
    let provider: Arc<dyn SessionProvider> = tokens.clone();
    let client = TopClient::new(options.client.clone(), Some(provider), alerts)?;
    // Today's calls so far, from the runs before this one (the daemon keeps it written).
    if let Err(e) = super::budget::restore(&client, &store) {
        tracing::warn!(error = %e, "could not read today's Taobao call count; counting from 0");
    }
    Ok(Taobao { client, tokens })
}
