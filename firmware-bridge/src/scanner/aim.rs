//! AIM symbology identifiers (ISO/IEC 15424): the `]Xm` prefix a scanner puts before the data
//! when "transmit AIM ID" is enabled, and the fallback guess when it is not.
//!
//! | prefix | symbology | GS1 data |
//! |---|---|---|
//! | `]A` | Code 39 | |
//! | `]C0` `]C2` `]C4` | Code 128 | |
//! | `]C1` | GS1-128 (FNC1 first) | yes |
//! | `]E0` | EAN-13 / UPC-A (13 digits; 12 digits → UPC-A) | |
//! | `]E3` | EAN-13/UPC with add-on | |
//! | `]E4` | EAN-8 | |
//! | `]F` | Codabar | |
//! | `]G` | Code 93 | |
//! | `]I` | Interleaved 2 of 5 | |
//! | `]L` | PDF417 | |
//! | `]Q1`…`]Q6` | QR Code (`]Q3`, `]Q4` FNC1 first = GS1 QR) | Q3, Q4 |
//! | `]d1`…`]d6` | Data Matrix (`]d2`, `]d5` = GS1 DataMatrix) | d2, d5 |
//! | `]e0` | GS1 DataBar | yes |
//! | `]z` | Aztec | |
//! | anything else | unknown | |

use crate::proto::Symbology;

/// An AIM identifier: `]` + code character + modifier character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AimId {
    /// The symbology code character, e.g. `b'E'`.
    pub code: u8,
    /// The modifier character, e.g. `b'0'`.
    pub modifier: u8,
}

impl AimId {
    /// The symbology this identifier names; `digits` is the data length, which tells UPC-A
    /// (12) from EAN-13 (13) under `]E0`.
    pub fn symbology(self, data: &[u8]) -> Symbology {
        match (self.code, self.modifier) {
            (b'A', _) => Symbology::Code39,
            (b'C', b'1') => Symbology::Gs1_128,
            (b'C', _) => Symbology::Code128,
            (b'E', b'4') => Symbology::Ean8,
            (b'E', b'0') if data.len() == 12 => Symbology::UpcA,
            (b'E', b'0' | b'3') => Symbology::Ean13,
            (b'E', _) => Symbology::Ean13,
            (b'F', _) => Symbology::Codabar,
            (b'G', _) => Symbology::Code93,
            (b'I', _) => Symbology::Itf,
            (b'L', _) => Symbology::Pdf417,
            (b'Q', _) => Symbology::Qr,
            (b'd', _) => Symbology::DataMatrix,
            (b'e', _) => Symbology::Gs1DataBar,
            (b'z', _) => Symbology::Aztec,
            _ => Symbology::Unknown,
        }
    }

    /// Whether the data is GS1 element strings (application identifiers).
    pub fn is_gs1(self) -> bool {
        matches!(
            (self.code, self.modifier),
            (b'C', b'1') | (b'e', b'0') | (b'd', b'2') | (b'd', b'5') | (b'Q', b'3') | (b'Q', b'4')
        )
    }
}

/// Splits a leading AIM identifier off a line. A line that does not start with `]` followed by
/// two printable characters has none.
pub fn split(line: &[u8]) -> (Option<AimId>, &[u8]) {
    match line {
        [b']', code, modifier, rest @ ..]
            if code.is_ascii_alphabetic() && modifier.is_ascii_graphic() =>
        {
            (
                Some(AimId {
                    code: *code,
                    modifier: *modifier,
                }),
                rest,
            )
        }
        _ => (None, line),
    }
}

/// Guesses the symbology of data sent without an AIM identifier: digit strings of EAN/UPC
/// length with a valid GS1 check digit are taken as EAN-13, EAN-8 or UPC-A; anything else is
/// [`Symbology::Unknown`] (Code 128 and QR data cannot be told apart by content).
pub fn infer(data: &[u8]) -> Symbology {
    if !data.iter().all(u8::is_ascii_digit) || !check_digit_ok(data) {
        return Symbology::Unknown;
    }
    match data.len() {
        13 => Symbology::Ean13,
        12 => Symbology::UpcA,
        8 => Symbology::Ean8,
        _ => Symbology::Unknown,
    }
}

/// The GS1 mod-10 check: weights 3 and 1 alternating from the right, last digit is the check
/// digit. `false` for anything that is not at least two ASCII digits.
pub fn check_digit_ok(digits: &[u8]) -> bool {
    let Some((&check, body)) = digits.split_last() else {
        return false;
    };
    if body.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    (10 - sum % 10) % 10 == u32::from(check - b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aim_prefixes_map_to_symbologies() {
        let cases: &[(&[u8], Symbology, bool)] = &[
            (b"]E06901234567892", Symbology::Ean13, false),
            (b"]E00012345678905", Symbology::Ean13, false),
            (b"]E00036000291452", Symbology::Ean13, false),
            (b"]E4" as &[u8], Symbology::Ean8, false),
            (b"]C1010690123456789210L42", Symbology::Gs1_128, true),
            (b"]C0SF1234567890", Symbology::Code128, false),
            (b"]Q1https://x", Symbology::Qr, false),
            (b"]Q3010690123456789217270531", Symbology::Qr, true),
            (b"]d2010690123456789221SER", Symbology::DataMatrix, true),
            (b"]e0010690123456789217270531", Symbology::Gs1DataBar, true),
            (b"]A0ABC-123", Symbology::Code39, false),
            (b"]I1123456", Symbology::Itf, false),
            (b"]X0what", Symbology::Unknown, false),
        ];
        for (line, sym, gs1) in cases {
            let (id, data) = split(line);
            let id = id.unwrap();
            assert_eq!(id.symbology(data), *sym, "{:?}", core::str::from_utf8(line));
            assert_eq!(id.is_gs1(), *gs1);
        }
    }

    #[test]
    fn twelve_digits_under_e0_are_upc_a() {
        let (id, data) = split(b"]E0036000291452");
        assert_eq!(data.len(), 12);
        assert_eq!(id.unwrap().symbology(data), Symbology::UpcA);
    }

    #[test]
    fn lines_without_a_prefix_keep_all_their_data() {
        assert_eq!(split(b"6901234567892"), (None, &b"6901234567892"[..]));
        assert_eq!(split(b"]"), (None, &b"]"[..]));
        assert_eq!(split(b"]1x"), (None, &b"]1x"[..]));
    }

    #[test]
    fn inference_needs_a_valid_check_digit() {
        assert_eq!(infer(b"6901234567892"), Symbology::Ean13);
        assert_eq!(infer(b"6901234567893"), Symbology::Unknown);
        assert_eq!(infer(b"96385074"), Symbology::Ean8);
        assert_eq!(infer(b"036000291452"), Symbology::UpcA);
        assert_eq!(infer(b"SF1234567890"), Symbology::Unknown);
        assert_eq!(infer(b""), Symbology::Unknown);
    }

    #[test]
    fn check_digits_follow_the_gs1_rule() {
        assert!(check_digit_ok(b"06901234567892"));
        assert!(check_digit_ok(b"4006381333931"));
        assert!(check_digit_ok(b"106141411234567897"));
        assert!(!check_digit_ok(b"4006381333932"));
        assert!(!check_digit_ok(b"7"));
        assert!(!check_digit_ok(b"4x"));
    }
}
