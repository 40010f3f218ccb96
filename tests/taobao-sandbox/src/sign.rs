//! TOP request signatures, computed the way the official Java SDK (2020 core) does it.
//!
//! This is the sandbox's own, independent implementation: it must never share code with the
//! node's signer (`node/src/taobao/sign.rs`), because the point of the sandbox is to catch a
//! signing bug in the client rather than to agree with it.
//!
//! The rule (TAOBAO.md §3.1): take every parameter except `sign`, drop those whose name or value
//! is empty, sort by name in byte order, concatenate `name1value1name2value2…` with no separators
//! and digest the UTF-8 bytes of that string `S`:
//!
//! | `sign_method`  | digest                                  |
//! |----------------|-----------------------------------------|
//! | `md5` (absent) | `MD5(secret + S + secret)`              |
//! | `hmac`         | `HMAC-MD5(key = secret, data = S)`      |
//! | `hmac-sha256`  | `HMAC-SHA256(key = secret, data = S)`   |
//!
//! The result is upper-case hex. The body variant (Qimen) appends the raw body to `S`.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// One of the three signature methods the gateway accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMethod {
    /// `MD5(secret + S + secret)`; also what an absent `sign_method` means.
    Md5,
    /// `HMAC-MD5(secret, S)`.
    HmacMd5,
    /// `HMAC-SHA256(secret, S)`.
    HmacSha256,
}

impl SignMethod {
    /// Parses the wire name (`md5`, `hmac`, `hmac-sha256`); `None` for anything else.
    pub fn parse(name: &str) -> Option<SignMethod> {
        match name {
            "md5" => Some(SignMethod::Md5),
            "hmac" => Some(SignMethod::HmacMd5),
            "hmac-sha256" => Some(SignMethod::HmacSha256),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Md5 => "md5",
            SignMethod::HmacMd5 => "hmac",
            SignMethod::HmacSha256 => "hmac-sha256",
        }
    }
}

/// Builds the string `S` that is digested: sorted `name value` pairs, `sign` and empties
/// skipped. Duplicate names keep the last value, as a map-based SDK would.
pub fn string_to_sign<'a, I>(params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut sorted: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for (name, value) in params {
        // Java `TaobaoUtils.signTopRequest`: `StringUtils.areNotEmpty(key, value)` and never `sign`.
        if name.is_empty() || value.is_empty() || name == "sign" {
            continue;
        }
        sorted.insert(name, value);
    }
    let mut s = String::new();
    for (name, value) in sorted {
        s.push_str(name);
        s.push_str(value);
    }
    s
}

/// Signs a parameter set with `secret`; upper-case hex.
pub fn sign<'a, I>(params: I, secret: &str, method: SignMethod) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    sign_with_body(params, None, secret, method)
}

/// Signs a parameter set followed by a raw body (the Qimen / `signTopRequestWithBody` variant).
pub fn sign_with_body<'a, I>(
    params: I,
    body: Option<&[u8]>,
    secret: &str,
    method: SignMethod,
) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let s = string_to_sign(params);
    let body = body.unwrap_or_default();
    let digest = match method {
        SignMethod::Md5 => {
            let mut h = Md5::new();
            h.update(secret.as_bytes());
            h.update(s.as_bytes());
            h.update(body);
            h.update(secret.as_bytes());
            h.finalize().to_vec()
        }
        SignMethod::HmacMd5 => {
            // HMAC accepts keys of any length, so `new_from_slice` cannot fail here; an empty
            // digest (which never matches) is the safe answer if it ever did.
            match Hmac::<Md5>::new_from_slice(secret.as_bytes()) {
                Ok(mut mac) => {
                    mac.update(s.as_bytes());
                    mac.update(body);
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => Vec::new(),
            }
        }
        SignMethod::HmacSha256 => match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
            Ok(mut mac) => {
                mac.update(s.as_bytes());
                mac.update(body);
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        },
    };
    hex::encode_upper(digest)
}

/// Checks a received `sign` against the expected one, case-insensitively (TAOBAO.md §3.1) and
/// without an early exit on the first differing byte.
pub fn verify<'a, I>(params: I, secret: &str, method: SignMethod, received: &str) -> bool
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let expected = sign(params, secret, method);
    constant_time_eq_ignore_ascii_case(expected.as_bytes(), received.as_bytes())
}

fn constant_time_eq_ignore_ascii_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x.to_ascii_uppercase() ^ y.to_ascii_uppercase();
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_method<'a>(base: &[(&'a str, &'a str)], m: SignMethod) -> Vec<(&'a str, &'a str)> {
        let mut v = base.to_vec();
        v.push(("sign_method", m.as_str()));
        v
    }

    const COMMON: [(&str, &str); 5] = [
        ("app_key", "12345678"),
        ("session", "test-session-key"),
        ("timestamp", "2026-11-29 12:00:00"),
        ("format", "json"),
        ("v", "2.0"),
    ];

    fn vector_a() -> Vec<(&'static str, &'static str)> {
        let mut v = COMMON.to_vec();
        v.extend([
            ("method", "taobao.trades.sold.increment.get"),
            ("simplify", "true"),
            ("fields", "tid,status,modified,orders"),
            ("start_modified", "2026-11-29 11:00:00"),
            ("end_modified", "2026-11-29 12:00:00"),
            ("page_no", "1"),
            ("page_size", "50"),
            ("use_has_next", "true"),
        ]);
        v
    }

    fn vector_b() -> Vec<(&'static str, &'static str)> {
        let mut v = COMMON.to_vec();
        v.extend([
            ("method", "taobao.logistics.offline.send"),
            ("tid", "3456789012345678901"),
            ("out_sid", "YT1234567890123"),
            ("company_code", "YTO"),
        ]);
        v
    }

    fn vector_c() -> Vec<(&'static str, &'static str)> {
        let mut v = COMMON.to_vec();
        v.extend([
            ("method", "taobao.item.quantity.update"),
            ("partner_id", "wms-rust-0.1"),
            ("num_iid", "600123456789"),
            ("sku_id", "4567890123456"),
            ("quantity", "25"),
            ("type", "1"),
            ("outer_id", "SKU-红色-XL"),
        ]);
        v
    }

    #[test]
    fn published_vector_p1_reproduces() {
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
            string_to_sign(params),
            "app_keytestfieldsnickformatxmlmethodtaobao.user.seller.getsessiontestsign_methodmd5timestamp2013-05-06 13:52:03v2.0"
        );
        assert_eq!(
            sign(params, "test", SignMethod::Md5),
            "72CB4D809B375A54502C09360D879C64"
        );
    }

    #[test]
    fn published_vector_p2_with_utf8_reproduces() {
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
        let s = string_to_sign(with_method(&vector_a(), SignMethod::Md5));
        assert_eq!(
            s,
            "app_key12345678end_modified2026-11-29 12:00:00fieldstid,status,modified,ordersformatjsonmethodtaobao.trades.sold.increment.getpage_no1page_size50sessiontest-session-keysign_methodmd5simplifytruestart_modified2026-11-29 11:00:00timestamp2026-11-29 12:00:00use_has_nexttruev2.0"
        );
        let expect = [
            (SignMethod::Md5, "8718910505A070EFD9D397531A6855AA"),
            (SignMethod::HmacMd5, "137D8245037F2FA4D0A24C9771782790"),
            (
                SignMethod::HmacSha256,
                "8048E3AA2581F4BFFBA2B0106F8C21D6D649B72BE546F74E9EDB48FB96FD655E",
            ),
        ];
        for (m, want) in expect {
            assert_eq!(
                sign(with_method(&vector_a(), m), "helloworld", m),
                want,
                "{m:?}"
            );
        }
    }

    #[test]
    fn vector_b_reproduces_for_all_three_methods() {
        assert_eq!(
            string_to_sign(with_method(&vector_b(), SignMethod::Md5)),
            "app_key12345678company_codeYTOformatjsonmethodtaobao.logistics.offline.sendout_sidYT1234567890123sessiontest-session-keysign_methodmd5tid3456789012345678901timestamp2026-11-29 12:00:00v2.0"
        );
        let expect = [
            (SignMethod::Md5, "23EF7EA81B15DFD0D2CE273D637E1C49"),
            (SignMethod::HmacMd5, "EFC19405716C68DC1F83D346ABE4D5CC"),
            (
                SignMethod::HmacSha256,
                "9ABD24F6C0078555F96B4DFFE3F1503306BA62A5A60D94B90C7944FE27DF4838",
            ),
        ];
        for (m, want) in expect {
            assert_eq!(
                sign(with_method(&vector_b(), m), "helloworld", m),
                want,
                "{m:?}"
            );
        }
    }

    #[test]
    fn vector_c_with_a_non_ascii_value_reproduces_for_all_three_methods() {
        assert_eq!(
            string_to_sign(with_method(&vector_c(), SignMethod::Md5)),
            "app_key12345678formatjsonmethodtaobao.item.quantity.updatenum_iid600123456789outer_idSKU-红色-XLpartner_idwms-rust-0.1quantity25sessiontest-session-keysign_methodmd5sku_id4567890123456timestamp2026-11-29 12:00:00type1v2.0"
        );
        let expect = [
            (SignMethod::Md5, "D4BB484069ADC3088A5102000CEFA506"),
            (SignMethod::HmacMd5, "6D6D968FAF3C8A40DD05FCB55F7737DB"),
            (
                SignMethod::HmacSha256,
                "E20A4DC57CA6209517E387446CAEEA373B346B8BB50DB79D51B9DD9C70B905FA",
            ),
        ];
        for (m, want) in expect {
            assert_eq!(
                sign(with_method(&vector_c(), m), "helloworld", m),
                want,
                "{m:?}"
            );
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
            string_to_sign(params),
            "app_key12345678group_namedefaulttimestamp1795924800000"
        );
        assert_eq!(
            sign(params, "helloworld", SignMethod::Md5),
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
        assert_eq!(
            string_to_sign(params),
            "app_key12345678customerIdc1001formatxmlmethodtaobao.qimen.deliveryorder.confirmsign_methodmd5timestamp2026-11-29 12:00:00v2.0"
        );
        let body = br#"<?xml version="1.0" encoding="utf-8"?><request><deliveryOrder><deliveryOrderCode>DO1</deliveryOrderCode></deliveryOrder></request>"#;
        assert_eq!(
            sign_with_body(params, Some(body), "helloworld", SignMethod::Md5),
            "23A859CF3BBA0E3FD89A6C03320DE962"
        );
    }

    #[test]
    fn empty_values_and_the_sign_itself_are_not_signed() {
        let base = vector_b();
        let mut noisy = base.clone();
        noisy.push(("sign", "DEADBEEF"));
        noisy.push(("seller_ip", ""));
        noisy.push(("", "orphan"));
        assert_eq!(
            sign(
                with_method(&noisy, SignMethod::Md5),
                "helloworld",
                SignMethod::Md5
            ),
            "23EF7EA81B15DFD0D2CE273D637E1C49"
        );
    }

    #[test]
    fn names_sort_in_byte_order_not_case_folded() {
        assert_eq!(
            string_to_sign([
                ("foo", "1"),
                ("bar", "2"),
                ("foo_bar", "3"),
                ("foobar", "4")
            ]),
            "bar2foo1foo_bar3foobar4"
        );
        // Upper case sorts before lower case: `customerId` sits between `app_key` and `format`,
        // and `Zeta` before `alpha`.
        assert_eq!(
            string_to_sign([("alpha", "1"), ("Zeta", "2")]),
            "Zeta2alpha1"
        );
    }

    #[test]
    fn verification_ignores_hex_case_but_nothing_else() {
        let p = with_method(&vector_a(), SignMethod::Md5);
        assert!(verify(
            p.clone(),
            "helloworld",
            SignMethod::Md5,
            "8718910505a070efd9d397531a6855aa"
        ));
        assert!(!verify(
            p.clone(),
            "helloworld",
            SignMethod::Md5,
            "8718910505A070EFD9D397531A6855AB"
        ));
        assert!(!verify(
            p.clone(),
            "helloworle",
            SignMethod::Md5,
            "8718910505A070EFD9D397531A6855AA"
        ));
        assert!(!verify(
            p,
            "helloworld",
            SignMethod::Md5,
            "8718910505A070EFD9D397531A6855A"
        ));
    }

    #[test]
    fn sign_method_names_round_trip() {
        for m in [SignMethod::Md5, SignMethod::HmacMd5, SignMethod::HmacSha256] {
            assert_eq!(SignMethod::parse(m.as_str()), Some(m));
        }
        assert_eq!(SignMethod::parse("sha1"), None);
        assert_eq!(SignMethod::parse("MD5"), None);
    }
}
