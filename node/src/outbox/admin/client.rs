//! A client for the node's admin HTTP API, used by `wms-node queue …` (and `wms-node auth …`)
//! while the node runs.

use super::http::{DropRequest, ErrorBody};
use super::{ActionResult, ListFilter, ListPage, OpView, Stats};
use std::time::Duration;

/// Why a call to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the URL (the node is not running): open the store directly.
    #[error("the node's admin API at {url} does not answer: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// The node answered with an error.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The node's message.
        message: String,
    },
    /// The answer could not be read.
    #[error("unexpected answer from {url}: {reason}")]
    Protocol {
        /// The URL called.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

impl ClientError {
    /// Whether the failure says "no such op".
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }
}

/// The admin API of a running node.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the node whose ops server listens at `base` (`http://127.0.0.1:9100`).
    pub fn new(base: &str) -> Result<Self, ClientError> {
        // Every request says it is wms-node's own (the node refuses state-changing requests
        // without it: a web page cannot send it).
        let (name, value) = crate::outbox::admin::ADMIN_HEADER;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(name, reqwest::header::HeaderValue::from_static(value));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .default_headers(headers)
            .build()
            .map_err(|e| ClientError::Protocol {
                url: base.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                ClientError::Unreachable {
                    url: self.base.clone(),
                    reason: e.to_string(),
                }
            } else {
                ClientError::Protocol {
                    url: url.to_owned(),
                    reason: e.to_string(),
                }
            }
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| ClientError::Protocol {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            url: url.to_owned(),
            reason: e.to_string(),
        })
    }

    /// `GET {path}`, decoded as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.call(self.http.get(&url), &url).await
    }

    /// `POST {path}` with `body` as JSON, the answer decoded as JSON.
    pub async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let req = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.call(req, &url).await
    }

    /// `GET /api/queue/ops`.
    pub async fn list(&self, filter: &ListFilter) -> Result<ListPage, ClientError> {
        let url = format!("{}/api/queue/ops", self.base);
        let mut q: Vec<(&str, String)> = Vec::new();
        let state = serde_json::to_value(filter.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned));
        if let Some(s) = state {
            q.push(("state", s));
        }
        if let Some(k) = &filter.kind {
            q.push(("kind", k.clone()));
        }
        if let Some(k) = &filter.key {
            q.push(("key", k.clone()));
        }
        if let Some(a) = filter.after {
            q.push(("after", a.to_string()));
        }
        if let Some(l) = filter.limit {
            q.push(("limit", l.to_string()));
        }
        self.call(self.http.get(&url).query(&q), &url).await
    }

    /// `GET /api/queue/ops/{seq}`.
    pub async fn show(&self, seq: u64) -> Result<OpView, ClientError> {
        self.get_json(&format!("/api/queue/ops/{seq}")).await
    }

    /// `POST /api/queue/ops/{seq}/retry`.
    pub async fn retry(&self, seq: u64) -> Result<ActionResult, ClientError> {
        let url = format!("{}/api/queue/ops/{seq}/retry", self.base);
        self.call(self.http.post(&url), &url).await
    }

    /// `POST /api/queue/ops/{seq}/drop`.
    pub async fn drop_op(
        &self,
        seq: u64,
        reason: &str,
        force: bool,
    ) -> Result<ActionResult, ClientError> {
        let body = DropRequest {
            reason: reason.to_owned(),
            force,
        };
        self.post_json(&format!("/api/queue/ops/{seq}/drop"), &body)
            .await
    }

    /// `GET /api/queue/stats`.
    pub async fn stats(&self) -> Result<Stats, ClientError> {
        self.get_json("/api/queue/stats").await
    }
}
