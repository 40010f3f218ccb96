//! OAuth 2.0 server flow (TAOBAO.md §4): `GET /oauth/authorize` and `POST /oauth/token`.
//!
//! * `authorize` approves at once and answers `302 Location: redirect_uri?code=…&state=…`; with
//!   the deny switch on (`POST /sandbox/oauth {"deny":true}`) it answers
//!   `?error=access_denied&error_description=authorize%20reject&state=…` instead.
//! * `token` accepts `grant_type=authorization_code` and `grant_type=refresh_token`, checks
//!   `client_id` / `client_secret`, and answers the bare token object of §4.2 (HTTP 200), or
//!   HTTP 400 `{"error":"invalid_client","error_description":…}` for every grant failure.
//!
//! Fault filters name these endpoints `oauth.authorize` and `oauth.token`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::Sandbox;
use crate::auth::Issued;
use crate::faults::Transport;
use crate::gateway::{dropped, finish};
use crate::params::Params;

/// Characters left as they are in URL components: RFC 3986 unreserved.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        json!({"error": error, "error_description": description}).to_string(),
    )
        .into_response()
}

fn grant_failed(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_client", description)
}

/// The token object of TAOBAO.md §4.2 (also the `token_result` string of
/// `taobao.top.auth.token.create`).
pub fn token_json(i: &Issued, seller_id: i64, seller_nick: &str) -> Value {
    let ms = |secs: u64| {
        i.issued_at_ms
            .saturating_add(i64::try_from(secs).unwrap_or(0).saturating_mul(1000))
    };
    let w2 = i.expires_in.min(1800);
    json!({
        "access_token": i.access_token,
        "token_type": "Bearer",
        "expires_in": i.expires_in,
        "refresh_token": i.refresh_token,
        "re_expires_in": i.re_expires_in,
        "r1_expires_in": i.expires_in,
        "r2_expires_in": i.expires_in,
        "w1_expires_in": i.expires_in,
        "w2_expires_in": w2,
        "taobao_user_id": seller_id.to_string(),
        // Newer captures URL-encode the nick; clients must decode it.
        "taobao_user_nick": enc(seller_nick),
        "taobao_open_uid": format!("AAG{:x}", seller_id),
        "expire_time": ms(i.expires_in),
        "refresh_token_valid_time": ms(i.re_expires_in),
        "r1_valid": ms(i.expires_in),
        "r2_valid": ms(i.expires_in),
        "w1_valid": ms(i.expires_in),
        "w2_valid": ms(w2),
    })
}

/// Transport faults for the OAuth endpoints. `Some(response)` ends the call now.
fn transport(sb: &Sandbox, name: &str) -> (Option<Response>, Option<Transport>) {
    let now = sb.clock.now_ms();
    let t = sb.world().faults.transport(name, now);
    match t {
        Some(Transport::Drop) => (Some(dropped()), None),
        Some(Transport::Status(code)) => (Some(crate::gateway::http_error(code)), None),
        other => (None, other),
    }
}

/// `GET /oauth/authorize`.
pub async fn authorize(State(sb): State<Arc<Sandbox>>, uri: Uri) -> Response {
    let (early, t) = transport(&sb, "oauth.authorize");
    if let Some(r) = early {
        return r;
    }
    let resp = authorize_now(&sb, uri.query().unwrap_or(""));
    finish(resp, t).await
}

fn authorize_now(sb: &Sandbox, query: &str) -> Response {
    let p = match Params::merge(query.as_bytes(), b"") {
        Ok(p) => p,
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "query is not UTF-8",
            );
        }
    };
    let Some(client_id) = p.get("client_id") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "client_id is required",
        );
    };
    if sb.secret_for(client_id).is_none() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "client_id is not a known app key",
        );
    }
    match p.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                "the sandbox serves the server flow only (response_type=code)",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "response_type is required",
            );
        }
    }
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri is required",
        );
    };
    if !(redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://")) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri must be an http(s) URL",
        );
    }
    match p.get("view") {
        None | Some("web") | Some("wap") | Some("tmall") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "view must be web or wap",
            );
        }
    }
    let now = sb.clock.now_ms();
    let mut w = sb.world();
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if w.settings.oauth_deny {
        pairs.push(("error", "access_denied".into()));
        pairs.push(("error_description", "authorize reject".into()));
    } else {
        let life = w.settings.lifetimes();
        pairs.push(("code", w.auth.new_code(client_id, redirect_uri, now, life)));
    }
    drop(w);
    if let Some(state) = p.get("state") {
        pairs.push(("state", state.to_string()));
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let q: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    let location = format!("{redirect_uri}{sep}{}", q.join("&"));
    tracing::info!(
        client_id,
        denied = location.contains("error="),
        "oauth authorize"
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `POST /oauth/token`.
pub async fn token(State(sb): State<Arc<Sandbox>>, uri: Uri, body: Bytes) -> Response {
    let (early, t) = transport(&sb, "oauth.token");
    if let Some(r) = early {
        return r;
    }
    let resp = token_now(&sb, uri.query().unwrap_or(""), &body);
    finish(resp, t).await
}

fn token_now(sb: &Sandbox, query: &str, body: &[u8]) -> Response {
    let p = match Params::merge(query.as_bytes(), body) {
        Ok(p) => p,
        Err(_) => return grant_failed("request is not UTF-8"),
    };
    let Some(client_id) = p.get("client_id") else {
        return grant_failed("client_id is required");
    };
    let Some(secret) = sb.secret_for(client_id) else {
        return grant_failed("client_id is not a known app key");
    };
    // Compare without an early exit; the secret is never echoed or logged.
    let given = p.get("client_secret").unwrap_or("");
    let same = given.len() == secret.len()
        && given
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return grant_failed("client_secret is invalid");
    }
    let now = sb.clock.now_ms();
    let mut w = sb.world();
    let life = w.settings.lifetimes();
    let issued = match p.get("grant_type") {
        Some("authorization_code") => {
            let Some(code) = p.get("code") else {
                return grant_failed("code is required");
            };
            w.auth
                .exchange_code(code, client_id, p.get("redirect_uri"), now, life)
        }
        Some("refresh_token") => {
            let Some(rt) = p.get("refresh_token") else {
                return grant_failed("refresh_token is required");
            };
            w.auth.refresh(rt, client_id, now, life)
        }
        Some(_) => return grant_failed("grant_type must be authorization_code or refresh_token"),
        None => return grant_failed("grant_type is required"),
    };
    match issued {
        Ok(i) => {
            tracing::info!(client_id, grant = ?p.get("grant_type"), "oauth token issued");
            let body = token_json(&i, sb.seller_id, &sb.seller_nick);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => {
            tracing::info!(client_id, grant = ?p.get("grant_type"), "oauth grant refused");
            grant_failed(&e.0)
        }
    }
}
