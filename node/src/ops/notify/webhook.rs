//! The alert webhooks: the notice op the alert queue holds, and the sink that posts it to a
//! DingTalk (钉钉) or WeCom (企业微信) group robot, or as plain JSON to any HTTP endpoint.
//!
//! | kind | body | signing | success |
//! |---|---|---|---|
//! | `dingtalk` | `{"msgtype":"text","text":{"content":…}}` | optional 加签: `&timestamp=<ms>&sign=<urlencode(base64(HMAC-SHA256(secret, "<ms>\n<secret>")))>` added to the URL | `errcode` 0 |
//! | `wecom` | `{"msgtype":"text","text":{"content":…}}` (content ≤ 2048 bytes) | none (the URL's `key` is the credential) | `errcode` 0 |
//! | `json` | the alert's wire JSON (`firmware_bridge::proto::alert`) | optional: `X-Wms-Timestamp: <ms>`, `X-Wms-Signature: sha256=<hex(HMAC-SHA256(secret, "<ms>.<body>"))>` | any 2xx |
//!
//! Every request carries `Idempotency-Key` (stable across re-deliveries of one notice), and
//! a plain JSON body its episode `id` and `event`, so a receiver can drop a repeat: delivery is
//! at least once. How an answer is taken ([`Outcome`]): no answer, a time-out, 429, 5xx or a
//! robot's "too fast" → retry (after the robot's minute when it said so); 401, 403, 404 or a
//! robot's refusal of our credentials (token, signature, keyword, IP allow-list) → pause the
//! queue and raise `alert_delivery` (the notifier probes again every few minutes, so a fix in
//! the robot's settings needs no restart); any other refusal → that notice goes to the alert
//! dead letters.
//!
//! The URL holds the robot's token and is a secret like the signing secret: neither is ever
//! logged or shown; errors name the host at most.

use super::record::StoredAlert;
use crate::alert::{Alert, AlertEventKind, Severity};
use crate::outbox::{Attempt, Operation, Outcome, Priority, Queue, Sink};
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

/// Which kind of receiver the webhook is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// A DingTalk group's custom robot (自定义机器人).
    DingTalk,
    /// A WeCom group robot (群机器人).
    WeCom,
    /// Any HTTP endpoint: the alert's JSON.
    Json,
}

impl WebhookKind {
    /// `"dingtalk"`, `"wecom"` or `"json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::DingTalk => "dingtalk",
            WebhookKind::WeCom => "wecom",
            WebhookKind::Json => "json",
        }
    }
}

/// Where notices go.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The receiver's kind.
    pub kind: WebhookKind,
    /// The full URL, its token included (a secret).
    pub url: Secret,
    /// DingTalk's signing secret (`SEC…`), or the JSON receiver's HMAC key.
    pub secret: Option<Secret>,
    /// The longest wait for one delivery, connection included.
    pub timeout: Duration,
}

/// What a notice tells people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeEvent {
    /// The alert became active.
    Raised,
    /// It is still active, now more urgent.
    Escalated,
    /// It was resolved.
    Resolved,
}

impl NoticeEvent {
    fn wire(self) -> AlertEventKind {
        match self {
            NoticeEvent::Raised => AlertEventKind::Raised,
            NoticeEvent::Escalated => AlertEventKind::Updated,
            NoticeEvent::Resolved => AlertEventKind::Resolved,
        }
    }
}

/// One notice to deliver: what happened, and the alert as it was then. Notices about one
/// `(code, subject)` are delivered in order, and a newer one replaces an older one that has
/// not gone out yet (a raised-then-resolved alert during an outage arrives as one resolution).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertNotice {
    /// What happened.
    pub event: NoticeEvent,
    /// The alert.
    pub alert: StoredAlert,
}

impl AlertNotice {
    fn key_string(&self) -> String {
        match &self.alert.subject {
            Some((k, i)) => format!("alert:{:05} {k} {i}", self.alert.code),
            None => format!("alert:{:05}", self.alert.code),
        }
    }
}

impl Operation for AlertNotice {
    const QUEUE: Queue = super::ALERT_QUEUE;

    fn fifo_key(&self) -> String {
        self.key_string()
    }

    fn coalesce_key(&self) -> Option<String> {
        Some(self.key_string())
    }

    fn priority(&self) -> Priority {
        if self.alert.severity == Severity::Critical {
            Priority::Urgent
        } else {
            Priority::Normal
        }
    }

    fn kind(&self) -> &'static str {
        match self.event {
            NoticeEvent::Raised => "alert_raised",
            NoticeEvent::Escalated => "alert_escalated",
            NoticeEvent::Resolved => "alert_resolved",
        }
    }

    fn summary(&self) -> String {
        let code = crate::alert::AlertCode::from_number(self.alert.code)
            .map_or_else(|| self.alert.code.to_string(), |c| c.as_str().to_owned());
        match &self.alert.subject {
            Some((k, i)) => format!("{} {code} ({k} {i})", self.kind()),
            None => format!("{} {code}", self.kind()),
        }
    }
}

/// One request: the URL (its token included: never log it), the body, extra headers.
pub type Request = (String, Vec<u8>, Vec<(&'static str, String)>);

/// Posts notices to the webhook. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSink {
    http: reqwest::Client,
    hook: Webhook,
    node_id: String,
    site: String,
    offset: chrono::FixedOffset,
}

impl WebhookSink {
    /// A sink for `hook`, saying it comes from node `node_id` of `site`, with times in the
    /// warehouse's `offset` from UTC.
    pub fn new(
        hook: Webhook,
        node_id: &str,
        site: &str,
        offset: chrono::FixedOffset,
    ) -> Result<WebhookSink, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(hook.timeout.min(Duration::from_secs(10)))
            .timeout(hook.timeout)
            .user_agent(format!("wms-node/{}", crate::VERSION))
            .build()
            .map_err(|e| e.without_url().to_string())?;
        Ok(WebhookSink {
            http,
            hook,
            node_id: node_id.to_owned(),
            site: site.to_owned(),
            offset,
        })
    }

    /// The request for one notice at `now_ms`: the URL (signed for DingTalk), the body and
    /// the extra headers.
    pub fn request(&self, notice: &AlertNotice, now_ms: u64) -> Result<Request, String> {
        let alert = notice
            .alert
            .to_alert()
            .ok_or_else(|| format!("alert code {} is unknown to this build", notice.alert.code))?;
        let mut url = self.hook.url.expose().to_owned();
        let mut headers = Vec::new();
        let body = match self.hook.kind {
            WebhookKind::DingTalk | WebhookKind::WeCom => {
                let limit = if self.hook.kind == WebhookKind::WeCom {
                    WECOM_MAX_CONTENT
                } else {
                    DINGTALK_MAX_CONTENT
                };
                let mut content = text(
                    notice.event,
                    &alert,
                    &self.node_id,
                    &self.site,
                    self.offset,
                    now_ms,
                );
                crate::alert::cut(&mut content, limit);
                serde_json::to_vec(&serde_json::json!({
                    "msgtype": "text",
                    "text": {"content": content},
                }))
                .map_err(|e| e.to_string())?
            }
            WebhookKind::Json => {
                let msg = alert.to_message(notice.event.wire(), &self.node_id, &self.site);
                firmware_bridge::proto::json::to_vec(&msg).map_err(|e| e.to_string())?
            }
        };
        if let Some(secret) = &self.hook.secret {
            match self.hook.kind {
                WebhookKind::DingTalk => {
                    let sign = dingtalk_sign(secret.expose(), now_ms);
                    url.push(if url.contains('?') { '&' } else { '?' });
                    url.push_str(&format!("timestamp={now_ms}&sign={sign}"));
                }
                WebhookKind::Json => {
                    headers.push(("x-wms-timestamp", now_ms.to_string()));
                    headers.push((
                        "x-wms-signature",
                        format!("sha256={}", json_sign(secret.expose(), now_ms, &body)),
                    ));
                }
                WebhookKind::WeCom => {}
            }
        }
        Ok((url, body, headers))
    }

    async fn post(&self, notice: &AlertNotice, idempotency_key: &str) -> Outcome {
        let now = crate::alert::now_ms();
        let (url, body, headers) = match self.request(notice, now) {
            Ok(r) => r,
            Err(reason) => return Outcome::Permanent { reason },
        };
        let mut req = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .header("idempotency-key", idempotency_key)
            .body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // Without the URL: it holds the robot's token.
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: format!("the webhook did not answer: {}", e.without_url()),
                };
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    reason: format!("the webhook's answer broke off: {}", e.without_url()),
                };
            }
        };
        classify(self.hook.kind, status.as_u16(), retry_after, &text)
    }
}

impl Sink<AlertNotice> for WebhookSink {
    async fn deliver(&self, attempt: Attempt<'_, AlertNotice>) -> Outcome {
        self.post(attempt.op, attempt.idempotency_key).await
    }
}

/// DingTalk's text messages are limited to 20,000 bytes; ours stay far below.
const DINGTALK_MAX_CONTENT: usize = 4000;
/// WeCom's text messages are limited to 2048 bytes of UTF-8.
const WECOM_MAX_CONTENT: usize = 2048;

/// The robots' limit of 20 messages a minute: after "too fast", wait the minute out.
const ROBOT_MINUTE: Duration = Duration::from_secs(60);

/// What an answer means (see the module doc).
pub fn classify(
    kind: WebhookKind,
    status: u16,
    retry_after: Option<Duration>,
    body: &str,
) -> Outcome {
    let snippet = || {
        let mut s: String = body.chars().filter(|c| !c.is_control()).take(200).collect();
        if s.is_empty() {
            s.push_str("(empty)");
        }
        s
    };
    match status {
        200..=299 => {}
        429 => {
            return Outcome::Retry {
                after: retry_after.or(Some(ROBOT_MINUTE)),
                reason: "the webhook says: too many requests (HTTP 429)".into(),
            };
        }
        401 | 403 | 404 => {
            return Outcome::Auth {
                reason: format!(
                    "the webhook refuses us (HTTP {status}): check alerts.url and alerts.secret"
                ),
            };
        }
        500..=599 | 408 => {
            return Outcome::Retry {
                after: retry_after,
                reason: format!("the webhook failed (HTTP {status})"),
            };
        }
        _ => {
            return Outcome::Permanent {
                reason: format!(
                    "the webhook refused the notice (HTTP {status}): {}",
                    snippet()
                ),
            };
        }
    }
    if kind == WebhookKind::Json {
        return Outcome::Done;
    }
    #[derive(Deserialize)]
    struct RobotAnswer {
        errcode: Option<i64>,
        errmsg: Option<String>,
    }
    let Ok(answer) = serde_json::from_str::<RobotAnswer>(body) else {
        return Outcome::Retry {
            after: None,
            reason: format!("the robot's answer is not JSON: {}", snippet()),
        };
    };
    let code = answer.errcode.unwrap_or(0);
    let msg: String = answer
        .errmsg
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let lower = msg.to_ascii_lowercase();
    match code {
        0 => Outcome::Done,
        // System busy.
        -1 => Outcome::Retry {
            after: None,
            reason: format!("the robot is busy ({code}: {msg})"),
        },
        // DingTalk: "send too fast"; WeCom 45009: "api freq out of limit".
        130101 | 410100 | 45009 => Outcome::Retry {
            after: Some(ROBOT_MINUTE),
            reason: format!("the robot limits us ({code}: {msg})"),
        },
        _ if lower.contains("too fast") || lower.contains("freq") || lower.contains("limit") => {
            Outcome::Retry {
                after: Some(ROBOT_MINUTE),
                reason: format!("the robot limits us ({code}: {msg})"),
            }
        }
        // DingTalk 310000: keyword, signature or IP allow-list; 300001, 400101: the token;
        // WeCom 93000: the key. Wrong for every notice: pause and tell.
        310000 | 300001 | 300005 | 400101 | 93000 | 40001 => Outcome::Auth {
            reason: format!(
                "the robot refuses our notices ({code}: {msg}): check alerts.url, alerts.secret \
                 and the robot's security settings (keyword, signing, IP allow-list)"
            ),
        },
        _ if ["token", "sign", "keyword", "whitelist", "ip "]
            .iter()
            .any(|w| lower.contains(w)) =>
        {
            Outcome::Auth {
                reason: format!(
                    "the robot refuses our notices ({code}: {msg}): check alerts.url, \
                     alerts.secret and the robot's security settings"
                ),
            }
        }
        _ => Outcome::Permanent {
            reason: format!("the robot refused the notice ({code}: {msg})"),
        },
    }
}

/// DingTalk's signature of a request at `timestamp_ms`: base64 of HMAC-SHA256 keyed with the
/// secret over `"<timestamp>\n<secret>"`, URL-encoded (DingTalk's custom robot docs, 加签).
pub fn dingtalk_sign(secret: &str, timestamp_ms: u64) -> String {
    use base64::Engine as _;
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes a key of any length.
        Err(_) => return String::new(),
    };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    percent_encoding::utf8_percent_encode(&b64, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The JSON webhook's signature: hex of HMAC-SHA256 keyed with the secret over
/// `"<timestamp>.<body>"`.
pub fn json_sign(secret: &str, timestamp_ms: u64, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The robots' text: a first line a phone's notification shows whole (starting with
/// `[wms-node]`, which makes a good DingTalk keyword), then what and where, what to do, and
/// when (in the warehouse's time).
pub fn text(
    event: NoticeEvent,
    a: &Alert,
    node_id: &str,
    site: &str,
    offset: chrono::FixedOffset,
    now_ms: u64,
) -> String {
    let what = match event {
        NoticeEvent::Raised => a.severity.as_str().to_ascii_uppercase(),
        NoticeEvent::Escalated => format!("NOW {}", a.severity.as_str().to_ascii_uppercase()),
        NoticeEvent::Resolved => "RESOLVED".to_owned(),
    };
    let mut t = format!(
        "[wms-node] {what}: {} ({})\nnode {node_id} @ {site}",
        a.code,
        a.code.number()
    );
    if let Some(s) = &a.subject {
        t.push_str(&format!(" · {s}"));
    }
    t.push('\n');
    if event == NoticeEvent::Resolved {
        t.push_str("was: ");
    }
    t.push_str(&a.message);
    let when = |ms: u64| local(ms, offset);
    let count = if a.count == 1 {
        String::new()
    } else {
        format!(" · raised {} times", a.count)
    };
    match (event, a.resolved_ms) {
        (NoticeEvent::Resolved, Some(r)) => t.push_str(&format!(
            "\nresolved {} after {}{count}",
            when(r),
            crate::status::age(a.active_for(r))
        )),
        _ => t.push_str(&format!(
            "\nsince {} ({} ago){count}",
            when(a.first_seen_ms),
            crate::status::age(Duration::from_millis(
                now_ms.saturating_sub(a.first_seen_ms)
            ))
        )),
    }
    t
}

/// `2026-12-07 14:43:10 +08:00`.
pub fn local(ms: u64, offset: chrono::FixedOffset) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .with_timezone(&offset)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertCode, Subject};

    fn alert() -> Alert {
        Alert {
            id: 9,
            code: AlertCode::DeadLetter,
            severity: Severity::Critical,
            subject: Some(Subject::op_kind("ship")),
            message: "1 ship op refused for good".into(),
            first_seen_ms: 1_733_560_990_000,
            last_seen_ms: 1_733_560_990_000,
            count: 3,
            resolved_ms: None,
        }
    }

    fn cst() -> chrono::FixedOffset {
        chrono::FixedOffset::east_opt(8 * 3600)
            .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).unwrap())
    }

    #[test]
    fn the_dingtalk_signature_matches_the_documented_algorithm() {
        // Worked out independently: python3 -c 'import hmac,hashlib,base64,urllib.parse;
        // print(urllib.parse.quote_plus(base64.b64encode(hmac.new(b"SECtest",
        // b"1700000000000\nSECtest", hashlib.sha256).digest())))'
        let s = dingtalk_sign("SECtest", 1_700_000_000_000);
        assert!(
            !s.contains('+') && !s.contains('/') && !s.contains('='),
            "{s}"
        );
        let decoded = percent_encoding::percent_decode_str(&s)
            .decode_utf8()
            .unwrap();
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(decoded.as_bytes())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"SECtest").unwrap();
        mac.update(b"1700000000000\nSECtest");
        assert_eq!(raw, mac.finalize().into_bytes().to_vec());
    }

    #[test]
    fn texts_say_what_where_what_to_do_and_when_in_local_time() {
        let a = alert();
        let t = text(
            NoticeEvent::Raised,
            &a,
            "gw1",
            "wh1",
            cst(),
            a.first_seen_ms + 180_000,
        );
        assert!(
            t.starts_with("[wms-node] CRITICAL: dead_letter (201)\n"),
            "{t}"
        );
        assert!(t.contains("node gw1 @ wh1 · op_kind ship"), "{t}");
        assert!(t.contains("1 ship op refused for good"), "{t}");
        assert!(
            t.contains("since 2024-12-07 16:43:10 +08:00 (3 min ago) · raised 3 times"),
            "{t}"
        );
        let r = Alert {
            resolved_ms: Some(a.first_seen_ms + 720_000),
            ..a
        };
        let t = text(NoticeEvent::Resolved, &r, "gw1", "wh1", cst(), 0);
        assert!(
            t.starts_with("[wms-node] RESOLVED: dead_letter (201)"),
            "{t}"
        );
        assert!(t.contains("was: 1 ship op"), "{t}");
        assert!(t.contains("after 12 min"), "{t}");
    }

    #[test]
    fn answers_are_classified_once_and_for_all() {
        let d = WebhookKind::DingTalk;
        assert_eq!(
            classify(d, 200, None, r#"{"errcode":0,"errmsg":"ok"}"#),
            Outcome::Done
        );
        assert!(matches!(
            classify(
                d,
                200,
                None,
                r#"{"errcode":310000,"errmsg":"sign not match"}"#
            ),
            Outcome::Auth { .. }
        ));
        assert!(matches!(
            classify(
                d,
                200,
                None,
                r#"{"errcode":310000,"errmsg":"keywords not in content"}"#
            ),
            Outcome::Auth { .. }
        ));
        assert!(matches!(
            classify(d, 200, None, r#"{"errcode":130101,"errmsg":"send too fast"}"#),
            Outcome::Retry { after: Some(a), .. } if a == ROBOT_MINUTE
        ));
        assert!(matches!(
            classify(
                WebhookKind::WeCom,
                200,
                None,
                r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#
            ),
            Outcome::Auth { .. }
        ));
        assert!(matches!(
            classify(
                WebhookKind::WeCom,
                200,
                None,
                r#"{"errcode":40008,"errmsg":"invalid message type"}"#
            ),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(d, 200, None, "<html>"),
            Outcome::Retry { .. }
        ));
        let j = WebhookKind::Json;
        assert_eq!(classify(j, 204, None, ""), Outcome::Done);
        assert!(matches!(
            classify(j, 503, Some(Duration::from_secs(7)), ""),
            Outcome::Retry { after: Some(a), .. } if a == Duration::from_secs(7)
        ));
        assert!(matches!(classify(j, 403, None, ""), Outcome::Auth { .. }));
        assert!(matches!(
            classify(j, 422, None, "bad"),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn requests_carry_the_signature_and_never_lose_the_token() {
        let hook = |kind, secret: Option<&str>| Webhook {
            kind,
            url: Secret::new("http://127.0.0.1:1/robot/send?access_token=tok"),
            secret: secret.map(Secret::new),
            timeout: Duration::from_secs(5),
        };
        let notice = AlertNotice {
            event: NoticeEvent::Raised,
            alert: StoredAlert::from(&alert()),
        };
        let sink = WebhookSink::new(
            hook(WebhookKind::DingTalk, Some("SECx")),
            "gw1",
            "wh1",
            cst(),
        )
        .unwrap();
        let (url, body, headers) = sink.request(&notice, 1_700_000_000_000).unwrap();
        assert!(url.starts_with(
            "http://127.0.0.1:1/robot/send?access_token=tok&timestamp=1700000000000&sign="
        ));
        assert!(url.ends_with(&dingtalk_sign("SECx", 1_700_000_000_000)));
        assert!(headers.is_empty());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["msgtype"], "text");
        assert!(
            v["text"]["content"]
                .as_str()
                .unwrap()
                .starts_with("[wms-node] CRITICAL")
        );

        let sink =
            WebhookSink::new(hook(WebhookKind::Json, Some("k")), "gw1", "wh1", cst()).unwrap();
        let (_, body, headers) = sink.request(&notice, 5).unwrap();
        let m = firmware_bridge::proto::json::decode_alert(&body).unwrap();
        assert_eq!(
            (m.id.as_str(), m.code.as_str(), m.count),
            ("9", "dead_letter", 3)
        );
        assert_eq!(headers[1].1, format!("sha256={}", json_sign("k", 5, &body)));

        let mut long = alert();
        long.message = "库".repeat(900);
        let notice = AlertNotice {
            event: NoticeEvent::Raised,
            alert: StoredAlert::from(&long),
        };
        let sink = WebhookSink::new(hook(WebhookKind::WeCom, None), "gw1", "wh1", cst()).unwrap();
        let (_, body, _) = sink.request(&notice, 5).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["text"]["content"].as_str().unwrap().len() <= WECOM_MAX_CONTENT);
        // Nothing secret in Debug.
        let dbg = format!("{:?}", hook(WebhookKind::DingTalk, Some("SECx")));
        assert!(!dbg.contains("tok") && !dbg.contains("SECx"), "{dbg}");
    }
}
