//! Shared helpers for the sandbox's integration tests: start a sandbox on `127.0.0.1:0`, build
//! and sign gateway calls the way the official Java/Python SDKs lay them out (system parameters
//! in the query, business parameters in the form body), and drive the admin API.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use taobao_sandbox::sign::{self, SignMethod};
use taobao_sandbox::{PreIssued, SandboxConfig, SandboxHandle};

/// The session every test sandbox pre-issues.
pub const SESSION: &str = "test-session-key";
/// Default credentials (TAOBAO.md's vectors).
pub const APP_KEY: &str = "12345678";
pub const SECRET: &str = "helloworld";

/// System parameter names: these go to the URL query, everything else to the body.
const SYSTEM: &[&str] = &[
    "method",
    "app_key",
    "session",
    "timestamp",
    "v",
    "sign_method",
    "sign",
    "format",
    "simplify",
    "partner_id",
    "target_app_key",
];

pub struct Env {
    pub handle: SandboxHandle,
    pub http: reqwest::Client,
}

pub fn config() -> SandboxConfig {
    SandboxConfig {
        sessions: vec![PreIssued::new(SESSION)],
        ..SandboxConfig::default()
    }
}

pub async fn start() -> Env {
    start_with(config()).await
}

pub async fn start_with(cfg: SandboxConfig) -> Env {
    let handle = taobao_sandbox::spawn(cfg).await.expect("sandbox starts");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    Env { handle, http }
}

/// `application/x-www-form-urlencoded` with spaces as `+` (Java URLEncoder, Python quote_plus),
/// or as `%20` when `plus` is false.
pub fn form_encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, plus: bool) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                let e = utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
                if plus { e.replace("%20", "+") } else { e }
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// One gateway call under construction.
pub struct Call<'e> {
    env: &'e Env,
    pub params: BTreeMap<String, String>,
    secret: String,
    sign_method: Option<SignMethod>,
    sign_override: Option<String>,
    unsigned: bool,
    verb: reqwest::Method,
    all_in_body: bool,
}

impl Env {
    pub fn sb(&self) -> &taobao_sandbox::Sandbox {
        self.handle.sandbox()
    }

    /// A call with every system parameter set (json, classic envelope, md5, the test session).
    pub fn call(&self, method: &str) -> Call<'_> {
        let mut params = BTreeMap::new();
        params.insert("method".into(), method.into());
        params.insert("app_key".into(), APP_KEY.into());
        params.insert("session".into(), SESSION.into());
        params.insert("timestamp".into(), self.sb().now_gmt8());
        params.insert("v".into(), "2.0".into());
        params.insert("format".into(), "json".into());
        params.insert("sign_method".into(), "md5".into());
        Call {
            env: self,
            params,
            secret: SECRET.into(),
            sign_method: Some(SignMethod::Md5),
            sign_override: None,
            unsigned: false,
            verb: reqwest::Method::POST,
            all_in_body: false,
        }
    }

    pub async fn admin(
        &self,
        verb: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.handle.base_url(), path);
        let mut req = self.http.request(verb, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin call");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("admin body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("admin JSON")
        };
        (status, v)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.admin(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.admin(reqwest::Method::GET, path, None).await
    }

    /// An item with two SKUs (11: 10 units, 12: 5 units) and one without (20 units).
    pub async fn seed_items(&self) {
        let (s, _) = self
            .post(
                "/sandbox/items",
                json!({"num_iid": 600123456789i64, "title": "测试T恤", "outer_id": "TS", "price": "59.00",
                       "skus": [{"sku_id": 4567890123456i64, "outer_id": "SKU-红色-XL", "quantity": 10},
                                {"sku_id": 4567890123457i64, "outer_id": "SKU-黑色-XL", "quantity": 5}]}),
            )
            .await;
        assert_eq!(s, 201);
        let (s, _) = self
            .post(
                "/sandbox/items",
                json!({"num_iid": 600000000002i64, "title": "马克杯", "outer_id": "MUG", "quantity": 20, "price": "29.90"}),
            )
            .await;
        assert_eq!(s, 201);
    }

    /// Creates a trade through the admin API; returns (tid, oids).
    pub async fn trade(&self, body: Value) -> (i64, Vec<i64>) {
        let (s, v) = self.post("/sandbox/trades", body).await;
        assert_eq!(s, 201, "{v}");
        let tid = v["tid"].as_i64().expect("tid");
        let oids = v["oids"]
            .as_array()
            .expect("oids")
            .iter()
            .map(|o| o.as_i64().expect("oid"))
            .collect();
        (tid, oids)
    }
}

pub const T_SHIRT: i64 = 600123456789;
pub const SKU_RED: i64 = 4567890123456;
pub const SKU_BLACK: i64 = 4567890123457;
pub const MUG: i64 = 600000000002;

impl<'e> Call<'e> {
    pub fn p(mut self, k: &str, v: impl ToString) -> Self {
        self.params.insert(k.into(), v.to_string());
        self
    }
    pub fn without(mut self, k: &str) -> Self {
        self.params.remove(k);
        self
    }
    pub fn secret(mut self, s: &str) -> Self {
        self.secret = s.into();
        self
    }
    /// Signs with `m` and sends `sign_method=<m>`.
    pub fn sign_method(mut self, m: SignMethod) -> Self {
        self.sign_method = Some(m);
        self.params.insert("sign_method".into(), m.as_str().into());
        self
    }
    /// Leaves `sign_method` out (the gateway then assumes md5).
    pub fn no_sign_method(mut self) -> Self {
        self.sign_method = Some(SignMethod::Md5);
        self.params.remove("sign_method");
        self
    }
    pub fn sign_with(mut self, sign: &str) -> Self {
        self.sign_override = Some(sign.into());
        self
    }
    pub fn unsigned(mut self) -> Self {
        self.unsigned = true;
        self
    }
    pub fn verb(mut self, v: reqwest::Method) -> Self {
        self.verb = v;
        self
    }
    pub fn all_in_body(mut self) -> Self {
        self.all_in_body = true;
        self
    }
    pub fn simplify(self) -> Self {
        self.p("simplify", "true")
    }

    /// The final parameter set, `sign` included.
    pub fn signed_params(&self) -> BTreeMap<String, String> {
        let mut p = self.params.clone();
        if !self.unsigned {
            let s = match &self.sign_override {
                Some(s) => s.clone(),
                None => sign::sign(
                    self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    &self.secret,
                    self.sign_method.unwrap_or(SignMethod::Md5),
                ),
            };
            p.insert("sign".into(), s);
        }
        p
    }

    pub async fn raw(self) -> reqwest::Response {
        let p = self.signed_params();
        let (sys, biz): (Vec<_>, Vec<_>) = p
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .partition(|(k, _)| SYSTEM.contains(k) && !self.all_in_body);
        let query = form_encode(sys, true);
        let body = form_encode(biz, true);
        let rest = self.env.handle.rest_url();
        let url = if query.is_empty() {
            rest
        } else {
            format!("{rest}?{query}")
        };
        let mut req = self.env.http.request(self.verb.clone(), url);
        if self.verb == reqwest::Method::GET {
            // GET: everything in the query.
            let all = form_encode(p.iter().map(|(k, v)| (k.as_str(), v.as_str())), true);
            req = self
                .env
                .http
                .get(format!("{}?{all}", self.env.handle.rest_url()));
        } else {
            req = req
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded;charset=utf-8",
                )
                .body(body);
        }
        req.send().await.expect("gateway call")
    }

    /// Sends and parses the JSON reply (HTTP 200 asserted).
    pub async fn send(self) -> Value {
        let resp = self.raw().await;
        assert_eq!(
            resp.status().as_u16(),
            200,
            "TOP answers HTTP 200 for success and errors"
        );
        let text = resp.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

/// `error_response.code`, or 0 for a success.
pub fn code(v: &Value) -> i64 {
    v.get("error_response")
        .map(|e| e["code"].as_i64().expect("code"))
        .unwrap_or(0)
}

pub fn sub_code(v: &Value) -> String {
    v["error_response"]["sub_code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Polls `cond` every 20 ms for up to 5 s.
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..250 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
