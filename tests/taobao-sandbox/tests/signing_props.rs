//! Property tests of the signature check: random parameter sets signed by the sandbox's signer
//! verify for all three methods, and any single-character change of a name, a value or the sign
//! makes verification fail. Once on the pure verifier (many cases), once over HTTP (fewer).

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use taobao_sandbox::sign::{self, SignMethod};

fn method() -> impl Strategy<Value = SignMethod> {
    prop_oneof![
        Just(SignMethod::Md5),
        Just(SignMethod::HmacMd5),
        Just(SignMethod::HmacSha256)
    ]
}

/// Names as TOP uses them (lower case, digits, `_`, `.`) and values with spaces, CJK, symbols
/// that need percent-encoding, `+`, `&`, `=` and `%`.
fn params() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        "[a-z][a-z0-9_.]{0,11}",
        "[a-zA-Z0-9 +&=%:,._红色商家-]{1,24}",
        1..10,
    )
    .prop_filter("`sign` itself is never signed", |m| !m.contains_key("sign"))
}

/// Replaces the character at `at` (modulo the length) with a different one.
fn mutate(s: &str, at: usize, with: char) -> String {
    let chars: Vec<char> = s.chars().collect();
    let i = at % chars.len();
    let mut out = chars.clone();
    out[i] = if chars[i] == with {
        if with == 'x' { 'y' } else { 'x' }
    } else {
        with
    };
    out.into_iter().collect()
}

/// A different hex digit (not just another case of the same one).
fn mutate_hex(s: &str, at: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let i = at % chars.len();
    let mut out = chars.clone();
    out[i] = if chars[i].eq_ignore_ascii_case(&'0') {
        '1'
    } else {
        '0'
    };
    out.into_iter().collect()
}

fn pairs(p: &BTreeMap<String, String>) -> impl Iterator<Item = (&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_signed_set_verifies_and_any_single_change_fails(
        p in params(),
        m in method(),
        pick in any::<prop::sample::Index>(),
        at in 0usize..64,
        with in "[a-z0-9]",
        what in 0u8..3,
    ) {
        let s = sign::sign(pairs(&p), SECRET, m);
        prop_assert!(sign::verify(pairs(&p), SECRET, m, &s));
        let with = with.chars().next().unwrap_or('x');
        let keys: Vec<&String> = p.keys().collect();
        let key = keys[pick.index(keys.len())].clone();
        match what {
            0 => {
                // Change one character of a name.
                let new_key = mutate(&key, at, with);
                prop_assume!(!p.contains_key(&new_key));
                let mut q = p.clone();
                let v = q.remove(&key).unwrap_or_default();
                q.insert(new_key, v);
                prop_assert!(!sign::verify(pairs(&q), SECRET, m, &s));
            }
            1 => {
                // Change one character of a value.
                let mut q = p.clone();
                let v = q[&key].clone();
                q.insert(key, mutate(&v, at, with));
                prop_assert!(!sign::verify(pairs(&q), SECRET, m, &s));
            }
            _ => {
                // Change one hex digit of the sign.
                prop_assert!(!sign::verify(pairs(&p), SECRET, m, &mutate_hex(&s, at)));
            }
        }
    }
}

/// The same over the gateway: extra random business parameters ride along with a
/// `logistics.companies.get` call (which ignores unknown parameters but signs everything), in
/// the form body, percent-encoded on the wire.
#[test]
fn signed_requests_verify_over_http_and_single_changes_are_25() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = rt.block_on(start());
    let reserved = [
        "method",
        "app_key",
        "session",
        "timestamp",
        "v",
        "format",
        "sign_method",
        "sign",
        "fields",
        "simplify",
        "partner_id",
        "target_app_key",
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    let strategy = (
        params(),
        method(),
        any::<prop::sample::Index>(),
        0usize..64,
        "[a-z0-9]",
        0u8..3,
    );
    runner
        .run(&strategy, |(p, m, pick, at, with, what)| {
            let p: BTreeMap<String, String> = p
                .into_iter()
                .filter(|(k, _)| !reserved.contains(&k.as_str()))
                .collect();
            prop_assume!(!p.is_empty());
            rt.block_on(async {
                let mut call = env
                    .call("taobao.logistics.companies.get")
                    .p("fields", "code")
                    .sign_method(m);
                for (k, v) in &p {
                    call = call.p(k, v);
                }
                let good = call.signed_params();
                prop_assert_eq!(code(&post(&env, &good).await), 0);
                let keys: Vec<&String> = p.keys().collect();
                let key = keys[pick.index(keys.len())].clone();
                let with = with.chars().next().unwrap_or('x');
                let mut bad = good.clone();
                match what {
                    0 => {
                        let new_key = mutate(&key, at, with);
                        prop_assume!(
                            !bad.contains_key(&new_key) && !reserved.contains(&new_key.as_str())
                        );
                        let v = bad.remove(&key).unwrap_or_default();
                        bad.insert(new_key, v);
                    }
                    1 => {
                        let v = bad[&key].clone();
                        bad.insert(key, mutate(&v, at, with));
                    }
                    _ => {
                        let s = bad["sign"].clone();
                        bad.insert("sign".into(), mutate_hex(&s, at));
                    }
                }
                prop_assert_eq!(code(&post(&env, &bad).await), 25);
                Ok(())
            })
        })
        .unwrap();
}

async fn post(env: &Env, p: &BTreeMap<String, String>) -> serde_json::Value {
    env.http
        .post(env.handle.rest_url())
        .header(
            "content-type",
            "application/x-www-form-urlencoded;charset=utf-8",
        )
        .body(form_encode(pairs(p), true))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
