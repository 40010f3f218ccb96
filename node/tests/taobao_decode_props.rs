//! Property tests of the TOP reply decoder: arbitrary and hostile replies of every method,
//! in both envelopes (`<name>_response` and `simplify=true`), through exactly the code the
//! client runs (`decode::reply`, `api::decode_result`, the error classification and the
//! limiter a ban is recorded in). Nothing may panic; what can be read is read right; a ban
//! is never longer than `MAX_BAN`. The fuzz target `node/fuzz` (`top_reply`) runs the same
//! path for millions of raw inputs by hand.

// Tests and benches report failures by unwrapping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::time::Duration;
use wms_node::taobao::api::{METHODS, decode_result};
use wms_node::taobao::decode::{self, response_key};
use wms_node::taobao::error::MAX_BAN;
use wms_node::taobao::limit::{Limiter, RateLimits};
use wms_node::taobao::types::Trade;
use wms_node::taobao::{Disposition, TopError};

/// Field names of the replies (types.rs) and their list wrappers: generated objects use
/// them, so the decoders get past "missing field" into the values.
const KEYS: &[&str] = &[
    "tid",
    "oid",
    "num_iid",
    "sku_id",
    "refund_id",
    "status",
    "type",
    "modified",
    "created",
    "pay_time",
    "consign_time",
    "end_time",
    "payment",
    "post_fee",
    "total_fee",
    "refund_fee",
    "price",
    "num",
    "quantity",
    "orders",
    "order",
    "trades",
    "trade",
    "items",
    "item",
    "skus",
    "sku",
    "refunds",
    "refund",
    "has_next",
    "total_results",
    "logistics_companies",
    "logistics_company",
    "modules",
    "shipping",
    "is_success",
    "cancel_result",
    "oaid",
    "state",
    "city",
    "district",
    "receiver_name",
    "receiver_state",
    "code",
    "name",
    "waybill_code",
    "print_data",
    "object_id",
    "cp_code",
    "seller_flag",
    "is_part_consign",
    "request_id",
    "outer_id",
    "title",
    "id",
    "reg_mail_no",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
    ]
}

/// Numbers, ids, money, dates and text, with the hostile ones well represented.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![i64::MAX, i64::MIN, 0, -1, 1]).prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        // Ids and counts as text, some beyond any integer type.
        "-?[0-9]{0,40}".prop_map(Value::String),
        // Money.
        "[-+]?[0-9]{0,22}(\\.[0-9]{0,5})?".prop_map(Value::String),
        // Dates, valid and not, some at the ends of the calendar.
        "[+-]?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}( [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2})?"
            .prop_map(Value::String),
        prop::sample::select(vec![
            "2026-11-29 12:00:00",
            "+262143-12-31 23:59:59",
            "-262144-01-01 00:00:00",
            "9999-12-31 23:59:59",
            "0000-01-01 00:00:00",
            "2026-02-30 12:00:00",
            "2026-11-29 24:00:60",
        ])
        .prop_map(|s| Value::String(s.into())),
        ".{0,16}".prop_map(Value::String),
    ]
}

/// A JSON value of TOP's shapes: objects with reply field names, lists bare or wrapped in
/// a single-key object (`{"order":[…]}`, `{"order":{…}}`), nested a few levels.
fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner.clone()), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            // A list wrapper, as TOP sends them.
            (key(), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(k, items)| json!({ k: items })),
            (key(), inner).prop_map(|(k, one)| json!({ k: one })),
        ]
    })
}

/// The text of a ban (`This ban will last for N more seconds`) with any N, or something
/// near it.
fn ban_text() -> impl Strategy<Value = String> {
    let n = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        Just(u64::MAX.to_string()),
        "[0-9]{20,60}",
        "-?[0-9]{0,5}",
        ".{0,6}",
    ];
    (
        n,
        prop::sample::select(vec![" more seconds", " more second", " seconds", ""]),
    )
        .prop_map(|(n, tail)| format!("This ban will last for {n}{tail}"))
}

/// An `error_response` body: any code shape, rate-limit and other sub-codes, ban texts.
fn error_body() -> impl Strategy<Value = Value> {
    let code = prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![7i64, 15, 25, 27, 31, 4, 10]).prop_map(|n| json!(n)),
        prop::sample::select(vec![7i64, 27]).prop_map(|n| json!(n.to_string())),
        Just(json!(u64::MAX)),
        leaf(),
    ];
    let sub_code = prop_oneof![
        prop::sample::select(vec![
            "accesscontrol.limited-by-app-access-count",
            "accesscontrol.limited-by-api-access-count",
            "accesscontrol.limited-by-app-api-access-count",
            "isv.access-limited-by-app-access-count",
            "isp.top-remote-connection-timeout",
            "isv.logistics-offline-service-error:B04",
            "isv.logistics-offline-service-error:B150",
            "isv.invalid-parameter:tid",
        ])
        .prop_map(|s| json!(s)),
        leaf(),
    ];
    let sub_msg = prop_oneof![3 => ban_text().prop_map(Value::String), 1 => leaf()];
    (
        code,
        ".{0,12}",
        sub_code,
        sub_msg,
        prop::option::of(".{0,8}"),
    )
        .prop_map(|(code, msg, sub_code, sub_msg, rid)| {
            let mut m = Map::new();
            m.insert("code".into(), code);
            m.insert("msg".into(), json!(msg));
            m.insert("sub_code".into(), sub_code);
            m.insert("sub_msg".into(), sub_msg);
            if let Some(r) = rid {
                m.insert("request_id".into(), json!(r));
            }
            json!({ "error_response": m })
        })
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(METHODS)
}

/// A result object in the classic envelope (`{"<name>_response": {…}}`).
fn classic(method: &str, inner: Value) -> Value {
    json!({ response_key(method): inner })
}

/// Everything the client does with a reply of `method`, as the client does it: decode, type,
/// classify, record a ban. Panics only if the code under test does.
fn take(method: &str, bytes: &[u8]) -> Result<(), TopError> {
    let (v, _request_id) = decode::reply(method, bytes)?;
    decode_result(method, v)
}

fn classify(e: &TopError, limiter: &Limiter) {
    let _ = e.to_string();
    let _ = e.code_label();
    let _ = e.outcome();
    if let Disposition::Retry { after: Some(after) } = e.disposition() {
        assert!(after <= MAX_BAN.max(Duration::from_secs(60)), "{after:?}");
    }
    if let Some(api) = e.api()
        && let Some((scope, after)) = api.ban()
    {
        if let Some(after) = after {
            assert!(after <= MAX_BAN, "a ban of {after:?}");
        }
        let now = chrono::Utc::now();
        limiter.ban(scope, after.unwrap_or(Duration::from_secs(1)), now);
        let _ = limiter.check_ban(&api.method, now);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_result_object_of_any_method_decodes_or_errs_in_both_envelopes_alike(
        m in method(),
        inner in value(),
    ) {
        let simple = serde_json::to_vec(&inner).unwrap();
        let wrapped = serde_json::to_vec(&classic(m, inner.clone())).unwrap();
        let a = take(m, &simple);
        let b = take(m, &wrapped);
        let limiter = Limiter::new(RateLimits::unlimited());
        for r in [&a, &b] {
            if let Err(e) = r {
                classify(e, &limiter);
            }
        }
        // A root that is an object is the same result in both envelopes (an `error_response`
        // key inside a result object is not an error envelope in the classic one).
        if inner.is_object() && inner.get("error_response").is_none() {
            prop_assert_eq!(a.is_ok(), b.is_ok(), "{:?} vs {:?}", a, b);
        }
    }

    #[test]
    fn any_error_body_is_an_api_error_whose_ban_is_a_day_at_most(
        m in method(),
        body in error_body(),
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let e = take(m, &bytes).unwrap_err();
        let TopError::Api(api) = &e else {
            return Err(TestCaseError::fail(format!("not an API error: {e:?}")));
        };
        // The code is read when it is an integer in range, as a number or as text.
        let code = &body["error_response"]["code"];
        let want = code.as_i64().or_else(|| code.as_str().and_then(|s| s.trim().parse().ok()));
        prop_assert_eq!(api.code, want.unwrap_or(0));
        let limiter = Limiter::new(RateLimits::unlimited());
        classify(&e, &limiter);
        if let Some((_, left)) = limiter.check_ban(m, chrono::Utc::now()) {
            prop_assert!(left <= MAX_BAN, "{:?}", left);
        }
    }

    #[test]
    fn a_ban_with_any_number_of_seconds_is_honoured_for_a_day_at_most(
        m in method(),
        n in prop_oneof![any::<u64>().prop_map(|n| n.to_string()), "[0-9]{1,80}"],
    ) {
        let body = json!({"error_response": {
            "code": 7, "msg": "App Call Limited",
            "sub_code": "accesscontrol.limited-by-app-access-count",
            "sub_msg": format!("This ban will last for {n} more seconds"),
        }});
        let e = take(m, &serde_json::to_vec(&body).unwrap()).unwrap_err();
        let Disposition::Retry { after: Some(after) } = e.disposition() else {
            return Err(TestCaseError::fail(format!("{e:?}")));
        };
        let announced = n.parse::<u64>().map_or(MAX_BAN, Duration::from_secs);
        prop_assert_eq!(after, announced.min(MAX_BAN));
        let limiter = Limiter::new(RateLimits::unlimited());
        classify(&e, &limiter);
    }

    #[test]
    fn every_i64_id_reads_back_as_a_number_or_a_string_and_beyond_is_an_error(
        tid in any::<i64>(),
        oid in any::<i64>(),
        big in (i64::MAX as u64 + 1)..=u64::MAX,
        as_text in any::<bool>(),
    ) {
        let id = |n: i64| if as_text { json!(n.to_string()) } else { json!(n) };
        let trade = json!({"tid": id(tid), "orders": {"order": [{"oid": id(oid)}]}});
        let t: Trade = decode::from_value(trade).unwrap();
        prop_assert_eq!(t.tid, tid);
        prop_assert_eq!(t.orders[0].oid, oid);
        let beyond = json!({"trade": {"tid": if as_text { json!(big.to_string()) } else { json!(big) }}});
        let r = take("taobao.trade.fullinfo.get", &serde_json::to_vec(&beyond).unwrap());
        prop_assert!(matches!(r, Err(TopError::Decode { .. })), "{:?}", r);
    }

    #[test]
    fn any_date_text_is_read_or_refused_and_valid_ones_round_trip(
        s in "[+-]?[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}( [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2})?",
    ) {
        if let Ok(at) = wms_node::taobao::time::parse(&s) {
            let again = wms_node::taobao::time::format(at);
            prop_assert_eq!(wms_node::taobao::time::parse(&again), Ok(at));
        }
        let trade = json!({"trade": {"tid": 1, "modified": s, "created": s}});
        let _ = take("taobao.trade.fullinfo.get", &serde_json::to_vec(&trade).unwrap());
    }

    #[test]
    fn truncated_or_mangled_bytes_never_panic(
        m in method(),
        body in prop_oneof![value(), error_body()],
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = serde_json::to_vec(&classic(m, body)).unwrap();
        for (i, b) in flips {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let limiter = Limiter::new(RateLimits::unlimited());
        if let Err(e) = take(m, &bytes) {
            classify(&e, &limiter);
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    for m in METHODS {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            take(m, deep.as_bytes()),
            Err(TopError::Decode { .. })
        ));
        let deep_obj = format!("{}1{}", "{\"orders\":".repeat(50_000), "}".repeat(50_000));
        assert!(take(m, deep_obj.as_bytes()).is_err());
    }
}
