//! Request parameters: decoding `application/x-www-form-urlencoded` text and merging the URL
//! query with the form body (TAOBAO.md §1.2).
//!
//! Rules: `+` and `%20` both decode to a space (the timestamp contains one); `%2B` is a literal
//! plus; percent-decoded bytes must be UTF-8, otherwise the request is answered with code 47
//! "Invalid encoding". On a duplicate name the body wins over the query; within one source the
//! last occurrence wins. The signature is computed over these decoded values.

use std::collections::BTreeMap;

use percent_encoding::percent_decode;

/// Raised when a decoded name or value is not UTF-8.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("parameter text is not valid UTF-8 after percent-decoding")]
pub struct InvalidEncoding;

/// Decodes one `application/x-www-form-urlencoded` string into `(name, value)` pairs.
pub fn decode_form(text: &[u8]) -> Result<Vec<(String, String)>, InvalidEncoding> {
    let mut out = Vec::new();
    for pair in text.split(|b| *b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        out.push((decode_component(name)?, decode_component(value)?));
    }
    Ok(out)
}

fn decode_component(raw: &[u8]) -> Result<String, InvalidEncoding> {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_decode(&plus_as_space).collect();
    String::from_utf8(bytes).map_err(|_| InvalidEncoding)
}

/// The merged parameter set of one gateway call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Merges the query and the body; the body wins on a duplicate name.
    pub fn merge(query: &[u8], body: &[u8]) -> Result<Params, InvalidEncoding> {
        let mut map = BTreeMap::new();
        for (k, v) in decode_form(query)? {
            map.insert(k, v);
        }
        for (k, v) in decode_form(body)? {
            map.insert(k, v);
        }
        Ok(Params { map })
    }

    /// Builds a set from pairs (tests, in-process callers).
    pub fn from_pairs<I, K, V>(pairs: I) -> Params
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Params {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value, `None` when absent. An empty value counts as absent, as in the SDKs.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every `(name, value)` pair, for signing.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_and_percent_20_both_decode_to_a_space() {
        let p = Params::merge(b"timestamp=2026-11-29+12%3A00%3A00", b"a=x%20y&b=1%2B1").unwrap();
        assert_eq!(p.get("timestamp"), Some("2026-11-29 12:00:00"));
        assert_eq!(p.get("a"), Some("x y"));
        assert_eq!(p.get("b"), Some("1+1"));
    }

    #[test]
    fn the_body_wins_over_the_query_on_a_duplicate_name() {
        let p = Params::merge(b"tid=1&fields=a", b"tid=2").unwrap();
        assert_eq!(p.get("tid"), Some("2"));
        assert_eq!(p.get("fields"), Some("a"));
    }

    #[test]
    fn utf8_values_decode_and_invalid_bytes_are_refused() {
        let p = Params::merge(b"", b"outer_id=SKU-%E7%BA%A2%E8%89%B2-XL").unwrap();
        assert_eq!(p.get("outer_id"), Some("SKU-红色-XL"));
        assert_eq!(Params::merge(b"nick=%C4%E3", b""), Err(InvalidEncoding));
    }

    #[test]
    fn empty_values_and_bare_names_count_as_absent() {
        let p = Params::merge(b"a=&b&&c=1", b"").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("1"));
    }
}
