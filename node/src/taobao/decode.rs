//! Lenient decoding of TOP JSON replies (TAOBAO.md §1.6).
//!
//! The gateway answers in two envelopes (`{"<name>_response":{…}}` or, with `simplify=true`,
//! the fields at the root), wraps lists in single-key objects (`"trades":{"trade":[…]}`) or
//! not, sends 18–19 digit ids as numbers or strings, and money as decimal strings. These
//! helpers accept every one of those shapes and never panic:
//!
//! - ids (`tid`, `oid`, `num_iid`, `sku_id`, …) and counts: `i64` from a JSON integer or a
//!   decimal string; never through `f64` (a fractional or out-of-range number is an error);
//! - money: [`Fen`], exact integer fen from `"579.00"`;
//! - lists: an array, a single-key object holding an array (or one object), or absent = empty;
//! - absent or `null` scalars: `None`; unknown fields: ignored (no `deny_unknown_fields`).
//!
//! Every helper first takes the value as a `serde_json::Value` and then interprets it, which
//! keeps them small and makes them safe on arbitrary input (property-tested below).

use super::error::{ApiError, TopError};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// An amount of money in integer fen (1 yuan = 100 fen). Parsed exactly from TOP's decimal
/// strings; displayed back as `"579.00"`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Fen(pub i64);

impl fmt::Debug for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fen({self})")
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

/// A decimal amount that is not exact in fen, or not a number at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an amount of money in yuan with at most two decimals: {0:?}")]
pub struct BadMoney(pub String);

impl FromStr for Fen {
    type Err = BadMoney;

    /// `"579.00"`, `"579"`, `"0.5"`, `"-1.20"`. More than two decimals are accepted only when
    /// the extra digits are zeros (`"1.500"`); anything that would lose a fraction of a fen,
    /// overflow `i64` or is not plain decimal text is an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMoney(s.to_owned());
        let t = s.trim();
        let (neg, t) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (int, frac) = match t.split_once('.') {
            Some((i, f)) => (i, f),
            None => (t, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let (cents, rest) = frac.split_at(frac.len().min(2));
        if rest.bytes().any(|b| b != b'0') {
            return Err(bad());
        }
        let mut fen: i64 = 0;
        for b in int.bytes() {
            fen = fen
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(b - b'0')))
                .ok_or_else(bad)?;
        }
        let mut c: i64 = 0;
        for i in 0..2 {
            c = c * 10 + cents.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        }
        let fen = fen
            .checked_mul(100)
            .and_then(|v| v.checked_add(c))
            .ok_or_else(bad)?;
        Ok(Fen(if neg { -fen } else { fen }))
    }
}

/// The response object's key in the classic envelope: `taobao.` dropped, dots to
/// underscores, `_response` appended (`cainiao.waybill.ii.get` →
/// `cainiao_waybill_ii_get_response`).
pub fn response_key(method: &str) -> String {
    let m = method.strip_prefix("taobao.").unwrap_or(method);
    format!("{}_response", m.replace('.', "_"))
}

/// The error envelope's fields, read leniently (`code` may be a string).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    /// Platform code (7, 15, 27, …); 0 when it could not be read.
    #[serde(default, deserialize_with = "i64_or_zero")]
    pub code: i64,
    /// Short message.
    #[serde(default, deserialize_with = "opt_string")]
    pub msg: Option<String>,
    /// Fine-grained code (`isv.*`, `isp.*`, `accesscontrol.*`).
    #[serde(default, deserialize_with = "opt_string")]
    pub sub_code: Option<String>,
    /// Fine-grained message (carries the ban length for code 7).
    #[serde(default, deserialize_with = "opt_string")]
    pub sub_msg: Option<String>,
    /// The gateway's request id, for support tickets.
    #[serde(default, deserialize_with = "opt_string")]
    pub request_id: Option<String>,
}

/// What a reply body turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// The result object (without its `<name>_response` wrapper, if it had one).
    Ok(Value),
    /// An `error_response`.
    Err(ErrorBody),
}

/// Splits a parsed reply into the result object or the error, whichever envelope it used.
/// `None` when the body is not a JSON object at all.
pub fn open_envelope(method: &str, body: Value) -> Option<Envelope> {
    let Value::Object(mut root) = body else {
        return None;
    };
    if let Some(err) = root.remove("error_response") {
        let parsed = ErrorBody::deserialize(err).unwrap_or_default();
        return Some(Envelope::Err(parsed));
    }
    let key = response_key(method);
    match root.remove(&key) {
        Some(inner @ Value::Object(_)) => Some(Envelope::Ok(inner)),
        Some(other) => {
            // A wrapper key that is not an object: keep the root as it was.
            root.insert(key, other);
            Some(Envelope::Ok(Value::Object(root)))
        }
        None => Some(Envelope::Ok(Value::Object(root))),
    }
}

/// A reply body as the client reads it: JSON, then either envelope. The result object comes
/// with the gateway's `request_id`; an `error_response` is [`TopError::Api`], classified by
/// [`TopError::disposition`]. Pure, so the property tests and the fuzz target
/// (`node/fuzz`) run arbitrary bytes through exactly the code the client runs.
pub fn reply(method: &str, bytes: &[u8]) -> Result<(Value, Option<String>), TopError> {
    let body: Value = serde_json::from_slice(bytes).map_err(|e| TopError::Decode {
        method: method.to_owned(),
        detail: format!("not JSON: {e}"),
    })?;
    match open_envelope(method, body) {
        Some(Envelope::Ok(v)) => {
            let rid = v
                .get("request_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            Ok((v, rid))
        }
        Some(Envelope::Err(b)) => Err(TopError::Api(Box::new(ApiError {
            method: method.to_owned(),
            code: b.code,
            msg: b.msg.unwrap_or_default(),
            sub_code: b.sub_code,
            sub_msg: b.sub_msg,
            request_id: b.request_id,
        }))),
        None => Err(TopError::Decode {
            method: method.to_owned(),
            detail: "reply is not a JSON object".into(),
        }),
    }
}

/// Decodes a result object into a typed response.
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(v)
}

// ---- the field helpers, for `#[serde(default, deserialize_with = "…")]` ----

fn id_from_value(v: &Value) -> Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok()))
            .map(Some)
            .ok_or_else(|| format!("not a 64-bit integer: {n}")),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                Ok(None)
            } else {
                t.parse::<i64>()
                    .map(Some)
                    .map_err(|_| format!("not a 64-bit integer: {s:?}"))
            }
        }
        other => Err(format!("expected an integer, got {}", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A required 64-bit id or count, from a number or a string.
pub fn id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    id_from_value(&v)
        .map_err(D::Error::custom)?
        .ok_or_else(|| D::Error::custom("missing id"))
}

/// An optional 64-bit id or count, from a number or a string; `null`/`""` are `None`.
pub fn opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = Value::deserialize(d)?;
    id_from_value(&v).map_err(D::Error::custom)
}

fn i64_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(id_from_value(&v).ok().flatten().unwrap_or(0))
}

/// An optional boolean: `true`/`false`, `"true"`/`"false"`, `1`/`0`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Some(false)),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(Some(true)),
        Value::String(s) => match s.trim() {
            "" => Ok(None),
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(D::Error::custom(format!("not a boolean: {s:?}"))),
        },
        other => Err(D::Error::custom(format!(
            "expected a boolean, got {}",
            kind(other)
        ))),
    }
}

/// An optional string; numbers and booleans are taken as their text (some ids are declared
/// as strings but arrive as numbers, and the reverse).
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Value::deserialize(d)?;
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        other => Err(D::Error::custom(format!(
            "expected a string, got {}",
            kind(&other)
        ))),
    }
}

fn fen_from_value(v: &Value) -> Result<Option<Fen>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s.parse::<Fen>().map(Some).map_err(|e| e.to_string()),
        // Taobao sends money as strings. A JSON number is read through its shortest decimal
        // form (which is the literal that was sent, for amounts with up to 15 significant
        // digits), never by multiplying a float.
        Value::Number(n) => n
            .to_string()
            .parse::<Fen>()
            .map(Some)
            .map_err(|e| e.to_string()),
        other => Err(format!("expected an amount, got {}", kind(other))),
    }
}

/// An optional amount of money.
pub fn opt_fen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Fen>, D::Error> {
    let v = Value::deserialize(d)?;
    fen_from_value(&v).map_err(D::Error::custom)
}

/// An optional TOP date (`yyyy-MM-dd HH:mm:ss`, GMT+8) as a UTC instant.
pub fn opt_date<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => super::time::parse(s).map(Some).map_err(D::Error::custom),
        other => Err(D::Error::custom(format!(
            "expected a date, got {}",
            kind(other)
        ))),
    }
}

/// A list in any of TOP's shapes: an array, `{"<element>": [...]}`, `{"<element>": {...}}`
/// (a single element), or absent/`null` (empty).
pub fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let v = Value::deserialize(d)?;
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        Value::Object(map) if map.len() == 1 => match map.into_iter().next() {
            Some((_, Value::Array(items))) => items,
            Some((_, Value::Null)) | None => return Ok(Vec::new()),
            Some((_, one @ Value::Object(_))) => vec![one],
            Some((k, other)) => {
                return Err(D::Error::custom(format!(
                    "list wrapper {k:?} holds {}, not an array",
                    kind(&other)
                )));
            }
        },
        Value::Object(map) if map.is_empty() => return Ok(Vec::new()),
        other => {
            return Err(D::Error::custom(format!(
                "expected a list, got {}",
                kind(&other)
            )));
        }
    };
    items
        .into_iter()
        .map(|item| serde_json::from_value(item).map_err(D::Error::custom))
        .collect()
}

/// A list of ids (`sub_tid`-like), each a number or a string.
pub fn id_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Id(#[serde(deserialize_with = "id")] i64);
    let ids: Vec<Id> = list(d)?;
    Ok(ids.into_iter().map(|Id(i)| i).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Probe {
        #[serde(default, deserialize_with = "opt_id")]
        tid: Option<i64>,
        #[serde(default, deserialize_with = "opt_fen")]
        payment: Option<Fen>,
        #[serde(default, deserialize_with = "opt_bool")]
        has_next: Option<bool>,
        #[serde(default, deserialize_with = "list")]
        orders: Vec<Line>,
        #[serde(default, deserialize_with = "opt_date")]
        modified: Option<chrono::DateTime<chrono::Utc>>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Line {
        #[serde(deserialize_with = "id")]
        oid: i64,
    }

    #[test]
    fn response_keys_drop_only_the_taobao_prefix() {
        assert_eq!(
            response_key("taobao.trades.sold.increment.get"),
            "trades_sold_increment_get_response"
        );
        assert_eq!(
            response_key("taobao.top.auth.token.create"),
            "top_auth_token_create_response"
        );
        assert_eq!(
            response_key("cainiao.waybill.ii.cancel"),
            "cainiao_waybill_ii_cancel_response"
        );
    }

    #[test]
    fn both_envelopes_open_to_the_same_object() {
        let classic =
            json!({"trade_fullinfo_get_response": {"trade": {"tid": 1}, "request_id": "r"}});
        let simple = json!({"trade": {"tid": 1}, "request_id": "r"});
        let a = open_envelope("taobao.trade.fullinfo.get", classic);
        let b = open_envelope("taobao.trade.fullinfo.get", simple);
        assert_eq!(a, b);
        assert!(matches!(a, Some(Envelope::Ok(_))));
    }

    #[test]
    fn the_error_envelope_wins_and_reads_a_string_code() {
        let body = json!({"error_response": {"code": "27", "msg": "Invalid session",
            "sub_code": "session-expired", "request_id": "abc"}});
        match open_envelope("taobao.trade.fullinfo.get", body) {
            Some(Envelope::Err(e)) => {
                assert_eq!(e.code, 27);
                assert_eq!(e.sub_code.as_deref(), Some("session-expired"));
                assert_eq!(e.request_id.as_deref(), Some("abc"));
            }
            other => panic!("expected an error envelope, got {other:?}"),
        }
    }

    #[test]
    fn a_non_object_body_is_not_an_envelope() {
        assert_eq!(open_envelope("m", json!([1, 2])), None);
        assert_eq!(open_envelope("m", json!("x")), None);
    }

    #[test]
    fn large_ids_decode_from_numbers_and_strings_without_floats() {
        let a: Probe =
            from_value(json!({"tid": 267762403889391751_i64})).unwrap_or_else(|e| panic!("{e}"));
        let b: Probe =
            from_value(json!({"tid": "267762403889391751"})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.tid, Some(267_762_403_889_391_751));
        assert_eq!(a, b);
        let max: Probe = from_value(json!({"tid": i64::MAX})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(max.tid, Some(i64::MAX));
    }

    #[test]
    fn fractional_or_oversized_ids_are_errors_not_roundings() {
        assert!(from_value::<Probe>(json!({"tid": 1.5})).is_err());
        assert!(from_value::<Probe>(json!({"tid": u64::MAX})).is_err());
        assert!(from_value::<Probe>(json!({"tid": "12a"})).is_err());
        assert!(from_value::<Probe>(json!({"tid": [1]})).is_err());
    }

    #[test]
    fn absent_and_null_scalars_are_none_and_absent_lists_are_empty() {
        let p: Probe = from_value(json!({"tid": null, "payment": "", "unknown": {"x": 1}}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p,
            Probe {
                tid: None,
                payment: None,
                has_next: None,
                orders: vec![],
                modified: None
            }
        );
    }

    #[test]
    fn lists_decode_from_arrays_wrappers_and_single_objects() {
        let want = vec![Line { oid: 1 }, Line { oid: 2 }];
        for body in [
            json!({"orders": [{"oid": 1}, {"oid": "2"}]}),
            json!({"orders": {"order": [{"oid": 1}, {"oid": 2}]}}),
        ] {
            let p: Probe = from_value(body).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.orders, want);
        }
        let single: Probe =
            from_value(json!({"orders": {"order": {"oid": 7}}})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(single.orders, vec![Line { oid: 7 }]);
        let empty: Probe =
            from_value(json!({"orders": {"order": null}})).unwrap_or_else(|e| panic!("{e}"));
        assert!(empty.orders.is_empty());
        assert!(from_value::<Probe>(json!({"orders": {"a": [], "b": []}})).is_err());
        assert!(from_value::<Probe>(json!({"orders": "x"})).is_err());
    }

    #[test]
    fn money_parses_exactly_into_fen() {
        let cases = [
            ("579.00", 57_900),
            ("579", 57_900),
            ("0.5", 50),
            ("0.05", 5),
            ("-1.20", -120),
            ("+3.1", 310),
            (".99", 99),
            ("1.500", 150),
            (" 21.32 ", 2_132),
            ("92233720368547758.07", i64::MAX),
        ];
        for (s, fen) in cases {
            assert_eq!(s.parse::<Fen>(), Ok(Fen(fen)), "{s}");
        }
        for bad in [
            "",
            ".",
            "-",
            "1.234",
            "1,00",
            "1e3",
            "abc",
            "1.2.3",
            "92233720368547758.08",
            "0x10",
        ] {
            assert!(bad.parse::<Fen>().is_err(), "{bad}");
        }
    }

    #[test]
    fn money_displays_with_two_decimals() {
        assert_eq!(Fen(57_900).to_string(), "579.00");
        assert_eq!(Fen(5).to_string(), "0.05");
        assert_eq!(Fen(-50).to_string(), "-0.50");
        assert_eq!(Fen(i64::MIN).to_string(), "-92233720368547758.08");
    }

    #[test]
    fn money_sent_as_a_json_number_keeps_its_decimal_value() {
        let p: Probe = from_value(json!({"payment": 0.1})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.payment, Some(Fen(10)));
        let p: Probe = from_value(json!({"payment": 579})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.payment, Some(Fen(57_900)));
    }

    #[test]
    fn booleans_and_dates_are_lenient_about_their_shape() {
        let p: Probe = from_value(json!({"has_next": "true", "modified": "2026-11-29 12:00:00"}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.has_next, Some(true));
        assert_eq!(
            p.modified.map(|d| d.timestamp_millis()),
            Some(1_795_924_800_000)
        );
        let p: Probe = from_value(json!({"has_next": 0})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.has_next, Some(false));
        assert!(from_value::<Probe>(json!({"modified": "yesterday"})).is_err());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "[0-9.+-]{0,24}".prop_map(Value::String),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("tid".to_owned()),
                            Just("oid".to_owned()),
                            Just("orders".to_owned()),
                            Just("order".to_owned()),
                            Just("payment".to_owned()),
                            Just("has_next".to_owned()),
                            Just("modified".to_owned()),
                            "[a-z_]{1,8}"
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn lenient_decoders_never_panic_on_arbitrary_json(v in arb_json()) {
            let _ = from_value::<Probe>(v.clone());
            let _ = open_envelope("taobao.trade.fullinfo.get", v);
        }

        #[test]
        fn money_parsing_never_panics_and_round_trips(s in "[-+]?[0-9]{0,20}(\\.[0-9]{0,4})?") {
            if let Ok(f) = s.parse::<Fen>() {
                let again: Fen = f.to_string().parse().unwrap_or(Fen(i64::MIN));
                prop_assert_eq!(again, f);
            }
        }

        #[test]
        fn every_i64_round_trips_as_number_and_string(n in any::<i64>()) {
            let a: Probe = from_value(json!({"tid": n})).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let b: Probe = from_value(json!({"tid": n.to_string()})).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(a.tid, Some(n));
            prop_assert_eq!(b.tid, Some(n));
        }
    }
}
