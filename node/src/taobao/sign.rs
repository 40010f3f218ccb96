//! TOP request signatures: `md5`, `hmac` (HMAC-MD5) and `hmac-sha256` (TAOBAO.md §3).
//!
//! The string to sign is every parameter, system and business, sorted by name in plain byte
//! order, concatenated as `name1value1name2value2…` with no separators and no URL encoding.
//! Parameters with an empty name or value are skipped (they are never sent either), and so is
//! `sign` itself. The body variant (Qimen, JSON/XML-bodied requests) appends the raw body.
//!
//! | method        | digest                               | hex length |
//! |---------------|--------------------------------------|------------|
//! | `md5`         | `MD5(secret + S [+ body] + secret)`  | 32         |
//! | `hmac`        | `HMAC-MD5(key = secret, S [+ body])` | 32         |
//! | `hmac-sha256` | `HMAC-SHA256(key = secret, S [+ body])` | 64      |
//!
//! The result is upper-case hex. The digest is fed piece by piece, so the string `S` is never
//! built: nothing that holds the secret or the session outlives this call.
//!
//! Must never log: the secret, the parameters (they contain the session) or `S`.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use std::fmt;
use std::str::FromStr;

/// How a request is signed. Sent as the `sign_method` system parameter, which is itself signed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum SignMethod {
    /// `MD5(secret + S + secret)`; the legacy default when `sign_method` is absent.
    #[serde(rename = "md5")]
    Md5,
    /// HMAC-MD5 keyed with the secret, no wrapping.
    #[serde(rename = "hmac")]
    Hmac,
    /// HMAC-SHA256 keyed with the secret, no wrapping (the 2020 Java SDK's default).
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl SignMethod {
    /// Every method, for tests and validation messages.
    pub const ALL: [SignMethod; 3] = [SignMethod::Md5, SignMethod::Hmac, SignMethod::HmacSha256];

    /// The wire name: `md5`, `hmac` or `hmac-sha256`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Md5 => "md5",
            SignMethod::Hmac => "hmac",
            SignMethod::HmacSha256 => "hmac-sha256",
        }
    }
}

impl fmt::Display for SignMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `sign_method` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sign_method {0:?}: expected one of md5, hmac, hmac-sha256")]
pub struct UnknownSignMethod(pub String);

impl FromStr for SignMethod {
    type Err = UnknownSignMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "md5" => Ok(SignMethod::Md5),
            "hmac" => Ok(SignMethod::Hmac),
            "hmac-sha256" => Ok(SignMethod::HmacSha256),
            other => Err(UnknownSignMethod(other.to_owned())),
        }
    }
}

/// Signs a parameter set (TAOBAO.md §3.1). `params` may come in any order and may include
/// `sign` or empty values: both are left out of the signature.
pub fn sign<'a, I>(params: I, secret: &str, method: SignMethod) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    sign_with_body(params, None, secret, method)
}

/// Signs a parameter set followed by a raw request body (the Qimen and JSON-body variant).
pub fn sign_with_body<'a, I>(
    params: I,
    body: Option<&[u8]>,
    secret: &str,
    method: SignMethod,
) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut sorted: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty() && *k != "sign")
        .collect();
    // `str`'s `Ord` is byte order, which is what every official SDK uses (Java `TreeMap`,
    // .NET `StringComparer.Ordinal`). A stable sort keeps duplicates in caller order, though
    // the client never sends a name twice.
    sorted.sort_by(|a, b| a.0.cmp(b.0));

    let mut digest = Digester::new(secret, method);
    for (k, v) in &sorted {
        digest.update(k.as_bytes());
        digest.update(v.as_bytes());
    }
    if let Some(body) = body {
        digest.update(body);
    }
    digest.finish_upper_hex()
}

/// The three digests behind one interface, fed incrementally.
enum Digester<'s> {
    Md5 { hasher: Md5, secret: &'s str },
    Hmac(Hmac<Md5>),
    HmacSha256(Hmac<Sha256>),
}

impl<'s> Digester<'s> {
    fn new(secret: &'s str, method: SignMethod) -> Self {
        match method {
            SignMethod::Md5 => {
                let mut hasher = Md5::new();
                hasher.update(secret.as_bytes());
                Digester::Md5 { hasher, secret }
            }
            // HMAC accepts keys of any length (long keys are hashed first), so `new_from_slice`
            // cannot fail here; the fallback keeps this panic-free regardless.
            SignMethod::Hmac => Digester::Hmac(
                Hmac::<Md5>::new_from_slice(secret.as_bytes())
                    .unwrap_or_else(|_| Hmac::<Md5>::new(&Default::default())),
            ),
            SignMethod::HmacSha256 => Digester::HmacSha256(
                Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                    .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default())),
            ),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Digester::Md5 { hasher, .. } => hasher.update(bytes),
            Digester::Hmac(mac) => mac.update(bytes),
            Digester::HmacSha256(mac) => mac.update(bytes),
        }
    }

    fn finish_upper_hex(self) -> String {
        match self {
            Digester::Md5 { mut hasher, secret } => {
                hasher.update(secret.as_bytes());
                hex::encode_upper(hasher.finalize())
            }
            Digester::Hmac(mac) => hex::encode_upper(mac.finalize().into_bytes()),
            Digester::HmacSha256(mac) => hex::encode_upper(mac.finalize().into_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "helloworld";

    fn common(method: SignMethod) -> Vec<(&'static str, &'static str)> {
        vec![
            ("app_key", "12345678"),
            ("session", "test-session-key"),
            ("timestamp", "2026-11-29 12:00:00"),
            ("format", "json"),
            ("v", "2.0"),
            ("sign_method", method.as_str()),
        ]
    }

    fn vector_a(method: SignMethod) -> Vec<(&'static str, &'static str)> {
        let mut p = common(method);
        p.extend([
            ("method", "taobao.trades.sold.increment.get"),
            ("simplify", "true"),
            ("fields", "tid,status,modified,orders"),
            ("start_modified", "2026-11-29 11:00:00"),
            ("end_modified", "2026-11-29 12:00:00"),
            ("page_no", "1"),
            ("page_size", "50"),
            ("use_has_next", "true"),
        ]);
        p
    }

    fn vector_b(method: SignMethod) -> Vec<(&'static str, &'static str)> {
        let mut p = common(method);
        p.extend([
            ("method", "taobao.logistics.offline.send"),
            ("tid", "3456789012345678901"),
            ("out_sid", "YT1234567890123"),
            ("company_code", "YTO"),
        ]);
        p
    }

    fn vector_c(method: SignMethod) -> Vec<(&'static str, &'static str)> {
        let mut p = common(method);
        p.extend([
            ("method", "taobao.item.quantity.update"),
            ("partner_id", "wms-rust-0.1"),
            ("num_iid", "600123456789"),
            ("sku_id", "4567890123456"),
            ("quantity", "25"),
            ("type", "1"),
            ("outer_id", "SKU-红色-XL"),
        ]);
        p
    }

    #[test]
    fn published_vector_p1_reproduces_with_md5() {
        let params = [
            ("method", "taobao.user.seller.get"),
            ("timestamp", "2013-05-06 13:52:03"),
            ("format", "xml"),
            ("app_key", "test"),
            ("v", "2.0"),
            ("fields", "nick"),
            ("sign_method", "md5"),
            ("session", "test"),
        ];
        assert_eq!(
            sign(params, "test", SignMethod::Md5),
            "72CB4D809B375A54502C09360D879C64"
        );
    }

    #[test]
    fn published_vector_p2_signs_utf8_bytes() {
        let params = [
            ("method", "taobao.user.get"),
            ("timestamp", "2011-07-01 13: 52:03"),
            ("format", "xml"),
            ("app_key", "test"),
            ("v", "2.0"),
            ("fields", "nick,location.state,location.city"),
            ("nick", "商家测试帐号17"),
            ("sign_method", "md5"),
        ];
        assert_eq!(
            sign(params, "test", SignMethod::Md5),
            "990FD28323F67A1EEC29336EDF373C0E"
        );
    }

    #[test]
    fn vector_a_reproduces_for_all_three_methods() {
        let expected = [
            (SignMethod::Md5, "8718910505A070EFD9D397531A6855AA"),
            (SignMethod::Hmac, "137D8245037F2FA4D0A24C9771782790"),
            (
                SignMethod::HmacSha256,
                "8048E3AA2581F4BFFBA2B0106F8C21D6D649B72BE546F74E9EDB48FB96FD655E",
            ),
        ];
        for (m, want) in expected {
            assert_eq!(sign(vector_a(m), SECRET, m), want, "{m}");
        }
    }

    #[test]
    fn vector_b_reproduces_for_all_three_methods() {
        let expected = [
            (SignMethod::Md5, "23EF7EA81B15DFD0D2CE273D637E1C49"),
            (SignMethod::Hmac, "EFC19405716C68DC1F83D346ABE4D5CC"),
            (
                SignMethod::HmacSha256,
                "9ABD24F6C0078555F96B4DFFE3F1503306BA62A5A60D94B90C7944FE27DF4838",
            ),
        ];
        for (m, want) in expected {
            assert_eq!(sign(vector_b(m), SECRET, m), want, "{m}");
        }
    }

    #[test]
    fn vector_c_with_a_non_ascii_value_reproduces_for_all_three_methods() {
        let expected = [
            (SignMethod::Md5, "D4BB484069ADC3088A5102000CEFA506"),
            (SignMethod::Hmac, "6D6D968FAF3C8A40DD05FCB55F7737DB"),
            (
                SignMethod::HmacSha256,
                "E20A4DC57CA6209517E387446CAEEA373B346B8BB50DB79D51B9DD9C70B905FA",
            ),
        ];
        for (m, want) in expected {
            assert_eq!(sign(vector_c(m), SECRET, m), want, "{m}");
        }
    }

    #[test]
    fn tmc_connect_vector_reproduces() {
        let params = [
            ("app_key", "12345678"),
            ("group_name", "default"),
            ("timestamp", "1795924800000"),
        ];
        assert_eq!(
            sign(params, SECRET, SignMethod::Md5),
            "057950604557A006C6E3BFBBDC7684F1"
        );
    }

    #[test]
    fn qimen_body_vector_reproduces() {
        let params = [
            ("method", "taobao.qimen.deliveryorder.confirm"),
            ("timestamp", "2026-11-29 12:00:00"),
            ("format", "xml"),
            ("app_key", "12345678"),
            ("v", "2.0"),
            ("sign_method", "md5"),
            ("customerId", "c1001"),
        ];
        let body = br#"<?xml version="1.0" encoding="utf-8"?><request><deliveryOrder><deliveryOrderCode>DO1</deliveryOrderCode></deliveryOrder></request>"#;
        assert_eq!(
            sign_with_body(params, Some(body), SECRET, SignMethod::Md5),
            "23A859CF3BBA0E3FD89A6C03320DE962"
        );
    }

    #[test]
    fn sign_and_empty_values_are_left_out_of_the_signature() {
        let mut with_extras = vector_b(SignMethod::Hmac);
        with_extras.push(("sign", "ABCDEF"));
        with_extras.push(("seller_ip", ""));
        with_extras.push(("", "orphan"));
        assert_eq!(
            sign(with_extras, SECRET, SignMethod::Hmac),
            "EFC19405716C68DC1F83D346ABE4D5CC"
        );
    }

    #[test]
    fn parameter_order_does_not_matter() {
        let mut reversed = vector_a(SignMethod::Md5);
        reversed.reverse();
        assert_eq!(
            sign(reversed, SECRET, SignMethod::Md5),
            "8718910505A070EFD9D397531A6855AA"
        );
    }

    #[test]
    fn names_sort_by_bytes_so_upper_case_comes_first() {
        // `customerId` must sort between `app_key` and `format` (byte order), which the Qimen
        // vector already pins; here the doc's own example: bar2foo1foo_bar3foobar4.
        let a = sign(
            [
                ("foo", "1"),
                ("bar", "2"),
                ("foo_bar", "3"),
                ("foobar", "4"),
            ],
            "s",
            SignMethod::Md5,
        );
        let mut h = Md5::new();
        h.update(b"sbar2foo1foo_bar3foobar4s");
        assert_eq!(a, hex::encode_upper(h.finalize()));
    }

    #[test]
    fn sign_method_names_round_trip() {
        for m in SignMethod::ALL {
            assert_eq!(m.as_str().parse::<SignMethod>(), Ok(m));
        }
        assert!("HMAC".parse::<SignMethod>().is_err());
    }
}
