//! Response envelopes: how one business result is written in each of TOP's forms
//! (TAOBAO.md §1.6).
//!
//! Business code builds an [`Out`] tree that knows which fields are lists and what their element
//! type is called; this module renders it as
//!
//! * JSON `simplify=false` (classic): `{"<name>_response":{…,"request_id":…}}` with every list
//!   wrapped as `"trades":{"trade":[…]}`;
//! * JSON `simplify=true`: fields at the root, lists as plain arrays;
//! * XML (the default when `format` is absent): `<name_response>` with `list="true"` wrappers.
//!
//! Errors are always `{"error_response":{code,msg,sub_code?,sub_msg?,request_id}}` (or its XML
//! form), with HTTP 200. The ids-as-strings switch rewrites numeric ids (`tid`, `oid`, `num_iid`,
//! …) as JSON strings so that lenient client decoders are exercised.

use serde_json::{Map, Value};

/// A response tree that remembers list element names.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A scalar (string, number, boolean).
    Value(Value),
    /// An object with ordered fields.
    Obj(Vec<(String, Out)>),
    /// A list whose elements are called `elem` in the classic and XML forms.
    List(&'static str, Vec<Out>),
}

impl Out {
    /// A string scalar.
    pub fn str(s: impl Into<String>) -> Out {
        Out::Value(Value::String(s.into()))
    }
    /// An integer scalar.
    pub fn int(n: i64) -> Out {
        Out::Value(Value::from(n))
    }
    /// A boolean scalar.
    pub fn bool(b: bool) -> Out {
        Out::Value(Value::Bool(b))
    }
}

/// Builds an ordered object field by field, skipping fields the caller did not ask for.
#[derive(Debug, Default)]
pub struct ObjBuilder {
    fields: Vec<(String, Out)>,
}

impl ObjBuilder {
    /// An empty object.
    pub fn new() -> ObjBuilder {
        ObjBuilder::default()
    }
    /// Adds a field.
    pub fn put(&mut self, name: &str, value: Out) -> &mut Self {
        self.fields.push((name.to_string(), value));
        self
    }
    /// Finishes the object.
    pub fn build(self) -> Out {
        Out::Obj(self.fields)
    }
    /// The fields, for a response root.
    pub fn into_fields(self) -> Vec<(String, Out)> {
        self.fields
    }
}

/// Response format requested with `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `format=json`.
    Json,
    /// `format=xml` or no `format` (TOP's default).
    Xml,
}

/// How a reply should be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// JSON or XML.
    pub format: Format,
    /// `simplify=true` (JSON only).
    pub simplify: bool,
    /// Emit numeric ids as strings.
    pub ids_as_strings: bool,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            format: Format::Json,
            simplify: false,
            ids_as_strings: false,
        }
    }
}

/// A TOP error reply: `code`, `msg` and optional `sub_code` / `sub_msg`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TOP error {code} {msg} {sub_code:?}")]
pub struct TopError {
    /// Platform code (TAOBAO.md §5.1).
    pub code: i64,
    /// Platform message.
    pub msg: String,
    /// Business sub-code, e.g. `isv.invalid-parameter:tid`.
    pub sub_code: Option<String>,
    /// Human-readable detail.
    pub sub_msg: Option<String>,
}

impl TopError {
    /// A bare gateway error.
    pub fn new(code: i64, msg: &str) -> TopError {
        TopError {
            code,
            msg: msg.to_string(),
            sub_code: None,
            sub_msg: None,
        }
    }
    /// Adds a sub-code and sub-message.
    pub fn with_sub(mut self, sub_code: impl Into<String>, sub_msg: impl Into<String>) -> TopError {
        self.sub_code = Some(sub_code.into());
        self.sub_msg = Some(sub_msg.into());
        self
    }
    /// 40 Missing required arguments, `isv.missing-parameter:<name>`.
    pub fn missing(name: &str) -> TopError {
        TopError::new(40, &format!("Missing required arguments:{name}")).with_sub(
            format!("isv.missing-parameter:{name}"),
            format!("{name} is required"),
        )
    }
    /// 41 Invalid arguments, `isv.invalid-parameter:<name>`.
    pub fn invalid(name: &str, why: impl Into<String>) -> TopError {
        TopError::new(41, &format!("Invalid arguments:{name}"))
            .with_sub(format!("isv.invalid-parameter:{name}"), why)
    }
    /// 15 Remote service error with a business sub-code.
    pub fn remote(sub_code: impl Into<String>, sub_msg: impl Into<String>) -> TopError {
        TopError::new(15, "Remote service error").with_sub(sub_code, sub_msg)
    }
}

/// The ids rewritten as strings by the ids-as-strings switch.
const ID_KEYS: &[&str] = &["tid", "oid", "num_iid", "iid", "sku_id", "cid", "user_id"];

/// The classic root name: `taobao.` removed, dots to underscores, `_response` appended.
pub fn root_name(method: &str) -> String {
    let bare = method.strip_prefix("taobao.").unwrap_or(method);
    format!("{}_response", bare.replace('.', "_"))
}

fn to_json(out: &Out, key: Option<&str>, style: &Style) -> Value {
    match out {
        Out::Value(v) => {
            if style.ids_as_strings
                && key.is_some_and(|k| ID_KEYS.contains(&k))
                && let Value::Number(n) = v
            {
                return Value::String(n.to_string());
            }
            v.clone()
        }
        Out::Obj(fields) => Value::Object(fields_to_map(fields, style)),
        Out::List(elem, items) => {
            let arr = Value::Array(items.iter().map(|i| to_json(i, None, style)).collect());
            if style.simplify {
                arr
            } else {
                let mut m = Map::new();
                m.insert((*elem).to_string(), arr);
                Value::Object(m)
            }
        }
    }
}

fn fields_to_map(fields: &[(String, Out)], style: &Style) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in fields {
        m.insert(k.clone(), to_json(v, Some(k), style));
    }
    m
}

/// Renders a success reply. Returns `(content_type, body)`.
pub fn render_success(
    method: &str,
    fields: &[(String, Out)],
    request_id: &str,
    style: &Style,
) -> (&'static str, String) {
    match style.format {
        Format::Json => {
            let mut inner = fields_to_map(fields, style);
            inner.insert("request_id".into(), Value::String(request_id.into()));
            let body = if style.simplify {
                Value::Object(inner)
            } else {
                let mut root = Map::new();
                root.insert(root_name(method), Value::Object(inner));
                Value::Object(root)
            };
            (JSON_CT, body.to_string())
        }
        Format::Xml => {
            let root = root_name(method);
            let mut s = String::from(XML_DECL);
            s.push_str(&format!("<{root}>"));
            for (k, v) in fields {
                xml_field(&mut s, k, v);
            }
            xml_field(&mut s, "request_id", &Out::str(request_id));
            s.push_str(&format!("</{root}>"));
            (XML_CT, s)
        }
    }
}

/// Renders an error reply (same shape in both JSON modes). Returns `(content_type, body)`.
pub fn render_error(err: &TopError, request_id: &str, format: Format) -> (&'static str, String) {
    let mut fields = vec![
        ("code".to_string(), Out::int(err.code)),
        ("msg".to_string(), Out::str(err.msg.clone())),
    ];
    if let Some(sc) = &err.sub_code {
        fields.push(("sub_code".into(), Out::str(sc.clone())));
    }
    if let Some(sm) = &err.sub_msg {
        fields.push(("sub_msg".into(), Out::str(sm.clone())));
    }
    fields.push(("request_id".into(), Out::str(request_id)));
    let style = Style {
        format,
        simplify: true,
        ids_as_strings: false,
    };
    match format {
        Format::Json => {
            let mut root = Map::new();
            root.insert(
                "error_response".into(),
                Value::Object(fields_to_map(&fields, &style)),
            );
            (JSON_CT, Value::Object(root).to_string())
        }
        Format::Xml => {
            let mut s = String::from(XML_DECL);
            s.push_str("<error_response>");
            for (k, v) in &fields {
                xml_field(&mut s, k, v);
            }
            s.push_str("</error_response>");
            (XML_CT, s)
        }
    }
}

/// JSON content type of every reply.
pub const JSON_CT: &str = "application/json;charset=UTF-8";
/// XML content type.
pub const XML_CT: &str = "text/xml;charset=UTF-8";
const XML_DECL: &str = r#"<?xml version="1.0" encoding="utf-8" ?>"#;

fn xml_field(s: &mut String, name: &str, out: &Out) {
    match out {
        Out::Value(v) => {
            s.push_str(&format!("<{name}>"));
            match v {
                Value::String(t) => xml_escape_into(s, t),
                other => s.push_str(&other.to_string()),
            }
            s.push_str(&format!("</{name}>"));
        }
        Out::Obj(fields) => {
            s.push_str(&format!("<{name}>"));
            for (k, v) in fields {
                xml_field(s, k, v);
            }
            s.push_str(&format!("</{name}>"));
        }
        Out::List(elem, items) => {
            s.push_str(&format!(r#"<{name} list="true">"#));
            for item in items {
                xml_field(s, elem, item);
            }
            s.push_str(&format!("</{name}>"));
        }
    }
}

fn xml_escape_into(s: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '&' => s.push_str("&amp;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            c => s.push(c),
        }
    }
}

/// A fresh TOP-looking request id (12–13 lower-case base-36 characters).
pub fn new_request_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let len = rng.random_range(12..=13);
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(String, Out)> {
        let order = Out::Obj(vec![
            ("oid".into(), Out::int(2)),
            ("num".into(), Out::int(1)),
        ]);
        let trade = Out::Obj(vec![
            ("tid".into(), Out::int(1)),
            ("payment".into(), Out::str("579.00")),
            ("orders".into(), Out::List("order", vec![order])),
        ]);
        vec![
            ("trades".into(), Out::List("trade", vec![trade])),
            ("has_next".into(), Out::bool(false)),
        ]
    }

    #[test]
    fn classic_json_wraps_the_root_and_every_list() {
        let (_, body) = render_success(
            "taobao.trades.sold.increment.get",
            &sample(),
            "rid",
            &Style::default(),
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        let r = &v["trades_sold_increment_get_response"];
        assert_eq!(r["request_id"], "rid");
        assert_eq!(r["trades"]["trade"][0]["orders"]["order"][0]["oid"], 2);
        assert_eq!(r["trades"]["trade"][0]["payment"], "579.00");
    }

    #[test]
    fn simplified_json_has_fields_at_the_root_and_plain_arrays() {
        let style = Style {
            simplify: true,
            ..Style::default()
        };
        let (_, body) =
            render_success("taobao.trades.sold.increment.get", &sample(), "rid", &style);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["trades"][0]["orders"][0]["oid"], 2);
        assert_eq!(v["request_id"], "rid");
    }

    #[test]
    fn ids_as_strings_rewrites_only_ids() {
        let style = Style {
            simplify: true,
            ids_as_strings: true,
            ..Style::default()
        };
        let (_, body) = render_success("taobao.trades.sold.get", &sample(), "rid", &style);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["trades"][0]["tid"], "1");
        assert_eq!(v["trades"][0]["orders"][0]["oid"], "2");
        assert_eq!(v["trades"][0]["orders"][0]["num"], 1);
    }

    #[test]
    fn root_names_drop_only_the_taobao_prefix() {
        assert_eq!(
            root_name("taobao.trade.fullinfo.get"),
            "trade_fullinfo_get_response"
        );
        assert_eq!(
            root_name("cainiao.waybill.ii.cancel"),
            "cainiao_waybill_ii_cancel_response"
        );
        assert_eq!(
            root_name("taobao.rdc.aligenius.sendgoods.cancel"),
            "rdc_aligenius_sendgoods_cancel_response"
        );
    }

    #[test]
    fn errors_are_wrapped_in_every_format() {
        let e = TopError::remote("isv.logistics-offline-service-error:B04", "已发货");
        let (_, json) = render_error(&e, "rid", Format::Json);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["error_response"]["code"], 15);
        assert_eq!(
            v["error_response"]["sub_code"],
            "isv.logistics-offline-service-error:B04"
        );
        let (_, xml) = render_error(&TopError::new(7, "App Call Limited"), "rid", Format::Xml);
        assert!(xml.contains("<error_response><code>7</code><msg>App Call Limited</msg>"));
    }

    #[test]
    fn xml_marks_lists_and_escapes_text() {
        let style = Style {
            format: Format::Xml,
            ..Style::default()
        };
        let fields = vec![(
            "trades".to_string(),
            Out::List(
                "trade",
                vec![Out::Obj(vec![("title".into(), Out::str("a<b & c"))])],
            ),
        )];
        let (_, xml) = render_success("taobao.trades.sold.get", &fields, "rid", &style);
        assert!(xml.contains(
            r#"<trades_sold_get_response><trades list="true"><trade><title>a&lt;b &amp; c</title></trade></trades><request_id>rid</request_id>"#
        ));
    }

    #[test]
    fn request_ids_look_like_tops() {
        let id = new_request_id();
        assert!((12..=13).contains(&id.len()));
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }
}
