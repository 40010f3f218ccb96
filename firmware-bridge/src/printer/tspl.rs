//! TSPL/TSPL2 (TSC and the many printers that copy it): rendering a [`Layout`] and reading the
//! `<ESC>!?` status byte.
//!
//! Commands are lines ending in CR LF. Strings are double-quoted; a quote inside is written
//! `\["]`, and CR/LF/control characters become spaces (a raw line end would end the command
//! early and let the rest of the text run as commands).
//!
//! `<ESC>!?` answers one byte (TSPL/TSPL2 Programming Manual, "ESC !?"):
//! `0x01` head opened · `0x02` paper jam · `0x04` out of paper · `0x08` out of ribbon ·
//! `0x10` pause · `0x20` printing · `0x40` cover opened · `0x80` other error.

use core::fmt::{self, Write};

use super::label::{Item, Layout, RenderError};
use super::{Faults, Report};

/// The immediate status query.
pub const STATUS_QUERY: &[u8] = b"\x1b!?";

/// Bitmap font heights (dots) of the resident fonts "1"–"8", to turn a height into a
/// multiplier.
fn base_height(font: &str) -> u16 {
    match font {
        "1" => 12,
        "2" => 20,
        "3" => 24,
        "4" => 32,
        "5" => 48,
        "6" => 14,
        "7" => 21,
        "8" => 14,
        // Downloaded fonts are named for their height in dots, e.g. TSS24.BF2.
        _ => 24,
    }
}

/// Writes `layout` as one TSPL job (`SIZE … PRINT`).
pub fn render<W: Write>(layout: &Layout<'_>, out: &mut W) -> Result<(), RenderError> {
    layout.check()?;
    let s = layout.size;
    write!(
        out,
        "SIZE {} mm,{} mm\r\nGAP 2 mm,0 mm\r\nDIRECTION 1\r\nCODEPAGE UTF-8\r\nCLS\r\n",
        s.width_mm, s.height_mm
    )?;
    let font = layout.font.tspl;
    for item in layout.items {
        match *item {
            Item::Text {
                x,
                y,
                height,
                content,
            } => {
                let mul = (height / base_height(font)).clamp(1, 10);
                write!(out, "TEXT {x},{y},\"{font}\",0,{mul},{mul},\"")?;
                quoted(out, format_args!("{content}"))?;
                out.write_str("\"\r\n")?;
            }
            Item::Code128 {
                x,
                y,
                height,
                module,
                readable,
                data,
            } => {
                let hri = u8::from(readable);
                write!(
                    out,
                    "BARCODE {x},{y},\"128\",{height},{hri},0,{module},{module},\""
                )?;
                quoted(out, format_args!("{data}"))?;
                out.write_str("\"\r\n")?;
            }
            Item::Qr { x, y, cell, data } => {
                write!(out, "QRCODE {x},{y},M,{},A,0,\"", cell.clamp(1, 10))?;
                quoted(out, format_args!("{data}"))?;
                out.write_str("\"\r\n")?;
            }
            Item::Bar {
                x,
                y,
                width,
                height,
            } => write!(out, "BAR {x},{y},{width},{height}\r\n")?,
        }
    }
    write!(out, "PRINT {},1\r\n", layout.copies)?;
    Ok(())
}

fn quoted<W: Write>(out: &mut W, args: fmt::Arguments<'_>) -> fmt::Result {
    struct Q<'w, W>(&'w mut W);
    impl<W: Write> Write for Q<'_, W> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                match c {
                    '"' => self.0.write_str("\\[\"]")?,
                    c if c.is_control() => self.0.write_char(' ')?,
                    c => self.0.write_char(c)?,
                }
            }
            Ok(())
        }
    }
    Q(out).write_fmt(args)
}

/// Decodes the `<ESC>!?` status byte.
pub fn parse_status(byte: u8) -> Report {
    let bit = |m: u8| byte & m != 0;
    Report {
        faults: Faults {
            head_open: bit(0x01),
            paper_jam: bit(0x02),
            paper_out: bit(0x04),
            ribbon_out: bit(0x08),
            paused: bit(0x10),
            cover_open: bit(0x40),
            other: bit(0x80),
            ..Faults::default()
        },
        busy: bit(0x20),
        labels_remaining: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::label::{Content, Font, LabelSize};
    use super::*;
    use std::string::String;

    #[test]
    fn a_layout_renders_as_tspl_commands_with_quotes_escaped() {
        let items = [
            Item::Text {
                x: 32,
                y: 30,
                height: 48,
                content: Content::Plain("say \"hi\"\r\nPRINT 99"),
            },
            Item::Code128 {
                x: 32,
                y: 100,
                height: 150,
                module: 3,
                readable: true,
                data: "YT1234567890123",
            },
            Item::Qr {
                x: 560,
                y: 900,
                cell: 4,
                data: "https://example.invalid/p/42",
            },
            Item::Bar {
                x: 0,
                y: 80,
                width: 799,
                height: 3,
            },
            Item::Text {
                x: 32,
                y: 400,
                height: 48,
                content: Content::Phone("13812345678"),
            },
        ];
        let layout = Layout {
            size: LabelSize::WAYBILL_100X150,
            font: Font {
                zpl: "0",
                tspl: "TSS24.BF2",
            },
            copies: 1,
            items: &items,
        };
        let mut out = String::new();
        render(&layout, &mut out).unwrap();
        let want = "SIZE 100 mm,150 mm\r\nGAP 2 mm,0 mm\r\nDIRECTION 1\r\nCODEPAGE UTF-8\r\nCLS\r\n\
            TEXT 32,30,\"TSS24.BF2\",0,2,2,\"say \\[\"]hi\\[\"]  PRINT 99\"\r\n\
            BARCODE 32,100,\"128\",150,1,0,3,3,\"YT1234567890123\"\r\n\
            QRCODE 560,900,M,4,A,0,\"https://example.invalid/p/42\"\r\n\
            BAR 0,80,799,3\r\n\
            TEXT 32,400,\"TSS24.BF2\",0,2,2,\"138****5678\"\r\n\
            PRINT 1,1\r\n";
        assert_eq!(out, want);
    }

    #[test]
    fn the_status_byte_maps_to_faults() {
        assert_eq!(parse_status(0), Report::default());
        let r = parse_status(0x05);
        assert!(r.faults.head_open && r.faults.paper_out && !r.busy);
        assert_eq!(r.faults.first(), Some("paper out"));
        assert!(parse_status(0x20).busy);
        assert!(parse_status(0x20).faults.first().is_none());
    }
}
