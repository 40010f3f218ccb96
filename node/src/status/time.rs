//! The warehouse's local time, for people: the status page and the robots' texts show times
//! in it (JSON and logs stay in UTC).
//!
//! `[node] timezone` takes the IANA names of the zones a warehouse of this product is in that
//! keep one offset all year (China, Hong Kong, Macau, Taiwan, Singapore, …; no tz database is
//! needed on the box), `UTC`, or an offset such as `+08:00`. Zones with daylight saving time
//! are given as their offset, with the caveat that it does not follow the clock change.

use chrono::FixedOffset;

/// Named zones without daylight saving time, and their offset from UTC in minutes.
const ZONES: &[(&str, i32)] = &[
    ("Asia/Shanghai", 480),
    ("Asia/Chongqing", 480),
    ("Asia/Harbin", 480),
    ("Asia/Urumqi", 360),
    ("Asia/Hong_Kong", 480),
    ("Asia/Macau", 480),
    ("Asia/Taipei", 480),
    ("Asia/Singapore", 480),
    ("Asia/Kuala_Lumpur", 480),
    ("Asia/Manila", 480),
    ("Asia/Tokyo", 540),
    ("Asia/Seoul", 540),
    ("Asia/Bangkok", 420),
    ("Asia/Ho_Chi_Minh", 420),
    ("Asia/Jakarta", 420),
    ("Asia/Kolkata", 330),
    ("Asia/Dubai", 240),
    ("UTC", 0),
    ("Etc/UTC", 0),
];

/// A time zone people read times in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTime {
    /// As configured (`Asia/Shanghai`, `+08:00`).
    pub name: String,
    /// Its offset from UTC.
    pub offset: FixedOffset,
}

impl Default for LocalTime {
    /// China Standard Time (`Asia/Shanghai`, UTC+8).
    fn default() -> Self {
        LocalTime {
            name: "Asia/Shanghai".into(),
            offset: offset_minutes(480),
        }
    }
}

fn offset_minutes(m: i32) -> FixedOffset {
    FixedOffset::east_opt(m * 60).unwrap_or_else(|| chrono::Offset::fix(&chrono::Utc))
}

impl LocalTime {
    /// Parses a zone name or an offset (`+08:00`, `-0530`, `+8`); the error says what is
    /// accepted.
    pub fn parse(s: &str) -> Result<LocalTime, String> {
        let t = s.trim();
        if let Some(&(name, m)) = ZONES.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)) {
            return Ok(LocalTime {
                name: name.to_owned(),
                offset: offset_minutes(m),
            });
        }
        let bad = || {
            format!(
                "`{t}` is not a zone this build knows without a tz database (e.g. \
                 \"Asia/Shanghai\", \"UTC\") nor an offset such as \"+08:00\""
            )
        };
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1, &t[1..]),
            Some(b'-') => (-1, &t[1..]),
            _ => return Err(bad()),
        };
        let digits: String = rest.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let (h, m) = if digits.len() <= 2 {
            (digits.parse::<i32>().map_err(|_| bad())?, 0)
        } else {
            let (h, m) = digits.split_at(digits.len() - 2);
            (
                h.parse::<i32>().map_err(|_| bad())?,
                m.parse::<i32>().map_err(|_| bad())?,
            )
        };
        if h > 14 || m > 59 {
            return Err(bad());
        }
        Ok(LocalTime {
            name: t.to_owned(),
            offset: offset_minutes(sign * (h * 60 + m)),
        })
    }

    /// `2026-12-07 14:43:10` in this zone.
    pub fn format(&self, ms: u64) -> String {
        let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap_or_default()
            .with_timezone(&self.offset)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// `+08:00`.
    pub fn offset_str(&self) -> String {
        self.offset.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_offsets_parse_and_nonsense_is_refused() {
        assert_eq!(
            LocalTime::default(),
            LocalTime::parse("Asia/Shanghai").unwrap()
        );
        assert_eq!(
            LocalTime::parse("asia/shanghai").unwrap().name,
            "Asia/Shanghai"
        );
        let off = |s| LocalTime::parse(s).unwrap().offset.local_minus_utc() / 60;
        assert_eq!(
            [
                off("UTC"),
                off("+08:00"),
                off("-0530"),
                off("+8"),
                off("Asia/Kolkata")
            ],
            [0, 480, -330, 480, 330]
        );
        for bad in ["Europe/Berlin", "8", "+25:00", "+08:99", "", "+"] {
            assert!(LocalTime::parse(bad).is_err(), "{bad}");
        }
        // 2024-12-07 08:43:10 UTC is 16:43:10 in Shanghai.
        assert_eq!(
            LocalTime::default().format(1_733_560_990_000),
            "2024-12-07 16:43:10"
        );
        assert_eq!(LocalTime::default().offset_str(), "+08:00");
    }
}
