//! `GET|POST /router/rest`: the TOP gateway.
//!
//! Check order (TAOBAO.md §1.7); the first failing check answers, always with HTTP 200 and an
//! `error_response` carrying a fresh `request_id`:
//!
//! ```text
//!  0 verb GET/POST ............................ 9  Http Action Not Allowed
//!  1 merge query + body (body wins) ........... 47 Invalid encoding (bytes not UTF-8)
//!    transport faults (outage, http_500) ...... connection closed / HTTP 5xx
//!  2 method present / known ................... 21 / 22
//!  3 app_key present / known .................. 28 / 29
//!  4 timestamp present / parses / ±600 s ...... 30 / 31
//!  5 v present / 2.0 .......................... 32 / 33 (34 for another number)
//!  6 format absent, json or xml ............... 23
//!  7 sign present ............................. 24
//!  8 sign_method known, signature matches ..... 25
//!  9 session present (if the API needs one) .. 26
//! 10 session valid for this app ............... 27 + sub_code
//! 11 injected ban, then the token bucket ...... 7  + "This ban will last for N more seconds"
//!    injected isp error ....................... 15 isp.*
//! 12 business parameters ...................... 40 / 41
//! 13 business outcome ......................... success or 15 isv.*
//! ```
//!
//! Every call is appended to the call log (`GET /sandbox/calls`) with its code. Nothing secret
//! (session, sign, secret) or personal is logged.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::Sandbox;
use crate::api::{self, Ctx};
use crate::clock::{format_rfc3339_ms, parse_request_timestamp};
use crate::envelope::{Format, Style, TopError, new_request_id, render_error, render_success};
use crate::faults::Transport;
use crate::params::Params;
use crate::sign::{self, SignMethod};
use crate::state::CallRecord;

/// Largest accepted clock difference between the caller and the sandbox (TAOBAO.md §1.4).
pub const MAX_SKEW_MS: i64 = 600_000;

/// Marker placed in a response's extensions: the server closes the connection instead of
/// sending it (outage, reset).
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// A response that makes the server close the connection without replying. When the router is
/// served by something other than [`crate::spawn`], it degrades to an empty 503.
pub fn dropped() -> Response {
    let mut r = (axum::http::StatusCode::SERVICE_UNAVAILABLE, "").into_response();
    r.extensions_mut().insert(DropConnection);
    r
}

/// The front-end error page of an injected 5xx.
pub fn http_error(status: u16) -> Response {
    let code = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!(
        "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center><hr><center>sandbox-tengine</center></body></html>"
    );
    (code, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// Applies the post-processing part of a transport fault.
pub async fn finish(resp: Response, transport: Option<Transport>) -> Response {
    match transport {
        Some(Transport::Delay(s)) => {
            tokio::time::sleep(std::time::Duration::from_secs(s)).await;
            resp
        }
        Some(Transport::ResetAfter) | Some(Transport::Drop) => dropped(),
        Some(Transport::Status(code)) => http_error(code),
        None => resp,
    }
}

fn fault_name(t: Option<Transport>) -> Option<String> {
    t.map(|t| {
        match t {
            Transport::Drop => "outage",
            Transport::Status(_) => "http_500",
            Transport::Delay(_) => "slow",
            Transport::ResetAfter => "reset",
        }
        .to_string()
    })
}

/// The axum handler.
pub async fn rest(
    State(sb): State<Arc<Sandbox>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let (resp, transport) = handle(&sb, &method, uri.query().unwrap_or(""), &body);
    finish(resp, transport).await
}

fn reply(content_type: &'static str, body: String) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The synchronous part of one call: checks, business, call log. Returns the reply and the
/// transport fault still to apply.
pub fn handle(
    sb: &Sandbox,
    verb: &Method,
    query: &str,
    body: &[u8],
) -> (Response, Option<Transport>) {
    let request_id = new_request_id();
    let now_ms = sb.clock.now_ms();
    if verb != Method::GET && verb != Method::POST {
        let e = TopError::new(9, "Http Action Not Allowed");
        sb.record(String::new(), Err(&e), None, now_ms, Default::default());
        let (ct, b) = render_error(&e, &request_id, Format::Json);
        return (reply(ct, b), None);
    }
    let params = match Params::merge(query.as_bytes(), body) {
        Ok(p) => p,
        Err(_) => {
            let e = TopError::new(47, "Invalid encoding");
            sb.record(String::new(), Err(&e), None, now_ms, Default::default());
            let (ct, b) = render_error(&e, &request_id, Format::Json);
            return (reply(ct, b), None);
        }
    };
    let method_name = params.get("method").unwrap_or("").to_string();
    let logged: std::collections::BTreeMap<String, String> = params
        .iter()
        .filter(|(k, _)| crate::state::LOGGED_PARAMS.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let transport = sb.world().faults.transport(&method_name, now_ms);
    match transport {
        Some(Transport::Drop) | Some(Transport::Status(_)) => {
            sb.world().record(CallRecord {
                method: method_name,
                code: -1,
                sub_code: None,
                fault: fault_name(transport),
                at: format_rfc3339_ms(now_ms),
                params: logged,
            });
            return (dropped(), transport);
        }
        _ => {}
    }
    let format = match params.get("format") {
        Some("json") => Format::Json,
        Some("xml") | None => Format::Xml,
        Some(_) => Format::Json,
    };
    let simplify = params.get("simplify") == Some("true");
    let outcome = run_checks(sb, &params, now_ms);
    let ids_as_strings = sb.world().settings.ids_as_strings;
    let style = Style {
        format,
        simplify,
        ids_as_strings,
    };
    let resp = match &outcome {
        Ok(fields) => {
            let (ct, b) = render_success(&method_name, fields, &request_id, &style);
            reply(ct, b)
        }
        Err(e) => {
            let (ct, b) = render_error(e, &request_id, format);
            reply(ct, b)
        }
    };
    match &outcome {
        Ok(_) => tracing::debug!(method = %method_name, %request_id, code = 0, "call"),
        Err(e) => tracing::debug!(
            method = %method_name, %request_id, code = e.code, sub_code = ?e.sub_code, "call refused"
        ),
    }
    sb.record(
        method_name,
        outcome.as_ref().map(|_| ()),
        fault_name(transport),
        now_ms,
        logged,
    );
    (resp, transport)
}

fn run_checks(sb: &Sandbox, p: &Params, now_ms: i64) -> Result<api::Fields, TopError> {
    // 2. method
    let method = p
        .get("method")
        .ok_or_else(|| TopError::new(21, "Missing method"))?;
    let spec = api::find(method).ok_or_else(|| TopError::new(22, "Invalid method"))?;
    // 3. app_key
    let app_key = p
        .get("app_key")
        .ok_or_else(|| TopError::new(28, "Missing app key"))?;
    let secret = sb.secret_for(app_key).ok_or_else(|| {
        TopError::new(29, "Invalid app Key").with_sub("isv.appkey-not-exists", "appkey不存在")
    })?;
    // 4. timestamp
    let ts = p
        .get("timestamp")
        .ok_or_else(|| TopError::new(30, "Missing timestamp"))?;
    let ts_ms = parse_request_timestamp(ts).ok_or_else(|| {
        TopError::new(31, "Invalid timestamp").with_sub(
            "isv.invalid-timestamp",
            "timestamp must be yyyy-MM-dd HH:mm:ss (GMT+8) or epoch ms",
        )
    })?;
    if (now_ms - ts_ms).abs() > MAX_SKEW_MS {
        return Err(TopError::new(31, "Invalid timestamp").with_sub(
            "isv.invalid-timestamp",
            "timestamp differs from the server time by more than 10 minutes",
        ));
    }
    // 5. v
    let v = p
        .get("v")
        .ok_or_else(|| TopError::new(32, "Missing version"))?;
    if v != "2.0" {
        return Err(if v.parse::<f64>().is_ok() {
            TopError::new(34, "Unsupported version")
        } else {
            TopError::new(33, "Invalid version")
        });
    }
    // 6. format
    match p.get("format") {
        None | Some("json") | Some("xml") => {}
        Some(_) => return Err(TopError::new(23, "Invalid format")),
    }
    // 7. sign
    let received = p
        .get("sign")
        .ok_or_else(|| TopError::new(24, "Missing signature"))?;
    // 8. sign_method and signature
    let sign_method = match p.get("sign_method") {
        None => SignMethod::Md5,
        Some(m) => SignMethod::parse(m).ok_or_else(|| {
            TopError::new(25, "Invalid signature").with_sub(
                "isv.invalid-signature-method",
                "sign_method must be md5, hmac or hmac-sha256",
            )
        })?,
    };
    if !sign::verify(p.iter(), secret, sign_method, received) {
        return Err(TopError::new(25, "Invalid signature"));
    }
    let mut w = sb.world();
    // 9-10. session
    if spec.needs_session {
        let session = p
            .get("session")
            .ok_or_else(|| TopError::new(26, "Missing session"))?;
        w.auth
            .check_session(session, app_key, sb.seller_id, now_ms)?;
    }
    // 11. bans and the call limiter
    if let Some(ban) = w.faults.ban(method, now_ms) {
        return Err(ban_error(&ban.sub_code, ban.seconds));
    }
    // The settings hold only positive rates (0 = unlimited is `None`).
    let rate = w
        .settings
        .rate_per_second
        .and_then(|r| firmware_bridge::pace::Rate::per_second(r).ok());
    if let Some(rate) = rate
        && let Err(wait) = w.limiter.check(app_key, method, rate, now_ms)
    {
        return Err(ban_error(
            "accesscontrol.limited-by-app-api-access-count",
            wait,
        ));
    }
    if let Some(sub_code) = w.faults.isp_error(method, now_ms) {
        return Err(TopError::remote(
            sub_code,
            "服务暂时不可用，请稍后重试 (injected)",
        ));
    }
    // 12-13. business
    let ctx = Ctx {
        now_ms,
        app_key,
        seller_nick: &sb.seller_nick,
        seller_id: sb.seller_id,
    };
    spec.call(&mut w, p, &ctx)
}

fn ban_error(sub_code: &str, seconds: u64) -> TopError {
    TopError::new(7, "App Call Limited").with_sub(
        sub_code,
        format!("This ban will last for {seconds} more seconds"),
    )
}
