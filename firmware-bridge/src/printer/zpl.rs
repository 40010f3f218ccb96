//! ZPL II: rendering a [`Layout`] and parsing the `~HS` host status.
//!
//! Rendering writes UTF-8 (`^CI28`) and sends every field through `^FH` hex escaping, so a `^`
//! or `~` in a receiver's address cannot end the field or inject a command. Code 128 uses
//! subset C for even-length digit strings (denser for numeric waybills) and subset B otherwise.
//!
//! `~HS` answers with three STX…ETX strings (ZPL II Programming Guide, `~HS`):
//!
//! ```text
//! <STX>aaa,b,c,dddd,eee,f,g,h,iii,j,k,l<ETX><CR><LF>
//!      b paper out · c pause · eee formats in buffer · f buffer full · j RAM corrupt
//!      k under temperature · l over temperature
//! <STX>mmm,n,o,p,q,r,s,t,uuuuuuuu,v,www<ETX><CR><LF>
//!      o head up (open) · p ribbon out · uuuuuuuu labels remaining in batch
//! <STX>xxxx,y<ETX><CR><LF>
//! ```

use core::fmt::{self, Write};

use super::label::{Content, Item, Layout, RenderError};
use super::{Faults, Report};

/// The host status query.
pub const HOST_STATUS: &[u8] = b"~HS";

/// Writes `layout` as one ZPL format (`^XA … ^XZ`).
pub fn render<W: Write>(layout: &Layout<'_>, out: &mut W) -> Result<(), RenderError> {
    layout.check()?;
    let s = layout.size;
    write!(
        out,
        "^XA^CI28^PW{}^LL{}^LH0,0",
        s.dots(s.width_mm),
        s.dots(s.height_mm)
    )?;
    for item in layout.items {
        match *item {
            Item::Text {
                x,
                y,
                height,
                content,
            } => {
                write!(out, "^FO{x},{y}")?;
                let font = layout.font.zpl;
                if font.len() == 1 {
                    write!(out, "^A{font}N,{height},{height}")?;
                } else {
                    write!(out, "^A@N,{height},{height},{font}")?;
                }
                out.write_str("^FH^FD")?;
                escaped(out, content)?;
                out.write_str("^FS")?;
            }
            Item::Code128 {
                x,
                y,
                height,
                module,
                readable,
                data,
            } => {
                let hri = if readable { 'Y' } else { 'N' };
                write!(out, "^FO{x},{y}^BY{module}^BCN,{height},{hri},N,N^FH^FD")?;
                let numeric = data.len() % 2 == 0 && data.bytes().all(|b| b.is_ascii_digit());
                out.write_str(if numeric { ">;" } else { ">:" })?;
                for c in data.chars() {
                    match c {
                        // In ZPL's Code 128 "no mode", `>` starts an invocation code; `><`
                        // is a literal `>`.
                        '>' => out.write_str("><")?,
                        c => escape_char(out, c)?,
                    }
                }
                out.write_str("^FS")?;
            }
            Item::Qr { x, y, cell, data } => {
                // Model 2, error correction M, automatic input mode.
                write!(out, "^FO{x},{y}^BQN,2,{}^FH^FDMA,", cell.clamp(1, 10))?;
                escaped(out, Content::Plain(data))?;
                out.write_str("^FS")?;
            }
            Item::Bar {
                x,
                y,
                width,
                height,
            } => {
                let t = width.min(height).max(1);
                write!(out, "^FO{x},{y}^GB{width},{height},{t}^FS")?;
            }
        }
    }
    write!(out, "^PQ{}^XZ", layout.copies)?;
    Ok(())
}

fn escape_char<W: Write>(out: &mut W, c: char) -> fmt::Result {
    match c {
        '^' | '~' | '_' => write!(out, "_{:02X}", c as u32),
        c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "_{:02X}", c as u32),
        c => out.write_char(c),
    }
}

fn escaped<W: Write>(out: &mut W, content: Content<'_>) -> fmt::Result {
    struct Esc<'w, W>(&'w mut W);
    impl<W: Write> Write for Esc<'_, W> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            s.chars().try_for_each(|c| escape_char(self.0, c))
        }
    }
    write!(Esc(out), "{content}")
}

/// Why a `~HS` answer is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// Three strings arrived but their fields are not the `~HS` layout.
    #[error("printer status answer is garbled")]
    Garbled,
}

/// Parses a (possibly partial) `~HS` answer. `Ok(None)`: not complete yet, read more.
pub fn parse_host_status(bytes: &[u8]) -> Result<Option<Report>, StatusError> {
    let mut strings: [&[u8]; 3] = [&[]; 3];
    let mut found = 0;
    let mut rest = bytes;
    while found < 3 {
        let Some(start) = rest.iter().position(|&b| b == 0x02) else {
            return Ok(None);
        };
        let after = &rest[start + 1..];
        let Some(end) = after.iter().position(|&b| b == 0x03) else {
            return Ok(None);
        };
        strings[found] = &after[..end];
        found += 1;
        rest = &after[end + 1..];
    }
    let mut one = Fields::new(strings[0]);
    let mut two = Fields::new(strings[1]);
    let _comm = one.next()?;
    let paper_out = one.flag()?;
    let paused = one.flag()?;
    let _label_length = one.next()?;
    let formats = one.number()?;
    let buffer_full = one.flag()?;
    let _diag = one.next()?;
    let _partial = one.next()?;
    let _unused = one.next()?;
    let corrupt_ram = one.flag()?;
    let under_temperature = one.flag()?;
    let over_temperature = one.flag()?;

    let _function = two.next()?;
    let _unused = two.next()?;
    let head_open = two.flag()?;
    let ribbon_out = two.flag()?;
    let _thermal = two.next()?;
    let _mode = two.next()?;
    let _width = two.next()?;
    let _waiting = two.next()?;
    let remaining = two.number()?;

    Ok(Some(Report {
        faults: Faults {
            paper_out,
            paused,
            head_open,
            ribbon_out,
            buffer_full,
            over_temperature,
            under_temperature,
            corrupt_ram,
            ..Faults::default()
        },
        busy: formats > 0,
        labels_remaining: Some(remaining),
    }))
}

struct Fields<'a> {
    it: core::slice::Split<'a, u8, fn(&u8) -> bool>,
}

impl<'a> Fields<'a> {
    fn new(s: &'a [u8]) -> Self {
        fn comma(b: &u8) -> bool {
            *b == b','
        }
        Fields {
            it: s.split(comma as fn(&u8) -> bool),
        }
    }

    fn next(&mut self) -> Result<&'a [u8], StatusError> {
        let f = self.it.next().ok_or(StatusError::Garbled)?;
        Ok(f.trim_ascii())
    }

    fn number(&mut self) -> Result<u32, StatusError> {
        crate::proto::digits(self.next()?).ok_or(StatusError::Garbled)
    }

    fn flag(&mut self) -> Result<bool, StatusError> {
        match self.next()? {
            b"0" => Ok(false),
            b"1" => Ok(true),
            _ => Err(StatusError::Garbled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::label::{Font, LabelSize, Receiver, ShippingLabel};
    use super::*;
    use std::string::String;

    pub(crate) const READY: &[u8] =
        b"\x02030,0,0,1245,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,1,2,4,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n";

    #[test]
    fn a_ready_printer_reports_no_fault() {
        let r = parse_host_status(READY).unwrap().unwrap();
        assert_eq!(r.faults, Faults::default());
        assert_eq!(r.labels_remaining, Some(0));
        assert!(!r.busy);
    }

    #[test]
    fn paper_out_and_head_open_are_read_from_their_fields() {
        let answer = b"\x02030,1,0,1245,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,1,0,1,2,4,0,00000003,1,000\x03\r\n\x021234,0\x03\r\n";
        let r = parse_host_status(answer).unwrap().unwrap();
        assert!(r.faults.paper_out && r.faults.head_open && !r.faults.paused);
        assert_eq!(r.labels_remaining, Some(3));
        assert_eq!(r.faults.first(), Some("paper out"));
    }

    #[test]
    fn a_partial_answer_asks_for_more_and_a_garbled_one_is_an_error() {
        assert_eq!(parse_host_status(&READY[..40]), Ok(None));
        assert_eq!(parse_host_status(b""), Ok(None));
        assert_eq!(
            parse_host_status(b"\x02x\x03\x02y\x03\x02z\x03"),
            Err(StatusError::Garbled)
        );
    }

    #[test]
    fn a_shipping_label_renders_to_zpl_with_masked_receiver_and_escaped_text() {
        let label = ShippingLabel {
            size: LabelSize::WAYBILL_100X150,
            font: Font::default(),
            carrier: "YTO",
            waybill: "YT1234567890123",
            receiver: Receiver {
                name: "张三丰",
                phone: "13812345678",
                region: "浙江省 杭州市 余杭区",
                address: "文*路***号 ^XZ~JR",
            },
            lines: &["tid 4012345678901", "SKU-1 x2"],
            qr: Some("https://example.invalid/p/42"),
        };
        let items = label.items();
        let layout = Layout {
            size: label.size,
            font: label.font,
            copies: 1,
            items: &items,
        };
        let mut out = String::new();
        render(&layout, &mut out).unwrap();
        assert!(out.starts_with("^XA^CI28^PW799^LL1198"));
        assert!(out.ends_with("^PQ1^XZ"));
        assert!(out.contains("^FH^FD张**^FS"));
        assert!(out.contains("^FH^FD138****5678^FS"));
        assert!(!out.contains("13812345678"));
        assert!(out.contains("^BCN,155,Y,N,N^FH^FD>:YT1234567890123^FS"));
        assert!(out.contains("^FH^FDMA,https://example.invalid/p/42^FS"));
        // The injected ^XZ and ~JR are escaped, not commands.
        assert!(out.contains("文*路***号 _5EXZ_7EJR"));
        assert_eq!(out.matches("^XZ").count(), 1);
    }

    #[test]
    fn numeric_waybills_use_subset_c_and_a_literal_gt_is_doubled() {
        let items = [
            Item::Code128 {
                x: 0,
                y: 0,
                height: 100,
                module: 3,
                readable: false,
                data: "773012345678",
            },
            Item::Code128 {
                x: 0,
                y: 0,
                height: 100,
                module: 3,
                readable: false,
                data: "A>B",
            },
        ];
        let layout = Layout {
            size: LabelSize::WAYBILL_100X150,
            font: Font::default(),
            copies: 2,
            items: &items,
        };
        let mut out = String::new();
        render(&layout, &mut out).unwrap();
        assert!(out.contains("^FD>;773012345678^FS"));
        assert!(out.contains("^FD>:A><B^FS"));
        assert!(out.contains("^PQ2^XZ"));
    }

    #[test]
    fn bad_barcode_data_and_font_names_are_refused() {
        let items = [Item::Code128 {
            x: 0,
            y: 0,
            height: 1,
            module: 2,
            readable: true,
            data: "运单",
        }];
        let mut layout = Layout {
            size: LabelSize::WAYBILL_100X150,
            font: Font::default(),
            copies: 1,
            items: &items,
        };
        assert_eq!(
            render(&layout, &mut String::new()),
            Err(RenderError::Code128Data)
        );
        layout.items = &[];
        layout.font.zpl = "E:X^FS";
        assert_eq!(
            render(&layout, &mut String::new()),
            Err(RenderError::FontName)
        );
    }
}
