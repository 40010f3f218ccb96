//! Property: for random parameter sets, a request signed by the client verifies in the
//! sandbox for all three sign methods, and any single-character change to any parameter
//! (name or value, business or system) or to the signature makes it fail.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod taobao_support;

use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use taobao_support::{Env, SESSION};
use wms_node::secret::Secret;
use wms_node::taobao::client::SignedRequest;
use wms_node::taobao::{Params, SignMethod};

/// An app-level API, so random extra parameters are the only business input.
const METHOD: &str = "taobao.logistics.companies.get";

/// Names the gateway or this API interpret; random parameters avoid them.
const RESERVED: &[&str] = &[
    "method",
    "app_key",
    "timestamp",
    "v",
    "format",
    "sign_method",
    "session",
    "partner_id",
    "simplify",
    "sign",
    "target_app_key",
    "fields",
    "is_recommended",
    "order_mode",
];

/// Parameters the gateway checks before the signature (TAOBAO.md §1.7): a change to one of
/// them may fail with that check's code instead of 25.
const CHECKED_FIRST: &[&str] = &["method", "app_key", "timestamp", "v", "format"];

struct Shared {
    rt: tokio::runtime::Runtime,
    env: Env,
    http: reqwest::Client,
}

/// One sandbox for every case (a sandbox per case would dominate the run time).
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("{e}"),
        };
        let env = rt.block_on(Env::start());
        Shared {
            rt,
            env,
            http: reqwest::Client::new(),
        }
    })
}

/// Sends a signed request as is; returns the TOP code (0 = success).
async fn send(s: &Shared, req: &SignedRequest) -> i64 {
    let resp = s
        .http
        .post(s.env.sandbox.rest_url())
        .query(&req.query)
        .form(&req.body)
        .send()
        .await;
    let body: serde_json::Value = match resp {
        Ok(r) => serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or_default(),
        Err(e) => panic!("send: {e}"),
    };
    match body.get("error_response") {
        Some(err) => err
            .get("code")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(-1),
        None if body.is_object() => 0,
        None => -1,
    }
}

/// Changes the character at `pos` (counted in chars) to a different one.
fn tweak(text: &str, pos: Index, replacement: char) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return replacement.to_string();
    }
    let i = pos.index(chars.len());
    // The gateway compares signatures case-insensitively, so a case flip is no change.
    chars[i] = if chars[i].eq_ignore_ascii_case(&replacement) {
        if replacement.eq_ignore_ascii_case(&'x') {
            'y'
        } else {
            'x'
        }
    } else {
        replacement
    };
    chars.into_iter().collect()
}

fn params_strategy() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        "[a-zA-Z][a-zA-Z0-9_.]{0,11}".prop_filter("reserved", |n| !RESERVED.contains(&n.as_str())),
        // Any printable text: spaces inside, `+`, `%`, `&`, `=`, CJK, emoji all survive the
        // form encoding and are signed as decoded.
        "[^\\p{C}\\s]\\PC{0,15}",
        0..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn a_signed_request_verifies_and_any_single_character_change_fails(
        params in params_strategy(),
        method in prop::sample::select(SignMethod::ALL.to_vec()),
        target in any::<Index>(),
        in_name in any::<bool>(),
        pos in any::<Index>(),
        replacement in "[A-Za-z0-9]",
    ) {
        let s = shared();
        let base = Params::new().set("fields", "code,name");
        let p = params.iter().fold(base, |p, (k, v)| p.set(k, v));
        let client = s.env.client(method);
        let session = Secret::new(SESSION);
        let req = client.sign_request(METHOD, &p, Some(&session), s.env.clock().now());
        prop_assert_eq!(s.rt.block_on(send(s, &req)), 0, "{} did not verify", method);

        // Tamper with one parameter (business or system) or with the signature itself.
        let slot = target.index(req.body.len() + req.query.len());
        let replacement = replacement.chars().next().unwrap_or('x');
        let mut bad = req.clone();
        let entry = if slot < req.body.len() {
            &mut bad.body[slot]
        } else {
            &mut bad.query[slot - req.body.len()]
        };
        let name = entry.0.clone();
        if in_name {
            entry.0 = tweak(&entry.0, pos, replacement);
        } else {
            entry.1 = tweak(&entry.1, pos, replacement);
        }
        let new_name = entry.0.clone();
        let code = s.rt.block_on(send(s, &bad));
        let what = if in_name { "name" } else { "value" };
        prop_assert_ne!(code, 0, "a change to the {} of {} was accepted", what, name);
        if CHECKED_FIRST.contains(&name.as_str()) || CHECKED_FIRST.contains(&new_name.as_str()) {
            return Ok(());
        }
        // A renamed `sign` is a missing signature (24); anything else an invalid one (25).
        let expected = if in_name && name == "sign" { 24 } else { 25 };
        prop_assert_eq!(code, expected, "changing the {} of {} gave {}", what, name, code);
    }
}
