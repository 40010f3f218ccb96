//! The authorisation part of the node's admin HTTP API, so `wms-node auth` works while the
//! node runs (the store, which holds the tokens, can be open in one process only).
//!
//! | method | path                | body                                   | answer          |
//! |--------|---------------------|----------------------------------------|-----------------|
//! | GET    | `/api/auth`         |                                        | [`AuthState`]   |
//! | POST   | `/api/auth/code`    | `{"code": "…", "redirect_uri": "…"?}`  | [`AuthState`]   |
//! | POST   | `/api/auth/refresh` | `{}`                                   | [`AuthState`]   |
//!
//! The node trades the code itself (with the app secret it already has) and installs the
//! tokens, which also resumes an outbox paused for authorisation. It trades only codes issued
//! for its own callback, `taobao.redirect_uri` (a `redirect_uri` in the request, if any, must
//! be that one): a code issued for another callback (someone else's shop, someone else's
//! server) is refused before Taobao is asked. Answers carry the status
//! only, never a token. Errors are `{"error": "…"}`: 400 for a refused grant or a request
//! the node cannot act on, 502 when Taobao could not be reached, 503 for the store. Like
//! the rest of the admin API this has no authentication of its own: `[http] listen` stays
//! on loopback or a management network.

use super::TopError;
use super::oauth::{OAuthClient, OAuthError, OAuthOptions};
use super::tokens::{TokenManager, TokenStatus};
use crate::outbox::admin::{AdminClient, ClientError, ErrorBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the node knows of its authorisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    /// `None`: never authorised.
    pub status: Option<TokenStatus>,
}

/// The body of `POST /api/auth/code`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRequest {
    /// The `code` of the redirect (single use).
    pub code: String,
    /// The callback the code was issued for (default: `taobao.redirect_uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
}

#[derive(Clone)]
struct Auth {
    tokens: Arc<TokenManager>,
    /// The OAuth client's options; a code is traded with the request's callback, else this
    /// one's (`taobao.redirect_uri`).
    oauth: Arc<OAuthOptions>,
}

/// The routes above; merge into the ops server's router.
pub fn router(tokens: Arc<TokenManager>, oauth: OAuthOptions) -> Router {
    Router::new()
        .route("/api/auth", get(state))
        .route("/api/auth/code", post(code))
        .route("/api/auth/refresh", post(refresh))
        .with_state(Auth {
            tokens,
            oauth: Arc::new(oauth),
        })
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<TopError> for ApiError {
    fn from(e: TopError) -> Self {
        let status = match &e {
            TopError::TokenStore { .. } => StatusCode::SERVICE_UNAVAILABLE,
            TopError::Transport { .. }
            | TopError::Timeout { .. }
            | TopError::Http { .. }
            | TopError::Decode { .. }
            | TopError::Banned { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

impl From<OAuthError> for ApiError {
    fn from(e: OAuthError) -> Self {
        let status = if e.is_retryable() {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError(status, e.to_string())
    }
}

async fn current(auth: &Auth) -> Result<Json<AuthState>, ApiError> {
    let status = auth.tokens.status().await?;
    Ok(Json(AuthState { status }))
}

async fn state(State(auth): State<Auth>) -> Result<Json<AuthState>, ApiError> {
    current(&auth).await
}

async fn code(
    State(auth): State<Auth>,
    Json(req): Json<CodeRequest>,
) -> Result<Json<AuthState>, ApiError> {
    check_callback(&auth.oauth.redirect_uri, req.redirect_uri.as_deref())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let oauth = OAuthClient::new((*auth.oauth).clone())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let tokens = oauth.exchange(&req.code).await?;
    auth.tokens.install(tokens).await?;
    tracing::info!("new Taobao tokens installed through the admin API");
    current(&auth).await
}

/// Whether the node may trade a code issued for `asked` (`None`: the request names none):
/// only for its configured callback, `configured` (`taobao.redirect_uri`, empty if unset).
pub fn check_callback(configured: &str, asked: Option<&str>) -> Result<(), String> {
    if configured.is_empty() {
        return Err(
            "this node has no taobao.redirect_uri: set it to the callback registered for the \
             app and restart the node (it trades codes only for that callback), or stop the \
             node and authorise with the store directly"
                .into(),
        );
    }
    match asked {
        Some(a) if !same_url(a, configured) => Err(format!(
            "the node trades codes only for its taobao.redirect_uri ({configured}), not for \
             {a}: authorise with that callback"
        )),
        _ => Ok(()),
    }
}

/// The same URL, as a parser reads both (`HTTP://Host/cb` is `http://host/cb`).
fn same_url(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

async fn refresh(State(auth): State<Auth>) -> Result<Json<AuthState>, ApiError> {
    let status = auth.tokens.refresh_now().await?;
    Ok(Json(AuthState {
        status: Some(status),
    }))
}

/// `wms-node auth` through a running node.
#[derive(Debug, Clone)]
pub struct AuthClient(AdminClient);

impl AuthClient {
    /// A client for the node whose ops server listens at `base`.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        AdminClient::new(base).map(AuthClient)
    }

    /// `GET /api/auth`; [`ClientError::Unreachable`] when no node runs there.
    pub async fn state(&self) -> Result<AuthState, ClientError> {
        self.0.get_json("/api/auth").await
    }

    /// `POST /api/auth/code`.
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: Option<String>,
    ) -> Result<AuthState, ClientError> {
        let body = CodeRequest {
            code: code.to_owned(),
            redirect_uri,
        };
        self.0.post_json("/api/auth/code", &body).await
    }

    /// `POST /api/auth/refresh`.
    pub async fn refresh(&self) -> Result<AuthState, ClientError> {
        self.0
            .post_json("/api/auth/refresh", &serde_json::json!({}))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_callback_is_traded() {
        let cb = "https://relay.example/taobao/cb";
        assert_eq!(check_callback(cb, None), Ok(()));
        assert_eq!(check_callback(cb, Some(cb)), Ok(()));
        assert_eq!(
            check_callback(cb, Some("HTTPS://relay.example/taobao/cb")),
            Ok(())
        );
        for other in [
            "https://evil.example/cb",
            "https://relay.example/taobao/cb2",
            "http://127.0.0.1:8765/callback",
            "not a url",
        ] {
            let e = check_callback(cb, Some(other)).unwrap_err();
            assert!(e.contains(cb) && e.contains(other), "{e}");
        }
        // No callback configured: nothing is traded.
        assert!(check_callback("", None).is_err());
        assert!(check_callback("", Some(cb)).is_err());
    }
}
