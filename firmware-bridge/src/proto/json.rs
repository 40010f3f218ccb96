//! The JSON codec of the MQTT contract (needs `alloc`).
//!
//! Encoding writes the message's fields plus its `"type"` tag and leaves out absent optional
//! fields. Decoding is strict about what matters and lenient about what may grow:
//!
//! 1. the payload must be a JSON object of at most [`MAX_PAYLOAD`] bytes;
//! 2. `"type"` must be present and known, and belong on the channel it arrived on;
//! 3. `"v"` (default 1) must not exceed [`VERSION`];
//! 4. the fields must have the message's types; unknown fields are ignored;
//! 5. [`Validate`] checks the limits (ids, lengths, quantities).
//!
//! Every failure is a [`JsonError`] naming the problem; nothing here panics on any input.

use alloc::borrow::ToOwned;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    Channel, Downlink, Feedback, Heartbeat, Hold, HoldAck, Message, Pause, Print, PrintResult,
    Reject, RequestTask, Scan, Short, State, Task, Uplink, VERSION, Validate,
};

/// Largest payload the decoder looks at (a print job with graphics fits; a runaway does not).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Why a payload is not a valid message. The bridge and the node answer it with an `ok:false`
/// feedback carrying [`JsonError`]'s text, count it, and carry on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The payload exceeds [`MAX_PAYLOAD`]. Not retryable.
    #[error("payload is {len} bytes, more than the {max}-byte limit")]
    TooLarge {
        /// Payload size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload is not JSON (or not UTF-8). Not retryable.
    #[error("payload is not valid JSON: {0}")]
    Syntax(String),
    /// The payload is JSON but not an object.
    #[error("payload is not a JSON object")]
    NotAnObject,
    /// The object has no string `"type"`.
    #[error("message has no \"type\" field")]
    MissingType,
    /// `"type"` names no message of the protocol.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A known message arrived on a channel where it does not belong (e.g. `print` on `evt`).
    #[error("a {ty} message does not belong on the {channel} channel")]
    WrongChannel {
        /// The message type.
        ty: &'static str,
        /// The channel it arrived on.
        channel: Channel,
    },
    /// The message is of a newer protocol version than this build reads.
    #[error("{ty} message has version {v}; this build reads up to version {VERSION}")]
    UnsupportedVersion {
        /// The message type.
        ty: &'static str,
        /// Its `v`.
        v: u64,
    },
    /// A field is missing or has the wrong type (serde's description).
    #[error("{ty} message: {detail}")]
    Field {
        /// The message type.
        ty: &'static str,
        /// What serde found wrong.
        detail: String,
    },
    /// A field breaks the contract's limits.
    #[error("{ty} message: field `{field}` {problem}")]
    Invalid {
        /// The message type.
        ty: &'static str,
        /// The field.
        field: &'static str,
        /// The problem.
        problem: &'static str,
    },
    /// The message could not be written as JSON (a bug, not an input problem).
    #[error("cannot encode message as JSON: {0}")]
    Encode(String),
}

impl JsonError {
    /// A bad payload never gets better by sending it again; only [`JsonError::Encode`] is a
    /// local fault, and it is not retryable either.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Encodes one message as its JSON payload.
pub fn to_vec<M: Message + Serialize>(msg: &M) -> Result<Vec<u8>, JsonError> {
    let value = serde_json::to_value(msg).map_err(|e| JsonError::Encode(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(JsonError::Encode("message is not an object".to_owned()));
    };
    strip_nulls(&mut map);
    for key in M::NULLABLE {
        map.entry(*key).or_insert(Value::Null);
    }
    if let Some(ty) = M::TYPE {
        map.insert("type".to_owned(), Value::String(ty.to_owned()));
    }
    serde_json::to_vec(&Value::Object(map)).map_err(|e| JsonError::Encode(e.to_string()))
}

/// Encodes a device message as its JSON payload (its channel is [`Uplink::channel`]).
pub fn uplink_to_vec<S: Serialize>(msg: &Uplink<S>) -> Result<Vec<u8>, JsonError> {
    match msg {
        Uplink::Scan(m) => to_vec(m),
        Uplink::RequestTask(m) => to_vec(m),
        Uplink::Short(m) => to_vec(m),
        Uplink::Heartbeat(m) => to_vec(m),
        Uplink::PrintResult(m) => to_vec(m),
        Uplink::HoldAck(m) => to_vec(m),
        Uplink::State(m) => to_vec(m),
        Uplink::Reject(m) => to_vec(m),
    }
}

/// Encodes a node command as its JSON payload (channel `cmd`).
pub fn downlink_to_vec<S: Serialize>(msg: &Downlink<S>) -> Result<Vec<u8>, JsonError> {
    match msg {
        Downlink::Feedback(m) => to_vec(m),
        Downlink::Task(m) => to_vec(m),
        Downlink::Hold(m) => to_vec(m),
        Downlink::Print(m) => to_vec(m),
        Downlink::Pause(m) => to_vec(m),
    }
}

/// Decodes a payload received on a device's `evt`, `reply` or `state` channel.
pub fn decode_uplink(channel: Channel, payload: &[u8]) -> Result<Uplink<String>, JsonError> {
    let mut map = object(payload)?;
    if channel == Channel::State {
        // State carries no type tag; tolerate one if a device sends it anyway.
        map.remove("type");
        return decode_as::<State<String>>(map).map(Uplink::State);
    }
    let ty = take_type(&mut map)?;
    let msg = match ty.as_str() {
        "scan" => Uplink::Scan(decode_as::<Scan<String>>(map)?),
        "request_task" => Uplink::RequestTask(decode_as::<RequestTask<String>>(map)?),
        "short" => Uplink::Short(decode_as::<Short<String>>(map)?),
        "heartbeat" => Uplink::Heartbeat(decode_as::<Heartbeat<String>>(map)?),
        "print_result" => Uplink::PrintResult(decode_as::<PrintResult<String>>(map)?),
        "hold_ack" => Uplink::HoldAck(decode_as::<HoldAck<String>>(map)?),
        "reject" => Uplink::Reject(decode_as::<Reject<String>>(map)?),
        "feedback" | "task" | "hold" | "print" => {
            return Err(JsonError::WrongChannel {
                ty: static_type(&ty),
                channel,
            });
        }
        _ => return Err(JsonError::UnknownType(truncate(ty))),
    };
    if msg.channel() != channel {
        return Err(JsonError::WrongChannel {
            ty: msg.kind().unwrap_or("state"),
            channel,
        });
    }
    Ok(msg)
}

/// Decodes a payload received on a device's `cmd` channel.
pub fn decode_downlink(payload: &[u8]) -> Result<Downlink<String>, JsonError> {
    let mut map = object(payload)?;
    let ty = take_type(&mut map)?;
    Ok(match ty.as_str() {
        "feedback" => Downlink::Feedback(decode_as::<Feedback<String>>(map)?),
        "task" => Downlink::Task(decode_as::<Task<String>>(map)?),
        "hold" => Downlink::Hold(decode_as::<Hold<String>>(map)?),
        "print" => Downlink::Print(decode_as::<Print<String>>(map)?),
        "pause" => Downlink::Pause(decode_as::<Pause<String>>(map)?),
        "scan" | "request_task" | "short" | "heartbeat" | "print_result" | "hold_ack"
        | "reject" => {
            return Err(JsonError::WrongChannel {
                ty: static_type(&ty),
                channel: Channel::Cmd,
            });
        }
        _ => return Err(JsonError::UnknownType(truncate(ty))),
    })
}

/// Decodes a payload as one given message type: its `"type"` must be `M`'s (for [`State`],
/// none or any is accepted). For tools and tests that know what they expect; devices and the
/// node decode by channel with [`decode_uplink`] and [`decode_downlink`].
pub fn decode<M>(payload: &[u8]) -> Result<M, JsonError>
where
    M: Message + DeserializeOwned + Validate,
{
    let mut map = object(payload)?;
    match M::TYPE {
        None => {
            map.remove("type");
        }
        Some(want) => {
            let ty = take_type(&mut map)?;
            if ty != want {
                return Err(JsonError::UnknownType(truncate(ty)));
            }
        }
    }
    decode_as::<M>(map)
}

/// Decodes an `ota_update` received on the gateway's `cmd` channel.
pub fn decode_ota_update(payload: &[u8]) -> Result<super::ota::OtaUpdate, JsonError> {
    let mut map = object(payload)?;
    let ty = take_type(&mut map)?;
    match ty.as_str() {
        "ota_update" => decode_as::<super::ota::OtaUpdate>(map),
        _ => Err(JsonError::UnknownType(truncate(ty))),
    }
}

/// Decodes an `alert` received on a gateway's `alert` channel (for tools that listen to it).
pub fn decode_alert(payload: &[u8]) -> Result<super::alert::AlertMessage, JsonError> {
    let mut map = object(payload)?;
    let ty = take_type(&mut map)?;
    match ty.as_str() {
        "alert" => decode_as::<super::alert::AlertMessage>(map),
        _ => Err(JsonError::UnknownType(truncate(ty))),
    }
}

/// Best-effort reading of the id a bad payload was about (`msg_id`, `job_id`, `hold_id`), so a
/// refusal can still name what it refuses.
pub fn peek_id(payload: &[u8]) -> Option<String> {
    peek_string(payload, &["msg_id", "job_id", "hold_id"])
}

/// Best-effort reading of the first of `keys` that holds a usable id (a string of 1 to
/// [`MAX_ID_LEN`](super::MAX_ID_LEN) bytes without control characters) in a payload that is
/// not a valid message: a refusal names what it refuses. `None` for anything else, never a
/// panic.
pub fn peek_string(payload: &[u8], keys: &[&str]) -> Option<String> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload) else {
        return None;
    };
    keys.iter().find_map(|k| {
        map.get(*k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= super::MAX_ID_LEN)
            .filter(|s| !s.chars().any(char::is_control))
            .map(str::to_owned)
    })
}

/// Cuts `s` to at most `max` bytes on a character boundary; a text that was cut ends in `…`.
/// What the node and the bridge write into a message's text (or an error about outside
/// input) goes through this, so a long reason never makes a message invalid.
pub fn cut_text(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

/// An operator text (`feedback`, `task`, `hold`, an `ota_result`'s error) cut to the
/// protocol's [`MAX_TEXT_LEN`](super::MAX_TEXT_LEN).
pub fn fit_text(s: String) -> String {
    cut_text(s, super::MAX_TEXT_LEN)
}

/// Best-effort reading of a command a device cannot use: its `type` and the id a [`Reject`]
/// answers with (`hold_id` of a hold, `task_id` of a task, `job_id` of a print). Ids that are
/// not strings are not ids: the reject's `re` is then `null`.
pub fn peek_command(payload: &[u8]) -> (Option<String>, Option<String>) {
    if payload.len() > MAX_PAYLOAD {
        return (None, None);
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(payload) else {
        return (None, None);
    };
    let ty = map
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| {
            !t.is_empty() && t.len() <= super::MAX_ID_LEN && !t.chars().any(char::is_control)
        })
        .map(str::to_owned);
    let key = match ty.as_deref() {
        Some("hold") => "hold_id",
        Some("task") => "task_id",
        Some("print") => "job_id",
        _ => return (ty, None),
    };
    let id = map
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| {
            !s.is_empty() && s.len() <= super::MAX_ID_LEN && !s.chars().any(char::is_control)
        })
        .map(str::to_owned);
    (ty, id)
}

fn object(payload: &[u8]) -> Result<Map<String, Value>, JsonError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(JsonError::TooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD,
        });
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JsonError::NotAnObject),
        Err(e) => Err(JsonError::Syntax(e.to_string())),
    }
}

fn take_type(map: &mut Map<String, Value>) -> Result<String, JsonError> {
    match map.remove("type") {
        Some(Value::String(s)) => Ok(s),
        _ => Err(JsonError::MissingType),
    }
}

fn decode_as<M>(map: Map<String, Value>) -> Result<M, JsonError>
where
    M: Message + DeserializeOwned + Validate,
{
    let ty = M::TYPE.unwrap_or("state");
    match map.get("v") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_u64() {
            Some(v) if v <= u64::from(VERSION) && v >= 1 => {}
            Some(v) => return Err(JsonError::UnsupportedVersion { ty, v }),
            None => {
                return Err(JsonError::Field {
                    ty,
                    detail: "field `v` is not a positive integer".to_owned(),
                });
            }
        },
    }
    let mut map = map;
    // `null` means absent; removing it lets `v` default and keeps serde's errors about real
    // type mismatches only.
    strip_nulls(&mut map);
    let msg: M = serde_json::from_value(Value::Object(map)).map_err(|e| JsonError::Field {
        ty,
        detail: e.to_string(),
    })?;
    msg.validate().map_err(|inv| JsonError::Invalid {
        ty,
        field: inv.field,
        problem: inv.problem,
    })?;
    Ok(msg)
}

fn strip_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        if let Value::Object(inner) = v {
            strip_nulls(inner);
        }
    }
}

fn static_type(ty: &str) -> &'static str {
    const ALL: [&str; 11] = [
        "scan",
        "request_task",
        "short",
        "heartbeat",
        "feedback",
        "task",
        "hold",
        "print",
        "print_result",
        "hold_ack",
        "reject",
    ];
    ALL.iter().copied().find(|t| *t == ty).unwrap_or("unknown")
}

fn truncate(s: String) -> String {
    // The type string comes from outside: keep error messages (and logs) bounded.
    cut_text(s, 32 + '…'.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Beep, Gs1Date, Gs1Fields, Mode, PrintFormat, PrintStatus, Symbology};
    use serde_json::json;

    fn value(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn a_scan_encodes_to_the_design_shape_without_nulls() {
        let scan = Scan {
            v: VERSION,
            msg_id: "m-1".to_owned(),
            ts: "2025-06-01T08:00:00.000Z".to_owned(),
            code: "6901234567892".to_owned(),
            symbology: Symbology::Ean13,
            mode: Mode::Pick,
            task_id: None,
            qty: Some(1),
            gs1: None,
        };
        let bytes = to_vec(&scan).unwrap();
        assert_eq!(
            value(&bytes),
            json!({"type":"scan","v":1,"msg_id":"m-1","ts":"2025-06-01T08:00:00.000Z",
                   "code":"6901234567892","symbology":"ean13","mode":"pick","qty":1})
        );
        assert_eq!(
            decode_uplink(Channel::Evt, &bytes).unwrap(),
            Uplink::Scan(scan)
        );
    }

    #[test]
    fn the_design_examples_decode() {
        let scan = br#"{"type":"scan","msg_id":"a1","ts":"2025-06-01T08:00:00Z","code":"6901234567892","symbology":"ean13","mode":"pack","task_id":"T1","qty":2}"#;
        let Uplink::Scan(s) = decode_uplink(Channel::Evt, scan).unwrap() else {
            panic!("not a scan")
        };
        assert_eq!((s.v, s.mode, s.qty), (1, Mode::Pack, Some(2)));

        let fb = br#"{"type":"feedback","re":"a1","ok":true,"beep":"ok","text":"next: A-01-03"}"#;
        let Downlink::Feedback(f) = decode_downlink(fb).unwrap() else {
            panic!("not feedback")
        };
        assert!(f.ok && f.beep == Beep::Ok && f.re.as_deref() == Some("a1"));

        let print = br#"{"type":"print","job_id":"j1","format":"zpl","data":"^XA^FDhi^FS^XZ"}"#;
        let Downlink::Print(p) = decode_downlink(print).unwrap() else {
            panic!("not print")
        };
        assert_eq!(p.format, PrintFormat::Zpl);
        assert_eq!(p.template_url, None);
        let waybill = br#"{"type":"print","job_id":"j2","format":"cainiao","data":"{\"encryptedData\":\"x\"}","template_url":"http://cloudprint.cainiao.com/template/standard/101"}"#;
        let Downlink::Print(p) = decode_downlink(waybill).unwrap() else {
            panic!("not print")
        };
        assert_eq!(p.format, PrintFormat::Cainiao);
        assert_eq!(
            p.template_url.as_deref(),
            Some("http://cloudprint.cainiao.com/template/standard/101")
        );

        let pr = br#"{"type":"print_result","re":"j1","status":"error","error":"paper out"}"#;
        let Uplink::PrintResult(r) = decode_uplink(Channel::Reply, pr).unwrap() else {
            panic!("not print_result")
        };
        assert_eq!(r.status, PrintStatus::Error);

        let will = br#"{"online":false}"#;
        assert_eq!(
            decode_uplink(Channel::State, will).unwrap(),
            Uplink::State(State::offline())
        );
    }

    #[test]
    fn the_will_payload_is_exactly_offline() {
        let bytes = to_vec(&State::<String>::offline()).unwrap();
        assert_eq!(value(&bytes), json!({"v":1,"online":false}));
    }

    #[test]
    fn gs1_fields_travel_as_an_object_with_an_iso_date() {
        let scan = Scan {
            v: 1,
            msg_id: "m".to_owned(),
            ts: "t".to_owned(),
            code: "0106901234567892\u{1d}10L42".to_owned(),
            symbology: Symbology::Gs1_128,
            mode: Mode::Receive,
            task_id: None,
            qty: None,
            gs1: Some(Gs1Fields {
                sscc: None,
                gtin: Some("06901234567892".to_owned()),
                batch: Some("L42".to_owned()),
                expiry: Gs1Date::new(2027, 5, 31),
                serial: None,
            }),
        };
        let bytes = to_vec(&scan).unwrap();
        let v = value(&bytes);
        assert_eq!(
            v["gs1"],
            json!({"gtin":"06901234567892","batch":"L42","expiry":"2027-05-31"})
        );
        assert_eq!(
            decode_uplink(Channel::Evt, &bytes).unwrap(),
            Uplink::Scan(scan)
        );
    }

    #[test]
    fn bad_payloads_get_errors_that_name_the_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "not valid JSON"),
            (b"[1,2]", "not a JSON object"),
            (br#"{"msg_id":"x"}"#, "no \"type\""),
            (br#"{"type":"teleport"}"#, "unknown message type \"teleport\""),
            (br#"{"type":"print","job_id":"j","format":"zpl","data":"x"}"#, "does not belong on the evt channel"),
            (br#"{"type":"scan","v":9,"msg_id":"a","ts":"t","code":"1","symbology":"ean13","mode":"pick"}"#, "version 9"),
            (br#"{"type":"scan","msg_id":"a","ts":"t","symbology":"ean13","mode":"pick"}"#, "missing field `code`"),
            (br#"{"type":"scan","msg_id":"a","ts":"t","code":"1","symbology":"ean13","mode":"fly"}"#, "unknown variant `fly`"),
            (br#"{"type":"scan","msg_id":"","ts":"t","code":"1","symbology":"ean13","mode":"pick"}"#, "field `msg_id` is empty"),
            (br#"{"type":"scan","msg_id":"a","ts":"t","code":"1","symbology":"ean13","mode":"pick","qty":-1}"#, "scan message"),
        ];
        for (payload, needle) in cases {
            let err = decode_uplink(Channel::Evt, payload).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn commands_on_the_wrong_channel_are_refused() {
        let err = decode_downlink(br#"{"type":"scan","msg_id":"a"}"#).unwrap_err();
        assert_eq!(
            err,
            JsonError::WrongChannel {
                ty: "scan",
                channel: Channel::Cmd
            }
        );
        let err = decode_uplink(
            Channel::Reply,
            br#"{"type":"scan","msg_id":"a","ts":"t","code":"1","symbology":"ean13","mode":"pick"}"#,
        )
        .unwrap_err();
        assert!(matches!(err, JsonError::WrongChannel { ty: "scan", .. }));
    }

    #[test]
    fn oversized_payloads_are_refused_before_parsing() {
        let big = alloc::vec![b' '; MAX_PAYLOAD + 1];
        assert!(matches!(
            decode_downlink(&big),
            Err(JsonError::TooLarge { .. })
        ));
    }

    #[test]
    fn long_unknown_types_are_truncated_in_the_error() {
        let payload = alloc::format!(r#"{{"type":"{}"}}"#, "x".repeat(500));
        let err = decode_downlink(payload.as_bytes()).unwrap_err();
        assert!(err.to_string().len() < 80);
    }

    #[test]
    fn peek_id_finds_the_id_of_a_broken_message() {
        assert_eq!(
            peek_id(br#"{"type":"scan","msg_id":"m-9","code":7}"#).as_deref(),
            Some("m-9")
        );
        assert_eq!(peek_id(b"garbage"), None);
    }

    #[test]
    fn peek_command_finds_the_id_a_reject_answers_and_only_string_ids() {
        assert_eq!(
            peek_command(br#"{"type":"hold","hold_id":"h-1","tid":4567890123}"#),
            (Some("hold".to_owned()), Some("h-1".to_owned()))
        );
        assert_eq!(
            peek_command(br#"{"type":"task","task_id":17}"#),
            (Some("task".to_owned()), None)
        );
        assert_eq!(peek_command(b"{not json"), (None, None));
        assert_eq!(
            peek_command(br#"{"type":"feedback","re":"m-1"}"#),
            (Some("feedback".to_owned()), None)
        );
    }

    #[test]
    fn a_refusal_without_an_id_says_re_null_instead_of_leaving_it_out() {
        let fb = Feedback::<String> {
            v: VERSION,
            re: None,
            ok: false,
            beep: Beep::Error,
            text: "payload is not valid JSON".to_owned(),
            next: None,
        };
        let v = value(&to_vec(&fb).unwrap());
        assert_eq!(v["re"], Value::Null);
        assert!(v.as_object().unwrap().contains_key("re"));
        assert_eq!(
            decode_downlink(&to_vec(&fb).unwrap()).unwrap(),
            Downlink::Feedback(fb)
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode_uplink(Channel::Evt, &bytes);
            let _ = decode_downlink(&bytes);
            let _ = peek_id(&bytes);
            let _ = peek_command(&bytes);
            let _ = peek_string(&bytes, &["id"]);
        }

        #[test]
        fn a_cut_text_fits_and_keeps_its_start(s in "\\PC{0,700}", max in 3usize..600) {
            let cut = cut_text(s.clone(), max);
            proptest::prop_assert!(cut.len() <= max);
            if s.len() <= max {
                proptest::prop_assert_eq!(&cut, &s);
            } else {
                let kept = cut.strip_suffix('…').unwrap_or(&cut);
                proptest::prop_assert!(s.starts_with(kept));
            }
        }
    }

    #[test]
    fn a_text_over_the_limit_is_cut_on_a_character_boundary() {
        let long = "货".repeat(400);
        let fit = fit_text(long);
        assert!(fit.len() <= crate::proto::MAX_TEXT_LEN, "{}", fit.len());
        assert!(fit.ends_with('…'));
        assert_eq!(fit_text("short".to_owned()), "short");
        assert_eq!(
            peek_string(br#"{"id":"r-1","msg_id":"m"}"#, &["id"]),
            Some("r-1".to_owned())
        );
        assert_eq!(peek_string(br#"{"id":"a\nb"}"#, &["id"]), None);
    }
}
