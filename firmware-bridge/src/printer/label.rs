//! Label layouts: positioned items that the ZPL and TSPL writers render, and the standard
//! shipping label built from them.
//!
//! Positions and sizes are in printer dots (8 dots/mm at 203 dpi, 12 at 300 dpi). Receiver
//! names and phone numbers are masked *here*, whatever the caller passes: `张三丰` prints as
//! `张**`, `13812345678` as `138****5678`. Masking an already masked value changes nothing, so
//! the platform's masked fields pass through unchanged.

use core::fmt;

/// Paper size and resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelSize {
    /// Label width, mm.
    pub width_mm: u16,
    /// Label height, mm.
    pub height_mm: u16,
    /// Printer resolution, dots per inch (203, 300, 600).
    pub dpi: u16,
}

impl LabelSize {
    /// The common 100 × 150 mm (4 × 6 in) e-waybill label at 203 dpi.
    pub const WAYBILL_100X150: LabelSize = LabelSize {
        width_mm: 100,
        height_mm: 150,
        dpi: 203,
    };

    /// Millimetres to dots at this resolution.
    pub fn dots(&self, mm: u16) -> u16 {
        let d = u32::from(mm) * u32::from(self.dpi) * 10 / 254;
        u16::try_from(d).unwrap_or(u16::MAX)
    }
}

/// Which font the writers select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Font<'a> {
    /// ZPL: a one-character resident font (`"0"`) or a font file for `^A@`, e.g.
    /// `"E:SIMSUN.FNT"` for Chinese text.
    pub zpl: &'a str,
    /// TSPL: a resident bitmap font `"1"`–`"8"` or a downloaded one, e.g. `"TSS24.BF2"`
    /// (24-dot simplified Chinese).
    pub tspl: &'a str,
}

impl Default for Font<'_> {
    fn default() -> Self {
        Font {
            zpl: "0",
            tspl: "3",
        }
    }
}

/// Text to print, masked or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// As given.
    Plain(&'a str),
    /// A person's name: first character kept, the rest `*`.
    Name(&'a str),
    /// A phone number: first 3 and last 4 characters kept, the rest `*`.
    Phone(&'a str),
}

impl fmt::Display for Content<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Content::Plain(s) => f.write_str(s),
            Content::Name(s) => {
                for (i, c) in s.chars().enumerate() {
                    if i == 0 {
                        fmt::Write::write_char(f, c)?;
                    } else {
                        f.write_str("*")?;
                    }
                }
                Ok(())
            }
            Content::Phone(s) => {
                let n = s.chars().count();
                for (i, c) in s.chars().enumerate() {
                    if n <= 7 {
                        // Too short to keep 3 + 4 and still hide something: keep the last 2.
                        if i + 2 >= n {
                            fmt::Write::write_char(f, c)?;
                        } else {
                            f.write_str("*")?;
                        }
                    } else if i < 3 || i + 4 >= n {
                        fmt::Write::write_char(f, c)?;
                    } else {
                        f.write_str("*")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// One positioned element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A line of text.
    Text {
        /// Left, dots.
        x: u16,
        /// Top, dots.
        y: u16,
        /// Character height, dots.
        height: u16,
        /// What to print.
        content: Content<'a>,
    },
    /// A Code 128 barcode (the waybill number).
    Code128 {
        /// Left, dots.
        x: u16,
        /// Top, dots.
        y: u16,
        /// Bar height, dots.
        height: u16,
        /// Narrow bar width, dots.
        module: u8,
        /// Print the human-readable line under the bars.
        readable: bool,
        /// The data: printable ASCII.
        data: &'a str,
    },
    /// A QR code.
    Qr {
        /// Left, dots.
        x: u16,
        /// Top, dots.
        y: u16,
        /// Module (cell) size, dots, 1–10.
        cell: u8,
        /// The data.
        data: &'a str,
    },
    /// A filled rectangle (a rule when thin).
    Bar {
        /// Left, dots.
        x: u16,
        /// Top, dots.
        y: u16,
        /// Width, dots.
        width: u16,
        /// Height, dots.
        height: u16,
    },
}

/// A label to render: size, font, items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout<'a> {
    /// Paper.
    pub size: LabelSize,
    /// Font for every text item.
    pub font: Font<'a>,
    /// Copies to print.
    pub copies: u16,
    /// What to draw.
    pub items: &'a [Item<'a>],
}

/// Why a layout cannot be rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The output refused the bytes (a full buffer, or a failing port).
    #[error("label output failed")]
    Output,
    /// A Code 128 barcode holds characters outside printable ASCII.
    #[error("Code 128 data must be printable ASCII")]
    Code128Data,
    /// A font name holds characters that would break the command syntax.
    #[error("font name holds characters outside A-Z, 0-9, ':', '.', '_' and '-'")]
    FontName,
    /// The layout has no size, no copies or an empty barcode.
    #[error("label layout is empty or has zero size")]
    Empty,
}

impl From<fmt::Error> for RenderError {
    fn from(_: fmt::Error) -> Self {
        RenderError::Output
    }
}

impl Layout<'_> {
    pub(crate) fn check(&self) -> Result<(), RenderError> {
        if self.size.width_mm == 0
            || self.size.height_mm == 0
            || self.size.dpi == 0
            || self.copies == 0
        {
            return Err(RenderError::Empty);
        }
        let font_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'))
        };
        if !font_ok(self.font.zpl) || !font_ok(self.font.tspl) {
            return Err(RenderError::FontName);
        }
        for item in self.items {
            match item {
                Item::Code128 { data: "", .. } => return Err(RenderError::Empty),
                Item::Code128 { data, .. } if !data.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
                    return Err(RenderError::Code128Data);
                }
                Item::Qr { data: "", .. } => return Err(RenderError::Empty),
                _ => {}
            }
        }
        Ok(())
    }
}

/// The receiver block of a shipping label. Pass the platform's masked fields; name and phone
/// are masked again regardless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receiver<'a> {
    /// Receiver name (masked to its first character).
    pub name: &'a str,
    /// Receiver phone (masked to 3 + 4 digits).
    pub phone: &'a str,
    /// Province, city, district.
    pub region: &'a str,
    /// The platform's masked street address, or empty.
    pub address: &'a str,
}

/// Free text lines a shipping label can carry below the receiver (order, items, station).
pub const MAX_LINES: usize = 8;

/// A standard e-waybill label: carrier, Code 128 waybill, receiver, free lines, optional QR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShippingLabel<'a> {
    /// Paper and resolution.
    pub size: LabelSize,
    /// Font (use a CJK font for Chinese text).
    pub font: Font<'a>,
    /// Carrier name as printed, e.g. `"YTO 圆通速递"`.
    pub carrier: &'a str,
    /// Waybill number (tracking number, `out_sid`).
    pub waybill: &'a str,
    /// Receiver.
    pub receiver: Receiver<'a>,
    /// Up to [`MAX_LINES`] extra lines; more are not printed.
    pub lines: &'a [&'a str],
    /// QR content (e.g. the order's pack-station link), if any.
    pub qr: Option<&'a str>,
}

/// Room for the items of a [`ShippingLabel`].
pub type Items<'a> = heapless::Vec<Item<'a>, 24>;

impl<'a> ShippingLabel<'a> {
    /// Lays the label out for its size: carrier at the top, waybill barcode, receiver block,
    /// lines, QR in the lower right corner. Scales with the label's size and resolution.
    pub fn items(&self) -> Items<'a> {
        let s = self.size;
        let w = s.dots(s.width_mm);
        let h = s.dots(s.height_mm);
        // Vertical positions as fractions of the height, so 100×150 and 100×180 both fit.
        let at = |permille: u32| u16::try_from(u32::from(h) * permille / 1000).unwrap_or(h);
        let margin = s.dots(4);
        let big = s.dots(6);
        let mid = s.dots(5);
        let small = s.dots(4);
        let module = if s.dpi >= 300 { 4 } else { 3 };

        let mut v = Items::new();
        let mut add = |item| {
            let _ = v.push(item);
        };
        add(Item::Text {
            x: margin,
            y: at(25),
            height: big,
            content: Content::Plain(self.carrier),
        });
        add(Item::Bar {
            x: 0,
            y: at(90),
            width: w,
            height: 3,
        });
        add(Item::Code128 {
            x: margin,
            y: at(115),
            height: at(130),
            module,
            readable: true,
            data: self.waybill,
        });
        add(Item::Bar {
            x: 0,
            y: at(320),
            width: w,
            height: 3,
        });
        add(Item::Text {
            x: margin,
            y: at(345),
            height: big,
            content: Content::Name(self.receiver.name),
        });
        add(Item::Text {
            x: w / 2,
            y: at(345),
            height: big,
            content: Content::Phone(self.receiver.phone),
        });
        add(Item::Text {
            x: margin,
            y: at(400),
            height: mid,
            content: Content::Plain(self.receiver.region),
        });
        if !self.receiver.address.is_empty() {
            add(Item::Text {
                x: margin,
                y: at(445),
                height: mid,
                content: Content::Plain(self.receiver.address),
            });
        }
        add(Item::Bar {
            x: 0,
            y: at(500),
            width: w,
            height: 3,
        });
        for (i, line) in self.lines.iter().take(MAX_LINES).enumerate() {
            add(Item::Text {
                x: margin,
                y: at(520 + 45 * i as u32),
                height: small,
                content: Content::Plain(line),
            });
        }
        if let Some(qr) = self.qr {
            add(Item::Qr {
                x: w.saturating_sub(s.dots(30)),
                y: at(800),
                cell: if s.dpi >= 300 { 6 } else { 4 },
                data: qr,
            });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn names_and_phones_are_masked_and_masking_is_idempotent() {
        assert_eq!(format!("{}", Content::Name("张三丰")), "张**");
        assert_eq!(format!("{}", Content::Name("张**")), "张**");
        assert_eq!(format!("{}", Content::Phone("13812345678")), "138****5678");
        assert_eq!(format!("{}", Content::Phone("138****5678")), "138****5678");
        assert_eq!(format!("{}", Content::Phone("5550123")), "*****23");
        assert_eq!(format!("{}", Content::Name("")), "");
    }

    #[test]
    fn millimetres_become_dots_at_the_printers_resolution() {
        assert_eq!(LabelSize::WAYBILL_100X150.dots(100), 799);
        let hi = LabelSize {
            dpi: 300,
            ..LabelSize::WAYBILL_100X150
        };
        assert_eq!(hi.dots(25), 295);
    }
}
