//! The carrier list as the warehouse uses it: which `company_code`s exist and which waybill
//! numbers each accepts (`reg_mail_no`, DOMAIN.md §8), read inside the transaction that
//! creates a `Ship` op, so a shipment with a wrong number is refused at the ship scan instead
//! of coming back from Taobao as B60 hours later.
//!
//! The list itself is fetched by `sync/carriers.rs` (`taobao.logistics.companies.get`, at
//! start-up and daily) and kept in the `carriers` table, so a box that restarts offline still
//! validates.

use crate::store::{self, Bytes, StoreError};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// `code` → [`Carrier`].
pub const CARRIERS: TableDefinition<'static, &'static str, Bytes> =
    TableDefinition::new("carriers");

/// One carrier as Taobao lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carrier {
    /// `company_code` of a shipment (`YTO`, `SF`, …).
    pub code: String,
    /// Display name.
    pub name: String,
    /// The regex a valid waybill number must match, when Taobao gives one.
    pub reg_mail_no: Option<String>,
}

/// Why an `out_sid` is refused before it becomes a `Ship` op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaybillError {
    /// The carrier code is not in Taobao's list; `nearest` are the closest valid codes.
    #[error("unknown carrier code `{code}`{}", suggest(.nearest))]
    UnknownCarrier {
        /// The code given.
        code: String,
        /// The closest known codes (by spelling or by name), best first.
        nearest: Vec<String>,
    },
    /// The number does not match the carrier's `reg_mail_no`.
    #[error("waybill number `{out_sid}` does not match the rule of carrier `{code}` ({rule})")]
    Mismatch {
        /// The carrier.
        code: String,
        /// The number given.
        out_sid: String,
        /// The carrier's rule.
        rule: String,
    },
    /// The carrier list was never fetched: nothing to validate against.
    #[error(
        "the carrier list has never been fetched from Taobao (taobao.logistics.companies.get), \
         so carrier `{0}` cannot be checked; start the node with the link up once"
    )]
    NoList(String),
}

fn suggest(nearest: &[String]) -> String {
    if nearest.is_empty() {
        " (not in taobao.logistics.companies.get)".to_owned()
    } else {
        format!("; did you mean {}?", nearest.join(", "))
    }
}

impl Carrier {
    /// Whether `out_sid` matches this carrier's rule. A missing or unparsable rule accepts
    /// any non-empty number: Taobao still checks, and refusing a real parcel would be worse.
    pub fn accepts(&self, out_sid: &str) -> bool {
        if out_sid.is_empty() {
            return false;
        }
        match self.reg_mail_no.as_deref().map(full_match) {
            Some(Some(ok)) => ok(out_sid),
            _ => true,
        }
    }
}

/// Compiles `pattern` anchored at both ends; `None` when it does not compile.
///
/// The rule is a `regex` pattern (the same syntax, Unicode classes included) run as a DFA of
/// `regex-automata`: the node links that engine already (the log filter's), while the `regex`
/// crate's own engines added about 0.5 MB to the binary for this one check
/// (docs/BENCHMARKS.md, "Binary size"). A whole-string match needs nothing more. A rule whose
/// NFA or DFA would outgrow [`RULE_DFA_LIMIT`] counts as one that does not compile; a rule with
/// a Unicode `\b` accepts a number that is not ASCII (the DFA cannot judge it there).
fn full_match(pattern: &str) -> Option<impl Fn(&str) -> bool> {
    use regex_automata::dfa::{Automaton, StartKind, dense};
    use regex_automata::nfa::thompson;
    use regex_automata::{Anchored, Input};
    let anchored = format!(
        "^(?:{})$",
        pattern.trim_start_matches('^').trim_end_matches('$')
    );
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .unicode_word_boundary(true)
                .dfa_size_limit(Some(RULE_DFA_LIMIT))
                .determinize_size_limit(Some(RULE_DFA_LIMIT)),
        )
        .thompson(thompson::Config::new().nfa_size_limit(Some(RULE_DFA_LIMIT)))
        .build(&anchored)
        .ok()?;
    // An error is a search the DFA gave up on (see above): not a refusal.
    Some(move |s: &str| {
        !matches!(
            dfa.try_search_fwd(&Input::new(s).anchored(Anchored::Yes)),
            Ok(None)
        )
    })
}

/// The most memory one carrier's rule may take as an NFA or a DFA (Taobao's rules are a few
/// character classes and counts: a few KB).
const RULE_DFA_LIMIT: usize = 1 << 20;

/// One carrier by code.
pub fn get(txn: &impl store::ReadTxn, code: &str) -> Result<Option<Carrier>, StoreError> {
    store::get(txn, CARRIERS, code)
}

/// Every stored carrier, by code (a damaged row is quarantined and skipped).
pub fn all(txn: &redb::ReadTransaction) -> Result<Vec<Carrier>, StoreError> {
    let Some(table) = super::tables::read_table(txn, CARRIERS)? else {
        return Ok(Vec::new());
    };
    collect(&table)
}

fn collect(table: &impl ReadableTable<&'static str, Bytes>) -> Result<Vec<Carrier>, StoreError> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        if let Ok(c) = store::decode::<&str, Carrier>(CARRIERS, &k.value(), v.value()) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The known codes closest to `code`: same letters in another case first, then by spelling
/// (Jaro-Winkler ≥ 0.7) or a name containing it (`圆通` → `YTO`); at most three.
pub fn nearest(code: &str, known: &[Carrier]) -> Vec<String> {
    let want = code.trim().to_uppercase();
    let mut scored: Vec<(f64, &str)> = known
        .iter()
        .filter_map(|c| {
            let by_spelling = strsim::jaro_winkler(&want, &c.code.to_uppercase());
            let by_name = if !code.trim().is_empty() && c.name.contains(code.trim()) {
                0.95
            } else {
                0.0
            };
            let score = by_spelling.max(by_name);
            (score >= 0.7).then_some((score, c.code.as_str()))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_owned())
        .collect()
}

/// Checks a carrier code and a waybill number against the stored list, in the caller's
/// transaction. Returns the carrier.
pub fn validate(
    txn: &redb::WriteTransaction,
    code: &str,
    out_sid: &str,
) -> Result<Result<Carrier, WaybillError>, StoreError> {
    if let Some(c) = get(txn, code)? {
        if c.accepts(out_sid) {
            return Ok(Ok(c));
        }
        return Ok(Err(WaybillError::Mismatch {
            code: c.code,
            out_sid: out_sid.to_owned(),
            rule: c.reg_mail_no.unwrap_or_default(),
        }));
    }
    let known = collect(&txn.open_table(CARRIERS)?)?;
    if known.is_empty() {
        return Ok(Err(WaybillError::NoList(code.to_owned())));
    }
    Ok(Err(WaybillError::UnknownCarrier {
        code: code.to_owned(),
        nearest: nearest(code, &known),
    }))
}

/// Replaces the stored list in the caller's transaction.
pub fn replace(txn: &redb::WriteTransaction, carriers: &[Carrier]) -> Result<(), StoreError> {
    let mut table = txn.open_table(CARRIERS)?;
    table.retain(|_, _| false)?;
    drop(table);
    for c in carriers {
        store::put(txn, CARRIERS, c.code.as_str(), c)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str, name: &str, rule: Option<&str>) -> Carrier {
        Carrier {
            code: code.into(),
            name: name.into(),
            reg_mail_no: rule.map(str::to_owned),
        }
    }

    #[test]
    fn a_waybill_number_must_match_the_whole_rule() {
        let yto = c("YTO", "圆通", Some("^YT\\d{13}$"));
        assert!(yto.accepts("YT1234567890123"));
        assert!(!yto.accepts("YT123"));
        assert!(!yto.accepts("XYT1234567890123"));
        assert!(!yto.accepts(""));
    }

    #[test]
    fn an_unanchored_or_broken_rule_still_judges_sensibly() {
        let mut yto = c("YTO", "圆通", Some("YT\\d{13}"));
        assert!(!yto.accepts("YT1234567890123-extra"));
        yto.reg_mail_no = Some("([".into());
        assert!(
            yto.accepts("anything"),
            "an unparsable rule must not block shipping"
        );
        yto.reg_mail_no = None;
        assert!(yto.accepts("X1"));
    }

    /// The rule syntax is `regex`'s: alternations, classes, counts, case-insensitive groups,
    /// Unicode classes and word boundaries.
    #[test]
    fn rules_in_the_full_regex_syntax_are_judged() {
        let sf = c("SF", "顺丰", Some("^[0-9]{12}$|^SF[0-9]{13}$"));
        assert!(sf.accepts("123456789012") && sf.accepts("SF1234567890123"));
        assert!(!sf.accepts("12345678901") && !sf.accepts("SF123456789012"));
        let ems = c("EMS", "EMS", Some("(?i)e[a-z]\\d{9}cn"));
        assert!(ems.accepts("EA123456789CN") && ems.accepts("ea123456789cn"));
        assert!(!ems.accepts("EA12345678CN"));
        let han = c("X", "x", Some("\\p{Han}{2}\\d+"));
        assert!(han.accepts("圆通42") && !han.accepts("YT42"));
        let digits = c("D", "d", Some("\\d{3}"));
        assert!(digits.accepts("١٢٣"), "\\d is Unicode, as in regex");
        let word = c("W", "w", Some("\\bAB\\d+\\b"));
        assert!(word.accepts("AB12") && !word.accepts("AB"));
        // An unbounded blow-up is refused as a rule, which then does not block shipping.
        let huge = c("H", "h", Some("\\w{1000}"));
        assert!(huge.accepts("short"));
    }

    #[test]
    fn the_nearest_codes_are_named_by_spelling_case_or_name() {
        let known = [
            c("YTO", "圆通", None),
            c("YUNDA", "韵达", None),
            c("ZTO", "中通", None),
            c("SF", "顺丰", None),
            c("STO", "申通", None),
        ];
        assert_eq!(nearest("yto", &known)[0], "YTO");
        assert!(nearest("YT0", &known).contains(&"YTO".to_owned()));
        assert_eq!(nearest("顺丰", &known), ["SF"]);
        assert!(nearest("QWERTYUIOP", &known).is_empty());
        let e = WaybillError::UnknownCarrier {
            code: "YT0".into(),
            nearest: nearest("YT0", &known),
        };
        assert!(e.to_string().contains("did you mean YTO"), "{e}");
    }
}
