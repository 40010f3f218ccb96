//! Byte sizes in config files: `"64MiB"`, `"1.5 GiB"`, `"500MB"` or a plain integer of bytes.
//!
//! Binary units (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024; SI units (`KB`, `MB`, `GB`,
//! `TB`) are powers of 1000, as their names say. Units are case-insensitive and may be
//! separated from the number by spaces. A size prints in the largest binary unit that
//! divides it exactly (`"64MiB"`), so `check-config` output reads back to the same value.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A number of bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1024;
const MIB: u64 = KIB * 1024;
const GIB: u64 = MIB * 1024;
const TIB: u64 = GIB * 1024;

/// Units a size may be written in, with their multipliers. Longest names first so that
/// `"kib"` is not read as `"k"` + `"ib"`.
const UNITS: &[(&str, u64)] = &[
    ("kib", KIB),
    ("mib", MIB),
    ("gib", GIB),
    ("tib", TIB),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("b", 1),
    ("", 1),
];

impl ByteSize {
    /// `n` KiB.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * KIB)
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * MIB)
    }

    /// `n` GiB.
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * GIB)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Why a string is not a byte size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a byte size ({why}); write e.g. \"64MiB\", \"1GiB\", \"500MB\" or a number of bytes"
)]
pub struct ParseByteSizeError {
    input: String,
    why: &'static str,
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why| ParseByteSizeError {
            input: s.to_owned(),
            why,
        };
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: String = number.chars().filter(|&c| c != '_').collect();
        if number.is_empty() {
            return Err(fail("no number"));
        }
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, m)| m)
            .ok_or_else(|| fail("unknown unit"))?;
        if let Ok(whole) = number.parse::<u64>() {
            return whole
                .checked_mul(multiplier)
                .map(ByteSize)
                .ok_or_else(|| fail("too large"));
        }
        let fractional: f64 = number.parse().map_err(|_| fail("bad number"))?;
        let bytes = (fractional * multiplier as f64).round();
        if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
            return Err(fail("too large"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (name, unit) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if n != 0 && n.is_multiple_of(unit) {
                return write!(f, "{}{name}", n / unit);
            }
        }
        write!(f, "{n}B")
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte size such as \"64MiB\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a byte size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_si_units_mean_what_their_names_say() {
        assert_eq!("64MiB".parse(), Ok(ByteSize(64 * 1024 * 1024)));
        assert_eq!("64 mib".parse(), Ok(ByteSize(64 * 1024 * 1024)));
        assert_eq!("500MB".parse(), Ok(ByteSize(500_000_000)));
        assert_eq!("1.5GiB".parse(), Ok(ByteSize(1536 * 1024 * 1024)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("1_000 B".parse(), Ok(ByteSize(1000)));
    }

    #[test]
    fn nonsense_is_rejected_with_the_input_named() {
        for bad in [
            "",
            "MiB",
            "12 parsecs",
            "1.2.3GiB",
            "99999999999TiB",
            "-1MiB",
        ] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn display_reads_back_to_the_same_value() {
        for n in [0, 1, 1000, 1024, 64 * MIB, 3 * GIB, GIB + 1, 2 * TIB] {
            let shown = ByteSize(n).to_string();
            assert_eq!(shown.parse(), Ok(ByteSize(n)), "{shown}");
        }
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
    }
}
