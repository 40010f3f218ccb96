//! The shape of the config: which sections exist and which keys each has, read from the
//! serde derives themselves so that it can never drift from the structs.
//!
//! `serde`'s derived `Deserialize` for a struct calls `deserialize_struct(name, FIELDS, …)`;
//! [`struct_fields`] hands it a deserializer that records `FIELDS` and stops. The same trick
//! is used by `serde-aux`'s `serde_introspect`.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

use super::{
    AlertsConfig, Config, FloorConfig, HttpConfig, IntakeConfig, LogConfig, MqttConfig, NodeConfig,
    OtaConfig, OutboxConfig, ReconcileConfig, ShippingConfig, StockConfig, StoreConfig,
    TaobaoConfig, WaybillConfig,
};

/// Keys whose values are secrets: never echoed in errors, always redacted in output.
pub(crate) const SECRET_KEYS: &[&str] = &[
    "taobao.app_secret",
    "taobao.session",
    "mqtt.password",
    "alerts.url",
    "alerts.secret",
];

/// The top-level sections, in the order of [`Config`]'s fields.
pub(crate) fn sections() -> &'static [&'static str] {
    struct_fields::<Config>()
}

/// The keys of one section, or `None` if there is no such section.
pub(crate) fn section_keys(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "node" => struct_fields::<NodeConfig>(),
        "log" => struct_fields::<LogConfig>(),
        "store" => struct_fields::<StoreConfig>(),
        "outbox" => struct_fields::<OutboxConfig>(),
        "taobao" => struct_fields::<TaobaoConfig>(),
        "intake" => struct_fields::<IntakeConfig>(),
        "shipping" => struct_fields::<ShippingConfig>(),
        "waybill" => struct_fields::<WaybillConfig>(),
        "stock" => struct_fields::<StockConfig>(),
        "reconcile" => struct_fields::<ReconcileConfig>(),
        "mqtt" => struct_fields::<MqttConfig>(),
        "floor" => struct_fields::<FloorConfig>(),
        "http" => struct_fields::<HttpConfig>(),
        "ota" => struct_fields::<OtaConfig>(),
        "alerts" => struct_fields::<AlertsConfig>(),
        _ => return None,
    })
}

/// Whether the dotted key (`"taobao.app_secret"`) holds a secret.
pub(crate) fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

/// The candidate closest to `word`, if any is close enough to be a plausible typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|&c| (c, strsim::jaro_winkler(&word, c)))
        .filter(|&(_, score)| score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// The field names of a struct with a derived `Deserialize`.
pub(crate) fn struct_fields<T>() -> &'static [&'static str]
where
    T: for<'de> Deserialize<'de>,
{
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldGrabber {
        fields: &mut fields,
    });
    fields
}

struct FieldGrabber<'a> {
    fields: &'a mut &'static [&'static str],
}

#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldGrabber<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.fields = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_has_its_keys_listed() {
        assert!(sections().contains(&"taobao"));
        for s in sections() {
            let keys = section_keys(s).unwrap_or_else(|| panic!("section {s} has no key list"));
            assert!(!keys.is_empty(), "{s}");
        }
        assert!(section_keys("taobao").unwrap().contains(&"app_secret_file"));
    }

    #[test]
    fn every_secret_key_exists() {
        for key in SECRET_KEYS {
            let (section, field) = key.split_once('.').unwrap();
            assert!(section_keys(section).unwrap().contains(&field), "{key}");
        }
    }

    #[test]
    fn typos_get_the_nearest_key_and_nonsense_gets_none() {
        let keys = section_keys("taobao").unwrap();
        assert_eq!(suggest("app_secert", keys), Some("app_secret"));
        assert_eq!(suggest("APP_KEY", keys), Some("app_key"));
        assert_eq!(suggest("endpiont", keys), Some("endpoint"));
        assert_eq!(suggest("zzzz", keys), None);
    }
}
