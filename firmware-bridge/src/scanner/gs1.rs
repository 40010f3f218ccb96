//! GS1 element strings: application identifiers (AIs) and their values, as carried by GS1-128,
//! GS1 DataMatrix, GS1 QR and GS1 DataBar.
//!
//! The data is a run of `AI value` pairs. AIs whose first two digits are in the GS1
//! "predefined length" table (00–04, 11–20, 31–36, 41) have a fixed length and need no
//! separator; every other value runs to the next FNC1, which scanners transmit as ASCII GS
//! (`0x1D`), or to the end of the data. The number of digits of the AI itself is also fixed by
//! its first two digits (2, 3 or 4). Prefixes outside the GS1 table are refused: without
//! knowing an AI's length nothing after it can be trusted.
//!
//! The floor uses 00 (SSCC), 01 (GTIN), 10 (batch), 17 (expiry) and 21 (serial); [`parse`]
//! lifts those out and checks them (check digits, real dates); [`Elements`] walks all of them.
//!
//! Dates: `YYMMDD` is read as 20YY (valid until 2099; GS1's sliding 50-year window only
//! differs for years before 2000), and a day of `00` means the last day of the month.

use core::fmt;

use crate::proto::{Gs1Date, Gs1Fields, days_in_month, digits};

use super::aim::check_digit_ok;

/// ASCII GS: how scanners transmit FNC1 inside GS1 data.
pub const GS: u8 = 0x1D;

/// An application identifier, 2–4 digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ai {
    digits: [u8; 4],
    len: u8,
}

impl Ai {
    /// The AI as a string, e.g. `"01"` or `"3103"`.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        core::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or("??")
    }

    fn from(bytes: &[u8]) -> Ai {
        let mut digits = [b'?'; 4];
        let len = bytes.len().min(4);
        digits[..len].copy_from_slice(&bytes[..len]);
        Ai {
            digits,
            len: len as u8,
        }
    }
}

impl fmt::Debug for Ai {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AI({})", self.as_str())
    }
}

impl fmt::Display for Ai {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({})", self.as_str())
    }
}

/// Why GS1 data does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Gs1Error {
    /// There is no data (after the leading FNC1).
    #[error("GS1 data is empty")]
    Empty,
    /// The data at this point does not start with an AI of the GS1 table.
    #[error("unknown GS1 application identifier {0}")]
    UnknownAi(Ai),
    /// A fixed-length value is cut short.
    #[error("GS1 value of {0} is shorter than its fixed length")]
    Truncated(Ai),
    /// An AI has no value.
    #[error("GS1 value of {0} is empty")]
    EmptyValue(Ai),
    /// A value that must be digits is not.
    #[error("GS1 value of {0} is not numeric")]
    NotNumeric(Ai),
    /// A GTIN or SSCC has a wrong check digit.
    #[error("GS1 value of {0} has a wrong check digit")]
    CheckDigit(Ai),
    /// A date is not a real date.
    #[error("GS1 value of {0} is not a valid YYMMDD date")]
    BadDate(Ai),
    /// A value is longer than GS1 allows for its AI.
    #[error("GS1 value of {0} is too long")]
    TooLong(Ai),
    /// A value holds bytes outside printable ASCII.
    #[error("GS1 value of {0} holds non-printable bytes")]
    NotText(Ai),
    /// The same AI appears twice with different values.
    #[error("GS1 application identifier {0} appears twice")]
    Duplicate(Ai),
}

/// One `AI value` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    /// The application identifier.
    pub ai: Ai,
    /// Its value (printable ASCII).
    pub value: &'a str,
}

/// How many digits the AI has, and the fixed total length (AI + value) if it has one, from
/// the AI's first two digits.
fn shape(prefix: [u8; 2]) -> Option<(usize, Option<usize>)> {
    let p = (prefix[0] - b'0') * 10 + (prefix[1] - b'0');
    let ai_len = match p {
        0..=22 | 30 | 37 | 90..=99 => 2,
        23..=25 | 40..=42 | 71 => 3,
        31..=36 | 39 | 43 | 70 | 72 | 80..=82 => 4,
        _ => return None,
    };
    // GS1 General Specifications, "predefined length" table (element strings that need no
    // FNC1 separator), as total characters including the AI.
    let fixed = match p {
        0 => Some(20),
        1..=3 => Some(16),
        4 => Some(18),
        11..=19 => Some(8),
        20 => Some(4),
        31..=36 => Some(10),
        41 => Some(16),
        _ => None,
    };
    // 05–09 and 21/22 fall into the 2-digit range above but only some of them exist.
    if matches!(p, 5..=9) {
        return None;
    }
    Some((ai_len, fixed))
}

/// Iterator over the elements of GS1 data (a leading FNC1/GS is skipped). Stops after the
/// first error.
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

/// Walks the elements of GS1 data.
pub fn elements(data: &[u8]) -> Elements<'_> {
    Elements {
        data,
        pos: 0,
        failed: false,
    }
}

impl<'a> Elements<'a> {
    fn next_element(&mut self) -> Result<Option<Element<'a>>, Gs1Error> {
        let data = self.data;
        while data.get(self.pos) == Some(&GS) {
            self.pos += 1;
        }
        let rest = &data[self.pos.min(data.len())..];
        if rest.is_empty() {
            return Ok(None);
        }
        let prefix = match rest {
            [a, b, ..] if a.is_ascii_digit() && b.is_ascii_digit() => [*a, *b],
            _ => return Err(Gs1Error::UnknownAi(Ai::from(&rest[..rest.len().min(2)]))),
        };
        let (ai_len, fixed) = shape(prefix).ok_or(Gs1Error::UnknownAi(Ai::from(&prefix)))?;
        let ai_bytes = rest
            .get(..ai_len)
            .ok_or(Gs1Error::UnknownAi(Ai::from(rest)))?;
        let ai = Ai::from(ai_bytes);
        if !ai_bytes.iter().all(u8::is_ascii_digit) {
            return Err(Gs1Error::UnknownAi(ai));
        }
        let (value, used) = match fixed {
            Some(total) => {
                let value = rest.get(ai_len..total).ok_or(Gs1Error::Truncated(ai))?;
                // A FNC1 inside a fixed-length value means the value is short.
                if value.contains(&GS) {
                    return Err(Gs1Error::Truncated(ai));
                }
                (value, total)
            }
            None => {
                let body = &rest[ai_len..];
                let end = body.iter().position(|&b| b == GS).unwrap_or(body.len());
                (&body[..end], ai_len + end)
            }
        };
        if value.is_empty() {
            return Err(Gs1Error::EmptyValue(ai));
        }
        if !value.iter().all(|b| b.is_ascii_graphic()) {
            return Err(Gs1Error::NotText(ai));
        }
        let value = core::str::from_utf8(value).map_err(|_| Gs1Error::NotText(ai))?;
        self.pos += used;
        Ok(Some(Element { ai, value }))
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<Element<'a>, Gs1Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_element() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Parses GS1 data and lifts out the identifiers the floor uses, checking each: SSCC and GTIN
/// digits and check digit, expiry a real date, batch and serial at most 20 characters.
pub fn parse(data: &[u8]) -> Result<Gs1Fields<&str>, Gs1Error> {
    let mut out = Gs1Fields {
        sscc: None,
        gtin: None,
        batch: None,
        expiry: None,
        serial: None,
    };
    let mut any = false;
    for el in elements(data) {
        let el = el?;
        any = true;
        let ai = el.ai;
        match ai.as_str() {
            "00" | "01" => {
                if !el.value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Gs1Error::NotNumeric(ai));
                }
                if !check_digit_ok(el.value.as_bytes()) {
                    return Err(Gs1Error::CheckDigit(ai));
                }
                let slot = if ai.as_str() == "00" {
                    &mut out.sscc
                } else {
                    &mut out.gtin
                };
                set_once(slot, el.value, ai)?;
            }
            "10" | "21" => {
                if el.value.len() > 20 {
                    return Err(Gs1Error::TooLong(ai));
                }
                let slot = if ai.as_str() == "10" {
                    &mut out.batch
                } else {
                    &mut out.serial
                };
                set_once(slot, el.value, ai)?;
            }
            "17" => {
                let date = yymmdd(el.value.as_bytes()).ok_or(Gs1Error::BadDate(ai))?;
                match out.expiry {
                    Some(d) if d != date => return Err(Gs1Error::Duplicate(ai)),
                    _ => out.expiry = Some(date),
                }
            }
            _ => {}
        }
    }
    if !any {
        return Err(Gs1Error::Empty);
    }
    Ok(out)
}

fn set_once<'a>(slot: &mut Option<&'a str>, value: &'a str, ai: Ai) -> Result<(), Gs1Error> {
    match slot {
        Some(old) if *old != value => Err(Gs1Error::Duplicate(ai)),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// `YYMMDD` → date; day `00` is the last day of the month.
fn yymmdd(b: &[u8]) -> Option<Gs1Date> {
    if b.len() != 6 {
        return None;
    }
    let year = 2000 + digits(&b[0..2])? as u16;
    let month = digits(&b[2..4])? as u8;
    let day = digits(&b[4..6])? as u8;
    let day = if day == 0 {
        days_in_month(year, month)
    } else {
        day
    };
    Gs1Date::new(year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn gtin_expiry_batch_and_serial_are_lifted_out() {
        // (01)09501101530003 (17)270531 (10)AB-12 <GS> (21)S/N7
        let data = b"010950110153000317270531" as &[u8];
        let mut d = data.to_vec();
        d.extend_from_slice(b"10AB-12\x1d21S/N7");
        let f = parse(&d).unwrap();
        assert_eq!(f.gtin, Some("09501101530003"));
        assert_eq!(f.expiry, Gs1Date::new(2027, 5, 31));
        assert_eq!(f.batch, Some("AB-12"));
        assert_eq!(f.serial, Some("S/N7"));
        assert_eq!(f.sscc, None);
    }

    #[test]
    fn a_leading_fnc1_and_an_sscc_parse() {
        let f = parse(b"\x1d00106141411234567897").unwrap();
        assert_eq!(f.sscc, Some("106141411234567897"));
    }

    #[test]
    fn day_zero_means_the_end_of_the_month() {
        let f = parse(b"0109501101530003172402000").unwrap_err();
        // The trailing '0' after (17)240200 is not an AI of the table.
        assert!(matches!(f, Gs1Error::UnknownAi(_)));
        let f = parse(b"010950110153000317240200").unwrap();
        assert_eq!(f.expiry, Gs1Date::new(2024, 2, 29));
    }

    #[test]
    fn errors_name_the_application_identifier() {
        let cases: &[(&[u8], &str)] = &[
            (b"0109501101530004", "(01) has a wrong check digit"),
            (b"01095011015300", "(01) is shorter"),
            (b"17271332", "(17) is not a valid YYMMDD"),
            (b"10\x1d21X", "(10) is empty"),
            (b"10ABCDEFGHIJKLMNOPQRSTU", "(10) is too long"),
            (b"0500", "unknown GS1 application identifier (05)"),
            (b"X1", "unknown GS1 application identifier"),
            (b"", "empty"),
            (b"0109501101530003\x1d0109501101530010", "appears twice"),
            (b"10A\x01B", "non-printable"),
        ];
        for (data, needle) in cases {
            let text = std::format!("{}", parse(data).unwrap_err());
            assert!(text.contains(needle), "{text:?} lacks {needle:?}");
        }
    }

    #[test]
    fn every_element_is_walked_including_ones_the_floor_ignores() {
        let els: Vec<_> = elements(b"0109501101530003310300150040012345\x1d")
            .collect::<Result<_, _>>()
            .unwrap();
        let ais: Vec<_> = els.iter().map(|e| e.ai.as_str()).collect();
        assert_eq!(ais, ["01", "3103", "400"]);
        assert_eq!(els[1].value, "001500");
        assert_eq!(els[2].value, "12345");
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse(&data);
            let _ = elements(&data).count();
        }
    }
}
