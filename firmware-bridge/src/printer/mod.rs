//! Driver for serial label printers speaking ZPL or TSPL.
//!
//! Generic over the serial port (`embedded_io::{Read, Write, ReadReady}`) and an
//! `embedded_hal::delay::DelayNs` that paces the status wait; [`Printer::release`] gives both
//! back.
//!
//! * Print: raw jobs ([`Printer::print_job`], the node's `print` command, checked against the
//!   printer's language), or a [`label::Layout`] / [`label::ShippingLabel`] rendered on the fly
//!   by [`zpl`] or [`tspl`] straight into the port (no buffer, no allocator).
//! * Status: [`Printer::status`] sends `~HS` (ZPL) or `<ESC>!?` (TSPL) and waits up to
//!   [`PrinterConfig::status_timeout_ms`] for the answer. Real printers stay silent when the
//!   head is open or they are off, so silence is an answer too: [`Status::Silent`], reported as
//!   "not responding" rather than as an error of the driver.
//!
//! What "printed" means is decided by the caller (the bridge): the job was written and flushed
//! to a printer whose status showed no fault.

use core::fmt;

use embedded_hal::delay::DelayNs;
use embedded_io::{Read, ReadReady, Write};

use crate::proto::{Print, PrintFormat};

pub mod label;
pub mod tspl;
pub mod zpl;

pub use label::{Layout, RenderError, ShippingLabel};
pub use zpl::StatusError;

/// Fault flags a printer can report (the union of what `~HS` and `ESC !?` say).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Out of paper (labels).
    pub paper_out: bool,
    /// Paused (operator pressed pause, or an error paused it).
    pub paused: bool,
    /// Print head open.
    pub head_open: bool,
    /// Out of ribbon (thermal transfer).
    pub ribbon_out: bool,
    /// Paper jam.
    pub paper_jam: bool,
    /// Cover open.
    pub cover_open: bool,
    /// Receive buffer full.
    pub buffer_full: bool,
    /// Head over temperature.
    pub over_temperature: bool,
    /// Head under temperature.
    pub under_temperature: bool,
    /// RAM corrupt.
    pub corrupt_ram: bool,
    /// Any other error the printer flags.
    pub other: bool,
}

impl Faults {
    /// The fault an operator should fix first, as short text; `None` if there is none.
    pub fn first(&self) -> Option<&'static str> {
        [
            (self.paper_out, "paper out"),
            (self.head_open, "head open"),
            (self.cover_open, "cover open"),
            (self.ribbon_out, "ribbon out"),
            (self.paper_jam, "paper jam"),
            (self.paused, "paused"),
            (self.buffer_full, "buffer full"),
            (self.over_temperature, "head over temperature"),
            (self.under_temperature, "head under temperature"),
            (self.corrupt_ram, "printer RAM corrupt"),
            (self.other, "printer error"),
        ]
        .iter()
        .find(|(set, _)| *set)
        .map(|(_, text)| *text)
    }
}

/// What a printer said about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Faults.
    pub faults: Faults,
    /// Printing, or formats waiting in its buffer.
    pub busy: bool,
    /// Labels left in the current batch (ZPL only).
    pub labels_remaining: Option<u32>,
}

/// The outcome of a status query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The printer answered.
    Reported(Report),
    /// No answer within the timeout: off, unplugged, or head open (many printers stop talking
    /// then). Treat as offline / unknown.
    Silent,
}

impl Status {
    /// Why a job should not be sent now, as operator text; `None` if the printer is ready.
    pub fn problem(&self) -> Option<&'static str> {
        match self {
            Status::Reported(r) => r.faults.first(),
            Status::Silent => Some("printer not responding (off, unplugged or head open)"),
        }
    }
}

/// Printer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrinterConfig {
    /// The printer's language.
    pub language: PrintFormat,
    /// How long to wait for a status answer (default 2000 ms).
    pub status_timeout_ms: u32,
    /// How often to look for status bytes while waiting (default 20 ms).
    pub poll_ms: u32,
}

impl Default for PrinterConfig {
    fn default() -> Self {
        PrinterConfig {
            language: PrintFormat::Zpl,
            status_timeout_ms: 2000,
            poll_ms: 20,
        }
    }
}

/// Printer errors, generic over the serial port's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error<UE> {
    /// The serial port failed. Reopen and retry.
    #[error("printer serial port: {0:?}")]
    Serial(UE),
    /// The label could not be rendered (bad barcode data, font name…). Not retryable.
    #[error("label: {0}")]
    Render(RenderError),
    /// The status answer was garbled. Retryable (line noise).
    #[error("printer status: {0}")]
    Status(StatusError),
    /// The job is in another language than the printer speaks. Not retryable here.
    #[error("job is {job} but the printer speaks {printer}")]
    WrongFormat {
        /// The job's language.
        job: PrintFormat,
        /// The printer's.
        printer: PrintFormat,
    },
    /// The job has no data.
    #[error("print job is empty")]
    EmptyJob,
    /// The configured language is not one a printer speaks (`cainiao` is Cainiao's
    /// cloud-print document). Fix the configuration.
    #[error("{0} is not a printer language (zpl or tspl)")]
    NotALanguage(PrintFormat),
}

impl<UE> Error<UE> {
    /// Whether the same job may succeed later (after reopening the port).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Serial(_) | Error::Status(_))
    }
}

/// A serial label printer with an `N`-byte status receive buffer.
#[derive(Debug)]
pub struct Printer<U, D, const N: usize = 128> {
    uart: U,
    delay: D,
    config: PrinterConfig,
    rx: [u8; N],
}

impl<U, D, const N: usize> Printer<U, D, N>
where
    U: Write,
    D: DelayNs,
{
    /// Creates the driver; touches no hardware.
    pub fn new(uart: U, delay: D, config: PrinterConfig) -> Self {
        Printer {
            uart,
            delay,
            config,
            rx: [0; N],
        }
    }

    /// The printer's language.
    pub fn language(&self) -> PrintFormat {
        self.config.language
    }

    /// Gives back the serial port and the delay.
    pub fn release(self) -> (U, D) {
        (self.uart, self.delay)
    }

    /// Sends raw bytes and flushes.
    pub fn print_raw(&mut self, data: &[u8]) -> Result<(), Error<U::Error>> {
        if data.is_empty() {
            return Err(Error::EmptyJob);
        }
        self.uart.write_all(data).map_err(Error::Serial)?;
        self.uart.flush().map_err(Error::Serial)
    }

    /// Sends a node `print` job after checking it is in the printer's language.
    pub fn print_job<S: AsRef<str>>(&mut self, job: &Print<S>) -> Result<(), Error<U::Error>> {
        if job.format != self.config.language {
            return Err(Error::WrongFormat {
                job: job.format,
                printer: self.config.language,
            });
        }
        self.print_raw(job.data.as_ref().as_bytes())
    }

    /// Renders a layout in the printer's language straight into the port.
    pub fn print_layout(&mut self, layout: &Layout<'_>) -> Result<(), Error<U::Error>> {
        // Check first so a bad layout writes nothing at all.
        layout.check().map_err(Error::Render)?;
        let mut w = IoFmt {
            w: &mut self.uart,
            err: None,
        };
        let r = match self.config.language {
            PrintFormat::Zpl => zpl::render(layout, &mut w),
            PrintFormat::Tspl => tspl::render(layout, &mut w),
            other => return Err(Error::NotALanguage(other)),
        };
        if let Some(e) = w.err {
            return Err(Error::Serial(e));
        }
        r.map_err(Error::Render)?;
        self.uart.flush().map_err(Error::Serial)
    }

    /// Lays out and prints a shipping label.
    pub fn print_label(
        &mut self,
        label: &ShippingLabel<'_>,
        copies: u16,
    ) -> Result<(), Error<U::Error>> {
        let items = label.items();
        self.print_layout(&Layout {
            size: label.size,
            font: label.font,
            copies,
            items: &items,
        })
    }

    /// Asks the printer for its status and waits up to the configured timeout.
    pub fn status(&mut self) -> Result<Status, Error<U::Error>>
    where
        U: Read + ReadReady,
    {
        let query = match self.config.language {
            PrintFormat::Zpl => zpl::HOST_STATUS,
            PrintFormat::Tspl => tspl::STATUS_QUERY,
            other => return Err(Error::NotALanguage(other)),
        };
        // Whatever is waiting now is stale (an answer that came too late last time); a printer
        // that streams endlessly gets at most 8 reads of it.
        for _ in 0..8 {
            if !self.uart.read_ready().map_err(Error::Serial)? {
                break;
            }
            self.uart.read(&mut self.rx).map_err(Error::Serial)?;
        }
        self.uart.write_all(query).map_err(Error::Serial)?;
        self.uart.flush().map_err(Error::Serial)?;

        let mut len = 0;
        let mut waited = 0u32;
        let poll = self.config.poll_ms.max(1);
        loop {
            if self.uart.read_ready().map_err(Error::Serial)? {
                let Some(space) = self.rx.get_mut(len..).filter(|s| !s.is_empty()) else {
                    return Err(Error::Status(StatusError::Garbled));
                };
                let n = self.uart.read(space).map_err(Error::Serial)?;
                len = (len + n).min(N);
                let got = &self.rx[..len];
                match self.config.language {
                    PrintFormat::Zpl => {
                        if let Some(report) = zpl::parse_host_status(got).map_err(Error::Status)? {
                            return Ok(Status::Reported(report));
                        }
                    }
                    PrintFormat::Tspl => {
                        if let Some(&byte) = got.first() {
                            return Ok(Status::Reported(tspl::parse_status(byte)));
                        }
                    }
                    other => return Err(Error::NotALanguage(other)),
                }
                continue;
            }
            if waited >= self.config.status_timeout_ms {
                return Ok(Status::Silent);
            }
            self.delay.delay_ms(poll);
            waited = waited.saturating_add(poll);
        }
    }
}

/// `core::fmt::Write` over an `embedded_io::Write`, keeping the port's error.
struct IoFmt<'a, W: embedded_io::ErrorType> {
    w: &'a mut W,
    err: Option<W::Error>,
}

impl<W: Write> fmt::Write for IoFmt<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.w.write_all(s.as_bytes()).map_err(|e| {
            self.err = Some(e);
            fmt::Error
        })
    }
}

#[cfg(test)]
mod tests {
    use super::label::{Font, LabelSize, Receiver};
    use super::*;
    use crate::testing::{FakeUart, Op};
    use embedded_hal_mock::eh1::delay::{CheckedDelay, NoopDelay, Transaction as DelayTx};

    const READY: &[u8] =
        b"\x02030,0,0,1245,000,0,0,0,000,0,0,0\x03\r\n\x02001,0,0,0,1,2,4,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n";

    fn zpl() -> PrinterConfig {
        PrinterConfig {
            language: PrintFormat::Zpl,
            status_timeout_ms: 100,
            poll_ms: 20,
        }
    }

    #[test]
    fn a_zpl_job_is_written_byte_for_byte() {
        let uart = FakeUart::new([Op::Write(b"^XA^FDhello^FS^XZ".to_vec())]);
        let mut p: Printer<_, _> = Printer::new(uart, NoopDelay::new(), zpl());
        let job = Print {
            v: 1,
            job_id: "j1",
            format: PrintFormat::Zpl,
            data: "^XA^FDhello^FS^XZ",
            template_url: None,
        };
        p.print_job(&job).unwrap();
        let (uart, _) = p.release();
        uart.done();
    }

    #[test]
    fn a_job_in_the_wrong_language_is_refused_before_anything_is_sent() {
        let mut p: Printer<_, _> = Printer::new(FakeUart::new([]), NoopDelay::new(), zpl());
        let job = Print {
            v: 1,
            job_id: "j1",
            format: PrintFormat::Tspl,
            data: "PRINT 1",
            template_url: None,
        };
        assert_eq!(
            p.print_job(&job),
            Err(Error::WrongFormat {
                job: PrintFormat::Tspl,
                printer: PrintFormat::Zpl
            })
        );
        // A Cainiao e-waybill is for the Cainiao print component, never a serial printer.
        let waybill = Print {
            v: 1,
            job_id: "j2",
            format: PrintFormat::Cainiao,
            data: "{\"encryptedData\":\"…\"}",
            template_url: Some("http://cloudprint.cainiao.com/template/standard/101"),
        };
        assert_eq!(
            p.print_job(&waybill),
            Err(Error::WrongFormat {
                job: PrintFormat::Cainiao,
                printer: PrintFormat::Zpl
            })
        );
        p.release().0.done();
    }

    #[test]
    fn a_driver_set_up_for_cainiao_refuses_layouts_and_status_without_writing() {
        let cfg = PrinterConfig {
            language: PrintFormat::Cainiao,
            ..zpl()
        };
        let mut p: Printer<_, _> = Printer::new(FakeUart::new([]), NoopDelay::new(), cfg);
        assert!(matches!(
            p.status(),
            Err(Error::NotALanguage(PrintFormat::Cainiao))
        ));
        p.release().0.done();
    }

    #[test]
    fn the_zpl_status_answer_is_read_across_several_reads() {
        let uart = FakeUart::new([
            Op::Read(b"old junk".to_vec()),
            Op::Idle,
            Op::Write(b"~HS".to_vec()),
            Op::Idle,
            Op::Read(READY[..30].to_vec()),
            Op::Idle,
            Op::Read(READY[30..].to_vec()),
        ]);
        let delay = CheckedDelay::new(&[DelayTx::delay_ms(20), DelayTx::delay_ms(20)]);
        let mut p: Printer<_, _> = Printer::new(uart, delay, zpl());
        let st = p.status().unwrap();
        let ready = Report {
            labels_remaining: Some(0),
            ..Report::default()
        };
        assert_eq!(st, Status::Reported(ready));
        assert_eq!(st.problem(), None);
        let (uart, mut delay) = p.release();
        uart.done();
        delay.done();
    }

    #[test]
    fn a_silent_printer_is_reported_after_the_timeout() {
        let mut ops = std::vec![Op::Idle, Op::Write(b"~HS".to_vec())];
        ops.extend(core::iter::repeat_n(Op::Idle, 6));
        let delays: std::vec::Vec<_> = (0..5).map(|_| DelayTx::delay_ms(20)).collect();
        let mut p: Printer<_, _> =
            Printer::new(FakeUart::new(ops), CheckedDelay::new(&delays), zpl());
        let st = p.status().unwrap();
        assert_eq!(st, Status::Silent);
        assert!(st.problem().unwrap().contains("not responding"));
        let (uart, mut delay) = p.release();
        uart.done();
        delay.done();
    }

    #[test]
    fn a_tspl_printer_out_of_paper_says_so() {
        let cfg = PrinterConfig {
            language: PrintFormat::Tspl,
            ..zpl()
        };
        let uart = FakeUart::new([
            Op::Idle,
            Op::Write(b"\x1b!?".to_vec()),
            Op::Read(std::vec![0x04]),
        ]);
        let mut p: Printer<_, _> = Printer::new(uart, NoopDelay::new(), cfg);
        assert_eq!(p.status().unwrap().problem(), Some("paper out"));
        p.release().0.done();
    }

    #[test]
    fn a_garbled_status_is_an_error_not_a_panic() {
        let uart = FakeUart::new([
            Op::Idle,
            Op::Write(b"~HS".to_vec()),
            Op::Read(b"\x02a\x03\x02b\x03\x02c\x03".to_vec()),
        ]);
        let mut p: Printer<_, _> = Printer::new(uart, NoopDelay::new(), zpl());
        assert_eq!(p.status(), Err(Error::Status(StatusError::Garbled)));
        p.release().0.done();
    }

    #[test]
    fn a_status_answer_that_overflows_the_buffer_is_garbled() {
        let uart = FakeUart::new([
            Op::Idle,
            Op::Write(b"~HS".to_vec()),
            Op::Read(std::vec![b'x'; 40]),
        ]);
        let mut p: Printer<_, _, 16> = Printer::new(uart, NoopDelay::new(), zpl());
        assert_eq!(p.status(), Err(Error::Status(StatusError::Garbled)));
    }

    #[test]
    fn a_shipping_label_is_rendered_straight_into_the_port() {
        let label = ShippingLabel {
            size: LabelSize::WAYBILL_100X150,
            font: Font::default(),
            carrier: "SF",
            waybill: "SF1234567890",
            receiver: Receiver {
                name: "Li Lei",
                phone: "13800001111",
                region: "Shanghai",
                address: "",
            },
            lines: &[],
            qr: None,
        };
        let items = label.items();
        let mut want = std::string::String::new();
        zpl::render(
            &Layout {
                size: label.size,
                font: label.font,
                copies: 1,
                items: &items,
            },
            &mut want,
        )
        .unwrap();
        assert!(want.contains("L*****") && !want.contains("Li Lei"));
        // Every byte is checked by the scripted port, whatever the write sizes.
        let uart = FakeUart::new(want.bytes().map(|b| Op::Write(std::vec![b])));
        let mut p: Printer<_, _> = Printer::new(uart, NoopDelay::new(), zpl());
        p.print_label(&label, 1).unwrap();
        p.release().0.done();
    }

    #[test]
    fn a_failing_port_during_a_label_is_a_serial_error() {
        let uart = FakeUart::new([Op::Fail]);
        let mut p: Printer<_, _> = Printer::new(uart, NoopDelay::new(), zpl());
        let label = ShippingLabel {
            size: LabelSize::WAYBILL_100X150,
            font: Font::default(),
            carrier: "SF",
            waybill: "SF1",
            receiver: Receiver {
                name: "x",
                phone: "1",
                region: "r",
                address: "",
            },
            lines: &[],
            qr: None,
        };
        let err = p.print_label(&label, 1).unwrap_err();
        assert!(matches!(err, Error::Serial(_)) && err.is_retryable());
    }
}
