//! The logistics companies the sandbox knows (DOMAIN.md §8) and the waybill numbers it issues.
//!
//! `reg_mail_no` is the regular expression a tracking number must match for that company; the
//! values are test data, not the carriers' real rules. `logistics.offline.send` checks `out_sid`
//! against it (B60), and `cainiao.waybill.ii.get` only ever issues numbers that match it.

use std::sync::OnceLock;

use regex::Regex;

/// One logistics company.
#[derive(Debug, Clone)]
pub struct Company {
    /// Taobao id of the company.
    pub id: i64,
    /// Taobao / Cainiao code, e.g. `YTO`.
    pub code: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Tracking-number regex as published by `logistics.companies.get`.
    pub reg_mail_no: &'static str,
    /// Offered as a recommended company (`is_recommended=true`).
    pub recommended: bool,
}

const fn c(
    id: i64,
    code: &'static str,
    name: &'static str,
    reg_mail_no: &'static str,
    recommended: bool,
) -> Company {
    Company {
        id,
        code,
        name,
        reg_mail_no,
        recommended,
    }
}

/// The table of DOMAIN.md §8.
pub const COMPANIES: &[Company] = &[
    c(505, "SF", "顺丰速运", r"^SF\d{13}$", true),
    c(2, "EMS", "EMS", r"^\d{13}$", true),
    c(1209, "EYB", "EMS经济快递", r"^\d{13}$", false),
    c(101, "YTO", "圆通速递", r"^YT\d{13}$", true),
    c(500, "ZTO", "中通快递", r"^\d{12,14}$", true),
    c(100, "STO", "申通快递", r"^\d{12,13}$", true),
    c(102, "YUNDA", "韵达快递", r"^\d{13,15}$", true),
    c(502, "HTKY", "百世快递", r"^\d{12,14}$", false),
    c(5000000110730, "JD", "京东快递", r"^JD[0-9A-Z]{13}$", false),
    c(103, "ZJS", "宅急送", r"^[0-9A-Z]{10,20}$", false),
    c(1207, "UC", "优速快递", r"^[0-9A-Z]{10,20}$", false),
    c(504, "TTKDEX", "天天快递", r"^[0-9A-Z]{10,20}$", false),
    c(1216, "QFKD", "全峰快递", r"^[0-9A-Z]{10,20}$", false),
    c(1204, "FAST", "快捷快递", r"^[0-9A-Z]{10,20}$", false),
    c(200143, "GTO", "国通快递", r"^[0-9A-Z]{10,20}$", false),
    c(7, "POST", "中国邮政", r"^[0-9A-Z]{10,20}$", false),
    c(200734, "POSTB", "邮政小包", r"^[0-9A-Z]{10,20}$", false),
    c(4, "DD", "当当宅配", r"^[0-9A-Z]{6,30}$", false),
    c(507, "AMAZON", "亚马逊物流", r"^[0-9A-Z]{6,30}$", false),
    c(-1, "OTHER", "其他", r"^[0-9A-Z]{6,30}$", false),
];

/// Looks a company up by code.
pub fn by_code(code: &str) -> Option<&'static Company> {
    COMPANIES.iter().find(|c| c.code == code)
}

fn compiled() -> &'static Vec<Option<Regex>> {
    static CACHE: OnceLock<Vec<Option<Regex>>> = OnceLock::new();
    CACHE.get_or_init(|| {
        COMPANIES
            .iter()
            .map(|c| Regex::new(c.reg_mail_no).ok())
            .collect()
    })
}

/// Whether `out_sid` matches the company's `reg_mail_no`. Unknown companies match nothing.
pub fn out_sid_valid(code: &str, out_sid: &str) -> bool {
    let Some(i) = COMPANIES.iter().position(|c| c.code == code) else {
        return false;
    };
    match compiled().get(i) {
        Some(Some(re)) => re.is_match(out_sid),
        _ => false,
    }
}

/// The `seq`-th waybill number for a carrier, shaped to match its `reg_mail_no`.
pub fn waybill_number(code: &str, seq: u64) -> String {
    // 11 digits of sequence give room for 10^11 numbers per carrier.
    let n = seq % 100_000_000_000;
    match code {
        "SF" => format!("SF99{n:011}"),
        "EMS" | "EYB" | "STO" => format!("99{n:011}"),
        "YTO" => format!("YT99{n:011}"),
        "ZTO" | "HTKY" => format!("799{n:011}"),
        "YUNDA" => format!("4399{n:011}"),
        "JD" => format!("JDVA{n:011}"),
        _ => format!("SBX{n:011}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reg_mail_no_compiles() {
        assert!(compiled().iter().all(Option::is_some));
    }

    #[test]
    fn issued_waybill_numbers_match_their_carriers_rule() {
        for c in COMPANIES {
            for seq in [0, 1, 42, 99_999_999_999] {
                let n = waybill_number(c.code, seq);
                assert!(out_sid_valid(c.code, &n), "{} {}", c.code, n);
            }
        }
    }

    #[test]
    fn vector_b_out_sid_is_a_valid_yto_number_and_not_an_sf_one() {
        assert!(out_sid_valid("YTO", "YT1234567890123"));
        assert!(!out_sid_valid("SF", "YT1234567890123"));
        assert!(!out_sid_valid("YTO", "YT123"));
        assert!(!out_sid_valid("NOPE", "YT1234567890123"));
    }
}
